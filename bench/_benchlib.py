"""_benchlib: shared pieces of the mxgate benchmarks (Python 3 stdlib only).

    build_mxgate()     `make BUILD=<dir> <dir>/mxgate` (default bench/build, a non-sanitized
                       build of its own) and refuse a binary whose .flags show -fsanitize
    start_mxgate()     tests/system/harness.Server: scratch config dir, started as root (it
                       drops to the mxgate user), virtual mailboxes owned by that user
    PostfixRef         Postfix 3.7 from a scratch dir via scripts/postfix-ref
    proc_* / tree_*    RSS (VmRSS) and Pss (smaps_rollup) of a process or a process tree, and
                       the CPU time of a process tree
    Load               one selectors loop that drives many non-blocking SMTP clients; what a
                       client sends next is decided by a per-benchmark on_reply() function
    Budget             the whole run is time-bounded (SIGALRM), cleanup runs on any exit
    count_files / empty_dir   a Maildir's new/: how many files, and emptied between runs

Nothing here is run by `make test`.
"""

import json
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(REPO, "tests", "system"))
import harness  # noqa: E402  (tests/system/harness.py)

POSTFIX_REF = os.environ.get("POSTFIX_REF") or os.path.join(REPO, "scripts", "postfix-ref")
DEFAULT_BUILD = os.path.join(BENCH, "build")


# The main.cf settings every benchmark gives both servers (each adds its own on top): no DNS in
# the picture (smtpd_peername_lookup), Postfix 3.7 with DESIGN.md's safe defaults stated.
BASE_MAIN = {
    "myhostname": "mx.example.test",
    "mydestination": "local.test",
    "alias_maps": "",
    "mynetworks": "192.0.2.0/24",
    "compatibility_level": "3.6",
    "smtpd_peername_lookup": "no",
    "smtpd_forbid_unauth_pipelining": "yes",
    "smtpd_forbid_bare_newline": "normalize",
}


# -- time budget and cleanup ------------------------------------------------------------------

class BudgetExceeded(Exception):
    pass


class Budget:
    """A hard deadline for the whole script: SIGALRM raises BudgetExceeded in the main
    thread, so try/finally blocks stop the daemons.  SIGTERM/SIGINT do the same."""

    def __init__(self, seconds):
        self.t0 = time.monotonic()
        self.seconds = seconds
        signal.signal(signal.SIGALRM, self._expired)
        signal.signal(signal.SIGTERM, self._interrupted)
        signal.alarm(int(seconds))

    def _expired(self, *a):
        raise BudgetExceeded("time budget of %ds exceeded" % self.seconds)

    def _interrupted(self, signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)

    def left(self):
        return self.seconds - (time.monotonic() - self.t0)

    def elapsed(self):
        return time.monotonic() - self.t0

    def cancel(self):
        signal.alarm(0)


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = hard if hard == resource.RLIM_INFINITY else min(max(soft, want), hard)
    if new > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < want:
        raise SystemExit("RLIMIT_NOFILE is %d, need %d (raise the hard limit)" % (soft, want))
    return soft


# -- environment -------------------------------------------------------------------------------

def _first(path, pattern):
    try:
        with open(path) as f:
            for line in f:
                m = re.match(pattern, line)
                if m:
                    return m.group(1).strip()
    except OSError:
        pass
    return "?"


def filesystem(path):
    """"type (device)" of the mount that holds path, from /proc/mounts."""
    path = os.path.realpath(path)
    best = ("", "?", "?")
    try:
        with open("/proc/mounts") as f:
            for line in f:
                dev, mnt, typ = line.split()[:3]
                mnt = mnt.replace("\\040", " ")
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[0]):
                    best = (mnt, typ, dev)
    except OSError:
        pass
    return "%s (%s on %s)" % (best[1], best[2], best[0] or "?")


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def print_environment(binary):
    try:
        pf = subprocess.run(["postconf", "-dh", "mail_version"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, timeout=10).stdout.decode().strip()
    except (OSError, subprocess.SubprocessError):
        pf = "?"
    flags = ""
    try:
        with open(os.path.join(os.path.dirname(binary), ".flags")) as f:
            flags = f.read().strip()
    except OSError:
        pass
    print("environment:")
    print("  nproc        %d" % os.cpu_count())
    print("  cpu          %s" % _first("/proc/cpuinfo", r"model name\s*:\s*(.*)"))
    print("  memory       %s" % _first("/proc/meminfo", r"MemTotal:\s*(.*)"))
    print("  kernel       %s %s" % (platform.system(), platform.release()))
    print("  python       %s" % platform.python_version())
    print("  postfix      %s" % pf)
    print("  mxgate       %s" % binary)
    print("  build flags  %s" % flags)
    print("  nofile       %d" % resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    print("  /tmp         %s (scratch dirs, Maildirs and Postfix's queue)" % filesystem("/tmp"))
    print("  loadavg      %s (at start; other work on the machine skews the figures)" % loadavg())
    print("  date         %s" % time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    sys.stdout.flush()


# -- mxgate ------------------------------------------------------------------------------------

def build_mxgate(build_dir=None):
    """Build (incrementally) a non-sanitized mxgate and return the binary's path.  A build
    directory outside this repository (another checkout's, say the commit a change is measured
    against) is used as it is: this repository's sources are not built into it."""
    build_dir = os.path.abspath(build_dir or os.environ.get("MXGATE_BENCH_BUILD") or DEFAULT_BUILD)
    rel = os.path.relpath(build_dir, REPO)
    if rel.startswith(".."):
        if not os.access(os.path.join(build_dir, "mxgate"), os.X_OK):
            raise SystemExit("%s/mxgate is missing: build it in its own checkout" % build_dir)
    else:
        r = subprocess.run(["make", "-s", "BUILD=" + rel, "SANITIZE=", os.path.join(rel, "mxgate")],
                           cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=240)
        if r.returncode != 0:
            sys.stdout.write(r.stdout.decode("utf-8", "replace"))
            raise SystemExit("building mxgate into %s failed" % build_dir)
    with open(os.path.join(build_dir, ".flags")) as f:
        flags = f.read()
    if "-fsanitize" in flags:
        raise SystemExit("%s/.flags shows a sanitized build (%s): refusing to benchmark it"
                         % (build_dir, flags.strip()))
    return os.path.join(build_dir, "mxgate")


def start_mxgate(binary, main, master, virtual_users=("alice",)):
    srv = harness.Server(main=dict(main), master=master, virtual_users=list(virtual_users),
                         binary=binary)
    try:
        srv.start()
    except BaseException:
        srv.stop()
        raise
    return srv


def stop_mxgate(srv):
    if srv is None:
        return
    problems = srv.stop()
    if problems:
        print("  mxgate stop: %s (dir kept: %s)" % ("; ".join(problems), srv.dir))
    else:
        shutil.rmtree(srv.dir, ignore_errors=True)


# -- /proc --------------------------------------------------------------------------------------

def _proc_kib(path, field):
    """The number after "<field>:" in a /proc file (kB), 0 when absent."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def proc_status_kib(pid, field="VmRSS"):
    return _proc_kib("/proc/%d/status" % pid, field)


def proc_rollup_kib(pid, field="Pss"):
    return _proc_kib("/proc/%d/smaps_rollup" % pid, field)


def proc_comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return "?"


def proc_tree(root):
    """root and all its descendants (from the ppid field of /proc/*/stat)."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_memory(root):
    """{comm: [count, rss_kib, pss_kib]} and totals for a process tree."""
    per = {}
    tot_rss = tot_pss = 0
    for pid in proc_tree(root):
        rss = proc_status_kib(pid)
        pss = proc_rollup_kib(pid)
        e = per.setdefault(proc_comm(pid), [0, 0, 0])
        e[0] += 1
        e[1] += rss
        e[2] += pss
        tot_rss += rss
        tot_pss += pss
    return per, tot_rss, tot_pss


def tree_cpu_seconds(root):
    """User + system CPU seconds of a process tree: each live member's own time plus the time
    of the children it has reaped (cutime/cstime), so processes that exited in between (a
    Postfix smtpd past max_use) still count.  Only differences of two calls mean anything."""
    tick = float(os.sysconf("SC_CLK_TCK"))
    total = 0
    for pid in proc_tree(root):
        try:
            with open("/proc/%d/stat" % pid) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        total += sum(int(x) for x in fields[11:15])   # utime stime cutime cstime
    return total / tick


def fmt_kib(k):
    if k >= 1024 * 1024:
        return "%.1f GiB" % (k / 1048576.0)
    if k >= 1024:
        return "%.1f MiB" % (k / 1024.0)
    return "%d KiB" % k


# -- a file system of its own ------------------------------------------------------------------

class FreshFs:
    """A new, empty ext4 file system (mkfs.ext4's defaults, with a journal, as a Debian
    install makes it), loop-mounted at MNT for one benchmark run, so that what the receivers
    store is measured on a file system that no earlier work has filled and emptied.  While
    it is entered, tempfile.mkdtemp() (the receivers' directories) makes its directories
    there.  Its image is a sparse file in /var/tmp; both are removed on exit.

    Why: on the root file system here (ext4 without a journal), allocating an inode skips
    the inodes that other work freed in the last minutes (ext4 ialloc.c, recently_deleted()),
    so the storing receivers' rates depend on what ran before (a test suite halves them).
    enter() returns False, and prints why, when the machine cannot mount one (no loop device,
    no privilege): the run then goes on in /tmp."""

    MNT = "/tmp/mxgate-bench-fs"
    IMAGE = "/var/tmp/mxgate-bench-fs.img"

    def __init__(self, size="16G"):
        self.size = size
        self.mounted = False

    def _run(self, *cmd):
        r = subprocess.run(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if r.returncode != 0:
            raise OSError("%s: %s" % (" ".join(cmd), r.stderr.decode("utf-8", "replace").strip()))

    def enter(self):
        subprocess.run(["umount", self.MNT], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if os.path.exists(self.IMAGE):
                os.unlink(self.IMAGE)
            self._run("truncate", "-s", self.size, self.IMAGE)
            self._run("mkfs.ext4", "-q", "-F", self.IMAGE)
            os.makedirs(self.MNT, exist_ok=True)
            self._run("mount", "-o", "loop", self.IMAGE, self.MNT)
        except OSError as e:
            print("note: no file system of its own (%s): the receivers store in /tmp" % e)
            self.leave()
            return False
        self.mounted = True
        os.chmod(self.MNT, 0o1777)
        tempfile.tempdir = self.MNT
        print("file system: a new ext4 (mkfs.ext4 defaults, %s sparse image %s), mounted at %s"
              % (self.size, self.IMAGE, self.MNT))
        return True

    def base(self):
        return self.MNT if self.mounted else "/tmp"

    def leave(self):
        tempfile.tempdir = None
        if self.mounted:
            r = subprocess.run(["umount", self.MNT], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
            if r.returncode != 0:
                print("note: umount %s: %s" % (self.MNT, r.stderr.decode("utf-8", "replace")))
            self.mounted = False
        if os.path.exists(self.IMAGE):
            os.unlink(self.IMAGE)


# -- Postfix 3.7 ----------------------------------------------------------------------------------

class PostfixRef:
    """Postfix 3.7 from a fixed scratch directory (fixed, because postfix-ref appends each new
    directory to alternate_config_directories in /etc/postfix/main.cf)."""

    def __init__(self, name, main, master_lines, vuser="nobody", base="/tmp"):
        if os.geteuid() != 0:
            raise SystemExit("Postfix needs root (postfix-ref)")
        if not os.path.exists(POSTFIX_REF):
            raise SystemExit("missing %s" % POSTFIX_REF)
        self.dir = os.path.join(base, "mxgate-bench-postfix-" + name)
        self.port = harness.free_port()
        self.master_pid = None
        self.pids_seen = set()
        self.started = False
        self._stop_leftover()
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        import pwd
        pw = pwd.getpwnam(vuser)
        self.vmail = os.path.join(self.dir, "vmail")
        os.mkdir(self.vmail)
        os.chown(self.vmail, pw.pw_uid, pw.pw_gid)
        vmap = os.path.join(self.dir, "vmailbox")
        with open(vmap, "w") as f:
            f.write("alice@virt.test alice/\n")
        params = dict(main)          # a benchmark's own virtual_* settings win
        for k, v in (("virtual_mailbox_domains", "virt.test"),
                     ("virtual_mailbox_maps", "texthash:" + vmap),
                     ("virtual_mailbox_base", self.vmail),
                     ("virtual_uid_maps", "static:%d" % pw.pw_uid),
                     ("virtual_gid_maps", "static:%d" % pw.pw_gid)):
            params.setdefault(k, v)
        with open(os.path.join(self.dir, "main.cf"), "w") as f:
            f.write(harness.format_main_cf(params))
        with open(os.path.join(self.dir, "master.cf"), "w") as f:
            for line in master_lines:
                f.write(line.replace("{port}", str(self.port)) + "\n")

    def _pidfile_pid(self):
        try:
            with open(os.path.join(self.dir, "queue", "pid", "master.pid")) as f:
                pid = int(f.read().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def _stop_leftover(self):
        """A previous run that was killed may have left this instance running."""
        if os.path.isdir(self.dir) and self._pidfile_pid():
            subprocess.run(["sh", POSTFIX_REF, "stop", self.dir], timeout=60,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self, timeout=30):
        r = subprocess.run(["sh", POSTFIX_REF, "start", self.dir], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        self.started = True
        if r.returncode != 0:
            raise SystemExit("postfix-ref start failed: %s" % r.stdout.decode("utf-8", "replace"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.master_pid = self._pidfile_pid()
            if self.master_pid and harness.port_listening(self.port):
                return self
            time.sleep(0.1)
        raise SystemExit("Postfix not listening on %d within %ds (see %s/maillog)"
                         % (self.port, timeout, self.dir))

    def memory(self):
        per, rss, pss = tree_memory(self.master_pid)
        self.pids_seen.update(proc_tree(self.master_pid))
        return per, rss, pss

    def stop(self):
        if not self.started:
            return
        self.started = False
        if self.master_pid:
            self.pids_seen.update(proc_tree(self.master_pid))
        subprocess.run(["sh", POSTFIX_REF, "stop", self.dir], timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Postfix's master SIGTERMs its children; wait for them, then SIGKILL stragglers
        # (only processes of this instance's tree, by pid).
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            alive = [p for p in self.pids_seen if os.path.exists("/proc/%d" % p)
                     and proc_comm(p) != "?"]
            if not alive:
                break
            time.sleep(0.2)
        else:
            for p in self.pids_seen:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass


# -- SMTP load ---------------------------------------------------------------------------------------

class Conn:
    __slots__ = ("sock", "src", "idx", "state", "buf", "out", "sent_at", "nreplies", "data",
                 "connected")

    def __init__(self, idx, src):
        self.idx = idx
        self.src = src
        self.sock = None
        self.state = "new"
        self.buf = b""
        self.out = b""
        self.sent_at = None       # monotonic time of the command whose reply is outstanding
        self.nreplies = 0
        self.data = {}
        self.connected = False


class Load:
    """Drive many SMTP clients from one selectors loop.

    on_reply(load, conn, code, lines, latency) is called for every complete reply (the banner
    is reply 0, latency measured from connect) and returns the next command line (without
    CRLF) or None to send nothing.  Connections are opened at most `window` at a time
    (connecting or waiting for their banner) so that no SYN is dropped."""

    def __init__(self, port, sources, count, on_reply, window=200, host="127.0.0.1"):
        self.port = port
        self.host = host
        self.sel = selectors.DefaultSelector()
        self.conns = [Conn(i, sources[i % len(sources)]) for i in range(count)]
        self.on_reply = on_reply
        self.window = window
        self.next_open = 0
        self.limit = count        # open at most this many (raise it to open more later)
        self.pending_open = 0
        self.closed = 0
        self.failed = 0
        self.notes = []

    # connection life cycle
    def _open(self, c):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((c.src, 0))
            s.setblocking(False)
            err = s.connect_ex((self.host, self.port))
        except OSError as e:
            s.close()
            self._fail(c, "connect: %s" % e)
            return
        if err not in (0, 115):  # EINPROGRESS
            s.close()
            self._fail(c, "connect: %s" % os.strerror(err))
            return
        c.sock = s
        c.state = "connecting"
        c.sent_at = time.monotonic()
        self.pending_open += 1
        self.sel.register(s, selectors.EVENT_WRITE, c)

    def _fail(self, c, why):
        self.failed += 1
        if len(self.notes) < 5:
            self.notes.append("client %d (%s): %s" % (c.idx, c.src, why))
        self.close(c, "failed")

    def close(self, c, state="closed"):
        if c.state in ("connecting", "banner"):
            self.pending_open -= 1
        if c.sock is not None:
            try:
                self.sel.unregister(c.sock)
            except (KeyError, ValueError):
                pass
            c.sock.close()
            c.sock = None
        if state == "closed":
            self.closed += 1
        c.state = state

    def close_all(self):
        for c in self.conns:
            if c.sock is not None:
                self.close(c, "done")
        self.sel.close()

    def send(self, c, line):
        c.out += line.encode() + b"\r\n"
        c.sent_at = time.monotonic()
        self._flush(c)

    def _flush(self, c):
        try:
            n = c.sock.send(c.out)
        except BlockingIOError:
            n = 0
        except OSError as e:
            self._fail(c, "send: %s" % e)
            return
        c.out = c.out[n:]
        self.sel.modify(c.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if c.out else 0), c)

    # events
    def _on_event(self, c, mask):
        if c.state == "connecting":
            err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._fail(c, "connect: %s" % os.strerror(err))
                return
            c.state = "banner"
            c.connected = True
            self.sel.modify(c.sock, selectors.EVENT_READ, c)
            return
        if mask & selectors.EVENT_WRITE and c.out:
            self._flush(c)
            if c.sock is None:
                return
        if not mask & selectors.EVENT_READ:
            return
        try:
            data = c.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close(c)
            return
        c.buf += data
        lines = []
        while c.sock is not None:
            nl = c.buf.find(b"\n")
            if nl < 0:
                break
            line = c.buf[:nl].rstrip(b"\r").decode("utf-8", "replace")
            c.buf = c.buf[nl + 1:]
            lines.append(line)
            if len(line) >= 4 and line[3] == "-":
                continue
            try:
                code = int(line[:3])
            except ValueError:
                code = 0
            now = time.monotonic()
            latency = now - c.sent_at if c.sent_at is not None else 0.0
            c.sent_at = None
            if c.state == "banner":
                self.pending_open -= 1
                c.state = "open"
            c.nreplies += 1
            nxt = self.on_reply(self, c, code, lines, latency)
            lines = []
            if nxt is not None and c.sock is not None:
                self.send(c, nxt)

    def step(self, timeout):
        while self.next_open < min(self.limit, len(self.conns)) and self.pending_open < self.window:
            c = self.conns[self.next_open]
            self.next_open += 1
            self._open(c)
        if not self.sel.get_map():
            time.sleep(min(timeout, 0.05))
            return
        for key, mask in self.sel.select(timeout):
            c = key.data
            if c.sock is not None:
                self._on_event(c, mask)

    def run_until(self, pred, deadline):
        while time.monotonic() < deadline:
            if pred():
                return True
            self.step(0.05)
        return pred()

    def count(self, state):
        return sum(1 for c in self.conns if c.state == state)


# -- a load driver in a child process ------------------------------------------------------------

class ChildLoad:
    """Run fn(status_writer) in a forked child so that the load does not share the parent's
    GIL (the parent times a legitimate sender meanwhile).  The child reports JSON status
    lines on a pipe; it stops when the parent closes the control pipe, on SIGTERM, or at
    its own deadline."""

    def __init__(self, fn, deadline_s):
        st_r, st_w = os.pipe()
        ctl_r, ctl_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(st_r)
                os.close(ctl_w)
                signal.alarm(0)
                signal.signal(signal.SIGALRM, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                out = os.fdopen(st_w, "w", buffering=1)

                def status(d):
                    out.write(json.dumps(d) + "\n")

                fn(status, ctl_r, time.monotonic() + deadline_s)
            except BaseException as e:  # noqa: B902  the child must never return
                try:
                    sys.stderr.write("load driver: %r\n" % (e,))
                except Exception:
                    pass
                code = 1
            finally:
                os._exit(code)
        os.close(st_w)
        os.close(ctl_r)
        self.pid = pid
        self.ctl = ctl_w
        self.st = st_r
        os.set_blocking(st_r, False)
        self.pbuf = b""
        self.last = {}

    def poll(self):
        """The latest status the child reported ({} until the first)."""
        while True:
            try:
                d = os.read(self.st, 65536)
            except BlockingIOError:
                break
            except OSError:
                break
            if not d:
                break
            self.pbuf += d
        *lines, self.pbuf = self.pbuf.split(b"\n")
        for ln in lines:
            if ln.strip():
                self.last = json.loads(ln)
        return self.last

    def wait_for(self, pred, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.poll()
            if st and pred(st):
                return st
            if self.exited():
                break
            time.sleep(0.1)
        return self.poll()

    def exited(self):
        try:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid:
            self.pid = None
            return True
        return False

    def stop(self):
        if self.ctl is not None:
            os.close(self.ctl)
            self.ctl = None
        if self.pid:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not self.exited():
                time.sleep(0.05)
            if self.pid:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                    os.waitpid(self.pid, 0)
                except OSError:
                    pass
                self.pid = None
        self.poll()
        os.close(self.st)


def prepare(build, nofile, seconds=295):
    """What every benchmark does first: check for root, start the time budget, raise the
    descriptor limit, build mxgate and print the environment.  Returns (budget, binary)."""
    if os.geteuid() != 0:
        raise SystemExit("run as root (mxgate drops privileges; Postfix needs root)")
    budget = Budget(seconds)
    raise_nofile(nofile)
    binary = build_mxgate(build)
    print_environment(binary)
    return budget, binary


def count_files(d):
    """Files in a directory (a Maildir's new/), 0 if it is not there yet."""
    try:
        return len(os.listdir(d))
    except FileNotFoundError:
        return 0


def empty_dir(d):
    """Remove every file in d (a Maildir's new/ between runs)."""
    if os.path.isdir(d):
        for n in os.listdir(d):
            os.unlink(os.path.join(d, n))
