build-bench/obj/smtp/reply.o: src/smtp/reply.c src/smtp/reply.h \
 src/smtp/replies.def src/log/log.h src/util/buf.h
src/smtp/reply.h:
src/smtp/replies.def:
src/log/log.h:
src/util/buf.h:
