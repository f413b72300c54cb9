/*
 * policy_request: the request Postfix 3.7's check_policy_service() sends,
 * and the parser of the answer (Postfix's plain attribute protocol:
 * "name=value" lines, an empty line ends them).  See policy.h.
 */
#include "policy/policy.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy/restrict.h"
#include "util/buf.h"
#include "util/xalloc.h"

static void
attr(struct buf *b, const char *name, const char *value)
{
	buf_printf(b, "%s=%s\n", name, value ? value : "");
}

char *
policy_request_build(const struct restrict_req *q, const struct policy_server *srv)
{
	struct buf b = BUF_INIT;
	const char *where = q->where ? q->where : "";
	bool	counts = strcasecmp(where, "DATA") == 0 || strcasecmp(where, "BDAT") == 0
			 || strcasecmp(where, "END-OF-MESSAGE") == 0;

	/* smtpd_check.c, check_policy_service(): the same names in the same order */
	attr(&b, "request", "smtpd_access_policy");
	attr(&b, "protocol_state", strcmp(where, "BDAT") == 0 ? "DATA" : where);
	attr(&b, "protocol_name", q->proto);
	attr(&b, "client_address", q->addr);
	attr(&b, "client_name", q->name);
	attr(&b, "client_port", q->client_port);
	attr(&b, "reverse_client_name", q->reverse_name);
	attr(&b, "server_address", q->server_addr);
	attr(&b, "server_port", q->server_port);
	attr(&b, "helo_name", q->helo);
	attr(&b, "sender", q->sender);
	attr(&b, "recipient", q->recipient);
	buf_printf(&b, "recipient_count=%zu\n", counts ? q->rcpt_count : 0);
	attr(&b, "queue_id", q->queue_id);
	attr(&b, "instance", q->instance);
	buf_printf(&b, "size=%lu\n", q->size);
	attr(&b, "etrn_domain", "");
	attr(&b, "stress", q->stress);
	/* nobody authenticates, no client certificate is looked at: Postfix sends them empty */
	attr(&b, "sasl_method", "");
	attr(&b, "sasl_username", "");
	attr(&b, "sasl_sender", "");
	attr(&b, "ccert_subject", "");
	attr(&b, "ccert_issuer", "");
	attr(&b, "ccert_fingerprint", "");
	attr(&b, "ccert_pubkey_fingerprint", "");
	attr(&b, "encryption_protocol", q->tls_protocol);
	attr(&b, "encryption_cipher", q->tls_cipher);
	buf_printf(&b, "encryption_keysize=%d\n", q->tls_protocol != NULL ? q->tls_keysize : 0);
	attr(&b, "policy_context", srv->policy_context);
	buf_putc(&b, '\n');
	return buf_steal(&b);
}

/* ---- the answer ---- */

void
policy_parser_init(struct policy_parser *pp)
{
	memset(pp, 0, sizeof(*pp));
}

void
policy_parser_free(struct policy_parser *pp)
{
	free(pp->line);
	free(pp->action);
	memset(pp, 0, sizeof(*pp));
}

/*
 * One whole line (no newline).  As attr_scan_plain() with ATTR_FLAG_MISSING
 * and one wanted attribute: lines before "action" are skipped, the first
 * "action=" is the answer, the lines after it are skipped too; "action"
 * without '=' is an error.
 */
static enum policy_parse_status
parse_line(struct policy_parser *pp, const char **why_r)
{
	const char *eq;

	if (pp->action != NULL)
		return POLICY_PARSE_MORE;
	eq = memchr(pp->line, '=', pp->len);
	if (eq == NULL) {
		if (pp->len == 6 && memcmp(pp->line, "action", 6) == 0) {
			*why_r = "missing value for string attribute action";
			return POLICY_PARSE_ERROR;
		}
		return POLICY_PARSE_MORE;
	}
	if (eq - pp->line == 6 && memcmp(pp->line, "action", 6) == 0)
		pp->action = xstrndup(eq + 1, pp->len - 7);
	return POLICY_PARSE_MORE;
}

enum policy_parse_status
policy_parse(struct policy_parser *pp, const char *data, size_t n, size_t *used_r,
	     const char **why_r)
{
	size_t	i = 0;
	enum policy_parse_status st = POLICY_PARSE_MORE;

	*why_r = NULL;
	if (pp->done) {
		*used_r = 0;
		return POLICY_PARSE_DONE;
	}
	while (i < n) {
		const char *nl = memchr(data + i, '\n', n - i);
		size_t	take = nl ? (size_t)(nl - (data + i)) : n - i;

		if (pp->len + take > POLICY_LINE_MAX) {
			*used_r = i;
			*why_r = "answer line too long";
			return POLICY_PARSE_ERROR;
		}
		if (pp->total + take + 1 > POLICY_ANSWER_MAX) {
			*used_r = i;
			*why_r = "answer too long";
			return POLICY_PARSE_ERROR;
		}
		if (pp->len + take + 1 > pp->cap) {
			pp->cap = pp->len + take + 64;
			pp->line = xrealloc(pp->line, pp->cap);
		}
		memcpy(pp->line + pp->len, data + i, take);
		pp->len += take;
		pp->line[pp->len] = '\0';
		pp->total += take;
		i += take;
		if (nl == NULL)
			break;
		i++;		/* the newline */
		pp->total++;
		if (pp->len == 0) {
			pp->done = true;
			st = POLICY_PARSE_DONE;
			break;
		}
		/* a NUL inside a line ends its text, as a C string would */
		pp->len = strlen(pp->line);
		st = pp->len == 0 ? POLICY_PARSE_MORE : parse_line(pp, why_r);
		pp->len = 0;
		if (st != POLICY_PARSE_MORE)
			break;
	}
	*used_r = i;
	return st;
}

/* valid_utf8_string(): well-formed UTF-8, no overlong forms or surrogates. */
bool
policy_valid_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		unsigned c = *p;
		int	n;
		unsigned cp;

		if (c < 0x80) {
			p++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			n = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 3, cp = c & 0x07;
		else
			return false;
		p++;
		for (int i = 0; i < n; i++, p++) {
			if ((*p & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (*p & 0x3f);
		}
		if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
		    || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
			return false;
	}
	return true;
}

char *
policy_printable(const char *s)
{
	char   *t = xstrdup(s);

	for (char *c = t; *c; c++)
		if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
			*c = '?';
	return t;
}
