/*
 * libFuzzer target for src/smtp/linereader.c.  Input: byte 0 picks the line
 * limit, byte 1 the split seed, the rest is the stream.  The lines seen must
 * be the same for a whole feed, 1 byte per feed and fuzzer-chosen splits,
 * and the kept line never exceeds the limit.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_split.h"
#include "smtp/linereader.h"
#include "util/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
run(const char *in, size_t len, size_t limit, struct fz_split *sp, struct buf *desc)
{
	struct linereader lr;
	size_t off = 0, used, n;

	lr_init(&lr, limit);
	while (off < len) {
		n = fz_split_next(sp, len - off);
		const char *p = in + off;
		size_t left = n;

		while (left > 0) {
			enum lr_status st = lr_feed(&lr, p, left, &used);

			FZ_CHECK(used <= left);
			if (st == LR_LINE) {
				FZ_CHECK(used >= 1 && p[used - 1] == '\n');
				FZ_CHECK(lr.line.len <= limit);
				FZ_CHECK(lr.overlong == (lr.full_len > limit));
				FZ_CHECK(lr.line.cap <= 2 * limit + 64);
				buf_printf(desc, "%d %d %zu %zu:", lr.bare_lf, lr.overlong, lr.full_len,
					   lr.line.len);
				buf_append(desc, lr.line.data, lr.line.len);
				buf_putc(desc, '\n');
				lr_next(&lr);
			} else {
				FZ_CHECK(used == left);
			}
			p += used;
			left -= used;
		}
		off += n;
	}
	buf_printf(desc, "partial %zu\n", lr_partial_len(&lr));
	lr_free(&lr);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf whole = BUF_INIT, bytes = BUF_INIT, ragged = BUF_INIT;
	struct fz_split sp;
	size_t limit;

	if (size < 2)
		return 0;
	limit = data[0] < 200 ? 1 + data[0] % 64 : 2048;
	fz_split_init(&sp, 0, 0);
	run((const char *)data + 2, size - 2, limit, &sp, &whole);
	fz_split_init(&sp, 0, 1);
	run((const char *)data + 2, size - 2, limit, &sp, &bytes);
	fz_split_init(&sp, data[1], 1 + data[1] % 17);
	run((const char *)data + 2, size - 2, limit, &sp, &ragged);
	FZ_CHECK(whole.len == bytes.len && memcmp(whole.data, bytes.data, whole.len) == 0);
	FZ_CHECK(whole.len == ragged.len && memcmp(whole.data, ragged.data, whole.len) == 0);
	buf_free(&whole);
	buf_free(&bytes);
	buf_free(&ragged);
	return 0;
}
