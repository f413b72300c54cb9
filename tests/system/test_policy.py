"""check_policy_service: the requests, the actions, the failures and the connections, each
compared with Postfix 3.7 live (postfixref.Reference) where Postfix shows them: the same policy
server (policyfixture.PolicyServer, one fresh instance per daemon) behind both, the same SMTP
session, the same replies and the same smtpd warning/reject log lines.  Then a real Debian
postgrey greylisting both ways.
"""

import os
import re
import shutil
import subprocess
import tempfile
import time

import harness
import policyfixture
import postfixref

# Attributes whose values differ between any two runs (ports, ids, times).
VOLATILE = {"client_port", "server_port", "instance", "queue_id"}


def smtpd_lines(text):
    """smtpd's warning and reject lines, without the syslog prefix, queue ids as QID."""
    out = []
    for line in text.splitlines():
        m = re.search(r"/smtpd\[\d+\]: (.*)$", line)
        if not m:
            continue
        msg = m.group(1)
        if not (msg.startswith("warning:") or ": reject:" in msg or ": reject_warning:" in msg):
            continue
        msg = re.sub(r"^[0-9A-F]{10,12}: ", "QID: ", msg)
        msg = msg.replace("NOQUEUE: ", "QID: ")
        out.append(msg)
    return out


def session(port, rcpts, data=False, mail="MAIL FROM:<sender@client.example> SIZE=4321"):
    out = []
    with harness.Client(port, timeout=60) as c:
        c.read_reply()
        c.cmd("EHLO client.example")
        out.append(c.cmd(mail).text)
        for r in rcpts:
            out.append("RCPT %s: %s" % (r, c.cmd("RCPT TO:<%s>" % r).text))
        if data:
            r = c.cmd("DATA")
            out.append("DATA: " + r.text)
            if r.code == 354:
                c.send(b"Subject: t\r\n\r\nbody\r\n.\r\n")
                out.append("EOD: " + re.sub(r"queued as \w+", "queued as QID",
                                            c.read_reply().text))
        c.cmd("QUIT")
    return out


class PolicyCase(harness.MxTestCase):
    maxDiff = None
    ref_name = "policyhelper"

    def setUp(self):
        super().setUp()
        self.ref = None

    def reference(self):
        if self.ref is None:
            self.ref = postfixref.Reference(self.ref_name)
            self.addCleanup(self.ref.stop)
        return self.ref

    def vmailbox(self):
        """A virtual mailbox map both daemons read: alice and bob at virt.test."""
        if getattr(self, "_vmap", None) is None:
            d = tempfile.mkdtemp(prefix="mxgate-policy-vmap-")
            os.chmod(d, 0o755)
            self.addCleanup(shutil.rmtree, d, True)
            self._vmap = os.path.join(d, "vmailbox")
            with open(self._vmap, "w") as f:
                f.write("".join("%s@virt.test %s/\n" % (u, u) for u in
                                ("alice", "bob", "a", "b", "c", "d", "e", "f", "g", "h")))
            os.chmod(self._vmap, 0o644)
        return self._vmap

    def params(self, restrictions, **extra):
        p = dict(harness.BASE_MAIN, myhostname="mx.example.test", compatibility_level="3.6",
                 smtpd_recipient_restrictions=restrictions,
                 virtual_mailbox_domains="virt.test",
                 virtual_mailbox_maps="texthash:" + self.vmailbox())
        p.update(extra)
        return p

    def start_server(self, **kw):
        kw.setdefault("virtual_users", [])
        return super().start_server(**kw)

    def policy_server(self, answer, path=None):
        ps = policyfixture.PolicyServer(answer, path=path)
        self.addCleanup(ps.stop)
        return ps

    def run_both(self, answer, restrictions, rcpts=("alice@virt.test",), spec=None,
                 data=False, **extra):
        """Postfix, then mxgate, each with a fresh policy server: (replies, smtpd lines,
        server) for each, in that order.  restrictions has "{policy}" for the server."""
        results = []
        for who in ("postfix", "mxgate"):
            ps = self.policy_server(answer) if answer is not None else None
            s = spec or "inet:127.0.0.1:%d" % ps.port
            p = self.params(restrictions.replace("{policy}", s),
                            **{k: v.replace("{policy}", s) for k, v in extra.items()})
            if who == "postfix":
                ref = self.reference()
                ref.start(p)
                port, logf = ref.port, os.path.join(ref.dir, "maillog")
                skip = os.path.getsize(logf) if os.path.exists(logf) else 0
            else:
                srv = self.start_server(main=p)
                port, logf, skip = srv.port, srv.maillog, 0
            replies = session(port, rcpts, data=data)
            time.sleep(0.3)
            with open(logf, errors="replace") as f:
                f.seek(skip)
                lines = smtpd_lines(f.read())
            if who == "postfix":
                self.ref.stop()
            ep = s.strip("{} ").split(",")[0].split(":", 1)[-1]
            lines = [l.replace(s, "SERVER").replace(ep, "ENDPOINT") for l in lines]
            results.append((replies, lines, ps))
        return results

    def assert_as_postfix(self, answer, restrictions, **kw):
        (pr, pl, pps), (mr, ml, mps) = self.run_both(answer, restrictions, **kw)
        self.assertEqual(mr, pr)
        self.assertEqual(ml, pl)
        return mr, ml, mps


def port_spec(ps):
    return "127.0.0.1:%d" % ps.port


class PolicyRequestTest(PolicyCase):
    def test_requests_as_postfix(self):
        """Every attribute Postfix 3.7 sends, in its order, at RCPT, DATA and END-OF-MESSAGE."""
        restr = "reject_unauth_destination, check_policy_service {policy}"
        (pr, _, pps), (mr, _, mps) = self.run_both(
            lambda r: policyfixture.action("DUNNO"), restr,
            rcpts=("alice@virt.test", "bob@virt.test"), data=True,
            smtpd_data_restrictions="check_policy_service {policy}",
            smtpd_end_of_data_restrictions="check_policy_service {policy}",
            smtpd_policy_service_policy_context="ctx1")
        self.assertEqual(mr, pr)
        self.assertEqual(len(mps.requests), 4)
        self.assertEqual(len(pps.requests), len(mps.requests))
        for want, got in zip(pps.requests, mps.requests):
            self.assertEqual(got["_order"], want["_order"])
            for k in want:
                if k in VOLATILE or k == "_order":
                    continue
                if k == "server_address":
                    continue
                self.assertEqual(got.get(k), want[k], "attribute %s at %s" %
                                 (k, want.get("protocol_state")))
            self.assertEqual(bool(got["queue_id"]), bool(want["queue_id"]))
            self.assertTrue(got["client_port"].isdigit())
            self.assertTrue(got["server_port"].isdigit())
            self.assertEqual(got["server_address"], "127.0.0.1")
        # one instance for the whole transaction, as Postfix
        self.assertEqual(len({r["instance"] for r in mps.requests}), 1)
        self.assertNotEqual(mps.requests[0]["instance"], "")
        self.assertEqual([r["size"] for r in mps.requests][:3], ["4321"] * 3)

    def test_instance_changes_per_transaction(self):
        ps = self.policy_server(lambda r: policyfixture.action("DUNNO"))
        srv = self.start_server(main=self.params(
            "reject_unauth_destination, check_policy_service inet:%s" % port_spec(ps)))
        with harness.Client(srv.port) as c:
            c.read_reply()
            c.cmd("EHLO client.example")
            for _ in range(2):
                c.expect(250) if False else None
                self.assertEqual(c.cmd("MAIL FROM:<a@client.example>").code, 250)
                self.assertEqual(c.cmd("RCPT TO:<alice@virt.test>").code, 250)
                self.assertEqual(c.cmd("RSET").code, 250)
        self.assertEqual(len(ps.requests), 2)
        self.assertNotEqual(ps.requests[0]["instance"], ps.requests[1]["instance"])


class PolicyActionTest(PolicyCase):
    def test_actions_as_postfix(self):
        answers = {
            "a@virt.test": "REJECT go away",
            "b@virt.test": "450 4.2.0 try later",
            "c@virt.test": "DEFER_IF_PERMIT greylisted",
            "d@virt.test": "OK",
            "e@virt.test": "FOOBAR",
            "f@virt.test": "WARN watch this",
            "g@virt.test": "554 5.7.1 custom text",
            "h@virt.test": "DEFER",
        }
        rcpts = tuple(answers)
        self.assert_as_postfix(
            lambda r: policyfixture.action(answers.get(r["recipient"], "DUNNO")),
            "reject_unauth_destination, check_policy_service {policy}", rcpts=rcpts)

    def test_malformed_utf8_as_postfix(self):
        self.assert_as_postfix(lambda r: b"action=REJECT \xff\xfe bad\n\n",
                               "reject_unauth_destination, check_policy_service {policy}")


