"""Milters for the milter tests: a real Debian rspamd (its proxy worker in milter mode on a unix
socket in a temporary folder, a normal worker behind it on a free port, no redis, no network
maps: its DNS goes to a port that does not answer), a real opendkim, and a scripted milter
(ScriptedMilter) written from the protocol's description (libmilter's mfdef.h), for the replies
that the real ones do not send on demand (CHGFROM, DELRCPT, QUARANTINE, REPLBODY, SKIP, ...).

miltertest() runs build/tests/miltertest (milter/milter_client on a real loop) and returns its
output as a Result."""

import os
import pwd
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest

import harness

HERE = os.path.dirname(os.path.abspath(__file__))


class Result:
    def __init__(self, proc):
        self.exit = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr
        self.lines = proc.stdout.splitlines()
        self.replies = {}
        self.edits = [l[5:] for l in self.lines if l.startswith("edit ")]
        self.headers = [l[7:] for l in self.lines if l.startswith("header ")]
        self.body = [l[5:] for l in self.lines if l.startswith("body ")]
        for l in self.lines:
            for ev in ("connect", "helo", "mail", "rcpt", "data", "message"):
                if l.startswith(ev + ":") or (ev == "rcpt" and l.startswith("rcpt ")):
                    key, _, val = l.partition(": ")
                    self.replies[key] = val

    def warnings(self):
        return [l.split("warning: ", 1)[1] for l in self.err.splitlines() if "warning: " in l]


def miltertest(milters, message, *, options=(), client_addr="203.0.113.5",
               client_name="mail.example.net", rcpts=("<rcpt@example.com>",),
               sender="<sender@example.org>", cancel=None, helo="mail.example.net",
               timeout=60, conf_dir=None, write=None, cancel_ms=None):
    tool = os.path.join(harness.build_dir(), "tests", "miltertest")
    if not os.path.exists(tool):
        raise AssertionError("%s is missing (make %s)" % (tool, tool))
    cmd = [tool]
    if conf_dir:
        cmd += ["-c", conf_dir]
    for o in options:
        cmd += ["-o", o]
    cmd += ["-a", client_addr, "-n", client_name, "-h", helo, "-f", sender]
    for r in rcpts:
        cmd += ["-r", r]
    if cancel:
        cmd += ["-k", cancel]
    if cancel_ms is not None:
        cmd += ["-K", str(cancel_ms)]
    if write:
        cmd += ["-w", write]
    with tempfile.NamedTemporaryFile("wb", delete=False, suffix=".eml") as f:
        f.write(message if isinstance(message, bytes) else message.encode())
        path = f.name
    try:
        proc = subprocess.run(cmd + [milters, path], capture_output=True, text=True,
                              timeout=timeout, env=harness.sanitizer_env())
    finally:
        os.unlink(path)
    reports = harness.sanitizer_reports(proc.stderr)
    if reports:
        raise AssertionError("sanitizer report from miltertest:\n%s" % proc.stderr)
    return Result(proc)


# ---- rspamd ----------------------------------------------------------------------------------

RSPAMD_CONF = """\
.include "$CONFDIR/common.conf"
options {{
    pidfile = "{d}/rspamd.pid";
    dbdir = "{d}/db";
    .include "$CONFDIR/options.inc"
    disable_hyperscan = true;
    dns {{ nameserver = ["127.0.0.1:{dns}"]; timeout = 1s; retransmits = 1; }}
}}
logging {{ type = "file"; filename = "{d}/rspamd.log"; level = "info"; }}
worker "normal" {{
    bind_socket = "127.0.0.1:{port}";
    count = 1;
    .include "$CONFDIR/worker-normal.inc"
}}
worker "rspamd_proxy" {{
    bind_socket = "{d}/milter.sock mode=0666";
    milter = yes;
    timeout = 120s;
    count = 1;
    upstream "local" {{ default = yes; hosts = "127.0.0.1:{port}"; }}
    discard_on_reject = false;
    quarantine_on_reject = false;
    spam_header = "X-Spam";
    reject_message = "Spam message rejected";
}}
"""

# A clean message, and the GTUBE test message (rspamd rejects it with "Gtube pattern").
CLEAN = """\
From: Alice <alice@example.org>
To: Bob <bob@example.com>
Subject: Lunch on Thursday
Message-ID: <clean-1@example.org>
Date: Tue, 1 Dec 2026 19:00:00 +0000
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Hi Bob,

shall we have lunch on Thursday at noon?

Alice
"""

GTUBE = """\
From: sender@example.org
To: rcpt@example.com
Subject: Test spam mail (GTUBE)
Message-ID: <gtube-1@example.org>
Date: Tue, 1 Dec 2026 19:00:00 +0000

This is the GTUBE, the
\tGeneric
\tTest for
\tUnsolicited
\tBulk
\tEmail

XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X

"""


class Rspamd:
    """rspamd in the foreground, as _rspamd when we are root. start() waits until a clean
    message comes back with rspamd's headers (30 s at most); startup_seconds says how long."""

    def __init__(self):
        if shutil.which("rspamd") is None:
            raise unittest.SkipTest("rspamd is not installed (sh scripts/deps.sh --test)")
        self.dir = tempfile.mkdtemp(prefix="mxgate-rspamd-")
        os.chmod(self.dir, 0o755)
        self.port = harness.free_port()
        self.dns_port = harness.free_port()
        self.socket = os.path.join(self.dir, "milter.sock")
        self.proc = None
        self.startup_seconds = None

    @property
    def milter(self):
        return "unix:" + self.socket

    def start(self):
        os.makedirs(os.path.join(self.dir, "db"))
        local = os.path.join(self.dir, "local", "local.d")
        os.makedirs(local)
        # rspamd's milter_headers module: X-Spamd-Result, X-Rspamd-Server, -Queue-Id, -Action
        with open(os.path.join(local, "milter_headers.conf"), "w") as f:
            f.write("extended_spam_headers = true;\nskip_local = false;\n")
        with open(os.path.join(self.dir, "rspamd.conf"), "w") as f:
            f.write(RSPAMD_CONF.format(d=self.dir, port=self.port, dns=self.dns_port))
        cmd = ["rspamd", "-f", "-c", os.path.join(self.dir, "rspamd.conf"),
               "--var", "LOCAL_CONFDIR=" + os.path.join(self.dir, "local")]
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("_rspamd")
            except KeyError:
                raise unittest.SkipTest("no _rspamd user")
            harness.chown_tree(self.dir, pw.pw_uid, pw.pw_gid)
            cmd += ["-u", "_rspamd", "-g", "_rspamd"]
        t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)
        deadline = t0 + 30
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError("rspamd exited: %s\n%s" % (
                        self.proc.stderr.read().decode(errors="replace"), self.log()[-3000:]))
                if os.path.exists(self.socket) and harness.port_listening(self.port):
                    r = miltertest(self.milter, CLEAN, timeout=20)
                    if any(e.startswith("add_header X-Spamd-Result:") for e in r.edits):
                        self.startup_seconds = time.monotonic() - t0
                        return self
                time.sleep(0.2)
        except BaseException:
            self.stop()     # never leave rspamd running (e.g. miltertest not built)
            raise
        self.stop()
        raise AssertionError("rspamd did not answer within 30 s:\n" + self.log()[-3000:])

    def log(self):
        try:
            with open(os.path.join(self.dir, "rspamd.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(5)
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- a scripted milter -----------------------------------------------------------------------

def packet(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data


def u32(v):
    return struct.pack(">I", v)


def cstr(s):
    return (s.encode() if isinstance(s, str) else s) + b"\0"


class SharedRspamd:
    """A test class mixin: one real rspamd (Rspamd()) for all the class's tests, cls.rspamd."""
    rspamd = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.rspamd = Rspamd().start()

    @classmethod
    def tearDownClass(cls):
        if cls.rspamd:
            cls.rspamd.stop()
        super().tearDownClass()


class ScriptedMilter:
    """A milter on a unix socket (or 127.0.0.1 with inet=True), one thread per connection.

    optneg: (version, actions, protocol) it answers, plus symlists {stage: "names"}.
    script: {event letter: [replies]}: each reply is bytes (one or more packets), or a tuple
    of those and floats (sleep that many seconds); the list's last reply repeats; or a
    function of the event's data that returns the reply bytes; an event not in the script gets
    CONTINUE ('c'); events
    listed in noreply get no answer (the MTA must not wait). Every packet received is kept in
    self.received as (cmd letter, data bytes), per connection in self.sessions."""

    def __init__(self, script=None, version=6, actions=0x1ff, protocol=0, symlists=None,
                 noreply=(), inet=False):
        self.script = {k: (v if callable(v) else list(v)) for k, v in (script or {}).items()}
        self.optneg = (version, actions, protocol, symlists or {})
        self.noreply = set(noreply)
        self.dir = tempfile.mkdtemp(prefix="mxgate-milter-")
        self.sessions = []
        self.open = 0
        self.lock = threading.Lock()
        if inet:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind(("127.0.0.1", 0))
            self.milter = "inet:127.0.0.1:%d" % self.sock.getsockname()[1]
        else:
            path = os.path.join(self.dir, "m.sock")
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(path)
            self.milter = "unix:" + path
        self.sock.listen(16)
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def received(self):
        """Every packet, once every connection has ended (5 s at most): miltertest has exited
        by then, and its last packets must have been read."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with self.lock:
                if self.open == 0:
                    break
            time.sleep(0.01)
        with self.lock:
            return [p for s in self.sessions for p in s]

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.open += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _read(conn, n):
        b = b""
        while len(b) < n:
            chunk = conn.recv(n - len(b))
            if not chunk:
                return None
            b += chunk
        return b

    def _serve(self, conn):
        got = []
        with self.lock:
            self.sessions.append(got)
        conn.settimeout(60)
        try:
            while True:
                head = self._read(conn, 4)
                if head is None:
                    return
                (length,) = struct.unpack(">I", head)
                body = self._read(conn, length)
                if body is None:
                    return
                cmd, data = body[:1].decode("latin-1"), body[1:]
                with self.lock:
                    got.append((cmd, data))
                if cmd == "O":
                    v, a, p, syms = self.optneg
                    extra = b"".join(u32(st) + cstr(names) for st, names in syms.items())
                    conn.sendall(packet(b"O", u32(v) + u32(a) + u32(p) + extra))
                    continue
                if cmd in ("D", "A", "Q") or cmd in self.noreply:
                    if cmd == "Q":
                        return
                    continue
                replies = self.script.get(cmd)
                if callable(replies):
                    conn.sendall(replies(data))
                    continue
                if replies:
                    reply = replies.pop(0) if len(replies) > 1 else replies[0]
                else:
                    reply = packet(b"c")
                if isinstance(reply, tuple):
                    for part in reply:
                        if isinstance(part, float):
                            time.sleep(part)
                        else:
                            conn.sendall(part)
                else:
                    conn.sendall(reply)
        except OSError:
            return
        finally:
            conn.close()
            with self.lock:
                self.open -= 1

    def events(self):
        """The commands received, macros left out."""
        return [c for c, _ in self.received if c != "D"]

    def macros(self, event):
        """The macros sent before each `event` packet: a list of {name: value} dicts."""
        out = []
        for c, d in self.received:
            if c == "D" and d[:1].decode() == event:
                parts = d[1:].split(b"\0")[:-1]
                out.append({parts[i].decode(): parts[i + 1].decode()
                            for i in range(0, len(parts) - 1, 2)})
        return out

    def stop(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- opendkim ---------------------------------------------------------------------------------

# libunbound (Debian's opendkim resolves with it) answers the RFC 6761 names itself, "test."
# among them (NXDOMAIN, nothing sent); "nodefault" lets a query for them go to the name server.
OPENDKIM_UNBOUND_CONF = 'server:\n  local-zone: "test." nodefault\n'


class OpenDkim:
    """opendkim in the foreground (-f) with a configuration of its own in a temporary folder,
    on a unix socket there. settings: extra "Name value" lines. The key pair comes from
    opendkim-genkey (dkim_keys()).
    nameserver: an address whose DNS opendkim asks for the keys (the test DNS, dnsfixture, in
    a PrivateDnsCase's namespace: "127.0.0.1"): Nameservers (libunbound forwards every query
    to it, instead of recursing from the root), and ResolverConfiguration, an unbound
    configuration file that takes "test." out of libunbound's built-in local zones."""

    def __init__(self, mode, domain, selector, keydir, settings=(), nameserver=None):
        if shutil.which("opendkim") is None and not os.path.exists("/usr/sbin/opendkim"):
            raise unittest.SkipTest("opendkim is not installed (sh scripts/deps.sh --test)")
        self.dir = tempfile.mkdtemp(prefix="mxgate-opendkim-")
        os.chmod(self.dir, 0o755)
        self.socket = os.path.join(self.dir, "dkim.sock")
        self.out = os.path.join(self.dir, "opendkim.out")
        lines = ["Mode %s" % mode, "Socket local:%s" % self.socket, "Domain %s" % domain,
                 "Selector %s" % selector, "KeyFile %s" % os.path.join(keydir, selector + ".private"),
                 "Canonicalization relaxed/simple", "PidFile %s/opendkim.pid" % self.dir,
                 "Syslog no", "RequireSafeKeys false", "InternalHosts 127.0.0.1",
                 "AuthservID mx.example.test"]
        if os.geteuid() == 0:
            lines.append("UserID opendkim")
        if nameserver:
            ubconf = os.path.join(self.dir, "unbound.conf")
            with open(ubconf, "w") as f:
                f.write(OPENDKIM_UNBOUND_CONF)
            os.chmod(ubconf, 0o644)
            lines += ["Nameservers %s" % nameserver, "ResolverConfiguration %s" % ubconf]
        lines += list(settings)
        self.conf = os.path.join(self.dir, "opendkim.conf")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None

    @property
    def milter(self):
        return "unix:" + self.socket

    def start(self):
        if os.geteuid() == 0:
            pw = pwd.getpwnam("opendkim")
            harness.chown_tree(self.dir, pw.pw_uid, pw.pw_gid)
        binary = shutil.which("opendkim") or "/usr/sbin/opendkim"
        with open(self.out, "w") as out:
            self.proc = subprocess.Popen([binary, "-f", "-l", "-x", self.conf],
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("opendkim exited: " + open(self.out).read())
            if os.path.exists(self.socket):
                return self
            time.sleep(0.05)
        self.stop()
        raise AssertionError("opendkim did not listen within 15 s")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            # libmilter's own shutdown waits 5 s for its threads: a test filter need not
            try:
                self.proc.wait(0.5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


def dkim_keys(domain, selector):
    """(folder with SELECTOR.private, the TXT record line for dnsfixture) from opendkim-genkey."""
    tool = shutil.which("opendkim-genkey") or "/usr/sbin/opendkim-genkey"
    if not os.path.exists(tool):
        raise unittest.SkipTest("opendkim-genkey is not installed (sh scripts/deps.sh --test)")
    d = tempfile.mkdtemp(prefix="mxgate-dkimkey-")
    os.chmod(d, 0o755)
    subprocess.run([tool, "-b", "1024", "-d", domain, "-s", selector, "-D", d], check=True,
                   capture_output=True, timeout=60)
    with open(os.path.join(d, selector + ".txt")) as f:
        txt = f.read()
    strings = [s for s in txt.split('"')[1::2]]
    record = "%s._domainkey.%s. 300 IN TXT %s" % (selector, domain,
                                                  " ".join('"%s"' % s for s in strings))
    if os.geteuid() == 0:
        pw = pwd.getpwnam("opendkim")
        harness.chown_tree(d, pw.pw_uid, pw.pw_gid)
    return d, record
