build-bench/obj/conf/conf.o: src/conf/conf.c src/conf/conf_impl.h \
 src/conf/conf.h src/conf/params.def src/util/buf.h src/log/log.h \
 src/util/xalloc.h
src/conf/conf_impl.h:
src/conf/conf.h:
src/conf/params.def:
src/util/buf.h:
src/log/log.h:
src/util/xalloc.h:
