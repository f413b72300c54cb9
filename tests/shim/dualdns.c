/*
 * dualdns: LD_PRELOAD shim (test_anvil_redis): the name in MXGATE_DUAL_DNS_NAME has an IPv4 and
 * an IPv6 loopback address, as "localhost" has with Debian's /etc/hosts:
 * AF_INET gives 127.0.0.1, AF_INET6 ::1, AF_UNSPEC ::1 then 127.0.0.1 (glibc's
 * RFC 6724 order: ::1/128 has precedence 50, IPv4 35).
 */
#include <dlfcn.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef int getaddrinfo_fn(const char *, const char *, const struct addrinfo *,
			   struct addrinfo **);

int
getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
	    struct addrinfo **res)
{
	static getaddrinfo_fn *real;
	const char *name = getenv("MXGATE_DUAL_DNS_NAME");
	struct addrinfo h = hints ? *hints : (struct addrinfo){ 0 }, *a = NULL, *b = NULL, *p;
	int rc;

	if (real == NULL)
		real = (getaddrinfo_fn *)dlsym(RTLD_NEXT, "getaddrinfo");
	if (node == NULL || name == NULL || strcmp(node, name) != 0)
		return real(node, service, hints, res);
	h.ai_flags |= AI_NUMERICHOST;
	if (h.ai_family == AF_INET)
		return real("127.0.0.1", service, &h, res);
	if (h.ai_family == AF_INET6)
		return real("::1", service, &h, res);
	h.ai_family = AF_INET6;
	if ((rc = real("::1", service, &h, &a)) != 0)
		return rc;
	h.ai_family = AF_INET;
	if ((rc = real("127.0.0.1", service, &h, &b)) != 0) {
		freeaddrinfo(a);
		return rc;
	}
	for (p = a; p->ai_next != NULL; p = p->ai_next)
		;
	p->ai_next = b;
	*res = a;
	return 0;
}
