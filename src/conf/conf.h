/*
 * conf: main.cf and master.cf with Postfix syntax and semantics.
 *
 * The parameter table is src/conf/params.def (one row per parameter).  The
 * daemon, `mxgate check` and `mxgate conf` read only that table.
 *
 * Life cycle:
 *   struct conf *c = conf_load(dir, overrides, n, &report);
 *       reads DIR/main.cf (missing file = all defaults) and DIR/master.cf
 *       (missing = one service "smtp" on inet_interfaces port 25, maxproc
 *       "-"), applies -o overrides, expands and type-checks every
 *       implemented parameter for every service, normal and stress.  Every
 *       problem found goes into the report; conf_load never stops at the
 *       first.  It returns NULL only if the report holds an error.
 *   conf_free(&c);
 *
 * Views: a conf_view holds the expanded, typed value of every implemented
 * parameter in one context (main.cf + -o overrides + one service's master.cf
 * -o options + a stress value).  Views are immutable after conf_load and may
 * be read from any thread without locks.
 */
#ifndef MXGATE_CONF_CONF_H
#define MXGATE_CONF_CONF_H

#include <stddef.h>

enum param_id {
#define PARAM(name, type, def, min, max) P_##name,
#include "conf/params.def"
#undef PARAM
	P__COUNT
};

struct conf;
struct conf_view;

/* One problem found while reading the configuration. */
struct conf_problem {
	int	is_error;	/* 1: error (start-up refused), 0: warning */
	char   *file;		/* "main.cf" path, or NULL (command line, built-in) */
	int	line;		/* 1-based line in file, 0 when none */
	char   *param;		/* parameter name, or NULL */
	char   *value;		/* offending value, or NULL */
	char   *text;		/* full human-readable message, without "error: " */
};

struct conf_report {
	struct conf_problem *items;
	size_t	count;
	size_t	errors;
};

void conf_report_free(struct conf_report *rep);

enum conf_stress_mode {
	CONF_STRESS_AUTO,	/* master decides (eligible services only) */
	CONF_STRESS_ON,		/* -o stress=yes (any non-empty value) */
	CONF_STRESS_OFF,	/* -o stress= (explicit empty) */
};

/* One master.cf "inet ... smtpd" service. */
struct conf_service {
	char   *name;		/* field 1 as written: "smtp", "127.0.0.1:2525", "2525" */
	char   *host;		/* NULL: every inet_interfaces address; else numeric or name */
	char   *port;		/* numeric port as a string ("25") */
	int	maxproc;	/* resolved: "-" = default_process_limit; 0 = no limit */
	int	stress_eligible;/* maxproc > 1 (or 0) and not bound to loopback only */
	enum conf_stress_mode stress_mode;
	const struct conf_view *view;		/* stress = "" (or forced value) */
	const struct conf_view *view_stress;	/* stress = "yes" */
	const char *file;	/* master.cf path or NULL when built in */
	int	line;
};

/*
 * Load DIR.  overrides[] are "name=value" strings from -o.  Fills *rep (zero
 * it first).  Returns NULL when rep->errors > 0.
 */
struct conf *conf_load(const char *dir, char *const *overrides, size_t noverrides,
		       struct conf_report *rep);
void conf_free(struct conf **cp);

/* The services found in master.cf (or the built-in "smtp" one). */
size_t conf_service_count(const struct conf *c);
const struct conf_service *conf_service_at(const struct conf *c, size_t i);
/* The global view: main.cf + -o overrides, stress empty. */
const struct conf_view *conf_global(const struct conf *c);

/* Typed accessors.  Calling one with a parameter of another type panics. */
long conf_int(const struct conf_view *v, enum param_id id);	/* INT */
long conf_time(const struct conf_view *v, enum param_id id);	/* TIME, seconds */
int conf_bool(const struct conf_view *v, enum param_id id);	/* BOOL */
const char *conf_str(const struct conf_view *v, enum param_id id); /* any type, expanded */
/*
 * LIST parameters split on commas and whitespace, with Postfix's rule that
 * {...} groups stay whole (so "regexp:{{/^[^A-Z]/ Bogus}}" is one item).
 * Returns a NULL-terminated array owned by the view; *n_r gets the count.
 */
char *const *conf_list(const struct conf_view *v, enum param_id id, size_t *n_r);

/* Name of a parameter id, as in main.cf. */
const char *conf_param_name(enum param_id id);

/* Verbs.  argv excludes the verb itself.  They return the process exit status. */
int conf_cmd_conf(int argc, char **argv);	/* mxgate conf [-c DIR] [-d|-n|-x|-h] [name...] */
int conf_cmd_check(int argc, char **argv);	/* mxgate check [-c DIR] */

#endif
