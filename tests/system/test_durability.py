"""Durability of accepted mail (DESIGN.md promise 2, "250 means stored"; issue 2; SECURITY_CHECKLIST
rows 54-57), seen from outside: the order of the daemon's system calls (strace), replies and files
when the disk fails (the faultfs LD_PRELOAD shim, tests/shim/faultfs.c), kill -9 under load, an event
loop that keeps answering while the disk is slow, and a run as an ordinary user.

Notes:
  * The strace test traces writev and sendmsg too: the daemon writes its replies with writev
    (libevent), so `-e trace=write,sendto` alone would not show the 250.
  * kill -9 under load: leftovers in tmp/ are allowed (a copy that was being written when the
    process died; the Maildir convention leaves them to a 36-hour cleanup).  Messages that are in
    new/ but whose 250 never reached the client are allowed too (the client retries: a duplicate,
    never a loss).  What is not allowed: an acknowledged message missing from new/, in new/ twice,
    or a partial file in new/.
  * The "loop never waits on disk" test delays only the fsync of the message file (the shim's
    MXGATE_FAULT_PATH selects alice/tmp/) so that the 250 takes about 2 s, and measures NOOP on
    four other sessions, which the daemon spreads over its event loops.
"""

import email
import email.policy
import os
import pwd
import re
import select
import shutil
import smtplib
import subprocess
import threading
import time
import unittest

import harness
from harness import MxTestCase

BASE = dict(harness.BASE_MAIN)
WRITE_ERROR = "451 4.3.0 Error: queue file write error"
QUEUED = re.compile(r"^250 2\.0\.0 Ok: queued as ([0-9A-Za-z]+)$")


def message(subject, body_lines):
    """Message content as sent on the wire (CRLF, dot-stuffed, with the final dot)."""
    lines = ["From: a@example.org", "Subject: " + subject, ""] + list(body_lines)
    wire = "".join(("." + ln if ln.startswith(".") else ln) + "\r\n" for ln in lines)
    return (wire + ".\r\n").encode()


class DurabilityBase(MxTestCase):
    # The fsync path (a file fsync per copy, a directory fsync per group) is what these tests
    # check: the delivery journal (its own tests: test_journal.py) is off unless a test says.
    JOURNAL = "no"

    def server(self, users=("alice", "bob"), **kw):
        main = dict(BASE, mxgate_delivery_journal=self.JOURNAL)
        main.update(kw.pop("main", {}))
        return self.start_server(main=main, virtual_users=list(users), **kw)

    def quit_and_trace(self, c, srv, qid):
        """QUIT, stop the server (which flushes strace's output), and return its system calls
        and the one write of the 250 for qid."""
        c.send("QUIT\r\n")
        c.expect(221)
        c.close()
        problems = srv.stop()
        self.assertEqual(problems, [], "\n".join(problems))
        with open(srv.strace_path, errors="replace") as f:
            calls = parse_strace(f.read())
        reply = [k for k in calls if k.name in ("write", "writev", "sendto", "sendmsg")
                 and "socket:[" in k.args and "250 2.0.0 Ok: queued as " + qid in k.args]
        self.assertEqual(len(reply), 1, "the 250 reply must be written once: %r" % reply)
        return calls, reply[0]

    def session(self, srv):
        c = self.connect(srv)
        c.expect(220)
        c.send("EHLO client.example\r\n")
        c.expect(250)
        return c

    def transaction(self, c, rcpts, content, sender="a@example.org"):
        """MAIL, RCPT..., DATA, content (one sendall); returns the reply to the content."""
        c.send("MAIL FROM:<%s>\r\n" % sender)
        c.expect("250 2.1.0 Ok")
        for r in rcpts:
            c.send("RCPT TO:<%s>\r\n" % r)
            c.expect("250 2.1.5 Ok")
        c.send("DATA\r\n")
        c.expect(354)
        c.send(content)
        return c.read_reply(timeout=30)

    def assert_no_files(self, srv, why=""):
        self.assertEqual(harness.all_maildir_files(srv.vmail), [],
                         "no file may be left in any new/, tmp/ or cur/ %s" % why)


# -- strace: fsync(file) -> rename -> fsync(new/) -> 250 -----------------------------------------

STRACE_LINE = re.compile(r"^(\d+)\s+(\d\d:\d\d:\d\d\.\d+)\s+(.*)$")
CALL = re.compile(r"^(\w+)\((.*)\)\s+=\s+(-?\d+|\?|0x[0-9a-f]+)(.*)$", re.S)
FD_PATH = re.compile(r"^(\d+)<(.*)>$")
QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


class Syscall:
    def __init__(self, start, end, pid, name, args, ret, text):
        self.start, self.end, self.pid = start, end, pid
        self.name, self.args, self.ret, self.text = name, args, ret, text

    def __repr__(self):
        return "#%d-%d [%s] %s" % (self.start, self.end, self.pid, self.text[:200])


def parse_strace(text):
    """System calls from `strace -f -tt -y` output, in order.  An interrupted call
    ("... <unfinished ...>" then "<... name resumed> ...") becomes one Syscall whose
    start is the line where it began and end the line where it returned.  strace -f
    writes lines in the order it sees the events, so line numbers order them in time."""
    calls = []
    pending = {}
    for idx, line in enumerate(text.splitlines()):
        m = STRACE_LINE.match(line)
        if not m:
            continue
        pid, rest = m.group(1), m.group(3)
        if rest.startswith("---") or rest.startswith("+++"):
            continue
        if rest.endswith("<unfinished ...>"):
            pending[pid] = (idx, rest[:-len("<unfinished ...>")].rstrip())
            continue
        rm = re.match(r"^<\.\.\. (\w+) resumed>(.*)$", rest)
        if rm:
            if pid not in pending:
                continue
            start, head = pending.pop(pid)
            rest = head + rm.group(2)
        else:
            start = idx
        cm = CALL.match(rest)
        if not cm:
            continue
        calls.append(Syscall(start, idx, pid, cm.group(1), cm.group(2), cm.group(3), rest))
    return calls


def fd_path(arg):
    m = FD_PATH.match(arg.strip().split(",")[0].strip())
    return m.group(2) if m else None


def rename_paths(call):
    """(from, to) of a rename/renameat/renameat2, resolved against dirfds (-y)."""
    if call.name == "rename":
        q = QUOTED.findall(call.args)
        return (q[0], q[1]) if len(q) >= 2 else (None, None)
    # renameat(dirfd<dir>, "old", dirfd<dir>, "new"[, flags])
    parts = re.findall(r'(AT_FDCWD|\d+)(?:<([^>]*)>)?,\s*"((?:[^"\\]|\\.)*)"', call.args)
    out = []
    for _, d, name in parts[:2]:
        out.append(name if name.startswith("/") or not d else os.path.join(d, name))
    return tuple(out) if len(out) == 2 else (None, None)


class StraceOrderTest(DurabilityBase):

    def test_fsync_rename_fsync_dir_then_250(self):
        """For each of two recipients: fsync(tmp/ file) -> rename(tmp/ -> new/) ->
        fsync(new/ directory) -> then the reply 250 is written to the socket.  The Maildirs
        are created by this delivery, so their parents (vmail/ and the mailbox directory)
        must be fsync'd before the 250 too."""
        srv = self.server(strace=["-tt", "-y", "-s", "256", "-e",
                                  "trace=write,writev,sendto,sendmsg,fsync,fdatasync,"
                                  "rename,renameat,renameat2,openat"])
        c = self.session(srv)
        rep = self.transaction(c, ["alice@virt.test", "bob@virt.test"],
                               message("strace order", ["durable body"]))
        m = QUEUED.match(rep.text)
        self.assertIsNotNone(m, rep.text)
        qid = m.group(1)
        c.send("QUIT\r\n")
        c.expect(221)
        c.close()
        problems = srv.stop()          # flushes strace's output
        self.assertEqual(problems, [], "\n".join(problems))
        with open(srv.strace_path, errors="replace") as f:
            calls = parse_strace(f.read())
        self.assertTrue(calls, "no system calls parsed from %s" % srv.strace_path)

        replies = [k for k in calls if k.name in ("write", "writev", "sendto", "sendmsg")
                   and "socket:[" in k.args and "250 2.0.0 Ok: queued as " + qid in k.args]
        self.assertEqual(len(replies), 1, "the 250 reply must be written once: %r" % replies)
        reply = replies[0]
        vmail = os.path.realpath(srv.vmail)

        for user in ("alice", "bob"):
            with self.subTest(user):
                new = harness.maildir(srv.vmail, user)["new"]
                self.assertEqual(len(new), 1, "%s/new: %r" % (user, new))
                new_path = os.path.join(vmail, user, "new", os.path.basename(new[0]))
                renames = [k for k in calls if k.name.startswith("rename") and k.ret == "0"
                           and rename_paths(k)[1]
                           and os.path.normpath(rename_paths(k)[1]) == new_path]
                self.assertEqual(len(renames), 1, "one rename into %s: %r" % (new_path, renames))
                ren = renames[0]
                tmp_path = os.path.normpath(rename_paths(ren)[0])
                self.assertEqual(os.path.dirname(tmp_path), os.path.join(vmail, user, "tmp"),
                                 "the copy must be staged in %s/tmp/: %r" % (user, ren))
                fsyncs = [k for k in calls if k.name in ("fsync", "fdatasync") and k.ret == "0"
                          and fd_path(k.args) == tmp_path and k.end < ren.start]
                self.assertTrue(fsyncs, "no fsync of %s before its rename %r" % (tmp_path, ren))
                dir_syncs = [k for k in calls if k.name in ("fsync", "fdatasync") and k.ret == "0"
                             and fd_path(k.args) == os.path.join(vmail, user, "new")
                             and k.start > ren.end]
                self.assertTrue(dir_syncs, "no fsync of %s/new after the rename %r" % (user, ren))
                self.assertLess(dir_syncs[0].end, reply.start,
                                "fsync of %s/new (%r) must finish before the 250 (%r)"
                                % (user, dir_syncs[0], reply))
                # the Maildir was created by this delivery: its parents' entries must be durable
                for parent in (vmail, os.path.join(vmail, user)):
                    ps = [k for k in calls if k.name in ("fsync", "fdatasync") and k.ret == "0"
                          and fd_path(k.args) == parent and k.end < reply.start]
                    self.assertTrue(ps, "newly created %s/: no fsync of %s before the 250"
                                    % (user, parent))


    def test_mailbox_left_by_a_failed_delivery_is_made_durable_later(self):
        """A delivery that fails after making a new Maildir (its second recipient cannot be
        written) leaves directories whose parents were never fsync'd.  The next delivery to
        that Maildir finds them already there and must still fsync their parents before its
        250: an existing directory is not assumed durable."""
        srv = self.server(users=("bob", "carol"),
                          strace=["-tt", "-y", "-s", "256", "-e",
                                  "trace=write,writev,sendto,sendmsg,fsync,fdatasync,mkdir,openat"])
        # carol's Maildir path is a plain file: step a fails there, after bob's was made.
        with open(os.path.join(srv.vmail, "carol"), "w") as f:
            f.write("not a directory\n")
        c = self.session(srv)
        rep = self.transaction(c, ["bob@virt.test", "carol@virt.test"],
                               message("first", ["fails for carol"]))
        self.assertEqual(rep.text, WRITE_ERROR)
        rep = self.transaction(c, ["bob@virt.test"], message("second", ["only bob"]))
        m = QUEUED.match(rep.text)
        self.assertIsNotNone(m, rep.text)
        calls, reply = self.quit_and_trace(c, srv, m.group(1))
        vmail = os.path.realpath(srv.vmail)
        for parent in (vmail, os.path.join(vmail, "bob")):
            ps = [k for k in calls if k.name in ("fsync", "fdatasync") and k.ret == "0"
                  and fd_path(k.args) == parent and k.end < reply.start]
            self.assertTrue(ps, "no fsync of %s before the 250 for bob's mailbox" % parent)

    def test_maildir_removed_while_running_is_made_again(self):
        """Once a Maildir is known durable, deliveries skip making its directories.  When it
        is removed while the server runs, the next delivery must still get its 250: the
        Maildir is made again, and its parent fsync'd before that 250."""
        srv = self.server(users=("bob",),
                          strace=["-tt", "-y", "-s", "256", "-e",
                                  "trace=write,writev,sendto,sendmsg,fsync,fdatasync,mkdir,openat"])
        c = self.session(srv)
        rep = self.transaction(c, ["bob@virt.test"], message("first", ["makes the Maildir"]))
        self.assertRegex(rep.text, QUEUED)
        shutil.rmtree(os.path.join(srv.vmail, "bob"))
        rep = self.transaction(c, ["bob@virt.test"], message("second", ["after rm -rf"]))
        m = QUEUED.match(rep.text)
        self.assertIsNotNone(m, rep.text)
        calls, reply = self.quit_and_trace(c, srv, m.group(1))
        self.assertEqual(len(harness.maildir(srv.vmail, "bob")["new"]), 1)
        self.assertEqual(harness.maildir_files(srv.vmail, "tmp"), [])
        vmail = os.path.realpath(srv.vmail)
        first = [k for k in calls if k.name in ("write", "writev", "sendto", "sendmsg")
                 and "socket:[" in k.args
                 and "250 2.0.0 Ok: queued as " in k.args and k.end < reply.start]
        self.assertTrue(first, "no first 250")
        for parent in (vmail, os.path.join(vmail, "bob")):
            ps = [k for k in calls if k.name in ("fsync", "fdatasync") and k.ret == "0"
                  and fd_path(k.args) == parent and first[-1].end < k.end < reply.start]
            self.assertTrue(ps, "no fsync of %s between the two 250s" % parent)


# -- fault injection -------------------------------------------------------------------------------

class FaultInjectionTest(DurabilityBase):
    """The shim fails one operation on one recipient's Maildir (MXGATE_FAULT_PATH), so the same
    daemon can then deliver to the other recipient."""

    def fault_case(self, users, rcpts, errno_text, **fault):
        env = harness.faultfs_env(**fault)
        srv = self.server(users=users, env=env)
        c = self.session(srv)
        rep = self.transaction(c, rcpts, message("fault %s" % fault.get("MXGATE_FAULT"),
                                                 ["this copy must not survive"]))
        self.assertEqual(rep.text, WRITE_ERROR, "fault %r" % fault)
        self.assert_no_files(srv, "after a failed delivery (%r)" % fault)
        line = srv.wait_log(r"mxgate/smtpd\[\d+\]: error: [0-9A-Za-z]+: maildir delivery failed: .*"
                            + re.escape(fault["MXGATE_FAULT_PATH"]) + r".*: " + re.escape(errno_text))
        self.assertIsNotNone(line, "missing error log line naming the path and '%s':\n%s"
                             % (errno_text, "\n".join(srv.log_lines()[-20:])))
        # The daemon keeps working: same session, a recipient outside the faulty path.
        rep = self.transaction(c, ["alice@virt.test"], message("after the fault", ["fine"]))
        self.assertRegex(rep.text, QUEUED)
        self.assertEqual(len(harness.maildir(srv.vmail, "alice")["new"]), 1)
        self.assertEqual(harness.maildir_files(srv.vmail, "tmp"), [])
        others = [p for p in harness.maildir_files(srv.vmail, "new") if "/alice/new/" not in p]
        self.assertEqual(others, [], "only alice may have mail")
        c.send("QUIT\r\n")
        c.expect(221)
        return srv

    def test_write_fails(self):
        self.fault_case(["alice", "bob"], ["alice@virt.test", "bob@virt.test"],
                        "Input/output error", MXGATE_FAULT="write", MXGATE_FAULT_PATH="/vmail/bob/")

    def test_write_fails_enospc(self):
        self.fault_case(["alice", "bob"], ["alice@virt.test", "bob@virt.test"],
                        "No space left on device", MXGATE_FAULT="write",
                        MXGATE_FAULT_PATH="/vmail/bob/", MXGATE_FAULT_ERRNO="ENOSPC")

    def test_fsync_fails(self):
        self.fault_case(["alice", "bob"], ["alice@virt.test", "bob@virt.test"],
                        "Input/output error", MXGATE_FAULT="fsync", MXGATE_FAULT_PATH="/vmail/bob/")

    def test_rename_fails(self):
        self.fault_case(["alice", "bob"], ["alice@virt.test", "bob@virt.test"],
                        "Input/output error", MXGATE_FAULT="rename", MXGATE_FAULT_PATH="/vmail/bob/")

    def test_open_fails(self):
        self.fault_case(["alice", "bob"], ["alice@virt.test", "bob@virt.test"],
                        "Input/output error", MXGATE_FAULT="open", MXGATE_FAULT_PATH="/vmail/bob/tmp/")

    def test_fsync_of_new_dir_fails(self):
        """Both copies are already renamed into new/ when the directory fsync fails: both must
        be removed again."""
        self.fault_case(["alice", "bob"], ["alice@virt.test", "bob@virt.test"],
                        "Input/output error", MXGATE_FAULT="fsync", MXGATE_FAULT_PATH="/vmail/bob/new")

    def test_second_rename_fails_after_first_succeeded(self):
        """MXGATE_FAULT_AFTER=1: bob1's rename into new/ succeeds, bob2's fails; bob1's copy
        already in new/ must be rolled back."""
        self.fault_case(["alice", "bob1", "bob2"], ["bob1@virt.test", "bob2@virt.test"],
                        "Input/output error", MXGATE_FAULT="rename", MXGATE_FAULT_PATH="/vmail/bob",
                        MXGATE_FAULT_AFTER="1")

    def test_second_fsync_fails_after_first_succeeded(self):
        self.fault_case(["alice", "bob1", "bob2"], ["bob1@virt.test", "bob2@virt.test"],
                        "Input/output error", MXGATE_FAULT="fsync", MXGATE_FAULT_PATH="/vmail/bob",
                        MXGATE_FAULT_AFTER="1")


# -- kill -9 under load ----------------------------------------------------------------------------

LOAD_THREADS = 8
KILL_AFTER_SECONDS = 2.0
KILL_AFTER_ACKS = 400
FILLER = ["filler line %03d: the quick brown fox jumps over the lazy dog 0123456789" % i
          for i in range(150)]


def load_body(token):
    # "B" tokens are large (about 300 kB): their bodies go through spool files
    filler = FILLER * 25 if token.startswith("B") else FILLER
    return ["token " + token] + filler + ["END " + token]


class KillUnderLoadTest(DurabilityBase):
    MAIN = {}       # test_journal.JournalKillUnderLoadTest: the same with the journal

    def test_kill9_under_load(self):
        """Every message that got its 250 is in exactly one complete file in new/; no partial
        file in new/; nothing in the spool directory; after a restart on the same directories the
        daemon delivers again.  A quarter of the clients send large messages (spool files)."""
        srv = self.server(users=["alice"], main=dict(self.MAIN))
        acked = set()
        sent = set()
        lock = threading.Lock()
        stop = threading.Event()
        errors = []

        def worker(n):
            i = 0
            while not stop.is_set():
                try:
                    s = smtplib.SMTP("127.0.0.1", srv.port, local_hostname="client.example", timeout=10)
                except OSError:
                    time.sleep(0.05)
                    continue
                try:
                    while not stop.is_set():
                        tok = "%s%d-%d-%d" % ("B" if n % 4 == 3 else "K", os.getpid(), n, i)
                        i += 1
                        content = ("From: a@example.org\r\nSubject: " + tok + "\r\n\r\n"
                                   + "\r\n".join(load_body(tok)) + "\r\n")
                        with lock:
                            sent.add(tok)
                        s.sendmail("a@example.org", ["alice@virt.test"], content)
                        with lock:
                            acked.add(tok)
                except (smtplib.SMTPException, OSError):
                    pass
                except Exception as e:      # pragma: no cover - reported below
                    errors.append(repr(e))
                finally:
                    try:
                        s.close()
                    except Exception:
                        pass

        threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(LOAD_THREADS)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        while time.monotonic() - t0 < KILL_AFTER_SECONDS:
            with lock:
                if len(acked) >= KILL_AFTER_ACKS:
                    break
            time.sleep(0.02)
        srv.kill9()
        time.sleep(0.3)                 # the clients notice; no ack can arrive after the kill
        stop.set()
        for t in threads:
            t.join(15)
        self.assertFalse(any(t.is_alive() for t in threads), "client threads did not finish")
        self.assertEqual(errors, [])
        problems = srv.stop()
        self.assertEqual(problems, [], "\n".join(problems))
        with lock:
            acked_now, sent_now = set(acked), set(sent)
        self.assertGreater(len(acked_now), 0, "no message was acknowledged before the kill")

        found = {}
        partial = []
        for path in harness.maildir_files(srv.vmail, "new") + harness.maildir_files(srv.vmail, "cur"):
            with open(path, "rb") as f:
                raw = f.read()
            msg = email.message_from_bytes(raw, policy=email.policy.compat32)
            tok = (msg["Subject"] or "").strip()
            body = msg.get_payload(decode=False) if not msg.is_multipart() else ""
            want = "\n".join(load_body(tok)) + "\n"
            if tok not in sent_now or not isinstance(body, str) or not body.endswith(want) \
                    or msg.defects:
                partial.append(path)
                continue
            found.setdefault(tok, []).append(path)
        self.assertEqual(partial, [], "incomplete or unknown files in new/")
        missing = sorted(acked_now - set(found))
        self.assertEqual(missing, [], "acknowledged (250) but not in new/: %d of %d"
                         % (len(missing), len(acked_now)))
        dups = {t: p for t, p in found.items() if len(p) > 1}
        self.assertEqual(dups, {}, "a message stored more than once")
        # tmp/ leftovers are allowed (copies being written at the kill): see the module notes.
        # The spool files of the messages being received had no name: nothing is left.
        # (The delivery journal is not a spool file: it stays, to be replayed.)
        self.assertEqual([f for f in os.listdir(srv.params["mxgate_spool_directory"])
                          if f != "journal"], [])
        self.assertTrue(any(t.startswith("B") for t in acked_now), "no large message got 250")

        before = set(harness.maildir(srv.vmail, "alice")["new"])
        srv.restart()
        with smtplib.SMTP("127.0.0.1", srv.port, local_hostname="client.example", timeout=15) as s:
            self.assertEqual(s.sendmail("a@example.org", ["alice@virt.test"],
                                        "Subject: after restart\r\n\r\nstill works\r\n"), {})
        after = harness.maildir(srv.vmail, "alice")["new"]
        recovered = [ln for ln in srv.log_lines()[srv.log_start:]
                     if "delivery journal: recovered " in ln]
        # Every file is still there; the journal may add the copies whose record was durable
        # but whose rename the kill stopped (no 250 reached their client: a duplicate when it
        # retries, never a loss), each logged.
        self.assertTrue(before <= set(after), "a stored copy went away at the restart")
        self.assertEqual(len(after), len(found) + 1 + len(recovered), recovered)
        if not self.MAIN:
            self.assertEqual(recovered, [])


# -- the event loop never waits on the disk --------------------------------------------------------

class SlowDiskTest(DurabilityBase):

    def test_loop_answers_while_fsync_is_slow(self):
        """MXGATE_FSYNC_DELAY_MS=2000 on the message file's fsync: that client's 250 takes
        about 2 s, and meanwhile NOOP on other sessions is answered in under 100 ms."""
        env = harness.faultfs_env(MXGATE_FSYNC_DELAY_MS="2000", MXGATE_FAULT_PATH="/vmail/alice/tmp/")
        srv = self.server(env=env)
        probes = [self.session(srv) for _ in range(4)]
        slow = self.session(srv)
        slow.send("MAIL FROM:<a@example.org>\r\n")
        slow.expect(250)
        slow.send("RCPT TO:<alice@virt.test>\r\n")
        slow.expect(250)
        slow.send("DATA\r\n")
        slow.expect(354)
        t0 = time.monotonic()
        slow.send(message("slow disk", ["waiting for fsync"]))
        worst = 0.0
        for at in (0.3, 0.8, 1.3):
            while time.monotonic() - t0 < at:
                time.sleep(0.01)
            r, _, _ = select.select([slow.sock], [], [], 0)
            self.assertEqual(r, [], "the 250 arrived after %.2fs: the delay did not apply"
                             % (time.monotonic() - t0))
            for p in probes:
                t = time.monotonic()
                p.send("NOOP\r\n")
                p.expect("250 2.0.0 Ok", timeout=5)
                worst = max(worst, time.monotonic() - t)
        rep = slow.read_reply(timeout=30)
        took = time.monotonic() - t0
        self.assertRegex(rep.text, QUEUED)
        self.assertGreaterEqual(took, 1.9, "the 250 came after %.2fs: the fsync delay did not apply" % took)
        self.assertLess(worst, 0.1, "a NOOP took %.3fs while another session waited on fsync" % worst)
        self.assertEqual(len(harness.maildir(srv.vmail, "alice")["new"]), 1)


# -- an ordinary user ------------------------------------------------------------------------------

class OrdinaryUserTest(DurabilityBase):

    def test_swaks_delivery_as_ordinary_user(self):
        swaks = shutil.which("swaks")
        self.assertIsNotNone(swaks, "swaks is not installed")
        user = "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        pw = pwd.getpwnam(user)
        srv = self.server(users=["alice"], as_user=user if os.geteuid() == 0 else None)
        with open("/proc/%d/status" % srv.pid) as f:
            uids = [ln.split()[1:] for ln in f if ln.startswith("Uid:")][0]
        self.assertEqual([int(u) for u in uids], [pw.pw_uid] * 4)
        p = subprocess.run([swaks, "--to", "alice@virt.test", "--from", "a@example.org",
                            "--helo", "client.example", "--server", "127.0.0.1:%d" % srv.port,
                            "--body", "Delivered as an ordinary user.", "--timeout", "15"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        out = p.stdout.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, out)
        self.assertRegex(out, r"<-  250 2\.0\.0 Ok: queued as [0-9A-Za-z]+")
        files = harness.maildir(srv.vmail, "alice")
        self.assertEqual(len(files["new"]), 1, files)
        self.assertEqual(files["tmp"], [])
        st = os.stat(files["new"][0])
        self.assertEqual(st.st_uid, pw.pw_uid, "file owner")
        self.assertEqual(st.st_mode & 0o077, 0, "a stored message must not be readable by others")
        _, body = harness.read_message(files["new"][0])
        self.assertIn(b"Delivered as an ordinary user.", body)


if __name__ == "__main__":
    unittest.main()
