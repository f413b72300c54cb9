/*
 * peername: the client's host name, as Postfix's smtpd_peername_lookup finds
 * it (PTR, then a forward lookup that must give the address back), without
 * ever blocking an event loop.
 *
 * /etc/hosts is read once and answers first, both ways.  Loopback addresses
 * that /etc/hosts does not name go to DNS only when a name server in
 * /etc/resolv.conf is itself on loopback (a local resolver, or the test DNS
 * server); no other server can know them (RFC 6761), and asking one would
 * only delay every local client.  Everything else is asked of the resolvers
 * in /etc/resolv.conf through libevent's evdns, with a 5 s timeout and 2
 * attempts.  Any failure gives "unknown", as in Postfix's logs
 * ("unknown[192.0.2.1]"), and a status as Postfix's SMTPD_PEER_CODE_*
 * (policy/restrict.h's enum restrict_peer): OK; TEMP when a lookup timed out
 * or the server failed; PERM when the address has no (valid) PTR name;
 * FORGED (the name only) when the PTR name does not resolve back to the
 * address.
 */
#ifndef MXGATE_NET_PEERNAME_H
#define MXGATE_NET_PEERNAME_H

#include <sys/socket.h>

struct event_base;
struct evdns_base;
struct peername_req;

/*
 * Called once with the verified name or "unknown", and the reverse name: the
 * PTR name when it is a valid host name, whether or not the forward lookup
 * confirmed it (Postfix's reverse_client_name), else "unknown".  The strings
 * are only valid during the call.
 */
typedef void (*peername_cb)(void *ctx, const char *name, const char *reverse,
			    int name_status, int reverse_status);

/* A DNS resolver on base (one per worker; NULL when none can be set up). */
struct evdns_base *peername_dns_new(struct event_base *base);
void peername_dns_free(struct evdns_base **dnsp);

/*
 * Start a lookup for sa.  When the answer is known at once, cb runs before
 * this returns and the result is NULL; otherwise cb runs later on dns's loop
 * and the returned request may be cancelled until then (cb then never runs).
 */
struct peername_req *peername_lookup(struct evdns_base *dns, const struct sockaddr *sa,
				     peername_cb cb, void *ctx);
void peername_cancel(struct peername_req *req);

#endif
