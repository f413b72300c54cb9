/*
 * Unit tests for src/smtp/linereader.c.  Every case runs on the whole input
 * and again fed 1, 2, 3 and 7 bytes per call (Dovecot-style trickle): the
 * lines and flags must not depend on how the bytes were split.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtp/linereader.h"
#include "util/buf.h"

/*
 * Feed input in chunks of `chunk` bytes (0 = whole) and describe what came
 * out: one record per line, "<flags>:<len>:<bytes>\n", flags "L" for bare LF
 * and "O<full_len>" for overlong.  Returns the unterminated partial length.
 */
static size_t
lr_run(const char *in, size_t len, size_t chunk, size_t limit, struct buf *desc)
{
	struct linereader lr;
	size_t off = 0, used, n, partial;

	lr_init(&lr, limit);
	while (off < len) {
		n = chunk ? (len - off < chunk ? len - off : chunk) : len - off;
		const char *p = in + off;
		size_t left = n;

		while (left > 0) {
			if (lr_feed(&lr, p, left, &used) == LR_LINE) {
				assert_true(used >= 1 && used <= left);
				assert_int_equal(p[used - 1], '\n');
				assert_true(lr.line.len <= limit);
				assert_true(lr.line.cap <= 2 * limit + 64);
				buf_printf(desc, "%s%s", lr.bare_lf ? "L" : "", lr.overlong ? "O" : "");
				if (lr.overlong)
					buf_printf(desc, "%zu", lr.full_len);
				buf_printf(desc, ":%zu:", lr.line.len);
				buf_append(desc, lr.line.data, lr.line.len);
				buf_putc(desc, '\n');
				lr_next(&lr);
			} else {
				assert_int_equal(used, left);
			}
			p += used;
			left -= used;
		}
		off += n;
	}
	partial = lr_partial_len(&lr);
	lr_free(&lr);
	return partial;
}

static const size_t chunks[] = { 0, 1, 2, 3, 7 };

/* Run every split and compare with the expected description. */
static void
check(const char *in, size_t len, size_t limit, const char *expect, size_t expect_partial)
{
	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
		struct buf d = BUF_INIT;
		size_t partial = lr_run(in, len, chunks[c], limit, &d);

		if (strcmp(buf_str(&d), expect) != 0)
			fail_msg("chunk %zu: got [%s] want [%s]", chunks[c], buf_str(&d), expect);
		assert_int_equal(partial, expect_partial);
		buf_free(&d);
	}
}

#define CHECK(in, limit, expect, partial) check(in, sizeof(in) - 1, limit, expect, partial)

static void
test_crlf_and_bare_lf(void **state)
{
	CHECK("EHLO x\r\n", 2048, ":6:EHLO x\n", 0);
	CHECK("EHLO x\n", 2048, "L:6:EHLO x\n", 0);
	CHECK("A\r\nB\nC\r\n", 2048, ":1:A\nL:1:B\n:1:C\n", 0);
	CHECK("\r\n\n", 2048, ":0:\nL:0:\n", 0);
}

static void
test_bare_cr_is_ordinary(void **state)
{
	/* Security checklist row 5: a bare CR never ends a command. */
	CHECK("RSET\rQUIT\r\n", 2048, ":9:RSET\rQUIT\n", 0);
	CHECK("A\r\r\n", 2048, ":2:A\r\n", 0);
	CHECK("A\r\rB\n", 2048, "L:4:A\r\rB\n", 0);
	CHECK("\r\r\r\n", 2048, ":2:\r\r\n", 0);
	CHECK("EHLO a\rX-Injected: 1\r\n", 2048, ":20:EHLO a\rX-Injected: 1\n", 0);
}

static void
test_incomplete(void **state)
{
	CHECK("NOOP", 2048, "", 4);
	CHECK("NOOP\r", 2048, "", 5);
	CHECK("A\r\nNOO", 2048, ":1:A\n", 3);
	CHECK("", 2048, "", 0);
}

static void
test_nul_kept(void **state)
{
	static const char in[] = "MAIL FROM:<a\0b@x>\r\n";
	struct linereader lr;
	size_t used;

	lr_init(&lr, 2048);
	assert_int_equal(lr_feed(&lr, in, sizeof(in) - 1, &used), LR_LINE);
	assert_int_equal(lr.line.len, 17);
	assert_memory_equal(lr.line.data, in, 17);
	lr_free(&lr);
}

