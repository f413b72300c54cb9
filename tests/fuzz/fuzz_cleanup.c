/*
 * libFuzzer target for src/deliver/cleanup.c.  Input: byte 0 = split seed,
 * byte 1 = settings (small header_size_limit and line limit, add_missing,
 * checks on/off, strip/reject characters), rest = the content (LF lines).
 *
 * Checks: whole, 1 byte per feed and fuzzer-chosen splits give the same
 * output, size, result and logs; the output ends with LF when not empty
 * (without checks); memory held (the record and header buffers) stays
 * within the limits.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "deliver/cleanup.h"
#include "fuzz_split.h"
#include "util/buf.h"
#include "util/xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *drop[] = { "bcc", "content-length", "resent-bcc", "return-path" };

/* A check table: "R" REJECT, "W" WARN, "I" IGNORE, "P" PREPEND, "X" REPLACE, "D" DISCARD, "H" HOLD. */
static int
fz_check(void *ctx, enum cleanup_where where, const char *text, char **action_r)
{
	static const char *const act[] = {
		"REJECT", "WARN w", "IGNORE", "PREPEND X-P: 1", "REPLACE X-R: 1", "DISCARD",
		"HOLD", "DUNNO", "REPLACE", "PREPEND not a header",
	};
	const char *p = strstr(text, "@@");

	(void)ctx;
	(void)where;
	if (p == NULL || p[2] < '0' || p[2] > '9')
		return p != NULL && p[2] == '!' ? -1 : 0;
	*action_r = xstrdup(act[p[2] - '0']);
	return 1;
}

struct res {
	struct buf out, logs;
	size_t	size;
	int	result;
};

static void
run(const struct cleanup_conf *cf, const char *in, size_t len, int add, struct fz_split *sp,
    struct res *r)
{
	struct cleanup c;
	size_t off = 0;

	memset(r, 0, sizeof(*r));
	cleanup_init(&c, cf, &r->out, add, "s@example.org", "4ABCDEF0123", 1700000000);
	c.log_ctx = "c[192.0.2.1]; from=<s@example.org>";
	cleanup_feed(&c, "Received: from x\n\tby y\n", 23);
	cleanup_content_start(&c);
	while (off < len) {
		size_t n = sp ? fz_split_next(sp, len - off) : len - off;

		cleanup_feed(&c, in + off, n);
		FZ_CHECK(c.rec.len <= cf->line_limit);
		FZ_CHECK(c.hdr.len <= cf->header_size_limit + cf->line_limit + 1 + 16 + cf->line_limit);
		off += n;
	}
	cleanup_finish(&c);
	cleanup_take_logs(&c, &r->logs);
	r->size = c.size;
	r->result = cleanup_result(&c);
	cleanup_free(&c);
}

static int
same(const struct res *a, const struct res *b)
{
	return a->out.len == b->out.len && (a->out.len == 0
					    || memcmp(a->out.data, b->out.data, a->out.len) == 0)
	       && a->size == b->size && a->result == b->result && a->logs.len == b->logs.len
	       && (a->logs.len == 0 || memcmp(a->logs.data, b->logs.data, a->logs.len) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cleanup_conf cf;
	struct res whole, bytes, split;
	struct fz_split one, sp;
	const char *in;
	size_t len;
	int add;

	if (size < 2)
		return 0;
	memset(&cf, 0, sizeof(cf));
	cf.header_size_limit = data[1] & 1 ? 64 : 102400;
	cf.line_limit = data[1] & 2 ? 16 : 2048;
	cf.hopcount_limit = 50;
	cf.body_checks_size_limit = 51200;
	cf.drop = drop;
	cf.ndrop = 4;
	cf.hostname = "mx.example.test";
	cf.myorigin = "mx.example.test";
	cf.rcpt_witheld = data[1] & 64 ? "To: undisclosed-recipients:;" : "";
	add = (data[1] & 4) != 0;
	if (data[1] & 8) {
		cf.check = fz_check;
		cf.header_checks = cf.body_checks = 1;
		cf.mime_header_checks = cf.nested_header_checks = 1;
	}
	if (data[1] & 16)
		cleanup_charset(cf.strip_chars, &cf.have_strip, "\\t\\000");
	if (data[1] & 32)
		cleanup_charset(cf.reject_chars, &cf.have_reject, "\\f");
	in = (const char *)data + 2;
	len = size - 2;
	run(&cf, in, len, add, NULL, &whole);
	fz_split_init(&one, 0, 1);
	run(&cf, in, len, add, &one, &bytes);
	fz_split_init(&sp, data[0], 64);
	run(&cf, in, len, add, &sp, &split);
	FZ_CHECK(same(&whole, &bytes));
	FZ_CHECK(same(&whole, &split));
	/* (a body check that drops the last record of a cut line may leave the line open) */
	if (whole.out.len > 0 && cf.check == NULL)
		FZ_CHECK(whole.out.data[whole.out.len - 1] == '\n' || whole.result != CLEANUP_OK);
	buf_free(&whole.out);
	buf_free(&whole.logs);
	buf_free(&bytes.out);
	buf_free(&bytes.logs);
	buf_free(&split.out);
	buf_free(&split.logs);
	return 0;
}