class PolicyFailureTest(PolicyCase):
    restr = "reject_unauth_destination, check_policy_service {policy}"

    def test_server_down_as_postfix(self):
        port = harness.free_port()
        _, lines, _ = self.assert_as_postfix(None, self.restr,
                                             spec="inet:127.0.0.1:%d" % port)
        self.assertIn("warning: connect to ENDPOINT: Connection refused", lines)

    def test_no_answer_as_postfix(self):
        _, lines, ps = self.assert_as_postfix(lambda r: None, self.restr,
                                              smtpd_policy_service_timeout="2s")
        self.assertEqual(ps.connections, 2)
        self.assertEqual(len(lines), 3, lines)

    def test_close_as_postfix(self):
        self.assert_as_postfix(lambda r: b"", self.restr)

    def test_missing_action_as_postfix(self):
        self.assert_as_postfix(lambda r: b"foo=bar\n\n", self.restr)

    def test_action_without_value_as_postfix(self):
        self.assert_as_postfix(lambda r: b"action\n\n", self.restr)

    def test_partial_answer_as_postfix(self):
        self.assert_as_postfix(lambda r: b"action=DUN", self.restr,
                               smtpd_policy_service_timeout="1s")

    def test_default_action_as_postfix(self):
        port = harness.free_port()
        self.assert_as_postfix(None, self.restr, spec="inet:127.0.0.1:%d" % port,
                               smtpd_policy_service_default_action="DUNNO",
                               smtpd_policy_service_try_limit="1")

    def test_brace_overrides_as_postfix(self):
        port = harness.free_port()
        spec = ("{ inet:127.0.0.1:%d, try_limit=1, { default_action = 450 4.7.1 policy down } }"
                % port)
        replies, lines, _ = self.assert_as_postfix(None, self.restr, spec=spec)
        self.assertIn("450 4.7.1 <alice@virt.test>: Recipient address rejected: policy down",
                      replies[1])
        self.assertEqual(len([l for l in lines if "connect to" in l]), 1)

    def test_loop_never_waits(self):
        """A server that never answers holds its session, not the others (one worker)."""
        ps = self.policy_server(lambda r: None)
        srv = self.start_server(main=self.params(
            "reject_unauth_destination, check_policy_service inet:%s" % port_spec(ps),
            smtpd_policy_service_timeout="3s"))
        slow = harness.Client(srv.port, timeout=20)
        self.addCleanup(slow.close)
        slow.read_reply()
        slow.cmd("EHLO a.example")
        slow.cmd("MAIL FROM:<a@client.example>")
        slow.send(b"RCPT TO:<alice@virt.test>\r\n")
        time.sleep(0.3)
        t = time.time()
        with harness.Client(srv.port) as c:
            c.read_reply()
            self.assertEqual(c.cmd("NOOP").code, 250)
        self.assertLess(time.time() - t, 1.0)
        r = slow.read_reply(timeout=15)
        self.assertEqual(r.text, "451 4.3.5 <alice@virt.test>: Recipient address rejected: "
                         "Server configuration problem")


