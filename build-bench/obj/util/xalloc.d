build-bench/obj/util/xalloc.o: src/util/xalloc.c src/util/xalloc.h \
 src/log/log.h
src/util/xalloc.h:
src/log/log.h:
