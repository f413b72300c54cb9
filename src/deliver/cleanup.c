/*
 * cleanup: Postfix cleanup(8)'s content processing as a streaming filter.
 * Contract in cleanup.h.
 */
#include "deliver/cleanup.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/xalloc.h"

/* mime_state's states: the primary header, a part's header, an attached message's header, a body */
enum { ST_HEADER, ST_BODY, ST_MULTIPART, ST_NESTED };

/* Content types, as far as mime_state tells them apart. */
enum { CT_TEXT, CT_MESSAGE, CT_MULTIPART, CT_OTHER };
enum { STY_PLAIN, STY_RFC822, STY_OTHER, STY_PARTIAL, STY_EXTERN, STY_GLOBAL };

#define CLEANUP_MIME_MAXDEPTH	100	/* mime_nesting_limit */
#define CLEANUP_MIME_BOUNDLEN	2048	/* mime_boundary_length_limit */

/* The header types cleanup tracks (bits of c->seen). */
enum {
	H_OTHER, H_RECEIVED, H_MESSAGE_ID, H_DATE, H_FROM, H_TO, H_CC,
	H_RESENT_MESSAGE_ID, H_RESENT_DATE, H_RESENT_FROM, H_RESENT_TO, H_RESENT_CC,
	H_RESENT_OTHER, H_DELIVERED_TO,
};

/* Postfix's delivered_hdr.c reads at most this many Delivered-To: headers. */
#define CLEANUP_DELIVERED_MAX 1000

static const struct {
	const char *name;
	int	type;
} cl_known[] = {
	{ "received", H_RECEIVED }, { "message-id", H_MESSAGE_ID }, { "date", H_DATE },
	{ "from", H_FROM }, { "to", H_TO }, { "cc", H_CC },
	{ "resent-message-id", H_RESENT_MESSAGE_ID }, { "resent-date", H_RESENT_DATE },
	{ "resent-from", H_RESENT_FROM }, { "resent-to", H_RESENT_TO },
	{ "resent-cc", H_RESENT_CC },
	/* the other Resent- headers of Postfix's table (HDR_OPT_RR) */
	{ "resent-bcc", H_RESENT_OTHER }, { "resent-reply-to", H_RESENT_OTHER },
	{ "resent-sender", H_RESENT_OTHER }, { "delivered-to", H_DELIVERED_TO },
};

#define SEEN(c, t) (((c)->seen >> (t)) & 1UL)

static void cl_mime_pop(struct cleanup *c);
static const char *cl_map_class(enum cleanup_where where);

size_t
cleanup_line_size(size_t len, size_t line_limit)
{
	size_t size = 0;

	do {
		size_t r = line_limit > 0 && len > line_limit ? line_limit : len;
		size_t v = r;

		size += 1 + r;	/* type byte, the data */
		do {		/* the length, 7 bits a byte */
			size++;
			v >>= 7;
		} while (v > 0);
		len -= r;
	} while (len > 0);
	return size;
}

void
cleanup_charset(unsigned char set[256], int *have_r, const char *s)
{
	memset(set, 0, 256);
	*have_r = 0;
	/* Postfix's unescape(): \a \b \f \n \r \t \v \\ and \ooo */
	while (*s) {
		int ch = (unsigned char)*s++;

		if (ch == '\\' && *s) {
			ch = (unsigned char)*s++;
			switch (ch) {
			case 'a': ch = '\a'; break;
			case 'b': ch = '\b'; break;
			case 'f': ch = '\f'; break;
			case 'n': ch = '\n'; break;
			case 'r': ch = '\r'; break;
			case 't': ch = '\t'; break;
			case 'v': ch = '\v'; break;
			default:
				if (ch >= '0' && ch <= '7') {
					int v = ch - '0';

					for (int k = 0; k < 2 && *s >= '0' && *s <= '7'; k++)
						v = v * 8 + (*s++ - '0');
					ch = v & 0xff;
				}
				break;
			}
		}
		set[ch] = 1;
		*have_r = 1;
	}
}

/* Postfix's is_header_buf(): the length of the name, 0 when text is no header. */
static size_t
cl_is_header(const char *text, size_t len)
{
	size_t n = 0;
	int state = 0;		/* 0 start, 1 in name, 2 blanks after the name */

	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)text[i];

		if (ch == ':')
			return state > 0 ? n : 0;
		if (ch == ' ' || ch == '\t') {
			if (state == 0)
				return 0;
			state = 2;
			continue;
		}
		if (ch == 0 || ch >= 0x80 || iscntrl(ch) || state == 2)
			return 0;
		state = 1;
		n++;
	}
	return 0;
}

