/*
 * dns: DNS answers as the restrictions use them, the wire format of one
 * query and one reply (no I/O, so that the parser of untrusted bytes is
 * unit tested and fuzzed on its own), and the asynchronous resolver as the
 * protocol layer sees it (an interface with no libevent in it: the real one
 * is net/resolver.h, the tests use their own).
 *
 * Answers follow Postfix's dns_lookup() (src/dns/dns_lookup.c) as smtpd's
 * checks see them:
 *   DNS_OK        at least one record of the type asked (after following
 *                 CNAMEs inside the reply);
 *   DNS_NOTFOUND  NXDOMAIN, or NOERROR with no record of that type
 *                 (nodata tells the two apart);
 *   DNS_RETRY     no usable answer: SERVFAIL, NOTIMP or REFUSED (glibc's
 *                 res_send() tries the next server after each of these and
 *                 gives Postfix TRY_AGAIN when all did), a timeout, every
 *                 server unreachable, or an answer section that does not
 *                 parse (Postfix: a failing dn_expand(), a bad class, an
 *                 address of the wrong length);
 *   DNS_FAIL      FORMERR and any other error rcode (Postfix's NO_RECOVERY);
 *   DNS_INVAL     a record whose owner or host name is not a valid host
 *                 name (Postfix's valid_rr_name(): "Malformed DNS server
 *                 reply"); a label byte that is '.', '\' or not printable
 *                 shows as "\.", "\\" or \DDD (as BIND's dn_expand()), which
 *                 no host name contains;
 *   DNS_NULLMX    MX asked, and a record of the name is "N ." (RFC 7505;
 *                 Postfix treats any such record so, whatever else is there).
 * A malformed record of the type asked (bad name, bad address length) is
 * skipped when a good one is there, as Postfix does; RETRY beats INVAL.
 * error texts: "Host not found, try again" (SERVFAIL, NOTIMP, REFUSED),
 * "Non-recoverable error" (FAIL), "Malformed or unexpected name server
 * reply" (RETRY or INVAL from the parser), "Name server loop for NAME"
 * (NOTFOUND: a CNAME loop), and the resolver's own (net/resolver.h).
 *
 * Records.  rr[i].data is, by type:
 *   A, AAAA       the address in network order (4 or 16 bytes; len says);
 *   NS, PTR, CNAME, MX  the host name, NUL-terminated, lower case, without
 *                 the trailing dot ("" for the root); MX also sets pref;
 *   TXT           the first character-string of the record, every
 *                 non-printable byte a space, NUL-terminated, as Postfix
 *                 keeps it;
 *   anything else the raw RDATA.
 * At most DNS_RR_LIMIT (100, Postfix's dns_rr_list_limit) records of the
 * type asked are kept; the rest are dropped and truncated says so.
 */
#ifndef MXGATE_UTIL_DNS_H
#define MXGATE_UTIL_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;

enum { DNS_T_A = 1, DNS_T_NS = 2, DNS_T_CNAME = 5, DNS_T_PTR = 12, DNS_T_MX = 15,
       DNS_T_TXT = 16, DNS_T_AAAA = 28 };

#define DNS_RR_LIMIT	100
#define DNS_NAME_MAX	1025	/* a name as text, with its NUL */

enum dns_status {
	DNS_OK, DNS_NOTFOUND, DNS_RETRY, DNS_FAIL, DNS_INVAL, DNS_NULLMX,
};

struct dns_rr {
	uint16_t type;
	uint16_t pref;		/* MX */
	uint32_t ttl;
	size_t	len;		/* bytes of data (without the NUL of text) */
	char   *data;
};

struct dns_answer {
	enum dns_status status;
	bool	nodata;		/* NOTFOUND: the name exists, the type does not */
	bool	truncated;	/* more than DNS_RR_LIMIT records */
	char   *error;		/* RETRY/FAIL/INVAL: why, for log lines ("Host not found, try again") */
	char   *cname;		/* NOTFOUND: the reply ended in a CNAME to this name and
				 * holds no record of the type: the resolver asks again
				 * for it (at most 5 times, as Postfix) */
	size_t	nrr;
	struct dns_rr *rr;
	uint8_t	rcode;		/* the reply's RCODE (0 when there was no reply) */
};

void	dns_answer_free(struct dns_answer *a);	/* the contents, not a itself */
void	dns_answer_copy(struct dns_answer *dst, const struct dns_answer *src);
const char *dns_type_name(int type);	/* "A", "MX", ... or "TYPE<n>" in a static buffer */

/* ---- wire format ------------------------------------------------------- */

/*
 * Build a query (RD set, one question, class IN) for name (text, a trailing
 * dot optional) into out (at least 512 bytes).  Returns its length, or -1
 * when the name cannot be encoded (a label over 63 bytes, an empty label,
 * the whole over 255).
 */
int	dns_build_query(uint16_t id, const char *name, int type, unsigned char *out, size_t outlen);

/*
 * Parse reply (len bytes) to the query that dns_build_query(id, name, type)
 * made.  Fills *a (which the caller frees with dns_answer_free()) and
 * returns:
 *   1  the reply answers that query (a->status is set);
 *   0  it is not a reply to that query (wrong id, question, or not a
 *      response): a resolver ignores it and keeps waiting;
 *  -1  it is a reply to that query with TC set: ask again over TCP.
 * Never reads outside reply[0..len); compression pointers may only point
 * backwards, and a name is at most 255 bytes.
 */
int	dns_parse_reply(const unsigned char *reply, size_t len, uint16_t id, const char *name,
			int type, struct dns_answer *a);

/* ---- the resolver ----------------------------------------------------- */

struct dns_client;
struct dns_query;

/* a is only valid during the call (copy with dns_answer_copy()). */
typedef void dns_cb(void *ctx, const struct dns_answer *a);

struct dns_client_ops {
	struct dns_query *(*query)(struct dns_client *c, const char *name, int type,
				   dns_cb *cb, void *ctx);
	void	(*cancel)(struct dns_query *q);
};

/*
 * One resolver, bound to one loop (the caller's): cb runs on that loop,
 * exactly once, and never inside query(); cancel() before then means it
 * never runs.  Every query ends within the client's bound (RETRY then).
 */
struct dns_client {
	const struct dns_client_ops *ops;
};

static inline struct dns_query *
dns_query(struct dns_client *c, const char *name, int type, dns_cb *cb, void *ctx)
{
	return c->ops->query(c, name, type, cb, ctx);
}

static inline void
dns_cancel(struct dns_client *c, struct dns_query *q)
{
	c->ops->cancel(q);
}

#endif
