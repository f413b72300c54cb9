/*
 * netdef: the defaults Postfix computes from the host: the host name and
 * mynetworks (from mynetworks_style and the inet_interfaces addresses).
 *
 * mynetworks lists IPv4 networks before IPv6 ones, each IPv6 network in
 * brackets ("[fd00::]/64"), separated by single spaces, as postconf prints.
 */
#include "conf/conf_impl.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/xalloc.h"

char *
conf_host_name(void)
{
	char	name[HOST_NAME_MAX + 2];

	if (gethostname(name, sizeof(name) - 1) < 0 || name[0] == 0)
		return xstrdup("localhost");
	name[sizeof(name) - 1] = 0;
	return xstrdup(name);
}

/* One local address: family, bytes, and the interface's prefix length. */
struct net_addr {
	int	family;
	unsigned char a[16];
	int	prefix;		/* -1 = unknown */
};

struct net_list {
	struct net_addr *v;
	size_t	n;
};

static void
net_add(struct net_list *l, int family, const void *addr, int prefix)
{
	struct net_addr *na;
	size_t	alen = family == AF_INET ? 4 : 16;

	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].family == family && memcmp(l->v[i].a, addr, alen) == 0)
			return;
	l->v = xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
	na = &l->v[l->n++];
	memset(na, 0, sizeof(*na));
	na->family = family;
	memcpy(na->a, addr, alen);
	na->prefix = prefix;
}

static int
net_mask_len(const struct sockaddr *mask)
{
	const unsigned char *m;
	size_t	len;
	int	bits = 0;

	if (mask == NULL)
		return -1;
	if (mask->sa_family == AF_INET) {
		m = (const unsigned char *) &((const struct sockaddr_in *) (const void *) mask)->sin_addr;
		len = 4;
	} else if (mask->sa_family == AF_INET6) {
		m = ((const struct sockaddr_in6 *) (const void *) mask)->sin6_addr.s6_addr;
		len = 16;
	} else {
		return -1;
	}
	for (size_t i = 0; i < len; i++)
		for (int b = 7; b >= 0; b--)
			if (m[i] & (1 << b))
				bits++;
	return bits;
}

static const void *
net_sa_addr(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return &((const struct sockaddr_in *) (const void *) sa)->sin_addr;
	return ((const struct sockaddr_in6 *) (const void *) sa)->sin6_addr.s6_addr;
}

/* The prefix length of the local interface that holds addr, or -1. */
static int
net_iface_prefix(const struct ifaddrs *ifs, int family, const void *addr)
{
	for (const struct ifaddrs *ifa = ifs; ifa; ifa = ifa->ifa_next) {
		if (ifa->ifa_addr == NULL || ifa->ifa_addr->sa_family != family)
			continue;
		if (memcmp(net_sa_addr(ifa->ifa_addr), addr, family == AF_INET ? 4 : 16) == 0)
			return net_mask_len(ifa->ifa_netmask);
	}
	return -1;
}

static int
net_is_loopback(int family, const unsigned char *a)
{
	static const unsigned char v6lo[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (family == AF_INET)
		return a[0] == 127;
	return memcmp(a, v6lo, 16) == 0 || (memcmp(a, mapped, 12) == 0 && a[12] == 127);
}

/* Resolve one inet_interfaces entry into l (only the families wanted). */
static int
net_resolve(const char *name, int want4, int want6, const struct ifaddrs *ifs,
	    struct net_list *l, char **err_r)
{
	struct addrinfo hints, *res, *ai;
	size_t	len = strlen(name);
	char   *host;
	int	rc;

	if (len >= 2 && name[0] == '[' && name[len - 1] == ']')
		host = xstrndup(name + 1, len - 2);
	else
		host = xstrdup(name);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = want4 && want6 ? AF_UNSPEC : want4 ? AF_INET : AF_INET6;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, NULL, &hints, &res);
	if (rc != 0) {
		*err_r = xasprintf("inet_interfaces: %s: %s", host, gai_strerror(rc));
		free(host);
		return -1;
	}
	for (int pass = 0; pass < 2; pass++) {
		int	family = pass == 0 ? AF_INET : AF_INET6;

		for (ai = res; ai; ai = ai->ai_next) {
			const void *a;

			if (ai->ai_family != family)
				continue;
			a = net_sa_addr(ai->ai_addr);
			net_add(l, family, a, net_iface_prefix(ifs, family, a));
		}
	}
	freeaddrinfo(res);
	free(host);
	return 0;
}

static int
net_wanted_protocols(const char *protocols, int *want4, int *want6, char **err_r)
{
	char  **v;
	char   *err;

	*want4 = *want6 = 0;
	if ((v = conf_split_list(protocols, NULL, &err)) == NULL) {
		*err_r = err;
		return -1;
	}
	for (char **p = v; *p; p++) {
		if (strcasecmp(*p, "all") == 0) {
			*want4 = *want6 = 1;
		} else if (strcasecmp(*p, "ipv4") == 0) {
			*want4 = 1;
		} else if (strcasecmp(*p, "ipv6") == 0) {
			*want6 = 1;
		} else {
			*err_r = xasprintf("unknown inet_protocols value \"%s\"", *p);
			conf_list_free(v);
			return -1;
		}
	}
	conf_list_free(v);
	return 0;
}

