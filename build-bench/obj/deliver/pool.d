build-bench/obj/deliver/pool.o: src/deliver/pool.c src/deliver/pool.h \
 src/log/log.h src/util/xalloc.h
src/deliver/pool.h:
src/log/log.h:
src/util/xalloc.h:
