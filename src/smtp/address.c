/*
 * address: MAIL FROM / RCPT TO argument parsing.  Contract in address.h.
 *
 * Written from Postfix's observable behaviour (replies of a running Postfix
 * 3.7.11), not from its code.
 */
#include "smtp/address.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/buf.h"
#include "util/xalloc.h"

#define IS_BLANK(c)	((c) == ' ' || (c) == '\t')
#define IS_CTL(c)	((unsigned char)(c) < 0x20 || (unsigned char)(c) == 0x7f)
#define RFC822_SPECIALS	"()<>@,;:\\\".[]"

int
smtp_split_command(const char *line, size_t len, const char **verb_r, size_t *verb_len_r,
		   const char **args_r)
{
	size_t i = 0, start;

	if (line == NULL)
		line = "";	/* len is 0: no arithmetic on a null pointer */
	while (i < len && IS_BLANK(line[i]))
		i++;
	if (i == len) {
		*verb_r = line + len;
		*verb_len_r = 0;
		*args_r = line + len;
		return -1;
	}
	start = i;
	while (i < len && !IS_BLANK(line[i]))
		i++;
	*verb_r = line + start;
	*verb_len_r = i - start;
	*args_r = line + i;
	return 0;
}

int
smtp_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p, *e;
	unsigned int cp;
	int n;

	if (len == 0)
		return 1;	/* and s may be NULL: no pointer arithmetic on it */
	p = (const unsigned char *)s;
	e = p + len;
	while (p < e) {
		if (*p < 0x80) {
			p++;
			continue;
		}
		if (*p >= 0xc2 && *p <= 0xdf) {
			n = 1;
			cp = *p & 0x1f;
		} else if (*p >= 0xe0 && *p <= 0xef) {
			n = 2;
			cp = *p & 0x0f;
		} else if (*p >= 0xf0 && *p <= 0xf4) {
			n = 3;
			cp = *p & 0x07;
		} else {
			return 0;
		}
		if (e - p <= n)
			return 0;
		for (int k = 1; k <= n; k++) {
			if ((p[k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (p[k] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff
		    || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		p += n + 1;
	}
	return 1;
}

/*
 * Command words: the end of the word that starts at p (no leading blanks).
 * Blanks inside "..." or <...> do not end a word; backslash escapes a byte.
 */
static const char *
word_end(const char *p)
{
	int quoted = 0, angle = 0;

	for (; *p; p++) {
		if (*p == '\\') {
			if (p[1] == '\0')
				return p + 1;
			p++;
		} else if (quoted) {
			if (*p == '"')
				quoted = 0;
		} else if (*p == '"') {
			quoted = 1;
		} else if (*p == '<') {
			angle++;
		} else if (*p == '>') {
			if (angle > 0)
				angle--;
		} else if (IS_BLANK(*p) && angle == 0) {
			break;
		}
	}
	return p;
}

static const char *
skip_blanks(const char *p)
{
	while (IS_BLANK(*p))
		p++;
	return p;
}

/* RFC 822 lexemes of the address word. */
enum { LX_ATOM, LX_QSTR, LX_LIT, LX_SPECIAL };

struct lexeme {
	int	type;
	char	ch;		/* LX_SPECIAL: which one */
	size_t	off, len;	/* text (unquoted) in lexer.text */
};

struct lexer {
	struct lexeme *v;
	size_t	n;
	struct buf text;
};

static void
lx_push(struct lexer *lx, int type, char ch, size_t off)
{
	struct lexeme *l = &lx->v[lx->n++];

	l->type = type;
	l->ch = ch;
	l->off = off;
	l->len = lx->text.len - off;
}

#define IS_WORD(l)	((l)->type != LX_SPECIAL)
#define IS_SP(l, c)	((l)->type == LX_SPECIAL && (l)->ch == (c))

/* Split s[0..len) into lexemes; comments are dropped.  Returns -1 on bad syntax. */
static int
lx_scan(struct lexer *lx, const char *s, size_t len)
{
	size_t i = 0, off;
	int depth;
	unsigned char c;

	/* At most one lexeme per input byte, plus nothing. */
	lx->v = xcalloc(len + 1, sizeof(*lx->v));
	lx->n = 0;
	buf_reserve(&lx->text, len + 2);
	while (i < len) {
		c = (unsigned char)s[i];
		if (IS_BLANK(c)) {
			i++;
		} else if (IS_CTL(c)) {
			return -1;
		} else if (c == '(') {
			/* Comment, nested, may run to the end (Postfix accepts that). */
			for (depth = 1, i++; i < len && depth > 0; i++) {
				if (s[i] == '\\')
					i++;
				else if (s[i] == '(')
					depth++;
				else if (s[i] == ')')
					depth--;
			}
			if (i > len)
				i = len;
		} else if (c == '"') {
			off = lx->text.len;
			for (i++; i < len && s[i] != '"'; i++) {
				if (s[i] == '\\' && ++i == len)
					return -1;
				if (IS_CTL(s[i]))
					return -1;
				buf_putc(&lx->text, s[i]);
			}
			if (i == len)
				return -1;	/* unbalanced quote: <"abc@local> */
			i++;
			lx_push(lx, LX_QSTR, 0, off);
		} else if (c == '[') {
			off = lx->text.len;
			buf_putc(&lx->text, '[');
			for (i++; i < len && s[i] != ']'; i++) {
				if (s[i] == '\\' && ++i == len)
					return -1;
				if (IS_CTL(s[i]))
					return -1;
				buf_putc(&lx->text, s[i]);
			}
			if (i < len)
				i++;
			buf_putc(&lx->text, ']');	/* an unclosed literal is closed */
			lx_push(lx, LX_LIT, 0, off);
		} else if (strchr("<>@,;:.", c) != NULL) {
			off = lx->text.len;
			buf_putc(&lx->text, (char)c);
			lx_push(lx, LX_SPECIAL, (char)c, off);
			i++;
		} else {
			off = lx->text.len;
			for (; i < len; i++) {
				c = (unsigned char)s[i];
				/* ')' and ']' outside their pairs are atom bytes (Postfix: <a)b@c>). */
				if (IS_BLANK(c) || (c != '\0' && strchr("(\"[<>@,;:.", c)))
					break;
				if (c == '\\') {
					if (++i == len)
						return -1;	/* trailing backslash */
					c = (unsigned char)s[i];
				}
				if (IS_CTL(c))
					return -1;
				buf_putc(&lx->text, (char)c);
			}
			if (lx->text.len == off)
				return -1;	/* cannot happen: the first byte is an atom byte */
			lx_push(lx, LX_ATOM, 0, off);
		}
	}
	return 0;
}

static int
all_digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return n > 0;
}

/* Host name check, as Postfix's resolver applies it; sets *utf8_r. */
static int
valid_hostname(const char *s, size_t len, int *utf8_r)
{
	size_t i, start, label;
	int numeric = 1;

	if (len > 0 && s[len - 1] == '.')
		len--;		/* one trailing dot is allowed */
	if (len == 0 || len > 255)
		return 0;
	for (start = 0; start <= len; start = i + 1) {
		for (i = start; i < len && s[i] != '.'; i++) {
			unsigned char c = (unsigned char)s[i];

			if (c >= 0x80)
				*utf8_r = 1;
			else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
				   || (c >= '0' && c <= '9') || c == '-' || c == '_'))
				return 0;
		}
		label = i - start;
		if (label == 0 || label > 63 || s[start] == '-' || s[i - 1] == '-')
			return 0;
		if (!all_digits(s + start, label))
			numeric = 0;
	}
	if (numeric)
		return 0;	/* 1.2.3.4 without brackets is not a host name */
	if (*utf8_r && !smtp_utf8_valid(s, len))
		return 0;
	return 1;
}

/* [1.2.3.4] or [IPv6:addr]: text includes the brackets. */
static int
valid_literal(const char *s, size_t len)
{
	char tmp[64];
	unsigned char bin[16];
	const char *p = s + 1;
	size_t n = len - 2;
	int af = AF_INET;

	if (n >= 5 && strncasecmp(p, "ipv6:", 5) == 0) {
		af = AF_INET6;
		p += 5;
		n -= 5;
	}
	if (n == 0 || n >= sizeof(tmp))
		return 0;
	memcpy(tmp, p, n);
	tmp[n] = '\0';
	return inet_pton(af, tmp, bin) == 1;
}

/*
 * The address proper: lexemes v[0..n) after angle brackets and the source
 * route are gone and the list has one element.  Appends the internal form.
 */
static int
parse_addr_spec(struct lexer *lx, const struct lexeme *v, size_t n, struct buf *addr,
		struct smtp_path *out)
{
	size_t at = n, k;
	struct buf dom = BUF_INIT;
	int ok = 1, utf8 = 0;

	for (k = 0; k < n; k++) {
		if (k > 0 && IS_WORD(&v[k]) && IS_WORD(&v[k - 1]))
			return -1;	/* <a b@c>: two words in a row */
		if (IS_SP(&v[k], '@'))
			at = k;
	}
	if (at < n) {
		/* Domain: atoms and dots, or one address literal. */
		if (at + 1 == n)
			return -1;	/* <u@>, <john@ > */
		if (n - at == 2 && v[at + 1].type == LX_LIT) {
			if (!valid_literal(lx->text.data + v[at + 1].off, v[at + 1].len))
				return -1;
		} else {
			for (k = at + 1; k < n && ok; k++) {
				if (v[k].type == LX_ATOM || IS_SP(&v[k], '.'))
					buf_append(&dom, lx->text.data + v[k].off, v[k].len);
				else
					ok = 0;
			}
			ok = ok && valid_hostname(buf_str(&dom), dom.len, &utf8);
			buf_free(&dom);
			if (!ok)
				return -1;
			out->domain_8bit = utf8;
		}
	}
	for (k = 0; k < n; k++)
		buf_append(addr, lx->text.data + v[k].off, v[k].len);

	/*
	 * Whatever reads the internal form later splits it at its last '@'.  With
	 * no real '@', an '@' from a quoted string, an escape or a literal
	 * (<"a@evil">, <a\@evil>, <[x@evil]>) would pose as a domain that was
	 * never checked: refuse (sender-specified routing, checklist row 27).
	 */
	if (at == n && addr->len > 0 && memchr(addr->data, '@', addr->len) != NULL)
		return -1;
	return 0;
}

/* The address word: angle brackets, route, list, then the address itself. */
static int
parse_address_word(const char *w, size_t wlen, struct buf *addr, struct smtp_path *out)
{
	struct lexer lx = { NULL, 0, BUF_INIT };
	struct lexeme *v;
	size_t n, k, lt, gt, first, elem_start, elems = 0;
	int ret = -1;

	/* <...> around the whole word is dropped first: <u@[1.2.3.4> is fine. */
	if (wlen >= 2 && w[0] == '<' && w[wlen - 1] == '>') {
		w++;
		wlen -= 2;
	}
	if (lx_scan(&lx, w, wlen) < 0)
		goto done;
	v = lx.v;
	n = lx.n;

	/* Inner angle brackets: a phrase may precede them; only '>' may follow. */
	for (lt = 0; lt < n && !IS_SP(&v[lt], '<'); lt++)
		;
	if (lt < n) {
		for (gt = lt + 1; gt < n && !IS_SP(&v[gt], '>'); gt++)
			if (IS_SP(&v[gt], '<'))
				goto done;
		if (gt == n)
			goto done;		/* <a@b: unclosed */
		for (k = gt + 1; k < n; k++)
			if (!IS_SP(&v[k], '>'))
				goto done;	/* <a@b>x */
		v += lt + 1;
		n = gt - lt - 1;
	} else {
		while (n > 0 && IS_SP(&v[n - 1], '>'))
			n--;			/* a@b> */
		for (k = 0; k < n; k++)
			if (IS_SP(&v[k], '>'))
				goto done;	/* <a>b@c> */
	}
	for (k = 0; k < n; k++)
		if (IS_SP(&v[k], ';'))
			goto done;

	/* Source route @a,@b: is removed (RFC 5321 4.1.2, C.) */
	if (n > 0 && IS_SP(&v[0], '@')) {
		for (k = 0; k < n && !IS_SP(&v[k], ':'); k++)
			;
		if (k < n) {
			v += k + 1;
			n -= k + 1;
			out->source_route = 1;
		}
	}

	/* A list: empty elements are ignored, more than one address is bad. */
	first = n;
	for (elem_start = 0, k = 0; k <= n; k++) {
		if (k == n || IS_SP(&v[k], ',')) {
			if (k > elem_start) {
				if (elems++ == 0)
					first = elem_start;
				else
					goto done;	/* <a@b,c@d> */
			}
			elem_start = k + 1;
		}
	}
	if (elems == 0) {
		ret = 0;			/* <>, <@x:>, <""> */
		goto done;
	}
	for (k = first; k < n && !IS_SP(&v[k], ','); k++)
		;
	ret = parse_addr_spec(&lx, v + first, k - first, addr, out);
done:
	free(lx.v);
	buf_free(&lx.text);
	return ret;
}

/* Postfix's smtpd_token() white space: also CR, LF, VT and FF. */
#define IS_TOKEN_SPACE(c) ((c) == ' ' || (c) == '\t' || (c) == '\r' || (c) == '\n' \
			   || (c) == '\v' || (c) == '\f')

/*
 * The end of the "..." or <...> group that starts at p[-1] (close is '"' or
 * '>'); *open_r is set when the text ends before the group does (Postfix's
 * tokenizer error).
 */
static const char *
token_group_end(const char *p, char close, int *open_r)
{
	char stack[64];
	size_t depth = 0;

	stack[depth++] = close;
	while (*p) {
		char c = *p++;

		if (c == '\\') {
			if (*p == '\0')
				break;
			p++;
		} else if (c == stack[depth - 1]) {
			if (--depth == 0)
				return p;
		} else if (c == '"' && depth < sizeof(stack)) {
			stack[depth++] = '"';
		} else if (c == '<' && stack[depth - 1] == '>' && depth < sizeof(stack)) {
			stack[depth++] = '>';
		}
	}
	*open_r = 1;
	return p;
}

/* Does the token that starts at p leave a "..." or <...> group open? */
static int
token_unclosed(const char *p)
{
	int open = 0;

	while (*p && !IS_TOKEN_SPACE(*p) && !open) {
		char c = *p++;

		if (c == '<' || c == '"')
			p = token_group_end(p, c == '<' ? '>' : '"', &open);
		else if (c == '\\' && *p)
			p++;
	}
	return open;
}

int
smtp_parse_path(const char *arg, const char *keyword, struct smtp_path *out)
{
	size_t klen = strlen(keyword);
	const char *w, *we, *a, *ae;
	struct buf addr = BUF_INIT;

	memset(out, 0, sizeof(*out));
	if (strlen(arg) > SMTP_ARG_MAX)
		return PATH_BAD;

	w = skip_blanks(arg);
	we = word_end(w);
	if ((size_t)(we - w) < klen || strncasecmp(w, keyword, klen) != 0)
		return PATH_SYNTAX;
	a = w + klen;
	if (a == we) {			/* "FROM: <a@b>" */
		a = skip_blanks(we);
		we = word_end(a);
	}
	ae = we;
	if (a == ae)
		return PATH_SYNTAX;	/* "FROM:" with no address */

	if (parse_address_word(a, (size_t)(ae - a), &addr, out) < 0
	    || (addr.len == 0 && strcasecmp(keyword, "FROM:") != 0)) {	/* RCPT TO:<> */
		buf_free(&addr);
		memset(out, 0, sizeof(*out));
		out->word = a;
		out->word_len = (size_t)(ae - a);
		out->unclosed = token_unclosed(a);
		return PATH_BAD;
	}
	for (size_t i = 0; i < addr.len; i++)
		if ((unsigned char)addr.data[i] >= 0x80)
			out->has_8bit = 1;
	out->addr = addr.data ? buf_steal(&addr) : xstrdup("");
	out->params = skip_blanks(ae);
	out->word = a;
	out->word_len = (size_t)(ae - a);
	return PATH_OK;
}

