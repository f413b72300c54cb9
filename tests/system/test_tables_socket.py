"""socketmap: and tcp: tables against small servers written here (the
protocols of socketmap_table(5) and tcp_table(5)): postmap -q and mxgate map
-q ask the same server the same keys and must print the same and exit alike
(found, not found, empty and long values, keys with spaces, '%' and
non-ASCII bytes, the server's TEMP/TIMEOUT/PERM and malformed replies,
replies over the size limits, a server that hangs up, a server that is down),
mxgate keeps using one connection for many lookups, and mxgate check names a
server that does not answer."""

import os
import pwd
import socket
import socketserver
import subprocess
import tempfile
import threading

import harness
import tables

SOCKETMAP_DATA = {
    "virtual": {
        "alice@example.test": "OK alice",
        "Bob@Example.TEST": "OK bob, carol",
        "bob@example.test": "OK lower-bob",
        "with space": "OK value with  spaces",
        "empty-value": "OK ",
        "ok-bare": "OK",
        "long": "OK " + "v" * 90000,
        "too-long": "OK " + "v" * 100001,
        "temp": "TEMP database is busy",
        "timeout": "TIMEOUT",
        "perm": "PERM no such table",
        "bogus": "WHAT is this",
        "notfound-text": "NOTFOUND no",
        "pct%41": "OK percent",
    },
    "other": {"alice@example.test": "OK from-other"},
}
SOCKETMAP_KEYS = ["alice@example.test", "ALICE@EXAMPLE.TEST", "Bob@Example.TEST",
                  "bob@example.test", "with space", "empty-value", "ok-bare", "long", "too-long",
                  "temp", "timeout", "perm", "bogus", "notfound-text", "pct%41", "missing",
                  "hangup", "badnetstring", "x" * 10001]


class SocketmapHandler(socketserver.StreamRequestHandler):
    def read_netstring(self):
        digits = b""
        while True:
            ch = self.rfile.read(1)
            if not ch:
                return None
            if ch == b":":
                break
            digits += ch
        data = self.rfile.read(int(digits))
        assert self.rfile.read(1) == b","
        return data

    def handle(self):
        self.server.connections += 1
        while True:
            q = self.read_netstring()
            if q is None:
                return
            self.server.queries.append(q)
            name, _, key = q.decode("latin-1").partition(" ")
            if key == "hangup":
                return
            if key == "badnetstring":
                self.wfile.write(b"3x:abc,")
                return
            reply = SOCKETMAP_DATA.get(name, {}).get(key, "NOTFOUND ").encode("latin-1")
            self.wfile.write(b"%d:%s," % (len(reply), reply))
            self.wfile.flush()


def tcp_quote(text):
    out = []
    for b in text.encode("latin-1"):
        c = chr(b)
        if c != "%" and 32 < b < 127:
            out.append(c)
        else:
            out.append("%%%02X" % b)
    return "".join(out)


