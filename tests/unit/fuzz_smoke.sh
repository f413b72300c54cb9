#!/bin/sh
# fuzz_smoke.sh: build the libFuzzer targets of the parsers of untrusted bytes
# (tests/fuzz/) and run each for a short, bounded time from its seeds, so every
# `make test` replays the seeds (crash regressions included) and fuzzes a little.
# FUZZ_TIME seconds per target (default 10).  Exit 0 when all ran clean.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
time=${FUZZ_TIME:-10}
command -v clang >/dev/null || { echo "FAIL: clang is missing (scripts/deps.sh --test installs it)"; exit 1; }
make -s -C "$root/tests/fuzz" all >/dev/null || { echo "FAIL: cannot build the fuzz targets"; exit 1; }
work=$(mktemp -d) || exit 1
trap 'rm -rf "$work"' EXIT INT TERM
status=0
for t in fuzz_linereader fuzz_dataread fuzz_cleanup fuzz_address fuzz_session fuzz_map_pattern fuzz_dns fuzz_policy fuzz_proxy fuzz_milter; do
	mkdir -p "$work/$t"
	cp "$root/tests/fuzz/seeds/$t/"* "$work/$t/" 2>/dev/null
	# -close_fd_mask=2: the session's log lines go nowhere; crash reports still show.
	if (cd "$work" && "$root/tests/fuzz/$t" -max_total_time="$time" -rss_limit_mb=1024 \
		-close_fd_mask=2 "$work/$t" >"$work/$t.log" 2>&1); then
		echo "ok   $t: $(grep -o 'Done [0-9]* runs' "$work/$t.log" | tail -1) in ${time}s"
	else
		echo "FAIL $t:"
		grep -E "runtime error|ERROR|SUMMARY|Base64|^0x" "$work/$t.log" | head -20
		tail -5 "$work/$t.log"
		status=1
	fi
done
exit $status
