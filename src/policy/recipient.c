/*
 * recipient: recipient classification for a receive-only MX.  See
 * recipient.h for the contract and for what was checked against Postfix 3.7.
 */
#include "policy/recipient.h"

#include "smtp/reply.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/conf.h"
#include "deliver/lmtp.h"
#include "log/log.h"
#include "policy/alias.h"
#include "policy/lookup_keys.h"
#include "policy/maps.h"
#include "policy/matchlist.h"
#include "util/buf.h"
#include "util/xalloc.h"

/*
 * Rewrites of sender-specified routing before we give up (relay denied).
 * Each rewrite shortens the address, so this only bounds the work per RCPT;
 * Postfix has no such limit (18 hops through our own domain were accepted).
 */
#define ROUTING_MAX_HOPS 64

/*
 * local(8) gives up on an alias that nests deeper than this ("alias
 * database loop"); mxgate counts forwards through virtual_alias_maps too.
 */
#define ALIAS_MAX_LEVEL 100

/* A transport as written in a parameter or a transport_maps value. */
enum tkind { TK_DEFAULT, TK_VIRTUAL, TK_LOCAL, TK_LMTP, TK_ERROR, TK_RETRY, TK_DISCARD };
struct tspec {
	enum tkind kind;
	char *nexthop;		/* "" when none */
};

struct recipient_policy {
	int refs;		/* atomics */
	struct matchlist *mydestination;
	struct matchlist *virtual_domains;
	char *myorigin;		/* lowercase, or NULL */
	struct maplist *local_maps;
	struct maplist *virtual_maps;
	struct maplist *uid_maps;
	struct maplist *gid_maps;
	struct maplist *valias_maps;	/* virtual_alias_maps */
	struct matchlist *valias_domains;
	struct maplist *alias_maps;
	long valias_recursion, valias_expansion, valias_addrlen;
	bool propagate_virtual;
	int alias_code;
	char *virtual_base;	/* as configured */
	long virtual_minimum_uid;
	char *delimiter;	/* NULL: no address extensions */
	bool remote;		/* a table is remote: recipient_policy_remote() */
	bool reject_unlisted;
	bool relay_defer;	/* defer_unauth_destination comes first */
	int local_code;
	int virtual_code;
	int relay_code;
	/* transports (recipient.h, "Transports") */
	struct maplist *transport_maps;
	struct tspec *vtr, *ltr, *mtr;	/* virtual_, local_, mailbox_transport */
};

/* LK_FAIL: a table could not answer (451 4.3.0); LK_CONFIG: it answered what it must
 * not, an empty value (451 4.3.5), as Postfix's DICT_ERR_RETRY and DICT_ERR_CONFIG. */
enum lookup { LK_NOTFOUND, LK_FOUND, LK_FAIL, LK_CONFIG };

#define LK_FAILED(lk) ((lk) == LK_FAIL || (lk) == LK_CONFIG)

/* ---- small helpers ---- */


static void lower_inplace(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

/* Lowercase copy without one trailing dot. */
static char *domain_norm(const char *d)
{
	char *r = xstrdup(d);
	size_t len = strlen(r);

	if (len > 0 && r[len - 1] == '.')
		r[len - 1] = '\0';
	lower_inplace(r);
	return r;
}

/* Where create reports its problems (see recipient_policy_create_report). */
struct create_report {
	recipient_problem_fn *fn;
	void *ctx;
	const char *param;	/* the parameter being opened */
	size_t problems;
};

static void create_problem(struct create_report *cr, const char *item, const char *why)
{
	cr->fn(cr->ctx, cr->param, item, why);
	cr->problems++;
}

/* maps_problem_fn: a table of cr->param that cannot be opened. */
static void create_map_problem(void *ctx, const char *spec, const char *why)
{
	create_problem(ctx, spec, why);
}

/* matchlist_problem_fn: an element of cr->param's list that does not open. */
static void create_list_problem(void *ctx, const char *item, const char *why)
{
	create_problem(ctx, item, why);
}

/*
 * recipient_try_resolve(): while set on this thread, a table that may block
 * is not asked; the lookup fails and rcpt_would_block says why, so that the
 * caller asks again from a pool thread.
 */
static __thread bool rcpt_try_only;
static __thread bool rcpt_would_block;

static enum lookup domlist_match(const struct matchlist *dl, const char *domain)
{
	switch (matchlist_match(dl, domain, rcpt_try_only)) {
	case ML_MATCH:
		return LK_FOUND;
	case ML_NOMATCH:
		return LK_NOTFOUND;
	case ML_WOULD_BLOCK:
		rcpt_would_block = true;
		return LK_FAIL;
	default:
		return LK_FAIL;
	}
}

static void open_maps(struct maplist **lp, struct create_report *cr, char *const *specs,
		      size_t n)
{
	*lp = maplist_open_report(specs, n, create_map_problem, cr);
	maplist_set_title(*lp, cr->param);
}

static void check_code(struct create_report *cr, int code)
{
	if (code < 400 || code > 599) {
		char *why = xasprintf("bad reply code %d: need 4xx or 5xx", code);

		create_problem(cr, NULL, why);
		free(why);
	}
}

/*
 * "name:nexthop", "name:", ":nexthop", "name" (transport(5)) into *t.  NULL,
 * or why not (malloc'd), naming the transport.
 */
static char *tspec_parse(const char *value, struct tspec *t)
{
	const char *colon = strchr(value, ':');
	size_t nl = colon ? (size_t)(colon - value) : strlen(value);
	const char *nh = colon ? colon + 1 : "";
	static const struct { const char *name; enum tkind kind; } names[] = {
		{ "virtual", TK_VIRTUAL }, { "local", TK_LOCAL }, { "lmtp", TK_LMTP },
		{ "error", TK_ERROR }, { "retry", TK_RETRY }, { "discard", TK_DISCARD },
	};

	t->kind = TK_DEFAULT;
	t->nexthop = NULL;
	while (nl > 0 && (value[0] == ' ' || value[0] == '\t')) {
		value++;
		nl--;
	}
	if (nl == 0) {
		t->nexthop = xstrdup(nh);
		return NULL;
	}
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i].name) == nl && strncasecmp(value, names[i].name, nl) == 0)
			t->kind = names[i].kind;
	if (t->kind == TK_DEFAULT) {
		char *e = log_escape_dup(value, 200);
		char *why;

		if ((nl == 4 && strncasecmp(value, "smtp", 4) == 0)
		    || (nl == 5 && strncasecmp(value, "relay", 5) == 0))
			why = xasprintf("transport \"%s\": mxgate never relays mail to another"
					" server; use lmtp:, virtual:, local:, error: or discard:", e);
		else
			why = xasprintf("transport \"%s\" is not one mxgate implements (lmtp,"
					" virtual, local, error, retry, discard); master.cf pipe"
					" services are not run", e);
		free(e);
		return why;
	}
	if (t->kind == TK_LMTP) {
		const char *prob = lmtp_nexthop_problem(nh);

		if (prob != NULL) {
			char *e = log_escape_dup(value, 200);
			char *why = xasprintf("transport \"%s\": %s", e, prob);

			free(e);
			return why;
		}
	}
	t->nexthop = xstrdup(nh);
	return NULL;
}

static void tspec_free(struct tspec **tp)
{
	if (*tp != NULL)
		free((*tp)->nexthop);
	free(*tp);
	*tp = NULL;
}

/* A transport parameter: *out, or a problem reported; allowed: a mask of 1 << kind. */
static void open_transport(struct create_report *cr, const char *value, unsigned allowed,
			   struct tspec **out)
{
	struct tspec t;
	char *why;

	*out = NULL;
	if (value == NULL || *value == '\0')
		return;
	why = tspec_parse(value, &t);
	if (why == NULL && !(allowed & (1u << t.kind))) {
		free(t.nexthop);
		why = xasprintf("transport \"%s\" cannot be used here", value);
	}
	if (why != NULL) {
		create_problem(cr, value, why);
		free(why);
		return;
	}
	*out = xcalloc(1, sizeof(**out));
	**out = t;
}

