"""`mxgate conf` against Postfix 3.7's own postconf on the same configuration directory: the
same output for -n, -x, -h, -o and plain names, and the same warning (with the program's
name) and exit status 0 for an unknown name.  Only parameters whose defaults are the same in
both are asked for (DESIGN.md's deliberate differences are checked in test_basic)."""

import os
import shutil
import subprocess
import tempfile
import unittest

import harness

MAIN_CF = """# a main.cf written for Postfix
myhostname = mx.example.test
mydestination = $myhostname, localhost
smtpd_hard_error_limit = ${stress?{2}:{30}}
mynetworks = 192.0.2.0/24, [2001:db8::]/32
smtpd_banner = $myhostname ESMTP   hello
   world
anvil_rate_time_unit = 5s
smtpd_client_connection_rate_limit = 10
message_size_limit = 20480000
"""

NAMES = ["smtpd_hard_error_limit", "smtpd_banner", "smtpd_timeout", "mydestination",
         "smtpd_client_event_limit_exceptions", "anvil_rate_time_unit", "smtpd_soft_error_limit",
         "smtpd_junk_command_limit", "smtpd_per_request_deadline", "message_size_limit",
         "smtpd_client_connection_rate_limit", "line_length_limit"]


class ConfCliTest(unittest.TestCase):
    def setUp(self):
        if not shutil.which("postconf"):
            self.fail("postconf is missing (scripts/deps.sh --test installs postfix)")
        self.dir = tempfile.mkdtemp(prefix="mxgate-conf-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        with open(os.path.join(self.dir, "main.cf"), "w") as f:
            f.write(MAIN_CF)
        # postconf warns when master.cf is missing; mxgate does not need one.
        with open(os.path.join(self.dir, "master.cf"), "w") as f:
            f.write("smtp inet n - y - - smtpd\n")

    def both(self, *args):
        out = []
        for prog in (["postconf"], [harness.mxgate_binary(), "conf"]):
            p = subprocess.run(prog + ["-c", self.dir] + list(args), capture_output=True,
                               text=True, timeout=30, env=harness.sanitizer_env())
            out.append(p)
        return out

    def assert_same(self, *args):
        pf, mx = self.both(*args)
        self.assertEqual(mx.returncode, pf.returncode, args)
        self.assertEqual(mx.stdout, pf.stdout, "mxgate conf %s" % " ".join(args))
        return pf, mx

    def test_n(self):
        self.assert_same("-n")

    def test_names_x_h(self):
        self.assert_same(*NAMES)
        self.assert_same("-x", *NAMES)
        self.assert_same("-h", *NAMES)
        self.assert_same("-xh", *NAMES)
        self.assert_same("-o", "stress=yes", "-x", *NAMES)
        self.assert_same("-n", "smtpd_banner", "smtpd_timeout")

    def test_unknown_name(self):
        pf, mx = self.assert_same("smtpd_timeout", "nosuchparam", "smtpd_banner")
        self.assertEqual(mx.returncode, 0)
        self.assertIn("postconf: warning: nosuchparam: unknown parameter", pf.stderr)
        self.assertIn("mxgate: warning: nosuchparam: unknown parameter", mx.stderr)
        pf, mx = self.assert_same("-d", "nosuchparam")
        self.assertIn("mxgate: warning: nosuchparam: unknown parameter", mx.stderr)
