/*
 * Unit tests for src/smtp/dataread.c: dot-unstuffing, the end-of-data rule
 * (SMTP smuggling variants), size counting, and the BDAT converter.  Every
 * case runs on the whole input and again fed 1, 2, 3 and 5 bytes per call.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtp/dataread.h"
#include "util/xalloc.h"
#include "util/buf.h"

struct dr_result {
	struct buf out;
	int	done;
	size_t	used;		/* total bytes consumed */
	size_t	size;
	int	too_big;
	int	bare_lf_seen;
	size_t	dropped;
};

/* Feed in chunks of `chunk` bytes (0 = whole); stop at DR_DONE. */
static void
dr_run(const char *in, size_t len, size_t chunk, size_t limit, struct dr_result *r)
{
	struct datareader dr;
	size_t off = 0, n, used;

	memset(r, 0, sizeof(*r));
	dr_init(&dr, &r->out, limit);
	while (off < len) {
		n = chunk ? (len - off < chunk ? len - off : chunk) : len - off;
		if (dr_feed(&dr, in + off, n, &used) == DR_DONE) {
			assert_true(used >= 1 && used <= n);
			off += used;
			r->done = 1;
			/* Done is sticky and consumes nothing more. */
			assert_int_equal(dr_feed(&dr, "x", 1, &used), DR_DONE);
			assert_int_equal(used, 0);
			break;
		}
		assert_int_equal(used, n);
		off += n;
	}
	if (r->done)
		assert_int_equal(dr.raw_bytes, off);
	r->used = off;
	r->size = dr.size;
	r->too_big = dr.too_big;
	r->bare_lf_seen = dr.bare_lf_seen;
	r->dropped = dr.dropped_dots;
}

static const size_t chunks[] = { 0, 1, 2, 3, 5 };

/*
 * Check one input in every split.  want_used is the offset just past the
 * terminator, or (size_t)-1 for "not done, everything consumed".
 */
static void
check(const char *in, size_t len, const char *want, size_t want_len, size_t want_used,
      int want_bare_lf)
{
	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
		struct dr_result r;

		dr_run(in, len, chunks[c], 0, &r);
		if (r.out.len != want_len || (want_len && memcmp(r.out.data, want, want_len) != 0))
			fail_msg("chunk %zu: output differs (got %zu bytes, want %zu)", chunks[c],
				 r.out.len, want_len);
		if (want_used == (size_t)-1) {
			assert_int_equal(r.done, 0);
			assert_int_equal(r.used, len);
		} else {
			assert_int_equal(r.done, 1);
			assert_int_equal(r.used, want_used);
		}
		assert_int_equal(r.bare_lf_seen, want_bare_lf);
		buf_free(&r.out);
	}
}

#define S(x) x, sizeof(x) - 1
#define NOT_DONE ((size_t)-1)

static void
test_simple(void **state)
{
	check(S("Subject: x\r\n\r\nbody\r\n.\r\n"), S("Subject: x\n\nbody\n"), 23, 0);
	/* Empty message: the DATA command's CRLF precedes the dot. */
	check(S(".\r\n"), S(""), 3, 0);
	check(S("\r\n.\r\n"), S("\n"), 5, 0);
	/* Bytes after the terminator are the next command: not consumed. */
	check(S("a\r\n.\r\nQUIT\r\n"), S("a\n"), 6, 0);
	check(S("a\r\n.\r\n.\r\n"), S("a\n"), 6, 0);
	/* Not finished yet. */
	check(S("a\r\n.\r"), S("a\n"), NOT_DONE, 0);
	check(S("a\r\n"), S("a\n"), NOT_DONE, 0);
	check(S(""), S(""), NOT_DONE, 0);
}

static void
test_dot_stuffing(void **state)
{
	check(S("..x\r\n.\r\n"), S(".x\n"), 8, 0);
	check(S(".x\r\n.\r\n"), S("x\n"), 7, 0);
	check(S("...\r\n.\r\n"), S("..\n"), 8, 0);
	check(S("..\r\n.\r\n"), S(".\n"), 7, 0);
	check(S("a.\r\n.b\r\n..\r\n.\r\n"), S("a.\nb\n.\n"), 15, 0);
	/* ".\r" + more is an ordinary (unstuffed) line starting with a CR (a space). */
	check(S(".\rx\r\n.\r\n"), S(" x\n"), 8, 0);
	check(S(".\r\r\n.\r\n"), S(" \n"), 7, 0);
}

/* Only checks that the input does not end data, in any split. */
static void
check_not_done(const char *in, size_t len)
{
	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
		struct dr_result r;

		dr_run(in, len, chunks[c], 0, &r);
		assert_int_equal(r.done, 0);
		buf_free(&r.out);
	}
}

/*
 * Checklist rows 1-3: SMTP smuggling.  "a" + variant + smuggled commands +
 * the real "\r\n.\r\n": exactly one end of data, at the very end, and the
 * smuggled commands are message content.
 */
static void
smuggle(const char *variant, size_t vlen, const char *want_mid, size_t want_mid_len, int bare)
{
	static const char cmd[] = "MAIL FROM:<smuggled@x>\r\nRCPT TO:<u@local>\r\nDATA\r\n";
	static const char cmd_out[] = "MAIL FROM:<smuggled@x>\nRCPT TO:<u@local>\nDATA\n";
	struct buf in = BUF_INIT, want = BUF_INIT;

	buf_puts(&in, "a");
	buf_append(&in, variant, vlen);
	check_not_done(in.data, in.len);
	buf_puts(&in, cmd);
	check_not_done(in.data, in.len);
	buf_puts(&in, "\r\n.\r\n");

	buf_puts(&want, "a");
	buf_append(&want, want_mid, want_mid_len);
	buf_puts(&want, cmd_out);
	buf_puts(&want, "\n");
	check(in.data, in.len, want.data, want.len, in.len, bare);
	buf_free(&in);
	buf_free(&want);
}

static void
test_smuggling(void **state)
{
	/* Bare-LF "." lines are dropped, neither stored nor the end. */
	smuggle(S("\n.\n"), S("\n"), 1);		/* lflf */
	smuggle(S("\n.\r\n"), S("\n"), 1);		/* lfcrlf */
	smuggle(S("\r\n.\n"), S("\n"), 1);		/* crlflf */
	/* A bare CR is content (stored as a space): these are ordinary lines. */
	smuggle(S("\r.\r\n"), S(" .\n"), 0);		/* crcrlf */
	smuggle(S("\r.\n"), S(" .\n"), 1);		/* crlf (bare CR, then bare LF) */
	smuggle(S("\n.\r"), S("\n "), 1);		/* lfcr: ".\rMAIL..." unstuffed */
	smuggle(S("\r.\r"), S(" . "), 0);		/* crcr */
	smuggle(S("\r\n\0.\r\n"), S("\n\0.\n"), 0);	/* nullbefore */
	smuggle(S("\r\n.\0\r\n"), S("\n\0\n"), 0);	/* NUL after the dot: unstuffed */
	smuggle(S("\r\n .\r\n"), S("\n .\n"), 0);
	/* Two dropped dots in a row, then the real end. */
	check(S("a\n.\n.\n.\r\n.\r\n"), S("a\n"), 12, 1);
	/* After a dropped "<LF>.<CR><LF>" the next CRLF.CRLF-shaped line ends data. */
	check(S("a\n.\r\n.\r\n"), S("a\n"), 8, 1);
}

static void
test_split_terminator(void **state)
{
	/* Checklist row 3: the final 5 bytes one per feed. */
	static const char *parts[] = { "hello", "\r", "\n", ".", "\r", "\n", "NOOP\r\n" };
	struct buf out = BUF_INIT;
	struct datareader dr;
	size_t used;

	dr_init(&dr, &out, 0);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(dr_feed(&dr, parts[i], strlen(parts[i]), &used), DR_AGAIN);
		assert_int_equal(used, strlen(parts[i]));
	}
	assert_int_equal(dr_feed(&dr, "\nNOOP\r\n", 7, &used), DR_DONE);
	assert_int_equal(used, 1);
	assert_int_equal(out.len, 6);
	assert_memory_equal(out.data, "hello\n", 6);
	assert_int_equal(dr.size, 7);
	buf_free(&out);
}

static void
test_byte_exact(void **state)
{
	/* Checklist rows 17 and 19: long lines and NUL/C0 bytes are stored exactly. */
	size_t n = 5000;
	struct buf in = BUF_INIT, want = BUF_INIT;

	for (size_t i = 0; i < n; i++)
		buf_putc(&in, (char)(i % 7 == 0 ? 0 : 'a' + i % 26));
	buf_append(&want, in.data, in.len);
	buf_puts(&in, "\r\n\x01\x1b\x7f\xff\r\n.\r\n");
	buf_puts(&want, "\n\x01\x1b\x7f\xff\n");
	check(in.data, in.len, want.data, want.len, in.len, 0);
	buf_free(&in);
	buf_free(&want);
}

