/*
 * libFuzzer target for src/smtp/proxy.c's proxy_parse(), the parser of the
 * PROXY protocol header (v1 text, v2 binary) that a load balancer sends
 * before SMTP.  Input: byte 0 seeds the split points, the rest is what the
 * connection delivers.  The input is parsed whole (no more bytes: eof) and
 * as src/smtp/conn.c feeds it (the bytes so far, chunk by chunk, eof only
 * after the last one).
 *
 * Checks: no crash, no read outside the input (ASan: exact copy), a status
 * in range, a reason exactly on error, the same answer fed whole and in
 * chunks (header or not, the same length and endpoints), a header length
 * within the input and PROXY_HEADER_MAX, and endpoints that are numeric
 * addresses (IPv4-mapped ones printed as IPv4) and ports of 1-5 digits.
 */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_split.h"
#include "smtp/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_endpoint(const char *addr, const char *port)
{
	unsigned char bin[16];
	size_t	n = strlen(port);

	FZ_CHECK(strlen(addr) < 46);
	FZ_CHECK(inet_pton(AF_INET, addr, bin) == 1 || inet_pton(AF_INET6, addr, bin) == 1);
	FZ_CHECK(strncmp(addr, "::ffff:", 7) != 0 || strchr(addr, '.') == NULL);
	FZ_CHECK(n >= 1 && n <= 5 && strspn(port, "0123456789") == n);
}

static void
check(enum proxy_status st, const struct proxy_result *r, const char *why, size_t size)
{
	FZ_CHECK(st == PROXY_ERROR || st == PROXY_MORE || st == PROXY_DONE);
	FZ_CHECK((st == PROXY_ERROR) == (why != NULL));
	if (st != PROXY_DONE)
		return;
	FZ_CHECK(r->len > 0 && r->len <= size && r->len <= PROXY_HEADER_MAX);
	if (!r->local) {
		check_endpoint(r->client_addr, r->client_port);
		check_endpoint(r->server_addr, r->server_port);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_result whole, part;
	const char *why_w, *why_p = NULL;
	enum proxy_status st_w, st_p = PROXY_MORE;
	struct fz_split sp;
	unsigned char *buf;
	size_t	have = 0;

	if (size < 1)
		return 0;
	fz_split_init(&sp, data[0], 1 + data[0] % 24);
	data++;
	size--;
	buf = malloc(size ? size : 1);
	memcpy(buf, data, size);

	st_w = proxy_parse(buf, size, 1, &whole, &why_w);
	FZ_CHECK(st_w != PROXY_MORE);
	check(st_w, &whole, why_w, size);

	while (st_p == PROXY_MORE && have < size) {
		have += fz_split_next(&sp, size - have);
		st_p = proxy_parse(buf, have, 0, &part, &why_p);
		check(st_p, &part, why_p, have);
	}
	if (st_p == PROXY_MORE) {
		st_p = proxy_parse(buf, have, 1, &part, &why_p);
		check(st_p, &part, why_p, have);
	}
	FZ_CHECK((st_w == PROXY_DONE) == (st_p == PROXY_DONE));
	if (st_w == PROXY_DONE)
		FZ_CHECK(memcmp(&whole, &part, sizeof(whole)) == 0);
	free(buf);
	return 0;
}
