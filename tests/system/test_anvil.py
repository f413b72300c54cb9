"""Issue 3 system tests: anvil(8) limits (connection count and rate, message and recipient rates),
exemptions, statistics lines, limits shared by all event loops, address grouping, and SIGHUP
reload.

Specification: POSTFIX_REFERENCE.md sections 0 and 3, DESIGN.md (smtpd_client_ipv4/6_prefix_length
grouping from Postfix 3.8).  anvil_rate_time_unit is 5s here; mynetworks = 192.0.2.0/24 so the
loopback test clients (127.0.0.2, 127.0.0.3, ...: distinct clients, logged as unknown[addr])
are not exempt.  The service name in idents and warnings is the master.cf service name,
"127.0.0.1:<port>".
"""

import re
import signal
import time

import harness
from harness import MxTestCase

HOST = "mx.example.test"
BASE = dict(harness.BASE_MAIN, anvil_rate_time_unit="5s")
BANNER = "220 %s ESMTP mxgate" % HOST
STAMP = r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d"
MESSAGE = "From: a@example.org\r\nTo: alice@virt.test\r\nSubject: anvil\r\n\r\nbody\r\n"


def too_many_connections(addr):
    return "421 4.7.0 %s Error: too many connections from %s" % (HOST, addr)


def warning_re(text):
    """A regex for one whole smtpd warning line."""
    return r"mxgate/smtpd\[\d+\]: warning: %s$" % re.escape(text)


