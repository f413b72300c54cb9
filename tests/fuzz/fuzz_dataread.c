/*
 * libFuzzer target for src/smtp/dataread.c.  Input: byte 0 = split seed,
 * byte 1 = size limit selector, rest = the DATA stream (and BDAT chunks).
 *
 * Checks: whole, 1 byte per feed and fuzzer-chosen splits agree; they agree
 * with a simple line-at-a-time reference model of the normalize rules; and
 * end of data is only ever reported right after "\r\n.\r\n" (the DATA CRLF
 * counting as the first "\r\n") - the SMTP smuggling invariant.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_split.h"
#include "smtp/dataread.h"
#include "util/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct res {
	struct buf out;
	int	done, too_big, bare;
	size_t	used, size;
};

/* Postfix's records of line_length_limit bytes in the size count (0: none). */
static size_t fz_line_limit;

static void
run(const char *in, size_t len, size_t limit, struct fz_split *sp, struct res *r)
{
	struct datareader dr;
	size_t off = 0, n, used;

	memset(r, 0, sizeof(*r));
	dr_init_limits(&dr, &r->out, limit, fz_line_limit);
	while (off < len) {
		n = fz_split_next(sp, len - off);
		if (dr_feed(&dr, in + off, n, &used) == DR_DONE) {
			FZ_CHECK(used >= 1 && used <= n);
			off += used;
			r->done = 1;
			break;
		}
		FZ_CHECK(used == n);
		off += n;
	}
	r->used = off;
	r->size = dr.size;
	r->too_big = dr.too_big;
	r->bare = dr.bare_lf_seen;
	if (limit)
		FZ_CHECK(r->out.len <= limit);
}

/* Reference: whole lines, Postfix 3.7.11 smtpd_forbid_bare_newline=normalize. */
static void
reference(const char *in, size_t len, struct res *r)
{
	size_t pos = 0, clen;
	int prev_crlf = 1, crlf;
	const char *lf, *c;

	memset(r, 0, sizeof(*r));
	while ((lf = memchr(in + pos, '\n', len - pos)) != NULL) {
		c = in + pos;
		clen = (size_t)(lf - c);
		crlf = clen > 0 && c[clen - 1] == '\r';
		if (crlf)
			clen--;
		else
			r->bare = 1;
		pos = (size_t)(lf - in) + 1;
		if (clen == 1 && c[0] == '.') {
			if (crlf && prev_crlf) {
				r->done = 1;
				r->used = pos;
				return;
			}
		} else {
			if (clen > 0 && c[0] == '.') {
				c++;
				clen--;
			}
			/* A CR that ends no line is stored as a space. */
			for (size_t k = 0; k < clen; k++)
				buf_putc(&r->out, c[k] == '\r' ? ' ' : c[k]);
			buf_putc(&r->out, '\n');
			r->size += clen + 2;
		}
		prev_crlf = crlf;
	}
	r->used = len;
}

static void
same(const struct res *a, const struct res *b)
{
	FZ_CHECK(a->done == b->done && a->used == b->used && a->size == b->size);
	FZ_CHECK(a->too_big == b->too_big && a->bare == b->bare);
	FZ_CHECK(a->out.len == b->out.len
		 && (a->out.len == 0 || memcmp(a->out.data, b->out.data, a->out.len) == 0));
}

/* BDAT in fuzzer-chosen chunks; returns Postfix's size, with records of line_limit. */
static size_t
bdat(const char *in, size_t len, struct fz_split *sp, struct buf *out, size_t line_limit)
{
	struct bdat_state st;
	size_t off = 0, n;

	bdat_init_limits(&st, 0, line_limit);
	while (off < len) {
		n = fz_split_next(sp, len - off);
		bdat_append(&st, out, in + off, n);
		off += n;
	}
	bdat_finish(&st, out);
	FZ_CHECK(st.raw == len);
	return st.size;
}

/*
 * BDAT reference: CRLF and a bare LF end a line (stored as LF), any other CR
 * is stored as a space, a last line without its end gets one; the count is
 * every line's content + 2.
 */
static size_t
bdat_reference(const char *in, size_t len, struct buf *out)
{
	size_t size = 0, i;
	int in_line = 0;

	for (i = 0; i < len; i++) {
		if (in[i] == '\r' && i + 1 < len && in[i + 1] == '\n')
			continue;
		if (in[i] == '\n') {
			buf_putc(out, '\n');
			size += 2;
			in_line = 0;
		} else {
			buf_putc(out, in[i] == '\r' ? ' ' : in[i]);
			size++;
			in_line = 1;
		}
	}
	if (in_line) {
		buf_putc(out, '\n');
		size += 2;
	}
	return size;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct res whole, bytes, ragged, ref;
	struct buf b1 = BUF_INIT, b2 = BUF_INIT, bref = BUF_INIT;
	struct fz_split sp;
	const char *in;
	size_t len, limit;

	if (size < 2)
		return 0;
	in = (const char *)data + 2;
	len = size - 2;
	limit = data[1] < 128 ? 0 : (size_t)(data[1] - 128) * 3;

	fz_split_init(&sp, 0, 0);
	run(in, len, limit, &sp, &whole);
	fz_split_init(&sp, 0, 1);
	run(in, len, limit, &sp, &bytes);
	fz_split_init(&sp, data[0], 1 + data[0] % 13);
	run(in, len, limit, &sp, &ragged);
	same(&whole, &bytes);
	same(&whole, &ragged);

	/* Smuggling invariant: DONE only right after <CR><LF>.<CR><LF>. */
	if (whole.done) {
		FZ_CHECK(whole.used >= 3 && memcmp(in + whole.used - 3, ".\r\n", 3) == 0);
		FZ_CHECK(whole.used == 3 || (whole.used >= 5
					     && memcmp(in + whole.used - 5, "\r\n", 2) == 0));
	}
	/* The reference model agrees (done runs fully; unfinished ones up to a line). */
	reference(in, len, &ref);
	FZ_CHECK(ref.done == whole.done && ref.used == whole.used);
	if (whole.done && limit == 0) {
		FZ_CHECK(ref.size == whole.size && ref.bare == whole.bare);
		FZ_CHECK(ref.out.len == whole.out.len
			 && (ref.out.len == 0
			     || memcmp(ref.out.data, whole.out.data, ref.out.len) == 0));
	}
	if (whole.done && limit != 0)
		FZ_CHECK(whole.too_big == (ref.size > limit));

	/* Records of a small line limit: the same stream, the same output, a size that
	 * does not depend on the splits and is at least the one without records. */
	if (limit == 0) {
		struct res rw, rb;

		fz_line_limit = 1 + data[0] % 9;
		fz_split_init(&sp, 0, 0);
		run(in, len, 0, &sp, &rw);
		fz_split_init(&sp, 0, 1);
		run(in, len, 0, &sp, &rb);
		fz_line_limit = 0;
		same(&rw, &rb);
		FZ_CHECK(rw.done == whole.done && rw.used == whole.used && rw.size >= whole.size);
		FZ_CHECK(rw.out.len == whole.out.len);
		buf_free(&rw.out);
		buf_free(&rb.out);
	}

	/* BDAT: whole vs ragged vs the reference. */
	fz_split_init(&sp, 0, 0);
	size_t s1 = bdat(in, len, &sp, &b1, 0);
	fz_split_init(&sp, data[0], 1 + data[0] % 5);
	size_t s2 = bdat(in, len, &sp, &b2, 0);
	size_t sref = bdat_reference(in, len, &bref);

	FZ_CHECK(s1 == sref && s2 == sref);
	{
		/* records of a small line limit: the count does not depend on the splits */
		struct buf r1 = BUF_INIT, r2 = BUF_INIT;
		size_t rl = 1 + data[0] % 9, t1, t2;

		fz_split_init(&sp, 0, 0);
		t1 = bdat(in, len, &sp, &r1, rl);
		fz_split_init(&sp, data[0], 1);
		t2 = bdat(in, len, &sp, &r2, rl);
		FZ_CHECK(t1 == t2 && t1 >= sref);
		FZ_CHECK(r1.len == b1.len && r2.len == b1.len);
		buf_free(&r1);
		buf_free(&r2);
	}
	FZ_CHECK(b1.len == bref.len && (b1.len == 0 || memcmp(b1.data, bref.data, b1.len) == 0));
	FZ_CHECK(b2.len == bref.len && (b2.len == 0 || memcmp(b2.data, bref.data, b2.len) == 0));

	buf_free(&whole.out);
	buf_free(&bytes.out);
	buf_free(&ragged.out);
	buf_free(&ref.out);
	buf_free(&b1);
	buf_free(&b2);
	buf_free(&bref);
	return 0;
}
