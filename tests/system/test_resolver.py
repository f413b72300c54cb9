"""test_resolver: net/resolver (mxgate's own DNS stub resolver) against real servers, through
build/tests/dnsq (one query on a real event loop, the answer printed): unbound with the test
domains (dnsfixture.TestDns), rbldnsd behind it, and small hand-made servers here for what no
real server does on demand (a wrong id or question first, TC then a silent TCP port, silence).

Every test runs in its own network namespace (dnsfixture.PrivateDnsCase): /etc/resolv.conf names
127.0.0.1 with timeout:1 attempts:1."""

import os
import socket
import struct
import subprocess
import threading
import time

import dnsfixture
import harness

RECORDS = [
    "example.test. 300 IN A 192.0.2.1",
    "example.test. 300 IN MX 10 mx1.example.test.",
    "example.test. 300 IN MX 20 MX2.Example.Test.",
    "example.test. 300 IN NS ns1.example.test.",
    "example.test. 300 IN NS ns2.example.test.",
    "mx1.example.test. 300 IN A 192.0.2.10",
    "mx1.example.test. 300 IN AAAA 2001:db8::10",
    "mx2.example.test. 300 IN A 192.0.2.20",
    'txt.example.test. 300 IN TXT "v=spf1 -all" "second string"',
    "alias.example.test. 300 IN CNAME mx1.example.test.",
    "alias2.example.test. 300 IN CNAME alias.example.test.",
    "nullmx.test. 300 IN MX 0 .",
    "10.2.0.192.in-addr.arpa. 300 IN PTR mx1.example.test.",
] + ['big.example.test. 300 IN TXT "record %02d of a set that is far larger than 512 bytes"' % i
     for i in range(20)]
RBL = {"zen.test": ("ip4set", [":127.0.0.2:Listed by zen.test: $", "127.0.0.2"])}


def dnsq(name, qtype, conf=None, cancel=None, timeout=30):
    """Run dnsq: (fields, records, elapsed ms, raw output)."""
    cmd = [os.path.join(harness.build_dir(), "tests", "dnsq")]
    if conf:
        cmd += ["-f", conf]
    if cancel is not None:
        cmd += ["-c", str(cancel)]
    cmd += [name, qtype]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       env=harness.sanitizer_env())
    wall = (time.monotonic() - t0) * 1000
    fields, rrs = {}, []
    for line in r.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key == "rr":
            rrs.append(value)
        else:
            fields[key] = value
    fields["exit"] = r.returncode
    fields["stderr"] = r.stderr
    return fields, rrs, wall, r.stdout


class SilentUdp:
    """A UDP socket that takes queries and never answers."""

    def __init__(self, address):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 53))

    def close(self):
        self.sock.close()


def _question_end(msg):
    off = 12
    while msg[off] != 0:
        off += 1 + msg[off]
    return off + 5


class TrickyServer:
    """A name server on address:53 that answers every UDP query with, in this order: a reply
    with the wrong id, one for another name, one that is no response (QR clear), then (mode
    "ok") the right one with one A record 198.51.100.7, or (mode "tc") the right one with TC
    set; its TCP port (mode "tc") accepts and never answers."""

    def __init__(self, address, mode="ok"):
        self.mode = mode
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((address, 53))
        self.udp.settimeout(0.2)
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((address, 53))
        self.tcp.listen(5)
        self.tcp.settimeout(0.2)
        self.accepted = []
        self.queries = 0
        self.running = True
        self.threads = [threading.Thread(target=self._udp, daemon=True),
                        threading.Thread(target=self._tcp, daemon=True)]
        for t in self.threads:
            t.start()

    def _udp(self):
        while self.running:
            try:
                q, peer = self.udp.recvfrom(512)
            except (socket.timeout, OSError):
                continue
            self.queries += 1
            qid = struct.unpack(">H", q[:2])[0]
            qend = _question_end(q)
            question = q[12:qend]
            hdr = lambda i, flags, an: struct.pack(">HHHHHH", i, flags, 1, an, 0, 0)
            answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([198, 51, 100, 7])
            other = b"\x05other\x04test\x00" + question[-4:]
            for pkt in (hdr(qid ^ 1, 0x8180, 1) + question + answer,
                        hdr(qid, 0x8180, 1) + other + answer,
                        hdr(qid, 0x0100, 1) + question + answer):
                self.udp.sendto(pkt, peer)
            if self.mode == "ok":
                self.udp.sendto(hdr(qid, 0x8180, 1) + question + answer, peer)
            else:
                self.udp.sendto(hdr(qid, 0x8380, 0) + question, peer)

    def _tcp(self):
        while self.running:
            try:
                c, _ = self.tcp.accept()
            except (socket.timeout, OSError):
                continue
            self.accepted.append(c)

    def close(self):
        self.running = False
        for t in self.threads:
            t.join(2)
        for c in self.accepted:
            c.close()
        self.udp.close()
        self.tcp.close()


