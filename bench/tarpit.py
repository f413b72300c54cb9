#!/usr/bin/env python3
"""tarpit benchmark (DESIGN.md promise 3, "Abuse costs the abuser, not us").

1500 abusive clients from 150 loopback addresses (127.0.1.1 ... 127.0.1.150, 10 each) go past
smtpd_soft_error_limit and sit in the tarpit, each with a delayed reply outstanding; meanwhile a
legitimate sender from 127.0.0.1 does a full transaction (EHLO, MAIL, RCPT to a valid virtual
user, DATA, QUIT), 5 times.  The same run does this against mxgate and against Postfix 3.7, and
prints the median/max transaction time, the server's RSS, and the ratio.

Each abusive client, lock-step (one command, wait for its reply):
    connect, banner, EHLO,
    11 unknown commands ("XBAD"): error_count reaches 11; the replies to the 10th and 11th are
        already delayed by smtpd_error_sleep_time (1 s),
    then "MAIL FROM:<...>" / "RSET" alternately: neither adds an error (RSET is a junk command;
    smtpd_junk_command_limit is 100), but every reply is delayed 1 s since error_count >= 10.
So every client always has one delayed reply outstanding and stays well below the hard limit
(20) for the whole measurement (about 200 s of budget).

    python3 bench/tarpit.py [--build DIR] [--clients N] [--skip-postfix]

Needs root (mxgate drops to the mxgate user; Postfix via scripts/postfix-ref).
The whole run is bounded to 295 s and stops both servers on any exit.
"""

import argparse
import os
import select
import smtplib
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _benchlib as B  # noqa: E402

SOURCES = ["127.0.1.%d" % i for i in range(1, 151)]
BAD_COMMANDS = 11            # error_count after the ramp: past the soft limit (10), below 20
HOLD_COMMANDS = ("MAIL FROM:<abuser@abuse.example>", "RSET")
TRANSACTIONS = 5
DELAYED = 0.8                # a reply that took this long was tarpitted (sleep time is 1 s)

GOAL_TIME = 0.3
GOAL_RSS_KIB = 64 * 1024

MAIN = dict(B.BASE_MAIN, **{
    "default_process_limit": "2000",
    # left at their defaults (stated for the record): smtpd_client_connection_count_limit 50,
    # smtpd_soft_error_limit 10, smtpd_hard_error_limit 20, smtpd_error_sleep_time 1s
})
MESSAGE = ("From: <sender@legit.example>\r\nTo: <alice@virt.test>\r\n"
           "Subject: tarpit benchmark\r\n\r\nHello from the legitimate sender.\r\n")


# -- the abusive load (runs in a child process) -------------------------------------------------

def on_reply(load, c, code, lines, latency):
    d = c.data
    n = c.nreplies
    if n == 1:                                   # banner
        if code != 220:
            load.notes.append("client %d: banner %r" % (c.idx, lines[-1]))
            load.close(c)
            return None
        return "EHLO abuser%d.abuse.example" % c.idx
    if n == 2:                                   # EHLO
        if code != 250:
            load.notes.append("client %d: EHLO %r" % (c.idx, lines[-1]))
            load.close(c)
            return None
        d["bad"] = 1
        d["delayed"] = 0
        return "XBAD%d" % d["bad"]
    if latency >= DELAYED:
        d["delayed"] += 1
    if code == 421:                              # hard limit or timeout: should never happen
        load.notes.append("client %d: %r" % (c.idx, lines[-1]))
        return None
    if d["bad"] < BAD_COMMANDS:                  # reply to an unknown command
        d["bad"] += 1
        return "XBAD%d" % d["bad"]
    if "hold" not in d:
        d["hold"] = 0
    else:
        load.hold_lat.append(latency)
    d["hold"] += 1
    return HOLD_COMMANDS[(d["hold"] - 1) % 2]


