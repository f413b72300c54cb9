/*
 * libFuzzer target for the policy server answer parser (policy_parse() in
 * src/policy/policy_request.c).  Input: byte 0 is the split seed, the rest
 * is what a policy server sends.  Whole, byte-by-byte and fuzzer-chosen
 * feeds must agree on the status, the bytes taken and the action; the
 * parser never takes more than it is given, never takes past the empty
 * line, and stays within its bounds.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_split.h"
#include "policy/policy.h"
#include "util/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
run(const char *in, size_t len, struct fz_split *sp, struct buf *desc)
{
	struct policy_parser pp;
	size_t off = 0, used, n;
	enum policy_parse_status st = POLICY_PARSE_MORE;
	const char *why;

	policy_parser_init(&pp);
	while (off < len && st == POLICY_PARSE_MORE) {
		n = fz_split_next(sp, len - off);
		st = policy_parse(&pp, in + off, n, &used, &why);
		FZ_CHECK(used <= n);
		if (st == POLICY_PARSE_MORE)
			FZ_CHECK(used == n);
		if (st == POLICY_PARSE_DONE)
			FZ_CHECK(used >= 1 && in[off + used - 1] == '\n');
		if (st == POLICY_PARSE_ERROR)
			FZ_CHECK(why != NULL);
		FZ_CHECK(pp.len <= POLICY_LINE_MAX);
		FZ_CHECK(pp.total <= POLICY_ANSWER_MAX);
		off += used;
	}
	if (st == POLICY_PARSE_DONE && pp.action)
		FZ_CHECK(strlen(pp.action) < POLICY_LINE_MAX);
	buf_printf(desc, "%d %zu %s", (int)st, st == POLICY_PARSE_ERROR ? 0 : off,
		   st == POLICY_PARSE_DONE && pp.action ? pp.action : "(none)");
	policy_parser_free(&pp);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf whole = BUF_INIT, bytes = BUF_INIT, ragged = BUF_INIT;
	struct fz_split sp;

	if (size < 1)
		return 0;
	fz_split_init(&sp, 0, 0);
	run((const char *)data + 1, size - 1, &sp, &whole);
	fz_split_init(&sp, 0, 1);
	run((const char *)data + 1, size - 1, &sp, &bytes);
	fz_split_init(&sp, data[0], 17);
	run((const char *)data + 1, size - 1, &sp, &ragged);
	FZ_CHECK(strcmp(buf_str(&whole), buf_str(&bytes)) == 0);
	FZ_CHECK(strcmp(buf_str(&whole), buf_str(&ragged)) == 0);
	buf_free(&whole);
	buf_free(&bytes);
	buf_free(&ragged);
	return 0;
}
