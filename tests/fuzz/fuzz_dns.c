/*
 * libFuzzer target for src/util/dns.c's dns_parse_reply(), the parser of
 * untrusted name server replies.  Input: byte 0 picks the type asked (A,
 * AAAA, MX, NS, PTR, TXT, CNAME, SRV), byte 1 picks the name asked
 * ("example.test" or the root), the rest is the reply; the id asked is the
 * reply's own, so the fuzzer reaches past the header.
 *
 * Checks: no crash, no read outside the reply (ASan: the reply is an exact
 * copy), a return of -1, 0 or 1 only, a status in range, records only with
 * DNS_OK and never more than DNS_RR_LIMIT, every name and TXT record
 * NUL-terminated at its length, names in lower case with no control or
 * space byte, addresses 4 or 16 bytes, and dns_answer_copy() giving the same.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_split.h"
#include "util/dns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const int fz_types[] = {
	DNS_T_A, DNS_T_AAAA, DNS_T_MX, DNS_T_NS, DNS_T_PTR, DNS_T_TXT, DNS_T_CNAME, 33,
};

static void
check_answer(const struct dns_answer *a)
{
	size_t i, j;

	FZ_CHECK(a->status <= DNS_NULLMX);
	FZ_CHECK(a->nrr <= DNS_RR_LIMIT);
	FZ_CHECK(a->status == DNS_OK ? a->nrr > 0 : a->nrr == 0);
	FZ_CHECK(!a->truncated || a->nrr == DNS_RR_LIMIT);
	FZ_CHECK(a->cname == NULL || a->status == DNS_NOTFOUND);
	for (i = 0; i < a->nrr; i++) {
		const struct dns_rr *rr = &a->rr[i];

		FZ_CHECK(rr->data[rr->len] == '\0');
		switch (rr->type) {
		case DNS_T_A:
			FZ_CHECK(rr->len == 4);
			break;
		case DNS_T_AAAA:
			FZ_CHECK(rr->len == 16);
			break;
		case DNS_T_MX:
		case DNS_T_NS:
		case DNS_T_PTR:
		case DNS_T_CNAME:
			FZ_CHECK(rr->len > 0 && rr->len < DNS_NAME_MAX && strlen(rr->data) == rr->len);
			for (j = 0; j < rr->len; j++) {
				unsigned char c = (unsigned char)rr->data[j];

				FZ_CHECK(c > ' ' && c < 0x7f && !(c >= 'A' && c <= 'Z'));
			}
			break;
		case DNS_T_TXT:
			FZ_CHECK(strlen(rr->data) == rr->len && rr->len <= 255);
			for (j = 0; j < rr->len; j++)
				FZ_CHECK((unsigned char)rr->data[j] >= ' '
					 && (unsigned char)rr->data[j] < 0x7f);
			break;
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dns_answer a, c;
	unsigned char *reply;
	const char *name;
	uint16_t id;
	int type, ret;
	size_t len, i;

	if (size < 2)
		return 0;
	type = fz_types[data[0] % (sizeof(fz_types) / sizeof(fz_types[0]))];
	name = data[1] & 1 ? "." : "example.test";
	len = size - 2;
	reply = malloc(len ? len : 1);
	memcpy(reply, data + 2, len);
	id = len >= 2 ? (uint16_t)(reply[0] << 8 | reply[1]) : 0;
	ret = dns_parse_reply(reply, len, id, name, type, &a);
	FZ_CHECK(ret >= -1 && ret <= 1);
	if (ret == 1) {
		check_answer(&a);
		dns_answer_copy(&c, &a);
		FZ_CHECK(c.status == a.status && c.nrr == a.nrr);
		for (i = 0; i < a.nrr; i++)
			FZ_CHECK(c.rr[i].len == a.rr[i].len
				 && memcmp(c.rr[i].data, a.rr[i].data, a.rr[i].len) == 0);
		dns_answer_free(&c);
	} else {
		FZ_CHECK(a.nrr == 0 && a.error == NULL);
	}
	dns_answer_free(&a);
	free(reply);
	return 0;
}