void
cleanup_init(struct cleanup *c, const struct cleanup_conf *cf, struct buf *out, int add_missing,
	     const char *sender, const char *queue_id, time_t arrival)
{
	memset(c, 0, sizeof(*c));
	c->cf = cf;
	c->out = out;
	c->add_missing = add_missing;
	c->sender = sender ? sender : "";
	c->queue_id = queue_id ? queue_id : "";
	c->arrival = arrival;
	c->state = ST_HEADER;
	c->nesting = -1;
	c->ctype = CT_TEXT;
	c->stype = STY_PLAIN;
}

void
cleanup_free(struct cleanup *c)
{
	buf_free(&c->rec);
	buf_free(&c->hdr);
	buf_free(&c->logs);
	buf_free(&c->reason);
	while (c->stack != NULL)
		cl_mime_pop(c);
	for (size_t i = 0; i < c->ndelivered; i++)
		free(c->delivered[i]);
	free(c->delivered);
	c->delivered = NULL;
	c->ndelivered = 0;
}

int
cleanup_has_delivered_to(const struct cleanup *c, const char *addr)
{
	for (size_t i = 0; i < c->ndelivered; i++)
		if (strcasecmp(c->delivered[i], addr) == 0)
			return 1;
	return 0;
}

enum cleanup_result
cleanup_result(const struct cleanup *c)
{
	return (enum cleanup_result)c->result;
}

const char *
cleanup_reason(const struct cleanup *c)
{
	return c->reason.len ? buf_str(&c->reason) : "5.7.1 message content rejected";
}

void
cleanup_take_logs(struct cleanup *c, struct buf *out)
{
	if (c->logs.len > 0)
		buf_append(out, c->logs.data, c->logs.len);
	buf_reset(&c->logs);
}

static int
cl_stopped(const struct cleanup *c)
{
	return c->result != CLEANUP_OK;
}

/* One stored line (text without its LF; several lines for a folded header). */
static void
cl_out_lines(struct cleanup *c, const char *text, size_t len)
{
	if (cl_stopped(c))
		return;
	buf_append(c->out, text, len);
	buf_putc(c->out, '\n');
	for (;;) {
		const char *nl = memchr(text, '\n', len);
		size_t n = nl ? (size_t)(nl - text) : len;

		c->size += cleanup_line_size(n, c->cf->line_limit);
		if (nl == NULL)
			break;
		text += n + 1;
		len -= n + 1;
	}
}

/*
 * A header as Postfix's cleanup_out_header() stores it: at most
 * header_size_limit bytes, cut at the last line boundary before the limit
 * (a "nice cut") unless that loses more than 10%, else at the limit itself.
 */
static void
cl_out_header(struct cleanup *c, const char *h)
{
	size_t len = strlen(h), lim = c->cf->header_size_limit;
	const char *line = h;

	while (line != NULL) {
		const char *nl = strchr(line, '\n');
		size_t ll = nl ? (size_t)(nl - line) : strlen(line);

		if ((size_t)(line - h) + ll > lim) {
			if ((double)(line - h) > 0.9 * (double)lim)
				break;	/* nice cut */
			ll = lim - (size_t)(line - h);	/* unkind cut */
			nl = NULL;
		}
		cl_out_lines(c, line, ll);
		line = nl ? nl + 1 : NULL;
	}
	(void)len;
}

/* A body record: cut records of one line are one line in the file. */
static void
cl_out_record(struct cleanup *c, const char *text, size_t len, int cont)
{
	size_t v = len;

	if (cl_stopped(c))
		return;
	buf_append(c->out, text, len);
	if (!cont)
		buf_putc(c->out, '\n');
	c->size += 1 + len;
	do {
		c->size++;
		v >>= 7;
	} while (v > 0);
}

static void
cl_log(struct cleanup *c, const char *action, const char *where, const char *content,
       const char *text)
{
	size_t n = strlen(content), max = c->in_milter ? 60 : 200;

	if (c->in_milter)
		buf_printf(&c->logs, "I milter-%s-%s: %s %.*s from %s", where, action, where,
			   (int)(n > max ? max : n), content, c->log_ctx ? c->log_ctx : "unknown;");
	else
		buf_printf(&c->logs, "I %s: %s %.*s from %s", action, where,
			   (int)(n > max ? max : n), content, c->log_ctx ? c->log_ctx : "unknown;");
	if (text != NULL && *text)
		buf_printf(&c->logs, ": %s", text);
	buf_putc(&c->logs, '\n');
}

/* Postfix's dsn_prepend(): text keeps its own x.y.z, else gets def's. */
static void
cl_dsn_text(struct buf *b, const char *def, const char *text)
{
	const char *p = text;

	if ((*p == '4' || *p == '5') && p[1] == '.') {
		p += 2;
		while (isdigit((unsigned char)*p))
			p++;
		if (*p == '.') {
			p++;
			while (isdigit((unsigned char)*p))
				p++;
			if (*p == ' ' || *p == '\0') {
				buf_puts(b, text);
				return;
			}
		}
	}
	buf_printf(b, "%s %s", def, text);
}