class PolicyConnectionTest(PolicyCase):
    def mx(self, ps, **extra):
        return self.start_server(main=self.params(
            "reject_unauth_destination, check_policy_service inet:%s" % port_spec(ps), **extra))

    def rcpts(self, srv, n, sessions=1):
        for _ in range(sessions):
            with harness.Client(srv.port) as c:
                c.read_reply()
                c.cmd("EHLO client.example")
                c.cmd("MAIL FROM:<a@client.example>")
                for _ in range(n):
                    self.assertEqual(c.cmd("RCPT TO:<alice@virt.test>").code, 250)
                c.cmd("QUIT")

    def test_one_connection_for_many_requests(self):
        ps = self.policy_server(lambda r: policyfixture.action("DUNNO"))
        srv = self.mx(ps)
        self.rcpts(srv, 3)
        self.assertEqual(len(ps.requests), 3)
        self.assertEqual(ps.connections, 1)
        # one client per worker loop: at most one connection per worker
        self.rcpts(srv, 2, sessions=4)
        self.assertEqual(len(ps.requests), 11)
        self.assertLessEqual(ps.connections, os.cpu_count())

    def test_request_limit(self):
        ps = self.policy_server(lambda r: policyfixture.action("DUNNO"))
        srv = self.mx(ps, smtpd_policy_service_request_limit="2")
        self.rcpts(srv, 5)
        self.assertEqual(len(ps.requests), 5)
        self.assertEqual(ps.connections, 3)

    def test_max_idle(self):
        ps = self.policy_server(lambda r: policyfixture.action("DUNNO"))
        srv = self.mx(ps, smtpd_policy_service_max_idle="1s")
        self.rcpts(srv, 1)
        time.sleep(2)
        self.rcpts(srv, 1)
        self.assertEqual(ps.connections, 2)

    def test_server_closes_idle_connection(self):
        """The server hangs up after each answer: the next request opens a new connection
        without a warning or a retry delay."""
        def answer(r):
            return policyfixture.action("DUNNO")
        ps = self.policy_server(answer)
        srv = self.mx(ps)
        self.rcpts(srv, 1)
        with ps.lock:
            for c in ps.conns:
                try:
                    c.shutdown(2)
                except OSError:
                    pass
        time.sleep(0.3)
        t = time.time()
        self.rcpts(srv, 1)
        self.assertLess(time.time() - t, 0.9)
        self.assertEqual(ps.connections, 2)
        self.assertEqual([l for l in srv.log_lines() if "warning" in l], [])

    def test_unix_socket(self):
        d = tempfile.mkdtemp(prefix="mxgate-policy-")
        os.chmod(d, 0o755)
        self.addCleanup(shutil.rmtree, d, True)
        os.mkdir(os.path.join(d, "private"))
        os.chmod(os.path.join(d, "private"), 0o755)
        ps = self.policy_server(lambda r: policyfixture.action("REJECT by unix socket"),
                                path=os.path.join(d, "private", "pol"))
        srv = self.start_server(main=self.params(
            "reject_unauth_destination, check_policy_service unix:private/pol",
            queue_directory=d))
        with harness.Client(srv.port) as c:
            c.read_reply()
            c.cmd("EHLO client.example")
            c.cmd("MAIL FROM:<a@client.example>")
            self.assertEqual(c.cmd("RCPT TO:<alice@virt.test>").text,
                             "554 5.7.1 <alice@virt.test>: Recipient address rejected: "
                             "by unix socket")
        self.assertEqual(len(ps.requests), 1)


    def test_unix_listen_queue_full(self):
        """A unix socket whose listen queue is full (a spawn service at maxproc): mxgate
        connects once there is room, within the timeout, as Postfix's blocking connect."""
        import socket
        import threading
        d = tempfile.mkdtemp(prefix="mxgate-policy-")
        os.chmod(d, 0o755)
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "full")
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ls.bind(path)
        os.chmod(path, 0o777)
        ls.listen(0)
        self.addCleanup(ls.close)
        fillers = []
        while True:
            f = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            f.setblocking(False)
            try:
                f.connect(path)
            except BlockingIOError:
                f.close()
                break
            fillers.append(f)
            self.assertLess(len(fillers), 100)
        srv = self.start_server(main=self.params(
            "reject_unauth_destination, check_policy_service unix:" + path,
            smtpd_policy_service_timeout="10s"))
        result = []
        t = threading.Thread(target=lambda: result.append(
            session(srv.port, ["alice@virt.test"])))
        t.start()
        time.sleep(1.0)
        served = []

        def serve():
            while True:
                try:
                    c, _ = ls.accept()
                except OSError:
                    return
                data = b""
                while not data.endswith(b"\n\n"):
                    chunk = c.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if data:
                    served.append(data)
                    c.sendall(b"action=REJECT waited for room\n\n")
                c.close()
        for f in fillers:
            f.close()
        threading.Thread(target=serve, daemon=True).start()
        t.join(20)
        self.assertEqual(result[0][1], "RCPT alice@virt.test: 554 5.7.1 <alice@virt.test>: "
                         "Recipient address rejected: waited for room")
        self.assertEqual(len(served), 1)
        self.assertEqual([l for l in srv.log_lines() if "warning" in l], [])