int
smtp_parse_address(const char *text, struct smtp_path *out)
{
	struct buf addr = BUF_INIT;
	size_t len = strlen(text);

	memset(out, 0, sizeof(*out));
	if (len == 0 || len > SMTP_ARG_MAX)
		return PATH_BAD;
	if (parse_address_word(text, len, &addr, out) < 0) {
		buf_free(&addr);
		memset(out, 0, sizeof(*out));
		return PATH_BAD;
	}
	for (size_t i = 0; i < addr.len; i++)
		if ((unsigned char)addr.data[i] >= 0x80)
			out->has_8bit = 1;
	out->addr = addr.data ? buf_steal(&addr) : xstrdup("");
	out->params = text + len;
	out->word = text;
	out->word_len = len;
	return PATH_OK;
}

int
smtp_path_resolvable(const struct smtp_path *p, int utf8)
{
	if (p->addr == NULL)
		return 0;
	/* Postfix's resolver, allow_min_user = no: "-x" could pass for an option. */
	if (p->addr[0] == '-')
		return 0;
	/* RFC 6531: a domain in UTF-8 only with SMTPUTF8. */
	if (p->domain_8bit && !utf8)
		return 0;
	return 1;
}

int
smtp_params_has(const char *params, const char *keyword)
{
	const char *w = skip_blanks(params), *we;
	size_t klen = strlen(keyword);

	for (; *w; w = skip_blanks(we)) {
		we = word_end(w);
		if ((size_t)(we - w) == klen && strncasecmp(w, keyword, klen) == 0)
			return 1;
	}
	return 0;
}

