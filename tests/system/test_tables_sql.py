"""mysql: and sqlite: tables against Postfix 3.7 (postfix-mysql, postfix-sqlite) and
real servers started here (tests/system/dbfixture.py: a private mariadbd with a user
that logs in with a password, an SQLite file), on Postfix Admin-like tables.

* The same .cf files go to `postmap -q` and `mxgate map -q`: the same output and
  exit code for a corpus of keys exercising %s %u %d %1 %2, the domain filter,
  result_format, several rows and columns, expansion_limit, NULL and empty
  values, keys that need quoting (quotes, backslashes, %), the legacy
  select_field/table/where_field form, TCP and UNIX-socket hosts, a dead host
  beside a live one, a wrong password.
* Settings mxgate does not implement (tls_*) make the table fail to open, naming
  the file and line, in `mxgate map` and in `mxgate check`; bad numbers and
  templates too; `mxgate check` connects to every host and names a dead one.
* Lookups share the table's connection; one idle past idle_interval is opened anew.
* The server goes away: `mxgate map -q` exits as postmap does; a running mxgate
  answers RCPT 451 4.3.0 while the server is stopped or hung, 250 once it is
  back, logs the outage once and the return once, and answers NOOP in another
  session at once while a lookup waits on the hung server.
* The same RCPT session against Postfix 3.7 (scripts/postfix-ref) and mxgate, with
  the same main.cf and .cf files, database up and stopped: the same replies.
* sqlite: the same corpus against postmap on an SQLite file; a missing file is not
  created; a writer's exclusive lock is waited for (busy timeout), then the lookup fails.
"""

import os
import re
import sqlite3
import subprocess
import threading
import time
import unittest

import dbfixture
import harness
import postfixref
import remotetables
import tables

DBUSER = "pfmail"
DBPASS = "s3cr'et\\pw"      # main.cf syntax takes it as written

# Keys that every mailbox/alias table is asked: found, not found, case, quoting, SQL
# injection attempts, the empty and the odd forms.
ADDR_KEYS = [
    "alice@example.test", "ALICE@Example.TEST", "bob@example.test", "o'brien@example.test",
    "back\\slash@example.test", "100%@example.test", "pct%s@example.test",
    "quote'd@example.test", "dave@other.test", "gone@old.test", "carol@mail.example.test",
    "list@example.test", "team@example.test", "big@example.test", "null@example.test",
    "empty@example.test", "nodomain@example.test", "under_score@example.test",
    "under%score@example.test", "nobody@example.test", "x@other.test", "@other.test",
    "@example.test", "example.test", "alice", "alice@", "@", "",
    "x' OR '1'='1", "x\\' OR 1=1 -- ", "a'b\"c\\d%e_f@example.test", "alice@example.test'",
    # UTF-8, and bytes that are not (postmap warns and finds nothing, without asking)
    "caf\u00e9@example.test", "caf\udce9@example.test", "\udcff",
]
DOMAIN_KEYS = ["example.test", "mail.example.test", "other.test", "old.test", "EXAMPLE.test",
               "nope.test", "test", "x@example.test", "@example.test", "", "o'brien.test"]
LABEL_KEYS = ["x@example.test", "x@mail.example.test", "y@a.mail.example.test", "x@test",
              "x@.test", "x@example.", "example.test", "x@other.test", "@example.test", ""]


class MariaDBCase(remotetables.ServerTableCase):
    """One mariadbd for the class (cls.db, also cls.server), with the Postfix Admin database
    (cls.dbname) and a user that logs in with a password."""

    @classmethod
    def start_fixture(cls):
        db = dbfixture.MariaDB()
        try:
            db.start()
            cls.dbname = dbfixture.load_postfix_admin(db)
            db.add_user(DBUSER, DBPASS, cls.dbname)
        except BaseException:
            db.cleanup()
            raise
        cls.db = db
        return db

    def cf(self, name, query=None, hosts=None, extra=""):
        """Write a mysql client configuration file; returns "mysql:PATH"."""
        text = ("# written by test_tables_sql\n"
                "hosts = %s\n"
                "user = %s\n"
                "password = %s\n"
                "dbname = %s\n" % (hosts or "unix:" + self.db.socket, DBUSER, DBPASS,
                                   self.dbname))
        if query is not None:
            text += "query = %s\n" % query
        text += extra
        return "mysql:" + self.tables.write(name, text)


class MysqlAnswersTest(MariaDBCase):

    def test_mailbox_query_with_quoting(self):
        spec = self.cf("mailbox.cf", "SELECT maildir FROM mailbox WHERE username='%s' AND active = 1")
        self.assert_same_answers(spec, ADDR_KEYS, min_found=6)

    def test_alias_rows_null_empty_and_result_format(self):
        spec = self.cf("alias.cf", "SELECT goto FROM alias WHERE address='%s' AND active = 1")
        self.assert_same_answers(spec, ADDR_KEYS, min_found=8)
        for fmt in ("smtp:[%s]", "%u", "%d", "%s via %S", "%U at %D", "%% %2.%1 %s"):
            spec = self.cf("alias-fmt.cf", "SELECT goto FROM alias WHERE address='%s'",
                           extra="result_format = %s\n" % fmt)
            self.assert_same_answers(spec, ADDR_KEYS, min_found=4)

    def test_user_and_domain_parts(self):
        spec = self.cf("ud.cf", "SELECT maildir FROM mailbox WHERE local_part='%u' AND domain='%d'")
        self.assert_same_answers(spec, ADDR_KEYS, min_found=5)
        spec = self.cf("u.cf", "SELECT username FROM mailbox WHERE local_part='%u'")
        self.assert_same_answers(spec, ADDR_KEYS, min_found=5)
        spec = self.cf("dom.cf", "SELECT transport FROM domain WHERE domain='%s' AND active = 1")
        self.assert_same_answers(spec, DOMAIN_KEYS, min_found=2)

    def test_domain_labels(self):
        spec = self.cf("labels.cf", "SELECT description FROM domain WHERE domain='%2.%1'")
        self.assert_same_answers(spec, LABEL_KEYS, min_found=2)
        spec = self.cf("labels3.cf",
                       "SELECT description FROM domain WHERE domain='%3.%2.%1' OR domain='%d'")
        self.assert_same_answers(spec, LABEL_KEYS, min_found=2)

    def test_several_rows_and_columns(self):
        spec = self.cf("cols.cf", "SELECT local_part, domain FROM mailbox WHERE domain='%d' "
                                  "ORDER BY username")
        self.assert_same_answers(spec, ADDR_KEYS, min_found=5)
        spec = self.cf("rows.cf", "SELECT goto, address FROM alias WHERE address='%s' ORDER BY goto")
        self.assert_same_answers(spec, ADDR_KEYS, min_found=5)

    def test_expansion_limit(self):
        for limit in ("1", "2", "3", "0"):
            spec = self.cf("limit.cf", "SELECT goto FROM alias WHERE address='%s' ORDER BY goto",
                           extra="expansion_limit = %s\n" % limit)
            self.assert_same_answers(spec, ADDR_KEYS, min_found=4)

    def test_domain_filter(self):
        spec = self.cf("domfilter.cf", "SELECT goto FROM alias WHERE address='%s'",
                       extra="domain = example.test, other.test\n")
        self.assert_same_answers(spec, ADDR_KEYS + ["postmaster@example.test"], min_found=4)
        dlist = self.tables.write("domains.txt", "other.test\n")
        spec = self.cf("domfile.cf", "SELECT goto FROM alias WHERE address='%s'",
                       extra="domain = %s\n" % dlist)
        self.assert_same_answers(spec, ADDR_KEYS, min_found=0)

    def test_legacy_query_form(self):
        spec = self.cf("legacy.cf", extra="select_field = goto\ntable = alias\n"
                                          "where_field = address\n"
                                          "additional_conditions = AND active = 1 ORDER BY goto\n")
        self.assert_same_answers(spec, ADDR_KEYS, min_found=6)

    def test_tcp_hosts_and_a_dead_host(self):
        spec = self.cf("tcp.cf", "SELECT maildir FROM mailbox WHERE username='%s'",
                       hosts="inet:127.0.0.1:%d" % self.db.port)
        self.assert_same_answers(spec, ADDR_KEYS[:8], min_found=4)
        dead = os.path.join(self.tables.path, "no-such.sock")
        spec = self.cf("twohosts.cf", "SELECT maildir FROM mailbox WHERE username='%s'",
                       hosts="unix:%s, 127.0.0.1:%d" % (dead, self.db.port))
        self.assert_same_answers(spec, ADDR_KEYS[:8], min_found=4)

    def test_localhost_option_file_and_group(self):
        # "localhost" is the client library's default socket: here the option file names it.
        keys = ["alice@example.test", "o'brien@example.test", "nobody@example.test"]
        client = self.tables.write("client.cnf", "[client]\nsocket = %s\n" % self.db.socket)
        for hosts in ("localhost", "inet:localhost", ""):
            spec = self.cf("local.cf", "SELECT maildir FROM mailbox WHERE username='%s'",
                           hosts=hosts or " ", extra="option_file = %s\n" % client)
            self.assert_same_answers(spec, keys, min_found=2)
        grouped = self.tables.write("grouped.cnf", "[client]\nsocket = /nonexistent.sock\n"
                                                   "[pfgroup]\nsocket = %s\n" % self.db.socket)
        for group, found in (("pfgroup", 2), ("client", 0)):
            spec = self.cf("group.cf", "SELECT maildir FROM mailbox WHERE username='%s'",
                           hosts="localhost",
                           extra="option_file = %s\noption_group = %s\n" % (grouped, group))
            self.assert_same_answers(spec, keys, min_found=found)

    def test_alias_domain_join_and_stored_procedures(self):
        spec = self.cf("aliasdomain.cf",
                       "SELECT maildir FROM mailbox, alias_domain WHERE "
                       "alias_domain.alias_domain = '%d' AND mailbox.username = "
                       "CONCAT('%u', '@', alias_domain.target_domain) AND mailbox.active = 1 "
                       "AND alias_domain.active = 1")
        self.assert_same_answers(spec, ADDR_KEYS + ["alice@alias.test", "bob@Alias.Test",
                                                    "o'brien@alias.test", "nobody@alias.test"],
                                 min_found=3)
        self.db.sql("DROP PROCEDURE IF EXISTS lookup_goto; DROP PROCEDURE IF EXISTS two_sets;\n"
                    "CREATE PROCEDURE lookup_goto(IN a VARCHAR(255)) READS SQL DATA "
                    "SELECT goto FROM alias WHERE address = a ORDER BY goto;\n"
                    "DELIMITER //\n"
                    "CREATE PROCEDURE two_sets(IN a VARCHAR(255)) READS SQL DATA "
                    "BEGIN SELECT goto FROM alias WHERE address = a; SELECT a; END//\n"
                    "DELIMITER ;\n"
                    "GRANT EXECUTE ON `%s`.* TO '%s'@'localhost';" % (self.dbname, DBUSER),
                    db=self.dbname)
        spec = self.cf("call.cf", "CALL lookup_goto('%s')")
        self.assert_same_answers(spec, ADDR_KEYS, min_found=8)
        spec = self.cf("twosets.cf", "CALL two_sets('%s')")
        self.assert_same_answers(spec, ["list@example.test", "nobody@example.test"], min_found=0)

    def test_no_server_and_bad_password_fail_as_postmap(self):
        dead = os.path.join(self.tables.path, "no-such.sock")
        keys = ["alice@example.test", "nobody@example.test"]
        spec = self.cf("dead.cf", "SELECT maildir FROM mailbox WHERE username='%s'",
                       hosts="unix:" + dead)
        self.assert_same_answers(spec, keys, min_found=0)
        spec = self.cf("badpw.cf", "SELECT maildir FROM mailbox WHERE username='%s'",
                       extra="password = not-the-password\n")
        self.assert_same_answers(spec, keys, min_found=0)
        for key in keys:
            self.assertEqual(tables.mxgate_q(self.tables.path, key, spec), ("", 1))

    def test_sql_error_and_suppressed_queries(self):
        spec = self.cf("syntax.cf", "SELECT maildir FROM nosuchtable WHERE username='%s'")
        self.assert_same_answers(spec, ["alice@example.test", "alice", ""], min_found=0)
        spec = self.cf("noresult.cf", "DO '%s'")
        self.assert_same_answers(spec, ["alice@example.test"], min_found=0)
        spec = self.cf("noresult-ok.cf", "DO '%s'", extra="require_result_set = no\n")
        self.assert_same_answers(spec, ["alice@example.test"], min_found=0)


