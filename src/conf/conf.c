/*
 * conf: the parameter table, lookup layers, views and conf_load().
 *
 * A value is looked up, most specific first, in: a service's master.cf -o
 * options, the command-line -o overrides, main.cf, mxgate's default
 * (params.def), the defaults computed from the host (myhostname, mydomain,
 * mynetworks) and Postfix 3.7.11's recorded default for names mxgate does
 * not implement (so "$mail_version" still means what it means in Postfix).
 */
#include "conf/conf_impl.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "log/log.h"
#include "util/xalloc.h"

const struct conf_param_def conf_params[P__COUNT] = {
#define PARAM(name, type, def, min, max) { #name, CONF_T_##type, def, min, max },
#include "conf/params.def"
#undef PARAM
};

/* The parameters mxgate refuses unless their value is harmless (refused.def). */
struct conf_refused {
	const char *name;
	const char *harmless;	/* space-separated values that change nothing */
	const char *unless;	/* "" or a parameter that, set, makes this one inert */
	const char *reason;
};

static const struct conf_refused conf_refused[] = {
#define REFUSED(name, harmless, unless, reason) { #name, harmless, unless, reason },
#include "conf/refused.def"
#undef REFUSED
};

#define CONF_NREFUSED (sizeof(conf_refused) / sizeof(conf_refused[0]))

/* ---- names ---- */

static int
conf_cmp_def(const void *key, const void *elem)
{
	return strcmp(key, ((const struct conf_param_def *) elem)->name);
}

int
conf_param_id(const char *name)
{
	const struct conf_param_def *d;

	d = bsearch(name, conf_params, P__COUNT, sizeof(conf_params[0]), conf_cmp_def);
	return d ? (int) (d - conf_params) : -1;
}

const char *
conf_param_name(enum param_id id)
{
	if ((unsigned) id >= P__COUNT)
		msg_panic("conf_param_name: bad parameter id %d", (int) id);
	return conf_params[id].name;
}

static int
conf_cmp_str(const void *key, const void *elem)
{
	return strcmp(key, *(const char *const *) elem);
}

static long
conf_postfix_index(const char *name)
{
	const char *const *p;

	p = bsearch(name, postfix_param_names, postfix_param_count, sizeof(postfix_param_names[0]),
		    conf_cmp_str);
	return p ? (long) (p - postfix_param_names) : -1;
}

int
conf_postfix_known(const char *name)
{
	return conf_postfix_index(name) >= 0;
}

const char *
conf_postfix_default(const char *name)
{
	long	i = conf_postfix_index(name);

	return i >= 0 ? postfix_param_defaults[i] : NULL;
}

static int
conf_cmp_refused(const void *key, const void *elem)
{
	return strcmp(key, ((const struct conf_refused *) elem)->name);
}

static const struct conf_refused *
conf_refused_find(const char *name)
{
	return bsearch(name, conf_refused, CONF_NREFUSED, sizeof(conf_refused[0]),
		       conf_cmp_refused);
}

int
conf_param_is_refused(const char *name)
{
	return conf_refused_find(name) != NULL;
}

size_t
conf_refused_count(void)
{
	return CONF_NREFUSED;
}

const char *
conf_refused_name(size_t i)
{
	return i < CONF_NREFUSED ? conf_refused[i].name : NULL;
}

/* Observed with postconf -x on Postfix 3.7.11: these stay unexpanded. */
static const char *const conf_raw_names[] = {
	"command_execution_directory", "default_rbl_reply", "forward_path", "luser_relay",
	"mailbox_command", "postscreen_expansion_filter", "postscreen_reject_footer",
	"smtpd_expansion_filter", "smtpd_reject_footer",
};

int
conf_param_is_raw(const char *name)
{
	for (size_t i = 0; i < sizeof(conf_raw_names) / sizeof(conf_raw_names[0]); i++)
		if (strcmp(conf_raw_names[i], name) == 0)
			return 1;
	return 0;
}

/* ---- report ---- */

void
conf_report_add(struct conf_report *rep, int is_error, enum conf_problem_kind kind,
		const char *file, int line, const char *param, const char *value,
		const char *fmt, ...)
{
	struct conf_problem *p;
	va_list	ap;
	char   *text;
	struct buf b = BUF_INIT;

	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	text = buf_steal(&b);
	for (size_t i = 0; i < rep->count; i++) {
		p = &rep->items[i];
		if (p->is_error == is_error && p->line == line && strcmp(p->text, text) == 0
		    && ((p->file == NULL && file == NULL)
			|| (p->file && file && strcmp(p->file, file) == 0))) {
			free(text);
			return;
		}
	}
	rep->items = xrealloc(rep->items, (rep->count + 1) * sizeof(*rep->items));
	p = &rep->items[rep->count++];
	p->is_error = is_error;
	p->kind = kind;
	p->file = file ? xstrdup(file) : NULL;
	p->line = line;
	p->param = param ? xstrdup(param) : NULL;
	p->value = value ? xstrdup(value) : NULL;
	p->text = text;
	if (is_error)
		rep->errors++;
}

void
conf_report_free(struct conf_report *rep)
{
	for (size_t i = 0; i < rep->count; i++) {
		free(rep->items[i].file);
		free(rep->items[i].param);
		free(rep->items[i].value);
		free(rep->items[i].text);
	}
	free(rep->items);
	memset(rep, 0, sizeof(*rep));
}

/* Order: command line and built-in first, then by file name and line. */
static int
conf_problem_before(const struct conf_problem *a, const struct conf_problem *b)
{
	int	c;

	if (a->file == NULL || b->file == NULL)
		return a->file == NULL && b->file != NULL;
	if ((c = strcmp(a->file, b->file)) != 0)
		return c < 0;
	return a->line < b->line;
}

/* Stable insertion sort: problems found in one place keep their order. */
static void
conf_report_sort(struct conf_report *rep)
{
	for (size_t i = 1; i < rep->count; i++) {
		struct conf_problem p = rep->items[i];
		size_t	j = i;

		for (; j > 0 && conf_problem_before(&p, &rep->items[j - 1]); j--)
			rep->items[j] = rep->items[j - 1];
		rep->items[j] = p;
	}
}

char *
conf_problem_format(const struct conf_problem *p)
{
	if (p->file && p->line > 0)
		return xasprintf("%s, line %d: %s", p->file, p->line, p->text);
	if (p->file)
		return xasprintf("%s: %s", p->file, p->text);
	return xstrdup(p->text);
}

/* ---- lookup contexts ---- */

enum { COMP_MYHOSTNAME, COMP_MYDOMAIN, COMP_MYNETWORKS, COMP_PROCESS_ID, COMP_PROCESS_NAME,
	COMP__COUNT };

static const char *const conf_computed_names[COMP__COUNT] = {
	"myhostname", "mydomain", "mynetworks", "process_id", "process_name",
};

void
conf_ctx_init(struct conf_ctx *ctx, const struct conf_settings *svc,
	      const struct conf_settings *over, const struct conf_settings *main,
	      const char *force_stress)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->layer[0] = svc;
	ctx->layer[1] = over;
	ctx->layer[2] = main;
	ctx->stress = force_stress;
	ctx->ex = conf_exp_new(conf_ctx_lookup, ctx);
}

void
conf_ctx_free(struct conf_ctx *ctx)
{
	conf_exp_free(&ctx->ex);
	for (size_t i = 0; i < sizeof(ctx->computed) / sizeof(ctx->computed[0]); i++)
		free(ctx->computed[i]);
	memset(ctx, 0, sizeof(*ctx));
}

