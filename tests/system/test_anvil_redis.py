"""Issue 12 system tests: anvil on Redis, one view of each client across several MX hosts.

A real redis-server (Debian's /usr/bin/redis-server) on 127.0.0.1 and a free port, no
persistence, and two mxgate nodes on different ports that share it.  Both nodes name their
service "smtp" for anvil (mxgate_anvil_service), as two MX hosts on port 25 would; the
warnings keep naming the master.cf service ("127.0.0.1:<port>"), as Postfix's do.
anvil_rate_time_unit is 5s, mxgate_anvil_lease_time 3s (leases refreshed every second).

Shown: the connection count limit across nodes (421 4.7.0 <host> Error: too many connections
from <addr>, Postfix's reply); the connection, message and recipient rates across both nodes;
a node killed with -9 stops counting within one lease time; Redis stopped: both nodes accept
mail, log one warning, and go back to Redis when it returns (registering their sessions);
Redis that does not answer (SIGSTOP): the 200 ms bound, local counts, one warning; Redis that
answers every script with an error (-OOM): one warning, not one per reconnection; the sessions
opened while Redis was down registered as soon as it is back; one EVALSHA per connect, MAIL and
RCPT (MONITOR); a host name resolved off the loop (slowdns shim); two prefixes on one Redis and
the keys' expiry; a unix socket with AUTH from a password file, and a wrong password;
`mxgate anvil show` and `mxgate anvil clear` against Redis and through the control socket of a
node with the memory backend.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import harness
from harness import MxTestCase

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
HOST = "mx.example.test"
BANNER = "220 %s ESMTP mxgate" % HOST
LEASE = 3


def too_many_connections(addr):
    return "421 4.7.0 %s Error: too many connections from %s" % (HOST, addr)


class RedisServer:
    """A scratch redis-server on 127.0.0.1:<port>, stopped and started again at will."""

    def __init__(self, password=None):
        self.dir = tempfile.mkdtemp(prefix="mxgate-redis-")
        os.chmod(self.dir, 0o755)      # the daemons (mail_owner) reach the unix socket
        self.port = harness.free_port()
        self.password = password
        self.proc = None

    def start(self):
        args = [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.dir, "--daemonize", "no",
                "--logfile", os.path.join(self.dir, "redis.log")]
        self.unixsocket = os.path.join(self.dir, "redis.sock")
        args += ["--unixsocket", self.unixsocket, "--unixsocketperm", "777"]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                if self.command("PING") in ("PONG", "NOAUTH"):
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start on port %d" % self.port)

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def command(self, *args):
        """One command in RESP, the reply as text (simple answers only)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=3)
        try:
            data = b""
            if self.password:
                args = ("AUTH", self.password) + args
                data += self._encode(args[:2])
                args = args[2:]
            data += self._encode(args)
            s.sendall(data)
            buf = b""
            want = 2 if self.password else 1
            replies = []
            while len(replies) < want:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                replies, rest = self._parse_all(buf)
            return replies[-1] if replies else None
        finally:
            s.close()

    @staticmethod
    def _encode(args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        return out

    def _parse_all(self, buf):
        replies = []
        while buf:
            r = self._parse(buf)
            if r is None:
                break
            val, buf = r
            replies.append(val)
        return replies, buf

    def _parse(self, buf):
        if b"\r\n" not in buf:
            return None
        head, rest = buf.split(b"\r\n", 1)
        t, body = head[:1], head[1:].decode()
        if t in (b"+", b"-"):
            return (body.split(" ")[0] if t == b"-" else body), rest
        if t == b":":
            return int(body), rest
        if t == b"$":
            n = int(body)
            if n < 0:
                return None, rest
            if len(rest) < n + 2:
                return None
            return rest[:n].decode(), rest[n + 2:]
        if t == b"*":
            n = int(body)
            items = []
            for _ in range(max(n, 0)):
                r = self._parse(rest)
                if r is None:
                    return None
                v, rest = r
                items.append(v)
            return items, rest
        raise ValueError("bad RESP %r" % head)


class RedisMonitor:
    """MONITOR on a connection of its own: every command Redis executes from then on."""

    LINE = re.compile(r'^\+(\S+) \[(\d+) ([^\]]+)\] (.*)$')

    def __init__(self, redis):
        self.sock = socket.create_connection(("127.0.0.1", redis.port), timeout=3)
        self.sock.sendall(b"MONITOR\r\n")
        self.buf = b""
        while b"\r\n" not in self.buf:
            self.buf += self.sock.recv(4096)
        first, self.buf = self.buf.split(b"\r\n", 1)
        assert first == b"+OK", first

    def commands(self, quiet=0.5):
        """(client, [command, args...]) for every command seen so far, after quiet seconds of
        silence; client is "lua" for the commands a script ran."""
        self.sock.settimeout(quiet)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self.buf += chunk
        except socket.timeout:
            pass
        out = []
        *lines, self.buf = self.buf.split(b"\r\n")
        for ln in lines:
            m = self.LINE.match(ln.decode("utf-8", "replace"))
            if m:
                args = [re.sub(r"\\(.)", r"\1", a)
                        for a in re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(4))]
                out.append((m.group(3), args))
        return out

    def close(self):
        self.sock.close()


def redis_available():
    return os.access(REDIS, os.X_OK)


@unittest.skipUnless(redis_available(), "redis-server is not installed (scripts/deps.sh --test)")
class AnvilRedisTest(MxTestCase):

    def setUp(self):
        self.redis = RedisServer()
        self.redis.start()
        self.addCleanup(self.redis.cleanup)

    def node(self, limits, env=None, **extra):
        params = dict(harness.BASE_MAIN, anvil_rate_time_unit="5s",
                      mxgate_anvil_backend="redis:127.0.0.1:%d" % self.redis.port,
                      mxgate_anvil_service="smtp", mxgate_anvil_lease_time="%ds" % LEASE)
        params.update(limits)
        params.update(extra)
        srv = self.start_server(main=params, virtual_users=["alice"], env=env)
        return srv

    def nodes(self, limits, **extra):
        a, b = self.node(limits, **extra), self.node(limits, **extra)
        self.wait_connected(a)
        self.wait_connected(b)
        return a, b

    def assert_shared_count(self, a, b, through):
        """With a session from 127.0.0.2 held on node a (count limit 1), node b refuses the
        same client within 10 s: b shares a's count through the Redis named through."""
        held = self.accepted(a, "127.0.0.2", "the session on node A")
        deadline = time.time() + 10
        shared = False
        while time.time() < deadline and not shared:
            c, rep = self.open(b, "127.0.0.2")
            shared = rep.text == too_many_connections("127.0.0.2")
            if not shared:
                self.quit(c)
                time.sleep(0.3)
        self.assertTrue(shared, "node B never shared A's count through %s\n" % through
                        + "\n".join(b.log_lines()))
        self.quit(held)

    def wait_connected(self, srv):
        """Redis holds the script once a node's loops are connected."""
        deadline = time.time() + 5
        while time.time() < deadline:
            if self.redis.command("CLIENT", "LIST").count("cmd=") >= 2:
                break
            time.sleep(0.05)
        time.sleep(0.3)

    def open(self, srv, source):
        c = self.connect(srv, source=source)
        return c, c.read_reply(10)

    def accepted(self, srv, source, what=""):
        c, rep = self.open(srv, source)
        self.assertEqual(rep.text, BANNER, "%s from %s must be accepted" % (what, source))
        return c

    def refused(self, srv, source, what=""):
        c, rep = self.open(srv, source)
        self.assertEqual(rep.text, too_many_connections(source),
                         "%s from %s must be refused" % (what, source))
        self.assertTrue(c.closed(3.0), "a refused connection must be closed")

    def quit(self, c):
        c.send("QUIT\r\n")
        c.expect("221 2.0.0 Bye")
        c.close()

    def warning_count(self, srv, regex):
        return len(harness.log_matches(srv, regex))

    def send_mail(self, c, rcpts=("alice@virt.test",), helo=True):
        if helo:
            self.assertEqual(c.cmd("EHLO client.example").code, 250)
        self.assertEqual(c.cmd("MAIL FROM:<a@example.org>").code, 250)
        for r in rcpts:
            self.assertEqual(c.cmd("RCPT TO:<%s>" % r).code, 250)
        self.assertEqual(c.cmd("DATA").code, 354)
        c.send("Subject: t\r\n\r\nbody\r\n.\r\n")
        self.assertEqual(c.read_reply(10).code, 250)

    # -- connection count ---------------------------------------------------------------------

    def test_connection_count_across_nodes(self):
        """Count limit 2: one session on each node, and a third on either node gets Postfix's
        421 with the warning 'Connection concurrency limit exceeded: 3'; when one ends, the
        other node accepts again."""
        a, b = self.nodes({"smtpd_client_connection_count_limit": 2})
        c1 = self.accepted(a, "127.0.0.2", "a session on node A")
        c2 = self.accepted(b, "127.0.0.2", "a session on node B")
        self.refused(a, "127.0.0.2", "a third session, on node A")
        self.refused(b, "127.0.0.2", "a third session, on node B")
        for n in (a, b):
            lines = harness.wait_log_count(
                n, r"warning: Connection concurrency limit exceeded: 3 from unknown\[127\.0\.0\.2\] "
                   r"for service %s$" % re.escape(harness.service_name(n)), 1)
            self.assertEqual(len(lines), 1, "\n".join(n.log_lines()))
        self.accepted(a, "127.0.0.3", "another client")
        self.quit(c1)
        self.assertIsNotNone(a.wait_log(r"disconnect from unknown\[127\.0\.0\.2\]"))
        time.sleep(0.3)
        c3 = self.accepted(b, "127.0.0.2", "a session after one ended")
        self.quit(c3)
        self.quit(c2)
        # The statistics at exit are the memory backend's lines, with the shared counts: B's
        # connects saw rates 2, 4 and 5 (A's connects count too) and count 3 (its refused
        # one); the cache size is B's own table (127.0.0.3 went to A).
        b.check()
        stamp = r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d"
        for line in (r"statistics: max connection rate 5/5s for \(smtp:127\.0\.0\.2\) at %s$" % stamp,
                     r"statistics: max connection count 3 for \(smtp:127\.0\.0\.2\) at %s$" % stamp,
                     r"statistics: max cache size 1 at %s$" % stamp):
            self.assertEqual(len(harness.log_matches(b, r"mxgate/anvil\[\d+\]: " + line)), 1,
                             "\n".join(b.log_lines()))

    # -- rates --------------------------------------------------------------------------------

    def test_connection_rate_across_nodes(self):
        """Rate limit 3 per 5s across both nodes: A, B, A accepted, then the 4th (on B) and the
        5th (on A) are refused, with Postfix's warnings (rates 4 and 5)."""
        a, b = self.nodes({"smtpd_client_connection_rate_limit": 3})
        for i, n in enumerate((a, b, a)):
            self.quit(self.accepted(n, "127.0.0.2", "connection %d" % (i + 1)))
        self.refused(b, "127.0.0.2", "connection 4")
        self.refused(a, "127.0.0.2", "connection 5")
        self.assertTrue(harness.wait_log_count(
            b, r"warning: Connection rate limit exceeded: 4 from unknown\[127\.0\.0\.2\] for service %s$"
               % re.escape(harness.service_name(b)), 1))
        self.assertTrue(harness.wait_log_count(
            a, r"warning: Connection rate limit exceeded: 5 from unknown\[127\.0\.0\.2\] for service %s$"
               % re.escape(harness.service_name(a)), 1))

    def test_message_and_recipient_rates_across_nodes(self):
        """Message rate 2: one MAIL on each node, the third (on A) gets 450 4.7.1 Error: too much
        mail from 127.0.0.2.  Recipient rate 3: two RCPTs on A and one on B, the fourth (on B)
        gets 450 4.7.1 Error: too many recipients from 127.0.0.2."""
        a, b = self.nodes({"smtpd_client_message_rate_limit": 2,
                           "smtpd_client_recipient_rate_limit": 3})
        ca = self.accepted(a, "127.0.0.2")
        cb = self.accepted(b, "127.0.0.2")
        self.assertEqual(ca.cmd("EHLO client.example").code, 250)
        self.assertEqual(cb.cmd("EHLO client.example").code, 250)
        self.assertEqual(ca.cmd("MAIL FROM:<a@example.org>").code, 250)
        self.assertEqual(ca.cmd("RCPT TO:<alice@virt.test>").code, 250)
        self.assertEqual(ca.cmd("RCPT TO:<alice@virt.test>").code, 250)
        self.assertEqual(cb.cmd("MAIL FROM:<a@example.org>").code, 250)
        self.assertEqual(cb.cmd("RCPT TO:<alice@virt.test>").code, 250)
        self.assertEqual(cb.cmd("RCPT TO:<alice@virt.test>").text,
                         "450 4.7.1 Error: too many recipients from 127.0.0.2")
        self.assertEqual(ca.cmd("RSET").code, 250)
        self.assertEqual(ca.cmd("MAIL FROM:<a@example.org>").text,
                         "450 4.7.1 Error: too much mail from 127.0.0.2")
        self.assertTrue(harness.wait_log_count(
            b, r"warning: Recipient address rate limit exceeded: 4 from unknown\[127\.0\.0\.2\] "
               r"for service %s$" % re.escape(harness.service_name(b)), 1))
        self.assertTrue(harness.wait_log_count(
            a, r"warning: Message delivery request rate limit exceeded: 3 from "
               r"unknown\[127\.0\.0\.2\] for service %s$" % re.escape(harness.service_name(a)), 1))
        self.quit(ca)
        self.quit(cb)

    # -- a node that dies ---------------------------------------------------------------------

    def test_killed_node_stops_counting_within_one_lease(self):
        """Count limit 2: node B holds two sessions and is killed with -9; at once A refuses the
        client (B's leases still count), and within one lease time (3s) A accepts it again."""
        a, b = self.nodes({"smtpd_client_connection_count_limit": 2})
        self.accepted(b, "127.0.0.2", "session 1 on B")
        self.accepted(b, "127.0.0.2", "session 2 on B")
        self.refused(a, "127.0.0.2", "a third while B lives")
        b.kill9()
        killed = time.time()
        # Refused at first: the leases are still there.
        self.refused(a, "127.0.0.2", "a session right after B died")
        accepted_at = None
        while time.time() < killed + LEASE + 2:
            c, rep = self.open(a, "127.0.0.2")
            if rep.text == BANNER:
                accepted_at = time.time()
                self.quit(c)
                break
            c.close()
            time.sleep(0.2)
        self.assertIsNotNone(accepted_at, "B's sessions still count %ds after it died" % (LEASE + 2))
        self.assertLessEqual(accepted_at - killed, LEASE + 0.5)

    # -- Redis down ---------------------------------------------------------------------------

    def test_redis_down_and_back(self):
        """Redis stopped: both nodes go on accepting mail (their own counts: limit 2 per node)
        and log ONE warning each; Redis started again: they log that it is back, the sessions
        opened meanwhile are registered, and the shared count applies again."""
        a, b = self.nodes({"smtpd_client_connection_count_limit": 2})
        c0 = self.accepted(a, "127.0.0.2")
        self.quit(c0)
        self.redis.stop()
        time.sleep(0.5)
        held = []
        for n in (a, b, a, b):
            c = self.accepted(n, "127.0.0.3", "a session while Redis is down")
            self.send_mail(c)
            held.append(c)
        warn = r"mxgate/anvil\[\d+\]: warning: Redis at 127\.0\.0\.1:%d: .*; using this host's own counts" \
               % self.redis.port
        for n in (a, b):
            harness.wait_log_count(n, warn, 1)
        time.sleep(1.5)     # reconnection attempts must not log again
        for n in (a, b):
            self.assertEqual(self.warning_count(n, warn), 1, "\n".join(n.log_lines()))
        # Back: each node registers the two sessions it holds.
        port = self.redis.port
        self.redis.start()
        self.assertEqual(self.redis.port, port)
        back = r"mxgate/anvil\[\d+\]: Redis at 127\.0\.0\.1:%d is back; sharing counts again$" % port
        for n in (a, b):
            self.assertTrue(harness.wait_log_count(n, back, 1, timeout=5), "\n".join(n.log_lines()))
        deadline = time.time() + 3
        while time.time() < deadline:
            if self.redis.command("ZCARD", "mxgate:{smtp:127.0.0.3}:c") == 4:
                break
            time.sleep(0.1)
        self.assertEqual(self.redis.command("ZCARD", "mxgate:{smtp:127.0.0.3}:c"), 4)
        self.refused(a, "127.0.0.3", "a fifth session once Redis is back")
        for c in held:
            self.quit(c)

    def test_redis_slow(self):
        """Redis that does not answer (SIGSTOP): a connect waits at most the 200 ms bound, then
        the local counts answer (limit 2 per node), one warning; SIGCONT: Redis is used again."""
        a, b = self.nodes({"smtpd_client_connection_count_limit": 2})
        os.kill(self.redis.proc.pid, signal.SIGSTOP)
        try:
            t0 = time.time()
            c1 = self.accepted(a, "127.0.0.2", "while Redis is stopped")
            self.assertLess(time.time() - t0, 1.0, "the banner waited past the bound")
            warn = r"mxgate/anvil\[\d+\]: warning: Redis at 127\.0\.0\.1:%d: no answer within 200 ms; " \
                   r"using this host's own counts until it is back$" % self.redis.port
            self.assertTrue(harness.wait_log_count(a, warn, 1), "\n".join(a.log_lines()))
            t0 = time.time()
            c2 = self.accepted(a, "127.0.0.2", "the second, local counts")
            self.assertLess(time.time() - t0, 0.5, "requests must not wait while Redis is away")
            self.refused(a, "127.0.0.2", "the third on the same node (local count 3)")
            c3 = self.accepted(b, "127.0.0.2", "on the other node: its own counts")
            time.sleep(1.5)
            self.assertEqual(self.warning_count(a, r"mxgate/anvil\[\d+\]: warning: Redis"), 1)
        finally:
            os.kill(self.redis.proc.pid, signal.SIGCONT)
        back = r"mxgate/anvil\[\d+\]: Redis at 127\.0\.0\.1:%d is back; sharing counts again$" % self.redis.port
        for n in (a, b):
            self.assertTrue(harness.wait_log_count(n, back, 1, timeout=5), "\n".join(n.log_lines()))
        time.sleep(0.5)
        self.refused(b, "127.0.0.2", "shared again: 3 sessions held")
        for c in (c1, c2, c3):
            self.quit(c)

    def test_unix_socket_and_auth(self):
        """redis:unix:/path with AUTH from mxgate_anvil_redis_password_file: the count is
        shared.  A wrong password: one warning naming AUTH, and the mail still flows."""
        self.redis.stop()
        self.redis.password = "s3cret-pw"
        self.redis.start()
        pw = os.path.join(self.redis.dir, "password")
        with open(pw, "w") as f:
            f.write("s3cret-pw\n")
        os.chmod(pw, 0o600)
        limits = {"smtpd_client_connection_count_limit": 1}
        unix = "redis:unix:%s" % self.redis.unixsocket
        a = self.node(limits, mxgate_anvil_backend=unix, mxgate_anvil_redis_password_file=pw)
        b = self.node(limits, mxgate_anvil_backend=unix, mxgate_anvil_redis_password_file=pw)
        time.sleep(0.5)
        c1 = self.accepted(a, "127.0.0.2")
        self.assertEqual(harness.log_matches(a, "anvil"), [], "\n".join(a.log_lines()))
        self.refused(b, "127.0.0.2", "the second, on the other node")
        with open(os.path.join(a.dir, "main.cf")) as f:
            self.assertNotIn("s3cret-pw", f.read())
        bad = os.path.join(self.redis.dir, "wrong")
        with open(bad, "w") as f:
            f.write("wrong\n")
        c = self.node(limits, mxgate_anvil_backend=unix, mxgate_anvil_redis_password_file=bad)
        self.assertTrue(harness.wait_log_count(
            c, r"mxgate/anvil\[\d+\]: warning: Redis at unix:%s: AUTH: " % re.escape(self.redis.unixsocket), 1),
            "\n".join(c.log_lines()))
        cc = self.accepted(c, "127.0.0.2", "mail flows with local counts")
        self.send_mail(cc)
        self.quit(cc)
        self.quit(c1)

    def test_reload_keeps_the_backend(self):
        """SIGHUP with a new mxgate_anvil_redis_prefix: one warning that it takes effect at the
        next restart, and the node goes on sharing counts under the old prefix."""
        a, b = self.nodes({"smtpd_client_connection_count_limit": 1})
        harness.rewrite_main_cf(a, {"mxgate_anvil_redis_prefix": "other:"})
        a.signal(signal.SIGHUP)
        self.assertTrue(harness.wait_log_count(
            a, r"warning: reload: mxgate_anvil_backend and the mxgate_anvil_redis_\* and "
               r"mxgate_anvil_lease_time parameters take effect at the next restart; anvil keeps "
               r"redis:127\.0\.0\.1:%d$" % self.redis.port, 1), "\n".join(a.log_lines()))
        c = self.accepted(b, "127.0.0.2")
        self.refused(a, "127.0.0.2", "still sharing under mxgate:")
        self.quit(c)

    def test_redis_down_registers_sessions_at_once(self):
        """Lease 60s (refreshed every 20s): the sessions opened while Redis was down are in Redis
        as soon as the node is back, not at its next refresh: the other node refuses a third."""
        a, b = self.nodes({"smtpd_client_connection_count_limit": 2},
                          mxgate_anvil_lease_time="60s")
        started = time.time()
        connected = self.script_clients()
        self.redis.stop()
        time.sleep(0.5)
        held = [self.accepted(a, "127.0.0.2", "session %d on A while Redis is down" % i)
                for i in (1, 2)]
        self.redis.start()
        back = r"mxgate/anvil\[\d+\]: Redis at 127\.0\.0\.1:%d is back; sharing counts again$" \
               % self.redis.port
        self.assertTrue(harness.wait_log_count(a, back, 1, timeout=5), "\n".join(a.log_lines()))
        self.assertEqual(self.redis.command("ZCARD", "mxgate:{smtp:127.0.0.2}:c"), 2)
        deadline = time.time() + 5
        while time.time() < deadline and self.script_clients() < connected:
            time.sleep(0.05)
        self.refused(b, "127.0.0.2", "a third, on node B")
        self.assertTrue(harness.wait_log_count(b, back, 1), "\n".join(b.log_lines()))
        self.assertLess(time.time() - started, 15, "too slow to tell the reconnection from "
                                                   "the refresh 20s after start")
        for c in held:
            self.quit(c)

    def script_clients(self):
        """The Redis clients (the nodes' loops) whose last command was the script or its load."""
        return len(re.findall(r"cmd=(?:evalsha|eval|script)\b", self.redis.command("CLIENT", "LIST")))

    def test_one_round_trip_per_check(self):
        """Every limit set (count, connection, message and recipient rates): a connection,
        its MAIL and each of its three RCPTs are ONE command each to Redis (an EVALSHA of the
        script), and so is the disconnect; nothing else is sent but the lease refreshes."""
        a, b = self.nodes({"smtpd_client_connection_count_limit": 5,
                           "smtpd_client_connection_rate_limit": 10,
                           "smtpd_client_message_rate_limit": 10,
                           "smtpd_client_recipient_rate_limit": 10})
        mon = RedisMonitor(self.redis)
        self.addCleanup(mon.close)
        c = self.accepted(a, "127.0.0.2")
        self.send_mail(c, rcpts=("alice@virt.test",) * 3)
        self.quit(c)
        self.assertIsNotNone(a.wait_log(r"disconnect from unknown\[127\.0\.0\.2\]"))
        seen = mon.commands()
        clients = [(who, args) for who, args in seen if who != "lua"]
        self.assertTrue(clients, "MONITOR saw nothing")
        self.assertEqual(sorted({args[0].upper() for who, args in clients}), ["EVALSHA"],
                         clients)
        ops = [args[5] for who, args in clients
               if args[3] == "mxgate:{smtp:127.0.0.2}:r" and args[5] != "lease"]
        self.assertEqual(ops, ["connect", "message", "recipient", "recipient", "recipient",
                               "disconnect"], clients)
        others = {args[5] for who, args in clients if args[3] != "mxgate:{smtp:127.0.0.2}:r"}
        self.assertLessEqual(others, {"lease"}, clients)

    def test_redis_host_name_resolved_off_the_loop(self):
        """redis:NAME:PORT with a name that takes 1.5s to resolve (the slowdns shim), and Redis
        stopped, so that every reconnection (each second) resolves it again: banners never
        wait for the resolution; once Redis is up, the node shares counts through the name;
        stopped while a resolution is under way, it exits cleanly."""
        a = self.node({"smtpd_client_connection_count_limit": 1})
        self.wait_connected(a)
        self.redis.stop()
        env = harness.shim_env("slowdns", MXGATE_SLOW_DNS_NAME="redis.slow.test",
                               MXGATE_SLOW_DNS_MS=1500)
        b = self.node({"smtpd_client_connection_count_limit": 1}, env=env,
                      mxgate_anvil_backend="redis:redis.slow.test:%d" % self.redis.port)
        slowest = 0
        end = time.time() + 4
        i = 0
        while time.time() < end:
            i += 1
            t0 = time.time()
            c = self.accepted(b, "127.0.1.%d" % i, "while Redis is down")
            slowest = max(slowest, time.time() - t0)
            self.quit(c)
            time.sleep(0.1)
        self.assertLess(slowest, 0.5, "a banner waited %.2fs: the loop resolved the name" % slowest)
        self.redis.start()
        self.assert_shared_count(a, b, "redis.slow.test")
        # Stopped while a resolution is under way: it exits cleanly, within the 1.5s it waits.
        self.redis.stop()
        time.sleep(1.7)
        t0 = time.time()
        b.check()
        self.assertLess(time.time() - t0, 5)

    def test_redis_host_name_with_ipv4_and_ipv6(self):
        """A HOST name with both an IPv4 and an IPv6 address (as localhost with Debian's
        /etc/hosts; the dualdns shim gives AF_UNSPEC ::1 first, as glibc does) and Redis on
        127.0.0.1 only: the node connects to the IPv4 address, as hiredis would, and shares
        counts; no warning."""
        a = self.node({"smtpd_client_connection_count_limit": 1})
        self.wait_connected(a)
        env = harness.shim_env("dualdns", MXGATE_DUAL_DNS_NAME="redis.dual.test")
        b = self.node({"smtpd_client_connection_count_limit": 1}, env=env,
                      mxgate_anvil_backend="redis:redis.dual.test:%d" % self.redis.port)
        self.assert_shared_count(a, b, "redis.dual.test")
        # the one warning is the refusal's own (Postfix's), none about Redis
        b.expect_log(r"warning: Connection concurrency limit exceeded: 2 from unknown\[127\.0\.0\.2\]")
        self.assertEqual([l for l in b.log_lines() if "warning" in l
                          and "Connection concurrency limit exceeded" not in l], [])

    def test_prefix_separates_clusters_and_keys_expire(self):
        """Two clusters on one Redis (mxgate_anvil_redis_prefix c1: and c2:) do not share
        counts; a client's rate hash expires at the end of its window (5s + 1) and its lease
        set within one lease time (3s)."""
        limits = {"smtpd_client_connection_count_limit": 1}
        a = self.node(limits, mxgate_anvil_redis_prefix="c1:")
        b = self.node(limits, mxgate_anvil_redis_prefix="c2:")
        self.wait_connected(a)
        ca = self.accepted(a, "127.0.0.2", "cluster c1")
        cb = self.accepted(b, "127.0.0.2", "cluster c2: c1's session does not count")
        self.refused(b, "127.0.0.2", "a second in cluster c2")
        for p in ("c1:", "c2:"):
            self.assertEqual(self.redis.command("ZCARD", p + "{smtp:127.0.0.2}:c"), 1, p)
            ttl = self.redis.command("TTL", p + "{smtp:127.0.0.2}:r")
            self.assertTrue(0 < ttl <= 6, "%s rate hash TTL %r" % (p, ttl))
            pttl = self.redis.command("PTTL", p + "{smtp:127.0.0.2}:c")
            self.assertTrue(0 < pttl <= LEASE * 1000, "%s lease set PTTL %r" % (p, pttl))
        self.assertEqual(self.redis.command("EXISTS", "mxgate:{smtp:127.0.0.2}:r"), 0)
        self.quit(ca)
        self.quit(cb)

    def test_redis_error_replies(self):
        """Redis that answers every script with an error (maxmemory 1, noeviction: -OOM): the
        mail flows on the local counts (limit 2 per node), ONE warning naming Redis's error is
        logged however often the node reconnects and fails again, and once Redis accepts writes
        again the node logs that it is back and shares counts again."""
        a, b = self.nodes({"smtpd_client_connection_count_limit": 2})
        self.assertEqual(self.redis.command("CONFIG", "SET", "maxmemory-policy", "noeviction"), "OK")
        self.assertEqual(self.redis.command("CONFIG", "SET", "maxmemory", "1"), "OK")
        warn = r"mxgate/anvil\[\d+\]: warning: Redis at 127\.0\.0\.1:%d: OOM .*; using this " \
               r"host's own counts until it is back$" % self.redis.port
        held = []
        try:
            for i in range(4):      # reconnections in between (one a second)
                c = self.accepted(a, "127.0.0.2", "session %d while Redis refuses writes" % i)
                self.send_mail(c)
                self.quit(c)
                time.sleep(1.2)
            held = [self.accepted(a, "127.0.0.2"), self.accepted(a, "127.0.0.2")]
            self.refused(a, "127.0.0.2", "the third on node A: its own count")
            self.assertEqual(len(harness.wait_log_count(a, warn, 1)), 1, "\n".join(a.log_lines()))
            self.assertEqual(self.warning_count(a, r"warning: Redis"), 1, "\n".join(a.log_lines()))
        finally:
            self.assertEqual(self.redis.command("CONFIG", "SET", "maxmemory", "0"), "OK")
        back = r"mxgate/anvil\[\d+\]: Redis at 127\.0\.0\.1:%d is back; sharing counts again$" \
               % self.redis.port
        self.assertTrue(harness.wait_log_count(a, back, 1, timeout=5), "\n".join(a.log_lines()))
        deadline = time.time() + 3
        while time.time() < deadline and \
                self.redis.command("ZCARD", "mxgate:{smtp:127.0.0.2}:c") != 2:
            time.sleep(0.1)
        self.refused(b, "127.0.0.2", "on node B once Redis is usable: A's two sessions count")
        for c in held:
            self.quit(c)

    # -- anvil show / clear -------------------------------------------------------------------

    def test_anvil_show_and_clear_on_redis(self):
        """`mxgate anvil show` reads the shared counts from Redis (count and rates over both
        nodes); `mxgate anvil clear CLIENT` resets the client's rates, and a client over its
        connection rate is accepted again."""
        a, b = self.nodes({"smtpd_client_connection_rate_limit": 2})
        ca = self.accepted(a, "127.0.0.2")
        self.quit(self.accepted(b, "127.0.0.2"))
        self.refused(a, "127.0.0.2", "over the rate")
        rc, out, err = self.mxgate("anvil", "show", "-c", a.dir)
        self.assertEqual(rc, 0, err)
        self.assertIn("smtp:127.0.0.2 count=1 connection_rate=3 message_rate=0 recipient_rate=0 "
                      "newtls_rate=0 auth_rate=0", out)
        rc, out, err = self.mxgate("anvil", "show", "-c", a.dir, "127.0.0.9")
        self.assertEqual((rc, out), (0, ""), err)
        rc, out, err = self.mxgate("anvil", "clear", "-c", b.dir, "127.0.0.2")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.strip(), "cleared 1")
        self.quit(self.accepted(b, "127.0.0.2", "after anvil clear"))
        rc, out, err = self.mxgate("anvil", "show", "-c", a.dir, "127.0.0.2")
        self.assertIn("smtp:127.0.0.2 count=1 connection_rate=1 ", out)
        self.quit(ca)


class AnvilControlTest(MxTestCase):
    """The memory backend: `mxgate anvil` through the daemon's control socket."""

    def test_anvil_show_and_clear_through_control_socket(self):
        """The socket is DIR/control (harness), mode 0600, owned by the daemon's user.  show
        lists count and rates (smtpd asks anvil for the message and recipient rates only when
        their limits are set, as Postfix does); clear resets the rates (a client over its
        connection rate is accepted again) and keeps the count of live sessions; clear of an
        unknown client says 'cleared 0' and exits 1."""
        srv = self.start_server(main=dict(harness.BASE_MAIN, anvil_rate_time_unit="60s",
                                          smtpd_client_connection_rate_limit=2,
                                          smtpd_client_message_rate_limit=10,
                                          smtpd_client_recipient_rate_limit=10),
                                virtual_users=["alice"])
        sock = os.path.join(srv.dir, "control")
        st = os.stat(sock)
        self.assertEqual(st.st_mode & 0o777, 0o600)
        self.assertEqual(st.st_uid, srv.uid)
        svc = harness.service_name(srv)
        c = self.connect(srv, source="127.0.0.2")
        self.assertEqual(c.read_reply(10).text, BANNER)
        self.assertEqual(c.cmd("EHLO x").code, 250)
        self.assertEqual(c.cmd("MAIL FROM:<a@example.org>").code, 250)
        self.assertEqual(c.cmd("RCPT TO:<alice@virt.test>").code, 250)
        c2 = self.connect(srv, source="127.0.0.2")
        self.assertEqual(c2.read_reply(10).text, BANNER)
        c3 = self.connect(srv, source="127.0.0.2")
        self.assertEqual(c3.read_reply(10).text, too_many_connections("127.0.0.2"))
        rc, out, err = self.mxgate("anvil", "show", "-c", srv.dir)
        self.assertEqual(rc, 0, err)
        self.assertIn("%s:127.0.0.2 count=2 connection_rate=3 message_rate=1 recipient_rate=1 "
                      "newtls_rate=0 auth_rate=0\n" % svc, out)
        rc, out, err = self.mxgate("anvil", "clear", "-c", srv.dir, "127.0.0.2")
        self.assertEqual((rc, out), (0, "cleared 1\n"), err)
        c4 = self.connect(srv, source="127.0.0.2")
        self.assertEqual(c4.read_reply(10).text, BANNER, "accepted after anvil clear")
        rc, out, err = self.mxgate("anvil", "show", "-c", srv.dir, "127.0.0.2")
        self.assertEqual(out, "%s:127.0.0.2 count=3 connection_rate=1 message_rate=0 "
                              "recipient_rate=0 newtls_rate=0 auth_rate=0\n" % svc)
        rc, out, err = self.mxgate("anvil", "clear", "-c", srv.dir, "127.0.0.99")
        self.assertEqual((rc, out), (1, "cleared 0\n"))


if __name__ == "__main__":
    unittest.main()
