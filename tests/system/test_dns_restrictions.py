"""test_dns_restrictions: the DNS restrictions, mxgate against Postfix 3.7, live, in the same
private DNS namespace (dnsfixture: unbound for the test domains, rbldnsd for the lists): the
same main.cf and the same sessions go to both, and the replies and smtpd's log lines (connect,
reject, warning, disconnect) must be the same.

Clients connect from 127.0.0.2 ... 127.0.0.6, whose reverse names the test DNS gives:
  127.0.0.2  client.example (PTR, and A back: verified)
  127.0.0.3  forged.example (PTR, but its A is another address: "unknown", FORGED)
  127.0.0.4  no PTR (NXDOMAIN: "unknown", PERM)
  127.0.0.5  PTR lookups SERVFAIL ("unknown", TEMP)
  127.0.0.6  nomx.example (PTR and A back; a name with no MX)
"""

import os
import re
import shutil
import tempfile
import time

import dnsfixture
import harness
import postfixref

REF_NAME = "dnsrestr"

RECORDS = [
    "2.0.0.127.in-addr.arpa. PTR client.example.",
    "client.example. A 127.0.0.2",
    "client.example. MX 10 mx.client.example.",
    "mx.client.example. A 192.0.2.25",
    "client.example. NS ns1.isp.example.",
    "ns1.isp.example. A 192.0.2.53",
    "3.0.0.127.in-addr.arpa. PTR forged.example.",
    "forged.example. A 192.0.2.99",
    "6.0.0.127.in-addr.arpa. PTR nomx.example.",
    "nomx.example. A 127.0.0.6",
    "good.example. MX 10 mx.good.example.",
    "mx.good.example. A 192.0.2.10",
    "badmx.example. MX 10 mx.spammer.example.",
    "badmx.example. MX 20 mx2.spammer.example.",
    "mx.spammer.example. A 192.0.2.66",
    "mx2.spammer.example. A 192.0.2.67",
    "nullmx.example. MX 0 .",
    "sub.badns.example. A 192.0.2.44",
    "badns.example. NS ns.bulletproof.example.",
    "ns.bulletproof.example. A 198.51.100.53",
    "helo.example. A 192.0.2.80",
]
RBL = {
    "zen.test": ("ip4set", [":127.0.0.2:Listed by zen.test, see https://zen.test/q/$",
                            "127.0.0.2",
                            "127.0.0.3 :127.0.0.3:Policy listing for $",
                            "127.0.0.6 :127.0.0.10:PBL $"]),
    "dbl.test": ("dnset", [":127.0.1.2:Domain $ is in dbl.test",
                           "spam.example", "client.example", "helo.example"]),
    "wl.test": ("ip4set", [":127.0.2.1:", "127.0.0.6"]),
}
SERVFAIL = ["5.0.0.127.in-addr.arpa", "broken.example", "broken.test"]

MAIN = {
    "myhostname": "mx.example.test",
    "mydestination": "local.test",
    "alias_maps": "",
    "local_recipient_maps": "proxy:unix:passwd.byname $alias_maps",
    "mynetworks": "192.0.2.0/24",
    "virtual_mailbox_domains": "example.test",
    "virtual_mailbox_maps": "static:example.test/user/",
    "smtpd_forbid_unauth_pipelining": "yes",
}

# the log lines compared: smtpd's own, but for Postfix's process bookkeeping
LOG_RE = re.compile(r"(?:postfix|mxgate)/smtpd\[\d+\]: (.*)$")
LOG_KEEP = re.compile(r"^(connect from|disconnect from|NOQUEUE: |warning: |[0-9A-F]+: reject)")


def session(port, source, helo="helo.example", sender="sender@good.example",
            rcpts=("user@example.test",)):
    """EHLO, MAIL, each RCPT, QUIT from source: every reply but the banner and EHLO's."""
    out = []
    with harness.Client(port, source=source, timeout=30) as c:
        c.read_reply()
        c.cmd("EHLO " + helo)
        out.append("MAIL: " + c.cmd("MAIL FROM:<%s>" % sender).text)
        for r in rcpts:
            out.append("RCPT %s: %s" % (r, c.cmd("RCPT TO:<%s>" % r).text))
        c.cmd("QUIT")
    return out


