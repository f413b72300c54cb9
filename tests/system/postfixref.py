"""postfixref: the same RCPT session against Postfix 3.7 and mxgate, live, in one test.

    Reference(name)         Postfix from a fixed folder /tmp/mxgate-ref-<name> (fixed:
                            scripts/postfix-ref lists it in /etc/postfix/main.cf), with
                            virtual mailboxes owned by nobody; start(params) writes main.cf
                            and master.cf and waits until it listens; stop() (also at
                            cleanup).  Root only: a test that is not root fails.
    rcpt_replies(port, rcpts)
                            EHLO, MAIL FROM, one RCPT TO per address, QUIT: the MAIL reply
                            and "RCPT <addr>: <reply>" for each (banner and EHLO differ by
                            design: DESIGN.md).
    RcptCase                assert_rcpt_as_postfix(params, rcpts): Postfix and a started
                            mxgate (same main.cf, their own Maildir bases) give the same
                            replies; returns them.
"""

import os
import pwd
import shutil
import subprocess

import harness

POSTFIX_REF = os.path.join(harness.REPO, "scripts", "postfix-ref")


class Reference:
    def __init__(self, name):
        if os.geteuid() != 0:
            raise AssertionError("the Postfix reference needs root (scripts/postfix-ref)")
        self.dir = "/tmp/mxgate-ref-" + name
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        pw = pwd.getpwnam("nobody")
        self.vmail = os.path.join(self.dir, "vmail")
        os.mkdir(self.vmail)
        os.chown(self.vmail, pw.pw_uid, pw.pw_gid)
        self.ids = (pw.pw_uid, pw.pw_gid)
        self.port = harness.free_port()

    def start(self, params, master_extra=()):
        """master_extra: more master.cf lines (spawn services, ...) after the smtpd one."""
        p = dict(params)
        p.setdefault("virtual_mailbox_base", self.vmail)
        p.setdefault("virtual_uid_maps", "static:%d" % self.ids[0])
        p.setdefault("virtual_gid_maps", "static:%d" % self.ids[1])
        with open(os.path.join(self.dir, "main.cf"), "w") as f:
            f.write(harness.format_main_cf(p))
        with open(os.path.join(self.dir, "master.cf"), "w") as f:
            f.write("127.0.0.1:%d inet n - n - - smtpd\n" % self.port)
            for line in master_extra:
                f.write(line + "\n")
        r = subprocess.run(["sh", POSTFIX_REF, "start", self.dir], capture_output=True,
                           text=True, timeout=60)
        if r.returncode != 0:
            raise AssertionError("postfix-ref start failed: %s%s" % (r.stdout, r.stderr))
        if not harness.wait_ports_listening([self.port], 30):
            raise AssertionError("Postfix is not listening (see %s/maillog)" % self.dir)

    def stop(self):
        if os.path.isdir(self.dir):
            subprocess.run(["sh", POSTFIX_REF, "stop", self.dir], capture_output=True,
                           timeout=60)


def rcpt_replies(port, rcpts):
    out = []
    with harness.Client(port, timeout=30) as c:
        c.read_reply()
        c.cmd("EHLO client.example")
        out.append(c.cmd("MAIL FROM:<sender@client.example>").text)
        for r in rcpts:
            out.append("RCPT %s: %s" % (r, c.cmd("RCPT TO:<%s>" % r).text))
        c.cmd("QUIT")
    return out


class RcptCase(harness.MxTestCase):
    maxDiff = None
    ref_name = "rcpt"

    def setUp(self):
        super().setUp()
        self.ref = Reference(self.ref_name)
        self.addCleanup(self.ref.stop)

    def main_params(self, **params):
        return dict(harness.BASE_MAIN, myhostname="mx.example.test", compatibility_level="3.6",
                    **params)

    def assert_rcpt_as_postfix(self, params, rcpts, ref_started=False, srv=None):
        if not ref_started:
            self.ref.start(params)
        if srv is None:
            srv = self.start_server(main=params, virtual_users=[])
        want = rcpt_replies(self.ref.port, rcpts)
        got = rcpt_replies(srv.port, rcpts)
        self.assertEqual(got, want)
        return got
