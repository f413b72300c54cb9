"""Access restrictions seen from real clients (smtplib) against build/mxgate, and the
configurations mxgate refuses out loud.

What Postfix does is in the compat sessions (tests/compat/sessions/restrict-*, access-*): the
same main.cf to Postfix 3.7 and to mxgate, replies and log lines diffed.  These tests cover what
a compat session cannot: tables built by postmap (looked up on a pool thread), the things mxgate
does differently on purpose (HOLD and friends, relaying), the log lines of DISCARD and WARN,
the stored copy of a PREPEND, that a "sleep" costs a timer and not a thread, and that `check`
names and `run` refuses every restriction mxgate does not implement.
"""

import os
import shutil
import smtplib
import subprocess
import tempfile
import threading
import time
import unittest

import harness



class RestrictionTest(harness.MxTestCase):
    def setUp(self):
        self.tdir = tempfile.mkdtemp(prefix="mxgate-acl-")
        os.chmod(self.tdir, 0o755)
        self.addCleanup(shutil.rmtree, self.tdir, True)

    def table(self, name, text, postmap=None):
        path = os.path.join(self.tdir, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)
        if postmap:
            subprocess.run(["postmap", "%s:%s" % (postmap, path)], check=True)
            for ext in (".db", ".cdb"):
                if os.path.exists(path + ext):
                    os.chmod(path + ext, 0o644)
        return path

    def server(self, main):
        return self.start_server(main=main, virtual_users=["alice", "bob"])

    def send(self, srv, sender, rcpts, body="Subject: t\r\n\r\nhello\r\n", helo="client.example"):
        """One transaction with smtplib: the RCPT replies, then DATA's (or None)."""
        s = smtplib.SMTP("127.0.0.1", srv.port, local_hostname=helo, timeout=30)
        try:
            s.ehlo()
            s.mail(sender)
            replies = [s.rcpt(r) for r in rcpts]
            data = s.data(body) if any(code == 250 for code, _ in replies) else None
            s.quit()
        finally:
            s.close()
        return [(c, m.decode()) for c, m in replies], data

    def maildir_files(self, srv, user):
        d = os.path.join(srv.vmail, user, "new")
        return [os.path.join(d, n) for n in sorted(os.listdir(d))] if os.path.isdir(d) else []

    def test_hash_and_cdb_access_tables(self):
        """Indexed tables go to the lookups pool; their values decide as Postfix's do."""
        h = self.table("clients", "127.0.0.1 REJECT You are not welcome\n", postmap="hash")
        c = self.table("senders", "spam.example 550 5.7.9 Go away\n"
                       "ok@spam.example OK\n", postmap="cdb")
        srv = self.server({"smtpd_sender_restrictions": "check_sender_access cdb:" + c,
                           "smtpd_restriction_classes": "from_localhost",
                           "from_localhost": "check_client_access hash:" + h})
        r, _ = self.send(srv, "x@spam.example", ["alice@virt.test"])
        self.assertEqual(r, [(550, "5.7.9 <x@spam.example>: Sender address rejected: Go away")])
        r, data = self.send(srv, "ok@spam.example", ["alice@virt.test"])
        self.assertEqual(r, [(250, "2.1.5 Ok")])
        self.assertEqual(data[0], 250)
        srv.expect_log(r"NOQUEUE: reject: RCPT from localhost\[127\.0\.0\.1\]: 550 5\.7\.9 "
                     r"<x@spam\.example>: Sender address rejected: Go away; "
                     r"from=<x@spam\.example> to=<alice@virt\.test> proto=ESMTP "
                     r"helo=<client\.example>")

        srv2 = self.server({"smtpd_recipient_restrictions": "check_client_access hash:%s, "
                            "reject_unauth_destination" % h})
        r, _ = self.send(srv2, "a@example.org", ["alice@virt.test"])
        self.assertEqual(r, [(554, "5.7.1 <localhost[127.0.0.1]>: Client host rejected: "
                              "You are not welcome")])

    def test_actions_that_need_a_queue_are_refused(self):
        """HOLD, FILTER, REDIRECT, BCC: a 451 and a warning, never a silent 250."""
        t = self.table("senders", "h@x.example HOLD\nf@x.example FILTER smtp:[127.0.0.1]:10025\n"
                       "r@x.example REDIRECT other@virt.test\nb@x.example BCC bob@virt.test\n")
        srv = self.server({"smtpd_sender_restrictions": "check_sender_access texthash:" + t})
        for action, sender in (("HOLD", "h@x.example"), ("FILTER", "f@x.example"),
                               ("REDIRECT", "r@x.example"), ("BCC", "b@x.example")):
            r, _ = self.send(srv, sender, ["alice@virt.test"])
            self.assertEqual(r, [(451, "4.3.5 Server configuration error")], action)
            srv.expect_log(r"warning: access table texthash:%s entry \"%s\": action %s needs a queue "
                         r"or relaying, which mxgate does not have; refusing the request"
                         % (t, sender, action))
        self.assertEqual(self.maildir_files(srv, "alice"), [])

    def test_discard_prepend_warn(self):
        t = self.table("senders", "d@x.example DISCARD spam trap\n"
                       "p@x.example PREPEND X-Screened: yes\n"
                       "w@x.example WARN watch this one\n")
        srv = self.server({"smtpd_sender_restrictions": "check_sender_access texthash:" + t})
        # DISCARD: the client hears 250 for everything, nothing is stored
        r, data = self.send(srv, "d@x.example", ["alice@virt.test", "x@elsewhere.example"])
        self.assertEqual(r, [(250, "2.1.5 Ok"), (250, "2.1.5 Ok")])
        self.assertEqual(data[0], 250)
        srv.expect_log(r"NOQUEUE: discard: RCPT from localhost\[127\.0\.0\.1\]: <d@x\.example>: "
                     r"Sender address spam trap; from=<d@x\.example> to=<alice@virt\.test>")
        self.assertEqual(self.maildir_files(srv, "alice"), [])
        # PREPEND: above our Received: header in the stored copy
        r, data = self.send(srv, "p@x.example", ["alice@virt.test"])
        self.assertEqual(data[0], 250)
        files = self.maildir_files(srv, "alice")
        self.assertEqual(len(files), 1)
        with open(files[0], "rb") as f:
            head = f.read().split(b"\n")
        # (Return-Path, X-Original-To and Delivered-To first, as virtual(8) writes them)
        self.assertEqual(head[3], b"X-Screened: yes", head[:5])
        self.assertTrue(head[4].startswith(b"Received: from client.example"), head[:5])
        # WARN: logged, accepted
        r, _ = self.send(srv, "w@x.example", ["bob@virt.test"])
        self.assertEqual(r, [(250, "2.1.5 Ok")])
        srv.expect_log(r"NOQUEUE: warn: RCPT from localhost\[127\.0\.0\.1\]: watch this one; "
                     r"from=<w@x\.example> to=<bob@virt\.test> proto=ESMTP helo=<client\.example>")

    def test_never_relay(self):
        """permit_mynetworks would let 127.0.0.1 relay: mxgate refuses at that point."""
        srv = self.server({"mynetworks": "127.0.0.0/8"})
        r, data = self.send(srv, "a@example.org", ["alice@virt.test", "x@elsewhere.example"])
        self.assertEqual(r, [(250, "2.1.5 Ok"),
                             (554, "5.7.1 <x@elsewhere.example>: Relay access denied")])
        self.assertEqual(data[0], 250)
        srv.expect_log(r": reject: RCPT from localhost\[127\.0\.0\.1\]: 554 5\.7\.1 "
                     r"<x@elsewhere\.example>: Relay access denied; from=<a@example\.org> "
                     r"to=<x@elsewhere\.example>")

    def test_client_refused_before_the_banner(self):
        srv = self.server({"smtpd_delay_reject": "no", "smtpd_client_restrictions": "reject"})
        with self.assertRaises(smtplib.SMTPConnectError) as cm:
            smtplib.SMTP("127.0.0.1", srv.port, timeout=10)
        self.assertEqual(cm.exception.smtp_code, 554)
        self.assertIn(b"Client host rejected: Access denied", cm.exception.smtp_error)

    def test_sleep_costs_a_timer_not_a_thread(self):
        """40 clients sleep 3 s in their restrictions; the lookups pool has 4 threads, yet a
        client whose restrictions do not sleep is answered at once meanwhile."""
        t = self.table("senders", "slow@x.example sleep 3\n")
        h = self.table("fast", "fast@x.example OK\n", postmap="hash")
        srv = self.server({"smtpd_sender_restrictions": "check_sender_access hash:%s, "
                           "check_sender_access texthash:%s" % (h, t)})
        sleepers, done = [], []

        def slow():
            c = harness.Client(srv.port, timeout=30)
            try:
                c.expect(220)
                c.cmd("HELO c.example")
                c.cmd("MAIL FROM:<slow@x.example>")
                t0 = time.monotonic()
                r = c.cmd("RCPT TO:<alice@virt.test>", timeout=30)
                done.append((r.code, time.monotonic() - t0))
            finally:
                c.close()

        for _ in range(40):
            th = threading.Thread(target=slow)
            th.start()
            sleepers.append(th)
        time.sleep(0.8)
        c = self.connect(srv)
        c.expect(220)
        c.cmd("HELO c.example")
        c.cmd("MAIL FROM:<fast@x.example>")
        t0 = time.monotonic()
        r = c.cmd("RCPT TO:<alice@virt.test>")
        fast = time.monotonic() - t0
        self.assertEqual(r.code, 250)
        self.assertLess(fast, 1.5, "the fast client waited %.2fs behind the sleepers" % fast)
        for th in sleepers:
            th.join(30)
        self.assertEqual(len(done), 40)
        for code, took in done:
            self.assertEqual(code, 250)
            self.assertGreaterEqual(took, 2.9)


class RefusedConfigTest(harness.MxTestCase):
    """Never silent: a restriction mxgate does not implement stops `run`, and `check` names it
    with the parameter and the file:line; all of them in one run."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="mxgate-acl-check-")
        os.chmod(self.dir, 0o755)
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.port = harness.free_port()

    def test_check_names_and_run_refuses(self):
        main = os.path.join(self.dir, "main.cf")
        master = os.path.join(self.dir, "master.cf")
        with open(main, "w") as f:
            f.write("myhostname = mx.example.test\n"                                      # 1
                    "maillog_file = %s/maillog\n" % self.dir +                            # 2
                    "maillog_file_prefixes = %s\n" % self.dir +                           # 3
                    "smtpd_recipient_restrictions = permit_mynetworks,\n"                 # 4
                    "    reject_rbl_client zen.test=127.0.0.[300], reject_unauth_destination\n"  # 5
                    "smtpd_restriction_classes = greylist\n"                              # 6
                    "greylist = check_policy_service { inet:127.0.0.1:10023, colour=red }\n"  # 7
                    "smtpd_helo_restrictions = permit_mx_backup, no_such_thing\n")  # 8
        with open(master, "w") as f:
            f.write("127.0.0.1:%d inet n - n - - smtpd -o smtpd_sender_restrictions="
                    "reject_unverified_sender\n" % self.port)
        rc, _, err = self.mxgate("check", "-c", self.dir)
        self.assertEqual(rc, 1, err)
        want = [
            "%s, line 1: smtpd_sender_restrictions: restriction reject_unverified_sender is not "
            "implemented by mxgate (mxgate sends no mail, so it cannot verify a sender "
            "address)" % master,
            "%s, line 4: smtpd_recipient_restrictions: restriction reject_rbl_client "
            "zen.test=127.0.0.[300]: bad RBL reply pattern \"127.0.0.[300]\"" % main,
            "%s, line 7: greylist: check_policy_service { inet:127.0.0.1:10023, colour=red }: "
            "unknown option: "
            "\"colour = red\"" % main,
            "%s, line 8: smtpd_helo_restrictions: restriction permit_mx_backup is "
            "not implemented by mxgate (mxgate never relays)" % main,
            "%s, line 8: smtpd_helo_restrictions: unknown smtpd restriction: \"no_such_thing\""
            % main,
        ]
        for w in want:
            self.assertIn("mxgate: error: " + w, err)
        rc, _, err = self.mxgate("run", "-c", self.dir)
        self.assertNotEqual(rc, 0, err)
        self.assertIn("mxgate: fatal: service 127.0.0.1:%d: greylist: check_policy_service "
                      "{ inet:127.0.0.1:10023, colour=red }: unknown option" % self.port, err)
        self.assertFalse(harness.port_listening(self.port))

    def test_postfix_start_checks(self):
        """What Postfix itself refuses to start with: an undefined class, no restriction that
        rejects by default (its fail_required())."""
        with open(os.path.join(self.dir, "main.cf"), "w") as f:
            f.write("smtpd_restriction_classes = a\n"
                    "smtpd_relay_restrictions = permit_mynetworks\n")
        rc, _, err = self.mxgate("check", "-c", self.dir)
        self.assertEqual(rc, 1, err)
        self.assertIn("smtpd_restriction_classes: restriction class `a' needs a definition", err)
        self.assertIn("in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, "
                      "specify at least one working instance of: reject_unauth_destination, "
                      "defer_unauth_destination, reject, defer, defer_if_permit or "
                      "check_relay_domains", err)


if __name__ == "__main__":
    unittest.main()