static void
test_bare_cr(void **state)
{
	/* A CR that ends no line is stored as a space (Postfix 3.7.11's cleanup). */
	check(S("x\r\r\n.\r\n"), S("x \n"), 7, 0);
	check(S("x\r\r\r\n.\r\n"), S("x  \n"), 8, 0);
	check(S("\r\r.\r\n.\r\n"), S("  .\n"), 8, 0);
	check(S("x\ry\r\n.\r\n"), S("x y\n"), 8, 0);
}

static void
test_size(void **state)
{
	struct dr_result r;

	/* Postfix: sum of line lengths + 2 per line; unstuffed dots do not count. */
	dr_run(S("abc\r\n..x\r\n\r\nd\n\r\n.\r\n"), 0, 0, &r);
	assert_int_equal(r.done, 1);
	assert_int_equal(r.size, 5 + 4 + 2 + 3 + 2);
	assert_int_equal(r.bare_lf_seen, 1);
	buf_free(&r.out);

	/* Dropped "." lines do not count. */
	dr_run(S("a\n.\nb\r\n.\r\n"), 0, 0, &r);
	assert_int_equal(r.size, 3 + 3);
	assert_int_equal(r.dropped, 1);
	buf_free(&r.out);

	/* Over the limit: output stops, reading goes on to the end, in sync. */
	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
		dr_run(S("aaaa\r\nbbbb\r\ncccc\r\n.\r\nQUIT\r\n"), chunks[c], 10, &r);
		assert_int_equal(r.done, 1);
		assert_int_equal(r.used, 21);
		assert_int_equal(r.too_big, 1);
		assert_true(r.out.len <= 10);
		assert_int_equal(r.size, 18);
		buf_free(&r.out);
	}
	/* Exactly at the limit is fine. */
	dr_run(S("aaaa\r\nbbbb\r\n.\r\n"), 0, 12, &r);
	assert_int_equal(r.too_big, 0);
	assert_int_equal(r.out.len, 10);
	buf_free(&r.out);
}

static void
test_caller_may_drain(void **state)
{
	/* The reader keeps no pointer into the buf: emptying it between feeds is fine. */
	static const char in[] = "line one\r\n..two\r\n.\r\n";
	struct buf out = BUF_INIT, all = BUF_INIT;
	struct datareader dr;
	size_t used, i;

	dr_init(&dr, &out, 0);
	for (i = 0; i < sizeof(in) - 1; i++) {
		if (dr_feed(&dr, in + i, 1, &used) == DR_DONE)
			break;
		buf_append(&all, out.data, out.len);
		buf_free(&out);
	}
	buf_append(&all, out.data, out.len);
	assert_int_equal(i, sizeof(in) - 2);
	assert_string_equal(buf_str(&all), "line one\n.two\n");
	buf_free(&out);
	buf_free(&all);
}

/* BDAT: feed every split of the chunk data, then finish. */
static void
bdat_check(const char *in, size_t len, const char *want, size_t want_len, int bare, size_t size)
{
	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
		struct bdat_state st;
		struct buf out = BUF_INIT;
		size_t off = 0, n;

		bdat_init(&st, 0);
		while (off < len) {
			n = chunks[c] ? (len - off < chunks[c] ? len - off : chunks[c]) : len - off;
			bdat_append(&st, &out, in + off, n);
			off += n;
		}
		bdat_append(&st, &out, "", 0);
		bdat_finish(&st, &out);
		if (out.len != want_len || (want_len && memcmp(out.data, want, want_len) != 0))
			fail_msg("bdat chunk %zu: output differs", chunks[c]);
		assert_int_equal(st.size, size);	/* Postfix's count: lines + 2 each */
		assert_int_equal(st.raw, len);
		assert_int_equal(st.bare_lf_seen, bare);
		buf_free(&out);
	}
}

static void
test_bdat(void **state)
{
	bdat_check(S("a\r\nb\r\n"), S("a\nb\n"), 0, 6);
	/* No dot-stuffing and no end-of-data marker in BDAT. */
	bdat_check(S(".\r\n..x\r\n.\r\n"), S(".\n..x\n.\n"), 0, 11);
	/* A stray CR is stored as a space. */
	bdat_check(S("a\rb\r\r\n"), S("a b \n"), 0, 6);
	/*
	 * A last line without its end counts as a line and is stored with one
	 * (Postfix 3.7.11: "ab\r\ncde\r\nfg\r\n." is 16).
	 */
	bdat_check(S("a\nb"), S("a\nb\n"), 1, 6);
	bdat_check(S("ab\r\ncde\r\nfg\r\n."), S("ab\ncde\nfg\n.\n"), 0, 16);
	bdat_check(S("\n"), S("\n"), 1, 2);
	bdat_check(S(""), S(""), 0, 0);
	/* A trailing lone CR is flushed by bdat_finish() (Postfix: "three\r" is "three \n", 8). */
	bdat_check(S("a\r"), S("a \n"), 0, 4);
	bdat_check(S("a\r\r"), S("a  \n"), 0, 5);
	bdat_check(S("\0\r\n\0"), S("\0\n\0\n"), 0, 6);
}

static void
test_bdat_limit(void **state)
{
	struct bdat_state st;
	struct buf out = BUF_INIT;

	bdat_init(&st, 5);
	bdat_append(&st, &out, "abc\r", 4);
	assert_int_equal(st.too_big, 0);
	bdat_append(&st, &out, "\nde", 3);
	assert_int_equal(st.too_big, 1);
	assert_int_equal(st.size, 7);
	assert_true(out.len <= 5);
	buf_free(&out);
}

/* n bytes of x, then tail (a C string). */
static char *
xline(size_t n, const char *tail, size_t *len_r)
{
	size_t t = strlen(tail);
	char *p = malloc(n + t + 1);

	memset(p, 'x', n);
	memcpy(p + n, tail, t + 1);
	*len_r = n + t;
	return p;
}

static size_t
data_size(const char *in, size_t len, size_t line_limit)
{
	struct datareader dr;
	struct buf out = BUF_INIT;
	size_t used;

	dr_init_limits(&dr, &out, 0, line_limit);
	assert_int_equal(dr_feed(&dr, in, len, &used), DR_DONE);
	buf_free(&out);
	return dr.size;
}

static size_t
bdat_size(const char *in, size_t len, size_t line_limit)
{
	struct bdat_state st;
	struct buf out = BUF_INIT;

	bdat_init_limits(&st, 0, line_limit);
	for (size_t off = 0; off < len; off += 1000)
		bdat_append(&st, &out, in + off, len - off < 1000 ? len - off : 1000);
	bdat_finish(&st, &out);
	buf_free(&out);
	return st.size;
}

/*
 * Long lines: Postfix reads them in records of line_length_limit bytes and
 * counts 2 more per record; the stuffing dot is a byte of the first record.
 */
static void
test_records(void **state)
{
	static const struct { size_t n; const char *tail; size_t data, bdat; } cases[] = {
		{ 5000, "\r\n", 5006, 5006 },
		{ 2048, "\r\n", 2052, 2052 },
		{ 2047, "\r\n", 2049, 2049 },
		{ 4096, "\r\n", 4102, 4102 },
		{ 100000, "", 0, 100098 },	/* BDAT only: no line end at all */
		{ 2048, "", 0, 2050 },		/* BDAT only: a full last record, no empty one */
	};
	char *p, *q;
	size_t len, qlen;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		p = xline(cases[i].n, cases[i].tail, &len);
		if (cases[i].data) {
			q = xasprintf("%s.\r\n", p);
			qlen = len + 3;
			assert_int_equal(data_size(q, qlen, 2048), cases[i].data);
			assert_int_equal(data_size(q, qlen, 0), cases[i].n + 2);	/* no records */
			free(q);
		}
		assert_int_equal(bdat_size(p, len, 2048), cases[i].bdat);
		free(p);
	}
	/* ".xxx" of 2048 raw bytes: 2047 after unstuffing, then an empty record before CRLF. */
	p = xline(2047, "\r\n.\r\n", &len);
	q = xasprintf(".%s", p);
	assert_int_equal(data_size(q, len + 1, 2048), 2047 + 2 + 2);
	free(p);
	free(q);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple),
		cmocka_unit_test(test_dot_stuffing),
		cmocka_unit_test(test_smuggling),
		cmocka_unit_test(test_split_terminator),
		cmocka_unit_test(test_byte_exact),
		cmocka_unit_test(test_bare_cr),
		cmocka_unit_test(test_size),
		cmocka_unit_test(test_caller_may_drain),
		cmocka_unit_test(test_bdat),
		cmocka_unit_test(test_bdat_limit),
		cmocka_unit_test(test_records),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
