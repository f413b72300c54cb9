/*
 * map_query: what the database tables share.  See map_query.h.
 */
#include "policy/map_query.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/conf.h"
#include "conf/conf_impl.h"
#include "log/log.h"
#include "policy/maps.h"
#include "policy/matchlist.h"
#include "util/xalloc.h"

/* What the templates need (Postfix's db_common flags). */
#define NEED_KEY_USER		0x01
#define NEED_KEY_DOMAIN		0x02
#define NEED_VALUE_USER		0x04
#define NEED_VALUE_DOMAIN	0x08

struct map_query_cfg {
	char   *path;
	char   *table;		/* "type:path" */
	struct conf_settings set;
	unsigned need;
	int	nparts;			/* highest %N */
	struct matchlist *domain;	/* "domain", or NULL */
};

/* ---- the configuration file ---- */

static void domain_problem(void *ctx, const char *item, const char *why)
{
	char **why_r = ctx;

	(void)item;
	if (*why_r == NULL)
		*why_r = xstrdup(why);
}

struct map_query_cfg *map_query_cfg_open(const char *type, const char *path, char **why_r)
{
	struct conf_report rep = { 0 };
	struct map_query_cfg *cfg;
	const char *domain;
	char *text = NULL;

	*why_r = NULL;
	if (path[0] != '/' && path[0] != '.') {
		*why_r = xasprintf("\"%s\": mxgate reads a table's settings from a file: give its "
				   "path (Postfix would read %s_* parameters from main.cf)",
				   path, path);
		return NULL;
	}
	if (conf_read_file(path, &text) < 0) {
		*why_r = xasprintf("open \"%s\": %s", path, strerror(errno));
		return NULL;
	}
	cfg = xcalloc(1, sizeof(*cfg));
	cfg->path = xstrdup(path);
	cfg->table = xasprintf("%s:%s", type, path);
	conf_parse_main(path, text, &cfg->set, &rep);
	free(text);
	if (rep.count > 0) {
		*why_r = conf_problem_format(&rep.items[0]);
		conf_report_free(&rep);
		map_query_cfg_free(&cfg);
		return NULL;
	}
	conf_report_free(&rep);
	domain = map_query_cfg_str(cfg, "domain", "");
	if (*domain != '\0') {
		char *why = NULL;

		cfg->domain = matchlist_open_text(domain, domain_problem, &why);
		if (why != NULL) {
			*why_r = xasprintf("%s: domain = %s: %s",
					   map_query_cfg_where(cfg, "domain"), domain, why);
			free(why);
			map_query_cfg_free(&cfg);
			return NULL;
		}
	}
	return cfg;
}

void map_query_cfg_free(struct map_query_cfg **cfgp)
{
	struct map_query_cfg *cfg = *cfgp;

	*cfgp = NULL;
	if (cfg == NULL)
		return;
	conf_settings_free(&cfg->set);
	matchlist_free(&cfg->domain);
	free(cfg->path);
	free(cfg->table);
	free(cfg);
}

const char *map_query_cfg_path(const struct map_query_cfg *cfg)
{
	return cfg->path;
}

const char *map_query_cfg_str(const struct map_query_cfg *cfg, const char *name,
			      const char *dflt)
{
	const struct conf_setting *s = conf_settings_get(&cfg->set, name);

	return s != NULL ? s->value : dflt;
}

/* "PATH, line N" of name's setting (PATH when unset); static per thread. */
static const char *cfg_where(const struct map_query_cfg *cfg, const char *name)
{
	static __thread char where[PATH_MAX + 32];
	const struct conf_setting *s = conf_settings_get(&cfg->set, name);

	if (s != NULL && s->line > 0)
		snprintf(where, sizeof(where), "%s, line %d", cfg->path, s->line);
	else
		snprintf(where, sizeof(where), "%s", cfg->path);
	return where;
}

const char *map_query_cfg_where(const struct map_query_cfg *cfg, const char *name)
{
	return cfg_where(cfg, name);
}

long map_query_cfg_int(const struct map_query_cfg *cfg, const char *name, long dflt,
		       char **why_r)
{
	const char *v = map_query_cfg_str(cfg, name, NULL);
	char *end;
	long n;

	if (v == NULL)
		return dflt;
	errno = 0;
	n = strtol(v, &end, 10);
	if (*v == '\0' || *end != '\0' || errno == ERANGE || n < 0 || n > INT_MAX) {
		*why_r = xasprintf("%s: bad numerical configuration: %s = %s",
				   cfg_where(cfg, name), name, v);
		return -1;
	}
	return n;
}

int map_query_cfg_bool(const struct map_query_cfg *cfg, const char *name, int dflt,
		       char **why_r)
{
	const char *v = map_query_cfg_str(cfg, name, NULL);

	if (v == NULL)
		return dflt;
	if (strcasecmp(v, "yes") == 0)
		return 1;
	if (strcasecmp(v, "no") == 0)
		return 0;
	*why_r = xasprintf("%s: bad boolean configuration: %s = %s", cfg_where(cfg, name),
			   name, v);
	return -1;
}

int map_query_cfg_refuse(const struct map_query_cfg *cfg, const char *const *names,
			 char **why_r)
{
	for (size_t i = 0; names[i] != NULL; i++) {
		if (conf_settings_get(&cfg->set, names[i]) != NULL) {
			*why_r = xasprintf("%s: setting \"%s\" is not supported by mxgate",
					   cfg_where(cfg, names[i]), names[i]);
			return -1;
		}
	}
	return 0;
}

/* ---- templates ---- */

int map_query_parse(struct map_query_cfg *cfg, const char *fmt, bool query, char **why_r)
{
	int dynamic = 0;

	for (const char *cp = fmt; *cp; cp++) {
		if (*cp != '%')
			continue;
		switch (*++cp) {
		case '%':
			break;
		case 'u':
			cfg->need |= query ? NEED_KEY_USER : NEED_VALUE_USER;
			dynamic = 1;
			break;
		case 'd':
			cfg->need |= query ? NEED_KEY_DOMAIN : NEED_VALUE_DOMAIN;
			dynamic = 1;
			break;
		case 's':
		case 'S':
			dynamic = 1;
			break;
		case 'U':
			cfg->need |= NEED_KEY_USER;
			dynamic = 1;
			break;
		case '1': case '2': case '3': case '4': case '5':
		case '6': case '7': case '8': case '9':
			if (cfg->nparts < *cp - '0')
				cfg->nparts = *cp - '0';
			/* FALLTHROUGH */
		case 'D':
			cfg->need |= NEED_KEY_DOMAIN;
			dynamic = 1;
			break;
		default:
			*why_r = xasprintf("invalid %s template: %s", query ? "query" : "result",
					   fmt);
			return -1;
		}
	}
	return dynamic;
}

int map_query_domain(const struct map_query_cfg *cfg, const char *key)
{
	const char *at;

	if (cfg->domain == NULL)
		return 1;
	if ((at = strrchr(key, '@')) == NULL || at == key)
		return 0;
	switch (matchlist_match(cfg->domain, at + 1, false)) {
	case ML_MATCH:
		return 1;
	case ML_NOMATCH:
		return 0;
	default:
		return -1;
	}
}

void map_query_escape_sql(void *ctx, const char *s, size_t len, struct buf *out)
{
	(void)ctx;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\'')
			buf_putc(out, '\'');
		buf_putc(out, s[i]);
	}
}

void map_query_escape_ldap(void *ctx, const char *s, size_t len, struct buf *out)
{
	(void)ctx;
	for (size_t i = 0; i < len; i++) {
		switch (s[i]) {
		case '*': case '(': case ')': case '\\': case '\0':
			buf_printf(out, "\\%02x", (unsigned char)s[i]);
			break;
		default:
			buf_putc(out, s[i]);
			break;
		}
	}
}

static void put(map_query_escape_fn *escape, void *ctx, const char *s, size_t len,
		struct buf *out)
{
	if (escape != NULL)
		escape(ctx, s, len, out);
	else
		buf_append(out, s, len);
}

/* The domain part after the last '@' (NULL: none). */
static const char *domain_of(const char *s)
{
	const char *at = strrchr(s, '@');

	return at != NULL ? at + 1 : NULL;
}

/* Label n (1: rightmost) of domain, as [*start, *start + *len); 0 if empty or missing. */
static int label(const char *domain, int n, const char **start, size_t *len)
{
	const char *end = domain + strlen(domain), *p = end;

	for (int i = 1;; i++) {
		const char *dot = p;

		while (dot > domain && dot[-1] != '.')
			dot--;
		if (i == n) {
			*start = dot;
			*len = (size_t)(p - dot);
			return *len > 0;
		}
		if (dot == domain)
			return 0;
		p = dot - 1;
	}
}

