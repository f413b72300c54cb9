"""smtpd_milters in the SMTP session: the real build/mxgate with the scripted milter of
milterfixture.py (one test per action a milter can take, at each stage) and with a real
rspamd.  Each test asserts the reply lines the client gets, Postfix's log lines
(check_milter_reply(), cleanup_milter.c's END-OF-MESSAGE lines) and the bytes stored in the
Maildir."""

import os
import re
import time
import unittest

import harness
import milterfixture as mf
from milterfixture import cstr, packet, u32

MSG = ("From: Alice <alice@example.org>\n"
       "To: Bob <bob@virt.test>\n"
       "Subject: Lunch\n"
       "Message-Id: <lunch@example.org>\n"
       "Date: Tue, 1 Dec 2026 10:00:00 +0000\n"
       "\n"
       "Hi Bob,\n"
       "shall we have lunch?\n")

CLIENT = r"localhost\[127\.0\.0\.1\]"
WHATSUP = " from=<alice@example.org> to=<bob@virt.test> proto=ESMTP helo=<client.example.net>"


def wire(msg):
    return msg.replace("\n", "\r\n") + ".\r\n"


class MilterSession(harness.MxTestCase):
    def serve(self, script=None, main=None, users=("bob", "carol"), milter=True, **mkw):
        # inet: the daemon runs as mail_owner and cannot enter the fixture's 0700 directory
        mkw.setdefault("inet", True)
        self.m = mf.ScriptedMilter(script, **mkw) if milter else None
        if self.m:
            self.addCleanup(self.m.stop)
        cf = dict(harness.BASE_MAIN)
        cf["smtpd_milters"] = self.m.milter if self.m else "unix:/nonexistent/milter.sock"
        cf.update(main or {})
        self.srv = self.start_server(main=cf, virtual_users=list(users))
        return self.srv

    def transaction(self, c, rcpts=("bob@virt.test",), msg=MSG, sender="alice@example.org"):
        """EHLO .. end of DATA; returns the replies: {"mail", "rcpt" [list], "data", "end"}."""
        out = {"ehlo": c.cmd("EHLO client.example.net")}
        out["mail"] = c.cmd("MAIL FROM:<%s>" % sender)
        out["rcpt"] = [c.cmd("RCPT TO:<%s>" % r) for r in rcpts]
        out["data"] = c.cmd("DATA")
        if out["data"].code == 354:
            c.send(wire(msg))
            out["end"] = c.read_reply(timeout=30)
        return out

    def message_sent(self):
        """A session through the end of the message, its answer not read: the client."""
        c = self.connect(self.srv)
        c.read_reply()
        c.cmd("EHLO client.example.net")
        c.cmd("MAIL FROM:<alice@example.org>")
        c.cmd("RCPT TO:<bob@virt.test>")
        c.cmd("DATA")
        c.send(wire(MSG))
        return c

    def stored(self, user="bob"):
        files = harness.maildir_files(self.srv.vmail) if user is None else \
            harness.maildir(self.srv.vmail, user)["new"]
        out = []
        for p in files:
            with open(p, "rb") as f:
                out.append(f.read())
        return out

    def log(self, regex, timeout=5.0):
        line = self.srv.wait_log(regex, timeout)
        self.assertIsNotNone(line, "no log line %r in:\n%s" % (regex, "\n".join(
            self.srv.log_messages()[-30:])))
        return line

    def body_of(self, data):
        """The stored message below mxgate's headers (Return-Path, Delivered-To, Received)."""
        text = data.decode()
        self.assertTrue(text.startswith("Return-Path: "), text)
        m = re.match(r"Return-Path: <[^>]*>\n(?:X-Original-To: [^\n]*\n)?Delivered-To: [^\n]*\n"
                     r"Received: from [^\n]*\n(?:\t[^\n]*\n)*", text)
        self.assertIsNotNone(m, text)
        return text[m.end():]

    # ---- accept, continue ----

    def test_continue_everywhere_stores_the_message_unchanged(self):
        self.serve()
        c = self.connect(self.srv)
        self.assertEqual(c.read_reply().code, 220)
        r = self.transaction(c)
        self.assertEqual(r["end"].code, 250, r["end"])
        self.assertRegex(r["end"].text, r"^250 2\.0\.0 Ok: queued as [0-9A-F]+$")
        c.cmd("QUIT")
        files = self.stored()
        self.assertEqual(len(files), 1)
        self.assertEqual(self.body_of(files[0]), MSG)
        ev = self.m.events()
        # Postfix's order: connect, HELO, MAIL, RCPT, DATA, headers, EOH, body, EOM, ABORT
        # (after the message), ABORT (helo_reset), QUIT
        self.assertEqual(ev[:6], ["O", "C", "H", "M", "R", "T"], ev)
        self.assertEqual(ev[-1], "Q", ev)
        self.assertIn("E", ev)
        self.assertIn("A", ev[ev.index("E"):])

    def test_two_messages_in_one_session(self):
        # the second message is filtered too, and the hold of the first does not stick
        self.serve({"E": [packet(b"q", cstr("held")) + packet(b"c"),
                          packet(b"h", cstr("X-Second") + cstr("yes")) + packet(b"c")]})
        c = self.connect(self.srv)
        c.read_reply()
        r1 = self.transaction(c)
        self.assertEqual(r1["end"].code, 451)
        c.cmd("RSET")
        c.cmd("MAIL FROM:<alice@example.org>")
        c.cmd("RCPT TO:<bob@virt.test>")
        c.cmd("DATA")
        c.send(wire(MSG))
        self.assertEqual(c.read_reply(timeout=30).code, 250)
        c.cmd("QUIT")
        files = self.stored()
        self.assertEqual(len(files), 1)
        self.assertIn(b"\nX-Second: yes\n\nHi Bob,", files[0])
        ev = self.m.events()
        self.assertEqual(ev.count("E"), 2, ev)
        self.assertEqual(ev.count("M"), 2, ev)

    def test_macros_have_postfixs_values(self):
        self.serve(symlists={0: "j _ {client_addr} {client_name} {client_port} {daemon_name}",
                             2: "i {mail_addr} {mail_host}",
                             3: "i {rcpt_addr} {rcpt_host} {rcpt_mailer}"})
        c = self.connect(self.srv)
        c.read_reply()
        self.assertEqual(self.transaction(c)["end"].code, 250)
        c.cmd("QUIT")
        conn = self.m.macros("C")[0]
        self.assertEqual(conn["j"], "mx.example.test")
        self.assertEqual(conn["{client_addr}"], "127.0.0.1")
        self.assertEqual(conn["{client_name}"], "localhost")
        self.assertEqual(conn["_"], "localhost [127.0.0.1]")
        self.assertEqual(conn["{daemon_name}"], "mx.example.test")
        self.assertTrue(conn["{client_port}"].isdigit())
        mail = self.m.macros("M")[0]
        self.assertEqual(mail["{mail_addr}"], "alice@example.org")
        self.assertEqual(mail["{mail_host}"], "example.org")
        self.assertNotIn("i", mail)    # no queue id before the first recipient, as Postfix
        rcpt = self.m.macros("R")[0]
        self.assertEqual(rcpt["{rcpt_addr}"], "bob@virt.test")
        self.assertEqual(rcpt["{rcpt_host}"], "virt.test")
        self.assertEqual(rcpt["{rcpt_mailer}"], "virtual")

    def test_accept_at_mail_skips_the_milter_for_the_message(self):
        self.serve({"M": [packet(b"a")]})
        c = self.connect(self.srv)
        c.read_reply()
        r = self.transaction(c)
        self.assertEqual(r["end"].code, 250)
        c.cmd("QUIT")
        self.assertEqual(self.body_of(self.stored()[0]), MSG)
        self.assertNotIn("E", self.m.events())

    # ---- rejects at each stage ----

    def test_reject_at_connect(self):
        self.serve({"C": [packet(b"r")]})
        c = self.connect(self.srv)
        self.assertEqual(c.read_reply().text, "554 mx.example.test ESMTP not accepting connections")
        self.log(r"NOQUEUE: milter-reject: CONNECT from %s: 550 5\.7\.1 Command rejected; "
                 r"proto=SMTP$" % CLIENT)
        # the reject sticks: every command gets it
        self.assertEqual(c.cmd("EHLO client.example.net").code, 250)
        r = c.cmd("MAIL FROM:<alice@example.org>")
        self.assertEqual(r.text, "550 5.7.1 Command rejected")
        # and the commands without an event of their own (milters_other())
        self.assertEqual(c.cmd("VRFY bob@virt.test").text, "550 5.7.1 Command rejected")
        self.assertEqual(c.cmd("ETRN virt.test").text, "550 5.7.1 Command rejected")

    def test_tempfail_421_at_connect(self):
        self.serve({"C": [packet(b"y", cstr("421 4.7.0 not now"))]})
        c = self.connect(self.srv)
        self.assertEqual(c.read_reply().text, "421 mx.example.test Service unavailable - try "
                         "again later")
        self.log(r"NOQUEUE: milter-reject: CONNECT from %s: 421 4\.7\.0 not now; proto=SMTP$"
                 % CLIENT)

    def test_reject_at_helo_applies_to_mail(self):
        self.serve({"H": [packet(b"r")]})
        c = self.connect(self.srv)
        c.read_reply()
        self.assertEqual(c.cmd("EHLO client.example.net").code, 250)
        # proto=SMTP: Postfix logs the milter's answer before EHLO sets the protocol
        self.log(r"NOQUEUE: milter-reject: EHLO from %s: 550 5\.7\.1 Command rejected; "
                 r"proto=SMTP helo=<client\.example\.net>$" % CLIENT)
        self.assertEqual(c.cmd("MAIL FROM:<alice@example.org>").text, "550 5.7.1 Command rejected")

    def test_shutdown_at_helo_closes(self):
        self.serve({"H": [packet(b"4")]})
        c = self.connect(self.srv)
        c.read_reply()
        self.assertEqual(c.cmd("HELO client.example.net").text,
                         "421 4.7.0 Server closing connection")
        self.log(r"NOQUEUE: milter-reject: HELO from %s: 421 4\.7\.0 Server closing connection; "
                 r"proto=SMTP helo=<client\.example\.net>$" % CLIENT)

    def test_reject_at_mail(self):
        self.serve({"M": [packet(b"r"), packet(b"c")]})
        c = self.connect(self.srv)
        c.read_reply()
        c.cmd("EHLO client.example.net")
        self.assertEqual(c.cmd("MAIL FROM:<alice@example.org>").text, "550 5.7.1 Command rejected")
        self.log(r"NOQUEUE: milter-reject: MAIL from %s: 550 5\.7\.1 Command rejected; "
                 r"from=<alice@example\.org> proto=ESMTP helo=<client\.example\.net>$" % CLIENT)
        # the transaction was reset: a new MAIL works
        self.assertEqual(c.cmd("MAIL FROM:<alice@example.org>").code, 250)

    def test_tempfail_at_rcpt(self):
        self.serve({"R": [packet(b"t"), packet(b"c")]})
        c = self.connect(self.srv)
        c.read_reply()
        r = self.transaction(c, rcpts=("bob@virt.test", "carol@virt.test"))
        self.assertEqual(r["rcpt"][0].text, "451 4.7.1 Service unavailable - try again later")
        self.assertEqual(r["rcpt"][1].code, 250)
        self.log(r"NOQUEUE: milter-reject: RCPT from %s: 451 4\.7\.1 Service unavailable - try "
                 r"again later; from=<alice@example\.org> to=<bob@virt\.test> proto=ESMTP "
                 r"helo=<client\.example\.net>$" % CLIENT)
        self.assertEqual(r["end"].code, 250)
        self.assertEqual(self.stored("bob"), [])
        self.assertEqual(len(self.stored("carol")), 1)

    def test_rejected_recipient_is_told_to_milters_that_ask(self):
        SMFIP_RCPT_REJ = 0x800
        self.serve(protocol=SMFIP_RCPT_REJ, symlists={3: "{rcpt_addr} {rcpt_host} {rcpt_mailer}"})
        c = self.connect(self.srv)
        c.read_reply()
        c.cmd("EHLO client.example.net")
        c.cmd("MAIL FROM:<alice@example.org>")
        r = c.cmd("RCPT TO:<nobody@virt.test>")
        self.assertEqual(r.code, 550)
        c.cmd("QUIT")
        mac = self.m.macros("R")[0]
        self.assertEqual(mac["{rcpt_mailer}"], "error")
        self.assertEqual(mac["{rcpt_host}"], "5.1.1")
        # the text after the address, as Postfix's smtpd_milter_eval() cuts it
        self.assertEqual(mac["{rcpt_addr}"], "Recipient address rejected: User unknown in "
                         "virtual mailbox table")

    def test_custom_reply_at_data(self):
        self.serve({"T": [packet(b"y", cstr("452-4.3.1 full\r\n452 4.3.1 come back"))]})
        c = self.connect(self.srv)
        c.read_reply()
        r = self.transaction(c)
        self.assertEqual(r["data"].lines, ["452-4.3.1 full", "452 4.3.1 come back"])
        # logged whole, CR LF as "??", as Postfix logs it
        self.log(r"[0-9A-F]+: milter-reject: DATA from %s: 452-4\.3\.1 full\?\?452 4\.3\.1 come "
                 r"back;%s$" % (CLIENT, re.escape(WHATSUP)))

    def test_unknown_command(self):
        self.serve({"U": [packet(b"y", cstr("502 5.5.1 no such thing"))]})
        c = self.connect(self.srv)
        c.read_reply()
        self.assertEqual(c.cmd("FROB x").text, "502 5.5.1 no such thing")
        self.log(r"NOQUEUE: milter-reject: UNKNOWN from %s: 502 5\.5\.1 no such thing; "
                 r"proto=SMTP$" % CLIENT)

    # ---- end of message ----

    def eom(self, reply, rcpts=("bob@virt.test",), **kw):
        self.serve({"E": [reply]}, **kw)
        c = self.connect(self.srv)
        c.read_reply()
        r = self.transaction(c, rcpts=rcpts)
        if r.get("end") is not None and r["end"].code != 421:
            c.cmd("QUIT")
        return r

    def test_reject_at_end_of_message(self):
        r = self.eom(packet(b"y", cstr("554 5.7.1 spam, go away")))
        self.assertEqual(r["end"].text, "554 5.7.1 spam, go away")
        self.log(r"cleanup\S*: [0-9A-F]+: milter-reject: END-OF-MESSAGE from %s: 5\.7\.1 spam, go "
                 r"away;%s$" % (CLIENT, re.escape(WHATSUP)))
        self.assertEqual(self.stored(None), [])

    def test_tempfail_at_end_of_message(self):
        r = self.eom(packet(b"t"))
        self.assertEqual(r["end"].text, "451 4.7.1 Service unavailable - try again later")
        self.assertEqual(self.stored(None), [])

    def test_discard_at_end_of_message(self):
        r = self.eom(packet(b"d"))
        self.assertRegex(r["end"].text, r"^250 2\.0\.0 Ok: queued as [0-9A-F]+$")
        self.log(r"[0-9A-F]+: milter-discard: END-OF-MESSAGE from %s: milter triggers DISCARD "
                 r"action;%s$" % (CLIENT, re.escape(WHATSUP)))
        self.assertEqual(self.stored(None), [])

    def test_quarantine_is_a_tempfail(self):
        r = self.eom(packet(b"q", cstr("held for review")) + packet(b"c"))
        self.assertEqual(r["end"].text, "451 4.7.1 Error: message quarantined by a mail filter; "
                         "mxgate has no hold queue")
        self.log(r"[0-9A-F]+: milter-hold: END-OF-MESSAGE from %s: milter triggers HOLD "
                 r"action;%s$" % (CLIENT, re.escape(WHATSUP)))
        self.assertEqual(self.stored(None), [])

    def test_quarantine_at_rcpt_holds_the_message(self):
        self.serve({"R": [packet(b"q", cstr("later")) + packet(b"c")]})
        c = self.connect(self.srv)
        c.read_reply()
        r = self.transaction(c)
        self.assertEqual(r["rcpt"][0].code, 250)
        self.assertEqual(r["end"].code, 451)
        self.assertEqual(self.stored(None), [])

    def test_shutdown_at_end_of_message(self):
        # Postfix's log line; but the 421 the milter asked for, where Postfix 3.7 answers 250
        # and drops the message (README: Milters)
        r = self.eom(packet(b"h", cstr("X-Before") + cstr("shutdown")) + packet(b"4"))
        self.assertEqual(r["end"].text, "421 4.7.0 Server closing connection")
        self.log(r"[0-9A-F]+: milter-reject: END-OF-MESSAGE from %s: message content rejected;%s$"
                 % (CLIENT, re.escape(WHATSUP)))
        self.assertEqual(self.stored(None), [])

    def test_slow_end_of_message_content_timeout(self):
        r = self.eom((3.0, packet(b"c")), main={"milter_content_timeout": "1s"})
        self.assertEqual(r["end"].text, "451 4.7.1 Service unavailable - try again later")
        self.log(r"warning: milter inet:\S+: can't read SMFIC_BODYEOB reply packet header: ")
        self.assertEqual(self.stored(None), [])

    def test_header_changes_are_stored(self):
        r = self.eom(packet(b"h", cstr("X-Added") + cstr("one"))
                     + packet(b"i", u32(0) + cstr("X-Top") + cstr("first"))
                     + packet(b"m", u32(1) + cstr("Subject") + cstr("[SPAM] Lunch"))
                     + packet(b"m", u32(1) + cstr("Date") + cstr(""))
                     + packet(b"c"))
        self.assertEqual(r["end"].code, 250, r["end"])
        files = self.stored()
        self.assertEqual(len(files), 1)
        # index 0: above our Received: header, as Postfix puts it (SameAsPostfix checks it)
        self.assertRegex(files[0].decode(), r"^Return-Path: <alice@example\.org>\n"
                         r"X-Original-To: bob@virt\.test\nDelivered-To: bob@virt\.test\n"
                         r"X-Top: first\nReceived: from client\.example\.net ")
        self.assertEqual(self.body_of(files[0].replace(b"X-Top: first\n", b"")),
                         "From: Alice <alice@example.org>\n"
                         "To: Bob <bob@virt.test>\n"
                         "Subject: [SPAM] Lunch\n"
                         "Message-Id: <lunch@example.org>\n"
                         "X-Added: one\n"
                         "\n"
                         "Hi Bob,\n"
                         "shall we have lunch?\n")

    def test_replace_body(self):
        r = self.eom(packet(b"b", b"new body\r\nsecond line\r\n") + packet(b"c"))
        self.assertEqual(r["end"].code, 250)
        self.assertEqual(self.body_of(self.stored()[0]), MSG.split("\n\n")[0] + "\n\n"
                         "new body\nsecond line\n")

    def test_change_from(self):
        r = self.eom(packet(b"e", cstr("<new@example.org>")) + packet(b"c"))
        self.assertEqual(r["end"].code, 250)
        self.assertTrue(self.stored()[0].startswith(b"Return-Path: <new@example.org>\n"))

    def test_add_own_recipient(self):
        r = self.eom(packet(b"+", cstr("<carol@virt.test>")) + packet(b"c"))
        self.assertEqual(r["end"].code, 250)
        self.assertEqual(len(self.stored("bob")), 1)
        self.assertEqual(len(self.stored("carol")), 1)
        self.assertEqual(self.body_of(self.stored("carol")[0]), MSG)

    def test_add_foreign_recipient_defers_the_message(self):
        r = self.eom(packet(b"+", cstr("<someone@elsewhere.example>")) + packet(b"c"))
        self.assertEqual(r["end"].text, "451 4.3.0 Error: a mail filter added a recipient that "
                         "cannot be delivered here")
        self.log(r"warning: [0-9A-F]+: milter %s: add_rcpt <someone@elsewhere\.example>: "
                 % re.escape(self.m.milter))
        self.assertEqual(self.stored(None), [])

    def test_delete_recipient(self):
        r = self.eom(packet(b"-", cstr("<carol@virt.test>")) + packet(b"c"),
                     rcpts=("bob@virt.test", "carol@virt.test"))
        self.assertEqual(r["end"].code, 250)
        self.assertEqual(len(self.stored("bob")), 1)
        self.assertEqual(self.stored("carol"), [])

    def test_bdat_message_with_header_change(self):
        self.serve({"E": [packet(b"h", cstr("X-Added") + cstr("bdat")) + packet(b"c")]})
        c = self.connect(self.srv)
        c.read_reply()
        c.cmd("EHLO client.example.net")
        c.cmd("MAIL FROM:<alice@example.org>")
        c.cmd("RCPT TO:<bob@virt.test>")
        data = MSG.replace("\n", "\r\n")
        r = c.cmd("BDAT %d LAST\r\n%s" % (len(data), data[:-2]))
        self.assertRegex(r.text, r"^250 2\.0\.0 Ok: %d bytes queued as [0-9A-F]+$" % len(data))
        c.cmd("QUIT")
        self.assertEqual(self.body_of(self.stored()[0]),
                         MSG.replace("\n\n", "\nX-Added: bdat\n\n", 1))
        ev = self.m.events()
        self.assertLess(ev.index("T"), ev.index("L"), ev)

    def test_bad_milter_list_is_a_configuration_error(self):
        srv = harness.Server(main=dict(harness.BASE_MAIN, smtpd_milters="foo:bar"))
        self.addCleanup(srv.cleanup)
        rc, _, err = self.mxgate("run", "-c", srv.dir, timeout=30)
        self.assertNotEqual(rc, 0)
        self.assertIn("smtpd_milters: invalid transport name: foo in Milter service: foo:bar", err)

    def test_starttls_macros_and_abort(self):
        from test_tls import Certs, Conn
        Certs.make()
        self.serve(symlists={1: "{tls_version} {cipher} {cipher_bits}"},
                   main=dict(Certs.params(), smtpd_tls_security_level="may"))
        c = Conn(self.srv.port)
        c.reply()
        c.cmd("EHLO client.example.net")
        self.assertTrue(c.cmd("STARTTLS").startswith("220 "))
        c.starttls()
        c.cmd("EHLO client.example.net")
        c.cmd("QUIT")
        helo = self.m.macros("H")
        # the first HELO in plaintext: no TLS macros; after STARTTLS: the TLS layer's values
        self.assertEqual(helo[0], {})
        self.assertRegex(helo[1]["{tls_version}"], r"^TLSv1\.[23]$")
        self.assertTrue(helo[1]["{cipher}"])
        self.assertTrue(helo[1]["{cipher_bits}"].isdigit())
        ev = self.m.events()
        # STARTTLS forgets the HELO: ABORT (Postfix's helo_reset()) before the second HELO
        self.assertEqual(ev[:6], ["O", "C", "H", "A", "H", "A"], ev)

    # ---- a milter that is down or slow ----

    def down(self, action):
        self.serve(milter=False, main={"milter_default_action": action})
        c = self.connect(self.srv)
        banner = c.read_reply()
        return c, banner

    def test_down_tempfail(self):
        c, banner = self.down("tempfail")
        self.assertEqual(banner.code, 220)
        c.cmd("EHLO client.example.net")
        self.assertEqual(c.cmd("MAIL FROM:<alice@example.org>").text,
                         "451 4.7.1 Service unavailable - try again later")
        self.log(r"warning: connect to Milter service unix:/nonexistent/milter\.sock: No such file "
                 r"or directory$")

    def test_down_reject(self):
        c, banner = self.down("reject")
        self.assertEqual(banner.text, "554 mx.example.test ESMTP not accepting connections")

    def test_down_accept(self):
        c, banner = self.down("accept")
        self.assertEqual(banner.code, 220)
        r = self.transaction(c)
        self.assertEqual(r["end"].code, 250)
        self.assertEqual(self.body_of(self.stored()[0]), MSG)

    def test_down_quarantine(self):
        c, banner = self.down("quarantine")
        self.assertEqual(banner.code, 220)
        r = self.transaction(c)
        self.assertEqual(r["end"].code, 451)
        self.assertEqual(self.stored(None), [])

    def test_slow_milter_command_timeout(self):
        self.serve({"R": [(3.0, packet(b"c"))]}, main={"milter_command_timeout": "1s"})
        c = self.connect(self.srv)
        c.read_reply()
        r = self.transaction(c)
        self.assertEqual(r["rcpt"][0].text, "451 4.7.1 Service unavailable - try again later")
        self.log(r"warning: milter inet:\S+: can't read SMFIC_RCPT reply packet header: ")

    def test_client_gone_with_an_event_in_flight(self):
        self.serve({"M": [(2.0, packet(b"c"))]})
        c = self.connect(self.srv)
        c.read_reply()
        c.cmd("EHLO client.example.net")
        c.send("MAIL FROM:<alice@example.org>\r\n")
        c.close()
        self.log(r"disconnect from localhost\[127\.0\.0\.1\]")
        time.sleep(2.5)     # the late answer finds no session (ASan would say otherwise)


    def test_shutdown_with_an_event_in_flight(self):
        # the session is freed while the milter owes its MAIL answer: the event is cancelled
        # (no callback into a freed session: ASan would report it, and the stop fails)
        self.serve({"M": [(4.0, packet(b"c"))]})
        c = self.connect(self.srv)
        c.read_reply()
        c.cmd("EHLO client.example.net")
        c.send("MAIL FROM:<alice@example.org>\r\n")
        time.sleep(0.5)
        t0 = time.monotonic()
        self.assertEqual(self.srv.stop(), [])
        self.assertLess(time.monotonic() - t0, 3.5)     # before the milter's answer
        msgs = self.srv.log_messages()
        self.assertIn("disconnect from localhost[127.0.0.1] ehlo=1 commands=1", msgs)

    def test_client_gone_during_the_end_of_message(self):
        # the whole message arrived: it is stored once the milter accepts it (as Postfix's
        # cleanup queues it), the 250 goes nowhere
        self.serve({"E": [(2.0, packet(b"c"))]})
        c = self.message_sent()
        time.sleep(0.5)
        c.close()
        self.log(r"disconnect from localhost\[127\.0\.0\.1\]")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not self.stored():
            time.sleep(0.05)
        self.assertEqual([self.body_of(f) for f in self.stored()], [MSG])


class RspamdSession(mf.SharedRspamd, harness.MxTestCase):
    def run_one(self, msg):
        cf = dict(harness.BASE_MAIN)
        cf["smtpd_milters"] = self.rspamd.milter
        srv = self.start_server(main=cf, virtual_users=["rcpt"])
        c = self.connect(srv, timeout=60)
        c.read_reply()
        c.cmd("HELO mail.example.net")
        c.cmd("MAIL FROM:<sender@example.org>")
        self.assertEqual(c.cmd("RCPT TO:<rcpt@virt.test>").code, 250)
        self.assertEqual(c.cmd("DATA").code, 354)
        c.send(wire(msg))
        final = c.read_reply(timeout=60)
        c.cmd("QUIT")
        return srv, final

    def test_gtube_rejected_with_rspamds_reply(self):
        srv, final = self.run_one(mf.GTUBE.replace("rcpt@example.com", "rcpt@virt.test"))
        self.assertEqual(final.text, "554 5.7.1 Gtube pattern")
        self.assertIsNotNone(srv.wait_log(
            r"cleanup\S*: [0-9A-F]+: milter-reject: END-OF-MESSAGE from localhost\[127\.0\.0\.1\]:"
            r" 5\.7\.1 Gtube pattern; from=<sender@example\.org> to=<rcpt@virt\.test> proto=SMTP "
            r"helo=<mail\.example\.net>"))
        self.assertEqual(harness.maildir_files(srv.vmail), [])

    def test_same_as_postfix(self):
        if os.geteuid() != 0 or not os.path.exists("/usr/sbin/postfix"):
            self.skipTest("the Postfix reference needs root and Postfix")
        import postfixref
        ref = postfixref.Reference("milter-sess-rspamd")
        self.addCleanup(ref.stop)
        with open(os.path.join(ref.dir, "vmailbox"), "w") as f:
            f.write("rcpt@virt.test rcpt/\n")
        ref.start(dict(harness.BASE_MAIN, smtpd_milters=self.rspamd.milter,
                       myhostname="mx.example.test", smtpd_client_restrictions="",
                       virtual_mailbox_domains="virt.test",
                       virtual_mailbox_maps="texthash:%s/vmailbox" % ref.dir))
        gtube = mf.GTUBE.replace("rcpt@example.com", "rcpt@virt.test")
        with harness.Client(ref.port, timeout=60) as c:
            c.read_reply()
            c.cmd("HELO mail.example.net")
            c.cmd("MAIL FROM:<sender@example.org>")
            c.cmd("RCPT TO:<rcpt@virt.test>")
            c.cmd("DATA")
            c.send(wire(gtube))
            pf_gtube = c.read_reply(timeout=60).text
            c.cmd("MAIL FROM:<sender@example.org>")
            c.cmd("RCPT TO:<rcpt@virt.test>")
            c.cmd("DATA")
            c.send(wire(mf.CLEAN))
            pf_clean = c.read_reply(timeout=60).text
            c.cmd("QUIT")
        srv, mx_gtube = self.run_one(gtube)
        self.assertEqual(mx_gtube.text, pf_gtube)
        srv, mx_clean = self.run_one(mf.CLEAN)
        self.assertEqual(mx_clean.code, 250)
        self.assertTrue(pf_clean.startswith("250 "), pf_clean)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not harness.maildir_files(ref.vmail):
            time.sleep(0.1)
        pf_headers, pf_body = harness.read_message(harness.maildir_files(ref.vmail)[0])
        mx_headers, mx_body = harness.read_message(harness.maildir_files(srv.vmail)[0])
        # the same headers in the same order (rspamd's among them), the same body
        self.assertEqual([n for n, _ in mx_headers], [n for n, _ in pf_headers])
        self.assertEqual(mx_body, pf_body)

    def test_clean_message_stored_with_rspamds_headers(self):
        srv, final = self.run_one(mf.CLEAN)
        self.assertEqual(final.code, 250, final)
        files = harness.maildir_files(srv.vmail)
        self.assertEqual(len(files), 1)
        headers, body = harness.read_message(files[0])
        names = [n for n, _ in headers]
        self.assertEqual(names[:4], ["Return-Path", "X-Original-To", "Delivered-To", "Received"])
        self.assertIn("X-Spamd-Result", names)
        self.assertIn("X-Rspamd-Server", names)
        qid = re.search(r"queued as ([0-9A-F]+)", final.text).group(1)
        self.assertIn(("X-Rspamd-Queue-Id", qid), headers)
        self.assertTrue(body.startswith(b"Hi Bob,\n"), body)


RECEIVED_ID = re.compile(rb"\bid [0-9A-F]{6,}")
RECEIVED_DATE = re.compile(rb"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [ 123]\d [A-Z][a-z]{2} \d{4} "
                           rb"\d\d:\d\d:\d\d [+-]\d{4} \([A-Za-z0-9+-]+\)")


def normalize(data):
    """The Received: header's queue id and time (the rest must be the same)."""
    return RECEIVED_DATE.sub(b"DATE", RECEIVED_ID.sub(b"id QUEUEID", data))


class SameAsPostfix(harness.MxTestCase):
    """The same sessions with the same scripted milter through Postfix 3.7
    (tests/system/postfixref.py) and through mxgate: the same replies, the same stored bytes."""
    maxDiff = None

    CASES = [
        ("continue", {}),
        ("header edits", {"E": [packet(b"h", cstr("X-Added") + cstr("one"))
                                + packet(b"i", u32(0) + cstr("X-Top") + cstr("first"))
                                + packet(b"i", u32(2) + cstr("X-Second") + cstr("two"))
                                + packet(b"m", u32(1) + cstr("Subject") + cstr("[SPAM] Lunch"))
                                + packet(b"m", u32(1) + cstr("Date") + cstr(""))
                                + packet(b"c")]}),
        ("replace body", {"E": [packet(b"b", b"new body\r\nsecond line\r\n") + packet(b"c")]}),
        ("change from", {"E": [packet(b"e", cstr("<new@example.org>")) + packet(b"c")]}),
        ("reject at eom", {"E": [packet(b"y", cstr("554 5.7.1 spam, go away"))]}),
        ("tempfail at rcpt", {"R": [packet(b"t")]}),
        ("reject at mail", {"M": [packet(b"r")]}),
        ("discard at eom", {"E": [packet(b"d")]}),
        ("reject at connect", {"C": [packet(b"r")]}),
        ("reject at helo", {"H": [packet(b"r")]}),
        ("reject at data", {"T": [packet(b"y", cstr("452-4.3.1 full\r\n452 4.3.1 come back"))]}),
        ("tempfail at eom", {"E": [packet(b"t")]}),
        ("accept at mail", {"M": [packet(b"a")]}),
        ("discard at rcpt", {"R": [packet(b"d")]}),
        # not "shutdown at eom": Postfix 3.7 answers 250 and drops the message, mxgate 421
    ]


    def reference_pair(self, name):
        """A scripted milter for Postfix 3.7 (postfixref NAME, bob@virt.test's mailbox listed)
        and one for mxgate, and the main.cf settings both get."""
        import postfixref
        pf_milter = mf.ScriptedMilter(inet=True)
        self.addCleanup(pf_milter.stop)
        mx_milter = mf.ScriptedMilter(inet=True)
        self.addCleanup(mx_milter.stop)
        common = dict(harness.BASE_MAIN, myhostname="mx.example.test", mail_name="Postfix",
                      compatibility_level="3.6", smtpd_client_restrictions="",
                      milter_default_action="tempfail")
        ref = postfixref.Reference(name)
        self.addCleanup(ref.stop)
        with open(os.path.join(ref.dir, "vmailbox"), "w") as f:
            f.write("bob@virt.test bob/\n")
        return pf_milter, mx_milter, common, ref
    def setUp(self):
        if os.geteuid() != 0 or not os.path.exists("/usr/sbin/postfix"):
            self.skipTest("the Postfix reference needs root and Postfix")

    @staticmethod
    def session(port, base):
        before = set(harness.maildir_files(base, "new"))
        with harness.Client(port, timeout=30) as c:
            out = [c.read_reply().code]
            out.append(c.cmd("EHLO client.example.net").code)
            out.append(c.cmd("MAIL FROM:<alice@example.org>").text)
            out.append(c.cmd("RCPT TO:<bob@virt.test>").text)
            r = c.cmd("DATA")
            out.append(r.text)
            if r.code == 354:
                c.send(wire(MSG))
                out.append(re.sub(r"queued as [0-9A-F]+", "queued as QUEUEID",
                                  c.read_reply(timeout=30).text))
            try:
                c.cmd("QUIT")
            except (harness.Closed, OSError):
                pass
        stored = None
        if out[-1].startswith("250"):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                new = sorted(set(harness.maildir_files(base, "new")) - before)
                if new:
                    with open(new[0], "rb") as f:
                        stored = normalize(f.read())
                    break
                time.sleep(0.05)
        return out, stored

    def test_same_replies_and_stored_bytes(self):
        pf_milter, mx_milter, common, ref = self.reference_pair("milter-sess")
        ref.start(dict(common, smtpd_milters=pf_milter.milter, virtual_mailbox_domains="virt.test",
                       virtual_mailbox_maps="texthash:%s/vmailbox" % ref.dir))
        srv = self.start_server(main=dict(common, smtpd_milters=mx_milter.milter),
                                virtual_users=["bob"])
        pf_log = os.path.join(ref.dir, "maillog")
        for name, script in self.CASES:
            for m in (pf_milter, mx_milter):
                m.script = {k: list(v) for k, v in script.items()}
            marks = (len(pf_milter.received), len(mx_milter.received),
                     len(self.milter_lines(open(pf_log, errors="replace").read())),
                     len(self.milter_lines("\n".join(srv.log_lines()))))
            pf = self.session(ref.port, ref.vmail)
            mx = self.session(srv.port, srv.vmail)
            self.assertEqual(mx[0], pf[0], name)
            self.assertEqual((mx[1] or b"").decode(), (pf[1] or b"").decode(), name)
            # the same packets, in the same order (macro values and the port left out)
            self.assertEqual(self.shape(mx_milter.received[marks[1]:]),
                             self.shape(pf_milter.received[marks[0]:]), name)
            # the same milter-* log lines (queue ids left out)
            time.sleep(0.3)
            pf_lines = self.milter_lines(open(pf_log, errors="replace").read())[marks[2]:]
            self.assertEqual(self.milter_lines("\n".join(srv.log_lines()))[marks[3]:], pf_lines,
                             name)
            self.assertEqual(bool(pf_lines), name.split()[0] in ("reject", "tempfail", "discard"),
                             name)

    def test_macros_as_postfix(self):
        """The connect, MAIL and RCPT macros (a rejected recipient's too, SMFIP_RCPT_REJ) have
        Postfix's values."""
        import postfixref
        syms = {0: "j _ {client_addr} {client_name} {client_ptr} {client_resolve} {daemon_addr}",
                2: "{mail_addr} {mail_host} {mail_mailer}",
                3: "{rcpt_addr} {rcpt_host} {rcpt_mailer}"}
        pf_milter = mf.ScriptedMilter(inet=True, protocol=0x800, symlists=syms)
        self.addCleanup(pf_milter.stop)
        mx_milter = mf.ScriptedMilter(inet=True, protocol=0x800, symlists=syms)
        self.addCleanup(mx_milter.stop)
        common = dict(harness.BASE_MAIN, myhostname="mx.example.test",
                      smtpd_client_restrictions="")
        ref = postfixref.Reference("milter-sess")
        self.addCleanup(ref.stop)
        with open(os.path.join(ref.dir, "vmailbox"), "w") as f:
            f.write("bob@virt.test bob/\n")
        ref.start(dict(common, smtpd_milters=pf_milter.milter, virtual_mailbox_domains="virt.test",
                       virtual_mailbox_maps="texthash:%s/vmailbox" % ref.dir))
        srv = self.start_server(main=dict(common, smtpd_milters=mx_milter.milter),
                                virtual_users=["bob"])
        replies = []
        for port in (ref.port, srv.port):
            with harness.Client(port, timeout=30) as c:
                c.read_reply()
                c.cmd("EHLO client.example.net")
                c.cmd("MAIL FROM:<alice@example.org>")
                replies.append([c.cmd("RCPT TO:<nobody@virt.test>").text,
                                c.cmd("RCPT TO:<bob@virt.test>").text])
                c.cmd("QUIT")
        self.assertEqual(replies[1], replies[0])
        self.assertEqual(mx_milter.macros("R"), pf_milter.macros("R"))
        self.assertEqual(mx_milter.macros("M"), pf_milter.macros("M"))
        self.assertEqual(mx_milter.macros("C"), pf_milter.macros("C"))
        self.assertEqual(pf_milter.macros("R")[0]["{rcpt_mailer}"], "error")

    def test_delete_quoted_recipient_as_postfix(self):
        """DELRCPT <"carol"@virt.test> deletes carol@virt.test in both (the internal form is
        compared); <"Bob"@virt.test> deletes nobody (strcmp(): Bob is not bob)."""
        pf_milter, mx_milter, common, ref = self.reference_pair("ms-delrcpt")
        with open(os.path.join(ref.dir, "vmailbox"), "w") as f:
            f.write("bob@virt.test bob/\ncarol@virt.test carol/\n")
        ref.start(dict(common, smtpd_milters=pf_milter.milter, virtual_mailbox_domains="virt.test",
                       virtual_mailbox_maps="texthash:%s/vmailbox" % ref.dir))
        srv = self.start_server(main=dict(common, smtpd_milters=mx_milter.milter),
                                virtual_users=["bob", "carol"])
        eob = (packet(b"-", cstr('<"carol"@virt.test>')) + packet(b"-", cstr('<"Bob"@virt.test>'))
               + packet(b"c"))
        for m in (pf_milter, mx_milter):
            m.script = {"E": [eob]}
        got = []
        for port, base in ((ref.port, ref.vmail), (srv.port, srv.vmail)):
            with harness.Client(port, timeout=30) as c:
                c.read_reply()
                c.cmd("EHLO client.example.net")
                c.cmd("MAIL FROM:<alice@example.org>")
                c.cmd("RCPT TO:<bob@virt.test>")
                c.cmd("RCPT TO:<carol@virt.test>")
                c.cmd("DATA")
                c.send(wire(MSG))
                end = c.read_reply(timeout=30)
                c.cmd("QUIT")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not harness.maildir(base, "bob")["new"]:
                time.sleep(0.05)
            time.sleep(1.0)     # a copy for carol would be there by now
            got.append((end.code, len(harness.maildir(base, "bob")["new"]),
                        len(harness.maildir(base, "carol")["new"])))
        self.assertEqual(got[0], (250, 1, 0))
        self.assertEqual(got[1], got[0])

    @staticmethod
    def milter_lines(text):
        out = []
        for ln in text.splitlines():
            m = re.search(r"(?:smtpd|cleanup)\[\d+\]: (\S+: milter-.*)$", ln)
            if m:
                out.append(re.sub(r"^[0-9A-F]+:", "QUEUEID:", m.group(1)))
        return out

    @staticmethod
    def shape(packets):
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


class MilterMaps(harness.MxTestCase):
    """smtpd_milter_maps: the client address looked up (cidr:, texthash:); the answer replaces
    smtpd_milters for the session, DISABLE means none, not found means smtpd_milters."""

    serve = MilterSession.serve
    transaction = MilterSession.transaction
    stored = MilterSession.stored
    log = MilterSession.log
    body_of = MilterSession.body_of
    eom = MilterSession.eom

    def serve_maps(self, table, script=None, smtpd_milters=None, typ="cidr"):
        self.m = mf.ScriptedMilter(script, inet=True)
        self.addCleanup(self.m.stop)
        import tempfile
        d = tempfile.mkdtemp(prefix="mmaps-")
        path = os.path.join(d, "milter_maps")
        with open(path, "w") as f:
            f.write(table.replace("MILTER", self.m.milter))
        os.chmod(d, 0o755)
        os.chmod(path, 0o644)
        cf = dict(harness.BASE_MAIN)
        cf["smtpd_milters"] = (smtpd_milters or "").replace("MILTER", self.m.milter)
        cf["smtpd_milter_maps"] = "%s:%s" % (typ, path)
        self.srv = self.start_server(main=cf, virtual_users=["bob", "carol"])
        return self.srv

    def test_cidr_answer_replaces_smtpd_milters(self):
        # smtpd_milters would tempfail every command (no such socket): the map's list is used
        self.serve_maps("10.0.0.0/8 DISABLE\n127.0.0.0/8 MILTER\n",
                        {"E": [packet(b"h", cstr("X-Mapped") + cstr("yes")) + packet(b"c")]},
                        smtpd_milters="unix:/nonexistent/milter.sock")
        c = self.connect(self.srv)
        self.assertEqual(c.read_reply().code, 220)
        r = self.transaction(c)
        self.assertEqual(r["end"].code, 250, r["end"])
        c.cmd("QUIT")
        self.assertIn(b"\nX-Mapped: yes\n\nHi Bob,", self.stored()[0])
        self.assertEqual(self.m.events()[:2], ["O", "C"])

    def test_texthash_key_is_the_address(self):
        self.serve_maps("127.0.0.1 MILTER\n", {"C": [packet(b"r")]}, typ="texthash")
        c = self.connect(self.srv)
        self.assertEqual(c.read_reply().text, "554 mx.example.test ESMTP not accepting connections")

    def test_disable_means_no_milters(self):
        self.serve_maps("127.0.0.1/32 DISABLE\n", smtpd_milters="unix:/nonexistent/milter.sock")
        c = self.connect(self.srv)
        self.assertEqual(c.read_reply().code, 220)
        r = self.transaction(c)
        self.assertEqual(r["end"].code, 250, r["end"])
        c.cmd("QUIT")
        self.assertEqual(self.body_of(self.stored()[0]), MSG)
        self.assertEqual(self.m.events(), [])

    def test_not_found_uses_smtpd_milters(self):
        self.serve_maps("10.0.0.0/8 DISABLE\n", {"C": [packet(b"r")]}, smtpd_milters="MILTER")
        c = self.connect(self.srv)
        self.assertEqual(c.read_reply().text, "554 mx.example.test ESMTP not accepting connections")
        self.assertEqual(self.m.events()[:2], ["O", "C"])

    def test_failed_lookup_uses_smtpd_milters(self):
        # Postfix 3.7's setup_milters(): maps_find() fails -> smtpd_milters
        self.m = mf.ScriptedMilter({"C": [packet(b"r")]}, inet=True)
        self.addCleanup(self.m.stop)
        cf = dict(harness.BASE_MAIN, smtpd_milters=self.m.milter,
                  smtpd_milter_maps="socketmap:inet:127.0.0.1:%d:milters" % harness.free_port())
        self.srv = self.start_server(main=cf, virtual_users=["bob"])
        c = self.connect(self.srv)
        self.assertEqual(c.read_reply().text, "554 mx.example.test ESMTP not accepting connections")
        self.log(r"warning: smtpd_milter_maps: lookup of 127\.0\.0\.1 failed; using smtpd_milters$")

    def slow_maps(self):
        """smtpd_milter_maps a socketmap that answers NOTFOUND 2 s after each question; the
        questions, as they come, in self.asked."""
        import socket
        import threading
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(4)
        self.addCleanup(lsock.close)
        self.asked = []

        def answer(conn):
            with conn:
                try:
                    while True:
                        q = conn.recv(4096)
                        if not q:
                            return
                        self.asked.append(q)
                        time.sleep(2.0)
                        conn.sendall(b"9:NOTFOUND ,")
                except OSError:
                    pass

        def serve():
            while True:
                try:
                    conn, _ = lsock.accept()
                except OSError:
                    return
                threading.Thread(target=answer, args=(conn,), daemon=True).start()
        threading.Thread(target=serve, daemon=True).start()
        self.m = mf.ScriptedMilter({"C": [packet(b"r")]}, inet=True)
        self.addCleanup(self.m.stop)
        cf = dict(harness.BASE_MAIN, smtpd_milters=self.m.milter,
                  smtpd_milter_maps="socketmap:inet:127.0.0.1:%d:milters"
                  % lsock.getsockname()[1])
        self.srv = self.start_server(main=cf, virtual_users=["bob"])
        c = self.connect(self.srv)
        deadline = time.monotonic() + 5
        while not self.asked and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertTrue(self.asked, "the table was not asked")
        return c

    def test_client_gone_while_the_lookup_is_in_flight(self):
        # the session waits for the table (it reads nothing meanwhile, as Postfix's smtpd
        # blocked in maps_find()); the client's close is seen after the answer, the session
        # ends, and the next one is served (ASan: no use after free, no leak)
        c = self.slow_maps()
        c.close()
        self.log(r"disconnect from localhost\[127\.0\.0\.1\]", timeout=10)
        c = self.connect(self.srv)
        self.assertEqual(c.read_reply(timeout=10).text,
                         "554 mx.example.test ESMTP not accepting connections")
        self.assertEqual(self.srv.stop(), [])

    def test_shutdown_while_the_lookup_is_in_flight(self):
        # the session is freed with the lookup in flight: the job is abandoned, its late
        # answer freed without a session (ASan would report a use after free or a leak)
        self.slow_maps()
        self.assertEqual(self.srv.stop(), [])
        self.assertIn("disconnect from localhost[127.0.0.1] commands=0", self.srv.log_messages())
        self.assertEqual(self.m.events(), [])   # the milter was never asked

    def test_bad_list_in_the_answer_refuses_the_session(self):
        self.serve_maps("127.0.0.1/32 foo:bar\n", smtpd_milters="")
        c = self.connect(self.srv)
        self.assertEqual(c.read_reply().text, "421 4.3.0 mx.example.test Server local error")
        self.log(r"warning: smtpd_milter_maps: client 127\.0\.0\.1: invalid transport name: foo")


class MilterHeaderChecks(harness.MxTestCase):
    """milter_header_checks: header_checks patterns on the headers that milters add, insert
    or change, with the actions Postfix's cleanup_milter_hbc_extend() and hbc_action() take."""

    serve = MilterSession.serve
    transaction = MilterSession.transaction
    stored = MilterSession.stored
    log = MilterSession.log
    body_of = MilterSession.body_of
    eom = MilterSession.eom

    CHECKS = ("/^X-Spam: yes/ REJECT spam header\n"
              "/^X-Spam: maybe/ REJECT 4.7.0 try later\n"
              "/^X-Drop:/ IGNORE\n"
              "/^X-Strip:/ STRIP\n"
              "/^X-Old: (.*)/ REPLACE X-New: $1\n"
              "/^X-Hold:/ HOLD\n"
              "/^X-Warn:/ WARN looked at\n"
              "/^X-Gone:/ DISCARD\n"
              "/^Subject: \\[SPAM\\]/ REPLACE Subject: filtered\n")

    def run_eom(self, edits):
        import tempfile
        d = tempfile.mkdtemp(prefix="mhbc-")
        os.chmod(d, 0o755)
        path = os.path.join(d, "milter_checks")
        with open(path, "w") as f:
            f.write(self.CHECKS)
        os.chmod(path, 0o644)
        return self.eom(edits + packet(b"c"), main={"milter_header_checks": "regexp:" + path})

    def test_reject(self):
        r = self.run_eom(packet(b"h", cstr("X-Spam") + cstr("yes")))
        self.assertEqual(r["end"].text, "550 5.7.1 spam header")
        self.log(r"cleanup\S*: [0-9A-F]+: milter-header-reject: header X-Spam: yes from %s;%s: "
                 r"5\.7\.1 spam header$" % (CLIENT, re.escape(WHATSUP)))
        self.assertEqual(self.stored(None), [])
        # the milter's own answer is not logged again
        self.assertIsNone(self.srv.wait_log(r"milter-reject: END-OF-MESSAGE", 0.5))

    def test_reject_4xx(self):
        r = self.run_eom(packet(b"h", cstr("X-Spam") + cstr("maybe")))
        self.assertEqual(r["end"].text, "451 4.7.0 try later")
        self.assertEqual(self.stored(None), [])

    def test_ignore_strip_replace_warn(self):
        r = self.run_eom(packet(b"h", cstr("X-Drop") + cstr("1"))
                         + packet(b"h", cstr("X-Strip") + cstr("2"))
                         + packet(b"h", cstr("X-Old") + cstr("three"))
                         + packet(b"h", cstr("X-Warn") + cstr("4"))
                         + packet(b"m", u32(1) + cstr("Subject") + cstr("[SPAM] Lunch")))
        self.assertEqual(r["end"].code, 250, r["end"])
        self.assertEqual(self.body_of(self.stored()[0]),
                         MSG.replace("Subject: Lunch", "Subject: filtered")
                         .replace("\n\nHi", "\nX-New: three\nX-Warn: 4\n\nHi"))
        self.log(r"[0-9A-F]+: milter-header-warning: header X-Warn: 4 from %s;%s: looked at$"
                 % (CLIENT, re.escape(WHATSUP)))
        self.log(r"[0-9A-F]+: milter-header-strip: header X-Strip: 2 from %s;" % CLIENT)
        self.log(r"[0-9A-F]+: milter-header-replace: header X-Old: three from %s;%s: "
                 r"X-New: three$" % (CLIENT, re.escape(WHATSUP)))

    def test_hold_is_the_quarantine_answer(self):
        r = self.run_eom(packet(b"h", cstr("X-Hold") + cstr("please")))
        self.assertEqual(r["end"].text, "451 4.7.1 Error: message quarantined by a mail filter; "
                         "mxgate has no hold queue")
        self.log(r"[0-9A-F]+: milter-header-hold: header X-Hold: please from %s;%s$"
                 % (CLIENT, re.escape(WHATSUP)))
        self.assertEqual(self.stored(None), [])

    def test_discard(self):
        r = self.run_eom(packet(b"h", cstr("X-Gone") + cstr("x")))
        self.assertRegex(r["end"].text, r"^250 2\.0\.0 Ok: queued as [0-9A-F]+$")
        self.log(r"[0-9A-F]+: milter-header-discard: header X-Gone: x from %s;%s$"
                 % (CLIENT, re.escape(WHATSUP)))
        self.assertEqual(self.stored(None), [])

    def test_headers_of_the_client_are_not_checked(self):
        r = self.run_eom(packet(b"h", cstr("X-Fine") + cstr("1")))
        self.assertEqual(r["end"].code, 250)

    def test_filter_action_is_refused_by_check(self):
        import tempfile
        d = tempfile.mkdtemp(prefix="mhbc-")
        path = os.path.join(d, "checks")
        with open(path, "w") as f:
            f.write("/^X-A:/ FILTER smtp:[127.0.0.1]:10025\n")
        srv = harness.Server(main=dict(harness.BASE_MAIN, milter_header_checks="regexp:" + path))
        self.addCleanup(srv.cleanup)
        rc, out, err = self.mxgate("check", "-c", srv.dir, timeout=30)
        self.assertNotEqual(rc, 0)
        self.assertIn("milter_header_checks: %s, line 1: FILTER is not implemented" % path,
                      out + err)


