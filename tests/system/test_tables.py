"""Tables that were there before the registry (texthash, cdb, static, inline):
postmap -q and mxgate map -q give the same answers and exit codes for a
corpus of keys (found, not found, case, empty key, '@' forms)."""

import unittest

import tables

CORPUS_TEXT = (
    "# comment\n"
    "alice@example.test   alice\n"
    "Bob@Example.TEST     bob, carol\n"
    "@example.org         catchall\n"
    "example.net          OK\n"
    "longvalue            a b c\n"
    "  continued\n"
)
KEYS = ["alice@example.test", "ALICE@EXAMPLE.TEST", "bob@example.test", "nobody@example.test",
        "@example.org", "example.org", "example.net", "Example.NET", "longvalue", "missing",
        "alice", "@", ""]


class TablesBeforeTest(tables.TableCase):
    def test_cdb_as_postmap(self):
        src = self.tables.write("t", CORPUS_TEXT)
        self.tables.build("cdb:" + src)
        self.assert_same_answers("cdb:" + src, KEYS, min_found=5)

    def test_texthash_as_postmap(self):
        src = self.tables.write("t", CORPUS_TEXT)
        self.assert_same_answers("texthash:" + src, KEYS, min_found=5)

    def test_inline_and_static(self):
        self.assert_same_answers("inline:{a=1, B=2, {c = e, f}}", ["a", "A", "b", "c", "x"])
        self.assert_same_answers("static:{some value}", ["anything", ""])


if __name__ == "__main__":
    unittest.main()
