/* dns: see dns.h.  (The answer's memory; the wire format comes with the resolver.) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/dns.h"
#include "util/xalloc.h"

void
dns_answer_free(struct dns_answer *a)
{
	for (size_t i = 0; i < a->nrr; i++)
		free(a->rr[i].data);
	free(a->rr);
	free(a->error);
	free(a->cname);
	memset(a, 0, sizeof(*a));
}

void
dns_answer_copy(struct dns_answer *dst, const struct dns_answer *src)
{
	*dst = *src;
	dst->error = src->error ? xstrdup(src->error) : NULL;
	dst->cname = src->cname ? xstrdup(src->cname) : NULL;
	dst->rr = src->nrr ? xcalloc(src->nrr, sizeof(*dst->rr)) : NULL;
	for (size_t i = 0; i < src->nrr; i++) {
		dst->rr[i] = src->rr[i];
		dst->rr[i].data = xmalloc(src->rr[i].len + 1);
		memcpy(dst->rr[i].data, src->rr[i].data, src->rr[i].len);
		dst->rr[i].data[src->rr[i].len] = '\0';
	}
}

const char *
dns_type_name(int type)
{
	static __thread char b[16];

	switch (type) {
	case DNS_T_A: return "A";
	case DNS_T_NS: return "NS";
	case DNS_T_CNAME: return "CNAME";
	case DNS_T_PTR: return "PTR";
	case DNS_T_MX: return "MX";
	case DNS_T_TXT: return "TXT";
	case DNS_T_AAAA: return "AAAA";
	}
	snprintf(b, sizeof(b), "TYPE%d", type);
	return b;
}
