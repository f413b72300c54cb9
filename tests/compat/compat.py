#!/usr/bin/env python3
"""compat: play the same SMTP sessions against the real Postfix 3.7 and mxgate.

    compat.py --record [--build DIR]   start Postfix with scripts/postfix-ref (root),
                                       play every session, write expected/<session>.txt
                                       (replies, close, deliveries) and expected/<session>.log
                                       (smtpd's log lines, for reference)
    compat.py [--build DIR] [-k PAT]   play every session against build/mxgate with the same
                                       main.cf/master.cf and diff against expected/*.txt;
                                       exit 1 on any difference
    compat.py --as-user nobody         (diff mode, root only) run mxgate as an ordinary user

Sessions (sessions/<name>.txt) are data; see sessions/README.  The expected transcripts are
Postfix's literal output except for the queue id (QUEUEID).  In diff mode the deliberate
differences of DESIGN.md are applied to the expected transcript, and only those (SUBSTITUTIONS
below): mail_name in the banner, no ETRN and DSN in the EHLO reply, and ETRN's 502 reply.
"""

import argparse
import difflib
import os
import pwd
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "system"))
import harness  # noqa: E402

SESSIONS = os.path.join(HERE, "sessions")
EXPECTED = os.path.join(HERE, "expected")
POSTFIX_REF = os.path.join(REPO, "scripts", "postfix-ref")
RECORD_DIR = "/tmp/mxgate-compat-ref"   # fixed: postfix-ref lists it in /etc/postfix/main.cf
RECORD_VUSER = "nobody"                 # owner of Postfix's virtual mailboxes while recording
VIRTUAL_USERS = ("alice", "bob")
REPLY_TIMEOUT = 15.0

# The main.cf both servers get (besides the virtual_* lines, which need paths and ids, and
# maillog_file).  Postfix 3.7's defaults for the last two differ from mxgate's (DESIGN.md), so
# they are set explicitly and both servers behave the same.
COMMON_PARAMS = {
    "myhostname": "mx.example.test",
    "mydestination": "local.test",
    "alias_maps": "",
    "local_recipient_maps": "proxy:unix:passwd.byname $alias_maps",
    "mynetworks": "192.0.2.0/24",
    "compatibility_level": "3.6",
    "message_size_limit": "10240000",
    "smtpd_forbid_unauth_pipelining": "yes",
    "smtpd_forbid_bare_newline": "normalize",
}


def virtual_params(vmap, vmail, uid, gid):
    return {
        "virtual_mailbox_domains": "virt.test",
        "virtual_mailbox_maps": "texthash:" + vmap,
        "virtual_mailbox_base": vmail,
        "virtual_uid_maps": "static:%d" % uid,
        "virtual_gid_maps": "static:%d" % gid,
    }


# -- sessions ------------------------------------------------------------------------------------

def session_names(pattern=None):
    names = sorted(n[:-4] for n in os.listdir(SESSIONS) if n.endswith(".txt"))
    if pattern:
        names = [n for n in names if pattern in n]
    return names


def parse_session(path):
    """A list of steps: ("cmd", line), ("pipeline", [lines]), ("data", [lines]),
    ("bdat", "LAST"|"", [lines]), ("send", bytes), ("read",), ("sleep", secs).
    The first element is ("banner", bool); the main.cf lines of @main directives are in
    session_main(path)."""
    steps = []
    banner = True
    block = None
    with open(path, encoding="utf-8") as f:
        raw = f.read().split("\n")
    if raw and raw[-1] == "":
        raw.pop()
    for no, line in enumerate(raw, 1):
        if block is not None:
            if line == "@end":
                steps.append(tuple(block))
                block = None
            else:
                block[-1].append(line)
            continue
        if line.startswith("#") or line == "":
            continue
        if line.startswith("@"):
            word, _, arg = line[1:].partition(" ")
            if word == "pipeline":
                block = ["pipeline", []]
            elif word == "data":
                block = ["data", []]
            elif word == "bdat":
                block = ["bdat", arg.strip(), []]
            elif word == "send":
                steps.append(("send", eval_bytes(arg, path, no)))
            elif word == "read":
                steps.append(("read",))
            elif word == "sleep":
                steps.append(("sleep", float(arg)))
            elif word == "nobanner":
                banner = False
            elif word == "line":
                steps.append(("cmd", arg))
            elif word == "main":
                if steps:
                    raise SystemExit("%s:%d: @main must come before the first step" % (path, no))
                if "=" not in arg:
                    raise SystemExit("%s:%d: @main needs name = value" % (path, no))
            else:
                raise SystemExit("%s:%d: unknown directive @%s" % (path, no, word))
            continue
        steps.append(("cmd", line))
    if block is not None:
        raise SystemExit("%s: @%s block without @end" % (path, block[0]))
    return [("banner", banner)] + steps