/*
 * Act on a check's answer.  Returns 0 to store text as it is, 1 to drop it,
 * 2 to store *replace_r (malloc'd) instead.
 */
static int
cl_act(struct cleanup *c, enum cleanup_where where, const char *text, const char *value,
       char **replace_r)
{
	const char *ctx = where == CLEANUP_BODY ? "body" : where == CLEANUP_CONTENT ? "content"
			  : "header";
	size_t cmd = strcspn(value, " \t");
	const char *opt = value + cmd;

	while (*opt == ' ' || *opt == '\t')
		opt++;
#define IS(word) (cmd == strlen(word) && strncasecmp(value, word, cmd) == 0)
	if (IS("REJECT")) {
		buf_reset(&c->reason);
		if (*opt)
			cl_dsn_text(&c->reason, "5.7.1", opt);
		else
			buf_puts(&c->reason, "5.7.1 message content rejected");
		cl_log(c, "reject", ctx, text, buf_str(&c->reason));
		c->result = CLEANUP_REJECT;
		return 0;
	}
	if (IS("WARN")) {
		cl_log(c, "warning", ctx, text, opt);
		return 0;
	}
	if (IS("INFO")) {
		cl_log(c, "info", ctx, text, opt);
		return 0;
	}
	if (IS("DISCARD")) {
		cl_log(c, "discard", ctx, text, opt);
		c->result = CLEANUP_DISCARD;
		return 0;
	}
	if (where == CLEANUP_MILTER && IS("HOLD")) {
		if (!c->milter_hold)
			cl_log(c, "hold", ctx, text, opt);
		c->milter_hold = 1;
		return 0;
	}
	if (where == CLEANUP_MILTER && IS("PREPEND")) {
		if (*opt == '\0' || cl_is_header(opt, strlen(opt)) == 0)
			return 0;
		cl_log(c, "prepend", ctx, text, opt);
		buf_puts(&c->logs, "W the milter_header/body_checks prepend action is not "
			 "implemented\n");
		return 0;
	}
	if (IS("PREPEND")) {
		if (*opt == '\0')
			return 0;
		if (where == CLEANUP_HEADER && cl_is_header(opt, strlen(opt)) == 0)
			return 0;
		cl_log(c, "prepend", ctx, text, opt);
		if (where == CLEANUP_HEADER)
			cl_out_header(c, opt);
		else
			cl_out_lines(c, opt, strlen(opt));
		return 0;
	}
	if (IS("REPLACE")) {
		if (*opt == '\0')
			return 0;
		if (where == CLEANUP_HEADER && cl_is_header(opt, strlen(opt)) == 0)
			return 0;
		cl_log(c, "replace", ctx, text, opt);
		*replace_r = xstrdup(opt);
		return 2;
	}
	if (IS("IGNORE"))
		return 1;
	if (IS("STRIP")) {
		cl_log(c, "strip", ctx, text, opt);
		return 1;
	}
	if (IS("DUNNO") || IS("OK"))
		return 0;
	if (IS("HOLD") || IS("FILTER") || IS("REDIRECT") || IS("BCC")
	    || (where != CLEANUP_MILTER && (IS("PASS") || IS("DELAY")))) {
		/* mxgate has no queue to hold, filter, redirect or copy in: never a silent accept */
		buf_reset(&c->reason);
		buf_printf(&c->reason, "%.*s action of %s is not implemented by mxgate",
			   (int)cmd, value, cl_map_class(where));
		cl_log(c, "defer", ctx, text, buf_str(&c->reason));
		c->result = CLEANUP_TEMPFAIL;
		return 0;
	}
	if (where == CLEANUP_MILTER)
		buf_printf(&c->logs, "W unsupported command in %s map: %s\n", cl_map_class(where),
			   value);
	else
		buf_printf(&c->logs, "W unknown command in %s map: %s\n", cl_map_class(where),
			   value);
	return 0;
#undef IS
}

static const char *
cl_map_class(enum cleanup_where where)
{
	switch (where) {
	case CLEANUP_HEADER:
		return "header_checks";
	case CLEANUP_MIME:
		return "mime_header_checks";
	case CLEANUP_NESTED:
		return "nested_header_checks";
	case CLEANUP_MILTER:
		return "milter_header_checks";
	case CLEANUP_BODY:
		return "body_checks";
	default:
		return "content";
	}
}

/* Run a check; see cl_act() for the return value. */
static int
cl_check(struct cleanup *c, enum cleanup_where where, const char *text, char **replace_r)
{
	char *value = NULL;
	int r, ret = 0;

	if (c->cf->check == NULL || cl_stopped(c))
		return 0;
	if ((where == CLEANUP_HEADER && !c->cf->header_checks)
	    || (where == CLEANUP_MIME && !c->cf->mime_header_checks)
	    || (where == CLEANUP_NESTED && !c->cf->nested_header_checks)
	    || (where == CLEANUP_BODY && !c->cf->body_checks)
	    || (where == CLEANUP_MILTER && !c->cf->milter_header_checks))
		return 0;
	r = c->cf->check(c->cf->check_ctx, where, text, &value);
	if (r < 0) {
		buf_printf(&c->logs, "W %s map lookup problem -- message not accepted, try "
			   "again later\n", cl_map_class(where));
		c->result = CLEANUP_TEMPFAIL;
	} else if (r > 0) {
		ret = cl_act(c, where, text, value, replace_r);
	}
	free(value);
	return ret;
}

int
cleanup_milter_header(struct cleanup *c, const char *header, char **replace_r)
{
	int r;

	*replace_r = NULL;
	c->in_milter = 1;
	r = cl_check(c, CLEANUP_MILTER, header, replace_r);
	c->in_milter = 0;
	return r;
}

/*
 * Postfix's MIME headers (HDR_OPT_MIME): even in the primary header they are
 * checked with mime_header_checks, not header_checks.
 */
static int
cl_mime_header(const char *h, size_t namelen)
{
	static const char *const names[] = {
		"content-description", "content-disposition", "content-id",
		"content-transfer-encoding", "content-type", "mime-version",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == namelen && strncasecmp(names[i], h, namelen) == 0)
			return 1;
	return 0;
}

static int
cl_header_type(const char *h, size_t namelen)
{
	for (size_t i = 0; i < sizeof(cl_known) / sizeof(cl_known[0]); i++)
		if (strlen(cl_known[i].name) == namelen
		    && strncasecmp(cl_known[i].name, h, namelen) == 0)
			return cl_known[i].type;
	return H_OTHER;
}

static int
cl_dropped(const struct cleanup *c, const char *h, size_t namelen)
{
	for (size_t i = 0; i < c->cf->ndrop; i++)
		if (strlen(c->cf->drop[i]) == namelen && strncasecmp(c->cf->drop[i], h, namelen) == 0)
			return 1;
	return 0;
}

/* Postfix's address headers (HDR_OPT_SENDER, HDR_OPT_RECIP, HDR_OPT_XRECIP). */
static int
cl_address_header(const char *h, size_t namelen)
{
	static const char *const names[] = {
		"apparently-to", "bcc", "cc", "disposition-notification-to", "errors-to", "from",
		"mail-followup-to", "reply-to", "resent-bcc", "resent-cc", "resent-from",
		"resent-reply-to", "resent-sender", "resent-to", "return-receipt-to", "sender",
		"to",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == namelen && strncasecmp(names[i], h, namelen) == 0)
			return 1;
	return 0;
}

/*
 * The simple case of Postfix's header address rewriting in the local
 * context: "Name: a, b@x" becomes "Name: a@myorigin, b@x".  Returns the new
 * header (malloc'd), or NULL when nothing changes or the form is not plain.
 */
static char *
cl_rewrite_addresses(const struct cleanup *c, const char *h, size_t namelen)
{
	const char *v = h + namelen + 1, *p;
	struct buf b = BUF_INIT;
	int changed = 0;
	size_t linestart = 0;

	if (c->cf->myorigin == NULL || *c->cf->myorigin == '\0')
		return NULL;
	for (p = v; *p; p++) {
		unsigned char ch = (unsigned char)*p;

		if (!(isalnum(ch) || strchr("!#$&'*+/=?^_`{|}~.-@, \t\n", ch)))
			return NULL;
	}
	buf_append(&b, h, namelen);
	buf_puts(&b, ": ");
	p = v;
	for (int first = 1;; first = 0) {
		size_t n;
		const char *at;

		while (*p == ' ' || *p == '\t' || *p == '\n')
			p++;
		n = strcspn(p, ", \t\n");
		if (n == 0) {
			buf_free(&b);
			return NULL;
		}
		at = memchr(p, '@', n);
		if (at != NULL && (at == p || at + 1 == p + n || memchr(at + 1, '@', (size_t)(p + n - at - 1)))) {
			buf_free(&b);
			return NULL;
		}
		if (!first) {
			/* Postfix's cleanup_fold_header(): addresses joined while a line stays short */
			buf_putc(&b, ',');
			if (b.len - linestart + 1 + n + (at ? 0 : 1 + strlen(c->cf->myorigin)) < 70) {
				buf_putc(&b, ' ');
			} else {
				buf_puts(&b, "\n\t");
				linestart = b.len - 1;
			}
		}
		buf_append(&b, p, n);
		if (at == NULL) {
			buf_printf(&b, "@%s", c->cf->myorigin);
			changed = 1;
		}
		p += n;
		while (*p == ' ' || *p == '\t' || *p == '\n')
			p++;
		if (*p == '\0')
			break;
		if (*p != ',') {
			buf_free(&b);
			return NULL;
		}
		p++;
		while (*p == ' ' || *p == '\t' || *p == '\n')
			p++;
		if (*p == '\0') {
			buf_free(&b);
			return NULL;
		}
	}
	if (!changed) {
		buf_free(&b);
		return NULL;
	}
	return buf_steal(&b);
}