char *
smtp_collapse_args(const char *args, const char *trailing, int *trailing_r)
{
	const char *tok[SMTP_ARG_MAX / 2 + 1];
	size_t tlen[SMTP_ARG_MAX / 2 + 1];
	size_t n = 0, i;
	const char *p = args;
	struct buf out = BUF_INIT;
	int open = 0;		/* VRFY parses an unclosed group like any other text */

	*trailing_r = 0;
	if (strlen(args) > SMTP_ARG_MAX)
		return NULL;
	while (*p) {
		const char *start;

		while (IS_TOKEN_SPACE(*p))
			p++;
		if (*p == '\0')
			break;
		start = p;
		while (*p && !IS_TOKEN_SPACE(*p)) {
			char c = *p++;

			if (c == '<' || c == '"') {
				p = token_group_end(p, c == '<' ? '>' : '"', &open);
			} else if (c == '\\' && *p) {
				p++;
			} else if (c == ':' && ((size_t)(p - start) == 3
						|| (size_t)(p - start) == 5)
				   && (strncasecmp(start, "to:", 3) == 0
				       || strncasecmp(start, "from:", 5) == 0)) {
				break;	/* "TO:" and "FROM:" end a token, as in Postfix */
			}
		}
		tok[n] = start;
		tlen[n++] = (size_t)(p - start);
	}
	if (trailing != NULL && n > 1 && tlen[n - 1] == strlen(trailing)
	    && strncasecmp(tok[n - 1], trailing, tlen[n - 1]) == 0) {
		n--;
		*trailing_r = 1;
	}
	if (n == 0)
		return NULL;
	for (i = 0; i < n; i++) {
		if (i > 0)
			buf_putc(&out, ' ');
		buf_append(&out, tok[i], tlen[i]);
	}
	return buf_steal(&out);
}

