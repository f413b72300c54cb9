"""Never silent: a Postfix parameter that mxgate does not implement, and that would make Postfix
refuse, filter or inspect mail that mxgate accepts as it came (src/conf/refused.def), stops
`mxgate check` (exit 1, every one of them listed in one run with file:line, parameter, value and
why) and `mxgate run` (non-zero exit, nothing listening).  The same parameter at a harmless value
(Postfix's default, or one that changes nothing) keeps the "not implemented, ignored" warning and
mxgate starts.

TLS is implemented (tests/system/test_tls.py): its levels, wrapper mode and the legacy
booleans are accepted and served; smtpd_tls_req_ccert = yes (a client certificate required) is
not implemented and is refused.
"""

import os
import shutil
import tempfile
import unittest

import harness


PREFIX = "parameter is not implemented by mxgate, refused: "
WHY = {
    "smtpd_discard_ehlo_keyword_address_maps": "mxgate has no per-client EHLO keyword "
                                               "discarding: those clients would be offered, "
                                               "and could use, the extensions that the table "
                                               "takes away",
    "content_filter": "mxgate has no after-queue content filter: mail would be stored without "
                      "passing through the filter",
    "smtpd_command_filter": "mxgate does not rewrite SMTP commands: they would be executed as "
                            "the client sent them",
    "always_bcc": "mxgate sends no copies (it never relays): the blind copy of every message "
                  "would be lost",
    "strict_rfc821_envelopes": "mxgate accepts addresses in MAIL FROM and RCPT TO as Postfix's "
                               "default does: addresses that break RFC 821 syntax would be "
                               "accepted",
    "strict_smtputf8": "mxgate does not require the SMTPUTF8 parameter for UTF-8 addresses: such "
                       "mail would be accepted",
    "smtpd_tls_req_ccert": "mxgate does not require client certificates: with "
                           "smtpd_tls_security_level = encrypt, clients without a trusted "
                           "certificate would be served",
}


def refused(name, value, why=None):
    return "%s = %s: %s%s" % (name, value, PREFIX, WHY[why or name])


def ignored(name):
    return "%s: parameter is not implemented by mxgate, ignored" % name


