"""Every master.cf inet service is served as its -o options ask, or refused out loud (issue 11).

The fixtures (tests/system/fixtures/mastercf/, see its README for the sources) are the inet
services of Debian's master.cf and of docker-mailserver, mailcow, Mailu and iRedMail.  Each gives
a defined result, with `mxgate check` and with `mxgate run`:
  - an ordinary smtpd line is served;
  - a submission-style line (-o smtpd_sasl_auth_enable=yes, or restrictions that end in
    permit_sasl_authenticated, reject) is not opened, with a warning at its line;
  - a postscreen line is served by smtpd with the pass service's settings, the postscreen_*
    settings that are not applied are named, and those that would turn clients away
    (postscreen_greet_action = enforce, ...) are errors: check exits 1, run does not start;
  - a line with a setting mxgate does not implement and would weaken is an error;
  - an inet line of another daemon (Debian's commented qmqpd line) is not opened, with a
    warning at its line.
"""

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import unittest

import harness

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "mastercf")
SUBMISSION = ("service \"%s\": not opened: a submission service (%s): mxgate offers no SASL AUTH "
              "and never relays mail; keep submission on the server that sends your mail")
SASL = "smtpd_sasl_auth_enable = yes"
ENDS = "smtpd_client_restrictions ends in permit_sasl_authenticated, reject"
SCREEN = ("service \"%s\": postscreen is not implemented by mxgate: this port is served by smtpd "
          "with the settings of service \"smtpd\" (line %d)")
CHROOT = ("service \"%s\": chroot \"y\" is accepted, but mxgate does not chroot (for this service "
          "or any other): its network side runs as mail_owner, without root and without "
          "capabilities (docs/security.md)")
OTHER = ("service \"%s\": not opened: mxgate serves inet services of smtpd, postscreen and "
         "spawn only, not \"%s\"")
GREET = ("postscreen_greet_action = enforce: postscreen is not implemented by mxgate, refused: "
         "service \"%s\" (%s, line %d) is served by smtpd without the screen: clients that speak "
         "before the greeting would not be turned away by the pregreet test (set "
         "postscreen_greet_action = ignore)")


def fixture(name):
    path = os.path.join(FIXTURES, name)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.read().splitlines()


def is_inet(line):
    w = line.split()
    return len(w) >= 8 and not line[0].isspace() and w[1] == "inet"


