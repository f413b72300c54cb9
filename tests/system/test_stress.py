"""Automatic stress (POSTFIX_REFERENCE.md §2.3): an eligible service (maxproc > 1, not bound
to loopback only) enters stress when it reaches its session cap; sessions that start from then
on use the ${stress?...} values, and master's "has reached its process limit" warning is logged
once.  The service listens on every IPv4 address (that is what makes it eligible); the test
clients only ever connect to 127.0.0.1.
"""

import re

from harness import MxTestCase

HOST = "mx.example.test"
BASE = {"mynetworks": "192.0.2.0/24", "inet_interfaces": "all", "inet_protocols": "ipv4"}


class StressTest(MxTestCase):
    def test_eligible_service_enters_stress_at_its_cap(self):
        srv = self.start_server(main=BASE, master=["{port} inet n - n - 2 smtpd"])
        first = self.connect(srv)
        first.expect("220")
        # The session that takes the last slot starts under stress (Postfix spawns that
        # process with -o stress=yes), so its hard error limit is 1.
        second = self.connect(srv)
        second.expect("220")
        name = str(srv.port)
        srv.expect_log(r'mxgate/master\[\d+\]: warning: service "%s" \(%s\) has reached its '
                     r'process limit "2": new clients may experience noticeable delays$'
                     % (name, name))
        srv.expect_log(r"mxgate/master\[\d+\]: warning: to avoid this condition, increase the "
                     r"process count in master.cf or reduce the service time per client$")
        srv.expect_log(r"mxgate/master\[\d+\]: warning: see http://www.postfix.org/"
                     r"STRESS_README.html for examples of stress-adapting configuration "
                     r"settings$")
        self.assertEqual(str(second.cmd("FOO")), "500 5.5.2 Error: command not recognized")
        self.assertEqual(str(second.read_reply(timeout=2)),
                         "421 4.7.0 %s Error: too many errors" % HOST)
        self.assertTrue(second.closed())
        # The session from before stress keeps its own limits: hard limit 20.
        for _ in range(3):
            self.assertEqual(str(first.cmd("FOO")), "500 5.5.2 Error: command not recognized")
        self.assertEqual(str(first.cmd("NOOP")), "250 2.0.0 Ok")
        first.cmd("QUIT")
        # Reaching the cap again within 1000 s does not log the warning again.
        third = self.connect(srv)
        third.expect("220")
        fourth = self.connect(srv)
        fourth.expect("220")
        self.assertEqual(str(third.cmd("FOO")), "500 5.5.2 Error: command not recognized")
        self.assertEqual(str(third.read_reply(timeout=2)),
                         "421 4.7.0 %s Error: too many errors" % HOST)
        warnings = [ln for ln in srv.log_lines() if re.search(r"has reached its process limit", ln)]
        self.assertEqual(len(warnings), 1, warnings)

    def test_loopback_service_never_enters_stress(self):
        srv = self.start_server(main=BASE, master=["127.0.0.1:{port} inet n - n - 2 smtpd"])
        first = self.connect(srv)
        first.expect("220")
        second = self.connect(srv)
        second.expect("220")
        for _ in range(3):
            self.assertEqual(str(second.cmd("FOO")), "500 5.5.2 Error: command not recognized")
        self.assertEqual(str(second.cmd("NOOP")), "250 2.0.0 Ok")
        self.assertFalse([ln for ln in srv.log_lines() if "has reached its process limit" in ln])
