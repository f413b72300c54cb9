/*
 * util/dns: the query builder and the reply parser, on replies built here
 * byte by byte: every status, the question checks, CNAME chains, NULL MX,
 * TXT as Postfix keeps it, DNS_RR_LIMIT, and the hostile ones (compression
 * loops, forward and out-of-bounds pointers, names over 255 octets, labels
 * with dots or control bytes, every truncation of every reply).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/dns.h"

/* ---- a reply, byte by byte ------------------------------------------------- */

struct msg {
	unsigned char b[70000];
	size_t	n;
};

static void
put8(struct msg *m, unsigned v)
{
	m->b[m->n++] = (unsigned char)v;
}

static void
put16(struct msg *m, unsigned v)
{
	put8(m, v >> 8);
	put8(m, v & 0xff);
}

static void
put32(struct msg *m, uint32_t v)
{
	put16(m, v >> 16);
	put16(m, v & 0xffff);
}

static void
putbytes(struct msg *m, const void *p, size_t n)
{
	memcpy(m->b + m->n, p, n);
	m->n += n;
}

/* "a.b.c" as labels with the root at the end ("" or "." is the root). */
static void
putname(struct msg *m, const char *name)
{
	const char *p = name, *dot;

	while (*p && strcmp(p, ".") != 0) {
		size_t len;

		dot = strchr(p, '.');
		len = dot ? (size_t)(dot - p) : strlen(p);
		put8(m, (unsigned)len);
		putbytes(m, p, len);
		p = dot ? dot + 1 : p + len;
	}
	put8(m, 0);
}

/* Header and question: id, flags (QR etc.), counts, name, type, class IN. */
static void
start(struct msg *m, uint16_t id, unsigned flags, unsigned an, const char *qname, int qtype)
{
	m->n = 0;
	put16(m, id);
	put16(m, flags);
	put16(m, 1);
	put16(m, an);
	put16(m, 0);
	put16(m, 0);
	putname(m, qname);
	put16(m, qtype);
	put16(m, 1);
}

#define QR	0x8000
#define TC	0x0200
#define RD	0x0100
#define RA	0x0080
#define OKF	(QR | RD | RA)

/* The fixed part of a record; returns the offset of RDLENGTH. */
static size_t
rrhead(struct msg *m, const char *owner, int type, uint32_t ttl)
{
	size_t at;

	putname(m, owner);
	put16(m, type);
	put16(m, 1);
	put32(m, ttl);
	at = m->n;
	put16(m, 0);
	return at;
}

static void
rrend(struct msg *m, size_t at)
{
	size_t len = m->n - at - 2;

	m->b[at] = (unsigned char)(len >> 8);
	m->b[at + 1] = (unsigned char)len;
}

static void
rr_a(struct msg *m, const char *owner, unsigned a, unsigned b, unsigned c, unsigned d)
{
	size_t at = rrhead(m, owner, DNS_T_A, 300);

	put8(m, a);
	put8(m, b);
	put8(m, c);
	put8(m, d);
	rrend(m, at);
}

static void
rr_name(struct msg *m, const char *owner, int type, const char *target)
{
	size_t at = rrhead(m, owner, type, 300);

	putname(m, target);
	rrend(m, at);
}

static void
rr_mx(struct msg *m, const char *owner, unsigned pref, const char *host)
{
	size_t at = rrhead(m, owner, DNS_T_MX, 300);

	put16(m, pref);
	putname(m, host);
	rrend(m, at);
}

/* Parse m as the reply to (id, name, type) from an exact-size copy, so that
 * ASan sees any read past the end. */
static int
parse(const struct msg *m, uint16_t id, const char *name, int type, struct dns_answer *a)
{
	unsigned char *copy = malloc(m->n ? m->n : 1);
	int ret;

	memcpy(copy, m->b, m->n);
	ret = dns_parse_reply(copy, m->n, id, name, type, a);
	free(copy);
	return ret;
}

/* Every prefix of m (0..n bytes) parses sanely: never a crash, never a
 * status out of range, never an answer with records but no OK. */
static void
every_truncation(const struct msg *m, uint16_t id, const char *name, int type)
{
	struct msg cut;
	struct dns_answer a;
	size_t n;

	for (n = 0; n <= m->n; n++) {
		int ret;

		memcpy(cut.b, m->b, n);
		cut.n = n;
		ret = parse(&cut, id, name, type, &a);
		assert_true(ret >= -1 && ret <= 1);
		if (ret == 1) {
			assert_true(a.status <= DNS_NULLMX);
			if (a.status != DNS_OK)
				assert_int_equal(a.nrr, 0);
			else
				assert_true(a.nrr > 0);
		}
		dns_answer_free(&a);
	}
}

/* ---- the query ------------------------------------------------------------- */

static void
test_build_query(void **state)
{
	unsigned char q[512];
	static const unsigned char want[] = {
		0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,
		7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'C', 'o', 'm', 0,
		0, 15, 0, 1,
	};
	char label[80], longname[300];
	int n;

	(void)state;
	n = dns_build_query(0x1234, "example.Com", DNS_T_MX, q, sizeof(q));
	assert_int_equal(n, sizeof(want));
	assert_memory_equal(q, want, sizeof(want));
	/* a trailing dot changes nothing */
	assert_int_equal(dns_build_query(0x1234, "example.Com.", DNS_T_MX, q, sizeof(q)), n);
	assert_memory_equal(q, want, sizeof(want));
	/* the root */
	assert_int_equal(dns_build_query(1, ".", DNS_T_NS, q, sizeof(q)), 12 + 1 + 4);
	/* names that cannot be encoded */
	assert_int_equal(dns_build_query(1, "a..b", DNS_T_A, q, sizeof(q)), -1);
	assert_int_equal(dns_build_query(1, ".a", DNS_T_A, q, sizeof(q)), -1);
	assert_int_equal(dns_build_query(1, "a..", DNS_T_A, q, sizeof(q)), -1);
	memset(label, 'x', 63);
	label[63] = '\0';
	assert_true(dns_build_query(1, label, DNS_T_A, q, sizeof(q)) > 0);
	label[63] = 'x';
	label[64] = '\0';
	assert_int_equal(dns_build_query(1, label, DNS_T_A, q, sizeof(q)), -1);
	/* 255 octets on the wire at most: 127 labels "a" = 254 + root = 255 */
	for (n = 0; n < 253; n++)
		longname[n] = n % 2 ? '.' : 'a';
	longname[253] = '\0';
	assert_true(dns_build_query(1, longname, DNS_T_A, q, sizeof(q)) > 0);
	longname[253] = '.';
	longname[254] = 'a';
	longname[255] = '\0';
	assert_int_equal(dns_build_query(1, longname, DNS_T_A, q, sizeof(q)), -1);
	/* too small a buffer */
	assert_int_equal(dns_build_query(1, "example.com", DNS_T_A, q, 20), -1);
}

/* A query turned into its reply (QR, one A record pointing at the question). */
static void
test_round_trip(void **state)
{
	struct msg m;
	struct dns_answer a, c;
	int n;

	(void)state;
	n = dns_build_query(0xbeef, "Host.Example.TEST", DNS_T_A, m.b, sizeof(m.b));
	assert_true(n > 0);
	m.n = (size_t)n;
	m.b[2] |= 0x80;		/* QR */
	m.b[3] = 0x80;		/* RA, NOERROR */
	m.b[7] = 1;		/* ANCOUNT */
	put16(&m, 0xC00C);	/* the question's name */
	put16(&m, DNS_T_A);
	put16(&m, 1);
	put32(&m, 3600);
	put16(&m, 4);
	put32(&m, 0xC0000201);
	assert_int_equal(parse(&m, 0xbeef, "host.example.test", DNS_T_A, &a), 1);
	assert_int_equal(a.status, DNS_OK);
	assert_int_equal(a.nrr, 1);
	assert_int_equal(a.rr[0].type, DNS_T_A);
	assert_int_equal(a.rr[0].ttl, 3600);
	assert_int_equal(a.rr[0].len, 4);
	assert_memory_equal(a.rr[0].data, "\xc0\x00\x02\x01", 4);
	assert_null(a.error);
	assert_false(a.nodata);
	assert_false(a.truncated);
	dns_answer_copy(&c, &a);
	dns_answer_free(&a);
	assert_int_equal(c.nrr, 1);
	assert_memory_equal(c.rr[0].data, "\xc0\x00\x02\x01", 4);
	dns_answer_free(&c);
	every_truncation(&m, 0xbeef, "host.example.test", DNS_T_A);
}

