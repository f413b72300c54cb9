/*
 * Unit tests for deliver/cleanup.c: each case is fed whole, one byte at a
 * time and in 7-byte pieces, and all three must give the same output, the
 * same size and the same result.  The expected texts are what Postfix 3.7's
 * cleanup(8) stores (tests/system/test_stored_bytes.py compares live).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "deliver/cleanup.h"
#include "util/buf.h"
#include "util/xalloc.h"

static char *drop_names[] = { "bcc", "content-length", "resent-bcc", "return-path" };

static void
conf_init(struct cleanup_conf *cf)
{
	memset(cf, 0, sizeof(*cf));
	cf->header_size_limit = 102400;
	cf->line_limit = 2048;
	cf->hopcount_limit = 50;
	cf->body_checks_size_limit = 51200;
	cf->drop = drop_names;
	cf->ndrop = 4;
	cf->hostname = "mx.example.test";
	cf->myorigin = "mx.example.test";
}

struct res {
	struct buf out, logs;
	size_t	size;
	int	result;
};

static void
run(const struct cleanup_conf *cf, const char *in, size_t len, size_t piece, int add,
    struct res *r)
{
	struct cleanup c;

	memset(r, 0, sizeof(*r));
	cleanup_init(&c, cf, &r->out, add, "s@example.org", "4ABCDEF0123", 1700000000);
	c.log_ctx = "client.example[192.0.2.1]; from=<s@example.org> to=<r@virt.test> proto=ESMTP helo=<c>";
	cleanup_content_start(&c);
	for (size_t off = 0; off < len; off += piece)
		cleanup_feed(&c, in + off, len - off < piece ? len - off : piece);
	cleanup_finish(&c);
	cleanup_take_logs(&c, &r->logs);
	r->size = c.size;
	r->result = cleanup_result(&c);
	cleanup_free(&c);
}

/* Feed in three ways; they must agree.  Returns the whole-feed result (caller frees). */
static struct res
check3(const struct cleanup_conf *cf, const char *in, size_t len, int add)
{
	struct res a, b, c;

	run(cf, in, len, len ? len : 1, add, &a);
	run(cf, in, len, 1, add, &b);
	run(cf, in, len, 7, add, &c);
	assert_int_equal(a.out.len, b.out.len);
	assert_int_equal(a.out.len, c.out.len);
	if (a.out.len)
		assert_memory_equal(a.out.data, b.out.data, a.out.len),
		assert_memory_equal(a.out.data, c.out.data, a.out.len);
	assert_int_equal(a.size, b.size);
	assert_int_equal(a.size, c.size);
	assert_int_equal(a.result, b.result);
	assert_int_equal(a.result, c.result);
	buf_free(&b.out);
	buf_free(&c.out);
	buf_free(&b.logs);
	buf_free(&c.logs);
	return a;
}

static void
expect(const struct cleanup_conf *cf, const char *in, int add, const char *want)
{
	struct res r = check3(cf, in, strlen(in), add);

	assert_int_equal(r.result, CLEANUP_OK);
	assert_string_equal(buf_str(&r.out), want);
	buf_free(&r.out);
	buf_free(&r.logs);
}

static void
test_drop_headers(void **state)
{
	struct cleanup_conf cf;

	conf_init(&cf);
	expect(&cf, "Return-Path: <x@evil>\nFrom: a@b.c\nBcc: s@x,\n t@y\nresent-bcc: z\n"
	       "Content-Length: 3\nSubject: s\n\nbody\n", 0, "From: a@b.c\nSubject: s\n\nbody\n");
}

static void
test_header_forms(void **state)
{
	struct cleanup_conf cf;

	conf_init(&cf);
	/* the blanks before the colon go */
	expect(&cf, "Subject\t :  x\nX-A:y\n\nb\n", 0, "Subject:  x\nX-A:y\n\nb\n");
	/* a line that is no header ends the header: an empty line goes above it */
	expect(&cf, "From: a@b.c\nnot a header\nmore\n", 0, "From: a@b.c\n\nnot a header\nmore\n");
	expect(&cf, "body only\n", 0, "\nbody only\n");
	/* header only, and nothing at all: no empty line is added */
	expect(&cf, "From: a@b.c\nSubject: x\n", 0, "From: a@b.c\nSubject: x\n");
	expect(&cf, "", 0, "");
	/* folded headers stay folded */
	expect(&cf, "To: a@b.c,\n\tc@d.e\nSubject: one\n  two\n\nb\n", 0,
	       "To: a@b.c,\n\tc@d.e\nSubject: one\n  two\n\nb\n");
	/* an mbox From_ line becomes a header */
	expect(&cf, "From a@b.c Mon Jan  1 00:00:00 2024\n>From x\nSubject: s\n\nb\n", 0,
	       "X-Mailbox-Line: From a@b.c Mon Jan  1 00:00:00 2024\n"
	       "X-Mailbox-Line: >From x\nSubject: s\n\nb\n");
}

static void
test_header_size_limit(void **state)
{
	struct cleanup_conf cf;
	struct buf in = BUF_INIT, want = BUF_INIT;
	struct res r;

	conf_init(&cf);
	cf.header_size_limit = 1000;
	/* one long line: an "unkind cut" at the limit */
	buf_puts(&in, "Subject: ");
	for (int i = 0; i < 5000; i++)
		buf_putc(&in, 'x');
	buf_puts(&in, "\nX-After: kept\n\nbody\n");
	r = check3(&cf, in.data, in.len, 0);
	assert_int_equal(r.result, CLEANUP_OK);
	assert_memory_equal(r.out.data, in.data, 1000);
	assert_string_equal(r.out.data + 1000, "\nX-After: kept\n\nbody\n");
	buf_free(&r.out);
	buf_free(&r.logs);
	/* folded lines: a "nice cut" at the last line that fits */
	buf_reset(&in);
	buf_puts(&in, "X-Long: start\n");
	for (int i = 0; i < 100; i++)
		buf_printf(&in, " fold %03d yyyyyyyyyyyyyyyyyyyy\n", i);
	buf_puts(&in, "Subject: s\n\nb\n");
	buf_puts(&want, "X-Long: start\n");
	/* line i (30 bytes) starts at 14 + 31 i: it fits while it ends within the limit */
	for (int i = 0; 14 + 31 * i + 30 <= 1000; i++)
		buf_printf(&want, " fold %03d yyyyyyyyyyyyyyyyyyyy\n", i);
	buf_puts(&want, "Subject: s\n\nb\n");
	expect(&cf, in.data, 0, want.data);
	buf_free(&in);
	buf_free(&want);
}

static void
test_hops(void **state)
{
	struct cleanup_conf cf;
	struct buf in = BUF_INIT;
	struct res r;

	conf_init(&cf);
	cf.hopcount_limit = 5;
	for (int i = 0; i < 4; i++)
		buf_printf(&in, "Received: from h%d\n", i);
	buf_puts(&in, "\nb\n");
	r = check3(&cf, in.data, in.len, 0);
	assert_int_equal(r.result, CLEANUP_OK);
	buf_free(&r.out);
	buf_free(&r.logs);
	buf_puts(&in, "");
	buf_reset(&in);
	for (int i = 0; i < 5; i++)
		buf_printf(&in, "Received: from h%d\n", i);
	buf_puts(&in, "\nb\n");
	r = check3(&cf, in.data, in.len, 0);
	assert_int_equal(r.result, CLEANUP_HOPS);
	assert_non_null(strstr(buf_str(&r.logs), "W message rejected: hopcount exceeded"));
	buf_free(&r.out);
	buf_free(&r.logs);
	buf_free(&in);
}

static void
test_add_missing(void **state)
{
	struct cleanup_conf cf;
	struct res r;
	const char *in = "Subject: s\n\nb\n";

	conf_init(&cf);
	r = check3(&cf, in, strlen(in), 1);
	/* 1700000000 = 2023-11-14 22:13:20 GMT */
	assert_non_null(strstr(buf_str(&r.out), "Subject: s\nMessage-Id: "
			       "<20231114221320.4ABCDEF0123@mx.example.test>\nDate: "));
	assert_non_null(strstr(buf_str(&r.out), "\nFrom: s@example.org\n\nb\n"));
	assert_non_null(strstr(buf_str(&r.logs),
			       "message-id=<20231114221320.4ABCDEF0123@mx.example.test>"));
	buf_free(&r.out);
	buf_free(&r.logs);
	/* not for other clients */
	expect(&cf, in, 0, in);
	/* a present one is not added; Resent- headers get Resent- ones */
	r = check3(&cf, "Resent-From: x@y.z\nFrom: a@b.c\nDate: d\nMessage-Id: <m@x>\n\nb\n",
		   strlen("Resent-From: x@y.z\nFrom: a@b.c\nDate: d\nMessage-Id: <m@x>\n\nb\n"), 1);
	assert_non_null(strstr(buf_str(&r.out), "<m@x>\nResent-Message-Id: <20231114221320."));
	assert_non_null(strstr(buf_str(&r.out), "\nResent-Date: "));
	assert_null(strstr(buf_str(&r.out), "Resent-From: s@"));
	buf_free(&r.out);
	buf_free(&r.logs);
	/* an unqualified address gets @myorigin (local rewrite context only) */
	expect(&cf, "From: foo\nTo: a, b@c.d\nDate: d\nMessage-Id: <m@x>\n\nb\n", 1,
	       "From: foo@mx.example.test\nTo: a@mx.example.test, b@c.d\nDate: d\n"
	       "Message-Id: <m@x>\n\nb\n");
	expect(&cf, "From: foo\n\nb\n", 0, "From: foo\n\nb\n");
}

static void
test_size(void **state)
{
	struct cleanup_conf cf;
	struct res r;
	struct buf in = BUF_INIT;

	conf_init(&cf);
	assert_int_equal(cleanup_line_size(0, 2048), 2);
	assert_int_equal(cleanup_line_size(127, 2048), 129);
	assert_int_equal(cleanup_line_size(128, 2048), 131);
	assert_int_equal(cleanup_line_size(2048, 2048), 2051);
	assert_int_equal(cleanup_line_size(2049, 2048), 2051 + 3);
	/* "S: x" 6, "" 2, "b" 3 */
	r = check3(&cf, "S: x\n\nb\n", 8, 0);
	assert_int_equal(r.size, 6 + 2 + 3);
	buf_free(&r.out);
	buf_free(&r.logs);
	/* a body line of exactly 2048 bytes: a full record and an empty one */
	buf_puts(&in, "S: x\n\n");
	for (int i = 0; i < 2048; i++)
		buf_putc(&in, 'z');
	buf_putc(&in, '\n');
	r = check3(&cf, in.data, in.len, 0);
	assert_int_equal(r.size, 6 + 2 + 2051 + 2);
	assert_int_equal(r.out.len, in.len);
	buf_free(&r.out);
	buf_free(&r.logs);
	buf_free(&in);
}

static void
test_characters(void **state)
{
	struct cleanup_conf cf;
	struct res r;

	conf_init(&cf);
	cleanup_charset(cf.strip_chars, &cf.have_strip, "\\000\\t");
	r = check3(&cf, "S: a\tb\n\nx\0y\n", 12, 0);
	assert_string_equal(buf_str(&r.out), "S: ab\n\nxy\n");
	buf_free(&r.out);
	buf_free(&r.logs);
	conf_init(&cf);
	cleanup_charset(cf.reject_chars, &cf.have_reject, "\\f");
	r = check3(&cf, "S: a\n\nx\fy\n", 10, 0);
	assert_int_equal(r.result, CLEANUP_REJECT);
	assert_non_null(strstr(buf_str(&r.logs), "reject: content x\fy from client.example"
			       "[192.0.2.1]; from=<s@example.org> to=<r@virt.test> proto=ESMTP "
			       "helo=<c>: 5.7.1 disallowed character"));
	buf_free(&r.out);
	buf_free(&r.logs);
}

/* A check table: the text's first word picks the action. */
static int
fake_check(void *ctx, enum cleanup_where where, const char *text, char **action_r)
{
	static const struct { const char *prefix, *action; } rules[] = {
		{ "Subject: reject", "REJECT" }, { "Subject: text", "REJECT 4.7.0 not now" },
		{ "Subject: warn", "WARN looked" }, { "X-Ignore:", "IGNORE" },
		{ "X-Replace:", "REPLACE X-Replaced: 1" }, { "X-Prepend:", "PREPEND X-Pre: 1" },
		{ "Subject: discard", "DISCARD" }, { "Subject: hold", "HOLD" },
		{ "Subject: redirect", "REDIRECT x@y" }, { "Subject: dunno", "DUNNO" },
		{ "Subject: fail", NULL },
		{ "body-ignore", "IGNORE" }, { "body-replace", "REPLACE replaced" },
		{ "body-reject", "REJECT no" },
	};

	(void)ctx;
	(void)where;
	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
		if (strncmp(text, rules[i].prefix, strlen(rules[i].prefix)) == 0) {
			if (rules[i].action == NULL)
				return -1;
			*action_r = xstrdup(rules[i].action);
			return 1;
		}
	}
	return 0;
}

static void
test_checks(void **state)
{
	struct cleanup_conf cf;
	struct res r;
	static const struct { const char *in; int result; const char *out, *log; } cases[] = {
		{ "Subject: reject me\n\nb\n", CLEANUP_REJECT, NULL,
		  "reject: header Subject: reject me from client.example[192.0.2.1]; "
		  "from=<s@example.org> to=<r@virt.test> proto=ESMTP helo=<c>: 5.7.1 message "
		  "content rejected\n" },
		{ "Subject: text\n\nb\n", CLEANUP_REJECT, NULL, ": 4.7.0 not now\n" },
		{ "Subject: warn\n\nb\n", CLEANUP_OK, "Subject: warn\n\nb\n",
		  "warning: header Subject: warn from client.example[192.0.2.1]; "
		  "from=<s@example.org> to=<r@virt.test> proto=ESMTP helo=<c>: looked\n" },
		{ "X-Ignore: 1\nS: 2\n\nb\n", CLEANUP_OK, "S: 2\n\nb\n", "" },
		{ "X-Replace: 1\n\nb\n", CLEANUP_OK, "X-Replaced: 1\n\nb\n", "replace: header" },
		{ "X-Prepend: 1\n\nb\n", CLEANUP_OK, "X-Pre: 1\nX-Prepend: 1\n\nb\n", "prepend: header" },
		{ "Subject: discard\n\nb\n", CLEANUP_DISCARD, NULL, "discard: header" },
		{ "Subject: hold\n\nb\n", CLEANUP_TEMPFAIL, NULL, "HOLD action of header_checks is "
		  "not implemented by mxgate" },
		{ "Subject: redirect\n\nb\n", CLEANUP_TEMPFAIL, NULL, "REDIRECT action" },
		{ "Subject: dunno\n\nb\n", CLEANUP_OK, "Subject: dunno\n\nb\n", "" },
		{ "Subject: fail\n\nb\n", CLEANUP_TEMPFAIL, NULL, "W header_checks map "
		  "lookup problem" },
		{ "S: 1\n\nbody-ignore\nbody-replace x\nkept\n", CLEANUP_OK, "S: 1\n\nreplaced\nkept\n",
		  "replace: body body-replace x" },
		{ "S: 1\n\nbody-reject\n", CLEANUP_REJECT, NULL, "reject: body body-reject from" },
	};

	conf_init(&cf);
	cf.check = fake_check;
	cf.header_checks = cf.body_checks = 1;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		r = check3(&cf, cases[i].in, strlen(cases[i].in), 0);
		if (r.result != cases[i].result)
			fail_msg("%s: result %d, want %d", cases[i].in, r.result, cases[i].result);
		if (cases[i].out != NULL)
			assert_string_equal(buf_str(&r.out), cases[i].out);
		if (strstr(buf_str(&r.logs), cases[i].log) == NULL)
			fail_msg("%s: logs %s, want %s", cases[i].in, buf_str(&r.logs), cases[i].log);
		buf_free(&r.out);
		buf_free(&r.logs);
	}
	/* MIME headers are not header_checks' (mime_header_checks) */
	r = check3(&cf, "Content-Type: text/plain\nX-Ignore: 1\n\nb\n", 40, 0);
	assert_string_equal(buf_str(&r.out), "Content-Type: text/plain\n\nb\n");
	buf_free(&r.out);
	buf_free(&r.logs);
}

/* Records which table each text is looked up in: "H|M|N|B text" lines. */
static struct buf seen;

static int
record_check(void *ctx, enum cleanup_where where, const char *text, char **action_r)
{
	(void)ctx;
	(void)action_r;
	buf_printf(&seen, "%c %s\n", where == CLEANUP_HEADER ? 'H' : where == CLEANUP_MIME ? 'M'
		   : where == CLEANUP_NESTED ? 'N' : 'B', text);
	return 0;
}

static void
test_mime_classes(void **state)
{
	struct cleanup_conf cf;
	struct res r;
	const char *in =
		"From: a@b.c\n"
		"Content-Type: multipart/mixed; boundary=\"b 1\" (comment)\n"
		"\n"
		"pre\n"
		"--b 1\n"
		"Content-Type: message/rfc822\n"
		"X-Part: 1\n"
		"\n"
		"Subject: inner\n"
		"Content-Type: multipart/digest; boundary=d\n"
		"\n"
		"--d\n"
		"\n"
		"Subject: digest\n"
		"\n"
		"text\n"
		"--d--\n"
		"--b 1--\n"
		"X-Not: a header\n";
	const char *want =
		"H From: a@b.c\n"
		"M Content-Type: multipart/mixed; boundary=\"b 1\" (comment)\n"
		"B \nB pre\nB --b 1\n"
		"M Content-Type: message/rfc822\n"
		"M X-Part: 1\n"
		"B \n"
		"N Subject: inner\n"
		"M Content-Type: multipart/digest; boundary=d\n"
		"B \nB --d\nB \n"
		"N Subject: digest\n"
		"B \nB text\nB --d--\nB --b 1--\nB X-Not: a header\n";

	conf_init(&cf);
	cf.check = record_check;
	cf.header_checks = cf.body_checks = cf.mime_header_checks = cf.nested_header_checks = 1;
	run(&cf, in, strlen(in), strlen(in), 0, &r);
	assert_string_equal(buf_str(&seen), want);
	assert_string_equal(buf_str(&r.out), in);
	buf_free(&r.out);
	buf_free(&r.logs);
	buf_reset(&seen);
	run(&cf, in, strlen(in), 1, 0, &r);
	assert_string_equal(buf_str(&seen), want);
	buf_free(&r.out);
	buf_free(&r.logs);
	buf_free(&seen);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_drop_headers),
		cmocka_unit_test(test_header_forms),
		cmocka_unit_test(test_header_size_limit),
		cmocka_unit_test(test_hops),
		cmocka_unit_test(test_add_missing),
		cmocka_unit_test(test_size),
		cmocka_unit_test(test_characters),
		cmocka_unit_test(test_checks),
		cmocka_unit_test(test_mime_classes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