class SameAsPostfixMiltersMaps(harness.MxTestCase):
    """smtpd_milter_maps and milter_header_checks, through Postfix 3.7 and mxgate."""
    maxDiff = None
    setUp = SameAsPostfix.setUp
    session = staticmethod(SameAsPostfix.session)
    milter_lines = staticmethod(SameAsPostfix.milter_lines)
    shape = staticmethod(SameAsPostfix.shape)
    reference_pair = SameAsPostfix.reference_pair

    def compare(self, extra, mx_extra, script):
        pf_milter, mx_milter, common, ref = self.reference_pair("milter-maps")
        pf_cf = dict(common, virtual_mailbox_domains="virt.test",
                     virtual_mailbox_maps="texthash:%s/vmailbox" % ref.dir)
        pf_cf.update(extra(pf_milter, ref.dir))
        ref.start(pf_cf)
        import tempfile
        d = tempfile.mkdtemp(prefix="mmaps-")
        os.chmod(d, 0o755)
        mx_cf = dict(common)
        mx_cf.update(extra(mx_milter, d))
        srv = self.start_server(main=mx_cf, virtual_users=["bob"])
        pf_log = os.path.join(ref.dir, "maillog")
        for m in (pf_milter, mx_milter):
            m.script = {k: list(v) for k, v in script.items()}
        pf = self.session(ref.port, ref.vmail)
        mx = self.session(srv.port, srv.vmail)
        self.assertEqual(mx[0], pf[0])
        self.assertEqual((mx[1] or b"").decode(), (pf[1] or b"").decode())
        self.assertEqual(self.shape(mx_milter.received), self.shape(pf_milter.received))
        time.sleep(0.5)
        pf_lines = self.milter_lines(open(pf_log, errors="replace").read())
        self.assertEqual(self.milter_lines("\n".join(srv.log_lines())), pf_lines)
        return pf, pf_lines

    @staticmethod
    def write(d, name, text):
        path = os.path.join(d, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)
        return path

    def test_milter_maps_as_postfix(self):
        def extra(m, d):
            return {"smtpd_milters": "inet:127.0.0.1:1",
                    "smtpd_milter_maps": "cidr:" + self.write(
                        d, "mmaps", "10.0.0.0/8 DISABLE\n127.0.0.0/8 %s\n" % m.milter)}
        pf, _ = self.compare(extra, None, {"E": [packet(b"h", cstr("X-Mapped") + cstr("yes"))
                                                 + packet(b"c")]})
        self.assertTrue(pf[0][-1].startswith("250"), pf)
        self.assertIn("X-Mapped: yes", pf[1].decode())

    def test_milter_maps_disable_as_postfix(self):
        def extra(m, d):
            return {"smtpd_milters": m.milter,
                    "smtpd_milter_maps": "cidr:" + self.write(d, "mmaps", "127.0.0.1 DISABLE\n")}
        pf, _ = self.compare(extra, None, {"C": [packet(b"r")]})
        self.assertEqual(pf[0][0], 220)

    def test_milter_header_checks_as_postfix(self):
        def extra(m, d):
            return {"smtpd_milters": m.milter,
                    "milter_header_checks": "regexp:" + self.write(
                        d, "mhbc", MilterHeaderChecks.CHECKS)}
        pf, lines = self.compare(extra, None, {
            "E": [packet(b"h", cstr("X-Drop") + cstr("1"))
                  + packet(b"h", cstr("X-Old") + cstr("three"))
                  + packet(b"h", cstr("X-Warn") + cstr("4"))
                  + packet(b"m", u32(1) + cstr("Subject") + cstr("[SPAM] Lunch"))
                  + packet(b"c")]})
        self.assertTrue(any("milter-header-warning" in ln for ln in lines), lines)

    def test_milter_header_checks_reject_as_postfix(self):
        def extra(m, d):
            return {"smtpd_milters": m.milter,
                    "milter_header_checks": "regexp:" + self.write(
                        d, "mhbc", MilterHeaderChecks.CHECKS)}
        pf, lines = self.compare(extra, None, {
            "E": [packet(b"h", cstr("X-Spam") + cstr("yes")) + packet(b"c")]})
        self.assertEqual(pf[0][-1], "550 5.7.1 spam header")
        self.assertTrue(any("milter-header-reject" in ln for ln in lines), lines)


if __name__ == "__main__":
    unittest.main()


class MilterSessionReview(harness.MxTestCase):
    """Review of the milter session (issue 13): what a milter's answer may not do."""
    serve, transaction, stored, log, body_of, eom, message_sent = (
        MilterSession.serve, MilterSession.transaction, MilterSession.stored,
        MilterSession.log, MilterSession.body_of, MilterSession.eom, MilterSession.message_sent)

    def test_multiline_reply_is_one_reply(self):
        # Postfix's smtpd_chat_reply(): the lines of a milter's text are one reply (each but
        # the last gets '-' after its code); the client must not read a second reply from it
        r = self.eom(packet(b"y", cstr("554 5.7.1 spam\r\n250 2.0.0 Ok: queued as FAKE")))
        self.assertEqual(r["end"].lines, ["554-5.7.1 spam", "250 2.0.0 Ok: queued as FAKE"])
        self.assertEqual(self.stored(None), [])

    def test_lone_lf_in_reply_does_not_split_it(self):
        self.serve({"E": [packet(b"y", cstr("554 5.7.1 spam\n250 2.0.0 Ok: queued as FAKE"))]})
        c = self.connect(self.srv)
        c.read_reply()
        r = self.transaction(c)
        self.assertEqual(r["end"].lines, ["554 5.7.1 spam?250 2.0.0 Ok: queued as FAKE"])
        self.assertEqual(c.cmd("NOOP").text, "250 2.0.0 Ok")
        self.log(r"milter-reject: END-OF-MESSAGE from %s: 5\.7\.1 spam\?250 2\.0\.0 Ok: queued "
                 r"as FAKE;" % CLIENT)
        self.assertEqual(self.stored(None), [])

    def test_milter_text_cannot_forge_a_log_line(self):
        # Postfix's msg_vprintf() makes every log text printable(): a milter's LF is a '?'
        forged = "Dec  1 00:00:00 mx postfix/smtpd[1]: forged"
        r = self.eom(packet(b"+", cstr("<someone@elsewhere.example>\n" + forged)) + packet(b"c"))
        self.assertEqual(r["end"].code, 451)
        self.log(r"warning: [0-9A-F]+: milter %s: add_rcpt <<someone@elsewhere\.example>\?%s>: "
                 % (re.escape(self.m.milter), re.escape(forged)))
        self.assertFalse([l for l in self.srv.log_lines() if l.startswith(forged)])

    def test_milter_sees_the_clients_received_when_ours_was_removed(self):
        # Postfix's milter8 hides only its own Received: header (the exact text it added):
        # once header_checks removed it, the client's first Received: is the milters' to see
        tmp = self.enterContext(__import__("tempfile").TemporaryDirectory())
        os.chmod(tmp, 0o755)
        hc = os.path.join(tmp, "hc")
        with open(hc, "w") as f:
            f.write("/^Received: from client\\.example\\.net/ IGNORE\n")
        os.chmod(hc, 0o644)
        theirs = "Received: from upstream.example by relay.example; Tue, 1 Dec 2026"
        self.serve(main={"header_checks": "regexp:" + hc})
        c = self.connect(self.srv)
        c.read_reply()
        r = self.transaction(c, msg=theirs + "\n" + MSG)
        self.assertEqual(r["end"].code, 250)
        c.cmd("QUIT")
        names = [d.split(b"\0")[0].decode() for cmd, d in self.m.received if cmd == "L"]
        self.assertEqual(names[:2], ["Received", "From"])
        stored = self.stored()[0].decode()
        self.assertIn("\n" + theirs + "\n", stored)
        self.assertNotIn("Received: from client.example.net", stored)

    def test_delete_recipient_needs_the_exact_address(self):
        # Postfix's cleanup_del_rcpt() compares with strcmp(): BOB@ is not bob@, which stays
        r = self.eom(packet(b"-", cstr("<BOB@virt.test>")) + packet(b"-", cstr("<carol@virt.test>"))
                     + packet(b"c"), rcpts=("bob@virt.test", "carol@virt.test"))
        self.assertEqual(r["end"].code, 250)
        self.assertEqual(len(self.stored("bob")), 1)
        self.assertEqual(self.stored("carol"), [])

    def test_delete_recipient_given_quoted(self):
        # cleanup_del_rcpt() compares the internal form (tok822_internalize()): the quotes of
        # <"carol"@virt.test> go, so it is carol@virt.test, and carol is deleted
        r = self.eom(packet(b"-", cstr('<"carol"@virt.test>')) + packet(b"c"),
                     rcpts=("bob@virt.test", "carol@virt.test"))
        self.assertEqual(r["end"].code, 250)
        self.assertEqual(len(self.stored("bob")), 1)
        self.assertEqual(self.stored("carol"), [])

    def test_shutdown_during_the_end_of_message(self):
        # SIGTERM while the milter owes its end-of-message answer: the session goes, the
        # event is cancelled (ASan would report a late callback), nothing is stored, no 250
        self.serve({"E": [(4.0, packet(b"c"))]})
        c = self.message_sent()
        time.sleep(0.5)
        t0 = time.monotonic()
        self.assertEqual(self.srv.stop(), [])
        self.assertLess(time.monotonic() - t0, 3.5)
        self.assertEqual(self.stored(None), [])
        try:
            r = c.read_reply(timeout=2)
            self.assertNotEqual(r.code, 250)
        except harness.Closed:
            pass

    def test_added_headers_count_with_the_message_headers_against_the_size_limit(self):
        # message_size_limit bounds the changed copy whole (Postfix: the queue file), not only
        # the body and the edits: 1.2 kB of headers + 0.9 kB added > 2 kB
        msg = "X-Long: " + "a" * 1000 + "\n" + MSG
        self.serve({"E": [packet(b"h", cstr("X-Add") + cstr("b" * 900)) + packet(b"c")]},
                   main={"message_size_limit": "2000"})
        c = self.connect(self.srv)
        c.read_reply()
        r = self.transaction(c, msg=msg)
        self.assertEqual(r["end"].text, "552 5.3.4 Error: message file too big")
        self.assertEqual(self.stored(None), [])