static void
test_statuses(void **state)
{
	static const struct {
		unsigned rcode;
		enum dns_status status;
	} cases[] = {
		{3, DNS_NOTFOUND}, {2, DNS_RETRY}, {4, DNS_RETRY}, {5, DNS_RETRY},
		{1, DNS_FAIL}, {6, DNS_FAIL}, {9, DNS_FAIL}, {15, DNS_FAIL},
	};
	struct msg m;
	struct dns_answer a;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		start(&m, 7, OKF | cases[i].rcode, 0, "x.test", DNS_T_A);
		assert_int_equal(parse(&m, 7, "x.test", DNS_T_A, &a), 1);
		assert_int_equal(a.status, cases[i].status);
		assert_int_equal(a.rcode, cases[i].rcode);
		assert_false(a.nodata);
		assert_int_equal(a.nrr, 0);
		if (a.status == DNS_RETRY)
			assert_string_equal(a.error, "Host not found, try again");
		if (a.status == DNS_FAIL)
			assert_string_equal(a.error, "Non-recoverable error");
		dns_answer_free(&a);
	}
	/* NXDOMAIN with a CNAME in it is still NXDOMAIN (Postfix: HOST_NOT_FOUND) */
	start(&m, 7, OKF | 3, 1, "x.test", DNS_T_A);
	rr_name(&m, "x.test", DNS_T_CNAME, "y.test");
	assert_int_equal(parse(&m, 7, "x.test", DNS_T_A, &a), 1);
	assert_int_equal(a.status, DNS_NOTFOUND);
	assert_null(a.cname);
	dns_answer_free(&a);
	/* NOERROR, nothing: nodata */
	start(&m, 7, OKF, 0, "x.test", DNS_T_MX);
	assert_int_equal(parse(&m, 7, "x.test", DNS_T_MX, &a), 1);
	assert_int_equal(a.status, DNS_NOTFOUND);
	assert_true(a.nodata);
	dns_answer_free(&a);
	/* NOERROR, only records of another type or name: nodata too */
	start(&m, 7, OKF, 2, "x.test", DNS_T_MX);
	rr_a(&m, "x.test", 192, 0, 2, 1);
	rr_mx(&m, "other.test", 10, "mx.test");
	assert_int_equal(parse(&m, 7, "x.test", DNS_T_MX, &a), 1);
	assert_int_equal(a.status, DNS_NOTFOUND);
	assert_true(a.nodata);
	assert_null(a.cname);
	dns_answer_free(&a);
}

static void
test_question_checks(void **state)
{
	struct msg m;
	struct dns_answer a;

	(void)state;
	start(&m, 0x4242, OKF, 1, "MiXeD.TeSt", DNS_T_A);
	rr_a(&m, "mixed.TEST", 1, 2, 3, 4);
	/* the question's name compares without case */
	assert_int_equal(parse(&m, 0x4242, "mixed.test.", DNS_T_A, &a), 1);
	assert_int_equal(a.status, DNS_OK);
	dns_answer_free(&a);
	/* wrong id, name, type: not ours */
	assert_int_equal(parse(&m, 0x4243, "mixed.test", DNS_T_A, &a), 0);
	dns_answer_free(&a);
	assert_int_equal(parse(&m, 0x4242, "mixed.test.x", DNS_T_A, &a), 0);
	dns_answer_free(&a);
	assert_int_equal(parse(&m, 0x4242, "mixe.test", DNS_T_A, &a), 0);
	dns_answer_free(&a);
	assert_int_equal(parse(&m, 0x4242, "mixed.test", DNS_T_AAAA, &a), 0);
	dns_answer_free(&a);
	/* a query, not a response */
	m.b[2] &= 0x7f;
	assert_int_equal(parse(&m, 0x4242, "mixed.test", DNS_T_A, &a), 0);
	dns_answer_free(&a);
	m.b[2] |= 0x80;
	/* class CH */
	m.b[12 + 12 + 3] = 3;
	assert_int_equal(parse(&m, 0x4242, "mixed.test", DNS_T_A, &a), 0);
	dns_answer_free(&a);
	m.b[12 + 12 + 3] = 1;
	/* no question, two questions */
	m.b[5] = 0;
	assert_int_equal(parse(&m, 0x4242, "mixed.test", DNS_T_A, &a), 0);
	dns_answer_free(&a);
	m.b[5] = 2;
	assert_int_equal(parse(&m, 0x4242, "mixed.test", DNS_T_A, &a), 0);
	dns_answer_free(&a);
	/* an unencodable name never matches */
	m.b[5] = 1;
	assert_int_equal(parse(&m, 0x4242, "a..b", DNS_T_A, &a), 0);
	dns_answer_free(&a);
}

static void
test_tc(void **state)
{
	struct msg m;
	struct dns_answer a;

	(void)state;
	start(&m, 9, OKF | TC, 0, "big.test", DNS_T_TXT);
	assert_int_equal(parse(&m, 9, "big.test", DNS_T_TXT, &a), -1);
	dns_answer_free(&a);
	/* TC, but not ours: ignored, not retried over TCP */
	assert_int_equal(parse(&m, 10, "big.test", DNS_T_TXT, &a), 0);
	dns_answer_free(&a);
	assert_int_equal(parse(&m, 9, "small.test", DNS_T_TXT, &a), 0);
	dns_answer_free(&a);
	every_truncation(&m, 9, "big.test", DNS_T_TXT);
}

