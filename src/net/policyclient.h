/*
 * policyclient: the policy/policy.h client on one worker's libevent loop:
 * Postfix's attr_clnt/auto_clnt for check_policy_service, without ever
 * blocking the loop.
 *
 * Connections: inet:host:port (a host name is resolved with the worker's
 * evdns) and unix:path, connected nonblocking.  One request at a time per
 * connection; a connection is kept for the next request to the same
 * endpoint, so many sessions on one worker share a few connections, and a
 * query finds an idle one before it opens another (at most
 * POLICYCLIENT_MAX_CONNS per endpoint; further queries wait their turn).
 * An idle connection is closed after max_idle, or when the server closes it
 * or sends anything unasked; any connection after max_ttl (a busy one once
 * its answer is in) and after request_limit answers (when not 0).
 *
 * A query: connect (bounded by timeout), send the request, read the answer
 * (each wait for bytes bounded by timeout, as Postfix's stream timeouts).  A
 * failure closes the connection and logs Postfix's warnings ("connect to
 * E: ...", "problem talking to server E: ...", "missing attribute action in
 * input from E", "premature end-of-input on E while reading ..."); after
 * retry_delay (a timer) the query tries again, up to try_limit tries, then
 * the callback gets NULL.  The callback runs on the loop, never inside
 * query(); cancel() before it means it never runs (a connection with that
 * request in flight is closed).
 */
#ifndef MXGATE_NET_POLICYCLIENT_H
#define MXGATE_NET_POLICYCLIENT_H

struct event_base;
struct evdns_base;
struct policy_client;

#define POLICYCLIENT_MAX_CONNS 64

/* dns may be NULL (then only numeric hosts and "localhost" connect). */
struct policy_client *policyclient_new(struct event_base *base, struct evdns_base *dns);
/* Closes every connection; queries still pending never get their callback. */
void	policyclient_free(struct policy_client **pcp);

#endif
