/*
 * libFuzzer target for the milter reply reader and decoder
 * (src/milter/milter_proto.c).  Input: byte 0 is the split seed, the rest is
 * what a filter sends.  Whole, byte-by-byte and fuzzer-chosen feeds must
 * agree on every packet (its command, what it decodes to, or the error);
 * the reader never takes more than it is given, never holds more than
 * MILTER_PACKET_MAX, and every decoded string lies inside the packet.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_split.h"
#include "milter/milter_proto.h"
#include "util/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
in_packet(const struct milter_reader *r, const char *s)
{
	if (s == NULL || *s == 0)
		return;
	FZ_CHECK(s >= r->data.data && s < r->data.data + r->data.len);
	FZ_CHECK(s + strlen(s) <= r->data.data + r->data.len);
}

static void
run(const uint8_t *in, size_t len, struct fz_split *sp, struct buf *desc)
{
	struct milter_reader r;
	struct milter_reply rep;
	char	why[200];
	const char *w;
	size_t	off = 0, used, n, i;
	enum milter_read_status st;

	milter_reader_init(&r);
	while (off < len) {
		n = fz_split_next(sp, len - off);
		st = milter_read(&r, in + off, n, &used, &w);
		FZ_CHECK(used <= n);
		FZ_CHECK(r.data.len <= MILTER_PACKET_MAX);
		off += used;
		if (st == MILTER_READ_MORE) {
			FZ_CHECK(used == n);
			continue;
		}
		if (st == MILTER_READ_ERROR) {
			FZ_CHECK(w != NULL);
			buf_printf(desc, "E(%s)", w);
			break;
		}
		if (milter_decode(&r, &rep, why, sizeof(why), &w) != 0) {
			FZ_CHECK(w != NULL);
			buf_printf(desc, "%c!%s;", r.cmd, w);
			continue;
		}
		in_packet(&r, rep.name);
		in_packet(&r, rep.value);
		FZ_CHECK(rep.nsyms <= sizeof(rep.syms) / sizeof(rep.syms[0]));
		for (i = 0; i < rep.nsyms; i++)
			in_packet(&r, rep.syms[i].names);
		if (rep.body_len)
			FZ_CHECK(rep.body == r.data.data && rep.body_len == r.data.len);
		buf_printf(desc, "%c %u %u %u %zu <%s> <%s> %zu;", rep.cmd, rep.version, rep.index,
			   rep.protocol, rep.nsyms, rep.name, rep.value, rep.body_len);
	}
	milter_reader_free(&r);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf whole = BUF_INIT, bytes = BUF_INIT, ragged = BUF_INIT;
	struct fz_split sp;

	if (size < 1)
		return 0;
	fz_split_init(&sp, 0, 0);
	run(data + 1, size - 1, &sp, &whole);
	fz_split_init(&sp, 0, 1);
	run(data + 1, size - 1, &sp, &bytes);
	fz_split_init(&sp, data[0], 17);
	run(data + 1, size - 1, &sp, &ragged);
	FZ_CHECK(strcmp(buf_str(&whole), buf_str(&bytes)) == 0);
	FZ_CHECK(strcmp(buf_str(&whole), buf_str(&ragged)) == 0);
	buf_free(&whole);
	buf_free(&bytes);
	buf_free(&ragged);
	return 0;
}
