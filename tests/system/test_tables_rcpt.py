"""RCPT replies from every file table type, compared live with Postfix 3.7.

One main.cf for both servers: a virtual domain per table type (hash.test, btree.test,
lmdb.test, cdb.test, texthash.test, regexp.test, pcre.test), virtual_mailbox_maps lists
one table of each type (built with Postfix's postmap), recipient_delimiter = +.  One
session asks, for each domain, a user, the user with an extension, the user in capitals, a
catch-all domain's unknown user and an unknown user: Postfix and mxgate must give the same
reply to every RCPT (key orders, extensions, case folding, pattern tables asked the whole
address once).  Then the hash table is rebuilt with postmap and a new session must see it
in both.  RemoteTablesRcptTest does the same for pgsql, ldap, sqlite, socketmap and
tcp tables (test_tables_sql.py: mysql).
"""

import os
import subprocess
import unittest

import dbfixture
import harness
import ldapfixture
import pgfixture
import postfixref
import test_tables_socket as socktables

FIXED = ("hash", "btree", "lmdb", "cdb", "texthash")


def fixed_table(domain):
    return ("alice@%s alice/\nbob+special@%s bobspecial/\nBob@%s bob/\n@catch.%s catchall/\n"
            % (domain, domain, domain, domain))


PATTERNS = {
    "regexp": "/^alice@regexp\\.test$/ alice/\n/^(bob)(\\+.*)?@regexp\\.test$/ $1/\n"
              "/@catch\\.regexp\\.test$/ catchall/\n",
    "pcre": "/^alice@pcre\\.test$/ alice/\nif /@pcre\\.test$/\n/^bob\\+?/ bob/\nendif\n"
            "/^ALICE@CATCH\\.pcre\\.test$/i exact/\n/@catch\\.pcre\\.test$/ catchall/\n",
}


def rcpts_for(domain):
    return ["alice@" + domain, "ALICE@" + domain.upper(), "alice+ext@" + domain,
            "bob@" + domain, "bob+special@" + domain, "bob+other@" + domain,
            "nobody@" + domain, "alice@catch." + domain, "x@catch." + domain]


class FileTablesRcptTest(postfixref.RcptCase):
    ref_name = "rcpt-files"

    def postmap(self, spec):
        subprocess.run(["postmap", spec], check=True, timeout=60)

    def test_rcpt_replies_as_postfix(self):
        d = self.ref.dir
        maps, domains, rcpts = [], [], []
        for t in FIXED + tuple(PATTERNS):
            dom = t + ".test"
            domains += [dom, "catch." + dom]
            src = os.path.join(d, t + "-vmailbox")
            with open(src, "w") as f:
                f.write(PATTERNS.get(t) or fixed_table(dom))
            os.chmod(src, 0o644)
            if t in ("hash", "btree", "lmdb", "cdb"):
                self.postmap("%s:%s" % (t, src))
            maps.append("%s:%s" % (t, src))
            rcpts += rcpts_for(dom)
        params = self.main_params(recipient_delimiter="+",
                                  virtual_mailbox_domains=", ".join(domains),
                                  virtual_mailbox_maps=", ".join(maps))
        srv = self.start_server(main=params, virtual_users=[])
        got = self.assert_rcpt_as_postfix(params, rcpts, srv=srv)
        for want in ("RCPT alice@hash.test: 250", "RCPT x@catch.lmdb.test: 250",
                     "RCPT bob+other@regexp.test: 250", "RCPT alice+ext@pcre.test: 550"):
            self.assertTrue(any(g.startswith(want) for g in got), (want, got))

        # hash rebuilt: the next session of each server sees carol
        src = os.path.join(d, "hash-vmailbox")
        with open(src, "a") as f:
            f.write("carol@hash.test carol/\n")
        self.postmap("hash:" + src)
        got = self.assert_rcpt_as_postfix(params, ["carol@hash.test"], ref_started=True, srv=srv)
        self.assertTrue(got[1].startswith("RCPT carol@hash.test: 250"), got)
        srv.check()


PG_SCHEMA = """
CREATE TABLE mailbox (username text PRIMARY KEY, maildir text);
INSERT INTO mailbox VALUES ('alice@pg.test', 'alice/'), ('bob@pg.test', 'bob/'),
  ('@catch.pg.test', 'catchall/');
CREATE TABLE domain (domain text PRIMARY KEY);
INSERT INTO domain VALUES ('pg.test'), ('catch.pg.test');
"""


class RemoteTablesRcptTest(postfixref.RcptCase):
    """pgsql domains and mailboxes, ldap, sqlite, socketmap and tcp mailboxes: the same RCPT
    replies as Postfix while the servers are up, and the same 451 once PostgreSQL is
    stopped."""
    ref_name = "rcpt-remote"

    def test_rcpt_replies_as_postfix(self):
        pg = pgfixture.PgServer()
        self.addCleanup(pg.cleanup)
        pg.start()
        pg.sql(PG_SCHEMA)
        ld = ldapfixture.LdapServer()
        self.addCleanup(ld.cleanup)
        ld.start()
        S = ldapfixture.SUFFIX
        ld.add("dn: uid=carol,ou=people,%s\nobjectClass: inetOrgPerson\n"
               "objectClass: mailRecipient\nuid: carol\ncn: carol\nsn: carol\n"
               "mailacceptinggeneralid: carol@ldap.test\nmaildrop: carol/\n" % S)
        d = self.ref.dir

        def cf(name, text):
            p = os.path.join(d, name)
            with open(p, "w") as f:
                f.write(text)
            os.chmod(p, 0o644)
            return p

        pgc = "hosts = inet:127.0.0.1:%d\nuser = %s\npassword = %s\ndbname = %s\n" % (
            pg.port, pg.user, pg.password, pg.dbname)
        doms = cf("pg-domains.cf", pgc + "query = SELECT domain FROM domain WHERE domain='%s'\n")
        mbox = cf("pg-mailbox.cf", pgc + "query = SELECT maildir FROM mailbox "
                                         "WHERE username='%s'\n")
        sq = cf("sqlite-mailbox.cf", "dbpath = %s\nquery = SELECT maildir FROM mailbox WHERE "
                                      "username='%%s' AND active = 1\n"
                                      % dbfixture.sqlite_postfix_admin(os.path.join(d, "pfa.db")))
        socktables.SOCKETMAP_DATA["rcpt"] = {"erin@sock.test": "OK erin/"}
        sock = socktables.start(socktables.ThreadingTCPServer(("127.0.0.1", 0),
                                                             socktables.SocketmapHandler))
        self.addCleanup(sock.server_close)
        self.addCleanup(sock.shutdown)
        socktables.TCP_DATA["grace@tcp.test"] = "200 " + socktables.tcp_quote("grace/")
        tcp = socktables.start(socktables.ThreadingTCPServer(("127.0.0.1", 0),
                                                            socktables.TcpHandler))
        self.addCleanup(tcp.server_close)
        self.addCleanup(tcp.shutdown)
        ldcf = cf("ldap-mailbox.cf", "server_host = %s\nsearch_base = ou=people,%s\n"
                                     "version = 3\nresult_attribute = maildrop\n" % (ld.url, S))
        params = self.main_params(recipient_delimiter="+",
                                  virtual_mailbox_domains="pgsql:%s, ldap.test, example.test, "
                                                          "sock.test, tcp.test" % doms,
                                  virtual_mailbox_maps="pgsql:%s, ldap:%s, sqlite:%s, "
                                                       "socketmap:inet:127.0.0.1:%d:rcpt, "
                                                       "tcp:127.0.0.1:%d"
                                                       % (mbox, ldcf, sq, sock.server_address[1],
                                                          tcp.server_address[1]))
        rcpts = ["alice@pg.test", "Alice@PG.test", "alice+x@pg.test", "nobody@pg.test",
                 "x@catch.pg.test", "carol@ldap.test", "carol+y@ldap.test", "dave@ldap.test",
                 "alice@example.test", "ALICE@example.test", "gone@example.test",
                 "erin@sock.test", "Erin+tag@sock.test", "frank@sock.test", "grace@tcp.test",
                 "GRACE@tcp.test", "henry@tcp.test", "x@nowhere.test"]
        srv = self.start_server(main=params, virtual_users=[])
        got = self.assert_rcpt_as_postfix(params, rcpts, srv=srv)
        self.assertTrue(got[1].startswith("RCPT alice@pg.test: 250"), got)
        for want in ("RCPT carol@ldap.test: 250", "RCPT alice@example.test: 250",
                     "RCPT erin@sock.test: 250", "RCPT grace@tcp.test: 250"):
            self.assertTrue(any(g.startswith(want) for g in got), (want, got))
        pg.stop()
        got = self.assert_rcpt_as_postfix(params, rcpts[:2], ref_started=True, srv=srv)
        self.assertTrue(got[1].endswith("451 4.3.0 <alice@pg.test>: Temporary lookup failure"),
                        got)
        srv.check()


if __name__ == "__main__":
    unittest.main()
