#!/bin/sh
# maildir_fault.sh: run test_maildir under tests/shim/faultfs.so (SECURITY_CHECKLIST
# rows 54 and 57).  For each injected fault, maildir_deliver() to three Maildirs must
# return -1 with the injected errno, name the operation, and leave no file in any
# new/ or tmp/ (test_maildir's test_fault checks that).  Also checks that the shim
# is transparent when no fault is asked for, and that MXGATE_FSYNC_DELAY_MS delays.
#
# Usage: sh tests/unit/maildir_fault.sh [test_maildir binary]
#   default binary: $BUILD/tests/test_maildir, made with the Makefile when missing.
# Exit 0 when every check passed, 1 otherwise.

set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD=$root/$BUILD ;; esac
CC=${CC:-cc}

# The shim, as the Makefile's build/shim/%.so rule builds it (never with sanitizers).
shim=$BUILD/shim/faultfs.so
if [ ! -f "$shim" ] || [ -n "$(find tests/shim/faultfs.c -newer "$shim")" ]; then
	mkdir -p "$BUILD/shim"
	$CC -std=gnu11 -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -shared -fPIC \
		-o "$shim" tests/shim/faultfs.c -ldl || { echo "FAIL: cannot build $shim"; exit 1; }
fi

work=$(mktemp -d "$BUILD/maildir_fault.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT INT TERM
# The Maildirs live under $work: its path must not itself match the filters used below.
case "$work" in
*/Maildir/*) echo "FAIL: $work contains /Maildir/; set BUILD elsewhere"; exit 1 ;;
esac

bin=${1:-$BUILD/tests/test_maildir}
if [ ! -x "$bin" ]; then
	# the test links the library and tests/common's fakes: the Makefile knows how
	make -s BUILD="$BUILD" "$bin" >/dev/null || { echo "FAIL: cannot build $bin"; exit 1; }
fi

# An ASan binary needs its runtime ahead of any preloaded library.
preload=$shim
asan=$(ldd "$bin" 2>/dev/null | awk '/libasan/ { print $3; exit }')
if [ -n "$asan" ]; then
	preload="$asan $shim"
fi

fails=0
checks=0

# run_case "description" VAR=value...: test_maildir's fault group must pass.
run_case() {
	desc=$1
	shift
	checks=$((checks + 1))
	mkdir -p "$work/t"
	out=$(env TMPDIR="$work/t" LD_PRELOAD="$preload" "$@" "$bin" 2>&1)
	rc=$?
	line=$(printf '%s\n' "$out" | grep 'maildir_deliver returned' | head -1)
	if [ $rc -eq 0 ] && [ -n "$line" ]; then
		echo "ok   $desc"
		echo "       $line"
	else
		echo "FAIL $desc (exit $rc)"
		printf '%s\n' "$out" | sed 's/^/       /'
		fails=$((fails + 1))
	fi
}

run_case "fsync of the first staged file fails (EIO): no copy anywhere" \
	MXGATE_FAULT=fsync
run_case "fsync of a new/ directory fails after every rename: renamed copies removed" \
	MXGATE_FAULT=fsync MXGATE_FAULT_PATH=Maildir/new
run_case "fsync of the third staged file fails (ENOSPC): two staged copies removed" \
	MXGATE_FAULT=fsync MXGATE_FAULT_PATH=Maildir/tmp/ MXGATE_FAULT_ERRNO=ENOSPC MXGATE_FAULT_AFTER=2
run_case "write fails at once (ENOSPC)" \
	MXGATE_FAULT=write MXGATE_FAULT_ERRNO=ENOSPC
run_case "write of the second copy's body fails (EDQUOT)" \
	MXGATE_FAULT=write MXGATE_FAULT_PATH=Maildir/tmp/ MXGATE_FAULT_ERRNO=EDQUOT MXGATE_FAULT_AFTER=3
run_case "third rename fails (EIO): the two copies already in new/ are removed" \
	MXGATE_FAULT=rename MXGATE_FAULT_AFTER=2
run_case "open of the second tmp/ file fails (ENOSPC)" \
	MXGATE_FAULT=open MXGATE_FAULT_PATH=Maildir/tmp/ MXGATE_FAULT_ERRNO=ENOSPC MXGATE_FAULT_AFTER=1
run_case "open of a new/ directory for its fsync fails (EIO)" \
	MXGATE_FAULT=open MXGATE_FAULT_PATH=Maildir/new

# No fault asked for: the shim is transparent and the whole suite passes,
# with every fsync delayed 2 ms (the 100-delivery test alone does ~200 fsyncs).
checks=$((checks + 1))
mkdir -p "$work/t"
start=$(date +%s%N)
out=$(env TMPDIR="$work/t" LD_PRELOAD="$preload" MXGATE_FSYNC_DELAY_MS=2 "$bin" 2>&1)
rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
if [ $rc -eq 0 ] && [ $ms -ge 400 ]; then
	echo "ok   no fault: shim transparent, full suite passes; MXGATE_FSYNC_DELAY_MS=2 took ${ms} ms"
else
	echo "FAIL no fault: exit $rc after ${ms} ms (want 0, >= 400 ms)"
	printf '%s\n' "$out" | sed 's/^/       /'
	fails=$((fails + 1))
fi

echo "maildir_fault: $((checks - fails))/$checks checks passed"
[ $fails -eq 0 ]