static void
test_overlong(void **state)
{
	/* Checklist row 14: "NOOP " + 10000 x, then NOOP: the session stays in sync. */
	size_t n = 5 + 10000;
	char *in = malloc(n + 8);
	struct buf want = BUF_INIT;

	memcpy(in, "NOOP ", 5);
	memset(in + 5, 'x', 10000);
	memcpy(in + n, "\r\nNOOP\r\n", 8);
	buf_printf(&want, "O%zu:2048:", n);
	buf_append(&want, in, 2048);
	buf_puts(&want, "\n:4:NOOP\n");
	check(in, n + 8, 2048, buf_str(&want), 0);
	free(in);
	buf_free(&want);
}

static void
test_limit_boundaries(void **state)
{
	/* Exactly the limit is not overlong, whatever the terminator. */
	CHECK("abcd\r\n", 4, ":4:abcd\n", 0);
	CHECK("abcd\n", 4, "L:4:abcd\n", 0);
	CHECK("abcde\r\n", 4, "O5:4:abcd\n", 0);
	/* A CR at the limit that is not followed by LF is a line byte. */
	CHECK("abcd\rx\r\n", 4, "O6:4:abcd\n", 0);
	CHECK("abcd\r\r\n", 4, "O5:4:abcd\n", 0);
	CHECK("abc\r\r\n", 4, ":4:abc\r\n", 0);
}

static void
test_cr_lf_separate_feeds(void **state)
{
	struct linereader lr;
	size_t used;

	lr_init(&lr, 2048);
	assert_int_equal(lr_feed(&lr, "QUIT\r", 5, &used), LR_AGAIN);
	assert_int_equal(used, 5);
	assert_int_equal(lr_feed(&lr, "", 0, &used), LR_AGAIN);
	assert_int_equal(used, 0);
	assert_int_equal(lr_feed(&lr, "\nNOOP\r\n", 7, &used), LR_LINE);
	assert_int_equal(used, 1);
	assert_int_equal(lr.bare_lf, 0);
	assert_string_equal(lr.line.data, "QUIT");
	lr_next(&lr);
	assert_int_equal(lr_feed(&lr, "\nNOOP\r\n" + 1, 6, &used), LR_LINE);
	assert_int_equal(used, 6);
	assert_string_equal(lr.line.data, "NOOP");
	/* Feeding again without lr_next() discards the pending line. */
	assert_int_equal(lr_feed(&lr, "X", 1, &used), LR_AGAIN);
	assert_int_equal(lr_partial_len(&lr), 1);
	lr_free(&lr);
}

static void
test_endless_line_memory(void **state)
{
	/* Checklist row 15: 64 MB without LF must not grow the buffer. */
	static char blk[65536];
	struct linereader lr;
	size_t used, cap;

	memset(blk, 'A', sizeof(blk));
	lr_init(&lr, 2048);
	/* The buffer grows with the first 2048 bytes, then never again. */
	assert_int_equal(lr_feed(&lr, blk, sizeof(blk), &used), LR_AGAIN);
	cap = lr.line.cap;
	assert_true(cap <= 2 * 2048 + 64);
	for (int i = 1; i < 1024; i++) {
		assert_int_equal(lr_feed(&lr, blk, sizeof(blk), &used), LR_AGAIN);
		assert_int_equal(used, sizeof(blk));
	}
	assert_int_equal(lr.line.cap, cap);
	assert_int_equal(lr.line.len, 2048);
	assert_int_equal(lr_partial_len(&lr), (size_t)1024 * sizeof(blk));
	assert_int_equal(lr_feed(&lr, "\r\n", 2, &used), LR_LINE);
	assert_int_equal(lr.overlong, 1);
	assert_int_equal(lr.full_len, (size_t)1024 * sizeof(blk));
	lr_free(&lr);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crlf_and_bare_lf),
		cmocka_unit_test(test_bare_cr_is_ordinary),
		cmocka_unit_test(test_incomplete),
		cmocka_unit_test(test_nul_kept),
		cmocka_unit_test(test_overlong),
		cmocka_unit_test(test_limit_boundaries),
		cmocka_unit_test(test_cr_lf_separate_feeds),
		cmocka_unit_test(test_endless_line_memory),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