struct recipient_conf *recipient_conf_from_view(const struct conf_view *cf)
{
	struct recipient_conf *rc = xcalloc(1, sizeof(*rc));

#define RC_LIST(field, param) rc->field = conf_list(cf, param, &rc->n_##field)
	RC_LIST(mydestination, P_mydestination);
	RC_LIST(local_recipient_maps, P_local_recipient_maps);
	RC_LIST(virtual_mailbox_domains, P_virtual_mailbox_domains);
	RC_LIST(virtual_mailbox_maps, P_virtual_mailbox_maps);
	RC_LIST(virtual_uid_maps, P_virtual_uid_maps);
	RC_LIST(virtual_gid_maps, P_virtual_gid_maps);
	RC_LIST(relay_restrictions, P_smtpd_relay_restrictions);
	RC_LIST(recipient_restrictions, P_smtpd_recipient_restrictions);
	RC_LIST(virtual_alias_maps, P_virtual_alias_maps);
	RC_LIST(virtual_alias_domains, P_virtual_alias_domains);
	RC_LIST(alias_maps, P_alias_maps);
	RC_LIST(transport_maps, P_transport_maps);
#undef RC_LIST
	rc->virtual_transport = conf_str(cf, P_virtual_transport);
	rc->local_transport = conf_str(cf, P_local_transport);
	rc->mailbox_transport = conf_str(cf, P_mailbox_transport);
	{
		size_t n;
		char *const *prop = conf_list(cf, P_propagate_unmatched_extensions, &n);

		for (size_t i = 0; i < n; i++)
			if (strcasecmp(prop[i], "virtual") == 0)
				rc->propagate_virtual = 1;
	}
	rc->virtual_alias_recursion_limit = conf_int(cf, P_virtual_alias_recursion_limit);
	rc->virtual_alias_expansion_limit = conf_int(cf, P_virtual_alias_expansion_limit);
	rc->virtual_alias_address_length_limit = conf_int(cf, P_virtual_alias_address_length_limit);
	rc->unknown_alias_code = (int)conf_int(cf, P_unknown_virtual_alias_reject_code);
	rc->virtual_mailbox_base = conf_str(cf, P_virtual_mailbox_base);
	rc->myorigin = conf_str(cf, P_myorigin);
	rc->recipient_delimiter = conf_str(cf, P_recipient_delimiter);
	rc->virtual_minimum_uid = conf_int(cf, P_virtual_minimum_uid);
	/* always on: an unknown address cannot be stored, and mxgate cannot bounce (recipient.h) */
	rc->reject_unlisted_recipient = 1;
	rc->unknown_local_code = (int)conf_int(cf, P_unknown_local_recipient_reject_code);
	rc->unknown_virtual_code = (int)conf_int(cf, P_unknown_virtual_mailbox_reject_code);
	rc->relay_reject_code = (int)conf_int(cf, P_relay_domains_reject_code);
	return rc;
}

/* First of defer_unauth_destination / reject_unauth_destination wins. */
static int find_unauth(char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (strcasecmp(list[i], "defer_unauth_destination") == 0)
			return 1;
		if (strcasecmp(list[i], "reject_unauth_destination") == 0)
			return 0;
	}
	return -1;
}

/* ---- create / free ---- */

struct recipient_policy *recipient_policy_create_report(const struct recipient_conf *rc,
						       recipient_problem_fn *report, void *ctx)
{
	struct recipient_policy *p = xcalloc(1, sizeof(*p));
	struct create_report cr = { report, ctx, NULL, 0 };
	int defer;

	p->refs = 1;
#define PARAM(name) (cr.param = (name))
	PARAM("unknown_local_recipient_reject_code");
	check_code(&cr, rc->unknown_local_code);
	PARAM("unknown_virtual_mailbox_reject_code");
	check_code(&cr, rc->unknown_virtual_code);
	PARAM("relay_domains_reject_code");
	check_code(&cr, rc->relay_reject_code);
	PARAM("unknown_virtual_alias_reject_code");
	check_code(&cr, rc->unknown_alias_code ? rc->unknown_alias_code : 550);
	PARAM("mydestination");
	p->mydestination = matchlist_open(rc->mydestination, rc->n_mydestination,
					  create_list_problem, &cr);
	PARAM("virtual_mailbox_domains");
	p->virtual_domains = matchlist_open(rc->virtual_mailbox_domains,
					    rc->n_virtual_mailbox_domains, create_list_problem, &cr);
	PARAM("local_recipient_maps");
	open_maps(&p->local_maps, &cr, rc->local_recipient_maps, rc->n_local_recipient_maps);
	PARAM("virtual_mailbox_maps");
	open_maps(&p->virtual_maps, &cr, rc->virtual_mailbox_maps, rc->n_virtual_mailbox_maps);
	PARAM("virtual_uid_maps");
	open_maps(&p->uid_maps, &cr, rc->virtual_uid_maps, rc->n_virtual_uid_maps);
	PARAM("virtual_gid_maps");
	open_maps(&p->gid_maps, &cr, rc->virtual_gid_maps, rc->n_virtual_gid_maps);
	PARAM("virtual_alias_maps");
	open_maps(&p->valias_maps, &cr, rc->virtual_alias_maps, rc->n_virtual_alias_maps);
	PARAM("virtual_alias_domains");
	p->valias_domains = matchlist_open(rc->virtual_alias_domains, rc->n_virtual_alias_domains,
					   create_list_problem, &cr);
	PARAM("alias_maps");
	open_maps(&p->alias_maps, &cr, rc->alias_maps, rc->n_alias_maps);
	PARAM("transport_maps");
	open_maps(&p->transport_maps, &cr, rc->transport_maps, rc->n_transport_maps);
#define TK(k) (1u << (k))
	PARAM("virtual_transport");
	open_transport(&cr, rc->virtual_transport ? rc->virtual_transport : "virtual",
		       TK(TK_VIRTUAL) | TK(TK_LMTP) | TK(TK_ERROR) | TK(TK_RETRY) | TK(TK_DISCARD),
		       &p->vtr);
	PARAM("local_transport");
	open_transport(&cr, rc->local_transport ? rc->local_transport : "local",
		       TK(TK_LOCAL) | TK(TK_LMTP) | TK(TK_ERROR) | TK(TK_RETRY) | TK(TK_DISCARD),
		       &p->ltr);
	PARAM("mailbox_transport");
	open_transport(&cr, rc->mailbox_transport, TK(TK_LMTP), &p->mtr);
#undef TK
#undef PARAM
	if (cr.problems > 0) {
		recipient_policy_free(&p);
		return NULL;
	}
	if (rc->myorigin && *rc->myorigin)
		p->myorigin = domain_norm(rc->myorigin);
	p->virtual_base = xstrdup(rc->virtual_mailbox_base ? rc->virtual_mailbox_base : "");
	p->virtual_minimum_uid = rc->virtual_minimum_uid;
	if (rc->recipient_delimiter && *rc->recipient_delimiter)
		p->delimiter = xstrdup(rc->recipient_delimiter);
	p->reject_unlisted = rc->reject_unlisted_recipient != 0;
	p->remote = maplist_has_remote(matchlist_maps(p->mydestination))
		    || maplist_has_remote(matchlist_maps(p->virtual_domains))
		    || maplist_has_remote(p->local_maps) || maplist_has_remote(p->virtual_maps)
		    || maplist_has_remote(p->uid_maps) || maplist_has_remote(p->gid_maps)
		    || maplist_has_remote(p->valias_maps) || maplist_has_remote(p->alias_maps)
		    || maplist_has_remote(matchlist_maps(p->valias_domains))
		    || maplist_has_remote(p->transport_maps);
	/* 0: a recipient_conf filled by hand, before aliases existed: Postfix's defaults */
	p->valias_recursion = rc->virtual_alias_recursion_limit > 0
			      ? rc->virtual_alias_recursion_limit : 1000;
	p->valias_expansion = rc->virtual_alias_expansion_limit > 0
			      ? rc->virtual_alias_expansion_limit : 1000;
	p->valias_addrlen = rc->virtual_alias_address_length_limit > 0
			    ? rc->virtual_alias_address_length_limit : 1000;
	p->propagate_virtual = rc->propagate_virtual != 0;
	p->alias_code = rc->unknown_alias_code ? rc->unknown_alias_code : 550;
	p->local_code = rc->unknown_local_code;
	p->virtual_code = rc->unknown_virtual_code;
	p->relay_code = rc->relay_reject_code;
	/* smtpd_relay_restrictions are evaluated before smtpd_recipient_restrictions. */
	defer = find_unauth(rc->relay_restrictions, rc->n_relay_restrictions);
	if (defer < 0)
		defer = find_unauth(rc->recipient_restrictions, rc->n_recipient_restrictions);
	p->relay_defer = defer != 0;
	return p;
}

/* recipient_policy_create(): "param: why" of the first problem. */
static void create_first_problem(void *ctx, const char *param, const char *item,
				 const char *why)
{
	char **err_r = ctx;

	(void)item;
	if (*err_r == NULL)
		*err_r = xasprintf("%s: %s", param, why);
}

struct recipient_policy *recipient_policy_create(const struct recipient_conf *rc, char **err_r)
{
	*err_r = NULL;
	return recipient_policy_create_report(rc, create_first_problem, err_r);
}

struct recipient_policy *recipient_policy_ref(const struct recipient_policy *cp)
{
	struct recipient_policy *p = (struct recipient_policy *)cp;

	__atomic_fetch_add(&p->refs, 1, __ATOMIC_RELAXED);
	return p;
}

void recipient_policy_free(struct recipient_policy **pp)
{
	struct recipient_policy *p = *pp;

	*pp = NULL;
	if (p == NULL || __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	matchlist_free(&p->mydestination);
	matchlist_free(&p->virtual_domains);
	maplist_free(&p->local_maps);
	maplist_free(&p->virtual_maps);
	maplist_free(&p->uid_maps);
	maplist_free(&p->gid_maps);
	maplist_free(&p->valias_maps);
	matchlist_free(&p->valias_domains);
	maplist_free(&p->alias_maps);
	maplist_free(&p->transport_maps);
	tspec_free(&p->vtr);
	tspec_free(&p->ltr);
	tspec_free(&p->mtr);
	free(p->myorigin);
	free(p->virtual_base);
	free(p->delimiter);
	free(p);
	*pp = NULL;
}

bool recipient_policy_remote(const struct recipient_policy *p)
{
	return p->remote;
}

size_t recipient_policy_probe(const struct recipient_policy *p, recipient_problem_fn *report,
			      void *ctx)
{
	const struct {
		const char *param;
		const struct maplist *l;
	} lists[] = {
		{ "mydestination", matchlist_maps(p->mydestination) },
		{ "virtual_mailbox_domains", matchlist_maps(p->virtual_domains) },
		{ "local_recipient_maps", p->local_maps },
		{ "virtual_mailbox_maps", p->virtual_maps },
		{ "virtual_uid_maps", p->uid_maps },
		{ "virtual_gid_maps", p->gid_maps },
		{ "virtual_alias_maps", p->valias_maps },
		{ "virtual_alias_domains", matchlist_maps(p->valias_domains) },
		{ "alias_maps", p->alias_maps },
		{ "transport_maps", p->transport_maps },
	};
	size_t bad = 0;

	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		for (size_t k = 0; k < maplist_count(lists[i].l); k++) {
			const struct map *m = maplist_get(lists[i].l, k);
			char *why;

			if (map_probe(m, &why) < 0) {
				report(ctx, lists[i].param, map_spec(m), why);
				free(why);
				bad++;
			}
		}
	}
	return bad;
}

const char *recipient_policy_changed(const struct recipient_policy *p)
{
	const struct maplist *lists[] = {
		matchlist_maps(p->mydestination), matchlist_maps(p->virtual_domains),
		p->local_maps, p->virtual_maps, p->uid_maps, p->gid_maps,
		p->valias_maps, matchlist_maps(p->valias_domains), p->alias_maps,
		p->transport_maps,
	};
	const char *spec;

	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
		if ((spec = maplist_changed(lists[i])) != NULL)
			return spec;
	return NULL;
}

bool recipient_try_resolve(const struct recipient_policy *p, const char *addr,
			   struct rcpt_result *r)
{
	rcpt_try_only = true;
	rcpt_would_block = false;
	recipient_resolve(p, addr, r);
	rcpt_try_only = false;
	if (!rcpt_would_block)
		return true;
	rcpt_result_free(r);
	return false;
}

bool recipient_policy_has_indexed(const struct recipient_policy *p)
{
	return maplist_has_indexed(matchlist_maps(p->mydestination))
	       || maplist_has_indexed(matchlist_maps(p->virtual_domains)) || maplist_has_indexed(p->local_maps)
	       || maplist_has_indexed(p->virtual_maps) || maplist_has_indexed(p->uid_maps)
	       || maplist_has_indexed(p->gid_maps) || maplist_has_indexed(p->valias_maps)
	       || maplist_has_indexed(matchlist_maps(p->valias_domains))
	       || maplist_has_indexed(p->alias_maps);
}

/* ---- results ---- */

static void result_reply(struct rcpt_result *r, enum rcpt_verdict v, int code, char *reply,
			 char *reason)
{
	r->verdict = v;
	r->code = code;
	r->reply = reply;
	r->reason = reason;
}

/* The table has logged why (map_lookup(), maplist_lookup()), as Postfix's do. */
static void result_tempfail_lookup(struct rcpt_result *r, const char *addr, enum lookup lk)
{
	if (lk == LK_CONFIG)
		result_reply(r, RCPT_TEMPFAIL, 451, reply_string(RPL_CONFIG_ERROR), NULL);
	else
		result_reply(r, RCPT_TEMPFAIL, 451, reply_string(RPL_LOOKUP_FAILURE, addr), NULL);
}

/* The sender sees Postfix's wording; the log gets why. */
static void result_config_error(struct rcpt_result *r, char *reason)
{
	result_reply(r, RCPT_TEMPFAIL, 451, reply_string(RPL_CONFIG_ERROR), reason);
}

static void targets_free(struct rcpt_result *r)
{
	for (size_t i = 0; i < r->ntargets; i++) {
		free(r->targets[i].address);
		free(r->targets[i].user);
		free(r->targets[i].home);
		free(r->targets[i].maildir);
		free(r->targets[i].transport);
		for (size_t k = 0; k < r->targets[i].nvia; k++)
			free(r->targets[i].via[k]);
		free(r->targets[i].via);
	}
	free(r->targets);
	r->targets = NULL;
	r->ntargets = 0;
}

void rcpt_result_free(struct rcpt_result *r)
{
	free(r->reply);
	free(r->reason);
	free(r->user);
	free(r->home);
	free(r->maildir);
	free(r->warning);
	targets_free(r);
	r->reply = r->reason = r->user = r->home = r->maildir = r->warning = NULL;
}

/* ---- lookups in Postfix's order ---- */

static size_t base_len(const struct recipient_policy *p, const char *lp)
{
	return lookup_keys_base_len(p->delimiter, lp);
}

/*
 * Keys: user+ext@domain, user@domain, [user+ext, user when local], @domain
 * (recipient.h).  local: domain is in mydestination or is myorigin, as
 * Postfix's MA_FIND_LOCALPART_IF_LOCAL; a virtual domain that is also myorigin
 * gets the bare keys too (observed with Postfix 3.7: "carol" in
 * virtual_mailbox_maps matched carol@virt.test with myorigin = virt.test).
 * domain NULL (bare local part, no myorigin) leaves out the keys with '@'.
 */
/* domain (normalised) is myorigin. */
static bool is_myorigin(const struct recipient_policy *p, const char *domain)
{
	return domain != NULL && p->myorigin != NULL && strcmp(domain, p->myorigin) == 0;
}

static enum lookup addr_find(const struct recipient_policy *p, const struct maplist *l,
			     const char *lp, const char *domain, bool local, char **value_r,
			     const struct map **found_in_r)
{
	struct lookup_keys ks;
	enum map_status st;

	if (value_r)
		*value_r = NULL;
	if (rcpt_try_only && !maplist_in_memory(l)) {
		rcpt_would_block = true;
		return LK_FAIL;
	}
	lookup_keys_virtual(&ks, p->delimiter, lp, domain, local);
	st = lookup_keys_find(l, &ks, value_r, NULL, found_in_r);
	lookup_keys_free(&ks);
	return st == MAP_FOUND ? LK_FOUND : st == MAP_FAIL ? LK_FAIL
	       : st == MAP_CONFIG ? LK_CONFIG : LK_NOTFOUND;
}

/* ---- local ---- */

static bool is_special_local(const char *lp)
{
	return *lp == '\0' || strcasecmp(lp, "postmaster") == 0
	       || strcasecmp(lp, "mailer-daemon") == 0;
}

/* A local part that can serve as a user name: never a path. */
static char *safe_user(const char *lp, size_t len)
{
	char *u;

	if (len == 0 || memchr(lp, '/', len) != NULL || (len == 1 && lp[0] == '.')
	    || (len == 2 && lp[0] == '.' && lp[1] == '.'))
		return NULL;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)lp[i] < 0x20 || lp[i] == 0x7f)
			return NULL;
	u = xstrndup(lp, len);
	lower_inplace(u);
	return u;
}

/* "name:pw:uid:gid:gecos:dir:shell" → user, uid, gid, home. */
static bool parse_passwd(const char *v, struct rcpt_result *r)
{
	const char *f[7];
	size_t flen[7];
	const char *s = v;
	char *end, *num;
	unsigned long long uid, gid;

	for (int i = 0; i < 7; i++) {
		const char *c = strchr(s, ':');

		f[i] = s;
		if (i < 6) {
			if (c == NULL)
				return false;
			flen[i] = (size_t)(c - s);
			s = c + 1;
		} else {
			flen[i] = strlen(s);
		}
	}
	num = xstrndup(f[2], flen[2]);
	errno = 0;
	uid = strtoull(num, &end, 10);
	if (*num == '\0' || *end != '\0' || errno || uid > (uid_t)-1 - 1) {
		free(num);
		return false;
	}
	free(num);
	num = xstrndup(f[3], flen[3]);
	gid = strtoull(num, &end, 10);
	if (*num == '\0' || *end != '\0' || errno || gid > (gid_t)-1 - 1) {
		free(num);
		return false;
	}
	free(num);
	r->user = xstrndup(f[0], flen[0]);
	r->home = xstrndup(f[5], flen[5]);
	r->uid = (uid_t)uid;
	r->gid = (gid_t)gid;
	return true;
}

