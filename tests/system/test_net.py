"""Network core: accept backs off when the process runs out of descriptors (SECURITY_CHECKLIST
row 49) instead of spinning on a readable listening socket, and the sessions it has keep going.
"""

import os
import socket
import time

from harness import MxTestCase

BASE = {"mynetworks": "127.0.0.0/8"}


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class DescriptorTest(MxTestCase):
    def test_emfile_pauses_accept_without_spinning(self):
        srv = self.start_server(main=BASE, nofile=64)
        first = self.connect(srv)
        first.expect("220")
        # Far more connections than descriptors: the kernel completes them, mxgate cannot accept.
        flood = []
        for _ in range(120):
            s = socket.socket()
            s.settimeout(2)
            try:
                s.connect(("127.0.0.1", srv.port))
            except OSError:
                s.close()
                continue
            flood.append(s)
        srv.expect_log(r"warning: service \S+: accept: Too many open files; pausing new "
                     r"connections for 1s", timeout=10)
        before = cpu_seconds(srv.pid)
        time.sleep(3)
        used = cpu_seconds(srv.pid) - before
        self.assertLess(used, 1.0, "mxgate used %.2f s of CPU in 3 s while out of descriptors" % used)
        # The session it had still works.
        self.assertEqual(str(first.cmd("NOOP")), "250 2.0.0 Ok")
        for s in flood:
            s.close()
        first.cmd("QUIT")
        # Once descriptors are free again, new clients are served (after at most the 1 s pause).
        deadline = time.monotonic() + 15
        while True:
            try:
                c = self.connect(srv)
                c.expect("220", timeout=5)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        self.assertEqual(str(c.cmd("NOOP")), "250 2.0.0 Ok")
