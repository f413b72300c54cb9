#!/usr/bin/env python3
"""anvil_redis benchmark: what anvil on Redis costs, against the memory backend (issue 12).

Three mxgate daemons, one after the other, with the same main.cf except the anvil backend:

    memory      mxgate_anvil_backend = memory
    redis       redis:127.0.0.1:P, a scratch redis-server (no persistence) on loopback
    redis+5ms   redis:127.0.0.1:Q, where Q is a small asyncio TCP proxy (in a child process)
                that holds every chunk from mxgate to Redis 5 ms before passing it on:
                5 ms more on each round trip (tc netem is not available here)

Every daemon has smtpd_client_connection_count_limit = 1000 and
smtpd_client_recipient_rate_limit = 1000000 (so smtpd asks anvil at connect and at every
RCPT, as it would with real limits, but nothing is refused), mynetworks = 192.0.2.0/24 (the
loopback clients are not exempt) and anvil_rate_time_unit = 60s.  Measured on each:

    conn/s      CONNS clients at once (sources 127.0.4.1 ... 127.0.4.50), each one after the
                other: connect, banner, QUIT, 221; for WINDOW seconds after a warm-up
    banner      the time from connect() to the banner's last byte, one connection at a time,
                LAT_SAMPLES connections: median and 90th percentile
    rcpt        the time from sending RCPT TO to its 250, one session, one RCPT at a time,
                LAT_SAMPLES recipients (RSET + MAIL every 100): median and 90th percentile

The summary gives each backend's figures and the latency each Redis case adds to the memory
backend's medians.

    python3 bench/anvil_redis.py [--build DIR] [--window S] [--samples N]

Needs root (mxgate binds as root, drops to the mxgate user) and redis-server
(`sh scripts/deps.sh --test`).  Bounded to 200 s; every server and the proxy are stopped on
any exit.
"""

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _benchlib as B  # noqa: E402

BUDGET_S = 200
CONNS = 50
WARMUP = 1.0
WINDOW = 5.0
LAT_SAMPLES = 300
DELAY_MS = 5
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"

MAIN = dict(B.BASE_MAIN, **{
    "smtpd_client_connection_count_limit": "1000",
    "smtpd_client_recipient_rate_limit": "1000000",
    "anvil_rate_time_unit": "60s",
    "default_process_limit": "500",
    "virtual_mailbox_domains": "virt.test",
})


# -- the delaying proxy (child process) --------------------------------------------------------

async def _pipe(reader, writer, delay):
    loop = asyncio.get_running_loop()
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            if delay:
                loop.call_later(delay, writer.write, data)
            else:
                writer.write(data)
    except (ConnectionError, OSError):
        pass
    finally:
        if delay:
            await asyncio.sleep(delay)
        try:
            writer.close()
        except OSError:
            pass


async def _proxy_main(listen_port, target_port, delay):
    async def handle(cr, cw):
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            cw.close()
            return
        await asyncio.gather(_pipe(cr, uw, delay), _pipe(ur, cw, 0))

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


def start_proxy(target_port, delay_ms):
    port = B.harness.free_port()
    pid = os.fork()
    if pid == 0:
        try:
            signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
            asyncio.run(_proxy_main(port, target_port, delay_ms / 1000.0))
        finally:
            os._exit(0)
    deadline = time.time() + 5
    while time.time() < deadline and not B.harness.port_listening(port):
        time.sleep(0.02)
    return pid, port


# -- redis-server -------------------------------------------------------------------------------

class Redis:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="mxgate-bench-redis-")
        self.port = B.harness.free_port()
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--logfile", os.path.join(self.dir, "log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 5
        while time.time() < deadline and not B.harness.port_listening(self.port):
            time.sleep(0.02)

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


# -- the load -----------------------------------------------------------------------------------

async def read_reply(reader):
    """One whole SMTP reply; returns its last line."""
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if len(line) < 4 or line[3:4] != b"-":
            return line


async def conn_rate(port, window, warmup):
    count = 0
    errors = 0
    stop_at = time.monotonic() + warmup + window
    count_from = time.monotonic() + warmup

    async def client(i):
        nonlocal count, errors
        src = "127.0.4.%d" % (i % 50 + 1)
        while time.monotonic() < stop_at:
            try:
                r, w = await asyncio.open_connection("127.0.0.1", port, local_addr=(src, 0))
                banner = await read_reply(r)
                w.write(b"QUIT\r\n")
                bye = await read_reply(r)
                w.close()
                if not banner.startswith(b"220") or not bye.startswith(b"221"):
                    errors += 1
                    continue
                if time.monotonic() >= count_from and time.monotonic() < stop_at:
                    count += 1
            except (OSError, ConnectionError):
                errors += 1
                await asyncio.sleep(0.01)

    await asyncio.gather(*(client(i) for i in range(CONNS)))
    return count / window, errors


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


