#!/usr/bin/env python3
"""throughput benchmark: messages per second from Postfix's smtp-source on loopback.

One run drives the same smtp-source load against three receivers on 127.0.0.1:
    smtp-sink  Postfix's test server: replies 250 to everything and stores nothing (the
               ceiling the client and the loopback allow)
    postfix    Postfix 3.7 (scripts/postfix-ref), delivering to a virtual Maildir
    mxgate     bench/build/mxgate (tests/system/harness.Server), delivering to a virtual Maildir
Cases (sessions x message size): 1, 20 and 100 sessions with 1 KB and with 100 KB messages, a
fixed message count each, the same for the three receivers.  The results end with one table.  Each case is run REPEATS times, the receivers interleaved
(sink, mxgate, postfix, sink, ...); the median rate is reported.

smtp-source (without -d) opens a new connection for every message: connect, banner, HELO,
MAIL FROM, RCPT TO:<alice@virt.test> (a valid virtual mailbox), DATA, the message, ".", QUIT.
It aborts on any reply other than the expected positive one, so exit status 0 means every
message got its 250.

What is timed: from starting smtp-source to the moment every message is stored.  smtp-sink:
until smtp-source exits (its own counter, -c, must then show N more messages).  Postfix and
mxgate: until smtp-source has exited and N new files are in new/ (polled every 10 ms after the
exit).  mxgate replies 250 once the message is in new/, so the two coincide; Postfix replies 250
once the message is in its queue and delivers afterwards, so its clock runs on until the last
delivery.  The time of smtp-source's exit is printed beside it.

    python3 bench/throughput.py [--build DIR] [--repeats N] [--scale F] [--reuse] [-k CASE]
                                [--no-journal] [--root-fs]

The receivers store on a new ext4 file system of the run's own (mkfs.ext4's defaults, with a
journal, loop-mounted; _benchlib.FreshFs says why), or in /tmp with --root-fs.

Needs root.  Each smtp-source run is capped at RUN_CAP seconds, the whole script at 240 s;
every server is stopped on any exit.
"""

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _benchlib as B  # noqa: E402

# (name, parallel sessions, payload bytes (smtp-source -l), messages)
CASES = (
    ("1x1KB", 1, 1024, 2000),
    ("20x1KB", 20, 1024, 3000),
    ("100x1KB", 100, 1024, 3000),
    ("1x100KB", 1, 100 * 1024, 300),
    ("20x100KB", 20, 100 * 1024, 1500),
    ("100x100KB", 100, 100 * 1024, 1500),
)
REPEATS = 3
WARMUP = (20, 200)            # sessions, messages: untimed, once per receiver
RUN_CAP = 30.0                # seconds for one smtp-source run (and Postfix's deliveries)
BUDGET = 240
SENDER = "sender@client.example"
RCPT = "alice@virt.test"
HELO = "client.example"

MAIN = dict(B.BASE_MAIN, **{
    "smtpd_client_connection_count_limit": "0",  # 100 sessions from 127.0.0.1 (default 50)
    "default_process_limit": "200",             # smtpd maxproc (Postfix) / session cap (mxgate)
})


def tool(name):
    path = shutil.which(name) or os.path.join("/usr/sbin", name)
    if not os.access(path, os.X_OK):
        raise SystemExit("%s is missing: it comes with the postfix package (make test-deps)" % name)
    return path


def count_files(d):
    try:
        with os.scandir(d) as it:
            return sum(1 for _ in it)
    except FileNotFoundError:
        return 0


def empty_dir(d):
    """Start the next run with an empty new/, without deleting a file now.

    The root file system here is ext4 without a journal: there, allocating an inode skips
    every inode of the group freed in the last 60 s (360 s while its inode table block is
    dirty), one inode table look-up each (ext4 ialloc.c, recently_deleted()), and a file in
    tmp/ is allocated in its directory's group.  Deleting the 3000 files of one run made each
    allocation of the next runs scan them, under tmp/'s lock (perf: half of mxgate's CPU in
    recently_deleted() and in spinning on that lock; run 1 of 3 at 1833 msg/s, run 3 at 571,
    Postfix alike).  So the files are moved aside, in a directory beside the Maildir, and
    deleted with the receiver's directory when the script ends."""
    if not os.path.isdir(d):
        return
    st = os.stat(d)
    trash = os.path.join(os.path.dirname(os.path.dirname(os.path.normpath(d))), ".bench-trash")
    os.makedirs(trash, exist_ok=True)
    os.rename(d, os.path.join(trash, "new.%d" % len(os.listdir(trash))))
    os.mkdir(d, st.st_mode & 0o7777)
    os.chown(d, st.st_uid, st.st_gid)


def spread(d):
    """Give the directories made below d block groups of their own (ext4's Orlov spreading,
    chattr +T), so that one receiver's files are not allocated beside another's.

    The same recently_deleted() scan as above, across receivers: Postfix deletes its queue
    file of every message, and the receivers' directories, all made in /tmp one after the
    other, had their inodes in the same group (new/ of both Maildirs in one group of 8192).
    So each mxgate run that came right after a Postfix run allocated its files past Postfix's
    3000 freed inodes: in one interleaved run here, mxgate made 732 then 1314 msg/s right
    after Postfix, 2114 and 1973 alone.  With the receivers' Maildirs (and Postfix's queue)
    in groups of their own, each pays only for its own deletions: Postfix still for its queue
    files, as it would in production, and mxgate, which deletes nothing for these messages,
    for none.  Where chattr cannot set it (another file system), the runs go on without."""
    r = subprocess.run(["chattr", "+T", d], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if r.returncode != 0:
        print("  note: chattr +T %s: %s (directories not spread)"
              % (d, r.stderr.decode("utf-8", "replace").strip()))


# -- receivers ------------------------------------------------------------------------------

class Sink:
    """smtp-sink -c: its counter line ("... mesg=N") is how many messages it took."""
    name = "smtp-sink"
    stores = False

    def __init__(self):
        self.port = B.harness.free_port()
        self.dir = None
        self.proc = None

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="mxgate-bench-sink-")
        self.out = os.path.join(self.dir, "counters")
        with open(self.out, "wb") as f:
            # -u: it must drop root; 1024: its listen backlog
            self.proc = subprocess.Popen([tool("smtp-sink"), "-c", "-u", "nobody",
                                          "127.0.0.1:%d" % self.port, "1024"],
                                         stdin=subprocess.DEVNULL, stdout=f,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not B.harness.port_listening(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("smtp-sink did not start: %s" % self.tail())
            time.sleep(0.05)

    def tail(self):
        try:
            with open(self.out, "rb") as f:
                f.seek(max(0, os.path.getsize(self.out) - 400))
                return f.read().decode("latin-1")
        except OSError:
            return ""

    def cpu_pid(self):
        return self.proc.pid

    def counted(self):
        m = re.findall(r"mesg=(\d+)", self.tail())
        return int(m[-1]) if m else 0

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


class Mxgate:
    name = "mxgate"
    stores = True

    def __init__(self, binary, journal=True):
        self.binary = binary
        self.srv = None
        self.main = MAIN if journal else dict(MAIN, mxgate_delivery_journal="no")

    def start(self):
        self.srv = B.start_mxgate(self.binary, self.main, None)
        spread(self.srv.vmail)              # alice/ is made at the first delivery
        self.port = self.srv.port
        self.new = os.path.join(self.srv.vmail, "alice", "new")
        self.tmp = os.path.join(self.srv.vmail, "alice", "tmp")

    def cpu_pid(self):
        return self.srv.pid

    def stop(self):
        if self.srv is not None:
            B.stop_mxgate(self.srv)
            self.srv = None


class Postfix:
    name = "postfix"
    stores = True

    def __init__(self, base="/tmp"):
        self.pf = None
        self.base = base

    def start(self):
        self.pf = B.PostfixRef("throughput", MAIN, ["127.0.0.1:{port} inet n - n - - smtpd"],
                               base=self.base)
        spread(self.pf.dir)                 # its queue/, made by postfix start
        spread(self.pf.vmail)               # alice/, made at the first delivery
        self.pf.start()
        self.port = self.pf.port
        self.new = os.path.join(self.pf.vmail, "alice", "new")
        self.tmp = os.path.join(self.pf.vmail, "alice", "tmp")

    def cpu_pid(self):
        return self.pf.master_pid

    def stop(self):
        if self.pf is not None:
            self.pf.stop()
            # its directory stays until the next start: not the runs' files (empty_dir())
            shutil.rmtree(os.path.join(self.pf.vmail, ".bench-trash"), ignore_errors=True)
            self.pf = None


# -- one smtp-source run ------------------------------------------------------------------------

class Run:
    def __init__(self, rcv, sessions, size, count, reuse, cap):
        self.rcv, self.sessions, self.size, self.count = rcv, sessions, size, count
        self.reuse, self.cap = reuse, cap
        self.problems = []
        self.accepted_s = self.stored_s = None
        self.stored = 0
        self.disk_bytes = None
        self.server_cpu = self.client_cpu = None

    def rate(self):
        if self.stored_s is None or self.problems:
            return None
        return self.count / self.stored_s

    def go(self):
        rcv = self.rcv
        cmd = [tool("smtp-source"), "-s", str(self.sessions), "-m", str(self.count),
               "-l", str(self.size), "-f", SENDER, "-t", RCPT, "-M", HELO]
        if self.reuse:
            cmd.append("-d")
        cmd.append("127.0.0.1:%d" % rcv.port)
        before = rcv.counted() if not rcv.stores else count_files(rcv.new)
        cpu0 = B.tree_cpu_seconds(rcv.cpu_pid())
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
        try:
            out, _ = p.communicate(timeout=self.cap)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
            self.problems.append("smtp-source still running after the %.0f s cap: killed" % self.cap)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.accepted_s = time.monotonic() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.client_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        if p.returncode != 0 and not self.problems:
            self.problems.append("smtp-source exit status %d: %s"
                                 % (p.returncode, out.decode("utf-8", "replace").strip()[-300:]))
        if not rcv.stores:
            time.sleep(0.05)                      # its counter is written after the last QUIT
            self.stored = rcv.counted() - before
            self.stored_s = self.accepted_s
            self.server_cpu = B.tree_cpu_seconds(rcv.cpu_pid()) - cpu0
            if self.stored != self.count:
                self.problems.append("smtp-sink counted %d messages, expected %d"
                                     % (self.stored, self.count))
            return self
        # Every message must be a file in new/.  Postfix: wait for its deliveries.
        deadline = t0 + self.cap
        while True:
            self.stored = count_files(rcv.new) - before
            if self.stored >= self.count or time.monotonic() > deadline or self.problems:
                break
            time.sleep(0.01)
        self.stored_s = time.monotonic() - t0
        self.server_cpu = B.tree_cpu_seconds(rcv.cpu_pid()) - cpu0
        if self.stored != self.count:
            self.problems.append("%d of %d messages in new/ after %.1f s"
                                 % (self.stored, self.count, self.stored_s))
        self.check_files()
        return self

    def check_files(self):
        rcv = self.rcv
        names = os.listdir(rcv.new)
        if names:
            path = os.path.join(rcv.new, names[0])
            headers, body = B.harness.read_message(path)
            self.disk_bytes = os.path.getsize(path)
            rp = [v for n, v in headers if n.lower() == "return-path"]
            if rp != ["<%s>" % SENDER]:
                self.problems.append("%s: Return-Path %r" % (path, rp))
            # -l counts the payload on the wire, with CRLF line ends; the file has LF
            if len(body) + body.count(b"\n") < self.size:
                self.problems.append("%s: body of %d bytes (%d lines), sent %d"
                                     % (path, len(body), body.count(b"\n"), self.size))
        left = count_files(rcv.tmp)
        if left:
            self.problems.append("%d file(s) left in tmp/" % left)
        empty_dir(rcv.new)      # the next run starts with an empty Maildir

    def describe(self):
        s = "%-9s %5d msgs in %6.2f s" % (self.rcv.name, self.count, self.stored_s or 0)
        r = self.rate()
        s += " = %6.0f msg/s" % r if r else " =    --- msg/s"
        if self.server_cpu is not None:
            s += "; CPU per msg: server %.3f ms, smtp-source %.3f ms" % (
                1000 * self.server_cpu / self.count, 1000 * self.client_cpu / self.count)
        if self.rcv.stores and self.accepted_s is not None:
            s += "  (smtp-source done at %.2f s = %.0f msg/s)" % (self.accepted_s,
                                                                 self.count / self.accepted_s)
        if self.rcv.stores and self.disk_bytes:
            s += "  [%d bytes per stored message]" % self.disk_bytes
        elif not self.rcv.stores:
            s += "  [sink counted %d]" % self.stored
        for p in self.problems:
            s += "\n      PROBLEM: %s" % p
        return s


def fmt_rate(r):
    return "%.0f msg/s" % r if r else "FAILED"


def ratio(a, b):
    return "%.2f" % (a / b) if a and b else "--"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", help="mxgate build dir (default bench/build, built here)")
    ap.add_argument("--repeats", type=int, default=REPEATS, help="runs per case and receiver")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every message count")
    ap.add_argument("--reuse", action="store_true",
                    help="smtp-source -d: all of a session's messages over one connection")
    ap.add_argument("-k", dest="only", help="only cases whose name contains this")
    ap.add_argument("--no-journal", action="store_true",
                    help="mxgate with mxgate_delivery_journal = no (the fsync path)")
    ap.add_argument("--root-fs", action="store_true",
                    help="store in /tmp, not on a new file system of the run's own")
    args = ap.parse_args()
    cases = [(n, s, l, max(s, int(m * args.scale))) for n, s, l, m in CASES
             if not args.only or args.only in n]
    budget, binary = B.prepare(args.build, 4096, seconds=BUDGET)
    print("load: smtp-source -s SESSIONS -m COUNT -l SIZE -f %s -t %s -M %s%s 127.0.0.1:PORT; "
          "%s; %d run(s) per case and receiver, interleaved; untimed warm-up %d sessions x %d "
          "messages per receiver"
          % (SENDER, RCPT, HELO, " -d" if args.reuse else "",
             "one connection per session (-d)" if args.reuse else "one connection per message",
             args.repeats, WARMUP[0], WARMUP[1]))
    for n, s, l, m in cases:
        print("  case %-9s %3d session(s), %6d-byte payload, %d messages" % (n, s, l, m))
    sys.stdout.flush()

    if args.no_journal:
        print("mxgate: mxgate_delivery_journal = no")
    fs = B.FreshFs()
    if args.root_fs or not fs.enter():
        print("file system: /tmp (the machine's; its earlier deletions slow inode allocation)")
    receivers = [Sink(), Mxgate(binary, not args.no_journal), Postfix(fs.base())]
    results = {}
    failed = False
    try:
        for rcv in receivers:
            rcv.start()
        print("\nreceivers: smtp-sink on %d, mxgate on %d (pid %d), postfix on %d (master pid %s)"
              % (receivers[0].port, receivers[1].port, receivers[1].srv.pid, receivers[2].port,
                 receivers[2].pf.master_pid))
        for rcv in receivers:
            w = Run(rcv, WARMUP[0], 1024, WARMUP[1], args.reuse, RUN_CAP).go()
            if w.problems:
                raise SystemExit("warm-up against %s failed: %s" % (rcv.name, "; ".join(w.problems)))
        for name, sessions, size, count in cases:
            print("\n%s: %d session(s), %d-byte messages, %d messages per run" % (name, sessions,
                                                                                 size, count))
            for rep in range(args.repeats):
                for rcv in receivers:
                    cap = min(RUN_CAP, budget.left() - 20)
                    if cap < 5:
                        print("  run %d %s: skipped, the time budget is spent" % (rep + 1, rcv.name))
                        failed = True
                        continue
                    r = Run(rcv, sessions, size, count, args.reuse, cap).go()
                    results.setdefault((name, rcv.name), []).append(r)
                    failed = failed or bool(r.problems)
                    print("  run %d %s" % (rep + 1, r.describe()))
                    sys.stdout.flush()
    finally:
        for rcv in receivers:
            rcv.stop()
        fs.leave()
    budget.cancel()

    print("\nresults (median of %d runs; msg/s = messages / seconds until all were stored; "
          "smtp-source %s):" % (args.repeats, "-d" if args.reuse else "one connection per message"))
    for name, sessions, size, count in cases:
        med = {}
        for rcv in ("smtp-sink", "mxgate", "postfix"):
            runs = results.get((name, rcv), [])
            rates = [r.rate() for r in runs]
            ok = [x for x in rates if x]
            med[rcv] = statistics.median(ok) if ok and len(ok) == len(rates) else None
            if ok:
                print("  %-9s %-9s median %6.0f msg/s (min %.0f, max %.0f over %d run(s))%s"
                      % (name, rcv, statistics.median(ok), min(ok), max(ok), len(ok),
                         "" if len(ok) == len(rates) else ", %d FAILED" % (len(rates) - len(ok))))
        print("throughput %s: mxgate %s, smtp-sink %s, postfix %s: mxgate/sink %s, "
              "mxgate/postfix %s" % (name, fmt_rate(med["mxgate"]), fmt_rate(med["smtp-sink"]),
                                     fmt_rate(med["postfix"]), ratio(med["mxgate"], med["smtp-sink"]),
                                     ratio(med["mxgate"], med["postfix"])))
    print("\ntable (msg/s, median; ratios of mxgate's rate):")
    print("  %-10s %10s %10s %10s %12s %14s" % ("case", "smtp-sink", "mxgate", "postfix",
                                               "mxgate/sink", "mxgate/postfix"))
    for name, sessions, size, count in cases:
        med = {}
        for rcv in ("smtp-sink", "mxgate", "postfix"):
            rates = [r.rate() for r in results.get((name, rcv), [])]
            ok = [x for x in rates if x]
            med[rcv] = statistics.median(ok) if ok and len(ok) == len(rates) else None
        print("  %-10s %10s %10s %10s %12s %14s"
              % (name, "%.0f" % med["smtp-sink"] if med["smtp-sink"] else "FAILED",
                 "%.0f" % med["mxgate"] if med["mxgate"] else "FAILED",
                 "%.0f" % med["postfix"] if med["postfix"] else "FAILED",
                 ratio(med["mxgate"], med["smtp-sink"]), ratio(med["mxgate"], med["postfix"])))
    print("loadavg at the end: %s" % B.loadavg())
    print("elapsed: %.0f s" % budget.elapsed())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
