"""The disk spool, free space and stale files (issue 10 items 1, 5, 6), seen from outside:
replies, the stored files, the spool directory and the log lines.

  * Bodies stream to unnamed files in mxgate_spool_directory: large messages, many at once,
    are stored whole and the spool directory holds no name afterwards; a write error on the
    spool file (the faultfs shim, matched on the spool directory's path) gives 452 4.3.1 for
    ENOSPC and 451 4.3.0 for EIO, and nothing is stored.
  * Free space at MAIL (Postfix's smtpd_check_queue): a small tmpfs holds the spool or the
    mailboxes; below 1.5 x message_size_limit or below queue_minfree, MAIL gets 452 4.3.1 and
    Postfix's reject and warning lines.  Needs root (mount).
  * Stale files: every file in the spool directory at start-up, and Maildir tmp/ files older
    than 36 hours, are removed (logged); a fresh tmp/ file stays.
"""

import os
import re
import smtplib
import subprocess
import tempfile
import threading
import time
import unittest

import harness
from harness import MxTestCase

BASE = dict(harness.BASE_MAIN)
QUEUED = "250 2.0.0 Ok: queued as "
NO_STORAGE = "452 4.3.1 Insufficient system storage"
WRITE_ERROR = "451 4.3.0 Error: queue file write error"


def body_of(n_lines, tag="x"):
    return "".join("%s %07d %s\r\n" % (tag, i, "y" * 60) for i in range(n_lines))


class SpoolCase(MxTestCase):

    def server(self, users=("alice", "bob"), main=None, **kw):
        m = dict(BASE)
        m.update(main or {})
        return self.start_server(main=m, virtual_users=list(users), **kw)

    def session(self, srv):
        c = self.connect(srv)
        c.expect("220")
        c.send("EHLO client.example\r\n")
        c.expect("250")
        return c

    def send_message(self, c, body, rcpt="alice@virt.test", timeout=60):
        c.send("MAIL FROM:<a@example.org>\r\n")
        c.expect("250")
        c.send("RCPT TO:<%s>\r\n" % rcpt)
        c.expect("250")
        c.send("DATA\r\n")
        c.expect("354")
        c.send("Subject: spool\r\n\r\n" + body + ".\r\n")
        return c.read_reply(timeout=timeout).text

    def spool_names(self, srv):
        return [f for f in os.listdir(srv.params["mxgate_spool_directory"]) if f != "journal"]


class StreamingTest(SpoolCase):

    def test_large_message_stored_whole_and_no_spool_name_left(self):
        """A 20 MB message (message_size_limit raised) goes through the spool file and is
        stored byte for byte; the spool directory is empty while and after it is stored."""
        srv = self.server(main={"message_size_limit": "30000000"})
        c = self.session(srv)
        lines = 20 * 1024 * 1024 // 80
        rep = self.send_message(c, body_of(lines))
        self.assertTrue(rep.startswith(QUEUED), rep)
        files = harness.maildir_files(srv.vmail, "new")
        self.assertEqual(len(files), 1)
        with open(files[0], "rb") as f:
            data = f.read()
        want = body_of(lines).replace("\r\n", "\n").encode()
        self.assertTrue(data.endswith(b"\n\n" + want), "stored body differs")
        self.assertEqual(self.spool_names(srv), [])

    def test_stop_and_drop_in_the_middle_of_a_large_message(self):
        """One client drops its connection 3 MB into a message, another is 3 MB into one when
        the server is stopped: nothing is stored, nothing is left in the spool directory, and
        the server stops cleanly (its writer jobs for the dropped messages end quietly)."""
        srv = self.server()
        chunk = body_of(3 * 1024 * 1024 // 80)
        for _ in range(2):
            c = self.session(srv)
            c.send("MAIL FROM:<a@example.org>\r\n")
            c.expect("250")
            c.send("RCPT TO:<alice@virt.test>\r\n")
            c.expect("250")
            c.send("DATA\r\n")
            c.expect("354")
            c.send("Subject: dropped\r\n\r\n" + chunk)
        c.close()
        time.sleep(0.5)
        self.assertEqual(self.spool_names(srv), [])
        self.assertEqual(srv.stop(), [])
        self.assertEqual(harness.maildir_files(srv.vmail, "new"), [])
        self.assertEqual(self.spool_names(srv), [])

    def test_many_concurrent_messages_each_whole(self):
        """20 clients at once, 2 MB each, all different: every message is stored whole, once."""
        srv = self.server()
        n, lines = 20, 2 * 1024 * 1024 // 80
        replies = [None] * n

        def one(i):
            try:
                s = smtplib.SMTP("127.0.0.1", srv.port, timeout=60)
                s.ehlo("client%d.example" % i)
                msg = "Subject: m%d\r\n\r\n%s" % (i, body_of(lines, "m%02d" % i))
                s.sendmail("a@example.org", ["alice@virt.test"], msg)
                replies[i] = "ok"
                s.quit()
            except Exception as e:      # noqa: BLE001 -- recorded, asserted below
                replies[i] = repr(e)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(replies, ["ok"] * n)
        files = harness.maildir_files(srv.vmail, "new")
        self.assertEqual(len(files), n)
        seen = set()
        for p in files:
            with open(p, "rb") as f:
                data = f.read()
            subj = re.search(rb"^Subject: (m\d+)$", data, re.M).group(1).decode()
            i = int(subj[1:])
            want = body_of(lines, "m%02d" % i).replace("\r\n", "\n").encode()
            self.assertTrue(data.endswith(b"\n\n" + want), "%s differs" % subj)
            seen.add(i)
        self.assertEqual(seen, set(range(n)))
        self.assertEqual(self.spool_names(srv), [])


class SpoolFaultTest(SpoolCase):

    def fault_case(self, errno_name, want, warn):
        spool_dir = tempfile.mkdtemp(prefix="mxgate-spoolfault-")
        self.addCleanup(lambda: subprocess.call(["rm", "-rf", spool_dir]))
        os.chmod(spool_dir, 0o755)
        env = harness.faultfs_env(MXGATE_FAULT="write", MXGATE_FAULT_PATH=spool_dir + "/",
                                  MXGATE_FAULT_ERRNO=errno_name, MXGATE_FAULT_AFTER="2")
        srv = self.server(main={"mxgate_spool_directory": spool_dir + "/q"}, env=env)
        c = self.session(srv)
        # 200 kB: a few 32 KiB writes; the third one fails
        rep = self.send_message(c, body_of(2500))
        self.assertEqual(rep, want)
        self.assertEqual(harness.maildir_files(srv.vmail, "new"), [])
        self.assertEqual(harness.maildir_files(srv.vmail, "tmp"), [])
        srv.expect_log(r"warning: spool file in \S+/q: " + re.escape(warn))
        # the session goes on: a small message (under 32 KiB) never gets a spool file, so
        # the failing writes do not touch it, and it is stored
        rep = self.send_message(c, "small\r\n")
        self.assertTrue(rep.startswith(QUEUED), rep)
        self.assertEqual(len(harness.maildir_files(srv.vmail, "new")), 1)
        # the next large one fails again
        self.assertEqual(self.send_message(c, body_of(2500)), want)

    def test_large_copy_write_fails(self):
        """A large message's Maildir copy is written from the spool file by the kernel
        (copy_file_range); a failure there (the shim fails it like a write) is still 451
        with no copy left anywhere (a failed Maildir copy is 451 whatever the errno, as for
        a small message: test_durability)."""
        for errno_name, want in (("EIO", WRITE_ERROR), ("ENOSPC", WRITE_ERROR)):
            with self.subTest(errno_name):
                env = harness.faultfs_env(MXGATE_FAULT="write",
                                          MXGATE_FAULT_PATH="/vmail/alice/tmp/",
                                          MXGATE_FAULT_ERRNO=errno_name, MXGATE_FAULT_AFTER="1")
                srv = self.server(env=env)
                c = self.session(srv)
                self.assertEqual(self.send_message(c, body_of(2500)), want)
                self.assertEqual(harness.maildir_files(srv.vmail, "new"), [])
                self.assertEqual(harness.maildir_files(srv.vmail, "tmp"), [])
                srv.expect_log(r"maildir delivery failed: write file \S+/alice/tmp/")
                self.assertEqual(srv.stop(), [])

    def test_spool_write_enospc_is_452(self):
        self.fault_case("ENOSPC", NO_STORAGE, "No space left on device")

    def test_spool_write_eio_is_451(self):
        self.fault_case("EIO", WRITE_ERROR, "Input/output error")


@unittest.skipUnless(os.geteuid() == 0, "mounts a tmpfs: needs root")
class FreeSpaceTest(SpoolCase):

    def small_fs(self, size="4m"):
        d = tempfile.mkdtemp(prefix="mxgate-smallfs-")
        subprocess.check_call(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0777" % size,
                               "tmpfs", d])
        self.addCleanup(lambda: (subprocess.call(["umount", "-l", d]), os.rmdir(d)))
        return d

    def mail(self, srv):
        c = self.session(srv)
        c.send("MAIL FROM:<a@example.org>\r\n")
        return c.read_reply(timeout=10).text

    def assert_refused(self, srv):
        self.assertEqual(self.mail(srv), NO_STORAGE)
        srv.expect_log(r"NOQUEUE: reject: MAIL from localhost\[127\.0\.0\.1\]: 452 4\.3\.1 "
                     r"Insufficient system storage; proto=ESMTP helo=<client\.example>$")
        srv.expect_log(r"warning: not enough free space in mail queue: \d+ bytes < "
                     r"1\.5\*message size limit$")

    def test_spool_below_1_5_message_size_limit(self):
        """A 4 MB spool file system with the default message_size_limit (10240000)."""
        fs = self.small_fs()
        srv = self.server(main={"mxgate_spool_directory": fs + "/spool"})
        self.assert_refused(srv)

    def test_spool_enough_for_a_small_limit(self):
        """The same file system with message_size_limit = 1000000: MAIL is taken and a
        message is stored."""
        fs = self.small_fs()
        srv = self.server(main={"mxgate_spool_directory": fs + "/spool",
                                "message_size_limit": "1000000"})
        c = self.session(srv)
        self.assertTrue(self.send_message(c, "hello\r\n").startswith(QUEUED))

    def test_queue_minfree(self):
        """queue_minfree above the free space refuses MAIL even with a small message limit."""
        fs = self.small_fs()
        srv = self.server(main={"mxgate_spool_directory": fs + "/spool",
                                "message_size_limit": "1000", "queue_minfree": "8000000"})
        self.assert_refused(srv)

    def test_mailboxes_below_the_limit(self):
        """The spool has room, the file system of virtual_mailbox_base does not."""
        fs = self.small_fs()
        vmail = os.path.join(fs, "vmail")
        os.mkdir(vmail)
        srv = self.server(main={"virtual_mailbox_base": vmail})
        os.chown(vmail, srv.uid, srv.gid)
        self.assert_refused(srv)

    def test_space_freed_is_seen(self):
        """The free space is measured again every second, off the loop: once the file
        system has room, MAIL is taken again."""
        fs = self.small_fs("16m")
        filler = os.path.join(fs, "filler")
        with open(filler, "wb") as f:
            f.write(b"\0" * (15 * 1024 * 1024))
        srv = self.server(main={"mxgate_spool_directory": fs + "/spool",
                                "message_size_limit": "1000000"})
        self.assert_refused(srv)
        os.unlink(filler)
        deadline = time.monotonic() + 10
        while True:
            rep = self.mail(srv)
            if rep.startswith("250") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        self.assertEqual(rep, "250 2.1.0 Ok")


class StaleFilesTest(SpoolCase):

    def test_stale_files_removed_at_start(self):
        """Before the start: two files in the spool directory (a crashed run's), an old file
        (37 h) and a fresh one in alice's tmp/.  After it: the spool directory is empty and
        the old tmp/ file is gone, each logged; the fresh one stays; mail is delivered."""
        srv = harness.Server(main=dict(BASE), virtual_users=["alice"])
        self.addCleanup(srv.cleanup)
        spool = srv.params["mxgate_spool_directory"]
        os.makedirs(spool)
        tmp = os.path.join(srv.vmail, "alice", "tmp")
        os.makedirs(tmp)
        for name in ("123.4.tmp", "leftover"):
            with open(os.path.join(spool, name), "w") as f:
                f.write("partial")
        old = os.path.join(tmp, "1000.M1P1Q1.old")
        fresh = os.path.join(tmp, "2000.M1P1Q2.fresh")
        for p in (old, fresh):
            with open(p, "w") as f:
                f.write("partial")
        t = time.time() - 37 * 3600
        os.utime(old, (t, t))
        harness.chown_tree(srv.dir, srv.uid, srv.gid)
        srv.start()
        self.addCleanup(lambda: self.assertEqual(srv.stop(), []))
        srv.expect_log(r"removed stale spool file \S+/123\.4\.tmp")
        srv.expect_log(r"removed stale spool file \S+/leftover")
        self.assertEqual([f for f in os.listdir(spool) if f != "journal"], [])
        srv.expect_log(r"removed stale Maildir file \S+/alice/tmp/1000\.M1P1Q1\.old")
        self.assertFalse(os.path.exists(old))
        self.assertTrue(os.path.exists(fresh))
        c = self.session(srv)
        self.assertTrue(self.send_message(c, "hi\r\n").startswith(QUEUED))


if __name__ == "__main__":
    unittest.main()
