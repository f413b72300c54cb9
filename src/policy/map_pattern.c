/*
 * map_pattern: cidr:, regexp: and pcre: tables.  See map_pattern.h for the
 * contract.
 *
 * A table is an array of rules built once at open: MATCH (a pattern and a
 * result), IF (a pattern and the index of its ENDIF) and ENDIF.  The three
 * types share the logical-line reader, the IF/ENDIF bookkeeping, the rule
 * walk and (regexp, pcre) the "/pattern/flags" syntax and the $N result
 * templates; what differs is in a struct pat_kind.  The wording of every
 * warning is Postfix 3.7's (src/util/dict_regexp.c, dict_pcre.c,
 * dict_cidr.c, cidr_match.c, mac_parse.c), so that an admin reading our log
 * finds what Postfix would have told them.
 */
#include "policy/map_pattern.h"

#define PCRE2_CODE_UNIT_WIDTH 8

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <pcre2.h>
#include <regex.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log/log.h"
#include "util/buf.h"
#include "util/xalloc.h"

/*
 * pcre2_match() limits.  The match limit is PCRE2's built-in default, the
 * one Postfix 3.7 runs with (it sets none), so a key that is too costly for
 * Postfix is too costly here and nothing else is.  The depth limit is the
 * same as PCRE2's default; the heap is capped (PCRE2's default is 20 GB)
 * because a lookup runs on a shared pool thread.
 */
#define PAT_PCRE_MATCH_LIMIT	10000000u
#define PAT_PCRE_DEPTH_LIMIT	10000000u
#define PAT_PCRE_HEAP_KIB	(64u * 1024u)

/* Postfix's pcre error buffer. */
#define PAT_ERRBUF		256

/* ---- Postfix's character classes: ASCII only, whatever the locale ---- */

