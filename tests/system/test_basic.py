"""Basic system tests: banner, EHLO, deliveries (smtplib, swaks, as root and as an ordinary
user), the Postfix log lines, and `mxgate conf -d` against Postfix's `postconf -d`."""

import os
import pwd
import re
import shutil
import smtplib
import subprocess
import unittest

import harness
from harness import MxTestCase

HOST = "mx.example.test"
# main.cf shared by these tests (virtual_* lines come from virtual_users=).
BASE = dict(harness.BASE_MAIN)
EHLO_REPLY = [
    "250-mx.example.test",
    "250-PIPELINING",
    "250-SIZE 10240000",
    "250-VRFY",
    "250-ENHANCEDSTATUSCODES",
    "250-8BITMIME",
    "250-SMTPUTF8",
    "250 CHUNKING",
]
MESSAGE = ("From: a@example.org\r\nTo: alice@virt.test\r\nSubject: basic test\r\n\r\n"
           "Hello from the basic test.\r\nSecond line.\r\n")


def proc_uids(pid):
    """(real, effective, saved, fs) uids and gids of a process, from /proc."""
    uids = gids = None
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                uids = tuple(int(x) for x in line.split()[1:])
            elif line.startswith("Gid:"):
                gids = tuple(int(x) for x in line.split()[1:])
    return uids, gids


class BasicTest(MxTestCase):

    def server(self, **kw):
        main = dict(BASE)
        main.update(kw.pop("main", {}))
        kw.setdefault("virtual_users", ["alice"])
        return self.start_server(main=main, **kw)

    def assert_one_delivery(self, srv, body_lines, sender="a@example.org", rcpt="alice@virt.test"):
        files = harness.maildir(srv.vmail, "alice")
        self.assertEqual(len(files["new"]), 1, "files in alice/new: %r" % files["new"])
        self.assertEqual(files["tmp"], [], "leftover files in alice/tmp")
        self.assertEqual(harness.maildir_files(srv.vmail, "tmp"), [])
        with open(files["new"][0], "rb") as f:
            raw = f.read()
        self.assertNotIn(b"\r", raw, "stored message must have LF line endings")
        headers, body = harness.read_message(files["new"][0])
        names = [n.lower() for n, _ in headers]
        self.assertEqual(names[0], "return-path", "Return-Path must be the first header: %r" % names)
        self.assertEqual(headers[0][1], "<%s>" % sender)
        self.assertIn("delivered-to", names)
        self.assertEqual([v for n, v in headers if n.lower() == "delivered-to"], [rcpt])
        self.assertIn("received", names)
        self.assertEqual(names.count("return-path"), 1)
        for line in body_lines:
            self.assertIn(line.encode(), body)
        return files["new"][0], headers, body

    # -- banner and EHLO ---------------------------------------------------------------------

    def test_banner(self):
        srv = self.server()
        c = self.connect(srv)
        c.expect("220 mx.example.test ESMTP mxgate")
        c.send("QUIT\r\n")
        c.expect("221 2.0.0 Bye")
        self.assertTrue(c.closed(), "server must close after QUIT")

    def test_ehlo_keywords(self):
        srv = self.server()
        c = self.connect(srv)
        c.expect(220)
        r = c.cmd("EHLO client.example")
        self.assertEqual(r.lines, EHLO_REPLY)
        r = c.cmd("HELO client.example")
        self.assertEqual(r.lines, ["250 mx.example.test"])
        c.cmd("QUIT")

    # -- deliveries --------------------------------------------------------------------------

    def test_smtplib_delivery_virtual(self):
        srv = self.server()
        with smtplib.SMTP("127.0.0.1", srv.port, local_hostname="client.example", timeout=15) as s:
            refused = s.sendmail("a@example.org", ["alice@virt.test"], MESSAGE)
            self.assertEqual(refused, {})
        path, headers, body = self.assert_one_delivery(srv, ["Hello from the basic test.", "Second line."])
        self.assertTrue(body.endswith(b"Hello from the basic test.\nSecond line.\n"), body)
        received = [v for n, v in headers if n.lower() == "received"]
        self.assertEqual(len(received), 1, received)
        self.assertIn("client.example", received[0])
        self.assertIn("localhost [127.0.0.1]", received[0])
        self.assertIn("mx.example.test", received[0])

    def test_swaks_delivery(self):
        swaks = shutil.which("swaks")
        self.assertIsNotNone(swaks, "swaks is not installed (apt-get install swaks)")
        srv = self.server()
        p = subprocess.run([swaks, "--to", "alice@virt.test", "--from", "a@example.org",
                            "--helo", "client.example", "--server", "127.0.0.1:%d" % srv.port,
                            "--body", "Sent by swaks.", "--timeout", "15"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        out = p.stdout.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, "swaks failed:\n" + out)
        self.assertRegex(out, r"<-  250 2\.0\.0 Ok: queued as [0-9A-Za-z]+")
        self.assert_one_delivery(srv, ["Sent by swaks."])

    def test_delivery_as_ordinary_user(self):
        """Started by an ordinary user the daemon runs as that user and delivers where it may
        write.  A root harness uses `nobody` with the directory chown'ed to it."""
        user = "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        pw = pwd.getpwnam(user)
        srv = self.server(as_user=user if os.geteuid() == 0 else None)
        uids, gids = proc_uids(srv.pid)
        self.assertEqual(uids, (pw.pw_uid,) * 4)
        with smtplib.SMTP("127.0.0.1", srv.port, local_hostname="client.example", timeout=15) as s:
            self.assertEqual(s.sendmail("a@example.org", ["alice@virt.test"], MESSAGE), {})
        path, _, _ = self.assert_one_delivery(srv, ["Hello from the basic test."])
        self.assertEqual(os.stat(path).st_uid, pw.pw_uid)

    def test_root_start_drops_to_mail_owner(self):
        """As root the daemon drops to mail_owner (default "mxgate") for good; as an ordinary
        user it stays that user."""
        srv = self.server()
        uids, gids = proc_uids(srv.pid)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("mxgate")
            self.assertEqual(uids, (pw.pw_uid,) * 4, "all of real/effective/saved/fs uid")
            self.assertEqual(gids, (pw.pw_gid,) * 4)
        else:
            self.assertEqual(uids, (os.geteuid(),) * 4)
        c = self.connect(srv)
        c.expect(220)
        c.cmd("QUIT")

    def test_thread_names(self):
        """Each thread is named for top -H and perf: the loops, the pools, the log writer."""
        srv = self.server()
        c = self.connect(srv)       # served: every loop and pool has started
        c.expect(220)
        c.cmd("QUIT")
        task = "/proc/%d/task" % srv.pid
        names = set()
        for t in os.listdir(task):
            with open(os.path.join(task, t, "comm")) as f:
                names.add(f.read().strip())
        for want in ("mxg writers", "mxg lookups", "mxg remote", "mxg config", "mxg disk",
                     "mxg log"):
            self.assertIn(want, names)
        if os.cpu_count() > 1:
            self.assertIn("mxg loop 1", names)

    # -- log lines ---------------------------------------------------------------------------

    def test_log_lines_delivery(self):
        srv = self.server()
        s = smtplib.SMTP("127.0.0.1", srv.port, local_hostname="client.example", timeout=15)
        s.ehlo()
        self.assertEqual(s.mail("a@example.org")[0], 250)
        self.assertEqual(s.rcpt("alice@virt.test")[0], 250)
        code, msg = s.data(MESSAGE)
        self.assertEqual(code, 250, msg)
        m = re.fullmatch(rb"2\.0\.0 Ok: queued as ([0-9A-Za-z]+)", msg)
        self.assertIsNotNone(m, msg)
        qid = m.group(1).decode()
        s.quit()
        disc = "disconnect from localhost[127.0.0.1] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5"
        self.assertIsNotNone(srv.wait_log(re.escape(disc) + "$"), "\n".join(srv.log_lines()))
        lines = srv.log_lines()
        prefix = re.compile(r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ mxgate/smtpd\[\d+\]: ")
        msgs = [prefix.sub("", ln) for ln in lines if prefix.match(ln)]
        self.assertIn("connect from localhost[127.0.0.1]", msgs, "\n".join(lines))
        self.assertIn("%s: client=localhost[127.0.0.1]" % qid, msgs, "\n".join(lines))
        self.assertIn(disc, msgs)
        i = msgs.index("connect from localhost[127.0.0.1]")
        self.assertLess(i, msgs.index("%s: client=localhost[127.0.0.1]" % qid))
        self.assertLess(msgs.index("%s: client=localhost[127.0.0.1]" % qid), msgs.index(disc))
        self.assertRegex(lines[0], r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ mxgate/\w+\[\d+\]: ")

    def test_reject_log_line(self):
        srv = self.server()
        c = self.connect(srv)
        c.expect(220)
        c.send("EHLO client.example\r\n")
        c.expect(250)
        c.send("MAIL FROM:<a@example.org>\r\n")
        c.expect("250 2.1.0 Ok")
        c.send("RCPT TO:<nosuch@local.test>\r\n")
        c.expect("550 5.1.1 <nosuch@local.test>: Recipient address rejected: "
                 "User unknown in local recipient table")
        c.send("QUIT\r\n")
        c.expect(221)
        want = ("NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 550 5.1.1 <nosuch@local.test>: "
                "Recipient address rejected: User unknown in local recipient table; "
                "from=<a@example.org> to=<nosuch@local.test> proto=ESMTP helo=<client.example>")
        line = srv.wait_log(r"mxgate/smtpd\[\d+\]: " + re.escape(want) + "$")
        self.assertIsNotNone(line, "missing log line:\n%s\nlog:\n%s" % (want, "\n".join(srv.log_lines())))
        self.assertIsNotNone(srv.wait_log(re.escape(
            "disconnect from localhost[127.0.0.1] ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4") + "$"))
        self.assertEqual(harness.all_maildir_files(srv.vmail), [])


# -- mxgate conf -d against postconf -d ------------------------------------------------------------

POSTCONF_D = os.path.join(harness.REPO, "tests", "compat", "postconf-d.txt")

# Receive-side limits: each must be printed by `mxgate conf -d` exactly as Postfix 3.7 does.
RECEIVE_LIMITS = """
anvil_rate_time_unit anvil_status_update_time default_process_limit line_length_limit
message_size_limit smtpd_client_auth_rate_limit smtpd_client_connection_count_limit
smtpd_client_connection_rate_limit
smtpd_client_event_limit_exceptions smtpd_client_message_rate_limit
smtpd_client_new_tls_session_rate_limit smtpd_client_recipient_rate_limit smtpd_error_sleep_time
smtpd_forbid_bare_newline_exclusions smtpd_forbid_bare_newline_reject_code smtpd_forbidden_commands
smtpd_hard_error_limit smtpd_junk_command_limit smtpd_min_data_rate 
smtpd_per_request_deadline smtpd_recipient_limit smtpd_recipient_overshoot_limit
smtpd_soft_error_limit smtpd_timeout smtpd_relay_restrictions smtpd_recipient_restrictions
smtpd_reject_unlisted_recipient relay_domains_reject_code unknown_local_recipient_reject_code
unknown_virtual_mailbox_reject_code smtpd_noop_commands disable_vrfy_command smtpd_helo_required
soft_bounce smtpd_banner local_recipient_maps
""".split()

# DESIGN.md "Deliberate differences": mxgate's own default, printed by `mxgate conf -d`.
DELIBERATE = {
    "mail_name": "mxgate",
    "mail_owner": "mxgate",
    "syslog_name": "${multi_instance_name?{$multi_instance_name}:{mxgate}}",
    "compatibility_level": "3.6",
    "smtpd_forbid_bare_newline": "normalize",
    "smtpd_forbid_unauth_pipelining": "yes",
    "smtpd_client_ipv6_prefix_length": "84",
    "config_directory": "/etc/mxgate",
    "alias_maps": "",
}
# Computed from the host at run time by both programs: not comparable with a file.
COMPUTED = {"myhostname", "mydomain", "mynetworks", "process_id", "process_name"}


def read_postconf(text):
    out = {}
    for line in text.splitlines():
        name, sep, value = line.partition(" =")
        if sep:
            out[name] = value[1:] if value.startswith(" ") else value
    return out


class ConfDefaultsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        with open(POSTCONF_D) as f:
            cls.postfix = read_postconf(f.read())

    def conf_d(self, *names):
        binary = harness.mxgate_binary()
        self.assertTrue(os.access(binary, os.X_OK), "%s is missing (run `make`)" % binary)
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            open(os.path.join(d, "main.cf"), "w").close()
            p = subprocess.run([binary, "conf", "-c", d, "-d"] + list(names),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30,
                               env=harness.sanitizer_env())
        err = p.stderr.decode("utf-8", "replace")
        self.assertEqual(harness.sanitizer_reports(err), [], err)
        self.assertEqual(p.returncode, 0, err)
        return p.stdout.decode("utf-8", "replace"), err

    def test_receive_limits_equal_postconf_d(self):
        out, err = self.conf_d(*RECEIVE_LIMITS)
        got = read_postconf(out)
        for name in RECEIVE_LIMITS:
            with self.subTest(name):
                self.assertIn(name, self.postfix, "not in postconf-d.txt")
                self.assertIn(name, got, "`mxgate conf -d %s` printed nothing (stderr: %s)" % (name, err))
                self.assertEqual("%s = %s" % (name, got[name]), "%s = %s" % (name, self.postfix[name]))

    def test_deliberate_differences(self):
        out, err = self.conf_d(*DELIBERATE)
        got = read_postconf(out)
        for name, want in DELIBERATE.items():
            with self.subTest(name):
                self.assertEqual(got.get(name), want)

    def test_every_shared_parameter_equals_postconf_d(self):
        """Whatever mxgate prints for a parameter Postfix also has must be Postfix's default."""
        out, err = self.conf_d()
        got = read_postconf(out)
        self.assertGreater(len(got), 0, "`mxgate conf -d` printed nothing")
        lines = out.splitlines()
        self.assertEqual(lines, sorted(lines, key=lambda ln: ln.split(" =")[0]), "output must be sorted by name")
        for name, value in got.items():
            if name in DELIBERATE or name in COMPUTED or name not in self.postfix:
                continue
            with self.subTest(name):
                self.assertEqual("%s = %s" % (name, value), "%s = %s" % (name, self.postfix[name]))


if __name__ == "__main__":
    unittest.main()
