build-bench/obj/policy/addrlist.o: src/policy/addrlist.c \
 src/policy/addrlist.h src/util/xalloc.h
src/policy/addrlist.h:
src/util/xalloc.h:
