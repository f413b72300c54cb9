#include "net/peername.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "log/log.h"
#include "policy/restrict.h"
#include "util/xalloc.h"

struct peername_host {
	struct sockaddr_storage addr;
	char   *name;
};

static struct peername_host *peername_hosts;
static size_t peername_nhosts;
static pthread_once_t peername_once = PTHREAD_ONCE_INIT;

struct peername_req {
	struct evdns_base *dns;
	struct sockaddr_storage sa;
	peername_cb cb;
	void   *ctx;
	struct evdns_request *dreq;
	char   *name;		/* PTR answer, waiting for forward confirmation */
	int	name_status, reverse_status;
	int	cancelled;	/* evdns still calls back (DNS_ERR_CANCEL): free then */
};

static int
peername_parse_addr(const char *text, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, text, &((struct sockaddr_in *)ss)->sin_addr) == 1) {
		ss->ss_family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, text, &((struct sockaddr_in6 *)ss)->sin6_addr) == 1) {
		ss->ss_family = AF_INET6;
		return 0;
	}
	return -1;
}

static int
peername_same_addr(const struct sockaddr_storage *a, const struct sockaddr *b)
{
	if (a->ss_family != b->sa_family)
		return 0;
	if (a->ss_family == AF_INET)
		return memcmp(&((const struct sockaddr_in *)a)->sin_addr,
			      &((const struct sockaddr_in *)b)->sin_addr, 4) == 0;
	return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		      &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
}

static void
peername_load_hosts(void)
{
	FILE *fp = fopen("/etc/hosts", "r");
	char line[1024];

	if (fp == NULL)
		return;
	while (fgets(line, sizeof(line), fp) != NULL) {
		char *save, *addr, *name, *hash = strchr(line, '#');
		struct sockaddr_storage ss;

		if (hash)
			*hash = '\0';
		if ((addr = strtok_r(line, " \t\r\n", &save)) == NULL
		    || (name = strtok_r(NULL, " \t\r\n", &save)) == NULL
		    || peername_parse_addr(addr, &ss) < 0)
			continue;
		peername_hosts = xrealloc(peername_hosts,
					  (peername_nhosts + 1) * sizeof(*peername_hosts));
		peername_hosts[peername_nhosts].addr = ss;
		peername_hosts[peername_nhosts].name = xstrdup(name);
		peername_nhosts++;
	}
	fclose(fp);
}

static const char *
peername_from_hosts(const struct sockaddr *sa)
{
	size_t i;

	for (i = 0; i < peername_nhosts; i++)
		if (peername_same_addr(&peername_hosts[i].addr, sa))
			return peername_hosts[i].name;
	return NULL;
}

static int
peername_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;

		if (IN6_IS_ADDR_LOOPBACK(a))
			return 1;
		return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
	}
	return 1;
}

struct evdns_base *
peername_dns_new(struct event_base *base)
{
	struct evdns_base *dns;

	pthread_once(&peername_once, peername_load_hosts);
	dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS
			     | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (dns == NULL)
		dns = evdns_base_new(base, 0);
	if (dns != NULL) {
		evdns_base_set_option(dns, "timeout:", "5");
		evdns_base_set_option(dns, "attempts:", "2");
	}
	return dns;
}

void
peername_dns_free(struct evdns_base **dnsp)
{
	if (*dnsp != NULL)
		evdns_base_free(*dnsp, 1);
	*dnsp = NULL;
}

static void
peername_finish(struct peername_req *req, const char *name)
{
	if (!req->cancelled)
		req->cb(req->ctx, name, req->name ? req->name : "unknown", req->name_status,
			req->reverse_status);
	free(req->name);
	free(req);
}

/* Postfix's TEMP_AI_ERROR(): a failure that may go away. */
static int
peername_temp(int result)
{
	return result != DNS_ERR_NONE && result != DNS_ERR_NOTEXIST && result != DNS_ERR_FORMAT
	       && result != DNS_ERR_REFUSED && result != DNS_ERR_NOTIMPL;
}

/* Is a name server in resolv.conf on loopback (so that it may know 127.x names)? */
static int
peername_local_server(struct evdns_base *dns)
{
	int	n = evdns_base_count_nameservers(dns);

	for (int i = 0; i < n; i++) {
		struct sockaddr_storage ss;

		if (evdns_base_get_nameserver_addr(dns, i, (struct sockaddr *)&ss, sizeof(ss)) > 0
		    && peername_is_loopback((struct sockaddr *)&ss))
			return 1;
	}
	return 0;
}

