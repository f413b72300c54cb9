/*
 * slowdns: LD_PRELOAD shim that makes one host name slow to resolve, as a
 * name server that does not answer makes it, to show that no event loop
 * waits for getaddrinfo() (issue 12: the Redis anvil backend's
 * redis:HOST:PORT with a host name).
 *
 * Environment (read at each call):
 *   MXGATE_SLOW_DNS_NAME=name  the name that is slow; other names, and
 *                              numeric addresses, are resolved at once
 *   MXGATE_SLOW_DNS_MS=N       sleep N ms in each getaddrinfo() of that name
 *   MXGATE_SLOW_DNS_ADDR=a     then resolve a instead (default 127.0.0.1), so
 *                              the name needs no /etc/hosts entry
 *
 * Built without sanitizers (Makefile rule build/shim/%.so); with an ASan
 * binary, preload the ASan runtime first.
 */
#include <dlfcn.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int getaddrinfo_fn(const char *, const char *, const struct addrinfo *,
			   struct addrinfo **);

int
getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
	    struct addrinfo **res)
{
	static getaddrinfo_fn *real;
	const char *name = getenv("MXGATE_SLOW_DNS_NAME");
	const char *ms = getenv("MXGATE_SLOW_DNS_MS");
	const char *addr = getenv("MXGATE_SLOW_DNS_ADDR");

	if (real == NULL)
		real = (getaddrinfo_fn *)dlsym(RTLD_NEXT, "getaddrinfo");
	if (node != NULL && name != NULL && strcmp(node, name) == 0) {
		long n = ms != NULL ? atol(ms) : 0;
		struct timespec ts = { n / 1000, (n % 1000) * 1000000L };

		while (nanosleep(&ts, &ts) != 0)
			;
		node = addr != NULL ? addr : "127.0.0.1";
	}
	return real(node, service, hints, res);
}
