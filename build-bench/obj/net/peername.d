build-bench/obj/net/peername.o: src/net/peername.c src/net/peername.h \
 src/log/log.h src/net/server.h src/util/xalloc.h
src/net/peername.h:
src/log/log.h:
src/net/server.h:
src/util/xalloc.h:
