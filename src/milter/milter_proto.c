/*
 * milter_proto: packets of the milter protocol.  See milter_proto.h; the
 * rules (what is sent, what is refused and with which warning) follow
 * Postfix 3.7's milter8.c.
 */
#include "milter/milter_proto.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/xalloc.h"

static const struct {
	int	code;
	const char *name;
} milter_cmds[] = {
	{ SMFIC_ABORT, "SMFIC_ABORT" }, { SMFIC_BODY, "SMFIC_BODY" },
	{ SMFIC_CONNECT, "SMFIC_CONNECT" }, { SMFIC_MACRO, "SMFIC_MACRO" },
	{ SMFIC_BODYEOB, "SMFIC_BODYEOB" }, { SMFIC_HELO, "SMFIC_HELO" },
	{ SMFIC_HEADER, "SMFIC_HEADER" }, { SMFIC_MAIL, "SMFIC_MAIL" },
	{ SMFIC_EOH, "SMFIC_EOH" }, { SMFIC_OPTNEG, "SMFIC_OPTNEG" },
	{ SMFIC_QUIT, "SMFIC_QUIT" }, { SMFIC_RCPT, "SMFIC_RCPT" },
	{ SMFIC_DATA, "SMFIC_DATA" }, { SMFIC_UNKNOWN, "SMFIC_UNKNOWN" },
	{ SMFIC_QUIT_NC, "SMFIC_QUIT_NC" },
}, milter_replies[] = {
	{ SMFIR_ADDRCPT, "SMFIR_ADDRCPT" }, { SMFIR_DELRCPT, "SMFIR_DELRCPT" },
	{ SMFIR_ACCEPT, "SMFIR_ACCEPT" }, { SMFIR_REPLBODY, "SMFIR_REPLBODY" },
	{ SMFIR_CONTINUE, "SMFIR_CONTINUE" }, { SMFIR_DISCARD, "SMFIR_DISCARD" },
	{ SMFIR_CONN_FAIL, "SMFIR_CONN_FAIL" }, { SMFIR_CHGHEADER, "SMFIR_CHGHEADER" },
	{ SMFIR_PROGRESS, "SMFIR_PROGRESS" }, { SMFIR_REJECT, "SMFIR_REJECT" },
	{ SMFIR_TEMPFAIL, "SMFIR_TEMPFAIL" }, { SMFIR_SHUTDOWN, "SMFIR_SHUTDOWN" },
	{ SMFIR_ADDHEADER, "SMFIR_ADDHEADER" }, { SMFIR_INSHEADER, "SMFIR_INSHEADER" },
	{ SMFIR_REPLYCODE, "SMFIR_REPLYCODE" }, { SMFIR_QUARANTINE, "SMFIR_QUARANTINE" },
	{ SMFIR_SKIP, "SMFIR_SKIP" }, { SMFIR_CHGFROM, "SMFIR_CHGFROM" },
	{ SMFIR_ADDRCPT_PAR, "SMFIR_ADDRCPT_PAR" }, { SMFIR_SETSYMLIST, "SMFIR_SETSYMLIST" },
};

const char *
milter_cmd_name(int cmd)
{
	size_t	i;

	for (i = 0; i < sizeof(milter_cmds) / sizeof(milter_cmds[0]); i++)
		if (milter_cmds[i].code == cmd)
			return milter_cmds[i].name;
	return NULL;
}

const char *
milter_reply_name(int cmd)
{
	size_t	i;

	for (i = 0; i < sizeof(milter_replies) / sizeof(milter_replies[0]); i++)
		if (milter_replies[i].code == cmd)
			return milter_replies[i].name;
	return NULL;
}

/* ---- encoding ---- */

static void
put_u32(struct buf *out, uint32_t v)
{
	unsigned char b[4] = { v >> 24, v >> 16, v >> 8, v };

	buf_append(out, b, 4);
}

/* The header of a packet whose data is len bytes. */
static void
put_head(struct buf *out, int cmd, size_t len)
{
	char	c = (char)cmd;

	put_u32(out, (uint32_t)(len + 1));
	buf_append(out, &c, 1);
}

static void
put_str(struct buf *out, const char *s)
{
	buf_append(out, s, strlen(s) + 1);
}

void
milter_put_optneg(struct buf *out, uint32_t version, uint32_t actions, uint32_t protocol)
{
	put_head(out, SMFIC_OPTNEG, 12);
	put_u32(out, version);
	put_u32(out, actions);
	put_u32(out, protocol);
}

void
milter_put_macros(struct buf *out, int cmd, const char *const *namevals, size_t n)
{
	size_t	len = 1, i;
	char	c = (char)cmd;

	for (i = 0; i < n; i++)
		len += strlen(namevals[i]) + 1;
	put_head(out, SMFIC_MACRO, len);
	buf_append(out, &c, 1);
	for (i = 0; i < n; i++)
		put_str(out, namevals[i]);
}

void
milter_put_connect(struct buf *out, const char *host, int family, unsigned port,
		   const char *addr)
{
	char	f = (char)family;
	unsigned char p[2] = { (port >> 8) & 0xff, port & 0xff };

	if (family == SMFIA_UNKNOWN) {
		put_head(out, SMFIC_CONNECT, strlen(host) + 1 + 1);
		put_str(out, host);
		buf_append(out, &f, 1);
		return;
	}
	put_head(out, SMFIC_CONNECT, strlen(host) + 1 + 1 + 2 + strlen(addr) + 1);
	put_str(out, host);
	buf_append(out, &f, 1);
	buf_append(out, p, 2);
	put_str(out, addr);
}

void
milter_put_string(struct buf *out, int cmd, const char *s)
{
	put_head(out, cmd, strlen(s) + 1);
	put_str(out, s);
}

void
milter_put_argv(struct buf *out, int cmd, const char *const *argv, size_t n)
{
	size_t	len = 0, i;

	for (i = 0; i < n; i++)
		len += strlen(argv[i]) + 1;
	put_head(out, cmd, len);
	for (i = 0; i < n; i++)
		put_str(out, argv[i]);
}

void
milter_put_header(struct buf *out, const char *name, const char *value)
{
	put_head(out, SMFIC_HEADER, strlen(name) + 1 + strlen(value) + 1);
	put_str(out, name);
	put_str(out, value);
}

void
milter_put_body(struct buf *out, const void *data, size_t n)
{
	put_head(out, SMFIC_BODY, n);
	buf_append(out, data, n);
}

void
milter_put_empty(struct buf *out, int cmd)
{
	put_head(out, cmd, 0);
}

/* ---- negotiation ---- */

#define V2_MASK (SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT | SMFIP_NOBODY \
		 | SMFIP_NOHDRS | SMFIP_NOEOH)
#define V3_MASK (V2_MASK | SMFIP_NOUNKNOWN)
#define V4_MASK (V3_MASK | SMFIP_NODATA)
#define V6_MASK (V4_MASK | SMFIP_SKIP | SMFIP_RCPT_REJ | SMFIP_NOREPLY_MASK | SMFIP_HDR_LEADSPC)

/* Postfix's milter8_event_masks[], newest version first. */
static const struct {
	const char *name;
	uint32_t mask;
	uint32_t version;	/* 0: an extension */
} milter_versions[] = {
	{ "6", V6_MASK, 6 }, { "4", V4_MASK, 4 }, { "3", V3_MASK, 3 }, { "2", V2_MASK, 2 },
	{ "no_header_reply", SMFIP_NR_HDR, 0 },
};
#define NVERSIONS (sizeof(milter_versions) / sizeof(milter_versions[0]))

int
milter_protocol_parse(const char *spec, uint32_t *version_r, uint32_t *events_r, char **err_r)
{
	char   *copy = xstrdup(spec), *cp = copy, *name;
	uint32_t version = 0, events = 0;
	size_t	i;

	*err_r = NULL;
	while ((name = strsep(&cp, ", \t\r\n")) != NULL) {
		if (*name == 0)
			continue;
		for (i = 0; i < NVERSIONS; i++)
			if (strcmp(milter_versions[i].name, name) == 0)
				break;
		if (i == NVERSIONS || (milter_versions[i].version != 0 && version != 0)) {
			*err_r = xasprintf("bad protocol information: %s", name);
			free(copy);
			return -1;
		}
		if (milter_versions[i].version != 0)
			version = milter_versions[i].version;
		events |= milter_versions[i].mask;
	}
	free(copy);
	if (events == 0 || version == 0) {
		*err_r = xstrdup("no protocol version information");
		return -1;
	}
	*version_r = version;
	*events_r = events;
	return 0;
}

uint32_t
milter_np_mask(uint32_t my_events)
{
	return SMFIP_NOSEND_MASK & ~my_events;
}

uint32_t
milter_np_mask_for(uint32_t np_mask, uint32_t filter_version)
{
	size_t	i;

	/* A version mxgate has no table for uses the next lower one. */
	for (i = 0; i < NVERSIONS; i++)
		if (milter_versions[i].version > 0 && milter_versions[i].version <= filter_version)
			return np_mask | (SMFIP_NOSEND_MASK & ~milter_versions[i].mask);
	return np_mask;
}

