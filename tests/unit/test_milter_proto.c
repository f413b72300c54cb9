/*
 * milter/milter_proto: the packets mxgate sends (byte for byte, as Postfix
 * 3.7's milter8.c writes them), milter_protocol parsing and the
 * non-protocol masks, and the reader and decoder of every filter reply, fed
 * whole and one byte at a time, with the hostile ones (bad lengths, strings
 * without their NUL, left-over data, malformed reply codes, bad indexes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "milter/milter_proto.h"

/* ---- building a filter's packets ---- */

struct pkt {
	unsigned char b[8192];
	size_t	n;
};

static void
p_u32(struct pkt *p, uint32_t v)
{
	p->b[p->n++] = v >> 24;
	p->b[p->n++] = v >> 16;
	p->b[p->n++] = v >> 8;
	p->b[p->n++] = v;
}

static void
p_bytes(struct pkt *p, const void *d, size_t n)
{
	memcpy(p->b + p->n, d, n);
	p->n += n;
}

static void
p_str(struct pkt *p, const char *s)
{
	p_bytes(p, s, strlen(s) + 1);
}

/* Start a packet: returns where its length goes. */
static size_t
p_begin(struct pkt *p, int cmd)
{
	size_t	at = p->n;

	p_u32(p, 0);
	p->b[p->n++] = (unsigned char)cmd;
	return at;
}

static void
p_end(struct pkt *p, size_t at)
{
	uint32_t len = (uint32_t)(p->n - at - 4);

	p->b[at] = len >> 24;
	p->b[at + 1] = len >> 16;
	p->b[at + 2] = len >> 8;
	p->b[at + 3] = len;
}

/* ---- feeding ---- */

struct got {
	int	status;		/* 0 decoded, 1 read error, 2 decode error, 3 incomplete */
	char	desc[4096];	/* what was decoded, as text */
	size_t	used;
};

static void
describe(const struct milter_reply *r, char *out, size_t size)
{
	size_t	i;
	int	n;

	n = snprintf(out, size, "%c", r->cmd);
	switch (r->cmd) {
	case SMFIC_OPTNEG:
		n += snprintf(out + n, size - n, " v%u a%#x p%#x", r->version, r->actions,
			      r->protocol);
		for (i = 0; i < r->nsyms; i++)
			n += snprintf(out + n, size - n, " [%u:%s]", r->syms[i].stage,
				      r->syms[i].names);
		break;
	case SMFIR_CHGHEADER:
	case SMFIR_INSHEADER:
		n += snprintf(out + n, size - n, " %u", r->index);
		/* FALLTHROUGH */
	default:
		n += snprintf(out + n, size - n, " <%s> <%s>", r->name, r->value);
		break;
	case SMFIR_REPLBODY:
		n += snprintf(out + n, size - n, " %zu:%.*s", r->body_len, (int)r->body_len,
			      r->body);
		break;
	}
}

/* Feed p in chunks of step bytes (0: whole); decode the first packet. */
static void
feed(const struct pkt *p, size_t step, struct got *g)
{
	struct milter_reader rd;
	struct milter_reply rep;
	char	why[200];
	const char *w;
	size_t	off = 0, n, used;
	enum milter_read_status st = MILTER_READ_MORE;

	milter_reader_init(&rd);
	memset(g, 0, sizeof(*g));
	g->status = 3;
	while (off < p->n || st == MILTER_READ_MORE) {
		n = step == 0 ? p->n - off : (p->n - off < step ? p->n - off : step);
		st = milter_read(&rd, p->b + off, n, &used, &w);
		assert_true(used <= n);
		off += used;
		if (st == MILTER_READ_ERROR) {
			g->status = 1;
			snprintf(g->desc, sizeof(g->desc), "%s", w);
			break;
		}
		if (st == MILTER_READ_PACKET) {
			if (milter_decode(&rd, &rep, why, sizeof(why), &w) != 0) {
				g->status = 2;
				snprintf(g->desc, sizeof(g->desc), "%s", w);
			} else {
				g->status = 0;
				describe(&rep, g->desc, sizeof(g->desc));
			}
			break;
		}
		if (off == p->n)
			break;
	}
	g->used = off;
	milter_reader_free(&rd);
}

/* Whole and byte by byte must agree. */
static void
check(const struct pkt *p, int status, const char *desc)
{
	struct got whole, bytes, seven;

	feed(p, 0, &whole);
	feed(p, 1, &bytes);
	feed(p, 7, &seven);
	assert_int_equal(whole.status, status);
	assert_string_equal(whole.desc, desc);
	assert_int_equal(bytes.status, status);
	assert_string_equal(bytes.desc, desc);
	assert_int_equal(seven.status, status);
	assert_string_equal(seven.desc, desc);
	assert_int_equal(whole.used, bytes.used);
}

static void
simple(int cmd, const void *data, size_t n, int status, const char *desc)
{
	struct pkt p = { .n = 0 };
	size_t	at = p_begin(&p, cmd);

	p_bytes(&p, data, n);
	p_end(&p, at);
	check(&p, status, desc);
}

/* ---- encoding ---- */

static void
expect_bytes(const struct buf *b, const void *want, size_t n)
{
	assert_int_equal(b->len, n);
	assert_memory_equal(b->data, want, n);
}

static void
test_encode(void **state)
{
	struct buf b = BUF_INIT;
	const char *mac[] = { "j", "mx.example", "{client_addr}", "192.0.2.1" };
	const char *mail[] = { "<a@b.example>", "SIZE=10" };

	milter_put_optneg(&b, 6, MILTER_MTA_ACTIONS, 0x1fffff);
	expect_bytes(&b, "\0\0\0\x0dO\0\0\0\x06\0\0\x01\xff\0\x1f\xff\xff", 17);
	buf_reset(&b);
	milter_put_macros(&b, SMFIC_CONNECT, mac, 4);
	expect_bytes(&b, "\0\0\0\x27" "DCj\0mx.example\0{client_addr}\0" "192.0.2.1\0", 43);
	buf_reset(&b);
	milter_put_macros(&b, SMFIC_DATA, NULL, 0);
	expect_bytes(&b, "\0\0\0\x02" "DT", 6);
	buf_reset(&b);
	milter_put_connect(&b, "client.example", SMFIA_INET, 4242, "192.0.2.1");
	expect_bytes(&b, "\0\0\0\x1d" "Cclient.example\0" "4\x10\x92" "192.0.2.1\0", 33);
	buf_reset(&b);
	milter_put_connect(&b, "[2001:db8::1]", SMFIA_INET6, 25, "2001:db8::1");
	expect_bytes(&b, "\0\0\0\x1e" "C[2001:db8::1]\0" "6\0\x19" "2001:db8::1\0", 34);
	buf_reset(&b);
	milter_put_connect(&b, "localhost", SMFIA_UNKNOWN, 0, NULL);
	expect_bytes(&b, "\0\0\0\x0c" "Clocalhost\0U", 16);
	buf_reset(&b);
	milter_put_string(&b, SMFIC_HELO, "client.example");
	expect_bytes(&b, "\0\0\0\x10" "Hclient.example\0", 20);
	buf_reset(&b);
	milter_put_argv(&b, SMFIC_MAIL, mail, 2);
	expect_bytes(&b, "\0\0\0\x17" "M<a@b.example>\0SIZE=10\0", 27);
	buf_reset(&b);
	milter_put_header(&b, "Subject", "hi\n there");
	expect_bytes(&b, "\0\0\0\x13" "LSubject\0hi\n there\0", 23);
	buf_reset(&b);
	milter_put_body(&b, "line\r\n", 6);
	expect_bytes(&b, "\0\0\0\x07" "Bline\r\n", 11);
	buf_reset(&b);
	milter_put_empty(&b, SMFIC_BODYEOB);
	milter_put_empty(&b, SMFIC_QUIT);
	expect_bytes(&b, "\0\0\0\x01" "E" "\0\0\0\x01" "Q", 10);
	buf_free(&b);
}

static void
test_names(void **state)
{
	assert_string_equal(milter_cmd_name(SMFIC_QUIT_NC), "SMFIC_QUIT_NC");
	assert_string_equal(milter_reply_name(SMFIR_ADDRCPT_PAR), "SMFIR_ADDRCPT_PAR");
	assert_null(milter_reply_name('Z'));
	assert_null(milter_cmd_name('z'));
}

/* ---- negotiation ---- */

static void
test_protocol(void **state)
{
	uint32_t v, ev;
	char   *err;

	assert_int_equal(milter_protocol_parse("6", &v, &ev, &err), 0);
	assert_int_equal(v, 6);
	assert_int_equal(ev, 0x1fffff);
	assert_int_equal(milter_np_mask(ev), 0);
	assert_int_equal(milter_protocol_parse("2", &v, &ev, &err), 0);
	assert_int_equal(v, 2);
	assert_int_equal(ev, 0x7f);
	assert_int_equal(milter_np_mask(ev), SMFIP_NOUNKNOWN | SMFIP_NODATA);
	assert_int_equal(milter_protocol_parse("3, no_header_reply", &v, &ev, &err), 0);
	assert_int_equal(v, 3);
	assert_int_equal(ev, 0x1ff);
	assert_int_equal(milter_protocol_parse("4", &v, &ev, &err), 0);
	assert_int_equal(milter_np_mask(ev), 0);
	assert_int_equal(milter_protocol_parse("5", &v, &ev, &err), -1);
	assert_string_equal(err, "bad protocol information: 5");
	free(err);
	assert_int_equal(milter_protocol_parse("6 4", &v, &ev, &err), -1);
	assert_string_equal(err, "bad protocol information: 4");
	free(err);
	assert_int_equal(milter_protocol_parse("no_header_reply", &v, &ev, &err), -1);
	assert_string_equal(err, "no protocol version information");
	free(err);
	assert_int_equal(milter_protocol_parse("", &v, &ev, &err), -1);
	free(err);
	/* a filter of version 2 gets neither UNKNOWN nor DATA; 5 counts as 4 */
	assert_int_equal(milter_np_mask_for(0, 2), SMFIP_NOUNKNOWN | SMFIP_NODATA);
	assert_int_equal(milter_np_mask_for(0, 3), SMFIP_NODATA);
	assert_int_equal(milter_np_mask_for(0, 5), 0);
	assert_int_equal(milter_np_mask_for(0, 6), 0);
}

/* ---- reading and decoding ---- */

static void
test_optneg(void **state)
{
	struct pkt p = { .n = 0 };
	size_t	at = p_begin(&p, SMFIC_OPTNEG);

	p_u32(&p, 6);
	p_u32(&p, SMFIF_ADDHDRS | SMFIF_CHGHDRS);
	p_u32(&p, SMFIP_NR_HDR | SMFIP_NOUNKNOWN);
	p_end(&p, at);
	check(&p, 0, "O v6 a0x11 p0x180");
	/* with macro lists */
	p.n = 0;
	at = p_begin(&p, SMFIC_OPTNEG);
	p_u32(&p, 6);
	p_u32(&p, 0x1ff);
	p_u32(&p, 0);
	p_u32(&p, SMFIM_CONNECT);
	p_str(&p, "j {client_addr}");
	p_u32(&p, 99);
	p_str(&p, "x");
	p_end(&p, at);
	check(&p, 0, "O v6 a0x1ff p0 [0:j {client_addr}] [99:x]");
	/* too short, a list without its NUL */
	simple(SMFIC_OPTNEG, "\0\0\0\6\0\0", 6, 2, "input packet too short for network long");
	p.n = 0;
	at = p_begin(&p, SMFIC_OPTNEG);
	p_u32(&p, 6);
	p_u32(&p, 0);
	p_u32(&p, 0);
	p_u32(&p, 1);
	p_bytes(&p, "i", 1);
	p_end(&p, at);
	check(&p, 2, "missing string null terminator");
}

static void
test_verdicts(void **state)
{
	static const char codes[] = "acdrt4psf";
	size_t	i;
	char	want[8];

	for (i = 0; codes[i]; i++) {
		snprintf(want, sizeof(want), "%c <> <>", codes[i]);
		simple(codes[i], "", 0, 0, want);
	}
	simple(SMFIR_ACCEPT, "x", 1, 2, "reply SMFIR_ACCEPT was followed by 1 data bytes");
	simple(SMFIR_CONTINUE, "xyz", 3, 2, "reply SMFIR_CONTINUE was followed by 3 data bytes");
	/* an unknown reply code decodes; the client refuses it after its event */
	simple('Z', "abc", 3, 0, "Z <> <>");
}