def session_main(path):
    """The session's extra main.cf parameters ({name: value} from its @main lines, in order),
    given to both servers on top of COMMON_PARAMS."""
    extra = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("@main "):
                name, _, value = line[len("@main "):].partition("=")
                extra[name.strip()] = value.strip().replace("{SESSIONS}", SESSIONS)
    return extra


def eval_bytes(arg, path, no):
    """@send's argument: a Python string literal, e.g. "EHLO x\\n"."""
    import ast
    try:
        v = ast.literal_eval(arg.strip())
    except (ValueError, SyntaxError):
        raise SystemExit("%s:%d: @send needs a quoted string literal" % (path, no))
    return v.encode("latin-1") if isinstance(v, str) else v


def play(port, steps, source=None):
    """Play one session; return (transcript lines, raw queue ids seen)."""
    out = []
    qids = []

    def replies(c, n=1):
        for _ in range(n):
            try:
                r = c.read_reply(REPLY_TIMEOUT)
            except harness.Closed:
                out.append("-- closed")
                return False
            except TimeoutError:
                out.append("-- no reply within %gs" % REPLY_TIMEOUT)
                return False
            for ln in r.lines:
                m = re.search(r"queued as ([0-9A-Za-z]+)$", ln)
                if m:
                    qids.append(m.group(1))
                out.append("S: " + ln)
        return True

    c = harness.Client(port, source=source, timeout=REPLY_TIMEOUT)
    try:
        alive = True
        for step in steps:
            kind = step[0]
            if kind == "banner":
                if step[1]:
                    alive = replies(c)
            elif kind == "cmd":
                out.append("C: " + step[1])
                c.send(step[1] + "\r\n")
                alive = replies(c)
            elif kind == "pipeline":
                out.extend("P: " + ln for ln in step[1])
                c.send("".join(ln + "\r\n" for ln in step[1]))
                alive = replies(c, len(step[1]))
            elif kind == "data":
                out.extend("D: " + ln for ln in step[1])
                c.send("".join(ln + "\r\n" for ln in step[1]))
                alive = replies(c)
            elif kind == "bdat":
                body = "".join(ln + "\r\n" for ln in step[2]).encode()
                head = ("BDAT %d %s" % (len(body), step[1])).strip()
                out.append("B: " + head)
                out.extend("D: " + ln for ln in step[2])
                c.send(head.encode() + b"\r\n" + body)
                alive = replies(c)
            elif kind == "send":
                out.append("R: " + repr(step[1])[1:])
                c.send(step[1])
            elif kind == "read":
                alive = replies(c)
            elif kind == "sleep":
                time.sleep(step[1])
            if not alive:
                break
    except OSError as e:          # the server closed or reset while we were sending
        out.append("-- send failed: %s" % e.__class__.__name__)
        alive = False
    try:
        if alive:
            # Every session ends with QUIT or a reply that closes: wait for the close.
            extra = b""
            deadline = time.monotonic() + 5.0
            closed = False
            while time.monotonic() < deadline:
                if c.closed(max(0.01, deadline - time.monotonic())):
                    closed = True
                    break
                extra += c.buf
                c.buf = b""
            for ln in extra.decode("utf-8", "replace").splitlines():
                out.append("S: (unsolicited) " + ln)
            out.append("-- closed" if closed else "-- still open after 5s")
    finally:
        c.close()
    return out, qids


def normalize(lines):
    return [re.sub(r"queued as [0-9A-Za-z]+$", "queued as QUEUEID", ln) for ln in lines]


# -- deliveries ----------------------------------------------------------------------------------

def delivered(base, before=()):
    """Transcript lines for the messages that appeared under base (not in before):
    mailbox, Return-Path, Delivered-To and the body after the header block."""
    items = []
    for path in harness.maildir_files(base, "new"):
        if path in before:
            continue
        mbox = os.path.basename(os.path.dirname(os.path.dirname(path)))
        headers, body = harness.read_message(path)
        lines = ["== delivered to %s" % mbox]
        for name in ("Return-Path", "Delivered-To"):
            vals = [v for n, v in headers if n.lower() == name.lower()]
            lines.append("%s: %s" % (name, " | ".join(vals) if vals else "(missing)"))
        blines = body.decode("utf-8", "replace").split("\n")
        if blines[-1] == "":
            blines.pop()
        else:
            blines.append("(no newline at the end)")
        lines.extend("| " + ln for ln in blines)
        items.append(lines)
    items.sort()
    return [ln for it in items for ln in it]


def smtpd_log(lines):
    """smtpd's lines from 'connect from' to 'disconnect from', prefix stripped, queue ids
    normalized (at the start of a line, also after "warning: ")."""
    out = []
    on = False
    for line in lines:
        m = harness.LOG_PREFIX.match(line)
        if not m or not m.group(1).endswith("/smtpd"):
            continue
        msg = line[m.end():]
        if msg.startswith("connect from "):
            on = True
        if on:
            # "<qid>: ..." and "warning: <qid>: ..." (null BDAT request, size limits)
            out.append(re.sub(r"^(warning: )?[0-9A-F]{6,}: ", r"\1QUEUEID: ", msg))
        if msg.startswith("disconnect from "):
            on = False
    return out


# -- recording against Postfix --------------------------------------------------------------------

def record(names):
    if os.geteuid() != 0:
        raise SystemExit("compat --record needs root (postfix-ref starts Postfix)")
    if not os.path.isfile(POSTFIX_REF):
        raise SystemExit("missing %s" % POSTFIX_REF)
    d = RECORD_DIR
    if os.path.isdir(d):
        subprocess.call(["sh", POSTFIX_REF, "stop", d])
        shutil.rmtree(d)
    os.makedirs(d)
    os.chmod(d, 0o755)
    pw = pwd.getpwnam(RECORD_VUSER)
    vmail = os.path.join(d, "vmail")
    vmap = os.path.join(d, "vmailbox")
    os.mkdir(vmail)
    os.chown(vmail, pw.pw_uid, pw.pw_gid)
    with open(vmap, "w") as f:
        f.writelines("%s@virt.test %s/\n" % (u, u) for u in VIRTUAL_USERS)
    # Sessions with the same @main lines share one Postfix instance; main.cf differs between
    # groups, so Postfix is stopped and started again with the group's own main.cf.
    groups = []
    for name in names:
        extra = session_main(os.path.join(SESSIONS, name + ".txt"))
        for g in groups:
            if g[0] == extra:
                g[1].append(name)
                break
        else:
            groups.append((extra, [name]))
    os.makedirs(EXPECTED, exist_ok=True)
    for extra, group in groups:
        record_group(d, vmail, vmap, pw, extra, group)
    return 0


def record_group(d, vmail, vmap, pw, extra, names):
    """Start Postfix with COMMON_PARAMS + extra, record every session of names, stop it."""
    port = harness.free_port()
    params = dict(COMMON_PARAMS)
    params.update(virtual_params(vmap, vmail, pw.pw_uid, pw.pw_gid))
    params.update(extra)
    with open(os.path.join(d, "main.cf"), "w") as f:
        f.write(harness.format_main_cf(params))
    with open(os.path.join(d, "master.cf"), "w") as f:
        f.write("127.0.0.1:%d inet n - n - - smtpd\n" % port)
    rc = subprocess.call(["sh", POSTFIX_REF, "start", d])
    if rc != 0:
        raise SystemExit("postfix-ref start failed (%d); see %s/maillog" % (rc, d))
    maillog = os.path.join(d, "maillog")
    try:
        deadline = time.monotonic() + 30
        while not harness.port_listening(port):
            if time.monotonic() > deadline:
                raise SystemExit("Postfix is not listening on %d" % port)
            time.sleep(0.1)
        for name in names:
            steps = parse_session(os.path.join(SESSIONS, name + ".txt"))
            before = set(harness.maildir_files(vmail, "new"))
            offset = os.path.getsize(maillog) if os.path.exists(maillog) else 0
            lines, qids = play(port, steps)
            # Postfix delivers after the 250: wait until qmgr removed every queued message,
            # and until smtpd logged the disconnect.
            deadline = time.monotonic() + 60
            while True:
                with open(maillog, "rb") as f:
                    f.seek(offset)
                    log = f.read().decode("utf-8", "replace").splitlines()
                text = "\n".join(log)
                done = all(re.search(r"\b%s: removed" % q, text) for q in qids) and \
                    "disconnect from" in text
                if done or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            if not done:
                print("warning: %s: deliveries or disconnect not logged within 60s" % name)
            transcript = normalize(lines) + delivered(vmail, before)
            with open(os.path.join(EXPECTED, name + ".txt"), "w") as f:
                f.write("\n".join(transcript) + "\n")
            with open(os.path.join(EXPECTED, name + ".log"), "w") as f:
                f.write("\n".join(smtpd_log(log)) + "\n")
            print("recorded %s (%d lines)" % (name, len(transcript)))
    finally:
        # postfix-ref stop waits until master has exited.
        subprocess.call(["sh", POSTFIX_REF, "stop", d])


# -- deliberate differences ------------------------------------------------------------------------

ETRN_REPLY = "S: 502 5.5.1 Error: command not implemented"

SUBSTITUTIONS = """\
Deliberate differences applied to Postfix's transcript before the diff (DESIGN.md):
  1. mail_name: the banner "220 ... ESMTP Postfix" becomes "220 ... ESMTP mxgate".
  2. EHLO keywords: the 250-ETRN and 250-DSN lines are removed from the EHLO reply.
  3. ETRN: the reply to every ETRN command becomes "502 5.5.1 Error: command not implemented",
     and Postfix's log line "warning: reject: ETRN ..." is dropped.
"""


def apply_differences(lines):
    out = []
    in_ehlo = False
    after_etrn = False
    banner_done = False
    for ln in lines:
        if ln.startswith(("C: ", "P: ")):
            cmd = ln[3:].split(" ", 1)[0].upper()
            in_ehlo = cmd == "EHLO"
            after_etrn = cmd == "ETRN"
            out.append(ln)
            continue
        if ln.startswith("S: "):
            if not banner_done:
                banner_done = True
                ln = re.sub(r"^(S: 220 .* ESMTP )Postfix$", r"\1mxgate", ln)
            if in_ehlo and re.match(r"^S: 250[ -](ETRN|DSN)$", ln):
                if ln.startswith("S: 250 ") and out and out[-1].startswith("S: 250-"):
                    out[-1] = "S: 250 " + out[-1][7:]
                continue
            if after_etrn:
                # one reply (possibly multi-line) per ETRN: keep only the replaced last line
                if ln[6:7] == "-":
                    continue
                ln = ETRN_REPLY
                after_etrn = False
            if ln[6:7] == " ":
                in_ehlo = False
        out.append(ln)
    return out


# -- playing against mxgate ------------------------------------------------------------------------

def apply_log_differences(lines):
    """The deliberate differences in smtpd's log lines: ETRN is not implemented in mxgate, so
    Postfix's "warning: reject: ETRN ..." line (its 459 policy reply) has no counterpart.  The
    command is still counted as failed (etrn=0/1), as Postfix counts its own 502 for STARTTLS."""
    return [ln for ln in lines if not ln.startswith("warning: reject: ETRN ")]


class Result:
    def __init__(self, name):
        self.name = name
        self.expected = self.actual = self.expected_log = self.actual_log = None
        self.problems = []
        self.server = None

    def diff(self):
        return diff_text(self.name + ".txt", self.expected, self.actual)

    def log_diff(self):
        return diff_text(self.name + ".log", self.expected_log, self.actual_log)


def run_mxgate(name, as_user=None, env=None):
    """Play one session against a fresh mxgate; return a Result (expected transcripts with the
    deliberate differences applied, mxgate's actual ones, the daemon's problems).  Raises
    harness.ServerError if the daemon cannot be set up or started."""
    res = Result(name)
    steps = parse_session(os.path.join(SESSIONS, name + ".txt"))
    with open(os.path.join(EXPECTED, name + ".txt"), encoding="utf-8") as f:
        res.expected = apply_differences(f.read().splitlines())
    try:
        with open(os.path.join(EXPECTED, name + ".log"), encoding="utf-8") as f:
            res.expected_log = apply_log_differences(f.read().splitlines())
    except FileNotFoundError:
        res.expected_log = ["(no expected/%s.log: run compat.py --record)" % name]
    params = dict(COMMON_PARAMS)
    params.update(session_main(os.path.join(SESSIONS, name + ".txt")))
    srv = harness.Server(main=params, virtual_users=VIRTUAL_USERS, as_user=as_user, env=env)
    res.server = srv
    try:
        srv.start()
        lines, _ = play(srv.port, steps)
        srv.wait_log(r"/smtpd\[\d+\]: disconnect from ", timeout=3)
        res.actual = normalize(lines) + delivered(srv.vmail)
        res.actual_log = smtpd_log(srv.log_lines())
    finally:
        res.problems = srv.stop()
    return res


def diff_text(name, expected, actual):
    return "".join(difflib.unified_diff([ln + "\n" for ln in expected], [ln + "\n" for ln in actual],
                                        "expected/%s (Postfix + deliberate differences)" % name,
                                        "mxgate", n=3))


def check(names, as_user=None):
    failed = []
    for name in names:
        if not os.path.exists(os.path.join(EXPECTED, name + ".txt")):
            print("FAIL %s: no expected/%s.txt (run compat.py --record)" % (name, name))
            failed.append(name)
            continue
        try:
            res = run_mxgate(name, as_user=as_user)
        except harness.ServerError as e:
            print("FAIL %s: mxgate did not start: %s" % (name, e))
            failed.append(name)
            continue
        d, ld = res.diff(), res.log_diff()
        if d or ld or res.problems:
            print("FAIL %s" % name)
            sys.stdout.write(d + ld)
            for p in res.problems:
                print("  daemon: %s" % p)
            failed.append(name)
        else:
            print("ok   %s" % name)
        res.server.cleanup()
    print(SUBSTITUTIONS, end="")
    print("compat: %d sessions, %d identical, %d different" % (len(names), len(names) - len(failed),
                                                              len(failed)))
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--record", action="store_true", help="record expected/ against Postfix (root)")
    ap.add_argument("--build", default=None, help="build directory (default: build)")
    ap.add_argument("-k", dest="pattern", default=None, help="only sessions whose name contains this")
    ap.add_argument("--as-user", default=None, help="diff mode as root: run mxgate as this user")
    a = ap.parse_args()
    if a.build:
        os.environ["MXGATE_BUILD"] = os.path.abspath(a.build)
    names = session_names(a.pattern)
    if not names:
        raise SystemExit("no sessions match")
    if a.record:
        return record(names)
    return check(names, as_user=a.as_user)


if __name__ == "__main__":
    sys.exit(main())
