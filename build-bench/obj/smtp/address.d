build-bench/obj/smtp/address.o: src/smtp/address.c src/smtp/address.h \
 src/util/buf.h src/util/xalloc.h
src/smtp/address.h:
src/util/buf.h:
src/util/xalloc.h:
