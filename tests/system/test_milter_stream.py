"""smtpd_milters with large messages: the message goes to the milters, and the copy they changed
is stored, in pieces, never whole in memory (README "Milters", docs/architecture.md).

Four sessions at once each send an 8 MB message through the scripted milter of
milterfixture.py, which accepts it, or replaces its body with an 8 MB body of its own.  The
tests assert the bytes stored in the Maildir, and that the daemon's peak resident memory
(/proc/PID/status VmHWM, measured from a reset of the peak after a warm-up message) grew by
less than MEMORY_BOUND: a server that holds each message whole (the stored copy read back, the
milters' view of its body, the changed copy built in memory: 3 x 8 MB per session, 96 MB for
the four) cannot stay under it.  ASan's quarantine (which keeps freed memory resident) is
turned off for the server so that VmHWM follows what is live."""

import os
import re
import threading
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


if __name__ == "__main__":
    unittest.main()