class NeverSilentTest(harness.MxTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="mxgate-never-silent-")
        os.chmod(self.dir, 0o755)
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.p1 = harness.free_port()
        self.p2 = harness.free_port()
        self.main_path = os.path.join(self.dir, "main.cf")
        self.master_path = os.path.join(self.dir, "master.cf")

    def write(self, main_lines, master_lines):
        base = ["%s = %s" % kv for kv in harness.BASE_MAIN.items()]
        with open(self.main_path, "w") as f:
            f.write("".join(ln + "\n" for ln in base + main_lines))
        with open(self.master_path, "w") as f:
            f.write("".join(ln.format(p1=self.p1, p2=self.p2) + "\n" for ln in master_lines))
        return len(base)    # main.cf line of main_lines[0] is this + 1

    def errors(self, err):
        return [ln for ln in err.splitlines() if ln.startswith("mxgate: error: ")]

    def mixed_config(self):
        n = self.write([
            "smtpd_discard_ehlo_keyword_address_maps = cidr:/etc/postfix/e.cidr", # n+1
            "content_filter = smtp-amavis:[127.0.0.1]:10024",                  # n+2
            "smtpd_command_filter = pcre:/etc/postfix/command_filter",        # n+3
            "always_bcc = archive@example.org",                                # n+4
            "strict_rfc821_envelopes = yes",                                   # n+5
            "smtpd_proxy_filter =",                                            # n+6 default
            "strict_8bitmime = no",                                            # n+7 default
            "smtpd_tls_req_ccert = no",                                        # n+8 harmless
        ], [
            "127.0.0.1:{p1} inet n - n - - smtpd",                             # 1
            "127.0.0.1:{p2} inet n - n - - smtpd",                             # 2
            "  -o smtpd_tls_req_ccert=yes -o content_filter=",                 # 3
        ])
        m, ms = self.main_path, self.master_path
        want = [
            "mxgate: error: " + refused("strict_smtputf8", "yes"),
            "mxgate: error: %s, line %d: " % (m, n + 1)
            + refused("smtpd_discard_ehlo_keyword_address_maps", "cidr:/etc/postfix/e.cidr"),
            "mxgate: error: %s, line %d: " % (m, n + 2)
            + refused("content_filter", "smtp-amavis:[127.0.0.1]:10024"),
            "mxgate: error: %s, line %d: " % (m, n + 3)
            + refused("smtpd_command_filter", "pcre:/etc/postfix/command_filter"),
            "mxgate: error: %s, line %d: " % (m, n + 4)
            + refused("always_bcc", "archive@example.org"),
            "mxgate: error: %s, line %d: " % (m, n + 5) + refused("strict_rfc821_envelopes", "yes"),
            "mxgate: error: %s, line 3: " % ms
            + refused("smtpd_tls_req_ccert", "yes"),
        ]
        harmless = [
            "mxgate: warning: %s, line %d: %s" % (m, n + 6, ignored("smtpd_proxy_filter")),
            "mxgate: warning: %s, line %d: %s" % (m, n + 7, ignored("strict_8bitmime")),
            "mxgate: warning: %s, line %d: %s" % (m, n + 8, ignored("smtpd_tls_req_ccert")),
            "mxgate: warning: %s, line 3: %s" % (ms, ignored("content_filter")),
        ]
        return want, harmless

    def test_check_lists_every_refused_setting(self):
        want, harmless = self.mixed_config()
        rc, out, err = self.mxgate("check", "-c", self.dir, "-o", "strict_smtputf8=yes")
        self.assertEqual(rc, 1, err)
        self.assertEqual(out, "")
        # Every refusal in one run, each once: the command line first, then by file and line.
        self.assertEqual(self.errors(err), want, err)
        for line in harmless:
            self.assertIn(line, err.splitlines())
        # A refused setting gets its error only, not the "ignored" warning as well.
        self.assertNotIn(ignored("smtpd_discard_ehlo_keyword_address_maps"), err)
        self.assertNotIn(ignored("strict_rfc821_envelopes"), err)

    def test_run_refuses_to_start(self):
        want, _ = self.mixed_config()
        rc, _, err = self.mxgate("run", "-c", self.dir, "-o", "strict_smtputf8=yes")
        self.assertNotEqual(rc, 0, err)
        self.assertEqual(self.errors(err), want, err)
        self.assertIn("mxgate: fatal: configuration in %s has %d errors; see `mxgate check -c %s`"
                      % (self.dir, len(want), self.dir), err)
        self.assertFalse(harness.port_listening(self.p1) or harness.port_listening(self.p2))

    def test_command_line_refusal_alone(self):
        self.write([], ["127.0.0.1:{p1} inet n - n - - smtpd"])
        for verb in ("check", "run"):
            rc, _, err = self.mxgate(verb, "-c", self.dir, "-o",
                                     "smtpd_command_filter=pcre:/x")
            self.assertEqual(rc, 1, err)
            self.assertEqual(self.errors(err), [
                "mxgate: error: " + refused("smtpd_command_filter", "pcre:/x")], err)
        self.assertFalse(harness.port_listening(self.p1))

    def test_tls_client_certificate_requirement_is_refused(self):
        """smtpd_tls_req_ccert = yes, in main.cf and as a master.cf -o."""
        n = self.write(["smtpd_tls_req_ccert = yes"], ["127.0.0.1:{p1} inet n - n - - smtpd"])
        rc, _, err = self.mxgate("check", "-c", self.dir)
        self.assertEqual(rc, 1, err)
        self.assertEqual(self.errors(err), ["mxgate: error: %s, line %d: %s" % (
            self.main_path, n + 1, refused("smtpd_tls_req_ccert", "yes"))], err)
        self.write([], ["127.0.0.1:{p1} inet n - n - - smtpd -o smtpd_tls_req_ccert=yes"])
        rc, _, err = self.mxgate("check", "-c", self.dir)
        self.assertEqual(rc, 1, err)
        self.assertEqual(self.errors(err), ["mxgate: error: %s, line 1: %s" % (
            self.master_path, refused("smtpd_tls_req_ccert", "yes"))], err)
        rc, _, err = self.mxgate("run", "-c", self.dir)
        self.assertNotEqual(rc, 0, err)
        self.assertFalse(harness.port_listening(self.p1))

    def test_tls_levels_are_implemented(self):
        """The ways Postfix 3.7's smtpd enforces TLS are no longer refused: they are served
        (test_tls.py), and without a certificate STARTTLS gets 454, as in Postfix."""
        for name, value in (("smtpd_tls_security_level", "encrypt"),
                            ("smtpd_tls_security_level", "verify"),
                            ("smtpd_enforce_tls", "yes"), ("smtpd_tls_wrappermode", "yes")):
            with self.subTest(name=name, value=value):
                self.write([], ["127.0.0.1:{p1} inet n - n - - smtpd -o %s=%s" % (name, value)])
                rc, _, err = self.mxgate("check", "-c", self.dir)
                self.assertEqual(rc, 0, err)
                self.assertEqual(self.errors(err), [], err)
                self.assertNotIn(ignored(name), err)
                self.assertIn("No server certs available. TLS won't be enabled", err)

    def test_enforce_tls_is_inert_once_the_level_is_set(self):
        main = dict(harness.BASE_MAIN, smtpd_tls_security_level="may", smtpd_enforce_tls="yes",
                    smtpd_use_tls="yes")
        srv = self.start_server(main=main)
        c = self.connect(srv)
        c.expect(220)
        c.cmd("EHLO a.test")
        self.assertEqual(c.cmd("MAIL FROM:<a@example.org>").code, 250)
        c.cmd("QUIT")

    def test_harmless_values_start(self):
        """Postfix's defaults and values that change nothing: warnings, and mxgate serves."""
        main = dict(harness.BASE_MAIN)
        main.update({"strict_rfc821_envelopes": "no", "content_filter": "",
                     "header_checks": "", "smtpd_tls_security_level": "may",
                     "smtpd_tls_wrappermode": "no",
                     "receive_override_options": "no_header_body_checks, no_milters"})
        srv = self.start_server(main=main, master=[
            "127.0.0.1:{port} inet n - n - - smtpd -o smtpd_discard_ehlo_keyword_address_maps= "
            "-o smtpd_command_filter="])
        c = self.connect(srv)
        c.expect(220)
        self.assertEqual(c.cmd("QUIT").code, 221)
        msgs = srv.log_messages()
        for name in ("strict_rfc821_envelopes", "content_filter",
                     "receive_override_options", "smtpd_discard_ehlo_keyword_address_maps",
                     "smtpd_command_filter"):
            self.assertTrue(any(m.endswith(ignored(name)) for m in msgs), (name, msgs))
        rc, _, err = self.mxgate("check", "-c", srv.dir)
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.errors(err), [], err)

    def test_address_routing_switches(self):
        """Postfix 3.7.11 with allow_percent_hack, swap_bangpath or resolve_dequoted_address = no
        refuses <u%virt.test@local.test> and the like (454 Relay access denied); mxgate always
        reroutes them as Postfix's defaults do, so "no" is refused and "yes" is not."""
        why = ("mxgate always rewrites user%domain as user@domain, as Postfix's default does: "
               "such a recipient in one of mxgate's own domains would be accepted for the "
               "rewritten address")
        n = self.write(["allow_percent_hack = no", "swap_bangpath = yes",
                        "resolve_dequoted_address = yes"],
                       ["127.0.0.1:{p1} inet n - n - - smtpd"])
        rc, _, err = self.mxgate("check", "-c", self.dir)
        self.assertEqual(rc, 1, err)
        self.assertEqual(self.errors(err), ["mxgate: error: %s, line %d: allow_percent_hack = no: "
                                            "%s%s" % (self.main_path, n + 1, PREFIX, why)], err)
        for i, name in ((2, "swap_bangpath"), (3, "resolve_dequoted_address")):
            self.assertIn("mxgate: warning: %s, line %d: %s" % (self.main_path, n + i,
                                                                ignored(name)), err.splitlines())

    def test_postscreen_service_is_named(self):
        """An inet postscreen service is served by smtpd with the pass service's settings
        (issue 11): a warning at its line says so (tests/system/test_services.py has more)."""
        self.write([], ["smtp inet n - n - 1 postscreen",
                        "smtpd pass - - n - - smtpd",
                        "127.0.0.1:{p1} inet n - n - - smtpd"])
        rc, _, err = self.mxgate("check", "-c", self.dir)
        self.assertEqual(rc, 0, err)
        self.assertIn("mxgate: warning: %s, line 1: service \"smtp\": postscreen is not "
                      "implemented by mxgate: this port is served by smtpd with the settings of "
                      "service \"smtpd\" (line 2)" % self.master_path, err.splitlines())

if __name__ == "__main__":
    unittest.main()
