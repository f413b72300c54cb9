"""harness: reusable pieces for mxgate system tests (Python stdlib only).

    Server     writes a config directory (main.cf + master.cf) from keyword
               arguments, starts build/mxgate (as root, as an ordinary user,
               under strace, with extra environment such as LD_PRELOAD), waits
               until it is ready, gives its log lines, stops it with SIGTERM
               and checks its stderr for sanitizer reports.
    Client     a raw SMTP client: one sendall per send(), full multi-line
               replies with a timeout, expect(), closed().
    maildir_*  list and read the files that deliveries left under a base.
    MxTestCase a unittest.TestCase whose start_server() stops the daemon at
               the end of the test and FAILS the test if the daemon crashed,
               exited non-zero, or printed a sanitizer report.

Environment:
    MXGATE_BUILD   build directory (default: <repo>/build); tests/run.py sets it.

A test that cannot run (no binary, a missing tool, a daemon that does not
start) fails: nothing here ever calls skipTest().
"""

import os
import pwd
import grp
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0

# Sanitizer settings for every process the harness starts.  The caller's own
# ASAN_OPTIONS/UBSAN_OPTIONS are appended, so they win.
ASAN_DEFAULTS = ("detect_leaks=1:abort_on_error=0:halt_on_error=1:"
                 "detect_stack_use_after_return=1:check_initialization_order=1:"
                 "strict_string_checks=1:allocator_may_return_null=0:print_summary=1")
UBSAN_DEFAULTS = "print_stacktrace=1:halt_on_error=1:print_summary=1"
LSAN_DEFAULTS = "print_suppressions=0"

# What counts as a sanitizer report in a process's stderr.  The "fatal error"
# form is LeakSanitizer failing to run (for example under ptrace, or after a
# privilege drop left the process non-dumpable): leaks then go unchecked, so
# that is reported too rather than silently passed.
SANITIZER_PATTERNS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "ERROR: UndefinedBehaviorSanitizer",
    "runtime error:",
    "Sanitizer has encountered a fatal error",
    "WARNING: AddressSanitizer failed to allocate",
)


# main.cf lines most system tests share: a local domain checked against the passwd file,
# no aliases, and mynetworks away from the loopback test clients (so nothing is exempt).
BASE_MAIN = {
    "mydestination": "local.test",
    "alias_maps": "",
    "local_recipient_maps": "proxy:unix:passwd.byname $alias_maps",
    "mynetworks": "192.0.2.0/24",
}


def build_dir():
    return os.path.abspath(os.environ.get("MXGATE_BUILD") or os.path.join(REPO, "build"))


def mxgate_binary():
    return os.path.join(build_dir(), "mxgate")


def sanitizer_env(base=None, ptrace=False, preload=False):
    """An environment with sensible sanitizer options (harmless when the
    binary is not sanitized).  ptrace: LeakSanitizer cannot run under strace,
    so leak detection is turned off.  preload: LD_PRELOAD puts a shim ahead of
    the ASan runtime, which ASan refuses unless told not to check."""
    env = dict(os.environ if base is None else base)
    asan = ASAN_DEFAULTS
    if ptrace:
        asan += ":detect_leaks=0"
    if preload:
        asan += ":verify_asan_link_order=0"
    env["ASAN_OPTIONS"] = asan + (":" + env["ASAN_OPTIONS"] if env.get("ASAN_OPTIONS") else "")
    env["UBSAN_OPTIONS"] = UBSAN_DEFAULTS + (":" + env["UBSAN_OPTIONS"] if env.get("UBSAN_OPTIONS") else "")
    env["LSAN_OPTIONS"] = LSAN_DEFAULTS + (":" + env["LSAN_OPTIONS"] if env.get("LSAN_OPTIONS") else "")
    return env


def faultfs_shim():
    """Path of the fault-injection shim (tests/shim/faultfs.c, built by `make test` or
    `make BUILD=... build/shim/faultfs.so`) in the build directory."""
    return os.path.join(build_dir(), "shim", "faultfs.so")


def asan_runtime(binary=None):
    """The ASan runtime the binary is linked with (from ldd), or None."""
    try:
        out = subprocess.run(["ldd", binary or mxgate_binary()], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, timeout=30).stdout.decode("utf-8", "replace")
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        if "libasan" in line and "=>" in line:
            path = line.split("=>", 1)[1].split("(")[0].strip()
            if path:
                return path
    return None


def shim_env(name, binary=None, **settings):
    """Environment for a daemon run under the LD_PRELOAD shim build/shim/<name>.so (the ASan
    runtime first when the binary is sanitized) plus the settings given as keywords."""
    shim = os.path.join(build_dir(), "shim", name + ".so")
    if not os.path.isfile(shim):
        raise ServerError("%s is missing (run `make %s`)" % (shim, os.path.relpath(shim, REPO)))
    asan = asan_runtime(binary)
    env = {"LD_PRELOAD": (asan + " " + shim) if asan else shim}
    env.update({k: str(v) for k, v in settings.items()})
    return env


def anvil_delay_binary():
    """The daemon built with the test-only anvil backend (mxgate_anvil_backend = test-delay:MS):
    tests/common/anvil_delay.c, `make build/tests/mxgate-anvil-delay`."""
    return os.path.join(build_dir(), "tests", "mxgate-anvil-delay")


def faultfs_env(binary=None, **settings):
    """Environment for a daemon run under the faultfs shim: LD_PRELOAD (with the ASan
    runtime first when the binary is sanitized, as tests/unit/maildir_fault.sh does)
    plus the MXGATE_FAULT* settings given as keywords, e.g.
    faultfs_env(MXGATE_FAULT="fsync", MXGATE_FAULT_PATH="/vmail/bob/")."""
    shim = faultfs_shim()
    if not os.path.isfile(shim):
        raise ServerError("%s is missing (run `make build/shim/faultfs.so`)" % shim)
    asan = asan_runtime(binary)
    env = {"LD_PRELOAD": (asan + " " + shim) if asan else shim}
    env.update({k: str(v) for k, v in settings.items()})
    return env


def rss_kb(pid):
    """VmRSS of a process in kB (from /proc/PID/status), or None if it is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def sanitizer_reports(text):
    """The lines of text that show a sanitizer report (empty list: none)."""
    out = []
    for line in text.splitlines():
        if any(p in line for p in SANITIZER_PATTERNS):
            out.append(line.strip())
    return out


def free_port(host="127.0.0.1"):
    """A TCP port that was free a moment ago (bind to port 0, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_listening(port):
    """True if some socket is in LISTEN state on port (IPv4 or IPv6).
    Read from /proc so that the check does not itself open an SMTP session
    (which would show up in the log and in the per-client counters)."""
    found_proc = False
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                found_proc = True
                next(f)
                for line in f:
                    parts = line.split()
                    if len(parts) > 3 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            pass
    if found_proc:
        return False
    try:  # no /proc: fall back to a connection attempt
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def format_main_cf(params):
    lines = []
    for k, v in params.items():
        if v is None:
            continue
        lines.append("%s = %s" % (k, v))
    return "\n".join(lines) + "\n"


def chown_tree(path, uid, gid):
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            os.lchown(os.path.join(root, n), uid, gid)


class ServerError(Exception):
    """The daemon could not be started (the test fails)."""


LOG_PREFIX = re.compile(r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ (\S+?)\[(\d+)\]: ")


class Server:
    """One mxgate daemon from a scratch configuration directory.

        s = Server(main={"smtpd_soft_error_limit": 2}, virtual_users=["alice"])
        s.start()            # raises ServerError on failure
        ... Client(s.port) ...
        problems = s.stop()  # [] when it exited 0 without sanitizer reports

    main:          main.cf parameters (values are written as given; None drops
                   a default).  Defaults: myhostname = mx.example.test,
                   maillog_file = DIR/maillog, maillog_file_prefixes = DIR/ (so
                   that the scratch maillog passes Postfix's prefix check),
                   mxgate_control_socket = DIR/control.
    master:        master.cf lines; "{port}" is replaced by the chosen port.
                   Default: one "127.0.0.1:{port} inet n - n - - smtpd" line.
    virtual_users: local parts for virt.test; sets the virtual_* parameters,
                   writes DIR/vmailbox and creates DIR/vmail owned by the uid
                   the daemon will run as.
    as_user:       (root only) run the daemon as this ordinary user (e.g.
                   "nobody"); the config dir is chown'ed to it.  Without it, a
                   root harness starts mxgate as root (it drops to mail_owner)
                   and an ordinary harness runs it as itself.
    strace:        True or a list of extra strace options: run under
                   strace -f -o DIR/strace.out.
    env:           extra environment (e.g. {"LD_PRELOAD": ".../shim.so"}).
    args:          extra command-line arguments after "run -c DIR".
    virtual_map:   extra lines for DIR/vmailbox (e.g. "@virt.test alice/", a
                   catch-all); needs virtual_users (may be []).
    nofile:        RLIMIT_NOFILE (soft and hard) for the daemon, to run it out of
                   descriptors.

    MXGATE_ANVIL_DELAY (environment): when set (milliseconds, or "never"), the daemon is
    build/tests/mxgate-anvil-delay and main.cf gets mxgate_anvil_backend = test-delay:<value>
    unless the test sets the backend itself: anvil's answers then come that much later, and
    the limit tests must pass all the same (tests/run.py runs them so with 0, 1 and 200).
    """

    def __init__(self, main=None, master=None, *, virtual_users=None, as_user=None,
                 strace=False, env=None, args=(), binary=None, files=None, virtual_map=None,
                 nofile=None):
        self.binary = binary or mxgate_binary()
        self.nofile = nofile
        self.as_user = as_user
        params = {"myhostname": "mx.example.test"}
        params.update(main or {})
        delay = os.environ.get("MXGATE_ANVIL_DELAY")
        if delay and binary is None and "mxgate_anvil_backend" not in params:
            self.binary = anvil_delay_binary()
            params["mxgate_anvil_backend"] = "test-delay:" + delay
        self.uid, self.gid = self.run_ids(params.get("mail_owner", "mxgate"))
        self.dir = tempfile.mkdtemp(prefix="mxgate-test-")
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.strace = strace
        self.extra_env = dict(env or {})
        self.args = list(args)
        self.proc = None
        self.pid = None
        self.returncode = None
        self.problems = []
        self.stopped = False
        self.log_start = 0          # start() looks for its ready line from here on
        self.maillog = os.path.join(self.dir, "maillog")
        self.stderr_path = os.path.join(self.dir, "stderr")
        self.stdout_path = os.path.join(self.dir, "stdout")
        self.strace_path = os.path.join(self.dir, "strace.out")

        params.setdefault("maillog_file", self.maillog)
        params.setdefault("maillog_file_prefixes", self.dir + "/")
        params.setdefault("mxgate_spool_directory", os.path.join(self.dir, "spool"))
        params.setdefault("mxgate_control_socket", os.path.join(self.dir, "control"))
        self.maillog = params["maillog_file"]
        self.vmail = None
        if virtual_users is not None:
            self.vmail = os.path.join(self.dir, "vmail")
            os.mkdir(self.vmail, 0o700)
            vmap = os.path.join(self.dir, "vmailbox")
            with open(vmap, "w") as f:
                for u in virtual_users:
                    f.write("%s@virt.test %s/\n" % (u, u))
                for line in virtual_map or ():
                    f.write(line.rstrip("\n") + "\n")
            os.chmod(vmap, 0o644)
            for k, v in (("virtual_mailbox_domains", "virt.test"),
                         ("virtual_mailbox_maps", "texthash:" + vmap),
                         ("virtual_mailbox_base", self.vmail),
                         ("virtual_uid_maps", "static:%d" % self.uid),
                         ("virtual_gid_maps", "static:%d" % self.gid)):
                params.setdefault(k, v)
        self.params = params
        for name, content in (files or {}).items():
            p = os.path.join(self.dir, name)
            with open(p, "w") as f:
                f.write(content)
            os.chmod(p, 0o644)
        with open(os.path.join(self.dir, "main.cf"), "w") as f:
            f.write(format_main_cf(params))
        if master is None:
            master = ["127.0.0.1:{port} inet n - n - - smtpd"]
        with open(os.path.join(self.dir, "master.cf"), "w") as f:
            for line in master:
                f.write(line.replace("{port}", str(self.port)) + "\n")
        if self.vmail:
            os.chown(self.vmail, self.uid, self.gid)
        if as_user and os.geteuid() == 0:
            chown_tree(self.dir, self.uid, self.gid)

    def run_ids(self, mail_owner):
        """uid/gid that the daemon will run as (and so must own the mailboxes)."""
        if self.as_user:
            if os.geteuid() != 0 and pwd.getpwuid(os.geteuid()).pw_name != self.as_user:
                raise ServerError("as_user=%s needs a root harness" % self.as_user)
            pw = pwd.getpwnam(self.as_user)
            return pw.pw_uid, pw.pw_gid
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam(mail_owner)
            except KeyError:
                raise ServerError("mail_owner user %r does not exist (run `make deps`)" % mail_owner)
            return pw.pw_uid, pw.pw_gid
        return os.getuid(), os.getgid()

    # -- life cycle --------------------------------------------------------------------------

    def command(self):
        cmd = [self.binary, "run", "-c", self.dir] + self.args
        if self.strace:
            extra = self.strace if isinstance(self.strace, (list, tuple)) else []
            if not shutil.which("strace"):
                raise ServerError("strace is not installed")
            cmd = ["strace", "-f", "-o", self.strace_path] + list(extra) + cmd
        return cmd

    def start(self):
        if not os.access(self.binary, os.X_OK):
            raise ServerError("%s is missing (run `make`)" % self.binary)
        env = sanitizer_env(ptrace=bool(self.strace), preload="LD_PRELOAD" in self.extra_env)
        env.update(self.extra_env)
        kw = {}
        if self.as_user and os.geteuid() == 0:
            kw = dict(user=self.uid, group=self.gid, extra_groups=[])
            env["HOME"] = self.dir
            env["USER"] = env["LOGNAME"] = self.as_user
        if self.nofile:
            import resource
            limit = self.nofile
            kw["preexec_fn"] = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
        out = open(self.stdout_path, "wb")
        err = open(self.stderr_path, "wb")
        try:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err, env=env, cwd=self.dir, **kw)
        finally:
            out.close()
            err.close()
        if self.as_user and os.geteuid() == 0:
            for p in (self.stdout_path, self.stderr_path):
                os.chown(p, self.uid, self.gid)
        deadline = time.monotonic() + READY_TIMEOUT
        started = False
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                self.stopped = True
                raise ServerError("mxgate exited with status %s before it was ready\n%s"
                                  % (self.proc.returncode, self.diagnostics()))
            if not started:
                m = self.find_log(r"daemon started -- version \S+, configuration " + re.escape(self.dir),
                                  start=self.log_start)
                if m:
                    started = True
                    pm = LOG_PREFIX.match(m)
                    self.pid = int(pm.group(2)) if pm else None
            if started and port_listening(self.port):
                if not self.strace or self.pid is None:
                    self.pid = self.proc.pid
                return self
            time.sleep(0.02)
        why = "no 'daemon started' log line" if not started else "port %d not listening" % self.port
        self.stop()
        raise ServerError("mxgate not ready within %gs (%s)\n%s" % (READY_TIMEOUT, why, self.diagnostics()))

    def signal(self, sig):
        """Send sig to the daemon (not to strace)."""
        pid = self.pid or (self.proc.pid if self.proc else None)
        if pid:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def kill9(self):
        """kill -9 the daemon (crash simulation).  stop() then expects -9."""
        self.signal(signal.SIGKILL)
        self.expect_status = -signal.SIGKILL

    expect_status = 0

    def restart(self):
        """Start the daemon again on the same directories (config, Maildirs, log), for
        example after kill9(): the previous run is stopped and checked first (its
        problems, if any, raise ServerError).  Only log lines written after this call
        count as the new run's ready line."""
        problems = self.stop()
        if problems:
            raise ServerError("previous run: %s" % "\n".join(problems))
        self.log_start = len(self.log_lines())
        self.proc = None
        self.pid = None
        self.returncode = None
        self.stopped = False
        self.expect_status = 0
        return self.start()

    def stop(self):
        """SIGTERM, wait (SIGKILL after STOP_TIMEOUT), then check exit status
        and stderr.  Returns the list of problems (also kept in .problems)."""
        if self.stopped or self.proc is None:
            return self.problems
        self.stopped = True
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.problems.append("did not exit within %gs of SIGTERM; killed" % STOP_TIMEOUT)
                self.signal(signal.SIGKILL)
                self.proc.kill()
                self.proc.wait()
        elif self.expect_status == 0:       # not after kill9(): that exit was asked for
            self.problems.append("exited on its own before stop() with status %s" % self.proc.returncode)
        self.returncode = self.proc.returncode
        # Under strace, strace reports the tracee's exit status (or 128+sig... as -sig).
        want = self.expect_status
        if self.returncode != want and not (want < 0 and self.returncode == 128 - want):
            self.problems.append("exit status %s (expected %s)" % (self.returncode, want))
        rep = sanitizer_reports(self.stderr())
        if rep:
            self.problems.append("sanitizer report in daemon stderr (%s):\n%s"
                                 % (self.stderr_path, self.stderr()[-6000:]))
        return self.problems

    def check(self):
        """Stop and raise AssertionError on any problem."""
        problems = self.stop()
        if problems:
            raise AssertionError("mxgate (%s): %s" % (self.dir, "\n".join(problems)))

    def cleanup(self):
        """Stop if needed and remove the directory (keep it when MXGATE_KEEP is set
        or when there were problems)."""
        self.stop()
        if not self.problems and not os.environ.get("MXGATE_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.check()
        self.cleanup()

    # -- observation -------------------------------------------------------------------------

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_lines(self):
        """Every line of maillog_file, as written."""
        try:
            with open(self.maillog, "rb") as f:
                return f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return []

    def log_messages(self, process=None):
        """Log lines without the 'Mmm dd hh:mm:ss host name/proc[pid]: ' prefix.
        process: keep only lines whose tag ends with /process (e.g. "smtpd")."""
        out = []
        for line in self.log_lines():
            m = LOG_PREFIX.match(line)
            if not m:
                out.append(line)
                continue
            if process and not m.group(1).endswith("/" + process):
                continue
            out.append(line[m.end():])
        return out

    def find_log(self, regex, start=0):
        """The first log line (from index start on) that matches regex, or None."""
        r = re.compile(regex)
        for line in self.log_lines()[start:]:
            if r.search(line):
                return line
        return None

    def wait_log(self, regex, timeout=5.0):
        """The first log line matching regex, waiting up to timeout; None if none."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.find_log(regex)
            if line is not None or time.monotonic() >= deadline:
                return line
            time.sleep(0.02)

    def expect_log(self, regex, timeout=5.0):
        """The first log line matching regex, waiting up to timeout; AssertionError (with the
        log's last lines) if none comes."""
        line = self.wait_log(regex, timeout)
        if line is None:
            raise AssertionError("no log line matches %r within %.1fs; the log ends:\n%s"
                                 % (regex, timeout, "\n".join(self.log_lines()[-20:])))
        return line

    def diagnostics(self):
        return ("--- stderr (%s) ---\n%s\n--- log (%s) ---\n%s" %
                (self.stderr_path, self.stderr()[-3000:], self.maillog,
                 "\n".join(self.log_lines()[-30:])))

    def client(self, **kw):
        return Client(self.port, **kw)


# -- raw SMTP client -----------------------------------------------------------------------------

class Closed(Exception):
    """The server closed the connection before a complete reply arrived."""


class Reply:
    def __init__(self, lines, raw):
        self.lines = lines          # ["250-mx.example.test", "250-PIPELINING", ...]
        self.raw = raw              # the bytes as received, CRLF included

    @property
    def code(self):
        return int(self.lines[-1][:3])

    @property
    def text(self):
        return "\n".join(self.lines)

    def __str__(self):
        return self.text

    def __repr__(self):
        return "Reply(%r)" % self.lines


class Client:
    """Raw SMTP client.  send() is exactly one sendall(); replies are parsed from
    whatever arrives, so several pipelined replies can be read one by one."""

    def __init__(self, port, host="127.0.0.1", source=None, timeout=10.0, connect=True):
        self.port = port
        self.host = host
        self.source = source
        self.timeout = timeout
        self.buf = b""
        self.eof = False
        self.sock = None
        if connect:
            self.connect()

    def connect(self):
        src = (self.source, 0) if self.source else None
        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout,
                                             source_address=src)
        return self

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        self.sock.sendall(data)

    def cmd(self, line, timeout=None):
        """Send one command line (CRLF added) and read its reply."""
        self.send(line + "\r\n")
        return self.read_reply(timeout)

    def _fill(self, deadline):
        """Read more bytes; False on EOF.  Raises TimeoutError at deadline."""
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no complete reply within timeout; have %r" % self.buf)
        r, _, _ = select.select([self.sock], [], [], left)
        if not r:
            raise TimeoutError("no complete reply within timeout; have %r" % self.buf)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_reply(self, timeout=None):
        """One complete (possibly multi-line) reply.  Raises Closed on EOF
        before it is complete and TimeoutError if it does not arrive."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        lines = []
        pos = 0
        while True:
            nl = self.buf.find(b"\n", pos)
            if nl < 0:
                if not self._fill(deadline):
                    raise Closed("connection closed; partial reply %r" % self.buf)
                continue
            line = self.buf[pos:nl].rstrip(b"\r").decode("utf-8", "replace")
            pos = nl + 1
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                raw = self.buf[:pos]
                self.buf = self.buf[pos:]
                return Reply(lines, raw)

    def expect(self, want, timeout=None):
        """Read a reply and check it: an int (or 3-digit str) checks the code of
        the last line; any other str must equal the whole reply text (lines
        joined by \\n); a compiled regex must match it."""
        rep = self.read_reply(timeout)
        if isinstance(want, int) or (isinstance(want, str) and re.fullmatch(r"\d{3}", want)):
            ok = rep.code == int(want)
        elif hasattr(want, "search"):
            ok = bool(want.search(rep.text))
        else:
            ok = rep.text == want
        if not ok:
            raise AssertionError("expected %r, got %r" % (want if not hasattr(want, "pattern") else want.pattern,
                                                          rep.text))
        return rep

    def closed(self, timeout=2.0):
        """True if the server closes the connection within timeout.  Bytes that
        arrive meanwhile are kept for read_reply() and make it False."""
        if self.buf:
            return False
        deadline = time.monotonic() + timeout
        try:
            return not self._fill(deadline)
        except TimeoutError:
            return False

    def pending(self, timeout=0.3):
        """Bytes that arrive within timeout (for 'nothing more is sent' checks)."""
        deadline = time.monotonic() + timeout
        try:
            while self._fill(deadline):
                pass
        except TimeoutError:
            pass
        return self.buf

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# -- Maildir helpers -----------------------------------------------------------------------------

def maildir_files(base, sub="new"):
    """Paths of the files in <base>/*/<sub>/ (every mailbox under base), sorted."""
    out = []
    if not base or not os.path.isdir(base):
        return out
    for mbox in sorted(os.listdir(base)):
        d = os.path.join(base, mbox, sub)
        if os.path.isdir(d):
            out.extend(os.path.join(d, n) for n in sorted(os.listdir(d)))
    return out


def maildir(base, user):
    """{"new": [...], "tmp": [...], "cur": [...]} for <base>/<user>/."""
    res = {}
    for sub in ("new", "tmp", "cur"):
        d = os.path.join(base, user, sub)
        res[sub] = sorted(os.path.join(d, n) for n in os.listdir(d)) if os.path.isdir(d) else []
    return res


def all_maildir_files(base):
    """Every file under any new/, tmp/ or cur/ below base (for 'no stray file' checks)."""
    return maildir_files(base, "new") + maildir_files(base, "tmp") + maildir_files(base, "cur")


def read_message(path):
    """(headers, body) of a stored message: headers is a list of (name, value)
    with continuation lines unfolded; body is the bytes after the first empty line."""
    with open(path, "rb") as f:
        data = f.read()
    head, sep, body = data.partition(b"\n\n")
    if not sep:
        head, body = data, b""
    headers = []
    for line in head.split(b"\n"):
        text = line.decode("utf-8", "replace")
        if text[:1] in (" ", "\t") and headers:
            n, v = headers[-1]
            headers[-1] = (n, v + "\n" + text)
        elif ":" in text:
            n, v = text.split(":", 1)
            headers.append((n, v.strip()))
    return headers, body


# -- process groups --------------------------------------------------------------------------------

def start_group(testcase, args, log_path, **kw):
    """Popen(args) in a session of its own, stdout and stderr to log_path, stdin closed; the
    test's cleanup stops the whole process group (SIGTERM, SIGKILL after 10 s).  For commands
    that start mxgate underneath (make run, scripts/run-example.sh).  proc.stop_group() stops
    it earlier (the cleanup then has nothing left to do)."""
    log = open(log_path, "wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, **kw)
    log.close()

    def stop():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    testcase.addCleanup(stop)
    proc.stop_group = stop
    return proc


# -- unittest base ---------------------------------------------------------------------------------

class MxTestCase(unittest.TestCase):
    """start_server() starts a Server and registers its stop: a crash, a non-zero
    exit or a sanitizer report fails the test that started it."""

    def start_server(self, **kw):
        try:
            srv = Server(**kw)
        except ServerError as e:
            self.fail("mxgate cannot be set up: %s" % e)
        self.addCleanup(self._stop_server, srv)
        try:
            srv.start()
        except ServerError as e:
            self.fail("mxgate did not start: %s" % e)
        return srv

    def _stop_server(self, srv):
        problems = srv.stop()
        if problems:
            self.fail("mxgate (%s): %s" % (srv.dir, "\n".join(problems)))
        srv.cleanup()

    def connect(self, srv, **kw):
        c = Client(srv.port, **kw)
        self.addCleanup(c.close)
        return c

    def mxgate(self, *args, timeout=20):
        """Run build/mxgate with args (check, run, conf ...) to its end: (exit code, stdout,
        stderr).  A run that is still going after timeout seconds fails the test (it should
        have refused to start), and so does a sanitizer report."""
        proc = subprocess.Popen([mxgate_binary()] + list(args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                env=sanitizer_env())
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            self.fail("mxgate %s still running after %ds (it should have refused to start)\n%s"
                      % (" ".join(args), timeout, err.decode("utf-8", "replace")))
        err = err.decode("utf-8", "replace")
        self.assertEqual(sanitizer_reports(err), [], err)
        return proc.returncode, out.decode("utf-8", "replace"), err


# -- helpers for the limit and anvil tests (additive; used by test_limits.py, test_anvil.py) ------

def service_line(listen="127.0.0.1:{port}", maxproc="-", options=None, command="smtpd"):
    """A master.cf inet service line, e.g. service_line(maxproc=2, options={"stress": "yes"})
    -> "127.0.0.1:{port} inet n - n - 2 smtpd -o stress=yes".  options: a dict or a list of
    (name, value) pairs, each written as "-o name=value"."""
    items = options.items() if isinstance(options, dict) else (options or [])
    opts = "".join(" -o %s=%s" % (k, v) for k, v in items)
    return "%s inet n - n - %s %s%s" % (listen, maxproc, command, opts)


def service_name(srv, host="127.0.0.1"):
    """The master.cf service name of a "host:{port}" line: what anvil idents and warnings use."""
    return "%s:%d" % (host, srv.port)


def wait_ports_listening(ports, timeout=READY_TIMEOUT):
    """True once every port in ports has a LISTEN socket (from /proc, no probe session)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(port_listening(p) for p in ports):
            return True
        time.sleep(0.02)
    return False


def connect_nonblocking(port, host="127.0.0.1", source=None, timeout=1.0):
    """(sock, connected): a TCP connect that gives up after timeout without failing (a SYN the
    kernel drops because the accept queue is full leaves the socket in SYN-SENT).  The socket is
    returned in blocking mode either way; the caller closes it."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if source:
        s.bind((source, 0))
    s.setblocking(False)
    err = s.connect_ex((host, port))
    ok = err == 0
    if not ok:
        _, w, _ = select.select([], [s], [], timeout)
        ok = bool(w) and s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    s.setblocking(True)
    return s, ok


def client_from_socket(sock, port, timeout=10.0):
    """Wrap an already connected socket (from connect_nonblocking) in a Client."""
    c = Client(port, timeout=timeout, connect=False)
    sock.settimeout(timeout)
    c.sock = sock
    return c


def listen_queue(port, host="127.0.0.1"):
    """(Recv-Q, Send-Q) of the LISTEN socket on host:port as `ss -ltn` prints them: the
    connections waiting in the accept queue and the listen() backlog.  None if not found."""
    ss = shutil.which("ss")
    if not ss:
        raise AssertionError("ss (iproute2) is not installed")
    out = subprocess.run([ss, "-ltnH"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         timeout=10).stdout.decode("utf-8", "replace")
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 4 and f[0] == "LISTEN" and f[3] == "%s:%d" % (host, port):
            return int(f[1]), int(f[2])
    return None


def rewrite_main_cf(srv, updates):
    """Change main.cf parameters of a (running) Server in place: updates is merged into the
    parameters it was written from (None drops one) and main.cf is written again."""
    for k, v in updates.items():
        if v is None:
            srv.params.pop(k, None)
        else:
            srv.params[k] = v
    path = os.path.join(srv.dir, "main.cf")
    with open(path + ".new", "w") as f:
        f.write(format_main_cf(srv.params))
    os.chmod(path + ".new", 0o644)
    if srv.as_user and os.geteuid() == 0:
        os.chown(path + ".new", srv.uid, srv.gid)
    os.rename(path + ".new", path)


def log_matches(srv, regex):
    """Every log line that matches regex (re.search)."""
    r = re.compile(regex)
    return [ln for ln in srv.log_lines() if r.search(ln)]


def wait_log_count(srv, regex, count, timeout=5.0):
    """Wait until at least count log lines match regex; returns the matching lines."""
    deadline = time.monotonic() + timeout
    while True:
        lines = log_matches(srv, regex)
        if len(lines) >= count or time.monotonic() >= deadline:
            return lines
        time.sleep(0.02)


def read_line_timed(client, timeout=None):
    """(line, arrival): one reply LINE (not a whole multi-line reply) without its CRLF, and the
    time.monotonic() at which its newline was received.  Raises Closed / TimeoutError."""
    deadline = time.monotonic() + (client.timeout if timeout is None else timeout)
    while True:
        nl = client.buf.find(b"\n")
        if nl >= 0:
            line = client.buf[:nl].rstrip(b"\r").decode("utf-8", "replace")
            client.buf = client.buf[nl + 1:]
            return line, time.monotonic()
        if not client._fill(deadline):
            raise Closed("connection closed; partial line %r" % client.buf)


def timed_reply(client, timeout=None):
    """(Reply, arrival time): read_reply() and the time.monotonic() when it was complete."""
    rep = client.read_reply(timeout)
    return rep, time.monotonic()