/* A whole header of the primary header block (c->hdr). */
static void
cl_header_out(struct cleanup *c)
{
	char *repl = NULL;
	const char *h = buf_str(&c->hdr);
	size_t namelen = strcspn(h, ":");
	int type, act;

	/* The Received: count goes up before the checks can drop the header. */
	if (cl_header_type(h, namelen) == H_RECEIVED)
		c->hops++;
	/* the primary header's MIME headers are mime_header_checks' */
	act = cl_check(c, cl_mime_header(h, namelen) ? CLEANUP_MIME : CLEANUP_HEADER, h, &repl);
	if (act == 1)
		return;
	if (act == 2) {
		h = repl;
		namelen = strcspn(h, ":");
	}
	if (cl_mime_header(h, namelen)) {
		/* MIME headers are copied without further inspection (no drop, not "seen") */
		cl_out_header(c, h);
		free(repl);
		return;
	}
	type = cl_header_type(h, namelen);
	c->seen |= 1UL << type;
	if (type == H_MESSAGE_ID || type == H_RESENT_MESSAGE_ID) {
		const char *v = h + namelen + 1;

		while (*v == ' ' || *v == '\t')
			v++;
		buf_printf(&c->logs, "I %smessage-id=%s\n", type == H_MESSAGE_ID ? "" : "resent-", v);
	}
	if (type >= H_RESENT_MESSAGE_ID && type <= H_RESENT_OTHER)
		c->resent = 1;
	if (type == H_RECEIVED && c->hops >= c->cf->hopcount_limit && c->result == CLEANUP_OK) {
		buf_puts(&c->logs, "W message rejected: hopcount exceeded\n");
		c->result = CLEANUP_HOPS;
	}
	if (type == H_DELIVERED_TO && !cl_dropped(c, h, namelen)
	    && c->ndelivered < CLEANUP_DELIVERED_MAX) {
		/* as local(8) reads them back: the first line, from its first non-blank, lower case */
		const char *v = h + namelen + 1;
		size_t n;
		char *d;

		while (*v == ' ' || *v == '\t')
			v++;
		n = strcspn(v, "\n");
		d = xstrndup(v, n);
		for (char *q = d; *q; q++)
			*q = (char)tolower((unsigned char)*q);
		c->delivered = xrealloc(c->delivered, (c->ndelivered + 1) * sizeof(*c->delivered));
		c->delivered[c->ndelivered++] = d;
	}
	if (!cl_dropped(c, h, namelen)) {
		char *rw = c->add_missing && cl_address_header(h, namelen)
			   ? cl_rewrite_addresses(c, h, namelen) : NULL;

		cl_out_header(c, rw ? rw : h);
		free(rw);
	}
	free(repl);
}

/* Postfix's mail_date(). */
static void
cl_mail_date(struct buf *b, time_t t)
{
	struct tm tm;
	char s[64];
	long off;

	localtime_r(&t, &tm);
	strftime(s, sizeof(s), "%a, %e %b %Y %H:%M:%S ", &tm);
	buf_puts(b, s);
	off = tm.tm_gmtoff / 60;
	buf_printf(b, "%+03ld%02ld", off / 60, labs(off) % 60);
	strftime(s, sizeof(s), " (%Z)", &tm);
	buf_puts(b, s);
}

/* The end of the primary header: add what is missing. */
static void
cl_header_done(struct cleanup *c)
{
	struct buf b = BUF_INIT;
	const char *rs = c->resent ? "Resent-" : "";

	int add = c->add_missing;

	if (cl_stopped(c))
		return;
	if (add && !SEEN(c, c->resent ? H_RESENT_MESSAGE_ID : H_MESSAGE_ID)) {
		struct tm tm;
		char ts[32];

		gmtime_r(&c->arrival, &tm);
		strftime(ts, sizeof(ts), "%Y%m%d%H%M%S", &tm);
		buf_printf(&b, "%sMessage-Id: <%s.%s@%s>", rs, ts, c->queue_id, c->cf->hostname);
		cl_out_lines(c, b.data, b.len);
		buf_printf(&c->logs, "I %smessage-id=%s\n", c->resent ? "resent-" : "",
			   b.data + strlen(rs) + strlen("Message-Id: "));
		buf_reset(&b);
		c->seen |= 1UL << (c->resent ? H_RESENT_MESSAGE_ID : H_MESSAGE_ID);
	}
	if (!SEEN(c, H_MESSAGE_ID))
		buf_puts(&c->logs, "I message-id=<>\n");
	if (add && !SEEN(c, c->resent ? H_RESENT_DATE : H_DATE)) {
		buf_printf(&b, "%sDate: ", rs);
		cl_mail_date(&b, c->arrival);
		cl_out_lines(c, b.data, b.len);
		buf_reset(&b);
	}
	if (add && !SEEN(c, c->resent ? H_RESENT_FROM : H_FROM)) {
		buf_printf(&b, "%sFrom: %s", rs, *c->sender ? c->sender : "MAILER-DAEMON");
		cl_out_lines(c, b.data, b.len);
		buf_reset(&b);
	}
	if (add && !SEEN(c, H_TO) && !SEEN(c, H_CC) && !SEEN(c, H_RESENT_TO) && !SEEN(c, H_RESENT_CC)
	    && c->cf->rcpt_witheld && *c->cf->rcpt_witheld
	    && cl_is_header(c->cf->rcpt_witheld, strlen(c->cf->rcpt_witheld)) > 0)
		cl_out_lines(c, c->cf->rcpt_witheld, strlen(c->cf->rcpt_witheld));
	buf_free(&b);
}

