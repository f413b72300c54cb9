/*
 * fakedns: a struct dns_client (util/dns.h) that answers from a table, on
 * a loop, one post later (never inside the query): for the unit tests and
 * the session fuzzer, so that the DNS restrictions are driven through the
 * same asynchronous path as with the real resolver.
 *
 * Records are text lines "name TYPE data":
 *   "2.0.0.127.zen.test A 127.0.0.2", "zen.test TXT Listed by zen",
 *   "example.com MX 10 mx.example.com", "example.com NS ns1.example.com",
 *   "mx.example.com AAAA 2001:db8::1"
 * or a status instead of data: RETRY, FAIL, INVAL, NULLMX.  A name that no
 * line names is NXDOMAIN; a name named only for other types is "no data".
 */
#ifndef MXGATE_TESTS_FAKEDNS_H
#define MXGATE_TESTS_FAKEDNS_H

#include <stddef.h>

struct dns_client;
struct fakedns;
struct loop;

struct fakedns *fakedns_new(struct loop *l, const char *const *records);
struct dns_client *fakedns_client(struct fakedns *d);
/* Queries asked so far, and how many of them were for name/type (type 0: any). */
size_t	fakedns_count(const struct fakedns *d, const char *name, int type);
void	fakedns_free(struct fakedns **dp);

#endif
