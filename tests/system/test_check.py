"""`mxgate check` lists every configuration problem in one run, each at the main.cf or master.cf
line that wrote it, and `mxgate run` refuses to start on the same configuration.

One configuration holds, at once: a domain list entry mxgate does not support, an alias table of
a type mxgate does not read (reached through the default local_recipient_maps), a missing
texthash file and a btree table in one parameter, an ldap table whose file is missing, a missing cdb file in one
service's -o, a master.cf endpoint listed twice, and a relative virtual_mailbox_base.  Before,
check stopped at the first table of each service and said nothing about the last two, which
`run` only met later (a failed bind; 451 4.3.5 for every virtual RCPT).

What Postfix 3.7.11 says, observed with /work/shared/tools/postfix-ref on the same kind of
configuration (these texts are matched here):
  master:  warning: duplicate master.cf entry for service "127.0.0.1:2601" ([127.0.0.1]:2601)
           -- using the last entry                    (and it served the last entry's banner)
  virtual: fatal: do not specify relative pathname: virtual_mailbox_base = vmail
"""

import os
import shutil
import tempfile
import time
import unittest

import harness



class CheckTest(harness.MxTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="mxgate-check-")
        os.chmod(self.dir, 0o755)
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.p1 = harness.free_port()
        self.p2 = harness.free_port()
        self.main_path = os.path.join(self.dir, "main.cf")
        self.master_path = os.path.join(self.dir, "master.cf")

    def write(self, main_lines, master_lines):
        with open(self.main_path, "w") as f:
            f.write("".join(ln + "\n" for ln in main_lines))
        with open(self.master_path, "w") as f:
            f.write("".join(ln.format(p1=self.p1, p2=self.p2) + "\n" for ln in master_lines))

    def bad_config(self, base="var/vmail"):
        d = self.dir
        self.write([
            "myhostname = mx.example.test",                                        # 1
            "maillog_file = %s/maillog" % d,                                       # 2
            "mydestination = local.test, /etc/postfix/destinations",               # 3
            "alias_maps = dbm:/etc/aliases",                                       # 4
            "virtual_mailbox_domains = virt.test",                                 # 5
            "virtual_mailbox_maps = texthash:%s/missing, btree:%s/vmailbox" % (d, d),  # 6
            "virtual_mailbox_base = %s" % base,                                    # 7
            "virtual_uid_maps = static:%d" % os.getuid(),                          # 8
            "virtual_gid_maps = ldap:/etc/postfix/gids.cf",                        # 9
            "maillog_file_prefixes = %s" % d,                                      # 10
        ], [
            "127.0.0.1:{p1} inet n - n - - smtpd",                                 # 1
            "127.0.0.1:{p2} inet n - n - - smtpd -o virtual_uid_maps=cdb:%s/uids" % d,  # 2
            "127.0.0.1:{p1} inet n - n - - smtpd -o smtpd_banner=second",          # 3
        ])

    def expected_check_lines(self):
        m, d = self.main_path, self.dir
        sup = ("mxgate supports texthash, cdb, unix:passwd.byname, static, inline, hash, btree, "
               "lmdb, cidr, regexp, pcre, sqlite, mysql, ldap, pgsql, socketmap, tcp")
        return [
            "mxgate: error: %s, line 7: do not specify relative pathname: "
            "virtual_mailbox_base = var/vmail (virtual mailboxes need an absolute path)" % m,
            "mxgate: warning: %s, line 3: duplicate master.cf entry for service "
            "\"127.0.0.1:%d\" ([127.0.0.1]:%d) -- using the last entry; the entry at line 1 "
            "is ignored" % (self.master_path, self.p1, self.p1),
            "mxgate: error: %s, line 3: mydestination: open file \"/etc/postfix/destinations\": "
            "No such file or directory" % m,
            "mxgate: error: %s, line 4: local_recipient_maps (via $alias_maps): unsupported map "
            "type \"dbm\" in \"dbm:/etc/aliases\": %s" % (m, sup),
            "mxgate: error: %s, line 6: virtual_mailbox_maps: texthash:%s/missing: open "
            "\"%s/missing\": No such file or directory" % (m, d, d),
            "mxgate: error: %s, line 6: virtual_mailbox_maps: btree:%s/vmailbox: open database "
            "%s/vmailbox.db: No such file or directory" % (m, d, d),
            "mxgate: error: %s, line 2: virtual_uid_maps: cdb:%s/uids: open database "
            "\"%s/uids.cdb\": No such file or directory" % (self.master_path, d, d),
            "mxgate: error: %s, line 9: virtual_gid_maps: ldap:/etc/postfix/gids.cf: open "
            "\"/etc/postfix/gids.cf\": No such file or directory" % m,
        ]

    def test_check_lists_every_problem_once(self):
        self.bad_config()
        rc, out, err = self.mxgate("check", "-c", self.dir)
        self.assertEqual(rc, 1, err)
        self.assertEqual(out, "")
        # Every problem, each once, in this order: the values (by file and line), then the
        # tables of each service (the second service's main.cf problems are the same lines).
        self.assertEqual(err.splitlines(), self.expected_check_lines(), err)

    def test_run_refuses_what_check_reports(self):
        self.bad_config()
        rc, _, err = self.mxgate("run", "-c", self.dir)
        self.assertNotEqual(rc, 0, err)
        self.assertIn("mxgate: error: %s, line 7: do not specify relative pathname: "
                      "virtual_mailbox_base = var/vmail" % self.main_path, err)
        self.assertIn("mxgate: fatal: configuration in %s has 1 error; see `mxgate check -c %s`"
                      % (self.dir, self.dir), err)
        self.assertFalse(harness.port_listening(self.p1) or harness.port_listening(self.p2))

        # With an absolute base, run goes further and stops at the first table it cannot open.
        self.bad_config(base=os.path.join(self.dir, "vmail"))
        rc, _, err = self.mxgate("run", "-c", self.dir)
        self.assertNotEqual(rc, 0, err)
        self.assertIn("mxgate: fatal: service 127.0.0.1:%d: mydestination: open file "
                      "\"/etc/postfix/destinations\": No such file or directory" % self.p2, err)
        self.assertFalse(harness.port_listening(self.p1) or harness.port_listening(self.p2))
        rc, _, err = self.mxgate("check", "-c", self.dir)
        self.assertEqual(rc, 1, err)
        self.assertEqual(err.splitlines(), self.expected_check_lines()[1:], err)

    def test_empty_base_with_virtual_domains(self):
        """virtual(8) with an empty base: "fatal: bad string length 0 < 1:
        virtual_mailbox_base = " (Postfix 3.7.11); mxgate names it at check and run."""
        self.write(["virtual_mailbox_domains = virt.test",
                    "virtual_mailbox_maps = inline:{alice@virt.test=alice/}",
                    "maillog_file = %s/maillog" % self.dir,
                    "maillog_file_prefixes = %s" % self.dir],
                   ["127.0.0.1:{p1} inet n - n - - smtpd"])
        want = ("mxgate: error: bad string length 0 < 1: virtual_mailbox_base = "
                "(virtual_mailbox_domains is not empty: virtual mailboxes need an absolute path)")
        rc, _, err = self.mxgate("check", "-c", self.dir)
        self.assertEqual(rc, 1, err)
        self.assertIn(want, err.splitlines())
        rc, _, err = self.mxgate("run", "-c", self.dir)
        self.assertNotEqual(rc, 0, err)
        self.assertIn(want, err.splitlines())

    def test_duplicate_service_uses_the_last_entry(self):
        """As Postfix's master: a warning, and the last entry is the one that listens."""
        srv = self.start_server(main=dict(harness.BASE_MAIN), master=[
            "127.0.0.1:{port} inet n - n - - smtpd -o smtpd_banner=first",
            "127.0.0.1:{port} inet n - n - - smtpd -o smtpd_banner=second",
        ])
        c = self.connect(srv)
        c.expect("220 second")
        c.cmd("QUIT")
        want = ("warning: %s/master.cf, line 2: duplicate master.cf entry for service "
                "\"127.0.0.1:%d\" ([127.0.0.1]:%d) -- using the last entry; the entry at line 1 "
                "is ignored" % (srv.dir, srv.port, srv.port))
        self.assertIn(want, srv.log_messages())
        rc, _, err = self.mxgate("check", "-c", srv.dir)
        self.assertEqual(rc, 0, err)
        self.assertIn("mxgate: " + want, err.splitlines())


if __name__ == "__main__":
    unittest.main()