static void
cl_body_record(struct cleanup *c, const char *text, size_t len, int cont)
{
	char *repl = NULL;
	int act = 0;

	if (c->cf->body_checks && c->cf->check != NULL && !cl_stopped(c)
	    && (c->cf->body_checks_size_limit == 0 || c->body_offset
		< c->cf->body_checks_size_limit)) {
		char *s = xstrndup(text, len);

		act = cl_check(c, CLEANUP_BODY, s, &repl);
		free(s);
	}
	c->body_offset += (long)len + (cont ? 0 : 1);
	if (act == 1)
		return;
	if (act == 2) {
		cl_out_record(c, repl, strlen(repl), cont);
		free(repl);
		return;
	}
	cl_out_record(c, text, len, cont);
}


/* ---- MIME (Postfix's mime_state, enough for the checks) ---------------- */

struct cl_tok {
	int	type;		/* 'T' token or quoted string, else the special character */
	char   *value;
};

/*
 * Postfix's header_token() for Content-Type: tokens up to the next ';'
 * (consumed), comments skipped, quoted strings as tokens.  Returns the count
 * (at most max kept), or -1 at the end of the value.
 */
static int
cl_header_token(const char **pp, struct cl_tok *tok, int max)
{
	static const char specials[] = "()<>@,;:\\\"/[]?=";
	const char *p = *pp;
	int n = 0;

	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
			p++;
		if (*p == '\0') {
			*pp = p;
			return n > 0 ? n : -1;
		}
		if (*p == ';') {
			*pp = p + 1;
			return n;
		}
		if (*p == '(') {
			int depth = 0;

			for (; *p; p++) {
				if (*p == '\\' && p[1]) {
					p++;
				} else if (*p == '(') {
					depth++;
				} else if (*p == ')' && --depth == 0) {
					p++;
					break;
				}
			}
			continue;
		}
		if (*p == '"') {
			struct buf b = BUF_INIT;

			for (p++; *p && *p != '"'; p++) {
				if (*p == '\\' && p[1])
					p++;
				buf_putc(&b, *p);
			}
			if (*p == '"')
				p++;
			if (n < max) {
				tok[n].type = 'T';
				tok[n].value = b.data ? buf_steal(&b) : xstrdup("");
				n++;
			}
			buf_free(&b);
			continue;
		}
		if (strchr(specials, *p) != NULL) {
			if (n < max) {
				tok[n].type = (unsigned char)*p;
				tok[n].value = NULL;
				n++;
			}
			p++;
			continue;
		}
		{
			const char *st = p;

			while (*p && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r'
			       && !iscntrl((unsigned char)*p) && strchr(specials, *p) == NULL)
				p++;
			if (p == st)	/* a control character */
				p++;
			else if (n < max) {
				tok[n].type = 'T';
				tok[n].value = xstrndup(st, (size_t)(p - st));
				n++;
			}
		}
	}
}

static void
cl_tok_free(struct cl_tok *tok, int n)
{
	for (int i = 0; i < n; i++)
		free(tok[i].value);
}

#define TOKEQ(t, s) ((t).type == 'T' && strcasecmp((t).value, (s)) == 0)

static void
cl_mime_push(struct cleanup *c, int ctype, int stype, const char *boundary)
{
	struct cl_bound *b = xcalloc(1, sizeof(*b));
	size_t n = strlen(boundary);

	c->nesting++;
	b->ctype = ctype;
	b->stype = stype;
	b->len = n > CLEANUP_MIME_BOUNDLEN ? CLEANUP_MIME_BOUNDLEN : n;
	b->text = xstrndup(boundary, b->len);
	b->next = c->stack;
	c->stack = b;
}

