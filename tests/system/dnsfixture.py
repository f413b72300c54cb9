"""dnsfixture: the test DNS servers (Debian's unbound for the test domains' records, rbldnsd for
the DNS lists) and a private network namespace for the tests that need DNS, so that no test ever
asks the machine's resolver.

    class MyTest(dnsfixture.PrivateDnsCase):   # every test method runs in its own namespace
        def test_x(self):
            dns = self.start_dns(
                records=["example.test. 300 IN MX 10 mx.example.test.",
                         "mx.example.test. 300 IN A 192.0.2.10",
                         "10.2.0.192.in-addr.arpa. PTR mx.example.test."],
                rbl={"zen.test": ("ip4set", [":127.0.0.2:Listed by zen.test: $", "127.0.0.2"])},
                servfail=["broken.test"], timeout=["slow.test"])
            dnsfixture.query("example.test", "MX")            # -> (0, ['000a02...'])
            dnsfixture.query("2.0.0.127.zen.test", "TXT")     # -> (0, ['Listed by ...'])
        def test_y(self):                      # rbldnsd alone on 127.0.0.1
            dns = self.start_rbldnsd({
                "zen.test": ("ip4set", [":127.0.0.2:Listed by zen.test: $", "127.0.0.2"]),
                "dbl.test": ("dnset", ["spam.example :127.0.1.2:Domain $ listed"]),
            })
            dnsfixture.query("2.0.0.127.zen.test", "TXT")   # -> (0, ['Listed by ...'])

PrivateDnsCase (a harness.MxTestCase)
    run() re-executes the one test method in a child "unshare --net --mount" (private mount
    propagation) of this same Python, as root.  The child brings up lo (127.0.0.0/8 and ::1,
    nothing else: the machine's network and resolver are unreachable), bind-mounts a
    resolv.conf naming only 127.0.0.1 (timeout:1 attempts:1) over /etc/resolv.conf, and runs
    setUp, the method, tearDown and cleanups there; everything they start (build/mxgate through
    harness.Server, the reference Postfix through scripts/postfix-ref, unbound, rbldnsd) lives
    in that namespace and resolves through the test server.  The outcome (pass, fail with the
    child's traceback, skip) comes back to the test in the runner, so tests/run.py and plain
    unittest report it as usual.  The child's whole run is bounded (class attribute ns_timeout,
    default NS_TIMEOUT = 300 s); a process still in the child's network namespace after it
    exits (or is killed) is killed and fails the test.  The mounts die with the namespace.  Use
    setUp/addCleanup, not setUpClass (that runs in the runner, outside the namespace).
    Skips (unittest skip) when not root or unshare, ip or mount is missing.
    self.start_dns(records=(), rbl=None, servfail=(), timeout=(), refused=()) starts a
    TestDns inside and registers its stop; self.start_rbldnsd(zones) starts an RblDns on
    127.0.0.1 instead (use one or the other: both want 127.0.0.1:53).
    in_namespace is True in the child (so always in setUp, test methods and cleanups; the
    child's environment has MXGATE_DNS_NAMESPACE=1).

TestDns(records=(), rbl=None, servfail=(), timeout=(), refused=())
    unbound, the recursive server the namespace's resolv.conf names: 127.0.0.1:53 and
    [::1]:53, udp and tcp, in the foreground as root, iterator only (no DNSSEC validation),
    nothing cached (cache-max-ttl 0: every query asks again), records in the order given
    (rrset-roundrobin no).  To change the records, stop() and start another.
      records   zone-file lines, "owner [ttl] [IN] TYPE rdata" with absolute names (trailing
                dot), any type unbound's local-data takes (A, AAAA, MX, NS, PTR, TXT, CNAME,
                ...; TXT strings in double quotes; no single quote in a line).  Each forward
                owner's top-level domain ("test") becomes a static local zone (a name in it
                without records: NXDOMAIN; a type without records: NOERROR, no answer); each
                reverse owner (in-addr.arpa, ip6.arpa) is a zone of its own, so that
                unbound's built-in reverse zones do not hide it.  A CNAME to a local name is
                followed by unbound (the chain in one answer).  A TC test: enough records of
                one name that a reply without EDNS passes 512 bytes (unbound sets TC; TCP works).
      rbl       {zone: (type, lines)} as RblDns: rbldnsd on 127.0.0.2:53, the zones forwarded
                to it (transparent local zones, so they may lie inside a records zone).
      servfail  names (with everything below them) that answer SERVFAIL at once: forwarded to
                192.0.2.1, which has no route in the namespace.
      timeout   names whose queries unbound drops (local-zone deny): the client times out.
      refused   names that answer REFUSED.
    Anything else (no test zone): REFUSED, at once, never the root servers.
    start() waits up to START_TIMEOUT s until unbound answers (unbound-checkconf first: a bad
    record line fails the test with its message); stop() SIGTERM, SIGKILL after 5 s, then
    rbldnsd's stop.  Raises unittest.SkipTest when unbound is not installed (scripts/deps.sh
    --test).  output(): unbound's log.

RblDns(zones, address="127.0.0.1", port=53)
    zones: {zone: (dataset type, [data lines])}; types and line syntax as in rbldnsd(8)
    (ip4set, ip4trie, dnset, generic, ...; ":A:TXT" default lines, "$" = the queried
    address/name).  start() runs rbldnsd in the foreground on address:port (udp) as the user
    rbldns and waits up to START_TIMEOUT s until it answers; stop() SIGTERM, SIGKILL after
    5 s.  Raises unittest.SkipTest when rbldnsd is not installed (scripts/deps.sh --test).
    rbldnsd answers only its zones (REFUSED for anything else).

setup_namespace() / teardown_namespace(tmp) / sweep_namespace(ino) / unshare_command(argv)
    The pieces PrivateDnsCase's child uses, for a script that re-executes itself under
    "unshare --net --mount --propagation private" (unshare_command(argv) is argv so) on its
    own (bench/dnsbl.py, tests/compat/compat.py):
    setup_namespace() brings up lo and bind-mounts the RESOLV_CONF over /etc/resolv.conf,
    returning the temporary directory that holds it (raises OSError or a SubprocessError);
    teardown_namespace(tmp) unmounts it and removes the directory; sweep_namespace(ino)
    SIGKILLs every process (but the caller) in the network namespace of inode ino (never the
    caller's own) and returns their [(pid, cmdline)].  net_ns() is the caller's namespace inode.

query(name, qtype="A", server="127.0.0.1", port=53, timeout=2.0)
    One UDP DNS query, stdlib only: (rcode, [answers]) with A answers as dotted quads and TXT
    answers as text (the strings of one record joined), other types as RDATA in hex; qtype
    one of QTYPES; rcode None when nothing answered.
"""

import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

import harness

START_TIMEOUT = 10.0
NS_TIMEOUT = 300
NS_ENV = "MXGATE_DNS_NAMESPACE"
RESOLV_CONF = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28}


# -- a DNS query -----------------------------------------------------------------------------

def _skip_name(msg, off):
    while True:
        n = msg[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:
            return off + 2
        off += 1 + n


def query(name, qtype="A", server="127.0.0.1", port=53, timeout=2.0):
    qt = QTYPES[qtype]
    qid = random.randrange(0x10000)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode("ascii")
    q += b"\0" + struct.pack(">HH", qt, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(q, (server, port))
        deadline = time.monotonic() + timeout
        while True:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                msg, _ = s.recvfrom(65535)
            except (socket.timeout, ConnectionRefusedError):
                return None, []
            if len(msg) >= 12 and struct.unpack(">H", msg[:2])[0] == qid:
                break
    _, flags, qd, an, _, _ = struct.unpack(">HHHHHH", msg[:12])
    off = 12
    for _ in range(qd):
        off = _skip_name(msg, off) + 4
    out = []
    for _ in range(an):
        off = _skip_name(msg, off)
        rtype, _, _, rdlen = struct.unpack(">HHIH", msg[off:off + 10])
        off += 10
        rdata = msg[off:off + rdlen]
        off += rdlen
        if rtype != qt:
            continue
        if rtype == 1:
            out.append(socket.inet_ntoa(rdata))
        elif rtype == 16:
            parts, i = [], 0
            while i < len(rdata):
                parts.append(rdata[i + 1:i + 1 + rdata[i]].decode("utf-8", "replace"))
                i += 1 + rdata[i]
            out.append("".join(parts))
        else:
            out.append(rdata.hex())
    return flags & 0x000F, out


# -- rbldnsd -----------------------------------------------------------------------------------

class RblDns:
    def __init__(self, zones, address="127.0.0.1", port=53):
        self.zones = dict(zones)
        self.address, self.port = address, port
        self.proc = None
        self.dir = None

    def start(self):
        binary = shutil.which("rbldnsd") or ("/usr/sbin/rbldnsd" if os.access("/usr/sbin/rbldnsd", os.X_OK) else None)
        if not binary:
            raise unittest.SkipTest("rbldnsd is not installed (sh scripts/deps.sh --test)")
        self.dir = tempfile.mkdtemp(prefix="mxgate-rbldnsd-")
        os.chmod(self.dir, 0o755)
        specs = []
        for i, (zone, (kind, lines)) in enumerate(sorted(self.zones.items())):
            fname = "zone%d.%s" % (i, kind)
            with open(os.path.join(self.dir, fname), "w") as f:
                f.write("".join(line + "\n" for line in lines))
            os.chmod(os.path.join(self.dir, fname), 0o644)
            specs.append("%s:%s:%s" % (zone, kind, fname))
        user = "rbldns"
        try:
            import pwd
            pwd.getpwnam(user)
        except KeyError:
            user = "nobody"
        self.log = open(os.path.join(self.dir, "rbldnsd.out"), "w+")
        self.proc = subprocess.Popen(
            [binary, "-n", "-4", "-u", user, "-w", self.dir, "-c", "0",
             "-b", "%s/%d" % (self.address, self.port)] + specs,
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        # rbldnsd answers REFUSED for a name outside its zones: any answer means it is up.
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            rcode, _ = query("ready.probe.invalid", "A", self.address, self.port, timeout=0.2)
            if rcode is not None:
                return self
        out = self.output()
        self.stop()
        raise AssertionError("rbldnsd did not start on %s/%d:\n%s" % (self.address, self.port, out))

    def output(self):
        try:
            with open(os.path.join(self.dir, "rbldnsd.out")) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if self.dir:
            self.log.close()
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


# -- unbound: the test domains' records, and the RBL zones through rbldnsd ----------------------

UNBOUND_ADDRESS = "127.0.0.1"
RBL_ADDRESS = "127.0.0.2"        # rbldnsd behind unbound
DEAD_ADDRESS = "192.0.2.1"       # no route in the namespace: the servfail names' forwarder


def _owner(line):
    return line.split()[0].rstrip(".").lower()


def _zone_of(owner):
    """The local zone a record goes in: a reverse name is a zone of its own (so that unbound's
    built-in reverse zones, 127.in-addr.arpa, 2.0.192.in-addr.arpa, ..., do not answer for it),
    a forward name goes in its top-level zone."""
    if owner.endswith(".in-addr.arpa") or owner.endswith(".ip6.arpa"):
        return owner
    return owner.rsplit(".", 1)[-1]


class TestDns:
    """unbound on 127.0.0.1:53 (and [::1]:53), answering for the test domains from local data,
    the RBL zones forwarded to an rbldnsd on 127.0.0.2:53.  See the module docstring."""

    def __init__(self, records=(), rbl=None, servfail=(), timeout=(), refused=()):
        self.records = list(records)
        self.rbl = dict(rbl or {})
        self.servfail = [n.rstrip(".").lower() for n in servfail]
        self.timeout = [n.rstrip(".").lower() for n in timeout]
        self.refused = [n.rstrip(".").lower() for n in refused]
        self.proc = None
        self.dir = None
        self.rbldnsd = None

    def config(self):
        q = lambda name: '"%s."' % name
        lines = [
            "server:",
            "  interface: %s@53" % UNBOUND_ADDRESS,
            "  interface: ::1@53",
            "  do-ip6: yes",
            "  do-daemonize: no",
            "  chroot: \"\"",
            "  username: \"\"",
            "  directory: \"%s\"" % self.dir,
            "  pidfile: \"\"",
            "  use-syslog: no",
            "  logfile: \"\"",
            "  verbosity: 1",
            "  num-threads: 1",
            "  so-reuseport: no",
            "  access-control: 127.0.0.0/8 allow",
            "  access-control: ::1/128 allow",
            # the forwarders are on loopback addresses
            "  do-not-query-localhost: no",
            # no DNSSEC validation, no root trust anchor
            "  module-config: \"iterator\"",
            # nothing cached: each query asks again (a test that changes records sees them)
            "  cache-max-ttl: 0",
            "  cache-max-negative-ttl: 0",
            "  infra-host-ttl: 1",
            "  prefetch: no",
            "  serve-expired: no",
            "  qname-minimisation: no",
            # records in the order given
            "  rrset-roundrobin: no",
            "  minimal-responses: yes",
            # nothing outside the test zones: REFUSED, fast, never the root servers
            "  local-zone: \".\" refuse",
        ]
        zones = sorted({_zone_of(_owner(r)) for r in self.records})
        for z in zones:
            lines.append("  local-zone: %s static" % q(z))
        for r in self.records:
            if "'" in r:
                raise ValueError("a record line may not contain ': %r" % r)
            lines.append("  local-data: '%s'" % r)
        for z in sorted(self.rbl):
            lines.append("  local-zone: %s transparent" % q(z.rstrip(".").lower()))
        for n in self.servfail:
            lines.append("  local-zone: %s transparent" % q(n))
        for n in self.timeout:
            lines.append("  local-zone: %s deny" % q(n))        # dropped: the client times out
        for n in self.refused:
            lines.append("  local-zone: %s refuse" % q(n))
        for z in sorted(self.rbl):
            lines += ["forward-zone:", "  name: %s" % q(z.rstrip(".").lower()),
                      "  forward-addr: %s@53" % RBL_ADDRESS]
        for n in self.servfail:
            lines += ["forward-zone:", "  name: %s" % q(n), "  forward-addr: %s@53" % DEAD_ADDRESS]
        return "\n".join(lines) + "\n"

    def start(self):
        binary = shutil.which("unbound") or ("/usr/sbin/unbound" if os.access("/usr/sbin/unbound", os.X_OK) else None)
        if not binary:
            raise unittest.SkipTest("unbound is not installed (sh scripts/deps.sh --test)")
        if self.rbl:
            self.rbldnsd = RblDns(self.rbl, address=RBL_ADDRESS).start()
        self.dir = tempfile.mkdtemp(prefix="mxgate-unbound-")
        conf = os.path.join(self.dir, "unbound.conf")
        with open(conf, "w") as f:
            f.write(self.config())
        check = subprocess.run([binary + "-checkconf" if os.path.exists(binary + "-checkconf")
                                else "unbound-checkconf", conf],
                               capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            out = check.stdout + check.stderr
            self.stop()
            raise AssertionError("unbound-checkconf refuses the test configuration:\n%s" % out)
        self.log = open(os.path.join(self.dir, "unbound.out"), "w+")
        self.proc = subprocess.Popen([binary, "-d", "-c", conf], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            rcode, _ = query("ready.probe.invalid", "A", UNBOUND_ADDRESS, 53, timeout=0.2)
            if rcode is not None:
                return self
        out = self.output()
        self.stop()
        raise AssertionError("unbound did not start on %s:53:\n%s" % (UNBOUND_ADDRESS, out))

    def output(self):
        try:
            with open(os.path.join(self.dir, "unbound.out")) as f:
                return f.read()
        except (OSError, TypeError):
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if self.dir:
            if getattr(self, "log", None):
                self.log.close()
                self.log = None
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        if self.rbldnsd is not None:
            self.rbldnsd.stop()
            self.rbldnsd = None


# -- the private namespace -------------------------------------------------------------------

def _net_ns(pid="self"):
    try:
        return os.stat("/proc/%s/ns/net" % pid).st_ino
    except OSError:
        return None


def _procs_in_net_ns(ino):
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != os.getpid() and _net_ns(d) == ino:
            try:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
            except OSError:
                cmd = "?"
            found.append((int(d), cmd))
    return found


class PrivateDnsCase(harness.MxTestCase):
    in_namespace = bool(os.environ.get(NS_ENV))
    ns_timeout = NS_TIMEOUT

    def start_rbldnsd(self, zones):
        if not self.in_namespace:
            self.fail("start_rbldnsd() outside the private namespace")
        dns = RblDns(zones)
        self.addCleanup(dns.stop)
        dns.start()
        return dns

    def start_dns(self, records=(), rbl=None, servfail=(), timeout=(), refused=()):
        if not self.in_namespace:
            self.fail("start_dns() outside the private namespace")
        dns = TestDns(records, rbl, servfail, timeout, refused)
        self.addCleanup(dns.stop)
        dns.start()
        return dns

    def run(self, result=None):
        if self.in_namespace:
            return super().run(result)
        # In the runner: this instance only stands for the child's run.
        self.setUp = self.tearDown = lambda: None
        setattr(self, self._testMethodName, self._run_in_namespace)
        return super().run(result)

    def _run_in_namespace(self):
        if os.geteuid() != 0:
            self.skipTest("a private network namespace needs root")
        for tool in ("unshare", "ip", "mount"):
            if not shutil.which(tool):
                self.skipTest("%s is not installed" % tool)
        module = sys.modules[type(self).__module__]
        with tempfile.TemporaryDirectory(prefix="mxgate-dnsns-") as tmp:
            out_file = os.path.join(tmp, "result.json")
            env = dict(os.environ)
            env[NS_ENV] = "1"
            cmd = unshare_command([sys.executable, os.path.abspath(__file__), "--inside",
                                   os.path.abspath(module.__file__), type(self).__name__,
                                   self._testMethodName, out_file])
            # Output to a file, not a pipe: a daemon left behind would hold a pipe open.
            with open(os.path.join(tmp, "output"), "w+b") as out_f:
                proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out_f,
                                        stderr=subprocess.STDOUT, start_new_session=True)
                try:
                    proc.wait(timeout=self.ns_timeout)
                    timed_out = False
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    timed_out = True
                out_f.seek(0)
                out = out_f.read().decode("utf-8", "replace")
            res = {}
            try:
                with open(out_file) as f:
                    res = json.load(f)
            except (OSError, ValueError):
                pass
            left = sweep_namespace(res.get("netns"))
        if timed_out:
            self.fail("the namespaced test ran longer than %d s (killed, with: %s)\n%s"
                      % (self.ns_timeout, "; ".join("%d %s" % p for p in left) or "nothing else",
                         harness_tail(out)))
        if left:
            self.fail("processes left in the test's namespace (killed): %s\n%s"
                      % ("; ".join("%d %s" % p for p in left), harness_tail(out)))
        outcome = res.get("outcome")
        if outcome == "pass":
            return
        if outcome == "skip":
            self.skipTest(res.get("detail", ""))
        self.fail("in the private namespace: %s\n%s\n%s"
                  % (outcome or "no result (exit status %s)" % proc.returncode,
                     res.get("detail", ""), harness_tail(out)))


def net_ns():
    return _net_ns()


def sweep_namespace(ino):
    """SIGKILL the processes left in network namespace ino; never sweep our own (a child that
    somehow did not leave it).  Returns [(pid, cmdline)]."""
    left = _procs_in_net_ns(ino) if ino and ino != _net_ns() else []
    for pid, _ in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return left


def setup_namespace():
    """In a fresh network+mount namespace: lo up, RESOLV_CONF bind-mounted over
    /etc/resolv.conf.  Returns the temporary directory for teardown_namespace()."""
    tmp = tempfile.mkdtemp(prefix="mxgate-dnsns-resolv-")
    try:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10,
                       capture_output=True)
        conf = os.path.join(tmp, "resolv.conf")
        with open(conf, "w") as f:
            f.write(RESOLV_CONF)
        os.chmod(tmp, 0o755)
        os.chmod(conf, 0o644)
        subprocess.run(["mount", "--bind", conf, "/etc/resolv.conf"], check=True, timeout=10,
                       capture_output=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def unshare_command(argv):
    """argv run in a new private network and mount namespace (as PrivateDnsCase's child)."""
    return ["unshare", "--net", "--mount", "--propagation", "private", "--"] + list(argv)


def teardown_namespace(tmp):
    """The namespace's mounts go with it; this only removes our file (unmounted first)."""
    subprocess.run(["umount", "/etc/resolv.conf"], capture_output=True, timeout=10)
    shutil.rmtree(tmp, ignore_errors=True)


def harness_tail(text, n=30):
    lines = text.rstrip().splitlines()
    return "\n".join(lines[-n:])


def _inside(test_file, cls_name, method, out_file):
    """The child's side: set up the namespace, run one test, write its outcome."""
    res = {"netns": _net_ns()}
    with open(out_file, "w") as f:        # early: a run that times out is still swept
        json.dump(res, f)

    def finish(outcome, detail=""):
        res.update(outcome=outcome, detail=detail)
        with open(out_file, "w") as f:
            json.dump(res, f)

    try:
        tmp = setup_namespace()
    except (subprocess.SubprocessError, OSError) as e:
        detail = getattr(e, "stderr", b"") or b""
        finish("error", "namespace setup failed: %s %s" % (e, detail.decode("utf-8", "replace")))
        return 1
    try:
        import importlib.util
        name = os.path.splitext(os.path.basename(test_file))[0]
        sys.path.insert(0, os.path.dirname(test_file))
        spec = importlib.util.spec_from_file_location(name, test_file)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        test = getattr(mod, cls_name)(method)
        result = unittest.TestResult()
        test.run(result)
        if result.errors or result.failures:
            finish("fail", "\n".join(t for _, t in result.errors + result.failures))
        elif result.skipped:
            finish("skip", result.skipped[0][1])
        elif result.expectedFailures or result.unexpectedSuccesses:
            finish("fail", "expected failure / unexpected success")
        else:
            finish("pass")
    except Exception:
        import traceback
        finish("error", traceback.format_exc())
    finally:
        teardown_namespace(tmp)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--inside" and os.environ.get(NS_ENV):
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        sys.exit(_inside(*sys.argv[2:]))
    sys.exit("usage: (by PrivateDnsCase) dnsfixture.py --inside TEST_FILE CLASS METHOD OUT")
