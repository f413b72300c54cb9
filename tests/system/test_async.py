"""The asynchronous session core (issue 6), seen from outside:

* an anvil that never answers: the session goes on without a limit once mxgate_anvil_timeout
  has passed, and says so in one warning line;
* pipelined commands behind a late anvil are answered in order, each after its answer;
* a passwd lookup slowed to 3 s (LD_PRELOAD shim) holds up its own session only: NOOP in
  other sessions answers in under 100 ms;
* SIGHUP reads a large table off the event loops: NOOP answers in under 100 ms meanwhile;
* a cdb table rebuilt with postmap is used by the next session, with Postfix's log line.
"""

import os
import re
import shutil
import signal
import subprocess
import threading
import time

import harness
from harness import MxTestCase

BASE = dict(harness.BASE_MAIN)

MAX_NOOP = 0.1      # seconds


def noop_latencies(client, seconds, every=0.02):
    """NOOP round trips (s) on client for about seconds."""
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        rep = client.cmd("NOOP", timeout=5)
        out.append(time.monotonic() - t0)
        if rep.text != "250 2.0.0 Ok":
            raise AssertionError("NOOP: %r" % rep.text)
        time.sleep(every)
    return out


class AsyncTest(MxTestCase):

    def delayed(self, spec, main=None, **kw):
        params = dict(BASE)
        params["mxgate_anvil_backend"] = spec
        params.update(main or {})
        return self.start_server(main=params, binary=harness.anvil_delay_binary(), **kw)

    def test_anvil_never_answers_fails_open_once(self):
        srv = self.delayed("test-delay:never", {"mxgate_anvil_timeout": "2s",
                                                "smtpd_client_connection_count_limit": "1"})
        c = self.connect(srv)
        t0 = time.monotonic()
        rep = c.read_reply(timeout=10)
        waited = time.monotonic() - t0
        self.assertEqual(rep.text, "220 mx.example.test ESMTP mxgate")
        self.assertGreaterEqual(waited, 1.9, "the banner came before the bound")
        self.assertLess(waited, 4.0)
        # a second client is not limited either (no answer, no limit), and the warning is
        # not repeated within a minute
        c2 = self.connect(srv)
        c2.expect(220, timeout=10)
        c.cmd("QUIT")
        c2.cmd("QUIT")
        srv.check()
        warnings = harness.log_matches(srv, r"warning: anvil: no answer to a connect request "
                                            r"within 2s; applying no limit$")
        self.assertEqual(len(warnings), 1, "\n".join(srv.log_lines()[-20:]))

    def test_pipelined_commands_wait_for_a_late_anvil_in_order(self):
        srv = self.delayed("test-delay:300", {"smtpd_client_message_rate_limit": "1",
                                              "smtpd_client_recipient_rate_limit": "1"},
                           virtual_users=["alice", "bob"])
        c = self.connect(srv)
        t0 = time.monotonic()
        c.expect(220)
        self.assertGreaterEqual(time.monotonic() - t0, 0.28)
        c.cmd("EHLO client.example")
        t0 = time.monotonic()
        c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<alice@virt.test>\r\n"
               "RCPT TO:<bob@virt.test>\r\nDATA\r\n")
        got = []
        for want in ("250 2.1.0 Ok", "250 2.1.5 Ok",
                     "450 4.7.1 Error: too many recipients from 127.0.0.1",
                     "354 End data with <CR><LF>.<CR><LF>"):
            rep, at = harness.timed_reply(c)
            got.append((rep.text, at - t0))
            self.assertEqual(rep.text, want, got)
        # MAIL, RCPT, RCPT each waited for its own answer: 3 x 300 ms, in order
        self.assertGreaterEqual(got[0][1], 0.28, got)
        self.assertGreaterEqual(got[1][1], 0.58, got)
        self.assertGreaterEqual(got[2][1], 0.88, got)
        c.send("Subject: late anvil\r\n\r\nbody\r\n.\r\n")
        c.expect(re.compile(r"^250 2\.0\.0 Ok: queued as "))
        c.cmd("QUIT")
        self.assertEqual(len(harness.maildir_files(srv.vmail, "new")), 1)
        srv.check()
        self.assertTrue(harness.log_matches(srv, r"warning: Recipient address rate limit "
                                                 r"exceeded: 2 from localhost\[127\.0\.0\.1\]"))

    def test_slow_passwd_lookup_holds_up_only_its_own_session(self):
        params = dict(BASE)
        env = harness.shim_env("slowpw", MXGATE_SLOW_PASSWD_MS=3000)
        srv = self.start_server(main=params, env=env)
        others = [self.connect(srv) for _ in range(4)]  # on both event loops
        for o in others:
            o.expect(220)
            o.cmd("EHLO other.example")
        slow = self.connect(srv)
        slow.expect(220)
        slow.cmd("EHLO slow.example")
        slow.cmd("MAIL FROM:<a@example.org>")
        t0 = time.monotonic()
        slow.send("RCPT TO:<nosuchuser@local.test>\r\n")
        lat = []
        for o in others:
            lat += noop_latencies(o, 0.6)
        self.assertLess(max(lat), MAX_NOOP, "NOOP took %.3f s while a passwd lookup was slow"
                        % max(lat))
        rep = slow.read_reply(timeout=30)
        self.assertEqual(rep.text, "550 5.1.1 <nosuchuser@local.test>: Recipient address "
                                   "rejected: User unknown in local recipient table")
        self.assertGreaterEqual(time.monotonic() - t0, 2.9, "the lookup was not slowed")
        for o in others + [slow]:
            o.cmd("QUIT")

    def test_sighup_reads_the_configuration_off_the_loops(self):
        # A texthash table that takes mxgate a while to read.
        big = os.path.join(self.tmpdir(), "big")
        with open(big, "w") as f:
            for i in range(600000):
                f.write("user%d@big.test user%d/\n" % (i, i))
        os.chmod(big, 0o644)
        params = dict(BASE)
        srv = self.start_server(main=params, virtual_users=["alice"],
                                virtual_map=["@unused.test alice/"])
        clients = [self.connect(srv) for _ in range(4)]
        for c in clients:
            c.expect(220)
            c.cmd("EHLO client.example")
        harness.rewrite_main_cf(srv, {"virtual_mailbox_maps": "texthash:" + big,
                                      "virtual_mailbox_domains": "big.test"})
        start = len(srv.log_lines())
        t0 = time.monotonic()
        srv.signal(signal.SIGHUP)
        lat = []
        while time.monotonic() - t0 < 20:
            for c in clients:
                lat += noop_latencies(c, 0.05, every=0.005)
            if any("reload -- version" in ln for ln in srv.log_lines()[start:]):
                break
        took = time.monotonic() - t0
        self.assertTrue(any("reload -- version" in ln for ln in srv.log_lines()[start:]),
                        "no reload line")
        self.assertGreater(took, 0.2, "the table was read too fast to show anything")
        self.assertLess(max(lat), MAX_NOOP, "NOOP took %.3f s during a %.1f s reload"
                        % (max(lat), took))
        # new sessions use the new table
        n = self.connect(srv)
        n.expect(220)
        n.cmd("EHLO client.example")
        n.cmd("MAIL FROM:<a@example.org>")
        self.assertEqual(n.cmd("RCPT TO:<user599999@big.test>").text, "250 2.1.5 Ok")
        for c in clients + [n]:
            c.cmd("QUIT")

    def test_rebuilt_cdb_is_used_by_the_next_session(self):
        if not shutil.which("postmap"):
            self.fail("postmap is not installed (scripts/deps.sh --test)")
        srv = self.start_server(main=dict(BASE), virtual_users=["alice"])
        src = os.path.join(srv.dir, "vmailbox")
        subprocess.run(["postmap", "cdb:" + src], check=True)
        harness.rewrite_main_cf(srv, {"virtual_mailbox_maps": "cdb:" + src})
        srv.signal(signal.SIGHUP)
        self.assertTrue(srv.wait_log(r"reload -- version", timeout=10))
        old = self.connect(srv)         # started before the rebuild: keeps its table
        old.expect(220)
        old.cmd("EHLO client.example")
        old.cmd("MAIL FROM:<a@example.org>")
        self.assertEqual(old.cmd("RCPT TO:<bob@virt.test>").code, 550)
        with open(src, "a") as f:
            f.write("bob@virt.test bob/\n")
        subprocess.run(["postmap", "cdb:" + src], check=True)
        new = self.connect(srv)
        new.expect(220)
        new.cmd("EHLO client.example")
        new.cmd("MAIL FROM:<a@example.org>")
        self.assertEqual(new.cmd("RCPT TO:<bob@virt.test>").text, "250 2.1.5 Ok")
        self.assertEqual(old.cmd("RCPT TO:<bob@virt.test>").code, 550)
        # Postfix 3.7.11's smtpd logs exactly this before it takes the next client
        line = srv.wait_log(r"table cdb:%s\(0,lock\|fold_fix\|utf8_request\) has changed "
                            r"-- restarting$" % re.escape(src), timeout=5)
        self.assertTrue(line, "\n".join(srv.log_lines()[-10:]))
        self.assertEqual(len(harness.log_matches(srv, r"has changed -- restarting")), 1)
        old.cmd("QUIT")
        new.cmd("QUIT")

    # -- helpers ---------------------------------------------------------------------------

    def tmpdir(self):
        import tempfile
        d = tempfile.mkdtemp(prefix="mxgate-async-")
        os.chmod(d, 0o755)
        self.addCleanup(shutil.rmtree, d, True)
        return d
