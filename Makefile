# mxgate build.  `make` builds build/mxgate; `make test` runs every test;
# `make SANITIZE=address,undefined test` does both under the sanitizers.

CC       ?= cc
SANITIZE ?=
BUILD    ?= build
PKGS     := libevent libevent_pthreads libevent_openssl openssl libpcre2-8 lmdb libpq ldap lber libmariadb sqlite3 hiredis
PKG_CONFIG ?= pkg-config
# What installs the Debian packages (and the mxgate user) for `make run` / `make test`.
DEPS     ?= sh scripts/deps.sh

# pkg-config runs when this file is read.  On a machine without libevent that is before `deps`
# has installed it, so `run`, `test` and `compat` install first and then build in a sub-make,
# which reads this file again and finds the packages (a single `make run` works on a fresh
# Debian 12; tests/system/test_makefile.py checks it).
CFLAGS_BASE := -std=gnu11 -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter \
               -Wshadow -Wstrict-prototypes -Wmissing-prototypes -D_GNU_SOURCE -pthread \
               -Isrc $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
ifneq ($(SANITIZE),)
CFLAGS_BASE += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS_SAN := -fsanitize=$(SANITIZE)
endif
CFLAGS  += $(CFLAGS_BASE)
PKG_LIBS := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
LDLIBS  := $(PKG_LIBS) -lcdb -ldb -pthread
LDFLAGS += $(LDFLAGS_SAN)

# Every .c under src/ except main.c goes into a static library that the daemon,
# the unit tests and the fuzz targets all link against.
LIB_SRC  := $(filter-out src/main.c,$(shell find src -name '*.c' | sort))
LIB_OBJ  := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(LIB_SRC)) $(BUILD)/obj/gen/postfix_names.o
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
# Test support (tests/common/): the virtual-time loop, the in-memory transport,
# the whole-session helper and the anvil backend that answers late.  Linked as
# objects (not an archive) so that the backend's constructor registers it.
TCOMMON_SRC := $(sort $(wildcard tests/common/*.c))
TCOMMON_OBJ := $(patsubst tests/common/%.c,$(BUILD)/obj/tests/common/%.o,$(TCOMMON_SRC))
# The daemon with the test-only anvil backend (mxgate_anvil_backend = test-delay:MS).
DELAYD   := $(BUILD)/tests/mxgate-anvil-delay
# Helper programs the system tests run (tests/tools/: dnsq asks net/resolver one question).
TOOL_SRC := $(sort $(wildcard tests/tools/*.c))
TOOL_BIN := $(patsubst tests/tools/%.c,$(BUILD)/tests/%,$(TOOL_SRC))
SHIM_SRC := $(sort $(wildcard tests/shim/*.c))
SHIM_SO  := $(patsubst tests/shim/%.c,$(BUILD)/shim/%.so,$(SHIM_SRC))


.PHONY: all deps test-deps run test unit system compat bench fuzz clean check-deps
all: $(BUILD)/mxgate

# Objects depend on the flags they were built with, so switching SANITIZE on
# or off rebuilds everything in place (the tests always run build/mxgate).
FLAGS_STAMP := $(BUILD)/.flags
$(shell mkdir -p $(BUILD); echo '$(CC) $(CFLAGS) $(LDFLAGS)' | cmp -s - $(FLAGS_STAMP) || echo '$(CC) $(CFLAGS) $(LDFLAGS)' > $(FLAGS_STAMP))

# Without the libraries nothing compiles (libpq's header is not even on the default include
# path): say what to do before the first compile, not after a screen of errors.
check-deps:
	@test -n "$(PKG_LIBS)" || { echo "make: $(PKG_CONFIG) finds no $(PKGS): run 'make deps' (or 'make run') first" >&2; exit 1; }

$(BUILD)/obj/%.o: src/%.c $(FLAGS_STAMP) | check-deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

# The list of Postfix 3.7.11 parameter names is data (src/conf/postfix-3.7.11-params.txt);
# it becomes a sorted C array so that "known to Postfix" is a binary search.
$(BUILD)/gen/postfix_names.c: src/conf/postfix-3.7.11-params.txt src/conf/postfix-3.7.11-defaults.txt scripts/gen-names.sh
	@mkdir -p $(dir $@)
	sh scripts/gen-names.sh $< src/conf/postfix-3.7.11-defaults.txt > $@
$(BUILD)/obj/gen/postfix_names.o: $(BUILD)/gen/postfix_names.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/libmxgate.a: $(LIB_OBJ)
	rm -f $@; ar rcs $@ $^

$(BUILD)/mxgate: $(BUILD)/obj/main.o $(BUILD)/libmxgate.a | check-deps
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/tests/common/%.o: tests/common/%.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/common -MMD -MP -c -o $@ $<

$(DELAYD): $(BUILD)/obj/main.o $(BUILD)/obj/tests/common/anvil_delay.o $(BUILD)/libmxgate.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libmxgate.a $(TCOMMON_OBJ) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/common $(LDFLAGS) -o $@ $< $(TCOMMON_OBJ) $(BUILD)/libmxgate.a \
		$(LDLIBS) -lcmocka

$(BUILD)/tests/%: tests/tools/%.c $(BUILD)/libmxgate.a $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libmxgate.a $(LDLIBS)

# Fault-injection shims for LD_PRELOAD.  Never built with sanitizers: an
# instrumented shim cannot be preloaded ahead of the sanitizer runtime.
$(BUILD)/shim/%.so: tests/shim/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -shared -fPIC -o $@ $< -ldl

deps:
	$(DEPS)

test-deps:
	$(DEPS) --test

# The build runs in a sub-make, after deps: see pkg-config above.  Variables given on the
# command line (SANITIZE, BUILD, ...) reach the sub-make through MAKEFLAGS.
run: deps
	$(MAKE) all
	MXGATE=$(BUILD)/mxgate sh scripts/run-example.sh

unit: $(UNIT_BIN)
system: all $(DELAYD) $(SHIM_SO) $(TOOL_BIN)

# What `make test` runs once everything is built (tests/system/test_makefile.py replaces it).
RUN_TESTS ?= python3 tests/run.py --build $(BUILD)

test: test-deps
	$(MAKE) all $(DELAYD) $(UNIT_BIN) $(SHIM_SO) $(TOOL_BIN)
	$(RUN_TESTS)

# Re-record the Postfix transcripts (root, Postfix installed), then diff mxgate against them.
compat: test-deps
	$(MAKE) all
	python3 tests/compat/compat.py --record --build $(BUILD)
	python3 tests/compat/compat.py --build $(BUILD)

fuzz:
	$(MAKE) -C tests/fuzz

# Load benchmarks, mxgate against Postfix 3.7 (root; not part of `make test`): bench/README.md
bench:
	$(MAKE) BUILD=bench/build SANITIZE= bench/build/mxgate
	python3 bench/tarpit.py --build bench/build
	python3 bench/idle.py --build bench/build
	python3 bench/throughput.py --build bench/build
	python3 bench/bigmessages.py --build bench/build
	python3 bench/tables.py --build bench/build
	python3 bench/dnsbl.py --build bench/build
	python3 bench/tls.py --build bench/build
	python3 bench/anvil_redis.py --build bench/build
	python3 bench/milter.py --build bench/build

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
