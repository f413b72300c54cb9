"""Recipients through aliases: virtual_alias_maps (every domain, recursive, limits,
self-reference), virtual_alias_domains, alias_maps with :include:, and the targets mxgate
cannot store (remote, unknown, |command, /file), seen from real clients (smtplib) against
build/mxgate: the RCPT replies, the log lines, the files in the Maildirs, and what
`mxgate check` says.  AliasesAsPostfixTest plays the RCPTs to Postfix 3.7 and to mxgate live
(tests/system/postfixref.py, reference folder /tmp/mxgate-ref-aliases) for the cases where
both must answer alike.
"""

import os
import re
import smtplib
import shutil
import subprocess
import tempfile
import time
import unittest

import harness
import postfixref

USERS = ["alice", "bob", "carol", "admin", "self"]

VALIAS = """\
# virtual(5)
info@virt.test        alice@virt.test, bob@virt.test
sales@virt.test       info@virt.test,carol@virt.test
self@virt.test        self@virt.test, alice@virt.test
ext@virt.test         carol@virt.test
alias.test            whatever
known@alias.test      admin@virt.test
root@local.test       admin@virt.test
remote@virt.test      alice@virt.test, someone@example.org
ghost@virt.test       nobody@virt.test
loop1@virt.test       loop2@virt.test
loop2@virt.test       loop1@virt.test
wide@virt.test        alice@virt.test, bob@virt.test, carol@virt.test, admin@virt.test
long@virt.test        bob@virt.test, averyveryverylongname@virt.test
catch.test            whatever
@catch.test           @virt.test
x@elsewhere.test      alice@virt.test
twice@virt.test       alice@virt.test, info@virt.test, alice@virt.test
hop@virt.test         team@local.test
split@virt.test       x1@local.test, x2@local.test
"""

ALIASES = """\
# aliases(5)
postmaster: admin@virt.test
team:       alice@virt.test,
            :include:{dir}/team.inc
cmd:        "|/usr/bin/procmail -a x"
tofile:     /var/tmp/mbox
far:        friend@example.net
nouser:     nobody@virt.test
badinc:     :include:{dir}/missing.inc
chain:      team
fwd:        hop@virt.test
x1:         alice@virt.test
x2:         alice@virt.test
"""

TEAM = "# the team\nbob@virt.test\ncarol@virt.test\n"


def sendmail(port, rcpts, body="Subject: t\r\n\r\nhello\r\n"):
    """One message with smtplib: (refused {rcpt: (code, text)}, DATA reply)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
        c.ehlo("client.example")
        c.mail("sender@client.example")
        refused = {}
        for r in rcpts:
            code, text = c.rcpt(r)
            if code != 250:
                refused[r] = (code, text.decode())
        if len(refused) == len(rcpts):
            return refused, None
        code, text = c.data(body)
        return refused, (code, text.decode())


def rcpt_reply(port, rcpt):
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
        c.ehlo("client.example")
        c.mail("sender@client.example")
        code, text = c.rcpt(rcpt)
        return "%d %s" % (code, text.decode())


class AliasCase(harness.MxTestCase):
    """A scratch folder (readable by the daemon's user) for the tables, then mxgate."""

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="mxgate-aliases-")
        os.chmod(self.tmp, 0o755)
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text.replace("{dir}", self.tmp))
        os.chmod(path, 0o644)
        return path

    def postalias(self, name, text):
        """An aliases(5) file and its hash: table, as an admin builds it (postalias)."""
        path = self.write(name, text)
        subprocess.run(["postalias", "hash:" + path], check=True, timeout=60)
        os.chmod(path + ".db", 0o644)
        return "hash:" + path

    def params(self, **main):
        p = dict(harness.BASE_MAIN, recipient_delimiter="+", myorigin="local.test",
                 virtual_alias_maps="texthash:" + self.write("valias", VALIAS),
                 alias_maps=self.postalias("aliases", ALIASES))
        self.write("team.inc", TEAM)
        p.update(main)
        return p

    def box(self, user):
        return harness.maildir(self.srv.vmail, user)["new"]


class VirtualAliasTest(AliasCase):
    def setUp(self):
        super().setUp()
        self.srv = self.start_server(main=self.params(), virtual_users=USERS)

    def delivered(self, regex):
        self.assertIsNotNone(self.srv.wait_log(regex), "no log line %r" % regex)

    def copies(self, user):
        """The trace of each copy in user's Maildir: [[(name, first line)...], ...], sorted."""
        out = []
        for path in self.box(user):
            headers, _ = harness.read_message(path)
            out.append([(n, v.split("\n")[0].split(";")[0]) for n, v in headers
                        if n in ("Return-Path", "Delivered-To", "Received")])
        return sorted(out)

    def test_one_copy_per_rcpt_and_final_address(self):
        refused, data = sendmail(self.srv.port, ["info@virt.test", "sales@virt.test"])
        self.assertEqual(refused, {})
        self.assertEqual(data[0], 250)
        # info -> alice, bob; sales -> info (-> alice, bob), carol: Postfix's duplicate
        # filter keys on the original recipient too, so alice and bob get two copies each
        self.assertEqual([len(self.box(u)) for u in ("alice", "bob", "carol", "admin")],
                         [2, 2, 1, 0])
        for path in self.box("alice"):
            headers, body = harness.read_message(path)
            self.assertEqual([v for n, v in headers if n == "Delivered-To"], ["alice@virt.test"])
            self.assertEqual(body, b"hello\n")
        self.delivered(r"mxgate/qmgr\[\d+\]: \w+: from=<sender@client.example>, size=\d+, "
                       r"nrcpt=5 \(queue active\)")
        for final, orig in (("alice", "info"), ("alice", "sales"), ("bob", "info"),
                            ("bob", "sales"), ("carol", "sales")):
            self.delivered(r"mxgate/virtual\[\d+\]: \w+: to=<%s@virt.test>, "
                           r"orig_to=<%s@virt.test>, relay=virtual, delay=[\d.e-]+, dsn=2.0.0, "
                           r"status=sent \(delivered to maildir\)" % (final, orig))
        self.assertEqual(len(harness.log_matches(self.srv, r"mxgate/virtual.*to=<alice@")), 2)

    def test_one_rcpt_stores_a_final_address_once(self):
        # twice -> alice, info (-> alice, bob), alice: alice once, bob once; the repeated
        # RCPT (any case) is the same recipient
        refused, data = sendmail(self.srv.port, ["twice@virt.test", "TWICE@virt.test",
                                                 "twice@virt.test"])
        self.assertEqual((refused, data[0]), ({}, 250))
        self.assertEqual([len(self.box(u)) for u in ("alice", "bob")], [1, 1])
        self.delivered(r"nrcpt=2 \(queue active\)")
        self.delivered(r"mxgate/qmgr.*: removed")
        self.delivered(r"to=<bob@virt.test>, orig_to=<twice@virt.test>, relay=virtual")
        self.assertEqual(len(harness.log_matches(
            self.srv, r"mxgate/virtual.*to=<alice@virt.test>, orig_to=<twice@virt.test>")), 1)

    def test_self_reference_is_kept(self):
        refused, data = sendmail(self.srv.port, ["self@virt.test"])
        self.assertEqual((refused, data[0]), ({}, 250))
        self.assertEqual(len(self.box("self")), 1)
        self.assertEqual(len(self.box("alice")), 1)
        # the address itself: no orig_to=, as Postfix logs a recipient that is not aliased
        self.delivered(r"mxgate/virtual\[\d+\]: \w+: to=<self@virt.test>, relay=virtual")
        self.delivered(r"to=<alice@virt.test>, orig_to=<self@virt.test>, relay=virtual")

    def test_unmatched_extension_propagates(self):
        refused, data = sendmail(self.srv.port, ["ext+foo@virt.test"])
        self.assertEqual((refused, data[0]), ({}, 250))
        headers, _ = harness.read_message(self.box("carol")[0])
        self.assertIn(("Delivered-To", "carol+foo@virt.test"), headers)
        self.delivered(r"to=<carol\+foo@virt.test>, orig_to=<ext\+foo@virt.test>, relay=virtual")

    def test_every_domain(self):
        # a local domain, a virtual alias domain, a catch-all of a virtual alias domain
        refused, data = sendmail(self.srv.port, ["root@local.test", "known@alias.test",
                                                 "carol@catch.test"])
        self.assertEqual((refused, data[0]), ({}, 250))
        self.assertEqual(len(self.box("admin")), 2)     # root and known: a copy each
        self.assertEqual(len(self.box("carol")), 1)
        # virtual aliasing (cleanup) adds no Delivered-To, even from a local domain
        self.assertEqual(self.copies("admin"), [[("Return-Path", "<sender@client.example>"),
                                                 ("Delivered-To", "admin@virt.test"),
                                                 ("Received", "from client.example "
                                                  "(localhost [127.0.0.1])")]] * 2)
        self.delivered(r"to=<admin@virt.test>, orig_to=<root@local.test>, relay=virtual")
        self.delivered(r"to=<admin@virt.test>, orig_to=<known@alias.test>, relay=virtual")
        self.delivered(r"to=<carol@virt.test>, orig_to=<carol@catch.test>, relay=virtual")

    def test_virtual_alias_domain_without_alias(self):
        self.assertEqual(rcpt_reply(self.srv.port, "nobody@alias.test"),
                         "550 5.1.1 <nobody@alias.test>: Recipient address rejected: "
                         "User unknown in virtual alias table")
        self.assertIsNotNone(self.srv.wait_log(
            r"NOQUEUE: reject: RCPT from localhost\[127.0.0.1\]: 550 5.1.1 <nobody@alias.test>: "
            r"Recipient address rejected: User unknown in virtual alias table; "
            r"from=<sender@client.example> to=<nobody@alias.test> proto=ESMTP "
            r"helo=<client.example>"))

    def test_alias_of_a_foreign_domain_is_relay(self):
        # elsewhere.test is none of ours: its alias does not make it ours (Postfix: 454,
        # reject_unauth_destination comes first)
        self.assertEqual(rcpt_reply(self.srv.port, "x@elsewhere.test"),
                         "454 4.7.1 <x@elsewhere.test>: Relay access denied")

    def test_remote_target_is_refused(self):
        refused, data = sendmail(self.srv.port, ["remote@virt.test", "bob@virt.test"])
        self.assertEqual(refused, {"remote@virt.test": (
            550, "5.1.1 <remote@virt.test>: Recipient address rejected: Alias forwards to "
                 "another domain; this server does not relay")})
        self.assertEqual(data[0], 250)
        self.assertEqual(self.box("alice"), [])          # nothing of it is stored
        self.assertEqual(len(self.box("bob")), 1)
        self.assertIsNotNone(self.srv.wait_log(
            r"warning: remote@virt.test: alias target <someone@example.org> is outside "
            r"mxgate's domains \(mxgate never relays\); recipient refused"))
        self.assertIsNotNone(self.srv.wait_log(
            r"reject: RCPT from localhost\[127.0.0.1\]: 550 5.1.1 <remote@virt.test>: "
            r"Recipient address rejected: Alias forwards"))

    def test_unknown_target_is_refused(self):
        self.assertEqual(rcpt_reply(self.srv.port, "ghost@virt.test"),
                         "550 5.1.1 <ghost@virt.test>: Recipient address rejected: "
                         "Alias target is an unknown user")
        self.assertIsNotNone(self.srv.wait_log(
            r"warning: ghost@virt.test: alias target <nobody@virt.test> is unknown in "
            r"virtual mailbox table; recipient refused"))

    def test_loop_stops_at_recursion_limit(self):
        self.assertEqual(rcpt_reply(self.srv.port, "loop1@virt.test"),
                         "451 4.6.0 Alias expansion error")
        self.assertIsNotNone(self.srv.wait_log(
            r"warning: loop1@virt.test: unreasonable virtual_alias_maps map nesting for "
            r"loop1@virt.test -- message not accepted, try again later"))


class VirtualAliasLimitsTest(AliasCase):
    def test_expansion_limit(self):
        self.srv = self.start_server(main=self.params(virtual_alias_expansion_limit="3"),
                                     virtual_users=USERS)
        self.assertEqual(rcpt_reply(self.srv.port, "wide@virt.test"),
                         "451 4.6.0 Alias expansion error")
        self.assertIsNotNone(self.srv.wait_log(
            r"warning: wide@virt.test: unreasonable virtual_alias_maps map expansion size for "
            r"wide@virt.test -- message not accepted, try again later"))
        self.assertEqual(rcpt_reply(self.srv.port, "info@virt.test"), "250 2.1.5 Ok")

    def test_recursion_limit(self):
        # Postfix counts the lookup that finds nothing more: info -> alice needs 2
        self.srv = self.start_server(main=self.params(virtual_alias_recursion_limit="2"),
                                     virtual_users=USERS)
        self.assertEqual(rcpt_reply(self.srv.port, "info@virt.test"), "250 2.1.5 Ok")
        # sales -> info -> alice: three for its first address
        self.assertEqual(rcpt_reply(self.srv.port, "sales@virt.test"),
                         "451 4.6.0 Alias expansion error")

    def test_address_length_limit(self):
        self.srv = self.start_server(
            main=self.params(virtual_alias_address_length_limit="20"), virtual_users=USERS)
        self.assertEqual(rcpt_reply(self.srv.port, "info@virt.test"), "250 2.1.5 Ok")
        self.assertEqual(rcpt_reply(self.srv.port, "long@virt.test"),
                         "451 4.6.0 Alias expansion error")
        self.assertIsNotNone(self.srv.wait_log(
            r"warning: long@virt.test: unreasonable virtual_alias_maps result "
            r"averyveryverylongname@virt.test\.\.\. -- message not accepted, try again later"))