async def banner_latency(port, samples):
    out = []
    for i in range(samples):
        t0 = time.perf_counter()
        r, w = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.5.%d" % (i % 200 + 1), 0))
        line = await read_reply(r)
        out.append(time.perf_counter() - t0)
        if not line.startswith(b"220"):
            raise SystemExit("banner: %r" % line)
        w.write(b"QUIT\r\n")
        await read_reply(r)
        w.close()
    return out


async def rcpt_latency(port, samples):
    r, w = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.6.1", 0))
    await read_reply(r)
    w.write(b"EHLO client.example\r\n")
    await read_reply(r)
    out = []
    for i in range(samples):
        if i % 100 == 0:
            w.write(b"RSET\r\n" if i else b"")
            if i:
                await read_reply(r)
            w.write(b"MAIL FROM:<a@client.example>\r\n")
            await read_reply(r)
        t0 = time.perf_counter()
        w.write(b"RCPT TO:<alice@virt.test>\r\n")
        line = await read_reply(r)
        out.append(time.perf_counter() - t0)
        if not line.startswith(b"250"):
            raise SystemExit("RCPT: %r" % line)
    w.write(b"QUIT\r\n")
    await read_reply(r)
    w.close()
    return out


def measure(binary, backend, window, samples):
    srv = B.start_mxgate(binary, dict(MAIN, mxgate_anvil_backend=backend), None)
    try:
        time.sleep(0.3)     # the loops' Redis connections
        rate, errors = asyncio.run(conn_rate(srv.port, window, WARMUP))
        banner = asyncio.run(banner_latency(srv.port, samples))
        rcpt = asyncio.run(rcpt_latency(srv.port, samples))
        warnings = [ln for ln in srv.log_lines() if "anvil" in ln and "warning" in ln]
    finally:
        B.stop_mxgate(srv)
    return {"rate": rate, "errors": errors, "banner": banner, "rcpt": rcpt, "warnings": warnings}


def ms(v):
    return "%.3f ms" % (v * 1000)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build")
    ap.add_argument("--window", type=float, default=WINDOW)
    ap.add_argument("--samples", type=int, default=LAT_SAMPLES)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("anvil_redis.py needs root (mxgate binds as root and drops privileges)")
    if not os.access(REDIS, os.X_OK):
        raise SystemExit("redis-server is missing: sh scripts/deps.sh --test")
    budget = B.Budget(BUDGET_S)
    binary = B.build_mxgate(args.build)
    B.raise_nofile(4096)
    B.print_environment(binary)
    print("  redis        %s" % subprocess.run([REDIS, "--version"], stdout=subprocess.PIPE)
          .stdout.decode().strip())
    redis = None
    proxy = None
    results = {}
    try:
        redis = Redis()
        proxy, pport = start_proxy(redis.port, DELAY_MS)
        cases = [("memory", "memory"),
                 ("redis", "redis:127.0.0.1:%d" % redis.port),
                 ("redis+%dms" % DELAY_MS, "redis:127.0.0.1:%d" % pport)]
        for name, backend in cases:
            results[name] = measure(binary, backend, args.window, args.samples)
            r = results[name]
            print("%-10s conn/s %7.0f (errors %d)   banner median %s p90 %s   rcpt median %s p90 %s"
                  % (name, r["rate"], r["errors"], ms(statistics.median(r["banner"])),
                     ms(pct(r["banner"], 0.9)), ms(statistics.median(r["rcpt"])),
                     ms(pct(r["rcpt"], 0.9))))
            for ln in r["warnings"][:3]:
                print("    %s" % ln)
            sys.stdout.flush()
    finally:
        if proxy:
            os.kill(proxy, signal.SIGTERM)
            os.waitpid(proxy, 0)
        if redis:
            redis.stop()
        budget.cancel()
    mem = results["memory"]
    for name in list(results)[1:]:
        r = results[name]
        print("anvil_redis: %s vs memory: conn/s %.0f vs %.0f (%.2fx), added latency: banner %s, "
              "rcpt %s (medians)"
              % (name, r["rate"], mem["rate"], r["rate"] / mem["rate"] if mem["rate"] else 0,
                 ms(statistics.median(r["banner"]) - statistics.median(mem["banner"])),
                 ms(statistics.median(r["rcpt"]) - statistics.median(mem["rcpt"]))))


if __name__ == "__main__":
    main()
