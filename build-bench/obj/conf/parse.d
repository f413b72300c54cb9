build-bench/obj/conf/parse.o: src/conf/parse.c src/conf/conf_impl.h \
 src/conf/conf.h src/conf/params.def src/util/buf.h src/util/xalloc.h
src/conf/conf_impl.h:
src/conf/conf.h:
src/conf/params.def:
src/util/buf.h:
src/util/xalloc.h:
