"""test_cleanup: what cleanup(8) does, as a user sees it: replies, log lines, stored files.

The byte-for-byte comparison with Postfix is test_stored_bytes.py (the corpus) and the compat
sessions header-checks-actions, body-checks-actions and cleanup-hops; here the parts that
need mxgate alone: the log lines of the checks, the Received: header's forms, X-Original-To,
the mail forwarding loop on Delivered-To (a deliberate difference: 4xx instead of a bounce),
and the settings that `mxgate check` refuses.
"""

import os
import subprocess
import tempfile
import unittest

import harness


def send(port, rcpts, content, helo="client.example", mail="MAIL FROM:<s@client.example>"):
    """One transaction (content already dot-stuffed, LF line ends); returns the DATA reply."""
    with harness.Client(port, timeout=30) as c:
        c.read_reply()
        c.cmd("EHLO " + helo if helo else "NOOP")
        c.cmd(mail)
        for r in rcpts:
            c.cmd("RCPT TO:<%s>" % r)
        c.cmd("DATA")
        c.send(content.replace("\n", "\r\n").encode() + b".\r\n")
        r = c.read_reply(timeout=30)
        c.cmd("QUIT")
        return r.text


class CleanupTest(harness.MxTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="mxgate-cleanup-")
        self.addCleanup(subprocess.call, ["rm", "-rf", self.tmp])

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)
        os.chmod(self.tmp, 0o755)
        return path

    def server(self, **main):
        p = dict(harness.BASE_MAIN)
        p.update(main)
        return self.start_server(main=p, virtual_users=["alice", "bob"])

    def stored(self, srv, user):
        files = harness.maildir(srv.vmail, user)["new"]
        self.assertEqual(len(files), 1, files)
        with open(files[0], "rb") as f:
            return f.read().decode("utf-8", "replace")

    def test_checks_log_lines(self):
        hc = self.write("hc", "/^Subject: .*bad/ REJECT go away\n/^Subject: .*look/ WARN seen\n")
        bc = self.write("bc", "/^secret$/ REJECT 5.7.9 no secrets\n")
        srv = self.server(header_checks="regexp:" + hc, body_checks="pcre:" + bc)
        self.assertEqual(send(srv.port, ["alice@virt.test"], "Subject: bad one\n\nx\n"),
                         "550 5.7.1 go away")
        srv.expect_log(r"mxgate/cleanup\[\d+\]: [0-9A-F]+: reject: header Subject: bad one from "
                     r"localhost\[127\.0\.0\.1\]; from=<s@client\.example> to=<alice@virt\.test> "
                     r"proto=ESMTP helo=<client\.example>: 5\.7\.1 go away$")
        self.assertIsNotNone(srv.find_log(r"mxgate/cleanup\[\d+\]: [0-9A-F]+: reject: header "
                                          r"Subject: bad one from localhost"))
        self.assertEqual(send(srv.port, ["alice@virt.test"], "Subject: x\n\nsecret\n"),
                         "550 5.7.9 no secrets")
        self.assertIsNotNone(srv.wait_log(r"mxgate/cleanup\[\d+\]: [0-9A-F]+: reject: body "
                                          r"secret from localhost\[127\.0\.0\.1\]; "
                                          r"from=<s@client\.example> to=<alice@virt\.test> "
                                          r"proto=ESMTP helo=<client\.example>: 5\.7\.9 no "
                                          r"secrets$"))
        r = send(srv.port, ["alice@virt.test"], "Subject: look here\n\nfine\n")
        self.assertTrue(r.startswith("250 2.0.0 Ok: queued as "), r)
        self.assertIsNotNone(srv.wait_log(r"mxgate/cleanup\[\d+\]: [0-9A-F]+: warning: header "
                                          r"Subject: look here from localhost\[127\.0\.0\.1\]; "
                                          r".*: seen$"))
        self.assertIn("\nSubject: look here\n", self.stored(srv, "alice"))

    def test_action_without_a_queue_tempfails(self):
        # a match on HOLD (or FILTER, REDIRECT, BCC) at run time, from a table that the
        # check could not read for actions (a table file with one is refused at start):
        # 451, never a silent accept
        srv = self.server(body_checks="static:HOLD")
        self.assertEqual(send(srv.port, ["alice@virt.test"], "Subject: hold me\n\nx\n"),
                         "451 4.3.0 Error: queue file write error")
        self.assertIsNotNone(srv.wait_log(r"HOLD action of body_checks is not implemented "
                                          r"by mxgate"))
        self.assertEqual(harness.maildir(srv.vmail, "alice")["new"], [])

    def test_check_refuses(self):
        hc = self.write("hc", "/^Subject: a/ REJECT\n")
        held = self.write("held", "# comment\n/^Subject: a/ REJECT\n/^Subject: b/i  hold\n")
        for params, want in (
                ({"nested_header_checks": "cdb:" + hc}, "nested_header_checks"),
                ({"header_checks": "cdb:" + hc, "mime_header_checks": "",
                  "nested_header_checks": ""}, "header_checks"),
                ({"local_header_rewrite_clients": "check_address_map hash:/x"},
                 "local_header_rewrite_clients"),
                ({"body_checks": "pcre:" + held},
                 "body_checks: %s, line 3: HOLD is not implemented by mxgate, refused" % held)):
            p = dict(harness.BASE_MAIN, **params)
            srv = harness.Server(main=p, virtual_users=["alice"])
            self.addCleanup(srv.cleanup)
            r = subprocess.run([srv.binary, "check", "-c", srv.dir], capture_output=True,
                               text=True, timeout=30)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn(want, r.stdout + r.stderr)

    def test_received_and_original_recipient(self):
        srv = self.server()
        r = send(srv.port, ["alice@virt.test", "bob@virt.test"], "Subject: two\n\nx\n",
                 mail="MAIL FROM:<s@client.example> SMTPUTF8")
        self.assertTrue(r.startswith("250 "), r)
        text = self.stored(srv, "alice")
        lines = text.split("\n")
        self.assertEqual(lines[0], "Return-Path: <s@client.example>")
        self.assertEqual(lines[1], "X-Original-To: alice@virt.test")
        self.assertEqual(lines[2], "Delivered-To: alice@virt.test")
        self.assertEqual(lines[3], "Received: from client.example (localhost [127.0.0.1])")
        self.assertRegex(lines[4], r"^\tby mx\.example\.test \(mxgate\) with UTF8SMTP id "
                                   r"[0-9A-F]+;$")
        self.assertRegex(lines[5], r"^\t\w{3}, [ \d]\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4} "
                                   r"\(\w+\)$")
        # the client is 127.0.0.1, an inet_interfaces address: Message-Id, Date and From added
        self.assertRegex(text, r"\nSubject: two\nMessage-Id: <\d{14}\.[0-9A-F]+@mx\.example"
                               r"\.test>\nDate: [^\n]+\nFrom: s@client\.example\n\nx\n$")
        # one RCPT: "for <addr>"; no HELO: the name stands for it
        srv2 = self.server(enable_original_recipient="no", local_header_rewrite_clients="")
        r = send(srv2.port, ["bob@virt.test"], "Subject: one\n\nx\n", helo=None)
        self.assertTrue(r.startswith("250 "), r)
        text = self.stored(srv2, "bob")
        self.assertNotIn("X-Original-To", text)
        self.assertRegex(text, r"\nReceived: from localhost \(localhost \[127\.0\.0\.1\]\)\n"
                               r"\tby mx\.example\.test \(mxgate\) with SMTP id [0-9A-F]+\n"
                               r"\tfor <bob@virt\.test>; [^\n]+\nSubject: one\n\nx\n$")
        self.assertIsNotNone(srv2.wait_log(r"mxgate/qmgr\[\d+\]: [0-9A-F]+: "
                                           r"from=<s@client\.example>, size=\d+, nrcpt=1"))

    def test_mail_forwarding_loop(self):
        aliases = self.write("aliases", "fwd: alice@virt.test\n")
        subprocess.run(["postalias", "hash:" + aliases], check=True, timeout=60)
        os.chmod(aliases + ".db", 0o644)
        srv = self.server(alias_maps="hash:" + aliases)
        r = send(srv.port, ["fwd@local.test"], "Delivered-To: FWD@local.test\nSubject: l\n\nx\n")
        self.assertEqual(r, "451 4.4.6 Error: mail forwarding loop for fwd@local.test")
        self.assertIsNotNone(srv.wait_log(r"mxgate/local\[\d+\]: [0-9A-F]+: "
                                          r"to=<fwd@local\.test>, orig_to=<fwd@local\.test>, "
                                          r"relay=local, dsn=4\.4\.6, status=deferred \(mail "
                                          r"forwarding loop for fwd@local\.test\)"))
        self.assertEqual(harness.maildir(srv.vmail, "alice")["new"], [])
        r = send(srv.port, ["fwd@local.test"], "Delivered-To: other@local.test\nSubject: l\n\nx\n")
        self.assertTrue(r.startswith("250 "), r)
        self.assertIn("\nDelivered-To: fwd@local.test\n", self.stored(srv, "alice"))


if __name__ == "__main__":
    unittest.main()
