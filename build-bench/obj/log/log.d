build-bench/obj/log/log.o: src/log/log.c src/log/log.h src/util/buf.h \
 src/util/xalloc.h
src/log/log.h:
src/util/buf.h:
src/util/xalloc.h:
