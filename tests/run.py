#!/usr/bin/env python3
"""run.py: run every mxgate test and print one line per test.

    python3 tests/run.py --build build [-k PATTERN] [--unit-only | --system-only] [-v]

What runs:
  * unit: every build/tests/test_* binary (cmocka).  Each cmocka test case counts as one test,
    named unit/<binary>:<case>.  A binary that exits non-zero without a failed case to show for
    it (crash, abort, sanitizer report, wrong exit status) adds a failed test named
    unit/<binary>; a binary whose output has no cmocka case lines counts as one test.
  * unit: every tests/unit/*.sh script (sh, from the repo root, BUILD set); exit 0 = pass.
  * system: every test method of tests/system/test_*.py (unittest), named
    system/<module>.<Class>.<method>.  A skipped test is a FAILURE: a system test that cannot
    run (missing tool, daemon not starting) must not pass silently.
  * system, again with a late anvil: the anvil and limit tests (DELAYED_MODULES) once more for
    each of DELAYS, against the daemon built with the test-only anvil backend that answers
    that many milliseconds late (MXGATE_ANVIL_DELAY, see tests/system/harness.py), named
    system/anvil-delay-<ms>/<module>.<Class>.<method>: every limit must hold however late
    anvil answers.

-k PATTERN keeps the tests whose name contains PATTERN (or matches it as a glob when it has
* ? or [).  Unit binaries are always run, and only the matching cases are reported.

Every process gets sanitizer options (ASAN_OPTIONS etc., see tests/system/harness.py); a
sanitizer report in a unit binary's output fails it, and the system harness fails the test
that started a daemon whose stderr holds one.

Output: "PASS name" or "FAIL name: detail" (detail lines indented), and as the very last
line "N passed, N failed".  Exit status 1 if anything failed (or nothing ran).
"""

import argparse
import fnmatch
import glob
import os
import subprocess
import sys
import time
import traceback
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "system"))
sys.path.insert(0, os.path.join(HERE, "compat"))

UNIT_TIMEOUT = 300
# The tests that run again with anvil answering late, and how late (ms).
DELAYED_MODULES = ("test_anvil", "test_limits")
DELAYS = ("0", "1", "200")


class Results:
    def __init__(self, pattern, verbose):
        self.pattern = pattern
        self.verbose = verbose
        self.passed = 0
        self.failed = 0

    def selected(self, name):
        if not self.pattern:
            return True
        if any(ch in self.pattern for ch in "*?["):
            return fnmatch.fnmatchcase(name, self.pattern)
        return self.pattern in name

    def report(self, name, ok, detail="", secs=None):
        t = " (%.1fs)" % secs if (self.verbose and secs is not None) else ""
        if ok:
            self.passed += 1
            print("PASS %s%s" % (name, t), flush=True)
        else:
            self.failed += 1
            detail = (detail or "failed").rstrip()
            lines = detail.splitlines() or ["failed"]
            print("FAIL %s%s: %s" % (name, t, lines[0]), flush=True)
            for ln in lines[1:]:
                print("    " + ln, flush=True)


def tail(text, n=40):
    lines = text.rstrip().splitlines()
    if len(lines) > n:
        lines = ["... (%d lines cut)" % (len(lines) - n)] + lines[-n:]
    return "\n".join(lines)


# -- unit tests ----------------------------------------------------------------------------------

def parse_cmocka(output):
    """[(case, ok, detail)] from cmocka's standard output (stdout+stderr in one stream), and
    the name of a case that was running when the output stopped (crash), or None."""
    cases = []
    current = None
    detail = []
    seen = {}
    for line in output.splitlines():
        if line.startswith("[ RUN      ] "):
            current = line[13:].strip()
            detail = []
        elif line.startswith("[       OK ] ") and current is not None:
            cases.append((current, True, ""))
            current = None
        elif line.startswith("[  FAILED  ] ") and current is not None:
            cases.append((current, False, "\n".join(detail)))
            current = None
        elif line.startswith("[  SKIPPED ] ") and current is not None:
            cases.append((current, False, "skipped (a skipped test counts as failed)\n" + "\n".join(detail)))
            current = None
        elif current is not None:
            detail.append(line)
    out = []
    for name, ok, det in cases:
        seen[name] = seen.get(name, 0) + 1
        out.append((name if seen[name] == 1 else "%s#%d" % (name, seen[name]), ok, det))
    return out, current


def run_unit_binary(path, res, env):
    from harness import sanitizer_reports
    base = os.path.basename(path)
    t0 = time.monotonic()
    try:
        p = subprocess.run([path], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=UNIT_TIMEOUT)
        output, rc, timed_out = p.stdout.decode("utf-8", "replace"), p.returncode, False
    except subprocess.TimeoutExpired as e:
        output = (e.stdout or b"").decode("utf-8", "replace")
        rc, timed_out = None, True
    secs = time.monotonic() - t0
    cases, running = parse_cmocka(output)
    san = sanitizer_reports(output)
    bin_selected = res.selected("unit/" + base)
    for case, ok, det in cases:
        name = "unit/%s:%s" % (base, case)
        if bin_selected or res.selected(name):
            res.report(name, ok, det)
    if running is not None:
        name = "unit/%s:%s" % (base, running)
        why = "timed out after %ds" % UNIT_TIMEOUT if timed_out else "did not finish (exit status %s)" % rc
        res.report(name, False, why + "\n" + tail(output.split("[ RUN      ] " + running, 1)[-1]))
    # binary-level verdict: only when nothing above already shows the failure
    shown_failure = running is not None or any(not ok for _, ok, _ in cases)
    problem = None
    if timed_out and running is None:
        problem = "timed out after %ds" % UNIT_TIMEOUT
    elif san:
        problem = "sanitizer report:\n" + tail(output)
    elif rc != 0 and not shown_failure:
        problem = "exit status %s\n%s" % (rc, tail(output))
    if not cases and running is None and problem is None:
        if bin_selected:
            res.report("unit/" + base, True, secs=secs)   # no cmocka output: one test
    elif problem is not None and (bin_selected or any(res.selected("unit/%s:%s" % (base, c)) for c, _, _ in cases)):
        res.report("unit/" + base, False, problem, secs)


def run_unit(build, res):
    from harness import sanitizer_env
    env = sanitizer_env()
    # scripts take BUILD relative to the repo root, as make passes it
    rel = os.path.relpath(build, REPO)
    env["BUILD"] = rel if not rel.startswith("..") else build
    env["MXGATE_BUILD"] = build
    bins = sorted(p for p in glob.glob(os.path.join(build, "tests", "test_*"))
                  if os.path.isfile(p) and os.access(p, os.X_OK))
    for path in bins:
        run_unit_binary(path, res, env)
    for script in sorted(glob.glob(os.path.join(HERE, "unit", "*.sh"))):
        name = "unit/" + os.path.basename(script)
        if not res.selected(name):
            continue
        t0 = time.monotonic()
        try:
            p = subprocess.run(["sh", script], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=UNIT_TIMEOUT)
            out = p.stdout.decode("utf-8", "replace")
            from harness import sanitizer_reports
            ok = p.returncode == 0 and not sanitizer_reports(out)
            res.report(name, ok, "" if ok else "exit status %d\n%s" % (p.returncode, tail(out)),
                       time.monotonic() - t0)
        except subprocess.TimeoutExpired:
            res.report(name, False, "timed out after %ds" % UNIT_TIMEOUT)


# -- system tests --------------------------------------------------------------------------------

class LineResult(unittest.TestResult):
    """Reports each test as it finishes; skips are failures."""

    def __init__(self, res, name_of):
        super().__init__()
        self.res = res
        self.name_of = name_of
        self.t0 = None
        self.outcome = None

    def startTest(self, test):
        super().startTest(test)
        self.t0 = time.monotonic()
        self.outcome = (True, "")
        self.current = test

    current = None

    def _set(self, ok, detail, test=None):
        if test is not None and test is not self.current:
            # setUpClass/setUpModule (or their tearDown) failed: unittest reports it on a
            # placeholder that never starts; it is one failed test of its own.
            self.res.report("system/" + str(test.description if hasattr(test, "description") else test),
                            False, detail)
            return
        if self.outcome[0]:        # keep the first failure (a cleanup failure comes later)
            self.outcome = (ok, detail)
        elif not ok:
            self.outcome = (False, self.outcome[1] + "\n" + detail)

    def addError(self, test, err):
        super().addError(test, err)
        self._set(False, format_err(err), test)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._set(False, format_err(err), test)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._set(False, "skipped: %s (a system test that cannot run counts as failed)" % reason, test)

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._set(False, "unexpected success of a test marked expectedFailure")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._set(False, "%s\n%s" % (subtest, format_err(err)))

    def stopTest(self, test):
        super().stopTest(test)
        self.current = None
        ok, detail = self.outcome
        self.res.report(self.name_of(test), ok, detail, time.monotonic() - self.t0)


def format_err(err):
    """The exception's own message and the innermost frame outside unittest (no chained
    exceptions, no unittest internals)."""
    etype, value, tb = err
    msg = "".join(traceback.format_exception_only(etype, value)).rstrip()
    frames = [f for f in traceback.extract_tb(tb) if "/unittest/" not in f.filename]
    frames = [f for f in frames if os.path.abspath(f.filename).startswith(REPO + os.sep)] or frames
    if frames:
        f = frames[-1]
        msg += '\nat %s:%d in %s' % (os.path.relpath(f.filename, REPO), f.lineno, f.name)
    return msg


def iter_tests(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from iter_tests(t)
        else:
            yield t


def system_name(test, prefix="system/"):
    return prefix + test.id()


def run_system(build, res, modules=None, prefix="system/"):
    os.environ["MXGATE_BUILD"] = build
    loader = unittest.TestLoader()
    files = sorted(glob.glob(os.path.join(HERE, "system", "test_*.py")))
    for f in files:
        mod = os.path.basename(f)[:-3]
        if modules is not None and mod not in modules:
            continue
        try:
            suite = loader.loadTestsFromName(mod)
        except Exception:
            name = "system/%s (import)" % mod
            if res.selected(name) or res.selected("system/" + mod):
                res.report(name, False, traceback.format_exc())
            continue
        chosen = unittest.TestSuite()
        for t in iter_tests(suite):
            if res.selected(system_name(t, prefix)):
                chosen.addTest(t)
        if loader.errors:
            for e in loader.errors:
                res.report("system/%s (load)" % mod, False, e)
            loader.errors = []
        if chosen.countTestCases() == 0:
            continue
        chosen.run(LineResult(res, lambda t: system_name(t, prefix)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("-k", dest="pattern", default=None)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--unit-only", action="store_true")
    g.add_argument("--system-only", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true", help="show durations")
    a = ap.parse_args()
    build = os.path.abspath(os.path.join(REPO, a.build) if not os.path.isabs(a.build) else a.build)
    os.chdir(REPO)
    res = Results(a.pattern, a.verbose)
    if not a.system_only:
        run_unit(build, res)
    if not a.unit_only:
        run_system(build, res)
        for delay in DELAYS:
            os.environ["MXGATE_ANVIL_DELAY"] = delay
            try:
                run_system(build, res, DELAYED_MODULES, "system/anvil-delay-%s/" % delay)
            finally:
                del os.environ["MXGATE_ANVIL_DELAY"]
    print("%d passed, %d failed" % (res.passed, res.failed), flush=True)
    return 1 if res.failed or res.passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