const struct conf_setting *
conf_ctx_setting(const struct conf_ctx *ctx, const char *name)
{
	const struct conf_setting *s;

	for (int i = 0; i < 3; i++)
		if ((s = conf_settings_get(ctx->layer[i], name)) != NULL)
			return s;
	return NULL;
}

/* A default that Postfix computes from the host and other parameters. */
static char *
conf_compute(struct conf_ctx *ctx, int which, char **err_r)
{
	const char *a, *b, *c;
	char   *host, *dot, *res;

	switch (which) {
	case COMP_MYHOSTNAME:
		host = conf_host_name();
		if (strchr(host, '.') != NULL)
			return host;
		/* A bare name gets mydomain only when that is set explicitly. */
		a = "localdomain";
		if (conf_ctx_setting(ctx, "mydomain") != NULL
		    && (a = conf_exp_name(ctx->ex, "mydomain", err_r)) == NULL) {
			free(host);
			return NULL;
		}
		res = xasprintf("%s.%s", host, a);
		free(host);
		return res;
	case COMP_MYDOMAIN:
		if ((a = conf_exp_name(ctx->ex, "myhostname", err_r)) == NULL)
			return NULL;
		dot = strchr(a, '.');
		return xstrdup(dot ? dot + 1 : "localdomain");
	case COMP_MYNETWORKS:
		if ((a = conf_exp_name(ctx->ex, "mynetworks_style", err_r)) == NULL
		    || (b = conf_exp_name(ctx->ex, "inet_interfaces", err_r)) == NULL
		    || (c = conf_exp_name(ctx->ex, "inet_protocols", err_r)) == NULL)
			return NULL;
		return conf_mynetworks(a, b, c, err_r);
	case COMP_PROCESS_ID:
		return xasprintf("%ld", (long) getpid());
	default:
		return xstrdup("mxgate");
	}
}

const char *
conf_ctx_lookup(void *vctx, const char *name, char **err_r)
{
	struct conf_ctx *ctx = vctx;
	const struct conf_setting *s;
	int	id;

	*err_r = NULL;
	if (ctx->stress != NULL && strcmp(name, "stress") == 0)
		return ctx->stress;
	if ((s = conf_ctx_setting(ctx, name)) != NULL)
		return s->value;
	for (int i = 0; i < COMP__COUNT; i++) {
		if (strcmp(name, conf_computed_names[i]) != 0)
			continue;
		if (ctx->computed[i] == NULL)
			ctx->computed[i] = conf_compute(ctx, i, err_r);
		return ctx->computed[i];
	}
	if ((id = conf_param_id(name)) >= 0)
		return conf_params[id].def;
	return conf_postfix_default(name);
}

/* ---- raw configuration ---- */

static void
conf_add_ref(void *vraw, const char *name, size_t len)
{
	struct conf_raw *raw = vraw;

	for (size_t i = 0; i < raw->nrefs; i++)
		if (strlen(raw->refs[i]) == len && strncmp(raw->refs[i], name, len) == 0)
			return;
	raw->refs = xrealloc(raw->refs, (raw->nrefs + 1) * sizeof(*raw->refs));
	raw->refs[raw->nrefs++] = xstrndup(name, len);
}

int
conf_raw_is_ref(const struct conf_raw *raw, const char *name)
{
	for (size_t i = 0; i < raw->nrefs; i++)
		if (strcmp(raw->refs[i], name) == 0)
			return 1;
	return 0;
}

static void
conf_collect_refs(struct conf_raw *raw, const struct conf_settings *s)
{
	for (size_t i = 0; i < s->count; i++)
		conf_exp_refs(s->items[i].value, conf_add_ref, raw);
}

/* Warn about names that mxgate ignores: Postfix's but not ours, or nobody's. */
/* Is name a word of a smtpd_restriction_classes setting (a class is a parameter)? */
static int
conf_is_class_name(const struct conf_raw *raw, const char *name)
{
	const struct conf_settings *layers[] = { &raw->main, &raw->over };
	size_t len = strlen(name);

	for (size_t i = 0; i < sizeof(layers) / sizeof(layers[0]) + raw->nents; i++) {
		const struct conf_settings *s = i < 2 ? layers[i] : &raw->ents[i - 2].opts;
		const struct conf_setting *c = conf_settings_get(s, "smtpd_restriction_classes");
		const char *p;

		for (p = c ? c->value : ""; (p = strstr(p, name)) != NULL; p += len)
			if ((p == c->value || strchr(", \t\n", p[-1]))
			    && (p[len] == '\0' || strchr(", \t\n", p[len])))
				return 1;
	}
	return 0;
}

/* Is name a spawn service's "<service>_time_limit" (spawn(8))? */
static int
conf_is_spawn_param(const struct conf_raw *raw, const char *name)
{
	size_t	len = strlen(name), tl = strlen("_time_limit");

	if (len <= tl || strcmp(name + len - tl, "_time_limit") != 0)
		return 0;
	for (size_t i = 0; i < raw->nspawns; i++)
		if (strlen(raw->spawns[i].name) == len - tl
		    && strncmp(raw->spawns[i].name, name, len - tl) == 0)
			return 1;
	return 0;
}

static int
conf_raw_has_postscreen(const struct conf_raw *raw)
{
	for (size_t i = 0; i < raw->nents; i++)
		if (raw->ents[i].kind == MENT_POSTSCREEN)
			return 1;
	return 0;
}

static void
conf_check_names(const struct conf_raw *raw, const struct conf_settings *s,
		 struct conf_report *rep)
{
	for (size_t i = 0; i < s->count; i++) {
		const struct conf_setting *it = &s->items[i];

		if (conf_param_id(it->name) >= 0 || conf_is_class_name(raw, it->name)
		    || conf_is_spawn_param(raw, it->name))
			continue;
		/* Whether these are harmless depends on their expanded value in each
		 * view: conf_check_refused() reports them. */
		if (conf_refused_find(it->name) != NULL)
			continue;
		/* applied to the services that postscreen lines stand for (services.c) */
		if (strncmp(it->name, "postscreen_upstream_proxy_", 26) == 0
		    && conf_raw_has_postscreen(raw))
			continue;
		if (conf_postfix_known(it->name))
			conf_report_add(rep, 0, CONF_PROB_NOT_IMPLEMENTED, it->file, it->line,
					it->name, it->value,
					"%s: parameter is not implemented by mxgate, ignored",
					it->name);
		else if (!conf_raw_is_ref(raw, it->name))
			conf_report_add(rep, 0, CONF_PROB_UNUSED, it->file, it->line, it->name,
					it->value, "unused parameter: %s=%s", it->name, it->value);
	}
}

static int
conf_read_opt(const char *path, char **text_r, struct conf_report *rep)
{
	*text_r = NULL;
	if (conf_read_file(path, text_r) == 0)
		return 1;
	if (errno != ENOENT)
		conf_report_add(rep, 1, CONF_PROB_SYNTAX, path, 0, NULL, NULL, "open: %s",
				strerror(errno));
	return 0;
}

int
conf_raw_load(struct conf_raw *raw, const char *dir, char *const *overrides,
	      size_t noverrides, int read_master, struct conf_report *rep)
{
	size_t	errors = rep->errors;
	char   *text;

	memset(raw, 0, sizeof(*raw));
	raw->dir = xstrdup(dir ? dir : CONF_DEFAULT_DIR);
	raw->main_path = xasprintf("%s/main.cf", raw->dir);
	raw->master_path = xasprintf("%s/master.cf", raw->dir);
	if (conf_read_opt(raw->main_path, &text, rep)) {
		conf_parse_main(raw->main_path, text, &raw->main, rep);
		free(text);
	}
	for (size_t i = 0; i < noverrides; i++) {
		const char *o = overrides[i], *eq = strchr(o, '=');
		size_t	a = 0, b;
		char   *name, *value;

		b = eq ? (size_t) (eq - o) : 0;
		while (a < b && (o[a] == ' ' || o[a] == '\t'))
			a++;
		while (b > a && (o[b - 1] == ' ' || o[b - 1] == '\t'))
			b--;
		if (eq == NULL || a == b) {
			conf_report_add(rep, 1, CONF_PROB_SYNTAX, NULL, 0, NULL, o,
					"-o option requires name=value: \"%s\"", o);
			continue;
		}
		name = xstrndup(o + a, b - a);
		eq++;
		while (*eq == ' ' || *eq == '\t')
			eq++;
		value = xstrdup(eq);
		for (b = strlen(value); b > 0 && (value[b - 1] == ' ' || value[b - 1] == '\t'); b--)
			value[b - 1] = 0;
		conf_settings_set(&raw->over, name, value, NULL, 0);
		free(name);
		free(value);
	}
	/* $config_directory is the directory the configuration was read from. */
	if (conf_settings_get(&raw->main, "config_directory") == NULL
	    && conf_settings_get(&raw->over, "config_directory") == NULL)
		conf_settings_set(&raw->over, "config_directory", raw->dir, NULL, 0);
	if (read_master && conf_read_opt(raw->master_path, &text, rep)) {
		raw->have_master = 1;
		conf_parse_master(raw->master_path, text, &raw->ents, &raw->nents, &raw->spawns,
				  &raw->nspawns, rep);
		free(text);
	}
	conf_collect_refs(raw, &raw->main);
	conf_collect_refs(raw, &raw->over);
	for (size_t i = 0; i < raw->nents; i++)
		conf_collect_refs(raw, &raw->ents[i].opts);
	for (size_t i = 0; i < raw->nspawns; i++)
		conf_collect_refs(raw, &raw->spawns[i].opts);
	conf_check_names(raw, &raw->main, rep);
	conf_check_names(raw, &raw->over, rep);
	for (size_t i = 0; i < raw->nents; i++)
		conf_check_names(raw, &raw->ents[i].opts, rep);
	for (size_t i = 0; i < raw->nspawns; i++)
		conf_check_names(raw, &raw->spawns[i].opts, rep);
	return rep->errors > errors ? -1 : 0;
}

void
conf_raw_free(struct conf_raw *raw)
{
	free(raw->dir);
	free(raw->main_path);
	free(raw->master_path);
	conf_settings_free(&raw->main);
	conf_settings_free(&raw->over);
	conf_master_ents_free(raw->ents, raw->nents);
	conf_master_ents_free(raw->spawns, raw->nspawns);
	for (size_t i = 0; i < raw->nrefs; i++)
		free(raw->refs[i]);
	free(raw->refs);
	memset(raw, 0, sizeof(*raw));
}

/* ---- views ---- */

struct conf_user_param {
	char   *name;
	char  **list;
	size_t	n;
};

struct conf_view {
	char   *str[P__COUNT];
	long	num[P__COUNT];
	char  **list[P__COUNT];
	size_t	nlist[P__COUNT];
	/* the admin's own parameters that smtpd_restriction_classes names */
	struct conf_user_param *user;
	size_t	nuser;
};

/* Parameters whose STR or LIST values come from a fixed set. */
static const struct {
	enum param_id id;
	const char *const *values;
} conf_enums[] = {
	{P_smtpd_forbid_bare_newline, (const char *const[]) {"no", "normalize", "yes", "reject", NULL}},
	{P_mynetworks_style, (const char *const[]) {"host", "subnet", "class", NULL}},
	{P_inet_protocols, (const char *const[]) {"all", "ipv4", "ipv6", NULL}},
	{P_smtpd_upstream_proxy_protocol, (const char *const[]) {"", "haproxy", NULL}},
};

static void
conf_view_free(struct conf_view *v)
{
	if (v == NULL)
		return;
	for (int i = 0; i < P__COUNT; i++) {
		free(v->str[i]);
		conf_list_free(v->list[i]);
	}
	for (size_t i = 0; i < v->nuser; i++) {
		free(v->user[i].name);
		conf_list_free(v->user[i].list);
	}
	free(v->user);
	free(v);
}

/*
 * The parameters smtpd_restriction_classes names: expanded in this view's
 * context and split as lists.  An undefined one is not kept (its user says so).
 */
static void
conf_view_user_params(struct conf_view *v, struct conf_ctx *ctx, struct conf_report *rep)
{
	size_t n = v->nlist[P_smtpd_restriction_classes];

	v->user = xcalloc(n + 1, sizeof(*v->user));
	for (size_t i = 0; i < n; i++) {
		const char *name = v->list[P_smtpd_restriction_classes][i];
		const struct conf_setting *origin = conf_ctx_setting(ctx, name);
		char   *err = NULL, **list;
		const char *val;
		size_t	nl;

		if (origin == NULL)
			continue;
		if ((val = conf_exp_name(ctx->ex, name, &err)) == NULL
		    || (list = conf_split_list(val, &nl, &err)) == NULL) {
			conf_report_add(rep, 1, CONF_PROB_VALUE, origin->file, origin->line, name,
					origin->value, "%s = %s: %s", name, origin->value, err);
			free(err);
			continue;
		}
		v->user[v->nuser].name = xstrdup(name);
		v->user[v->nuser].list = list;
		v->user[v->nuser++].n = nl;
	}
}

/* Decimal integer, whole string. */
static int
conf_parse_long(const char *s, long *v_r, const char **rest_r)
{
	char   *end;

	if (!(*s == '-' || (*s >= '0' && *s <= '9')))
		return -1;
	errno = 0;
	*v_r = strtol(s, &end, 10);
	if (errno != 0 || end == s || (*s == '-' && end == s + 1))
		return -1;
	if (rest_r)
		*rest_r = end;
	else if (*end != 0)
		return -1;
	return 0;
}