static void
test_replycode(void **state)
{
	simple(SMFIR_REPLYCODE, "554 5.7.1 Spam message rejected", 32, 0,
	       "y <554 5.7.1 Spam message rejected> <>");
	simple(SMFIR_REPLYCODE, "451 4.7.1 100%% sure, 5% off", 29, 0,
	       "y <451 4.7.1 100% sure, 5 off> <>");
	simple(SMFIR_REPLYCODE, "550-5.7.1 first\r\n550 5.7.1 second", 34, 0,
	       "y <550-5.7.1 first\r\n550 5.7.1 second> <>");
	simple(SMFIR_REPLYCODE, "550 no enhanced code", 21, 0, "y <550 no enhanced code> <>");
	simple(SMFIR_REPLYCODE, "250 2.0.0 ok", 13, 2, "malformed reply: 250 2.0.0 ok");
	simple(SMFIR_REPLYCODE, "550 4.7.1 mixed", 16, 2, "malformed reply: 550 4.7.1 mixed");
	simple(SMFIR_REPLYCODE, "55x 5.7.1 x", 12, 2, "malformed reply: 55x 5.7.1 x");
	simple(SMFIR_REPLYCODE, "550", 3, 2, "malformed reply: 550");
	simple(SMFIR_REPLYCODE, "", 0, 2, "malformed reply: ");
	simple(SMFIR_REPLYCODE, "550/5.7.1", 10, 2, "malformed reply: 550/5.7.1");
}

static void
test_headers(void **state)
{
	simple(SMFIR_ADDHEADER, "X-Spam\0Yes\0", 11, 0, "h <X-Spam> <Yes>");
	simple(SMFIR_ADDHEADER, "X-Spam\0Yes", 10, 2, "missing string null terminator");
	simple(SMFIR_ADDHEADER, "X-Spam\0", 7, 2, "packet too short for string");
	simple(SMFIR_ADDHEADER, "X\0Y\0Z", 5, 2, "left-over data 1 bytes");
	simple(SMFIR_INSHEADER, "\0\0\0\0X-A\0v\0", 10, 0, "i 0 <X-A> <v>");
	simple(SMFIR_INSHEADER, "\0\0\0\3X-A\0v\0", 10, 0, "i 3 <X-A> <v>");
	simple(SMFIR_INSHEADER, "\xff\xff\xff\xfeX-A\0v\0", 10, 2, "bad insert header index: -2");
	simple(SMFIR_INSHEADER, "\0\0\0", 3, 2, "input packet too short for network long");
	simple(SMFIR_CHGHEADER, "\0\0\0\2Subject\0new\0", 16, 0, "m 2 <Subject> <new>");
	simple(SMFIR_CHGHEADER, "\0\0\0\0Subject\0\0", 13, 0, "m 1 <Subject> <>");
	simple(SMFIR_CHGHEADER, "\0\0\0\1\0v\0", 7, 2, "null change header name");
	simple(SMFIR_CHGHEADER, "\x80\0\0\0S\0v\0", 8, 2, "bad change header index: -2147483648");
}

static void
test_envelope(void **state)
{
	simple(SMFIR_CHGFROM, "<new@example>\0", 14, 0, "e <<new@example>> <>");
	simple(SMFIR_CHGFROM, "<new@example>\0SIZE=1\0", 21, 0, "e <<new@example>> <SIZE=1>");
	simple(SMFIR_CHGFROM, "<new@example>\0SIZE=1", 20, 2, "missing string null terminator");
	simple(SMFIR_CHGFROM, "", 0, 2, "packet too short for string");
	simple(SMFIR_ADDRCPT, "<r@example>\0", 12, 0, "+ <<r@example>> <>");
	simple(SMFIR_ADDRCPT, "<r@example>\0x", 13, 2, "left-over data 1 bytes");
	simple(SMFIR_ADDRCPT_PAR, "<r@example>\0NOTIFY=NEVER\0", 25, 0,
	       "2 <<r@example>> <NOTIFY=NEVER>");
	simple(SMFIR_ADDRCPT_PAR, "<r@example>\0", 12, 0, "2 <<r@example>> <>");
	simple(SMFIR_DELRCPT, "<r@example>\0", 12, 0, "- <<r@example>> <>");
	simple(SMFIR_DELRCPT, "<r@example>", 11, 2, "missing string null terminator");
	simple(SMFIR_QUARANTINE, "held for review\0", 16, 0, "q <held for review> <>");
	simple(SMFIR_QUARANTINE, "", 0, 0, "q <> <>");
	simple(SMFIR_REPLBODY, "new body\r\n", 10, 0, "b 10:new body\r\n");
	simple(SMFIR_REPLBODY, "", 0, 0, "b 0:");
	simple(SMFIR_SETSYMLIST, "\0\0\0\1i\0", 6, 0, "l <> <>");
}

