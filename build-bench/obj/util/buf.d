build-bench/obj/util/buf.o: src/util/buf.c src/util/buf.h src/log/log.h \
 src/util/xalloc.h
src/util/buf.h:
src/log/log.h:
src/util/xalloc.h:
