#!/usr/bin/env python3
"""dnsbl benchmark (issue 9, "Slow answers"): a DNS list that answers after 500 ms.

Both mxgate and Postfix 3.7 get `smtpd_client_restrictions = reject_rbl_client zen.test`
(asked at RCPT: smtpd_delay_reject is left at yes) and `smtpd_peername_lookup = no` (so the
list's queries are the only DNS traffic).  zen.test is served by rbldnsd on 127.0.0.2:53
(127.0.200.0/24 listed), behind a delaying proxy on 127.0.0.1:53 (the address resolv.conf
names): it forwards each query to rbldnsd (at most 32 outstanding there: a burst of 500
overflows rbldnsd's socket buffer) and relays the answer 500 ms after the query arrived, and
counts the queries and the names asked.  All of it runs in a private network+mount namespace:
the script re-executes itself under `unshare --net --mount` and sets the namespace up with
tests/system/dnsfixture.py's setup_namespace(), so nothing ever asks the machine's resolver.

1. waiting (both at default_process_limit 600): 500 sessions from 500 loopback addresses
   (127.0.3.1 ... 127.0.4.250, so each one's query is a different name) have sent EHLO and
   MAIL; then all 500 send RCPT at once and wait on the slow list, while another session
   (127.0.0.1, connected and past EHLO before) sends 20 NOOPs one after the other, one every
   15 ms from 10 ms after the burst; each NOOP is timed, and for each the script counts how
   many of the 500 had sent RCPT before it and had not had their reply when its reply came.
2. throughput (limit 600): 1000 messages over 200 concurrent connections, one message per
   connection, each from its own address (127.0.8.1 ...: none listed, so every message is
   accepted after its lookup), to alice@virt.test (a virtual Maildir); messages per second
   from the first connect until the last file is in new/, mxgate and Postfix, and the ratio.
   The load's ceiling is 200 / 0.5 s = 400 msg/s.
3. queued (both at default_process_limit 100, the default): the 500 clients of case 1, at
   most 50 connecting or waiting for their banner at a time, each sending RCPT as soon as its
   MAIL is accepted and QUIT after the reply; another session connects once 200 have, and its
   wait for banner and EHLO and its NOOPs are timed.

Checks (each a PROBLEM line and exit status 1): every message in the Maildir, the proxy saw
each client's name, a listed client (127.0.200.2) is refused at RCPT with "blocked using
zen.test" by both servers, and no smtpd warning (an RBL lookup that timed out) in either log.

    python3 bench/dnsbl.py [--build DIR] [--cases 1,2,3] [--waiting N] [--messages N]
                           [--concurrency C] [--delay S] [--skip-postfix]

Needs root, unshare, ip, mount, rbldnsd (scripts/deps.sh --test) and Postfix.  The whole run
is bounded to 240 s inside the namespace (280 s outside) and stops every server on any exit.
"""

import argparse
import collections
import heapq
import json
import os
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _benchlib as B  # noqa: E402
import dnsfixture  # noqa: E402  (tests/system/dnsfixture.py, on the path through _benchlib)

NS_ENV = "MXGATE_BENCH_DNSNS"
BUDGET_INSIDE = 240
BUDGET_OUTSIDE = 280

PROXY_ADDRESS = "127.0.0.1"          # what the namespace's resolv.conf names
RBL_ADDRESS = dnsfixture.RBL_ADDRESS  # 127.0.0.2: rbldnsd behind the proxy
ZONE = "zen.test"
LISTED = "127.0.200.2"                 # the listed client of the sanity check
RBL = {ZONE: ("ip4set", [":127.0.0.2:Listed by zen.test: $", "127.0.200.0/24"])}

NOOPS = 20
NOOP_SPACING = 0.015
GOAL_NOOP = 0.050
QUEUED_WINDOW = 50        # case 3: clients connecting or waiting for their banner at a time

MAIN = dict(B.BASE_MAIN, **{
    "smtpd_client_restrictions": "reject_rbl_client " + ZONE,
    "default_process_limit": "600",
    # left at their defaults (stated): smtpd_delay_reject yes (the lookup happens at RCPT),
    # smtpd_client_connection_count_limit 50 (every load client has its own address)
})
BODY = ("From: <sender@client.example>\r\nTo: <alice@virt.test>\r\n"
        "Subject: dnsbl benchmark\r\n\r\n" + ("X" * 70 + "\r\n") * 4 + ".")


def addresses(first_third, n):
    """n loopback addresses 127.0.T.1 ... 127.0.T.250, 127.0.T+1.1 ..., from T = first_third."""
    return ["127.0.%d.%d" % (first_third + i // 250, 1 + i % 250) for i in range(n)]


def rbl_name(addr):
    return ".".join(reversed(addr.split("."))) + "." + ZONE


# -- the delaying proxy (a process of its own: python3 dnsbl.py --proxy ...) -------------------

def _qname(msg):
    try:
        off, labels = 12, []
        while msg[off]:
            n = msg[off]
            labels.append(msg[off + 1:off + 1 + n].decode("ascii", "replace"))
            off += 1 + n
        return ".".join(labels).lower()
    except IndexError:
        return "?"


SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)   # Linux; root may pass rmem_max
UPSTREAM_WINDOW = 32      # queries outstanding at rbldnsd at a time (a burst of 500 overflows
                          # its socket buffer and the kernel drops the rest)
UPSTREAM_RESEND = 0.1     # rbldnsd answers in well under 1 ms: ask again after this


def proxy_main(listen, upstream, delay, stats_file):
    """UDP only: each query is forwarded to upstream with an id of our own (at most
    UPSTREAM_WINDOW outstanding there, asked again after UPSTREAM_RESEND); the answer goes
    back to the client delay seconds after the query arrived.  Stats (JSON, rewritten at most
    every 0.1 s): queries, answers relayed, in flight now and at most, the names asked (with
    counts), relay delays min/max, upstream re-sends, queries given up after 5 s."""
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    lsock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    lsock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20)   # root
    lsock.bind((listen, 53))
    lsock.setblocking(False)
    usock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    usock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20)
    usock.connect((upstream, 53))
    usock.setblocking(False)
    pending = {}          # our id -> (client address, client id, arrival)
    waiting = collections.deque()   # (our id, query with our id) not yet sent upstream
    upq = {}              # our id -> (time sent upstream, query): outstanding at rbldnsd
    due = []              # heap of (time, seq, client address, answer)
    seq = 0
    next_id = 1
    st = {"queries": 0, "relayed": 0, "in_flight": 0, "max_in_flight": 0, "dropped": 0,
          "send_errors": 0, "resent": 0,
          "relay_min": None, "relay_max": None, "names": {}}
    dirty, last_write = True, 0.0

    def write():
        tmp = stats_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(st, f)
        os.replace(tmp, stats_file)

    while True:
        now = time.monotonic()
        timeout = 0.1
        if due:
            timeout = max(0.0, min(timeout, due[0][0] - now))
        r, _, _ = select.select([lsock, usock], [], [], timeout)
        now = time.monotonic()
        if lsock in r:
            for _ in range(256):
                try:
                    msg, addr = lsock.recvfrom(4096)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    continue
                if len(msg) < 12:
                    continue
                st["queries"] += 1
                name = _qname(msg)
                st["names"][name] = st["names"].get(name, 0) + 1
                for _ in range(65536):
                    next_id = next_id % 65535 + 1
                    if next_id not in pending:
                        break
                pending[next_id] = (addr, msg[:2], now)
                waiting.append((next_id, struct.pack(">H", next_id) + msg[2:]))
                dirty = True
        if usock in r:
            for _ in range(256):
                try:
                    msg = usock.recv(4096)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    continue
                if len(msg) < 12:
                    continue
                qid = struct.unpack(">H", msg[:2])[0]
                upq.pop(qid, None)
                p = pending.pop(qid, None)
                if p is None:
                    continue
                seq += 1
                heapq.heappush(due, (p[2] + delay, seq, p[0], p[1] + msg[2:], p[2]))
        while due and due[0][0] <= now:
            _, _, addr, answer, arrived = heapq.heappop(due)
            try:
                lsock.sendto(answer, addr)
            except OSError:
                st["send_errors"] += 1
            d = now - arrived
            st["relayed"] += 1
            st["relay_min"] = d if st["relay_min"] is None else min(st["relay_min"], d)
            st["relay_max"] = d if st["relay_max"] is None else max(st["relay_max"], d)
            dirty = True
        for k in [k for k, v in pending.items() if now - v[2] > 5.0]:
            del pending[k]          # rbldnsd never answered
            upq.pop(k, None)
            st["dropped"] += 1
        for k, (t, q) in list(upq.items()):
            if now - t > UPSTREAM_RESEND:
                upq[k] = (now, q)
                st["resent"] += 1
                try:
                    usock.send(q)
                except OSError:
                    st["send_errors"] += 1
        while waiting and len(upq) < UPSTREAM_WINDOW:
            k, q = waiting.popleft()
            if k not in pending:
                continue
            upq[k] = (now, q)
            try:
                usock.send(q)
            except OSError:
                st["send_errors"] += 1
        st["in_flight"] = len(pending) + len(due)
        st["max_in_flight"] = max(st["max_in_flight"], st["in_flight"])
        if dirty and now - last_write >= 0.1:
            write()
            dirty, last_write = False, now


class Proxy:
    def __init__(self, delay, tmpdir):
        self.stats_file = os.path.join(tmpdir, "proxy-stats.json")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--proxy", PROXY_ADDRESS, RBL_ADDRESS,
             str(delay), self.stats_file], stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("the DNS proxy exited with status %s" % self.proc.returncode)
            rcode, _ = dnsfixture.query("ready.probe.invalid", "A", PROXY_ADDRESS, 53, 1.0)
            if rcode is not None:
                return
        self.stop()
        raise SystemExit("the DNS proxy did not answer on %s:53" % PROXY_ADDRESS)

    def stats(self):
        time.sleep(0.25)              # its last write is at most 0.1 s old
        try:
            with open(self.stats_file) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def stop(self):
        dnsfixture.stop_process(self.proc)
        self.proc = None


# -- 1. sessions waiting on the list, and another session's NOOP -------------------------------

def waiting_on_reply(load, c, code, lines, latency):
    d = c.data
    n = c.nreplies
    now = time.monotonic()
    if n == 1:
        if code != 220:
            load.notes.append("client %d: banner %r" % (c.idx, lines[-1]))
            return None
        return "EHLO w%d.client.example" % c.idx
    if n == 2:
        if code != 250:
            load.notes.append("client %d: EHLO %r" % (c.idx, lines[-1]))
            return None
        return "MAIL FROM:<sender%d@client.example>" % c.idx
    if n == 3:
        if code != 250:
            load.notes.append("client %d: MAIL %r" % (c.idx, lines[-1]))
        d["ready"] = True             # waits for the parent's go
        if load.auto:                 # the queued case: no go, RCPT at once
            d["rcpt_sent"] = now
            return "RCPT TO:<alice@virt.test>"
        return None
    if n == 4:
        d["rcpt_reply"] = now
        d["rcpt_code"] = code
        return "QUIT"
    return None


def drive_waiting(port, sources, status, ctl, deadline, auto=False):
    B.raise_nofile(len(sources) + 200)
    # At most QUEUED_WINDOW connecting or waiting for their banner: with default_process_limit
    # 100 the listen backlog is 100, and a client beyond it, when the kernel answers with a SYN
    # cookie, believes it is connected while the server dropped its ACK: it waits for a banner
    # that never comes (both servers; seen as TCPReqQFullDoCookies, ListenOverflows).
    load = B.Load(port, sources, len(sources), waiting_on_reply,
                  window=QUEUED_WINDOW if auto else 100)
    load.auto = auto
    go = False
    burst = None
    last = 0.0
    try:
        while time.monotonic() < deadline:
            load.step(0.02)
            r, _, _ = select.select([ctl], [], [], 0)
            if r:
                b = os.read(ctl, 64)
                if not b:
                    break
                if b"g" in b and not go:
                    go = True
                    t0 = time.monotonic()
                    for c in load.conns:
                        if c.sock is not None and c.data.get("ready"):
                            c.data["rcpt_sent"] = time.monotonic()
                            load.send(c, "RCPT TO:<alice@virt.test>")
                    burst = [t0, time.monotonic(),
                             sum(1 for c in load.conns if "rcpt_sent" in c.data)]
                    status({"burst": burst})
                    last = time.monotonic()
            now = time.monotonic()
            if now - last >= 0.2:     # the parent drains the pipe at least this often
                last = now
                rep = {"ready": sum(1 for c in load.conns if c.data.get("ready")),
                       "open": sum(1 for c in load.conns if c.sock is not None),
                       "failed": load.failed, "notes": load.notes[:5], "go": go,
                       "answered": sum(1 for c in load.conns if "rcpt_reply" in c.data),
                       "opened": load.next_open,
                       "states": dict(collections.Counter(c.state for c in load.conns))}
                if go or auto:
                    rep["burst"] = burst
                    rep["clients"] = [[c.data.get("rcpt_sent"), c.data.get("rcpt_reply"),
                                       c.data.get("rcpt_code")] for c in load.conns]
                status(rep)
    finally:
        load.close_all()


def reply_reader(s):
    """A function that reads one whole SMTP reply from socket s: (code, last line)."""
    f = s.makefile("rb")

    def reply():
        while True:
            line = f.readline()
            if not line:
                raise RuntimeError("connection closed")
            if line[3:4] != b"-":
                return int(line[:3]), line.decode("utf-8", "replace").rstrip()
    return reply


def noop_session(port, timeout):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                 source_address=("127.0.0.1", 0))
    reply = reply_reader(s)
    code, text = reply()
    if code != 220:
        raise RuntimeError("banner %r" % text)
    s.sendall(b"EHLO legit.example\r\n")
    code, text = reply()
    if code != 250:
        raise RuntimeError("EHLO %r" % text)
    return s, reply


