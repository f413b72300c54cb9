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
below): mail_name in the banner, no ETRN and DSN in the EHLO reply, and ETRN's 502 reply; and
the differences a session declares itself with @differs/@differs-log (sessions/README), e.g. a
recipient that Postfix relays and mxgate refuses.
"""

import argparse
import difflib
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
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
    session_main(path), the @differs and @differs-log lines in session_differs(path)."""
    return _parse(path)[0]


def session_differs(path):
    """(reply, log): the session's declared deliberate differences.  reply maps a step's index
    (in parse_session's list) to [(Postfix's reply line, mxgate's)] from the @differs lines
    before that step; log is [(kind, line, new)] from @differs-log lines, kind "=>" (replace
    the expected log line, or drop it when new is empty) or "+>" (insert new after it)."""
    _, reply, log = _parse(path)
    return reply, log


DIFFERS_STEPS = ("cmd", "pipeline", "data", "bdat")


def _parse(path):
    steps = []
    banner = True
    block = None
    reply_diffs = {}
    log_diffs = []
    pending = []
    with open(path, encoding="utf-8") as f:
        raw = f.read().split("\n")
    if raw and raw[-1] == "":
        raw.pop()

    def add(step):
        if pending:
            if step[0] not in DIFFERS_STEPS:
                raise SystemExit("%s: @differs must come before a command, @pipeline, @data or "
                                 "@bdat, not @%s" % (path, step[0]))
            reply_diffs[len(steps) + 1] = list(pending)   # +1: the banner step comes first
            del pending[:]
        steps.append(step)

    for no, line in enumerate(raw, 1):
        if block is not None:
            if line == "@end":
                add(tuple(block))
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
                add(("send", eval_bytes(arg, path, no)))
            elif word == "read":
                add(("read",))
            elif word == "sleep":
                add(("sleep", float(arg)))
            elif word == "nobanner":
                banner = False
            elif word == "line":
                add(("cmd", arg))
            elif word == "main":
                if steps:
                    raise SystemExit("%s:%d: @main must come before the first step" % (path, no))
                if "=" not in arg:
                    raise SystemExit("%s:%d: @main needs name = value" % (path, no))
            elif word == "policy":
                if steps:
                    raise SystemExit("%s:%d: @policy must come before the first step" % (path, no))
                if not re.match(r"^(\S+=\S*( \S+=\S*)* )?=> \S.*$|^=> \S", arg.strip()):
                    raise SystemExit("%s:%d: @policy needs [NAME=VALUE ...] => ACTION"
                                     % (path, no))
            elif word in ("dns", "dns-servfail", "dns-timeout"):
                if steps:
                    raise SystemExit("%s:%d: @%s must come before the first step" % (path, no, word))
                if not arg.strip():
                    raise SystemExit("%s:%d: @%s needs an argument" % (path, no, word))
            elif word == "postmap":
                if steps:
                    raise SystemExit("%s:%d: @postmap must come before the first step" % (path, no))
                if not re.match(r"^(hash|btree|cdb|lmdb):[A-Za-z0-9][A-Za-z0-9._-]*$", arg.strip()):
                    raise SystemExit("%s:%d: @postmap needs TYPE:NAME (hash, btree, cdb or lmdb; "
                                     "NAME a file in data/)" % (path, no))
            elif word == "differs":
                old, sep, new = arg.partition(" => ")
                if not sep or not old.strip() or not new.strip():
                    raise SystemExit("%s:%d: @differs needs POSTFIX-REPLY => MXGATE-REPLY"
                                     % (path, no))
                pending.append((old.strip(), new.strip()))
            elif word == "differs-log":
                m = re.match(r"^(.*?) (=>|\+>)(?: (.*))?$", arg)
                if not m or not m.group(1).strip() or (m.group(2) == "+>" and not m.group(3)):
                    raise SystemExit("%s:%d: @differs-log needs LINE => NEW, LINE => or "
                                     "LINE +> NEW" % (path, no))
                log_diffs.append((m.group(2), m.group(1).strip(), (m.group(3) or "").strip()))
            else:
                raise SystemExit("%s:%d: unknown directive @%s" % (path, no, word))
            continue
        add(("cmd", line))
    if block is not None:
        raise SystemExit("%s: @%s block without @end" % (path, block[0]))
    if pending:
        raise SystemExit("%s: @differs after the last step" % path)
    return [("banner", banner)] + steps, reply_diffs, log_diffs


def session_main(path, tables=None, policy=None):
    """The session's extra main.cf parameters ({name: value} from its @main lines, in order),
    given to both servers on top of COMMON_PARAMS.  tables is the directory that {TABLES}
    stands for (build_tables()), policy the server that {POLICY} stands for (a
    "inet:127.0.0.1:PORT" from start_policy())."""
    extra = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("@main "):
                name, _, value = line[len("@main "):].partition("=")
                value = value.strip().replace("{SESSIONS}", SESSIONS)
                if tables is not None:
                    value = value.replace("{TABLES}", tables)
                if policy is not None:
                    value = value.replace("{POLICY}", policy)
                extra[name.strip()] = value
    return extra


def session_dns(path):
    """The session's test DNS ({"records": [...], "servfail": [...], "timeout": [...]} from its
    @dns, @dns-servfail and @dns-timeout lines, for dnsfixture.TestDns), or None when it has
    none: then it needs no DNS and runs outside any namespace."""
    out = {"records": [], "servfail": [], "timeout": []}
    keys = {"@dns ": "records", "@dns-servfail ": "servfail", "@dns-timeout ": "timeout"}
    with open(path, encoding="utf-8") as f:
        for line in f:
            for prefix, key in keys.items():
                if line.startswith(prefix):
                    out[key].append(line[len(prefix):].strip())
    return out if any(out.values()) else None


def session_policy(path):
    """[(conditions, action)] from the session's "@policy [NAME=VALUE ...] => ACTION" lines,
    conditions a {name: value} dict; [] when it has none."""
    rules = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("@policy "):
                cond, _, act = line[len("@policy "):].rstrip("\n").partition("=>")
                rules.append((dict(c.split("=", 1) for c in cond.split()), act.strip()))
    return rules


def start_policy(path):
    """A policy server (tests/system/policyfixture.py) for the session's @policy rules: each
    request gets the action of the first rule whose every NAME=VALUE the request has, else
    DUNNO.  Returns (server, "inet:127.0.0.1:PORT"), or (None, None) without rules."""
    rules = session_policy(path)
    if not rules:
        return None, None
    import policyfixture

    def answer(req):
        for cond, act in rules:
            if all(req.get(k) == v for k, v in cond.items()):
                return policyfixture.action(act)
        return policyfixture.action("DUNNO")
    srv = policyfixture.PolicyServer(answer)
    return srv, "inet:127.0.0.1:%d" % srv.port


NS_ENV = "MXGATE_COMPAT_DNS"       # set in the namespaced child (run_with_dns())


def run_with_dns(name, args):
    """Run compat.py ARGS for the one session name in a private network namespace with the
    session's test DNS (dnsfixture): the child prints the session's result lines; returns its
    exit status."""
    import dnsfixture
    env = dict(os.environ)
    env[NS_ENV] = name
    cmd = dnsfixture.unshare_command([sys.executable, os.path.abspath(__file__)] + list(args)
                                     + ["--only", name])
    try:
        return subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, timeout=300).returncode
    except subprocess.TimeoutExpired:
        print("FAIL %s: the namespaced run took longer than 300 s" % name)
        return 1


def inside_dns(name):
    """In run_with_dns()'s child: the namespace and the session's test DNS, started; returns a
    function that stops them."""
    import dnsfixture
    tmp = dnsfixture.setup_namespace()
    dns = dnsfixture.TestDns(**session_dns(os.path.join(SESSIONS, name + ".txt")))
    try:
        dns.start()
    except BaseException:
        dnsfixture.teardown_namespace(tmp)
        raise

    def stop():
        dns.stop()
        dnsfixture.teardown_namespace(tmp)
    return stop


POSTMAP = "/usr/sbin/postmap"


def session_postmaps(path):
    """[(type, name)] from the session's @postmap TYPE:NAME lines."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("@postmap "):
                kind, _, name = line[len("@postmap "):].strip().partition(":")
                out.append((kind, name))
    return out


def build_tables(path, tables):
    """For each @postmap TYPE:NAME of the session: copy data/NAME into the directory tables and
    build the indexed file there with Postfix's postmap (both servers read what postmap
    writes; the source tree stays clean).  Raises OSError or subprocess.CalledProcessError."""
    for kind, name in session_postmaps(path):
        if not os.path.exists(POSTMAP):
            raise OSError("%s: @postmap needs Postfix's %s (sh scripts/deps.sh --test)"
                          % (os.path.basename(path), POSTMAP))
        dst = os.path.join(tables, name)
        shutil.copyfile(os.path.join(SESSIONS, "data", name), dst)
        subprocess.run([POSTMAP, "%s:%s" % (kind, dst)], check=True)
        for n in os.listdir(tables):
            os.chmod(os.path.join(tables, n), 0o644)


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

# Header lines of a delivered message that the dump leaves out: the trace headers each server
# writes itself (Return-Path, Delivered-To and Received have their own lines or differ in ids and
# times; X-Original-To is Postfix's virtual(8) only), and the headers Postfix's cleanup(8) appends
# when the message lacks them (Message-Id, Date, From, To, Resent-*; local_header_rewrite_clients
# matches 127.0.0.1), when the client did not send that very line itself.
TRACE_HEADERS = ("return-path", "delivered-to", "received", "x-original-to")
CLEANUP_ADDED = ("message-id", "date", "from", "to", "resent-message-id", "resent-date",
                 "resent-from")


def sent_lines(steps):
    """The content lines a session sends in @data and @bdat blocks (for delivered())."""
    out = set()
    for step in steps:
        if step[0] in ("data", "bdat"):
            for ln in step[-1]:
                n, colon, v = ln.partition(":")
                if colon:
                    out.add("%s: %s" % (n, v.strip()))
    return out


def delivered(base, before=(), sent=()):
    """Transcript lines for the messages that appeared under base (not in before):
    mailbox, Return-Path, Delivered-To, the other header lines ("H: ", see TRACE_HEADERS and
    CLEANUP_ADDED for the ones left out; sent is what the client sent, sent_lines()) and the
    body after the header block."""
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
        for n, v in headers:
            text = "%s: %s" % (n, v)
            if n.lower() in TRACE_HEADERS:
                continue
            if n.lower() in CLEANUP_ADDED and text.split("\n")[0] not in sent:
                continue
            lines.extend("H: " + ln for ln in text.split("\n"))
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

def record(names, build_args=()):
    if os.geteuid() != 0:
        raise SystemExit("compat --record needs root (postfix-ref starts Postfix)")
    rc = 0
    if not os.environ.get(NS_ENV):
        dns = [n for n in names if session_dns(os.path.join(SESSIONS, n + ".txt"))]
        names = [n for n in names if n not in dns]
        for n in dns:
            rc |= run_with_dns(n, ["--record"] + list(build_args))
        if not names:
            return rc
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
    tables = os.path.join(d, "tables")
    os.mkdir(tables)
    os.chmod(tables, 0o755)
    groups = []
    policies = []
    for name in names:
        build_tables(os.path.join(SESSIONS, name + ".txt"), tables)
        psrv, pspec = start_policy(os.path.join(SESSIONS, name + ".txt"))
        if psrv:
            policies.append(psrv)
        extra = session_main(os.path.join(SESSIONS, name + ".txt"), tables, pspec)
        for g in groups:
            if g[0] == extra:
                g[1].append(name)
                break
        else:
            groups.append((extra, [name]))
    os.makedirs(EXPECTED, exist_ok=True)
    try:
        for extra, group in groups:
            record_group(d, vmail, vmap, pw, extra, group)
    finally:
        for psrv in policies:
            psrv.stop()
    return rc


def queued_files(d):
    """The message files in the recording instance's queue (DIR/queue)."""
    out = []
    for sub in ("maildrop", "incoming", "active", "deferred", "hold"):
        for root, _, files in os.walk(os.path.join(d, "queue", sub)):
            out.extend(os.path.join(root, n) for n in files)
    return out


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
            lines, _ = play(port, steps)
            # Postfix delivers after the 250: wait until qmgr removed every queued message,
            # and until smtpd logged the disconnect.
            deadline = time.monotonic() + 60
            while True:
                with open(maillog, "rb") as f:
                    f.seek(offset)
                    log = f.read().decode("utf-8", "replace").splitlines()
                text = "\n".join(log)
                # Deliveries are done when Postfix's queue is empty: that covers the messages
                # that the replies named, the ones local(8) makes when it forwards for an alias,
                # and not the queue files smtpd abandoned (QUIT, RSET, a reject after the end
                # of data) or that a DISCARD action had cleanup drop.
                done = "disconnect from" in text and not queued_files(d)
                if done or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            if not done:
                print("warning: %s: deliveries or disconnect not logged within 60s" % name)
            transcript = normalize(lines) + delivered(vmail, before, sent_lines(steps))
            with open(os.path.join(EXPECTED, name + ".txt"), "w") as f:
                f.write("\n".join(transcript) + "\n")
            with open(os.path.join(EXPECTED, name + ".log"), "w") as f:
                f.write("\n".join(smtpd_log(log)) + "\n")
            print("recorded %s (%d lines)" % (name, len(transcript)))
            try:
                apply_session_differences(name, transcript, smtpd_log(log))
            except DiffersError as e:
                print("warning: %s: %s" % (name, e))
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
  4. Relaying (mxgate never relays): where a session declares it with @differs/@differs-log,
     Postfix's reply and log lines become mxgate's refusal.
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


class DiffersError(Exception):
    """A session's @differs or @differs-log line does not match Postfix's transcript."""



def step_lines(step):
    """The transcript lines a sending step writes before its replies."""
    kind = step[0]
    if kind == "cmd":
        return ["C: " + step[1]]
    if kind == "pipeline":
        return ["P: " + ln for ln in step[1]]
    if kind == "data":
        return ["D: " + ln for ln in step[1]]
    if kind == "bdat":
        body = "".join(ln + "\r\n" for ln in step[2]).encode()
        return [("B: BDAT %d %s" % (len(body), step[1])).strip()] + ["D: " + ln for ln in step[2]]
    if kind == "send":
        return ["R: " + repr(step[1])[1:]]
    return []


def apply_session_differences(name, lines, log):
    """The session's own declared differences (@differs, @differs-log; sessions/README) applied
    to Postfix's transcript and log lines: (lines, log).  Raises DiffersError when a declared
    Postfix line is not where the session says."""
    path = os.path.join(SESSIONS, name + ".txt")
    steps = parse_session(path)
    reply, log_edits = session_differs(path)
    lines = list(lines)
    i = 0
    for idx, step in enumerate(steps):
        want = step_lines(step)
        if not want:
            continue
        while i < len(lines) and lines[i].startswith("S: "):
            i += 1
        if lines[i:i + len(want)] != want:
            if idx in reply:
                raise DiffersError("the transcript ends before the step of @differs %r"
                                   % reply[idx][0][0])
            break   # the server closed before this step: nothing further to map
        i += len(want)
        j = i
        while j < len(lines) and lines[j].startswith("S: "):
            j += 1
        for old, new in reply.get(idx, ()):
            for k in range(i, j):
                if lines[k] == "S: " + old:
                    lines[k] = "S: " + new
                    break
            else:
                raise DiffersError("@differs %r: Postfix did not reply that to %r"
                                   % (old, want[0]))
        i = j
    log = list(log)
    for kind, old, new in log_edits:
        try:
            k = log.index(old)
        except ValueError:
            raise DiffersError("@differs-log %r: no such line in Postfix's log" % old)
        if kind == "+>":
            log.insert(k + 1, new)
        elif new:
            log[k] = new
        else:
            del log[k]
    return lines, log


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
        expected = f.read().splitlines()
    try:
        with open(os.path.join(EXPECTED, name + ".log"), encoding="utf-8") as f:
            expected_log = f.read().splitlines()
    except FileNotFoundError:
        expected_log = ["(no expected/%s.log: run compat.py --record)" % name]
    try:
        expected, expected_log = apply_session_differences(name, expected, expected_log)
    except DiffersError as e:
        expected = expected + ["(session %s: %s)" % (name, e)]
    res.expected = apply_differences(expected)
    res.expected_log = apply_log_differences(expected_log)
    path = os.path.join(SESSIONS, name + ".txt")
    tables = None
    if session_postmaps(path):
        tables = tempfile.mkdtemp(prefix="mxgate-compat-tables-")
        os.chmod(tables, 0o755)
        try:
            build_tables(path, tables)
        except (OSError, subprocess.CalledProcessError) as e:
            shutil.rmtree(tables, ignore_errors=True)
            raise harness.ServerError("@postmap: %s" % e)
    psrv, pspec = start_policy(path)
    params = dict(COMMON_PARAMS)
    params.update(session_main(path, tables, pspec))
    try:
        srv = harness.Server(main=params, virtual_users=VIRTUAL_USERS, as_user=as_user, env=env)
    except BaseException:
        if psrv:
            psrv.stop()
        raise
    res.server = srv
    try:
        srv.start()
        lines, _ = play(srv.port, steps)
        srv.wait_log(r"/smtpd\[\d+\]: disconnect from ", timeout=3)
        res.actual = normalize(lines) + delivered(srv.vmail, (), sent_lines(steps))
        res.actual_log = smtpd_log(srv.log_lines())
    finally:
        res.problems = srv.stop()
        if psrv:
            psrv.stop()
        if tables:
            shutil.rmtree(tables, ignore_errors=True)
    return res