static void
cl_mime_pop(struct cleanup *c)
{
	struct cl_bound *b = c->stack;

	c->nesting--;
	c->stack = b->next;
	free(b->text);
	free(b);
}

/* mime_state_content_type(): a Content-Type header (any header block). */
static void
cl_content_type(struct cleanup *c, const char *h)
{
	struct cl_tok tok[3];
	const char *p = h + strcspn(h, ":") + 1;
	int n;

	if ((n = cl_header_token(&p, tok, 3)) <= 0)
		return;
	if (TOKEQ(tok[0], "text")) {
		c->ctype = CT_TEXT;
		c->stype = n >= 3 && tok[1].type == '/' && TOKEQ(tok[2], "plain") ? STY_PLAIN
			   : STY_OTHER;
	} else if (TOKEQ(tok[0], "message")) {
		c->ctype = CT_MESSAGE;
		c->stype = STY_OTHER;
		if (n >= 3 && tok[1].type == '/') {
			if (TOKEQ(tok[2], "rfc822"))
				c->stype = STY_RFC822;
			else if (TOKEQ(tok[2], "partial"))
				c->stype = STY_PARTIAL;
			else if (TOKEQ(tok[2], "external-body"))
				c->stype = STY_EXTERN;
			else if (TOKEQ(tok[2], "global"))
				c->stype = STY_GLOBAL;
		}
	} else if (TOKEQ(tok[0], "multipart")) {
		int dct = CT_TEXT, dst = STY_PLAIN;

		c->ctype = CT_MULTIPART;
		if (n >= 3 && tok[1].type == '/' && TOKEQ(tok[2], "digest")) {
			dct = CT_MESSAGE;
			dst = STY_RFC822;
		}
		cl_tok_free(tok, n);
		while ((n = cl_header_token(&p, tok, 3)) >= 0) {
			if (n >= 3 && TOKEQ(tok[0], "boundary") && tok[1].type == '='
			    && tok[2].type == 'T' && c->nesting <= CLEANUP_MIME_MAXDEPTH)
				cl_mime_push(c, dct, dst, tok[2].value);
			cl_tok_free(tok, n);
		}
		return;
	} else {
		c->ctype = CT_OTHER;
	}
	cl_tok_free(tok, n);
}

/* A whole header of a part (ST_MULTIPART) or of an attached message (ST_NESTED). */
static void
cl_part_header_out(struct cleanup *c)
{
	char *repl = NULL;
	const char *h = buf_str(&c->hdr);
	int act;

	act = cl_check(c, c->state == ST_NESTED && !cl_mime_header(h, strcspn(h, ":"))
		       ? CLEANUP_NESTED : CLEANUP_MIME, h, &repl);
	if (act == 1)
		return;
	cl_out_header(c, act == 2 ? repl : h);
	free(repl);
}

static void cl_mime(struct cleanup *c, const char *text, size_t len, int cont);

/* One record: len bytes, cont when the line goes on in the next record. */
static void
cl_record(struct cleanup *c, const char *text, size_t len, int cont)
{
	const struct cleanup_conf *cf = c->cf;

	if (c->first) {
		size_t gt = 0;

		while (gt < len && text[gt] == '>')
			gt++;
		if (len - gt >= 5 && memcmp(text + gt, "From ", 5) == 0) {
			/* smtpd(8) turns a leading mbox From_ line into a header */
			struct buf b = BUF_INIT;

			buf_puts(&b, "X-Mailbox-Line: ");
			buf_append(&b, text, len);
			c->first = 0;
			cl_record(c, b.data, b.len, cont);
			c->first = 1;
			buf_free(&b);
			return;
		}
		c->first = 0;
	}
	if (cf->have_reject && c->result == CLEANUP_OK) {
		for (size_t i = 0; i < len; i++) {
			if (cf->reject_chars[(unsigned char)text[i]]) {
				char *s = xstrndup(text, len);

				(void)cl_act(c, CLEANUP_CONTENT, s, "REJECT disallowed character", NULL);
				free(s);
				break;
			}
		}
	}
	if (cf->have_strip) {
		char *s = xmalloc(len + 1);
		size_t n = 0;

		for (size_t i = 0; i < len; i++)
			if (!cf->strip_chars[(unsigned char)text[i]])
				s[n++] = text[i];
		cl_mime(c, s, n, cont);
		free(s);
		return;
	}
	cl_mime(c, text, len, cont);
}