static void
conf_check_value(struct conf_view *v, int id, const struct conf_setting *origin,
		 struct conf_report *rep)
{
	const struct conf_param_def *d = &conf_params[id];
	const char *val = v->str[id], *file = origin ? origin->file : NULL;
	int	line = origin ? origin->line : 0;
	const char *rest;
	long	n, mult = 1;
	char   *err;

#define BAD(...) conf_report_add(rep, 1, CONF_PROB_VALUE, file, line, d->name, val, __VA_ARGS__)
	switch (d->type) {
	case CONF_T_INT:
		if (conf_parse_long(val, &n, NULL) < 0) {
			BAD("bad numerical configuration: %s = %s", d->name, val);
			return;
		}
		goto bounds;
	case CONF_T_TIME:
		if (conf_parse_long(val, &n, &rest) < 0 || (rest[0] && rest[1])) {
			BAD("parameter %s: bad time value or unit: %s", d->name, val);
			return;
		}
		switch (*rest) {
		case 0: case 's': mult = 1; break;
		case 'm': mult = 60; break;
		case 'h': mult = 3600; break;
		case 'd': mult = 86400; break;
		case 'w': mult = 7 * 86400; break;
		default:
			BAD("parameter %s: bad time value or unit: %s", d->name, val);
			return;
		}
		if (n > 2147483647L / mult || n < -2147483647L / mult) {
			BAD("parameter %s: time value too large: %s", d->name, val);
			return;
		}
		n *= mult;
bounds:
		v->num[id] = n;
		if (d->min == 0 && d->max == 0)
			return;
		if (n < d->min)
			BAD("invalid %s parameter value %s < %ld%s", d->name, val, d->min,
			    d->type == CONF_T_TIME ? "s" : "");
		else if (n > d->max)
			BAD("invalid %s parameter value %s > %ld%s", d->name, val, d->max,
			    d->type == CONF_T_TIME ? "s" : "");
		return;
	case CONF_T_BOOL:
		if (strcasecmp(val, "yes") == 0)
			v->num[id] = 1;
		else if (strcasecmp(val, "no") == 0)
			v->num[id] = 0;
		else
			BAD("bad boolean configuration: %s = %s", d->name, val);
		return;
	case CONF_T_LIST:
	case CONF_T_STR:
		/* Postfix's mail_conf_str.c text. */
		if (d->min > 0 && strlen(val) < (size_t) d->min) {
			BAD("bad string length %zu < %ld: %s = %s", strlen(val), d->min, d->name, val);
			if (d->type == CONF_T_LIST)
				v->list[id] = xcalloc(1, sizeof(char *));
			return;
		}
		if (d->max > 0 && strlen(val) > (size_t) d->max) {
			BAD("bad string length %zu > %ld: %s = %s", strlen(val), d->max, d->name, val);
			if (d->type == CONF_T_LIST)
				v->list[id] = xcalloc(1, sizeof(char *));
			return;
		}
		if (d->type == CONF_T_STR)
			break;
		if ((v->list[id] = conf_split_list(val, &v->nlist[id], &err)) == NULL) {
			BAD("%s = %s: %s", d->name, val, err);
			free(err);
			v->list[id] = xcalloc(1, sizeof(char *));
			v->nlist[id] = 0;
			return;
		}
		break;
	}
	if (id == P_compatibility_level) {
		int	cmp;

		if (conf_level_cmp(val, "0", &cmp) < 0)
			BAD("malformed compatibility level syntax: %s = %s", d->name, val);
		return;
	}
	/* The names are the log module's; the text is Postfix's mail_params.c. */
	if (id == P_syslog_facility && log_facility_code(val) < 0) {
		BAD("parameter %s: unrecognized value: %s", d->name, val);
		return;
	}
	for (size_t k = 0; k < sizeof(conf_enums) / sizeof(conf_enums[0]); k++) {
		char   *one[] = {v->str[id], NULL};
		char  **items = d->type == CONF_T_LIST ? v->list[id] : one;

		if ((int) conf_enums[k].id != id)
			continue;
		for (char **it = items; *it; it++) {
			const char *const *e;
			struct buf allowed = BUF_INIT;

			for (e = conf_enums[k].values; *e; e++)
				if (strcasecmp(*e, *it) == 0)
					break;
			if (*e)
				continue;
			for (e = conf_enums[k].values; *e; e++)
				buf_printf(&allowed, "%s%s", allowed.len ? ", " : "", *e);
			BAD("%s = %s: unknown value \"%s\" (expected %s)", d->name, val, *it,
			    buf_str(&allowed));
			buf_free(&allowed);
		}
	}
#undef BAD
}

/*
 * virtual_mailbox_base must be an absolute path, as Postfix's virtual(8)
 * requires.  Postfix finds out only when it delivers, and then stops: "fatal:
 * do not specify relative pathname: virtual_mailbox_base = vmail", or, when
 * it is empty, "fatal: bad string length 0 < 1: virtual_mailbox_base = "
 * (both observed with 3.7.11).  mxgate refuses to start instead: otherwise
 * every RCPT to a virtual mailbox would get 451 4.3.5.  An empty base is
 * fine while there is no virtual mailbox domain, or while virtual_transport
 * is not virtual(8) (lmtp:...: no Maildir of ours; a transport_maps entry
 * that leads to virtual still gets 451 4.3.5 at RCPT, never a silent loss).
 */
static void
conf_check_virtual_base(const struct conf_view *v, const struct conf_ctx *ctx,
			struct conf_report *rep)
{
	const char *base = v->str[P_virtual_mailbox_base];
	const struct conf_setting *origin = conf_ctx_setting(ctx, "virtual_mailbox_base");
	const char *file = origin ? origin->file : NULL;
	int	line = origin ? origin->line : 0;

	if (*base == '/')
		return;
	if (*base != 0)
		conf_report_add(rep, 1, CONF_PROB_VALUE, file, line, "virtual_mailbox_base", base,
				"do not specify relative pathname: virtual_mailbox_base = %s "
				"(virtual mailboxes need an absolute path)", base);
	else if (v->nlist[P_virtual_mailbox_domains] > 0
		 && (v->str[P_virtual_transport][0] == '\0'
		     || (strncasecmp(v->str[P_virtual_transport], "virtual", 7) == 0
			 && (v->str[P_virtual_transport][7] == '\0'
			     || v->str[P_virtual_transport][7] == ':'))))
		conf_report_add(rep, 1, CONF_PROB_VALUE, file, line, "virtual_mailbox_base", base,
				"bad string length 0 < 1: virtual_mailbox_base = "
				"(virtual_mailbox_domains is not empty: virtual mailboxes need an "
				"absolute path)");
}

/*
 * As Postfix's maillog_client.c at start-up: a maillog_file outside
 * maillog_file_prefixes is refused (the rule is the log module's, which
 * enforces it again when it opens the file).
 */
static void
conf_check_maillog(const struct conf_view *v, const struct conf_ctx *ctx,
		   struct conf_report *rep)
{
	const char *file = v->str[P_maillog_file];
	const struct conf_setting *origin;

	if (*file == '\0' || *v->str[P_maillog_file_prefixes] == '\0'
	    || log_file_allowed(file, v->str[P_maillog_file_prefixes]))
		return;
	origin = conf_ctx_setting(ctx, "maillog_file");
	conf_report_add(rep, 1, CONF_PROB_VALUE, origin ? origin->file : NULL,
			origin ? origin->line : 0, "maillog_file", file,
			"maillog_file value '%s' does not match any prefix in "
			"maillog_file_prefixes", file);
}

/*
 * A service's own -o syslog_name: Postfix tags that service's lines with it
 * ("watchdog/smtpd[PID]"); mxgate's lines carry the global syslog_name, so
 * say that the service's is not applied.
 */
static void
conf_check_service_syslog_name(const struct conf_settings *svc, struct conf_report *rep)
{
	const struct conf_setting *s = svc ? conf_settings_get(svc, "syslog_name") : NULL;

	if (s != NULL)
		conf_report_add(rep, 0, CONF_PROB_NOT_IMPLEMENTED, s->file, s->line, s->name,
				s->value, "%s: a service's own syslog_name is not implemented by "
				"mxgate, ignored: its lines carry main.cf's", s->name);
}

/* 1 if value (expanded) is empty or every item of it is one of r's harmless words. */
static int
conf_refused_harmless(const struct conf_refused *r, const char *value)
{
	char  **items;
	size_t	n;
	char   *err = NULL;
	int	ok = 1;

	if ((items = conf_split_list(value, &n, &err)) == NULL) {
		free(err);
		return 0;
	}
	for (size_t i = 0; ok && i < n; i++) {
		const char *w = r->harmless;
		size_t	len = strlen(items[i]);

		ok = 0;
		while (!ok && *w) {
			size_t	wl = strcspn(w, " ");

			ok = wl == len && strncasecmp(w, items[i], len) == 0;
			w += wl;
			w += strspn(w, " ");
		}
	}
	conf_list_free(items);
	return ok;
}

/*
 * Never silent: every refused.def parameter that this context sets to a
 * value that is not harmless is an error at the line that sets it; one set
 * to a harmless value gets the usual "not implemented, ignored" warning.  A
 * value that does not expand counts as not harmless.
 */
static void
conf_check_refused(struct conf_ctx *ctx, struct conf_report *rep)
{
	for (size_t i = 0; i < CONF_NREFUSED; i++) {
		const struct conf_refused *r = &conf_refused[i];
		const struct conf_setting *s = conf_ctx_setting(ctx, r->name);
		const char *val, *other;
		char   *err = NULL;
		int	harmless;

		if (s == NULL)
			continue;
		val = conf_exp_name(ctx->ex, r->name, &err);
		harmless = val != NULL && conf_refused_harmless(r, val);
		free(err);
		err = NULL;
		if (!harmless && *r->unless) {
			other = conf_exp_name(ctx->ex, r->unless, &err);
			harmless = other != NULL && *other != '\0';
			free(err);
		}
		if (harmless)
			conf_report_add(rep, 0, CONF_PROB_NOT_IMPLEMENTED, s->file, s->line, s->name,
					s->value, "%s: parameter is not implemented by mxgate, ignored",
					s->name);
		else
			conf_report_add(rep, 1, CONF_PROB_NOT_IMPLEMENTED, s->file, s->line, s->name,
					s->value, "%s = %s: parameter is not implemented by mxgate, "
					"refused: %s", s->name, s->value, r->reason);
	}
}

static int
conf_same_place(const struct conf_problem *a, const struct conf_problem *b)
{
	return a->line == b->line && a->param && b->param && strcmp(a->param, b->param) == 0
	    && ((a->file == NULL && b->file == NULL)
		|| (a->file && b->file && strcmp(a->file, b->file) == 0));
}

/*
 * A refused.def setting that is harmless in one view and refused in another
 * (a ${stress?...} value, say) is listed once, as the error.
 */
static void
conf_report_drop_ignored(struct conf_report *rep)
{
	char   *drop = xcalloc(rep->count ? rep->count : 1, 1);
	size_t	out = 0;

	for (size_t i = 0; i < rep->count; i++) {
		const struct conf_problem *p = &rep->items[i];

		if (p->is_error || p->kind != CONF_PROB_NOT_IMPLEMENTED)
			continue;
		for (size_t k = 0; !drop[i] && k < rep->count; k++)
			drop[i] = rep->items[k].is_error
			    && rep->items[k].kind == CONF_PROB_NOT_IMPLEMENTED
			    && conf_same_place(p, &rep->items[k]);
	}
	for (size_t i = 0; i < rep->count; i++) {
		struct conf_problem *p = &rep->items[i];

		if (!drop[i]) {
			rep->items[out++] = *p;
			continue;
		}
		free(p->file);
		free(p->param);
		free(p->value);
		free(p->text);
	}
	rep->count = out;
	free(drop);
}

/* Expand and type-check every implemented parameter in one context. */
static struct conf_view *
conf_view_build(const struct conf_settings *svc, const struct conf_settings *over,
		const struct conf_settings *main, const char *force_stress,
		struct conf_report *rep)
{
	struct conf_view *v = xcalloc(1, sizeof(*v));
	struct conf_ctx ctx;

	conf_ctx_init(&ctx, svc, over, main, force_stress);
	for (int id = 0; id < P__COUNT; id++) {
		const char *name = conf_params[id].name;
		const struct conf_setting *origin = conf_ctx_setting(&ctx, name);
		const char *val;
		char   *err = NULL;

		if (force_stress != NULL && id == P_stress)
			origin = NULL;
		if ((val = conf_exp_name(ctx.ex, name, &err)) == NULL) {
			char   *raw_err = NULL;
			const char *raw = conf_ctx_lookup(&ctx, name, &raw_err);

			conf_report_add(rep, 1, CONF_PROB_VALUE, origin ? origin->file : NULL,
					origin ? origin->line : 0, name, raw,
					"%s = %s: %s", name, raw ? raw : "", err);
			free(raw_err);
			free(err);
			v->str[id] = xstrdup("");
			if (conf_params[id].type == CONF_T_LIST)
				v->list[id] = xcalloc(1, sizeof(char *));
			continue;
		}
		v->str[id] = xstrdup(val);
		conf_check_value(v, id, origin, rep);
	}
	conf_check_virtual_base(v, &ctx, rep);
	conf_check_maillog(v, &ctx, rep);
	conf_check_service_syslog_name(svc, rep);
	conf_view_user_params(v, &ctx, rep);
	conf_check_refused(&ctx, rep);
	conf_ctx_free(&ctx);
	return v;
}

/* ---- conf_load ---- */

struct conf {
	struct conf_raw raw;
	struct conf_view *global;
	struct conf_service *svcs;
	size_t	nsvcs;
	struct conf_spawn *spawns;
	size_t	nspawns;
};

static void
conf_service_free(struct conf_service *s)
{
	free(s->name);
	free(s->host);
	free(s->port);
	conf_view_free((struct conf_view *) s->view);
	conf_view_free((struct conf_view *) s->view_stress);
}

/* Services without a host listen on inet_interfaces: loopback only? */
static int
conf_interfaces_loopback(const struct conf_view *g)
{
	char  *const *l = g->list[P_inet_interfaces];

	if (l == NULL || l[0] == NULL)
		return 0;
	for (; *l; l++)
		if (!conf_host_is_loopback(*l))
			return 0;
	return 1;
}

/* Move the problems of src into dst; with keep_not_impl 0, not-implemented
 * ones (refused.def errors among them) are dropped. */
static void
conf_report_move(struct conf_report *dst, struct conf_report *src, int keep_not_impl)
{
	for (size_t i = 0; i < src->count; i++) {
		const struct conf_problem *p = &src->items[i];

		if (!keep_not_impl && p->kind == CONF_PROB_NOT_IMPLEMENTED)
			continue;
		conf_report_add(dst, p->is_error, p->kind, p->file, p->line, p->param, p->value,
				"%s", p->text);
	}
	conf_report_free(src);
}

/* Drop the not-implemented and unused warnings about a skipped line's -o options. */
static void
conf_report_drop_opts(struct conf_report *rep, const struct conf_settings *opts)
{
	size_t	out = 0;

	for (size_t i = 0; i < rep->count; i++) {
		struct conf_problem *p = &rep->items[i];
		int	drop = 0;

		for (size_t k = 0; !drop && opts && k < opts->count; k++) {
			const struct conf_setting *s = &opts->items[k];

			drop = !p->is_error && (p->kind == CONF_PROB_NOT_IMPLEMENTED
						|| p->kind == CONF_PROB_UNUSED)
			    && p->line == s->line && p->param && strcmp(p->param, s->name) == 0
			    && p->file && s->file && strcmp(p->file, s->file) == 0;
		}
		if (!drop) {
			rep->items[out++] = *p;
			continue;
		}
		free(p->file);
		free(p->param);
		free(p->value);
		free(p->text);
	}
	rep->count = out;
}

/*
 * ent: the inet line (NULL: the built-in smtp service); pass: for a
 * postscreen line, the pass service whose settings and maxproc it runs
 * with, and eff the settings made of them.
 */
static void
conf_add_service(struct conf *c, const struct conf_master_ent *ent,
		 const struct conf_master_ent *pass, const struct conf_settings *eff, long dpl,
		 struct conf_report *rep)
{
	struct conf_service *s;
	const struct conf_settings *opts = pass ? eff : ent ? &ent->opts : NULL;
	const struct conf_setting *st;
	const char *file = ent ? c->raw.master_path : NULL;
	const char *mp = pass ? pass->maxproc : ent ? ent->maxproc : "-";
	int	line = ent ? ent->line : 0;
	char   *host, *port, *err, *why;
	long	maxproc;
	struct conf_report own = {0};

