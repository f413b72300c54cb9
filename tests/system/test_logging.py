"""Logging to maillog_file: the checks done before the file is opened as root (Postfix's
maillog_file_prefixes; no symbolic link, nothing but a regular file), the queue to the writer
thread (a stalled reader never stalls a session; what is dropped is counted and reported; a
fatal line is written before the exit), and the master(8) tag of the daemon's own start, reload
and stop lines."""

import fcntl
import os
import re
import select
import signal
import subprocess
import tempfile
import threading
import time

import harness
from harness import MxTestCase

F_SETPIPE_SZ = 1031                 # <linux/fcntl.h>
STAMP = r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d"
DROPPED = r"warning: (\d+) log lines dropped: maillog_file did not keep up$"


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


class FifoReader(threading.Thread):
    """The reading end of a FIFO, read into .data until EOF, except while paused."""

    def __init__(self, fd):
        super().__init__(daemon=True)
        self.fd = fd
        self.data = b""
        self.lock = threading.Lock()
        self.reading = threading.Event()
        self.reading.set()
        self.paused = threading.Event()
        self.eof = threading.Event()
        self.stopping = False

    def run(self):
        while not self.stopping:
            if not self.reading.is_set():
                self.paused.set()
                self.reading.wait()
                self.paused.clear()
            r, _, _ = select.select([self.fd], [], [], 0.05)
            if not r:
                continue
            chunk = os.read(self.fd, 65536)
            if not chunk:
                self.eof.set()
                return
            with self.lock:
                self.data += chunk

    def pause(self):
        self.reading.clear()
        self.paused.wait(5)

    def resume(self):
        self.reading.set()

    def finish(self):
        """Stop reading (before the descriptor is closed)."""
        self.stopping = True
        self.reading.set()
        self.join(5)

    def lines(self):
        with self.lock:
            return self.data.decode("utf-8", "replace").splitlines()

    def wait_line(self, regex, timeout=10.0):
        r = re.compile(regex)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines():
                if r.search(line):
                    return line
            time.sleep(0.02)
        return None


class MaillogQueueTest(MxTestCase):
    def fifo(self):
        """(read fd, write fd, FifoReader): a FIFO with the smallest pipe buffer (4 KiB, full
        after about ten log lines), read by a thread; the caller passes the write end to the
        daemon as its standard output and closes its own copy."""
        d = tempfile.mkdtemp(prefix="mxgate-fifo-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", d]))
        fifo = os.path.join(d, "maillog.fifo")
        os.mkfifo(fifo)
        rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.addCleanup(os.close, rfd)
        wfd = os.open(fifo, os.O_WRONLY)
        fcntl.fcntl(wfd, F_SETPIPE_SZ, 4096)
        reader = FifoReader(rfd)
        reader.start()
        self.addCleanup(reader.finish)
        return rfd, wfd, reader

    def test_stalled_reader_stalls_no_session_and_drops_are_reported(self):
        """maillog_file = /dev/stdout, and stdout is a FIFO whose reader stops reading.  Once
        the pipe is full the writer thread blocks in write(2); with 6000 rejected recipients
        being logged, new sessions still get their banner and NOOP is answered in < 100 ms
        (a synchronous write on the event loop would block them for good).  After the reader
        reads again, the dropped lines are reported, lines after the gap are there, every line
        is whole, and SIGTERM still gets "daemon stopped" into the file."""
        rfd, wfd, reader = self.fifo()

        main = dict(harness.BASE_MAIN)
        main.update({"maillog_file": "/dev/stdout", "maillog_file_prefixes": "/dev/stdout",
                     # every RCPT is an error: keep the tarpit and the hard limit out of it
                     "smtpd_soft_error_limit": 100000, "smtpd_hard_error_limit": 100000})
        srv = harness.Server(main=main)
        err = open(srv.stderr_path, "wb")
        proc = subprocess.Popen([srv.binary, "run", "-c", srv.dir], stdin=subprocess.DEVNULL,
                                stdout=wfd, stderr=err, env=harness.sanitizer_env(), cwd=srv.dir)
        err.close()
        os.close(wfd)                      # the daemon holds the only writing end now

        def kill():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.addCleanup(kill)
        started = reader.wait_line(r"daemon started -- version ", timeout=10)
        self.assertIsNotNone(started, "no 'daemon started' line:\n%s" % srv.stderr())
        self.assertTrue(harness.wait_ports_listening([srv.port]), srv.stderr())

        held = self.connect(srv, timeout=5)
        held.expect(220)
        held.cmd("EHLO client.example")
        reader.pause()

        n_rcpt, batch = 6000, 200
        local = "x" * 60
        flood_result = {}

        def flood():
            try:
                c = harness.Client(srv.port, timeout=10)
                c.expect(220)
                c.send("EHLO flood.example\r\n")
                c.expect(250)
                c.send("MAIL FROM:<sender@example.org>\r\n")
                c.expect(250)
                for i in range(0, n_rcpt, batch):
                    c.send("".join("RCPT TO:<%s%05d@local.test>\r\n" % (local, i + k)
                                   for k in range(batch)))
                    for _ in range(batch):
                        c.expect(550)
                c.send("QUIT\r\n")
                c.expect(221)
                c.close()
                flood_result["ok"] = True
            except Exception as e:          # reported by the main thread
                flood_result["error"] = repr(e)
        t = threading.Thread(target=flood, daemon=True)
        t0 = time.monotonic()
        t.start()
        noop_times, banner_times, probes = [], [], 0
        while t.is_alive() and time.monotonic() - t0 < 60:
            try:
                a = time.monotonic()
                self.assertEqual(str(held.cmd("NOOP", timeout=2)), "250 2.0.0 Ok")
                noop_times.append(time.monotonic() - a)
                a = time.monotonic()
                with harness.Client(srv.port, timeout=2) as c:   # its connect line is logged too
                    c.expect(220)
                    banner_times.append(time.monotonic() - a)
                    c.cmd("QUIT")
            except (TimeoutError, harness.Closed) as e:
                self.fail("probe %d (NOOP on a held session, then a new session's banner) got "
                          "no reply within 2 s while the maillog_file reader was stalled: %s"
                          % (probes + 1, e))
            probes += 1
            time.sleep(0.02)
        t.join(30)
        self.assertEqual(flood_result, {"ok": True})
        self.assertGreater(probes, 3, "the flood ended before the probes could run")
        self.assertLess(max(noop_times), 0.1, "NOOP latencies %r" % noop_times)
        self.assertLess(max(banner_times), 1.0, "banner latencies %r" % banner_times)

        reader.resume()
        note = reader.wait_line(r"mxgate/smtpd\[%d\]: %s" % (proc.pid, DROPPED), timeout=20)
        self.assertIsNotNone(note, "no dropped-lines warning in:\n%s" % "\n".join(reader.lines()[-20:]))
        # a line logged after the gap gets through
        held.cmd("QUIT")
        self.assertIsNotNone(reader.wait_line(r"disconnect from localhost\[127\.0\.0\.1\] "
                                              r"ehlo=1 noop=%d quit=1 " % len(noop_times)))
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(20), 0, srv.stderr())
        self.assertTrue(reader.eof.wait(10), "the daemon's end of the FIFO was not closed")
        reader.join(5)
        lines = reader.lines()
        prefix = re.compile(r"^%s mx\.example\.test mxgate/(smtpd|master|anvil)\[%d\]: " % (STAMP, proc.pid))
        bad = [ln for ln in lines if not prefix.match(ln)]
        self.assertEqual(bad, [], "lines that are not whole log lines")
        dropped = sum(int(m.group(1)) for m in (re.search(DROPPED, ln) for ln in lines) if m)
        rejects = sum(1 for ln in lines if "NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 550" in ln)
        self.assertGreater(dropped, 0)
        self.assertLess(rejects, n_rcpt, "nothing was dropped")
        # What was dropped is what is missing: the rejects, plus the connect and disconnect
        # lines of a few probe sessions.
        self.assertGreaterEqual(rejects + dropped, n_rcpt)
        self.assertLessEqual(rejects + dropped, n_rcpt + 2 * probes + 2)
        self.assertTrue(any(re.search(r"mxgate/master\[%d\]: daemon stopped$" % proc.pid, ln)
                            for ln in lines[-10:]), "\n".join(lines[-10:]))
        self.assertEqual(harness.sanitizer_reports(srv.stderr()), [])
        srv.cleanup()

    def test_fatal_line_reaches_the_file_before_exit(self):
        """A fatal error after logging has started (the port is taken) ends the process, but
        only once the writer thread has written the fatal line and every line before it: with
        the reader of /dev/stdout stalled behind 100 warnings, the process waits (rather than
        exit with them in memory), and when the reader reads again the file holds all of
        them, the error and the fatal line last."""
        import socket
        taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        rfd, wfd, reader = self.fifo()
        reader.pause()
        main = dict(harness.BASE_MAIN)
        main.update({"maillog_file": "/dev/stdout", "maillog_file_prefixes": "/dev/stdout"})
        main.update({"no_such_parameter_%03d" % i: "x" * 40 for i in range(100)})
        srv = harness.Server(main=main, master=["127.0.0.1:%d inet n - n - - smtpd" % port])
        self.addCleanup(srv.cleanup)
        proc = subprocess.Popen([srv.binary, "run", "-c", srv.dir], stdin=subprocess.DEVNULL,
                                stdout=wfd, stderr=subprocess.PIPE, env=harness.sanitizer_env())
        os.close(wfd)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        time.sleep(1.0)
        self.assertIsNone(proc.poll(), "exited with its last log lines unwritten")
        reader.resume()
        self.assertEqual(proc.wait(20), 1)
        err = proc.stderr.read().decode(errors="replace")
        self.assertIn("mxgate: fatal: cannot listen on the configured services\n", err)
        self.assertTrue(reader.eof.wait(10))
        msgs = [re.sub(r"^%s \S+ mxgate/\w+\[\d+\]: " % STAMP, "", ln) for ln in reader.lines()]
        unused = [m for m in msgs if re.match(r"warning: %s/main\.cf, line \d+: unused parameter: "
                                              r"no_such_parameter_\d{3}=x{40}$" % re.escape(srv.dir), m)]
        self.assertEqual(len(unused), 100, "\n".join(msgs))
        self.assertEqual(msgs[-2:], [
            "error: service 127.0.0.1:%d: bind 127.0.0.1 port %d: Address already in use"
            % (port, port),
            "fatal: cannot listen on the configured services"], "\n".join(msgs[-5:]))
        self.assertEqual(harness.sanitizer_reports(err), [])


class MasterTagTest(MxTestCase):
    def test_start_reload_stop_lines_are_masters(self):
        """Postfix's master(8) logs "daemon started -- version V, configuration DIR",
        "reload -- ..." and "terminating on signal 15"; mxgate tags them, and its own
        "daemon stopped", mxgate/master[pid]."""
        rc, out, err = mxgate(["version"])
        version = out.split()[1]
        srv = self.start_server(main=dict(harness.BASE_MAIN))
        srv.signal(signal.SIGHUP)
        self.assertIsNotNone(srv.wait_log(r"reload -- version"))
        self.assertEqual(srv.stop(), [])
        tag = r"^%s mx\.example\.test mxgate/master\[%d\]: " % (STAMP, srv.pid)
        msgs = [re.sub(tag, "", ln) for ln in srv.log_lines() if re.match(tag, ln)]
        self.assertEqual(msgs, [
            "daemon started -- version %s, configuration %s" % (version, srv.dir),
            "reload -- version %s, configuration %s" % (version, srv.dir),
            "terminating on signal 15",
            "daemon stopped",
        ], "\n".join(srv.log_lines()))
        self.assertEqual(harness.log_matches(srv, r"mxgate/smtpd\[\d+\]: (daemon|reload|terminating)"), [])
