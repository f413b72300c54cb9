"""test_dns_fixture: the DNS test pieces work (dnsfixture.py): inside a PrivateDnsCase's
namespace the resolver asks rbldnsd and nothing else, and the reference Postfix 3.7 started
there uses the test lists (reject_rbl_client, a =127.0.0.N filter, reject_rhsbl_sender).
mxgate's side of DNS lists comes with issue 9; these tests pin the server side of them."""

import os
import re
import socket
import subprocess
import time

import dnsfixture
import harness
import postfixref

ZEN_TXT = "Listed by zen.test, see https://zen.test/query/$"
ZONES = {
    "zen.test": ("ip4set", [":127.0.0.2:" + ZEN_TXT,
                            "127.0.0.2",
                            "127.0.0.3 :127.0.0.3:Policy listing for $"]),
    "dbl.test": ("dnset", [":127.0.1.2:Domain $ is in dbl.test",
                           "spam.example"]),
}
REF_NAME = "dnsfix"


def session(port, source, sender="sender@client.example", rcpt="user@example.test"):
    """EHLO, MAIL, RCPT from the given source address: the RCPT reply's text."""
    with harness.Client(port, source=source, timeout=30) as c:
        c.read_reply()
        c.cmd("EHLO client.example")
        c.cmd("MAIL FROM:<%s>" % sender)
        r = c.cmd("RCPT TO:<%s>" % rcpt).text
        c.cmd("QUIT")
    return r


