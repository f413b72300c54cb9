"""LMTP delivery to a real Dovecot (dovecotfixture.py): transports (virtual_transport,
local_transport, mailbox_transport, transport_maps), the reply the client gets from the
server's answers (README "LMTP"), the lmtp(8) log lines, and the transports that are refused."""

import os
import re
import shutil
import tempfile
import time

import harness
from harness import MxTestCase
from dovecotfixture import Dovecot

BASE = dict(harness.BASE_MAIN)
MESSAGE = ("From: a@example.org\r\nTo: alice@virt.test\r\nSubject: lmtp test\r\n\r\n"
           "Hello through LMTP.\r\n.a line that starts with a dot\r\n..two dots\r\nlast\r\n")


class LmtpTest(MxTestCase):

    def dovecot(self, **kw):
        d = Dovecot(**kw)
        self.addCleanup(d.cleanup)
        try:
            d.start()
        except Exception as e:  # noqa: BLE001 - a fixture that does not start fails the test
            self.fail("dovecot did not start: %s" % e)
        return d

    def server(self, main=None, users=("alice",), files=None):
        """files: name -> content, written to a scratch folder that {dir} in main's values names."""
        tmp = tempfile.mkdtemp(prefix="mxgate-lmtp-")
        os.chmod(tmp, 0o755)
        self.addCleanup(shutil.rmtree, tmp, True)
        for name, content in (files or {}).items():
            with open(os.path.join(tmp, name), "w") as f:
                f.write(content)
            os.chmod(os.path.join(tmp, name), 0o644)
        params = dict(BASE)
        for k, v in (main or {}).items():
            params[k] = v.replace("{dir}", tmp)
        return self.start_server(main=params, virtual_users=list(users))

    def send(self, srv, rcpts, msg=MESSAGE, sender="a@example.org"):
        """The whole dialogue; returns the reply to the end of DATA (Reply)."""
        c = self.connect(srv)
        c.expect(220)
        c.cmd("EHLO client.example")
        r = c.cmd("MAIL FROM:<%s>" % sender)
        self.assertEqual(r.code, 250, str(r))
        for a in rcpts:
            r = c.cmd("RCPT TO:<%s>" % a)
            self.assertEqual(r.code, 250, "RCPT %s: %s" % (a, r))
        r = c.cmd("DATA")
        self.assertEqual(r.code, 354, str(r))
        c.send(msg + ".\r\n")
        r = c.read_reply(timeout=30)
        c.cmd("QUIT")
        return r

    def lmtp_lines(self, srv, qid):
        srv.expect_log(r"qmgr\[\d+\]: %s: removed|%s: delivery failed" % (qid, qid))
        return [l for l in srv.log_messages("lmtp") if l.startswith(qid + ": ")]

    # -- it lands in Dovecot's mailbox -------------------------------------------------------

    def test_unix_socket_delivery(self):
        d = self.dovecot()
        srv = self.server(main={"virtual_transport": "lmtp:unix:" + d.socket})
        r = self.send(srv, ["alice@virt.test"])
        self.assertEqual(r.code, 250, str(r))
        m = re.match(r"250 2\.0\.0 Ok: queued as ([0-9A-F]+)$", r.lines[0])
        self.assertTrue(m, r.lines)
        qid = m.group(1)
        msgs = d.messages("alice@virt.test")
        self.assertEqual(len(msgs), 1, d.log())
        stored = msgs[0]
        # Dovecot adds Return-Path and its own Received; ours comes next; the body is unstuffed
        self.assertTrue(stored.startswith(b"Return-Path: <a@example.org>\n"), stored[:200])
        self.assertIn(b"\n\tby mx.example.test (mxgate) with ESMTP id " + qid.encode(), stored)
        # SMTP unstuffed ".a" and "..two" to "a" and ".two"; LMTP stuffed ".two" again
        self.assertTrue(stored.endswith(b"\n\nHello through LMTP.\na line that starts with a dot\n"
                                        b".two dots\nlast\n"), stored)
        self.assertNotIn(b"\r", stored)
        self.assertEqual(harness.maildir_files(srv.vmail), [], "nothing in mxgate's Maildirs")
        line = srv.wait_log(r"lmtp\[\d+\]: %s: to=<alice@virt.test>" % qid)
        self.assertIsNotNone(line, srv.diagnostics())
        # Postfix 3.7's lmtp(8) line for the same delivery to the same Dovecot
        self.assertRegex(line, r"mxgate/lmtp\[\d+\]: %s: to=<alice@virt\.test>, "
                         r"relay=mx\.example\.test\[%s\], delay=[0-9.]+, "
                         r"delays=[0-9.]+/[0-9.]+/[0-9.]+/[0-9.]+, dsn=2\.0\.0, "
                         r"status=sent \(250 2\.0\.0 <alice@virt\.test> \S+ Saved\)$"
                         % (qid, re.escape(d.socket)))
        self.assertIsNotNone(srv.find_log(r"qmgr\[\d+\]: %s: removed" % qid))

    def test_inet_transport_maps(self):
        d = self.dovecot(users={"alice@virt.test": {}, "bob@virt.test": {}}, inet=True)
        tmap = "virt.test lmtp:inet:127.0.0.1:%d\nbob@virt.test lmtp:[127.0.0.1]:%d\n" % (
            d.port, d.port)
        srv = self.server(users=("alice", "bob"), files={"transport": tmap},
                          main={"transport_maps": "texthash:{dir}/transport"})
        r = self.send(srv, ["alice@virt.test", "bob@virt.test"])
        self.assertEqual(r.code, 250, str(r) + srv.diagnostics())
        qid = r.lines[0].split()[-1]
        self.assertEqual(len(d.messages("alice@virt.test")), 1)
        self.assertEqual(len(d.messages("bob@virt.test")), 1)
        lines = self.lmtp_lines(srv, qid)
        self.assertEqual(len(lines), 2, lines)
        for l in lines:
            self.assertRegex(l, r"relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, .*status=sent \(250 2\.0\.0 "
                             % d.port)

    # -- failures: the sender keeps the mail -------------------------------------------------

    def test_dovecot_down_451(self):
        d = self.dovecot()
        srv = self.server(main={"virtual_transport": "lmtp:unix:" + d.socket})
        d.stop()
        r = self.send(srv, ["alice@virt.test"])
        self.assertEqual(r.lines, ["451 4.3.0 Error: mailbox delivery failed, try again later"])
        self.assertEqual(d.messages("alice@virt.test"), [])
        line = srv.wait_log(r"lmtp\[\d+\]: \w+: to=<alice@virt.test>")
        self.assertRegex(line, r"relay=none, .*dsn=4\.4\.1, status=deferred \(connect to "
                         r"mx\.example\.test\[%s\]: (Connection refused|No such file or directory)\)"
                         % re.escape(d.socket))

    def test_inet_down_451(self):
        port = harness.free_port()
        srv = self.server(main={"virtual_transport": "lmtp:inet:127.0.0.1:%d" % port})
        r = self.send(srv, ["alice@virt.test"])
        self.assertEqual(r.code, 451, str(r))
        self.assertIsNotNone(srv.wait_log(r"status=deferred \(connect to 127\.0\.0\.1\[127\.0\.0\.1\]"
                                          r":%d: Connection refused\)" % port), srv.diagnostics())

    def test_silent_server_times_out_and_the_loop_goes_on(self):
        """An LMTP server that accepts and never speaks: lmtp_lhlo_timeout bounds the wait,
        the client gets 451, and meanwhile other clients are served (the wait is on a
        writers thread, not on the event loop)."""
        import socket
        import threading
        path = os.path.join(tempfile.mkdtemp(prefix="mxgate-lmtp-"), "silent")
        self.addCleanup(shutil.rmtree, os.path.dirname(path), True)
        os.chmod(os.path.dirname(path), 0o755)
        ls = socket.socket(socket.AF_UNIX)
        ls.bind(path)
        os.chmod(path, 0o666)
        ls.listen(4)
        self.addCleanup(ls.close)
        held = []
        threading.Thread(target=lambda: [held.append(ls.accept()[0]) for _ in range(2)],
                         daemon=True).start()
        self.addCleanup(lambda: [c.close() for c in held])
        srv = self.server(main={"virtual_transport": "lmtp:unix:" + path,
                                "lmtp_lhlo_timeout": "3s"})
        c = self.connect(srv)
        c.expect(220)
        c.cmd("EHLO client.example")
        c.cmd("MAIL FROM:<a@example.org>")
        c.cmd("RCPT TO:<alice@virt.test>")
        c.cmd("DATA")
        t0 = time.monotonic()
        c.send(MESSAGE + ".\r\n")
        # while the first waits, a second client is served at once
        c2 = self.connect(srv)
        c2.expect(220)
        r2 = c2.cmd("EHLO other.example")
        self.assertEqual(r2.code, 250)
        self.assertLess(time.monotonic() - t0, 2.0)
        r = c.read_reply(timeout=20)
        waited = time.monotonic() - t0
        self.assertEqual(r.lines, ["451 4.3.0 Error: mailbox delivery failed, try again later"])
        self.assertGreaterEqual(waited, 2.5)
        self.assertLess(waited, 10)
        self.assertIsNotNone(srv.wait_log(
            r"lmtp\[\d+\]: \w+: to=<alice@virt.test>, relay=mx\.example\.test\[%s\], .*"
            r"dsn=4\.4\.2, status=deferred \(conversation with mx\.example\.test\[%s\] timed "
            r"out while receiving the initial server greeting\)" % (re.escape(path), re.escape(path))),
            srv.diagnostics())

    def test_unknown_at_dovecot_refuses_all_nothing_sent(self):
        # mxgate's table knows carol, Dovecot does not: RCPT refused by Dovecot, no DATA sent
        d = self.dovecot()
        srv = self.server(users=("alice", "carol"),
                          main={"virtual_transport": "lmtp:unix:" + d.socket})
        r = self.send(srv, ["alice@virt.test", "carol@virt.test"])
        self.assertEqual(r.lines, ["550 5.1.1 <carol@virt.test>: Recipient address rejected: "
                                   "User doesn't exist: carol@virt.test"])
        self.assertEqual(d.messages("alice@virt.test"), [], "all or nothing: alice gets none")
        srv.expect_log(r"delivery failed")
        log = "\n".join(srv.log_messages("lmtp"))
        self.assertRegex(log, r"to=<carol@virt\.test>, .*dsn=5\.1\.1, status=bounced \(host "
                         r"mx\.example\.test\[.*\] said: 550 5\.1\.1 <carol@virt\.test> User doesn't "
                         r"exist: carol@virt\.test \(in reply to RCPT TO command\)\)")
        self.assertRegex(log, r"to=<alice@virt\.test>, .*status=bounced \(not sent")

    def test_quota_after_data_mixed_gives_451(self):
        d = self.dovecot(users={"alice@virt.test": {}, "bob@virt.test": {"quota": "1B"}})
        srv = self.server(users=("alice", "bob"),
                          main={"virtual_transport": "lmtp:unix:" + d.socket})
        r = self.send(srv, ["alice@virt.test", "bob@virt.test"])
        # alice has it, bob refused it (552): the sender retries; alice gets a duplicate then
        self.assertEqual(r.lines, ["451 4.3.0 Error: mailbox delivery failed, try again later"])
        self.assertEqual(len(d.messages("alice@virt.test")), 1)
        self.assertEqual(d.messages("bob@virt.test"), [])
        srv.expect_log(r"delivery failed")
        log = "\n".join(srv.log_messages("lmtp"))
        self.assertRegex(log, r"to=<alice@virt\.test>, .*status=sent \(250 2\.0\.0")
        self.assertRegex(log, r"to=<bob@virt\.test>, .*dsn=5\.2\.2, status=deferred \(host .* said: "
                         r"552 5\.2\.2 <bob@virt\.test> Quota exceeded \(mailbox for user is full\) "
                         r"\(in reply to end of DATA command\)\)")

    def test_quota_only_recipient_5xx(self):
        d = self.dovecot(users={"bob@virt.test": {"quota": "1B"}})
        srv = self.server(users=("bob",), main={"virtual_transport": "lmtp:unix:" + d.socket})
        r = self.send(srv, ["bob@virt.test"])
        self.assertEqual(r.lines, ["552 5.2.2 <bob@virt.test>: Recipient address rejected: "
                                   "Quota exceeded (mailbox for user is full)"])

    def test_quota_tempfail_451(self):
        d = self.dovecot(users={"bob@virt.test": {"quota": "1B"}}, quota_tempfail=True)
        srv = self.server(users=("bob",), main={"virtual_transport": "lmtp:unix:" + d.socket})
        r = self.send(srv, ["bob@virt.test"])
        self.assertEqual(r.code, 451, str(r))
        self.assertEqual(d.messages("bob@virt.test"), [])

    # -- Maildir and LMTP in one message -----------------------------------------------------

    def test_mixed_maildir_and_lmtp(self):
        d = self.dovecot(users={"bob@virt.test": {}})
        srv = self.server(users=("alice", "bob"), files={"transport": "bob@virt.test lmtp:unix:%s\n"
                                                         % d.socket},
                          main={"transport_maps": "texthash:{dir}/transport"})
        r = self.send(srv, ["alice@virt.test", "bob@virt.test"])
        self.assertEqual(r.code, 250, str(r) + srv.diagnostics())
        self.assertEqual(len(harness.maildir(srv.vmail, "alice")["new"]), 1)
        self.assertEqual(len(d.messages("bob@virt.test")), 1)
        self.assertIsNotNone(srv.wait_log(r"virtual\[\d+\]: \w+: to=<alice@virt.test>, relay=virtual"))
        # Dovecot down: the Maildir copy is rolled back too
        d.stop()
        r = self.send(srv, ["alice@virt.test", "bob@virt.test"])
        self.assertEqual(r.code, 451, str(r))
        self.assertEqual(len(harness.maildir(srv.vmail, "alice")["new"]), 1, "no second copy")
        self.assertEqual(harness.maildir(srv.vmail, "alice")["tmp"], [])

    # -- local domains -----------------------------------------------------------------------

    def test_local_transport_lmtp(self):
        d = self.dovecot(users={"alice@local.test": {}})
        srv = self.server(files={"local": "alice x\n", "aliases": "info alice\n"},
                          main={"local_transport": "lmtp:unix:" + d.socket,
                                "local_recipient_maps": "texthash:{dir}/local",
                                "alias_maps": "texthash:{dir}/aliases"})
        r = self.send(srv, ["alice@local.test"])
        self.assertEqual(r.code, 250, str(r) + srv.diagnostics())
        self.assertEqual(len(d.messages("alice@local.test")), 1)
        # local(8) does not run: no alias expansion, and local_recipient_maps decides
        c = self.connect(srv)
        c.expect(220)
        c.cmd("HELO client.example")
        c.cmd("MAIL FROM:<a@example.org>")
        r = c.cmd("RCPT TO:<info@local.test>")
        self.assertEqual(r.code, 550, str(r))

    def test_mailbox_transport_after_aliases(self):
        d = self.dovecot(users={"alice@local.test": {}})
        srv = self.server(files={"local": "alice x\ninfo x\n", "aliases": "info alice\n"},
                          main={"mailbox_transport": "lmtp:unix:" + d.socket,
                                "myorigin": "local.test",
                                "local_recipient_maps": "texthash:{dir}/local",
                                "alias_maps": "texthash:{dir}/aliases"})
        r = self.send(srv, ["info@local.test"])
        self.assertEqual(r.code, 250, str(r) + srv.diagnostics())
        self.assertEqual(len(d.messages("alice@local.test")), 1)
        line = srv.wait_log(r"lmtp\[\d+\]: \w+: to=<alice@local.test>, orig_to=<info@local.test>")
        self.assertIsNotNone(line, srv.diagnostics())

    def test_local_alias_forward_to_lmtp_keeps_trace(self):
        # info@local.test -> alice@virt.test: local(8) forwards, adding its Delivered-To
        d = self.dovecot(users={"alice@virt.test": {}})
        srv = self.server(files={"local": "info x\n", "aliases": "info alice@virt.test\n"},
                          main={"virtual_transport": "lmtp:unix:" + d.socket,
                                "local_recipient_maps": "texthash:{dir}/local",
                                "alias_maps": "texthash:{dir}/aliases"})
        r = self.send(srv, ["info@local.test"])
        self.assertEqual(r.code, 250, str(r) + srv.diagnostics())
        msgs = d.messages("alice@virt.test")
        self.assertEqual(len(msgs), 1)
        head = msgs[0].split(b"\n\n", 1)[0]
        self.assertRegex(head, rb"\nReceived: by mx\.example\.test \(mxgate\)\n\tid \w+; [^\n]+\n"
                         rb"Delivered-To: info@local\.test\nReceived: from client\.example")

    # -- what is refused, and the built-in error: and discard: -------------------------------

    def test_error_and_discard_transports(self):
        tmap = ("alice@virt.test error:5.7.1 mailbox closed\n"
                "bob@virt.test discard:silently\n")
        srv = self.server(users=("alice", "bob"), files={"transport": tmap},
                          main={"transport_maps": "texthash:{dir}/transport"})
        c = self.connect(srv)
        c.expect(220)
        c.cmd("HELO client.example")
        c.cmd("MAIL FROM:<a@example.org>")
        r = c.cmd("RCPT TO:<alice@virt.test>")
        self.assertEqual(r.lines, ["550 5.7.1 <alice@virt.test>: Recipient address rejected: "
                                   "mailbox closed"])
        c.cmd("QUIT")
        r = self.send(srv, ["bob@virt.test"])
        self.assertEqual(r.code, 250, str(r))
        self.assertEqual(harness.maildir_files(srv.vmail), [])
        self.assertIsNotNone(srv.wait_log(r"discard\[\d+\]: \w+: to=<bob@virt.test>, relay=none, "
                                          r"delay=[0-9.]+, delays=\S+, dsn=2\.0\.0, "
                                          r"status=sent \(silently\)"), srv.diagnostics())

    def test_unimplemented_transport_entry_tempfails(self):
        srv = self.server(files={"transport": "virt.test smtp:[192.0.2.1]\n"},
                          main={"transport_maps": "texthash:{dir}/transport"})
        c = self.connect(srv)
        c.expect(220)
        c.cmd("HELO client.example")
        c.cmd("MAIL FROM:<a@example.org>")
        r = c.cmd("RCPT TO:<alice@virt.test>")
        self.assertEqual(r.lines, ["451 4.3.5 Server configuration error"])
        self.assertIsNotNone(srv.wait_log(r"transport_maps entry for alice@virt.test: transport "
                                          r"\"smtp:\[192.0.2.1\]\": mxgate never relays"),
                             srv.diagnostics())
        # `check` reads the text behind the table and names the entry: an error
        rc, out, err = self.mxgate("check", "-c", srv.dir)
        self.assertEqual(rc, 1, out + err)
        self.assertRegex(err, r"error: /tmp/mxgate-lmtp-\w+/transport, line 1: transport_maps: "
                         r"virt\.test: transport \"smtp:\[192\.0\.2\.1\]\": mxgate never relays")

    def test_check_refuses_transports(self):
        for param, value in (("virtual_transport", "smtp:[192.0.2.1]"),
                             ("local_transport", "dovecot"),
                             ("mailbox_transport", "virtual"),
                             ("virtual_transport", "lmtp:inet:"),
                             ("virtual_transport", "local")):
            d = harness.Server(main=dict(BASE, **{param: value}), virtual_users=["alice"])
            self.addCleanup(d.cleanup)
            rc, out, err = self.mxgate("check", "-c", d.dir)
            self.assertEqual(rc, 1, "%s = %s: %s %s" % (param, value, out, err))
            self.assertIn(param, out + err)
            self.assertIn(value, out + err)
            self.assertRegex(out + err, r"main\.cf, line \d+: %s: " % param)
        # and run refuses to start
        d = harness.Server(main=dict(BASE, virtual_transport="relay:[192.0.2.1]"),
                           virtual_users=["alice"])
        self.addCleanup(d.cleanup)
        rc, out, err = self.mxgate("run", "-c", d.dir)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("virtual_transport", err)


class LmtpAsPostfixTest(MxTestCase):
    """Postfix 3.7 and mxgate delivering through lmtp to the same Dovecot, live: the same
    lmtp(8) log line (queue id, delays and Dovecot's session id normalized), and for the
    message that Dovecot takes, the same 250 to the client."""

    def normalize(self, line, qid):
        line = line.replace(qid, "QID")
        line = re.sub(r"delay=[0-9.]+", "delay=D", line)
        line = re.sub(r"delays=[0-9./]+", "delays=D", line)
        line = re.sub(r"(<[^>]+> )\S+( Saved)", r"\1SID\2", line)
        return line

    def deliver(self, port, rcpt):
        with harness.Client(port, timeout=30) as c:
            c.read_reply()
            c.cmd("EHLO client.example")
            c.cmd("MAIL FROM:<a@example.org>")
            c.cmd("RCPT TO:<%s>" % rcpt)
            c.cmd("DATA")
            c.send(MESSAGE + ".\r\n")
            r = c.read_reply(timeout=30)
            c.cmd("QUIT")
        return r

    def postfix_line(self, ref, qid, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with open(os.path.join(ref.dir, "maillog"), errors="replace") as f:
                for line in f:
                    if "/lmtp[" in line and qid + ": to=" in line:
                        return line.rstrip("\n")
            time.sleep(0.1)
        self.fail("no lmtp line for %s from Postfix" % qid)

    def test_failure_lines_as_postfix(self):
        """Over quota (552 after the dot) and Dovecot down: Postfix's bounced and deferred
        lines, and mxgate's, for the same answers (the replies to the client differ by
        design: Postfix has queued the message)."""
        import postfixref
        d = Dovecot(users={"bob@virt.test": {"quota": "1B"}})
        self.addCleanup(d.cleanup)
        d.start()
        vmap = os.path.join(d.dir, "vmailbox")
        with open(vmap, "w") as f:
            f.write("bob@virt.test bob/\n")
        params = dict(BASE, myhostname="mx.example.test", virtual_mailbox_domains="virt.test",
                      virtual_mailbox_maps="texthash:" + vmap,
                      virtual_transport="lmtp:unix:" + d.socket)
        ref = postfixref.Reference("lmtp")
        self.addCleanup(ref.stop)
        ref.start(params)
        srv = self.start_server(main=dict(BASE, virtual_transport="lmtp:unix:" + d.socket),
                                virtual_users=["bob"])
        for phase in ("quota", "down"):
            if phase == "down":
                d.stop()
            r = self.deliver(ref.port, "bob@virt.test")
            self.assertEqual(r.code, 250, str(r))
            pqid = r.lines[0].split()[-1]
            pline = self.postfix_line(ref, pqid)
            r = self.deliver(srv.port, "bob@virt.test")
            self.assertEqual(r.code, 552 if phase == "quota" else 451, str(r))
            mline = srv.wait_log(r"lmtp\[\d+\]: \w+: to=<bob@virt.test>.*status=%s"
                                 % ("bounced" if phase == "quota" else "deferred"))
            self.assertIsNotNone(mline, srv.diagnostics())
            mqid = re.search(r": (\w+): to=", mline).group(1)
            self.assertEqual(self.normalize(mline[mline.index(mqid):], mqid),
                             self.normalize(pline[pline.index(pqid):], pqid),
                             "Postfix: %s\nmxgate:  %s" % (pline, mline))
        self.assertEqual(d.messages("bob@virt.test"), [])

    def test_log_line_as_postfix(self):
        import postfixref
        d = Dovecot(users={"alice@virt.test": {}})
        self.addCleanup(d.cleanup)
        d.start()
        vmap = os.path.join(d.dir, "vmailbox")
        with open(vmap, "w") as f:
            f.write("alice@virt.test alice/\n")
        params = dict(BASE, myhostname="mx.example.test", virtual_mailbox_domains="virt.test",
                      virtual_mailbox_maps="texthash:" + vmap,
                      virtual_transport="lmtp:unix:" + d.socket)
        ref = postfixref.Reference("lmtp")
        self.addCleanup(ref.stop)
        ref.start(params)
        r = self.deliver(ref.port, "alice@virt.test")
        self.assertEqual(r.code, 250, str(r))
        pqid = r.lines[0].split()[-1]
        deadline = time.time() + 20
        pline = None
        while time.time() < deadline and pline is None:
            with open(os.path.join(ref.dir, "maillog"), errors="replace") as f:
                for line in f:
                    if "/lmtp[" in line and pqid + ": to=" in line:
                        pline = line.rstrip("\n")
            time.sleep(0.1)
        self.assertIsNotNone(pline, "no lmtp line from Postfix")
        self.assertEqual(len(d.messages("alice@virt.test")), 1)

        srv = self.start_server(main=dict(BASE, virtual_transport="lmtp:unix:" + d.socket),
                                virtual_users=["alice"])
        r = self.deliver(srv.port, "alice@virt.test")
        self.assertEqual(r.code, 250, str(r))
        mqid = r.lines[0].split()[-1]
        mline = srv.wait_log(r"lmtp\[\d+\]: %s: to=" % mqid)
        self.assertIsNotNone(mline, srv.diagnostics())
        self.assertEqual(len(d.messages("alice@virt.test")), 2)
        ptail = pline[pline.index(pqid):]
        mtail = mline[mline.index(mqid):]
        self.assertEqual(self.normalize(mtail, mqid), self.normalize(ptail, pqid),
                         "Postfix: %s\nmxgate:  %s" % (pline, mline))


class TransportRcptAsPostfixTest(MxTestCase):
    """error: and retry: transports answer at RCPT as Postfix's smtpd does (live)."""
    maxDiff = None

    def test_error_retry_as_postfix(self):
        import postfixref
        tmp = tempfile.mkdtemp(prefix="mxgate-lmtp-")
        self.addCleanup(shutil.rmtree, tmp, True)
        os.chmod(tmp, 0o755)
        files = {"vmailbox": "alice@virt.test alice/\nbob@virt.test bob/\ncarol@virt.test c/\n"
                             "dave@virt.test d/\nempty@virt.test e/\n",
                 "transport": "alice@virt.test error:mailbox closed\n"
                              "bob@virt.test error:5.7.1 go away\n"
                              "carol@virt.test retry:4.2.0 try later\n"
                              "lmtp.virt.test lmtp:unix:/nonexistent\n"
                              ".sub.virt.test error:sub domains closed\n"
                              "x@other.test error:not ours\n"
                              "empty@virt.test error:\n"
                              "root@local.test error:\n"}
        for name, content in files.items():
            with open(os.path.join(tmp, name), "w") as f:
                f.write(content)
            os.chmod(os.path.join(tmp, name), 0o644)
        params = dict(BASE, myhostname="mx.example.test",
                      virtual_mailbox_domains="virt.test, sub.virt.test",
                      virtual_mailbox_maps="texthash:%s/vmailbox" % tmp,
                      transport_maps="texthash:%s/transport" % tmp)
        ref = postfixref.Reference("lmtp-rcpt")
        self.addCleanup(ref.stop)
        ref.start(params)
        srv = self.start_server(main=params, virtual_users=[])
        rcpts = ["alice@virt.test", "bob@virt.test", "carol@virt.test", "dave@virt.test",
                 "nobody@virt.test", "y@sub.virt.test", "x@other.test", "empty@virt.test",
                 "root@local.test"]
        want = postfixref.rcpt_replies(ref.port, rcpts)
        got = postfixref.rcpt_replies(srv.port, rcpts)
        self.assertEqual(got, want)
        self.assertIn("RCPT alice@virt.test: 550 5.1.1 <alice@virt.test>: Recipient address "
                      "rejected: mailbox closed", got)


class LmtpConfTest(MxTestCase):

    def test_no_mailbox_base_needed_with_lmtp(self):
        for transport, want in (("lmtp:unix:/run/dovecot/lmtp", 0), ("virtual", 1)):
            d = harness.Server(main=dict(BASE, virtual_transport=transport,
                                         virtual_mailbox_base=""), virtual_users=["alice"])
            self.addCleanup(d.cleanup)
            rc, out, err = self.mxgate("check", "-c", d.dir)
            self.assertEqual(rc, want, "%s: %s %s" % (transport, out, err))