class ServicesTest(harness.MxTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="mxgate-services-")
        os.chmod(self.dir, 0o755)
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.master_path = os.path.join(self.dir, "master.cf")
        self.main_path = os.path.join(self.dir, "main.cf")

    def write(self, master_lines, main_lines=()):
        base = ["%s = %s" % kv for kv in harness.BASE_MAIN.items()]
        with open(self.main_path, "w") as f:
            f.write("".join(ln + "\n" for ln in base + list(main_lines)))
        with open(self.master_path, "w") as f:
            f.write("".join(ln + "\n" for ln in master_lines))
        return len(base)

    def check(self, name, main=None):
        """mxgate check on fixture name (master.cf as is): (exit code, stderr lines)."""
        self.write(fixture(name + ".master.cf"), fixture(name + ".main.cf") + list(main or ()))
        rc, _, err = self.mxgate("check", "-c", self.dir)
        return rc, err.splitlines()

    def warn(self, line, text, path=None):
        return "mxgate: warning: %s, line %d: %s" % (path or self.master_path, line, text)

    def error(self, line, text, path=None):
        return "mxgate: error: %s, line %d: %s" % (path or self.master_path, line, text)

    def run_fixture(self, name, main=None, drop=()):
        """Start mxgate on fixture name with each inet line moved to 127.0.0.1:PORT (the first
        one on the harness's port).  Returns (server, {service name: port})."""
        lines, ports, first = [], {}, True
        for ln in fixture(name + ".master.cf"):
            if is_inet(ln):
                svc, rest = ln.split(None, 1)
                port = None if first else harness.free_port()
                first = False
                ports[svc] = port
                ln = "127.0.0.1:%s %s" % ("{port}" if port is None else port, rest)
            lines.append(ln)
        params = dict(harness.BASE_MAIN)
        for ln in fixture(name + ".main.cf") + list(main or ()):
            if "=" in ln and not ln[0].isspace():
                k, v = ln.split("=", 1)
                params[k.strip()] = v.strip()
        for k in drop:
            params.pop(k, None)
        srv = self.start_server(main=params, master=lines)
        return srv, {k: (srv.port if v is None else v) for k, v in ports.items()}

    def assert_served(self, srv, port):
        c = harness.Client(port)
        self.addCleanup(c.close)
        c.expect(220)
        self.assertEqual(c.cmd("EHLO client.example").code, 250)
        self.assertEqual(c.cmd("QUIT").code, 221)

    def assert_closed(self, port):
        self.assertFalse(harness.port_listening(port), "port %d is open" % port)

    def daemon_text(self, srv):
        return "\n".join(srv.log_lines()) + "\n" + srv.stderr()

    # -- Debian's master.cf -----------------------------------------------------------------

    def test_debian_smtp(self):
        """The active smtp line of Debian's master.cf (chroot y): served, chroot said once."""
        rc, err = self.check("debian-smtp")
        self.assertEqual(rc, 0, err)
        self.assertIn(self.warn(1, CHROOT % "smtp"), err)
        srv, ports = self.run_fixture("debian-smtp")
        self.assert_served(srv, ports["smtp"])
        self.assertEqual(len(re.findall("does not chroot", self.daemon_text(srv))), 1,
                         self.daemon_text(srv))

    def test_debian_uncommented(self):
        """Debian's commented postscreen, submission and submissions lines, uncommented: port 25
        is served by smtpd with the pass service's settings, submission(s) are not opened."""
        rc, err = self.check("debian")
        self.assertEqual(rc, 0, err)
        self.assertIn(self.warn(1, SCREEN % ("smtp", 2)), err)
        self.assertIn(self.warn(5, SUBMISSION % ("submission", SASL)), err)
        self.assertIn(self.warn(17, SUBMISSION % ("submissions", SASL)), err)
        self.assertIn(self.warn(28, OTHER % ("628", "qmqpd")), err)
        # what a service that is not opened sets is not refused (TLS enforcement, wrapper mode)
        self.assertEqual([ln for ln in err if "error" in ln], [], err)
        self.assertFalse(any("smtpd_tls_security_level" in ln or "milter_macro" in ln
                             for ln in err), err)
        srv, ports = self.run_fixture("debian")
        self.assert_served(srv, ports["smtp"])
        self.assert_closed(ports["submission"])
        self.assert_closed(ports["submissions"])
        self.assert_closed(ports["628"])
        text = self.daemon_text(srv)
        self.assertIn("service \"127.0.0.1:%d\": not opened: a submission service"
                      % ports["submission"], text)
        self.assertIn(OTHER % ("127.0.0.1:%d" % ports["628"], "qmqpd"), text)
        self.assertIn(SCREEN % ("127.0.0.1:%d" % srv.port, 2), text)

    # -- docker-mailserver --------------------------------------------------------------------

    def test_dms(self):
        """docker-mailserver: postscreen_greet_action = enforce stops check and run; with it at
        ignore, port 25 is served and the submission services are not opened."""
        rc, err = self.check("dms")
        n = len(harness.BASE_MAIN)
        self.assertEqual(rc, 1, err)
        self.assertIn(self.error(n + 5, GREET % ("smtp", self.master_path, 1), self.main_path),
                      err)
        self.assertEqual(len([ln for ln in err if "error:" in ln]), 1, err)
        # postscreen_dnsbl_action = enforce with no postscreen_dnsbl_sites refuses nothing
        self.assertIn(self.warn(1, SCREEN % ("smtp", 2) + "; postscreen settings not applied: "
                                "postscreen_dnsbl_action, postscreen_dnsbl_sites, "
                                "postscreen_dnsbl_threshold, postscreen_dnsbl_allowlist_threshold, "
                                "postscreen_greet_action, postscreen_bare_newline_action"), err)
        self.assertIn(self.warn(5, SUBMISSION % ("submission", SASL)), err)
        self.assertIn(self.warn(18, SUBMISSION % ("submissions", SASL)), err)
        rc, _, err = self.mxgate("run", "-c", self.dir)
        self.assertNotEqual(rc, 0, err)
        self.assertIn("postscreen_greet_action = enforce: postscreen is not implemented", err)
        srv, ports = self.run_fixture("dms", main=["postscreen_greet_action = ignore"])
        self.assert_served(srv, ports["smtp"])
        self.assert_closed(ports["submission"])
        self.assert_closed(ports["submissions"])

    # -- mailcow --------------------------------------------------------------------------------

    def test_mailcow_check(self):
        """mailcow: greet and denylist actions refused for both postscreen ports; smtps, 10465,
        submission and 588 (permit_mynetworks, permit_sasl_authenticated, reject) not opened;
        590 (permit_mynetworks, reject) served as configured."""
        rc, err = self.check("mailcow")
        n = len(harness.BASE_MAIN)
        self.assertEqual(rc, 1, err)
        errors = [ln for ln in err if "error:" in ln]
        self.assertIn(self.error(n + 9, GREET % ("smtp", self.master_path, 1), self.main_path),
                      errors)
        self.assertIn(self.error(n + 9, GREET % ("10025", self.master_path, 2), self.main_path),
                      errors)
        self.assertTrue(any(ln.startswith("mxgate: error: %s, line %d: postscreen_denylist_action "
                                          "= drop: " % (self.main_path, n + 5)) for ln in errors),
                        errors)
        for line, svc in ((8, "smtps"), (13, "10465"), (18, "submission"), (22, "588")):
            self.assertIn(self.warn(line, SUBMISSION % (svc, ENDS)), err)
        self.assertFalse(any("590" in ln and "not opened" in ln for ln in err), err)

    def test_mailcow_run(self):
        """mailcow with the refusing postscreen actions at ignore: 25 (postscreen) and 590 are
        served, the submission-style ports are closed."""
        srv, ports = self.run_fixture("mailcow", main=["postscreen_greet_action = ignore",
                                                       "postscreen_denylist_action = ignore"])
        self.assert_served(srv, ports["smtp"])
        self.assert_served(srv, ports["590"])
        for svc in ("smtps", "10465", "submission", "588"):
            self.assert_closed(ports[svc])
        # 10025: postscreen behind HAProxy (-o postscreen_upstream_proxy_protocol=haproxy on
        # the postscreen line): the header is read, and the session is the proxied client's
        c = harness.Client(ports["10025"], connect=False)
        self.addCleanup(c.close)
        c.connect()
        c.send(b"PROXY TCP4 198.51.100.23 192.0.2.1 40000 25\r\n")
        c.expect(220)
        self.assertEqual(c.cmd("QUIT").code, 221)
        self.assertIsNotNone(srv.wait_log(r"connect from \S+\[198\.51\.100\.23\]"),
                             srv.log_lines())
        # and without one, Postfix's warning and 421
        c = harness.Client(ports["10025"])
        self.addCleanup(c.close)
        c.send(b"EHLO client.example\r\n")
        self.assertEqual(str(c.read_reply()), "421 4.3.0 mx.example.test Server local error")
        self.assertIsNotNone(srv.wait_log(r"warning: haproxy read: unrecognized protocol header: "
                                          r"EHLO client\.example\\r\\n"), srv.log_lines())

    # -- Mailu, iRedMail -----------------------------------------------------------------------

    def test_mailu(self):
        """Mailu: smtp served, the internal 10025 (smtpd_sasl_auth_enable=yes) not opened."""
        rc, err = self.check("mailu")
        self.assertEqual(rc, 0, err)
        self.assertIn(self.warn(2, SUBMISSION % ("10025", SASL)), err)
        srv, ports = self.run_fixture("mailu")
        self.assert_served(srv, ports["smtp"])
        self.assert_closed(ports["10025"])

    def test_mailcow_more_services(self):
        """mailcow's other inet kinds (written after them, see the fixtures' README): a watchdog
        smtpd (its cleanup_service_name and syslog_name warned of) and a spawn service are served; a
        re-injection port with receive_override_options is refused, with check naming it."""
        rc, err = self.check("mailcow-more")
        self.assertEqual(rc, 1, err)
        errors = [ln for ln in err if "error:" in ln]
        self.assertEqual(len(errors), 1, err)
        self.assertTrue(errors[0].startswith(
            "mxgate: error: %s, line 14: receive_override_options = no_unknown_recipient_checks,"
            "no_header_body_checks,no_milters: parameter is not implemented by mxgate, refused"
            % self.master_path), errors)
        self.assertIn(self.warn(7, "cleanup_service_name: parameter is not implemented by mxgate, "
                                   "ignored"), err)
        # Postfix would tag the watchdog's lines "watchdog/smtpd[PID]"; mxgate says it will not
        self.assertIn(self.warn(4, "syslog_name: a service's own syslog_name is not implemented "
                                   "by mxgate, ignored: its lines carry main.cf's"), err)
        self.assertFalse(any("not opened" in ln for ln in err), err)
        rc, _, err = self.mxgate("run", "-c", self.dir)
        self.assertNotEqual(rc, 0, err)
        self.assertIn("receive_override_options", err)
        # without the refused service, the others are served: the watchdog's smtpd, and the
        # spawn service's command (/bin/cat here) on its own port
        lines = fixture("mailcow-more.master.cf")[:11]
        wport, sport = harness.free_port(), harness.free_port()
        lines[1] = lines[1].replace("589 ", "127.0.0.1:%d " % wport, 1)
        lines[10] = lines[10].replace("127.0.0.1:10027", "127.0.0.1:%d" % sport)
        lines[0] = lines[0].replace("smtp ", "127.0.0.1:{port} ", 1)
        srv = self.start_server(master=lines)
        self.assert_served(srv, srv.port)
        self.assert_served(srv, wport)
        with socket.create_connection(("127.0.0.1", sport), timeout=10) as so:
            so.sendall(b"spawned\n")
            self.assertEqual(so.recv(100), b"spawned\n")

    def test_iredmail(self):
        """iRedMail: submission and 465 not opened; the amavis reinjection port sets
        strict_rfc821_envelopes and receive_override_options, which mxgate would weaken:
        check names both, run refuses."""
        rc, err = self.check("iredmail")
        self.assertEqual(rc, 1, err)
        self.assertIn(self.warn(1, SUBMISSION % ("submission", SASL)), err)
        self.assertIn(self.warn(7, SUBMISSION % ("465", SASL)), err)
        errors = [ln for ln in err if "error:" in ln]
        self.assertEqual(len(errors), 2, err)
        self.assertTrue(errors[0].startswith("mxgate: error: %s, line 20: strict_rfc821_envelopes "
                                             "= yes: " % self.master_path), errors)
        self.assertTrue(errors[1].startswith("mxgate: error: %s, line 34: receive_override_options"
                                             % self.master_path), errors)
        # a submission line's content_filter is not refused: the line is not opened
        self.assertFalse(any("line 6:" in ln or "line 12:" in ln for ln in err), err)
        rc, _, err = self.mxgate("run", "-c", self.dir)
        self.assertNotEqual(rc, 0, err)
        self.assertIn("strict_rfc821_envelopes = yes", err)

    # -- postscreen details --------------------------------------------------------------------

    def test_postscreen_pass_settings(self):
        """The port postscreen listens on runs with the pass service's -o options;
        the postscreen line's own options (syslog_name) are postscreen's."""
        srv = self.start_server(master=[
            "127.0.0.1:{port} inet n - n - 1 postscreen -o syslog_name=screen",
            "smtpd pass - - n - 2 smtpd -o { smtpd_banner = $myhostname ESMTP passed }"])
        c = self.connect(srv)
        self.assertEqual(str(c.read_reply()), "220 mx.example.test ESMTP passed")
        self.assertEqual(c.cmd("QUIT").code, 221)
        self.assertFalse(any("screen/" in ln for ln in srv.log_lines()), srv.log_lines())

    def test_postscreen_refusals(self):
        """Each postscreen setting that would turn clients away is named at its line."""
        n = self.write(["smtp inet n - n - 1 postscreen",
                        "smtpd pass - - n - - smtpd"],
                       ["postscreen_pipelining_enable = yes",               # n+1
                        "postscreen_dnsbl_sites = zen.spamhaus.org*2",      # n+2
                        "postscreen_dnsbl_action = drop",                   # n+3
                        "postscreen_bare_newline_enable = yes",             # n+4 action: ignore
                        "postscreen_access_list = permit_mynetworks",       # n+5 no reject entry
                        "postscreen_blacklist_action = enforce",            # n+6
                        "postscreen_client_connection_count_limit = 10"])   # n+7 < 50
        rc, _, err = self.mxgate("check", "-c", self.dir)
        self.assertEqual(rc, 1, err)
        errors = [ln for ln in err.splitlines() if "error:" in ln]
        lines = sorted(int(re.search(r"line (\d+):", ln).group(1)) - n for ln in errors)
        self.assertEqual(lines, [1, 3, 7], err)
        self.assertIn("%s, line %d: postscreen_pipelining_action = enforce: postscreen is not "
                      "implemented by mxgate, refused" % (self.main_path, n + 1), err)
        self.assertIn("%s, line %d: postscreen_dnsbl_action = drop:" % (self.main_path, n + 3), err)
        rc, _, err = self.mxgate("run", "-c", self.dir)
        self.assertNotEqual(rc, 0, err)

    def test_postscreen_without_pass(self):
        """A postscreen line with no pass service to hand clients to is not opened."""
        self.write(["smtp inet n - n - 1 postscreen",
                    "127.0.0.1:2999 inet n - n - - smtpd"])
        rc, _, err = self.mxgate("check", "-c", self.dir)
        self.assertEqual(rc, 0, err)
        self.assertIn(self.warn(1, "service \"smtp\": not opened: postscreen hands clients to "
                                "service \"smtpd\" (smtpd_service_name), which has no \"pass ... "
                                "smtpd\" line in master.cf"), err.splitlines())

    # -- privileges ----------------------------------------------------------------------------

    def test_mail_owner_root(self):
        """mail_owner = root: check names it, run refuses to start."""
        n = self.write(["127.0.0.1:2999 inet n - n - - smtpd"], ["mail_owner = root"])
        want = self.error(n + 1, "mail_owner = root: user root has privileged user ID: mxgate's "
                          "network side must not run as root", self.main_path)
        rc, _, err = self.mxgate("check", "-c", self.dir)
        self.assertEqual(rc, 1, err)
        self.assertIn(want, err.splitlines())
        rc, _, err = self.mxgate("run", "-c", self.dir)
        self.assertNotEqual(rc, 0, err)
        self.assertIn(want, err.splitlines())
        self.assertFalse(harness.port_listening(2999))

    def test_mail_owner_other_user_with_uid_or_gid_0(self):
        """mail_owner naming a user other than root whose uid is 0, or whose gid is 0 (users
        the test makes, as root, and removes): check names it, run refuses to start."""
        if os.geteuid() != 0:
            self.fail("this test makes users: it needs root")
        for user, args, what in (("mxgtroot0", ["-o", "-u", "0"], "user ID"),
                                 ("mxgtgid0", ["-g", "0"], "group ID")):
            with self.subTest(user):
                subprocess.run(["useradd"] + args + ["-M", "-N", "-d", "/nonexistent", "-s",
                                                     "/usr/sbin/nologin", user],
                               check=True, capture_output=True, timeout=30)
                # -f: userdel refuses a uid that running processes have (uid 0) without it
                self.addCleanup(subprocess.run, ["userdel", "-f", user], capture_output=True,
                                timeout=30)
                pw = pwd.getpwnam(user)
                self.assertEqual(pw.pw_uid == 0, what == "user ID")
                self.assertEqual(pw.pw_gid == 0, what == "group ID")
                n = self.write(["127.0.0.1:2999 inet n - n - - smtpd"], ["mail_owner = " + user])
                want = self.error(n + 1, "mail_owner = %s: user %s has privileged %s: mxgate's "
                                  "network side must not run as root" % (user, user, what),
                                  self.main_path)
                rc, _, err = self.mxgate("check", "-c", self.dir)
                self.assertEqual(rc, 1, err)
                self.assertIn(want, err.splitlines())
                rc, _, err = self.mxgate("run", "-c", self.dir)
                self.assertNotEqual(rc, 0, err)
                self.assertIn(want, err.splitlines())
                self.assertFalse(harness.port_listening(2999))


if __name__ == "__main__":
    unittest.main()
