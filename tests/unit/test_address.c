/*
 * Unit tests for src/smtp/address.c.  The expected results were measured on
 * a running Postfix 3.7.11 (strict_rfc821_envelopes = no), from its replies:
 * "554 5.7.1 <ADDR>: ... rejected" shows the parsed address, and 501 5.5.4 /
 * 501 5.1.7 / 501 5.1.3 / 555 5.5.4 the errors.  Marked "mxgate:" where we
 * deliberately differ.
 *
 * The address parser is not incremental, so "fed one byte at a time" means
 * the whole pipeline: each case's command line goes through the line reader
 * whole and one byte per feed, then smtp_split_command(), then the parser;
 * both must give the same answer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtp/address.h"
#include "smtp/linereader.h"
#include "util/buf.h"

struct path_case {
	const char *line;	/* command line without CRLF */
	int	result;
	const char *addr;	/* internal form when PATH_OK */
	const char *params;
};

static const struct path_case cases[] = {
	{ "MAIL FROM:<a@b>", PATH_OK, "a@b", "" },
	{ "MAIL FROM: root@sender.example.com", PATH_OK, "root@sender.example.com", "" },
	{ "MAIL FROM:<>", PATH_OK, "", "" },
	{ "MAIL FROM:<> SIZE=1", PATH_OK, "", "SIZE=1" },
	{ "mail from:<a@b>", PATH_OK, "a@b", "" },
	{ "MAIL FROM:<a@b> SIZE=100", PATH_OK, "a@b", "SIZE=100" },
	{ "MAIL FROM:<a@b>  SIZE=100 BODY=8BITMIME", PATH_OK, "a@b", "SIZE=100 BODY=8BITMIME" },
	{ "MAIL FROM:<a@b>\tSIZE=10", PATH_OK, "a@b", "SIZE=10" },
	{ "MAIL FROM: <a@b>", PATH_OK, "a@b", "" },
	{ "MAIL  FROM:<a@b>", PATH_OK, "a@b", "" },
	{ "MAIL FROM:\t<a@b>", PATH_OK, "a@b", "" },
	{ "MAIL FROM:<a@b>  ", PATH_OK, "a@b", "" },
	{ "MAIL FROM:<a@b> <c@d>", PATH_OK, "a@b", "<c@d>" },	/* then 555 */
	{ "MAIL FROM:a@b c@d", PATH_OK, "a@b", "c@d" },
	{ "MAIL FROM:Joe <a@b>", PATH_OK, "Joe", "<a@b>" },
	{ "MAIL FROM:<a@b> \"FOO=b r\"", PATH_OK, "a@b", "\"FOO=b r\"" },
	/* quoting, escapes and comments: internal (unquoted) form */
	{ "RCPT TO:<\"john smith\"@x>", PATH_OK, "john smith@x", "" },
	{ "MAIL FROM:<\"john\"@x>", PATH_OK, "john@x", "" },
	{ "MAIL FROM:<\"a\\\"b\"@x>", PATH_OK, "a\"b@x", "" },
	{ "MAIL FROM:<\"a\\\\b\"@x>", PATH_OK, "a\\b@x", "" },
	{ "MAIL FROM:<wietse\\ venema@x>", PATH_OK, "wietse venema@x", "" },
	{ "MAIL FROM:wietse\\ venema@x", PATH_OK, "wietse venema@x", "" },
	{ "MAIL FROM:<a\\@b@x>", PATH_OK, "a@b@x", "" },
	{ "MAIL FROM:<a\\\"b@c>", PATH_OK, "a\"b@c", "" },
	{ "MAIL FROM:<a@b\\.c>", PATH_OK, "a@b.c", "" },
	{ "MAIL FROM:<u@local (c)>", PATH_OK, "u@local", "" },
	{ "MAIL FROM:<a(c)@b>", PATH_OK, "a@b", "" },
	{ "MAIL FROM:<a(b@c>", PATH_OK, "a", "" },
	{ "MAIL FROM:<$(touch /tmp/pwn)@x>", PATH_OK, "$@x", "" },
	{ "MAIL FROM:<`id`@x>", PATH_OK, "`id`@x", "" },
	{ "MAIL FROM:<\"x'/**/UNION/**/SELECT--\"@local>", PATH_OK,
	  "x'/**/UNION/**/SELECT--@local", "" },
	{ "MAIL FROM:\"a b\"@c", PATH_OK, "a b@c", "" },
	{ "MAIL FROM:<\"a\".\"b\"@c>", PATH_OK, "a.b@c", "" },
	{ "MAIL FROM:<\"\"@x>", PATH_OK, "@x", "" },
	{ "MAIL FROM:<\"\">", PATH_OK, "", "" },
	{ "MAIL FROM:<\"a b\">", PATH_OK, "a b", "" },
	/* source routes */
	{ "MAIL FROM:<@a,@b:u@d>", PATH_OK, "u@d", "" },
	{ "RCPT TO:<@relay.example,@b.example:u@local>", PATH_OK, "u@local", "" },
	{ "MAIL FROM:@a:u@d", PATH_OK, "u@d", "" },
	{ "MAIL FROM:<@a,b:u@d>", PATH_OK, "u@d", "" },
	{ "MAIL FROM:<@a:@b:u@d>", PATH_OK, "@b:u@d", "" },
	{ "MAIL FROM:<@x:>", PATH_OK, "", "" },
	{ "MAIL FROM:<@a,@b:>", PATH_OK, "", "" },
	/* odd forms Postfix accepts */
	{ "MAIL FROM:a@b>", PATH_OK, "a@b", "" },
	{ "MAIL FROM:<<a@b>>", PATH_OK, "a@b", "" },
	{ "MAIL FROM:<a@b>>", PATH_OK, "a@b", "" },
	{ "MAIL FROM:<Joe <a@b>>", PATH_OK, "a@b", "" },
	{ "MAIL FROM:<\"x\" <a@b>>", PATH_OK, "a@b", "" },
	{ "MAIL FROM:<@ <a@b>>", PATH_OK, "a@b", "" },
	{ "MAIL FROM:<<>>", PATH_OK, "", "" },
	{ "MAIL FROM:< @doe>", PATH_OK, "@doe", "" },
	{ "MAIL FROM:<u@[1.2.3.4>", PATH_OK, "u@[1.2.3.4]", "" },
	{ "MAIL FROM:<a@b,>", PATH_OK, "a@b", "" },
	{ "MAIL FROM:<,a@b>", PATH_OK, "a@b", "" },
	{ "MAIL FROM:<a@b@c>", PATH_OK, "a@b@c", "" },
	{ "MAIL FROM:<a%b@c>", PATH_OK, "a%b@c", "" },
	{ "MAIL FROM:<.a@b>", PATH_OK, ".a@b", "" },
	{ "MAIL FROM:<a.@b>", PATH_OK, "a.@b", "" },
	{ "MAIL FROM:<a..b@c>", PATH_OK, "a..b@c", "" },
	{ "MAIL FROM:<a:b@c>", PATH_OK, "a:b@c", "" },
	{ "MAIL FROM:x:y@z", PATH_OK, "x:y@z", "" },
	{ "MAIL FROM:<a]b@c>", PATH_OK, "a]b@c", "" },
	{ "MAIL FROM:<a)b@c>", PATH_OK, "a)b@c", "" },
	{ "MAIL FROM:<[1.2.3.4]>", PATH_OK, "[1.2.3.4]", "" },
	{ "MAIL FROM:<ab>", PATH_OK, "ab", "" },
	{ "MAIL FROM:ab", PATH_OK, "ab", "" },
	{ "RCPT TO:<Postmaster>", PATH_OK, "Postmaster", "" },
	{ "RCPT TO:postmaster", PATH_OK, "postmaster", "" },
	{ "RCPT to:<a@b>", PATH_OK, "a@b", "" },
	{ "RCPT TO:<a@b> NOTIFY=NEVER", PATH_OK, "a@b", "NOTIFY=NEVER" },
	/* domains */
	{ "MAIL FROM:<a@B.EXAMPLE>", PATH_OK, "a@B.EXAMPLE", "" },
	{ "MAIL FROM:<a@[1.2.3.4]>", PATH_OK, "a@[1.2.3.4]", "" },
	{ "MAIL FROM:<a@[ipv6:::1]>", PATH_OK, "a@[ipv6:::1]", "" },
	{ "MAIL FROM:<a@[IPv6:::1]>", PATH_OK, "a@[IPv6:::1]", "" },
	{ "MAIL FROM:<a@b.>", PATH_OK, "a@b.", "" },
	{ "MAIL FROM:<a@b_c>", PATH_OK, "a@b_c", "" },
	{ "MAIL FROM:<a@b.123>", PATH_OK, "a@b.123", "" },
	{ "MAIL FROM:<f\xc3\xb6@x>", PATH_OK, "f\xc3\xb6@x", "" },
	{ "MAIL FROM:<a@\xc3\xb6.x> SMTPUTF8", PATH_OK, "a@\xc3\xb6.x", "SMTPUTF8" },
	{ "MAIL FROM:<a@bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.c>", PATH_OK,
	  "a@bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.c", "" },
	/* syntax: no keyword or no address */
	{ "MAIL FROM:", PATH_SYNTAX, NULL, NULL },
	{ "MAIL", PATH_SYNTAX, NULL, NULL },
	{ "MAIL FROM", PATH_SYNTAX, NULL, NULL },
	{ "MAIL TO:<a@b>", PATH_SYNTAX, NULL, NULL },
	{ "MAIL FROM :<a@b>", PATH_SYNTAX, NULL, NULL },
	{ "MAIL FROM <a@b>", PATH_SYNTAX, NULL, NULL },
	{ "RCPT TO:", PATH_SYNTAX, NULL, NULL },
	{ "RCPT TO: ", PATH_SYNTAX, NULL, NULL },
	{ "RCPT FOO", PATH_SYNTAX, NULL, NULL },
	{ "RCPT FROM:<a@b>", PATH_SYNTAX, NULL, NULL },
	/* bad address syntax (checklist rows 18, 24, 30, 32) */
	{ "MAIL FROM:<\"abc@local>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<john@ >", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a@b", PATH_BAD, NULL, NULL },
	{ "RCPT TO:<a@b", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a@b>x", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a@b>:x", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:a@b:SIZE=1", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a@b>SIZE=1", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a@b>,<c@d>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a@b,c@d>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<@a,@b>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<x <a@b>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a>b@c>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a b@c>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a\tb@c>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a b>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a b> FOO=bar", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<\"a\" \"b\"@c>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a\"b\">", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a\"b@c>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a[b]@c>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a@b\\>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<;sleep 66;>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a@b;c>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<u@>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<@>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a@.b>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a@b..c>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a@b..>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a@.>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a@-b>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a@b->", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a@b.-c>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a@b c>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a@b:c>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a@b\"c\">", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a@1.2.3.4>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a@123>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a@[foo]>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a@[999.1.1.1]>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a@[1.2.3]>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a@[ipv6:1.2.3.4]>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a@[1.2.3.4]x>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a@bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.c>",
	  PATH_BAD, NULL, NULL },
	{ "RCPT TO:<>", PATH_BAD, NULL, NULL },
	{ "RCPT TO:<@x:>", PATH_BAD, NULL, NULL },
	{ "RCPT TO:<\"\">", PATH_BAD, NULL, NULL },
	/* mxgate: control bytes are bad syntax (Postfix accepts them) */
	{ "MAIL FROM:<a\x01" "b@c>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<\"a\x01" "b\"@c>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a\x7f" "b@c>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a\rb@c>", PATH_BAD, NULL, NULL },
	/* mxgate: an '@' that is not a real one, with no real one: no unchecked domain */
	{ "MAIL FROM:<\"a@evil\">", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<a\\@evil>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:[x@local>", PATH_BAD, NULL, NULL },
	{ "MAIL FROM:<\"u@external.example\"@local>", PATH_OK, "u@external.example@local", "" },
	/* mxgate: "<>x" is bad (Postfix takes "x") */
	{ "MAIL FROM:<>x", PATH_BAD, NULL, NULL },
};

/* Split the line into verb and argument and parse the argument. */
static int
parse_line(const char *line, size_t len, struct smtp_path *p)
{
	const char *verb, *args;
	size_t vlen;

	assert_int_equal(smtp_split_command(line, len, &verb, &vlen, &args), 0);
	if (vlen == 4 && strncasecmp(verb, "MAIL", 4) == 0)
		return smtp_parse_path(args, "FROM:", p);
	assert_true(vlen == 4 && strncasecmp(verb, "RCPT", 4) == 0);
	return smtp_parse_path(args, "TO:", p);
}

static void
check_case(const struct path_case *c, const char *line, size_t len)
{
	struct smtp_path p;
	int r = parse_line(line, len, &p);

	if (r != c->result)
		fail_msg("%s: got %d want %d", c->line, r, c->result);
	if (r == PATH_OK) {
		if (strcmp(p.addr, c->addr) != 0)
			fail_msg("%s: addr [%s] want [%s]", c->line, p.addr, c->addr);
		if (strcmp(p.params, c->params) != 0)
			fail_msg("%s: params [%s] want [%s]", c->line, p.params, c->params);
	} else {
		assert_null(p.addr);
	}
	smtp_path_free(&p);
	assert_null(p.addr);
}

static void
test_path_table(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_case(&cases[i], cases[i].line, strlen(cases[i].line));
}

static void
test_path_table_trickled(void **state)
{
	/* Every case as a wire line through the line reader, whole and 1 byte per feed. */
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct buf wire = BUF_INIT;

		buf_puts(&wire, cases[i].line);
		buf_puts(&wire, "\r\n");
		for (size_t chunk = 0; chunk <= 1; chunk++) {
			struct linereader lr;
			size_t off = 0, used, n;
			int got = 0;

			lr_init(&lr, 2048);
			while (off < wire.len && !got) {
				n = chunk ? 1 : wire.len - off;
				got = lr_feed(&lr, wire.data + off, n, &used) == LR_LINE;
				off += used;
			}
			assert_true(got);
			assert_int_equal(off, wire.len);
			check_case(&cases[i], lr.line.data, lr.line.len);
			lr_free(&lr);
		}
		buf_free(&wire);
	}
}

static void
test_nul(void **state)
{
	/* Checklist row 18: the line holds a NUL; as C string it ends there: "<a" is bad. */
	static const char line[] = "MAIL FROM:<a\0b@local>";
	struct smtp_path p;

	assert_int_equal(parse_line(line, sizeof(line) - 1, &p), PATH_BAD);
}

static void
test_lengths(void **state)
{
	/* Checklist row 32: long local parts pass (Postfix), memory stays bounded, no overflow. */
	static const size_t sizes[] = { 64, 65, 255, 256, 1000, 4000, 4096, 65536 };
	struct smtp_path p;

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct buf arg = BUF_INIT;

		buf_puts(&arg, " FROM:<");
		for (size_t k = 0; k < sizes[i]; k++)
			buf_putc(&arg, 'a');
		buf_puts(&arg, "@b>");
		int r = smtp_parse_path(arg.data, "FROM:", &p);

		if (arg.len <= SMTP_ARG_MAX) {
			assert_int_equal(r, PATH_OK);
			assert_int_equal(strlen(p.addr), sizes[i] + 2);
		} else {
			assert_int_equal(r, PATH_BAD);
		}
		smtp_path_free(&p);
		buf_free(&arg);
	}
	/* Domain of 256 bytes: bad (host names are at most 255). */
	{
		struct buf arg = BUF_INIT;

		buf_puts(&arg, " FROM:<a@");
		for (int k = 0; k < 5; k++)
			buf_puts(&arg, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.");
		buf_puts(&arg, "c>");
		assert_int_equal(smtp_parse_path(arg.data, "FROM:", &p), PATH_BAD);
		buf_truncate(&arg, arg.len - 3);
		buf_puts(&arg, ">");	/* 254 bytes + trailing dot */
		assert_int_equal(smtp_parse_path(arg.data, "FROM:", &p), PATH_OK);
		smtp_path_free(&p);
		buf_free(&arg);
	}
}

static void
test_flags(void **state)
{
	struct smtp_path p;

	assert_int_equal(smtp_parse_path(" FROM:<@a,@b:u@d>", "FROM:", &p), PATH_OK);
	assert_int_equal(p.source_route, 1);
	assert_int_equal(p.has_8bit, 0);
	smtp_path_free(&p);
	assert_int_equal(smtp_parse_path(" FROM:<f\xc3\xb6@x>", "FROM:", &p), PATH_OK);
	assert_int_equal(p.has_8bit, 1);
	assert_int_equal(p.domain_8bit, 0);
	smtp_path_free(&p);
	/* Without SMTPUTF8 the caller treats domain_8bit as PATH_BAD (Postfix: 501 5.1.7). */
	assert_int_equal(smtp_parse_path(" FROM:<a@\xc3\xb6.x>", "FROM:", &p), PATH_OK);
	assert_int_equal(p.domain_8bit, 1);
	smtp_path_free(&p);
	/* Invalid UTF-8 in a domain is bad either way. */
	assert_int_equal(smtp_parse_path(" FROM:<a@\xc3.x>", "FROM:", &p), PATH_BAD);
}

static void
test_bad_word(void **state)
{
	/*
	 * PATH_BAD still names the address as written (for Postfix's "Illegal
	 * address syntax" warning), and says whether a quote or bracket is
	 * left open: Postfix's tokenizer refuses those without the warning.
	 */
	static const struct {
		const char *arg, *word;
		int unclosed;
	} bad[] = {
		{ " TO:<a@-b>", "<a@-b>", 0 },
		{ " TO: <a b@virt.test>", "<a b@virt.test>", 0 },
		{ " TO:<a@b>x SIZE=1", "<a@b>x", 0 },
		{ " TO:<>", "<>", 0 },
		{ " TO:<a@b", "<a@b", 1 },
		{ " TO:<\"abc@virt.test>", "<\"abc@virt.test>", 1 },
		{ " TO:a\"b@c", "a\"b@c", 1 },
		{ " TO:<a@b> <c", NULL, 0 },	/* PATH_OK; the parameter is the 555 */
	};
	struct smtp_path p;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = smtp_parse_path(bad[i].arg, "TO:", &p);

		if (bad[i].word == NULL) {
			assert_int_equal(r, PATH_OK);
			smtp_path_free(&p);
			continue;
		}
		if (r != PATH_BAD)
			fail_msg("%s: got %d", bad[i].arg, r);
		assert_null(p.addr);
		if (p.word_len != strlen(bad[i].word) || memcmp(p.word, bad[i].word, p.word_len) != 0)
			fail_msg("%s: word [%.*s] want [%s]", bad[i].arg, (int)p.word_len, p.word,
				 bad[i].word);
		if (p.unclosed != bad[i].unclosed)
			fail_msg("%s: unclosed %d", bad[i].arg, p.unclosed);
		smtp_path_free(&p);
	}
}

static void
test_resolvable(void **state)
{
	/* Postfix 3.7.11: 501 with "Illegal address syntax" for these (allow_min_user = no). */
	static const struct {
		const char *arg;
		int utf8, ok;
	} cases_r[] = {
		{ " FROM:<a@example.org>", 0, 1 },
		{ " FROM:<>", 0, 1 },
		{ " FROM:<-a@example.org>", 0, 0 },
		{ " FROM:<\"-a\"@example.org>", 0, 0 },
		{ " FROM:<@route.example:-a@example.org>", 0, 0 },
		{ " FROM:<-a>", 0, 0 },
		{ " FROM:<a-b@example.org>", 0, 1 },
		{ " FROM:<a@b\xc3\xbc" "cher.example>", 0, 0 },
		{ " FROM:<a@b\xc3\xbc" "cher.example>", 1, 1 },
		{ " FROM:<\xc3\xbc@example.org>", 0, 1 },	/* the local part may be 8-bit */
	};
	struct smtp_path p;

	for (size_t i = 0; i < sizeof(cases_r) / sizeof(cases_r[0]); i++) {
		assert_int_equal(smtp_parse_path(cases_r[i].arg, "FROM:", &p), PATH_OK);
		if (smtp_path_resolvable(&p, cases_r[i].utf8) != cases_r[i].ok)
			fail_msg("%s utf8=%d: want %d", cases_r[i].arg, cases_r[i].utf8, cases_r[i].ok);
		smtp_path_free(&p);
	}
	assert_int_equal(smtp_parse_address("-alice@virt.test", &p), PATH_OK);
	assert_false(smtp_path_resolvable(&p, 1));
	smtp_path_free(&p);
	assert_false(smtp_path_resolvable(&p, 1));	/* addr NULL */
}

static void
test_quote(void **state)
{
	/* External forms as Postfix logs them in from=<...>. */
	static const char *const pairs[][2] = {
		{ "a@b", "a@b" }, { "", "" }, { "john smith@x", "\"john smith\"@x" },
		{ "@doe", "\"\"@doe" }, { "@x", "\"\"@x" }, { ".a@b", "\".a\"@b" },
		{ "a.@b", "\"a.\"@b" }, { "a..b@c", "\"a..b\"@c" }, { "a.b@c", "a.b@c" },
		{ "a@b@c", "\"a@b\"@c" }, { "a\"b@x", "\"a\\\"b\"@x" },
		{ "a\\b@x", "\"a\\\\b\"@x" }, { "a:b@c", "\"a:b\"@c" }, { "a]b@c", "\"a]b\"@c" },
		{ "a)b@c", "\"a)b\"@c" }, { "[1.2.3.4]", "\"[1.2.3.4]\"" }, { "a b", "\"a b\"" },
		{ "ab", "ab" }, { "$@x", "$@x" }, { "`id`@x", "`id`@x" }, { "a%b@c", "a%b@c" },
		{ "x'/**/UNION/**/SELECT--@local", "x'/**/UNION/**/SELECT--@local" },
		{ "f\xc3\xb6@x", "f\xc3\xb6@x" }, { "@b:u@d", "\"@b:u\"@d" },
		{ "u@[1.2.3.4]", "u@[1.2.3.4]" },
	};

	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		struct buf b = BUF_INIT;

		smtp_addr_quote(&b, pairs[i][0]);
		if (strcmp(buf_str(&b), pairs[i][1]) != 0)
			fail_msg("quote [%s]: got [%s] want [%s]", pairs[i][0], buf_str(&b), pairs[i][1]);
		buf_free(&b);
	}
}

