build-bench/obj/policy/anvil.o: src/policy/anvil.c src/policy/anvil.h \
 src/policy/anvil_backend.h src/util/buf.h
src/policy/anvil.h:
src/policy/anvil_backend.h:
src/util/buf.h:
