"""One `make run` and one `make test` build correctly on a machine where the libraries appear
only once `make deps` has run, as on a fresh Debian 12.

The bug: the Makefile asked pkg-config for libevent's flags when it was read (`:=`), before the
deps step had installed libevent, so the first `make run` linked without -levent and failed
(undefined references); a second one worked.

How this is tested without a fresh machine: each test copies the sources into a scratch
directory and runs the real make there with two stand-ins given on make's command line, as a
user could:
  PKG_CONFIG  a wrapper around the real pkg-config that fails, as pkg-config does on a machine
              without libevent-dev (or without pkg-config), until a marker file exists;
  DEPS        the deps step (normally `sh scripts/deps.sh`, which needs root and apt): here it
              only creates the marker, which is what installing the packages changes.
Both log their calls, so the test sees the order: pkg-config failing while the Makefile is read,
then deps, then pkg-config answering for the build.  With the old Makefile the build in the
same make invocation used the flags from the failed call and the link failed.  `make run` is
then checked end to end (the daemon it starts on 127.0.0.1:2525 stores a message), `make test`
with SANITIZE=address,undefined as .ci/run calls it, with the test runner replaced by one
sanitized unit binary (the whole suite inside the suite would run for minutes).

test_deps_installs_swaks: scripts/deps.sh (what `make deps` and `make run` run) installs swaks,
which the README's first message uses: run with a dpkg-query stand-in that reports only swaks
missing and an apt-get stand-in that records what it was asked to install.
"""

import os
import shutil
import smtplib
import stat
import subprocess
import tempfile
import time
import unittest

import harness

PORT = 2525
MAKE_TIMEOUT = 600

WRAPPER = """#!/bin/sh
# pkg-config as on a machine where libevent is missing until the deps step has run
echo "pkg-config $* marker=$(test -f '{marker}' && echo yes || echo no)" >> '{log}'
test -f '{marker}' || exit 1
exec pkg-config "$@"
"""

FAKE_DEPS = """#!/bin/sh
# the deps step: what it changes for the build is that the packages are there
echo "deps $*" >> '{log}'
touch '{marker}'
"""


def copy_sources(dest):
    """The files a build needs (no build directory, no var/)."""
    for name in ("Makefile", "src", "scripts", "etc", os.path.join("tests", "unit"),
                 os.path.join("tests", "shim"), os.path.join("tests", "common")):
        src = os.path.join(harness.REPO, name)
        dst = os.path.join(dest, name)
        if os.path.isdir(src):
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.o", "*.d"))
        else:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(src, dst)


def make_env():
    """The sanitizer environment without what an enclosing make passes down (MAKEFLAGS holds
    its command-line variables, such as BUILD=..., and its jobserver): the make under test
    must see only what the test gives it, as a user's shell would."""
    env = harness.sanitizer_env()
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "GNUMAKEFLAGS"):
        env.pop(k, None)
    return env


def write_exec(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)


class MakefileTest(unittest.TestCase):
    def setUp(self):
        self.top = tempfile.mkdtemp(prefix="mxgate-make-")
        os.chmod(self.top, 0o755)
        self.addCleanup(shutil.rmtree, self.top, True)
        self.src = os.path.join(self.top, "src-copy")
        os.mkdir(self.src)
        copy_sources(self.src)
        self.log = os.path.join(self.top, "calls.log")
        self.marker = os.path.join(self.top, "installed")
        self.wrapper = os.path.join(self.top, "pkg-config-wrapper")
        self.deps = os.path.join(self.top, "fake-deps")
        write_exec(self.wrapper, WRAPPER.format(marker=self.marker, log=self.log))
        write_exec(self.deps, FAKE_DEPS.format(marker=self.marker, log=self.log))
        self.assertFalse(os.path.exists(os.path.join(self.src, "build")))

    def make_args(self, *targets):
        return ["make", "-C", self.src, "PKG_CONFIG=" + self.wrapper, "DEPS=sh " + self.deps] \
            + list(targets)

    def calls(self):
        with open(self.log) as f:
            return f.read().splitlines()

    def assert_order(self, calls):
        """pkg-config failed while make read the Makefile, then deps ran, then pkg-config
        answered (marker=yes) for the build."""
        deps = [i for i, c in enumerate(calls) if c.startswith("deps")]
        self.assertEqual(len(deps), 1, calls)
        before, after = calls[:deps[0]], calls[deps[0] + 1:]
        self.assertTrue(before and all(c.endswith("marker=no") for c in before), calls)
        self.assertTrue(any(c.startswith("pkg-config --libs") and c.endswith("marker=yes")
                            for c in after), calls)

    def test_one_make_run(self):
        self.assertFalse(harness.port_listening(PORT), "port 2525 is already in use")
        proc = harness.start_group(self, self.make_args("run"),
                                   os.path.join(self.top, "make.out"), env=make_env())

        def output():
            with open(os.path.join(self.top, "make.out"), "rb") as f:
                return f.read().decode("utf-8", "replace")
        deadline = time.monotonic() + MAKE_TIMEOUT
        while not harness.port_listening(PORT):
            self.assertIsNone(proc.poll(), "make run ended (status %s):\n%s"
                              % (proc.returncode, output()[-4000:]))
            self.assertLess(time.monotonic(), deadline, output()[-4000:])
            time.sleep(0.2)
        self.assert_order(self.calls())
        self.assertNotIn("undefined reference", output())
        with smtplib.SMTP("127.0.0.1", PORT, timeout=30) as s:
            s.sendmail("a@example.org", ["alice@example.test"],
                       "Subject: first make run\r\n\r\nHello.\r\n")
        mail = os.path.join(self.src, "var", "mail")
        deadline = time.monotonic() + 10
        while not harness.maildir_files(mail, "new") and time.monotonic() < deadline:
            time.sleep(0.1)
        files = harness.maildir_files(mail, "new")
        self.assertEqual(len(files), 1, files)
        self.assertIn(os.path.join("alice", "new"), files[0])

    def test_one_make_test_sanitized(self):
        runner = os.path.join("build", "tests", "test_maps")
        p = subprocess.run(self.make_args("SANITIZE=address,undefined", "RUN_TESTS=" + runner,
                                          "test"),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=MAKE_TIMEOUT,
                           env=make_env())
        out = p.stdout.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, out[-4000:])
        self.assert_order(self.calls())
        self.assertIn("deps --test", self.calls())
        self.assertIn("PASSED", out)
        self.assertIn("-fsanitize=address,undefined", out)
        # the daemon was built in the same invocation and linked against libevent
        ldd = subprocess.run(["ldd", os.path.join(self.src, "build", "mxgate")],
                             stdout=subprocess.PIPE, timeout=30).stdout.decode()
        self.assertIn("libevent", ldd)
        self.assertIn("libasan", ldd)

    def test_plain_make_without_libraries_says_what_to_do(self):
        """`make` alone does not install; without the libraries it stops with a hint instead
        of undefined references."""
        p = subprocess.run(["make", "-C", self.src, "PKG_CONFIG=" + self.wrapper],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=MAKE_TIMEOUT,
                           env=make_env())
        out = p.stdout.decode("utf-8", "replace")
        self.assertNotEqual(p.returncode, 0, out)
        self.assertRegex(out, r"finds no libevent libevent_pthreads[^:\n]*: run 'make deps' "
                              r"\(or 'make run'\) first")
        self.assertNotIn("undefined reference", out)

    def test_deps_installs_swaks(self):
        bindir = os.path.join(self.top, "bin")
        os.mkdir(bindir)
        apt_log = os.path.join(self.top, "apt.log")
        # every package but swaks is installed; the mxgate user exists (getent is real)
        write_exec(os.path.join(bindir, "dpkg-query"),
                   "#!/bin/sh\nfor a; do p=$a; done\n"
                   "[ \"$p\" = swaks ] && exit 1\necho 'install ok installed'\n")
        write_exec(os.path.join(bindir, "apt-get"), "#!/bin/sh\necho \"$*\" >> '%s'\n" % apt_log)
        write_exec(os.path.join(bindir, "debconf-set-selections"), "#!/bin/sh\ncat >/dev/null\n")
        env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
        if os.geteuid() != 0:
            self.fail("this test runs scripts/deps.sh as root (with apt-get replaced)")
        subprocess.run(["getent", "passwd", "mxgate"], check=True, stdout=subprocess.DEVNULL)
        p = subprocess.run(["sh", os.path.join(self.src, "scripts", "deps.sh")], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        out = p.stdout.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, out)
        self.assertIn("deps: installing swaks", out)
        with open(apt_log) as f:
            installs = [ln.split() for ln in f if " install " in " %s " % ln]
        self.assertEqual(len(installs), 1)
        self.assertEqual(installs[0][-1], "swaks")


if __name__ == "__main__":
    unittest.main()