def diff_text(name, expected, actual):
    return "".join(difflib.unified_diff([ln + "\n" for ln in expected], [ln + "\n" for ln in actual],
                                        "expected/%s (Postfix + deliberate differences)" % name,
                                        "mxgate", n=3))


def check(names, as_user=None, build_args=(), summary=True):
    failed = []
    for name in names:
        if session_dns(os.path.join(SESSIONS, name + ".txt")) and not os.environ.get(NS_ENV):
            args = list(build_args) + (["--as-user", as_user] if as_user else [])
            if run_with_dns(name, args) != 0:
                failed.append(name)
            continue
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
    if summary:
        print(SUBSTITUTIONS, end="")
        print("compat: %d sessions, %d identical, %d different"
              % (len(names), len(names) - len(failed), len(failed)))
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--record", action="store_true", help="record expected/ against Postfix (root)")
    ap.add_argument("--build", default=None, help="build directory (default: build)")
    ap.add_argument("-k", dest="pattern", default=None, help="only sessions whose name contains this")
    ap.add_argument("--as-user", default=None, help="diff mode as root: run mxgate as this user")
    ap.add_argument("--only", default=None, help=argparse.SUPPRESS)   # run_with_dns()'s child
    a = ap.parse_args()
    build_args = []
    if a.build:
        os.environ["MXGATE_BUILD"] = os.path.abspath(a.build)
        build_args = ["--build", os.path.abspath(a.build)]
    if a.only:
        if os.environ.get(NS_ENV) != a.only:
            raise SystemExit("--only is compat.py's own (run_with_dns)")
        stop = inside_dns(a.only)
        try:
            if a.record:
                return record([a.only])
            return check([a.only], as_user=a.as_user, summary=False)
        finally:
            stop()
    names = session_names(a.pattern)
    if not names:
        raise SystemExit("no sessions match")
    if a.record:
        return record(names, build_args)
    return check(names, as_user=a.as_user, build_args=build_args)


if __name__ == "__main__":
    sys.exit(main())
