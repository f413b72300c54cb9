build-bench/obj/net/server.o: src/net/server.c src/net/server.h \
 src/conf/conf.h src/conf/params.def src/deliver/pool.h \
 src/policy/anvil.h src/log/log.h src/net/peername.h src/smtp/session.h \
 src/util/xalloc.h src/version.h
src/net/server.h:
src/conf/conf.h:
src/conf/params.def:
src/deliver/pool.h:
src/policy/anvil.h:
src/log/log.h:
src/net/peername.h:
src/smtp/session.h:
src/util/xalloc.h:
src/version.h:
