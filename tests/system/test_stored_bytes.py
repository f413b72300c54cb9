"""test_stored_bytes: what mxgate stores is what Postfix 3.7 stores, byte for byte.

A corpus goes through Postfix 3.7 (tests/system/postfixref.py: smtpd, cleanup, qmgr and
virtual(8) into a Maildir) and through mxgate with the same main.cf, one message per SMTP
transaction from 127.0.0.1, and the two stored files are compared byte for byte.  Normalized:
the queue id and the time in the Received: header, and in the Message-Id: and Date: headers
that cleanup(8) adds when the message has none (the client, 127.0.0.1, is one of the
inet_interfaces addresses, so local_header_rewrite_clients = permit_inet_interfaces matches;
those headers carry the queue id and the time too).  Nothing else.

The corpus:
  * tests/system/corpus/*.txt: hand-made edge cases (dropped headers, header_size_limit,
    bare CR, 8-bit, folding, no header, header only, long lines, MIME, header_checks and
    body_checks actions that store something: WARN, IGNORE, REPLACE, PREPEND);
  * Debian's spamassassin sample messages (/usr/share/doc/spamassassin/examples/*.txt,
    package spamassassin);
  * Python's email test messages (test/test_email/data/msg_*.txt of the running Python, or
    Debian's libpython3.X-testsuite).
Every source must be there: a missing one fails the test (run `apt-get install
spamassassin`).

Postfix gets mail_name = Postfix, and so does mxgate here: the same main.cf.  The qmgr log
line of each message ("from=<...>, size=N, nrcpt=N (queue active)") must be the same too:
size= is the size of the queue file's content, which cleanup computes.
"""

import glob
import os
import re
import socket
import time
import unittest

import harness
import postfixref

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
SPAMASSASSIN = "/usr/share/doc/spamassassin/examples"

HEADER_CHECKS = """\
/^Subject: .*WARNME/ WARN warned
/^X-Drop-Me:/ IGNORE
/^X-Replace-Me:/ REPLACE X-Replaced: yes
/^X-Prepend-Me:/ PREPEND X-Prepended: yes
"""
BODY_CHECKS = """\
/^BODY-IGNORE-ME$/ IGNORE
/^BODY-REPLACE-ME$/ REPLACE body replaced
/^BODY-PREPEND-ME$/ PREPEND prepended body line
"""


def python_email_data():
    try:
        import test.test_email
        d = os.path.join(os.path.dirname(test.test_email.__file__), "data")
    except ImportError:
        d = None
    if not d or not os.path.isdir(d):
        for cand in sorted(glob.glob("/usr/lib/python3*/test/test_email/data")):
            d = cand
    return sorted(glob.glob(os.path.join(d, "msg_*.txt"))) if d else []


def corpus():
    return (sorted(glob.glob(os.path.join(CORPUS, "*.txt")))
            + sorted(glob.glob(os.path.join(SPAMASSASSIN, "*.txt")))
            + python_email_data())


def wire(content):
    """The message as DATA sends it: CRLF line ends, dot-stuffed, the final dot."""
    if content and not content.endswith(b"\n"):
        content += b"\n"
    out = []
    for line in content.split(b"\n")[:-1] if content else []:
        if line.endswith(b"\r"):
            line = line[:-1]
        if line.startswith(b"."):
            line = b"." + line
        out.append(line + b"\r\n")
    return b"".join(out) + b".\r\n"


def send(port, content, rcpt="alice@virt.test"):
    """One transaction; returns the reply to the end of the data."""
    with harness.Client(port, timeout=60) as c:
        c.read_reply()
        c.cmd("EHLO client.example")
        c.cmd("MAIL FROM:<sender@client.example>")
        r = c.cmd("RCPT TO:<%s>" % rcpt)
        if r.code != 250:
            return r.text
        c.cmd("DATA")
        c.send(wire(content))
        r = c.read_reply(timeout=60)
        c.cmd("QUIT")
        return r.text


def qmgr_line(maillog, qid, timeout=10.0):
    """The qmgr line "<qid>: from=<...>, size=N, nrcpt=N (queue active)", without the prefix."""
    pat = re.compile(r"/qmgr\[\d+\]: (%s: from=<[^>]*>, size=\d+, nrcpt=\d+ \(queue active\))"
                     % re.escape(qid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(maillog, errors="replace") as f:
            for line in f:
                m = pat.search(line)
                if m:
                    return m.group(1).replace(qid, "QUEUEID")
        time.sleep(0.05)
    return "(no qmgr line for %s)" % qid


def wait_new(base, before, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = set(harness.maildir_files(base, "new"))
        new = sorted(now - before)
        if new:
            time.sleep(0.05)
            return new
        time.sleep(0.05)
    return []


DATE = rb"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [ 123]\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d [+-]\d{4} \([A-Za-z0-9+-]+\)"


def normalize(data):
    """The Received: header's queue id and time, and the added Message-Id:/Date: headers."""
    head, sep, body = data.partition(b"\n\n")
    lines = head.split(b"\n")
    out = []
    in_received = False
    for ln in lines:
        if ln.startswith(b"Received: from client.example "):
            in_received = True
        elif not ln.startswith((b"\t", b" ")):
            in_received = False
        if in_received:
            ln = re.sub(rb"\bid [0-9A-F]{6,}", b"id QUEUEID", ln)
            ln = re.sub(DATE, b"DATE", ln)
        ln = re.sub(rb"^((Resent-)?Message-Id): <\d{14}\.[0-9A-F]{6,}@mx\.example\.test>$",
                    rb"\1: <TIME.QUEUEID@mx.example.test>", ln)
        ln = re.sub(rb"^((Resent-)?Date): " + DATE + rb"$", rb"\1: DATE", ln)
        out.append(ln)
    return b"\n".join(out) + sep + body


class StoredBytesTest(harness.MxTestCase):
    maxDiff = None

    def params(self, ref):
        return dict(harness.BASE_MAIN, myhostname="mx.example.test", compatibility_level="3.6",
                    mail_name="Postfix", smtpd_forbid_bare_newline="normalize",
                    message_size_limit="10240000",
                    header_checks="regexp:%s/header_checks" % ref,
                    body_checks="regexp:%s/body_checks" % ref)

    def test_corpus_as_postfix(self):
        msgs = corpus()
        names = [os.path.basename(m) for m in msgs]
        self.assertTrue(any(n.startswith("msg_") for n in names),
                        "Python's email test messages are missing")
        self.assertTrue(os.path.isfile(os.path.join(SPAMASSASSIN, "sample-spam.txt")),
                        "spamassassin's sample messages are missing (apt-get install "
                        "spamassassin)")
        ref = postfixref.Reference("cleanup-corpus")
        self.addCleanup(ref.stop)
        for name, text in (("header_checks", HEADER_CHECKS), ("body_checks", BODY_CHECKS)):
            with open(os.path.join(ref.dir, name), "w") as f:
                f.write(text)
        params = self.params(ref.dir)
        pf = dict(params)
        pf["virtual_mailbox_domains"] = "virt.test"
        pf["virtual_mailbox_maps"] = "texthash:%s/vmailbox" % ref.dir
        with open(os.path.join(ref.dir, "vmailbox"), "w") as f:
            f.write("alice@virt.test alice/\n")
        ref.start(pf)
        srv = self.start_server(main=params, virtual_users=["alice"])
        failures = []
        for path in msgs:
            with open(path, "rb") as f:
                content = f.read()
            results = []
            for port, base in ((ref.port, ref.vmail), (srv.port, srv.vmail)):
                before = set(harness.maildir_files(base, "new"))
                reply = send(port, content)
                new = wait_new(base, before) if reply.startswith("250") else []
                data = b""
                if len(new) == 1:
                    with open(new[0], "rb") as f:
                        data = f.read()
                qmgr = ""
                if " queued as " in reply:
                    qmgr = qmgr_line(os.path.join(ref.dir, "maillog") if port == ref.port
                                     else srv.maillog, reply.split(" queued as ")[1].strip())
                results.append((reply.split(" queued as")[0], len(new), normalize(data), qmgr))
            if results[0] != results[1]:
                failures.append((os.path.basename(path), results[0], results[1]))
        report = []
        for name, want, got in failures:
            report.append("%s: Postfix %r (%d files), mxgate %r (%d files)" % (
                name, want[0], want[1], got[0], got[1]))
            if want[3] != got[3]:
                report.append("  Postfix: %s" % want[3])
                report.append("  mxgate:  %s" % got[3])
            wl, gl = want[2].split(b"\n"), got[2].split(b"\n")
            for i in range(max(len(wl), len(gl))):
                a = wl[i] if i < len(wl) else b"(none)"
                b = gl[i] if i < len(gl) else b"(none)"
                if a != b:
                    report.append("  line %d: Postfix %r" % (i + 1, a[:200]))
                    report.append("  line %d: mxgate  %r" % (i + 1, b[:200]))
                    break
        self.assertEqual(report, [], "\n".join(["%d of %d messages differ" % (
            len(failures), len(msgs))] + report))


if __name__ == "__main__":
    unittest.main()
