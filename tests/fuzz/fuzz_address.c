/*
 * libFuzzer target for src/smtp/address.c.  Input: byte 0 = split seed, the
 * rest is a client stream; every line the line reader yields (fed in
 * fuzzer-chosen pieces) is split into verb and argument and parsed as MAIL
 * and RCPT arguments, with ESMTP parameters, like the session will.
 *
 * Checks: no crash, no leak, parsed addresses hold no control bytes, the
 * params pointer lies inside the argument, and the quoted (external) form of
 * a parsed address parses back to the same address.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_split.h"
#include "smtp/address.h"
#include "smtp/linereader.h"
#include "util/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
parse_one(const char *args, const char *keyword)
{
	struct smtp_path p, q;
	struct esmtp_params ep;
	struct buf ext = BUF_INIT, arg2 = BUF_INIT;
	char *bad;
	int r;

	r = smtp_parse_path(args, keyword, &p);
	FZ_CHECK(r == PATH_OK || r == PATH_SYNTAX || r == PATH_BAD);
	if (r != PATH_OK) {
		FZ_CHECK(p.addr == NULL);
		return;
	}
	FZ_CHECK(p.params >= args && p.params <= args + strlen(args));
	for (const char *c = p.addr; *c; c++)
		FZ_CHECK((unsigned char)*c >= 0x20 && *c != 0x7f);

	/* Round trip through the external form. */
	smtp_addr_quote(&ext, p.addr);
	buf_puts(&arg2, " FROM:<");
	buf_append(&arg2, ext.data, ext.len);
	buf_puts(&arg2, ">");
	if (strlen(buf_str(&arg2)) <= SMTP_ARG_MAX) {
		FZ_CHECK(smtp_parse_path(buf_str(&arg2), "FROM:", &q) == PATH_OK);
		FZ_CHECK(strcmp(q.addr, p.addr) == 0);
		smtp_path_free(&q);
	}
	buf_free(&ext);
	buf_free(&arg2);

	r = smtp_parse_params(p.params, &ep, &bad);
	FZ_CHECK((r == PARAM_UNSUPPORTED) == (bad != NULL));
	free(bad);
	r = smtp_parse_rcpt_params(p.params, &bad);
	FZ_CHECK((r == PARAM_UNSUPPORTED) == (bad != NULL));
	free(bad);
	smtp_path_free(&p);
}

static void
handle_line(const char *line, size_t len)
{
	const char *verb, *args;
	size_t vlen;

	(void)smtp_utf8_valid(line, len);
	if (smtp_split_command(line, len, &verb, &vlen, &args) < 0)
		return;
	FZ_CHECK(verb >= line && verb + vlen <= line + len && args <= line + len);
	parse_one(args, "FROM:");
	parse_one(args, "TO:");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct linereader lr;
	struct fz_split sp;
	size_t off = 1, n, used;

	if (size < 1)
		return 0;
	fz_split_init(&sp, data[0], 1 + data[0] % 9);
	lr_init(&lr, 2048);
	while (off < size) {
		n = fz_split_next(&sp, size - off);
		const char *p = (const char *)data + off;
		size_t left = n;

		while (left > 0) {
			if (lr_feed(&lr, p, left, &used) == LR_LINE) {
				handle_line(lr.line.data, lr.line.len);
				lr_next(&lr);
			}
			p += used;
			left -= used;
		}
		off += n;
	}
	/* An unterminated tail is parsed too, as if it were a line. */
	if (lr_partial_len(&lr) > 0)
		handle_line(lr.line.data, lr.line.len);
	lr_free(&lr);
	return 0;
}
