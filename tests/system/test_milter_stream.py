"""smtpd_milters with large messages: the message goes to the milters, and the copy they changed
is stored, in pieces, never whole in memory (README "Milters", docs/architecture.md).

Four sessions at once each send an 8 MB message through the scripted milter of
milterfixture.py, which accepts it, or replaces its body with an 8 MB body of its own.  The
tests assert the bytes stored in the Maildir, and that the daemon's peak resident memory
(/proc/PID/status VmHWM, measured from a reset of the peak after a warm-up message) grew by
less than MEMORY_BOUND: a server that holds each message whole (the stored copy read back, the
milters' view of its body, the changed copy built in memory: 3 x 8 MB per session, 96 MB for
the four) cannot stay under it.  And the server stopped while a large message is with the
milters (a chunk or a read in flight; a replacement arriving) frees everything cleanly (ASan).
ASan's quarantine (which keeps freed memory resident) is
turned off for the server so that VmHWM follows what is live."""

import os
import re
import threading
import time
import unittest

import harness
import milterfixture as mf
from milterfixture import packet

SESSIONS = 4
SIZE = 8 * 1024 * 1024
MEMORY_BOUND = 48 * 1024 * 1024

HEADERS = ("From: Alice <alice@example.org>\n"
           "To: Bob <bob@virt.test>\n"
           "Subject: Big %d\n"
           "Message-Id: <big-%d@example.org>\n"
           "Date: Tue, 1 Dec 2026 10:00:00 +0000\n")


def body(tag, size=SIZE):
    """About size bytes of LF lines that name tag and their number."""
    line = "%s line %%07d: the quick brown fox jumps over the lazy dog\n" % tag
    n = size // len(line % 0) + 1
    return "".join(line % i for i in range(n))


def message(i):
    return HEADERS % (i, i) + "\n" + body("session %d" % i)


def kib(field, pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no %s in /proc/%d/status" % (field, pid))


class LargeMessages(harness.MxTestCase):
    def serve(self, script=None):
        self.m = mf.ScriptedMilter(script, inet=True)
        self.addCleanup(self.m.stop)
        cf = dict(harness.BASE_MAIN)
        cf["smtpd_milters"] = self.m.milter
        cf["message_size_limit"] = str(64 * 1024 * 1024)
        cf["milter_content_timeout"] = "300s"
        env = {"ASAN_OPTIONS": harness.ASAN_DEFAULTS + ":quarantine_size_mb=0"}
        self.srv = self.start_server(main=cf, virtual_users=["bob"], env=env)

    def send(self, i, msg, replies):
        c = self.connect(self.srv)
        c.timeout = 300
        try:
            c.read_reply()
            c.cmd("EHLO client.example.net")
            c.cmd("MAIL FROM:<alice@example.org>")
            c.cmd("RCPT TO:<bob@virt.test>")
            c.cmd("DATA")
            c.send(msg.replace("\n", "\r\n") + ".\r\n")
            replies[i] = c.read_reply(timeout=300)
            c.cmd("QUIT")
        except Exception as e:  # reported by the main thread
            replies[i] = e

    def run_sessions(self):
        """A warm-up message, the peak reset, then SESSIONS messages at once; the peak's growth."""
        warm = {}
        self.send(0, HEADERS % (0, 0) + "\nwarm-up\n", warm)
        self.assertEqual(warm[0].code, 250, warm[0])
        pid = self.srv.pid
        try:
            with open("/proc/%d/clear_refs" % pid, "w") as f:
                f.write("5")        # VmHWM = VmRSS from now on
        except OSError:
            pass
        before = kib("VmRSS", pid)
        replies = {}
        threads = [threading.Thread(target=self.send, args=(i, message(i), replies))
                   for i in range(1, SESSIONS + 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        peak = kib("VmHWM", pid)
        for i in range(1, SESSIONS + 1):
            r = replies.get(i)
            self.assertFalse(isinstance(r, Exception), "session %d: %r" % (i, r))
            self.assertEqual(r.code, 250, "session %d: %s" % (i, r))
        return peak - max(before, 0)

    def stored_bodies(self):
        out = []
        for p in harness.maildir(self.srv.vmail, "bob")["new"]:
            with open(p, "rb") as f:
                text = f.read().decode()
            m = re.match(r"Return-Path: <[^>]*>\n(?:X-Original-To: [^\n]*\n)?Delivered-To: "
                         r"[^\n]*\nReceived: from [^\n]*\n(?:\t[^\n]*\n)*", text)
            self.assertIsNotNone(m, text[:500])
            out.append(text[m.end():])
        return out

    def assert_bounded(self, growth):
        print("peak RSS growth for %d x %d MB: %.1f MB" % (SESSIONS, SIZE >> 20, growth / 2**20))
        self.assertLess(growth, MEMORY_BOUND,
                        "the server's peak RSS grew by %.1f MB for %d sessions of %d MB"
                        % (growth / 2**20, SESSIONS, SIZE >> 20))

    def test_accepted_messages_stream(self):
        self.serve()
        growth = self.run_sessions()
        stored = self.stored_bodies()
        want = [HEADERS % (0, 0) + "\nwarm-up\n"] + [message(i) for i in range(1, SESSIONS + 1)]
        self.assertEqual(len(stored), len(want))
        self.assertEqual(sorted(stored), sorted(want))
        # every milter saw the whole body, in chunks of at most 65535 bytes
        chunks = [d for c, d in self.m.received if c == "B"]
        self.assertTrue(all(len(d) <= 65535 for d in chunks))
        self.assertGreaterEqual(sum(len(d) for d in chunks), SESSIONS * SIZE)
        self.assert_bounded(growth)

    def test_replaced_bodies_stream(self):
        new = body("replaced").replace("\n", "\r\n").encode()
        reply = b"".join(packet(b"b", new[i:i + 65535]) for i in range(0, len(new), 65535))
        self.serve({"E": [reply + packet(b"a")]})
        growth = self.run_sessions()
        stored = self.stored_bodies()
        self.assertEqual(len(stored), SESSIONS + 1)
        want = sorted(HEADERS % (i, i) + "\n" + body("replaced")
                      for i in range(0, SESSIONS + 1))
        self.assertEqual(sorted(stored), want)
        self.assert_bounded(growth)

    def test_header_section_over_the_bound(self):
        # the header section is held in memory: past MILTER_HEADER_MAX (1 MiB) it is refused
        self.serve()
        fill = "".join("X-Filler-%05d: %s\n" % (i, "f" * 90) for i in range(11000))
        r = {}
        self.send(0, HEADERS % (0, 0) + fill + "\nbody\n", r)
        self.assertEqual(r[0].text, "552 5.3.4 Error: message header section too big")
        self.assertIsNotNone(self.srv.wait_log(
            r"warning: milter: the message's header section is over 1048576 bytes; not given "
            r"to the milters", 5))
        self.assertEqual(harness.maildir(self.srv.vmail, "bob")["new"], [])
        self.assertNotIn("L", [c for c, _ in self.m.received])     # no header was sent

    def stop_during_the_message(self, script, wait, settle=0.0):
        """One large message; the server stopped while the milters have it: the session is
        freed with a read, a chunk or a replacement in flight (ASan: no use after free, no
        leak), and nothing is stored."""
        self.serve(script)
        c = self.connect(self.srv)
        c.timeout = 60
        c.read_reply()
        c.cmd("EHLO client.example.net")
        c.cmd("MAIL FROM:<alice@example.org>")
        c.cmd("RCPT TO:<bob@virt.test>")
        c.cmd("DATA")
        c.send(message(1).replace("\n", "\r\n") + ".\r\n")
        deadline = time.monotonic() + 60
        while not wait() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertTrue(wait(), "the milter did not get that far")
        time.sleep(settle)
        self.assertEqual(self.srv.stop(), [])
        self.assertEqual(harness.maildir(self.srv.vmail, "bob")["new"], [])

    def test_stop_while_the_body_is_being_sent(self):
        # the milter is slow on each chunk: the stop finds a chunk or a read in flight
        self.stop_during_the_message({"B": [(0.02, packet(b"c"))]},
                                     lambda: sum(c == "B" for c, _ in self.m.sessions[0]) > 20
                                     if self.m.sessions else False)

    def test_stop_while_a_replacement_arrives(self):
        # 8 MB of REPLBODY, then the milter thinks: the replacement's spool is open
        new = body("replaced").replace("\n", "\r\n").encode()
        reply = b"".join(packet(b"b", new[i:i + 65535]) for i in range(0, len(new), 65535))
        self.stop_during_the_message({"E": [(reply, 5.0, packet(b"c"))]},
                                     lambda: any(c == "E" for c, _ in self.m.sessions[0])
                                     if self.m.sessions else False, settle=1.0)


class Pieces(unittest.TestCase):
    """The body read in pieces (128 KiB) is the body sent whole: a line longer than a piece, a
    CR LF cut by a piece's end, a last line without a newline; a replacement's CR LF cut
    between two REPLBODY packets (milter/milter_client through tests/tools/miltertest)."""

    def body_sent(self, msg, script=None):
        m = mf.ScriptedMilter(script, inet=True)
        self.addCleanup(m.stop)
        out = os.path.join(m.dir, "changed.eml")
        r = mf.miltertest(m.milter, msg, write=out)
        self.assertEqual(r.exit, 0, r.out + r.err)
        self.assertEqual(r.replies["message"], "continue", r.out + r.err)
        chunks = [d for c, d in m.received if c == "B"]
        self.assertTrue(all(len(d) == 65535 for d in chunks[:-1]), [len(d) for d in chunks])
        with open(out, "rb") as f:
            return b"".join(chunks), r, f.read()

    def test_crlf_across_a_piece_and_long_lines(self):
        piece = 128 * 1024
        body = "a" * (piece - 1) + "\r\n" + "second\r\n" + "b" * (3 * piece + 17) + "\nlast"
        got, _, _ = self.body_sent(b"Subject: pieces\r\n\r\n" + body.encode())
        want = ("a" * (piece - 1) + "\r\nsecond\r\n" + "b" * (3 * piece + 17) + "\r\nlast\r\n")
        self.assertEqual(got, want.encode())

    def test_replacement_crlf_across_packets(self):
        # CR LF becomes LF, also when the two are in different packets; a lone CR stays
        got, r, changed = self.body_sent("Subject: x\n\nold\n", {
            "E": [packet(b"b", b"line one\r") + packet(b"b", b"\nline two\r") +
                  packet(b"b", b"\r\nthree") + packet(b"c")]})
        self.assertEqual(got, b"old\r\n")
        self.assertEqual(changed, b"Subject: x\n\nline one\nline two\r\nthree\n")
        self.assertIn("body-bytes 25", r.lines)
        self.assertTrue(any(e.startswith("replace_body 25 bytes") for e in r.edits), r.edits)

if __name__ == "__main__":
    unittest.main()
