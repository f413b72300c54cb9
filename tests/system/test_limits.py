"""Issue 3 system tests: error counting and the tarpit, junk commands, the hard error limit,
timeouts and the per-request deadline, stress mode, session caps and the listen queue.

Specification: /work/shared/SEED.md, POSTFIX_REFERENCE.md sections 0-4 and 5.1, DESIGN.md.
Timing margins are for a loaded 2-core machine running an ASan build:
    "immediate" = reply within IMMEDIATE (0.5 s) of the command,
    "delayed"   = at least DELAYED (0.8 s) for a 1 s smtpd_error_sleep_time,
    sequences   = within +50 % of their nominal length.
"""

import re
import statistics
import threading
import time

import harness
from harness import MxTestCase

HOST = "mx.example.test"
IMMEDIATE = 0.5
DELAYED = 0.8
TOO_MANY_ERRORS = "421 4.7.0 %s Error: too many errors" % HOST
TIMEOUT_421 = "421 4.4.2 %s Error: timeout exceeded" % HOST
UNKNOWN_500 = "500 5.5.2 Error: command not recognized"

# main.cf shared by these tests.  mynetworks does not cover the loopback test clients, so
# nothing here is exempt from anvil; local.test and $myhostname are local domains whose
# recipients are checked against the passwd file; alice@virt.test is a virtual mailbox.
BASE = dict(harness.BASE_MAIN, mydestination="$myhostname, localhost, local.test")
MESSAGE = "From: a@example.org\r\nTo: alice@virt.test\r\nSubject: limits\r\n\r\nbody\r\n"


def log_re(text, proc="smtpd"):
    """A regex for one whole log message from mxgate/<proc>."""
    return r"mxgate/%s\[\d+\]: %s$" % (proc, re.escape(text))


def run_parallel(*funcs, timeout=60):
    """Run each function in its own thread; re-raise the first exception (assertion) raised."""
    errors = [None] * len(funcs)

    def wrap(i, f):
        try:
            f()
        except BaseException as e:  # noqa: B902 - reported in the main thread
            errors[i] = e

    threads = [threading.Thread(target=wrap, args=(i, f), daemon=True) for i, f in enumerate(funcs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        if t.is_alive():
            raise AssertionError("a parallel part of the test did not finish within %ss" % timeout)
    for e in errors:
        if e is not None:
            raise e


class LimitsTest(MxTestCase):

    def server(self, main=None, **kw):
        params = dict(BASE)
        params.update(main or {})
        kw.setdefault("virtual_users", ["alice"])
        return self.start_server(main=params, **kw)

    def timed(self, c, line, timeout=15.0):
        """Send line, return (reply, seconds until the complete reply arrived)."""
        t0 = time.monotonic()
        c.send(line + "\r\n")
        rep = c.read_reply(timeout)
        return rep, time.monotonic() - t0

    def assert_immediate(self, secs, what):
        self.assertLess(secs, IMMEDIATE, "%s: expected immediately, came after %.2fs" % (what, secs))

    def assert_delayed(self, secs, what, upper=3.0):
        self.assertGreaterEqual(secs, DELAYED, "%s: expected ~1s late, came after %.2fs" % (what, secs))
        self.assertLess(secs, upper, "%s: expected ~1s late, came after %.2fs" % (what, secs))

    def assert_unsolicited_421(self, c, after, what, lo=DELAYED, hi=3.0):
        """Without sending anything, the 421 too-many-errors reply arrives lo..hi s after
        `after` (a time.monotonic()), then the connection closes."""
        rep, t = harness.timed_reply(c, timeout=hi + 2)
        self.assertEqual(rep.text, TOO_MANY_ERRORS, what)
        dt = t - after
        self.assertGreaterEqual(dt, lo, "%s: the 421 came %.2fs after the last reply" % (what, dt))
        self.assertLess(dt, hi, "%s: the 421 came %.2fs after the last reply" % (what, dt))
        self.assertTrue(c.closed(3.0), "%s: connection must close after the 421" % what)

    # -- 1. error counting and the tarpit ---------------------------------------------------

    def test_seed_rcpt_session_soft_and_hard_error_limit(self):
        """SEED.md section 1 with the defaults (soft 10, sleep 1s, hard 20): RCPTs 1-10 are
        answered at once, 11-20 each ~1s late, then an unsolicited 421 ~1s after the 20th
        reply, and the connection closes."""
        srv = self.server()
        c = self.connect(srv)
        c.expect("220 %s ESMTP mxgate" % HOST)
        c.send("HELO sender.example.com\r\n")
        c.expect("250 %s" % HOST)
        c.send("MAIL FROM: root@sender.example.com\r\n")
        c.expect("250 2.1.0 Ok")
        rcpt = "nobody-user@%s" % HOST
        want = ("550 5.1.1 <%s>: Recipient address rejected: User unknown in local recipient table"
                % rcpt)
        start = time.monotonic()
        for i in range(1, 21):
            rep, secs = self.timed(c, "RCPT TO: " + rcpt)
            self.assertEqual(rep.text, want, "RCPT %d" % i)
            if i <= 10:
                self.assert_immediate(secs, "RCPT %d" % i)
            else:
                self.assert_delayed(secs, "RCPT %d" % i)
        last = time.monotonic()
        self.assert_unsolicited_421(c, last, "after RCPT 20")
        total = time.monotonic() - start
        self.assertGreaterEqual(total, 10 * DELAYED, "whole sequence: %.1fs (nominal 11s)" % total)
        self.assertLess(total, 16.5, "whole sequence: %.1fs (nominal 11s)" % total)
        self.assertIsNotNone(srv.wait_log(log_re("too many errors after RCPT from localhost[127.0.0.1]")),
                             "\n".join(srv.log_lines()))
        self.assertIsNotNone(srv.wait_log(log_re(
            "disconnect from localhost[127.0.0.1] helo=1 mail=1 rcpt=0/20 commands=2/22")),
            "\n".join(srv.log_lines()))

    def test_tarpit_is_a_timer_other_clients_unaffected(self):
        """While clients on every event loop are tarpitted (each reply ~1s late), fresh clients of
        the same server get their banner and NOOP replies at once (tarpit delays are timers):
        median latency < 100 ms, none over 0.5 s (a loop that slept would show ~1 s waits)."""
        srv = self.server(main={"smtpd_soft_error_limit": 1, "smtpd_hard_error_limit": 100})
        stop = threading.Event()
        delays = []

        def tarpitted(n):
            c = harness.Client(srv.port, source="127.0.0.%d" % (10 + n), timeout=10)
            try:
                c.expect(220)
                c.send("FOO\r\n")
                c.expect(UNKNOWN_500)
                while not stop.is_set():
                    rep, secs = self.timed(c, "NOOP", timeout=10)
                    self.assertEqual(rep.text, "250 2.0.0 Ok")
                    delays.append(secs)
            finally:
                c.close()

        threads = []
        errors = []
        for n in range(4):
            def body(n=n):
                try:
                    tarpitted(n)
                except BaseException as e:  # noqa: B902
                    errors.append(e)
            t = threading.Thread(target=body, daemon=True)
            t.start()
            threads.append(t)
        try:
            time.sleep(1.5)  # every tarpitted client is now waiting for a delayed reply
            latencies = []
            fresh = []
            for n in range(4):
                t0 = time.monotonic()
                c = self.connect(srv, source="127.0.0.%d" % (30 + n))
                c.expect(220)
                latencies.append(time.monotonic() - t0)
                fresh.append(c)
            for _ in range(3):
                for c in fresh:
                    rep, secs = self.timed(c, "NOOP")
                    self.assertEqual(rep.text, "250 2.0.0 Ok")
                    latencies.append(secs)
                time.sleep(0.15)
            for c in fresh:
                c.send("QUIT\r\n")
                c.expect(221)
        finally:
            stop.set()
            for t in threads:
                t.join(15)
        if errors:
            raise errors[0]
        self.assertGreaterEqual(len(delays), 4, "the tarpitted clients made no progress")
        for d in delays:
            self.assert_delayed(d, "tarpitted NOOP")
        self.assertLess(max(latencies), IMMEDIATE,
                        "a client beside tarpitted ones waited: %s" % ["%.3f" % x for x in latencies])
        self.assertLess(statistics.median(latencies), 0.1,
                        "a client beside tarpitted ones waited: %s" % ["%.3f" % x for x in latencies])

    def test_tarpit_delays_each_line_of_ehlo(self):
        """An empty line is an error (500 5.5.2 Error: bad syntax).  With soft limit 1, every
        reply line is then delayed separately: EHLO's 8 lines arrive ~1s apart (~8s)."""
        srv = self.server(main={"smtpd_soft_error_limit": 1})
        c = self.connect(srv)
        c.expect(220)
        rep, secs = self.timed(c, "")
        self.assertEqual(rep.text, "500 5.5.2 Error: bad syntax")
        self.assert_immediate(secs, "empty line")
        t0 = time.monotonic()
        c.send("EHLO client.example\r\n")
        lines, times = [], []
        while True:
            line, t = harness.read_line_timed(c, timeout=15)
            lines.append(line)
            times.append(t)
            if len(line) < 4 or line[3] != "-":
                break
        self.assertEqual(len(lines), 8, lines)
        self.assertEqual(lines[0], "250-%s" % HOST)
        self.assertEqual(lines[-1], "250 CHUNKING")
        self.assertGreaterEqual(times[0] - t0, DELAYED, "first EHLO line after %.2fs" % (times[0] - t0))
        gaps = [b - a for a, b in zip(times, times[1:])]
        for i, g in enumerate(gaps):
            self.assertGreaterEqual(g, DELAYED, "EHLO line %d came %.2fs after line %d (gaps %s)"
                                    % (i + 2, g, i + 1, ["%.2f" % x for x in gaps]))
        total = times[-1] - t0
        self.assertLess(total, 12.0, "8 delayed lines took %.1fs (nominal 8s)" % total)
        c.send("QUIT\r\n")
        c.expect("221 2.0.0 Bye", timeout=5)

    def test_rset_keeps_errors_accepted_message_resets(self):
        """RSET does not reset the error count: once it reaches the soft limit, RSET, MAIL, RCPT
        and DATA replies are delayed.  An accepted message resets it: its 250 and what
        follows are immediate, and it takes soft-limit new errors to be delayed again."""
        srv = self.server(main={"smtpd_soft_error_limit": 2})
        c = self.connect(srv)
        c.expect(220)
        for i in (1, 2):
            rep, secs = self.timed(c, "FOO")
            self.assertEqual(rep.text, UNKNOWN_500)
            self.assert_immediate(secs, "error %d" % i)
        for line, want in (("RSET", "250 2.0.0 Ok"), ("RSET", "250 2.0.0 Ok"),
                           ("MAIL FROM:<a@example.org>", "250 2.1.0 Ok"),
                           ("RCPT TO:<alice@virt.test>", "250 2.1.5 Ok"),
                           ("DATA", "354 End data with <CR><LF>.<CR><LF>")):
            rep, secs = self.timed(c, line)
            self.assertEqual(rep.text, want, line)
            self.assert_delayed(secs, line + " (errors at the soft limit; RSET does not reset)")
        t0 = time.monotonic()
        c.send(MESSAGE + ".\r\n")
        rep = c.expect(re.compile(r"^250 2\.0\.0 Ok: queued as [0-9A-Za-z]+$"))
        self.assert_immediate(time.monotonic() - t0, "250 after an accepted message")
        rep, secs = self.timed(c, "NOOP")
        self.assertEqual(rep.text, "250 2.0.0 Ok")
        self.assert_immediate(secs, "NOOP after an accepted message")
        for i in (1, 2):
            rep, secs = self.timed(c, "FOO")
            self.assertEqual(rep.text, UNKNOWN_500)
            self.assert_immediate(secs, "new error %d" % i)
        rep, secs = self.timed(c, "NOOP")
        self.assert_delayed(secs, "NOOP after 2 new errors")
        c.send("QUIT\r\n")
        c.expect(221, timeout=5)
        self.assertEqual(len(harness.maildir(srv.vmail, "alice")["new"]), 1)

    # -- 2. junk commands -------------------------------------------------------------------

    def junk_sequence(self, srv, commands, source=None):
        """Send commands lock-step (junk 5, soft 3, hard 6): by `if (junk_cmds++ > 5)
        error_count++`, command k adds an error from k = 7 on, replies to k = 10..12 are
        delayed (error_count >= 3 before them), and after the 12th (error_count 6) the 421
        comes unprompted ~1s later (it is delayed too)."""
        c = self.connect(srv)
        c.expect(220)
        start = time.monotonic()
        for k, (line, code) in enumerate(commands, 1):
            rep, secs = self.timed(c, line)
            self.assertEqual(rep.code, code, "command %d %r: %s" % (k, line, rep.text))
            if k <= 9:
                self.assert_immediate(secs, "junk command %d %r" % (k, line))
            else:
                self.assert_delayed(secs, "junk command %d %r" % (k, line))
        self.assert_unsolicited_421(c, time.monotonic(), "after junk command 12")
        total = time.monotonic() - start
        self.assertLess(total, 6.0, "sequence took %.1fs (nominal 4s)" % total)

    JUNK = {"smtpd_junk_command_limit": 5, "smtpd_soft_error_limit": 3, "smtpd_hard_error_limit": 6}

    def test_junk_noop_limit(self):
        """12 NOOPs with junk limit 5, soft 3, hard 6: 1-9 immediate, 10-12 ~1s late, then 421
        (the same rule gives 1-111 immediate, 112-121 late and the 421 with 100/10/20)."""
        srv = self.server(main=self.JUNK)
        self.junk_sequence(srv, [("NOOP", 250)] * 12)
        self.assertIsNotNone(srv.wait_log(log_re("too many errors after NOOP from localhost[127.0.0.1]")),
                             "\n".join(srv.log_lines()))
        self.assertIsNotNone(srv.wait_log(log_re("disconnect from localhost[127.0.0.1] noop=12 commands=12")),
                             "junk commands count as successful commands\n" + "\n".join(srv.log_lines()))

    def test_junk_helo_ehlo_rset_vrfy_count_too(self):
        """HELO, EHLO, RSET, NOOP and VRFY are all junk-limited: the same 12-step sequence."""
        srv = self.server(main=self.JUNK)
        cmds = [("HELO c.example", 250), ("EHLO c.example", 250), ("RSET", 250), ("NOOP", 250),
                ("VRFY alice@virt.test", 252), ("HELO c.example", 250), ("EHLO c.example", 250),
                ("RSET", 250), ("VRFY alice@virt.test", 252), ("NOOP", 250), ("RSET", 250),
                ("HELO c.example", 250)]
        self.junk_sequence(srv, cmds)
        self.assertIsNotNone(srv.wait_log(log_re("too many errors after HELO from localhost[127.0.0.1]")),
                             "\n".join(srv.log_lines()))
        self.assertIsNotNone(srv.wait_log(r"mxgate/smtpd\[\d+\]: disconnect from localhost\[127\.0\.0\.1\] "
                                          r"(\w+=\d+ )+commands=12$"), "\n".join(srv.log_lines()))

    # -- 6. stress (forced with -o stress=yes) ----------------------------------------------

    def test_stress_hard_limit_junk_limit_and_timeout(self):
        """-o stress=yes in master.cf: hard error limit 1 (FOO -> 500, then 421 at once),
        junk limit 1 (NOOP 1-3 -> 250, then 421 at once), smtpd_timeout 10s (a silent client
        gets 421 4.4.2 after ~10s).  The three clients run side by side."""
        srv = self.server(master=[harness.service_line(options={"stress": "yes"})])

        def hard_limit():
            c = harness.Client(srv.port, source="127.0.0.2")
            try:
                c.expect(220)
                rep, secs = self.timed(c, "FOO")
                self.assertEqual(rep.text, UNKNOWN_500)
                self.assert_unsolicited_421(c, time.monotonic(), "stress: after one error", lo=0, hi=IMMEDIATE)
            finally:
                c.close()

        def junk_limit():
            c = harness.Client(srv.port, source="127.0.0.3")
            try:
                c.expect(220)
                for k in (1, 2, 3):
                    rep, secs = self.timed(c, "NOOP")
                    self.assertEqual(rep.text, "250 2.0.0 Ok", "stress NOOP %d" % k)
                    self.assert_immediate(secs, "stress NOOP %d" % k)
                self.assert_unsolicited_421(c, time.monotonic(), "stress: after NOOP 3", lo=0, hi=IMMEDIATE)
            finally:
                c.close()

        def timeout():
            c = harness.Client(srv.port, source="127.0.0.4", timeout=20)
            try:
                rep, t0 = harness.timed_reply(c)
                self.assertEqual(rep.code, 220)
                rep, t1 = harness.timed_reply(c, timeout=20)
                self.assertEqual(rep.text, TIMEOUT_421)
                self.assertGreaterEqual(t1 - t0, 9.0, "stress smtpd_timeout fired after %.1fs" % (t1 - t0))
                self.assertLess(t1 - t0, 15.0, "stress smtpd_timeout fired after %.1fs" % (t1 - t0))
                self.assertTrue(c.closed(3.0))
            finally:
                c.close()

        run_parallel(hard_limit, junk_limit, timeout, timeout=40)
        for want in ("too many errors after UNKNOWN from unknown[127.0.0.2]",
                     "too many errors after NOOP from unknown[127.0.0.3]",
                     "disconnect from unknown[127.0.0.3] noop=3 commands=3",
                     "timeout after CONNECT from unknown[127.0.0.4]"):
            self.assertIsNotNone(srv.wait_log(log_re(want)), "missing %r\n%s" % (want, "\n".join(srv.log_lines())))

    # -- 3. timeouts ------------------------------------------------------------------------

    def test_timeout_after_connect_and_after_ehlo(self):
        """smtpd_timeout = 2s: a silent client gets 421 4.4.2 ~2s after the banner, and one that
        went silent after EHLO ~2s after the EHLO reply; both are closed and logged."""
        srv = self.server(main={"smtpd_timeout": "2s"})

        def silent():
            c = harness.Client(srv.port, source="127.0.0.2")
            try:
                rep, t0 = harness.timed_reply(c)
                self.assertEqual(rep.code, 220)
                rep, t1 = harness.timed_reply(c, timeout=8)
                self.assertEqual(rep.text, TIMEOUT_421)
                self.assertGreaterEqual(t1 - t0, 1.6, "timeout after %.2fs" % (t1 - t0))
                self.assertLess(t1 - t0, 3.5, "timeout after %.2fs" % (t1 - t0))
                self.assertTrue(c.closed(3.0), "connection must close after the timeout 421")
            finally:
                c.close()

        def after_ehlo():
            c = harness.Client(srv.port, source="127.0.0.3")
            try:
                c.expect(220)
                rep, secs = self.timed(c, "EHLO client.example")
                self.assertEqual(rep.code, 250)
                t0 = time.monotonic()
                rep, t1 = harness.timed_reply(c, timeout=8)
                self.assertEqual(rep.text, TIMEOUT_421)
                self.assertGreaterEqual(t1 - t0, 1.6, "timeout after %.2fs" % (t1 - t0))
                self.assertLess(t1 - t0, 3.5, "timeout after %.2fs" % (t1 - t0))
                self.assertTrue(c.closed(3.0), "connection must close after the timeout 421")
            finally:
                c.close()

        run_parallel(silent, after_ehlo, timeout=20)
        for want in ("timeout after CONNECT from unknown[127.0.0.2]",
                     "timeout after EHLO from unknown[127.0.0.3]"):
            self.assertIsNotNone(srv.wait_log(log_re(want)), "missing %r\n%s" % (want, "\n".join(srv.log_lines())))

    def trickle_command(self, port, interval=0.5, limit=12.0, finish_after=None):
        """Connect, take the banner, then send "NOOP xxx..." one byte every interval seconds.
        Returns (reply, seconds from the banner) of the first reply: a 421 that cut the
        trickle off, or, with finish_after (seconds), the reply after CRLF ends the command."""
        c = harness.Client(port, source="127.0.0.2", timeout=limit + 5)
        try:
            rep, t0 = harness.timed_reply(c)
            self.assertEqual(rep.code, 220)
            data = b"NOOP " + b"x" * 200
            i = 0
            while time.monotonic() - t0 < limit:
                if finish_after is not None and time.monotonic() - t0 >= finish_after:
                    c.send(b"\r\n")
                    rep, t1 = harness.timed_reply(c, timeout=5)
                    return rep, t1 - t0
                try:
                    c.send(data[i:i + 1])
                except OSError:
                    break
                i += 1
                if c.pending(interval):
                    break
            rep, t1 = harness.timed_reply(c, timeout=5)
            self.assertTrue(c.closed(3.0), "connection must close after the timeout 421")
            return rep, t1 - t0
        finally:
            c.close()

    def test_per_request_deadline_trickled_command(self):
        """smtpd_timeout = 3s.  With smtpd_per_request_deadline = yes, a command trickled one
        byte every 0.5s is cut off with 421 4.4.2 ~3s after the banner; with the deadline off
        each byte restarts the timer and the command completes after 5s; under stress
        (-o stress=yes) the deadline is on by default."""
        p2, p3 = harness.free_port(), harness.free_port()
        srv = self.server(main={"smtpd_timeout": "3s"}, master=[
            harness.service_line(options={"smtpd_per_request_deadline": "yes"}),
            harness.service_line(listen="127.0.0.1:%d" % p2, options={"smtpd_per_request_deadline": "no"}),
            harness.service_line(listen="127.0.0.1:%d" % p3, options={"stress": "yes"}),
        ])
        self.assertTrue(harness.wait_ports_listening([p2, p3]), "services on %d/%d not listening" % (p2, p3))
        res = {}

        def deadline_on():
            res["on"] = self.trickle_command(srv.port)

        def deadline_off():
            res["off"] = self.trickle_command(p2, finish_after=5.0)

        def stress():
            res["stress"] = self.trickle_command(p3)

        run_parallel(deadline_on, deadline_off, stress, timeout=40)
        for key in ("on", "stress"):
            rep, secs = res[key]
            self.assertEqual(rep.text, TIMEOUT_421, key)
            self.assertGreaterEqual(secs, 2.5, "%s: 421 after %.2fs, expected ~3s" % (key, secs))
            self.assertLess(secs, 4.5, "%s: 421 after %.2fs, expected ~3s" % (key, secs))
        rep, secs = res["off"]
        self.assertEqual(rep.text, "250 2.0.0 Ok", "deadline off: the trickled NOOP must complete")
        self.assertGreaterEqual(secs, 5.0)
        self.assertEqual(len(harness.log_matches(srv, log_re("timeout after CONNECT from unknown[127.0.0.2]"))), 2,
                         "\n".join(srv.log_lines()))

    def test_per_request_deadline_data_min_rate(self):
        """smtpd_timeout = 3s, smtpd_per_request_deadline = yes, smtpd_min_data_rate = 500: a
        DATA trickle at 10 bytes/s earns only 0.02s per second and times out ~3s after the 354;
        a DATA at 800 bytes/s for 5s keeps its budget (capped at 3s) and is delivered."""
        srv = self.server(main={"smtpd_timeout": "3s", "smtpd_per_request_deadline": "yes",
                                "smtpd_min_data_rate": 500})
        res = {}

        def open_data(source):
            c = harness.Client(srv.port, source=source, timeout=15)
            c.expect(220)
            c.send("EHLO client.example\r\n")
            c.expect(250)
            c.send("MAIL FROM:<a@example.org>\r\n")
            c.expect(250)
            c.send("RCPT TO:<alice@virt.test>\r\n")
            c.expect(250)
            c.send("DATA\r\n")
            c.expect(354)
            return c, time.monotonic()

        def slow():
            c, t0 = open_data("127.0.0.2")
            try:
                body = (b"Subject: slow\r\n\r\n" + b"y" * 78 + b"\r\n") * 3
                i = 0
                while time.monotonic() - t0 < 10 and i < len(body):
                    try:
                        c.send(body[i:i + 1])
                    except OSError:
                        break
                    i += 1
                    if c.pending(0.1):
                        break
                rep, t1 = harness.timed_reply(c, timeout=5)
                res["slow"] = (rep, t1 - t0)
                self.assertTrue(c.closed(3.0), "connection must close after the timeout 421")
            finally:
                c.close()

        def fast():
            c, t0 = open_data("127.0.0.3")
            try:
                c.send("Subject: fast\r\n\r\n")
                chunk = (b"z" * 398 + b"\r\n")
                while time.monotonic() - t0 < 5.0:
                    c.send(chunk)
                    self.assertEqual(c.pending(0.5), b"", "reply during a DATA at 800 bytes/s")
                c.send(".\r\n")
                rep, t1 = harness.timed_reply(c, timeout=10)
                res["fast"] = (rep, t1 - t0)
                c.send("QUIT\r\n")
                c.expect(221)
            finally:
                c.close()

        run_parallel(slow, fast, timeout=40)
        rep, secs = res["slow"]
        self.assertEqual(rep.text, TIMEOUT_421)
        self.assertGreaterEqual(secs, 2.5, "slow DATA: 421 after %.2fs, expected ~3.1s" % secs)
        self.assertLess(secs, 4.7, "slow DATA: 421 after %.2fs, expected ~3.1s" % secs)
        rep, secs = res["fast"]
        self.assertRegex(rep.text, r"^250 2\.0\.0 Ok: queued as [0-9A-Za-z]+$")
        self.assertGreaterEqual(secs, 5.0)
        self.assertIsNotNone(srv.wait_log(r"mxgate/smtpd\[\d+\]: timeout after DATA( \(\d+ bytes\))? "
                                          r"from unknown\[127\.0\.0\.2\]$"), "\n".join(srv.log_lines()))
        self.assertEqual(len(harness.maildir(srv.vmail, "alice")["new"]), 1, "only the fast message is stored")

    # -- 5. session caps and the listen queue -------------------------------------------------

    def test_seed_default_process_limit_1_listen_queue(self):
        """SEED.md section 2 (default_process_limit = 1, count limit 3): client 1 is served;
        clients 2 and 3 complete the TCP handshake but get no banner (they wait in the
        accept queue: ss shows backlog 1 and 2 queued); further connects may hang; after
        client 1 quits, client 2 gets its banner, and client 3 after client 2 quits."""
        srv = self.server(main={"default_process_limit": 1, "smtpd_client_connection_count_limit": 3})
        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        c1 = self.connect(srv)
        c1.expect("220 %s ESMTP mxgate" % HOST)
        c2 = self.connect(srv)
        c3 = self.connect(srv)
        self.assertEqual(c2.pending(1.0), b"", "client 2 must wait without a banner")
        self.assertEqual(c3.pending(0.1), b"", "client 3 must wait without a banner")
        q = harness.listen_queue(srv.port)
        self.assertIsNotNone(q, "no LISTEN socket for port %d in ss -ltn" % srv.port)
        self.assertEqual(q[1], 1, "listen backlog (ss Send-Q) = max(maxproc, default_process_limit)")
        self.assertEqual(q[0], 2, "clients 2 and 3 wait in the kernel accept queue (ss Recv-Q)")
        for _ in range(2):  # the queue is full: these may hang in SYN-SENT; either way is fine
            s, ok = harness.connect_nonblocking(srv.port, timeout=0.5)
            socks.append(s)
        c1.send("QUIT\r\n")
        c1.expect("221 2.0.0 Bye")
        t0 = time.monotonic()
        c2.expect("220 %s ESMTP mxgate" % HOST, timeout=3)
        self.assertLess(time.monotonic() - t0, 1.5, "client 2's banner after client 1 quit")
        self.assertEqual(c3.pending(0.5), b"", "client 3 must still wait (one session at a time)")
        rep = c2.cmd("EHLO client.example")
        self.assertEqual(rep.code, 250)
        c2.send("QUIT\r\n")
        c2.expect(221)
        c3.expect("220 %s ESMTP mxgate" % HOST, timeout=3)
        c3.send("QUIT\r\n")
        c3.expect(221)
        self.assertEqual(harness.log_matches(srv, "too many connections|has reached its process limit"), [],
                         "neither anvil nor the (ineligible) stress warning is involved")

    def test_maxproc_2_loopback_cap_no_stress(self):
        """master.cf maxproc 2 on a loopback service: at most 2 sessions are served, the 3rd
        waits without a banner (backlog max(2, 100) = 100).  A loopback-only service never
        enters stress: the session that gets in after the cap was reached still has hard
        limit 20, and no 'has reached its process limit' warning is logged (that warning
        exists only for eligible, non-loopback services, which cannot be bound here)."""
        srv = self.server(master=[harness.service_line(maxproc=2)])
        c1 = self.connect(srv, source="127.0.0.2")
        c1.expect(220)
        c2 = self.connect(srv, source="127.0.0.3")
        c2.expect(220)
        c3 = self.connect(srv, source="127.0.0.4")
        self.assertEqual(c3.pending(1.0), b"", "a 3rd session must not be served while 2 are")
        q = harness.listen_queue(srv.port)
        self.assertIsNotNone(q)
        self.assertEqual(q[1], 100, "listen backlog = max(maxproc 2, default_process_limit 100)")
        self.assertEqual(q[0], 1, "the 3rd client waits in the kernel accept queue")
        c1.send("QUIT\r\n")
        c1.expect(221)
        c3.expect(220, timeout=3)
        c4 = self.connect(srv, source="127.0.0.5")
        self.assertEqual(c4.pending(0.5), b"", "the cap is reached again")
        for i in (1, 2):
            rep, secs = self.timed(c3, "FOO")
            self.assertEqual(rep.text, UNKNOWN_500)
            self.assertEqual(c3.pending(0.5), b"",
                             "no stress on a loopback service: hard limit stays 20 (error %d)" % i)
        rep, secs = self.timed(c3, "NOOP")
        self.assertEqual(rep.text, "250 2.0.0 Ok")
        c3.send("QUIT\r\n")
        c3.expect(221)
        c4.expect(220, timeout=3)
        c4.send("QUIT\r\n")
        c4.expect(221)
        c2.send("QUIT\r\n")
        c2.expect(221)
        time.sleep(0.2)
        self.assertEqual(harness.log_matches(srv, "has reached its process limit"), [],
                         "the process-limit warning is only for services eligible for stress")


if __name__ == "__main__":
    import unittest
    unittest.main()
