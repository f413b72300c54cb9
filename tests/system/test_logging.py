"""Logging to maillog_file: the checks done before the file is opened as root (Postfix's
maillog_file_prefixes; no symbolic link, nothing but a regular file)."""

import os
import re
import subprocess
import tempfile

import harness
from harness import MxTestCase


def mxgate(args, timeout=30, **kw):
    """Run build/mxgate with args; (exit status, stdout, stderr)."""
    p = subprocess.run([harness.mxgate_binary()] + args, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=harness.sanitizer_env(),
                       timeout=timeout, **kw)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def main_cf_line(srv, name):
    """The 1-based line of main.cf that sets name."""
    with open(os.path.join(srv.dir, "main.cf")) as f:
        for i, line in enumerate(f, 1):
            if line.split("=", 1)[0].strip() == name:
                return i
    raise AssertionError("%s is not in main.cf" % name)


class MaillogFileTest(MxTestCase):
    def refused(self, main, want, files=None, setup=None):
        """check and run both refuse the configuration: exit 1, and want (a regex) in the
        error that each prints."""
        srv = harness.Server(main=main, files=files)
        self.addCleanup(srv.cleanup)
        if setup:
            setup(srv)
        rc, out, err = mxgate(["check", "-c", srv.dir])
        self.assertEqual(rc, 1, err)
        self.assertRegex(err, r"(?m)^mxgate: error: " + want(srv) + "$")
        rc, out, err = mxgate(["run", "-c", srv.dir], timeout=20)
        self.assertEqual(rc, 1, err)
        self.assertRegex(err, r"(?m)^mxgate: (error|fatal): " + want(srv) + "$")
        self.assertNotIn("daemon started", err)
        self.assertEqual(harness.sanitizer_reports(err), [])
        return srv, err

    def test_prefixes_refuse_proc_self_mem(self):
        """maillog_file_prefixes has Postfix's default (/var, /dev/stdout): /proc/self/mem is
        refused with Postfix's text at the maillog_file line, by check and by run."""
        def want(srv):
            return (re.escape("%s/main.cf, line %d: maillog_file value '/proc/self/mem' does not "
                              "match any prefix in maillog_file_prefixes"
                              % (srv.dir, main_cf_line(srv, "maillog_file"))))
        srv, err = self.refused({"maillog_file": "/proc/self/mem", "maillog_file_prefixes": None},
                                want)
        self.assertIn("fatal: configuration in %s has 1 error" % srv.dir, err)
        rc, out, err = mxgate(["conf", "-c", srv.dir, "-d", "maillog_file_prefixes"])
        self.assertEqual((rc, out), (0, "maillog_file_prefixes = /var, /dev/stdout\n"), err)

    def test_prefix_is_a_plain_string_prefix(self):
        """As in Postfix: a prefix matches any path that starts with it ("/tmp/x" admits
        "/tmp/xy/log"); a list item matches or the file is refused."""
        d = tempfile.mkdtemp(prefix="mxgate-pfx-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", d]))
        os.chmod(d, 0o755)
        srv = harness.Server(main={"maillog_file": d + "y/never",
                                   "maillog_file_prefixes": "/var,  " + d + " /dev/stdout"})
        self.addCleanup(srv.cleanup)
        rc, out, err = mxgate(["check", "-c", srv.dir])
        self.assertNotIn("maillog_file value", err)
        # ... and the check of the file itself says what run would find
        self.assertIn("mxgate: error: maillog_file = %sy/never: cannot create file: %sy: No such "
                      "file or directory" % (d, d), err)
        self.assertEqual(rc, 1)
        srv2 = harness.Server(main={"maillog_file": "/tmp/elsewhere.log",
                                    "maillog_file_prefixes": "/var, " + d})
        self.addCleanup(srv2.cleanup)
        rc, out, err = mxgate(["check", "-c", srv2.dir])
        self.assertEqual(rc, 1)
        self.assertIn("maillog_file value '/tmp/elsewhere.log' does not match any prefix in "
                      "maillog_file_prefixes", err)
        self.assertFalse(os.path.exists("/tmp/elsewhere.log"))

    def test_empty_prefixes(self):
        """Postfix refuses an empty maillog_file_prefixes whatever maillog_file is."""
        def want(srv):
            return re.escape("%s/main.cf, line %d: bad string length 0 < 1: maillog_file_prefixes = "
                             % (srv.dir, main_cf_line(srv, "maillog_file_prefixes")))
        self.refused({"maillog_file": "", "maillog_file_prefixes": ""}, want)

    def test_symlink_refused(self):
        """A maillog_file that is a symbolic link is not followed (it is opened as root): the
        file it points to stays untouched."""
        def setup(srv):
            with open(os.path.join(srv.dir, "target"), "w") as f:
                f.write("precious\n")
            os.symlink(os.path.join(srv.dir, "target"), os.path.join(srv.dir, "maillog"))

        def want(srv):
            return re.escape("maillog_file = %s/maillog: file is a symbolic link (mxgate opens "
                             "maillog_file as root and follows no link)" % srv.dir)
        srv, err = self.refused({}, want, setup=setup)
        with open(os.path.join(srv.dir, "target")) as f:
            self.assertEqual(f.read(), "precious\n")

    def test_non_regular_files_refused(self):
        """A FIFO (run must not wait for a reader either), a directory, a device and a file
        with a second hard link are refused; each error says what the file is."""
        cases = [
            ("fifo", lambda p: os.mkfifo(p), "file is a FIFO, not a regular file"),
            ("dir", lambda p: os.mkdir(p), "file is a directory, not a regular file"),
            ("hardlink", lambda p: (open(p + ".orig", "w").close(), os.link(p + ".orig", p)),
             "file has 2 hard links"),
        ]
        for name, make, why in cases:
            with self.subTest(name):
                def setup(srv, make=make):
                    make(os.path.join(srv.dir, "maillog"))

                def want(srv, why=why):
                    return re.escape("maillog_file = %s/maillog: %s" % (srv.dir, why))
                self.refused({}, want, setup=setup)
        with self.subTest("device"):
            self.refused({"maillog_file": "/dev/null", "maillog_file_prefixes": "/dev/"},
                         lambda srv: re.escape("maillog_file = /dev/null: file is a character "
                                               "device, not a regular file"))
