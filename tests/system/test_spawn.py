"""master.cf spawn services (spawn(8)) behind check_policy_service, compared with Postfix 3.7
live where Postfix shows it: the same master.cf spawn line, the same small policy scripts (run
as nobody), the same session; the replies, smtpd's lines and spawn's warnings.  Then what only
mxgate can show from the outside: maxproc, an inet spawn service, and the refusal to change
users when not started as root.  Finally Debian's policyd-spf through spawn, with SPF records in
a private test DNS (dnsfixture).
"""

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import dnsfixture
import harness
import postfixref
import test_policy

# A policy server in sh: answers every request with its own identity.
WHOAMI = r"""#!/bin/sh
while IFS= read -r line; do
  case "$line" in
    recipient=*) r=${line#recipient=} ;;
    "") echo "action=REJECT $r: uid=$(id -u) gid=$(id -g) groups=$(id -G) path=$PATH"; echo ;;
  esac
done
"""

# Never answers (the time limit kills it).
SILENT = """#!/bin/sh
read -r line
exec sleep 60
"""

# Answers once, then exits 3.
ONCE = """#!/bin/sh
while IFS= read -r line; do
  [ -z "$line" ] && { echo "action=DUNNO"; echo; exit 3; }
done
"""

# Answers DUNNO to every request, forever.
DUNNO = """#!/bin/sh
while IFS= read -r line; do
  [ -z "$line" ] && { echo "action=DUNNO"; echo; }
done
"""


def spawn_lines(text):
    """spawn's warnings, pids as N."""
    out = []
    for line in text.splitlines():
        m = re.search(r"/spawn\[\d+\]: (.*)$", line)
        if m:
            out.append(re.sub(r"process id \d+", "process id N", m.group(1)))
    return sorted(out)


class SpawnCase(test_policy.PolicyCase):
    ref_name = "policyspawn"

    def setUp(self):
        super().setUp()
        self.scripts = tempfile.mkdtemp(prefix="mxgate-spawn-")
        os.chmod(self.scripts, 0o755)
        self.addCleanup(shutil.rmtree, self.scripts, True)

    def script(self, name, text):
        p = os.path.join(self.scripts, name)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, 0o755)
        return p

    def queue_dir(self):
        q = tempfile.mkdtemp(prefix="mxgate-spawnq-")
        os.chmod(q, 0o755)
        self.addCleanup(shutil.rmtree, q, True)
        return q

    def both(self, master_line, rcpts=("alice@virt.test",), **extra):
        """Postfix then mxgate with the same spawn line: (replies, smtpd lines, spawn lines)."""
        out = []
        restr = "reject_unauth_destination, check_policy_service unix:private/pol"
        for who in ("postfix", "mxgate"):
            p = self.params(restr, **extra)
            if who == "postfix":
                ref = self.reference()
                ref.start(p, master_extra=[master_line])
                port, logf = ref.port, os.path.join(ref.dir, "maillog")
            else:
                srv = self.start_server(
                    main=dict(p, queue_directory=self.queue_dir()),
                    master=["127.0.0.1:{port} inet n - n - - smtpd", master_line])
                port, logf = srv.port, srv.maillog
            replies = test_policy.session(port, rcpts)
            time.sleep(1.0)      # spawn's warnings come when its command ends
            with open(logf, errors="replace") as f:
                text = f.read()
            if who == "postfix":
                ref.stop()
            out.append((replies, test_policy.smtpd_lines(text), spawn_lines(text)))
        return out


class SpawnAsPostfixTest(SpawnCase):
    def test_runs_as_user_as_postfix(self):
        s = self.script("whoami", WHOAMI)
        (pr, pl, ps), (mr, ml, ms) = self.both(
            "pol unix - n n - 0 spawn user=nobody argv=%s" % s,
            rcpts=("alice@virt.test", "bob@virt.test"))
        self.assertEqual(mr, pr)
        self.assertEqual(ml, pl)
        nobody = pwd.getpwnam("nobody")
        self.assertIn("uid=%d gid=%d groups=%d path=/usr/bin:/bin" %
                      (nobody.pw_uid, nobody.pw_gid, nobody.pw_gid), mr[1])

    def test_time_limit(self):
        """Postfix 3.7 logs the time limit warning but cannot kill the command (its spawn runs
        with mail_owner's effective uid: kill() fails with EPERM), so smtpd waits for its own
        timeout.  mxgate logs the same warning and kills the command (README)."""
        s = self.script("silent", SILENT)
        (pr, pl, ps), (mr, ml, ms) = self.both(
            "pol unix - n n - 0 spawn user=nobody argv=%s" % s,
            pol_time_limit="1s", smtpd_policy_service_timeout="10s")
        self.assertEqual(mr, pr)
        want = "warning: %s: process id N: command time limit exceeded" % s
        self.assertEqual(ps, [want, want])
        self.assertEqual(ms, sorted([want, want] + ["warning: command %s killed by signal 9"
                                                    % s] * 2))
        # killed: the server hung up, no 10 s timeout
        self.assertEqual(ml[:-1], ["warning: problem talking to server private/pol: "
                                   "Connection reset by peer"])
        self.assertEqual(pl[:-1], ["warning: problem talking to server private/pol: "
                                   "Connection timed out"] * 2)
        self.assertEqual(ml[-1], pl[-1])

    def test_exit_status_as_postfix(self):
        s = self.script("once", ONCE)
        (pr, pl, ps), (mr, ml, ms) = self.both(
            "pol unix - n n - 0 spawn user=nobody argv=%s" % s,
            rcpts=("alice@virt.test", "bob@virt.test"))
        self.assertEqual(mr, pr)
        self.assertEqual(ml, pl)
        self.assertEqual(ms, ps)
        self.assertIn("warning: command %s exit status 3" % s, ms)

    def test_missing_command_as_postfix(self):
        missing = os.path.join(self.scripts, "no-such-program")
        (pr, pl, ps), (mr, ml, ms) = self.both(
            "pol unix - n n - 0 spawn user=nobody argv=%s" % missing)
        self.assertEqual(mr, pr)
        self.assertEqual(ml, pl)
        self.assertEqual(ms, ps)


class SpawnTest(SpawnCase):
    def count_procs(self, path):
        n = 0
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    if path.encode() in f.read():
                        n += 1
            except OSError:
                pass
        return n

    def test_maxproc_and_one_process_per_connection(self):
        s = self.script("dunno", DUNNO)
        q = self.queue_dir()
        srv = self.start_server(main=self.params("reject_unauth_destination",
                                                 queue_directory=q),
                                master=["127.0.0.1:{port} inet n - n - - smtpd",
                                        "pol unix - n n - 2 spawn user=nobody argv=%s" % s])
        path = os.path.join(q, "private", "pol")
        st = os.stat(os.path.join(q, "private"))
        self.assertEqual(st.st_mode & 0o777, 0o700)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o666)
        conns = []
        for _ in range(3):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.settimeout(10)
            c.connect(path)
            conns.append(c)
            self.addCleanup(c.close)
        def answer(c):
            got = b""
            while not got.endswith(b"\n\n"):
                data = c.recv(100)
                if not data:
                    break
                got += data
            return got
        for c in conns[:2]:
            c.sendall(b"request=smtpd_access_policy\n\n")
            self.assertEqual(answer(c), b"action=DUNNO\n\n")
        # the third waits in the backlog: maxproc 2
        conns[2].sendall(b"request=smtpd_access_policy\n\n")
        conns[2].settimeout(1.0)
        with self.assertRaises(socket.timeout):
            conns[2].recv(100)
        self.assertEqual(self.count_procs(s), 2)
        conns[0].close()
        conns[2].settimeout(10)
        self.assertEqual(answer(conns[2]), b"action=DUNNO\n\n")
        deadline = time.time() + 5
        while self.count_procs(s) != 2 and time.time() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.count_procs(s), 2)
        for c in conns:
            c.close()
        srv.stop()
        deadline = time.time() + 5
        while self.count_procs(s) and time.time() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.count_procs(s), 0, "commands left after the daemon stopped")

    def test_inet_spawn(self):
        s = self.script("whoami", WHOAMI)
        port = harness.free_port()
        srv = self.start_server(
            main=self.params("reject_unauth_destination, "
                             "check_policy_service inet:127.0.0.1:%d" % port),
            master=["127.0.0.1:{port} inet n - n - - smtpd",
                    "127.0.0.1:%d inet n n n - 0 spawn user=nobody argv=%s" % (port, s)])
        replies = test_policy.session(srv.port, ["alice@virt.test"])
        self.assertRegex(replies[1], r"^RCPT alice@virt.test: 554 5\.7\.1 <alice@virt.test>: "
                         r"Recipient address rejected: alice@virt.test: uid=%d " %
                         pwd.getpwnam("nobody").pw_uid)

    def test_reload_keeps_spawn_services_and_says_so(self):
        s = self.script("whoami", WHOAMI)
        q = self.queue_dir()
        srv = self.start_server(
            main=self.params("reject_unauth_destination, check_policy_service "
                             "unix:private/pol", queue_directory=q),
            master=["127.0.0.1:{port} inet n - n - - smtpd",
                    "pol unix - n n - 0 spawn user=nobody argv=%s" % s])
        with open(os.path.join(srv.dir, "master.cf"), "w") as f:
            f.write("127.0.0.1:%d inet n - n - - smtpd\n"
                    "pol unix - n n - 0 spawn user=nobody argv=/bin/false\n" % srv.port)
        srv.signal(signal.SIGHUP)
        srv.expect_log(r"reload -- version", timeout=10)
        self.assertTrue(srv.find_log(r"warning: reload: the spawn services in master\.cf "
                                     r"changed; they keep running as they were until mxgate "
                                     r"is restarted") is not None)
        replies = test_policy.session(srv.port, ["alice@virt.test"])
        self.assertIn("uid=%d" % pwd.getpwnam("nobody").pw_uid, replies[1])

    def test_check_names_spawn_problems(self):
        d = tempfile.mkdtemp(prefix="mxgate-spawn-check-")
        self.addCleanup(shutil.rmtree, d, True)
        with open(os.path.join(d, "main.cf"), "w") as f:
            f.write("myhostname = mx.example.test\n")
        with open(os.path.join(d, "master.cf"), "w") as f:
            f.write("127.0.0.1:2525 inet n - n - - smtpd\n"
                    "a unix - n n - 0 spawn user=root argv=/bin/true\n"
                    "b unix - - n - 0 spawn user=nobody argv=/bin/true\n"
                    "c fifo - n n - 0 spawn user=nobody argv=/bin/true\n"
                    "d unix - n n - 0 spawn -z user=nobody argv=/bin/true\n"
                    "e unix - n n - 0 spawn user=nobody\n")
        rc, _, err = self.mxgate("check", "-c", d)
        self.assertEqual(rc, 1)
        m = os.path.join(d, "master.cf")
        for line, text in ((2, 'service "a": request to deliver as root'),
                           (3, 'service "b": spawn must run privileged'),
                           (4, 'service "c": spawn over "fifo" is not implemented'),
                           (5, 'service "d": spawn option "-z" is not implemented'),
                           (6, 'service "e": missing argv= attribute')):
            self.assertIn("mxgate: error: %s, line %d: %s" % (m, line, text), err)

    def test_not_root_cannot_change_users(self):
        """Started as nobody, a spawn service for another user is refused, and one for
        nobody itself runs as nobody."""
        s = self.script("whoami", WHOAMI)
        q = self.queue_dir()
        nobody = pwd.getpwnam("nobody")
        os.chown(q, nobody.pw_uid, nobody.pw_gid)
        srv = harness.Server(main=self.params("reject_unauth_destination", queue_directory=q),
                             master=["127.0.0.1:{port} inet n - n - - smtpd",
                                     "pol unix - n n - 0 spawn user=daemon argv=%s" % s],
                             virtual_users=[], as_user="nobody")
        self.addCleanup(srv.cleanup)
        with self.assertRaises(harness.ServerError):
            srv.start()
        self.assertIn("service pol: user=daemon: mxgate runs as uid %d, not as root, and "
                      "cannot run commands as another user" % nobody.pw_uid,
                      "\n".join(srv.log_lines()) + srv.stderr())
        srv2 = self.start_server(
            main=self.params("reject_unauth_destination, check_policy_service "
                             "unix:private/pol", queue_directory=q),
            master=["127.0.0.1:{port} inet n - n - - smtpd",
                    "pol unix - n n - 0 spawn user=nobody argv=%s" % s], as_user="nobody")
        replies = test_policy.session(srv2.port, ["alice@virt.test"])
        self.assertIn("uid=%d" % nobody.pw_uid, replies[1])


# ---- policyd-spf through spawn, with SPF records in a private DNS ----

POLICYD_SPF = "/usr/bin/policyd-spf"


class SpfSpawnTest(dnsfixture.PrivateDnsCase, SpawnCase):
    ns_timeout = 240

    def spf_conf(self):
        p = os.path.join(self.scripts, "policyd-spf.conf")
        with open(p, "w") as f:
            # Debian's defaults but for skip_addresses (which skips 127.0.0.0/8)
            f.write("debugLevel = 1\nTestOnly = 1\nHELO_reject = Fail\n"
                    "Mail_From_reject = Fail\nPermError_reject = False\n"
                    "TempError_Defer = False\nskip_addresses = 192.0.2.255\n")
        os.chmod(p, 0o644)
        return p

    def test_policyd_spf_as_postfix(self):
        if not os.path.exists(POLICYD_SPF):
            self.fail("policyd-spf is not installed: sh scripts/deps.sh --test")
        self.start_rbldnsd({
            "spf.test": ("generic", [
                "pass TXT \"v=spf1 ip4:127.0.0.1 -all\"",
                "fail TXT \"v=spf1 ip4:192.0.2.1 -all\"",
            ]),
        })
        conf = self.spf_conf()
        line = "pol unix - n n - 0 spawn user=nobody argv=%s %s" % (POLICYD_SPF, conf)
        results = []
        for sender in ("a@pass.spf.test", "a@fail.spf.test"):
            self.ref = None
            out = []
            restr = "reject_unauth_destination, check_policy_service unix:private/pol"
            for who in ("postfix", "mxgate"):
                p = self.params(restr, smtpd_policy_service_timeout="30s")
                if who == "postfix":
                    ref = self.reference()
                    ref.start(p, master_extra=[line])
                    port = ref.port
                else:
                    srv = self.start_server(main=dict(p, queue_directory=self.queue_dir()),
                                            master=["127.0.0.1:{port} inet n - n - - smtpd",
                                                    line])
                    port = srv.port
                out.append(test_policy.session(port, ["alice@virt.test"],
                                               mail="MAIL FROM:<%s>" % sender))
                if who == "postfix":
                    ref.stop()
                else:
                    srv.stop()
            self.assertEqual(out[1], out[0], sender)
            results.append(out[1])
        self.assertEqual(results[0][1], "RCPT alice@virt.test: 250 2.1.5 Ok")
        self.assertRegex(results[1][1], r"^RCPT alice@virt.test: 550 5\.7\.23 "
                         r"<alice@virt.test>: Recipient address rejected: Message rejected due "
                         r"to: SPF fail - not authorized")


if __name__ == "__main__":
    import unittest
    unittest.main()