static void
peername_forward_cb(int result, char type, int count, int ttl, void *addresses, void *arg)
{
	struct peername_req *req = arg;
	char	addr[INET6_ADDRSTRLEN];
	int i, ok = 0;

	(void)ttl;
	req->dreq = NULL;
	if (req->cancelled) {
		peername_finish(req, NULL);
		return;
	}
	req->name_status = peername_temp(result) ? RESTRICT_PEER_TEMP : RESTRICT_PEER_FORGED;
	if (req->sa.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&req->sa)->sin_addr, addr, sizeof(addr));
	else
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&req->sa)->sin6_addr, addr,
			  sizeof(addr));
	if (result != DNS_ERR_NONE)
		/* Postfix's words, which are getaddrinfo()'s */
		msg_warn("hostname %s does not resolve to address %s: %s", req->name, addr,
			 result == DNS_ERR_NOTEXIST ? "Name or service not known"
			 : result == DNS_ERR_NODATA ? "No address associated with hostname"
			 : peername_temp(result) ? "Temporary failure in name resolution"
			 : "Non-recoverable failure in name resolution");
	if (result == DNS_ERR_NONE) {
		for (i = 0; i < count && !ok; i++) {
			if (type == DNS_IPv4_A && req->sa.ss_family == AF_INET)
				ok = memcmp((const struct in_addr *)addresses + i,
					    &((struct sockaddr_in *)&req->sa)->sin_addr, 4) == 0;
			else if (type == DNS_IPv6_AAAA && req->sa.ss_family == AF_INET6)
				ok = memcmp((const struct in6_addr *)addresses + i,
					    &((struct sockaddr_in6 *)&req->sa)->sin6_addr, 16) == 0;
		}
		if (!ok)
			msg_warn("hostname %s does not resolve to address %s", req->name, addr);
	}
	if (ok)
		req->name_status = RESTRICT_PEER_OK;
	peername_finish(req, ok ? req->name : "unknown");
}

static int
peername_valid_name(const char *name)
{
	const char *p;

	struct sockaddr_storage ss;

	/* Postfix refuses a PTR name that is itself an address ("numeric hostname"). */
	if (*name == '\0' || strlen(name) > 255 || peername_parse_addr(name, &ss) == 0)
		return 0;
	for (p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.' && *p != '_')
			return 0;
	return 1;
}

static void
peername_ptr_cb(int result, char type, int count, int ttl, void *addresses, void *arg)
{
	struct peername_req *req = arg;
	const char *name;

	(void)ttl;
	req->dreq = NULL;
	if (req->cancelled || result != DNS_ERR_NONE || type != DNS_PTR || count < 1
	    || !peername_valid_name(name = ((char **)addresses)[0])) {
		req->name_status = req->reverse_status =
			peername_temp(result) ? RESTRICT_PEER_TEMP : RESTRICT_PEER_PERM;
		peername_finish(req, "unknown");
		return;
	}
	req->name = xstrdup(name);
	req->reverse_status = RESTRICT_PEER_OK;
	if (req->sa.ss_family == AF_INET)
		req->dreq = evdns_base_resolve_ipv4(req->dns, req->name, DNS_QUERY_NO_SEARCH,
						    peername_forward_cb, req);
	else
		req->dreq = evdns_base_resolve_ipv6(req->dns, req->name, DNS_QUERY_NO_SEARCH,
						    peername_forward_cb, req);
	if (req->dreq == NULL) {
		req->name_status = RESTRICT_PEER_TEMP;
		peername_finish(req, "unknown");
	}
}

struct peername_req *
peername_lookup(struct evdns_base *dns, const struct sockaddr *sa, peername_cb cb, void *ctx)
{
	struct peername_req *req;
	const char *name;

	if ((name = peername_from_hosts(sa)) != NULL) {
		cb(ctx, name, name, RESTRICT_PEER_OK, RESTRICT_PEER_OK);
		return NULL;
	}
	if (dns == NULL || (peername_is_loopback(sa) && !peername_local_server(dns))) {
		cb(ctx, "unknown", "unknown", RESTRICT_PEER_PERM, RESTRICT_PEER_PERM);
		return NULL;
	}
	req = xcalloc(1, sizeof(*req));
	req->dns = dns;
	req->cb = cb;
	req->ctx = ctx;
	memcpy(&req->sa, sa, sa->sa_family == AF_INET ? sizeof(struct sockaddr_in)
	       : sizeof(struct sockaddr_in6));
	if (sa->sa_family == AF_INET)
		req->dreq = evdns_base_resolve_reverse(dns,
						       &((const struct sockaddr_in *)sa)->sin_addr,
						       DNS_QUERY_NO_SEARCH, peername_ptr_cb, req);
	else
		req->dreq = evdns_base_resolve_reverse_ipv6(dns,
							    &((const struct sockaddr_in6 *)sa)->sin6_addr,
							    DNS_QUERY_NO_SEARCH, peername_ptr_cb, req);
	if (req->dreq == NULL) {
		free(req);
		cb(ctx, "unknown", "unknown", RESTRICT_PEER_TEMP, RESTRICT_PEER_TEMP);
		return NULL;
	}
	return req;
}

void
peername_cancel(struct peername_req *req)
{
	if (req == NULL)
		return;
	req->cancelled = 1;
	if (req->dreq != NULL)
		evdns_cancel_request(req->dns, req->dreq);
}