class PolicyCheckTest(PolicyCase):
    def check(self, value, **extra):
        d = tempfile.mkdtemp(prefix="mxgate-policy-check-")
        self.addCleanup(shutil.rmtree, d, True)
        p = self.params("reject_unauth_destination, check_policy_service " + value,
                        virtual_mailbox_base=d, **extra)
        with open(os.path.join(d, "main.cf"), "w") as f:
            f.write(harness.format_main_cf(p))
        return self.mxgate("check", "-c", d)

    def test_bad_specs_are_named(self):
        for spec, why in (("{ inet:127.0.0.1:1, timeout=abc }", "bad time value"),
                          ("{ inet:127.0.0.1:1, colour=red }", "unknown option"),
                          ("{ inet:127.0.0.1:1, try_limit=0 }", "bad numerical"),
                          ("tcp:127.0.0.1:1", "unsupported transport type"),
                          ("inet:", "need service transport:endpoint")):
            rc, out, err = self.check(spec)
            self.assertEqual(rc, 1, spec)
            self.assertIn(why, err, spec)

    def test_good_spec_passes(self):
        rc, out, err = self.check("{ inet:127.0.0.1:1, timeout=10s, max_idle=1m, "
                                  "default_action=DUNNO, policy_context=x }")
        self.assertEqual(rc, 0, err)


# ---- postgrey ----

POSTGREY = "/usr/sbin/postgrey"


class Postgrey:
    def __init__(self, testcase, delay=2):
        if not os.path.exists(POSTGREY):
            raise AssertionError("postgrey is not installed: sh scripts/deps.sh --test")
        self.dir = tempfile.mkdtemp(prefix="mxgate-postgrey-")
        os.chmod(self.dir, 0o755)
        testcase.addCleanup(shutil.rmtree, self.dir, True)
        self.port = harness.free_port()
        db = os.path.join(self.dir, "db")
        os.mkdir(db)
        user = "postgrey" if os.geteuid() == 0 else None
        args = [POSTGREY, "--inet=127.0.0.1:%d" % self.port, "--delay=%d" % delay,
                "--dbdir=" + db, "--pidfile=" + os.path.join(self.dir, "pid"),
                "--greylist-text=Greylisted, see http://postgrey.schweikert.ch/help/%r.html"]
        if user:
            import pwd
            pw = pwd.getpwnam(user)
            os.chown(db, pw.pw_uid, pw.pw_gid)
            args.append("--user=" + user)
        self.log = open(os.path.join(self.dir, "log"), "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log,
                                     stdin=subprocess.DEVNULL)
        testcase.addCleanup(self.stop)
        deadline = time.time() + 20
        while not harness.port_listening(self.port):
            if self.proc.poll() is not None or time.time() > deadline:
                raise AssertionError("postgrey did not start: %s" %
                                     open(os.path.join(self.dir, "log")).read())
            time.sleep(0.1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class PostgreyTest(PolicyCase):
    def greylist(self, port):
        first = session(port, ["alice@virt.test"])
        time.sleep(3.5)
        second = session(port, ["alice@virt.test"])
        return first, second

    def test_greylisting_as_postfix(self):
        results = []
        for who in ("postfix", "mxgate"):
            pg = Postgrey(self, delay=2)
            p = self.params("reject_unauth_destination, "
                            "check_policy_service inet:127.0.0.1:%d" % pg.port)
            if who == "postfix":
                ref = self.reference()
                ref.start(p)
                results.append(self.greylist(ref.port))
                ref.stop()
            else:
                srv = self.start_server(main=p)
                results.append(self.greylist(srv.port))
            pg.stop()
        (pf_first, pf_second), (mx_first, mx_second) = results
        self.assertEqual(mx_first, pf_first)
        self.assertEqual(mx_second, pf_second)
        self.assertRegex(mx_first[1], r"^RCPT alice@virt.test: 450 4\.2\.0 <alice@virt.test>: "
                         r"Recipient address rejected: Greylisted, see "
                         r"http://postgrey\.schweikert\.ch/help/virt\.test\.html$")
        self.assertEqual(mx_second[1], "RCPT alice@virt.test: 250 2.1.5 Ok")


if __name__ == "__main__":
    import unittest
    unittest.main()