/* target: an alias target, which must be a known user whatever
 * smtpd_reject_unlisted_recipient says (local(8) would bounce it). */
static void resolve_local(const struct recipient_policy *p, const char *addr, const char *lp,
			  const char *domain, bool target, struct rcpt_result *r)
{
	const struct map *found_in = NULL;
	char *value = NULL;
	enum lookup lk = LK_NOTFOUND;
	bool checked = (p->reject_unlisted || target) && !maplist_empty(p->local_maps);

	if (!maplist_empty(p->local_maps))
		lk = addr_find(p, p->local_maps, lp, domain, true, &value, &found_in);
	if (LK_FAILED(lk)) {
		result_tempfail_lookup(r, addr, lk);
		return;
	}
	if (lk == LK_NOTFOUND && checked && !is_special_local(lp)) {
		int c = p->local_code;

		result_reply(r, RCPT_UNKNOWN_LOCAL, c,
			     reply_string(RPL_UNKNOWN_LOCAL, c, c >= 500 ? "5.1.1" : "4.1.1", addr,
					  "Recipient address"),
			     NULL);
		return;
	}
	result_reply(r, RCPT_OK_LOCAL, 250, NULL, NULL);
	if (lk == LK_FOUND && strcmp(map_type_name(found_in), "unix") == 0) {
		if (!parse_passwd(value, r)) {
			char *e = log_escape_dup(lp, 100);

			rcpt_result_free(r);
			r->uid = (uid_t)-1;
			r->gid = (gid_t)-1;
			result_config_error(r, xasprintf("%s: malformed passwd entry for \"%s\"",
							 map_spec(found_in), e));
			free(e);
		}
	} else if (*lp == '\0' || strcasecmp(lp, "mailer-daemon") == 0) {
		r->user = xstrdup("postmaster");	/* where Postfix's local(8) ends up */
	} else {
		r->user = safe_user(lp, base_len(p, lp));
	}
	free(value);
}

/* ---- virtual ---- */

/*
 * Append the '/'-separated components of path to out, each preceded by '/',
 * dropping empty and "." components.  Returns false for "..", control bytes,
 * or nothing left when must_have is set.
 */
static bool append_components(struct buf *out, const char *path, bool must_have)
{
	const char *s = path;
	int n = 0;

	for (const char *q = path; *q; q++)
		if ((unsigned char)*q < 0x20 || *q == 0x7f)
			return false;
	while (*s) {
		size_t len = strcspn(s, "/");

		if (len == 2 && s[0] == '.' && s[1] == '.')
			return false;
		if (len > 0 && !(len == 1 && s[0] == '.')) {
			buf_putc(out, '/');
			buf_append(out, s, len);
			n++;
		}
		s += len;
		if (*s == '/')
			s++;
	}
	return !must_have || n > 0;
}

static enum lookup id_find(const struct recipient_policy *p, const struct maplist *l,
			   const char *lp, const char *domain, unsigned long long *id_r,
			   bool *bad_r)
{
	char *value = NULL, *end;
	enum lookup lk = addr_find(p, l, lp, domain, is_myorigin(p, domain), &value, NULL);

	*bad_r = false;
	if (lk == LK_FOUND) {
		const char *v = value;

		while (*v == ' ' || *v == '\t')
			v++;
		errno = 0;
		*id_r = strtoull(v, &end, 10);
		if (*v < '0' || *v > '9' || *end != '\0' || errno || *id_r >= UINT32_MAX)
			*bad_r = true;
	}
	free(value);
	return lk;
}

/* lookup_only: the address must be in virtual_mailbox_maps; its value is not used (lmtp:). */
static void resolve_virtual(const struct recipient_policy *p, const char *addr, const char *lp,
			    const char *domain, bool lookup_only, struct rcpt_result *r)
{
	struct buf path = BUF_INIT;
	unsigned long long uid = 0, gid = 0;
	char *value = NULL, *e = NULL;
	enum lookup lk;
	bool bad;
	size_t vlen;

	lk = addr_find(p, p->virtual_maps, lp, domain, is_myorigin(p, domain), &value, NULL);
	if (LK_FAILED(lk)) {
		result_tempfail_lookup(r, addr, lk);
		return;
	}
	if (lk == LK_NOTFOUND) {
		int c = p->virtual_code;

		result_reply(r, RCPT_UNKNOWN_VIRTUAL, c,
			     reply_string(RPL_UNKNOWN_VIRTUAL, c, c >= 500 ? "5.1.1" : "4.1.1", addr,
					  "Recipient address"),
			     NULL);
		return;
	}
	if (lookup_only) {
		result_reply(r, RCPT_OK_VIRTUAL, 250, NULL, NULL);
		goto out;
	}
	vlen = strlen(value);
	if (vlen == 0 || value[vlen - 1] != '/') {
		result_config_error(r, xasprintf("virtual_mailbox_maps: mailbox \"%s\" for %s is"
						 " mbox format, which mxgate does not deliver to;"
						 " end the path with / for a Maildir",
						 (e = log_escape_dup(value, 200)), domain));
		goto out;
	}
	if (p->virtual_base[0] != '/'
	    || !append_components(&path, p->virtual_base, false)) {
		result_config_error(r, xasprintf("virtual_mailbox_base \"%s\" is not an absolute"
						 " path without \"..\"",
						 (e = log_escape_dup(p->virtual_base, 200))));
		goto out;
	}
	if (!append_components(&path, value, true)) {
		result_config_error(r, xasprintf("virtual_mailbox_maps: unsafe mailbox path \"%s\""
						 " for a recipient in %s: it must stay under"
						 " virtual_mailbox_base",
						 (e = log_escape_dup(value, 200)), domain));
		goto out;
	}
	buf_putc(&path, '/');

	lk = id_find(p, p->uid_maps, lp, domain, &uid, &bad);
	if (LK_FAILED(lk)) {
		result_tempfail_lookup(r, addr, lk);
		goto out;
	}
	if (lk == LK_NOTFOUND || bad) {
		result_config_error(r, xasprintf("recipient in %s: %s uid in virtual_uid_maps",
						 domain, bad ? "bad" : "no"));
		goto out;
	}
	if (uid == 0 || (long long)uid < (long long)p->virtual_minimum_uid) {
		result_config_error(r, xasprintf("recipient in %s: bad uid %llu in virtual_uid_maps"
						 " (virtual_minimum_uid = %ld)",
						 domain, uid, p->virtual_minimum_uid));
		goto out;
	}
	lk = id_find(p, p->gid_maps, lp, domain, &gid, &bad);
	if (LK_FAILED(lk)) {
		result_tempfail_lookup(r, addr, lk);
		goto out;
	}
	if (lk == LK_NOTFOUND || bad || gid == 0) {
		result_config_error(r, xasprintf("recipient in %s: %s gid in virtual_gid_maps",
						 domain, lk == LK_NOTFOUND ? "no" : "bad"));
		goto out;
	}
	result_reply(r, RCPT_OK_VIRTUAL, 250, NULL, NULL);
	r->maildir = buf_steal(&path);
	r->uid = (uid_t)uid;
	r->gid = (gid_t)gid;
out:
	buf_free(&path);
	free(value);
	free(e);
}

/* ---- relay ---- */

static void resolve_relay(const struct recipient_policy *p, const char *addr, bool routed,
			  struct rcpt_result *r)
{
	int c = p->relay_defer ? 454 : p->relay_code;

	result_reply(r, RCPT_RELAY_DENIED, c,
		     reply_string(RPL_RELAY_DENIED, c, c >= 500 ? "5.7.1" : "4.7.1", addr),
		     xstrdup(routed ? "sender-specified routing is not allowed"
				    : "not a local or virtual mailbox domain; mxgate never relays"));
}

/* ---- aliases ---- */

/*
 * Where a domain goes, as Postfix's trivial-rewrite decides it: mydestination
 * first, then virtual_alias_domains, then virtual_mailbox_domains, with its
 * warning for a domain listed in two of them.
 */
enum dclass { DC_LOCAL, DC_ALIAS, DC_VIRTUAL, DC_OTHER, DC_FAIL };

