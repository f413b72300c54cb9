"""tables: ask Postfix's postmap -q and mxgate's map -q the same questions.

    TableDir        a scratch folder with a minimal main.cf, so that postmap
                    and postalias never read /etc/postfix; write() puts a file
                    in it, build(tool, spec) runs postmap/postalias there.
    postmap_q()     (stdout, exit code) of "postmap -c DIR -q KEY SPEC".
    mxgate_q()      the same from "build/mxgate map -c DIR -q KEY SPEC".
    TableCase       a unittest.TestCase with assert_same_answers(spec, keys):
                    every key gets the same output and exit code from both,
                    and the test says which keys differ.

Postfix (postfix, postfix-lmdb, postfix-pcre, ...) must be installed
(scripts/deps.sh --test); a missing tool fails the test, never skips it.
"""

import os
import shutil
import subprocess
import tempfile
import unittest

import harness

MIN_MAIN_CF = (
    "compatibility_level = 3.6\n"
    "mail_owner = postfix\n"
    "setgid_group = postdrop\n"
)


class TableDir:
    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="mxgate-tables-")
        with open(os.path.join(self.path, "main.cf"), "w") as f:
            f.write(MIN_MAIN_CF)

    def file(self, name):
        return os.path.join(self.path, name)

    def write(self, name, text, mode=0o644):
        p = self.file(name)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)
        return p

    def build(self, spec, tool="postmap", flags=()):
        """Build spec ("hash:/path") with Postfix's own tool; returns stderr."""
        if not shutil.which(tool):
            raise AssertionError("%s is not installed (scripts/deps.sh --test)" % tool)
        r = subprocess.run([tool, "-c", self.path, *flags, spec],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise AssertionError("%s %s failed (%d): %s" % (tool, spec, r.returncode, r.stderr))
        return r.stderr

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)


def _run(argv, timeout=30):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                       env=harness.sanitizer_env())
    return r.stdout, r.returncode, r.stderr


def postmap_q(config_dir, key, spec):
    out, rc, _ = _run(["postmap", "-c", config_dir, "-q", key, spec])
    return out, rc


def mxgate_q(config_dir, key, spec):
    out, rc, err = _run([harness.mxgate_binary(), "map", "-c", config_dir, "-q", key, spec])
    reports = harness.sanitizer_reports(err)
    if reports:
        raise AssertionError("mxgate map -q %r %s: sanitizer report:\n%s" % (key, spec, err))
    return out, rc


class TableCase(unittest.TestCase):
    def setUp(self):
        super().setUp()     # cooperative: a test may be a TableCase and an MxTestCase
        if not shutil.which("postmap"):
            self.fail("postmap is not installed (scripts/deps.sh --test)")
        self.tables = TableDir()
        self.addCleanup(self.tables.cleanup)

    def assert_same_answers(self, spec, keys, min_found=1):
        """Each key: postmap -q and mxgate map -q print the same and exit alike.
        At least min_found keys must be found, so the corpus tests something."""
        diffs, found = [], 0
        for key in keys:
            want = postmap_q(self.tables.path, key, spec)
            got = mxgate_q(self.tables.path, key, spec)
            if want[1] == 0:
                found += 1
            if want != got:
                diffs.append("%r: postmap %r, mxgate %r" % (key, want, got))
        if diffs:
            self.fail("%s: %d of %d keys differ:\n  %s"
                      % (spec, len(diffs), len(keys), "\n  ".join(diffs)))
        self.assertGreaterEqual(found, min_found, "%s: postmap found too few keys" % spec)
