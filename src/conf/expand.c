/*
 * expand: Postfix's $name expansion for configuration values.
 *
 * Forms: $name, ${name}, $(name), $$ (a literal $), ${name?value},
 * ${name?{value}}, ${name:value}, ${name:{value}}, ${name?{a}:{b}} (braces
 * optional around b), and the relational ${{A} op {B} ? {x} : {y}} with op
 * one of == != < <= > >= (numeric when both sides are decimal numbers,
 * else byte-wise) or the same followed by "level" (compatibility levels).
 * Without "?" or ":", a comparison gives "true" or "".  The values inside
 * are expanded in turn.  An undefined name expands to "".
 *
 * Each parameter is expanded once per expander and remembered.  A name
 * that refers back to itself, nesting deeper than EXP_MAX_DEPTH or a result
 * longer than EXP_MAX_LEN is an error, never a hang.
 */
#include "conf/conf_impl.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/xalloc.h"

#define EXP_MAX_DEPTH	100
#define EXP_MAX_LEN	(1024 * 1024)

enum { MEMO_BUSY, MEMO_DONE };

struct exp_memo {
	char   *name;
	char   *value;	/* NULL when err is set */
	char   *err;
	int	state;
};

struct conf_exp {
	conf_lookup_fn lookup;
	void   *ctx;
	struct exp_memo *memo;
	size_t	nmemo;
	size_t	cap;
	int	depth;
};

static int exp_slice(struct conf_exp *ex, const char *s, size_t len, struct buf *out,
		     char **err_r);

struct conf_exp *
conf_exp_new(conf_lookup_fn lookup, void *ctx)
{
	struct conf_exp *ex = xcalloc(1, sizeof(*ex));

	ex->lookup = lookup;
	ex->ctx = ctx;
	return ex;
}

void
conf_exp_free(struct conf_exp **exp)
{
	struct conf_exp *ex = *exp;

	if (ex == NULL)
		return;
	for (size_t i = 0; i < ex->nmemo; i++) {
		free(ex->memo[i].name);
		free(ex->memo[i].value);
		free(ex->memo[i].err);
	}
	free(ex->memo);
	free(ex);
	*exp = NULL;
}

static int
exp_is_name_char(int c)
{
	return isalnum((unsigned char) c) || c == '_';
}

static int
exp_is_space(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static char *
exp_err_at(const char *what, const char *s, size_t len)
{
	return xasprintf("%s: \"%.*s\"", what, (int) (len > 200 ? 200 : len), s);
}

const char *
conf_exp_name(struct conf_exp *ex, const char *name, char **err_r)
{
	size_t	idx;
	const char *raw;
	char   *lerr = NULL;
	struct buf out = BUF_INIT;

	*err_r = NULL;
	for (idx = 0; idx < ex->nmemo; idx++) {
		if (strcmp(ex->memo[idx].name, name) != 0)
			continue;
		if (ex->memo[idx].state == MEMO_BUSY) {
			*err_r = xasprintf("unreasonable macro call nesting: \"%s\"", name);
			return NULL;
		}
		if (ex->memo[idx].err != NULL) {
			*err_r = xstrdup(ex->memo[idx].err);
			return NULL;
		}
		return ex->memo[idx].value;
	}
	if (ex->nmemo == ex->cap) {
		ex->cap = ex->cap ? 2 * ex->cap : 32;
		ex->memo = xrealloc(ex->memo, ex->cap * sizeof(*ex->memo));
	}
	idx = ex->nmemo++;
	ex->memo[idx] = (struct exp_memo) { xstrdup(name), NULL, NULL, MEMO_BUSY };

	/* ex->memo may move while this runs: address the entry by index. */
	raw = ex->lookup(ex->ctx, name, &lerr);
	if (lerr == NULL && raw != NULL) {
		if (conf_param_is_raw(name))
			buf_puts(&out, raw);
		else
			(void) conf_exp_text(ex, raw, &out, &lerr);
	}
	ex->memo[idx].state = MEMO_DONE;
	if (lerr != NULL) {
		ex->memo[idx].err = lerr;
		buf_free(&out);
		*err_r = xstrdup(lerr);
		return NULL;
	}
	ex->memo[idx].value = xstrdup(buf_str(&out));
	buf_free(&out);
	return ex->memo[idx].value;
}

int
conf_exp_text(struct conf_exp *ex, const char *text, struct buf *out, char **err_r)
{
	*err_r = NULL;
	return exp_slice(ex, text, strlen(text), out, err_r);
}

/* Index of the bracket that closes s[open], or -1. */
static long
exp_match(const char *s, size_t len, size_t open)
{
	char	o = s[open];
	char	c = (o == '{') ? '}' : ')';
	size_t	depth = 0;

	for (size_t i = open; i < len; i++) {
		if (s[i] == o)
			depth++;
		else if (s[i] == c && --depth == 0)
			return (long) i;
	}
	return -1;
}

static size_t
exp_skip_space(const char *s, size_t len, size_t i)
{
	while (i < len && exp_is_space(s[i]))
		i++;
	return i;
}

/*
 * The part after "?" or ":" in a conditional: s[i] is that operator.
 * truth: the name is non-empty, or the comparison holds.
 */
static int
exp_cond(struct conf_exp *ex, const char *s, size_t len, size_t i, int truth,
	 struct buf *out, char **err_r)
{
	char	op = s[i];
	size_t	v1 = 0, v1len = 0, v2 = 0, v2len = 0;
	int	have_v2 = 0;
	long	close;

	i = exp_skip_space(s, len, i + 1);
	if (i < len && s[i] == '{') {
		if ((close = exp_match(s, len, i)) < 0) {
			*err_r = exp_err_at("missing '}'", s, len);
			return -1;
		}
		v1 = i + 1;
		v1len = (size_t) close - v1;
		i = exp_skip_space(s, len, (size_t) close + 1);
		if (i < len) {
			if (op != '?' || s[i] != ':') {
				*err_r = exp_err_at(op == '?' ? "\":\" expected" : "unexpected input",
						    s + i, len - i);
				return -1;
			}
			have_v2 = 1;
			i = exp_skip_space(s, len, i + 1);
			if (i < len && s[i] == '{') {
				if ((close = exp_match(s, len, i)) < 0) {
					*err_r = exp_err_at("missing '}'", s, len);
					return -1;
				}
				v2 = i + 1;
				v2len = (size_t) close - v2;
				i = exp_skip_space(s, len, (size_t) close + 1);
				if (i < len) {
					*err_r = exp_err_at("unexpected input", s + i, len - i);
					return -1;
				}
			} else {
				v2 = i;
				v2len = len - i;
			}
		}
	} else {
		v1 = i;
		v1len = len - i;
	}
	if (op == '?') {
		if (truth)
			return exp_slice(ex, s + v1, v1len, out, err_r);
		if (have_v2)
			return exp_slice(ex, s + v2, v2len, out, err_r);
		return 0;
	}
	return truth ? 0 : exp_slice(ex, s + v1, v1len, out, err_r);
}

static int
exp_all_digits(const char *s)
{
	if (*s == 0)
		return 0;
	for (; *s; s++)
		if (!isdigit((unsigned char) *s))
			return 0;
	return 1;
}

/* Numeric comparison of two digit strings of any length. */
static int
exp_numcmp(const char *a, const char *b)
{
	size_t	la, lb;

	while (*a == '0' && a[1])
		a++;
	while (*b == '0' && b[1])
		b++;
	la = strlen(a);
	lb = strlen(b);
	if (la != lb)
		return la < lb ? -1 : 1;
	return strcmp(a, b);
}

static int
exp_level_parse(const char *s, unsigned long v[3])
{
	int	n = 0;

	v[0] = v[1] = v[2] = 0;
	for (;;) {
		char   *end;

		if (n == 3 || !isdigit((unsigned char) *s))
			return -1;
		errno = 0;
		v[n++] = strtoul(s, &end, 10);
		if (errno != 0)
			return -1;
		s = end;
		if (*s == 0)
			return 0;
		if (*s++ != '.')
			return -1;
	}
}

int
conf_level_cmp(const char *a, const char *b, int *cmp_r)
{
	unsigned long va[3], vb[3];

	if (exp_level_parse(a, va) < 0 || exp_level_parse(b, vb) < 0)
		return -1;
	*cmp_r = 0;
	for (int i = 0; i < 3 && *cmp_r == 0; i++)
		if (va[i] != vb[i])
			*cmp_r = va[i] < vb[i] ? -1 : 1;
	return 0;
}

/* ${{A} op {B} ...}: s[i] is the '{' that opens A. */
static int
exp_relational(struct conf_exp *ex, const char *s, size_t len, size_t i,
	       struct buf *out, char **err_r)
{
	static const char *const ops[] = {"==", "!=", "<", "<=", ">", ">="};
	struct buf a = BUF_INIT, b = BUF_INIT;
	size_t	op_start, op_len, k;
	int	level = 0, cmp, truth, ret = -1;
	long	close;
	size_t	a_start, a_len, b_start, b_len;

	if ((close = exp_match(s, len, i)) < 0) {
		*err_r = exp_err_at("missing '}'", s, len);
		return -1;
	}
	a_start = i + 1;
	a_len = (size_t) close - a_start;
	i = exp_skip_space(s, len, (size_t) close + 1);
	op_start = i;
	while (i < len && strchr("=!<>", s[i]) != NULL)
		i++;
	op_len = i - op_start;
	if (len - i >= 5 && strncmp(s + i, "level", 5) == 0) {
		level = 1;
		i += 5;
	}
	for (k = 0; k < sizeof(ops) / sizeof(ops[0]); k++)
		if (strlen(ops[k]) == op_len && strncmp(ops[k], s + op_start, op_len) == 0)
			break;
	if (k == sizeof(ops) / sizeof(ops[0])) {
		*err_r = exp_err_at("\"==\", \"!=\", \"<\", \"<=\", \">=\" or \">\" expected",
				    s + op_start, len - op_start);
		return -1;
	}
	i = exp_skip_space(s, len, i);
	if (i >= len || s[i] != '{' || (close = exp_match(s, len, i)) < 0) {
		*err_r = exp_err_at("\"{\" expected", s + i, len - i);
		return -1;
	}
	b_start = i + 1;
	b_len = (size_t) close - b_start;
	i = exp_skip_space(s, len, (size_t) close + 1);
	if (i < len && s[i] != '?' && s[i] != ':') {
		*err_r = exp_err_at("\"?\" or \":\" expected", s + i, len - i);
		return -1;
	}
	if (exp_slice(ex, s + a_start, a_len, &a, err_r) < 0
	    || exp_slice(ex, s + b_start, b_len, &b, err_r) < 0)
		goto out;
	if (level) {
		if (conf_level_cmp(buf_str(&a), buf_str(&b), &cmp) < 0) {
			int	bad_a = conf_level_cmp(buf_str(&a), "0", &cmp) < 0;

			*err_r = xasprintf("malformed compatibility level syntax: \"%s\"",
					   bad_a ? buf_str(&a) : buf_str(&b));
			goto out;
		}
	} else if (exp_all_digits(buf_str(&a)) && exp_all_digits(buf_str(&b))) {
		cmp = exp_numcmp(buf_str(&a), buf_str(&b));
	} else {
		cmp = strcmp(buf_str(&a), buf_str(&b));
	}
	switch (k) {
	case 0: truth = cmp == 0; break;
	case 1: truth = cmp != 0; break;
	case 2: truth = cmp < 0; break;
	case 3: truth = cmp <= 0; break;
	case 4: truth = cmp > 0; break;
	default: truth = cmp >= 0; break;
	}
	if (i == len) {
		/* a bare comparison: "true" or empty, as Postfix gives it */
		if (truth)
			buf_puts(out, "true");
		ret = 0;
	} else {
		ret = exp_cond(ex, s, len, i, truth, out, err_r);
	}
out:
	buf_free(&a);
	buf_free(&b);
	return ret;
}

/* The inside of ${...} or $(...). */
static int
exp_braced(struct conf_exp *ex, const char *s, size_t len, struct buf *out, char **err_r)
{
	size_t	i = exp_skip_space(s, len, 0), start;
	char   *name;
	const char *val;
	int	ret;

	if (i < len && s[i] == '{')
		return exp_relational(ex, s, len, i, out, err_r);
	start = i;
	while (i < len && exp_is_name_char(s[i]))
		i++;
	if (i == start) {
		*err_r = exp_err_at("empty macro name", s, len);
		return -1;
	}
	name = xstrndup(s + start, i - start);
	val = conf_exp_name(ex, name, err_r);
	free(name);
	if (val == NULL)
		return -1;
	i = exp_skip_space(s, len, i);
	if (i == len) {
		buf_puts(out, val);
		ret = 0;
	} else if (s[i] == '?' || s[i] == ':') {
		ret = exp_cond(ex, s, len, i, *val != 0, out, err_r);
	} else {
		*err_r = exp_err_at("unexpected input", s + i, len - i);
		ret = -1;
	}
	return ret;
}

static int
exp_slice(struct conf_exp *ex, const char *s, size_t len, struct buf *out, char **err_r)
{
	size_t	i = 0;
	int	ret = 0;

	if (++ex->depth > EXP_MAX_DEPTH) {
		*err_r = exp_err_at("unreasonable macro call nesting", s, len);
		ex->depth--;
		return -1;
	}
	while (i < len && ret == 0) {
		size_t	start = i;

		if (s[i] != '$') {
			while (i < len && s[i] != '$')
				i++;
			buf_append(out, s + start, i - start);
		} else if (i + 1 < len && s[i + 1] == '$') {
			buf_putc(out, '$');
			i += 2;
		} else if (i + 1 < len && (s[i + 1] == '{' || s[i + 1] == '(')) {
			long	close = exp_match(s, len, i + 1);

			if (close < 0) {
				*err_r = exp_err_at("truncated macro reference", s + i, len - i);
				ret = -1;
			} else {
				ret = exp_braced(ex, s + i + 2, (size_t) close - i - 2, out, err_r);
				i = (size_t) close + 1;
			}
		} else if (i + 1 < len && exp_is_name_char(s[i + 1])) {
			char   *name;
			const char *val;

			i++;
			while (i < len && exp_is_name_char(s[i]))
				i++;
			name = xstrndup(s + start + 1, i - start - 1);
			if ((val = conf_exp_name(ex, name, err_r)) == NULL)
				ret = -1;
			else
				buf_puts(out, val);
			free(name);
		} else {
			*err_r = exp_err_at("empty macro name", s, len);
			ret = -1;
		}
		if (ret == 0 && out->len > EXP_MAX_LEN) {
			*err_r = xasprintf("expansion longer than %d bytes", EXP_MAX_LEN);
			ret = -1;
		}
	}
	ex->depth--;
	return ret;
}

void
conf_exp_refs(const char *text, void (*fn)(void *ctx, const char *name, size_t len),
	      void *ctx)
{
	const char *s = text;

	while ((s = strchr(s, '$')) != NULL) {
		const char *n;

		s++;
		if (*s == '$') {
			s++;
			continue;
		}
		n = s;
		if (*n == '{' || *n == '(') {
			n++;
			while (exp_is_space(*n))
				n++;
		}
		s = n;
		while (exp_is_name_char(*s))
			s++;
		if (s > n)
			fn(ctx, n, (size_t) (s - n));
	}
}
