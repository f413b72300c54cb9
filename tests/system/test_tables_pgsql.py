"""pgsql: tables (pgsql_table(5) files) on a PostgreSQL server that the test starts.

Postfix's postmap -q (postfix-pgsql) and mxgate map -q get the same .cf files and the
same keys, and must print the same and exit alike: found, missing, multi-valued (rows
and columns), NULL and empty values, %u %d %1 %2 queries, the domain filter,
result_format, expansion_limit, keys that need quoting, the connection forms (UNIX
socket, host:port with a password, postgresql:// URI), the obsolete query settings, a
bad query and a missing dbname.  Then the server goes away: map -q fails as postmap
does, and a running mxgate answers RCPT 451 4.3.0 while it is down and 250 once it is
back, logging the outage once and the recovery once.
"""

import os
import unittest
import urllib.parse

import harness
import pgfixture
import remotetables

SCHEMA = r"""
CREATE TABLE users (email text, local text, domain text, maildir text, alias text);
INSERT INTO users VALUES
  ('alice@example.test', 'alice', 'example.test', 'alice/', 'alice@elsewhere.test'),
  ('bob@example.test', 'bob', 'example.test', 'bob/', 'bob1@x.test'),
  ('bob@example.test', 'bob', 'example.test', 'bob-too/', 'bob2@x.test'),
  ('o''neil@example.test', 'o''neil', 'example.test', 'oneil/', NULL),
  ('back\slash@example.test', 'back\slash', 'example.test', 'slash/', ''),
  ('pct%s@example.test', 'pct%s', 'example.test', 'pct/', 'pct'),
  ('nullv@example.test', 'nullv', 'example.test', NULL, NULL),
  ('empty@example.test', 'empty', 'example.test', '', ''),
  ('carol@other.test', 'carol', 'other.test', 'carol/', 'carol@other.test'),
  ('dave', 'dave', '', 'dave/', 'dave@local.test'),
  ('@example.test', '', 'example.test', 'catchall/', 'postmaster@example.test');
CREATE TABLE domains (tld text, sld text, name text);
INSERT INTO domains VALUES ('test', 'example', 'example.test'), ('test', 'other', 'other.test'),
  ('test', 'other', 'other2.test');
"""

KEYS = ["alice@example.test", "ALICE@Example.Test", "bob@example.test", "o'neil@example.test",
        "back\\slash@example.test", "pct%s@example.test", "nullv@example.test",
        "empty@example.test", "carol@other.test", "dave", "@example.test", "example.test",
        "nobody@example.test", "nobody@nowhere.test", "x'; DROP TABLE users; --@example.test",
        "a@b@example.test", "@", "", "mail.example.test", "user@sub.example.test",
        "\udcff@example.test", "caf\u00e9@example.test"]    # bytes 0xff (not UTF-8); UTF-8


class PgsqlCase(remotetables.ServerTableCase):
    @classmethod
    def start_fixture(cls):
        pg = pgfixture.PgServer()
        try:
            pg.start()
            pg.sql(SCHEMA)
        except BaseException:
            pg.cleanup()
            raise
        cls.pg = pg
        return pg

    def cf(self, name, hosts=None, **settings):
        """A pgsql .cf file in the table dir: the socket by default, user mx, dbname mail."""
        pg = self.pg
        lines = {"hosts": hosts or "unix:" + pg.socket_dir, "user": pg.user,
                 "password": pg.password, "dbname": pg.dbname}
        lines.update(settings)
        text = "".join("%s = %s\n" % (k, v) for k, v in lines.items() if v is not None)
        return "pgsql:" + self.tables.write(name, text)


class PgsqlAnswersTest(PgsqlCase):
    def test_key_query_on_socket(self):
        spec = self.cf("plain.cf", hosts="postgresql:///%s?host=%s&port=%d&user=%s"
                       % (self.pg.dbname, urllib.parse.quote(self.pg.socket_dir, safe=""),
                          self.pg.port, self.pg.user),
                       query="SELECT maildir FROM users WHERE email = '%s'")
        self.assert_same_answers(spec, KEYS, min_found=8)

    def test_unix_socket_form(self):
        # "unix:DIR" names the socket directory; the port is libpq's default, which both
        # postmap and mxgate take from PGPORT: the fixture's server is not on 5432.
        old = os.environ.get("PGPORT")
        os.environ["PGPORT"] = str(self.pg.port)
        self.addCleanup(lambda: os.environ.pop("PGPORT") if old is None
                        else os.environ.__setitem__("PGPORT", old))
        spec = self.cf("unix.cf", hosts="unix:" + self.pg.socket_dir,
                       query="SELECT maildir FROM users WHERE email = '%s'")
        self.assert_same_answers(spec, KEYS, min_found=8)

    def test_non_utf8_key(self):
        self.assert_non_utf8_not_asked(self.cf("utf8.cf", hosts="127.0.0.1:%d" % self.pg.port,
                                               query="SELECT maildir FROM users "
                                                     "WHERE email = '%s'"))

    def test_columns_and_rows_with_password_on_tcp(self):
        spec = self.cf("tcp.cf", hosts="inet:127.0.0.1:%d" % self.pg.port,
                       query="SELECT maildir, alias FROM users WHERE email = '%s'")
        self.assert_same_answers(spec, KEYS, min_found=8)

    def test_user_domain_and_result_format(self):
        spec = self.cf("ud.cf", hosts="127.0.0.1:%d" % self.pg.port,
                       query="SELECT maildir FROM users WHERE local = '%u' AND domain = '%d'",
                       result_format="%s %S %U %D/%1")
        self.assert_same_answers(spec, KEYS, min_found=5)

    def test_value_parts_in_result_format(self):
        spec = self.cf("rf.cf", hosts="127.0.0.1:%d" % self.pg.port,
                       query="SELECT alias FROM users WHERE email = '%s'",
                       result_format="smtp:[%d] %u")
        self.assert_same_answers(spec, KEYS, min_found=4)

    def test_domain_labels(self):
        spec = self.cf("labels.cf", hosts="127.0.0.1:%d" % self.pg.port,
                       query="SELECT name FROM domains WHERE tld = '%1' AND sld = '%2'")
        self.assert_same_answers(spec, KEYS + ["x@a.other.test", "x@test", "x@.test"],
                                 min_found=4)

    def test_domain_filter(self):
        self.tables.write("searchdomains", "other.test OK\n")
        spec = self.cf("dom.cf", hosts="127.0.0.1:%d" % self.pg.port,
                       query="SELECT maildir FROM users WHERE email = '%s'",
                       domain="example.test, texthash:" + self.tables.file("searchdomains"))
        self.assert_same_answers(spec, KEYS, min_found=4)

    def test_expansion_limit(self):
        spec = self.cf("limit.cf", hosts="127.0.0.1:%d" % self.pg.port,
                       query="SELECT maildir FROM users WHERE email = '%s'",
                       expansion_limit="1")
        # bob has two rows: a lookup error in both; the others are found or not.
        self.assert_same_answers(spec, KEYS, min_found=4)

    def test_obsolete_query_settings(self):
        spec = self.cf("old.cf", hosts="127.0.0.1:%d" % self.pg.port, select_field="maildir",
                       table="users", where_field="email",
                       additional_conditions="AND maildir <> 'bob-too/'")
        self.assert_same_answers(spec, KEYS, min_found=4)
        spec = self.cf("fn.cf", hosts="127.0.0.1:%d" % self.pg.port, select_function="upper")
        self.assert_same_answers(spec, ["alice@example.test", "o'neil@example.test"])

    def test_bad_query_and_bad_files(self):
        bad = self.cf("badq.cf", hosts="127.0.0.1:%d" % self.pg.port,
                      query="SELECT maildir FROM nosuchtable WHERE email = '%s'")
        self.assert_same_answers(bad, ["alice@example.test", "dave"], min_found=0)
        nodb = self.cf("nodb.cf", hosts="127.0.0.1:%d" % self.pg.port, dbname=None,
                       query="SELECT maildir FROM users WHERE email = '%s'")
        self.assert_same_answers(nodb, ["alice@example.test"], min_found=0)
        badpw = self.cf("badpw.cf", hosts="127.0.0.1:%d" % self.pg.port, password="wrong",
                        query="SELECT maildir FROM users WHERE email = '%s'")
        self.assert_same_answers(badpw, ["alice@example.test"], min_found=0)
        badtpl = self.cf("badtpl.cf", hosts="127.0.0.1:%d" % self.pg.port,
                         query="SELECT maildir FROM users WHERE email = '%x'")
        self.assert_same_answers(badtpl, ["alice@example.test"], min_found=0)


class PgsqlOutageTest(PgsqlCase, harness.MxTestCase, remotetables.OutageChecks):
    def test_map_q_fails_like_postmap_when_down(self):
        spec = self.cf("down.cf", hosts="127.0.0.1:%d" % self.pg.port,
                       query="SELECT maildir FROM users WHERE email = '%s'",
                       retry_interval="1")
        self.map_q_fails_like_postmap(spec, self.pg)

    def test_silent_server_times_out(self):
        # Postfix's pgsql client has no timeout of its own: libpq's connect_timeout in a
        # URI bounds both (each of the two tries of a single host).
        self.silent_server_times_out(
            lambda port: self.cf("silent.cf", hosts="postgresql://%s@127.0.0.1:%d/%s"
                                 "?connect_timeout=2" % (self.pg.user, port, self.pg.dbname),
                                 query="SELECT maildir FROM users WHERE email = '%s'"),
            bound=8)

    def vusers_cf(self, name):
        self.pg.sql("CREATE TABLE IF NOT EXISTS vusers (email text, maildir text);"
                    "DELETE FROM vusers;"
                    "INSERT INTO vusers VALUES ('alice@%s', 'alice/')" % remotetables.VDOMAIN)
        return self.cf(name, hosts="inet:127.0.0.1:%d" % self.pg.port,
                       query="SELECT maildir FROM vusers WHERE email = '%s'",
                       retry_interval="1")

    def test_parallel_lookups(self):
        self.parallel_rcpts(self.vusers_cf("parallel.cf"))

    def test_rcpt_451_while_down_then_250(self):
        cf = self.vusers_cf("vmail.cf")
        self.rcpt_451_while_down(cf, self.pg, r"virtual_mailbox_maps: %s: connect to pgsql "
                                 r"server inet:127\.0\.0\.1:\d+: ")


if __name__ == "__main__":
    unittest.main()
