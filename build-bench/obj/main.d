build-bench/obj/main.o: src/main.c src/conf/conf.h src/conf/params.def \
 src/log/log.h src/net/server.h src/smtp/session.h src/util/xalloc.h \
 src/version.h
src/conf/conf.h:
src/conf/params.def:
src/log/log.h:
src/net/server.h:
src/smtp/session.h:
src/util/xalloc.h:
src/version.h:
