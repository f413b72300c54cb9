build-bench/obj/smtp/dataread.o: src/smtp/dataread.c src/smtp/dataread.h \
 src/util/buf.h
src/smtp/dataread.h:
src/util/buf.h:
