/*
 * policy/map_pattern: the logical-line reader (whole, one byte at a time,
 * every two-piece split, garbage), the parser's edge cases for cidr, regexp
 * and pcre (each answer and each warning, word for word as Postfix 3.7 says
 * it), IF nesting far deeper than any stack, the PCRE2 match limit on a
 * pathological pattern, open errors through the registry, garbage tables,
 * and lookups from many threads at once.
 *
 * What Postfix answers is checked live in tests/system/test_tables_pattern.py;
 * the expectations here are Postfix 3.7.11's answers to the same tables.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "policy/map_pattern.h"
#include "policy/maps.h"
#include "util/buf.h"
#include "util/xalloc.h"

/* ---- stderr capture: the warnings, one per line ---- */

static int saved_stderr = -1;
static FILE *capture_fp;

static void capture_start(void)
{
	fflush(stderr);
	capture_fp = tmpfile();
	assert_non_null(capture_fp);
	saved_stderr = dup(STDERR_FILENO);
	assert_true(saved_stderr >= 0);
	assert_true(dup2(fileno(capture_fp), STDERR_FILENO) >= 0);
}

/* What was written to stderr since capture_start() (caller frees). */
static char *capture_end(void)
{
	struct buf b = BUF_INIT;
	char chunk[4096];
	size_t n;

	fflush(stderr);
	assert_true(dup2(saved_stderr, STDERR_FILENO) >= 0);
	close(saved_stderr);
	rewind(capture_fp);
	while ((n = fread(chunk, 1, sizeof(chunk), capture_fp)) > 0)
		buf_append(&b, chunk, n);
	fclose(capture_fp);
	return buf_steal(&b);
}

/* ---- helpers ---- */

static struct map_impl *table(const struct map_type *type, const char *text)
{
	return map_pattern_open_text(type, "T", text, strlen(text));
}

/* The answer to key: the value, or NULL when not found. */
static char *ask(const struct map_type *type, struct map_impl *t, const char *key)
{
	char *v = NULL;
	enum map_status st = type->lookup(t, key, &v);

	assert_int_not_equal(st, MAP_FAIL);
	if (st == MAP_NOTFOUND) {
		assert_null(v);
		return NULL;
	}
	assert_non_null(v);
	return v;
}

struct qa {
	const char *key;
	const char *want;	/* NULL: not found */
};

static void check_answers(const struct map_type *type, const char *text, const struct qa *qa,
			  size_t n)
{
	struct map_impl *t = table(type, text);

	for (size_t i = 0; i < n; i++) {
		char *got = ask(type, t, qa[i].key);

		if (qa[i].want == NULL && got != NULL)
			fail_msg("%s table %s: key \"%s\": got \"%s\", want not found", type->name,
				 text, qa[i].key, got);
		if (qa[i].want != NULL && (got == NULL || strcmp(got, qa[i].want) != 0))
			fail_msg("%s table %s: key \"%s\": got %s%s%s, want \"%s\"", type->name, text,
				 qa[i].key, got ? "\"" : "", got ? got : "not found", got ? "\"" : "",
				 qa[i].want);
		free(got);
	}
	type->close(t);
}

/* The warnings a table's text gives, "mxgate: warning: " taken off each. */
static char *warnings_of(const struct map_type *type, const char *text)
{
	struct map_impl *t;
	struct buf b = BUF_INIT;
	char *all, *line, *save = NULL;

	capture_start();
	t = table(type, text);
	all = capture_end();
	type->close(t);
	for (line = strtok_r(all, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		const char *w = strstr(line, "warning: ");

		buf_puts(&b, w ? w + 9 : line);
		buf_putc(&b, '\n');
	}
	free(all);
	return buf_steal(&b);
}

static void check_warnings(const struct map_type *type, const char *text, const char *want)
{
	char *got = warnings_of(type, text);

	if (strcmp(got, want) != 0)
		fail_msg("%s table \"%s\":\n got: %s\nwant: %s", type->name, text, got, want);
	free(got);
}

/* ---- the logical-line reader ---- */

static void lines_collect(void *ctx, char *line, int lineno)
{
	buf_printf(ctx, "%d:%s|", lineno, line);
}

/* Every logical line, "N:text|", from text fed in chunks of at most step (0: whole). */
static char *lines_of(const char *text, size_t len, size_t step)
{
	struct buf out = BUF_INIT;
	struct map_lines *ml = map_lines_new("P", lines_collect, &out);

	for (size_t off = 0; off < len;) {
		size_t n = step == 0 || len - off < step ? len - off : step;

		map_lines_feed(ml, text + off, n);
		off += n;
	}
	map_lines_finish(ml);
	map_lines_free(&ml);
	assert_null(ml);
	return buf_steal(&out);
}

static const char lines_text[] =
	"# comment\n"
	"\n"
	"first rule\n"
	"second\n"
	"  continued\n"
	"# comment inside\n"
	"   \n"
	"\tand more\r\n"
	"   # indented comment\n"
	"third\r\n"
	"fourth without newline";

static void test_lines(void **state)
{
	const char *want = "3:first rule|4:second  continued\tand more\r|10:third\r|"
			   "11:fourth without newline|";
	size_t len = strlen(lines_text);
	char *whole = lines_of(lines_text, len, 0);

	(void)state;
	assert_string_equal(whole, want);
	for (size_t step = 1; step <= 3; step++) {
		char *got = lines_of(lines_text, len, step);

		assert_string_equal(got, want);
		free(got);
	}
	/* Every split into two pieces. */
	for (size_t cut = 0; cut <= len; cut++) {
		struct buf out = BUF_INIT;
		struct map_lines *ml = map_lines_new("P", lines_collect, &out);

		map_lines_feed(ml, lines_text, cut);
		map_lines_feed(ml, lines_text + cut, len - cut);
		map_lines_finish(ml);
		map_lines_free(&ml);
		assert_string_equal(buf_str(&out), want);
		buf_free(&out);
	}
	free(whole);
}

static void test_lines_bad_start(void **state)
{
	const char text[] = "  leading\n  its continuation\nrule\n \n";
	char *got, *err;

	(void)state;
	capture_start();
	got = lines_of(text, sizeof(text) - 1, 1);
	err = capture_end();
	assert_string_equal(got, "3:rule|");
	assert_non_null(strstr(err, "warning: P: logical line must not start with whitespace: "
				    "\"  leading  its continuation\"\n"));
	free(got);
	free(err);
	/* Longer than 30 bytes: Postfix shows 30 and "...". */
	capture_start();
	got = lines_of(" 0123456789012345678901234567890123456789\n", 42, 0);
	err = capture_end();
	assert_string_equal(got, "");
	assert_non_null(strstr(err, "\" 01234567890123456789012345678...\""));
	free(got);
	free(err);
}

/* A NUL ends the text of its line, as in Postfix (a C string). */
static void test_lines_nul(void **state)
{
	const char text[] = "a\0b\nc\n\0\nd";
	char *got = lines_of(text, sizeof(text) - 1, 0);

	(void)state;
	assert_string_equal(got, "1:a|2:c|3:|4:d|");
	free(got);
}

/* Garbage: every split gives the same lines as the whole. */
static void test_lines_garbage(void **state)
{
	uint32_t seed = 12345;

	(void)state;
	capture_start();
	for (int round = 0; round < 200; round++) {
		char text[300];
		size_t len = (size_t)(round % 300);
		char *whole, *bytewise, *ragged;

		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			/* Mostly the bytes that matter: newline, blank, '#', NUL. */
			text[i] = "\n \t#\r\0ab"[(seed >> 16) % 8];
			if ((seed >> 8) % 7 == 0)
				text[i] = (char)(seed >> 24);
		}
		whole = lines_of(text, len, 0);
		bytewise = lines_of(text, len, 1);
		ragged = lines_of(text, len, 1 + (size_t)round % 17);
		assert_string_equal(whole, bytewise);
		assert_string_equal(whole, ragged);
		free(whole);
		free(bytewise);
		free(ragged);
	}
	free(capture_end());
}

/* ---- regexp ---- */

static void test_regexp(void **state)
{
	static const struct qa qa[] = {
		{ "alice@example.com", "user alice at alice $" },
		{ "ALICE@EXAMPLE.COM", "user ALICE at ALICE $" },
		{ "Case@x", "sensitive" },
		{ "case@x", NULL },
		{ "aa@basic", "basic" },
		{ "pair@ok", "pair" },
		{ "pair@no", NULL },
		{ "ab", "[a][b]" },
		{ "b", "[][b]" },
		{ "in@virt", "virtual" },
		{ "out@virt", NULL },
		{ "last", NULL },	/* "#^last$#" is a comment line, not a rule */
		{ "", NULL },
	};
	const char *text =
		"/^(.*)@example\\.com$/\tuser $1 at ${1} $$\n"
		"/^Case@/i\tsensitive\n"
		"/^a\\{2\\}@basic/x\tbasic\n"
		"/^pair@/!/no/\tpair\n"
		"/^(a)?(b)$/\t[$1][$(2)]\n"
		"if /@virt$/\n"
		"/^in@/\tvirtual\n"
		"endif\n"
		"#^last$#\t/slash/\n";

	(void)state;
	check_answers(&map_type_regexp, text, qa, sizeof(qa) / sizeof(qa[0]));
}

static void test_regexp_warnings(void **state)
{
	(void)state;
	check_warnings(&map_type_regexp, "/a/q x\n",
		       "regexp map T, line 1: unknown regexp option \"q\": skipping this rule\n");
	check_warnings(&map_type_regexp, "/(a)/ $0\n",
		       "regexp map T, line 1: out-of-range replacement index \"0\"\n"
		       "regexp map T, line 1: bad replacement syntax: skipping this rule\n");
	check_warnings(&map_type_regexp, "x\n\n/(a)/ $2\n",
		       "regexp map T, line 1: ignoring unrecognized request\n"
		       "regexp map T, line 3: out of range replacement index \"2\": skipping this rule\n");
	check_warnings(&map_type_regexp, "/abc x\n",
		       "regexp map T, line 1: no closing regexp delimiter \"/\": skipping this rule\n");
	check_warnings(&map_type_regexp, "if /a/\nif /b/\n/c/ d\nendif\n",
		       "regexp map T, line 1: IF has no matching ENDIF\n");
	check_warnings(&map_type_regexp, "endif\n",
		       "regexp map T, line 1: ignoring ENDIF without matching IF\n");
	/* regexp takes a backslash at the end for the delimiter, as Postfix does. */
	check_warnings(&map_type_regexp, "/a\\\n",
		       "regexp map T, line 1: no replacement text: using empty string\n");
}

/* ---- pcre ---- */

static void test_pcre(void **state)
{
	static const struct qa qa[] = {
		{ "Alice@Example.com", "user Alice Alice $1" },
		{ "Case@x", "sensitive" },
		{ "case@x", NULL },
		{ "dot\nall", "dotall" },
		{ "ungreedy-aaa", "[a]" },
		{ "q@unset", "[q||]" },
		{ "xanchored", "negated" },	/* A: anchored at the start */
		{ "anchored", "A" },
		{ "deep@two.levels", "deep" },
		{ "other@two.levels", "nested fallback" },
		{ "deep@elsewhere", NULL },
		{ "nodot", "negated" },
		{ "", "negated" },
		{ "a.b", NULL },
	};
	const char *text =
		"/^(\\w+)@example\\.com$/\tuser $1 ${1} $$1\n"
		"/^Case@/i\tsensitive\n"
		"/^dot.all$/\tdotall\n"
		"/ungreedy-(a+)/U\t[$1]\n"
		"/^(q)(r)?(s)?@unset$/\t[$1|$2|$3]\n"
		"/anchored/A\tA\n"
		"if /@two\\.levels$/\n"
		"IF /^deep/\n"
		"/./\tdeep\n"
		"ENDIF\n"
		"/./\tnested fallback\n"
		"endif\n"
		"!/[.@]/\tnegated\n";

	(void)state;
	check_answers(&map_type_pcre, text, qa, sizeof(qa) / sizeof(qa[0]));
}