static void
test_cname(void **state)
{
	struct msg m;
	struct dns_answer a;

	(void)state;
	/* a chain, out of order, with case differences, plus a stray record */
	start(&m, 1, OKF, 5, "a.test", DNS_T_A);
	rr_a(&m, "stray.test", 9, 9, 9, 9);
	rr_a(&m, "C.test", 10, 0, 0, 3);
	rr_name(&m, "B.TEST", DNS_T_CNAME, "c.test");
	rr_name(&m, "a.test", DNS_T_CNAME, "b.Test");
	rr_a(&m, "c.TEST", 10, 0, 0, 4);
	assert_int_equal(parse(&m, 1, "a.test", DNS_T_A, &a), 1);
	assert_int_equal(a.status, DNS_OK);
	assert_int_equal(a.nrr, 2);
	assert_memory_equal(a.rr[0].data, "\x0a\x00\x00\x03", 4);
	assert_memory_equal(a.rr[1].data, "\x0a\x00\x00\x04", 4);
	assert_null(a.cname);
	dns_answer_free(&a);
	every_truncation(&m, 1, "a.test", DNS_T_A);
	/* a chain that ends without the type: ask again for its end */
	start(&m, 1, OKF, 2, "a.test", DNS_T_MX);
	rr_name(&m, "a.test", DNS_T_CNAME, "b.test");
	rr_name(&m, "b.test", DNS_T_CNAME, "Far.Away.Example");
	assert_int_equal(parse(&m, 1, "a.test", DNS_T_MX, &a), 1);
	assert_int_equal(a.status, DNS_NOTFOUND);
	assert_false(a.nodata);
	assert_string_equal(a.cname, "far.away.example");
	dns_answer_free(&a);
	/* a loop inside the reply */
	start(&m, 1, OKF, 2, "a.test", DNS_T_A);
	rr_name(&m, "a.test", DNS_T_CNAME, "b.test");
	rr_name(&m, "b.test", DNS_T_CNAME, "a.test");
	assert_int_equal(parse(&m, 1, "a.test", DNS_T_A, &a), 1);
	assert_int_equal(a.status, DNS_NOTFOUND);
	assert_null(a.cname);
	assert_string_equal(a.error, "Name server loop for a.test");
	dns_answer_free(&a);
	/* asking for the CNAME itself gives it */
	start(&m, 1, OKF, 1, "a.test", DNS_T_CNAME);
	rr_name(&m, "a.test", DNS_T_CNAME, "B.test");
	assert_int_equal(parse(&m, 1, "a.test", DNS_T_CNAME, &a), 1);
	assert_int_equal(a.status, DNS_OK);
	assert_string_equal(a.rr[0].data, "b.test");
	assert_int_equal(a.rr[0].len, 6);
	dns_answer_free(&a);
	/* a CNAME to something that is not a host name: malformed */
	start(&m, 1, OKF, 2, "a.test", DNS_T_A);
	rr_name(&m, "a.test", DNS_T_CNAME, "b-.test");
	rr_a(&m, "b-.test", 1, 1, 1, 1);
	assert_int_equal(parse(&m, 1, "a.test", DNS_T_A, &a), 1);
	assert_int_equal(a.status, DNS_INVAL);
	dns_answer_free(&a);
}

static void
test_compression(void **state)
{
	struct msg m;
	struct dns_answer a;
	size_t at;

	(void)state;
	/* owner -> question; MX host "mx" + pointer to the question's name */
	start(&m, 2, OKF, 2, "example.test", DNS_T_MX);
	put16(&m, 0xC00C);
	put16(&m, DNS_T_MX);
	put16(&m, 1);
	put32(&m, 60);
	at = m.n;
	put16(&m, 0);
	put16(&m, 10);
	put8(&m, 2);
	putbytes(&m, "mx", 2);
	put16(&m, 0xC00C);
	rrend(&m, at);
	/* a pointer to a pointer: "mx2" + pointer to the label "mx" above */
	{
		size_t mxlabel = at + 4;

		put16(&m, 0xC00C);
		put16(&m, DNS_T_MX);
		put16(&m, 1);
		put32(&m, 60);
		at = m.n;
		put16(&m, 0);
		put16(&m, 20);
		put8(&m, 3);
		putbytes(&m, "mx2", 3);
		put16(&m, 0xC000 | mxlabel);
		rrend(&m, at);
	}
	assert_int_equal(parse(&m, 2, "example.test", DNS_T_MX, &a), 1);
	assert_int_equal(a.status, DNS_OK);
	assert_int_equal(a.nrr, 2);
	assert_int_equal(a.rr[0].pref, 10);
	assert_string_equal(a.rr[0].data, "mx.example.test");
	assert_int_equal(a.rr[1].pref, 20);
	assert_string_equal(a.rr[1].data, "mx2.mx.example.test");
	dns_answer_free(&a);
	every_truncation(&m, 2, "example.test", DNS_T_MX);

	/* a pointer to itself (a loop) in the owner: malformed, RETRY as Postfix */
	start(&m, 2, OKF, 1, "example.test", DNS_T_A);
	at = m.n;
	put16(&m, 0xC000 | at);
	put16(&m, DNS_T_A);
	put16(&m, 1);
	put32(&m, 60);
	put16(&m, 4);
	put32(&m, 0x01020304);
	assert_int_equal(parse(&m, 2, "example.test", DNS_T_A, &a), 1);
	assert_int_equal(a.status, DNS_RETRY);
	assert_string_equal(a.error, "Malformed or unexpected name server reply");
	assert_int_equal(a.nrr, 0);
	dns_answer_free(&a);

	/* two names pointing at each other */
	start(&m, 2, OKF, 1, "example.test", DNS_T_A);
	at = m.n;
	put8(&m, 1);
	put8(&m, 'a');
	put16(&m, 0xC000 | (at + 4));	/* forward, to the next */
	put8(&m, 1);
	put8(&m, 'b');
	put16(&m, 0xC000 | at);		/* back to the first */
	assert_int_equal(parse(&m, 2, "example.test", DNS_T_A, &a), 1);
	assert_int_equal(a.status, DNS_RETRY);
	dns_answer_free(&a);

	/* a forward pointer (to a name that is really there) */
	start(&m, 2, OKF, 1, "example.test", DNS_T_A);
	at = m.n;
	put16(&m, 0xC000 | (at + 2 + 10 + 4));
	put16(&m, DNS_T_A);
	put16(&m, 1);
	put32(&m, 60);
	put16(&m, 4);
	put32(&m, 0x01020304);
	putname(&m, "example.test");
	assert_int_equal(parse(&m, 2, "example.test", DNS_T_A, &a), 1);
	assert_int_equal(a.status, DNS_RETRY);
	dns_answer_free(&a);

	/* a pointer past the end, and one in the question */
	start(&m, 2, OKF, 1, "example.test", DNS_T_A);
	put16(&m, 0xFFFF);
	assert_int_equal(parse(&m, 2, "example.test", DNS_T_A, &a), 1);
	assert_int_equal(a.status, DNS_RETRY);
	dns_answer_free(&a);
	m.n = 0;
	put16(&m, 2);
	put16(&m, OKF);
	put16(&m, 1);
	put16(&m, 0);
	put32(&m, 0);
	put16(&m, 0xC00C);	/* the question's name pointing at itself */
	put16(&m, DNS_T_A);
	put16(&m, 1);
	assert_int_equal(parse(&m, 2, "example.test", DNS_T_A, &a), 0);
	dns_answer_free(&a);

	/* the reserved label types 01 and 10 */
	start(&m, 2, OKF, 1, "example.test", DNS_T_A);
	put8(&m, 0x41);
	put8(&m, 0);
	assert_int_equal(parse(&m, 2, "example.test", DNS_T_A, &a), 1);
	assert_int_equal(a.status, DNS_RETRY);
	dns_answer_free(&a);

	/*
	 * A name over 255 octets made of pointers: each record's owner is
	 * "a" + a pointer to the previous owner, all backwards and legal until
	 * the name grows too long.
	 */
	{
		size_t prev = 12, i;

		start(&m, 2, OKF, 130, "example.test", DNS_T_A);
		for (i = 0; i < 130; i++) {
			size_t here = m.n;

			put8(&m, 1);
			put8(&m, 'a');
			put16(&m, 0xC000 | prev);
			put16(&m, DNS_T_TXT);
			put16(&m, 1);
			put32(&m, 0);
			put16(&m, 0);
			prev = here;
		}
		assert_int_equal(parse(&m, 2, "example.test", DNS_T_A, &a), 1);
		assert_int_equal(a.status, DNS_RETRY);
		dns_answer_free(&a);
	}
}

static void
test_records(void **state)
{
	struct msg m;
	struct dns_answer a;
	size_t at;

	(void)state;
	/* AAAA */
	start(&m, 3, OKF, 1, "v6.test", DNS_T_AAAA);
	at = rrhead(&m, "v6.test", DNS_T_AAAA, 7);
	putbytes(&m, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01", 16);
	rrend(&m, at);
	assert_int_equal(parse(&m, 3, "v6.test", DNS_T_AAAA, &a), 1);
	assert_int_equal(a.status, DNS_OK);
	assert_int_equal(a.rr[0].len, 16);
	assert_int_equal(a.rr[0].ttl, 7);
	assert_memory_equal(a.rr[0].data, "\x20\x01\x0d\xb8", 4);
	dns_answer_free(&a);
	/* an address of the wrong length: Postfix's "bad address length", a try-again */
	start(&m, 3, OKF, 1, "v6.test", DNS_T_AAAA);
	at = rrhead(&m, "v6.test", DNS_T_AAAA, 7);
	put32(&m, 1);
	rrend(&m, at);
	assert_int_equal(parse(&m, 3, "v6.test", DNS_T_AAAA, &a), 1);
	assert_int_equal(a.status, DNS_RETRY);
	dns_answer_free(&a);
	/* ... but a good record beside it wins (Postfix skips the bad one) */
	start(&m, 3, OKF, 2, "v4.test", DNS_T_A);
	at = rrhead(&m, "v4.test", DNS_T_A, 7);
	put16(&m, 1);
	rrend(&m, at);
	rr_a(&m, "v4.test", 1, 2, 3, 4);
	assert_int_equal(parse(&m, 3, "v4.test", DNS_T_A, &a), 1);
	assert_int_equal(a.status, DNS_OK);
	assert_int_equal(a.nrr, 1);
	dns_answer_free(&a);
	/* NS and PTR: lower case, no trailing dot */
	start(&m, 3, OKF, 2, "zone.test", DNS_T_NS);
	rr_name(&m, "zone.test", DNS_T_NS, "NS1.Zone.Test");
	rr_name(&m, "zone.test", DNS_T_NS, "ns2.zone.test");
	assert_int_equal(parse(&m, 3, "zone.test", DNS_T_NS, &a), 1);
	assert_int_equal(a.nrr, 2);
	assert_string_equal(a.rr[0].data, "ns1.zone.test");
	assert_int_equal(a.rr[0].len, strlen("ns1.zone.test"));
	dns_answer_free(&a);
	start(&m, 3, OKF, 1, "1.2.0.192.in-addr.arpa", DNS_T_PTR);
	rr_name(&m, "1.2.0.192.in-addr.arpa", DNS_T_PTR, "host.example.test");
	assert_int_equal(parse(&m, 3, "1.2.0.192.in-addr.arpa", DNS_T_PTR, &a), 1);
	assert_int_equal(a.status, DNS_OK);
	assert_string_equal(a.rr[0].data, "host.example.test");
	dns_answer_free(&a);
	/* a class other than IN in the answer: Postfix's "bad class", a try-again */
	start(&m, 3, OKF, 1, "v4.test", DNS_T_A);
	rr_a(&m, "v4.test", 1, 2, 3, 4);
	m.b[m.n - 4 - 2 - 4 - 2 + 1] = 3;
	assert_int_equal(parse(&m, 3, "v4.test", DNS_T_A, &a), 1);
	assert_int_equal(a.status, DNS_RETRY);
	dns_answer_free(&a);
	/* other types: raw RDATA */
	start(&m, 3, OKF, 1, "srv.test", 33);
	at = rrhead(&m, "srv.test", 33, 1);
	putbytes(&m, "\0\1\0\2\0\3\0", 7);
	rrend(&m, at);
	assert_int_equal(parse(&m, 3, "srv.test", 33, &a), 1);
	assert_int_equal(a.status, DNS_OK);
	assert_int_equal(a.rr[0].len, 7);
	assert_memory_equal(a.rr[0].data, "\0\1\0\2\0\3\0", 7);
	dns_answer_free(&a);
}

/* Labels with a dot, a backslash or a control byte never pass for a name. */
static void
test_escapes(void **state)
{
	struct msg m;
	struct dns_answer a;
	size_t at;

	(void)state;
	/* PTR "evil.example\.test" (one label "example.test"): not "evil.example.test" */
	start(&m, 4, OKF, 1, "4.3.2.1.in-addr.arpa", DNS_T_PTR);
	at = rrhead(&m, "4.3.2.1.in-addr.arpa", DNS_T_PTR, 1);
	put8(&m, 4);
	putbytes(&m, "evil", 4);
	put8(&m, 12);
	putbytes(&m, "example.test", 12);
	put8(&m, 0);
	rrend(&m, at);
	assert_int_equal(parse(&m, 4, "4.3.2.1.in-addr.arpa", DNS_T_PTR, &a), 1);
	assert_int_equal(a.status, DNS_INVAL);
	assert_string_equal(a.error, "Malformed or unexpected name server reply");
	assert_int_equal(a.nrr, 0);
	dns_answer_free(&a);
	/* an MX host with a NUL and a space inside */
	start(&m, 4, OKF, 1, "x.test", DNS_T_MX);
	at = rrhead(&m, "x.test", DNS_T_MX, 1);
	put16(&m, 5);
	put8(&m, 4);
	putbytes(&m, "m\0 x", 4);
	put8(&m, 0);
	rrend(&m, at);
	assert_int_equal(parse(&m, 4, "x.test", DNS_T_MX, &a), 1);
	assert_int_equal(a.status, DNS_INVAL);
	dns_answer_free(&a);
	/* the same name as an owner: the whole reply is malformed */
	start(&m, 4, OKF, 2, "x.test", DNS_T_A);
	at = rrhead(&m, "x\\.test", DNS_T_A, 1);	/* a label "x\" */
	put32(&m, 0);
	rrend(&m, at);
	rr_a(&m, "x.test", 1, 2, 3, 4);
	assert_int_equal(parse(&m, 4, "x.test", DNS_T_A, &a), 1);
	assert_int_equal(a.status, DNS_INVAL);
	dns_answer_free(&a);
	/* a label with a dot in it as an owner */
	start(&m, 4, OKF, 1, "x.test", DNS_T_A);
	put8(&m, 6);
	putbytes(&m, "x.test", 6);
	put8(&m, 0);
	put16(&m, DNS_T_A);
	put16(&m, 1);
	put32(&m, 0);
	put16(&m, 4);
	put32(&m, 0);
	assert_int_equal(parse(&m, 4, "x.test", DNS_T_A, &a), 1);
	assert_int_equal(a.status, DNS_INVAL);
	dns_answer_free(&a);
	/* a wildcard owner and a numeric host name pass, as in Postfix's valid_rr_name() */
	start(&m, 4, OKF, 2, "x.test", DNS_T_MX);
	rr_mx(&m, "*.x.test", 1, "a.test");
	rr_mx(&m, "x.test", 10, "192.0.2.1");
	assert_int_equal(parse(&m, 4, "x.test", DNS_T_MX, &a), 1);
	assert_int_equal(a.status, DNS_OK);
	assert_int_equal(a.nrr, 1);
	assert_string_equal(a.rr[0].data, "192.0.2.1");
	dns_answer_free(&a);
}

static void
test_nullmx(void **state)
{
	struct msg m;
	struct dns_answer a;

	(void)state;
	start(&m, 5, OKF, 1, "nomail.test", DNS_T_MX);
	rr_mx(&m, "nomail.test", 0, ".");
	assert_int_equal(parse(&m, 5, "nomail.test", DNS_T_MX, &a), 1);
	assert_int_equal(a.status, DNS_NULLMX);
	assert_int_equal(a.nrr, 0);
	dns_answer_free(&a);
	every_truncation(&m, 5, "nomail.test", DNS_T_MX);
	/* Postfix: any "." MX host makes it a null MX, whatever else is there */
	start(&m, 5, OKF, 2, "nomail.test", DNS_T_MX);
	rr_mx(&m, "nomail.test", 10, "mx.nomail.test");
	rr_mx(&m, "nomail.test", 5, ".");
	assert_int_equal(parse(&m, 5, "nomail.test", DNS_T_MX, &a), 1);
	assert_int_equal(a.status, DNS_NULLMX);
	assert_int_equal(a.nrr, 0);
	dns_answer_free(&a);
	/* an NS "." is no host name: malformed */
	start(&m, 5, OKF, 1, "nomail.test", DNS_T_NS);
	rr_name(&m, "nomail.test", DNS_T_NS, ".");
	assert_int_equal(parse(&m, 5, "nomail.test", DNS_T_NS, &a), 1);
	assert_int_equal(a.status, DNS_INVAL);
	dns_answer_free(&a);
}

static void
test_txt(void **state)
{
	struct msg m;
	struct dns_answer a;
	size_t at;

	(void)state;
	start(&m, 6, OKF, 4, "2.0.0.127.zen.test", DNS_T_TXT);
	at = rrhead(&m, "2.0.0.127.zen.test", DNS_T_TXT, 1);
	put8(&m, 9);
	putbytes(&m, "Listed\tby", 9);
	put8(&m, 5);
	putbytes(&m, " more", 5);
	rrend(&m, at);
	at = rrhead(&m, "2.0.0.127.zen.test", DNS_T_TXT, 1);
	put8(&m, 4);
	putbytes(&m, "\x01\xff\0z", 4);
	rrend(&m, at);
	at = rrhead(&m, "2.0.0.127.zen.test", DNS_T_TXT, 1);	/* no string at all */
	rrend(&m, at);
	at = rrhead(&m, "2.0.0.127.zen.test", DNS_T_TXT, 1);	/* a string longer than the record */
	put8(&m, 200);
	putbytes(&m, "abc", 3);
	rrend(&m, at);
	assert_int_equal(parse(&m, 6, "2.0.0.127.zen.test", DNS_T_TXT, &a), 1);
	assert_int_equal(a.status, DNS_OK);
	assert_int_equal(a.nrr, 4);
	assert_string_equal(a.rr[0].data, "Listed by");	/* first string only, tab -> space */
	assert_int_equal(a.rr[0].len, 9);
	assert_string_equal(a.rr[1].data, "   z");
	assert_int_equal(a.rr[1].len, 4);
	assert_string_equal(a.rr[2].data, "");
	assert_int_equal(a.rr[2].len, 0);
	assert_string_equal(a.rr[3].data, "abc");
	dns_answer_free(&a);
	every_truncation(&m, 6, "2.0.0.127.zen.test", DNS_T_TXT);
}

static void
test_rr_limit(void **state)
{
	struct msg m;
	struct dns_answer a;
	unsigned i;

	(void)state;
	start(&m, 8, OKF, 150, "many.test", DNS_T_A);
	for (i = 0; i < 150; i++)
		rr_a(&m, "many.test", 10, 0, i / 256, i % 256);
	assert_int_equal(parse(&m, 8, "many.test", DNS_T_A, &a), 1);
	assert_int_equal(a.status, DNS_OK);
	assert_int_equal(a.nrr, DNS_RR_LIMIT);
	assert_true(a.truncated);
	assert_memory_equal(a.rr[99].data, "\x0a\x00\x00\x63", 4);
	dns_answer_free(&a);
	/* exactly the limit: not truncated */
	start(&m, 8, OKF, DNS_RR_LIMIT, "many.test", DNS_T_A);
	for (i = 0; i < DNS_RR_LIMIT; i++)
		rr_a(&m, "many.test", 10, 0, 0, i);
	assert_int_equal(parse(&m, 8, "many.test", DNS_T_A, &a), 1);
	assert_int_equal(a.nrr, DNS_RR_LIMIT);
	assert_false(a.truncated);
	dns_answer_free(&a);
}

/* ANCOUNT larger than what is there, and garbage after the records. */
static void
test_counts(void **state)
{
	struct msg m;
	struct dns_answer a;

	(void)state;
	start(&m, 11, OKF, 3, "x.test", DNS_T_A);
	rr_a(&m, "x.test", 1, 2, 3, 4);
	assert_int_equal(parse(&m, 11, "x.test", DNS_T_A, &a), 1);
	assert_int_equal(a.status, DNS_RETRY);
	dns_answer_free(&a);
	start(&m, 11, OKF, 1, "x.test", DNS_T_A);
	rr_a(&m, "x.test", 1, 2, 3, 4);
	putbytes(&m, "garbage", 7);
	assert_int_equal(parse(&m, 11, "x.test", DNS_T_A, &a), 1);
	assert_int_equal(a.status, DNS_OK);
	dns_answer_free(&a);
	/* 65535 answers claimed, none there: bounded work, RETRY */
	start(&m, 11, OKF, 0xffff, "x.test", DNS_T_A);
	assert_int_equal(parse(&m, 11, "x.test", DNS_T_A, &a), 1);
	assert_int_equal(a.status, DNS_RETRY);
	dns_answer_free(&a);
}

static void
test_type_name(void **state)
{
	(void)state;
	assert_string_equal(dns_type_name(DNS_T_A), "A");
	assert_string_equal(dns_type_name(DNS_T_AAAA), "AAAA");
	assert_string_equal(dns_type_name(DNS_T_MX), "MX");
	assert_string_equal(dns_type_name(DNS_T_TXT), "TXT");
	assert_string_equal(dns_type_name(DNS_T_PTR), "PTR");
	assert_string_equal(dns_type_name(DNS_T_NS), "NS");
	assert_string_equal(dns_type_name(DNS_T_CNAME), "CNAME");
	assert_string_equal(dns_type_name(99), "TYPE99");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_build_query),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_statuses),
		cmocka_unit_test(test_question_checks),
		cmocka_unit_test(test_tc),
		cmocka_unit_test(test_cname),
		cmocka_unit_test(test_compression),
		cmocka_unit_test(test_records),
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_nullmx),
		cmocka_unit_test(test_txt),
		cmocka_unit_test(test_rr_limit),
		cmocka_unit_test(test_counts),
		cmocka_unit_test(test_type_name),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
