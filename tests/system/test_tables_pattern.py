"""Pattern tables (cidr:, regexp:, pcre:): Postfix's postmap -q and mxgate map -q
give the same answers and exit codes for every key of a corpus (matching, not
matching, case variants, addresses, IPv4/IPv6 with mapped forms, garbage), on
tables that use every feature of cidr_table(5), regexp_table(5) and
pcre_table(5); and for broken tables both say the same warnings (file and line
included) with the program name taken off, and answer alike from what is left.
"""

import random
import time
import unittest

import harness
import tables

# Keys that every table is asked, besides its own.
GARBAGE = ["", " ", "!", "/", "$", "$$", "${1}", "\\", "a" * 300, "\t", "x\ny", "if", "endif",
           "%s%n", "\u00e4\u00f6@example.com", "\u00c4@EXAMPLE.COM", "1.2.3.4\n"]

PCRE = r"""# pcre table: every feature
/^(\w+)@example\.com$/	user=$1 ${1} $(1) $$ cost
/^postmaster@/	OK
/^MiXeD@case\.test$/i	case-sensitive
/^upper@/	insensitive by default
/^multi$/m	multiline
/^dot.all$/	dot matches newline by default
/^dot.none$/s	dot without newline
/ungreedy-(a+)/U	ungreedy [$1]
/greedy-(a+)/	greedy [$1]
/anch/A	anchored
/^ends\n?$/	dollar before newline
/^endonly$/E	dollar at the very end
/^ex tended $/x	extended
/^(a)|^(b)x@unset/	[$1][$2]
/^(q)(r)?(s)@opt/	[$1|$2|$3]
%^pct@%	percent delimiter
"^quoted/slash@"	quote delimiter, slash inside
/^esc\/aped@/	escaped delimiter
!/^neg|@|\./	negated: no at, no dot
if /@virt\.test$/
/^(sales|info)@/	virtual $1
if !/^admin@/
/^[a-z]+@/	virt non-admin
endif
/^admin@/	virt admin
endif
IF /@nested\.test$/
if /^deep/
/^deeper@/	two levels
ENDIF
/./	nested fallback
EnDiF
/^cont@/	continued
  value across
	lines
/^empty@/
/^(?<name>named)@/	named group $1
/^dollar@/	cost $$5 and $${1}
"""

PCRE_KEYS = [
    "alice@example.com", "Alice@Example.COM", "bob@example.com.evil", "postmaster@any.where",
    "POSTMASTER@x", "MiXeD@case.test", "mixed@case.test", "upper@x", "UPPER@X", "multi",
    "dot\nall", "dot\nnone", "dotxnone", "ungreedy-aaa", "greedy-aaa", "anchored",
    "xanch", "ends", "ends\n", "endonly", "endonly\n", "extended", "ex tended ",
    "ax@unset", "bx@unset", "qs@opt", "qrs@opt", "pct@x", "quoted/slash@x", "esc/aped@x",
    "plainword", "sales@virt.test", "info@virt.test", "bob@virt.test", "admin@virt.test",
    "Admin@Virt.Test", "deeper@nested.test", "deep@nested.test", "x@nested.test",
    "cont@x", "empty@x", "named@x", "dollar@x", "nobody@nowhere.test",
]

REGEXP = r"""# regexp table: every feature
/^(.+)@example\.com$/	user=$1 ${1} $(1) $$ cost
/^postmaster@/	OK
/^MiXeD@case\.test$/i	case-sensitive
/^upper@/	insensitive by default
/^basic\{2\}@/x	basic regexp
/^a+b@/x	basic plus is literal
/^line$/m	newline-sensitive
/^(one)@two|^(three)@four/	[$1][$2]
/^pair@/!/forbidden/	pair without forbidden
/^pair@/!!/needed/	pair with needed
/^both@/i!/X/	both, no x
%^pct@%	percent delimiter
/^esc\/aped@/	escaped delimiter
!/@|\./	negated: no at, no dot
if /@virt\.test$/
/^(sales|info)@/	virtual $1
if !/^admin@/
/^[a-z]+@/	virt non-admin
endif
/^admin@/	virt admin
endif
/^cont@/	continued
  value across
	lines
/^empty@/
/^dollar@/	cost $$5 and $${1}
"""

