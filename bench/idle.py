#!/usr/bin/env python3
"""idle-session benchmark: what an SMTP session costs the server while the client sits still.

mxgate: 5000 concurrent sessions, each past its EHLO reply (EHLO sent, the 250 reply read), from
100 loopback addresses (127.0.2.1 ... 127.0.2.100).  Reported: (VmRSS with the sessions - VmRSS
idle baseline) / 5000, in KiB.  The baseline is taken after a few warm-up sessions (connect, EHLO,
QUIT), so one-time costs (thread arenas, lazily opened maps) are not charged to the sessions.
The same is measured at 500 sessions on the way up, for a like-for-like point with Postfix.

Postfix 3.7 (one smtpd process per session): the same with 500 sessions (default_process_limit
600).  Reported: Pss of the smtpd processes / 500 (smaps_rollup; shared pages are split between
the processes that map them), with RSS / 500 and the whole tree's Pss growth / 500 for reference.

    python3 bench/idle.py [--build DIR] [--sessions N] [--postfix-sessions N] [--skip-postfix]

Needs root.  The whole run is bounded to 295 s and stops both servers on any exit.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _benchlib as B  # noqa: E402

SOURCES = ["127.0.2.%d" % i for i in range(1, 101)]
GOAL_KIB = 16
WARMUP = 20

MAIN = dict(B.BASE_MAIN, **{
    "smtpd_client_connection_count_limit": "0",
    "smtpd_timeout": "3600s",
})


def idle_client(load, c, code, lines, latency):
    """banner -> EHLO; EHLO reply -> ready (or QUIT for a warm-up client)."""
    if c.nreplies == 1:
        if code != 220:
            load.notes.append("client %d: banner %r" % (c.idx, lines[-1]))
            load.close(c)
            return None
        return "EHLO idle%d.example" % c.idx
    if c.nreplies == 2:
        if code != 250:
            load.notes.append("client %d: EHLO %r" % (c.idx, lines[-1]))
            load.close(c)
            return None
        c.data["ready"] = True
        return "QUIT" if load.warmup else None
    return None


def new_load(port, n, warmup=False):
    load = B.Load(port, SOURCES, n, idle_client, window=200)
    load.warmup = warmup
    return load


def ready(load):
    return sum(1 for c in load.conns if c.data.get("ready") and c.sock is not None)


def open_sessions(load, n, timeout):
    """Open sessions until n are past their EHLO reply (or the timeout)."""
    load.limit = n
    deadline = time.monotonic() + timeout
    load.run_until(lambda: ready(load) >= n or load.failed + load.closed > 0, deadline)
    # let the server settle (it has nothing to do; replies were all read)
    load.run_until(lambda: False, time.monotonic() + 1.0)
    got = ready(load)
    if got < n:
        raise SystemExit("only %d/%d sessions past EHLO within %ds (closed %d, failed %d): %s"
                         % (got, n, timeout, load.closed, load.failed, load.notes))
    return got


def sample(fn, k=3):
    vals = []
    for _ in range(k):
        vals.append(fn())
        time.sleep(0.2)
    return sorted(vals)[len(vals) // 2]


def run_mxgate(binary, n, budget):
    main = dict(MAIN, default_process_limit="6000")
    srv = B.start_mxgate(binary, main, ["127.0.0.1:{port} inet n - n - 6000 smtpd"])
    load = None
    res = {}
    try:
        pid = srv.pid
        rss = lambda: B.proc_status_kib(pid)  # noqa: E731
        res["fresh"] = sample(rss)
        w = new_load(srv.port, WARMUP, warmup=True)
        w.run_until(lambda: w.closed + w.failed >= WARMUP, time.monotonic() + 20)
        w.close_all()
        time.sleep(0.5)
        res["base"] = base = sample(rss)
        print("  baseline: VmRSS %s fresh, %s after %d warm-up sessions (Pss %s, threads %d)"
              % (B.fmt_kib(res["fresh"]), B.fmt_kib(base), WARMUP,
                 B.fmt_kib(B.proc_rollup_kib(pid)), B.proc_status_kib(pid, "Threads")))
        load = new_load(srv.port, n)
        points = sorted({min(500, n), n})
        for k in points:
            t0 = time.monotonic()
            open_sessions(load, k, min(120, budget.left() - 150))
            r = sample(rss)
            res[k] = r
            print("  %5d sessions past EHLO (%.1f s to open): VmRSS %s, +%s => %.2f KiB/session "
                  "(Pss %s, Anonymous %s)" % (k, time.monotonic() - t0, B.fmt_kib(r),
                                             B.fmt_kib(r - base), (r - base) / k,
                                             B.fmt_kib(B.proc_rollup_kib(pid)),
                                             B.fmt_kib(B.proc_rollup_kib(pid, "Anonymous"))))
            sys.stdout.flush()
        res["per"] = (res[n] - base) / n
        load.close_all()
        load = None
        time.sleep(1.5)
        res["after"] = sample(rss)
        print("  after the %d sessions closed: VmRSS %s (retained +%s)"
              % (n, B.fmt_kib(res["after"]), B.fmt_kib(res["after"] - base)))
    finally:
        if load is not None:
            load.close_all()
        B.stop_mxgate(srv)
    return res


def run_postfix(n, budget):
    main = dict(MAIN, default_process_limit=str(max(600, n + 100)))
    pf = B.PostfixRef("idle", main, ["127.0.0.1:{port} inet n - n - - smtpd"])
    load = None
    res = {}
    try:
        pf.start()
        time.sleep(2)
        _, base_rss, base_pss = pf.memory()
        print("  baseline: tree RSS %s, Pss %s" % (B.fmt_kib(base_rss), B.fmt_kib(base_pss)))
        load = new_load(pf.port, n)
        t0 = time.monotonic()
        open_sessions(load, n, min(150, budget.left() - 30))
        per, rss, pss = pf.memory()
        cnt, s_rss, s_pss = per.get("smtpd", [0, 0, 0])
        print("  %5d sessions past EHLO (%.1f s to open): %d smtpd processes, RSS %s, Pss %s; "
              "whole tree RSS %s, Pss %s" % (n, time.monotonic() - t0, cnt, B.fmt_kib(s_rss),
                                             B.fmt_kib(s_pss), B.fmt_kib(rss), B.fmt_kib(pss)))
        res["per_pss"] = s_pss / n
        res["per_rss"] = s_rss / n
        res["per_tree_pss"] = (pss - base_pss) / n
        res["smtpd"] = cnt
        print("  per session: smtpd Pss %.0f KiB, smtpd RSS %.0f KiB, tree Pss growth %.0f KiB"
              % (res["per_pss"], res["per_rss"], res["per_tree_pss"]))
    finally:
        if load is not None:
            load.close_all()
        pf.stop()
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", help="mxgate build dir (default bench/build, built here)")
    ap.add_argument("--sessions", type=int, default=5000)
    ap.add_argument("--postfix-sessions", type=int, default=500)
    ap.add_argument("--skip-postfix", action="store_true")
    args = ap.parse_args()
    budget, binary = B.prepare(args.build, args.sessions + 500)
    print("load: idle sessions (connect, banner, EHLO, 250 read, then nothing) from %d sources "
          "(%s ... %s)" % (len(SOURCES), SOURCES[0], SOURCES[-1]))
    print("\nmxgate:")
    sys.stdout.flush()
    mx = run_mxgate(binary, args.sessions, budget)
    pf = None
    if not args.skip_postfix:
        print("\npostfix:")
        sys.stdout.flush()
        pf = run_postfix(args.postfix_sessions, budget)
    budget.cancel()

    print("\nresults:")
    print("  mxgate  %.2f KiB/session at %d sessions (%.2f KiB/session at %d); goal <= %d KiB: %s"
          % (mx["per"], args.sessions, (mx[min(500, args.sessions)] - mx["base"]) /
             min(500, args.sessions), min(500, args.sessions), GOAL_KIB,
             "met" if mx["per"] <= GOAL_KIB else "MISSED"))
    if pf:
        print("  postfix %.0f KiB/session (smtpd Pss) at %d sessions; RSS %.0f KiB/session, "
              "tree Pss growth %.0f KiB/session" % (pf["per_pss"], args.postfix_sessions,
                                                    pf["per_rss"], pf["per_tree_pss"]))
        print("idle: mxgate %.1f KiB/session (%d sessions) vs postfix %.0f KiB/session "
              "(%d sessions): ratio %.0fx" % (mx["per"], args.sessions, pf["per_pss"],
                                              args.postfix_sessions,
                                              pf["per_pss"] / max(mx["per"], 0.01)))
    print("elapsed: %.0f s" % budget.elapsed())
    return 0


if __name__ == "__main__":
    sys.exit(main())