static void
net_format(struct buf *out, const struct net_addr *na, int prefix)
{
	unsigned char a[16];
	char	text[INET6_ADDRSTRLEN];
	int	bytes = na->family == AF_INET ? 4 : 16;

	memcpy(a, na->a, sizeof(a));
	for (int i = 0; i < bytes; i++) {
		int	keep = prefix - 8 * i;

		if (keep <= 0)
			a[i] = 0;
		else if (keep < 8)
			a[i] &= (unsigned char) (0xff << (8 - keep));
	}
	inet_ntop(na->family, a, text, sizeof(text));
	if (out->len)
		buf_putc(out, ' ');
	if (na->family == AF_INET)
		buf_printf(out, "%s/%d", text, prefix);
	else
		buf_printf(out, "[%s]/%d", text, prefix);
}

char *
conf_mynetworks(const char *style, const char *interfaces, const char *protocols,
		char **err_r)
{
	enum { STYLE_HOST, STYLE_SUBNET, STYLE_CLASS } st;
	struct net_list l = {NULL, 0};
	struct ifaddrs *ifs = NULL;
	struct buf out = BUF_INIT;
	char  **v = NULL, *res;
	int	want4, want6, ret = -1;

	*err_r = NULL;
	if (strcasecmp(style, "host") == 0)
		st = STYLE_HOST;
	else if (strcasecmp(style, "subnet") == 0)
		st = STYLE_SUBNET;
	else if (strcasecmp(style, "class") == 0)
		st = STYLE_CLASS;
	else {
		*err_r = xasprintf("unknown mynetworks mask style value \"%s\"", style);
		return NULL;
	}
	if (net_wanted_protocols(protocols, &want4, &want6, err_r) < 0)
		return NULL;
	if (getifaddrs(&ifs) < 0)
		ifs = NULL;
	if ((v = conf_split_list(interfaces, NULL, err_r)) == NULL)
		goto out;
	for (char **p = v; *p; p++) {
		if (strcasecmp(*p, "all") == 0 || strcasecmp(*p, "loopback-only") == 0) {
			int	lo_only = strcasecmp(*p, "loopback-only") == 0;

			for (int pass = 0; pass < 2; pass++) {
				int	family = pass == 0 ? AF_INET : AF_INET6;

				if ((family == AF_INET && !want4) || (family == AF_INET6 && !want6))
					continue;
				for (struct ifaddrs *ifa = ifs; ifa; ifa = ifa->ifa_next) {
					const void *a;

					if (ifa->ifa_addr == NULL || ifa->ifa_addr->sa_family != family)
						continue;
					a = net_sa_addr(ifa->ifa_addr);
					if (lo_only && !net_is_loopback(family, a))
						continue;
					net_add(&l, family, a, net_mask_len(ifa->ifa_netmask));
				}
			}
		} else if (net_resolve(*p, want4, want6, ifs, &l, err_r) < 0) {
			goto out;
		}
	}
	/* IPv4 first, as Postfix lists them. */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < l.n; i++) {
			const struct net_addr *na = &l.v[i];
			int	full = na->family == AF_INET ? 32 : 128;
			int	prefix = full;

			if ((pass == 0) != (na->family == AF_INET))
				continue;
			if (st != STYLE_HOST && na->prefix >= 0)
				prefix = na->prefix;
			if (st == STYLE_CLASS && na->family == AF_INET)
				prefix = na->a[0] < 128 ? 8 : na->a[0] < 192 ? 16 : na->a[0] < 224 ? 24 : 32;
			net_format(&out, na, prefix);
		}
	}
	ret = 0;
out:
	conf_list_free(v);
	if (ifs)
		freeifaddrs(ifs);
	free(l.v);
	res = ret < 0 ? NULL : xstrdup(buf_str(&out));
	buf_free(&out);
	return res;
}

int
conf_host_is_loopback(const char *host)
{
	struct addrinfo hints, *res, *ai;
	size_t	len = strlen(host);
	char   *h;
	int	lo = 1;

	if (strcasecmp(host, "loopback-only") == 0 || strcasecmp(host, "localhost") == 0)
		return 1;
	if (strcasecmp(host, "all") == 0)
		return 0;
	if (len >= 2 && host[0] == '[' && host[len - 1] == ']')
		h = xstrndup(host + 1, len - 2);
	else
		h = xstrdup(host);
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(h, NULL, &hints, &res) != 0) {
		free(h);
		return 0;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		if (!net_is_loopback(ai->ai_family, net_sa_addr(ai->ai_addr)))
			lo = 0;
	}
	freeaddrinfo(res);
	free(h);
	return lo;
}

char *
conf_endpoint_name(const char *host, const char *port)
{
	struct addrinfo hints, *res;
	char	addr[NI_MAXHOST];
	char   *name, *p;

	if (host == NULL)
		return xstrdup(port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, NULL, &hints, &res) == 0) {
		int	rc = getnameinfo(res->ai_addr, res->ai_addrlen, addr, sizeof(addr), NULL, 0,
				 NI_NUMERICHOST);

		freeaddrinfo(res);
		if (rc == 0)
			return xasprintf("[%s]:%s", addr, port);
	}
	name = xasprintf("[%s]:%s", host, port);
	for (p = name; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char) (*p - 'A' + 'a');
	return name;
}
