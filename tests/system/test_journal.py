"""The delivery journal (src/deliver/journal.h; issue 10, throughput past the per-message fsync
limit), seen from outside: with mxgate_delivery_journal = yes the 250 waits for one fdatasync of
the journal instead of an fsync of every copy, and a copy that a crash lost after its 250 is
written again, under the same name, when the daemon starts.

Notes:
  * "A copy lost by a crash" is simulated: kill -9 leaves the page cache alone, so the test removes
    (or cuts short) the file in new/ after the kill, as a power loss could have left it.
  * The strace test traces writev and sendmsg too (the daemon writes its replies with writev).
"""

import os
import re
import subprocess
import threading
import time

import harness
from harness import MxTestCase
from test_durability import (DurabilityBase, KillUnderLoadTest, QUEUED, message, parse_strace,
                             fd_path, rename_paths)

JOURNAL = {"mxgate_delivery_journal": "yes"}


class JournalTest(DurabilityBase):
    JOURNAL = "yes"

    def deliver(self, srv, rcpts, subject):
        c = self.session(srv)
        rep = self.transaction(c, rcpts, message(subject, ["journaled body"]))
        m = QUEUED.match(rep.text)
        self.assertIsNotNone(m, rep.text)
        c.send("QUIT\r\n")
        c.expect(221)
        c.close()
        return m.group(1)

    def journal_path(self, srv):
        return os.path.join(srv.params["mxgate_spool_directory"], "journal")

    def test_journal_fdatasync_then_rename_then_250(self):
        """Two recipients: the journal is written and fdatasync'd before either copy is renamed
        into new/, and the 250 comes after both renames; the copies themselves get no fsync."""
        srv = self.server(main=JOURNAL,
                          strace=["-tt", "-y", "-s", "4096", "-e",
                                  "trace=write,writev,pwrite64,sendto,sendmsg,fsync,fdatasync,"
                                  "rename,renameat,renameat2"])
        qid = self.deliver(srv, ["alice@virt.test", "bob@virt.test"], "journal order")
        problems = srv.stop()
        self.assertEqual(problems, [], "\n".join(problems))
        with open(srv.strace_path, errors="replace") as f:
            calls = parse_strace(f.read())
        jpath = os.path.realpath(self.journal_path(srv))
        reply = [k for k in calls if k.name in ("write", "writev", "sendto", "sendmsg")
                 and "socket:[" in k.args and "250 2.0.0 Ok: queued as " + qid in k.args]
        self.assertEqual(len(reply), 1, reply)
        reply = reply[0]
        vmail = os.path.realpath(srv.vmail)
        renames = [k for k in calls if k.name.startswith("rename") and k.ret == "0"
                   and rename_paths(k)[1] and "/new/" in rename_paths(k)[1]
                   and rename_paths(k)[1].startswith(vmail)]
        self.assertEqual(len(renames), 2, renames)
        first = min(r.start for r in renames)
        writes = [k for k in calls if k.name == "pwrite64" and fd_path(k.args) == jpath
                  and k.end < first and "journaled body" in k.args]
        self.assertTrue(writes, "no journal record (with the body) written before the renames")
        syncs = [k for k in calls if k.name == "fdatasync" and k.ret == "0"
                 and fd_path(k.args) == jpath and writes[0].end < k.start and k.end < first]
        self.assertTrue(syncs, "no fdatasync of %s between its record and the renames" % jpath)
        self.assertLess(max(r.end for r in renames), reply.start, "250 before a rename")
        for r in renames:
            tmp = os.path.normpath(rename_paths(r)[0])
            self.assertFalse([k for k in calls if k.name in ("fsync", "fdatasync")
                              and fd_path(k.args) == tmp],
                             "a journaled copy was fsync'd by itself: %s" % tmp)

    def test_copy_lost_after_250_is_recovered_at_start(self):
        """kill -9 after three acknowledged messages; then alice's first copy is gone from new/,
        bob's holds zeros of its size, and carol's was read (moved to cur/ with flags).  At the restart the
        daemon writes alice's and bob's again, byte for byte under the same names, logs
        each, leaves carol's alone (no duplicate), and delivers again."""
        srv = self.server(users=["alice", "bob", "carol"], main=JOURNAL)
        self.deliver(srv, ["alice@virt.test"], "one")
        self.deliver(srv, ["bob@virt.test"], "two")
        self.deliver(srv, ["carol@virt.test"], "three")
        srv.kill9()
        srv.stop()
        files = {}
        for user in ("alice", "bob", "carol"):
            new = harness.maildir(srv.vmail, user)["new"]
            self.assertEqual(len(new), 1, (user, new))
            with open(new[0], "rb") as f:
                files[user] = (new[0], f.read())
        os.unlink(files["alice"][0])
        with open(files["bob"][0], "r+b") as f:
            f.write(b"\0" * len(files["bob"][1]))    # its size, but zeros (a power loss)
        cpath = files["carol"][0]
        cur = os.path.join(os.path.dirname(os.path.dirname(cpath)), "cur",
                           os.path.basename(cpath) + ":2,S")
        os.rename(cpath, cur)

        srv.restart()
        for user in ("alice", "bob"):
            path, data = files[user]
            srv.expect_log(re.escape("delivery journal: recovered %s" % path))
            with open(path, "rb") as f:
                self.assertEqual(f.read(), data, "%s's copy must come back whole" % user)
        srv.expect_log(re.escape("3 message(s) since the last checkpoint: 2 copies written "
                                 "again, 1 already stored, 0 failed"))
        self.assertEqual(harness.maildir(srv.vmail, "carol")["new"], [],
                         "carol's copy was read: it must not come back")
        self.assertEqual(harness.maildir(srv.vmail, "alice")["tmp"], [], "tmp/ left over")
        self.deliver(srv, ["alice@virt.test"], "after the restart")
        self.assertEqual(len(harness.maildir(srv.vmail, "alice")["new"]), 2)

    def test_clean_stop_checkpoints(self):
        """A clean stop syncs the copies and empties the journal: the next start recovers
        nothing even when a copy is gone."""
        srv = self.server(main=JOURNAL)
        self.deliver(srv, ["alice@virt.test"], "checkpointed")
        path = harness.maildir(srv.vmail, "alice")["new"][0]
        srv.restart()
        self.assertFalse([ln for ln in srv.log_lines()[srv.log_start:]
                          if "delivery journal" in ln], "a checkpointed journal was replayed")
        os.unlink(path)
        srv.restart()
        self.assertFalse(os.path.exists(path), "a checkpointed record came back")

    def test_idle_journal_is_checkpointed(self):
        """No mail for a while: the half in use is checkpointed without a next round or a stop
        (about a second after its last record).  A copy a reader deletes after that does not
        come back after a crash."""
        srv = self.server(main=JOURNAL)
        self.deliver(srv, ["alice@virt.test"], "then nothing")
        path = harness.maildir(srv.vmail, "alice")["new"][0]
        jpath = self.journal_path(srv)
        deadline = time.time() + 20
        while time.time() < deadline:       # both headers say empty: state word 0
            with open(jpath, "rb") as f:
                h0 = f.read(8)
                f.seek(4096 + 4 * 1024 * 1024)
                h1 = f.read(8)
            if h0[4:8] == b"\0\0\0\0" and h1[4:8] == b"\0\0\0\0":
                break
            time.sleep(0.2)
        else:
            self.fail("the idle journal was not checkpointed within 20 s")
        os.unlink(path)
        srv.kill9()
        srv.stop()
        srv.restart()
        self.deliver(srv, ["alice@virt.test"], "after the restart")
        self.assertFalse(os.path.exists(path), "a checkpointed record came back")
        self.assertFalse([ln for ln in srv.log_lines()[srv.log_start:]
                          if "delivery journal" in ln], "an idle, checkpointed journal was replayed")

    def test_journal_file_is_written_not_only_allocated(self):
        """The journal is made with its whole size written (zeros), and synced: no hole, no
        unwritten extent.  A round's write into an unwritten extent changes the file's extent
        tree, so its fdatasync would commit the file system's own journal (every tmp/ file and
        rename since the last commit); an overwrite is only the record's blocks and a cache
        flush.  Seen as FIEMAP (filefrag) reports the file right after the start."""
        srv = self.server(main=JOURNAL)
        jpath = self.journal_path(srv)
        r = subprocess.run(["filefrag", "-v", jpath], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True)
        if r.returncode != 0 or "FIBMAP/FIEMAP unsupported" in r.stdout + r.stderr:
            self.skipTest("no FIEMAP on this file system: " + (r.stdout + r.stderr).strip())
        size = os.path.getsize(jpath)
        self.assertEqual(size, 2 * (4096 + 4 * 1024 * 1024), "the journal's size")
        extents = [ln for ln in r.stdout.splitlines() if re.match(r"\s*\d+:\s+\d+\.\.", ln)]
        self.assertTrue(extents, r.stdout)
        self.assertFalse([ln for ln in extents if "unwritten" in ln or "delalloc" in ln],
                         "the journal has unwritten (or not yet allocated) extents:\n" + r.stdout)
        blocks = sum(int(ln.split(":")[3]) for ln in extents)
        bs = int(re.search(r"blocks of (\d+) bytes", r.stdout).group(1))
        self.assertEqual(blocks * bs, size, "the journal has holes:\n" + r.stdout)
        # still a journal that works
        self.deliver(srv, ["alice@virt.test"], "after the zero fill")
        self.assertEqual(len(harness.maildir(srv.vmail, "alice")["new"]), 1)

    def test_second_process_on_the_same_spool_falls_back(self):
        """The journal is locked: opened a second time it is refused (warned), and that daemon
        stores each copy with its own fsync (mail still delivered)."""
        srv = self.server(main=JOURNAL)
        main = dict(JOURNAL)
        main["mxgate_spool_directory"] = srv.params["mxgate_spool_directory"]
        other = self.server(main=main)
        other.expect_log("is in use by another process")
        self.deliver(other, ["alice@virt.test"], "no journal")
        self.assertEqual(len(harness.maildir(other.vmail, "alice")["new"]), 1)
        self.deliver(srv, ["alice@virt.test"], "journal")

    def test_large_copy_into_a_maildir_made_by_a_journaled_one_syncs_its_parents(self):
        """A journaled message makes alice's Maildir, with no directory fsync (the journal's
        checkpoint syncs the file system later).  A large message (its record would be over
        60 KiB: the fsync path) into that Maildir before the checkpoint must still fsync the
        Maildir's parents before its 250: the journal's replay knows only the small one."""
        srv = self.server(main=JOURNAL,
                          strace=["-tt", "-y", "-s", "256", "-e",
                                  "trace=write,writev,sendto,sendmsg,fsync,fdatasync"])
        self.deliver(srv, ["alice@virt.test"], "small, journaled")
        c = self.session(srv)
        rep = self.transaction(c, ["alice@virt.test"],
                               message("large, fsync'd", ["x" * 998] * 80))
        m = QUEUED.match(rep.text)
        self.assertIsNotNone(m, rep.text)
        calls, reply = self.quit_and_trace(c, srv, m.group(1))
        vmail = os.path.realpath(srv.vmail)
        for d in (vmail, os.path.join(vmail, "alice"), os.path.join(vmail, "alice", "new")):
            syncs = [k for k in calls if k.name in ("fsync", "fdatasync") and k.ret == "0"
                     and fd_path(k.args) == d and k.end < reply.start]
            self.assertTrue(syncs, "no fsync of %s before the large message's 250" % d)

    def test_journal_write_error_falls_back_to_fsync(self):
        """The journal's fdatasync fails (EIO, the faultfs shim; its first sync, at creation,
        succeeds): the message still gets its 250, stored with its own fsync, the failure is
        logged once, and the next message goes the fsync way too."""
        env = harness.faultfs_env(MXGATE_FAULT="fsync", MXGATE_FAULT_PATH="/spool/journal",
                                  MXGATE_FAULT_AFTER="1")
        srv = self.server(main=JOURNAL, env=env)
        self.deliver(srv, ["alice@virt.test"], "journal fails")
        srv.expect_log(r"warning: delivery journal .*/spool/journal: write .*: Input/output "
                       r"error; storing each copy with its own fsync from now on")
        self.deliver(srv, ["alice@virt.test"], "after the failure")
        self.assertEqual(len(harness.maildir(srv.vmail, "alice")["new"]), 2)
        self.assertEqual(len([ln for ln in srv.log_lines() if "delivery journal" in ln]), 1)

    def test_journal_failing_under_concurrent_rounds(self):
        """Twelve sessions at once, three times, and the journal's fdatasync fails from its
        third on (journal_sync(): one fdatasync at a time, which the rounds behind it wait for):
        no round is left waiting when the one it waits for fails; every message still gets its
        250 and is stored once (with its own fsync), and the failure is logged once."""
        env = harness.faultfs_env(MXGATE_FAULT="fsync", MXGATE_FAULT_PATH="/spool/journal",
                                  MXGATE_FAULT_AFTER="3")
        srv = self.server(main=JOURNAL, env=env)
        results = {}

        def one(n):
            try:
                results[n] = self.deliver(srv, ["alice@virt.test"], "concurrent %d" % n)
            except Exception as e:      # the assertion below names it
                results[n] = e

        for rnd in range(3):
            threads = [threading.Thread(target=one, args=(rnd * 12 + n,)) for n in range(12)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        failed = {n: r for n, r in results.items() if not isinstance(r, str)}
        self.assertEqual(failed, {}, "sessions without their 250")
        self.assertEqual(len(results), 36)
        new = harness.maildir(srv.vmail, "alice")["new"]
        subjects = []
        for path in new:
            with open(path, errors="replace") as f:
                subjects += re.findall(r"^Subject: (concurrent \d+)$", f.read(), re.M)
        self.assertEqual(sorted(subjects), sorted("concurrent %d" % n for n in range(36)))
        srv.expect_log(r"warning: delivery journal .*/spool/journal: write .*: Input/output "
                       r"error; storing each copy with its own fsync from now on")
        self.assertEqual(len([ln for ln in srv.log_lines() if "delivery journal" in ln]), 1)


class JournalKillUnderLoadTest(KillUnderLoadTest):
    """test_durability's kill -9 under load, with the journal: every acknowledged message is in
    new/ once and whole, also after the restart's replay."""
    MAIN = JOURNAL
    JOURNAL = "yes"


if __name__ == "__main__":
    import unittest
    unittest.main()
