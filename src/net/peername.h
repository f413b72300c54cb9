/*
 * peername: the client's host name, as Postfix's smtpd_peername_lookup finds
 * it (PTR, then a forward lookup that must give the address back), without
 * ever blocking an event loop.
 *
 * /etc/hosts is read once and answers first, both ways.  Loopback addresses
 * that /etc/hosts does not name are "unknown" at once: they never go to DNS.
 * Everything else is asked of the resolvers in /etc/resolv.conf through
 * libevent's evdns, with a 5 s timeout and 2 attempts.  Any failure gives
 * "unknown", as in Postfix's logs ("unknown[192.0.2.1]").
 */
#ifndef MXGATE_NET_PEERNAME_H
#define MXGATE_NET_PEERNAME_H

#include <sys/socket.h>

struct worker;
struct peername_req;

/* Called once with the verified name or "unknown"; the string is only valid during the call. */
typedef void (*peername_cb)(void *ctx, const char *name);

/* Set up the worker's DNS resolver (w->dns).  Call once per worker, on any thread. */
void peername_worker_init(struct worker *w);
void peername_worker_free(struct worker *w);

/*
 * Start a lookup for sa.  When the answer is known at once, cb runs before
 * this returns and the result is NULL; otherwise cb runs later on w's loop
 * and the returned request may be cancelled until then (cb then never runs).
 */
struct peername_req *peername_lookup(struct worker *w, const struct sockaddr *sa, peername_cb cb,
				     void *ctx);
void peername_cancel(struct peername_req *req);

#endif