class DnsFixtureTest(dnsfixture.PrivateDnsCase):
    maxDiff = None

    def setUp(self):
        self.dns = self.start_rbldnsd(ZONES)

    def test_resolver_asks_rbldnsd_only(self):
        with open("/etc/resolv.conf") as f:
            self.assertEqual(f.read(), dnsfixture.RESOLV_CONF)
        with open("/proc/net/dev") as f:     # this namespace's interfaces
            self.assertEqual([ln.split(":")[0].strip() for ln in f.readlines()[2:]], ["lo"])
        # rbldnsd itself
        self.assertEqual(dnsfixture.query("2.0.0.127.zen.test", "A"), (0, ["127.0.0.2"]))
        self.assertEqual(dnsfixture.query("2.0.0.127.zen.test", "TXT"),
                         (0, ["Listed by zen.test, see https://zen.test/query/127.0.0.2"]))
        self.assertEqual(dnsfixture.query("3.0.0.127.zen.test", "A"), (0, ["127.0.0.3"]))
        self.assertEqual(dnsfixture.query("spam.example.dbl.test", "TXT"),
                         (0, ["Domain spam.example is in dbl.test"]))
        self.assertEqual(dnsfixture.query("4.0.0.127.zen.test", "A"), (3, []))  # NXDOMAIN
        # the system resolver (glibc, as Postfix and mxgate use it) through resolv.conf
        self.assertEqual(socket.gethostbyname("2.0.0.127.zen.test"), "127.0.0.2")
        r = subprocess.run(["getent", "hosts", "2.0.0.127.zen.test"], capture_output=True,
                           text=True, timeout=10)
        self.assertEqual(r.stdout.split(), ["127.0.0.2", "2.0.0.127.zen.test"])
        # outside the zones: no answer, fast, and no way out to a real server
        t0 = time.monotonic()
        with self.assertRaises(socket.gaierror):
            socket.getaddrinfo("deb.debian.org", 80)
        self.assertLess(time.monotonic() - t0, 5)
        r = subprocess.run(["getent", "hosts", "deb.debian.org"], capture_output=True,
                           text=True, timeout=10)
        self.assertEqual((r.returncode, r.stdout), (2, ""))
        self.assertEqual(dnsfixture.query("deb.debian.org", "A")[1], [])
        # nor the machine's own name servers (its resolv.conf, seen through pid 1's root)
        # nor any other
        servers = ["9.9.9.9"]
        try:
            with open("/proc/1/root/etc/resolv.conf") as f:
                servers += [ln.split()[1] for ln in f if ln.startswith("nameserver ")
                            and len(ln.split()) > 1 and ":" not in ln.split()[1]]
        except OSError:
            pass
        for server in servers:
            if server == "127.0.0.1":
                continue
            try:
                answer = dnsfixture.query("deb.debian.org", "A", server=server, timeout=1)
            except OSError:
                continue                    # network unreachable
            self.assertEqual(answer, (None, []), server)

    # -- the reference Postfix in the namespace ------------------------------------------------

    def start_postfix(self, **params):
        ref = postfixref.Reference(REF_NAME)
        self.addCleanup(ref.stop)
        p = {"smtpd_delay_reject": "yes", "mynetworks": "127.0.0.1/32",
             "virtual_mailbox_domains": "example.test",
             "virtual_mailbox_maps": "static:example.test/user/"}
        p.update(params)
        ref.start(p)
        return ref

    def postfix_reject_log(self, ref, needle, timeout=10):
        """The smtpd reject line containing needle (without the syslog prefix)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with open(os.path.join(ref.dir, "maillog")) as f:
                    lines = f.read().splitlines()
            except OSError:
                lines = []
            for ln in lines:
                m = re.search(r"postfix/smtpd\[\d+\]: (NOQUEUE: reject: .*)", ln)
                if m and needle in m.group(1):
                    return m.group(1)
            if time.monotonic() > deadline:
                self.fail("no smtpd reject line with %r in %s/maillog:\n%s"
                          % (needle, ref.dir, "\n".join(lines[-20:])))
            time.sleep(0.1)

    def test_mxgate_and_postfix_inside(self):
        """harness.Server and postfixref both work in the namespace: the same session from
        127.0.0.2 (no DNS list yet: mxgate refuses reject_rbl_client until issue 9)."""
        main = dict(harness.BASE_MAIN)
        main.update(mynetworks="127.0.0.1/32")
        srv = self.start_server(main=main, virtual_users=["alice"])
        self.assertEqual(session(srv.port, "127.0.0.2", rcpt="alice@virt.test"), "250 2.1.5 Ok")
        self.assertIsNotNone(srv.wait_log(r"connect from unknown\[127\.0\.0\.2\]"),
                             "\n".join(srv.log_lines()))
        ref = self.start_postfix()
        self.assertEqual(session(ref.port, "127.0.0.2"), "250 2.1.5 Ok")

    def test_postfix_reject_rbl_client(self):
        ref = self.start_postfix(smtpd_client_restrictions="reject_rbl_client zen.test")
        want = ("554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using zen.test;"
                " Listed by zen.test, see https://zen.test/query/127.0.0.2")
        self.assertEqual(session(ref.port, "127.0.0.2"), want)
        self.assertEqual(
            self.postfix_reject_log(ref, "[127.0.0.2]"),
            "NOQUEUE: reject: RCPT from unknown[127.0.0.2]: " + want
            + "; from=<sender@client.example> to=<user@example.test> proto=ESMTP"
            " helo=<client.example>")
        # a client that is not listed gets through the list
        self.assertEqual(session(ref.port, "127.0.0.4"), "250 2.1.5 Ok")

    def test_postfix_rbl_result_filter(self):
        ref = self.start_postfix(smtpd_client_restrictions="reject_rbl_client zen.test=127.0.0.3")
        # 127.0.0.2 is listed with A 127.0.0.2: the filter does not match
        self.assertEqual(session(ref.port, "127.0.0.2"), "250 2.1.5 Ok")
        want = ("554 5.7.1 Service unavailable; Client host [127.0.0.3] blocked using zen.test;"
                " Policy listing for 127.0.0.3")
        self.assertEqual(session(ref.port, "127.0.0.3"), want)
        self.assertEqual(
            self.postfix_reject_log(ref, "[127.0.0.3]"),
            "NOQUEUE: reject: RCPT from unknown[127.0.0.3]: " + want
            + "; from=<sender@client.example> to=<user@example.test> proto=ESMTP"
            " helo=<client.example>")

    def test_postfix_reject_rhsbl_sender(self):
        ref = self.start_postfix(smtpd_sender_restrictions="reject_rhsbl_sender dbl.test")
        want = ("554 5.7.1 Service unavailable; Sender address [bob@spam.example] blocked"
                " using dbl.test; Domain spam.example is in dbl.test")
        self.assertEqual(session(ref.port, "127.0.0.2", sender="bob@spam.example"), want)
        self.assertEqual(
            self.postfix_reject_log(ref, "bob@spam.example"),
            "NOQUEUE: reject: RCPT from unknown[127.0.0.2]: " + want
            + "; from=<bob@spam.example> to=<user@example.test> proto=ESMTP"
            " helo=<client.example>")
        self.assertEqual(session(ref.port, "127.0.0.2", sender="bob@ham.example"),
                         "250 2.1.5 Ok")


if __name__ == "__main__":
    import unittest
    unittest.main()
