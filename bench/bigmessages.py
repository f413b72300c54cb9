#!/usr/bin/env python3
"""bigmessages: 60 clients each send an 8 MB message at the same time (issue 10).

Every message must be stored whole (byte for byte, each once) and the server's RSS (VmRSS of
the mxgate process, sampled every 20 ms from the first connection to the last 250) must stay
under 160 MiB: bodies stream to spool files, a session holds tens of KiB whatever its
message's size.  The binary is a non-sanitized build (bench/build; _benchlib refuses a
sanitized one: ASan's quarantine alone takes more than the bound).

    python3 bench/bigmessages.py [--build DIR] [--clients N] [--mib M]

Needs root (the harness starts mxgate as root, which drops to the mxgate user).  Bounded: the
whole run has 180 s; each client's socket 120 s.  Exit status 0 when every message is stored
whole and the peak is under the bound.
"""

import argparse
import hashlib
import os
import smtplib
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _benchlib as B  # noqa: E402

LIMIT_KIB = 160 * 1024


def payload(i, size):
    """Message i: a Subject naming it and size bytes of lines unique to it (CRLF)."""
    line = ("m%02d " % i + "x" * 73 + "\r\n").encode()
    body = line * (size // len(line))
    return b"Subject: big %d\r\n\r\n" % i + body


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", help="mxgate build dir (default bench/build, built here)")
    ap.add_argument("--clients", type=int, default=60)
    ap.add_argument("--mib", type=int, default=8, help="message size in MiB")
    args = ap.parse_args()
    budget, binary = B.prepare(args.build, 4096, seconds=180)
    size = args.mib * 1024 * 1024
    main_cf = dict(B.BASE_MAIN, **{
        "smtpd_client_connection_count_limit": "0",
        "default_process_limit": "200",
        "message_size_limit": str(size + 1024 * 1024),
    })
    srv = B.start_mxgate(binary, main_cf, None)
    failed = False
    try:
        rss0 = B.proc_status_kib(srv.pid)
        msgs = [payload(i, size) for i in range(args.clients)]
        want = {hashlib.sha256(m.replace(b"\r\n", b"\n")).hexdigest(): i
                for i, m in enumerate(msgs)}
        results = [None] * args.clients
        peak = [0]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], B.proc_status_kib(srv.pid))
                time.sleep(0.02)

        def client(i):
            try:
                s = smtplib.SMTP("127.0.0.1", srv.port, timeout=120)
                s.ehlo("client%d.example" % i)
                s.sendmail("sender@client.example", ["alice@virt.test"], msgs[i])
                s.quit()
                results[i] = "250"
            except Exception as e:  # noqa: BLE001 -- reported below
                results[i] = repr(e)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.monotonic()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(1.0, budget.left() - 30))
        elapsed = time.monotonic() - t0
        done.set()
        sampler.join(1)
        peak[0] = max(peak[0], B.proc_status_kib(srv.pid))

        new = os.path.join(srv.vmail, "alice", "new")
        found = {}
        for name in os.listdir(new):
            with open(os.path.join(new, name), "rb") as f:
                data = f.read()
            # the stored file: Return-Path, Delivered-To, Received, then the message as sent
            k = data.index(b"Subject: big ")
            h = hashlib.sha256(data[k:]).hexdigest()
            found[h] = found.get(h, 0) + 1
        ok250 = sum(1 for r in results if r == "250")
        whole = sum(1 for h in want if found.get(h) == 1)
        extra = sum(found.values()) - whole
        print("%d clients x %d MiB at once: %d got 250, %d stored whole once, %d other files; "
              "%.1f s; mxgate RSS %s at start, peak %s (bound %s)"
              % (args.clients, args.mib, ok250, whole, extra, elapsed, B.fmt_kib(rss0),
                 B.fmt_kib(peak[0]), B.fmt_kib(LIMIT_KIB)))
        for i, r in enumerate(results):
            if r != "250":
                print("  client %d: %s" % (i, r))
        failed = ok250 != args.clients or whole != args.clients or extra != 0 \
            or peak[0] >= LIMIT_KIB
        print("bigmessages: %s" % ("FAILED" if failed else "ok"))
    finally:
        B.stop_mxgate(srv)
        budget.cancel()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
