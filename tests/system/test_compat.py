"""Postfix compatibility: every session in tests/compat/sessions/ played against a fresh mxgate
and compared with the transcript recorded from Postfix 3.7 (tests/compat/expected/), with only
the deliberate differences of DESIGN.md applied (see tests/compat/compat.py).

Two tests per session: test_<session> (replies, connection close, stored messages) and
test_<session>_log (smtpd's log lines from connect to disconnect).  A session with test DNS
records (@dns, sessions/README) is one test of CompatDnsTest instead, both checks in one, run in
its own private DNS namespace (dnsfixture.PrivateDnsCase) with the session's records."""

import os
import sys
import unittest

import dnsfixture
import harness

sys.path.insert(0, os.path.join(harness.REPO, "tests", "compat"))
import compat  # noqa: E402


class CompatTest(unittest.TestCase):
    maxDiff = None
    _results = {}

    def run_session(self, name):
        """Play the session once per test run; both tests of a session share the result."""
        res = self._results.get(name)
        if res is None:
            try:
                res = compat.run_mxgate(name)
                res.server.cleanup()     # kept when the daemon had problems, or MXGATE_KEEP=1
            except harness.ServerError as e:
                res = e
            CompatTest._results[name] = res
        if isinstance(res, Exception):
            self.fail("mxgate did not start: %s" % res)
        return res

    def check_replies(self, name):
        res = self.run_session(name)
        problems = list(res.problems)
        d = res.diff()
        if d or problems:
            self.fail("session %s differs from Postfix:\n%s%s" % (
                name, d, "".join("\ndaemon: %s" % p for p in problems)))

    def check_log(self, name):
        res = self.run_session(name)
        d = res.log_diff()
        if d:
            self.fail("smtpd log of session %s differs from Postfix:\n%s" % (name, d))


class CompatDnsTest(dnsfixture.PrivateDnsCase):
    maxDiff = None

    def check_session(self, name):
        self.start_dns(**compat.session_dns(os.path.join(compat.SESSIONS, name + ".txt")))
        try:
            res = compat.run_mxgate(name)
            res.server.cleanup()
        except harness.ServerError as e:
            self.fail("mxgate did not start: %s" % e)
        d = res.diff() + res.log_diff()
        if d or res.problems:
            self.fail("session %s differs from Postfix:\n%s%s" % (
                name, d, "".join("\ndaemon: %s" % p for p in res.problems)))


def _add(name):
    ident = name.replace("-", "_")
    if compat.session_dns(os.path.join(compat.SESSIONS, name + ".txt")):
        setattr(CompatDnsTest, "test_" + ident, lambda self: self.check_session(name))
        return
    setattr(CompatTest, "test_" + ident, lambda self: self.check_replies(name))
    setattr(CompatTest, "test_%s_log" % ident, lambda self: self.check_log(name))


for _name in compat.session_names():
    _add(_name)


if __name__ == "__main__":
    unittest.main()