def measure_waiting(name, port, nclients, budget, memory):
    res = {"noops": [], "waiting": [], "fail": None}
    sources = addresses(3, nclients)
    child = B.ChildLoad(lambda status, ctl, dl: drive_waiting(port, sources, status, ctl, dl),
                        deadline_s=max(30, min(90, budget.left() - 60)))
    s = None
    try:
        t0 = time.monotonic()
        st = child.wait_for(lambda x: x.get("ready", 0) >= nclients, min(60, budget.left() - 90))
        print("  ramp: %.1f s, %d/%d sessions past MAIL FROM (%d open, %d failed)%s"
              % (time.monotonic() - t0, st.get("ready", 0), nclients, st.get("open", 0),
                 st.get("failed", 0), "".join("\n    note: " + n for n in st.get("notes", []))))
        res["mem"] = memory()
        print("  server memory with %d sessions: %s" % (st.get("open", 0), res["mem"][2]))
        s, reply = noop_session(port, 10)
        os.write(child.ctl, b"g")
        limit = time.monotonic() + 10
        while time.monotonic() < limit and "burst" not in child.poll():
            time.sleep(0.001)         # the NOOPs start right after the burst
        b0, b1, sent = child.poll().get("burst") or [time.monotonic(), time.monotonic(), 0]
        print("  burst: %d RCPTs sent in %.1f ms; the first NOOP %.1f ms after it"
              % (sent, (b1 - b0) * 1000, (time.monotonic() - b1 + 0.010) * 1000))
        times = []
        for i in range(NOOPS):
            target = b1 + 0.010 + i * NOOP_SPACING
            time.sleep(max(0.0, target - time.monotonic()))
            child.poll()              # keep the status pipe drained: the child never blocks
            t = time.monotonic()
            s.sendall(b"NOOP\r\n")
            code, text = reply()
            e = time.monotonic()
            if code != 250:
                raise RuntimeError("NOOP %r" % text)
            times.append((t, e))
        st = child.wait_for(lambda x: x.get("answered", 0) >= nclients, min(15, budget.left() - 60))
        clients = st.get("clients") or []
        for t, e in times:
            res["noops"].append(e - t)
            res["waiting"].append(sum(1 for sent, rep, _ in clients
                                      if sent is not None and sent <= t
                                      and (rep is None or rep > e)))
        lats = [rep - sent for sent, rep, _ in clients if sent is not None and rep is not None]
        codes = {}
        for _, _, code in clients:
            codes[code] = codes.get(code, 0) + 1
        res["rcpt"] = lats
        res["answered"] = st.get("answered", 0)
        print("  NOOP latency (ms): %s" % " ".join("%.1f" % (x * 1000) for x in res["noops"]))
        print("  RCPTs unanswered during each NOOP: %s" % " ".join(str(w) for w in res["waiting"]))
        print("  RCPT replies: %d/%d, codes %s; latency %s"
              % (len(lats), nclients,
                 ", ".join("%s x%d" % kv for kv in sorted(codes.items(), key=str)) or "-",
                 latency_summary(lats)))
        res["codes"] = codes
        s.sendall(b"QUIT\r\n")
        try:
            reply()
        except (OSError, RuntimeError):
            pass
    except (OSError, RuntimeError) as e:
        res["fail"] = repr(e)
        print("  FAILED: %r" % (e,))
    finally:
        if s is not None:
            s.close()
        child.stop()
    return res


def peak_overlap(intervals):
    ev = sorted([(a, 1) for a, b in intervals] + [(b, -1) for a, b in intervals])
    cur = peak = 0
    for _, d in ev:
        cur += d
        peak = max(peak, cur)
    return peak


def tcp_counters():
    """The namespace's TcpExt counters of a full listen queue (/proc/net/netstat)."""
    want = ("ListenOverflows", "ListenDrops", "TCPReqQFullDoCookies", "TCPReqQFullDrop")
    out = {}
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
        for i in range(0, len(lines) - 1, 2):
            names, vals = lines[i].split(), lines[i + 1].split()
            if names[0] == "TcpExt:":
                out = {k: int(v) for k, v in zip(names[1:], vals[1:]) if k in want}
    except (OSError, ValueError, IndexError):
        pass
    return out


def measure_queued(name, port, nclients, budget):
    """The same 500 clients (at most 100 connecting at a time), each sending RCPT as soon as
    its MAIL is accepted and QUIT after the RCPT reply, at default_process_limit 100: how long
    another session (connecting once 200 connect() calls are made) waits for its banner, and
    its NOOPs then."""
    res = {"fail": None}
    k0 = tcp_counters()
    sources = addresses(3, nclients)
    child = B.ChildLoad(lambda status, ctl, dl: drive_waiting(port, sources, status, ctl, dl,
                                                              auto=True),
                        deadline_s=max(30, min(60, budget.left() - 30)))
    s = None
    try:
        t_start = time.monotonic()
        child.wait_for(lambda x: x.get("opened", 0) >= min(nclients, 200), 10)
        st = child.poll()
        at_start = st.get("opened", 0), st.get("answered", 0)
        # The session runs in a thread, so that this thread keeps reading the child's status
        # (a full pipe would stop the load driver, and with it the sessions ahead of ours).
        box = {}

        def session():
            try:
                t0 = time.monotonic()
                sock, reply = noop_session(port, 30)
                box["s"] = sock
                box["banner"] = time.monotonic() - t0      # connect, banner and EHLO
                box["at_banner"] = child.last.get("answered", 0)
                noops = []
                for _ in range(NOOPS):
                    t = time.monotonic()
                    sock.sendall(b"NOOP\r\n")
                    reply()
                    noops.append(time.monotonic() - t)
                    time.sleep(NOOP_SPACING)
                box["noops"] = noops
                sock.sendall(b"QUIT\r\n")
            except (OSError, RuntimeError) as e:
                box["error"] = e

        th = threading.Thread(target=session, daemon=True)
        th.start()
        while th.is_alive():
            child.poll()
            th.join(0.05)
        s = box.get("s")
        if "error" in box:
            raise box["error"]
        res["banner"], at_banner, noops = box["banner"], box["at_banner"], box["noops"]
        res["noops"] = noops
        st = child.wait_for(lambda x: x.get("answered", 0) >= nclients, min(20, budget.left() - 20))
        clients = st.get("clients") or []
        done = [(a, b) for a, b, _ in clients if a is not None and b is not None]
        res["answered"] = len(done)
        res["peak"] = peak_overlap(done)
        res["all"] = (max(b for _, b in done) - t_start) if done else None
        print("  another session's connect+banner+EHLO: %.3f s (at its connect %d of the %d "
              "had connected or were connecting, %d had their RCPT reply; at its banner %d); "
              "its NOOPs: median %.1f ms, max %.1f ms"
              % (res["banner"], at_start[0], nclients, at_start[1], at_banner,
                 statistics.median(noops) * 1000, max(noops) * 1000))
        print("  the %d: %d RCPT replies, at most %d waiting at RCPT at once, the last reply "
              "%.2f s after the first connect; RCPT latency %s; client states %s"
              % (nclients, len(done), res["peak"], res["all"] or 0,
                 latency_summary([b - a for a, b in done]), st.get("states")))
        k1 = tcp_counters()
        print("  kernel (this namespace): %s" % ", ".join("%s +%d" % (k, k1[k] - k0.get(k, 0))
                                                         for k in sorted(k1)))
    except (OSError, RuntimeError) as e:
        res["fail"] = repr(e)
        st = child.poll()
        k1 = tcp_counters()
        print("  FAILED: %r (the %d: %d RCPT replies, client states %s; kernel: %s)"
              % (e, nclients, st.get("answered", 0), st.get("states"),
                 ", ".join("%s +%d" % (k, k1[k] - k0.get(k, 0)) for k in sorted(k1))))
    finally:
        if s is not None:
            s.close()
        child.stop()
    return res


# -- 2. messages per second ------------------------------------------------------------------

def throughput_on_reply(load, c, code, lines, latency):
    d = c.data
    n = c.nreplies
    expect = {1: 220, 2: 250, 3: 250, 4: 250, 5: 354, 6: 250, 7: 221}.get(n)
    if code != expect:
        if len(load.notes) < 5:
            load.notes.append("client %d (%s): reply %d %r" % (c.idx, c.src, n, lines[-1]))
        load.bad += 1
        load.close(c, "failed")
        return None
    if n == 1:
        return "EHLO t%d.client.example" % c.idx
    if n == 2:
        return "MAIL FROM:<sender@client.example>"
    if n == 3:
        return "RCPT TO:<alice@virt.test>"
    if n == 4:
        load.rcpt_lat.append(latency)
        return "DATA"
    if n == 5:
        return BODY
    if n == 6:
        load.accepted += 1
        return "QUIT"
    load.close(c)
    return None


def latency_summary(lat):
    if not lat:
        return "none"
    lat = sorted(lat)
    pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
    return ("min %.3f s, median %.3f s, p90 %.3f s, p99 %.3f s, max %.3f s; %d of %d over 0.6 s"
            % (lat[0], statistics.median(lat), pct(0.9), pct(0.99), lat[-1],
               sum(1 for x in lat if x > 0.6), len(lat)))


def count_new(new_dir):
    try:
        return len(os.listdir(new_dir))
    except FileNotFoundError:
        return 0


def run_throughput(port, nmsg, conc, new_dir, timeout):
    """Returns (seconds until N files in new/, seconds until the last 250, load)."""
    before = count_new(new_dir)
    load = B.Load(port, addresses(8, nmsg), nmsg, throughput_on_reply, window=conc)
    load.rcpt_lat, load.accepted, load.bad = [], 0, 0
    t0 = time.monotonic()
    deadline = t0 + timeout
    try:
        while time.monotonic() < deadline:
            done = load.closed + load.count("failed")
            if done >= nmsg:
                break
            load.limit = min(nmsg, done + conc)      # at most conc sessions at a time
            load.step(0.05)
    finally:
        t_clients = time.monotonic() - t0
        load.close_all()
    while time.monotonic() < deadline:
        if count_new(new_dir) - before >= load.accepted:
            break
        time.sleep(0.01)
    t_stored = time.monotonic() - t0
    load.stored = count_new(new_dir) - before
    return t_stored, t_clients, load


# -- the run (inside the namespace) -------------------------------------------------------------

def listed_check(port):
    """A listed client's RCPT: (code, text, seconds)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(LISTED, 0))
    try:
        reply = reply_reader(s)
        reply()
        for cmd in (b"EHLO listed.example", b"MAIL FROM:<sender@listed.example>"):
            s.sendall(cmd + b"\r\n")
            reply()
        t = time.monotonic()
        s.sendall(b"RCPT TO:<alice@virt.test>\r\n")
        code, text = reply()
        dt = time.monotonic() - t
        s.sendall(b"QUIT\r\n")
        return code, text, dt
    finally:
        s.close()


def log_warnings(name, maillog, problems, seen={}):
    """Print the server's new warning lines (a DNS lookup that timed out shows up here)."""
    try:
        with open(maillog, errors="replace") as f:
            f.seek(seen.get(maillog, 0))
            text = f.read()
            seen[maillog] = f.tell()
    except OSError:
        return
    # the smtpd's warnings (a lookup that timed out: "RBL lookup error"), not postfix-script's
    # start-up ones about the scratch queue's ownership
    warn = [ln for ln in text.splitlines() if "warning:" in ln and "/smtpd[" in ln]
    if warn:
        print("  %d warning(s) in the %s log, e.g.:" % (len(warn), name))
        for ln in warn[:3]:
            print("    %s" % ln[:300])
        problems.append("%s: %d warning(s) in its log" % (name, len(warn)))


def run_server(name, port, new_dir, maillog, memory, proxy, args, budget, problems):
    out = {"name": name}
    q0 = proxy.stats()
    code, text, dt = listed_check(port)
    print("  listed client %s: RCPT -> %s (%.3f s)" % (LISTED, text, dt))
    if code != 554 or "blocked using " + ZONE not in text:
        problems.append("%s: the listed client got %r" % (name, text))
    out["w"] = {"noops": [], "fail": None}
    if "1" in args.cases:
        print("  1. %d sessions waiting at RCPT on the slow list, %d NOOPs from 127.0.0.1:"
              % (args.waiting, NOOPS))
        out["w"] = measure_waiting(name, port, args.waiting, budget, memory)
    if out["w"]["fail"]:
        problems.append("%s: waiting: %s" % (name, out["w"]["fail"]))
    q1 = proxy.stats()
    names = q1.get("names", {})
    miss = [a for a in addresses(3, args.waiting) if rbl_name(a) not in names]
    print("  proxy: %d queries so far (%d for this case), %d of the %d names never asked, "
          "at most %d in flight, relay delay %.3f-%.3f s, %d unanswered by rbldnsd, "
          "%d send errors, %d re-sent to rbldnsd"
          % (q1.get("queries", 0), q1.get("queries", 0) - q0.get("queries", 0), len(miss),
             args.waiting, q1.get("max_in_flight", 0), q1.get("relay_min") or 0,
             q1.get("relay_max") or 0, q1.get("dropped", 0), q1.get("send_errors", 0),
             q1.get("resent", 0)))
    log_warnings(name, maillog, problems)
    if miss:
        problems.append("%s: waiting: %d client names never reached the proxy (e.g. %s)"
                        % (name, len(miss), miss[0]))
    if "2" not in args.cases:
        return out
    left = budget.left()
    timeout = min(60, left - 40)
    if timeout < 10:
        print("  2. throughput: skipped, the time budget is spent")
        problems.append("%s: throughput skipped (time budget)" % name)
        return out
    print("  2. %d messages over %d concurrent connections (one each):" % (args.messages,
                                                                           args.concurrency))
    t_stored, t_clients, load = run_throughput(port, args.messages, args.concurrency, new_dir,
                                               timeout)
    q2 = proxy.stats()
    names = q2.get("names", {})
    miss = [a for a in addresses(8, args.messages) if rbl_name(a) not in names]
    lat = load.rcpt_lat
    rate = load.stored / t_stored if t_stored > 0 else 0
    print("  %d accepted, %d refused/failed, %d files in new/; clients done %.2f s, all stored "
          "%.2f s: %.1f msg/s; proxy: %d queries for %d client names, relay delay max %.3f s"
          % (load.accepted, load.bad + load.failed, load.stored, t_clients, t_stored, rate,
             q2.get("queries", 0) - q1.get("queries", 0), args.messages - len(miss),
             q2.get("relay_max") or 0))
    print("  RCPT latency: %s" % latency_summary(lat))
    for n in load.notes:
        print("    note: %s" % n)
    log_warnings(name, maillog, problems)
    if load.accepted != args.messages:
        problems.append("%s: %d of %d messages accepted" % (name, load.accepted, args.messages))
    if load.stored != args.messages:
        problems.append("%s: %d of %d messages in new/" % (name, load.stored, args.messages))
    if miss:
        problems.append("%s: throughput: %d client names never reached the proxy"
                        % (name, len(miss)))
    out["rate"] = rate if load.stored == args.messages else None
    out["t"] = t_stored
    return out


def inside(args):
    budget, binary = B.prepare(args.build, args.waiting + args.concurrency + 2000,
                               seconds=BUDGET_INSIDE)
    print("  dns          private network+mount namespace; resolv.conf: %s"
          % dnsfixture.RESOLV_CONF.replace("\n", "; ").strip("; "))
    print("load: zone %s (rbldnsd on %s:53, %s listed) behind a proxy on %s:53 that relays "
          "each answer %.0f ms after the query; smtpd_client_restrictions = reject_rbl_client %s, "
          "smtpd_peername_lookup = no, default_process_limit = 600 (both)"
          % (ZONE, RBL_ADDRESS, RBL[ZONE][1][1], PROXY_ADDRESS, args.delay * 1000, ZONE))
    sys.stdout.flush()
    problems = []
    results = {}
    rbl = proxy = srv = pf = None
    tmp = tempfile.mkdtemp(prefix="mxgate-bench-dnsbl-")
    try:
        rbl = dnsfixture.RblDns(RBL, address=RBL_ADDRESS).start()
        proxy = Proxy(args.delay, tmp)
        t = time.monotonic()
        rcode, ans = dnsfixture.query(rbl_name(LISTED), "A", PROXY_ADDRESS, 53, 3.0)
        print("proxy check: %s A -> rcode %s %s in %.3f s"
              % (rbl_name(LISTED), rcode, ans, time.monotonic() - t))
        if ans != ["127.0.0.2"]:
            problems.append("the proxy/rbldnsd do not list %s" % LISTED)

        if "1" in args.cases or "2" in args.cases:
            run_main(binary, proxy, args, budget, problems, results)
        if "3" in args.cases:
            run_queued(binary, args, budget, problems, results)
    finally:
        if proxy is not None:
            proxy.stop()
        if rbl is not None:
            rbl.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    budget.cancel()
    summary(args, results, problems)
    print("elapsed: %.0f s" % budget.elapsed())
    return 1 if problems else 0


def run_main(binary, proxy, args, budget, problems, results):
    """Cases 1 and 2 (and the listed client), mxgate then Postfix, both at limit 600."""
    srv = pf = None
    try:
        print("\nmxgate:")
        srv = B.start_mxgate(binary, MAIN, None)

        def mx_memory():
            rss = B.proc_status_kib(srv.pid)
            return rss, rss, "VmRSS %s (pid %d), threads %d" % (
                B.fmt_kib(rss), srv.pid, B.proc_status_kib(srv.pid, "Threads"))

        results["mxgate"] = run_server("mxgate", srv.port, os.path.join(srv.vmail, "alice", "new"),
                                       os.path.join(srv.dir, "maillog"), mx_memory, proxy, args,
                                       budget, problems)
        B.stop_mxgate(srv)
        srv = None

        if not args.skip_postfix:
            print("\npostfix:")
            pf = B.PostfixRef("dnsbl", MAIN, ["127.0.0.1:{port} inet n - n - - smtpd"])
            pf.start()

            def pf_memory():
                per, rss, pss = pf.memory()
                return rss, pss, "%d smtpd processes; whole tree RSS sum %s, Pss sum %s" % (
                    per.get("smtpd", (0, 0))[0], B.fmt_kib(rss), B.fmt_kib(pss))

            results["postfix"] = run_server("postfix", pf.port,
                                            os.path.join(pf.vmail, "alice", "new"),
                                            os.path.join(pf.dir, "maillog"), pf_memory,
                                            proxy, args, budget, problems)
            pf.stop()
            pf = None
    finally:
        if srv is not None:
            B.stop_mxgate(srv)
        if pf is not None:
            pf.stop()


def run_queued(binary, args, budget, problems, results):
    """Case 3: both servers at default_process_limit 100."""
    srv = pf = None
    try:
        main100 = dict(MAIN, default_process_limit="100")
        print("\n3. both at default_process_limit = 100 (the default): %d clients (at most "
              "%d connecting or waiting for their banner at a time), each RCPT at once, QUIT "
              "after its reply; another session from 127.0.0.1"
              % (args.waiting, QUEUED_WINDOW))
        print("mxgate:")
        srv = B.start_mxgate(binary, main100, None)
        results.setdefault("mxgate", {})["q"] = measure_queued("mxgate", srv.port, args.waiting,
                                                              budget)
        log_warnings("mxgate", os.path.join(srv.dir, "maillog"), problems)
        B.stop_mxgate(srv)
        srv = None
        if not args.skip_postfix:
            print("postfix:")
            pf = B.PostfixRef("dnsbl-limit100", main100,
                              ["127.0.0.1:{port} inet n - n - - smtpd"])
            pf.start()
            results.setdefault("postfix", {})["q"] = measure_queued("postfix", pf.port,
                                                                   args.waiting, budget)
            log_warnings("postfix", os.path.join(pf.dir, "maillog"), problems)
            pf.stop()
            pf = None
    finally:
        if srv is not None:
            B.stop_mxgate(srv)
        if pf is not None:
            pf.stop()


