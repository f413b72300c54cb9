build-bench/obj/smtp/linereader.o: src/smtp/linereader.c \
 src/smtp/linereader.h src/util/buf.h src/log/log.h
src/smtp/linereader.h:
src/util/buf.h:
src/log/log.h:
