#!/usr/bin/env python3
"""milter benchmark: messages per second with rspamd as a milter, mxgate against Postfix 3.7.

One real rspamd (Debian's; tests/system/milterfixture.Rspamd: its proxy worker in milter mode on
a unix socket in a temporary folder, one normal worker behind it, no redis, DNS to a port that
does not answer) serves both servers, started once for the run:
    mxgate   bench/build/mxgate (tests/system/harness.Server), virtual Maildir alice@virt.test
    postfix  Postfix 3.7 (scripts/postfix-ref), the same main.cf settings
Both get smtpd_milters = unix:<rspamd's socket>, milter_protocol = 6, milter_default_action =
tempfail (a milter failure is then a 4xx, which the load counts as a failure, not as a message),
smtpd_soft_error_limit = 1000 and smtpd_hard_error_limit = 2000 (each GTUBE 554 is an error).

Load: S sessions in parallel (one selectors loop in this process), each over one connection:
banner, EHLO, then M times MAIL FROM, RCPT TO:<alice@virt.test>, DATA, a ~2 KB plain-text mail
(From, To, Subject, Date, a unique Message-ID, MIME headers, 30 lines of prose), ".", each reply
awaited; QUIT.  Cases: clean mail from 1 and 10 sessions (every message must get 250), and the
GTUBE message from 10 sessions (every message must get rspamd's 554 5.7.1).

What is timed: from the first connect until every message is stored (clean cases: mxgate
replies 250 once the file is in new/, Postfix once the message is queued, and delivers after),
or until the last reply (GTUBE).  Checks, each a PROBLEM line and exit status 1: every reply as
expected; exactly the accepted count of files in new/ (none for GTUBE); every stored file carries
rspamd's headers (X-Spamd-Result, X-Rspamd-Server, X-Rspamd-Queue-Id, X-Rspamd-Action), which are
counted and printed.

    python3 bench/milter.py [--build DIR] [--repeats N] [--scale F] [-k CASE]

Needs root, rspamd (sh scripts/deps.sh --test) and Postfix.  Each run is capped at RUN_CAP
seconds, the whole script at 240 s; rspamd and both servers are stopped on any exit.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _benchlib as B  # noqa: E402

# (name, sessions, messages per session, kind)
CASES = (
    ("1x2KB", 1, 300, "clean"),
    ("10x2KB", 10, 60, "clean"),
    ("10xGTUBE", 10, 20, "gtube"),
)
REPEATS = 2
RUN_CAP = 30.0
BUDGET = 240
RCPT = "alice@virt.test"
RSPAMD_HEADERS = ("X-Spamd-Result", "X-Rspamd-Server", "X-Rspamd-Queue-Id", "X-Rspamd-Action")


def main_cf(milter):
    return dict(B.BASE_MAIN, **{
        "smtpd_client_connection_count_limit": "0",
        "default_process_limit": "200",
        "smtpd_milters": milter,
        "milter_default_action": "tempfail",
        "milter_protocol": "6",
        # a 554 after "." is an error for smtpd's error counter: at the defaults (10, 20) a
        # session of 40 GTUBE messages would sleep 1 s per reply from the 10th on and be cut
        # at the 20th, so the GTUBE case would measure smtpd_error_sleep_time
        "smtpd_soft_error_limit": "1000",
        "smtpd_hard_error_limit": "2000",
    })


PROSE = ("Thanks for the notes from Tuesday's meeting. I went through the figures again and "
         "the numbers for the second quarter look right to me now. ")


def clean_message(tag, n):
    body = []
    for i in range(30):
        body.append(("%2d. " % (i + 1)) + PROSE[: 60 + (i * 7) % 30])
    lines = ["From: Alice Example <alice@example.org>",
             "To: Bob <bob@virt.test>",
             "Subject: Notes from the meeting, part %d" % n,
             "Date: Tue, 1 Dec 2026 19:00:%02d +0000" % (n % 60),
             "Message-ID: <bench-%s-%d@example.org>" % (tag, n),
             "MIME-Version: 1.0",
             "Content-Type: text/plain; charset=us-ascii",
             "",
             "Hi Bob,", ""] + body + ["", "Best regards,", "Alice"]
    return "\r\n".join(lines)


def gtube_message(tag, n):
    import milterfixture as mf
    text = mf.GTUBE.replace("<gtube-1@example.org>", "<gtube-%s-%d@example.org>" % (tag, n))
    return "\r\n".join(text.rstrip("\n").split("\n"))


def header_names(path):
    names = []
    with open(path, "rb") as f:
        for line in f:
            if line in (b"\n", b"\r\n"):
                break
            if line[:1] not in (b" ", b"\t") and b":" in line:
                names.append(line.split(b":", 1)[0].decode("latin-1"))
    return names


# -- servers -------------------------------------------------------------------------------------

class Mxgate:
    name = "mxgate"

    def __init__(self, binary, milter):
        self.srv = B.start_mxgate(binary, main_cf(milter), None)
        self.port = self.srv.port
        self.new = os.path.join(self.srv.vmail, "alice", "new")

    def cpu_pid(self):
        return self.srv.pid

    def stop(self):
        B.stop_mxgate(self.srv)


class Postfix:
    name = "postfix"

    def __init__(self, milter):
        self.pf = B.PostfixRef("milter", main_cf(milter), ["127.0.0.1:{port} inet n - n - - smtpd"])
        self.pf.start()
        self.port = self.pf.port
        self.new = os.path.join(self.pf.vmail, "alice", "new")

    def cpu_pid(self):
        return self.pf.master_pid

    def stop(self):
        self.pf.stop()


# -- one run --------------------------------------------------------------------------------------

class Run:
    def __init__(self, srv, rspamd_pid, name, sessions, per, kind, cap):
        self.srv, self.name, self.sessions, self.per, self.kind = srv, name, sessions, per, kind
        self.rspamd_pid = rspamd_pid
        self.cap = cap
        self.total = sessions * per
        self.problems = []
        self.ok = 0           # 250 (clean) or 554 (gtube) after the "."
        self.other = []       # unexpected replies
        self.seconds = None
        self.with_headers = 0
        self.stored = 0

    def on_reply(self, load, c, code, lines, latency):
        st = c.data.setdefault("st", "banner")
        d = c.data
        if st == "banner":
            if code != 220:
                return self.bad(load, c, lines)
            d["st"], d["sent"] = "ehlo", 0
            return "EHLO client.example"
        if st == "ehlo":
            if code != 250:
                return self.bad(load, c, lines)
            return self.next_mail(c)
        if st == "mail":
            if code != 250:
                return self.bad(load, c, lines)
            d["st"] = "rcpt"
            return "RCPT TO:<%s>" % RCPT
        if st == "rcpt":
            if code != 250:
                return self.bad(load, c, lines)
            d["st"] = "data"
            return "DATA"
        if st == "data":
            if code != 354:
                return self.bad(load, c, lines)
            d["st"] = "dot"
            n = c.idx * self.per + d["sent"]
            msg = (clean_message if self.kind == "clean" else gtube_message)(self.name, n)
            return msg + "\r\n."
        if st == "dot":
            d["sent"] += 1
            want = "250 " if self.kind == "clean" else "554 5.7.1 Gtube pattern"
            if lines and lines[-1].startswith(want):
                self.ok += 1
                self.last_reply = time.monotonic()
            elif len(self.other) < 5:
                self.other.append(lines[-1] if lines else "?")
            else:
                self.other.append(None)
            return self.next_mail(c)
        if st == "quit":
            load.close(c)
            return None
        return self.bad(load, c, lines)

    def next_mail(self, c):
        if c.data["sent"] >= self.per:
            c.data["st"] = "quit"
            return "QUIT"
        c.data["st"] = "mail"
        return "MAIL FROM:<sender@client.example>"

    def bad(self, load, c, lines):
        self.problems.append("session %d: unexpected reply %r" % (c.idx, lines[-1] if lines else ""))
        load.close(c, "failed")
        return None

    def go(self):
        B.empty_dir(self.srv.new)
        cpu0 = B.tree_cpu_seconds(self.srv.cpu_pid())
        rcpu0 = B.tree_cpu_seconds(self.rspamd_pid)
        load = B.Load(self.srv.port, ["127.0.0.1"], self.sessions, self.on_reply, window=50)
        t0 = time.monotonic()
        self.last_reply = t0
        deadline = t0 + self.cap
        try:
            done = load.run_until(lambda: load.closed + load.failed == self.sessions, deadline)
        finally:
            load.close_all()
        if not done:
            self.problems.append("not done within %.0f s (%d of %d answered as expected)"
                                 % (self.cap, self.ok, self.total))
        if load.notes:
            self.problems.extend(load.notes)
        want_files = self.ok if self.kind == "clean" else 0
        while (time.monotonic() < deadline and B.count_files(self.srv.new) < want_files):
            time.sleep(0.01)
        t1 = time.monotonic() if self.kind == "clean" else self.last_reply
        if self.kind == "gtube":
            time.sleep(0.5)   # nothing may turn up in new/ afterwards either
        self.seconds = t1 - t0
        self.cpu = B.tree_cpu_seconds(self.srv.cpu_pid()) - cpu0
        self.rcpu = B.tree_cpu_seconds(self.rspamd_pid) - rcpu0
        if self.ok != self.total:
            others = [o for o in self.other if o]
            self.problems.append("%d of %d messages answered as expected; others: %d, e.g. %s"
                                 % (self.ok, self.total, len(self.other), others[:3]))
        files = [os.path.join(self.srv.new, f) for f in sorted(os.listdir(self.srv.new))] \
            if os.path.isdir(self.srv.new) else []
        self.stored = len(files)
        if self.stored != want_files:
            self.problems.append("%d files in new/, expected %d" % (self.stored, want_files))
        for p in files:
            names = header_names(p)
            if all(h in names for h in RSPAMD_HEADERS):
                self.with_headers += 1
        if self.with_headers != self.stored:
            self.problems.append("%d of %d stored messages lack rspamd's headers"
                                 % (self.stored - self.with_headers, self.stored))
        B.empty_dir(self.srv.new)
        return self

    def rate(self):
        if self.problems or not self.seconds:
            return None
        return self.total / self.seconds

    def describe(self):
        what = "stored, all with rspamd's headers" if self.kind == "clean" else "rejected 554 5.7.1"
        s = ("%-7s %d msgs in %.2f s = %s msg/s (%d %s; %d files with %s); CPU per msg: server "
             "%.2f ms, rspamd %.2f ms"
             % (self.srv.name, self.total, self.seconds or 0,
                "%.1f" % (self.total / self.seconds) if self.seconds else "?",
                self.ok if self.kind == "gtube" else self.stored, what, self.with_headers,
                "+".join(RSPAMD_HEADERS), 1000 * self.cpu / self.total,
                1000 * self.rcpu / self.total))
        for p in self.problems:
            s += "\n    PROBLEM: %s" % p
        return s


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", help="mxgate build dir (default bench/build, built here)")
    ap.add_argument("--repeats", type=int, default=REPEATS, help="runs per case and server")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every message count")
    ap.add_argument("-k", dest="only", help="only cases whose name contains this")
    args = ap.parse_args()
    cases = [(n, s, max(1, int(m * args.scale)), k) for n, s, m, k in CASES
             if not args.only or args.only in n]
    budget, binary = B.prepare(args.build, 4096, seconds=BUDGET)
    # milterfixture.Rspamd checks rspamd with build/tests/miltertest: use the bench build's
    build = os.path.dirname(binary)
    tool = os.path.join(build, "tests", "miltertest")
    if not os.access(tool, os.X_OK):
        rel = os.path.relpath(build, B.REPO)
        r = B.subprocess.run(["make", "-s", "BUILD=" + rel, "SANITIZE=",
                              os.path.join(rel, "tests", "miltertest")], cwd=B.REPO, timeout=240)
        if r.returncode != 0:
            raise SystemExit("building %s failed" % tool)
    os.environ["MXGATE_BUILD"] = build
    import milterfixture as mf
    try:
        ver = B.subprocess.run(["rspamd", "--version"], stdout=B.subprocess.PIPE,
                               stderr=B.subprocess.DEVNULL, timeout=10).stdout.decode().strip()
    except (OSError, B.subprocess.SubprocessError):
        ver = "?"
    print("  rspamd       %s" % (ver.splitlines()[0] if ver else "?"))
    print("load: SESSIONS in parallel from 127.0.0.1, each one connection: EHLO, then per message "
          "MAIL, RCPT TO:<%s>, DATA, the message, '.', each reply awaited; QUIT. %d run(s) per "
          "case and server, interleaved" % (RCPT, args.repeats))
    print("  clean message: %d bytes; GTUBE message: %d bytes"
          % (len(clean_message("x", 0)), len(gtube_message("x", 0))))
    for n, s, m, k in cases:
        print("  case %-9s %2d session(s) x %d messages (%s)" % (n, s, m, k))
    sys.stdout.flush()

    rspamd = mx = pf = None
    results = {}
    failed = False
    try:
        rspamd = mf.Rspamd().start()
        print("\nrspamd: milter %s, up in %.1f s (pid %d)" % (rspamd.milter, rspamd.startup_seconds,
                                                             rspamd.proc.pid))
        mx = Mxgate(binary, rspamd.milter)
        pf = Postfix(rspamd.milter)
        print("servers: mxgate on %d (pid %d), postfix on %d (master pid %s)"
              % (mx.port, mx.srv.pid, pf.port, pf.pf.master_pid))
        for srv in (mx, pf):      # untimed warm-up: 20 clean messages each
            w = Run(srv, rspamd.proc.pid, "warmup", 2, 10, "clean", 30).go()
            if w.problems:
                raise SystemExit("warm-up against %s failed: %s" % (srv.name, "; ".join(w.problems)))
        for name, sessions, per, kind in cases:
            print("\n%s: %d session(s) x %d %s messages" % (name, sessions, per, kind))
            for rep in range(args.repeats):
                for srv in (mx, pf):
                    cap = min(RUN_CAP, budget.left() - 25)
                    if cap < 5:
                        print("  run %d %s: skipped, the time budget is spent" % (rep + 1, srv.name))
                        failed = True
                        continue
                    r = Run(srv, rspamd.proc.pid, "%s-%d" % (name, rep), sessions, per, kind,
                            cap).go()
                    results.setdefault((name, srv.name), []).append(r)
                    failed = failed or bool(r.problems)
                    print("  run %d %s" % (rep + 1, r.describe()))
                    sys.stdout.flush()
    finally:
        for s in (mx, pf):
            if s is not None:
                s.stop()
        if rspamd is not None:
            rspamd.stop()
    budget.cancel()

    print("\nresults (median of %d runs; clean: messages / seconds until all were stored; "
          "GTUBE: 554 replies / seconds until the last one):" % args.repeats)
    for name, sessions, per, kind in cases:
        med = {}
        for s in ("mxgate", "postfix"):
            rates = [r.rate() for r in results.get((name, s), [])]
            ok = [x for x in rates if x]
            med[s] = statistics.median(ok) if ok and len(ok) == len(rates) else None
            if ok:
                print("  %-9s %-8s median %6.1f msg/s (min %.1f, max %.1f over %d run(s))%s"
                      % (name, s, statistics.median(ok), min(ok), max(ok), len(ok),
                         "" if len(ok) == len(rates) else ", %d FAILED" % (len(rates) - len(ok))))
        unit = "msg/s" if kind == "clean" else "5xx/s"
        print("milter %s: mxgate %s vs postfix %s: ratio %s"
              % (name, "%.1f %s" % (med["mxgate"], unit) if med["mxgate"] else "FAILED",
                 "%.1f %s" % (med["postfix"], unit) if med["postfix"] else "FAILED",
                 "%.2fx" % (med["mxgate"] / med["postfix"]) if med["mxgate"] and med["postfix"]
                 else "--"))
    print("loadavg at the end: %s" % B.loadavg())
    print("elapsed: %.0f s" % budget.elapsed())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