/* ---- reading ---- */

void
milter_reader_init(struct milter_reader *r)
{
	memset(r, 0, sizeof(*r));
}

void
milter_reader_free(struct milter_reader *r)
{
	buf_free(&r->data);
	memset(r, 0, sizeof(*r));
}

enum milter_read_status
milter_read(struct milter_reader *r, const void *data, size_t n, size_t *used_r,
	    const char **why_r)
{
	char   *why = r->why;
	const unsigned char *p = data;
	size_t	off = 0, take;

	if (r->done) {
		r->done = false;
		r->hlen = 0;
		r->have_cmd = false;
		buf_reset(&r->data);
	}
	*why_r = NULL;
	for (;;) {
		if (r->hlen == 4 && r->have_cmd && r->data.len + 1 == r->want) {
			r->done = true;
			*used_r = off;
			return MILTER_READ_PACKET;
		}
		if (off == n)
			break;
		if (r->hlen < 4) {
			r->hdr[r->hlen++] = p[off++];
			if (r->hlen == 4) {
				uint32_t len = (uint32_t)r->hdr[0] << 24 | (uint32_t)r->hdr[1] << 16
					       | (uint32_t)r->hdr[2] << 8 | r->hdr[3];

				/* Postfix reads the length as a signed value. */
				if (len < 1 || len > 0x7fffffffu) {
					snprintf(why, sizeof(r->why), "bad packet length: %ld",
						 (long)(int32_t)len);
					*used_r = off;
					*why_r = why;
					return MILTER_READ_ERROR;
				}
				if (len > MILTER_PACKET_MAX + 1) {
					snprintf(why, sizeof(r->why),
						 "unreasonable packet length: %lu > %lu",
						 (unsigned long)len - 1,
						 (unsigned long)MILTER_PACKET_MAX);
					*used_r = off;
					*why_r = why;
					return MILTER_READ_ERROR;
				}
				r->want = len;
			}
			continue;
		}
		if (!r->have_cmd) {
			r->cmd = p[off++];
			r->have_cmd = true;
			buf_reset(&r->data);
			buf_reserve(&r->data, 1);
			r->data.data[0] = 0;
			continue;
		}
		take = r->want - 1 - r->data.len;
		if (take > n - off)
			take = n - off;
		buf_append(&r->data, p + off, take);
		off += take;
	}
	*used_r = off;
	return MILTER_READ_MORE;
}

/* ---- decoding ---- */

struct cursor {
	char   *p;
	size_t	left;
};

static int
get_u32(struct cursor *c, uint32_t *v, const char **why_r)
{
	const unsigned char *q = (const unsigned char *)c->p;

	if (c->left < 4) {
		*why_r = "input packet too short for network long";
		return -1;
	}
	*v = (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3];
	c->p += 4;
	c->left -= 4;
	return 0;
}

static int
get_str(struct cursor *c, const char **s, const char **why_r)
{
	char   *nul;

	if (c->left < 1) {
		*why_r = "packet too short for string";
		return -1;
	}
	if ((nul = memchr(c->p, 0, c->left)) == NULL) {
		*why_r = "missing string null terminator";
		return -1;
	}
	*s = c->p;
	c->left -= (size_t)(nul - c->p) + 1;
	c->p = nul + 1;
	return 0;
}

static int
no_leftover(struct cursor *c, const char **why_r, char *why_buf, size_t why_size)
{
	if (c->left > 0) {
		snprintf(why_buf, why_size, "left-over data %zu bytes", c->left);
		*why_r = why_buf;
		return -1;
	}
	return 0;
}

/*
 * Postfix's REPLYCODE checks: [45]DD then ' ' or '-', and an enhanced code,
 * when there is one, of the same class.  Then "%%" becomes "%" and a
 * single '%' goes (Sendmail uses the text as a format string).
 */
static int
fix_replycode(char *s, const char **why_r, char *why_buf, size_t why_size)
{
	char   *rp, *cp, ch;
	size_t	len = strlen(s);

	if (len < 4 || (s[0] != '4' && s[0] != '5') || !isdigit((unsigned char)s[1])
	    || !isdigit((unsigned char)s[2]) || (s[3] != ' ' && s[3] != '-')
	    || (isdigit((unsigned char)s[4]) && s[4] != s[0])) {
		snprintf(why_buf, why_size, "malformed reply: %.*s", (int)(why_size - 20), s);
		*why_r = why_buf;
		return -1;
	}
	if ((rp = cp = strchr(s, '%')) != NULL) {
		for (;;) {
			if ((ch = *cp++) == '%')
				ch = *cp++;
			*rp++ = ch;
			if (ch == 0)
				break;
		}
	}
	return 0;
}

