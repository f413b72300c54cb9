/*
 * conf_impl.h: internals shared by the files of src/conf/ and by its unit
 * tests.  Other modules use conf.h only.
 */
#ifndef MXGATE_CONF_CONF_IMPL_H
#define MXGATE_CONF_CONF_IMPL_H

#include <stddef.h>

#include "conf/conf.h"
#include "util/buf.h"

/* Generated from src/conf/postfix-3.7.11-*.txt (build/gen/postfix_names.c). */
extern const char *const postfix_param_names[];	/* sorted (C locale) */
extern const size_t postfix_param_count;
extern const char *const postfix_param_defaults[];	/* parallel; NULL = computed */

/* ---- the parameter table (params.def) ---- */

enum conf_type { CONF_T_STR, CONF_T_LIST, CONF_T_INT, CONF_T_TIME, CONF_T_BOOL };

struct conf_param_def {
	const char *name;
	enum conf_type type;
	const char *def;	/* unexpanded default; "" for computed ones */
	long	min, max;	/* INT/TIME bounds; both 0 = unbounded */
};

extern const struct conf_param_def conf_params[P__COUNT];

/* Table id of name, or -1 when mxgate does not implement it. */
int conf_param_id(const char *name);
/* 1 if Postfix 3.7.11 knows name. */
int conf_postfix_known(const char *name);
/* Postfix 3.7.11's recorded default text, or NULL (unknown or host-dependent). */
const char *conf_postfix_default(const char *name);

/*
 * 1 if name is in refused.def: a Postfix parameter mxgate does not
 * implement and refuses at start-up unless its value is harmless.
 * conf_refused_count/conf_refused_name walk the table in its order (for the
 * unit tests).
 */
int conf_param_is_refused(const char *name);
size_t conf_refused_count(void);
const char *conf_refused_name(size_t i);	/* NULL past the end */

/*
 * 1 for the parameters whose values Postfix never expands in main.cf
 * (programs expand them at use time with their own macros, e.g.
 * default_rbl_reply, smtpd_reject_footer): postconf -x prints them as is.
 */
int conf_param_is_raw(const char *name);

/* ---- settings: name = value with where it was written ---- */

struct conf_setting {
	char   *name;
	char   *value;
	char   *file;	/* NULL: command line */
	int	line;
};

struct conf_settings {
	struct conf_setting *items;
	size_t	count;
	size_t	cap;
};

/* Add or replace (a later setting wins, as in Postfix).  Returns the old
 * entry's existence: 1 if name was set before. */
int conf_settings_set(struct conf_settings *s, const char *name, const char *value,
		      const char *file, int line);
const struct conf_setting *conf_settings_get(const struct conf_settings *s, const char *name);
void conf_settings_free(struct conf_settings *s);

/* ---- report ---- */

/*
 * Add a problem.  Identical problems (same severity, place and text) are
 * kept once, so one bad main.cf line found in many views is reported once.
 */
void conf_report_add(struct conf_report *rep, int is_error, enum conf_problem_kind kind,
		     const char *file, int line, const char *param, const char *value,
		     const char *fmt, ...) __attribute__((format(printf, 8, 9)));

/* ---- parsing (parse.c) ---- */

/*
 * Read a whole file into *text_r (caller frees).  Returns 0, or -1 with
 * errno set (ENOENT for a missing file).
 */
int conf_read_file(const char *path, char **text_r);

/*
 * Parse main.cf text.  path is used in messages only.  Settings go into
 * *out; syntax problems into rep.  Never stops at the first problem.
 */
void conf_parse_main(const char *path, const char *text, struct conf_settings *out,
		     struct conf_report *rep);

/* One master.cf "inet ... smtpd" (or "... spawn") line, before its values are resolved. */
enum conf_ment_kind {
	MENT_SMTPD,		/* inet ... smtpd */
	MENT_POSTSCREEN,	/* inet ... postscreen: served by smtpd with the pass
				 * service's settings (conf.c) */
	MENT_PASS,		/* pass ... smtpd: the service postscreen hands off to */
};

struct conf_master_ent {
	enum conf_ment_kind kind;	/* inet smtpd/postscreen, pass smtpd (ents only) */
	char   *name;		/* service field as written */
	char   *maxproc;	/* maxproc field as written */
	int	line;
	struct conf_settings opts;	/* -o name=value, file:line of each */
	char   *chroot;		/* field 5 as written (ents and spawns) */
	/* spawn lines only */
	char   *type, *priv, *unpriv, *wakeup;	/* fields 2 to 5 as written */
	char  **args;		/* the words after the options (user=..., argv=...) */
	size_t	nargs;
	char   *badopt;		/* the first command option mxgate does not implement */
};

/*
 * Parse master.cf text: the inet smtpd and postscreen entries and the pass
 * smtpd entries go into *ents_r / *n_r (kind tells them apart), the
 * spawn entries (unix or inet, any other type too: they are refused later)
 * into *spawns_r / *nspawns_r.
 */
void conf_parse_master(const char *path, const char *text, struct conf_master_ent **ents_r,
		       size_t *n_r, struct conf_master_ent **spawns_r, size_t *nspawns_r,
		       struct conf_report *rep);
void conf_master_ents_free(struct conf_master_ent *ents, size_t n);

/*
 * Split a master.cf service field ("smtp", "2525", "host:port",
 * "[v6addr]:port") into *host_r (NULL: all interfaces) and a numeric
 * *port_r.  Returns 0, or -1 with *err_r (caller frees).
 */
int conf_parse_endpoint(const char *name, char **host_r, char **port_r, char **err_r);


/* ---- expansion (expand.c) ---- */

/*
 * Lookup callback: the raw (unexpanded) value of name, or NULL when name is
 * undefined (then *err_r stays NULL) or cannot be computed (*err_r set,
 * caller frees).  The returned string must stay valid until the expander is
 * freed.
 */
typedef const char *(*conf_lookup_fn)(void *ctx, const char *name, char **err_r);

struct conf_exp;

struct conf_exp *conf_exp_new(conf_lookup_fn lookup, void *ctx);
void conf_exp_free(struct conf_exp **exp);

/*
 * The expanded value of parameter name: "" when undefined, the value as is
 * for conf_param_is_raw() names.  Results are
 * remembered, so each name is expanded once per expander.  Returns NULL
 * with *err_r (caller frees) on a syntax error, a reference loop or an
 * over-long result.
 */
const char *conf_exp_name(struct conf_exp *exp, const char *name, char **err_r);

/* Expand text, appending to out.  Returns 0, or -1 with *err_r. */
int conf_exp_text(struct conf_exp *exp, const char *text, struct buf *out, char **err_r);

/*
 * Call fn for every parameter name that text refers to ($name, ${name...}),
 * including references nested in conditional values.
 */
void conf_exp_refs(const char *text, void (*fn)(void *ctx, const char *name, size_t len),
		   void *ctx);

/*
 * Compare two compatibility levels ("3", "3.6", "3.6.1").  Returns 0 and
 * *cmp_r (<0, 0, >0), or -1 when one is malformed.
 */
int conf_level_cmp(const char *a, const char *b, int *cmp_r);

/* ---- computed defaults (netdef.c) ---- */

/* The host name as gethostname() gives it (caller frees). */
char *conf_host_name(void);

/*
 * mynetworks as Postfix computes it for mynetworks_style (host, subnet,
 * class), the addresses of inet_interfaces and inet_protocols.  Returns the
 * value (caller frees) or NULL with *err_r.
 */
char *conf_mynetworks(const char *style, const char *interfaces, const char *protocols,
		      char **err_r);

/* 1 if every address of host (a name or numeric address) is loopback. */
int conf_host_is_loopback(const char *host);

/*
 * Postfix master's internal name for an inet endpoint (master_ent.c), which
 * is what makes two master.cf entries the same service: the numeric port
 * when host is NULL (all interfaces: "smtp" and "25" are both "25"), else
 * "[address]:port" with host's first address ("127.0.0.1:2525" and
 * "localhost:2525" are both "[127.0.0.1]:2525"), or host as written,
 * lowercased, when it does not resolve.  port is numeric.  Caller frees.
 */
char *conf_endpoint_name(const char *host, const char *port);

/* ---- raw configuration and lookup contexts (conf.c) ---- */

/* main.cf, -o overrides and master.cf as written, before expansion. */
struct conf_raw {
	char   *dir;
	char   *main_path;
	char   *master_path;
	int	have_master;	/* master.cf exists */
	struct conf_settings main;
	struct conf_settings over;	/* file NULL */
	struct conf_master_ent *ents;
	size_t	nents;
	struct conf_master_ent *spawns;	/* master.cf spawn lines */
	size_t	nspawns;
	char  **refs;		/* names referenced by $name in any value */
	size_t	nrefs;
};

/*
 * Read DIR/main.cf (missing = empty), parse overrides and, if read_master,
 * DIR/master.cf; then classify every name set (unused, not implemented)
 * into rep.  Returns 0, or -1 when rep got an error.
 */
int conf_raw_load(struct conf_raw *raw, const char *dir, char *const *overrides,
		  size_t noverrides, int read_master, struct conf_report *rep);
void conf_raw_free(struct conf_raw *raw);
/* 1 if name is referenced as $name by some value (a user-defined macro). */
int conf_raw_is_ref(const struct conf_raw *raw, const char *name);

/*
 * A lookup context: settings layers, most specific first (NULL entries are
 * skipped), then mxgate's defaults, the computed ones (myhostname,
 * mydomain, mynetworks, ...) and Postfix's recorded defaults.
 */
struct conf_ctx {
	const struct conf_settings *layer[3];
	const char *stress;	/* non-NULL: forced value of "stress" */
	struct conf_exp *ex;
	char   *computed[8];
};

void conf_ctx_init(struct conf_ctx *ctx, const struct conf_settings *svc,
		   const struct conf_settings *over, const struct conf_settings *main,
		   const char *force_stress);
void conf_ctx_free(struct conf_ctx *ctx);
/* The setting that defines name in the layers, or NULL (a default). */
const struct conf_setting *conf_ctx_setting(const struct conf_ctx *ctx, const char *name);
/* The unexpanded value of name (a conf_lookup_fn; ctx is a struct conf_ctx). */
const char *conf_ctx_lookup(void *ctx, const char *name, char **err_r);

/* ---- services (services.c) ---- */

/*
 * A submission-style service: its own -o smtpd_sasl_auth_enable = yes (in
 * opts, the line's options), or a restriction list that ends in
 * "permit_sasl_authenticated, reject" in view v.  Returns why (caller
 * frees), or NULL when it is an ordinary service.
 */
char *conf_service_submission(const struct conf_view *v, const struct conf_settings *opts);
/*
 * The pass service that postscreen line ps hands clients to
 * (smtpd_service_name in ps's context, put in *name_r: caller frees), or
 * NULL when master.cf has none.
 */
const struct conf_master_ent *conf_postscreen_pass(const struct conf_master_ent *ps,
						   const struct conf_master_ent *ents, size_t n,
						   const struct conf_settings *over,
						   const struct conf_settings *main, char **name_r);
/*
 * Check postscreen line ps served through pass: every postscreen setting
 * that would turn clients away is an error, the others are named in one
 * warning; fills eff with the settings the service runs with (pass's -o,
 * and postscreen's upstream proxy protocol and timeout).  Returns -1 when
 * it added an error, else 0.
 */
int conf_check_postscreen(const char *master_path, const struct conf_master_ent *ps,
			  const struct conf_master_ent *pass, const struct conf_settings *over,
			  const struct conf_settings *main, struct conf_settings *eff,
			  struct conf_report *rep);

#endif