struct param_case {
	const char *params;
	int	result;
	const char *bad;
	uint64_t size;
};

static void
test_params(void **state)
{
	static const struct param_case pc[] = {
		{ "", PARAM_OK, NULL, 0 },
		{ "SIZE=100", PARAM_OK, NULL, 100 },
		{ "size=10", PARAM_OK, NULL, 10 },
		{ "SIZE=00000000000000000000000010", PARAM_OK, NULL, 10 },
		{ "SIZE=1 SIZE=2", PARAM_OK, NULL, 2 },
		{ "SIZE=9223372036854775807", PARAM_OK, NULL, 9223372036854775807ULL },
		{ "SIZE=10 SMTPUTF8 BODY=8BITMIME", PARAM_OK, NULL, 10 },
		{ "BODY=7BIT", PARAM_OK, NULL, 0 },
		{ "BODY=8bitmime", PARAM_OK, NULL, 0 },
		{ "smtputf8", PARAM_OK, NULL, 0 },
		{ "AUTH=<>", PARAM_OK, NULL, 0 },
		{ "SIZE=10\t", PARAM_OK, NULL, 10 },
		{ "SIZE=abc", PARAM_BAD_SIZE, NULL, 0 },
		{ "SIZE=", PARAM_BAD_SIZE, NULL, 0 },
		{ "SIZE=+10", PARAM_BAD_SIZE, NULL, 0 },
		{ "SIZE=-1", PARAM_BAD_SIZE, NULL, 0 },
		{ "SIZE=10x", PARAM_BAD_SIZE, NULL, 0 },
		{ "SIZE=99999999999999999999", PARAM_SIZE_OVERFLOW, NULL, 0 },
		{ "SIZE=9223372036854775808", PARAM_SIZE_OVERFLOW, NULL, 0 },
		{ "SIZE=18446744073709551615", PARAM_SIZE_OVERFLOW, NULL, 0 },
		{ "SIZE=99999999999999999999 FOO=bar", PARAM_SIZE_OVERFLOW, NULL, 0 },
		{ "SIZE=99999999999999999999 SIZE=abc", PARAM_SIZE_OVERFLOW, NULL, 0 },
		{ "SIZE=99999999 SIZE=abc", PARAM_BAD_SIZE, NULL, 0 },
		{ "SIZE=abc FOO=bar", PARAM_BAD_SIZE, NULL, 0 },
		{ "FOO=bar SIZE=abc", PARAM_UNSUPPORTED, "FOO=bar", 0 },
		{ "FOO=bar", PARAM_UNSUPPORTED, "FOO=bar", 0 },
		{ "FOO=bar BAZ=1", PARAM_UNSUPPORTED, "FOO=bar", 0 },
		{ "FOO", PARAM_UNSUPPORTED, "FOO", 0 },
		{ "SIZE", PARAM_UNSUPPORTED, "SIZE", 0 },
		{ "BODY", PARAM_UNSUPPORTED, "BODY", 0 },
		{ "BODY=", PARAM_UNSUPPORTED, "BODY=", 0 },
		{ "BODY=x", PARAM_UNSUPPORTED, "BODY=x", 0 },
		{ "BODY=BINARYMIME", PARAM_UNSUPPORTED, "BODY=BINARYMIME", 0 },
		{ "SMTPUTF8=x", PARAM_UNSUPPORTED, "SMTPUTF8=x", 0 },
		{ "XVERP", PARAM_UNSUPPORTED, "XVERP", 0 },
		{ "<c@d>", PARAM_UNSUPPORTED, "<c@d>", 0 },
		{ "\"FOO=b r\"", PARAM_UNSUPPORTED, "\"FOO=b r\"", 0 },
		{ "FOO=<x y>", PARAM_UNSUPPORTED, "FOO=<x y>", 0 },
		{ "=", PARAM_UNSUPPORTED, "=", 0 },
		{ "=\"", PARAM_UNSUPPORTED, "=\"", 0 },
		{ "RET=FULL", PARAM_DSN_DISABLED, NULL, 0 },
		{ "ENVID=x", PARAM_DSN_DISABLED, NULL, 0 },
	};

	for (size_t i = 0; i < sizeof(pc) / sizeof(pc[0]); i++) {
		struct esmtp_params p;
		char *bad = (char *)"junk";
		int r = smtp_parse_params(pc[i].params, &p, &bad);

		if (r != pc[i].result)
			fail_msg("[%s]: got %d want %d", pc[i].params, r, pc[i].result);
		if (pc[i].bad) {
			assert_non_null(bad);
			assert_string_equal(bad, pc[i].bad);
		} else {
			assert_null(bad);
		}
		if (r == PARAM_OK)
			assert_int_equal(p.size, pc[i].size);
		free(bad);
	}
	{
		struct esmtp_params p;
		char *bad;

		assert_int_equal(smtp_parse_params("SIZE=10 SMTPUTF8 BODY=8BITMIME AUTH=x", &p, &bad),
				 PARAM_OK);
		assert_int_equal(p.has_size, 1);
		assert_int_equal(p.smtputf8, 1);
		assert_int_equal(p.body, BODY_8BITMIME);
		assert_int_equal(p.auth, 1);
	}
}