class MysqlPoolTest(MariaDBCase):
    """Lookups share the table's connections; one idle for idle_interval is opened anew."""

    def connections(self):
        """The server's count of connections so far (the one that asks included)."""
        return int(self.db.sql("SHOW GLOBAL STATUS LIKE 'Connections'").split()[1])

    def test_connection_reused_and_reopened_after_idle_interval(self):
        spec = self.cf("pool.cf", "SELECT maildir FROM mailbox WHERE username='%s'",
                       extra="idle_interval = 2\n")
        keys = ["alice@example.test", "bob@example.test", "nobody@example.test"] * 10
        before = self.connections()
        p = subprocess.Popen([harness.mxgate_binary(), "map", "-c", self.tables.path, "-q", "-",
                              spec], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=harness.sanitizer_env())
        p.stdin.write("".join(k + "\n" for k in keys))
        p.stdin.flush()
        time.sleep(3.5)         # past idle_interval: the next lookup connects again
        p.stdin.write("alice@example.test\n")
        out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(harness.sanitizer_reports(err), [], err)
        self.assertEqual(out.count("alice@example.test\texample.test/alice/\n"), 11, out)
        self.assertEqual(out.count("bob@example.test\texample.test/bob/\n"), 10, out)
        self.assertNotIn("nobody", out)
        # mxgate's two, and the one that asks now
        self.assertEqual(self.connections() - before, 2 + 1)