int map_query_expand(const struct map_query_cfg *cfg, const char *fmt, const char *value,
		     const char *key, map_query_escape_fn *escape, void *ctx, struct buf *out)
{
	const char *vdomain = NULL, *kdomain = NULL, *parts_of;

	if (value == NULL)
		return 0;
	if (*value == '\0') {
		if (key != NULL)
			msg_warn("table \"%s\": empty lookup result for: \"%s\" -- ignored",
				 cfg->table, key);
		else
			msg_warn("table \"%s\": empty query string -- ignored", cfg->table);
		return 0;
	}
	if (key != NULL) {
		if (cfg->need & (NEED_VALUE_DOMAIN | NEED_VALUE_USER))
			vdomain = domain_of(value);
		if (((vdomain == NULL || *vdomain == '\0') && (cfg->need & NEED_VALUE_DOMAIN))
		    || (vdomain == value + 1 && (cfg->need & NEED_VALUE_USER)))
			return 0;
		if (cfg->need & (NEED_KEY_DOMAIN | NEED_KEY_USER))
			kdomain = domain_of(key);
		if (((kdomain == NULL || *kdomain == '\0') && (cfg->need & NEED_KEY_DOMAIN))
		    || (kdomain == key + 1 && (cfg->need & NEED_KEY_USER))) {
			msg_warn("%s: lookup key '%s' skipped after query", cfg->table, value);
			return 0;
		}
	} else {
		if (cfg->need & (NEED_KEY_DOMAIN | NEED_KEY_USER))
			vdomain = domain_of(value);
		if (((vdomain == NULL || *vdomain == '\0') && (cfg->need & NEED_KEY_DOMAIN))
		    || (vdomain == value + 1 && (cfg->need & NEED_KEY_USER)))
			return 0;
	}
	parts_of = key != NULL ? kdomain : vdomain;
	for (int i = 1; i <= cfg->nparts; i++) {
		const char *s;
		size_t n;

		if (parts_of == NULL || !label(parts_of, i, &s, &n))
			return 0;
	}
	if (out->len > 0)
		buf_putc(out, ',');
	for (const char *cp = fmt; *cp; cp++) {
		const char *s = NULL, *d;
		size_t n = SIZE_MAX;	/* all of s */

		if (*cp != '%') {
			buf_putc(out, *cp);
			continue;
		}
		switch (*++cp) {
		case '%':
			buf_putc(out, '%');
			continue;
		case 's':
			s = value;
			break;
		case 'u':
			s = value;
			if (vdomain != NULL)
				n = (size_t)(vdomain - 1 - value);
			break;
		case 'd':
			s = vdomain;
			break;
		case 'S':
			s = key != NULL ? key : value;
			break;
		case 'U':
			s = key != NULL ? key : value;
			d = key != NULL ? kdomain : vdomain;
			if (d != NULL)
				n = (size_t)(d - 1 - s);
			break;
		case 'D':
			s = key != NULL ? kdomain : vdomain;
			break;
		default:	/* '1'..'9': map_query_parse() let nothing else through */
			label(parts_of, *cp - '0', &s, &n);
			break;
		}
		if (s == NULL)		/* a template that was not parsed */
			continue;
		put(escape, ctx, s, n != SIZE_MAX ? n : strlen(s), out);
	}
	return 1;
}

/* ---- results ---- */

void map_query_result_init(struct map_query_result *r, const struct map_query_cfg *cfg,
			   const char *fmt, long limit, const char *key)
{
	memset(r, 0, sizeof(*r));
	r->cfg = cfg;
	r->fmt = fmt;
	r->limit = limit;
	r->key = key;
}

int map_query_result_add(struct map_query_result *r, const char *value)
{
	if (map_query_expand(r->cfg, r->fmt, value, r->key, NULL, NULL, &r->out) == 1
	    && r->limit > 0 && ++r->count > r->limit) {
		msg_warn("%s: Expansion limit exceeded for key: '%s'", r->cfg->table, r->key);
		return -1;
	}
	return 0;
}

int map_query_result_done(struct map_query_result *r, char **value_r)
{
	int found = r->out.len > 0;

	*value_r = found ? buf_steal(&r->out) : NULL;
	buf_free(&r->out);
	return found ? MAP_FOUND : MAP_NOTFOUND;
}

void map_query_result_free(struct map_query_result *r)
{
	buf_free(&r->out);
}