static bool pat_space(int c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool pat_digit(int c)
{
	return c >= '0' && c <= '9';
}

static bool pat_alnum(int c)
{
	return pat_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Non-empty and only digits (Postfix alldig()). */
static bool pat_alldig(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!pat_digit((unsigned char)*s))
			return false;
	return true;
}

/* The end of s without its trailing whitespace (Postfix trimblanks()). */
static char *pat_trim_end(char *s)
{
	char *e = s + strlen(s);

	while (e > s && pat_space((unsigned char)e[-1]))
		e--;
	return e;
}

/*
 * A decimal number as Postfix reads one with atoi(): glibc's atoi() is
 * (int)strtol(), so an overlong number wraps rather than saturating.  The
 * wrap is spelled out: converting an out-of-range long to int is only
 * implementation-defined.
 */
static int pat_atoi(const char *s)
{
	long v = strtol(s, NULL, 10);

	return (int)(int32_t)(uint32_t)(unsigned long)v;
}

/*
 * A warning as Postfix's msg_warn() leaves it: every byte that is not
 * printable becomes '?' (valid UTF-8 stays, smtputf8_enable being yes), so a
 * control byte from a table or a key never reaches the log as such.
 */
static void pat_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void pat_warn(const char *fmt, ...)
{
	struct buf raw = BUF_INIT, out = BUF_INIT;
	va_list ap;

	va_start(ap, fmt);
	buf_vprintf(&raw, fmt, ap);
	va_end(ap);
	log_printable(&out, raw.data, raw.len, 1);
	msg_warn("%s", buf_str(&out));
	buf_free(&raw);
	buf_free(&out);
}

/* ---- logical lines (Postfix readllines()) ---- */

struct map_lines {
	char   *path;
	map_lines_fn *fn;
	void   *ctx;
	struct buf phys;	/* the physical line being read */
	struct buf logical;	/* the logical line so far */
	int     lineno;		/* physical lines read */
	int     first;		/* first line of the logical line */
	bool    bad_start;	/* the logical line starts with whitespace */
};

struct map_lines *map_lines_new(const char *path, map_lines_fn *fn, void *ctx)
{
	struct map_lines *ml = xcalloc(1, sizeof(*ml));

	ml->path = xstrdup(path);
	ml->fn = fn;
	ml->ctx = ctx;
	return ml;
}

static void map_lines_flush(struct map_lines *ml)
{
	if (ml->logical.len == 0)
		return;
	if (ml->bad_start) {
		/* Postfix shows the first 30 bytes of what it drops. */
		pat_warn("%s: logical line must not start with whitespace: \"%.30s%s\"", ml->path,
			 ml->logical.data, ml->logical.len > 30 ? "..." : "");
	} else {
		ml->fn(ml->ctx, ml->logical.data, ml->first);
	}
	buf_reset(&ml->logical);
	ml->bad_start = false;
}

/* One physical line, complete (or the last, unterminated one). */
static void map_lines_physical(struct map_lines *ml)
{
	const char *p = ml->phys.data, *end = p + ml->phys.len;
	const char *q = p;

	ml->lineno++;
	while (q < end && pat_space((unsigned char)*q))
		q++;
	if (q == end || *q == '#')
		goto done;	/* blank or comment: dropped, even inside a logical line */
	if (!pat_space((unsigned char)*p)) {
		map_lines_flush(ml);	/* text at the margin starts a logical line */
		ml->first = ml->lineno;
	} else if (ml->logical.len == 0) {
		ml->first = ml->lineno;
		ml->bad_start = true;
	}
	buf_append(&ml->logical, p, ml->phys.len);
done:
	buf_reset(&ml->phys);
}

void map_lines_feed(struct map_lines *ml, const char *data, size_t len)
{
	while (len > 0) {
		const char *nl = memchr(data, '\n', len);
		size_t n = nl ? (size_t)(nl - data) : len;

		buf_append(&ml->phys, data, n);
		if (nl == NULL)
			return;
		map_lines_physical(ml);
		data += n + 1;
		len -= n + 1;
	}
}

void map_lines_finish(struct map_lines *ml)
{
	if (ml->phys.len > 0)
		map_lines_physical(ml);
	map_lines_flush(ml);
}

void map_lines_free(struct map_lines **mlp)
{
	struct map_lines *ml = *mlp;

	if (ml == NULL)
		return;
	buf_free(&ml->phys);
	buf_free(&ml->logical);
	free(ml->path);
	free(ml);
	*mlp = NULL;
}

/* ---- $N templates (Postfix mac_parse()) ---- */

#define PAT_MAC_LITERAL	1
#define PAT_MAC_NAME	2
#define PAT_MAC_ERROR	1	/* status bit */

typedef int pat_mac_fn(int type, const char *text, void *ctx);

/*
 * Split s into literal text ($$ already made $) and $name, ${name}, $(name)
 * references, as Postfix does; returns PAT_MAC_ERROR when a reference is
 * truncated or empty (warned about, as Postfix does) or when fn said so.
 */
static int pat_mac_parse(const char *s, pat_mac_fn *fn, void *ctx)
{
	struct buf b = BUF_INIT;
	const char *vp = s;
	int status = 0;

	while (*vp) {
		if (*vp != '$') {
			buf_putc(&b, *vp++);
			continue;
		}
		if (vp[1] == '$') {
			buf_putc(&b, '$');
			vp += 2;
			continue;
		}
		if (b.len > 0) {
			status |= fn(PAT_MAC_LITERAL, b.data, ctx);
			buf_reset(&b);
		}
		vp++;
		if (*vp == '{' || *vp == '(') {
			char open = *vp, close = open == '{' ? '}' : ')';
			const char *ep;
			int level = 1;

			vp++;
			for (ep = vp; level > 0; ep++) {
				if (*ep == '\0') {
					pat_warn("truncated macro reference: \"%s\"", s);
					status |= PAT_MAC_ERROR;
					break;
				}
				if (*ep == open)
					level++;
				if (*ep == close)
					level--;
			}
			if (status & PAT_MAC_ERROR)
				break;
			buf_append(&b, vp, (size_t)(ep - vp - 1));
			vp = ep;
		} else {
			const char *ep = vp;

			while (*ep && (pat_alnum((unsigned char)*ep) || *ep == '_'))
				ep++;
			buf_append(&b, vp, (size_t)(ep - vp));
			vp = ep;
		}
		if (b.len == 0) {
			pat_warn("empty macro name: \"%s\"", s);
			status |= PAT_MAC_ERROR;
			break;
		}
		status |= fn(PAT_MAC_NAME, b.data, ctx);
		buf_reset(&b);
	}
	if (b.len > 0 && !(status & PAT_MAC_ERROR))
		status |= fn(PAT_MAC_LITERAL, b.data, ctx);
	buf_free(&b);
	return status;
}

/* ---- rules ---- */

enum pat_op { PAT_OP_MATCH, PAT_OP_IF, PAT_OP_ENDIF };

#define PAT_NO_ENDIF SIZE_MAX

struct pat_net {
	int     family;		/* AF_INET, AF_INET6 */
	int     mask_shift;	/* prefix length as Postfix reads it */
	int     bits;		/* 32, 128 */
	size_t  nbytes;		/* 4, 16 */
	unsigned char net[16];
	unsigned char mask[16];
};

struct pat_rule {
	enum pat_op op;
	int     lineno;
	bool    match;		/* false: "!" (negated) */
	size_t  endif;		/* IF: index of its ENDIF, or PAT_NO_ENDIF */
	regex_t *re;		/* regexp */
	regex_t *re2;		/* regexp: the "/p1/!/p2/" second pattern */
	bool    match2;
	pcre2_code *code;	/* pcre */
	struct pat_net net;	/* cidr */
	char   *result;		/* MATCH: the template ($$ made $ when no $N) */
	size_t  max_sub;	/* largest $N in result; 0: result is literal */
};

struct pat_kind;

struct map_impl {
	const struct pat_kind *kind;
	char   *name;		/* as in the warnings */
	struct pat_rule *rules;
	size_t  n, cap;
	size_t *stack;		/* open IFs while parsing */
	size_t  depth, stack_cap;
	size_t  max_sub;	/* regexp: largest $N of any rule */
	uint32_t max_pairs;	/* pcre: ovector pairs a match needs */
	pcre2_match_context *mctx;
};

/* What differs between the types. */
struct pat_kind {
	const char *label;		/* "regexp map" */
	bool    regexp;			/* regexp (else pcre) */
	const char *no_delim_tail;	/* "skipping" / "ignoring" this rule */
	const char *below_one;		/* "out-of-range" / "out of range" */
	/* One logical line: add its rule, or warn. */
	void    (*parse_line)(struct map_impl *t, char *line, int lineno);
};

static struct pat_rule *pat_rule_add(struct map_impl *t, enum pat_op op, int lineno)
{
	struct pat_rule *r;

	if (t->n == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 16;
		t->rules = xrealloc(t->rules, t->cap * sizeof(*t->rules));
	}
	r = &t->rules[t->n++];
	memset(r, 0, sizeof(*r));
	r->op = op;
	r->lineno = lineno;
	r->match = true;
	r->endif = PAT_NO_ENDIF;
	return r;
}

/* The IF just added opens a block. */
static void pat_push_if(struct map_impl *t)
{
	if (t->depth == t->stack_cap) {
		t->stack_cap = t->stack_cap ? t->stack_cap * 2 : 8;
		t->stack = xrealloc(t->stack, t->stack_cap * sizeof(*t->stack));
	}
	t->stack[t->depth++] = t->n - 1;
}

/* The ENDIF just added closes the innermost block. */
static void pat_pop_if(struct map_impl *t)
{
	t->rules[t->stack[--t->depth]].endif = t->n - 1;
}

static void pat_rule_free(struct pat_rule *r)
{
	if (r->re) {
		regfree(r->re);
		free(r->re);
	}
	if (r->re2) {
		regfree(r->re2);
		free(r->re2);
	}
	if (r->code)
		pcre2_code_free(r->code);
	free(r->result);
}

static void pat_close(struct map_impl *t)
{
	for (size_t i = 0; i < t->n; i++)
		pat_rule_free(&t->rules[i]);
	free(t->rules);
	free(t->stack);
	if (t->mctx)
		pcre2_match_context_free(t->mctx);
	free(t->name);
	free(t);
}

/* ---- "/pattern/flags" (regexp and pcre) ---- */

struct pat_re {
	char   *text;		/* the pattern, NUL-terminated in the line */
	int     options;	/* regcomp() or pcre2_compile() options */
	bool    match;
};

/*
 * Negations, a delimiter, the pattern up to the same delimiter (a backslash
 * escapes it) and the flags.  *pp moves past them.  false: warned, skip.
 */
static bool pat_get_re(struct map_impl *t, int lineno, char **pp, struct pat_re *re)
{
	const struct pat_kind *k = t->kind;
	char *p = *pp, delim;

	re->match = true;
	for (;; p++) {
		if (*p == '!')
			re->match = !re->match;
		else if (!pat_space((unsigned char)*p))
			break;
	}
	if (*p == '\0') {
		pat_warn("%s %s, line %d: no regexp: skipping this rule", k->label, t->name, lineno);
		return false;
	}
	delim = *p++;
	re->text = p;
	while (*p) {
		if (*p == '\\') {
			/*
			 * A backslash at the very end: Postfix's pcre reads past
			 * it and finds no delimiter; its regexp stops on it and
			 * takes it for the delimiter (/a\ is /a/).
			 */
			if (p[1] == '\0') {
				p += !k->regexp;
				break;
			}
			p++;
		} else if (*p == delim) {
			break;
		}
		p++;
	}
	if (*p == '\0') {
		pat_warn("%s %s, line %d: no closing regexp delimiter \"%c\": %s this rule",
			 k->label, t->name, lineno, delim, k->no_delim_tail);
		return false;
	}
	*p++ = '\0';
	if (k->regexp) {
		re->options = REG_EXTENDED | REG_ICASE;
		/* A '!' ends the flags: "/p1/flags!/p2/" */
		for (; *p && !pat_space((unsigned char)*p) && *p != '!'; p++) {
			switch (*p) {
			case 'i': re->options ^= REG_ICASE; break;
			case 'm': re->options ^= REG_NEWLINE; break;
			case 'x': re->options ^= REG_EXTENDED; break;
			default: goto unknown;
			}
		}
	} else {
		re->options = PCRE2_CASELESS | PCRE2_DOTALL;
		for (; *p && !pat_space((unsigned char)*p); p++) {
			switch (*p) {
			case 'i': re->options ^= PCRE2_CASELESS; break;
			case 'm': re->options ^= PCRE2_MULTILINE; break;
			case 's': re->options ^= PCRE2_DOTALL; break;
			case 'x': re->options ^= PCRE2_EXTENDED; break;
			case 'A': re->options ^= PCRE2_ANCHORED; break;
			case 'E': re->options ^= PCRE2_DOLLAR_ENDONLY; break;
			case 'U': re->options ^= PCRE2_UNGREEDY; break;
			case 'X':
				/* PCRE2 has no PCRE_EXTRA; Postfix built with PCRE2 says so. */
				pat_warn("%s %s, line %d: ignoring obsolete regexp option \"%c\"",
					 k->label, t->name, lineno, *p);
				break;
			default: goto unknown;
			}
		}
	}
	*pp = p;
	return true;
unknown:
	pat_warn("%s %s, line %d: unknown regexp option \"%c\": skipping this rule",
		 k->label, t->name, lineno, *p);
	return false;
}

static regex_t *pat_regcomp(struct map_impl *t, int lineno, const struct pat_re *re, int extra)
{
	regex_t *rx = xmalloc(sizeof(*rx));
	int err = regcomp(rx, re->text, re->options | extra);

	if (err != 0) {
		char msg[PAT_ERRBUF];

		regerror(err, rx, msg, sizeof(msg));
		pat_warn("%s %s, line %d: %s", t->kind->label, t->name, lineno, msg);
		free(rx);
		return NULL;
	}
	return rx;
}

/* Postfix's wording of a PCRE2 error code. */
static void pat_pcre_error(int code, char *out, size_t size)
{
	if (pcre2_get_error_message(code, (PCRE2_UCHAR *)out, size) <= 0)
		snprintf(out, size, "unexpected pcre2 error code %d", code);
}

/* Compile; *groups_r is the number of capturing groups. */
static pcre2_code *pat_pcrecomp(struct map_impl *t, int lineno, const struct pat_re *re,
				uint32_t *groups_r)
{
	PCRE2_SIZE off;
	int err;
	pcre2_code *code = pcre2_compile((PCRE2_SPTR)re->text, PCRE2_ZERO_TERMINATED,
					 (uint32_t)re->options, &err, &off, NULL);

	if (code == NULL) {
		char msg[PAT_ERRBUF];

		pat_pcre_error(err, msg, sizeof(msg));
		pat_warn("%s %s, line %d: error in regex at offset %lu: %s", t->kind->label,
			 t->name, lineno, (unsigned long)off, msg);
		return NULL;
	}
	if (pcre2_pattern_info(code, PCRE2_INFO_CAPTURECOUNT, groups_r) != 0)
		msg_panic("pcre map %s, line %d: pcre2_pattern_info failed", t->name, lineno);
	/* One match buffer serves every rule of a lookup: room for the most groups. */
	if (*groups_r + 1 > t->max_pairs)
		t->max_pairs = *groups_r + 1;
	return code;
}

/* The prescan of a result: the largest $N, and the text when it has none. */
struct pat_prescan {
	struct map_impl *t;
	int     lineno;
	size_t  max_sub;
	char   *literal;
};

static int pat_prescan_fn(int type, const char *text, void *ctx)
{
	struct pat_prescan *ps = ctx;
	size_t n;

	if (type == PAT_MAC_NAME) {
		free(ps->literal);
		ps->literal = NULL;
		if (!pat_alldig(text)) {
			pat_warn("%s %s, line %d: non-numeric replacement index \"%s\"",
				 ps->t->kind->label, ps->t->name, ps->lineno, text);
			return PAT_MAC_ERROR;
		}
		/* As Postfix: size_t n = atoi(text), so a wrapped negative is huge. */
		n = (size_t)(long)pat_atoi(text);
		if (n < 1) {
			pat_warn("%s %s, line %d: %s replacement index \"%s\"", ps->t->kind->label,
				 ps->t->name, ps->lineno, ps->t->kind->below_one, text);
			return PAT_MAC_ERROR;
		}
		if (n > ps->max_sub)
			ps->max_sub = n;
	} else if (ps->max_sub == 0) {
		free(ps->literal);
		ps->literal = xstrdup(text);
	}
	return 0;
}

/* The warning for a result that refers to a group the pattern lacks. */
static void pat_warn_out_of_range(struct map_impl *t, int lineno, size_t max_sub)
{
	pat_warn("%s %s, line %d: out of range replacement index \"%d\": skipping this rule",
		 t->kind->label, t->name, lineno, (int)max_sub);
}

/* "/pattern/flags result" (regexp: also "/p1/!/p2/ result"). */
static void pat_re_match_line(struct map_impl *t, char *p, int lineno)
{
	const struct pat_kind *k = t->kind;
	struct pat_re first, second = { NULL, 0, true };
	struct pat_prescan ps = { t, lineno, 0, NULL };
	regex_t *rx = NULL, *rx2 = NULL;
	pcre2_code *code = NULL;
	struct pat_rule *r;

	if (!pat_get_re(t, lineno, &p, &first))
		return;
	if (k->regexp && *p == '!' && !pat_get_re(t, lineno, &p, &second))
		return;
	while (*p && pat_space((unsigned char)*p))
		p++;
	if (*p == '\0')
		pat_warn("%s %s, line %d: no replacement text: using empty string", k->label,
			 t->name, lineno);
	if (pat_mac_parse(p, pat_prescan_fn, &ps) & PAT_MAC_ERROR) {
		pat_warn("%s %s, line %d: bad replacement syntax: skipping this rule", k->label,
			 t->name, lineno);
		goto skip;
	}
	if (ps.max_sub > 0 && !first.match) {
		pat_warn("%s %s, line %d: $number found in negative match replacement text: "
			 "skipping this rule", k->label, t->name, lineno);
		goto skip;
	}
	if (k->regexp) {
		rx = pat_regcomp(t, lineno, &first, ps.max_sub == 0 ? REG_NOSUB : 0);
		if (rx == NULL)
			goto skip;
		if (ps.max_sub > rx->re_nsub) {
			pat_warn_out_of_range(t, lineno, ps.max_sub);
			goto skip;
		}
		if (second.text != NULL && (rx2 = pat_regcomp(t, lineno, &second, REG_NOSUB)) == NULL)
			goto skip;
	} else {
		uint32_t groups;

		if ((code = pat_pcrecomp(t, lineno, &first, &groups)) == NULL)
			goto skip;
		if (ps.max_sub > groups) {
			pat_warn_out_of_range(t, lineno, ps.max_sub);
			goto skip;
		}
	}
	r = pat_rule_add(t, PAT_OP_MATCH, lineno);
	r->match = first.match;
	r->re = rx;
	r->re2 = rx2;
	r->match2 = second.match;
	r->code = code;
	r->max_sub = ps.max_sub;
	r->result = ps.literal ? ps.literal : xstrdup(p);
	if (ps.max_sub > t->max_sub)
		t->max_sub = ps.max_sub;
	return;
skip:
	if (rx) {
		regfree(rx);
		free(rx);
	}
	if (code)
		pcre2_code_free(code);
	free(ps.literal);
}

/* "IF /pattern/flags" */
static void pat_re_if_line(struct map_impl *t, char *p, int lineno)
{
	const struct pat_kind *k = t->kind;
	struct pat_re re;
	struct pat_rule *r;
	regex_t *rx = NULL;
	pcre2_code *code = NULL;
	uint32_t groups;

	while (*p && pat_space((unsigned char)*p))
		p++;
	if (!pat_get_re(t, lineno, &p, &re))
		return;
	while (*p && pat_space((unsigned char)*p))
		p++;
	if (*p) {
		pat_warn("%s %s, line %d: ignoring extra text after IF statement: \"%s\"",
			 k->label, t->name, lineno, p);
		pat_warn("%s %s, line %d: do not prepend whitespace to statements between IF and ENDIF",
			 k->label, t->name, lineno);
	}
	if (k->regexp ? (rx = pat_regcomp(t, lineno, &re, REG_NOSUB)) == NULL
		      : (code = pat_pcrecomp(t, lineno, &re, &groups)) == NULL)
		return;
	r = pat_rule_add(t, PAT_OP_IF, lineno);
	r->match = re.match;
	r->re = rx;
	r->code = code;
	pat_push_if(t);
}

static bool pat_keyword(const char *p, const char *word)
{
	size_t n = strlen(word);

	return strncasecmp(p, word, n) == 0 && !pat_alnum((unsigned char)p[n]);
}

static void pat_re_parse_line(struct map_impl *t, char *line, int lineno)
{
	const struct pat_kind *k = t->kind;
	char *p = line;

	*pat_trim_end(p) = '\0';
	if (*p == '\0')
		return;
	if (!pat_alnum((unsigned char)*p)) {
		pat_re_match_line(t, p, lineno);
	} else if (pat_keyword(p, "IF")) {
		pat_re_if_line(t, p + 2, lineno);
	} else if (pat_keyword(p, "ENDIF")) {
		if (t->depth == 0) {
			pat_warn("%s %s, line %d: ignoring ENDIF without matching IF", k->label,
				 t->name, lineno);
			return;
		}
		for (p += 5; *p && pat_space((unsigned char)*p); p++)
			;
		if (*p)
			pat_warn("%s %s, line %d: ignoring extra text after ENDIF", k->label,
				 t->name, lineno);
		pat_rule_add(t, PAT_OP_ENDIF, lineno);
		pat_pop_if(t);
	} else {
		pat_warn("%s %s, line %d: ignoring unrecognized request", k->label, t->name, lineno);
	}
}

/* ---- cidr (Postfix cidr_match.c) ---- */

/* Keep the first bits bits of a, zero the rest. */
static void pat_mask_bits(unsigned char *a, size_t nbytes, int bits)
{
	for (size_t i = 0; i < nbytes; i++) {
		int keep = bits - (int)(i * 8);

		if (keep <= 0)
			a[i] = 0;
		else if (keep < 8)
			a[i] &= (unsigned char)(0xff << (8 - keep));
	}
}

static void pat_net_family(struct pat_net *n, const char *addr)
{
	n->family = strchr(addr, ':') ? AF_INET6 : AF_INET;
	n->bits = n->family == AF_INET6 ? 128 : 32;
	n->nbytes = n->family == AF_INET6 ? 16 : 4;
}

/*
 * "addr", "addr/len", "[addr]", "[addr]/len", "[addr/len]", destroying the
 * text.  NULL, or the reason (malloc'd) in Postfix's words.
 */
static char *pat_net_parse(struct pat_net *n, char *pattern)
{
	char *mask_search, *mask;

	memset(n, 0, sizeof(*n));
	if (*pattern == '[') {
		char *close = strchr(++pattern, ']');

		if (close == NULL)
			return xasprintf("missing ']' character after \"[%s\"", pattern);
		*close = '\0';
		mask_search = close + 1;
		if (*mask_search != '/') {
			if (*mask_search != '\0')
				return xasprintf("garbage after \"[%s]\"", pattern);
			mask_search = pattern;
		}
	} else {
		mask_search = pattern;
	}
	if ((mask = strchr(mask_search, '/')) != NULL) {
		const char *err = NULL;

		*mask++ = '\0';
		pat_net_family(n, pattern);
		if (!pat_alldig(mask))
			err = "bad mask value";
		else if ((n->mask_shift = pat_atoi(mask)) > n->bits)
			err = "bad mask length";
		else if (inet_pton(n->family, pattern, n->net) != 1)
			err = "bad network value";
		if (err != NULL)
			return xasprintf("%s in \"%s/%s\"", err, pattern, mask);
		memset(n->mask, 0xff, n->nbytes);
		pat_mask_bits(n->mask, n->nbytes, n->mask_shift);
		for (size_t i = 0; i < n->nbytes; i++) {
			if (n->net[i] & ~n->mask[i]) {
				char text[INET6_ADDRSTRLEN];

				pat_mask_bits(n->net, n->nbytes, n->mask_shift);
				if (inet_ntop(n->family, n->net, text, sizeof(text)) == NULL)
					msg_panic("inet_ntop: %s", strerror(errno));
				return xasprintf("non-null host address bits in \"%s/%s\", "
						 "perhaps you should use \"%s/%d\" instead",
						 pattern, mask, text, n->mask_shift);
			}
		}
	} else {
		pat_net_family(n, pattern);
		if (inet_pton(n->family, pattern, n->net) != 1)
			return xasprintf("bad address pattern: \"%s\"", pattern);
		n->mask_shift = n->bits;
		memset(n->mask, 0xff, n->nbytes);
	}
	return NULL;
}

/* Skip '!' and whitespace; each '!' flips *match. */
static char *pat_negations(char *p, bool *match)
{
	for (;; p++) {
		if (*p == '!')
			*match = !*match;
		else if (!pat_space((unsigned char)*p))
			return p;
	}
}

/* One cidr rule; NULL when added, else why it is skipped (malloc'd). */
static char *pat_cidr_rule(struct map_impl *t, char *p, int lineno)
{
	struct pat_net net;
	bool match = true;
	char *why, *value;
	struct pat_rule *r;

	if (pat_keyword(p, "IF")) {
		p = pat_negations(p + 2, &match);
		if (*p == '\0')
			return xstrdup("no address pattern");
		*pat_trim_end(p) = '\0';
		if ((why = pat_net_parse(&net, p)) != NULL)
			return why;
		r = pat_rule_add(t, PAT_OP_IF, lineno);
		r->match = match;
		r->net = net;
		pat_push_if(t);
		return NULL;
	}
	if (pat_keyword(p, "ENDIF")) {
		for (p += 5; *p && pat_space((unsigned char)*p); p++)
			;
		if (*p)
			return xstrdup("garbage after ENDIF");
		if (t->depth == 0)
			return xstrdup("ENDIF without IF");
		pat_rule_add(t, PAT_OP_ENDIF, lineno);
		pat_pop_if(t);
		return NULL;
	}
	p = pat_negations(p, &match);
	{
		char *pattern = p;

		while (*p && !pat_space((unsigned char)*p))
			p++;
		if (*p)
			*p++ = '\0';
		while (*p && pat_space((unsigned char)*p))
			p++;
		value = p;
		*pat_trim_end(value) = '\0';
		if (*pattern == '\0')
			return xstrdup("no address pattern");
		if ((why = pat_net_parse(&net, pattern)) != NULL)
			return why;
	}
	if (*value == '\0')
		return xstrdup("no lookup result");
	r = pat_rule_add(t, PAT_OP_MATCH, lineno);
	r->match = match;
	r->net = net;
	r->result = xstrdup(value);
	return NULL;
}

static void pat_cidr_parse_line(struct map_impl *t, char *line, int lineno)
{
	char *why = pat_cidr_rule(t, line, lineno);

	if (why != NULL) {
		pat_warn("cidr map %s, line %d: %s: skipping this rule", t->name, lineno, why);
		free(why);
	}
}

/* The address is in the network (same family). */
static bool pat_net_match(const struct pat_net *n, const unsigned char *addr)
{
	for (size_t i = 0; i < n->nbytes; i++)
		if ((addr[i] & n->mask[i]) != n->net[i])
			return false;
	return true;
}

/* ---- the types ---- */

static const struct pat_kind pat_kind_cidr = {
	"cidr map", false, "skipping", "out of range", pat_cidr_parse_line,
};
static const struct pat_kind pat_kind_regexp = {
	"regexp map", true, "skipping", "out-of-range", pat_re_parse_line,
};
static const struct pat_kind pat_kind_pcre = {
	"pcre map", false, "ignoring", "out of range", pat_re_parse_line,
};

static const struct pat_kind *pat_kind_of(const struct map_type *type)
{
	if (type == &map_type_cidr)
		return &pat_kind_cidr;
	if (type == &map_type_regexp)
		return &pat_kind_regexp;
	if (type == &map_type_pcre)
		return &pat_kind_pcre;
	msg_panic("map_pattern: not a pattern type: %s", type->name);
}

static void pat_line_cb(void *ctx, char *line, int lineno)
{
	struct map_impl *t = ctx;

	t->kind->parse_line(t, line, lineno);
}

static struct map_impl *pat_new(const struct pat_kind *kind, const char *name)
{
	struct map_impl *t = xcalloc(1, sizeof(*t));

	t->kind = kind;
	t->name = xstrdup(name);
	return t;
}

/* After the last line: unclosed IFs, and what lookups will need. */
static void pat_finish(struct map_impl *t)
{
	while (t->depth > 0)
		pat_warn("%s %s, line %d: IF has no matching ENDIF", t->kind->label, t->name,
			 t->rules[t->stack[--t->depth]].lineno);
	free(t->stack);
	t->stack = NULL;
	t->stack_cap = 0;
	if (t->kind == &pat_kind_pcre) {
		t->mctx = pcre2_match_context_create(NULL);
		if (t->mctx == NULL)
			msg_fatal("pcre2_match_context_create: out of memory");
		pcre2_set_match_limit(t->mctx, PAT_PCRE_MATCH_LIMIT);
		pcre2_set_depth_limit(t->mctx, PAT_PCRE_DEPTH_LIMIT);
		pcre2_set_heap_limit(t->mctx, PAT_PCRE_HEAP_KIB);
		if (t->max_pairs == 0)
			t->max_pairs = 1;
	}
}

struct map_impl *map_pattern_open_text(const struct map_type *type, const char *name,
				       const char *text, size_t len)
{
	struct map_impl *t = pat_new(pat_kind_of(type), name);
	struct map_lines *ml = map_lines_new(name, pat_line_cb, t);

	map_lines_feed(ml, text, len);
	map_lines_finish(ml);
	map_lines_free(&ml);
	pat_finish(t);
	return t;
}

/*
 * An inline table, "{ {rule}, {rule} ... }", made into lines as Postfix
 * 3.7's dict_stream_open() does: the outer braces must balance and end the
 * text, each rule is braced, rules are separated by commas or whitespace.
 * Returns the lines, or NULL with *why_r set.
 */
static char *pat_inline_text(const struct pat_kind *k, const char *name, char **why_r)
{
	size_t len = strlen(name), level = 0, end = 0;
	struct buf out = BUF_INIT;
	char *copy, *p;

	for (size_t i = 0; i < len; i++) {
		if (name[i] == '}' && --level == 0) {
			end = i;
			break;
		}
		if (name[i] == '{')
			level++;
	}
	if (end == 0) {
		*why_r = xasprintf("%s: missing '}' in \"%s\"", k->label, name);
		return NULL;
	}
	if (end + 1 != len) {
		*why_r = xasprintf("%s: syntax error after '}' in \"%s\"", k->label, name);
		return NULL;
	}
	copy = xstrndup(name + 1, end - 1);
	p = copy;
	for (;;) {
		char *tok, *e;
		int lv = 0;

		p += strspn(p, ", \t\r\n");
		if (*p == '\0')
			break;
		tok = p;
		for (; *p; p++) {
			if (*p == '{') {
				lv++;
			} else if (lv > 0 && *p == '}') {
				lv--;
			} else if (lv == 0 && strchr(", \t\r\n", *p) != NULL) {
				*p++ = '\0';
				break;
			}
		}
		if (*tok != '{') {
			*why_r = xasprintf("%s: no '{' at start of text in \"%s\"", k->label, tok);
			goto bad;
		}
		lv = 0;
		for (e = tok; *e; e++) {
			if (*e == '{')
				lv++;
			else if (*e == '}' && --lv == 0)
				break;
		}
		if (*e == '\0') {
			*why_r = xasprintf("%s: missing '}' in \"%s\"", k->label, tok);
			goto bad;
		}
		if (e[1] != '\0') {
			*why_r = xasprintf("%s: syntax error after '}' in \"%s\"", k->label, tok);
			goto bad;
		}
		*e = '\0';
		tok++;
		*pat_trim_end(tok) = '\0';
		while (pat_space((unsigned char)*tok))
			tok++;
		buf_puts(&out, tok);
		buf_putc(&out, '\n');
	}
	free(copy);
	return buf_steal(&out);
bad:
	free(copy);
	buf_free(&out);
	return NULL;
}

static struct map_impl *pat_open(const struct map_type *type, const char *name, char **why_r)
{
	const struct pat_kind *k = pat_kind_of(type);
	struct map_impl *t;
	struct map_lines *ml;
	char chunk[8192];
	ssize_t n;
	int fd;

	if (name[0] == '{') {
		char *text = pat_inline_text(k, name, why_r);

		if (text == NULL)
			return NULL;
		t = map_pattern_open_text(type, name, text, strlen(text));
		free(text);
		return t;
	}
	if ((fd = open(name, O_RDONLY | O_CLOEXEC)) < 0) {
		*why_r = xasprintf("open %s: %s", name, strerror(errno));
		return NULL;
	}
	t = pat_new(k, name);
	ml = map_lines_new(name, pat_line_cb, t);
	while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			*why_r = xasprintf("%s %s: read error: %s", k->label, name, strerror(errno));
			close(fd);
			map_lines_free(&ml);
			pat_close(t);
			return NULL;
		}
		map_lines_feed(ml, chunk, (size_t)n);
	}
	close(fd);
	map_lines_finish(ml);
	map_lines_free(&ml);
	pat_finish(t);
	return t;
}

static struct map_impl *pat_open_cidr(const char *name, char **why_r)
{
	return pat_open(&map_type_cidr, name, why_r);
}

static struct map_impl *pat_open_regexp(const char *name, char **why_r)
{
	return pat_open(&map_type_regexp, name, why_r);
}

static struct map_impl *pat_open_pcre(const char *name, char **why_r)
{
	return pat_open(&map_type_pcre, name, why_r);
}

/* ---- lookups ---- */

/* One lookup's match buffers and what the rule walk needs. */
struct pat_lookup {
	const struct map_impl *t;
	const char *key;
	size_t  keylen;
	regmatch_t *pm;			/* regexp */
	pcre2_match_data *md;		/* pcre */
	int     family;			/* cidr */
	unsigned char addr[16];
};

/* Does rx decide "match" (nsub groups into lk->pm)?  An error: warned, no. */
static bool pat_regexec(struct pat_lookup *lk, const struct pat_rule *r, const regex_t *rx,
			bool match, size_t nsub)
{
	int err = regexec(rx, lk->key, nsub, nsub ? lk->pm : NULL, 0);
	char msg[PAT_ERRBUF];

	if (err == REG_NOMATCH)
		return !match;
	if (err == 0)
		return match;
	regerror(err, rx, msg, sizeof(msg));
	pat_warn("regexp map %s, line %d: %s", lk->t->name, r->lineno, msg);
	return false;
}

/* Does rule r's (first) pattern decide "match"?  A matcher error: no. */
static bool pat_eval(struct pat_lookup *lk, const struct pat_rule *r)
{
	const struct map_impl *t = lk->t;

	/* cidr: a rule of the other family never matches, negated or not. */
	if (t->kind == &pat_kind_cidr)
		return r->net.family == lk->family && pat_net_match(&r->net, lk->addr) == r->match;
	if (t->kind == &pat_kind_regexp) {
		size_t nsub = r->op == PAT_OP_MATCH && r->max_sub > 0 ? r->max_sub + 1 : 0;

		return pat_regexec(lk, r, r->re, r->match, nsub);
	}
	{
		int rc = pcre2_match(r->code, (PCRE2_SPTR)lk->key, lk->keylen, 0, 0, lk->md,
				     t->mctx);

		if (rc > 0)
			return r->match;
		if (rc == PCRE2_ERROR_NOMATCH)
			return !r->match;
		{
			char msg[PAT_ERRBUF];

			pat_pcre_error(rc, msg, sizeof(msg));
			pat_warn("pcre map %s, line %d: %s", t->name, r->lineno, msg);
		}
		return false;
	}
}

/* regexp: the second pattern of "/p1/!/p2/". */
static bool pat_eval2(struct pat_lookup *lk, const struct pat_rule *r)
{
	return r->re2 == NULL || pat_regexec(lk, r, r->re2, r->match2, 0);
}

struct pat_expand {
	struct pat_lookup *lk;
	struct buf out;
};

static int pat_expand_fn(int type, const char *text, void *ctx)
{
	struct pat_expand *x = ctx;
	struct pat_lookup *lk = x->lk;
	size_t n;

	if (type == PAT_MAC_LITERAL) {
		buf_puts(&x->out, text);
		return 0;
	}
	n = (size_t)(long)pat_atoi(text);	/* 1..max_sub: checked at open */
	if (lk->pm != NULL) {
		const regmatch_t *m = &lk->pm[n];

		if (m->rm_so >= 0 && m->rm_eo > m->rm_so)
			buf_append(&x->out, lk->key + m->rm_so, (size_t)(m->rm_eo - m->rm_so));
	} else {
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(lk->md);

		if (n < pcre2_get_ovector_count(lk->md) && ov[2 * n] != PCRE2_UNSET
		    && ov[2 * n + 1] > ov[2 * n])
			buf_append(&x->out, lk->key + ov[2 * n], ov[2 * n + 1] - ov[2 * n]);
	}
	return 0;
}

static char *pat_result(struct pat_lookup *lk, const struct pat_rule *r)
{
	struct pat_expand x = { lk, BUF_INIT };

	if (r->max_sub == 0)
		return xstrdup(r->result);
	if (pat_mac_parse(r->result, pat_expand_fn, &x) & PAT_MAC_ERROR)
		msg_panic("%s %s, line %d: bad replacement syntax", lk->t->kind->label,
			  lk->t->name, r->lineno);
	return buf_steal(&x.out);
}