def tcp_unquote(text):
    out, i = bytearray(), 0
    while i < len(text):
        if text[i] == "%":
            out.append(int(text[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(ord(text[i]))
            i += 1
    return out.decode("latin-1")


TCP_DATA = {
    "alice@example.test": "200 " + tcp_quote("alice"),
    "Bob@Example.TEST": "200 " + tcp_quote("bob, carol"),
    "with space": "200 " + tcp_quote("value with  spaces"),
    "100%": "200 " + tcp_quote("all of it"),
    "caf\xc3\xa9": "200 " + tcp_quote("utf-8 \xc3\xa9"),	# UTF-8 bytes, as latin-1 text
    "empty-value": "200 ",
    "long": "200 " + "v" * 4000,
    "too-long": "200 " + "v" * 5000,
    "temp": "400 try again",
    "badhex": "200 bad%ZZ",
    "bad-code": "300 what",
    "malformed": "hello",
    "notfound-text": "500 no such key",
}
TCP_KEYS = ["alice@example.test", "ALICE@EXAMPLE.TEST", "Bob@Example.TEST", "with space",
            "100%", "caf\xc3\xa9", "empty-value", "long", "too-long", "temp", "badhex",
            "bad-code", "malformed", "notfound-text", "missing", "hangup", "a\tb"]


class TcpHandler(socketserver.StreamRequestHandler):
    def handle(self):
        self.server.connections += 1
        for line in self.rfile:
            line = line.decode("latin-1").rstrip("\n")
            self.server.queries.append(line)
            verb, _, qkey = line.partition(" ")
            key = tcp_unquote(qkey)
            if verb != "get" or key == "hangup":
                return
            reply = TCP_DATA.get(key, "500 not found")
            self.wfile.write((reply + "\n").encode("latin-1"))
            self.wfile.flush()


class QuietErrors:
    def handle_error(self, request, client_address):
        pass	# a client that hangs up mid-reply (the size-limit keys) is expected


class ThreadingUnixServer(QuietErrors, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class ThreadingTCPServer(QuietErrors, socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def start(server):
    server.connections = 0
    server.queries = []
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    return server


def stdin_query(argv, keys):
    r = subprocess.run(argv, input="".join(k + "\n" for k in keys).encode("latin-1"),
                       capture_output=True, timeout=120, env=harness.sanitizer_env())
    return r.stdout, r.returncode, r.stderr.decode("latin-1", "replace")


class SocketTablesTest(tables.TableCase):
    def serve(self, server):
        start(server)
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        return server

    def assert_same_bytes(self, spec, keys):
        """assert_same_answers for keys given as latin-1 text of their bytes (UTF-8 here:
        with smtputf8_enable=yes Postfix refuses a key that is not)."""
        diffs = []
        for key in keys:
            argv = ["-c", self.tables.path, "-q", key.encode("latin-1"), spec]
            want = subprocess.run(["postmap"] + argv, capture_output=True, timeout=120)
            got = subprocess.run([harness.mxgate_binary(), "map"] + argv, capture_output=True,
                                 timeout=120, env=harness.sanitizer_env())
            self.assertEqual(harness.sanitizer_reports(got.stderr.decode("latin-1")), [])
            if (want.stdout, want.returncode) != (got.stdout, got.returncode):
                diffs.append("%r: postmap %r, mxgate %r" % (key, (want.stdout[:80], want.returncode),
                                                             (got.stdout[:80], got.returncode)))
        self.assertEqual(diffs, [])

    def assert_same_stdin_answers(self, srv, spec, keys):
        """-q - with keys: the same from both, each over one connection of its own."""
        out, rc, err = stdin_query([harness.mxgate_binary(), "map", "-q", "-", spec], keys)
        want = stdin_query(["postmap", "-c", self.tables.path, "-q", "-", spec], keys)
        self.assertEqual((out, rc), want[:2])
        self.assertEqual(harness.sanitizer_reports(err), [])
        self.assertEqual(srv.connections, 2, "mxgate and postmap: one connection each")

    def test_socketmap_inet(self):
        srv = self.serve(ThreadingTCPServer(("127.0.0.1", 0), SocketmapHandler))
        port = srv.server_address[1]
        for name in ("virtual", "other"):
            self.assert_same_answers("socketmap:inet:127.0.0.1:%d:%s" % (port, name),
                                     SOCKETMAP_KEYS, min_found=1)

    def test_socketmap_unix(self):
        d = tempfile.mkdtemp(prefix="mxgate-sockmap-")
        path = os.path.join(d, "sock")
        self.addCleanup(lambda: (os.path.exists(path) and os.unlink(path), os.rmdir(d)))
        self.serve(ThreadingUnixServer(path, SocketmapHandler))
        self.assert_same_answers("socketmap:unix:%s:virtual" % path, SOCKETMAP_KEYS, min_found=5)

    def test_socketmap_query_on_the_wire(self):
        """The netstring is "NAME KEY", the key as given; one connection for many keys."""
        srv = self.serve(ThreadingTCPServer(("127.0.0.1", 0), SocketmapHandler))
        spec = "socketmap:inet:127.0.0.1:%d:virtual" % srv.server_address[1]
        self.assert_same_stdin_answers(srv, spec, ["alice@example.test", "Bob@Example.TEST",
                                                   "with space", "missing"] * 5)
        self.assertIn(b"virtual Bob@Example.TEST", srv.queries)
        self.assertIn(b"virtual with space", srv.queries)

    def test_tcp(self):
        srv = self.serve(ThreadingTCPServer(("127.0.0.1", 0), TcpHandler))
        spec = "tcp:127.0.0.1:%d" % srv.server_address[1]
        utf8 = [k for k in TCP_KEYS if k.isascii()]
        self.assert_same_answers(spec, utf8, min_found=5)
        self.assert_same_bytes(spec, [k for k in TCP_KEYS if not k.isascii()])
        self.assertIn("get caf%C3%A9", srv.queries)

    def test_tcp_query_on_the_wire(self):
        """"get KEY" with %XX for '%', white space and non-ASCII; one connection."""
        srv = self.serve(ThreadingTCPServer(("127.0.0.1", 0), TcpHandler))
        spec = "tcp:127.0.0.1:%d" % srv.server_address[1]
        self.assert_same_stdin_answers(srv, spec, ["with space", "100%", "Bob@Example.TEST",
                                                   "missing"] * 3)
        self.assertIn("get with%20space", srv.queries)
        self.assertIn("get 100%25", srv.queries)
        self.assertIn("get Bob@Example.TEST", srv.queries)

    def test_server_down(self):
        """Nothing listens: both fail (exit 1, nothing printed); mxgate says why."""
        port = harness.free_port()
        d = tempfile.mkdtemp(prefix="mxgate-sockmap-")
        self.addCleanup(os.rmdir, d)
        for spec, why in (("socketmap:inet:127.0.0.1:%d:virtual" % port, "Connection refused"),
                          ("socketmap:unix:%s/nosock:virtual" % d, "No such file or directory"),
                          ("tcp:127.0.0.1:%d" % port, "Connection refused")):
            with self.subTest(spec=spec):
                want = subprocess.run(["postmap", "-c", self.tables.path, "-q", "k", spec],
                                      capture_output=True, text=True, timeout=120)
                out, rc, err = tables._run([harness.mxgate_binary(), "map", "-q", "k", spec])
                self.assertEqual((out, rc), (want.stdout, want.returncode))
                self.assertEqual(rc, 1)
                self.assertIn(why, err)
                self.assertIn("fatal: table %s: query error" % spec, err)
                self.assertEqual(harness.sanitizer_reports(err), [])

    def test_check_connects(self):
        """mxgate check connects to each remote table and names the one whose server does
        not answer, at its parameter's line; with every server up it is content."""
        srv = self.serve(ThreadingTCPServer(("127.0.0.1", 0), TcpHandler))
        up = "tcp:127.0.0.1:%d" % srv.server_address[1]
        port = harness.free_port()
        down = "socketmap:inet:127.0.0.1:%d:virtual" % port
        d = tempfile.mkdtemp(prefix="mxgate-check-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", d]))
        main = os.path.join(d, "main.cf")
        # the uid mxgate writes mail as: mail_owner when started as root
        owner = pwd.getpwnam("mxgate") if os.geteuid() == 0 else pwd.getpwuid(os.getuid())

        def check(maps):
            with open(main, "w") as f:
                f.write("myhostname = mx.example.test\n"
                        "mydestination =\n"
                        "maillog_file = %s/maillog\n"
                        "maillog_file_prefixes = %s\n"
                        "virtual_mailbox_domains = virt.test\n"
                        "virtual_mailbox_base = %s\n"
                        "virtual_uid_maps = static:%d\n"
                        "virtual_gid_maps = static:%d\n"
                        "virtual_mailbox_maps = %s\n" % (d, d, d, owner.pw_uid, owner.pw_gid, maps))
            with open(os.path.join(d, "master.cf"), "w") as f:
                f.write("127.0.0.1:%d inet n - n - - smtpd\n" % harness.free_port())
            return tables._run([harness.mxgate_binary(), "check", "-c", d])

        out, rc, err = check("%s, %s" % (up, down))
        self.assertEqual(rc, 1, err)
        self.assertEqual(err.splitlines(), [
            "mxgate: error: %s, line 9: virtual_mailbox_maps: %s: connect to 127.0.0.1:%d: "
            "Connection refused" % (main, down, port)])
        out, rc, err = check(up)
        self.assertEqual((rc, err), (0, ""))
        self.assertGreaterEqual(srv.connections, 1)

    def test_bad_names(self):
        for spec in ("socketmap:inet:127.0.0.1:7777", "socketmap:virtual",
                     "socketmap:bogus:x:virtual", "tcp:nohostport"):
            with self.subTest(spec=spec):
                out, rc, err = tables._run([harness.mxgate_binary(), "map", "-q", "k", spec])
                self.assertEqual((out, rc), ("", 1))
                self.assertIn("mxgate: fatal: %s: " % spec, err)


if __name__ == "__main__":
    import unittest
    unittest.main()
