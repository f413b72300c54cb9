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
 * -o options + a stress value; a service's -o wins over the command line,
 * which wins over main.cf).  Views belong to the conf, are immutable after
 * conf_load and may be read from any thread without locks.
 *
 * Expansion follows Postfix: $name, ${name}, $(name), $$, ${name?value},
 * ${name:value}, ${name?{a}:{b}} and ${{A} op {B} ? {x} : {y}} with
 * == != < <= > >= and their "level" forms; undefined names are empty.
 * myhostname, mydomain and mynetworks default to what Postfix computes
 * from the host (mynetworks from mynetworks_style and inet_interfaces).
 * A name Postfix knows but mxgate does not implement keeps Postfix's
 * default, so $mail_version and the like expand as they would in Postfix.
 *
 * Never silent: setting such a name is a warning ("<name>: parameter is not
 * implemented by mxgate, ignored"), except for the names in
 * src/conf/refused.def (content checks, milters, content filters, strict
 * syntax checks, TLS enforcement, ...), which would make Postfix refuse or
 * filter mail that mxgate accepts: in every view (main.cf + -o, and each
 * service), one set to a value other than a harmless one (Postfix's default
 * among them) is an error, "<name> = <value>: parameter is not implemented
 * by mxgate, refused: <reason>", at the line that sets it, so conf_load
 * fails and `mxgate run` refuses to start.
 */
#ifndef MXGATE_CONF_CONF_H
#define MXGATE_CONF_CONF_H

#include <sys/types.h>

#include <stddef.h>

enum param_id {
#define PARAM(name, type, def, min, max) P_##name,
#include "conf/params.def"
#undef PARAM
	P__COUNT
};

struct conf;
struct conf_view;

enum conf_problem_kind {
	CONF_PROB_SYNTAX,	/* main.cf / master.cf / -o syntax */
	CONF_PROB_VALUE,	/* a value that does not expand or does not fit its type */
	CONF_PROB_UNUSED,	/* name unknown to Postfix and mxgate: "unused parameter" */
	CONF_PROB_NOT_IMPLEMENTED,	/* a Postfix parameter mxgate does not implement:
					 * a warning when ignoring it changes nothing
					 * about what is accepted, an error when it is
					 * refused (src/conf/refused.def) */
	CONF_PROB_OTHER,	/* anything else (duplicate entries, no services) */
};

/* One problem found while reading the configuration. */
struct conf_problem {
	int	is_error;	/* 1: error (start-up refused), 0: warning */
	enum conf_problem_kind kind;
	char   *file;		/* main.cf or master.cf path, or NULL (command line, built-in) */
	int	line;		/* 1-based line in file, 0 when none */
	char   *param;		/* parameter name, or NULL */
	char   *value;		/* offending value, or NULL */
	char   *text;		/* message without location and without "error: ",
				 * e.g. "unused parameter: foo_bar=1" */
};

struct conf_report {
	struct conf_problem *items;
	size_t	count;
	size_t	errors;
};

void conf_report_free(struct conf_report *rep);

/*
 * The problem as one line without severity: "<file>, line <n>: <text>",
 * "<file>: <text>" (no line) or "<text>" (no file).  Caller frees.  The
 * daemon logs each one with msg_error/msg_warn; `mxgate check` prints them.
 */
char *conf_problem_format(const struct conf_problem *p);

enum conf_stress_mode {
	CONF_STRESS_AUTO,	/* master decides (eligible services only) */
	CONF_STRESS_ON,		/* -o stress=yes (any non-empty value) */
	CONF_STRESS_OFF,	/* -o stress= (explicit empty) */
};

/*
 * One master.cf inet service that mxgate opens: an "inet ... smtpd" line, or
 * an "inet ... postscreen" line served by smtpd with the settings of the
 * "pass ... smtpd" service it hands clients to (no screen: its postscreen_*
 * settings are named at start-up, and those that would turn clients away
 * are errors).  Submission-style lines (-o smtpd_sasl_auth_enable=yes, or
 * restrictions ending in permit_sasl_authenticated, reject) are not opened:
 * a warning names them, and they are not in this list.
 */
struct conf_service {
	char   *name;		/* field 1 as written: "smtp", "127.0.0.1:2525", "2525" */
	char   *host;		/* NULL: every inet_interfaces address; else numeric or name */
	char   *port;		/* numeric port as a string ("25") */
	int	maxproc;	/* resolved: "-" = default_process_limit; 0 = no limit */
	int	stress_eligible;/* maxproc != 1 (0 = no limit counts) and not bound to
				 * loopback only; host NULL is loopback only when
				 * every inet_interfaces entry is */
	enum conf_stress_mode stress_mode;
	/*
	 * view: AUTO and eligible: stress = "" (as master's "-o stress=");
	 * AUTO and not eligible: stress as main.cf/-o set it (normally "");
	 * ON/OFF: the service's own -o stress value.
	 * view_stress: the same with stress = "yes".
	 */
	const struct conf_view *view;
	const struct conf_view *view_stress;
	const char *file;	/* master.cf path or NULL when built in */
	int	line;		/* the inet line (smtpd or postscreen) */
	int	opts_line;	/* the line whose -o options it runs with: line, or
				 * for postscreen the pass service's line */
};

/*
 * One master.cf "spawn" service (Postfix's spawn(8)): mxgate listens on it
 * and runs argv for each connection (net/spawner.h).  Every field is
 * checked when the configuration is loaded: a spawn line that mxgate
 * cannot serve as Postfix would is an error naming it.
 */
struct conf_spawn {
	char   *name;		/* field 1 as written */
	int	inet;		/* 1: inet host:port; 0: a unix socket at path */
	char   *host, *port;	/* inet: host NULL = every address */
	char   *path;		/* unix: queue_directory/private/NAME (public/ when private = n) */
	int	maxproc;	/* "-" = default_process_limit; 0 = no limit */
	char   *user;		/* user= */
	uid_t	uid;
	gid_t	gid;		/* user=name:group, else the user's own group */
	char  **argv;		/* argv=..., NULL-terminated */
	long	time_limit;	/* <name>_time_limit in seconds; 0: not set (the view's
				 * command_time_limit applies) */
	const struct conf_view *view;	/* main.cf, -o and the line's -o options
					 * (export_environment, command_time_limit) */
	const char *file;	/* master.cf */
	int	line;
};

/* The configuration directory when none is given. */
#define CONF_DEFAULT_DIR "/etc/mxgate"

/*
 * Load DIR (NULL: CONF_DEFAULT_DIR).  overrides[] are "name=value" strings
 * from -o.  Fills *rep (zero it first; free it with conf_report_free).
 * Returns NULL when rep->errors > 0.  Warnings (unused or unimplemented
 * parameters) are in rep either way: the daemon logs them once at start-up.
 * The problems come sorted: command line first, then by file and line; the
 * same problem seen in several views is listed once.
 */
struct conf *conf_load(const char *dir, char *const *overrides, size_t noverrides,
		       struct conf_report *rep);
/*
 * The same, but the configuration is returned even when rep holds errors
 * (the bad values read as empty or 0), so that `mxgate check` can go on to
 * open the tables and list every problem in one run.  Never run a daemon on
 * it.
 */
struct conf *conf_load_anyway(const char *dir, char *const *overrides, size_t noverrides,
			      struct conf_report *rep);
void conf_free(struct conf **cp);

/* The services found in master.cf (or the built-in "smtp" one). */
size_t conf_service_count(const struct conf *c);
const struct conf_service *conf_service_at(const struct conf *c, size_t i);
/* The spawn services of master.cf. */
size_t conf_spawn_count(const struct conf *c);
const struct conf_spawn *conf_spawn_at(const struct conf *c, size_t i);
/* The global view: main.cf + -o overrides; stress as configured there
 * (normally empty). */
const struct conf_view *conf_global(const struct conf *c);

/* Where a setting was written. */
struct conf_origin {
	const char *file;	/* main.cf or master.cf path; NULL: the command line (-o) */
	int	line;		/* 1-based; 0 with file NULL */
	const char *name;	/* the parameter that this setting sets */
};

/*
 * Where the value of parameter name, as service cs sees it (cs NULL: the
 * global view), was written: cs's master.cf -o option, the command line or
 * main.cf.  With item (one item of the expanded value, such as a table
 * spec), the setting whose own text holds item is looked for, following
 * $name references from name's value: for "local_recipient_maps =
 * proxy:unix:passwd.byname $alias_maps" and item "hash:/etc/aliases", that
 * is the alias_maps line (o_r->name "alias_maps").  When no setting holds
 * item as written (it was pieced together by expansion), name's own setting
 * is given.  Returns 1 and fills *o_r (its strings belong to c), or 0 when
 * the value is a built-in default.
 */
int conf_origin(const struct conf *c, const struct conf_service *cs, const char *name,
		const char *item, struct conf_origin *o_r);

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

/*
 * A parameter of the admin's own that smtpd_restriction_classes names (a
 * restriction class), expanded and split as conf_list() does; NULL (and
 * *n_r 0) when it is not defined.
 */
char *const *conf_user_list(const struct conf_view *v, const char *name, size_t *n_r);

/*
 * Split a list value on commas and whitespace, {...} groups kept whole.
 * Returns a NULL-terminated array (free with conf_list_free), or NULL with
 * *err_r on an unbalanced brace.
 */
char **conf_split_list(const char *value, size_t *n_r, char **err_r);
void conf_list_free(char **list);

/* Name of a parameter id, as in main.cf. */
const char *conf_param_name(enum param_id id);

/* Verbs.  argv excludes the verb itself.  They return the process exit status. */
/*
 * mxgate conf [-c DIR] [-d|-n] [-x] [-h] [-o name=value]... [name...]
 *     postconf(1) output: "name = value" on stdout; warnings on stderr.
 *     Exit 0, or 1 on a usage error or a value that cannot be expanded.
 * mxgate check [-c DIR] [-o name=value]...
 *     every problem on stderr as "mxgate: error: <file>, line <n>: <text>"
 *     or "mxgate: warning: ..."; exit 1 if any error, else 0.
 */
int conf_cmd_conf(int argc, char **argv);
int conf_cmd_check(int argc, char **argv);
/*
 * The same, then deep(c) for the checks that need other modules (opening
 * lookup tables); deep logs its own findings and returns how many errors.
 * deep runs even when the configuration has errors (conf_load_anyway), so
 * one run lists everything.
 */
int conf_cmd_check_deep(int argc, char **argv, int (*deep)(const struct conf *c));

#endif
