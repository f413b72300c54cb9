build-bench/obj/conf/netdef.o: src/conf/netdef.c src/conf/conf_impl.h \
 src/conf/conf.h src/conf/params.def src/util/buf.h src/util/xalloc.h
src/conf/conf_impl.h:
src/conf/conf.h:
src/conf/params.def:
src/util/buf.h:
src/util/xalloc.h:
