build-bench/obj/policy/anvil_memory.o: src/policy/anvil_memory.c \
 src/policy/anvil.h src/log/log.h src/policy/anvil_backend.h \
 src/util/xalloc.h
src/policy/anvil.h:
src/log/log.h:
src/policy/anvil_backend.h:
src/util/xalloc.h:
