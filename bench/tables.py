#!/usr/bin/env python3
"""tables benchmark: RCPT checks per second against large lookup tables.

For each table case, mxgate and Postfix 3.7 get the same main.cf, with
virtual_mailbox_maps pointing at the same table, and the same load:
CLIENTS sessions from 127.0.0.1, each EHLO, MAIL FROM, then RCPT TO a random
existing user, one command at a time (no pipelining), with RSET and a new MAIL
FROM every RCPT_PER_MAIL recipients.  What is counted: "250 2.1.5 Ok" replies
to RCPT in a WINDOW-second window after a warm-up; any other reply is printed
and makes the case fail.

Cases:
    hash   a 1,000,000-entry hash: table built by Postfix's postmap
    cdb    the same entries in a cdb: table (postmap cdb:)
    mysql  a local MariaDB table (tests/system/dbfixture.py starts a private
           mariadbd) with ROWS rows, queried through mysql_table(5) settings
    access the hash case plus access restrictions at three stages, each asking a
           1,000,000-entry hash: access table (postmap) that the load never
           matches, so every key of Postfix's key order is looked up:
           check_client_access, check_sender_access + reject_non_fqdn_sender,
           check_recipient_access, permit_mynetworks, reject_unauth_destination

Each line prints mxgate's and Postfix's rates and their ratio.

    python3 bench/tables.py [--build DIR] [--cases hash,cdb,mysql,access] [--entries N]

Needs root.  The whole run is bounded to 295 s; every server is stopped on any exit.
"""

import argparse
import os
import random
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _benchlib as B  # noqa: E402

CLIENTS = 20
RCPT_PER_MAIL = 200
WARMUP = 3.0
WINDOW = 10.0
ENTRIES = 1000000
TABLE_DIR = "/tmp/mxgate-bench-tables"

MAIN = dict(B.BASE_MAIN, **{
    "smtpd_client_connection_count_limit": "0",
    "default_process_limit": "200",
    "virtual_mailbox_domains": "virt.test",
})


def write_source(path, entries):
    with open(path, "w") as f:
        f.write("alice@virt.test alice/\n")
        for i in range(entries):
            f.write("user%d@virt.test user%d/\n" % (i, i))
    os.chmod(path, 0o644)


def postmap(spec):
    t0 = time.monotonic()
    r = subprocess.run(["postmap", spec], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=200)
    if r.returncode != 0:
        raise SystemExit("postmap %s: %s" % (spec, r.stdout.decode("utf-8", "replace")))
    return time.monotonic() - t0


def mysql_table(entries):
    """A private mariadbd (tests/system/dbfixture.py) with a mailbox table of entries rows
    and a mysql_table(5) file that both servers read.  Returns (server, cf path)."""
    import dbfixture  # tests/system, on the path through _benchlib
    db = dbfixture.MariaDB(prefix="mxgate-bench-mariadb-")
    db.start()
    t0 = time.monotonic()
    db.sql("CREATE DATABASE bench; CREATE TABLE bench.mailbox (username VARCHAR(255) NOT NULL"
           " PRIMARY KEY, maildir VARCHAR(255) NOT NULL);")
    chunk = 20000
    for start in range(0, entries, chunk):
        rows = ",".join("('user%d@virt.test','user%d/')" % (i, i)
                        for i in range(start, min(entries, start + chunk)))
        db.sql("INSERT INTO mailbox VALUES %s;" % rows, db="bench")
    db.sql("INSERT INTO mailbox VALUES ('alice@virt.test','alice/');", db="bench")
    db.add_user("bench", "bench-pw", "bench")
    print("  mariadb: %d rows loaded in %.1f s" % (entries + 1, time.monotonic() - t0))
    cf = os.path.join(TABLE_DIR, "mysql-vmailbox.cf")
    with open(cf, "w") as f:
        f.write("hosts = unix:%s\nuser = bench\npassword = bench-pw\ndbname = bench\n"
                "query = SELECT maildir FROM mailbox WHERE username='%%s'\n" % db.socket)
    os.chmod(cf, 0o644)
    return db, cf


def rcpt_client(entries):
    def on_reply(load, c, code, lines, latency):
        d = c.data
        n = c.nreplies
        if n == 1:
            return "EHLO bench%d.example" % c.idx
        if n == 2:
            d["state"] = "mail"
            return "MAIL FROM:<sender@client.example>"
        state = d.get("state")
        if state == "rcpt":
            if code == 250:
                if time.monotonic() >= load.t_start and time.monotonic() < load.t_end:
                    load.ok += 1
            else:
                load.bad += 1
                if len(load.notes) < 5:
                    load.notes.append("RCPT: %s" % lines[-1])
            d["count"] = d.get("count", 0) + 1
            if d["count"] % RCPT_PER_MAIL == 0:
                d["state"] = "rset"
                return "RSET"
        elif state == "rset":
            d["state"] = "mail"
            return "MAIL FROM:<sender@client.example>"
        elif state == "mail" and code != 250:
            load.bad += 1
            load.notes.append("MAIL: %s" % lines[-1])
            return None
        d["state"] = "rcpt"
        return "RCPT TO:<user%d@virt.test>" % random.randrange(entries)
    return on_reply