class MysqlSharedChecksTest(MariaDBCase, harness.MxTestCase, remotetables.OutageChecks):
    """The checks every remote table type passes (tests/system/remotetables.py)."""

    VIRT = "SELECT maildir FROM mailbox WHERE local_part='%u' AND active = 1"

    def tearDown(self):
        if not self.db.running():
            self.db.start()
        super().tearDown()

    def test_non_utf8_key_not_asked(self):
        self.assert_non_utf8_not_asked(self.cf("utf8.cf", self.VIRT))

    def test_outage_seen_by_map_check_and_rcpt(self):
        spec = self.cf("virt.cf", self.VIRT, extra="retry_interval = 1\n")
        self.map_q_fails_like_postmap(spec, self.db)
        self.rcpt_451_while_down(spec, self.db, r"%s: connect to mysql server unix:")

    def test_silent_server_times_out(self):
        # The option file's connect-timeout bounds postmap's wait as well as mxgate's.
        opts = self.tables.write("silent.cnf", "[client]\nconnect-timeout = 2\n")
        self.silent_server_times_out(
            lambda port: self.cf("silent.cf", self.VIRT, hosts="inet:127.0.0.1:%d" % port,
                                 extra="option_file = %s\n" % opts), bound=8)

    def test_parallel_rcpts(self):
        self.parallel_rcpts(self.cf("par.cf", self.VIRT))


class MysqlOpenAndCheckTest(MariaDBCase):
    """What mxgate does not implement is refused at open with file and line; check connects."""

    def mxgate(self, *args):
        r = subprocess.run([harness.mxgate_binary()] + list(args), capture_output=True,
                           text=True, timeout=30, env=harness.sanitizer_env())
        self.assertEqual(harness.sanitizer_reports(r.stderr), [], r.stderr)
        return r

    def test_tls_settings_are_refused_with_file_and_line(self):
        for name, value in (("tls_CAfile", "/etc/ssl/certs/ca-certificates.crt"),
                            ("tls_verify_cert", "no"), ("tls_cert_file", "/x.pem")):
            spec = self.cf("tls.cf", "SELECT maildir FROM mailbox WHERE username='%s'",
                           extra="%s = %s\n" % (name, value))
            path = spec.split(":", 1)[1]
            r = self.mxgate("map", "-c", self.tables.path, "-q", "alice@example.test", spec)
            self.assertEqual((r.stdout, r.returncode), ("", 1))
            self.assertIn('%s, line 7: setting "%s" is not supported by mxgate' % (path, name),
                          r.stderr)

    def test_check_names_the_refused_setting(self):
        spec = self.cf("tls.cf", "SELECT maildir FROM mailbox WHERE username='%s'",
                       extra="tls_CApath = /etc/ssl/certs\n")
        path = spec.split(":", 1)[1]
        srv = harness.Server(main=dict(harness.BASE_MAIN, virtual_mailbox_domains="example.test",
                                       virtual_mailbox_maps=spec), virtual_users=[])
        self.addCleanup(srv.cleanup)
        r = self.mxgate("check", "-c", srv.dir)
        self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn('%s, line 7: setting "tls_CApath" is not supported by mxgate' % path,
                      r.stdout + r.stderr)

    def test_check_connects_to_every_server(self):
        good = self.cf("good.cf", "SELECT maildir FROM mailbox WHERE username='%s'")
        dead = os.path.join(self.tables.path, "no-such.sock")
        two = self.cf("two.cf", "SELECT maildir FROM mailbox WHERE username='%s'",
                      hosts="unix:%s unix:%s" % (self.db.socket, dead))
        for maps, want in ((good, None), (two, "connect to mysql server unix:%s: " % dead)):
            srv = harness.Server(main=dict(harness.BASE_MAIN,
                                           virtual_mailbox_domains="example.test",
                                           virtual_mailbox_maps=maps), virtual_users=[])
            self.addCleanup(srv.cleanup)
            r = self.mxgate("check", "-c", srv.dir)
            if want is None:
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            else:
                self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertIn("main.cf, line ", r.stdout + r.stderr)
                self.assertIn("virtual_mailbox_maps: %s: %s" % (maps, want), r.stdout + r.stderr)

    def test_bad_numbers_and_templates_are_refused(self):
        for extra, want in (("expansion_limit = many\n", "line 7: bad numerical configuration"),
                            ("retry_interval = 0\n", 'line 7: "retry_interval" must be at least 1'),
                            ("require_result_set = maybe\n", "line 7: bad boolean configuration"),
                            ("result_format = %x\n", "line 7: invalid result template")):
            spec = self.cf("bad.cf", "SELECT maildir FROM mailbox WHERE username='%s'",
                           extra=extra)
            r = self.mxgate("map", "-c", self.tables.path, "-q", "alice@example.test", spec)
            self.assertEqual((r.stdout, r.returncode), ("", 1), extra)
            self.assertIn(want, r.stderr, extra)
        spec = self.cf("badq.cf", "SELECT maildir FROM mailbox WHERE username='%z'")
        r = self.mxgate("map", "-c", self.tables.path, "-q", "alice@example.test", spec)
        self.assertEqual((r.stdout, r.returncode), ("", 1))
        self.assertIn("line 6: invalid query template", r.stderr)


class MysqlOutageTest(MariaDBCase, harness.MxTestCase):
    """The server goes away and comes back, seen by `mxgate map` and by SMTP clients."""

    TIMEOUT = 2         # connect-timeout in the option file, read_timeout in the .cf

    def outage_cf(self, name, query):
        opts = self.tables.write("my.cnf", "[client]\nconnect-timeout=%d\n" % self.TIMEOUT)
        return self.cf(name, query, extra="option_file = %s\nretry_interval = 1\n"
                                          "read_timeout = %d\n" % (opts, self.TIMEOUT))

    def tearDown(self):
        if not self.db.running():
            self.db.start()
        super().tearDown()

    def test_map_query_with_the_server_stopped(self):
        spec = self.outage_cf("mailbox.cf", "SELECT maildir FROM mailbox WHERE username='%s'")
        self.assert_same_answers(spec, ["alice@example.test"])
        self.db.stop()
        self.assert_same_answers(spec, ["alice@example.test", "nobody@example.test"], min_found=0)
        self.assertEqual(tables.mxgate_q(self.tables.path, "alice@example.test", spec), ("", 1))
        self.db.start()
        self.assert_same_answers(spec, ["alice@example.test"])

    def rcpt(self, c, addr, timeout=30):
        c.send(b"RCPT TO:<%s>\r\n" % addr.encode())
        return c.read_reply(timeout=timeout)

    def test_rcpt_while_the_server_is_down_or_hung(self):
        domains = self.outage_cf("domains.cf", "SELECT domain FROM domain WHERE domain='%s' "
                                               "AND active = 1")
        mailbox = self.outage_cf("mailbox.cf", "SELECT maildir FROM mailbox WHERE "
                                               "username='%s' AND active = 1")
        srv = self.start_server(main=dict(harness.BASE_MAIN, virtual_mailbox_domains=domains,
                                          virtual_mailbox_maps=mailbox),
                                virtual_users=[])
        # map_pool's lines, once per outage: the first lookup that finds no server says why
        sock = re.escape(self.db.socket)
        outage = (r"warning: %s: server unavailable: (connect|query) to mysql server unix:%s"
                  % (re.escape(domains), sock))
        back = r"%s: server answers again$" % re.escape(domains)
        c = self.connect(srv)
        c.expect(220)
        c.cmd("EHLO client.example")
        c.cmd("MAIL FROM:<sender@client.example>").code == 250 or self.fail("MAIL")
        self.assertEqual(self.rcpt(c, "alice@example.test").text, "250 2.1.5 Ok")
        self.assertTrue(self.rcpt(c, "nobody@example.test").text.startswith("550 5.1.1 "))

        # Stopped: every RCPT is a 451 at once, and the outage is logged once.
        self.db.stop()
        for addr in ("alice@example.test", "bob@example.test", "alice@example.test"):
            t0 = time.monotonic()
            rep = self.rcpt(c, addr)
            self.assertEqual(rep.text, "451 4.3.0 <%s>: Temporary lookup failure" % addr)
            self.assertLess(time.monotonic() - t0, self.TIMEOUT * 3)
        self.assertEqual(len(harness.wait_log_count(srv, outage, 1)), 1,
                         "\n".join(srv.log_lines()[-30:]))

        # Back: after retry_interval the lookups answer again; the return is logged once.
        self.db.start()
        time.sleep(1.2)
        self.assertEqual(self.rcpt(c, "alice@example.test").text, "250 2.1.5 Ok")
        self.assertEqual(self.rcpt(c, "bob@example.test").text, "250 2.1.5 Ok")
        self.assertEqual(len(harness.wait_log_count(srv, back, 1)), 1,
                         "\n".join(srv.log_lines()[-30:]))

        # Hung (SIGSTOP): the lookup waits for the timeouts, NOOP elsewhere does not.
        self.db.pause()
        answer = {}

        def slow_rcpt():
            t0 = time.monotonic()
            answer["reply"] = self.rcpt(c, "alice@example.test", timeout=60)
            answer["secs"] = time.monotonic() - t0

        th = threading.Thread(target=slow_rcpt)
        th.start()
        time.sleep(0.3)
        other = self.connect(srv)
        other.expect(220)
        for _ in range(5):
            t0 = time.monotonic()
            rep = other.cmd("NOOP")
            self.assertEqual(rep.text, "250 2.0.0 Ok")
            self.assertLess(time.monotonic() - t0, 0.5, "NOOP waited on the hung database")
        self.assertTrue(th.is_alive(), "the RCPT did not wait on the hung server")
        th.join(60)
        self.assertEqual(answer["reply"].text,
                         "451 4.3.0 <alice@example.test>: Temporary lookup failure")
        # the read timeout on the pooled connection, and no second wait on a new one
        self.assertGreaterEqual(answer["secs"], self.TIMEOUT * 0.9)
        self.assertLess(answer["secs"], self.TIMEOUT * 4)
        self.db.resume()
        time.sleep(1.2)
        self.assertEqual(self.rcpt(c, "alice@example.test").text, "250 2.1.5 Ok")
        c.cmd("QUIT")
        other.cmd("QUIT")
        srv.check()
        self.assertEqual(len(harness.log_matches(srv, outage)), 2,
                         "\n".join(srv.log_lines()[-40:]))
        self.assertEqual(len(harness.log_matches(srv, back)), 2,
                         "\n".join(srv.log_lines()[-40:]))


