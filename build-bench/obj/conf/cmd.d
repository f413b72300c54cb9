build-bench/obj/conf/cmd.o: src/conf/cmd.c src/conf/conf_impl.h \
 src/conf/conf.h src/conf/params.def src/util/buf.h src/log/log.h \
 src/util/xalloc.h
src/conf/conf_impl.h:
src/conf/conf.h:
src/conf/params.def:
src/util/buf.h:
src/log/log.h:
src/util/xalloc.h:
