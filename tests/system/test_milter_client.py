"""milter/milter_client through build/tests/miltertest (a whole conversation on a real loop:
connect, HELO, MAIL, RCPT, DATA, headers, body, end of message, QUIT): against a real rspamd
(GTUBE rejected with rspamd's reply, a clean message accepted with rspamd's headers, rspamd
down and milter_default_action), and against a scripted milter (milterfixture.ScriptedMilter,
written from the protocol's description) for every reply and change that rspamd does not send
on demand, the macros, the negotiation, the chain of several milters, timeouts and cancels.

These tests show what the session gets from the client, reply by reply, with Postfix 3.7's
reply texts and warnings; tests/system/test_milter_session.py tests the session hook
(smtpd_milters) itself, with the same milters."""

import os
import re
import shutil
import struct
import tempfile
import time
import unittest

import dnsfixture
import harness
import milterfixture as mf
from milterfixture import cstr, packet, u32

TEMPFAIL = "451 4.7.1 Service unavailable - try again later"


class RspamdMilter(mf.SharedRspamd, unittest.TestCase):
    def test_startup_bounded(self):
        # with hyperscan off and no network maps rspamd answers within seconds
        self.assertLess(self.rspamd.startup_seconds, 30)

    def test_gtube_rejected_with_rspamds_reply(self):
        r = mf.miltertest(self.rspamd.milter, mf.GTUBE)
        self.assertEqual(r.exit, 0, r.out + r.err)
        for ev in ("connect", "helo", "mail", "rcpt <rcpt@example.com>", "data"):
            self.assertEqual(r.replies[ev], "continue", r.out)
        self.assertEqual(r.replies["message"], "554 5.7.1 Gtube pattern")
        self.assertEqual(r.lines[-1], "quit")

    def test_clean_accepted_with_headers(self):
        r = mf.miltertest(self.rspamd.milter, mf.CLEAN)
        self.assertEqual(r.exit, 0, r.out + r.err)
        self.assertEqual(r.replies["message"], "continue", r.out)
        names = [e.split(":", 1)[0] for e in r.edits]
        self.assertIn("add_header X-Spamd-Result", names)
        self.assertIn("add_header X-Rspamd-Server", names)
        # the {i} macro (the queue id) reached rspamd and came back in its header
        self.assertIn("add_header X-Rspamd-Queue-Id: 4Xyz0123ABC (%s)" % self.rspamd.milter,
                      r.edits)
        # the stored copy (the view): the original headers, then rspamd's, folded as sent
        self.assertEqual(r.headers[0], "From: Alice <alice@example.org>")
        spamd = [h for h in r.headers if h.startswith("X-Spamd-Result: default: False [")]
        self.assertEqual(len(spamd), 1, r.headers)
        self.assertIn("\\n\tMIME_GOOD(-0.10)[text/plain]", spamd[0])
        self.assertEqual(r.body, ["Hi Bob,", "", "shall we have lunch on Thursday at noon?",
                                  "", "Alice"])
        # rspamd saw our client, HELO and envelope
        log = self.rspamd.log()
        self.assertIn("ip: 203.0.113.5, from: <sender@example.org>", log)

    def test_large_body_in_chunks(self):
        body = "".join("line %06d of a long message body, with some text on it\n" % i
                       for i in range(3000))
        r = mf.miltertest(self.rspamd.milter, mf.CLEAN.split("\n\n")[0] + "\n\n" + body)
        self.assertEqual(r.replies["message"], "continue", r.out + r.err)
        self.assertEqual(len(r.body), 3000)
        self.assertTrue(any(e.startswith("add_header X-Spamd-Result:") for e in r.edits))

    def postfix(self):
        import postfixref
        ref = postfixref.Reference("milter-rspamd")
        self.addCleanup(ref.stop)
        ref.start({"smtpd_milters": self.rspamd.milter, "myhostname": "mx.example.test",
                   "virtual_mailbox_domains": "example.com",
                   "virtual_mailbox_maps": "inline:{rcpt@example.com=example.com/rcpt/}"})
        return ref

    @staticmethod
    def postfix_session(ref, msg):
        with harness.Client(ref.port, timeout=60) as c:
            c.read_reply()
            c.cmd("HELO mail.example.net")
            c.cmd("MAIL FROM:<sender@example.org>")
            c.cmd("RCPT TO:<rcpt@example.com>")
            c.cmd("DATA")
            c.send(msg.replace("\n", "\r\n") + ".\r\n")
            final = c.read_reply(timeout=60).text
            c.cmd("QUIT")
        return final

    def test_same_as_postfix(self):
        if os.geteuid() != 0 or not os.path.exists("/usr/sbin/postfix"):
            self.skipTest("the Postfix reference needs root and Postfix")
        ref = self.postfix()
        # GTUBE: Postfix gives rspamd's reply, and so does the client
        pf = self.postfix_session(ref, mf.GTUBE)
        r = mf.miltertest(self.rspamd.milter, mf.GTUBE, client_addr="127.0.0.1",
                          client_name="localhost")
        self.assertEqual(pf, "554 5.7.1 Gtube pattern")
        self.assertEqual(r.replies["message"], pf)
        deadline = time.monotonic() + 10
        log = ""
        while time.monotonic() < deadline and "milter-reject" not in log:
            time.sleep(0.1)
            with open(os.path.join(ref.dir, "maillog"), errors="replace") as f:
                log = f.read()
        self.assertRegex(log, r"cleanup\[\d+\]: [0-9A-F]+: milter-reject: END-OF-MESSAGE from "
                         r"localhost\[127\.0\.0\.1\]: 5\.7\.1 Gtube pattern; "
                         r"from=<sender@example\.org> to=<rcpt@example\.com> proto=SMTP "
                         r"helo=<mail\.example\.net>")
        # a clean message: rspamd's headers, in the same order, in both stored copies
        pf = self.postfix_session(ref, mf.CLEAN)
        self.assertTrue(pf.startswith("250 2.0.0 Ok: queued as "), pf)
        box = os.path.join(ref.vmail, "example.com", "rcpt", "new")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (os.path.isdir(box) and os.listdir(box)):
            time.sleep(0.1)
        with open(os.path.join(box, os.listdir(box)[0])) as f:
            stored = f.read().split("\n\n", 1)[0]
        pf_names = [l.split(":", 1)[0] for l in stored.split("\n")
                    if l[:1] not in (" ", "\t") and l.split(":", 1)[0] not in
                    ("Return-Path", "Delivered-To", "Received", "X-Original-To")]
        r = mf.miltertest(self.rspamd.milter, mf.CLEAN, client_addr="127.0.0.1",
                          client_name="localhost")
        mx_names = [h.split(":", 1)[0] for h in r.headers]
        self.assertIn("X-Spamd-Result", mx_names)
        self.assertEqual(mx_names, pf_names)

    def test_rspamd_then_scripted_milter_chain(self):
        # the second milter sees rspamd's headers: each milter sees the message as changed
        s = mf.ScriptedMilter()
        try:
            r = mf.miltertest(self.rspamd.milter + ", " + s.milter, mf.CLEAN)
            self.assertEqual(r.replies["message"], "continue", r.out + r.err)
            hdrs = [d.split(b"\0")[0].decode() for c, d in s.received if c == "L"]
            self.assertIn("X-Spamd-Result", hdrs)
            self.assertEqual(hdrs[0], "From")
        finally:
            s.stop()

    def test_gtube_stops_the_chain(self):
        s = mf.ScriptedMilter()
        try:
            r = mf.miltertest(self.rspamd.milter + ", " + s.milter, mf.GTUBE)
            self.assertEqual(r.replies["message"], "554 5.7.1 Gtube pattern")
            # the second milter had the envelope but never the message
            ev = s.events()
            self.assertIn("T", ev)
            self.assertNotIn("L", ev)
            self.assertNotIn("E", ev)
        finally:
            s.stop()


class MilterDown(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="mxgate-milterdown-")
        self.milter = "unix:" + os.path.join(self.dir, "nobody.sock")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_tempfail_by_default(self):
        r = mf.miltertest(self.milter, mf.CLEAN)
        self.assertEqual(r.replies["connect"], TEMPFAIL)
        self.assertEqual(r.warnings(), ["connect to Milter service %s: No such file or directory"
                                        % self.milter])

    def test_default_action_accept(self):
        r = mf.miltertest(self.milter, mf.CLEAN, options=["milter_default_action=accept"])
        for ev in ("connect", "helo", "mail", "rcpt <rcpt@example.com>", "data", "message"):
            self.assertEqual(r.replies[ev], "continue", r.out)
        self.assertEqual(r.edits, [])
        # the failure is warned once, not at every event
        self.assertEqual(len(r.warnings()), 1, r.err)

    def test_default_action_reject_and_quarantine(self):
        r = mf.miltertest(self.milter, mf.CLEAN, options=["milter_default_action=reject"])
        self.assertEqual(r.replies["connect"], "550 5.5.0 Service unavailable")
        r = mf.miltertest(self.milter, mf.CLEAN, options=["milter_default_action=quarantine"])
        self.assertEqual(r.replies["connect"], "H")

    def test_per_milter_default_action(self):
        # Postfix's "{ name, default_action=... }" per-milter settings
        r = mf.miltertest("{ %s, default_action=accept }" % self.milter, mf.CLEAN)
        self.assertEqual(r.replies["message"], "continue", r.out + r.err)

    def test_inet_refused(self):
        port = harness.free_port()
        r = mf.miltertest("inet:127.0.0.1:%d" % port, mf.CLEAN)
        self.assertEqual(r.replies["connect"], TEMPFAIL)
        self.assertEqual(r.warnings(), ["connect to Milter service inet:127.0.0.1:%d: "
                                        "Connection refused" % port])

    def test_local_is_unix(self):
        s = mf.ScriptedMilter()
        self.addCleanup(s.stop)
        r = mf.miltertest("local:" + s.milter[5:], mf.CLEAN)
        self.assertEqual(r.replies["message"], "continue", r.out + r.err)

    def test_bad_milter_lists(self):
        for spec, err in [
                ("inet:127.0.0.1", 'milter inet:127.0.0.1: missing port number in "127.0.0.1"'),
                ("tcp:127.0.0.1:1", "invalid transport name: tcp in Milter service: "
                 "tcp:127.0.0.1:1"),
                ("nocolon", 'Milter service needs transport:endpoint instead of "nocolon"'),
                ("{ }", 'empty milter definition: "{ }"'),
                ("{ unix:/x, bogus=1 }", 'unknown option: "bogus = 1"'),
                ("{ unix:/x, command_timeout=soon }", "command_timeout: bad time value or "
                 "unit: soon"),
                ("{ unix:/x", "milter service syntax error: missing '}' in \"{ unix:/x\""),
        ]:
            r = mf.miltertest(spec, mf.CLEAN)
            self.assertEqual(r.exit, 2, spec)
            self.assertEqual(r.err.strip(), "miltertest: " + err, spec)

    def test_bad_protocol_setting(self):
        s = mf.ScriptedMilter()
        try:
            r = mf.miltertest(s.milter, mf.CLEAN, options=["milter_protocol=5"])
            self.assertEqual(r.replies["connect"],
                             "451 4.3.5 Server configuration problem - try again later")
            self.assertIn("milter %s: bad protocol information: 5" % s.milter, r.warnings())
        finally:
            s.stop()


class Scripted(unittest.TestCase):
    """Each reply and change, from a milter that sends it when told."""

    def run_with(self, script=None, message=mf.CLEAN, options=(), **kw):
        rcpts = kw.pop("rcpts", ("<rcpt@example.com>",))
        cancel = kw.pop("cancel", None)
        cancel_ms = kw.pop("cancel_ms", None)
        s = mf.ScriptedMilter(script, **kw)
        self.addCleanup(s.stop)
        r = mf.miltertest(s.milter, message, options=options, rcpts=rcpts, cancel=cancel,
                          cancel_ms=cancel_ms)
        self.assertEqual(r.exit, 0, r.out + r.err)
        return s, r

    def test_events_and_packets(self):
        s, r = self.run_with()
        self.assertEqual(r.replies["message"], "continue")
        self.assertEqual(s.events(), ["O", "C", "H", "M", "R", "T"] + ["L"] * 7
                         + ["N", "B", "E", "A", "A", "Q"])
        pk = dict((c, d) for c, d in s.received if c != "D")
        self.assertEqual(pk["C"], b"mail.example.net\0" b"4" + struct.pack(">H", 54321)
                         + b"203.0.113.5\0")
        self.assertEqual(pk["H"], b"mail.example.net\0")
        self.assertEqual(pk["M"], b"<sender@example.org>\0")
        self.assertEqual(pk["R"], b"<rcpt@example.com>\0")
        # headers: name, value without the space after the colon (Sendmail's way)
        self.assertEqual([d for c, d in s.received if c == "L"][0],
                         b"From\0Alice <alice@example.org>\0")
        self.assertEqual(pk["B"], b"Hi Bob,\r\n\r\nshall we have lunch on Thursday at noon?"
                         b"\r\n\r\nAlice\r\n")
        # OPTNEG: version 6, every action Postfix offers, every protocol step
        self.assertEqual(pk["O"], u32(6) + u32(0x1ff) + u32(0x1fffff))

    def test_macros(self):
        s, r = self.run_with(options=["milter_macro_daemon_name=mx.test",
                                      "milter_macro_v=mxgate-test"])
        conn = s.macros("C")[0]
        self.assertEqual(conn["{daemon_name}"], "mx.test")
        self.assertEqual(conn["v"], "mxgate-test")
        self.assertEqual(conn["_"], "mail.example.net [203.0.113.5]")
        self.assertEqual(conn["{daemon_addr}"], "127.0.0.1")
        self.assertIn("j", conn)
        self.assertEqual(list(conn), ["j", "{daemon_name}", "{daemon_addr}", "v", "_"])
        mail = s.macros("M")[0]
        # no queue id yet at MAIL (Postfix's smtpd has none before the first recipient)
        self.assertEqual(mail, {"{mail_addr}": "sender@example.org",
                                "{mail_host}": "example.org", "{mail_mailer}": "smtp"})
        self.assertEqual(s.macros("R")[0]["{rcpt_addr}"], "rcpt@example.com")
        self.assertEqual(s.macros("T")[0], {"i": "4Xyz0123ABC"})
        self.assertEqual(s.macros("N")[0], {"i": "4Xyz0123ABC"})
        self.assertEqual(s.macros("E")[0], {"i": "4Xyz0123ABC"})
        # milter_macro_defaults fills what the session does not know
        s, r = self.run_with(options=["milter_helo_macros={cipher}",
                                      "milter_macro_defaults=cipher=none"])
        self.assertEqual(s.macros("H")[0], {"{cipher}": "none"})

    def test_symlist_from_optneg(self):
        # the milter names its own macros for CONNECT (stage 0) and MAIL (stage 2)
        s, r = self.run_with(symlists={0: "{client_addr} {nonesuch}", 2: "{mail_addr}"})
        self.assertEqual(s.macros("C")[0], {"{client_addr}": "203.0.113.5"})
        self.assertEqual(s.macros("M")[0], {"{mail_addr}": "sender@example.org"})

    def test_reject_tempfail_replycode(self):
        s, r = self.run_with({"R": [packet(b"r")]})
        self.assertEqual(r.replies["rcpt <rcpt@example.com>"], "550 5.7.1 Command rejected")
        self.assertNotIn("data", r.replies)
        s, r = self.run_with({"M": [packet(b"t")]})
        self.assertEqual(r.replies["mail"], TEMPFAIL)
        s, r = self.run_with({"E": [packet(b"y", b"554 5.7.1 100%% spam, 5% sure\0")]})
        self.assertEqual(r.replies["message"], "554 5.7.1 100% spam, 5 sure")
        s, r = self.run_with({"T": [packet(b"y", b"452-4.3.1 full\r\n452 4.3.1 come back\0")]})
        self.assertEqual(r.replies["data"], "452-4.3.1 full\\r\\n452 4.3.1 come back")

    def test_malformed_replycode_is_a_configuration_error(self):
        s, r = self.run_with({"M": [packet(b"y", b"250 2.0.0 ok\0")]})
        self.assertEqual(r.replies["mail"],
                         "451 4.3.5 Server configuration problem - try again later")
        self.assertIn("milter %s: malformed reply: 250 2.0.0 ok" % s.milter, r.warnings())

    def test_connect_reject_is_kept(self):
        s, r = self.run_with({"C": [packet(b"y", b"554 5.7.1 go away\0")]})
        self.assertEqual(r.replies["connect"], "554 5.7.1 go away")
        # libmilter closes the socket after a connect-time decision; nothing else is sent
        self.assertEqual(s.events(), ["O", "C"])

    def test_accept_at_connect_ends_that_milters_events(self):
        s, r = self.run_with({"C": [packet(b"a")]})
        self.assertEqual(r.replies["message"], "continue")
        self.assertEqual(s.events(), ["O", "C"])

    def test_accept_at_mail_skips_the_message(self):
        s, r = self.run_with({"M": [packet(b"a")]})
        self.assertEqual(r.replies["message"], "continue")
        self.assertEqual(s.events(), ["O", "C", "H", "M", "A", "A", "Q"])

    def test_discard_shutdown(self):
        s, r = self.run_with({"E": [packet(b"d")]})
        self.assertEqual(r.replies["message"], "D")
        s, r = self.run_with({"H": [packet(b"4")]})
        self.assertEqual(r.replies["helo"], "S")
        # DISCARD at connect is refused as in Postfix
        s, r = self.run_with({"C": [packet(b"d")]})
        self.assertEqual(r.replies["connect"], "continue")
        self.assertIn("milter %s: DISCARD action is not allowed for connect or helo" % s.milter,
                      r.warnings())

    def test_every_change(self):
        eob = (packet(b"h", cstr("X-Added") + cstr("one"))
               + packet(b"i", u32(0) + cstr("X-Top") + cstr("first"))
               + packet(b"i", u32(3) + cstr("X-Third") + cstr("after two"))
               + packet(b"m", u32(1) + cstr("Subject") + cstr("[SPAM] Lunch"))
               + packet(b"m", u32(0) + cstr("Date") + cstr(""))
               + packet(b"m", u32(2) + cstr("To") + cstr("not there: appended"))
               + packet(b"e", cstr("<new@example.org>") + cstr("SIZE=100"))
               + packet(b"+", cstr("<added@example.com>"))
               + packet(b"2", cstr("<added2@example.com>") + cstr("NOTIFY=NEVER"))
               + packet(b"-", cstr("<rcpt@example.com>"))
               + packet(b"q", cstr("held for review"))
               + packet(b"p")
               + packet(b"b", b"new body\r\nsecond ")
               + packet(b"b", b"line\r\nlast")
               + packet(b"c"))
        s, r = self.run_with({"E": [eob]})
        m = s.milter
        self.assertEqual(r.replies["message"], "H")
        self.assertEqual(r.edits, [
            "add_header X-Added: one (%s)" % m,
            "insert_header 0 X-Top: first (%s)" % m,
            "insert_header 3 X-Third: after two (%s)" % m,
            "change_header 1 Subject: [SPAM] Lunch (%s)" % m,
            "delete_header 1 Date (%s)" % m,
            "change_header 2 To: not there: appended (%s)" % m,
            "change_from <new@example.org> SIZE=100 (%s)" % m,
            "add_rcpt <added@example.com> (%s)" % m,
            "add_rcpt <added2@example.com> NOTIFY=NEVER (%s)" % m,
            "delete_rcpt <rcpt@example.com> (%s)" % m,
            "quarantine held for review (%s)" % m,
            "replace_body 26 bytes (%s)" % m,
        ])
        self.assertEqual(r.headers, [
            "X-Top: first",
            "From: Alice <alice@example.org>",
            "X-Third: after two",
            "To: Bob <bob@example.com>",
            "Subject: [SPAM] Lunch",
            "Message-ID: <clean-1@example.org>",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=us-ascii",
            "X-Added: one",
            "To: not there: appended",
        ])
        self.assertEqual(r.body, ["new body", "second line", "last"])

    def test_changes_bounded_by_message_size_limit(self):
        # a milter cannot grow the message past message_size_limit: cleanup's "file too big"
        big = packet(b"b", b"x" * 1500 + b"\r\n") + packet(b"c")
        s, r = self.run_with({"E": [big]}, options=["message_size_limit=1000"])
        self.assertEqual(r.replies["message"], "552 5.3.4 Error: message file too big")
        self.assertEqual(r.edits, [])
        many = b"".join(packet(b"h", cstr("X-Flood-%d" % i) + cstr("y" * 80)) for i in range(20))
        s, r = self.run_with({"E": [many + packet(b"c")]}, options=["message_size_limit=1000"])
        self.assertEqual(r.replies["message"], "552 5.3.4 Error: message file too big")
        self.assertLess(len(r.edits), 20)
        # a discard still wins over the edit error, as in Postfix
        s, r = self.run_with({"E": [big[:-5] + packet(b"d")]}, options=["message_size_limit=1000"])
        self.assertEqual(r.replies["message"], "D")
        # within the limit, the same change is made
        s, r = self.run_with({"E": [big]}, options=["message_size_limit=10000"])
        self.assertEqual(r.replies["message"], "continue")

    def test_leading_space_negotiated(self):
        # SMFIP_HDR_LEADSPC: values go as they are, and come back as they are
        s, r = self.run_with({"E": [packet(b"h", cstr("X-Raw") + cstr("\tvalue")) + packet(b"c")]},
                             protocol=1 << 20)
        self.assertEqual([d for c, d in s.received if c == "L"][0],
                         b"From\0 Alice <alice@example.org>\0")
        self.assertIn("X-Raw:\tvalue", r.headers)

    def test_changes_only_at_end_of_message(self):
        s, r = self.run_with({"R": [packet(b"h", cstr("X-A") + cstr("b"))]})
        self.assertEqual(r.replies["rcpt <rcpt@example.com>"], TEMPFAIL)
        self.assertIn("milter %s: unexpected filter response SMFIR_ADDHEADER after event "
                      "SMFIC_RCPT" % s.milter, r.warnings())

    def test_body_replacement_mixed_is_refused(self):
        eob = (packet(b"b", b"one\r\n") + packet(b"h", cstr("X-A") + cstr("b"))
               + packet(b"b", b"two\r\n") + packet(b"c"))
        s, r = self.run_with({"E": [eob]})
        self.assertEqual(r.replies["message"],
                         "451 4.3.5 Server configuration problem - try again later")
        self.assertIn("milter %s: body replacement requests can't currently be mixed with "
                      "other requests" % s.milter, r.warnings())

    def test_skip_and_chunks(self):
        body = "".join("%05d %s\n" % (i, "x" * 60) for i in range(3000))  # 201000 bytes
        msg = "Subject: big\n\n" + body
        s, r = self.run_with(message=msg)
        chunks = [d for c, d in s.received if c == "B"]
        crlf = body.replace("\n", "\r\n").encode()
        self.assertEqual([len(c) for c in chunks], [65535] * 3 + [len(crlf) - 3 * 65535])
        self.assertEqual(b"".join(chunks), crlf)
        # SKIP after the first chunk: the rest of the body is not sent, EOB is
        s, r = self.run_with({"B": [packet(b"s")]}, message=msg, protocol=1 << 10)
        self.assertEqual(s.events().count("B"), 1)
        self.assertIn("E", s.events())
        self.assertEqual(r.replies["message"], "continue")

    def test_no_reply_steps(self):
        # NR_HDR: the headers go without waiting; NR_RCPT likewise
        s, r = self.run_with(protocol=(1 << 7) | (1 << 15), noreply=("L", "R"))
        self.assertEqual(r.replies["message"], "continue", r.out + r.err)
        self.assertEqual(s.events().count("L"), 7)

    def test_steps_the_milter_declines(self):
        # NOHELO, NOHDRS, NOBODY: those events are not sent (their macros still are for HELO)
        s, r = self.run_with(protocol=(1 << 1) | (1 << 5) | (1 << 4))
        ev = s.events()
        self.assertNotIn("H", ev)
        self.assertNotIn("L", ev)
        self.assertNotIn("B", ev)
        self.assertIn("E", ev)
        self.assertEqual(len(s.macros("H")), 1)

    def test_old_protocol_version(self):
        # a version 2 milter gets neither DATA nor UNKNOWN
        s, r = self.run_with(version=2)
        self.assertNotIn("T", s.events())
        self.assertEqual(r.replies["data"], "continue")

    def test_negotiation_refused(self):
        s, r = self.run_with(version=7)
        self.assertEqual(r.replies["connect"], TEMPFAIL)
        self.assertIn("milter %s: protocol version 7 conflict with MTA protocol version 6"
                      % s.milter, r.warnings())
        s, r = self.run_with(actions=1 << 12)
        self.assertEqual(r.replies["connect"], TEMPFAIL)
        self.assertIn("milter %s: request mask 0x1000 conflict with MTA request mask 0x1ff"
                      % s.milter, r.warnings())

    def test_timeout(self):
        t0 = time.monotonic()
        s, r = self.run_with({"R": [(3.0, packet(b"c"))]},
                             options=["milter_command_timeout=1s"])
        self.assertLess(time.monotonic() - t0, 3)
        self.assertEqual(r.replies["rcpt <rcpt@example.com>"], TEMPFAIL)
        self.assertIn("milter %s: can't read SMFIC_RCPT reply packet header: Connection timed "
                      "out" % s.milter, r.warnings())

    def test_content_timeout(self):
        t0 = time.monotonic()
        s, r = self.run_with({"E": [(2.5, packet(b"c"))]},
                             options=["milter_content_timeout=1s", "milter_command_timeout=10s",
                                      "milter_default_action=accept"])
        self.assertLess(time.monotonic() - t0, 2.5)
        self.assertEqual(r.replies["message"], "continue")
        self.assertIn("milter %s: can't read SMFIC_BODYEOB reply packet header: Connection "
                      "timed out" % s.milter, r.warnings())

    def test_bad_packets(self):
        s, r = self.run_with({"M": [struct.pack(">I", 0)]})
        self.assertEqual(r.replies["mail"], TEMPFAIL)
        self.assertIn("milter %s: bad packet length: 0" % s.milter, r.warnings())
        s, r = self.run_with({"M": [packet(b"c", b"junk")]})
        self.assertIn("milter %s: reply SMFIR_CONTINUE was followed by 4 data bytes"
                      % s.milter, r.warnings())
        s, r = self.run_with({"M": [packet(b"Z")]})
        self.assertIn("milter %s: unexpected filter response (unknown filter reply) after "
                      "event SMFIC_MAIL" % s.milter, r.warnings())
        # after the failure, that milter gives the default action for the rest
        self.assertEqual(r.replies["mail"], TEMPFAIL)

    def test_chain_order_and_first_answer_decides(self):
        a = mf.ScriptedMilter({"E": [packet(b"h", cstr("X-From-A") + cstr("1")) + packet(b"c")]})
        b = mf.ScriptedMilter({"R": [packet(b"r")]}, inet=True)
        self.addCleanup(a.stop)
        self.addCleanup(b.stop)
        r = mf.miltertest("%s %s" % (a.milter, b.milter), mf.CLEAN)
        self.assertEqual(r.replies["rcpt <rcpt@example.com>"], "550 5.7.1 Command rejected")
        self.assertEqual(a.events()[:5], ["O", "C", "H", "M", "R"])
        c = mf.ScriptedMilter()
        self.addCleanup(c.stop)
        a2 = mf.ScriptedMilter({"E": [packet(b"h", cstr("X-From-A") + cstr("1")) + packet(b"c")]})
        self.addCleanup(a2.stop)
        r = mf.miltertest("%s, %s" % (a2.milter, c.milter), mf.CLEAN)
        self.assertEqual(r.replies["message"], "continue")
        hdrs = [d.split(b"\0")[0] for cm, d in c.received if cm == "L"]
        self.assertEqual(hdrs[-1], b"X-From-A")

    def test_cancel(self):
        s, r = self.run_with({"E": [(2.0, packet(b"c"))]}, cancel="message")
        self.assertEqual(r.lines[-2:], ["cancelled", "quit"])
        self.assertNotIn("message", r.replies)

    def test_cancel_while_the_milter_thinks(self):
        # the answer is awaited when the event is cancelled: no callback, that milter closed
        s, r = self.run_with({"R": [(2.0, packet(b"c"))]}, cancel="rcpt", cancel_ms=300)
        self.assertEqual(r.lines[-2:], ["cancelled", "quit"])
        self.assertNotIn("rcpt <rcpt@example.com>", r.replies)
        # it was out of step: no ABORT or QUIT went to it after the cancel
        self.assertEqual(s.events(), ["O", "C", "H", "M", "R"])

    def test_progress_then_answer(self):
        s, r = self.run_with({"E": [packet(b"p") + packet(b"p") + packet(b"a")]})
        self.assertEqual(r.replies["message"], "continue")


class SameAsPostfix(unittest.TestCase):
    """The same scripted milter behind Postfix 3.7 (scripts/postfix-ref, a whole session over
    SMTP: smtpd sends the envelope, cleanup the message) and behind the client
    (miltertest with the same client, envelope and message): the same packets in the same
    order, byte for byte, but for the values that differ by design or by run (macro values,
    the client port); then the same changes land the same way in Postfix's stored copy and in
    the client's view."""

    MSG = mf.CLEAN.replace("Alice <alice@example.org>", "Alice <sender@example.org>")

    def postfix_run(self, milter, eob_script=None):
        import postfixref
        ref = postfixref.Reference("milter")
        self.addCleanup(ref.stop)
        ref.start({"smtpd_milters": milter.milter, "milter_default_action": "tempfail",
                   "myhostname": "mx.example.test", "virtual_mailbox_domains": "example.com",
                   "virtual_mailbox_maps": "inline:{rcpt@example.com=example.com/rcpt/}",
                   "smtpd_client_restrictions": "", "smtpd_recipient_restrictions":
                   "permit_mynetworks, reject_unauth_destination"})
        with harness.Client(ref.port, timeout=30) as c:
            c.read_reply()
            c.cmd("HELO mail.example.net")
            c.cmd("MAIL FROM:<sender@example.org>")
            c.cmd("RCPT TO:<rcpt@example.com>")
            c.cmd("DATA")
            data = self.MSG.replace("\n", "\r\n")
            c.send(data + ".\r\n")
            final = c.read_reply().text
            c.cmd("QUIT")
        stored = None
        box = os.path.join(ref.vmail, "example.com", "rcpt", "new")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if os.path.isdir(box) and os.listdir(box):
                with open(os.path.join(box, os.listdir(box)[0])) as f:
                    stored = f.read()
                break
            time.sleep(0.1)
        return final, stored, milter.received

    @staticmethod
    def shape(packets):
        """Each packet as compared: macro packets as their event and names only, CONNECT
        without the port."""
        out = []
        for c, d in packets:
            if c == "D":
                parts = d[1:].split(b"\0")[:-1]
                out.append(("D", d[:1], tuple(parts[0::2])))
            elif c == "C":
                host, rest = d.split(b"\0", 1)
                out.append(("C", host, rest[:1], rest[3:]))
            else:
                out.append((c, d))
        return out

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("the Postfix reference needs root")
        if not os.path.exists("/usr/sbin/postfix"):
            self.skipTest("Postfix is not installed (sh scripts/deps.sh --test)")

    def test_same_packets(self):
        pf = mf.ScriptedMilter(inet=True)
        self.addCleanup(pf.stop)
        final, stored, pf_packets = self.postfix_run(pf)
        self.assertTrue(final.startswith("250 2.0.0 Ok: queued as "), final)
        mx = mf.ScriptedMilter(inet=True)
        self.addCleanup(mx.stop)
        r = mf.miltertest(mx.milter, self.MSG, client_addr="127.0.0.1", client_name="localhost",
                          helo="mail.example.net")
        self.assertEqual(r.replies["message"], "continue", r.out + r.err)
        self.maxDiff = None
        self.assertEqual(self.shape(mx.received), self.shape(pf_packets))

    def test_same_replies_and_log_lines(self):
        def rcpt(data):
            if data.startswith(b"<reject@"):
                return packet(b"r")
            if data.startswith(b"<tempfail@"):
                return packet(b"t")
            if data.startswith(b"<custom@"):
                return packet(b"y", b"550 5.7.1 <custom@example.com>: go away\0")
            return packet(b"c")
        import postfixref
        pf = mf.ScriptedMilter({"R": rcpt}, inet=True)
        self.addCleanup(pf.stop)
        ref = postfixref.Reference("milter")
        self.addCleanup(ref.stop)
        ref.start({"smtpd_milters": pf.milter, "myhostname": "mx.example.test",
                   "virtual_mailbox_domains": "example.com",
                   "virtual_mailbox_maps": "inline:{reject@example.com=r/, "
                   "tempfail@example.com=t/, custom@example.com=c/}"})
        addrs = ["reject@example.com", "tempfail@example.com", "custom@example.com"]
        with harness.Client(ref.port, timeout=30) as c:
            c.read_reply()
            c.cmd("HELO mail.example.net")
            c.cmd("MAIL FROM:<sender@example.org>")
            pf_replies = [c.cmd("RCPT TO:<%s>" % a).text for a in addrs]
            c.cmd("QUIT")
        mx = mf.ScriptedMilter({"R": rcpt}, inet=True)
        self.addCleanup(mx.stop)
        mx_replies = []
        for a in addrs:
            r = mf.miltertest(mx.milter, self.MSG, client_addr="127.0.0.1",
                              client_name="localhost", rcpts=["<%s>" % a])
            mx_replies.append(r.replies["rcpt <%s>" % a])
        self.assertEqual(mx_replies, pf_replies)
        self.assertEqual(pf_replies, ["550 5.7.1 Command rejected", TEMPFAIL,
                                      "550 5.7.1 <custom@example.com>: go away"])
        # Postfix's log lines, which the session hook writes too (check_milter_reply())
        deadline = time.monotonic() + 10
        log = ""
        while time.monotonic() < deadline and log.count("milter-reject") < 3:
            time.sleep(0.1)
            with open(os.path.join(ref.dir, "maillog"), errors="replace") as f:
                log = f.read()
        for a, reply in zip(addrs, pf_replies):
            self.assertIn("NOQUEUE: milter-reject: RCPT from localhost[127.0.0.1]: %s; "
                          "from=<sender@example.org> to=<%s> proto=SMTP "
                          "helo=<mail.example.net>" % (reply, a), log)

    def test_same_changes_in_the_stored_copy(self):
        eob = (packet(b"h", cstr("X-Added") + cstr("one"))
               + packet(b"i", u32(1) + cstr("X-Second") + cstr("two"))
               + packet(b"m", u32(1) + cstr("Subject") + cstr("[tagged] Lunch"))
               + packet(b"m", u32(1) + cstr("Date") + cstr(""))
               + packet(b"c"))
        pf = mf.ScriptedMilter({"E": [eob]}, inet=True)
        self.addCleanup(pf.stop)
        final, stored, _ = self.postfix_run(pf)
        self.assertTrue(final.startswith("250 "), final)
        self.assertIsNotNone(stored)
        # Postfix's copy: its Return-Path, Delivered-To and Received first, then the message
        pf_headers = []
        for line in stored.split("\n\n", 1)[0].split("\n"):
            if line[:1] in (" ", "\t"):
                pf_headers[-1] += "\\n" + line
            else:
                pf_headers.append(line)
        pf_headers = [h for h in pf_headers
                      if not h.startswith(("Return-Path:", "Delivered-To:", "Received:",
                                           "X-Original-To:"))]
        mx = mf.ScriptedMilter({"E": [eob]}, inet=True)
        self.addCleanup(mx.stop)
        r = mf.miltertest(mx.milter, self.MSG, client_addr="127.0.0.1", client_name="localhost")
        self.assertEqual(r.headers, pf_headers)