class MysqlPostfixReferenceTest(MariaDBCase, postfixref.RcptCase):
    """One RCPT session against Postfix 3.7 and mxgate, with the same main.cf and the same
    mysql .cf files, while the database is up and after it stopped: the same replies."""
    ref_name = "sql"

    RCPTS = ["alice@example.test", "ALICE@EXAMPLE.TEST", "nobody@example.test",
             "o'brien@example.test", "carol@mail.example.test", "dave@other.test",
             "gone@old.test", "x@alias.test", "x@nowhere.test"]

    def tearDown(self):
        if not self.db.running():
            self.db.start()
        super().tearDown()

    def ref_cf(self, name, query):
        path = os.path.join(self.ref.dir, name)
        with open(path, "w") as f:
            f.write("hosts = unix:%s\nuser = %s\npassword = %s\ndbname = %s\nquery = %s\n"
                    % (self.db.socket, DBUSER, DBPASS, self.dbname, query))
        os.chmod(path, 0o644)
        return "mysql:" + path

    def test_rcpt_replies_as_postfix(self):
        params = self.main_params(
            virtual_mailbox_domains=self.ref_cf(
                "domains.cf", "SELECT domain FROM domain WHERE domain='%s' AND active = 1"),
            virtual_mailbox_maps=self.ref_cf(
                "mailbox.cf", "SELECT maildir FROM mailbox WHERE username='%s' AND active = 1"))
        srv = self.start_server(main=params, virtual_users=[])
        got = self.assert_rcpt_as_postfix(params, self.RCPTS, srv=srv)
        self.assertIn("RCPT alice@example.test: 250 2.1.5 Ok", got)

        self.db.stop()
        got = self.assert_rcpt_as_postfix(params, self.RCPTS[:3], ref_started=True, srv=srv)
        self.assertTrue(got[1].endswith("451 4.3.0 <alice@example.test>: Temporary lookup failure"),
                        got)
        srv.check()


class SqliteAnswersTest(tables.TableCase):
    """sqlite: the same Postfix Admin rows in a file, postmap -q and mxgate map -q alike."""

    def setUp(self):
        super().setUp()
        self.dbpath = dbfixture.sqlite_postfix_admin(self.tables.file("pfa.sqlite"))

    def cf(self, name, query=None, extra="", dbpath=None):
        text = "# written by test_tables_sql\ndbpath = %s\n" % (dbpath or self.dbpath)
        if query is not None:
            text += "query = %s\n" % query
        return "sqlite:" + self.tables.write(name, text + extra)

    def test_mailbox_and_alias_queries_with_quoting(self):
        spec = self.cf("mailbox.cf", "SELECT maildir FROM mailbox WHERE username='%s' AND active = 1")
        self.assert_same_answers(spec, ADDR_KEYS, min_found=6)
        spec = self.cf("alias.cf", "SELECT goto FROM alias WHERE address='%s' ORDER BY goto")
        self.assert_same_answers(spec, ADDR_KEYS, min_found=8)

    def test_parts_labels_and_result_format(self):
        spec = self.cf("ud.cf", "SELECT maildir FROM mailbox WHERE local_part='%u' AND domain='%d'")
        self.assert_same_answers(spec, ADDR_KEYS, min_found=5)
        spec = self.cf("labels.cf", "SELECT description FROM domain WHERE domain='%2.%1'")
        self.assert_same_answers(spec, LABEL_KEYS, min_found=2)
        for fmt in ("smtp:[%s]", "%u", "%d", "%U at %D", "%% %2.%1 %s"):
            spec = self.cf("fmt.cf", "SELECT goto FROM alias WHERE address='%s' ORDER BY goto",
                           extra="result_format = %s\n" % fmt)
            self.assert_same_answers(spec, ADDR_KEYS, min_found=4)

    def test_first_column_of_each_row_and_expansion_limit(self):
        spec = self.cf("cols.cf", "SELECT local_part, domain FROM mailbox WHERE domain='%d' "
                                  "ORDER BY username")
        self.assert_same_answers(spec, ADDR_KEYS, min_found=5)
        for limit in ("1", "2", "3"):
            spec = self.cf("limit.cf", "SELECT goto FROM alias WHERE address='%s' ORDER BY goto",
                           extra="expansion_limit = %s\n" % limit)
            self.assert_same_answers(spec, ADDR_KEYS, min_found=4)

    def test_domain_filter_and_legacy_form(self):
        spec = self.cf("domfilter.cf", "SELECT goto FROM alias WHERE address='%s'",
                       extra="domain = example.test\n")
        self.assert_same_answers(spec, ADDR_KEYS, min_found=4)
        spec = self.cf("legacy.cf", extra="select_field = goto\ntable = alias\n"
                                          "where_field = address\n"
                                          "additional_conditions = AND active = 1\n")
        self.assert_same_answers(spec, ADDR_KEYS, min_found=6)

    def test_sql_error_missing_file_and_a_locked_database(self):
        spec = self.cf("syntax.cf", "SELECT maildir FROM nosuchtable WHERE username='%s'")
        self.assert_same_answers(spec, ["alice@example.test", "alice"], min_found=0)
        # mxgate opens the file read-only: a missing file is an open error (Postfix creates
        # an empty database there and its query fails); both say nothing and exit 1.
        missing = self.tables.file("missing.sqlite")
        spec = self.cf("missing.cf", "SELECT maildir FROM mailbox WHERE username='%s'",
                       dbpath=missing)
        self.assertEqual(tables.mxgate_q(self.tables.path, "alice@example.test", spec), ("", 1))
        self.assertFalse(os.path.exists(missing), "mxgate created the database file")
        self.assert_same_answers(spec, ["alice@example.test"], min_found=0)
        # A writer holds an exclusive lock: the lookup waits the busy timeout, then fails.
        spec = self.cf("locked.cf", "SELECT maildir FROM mailbox WHERE username='%s'")
        con = sqlite3.connect(self.dbpath, isolation_level=None)
        try:
            con.execute("BEGIN EXCLUSIVE")
            t0 = time.monotonic()
            self.assertEqual(tables.mxgate_q(self.tables.path, "alice@example.test", spec),
                             ("", 1))
            self.assertGreater(time.monotonic() - t0, 1.0, "no busy timeout")
            self.assert_same_answers(spec, ["alice@example.test"], min_found=0)
        finally:
            con.execute("ROLLBACK")
            con.close()
        self.assert_same_answers(spec, ["alice@example.test"], min_found=1)


class SqliteDaemonTest(tables.TableCase, harness.MxTestCase):
    """A running mxgate with sqlite: tables, many sessions at once."""

    def test_root_only_database_under_concurrent_rcpts(self):
        # Postfix opens its tables before it drops privileges, so a database only root may
        # read works; mxgate opens every connection of the pool then too.
        db = dbfixture.sqlite_postfix_admin(self.tables.file("pfa.sqlite"))
        os.chmod(db, 0o600)
        cf = self.tables.write("mailbox.cf", "dbpath = %s\nquery = SELECT maildir FROM mailbox "
                                             "WHERE username='%%s' AND active = 1\n" % db)
        os.chmod(self.tables.path, 0o755)
        srv = self.start_server(main=dict(harness.BASE_MAIN, virtual_mailbox_domains="example.test",
                                          virtual_mailbox_maps="sqlite:" + cf),
                                virtual_users=[])
        rcpts = ["alice@example.test", "bob@example.test", "o'brien@example.test",
                 "nobody@example.test"] * 10
        replies, errors = [], []

        def session():
            try:
                with harness.Client(srv.port, timeout=30) as c:
                    c.read_reply()
                    c.cmd("EHLO client.example")
                    c.cmd("MAIL FROM:<s@client.example>")
                    # pipelined: the lookups of many sessions overlap
                    c.send(b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in rcpts))
                    got = [c.read_reply().text for _ in rcpts]
                    c.cmd("QUIT")
                    replies.append(got)
            except Exception as e:      # reported below, in the test's thread
                errors.append(repr(e))

        threads = [threading.Thread(target=session) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        want = ["550 5.1.1 <%s>: Recipient address rejected: User unknown in virtual mailbox "
                "table" % r if r.startswith("nobody") else "250 2.1.5 Ok" for r in rcpts]
        self.assertEqual(len(replies), 8)
        for got in replies:
            self.assertEqual(got, want)
        srv.check()
        self.assertEqual(harness.log_matches(srv, r"sqlite|lookup error"), [])


if __name__ == "__main__":
    unittest.main()
