/*
 * dns: the wire format of one query and one reply, and the answers built
 * from it.  See dns.h for the contract.
 *
 * The parser reads untrusted bytes, so:
 *   - every read is checked against the end of the reply first;
 *   - a compression pointer must point before the start of the stretch of
 *     labels that holds it (RFC 1035 4.1.4 only ever points at earlier
 *     names), so every jump goes strictly backwards and a name cannot loop;
 *   - a name is at most 255 octets on the wire (RFC 1035 2.3.4), counted as
 *     it is expanded, so no pointer chain can make it longer;
 *   - a name becomes text the way BIND's dn_expand() (and so Postfix) shows
 *     it: '.' and '\' inside a label as "\." and "\\", any byte that is not
 *     a printable ASCII letter, digit or punctuation as \DDD.  Such a name
 *     then fails the host name check (Postfix's valid_rr_name()), so the
 *     record is malformed (DNS_INVAL): it can never pass for another name.
 *
 * Statuses as Postfix's dns_lookup() gives them on glibc (whose res_send()
 * moves on to the next server after SERVFAIL, NOTIMP or REFUSED and returns
 * "try again" when every server said so).
 */
#include "util/dns.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/hostname.h"
#include "util/xalloc.h"

#define DNS_HDR_LEN	12
#define DNS_WIRE_MAX	255	/* a name on the wire, RFC 1035 2.3.4 */
#define DNS_C_IN	1

#define DNS_ERR_MALFORMED "Malformed or unexpected name server reply"
#define DNS_ERR_TRYAGAIN "Host not found, try again"
#define DNS_ERR_NORECOVERY "Non-recoverable error"

void
dns_answer_free(struct dns_answer *a)
{
	size_t i;

	if (a == NULL)
		return;
	for (i = 0; i < a->nrr; i++)
		free(a->rr[i].data);
	free(a->rr);
	free(a->error);
	free(a->cname);
	memset(a, 0, sizeof(*a));
}

void
dns_answer_copy(struct dns_answer *dst, const struct dns_answer *src)
{
	size_t i;

	*dst = *src;
	dst->error = src->error ? xstrdup(src->error) : NULL;
	dst->cname = src->cname ? xstrdup(src->cname) : NULL;
	dst->rr = NULL;
	if (src->nrr > 0) {
		dst->rr = xcalloc(src->nrr, sizeof(*dst->rr));
		for (i = 0; i < src->nrr; i++) {
			dst->rr[i] = src->rr[i];
			/* every data has a NUL after len bytes (see dns_rr_add) */
			dst->rr[i].data = xmalloc(src->rr[i].len + 1);
			memcpy(dst->rr[i].data, src->rr[i].data, src->rr[i].len + 1);
		}
	}
}

const char *
dns_type_name(int type)
{
	static __thread char buf[16];

	switch (type) {
	case DNS_T_A:
		return "A";
	case DNS_T_NS:
		return "NS";
	case DNS_T_CNAME:
		return "CNAME";
	case 6:
		return "SOA";
	case DNS_T_PTR:
		return "PTR";
	case DNS_T_MX:
		return "MX";
	case DNS_T_TXT:
		return "TXT";
	case DNS_T_AAAA:
		return "AAAA";
	default:
		snprintf(buf, sizeof(buf), "TYPE%d", type);
		return buf;
	}
}

/* ---- names --------------------------------------------------------------- */

/*
 * Text (a trailing dot optional; "." or "" is the root) to uncompressed wire
 * form.  Returns the wire length, or -1.
 */
static int
dns_name_encode(const char *name, unsigned char *out)
{
	size_t n = 0, len;
	const char *p = name, *dot;

	if (strcmp(name, ".") == 0 || *name == '\0') {
		out[0] = 0;
		return 1;
	}
	for (;;) {
		dot = strchr(p, '.');
		len = dot ? (size_t)(dot - p) : strlen(p);
		if (len == 0 && dot == NULL)
			break;		/* after a trailing dot */
		if (len == 0 || len > 63 || n + 1 + len + 1 > DNS_WIRE_MAX)
			return -1;
		out[n++] = (unsigned char)len;
		memcpy(out + n, p, len);
		n += len;
		if (dot == NULL)
			break;
		p = dot + 1;
	}
	out[n++] = 0;
	return (int)n;
}

/*
 * Read the (possibly compressed) name at *offp into wire (uncompressed, at
 * most 255 bytes) and set *offp past it.  Returns the wire length, or -1 when
 * it runs off the end, a pointer does not point backwards, a label type is
 * unknown, or the name grows over 255 bytes.
 */
