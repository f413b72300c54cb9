build-bench/obj/policy/recipient.o: src/policy/recipient.c \
 src/policy/recipient.h src/log/log.h src/policy/maps.h src/util/buf.h \
 src/util/xalloc.h
src/policy/recipient.h:
src/log/log.h:
src/policy/maps.h:
src/util/buf.h:
src/util/xalloc.h:
