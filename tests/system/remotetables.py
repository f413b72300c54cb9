"""remotetables: test cases for the tables a server answers (pgsql:, ldap:, ...).

    ServerTableCase    a tables.TableCase with one server fixture for the whole class:
                       setUpClass() calls the class's start_fixture() (which returns the
                       started fixture, loaded with its data) and keeps it as cls.server;
                       tearDownClass() cleans it up.
                       assert_non_utf8_not_asked(spec): a key that is not UTF-8 is
                       warned about and not found, as postmap has it, without asking
                       the server (which could refuse the query: a lookup error).

What a remote table must do when its server goes away, as one set of checks that each
type's test runs against its own fixture:

    class XOutageTest(XCase, harness.MxTestCase, remotetables.OutageChecks):
        def test_...(self):
            self.map_q_fails_like_postmap(spec, server)
            self.rcpt_451_while_down(cf, server, check_down_regex)

server is the fixture (stop() and start()); the test is a tables.TableCase (its table folder
holds the .cf files) and a harness.MxTestCase (start_server()).

    map_q_fails_like_postmap   with the server stopped, postmap -q and mxgate map -q print
                               the same and exit alike (a lookup error: non-zero), and the
                               same table answers again once the server is back.
    rcpt_451_while_down        a running mxgate with virtual_mailbox_maps = the table: RCPT
                               250 and 550 while the server is up and `mxgate check` is
                               clean; once it is down, check fails naming the table's server
                               (check_down_regex, with %s for the spec) and RCPT gets
                               451 4.3.0; once it is back, 250 again; the outage and the
                               recovery are each logged exactly once.
    silent_server_times_out    a server that accepts connections and never answers: postmap
                               and mxgate map -q fail alike, mxgate within the bound given.
    parallel_rcpts             12 clients at once (more than a remote table's 4
                               connections) against one daemon: every RCPT gets its own
                               answer (250 or 550) and nothing is logged as a warning.
"""

import os
import re
import socket
import subprocess
import threading
import time

import harness
import tables

VDOMAIN = "virt.test"
KEY = "alice@example.test"
BACK_TIMEOUT = 15


class SilentServer:
    """Listens on 127.0.0.1:port, accepts every connection and never sends a byte."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(c)

    def close(self):
        self.sock.close()
        for c in self.held:
            c.close()


class ServerTableCase(tables.TableCase):
    @classmethod
    def start_fixture(cls):
        raise NotImplementedError

    @classmethod
    def setUpClass(cls):
        cls.server = cls.start_fixture()

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def assert_non_utf8_not_asked(self, spec):
        key = "\udcff@example.test"     # the byte 0xff
        self.assert_same_answers(spec, [key], min_found=0)
        r = subprocess.run([harness.mxgate_binary(), "map", "-c", self.tables.path, "-q", key,
                            spec], capture_output=True, text=True, timeout=30,
                           env=harness.sanitizer_env(), errors="surrogateescape")
        self.assertEqual((r.stdout, r.returncode), ("", 1), r.stderr)
        self.assertIn("non-UTF-8 key", r.stderr)
        self.assertNotIn("lookup error", r.stderr)


class OutageChecks:
    def map_q_fails_like_postmap(self, spec, server, key=KEY):
        self.assert_same_answers(spec, [key])
        server.stop()
        try:
            want = tables.postmap_q(self.tables.path, key, spec)
            got = tables.mxgate_q(self.tables.path, key, spec)
            self.assertEqual(want, got)
            self.assertNotEqual(got[1], 0)
        finally:
            server.start()
        self.assert_same_answers(spec, [key])

    def silent_server_times_out(self, make_spec, bound, key=KEY):
        """make_spec(port) is a spec whose server is 127.0.0.1:port."""
        silent = SilentServer()
        self.addCleanup(silent.close)
        spec = make_spec(silent.port)
        want = tables.postmap_q(self.tables.path, key, spec)
        start = time.monotonic()
        got = tables.mxgate_q(self.tables.path, key, spec)
        took = time.monotonic() - start
        self.assertEqual(want, got)
        self.assertNotEqual(got[1], 0)
        self.assertLess(took, bound)

    def mxgate_check(self, srv):
        r = subprocess.run([harness.mxgate_binary(), "check", "-c", srv.dir],
                           capture_output=True, text=True, timeout=60,
                           env=harness.sanitizer_env())
        self.assertEqual(harness.sanitizer_reports(r.stderr), [])
        return r.returncode, r.stderr

    def rcpt(self, srv, addr):
        with harness.Client(srv.port) as c:
            c.expect(220)
            c.send("EHLO client.test\r\n")
            c.expect(250)
            c.send("MAIL FROM:<sender@client.test>\r\n")
            c.expect(250)
            r = c.cmd("RCPT TO:<%s>" % addr, timeout=30)
            c.cmd("QUIT")
            return r

    def rcpt_451_while_down(self, cf, server, check_down_regex):
        """cf: the table's spec; it must find alice@VDOMAIN and not nobody@VDOMAIN."""
        os.chmod(self.tables.path, 0o755)   # the daemon (mail_owner) reads the .cf
        srv = self.start_server(virtual_users=[], main={
            "virtual_mailbox_maps": cf, "virtual_mailbox_domains": VDOMAIN})
        alice = "alice@" + VDOMAIN
        self.assertEqual(self.rcpt(srv, alice).code, 250)
        self.assertEqual(self.rcpt(srv, "nobody@" + VDOMAIN).code, 550)
        rc, err = self.mxgate_check(srv)
        self.assertEqual(rc, 0, err)
        self.assertNotIn(cf, err)
        server.stop()
        try:
            rc, err = self.mxgate_check(srv)
            self.assertEqual(rc, 1, err)
            self.assertRegex(err, check_down_regex % re.escape(cf))
            for _ in range(3):
                r = self.rcpt(srv, alice)
                self.assertEqual(r.lines[-1][:9], "451 4.3.0", r.text)
                time.sleep(0.3)
        finally:
            server.start()
        deadline = time.monotonic() + BACK_TIMEOUT
        while True:
            r = self.rcpt(srv, alice)
            if r.code == 250 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        self.assertEqual(r.code, 250, r.text)
        self.assertIsNotNone(srv.wait_log("server answers again"), srv.diagnostics())
        time.sleep(0.5)     # a second outage or recovery line would be written by now
        log = srv.log_messages()
        down = [l for l in log if "server unavailable" in l]
        up = [l for l in log if "server answers again" in l]
        self.assertEqual(len(down), 1, "\n".join(log))
        self.assertIn(cf, down[0])
        self.assertEqual(len(up), 1, "\n".join(log))

    def parallel_rcpts(self, cf, clients=12, rounds=4):
        """cf finds alice@VDOMAIN and not nobody@VDOMAIN."""
        os.chmod(self.tables.path, 0o755)
        srv = self.start_server(virtual_users=[], main={
            "virtual_mailbox_maps": cf, "virtual_mailbox_domains": VDOMAIN})
        results, lock = [], threading.Lock()

        def client(i):
            for r in range(rounds):
                addr = ("alice@" if (i + r) % 2 == 0 else "nobody@") + VDOMAIN
                try:
                    code = self.rcpt(srv, addr).code
                except Exception as e:      # recorded, then failed below
                    code = repr(e)
                with lock:
                    results.append((addr, code))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        want = [(a, 250 if a.startswith("alice@") else 550) for a, _ in results]
        self.assertEqual(len(results), clients * rounds)
        self.assertEqual(results, want)
        self.assertEqual([l for l in srv.log_messages() if "warning" in l], [])
