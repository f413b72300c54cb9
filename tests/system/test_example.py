"""`make run`'s start script on the bundled example configuration (README): mxgate listens on
127.0.0.1:2525 and swaks delivers to alice@example.test into ./var/mail, started as root (it
drops to mail_owner) and as an ordinary user.  The script runs from a scratch copy of what it
needs (the binary, etc/example, scripts/run-example.sh), so that an ordinary user can reach it
wherever the repository is.
"""

import os
import pwd
import shutil
import subprocess
import tempfile
import time

import harness

PORT = 2525


def copy_tree_for_run(dest):
    os.makedirs(os.path.join(dest, "build"))
    shutil.copy2(harness.mxgate_binary(), os.path.join(dest, "build", "mxgate"))
    shutil.copytree(os.path.join(harness.REPO, "etc", "example"), os.path.join(dest, "etc", "example"))
    os.makedirs(os.path.join(dest, "scripts"))
    shutil.copy2(os.path.join(harness.REPO, "scripts", "run-example.sh"),
                 os.path.join(dest, "scripts", "run-example.sh"))


class ExampleRunTest(harness.MxTestCase):
    def run_example(self, user=None):
        top = tempfile.mkdtemp(prefix="mxgate-example-")
        os.chmod(top, 0o755)
        self.addCleanup(shutil.rmtree, top, True)
        copy_tree_for_run(top)
        kw = {}
        if user:
            pw = pwd.getpwnam(user)
            harness.chown_tree(top, pw.pw_uid, pw.pw_gid)
            kw = dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
        self.assertFalse(harness.port_listening(PORT), "port 2525 is already in use")
        proc = harness.start_group(self, ["sh", "scripts/run-example.sh"],
                                   os.path.join(top, "run.log"), cwd=top,
                                   env=harness.sanitizer_env(), **kw)
        deadline = time.monotonic() + 10
        while not harness.port_listening(PORT):
            self.assertIsNone(proc.poll(), open(os.path.join(top, "run.log")).read())
            self.assertLess(time.monotonic(), deadline, "nothing listens on 127.0.0.1:2525")
            time.sleep(0.05)
        out = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % PORT, "--to",
                              "alice@example.test", "--from", "someone@example.org"],
                             capture_output=True, text=True, timeout=30)
        self.assertIn("250 2.0.0 Ok: queued as", out.stdout, out.stdout + out.stderr)
        files = harness.maildir_files(os.path.join(top, "var", "mail"), "new")
        self.assertEqual(len(files), 1)
        proc.stop_group()
        self.assertEqual(proc.returncode, 0, open(os.path.join(top, "run.log")).read())
        text = open(os.path.join(top, "run.log"), errors="replace").read()
        self.assertIn("daemon started", text)
        self.assertEqual(harness.sanitizer_reports(text), [])
        return files[0]

    def test_make_run_as_root(self):
        if os.geteuid() != 0:
            self.fail("this test needs root (CI runs as root)")
        path = self.run_example()
        self.assertEqual(os.stat(path).st_uid, pwd.getpwnam("mxgate").pw_uid)

    def test_make_run_as_ordinary_user(self):
        user = "nobody" if os.geteuid() == 0 else None
        path = self.run_example(user)
        want = pwd.getpwnam(user).pw_uid if user else os.geteuid()
        self.assertEqual(os.stat(path).st_uid, want)