int
milter_decode(struct milter_reader *r, struct milter_reply *rep, char *why_buf, size_t why_size,
	      const char **why_r)
{
	struct cursor c = { r->data.data, r->data.len };
	const char *name;

	memset(rep, 0, sizeof(*rep));
	rep->cmd = r->cmd;
	rep->name = rep->value = "";
	*why_r = NULL;
	switch (r->cmd) {
	case SMFIC_OPTNEG:
		if (get_u32(&c, &rep->version, why_r) || get_u32(&c, &rep->actions, why_r)
		    || get_u32(&c, &rep->protocol, why_r))
			return -1;
		while (c.left > 0) {
			uint32_t stage;
			const char *names;

			if (get_u32(&c, &stage, why_r) || get_str(&c, &names, why_r))
				return -1;
			if (rep->nsyms < sizeof(rep->syms) / sizeof(rep->syms[0])) {
				rep->syms[rep->nsyms].stage = stage;
				rep->syms[rep->nsyms].names = names;
				rep->nsyms++;
			}
		}
		return 0;
	case SMFIR_PROGRESS:
	case SMFIR_CONTINUE:
	case SMFIR_ACCEPT:
	case SMFIR_DISCARD:
	case SMFIR_REJECT:
	case SMFIR_TEMPFAIL:
	case SMFIR_SHUTDOWN:
	case SMFIR_SKIP:
	case SMFIR_CONN_FAIL:
		if (c.left != 0) {
			name = milter_reply_name(r->cmd);
			snprintf(why_buf, why_size, "reply %s was followed by %zu data bytes",
				 name ? name : "unknown", c.left);
			*why_r = why_buf;
			return -1;
		}
		return 0;
	case SMFIR_REPLYCODE:
		/* the whole data, as Postfix reads it; a NUL inside ends the text */
		rep->name = r->data.data;
		return fix_replycode(r->data.data, why_r, why_buf, why_size);
	case SMFIR_QUARANTINE:
		rep->name = r->data.data;
		return 0;
	case SMFIR_CHGHEADER:
	case SMFIR_INSHEADER:
		if (get_u32(&c, &rep->index, why_r) || get_str(&c, &rep->name, why_r)
		    || get_str(&c, &rep->value, why_r)
		    || no_leftover(&c, why_r, why_buf, why_size))
			return -1;
		if (r->cmd == SMFIR_CHGHEADER) {
			if (rep->index == 0)	/* Sendmail compatibility */
				rep->index = 1;
			if ((int32_t)rep->index < 1) {
				snprintf(why_buf, why_size, "bad change header index: %ld",
					 (long)(int32_t)rep->index);
				*why_r = why_buf;
				return -1;
			}
			if (*rep->name == 0) {
				*why_r = "null change header name";
				return -1;
			}
		} else if ((int32_t)rep->index < 0) {	/* index + 1 < 1, without the overflow */
			snprintf(why_buf, why_size, "bad insert header index: %ld",
				 (long)(int32_t)rep->index);
			*why_r = why_buf;
			return -1;
		}
		return 0;
	case SMFIR_ADDHEADER:
		if (get_str(&c, &rep->name, why_r) || get_str(&c, &rep->value, why_r)
		    || no_leftover(&c, why_r, why_buf, why_size))
			return -1;
		return 0;
	case SMFIR_CHGFROM:
	case SMFIR_ADDRCPT_PAR:
		if (get_str(&c, &rep->name, why_r))
			return -1;
		if (c.left > 0 && (get_str(&c, &rep->value, why_r)
				   || no_leftover(&c, why_r, why_buf, why_size)))
			return -1;
		return 0;
	case SMFIR_ADDRCPT:
	case SMFIR_DELRCPT:
		if (get_str(&c, &rep->name, why_r) || no_leftover(&c, why_r, why_buf, why_size))
			return -1;
		return 0;
	case SMFIR_REPLBODY:
		rep->body = r->data.data;
		rep->body_len = r->data.len;
		return 0;
	case SMFIR_SETSYMLIST:
		/* libmilter sends it only in the OPTNEG reply; decoded for the caller to refuse */
		return 0;
	default:
		return 0;
	}
}
