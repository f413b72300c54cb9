"""Local users (mydestination, local_recipient_maps = proxy:unix:passwd.byname) through the
privileged delivery helper (src/deliver/lhelper.h), as root: mxgate drops to mail_owner and the
helper, forked before the drop, writes each copy as its recipient.

  - home_mailbox = Maildir/, home_mailbox = Mailbox, and the mbox in mail_spool_directory
    (a temporary directory): the file, its owner, its bytes (From_ line, >From, blank line),
    and the log line local(8) writes;
  - the mbox bytes are those Postfix 3.7's local(8) writes for the same message (postfixref);
  - mail for root: written with default_privs (nobody) rights;
  - mailbox_size_limit: the whole message gets 451, no copy anywhere (the other recipient's
    Maildir copy is rolled back), the mbox is as it was;
  - a ~/Mailbox that is a symlink out of the home directory: refused, nothing written there;
  - a user with a ~/.forward: 451, a log line, nothing delivered;
  - a write failure in the helper (tests/shim/faultfs.c): 451, the mbox as it was;
  - the helper process: root, descriptors 0-3 only, its own network namespace; the daemon
    runs as mail_owner with no way back; a virtual mailbox of another uid goes through it;
  - started as an ordinary user: no helper, a local user of another uid gets 451 at RCPT with
    a log line that says why; one of the same uid is delivered.

Test users mxgtl1 and mxgtl2 are created with useradd (homes under a temporary directory) and
removed in tearDown.
"""

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
import unittest

import harness
import postfixref

USERS = ("mxgtl1", "mxgtl2")
MSG = (b"From: Sender <a@example.org>\r\nTo: mxgtl1@local.test\r\nSubject: local test\r\n"
       b"Date: Tue, 01 Dec 2026 12:00:00 +0000\r\nMessage-ID: <local-test@example.org>\r\n"
       b"\r\nFrom the start of a line\r\n>From already quoted\r\nFrom\r\n"
       b"a line\r\n.. a dot\r\n")


def need_root(test):
    if os.geteuid() != 0:
        test.fail("this test needs root (CI runs as root)")


def read(path):
    with open(path, "rb") as f:
        return f.read()


class LocalCase(harness.MxTestCase):
    def setUp(self):
        need_root(self)
        self.top = tempfile.mkdtemp(prefix="mxgate-local-")
        os.chmod(self.top, 0o755)
        self.spool = os.path.join(self.top, "spool")
        os.mkdir(self.spool)
        os.chmod(self.spool, 0o1777)
        self.pw = {}
        for u in USERS:
            subprocess.run(["userdel", u], capture_output=True)
            home = os.path.join(self.top, u)
            subprocess.run(["useradd", "-M", "-d", home, "-s", "/usr/sbin/nologin", u],
                           check=True, capture_output=True)
            pw = pwd.getpwnam(u)
            os.mkdir(home, 0o700)
            os.chown(home, pw.pw_uid, pw.pw_gid)
            self.pw[u] = pw

    def tearDown(self):
        for u in USERS:
            subprocess.run(["userdel", u], capture_output=True)
        shutil.rmtree(self.top, ignore_errors=True)

    def server(self, **main):
        params = {"mydestination": "local.test", "mail_spool_directory": self.spool}
        params.update(main)
        return self.start_server(main=params, virtual_users=["vuser"])

    def send(self, srv, rcpts, data=MSG, want_data="250", sender="a@example.org"):
        c = self.connect(srv)
        c.expect(220)
        c.cmd("EHLO client.example")
        self.assertEqual(c.cmd("MAIL FROM:<%s>" % sender).code, 250)
        for r in rcpts:
            rep = c.cmd("RCPT TO:<%s>" % r)
            if rep.code != 250:
                c.cmd("QUIT")
                return rep
        self.assertEqual(c.cmd("DATA").code, 354)
        c.send(data + b".\r\n")
        rep = c.read_reply()
        self.assertTrue(rep.text.startswith(want_data), "%s (log: %s)"
                        % (rep.text, "\n".join(srv.log_lines()[-8:])))
        c.cmd("QUIT")
        return rep

    def home(self, u, *p):
        return os.path.join(self.pw[u].pw_dir, *p)

    def assert_owned(self, path, user):
        st = os.stat(path)
        self.assertEqual((st.st_uid, st.st_mode & 0o777), (self.pw[user].pw_uid, 0o600), path)


class HelperDeliveryTest(LocalCase):
    def test_home_maildir(self):
        srv = self.server(home_mailbox="Maildir/")
        rep = self.send(srv, ["mxgtl1@local.test"])
        new = os.listdir(self.home("mxgtl1", "Maildir", "new"))
        self.assertEqual(len(new), 1)
        path = self.home("mxgtl1", "Maildir", "new", new[0])
        self.assert_owned(path, "mxgtl1")
        self.assertEqual(os.stat(self.home("mxgtl1", "Maildir")).st_uid, self.pw["mxgtl1"].pw_uid)
        data = read(path)
        self.assertTrue(data.startswith(b"Return-Path: <a@example.org>\n"
                                        b"X-Original-To: mxgtl1@local.test\n"
                                        b"Delivered-To: mxgtl1@local.test\nReceived: "), data)
        self.assertIn(b"\n\nFrom the start of a line\n", data)     # no quoting in a Maildir
        qid = rep.text.split()[-1]
        srv.expect_log(r"mxgate/local\[\d+\]: %s: to=<mxgtl1@local.test>, relay=local, "
                     r"delay=[\d.e-]+, dsn=2\.0\.0, status=sent \(delivered to maildir\)" % qid)

    def test_home_mailbox(self):
        srv = self.server(home_mailbox="Mailbox")
        self.send(srv, ["mxgtl1@local.test", "mxgtl2@local.test"])
        for u in USERS:
            path = self.home(u, "Mailbox")
            self.assert_owned(path, u)
            data = read(path)
            self.assertRegex(data, rb"^From a@example\.org  \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d "
                             rb"\d{4}\nReturn-Path: <a@example\.org>\nX-Original-To: "
                             + u.encode() + rb"@local\.test\nDelivered-To: "
                             + u.encode() + rb"@local\.test\n")
        srv.expect_log(r"mxgate/local\[\d+\]: \w+: to=<mxgtl2@local.test>, relay=local, .*"
                     r"status=sent \(delivered to mailbox\)")

    def test_spool_mbox(self):
        srv = self.server()
        self.send(srv, ["mxgtl1@local.test"])
        self.send(srv, ["mxgtl1@local.test"], sender="")
        path = os.path.join(self.spool, "mxgtl1")
        self.assert_owned(path, "mxgtl1")
        data = read(path)
        msgs = re.split(rb"(?m)^(?=From )", data)
        self.assertEqual([m[:20] for m in msgs if m], [b"From a@example.org  ", b"From MAILER-DAEMON  "])
        for m in msgs[1:]:
            self.assertTrue(m.endswith(b"\n. a dot\n\n"), m)      # the blank line
            # only "From " is quoted, as Postfix's MAIL_COPY_QUOTE (no mboxrd ">>From")
            self.assertIn(b"\n\n>From the start of a line\n>From already quoted\nFrom\n", m)
        self.assertIn(b"Return-Path: <>\n", msgs[2])
        self.assertFalse(os.path.exists(path + ".lock"))
        self.assertFalse(os.path.exists(self.home("mxgtl1", "Maildir")))

    def test_two_copies_in_one_mbox(self):
        # mxgtl1 and mxgtl1+x: two recipients, two copies (Postfix's duplicate filter keys on
        # the original recipient), one mbox: both are written under one lock, at once
        srv = self.server(recipient_delimiter="+")
        t0 = time.monotonic()
        self.send(srv, ["mxgtl1@local.test", "mxgtl1+x@local.test"])
        self.assertLess(time.monotonic() - t0, 10)
        data = read(os.path.join(self.spool, "mxgtl1"))
        msgs = [m for m in re.split(rb"(?m)^(?=From )", data) if m]
        self.assertEqual(len(msgs), 2, data)
        self.assertEqual(sorted(re.findall(rb"(?m)^X-Original-To: (.*)$", data)),
                         [b"mxgtl1+x@local.test", b"mxgtl1@local.test"])
        for m in msgs:
            self.assertTrue(m.endswith(b"\n. a dot\n\n"), m)
        self.assertFalse(os.path.exists(os.path.join(self.spool, "mxgtl1.lock")))
        # a failure undoes both: over the size limit, the mbox stays as it was
        srv.stop()
        srv = self.server(recipient_delimiter="+", mailbox_size_limit=str(len(data) + len(data) // 2 + 10))
        self.send(srv, ["mxgtl1@local.test", "mxgtl1+x@local.test"], want_data="451")
        self.assertEqual(read(os.path.join(self.spool, "mxgtl1")), data)

    def test_root_as_default_privs(self):
        srv = self.server()
        self.send(srv, ["root@local.test"])
        path = os.path.join(self.spool, "root")
        st = os.stat(path)
        nobody = pwd.getpwnam("nobody")
        self.assertEqual((st.st_uid, st.st_gid), (nobody.pw_uid, nobody.pw_gid))
        self.assertIn(b"Delivered-To: root@local.test\n", read(path))

    def test_over_quota_whole_message_deferred(self):
        srv = self.server(mailbox_size_limit="1500", home_mailbox="Mailbox")
        # mxgtl2's mailbox is nearly full; mxgtl1's copy must be undone too
        box = self.home("mxgtl2", "Mailbox")
        with open(box, "wb") as f:
            f.write(b"From x  Mon Jan  1 00:00:00 2024\n\n" + b"x" * 1200 + b"\n\n")
        os.chown(box, self.pw["mxgtl2"].pw_uid, self.pw["mxgtl2"].pw_gid)
        os.chmod(box, 0o600)
        before = read(box)
        self.send(srv, ["mxgtl1@local.test", "mxgtl2@local.test"], want_data="451 4.3.0")
        self.assertEqual(read(box), before)
        self.assertFalse(os.path.exists(self.home("mxgtl1", "Mailbox"))
                         and os.path.getsize(self.home("mxgtl1", "Mailbox")) > 0)
        srv.expect_log(r"error: \w+: local delivery failed: write %s: File too large" % re.escape(box))
        self.assertFalse(os.path.exists(box + ".lock"))

    def test_over_quota_maildir(self):
        srv = self.server(mailbox_size_limit="300", home_mailbox="Maildir/")
        self.send(srv, ["mxgtl1@local.test", "vuser@virt.test"], want_data="451 4.3.0")
        self.assertEqual(harness.all_maildir_files(self.pw["mxgtl1"].pw_dir), [])
        self.assertEqual(harness.all_maildir_files(srv.vmail), [])
        srv.expect_log(r"local delivery failed: write .*File too large")

    def test_symlink_out_of_home_refused(self):
        srv = self.server(home_mailbox="Mailbox")
        target = os.path.join(self.top, "elsewhere")
        with open(target, "wb") as f:
            f.write(b"precious\n")
        os.chmod(target, 0o666)
        os.symlink(target, self.home("mxgtl1", "Mailbox"))
        self.send(srv, ["mxgtl1@local.test"], want_data="451 4.3.0")
        self.assertEqual(read(target), b"precious\n")
        srv.expect_log(r"local delivery failed: open mailbox %s: Too many levels of symbolic links"
                     % re.escape(self.home("mxgtl1", "Mailbox")))

    def test_home_mailbox_outside_home_refused(self):
        srv = self.server(home_mailbox="../mxgtl2/Mailbox")
        rep = self.send(srv, ["mxgtl1@local.test"])
        self.assertEqual(rep.text, "451 4.3.5 Server configuration error")
        self.assertFalse(os.path.exists(self.home("mxgtl2", "Mailbox")))
        srv.expect_log(r"mxgtl1@local.test: home_mailbox = \.\./mxgtl2/Mailbox: not a path inside")

    def test_dot_forward_tempfails(self):
        srv = self.server()
        fwd = self.home("mxgtl1", ".forward")
        with open(fwd, "w") as f:
            f.write("someone@elsewhere.example\n")
        self.send(srv, ["mxgtl1@local.test"], want_data="451 4.3.0")
        self.assertFalse(os.path.exists(os.path.join(self.spool, "mxgtl1")))
        srv.expect_log(r"local delivery failed: mxgtl1 has a ~/\.forward \(%s\), which mxgate "
                     r"does not follow" % re.escape(fwd))

    def test_write_failure_in_helper(self):
        box = os.path.join(self.spool, "mxgtl1")
        params = {"mydestination": "local.test", "mail_spool_directory": self.spool}
        srv = self.start_server(main=params, env=harness.faultfs_env(
            MXGATE_FAULT="write", MXGATE_FAULT_PATH=box, MXGATE_FAULT_AFTER="1"))
        with open(box, "wb") as f:
            f.write(b"From x  Mon Jan  1 00:00:00 2024\nSubject: old\n\nold\n\n")
        os.chown(box, self.pw["mxgtl1"].pw_uid, self.pw["mxgtl1"].pw_gid)
        os.chmod(box, 0o600)
        before = read(box)
        big = MSG + b"y" * 200 + b"\r\n"
        big = big + (b"z" * 998 + b"\r\n") * 200          # more than one write of 64 KB
        self.send(srv, ["mxgtl1@local.test"], data=big, want_data="451 4.3.0")
        self.assertEqual(read(box), before)
        srv.expect_log(r"local delivery failed: write %s: Input/output error" % re.escape(box))


class HelperProcessTest(LocalCase):
    """The helper keeps root and nothing else; the network side runs as mail_owner."""

    def children(self, pid):
        out = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open("/proc/%s/stat" % d) as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    if int(fields[1]) == pid:
                        out.append(int(d))
                except OSError:
                    pass
        return out

    def test_helper_process(self):
        srv = self.server()
        helpers = [p for p in self.children(srv.pid)
                   if read("/proc/%d/comm" % p).strip() == b"mxgate-helper"]
        self.assertEqual(len(helpers), 1, self.children(srv.pid))
        h = helpers[0]

        def ids(pid):
            with open("/proc/%d/status" % pid) as f:
                return {k: v.split() for k, v in (l.split(":", 1) for l in f if ":" in l)}
        self.assertEqual(ids(h)["Uid"][:2], ["0", "0"])
        owner = pwd.getpwnam("mxgate").pw_uid
        self.assertEqual(ids(srv.pid)["Uid"], [str(owner)] * 4)     # the daemon cannot regain root
        self.assertEqual(sorted(int(n) for n in os.listdir("/proc/%d/fd" % h)), [0, 1, 2, 3])
        self.assertTrue(os.readlink("/proc/%d/fd/3" % h).startswith("socket:"))
        self.assertNotEqual(os.readlink("/proc/%d/ns/net" % h), os.readlink("/proc/%d/ns/net" % srv.pid))
        # mail still flows through it
        self.send(srv, ["mxgtl1@local.test"])
        self.assert_owned(os.path.join(self.spool, "mxgtl1"), "mxgtl1")

    def test_virtual_mailbox_of_another_uid(self):
        pw = self.pw["mxgtl2"]
        srv = self.server(virtual_uid_maps="static:%d" % pw.pw_uid,
                          virtual_gid_maps="static:%d" % pw.pw_gid)
        os.chown(srv.vmail, pw.pw_uid, pw.pw_gid)
        self.send(srv, ["vuser@virt.test"])
        files = harness.maildir_files(srv.vmail)
        self.assertEqual(len(files), 1)
        self.assert_owned(files[0], "mxgtl2")
        srv.expect_log(r"mxgate/virtual\[\d+\]: \w+: to=<vuser@virt.test>, relay=virtual, .*"
                     r"status=sent \(delivered to maildir\)")


class MboxAsPostfixTest(LocalCase):
    """The mbox that mxgate writes is the one Postfix 3.7's local(8) writes for the same
    message, but for the From_ line's time and the Received: header (queue id, time, name)."""

    def normalize(self, data):
        data = re.sub(rb"(?m)^(From \S+  )\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$", rb"\1TIME", data)
        return re.sub(rb"(?m)^Received: .*\n(?:[ \t].*\n)*", b"Received: X\n", data)

    def test_mbox_bytes_as_postfix(self):
        ref = postfixref.Reference("local-mbox")
        self.addCleanup(shutil.rmtree, ref.dir, True)
        self.addCleanup(ref.stop)
        rspool = os.path.join(ref.dir, "spool")
        os.mkdir(rspool)
        os.chmod(rspool, 0o1777)
        ref.start({"myhostname": "mx.example.test", "mydestination": "local.test",
                   "local_recipient_maps": "unix:passwd.byname", "mail_spool_directory": rspool,
                   "biff": "no"})
        srv = self.server(local_recipient_maps="unix:passwd.byname")
        for sender in ("a@example.org", ""):
            with harness.Client(ref.port, timeout=30) as c:
                c.read_reply()
                c.cmd("EHLO client.example")
                self.assertEqual(c.cmd("MAIL FROM:<%s>" % sender).code, 250)
                self.assertEqual(c.cmd("RCPT TO:<mxgtl1@local.test>").code, 250)
                self.assertEqual(c.cmd("DATA").code, 354)
                c.send(MSG + b".\r\n")
                self.assertEqual(c.read_reply().code, 250)
                c.cmd("QUIT")
            self.send(srv, ["mxgtl1@local.test"], sender=sender)
        rbox = os.path.join(rspool, "mxgtl1")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if os.path.exists(rbox) and read(rbox).count(b"\nFrom ") >= 1 \
                    and read(rbox).endswith(b"\n\n") and len(re.findall(rb"(?m)^From ", read(rbox))) == 2:
                break
            time.sleep(0.1)
        theirs = read(rbox)
        ours = read(os.path.join(self.spool, "mxgtl1"))
        self.assertEqual(len(re.findall(rb"(?m)^From ", theirs)), 2, theirs)
        self.assertEqual(self.normalize(ours), self.normalize(theirs))
        st = os.stat(rbox)
        self.assertEqual(st.st_uid, self.pw["mxgtl1"].pw_uid)


class NoHelperTest(harness.MxTestCase):
    """Started as an ordinary user: no helper; only that user's own mailbox is written."""

    def deferred(self, srv, rcpt, why, what):
        """A session whose RCPT TO:<rcpt> gets the 451 with why, and the warning that says
        what needs the helper; returns the client, inside its transaction."""
        c = self.connect(srv)
        c.expect(220)
        c.cmd("EHLO client.example")
        c.cmd("MAIL FROM:<a@example.org>")
        rep = c.cmd("RCPT TO:<%s>" % rcpt)
        self.assertEqual(rep.text, "451 4.3.0 <%s>: Recipient address rejected: %s" % (rcpt, why))
        self.assertIsNotNone(srv.wait_log(r"warning: %s: %s needs the privileged delivery "
                                          r"helper, which runs only when mxgate is started as "
                                          r"root; deferring" % (re.escape(rcpt), what)),
                             srv.log_lines())
        return c

    def test_other_uid_deferred_own_uid_delivered(self):
        need_root(self)
        top = tempfile.mkdtemp(prefix="mxgate-local-nohelper-")
        self.addCleanup(shutil.rmtree, top, True)
        os.chmod(top, 0o755)
        spool = os.path.join(top, "spool")
        os.mkdir(spool)
        os.chmod(spool, 0o1777)
        subprocess.run(["userdel", "mxgtl1"], capture_output=True)
        subprocess.run(["useradd", "-M", "-d", os.path.join(top, "h"), "mxgtl1"], check=True)
        self.addCleanup(subprocess.run, ["userdel", "mxgtl1"], capture_output=True)
        srv = self.start_server(main={"mydestination": "local.test",
                                      "mail_spool_directory": spool}, as_user="nobody")
        c = self.deferred(srv, "mxgtl1@local.test", "Local delivery is not available",
                          r"delivery to %s/mxgtl1 as uid \d+" % re.escape(spool))
        self.assertEqual(c.cmd("RCPT TO:<nobody@local.test>").code, 250)
        self.assertEqual(c.cmd("DATA").code, 354)
        c.send(MSG + b".\r\n")
        self.assertEqual(c.read_reply().code, 250)
        c.cmd("QUIT")
        path = os.path.join(spool, "nobody")
        self.assertEqual(os.stat(path).st_uid, pwd.getpwnam("nobody").pw_uid)
        self.assertTrue(read(path).startswith(b"From a@example.org  "))

    def test_virtual_mailbox_of_another_uid_deferred(self):
        need_root(self)
        other = pwd.getpwnam("mxgate")
        srv = self.start_server(main={"virtual_uid_maps": "static:%d" % other.pw_uid,
                                      "virtual_gid_maps": "static:%d" % other.pw_gid},
                                virtual_users=["vuser"], as_user="nobody")
        c = self.deferred(srv, "vuser@virt.test", "Mailbox owner differs from the server user",
                          r"delivery as uid %d" % other.pw_uid)
        c.cmd("QUIT")


class CheckTest(harness.MxTestCase):
    def test_mailbox_command_refused(self):
        d = tempfile.mkdtemp(prefix="mxgate-local-check-")
        self.addCleanup(shutil.rmtree, d, True)
        with open(os.path.join(d, "main.cf"), "w") as f:
            f.write("mydestination = local.test\nmailbox_command = /usr/bin/procmail\n")
        rc, out, err = self.mxgate("check", "-c", d)
        self.assertEqual(rc, 1)
        self.assertRegex(err, r"main\.cf, line 2: mailbox_command = /usr/bin/procmail: "
                         r"parameter is not implemented by mxgate, refused: mxgate runs no "
                         r"shell command")
        rc, out, err = self.mxgate("check", "-c", d)
        with open(os.path.join(d, "main.cf"), "w") as f:
            f.write("mydestination = local.test\nmailbox_delivery_lock = fcntl, bogus\n")
        rc, out, err = self.mxgate("check", "-c", d)
        self.assertEqual(rc, 1)
        self.assertIn('mailbox_delivery_lock = fcntl, bogus: unknown lock style "bogus"', err)


if __name__ == "__main__":
    unittest.main()
