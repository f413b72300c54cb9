"""hash:, btree: and lmdb: tables built by Postfix's own postmap (with and
without -N) and postalias: postmap -q and mxgate map -q give the same output
and exit code for a corpus of keys (found, missing, case-folded, keys with
spaces, '@' forms, a long value, continuation lines), also with -q - (keys on
standard input); a missing or corrupt file is fatal in both, with Postfix's
message; and lookups while postmap rebuilds a 100k-entry table again and again
always answer the old or the new value, never "not found".  The daemon answers
RCPT from such a table and takes a rebuilt one for the next session."""

import os
import random
import re
import signal
import subprocess
import threading
import time

import harness
import tables

LONG = "x" * 4000 + " end"

CORPUS = (
    "# comment\n"
    "alice@example.test   alice\n"
    "Bob@Example.TEST     bob, carol\n"
    "@example.org         catchall\n"
    "example.net          OK\n"
    "user+ext@example.test plus\n"
    "longvalue            " + LONG + "\n"
    "continued            first\n"
    "  second line\n"
    "keyonly\n"
    "\"two words\"        quoted\n"
    "tab\there\n"
    "dup                  first\n"
)
KEYS = ["alice@example.test", "ALICE@EXAMPLE.TEST", "bob@example.test", "Bob@Example.TEST",
        "nobody@example.test", "@example.org", "example.org", "example.net", "Example.NET",
        "user+ext@example.test", "user@example.test", "longvalue", "continued", "keyonly",
        "\"two words\"", "two words", "\"two", "tab", "dup", "missing", "alice", "@", ""]

ALIASES = (
    "# aliases\n"
    "postmaster: root\n"
    "Root: admin@example.test\n"
    "list: a, b,\n"
    "  c\n"
    "\"two words\": quoted\n"
    "pipe: \"|/usr/bin/true\"\n"
    "empty:\n"
)
ALIAS_KEYS = ["postmaster", "POSTMASTER", "root", "list", "two words", "\"two words\"", "pipe",
              "empty", "@", "missing", ""]

TYPES = ("hash", "btree", "lmdb")
SUFFIX = {"hash": ".db", "btree": ".db", "lmdb": ".lmdb"}


def stdin_query(argv, keys):
    r = subprocess.run(argv, input="".join(k + "\n" for k in keys), capture_output=True,
                       text=True, timeout=60, env=harness.sanitizer_env())
    return r.stdout, r.returncode, r.stderr