static enum map_status pat_lookup(struct map_impl *t, const char *key, char **value_r)
{
	struct pat_lookup lk = { t, key, strlen(key), NULL, NULL, AF_INET, { 0 } };
	enum map_status st = MAP_NOTFOUND;

	if (t->kind == &pat_kind_cidr) {
		lk.family = strchr(key, ':') ? AF_INET6 : AF_INET;
		if (inet_pton(lk.family, key, lk.addr) != 1)
			return MAP_NOTFOUND;
	} else if (t->kind == &pat_kind_regexp) {
		if (t->max_sub > 0)
			lk.pm = xcalloc(t->max_sub + 1, sizeof(*lk.pm));
	} else {
		lk.md = pcre2_match_data_create(t->max_pairs, NULL);
		if (lk.md == NULL)
			msg_fatal("pcre2_match_data_create: out of memory");
	}
	for (size_t i = 0; i < t->n; i++) {
		const struct pat_rule *r = &t->rules[i];

		if (r->op == PAT_OP_ENDIF)
			continue;
		if (r->op == PAT_OP_IF) {
			if (pat_eval(&lk, r))
				continue;
			if (r->endif == PAT_NO_ENDIF)
				break;
			i = r->endif;
			continue;
		}
		if (!pat_eval(&lk, r) || !pat_eval2(&lk, r))
			continue;
		*value_r = pat_result(&lk, r);
		st = MAP_FOUND;
		break;
	}
	free(lk.pm);
	if (lk.md)
		pcre2_match_data_free(lk.md);
	return st;
}

const struct map_type map_type_cidr = {
	"cidr", MAPT_NOFOLD | MAPT_PATTERN | MAPT_IN_MEMORY,
	pat_open_cidr, pat_lookup, NULL, pat_close, NULL,
};

const struct map_type map_type_regexp = {
	"regexp", MAPT_NOFOLD | MAPT_PATTERN | MAPT_IN_MEMORY,
	pat_open_regexp, pat_lookup, NULL, pat_close, NULL,
};

const struct map_type map_type_pcre = {
	"pcre", MAPT_NOFOLD | MAPT_PATTERN | MAPT_IN_MEMORY,
	pat_open_pcre, pat_lookup, NULL, pat_close, NULL,
};