def drive(port, nclients, status, ctl, deadline):
    B.raise_nofile(nclients + 200)
    load = B.Load(port, SOURCES, nclients, on_reply, window=nclients)  # a flood: the listen backlog (2000) holds it
    load.hold_lat = []
    last = 0.0
    try:
        while time.monotonic() < deadline:
            load.step(0.05)
            now = time.monotonic()
            if now - last >= 0.25:
                last = now
                r, _, _ = select.select([ctl], [], [], 0)
                if r and not os.read(ctl, 64):
                    break                        # parent closed the control pipe
                tarpit = outstanding = 0
                oldest = 0.0
                for c in load.conns:
                    if c.sock is None or c.data.get("delayed", 0) == 0 or "hold" not in c.data:
                        continue
                    tarpit += 1
                    if c.sent_at is not None:
                        outstanding += 1
                        oldest = max(oldest, now - c.sent_at)
                lat = load.hold_lat[-3000:]
                status({
                    "t": now,
                    "opened": load.next_open,
                    "open": sum(1 for c in load.conns if c.sock is not None),
                    "tarpit": tarpit,
                    "outstanding": outstanding,
                    "oldest_outstanding": oldest,
                    "closed": load.closed,
                    "failed": load.failed,
                    "hold_replies": len(load.hold_lat),
                    "lat_min": min(lat) if lat else None,
                    "lat_med": statistics.median(lat) if lat else None,
                    "lat_max": max(lat) if lat else None,
                    "max_errors": max((c.data.get("bad", 0) for c in load.conns), default=0),
                    "notes": load.notes[:5],
                })
                del load.hold_lat[:-3000]
    finally:
        load.close_all()


# -- the legitimate sender --------------------------------------------------------------------------

def legit_transaction(port, timeout):
    t0 = time.monotonic()
    s = smtplib.SMTP(timeout=timeout, local_hostname="legit.example",
                     source_address=("127.0.0.1", 0))
    try:
        code, msg = s.connect("127.0.0.1", port)
        if code != 220:
            raise RuntimeError("banner %d %r" % (code, msg))
        code, msg = s.ehlo("legit.example")
        if code != 250:
            raise RuntimeError("EHLO %d %r" % (code, msg))
        code, msg = s.mail("sender@legit.example")
        if code != 250:
            raise RuntimeError("MAIL %d %r" % (code, msg))
        code, msg = s.rcpt("alice@virt.test")
        if code != 250:
            raise RuntimeError("RCPT %d %r" % (code, msg))
        code, msg = s.data(MESSAGE)
        if code != 250:
            raise RuntimeError("DATA %d %r" % (code, msg))
        s.quit()
    finally:
        s.close()
    return time.monotonic() - t0


def describe(st, n):
    lat = ""
    if st.get("lat_med") is not None:
        lat = " (recent tarpit replies: min %.2f s, median %.2f s, max %.2f s)" % (
            st["lat_min"], st["lat_med"], st["lat_max"])
    return ("%d/%d in the tarpit with a delayed reply outstanding, %d open, %d closed by the "
            "server, %d failed, max errors %d%s" % (st.get("outstanding", 0), n, st.get("open", 0),
                                                     st.get("closed", 0), st.get("failed", 0),
                                                     st.get("max_errors", 0), lat))