def smtpd_lines(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            raw = f.read().splitlines()
    except OSError:
        return []
    out = []
    for ln in raw:
        m = LOG_RE.search(ln)
        if m and LOG_KEEP.match(m.group(1)):
            out.append(m.group(1))
    return out


class DnsRestrictionsTest(dnsfixture.PrivateDnsCase):
    maxDiff = None
    ns_timeout = 240

    def setUp(self):
        self.dns = self.start_dns(records=RECORDS, rbl=RBL, servfail=SERVFAIL)
        self.dir = tempfile.mkdtemp(prefix="mxgate-dnsr-")
        os.chmod(self.dir, 0o755)
        self.addCleanup(shutil.rmtree, self.dir, True)

    def both(self, params, sessions):
        """Start Postfix and mxgate with MAIN + params, play each session (a dict of
        session() arguments) to both, and compare the replies and the log lines."""
        p = dict(MAIN)
        p.update(params)
        ref = postfixref.Reference(REF_NAME)
        self.addCleanup(ref.stop)
        ref.start(p)
        srv = self.start_server(main=dict(p), virtual_users=[])
        got_pf, got_mx = [], []
        for s in sessions:
            got_pf.append(session(ref.port, **s))
            got_mx.append(session(srv.port, **s))
        self.assertEqual(got_mx, got_pf)
        want = self.wait_lines(os.path.join(ref.dir, "maillog"), len(sessions))
        have = self.wait_lines(srv.maillog, len(sessions))
        self.assertEqual(have, want)
        if os.environ.get("MXGATE_SHOW"):
            with open(os.environ["MXGATE_SHOW"], "a") as f:
                f.write("\n".join(sum(got_pf, []) + want) + "\n")
        return got_pf, want

    def wait_lines(self, path, sessions, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            lines = smtpd_lines(path)
            if sum(ln.startswith("disconnect from") for ln in lines) >= sessions:
                return lines
            if time.monotonic() > deadline:
                self.fail("%s: %d disconnect lines, want %d:\n%s"
                          % (path, sum(ln.startswith("disconnect from") for ln in lines),
                             sessions, "\n".join(lines)))
            time.sleep(0.1)

    def test_client_lists(self):
        replies, log = self.both(
            {"smtpd_client_restrictions": "permit_dnswl_client wl.test, "
             "reject_rbl_client zen.test=127.0.0.[2..3], reject_rbl_client broken.test, "
             "reject_rhsbl_client dbl.test"},
            [{"source": "127.0.0.2"}, {"source": "127.0.0.3"}, {"source": "127.0.0.4"},
             {"source": "127.0.0.6"}])
        self.assertIn("Client host [127.0.0.2] blocked using zen.test", replies[0][1])
        self.assertTrue(replies[2][1].endswith("250 2.1.5 Ok"), replies)
        self.assertTrue(any("RBL lookup error" in ln for ln in log), log)

    def test_rhsbl_and_reply_maps(self):
        with open(os.path.join(self.dir, "rbl_reply"), "w") as f:
            f.write("dbl.test 550 5.7.1 $rbl_class $rbl_what is in $rbl_domain: $rbl_reason "
                    "(client $client_address, helo $helo_name)\n")
        self.both(
            {"smtpd_sender_restrictions": "reject_rhsbl_sender dbl.test",
             "smtpd_helo_restrictions": "reject_rhsbl_helo dbl.test",
             "smtpd_recipient_restrictions": "reject_rhsbl_recipient dbl.test, "
             "reject_unauth_destination",
             "rbl_reply_maps": "texthash:" + os.path.join(self.dir, "rbl_reply")},
            [{"source": "127.0.0.4", "sender": "bob@spam.example"},
             {"source": "127.0.0.4", "helo": "helo.example", "sender": "a@good.example"},
             {"source": "127.0.0.4", "helo": "mail.good.example", "sender": "a@good.example",
              "rcpts": ("x@spam.example", "user@example.test")},
             {"source": "127.0.0.4", "helo": "[127.0.0.4]", "sender": "a@[127.0.0.9]"}])

    def test_reverse_rhsbl_and_client_names(self):
        self.both(
            {"smtpd_client_restrictions": "reject_rhsbl_reverse_client dbl.test, "
             "reject_unknown_reverse_client_hostname, reject_unknown_client_hostname"},
            [{"source": "127.0.0.2"}, {"source": "127.0.0.3"}, {"source": "127.0.0.4"},
             {"source": "127.0.0.5"}, {"source": "127.0.0.6"}])

    def test_unknown_client_hostname(self):
        self.both(
            {"smtpd_client_restrictions": "reject_unknown_client_hostname",
             "unknown_client_reject_code": "550"},
            [{"source": "127.0.0.3"}, {"source": "127.0.0.4"}, {"source": "127.0.0.5"},
             {"source": "127.0.0.6"}])

    def test_unknown_helo_and_domains(self):
        replies, _ = self.both(
            {"smtpd_helo_restrictions": "reject_unknown_helo_hostname",
             "smtpd_sender_restrictions": "reject_unknown_sender_domain",
             "smtpd_recipient_restrictions": "reject_unknown_recipient_domain, "
             "reject_unauth_destination"},
            [{"source": "127.0.0.4", "helo": "nowhere.example"},
             {"source": "127.0.0.4", "helo": "broken.example"},
             {"source": "127.0.0.4", "sender": "a@nowhere.example"},
             {"source": "127.0.0.4", "sender": "a@nullmx.example"},
             {"source": "127.0.0.4", "sender": "a@broken.example"},
             {"source": "127.0.0.4", "sender": "a@nomx.example"},
             {"source": "127.0.0.4", "rcpts": ("x@nowhere.example", "y@nullmx.example",
                                               "user@example.test")}])
        self.assertIn("Domain not found", replies[2][1])

    def test_tempfail_actions(self):
        self.both(
            {"smtpd_sender_restrictions": "reject_unknown_sender_domain, "
             "check_sender_access inline:{{a@broken.example = REJECT go away}}",
             "smtpd_helo_restrictions": "reject_unknown_helo_hostname",
             "unknown_helo_hostname_tempfail_action": "defer",
             "unknown_address_reject_code": "554"},
            [{"source": "127.0.0.4", "sender": "a@broken.example"},
             {"source": "127.0.0.4", "sender": "b@broken.example"},
             {"source": "127.0.0.4", "helo": "broken.example"},
             {"source": "127.0.0.4", "sender": "c@nowhere.example"}])

    def test_server_access(self):
        with open(os.path.join(self.dir, "bad_servers"), "w") as f:
            f.write("mx.spammer.example REJECT spammer MX\n"
                    "192.0.2.67 REJECT spammer MX address\n"
                    "ns.bulletproof.example 554 5.7.1 bulletproof name server\n"
                    "192.0.2.80 REJECT helo address\n"
                    "192.0.2.25 REJECT client MX address\n"
                    "isp.example DUNNO\n")
        t = "texthash:" + os.path.join(self.dir, "bad_servers")
        self.both(
            {"smtpd_sender_restrictions": "check_sender_mx_access %s, "
             "check_sender_ns_access %s" % (t, t),
             "smtpd_helo_restrictions": "check_helo_a_access " + t,
             "smtpd_client_restrictions": "check_client_mx_access " + t},
            [{"source": "127.0.0.4", "helo": "mail.good.example", "sender": "a@badmx.example"},
             {"source": "127.0.0.4", "helo": "mail.good.example",
              "sender": "a@sub.badns.example"},
             {"source": "127.0.0.4", "helo": "mail.good.example", "sender": "a@good.example"},
             {"source": "127.0.0.4", "helo": "helo.example", "sender": "a@good.example"},
             {"source": "127.0.0.4", "helo": "mail.good.example", "sender": "a@nowhere.example"},
             {"source": "127.0.0.4", "helo": "mail.good.example", "sender": "a@[192.0.2.67]"},
             {"source": "127.0.0.2", "helo": "mail.good.example"}])

    def test_server_access_ok_is_refused(self):
        self.both(
            {"smtpd_sender_restrictions":
             "check_sender_mx_access inline:{{mx.good.example = OK}}"},
            [{"source": "127.0.0.4", "sender": "a@good.example"}])


if __name__ == "__main__":
    import unittest
    unittest.main()
