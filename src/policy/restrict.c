/*
 * restrict: Postfix 3.7's SMTP access restrictions.  See restrict.h for the
 * contract; the structure follows smtpd_check.c (generic_checks(),
 * check_table_result(), smtpd_check_reject(), the smtpd_check_*() stage
 * drivers) so that the two can be read side by side.
 */
#include "policy/restrict.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>

#include "conf/conf.h"
#include "log/log.h"
#include "policy/addrlist.h"
#include "policy/lookup_keys.h"
#include "policy/maps.h"
#include "policy/policy.h"
#include "smtp/reply.h"
#include "smtp/txn.h"
#include "util/buf.h"
#include "util/dns.h"
#include "util/hostname.h"
#include "util/workpool.h"
#include "util/xalloc.h"

/* Access-class recursion bound (Postfix: "unreasonable recursion" past 100). */
#define RESTRICT_RECURSION_MAX 100

/* ---- what a restriction is ---- */

enum rop {
	OP_ERROR,		/* a bad element of a table value: warn, 451 4.3.5 */
	OP_PERMIT, OP_REJECT, OP_DEFER, OP_DEFER_IF_PERMIT, OP_DEFER_IF_REJECT,
	OP_WARN_IF_REJECT, OP_SLEEP, OP_UNAUTH_PIPELINING, OP_PLAINTEXT,
	OP_MYNETWORKS, OP_NEVER,
	OP_ACCESS,		/* check_<kind>_access table */
	OP_ACCESS_DEF,		/* a bare type:table: the stage's own check_*_access */
	OP_INVALID_HELO, OP_NON_FQDN_HELO, OP_NON_FQDN_SENDER, OP_NON_FQDN_RCPT,
	OP_UNLISTED_SENDER, OP_UNLISTED_RCPT,
	OP_PERMIT_AUTH_DEST, OP_REJECT_UNAUTH_DEST, OP_DEFER_UNAUTH_DEST,
	OP_MULTI_BOUNCE, OP_LOGIN_AUTH, OP_LOGIN_UNAUTH, OP_LOGIN_KNOWN, OP_SASL_ACCESS,
	OP_CLASS,
	/* DNS (restrict.h: RESTRICT_ASK) */
	OP_UNKNOWN_CLIENT, OP_UNKNOWN_REVERSE, OP_UNKNOWN_HELO, OP_UNKNOWN_SENDER_DOMAIN,
	OP_UNKNOWN_RCPT_DOMAIN, OP_RBL_CLIENT, OP_DNSWL_CLIENT, OP_RHSBL, OP_RHSWL_CLIENT,
	OP_MAPS_RBL,
	OP_SERVER_ACCESS,	/* check_<kind>_{mx,ns,a}_access */
	OP_POLICY,		/* check_policy_service */
	OP_UNVERIFIED_RCPT,	/* reject_unverified_recipient: the lookup is the probe */
};

/* Which name an access table is asked (Postfix's default ACL of a stage). */
enum akind { AK_NONE, AK_CLIENT, AK_REVERSE, AK_HELO, AK_SENDER, AK_RECIPIENT, AK_ETRN };

enum rarg { ARG_NONE, ARG_TABLE, ARG_NUMBER, ARG_DOMAIN, ARG_SERVER };

struct rname {
	const char *name;
	enum rop op;
	enum akind kind;
	enum rarg arg;
	const char *unimpl;	/* not implemented: why (NULL: implemented) */
	int	dtype;		/* OP_SERVER_ACCESS: DNS_T_MX, DNS_T_NS or DNS_T_A */
};
#define NO_TLS "mxgate has no TLS yet"

static const struct rname rnames[] = {
	{ "permit", OP_PERMIT, 0, 0, NULL, 0 },
	{ "reject", OP_REJECT, 0, 0, NULL, 0 },
	{ "defer", OP_DEFER, 0, 0, NULL, 0 },
	{ "defer_if_permit", OP_DEFER_IF_PERMIT, 0, 0, NULL, 0 },
	{ "defer_if_reject", OP_DEFER_IF_REJECT, 0, 0, NULL, 0 },
	{ "warn_if_reject", OP_WARN_IF_REJECT, 0, 0, NULL, 0 },
	{ "sleep", OP_SLEEP, 0, ARG_NUMBER, NULL, 0 },
	{ "reject_unauth_pipelining", OP_UNAUTH_PIPELINING, 0, 0, NULL, 0 },
	{ "reject_plaintext_session", OP_PLAINTEXT, 0, 0, NULL, 0 },
	{ "permit_mynetworks", OP_MYNETWORKS, 0, 0, NULL, 0 },
	{ "permit_sasl_authenticated", OP_NEVER, 0, 0, NULL, 0 },
	{ "permit_tls_clientcerts", OP_NEVER, 0, 0, NULL, 0 },
	{ "permit_tls_all_clientcerts", OP_NEVER, 0, 0, NULL, 0 },
	{ "check_client_access", OP_ACCESS, AK_CLIENT, ARG_TABLE, NULL, 0 },
	{ "check_reverse_client_hostname_access", OP_ACCESS, AK_REVERSE, ARG_TABLE, NULL, 0 },
	{ "check_helo_access", OP_ACCESS, AK_HELO, ARG_TABLE, NULL, 0 },
	{ "check_sender_access", OP_ACCESS, AK_SENDER, ARG_TABLE, NULL, 0 },
	{ "check_recipient_access", OP_ACCESS, AK_RECIPIENT, ARG_TABLE, NULL, 0 },
	{ "check_etrn_access", OP_ACCESS, AK_ETRN, ARG_TABLE, NULL, 0 },
	{ "reject_invalid_helo_hostname", OP_INVALID_HELO, 0, 0, NULL, 0 },
	{ "reject_invalid_hostname", OP_INVALID_HELO, 0, 0, NULL, 0 },
	{ "reject_non_fqdn_helo_hostname", OP_NON_FQDN_HELO, 0, 0, NULL, 0 },
	{ "reject_non_fqdn_hostname", OP_NON_FQDN_HELO, 0, 0, NULL, 0 },
	{ "reject_non_fqdn_sender", OP_NON_FQDN_SENDER, 0, 0, NULL, 0 },
	{ "reject_non_fqdn_recipient", OP_NON_FQDN_RCPT, 0, 0, NULL, 0 },
	{ "reject_unlisted_sender", OP_UNLISTED_SENDER, 0, 0, NULL, 0 },
	{ "reject_unlisted_recipient", OP_UNLISTED_RCPT, 0, 0, NULL, 0 },
	{ "check_recipient_maps", OP_UNLISTED_RCPT, 0, 0, NULL, 0 },
	{ "permit_auth_destination", OP_PERMIT_AUTH_DEST, 0, 0, NULL, 0 },
	{ "reject_unauth_destination", OP_REJECT_UNAUTH_DEST, 0, 0, NULL, 0 },
	{ "defer_unauth_destination", OP_DEFER_UNAUTH_DEST, 0, 0, NULL, 0 },
	{ "reject_multi_recipient_bounce", OP_MULTI_BOUNCE, 0, 0, NULL, 0 },
	{ "reject_authenticated_sender_login_mismatch", OP_LOGIN_AUTH, 0, 0, NULL, 0 },
	{ "reject_unauthenticated_sender_login_mismatch", OP_LOGIN_UNAUTH, 0, 0, NULL, 0 },
	{ "reject_known_sender_login_mismatch", OP_LOGIN_KNOWN, 0, 0, NULL, 0 },
	{ "check_sasl_access", OP_SASL_ACCESS, 0, ARG_TABLE, NULL, 0 },
	{ "reject_unknown_client_hostname", OP_UNKNOWN_CLIENT, 0, 0, NULL, 0 },
	{ "reject_unknown_client", OP_UNKNOWN_CLIENT, 0, 0, NULL, 0 },
	{ "reject_unknown_reverse_client_hostname", OP_UNKNOWN_REVERSE, 0, 0, NULL, 0 },
	{ "reject_unknown_helo_hostname", OP_UNKNOWN_HELO, 0, 0, NULL, 0 },
	{ "reject_unknown_hostname", OP_UNKNOWN_HELO, 0, 0, NULL, 0 },
	{ "reject_unknown_sender_domain", OP_UNKNOWN_SENDER_DOMAIN, 0, 0, NULL, 0 },
	{ "reject_unknown_address", OP_UNKNOWN_SENDER_DOMAIN, 0, 0, NULL, 0 },
	{ "reject_unknown_recipient_domain", OP_UNKNOWN_RCPT_DOMAIN, 0, 0, NULL, 0 },
	{ "reject_rbl_client", OP_RBL_CLIENT, 0, ARG_DOMAIN, NULL, 0 },
	{ "reject_rbl", OP_RBL_CLIENT, 0, ARG_DOMAIN, NULL, 0 },
	{ "reject_rhsbl_client", OP_RHSBL, AK_CLIENT, ARG_DOMAIN, NULL, 0 },
	{ "reject_rhsbl_reverse_client", OP_RHSBL, AK_REVERSE, ARG_DOMAIN, NULL, 0 },
	{ "reject_rhsbl_helo", OP_RHSBL, AK_HELO, ARG_DOMAIN, NULL, 0 },
	{ "reject_rhsbl_sender", OP_RHSBL, AK_SENDER, ARG_DOMAIN, NULL, 0 },
	{ "reject_rhsbl_recipient", OP_RHSBL, AK_RECIPIENT, ARG_DOMAIN, NULL, 0 },
	{ "permit_dnswl_client", OP_DNSWL_CLIENT, 0, ARG_DOMAIN, NULL, 0 },
	{ "permit_rhswl_client", OP_RHSWL_CLIENT, 0, ARG_DOMAIN, NULL, 0 },
	{ "reject_maps_rbl", OP_MAPS_RBL, 0, 0, NULL, 0 },
	{ "check_client_mx_access", OP_SERVER_ACCESS, AK_CLIENT, ARG_TABLE, NULL, DNS_T_MX },
	{ "check_client_ns_access", OP_SERVER_ACCESS, AK_CLIENT, ARG_TABLE, NULL, DNS_T_NS },
	{ "check_client_a_access", OP_SERVER_ACCESS, AK_CLIENT, ARG_TABLE, NULL, DNS_T_A },
	{ "check_reverse_client_hostname_mx_access", OP_SERVER_ACCESS, AK_REVERSE, ARG_TABLE, NULL,
	  DNS_T_MX },
	{ "check_reverse_client_hostname_ns_access", OP_SERVER_ACCESS, AK_REVERSE, ARG_TABLE, NULL,
	  DNS_T_NS },
	{ "check_reverse_client_hostname_a_access", OP_SERVER_ACCESS, AK_REVERSE, ARG_TABLE, NULL,
	  DNS_T_A },
	{ "check_helo_mx_access", OP_SERVER_ACCESS, AK_HELO, ARG_TABLE, NULL, DNS_T_MX },
	{ "check_helo_ns_access", OP_SERVER_ACCESS, AK_HELO, ARG_TABLE, NULL, DNS_T_NS },
	{ "check_helo_a_access", OP_SERVER_ACCESS, AK_HELO, ARG_TABLE, NULL, DNS_T_A },
	{ "check_sender_mx_access", OP_SERVER_ACCESS, AK_SENDER, ARG_TABLE, NULL, DNS_T_MX },
	{ "check_sender_ns_access", OP_SERVER_ACCESS, AK_SENDER, ARG_TABLE, NULL, DNS_T_NS },
	{ "check_sender_a_access", OP_SERVER_ACCESS, AK_SENDER, ARG_TABLE, NULL, DNS_T_A },
	{ "check_recipient_mx_access", OP_SERVER_ACCESS, AK_RECIPIENT, ARG_TABLE, NULL, DNS_T_MX },
	{ "check_recipient_ns_access", OP_SERVER_ACCESS, AK_RECIPIENT, ARG_TABLE, NULL, DNS_T_NS },
	{ "check_recipient_a_access", OP_SERVER_ACCESS, AK_RECIPIENT, ARG_TABLE, NULL, DNS_T_A },
	{ "reject_unverified_recipient", OP_UNVERIFIED_RCPT, 0, 0, NULL, 0 },
	/* not implemented: check refuses them, and so does a table value */
	{ "permit_mx_backup", 0, 0, 0, "mxgate never relays", 0 },
	{ "reject_unverified_sender", 0, 0, 0, "mxgate sends no mail, so it cannot verify a "
	  "sender address", 0 },
	{ "check_policy_service", OP_POLICY, 0, ARG_SERVER, NULL, 0 },
	{ "check_ccert_access", 0, 0, ARG_TABLE, NO_TLS, 0 },
	{ "permit_inet_interfaces", 0, 0, 0, "it is not built yet", 0 },
	{ "check_relay_domains", 0, 0, 0, "mxgate never relays", 0 },
	{ "permit_naked_ip_address", 0, 0, 0, "Postfix removed it", 0 },
};

/* Restrictions that make a list reject by default (Postfix's rcpt_required). */
static const char *const rcpt_required[] = {
	"reject_unauth_destination", "defer_unauth_destination", "reject", "defer",
	"defer_if_permit", "check_relay_domains",
};

/*
 * A DNS list's reply filter (Postfix's ip_match syntax): four octets, each a
 * number or "[" numbers and ranges "a..b", separated by ";", "]"; for
 * instance 127.0.0.[2..11;13].  One 256-bit set per octet.
 */
struct ipfilter {
	uint64_t oct[4][4];
};

static bool
ipfilter_num(const char **sp, unsigned *v)
{
	const char *s = *sp;
	unsigned n = 0;

	if (!isdigit((unsigned char)*s))
		return false;
	for (; isdigit((unsigned char)*s); s++)
		if ((n = n * 10 + (unsigned)(*s - '0')) > 255)
			return false;
	*v = n;
	*sp = s;
	return true;
}

static struct ipfilter *
ipfilter_parse(const char *pat)
{
	struct ipfilter *f = xcalloc(1, sizeof(*f));
	const char *s = pat;
	unsigned a, b;

	for (int o = 0; o < 4; o++) {
		if (o > 0 && *s++ != '.')
			goto bad;
		if (*s != '[') {
			if (!ipfilter_num(&s, &a))
				goto bad;
			f->oct[o][a / 64] |= 1ULL << (a % 64);
			continue;
		}
		s++;
		for (;;) {
			if (!ipfilter_num(&s, &a))
				goto bad;
			b = a;
			if (s[0] == '.' && s[1] == '.') {
				s += 2;
				if (!ipfilter_num(&s, &b) || b < a)
					goto bad;
			}
			for (unsigned v = a; v <= b; v++)
				f->oct[o][v / 64] |= 1ULL << (v % 64);
			if (*s == ';') {
				s++;
				continue;
			}
			if (*s++ != ']')
				goto bad;
			break;
		}
	}
	if (*s == '\0')
		return f;
bad:
	free(f);
	return NULL;
}

static bool
ipfilter_match(const struct ipfilter *f, const unsigned char *a4)
{
	for (int o = 0; o < 4; o++)
		if (!(f->oct[o][a4[o] / 64] & (1ULL << (a4[o] % 64))))
			return false;
	return true;
}

struct rlist;

struct relem {
	enum rop op;
	enum akind kind;
	char   *name;		/* as written */
	long	num;		/* sleep */
	struct maplist *table;	/* OP_ACCESS, OP_ACCESS_DEF */
	char   *spec;		/* the table's spec */
	const struct rlist *cls;	/* OP_CLASS */
	char   *error;		/* OP_ERROR: the warning */
	struct policy_server *server;	/* OP_POLICY */
	int	dtype;		/* OP_SERVER_ACCESS */
	char   *domain;		/* a DNS list as written ("zen.example=127.0.0.[2..11]") */
	struct ipfilter *filter;	/* its "=" part, or NULL */
};

struct rlist {
	struct relem *v;
	size_t	n;
};

struct rclass {
	char   *name;
	struct rlist list;
};

enum { L_CLIENT, L_HELO, L_SENDER, L_RELAY, L_RCPT, L_DATA, L_EOD, L_COUNT };

static const enum param_id list_params[L_COUNT] = {
	P_smtpd_client_restrictions, P_smtpd_helo_restrictions, P_smtpd_sender_restrictions,
	P_smtpd_relay_restrictions, P_smtpd_recipient_restrictions, P_smtpd_data_restrictions,
	P_smtpd_end_of_data_restrictions,
};

struct restrict_policy {
	int	refs;		/* atomics */
	struct recipient_policy *rp;
	struct rlist lists[L_COUNT];
	struct rclass *classes;
	size_t	nclasses;
	struct rlist login_class;	/* reject_sender_login_mismatch */
	struct addrlist *mynetworks;
	struct maplist *login_maps;	/* smtpd_sender_login_maps */
	struct maplist **tables;	/* every access table, for probe/changed */
	size_t	ntables;
	char  **permit_log;		/* smtpd_log_access_permit_actions */
	size_t	npermit_log;
	char   *null_key;
	char   *delim;
	char   *myorigin;
	bool	delay_reject, relay_first, reject_unlisted_sender, sasl_enable, soft_bounce;
	bool	access_parent, in_memory, remote;
	int	reject_code, defer_code, map_reject_code, map_defer_code, relay_code;
	int	bad_name_code, non_fqdn_code, multi_bounce_code, plaintext_code;
	int	local_code, virtual_code, alias_code;
	/* DNS */
	int	unk_name_code, unk_addr_code, unk_client_code, maps_rbl_code;
	bool	unk_name_tf_dip, unk_addr_tf_dip;	/* *_tempfail_action defer_if_permit */
	bool	ipv4, ipv6;			/* inet_protocols */
	char   *rbl_template;			/* default_rbl_reply */
	struct maplist *rbl_reply_maps;
	char  **maps_rbl_domains;
	size_t	nmaps_rbl_domains;
	char   *expand_filter;			/* smtpd_expansion_filter, unescaped */
	char   *myhostname;
	/* reject_unverified_recipient */
	int	unv_rcpt_code, unv_rcpt_defer_code;
	bool	unv_rcpt_tf_dip;
	char   *unv_rcpt_why;
};

/* ---- building ---- */

struct build {
	struct restrict_policy *p;
	restrict_problem_fn *report;
	void   *ctx;
	const char *param;
	size_t	problems;
	bool	runtime;	/* a table value: no tables, problems become OP_ERROR */
	const struct conf_view *cf;	/* NULL at runtime */
};

static void
build_problem(struct build *b, const char *item, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
build_problem(struct build *b, const char *item, const char *fmt, ...)
{
	va_list ap;
	char   *why;

	va_start(ap, fmt);
	if (vasprintf(&why, fmt, ap) < 0)
		why = NULL;
	va_end(ap);
	if (b->report)
		b->report(b->ctx, b->param, item, why ? why : fmt);
	b->problems++;
	free(why);
}

static void
build_map_problem(void *ctx, const char *spec, const char *why)
{
	build_problem(ctx, spec, "%s", why);
}

static const struct rname *
rname_find(const char *name)
{
	for (size_t i = 0; i < sizeof(rnames) / sizeof(rnames[0]); i++)
		if (strcasecmp(rnames[i].name, name) == 0)
			return &rnames[i];
	return NULL;
}

static const struct rclass *
class_find(const struct restrict_policy *p, const char *name)
{
	for (size_t i = 0; i < p->nclasses; i++)
		if (strcmp(p->classes[i].name, name) == 0)
			return &p->classes[i];
	if (strcasecmp(name, "reject_sender_login_mismatch") == 0)
		return (const struct rclass *)&p->login_class;	/* see class_list() */
	return NULL;
}

static const struct rlist *
class_list(const struct restrict_policy *p, const struct rclass *c)
{
	if ((const void *)c == (const void *)&p->login_class)
		return &p->login_class;
	return &c->list;
}

static void
open_table(struct build *b, struct relem *e, const char *spec)
{
	struct maplist *l;
	char *const specs[] = { (char *)spec, NULL };

	e->spec = xstrdup(spec);
	if (b->runtime)
		return;
	l = maplist_open_report(specs, 1, build_map_problem, b);
	maplist_set_title(l, b->param);
	e->table = l;
	b->p->tables = xrealloc(b->p->tables, (b->p->ntables + 1) * sizeof(*b->p->tables));
	b->p->tables[b->p->ntables++] = l;
}

/* An element that cannot be: reported when building, OP_ERROR in a table value. */
static void
elem_error(struct build *b, struct relem *e, const char *item, const char *why)
{
	if (b->runtime) {
		e->op = OP_ERROR;
		e->error = xstrdup(why);
	} else {
		build_problem(b, item, "%s", why);
	}
}

static bool
all_digits(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

/* check_policy_service's server (Postfix's policy_client_register()). */
static bool
compile_server(struct build *b, struct relem *e, const char *spec)
{
	char   *err = NULL;

	if (b->runtime || b->cf == NULL) {
		/* Postfix registers servers only for the lists (a table value panics) */
		elem_error(b, e, spec, "check_policy_service in an access table value: "
			   "name the server in a restriction class instead");
		return false;
	}
	if ((e->server = policy_server_new(spec, b->cf, &err)) == NULL) {
		build_problem(b, spec, "check_policy_service %s: %s", spec, err);
		free(err);
		return false;
	}
	return true;
}

/* A DNS list argument: "domain" or "domain=filter". */
static void
dnsxl_compile(struct build *b, struct relem *e, const char *rname, const char *arg)
{
	const char *eq = strchr(arg, '=');
	char   *why;

	e->domain = xstrdup(arg);
	if (eq == NULL)
		return;
	if ((e->filter = ipfilter_parse(eq + 1)) == NULL) {
		why = xasprintf("restriction %s %s: bad RBL reply pattern \"%s\"", rname, arg, eq + 1);
		elem_error(b, e, arg, why);
		free(why);
	}
}

/* Compile n words (a list, a class, or a table value) into l. */
static void
compile(struct build *b, char *const *w, size_t n, struct rlist *l)
{
	l->v = xcalloc(n + 1, sizeof(*l->v));
	l->n = 0;
	for (size_t i = 0; i < n; i++) {
		struct relem *e = &l->v[l->n++];
		const struct rname *rn;
		const struct rclass *c;
		char *why = NULL;

		e->name = xstrdup(w[i]);
		if (strchr(w[i], ':') != NULL) {
			e->op = OP_ACCESS_DEF;
			open_table(b, e, w[i]);
			continue;
		}
		if ((rn = rname_find(w[i])) == NULL) {
			if ((c = class_find(b->p, w[i])) != NULL) {
				e->op = OP_CLASS;
				e->cls = class_list(b->p, c);
			} else {
				why = xasprintf("unknown smtpd restriction: \"%s\"", w[i]);
				elem_error(b, e, w[i], why);
			}
			free(why);
			continue;
		}
		e->op = rn->op;
		e->kind = rn->kind;
		if (rn->arg != ARG_NONE) {
			const char *a = i + 1 < n ? w[i + 1] : NULL;

			switch (rn->arg) {
			case ARG_TABLE:
				if (a == NULL || strchr(a, ':') == NULL)
					why = xasprintf("restriction %s: bad argument \"%s\": need "
							"maptype:mapname", rn->name, a ? a : "");
				break;
			case ARG_NUMBER:
				if (a == NULL || !all_digits(a))
					why = xasprintf("restriction %s must be followed by number",
							rn->name);
				break;
			case ARG_SERVER:
				if (a == NULL || strchr(a, ':') == NULL)
					why = xasprintf("restriction %s must be followed by "
							"transport:server", rn->name);
				break;
			default:
				if (a == NULL)
					why = xasprintf("restriction %s requires domain name argument",
							rn->name);
				break;
			}
			if (a != NULL)
				i++;	/* Postfix takes the argument, good or bad */
		}
		if (why == NULL && rn->unimpl != NULL)
			why = xasprintf("restriction %s is not implemented by mxgate (%s); "
					"remove it, or keep Postfix for this service", rn->name,
					rn->unimpl);
		if (why != NULL) {
			elem_error(b, e, w[i], why);
			free(why);
			continue;
		}
		e->dtype = rn->dtype;
		if (rn->arg == ARG_SERVER && !compile_server(b, e, w[i]))
			continue;
		if (rn->arg == ARG_TABLE)
			open_table(b, e, w[i]);
		else if (rn->arg == ARG_NUMBER)
			e->num = strtol(w[i], NULL, 10);
		else if (rn->arg == ARG_DOMAIN)
			dnsxl_compile(b, e, rn->name, w[i]);
	}
}

static void
rlist_free(struct rlist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].domain);
		free(l->v[i].filter);
		free(l->v[i].name);
		free(l->v[i].spec);
		free(l->v[i].error);
		policy_server_free(&l->v[i].server);
	}
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* Postfix's has_required(): does the list (or a class in it) reject by default? */
static bool
has_required(const struct restrict_policy *p, const struct rlist *l, int depth)
{
	if (depth > RESTRICT_RECURSION_MAX)
		return false;
	for (size_t i = 0; i < l->n; i++) {
		const struct relem *e = &l->v[i];

		if (e->op == OP_WARN_IF_REJECT && i + 1 < l->n) {
			i++;
			continue;
		}
		if (e->op == OP_PERMIT)
			return false;
		for (size_t k = 0; k < sizeof(rcpt_required) / sizeof(rcpt_required[0]); k++)
			if (strcasecmp(e->name, rcpt_required[k]) == 0)
				return true;
		if (e->op == OP_CLASS && has_required(p, e->cls, depth + 1))
			return true;
	}
	return false;
}

static bool
list_has(char *const *l, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(l[i], name) == 0)
			return true;
	return false;
}

/* Postfix's tempfail_actions: defer_if_permit (true) or defer (false). */
static bool
tempfail_action(struct build *b, const struct conf_view *cf, enum param_id id)
{
	const char *v = conf_str(cf, id);

	if (strcasecmp(v, "defer_if_permit") == 0)
		return true;
	if (strcasecmp(v, "defer") != 0) {
		b->param = conf_param_name(id);
		build_problem(b, v, "bad parameter value: \"%s\" (expected defer or "
			      "defer_if_permit)", v);
	}
	return false;
}

/* smtpd_expansion_filter: Postfix unescapes it (\t, \40, \\, ...). */
static char *
unescape(const char *s)
{
	struct buf b = BUF_INIT;

	while (*s) {
		if (*s != '\\' || s[1] == '\0') {
			buf_putc(&b, *s++);
			continue;
		}
		s++;
		if (*s >= '0' && *s <= '7') {
			int	v = 0;

			for (int k = 0; k < 3 && *s >= '0' && *s <= '7'; k++)
				v = v * 8 + (*s++ - '0');
			buf_putc(&b, (char)v);
			continue;
		}
		switch (*s) {
		case 'a': buf_putc(&b, '\a'); break;
		case 'b': buf_putc(&b, '\b'); break;
		case 'f': buf_putc(&b, '\f'); break;
		case 'n': buf_putc(&b, '\n'); break;
		case 'r': buf_putc(&b, '\r'); break;
		case 't': buf_putc(&b, '\t'); break;
		case 'v': buf_putc(&b, '\v'); break;
		default: buf_putc(&b, *s); break;
		}
		s++;
	}
	return buf_steal(&b);
}

static void
dns_settings(struct restrict_policy *p, const struct conf_view *cf, struct build *b)
{
	char *const *v;
	size_t	n;

	p->unk_name_code = (int)conf_int(cf, P_unknown_hostname_reject_code);
	p->unk_addr_code = (int)conf_int(cf, P_unknown_address_reject_code);
	p->unk_client_code = (int)conf_int(cf, P_unknown_client_reject_code);
	p->maps_rbl_code = (int)conf_int(cf, P_maps_rbl_reject_code);
	p->unk_name_tf_dip = tempfail_action(b, cf, P_unknown_helo_hostname_tempfail_action);
	p->unk_addr_tf_dip = tempfail_action(b, cf, P_unknown_address_tempfail_action);
	v = conf_list(cf, P_inet_protocols, &n);
	p->ipv4 = list_has(v, n, "all") || list_has(v, n, "ipv4");
	p->ipv6 = list_has(v, n, "all") || list_has(v, n, "ipv6");
	p->rbl_template = xstrdup(conf_str(cf, P_default_rbl_reply));
	p->expand_filter = unescape(conf_str(cf, P_smtpd_expansion_filter));
	p->myhostname = xstrdup(conf_str(cf, P_myhostname));
	v = conf_list(cf, P_maps_rbl_domains, &p->nmaps_rbl_domains);
	p->maps_rbl_domains = xcalloc(p->nmaps_rbl_domains + 1, sizeof(*p->maps_rbl_domains));
	for (size_t i = 0; i < p->nmaps_rbl_domains; i++)
		p->maps_rbl_domains[i] = xstrdup(v[i]);
	v = conf_list(cf, P_rbl_reply_maps, &n);
	if (n > 0) {
		b->param = "rbl_reply_maps";
		p->rbl_reply_maps = maplist_open_report(v, n, build_map_problem, b);
		maplist_set_title(p->rbl_reply_maps, b->param);
	}
}

struct restrict_policy *
restrict_create(const struct conf_view *cf, const struct recipient_policy *rp,
		restrict_problem_fn *report, void *ctx)
{
	struct restrict_policy *p = xcalloc(1, sizeof(*p));
	struct build b = { p, report, ctx, NULL, 0, false, cf };
	char *const *v, *err = NULL;
	size_t n, nclasses;
	char *login[] = { "reject_authenticated_sender_login_mismatch",
			  "reject_unauthenticated_sender_login_mismatch" };

	p->refs = 1;
	p->rp = recipient_policy_ref(rp);
	p->delay_reject = conf_bool(cf, P_smtpd_delay_reject);
	p->relay_first = conf_bool(cf, P_smtpd_relay_before_recipient_restrictions);
	p->reject_unlisted_sender = conf_bool(cf, P_smtpd_reject_unlisted_sender);
	p->sasl_enable = conf_bool(cf, P_smtpd_sasl_auth_enable);
	p->soft_bounce = conf_bool(cf, P_soft_bounce);
	p->reject_code = (int)conf_int(cf, P_reject_code);
	p->defer_code = (int)conf_int(cf, P_defer_code);
	p->map_reject_code = (int)conf_int(cf, P_access_map_reject_code);
	p->map_defer_code = (int)conf_int(cf, P_access_map_defer_code);
	p->relay_code = (int)conf_int(cf, P_relay_domains_reject_code);
	p->bad_name_code = (int)conf_int(cf, P_invalid_hostname_reject_code);
	p->non_fqdn_code = (int)conf_int(cf, P_non_fqdn_reject_code);
	p->multi_bounce_code = (int)conf_int(cf, P_multi_recipient_bounce_reject_code);
	p->plaintext_code = (int)conf_int(cf, P_plaintext_reject_code);
	p->local_code = (int)conf_int(cf, P_unknown_local_recipient_reject_code);
	p->virtual_code = (int)conf_int(cf, P_unknown_virtual_mailbox_reject_code);
	p->alias_code = (int)conf_int(cf, P_unknown_virtual_alias_reject_code);
	p->null_key = xstrdup(conf_str(cf, P_smtpd_null_access_lookup_key));
	p->delim = xstrdup(conf_str(cf, P_recipient_delimiter));
	p->myorigin = xstrdup(conf_str(cf, P_myorigin));
	v = conf_list(cf, P_parent_domain_matches_subdomains, &n);
	p->access_parent = list_has(v, n, "smtpd_access_maps");
	v = conf_list(cf, P_smtpd_log_access_permit_actions, &p->npermit_log);
	p->permit_log = xcalloc(p->npermit_log + 1, sizeof(*p->permit_log));
	for (size_t i = 0; i < p->npermit_log; i++)
		p->permit_log[i] = xstrdup(v[i]);

	dns_settings(p, cf, &b);
	p->unv_rcpt_code = (int)conf_int(cf, P_unverified_recipient_reject_code);
	p->unv_rcpt_defer_code = (int)conf_int(cf, P_unverified_recipient_defer_code);
	p->unv_rcpt_tf_dip = tempfail_action(&b, cf, P_unverified_recipient_tempfail_action);
	p->unv_rcpt_why = xstrdup(conf_str(cf, P_unverified_recipient_reject_reason));

	b.param = "mynetworks";
	v = conf_list(cf, P_mynetworks, &n);
	{
		char *const *pd = conf_list(cf, P_parent_domain_matches_subdomains, &nclasses);
		int flags = ADDRLIST_ADDR_ONLY
			    | (list_has(pd, nclasses, "mynetworks") ? ADDRLIST_PARENT_MATCH : 0);

		if ((p->mynetworks = addrlist_create_flags(v, n, flags, &err)) == NULL) {
			build_problem(&b, "", "%s", err);
			free(err);
		}
	}
	b.param = "smtpd_sender_login_maps";
	v = conf_list(cf, P_smtpd_sender_login_maps, &n);
	if (n > 0) {
		p->login_maps = maplist_open_report(v, n, build_map_problem, &b);
		maplist_set_title(p->login_maps, b.param);
	}

	/* classes: names first, so that lists and classes can name any of them */
	b.param = "smtpd_restriction_classes";
	v = conf_list(cf, P_smtpd_restriction_classes, &nclasses);
	p->classes = xcalloc(nclasses + 1, sizeof(*p->classes));
	for (size_t i = 0; i < nclasses; i++) {
		if (class_find(p, v[i]) != NULL)
			continue;
		p->classes[p->nclasses++].name = xstrdup(v[i]);
	}
	compile(&b, login, 2, &p->login_class);
	for (size_t i = 0; i < p->nclasses; i++) {
		char *const *w = conf_user_list(cf, p->classes[i].name, &n);

		b.param = p->classes[i].name;
		if (w == NULL || n == 0) {
			b.param = "smtpd_restriction_classes";
			build_problem(&b, p->classes[i].name, "restriction class `%s' needs a definition",
				      p->classes[i].name);
			continue;
		}
		compile(&b, w, n, &p->classes[i].list);
	}
	for (int k = 0; k < L_COUNT; k++) {
		b.param = conf_param_name(list_params[k]);
		v = conf_list(cf, list_params[k], &n);
		compile(&b, v, n, &p->lists[k]);
		if (k != L_DATA && k != L_EOD)
			continue;
		for (size_t i = 0; i < p->lists[k].n; i++)
			if (p->lists[k].v[i].op == OP_ACCESS_DEF)
				build_problem(&b, p->lists[k].v[i].name,
					      "specify one of (check_client_access, "
					      "check_reverse_client_hostname_access, check_helo_access, "
					      "check_sender_access, check_recipient_access, "
					      "check_etrn_access) before %s restriction \"%s\"",
					      k == L_DATA ? "Data command" : "End-of-data",
					      p->lists[k].v[i].name);
	}
	if (!has_required(p, &p->lists[L_RCPT], 0) && !has_required(p, &p->lists[L_RELAY], 0)) {
		b.param = "smtpd_relay_restrictions";
		build_problem(&b, "", "in parameter smtpd_relay_restrictions or "
			      "smtpd_recipient_restrictions, specify at least one working instance "
			      "of: reject_unauth_destination, defer_unauth_destination, reject, "
			      "defer, defer_if_permit or check_relay_domains");
	}
	p->in_memory = true;
	for (size_t i = 0; i < p->ntables; i++) {
		if (!maplist_in_memory(p->tables[i]))
			p->in_memory = false;
		if (maplist_has_remote(p->tables[i]))
			p->remote = true;
	}
	if (p->rbl_reply_maps != NULL) {
		p->in_memory = p->in_memory && maplist_in_memory(p->rbl_reply_maps);
		p->remote = p->remote || maplist_has_remote(p->rbl_reply_maps);
	}
	if (p->login_maps != NULL) {
		p->in_memory = p->in_memory && maplist_in_memory(p->login_maps);
		p->remote = p->remote || maplist_has_remote(p->login_maps);
	}
	p->remote = p->remote || recipient_policy_remote(rp);
	if (b.problems > 0)
		restrict_free(&p);
	return p;
}

struct restrict_policy *
restrict_ref(const struct restrict_policy *cp)
{
	struct restrict_policy *p = (struct restrict_policy *)cp;

	__atomic_fetch_add(&p->refs, 1, __ATOMIC_RELAXED);
	return p;
}

void
restrict_free(struct restrict_policy **pp)
{
	struct restrict_policy *p = *pp;

	*pp = NULL;
	if (p == NULL || __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	for (int k = 0; k < L_COUNT; k++)
		rlist_free(&p->lists[k]);
	for (size_t i = 0; i < p->nclasses; i++) {
		rlist_free(&p->classes[i].list);
		free(p->classes[i].name);
	}
	free(p->classes);
	rlist_free(&p->login_class);
	for (size_t i = 0; i < p->ntables; i++)
		maplist_free(&p->tables[i]);
	free(p->tables);
	maplist_free(&p->login_maps);
	addrlist_free(&p->mynetworks);
	for (size_t i = 0; i < p->npermit_log; i++)
		free(p->permit_log[i]);
	free(p->permit_log);
	free(p->null_key);
	free(p->delim);
	free(p->myorigin);
	free(p->rbl_template);
	maplist_free(&p->rbl_reply_maps);
	for (size_t i = 0; i < p->nmaps_rbl_domains; i++)
		free(p->maps_rbl_domains[i]);
	free(p->maps_rbl_domains);
	free(p->expand_filter);
	free(p->myhostname);
	free(p->unv_rcpt_why);
	recipient_policy_free(&p->rp);
	free(p);
}

bool
restrict_delay_reject(const struct restrict_policy *p)
{
	return p->delay_reject;
}

bool
restrict_stage_empty(const struct restrict_policy *p, enum restrict_stage stage)
{
	switch (stage) {
	case RESTRICT_CLIENT:
		return p->lists[L_CLIENT].n == 0;
	case RESTRICT_HELO:
		return p->lists[L_HELO].n == 0;
	case RESTRICT_SENDER:
		return p->lists[L_SENDER].n == 0 && !p->reject_unlisted_sender;
	case RESTRICT_DATA:
		return p->lists[L_DATA].n == 0;
	case RESTRICT_EOD:
		return p->lists[L_EOD].n == 0;
	default:
		return false;
	}
}

bool
restrict_remote(const struct restrict_policy *p)
{
	return p->remote;
}

size_t
restrict_probe(const struct restrict_policy *p, restrict_problem_fn *report, void *ctx)
{
	size_t bad = 0;

	for (size_t i = 0; i <= p->ntables; i++) {
		const struct maplist *l = i < p->ntables ? p->tables[i] : p->login_maps;

		for (size_t k = 0; k < maplist_count(l); k++) {
			const struct map *m = maplist_get(l, k);
			char *why;

			if (map_probe(m, &why) < 0) {
				report(ctx, i < p->ntables ? "smtpd restrictions" : "smtpd_sender_login_maps",
				       map_spec(m), why);
				free(why);
				bad++;
			}
		}
	}
	return bad;
}

bool
restrict_has_indexed(const struct restrict_policy *p)
{
	for (size_t i = 0; i < p->ntables; i++)
		if (maplist_has_indexed(p->tables[i]))
			return true;
	return (p->login_maps && maplist_has_indexed(p->login_maps))
	       || recipient_policy_has_indexed(p->rp);
}

const char *
restrict_changed(const struct restrict_policy *p)
{
	const char *spec;

	for (size_t i = 0; i < p->ntables; i++)
		if ((spec = maplist_changed(p->tables[i])) != NULL)
			return spec;
	if (p->login_maps && (spec = maplist_changed(p->login_maps)) != NULL)
		return spec;
	return recipient_policy_changed(p->rp);
}

/* ---- state ---- */

static void
defer_clear(struct restrict_defer *d)
{
	free(d->reason);
	memset(d, 0, sizeof(*d));
}

static void
defer_copy(struct restrict_defer *dst, const struct restrict_defer *src)
{
	*dst = *src;
	dst->reason = src->reason ? xstrdup(src->reason) : NULL;
}

void
restrict_state_reset_mail(struct restrict_state *st)
{
	st->discard = false;
	for (size_t i = 0; i < st->nprepend; i++)
		free(st->prepend[i]);
	free(st->prepend);
	st->prepend = NULL;
	st->nprepend = 0;
}

void
restrict_state_free(struct restrict_state *st)
{
	restrict_state_reset_mail(st);
	defer_clear(&st->dip);
	memset(st, 0, sizeof(*st));
}

void
restrict_state_copy(struct restrict_state *dst, const struct restrict_state *src)
{
	*dst = *src;
	defer_copy(&dst->dip, &src->dip);
	dst->prepend = NULL;
	if (src->nprepend > 0) {
		dst->prepend = xcalloc(src->nprepend + 1, sizeof(*dst->prepend));
		for (size_t i = 0; i < src->nprepend; i++)
			dst->prepend[i] = xstrdup(src->prepend[i]);
	}
}

void
restrict_out_free(struct restrict_out *out)
{
	free(out->reply);
	for (size_t i = 0; i < out->nlog; i++)
		free(out->log[i].text);
	free(out->log);
	if (out->have_rcpt)
		rcpt_result_free(&out->rcpt);
	free(out->ask.name);
	free(out->ask.request);
	memset(out, 0, sizeof(*out));
}

void
restrict_out_flush_log(struct restrict_out *out)
{
	for (size_t i = 0; i < out->nlog; i++) {
		if (out->log[i].warning)
			msg_warn("%s", out->log[i].text);
		else
			msg_info("%s", out->log[i].text);
		free(out->log[i].text);
	}
	free(out->log);
	out->log = NULL;
	out->nlog = 0;
}

/* ---- evaluation ---- */

/* Postfix's status values, plus the ways an evaluation stops early. */
enum { RS_DUNNO = 0, RS_OK = 1, RS_REJECT = 2, RS_ABORT = 3, RS_SLEEP = 4, RS_BLOCK = 5,
       RS_ASK = 6 };
#define RS_STOP(s) ((s) >= RS_ABORT)

/* Postfix's MAIL_ERROR_* classes that warn_if_reject cannot soften. */
enum eclass { E_POLICY, E_PROTOCOL, E_BOUNCE, E_SOFTWARE, E_RESOURCE, E_DATA };

struct ev {
	const struct restrict_policy *p;
	const struct restrict_req *q;
	struct restrict_state *st;
	struct restrict_out *out;
	int	recursion;
	int	warn_if_reject;
	struct restrict_defer dir;	/* defer_if_reject */
	unsigned sleeps;		/* sleeps met in this evaluation */
	enum akind def_acl;
	bool	rcpt_checked, sender_checked;
};

static void
ev_log(struct ev *e, bool warning, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
ev_log(struct ev *e, bool warning, const char *fmt, ...)
{
	struct restrict_out *o = e->out;
	va_list ap;
	char   *t;

	va_start(ap, fmt);
	if (vasprintf(&t, fmt, ap) < 0)
		t = xstrdup(fmt);
	va_end(ap);
	o->log = xrealloc(o->log, (o->nlog + 1) * sizeof(*o->log));
	o->log[o->nlog].warning = warning;
	o->log[o->nlog++].text = t;
}

static void
append_addr(struct buf *b, const char *tag, const char *addr, bool utf8)
{
	char   *q = txn_quote(addr);

	buf_printf(b, " %s=<", tag);
	log_printable(b, q, strlen(q), utf8);
	buf_putc(b, '>');
	free(q);
}

void
restrict_format_log(struct buf *b, const struct restrict_req *q, const char *what,
		    const char *text)
{
	buf_printf(b, "%s: %s: %s from %s: %s;", q->queue_id && *q->queue_id ? q->queue_id
		   : "NOQUEUE", what, q->where, q->namaddr, text);
	if (q->sender)
		append_addr(b, "from", q->sender, q->log_utf8);
	if (q->recipient)
		append_addr(b, "to", q->recipient, q->log_utf8);
	if (q->proto)
		buf_printf(b, " proto=%s", q->proto);
	if (q->helo) {
		buf_puts(b, " helo=<");
		log_printable(b, q->helo, strlen(q->helo), q->log_utf8);
		buf_putc(b, '>');
	}
}

/* log_whatsup(): one "reject", "warn", "discard", ... line, kept for the caller. */
static void
ev_whatsup(struct ev *e, const char *what, const char *text)
{
	struct buf b = BUF_INIT;

	restrict_format_log(&b, e->q, what, text);
	ev_log(e, false, "%s", buf_str(&b));
	buf_free(&b);
}

/* RFC 3463 enhanced code at t: its length, or 0 (Postfix's dsn_valid()). */
static size_t
dsn_len(const char *t)
{
	size_t n1, n2;

	if ((t[0] != '2' && t[0] != '4' && t[0] != '5') || t[1] != '.')
		return 0;
	n1 = strspn(t + 2, "0123456789");
	if (n1 < 1 || n1 > 3 || t[2 + n1] != '.')
		return 0;
	n2 = strspn(t + 3 + n1, "0123456789");
	if (n2 < 1 || n2 > 3 || (t[3 + n1 + n2] != '\0' && !isspace((unsigned char)t[3 + n1 + n2])))
		return 0;
	return 3 + n1 + n2;
}


static int ev_reject(struct ev *e, enum eclass cls, enum reply_id id, ...);

/*
 * smtpd_check_reject(): the reply from a reply-table row whose first
 * arguments are the code (int) and the enhanced code; validated, made
 * printable, turned into an earlier defer_if_reject's deferral,
 * soft-bounced, logged.  Returns RS_REJECT, or RS_DUNNO under
 * warn_if_reject.
 */
static int
ev_vreject(struct ev *e, enum eclass cls, enum reply_id id, va_list ap)
{
	bool	warn = e->warn_if_reject && cls != E_SOFTWARE && cls != E_RESOURCE
		       && cls != E_DATA;
	struct buf b = BUF_INIT;
	char   *t;
	int	code;

	reply_vformat(&b, 0, id, ap);
	t = buf_steal(&b);
	t[strcspn(t, "\r\n")] = '\0';
	code = atoi(t);
	if (code < 400 || code > 599 || strlen(t) < 4 || dsn_len(t + 4) == 0) {
		ev_log(e, true, "%s configuration error: %s", code < 400 || code > 599
		       ? "SMTP reply code" : "DSN detail code", t);
		free(t);
		t = reply_string(RPL_ACL_UNAVAILABLE);
	}
	if (strlen(t) > 510)
		t[510] = '\0';
	for (char *c = t; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = ' ';
	if (!warn && e->dir.active && t[0] == '5') {
		struct restrict_defer d = e->dir;
		int	rc;

		free(t);
		e->warn_if_reject = 0;
		e->dir.active = false;
		rc = ev_reject(e, d.cls, RPL_ACL_RAW, d.code, d.dsn, d.reason ? d.reason : "");
		return rc;
	}
	if (e->p->soft_bounce && t[0] == '5')
		t[0] = '4';
	t[4] = t[0];
	ev_whatsup(e, warn ? "reject_warning" : "reject", t);
	free(e->out->reply);
	e->out->reply = t;
	return warn ? RS_DUNNO : RS_REJECT;
}

static int
ev_reject(struct ev *e, enum eclass cls, enum reply_id id, ...)
{
	va_list ap;
	int	rc;

	va_start(ap, id);
	rc = ev_vreject(e, cls, id, ap);
	va_end(ap);
	return rc;
}

/* A whole reply line ("451 4.3.0 text", from the recipient policy) as a reject. */
static int
ev_reject_line(struct ev *e, enum eclass cls, const char *line)
{
	char	dsn[12] = "";
	const char *text = line;
	size_t	n;

	if (strlen(line) > 4 && (n = dsn_len(line + 4)) > 0 && n < sizeof(dsn)) {
		memcpy(dsn, line + 4, n);
		dsn[n] = '\0';
		text = line + 4 + n;
		while (*text == ' ')
			text++;
	} else if (strlen(line) > 4) {
		text = line + 4;
	}
	return ev_reject(e, cls, RPL_ACL_RAW, atoi(line), *dsn ? dsn : "4.0.0", text);
}

/* reject_dict_retry() and reject_server_error(): the stage stops with a 451. */
static int
ev_abort_retry(struct ev *e, const char *name)
{
	ev_reject(e, E_DATA, RPL_ACL_DATA_ERROR, 451, "4.3.0", name);
	return RS_ABORT;
}

static int
ev_abort_config(struct ev *e)
{
	ev_reject(e, E_SOFTWARE, RPL_ACL_CONFIG_ERROR, 451, "4.3.5");
	return RS_ABORT;
}

/* defer_if(): keep the first reason of its kind; go on (DUNNO). */
static int
ev_defer_if(struct ev *e, struct restrict_defer *d, enum eclass cls, enum reply_id id, ...)
{
	struct buf b = BUF_INIT;
	va_list ap;
	char   *t, *sp;
	size_t	n;

	if (d->active)
		return RS_DUNNO;
	va_start(ap, id);
	reply_vformat(&b, 0, id, ap);
	va_end(ap);
	t = buf_steal(&b);
	t[strcspn(t, "\r\n")] = '\0';
	d->active = true;
	d->cls = cls;
	d->code = atoi(t);
	sp = strlen(t) > 4 ? t + 4 : t + strlen(t);
	n = dsn_len(sp);
	snprintf(d->dsn, sizeof(d->dsn), "%.*s", (int)(n ? n : 0), sp);
	if (n == 0)
		snprintf(d->dsn, sizeof(d->dsn), "4.7.1");
	sp += n;
	while (*sp == ' ')
		sp++;
	free(d->reason);
	d->reason = xstrdup(sp);
	free(t);
	(void)e;
	return RS_DUNNO;
}

/* DEFER_IF_PERMIT2(DEFER_IF_PERMIT_ACT, ...): a deferral unless warn_if_reject. */
#define EV_DEFER_IF_PERMIT(e, cls, id, ...) \
	((e)->warn_if_reject == 0 ? ev_defer_if((e), &(e)->st->dip, (cls), (id), __VA_ARGS__) \
	 : ev_reject((e), (cls), (id), __VA_ARGS__))

/* smtpd_acl_permit(): OK, logged when smtpd_log_access_permit_actions names it. */
static int
ev_permit(struct ev *e, const char *action, const char *rclass, const char *rname,
	  const char *from_table)
{
	if (!e->st->dip.active && (list_has(e->p->permit_log, e->p->npermit_log, action)
				   || list_has(e->p->permit_log, e->p->npermit_log, "static:all"))) {
		char *t = xasprintf("action=%s for %s=%s%s%s", action, rclass, rname,
				    from_table ? " from " : "", from_table ? from_table : "");

		ev_whatsup(e, "permit", t);
		free(t);
	}
	return RS_OK;
}

/* ---- the recipient and sender behind an address ---- */

/* A resolution's warning lines (alias problems, policy/recipient.h), in the log's order. */
static void
ev_log_warnings(struct ev *e, const struct rcpt_result *r)
{
	const char *s = r->warning;

	while (s != NULL && *s != '\0') {
		size_t	n = strcspn(s, "\n");

		ev_log(e, true, "%.*s", (int)n, s);
		s += n;
		if (*s == '\n')
			s++;
	}
}

/* Classify the RCPT's recipient once (out->rcpt). */
static int
ev_resolve_rcpt(struct ev *e)
{
	struct restrict_out *o = e->out;

	if (o->have_rcpt)
		return 0;
	if (e->q->try_only) {
		if (!recipient_try_resolve(e->p->rp, e->q->recipient, &o->rcpt))
			return RS_BLOCK;
	} else {
		recipient_resolve(e->p->rp, e->q->recipient, &o->rcpt);
	}
	o->have_rcpt = true;
	ev_log_warnings(e, &o->rcpt);
	return 0;
}

/* Is the recipient one of ours?  1 yes, 0 no, or RS_BLOCK. */
static int
ev_own_rcpt(struct ev *e)
{
	int	rc = ev_resolve_rcpt(e);

	if (rc != 0)
		return rc;
	return e->out->rcpt.verdict != RCPT_RELAY_DENIED;
}

/* check_rcpt_maps() for the recipient: unknown users, lookup failures. */
static int
ev_rcpt_maps(struct ev *e)
{
	const struct rcpt_result *r;
	int	rc;

	if (e->rcpt_checked)
		return RS_DUNNO;
	if (e->warn_if_reject == 0)
		e->rcpt_checked = true;
	if ((rc = ev_resolve_rcpt(e)) != 0)
		return rc;
	r = &e->out->rcpt;
	switch (r->verdict) {
	case RCPT_OK_LOCAL:
	case RCPT_OK_VIRTUAL:
	case RCPT_RELAY_DENIED:
		return RS_DUNNO;
	case RCPT_TEMPFAIL:
		if (r->reason)
			ev_log(e, true, "%s: %s", e->q->recipient, r->reason);
		ev_reject_line(e, E_DATA, r->reply);
		return RS_ABORT;
	case RCPT_UNDELIVERABLE:
		/* mxgate's own refusal (an alias it cannot carry out): never softened */
		if (r->reason)
			ev_log(e, true, "%s: %s", e->q->recipient, r->reason);
		return ev_reject_line(e, E_SOFTWARE, r->reply);
	default:
		return ev_reject_line(e, E_BOUNCE, r->reply);
	}
}

/*
 * reject_unverified_recipient (Postfix's reject_unverified_address()).  mxgate
 * sends no mail, so the probe is the recipient's own transport: today every
 * recipient mxgate accepts is a mailbox that recipient_resolve() looked up
 * (a Maildir or a local user), and that lookup is the probe, answered at
 * once.  So there is no "Address verification in progress" and nothing to
 * cache (address_verify_*: README).  The outcome maps to verify(8)'s:
 *   a mailbox found (or an alias leading to mailboxes)  deliverable: DUNNO
 *   unknown user, unknown in the virtual alias table    the probe bounced:
 *     unverified_recipient_reject_code, with the text the delivery agent
 *     gives (virtual(8) "unknown user: \"<address, folded>\"", local(8)
 *     "unknown user: \"<user>\"", error(8) "User unknown in virtual alias
 *     table");
 *   a table that does not answer                        the probe deferred:
 *     unverified_recipient_defer_code, "mail system configuration error" (as
 *     virtual(8) answers with its table down);
 * a 4xx code goes through unverified_recipient_tempfail_action (default
 * defer_if_permit), a 5xx is "undeliverable address"; a 2xx accepts, and
 * unverified_recipient_reject_reason replaces the text.  A recipient that
 * is not ours has no probe here (mxgate never relays: the relay check
 * refuses it), and one that mxgate refuses itself (an alias it cannot carry
 * out, a mailbox it will not write) gets that refusal, as at the end of the
 * stage.  A later transport without a probe must refuse the restriction
 * (rnames[]), never pass it.
 */
static int
ev_unverified_rcpt(struct ev *e)
{
	const struct restrict_policy *p = e->p;
	const char *rcpt = e->q->recipient, *why;
	const struct rcpt_result *r;
	enum reply_id probe;
	char   *status = NULL, *folded, *at;
	int	code, rs;

	if ((rs = ev_resolve_rcpt(e)) != 0)
		return rs;
	r = &e->out->rcpt;
	switch (r->verdict) {
	case RCPT_OK_LOCAL:
	case RCPT_OK_VIRTUAL:
	case RCPT_RELAY_DENIED:
		return RS_DUNNO;
	case RCPT_UNKNOWN_VIRTUAL:
	case RCPT_UNKNOWN_LOCAL:
		folded = xstrdup(rcpt);
		for (char *c = folded; *c; c++)
			*c = (char)tolower((unsigned char)*c);
		if (r->verdict == RCPT_UNKNOWN_LOCAL) {	/* local(8): the user, no extension */
			if ((at = strrchr(folded, '@')) != NULL)
				*at = '\0';
			folded[lookup_keys_base_len(p->delim, folded)] = '\0';
		}
		status = reply_string(RPL_PROBE_UNKNOWN_USER, folded);
		free(folded);
		probe = RPL_PROBE_UNKNOWN_USER;
		code = p->unv_rcpt_code;
		break;
	case RCPT_UNKNOWN_ALIAS:
		status = reply_string(probe = RPL_PROBE_UNKNOWN_ALIAS);
		code = p->unv_rcpt_code;
		break;
	case RCPT_TEMPFAIL:
		/* recipient.c's lookup failure is "451 4.3.0"; 4.3.5 and 4.6.0 are its own */
		if (r->reply != NULL && strncmp(r->reply, "451 4.3.0 ", 10) == 0) {
			status = reply_string(probe = RPL_PROBE_LOOKUP_ERROR);
			code = p->unv_rcpt_defer_code;
			break;
		}
		/* FALLTHROUGH */
	default:
		return ev_rcpt_maps(e);
	}
	/* the delivery agent's text, after its code and enhanced code */
	why = status + 4 + strlen(reply_dsn(probe)) + 1;
	if (*p->unv_rcpt_why)
		why = p->unv_rcpt_why;
	if (code / 100 == 2)
		rs = RS_DUNNO;
	else if (code / 100 == 4)
		rs = e->warn_if_reject == 0 && p->unv_rcpt_tf_dip
		     ? ev_defer_if(e, &e->st->dip, E_POLICY, RPL_ACL_UNVERIFIED, code, "4.1.1", rcpt,
				   "Recipient address", why)
		     : ev_reject(e, E_POLICY, RPL_ACL_UNVERIFIED, code, "4.1.1", rcpt,
				 "Recipient address", why);
	else
		rs = ev_reject(e, E_POLICY, RPL_ACL_UNDELIVERABLE, code, "4.1.1", rcpt,
			       "Recipient address", why);
	free(status);
	return rs;
}

/* check_rcpt_maps() for the sender: is a sender in our domains a known user? */
static int
ev_sender_maps(struct ev *e)
{
	struct rcpt_result r;
	int	rc = RS_DUNNO;

	if (e->sender_checked)
		return RS_DUNNO;
	if (e->warn_if_reject == 0)
		e->sender_checked = true;
	if (e->q->try_only) {
		if (!recipient_try_resolve(e->p->rp, e->q->sender, &r))
			return RS_BLOCK;
	} else {
		recipient_resolve(e->p->rp, e->q->sender, &r);
	}
	ev_log_warnings(e, &r);
	switch (r.verdict) {
	case RCPT_UNKNOWN_LOCAL:
		rc = ev_reject(e, E_BOUNCE, RPL_UNKNOWN_LOCAL, e->p->local_code, "5.1.0",
			       e->q->sender, "Sender address");
		break;
	case RCPT_UNKNOWN_ALIAS:
		rc = ev_reject(e, E_BOUNCE, RPL_UNKNOWN_ALIAS, e->p->alias_code, "5.1.0",
			       e->q->sender, "Sender address");
		break;
	case RCPT_UNKNOWN_VIRTUAL:
		rc = ev_reject(e, E_BOUNCE, RPL_UNKNOWN_VIRTUAL, e->p->virtual_code, "5.1.0",
			       e->q->sender, "Sender address");
		break;
	case RCPT_TEMPFAIL:
		ev_reject_line(e, E_DATA, r.reply);
		rc = RS_ABORT;
		break;
	case RCPT_OK_LOCAL:
	case RCPT_OK_VIRTUAL:
	case RCPT_RELAY_DENIED:
	case RCPT_UNDELIVERABLE:	/* an alias matched: a known address, as Postfix sees it */
		break;
	default:
		rc = ev_reject_line(e, E_BOUNCE, r.reply);
		break;
	}
	rcpt_result_free(&r);
	return rc;
}

/* ---- access tables ---- */

static int ev_list(struct ev *e, const struct rlist *l, const char *rn, const char *rc);

/* A header "Name: text" as PREPEND needs it (Postfix's is_header()). */
static bool
is_header(const char *s)
{
	const char *c;

	for (c = s; *c && *c != ':'; c++)
		if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
			return false;
	return c > s && *c == ':';
}

/* Would Postfix hand this action to its cleanup server?  Not in client/HELO
 * restrictions outside a transaction (smtpd_delay_reject = no). */
static bool
ev_in_mail(struct ev *e, const char *table, const char *action)
{
	if (e->q->sender != NULL)
		return true;
	ev_log(e, true, "access table %s: with smtpd_delay_reject=no, action %s is always "
	       "skipped in Client host or Helo command restrictions", table, action);
	return false;
}

/* check_table_result(): what a table's value means. */
static int
ev_table_result(struct ev *e, const char *table, const char *value, const char *datum,
		const char *rn, const char *rc)
{
	size_t	clen = strcspn(value, " \t");
	const char *text = value + clen;
	char	cmd[32];
	char	dsn[12];
	size_t	n;

	while (*text == ' ' || *text == '\t')
		text++;
	snprintf(cmd, sizeof(cmd), "%.*s", (int)(clen < sizeof(cmd) ? clen : 0), value);
#define IS(word) (clen == strlen(word) && strncasecmp(value, word, clen) == 0)
#define DSN_SPLIT(def) do { \
		const char *t_ = text; \
		if ((n = dsn_len(t_)) > 0 && n < sizeof(dsn)) { \
			memcpy(dsn, t_, n); dsn[n] = '\0'; \
			t_ += n; while (*t_ == ' ' || *t_ == '\t') t_++; text = t_; \
		} else snprintf(dsn, sizeof(dsn), "%s", (def)); \
	} while (0)

	if (IS("DUNNO"))
		return RS_DUNNO;
	if (IS("REJECT")) {
		DSN_SPLIT("5.7.1");
		return ev_reject(e, E_POLICY, RPL_ACL_TEXT, e->p->map_reject_code, dsn, rn, rc,
				 *text ? text : "Access denied");
	}
	if (IS("DEFER")) {
		DSN_SPLIT("4.7.1");
		return ev_reject(e, E_POLICY, RPL_ACL_TEXT, e->p->map_defer_code, dsn, rn, rc,
				 *text ? text : "Access denied");
	}
	if (IS("INFO") || IS("WARN")) {
		ev_whatsup(e, IS("INFO") ? "info" : "warn", text);
		return RS_DUNNO;
	}
	if (IS("HOLD") || IS("FILTER") || IS("REDIRECT") || IS("BCC") || IS("DELAY")) {
		ev_log(e, true, "access table %s entry \"%s\": action %s needs a queue or relaying, "
		       "which mxgate does not have; refusing the request", table, datum, cmd);
		return ev_abort_config(e);
	}
	if (IS("DISCARD")) {
		char   *t;

		if (!ev_in_mail(e, table, "DISCARD"))
			return RS_DUNNO;
		t = xasprintf("<%s>: %s %s", rn, rc, *text ? text : "triggers DISCARD action");
		ev_whatsup(e, "discard", t);
		free(t);
		e->st->discard = true;
		return ev_permit(e, cmd, rc, rn, table);
	}
	if (IS("DEFER_IF_PERMIT")) {
		DSN_SPLIT("4.7.1");
		return EV_DEFER_IF_PERMIT(e, E_POLICY, RPL_ACL_TEXT, e->p->map_defer_code, dsn, rn,
					  rc, *text ? text : "Service unavailable");
	}
	if (IS("DEFER_IF_REJECT")) {
		DSN_SPLIT("4.7.1");
		return ev_defer_if(e, &e->dir, E_POLICY, RPL_ACL_TEXT, e->p->map_defer_code, dsn,
				   rn, rc, *text ? text : "Service unavailable");
	}
	if (IS("PREPEND")) {
		struct restrict_state *st = e->st;

		if (!ev_in_mail(e, table, "PREPEND"))
			return RS_DUNNO;
		if (strcmp(e->q->where, "END-OF-MESSAGE") == 0) {
			ev_log(e, true, "access table %s: action PREPEND must be used before "
			       "smtpd_end_of_data_restrictions", table);
			return RS_DUNNO;
		}
		if (*text == '\0' || !is_header(text)) {
			ev_log(e, true, "access table %s entry \"%s\" requires header: text", table,
			       datum);
			return RS_DUNNO;
		}
		st->prepend = xrealloc(st->prepend, (st->nprepend + 2) * sizeof(*st->prepend));
		st->prepend[st->nprepend++] = xstrdup(text);
		st->prepend[st->nprepend] = NULL;
		return RS_DUNNO;
	}
	if (all_digits(value) || (clen == 0 && *value == '\0'))
		return ev_permit(e, cmd, rc, rn, table);
	if (clen == 3 && *text && (value[0] == '4' || value[0] == '5')
	    && isdigit((unsigned char)value[1]) && isdigit((unsigned char)value[2])) {
		char	def[6];

		snprintf(def, sizeof(def), "%c.7.1", value[0]);
		DSN_SPLIT(def);
		return ev_reject(e, E_POLICY, RPL_ACL_TEXT, atoi(value), dsn, rn, rc,
				 *text ? text : "Access denied");
	}
	if (IS("OK") || IS("RELAY"))
		return ev_permit(e, cmd, rc, rn, table);
	if (strchr(value, ':') != NULL) {
		ev_log(e, true, "access table %s has entry with lookup table: %s", table, value);
		ev_log(e, true, "do not specify lookup tables inside SMTPD access maps");
		ev_log(e, true, "define a restriction class and specify its name instead.");
		return ev_abort_config(e);
	}
	if (e->recursion > RESTRICT_RECURSION_MAX) {
		ev_log(e, true, "access table %s entry %s causes unreasonable recursion", table,
		       value);
		return ev_abort_config(e);
	}
	{
		/* restrictions and class names, split as Postfix splits them */
		struct build b = { (struct restrict_policy *)e->p, NULL, NULL, table, 0, true, NULL };
		struct rlist l;
		char  **w;
		size_t	nw;
		char   *err = NULL;
		int	status;

		if ((w = conf_split_list(value, &nw, &err)) == NULL) {
			ev_log(e, true, "access table %s entry %s: %s", table, value, err);
			free(err);
			return ev_abort_config(e);
		}
		compile(&b, w, nw, &l);
		status = ev_list(e, &l, rn, rc);
		rlist_free(&l);
		conf_list_free(w);
		return status;
	}
#undef IS
#undef DSN_SPLIT
}

/* Ask a table these keys; its value decides (a failing table: Postfix's 451 4.3.5). */
static int
ev_access_keys(struct ev *e, const struct relem *el, const struct lookup_keys *ks,
	       const char *datum, const char *rn, const char *rc, bool *found)
{
	char   *value = NULL;
	enum map_status ms;
	int	status;

	*found = false;
	if (e->q->try_only && !maplist_in_memory(el->table))
		return RS_BLOCK;
	ms = lookup_keys_find(el->table, ks, &value, NULL, NULL);
	if (ms == MAP_NOTFOUND)
		return RS_DUNNO;
	*found = true;
	if (ms == MAP_FOUND && *value != '\0')
		status = ev_table_result(e, el->spec, value, datum, rn, rc);
	else
		status = ev_table_result(e, el->spec, "451 4.3.5 Server configuration error", datum,
					 rn, rc);
	free(value);
	return status;
}

/* The name/address forms (check_namadr_access()). */
static int
ev_access_client(struct ev *e, const struct relem *el, const char *name, const char *rn,
		 const char *rc)
{
	struct lookup_keys ks;
	bool	found;
	int	status;

	lookup_keys_client(&ks, name, e->q->addr, e->p->access_parent);
	status = ev_access_keys(e, el, &ks, name, rn, rc, &found);
	lookup_keys_free(&ks);
	return status;
}

/* A domain and its parents (check_domain_access()). */
static int
ev_access_domain(struct ev *e, const struct relem *el, const char *domain, const char *rn,
		 const char *rc)
{
	struct lookup_keys ks;
	bool	found;
	int	status;

	lookup_keys_client(&ks, domain, NULL, e->p->access_parent);
	status = ev_access_keys(e, el, &ks, domain, rn, rc, &found);
	lookup_keys_free(&ks);
	return status;
}

/* An address (check_mail_access()): user+ext@domain ... user@. */
static int
ev_access_mail(struct ev *e, const struct relem *el, const char *addr, const char *rn,
	       const char *rc)
{
	struct lookup_keys ks;
	char   *full = NULL;
	bool	found;
	int	status;

	if (strchr(addr, '@') == NULL && e->p->myorigin && *e->p->myorigin)
		addr = full = xasprintf("%s@%s", addr, e->p->myorigin);
	lookup_keys_access(&ks, e->p->delim, addr, e->p->access_parent);
	status = ev_access_keys(e, el, &ks, addr, rn, rc, &found);
	lookup_keys_free(&ks);
	free(full);
	return status;
}

static int
ev_access(struct ev *e, const struct relem *el, enum akind kind, const char *rc)
{
	const struct restrict_req *q = e->q;
	int	status = RS_DUNNO;

	switch (kind) {
	case AK_CLIENT:
		return ev_access_client(e, el, q->name, q->namaddr, "Client host");
	case AK_REVERSE:
		status = ev_access_client(e, el, q->reverse_name, q->reverse_name,
					  "Unverified Client host");
		if (status == RS_OK && !e->st->discard) {
			ev_log(e, true, "restriction %s returns OK for %s", el->name, q->reverse_name);
			ev_log(e, true, "this is not allowed for security reasons");
			ev_log(e, true, "use DUNNO instead of OK if you want to make an exception");
			return ev_abort_config(e);
		}
		return status;
	case AK_HELO:
		return q->helo ? ev_access_domain(e, el, q->helo, q->helo, "Helo command") : RS_DUNNO;
	case AK_SENDER:
		if (q->sender && *q->sender)
			return ev_access_mail(e, el, q->sender, q->sender, "Sender address");
		if (q->sender) {
			struct lookup_keys ks = { .n = 0 };
			bool	found;

			ks.k[ks.n].key = xstrdup(e->p->null_key);
			ks.k[ks.n++].partial = false;
			status = ev_access_keys(e, el, &ks, q->sender, q->sender, "Sender address",
						&found);
			lookup_keys_free(&ks);
		}
		return status;
	case AK_RECIPIENT:
		return q->recipient ? ev_access_mail(e, el, q->recipient, q->recipient,
						     "Recipient address") : RS_DUNNO;
	case AK_ETRN:
		return RS_DUNNO;	/* no ETRN in mxgate */
	default:
		ev_log(e, true, "specify one of (check_client_access, "
		       "check_reverse_client_hostname_access, check_helo_access, check_sender_access, "
		       "check_recipient_access, check_etrn_access) before %s restriction \"%s\"", rc,
		       el->name);
		return ev_abort_config(e);
	}
}

/* ---- name and address syntax ---- */

static int
ev_invalid_hostaddr(struct ev *e, const char *addr, const char *rn, const char *rc)
{
	size_t	len = strlen(addr);
	char   *a = len > 2 && addr[0] == '[' && addr[len - 1] == ']'
		    ? xstrndup(addr + 1, len - 2) : xstrdup(addr);
	int	status = RS_DUNNO;

	if (!mailhost_addr_valid(a))
		status = ev_reject(e, E_POLICY, RPL_ACL_INVALID_ADDR, e->p->bad_name_code, "5.5.2",
				   rn, rc);
	free(a);
	return status;
}

static int
ev_invalid_hostname(struct ev *e, const char *name, const char *rn, const char *rc)
{
	char   *t = hostname_trim_dot(name);
	int	status = RS_DUNNO;

	if (!hostname_valid(t) && !hostaddr_valid(t))
		status = ev_reject(e, E_POLICY, RPL_ACL_INVALID_NAME, e->p->bad_name_code, "5.5.2",
				   rn, rc);
	free(t);
	return status;
}

static int
ev_non_fqdn_hostname(struct ev *e, const char *name, const char *rn, const char *rc)
{
	char   *t = hostname_trim_dot(name);
	int	status = RS_DUNNO;

	if (!hostname_utf8_valid(t, e->q->smtputf8) || strchr(t, '.') == NULL)
		status = ev_reject(e, E_POLICY, RPL_ACL_NON_FQDN_HOST, e->p->non_fqdn_code, "5.5.2",
				   rn, rc);
	free(t);
	return status;
}

static int
ev_non_fqdn_address(struct ev *e, const char *addr, const char *rc)
{
	const char *at = strrchr(addr, '@');
	const char *domain = at ? at + 1 : "";
	size_t	len = strlen(domain);
	char   *t;
	int	status = RS_DUNNO;

	if (len > 0 && domain[0] == '[' && domain[len - 1] == ']')
		return RS_DUNNO;
	t = hostname_trim_dot(domain);
	if (*t == '\0' || !hostname_utf8_valid(t, e->q->smtputf8) || strchr(t, '.') == NULL)
		status = ev_reject(e, E_POLICY, RPL_ACL_NON_FQDN_ADDR, e->p->non_fqdn_code, "4.5.2",
				   addr, rc);
	free(t);
	return status;
}

/* reject_unauthenticated_sender_login_mismatch: a sender with an owner needs a login. */
static int
ev_login_unauth(struct ev *e)
{
	const char *sender = e->q->sender;
	struct lookup_keys ks;
	const char *at;
	char   *lp, *full = NULL, *value = NULL;
	enum map_status ms;

	if (e->p->login_maps == NULL || sender == NULL || *sender == '\0')
		return RS_DUNNO;
	if (e->q->try_only && !maplist_in_memory(e->p->login_maps))
		return RS_BLOCK;
	if ((at = strrchr(sender, '@')) == NULL && e->p->myorigin && *e->p->myorigin)
		sender = full = xasprintf("%s@%s", sender, e->p->myorigin);
	at = strrchr(sender, '@');
	lp = at ? xstrndup(sender, (size_t)(at - sender)) : xstrdup(sender);
	lookup_keys_virtual(&ks, e->p->delim, lp, at ? at + 1 : NULL, false);
	ms = lookup_keys_find(e->p->login_maps, &ks, &value, NULL, NULL);
	lookup_keys_free(&ks);
	free(lp);
	free(full);
	free(value);
	if (ms == MAP_FAIL || ms == MAP_CONFIG)
		return ms == MAP_FAIL ? ev_abort_retry(e, e->q->sender) : ev_abort_config(e);
	if (ms == MAP_FOUND)
		return ev_reject(e, E_POLICY, RPL_ACL_NOT_LOGGED_IN, 553, "5.7.1", e->q->sender);
	return RS_DUNNO;
}

/* ---- check_policy_service ---- */

/*
 * The server's action goes through check_table_result() as "policy query";
 * one that failed (or answered malformed UTF-8) gets its default action.
 * Not asked yet for this command: RS_ASK, out->ask says what to send.
 */
static int
ev_policy(struct ev *e, const struct relem *el, const char *rn, const char *rc)
{
	const struct policy_server *srv = el->server;
	char   *request = policy_request_build(e->q, srv);
	const char *action = NULL;
	int	status;

	if (!restrict_answers_policy(e->q->answers, e->q->ask_serial, srv->spec, request,
				     &action)) {
		if (e->q->answers != NULL
		    && restrict_answers_count(e->q->answers) < RESTRICT_ASK_MAX) {
			struct restrict_ask *a = &e->out->ask;

			free(a->name);
			free(a->request);
			memset(a, 0, sizeof(*a));
			a->kind = RESTRICT_ASK_POLICY;
			a->name = xstrdup(srv->spec);
			a->request = request;
			a->server = srv;
			return RS_ASK;
		}
		action = NULL;	/* asked too much: as a server that does not answer */
	}
	free(request);
	if (action != NULL && srv->smtputf8 && !policy_valid_utf8(action)) {
		char   *shown = policy_printable(action);

		ev_log(e, true, "malformed UTF-8 in policy server %s response: \"%s\"", srv->spec,
		       shown);
		free(shown);
		action = NULL;
	}
	status = ev_table_result(e, srv->spec, action ? action : srv->default_action,
				 "policy query", rn, rc);
	return status;
}

/*
 * A HELO name check: none without HELO; an address literal is checked as an
 * address (reject_invalid_hostaddr()), a name by fn, as Postfix does.
 */
static int
ev_helo_name(struct ev *e, int (*fn)(struct ev *, const char *, const char *, const char *))
{
	const char *helo = e->q->helo;

	if (helo == NULL)
		return RS_DUNNO;
	return helo[0] != '[' ? fn(e, helo, helo, "Helo command")
	       : ev_invalid_hostaddr(e, helo, helo, "Helo command");
}

/* ---- DNS (Postfix's reject_unknown_*, DNS lists, check_*_{mx,ns,a}_access) ---- */

static const struct dns_answer dns_gave_up = { .status = DNS_RETRY };
static const struct dns_answer dns_invalid_name = { .status = DNS_NOTFOUND };

/*
 * The answer to (name, type), or NULL after asking for it: the caller
 * returns RS_ASK and the evaluation is done again once the answer is in.
 * Like dns_lookup(), an address or a malformed name is "not found" without
 * asking.
 */
static const struct dns_answer *
ev_dns(struct ev *e, const char *name, int type, bool rbl)
{
	const struct dns_answer *a;
	struct restrict_ask *ask = &e->out->ask;

	if (hostaddr_valid(name) || (strcmp(name, ".") != 0 && !hostname_valid(name)))
		return &dns_invalid_name;
	if ((a = restrict_answers_dns(e->q->answers, name, type)) != NULL)
		return a;
	if (e->q->answers == NULL || restrict_answers_count(e->q->answers) >= RESTRICT_ASK_MAX)
		return &dns_gave_up;
	free(ask->name);
	free(ask->request);
	memset(ask, 0, sizeof(*ask));
	ask->kind = RESTRICT_ASK_DNS;
	ask->name = xstrdup(name);
	ask->type = type;
	ask->rbl = rbl;
	return NULL;
}

/* dns_strerror() of the resolver's h_errno for this answer. */
static const char *
dns_strerror_of(const struct dns_answer *a)
{
	switch (a->status) {
	case DNS_OK:
		return "OK";
	case DNS_NOTFOUND:
		return a->nodata ? "Host found but no data record of requested type"
		       : "Host not found";
	case DNS_RETRY:
		return "Host not found, try again";
	case DNS_NULLMX:
		return "Host found but no data record of requested type";
	default:
		return "Non-recoverable error";
	}
}

/* dns_lookup()'s "why" text. */
static char *
dns_why(const char *name, int type, const struct dns_answer *a)
{
	if (a->status == DNS_INVAL)
		return xasprintf("Name service error for name=%s type=%s: Malformed or unexpected "
				 "name server reply", name, dns_type_name(type));
	if (a->status == DNS_NULLMX)
		return xasprintf("Domain %s does not accept mail (nullMX)", name);
	return xasprintf("Host or domain name not found. Name service error for name=%s type=%s: "
			 "%s", name, dns_type_name(type), dns_strerror_of(a));
}

void
restrict_ask_log(const struct restrict_ask *ask, const struct dns_answer *a)
{
	char   *why;

	if (ask->kind != RESTRICT_ASK_DNS || !ask->rbl || a->status == DNS_OK
	    || a->status == DNS_NOTFOUND)
		return;
	why = dns_why(ask->name, ask->type, a);
	msg_warn("%s: RBL lookup error: %s", ask->name, why);
	free(why);
}

/* dns_lookup_l()'s choice between the answers of several types: the best one. */
static int
dns_rank(enum dns_status s)
{
	switch (s) {
	case DNS_OK:
		return 6;
	case DNS_RETRY:
		return 5;
	case DNS_INVAL:
		return 4;
	case DNS_FAIL:
		return 3;
	case DNS_NULLMX:
		return 2;
	default:
		return 1;
	}
}

enum { STOP_OK = 1, STOP_INVAL = 2, STOP_NULLMX = 4 };

/* dns_lookup_l(name, types..., 0): 0 with *st set, or RS_ASK. */
static int
ev_dns_types(struct ev *e, const char *name, const int *types, int stop, enum dns_status *st)
{
	enum dns_status best = DNS_NOTFOUND;

	for (const int *t = types; *t; t++) {
		const struct dns_answer *a = ev_dns(e, name, *t, false);
		enum dns_status s;

		if (a == NULL)
			return RS_ASK;
		s = a->status;
		if (*t != DNS_T_MX && s == DNS_NULLMX)
			s = DNS_NOTFOUND;
		if ((s == DNS_OK && (stop & STOP_OK)) || (s == DNS_INVAL && (stop & STOP_INVAL))
		    || (s == DNS_NULLMX && (stop & STOP_NULLMX))) {
			best = s;
			break;
		}
		if (dns_rank(s) >= dns_rank(best) || t == types)
			best = s;
	}
	*st = best;
	return 0;
}

/* reject_unknown_hostname(): a HELO name with no A, AAAA or MX record. */
static int
ev_unknown_hostname(struct ev *e, const char *name, const char *rn, const char *rc)
{
	int	types[4], n = 0, rs;
	enum dns_status st;

	if (e->p->ipv4)
		types[n++] = DNS_T_A;
	if (e->p->ipv6)
		types[n++] = DNS_T_AAAA;
	types[n++] = DNS_T_MX;
	types[n] = 0;
	if ((rs = ev_dns_types(e, name, types, STOP_OK, &st)) != 0)
		return rs;
	if (st == DNS_OK || st == DNS_NULLMX)
		return RS_DUNNO;
	if (st == DNS_RETRY)
		return e->warn_if_reject == 0 && e->p->unk_name_tf_dip
		       ? ev_defer_if(e, &e->st->dip, E_POLICY, RPL_ACL_HOST_NOT_FOUND, 450, "4.7.1",
				     rn, rc)
		       : ev_reject(e, E_POLICY, RPL_ACL_HOST_NOT_FOUND, 450, "4.7.1", rn, rc);
	return ev_reject(e, E_POLICY, st == DNS_INVAL ? RPL_ACL_DNS_MALFORMED
			 : RPL_ACL_HOST_NOT_FOUND, e->p->unk_name_code, "4.7.1", rn, rc);
}

/* reject_unknown_mailhost(): an address's domain with no MX, A or AAAA record. */
static int
ev_unknown_mailhost(struct ev *e, const char *name, const char *rn, const char *rc)
{
	bool	sender = strcmp(rc, "Sender address") == 0;
	const char *dsn = sender ? "4.1.8" : "4.1.2";
	int	types[4], n = 0, rs;
	enum dns_status st;

	types[n++] = DNS_T_MX;
	if (e->p->ipv4)
		types[n++] = DNS_T_A;
	if (e->p->ipv6)
		types[n++] = DNS_T_AAAA;
	types[n] = 0;
	if ((rs = ev_dns_types(e, name, types, STOP_OK | STOP_INVAL | STOP_NULLMX, &st)) != 0)
		return rs;
	if (st == DNS_OK)
		return RS_DUNNO;
	if (st == DNS_NULLMX)
		return ev_reject(e, E_POLICY, RPL_ACL_NULLMX, sender ? 550 : 556,
				 sender ? "4.7.27" : "4.1.10", rn, rc, name);
	if (st == DNS_RETRY)
		return e->warn_if_reject == 0 && e->p->unk_addr_tf_dip
		       ? ev_defer_if(e, &e->st->dip, E_POLICY, RPL_ACL_DOMAIN_NOT_FOUND, 450, dsn,
				     rn, rc)
		       : ev_reject(e, E_POLICY, RPL_ACL_DOMAIN_NOT_FOUND, 450, dsn, rn, rc);
	return ev_reject(e, E_POLICY, st == DNS_INVAL ? RPL_ACL_DNS_MALFORMED
			 : RPL_ACL_DOMAIN_NOT_FOUND, e->p->unk_addr_code, dsn, rn, rc);
}

/*
 * reject_unknown_address(): the domain of a sender or recipient that is not
 * one of ours (Postfix skips its final destinations and address literals).
 */
static int
ev_unknown_address(struct ev *e, const char *addr, const char *rc)
{
	bool	sender = strcmp(rc, "Sender address") == 0;
	const char *at = strrchr(addr, '@');
	const char *domain = at ? at + 1 : NULL;
	struct rcpt_result r;
	bool	ours;
	int	rs;

	if (domain == NULL || *domain == '\0' || *domain == '[')
		return RS_DUNNO;
	if (sender) {
		if (e->q->try_only) {
			if (!recipient_try_resolve(e->p->rp, addr, &r))
				return RS_BLOCK;
		} else {
			recipient_resolve(e->p->rp, addr, &r);
		}
		ours = r.verdict != RCPT_RELAY_DENIED;
		rcpt_result_free(&r);
	} else {
		if ((rs = ev_own_rcpt(e)) == RS_BLOCK)
			return RS_BLOCK;
		ours = rs != 0;
	}
	if (ours)
		return RS_DUNNO;
	return ev_unknown_mailhost(e, domain, addr, rc);
}

/* smtpd_dsn_fix(): an address status (X.1.Y) fits the class rejected. */
static void
dsn_fix(char *dsn, size_t size, const char *rc)
{
	static const struct { const char *micro, *sender, *rcpt; } map[] = {
		{ "1.0", "4.1.7", "4.1.3" }, { "1.1", "4.1.7", "4.1.1" },
		{ "1.2", "4.1.8", "4.1.2" }, { "1.3", "4.1.7", "4.1.3" },
		{ "1.4", "4.1.7", "4.1.4" }, { "1.5", "4.1.7", "4.1.5" },
		{ "1.6", "4.1.7", "4.1.6" }, { "1.7", "4.1.7", "4.1.3" },
		{ "1.8", "4.1.8", "4.1.2" }, { "1.9", "4.1.7", "4.1.9" },
	};
	const char *to = NULL;
	size_t	i;

	if (strncmp(dsn + 1, ".1.", 3) != 0)
		return;
	if (strcmp(rc, "Sender address") == 0 || strcmp(rc, "Recipient address") == 0) {
		for (i = 0; i < sizeof(map) / sizeof(map[0]); i++)
			if (strcmp(dsn + 2, map[i].micro) == 0)
				break;
		to = i < sizeof(map) / sizeof(map[0])
		     ? (strcmp(rc, "Sender address") == 0 ? map[i].sender : map[i].rcpt)
		     : (strcmp(rc, "Sender address") == 0 ? "4.1.7" : "4.1.3");
	} else {
		to = "4.0.0";
	}
	snprintf(dsn + 1, size - 1, "%s", to + 1);
}

/* What default_rbl_reply and rbl_reply_maps may name. */
struct rbl_vars {
	struct ev *e;
	char	code[8];
	const char *domain, *what, *rc, *txt;
	char   *tmp;
};

/* smtpd_expand_addr(): sender, sender_name, sender_domain (and the recipient's). */
static const char *
rbl_addr_var(struct rbl_vars *v, const char *addr, const char *suffix)
{
	const char *at;

	if (addr == NULL)
		return NULL;
	at = strrchr(addr, '@');
	free(v->tmp);
	v->tmp = NULL;
	if (*suffix == '\0')
		return addr;
	if (strcmp(suffix, "_name") == 0)
		return v->tmp = at ? xstrndup(addr, (size_t)(at - addr)) : xstrdup(addr);
	if (strcmp(suffix, "_domain") == 0)
		return at ? at + 1 : "";
	return NULL;
}

static const char *
rbl_var(struct rbl_vars *v, const char *name)
{
	const struct restrict_req *q = v->e->q;

	if (strcmp(name, "rbl_code") == 0)
		return v->code;
	if (strcmp(name, "rbl_domain") == 0)
		return v->domain;
	if (strcmp(name, "rbl_reason") == 0 || strcmp(name, "rbl_txt") == 0)
		return v->txt;
	if (strcmp(name, "rbl_what") == 0)
		return v->what;
	if (strcmp(name, "rbl_class") == 0)
		return v->rc;
	if (strcmp(name, "server_name") == 0)
		return v->e->p->myhostname;
	if (strcmp(name, "client") == 0)
		return q->namaddr;
	if (strcmp(name, "client_address") == 0)
		return q->addr;
	if (strcmp(name, "client_name") == 0)
		return q->name;
	if (strcmp(name, "reverse_client_name") == 0)
		return q->reverse_name;
	if (strcmp(name, "client_port") == 0)
		return q->client_port ? q->client_port : "";
	if (strcmp(name, "helo_name") == 0)
		return q->helo ? q->helo : "";
	if (strncmp(name, "sender", 6) == 0)
		return rbl_addr_var(v, q->sender, name + 6);
	if (strncmp(name, "recipient", 9) == 0)
		return rbl_addr_var(v, q->recipient, name + 9);
	if (strcmp(name, "localtime") == 0) {
		time_t	now = time(NULL);
		struct tm tm;
		char	b[64];

		localtime_r(&now, &tm);
		strftime(b, sizeof(b), "%b %d %H:%M:%S", &tm);
		free(v->tmp);
		return v->tmp = xstrdup(b);
	}
	ev_log(v->e, true, "unknown macro name \"%s\" in expansion request", name);
	return NULL;
}

/*
 * mac_expand() as Postfix applies it to an RBL reply template: $name,
 * ${name}, $(name), ${name?text}, ${name:text}, $$.  A value goes in as it
 * is (characters outside smtpd_expansion_filter become '_'), never expanded
 * again; the texts in ${name?...} are.  false: a syntax error.
 */
static bool
rbl_expand(struct rbl_vars *v, const char *t, size_t len, struct buf *out, int depth)
{
	const char *end = t + len;

	if (depth > 20)
		return false;
	while (t < end) {
		const char *name, *name_end, *text = NULL, *val;
		size_t	text_len = 0;
		char	close, op = 0;
		char   *nm;

		if (*t != '$') {
			buf_putc(out, *t++);
			continue;
		}
		if (++t >= end)
			return false;
		if (*t == '$') {
			buf_putc(out, *t++);
			continue;
		}
		if (*t == '{' || *t == '(') {
			int	level = 1;
			const char *c;

			close = *t == '{' ? '}' : ')';
			name = ++t;
			while (t < end && (isalnum((unsigned char)*t) || *t == '_'))
				t++;
			name_end = t;
			if (t < end && (*t == '?' || *t == ':')) {
				op = *t++;
				text = t;
				for (c = t; c < end; c++) {
					if (*c == *(name - 1))
						level++;
					else if (*c == close && --level == 0)
						break;
				}
				if (c >= end)
					return false;
				text_len = (size_t)(c - text);
				t = c;
			}
			if (t >= end || *t != close)
				return false;
			t++;
		} else {
			name = t;
			while (t < end && (isalnum((unsigned char)*t) || *t == '_'))
				t++;
			name_end = t;
		}
		if (name_end == name)
			return false;
		nm = xstrndup(name, (size_t)(name_end - name));
		val = rbl_var(v, nm);
		free(nm);
		if (op == '?') {
			if (val != NULL && *val != '\0' && !rbl_expand(v, text, text_len, out, depth + 1))
				return false;
		} else if (op == ':') {
			if ((val == NULL || *val == '\0')
			    && !rbl_expand(v, text, text_len, out, depth + 1))
				return false;
		} else if (val != NULL) {
			for (const char *c = val; *c; c++)
				buf_putc(out, strchr(v->e->p->expand_filter, *c) ? *c : '_');
		}
	}
	return true;
}

/* rbl_reject_reply(): the reply for a listed client, name or address. */
static int
ev_rbl_reply(struct ev *e, const struct relem *el, const char *txt, const char *what,
	     const char *rc)
{
	struct rbl_vars v = { .e = e, .what = what, .rc = rc, .txt = txt ? txt : "" };
	char   *domain = xstrdup(el->domain), *value = NULL, *t, *reply;
	const char *tmpl = NULL;
	struct buf b = BUF_INIT;
	char	dsn[12];
	size_t	n;
	int	status;

	domain[strcspn(domain, "=")] = '\0';
	v.domain = domain;
	snprintf(v.code, sizeof(v.code), "%d", e->p->maps_rbl_code);
	if (e->p->rbl_reply_maps != NULL) {
		enum map_status ms;

		if (e->q->try_only && !maplist_in_memory(e->p->rbl_reply_maps)) {
			free(domain);
			return RS_BLOCK;
		}
		ms = maplist_lookup(e->p->rbl_reply_maps, el->domain, &value, NULL);
		if (ms == MAP_FAIL || ms == MAP_CONFIG) {
			free(value);
			free(domain);
			return ev_abort_config(e);
		}
		tmpl = ms == MAP_FOUND ? value : NULL;
	}
	if (tmpl == NULL || !rbl_expand(&v, tmpl, strlen(tmpl), &b, 0)) {
		if (tmpl != NULL)
			ev_log(e, true, "rbl_reject_reply: bad rbl reply template for domain %s: %s",
			       el->domain, tmpl);
		buf_truncate(&b, 0);
		if (!rbl_expand(&v, e->p->rbl_template, strlen(e->p->rbl_template), &b, 0)) {
			ev_log(e, true, "rbl_reject_reply: bad default rbl reply template: %s",
			       e->p->rbl_template);
			buf_truncate(&b, 0);
		}
	}
	t = buf_steal(&b);
	free(value);
	free(v.tmp);
	free(domain);
	if ((t[0] != '4' && t[0] != '5') || !isdigit((unsigned char)t[1])
	    || !isdigit((unsigned char)t[2]) || t[3] != ' ') {
		ev_log(e, true, "rbl response code configuration error: %s", t);
		free(t);
		reply = reply_string(RPL_ACL_UNAVAILABLE);
		status = ev_reject_line(e, E_POLICY, reply);
		free(reply);
		return status;
	}
	if ((n = dsn_len(t + 4)) > 0 && n < sizeof(dsn)) {
		memcpy(dsn, t + 4, n);
		dsn[n] = '\0';
		n += 4;
		while (t[n] == ' ')
			n++;
	} else {
		snprintf(dsn, sizeof(dsn), "4.7.1");
		n = 4;
	}
	dsn_fix(dsn, sizeof(dsn), rc);
	status = ev_reject(e, E_POLICY, RPL_ACL_RAW, atoi(t), dsn,
			   t[n] ? t + n : "Service unavailable");
	free(t);
	return status;
}

enum { XL_HARD, XL_SOFT, XL_LISTED, XL_ASK };

/* rbl_pagein() and the reply filter: is query listed (A), and why (TXT)? */
static int
ev_dnsxl(struct ev *e, const char *query, const struct ipfilter *f, char **txt_r)
{
	const struct dns_answer *a, *t;
	bool	hit = f == NULL;
	struct buf b = BUF_INIT;

	*txt_r = NULL;
	if ((a = ev_dns(e, query, DNS_T_A, true)) == NULL)
		return XL_ASK;
	if (a->status != DNS_OK && a->status != DNS_NOTFOUND)
		return XL_SOFT;
	if (a->status != DNS_OK)
		return XL_HARD;
	for (size_t i = 0; i < a->nrr && !hit; i++)
		if (a->rr[i].type == DNS_T_A && a->rr[i].len == 4)
			hit = ipfilter_match(f, (const unsigned char *)a->rr[i].data);
	if (!hit)
		return XL_HARD;
	if ((t = ev_dns(e, query, DNS_T_TXT, false)) == NULL)
		return XL_ASK;
	if (t->status == DNS_OK) {
		/* Postfix's RBL_TXT_LIMIT: 500 bytes, records joined with " / " */
		int	left = 500;

		for (size_t i = 0; i < t->nrr && left > 0; i++) {
			size_t	len = t->rr[i].len;

			buf_append(&b, t->rr[i].data, len > (size_t)left ? (size_t)left : len);
			left = 500 - (int)b.len;
			if (i + 1 < t->nrr && left > 3) {
				buf_puts(&b, " / ");
				left -= 3;
			}
		}
	}
	*txt_r = buf_steal(&b);
	return XL_LISTED;
}

/* find_dnsxl_addr(): the client address, reversed, under the list's domain. */
static int
ev_dnsxl_addr(struct ev *e, const struct relem *el, char **txt_r)
{
	const char *addr = e->q->addr;
	struct buf b = BUF_INIT;
	size_t	dlen = strcspn(el->domain, "=");
	int	rc;

	*txt_r = NULL;
	if (strchr(addr, ':') != NULL) {
		unsigned char a6[16];

		if (inet_pton(AF_INET6, addr, a6) != 1)
			return XL_HARD;
		for (int i = 15; i >= 0; i--)
			buf_printf(&b, "%x.%x.", a6[i] & 0xf, a6[i] >> 4);
	} else {
		const char *end = addr + strlen(addr), *dot;

		while (end > addr) {
			for (dot = end; dot > addr && dot[-1] != '.'; dot--)
				;
			buf_append(&b, dot, (size_t)(end - dot));
			buf_putc(&b, '.');
			end = dot > addr ? dot - 1 : addr;
		}
	}
	buf_append(&b, el->domain, dlen);
	rc = ev_dnsxl(e, buf_str(&b), el->filter, txt_r);
	buf_free(&b);
	return rc;
}

/* find_dnsxl_domain(): a name, or an address's domain, under the list's domain. */
static int
ev_dnsxl_domain(struct ev *e, const struct relem *el, const char *what, char **txt_r)
{
	const char *domain = strrchr(what, '@');
	const char *suffix;
	size_t	dlen = strcspn(el->domain, "=");
	char   *query;
	int	rc;

	*txt_r = NULL;
	if (domain != NULL && *++domain == '[')
		return XL_HARD;
	if (domain == NULL)
		domain = what;
	if (*domain == '\0')
		return XL_HARD;
	suffix = strrchr(domain, '.');
	suffix = suffix ? suffix + 1 : domain;
	if (*suffix == '\0' || strspn(suffix, "0123456789") == strlen(suffix))
		return XL_HARD;
	if (!hostname_valid(domain))
		return XL_HARD;
	query = xasprintf("%s.%.*s", domain, (int)dlen, el->domain);
	rc = ev_dnsxl(e, query, el->filter, txt_r);
	free(query);
	return rc;
}

static int
xl_status(int xl)
{
	return xl == XL_ASK ? RS_ASK : RS_DUNNO;
}

/* reject_rbl_client, reject_rhsbl_*, reject_maps_rbl. */
static int
ev_reject_dnsxl(struct ev *e, const struct relem *el, const char *what, const char *rc)
{
	char   *txt;
	int	xl, status;

	xl = what == NULL ? ev_dnsxl_addr(e, el, &txt) : ev_dnsxl_domain(e, el, what, &txt);
	if (xl != XL_LISTED)
		return xl_status(xl);
	status = ev_rbl_reply(e, el, txt, what ? what : e->q->addr, rc);
	free(txt);
	return status;
}

/* permit_dnswl_client, permit_rhswl_client. */
static int
ev_permit_dnsxl(struct ev *e, const struct relem *el, const char *what, const char *rc)
{
	const struct restrict_req *q = e->q;
	char   *txt;
	int	xl, own;

	/* never allowlist a recipient that is not ours */
	if (strcmp(q->where, "RCPT") == 0 && q->recipient != NULL) {
		if ((own = ev_own_rcpt(e)) == RS_BLOCK)
			return RS_BLOCK;
		if (!own)
			return RS_DUNNO;
	}
	xl = what == NULL ? ev_dnsxl_addr(e, el, &txt) : ev_dnsxl_domain(e, el, what, &txt);
	free(txt);
	if (xl == XL_SOFT)
		return ev_defer_if(e, &e->dir, E_POLICY, RPL_ACL_XL_UNAVAILABLE, 450, "4.7.1",
				   what ? what : q->addr, rc);
	if (xl != XL_LISTED)
		return xl_status(xl);
	return ev_permit(e, el->name, "Client host", q->namaddr, NULL);
}

/* forbid_allowlist(): a server access table may not say OK. */
static int
ev_forbid_ok(struct ev *e, const struct relem *el, int status, const char *target)
{
	if (e->st->discard || status != RS_OK)
		return status;
	ev_log(e, true, "restriction %s returns OK for %s", el->name, target);
	ev_log(e, true, "this is not allowed for security reasons");
	ev_log(e, true, "use DUNNO instead of OK if you want to make an exception");
	return ev_abort_config(e);
}

/* check_addr_access(): one server address. */
static int
ev_server_addr(struct ev *e, const struct relem *el, const char *addr, const char *rn,
	       const char *rc, bool *found)
{
	struct lookup_keys ks;
	int	status;

	lookup_keys_client(&ks, NULL, addr, e->p->access_parent);
	status = ev_access_keys(e, el, &ks, addr, rn, rc, found);
	lookup_keys_free(&ks);
	return status;
}

/* The addresses of one server (hostname_to_sockaddr()), checked in turn. */
static int
ev_server_addrs(struct ev *e, const struct relem *el, const char *host, const char *rn,
		const char *rc, int *count, bool *found)
{
	int	types[3], n = 0;
	bool	any = false, temp = false, nodata = true;

	if (e->p->ipv4)
		types[n++] = DNS_T_A;
	if (e->p->ipv6)
		types[n++] = DNS_T_AAAA;
	types[n] = 0;
	for (int k = 0; types[k]; k++) {
		const struct dns_answer *a = ev_dns(e, host, types[k], false);

		if (a == NULL)
			return RS_ASK;
		if (a->status == DNS_RETRY)
			temp = true;
		if (a->status == DNS_NOTFOUND && !a->nodata)
			nodata = false;
		if (a->status != DNS_OK)
			continue;
		any = true;
		for (size_t i = 0; i < a->nrr; i++) {
			char	text[INET6_ADDRSTRLEN];
			int	status;

			if (a->rr[i].type != types[k] || (a->rr[i].len != 4 && a->rr[i].len != 16))
				continue;
			if (++*count > DNS_RR_LIMIT) {
				ev_log(e, true, "check_server_access: %s server address count limit (%d) "
				       "exceeded for %s %s -- ignoring the remainder",
				       dns_type_name(el->dtype), DNS_RR_LIMIT, rc, rn);
				*found = true;	/* stop: Postfix returns DUNNO here */
				return RS_DUNNO;
			}
			inet_ntop(a->rr[i].len == 4 ? AF_INET : AF_INET6, a->rr[i].data, text,
				  sizeof(text));
			status = ev_server_addr(e, el, text, rn, rc, found);
			if (status != RS_DUNNO || *found)
				return status;
		}
	}
	if (!any && el->dtype != DNS_T_A)
		ev_log(e, true, "Unable to look up %s host %s for %s %s: %s",
		       dns_type_name(el->dtype), host, rc, rn,
		       temp ? "Temporary failure in name resolution"
		       : nodata ? "No address associated with hostname" : "Name or service not known");
	return RS_DUNNO;
}

/* check_server_access(): the MX hosts, name servers or address of a name. */
static int
ev_server_access(struct ev *e, const struct relem *el, const char *name, const char *rn,
		 const char *rc)
{
	const char *domain = strrchr(name, '@');
	const struct dns_answer *a = NULL;
	char  **hosts = NULL;
	size_t	nhosts = 0;
	int	status = RS_DUNNO, count = 0;
	bool	found = false;

	domain = domain ? domain + 1 : name;
	if (*domain == '[') {
		size_t	len = strlen(domain);
		char   *lit;

		if ((el->dtype != DNS_T_A && el->dtype != DNS_T_MX) || domain[len - 1] != ']')
			return RS_DUNNO;
		lit = xstrndup(domain + 1, len - 2);
		if (mailhost_addr_valid(lit)) {
			const char *bare = strncasecmp(lit, "IPv6:", 5) == 0 ? lit + 5 : lit;

			status = ev_server_addr(e, el, bare, rn, rc, &found);
		}
		free(lit);
		return status;
	}
	if (el->dtype == DNS_T_A) {
		hosts = xcalloc(1, sizeof(*hosts));
		hosts[nhosts++] = xstrdup(domain);
	} else {
		if ((a = ev_dns(e, domain, el->dtype, false)) == NULL)
			return RS_ASK;
		if (a->status == DNS_NULLMX)
			return RS_DUNNO;
		if (a->status == DNS_NOTFOUND && el->dtype == DNS_T_MX) {
			hosts = xcalloc(1, sizeof(*hosts));
			hosts[nhosts++] = xstrdup(domain);
		} else {
			/* no NS record: the parent domains' */
			while (a->status == DNS_NOTFOUND && el->dtype == DNS_T_NS
			       && (domain = strchr(domain, '.')) != NULL && domain[1]) {
				domain++;
				if ((a = ev_dns(e, domain, DNS_T_NS, false)) == NULL)
					return RS_ASK;
			}
			if (a->status != DNS_OK) {
				ev_log(e, true, "Unable to look up %s host for %s: %s",
				       dns_type_name(el->dtype), domain && domain[1] ? domain : name,
				       dns_strerror_of(a));
				return RS_DUNNO;
			}
			hosts = xcalloc(a->nrr + 1, sizeof(*hosts));
			for (size_t i = 0; i < a->nrr; i++)
				if (a->rr[i].type == el->dtype)
					hosts[nhosts++] = xstrdup(a->rr[i].data);
		}
	}
	for (size_t i = 0; i < nhosts && status == RS_DUNNO && !found; i++) {
		if (hostaddr_valid(hosts[i])) {
			status = ev_server_addr(e, el, hosts[i], rn, rc, &found);
			continue;
		}
		if (el->dtype != DNS_T_A) {
			struct lookup_keys ks;

			lookup_keys_client(&ks, hosts[i], NULL, e->p->access_parent);
			status = ev_access_keys(e, el, &ks, hosts[i], rn, rc, &found);
			lookup_keys_free(&ks);
			if (status != RS_DUNNO || found)
				break;
		}
		status = ev_server_addrs(e, el, hosts[i], rn, rc, &count, &found);
	}
	for (size_t i = 0; i < nhosts; i++)
		free(hosts[i]);
	free(hosts);
	return status;
}

/* The restrictions of this section, from ev_elem(). */
static int
ev_dns_elem(struct ev *e, const struct relem *el)
{
	const struct restrict_req *q = e->q;
	int	ns = q->name_status ? q->name_status
		     : strcmp(q->name, "unknown") == 0 ? RESTRICT_PEER_PERM : RESTRICT_PEER_OK;
	int	rs = q->reverse_status ? q->reverse_status
		     : strcmp(q->reverse_name ? q->reverse_name : "unknown", "unknown") == 0
		       ? RESTRICT_PEER_PERM : RESTRICT_PEER_OK;
	const char *rev = q->reverse_name ? q->reverse_name : "unknown";
	int	status;

	switch (el->op) {
	case OP_UNKNOWN_CLIENT:
		if (ns == RESTRICT_PEER_OK)
			return RS_DUNNO;
		return ev_reject(e, E_POLICY, RPL_ACL_UNKNOWN_CLIENT,
				 ns >= RESTRICT_PEER_PERM ? e->p->unk_client_code : 450, "4.7.25",
				 q->addr);
	case OP_UNKNOWN_REVERSE:
		if (rs == RESTRICT_PEER_OK)
			return RS_DUNNO;
		return ev_reject(e, E_POLICY, RPL_ACL_UNKNOWN_REVERSE,
				 rs == RESTRICT_PEER_PERM ? e->p->unk_client_code : 450, "4.7.1",
				 q->addr);
	case OP_UNKNOWN_HELO:
		return ev_helo_name(e, ev_unknown_hostname);
	case OP_UNKNOWN_SENDER_DOMAIN:
		return q->sender && *q->sender ? ev_unknown_address(e, q->sender, "Sender address")
		       : RS_DUNNO;
	case OP_UNKNOWN_RCPT_DOMAIN:
		return q->recipient ? ev_unknown_address(e, q->recipient, "Recipient address")
		       : RS_DUNNO;
	case OP_RBL_CLIENT:
		return ev_reject_dnsxl(e, el, NULL, "Client host");
	case OP_MAPS_RBL:
		ev_log(e, true, "support for restriction \"reject_maps_rbl\" will be removed from "
		       "%s; use \"reject_rbl_client domain-name\" instead", "mxgate");
		for (size_t i = 0; i < e->p->nmaps_rbl_domains; i++) {
			struct relem x = { .op = OP_RBL_CLIENT, .name = el->name,
					   .domain = e->p->maps_rbl_domains[i] };

			if ((status = ev_reject_dnsxl(e, &x, NULL, "Client host")) != RS_DUNNO)
				return status;
		}
		return RS_DUNNO;
	case OP_DNSWL_CLIENT:
		return ev_permit_dnsxl(e, el, NULL, "Client host");
	case OP_RHSWL_CLIENT:
		return strcasecmp(q->name, "unknown") != 0
		       ? ev_permit_dnsxl(e, el, q->name, "Client host") : RS_DUNNO;
	case OP_RHSBL:
		switch (el->kind) {
		case AK_CLIENT:
			return strcasecmp(q->name, "unknown") != 0
			       ? ev_reject_dnsxl(e, el, q->name, "Client host") : RS_DUNNO;
		case AK_REVERSE:
			return strcasecmp(rev, "unknown") != 0
			       ? ev_reject_dnsxl(e, el, rev, "Unverified Client host") : RS_DUNNO;
		case AK_HELO:
			return q->helo ? ev_reject_dnsxl(e, el, q->helo, "Helo command") : RS_DUNNO;
		case AK_SENDER:
			return q->sender && *q->sender
			       ? ev_reject_dnsxl(e, el, q->sender, "Sender address") : RS_DUNNO;
		default:
			return q->recipient
			       ? ev_reject_dnsxl(e, el, q->recipient, "Recipient address") : RS_DUNNO;
		}
	case OP_SERVER_ACCESS:
		switch (el->kind) {
		case AK_CLIENT:
			if (strcasecmp(q->name, "unknown") == 0)
				return RS_DUNNO;
			status = ev_server_access(e, el, q->name, q->namaddr, "Client host");
			return ev_forbid_ok(e, el, status, q->name);
		case AK_REVERSE:
			if (strcasecmp(rev, "unknown") == 0)
				return RS_DUNNO;
			status = ev_server_access(e, el, rev, rev, "Unverified Client host");
			return ev_forbid_ok(e, el, status, rev);
		case AK_HELO:
			if (q->helo == NULL)
				return RS_DUNNO;
			status = ev_server_access(e, el, q->helo, q->helo, "Helo command");
			return ev_forbid_ok(e, el, status, q->helo);
		case AK_SENDER:
			if (q->sender == NULL || *q->sender == '\0')
				return RS_DUNNO;
			status = ev_server_access(e, el, q->sender, q->sender, "Sender address");
			return ev_forbid_ok(e, el, status, q->sender);
		default:
			if (q->recipient == NULL || *q->recipient == '\0')
				return RS_DUNNO;
			status = ev_server_access(e, el, q->recipient, q->recipient,
						  "Recipient address");
			return ev_forbid_ok(e, el, status, q->recipient);
		}
	default:
		return RS_DUNNO;
	}
}

/* ---- generic_checks() ---- */

static int
ev_elem(struct ev *e, const struct rlist *l, size_t i, const char *rn, const char *rc)
{
	const struct relem *el = &l->v[i];
	const struct restrict_req *q = e->q;
	const char *next = i + 1 < l->n ? l->v[i + 1].name : NULL;
	int	status = RS_DUNNO, own;

	switch (el->op) {
	case OP_ERROR:
		ev_log(e, true, "%s", el->error);
		return ev_abort_config(e);
	case OP_PERMIT:
		status = ev_permit(e, el->name, rc, rn, NULL);
		if (next)
			ev_log(e, true, "restriction `%s' after `%s' is ignored", next, el->name);
		return status;
	case OP_DEFER:
	case OP_REJECT:
		status = el->op == OP_DEFER
			 ? ev_reject(e, E_POLICY, RPL_ACL_TRY_AGAIN, e->p->defer_code, "4.3.2", rn, rc)
			 : ev_reject(e, E_POLICY, RPL_ACL_DENIED, e->p->reject_code, "5.7.1", rn, rc);
		if (next && e->warn_if_reject == 0)
			ev_log(e, true, "restriction `%s' after `%s' is ignored", next, el->name);
		return status;
	case OP_UNAUTH_PIPELINING:
		if (q->ill_pipelining)
			status = ev_reject(e, E_PROTOCOL, RPL_ACL_PIPELINING, 503, "5.5.0", rn, rc);
		return status;
	case OP_PLAINTEXT:
		if (q->tls_protocol != NULL)
			return status;
		return ev_reject(e, E_POLICY, RPL_ACL_PLAINTEXT, e->p->plaintext_code, "4.7.1");
	case OP_DEFER_IF_PERMIT:
		return EV_DEFER_IF_PERMIT(e, E_POLICY, RPL_ACL_DEFER_IF_PERMIT, 450, "4.7.0", rn, rc);
	case OP_DEFER_IF_REJECT:
		return ev_defer_if(e, &e->dir, E_POLICY, RPL_ACL_DEFER_IF_REJECT, 450, "4.7.0", rn, rc);
	case OP_SLEEP:
		if (e->sleeps++ >= q->sleeps_done) {
			e->out->sleep = el->num;
			return RS_SLEEP;
		}
		return RS_DUNNO;
	case OP_MYNETWORKS:
		if (e->p->mynetworks && addrlist_match(e->p->mynetworks, q->name, q->sa))
			return ev_permit(e, el->name, "Client host", q->namaddr, NULL);
		return RS_DUNNO;
	case OP_NEVER:
	case OP_WARN_IF_REJECT:
		return RS_DUNNO;
	case OP_ACCESS:
		return ev_access(e, el, el->kind, rc);
	case OP_ACCESS_DEF:
		return ev_access(e, el, e->def_acl, rc);
	case OP_INVALID_HELO:
		return ev_helo_name(e, ev_invalid_hostname);
	case OP_NON_FQDN_HELO:
		return ev_helo_name(e, ev_non_fqdn_hostname);
	case OP_NON_FQDN_SENDER:
		return q->sender && *q->sender ? ev_non_fqdn_address(e, q->sender, "Sender address")
		       : RS_DUNNO;
	case OP_NON_FQDN_RCPT:
		return q->recipient ? ev_non_fqdn_address(e, q->recipient, "Recipient address")
		       : RS_DUNNO;
	case OP_UNLISTED_SENDER:
		return q->sender && *q->sender ? ev_sender_maps(e) : RS_DUNNO;
	case OP_UNLISTED_RCPT:
		return q->recipient && *q->recipient ? ev_rcpt_maps(e) : RS_DUNNO;
	case OP_UNVERIFIED_RCPT:
		return q->recipient && *q->recipient ? ev_unverified_rcpt(e) : RS_DUNNO;
	case OP_PERMIT_AUTH_DEST:
	case OP_REJECT_UNAUTH_DEST:
	case OP_DEFER_UNAUTH_DEST:
		if (q->recipient == NULL)
			return RS_DUNNO;
		if ((own = ev_own_rcpt(e)) == RS_BLOCK)
			return RS_BLOCK;
		if (el->op == OP_PERMIT_AUTH_DEST)
			return own ? ev_permit(e, el->name, "Recipient address", q->recipient, NULL)
			       : RS_DUNNO;
		if (own)
			return RS_DUNNO;
		return el->op == OP_REJECT_UNAUTH_DEST
		       ? ev_reject(e, E_POLICY, RPL_RELAY_DENIED, e->p->relay_code, "5.7.1",
				   q->recipient)
		       : ev_reject(e, E_POLICY, RPL_RELAY_DENIED, e->p->relay_code - 100, "4.7.1",
				   q->recipient);
	case OP_MULTI_BOUNCE:
		if (q->sender && *q->sender == '\0'
		    && q->rcpt_count > (size_t)(strcmp(q->where, "RCPT") != 0))
			status = ev_reject(e, E_POLICY, RPL_ACL_MULTI_BOUNCE, e->p->multi_bounce_code,
					   "5.5.3", rn, rc);
		return status;
	case OP_LOGIN_AUTH:
	case OP_LOGIN_UNAUTH:
	case OP_LOGIN_KNOWN:
	case OP_SASL_ACCESS:
		if (!e->p->sasl_enable) {
			ev_log(e, true, "restriction `%s' ignored: no SASL support", el->name);
			return RS_DUNNO;
		}
		/* nobody is logged in on mxgate */
		if (el->op == OP_LOGIN_AUTH || el->op == OP_SASL_ACCESS)
			return RS_DUNNO;
		return ev_login_unauth(e);
	case OP_CLASS:
		return ev_list(e, el->cls, rn, rc);
	case OP_POLICY:
		return ev_policy(e, el, rn, rc);
	case OP_UNKNOWN_CLIENT:
	case OP_UNKNOWN_REVERSE:
	case OP_UNKNOWN_HELO:
	case OP_UNKNOWN_SENDER_DOMAIN:
	case OP_UNKNOWN_RCPT_DOMAIN:
	case OP_RBL_CLIENT:
	case OP_DNSWL_CLIENT:
	case OP_RHSBL:
	case OP_RHSWL_CLIENT:
	case OP_MAPS_RBL:
	case OP_SERVER_ACCESS:
		return ev_dns_elem(e, el);
	}
	return RS_DUNNO;
}

static int
ev_list(struct ev *e, const struct rlist *l, const char *rn, const char *rc)
{
	int	saved = e->recursion++;
	int	status = RS_DUNNO;

	if (e->recursion > RESTRICT_RECURSION_MAX + 1) {
		ev_log(e, true, "restriction classes nest deeper than %d", RESTRICT_RECURSION_MAX);
		e->recursion = saved;
		return ev_abort_config(e);
	}
	for (size_t i = 0; i < l->n; i++) {
		if (e->st->discard)
			break;
		if (l->v[i].op == OP_WARN_IF_REJECT) {
			if (e->warn_if_reject == 0)
				e->warn_if_reject = e->recursion;
			continue;
		}
		status = ev_elem(e, l, i, rn, rc);
		if (RS_STOP(status))
			break;
		if (e->warn_if_reject >= e->recursion)
			e->warn_if_reject = 0;
		if (status != RS_DUNNO)
			break;
		if (e->st->dip.active && e->dir.active)
			break;
	}
	e->recursion = saved;
	if (e->warn_if_reject >= e->recursion)
		e->warn_if_reject = 0;
	return status;
}

/* ---- the stages (smtpd_check_client() and friends) ---- */

static void
ev_reset(struct ev *e)
{
	e->recursion = 0;
	e->warn_if_reject = 0;
	defer_clear(&e->dir);
}

static int
ev_run(struct ev *e, int list, const char *rn, const char *rc, enum akind def)
{
	e->def_acl = def;
	return e->p->lists[list].n ? ev_list(e, &e->p->lists[list], rn, rc) : RS_DUNNO;
}

/* The deferral a permit turns into (end of RCPT, DATA, END-OF-DATA). */
static int
ev_defer_permit(struct ev *e, int status)
{
	struct restrict_defer *d = &e->st->dip;

	if (status != RS_REJECT && !RS_STOP(status) && d->active)
		status = ev_reject(e, d->cls, RPL_ACL_RAW, d->code, d->dsn, d->reason ? d->reason : "");
	return status;
}

static int
stage_client(struct ev *e)
{
	int	status;

	if (e->q->name == NULL || e->q->addr == NULL)
		return RS_DUNNO;
	e->st->dip.active = false;
	ev_reset(e);
	status = ev_run(e, L_CLIENT, e->q->namaddr, "Client host", AK_CLIENT);
	e->st->dip_client = e->st->dip.active;
	return status;
}

static int
stage_helo(struct ev *e)
{
	int	status;

	if (e->q->helo == NULL)
		return RS_DUNNO;
	e->st->dip.active = e->st->dip_client;
	ev_reset(e);
	status = ev_run(e, L_HELO, e->q->helo, "Helo command", AK_HELO);
	e->st->dip_helo = e->st->dip.active;
	return status;
}

static int
stage_sender(struct ev *e)
{
	int	status;

	if (e->q->sender == NULL)
		return RS_DUNNO;
	e->st->dip.active = e->st->dip_client || e->st->dip_helo;
	e->sender_checked = false;
	ev_reset(e);
	status = ev_run(e, L_SENDER, e->q->sender, "Sender address", AK_SENDER);
	e->st->dip_sender = e->st->dip.active;
	if (e->p->reject_unlisted_sender && status != RS_REJECT && !RS_STOP(status)
	    && !e->sender_checked && !e->st->discard && *e->q->sender)
		status = ev_sender_maps(e);
	return status;
}

static bool
failed(int status)
{
	return status == RS_REJECT || RS_STOP(status);
}

static int
stage_rcpt(struct ev *e)
{
	const struct restrict_policy *p = e->p;
	int	order[2], status = RS_DUNNO, own;

	e->rcpt_checked = false;
	if (strcasecmp(e->q->recipient, "postmaster") == 0)
		return ev_resolve_rcpt(e);
	if (p->delay_reject) {
		if (failed(status = stage_client(e)) || failed(status = stage_helo(e))
		    || failed(status = stage_sender(e)))
			return status;
	}
	e->st->dip.active = e->st->dip_sender;
	ev_reset(e);
	order[0] = p->relay_first ? L_RELAY : L_RCPT;
	order[1] = p->relay_first ? L_RCPT : L_RELAY;
	for (int n = 0; n < 2; n++) {
		status = ev_run(e, order[n], e->q->recipient, "Recipient address", AK_RECIPIENT);
		if (RS_STOP(status))
			return status;
		/* mxgate never relays: a permit for a recipient that is not ours is a refusal */
		if (status == RS_OK && !e->st->discard) {
			if ((own = ev_own_rcpt(e)) == RS_BLOCK)
				return RS_BLOCK;
			if (!own)
				status = ev_reject(e, E_POLICY, RPL_RELAY_DENIED, p->relay_code, "5.7.1",
						   e->q->recipient);
		}
		if (status == RS_REJECT)
			break;
	}
	status = ev_defer_permit(e, status);
	if (failed(status) || e->st->discard)
		return status;
	if ((own = ev_own_rcpt(e)) == RS_BLOCK)
		return RS_BLOCK;
	if (!own) {
		ev_reset(e);
		return ev_reject(e, E_POLICY, RPL_RELAY_DENIED, p->relay_code, "5.7.1",
				 e->q->recipient);
	}
	/* always: mxgate cannot store mail for an address it does not know */
	if (!e->rcpt_checked)
		status = ev_rcpt_maps(e);
	return status;
}

static int
stage_data(struct ev *e, int list, const char *rn, const char *rc)
{
	int	status;

	e->st->dip.active = false;
	ev_reset(e);
	status = ev_run(e, list, rn, rc, AK_NONE);
	return ev_defer_permit(e, status);
}

void
restrict_eval(const struct restrict_policy *p, const struct restrict_req *q,
	      struct restrict_state *st, struct restrict_out *out)
{
	struct ev e = { .p = p, .q = q, .st = st, .out = out };
	int	status = RS_DUNNO;

	switch (q->stage) {
	case RESTRICT_CLIENT:
		status = stage_client(&e);
		break;
	case RESTRICT_HELO:
		status = stage_helo(&e);
		break;
	case RESTRICT_SENDER:
		status = stage_sender(&e);
		break;
	case RESTRICT_RCPT:
		status = stage_rcpt(&e);
		break;
	case RESTRICT_DATA:
		status = stage_data(&e, L_DATA, "DATA", "Data command");
		break;
	case RESTRICT_EOD:
		status = stage_data(&e, L_EOD, "END-OF-MESSAGE", "End-of-data");
		break;
	}
	defer_clear(&e.dir);
	switch (status) {
	case RS_REJECT:
	case RS_ABORT:
		out->verdict = RESTRICT_REJECT;
		break;
	case RS_SLEEP:
		out->verdict = RESTRICT_SLEEP;
		break;
	case RS_BLOCK:
		out->verdict = RESTRICT_WOULD_BLOCK;
		break;
	case RS_ASK:
		out->verdict = RESTRICT_ASK;
		break;
	default:
		out->verdict = RESTRICT_PASS;
		break;
	}
	if (out->verdict != RESTRICT_REJECT) {
		free(out->reply);
		out->reply = NULL;
	}
}

/* ---- on a pool ---- */

struct restrict_job {
	struct restrict_policy *policy;
	struct restrict_req req;
	char   *strs[17];		/* req's strings, owned */
	struct sockaddr_storage sa;
	struct restrict_state st;
	struct restrict_out out;
	struct restrict_answers *answers;	/* a reference: req.answers */
	restrict_cb *cb;		/* NULL: cancelled */
	void   *ctx;
};

static void
restrict_job_work(void *arg)
{
	struct restrict_job *j = arg;

	restrict_eval(j->policy, &j->req, &j->st, &j->out);
}

static void
restrict_job_done(void *arg)
{
	struct restrict_job *j = arg;

	if (j->cb != NULL)
		j->cb(j->ctx, &j->out, &j->st);
	restrict_out_free(&j->out);
	restrict_state_free(&j->st);
	restrict_answers_free(&j->answers);
	restrict_free(&j->policy);
	for (size_t i = 0; i < sizeof(j->strs) / sizeof(j->strs[0]); i++)
		free(j->strs[i]);
	free(j);
}

static const char *
job_str(struct restrict_job *j, int i, const char *s)
{
	return j->strs[i] = s ? xstrdup(s) : NULL;
}

struct restrict_job *
restrict_start(const struct restrict_policy *p, struct workpool *pool, struct workpool *remote,
	       struct loop *l, const struct restrict_req *req, const struct restrict_state *st,
	       restrict_cb *cb, void *ctx)
{
	struct restrict_job *j;

	if (p->in_memory) {
		struct restrict_req q = *req;
		struct restrict_state s;
		struct restrict_out out = { 0 };

		q.try_only = true;
		restrict_state_copy(&s, st);
		restrict_eval(p, &q, &s, &out);
		if (out.verdict != RESTRICT_WOULD_BLOCK) {
			cb(ctx, &out, &s);
			restrict_out_free(&out);
			restrict_state_free(&s);
			return NULL;
		}
		restrict_out_free(&out);
		restrict_state_free(&s);
	}
	j = xcalloc(1, sizeof(*j));
	j->policy = restrict_ref(p);
	j->req = *req;
	j->req.try_only = false;
	j->req.name = job_str(j, 0, req->name);
	j->req.reverse_name = job_str(j, 1, req->reverse_name);
	j->req.addr = job_str(j, 2, req->addr);
	j->req.namaddr = job_str(j, 3, req->namaddr);
	j->req.helo = job_str(j, 4, req->helo);
	j->req.sender = job_str(j, 5, req->sender);
	j->req.recipient = job_str(j, 6, req->recipient);
	j->req.queue_id = job_str(j, 7, req->queue_id);
	j->req.where = job_str(j, 8, req->where);
	j->req.proto = job_str(j, 9, req->proto);
	j->req.client_port = job_str(j, 10, req->client_port);
	j->req.server_addr = job_str(j, 11, req->server_addr);
	j->req.server_port = job_str(j, 12, req->server_port);
	j->req.instance = job_str(j, 13, req->instance);
	j->req.stress = job_str(j, 14, req->stress);
	j->req.tls_protocol = job_str(j, 15, req->tls_protocol);
	j->req.tls_cipher = job_str(j, 16, req->tls_cipher);
	if (req->sa != NULL) {
		memcpy(&j->sa, req->sa, req->sa->sa_family == AF_INET6
		       ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
		j->req.sa = (struct sockaddr *)&j->sa;
	}
	restrict_state_copy(&j->st, st);
	j->answers = restrict_answers_ref((struct restrict_answers *)req->answers);
	j->cb = cb;
	j->ctx = ctx;
	workpool_submit(p->remote ? remote : pool, l, restrict_job_work, restrict_job_done, j);
	return j;
}

void
restrict_cancel(struct restrict_job *j)
{
	if (j != NULL)
		j->cb = NULL;
}