def measure(port, entries):
    load = B.Load(port, ["127.0.0.1"], CLIENTS, rcpt_client(entries), window=CLIENTS)
    load.ok = load.bad = 0
    now = time.monotonic()
    load.t_start = now + WARMUP
    load.t_end = load.t_start + WINDOW
    load.run_until(lambda: False, load.t_end)
    load.close_all()
    return load.ok / WINDOW, load.bad, load.notes


def run_case(name, spec_fn, binary, entries):
    table = spec_fn()
    extra = {}
    if isinstance(table, tuple):
        table, extra = table
    main = dict(MAIN, virtual_mailbox_maps=table, **extra)
    res = {}
    srv = B.start_mxgate(binary, main, None)
    try:
        res["mxgate"] = measure(srv.port, entries)
    finally:
        B.stop_mxgate(srv)
    pf = B.PostfixRef("tables", main, ["127.0.0.1:{port} inet n - n - - smtpd"])
    try:
        pf.start()
        res["postfix"] = measure(pf.port, entries)
    finally:
        pf.stop()
    (mx, mx_bad, mx_notes), (pf_r, pf_bad, pf_notes) = res["mxgate"], res["postfix"]
    for who, bad, notes in (("mxgate", mx_bad, mx_notes), ("postfix", pf_bad, pf_notes)):
        if bad:
            print("  %s: %d replies other than 250: %s" % (who, bad, "; ".join(notes)))
    ratio = mx / pf_r if pf_r else float("inf")
    print("tables: %-5s mxgate %8.0f RCPT/s vs postfix %8.0f RCPT/s: ratio %.2fx%s"
          % (name, mx, pf_r, ratio, "" if not (mx_bad or pf_bad) else "  (ERRORS)"))
    return not (mx_bad or pf_bad)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build")
    ap.add_argument("--cases", default="hash,cdb,mysql,access")
    ap.add_argument("--entries", type=int, default=ENTRIES)
    args = ap.parse_args()
    budget, binary = B.prepare(args.build, 4096)
    shutil.rmtree(TABLE_DIR, ignore_errors=True)
    os.makedirs(TABLE_DIR)
    os.chmod(TABLE_DIR, 0o755)
    src = os.path.join(TABLE_DIR, "vmailbox")
    write_source(src, args.entries)
    print("table: %d entries, %d clients, %.0f s window after %.0f s warm-up"
          % (args.entries + 1, CLIENTS, WINDOW, WARMUP))
    fixture = None

    def hash_spec():
        print("  postmap hash: %.1f s" % postmap("hash:" + src))
        return "hash:" + src

    def cdb_spec():
        print("  postmap cdb: %.1f s" % postmap("cdb:" + src))
        return "cdb:" + src

    def mysql_spec():
        nonlocal fixture
        fixture, cf = mysql_table(args.entries)
        return "mysql:" + cf

    def access_spec():
        acl = os.path.join(TABLE_DIR, "access")
        with open(acl, "w") as f:
            for i in range(args.entries):
                f.write("block%d.example REJECT blocked\n" % i)
        os.chmod(acl, 0o644)
        print("  postmap hash (access): %.1f s" % postmap("hash:" + acl))
        spec = "hash:" + acl
        return hash_spec(), {
            "smtpd_client_restrictions": "check_client_access " + spec,
            "smtpd_sender_restrictions": "check_sender_access %s, reject_non_fqdn_sender" % spec,
            "smtpd_recipient_restrictions": "check_recipient_access %s, permit_mynetworks, "
                                            "reject_unauth_destination" % spec,
        }

    cases = {"hash": hash_spec, "cdb": cdb_spec, "mysql": mysql_spec, "access": access_spec}
    ok = True
    try:
        for name in args.cases.split(","):
            if budget.left() < 60:
                print("tables: %s skipped: %.0f s left in the budget" % (name, budget.left()))
                ok = False
                continue
            ok = run_case(name, cases[name], binary, args.entries) and ok
    finally:
        if fixture is not None:
            fixture.cleanup()
        budget.cancel()
        shutil.rmtree(TABLE_DIR, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