/* One expansion of one RCPT: what it has found so far. */
struct expand {
	const struct recipient_policy *p;
	const char *rcpt;		/* as given, for replies */
	struct rcpt_result *r;
	int level;			/* alias nesting, ALIAS_MAX_LEVEL */
	bool done;			/* r holds a refusal: stop */
	struct alias_list includes;	/* :include: files read (Postfix reads each once) */
	struct buf warn;		/* warning lines */
	/*
	 * Delivered-To: the local(8) delivery under way (the address it was
	 * given, NULL outside one), and the ones that forwarded to here,
	 * oldest first (case-folded).
	 */
	const char *delivered;
	struct alias_list hops;
	const char *transport;		/* for the next expand_add(): its target's transport */
};

static void expand_warn(struct expand *x, const char *line)
{
	/* the same line once per RCPT */
	for (const char *s = buf_str(&x->warn); (s = strstr(s, line)) != NULL; s++)
		if ((s == buf_str(&x->warn) || s[-1] == '\n') && s[strlen(line)] == '\n')
			return;
	buf_puts(&x->warn, line);
	buf_putc(&x->warn, '\n');
}

static enum dclass domain_class(struct expand *x, const char *domain)
{
	const struct recipient_policy *p = x->p;
	enum lookup lk, va, vm;
	char *w;

	if (domain == NULL)
		return DC_LOCAL;
	lk = domlist_match(p->mydestination, domain);
	if (LK_FAILED(lk))
		return DC_FAIL;
	va = domlist_match(p->valias_domains, domain);
	if (LK_FAILED(va))
		return DC_FAIL;
	vm = domlist_match(p->virtual_domains, domain);
	if (LK_FAILED(vm))
		return DC_FAIL;
	if (lk == LK_FOUND) {
		if (va == LK_FOUND) {
			w = xasprintf("do not list domain %s in BOTH mydestination and"
				      " virtual_alias_domains", domain);
			expand_warn(x, w);
			free(w);
		}
		if (vm == LK_FOUND) {
			w = xasprintf("do not list domain %s in BOTH mydestination and"
				      " virtual_mailbox_domains", domain);
			expand_warn(x, w);
			free(w);
		}
		return DC_LOCAL;
	}
	if (va == LK_FOUND) {
		if (vm == LK_FOUND) {
			w = xasprintf("do not list domain %s in BOTH virtual_alias_domains and"
				      " virtual_mailbox_domains", domain);
			expand_warn(x, w);
			free(w);
		}
		return DC_ALIAS;
	}
	return vm == LK_FOUND ? DC_VIRTUAL : DC_OTHER;
}

/* alias_local_fn: the key order's "local" (mydestination; myorigin is alias.c's). */
static int expand_is_local(void *ctx, const char *domain)
{
	struct expand *x = ctx;
	char *d = domain_norm(domain);
	enum lookup lk = domlist_match(x->p->mydestination, d);

	free(d);
	return LK_FAILED(lk) ? -1 : lk == LK_FOUND;
}

/* The first refusal ends the expansion; targets found so far go. */
static void expand_refuse(struct expand *x, enum rcpt_verdict v, int code, char *reply,
			  char *reason)
{
	if (x->done) {
		free(reply);
		free(reason);
		return;
	}
	targets_free(x->r);
	result_reply(x->r, v, code, reply, reason);
	x->done = true;
}

/* A result of resolve_local()/resolve_virtual() that refuses: it becomes ours. */
static void expand_take(struct expand *x, struct rcpt_result *t)
{
	expand_refuse(x, t->verdict, t->code, t->reply, t->reason);
	t->reply = t->reason = NULL;
	rcpt_result_free(t);
}

static void expand_tempfail(struct expand *x, enum lookup lk)
{
	struct rcpt_result t = { 0 };

	result_tempfail_lookup(&t, x->rcpt, lk);
	expand_take(x, &t);
}

static void expand_config(struct expand *x, char *reason)
{
	expand_refuse(x, RCPT_TEMPFAIL, 451, reply_string(RPL_CONFIG_ERROR), reason);
}

/* The reason names the recipient and the target (the caller logs it). */
static void expand_bad_target(struct expand *x, bool remote, const char *target,
			      const char *why)
{
	char *e = log_escape_dup(target, 300);

	expand_refuse(x, RCPT_UNDELIVERABLE, 550,
		      reply_string(remote ? RPL_ALIAS_REMOTE : RPL_ALIAS_UNKNOWN, x->rcpt),
		      xasprintf("alias target <%s> %s; recipient refused", e, why));
	free(e);
}

/* Whether tg was forwarded by the same local(8) deliveries as hops (oldest first). */
static bool same_via(const struct rcpt_target *tg, const struct alias_list *hops)
{
	if (tg->nvia != hops->n)
		return false;
	for (size_t i = 0; i < tg->nvia; i++)
		if (strcmp(tg->via[i], hops->v[hops->n - 1 - i]) != 0)
			return false;
	return true;
}

/*
 * An accepted mailbox: t's fields move into a new target (once per kind,
 * address and via).
 */
static void expand_add(struct expand *x, const char *address, struct rcpt_result *t)
{
	struct rcpt_result *r = x->r;
	struct rcpt_target *tg;
	enum rcpt_verdict kind = t->verdict;

	for (size_t i = 0; i < r->ntargets; i++)
		if (r->targets[i].kind == kind && strcasecmp(r->targets[i].address, address) == 0
		    && same_via(&r->targets[i], &x->hops)) {
			rcpt_result_free(t);
			return;
		}
	if ((long)r->ntargets >= x->p->valias_expansion) {
		rcpt_result_free(t);
		expand_refuse(x, RCPT_TEMPFAIL, 451, reply_string(RPL_ALIAS_EXPANSION),
			      xasprintf("unreasonable alias expansion size for %s -- message not"
					" accepted, try again later", x->rcpt));
		return;
	}
	r->targets = xrealloc(r->targets, (r->ntargets + 1) * sizeof(*r->targets));
	tg = &r->targets[r->ntargets++];
	tg->kind = kind;
	tg->address = xstrdup(address);
	tg->user = t->user;
	tg->home = t->home;
	tg->maildir = t->maildir;
	tg->uid = t->uid;
	tg->gid = t->gid;
	tg->nvia = x->hops.n;
	tg->via = tg->nvia ? xcalloc(tg->nvia, sizeof(*tg->via)) : NULL;
	for (size_t i = 0; i < tg->nvia; i++)	/* newest first */
		tg->via[i] = xstrdup(x->hops.v[x->hops.n - 1 - i]);
	tg->transport = x->transport ? xstrdup(x->transport) : NULL;
	if (tg->transport == NULL && kind == RCPT_OK_LOCAL && x->p->mtr != NULL)
		tg->transport = xasprintf("lmtp:%s", x->p->mtr->nexthop);	/* mailbox_transport */
	t->user = t->home = t->maildir = NULL;
	rcpt_result_free(t);
}

static void expand_address(struct expand *x, const char *lp, const char *domain,
			   enum dclass dc, bool top);
static void expand_local(struct expand *x, const char *given, const char *lp,
			 const char *domain, struct rcpt_result *user, const char *exp_from);

/* "user" or "user@domain" (internal form). */
static char *join_addr(const char *lp, const char *domain)
{
	return domain ? xasprintf("%s@%s", lp, domain) : xstrdup(lp);
}

/*
 * The targets of one alias (an alias_maps value or an include file), as
 * local(8) delivers them: name is the alias they belong to.
 */
static void expand_targets(struct expand *x, const struct alias_targets *t, const char *name)
{
	const struct recipient_policy *p = x->p;

	for (size_t i = 0; i < t->n && !x->done; i++) {
		const char *text = t->v[i].text;
		char *e = log_escape_dup(text, 300), *en = log_escape_dup(name, 100);

		switch (t->v[i].kind) {
		case ALIAS_COMMAND:
			expand_config(x, xasprintf("alias %s: target \"%s\" is a command, and mxgate"
						   " runs no commands", en, e));
			break;
		case ALIAS_FILE:
			expand_config(x, xasprintf("alias %s: target \"%s\" is a file, and mxgate"
						   " delivers only to Maildirs", en, e));
			break;
		case ALIAS_INCLUDE: {
			struct alias_targets inc = { NULL, 0, 0 };
			char *content = NULL, *why = NULL;

			if (alias_list_has(&x->includes, text))
				break;		/* each include file once, as local(8) */
			if (rcpt_try_only) {
				rcpt_would_block = true;
				expand_refuse(x, RCPT_TEMPFAIL, 451, NULL, NULL);
				break;
			}
			alias_list_add(&x->includes, text);
			if (++x->level > ALIAS_MAX_LEVEL) {
				expand_refuse(x, RCPT_UNDELIVERABLE, 550,
					      reply_string(RPL_ALIAS_LOOP, x->rcpt),
					      xasprintf("alias database loop for %s", en));
			} else if (alias_include_read(text, &content, &why) < 0) {
				expand_config(x, xasprintf("alias %s: %s", en, why));
				free(why);
			} else {
				alias_parse(content, &inc);
				expand_targets(x, &inc, name);
			}
			x->level--;
			alias_targets_free(&inc);
			free(content);
			break;
		}
		case ALIAS_ADDRESS: {
			const char *at = strrchr(text, '@');
			char *lp2, *d2 = NULL;
			enum dclass dc;

			/* local(8) sends a bare name through trivial-rewrite: @myorigin */
			lp2 = at ? xstrndup(text, (size_t)(at - text)) : xstrdup(text);
			if (at)
				d2 = domain_norm(at + 1);
			else if (p->myorigin)
				d2 = xstrdup(p->myorigin);
			dc = domain_class(x, d2);
			if (dc == DC_FAIL) {
				expand_tempfail(x, LK_FAIL);
			} else if (dc == DC_LOCAL) {
				/* delivered by local(8) itself, no virtual aliasing */
				struct rcpt_result u = { 0 };
				char *a2 = join_addr(lp2, d2);

				u.uid = (uid_t)-1;
				u.gid = (gid_t)-1;
				resolve_local(p, x->rcpt, lp2, d2, true, &u);
				if (u.verdict == RCPT_UNKNOWN_LOCAL) {
					rcpt_result_free(&u);
					expand_bad_target(x, false, a2, "is an unknown local user");
				} else if (u.verdict != RCPT_OK_LOCAL) {
					expand_take(x, &u);
				} else if (++x->level > ALIAS_MAX_LEVEL) {
					rcpt_result_free(&u);
					expand_refuse(x, RCPT_UNDELIVERABLE, 550,
						      reply_string(RPL_ALIAS_LOOP, x->rcpt),
						      xasprintf("alias database loop for %s", en));
				} else {
					expand_local(x, a2, lp2, d2, &u, name);
				}
				if (dc == DC_LOCAL && u.verdict == RCPT_OK_LOCAL)
					x->level--;
				free(a2);
			} else if (++x->level > ALIAS_MAX_LEVEL) {
				expand_refuse(x, RCPT_UNDELIVERABLE, 550,
					      reply_string(RPL_ALIAS_LOOP, x->rcpt),
					      xasprintf("alias database loop for %s", en));
				x->level--;
			} else {
				/*
				 * forwarded: a new message through cleanup(8), with
				 * local(8)'s Delivered-To on top
				 */
				const char *delivered = x->delivered;
				char *folded = xstrdup(delivered ? delivered : x->rcpt);

				lower_inplace(folded);
				alias_list_add(&x->hops, folded);
				free(folded);
				x->delivered = NULL;
				expand_address(x, lp2, d2, dc, false);
				x->delivered = delivered;
				free(x->hops.v[--x->hops.n]);
				x->level--;
			}
			free(lp2);
			free(d2);
			break;
		}
		}
		free(e);
		free(en);
	}
}

/*
 * local(8): lp@domain (given: as written) is a known local user (user holds
 * resolve_local()'s answer).  Its alias, if any, decides; an alias that
 * names itself (exp_from) goes to the user's own mailbox, as Postfix does.
 */
static void expand_local(struct expand *x, const char *given, const char *lp,
			 const char *domain, struct rcpt_result *user, const char *exp_from)
{
	const struct recipient_policy *p = x->p;
	struct alias_targets t = { NULL, 0, 0 };
	struct lookup_keys ks;
	enum map_status st;
	char *value = NULL, *address, *name;

	address = xstrdup(given);
	name = xstrdup(lp);
	lower_inplace(name);
	if (maplist_empty(p->alias_maps) || (exp_from && strcmp(exp_from, name) == 0)) {
		expand_add(x, address, user);
		goto out;
	}
	if (rcpt_try_only) {	/* include files, nesting: a pool thread's job */
		rcpt_would_block = true;
		rcpt_result_free(user);
		expand_refuse(x, RCPT_TEMPFAIL, 451, NULL, NULL);
		goto out;
	}
	lookup_keys_local(&ks, p->delimiter, lp);
	st = lookup_keys_find(p->alias_maps, &ks, &value, NULL, NULL);
	lookup_keys_free(&ks);
	if (st == MAP_NOTFOUND) {
		expand_add(x, address, user);
		goto out;
	}
	rcpt_result_free(user);
	if (st != MAP_FOUND) {
		expand_tempfail(x, st == MAP_CONFIG ? LK_CONFIG : LK_FAIL);
		goto out;
	}
	alias_parse(value, &t);
	expand_targets(x, &t, name);
	alias_targets_free(&t);
out:
	free(value);
	free(address);
	free(name);
}

/*
 * transport_maps for address (recipient.h, "Transports"): true with *t set
 * (TK_DEFAULT: no entry, or one that keeps the default), false when the
 * lookup failed or the entry is unusable (x refuses the recipient).
 */
static bool transport_find(struct expand *x, const char *address, const char *lp,
			   const char *domain, struct tspec *t)
{
	const struct recipient_policy *p = x->p;
	struct lookup_keys ks = { .n = 0 };
	enum map_status st;
	char *value = NULL, *why;
	size_t blen;

	t->kind = TK_DEFAULT;
	t->nexthop = NULL;
	if (maplist_empty(p->transport_maps) || domain == NULL)
		return true;
	if (rcpt_try_only && !maplist_in_memory(p->transport_maps)) {
		rcpt_would_block = true;
		expand_refuse(x, RCPT_TEMPFAIL, 451, NULL, NULL);
		return false;
	}
	/* user+ext@domain, user@domain, domain, .parents, "*" (transport(5)) */
	blen = lookup_keys_base_len(p->delimiter, lp);
	ks.k[ks.n++].key = xasprintf("%s@%s", lp, domain);
	if (blen < strlen(lp))
		ks.k[ks.n++].key = xasprintf("%.*s@%s", (int)blen, lp, domain);
	ks.k[ks.n++].key = xstrdup(domain);
	for (const char *d = strchr(domain, '.'); d != NULL && ks.n < LOOKUP_KEYS_MAX - 1;
	     d = strchr(d + 1, '.'))
		ks.k[ks.n++].key = xstrdup(d);
	ks.k[ks.n++].key = xstrdup("*");
	for (size_t i = 0; i < ks.n; i++) {
		ks.k[i].partial = i > 0;
		lower_inplace(ks.k[i].key);
	}
	st = lookup_keys_find(p->transport_maps, &ks, &value, NULL, NULL);
	lookup_keys_free(&ks);
	if (st == MAP_NOTFOUND)
		return true;
	if (st != MAP_FOUND) {
		expand_tempfail(x, st == MAP_CONFIG ? LK_CONFIG : LK_FAIL);
		free(value);
		return false;
	}
	why = tspec_parse(value, t);
	if (why != NULL) {
		char *e = log_escape_dup(address, 300);

		expand_config(x, xasprintf("transport_maps entry for %s: %s", e, why));
		free(e);
		free(why);
		free(value);
		return false;
	}
	free(value);
	return true;
}

/* error:/retry: text, "5.x.y text" carrying its own enhanced code (dsn_split()). */
static void transport_refusal(struct expand *x, bool top, const char *address, bool error,
			      const char *text)
{
	char dsn[16];
	const char *t = text;
	size_t n = 0;

	snprintf(dsn, sizeof(dsn), "%s", error ? "5.1.1" : "4.1.1");
	if (t[0] >= '2' && t[0] <= '5' && t[1] == '.') {
		n = 2;
		while (t[n] >= '0' && t[n] <= '9' && n < 5)
			n++;
		if (t[n] == '.') {
			size_t m = n + 1;

			while (t[m] >= '0' && t[m] <= '9' && m < n + 4)
				m++;
			if (m > n + 1 && (t[m] == ' ' || t[m] == '\0')) {
				snprintf(dsn, sizeof(dsn), "%c%.*s", error ? '5' : '4', (int)(m - 1),
					 t + 1);
				t += m;
				while (*t == ' ')
					t++;
			}
		}
	}
	if (top) {
		int code = error ? 550 : 450;

		expand_refuse(x, error ? RCPT_UNDELIVERABLE : RCPT_TEMPFAIL, code,
			      reply_string(RPL_TRANSPORT_REFUSAL, code, dsn, x->rcpt, t), NULL);
	} else if (error) {
		expand_bad_target(x, false, address, "is routed to the error transport");
	} else {
		char *e = log_escape_dup(address, 300);

		expand_refuse(x, RCPT_TEMPFAIL, 450,
			      reply_string(RPL_TRANSPORT_REFUSAL, 450, dsn, x->rcpt, t),
			      xasprintf("alias target <%s> is routed to the retry transport", e));
		free(e);
	}
}

