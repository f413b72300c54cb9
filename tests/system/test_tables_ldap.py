"""ldap: tables (ldap_table(5) files) on an OpenLDAP slapd that the test starts.

Postfix's postmap -q (postfix-ldap) and mxgate map -q get the same .cf files and the
same keys, and must print the same and exit alike: found, missing, multi-valued
attributes and entries, keys that need RFC 4515 (filter) and RFC 4514 (DN) quoting,
%u %d %1 %2 in query_filter and search_base, a search base that does not exist, the
domain filter, result_format, expansion_limit and size_limit, special (DN and URL),
terminal and leaf result attributes, scope, simple binds (good and bad password),
version 3 over ldapi://.  Settings mxgate does not implement (start_tls, tls_*, SASL,
ldaps://) make open fail with the file and line.  Then the server goes away: map -q
fails as postmap does, and a running mxgate answers RCPT 451 4.3.0 while it is down
and 250 once it is back, logging the outage once and the recovery once.
"""

import subprocess
import unittest

import harness
import ldapfixture
import remotetables

S = ldapfixture.SUFFIX
PEOPLE = "ou=people," + S
GROUPS = "ou=groups," + S


def person(uid, ids=(), drops=(), mail=None, extra=""):
    lines = ["dn: uid=%s,%s" % (uid.replace(",", "\\,"), PEOPLE), "objectClass: inetOrgPerson",
             "objectClass: mailRecipient", "uid: " + uid, "cn: " + uid, "sn: " + uid]
    lines += ["mailacceptinggeneralid: " + i for i in ids]
    lines += ["maildrop: " + d for d in drops]
    if mail:
        lines.append("mail: " + mail)
    return "\n".join(lines) + "\n" + extra + "\n"


DATA = (
    person("alice", ["alice@example.test"], ["alice@mail.example.test"], "alice@example.test")
    + person("bob", ["bob@example.test", "robert@example.test"],
             ["bob@mail.example.test", "bob@backup.example.test"], "bob@example.test")
    + person("star", ["st*r@example.test", "p(ar)en@example.test", "back\\slash@example.test"],
             ["star@mail.example.test"])
    + person("x,y", ["comma@example.test"], ["comma@mail.example.test"], "x,y@example.test")
    + person("carol", ["carol@other.test", "@other.test"], ["carol@mail.other.test"],
             "carol@other.test")
    + person("dave", ["dave"], ["dave@local.test"])
    + person("twin1", ["twin@example.test"], ["twin1@mail.example.test"])
    + person("twin2", ["twin@example.test"], ["twin2@mail.example.test"])
    + person("nodrop", ["nodrop@example.test"], [], "nodrop@example.test")
    + "dn: cn=staff,%s\nobjectClass: groupOfNames\nobjectClass: mailRecipient\ncn: staff\n"
      "mailacceptinggeneralid: staff@example.test\nmail: staff-list@example.test\n"
      "member: uid=alice,%s\nmember: uid=bob,%s\nmember: uid=gone,%s\n\n"
      % (GROUPS, PEOPLE, PEOPLE, PEOPLE)
    + "dn: cn=routed,%s\nobjectClass: groupOfNames\nobjectClass: mailRecipient\ncn: routed\n"
      "mailacceptinggeneralid: routed@example.test\nmaildrop: routed@hub.example.test\n"
      "mail: routed-list@example.test\nmember: uid=alice,%s\n\n" % (GROUPS, PEOPLE)
    + "dn: cn=dynamic,%s\nobjectClass: groupOfNames\nobjectClass: mailRecipient\ncn: dynamic\n"
      "mailacceptinggeneralid: dynamic@example.test\nmember: uid=dave,%s\n"
      "memberURL: ldap:///%s??one?(uid=twin*)\n\n" % (GROUPS, PEOPLE, PEOPLE)
    + "dn: cn=loop,%s\nobjectClass: groupOfNames\nobjectClass: mailRecipient\ncn: loop\n"
      "mailacceptinggeneralid: loop@example.test\nmember: cn=loop,%s\n"
      "memberURL: ldap:///%s?maildrop?one?(uid=alice)\n\n" % (GROUPS, GROUPS, PEOPLE)
)

KEYS = ["alice@example.test", "ALICE@EXAMPLE.TEST", "bob@example.test", "robert@example.test",
        "st*r@example.test", "s*@example.test", "*", "*@example.test", "p(ar)en@example.test",
        "back\\slash@example.test", "a)(uid=*", "comma@example.test", "carol@other.test",
        "@other.test", "dave", "twin@example.test", "nodrop@example.test",
        "staff@example.test", "routed@example.test", "dynamic@example.test", "loop@example.test",
        "nobody@example.test", "nobody@nowhere.test", "example.test", "", "@",
        "a@b@example.test", "user@sub.example.test",
        "\udcff@example.test", "caf\u00e9@example.test"]    # bytes 0xff (not UTF-8); UTF-8


class LdapCase(remotetables.ServerTableCase):
    @classmethod
    def start_fixture(cls):
        ld = ldapfixture.LdapServer()
        try:
            ld.start()
            ld.add(DATA)
        except BaseException:
            ld.cleanup()
            raise
        cls.ld = ld
        return ld

    def cf(self, name, **settings):
        lines = {"server_host": "127.0.0.1", "server_port": str(self.ld.port),
                 "search_base": S}
        lines.update(settings)
        text = "".join("%s = %s\n" % (k, v) for k, v in lines.items() if v is not None)
        return "ldap:" + self.tables.write(name, text)


