/* fakedns: see fakedns.h. */
#include "fakedns.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/dns.h"
#include "util/loop.h"
#include "util/xalloc.h"

struct fakerec {
	char   *name;
	int	type;
	char   *data;
};

struct fakedns {
	struct dns_client client;	/* first */
	struct loop *loop;
	struct fakerec *recs;
	size_t	nrecs;
	struct fakerec *asked;
	size_t	nasked;
};

struct dns_query {
	struct fakedns *d;
	char   *name;
	int	type;
	dns_cb *cb;
	void   *ctx;
	int	cancelled;
};

static int
type_code(const char *t)
{
	static const struct { const char *n; int t; } map[] = {
		{ "A", DNS_T_A }, { "NS", DNS_T_NS }, { "CNAME", DNS_T_CNAME }, { "PTR", DNS_T_PTR },
		{ "MX", DNS_T_MX }, { "TXT", DNS_T_TXT }, { "AAAA", DNS_T_AAAA },
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcasecmp(map[i].n, t) == 0)
			return map[i].t;
	return -1;
}

static void
add_rr(struct dns_answer *a, int type, const char *data)
{
	struct dns_rr *rr;
	unsigned char bin[16];

	a->rr = xrealloc(a->rr, (a->nrr + 1) * sizeof(*a->rr));
	rr = &a->rr[a->nrr++];
	memset(rr, 0, sizeof(*rr));
	rr->type = (uint16_t)type;
	rr->ttl = 60;
	if (type == DNS_T_A || type == DNS_T_AAAA) {
		int	af = type == DNS_T_A ? AF_INET : AF_INET6;

		rr->len = type == DNS_T_A ? 4 : 16;
		if (inet_pton(af, data, bin) != 1)
			memset(bin, 0, sizeof(bin));
		rr->data = xmalloc(rr->len + 1);
		memcpy(rr->data, bin, rr->len);
		rr->data[rr->len] = '\0';
		return;
	}
	if (type == DNS_T_MX) {
		rr->pref = (uint16_t)atoi(data);
		data = strchr(data, ' ') ? strchr(data, ' ') + 1 : "";
	}
	rr->data = xstrdup(data);
	rr->len = strlen(data);
}

static void
answer(void *arg)
{
	struct dns_query *q = arg;
	struct fakedns *d = q->d;
	struct dns_answer a = { .status = DNS_NOTFOUND };
	bool	named = false;

	for (size_t i = 0; i < d->nrecs && !q->cancelled; i++) {
		const struct fakerec *r = &d->recs[i];

		if (strcasecmp(r->name, q->name) != 0)
			continue;
		named = true;
		if (r->type != q->type)
			continue;
		if (strcmp(r->data, "RETRY") == 0 || strcmp(r->data, "FAIL") == 0
		    || strcmp(r->data, "INVAL") == 0 || strcmp(r->data, "NULLMX") == 0) {
			a.status = r->data[0] == 'R' ? DNS_RETRY : r->data[0] == 'F' ? DNS_FAIL
				   : r->data[0] == 'I' ? DNS_INVAL : DNS_NULLMX;
			a.error = xstrdup(r->data);
			break;
		}
		a.status = DNS_OK;
		add_rr(&a, r->type, r->data);
	}
	if (a.status == DNS_NOTFOUND && named)
		a.nodata = true;
	if (!q->cancelled)
		q->cb(q->ctx, &a);
	dns_answer_free(&a);
	free(q->name);
	free(q);
}

static struct dns_query *
fake_query(struct dns_client *c, const char *name, int type, dns_cb *cb, void *ctx)
{
	struct fakedns *d = (struct fakedns *)c;
	struct dns_query *q = xcalloc(1, sizeof(*q));

	d->asked = xrealloc(d->asked, (d->nasked + 1) * sizeof(*d->asked));
	d->asked[d->nasked].name = xstrdup(name);
	d->asked[d->nasked].type = type;
	d->asked[d->nasked++].data = NULL;
	q->d = d;
	q->name = xstrdup(name);
	q->type = type;
	q->cb = cb;
	q->ctx = ctx;
	loop_post(d->loop, answer, q);
	return q;
}

static void
fake_cancel(struct dns_query *q)
{
	q->cancelled = 1;
}

static const struct dns_client_ops fake_ops = { fake_query, fake_cancel };

struct fakedns *
fakedns_new(struct loop *l, const char *const *records)
{
	struct fakedns *d = xcalloc(1, sizeof(*d));

	d->client.ops = &fake_ops;
	d->loop = l;
	for (; records && *records; records++) {
		char	name[256], type[16];
		int	n = 0;

		if (sscanf(*records, "%255s %15s %n", name, type, &n) < 2 || type_code(type) < 0) {
			fprintf(stderr, "fakedns: bad record \"%s\"\n", *records);
			abort();
		}
		d->recs = xrealloc(d->recs, (d->nrecs + 1) * sizeof(*d->recs));
		d->recs[d->nrecs].name = xstrdup(name);
		d->recs[d->nrecs].type = type_code(type);
		d->recs[d->nrecs++].data = xstrdup(*records + n);
	}
	return d;
}

struct dns_client *
fakedns_client(struct fakedns *d)
{
	return &d->client;
}

size_t
fakedns_count(const struct fakedns *d, const char *name, int type)
{
	size_t	n = 0;

	for (size_t i = 0; i < d->nasked; i++)
		if ((name == NULL || strcasecmp(d->asked[i].name, name) == 0)
		    && (type == 0 || d->asked[i].type == type))
			n++;
	return n;
}

void
fakedns_free(struct fakedns **dp)
{
	struct fakedns *d = *dp;

	if (d == NULL)
		return;
	for (size_t i = 0; i < d->nrecs; i++) {
		free(d->recs[i].name);
		free(d->recs[i].data);
	}
	for (size_t i = 0; i < d->nasked; i++)
		free(d->asked[i].name);
	free(d->recs);
	free(d->asked);
	free(d);
	*dp = NULL;
}