/* A record after the character checks: Postfix's mime_state for the primary header. */
static void
cl_mime(struct cleanup *c, const char *text, size_t len, int cont)
{
	size_t hl;

	if (c->state != ST_BODY) {
		if (c->hdr.len > 0) {
			if (c->prev_cont) {
				if (c->hdr.len < c->cf->header_size_limit)
					buf_append(&c->hdr, text, len);
				c->prev_cont = cont;
				return;
			}
			if (len > 0 && (text[0] == ' ' || text[0] == '\t')) {
				if (c->hdr.len < c->cf->header_size_limit) {
					buf_putc(&c->hdr, '\n');
					buf_append(&c->hdr, text, len);
				}
				c->prev_cont = cont;
				return;
			}
			{
				const char *h = buf_str(&c->hdr);
				size_t nl = strcspn(h, ":");

				if (nl == strlen("content-type") && strncasecmp(h, "content-type", nl) == 0)
					cl_content_type(c, h);
			}
			if (c->state == ST_HEADER)
				cl_header_out(c);
			else
				cl_part_header_out(c);
			buf_reset(&c->hdr);
			c->prev_cont = 0;
		}
		if ((hl = cl_is_header(text, len)) > 0) {
			size_t i = hl;

			buf_append(&c->hdr, text, hl);
			while (i < len && (text[i] == ' ' || text[i] == '\t'))
				i++;
			buf_append(&c->hdr, text + i, len - i);
			c->prev_cont = cont;
			return;
		}
		/* the end of a header block */
		if (c->state == ST_HEADER)
			cl_header_done(c);
		if (len == 0) {
			c->body_offset = 0;
			if (c->ctype == CT_MESSAGE && (c->stype == STY_RFC822 || c->stype == STY_GLOBAL)) {
				c->state = ST_NESTED;
				c->ctype = CT_TEXT;
				c->stype = STY_PLAIN;
			} else if (c->ctype == CT_MULTIPART) {
				c->state = ST_BODY;
				c->ctype = CT_OTHER;
				c->stype = STY_OTHER;
			} else {
				c->state = ST_BODY;
			}
		} else {
			/* no empty line after the primary header: one is stored */
			if (c->state == ST_HEADER)
				cl_body_record(c, "", 0, 0);
			c->state = ST_BODY;
		}
		if (len == 0 && c->state == ST_NESTED) {
			/* the empty line itself is body output, then the attached message's header */
			cl_body_record(c, text, len, cont);
			c->prev_cont = cont;
			return;
		}
		if (c->state != ST_BODY) {
			cl_body_record(c, text, len, cont);
			c->prev_cont = cont;
			return;
		}
	}
	/* body: a boundary of one of the enclosing multiparts? */
	if (c->stack != NULL && !c->prev_cont && len > 2 && text[0] == '-' && text[1] == '-') {
		for (struct cl_bound *b = c->stack; b != NULL; b = b->next) {
			if (len >= 2 + b->len && memcmp(text + 2, b->text, b->len) == 0) {
				while (b != c->stack)
					cl_mime_pop(c);
				if (len >= 4 + b->len && memcmp(text + 2 + b->len, "--", 2) == 0) {
					cl_mime_pop(c);
					c->state = ST_BODY;
					c->ctype = CT_OTHER;
					c->stype = STY_OTHER;
				} else {
					c->state = ST_MULTIPART;
					c->ctype = b->ctype;
					c->stype = b->stype;
				}
				break;
			}
		}
	}
	cl_body_record(c, text, len, cont);
	c->prev_cont = cont;
}

void
cleanup_feed(struct cleanup *c, const char *data, size_t len)
{
	size_t lim = c->cf->line_limit;

	while (len > 0) {
		const char *nl = memchr(data, '\n', len);
		size_t n = nl ? (size_t)(nl - data) : len;
		size_t room = lim > 0 ? lim - c->rec.len : n;

		if (n >= room && lim > 0) {
			/*
			 * The record is full: it is cut here and the line goes on,
			 * even when its LF comes next (smtpd then reads an empty
			 * record: a line of exactly line_length_limit is two).
			 */
			buf_append(&c->rec, data, room);
			data += room;
			len -= room;
			cl_record(c, c->rec.data, c->rec.len, 1);
			buf_reset(&c->rec);
			continue;
		}
		buf_append(&c->rec, data, n);
		if (nl == NULL)
			return;
		cl_record(c, c->rec.data ? c->rec.data : "", c->rec.len, 0);
		buf_reset(&c->rec);
		data += n + 1;
		len -= n + 1;
	}
}

void
cleanup_finish(struct cleanup *c)
{
	if (c->rec.len > 0 || c->prev_cont) {
		/* a last line without its LF (or cut right at its end) ends here */
		cl_record(c, c->rec.data ? c->rec.data : "", c->rec.len, 0);
		buf_reset(&c->rec);
	}
	if (c->state != ST_BODY) {
		if (c->hdr.len > 0) {
			if (c->state == ST_HEADER)
				cl_header_out(c);
			else
				cl_part_header_out(c);
			buf_reset(&c->hdr);
		}
		if (c->state == ST_HEADER)
			cl_header_done(c);
		c->state = ST_BODY;
	}
}

void
cleanup_content_start(struct cleanup *c)
{
	c->first = 1;
}