class AnvilTest(MxTestCase):

    def server(self, main=None, **kw):
        params = dict(BASE)
        params.update(main or {})
        kw.setdefault("virtual_users", ["alice"])
        return self.start_server(main=params, **kw)

    def open(self, srv, source):
        """Connect from source and return (client, first reply)."""
        c = self.connect(srv, source=source)
        return c, c.read_reply(10)

    def track(self, c):
        self.addCleanup(c.close)
        return c

    def accepted(self, srv, source, what=""):
        c, rep = self.open(srv, source)
        self.assertEqual(rep.text, BANNER, "%s from %s must be accepted" % (what, source))
        return c

    def refused(self, srv, source, what=""):
        c, rep = self.open(srv, source)
        self.assertEqual(rep.text, too_many_connections(source), "%s from %s must be refused" % (what, source))
        self.assertTrue(c.closed(3.0), "a refused connection must be closed")
        return c

    def quit(self, c):
        c.send("QUIT\r\n")
        c.expect("221 2.0.0 Bye")
        self.assertTrue(c.closed(3.0))
        c.close()

    def wait_warning(self, srv, text, count=1, timeout=5.0):
        lines = harness.wait_log_count(srv, warning_re(text), count, timeout)
        self.assertGreaterEqual(len(lines), count, "missing %d x warning: %s\n%s"
                                % (count, text, "\n".join(srv.log_lines())))
        return lines

    # -- connection count ---------------------------------------------------------------------

    def test_connection_count_limit(self):
        """Count limit 2: the 3rd simultaneous connection from 127.0.0.2 gets the 421 instead of
        the banner and is closed (warning 'Connection concurrency limit exceeded: 3'); another
        client is unaffected; once one connection ends a new one is accepted."""
        srv = self.server(main={"smtpd_client_connection_count_limit": 2})
        svc = harness.service_name(srv)
        c1 = self.accepted(srv, "127.0.0.2", "connection 1")
        c2 = self.accepted(srv, "127.0.0.2", "connection 2")
        self.refused(srv, "127.0.0.2", "connection 3")
        self.wait_warning(srv, "Connection concurrency limit exceeded: 3 from unknown[127.0.0.2] "
                               "for service %s" % svc)
        d1 = self.accepted(srv, "127.0.0.3", "another client")
        d2 = self.accepted(srv, "127.0.0.3", "another client, 2nd")
        self.quit(c1)
        self.assertIsNotNone(srv.wait_log(r"disconnect from unknown\[127\.0\.0\.2\] quit=1 commands=1$"),
                             "\n".join(srv.log_lines()))
        time.sleep(0.2)
        c4 = self.accepted(srv, "127.0.0.2", "a new connection after one ended")
        rep = c4.cmd("EHLO client.example")
        self.assertEqual(rep.code, 250)
        for c in (c2, c4, d1, d2):
            self.quit(c)
        self.assertEqual(len(harness.log_matches(srv, r"warning: Connection concurrency limit exceeded")), 1)

    def test_count_limit_holds_across_event_loops(self):
        """Connections opened back to back are spread over the event loops; the count is shared:
        with limit 5, 8 simultaneous connections give exactly 5 banners and 3 refusals.  The
        same for the rate (limit 4: 8 quick connections, exactly 4 accepted)."""
        for limit_param, limit, keep_open in (("smtpd_client_connection_count_limit", 5, True),
                                              ("smtpd_client_connection_rate_limit", 4, False)):
            with self.subTest(limit_param):
                srv = self.server(main={limit_param: limit})
                socks = []
                for _ in range(8):
                    s, ok = harness.connect_nonblocking(srv.port, source="127.0.0.2", timeout=3)
                    self.assertTrue(ok, "connect failed")
                    socks.append(self.track(harness.client_from_socket(s, srv.port)))
                replies = [c.read_reply(10).text for c in socks]
                banners = [r for r in replies if r == BANNER]
                refusals = [r for r in replies if r == too_many_connections("127.0.0.2")]
                self.assertEqual((len(banners), len(refusals)), (limit, 8 - limit), replies)
                kind = "concurrency" if keep_open else "rate"
                lines = harness.wait_log_count(srv, r"warning: Connection %s limit exceeded: \d+ from "
                                                    r"unknown\[127\.0\.0\.2\]" % kind, 8 - limit)
                self.assertEqual(len(lines), 8 - limit, "\n".join(srv.log_lines()))
                for c in socks:
                    c.close()
                srv.check()

    # -- connection rate ----------------------------------------------------------------------

    def test_connection_rate_limit_fixed_window(self):
        """Rate limit 3 per 5s: connections 1-3 accepted, 4 and 5 refused (refused ones count:
        warnings with rates 4 and 5); another client is unaffected; a connection 4.3s in is
        still refused (rate 6, fixed window); once now > start + 5s (second resolution) a new
        window starts: 3 more accepted, the 4th refused with rate 4 again (a sliding window
        would still hold the 4.3s connection and refuse the 3rd)."""
        srv = self.server(main={"smtpd_client_connection_rate_limit": 3})
        svc = harness.service_name(srv)
        t_before = time.monotonic()
        # Connection 1 stays open, so the client's anvil entry never goes idle (an idle entry
        # is dropped, rate history included, after about one time unit): only the window
        # start decides when the rate restarts.
        first = self.accepted(srv, "127.0.0.2", "connection 1")
        t_first = time.monotonic()
        for i in (2, 3):
            self.quit(self.accepted(srv, "127.0.0.2", "connection %d" % i))
        self.refused(srv, "127.0.0.2", "connection 4")
        self.refused(srv, "127.0.0.2", "connection 5")
        for rate in (4, 5):
            self.wait_warning(srv, "Connection rate limit exceeded: %d from unknown[127.0.0.2] "
                                   "for service %s" % (rate, svc))
        self.quit(self.accepted(srv, "127.0.0.3", "another client"))
        time.sleep(max(0.0, t_before + 4.3 - time.monotonic()))
        self.refused(srv, "127.0.0.2", "connection 6 (4.3s into the window)")
        self.wait_warning(srv, "Connection rate limit exceeded: 6 from unknown[127.0.0.2] for service %s" % svc)
        # The window started at a whole second S <= floor(t_first); 6.1s after t_first the
        # clock's second is >= S + 6 > S + 5 whatever its phase.
        time.sleep(max(0.0, t_first + 6.1 - time.monotonic()))
        for i in (1, 2, 3):
            self.quit(self.accepted(srv, "127.0.0.2", "connection %d of the new window" % i))
        self.refused(srv, "127.0.0.2", "connection 4 of the new window")
        self.wait_warning(srv, "Connection rate limit exceeded: 4 from unknown[127.0.0.2] for service %s" % svc,
                          count=2)
        self.quit(first)

    # -- message and recipient rates ------------------------------------------------------------

    def test_message_rate_limit(self):
        """Message rate limit 2: the 3rd MAIL gets 450 4.7.1 Error: too much mail from 127.0.0.2,
        the session continues, and the refusal counts as an error (soft limit 1: the next
        reply is delayed).  Another client has its own counter."""
        srv = self.server(main={"smtpd_client_message_rate_limit": 2, "smtpd_soft_error_limit": 1})
        svc = harness.service_name(srv)
        c = self.accepted(srv, "127.0.0.2")
        c.send("EHLO client.example\r\n")
        c.expect(250)
        for i in (1, 2):
            c.send("MAIL FROM:<a@example.org>\r\n")
            c.expect("250 2.1.0 Ok")
            c.send("RSET\r\n")
            c.expect("250 2.0.0 Ok")
        t0 = time.monotonic()
        c.send("MAIL FROM:<a@example.org>\r\n")
        c.expect("450 4.7.1 Error: too much mail from 127.0.0.2")
        self.assertLess(time.monotonic() - t0, 0.5, "no error before the 450: it is not delayed")
        t0 = time.monotonic()
        c.send("NOOP\r\n")
        c.expect("250 2.0.0 Ok", timeout=5)
        self.assertGreaterEqual(time.monotonic() - t0, 0.8, "the 450 counts as an error (soft limit 1)")
        self.wait_warning(srv, "Message delivery request rate limit exceeded: 3 from unknown[127.0.0.2] "
                               "for service %s" % svc)
        d = self.accepted(srv, "127.0.0.3")
        d.send("EHLO client.example\r\n")
        d.expect(250)
        d.send("MAIL FROM:<a@example.org>\r\n")
        d.expect("250 2.1.0 Ok")
        self.quit(d)
        c.send("QUIT\r\n")
        c.expect(221, timeout=5)

    def test_recipient_rate_limit_counts_rcpt_and_vrfy(self):
        """Recipient rate limit 3: RCPT (accepted), RCPT (User unknown: still counted), VRFY
        (counted) use it up; the next RCPT gets 450 4.7.1 Error: too many recipients from
        127.0.0.2 (warning rate 4), a further VRFY the same (rate 5); the session continues."""
        srv = self.server(main={"smtpd_client_recipient_rate_limit": 3})
        svc = harness.service_name(srv)
        c = self.accepted(srv, "127.0.0.2")
        c.send("EHLO client.example\r\n")
        c.expect(250)
        c.send("MAIL FROM:<a@example.org>\r\n")
        c.expect("250 2.1.0 Ok")
        c.send("RCPT TO:<alice@virt.test>\r\n")
        c.expect("250 2.1.5 Ok")
        c.send("RCPT TO:<nosuch@local.test>\r\n")
        c.expect(550)
        c.send("VRFY alice@virt.test\r\n")
        c.expect(252)
        c.send("RCPT TO:<alice@virt.test>\r\n")
        c.expect("450 4.7.1 Error: too many recipients from 127.0.0.2")
        self.wait_warning(srv, "Recipient address rate limit exceeded: 4 from unknown[127.0.0.2] "
                               "for service %s" % svc)
        c.send("VRFY alice@virt.test\r\n")
        c.expect("450 4.7.1 Error: too many recipients from 127.0.0.2")
        self.wait_warning(srv, "Recipient address rate limit exceeded: 5 from unknown[127.0.0.2] "
                               "for service %s" % svc)
        # The session goes on: the recipient accepted before the limit still gets the message.
        c.send("DATA\r\n")
        c.expect(354)
        c.send(MESSAGE + ".\r\n")
        c.expect(re.compile(r"^250 2\.0\.0 Ok: queued as "))
        self.quit(c)
        self.assertEqual(len(harness.maildir(srv.vmail, "alice")["new"]), 1)

    # -- exemptions ---------------------------------------------------------------------------

    def test_event_limit_exceptions(self):
        """smtpd_client_event_limit_exceptions defaults to $mynetworks: with mynetworks =
        127.0.0.0/8 no limit applies to 127.0.0.2.  Set explicitly to 127.0.0.3, the limits
        apply to 127.0.0.2 (mynetworks notwithstanding) but not to 127.0.0.3."""
        limits = {"mynetworks": "127.0.0.0/8", "smtpd_client_connection_count_limit": 1,
                  "smtpd_client_connection_rate_limit": 2, "smtpd_client_message_rate_limit": 1}
        srv = self.server(main=limits)
        conns = [self.accepted(srv, "127.0.0.2", "exempt connection %d" % i) for i in (1, 2, 3)]
        conns[0].send("EHLO client.example\r\n")
        conns[0].expect(250)
        for i in (1, 2):
            conns[0].send("MAIL FROM:<a@example.org>\r\n")
            conns[0].expect("250 2.1.0 Ok")
            conns[0].send("RSET\r\n")
            conns[0].expect(250)
        for c in conns:
            self.quit(c)
        self.assertEqual(harness.log_matches(srv, r"limit exceeded"), [])
        srv.check()

        limits["smtpd_client_event_limit_exceptions"] = "127.0.0.3"
        srv = self.server(main=limits)
        c = self.accepted(srv, "127.0.0.2", "first")
        self.refused(srv, "127.0.0.2", "second simultaneous")
        d = [self.accepted(srv, "127.0.0.3", "exempt %d" % i) for i in (1, 2, 3)]
        for x in [c] + d:
            self.quit(x)

    # -- statistics -----------------------------------------------------------------------------

    def test_statistics_lines(self):
        """anvil_status_update_time = 5s: after some traffic anvil logs (as mxgate/anvil[pid]) max
        connection rate, max connection count, max message rate, max recipient rate and max cache
        size lines, in that order, with ident (service:addr) and a 'Mmm dd hh:mm:ss' stamp.  Peaks
        are reset after logging; at shutdown (SIGTERM) the lines for the events since are
        logged again."""
        # smtpd tells anvil about MAIL and RCPT only when their rate limits are set.
        srv = self.server(main={"anvil_status_update_time": "5s", "smtpd_client_message_rate_limit": 10,
                                "smtpd_client_recipient_rate_limit": 10})
        svc = harness.service_name(srv)
        ident2 = re.escape("(%s:127.0.0.2)" % svc)
        ident3 = re.escape("(%s:127.0.0.3)" % svc)
        c1 = self.accepted(srv, "127.0.0.2")
        c2 = self.accepted(srv, "127.0.0.2")
        c1.send("EHLO client.example\r\n")
        c1.expect(250)
        c1.send("MAIL FROM:<a@example.org>\r\n")
        c1.expect(250)
        c1.send("RCPT TO:<alice@virt.test>\r\n")
        c1.expect(250)
        self.quit(c1)
        self.quit(c2)
        prefix = r"^%s \S+ mxgate/anvil\[\d+\]: statistics: " % STAMP
        first = [
            prefix + r"max connection rate 2/5s for %s at %s$" % (ident2, STAMP),
            prefix + r"max connection count 2 for %s at %s$" % (ident2, STAMP),
            prefix + r"max message rate 1/5s for %s at %s$" % (ident2, STAMP),
            prefix + r"max recipient rate 1/5s for %s at %s$" % (ident2, STAMP),
            prefix + r"max cache size 1 at %s$" % STAMP,
        ]
        last = srv.wait_log(first[-1], timeout=12)
        self.assertIsNotNone(last, "no statistics within 12s\n" + "\n".join(srv.log_lines()))
        lines = srv.log_lines()
        idx = []
        for rx in first:
            found = [i for i, ln in enumerate(lines) if re.search(rx, ln)]
            self.assertEqual(len(found), 1, "want exactly one line matching %s\n%s" % (rx, "\n".join(lines)))
            idx.append(found[0])
        self.assertEqual(idx, sorted(idx), "statistics lines out of order:\n" + "\n".join(lines))
        # Traffic after the periodic report, then SIGTERM well before the next one.
        self.quit(self.accepted(srv, "127.0.0.3"))
        problems = srv.stop()
        self.assertEqual(problems, [], "\n".join(problems))
        lines = srv.log_lines()[idx[-1] + 1:]
        text = "\n".join(lines)
        self.assertTrue(any(re.search(prefix + r"max connection rate 1/5s for %s at %s$" % (ident3, STAMP), ln)
                            for ln in lines), "no shutdown statistics:\n" + text)
        self.assertTrue(any(re.search(prefix + r"max connection count 1 for %s at %s$" % (ident3, STAMP), ln)
                            for ln in lines), "no shutdown statistics:\n" + text)
        self.assertTrue(any(re.search(prefix + r"max cache size \d+ at %s$" % STAMP, ln) for ln in lines),
                        "no shutdown statistics:\n" + text)
        self.assertFalse(any(re.search(ident2, ln) for ln in lines),
                         "peaks must be reset after each report:\n" + text)

    # -- address grouping (Postfix 3.8 prefix lengths) ----------------------------------------

    def test_ipv4_prefix_length_groups_clients(self):
        """smtpd_client_ipv4_prefix_length = 24: 127.0.0.2, .3 and .4 share one counter (count
        limit 2: the connection from .4 is refused) and the warning names 127.0.0.0/24;
        127.0.1.2 is in another /24 and unaffected."""
        srv = self.server(main={"smtpd_client_connection_count_limit": 2,
                                "smtpd_client_ipv4_prefix_length": 24})
        a = self.accepted(srv, "127.0.0.2")
        b = self.accepted(srv, "127.0.0.3")
        self.refused(srv, "127.0.0.4", "3rd connection from 127.0.0.0/24")
        lines = harness.wait_log_count(srv, r"warning: Connection concurrency limit exceeded: 3 ", 1)
        self.assertEqual(len(lines), 1, "\n".join(srv.log_lines()))
        self.assertIn("127.0.0.0/24", lines[0])
        self.assertIn("127.0.0.4", lines[0])
        other = self.accepted(srv, "127.0.1.2", "a client in another /24")
        for c in (a, b, other):
            self.quit(c)

    # -- reload -------------------------------------------------------------------------------

    def test_sighup_reload(self):
        """SIGHUP: the daemon re-reads main.cf without dropping sessions.  An open session goes
        on and delivers; new sessions get the new banner and the new rate limit (3 -> 4); the
        anvil counters survive (connections 1-2 before, 3-4 after are accepted, 5 refused)."""
        probe = "127.0.0.9"  # exempt from anvil: polls for the new banner without counting
        srv = self.server(main={"anvil_rate_time_unit": "60s", "smtpd_client_connection_rate_limit": 3,
                                "smtpd_client_event_limit_exceptions": probe})
        svc = harness.service_name(srv)
        a = self.accepted(srv, "127.0.0.2", "connection 1")
        a.send("EHLO client.example\r\n")
        a.expect(250)
        self.quit(self.accepted(srv, "127.0.0.2", "connection 2"))
        new_banner = "220 %s ESMTP reloaded" % HOST
        harness.rewrite_main_cf(srv, {"smtpd_banner": "$myhostname ESMTP reloaded",
                                      "smtpd_client_connection_rate_limit": 4})
        srv.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        seen = None
        while time.monotonic() < deadline:
            self.assertIsNone(srv.proc.poll(), "the daemon exited on SIGHUP\n" + srv.diagnostics())
            try:
                with harness.Client(srv.port, source=probe, timeout=5) as p:
                    seen = p.read_reply().text
                    p.send("QUIT\r\n")
            except (OSError, harness.Closed, TimeoutError):
                seen = None
            if seen == new_banner:
                break
            time.sleep(0.2)
        self.assertEqual(seen, new_banner, "the new smtpd_banner never took effect\n" + srv.diagnostics())
        # The session opened before the reload still works.
        a.send("NOOP\r\n")
        a.expect("250 2.0.0 Ok")
        a.send("MAIL FROM:<a@example.org>\r\n")
        a.expect("250 2.1.0 Ok")
        a.send("RCPT TO:<alice@virt.test>\r\n")
        a.expect("250 2.1.5 Ok")
        a.send("DATA\r\n")
        a.expect(354)
        a.send(MESSAGE + ".\r\n")
        a.expect(re.compile(r"^250 2\.0\.0 Ok: queued as "))
        self.quit(a)
        # Rate 3 and 4 accepted under the new limit 4; rate 5 refused: counting went on.
        for i in (3, 4):
            c, rep = self.open(srv, "127.0.0.2")
            self.assertEqual(rep.text, new_banner, "connection %d after the reload" % i)
            self.quit(c)
        self.refused(srv, "127.0.0.2", "connection 5 (the rate survived the reload)")
        self.wait_warning(srv, "Connection rate limit exceeded: 5 from unknown[127.0.0.2] for service %s" % svc)
        self.assertEqual(len(harness.maildir(srv.vmail, "alice")["new"]), 1)


if __name__ == "__main__":
    import unittest
    unittest.main()
