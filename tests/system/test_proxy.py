"""PROXY protocol (smtpd_upstream_proxy_protocol = haproxy), live against Postfix 3.7.

The same headers go to the reference Postfix (/tmp/mxgate-ref-proxy-services) and to mxgate,
with the same main.cf: v1 (TCP4, TCP6) and v2 (TCP4, TCP6, LOCAL) headers, bad headers, a client that sends SMTP instead, and one that sends nothing until
smtpd_upstream_proxy_timeout.  What must be the same: the replies, the smtpd log lines
("connect from" with the proxied address, Postfix's "warning: haproxy read: ..." lines), and the
limits: smtpd_client_connection_count_limit counts the proxied address, and a client restriction
rejects it.  Headers split into single bytes go to mxgate only (Postfix peeks once and refuses
a header that has not fully arrived).  STARTTLS behind a header: the TLS summary line names the
proxied client, as Postfix's.
"""

import os
import re
import socket
import struct
import time
import unittest

import harness
import postfixref

SIG = b"\r\n\r\n\0\r\nQUIT\n"
TAG = re.compile(r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ \S+/smtpd\[\d+\]: (.*)$")
MAIN = dict(harness.BASE_MAIN,
            myhostname="mx.example.test",
            smtpd_upstream_proxy_protocol="haproxy",
            smtpd_upstream_proxy_timeout="2s",
            smtpd_peername_lookup="no",
            smtpd_client_connection_count_limit="1",
            smtpd_client_restrictions="check_client_access inline:{198.51.100.66=REJECT}",
            smtpd_delay_reject="no")


def v2(cmd=0x21, fam=0x11, src="203.0.113.9", dst="192.0.2.1", sport=5555, dport=25, tlv=b""):
    if fam == 0x11:
        addrs = socket.inet_aton(src) + socket.inet_aton(dst)
    elif fam == 0x21:
        addrs = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
    else:
        addrs = b""
    body = (addrs + struct.pack("!HH", sport, dport) if addrs else b"") + tlv
    return SIG + bytes([cmd, fam]) + struct.pack("!H", len(body)) + body


def session(port, header, split=False, then=b"QUIT\r\n", wait=None):
    """Send header (whole or one byte at a time), read the first reply, send then, read the
    rest until the server closes.  Returns the replies as text lines."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        if split:
            for b in header:
                s.sendall(bytes([b]))
                time.sleep(0.002)
        elif header:
            s.sendall(header)
        data = b""
        s.settimeout(wait or 10)
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        try:
            s.sendall(then)
        except OSError:
            pass
        s.settimeout(5)
        while True:
            try:
                chunk = s.recv(4096)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        return data.decode("latin-1").splitlines()
    finally:
        s.close()


CASES = [
    ("v1 tcp4", b"PROXY TCP4 198.51.100.7 192.0.2.1 12345 25\r\n", False),
    ("v1 tcp6 split", b"PROXY TCP6 2001:db8::5 2001:db8::1 4000 25\r\n", True),
    ("v1 mapped", b"PROXY TCP6 ::ffff:198.51.100.8 ::ffff:192.0.2.1 4000 25\r\n", False),
    ("v2 tcp4", v2(), False),
    ("v2 tcp4 split, tlv", v2(src="203.0.113.10", tlv=b"\x01\x00\x02h2"), True),
    ("v2 tcp6", v2(fam=0x21, src="2001:db8::9", dst="2001:db8::1"), False),
    ("v2 local", v2(cmd=0x20, fam=0x00), False),
    ("bad address", b"PROXY TCP4 1.2.3 4.3.2.1 1 2\r\n", False),
    ("bad port", b"PROXY TCP4 1.2.3.4 4.3.2.1 0123 25\r\n", False),
    ("unknown", b"PROXY UNKNOWN\r\n", False),
    ("smtp instead", b"EHLO client.example\r\n", False),
    ("v2 udp", v2(fam=0x12), False),
    ("restricted", b"PROXY TCP4 198.51.100.66 192.0.2.1 1 25\r\n", False),
]


class ProxyTest(harness.MxTestCase):
    def play(self, port, splits=False):
        """Every case (split ones too with splits), then the timeout, then the connection
        count; the replies."""
        out = []
        for name, hdr, split in CASES:
            if split and not splits:
                continue
            out.append((name, session(port, hdr, split)))
        out.append(("timeout", session(port, b"", wait=8)))
        # the connection count is per proxied client: a second one from 198.51.100.7 is
        # refused while the first is open, one from 198.51.100.9 is not
        first = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            first.sendall(b"PROXY TCP4 198.51.100.7 192.0.2.1 1000 25\r\n")
            first.settimeout(10)
            self.assertTrue(first.recv(4096).startswith(b"220 "))
            out.append(("count same", session(port, b"PROXY TCP4 198.51.100.7 192.0.2.1 1001 25\r\n")))
            out.append(("count other", session(port, b"PROXY TCP4 198.51.100.9 192.0.2.1 1002 25\r\n")))
        finally:
            first.sendall(b"QUIT\r\n")
            first.recv(4096)
            first.close()
        return out

    @staticmethod
    def smtpd_lines(text):
        lines = []
        for ln in text.splitlines():
            m = TAG.match(ln)
            if m and not m.group(1).startswith(("disconnect from", "statistics", "warning: dict")):
                # the service is named by its address: the two servers' ports differ
                lines.append(re.sub(r"(for service 127\.0\.0\.1):\d+", r"\1:PORT", m.group(1)))
        return lines

    def test_as_postfix(self):
        ref = postfixref.Reference("proxy-services")
        self.addCleanup(ref.stop)
        ref.start(dict(MAIN))
        want = self.play(ref.port)
        time.sleep(0.5)
        with open(os.path.join(ref.dir, "maillog"), errors="replace") as f:
            want_log = self.smtpd_lines(f.read())
        ref.stop()

        srv = self.start_server(main=dict(MAIN))
        got = self.play(srv.port)
        time.sleep(0.3)
        got_log = self.smtpd_lines("\n".join(srv.log_lines()))
        # a header in several segments: Postfix peeks once and gives up ("missing protocol
        # header terminator"); mxgate waits for the rest within the timeout (README)
        for name, hdr, split in CASES:
            if split:
                r = session(srv.port, hdr, True)
                self.assertTrue(r[0].startswith("220 "), (name, r))

        # the banner names the software (DESIGN.md): compare it as "220 <host> ESMTP"
        def norm(rows):
            return [(n, [re.sub(r"^220 (\S+) ESMTP \S+$", r"220 \1 ESMTP", ln) for ln in r])
                    for n, r in rows]
        self.assertEqual(norm(got), norm(want))
        self.assertEqual(got_log, want_log)
        # what the test is about, spelled out
        self.assertIn("connect from unknown[198.51.100.7]", got_log)
        self.assertIn("connect from unknown[198.51.100.8]", got_log)
        self.assertIn("connect from unknown[2001:db8::9]", got_log)
        self.assertIn("connect from unknown[203.0.113.9]", got_log)
        # the split sessions' lines: waited for (the log writer may not have written them yet)
        srv.expect_log(r"connect from unknown\[2001:db8::5\]")
        srv.expect_log(r"connect from unknown\[203\.0\.113\.10\]")
        self.assertIn("warning: haproxy read: timeout error", got_log)
        self.assertIn("warning: haproxy read: bad or missing client address: "
                      "PROXY TCP4 1.2.3 4.3.2.1 1 2\\r\\n", got_log)
        count_same = dict(got)["count same"]
        self.assertEqual(count_same[0], "421 4.7.0 mx.example.test Error: too many connections "
                         "from 198.51.100.7", got)
        self.assertTrue(dict(got)["count other"][0].startswith("220 "), got)
        self.assertEqual(dict(got)["restricted"][0][:4], "554 ", got)

    def test_tls_summary_names_proxied_client(self):
        """STARTTLS behind a PROXY header (smtpd_tls_security_level = may): the TLS summary
        line names the proxied client, as Postfix's does, and so do the other lines."""
        import test_tls
        test_tls.Certs.make()
        main = dict(MAIN, smtpd_tls_security_level="may", smtpd_tls_loglevel="1",
                    **test_tls.Certs.params())
        steps = ["EHLO a.test", "STARTTLS", ("tls",), "EHLO a.test", "QUIT"]

        def one(port):
            c = test_tls.Conn(port)
            try:
                c.send(b"PROXY TCP4 198.51.100.7 192.0.2.1 12345 25\r\n")
                out = [c.reply()[:4]]
                for st in steps:
                    if st[0] == "tls":
                        c.starttls()
                        out.append("handshake ok")
                    else:
                        out.append(c.cmd(st).split("\n")[-1])
                return out
            finally:
                c.close()

        def tls_lines(text):
            return [ln for ln in self.smtpd_lines(text)
                    if re.match(r"(connect from|Anonymous TLS)", ln)]

        ref = postfixref.Reference("tg-proxy-tls")
        self.addCleanup(ref.stop)
        ref.start(dict(main), ["tlsmgr unix - - n 1000? 1 tlsmgr"])
        want = one(ref.port)
        time.sleep(0.5)
        with open(os.path.join(ref.dir, "maillog"), errors="replace") as f:
            want_log = tls_lines(f.read())
        ref.stop()
        srv = self.start_server(main=dict(main))
        got = one(srv.port)
        self.assertIsNotNone(srv.wait_log(r"disconnect from unknown\[198\.51\.100\.7\]"))
        got_log = tls_lines("\n".join(srv.log_lines()))
        self.assertEqual(got, want)
        self.assertEqual(got_log, want_log)
        self.assertEqual(got, ["220 ", "250 CHUNKING", "220 2.0.0 Ready to start TLS",
                               "handshake ok", "250 CHUNKING", "221 2.0.0 Bye"])
        self.assertEqual(got_log[0], "connect from unknown[198.51.100.7]")
        self.assertRegex(got_log[1], r"^Anonymous TLS connection established from "
                                     r"unknown\[198\.51\.100\.7\]: TLSv1\.3 with cipher ")


if __name__ == "__main__":
    unittest.main()