/* A final address in a virtual or local domain, by its transport. */
static void expand_transport(struct expand *x, const char *address, const char *lp,
			     const char *domain, enum dclass dc, bool top, struct rcpt_result *t)
{
	const struct recipient_policy *p = x->p;
	const struct tspec *dflt = dc == DC_VIRTUAL ? p->vtr : p->ltr;
	struct tspec found;
	enum tkind kind = dc == DC_VIRTUAL ? TK_VIRTUAL : TK_LOCAL;
	const char *nexthop = "";
	char *tr = NULL;

	if (!transport_find(x, address, lp, domain, &found))
		return;
	if (found.kind != TK_DEFAULT) {
		kind = found.kind;
		nexthop = found.nexthop;
	} else if (dflt != NULL && dflt->kind != TK_DEFAULT) {
		kind = dflt->kind;
		nexthop = dflt->nexthop;
	}
	switch (kind) {
	case TK_ERROR:
	case TK_RETRY:
		/* no text: trivial-rewrite's (transport.c) */
		if (*nexthop == '\0')
			nexthop = "Address is undeliverable";
		transport_refusal(x, top, address, kind == TK_ERROR, nexthop);
		goto out;
	case TK_VIRTUAL:
	case TK_LOCAL:
		if ((kind == TK_VIRTUAL) != (dc == DC_VIRTUAL)) {
			char *e = log_escape_dup(address, 300);

			expand_config(x, xasprintf("%s: transport \"%s\" does not deliver to a %s"
						   " domain in mxgate", e, kind == TK_VIRTUAL
						   ? "virtual" : "local", dc == DC_VIRTUAL
						   ? "virtual mailbox" : "local"));
			free(e);
			goto out;
		}
		break;
	case TK_LMTP:
		tr = xasprintf("lmtp:%s", nexthop);
		break;
	case TK_DISCARD:
		tr = xasprintf("discard:%s", nexthop);
		break;
	case TK_DEFAULT:
		break;
	}
	if (dc == DC_VIRTUAL) {
		resolve_virtual(p, x->rcpt, lp, domain, tr != NULL, t);
		if (t->verdict == RCPT_OK_VIRTUAL) {
			x->transport = tr;
			expand_add(x, address, t);
			x->transport = NULL;
		} else if (t->verdict == RCPT_UNKNOWN_VIRTUAL && !top) {
			rcpt_result_free(t);
			expand_bad_target(x, false, address, "is unknown in virtual mailbox table");
		} else
			expand_take(x, t);
	} else {
		resolve_local(p, x->rcpt, lp, domain, !top, t);
		if (t->verdict == RCPT_OK_LOCAL && tr != NULL) {
			/* not local(8): no aliases, as Postfix */
			x->transport = tr;
			expand_add(x, address, t);
			x->transport = NULL;
		} else if (t->verdict == RCPT_OK_LOCAL) {
			/* a new local(8) delivery: Delivered-To is this address */
			const char *delivered = x->delivered;

			x->delivered = address;
			expand_local(x, address, lp, domain, t, NULL);
			x->delivered = delivered;
		} else if (t->verdict == RCPT_UNKNOWN_LOCAL && !top) {
			rcpt_result_free(t);
			expand_bad_target(x, false, address, "is an unknown local user");
		} else
			expand_take(x, t);
	}
out:
	free(tr);
	free(found.nexthop);
}

/*
 * One address that cleanup(8) has finished with: where it is delivered.
 * given: the address as the RCPT or the table wrote it (the target's
 * address: Delivered-To:, to=); lp and domain its parts, the domain folded.
 */
static void expand_final(struct expand *x, const char *given, const char *lp,
			 const char *domain, enum dclass dc, bool top)
{
	const struct recipient_policy *p = x->p;
	struct rcpt_result t = { 0 };
	char *address = xstrdup(given);

	t.uid = (uid_t)-1;
	t.gid = (gid_t)-1;
	switch (dc) {
	case DC_FAIL:
		expand_tempfail(x, LK_FAIL);
		break;
	case DC_OTHER:
		expand_bad_target(x, true, address,
				  "is outside mxgate's domains (mxgate never relays)");
		break;
	case DC_ALIAS:
		if (top) {
			int c = p->alias_code;

			expand_refuse(x, RCPT_UNKNOWN_ALIAS, c,
				      reply_string(RPL_UNKNOWN_ALIAS, c, c >= 500 ? "5.1.1" : "4.1.1", x->rcpt,
					   "Recipient address"), NULL);
		} else {
			expand_bad_target(x, false, address,
					  "is unknown in virtual alias table");
		}
		break;
	case DC_VIRTUAL:
	case DC_LOCAL:
		expand_transport(x, address, lp, domain, dc, top, &t);
		break;
	}
	free(address);
}

/*
 * An address on its way into the queue: cleanup(8)'s virtual_alias_maps,
 * then each final address.  top: the RCPT itself (its refusals are
 * Postfix's); otherwise an alias target.
 */
static void expand_address(struct expand *x, const char *lp, const char *domain,
			   enum dclass dc, bool top)
{
	const struct recipient_policy *p = x->p;
	struct alias_virtual av = {
		.maps = p->valias_maps,
		.delimiter = p->delimiter,
		.myorigin = p->myorigin,
		.recursion_limit = p->valias_recursion,
		.expansion_limit = p->valias_expansion,
		.addrlen_limit = p->valias_addrlen,
		.propagate = p->propagate_virtual,
		.is_local = expand_is_local,
		.ctx = x,
	};
	struct alias_list out = { NULL, 0, 0 };
	char *address = join_addr(lp, domain), *why = NULL;
	enum alias_status st;
	bool matched = false;

	/*
	 * Not on an event loop, even for tables in memory: an expansion may take
	 * virtual_alias_recursion_limit lookups for each of
	 * virtual_alias_expansion_limit addresses.
	 */
	if (rcpt_try_only && !maplist_empty(p->valias_maps)) {
		rcpt_would_block = true;
		expand_refuse(x, RCPT_TEMPFAIL, 451, NULL, NULL);
		goto out;
	}
	st = alias_virtual_expand(&av, address, &out, &matched, &why);
	if (st == ALIAS_FAIL) {
		expand_tempfail(x, LK_FAIL);
		goto out;
	}
	if (st == ALIAS_LIMIT) {
		expand_refuse(x, RCPT_TEMPFAIL, 451, reply_string(RPL_ALIAS_EXPANSION), why);
		why = NULL;
		goto out;
	}
	if (!matched) {
		expand_final(x, top ? x->rcpt : address, lp, domain, dc, top);
		goto out;
	}
	for (size_t i = 0; i < out.n && !x->done; i++) {
		const char *a = out.v[i], *at = strrchr(a, '@');
		char *lp2 = at ? xstrndup(a, (size_t)(at - a)) : xstrdup(a);
		char *d2 = at ? domain_norm(at + 1) : NULL;
		enum dclass dc2 = domain_class(x, d2);

		expand_final(x, a, lp2, d2, dc2, false);
		free(lp2);
		free(d2);
	}
out:
	alias_list_free(&out);
	free(address);
	free(why);
}

/* One of our domains: the recipient, its aliases, and what they lead to. */
static void resolve_ours(const struct recipient_policy *p, const char *addr, const char *lp,
			 const char *domain, struct rcpt_result *r)
{
	struct expand x = { .p = p, .rcpt = addr, .r = r };
	enum dclass dc = domain_class(&x, domain);

	if (dc == DC_FAIL)
		expand_tempfail(&x, LK_FAIL);
	else
		expand_address(&x, lp, domain, dc, true);
	if (!x.done && r->ntargets == 0) {
		/* only include files already read: Postfix would deliver it nowhere */
		char *e = log_escape_dup(addr, 300);

		expand_config(&x, xasprintf("aliases of %s lead to no mailbox", e));
		free(e);
	}
	if (!x.done) {
		const struct rcpt_target *t0 = &r->targets[0];
		bool local = false;

		for (size_t i = 0; i < r->ntargets; i++)
			local |= r->targets[i].kind == RCPT_OK_LOCAL;
		result_reply(r, local ? RCPT_OK_LOCAL : RCPT_OK_VIRTUAL, 250, NULL, NULL);
		r->user = t0->user ? xstrdup(t0->user) : NULL;
		r->home = t0->home ? xstrdup(t0->home) : NULL;
		r->maildir = t0->maildir ? xstrdup(t0->maildir) : NULL;
		r->uid = t0->uid;
		r->gid = t0->gid;
	}
	if (x.warn.len > 0) {
		buf_truncate(&x.warn, x.warn.len - 1);
		r->warning = buf_steal(&x.warn);
	}
	buf_free(&x.warn);
	alias_list_free(&x.includes);
	alias_list_free(&x.hops);
}

/* ---- classify ---- */

void recipient_resolve(const struct recipient_policy *p, const char *addr, struct rcpt_result *r)
{
	char *cur = xstrdup(addr);

	memset(r, 0, sizeof(*r));
	r->uid = (uid_t)-1;
	r->gid = (gid_t)-1;
	for (int hop = 0;; hop++) {
		char *at = strrchr(cur, '@'), *lp, *domain = NULL, *sep;
		bool local, routed;
		enum lookup lk;

		if (hop >= ROUTING_MAX_HOPS) {
			resolve_relay(p, addr, true, r);
			break;
		}
		if (at && at[1] == '\0') {
			*at = '\0';	/* "u@d@": the empty domain goes, as in Postfix */
			continue;
		}
		lp = cur;
		if (at) {
			*at = '\0';
			domain = domain_norm(at + 1);
		} else if (p->myorigin && strcasecmp(lp, "postmaster") != 0) {
			domain = xstrdup(p->myorigin);
		}
		if (domain == NULL) {
			local = true;	/* bare local part, RFC 5321 4.5.1 postmaster */
		} else {
			lk = domlist_match(p->mydestination, domain);
			if (LK_FAILED(lk)) {
				result_tempfail_lookup(r, addr, lk);
				free(domain);
				break;
			}
			local = lk == LK_FOUND;
		}
		routed = strpbrk(lp, "@%!") != NULL;
		if (local && routed) {
			/*
			 * Sender-specified routing through one of our own domains:
			 * u@d, then u%d (allow_percent_hack), then d!u
			 * (swap_bangpath), classified again from the top.
			 */
			char *next;

			if (strchr(lp, '@')) {
				next = xstrdup(lp);
			} else if ((sep = strrchr(lp, '%')) != NULL) {
				next = xstrdup(lp);
				next[sep - lp] = '@';
			} else {
				sep = strchr(lp, '!');
				next = xasprintf("%s@%.*s", sep + 1, (int)(sep - lp), lp);
			}
			free(domain);
			free(cur);
			cur = next;
			continue;
		}
		if (local) {
			resolve_ours(p, addr, lp, domain, r);
			free(domain);
			break;
		}
		lk = domlist_match(p->valias_domains, domain);
		if (!LK_FAILED(lk) && lk != LK_FOUND)
			lk = domlist_match(p->virtual_domains, domain);
		if (LK_FAILED(lk)) {
			result_tempfail_lookup(r, addr, lk);
		} else if (lk == LK_FOUND && !routed) {
			resolve_ours(p, addr, lp, domain, r);
		} else {
			resolve_relay(p, addr, routed, r);
		}
		free(domain);
		break;
	}
	free(cur);
}

/* ---- check: alias tables ---- */

struct alias_check {
	const struct recipient_policy *p;
	recipient_alias_fn *report;
	void *ctx;
	const char *param;
	const char *file;		/* the table's text, or the include file */
	bool virtual;			/* virtual_alias_maps: domain keys mark domains */
	struct alias_list includes;	/* include files checked */
	size_t found;
};

static void alias_check_say(struct alias_check *ac, int line, const char *key, const char *what,
			    const char *target)
{
	char *ek = log_escape_dup(key, 100), *et = log_escape_dup(target, 300);
	char *msg = xasprintf("\"%s\" -> \"%s\": %s", ek, et, what);

	ac->report(ac->ctx, ac->param, ac->file, line, msg);
	ac->found++;
	free(msg);
	free(ek);
	free(et);
}

static void alias_check_targets(struct alias_check *ac, const char *key, const char *value,
				int line, int depth);

static void alias_check_entry(void *ctx, const char *key, const char *value, int line)
{
	struct alias_check *ac = ctx;

	if (ac->virtual && strchr(key, '@') == NULL)
		return;		/* "domain anything": marks a virtual alias domain */
	alias_check_targets(ac, key, value, line, 0);
}

static void alias_check_targets(struct alias_check *ac, const char *key, const char *value,
				int line, int depth)
{
	const struct recipient_policy *p = ac->p;
	struct alias_targets t = { NULL, 0, 0 };

	alias_parse(value, &t);
	for (size_t i = 0; i < t.n; i++) {
		const char *text = t.v[i].text;

		switch (ac->virtual ? ALIAS_ADDRESS : t.v[i].kind) {
		case ALIAS_COMMAND:
			alias_check_say(ac, line, key, "mxgate runs no commands: a recipient that"
					" reaches it is refused (451 4.3.5)", text);
			break;
		case ALIAS_FILE:
			alias_check_say(ac, line, key, "mxgate writes no files but Maildirs: a"
					" recipient that reaches it is refused (451 4.3.5)", text);
			break;
		case ALIAS_INCLUDE: {
			char *content = NULL, *why = NULL;

			if (alias_list_has(&ac->includes, text) || depth >= 10)
				break;
			alias_list_add(&ac->includes, text);
			if (alias_include_read(text, &content, &why) < 0) {
				char *w = xasprintf("%s: a recipient that reaches it is refused"
						    " (451 4.3.5)", why);

				alias_check_say(ac, line, key, w, text);
				free(w);
				free(why);
			} else {
				const char *saved = ac->file;

				/* what the include holds is reported at the alias's line */
				alias_check_targets(ac, key, content, line, depth + 1);
				ac->file = saved;
			}
			free(content);
			break;
		}
		case ALIAS_ADDRESS: {
			struct rcpt_result r;
			char *full;

			if (strchr(text, '@') != NULL)
				full = xstrdup(text);
			else if (p->myorigin != NULL)
				full = xasprintf("%s@%s", text, p->myorigin);
			else
				full = xstrdup(text);
			if (strcasecmp(full, key) == 0 || *text == '\0' || *text == '@') {
				/* itself (kept), or "@domain": a rewrite, not a mailbox */
				free(full);
				break;	/* an address that maps to itself is kept */
			}
			recipient_resolve(p, full, &r);
			if (r.verdict == RCPT_RELAY_DENIED)
				alias_check_say(ac, line, key, "outside mxgate's domains (mxgate never"
						" relays): a recipient that reaches it is refused (550)",
						text);
			else if (r.verdict == RCPT_UNKNOWN_LOCAL || r.verdict == RCPT_UNKNOWN_VIRTUAL
				 || r.verdict == RCPT_UNKNOWN_ALIAS)
				alias_check_say(ac, line, key, "an unknown user: a recipient that"
						" reaches it is refused (550)", text);
			rcpt_result_free(&r);
			free(full);
			break;
		}
		}
	}
	alias_targets_free(&t);
}

size_t recipient_policy_check_aliases(const struct recipient_policy *p,
				      recipient_alias_fn *report, void *ctx)
{
	const struct {
		const char *param;
		const struct maplist *l;
		bool virtual;
	} lists[] = {
		{ "virtual_alias_maps", p->valias_maps, true },
		{ "alias_maps", p->alias_maps, false },
	};
	struct alias_check ac = { .p = p, .report = report, .ctx = ctx };

	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		for (size_t k = 0; k < maplist_count(lists[i].l); k++) {
			char *file = alias_source_file(map_spec(maplist_get(lists[i].l, k)));

			if (file == NULL)
				continue;
			ac.param = lists[i].param;
			ac.file = file;
			ac.virtual = lists[i].virtual;
			(void)alias_scan_file(file, alias_check_entry, &ac);
			free(file);
		}
	}
	alias_list_free(&ac.includes);
	return ac.found;
}

/* ---- check: transport_maps entries ---- */

struct transport_check {
	recipient_alias_fn *report;
	void *ctx;
	const char *file;
	size_t found;
};

static void transport_check_entry(void *ctx, const char *key, const char *value, int line)
{
	struct transport_check *tc = ctx;
	struct tspec t;
	char *why = tspec_parse(value, &t);

	if (why != NULL) {
		char *ek = log_escape_dup(key, 200), *what = xasprintf("%s: %s", ek, why);

		tc->report(tc->ctx, "transport_maps", tc->file, line, what);
		tc->found++;
		free(what);
		free(ek);
		free(why);
	}
	free(t.nexthop);
}

size_t recipient_policy_check_transports(const struct recipient_policy *p,
					 recipient_alias_fn *report, void *ctx)
{
	struct transport_check tc = { .report = report, .ctx = ctx };

	for (size_t k = 0; k < maplist_count(p->transport_maps); k++) {
		char *file = alias_source_file(map_spec(maplist_get(p->transport_maps, k)));

		if (file == NULL)
			continue;
		tc.file = file;
		(void)alias_scan_file(file, transport_check_entry, &tc);
		free(file);
	}
	return tc.found;
}
