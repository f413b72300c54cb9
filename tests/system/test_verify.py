"""reject_unverified_recipient, live against Postfix 3.7 (tests/system/postfixref.py).

Postfix's verify(8) probes each recipient through its virtual(8) or local(8) delivery agent;
mxgate's probe is the recipient's own lookup (README, "Address verification").  One main.cf
for both: virt.test a virtual domain with alice, local.test in mydestination (passwd users),
smtpd_recipient_restrictions = reject_unverified_recipient, reject_unauth_destination.  The
RCPT replies and the reject log lines must be Postfix's for a known and an unknown virtual
recipient and an unknown local one; a known local user passes the verification in both (mxgate
then defers it until its delivery helper exists: README).  Postfix's first session already
has the probes' answers (they finish within address_verify_poll_delay); its second, from the
cache, is the same.  Then a 5xx unverified_recipient_reject_code and a custom reason.
reject_unverified_sender is refused by `check` (file:line) and `run`; the address_verify_*
cache settings change no reply.
"""

import os
import re
import shutil
import tempfile
import time
import unittest

import harness
import postfixref

VIRTUAL_MAP = "alice@virt.test alice/\n"
RCPTS = ["alice@virt.test", "bob@virt.test", "Carol+X@Virt.Test", "nosuch@local.test",
         "NoSuch2@Local.Test"]
LOCAL_KNOWN = "nobody@local.test"
REJECT = re.compile(r"\]: (?:NOQUEUE|[0-9A-F]+): (reject(?:_warning)?: RCPT from .*)$")


def rejects(lines):
    out = []
    for ln in lines:
        m = REJECT.search(ln)
        if m:
            out.append(m.group(1))
    return out


class VerifyAsPostfix(postfixref.RcptCase):
    ref_name = "verify"

    def params(self, **extra):
        vmap = os.path.join(self.ref.dir, "vmailbox")
        with open(vmap, "w") as f:
            f.write(VIRTUAL_MAP)
        os.chmod(vmap, 0o644)
        p = dict(virtual_mailbox_domains="virt.test", virtual_mailbox_maps="texthash:" + vmap,
                 smtpd_recipient_restrictions="reject_unverified_recipient, "
                 "reject_unauth_destination")
        p.update(extra)
        return self.main_params(**p)

    def compare(self, params, rcpts):
        self.ref.start(params)
        srv = self.start_server(main=params, virtual_users=[])
        want = postfixref.rcpt_replies(self.ref.port, rcpts)
        again = postfixref.rcpt_replies(self.ref.port, rcpts)
        got = postfixref.rcpt_replies(srv.port, rcpts)
        self.assertEqual(again, want, "Postfix's second answer (from its cache) differs")
        self.assertEqual(got, want)
        # the reject lines: one per refused RCPT, Postfix's text (the client's name aside)
        deadline = time.monotonic() + 10
        nrej = sum(1 for r in want[1:] if not r.split(": ", 1)[1].startswith("250"))
        while True:
            with open(os.path.join(self.ref.dir, "maillog")) as f:
                ref_lines = rejects(f.read().splitlines())
            our_lines = rejects(srv.log_lines())
            if (len(ref_lines) >= 2 * nrej and len(our_lines) >= nrej) \
                    or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(len(ref_lines), 2 * nrej, ref_lines)
        self.assertEqual(our_lines, ref_lines[:nrej])
        return got, srv

    def test_default_codes(self):
        got, srv = self.compare(self.params(), RCPTS)
        self.assertIn('RCPT bob@virt.test: 450 4.1.1 <bob@virt.test>: Recipient address rejected: '
                      'unverified address: unknown user: "bob@virt.test"', got)
        self.assertIn('RCPT nosuch@local.test: 450 4.1.1 <nosuch@local.test>: Recipient address '
                      'rejected: unverified address: unknown user: "nosuch"', got)
        self.assertIn("RCPT alice@virt.test: 250 2.1.5 Ok", got)
        # a known local user: verified by both; mxgate then defers it (no delivery helper yet)
        want = postfixref.rcpt_replies(self.ref.port, [LOCAL_KNOWN])
        got = postfixref.rcpt_replies(srv.port, [LOCAL_KNOWN])
        self.assertEqual(want[1], "RCPT %s: 250 2.1.5 Ok" % LOCAL_KNOWN)
        self.assertNotIn("unverified", got[1])
        self.assertTrue(got[1] == want[1] or got[1].startswith(
            "RCPT %s: 451 4.3.0 <%s>: Recipient address rejected: Local delivery is not "
            "available" % (LOCAL_KNOWN, LOCAL_KNOWN)), got)

    def test_reject_code_and_reason(self):
        got, _ = self.compare(self.params(unverified_recipient_reject_code="550",
                                          recipient_delimiter="+"),
                              ["alice+x@virt.test", "bob@virt.test", "NoSuch+ext@local.test"])
        self.assertIn('RCPT bob@virt.test: 550 5.1.1 <bob@virt.test>: Recipient address rejected: '
                      'undeliverable address: unknown user: "bob@virt.test"', got)
        self.assertIn('RCPT NoSuch+ext@local.test: 550 5.1.1 <NoSuch+ext@local.test>: Recipient '
                      'address rejected: undeliverable address: unknown user: "nosuch"', got)

    def test_custom_reason_and_defer_action(self):
        self.compare(self.params(unverified_recipient_reject_reason="Address lookup failed",
                                 unverified_recipient_tempfail_action="defer",
                                 smtpd_recipient_restrictions="reject_unverified_recipient, "
                                 "check_recipient_access inline:{bob@virt.test=REJECT}, "
                                 "reject_unauth_destination"),
                     ["alice@virt.test", "bob@virt.test"])

    def test_table_down(self):
        """virtual_mailbox_maps does not answer (a pgsql server that is not there): Postfix's
        probe defers in virtual(8), and so does mxgate's lookup."""
        cf = os.path.join(self.ref.dir, "pg.cf")
        with open(cf, "w") as f:
            f.write("hosts = inet:127.0.0.1:%d\nuser = x\npassword = x\ndbname = x\n"
                    "query = SELECT maildir FROM m WHERE addr='%%s'\n" % harness.free_port())
        os.chmod(cf, 0o644)
        got, _ = self.compare(self.params(virtual_mailbox_maps="pgsql:" + cf),
                              ["alice@virt.test", "bob@virt.test"])
        self.assertIn("RCPT alice@virt.test: 450 4.1.1 <alice@virt.test>: Recipient address "
                      "rejected: unverified address: mail system configuration error", got)

    def test_cache_settings_change_nothing(self):
        """address_verify_* (the cache, the polling): mxgate has nothing to cache; they are
        ignored with the usual warning, and every reply stays Postfix's."""
        params = self.params(address_verify_map="", address_verify_positive_expire_time="1d",
                             address_verify_negative_refresh_time="1m",
                             address_verify_positive_refresh_time="1h")
        self.compare(params, RCPTS)
        d = tempfile.mkdtemp(prefix="mxgate-verify-check-")
        self.addCleanup(shutil.rmtree, d, True)
        with open(os.path.join(d, "main.cf"), "w") as f:
            f.write(harness.format_main_cf(dict(params, virtual_mailbox_base=d,
                                                virtual_uid_maps="static:%d" % self.ref.ids[0],
                                                virtual_gid_maps="static:%d" % self.ref.ids[1])))
        rc, _, err = self.mxgate("check", "-c", d)
        self.assertEqual(rc, 0, err)
        for name in ("address_verify_map", "address_verify_positive_refresh_time",
                     "address_verify_positive_expire_time",
                     "address_verify_negative_refresh_time"):
            self.assertIn("%s: parameter is not implemented by mxgate, ignored" % name, err)


    def test_no_negative_cache(self):
        """The one setting whose replies differ (README): with address_verify_negative_cache =
        no, Postfix probes an unknown address again on every RCPT and answers "Address
        verification in progress" each time; mxgate gives the probe's answer.  Both refuse,
        with the same code at the defaults."""
        params = self.params(address_verify_negative_cache="no")
        self.ref.start(params)
        srv = self.start_server(main=params, virtual_users=[])
        rcpts = ["alice@virt.test", "bob@virt.test"]
        for _ in range(2):
            self.assertEqual(postfixref.rcpt_replies(self.ref.port, rcpts), [
                "250 2.1.0 Ok", "RCPT alice@virt.test: 250 2.1.5 Ok",
                "RCPT bob@virt.test: 450 4.1.1 <bob@virt.test>: Recipient address rejected: "
                "unverified address: Address verification in progress"])
        self.assertEqual(postfixref.rcpt_replies(srv.port, rcpts), [
            "250 2.1.0 Ok", "RCPT alice@virt.test: 250 2.1.5 Ok",
            'RCPT bob@virt.test: 450 4.1.1 <bob@virt.test>: Recipient address rejected: '
            'unverified address: unknown user: "bob@virt.test"'])


class SenderRefused(harness.MxTestCase):
    def test_check_names_it_and_run_refuses(self):
        d = tempfile.mkdtemp(prefix="mxgate-verify-sender-")
        self.addCleanup(shutil.rmtree, d, True)
        os.chmod(d, 0o755)
        port = harness.free_port()
        main = os.path.join(d, "main.cf")
        with open(main, "w") as f:
            f.write("myhostname = mx.example.test\n"                                  # 1
                    "maillog_file = %s/maillog\n" % d +                               # 2
                    "maillog_file_prefixes = %s\n" % d +                              # 3
                    "smtpd_recipient_restrictions = reject_unverified_recipient,\n"   # 4
                    "    reject_unauth_destination\n"                                 # 5
                    "smtpd_sender_restrictions = permit_mynetworks,\n"                # 6
                    "    reject_unverified_sender\n")                                 # 7
        with open(os.path.join(d, "master.cf"), "w") as f:
            f.write("127.0.0.1:%d inet n - n - - smtpd\n" % port)
        rc, _, err = self.mxgate("check", "-c", d)
        self.assertEqual(rc, 1, err)
        self.assertIn("mxgate: error: %s, line 6: smtpd_sender_restrictions: restriction "
                      "reject_unverified_sender is not implemented by mxgate (mxgate sends no "
                      "mail, so it cannot verify a sender address)" % main, err)
        self.assertNotIn("reject_unverified_recipient", err)
        rc, _, err = self.mxgate("run", "-c", d)
        self.assertNotEqual(rc, 0, err)
        self.assertIn("restriction reject_unverified_sender is not implemented by mxgate", err)
        self.assertFalse(harness.port_listening(port))


if __name__ == "__main__":
    unittest.main()
