build-bench/obj/deliver/maildir.o: src/deliver/maildir.c \
 src/deliver/maildir.h src/log/log.h src/util/buf.h src/util/xalloc.h
src/deliver/maildir.h:
src/log/log.h:
src/util/buf.h:
src/util/xalloc.h:
