#!/usr/bin/env python3
"""tls benchmark: STARTTLS handshakes per second, and messages per second over STARTTLS at 20
sessions, mxgate against Postfix 3.7 with the same certificate (RSA 2048, made here with the
openssl command, signed by a CA of its own that the clients verify).

    handshakes  CLIENTS processes, each HANDSHAKES / CLIENTS sessions one after the other:
                connect, banner, EHLO, STARTTLS, a full TLS handshake (Python's ssl, no
                resumption), EHLO over TLS, QUIT.  Timed from the first connect to the last
                QUIT's reply.
    messages    SESSIONS processes, each one session: EHLO, STARTTLS, handshake, EHLO, then
                MESSAGES / SESSIONS messages of about 1 KB to alice@virt.test (MAIL, RCPT,
                DATA, the message, each 250 awaited), QUIT.  Timed from the first connect until
                every message is in the virtual Maildir's new/ (Postfix replies 250 once the
                message is queued, and delivers afterwards).

Each case runs REPEATS times per server, interleaved (mxgate, postfix, mxgate, ...); the median
is reported with min and max, and the ratio mxgate/postfix.

    python3 bench/tls.py [--build DIR] [--repeats N] [--scale F]

Needs root.  Every run is capped at RUN_CAP seconds, the whole script at BUDGET; every server
is stopped on any exit.
"""

import argparse
import multiprocessing
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _benchlib as B  # noqa: E402

HANDSHAKES = 400
CLIENTS = 4
MESSAGES = 1000
SESSIONS = 20
REPEATS = 3
RUN_CAP = 60.0
BUDGET = 280
BODY = ("From: a@client.example\r\nTo: alice@virt.test\r\nSubject: tls bench\r\n\r\n"
        + ("X" * 78 + "\r\n") * 12)

MAIN = dict(B.BASE_MAIN, **{
    "smtpd_client_connection_count_limit": "0",
    "default_process_limit": "200",
    "smtpd_tls_security_level": "may",
})


def make_certs():
    d = tempfile.mkdtemp(prefix="mxgate-bench-tls-")
    os.chmod(d, 0o755)

    def run(*args):
        subprocess.run(["openssl"] + list(args), cwd=d, check=True, capture_output=True,
                       timeout=60)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "2", "-subj", "/CN=mxgate bench CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr",
        "-subj", "/CN=mx.test")
    with open(os.path.join(d, "ext"), "w") as f:
        f.write("subjectAltName=DNS:mx.test\n")
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "srv.crt", "-days", "2", "-extfile", "ext")
    for n in os.listdir(d):
        os.chmod(os.path.join(d, n), 0o644)
    return d


# -- the client (in child processes) --------------------------------------------------------------

class Smtp:
    def __init__(self, port, cafile):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=RUN_CAP)
        self.buf = b""
        self.cafile = cafile

    def reply(self):
        while True:
            i = self.buf.find(b"\r\n")
            while i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                if len(line) < 4 or line[3:4] != b"-":
                    return line
                i = self.buf.find(b"\r\n")
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("server closed")
            self.buf += data

    def cmd(self, line, want):
        self.sock.sendall(line)
        r = self.reply()
        if not r.startswith(want):
            raise RuntimeError("%r: %r" % (line, r))
        return r

    def starttls(self, ctx):
        self.cmd(b"STARTTLS\r\n", b"220")
        self.sock = ctx.wrap_socket(self.sock, server_hostname="mx.test")

    def close(self):
        self.sock.close()


def client_context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    # each session a full handshake: no ticket is kept between them
    ctx.options |= ssl.OP_NO_TICKET
    return ctx


def handshake_worker(port, cafile, n, out):
    try:
        ctx = client_context(cafile)
        for _ in range(n):
            c = Smtp(port, cafile)
            c.reply()
            c.cmd(b"EHLO client.example\r\n", b"250")
            c.starttls(ctx)
            c.cmd(b"EHLO client.example\r\n", b"250")
            c.cmd(b"QUIT\r\n", b"221")
            c.close()
        out.put(("ok", n))
    except Exception as e:  # reported by the parent
        out.put(("error", repr(e)))


def message_worker(port, cafile, n, out):
    try:
        ctx = client_context(cafile)
        c = Smtp(port, cafile)
        c.reply()
        c.cmd(b"EHLO client.example\r\n", b"250")
        c.starttls(ctx)
        c.cmd(b"EHLO client.example\r\n", b"250")
        data = BODY.encode() + b".\r\n"
        for _ in range(n):
            c.cmd(b"MAIL FROM:<sender@client.example>\r\n", b"250")
            c.cmd(b"RCPT TO:<alice@virt.test>\r\n", b"250")
            c.cmd(b"DATA\r\n", b"354")
            c.cmd(data, b"250")
        c.cmd(b"QUIT\r\n", b"221")
        c.close()
        out.put(("ok", n))
    except Exception as e:
        out.put(("error", repr(e)))


def run_workers(target, port, cafile, procs, per):
    q = multiprocessing.Queue()
    ps = [multiprocessing.Process(target=target, args=(port, cafile, per, q))
          for _ in range(procs)]
    t0 = time.monotonic()
    for p in ps:
        p.start()
    results = []
    try:
        for _ in ps:
            results.append(q.get(timeout=max(1.0, RUN_CAP - (time.monotonic() - t0))))
    finally:
        for p in ps:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
    errors = [r[1] for r in results if r[0] != "ok"]
    return time.monotonic() - t0, t0, errors


# -- servers ---------------------------------------------------------------------------------

class Mxgate:
    name = "mxgate"

    def __init__(self, binary, certs):
        self.binary, self.certs = binary, certs
        self.srv = None

    def start(self):
        main = dict(MAIN, smtpd_tls_cert_file=os.path.join(self.certs, "srv.crt"),
                    smtpd_tls_key_file=os.path.join(self.certs, "srv.key"))
        self.srv = B.start_mxgate(self.binary, main, None)
        self.port = self.srv.port
        self.new = os.path.join(self.srv.vmail, "alice", "new")

    def cpu_pid(self):
        return self.srv.pid

    def stop(self):
        if self.srv is not None:
            B.stop_mxgate(self.srv)
            self.srv = None


class Postfix:
    name = "postfix"

    def __init__(self, certs):
        self.certs = certs
        self.pf = None

    def start(self):
        main = dict(MAIN, smtpd_tls_cert_file=os.path.join(self.certs, "srv.crt"),
                    smtpd_tls_key_file=os.path.join(self.certs, "srv.key"))
        self.pf = B.PostfixRef("tls", main, ["127.0.0.1:{port} inet n - n - - smtpd",
                                             "tlsmgr unix - - n 1000? 1 tlsmgr"])
        self.pf.start()
        self.port = self.pf.port
        self.new = os.path.join(self.pf.vmail, "alice", "new")

    def cpu_pid(self):
        return self.pf.master_pid

    def stop(self):
        if self.pf is not None:
            self.pf.stop()
            self.pf = None


def one_run(rcv, case, cafile, count):
    """(rate, problem or None)"""
    cpu0 = B.tree_cpu_seconds(rcv.cpu_pid())
    if case == "handshakes":
        per = count // CLIENTS
        elapsed, t0, errors = run_workers(handshake_worker, rcv.port, cafile, CLIENTS, per)
        n = per * CLIENTS
    else:
        per = count // SESSIONS
        n = per * SESSIONS
        B.empty_dir(rcv.new)
        _, t0, errors = run_workers(message_worker, rcv.port, cafile, SESSIONS, per)
        deadline = t0 + RUN_CAP
        while B.count_files(rcv.new) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        elapsed = time.monotonic() - t0
        stored = B.count_files(rcv.new)
        if stored != n:
            errors.append("%d of %d messages stored" % (stored, n))
        B.empty_dir(rcv.new)
    cpu = B.tree_cpu_seconds(rcv.cpu_pid()) - cpu0
    if errors:
        return None, "; ".join(errors[:3]), None
    return n / elapsed, None, cpu * 1000.0 / n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build")
    ap.add_argument("--repeats", type=int, default=REPEATS)
    ap.add_argument("--scale", type=float, default=1.0)
    args = ap.parse_args()
    budget, binary = B.prepare(args.build, 4096, BUDGET)
    certs = make_certs()
    servers = [Mxgate(binary, certs), Postfix(certs)]
    cafile = os.path.join(certs, "ca.crt")
    problems = []
    results = {}
    try:
        for s in servers:
            s.start()
        # warm-up, untimed: 20 handshakes and 20 messages each
        for s in servers:
            one_run(s, "handshakes", cafile, 20)
            one_run(s, "messages", cafile, 20)
        cases = (("handshakes", max(CLIENTS, int(HANDSHAKES * args.scale))),
                 ("messages", max(SESSIONS, int(MESSAGES * args.scale))))
        for case, count in cases:
            for _ in range(args.repeats):
                for s in servers:
                    rate, problem, cpu = one_run(s, case, cafile, count)
                    if problem:
                        problems.append("%s %s: %s" % (s.name, case, problem))
                        print("PROBLEM %s %s: %s" % (s.name, case, problem))
                        continue
                    results.setdefault((case, s.name), []).append((rate, cpu))
                    print("  %-10s %-8s %8.1f /s  server CPU %.2f ms each"
                          % (case, s.name, rate, cpu))
                    sys.stdout.flush()
    except B.BudgetExceeded as e:
        problems.append(str(e))
        print("PROBLEM %s" % e)
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(certs, ignore_errors=True)
        budget.cancel()
    units = {"handshakes": "handshakes/s", "messages": "msg/s"}
    label = {"handshakes": "handshakes", "messages": "messages 20 sessions"}
    for case in ("handshakes", "messages"):
        med = {}
        for name in ("mxgate", "postfix"):
            rs = [r for r, _ in results.get((case, name), [])]
            if rs:
                med[name] = statistics.median(rs)
                print("%s %s: median %.1f %s (min %.1f, max %.1f, %d runs)"
                      % (case, name, med[name], units[case], min(rs), max(rs), len(rs)))
        if len(med) == 2:
            print("tls %s: mxgate %.1f %s vs postfix %.1f %s: ratio %.2f"
                  % (label[case], med["mxgate"], units[case], med["postfix"], units[case],
                     med["mxgate"] / med["postfix"]))
    print("elapsed %.0f s" % budget.elapsed())
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