static void
test_lengths(void **state)
{
	struct pkt p = { .n = 0 };
	struct got g;

	p_u32(&p, 0);
	p.b[p.n++] = 'c';
	check(&p, 1, "bad packet length: 0");
	p.n = 0;
	p_u32(&p, 0x80000000u);
	check(&p, 1, "bad packet length: -2147483648");
	p.n = 0;
	p_u32(&p, MILTER_PACKET_MAX + 2);
	check(&p, 1, "unreasonable packet length: 4194305 > 4194304");
	/* the largest packet accepted is read */
	p.n = 0;
	p_u32(&p, 1);
	p.b[p.n++] = 'c';
	check(&p, 0, "c <> <>");
	/* a short packet is incomplete, never decoded */
	p.n = 0;
	p_u32(&p, 10);
	p.b[p.n++] = 'h';
	p_bytes(&p, "abc", 3);
	feed(&p, 0, &g);
	assert_int_equal(g.status, 3);
	assert_int_equal(g.used, p.n);
	feed(&p, 1, &g);
	assert_int_equal(g.status, 3);
}

/* Two packets in one read: PACKET stops at the end of the first. */
static void
test_two_packets(void **state)
{
	struct pkt p = { .n = 0 };
	struct milter_reader rd;
	struct milter_reply rep;
	char	why[100];
	const char *w;
	size_t	at, used, off = 0;

	at = p_begin(&p, SMFIR_ADDHEADER);
	p_str(&p, "X-A");
	p_str(&p, "1");
	p_end(&p, at);
	at = p_begin(&p, SMFIR_CONTINUE);
	p_end(&p, at);
	milter_reader_init(&rd);
	assert_int_equal(milter_read(&rd, p.b, p.n, &used, &w), MILTER_READ_PACKET);
	assert_int_equal(used, 11);
	assert_int_equal(milter_decode(&rd, &rep, why, sizeof(why), &w), 0);
	assert_string_equal(rep.name, "X-A");
	assert_string_equal(rep.value, "1");
	off += used;
	assert_int_equal(milter_read(&rd, p.b + off, p.n - off, &used, &w), MILTER_READ_PACKET);
	assert_int_equal(rd.cmd, SMFIR_CONTINUE);
	off += used;
	assert_int_equal(off, p.n);
	/* the reader is ready for a third; nothing given, nothing done */
	assert_int_equal(milter_read(&rd, p.b, 0, &used, &w), MILTER_READ_MORE);
	assert_int_equal(used, 0);
	milter_reader_free(&rd);
}

/* Every truncation of a valid CHGHEADER packet is "more", never a packet. */
static void
test_truncations(void **state)
{
	struct pkt p = { .n = 0 };
	size_t	at = p_begin(&p, SMFIR_CHGHEADER), cut;
	struct milter_reader rd;
	size_t	used;
	const char *w;

	p_u32(&p, 1);
	p_str(&p, "Subject");
	p_str(&p, "x");
	p_end(&p, at);
	for (cut = 0; cut < p.n; cut++) {
		milter_reader_init(&rd);
		assert_int_equal(milter_read(&rd, p.b, cut, &used, &w), MILTER_READ_MORE);
		assert_int_equal(used, cut);
		milter_reader_free(&rd);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_protocol),
		cmocka_unit_test(test_optneg),
		cmocka_unit_test(test_verdicts),
		cmocka_unit_test(test_replycode),
		cmocka_unit_test(test_headers),
		cmocka_unit_test(test_envelope),
		cmocka_unit_test(test_lengths),
		cmocka_unit_test(test_two_packets),
		cmocka_unit_test(test_truncations),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
