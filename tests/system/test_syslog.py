"""Logging to syslog (maillog_file empty, the default): one datagram per line on the local
syslog socket, facility mail, each tagged as the Postfix process it stands for
(mxgate/smtpd, mxgate/qmgr, mxgate/virtual), so pflogsumm and fail2ban filters work.  The test
plays syslogd on a socket of its own (MXGATE_SYSLOG_SOCKET)."""

import os
import re
import smtplib
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import harness
from harness import MxTestCase


class SyslogTest(MxTestCase):
    def log_socket(self):
        """A datagram socket in a scratch folder, standing in for /dev/log: (socket, path)."""
        d = tempfile.mkdtemp(prefix="mxgate-syslog-")
        self.addCleanup(shutil.rmtree, d, True)
        os.chmod(d, 0o755)
        path = os.path.join(d, "log")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        os.chmod(path, 0o666)
        self.addCleanup(sock.close)
        sock.settimeout(0.2)
        return sock, path

    def start_daemon(self, srv, path):
        """build/mxgate run on srv's folder, logging to the socket at path."""
        env = harness.sanitizer_env()
        env["MXGATE_SYSLOG_SOCKET"] = path
        proc = subprocess.Popen([srv.binary, "run", "-c", srv.dir], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        return proc

    def test_lines_carry_postfix_process_tags(self):
        sock, path = self.log_socket()
        # The harness writes the configuration; the daemon is started here, with no
        # maillog_file for the harness to watch.
        srv = harness.Server(main={"maillog_file": "", "mynetworks": "127.0.0.0/8"},
                             virtual_users=["alice"])
        lines = []

        def drain():
            while True:
                try:
                    lines.append(sock.recv(65536).decode(errors="replace"))
                except socket.timeout:
                    return

        stop = threading.Event()

        def reader():          # a syslogd that keeps up
            while not stop.is_set():
                drain()
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        proc = self.start_daemon(srv, path)
        deadline = time.monotonic() + 10
        while not harness.port_listening(srv.port):
            if proc.poll() is not None:
                self.fail("mxgate exited: %r" % proc.stderr.read())
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
        with smtplib.SMTP("127.0.0.1", srv.port) as s:
            s.sendmail("a@example.org", ["alice@virt.test"], "Subject: s\r\n\r\nbody\r\n")
        time.sleep(0.3)
        proc.terminate()
        self.assertEqual(proc.wait(10), 0)
        time.sleep(0.3)
        stop.set()
        t.join(5)
        text = "\n".join(lines)
        stamp = r"<(\d+)>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d "
        for tag, msg in (("smtpd", r"connect from localhost\[127\.0\.0\.1\]"),
                         ("qmgr", r"[0-9A-F]+: from=<a@example\.org>, size=\d+, nrcpt=1 \(queue active\)"),
                         ("virtual", r"[0-9A-F]+: to=<alice@virt\.test>, relay=virtual, .*status=sent"),
                         ("smtpd", r"disconnect from localhost\[127\.0\.0\.1\] ")):
            m = re.search("^" + stamp + r"mxgate/%s\[%d\]: %s" % (tag, proc.pid, msg), text, re.M)
            self.assertIsNotNone(m, "no %s line %r in:\n%s" % (tag, msg, text))
            self.assertEqual(int(m.group(1)), 2 * 8 + 6, "facility mail, severity info")
        self.assertEqual(harness.sanitizer_reports(proc.stderr.read().decode(errors="replace")), [])
        srv.cleanup()

    def test_syslog_facility_local3(self):
        """syslog_facility = local3: every datagram's priority is local3 (19) * 8 + severity,
        for smtpd's info and warning lines and for master's start and stop lines."""
        sock, path = self.log_socket()
        srv = harness.Server(main={"maillog_file": "", "syslog_facility": "local3",
                                   "mynetworks": "127.0.0.0/8"})
        self.addCleanup(srv.cleanup)
        proc = self.start_daemon(srv, path)
        self.assertTrue(harness.wait_ports_listening([srv.port]), "nothing listens on %d" % srv.port)
        c = self.connect(srv)
        c.expect(220)
        c.send("GET / HTTP/1.0\r\n")       # a warning: non-SMTP command
        c.closed(5)
        time.sleep(0.3)
        proc.terminate()
        self.assertEqual(proc.wait(10), 0)
        lines = []
        while True:
            try:
                lines.append(sock.recv(65536).decode(errors="replace"))
            except socket.timeout:
                break
        text = "\n".join(lines)
        stamp = r"<(\d+)>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d "
        local3 = 19 * 8
        for tag, msg, severity in (
                ("master", r"daemon started -- version \S+, configuration " + re.escape(srv.dir), 6),
                ("smtpd", r"connect from localhost\[127\.0\.0\.1\]", 6),
                ("smtpd", r"warning: non-SMTP command from localhost\[127\.0\.0\.1\]: GET / HTTP/1\.0", 4),
                ("master", r"daemon stopped", 6)):
            m = re.search("^" + stamp + r"mxgate/%s\[%d\]: %s$" % (tag, proc.pid, msg), text, re.M)
            self.assertIsNotNone(m, "no %s line %r in:\n%s" % (tag, msg, text))
            self.assertEqual(int(m.group(1)), local3 + severity, m.group(0))
        pris = {int(m.group(1)) for m in re.finditer("^" + stamp, text, re.M)}
        self.assertTrue(pris and all(p // 8 == 19 for p in pris), "priorities %r" % pris)
        self.assertEqual(harness.sanitizer_reports(proc.stderr.read().decode(errors="replace")), [])

    def test_syslog_facility_unknown_name(self):
        """A name Postfix does not accept (they are case-sensitive) is a configuration error
        naming the parameter, the value and main.cf's line; run refuses to start."""
        srv = harness.Server(main={"syslog_facility": "LOCAL3"})
        self.addCleanup(srv.cleanup)
        with open(os.path.join(srv.dir, "main.cf")) as f:
            line = [i for i, ln in enumerate(f, 1) if ln.startswith("syslog_facility ")][0]
        want = ("mxgate: error: %s/main.cf, line %d: parameter syslog_facility: unrecognized "
                "value: LOCAL3" % (srv.dir, line))
        for verb in ("check", "run"):
            p = subprocess.run([srv.binary, verb, "-c", srv.dir], env=harness.sanitizer_env(),
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=20)
            err = p.stderr.decode(errors="replace")
            self.assertEqual(p.returncode, 1, err)
            self.assertIn(want + "\n", err)
            self.assertEqual(harness.sanitizer_reports(err), [])