REGEXP_KEYS = [
    "alice@example.com", "ALICE@EXAMPLE.COM", "postmaster@x", "MiXeD@case.test",
    "mixed@case.test", "UPPER@x", "basicbasic@x", "basic@x", "a+b@x", "aab@x", "line",
    "x\nline\ny", "one@two", "three@four", "pair@ok", "pair@forbidden", "pair@needed",
    "both@y", "both@x", "both@X", "pct@x", "esc/aped@x", "plainword", "sales@virt.test",
    "bob@virt.test", "admin@virt.test", "cont@x", "empty@x", "dollar@x", "nobody@x.test",
]

CIDR = """# cidr table: every feature
192.168.1.0/24		lan
10.0.0.1		bare host
[192.0.2.0/24]		bracketed
[198.51.100.0]/24	bracketed then mask
!203.0.113.0/24 	negated but v4 only
2001:db8::/32		v6 net
[2001:DB8:1::]/48	v6 bracketed
::ffff:0:0/96		mapped
if 172.16.0.0/12
172.16.5.0/24		in if
!172.16.6.0/24		negated in if
endif
IF !100.64.0.0/10
::1			loopback inside negated if
ENDIF
fe80::/10		link local
0.0.0.0/0		any v4 left
cont.ed.value/32	never
"""
CIDR_TAIL = """0.0.0.0/0	any v4
::/0	any v6
1.2.3.4	continued
 value
"""

CIDR_KEYS = [
    "192.168.1.5", "192.168.1.255", "192.168.2.1", "10.0.0.1", "10.0.0.2", "192.0.2.7",
    "198.51.100.9", "203.0.113.5", "8.8.8.8", "2001:db8::1", "2001:DB8::1", "2001:db8:1::5",
    "2001:0db8:0000::1", "2001:db9::1", "::ffff:192.168.1.5", "::ffff:c0a8:105",
    "::FFFF:10.0.0.1", "172.16.5.1", "172.16.6.1", "172.16.7.1", "::1", "::2", "fe80::1",
    "fe80::1%eth0", "[192.168.1.5]", "192.168.1.5 ", " 192.168.1.5", "192.168.001.005",
    "192.168.1", "192.168.1.5.6", "999.1.1.1", "0x7f.0.0.1", "::", "1.2.3.4/32",
    "1:2:3:4:5:6:7:8:9", "garbage", "1.2.3.4", "::ffff:1.2.3.4",
]


# What postmap itself (not the table) warns when a table answers an empty string
# ("warning: table pcre:/x: key a: empty string result is not allowed", "... should
# return NO RESULT in case of NOT FOUND"): the caller's business (policy/mapcmd.c,
# and for the daemon policy/maps.c, where Postfix makes it a table error), not the
# table type's, so these tests leave those two lines out.
POSTMAP_OWN = ("warning: table ",)


def _program_lines(err, program):
    """stderr lines of program with its "program: " taken off (POSTMAP_OWN left out)."""
    prefix = program + ": "
    return [line[len(prefix):] for line in err.splitlines()
            if line.startswith(prefix) and not line[len(prefix):].startswith(POSTMAP_OWN)]


class RandomTables:
    """Seeded random tables of one type, built from the pieces that matter to the
    parser (delimiters, flags, negations, IF/ENDIF, $ forms, masks, brackets,
    comments, continuations): the same tables on every run."""

    ATOMS = ["a", "b", "(a)", "(b|c)", "x*", "[ab]", "\\.", ".", "^", "$", "(a+)", "\\/",
             "\\w", "{2}", "\\", "(?i)", "(", ")", "|", "?", "+", " "]
    RESULTS = ["r", "$1", "$2", "${1}", "$(1)", "$$", "$", "${", "$x", "$0", "$99", " ", "v"]
    ADDRS = ["1.2.3.4", "1.2.3.0", "10.0.0.0", "0.0.0.0", "::", "::1", "2001:db8::",
             "::ffff:1.2.3.4", "1.2.3", "x", "[1.2.3.0]", "[::1]", "[1.2.3.0", "fe80::"]
    MASKS = ["0", "8", "24", "32", "33", "64", "128", "129", "", "x", "24/2", "4294967320"]
    KEYS = ["a", "b", "ab", "aab", "A", "B", "c", "x", "/", "aa.b", "1.2.3.4", "1.2.3.5", "::1",
            "::ffff:1.2.3.4", "2001:db8::5", "10.1.1.1", "0.0.0.0", "a/b", "$", "bc", "aaaa"]

    def __init__(self, kind, seed):
        self.kind = kind
        self.rnd = random.Random(seed)

    def _cidr_line(self):
        r = self.rnd
        a = r.choice(self.ADDRS)
        if r.random() < 0.6:
            a += "/" + r.choice(self.MASKS)
        c = r.random()
        if c < 0.1:
            return r.choice(["if ", "IF !", "if  "]) + a
        if c < 0.2:
            return r.choice(["endif", "ENDIF", "endif x"])
        if c < 0.25:
            return r.choice(["#c", " cont", "", "   "])
        return r.choice(["", "!", "!!", " ! "]) + a + r.choice([" r", " ", "\tres ult", ""])

    def _re_line(self):
        r = self.rnd
        flags = "iimsxAEUXq" if self.kind == "pcre" else "iimxq"
        pat = "".join(r.choice(self.ATOMS) for _ in range(r.randint(0, 5)))
        d = r.choice("///%#!\"|")
        p = (r.choice(["", "", "!", "!!", "! "]) + d + pat + (d if r.random() < 0.95 else "")
             + "".join(r.choice(flags) for _ in range(r.randint(0, 2))))
        if self.kind == "regexp" and r.random() < 0.15:
            p += "!/" + "".join(r.choice(self.ATOMS) for _ in range(r.randint(0, 3))) + "/"
        c = r.random()
        if c < 0.12:
            return r.choice(["if ", "IF ", "if", "iF !"]) + p + r.choice(["", "", " x"])
        if c < 0.22:
            return r.choice(["endif", "ENDIF", "endif x", "endifx"])
        if c < 0.27:
            return r.choice(["#c", " cont", "", "   ", "x y"])
        res = "".join(r.choice(self.RESULTS) for _ in range(r.randint(0, 4)))
        return p + r.choice([" ", "\t", ""]) + res

    def table(self):
        line = self._cidr_line if self.kind == "cidr" else self._re_line
        return ("\n".join(line() for _ in range(self.rnd.randint(1, 12)))
                + self.rnd.choice(["\n", ""]))


class PatternTablesTest(tables.TableCase):
    def both(self, key, spec):
        """((stdout, rc, messages) from postmap, the same from mxgate)"""
        pm = tables._run(["postmap", "-c", self.tables.path, "-q", key, spec])
        mx = tables._run([harness.mxgate_binary(), "map", "-c", self.tables.path, "-q", key,
                          spec])
        if harness.sanitizer_reports(mx[2]):
            self.fail("mxgate map -q %r %s: sanitizer report:\n%s" % (key, spec, mx[2]))
        return ((pm[0], pm[1], _program_lines(pm[2], "postmap")),
                (mx[0], mx[1], _program_lines(mx[2], "mxgate")))

    def assert_same_warnings(self, spec, key, must_say=()):
        """postmap and mxgate print the same, exit alike and warn alike (prefix taken off);
        Postfix's warnings contain each of must_say, so the table is as broken as meant."""
        want, got = self.both(key, spec)
        self.assertEqual(want, got, "%s -q %r: postmap, then mxgate" % (spec, key))
        for text in must_say:
            self.assertTrue(any(text in w for w in want[2]),
                            "postmap's warnings lack %r: %r" % (text, want[2]))
        return want

    def assert_broken_tables(self, kind, cases):
        """Each (table text, key, what Postfix warns or None): assert_same_warnings()."""
        for text, key, says in cases:
            with self.subTest(table=text):
                path = self.tables.write("broken." + kind, text)
                self.assert_same_warnings(kind + ":" + path, key, [says] if says else [])

    # ---- pcre ----

    def assert_every_feature(self, kind, text, keys, min_found, empty_line):
        """The table answers the corpus as postmap does; its one warning, the same from
        both, is the rule without a result on line empty_line."""
        path = self.tables.write("t." + kind, text)
        self.assert_same_answers(kind + ":" + path, keys + GARBAGE, min_found=min_found)
        warnings = self.assert_same_warnings(kind + ":" + path, keys[0])[2]
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("t.%s, line %d: no replacement text: using empty string"
                      % (kind, empty_line), warnings[0])

    def test_pcre_every_feature(self):
        self.assert_every_feature("pcre", PCRE, PCRE_KEYS, 30, 37)

    def test_pcre_inline(self):
        spec = "pcre:{{/^(a+)@/ got $1}, { !/b/ no b }, {/^x/i X}}"
        self.assert_same_answers(spec, ["aa@x", "AA@x", "b", "c", "x", "X", ""], min_found=3)
        self.assert_same_answers("pcre:{ {/a/ b} {/c/ d} }", ["a", "c", "x"], min_found=2)
        self.assert_same_answers("pcre:{{/a{2}/ b}, {/x/ {y}}, {  /c/  spaced  },,}",
                                 ["aa", "a", "x", "c"], min_found=3)
        for spec in ("pcre:{{/a/ b}", "pcre:{{/a/ b}} x", "pcre:{/a/ b}", "pcre:{{/a/ b}x}",
                     "pcre:{{/a/ b}{/c/ d}}", "pcre:{ {/a/ b} } }", "pcre:{{/a/ b}, c}"):
            want, got = self.both("a", spec)
            self.assertEqual(want[:2], got[:2], spec)
            self.assertNotEqual(got[1], 0, spec)
            # Postfix's reason, after the spec that maps.c puts in front of it.
            self.assertEqual(len(want[2]), 1, want[2])
            reason = want[2][0].replace("fatal: ", "", 1)
            self.assertEqual(got[2], ["fatal: %s: %s" % (spec, reason)], spec)

    def test_pcre_pathological_pattern_is_bounded(self):
        # (a+)+$ against a's and a b backtracks exponentially: PCRE2's match limit stops
        # it, Postfix logs the error and goes on with the next rule, and so must we.
        path = self.tables.write("slow.pcre", "/^(a+)+$/\tslow\n/b$/\tnext rule\n")
        key = "a" * 40 + "b"
        start = time.monotonic()
        want = self.assert_same_warnings("pcre:" + path, key)
        self.assertLess(time.monotonic() - start, 60)
        self.assertEqual(want[0], "next rule\n")
        self.assertTrue(any("line 1: match limit exceeded" in w for w in want[2]), want[2])
        self.assert_same_answers("pcre:" + path, ["aaaa", "aab", "b"], min_found=2)

    def test_pcre_broken_rules_warn_as_postfix(self):
        cases = [
            ("/(/ bad regex\n/x/ ok\n", "x", "error in regex at offset"),
            ("/a/q bad flag\n", "a", 'unknown regexp option "q"'),
            ("/a/X obsolete\n", "a", "ignoring obsolete regexp option"),
            ("/abc nodelim\n", "abc", 'no closing regexp delimiter "/"'),
            ("/a\\\n", "a", "no closing regexp delimiter"),
            ("/(a)/ $2\n/a/ next\n", "a", 'out of range replacement index "2"'),
            ("/(a)/ $0\n", "a", "out of range replacement index"),
            ("/(a)/ $x\n", "a", 'non-numeric replacement index "x"'),
            ("/(a)/ ${1\n", "a", "truncated macro reference"),
            ("/(a)/ a $\n", "a", "empty macro name"),
            ("/(a)/ ${}\n", "a", "empty macro name"),
            ("/(a)/ $99999999999\n", "a", "out of range replacement index"),
            ("!/(a)/ $1\n", "b", "$number found in negative match"),
            ("!\n", "a", "no regexp"),
            ("/a/\n", "a", "no replacement text: using empty string"),
            ("if /a/\n/a/ inside\n", "a", "IF has no matching ENDIF"),
            ("if /a/\n/b/ inside\n", "b", "IF has no matching ENDIF"),
            ("endif\n/a/ after\n", "a", "ignoring ENDIF without matching IF"),
            ("if /a/ extra\n/a/ x\nendif\n", "a", "ignoring extra text after IF"),
            ("if /a/\n/a/ x\nendif junk\n", "a", "ignoring extra text after ENDIF"),
            ("if /(/\n/a/ x\nendif\n", "a", "ignoring ENDIF without matching IF"),
            ("iffy /a/ x\n", "a", "ignoring unrecognized request"),
            ("  /a/ leading space\n/a/ ok\n", "a", "logical line must not start with whitespace"),
            ("/a/ x\r\n/b/ y\r\n", "b", None),
        ]
        self.assert_broken_tables("pcre", cases)

    # ---- regexp ----

    def test_regexp_every_feature(self):
        self.assert_every_feature("regexp", REGEXP, REGEXP_KEYS, 20, 26)

    def test_regexp_inline(self):
        spec = "regexp:{{/^(a+)@/ got $1}, {!/b/ no b}}"
        self.assert_same_answers(spec, ["aa@x", "AA@x", "b", "c", ""], min_found=2)

    def test_regexp_broken_rules_warn_as_postfix(self):
        cases = [
            ("/a(/ bad regex\n/x/ ok\n", "x", "line 1:"),
            ("/a/q bad flag\n", "a", 'unknown regexp option "q"'),
            ("/abc nodelim\n", "abc", "no closing regexp delimiter"),
            ("/a\\\n", "a", "no replacement text"),
            ("/(a)/ $2\n", "a", 'out of range replacement index "2"'),
            ("/(a)/ $0\n", "a", 'out-of-range replacement index "0"'),
            ("/(a)/ $x\n", "a", "non-numeric replacement index"),
            ("!/(a)/ $1\n", "b", "$number found in negative match"),
            ("/a/!/b\n", "a", "no closing regexp delimiter"),
            ("/a/!/(/ x\n", "a", "line 1:"),
            ("if /a/\n/a/ inside\n", "a", "IF has no matching ENDIF"),
            ("endif\n", "a", "ignoring ENDIF without matching IF"),
            ("if /a/ extra\n/a/ x\nendif\n", "a", "ignoring extra text after IF"),
            ("iffy\n", "a", "ignoring unrecognized request"),
        ]
        self.assert_broken_tables("regexp", cases)

    # ---- cidr ----

    def test_cidr_every_feature(self):
        path = self.tables.write("t.cidr", CIDR)
        self.assert_same_answers("cidr:" + path, CIDR_KEYS + GARBAGE, min_found=20)
        path = self.tables.write("tail.cidr", CIDR_TAIL)
        self.assert_same_answers("cidr:" + path, CIDR_KEYS + GARBAGE, min_found=20)

    def test_cidr_inline(self):
        self.assert_same_answers("cidr:{{10.0.0.0/8 ten}, {!192.168.0.0/16 not 192}}",
                                 ["10.1.2.3", "11.0.0.1", "192.168.1.1", "::1", "x"],
                                 min_found=2)

    def test_cidr_broken_rules_warn_as_postfix(self):
        cases = [
            ("1.2.3.4/24 host bits\n1.2.3.4 ok\n", "1.2.3.4", "non-null host address bits"),
            ("2001:db8::1/32 host bits\n", "2001:db8::1", "perhaps you should use"),
            ("1.2.3.0/33 too long\n", "1.2.3.0", "bad mask length"),
            ("::/129 too long\n", "::1", "bad mask length"),
            ("1.2.3.0/x bad\n", "1.2.3.0", "bad mask value"),
            ("1.2.3.0/ empty\n", "1.2.3.0", "bad mask value"),
            ("1.2.3.0/24/8 two\n", "1.2.3.0", "bad mask value"),
            ("1.2.3.0/4294967320 wraps\n", "1.2.3.9", None),
            ("1.2.3/24 bad\n", "1.2.3.0", "bad network value"),
            ("1.2.3 bad\n", "1.2.3.0", "bad address pattern"),
            ("[1.2.3.4 x\n", "1.2.3.4", "missing ']'"),
            ("[1.2.3.4]x y\n", "1.2.3.4", "garbage after"),
            ("1.2.3.4\n", "1.2.3.4", "no lookup result"),
            ("!\n", "1.2.3.4", "no address pattern"),
            ("if\n", "1.2.3.4", "no address pattern"),
            ("if 1.2.3.0/24 x\n1.2.3.4 y\nendif\n", "1.2.3.4", "bad mask value"),
            ("if 1.2.3.0/24\n1.2.3.4 in\n", "1.2.3.4", "IF has no matching ENDIF"),
            ("if 1.2.3.0/24\n1.2.3.4 in\n", "1.2.4.4", "IF has no matching ENDIF"),
            ("endif\n1.2.3.4 x\n", "1.2.3.4", "ENDIF without IF"),
            ("if 1.2.3.0/24\nendif x\n", "1.2.3.4", "garbage after ENDIF"),
            ("iffy 1.2.3.4\n", "1.2.3.4", "bad address pattern"),
        ]
        self.assert_broken_tables("cidr", cases)

    # ---- random tables ----

    def assert_random_tables(self, kind, seed, count=40):
        """count seeded random tables: postmap -q - and mxgate map -q - print the same,
        exit alike and warn alike for the same keys."""
        gen = RandomTables(kind, seed)
        keys = "\n".join(RandomTables.KEYS) + "\n"
        found = 0
        for i in range(count):
            text = gen.table()
            path = self.tables.write("random.%s" % kind, text)
            spec = "%s:%s" % (kind, path)
            want = tables.subprocess.run(["postmap", "-c", self.tables.path, "-q", "-", spec],
                                         input=keys, capture_output=True, text=True,
                                         timeout=60)
            got = tables.subprocess.run([harness.mxgate_binary(), "map", "-c",
                                         self.tables.path, "-q", "-", spec], input=keys,
                                        capture_output=True, text=True, timeout=60,
                                        env=harness.sanitizer_env())
            if harness.sanitizer_reports(got.stderr):
                self.fail("%s table %r: sanitizer report:\n%s" % (kind, text, got.stderr))
            w = (want.stdout, want.returncode, _program_lines(want.stderr, "postmap"))
            g = (got.stdout, got.returncode, _program_lines(got.stderr, "mxgate"))
            self.assertEqual(w, g, "%s table #%d:\n%s\n(postmap, then mxgate)" % (kind, i, text))
            found += want.returncode == 0
        self.assertGreaterEqual(found, count // 5, "too few tables answered any key")

    def test_random_pcre_tables_as_postmap(self):
        self.assert_random_tables("pcre", 1)

    def test_random_regexp_tables_as_postmap(self):
        self.assert_random_tables("regexp", 2)

    def test_random_cidr_tables_as_postmap(self):
        self.assert_random_tables("cidr", 3)

    # ---- every type ----

    def test_missing_file_fails_both_and_mxgate_names_it(self):
        for kind in ("cidr", "regexp", "pcre"):
            spec = "%s:%s" % (kind, self.tables.file("missing"))
            want, got = self.both("x", spec)
            self.assertEqual(want[:2], got[:2], spec)
            self.assertNotEqual(got[1], 0)
            self.assertTrue(any(self.tables.file("missing") in m and "No such file" in m
                                for m in got[2]), got[2])

    def test_key_from_stdin_as_postmap(self):
        path = self.tables.write("t.pcre", PCRE)
        keys = "\n".join(["alice@example.com", "plainword", "x@x.x", "bob@virt.test"]) + "\n"
        want = tables.subprocess.run(["postmap", "-c", self.tables.path, "-q", "-",
                                      "pcre:" + path], input=keys, capture_output=True,
                                     text=True, timeout=30)
        got = tables.subprocess.run([harness.mxgate_binary(), "map", "-c", self.tables.path,
                                     "-q", "-", "pcre:" + path], input=keys,
                                    capture_output=True, text=True, timeout=30,
                                    env=harness.sanitizer_env())
        self.assertEqual((want.stdout, want.returncode), (got.stdout, got.returncode))
        self.assertIn("alice@example.com\t", got.stdout)


if __name__ == "__main__":
    unittest.main()