class DbTablesTest(tables.TableCase):
    def check_corpus(self, typ, flags=()):
        src = self.tables.write("t-%s%s" % (typ, "".join(flags)), CORPUS)
        self.tables.build("%s:%s" % (typ, src), flags=flags)
        self.assert_same_answers("%s:%s" % (typ, src), KEYS, min_found=8)

    def test_hash_as_postmap(self):
        self.check_corpus("hash")

    def test_hash_as_postmap_N(self):
        self.check_corpus("hash", ("-N",))

    def test_btree_as_postmap(self):
        self.check_corpus("btree")

    def test_btree_as_postmap_N(self):
        self.check_corpus("btree", ("-N",))

    def test_lmdb_as_postmap(self):
        self.check_corpus("lmdb")

    def test_lmdb_as_postmap_N(self):
        self.check_corpus("lmdb", ("-N",))

    def test_aliases_as_postalias(self):
        for typ in TYPES:
            for flags in ((), ("-N",)):
                with self.subTest(type=typ, flags=flags):
                    src = self.tables.write("aliases-%s%s" % (typ, "".join(flags)), ALIASES)
                    spec = "%s:%s" % (typ, src)
                    self.tables.build(spec, tool="postalias", flags=flags)
                    self.assert_same_answers(spec, ALIAS_KEYS, min_found=5)
                    for key in ALIAS_KEYS:	# postalias -q answers as postmap -q
                        r = subprocess.run(["postalias", "-c", self.tables.path, "-q", key, spec],
                                           capture_output=True, text=True, timeout=30)
                        self.assertEqual((r.stdout, r.returncode),
                                         tables.mxgate_q(self.tables.path, key, spec), key)

    def test_keys_from_stdin(self):
        """-q -: "key<TAB>value" for each key found, exit 0 if any, as postmap."""
        for typ in TYPES:
            with self.subTest(type=typ):
                src = self.tables.write("s-" + typ, CORPUS)
                spec = "%s:%s" % (typ, src)
                self.tables.build(spec)
                want = stdin_query(["postmap", "-c", self.tables.path, "-q", "-", spec], KEYS)
                got = stdin_query([harness.mxgate_binary(), "map", "-c", self.tables.path,
                                   "-q", "-", spec], KEYS)
                self.assertEqual(got[:2], want[:2])
                self.assertGreaterEqual(want[0].count("\n"), 8)
                self.assertEqual(harness.sanitizer_reports(got[2]), [])
                none = stdin_query([harness.mxgate_binary(), "map", "-q", "-", spec],
                                   ["missing", "other"])
                self.assertEqual(none[:2], ("", 1))

    def check_fatal(self, spec, key="x"):
        """Both refuse the table; mxgate's message holds Postfix's reason."""
        want = subprocess.run(["postmap", "-c", self.tables.path, "-q", key, spec],
                              capture_output=True, text=True, timeout=30)
        out, rc, err = tables._run([harness.mxgate_binary(), "map", "-c", self.tables.path,
                                    "-q", key, spec])
        self.assertEqual((out, rc), (want.stdout, want.returncode))
        self.assertNotEqual(rc, 0)
        fatal = [ln.split("fatal: ", 1)[1] for ln in want.stderr.splitlines() if "fatal: " in ln]
        self.assertEqual(len(fatal), 1, want.stderr)
        self.assertIn("mxgate: fatal: %s: %s" % (spec, fatal[0]), err)
        self.assertEqual(harness.sanitizer_reports(err), [])

    def test_missing_and_corrupt_files(self):
        for typ in TYPES:
            with self.subTest(type=typ):
                self.check_fatal("%s:%s" % (typ, self.tables.file("nonexistent-" + typ)))
                bad = self.tables.file("corrupt-" + typ)
                with open(bad + SUFFIX[typ], "wb") as f:
                    f.write(bytes(random.Random(7).randrange(256) for _ in range(8192)))
                self.check_fatal("%s:%s" % (typ, bad))
                with open(self.tables.file("empty-" + typ) + SUFFIX[typ], "wb"):
                    pass
                self.check_fatal("%s:%s" % (typ, self.tables.file("empty-" + typ)))
        # hash and btree are different formats: each refuses the other's file.
        src = self.tables.write("h", "a b\n")
        self.tables.build("hash:" + src)
        self.check_fatal("btree:" + src)

    def test_older_than_source_warning(self):
        """A source file edited after the last postmap (and not just now): both warn alike."""
        now = time.time()
        for typ in TYPES:
            with self.subTest(type=typ):
                src = self.tables.write("stale-" + typ, "a b\n")
                spec = "%s:%s" % (typ, src)
                self.tables.build(spec)
                os.utime(src + SUFFIX[typ], (now - 1000, now - 1000))
                os.utime(src, (now - 500, now - 500))
                want = subprocess.run(["postmap", "-c", self.tables.path, "-q", "a", spec],
                                      capture_output=True, text=True, timeout=30)
                out, rc, err = tables._run([harness.mxgate_binary(), "map", "-c",
                                            self.tables.path, "-q", "a", spec])
                self.assertEqual((out, rc), (want.stdout, want.returncode))

                def warnings(text):
                    return [ln.split("warning: ", 1)[1] for ln in text.splitlines()
                            if "warning: " in ln]
                self.assertEqual(warnings(err), warnings(want.stderr))
                self.assertEqual(len(warnings(err)), 1, err)

    def rebuild_while_reading(self, typ, entries=100000, rebuilds=12):
        """mxgate map -q - answers a stream of lookups while postmap rebuilds
        the table from an "old-N" and a "new-N" source in turn: every key is
        found, with one of its two values."""
        src = self.tables.file("big-" + typ)
        spec = "%s:%s" % (typ, src)
        # The new table has other value sizes and twice the entries (keys the
        # readers never ask for), so its pages are laid out differently: a
        # handle reading the rewritten file with the old table's pages cached
        # would not find keys.
        def new_value(i):
            return "new-%d%s" % (i, "+" * (i % 13))
        versions = {
            "old": "".join("key%d@example.test old-%d\n" % (i, i) for i in range(entries)),
            "new": "".join("key%d@example.test %s\nextra%d %s\n" % (i, new_value(i), i, "y" * (1 + i % 50))
                           for i in range(entries)),
        }

        def install(tag):
            with open(src + ".tmp", "w") as f:
                f.write(versions[tag])
            os.rename(src + ".tmp", src)
            self.tables.build(spec)

        install("old")
        proc = subprocess.Popen([harness.mxgate_binary(), "map", "-c", self.tables.path,
                                 "-q", "-", spec], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=harness.sanitizer_env())
        done = threading.Event()
        sent = [0]
        answers = []
        errors = []

        def feed():
            rnd = random.Random(1)
            try:
                while not done.is_set():
                    batch = "".join("key%d@example.test\n" % rnd.randrange(entries)
                                    for _ in range(500))
                    proc.stdin.write(batch)
                    proc.stdin.flush()
                    sent[0] += 500
            except (BrokenPipeError, OSError) as e:
                errors.append("feeding keys: %r" % e)
            finally:
                try:
                    proc.stdin.close()
                except OSError:
                    pass

        def drain():
            for line in proc.stdout:
                answers.append(line)

        feeder = threading.Thread(target=feed)
        drainer = threading.Thread(target=drain)
        feeder.start()
        drainer.start()
        try:
            time.sleep(0.2)
            for n in range(rebuilds):
                install("new" if n % 2 == 0 else "old")
                time.sleep(0.05)
        finally:
            done.set()
            feeder.join(60)
            err = proc.stderr.read()
            proc.wait(60)
            drainer.join(60)
        self.assertEqual(errors, [])
        self.assertEqual(harness.sanitizer_reports(err), [])
        self.assertEqual(proc.returncode, 0, err)
        self.assertEqual(err, "")
        bad = []
        for line in answers:
            key, _, value = line.rstrip("\n").partition("\t")
            n = key[3:key.index("@")]
            if value not in ("old-" + n, new_value(int(n))):
                bad.append(line)
        self.assertEqual(bad[:5], [])
        # Every key sent was found: a lookup that saw half a table would print nothing.
        self.assertEqual(len(answers), sent[0])
        self.assertGreater(sent[0], 10000)
        seen = {line.split("\t")[1].split("-")[0] for line in answers}
        self.assertEqual(seen, {"old", "new"}, "the lookups did not overlap the rebuilds")

    def test_hash_rebuild_while_reading(self):
        self.rebuild_while_reading("hash")

    def test_btree_rebuild_while_reading(self):
        self.rebuild_while_reading("btree")

    def test_lmdb_rebuild_while_reading(self):
        self.rebuild_while_reading("lmdb")


if __name__ == "__main__":
    import unittest
    unittest.main()


class DbTablesDaemonTest(harness.MxTestCase):
    """The daemon answers RCPT from a hash:/btree:/lmdb: virtual_mailbox_maps, and
    takes a table that postmap rebuilt for the next session with Postfix's log line."""

    def check_daemon(self, typ):
        srv = self.start_server(main=dict(harness.BASE_MAIN), virtual_users=["alice"])
        src = os.path.join(srv.dir, "vmailbox")
        with open(src, "a") as f:
            f.write("Carol@Virt.TEST carol/\n")
        ServerTableDir(srv).build("%s:%s" % (typ, src))
        harness.rewrite_main_cf(srv, {"virtual_mailbox_maps": "%s:%s" % (typ, src)})
        srv.signal(signal.SIGHUP)
        self.assertTrue(srv.wait_log(r"reload -- version", timeout=10))
        c = self.connect(srv)
        c.expect(220)
        c.cmd("EHLO client.example")
        c.cmd("MAIL FROM:<a@example.org>")
        self.assertEqual(c.cmd("RCPT TO:<alice@virt.test>").text, "250 2.1.5 Ok")
        self.assertEqual(c.cmd("RCPT TO:<CAROL@virt.test>").text, "250 2.1.5 Ok")
        self.assertEqual(c.cmd("RCPT TO:<bob@virt.test>").code, 550)
        c.cmd("QUIT")
        with open(src, "a") as f:
            f.write("bob@virt.test bob/\n")
        ServerTableDir(srv).build("%s:%s" % (typ, src))
        n = self.connect(srv)
        n.expect(220)
        n.cmd("EHLO client.example")
        n.cmd("MAIL FROM:<a@example.org>")
        self.assertEqual(n.cmd("RCPT TO:<bob@virt.test>").text, "250 2.1.5 Ok")
        n.cmd("QUIT")
        line = srv.wait_log(r"table %s:%s\(0,lock\|fold_fix\|utf8_request\) has changed "
                            r"-- restarting$" % (typ, re.escape(src)), timeout=5)
        self.assertTrue(line, "\n".join(srv.log_lines()[-10:]))

    def test_hash_in_the_daemon(self):
        self.check_daemon("hash")

    def test_lmdb_in_the_daemon(self):
        self.check_daemon("lmdb")


class ServerTableDir(tables.TableDir):
    """A server's own directory as a TableDir: postmap -c reads its main.cf."""

    def __init__(self, srv):
        self.path = srv.dir