static int
dns_name_read(const unsigned char *m, size_t len, size_t *offp, unsigned char *wire)
{
	size_t pos = *offp, start = *offp, wlen = 0;
	int jumped = 0;

	for (;;) {
		unsigned c;

		if (pos >= len)
			return -1;
		c = m[pos];
		if ((c & 0xC0) == 0xC0) {
			size_t target;

			if (pos + 1 >= len)
				return -1;
			target = ((c & 0x3F) << 8) | m[pos + 1];
			/* strictly before this stretch of labels: every jump goes back */
			if (target >= start)
				return -1;
			if (!jumped)
				*offp = pos + 2;
			jumped = 1;
			start = pos = target;
			continue;
		}
		if ((c & 0xC0) != 0)
			return -1;	/* RFC 6891 extended label types: none in use */
		if (wlen + 1 + c > DNS_WIRE_MAX)
			return -1;
		if (c == 0) {
			wire[wlen++] = 0;
			if (!jumped)
				*offp = pos + 1;
			return (int)wlen;
		}
		if (pos + 1 + c > len)
			return -1;
		memcpy(wire + wlen, m + pos, 1 + c);
		wlen += 1 + c;
		pos += 1 + c;
	}
}

/* Wire (from dns_name_read) to text: lower case, escaped, no trailing dot. */
static void
dns_name_text(const unsigned char *wire, char *out)
{
	size_t i = 0, o = 0;

	while (wire[i] != 0) {
		unsigned n = wire[i++];

		if (o > 0)
			out[o++] = '.';
		for (; n > 0; n--, i++) {
			unsigned ch = wire[i];

			if (ch == '.' || ch == '\\') {
				out[o++] = '\\';
				out[o++] = (char)ch;
			} else if (ch > ' ' && ch < 0x7f) {
				out[o++] = (char)tolower(ch);
			} else {
				o += (size_t)sprintf(out + o, "\\%03u", ch);
			}
		}
	}
	out[o] = '\0';		/* at most 4 * 255 bytes: fits DNS_NAME_MAX */
}

static int
dns_name_equal(const unsigned char *a, const unsigned char *b)
{
	size_t i = 0;

	for (;;) {
		unsigned n = a[i];

		if (b[i] != n)
			return 0;
		if (n == 0)
			return 1;
		i++;
		for (; n > 0; n--, i++)
			if (tolower(a[i]) != tolower(b[i]))
				return 0;
	}
}

/*
 * Postfix's valid_rr_name(): a host name (a leading "*" label allowed) or a
 * numeric address.
 */
static int
dns_name_valid(const char *text)
{
	if (hostaddr_valid(text))
		return 1;
	if (text[0] == '*' && text[1] == '\0')
		return 1;
	if (text[0] == '*' && text[1] == '.')
		return hostname_valid(text + 2);
	return hostname_valid(text);
}

/* ---- the query ------------------------------------------------------------ */

int
dns_build_query(uint16_t id, const char *name, int type, unsigned char *out, size_t outlen)
{
	unsigned char wire[DNS_WIRE_MAX + 1];
	int wlen;

	if (type < 0 || type > 0xffff || (wlen = dns_name_encode(name, wire)) < 0
	    || outlen < DNS_HDR_LEN + (size_t)wlen + 4)
		return -1;
	memset(out, 0, DNS_HDR_LEN);
	out[0] = id >> 8;
	out[1] = id & 0xff;
	out[2] = 0x01;		/* RD */
	out[5] = 1;		/* QDCOUNT */
	memcpy(out + DNS_HDR_LEN, wire, wlen);
	out[DNS_HDR_LEN + wlen] = type >> 8;
	out[DNS_HDR_LEN + wlen + 1] = type & 0xff;
	out[DNS_HDR_LEN + wlen + 2] = 0;
	out[DNS_HDR_LEN + wlen + 3] = DNS_C_IN;
	return DNS_HDR_LEN + wlen + 4;
}

/* ---- the reply ------------------------------------------------------------ */

/* One answer-section record, as found. */
struct dns_pending {
	unsigned char owner[DNS_WIRE_MAX + 1];
	uint16_t type;
	uint32_t ttl;
	size_t	rdoff, rdlen;
};

