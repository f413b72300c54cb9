/*
 * dnsq: one query through net/resolver on a real loop, for the system tests
 * (tests/system/test_resolver.py).
 *
 *   dnsq [-f RESOLV_CONF] [-c MS] NAME TYPE
 *
 * TYPE is A, AAAA, MX, NS, PTR, TXT, CNAME or a number.  Prints
 *   status OK|NOTFOUND|RETRY|FAIL|INVAL|NULLMX
 *   nodata 0|1
 *   truncated 0|1
 *   rcode N
 *   error TEXT|-
 *   rr TYPE DATA         one per record: A/AAAA as text, MX "pref host",
 *                        names and TXT as text, anything else in hex
 *   elapsed MS
 * With -c MS the query is cancelled MS milliseconds after it started; the
 * tool then waits one more second and prints "cancelled" (exit 0), or
 * "callback after cancel" (exit 1) if the callback ran anyway.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "net/evloop.h"
#include "net/resolver.h"
#include "util/dns.h"
#include "util/loop.h"

static struct evloop *dnsq_el;
static struct dns_client *dnsq_client;
static struct dns_query *dnsq_q;
static struct timeval dnsq_start;
static int dnsq_called, dnsq_cancelled;

static const char *const dnsq_status[] = {
	"OK", "NOTFOUND", "RETRY", "FAIL", "INVAL", "NULLMX",
};

static long
dnsq_elapsed(void)
{
	struct timeval now;

	gettimeofday(&now, NULL);
	return (now.tv_sec - dnsq_start.tv_sec) * 1000L + (now.tv_usec - dnsq_start.tv_usec) / 1000;
}

static void
dnsq_cb(void *ctx, const struct dns_answer *a)
{
	char buf[INET6_ADDRSTRLEN];
	size_t i, j;

	(void)ctx;
	dnsq_called = 1;
	dnsq_q = NULL;
	if (dnsq_cancelled) {
		printf("callback after cancel\n");
		evloop_stop(dnsq_el);
		return;
	}
	printf("status %s\nnodata %d\ntruncated %d\nrcode %d\nerror %s\n", dnsq_status[a->status],
	       a->nodata, a->truncated, a->rcode, a->error ? a->error : "-");
	for (i = 0; i < a->nrr; i++) {
		const struct dns_rr *rr = &a->rr[i];

		printf("rr %s ", dns_type_name(rr->type));
		if (rr->type == DNS_T_A || rr->type == DNS_T_AAAA)
			printf("%s", inet_ntop(rr->type == DNS_T_A ? AF_INET : AF_INET6, rr->data, buf,
					       sizeof(buf)));
		else if (rr->type == DNS_T_MX)
			printf("%u %s", rr->pref, rr->data);
		else if (rr->type == DNS_T_NS || rr->type == DNS_T_PTR || rr->type == DNS_T_CNAME
			 || rr->type == DNS_T_TXT)
			printf("%s", rr->data);
		else
			for (j = 0; j < rr->len; j++)
				printf("%02x", (unsigned char)rr->data[j]);
		printf("\n");
	}
	printf("elapsed %ld\n", dnsq_elapsed());
	evloop_stop(dnsq_el);
}

static void
dnsq_do_cancel(void *arg)
{
	(void)arg;
	if (dnsq_q != NULL) {
		dns_cancel(dnsq_client, dnsq_q);
		dnsq_q = NULL;
		dnsq_cancelled = 1;
	}
}

static void
dnsq_stop(void *arg)
{
	(void)arg;
	if (!dnsq_called)
		printf("cancelled\n");
	evloop_stop(dnsq_el);
}

static int
dnsq_type(const char *s)
{
	static const struct { const char *name; int type; } types[] = {
		{"A", DNS_T_A}, {"NS", DNS_T_NS}, {"CNAME", DNS_T_CNAME}, {"PTR", DNS_T_PTR},
		{"MX", DNS_T_MX}, {"TXT", DNS_T_TXT}, {"AAAA", DNS_T_AAAA},
	};
	size_t i;

	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strcasecmp(s, types[i].name) == 0)
			return types[i].type;
	return atoi(s);
}

int
main(int argc, char **argv)
{
	const char *conf = "/etc/resolv.conf";
	long cancel_ms = -1;
	struct loop_timer *t1 = NULL, *t2 = NULL;
	struct loop *loop;
	int i = 1;

	for (; i < argc && argv[i][0] == '-'; i += 2) {
		if (i + 1 >= argc)
			break;
		if (strcmp(argv[i], "-f") == 0)
			conf = argv[i + 1];
		else if (strcmp(argv[i], "-c") == 0)
			cancel_ms = atol(argv[i + 1]);
		else
			break;
	}
	if (argc - i != 2) {
		fprintf(stderr, "usage: dnsq [-f RESOLV_CONF] [-c MS] NAME TYPE\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	dnsq_el = evloop_new();
	loop = evloop_loop(dnsq_el);
	dnsq_client = resolver_new_conf(evloop_base(dnsq_el), loop, conf);
	gettimeofday(&dnsq_start, NULL);
	dnsq_q = dns_query(dnsq_client, argv[i], dnsq_type(argv[i + 1]), dnsq_cb, NULL);
	if (dnsq_called) {
		printf("callback inside dns_query()\n");
		return 1;
	}
	if (cancel_ms >= 0) {
		loop_timer_start(loop, &t1, dnsq_do_cancel, NULL, cancel_ms);
		loop_timer_start(loop, &t2, dnsq_stop, NULL, cancel_ms + 1000);
	}
	evloop_run(dnsq_el);
	loop_timer_free(loop, &t1);
	loop_timer_free(loop, &t2);
	resolver_free(&dnsq_client);
	evloop_free(&dnsq_el);
	return dnsq_cancelled && dnsq_called ? 1 : 0;
}