def summary(args, results, problems):
    print("\nresults (proxy delay %.0f ms):" % (args.delay * 1000))
    for name in ("mxgate", "postfix"):
        r = results.get(name)
        if not r or not r.get("w", {}).get("noops"):
            continue
        w = r["w"]
        print("  %-8s NOOP with %d sessions waiting at RCPT: median %.1f ms, max %.1f ms over %d; "
              "unanswered RCPTs during the NOOPs: min %d, max %d of %d"
              % (name, args.waiting, statistics.median(w["noops"]) * 1000, max(w["noops"]) * 1000,
                 len(w["noops"]), min(w["waiting"]), max(w["waiting"]), args.waiting))
        if name == "mxgate":
            ok = max(w["noops"]) < GOAL_NOOP and min(w["waiting"]) >= args.waiting
            print("           goal: NOOP < %.0f ms with all %d waiting: %s"
                  % (GOAL_NOOP * 1000, args.waiting, "met" if ok else "MISSED"))
    for name in ("mxgate", "postfix"):
        r = results.get(name)
        if r and r.get("rate"):
            print("  %-8s %d messages / %d connections: %.1f msg/s (%.2f s)"
                  % (name, args.messages, args.concurrency, r["rate"], r["t"]))
    for name in ("mxgate", "postfix"):
        q = (results.get(name) or {}).get("q")
        if q and q.get("noops"):
            print("  %-8s at default_process_limit 100: another session's banner after %.2f s, "
                  "at most %d of the %d waiting at RCPT at once, all %d done after %.2f s"
                  % (name, q["banner"], q["peak"], args.waiting, q["answered"], q["all"] or 0))
    print("  (ceiling of this load: %d connections / %.1f s per lookup = %.0f msg/s)"
          % (args.concurrency, args.delay, args.concurrency / args.delay))
    m = results.get("mxgate", {}).get("rate")
    p = results.get("postfix", {}).get("rate")
    if m and p:
        wm, wp = results["mxgate"].get("w", {}), results["postfix"].get("w", {})
        noop = ""
        if wm.get("noops") and wp.get("noops"):
            noop = ", NOOP median mxgate %.1f ms vs postfix %.1f ms" % (
                statistics.median(wm["noops"]) * 1000, statistics.median(wp["noops"]) * 1000)
        print("dnsbl: mxgate %.1f msg/s vs postfix %.1f msg/s: ratio %.2fx%s"
              % (m, p, m / p, noop))
    for pr in problems:
        print("PROBLEM: %s" % pr)


# -- outside: re-execute in the namespace ---------------------------------------------------------

def outside(argv):
    if os.geteuid() != 0:
        raise SystemExit("run as root (a private network namespace; mxgate and Postfix)")
    for tool in ("unshare", "ip", "mount", "rbldnsd"):
        if not shutil.which(tool) and not os.access("/usr/sbin/" + tool, os.X_OK):
            raise SystemExit("%s is not installed (sh scripts/deps.sh --test)" % tool)
    env = dict(os.environ)
    env[NS_ENV] = "1"
    ns_file = "/tmp/mxgate-bench-dnsbl-netns.%d" % os.getpid()
    env[NS_ENV + "_FILE"] = ns_file
    sys.stdout.flush()
    proc = subprocess.Popen(dnsfixture.unshare_command([sys.executable,
                                                        os.path.abspath(__file__)] + argv),
                            env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    rc = 1

    def interrupted(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)

    signal.signal(signal.SIGTERM, interrupted)
    try:
        rc = proc.wait(timeout=BUDGET_OUTSIDE)
    except subprocess.TimeoutExpired:
        print("PROBLEM: the namespaced run took longer than %d s: killed" % BUDGET_OUTSIDE)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    finally:
        try:
            with open(ns_file) as f:
                ino = int(f.read())
            os.unlink(ns_file)
        except (OSError, ValueError):
            ino = None
        left = dnsfixture.sweep_namespace(ino)
        if left:
            print("PROBLEM: processes left in the namespace (killed): %s"
                  % "; ".join("%d %s" % p for p in left))
            rc = rc or 1
    return rc


def main():
    if len(sys.argv) == 6 and sys.argv[1] == "--proxy":
        proxy_main(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", help="mxgate build dir (default bench/build, built here)")
    ap.add_argument("--waiting", type=int, default=500)
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--delay", type=float, default=0.5)
    ap.add_argument("--skip-postfix", action="store_true")
    ap.add_argument("--cases", default="1,2,3",
                    help="which cases to run (default 1,2,3; 3: both at default_process_limit 100)")
    args = ap.parse_args()
    args.cases = set(args.cases.split(","))
    if args.waiting > 1250 or args.messages > 2500 or args.concurrency > args.messages:
        raise SystemExit("at most 1250 waiting sessions and 2500 messages (addresses "
                         "127.0.3-7.x and 127.0.8-17.x), concurrency <= messages")
    if not os.environ.get(NS_ENV):
        return outside(sys.argv[1:])
    with open(os.environ[NS_ENV + "_FILE"], "w") as f:
        f.write(str(dnsfixture.net_ns()))
    tmp = dnsfixture.setup_namespace()
    try:
        return inside(args)
    finally:
        dnsfixture.teardown_namespace(tmp)


if __name__ == "__main__":
    sys.exit(main())
