/*
 * test_proxy: smtp/proxy's PROXY header parser, with the cases of Postfix
 * 3.7.11's own test table (global/haproxy_srvr.c): each v1 request parsed
 * whole, with a byte appended, with its terminator stripped, converted to
 * v2 (whole, a byte appended, the last byte stripped), and every one of
 * them fed one byte at a time as smtp/conn feeds it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/proxy.h"

struct tcase {
	const char *req;
	const char *why;	/* NULL: a header */
	const char *caddr, *saddr, *cport, *sport;
};

static const struct tcase v1_cases[] = {
	{"PROXY TCP6 fc:00:00:00:1:2:3:4 fc:00:00:00:4:3:2:1 123 321\n", NULL, "fc::1:2:3:4", "fc::4:3:2:1", "123", "321"},
	{"PROXY TCP6 FC:00:00:00:1:2:3:4 FC:00:00:00:4:3:2:1 123 321\n", NULL, "fc::1:2:3:4", "fc::4:3:2:1", "123", "321"},
	{"PROXY TCP6 1.2.3.4 4.3.2.1 123 321\n", "bad or missing client address", NULL, NULL, NULL, NULL},
	{"PROXY TCP6 fc:00:00:00:1:2:3:4 4.3.2.1 123 321\n", "bad or missing server address", NULL, NULL, NULL, NULL},
	{"PROXY TCP6 ::ffff:1.2.3.4 ::ffff:4.3.2.1 123 321\n", NULL, "1.2.3.4", "4.3.2.1", "123", "321"},
	{"PROXY TCP6 ::FFFF:1.2.3.4 ::FFFF:4.3.2.1 123 321\n", NULL, "1.2.3.4", "4.3.2.1", "123", "321"},
	{"PROXY TCP4 ::ffff:1.2.3.4 ::ffff:4.3.2.1 123 321\n", "bad or missing client address", NULL, NULL, NULL, NULL},
	{"PROXY TCP4 1.2.3.4 ::ffff:4.3.2.1 123 321\n", "bad or missing server address", NULL, NULL, NULL, NULL},
	{"PROXY TCP4 1.2.3.4 4.3.2.1 123 321\n", NULL, "1.2.3.4", "4.3.2.1", "123", "321"},
	{"PROXY TCP4 01.02.03.04 04.03.02.01 123 321\n", NULL, "1.2.3.4", "4.3.2.1", "123", "321"},
	{"PROXY TCP4 1.2.3.4 4.3.2.1 123456 321\n", "bad or missing client port", NULL, NULL, NULL, NULL},
	{"PROXY TCP4 1.2.3.4 4.3.2.1 123 654321\n", "bad or missing server port", NULL, NULL, NULL, NULL},
	{"PROXY TCP4 1.2.3.4 4.3.2.1 0123 321\n", "bad or missing client port", NULL, NULL, NULL, NULL},
	{"PROXY TCP4 1.2.3.4 4.3.2.1 123 0321\n", "bad or missing server port", NULL, NULL, NULL, NULL},
	{"PROXY TCP6 fc:00:00:00:1:2:3:4 fc:00:00:00:4:3:2:1 123\n", "bad or missing server port", NULL, NULL, NULL, NULL},
	{"PROXY TCP6 fc:00:00:00:1:2:3:4 fc:00:00:00:4:3:2:1\n", "bad or missing client port", NULL, NULL, NULL, NULL},
	{"PROXY TCP6 fc:00:00:00:1:2:3:4\n", "bad or missing server address", NULL, NULL, NULL, NULL},
	{"PROXY TCP6\n", "bad or missing client address", NULL, NULL, NULL, NULL},
	{"PROXY TCP4 1.2.3.4 4.3.2.1 123\n", "bad or missing server port", NULL, NULL, NULL, NULL},
	{"PROXY TCP4 1.2.3.4 4.3.2.1\n", "bad or missing client port", NULL, NULL, NULL, NULL},
	{"PROXY TCP4 1.2.3.4\n", "bad or missing server address", NULL, NULL, NULL, NULL},
	{"PROXY TCP4\n", "bad or missing client address", NULL, NULL, NULL, NULL},
	{"PROXY BLAH\n", "bad or missing protocol type", NULL, NULL, NULL, NULL},
	{"PROXY UNKNOWN\r\n", "bad or missing protocol type", NULL, NULL, NULL, NULL},
	{"PROXY\n", "short protocol header", NULL, NULL, NULL, NULL},
	{"BLAH\n", "short protocol header", NULL, NULL, NULL, NULL},
	{"\n", "short protocol header", NULL, NULL, NULL, NULL},
	{"", "short protocol header", NULL, NULL, NULL, NULL},
	/* what haproxy sends: CRLF */
	{"PROXY TCP4 198.51.100.7 192.0.2.1 12345 25\r\n", NULL, "198.51.100.7", "192.0.2.1", "12345", "25"},
};

/* Parse whole (eof), then fed one byte at a time; both must agree. */
static enum proxy_status
parse_both(const unsigned char *buf, size_t len, struct proxy_result *r, const char **why)
{
	struct proxy_result r1;
	const char *why1 = NULL;
	enum proxy_status st = proxy_parse(buf, len, 1, r, why), st1 = PROXY_MORE;
	size_t	k;

	for (k = 1; k <= len && st1 == PROXY_MORE; k++)
		st1 = proxy_parse(buf, k, 0, &r1, &why1);
	if (st1 == PROXY_MORE)
		st1 = proxy_parse(buf, len, 1, &r1, &why1);
	assert_int_equal(st, st1);
	if (st == PROXY_DONE)
		assert_memory_equal(r, &r1, sizeof(r1));
	else if (len >= 16 || (len > 0 && (buf[0] == 'P' || buf[0] == '\r')))
		assert_string_equal(*why, why1);	/* a header's start: the same reason */
	return st;
}

static void
expect(const unsigned char *buf, size_t len, size_t hdr_len, const struct tcase *t,
       const char *why_override)
{
	struct proxy_result r;
	const char *why = NULL;
	const char *want = why_override ? why_override : t->why;
	enum proxy_status st = parse_both(buf, len, &r, &why);

	if (want != NULL) {
		assert_int_equal(st, PROXY_ERROR);
		assert_string_equal(why, want);
		return;
	}
	assert_int_equal(st, PROXY_DONE);
	assert_int_equal(r.len, hdr_len);
	assert_false(r.local);
	assert_string_equal(r.client_addr, t->caddr);
	assert_string_equal(r.server_addr, t->saddr);
	assert_string_equal(r.client_port, t->cport);
	assert_string_equal(r.server_port, t->sport);
}

/* The v2 form of a well-formed v1 case. */
static size_t
to_v2(const struct tcase *t, unsigned char *out)
{
	struct addrinfo hints, *c = NULL, *s = NULL;
	size_t	n;
	char	ca[64], sa[64];

	/* the v1 tokens as written (the mapped v6 forms convert as IPv6) */
	assert_int_equal(sscanf(t->req, "PROXY %*s %63s %63s", ca, sa), 2);
	memset(&hints, 0, sizeof(hints));
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	hints.ai_socktype = SOCK_STREAM;
	assert_int_equal(getaddrinfo(strcmp(ca, "01.02.03.04") ? ca : "1.2.3.4", t->cport, &hints, &c), 0);
	assert_int_equal(getaddrinfo(strcmp(sa, "04.03.02.01") ? sa : "4.3.2.1", t->sport, &hints, &s), 0);
	memcpy(out, "\r\n\r\n\0\r\nQUIT\n", 12);
	out[12] = 0x21;
	if (c->ai_family == AF_INET) {
		const struct sockaddr_in *a = (void *)c->ai_addr, *b = (void *)s->ai_addr;

		out[13] = 0x11;
		out[14] = 0;
		out[15] = 12;
		memcpy(out + 16, &a->sin_addr, 4);
		memcpy(out + 20, &b->sin_addr, 4);
		memcpy(out + 24, &a->sin_port, 2);
		memcpy(out + 26, &b->sin_port, 2);
		n = 28;
	} else {
		const struct sockaddr_in6 *a = (void *)c->ai_addr, *b = (void *)s->ai_addr;

		out[13] = 0x21;
		out[14] = 0;
		out[15] = 36;
		memcpy(out + 16, &a->sin6_addr, 16);
		memcpy(out + 32, &b->sin6_addr, 16);
		memcpy(out + 48, &a->sin6_port, 2);
		memcpy(out + 50, &b->sin6_port, 2);
		n = 52;
	}
	freeaddrinfo(c);
	freeaddrinfo(s);
	return n;
}

static void
test_postfix_table(void **state)
{
	for (size_t i = 0; i < sizeof(v1_cases) / sizeof(v1_cases[0]); i++) {
		const struct tcase *t = &v1_cases[i];
		size_t	len = strlen(t->req);
		unsigned char buf[PROXY_HEADER_MAX + 2], v2[64];
		size_t	n2;

		memcpy(buf, t->req, len);
		expect(buf, len, len, t, NULL);
		if (t->why != NULL)
			continue;
		buf[len] = 'X';	/* a byte appended: the header is what it was */
		expect(buf, len + 1, len, t, NULL);
		expect(buf, len - 1, 0, t, "missing protocol header terminator");
		n2 = to_v2(t, v2);
		expect(v2, n2, n2, t, NULL);
		v2[n2] = 'E';
		expect(v2, n2 + 1, n2, t, NULL);
		expect(v2, n2 - 1, 0, t, "short version 2 protocol header");
	}
}

static void
test_v2_others(void **state)
{
	unsigned char h[PROXY_HEADER_MAX + 16];
	struct proxy_result r;
	const char *why;

	memset(h, 0, sizeof(h));
	memcpy(h, "\r\n\r\n\0\r\nQUIT\n", 12);
	h[12] = 0x20;		/* LOCAL, no address */
	assert_int_equal(parse_both(h, 16, &r, &why), PROXY_DONE);
	assert_true(r.local);
	assert_int_equal(r.len, 16);
	h[12] = 0x22;		/* bad command */
	assert_int_equal(parse_both(h, 16, &r, &why), PROXY_ERROR);
	assert_string_equal(why, "bad command in proxy header");
	h[12] = 0x11;		/* version 1 in binary */
	assert_int_equal(parse_both(h, 16, &r, &why), PROXY_ERROR);
	assert_string_equal(why, "unrecognized protocol version");
	h[12] = 0x21;
	h[13] = 0x12;		/* UDP */
	h[15] = 12;
	assert_int_equal(parse_both(h, 28, &r, &why), PROXY_ERROR);
	assert_string_equal(why, "unsupported network protocol");
	h[13] = 0x31;		/* UNIX */
	assert_int_equal(parse_both(h, 28, &r, &why), PROXY_ERROR);
	assert_string_equal(why, "unsupported network protocol");
	h[13] = 0x11;
	h[15] = 8;		/* too short for IPv4 */
	assert_int_equal(parse_both(h, 24, &r, &why), PROXY_ERROR);
	assert_string_equal(why, "short address field");
	/* TLVs are skipped: the header is all of its length */
	h[15] = 12 + 5;
	assert_int_equal(parse_both(h, 33, &r, &why), PROXY_DONE);
	assert_int_equal(r.len, 33);
	assert_string_equal(r.client_addr, "0.0.0.0");
	/* longer than Postfix ever peeks at: never complete */
	h[14] = 0x02;
	h[15] = 0x10;		/* 528 + 16 > 536 */
	assert_int_equal(proxy_parse(h, 100, 0, &r, &why), PROXY_ERROR);
	assert_string_equal(why, "short version 2 protocol header");
	/* a v1 line that never ends within 536 bytes */
	memset(h, 'A', sizeof(h));
	memcpy(h, "PROXY ", 6);
	assert_int_equal(proxy_parse(h, 535, 0, &r, &why), PROXY_MORE);
	assert_int_equal(proxy_parse(h, 536, 0, &r, &why), PROXY_ERROR);
	assert_string_equal(why, "missing protocol header terminator");
	assert_int_equal(proxy_parse(h, sizeof(h), 0, &r, &why), PROXY_ERROR);
	/* SMTP instead of a header: refused at once */
	assert_int_equal(proxy_parse((const unsigned char *)"EHLO", 4, 0, &r, &why), PROXY_ERROR);
	assert_string_equal(why, "short protocol header");
	assert_int_equal(proxy_parse((const unsigned char *)"EHLO mx.example.com\r\n", 21, 0, &r,
				     &why), PROXY_ERROR);
	assert_string_equal(why, "unrecognized protocol header");
}

static void
test_escape(void **state)
{
	struct buf b = BUF_INIT;

	proxy_escape(&b, (const unsigned char *)"P\\R\r\n\t\0\x7f\xff", 9);
	assert_string_equal(buf_str(&b), "P\\\\R\\r\\n\\t\\000\\177\\377");
	buf_free(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_postfix_table),
		cmocka_unit_test(test_v2_others),
		cmocka_unit_test(test_escape),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