class LocalAliasTest(AliasCase):
    def setUp(self):
        super().setUp()
        self.srv = self.start_server(main=self.params(), virtual_users=USERS)

    def test_postmaster_to_a_mailbox(self):
        refused, data = sendmail(self.srv.port, ["postmaster@local.test"])
        self.assertEqual((refused, data[0]), ({}, 250))
        headers, _ = harness.read_message(self.box("admin")[0])
        self.assertIn(("Delivered-To", "admin@virt.test"), headers)
        self.assertIsNotNone(self.srv.wait_log(
            r"to=<admin@virt.test>, orig_to=<postmaster@local.test>, relay=virtual"))

    def trace(self, user):
        """Delivered-To and Received (first line, no date) of each copy of user's, sorted."""
        out = []
        for path in self.box(user):
            headers, _ = harness.read_message(path)
            out.append([(n, re.sub(r"; .*", "", v.split("\n")[0])) for n, v in headers
                        if n in ("Delivered-To", "Received")])
        return sorted(out)

    def forwarded(self, *via):
        """What each local(8) that forwarded adds below the final Delivered-To, newest first."""
        out = []
        for v in via:
            out += [("Received", "by mx.example.test (mxgate)"), ("Delivered-To", v)]
        return out + [("Received", "from client.example (localhost [127.0.0.1])")]

    def test_several_targets_and_include(self):
        refused, data = sendmail(self.srv.port, ["team@local.test", "chain@local.test"])
        self.assertEqual((refused, data[0]), ({}, 250))
        # chain -> team is expanded in place by local(8): Delivered-To chain, not team
        for user in ("alice", "bob", "carol"):
            self.assertEqual(self.trace(user), [
                [("Delivered-To", "%s@virt.test" % user)] + self.forwarded("chain@local.test"),
                [("Delivered-To", "%s@virt.test" % user)] + self.forwarded("team@local.test")],
                user)
        for user in ("alice", "bob", "carol"):
            for orig in ("team", "chain"):
                self.assertIsNotNone(self.srv.wait_log(
                    r"to=<%s@virt.test>, orig_to=<%s@local.test>, relay=virtual" % (user, orig)))

    def test_delivered_to_of_each_local_hop(self):
        # fwd -> hop@virt.test (virtual alias) -> team@local.test -> alice, bob, carol: two
        # local(8) deliveries forwarded it, the newest on top
        refused, data = sendmail(self.srv.port, ["fwd@local.test"])
        self.assertEqual((refused, data[0]), ({}, 250))
        headers, body = harness.read_message(self.box("alice")[0])
        self.assertEqual(headers[0], ("Return-Path", "<sender@client.example>"))
        self.assertEqual(self.trace("alice"), [[("Delivered-To", "alice@virt.test")]
                                               + self.forwarded("team@local.test",
                                                                "fwd@local.test")])
        self.assertEqual(body, b"hello\n")
        self.assertIsNotNone(self.srv.wait_log(
            r"to=<carol@virt.test>, orig_to=<fwd@local.test>, relay=virtual"))

    def test_two_local_deliveries_two_copies(self):
        # split -> x1, x2 (local), each -> alice: two local(8) deliveries, two copies, as
        # Postfix's two forwarded queue files
        refused, data = sendmail(self.srv.port, ["split@virt.test", "Team@Local.test"])
        self.assertEqual((refused, data[0]), ({}, 250))
        self.assertEqual(self.trace("alice"), sorted([
            [("Delivered-To", "alice@virt.test")] + self.forwarded("team@local.test"),
            [("Delivered-To", "alice@virt.test")] + self.forwarded("x1@local.test"),
            [("Delivered-To", "alice@virt.test")] + self.forwarded("x2@local.test")]))
        self.assertIsNotNone(self.srv.wait_log(r"mxgate/qmgr.*: removed"))
        self.assertEqual(len(harness.log_matches(
            self.srv, r"to=<alice@virt.test>, orig_to=<split@virt.test>, relay=virtual")), 2)

    def test_command_and_file_targets(self):
        self.assertEqual(rcpt_reply(self.srv.port, "cmd@local.test"),
                         "451 4.3.5 Server configuration error")
        self.assertIsNotNone(self.srv.wait_log(
            r'warning: cmd@local.test: alias cmd: target "\|/usr/bin/procmail -a x" is a '
            r'command, and mxgate runs no commands'))
        self.assertEqual(rcpt_reply(self.srv.port, "tofile@local.test"),
                         "451 4.3.5 Server configuration error")
        self.assertIsNotNone(self.srv.wait_log(
            r'warning: tofile@local.test: alias tofile: target "/var/tmp/mbox" is a file, '
            r'and mxgate delivers only to Maildirs'))
        self.assertFalse(os.path.exists("/var/tmp/mbox"))

    def test_bad_targets(self):
        self.assertEqual(rcpt_reply(self.srv.port, "far@local.test"),
                         "550 5.1.1 <far@local.test>: Recipient address rejected: Alias "
                         "forwards to another domain; this server does not relay")
        self.assertIsNotNone(self.srv.wait_log(
            r"warning: far@local.test: alias target <friend@example.net> is outside"))
        self.assertEqual(rcpt_reply(self.srv.port, "nouser@local.test"),
                         "550 5.1.1 <nouser@local.test>: Recipient address rejected: Alias "
                         "target is an unknown user")
        self.assertEqual(rcpt_reply(self.srv.port, "badinc@local.test"),
                         "451 4.3.5 Server configuration error")
        self.assertIsNotNone(self.srv.wait_log(
            r"warning: badinc@local.test: alias badinc: cannot open include file "
            r".*/missing.inc: No such file or directory"))

    def test_unaliased_local_users_as_before(self):
        self.assertEqual(rcpt_reply(self.srv.port, "nosuch@local.test"),
                         "550 5.1.1 <nosuch@local.test>: Recipient address rejected: User "
                         "unknown in local recipient table")
        # a passwd user: delivered by the privileged delivery helper (tests/system/test_local.py)
        self.assertEqual(rcpt_reply(self.srv.port, "daemon@local.test"), "250 2.1.5 Ok")


class CheckTest(AliasCase):
    """`mxgate check` names every target in the text tables that mxgate cannot deliver to."""

    def run_check(self, params):
        srv = harness.Server(main=params, virtual_users=USERS)
        self.addCleanup(srv.cleanup)
        r = subprocess.run([harness.mxgate_binary(), "check", "-c", srv.dir],
                           capture_output=True, text=True, timeout=60)
        return r.returncode, r.stdout + r.stderr

    def test_check_names_targets(self):
        rc, out = self.run_check(self.params())
        va = os.path.join(self.tmp, "valias")
        al = os.path.join(self.tmp, "aliases")
        want = [
            va + ', line 9: virtual_alias_maps: "remote@virt.test" -> "someone@example.org": '
                 "outside mxgate's domains",
            va + ', line 10: virtual_alias_maps: "ghost@virt.test" -> "nobody@virt.test": '
                 "an unknown user",
            al + ', line 5: alias_maps: "cmd" -> "|/usr/bin/procmail -a x": mxgate runs no '
                 "commands",
            al + ', line 6: alias_maps: "tofile" -> "/var/tmp/mbox": mxgate writes no files',
            va + ', line 14: virtual_alias_maps: "long@virt.test" -> '
                 '"averyveryverylongname@virt.test": an unknown user',
            al + ', line 7: alias_maps: "far" -> "friend@example.net": outside',
            al + ', line 8: alias_maps: "nouser" -> "nobody@virt.test": an unknown user',
            al + ', line 9: alias_maps: "badinc" -> "%s/missing.inc": cannot open include file'
                 % self.tmp,
        ]
        for w in want:
            self.assertIn("mxgate: warning: " + w, out)
        for good in ('"info@virt.test"', '"team"', '"postmaster"', '"self@virt.test"',
                     '"chain"', '"@catch.test"'):
            self.assertNotIn(good, out)
        self.assertEqual(rc, 0, out)

    def test_check_reads_the_source_of_a_hash_table(self):
        spec = self.postalias("aliases.hashed", "cmd2: |/bin/cat\nok: alice@virt.test\n")
        src = spec[5:]
        rc, out = self.run_check(self.params(alias_maps=spec))
        self.assertIn('mxgate: warning: %s, line 1: alias_maps: "cmd2" -> "|/bin/cat": mxgate '
                      "runs no commands" % src, out)
        self.assertNotIn('"ok"', out)
        self.assertEqual(rc, 0, out)


class AliasesAsPostfixTest(postfixref.RcptCase, AliasCase):
    """The RCPT replies of the alias cases where Postfix 3.7 and mxgate answer alike."""
    ref_name = "aliases"

    def test_rcpt_replies_as_postfix(self):
        vmbox = self.write("vmbox", "".join("%s@virt.test %s/\n" % (u, u) for u in USERS))
        params = self.main_params(**dict(
            self.params(mydestination="local.test, both.test"),
            virtual_mailbox_domains="virt.test", virtual_mailbox_maps="texthash:" + vmbox))
        self.write("valias", VALIAS + "both.test whatever\n")
        rcpts = ["info@virt.test", "sales@virt.test", "self@virt.test", "ext+foo@virt.test",
                 "INFO@VIRT.TEST", "root@local.test", "known@alias.test", "nobody@alias.test",
                 "carol@catch.test", "x@elsewhere.test", "postmaster@local.test",
                 "team@local.test", "chain@local.test", "nosuch@local.test",
                 "nobody@virt.test", "admin@both.test", "team+x@local.test",
                 "info+x@virt.test", "Postmaster@local.test", "sales@VIRT.test",
                 "info%virt.test@local.test", "known+x@alias.test"]
        self.ref.start(params)
        srv = self.start_server(main=params, virtual_users=USERS)
        got = self.assert_rcpt_as_postfix(params, rcpts, ref_started=True, srv=srv)
        self.assertIn("RCPT nobody@alias.test: 550 5.1.1 <nobody@alias.test>: Recipient "
                      "address rejected: User unknown in virtual alias table", got)
        self.assertIn("RCPT info@virt.test: 250 2.1.5 Ok", got)
        # a domain in mydestination and virtual_alias_domains: both warn
        warn = "warning: do not list domain both.test in BOTH mydestination and " \
               "virtual_alias_domains"
        self.assertIsNotNone(srv.wait_log(re.escape(warn)))
        with open(os.path.join(self.ref.dir, "maillog")) as f:
            self.assertIn(warn, f.read())

    # Messages whose copies (how many, and their Delivered-To and Received lines) must be
    # Postfix's: one copy per RCPT and final address, the repeated RCPT, local(8)'s lines
    COPY_GROUPS = [["info@virt.test", "sales@virt.test"],
                   ["twice@virt.test", "info@virt.test", "INFO@virt.test"],
                   ["team@local.test", "chain@local.test"], ["fwd@local.test"],
                   ["split@virt.test"], ["root@local.test", "known@alias.test"]]

    @staticmethod
    def copies(base):
        """{subject: sorted [(mailbox, [(header, first line without the date)...])]}."""
        out = {}
        for path in harness.maildir_files(base):
            headers, _ = harness.read_message(path)
            subject = dict(headers)["Subject"]
            trace = [(n, re.sub(r"; .*|\(Postfix\)|\(mxgate\)", "", v.split("\n")[0]))
                     for n, v in headers if n in ("Return-Path", "Delivered-To", "Received")]
            out.setdefault(subject, []).append((path.split(os.sep)[-3], trace))
        return {k: sorted(v) for k, v in out.items()}

    def test_copies_as_postfix(self):
        vmbox = self.write("vmbox", "".join("%s@virt.test %s/\n" % (u, u) for u in USERS))
        params = self.main_params(**dict(
            self.params(), virtual_mailbox_domains="virt.test",
            virtual_mailbox_maps="texthash:" + vmbox))
        self.ref.start(params)
        srv = self.start_server(main=params, virtual_users=USERS)
        for port in (self.ref.port, srv.port):
            for i, rcpts in enumerate(self.COPY_GROUPS):
                refused, data = sendmail(port, rcpts, "Subject: g%d\r\n\r\nhi\r\n" % i)
                self.assertEqual((refused, data[0]), ({}, 250), (port, rcpts))
        got = self.copies(srv.vmail)          # mxgate: stored before its 250
        want_n = sum(len(v) for v in got.values())
        deadline = time.time() + 60           # Postfix: its queue delivers (and forwards) later
        while time.time() < deadline:
            want = self.copies(self.ref.vmail)
            if sum(len(v) for v in want.values()) >= want_n:
                time.sleep(1)                 # any copy beyond mxgate's shows up too
                want = self.copies(self.ref.vmail)
                break
            time.sleep(0.2)
        self.assertEqual(got, want)
        self.assertEqual(len(got["g0"]), 5)   # a check of the check: copies were compared
        self.assertEqual([m for m, _ in got["g4"]], ["alice", "alice"])


if __name__ == "__main__":
    unittest.main()
