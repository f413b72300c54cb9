"""opendkim as mxgate's milter, through the SMTP session (smtpd_milters), with its keys in the
test DNS, each test in its own network and mount namespace (dnsfixture.PrivateDnsCase):

  - a message signed by a real opendkim (Mode s, through tests/tools/miltertest) and sent to
    mxgate is verified by a second opendkim (Mode v) that reads the public key from the test
    DNS's TXT record sel1._domainkey.example.test: it is stored with opendkim's
    Authentication-Results: header (dkim=pass);
  - the same message with its body changed is stored with dkim=fail, and with
    On-BadSignature reject it gets opendkim's 5xx reply and Postfix's milter-reject log line;
  - the same sessions through Postfix 3.7 (tests/system/postfixref.py, in the same namespace,
    with the same opendkim) give the same replies and the same stored bytes (the Received:
    header's queue id and time normalized).
"""

import os
import shutil
import tempfile
import time

import dnsfixture
import harness
import milterfixture as mf
import test_milter_client as tmc
import test_milter_session as tms

SENDER = "alice@example.test"
RCPT = "bob@virt.test"


class DkimSession(dnsfixture.PrivateDnsCase):
    def setUp(self):
        if not self.in_namespace:
            self.fail("outside the private namespace")
        self.keydir, record = mf.dkim_keys("example.test", "sel1")
        self.addCleanup(shutil.rmtree, self.keydir, True)
        self.start_dns(records=[record])

    def signed(self):
        signer = mf.OpenDkim("s", "example.test", "sel1", self.keydir).start()
        self.addCleanup(signer.stop)
        out = os.path.join(tempfile.mkdtemp(prefix="mxgate-signed-"), "signed.eml")
        self.addCleanup(shutil.rmtree, os.path.dirname(out), True)
        r = mf.miltertest(signer.milter, tmc.SIGNED_FROM.replace("bob@example.com", RCPT),
                          client_addr="127.0.0.1", sender="<%s>" % SENDER, write=out)
        self.assertEqual(r.replies["message"], "continue", r.out + r.err)
        with open(out) as f:
            text = f.read()
        self.assertTrue(text.startswith("DKIM-Signature: v=1; a=rsa-sha256;"), text)
        return text

    def verifier(self, *settings):
        # UMask 000: the socket is reached by mxgate's mail_owner and by Postfix's smtpd
        v = mf.OpenDkim("v", "example.test", "sel1", self.keydir, ["UMask 000"] + list(settings),
                        nameserver=dnsfixture.UNBOUND_ADDRESS).start()
        self.addCleanup(v.stop)
        return v

    @staticmethod
    def session(port, msg):
        # from 127.0.0.2: opendkim's InternalHosts (127.0.0.1, the signer's client) are
        # signed for, not verified
        with harness.Client(port, source="127.0.0.2", timeout=60) as c:
            c.read_reply()
            c.cmd("EHLO client.example.net")
            c.cmd("MAIL FROM:<%s>" % SENDER)
            c.cmd("RCPT TO:<%s>" % RCPT)
            c.cmd("DATA")
            c.send(tms.wire(msg))
            final = c.read_reply(timeout=60)
            c.cmd("QUIT")
        return final

    def mxgate(self, milter):
        cf = dict(harness.BASE_MAIN, smtpd_milters=milter, myhostname="mx.example.test",
                  mail_name="Postfix")
        return self.start_server(main=cf, virtual_users=["bob"])

    def postfix(self, milter):
        import postfixref
        ref = postfixref.Reference("milter-dkim")
        self.addCleanup(ref.stop)
        with open(os.path.join(ref.dir, "vmailbox"), "w") as f:
            f.write("%s bob/\n" % RCPT)
        ref.start(dict(harness.BASE_MAIN, smtpd_milters=milter, myhostname="mx.example.test",
                       smtpd_client_restrictions="", virtual_mailbox_domains="virt.test",
                       virtual_mailbox_maps="texthash:%s/vmailbox" % ref.dir))
        return ref

    @staticmethod
    def stored(vmail, want=1):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(harness.maildir_files(vmail)) < want:
            time.sleep(0.1)
        out = []
        for p in harness.maildir_files(vmail):
            with open(p, "rb") as f:
                out.append(f.read())
        return out

    def auth_results(self, data):
        text = data.decode()
        start = text.find("\nAuthentication-Results: ")
        self.assertGreater(start, 0, text)
        end = text.find("\n", start + 1)
        while text[end + 1] in " \t":
            end = text.find("\n", end + 1)
        return text[start + 1:end]

    def test_good_signature_stored_with_authentication_results(self):
        msg = self.signed()
        v = self.verifier()
        srv = self.mxgate(v.milter)
        final = self.session(srv.port, msg)
        self.assertEqual(final.code, 250, final)
        [data] = self.stored(srv.vmail)
        ar = self.auth_results(data)
        self.assertRegex(ar, r"^Authentication-Results: mx\.example\.test;\n?\s*dkim=pass ")
        self.assertIn("header.d=example.test", ar)
        self.assertIn("header.s=sel1", ar)
        # the signature it vouches for is stored as it came
        self.assertIn(b"\nDKIM-Signature: v=1; a=rsa-sha256;", data)
        # and Postfix 3.7 stores the same bytes
        ref = self.postfix(v.milter)
        pf_final = self.session(ref.port, msg)
        self.assertEqual(pf_final.code, 250, pf_final)
        [pf_data] = self.stored(ref.vmail)
        self.assertEqual(tms.normalize(data).decode(), tms.normalize(pf_data).decode())

    def test_broken_signature_stored_with_fail(self):
        msg = self.signed().replace("this one is signed.", "this one was changed.")
        v = self.verifier()
        srv = self.mxgate(v.milter)
        self.assertEqual(self.session(srv.port, msg).code, 250)
        [data] = self.stored(srv.vmail)
        ar = self.auth_results(data)
        self.assertIn("dkim=fail", ar)
        ref = self.postfix(v.milter)
        self.assertEqual(self.session(ref.port, msg).code, 250)
        [pf_data] = self.stored(ref.vmail)
        self.assertEqual(tms.normalize(data).decode(), tms.normalize(pf_data).decode())

    def test_broken_signature_rejected_as_configured(self):
        msg = self.signed().replace("this one is signed.", "this one was changed.")
        v = self.verifier("On-BadSignature reject")
        srv = self.mxgate(v.milter)
        final = self.session(srv.port, msg)
        self.assertEqual(final.text, "550 5.7.0 bad DKIM signature data")
        self.assertIsNotNone(srv.wait_log(
            r"[0-9A-F]+: milter-reject: END-OF-MESSAGE from \S+\[127\.0\.0\.2\]: "
            r"5\.7\.0 bad DKIM signature data; from=<alice@example\.test> to=<bob@virt\.test> "
            r"proto=ESMTP helo=<client\.example\.net>"), "\n".join(srv.log_lines()[-20:]))
        self.assertEqual(harness.maildir_files(srv.vmail), [])
        ref = self.postfix(v.milter)
        self.assertEqual(self.session(ref.port, msg).text, final.text)