class ResolverTest(dnsfixture.PrivateDnsCase):
    maxDiff = None

    def conf(self, text):
        path = os.path.join(self.tmp(), "resolv.conf")
        with open(path, "w") as f:
            f.write(text)
        return path

    def tmp(self):
        if not getattr(self, "_tmp", None):
            import tempfile
            self._tmp = tempfile.mkdtemp(prefix="mxgate-resolver-")
            import shutil
            self.addCleanup(shutil.rmtree, self._tmp, True)
        return self._tmp

    def ask(self, name, qtype, **kw):
        fields, rrs, wall, out = dnsq(name, qtype, **kw)
        self.assertEqual(fields["exit"], 0, out + fields["stderr"])
        self.assertEqual(harness.sanitizer_reports(fields["stderr"]), [], fields["stderr"])
        return fields, rrs, wall

    def assertAnswer(self, name, qtype, status, rrs=None, **more):
        fields, got, wall = self.ask(name, qtype)
        self.assertEqual(fields["status"], status, (name, qtype, fields, got))
        if rrs is not None:
            self.assertEqual(got, rrs, (name, qtype))
        for k, v in more.items():
            self.assertEqual(fields[k], v, (name, qtype, k, fields))
        return fields, got, wall

    def test_records(self):
        self.start_dns(RECORDS, rbl=RBL)
        self.assertAnswer("example.test", "A", "OK", ["A 192.0.2.1"], nodata="0", error="-")
        self.assertAnswer("Example.TEST.", "A", "OK", ["A 192.0.2.1"])
        self.assertAnswer("mx1.example.test", "AAAA", "OK", ["AAAA 2001:db8::10"])
        self.assertAnswer("example.test", "MX", "OK",
                          ["MX 10 mx1.example.test", "MX 20 mx2.example.test"])
        self.assertAnswer("example.test", "NS", "OK",
                          ["NS ns1.example.test", "NS ns2.example.test"])
        self.assertAnswer("10.2.0.192.in-addr.arpa", "PTR", "OK", ["PTR mx1.example.test"])
        # the first character-string of a TXT record, as Postfix keeps it
        self.assertAnswer("txt.example.test", "TXT", "OK", ["TXT v=spf1 -all"])
        # CNAME chains followed (unbound puts the chain in the answer)
        self.assertAnswer("alias2.example.test", "A", "OK", ["A 192.0.2.10"])
        self.assertAnswer("alias.example.test", "CNAME", "OK", ["CNAME mx1.example.test"])
        # the RBL zone, forwarded to rbldnsd
        self.assertAnswer("2.0.0.127.zen.test", "A", "OK", ["A 127.0.0.2"])
        self.assertAnswer("2.0.0.127.zen.test", "TXT", "OK",
                          ["TXT Listed by zen.test: 127.0.0.2"])
        self.assertAnswer("3.0.0.127.zen.test", "A", "NOTFOUND", [], nodata="0", rcode="3")

    def test_fixture_for_glibc(self):
        """The test server as everything else in the namespace sees it: glibc (Postfix's and
        getent's resolver) through resolv.conf, and dnsfixture.query()."""
        dns = self.start_dns(RECORDS, rbl=RBL, servfail=["broken.test"], timeout=["slow.test"],
                             refused=["no.test"])
        self.assertEqual(socket.gethostbyname("mx1.example.test"), "192.0.2.10")
        self.assertEqual(dnsfixture.query("mx1.example.test", "AAAA"),
                         (0, ["20010db8000000000000000000000010"]))
        self.assertEqual(socket.gethostbyaddr("192.0.2.10")[0], "mx1.example.test")
        rcode, mx = dnsfixture.query("example.test", "MX")   # RDATA in hex (maybe compressed)
        self.assertEqual((rcode, [m[:4] for m in mx]), (0, ["000a", "0014"]))
        self.assertEqual(dnsfixture.query("2.0.0.127.zen.test", "TXT"),
                         (0, ["Listed by zen.test: 127.0.0.2"]))
        self.assertEqual(dnsfixture.query("nope.example.test", "A"), (3, []))
        self.assertEqual(dnsfixture.query("mx2.example.test", "MX"), (0, []))
        self.assertEqual(dnsfixture.query("a.broken.test", "A"), (2, []))
        self.assertEqual(dnsfixture.query("a.no.test", "A"), (5, []))
        self.assertEqual(dnsfixture.query("deb.debian.org", "A"), (5, []))
        t0 = time.monotonic()
        self.assertEqual(dnsfixture.query("a.slow.test", "A", timeout=1.0), (None, []))
        self.assertGreaterEqual(time.monotonic() - t0, 0.9)
        # nothing cached: a new server with other records answers with them
        dns.stop()
        self.start_dns(["example.test. 300 IN A 192.0.2.99"])
        self.assertEqual(dnsfixture.query("example.test", "A"), (0, ["192.0.2.99"]))

    def test_negative(self):
        self.start_dns(RECORDS)
        self.assertAnswer("nope.example.test", "A", "NOTFOUND", [], nodata="0", rcode="3")
        self.assertAnswer("mx2.example.test", "MX", "NOTFOUND", [], nodata="1", rcode="0")
        self.assertAnswer("nullmx.test", "MX", "NULLMX", [])
        # a CNAME whose target has no MX: nodata for the target
        self.assertAnswer("alias.example.test", "MX", "NOTFOUND", [], nodata="1")
        # outside every test zone: REFUSED, which glibc (and so Postfix) reports as try-again
        self.assertAnswer("deb.debian.org", "A", "RETRY", [], rcode="5",
                          error="Host not found, try again")
        # a name that cannot be asked
        self.assertAnswer("a..b", "A", "NOTFOUND", [],
                          error="Name service error for a..b: invalid host or domain name")

    def test_servfail(self):
        self.start_dns(RECORDS, servfail=["broken.test"])
        self.assertEqual(dnsfixture.query("x.broken.test", "A")[0], 2)
        fields, _, wall = self.assertAnswer("x.broken.test", "MX", "RETRY", [], rcode="2",
                                            error="Host not found, try again")
        self.assertLess(wall, 2500)

    def test_tc_then_tcp(self):
        self.start_dns(RECORDS)
        # over UDP without EDNS (as dnsq asks) the set does not fit: unbound sets TC
        q = struct.pack(">HHHHHH", 77, 0x0100, 1, 0, 0, 0) + b"\x03big\x07example\x04test\x00" \
            + struct.pack(">HH", 16, 1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.sendto(q, ("127.0.0.1", 53))
            reply = s.recv(65535)
        self.assertTrue(struct.unpack(">H", reply[2:4])[0] & 0x0200, "no TC from unbound")
        self.assertLessEqual(len(reply), 512)
        _, rrs, _ = self.assertAnswer("big.example.test", "TXT", "OK")
        self.assertEqual(sorted(rrs), ["TXT record %02d of a set that is far larger than 512 bytes"
                                       % i for i in range(20)])

    def test_timeout_within_bound(self):
        self.start_dns(RECORDS, timeout=["slow.test"])
        # resolv.conf: timeout:1 attempts:1, one server: the bound is 1 * (1 * 1 + 1) s
        fields, _, wall = self.assertAnswer("x.slow.test", "A", "RETRY", [], error="timeout")
        self.assertGreaterEqual(int(fields["elapsed"]), 950)
        self.assertLess(wall, 2500)
        # two attempts, two silent servers: 4 tries of 1 s, within 1 * (2 * 2 + 1) s
        a, b = SilentUdp("127.0.0.5"), SilentUdp("127.0.0.6")
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        conf = self.conf("nameserver 127.0.0.5\nnameserver 127.0.0.6\noptions timeout:1 attempts:2\n")
        fields, _, wall = self.ask("example.test", "A", conf=conf)
        self.assertEqual((fields["status"], fields["error"]), ("RETRY", "timeout"))
        self.assertGreaterEqual(int(fields["elapsed"]), 3900)
        self.assertLess(wall, 5500)

    def test_no_server(self):
        # nothing on 127.0.0.1:53: ICMP port unreachable, at once
        fields, rrs, wall = self.ask("example.test", "MX")
        self.assertEqual((fields["status"], fields["error"], rrs),
                         ("RETRY", "connection refused", []))
        self.assertLess(wall, 1500)
        # a server that cannot be reached at all (no route in the namespace)
        conf = self.conf("nameserver 192.0.2.53\nnameserver 2001:db8::53\noptions timeout:1\n")
        fields, _, wall = self.ask("example.test", "MX", conf=conf)
        self.assertEqual((fields["status"], fields["error"]), ("RETRY", "no name server reachable"))
        self.assertLess(wall, 1500)
        # a resolv.conf without servers: 127.0.0.1, as glibc
        conf = self.conf("options timeout:1 attempts:1\n")
        self.start_dns(RECORDS)
        fields, rrs, _ = self.ask("example.test", "A", conf=conf)
        self.assertEqual((fields["status"], rrs), ("OK", ["A 192.0.2.1"]))

    def test_servers_in_order(self):
        self.start_dns(RECORDS)
        silent = SilentUdp("127.0.0.5")
        self.addCleanup(silent.close)
        # the first server is silent: the second answers after its timeout
        conf = self.conf("nameserver 127.0.0.5\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        fields, rrs, _ = self.ask("example.test", "A", conf=conf)
        self.assertEqual((fields["status"], rrs), ("OK", ["A 192.0.2.1"]))
        self.assertGreaterEqual(int(fields["elapsed"]), 950)
        # IPv6 name server
        conf = self.conf("nameserver ::1\noptions timeout:1 attempts:1\n")
        fields, rrs, _ = self.ask("example.test", "MX", conf=conf)
        self.assertEqual((fields["status"], rrs),
                         ("OK", ["MX 10 mx1.example.test", "MX 20 mx2.example.test"]))
        # a server that refuses is skipped for the next (glibc's res_send())
        conf = self.conf("nameserver 127.0.0.1\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        fields, _, wall = self.ask("outside.invalid.example", "A", conf=conf)
        self.assertEqual((fields["status"], fields["rcode"]), ("RETRY", "5"))

    def test_foreign_replies_ignored(self):
        srv = TrickyServer("127.0.0.7", "ok")
        self.addCleanup(srv.close)
        conf = self.conf("nameserver 127.0.0.7\noptions timeout:2 attempts:1\n")
        fields, rrs, wall = self.ask("host.example.test", "A", conf=conf)
        self.assertEqual((fields["status"], rrs), ("OK", ["A 198.51.100.7"]))
        self.assertLess(wall, 1500)
        self.assertEqual(srv.queries, 1)

    def test_tc_to_silent_tcp(self):
        srv = TrickyServer("127.0.0.7", "tc")
        self.addCleanup(srv.close)
        conf = self.conf("nameserver 127.0.0.7\noptions timeout:1 attempts:1\n")
        # TC: TCP, which never answers: the TCP timeout, then no try left
        fields, rrs, wall = self.ask("host.example.test", "A", conf=conf)
        self.assertEqual((fields["status"], fields["error"], rrs), ("RETRY", "timeout", []))
        self.assertGreaterEqual(int(fields["elapsed"]), 950)
        self.assertLess(wall, 2500)
        self.assertEqual(len(srv.accepted), 1)
        # cancelled in the middle of the TCP exchange: the callback never runs
        fields, _, _ = self.ask("host.example.test", "A", conf=conf, cancel=300)
        self.assertIn("cancelled", fields)
        self.assertEqual(len(srv.accepted), 2)

    def test_cancel(self):
        self.start_dns(RECORDS, timeout=["slow.test"])
        fields, _, _ = self.ask("x.slow.test", "A", cancel=100)
        self.assertIn("cancelled", fields)
        self.assertNotIn("status", fields)
        # cancelled before the first turn of the loop
        fields, _, _ = self.ask("example.test", "A", cancel=0)
        self.assertIn("cancelled", fields)
        self.assertNotIn("status", fields)


if __name__ == "__main__":
    import unittest
    unittest.main()