void
smtp_path_free(struct smtp_path *out)
{
	free(out->addr);
	out->addr = NULL;
}

static int
local_needs_quotes(const char *s, size_t n)
{
	if (n == 0 || s[0] == '.' || s[n - 1] == '.')
		return 1;
	for (size_t i = 0; i < n; i++) {
		if (IS_CTL(s[i]) || s[i] == ' ' || strchr(RFC822_SPECIALS, s[i]) != NULL) {
			if (s[i] == '.' && s[i + 1] != '.')
				continue;	/* a single dot between atoms */
			return 1;
		}
	}
	return 0;
}

void
smtp_addr_quote(struct buf *out, const char *addr)
{
	const char *at = strrchr(addr, '@');
	size_t llen = at ? (size_t)(at - addr) : strlen(addr);

	if (*addr == '\0')
		return;
	if (!local_needs_quotes(addr, llen)) {
		buf_append(out, addr, llen);
	} else {
		buf_putc(out, '"');
		for (size_t i = 0; i < llen; i++) {
			if (addr[i] == '"' || addr[i] == '\\')
				buf_putc(out, '\\');
			buf_putc(out, addr[i]);
		}
		buf_putc(out, '"');
	}
	if (at)
		buf_puts(out, at);
}

/* Iterate over parameter words; returns 0 at the end. */
static int
next_param(const char **pp, const char **w_r, size_t *len_r)
{
	const char *w = skip_blanks(*pp), *we;

	if (*w == '\0')
		return 0;
	we = word_end(w);
	*w_r = w;
	*len_r = (size_t)(we - w);
	*pp = we;
	return 1;
}

/* Does word w[0..n) start with "NAME=" (case-insensitive)? */
static int
param_is(const char *w, size_t n, const char *name_eq)
{
	size_t k = strlen(name_eq);

	return n >= k && strncasecmp(w, name_eq, k) == 0;
}

static int
param_word_is(const char *w, size_t n, const char *name)
{
	return n == strlen(name) && strncasecmp(w, name, n) == 0;
}

static int
param_unsupported(const char *w, size_t n, char **bad_r)
{
	*bad_r = xstrndup(w, n);
	return PARAM_UNSUPPORTED;
}

int
smtp_parse_params(const char *params, struct esmtp_params *p, char **bad_r)
{
	const char *w, *v;
	size_t n, vlen;
	uint64_t size;

	memset(p, 0, sizeof(*p));
	*bad_r = NULL;
	while (next_param(&params, &w, &n)) {
		if (param_is(w, n, "SIZE=")) {
			v = w + 5;
			vlen = n - 5;
			if (vlen == 0)
				return PARAM_BAD_SIZE;
			for (size = 0; vlen > 0; v++, vlen--) {
				if (*v < '0' || *v > '9')
					return PARAM_BAD_SIZE;
				/* off_t range, as Postfix: beyond it the file system can't hold it. */
				if (size > ((uint64_t)INT64_MAX - (uint64_t)(*v - '0')) / 10)
					return PARAM_SIZE_OVERFLOW;
				size = size * 10 + (uint64_t)(*v - '0');
			}
			p->has_size = 1;
			p->size = size;
		} else if (param_is(w, n, "BODY=")) {
			if (param_word_is(w + 5, n - 5, "7BIT"))
				p->body = BODY_7BIT;
			else if (param_word_is(w + 5, n - 5, "8BITMIME"))
				p->body = BODY_8BITMIME;
			else
				return param_unsupported(w, n, bad_r);
		} else if (param_word_is(w, n, "SMTPUTF8")) {
			p->smtputf8 = 1;
		} else if (param_is(w, n, "AUTH=")) {
			p->auth = 1;
		} else if (param_is(w, n, "RET=") || param_is(w, n, "ENVID=")) {
			return PARAM_DSN_DISABLED;
		} else {
			return param_unsupported(w, n, bad_r);
		}
	}
	return PARAM_OK;
}

int
smtp_parse_rcpt_params(const char *params, char **bad_r)
{
	const char *w;
	size_t n;

	*bad_r = NULL;
	while (next_param(&params, &w, &n)) {
		if (param_is(w, n, "NOTIFY=") || param_is(w, n, "ORCPT="))
			return PARAM_DSN_DISABLED;
		return param_unsupported(w, n, bad_r);
	}
	return PARAM_OK;
}