static void test_pcre_warnings(void **state)
{
	(void)state;
	check_warnings(&map_type_pcre, "/(/ x\n",
		       "pcre map T, line 1: error in regex at offset 1: missing closing parenthesis\n");
	check_warnings(&map_type_pcre, "/a/X x\n",
		       "pcre map T, line 1: ignoring obsolete regexp option \"X\"\n");
	check_warnings(&map_type_pcre, "/abc x\n",
		       "pcre map T, line 1: no closing regexp delimiter \"/\": ignoring this rule\n");
	check_warnings(&map_type_pcre, "/a\\\n",
		       "pcre map T, line 1: no closing regexp delimiter \"/\": ignoring this rule\n");
	check_warnings(&map_type_pcre, "/(a)/ $0\n",
		       "pcre map T, line 1: out of range replacement index \"0\"\n"
		       "pcre map T, line 1: bad replacement syntax: skipping this rule\n");
	check_warnings(&map_type_pcre, "/(a)/ ${1\n",
		       "truncated macro reference: \"${1\"\n"
		       "pcre map T, line 1: bad replacement syntax: skipping this rule\n");
	check_warnings(&map_type_pcre, "/(a)/ x$\n",
		       "empty macro name: \"x$\"\n"
		       "pcre map T, line 1: bad replacement syntax: skipping this rule\n");
	check_warnings(&map_type_pcre, "!/(a)/ $1\n",
		       "pcre map T, line 1: $number found in negative match replacement text: "
		       "skipping this rule\n");
	check_warnings(&map_type_pcre, "if /a/ junk\n/a/ b\nendif x\n",
		       "pcre map T, line 1: ignoring extra text after IF statement: \"junk\"\n"
		       "pcre map T, line 1: do not prepend whitespace to statements between IF "
		       "and ENDIF\n"
		       "pcre map T, line 3: ignoring extra text after ENDIF\n");
	/* A control byte in the table reaches the log as '?', as in Postfix. */
	check_warnings(&map_type_pcre, "/a/\x01 x\n",
		       "pcre map T, line 1: unknown regexp option \"?\": skipping this rule\n");
	/* $99999999999 wraps as Postfix's atoi() does. */
	check_warnings(&map_type_pcre, "/(a)/ $99999999999\n",
		       "pcre map T, line 1: out of range replacement index \"1215752191\": "
		       "skipping this rule\n");
}

/* (a+)+$ on "aaa...ab": PCRE2's match limit ends it; the next rule answers. */
static void test_pcre_match_limit(void **state)
{
	struct map_impl *t = table(&map_type_pcre, "/^(a+)+$/ slow\n/b$/ next\n");
	char key[64], *v, *err;
	time_t start = time(NULL);

	(void)state;
	memset(key, 'a', 40);
	strcpy(key + 40, "b");
	capture_start();
	v = ask(&map_type_pcre, t, key);
	err = capture_end();
	assert_non_null(v);
	assert_string_equal(v, "next");
	assert_non_null(strstr(err, "warning: pcre map T, line 1: match limit exceeded\n"));
	assert_true(time(NULL) - start < 60);
	free(v);
	free(err);
	map_type_pcre.close(t);
}

/* ---- cidr ---- */