class LdapAnswersTest(LdapCase):
    def test_default_filter_and_attribute(self):
        self.assert_same_answers(self.cf("plain.cf"), KEYS, min_found=8)

    def test_non_utf8_key(self):
        self.assert_non_utf8_not_asked(self.cf("utf8.cf"))

    def test_attributes_version3_on_ldapi(self):
        spec = self.cf("ldapi.cf", server_host=self.ld.ldapi_url, server_port=None, version="3",
                       bind="no", query_filter="(&(objectClass=mailRecipient)(mail=%s))",
                       result_attribute="uid, maildrop cn")
        self.assert_same_answers(spec, KEYS, min_found=4)

    def test_user_domain_labels_and_result_format(self):
        spec = self.cf("ud.cf", server_host="ldap://127.0.0.1:%d" % self.ld.port,
                       server_port=None,
                       query_filter="(mailacceptinggeneralid=%u@%2.%1)",
                       result_format="%u at %d for %U (%D, %s)")
        self.assert_same_answers(spec, KEYS, min_found=5)

    def test_dynamic_search_base_and_scope(self):
        spec = self.cf("base.cf", search_base="uid=%u," + PEOPLE, scope="base",
                       query_filter="(objectClass=*)", result_attribute="mail")
        self.assert_same_answers(spec, KEYS + ["x,y@example.test", "x@example.test"],
                                 min_found=3)
        one = self.cf("one.cf", search_base=PEOPLE, scope="one", result_attribute="maildrop")
        self.assert_same_answers(one, KEYS, min_found=6)
        missing = self.cf("nobase.cf", search_base="ou=nowhere," + S)
        self.assert_same_answers(missing, ["alice@example.test"], min_found=0)

    def test_domain_filter(self):
        self.tables.write("searchdomains", "other.test OK\n")
        spec = self.cf("dom.cf", domain="example.test, texthash:"
                       + self.tables.file("searchdomains"))
        self.assert_same_answers(spec, KEYS, min_found=5)

    def test_limits(self):
        exp = self.cf("exp.cf", expansion_limit="1")
        self.assert_same_answers(exp, KEYS, min_found=4)
        size = self.cf("size.cf", size_limit="1", expansion_limit="5")
        self.assert_same_answers(size, KEYS, min_found=4)

    def test_special_terminal_and_leaf_attributes(self):
        special = self.cf("special.cf", result_attribute="maildrop",
                          special_result_attribute="member, memberURL")
        self.assert_same_answers(special, KEYS, min_found=8)
        leaf = self.cf("leaf.cf", result_attribute="maildrop", leaf_result_attribute="mail",
                       special_result_attribute="member")
        self.assert_same_answers(leaf, KEYS, min_found=8)
        terminal = self.cf("terminal.cf", result_attribute="", leaf_result_attribute="mail",
                           terminal_result_attribute="maildrop",
                           special_result_attribute="member")
        self.assert_same_answers(terminal, KEYS, min_found=8)
        shallow = self.cf("recursion.cf", result_attribute="maildrop",
                          special_result_attribute="member", recursion_limit="1")
        self.assert_same_answers(shallow, KEYS, min_found=6)

    def test_binds(self):
        good = self.cf("bind.cf", bind="simple", bind_dn=self.ld.rootdn, bind_pw=self.ld.rootpw,
                       version="3")
        self.assert_same_answers(good, KEYS[:4], min_found=3)
        bad = self.cf("badpw.cf", bind="yes", bind_dn=self.ld.rootdn, bind_pw="wrong")
        self.assert_same_answers(bad, ["alice@example.test"], min_found=0)
        nobind = self.cf("nobind.cf", bind="none")
        self.assert_same_answers(nobind, KEYS[:4], min_found=3)

    def test_refused_settings_name_file_and_line(self):
        for setting, value in (("start_tls", "yes"), ("tls_ca_cert_file", "/etc/ssl/ca.pem"),
                               ("tls_require_cert", "yes"), ("bind", "sasl")):
            p = self.tables.write("refused.cf", "server_host = 127.0.0.1:%d\nsearch_base = %s\n"
                                  "version = 3\n%s = %s\n" % (self.ld.port, S, setting, value))
            r = subprocess.run([harness.mxgate_binary(), "map", "-c", self.tables.path, "-q",
                                "alice@example.test", "ldap:" + p], capture_output=True,
                               text=True, timeout=30, env=harness.sanitizer_env())
            self.assertEqual((r.stdout, r.returncode), ("", 1), r.stderr)
            self.assertIn("%s, line 4: setting \"%s" % (p, setting), r.stderr)
            self.assertEqual(harness.sanitizer_reports(r.stderr), [])
        p = self.tables.write("ldaps.cf", "server_host = ldaps://127.0.0.1:%d\n" % self.ld.port)
        r = subprocess.run([harness.mxgate_binary(), "map", "-q", "alice@example.test",
                            "ldap:" + p], capture_output=True, text=True, timeout=30,
                           env=harness.sanitizer_env())
        self.assertEqual(r.returncode, 1)
        self.assertIn("%s, line 1: server_host ldaps://" % p, r.stderr)


class LdapOutageTest(LdapCase, harness.MxTestCase, remotetables.OutageChecks):
    def test_map_q_fails_like_postmap_when_down(self):
        self.map_q_fails_like_postmap(self.cf("down.cf", timeout="3"), self.ld)

    @classmethod
    def start_fixture(cls):
        ld = super().start_fixture()
        ld.add(person("virtalice", ["alice@" + remotetables.VDOMAIN], ["alice/"]))
        return ld

    def test_silent_server_times_out(self):
        for bind in ("yes", "no"):
            self.silent_server_times_out(
                lambda port: self.cf("silent.cf", server_port=str(port), timeout="2",
                                     version="3", bind=bind), bound=6)

    def test_parallel_lookups(self):
        self.parallel_rcpts(self.cf("parallel.cf", version="3", bind="no"))

    def test_rcpt_451_while_down_then_250(self):
        cf = self.cf("vmail.cf", timeout="3", version="3", bind="no")
        self.rcpt_451_while_down(cf, self.ld, r"virtual_mailbox_maps: %s: cannot connect to "
                                 r"LDAP server ldap://127\.0\.0\.1:\d+: ")


if __name__ == "__main__":
    unittest.main()