static void
test_rcpt_params(void **state)
{
	char *bad;

	assert_int_equal(smtp_parse_rcpt_params("", &bad), PARAM_OK);
	assert_null(bad);
	assert_int_equal(smtp_parse_rcpt_params("NOTIFY=NEVER", &bad), PARAM_DSN_DISABLED);
	assert_int_equal(smtp_parse_rcpt_params("ORCPT=rfc822;a+0D+0AX-Inj:+1@b", &bad),
			 PARAM_DSN_DISABLED);
	assert_int_equal(smtp_parse_rcpt_params("SIZE=10", &bad), PARAM_UNSUPPORTED);
	assert_string_equal(bad, "SIZE=10");
	free(bad);
	assert_int_equal(smtp_parse_rcpt_params("FOO=bar", &bad), PARAM_UNSUPPORTED);
	assert_string_equal(bad, "FOO=bar");
	free(bad);
}

static void
test_split_command(void **state)
{
	const char *verb, *args;
	size_t vlen;

	assert_int_equal(smtp_split_command("MAIL FROM:<a@b>", 15, &verb, &vlen, &args), 0);
	assert_int_equal(vlen, 4);
	assert_memory_equal(verb, "MAIL", 4);
	assert_string_equal(args, " FROM:<a@b>");
	assert_int_equal(smtp_split_command("  NOOP", 6, &verb, &vlen, &args), 0);
	assert_int_equal(vlen, 4);
	assert_string_equal(args, "");
	assert_int_equal(smtp_split_command("QUIT\tx", 6, &verb, &vlen, &args), 0);
	assert_int_equal(vlen, 4);
	assert_string_equal(args, "\tx");
	assert_int_equal(smtp_split_command("", 0, &verb, &vlen, &args), -1);
	assert_int_equal(smtp_split_command(" \t ", 3, &verb, &vlen, &args), -1);
	/* A bare CR is not a separator: "RSET\rQUIT" is one verb (500 unknown). */
	assert_int_equal(smtp_split_command("RSET\rQUIT", 9, &verb, &vlen, &args), 0);
	assert_int_equal(vlen, 9);
}

static void
test_utf8(void **state)
{
	assert_true(smtp_utf8_valid("abc", 3));
	assert_true(smtp_utf8_valid("f\xc3\xb6", 3));
	assert_true(smtp_utf8_valid("\xf0\x9f\x98\x80", 4));
	assert_false(smtp_utf8_valid("f\xc3", 2));
	assert_false(smtp_utf8_valid("\xc0\xaf", 2));		/* overlong */
	assert_false(smtp_utf8_valid("\xed\xa0\x80", 3));	/* surrogate */
	assert_false(smtp_utf8_valid("\xf4\x90\x80\x80", 4));	/* > U+10FFFF */
	assert_false(smtp_utf8_valid("\xff", 1));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_path_table),
		cmocka_unit_test(test_path_table_trickled),
		cmocka_unit_test(test_nul),
		cmocka_unit_test(test_lengths),
		cmocka_unit_test(test_flags),
		cmocka_unit_test(test_bad_word),
		cmocka_unit_test(test_resolvable),
		cmocka_unit_test(test_quote),
		cmocka_unit_test(test_params),
		cmocka_unit_test(test_rcpt_params),
		cmocka_unit_test(test_split_command),
		cmocka_unit_test(test_utf8),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
