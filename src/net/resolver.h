/*
 * resolver: the asynchronous DNS stub resolver of util/dns.h on libevent,
 * one per event loop (worker).  No library beyond libevent: the queries
 * the DNS restrictions need (MX, NS, TXT, ...) are more than evdns asks.
 *
 * Configuration: /etc/resolv.conf, read once by resolver_new(): up to 3
 * "nameserver" lines (IPv4 or IPv6, as glibc's MAXNS), "options timeout:N"
 * (default 5, at most 30) and "attempts:N" (default 2, at most 5), as
 * glibc reads them; no server named means 127.0.0.1.  Names are asked as
 * given, absolute: no search list, no "domain" (Postfix's dns_lookup() sets
 * neither RES_DEFNAMES nor RES_DNSRCH).
 *
 * One query: for each attempt, each server in order, a UDP query from a new
 * connect()ed socket (a kernel-chosen source port, so only that server's
 * datagrams arrive) with a new random id, waiting at most timeout seconds.
 * Then, as glibc's res_send():
 *   - a datagram that is not a reply to this query (dns_parse_reply() 0) is
 *     ignored, and the wait goes on;
 *   - TC: the same query to the same server over TCP (2-byte length prefix,
 *     nonblocking, the same timeout), whose reply is final;
 *   - SERVFAIL, NOTIMP, REFUSED, ICMP "port unreachable", a failing TCP
 *     exchange or the timeout: the next server (then the next attempt); when
 *     none is left, the last rcode's answer (DNS_RETRY), else DNS_RETRY
 *     "timeout" (or, when no try ran out of time, "connection refused" if
 *     a server refused, else "no name server reachable": no route);
 *   - any other reply is the answer.
 * An answer ending in a CNAME with nothing of the type (a->cname) is asked
 * again for the CNAME's target, at most RESOLVER_CNAME_MAX times, then
 * DNS_NOTFOUND "Name server loop for NAME" (as Postfix).
 *
 * Bound: a query's callback runs at most
 *   timeout * (attempts * nservers + 1) seconds
 * after dns_query() (the +1 is a TCP exchange), whatever the servers do: an
 * overall timer ends it with DNS_RETRY "timeout", CNAME re-asks included.
 *
 * Never blocks: sockets are nonblocking, every wait is a libevent event or a
 * loop timer.  The callback runs on the loop, never inside dns_query() (a
 * name that cannot be asked answers from a zero timer); dns_cancel() before
 * it runs frees the query (sockets, events, timers) and it never runs.
 */
#ifndef MXGATE_NET_RESOLVER_H
#define MXGATE_NET_RESOLVER_H

#include "util/dns.h"

struct event_base;
struct loop;

#define RESOLVER_CNAME_MAX	5	/* re-asks for a CNAME's target */

/*
 * A resolver on base, whose timers run on loop (the same thread's; for the
 * daemon evloop_base() and evloop_loop() of one evloop).  Allocation failure
 * is fatal; a missing or unreadable resolv.conf gives the defaults.
 */
struct dns_client *resolver_new(struct event_base *base, struct loop *loop);

/*
 * Free the resolver and set *cp to NULL.  Queries still running are
 * cancelled (their callbacks never run).  NULL *cp is fine.
 */
void	resolver_free(struct dns_client **cp);

/*
 * As resolver_new(), with the configuration read from path instead (the
 * tests' way to name servers and timeouts).
 */
struct dns_client *resolver_new_conf(struct event_base *base, struct loop *loop,
				     const char *path);

#endif