def measure(name, port, nclients, budget, ramp_timeout, memory):
    """Ramp the abusive clients into the tarpit, then time the legitimate sender.
    memory() returns (rss_kib, pss_kib, detail string).  Returns a result dict."""
    res = {"name": name, "times": [], "rss": [], "pss": [], "in_tarpit": [], "timeouts": 0}
    t_ramp = time.monotonic()
    child = B.ChildLoad(lambda status, ctl, dl: drive(port, nclients, status, ctl, dl),
                        deadline_s=max(30, budget.left() - 10))
    try:
        # Supplementary: one transaction while the flood is still arriving (every abusive
        # client has connected, few are in the tarpit yet).
        st0 = child.wait_for(lambda s: s.get("opened", 0) >= nclients, 30)
        t0 = time.monotonic()
        try:
            dt = legit_transaction(port, min(60.0, budget.left() - 60))
            how = ""
        except (OSError, smtplib.SMTPException, RuntimeError) as e:
            dt = time.monotonic() - t0
            how = "  FAILED: %r" % (e,)
        res["flood"] = dt
        st = child.poll()
        print("  transaction during the flood: %.3f s  (at its start %d clients connecting or "
              "connected, %d in the tarpit; at its end %d in the tarpit)%s"
              % (dt, st0.get("open", 0), st0.get("outstanding", 0), st.get("outstanding", 0), how))
        st = child.wait_for(lambda s: s.get("outstanding", 0) >= nclients
                            and s.get("hold_replies", 0) >= nclients, ramp_timeout)
        res["ramp"] = time.monotonic() - t_ramp
        print("  ramp: %.1f s; %s" % (res["ramp"], describe(st, nclients)))
        for note in st.get("notes", []):
            print("    note: %s" % note)
        rss, pss, detail = memory()
        res["rss"].append(rss)
        res["pss"].append(pss)
        print("  server memory with the tarpit full: %s" % detail)
        for i in range(TRANSACTIONS):
            st = child.poll()
            res["in_tarpit"].append(st.get("outstanding", 0))
            timeout = min(60.0, budget.left() - 25)
            if timeout < 5:
                print("  transaction %d: skipped, the time budget is spent" % (i + 1))
                break
            t0 = time.monotonic()
            try:
                dt = legit_transaction(port, timeout)
                how = ""
            except (OSError, smtplib.SMTPException, RuntimeError) as e:
                dt = time.monotonic() - t0
                res["timeouts"] += 1
                how = "  FAILED: %r" % (e,)
            res["times"].append(dt)
            rss, pss, _ = memory()
            res["rss"].append(rss)
            res["pss"].append(pss)
            print("  transaction %d: %.3f s  (tarpit at start: %d/%d, server RSS %s)%s"
                  % (i + 1, dt, res["in_tarpit"][-1], nclients, B.fmt_kib(rss), how))
            sys.stdout.flush()
        st = child.poll()
        res["in_tarpit"].append(st.get("outstanding", 0))
        print("  at the end: %s" % describe(st, nclients))
        rss, pss, detail = memory()
        res["rss"].append(rss)
        res["pss"].append(pss)
        print("  server memory at the end: %s" % detail)
    finally:
        child.stop()
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", help="mxgate build dir (default bench/build, built here)")
    ap.add_argument("--clients", type=int, default=1500)
    ap.add_argument("--skip-postfix", action="store_true")
    args = ap.parse_args()
    budget, binary = B.prepare(args.build, args.clients + 500)
    print("load: %d abusive clients from %d sources (%s ... %s), %d unknown commands each, "
          "then MAIL/RSET lock-step (1 s tarpit per reply); legitimate sender 127.0.0.1 x %d"
          % (args.clients, len(SOURCES), SOURCES[0], SOURCES[-1], BAD_COMMANDS, TRANSACTIONS))
    sys.stdout.flush()
    results = {}
    srv = pf = None
    try:
        # -- mxgate --
        print("\nmxgate:")
        srv = B.start_mxgate(binary, MAIN, None)

        def mx_memory():
            rss = B.proc_status_kib(srv.pid)
            pss = B.proc_rollup_kib(srv.pid)
            return rss, pss, "VmRSS %s (pid %d), Pss %s, threads %d" % (
                B.fmt_kib(rss), srv.pid, B.fmt_kib(pss), B.proc_status_kib(srv.pid, "Threads"))

        print("  idle: %s" % mx_memory()[2])
        results["mxgate"] = measure("mxgate", srv.port, args.clients, budget, 60, mx_memory)
        print("  delivered: %d message(s) in alice's Maildir (new/)"
              % len(B.harness.maildir_files(srv.vmail, "new")))
        B.stop_mxgate(srv)
        srv = None

        # -- Postfix --
        if not args.skip_postfix:
            print("\npostfix:")
            pf = B.PostfixRef("tarpit", MAIN, ["127.0.0.1:{port} inet n - n - - smtpd"])
            pf.start()

            def pf_memory():
                per, rss, pss = pf.memory()
                parts = ", ".join("%s x%d %s" % (k, v[0], B.fmt_kib(v[1]))
                                  for k, v in sorted(per.items(), key=lambda kv: -kv[1][1]))
                return rss, pss, "RSS sum %s, Pss sum %s (%s)" % (B.fmt_kib(rss), B.fmt_kib(pss),
                                                                  parts)

            print("  idle: %s" % pf_memory()[2])
            ramp_timeout = max(30, min(150, budget.left() - 110))
            results["postfix"] = measure("postfix", pf.port, args.clients, budget, ramp_timeout,
                                         pf_memory)
            pf.stop()
            pf = None
    finally:
        if srv is not None:
            B.stop_mxgate(srv)
        if pf is not None:
            pf.stop()
    budget.cancel()

    # -- summary --
    print("\nresults (transaction = connect, EHLO, MAIL, RCPT, DATA, QUIT from 127.0.0.1):")
    summary = {}
    for name in ("mxgate", "postfix"):
        r = results.get(name)
        if not r or not r["times"]:
            continue
        med, mx = statistics.median(r["times"]), max(r["times"])
        peak, ppss = max(r["rss"]), max(r["pss"])
        summary[name] = (med, mx, peak, ppss)
        print("  %-8s median %.3f s, max %.3f s over %d (%s); %s in the tarpit during them "
              "(min %d); peak RSS %s (Pss %s)%s" % (
                  name, med, mx, len(r["times"]), ", ".join("%.3f" % t for t in r["times"]),
                  "all" if min(r["in_tarpit"]) >= args.clients else "NOT all",
                  min(r["in_tarpit"]), B.fmt_kib(peak), B.fmt_kib(ppss),
                  ", %d failed/timed out" % r["timeouts"] if r["timeouts"] else ""))
    if "mxgate" in summary:
        med, mx, peak, _ = summary["mxgate"]
        ok_t = mx < GOAL_TIME
        ok_m = peak < GOAL_RSS_KIB
        print("  goals for mxgate: transaction < %.1f s: %s (max %.3f s); RSS < %s: %s (%s)" % (
            GOAL_TIME, "met" if ok_t else "MISSED", mx, B.fmt_kib(GOAL_RSS_KIB),
            "met" if ok_m else "MISSED", B.fmt_kib(peak)))
    if "mxgate" in summary and "postfix" in summary:
        m, p = summary["mxgate"], summary["postfix"]
        fm, fp = results["mxgate"].get("flood"), results["postfix"].get("flood")
        if fm is not None and fp is not None:
            print("during the flood (one transaction while the %d clients are still arriving): "
                  "mxgate %.3f s vs postfix %.3f s: ratio %.0fx" % (args.clients, fm, fp,
                                                                  fp / max(fm, 1e-6)))
        print("tarpit: mxgate %.3f s (RSS %s) vs postfix %.3f s (RSS %s): ratio %.1fx "
              "(time), %.0fx (RSS), %.0fx (Pss: mxgate %s, postfix %s)"
              % (m[0], B.fmt_kib(m[2]), p[0], B.fmt_kib(p[2]), p[0] / max(m[0], 1e-6),
                 p[2] / max(m[2], 1), p[3] / max(m[3], 1), B.fmt_kib(m[3]), B.fmt_kib(p[3])))
    print("elapsed: %.0f s" % budget.elapsed())
    return 0


if __name__ == "__main__":
    sys.exit(main())