static void test_cidr(void **state)
{
	static const struct qa qa[] = {
		{ "192.168.1.7", "lan" },
		{ "192.168.2.7", "not 203.0.113/24, v4" },
		{ "10.0.0.1", "host" },
		{ "192.0.2.9", "bracketed" },
		{ "198.51.100.1", "bracket then mask" },
		{ "2001:db8::1", "v6" },
		{ "2001:DB8:0::1", "v6" },
		{ "::ffff:192.168.1.7", "mapped" },
		{ "172.16.5.1", "in if" },
		{ "172.16.9.1", "negated in if" },
		{ "172.16.6.1", "not 203.0.113/24, v4" },	/* the IF block says nothing */
		{ "1.2.3.9", "wrapped /24" },
		{ "8.8.8.8", "not 203.0.113/24, v4" },
		{ "203.0.113.1", NULL },
		{ "::1", NULL },
		{ "[10.0.0.1]", NULL },
		{ "10.0.0.1 ", NULL },
		{ "010.0.0.1", NULL },
		{ "", NULL },
		{ "garbage", NULL },
	};
	const char *text =
		"192.168.1.0/24 lan\n"
		"10.0.0.1\thost\n"
		"[192.0.2.0/24] bracketed\n"
		"[198.51.100.0]/24 bracket then mask\n"
		"2001:db8::/32 v6\n"
		"::ffff:0:0/96 mapped\n"
		"if 172.16.0.0/12\n"
		"172.16.5.0/24 in if\n"
		"!172.16.6.0/24 negated in if\n"
		"endif\n"
		"1.2.3.0/4294967320 wrapped /24\n"
		"!203.0.113.0/24 not 203.0.113/24, v4\n";

	(void)state;
	check_answers(&map_type_cidr, text, qa, sizeof(qa) / sizeof(qa[0]));
}

static void test_cidr_warnings(void **state)
{
	(void)state;
	check_warnings(&map_type_cidr, "1.2.3.4/24 x\n",
		       "cidr map T, line 1: non-null host address bits in \"1.2.3.4/24\", perhaps "
		       "you should use \"1.2.3.0/24\" instead: skipping this rule\n");
	check_warnings(&map_type_cidr, "2001:db8::1/31 x\n",
		       "cidr map T, line 1: non-null host address bits in \"2001:db8::1/31\", "
		       "perhaps you should use \"2001:db8::/31\" instead: skipping this rule\n");
	check_warnings(&map_type_cidr, "1.2.3.0/33 x\n1.2.3.0/ x\n1.2.3/8 x\nfoo x\n",
		       "cidr map T, line 1: bad mask length in \"1.2.3.0/33\": skipping this rule\n"
		       "cidr map T, line 2: bad mask value in \"1.2.3.0/\": skipping this rule\n"
		       "cidr map T, line 3: bad network value in \"1.2.3/8\": skipping this rule\n"
		       "cidr map T, line 4: bad address pattern: \"foo\": skipping this rule\n");
	check_warnings(&map_type_cidr, "[1.2.3.4 x\n[1.2.3.4]x y\n1.2.3.4\n!\n",
		       "cidr map T, line 1: missing ']' character after \"[1.2.3.4\": skipping this rule\n"
		       "cidr map T, line 2: garbage after \"[1.2.3.4]\": skipping this rule\n"
		       "cidr map T, line 3: no lookup result: skipping this rule\n"
		       "cidr map T, line 4: no address pattern: skipping this rule\n");
	check_warnings(&map_type_cidr, "endif\nif 1.2.3.0/24\nendif x\n",
		       "cidr map T, line 1: ENDIF without IF: skipping this rule\n"
		       "cidr map T, line 3: garbage after ENDIF: skipping this rule\n"
		       "cidr map T, line 2: IF has no matching ENDIF\n");
}

/* ---- every type ---- */

/* IF nesting deeper than any call stack: a heap stack, no recursion. */
static void test_deep_nesting(void **state)
{
	const struct map_type *types[] = { &map_type_regexp, &map_type_pcre, &map_type_cidr };
	enum { DEPTH = 200000 };

	(void)state;
	for (size_t ti = 0; ti < 3; ti++) {
		const struct map_type *type = types[ti];
		int cidr = type == &map_type_cidr;
		struct buf b = BUF_INIT;
		struct map_impl *t;
		char *v, *err;

		for (int i = 0; i < DEPTH; i++)
			buf_puts(&b, cidr ? "if 10.0.0.0/8\n" : "if /a/\n");
		buf_puts(&b, cidr ? "10.1.2.3 deep\n" : "/^a$/ deep\n");
		for (int i = 0; i < DEPTH; i++)
			buf_puts(&b, "endif\n");
		buf_puts(&b, cidr ? "0.0.0.0/0 after\n" : "/./ after\n");
		t = table(type, b.data);
		v = ask(type, t, cidr ? "10.1.2.3" : "a");
		assert_string_equal(v, "deep");
		free(v);
		v = ask(type, t, cidr ? "11.1.2.3" : "b");
		assert_string_equal(v, "after");
		free(v);
		type->close(t);
		/* Unclosed: one warning per IF, the innermost first, nothing found after. */
		buf_reset(&b);
		for (int i = 0; i < 1000; i++)
			buf_puts(&b, cidr ? "if 10.0.0.0/8\n" : "if /a/\n");
		buf_puts(&b, cidr ? "0.0.0.0/0 x\n" : "/./ x\n");
		capture_start();
		t = table(type, b.data);
		err = capture_end();
		assert_non_null(strstr(err, ", line 1000: IF has no matching ENDIF\n"));
		assert_non_null(strstr(err, ", line 1: IF has no matching ENDIF\n"));
		assert_null(ask(type, t, cidr ? "11.1.2.3" : "b"));
		type->close(t);
		free(err);
		buf_free(&b);
	}
}

/* Through the registry: the type names, the flags, open errors with the file. */
static void test_open_errors(void **state)
{
	static const struct {
		const char *spec, *why;
	} cases[] = {
		{ "pcre:/nonexistent/t", "pcre:/nonexistent/t: open /nonexistent/t: No such file or directory" },
		{ "regexp:/nonexistent/t", "regexp:/nonexistent/t: open /nonexistent/t: No such file or directory" },
		{ "cidr:/nonexistent/t", "cidr:/nonexistent/t: open /nonexistent/t: No such file or directory" },
		{ "pcre:{{/a/ b}", "pcre:{{/a/ b}: pcre map: missing '}' in \"{{/a/ b}\"" },
		{ "pcre:{{/a/ b}}x", "pcre:{{/a/ b}}x: pcre map: syntax error after '}' in \"{{/a/ b}}x\"" },
		{ "regexp:{/a/ b}", "regexp:{/a/ b}: regexp map: no '{' at start of text in \"/a/\"" },
		{ "cidr:{{1.2.3.4 x}y}", "cidr:{{1.2.3.4 x}y}: cidr map: syntax error after '}' in \"{1.2.3.4 x}y\"" },
	};
	struct map *m;
	char *why, *v;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		m = map_open(cases[i].spec, &why);
		assert_null(m);
		assert_non_null(why);
		assert_string_equal(why, cases[i].why);
		free(why);
	}
	m = map_open("pcre:{ {/^(A)/ got $1} , {/b/ B} }", &why);
	assert_non_null(m);
	assert_true(map_is_pattern(m));
	assert_true(map_in_memory(m));
	assert_false(map_is_indexed(m));
	assert_string_equal(map_type_name(m), "pcre");
	/* Not folded: the group gives the key's own case. */
	assert_int_equal(map_lookup(m, "Abc", &v), MAP_FOUND);
	assert_string_equal(v, "got A");
	free(v);
	assert_int_equal(map_lookup(m, "xyz", &v), MAP_NOTFOUND);
	map_free(&m);
}

/* Garbage tables: every type survives them and answers (or not) every key. */
static void test_garbage_tables(void **state)
{
	const struct map_type *types[] = { &map_type_regexp, &map_type_pcre, &map_type_cidr };
	static const char alphabet[] = "/!\\()[]{}$#|.*+?^ \t\nifendIFENDabx019:.%\"";
	uint32_t seed = 777;

	(void)state;
	capture_start();
	for (int round = 0; round < 300; round++) {
		char text[400], key[40];
		size_t len = (size_t)(round * 7 % 400);
		const struct map_type *type = types[round % 3];
		struct map_impl *t;

		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			text[i] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
			if ((seed >> 4) % 31 == 0)
				text[i] = (char)(seed >> 24);
		}
		t = map_pattern_open_text(type, "G", text, len);
		for (int k = 0; k < 8; k++) {
			size_t klen = (size_t)k * 5;
			char *v = NULL;
			enum map_status st;

			for (size_t i = 0; i < klen; i++) {
				seed = seed * 1103515245u + 12345u;
				key[i] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
			}
			key[klen] = '\0';
			st = type->lookup(t, key, &v);
			assert_true(st == MAP_FOUND || st == MAP_NOTFOUND);
			assert_true((st == MAP_FOUND) == (v != NULL));
			free(v);
		}
		type->close(t);
	}
	free(capture_end());
}

/* ---- threads: lookups share only read-only rules ---- */

struct thr {
	const struct map_type *type;
	struct map_impl *t;
	int errors;
	int id;
};

static void *thr_main(void *arg)
{
	struct thr *th = arg;

	for (int i = 0; i < 2000; i++) {
		char key[64], want[64], *v = NULL;

		if (th->type == &map_type_cidr) {
			snprintf(key, sizeof(key), "10.%d.%d.1", th->id, i % 256);
			snprintf(want, sizeof(want), "net");
		} else {
			snprintf(key, sizeof(key), "u%d-%d@example.com", th->id, i);
			snprintf(want, sizeof(want), "%d-%d", th->id, i);
		}
		if (th->type->lookup(th->t, key, &v) != MAP_FOUND || strcmp(v, want) != 0)
			th->errors++;
		free(v);
	}
	return NULL;
}

static void test_threads(void **state)
{
	enum { NTHREADS = 8 };
	const struct map_type *types[] = { &map_type_regexp, &map_type_pcre, &map_type_cidr };
	const char *texts[] = {
		"/^u([0-9]+)-([0-9]+)@example\\.com$/ $1-$2\n",
		"/^u(\\d+)-(\\d+)@example\\.com$/ $1-$2\n",
		"10.0.0.0/8 net\n",
	};

	(void)state;
	for (size_t ti = 0; ti < 3; ti++) {
		struct map_impl *t = table(types[ti], texts[ti]);
		struct thr th[NTHREADS];
		pthread_t tid[NTHREADS];

		for (int i = 0; i < NTHREADS; i++) {
			th[i] = (struct thr){ types[ti], t, 0, i };
			assert_int_equal(pthread_create(&tid[i], NULL, thr_main, &th[i]), 0);
		}
		for (int i = 0; i < NTHREADS; i++) {
			pthread_join(tid[i], NULL);
			assert_int_equal(th[i].errors, 0);
		}
		types[ti]->close(t);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lines),
		cmocka_unit_test(test_lines_bad_start),
		cmocka_unit_test(test_lines_nul),
		cmocka_unit_test(test_lines_garbage),
		cmocka_unit_test(test_regexp),
		cmocka_unit_test(test_regexp_warnings),
		cmocka_unit_test(test_pcre),
		cmocka_unit_test(test_pcre_warnings),
		cmocka_unit_test(test_pcre_match_limit),
		cmocka_unit_test(test_cidr),
		cmocka_unit_test(test_cidr_warnings),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test(test_garbage_tables),
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
