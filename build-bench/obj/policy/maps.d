build-bench/obj/policy/maps.o: src/policy/maps.c src/policy/maps.h \
 src/log/log.h src/util/buf.h src/util/xalloc.h
src/policy/maps.h:
src/log/log.h:
src/util/buf.h:
src/util/xalloc.h:
