/*
 * map_ldap: "ldap:/etc/postfix/x.cf", LDAP lookups as ldap_table(5)
 * describes them, through OpenLDAP's libldap.
 *
 * The file (policy/map_query.h reads it):
 *   server_host  host, host:port (server_port, default 389, for the
 *                former) or ldap:// and ldapi:// URLs, several separated by
 *                spaces or commas: libldap tries them in order.
 *   search_base  with %s %u %d %1..%9, quoted as an RFC 4514 DN value; when
 *                it has a substitution, a base that does not exist means
 *                "not found".  query_filter (default
 *                "(mailacceptinggeneralid=%s)"), quoted as an RFC 4515 filter
 *                value.  scope (sub, one, base).
 *   result_attribute (default maildrop), special_result_attribute (values
 *                that are DNs or LDAP URLs are searched in turn, up to
 *                recursion_limit deep), terminal_result_attribute,
 *                leaf_result_attribute: as Postfix's dict_ldap.
 *   bind (yes/simple, no/none), bind_dn, bind_pw, version (2, default, or
 *                3), timeout (seconds, default 10: connect, bind and each
 *                search), size_limit (default expansion_limit), dereference
 *                (0-3), chase_referrals.
 *   result_format (or the older result_filter), domain, expansion_limit:
 *                policy/map_query.h.
 *
 * Not implemented, so refused at open with the setting's file and line:
 * start_tls = yes, ldaps:// servers, the tls_* settings and bind = sasl.
 * mxgate never falls back to a plaintext or anonymous connection instead.
 * debuglevel is accepted and has no effect (it only adds log output).
 *
 * A lookup takes a connection from the table's pool (policy/map_pool.h);
 * one that the server dropped (LDAP_SERVER_DOWN: a restart) is replaced
 * and the search made once more, as Postfix does.  Any other failure is
 * MAP_FAIL and the connection is closed.
 */
#include "policy/map_remote.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#define LDAP_DEPRECATED 0
#include <ldap.h>

#include "log/log.h"
#include "policy/map_pool.h"
#include "policy/map_query.h"
#include "util/buf.h"
#include "util/xalloc.h"

#define LDAP_TIMEOUT_DEFAULT	10
#define LDAP_RECURSION_DEFAULT	1000
#define LDAP_IDLE_CLOSE		60	/* seconds before an idle connection is closed */

/* What mxgate does not implement: refused at open (see the header). */
static const char *const ldap_refused[] = {
	"tls_ca_cert_dir", "tls_ca_cert_file", "tls_cert", "tls_key", "tls_require_cert",
	"tls_random_file", "tls_cipher_suite", NULL
};

struct map_impl {
	char   *table;		/* "ldap:PATH" */
	struct map_query_cfg *cfg;
	char   *urls;		/* for ldap_initialize(): space-separated */
	int	version;
	int	timeout;
	int	scope;
	int	dereference;
	bool	chase_referrals;
	bool	bind;
	const char *bind_dn, *bind_pw;
	const char *search_base, *query, *result_format;
	bool	dynamic_base;
	/* terminal, leaf, ordinary, special: in that order, NULL-terminated */
	char  **attrs;
	int	num_terminal, num_leaf, num_attributes;	/* ends of the first three */
	long	expansion_limit, size_limit, recursion_limit;
	struct map_pool *pool;
};

/* ---- quoting ---- */

/* RFC 4514 (was 2253) DN value, as Postfix quotes it: every space, tab and special. */
static void ldap_escape_dn(void *ctx, const char *s, size_t len, struct buf *out)
{
	(void)ctx;
	for (size_t i = 0; i < len; i++) {
		if (strchr(" \t\"#+,;<>\\", s[i]) != NULL && s[i] != '\0')
			buf_printf(out, "\\%02X", (unsigned char)s[i]);
		else
			buf_putc(out, s[i]);
	}
}

/* ---- connections ---- */

static int ldap_wait(LDAP *ld, int msgid, int timeout, LDAPMessage **res_r)
{
	struct timeval tv = { .tv_sec = timeout, .tv_usec = 0 };
	int rc, err = LDAP_OTHER;

	*res_r = NULL;
	rc = ldap_result(ld, msgid, LDAP_MSG_ALL, &tv, res_r);
	if (rc == 0) {
		ldap_abandon_ext(ld, msgid, NULL, NULL);
		return LDAP_TIMEOUT;
	}
	if (rc < 0) {
		ldap_get_option(ld, LDAP_OPT_RESULT_CODE, &err);
		return err != LDAP_SUCCESS ? err : LDAP_OTHER;
	}
	return LDAP_SUCCESS;
}

/* A connection (bound when "bind" says so) to the first of urls that answers. */
static LDAP *ldap_open_urls(const struct map_impl *t, const char *urls, char **why_r)
{
	struct timeval tv = { .tv_sec = t->timeout, .tv_usec = 0 };
	LDAP *ld = NULL;
	int rc;

	if ((rc = ldap_initialize(&ld, urls)) != LDAP_SUCCESS) {
		*why_r = xasprintf("cannot use LDAP server %s: %s", urls, ldap_err2string(rc));
		return NULL;
	}
	if (ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &t->version) != LDAP_OPT_SUCCESS
	    || ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &tv) != LDAP_OPT_SUCCESS
	    || ldap_set_option(ld, LDAP_OPT_TIMEOUT, &tv) != LDAP_OPT_SUCCESS
	    || ldap_set_option(ld, LDAP_OPT_DEREF, &t->dereference) != LDAP_OPT_SUCCESS
	    || ldap_set_option(ld, LDAP_OPT_REFERRALS,
			       t->chase_referrals ? LDAP_OPT_ON : LDAP_OPT_OFF) != LDAP_OPT_SUCCESS) {
		*why_r = xasprintf("LDAP server %s: cannot set the connection's options", urls);
		ldap_unbind_ext(ld, NULL, NULL);
		return NULL;
	}
	if (t->bind) {
		struct berval cred = { .bv_val = (char *)t->bind_pw, .bv_len = strlen(t->bind_pw) };
		LDAPMessage *res = NULL;
		int msgid, err = LDAP_SUCCESS;

		rc = ldap_sasl_bind(ld, t->bind_dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, &msgid);
		if (rc == LDAP_SUCCESS)
			rc = ldap_wait(ld, msgid, t->timeout, &res);
		if (rc == LDAP_SUCCESS) {
			rc = ldap_parse_result(ld, res, &err, NULL, NULL, NULL, NULL, 1);
			res = NULL;
			if (rc == LDAP_SUCCESS)
				rc = err;
		}
		ldap_msgfree(res);
		if (rc != LDAP_SUCCESS) {
			*why_r = xasprintf("cannot bind to LDAP server %s with dn %s: %d (%s)",
					   urls, *t->bind_dn ? t->bind_dn : "empty or implicit",
					   rc, ldap_err2string(rc));
			ldap_unbind_ext(ld, NULL, NULL);
			return NULL;
		}
	} else if ((rc = ldap_connect(ld)) != LDAP_SUCCESS) {
		*why_r = xasprintf("cannot connect to LDAP server %s: %d (%s)", urls, rc,
				   ldap_err2string(rc));
		ldap_unbind_ext(ld, NULL, NULL);
		return NULL;
	}
	return ld;
}

/* map_pool ops: a connection to the first server in server_host that answers. */
static void *ldap_connect_one(void *ctx, char **why_r)
{
	return ldap_open_urls(ctx, ((struct map_impl *)ctx)->urls, why_r);
}

static void ldap_disconnect(void *ctx, void *conn)
{
	(void)ctx;
	ldap_unbind_ext(conn, NULL, NULL);
}

static const struct map_pool_ops ldap_pool_ops = { ldap_connect_one, ldap_disconnect };

/* ---- searches ---- */

/* A search and its result code (the server's, once it answered). */
static int ldap_search_wait(const struct map_impl *t, LDAP *ld, const char *base, int scope,
			    const char *filter, char **attrs, LDAPMessage **res_r)
{
	struct timeval tv = { .tv_sec = t->timeout, .tv_usec = 0 };
	int msgid, rc, err = LDAP_SUCCESS;

	*res_r = NULL;
	rc = ldap_search_ext(ld, base, scope, filter, attrs, 0, NULL, NULL, &tv,
			     t->size_limit > 0 ? (int)t->size_limit : LDAP_NO_LIMIT, &msgid);
	if (rc != LDAP_SUCCESS)
		return rc;
	if ((rc = ldap_wait(ld, msgid, t->timeout, res_r)) != LDAP_SUCCESS)
		return rc;
	rc = ldap_parse_result(ld, *res_r, &err, NULL, NULL, NULL, NULL, 0);
	return err != LDAP_SUCCESS ? err : rc;
}

/* Postfix's attrdesc_subtype(): 1 when a2 is a1 or a1;option, -1 when a1 is a2;option. */
static int ldap_attr_subtype(const char *a1, const char *a2)
{
	while (*a1 && tolower((unsigned char)*a1) == tolower((unsigned char)*a2))
		a1++, a2++;
	if (*a1 == '\0' && (*a2 == '\0' || *a2 == ';'))
		return 1;
	if (*a2 == '\0' && *a1 == ';')
		return -1;
	return 0;
}

struct ldap_walk {
	const struct map_impl *t;
	LDAP   *ld;
	struct map_query_result *r;
	char   *why;		/* set: the lookup fails */
	bool	broken;		/* and the connection with it */
};

static void ldap_entries(struct ldap_walk *w, LDAPMessage *res, int depth);

static bool ldap_has_values(LDAP *ld, LDAPMessage *entry, const char *attr)
{
	struct berval **vals = ldap_get_values_len(ld, entry, attr);
	bool has = vals != NULL && ldap_count_values_len(vals) > 0;

	ldap_value_free_len(vals);
	return has;
}

/* The attributes to ask for at an LDAP URL: its own ∩ ours (NULL: none of interest). */
static char **ldap_url_attrs(const struct map_impl *t, LDAPURLDesc *url, bool *own_r)
{
	size_t n = 0, cap = 0;
	char **out = NULL;

	*own_r = false;
	if (url->lud_attrs == NULL || url->lud_attrs[0] == NULL)
		return t->attrs;
	for (char **a1 = url->lud_attrs; *a1; a1++) {
		for (char **a2 = t->attrs; *a2; a2++) {
			int rel = ldap_attr_subtype(*a1, *a2);

			if (rel == 0)
				continue;
			if (n + 2 > cap) {
				cap = cap ? cap * 2 : 4;
				out = xrealloc(out, cap * sizeof(*out));
			}
			out[n++] = rel > 0 ? *a2 : *a1;
		}
	}
	if (n == 0)
		return NULL;
	out[n] = NULL;
	*own_r = true;
	return out;
}

/* A special attribute's value: a DN or an LDAP URL, searched and walked in turn. */
static void ldap_follow(struct ldap_walk *w, const char *value, int depth)
{
	const struct map_impl *t = w->t;
	LDAPMessage *res = NULL;
	int rc;

	if (ldap_is_ldap_url(value)) {
		LDAPURLDesc *url = NULL;
		char **attrs;
		bool own;

		if ((rc = ldap_url_parse(value, &url)) != LDAP_URL_SUCCESS) {
			w->why = xasprintf("%s: malformed URL %s: %s(%d)", t->table, value,
					   ldap_err2string(rc), rc);
			msg_warn("%s", w->why);
			return;
		}
		if ((attrs = ldap_url_attrs(t, url, &own)) == NULL) {
			ldap_free_urldesc(url);
			return;		/* nothing we would use */
		}
		rc = ldap_search_wait(t, w->ld, url->lud_dn, url->lud_scope, url->lud_filter, attrs,
				      &res);
		if (own)
			free(attrs);
		ldap_free_urldesc(url);
	} else {
		rc = ldap_search_wait(t, w->ld, value, LDAP_SCOPE_BASE, "objectclass=*", t->attrs,
				      &res);
	}
	switch (rc) {
	case LDAP_SUCCESS:
		ldap_entries(w, res, depth + 1);
		break;
	case LDAP_NO_SUCH_OBJECT:
		msg_warn("%s: DN %s not found, skipping", t->table, value);
		break;
	default:
		w->why = xasprintf("%s: search error %d: %s", t->table, rc, ldap_err2string(rc));
		w->broken = rc == LDAP_SERVER_DOWN || rc == LDAP_TIMEOUT;
		msg_warn("%s", w->why);
		break;
	}
	ldap_msgfree(res);
}

/* One attribute of an entry: its values into the result, or followed. */
static void ldap_attribute(struct ldap_walk *w, LDAPMessage *entry, const char *attr,
			   bool is_terminal, bool is_leaf, int depth)
{
	const struct map_impl *t = w->t;
	struct berval **vals = ldap_get_values_len(w->ld, entry, attr);
	int nvals = vals != NULL ? ldap_count_values_len(vals) : 0;
	int i;

	if (nvals == 0) {
		ldap_value_free_len(vals);
		return;
	}
	for (i = 0; t->attrs[i] != NULL; i++)
		if (ldap_attr_subtype(t->attrs[i], attr) > 0)
			break;
	if (i < t->num_attributes || is_terminal) {
		/* An ordinary one, unless a terminal entry or a group hides it. */
		if ((is_terminal && i >= t->num_terminal)
		    || (!is_leaf && i < t->num_terminal + t->num_leaf))
			goto done;
		for (int v = 0; v < nvals && w->why == NULL; v++) {
			char *value = xstrndup(vals[v]->bv_val, vals[v]->bv_len);

			if (map_query_result_add(w->r, value) < 0)
				w->why = xasprintf("%s: expansion limit exceeded", t->table);
			free(value);
		}
	} else if (t->attrs[i] != NULL && depth < t->recursion_limit) {
		for (int v = 0; v < nvals && w->why == NULL; v++) {
			char *value = xstrndup(vals[v]->bv_val, vals[v]->bv_len);

			ldap_follow(w, value, depth);
			free(value);
		}
	} else if (t->attrs[i] != NULL) {
		w->why = xasprintf("%s: Recursion limit exceeded for special attribute %s=%.*s",
				   t->table, attr, (int)vals[0]->bv_len, vals[0]->bv_val);
		msg_warn("%s", w->why);
	}
done:
	ldap_value_free_len(vals);
}

/* Every entry of a search result (Postfix's dict_ldap_get_values()). */
static void ldap_entries(struct ldap_walk *w, LDAPMessage *res, int depth)
{
	const struct map_impl *t = w->t;
	long entries = 0;

	for (LDAPMessage *e = ldap_first_entry(w->ld, res); e != NULL && w->why == NULL;
	     e = ldap_next_entry(w->ld, e)) {
		bool is_terminal = false, is_leaf = true;
		BerElement *ber = NULL;

		if (t->size_limit > 0 && ++entries > t->size_limit) {
			w->why = xasprintf("%s: Query size limit (%ld) exceeded", t->table,
					   t->size_limit);
			msg_warn("%s", w->why);
			break;
		}
		for (int i = 0; i < t->num_terminal && !is_terminal; i++)
			is_terminal = ldap_has_values(w->ld, e, t->attrs[i]);
		if (!is_terminal && t->num_leaf > 0)
			for (int i = t->num_attributes; t->attrs[i] != NULL && is_leaf; i++)
				is_leaf = !ldap_has_values(w->ld, e, t->attrs[i]);
		for (char *a = ldap_first_attribute(w->ld, e, &ber); a != NULL;
		     a = ldap_next_attribute(w->ld, e, ber)) {
			if (w->why == NULL)
				ldap_attribute(w, e, a, is_terminal, is_leaf, depth);
			ldap_memfree(a);
		}
		ber_free(ber, 0);
	}
}

static enum map_status ldap_lookup(struct map_impl *t, const char *key, char **value_r)
{
	struct buf base = BUF_INIT, filter = BUF_INIT;
	struct map_query_result r;
	struct ldap_walk w = { .t = t };
	LDAPMessage *res = NULL;
	enum map_status st = MAP_FAIL;
	int rc = LDAP_OTHER;

	if (!map_remote_key_ok(t->table, key))
		return MAP_NOTFOUND;
	switch (map_query_domain(t->cfg, key)) {
	case 0:
		return MAP_NOTFOUND;
	case -1:
		return MAP_FAIL;
	}
	if (map_query_expand(t->cfg, t->search_base, key, NULL, ldap_escape_dn, NULL, &base) != 1
	    || map_query_expand(t->cfg, t->query, key, NULL, map_query_escape_ldap, NULL,
				&filter) != 1) {
		buf_free(&base);
		buf_free(&filter);
		return MAP_NOTFOUND;
	}
	/* A connection the server dropped (a restart) gets one fresh try, as in Postfix. */
	for (int attempt = 0; attempt < 2; attempt++) {
		free(w.why);
		w.why = NULL;
		if ((w.ld = map_pool_get(t->pool, &w.why)) == NULL)
			break;
		rc = ldap_search_wait(t, w.ld, buf_str(&base), t->scope, buf_str(&filter), t->attrs,
				      &res);
		if (rc != LDAP_SERVER_DOWN)
			break;
		w.why = xasprintf("LDAP server %s: %s", t->urls, ldap_err2string(rc));
		ldap_msgfree(res);
		res = NULL;
		map_pool_put(t->pool, w.ld, true);
		w.ld = NULL;
	}
	if (w.ld == NULL) {
		map_pool_outcome(t->pool, false, w.why);
		goto out;
	}
	switch (rc) {
	case LDAP_SUCCESS:
		map_query_result_init(&r, t->cfg, t->result_format, t->expansion_limit, key);
		w.r = &r;
		ldap_entries(&w, res, 1);
		if (w.why == NULL) {
			st = (enum map_status)map_query_result_done(&r, value_r);
		} else {
			map_query_result_free(&r);
		}
		break;
	case LDAP_NO_SUCH_OBJECT:
		if (t->dynamic_base) {
			st = MAP_NOTFOUND;
			break;
		}
		w.why = xasprintf("%s: Search base '%s' not found: %d: %s", t->table, buf_str(&base),
				  rc, ldap_err2string(rc));
		msg_warn("%s", w.why);
		break;
	default:
		w.why = xasprintf("LDAP server %s: search error %d: %s", t->urls, rc,
				  ldap_err2string(rc));
		w.broken = true;
		break;
	}
	map_pool_put(t->pool, w.ld, w.broken);
	/* The server answered unless the connection broke. */
	map_pool_outcome(t->pool, !w.broken, w.why);
out:
	ldap_msgfree(res);
	free(w.why);
	buf_free(&base);
	buf_free(&filter);
	return st;
}

/* mxgate check: every server in server_host takes a connection (and the bind) now. */
static int ldap_probe(struct map_impl *t, char **why_r)
{
	char *copy = xstrdup(t->urls), *save = NULL;

	for (char *u = strtok_r(copy, " ", &save); u != NULL; u = strtok_r(NULL, " ", &save)) {
		LDAP *ld = ldap_open_urls(t, u, why_r);

		if (ld == NULL) {
			free(copy);
			return -1;
		}
		ldap_unbind_ext(ld, NULL, NULL);
	}
	free(copy);
	return 0;
}

/* ---- open and close ---- */

static void ldap_close(struct map_impl *t)
{
	map_pool_free(&t->pool);
	if (t->attrs != NULL)
		for (char **a = t->attrs; *a; a++)
			free(*a);
	free(t->attrs);
	free(t->urls);
	map_query_cfg_free(&t->cfg);
	free(t->table);
	free(t);
}

/* Append the names in list (comma/space separated) to t->attrs; returns the new count. */
static int ldap_attrs_add(struct map_impl *t, int n, const char *list)
{
	static const char sep[] = ", \t\r\n";
	char *copy = xstrdup(list), *save = NULL;

	for (char *w = strtok_r(copy, sep, &save); w != NULL; w = strtok_r(NULL, sep, &save)) {
		t->attrs = xrealloc(t->attrs, (size_t)(n + 2) * sizeof(*t->attrs));
		t->attrs[n++] = xstrdup(w);
		t->attrs[n] = NULL;
	}
	free(copy);
	return n;
}

/* server_host as URLs for ldap_initialize(); -1 with *why_r for ldaps:// (refused). */
static int ldap_servers(struct map_impl *t, long port, char **why_r)
{
	static const char sep[] = ", \t\r\n";
	const char *hosts = map_query_cfg_str(t->cfg, "server_host", "localhost");
	char *copy = xstrdup(hosts), *save = NULL;
	struct buf urls = BUF_INIT;

	for (char *h = strtok_r(copy, sep, &save); h != NULL; h = strtok_r(NULL, sep, &save)) {
		if (urls.len > 0)
			buf_putc(&urls, ' ');
		if (ldap_is_ldap_url(h)) {
			LDAPURLDesc *u = NULL;
			int rc = ldap_url_parse(h, &u);

			if (rc != LDAP_URL_SUCCESS) {
				msg_error("%s: error parsing URL %s: %d: %s; skipping",
					  map_query_cfg_where(t->cfg, "server_host"), h, rc,
					  ldap_err2string(rc));
				if (urls.len > 0)
					buf_truncate(&urls, urls.len - 1);
				continue;
			}
			if (strcasecmp(u->lud_scheme, "ldaps") == 0) {
				*why_r = xasprintf("%s: server_host %s: ldaps:// (LDAP over TLS) is not "
						   "supported by mxgate",
						   map_query_cfg_where(t->cfg, "server_host"), h);
				ldap_free_urldesc(u);
				free(copy);
				buf_free(&urls);
				return -1;
			}
			if (strcasecmp(u->lud_scheme, "ldap") != 0 && t->version != LDAP_VERSION3) {
				msg_warn("%s: URL scheme %s requires protocol version 3",
					 map_query_cfg_where(t->cfg, "server_host"), u->lud_scheme);
				t->version = LDAP_VERSION3;
			}
			ldap_free_urldesc(u);
			buf_puts(&urls, h);
		} else if (strrchr(h, ':') != NULL) {
			buf_printf(&urls, "ldap://%s", h);
		} else {
			buf_printf(&urls, "ldap://%s:%ld", h, port);
		}
	}
	free(copy);
	t->urls = buf_steal(&urls);
	if (t->urls == NULL)
		t->urls = xstrdup("");
	return 0;
}

/* The settings mxgate refuses (see the header); -1 with *why_r naming the first. */
static int ldap_refuse(const struct map_impl *t, char **why_r)
{
	const char *bind = map_query_cfg_str(t->cfg, "bind", "yes");
	int tls;

	if (map_query_cfg_refuse(t->cfg, ldap_refused, why_r) < 0)
		return -1;
	if ((tls = map_query_cfg_bool(t->cfg, "start_tls", 0, why_r)) < 0)
		return -1;
	if (tls) {
		*why_r = xasprintf("%s: setting \"start_tls = yes\" is not supported by mxgate",
				   map_query_cfg_where(t->cfg, "start_tls"));
		return -1;
	}
	if (strcasecmp(bind, "sasl") == 0) {
		*why_r = xasprintf("%s: setting \"bind = sasl\" is not supported by mxgate",
				   map_query_cfg_where(t->cfg, "bind"));
		return -1;
	}
	return 0;
}

static struct map_impl *ldap_open(const char *name, char **why_r)
{
	struct map_impl *t = xcalloc(1, sizeof(*t));
	const char *scope, *bind;
	char *why = NULL;
	long port, version, timeout, deref;
	int referrals, n;

	t->table = xasprintf("ldap:%s", name);
	if ((t->cfg = map_query_cfg_open("ldap", name, &why)) == NULL)
		goto fail;
	if (ldap_refuse(t, &why) < 0)
		goto fail;
	if ((port = map_query_cfg_int(t->cfg, "server_port", LDAP_PORT, &why)) < 0
	    || (version = map_query_cfg_int(t->cfg, "version", 2, &why)) < 0
	    || (timeout = map_query_cfg_int(t->cfg, "timeout", LDAP_TIMEOUT_DEFAULT, &why)) < 0
	    || (t->expansion_limit = map_query_cfg_int(t->cfg, "expansion_limit", 0, &why)) < 0
	    || (t->size_limit = map_query_cfg_int(t->cfg, "size_limit", t->expansion_limit,
						  &why)) < 0
	    || (t->recursion_limit = map_query_cfg_int(t->cfg, "recursion_limit",
						       LDAP_RECURSION_DEFAULT, &why)) < 0
	    || (deref = map_query_cfg_int(t->cfg, "dereference", 0, &why)) < 0
	    || map_query_cfg_int(t->cfg, "debuglevel", 0, &why) < 0
	    || (referrals = map_query_cfg_bool(t->cfg, "chase_referrals", 0, &why)) < 0)
		goto fail;
	if (t->recursion_limit < 1) {
		why = xasprintf("%s: bad numerical configuration: recursion_limit = %s (min 1)",
				map_query_cfg_where(t->cfg, "recursion_limit"),
				map_query_cfg_str(t->cfg, "recursion_limit", ""));
		goto fail;
	}
	if (version != 2 && version != 3) {
		msg_warn("%s: unknown version %ld, using 2", map_query_cfg_where(t->cfg, "version"),
			 version);
		version = 2;
	}
	t->version = version == 3 ? LDAP_VERSION3 : LDAP_VERSION2;
	t->timeout = (int)timeout;
	if (deref > 3) {
		msg_warn("%s: unrecognized value %ld specified for dereference; using 0",
			 map_query_cfg_where(t->cfg, "dereference"), deref);
		deref = 0;
	}
	t->dereference = (int)deref;
	t->chase_referrals = referrals == 1;
	if (ldap_servers(t, port, &why) < 0)
		goto fail;
	scope = map_query_cfg_str(t->cfg, "scope", "sub");
	if (strcasecmp(scope, "one") == 0) {
		t->scope = LDAP_SCOPE_ONELEVEL;
	} else if (strcasecmp(scope, "base") == 0) {
		t->scope = LDAP_SCOPE_BASE;
	} else {
		if (strcasecmp(scope, "sub") != 0)
			msg_warn("%s: unrecognized value %s specified for scope; using sub",
				 map_query_cfg_where(t->cfg, "scope"), scope);
		t->scope = LDAP_SCOPE_SUBTREE;
	}
	bind = map_query_cfg_str(t->cfg, "bind", "yes");
	if (strcasecmp(bind, "yes") == 0 || strcasecmp(bind, "simple") == 0) {
		t->bind = true;
	} else if (strcasecmp(bind, "no") == 0 || strcasecmp(bind, "none") == 0) {
		t->bind = false;
	} else {
		why = xasprintf("%s: unsupported parameter value: bind = %s",
				map_query_cfg_where(t->cfg, "bind"), bind);
		goto fail;
	}
	t->bind_dn = map_query_cfg_str(t->cfg, "bind_dn", "");
	t->bind_pw = map_query_cfg_str(t->cfg, "bind_pw", "");
	t->search_base = map_query_cfg_str(t->cfg, "search_base", "");
	t->query = map_query_cfg_str(t->cfg, "query_filter", "(mailacceptinggeneralid=%s)");
	t->result_format = map_query_cfg_str(t->cfg, "result_format",
					     map_query_cfg_str(t->cfg, "result_filter", "%s"));
	/* Every template before the first expansion (map_query.h). */
	if ((n = map_query_parse(t->cfg, t->search_base, true, &why)) < 0)
		goto bad_template;
	t->dynamic_base = n > 0;
	if ((n = map_query_parse(t->cfg, t->query, true, &why)) < 0)
		goto bad_template;
	if (n == 0)
		msg_warn("%s: Fixed query_filter %s is probably useless",
			 map_query_cfg_where(t->cfg, "query_filter"), t->query);
	if (map_query_parse(t->cfg, t->result_format, false, &why) < 0)
		goto bad_template;
	for (const char *c = "cache\0cache_expiry\0cache_size\0"; *c; c += strlen(c) + 1)
		if (map_query_cfg_str(t->cfg, c, NULL) != NULL)
			msg_warn("%s: ignoring %s", map_query_cfg_where(t->cfg, c), c);
	/* terminal, leaf, ordinary, special (dict_ldap's order) */
	n = ldap_attrs_add(t, 0, map_query_cfg_str(t->cfg, "terminal_result_attribute", ""));
	t->num_terminal = n;
	n = ldap_attrs_add(t, n, map_query_cfg_str(t->cfg, "leaf_result_attribute", ""));
	t->num_leaf = n - t->num_terminal;
	n = ldap_attrs_add(t, n, map_query_cfg_str(t->cfg, "result_attribute", "maildrop"));
	t->num_attributes = n;
	n = ldap_attrs_add(t, n, map_query_cfg_str(t->cfg, "special_result_attribute", ""));
	if (t->attrs == NULL)
		t->attrs = xcalloc(1, sizeof(*t->attrs));
	t->pool = map_pool_create(t->table, &ldap_pool_ops, t, t->timeout, LDAP_IDLE_CLOSE);
	return t;
bad_template: {
		char *w = why;

		why = xasprintf("%s: %s", map_query_cfg_path(t->cfg), w);
		free(w);
	}
fail:
	*why_r = why;
	ldap_close(t);
	return NULL;
}

const struct map_type map_type_ldap = {
	.name = "ldap",
	.flags = MAPT_REMOTE,
	.open = ldap_open,
	.lookup = ldap_lookup,
	.watch = NULL,
	.close = ldap_close,
	.probe = ldap_probe,
};