static uint16_t
dns_get16(const unsigned char *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t
dns_get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void
dns_set_status(struct dns_answer *a, enum dns_status status, const char *error)
{
	a->status = status;
	free(a->error);
	a->error = error ? xstrdup(error) : NULL;
}

static void
dns_rr_add(struct dns_answer *a, const struct dns_pending *p, uint16_t pref,
	   const void *data, size_t len)
{
	struct dns_rr *rr;

	a->rr = xrealloc(a->rr, (a->nrr + 1) * sizeof(*a->rr));
	rr = &a->rr[a->nrr++];
	rr->type = p->type;
	rr->pref = pref;
	rr->ttl = p->ttl;
	rr->len = len;
	rr->data = xmalloc(len + 1);
	memcpy(rr->data, data, len);
	rr->data[len] = '\0';
}

/*
 * A name in RDATA at *offp, which must end inside the record: its text in
 * out.  Returns DNS_OK, DNS_RETRY (does not parse, as Postfix's failing
 * dn_expand()), or DNS_INVAL (not a host name).  The root gives "" and
 * DNS_OK (the caller decides).
 */
static enum dns_status
dns_rdata_name(const unsigned char *m, size_t len, const struct dns_pending *p, size_t off,
	       char *out)
{
	unsigned char wire[DNS_WIRE_MAX + 1];

	if (dns_name_read(m, p->rdoff + p->rdlen, &off, wire) < 0)
		return DNS_RETRY;
	(void)len;
	dns_name_text(wire, out);
	if (*out != '\0' && !dns_name_valid(out))
		return DNS_INVAL;
	return DNS_OK;
}

/*
 * One record of the type asked: add it to a.  Returns DNS_OK, DNS_NULLMX,
 * or the status of a malformed record (it is skipped).
 */
static enum dns_status
dns_take_record(const unsigned char *m, size_t len, const struct dns_pending *p,
		struct dns_answer *a)
{
	char text[DNS_NAME_MAX];
	enum dns_status st;
	uint16_t pref;
	size_t n, i;

	switch (p->type) {
	case DNS_T_A:
	case DNS_T_AAAA:
		/* Postfix: "bad address length" is a try-again */
		if (p->rdlen != (p->type == DNS_T_A ? 4u : 16u))
			return DNS_RETRY;
		dns_rr_add(a, p, 0, m + p->rdoff, p->rdlen);
		return DNS_OK;
	case DNS_T_NS:
	case DNS_T_PTR:
	case DNS_T_CNAME:
		if ((st = dns_rdata_name(m, len, p, p->rdoff, text)) != DNS_OK)
			return st;
		if (*text == '\0')
			return DNS_INVAL;
		dns_rr_add(a, p, 0, text, strlen(text));
		return DNS_OK;
	case DNS_T_MX:
		if (p->rdlen < 3)
			return DNS_RETRY;
		pref = dns_get16(m + p->rdoff);
		if ((st = dns_rdata_name(m, len, p, p->rdoff + 2, text)) != DNS_OK)
			return st;
		if (*text == '\0')
			return DNS_NULLMX;
		dns_rr_add(a, p, pref, text, strlen(text));
		return DNS_OK;
	case DNS_T_TXT:
		/* the first character-string only, as Postfix keeps it */
		n = p->rdlen == 0 ? 0 : m[p->rdoff];
		if (p->rdlen > 0 && n > p->rdlen - 1)
			n = p->rdlen - 1;
		for (i = 0; i < n; i++) {
			unsigned ch = m[p->rdoff + 1 + i];

			text[i] = (ch >= ' ' && ch < 0x7f) ? (char)ch : ' ';
		}
		dns_rr_add(a, p, 0, text, n);
		return DNS_OK;
	default:
		dns_rr_add(a, p, 0, m + p->rdoff, p->rdlen);
		return DNS_OK;
	}
}

int
dns_parse_reply(const unsigned char *m, size_t len, uint16_t id, const char *name,
		int type, struct dns_answer *a)
{
	unsigned char qwire[DNS_WIRE_MAX + 1], wire[DNS_WIRE_MAX + 1], cur[DNS_WIRE_MAX + 1];
	struct dns_pending *rrs = NULL;
	size_t off, nrrs = 0, i, ancount, hops;
	unsigned rcode;
	int found, ret = 1;
	enum dns_status not_found = DNS_NOTFOUND, st;
	char text[DNS_NAME_MAX];

	memset(a, 0, sizeof(*a));
	/* Not a reply to our query at all: ignore it, as glibc's res_send() does. */
	if (len < DNS_HDR_LEN || dns_get16(m) != id || (m[2] & 0x80) == 0
	    || dns_get16(m + 4) != 1 || dns_name_encode(name, qwire) < 0)
		return 0;
	off = DNS_HDR_LEN;
	if (dns_name_read(m, len, &off, wire) < 0 || off + 4 > len
	    || !dns_name_equal(wire, qwire) || dns_get16(m + off) != type
	    || dns_get16(m + off + 2) != DNS_C_IN)
		return 0;
	off += 4;
	if (m[2] & 0x02)
		return -1;	/* TC: ask again over TCP */

	a->rcode = rcode = m[3] & 0x0f;
	switch (rcode) {
	case 0:
		break;
	case 3:			/* NXDOMAIN */
		a->status = DNS_NOTFOUND;
		return 1;
	case 2:			/* SERVFAIL */
	case 4:			/* NOTIMP */
	case 5:			/* REFUSED */
		dns_set_status(a, DNS_RETRY, DNS_ERR_TRYAGAIN);
		return 1;
	default:		/* FORMERR and the rest */
		dns_set_status(a, DNS_FAIL, DNS_ERR_NORECOVERY);
		return 1;
	}
	ancount = dns_get16(m + 6);
	if (ancount == 0) {
		a->status = DNS_NOTFOUND;
		a->nodata = true;
		return 1;
	}

	/* Every answer record: owner, type, class, TTL, RDATA bounds. */
	/* a record takes at least 11 bytes: claims beyond that fail below */
	if (ancount > (len - off) / 11 + 1)
		ancount = (len - off) / 11 + 1;
	rrs = xcalloc(ancount, sizeof(*rrs));
	for (i = 0; i < ancount; i++) {
		struct dns_pending *p = &rrs[nrrs];

		if (dns_name_read(m, len, &off, p->owner) < 0 || off + 10 > len)
			goto malformed;
		p->type = dns_get16(m + off);
		if (dns_get16(m + off + 2) != DNS_C_IN)
			goto malformed;		/* Postfix: "bad class" */
		p->ttl = dns_get32(m + off + 4);
		p->rdlen = dns_get16(m + off + 8);
		p->rdoff = off + 10;
		if (p->rdoff + p->rdlen > len)
			goto malformed;
		off = p->rdoff + p->rdlen;
		dns_name_text(p->owner, text);
		if (!(*text == '\0' && qwire[0] == 0) && !dns_name_valid(text)) {
			dns_set_status(a, DNS_INVAL, DNS_ERR_MALFORMED);
			goto done;
		}
		/* A CNAME that is not what we asked for: its target must be a name. */
		if (p->type == DNS_T_CNAME && type != DNS_T_CNAME) {
			size_t roff = p->rdoff;

			if (dns_name_read(m, p->rdoff + p->rdlen, &roff, wire) < 0)
				goto malformed;
			dns_name_text(wire, text);
			if (!dns_name_valid(text)) {
				dns_set_status(a, DNS_INVAL, DNS_ERR_MALFORMED);
				goto done;
			}
		}
		nrrs++;
	}

	/*
	 * Follow the CNAME chain from the name asked, owner names compared
	 * without case; at most one hop per record, so a loop ends.
	 */
	memcpy(cur, qwire, sizeof(cur));
	for (hops = 0;; hops++) {
		const struct dns_pending *alias = NULL;

		found = 0;
		for (i = 0; i < nrrs; i++) {
			if (!dns_name_equal(rrs[i].owner, cur))
				continue;
			if (rrs[i].type == type) {
				if (a->nrr >= DNS_RR_LIMIT) {
					a->truncated = true;
					break;
				}
				st = dns_take_record(m, len, &rrs[i], a);
				if (st == DNS_OK)
					found++;
				else if (st == DNS_NULLMX) {
					dns_answer_free(a);
					a->rcode = rcode;
					a->status = DNS_NULLMX;
					goto done;
				} else if (not_found != DNS_RETRY) {
					not_found = st;
				}
			} else if (rrs[i].type == DNS_T_CNAME && alias == NULL) {
				alias = &rrs[i];
			}
		}
		if (found > 0) {
			a->status = DNS_OK;
			goto done;
		}
		if (not_found != DNS_NOTFOUND) {
			dns_set_status(a, not_found, DNS_ERR_MALFORMED);
			goto done;
		}
		if (alias == NULL)
			break;
		if (hops >= nrrs) {
			dns_name_text(qwire, text);
			a->status = DNS_NOTFOUND;
			a->error = xasprintf("Name server loop for %s", text);
			goto done;
		}
		off = alias->rdoff;
		(void)dns_name_read(m, alias->rdoff + alias->rdlen, &off, cur);
	}
	a->status = DNS_NOTFOUND;
	if (hops > 0) {
		/* the chain ends in a name with nothing of the type here: ask for it */
		dns_name_text(cur, text);
		a->cname = xstrdup(text);
	} else {
		a->nodata = true;
	}
	goto done;

malformed:
	dns_answer_free(a);
	a->rcode = rcode;
	dns_set_status(a, DNS_RETRY, DNS_ERR_MALFORMED);
done:
	free(rrs);
	return ret;
}