	if (conf_parse_endpoint(ent ? ent->name : "smtp", &host, &port, &err) < 0) {
		conf_report_add(rep, 1, CONF_PROB_SYNTAX, file, line, NULL, ent->name, "%s", err);
		free(err);
		return;
	}
	if (strcmp(mp, "-") == 0) {
		maxproc = dpl;
	} else if (conf_parse_long(mp, &maxproc, NULL) < 0 || maxproc < 0
		   || maxproc > 2147483647L) {
		conf_report_add(rep, 1, CONF_PROB_SYNTAX, file, pass ? pass->line : line, NULL, mp,
				"bad maxproc field: \"%s\"", mp);
		free(host);
		free(port);
		return;
	}
	c->svcs = xrealloc(c->svcs, (c->nsvcs + 1) * sizeof(*c->svcs));
	s = &c->svcs[c->nsvcs++];
	memset(s, 0, sizeof(*s));
	s->name = xstrdup(ent ? ent->name : "smtp");
	s->host = host;
	s->port = port;
	s->maxproc = (int) maxproc;
	s->file = file;
	s->line = line;
	s->opts_line = pass ? pass->line : line;
	s->stress_eligible = maxproc != 1
	    && !(host ? conf_host_is_loopback(host) : conf_interfaces_loopback(c->global));
	st = conf_settings_get(opts, "stress");
	s->stress_mode = st == NULL ? CONF_STRESS_AUTO : *st->value ? CONF_STRESS_ON
	    : CONF_STRESS_OFF;
	/*
	 * Like Postfix's master: an eligible service runs with "-o stress="
	 * until it is overloaded; others see stress as main.cf sets it.
	 */
	s->view = conf_view_build(opts, &c->raw.over, &c->raw.main,
				  s->stress_mode == CONF_STRESS_AUTO && s->stress_eligible ? ""
				  : NULL, &own);
	s->view_stress = conf_view_build(opts, &c->raw.over, &c->raw.main, "yes", &own);
	if (ent == NULL || (why = conf_service_submission(s->view, opts)) == NULL) {
		conf_report_move(rep, &own, 1);
		return;
	}
	/*
	 * A submission service: mxgate offers no AUTH and never relays, so it
	 * would turn every client away.  Not opened; what it sets does not
	 * matter (its TLS enforcement, milters, ... are not refused).
	 */
	conf_report_add(rep, 0, CONF_PROB_OTHER, file, line, NULL, ent->name,
			"service \"%s\": not opened: a submission service (%s): mxgate offers "
			"no SASL AUTH and never relays mail; keep submission on the server that "
			"sends your mail", ent->name, why);
	free(why);
	conf_report_move(rep, &own, 0);
	conf_report_drop_opts(rep, opts);
	conf_service_free(s);
	c->nsvcs--;
}

/*
 * The master.cf services.  Like Postfix's master (master_conf.c), an entry for
 * an endpoint that a later entry names again is replaced by it, with
 * master's warning, here at the later line and naming the earlier one:
 * "duplicate master.cf entry for service "smtp" (25) -- using the last
 * entry" (observed with Postfix 3.7.11, which then serves the last entry's
 * options).  Two sockets on one endpoint would only make the bind fail.
 */
static void
conf_add_master_services(struct conf *c, long dpl, struct conf_report *rep)
{
	size_t	n = c->raw.nents;
	char  **canon = xcalloc(n ? n : 1, sizeof(*canon));
	int    *replaced = xcalloc(n ? n : 1, sizeof(*replaced));

	for (size_t i = 0; i < n; i++) {
		char   *host, *port, *err;

		if (c->raw.ents[i].kind == MENT_PASS)
			continue;
		if (conf_parse_endpoint(c->raw.ents[i].name, &host, &port, &err) < 0) {
			free(err);	/* conf_add_service reports it */
			continue;
		}
		canon[i] = conf_endpoint_name(host, port);
		free(host);
		free(port);
		for (size_t k = i; k-- > 0;) {
			if (canon[k] == NULL || replaced[k] || strcmp(canon[k], canon[i]) != 0)
				continue;
			replaced[k] = 1;
			conf_report_add(rep, 0, CONF_PROB_OTHER, c->raw.master_path,
					c->raw.ents[i].line, NULL, c->raw.ents[i].name,
					"duplicate master.cf entry for service \"%s\" (%s) -- using "
					"the last entry; the entry at line %d is ignored",
					c->raw.ents[k].name, canon[i], c->raw.ents[k].line);
			break;
		}
	}
	for (size_t i = 0; i < n; i++) {
		const struct conf_master_ent *e = &c->raw.ents[i], *pass;
		struct conf_settings eff = {0};
		char   *pname;

		free(canon[i]);
		if (replaced[i] || e->kind == MENT_PASS)
			continue;
		if (e->kind == MENT_SMTPD) {
			conf_add_service(c, e, NULL, NULL, dpl, rep);
		} else if ((pass = conf_postscreen_pass(e, c->raw.ents, n, &c->raw.over,
						       &c->raw.main, &pname)) == NULL) {
			conf_report_add(rep, 0, CONF_PROB_OTHER, c->raw.master_path, e->line, NULL,
					e->name, "service \"%s\": not opened: postscreen hands "
					"clients to service \"%s\" (smtpd_service_name), which has "
					"no \"pass ... smtpd\" line in master.cf", e->name, pname);
			free(pname);
		} else {
			free(pname);
			(void) conf_check_postscreen(c->raw.master_path, e, pass, &c->raw.over,
						     &c->raw.main, &eff, rep);
			conf_add_service(c, e, pass, &eff, dpl, rep);
			conf_settings_free(&eff);
		}
	}
	/* The chroot column: accepted, said once. */
	for (size_t i = 0; i < c->nsvcs; i++) {
		const struct conf_master_ent *e = NULL;

		for (size_t k = 0; k < n && e == NULL; k++)
			if (c->raw.ents[k].line == c->svcs[i].line)
				e = &c->raw.ents[k];
		if (e == NULL || e->chroot == NULL || strcmp(e->chroot, "y") != 0)
			continue;
		conf_report_add(rep, 0, CONF_PROB_OTHER, c->raw.master_path, e->line, NULL,
				e->chroot, "service \"%s\": chroot \"y\" is accepted, but mxgate "
				"does not chroot (for this service or any other): its network side "
				"runs as mail_owner, without root and without capabilities "
				"(docs/security.md)", e->name);
		break;
	}
	free(canon);
	free(replaced);
}

/* ---- spawn services (spawn(8)) ---- */

static void
conf_spawn_free(struct conf_spawn *s)
{
	free(s->name);
	free(s->host);
	free(s->port);
	free(s->path);
	free(s->user);
	conf_list_free(s->argv);
	conf_view_free((struct conf_view *)s->view);
}

static int
conf_parse_seconds(const char *val, long *out)
{
	const char *rest;
	long	n, mult;

	if (conf_parse_long(val, &n, &rest) < 0 || n < 0 || (rest[0] && rest[1]))
		return -1;
	switch (*rest) {
	case 0: case 's': mult = 1; break;
	case 'm': mult = 60; break;
	case 'h': mult = 3600; break;
	case 'd': mult = 86400; break;
	case 'w': mult = 7 * 86400; break;
	default: return -1;
	}
	if (n > 2147483647L / mult)
		return -1;
	*out = n * mult;
	return 0;
}

/*
 * spawn(8)'s get_service_attr(): user=name[:group] and argv=command..., with
 * its refusals (root, the mail system owner), and master.cf's fields.
 */
static void
conf_add_spawn(struct conf *c, const struct conf_master_ent *ent, long dpl,
	       struct conf_report *rep)
{
	struct conf_spawn s = { 0 };
	const char *file = c->raw.master_path;
	int	line = ent->line, bad = 0;
	struct conf_view *v;
	struct conf_ctx ctx;
	char   *err = NULL, *tl_name;
	const char *tl;
	const char *owner;
	struct passwd *opw;
	int	have_owner;
	uid_t	owner_uid;
	gid_t	owner_gid;

#define SPAWN_BAD(...) do { 		conf_report_add(rep, 1, CONF_PROB_NOT_IMPLEMENTED, file, line, NULL, ent->name, 				__VA_ARGS__); 		bad = 1; 	} while (0)

	s.name = xstrdup(ent->name);
	s.file = file;
	s.line = line;
	if (strcmp(ent->type, "unix") != 0 && strcmp(ent->type, "inet") != 0)
		SPAWN_BAD("service \"%s\": spawn over \"%s\" is not implemented by mxgate "
			  "(unix and inet are)", ent->name, ent->type);
	if (strcmp(ent->unpriv, "n") != 0)
		SPAWN_BAD("service \"%s\": spawn must run privileged: set the unpriv field to "
			  "\"n\" (it is \"%s\")", ent->name, ent->unpriv);
	if (strcmp(ent->chroot, "-") != 0 && strcmp(ent->chroot, "n") != 0)
		SPAWN_BAD("service \"%s\": chroot \"%s\" is not implemented by mxgate for "
			  "spawn (set it to \"n\")", ent->name, ent->chroot);
	if (strcmp(ent->wakeup, "-") != 0 && strcmp(ent->wakeup, "0") != 0)
		SPAWN_BAD("service \"%s\": wakeup \"%s\" is not implemented by mxgate for spawn",
			  ent->name, ent->wakeup);
	if (ent->badopt)
		SPAWN_BAD("service \"%s\": spawn option \"%s\" is not implemented by mxgate",
			  ent->name, ent->badopt);
	if (strcmp(ent->maxproc, "-") == 0) {
		s.maxproc = (int)dpl;
	} else {
		long	mp;

		if (conf_parse_long(ent->maxproc, &mp, NULL) < 0 || mp < 0 || mp > 2147483647L)
			SPAWN_BAD("bad maxproc field: \"%s\"", ent->maxproc);
		else
			s.maxproc = (int)mp;
	}

	v = conf_view_build(&ent->opts, &c->raw.over, &c->raw.main, NULL, rep);
	s.view = v;
	if (strcmp(ent->type, "inet") == 0) {
		s.inet = 1;
		if (conf_parse_endpoint(ent->name, &s.host, &s.port, &err) < 0) {
			SPAWN_BAD("%s", err);
			free(err);
			err = NULL;
		}
	} else {
		s.path = xasprintf("%s/%s/%s", v->str[P_queue_directory],
				   strcmp(ent->priv, "n") == 0 ? "public" : "private", ent->name);
	}
	/* the command time limit: <service>_time_limit, else $command_time_limit (net/spawner) */
	conf_ctx_init(&ctx, &ent->opts, &c->raw.over, &c->raw.main, NULL);
	tl_name = xasprintf("%s_time_limit", ent->name);
	s.time_limit = 0;
	if (conf_ctx_setting(&ctx, tl_name) != NULL) {
		if ((tl = conf_exp_name(ctx.ex, tl_name, &err)) == NULL
		    || conf_parse_seconds(tl, &s.time_limit) < 0 || s.time_limit < 1) {
			const struct conf_setting *o = conf_ctx_setting(&ctx, tl_name);

			conf_report_add(rep, 1, CONF_PROB_VALUE, o->file, o->line, tl_name, o->value,
					"%s: bad time value or unit: %s", tl_name, o->value);
			free(err);
			bad = 1;
		}
	}
	free(tl_name);
	conf_ctx_free(&ctx);

	/* the attributes */
	owner = v->str[P_mail_owner];
	opw = getpwnam(owner);		/* a static buffer: keep its ids only */
	have_owner = opw != NULL;
	owner_uid = opw ? opw->pw_uid : 0;
	owner_gid = opw ? opw->pw_gid : 0;
	for (size_t i = 0; i < ent->nargs; i++) {
		const char *a = ent->args[i];

		if (strncasecmp(a, "user=", 5) == 0) {
			char   *u = xstrdup(a + 5), *g = strchr(u, ':');
			struct passwd *pw;
			struct group *gr;

			if (g)
				*g++ = '\0';
			if (g && *g == '\0')
				g = NULL;
			free(s.user);
			s.user = xstrdup(u);
			if ((pw = getpwnam(u)) == NULL) {
				SPAWN_BAD("service \"%s\": unknown user name: %s", ent->name, u);
			} else {
				s.uid = pw->pw_uid;
				s.gid = pw->pw_gid;
				if (g != NULL) {
					if ((gr = getgrnam(g)) == NULL)
						SPAWN_BAD("service \"%s\": unknown group name: %s",
							  ent->name, g);
					else
						s.gid = gr->gr_gid;
				}
			}
			free(u);
		} else if (strncasecmp(a, "argv=", 5) == 0) {
			s.argv = xcalloc(ent->nargs - i + 1, sizeof(char *));
			for (size_t k = i; k < ent->nargs; k++)
				s.argv[k - i] = xstrdup(k == i ? a + 5 : ent->args[k]);
			break;
		} else {
			SPAWN_BAD("service \"%s\": unknown attribute name: %s", ent->name, a);
		}
	}
	if (s.user == NULL)
		SPAWN_BAD("service \"%s\": missing user= attribute", ent->name);
	if (s.argv == NULL || s.argv[0][0] == '\0')
		SPAWN_BAD("service \"%s\": missing argv= attribute", ent->name);
	if (s.user != NULL && s.uid == 0 && getpwnam(s.user) != NULL)
		SPAWN_BAD("service \"%s\": request to deliver as root", ent->name);
	else if (have_owner && s.user != NULL && s.uid == owner_uid)
		SPAWN_BAD("service \"%s\": request to deliver as mail system owner", ent->name);
	if (s.user != NULL && s.uid != 0 && s.gid == 0)
		SPAWN_BAD("service \"%s\": request to use privileged group id %ld", ent->name,
			  (long)s.gid);
	else if (have_owner && s.user != NULL && s.uid != 0 && s.gid == owner_gid)
		SPAWN_BAD("service \"%s\": request to use mail system owner group id %ld",
			  ent->name, (long)s.gid);
	if (bad) {
		conf_spawn_free(&s);
		return;
	}
	c->spawns = xrealloc(c->spawns, (c->nspawns + 1) * sizeof(*c->spawns));
	c->spawns[c->nspawns++] = s;
#undef SPAWN_BAD
}

size_t
conf_spawn_count(const struct conf *c)
{
	return c->nspawns;
}

const struct conf_spawn *
conf_spawn_at(const struct conf *c, size_t i)
{
	if (i >= c->nspawns)
		msg_panic("conf_spawn_at: index %zu out of range (%zu)", i, c->nspawns);
	return &c->spawns[i];
}

/*
 * mail_owner must not be root: the network side runs as that user (Postfix's
 * check_mail_owner() refuses uid 0 and gid 0 too).  An unknown user is
 * `check`'s and `run`'s business (they create or name it).
 */
static void
conf_check_mail_owner(struct conf *c, struct conf_report *rep)
{
	const char *owner = c->global->str[P_mail_owner];
	const struct conf_setting *s = conf_settings_get(&c->raw.over, "mail_owner");
	struct passwd *pw = getpwnam(owner);
	const char *what = NULL;

	if (s == NULL)
		s = conf_settings_get(&c->raw.main, "mail_owner");
	if (pw != NULL && pw->pw_uid == 0)
		what = "user ID";
	else if (pw != NULL && pw->pw_gid == 0)
		what = "group ID";
	if (what == NULL)
		return;
	conf_report_add(rep, 1, CONF_PROB_VALUE, s ? s->file : NULL, s ? s->line : 0,
			"mail_owner", owner, "mail_owner = %s: user %s has privileged %s: "
			"mxgate's network side must not run as root", owner, owner, what);
}

static struct conf *
conf_load_keep(const char *dir, char *const *overrides, size_t noverrides,
	       struct conf_report *rep, int keep)
{
	struct conf *c = xcalloc(1, sizeof(*c));
	long	dpl;

	(void) conf_raw_load(&c->raw, dir, overrides, noverrides, 1, rep);
	c->global = conf_view_build(NULL, &c->raw.over, &c->raw.main, NULL, rep);
	conf_check_mail_owner(c, rep);
	dpl = c->global->num[P_default_process_limit];
	if (dpl <= 0)
		dpl = 100;
	if (!c->raw.have_master) {
		conf_add_service(c, NULL, NULL, NULL, dpl, rep);
	} else {
		conf_add_master_services(c, dpl, rep);
		for (size_t i = 0; i < c->raw.nspawns; i++)
			conf_add_spawn(c, &c->raw.spawns[i], dpl, rep);
		if (c->nsvcs == 0)
			conf_report_add(rep, 0, CONF_PROB_OTHER, c->raw.master_path, 0, NULL, NULL,
					"no \"inet\" service with command \"smtpd\": "
					"nothing to listen on");
	}
	conf_report_drop_ignored(rep);
	conf_report_sort(rep);
	if (rep->errors > 0 && !keep)
		conf_free(&c);
	return c;
}

struct conf *
conf_load(const char *dir, char *const *overrides, size_t noverrides,
	  struct conf_report *rep)
{
	return conf_load_keep(dir, overrides, noverrides, rep, 0);
}

struct conf *
conf_load_anyway(const char *dir, char *const *overrides, size_t noverrides,
		 struct conf_report *rep)
{
	return conf_load_keep(dir, overrides, noverrides, rep, 1);
}

void
conf_free(struct conf **cp)
{
	struct conf *c = *cp;

	if (c == NULL)
		return;
	for (size_t i = 0; i < c->nsvcs; i++)
		conf_service_free(&c->svcs[i]);
	free(c->svcs);
	for (size_t i = 0; i < c->nspawns; i++)
		conf_spawn_free(&c->spawns[i]);
	free(c->spawns);
	conf_view_free(c->global);
	conf_raw_free(&c->raw);
	free(c);
	*cp = NULL;
}

size_t
conf_service_count(const struct conf *c)
{
	return c->nsvcs;
}

const struct conf_service *
conf_service_at(const struct conf *c, size_t i)
{
	if (i >= c->nsvcs)
		msg_panic("conf_service_at: index %zu out of range (%zu services)", i, c->nsvcs);
	return &c->svcs[i];
}

const struct conf_view *
conf_global(const struct conf *c)
{
	return c->global;
}

/* ---- origins ---- */

struct conf_refs {
	char  **names;
	size_t	n;
};

static void
conf_refs_add(void *vrefs, const char *name, size_t len)
{
	struct conf_refs *r = vrefs;

	r->names = xrealloc(r->names, (r->n + 1) * sizeof(*r->names));
	r->names[r->n++] = xstrndup(name, len);
}

/* The setting, reached from name through $references, whose text holds item. */
static const struct conf_setting *
conf_origin_walk(struct conf_ctx *ctx, const char *name, const char *item, int depth)
{
	const struct conf_setting *s = conf_ctx_setting(ctx, name), *found = NULL;
	struct conf_refs refs = {NULL, 0};
	const char *raw;
	char   *err = NULL;

	if (depth > 16)		/* reference loops are reported elsewhere */
		return NULL;
	if (s != NULL && strstr(s->value, item) != NULL)
		return s;
	raw = s ? s->value : conf_ctx_lookup(ctx, name, &err);
	free(err);
	if (raw == NULL)
		return NULL;
	conf_exp_refs(raw, conf_refs_add, &refs);
	for (size_t i = 0; i < refs.n; i++) {
		if (found == NULL)
			found = conf_origin_walk(ctx, refs.names[i], item, depth + 1);
		free(refs.names[i]);
	}
	free(refs.names);
	return found;
}

int
conf_origin(const struct conf *c, const struct conf_service *cs, const char *name,
	    const char *item, struct conf_origin *o_r)
{
	const struct conf_settings *opts = NULL;
	const struct conf_setting *s = NULL;
	struct conf_ctx ctx;

	/* A service's -o options are those of the master.cf entry on its line. */
	for (size_t i = 0; cs != NULL && cs->opts_line > 0 && i < c->raw.nents; i++)
		if (c->raw.ents[i].line == cs->opts_line)
			opts = &c->raw.ents[i].opts;
	conf_ctx_init(&ctx, opts, &c->raw.over, &c->raw.main, NULL);
	if (item != NULL)
		s = conf_origin_walk(&ctx, name, item, 0);
	if (s == NULL)
		s = conf_ctx_setting(&ctx, name);
	conf_ctx_free(&ctx);
	if (s == NULL)
		return 0;
	o_r->file = s->file;
	o_r->line = s->line;
	o_r->name = s->name;
	return 1;
}

/* ---- accessors ---- */

static const struct conf_param_def *
conf_want(const struct conf_view *v, enum param_id id, enum conf_type t, const char *fn)
{
	if (v == NULL || (unsigned) id >= P__COUNT)
		msg_panic("%s: bad view or parameter id %d", fn, (int) id);
	if (conf_params[id].type != t)
		msg_panic("%s: parameter %s has another type", fn, conf_params[id].name);
	return &conf_params[id];
}

long
conf_int(const struct conf_view *v, enum param_id id)
{
	conf_want(v, id, CONF_T_INT, "conf_int");
	return v->num[id];
}

long
conf_time(const struct conf_view *v, enum param_id id)
{
	conf_want(v, id, CONF_T_TIME, "conf_time");
	return v->num[id];
}

int
conf_bool(const struct conf_view *v, enum param_id id)
{
	conf_want(v, id, CONF_T_BOOL, "conf_bool");
	return (int) v->num[id];
}

const char *
conf_str(const struct conf_view *v, enum param_id id)
{
	if (v == NULL || (unsigned) id >= P__COUNT)
		msg_panic("conf_str: bad view or parameter id %d", (int) id);
	return v->str[id];
}

char *const *
conf_list(const struct conf_view *v, enum param_id id, size_t *n_r)
{
	conf_want(v, id, CONF_T_LIST, "conf_list");
	if (n_r)
		*n_r = v->nlist[id];
	return v->list[id];
}

char *const *
conf_user_list(const struct conf_view *v, const char *name, size_t *n_r)
{
	for (size_t i = 0; i < v->nuser; i++)
		if (strcmp(v->user[i].name, name) == 0) {
			*n_r = v->user[i].n;
			return v->user[i].list;
		}
	*n_r = 0;
	return NULL;
}