if __name__ == "__main__":
    unittest.main()


SIGNED_FROM = """\
From: Alice <alice@example.test>
To: Bob <bob@example.com>
Subject: Signed lunch
Message-ID: <signed-1@example.test>
Date: Tue, 1 Dec 2026 19:00:00 +0000

Hi Bob,

this one is signed.

Alice
"""


class OpenDkimMilter(dnsfixture.PrivateDnsCase):
    """A real opendkim signs (Mode s) a message through the client; a second opendkim (Mode v)
    verifies it with the public key from the test DNS (dnsfixture's unbound, the TXT record
    sel1._domainkey.example.test that opendkim-genkey made), each test in its own network
    namespace: pass with its Authentication-Results header, a broken signature and a missing
    key as its configuration says (On-BadSignature, On-KeyNotFound).  The test DNS logs its
    queries (unbound's log-queries): opendkim's own query for the key is in it.
    (Debian's opendkim resolves with libunbound, which answers "test." itself as an RFC 6761
    name: milterfixture.OpenDkim's nameserver= takes it out of libunbound's local zones.)"""

    class QueryLogDns(dnsfixture.TestDns):
        """The test DNS with unbound's query log (log-queries) in its output."""

        def config(self):
            return super().config() + "server:\n  log-queries: yes\n"

        def queries(self, name, qtype):
            pat = re.compile(r"info: 127\.0\.0\.1 %s\. %s IN$" % (re.escape(name), qtype))
            return [ln for ln in self.output().splitlines() if pat.search(ln)]

    KEY_NAME = "sel1._domainkey.example.test"

    def setUp(self):
        self.keydir, self.record = mf.dkim_keys("example.test", "sel1")
        self.addCleanup(shutil.rmtree, self.keydir, True)

    def dns(self, records=None, **kw):
        if not self.in_namespace:
            self.fail("the test DNS outside the private namespace")
        dns = self.QueryLogDns([self.record] if records is None else records, **kw)
        self.addCleanup(dns.stop)
        return dns.start()

    def sign(self):
        signer = mf.OpenDkim("s", "example.test", "sel1", self.keydir).start()
        self.addCleanup(signer.stop)
        out = os.path.join(tempfile.mkdtemp(prefix="mxgate-signed-"), "signed.eml")
        self.addCleanup(shutil.rmtree, os.path.dirname(out), True)
        r = mf.miltertest(signer.milter, SIGNED_FROM, client_addr="127.0.0.1",
                          sender="<alice@example.test>", write=out)
        self.assertEqual(r.replies["message"], "continue", r.out + r.err)
        self.assertTrue(any(e.startswith("insert_header 0 DKIM-Signature: v=1; a=rsa-sha256; "
                                         "c=relaxed/simple; d=example.test; s=sel1;")
                            for e in r.edits), r.edits)
        with open(out) as f:
            signed = f.read()
        self.assertTrue(signed.startswith("DKIM-Signature: v=1;"), signed)
        return signed

    def verifier(self, *settings):
        v = mf.OpenDkim("v", "example.test", "sel1", self.keydir, list(settings),
                        nameserver=dnsfixture.UNBOUND_ADDRESS).start()
        self.addCleanup(v.stop)
        return v

    def verify(self, signed, *settings):
        v = self.verifier(*settings)
        return mf.miltertest(v.milter, signed, sender="<alice@example.test>")

    def auth_results(self, r):
        ar = [e for e in r.edits if e.startswith("insert_header") and "Authentication-Results:"
              in e]
        self.assertEqual(len(ar), 1, r.out + r.err)
        return ar[0]

    def test_good_signature_passes(self):
        signed = self.sign()
        dns = self.dns()
        r = self.verify(signed)
        self.assertEqual(r.replies["message"], "continue", r.out + r.err)
        ar = self.auth_results(r)
        self.assertIn("Authentication-Results: mx.example.test;", ar)
        self.assertIn("dkim=pass (1024-bit key; unprotected) header.d=example.test "
                      "header.i=@example.test header.a=rsa-sha256 header.s=sel1 header.b=", ar)
        # the stored copy has it above the signature it vouches for
        self.assertTrue(r.headers[0].startswith("Authentication-Results: mx.example.test;"),
                        r.headers)
        # the key came from the test DNS: opendkim asked it
        self.assertEqual(len(dns.queries(self.KEY_NAME, "TXT")), 1, dns.output())

    def test_broken_signature(self):
        signed = self.sign().replace("this one is signed.", "this one was changed.")
        dns = self.dns()
        r = self.verify(signed)
        self.assertEqual(r.replies["message"], "continue", r.out + r.err)
        ar = self.auth_results(r)
        self.assertIn("dkim=fail reason=\"signature verification failed\" (1024-bit key; "
                      "unprotected) header.d=example.test header.i=@example.test "
                      "header.a=rsa-sha256 header.s=sel1 header.b=", ar)
        self.assertEqual(len(dns.queries(self.KEY_NAME, "TXT")), 1, dns.output())
        # On-BadSignature reject: opendkim's own reply
        r = self.verify(signed, "On-BadSignature reject")
        self.assertEqual(r.replies["message"], "550 5.7.0 bad DKIM signature data", r.out + r.err)
        self.assertEqual(len(dns.queries(self.KEY_NAME, "TXT")), 2, dns.output())

    def test_missing_key(self):
        signed = self.sign()
        # the zone is there (another selector's key), sel1's record is not: NXDOMAIN
        dns = self.dns([self.record.replace("sel1._domainkey.", "sel2._domainkey.", 1)])
        self.assertEqual(dnsfixture.query(self.KEY_NAME, "TXT"), (3, []))
        r = self.verify(signed)
        self.assertEqual(r.replies["message"], "continue", r.out + r.err)
        ar = self.auth_results(r)
        self.assertIn("dkim=fail reason=\"key not found in DNS\" header.d=example.test", ar)
        self.assertEqual(len(dns.queries(self.KEY_NAME, "TXT")), 2, dns.output())
        # On-KeyNotFound reject: opendkim's own reply
        r = self.verify(signed, "On-KeyNotFound reject")
        self.assertEqual(r.replies["message"], "550 5.7.0 DKIM key retrieval failed",
                         r.out + r.err)
        self.assertEqual(len(dns.queries(self.KEY_NAME, "TXT")), 3, dns.output())

    def test_libunbound_answers_test_itself(self):
        # Nameservers alone (no ResolverConfiguration): libunbound's built-in local zone
        # "test." answers NXDOMAIN and nothing reaches the test DNS, which has the key
        signed = self.sign()
        dns = self.dns()
        v = mf.OpenDkim("v", "example.test", "sel1", self.keydir,
                        ["Nameservers " + dnsfixture.UNBOUND_ADDRESS]).start()
        self.addCleanup(v.stop)
        r = mf.miltertest(v.milter, signed, sender="<alice@example.test>")
        self.assertEqual(r.replies["message"], "continue", r.out + r.err)
        self.assertIn("dkim=fail reason=\"key not found in DNS\" header.d=example.test",
                      self.auth_results(r))
        self.assertEqual(dns.queries(self.KEY_NAME, "TXT"), [], dns.output())
