"""Logging to syslog (maillog_file empty, the default): one datagram per line on the local
syslog socket, facility mail, each tagged as the Postfix process it stands for
(mxgate/smtpd, mxgate/qmgr, mxgate/virtual), so pflogsumm and fail2ban filters work.  The test
plays syslogd on a socket of its own (MXGATE_SYSLOG_SOCKET)."""

import os
import re
import smtplib
import socket
import subprocess
import tempfile
import threading
import time

import harness
from harness import MxTestCase


class SyslogTest(MxTestCase):
    def test_lines_carry_postfix_process_tags(self):
        d = tempfile.mkdtemp(prefix="mxgate-syslog-")
        os.chmod(d, 0o755)
        path = os.path.join(d, "log")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        os.chmod(path, 0o666)
        self.addCleanup(sock.close)
        sock.settimeout(0.2)
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
        env = harness.sanitizer_env()
        env["MXGATE_SYSLOG_SOCKET"] = path
        proc = subprocess.Popen([srv.binary, "run", "-c", srv.dir], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
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
