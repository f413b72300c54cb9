#include "smtp/service.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/conf.h"
#include "log/log.h"
#include "milter/milter_client.h"
#include "policy/addrlist.h"
#include "policy/maps.h"
#include "policy/recipient.h"
#include "policy/restrict.h"
#include "util/xalloc.h"

static int
service_is_header(const char *verb, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)verb[i];

		if (c == ':')
			return i > 0;
		if (c <= ' ' || c >= 0x7f)
			return 0;
	}
	return 0;
}

int
smtp_service_forbidden(const struct smtp_service *ss, const char *verb, size_t len)
{
	const struct smtp_forbid *f = &ss->forbid;
	char *v = xstrndup(verb, len);
	size_t i;
	int hit = service_is_header(verb, len);

	for (i = 0; i < f->nwords && !hit; i++)
		hit = strcasecmp(f->words[i], v) == 0;
	for (i = 0; i < f->nres && !hit; i++)
		hit = regexec(&f->res[i], v, 0, NULL, 0) == 0;
	free(v);
	return hit;
}

struct smtp_milter_maps *
smtp_milter_maps_ref(struct smtp_milter_maps *m)
{
	__atomic_add_fetch(&m->refs, 1, __ATOMIC_RELAXED);
	return m;
}

void
smtp_milter_maps_unref(struct smtp_milter_maps **mp)
{
	struct smtp_milter_maps *m = *mp;

	*mp = NULL;
	if (m == NULL || __atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	maplist_free(&m->l);
	free(m);
}

int
smtp_service_noop_command(const struct smtp_service *ss, const char *verb, size_t len)
{
	size_t i;

	for (i = 0; i < ss->nnoop; i++)
		if (strlen(ss->noop_cmds[i]) == len && strncasecmp(ss->noop_cmds[i], verb, len) == 0)
			return 1;
	return 0;
}

static int
service_forbid_init(struct smtp_forbid *f, const struct conf_view *cf, char **err_r)
{
	char *const *items;
	size_t n, i;

	items = conf_list(cf, P_smtpd_forbidden_commands, &n);
	for (i = 0; i < n; i++) {
		const char *it = items[i];

		if (strncasecmp(it, "regexp:", 7) == 0) {
			/* regexp:{{/pattern/flags result}} or regexp:{/pattern/ result} */
			const char *p = it + 7, *pat, *end;
			char *re;
			int flags = REG_EXTENDED | REG_ICASE | REG_NOSUB;

			while (*p == '{' || *p == ' ')
				p++;
			if (*p != '/' || (end = strchr(p + 1, '/')) == NULL) {
				*err_r = xasprintf("smtpd_forbidden_commands: cannot parse \"%s\"", it);
				return -1;
			}
			pat = p + 1;
			re = xstrndup(pat, (size_t)(end - pat));
			for (p = end + 1; *p && *p != ' ' && *p != '}'; p++)
				if (*p == 'i')
					flags ^= REG_ICASE;
			f->res = xrealloc(f->res, (f->nres + 1) * sizeof(*f->res));
			if (regcomp(&f->res[f->nres], re, flags) != 0) {
				*err_r = xasprintf("smtpd_forbidden_commands: bad regular expression "
						   "\"%s\"", re);
				free(re);
				return -1;
			}
			f->nres++;
			free(re);
		} else if (strchr(it, ':') != NULL) {
			*err_r = xasprintf("smtpd_forbidden_commands: unsupported table \"%s\"", it);
			return -1;
		} else {
			f->words = xrealloc(f->words, (f->nwords + 1) * sizeof(*f->words));
			f->words[f->nwords++] = xstrdup(it);
		}
	}
	return 0;
}

static void
service_ehlo_init(struct smtp_service *ss, const struct conf_view *cf)
{
	static const char *const keywords[] = {
		"PIPELINING", "SIZE", "VRFY", "STARTTLS", "ENHANCEDSTATUSCODES", "8BITMIME",
		"SMTPUTF8", "CHUNKING",
	};
	char *const *discard;
	size_t ndiscard, i, k;

	discard = conf_list(cf, P_smtpd_discard_ehlo_keywords, &ndiscard);
	ss->ehlo = xcalloc(sizeof(keywords) / sizeof(keywords[0]), sizeof(*ss->ehlo));
	ss->ehlo_starttls = (size_t)-1;
	for (i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++) {
		int drop = 0;

		/* Offered at may and encrypt, certificate or not (then STARTTLS gets 454). */
		if (strcmp(keywords[i], "STARTTLS") == 0 && ss->tls.level == TLS_LEVEL_NONE)
			continue;
		if (strcmp(keywords[i], "VRFY") == 0 && ss->vrfy_disabled)
			continue;
		if (strcmp(keywords[i], "SMTPUTF8") == 0 && !ss->smtputf8)
			continue;
		for (k = 0; k < ndiscard; k++)
			if (strcasecmp(discard[k], keywords[i]) == 0)
				drop = 1;
		if (drop)
			continue;
		if (strcmp(keywords[i], "CHUNKING") == 0)
			ss->chunking = 1;
		if (strcmp(keywords[i], "STARTTLS") == 0)
			ss->ehlo_starttls = ss->nehlo;
		if (strcmp(keywords[i], "SIZE") == 0 && ss->size_limit > 0)
			ss->ehlo[ss->nehlo++] = xasprintf("SIZE %ld", ss->size_limit);
		else
			ss->ehlo[ss->nehlo++] = xstrdup(keywords[i]);
	}
}

/* ---- cleanup(8) settings ------------------------------------------------ */

/* cleanup_check_fn over the service's header_checks and body_checks tables. */
static int
service_check(void *ctx, enum cleanup_where where, const char *text, char **action_r)
{
	const struct smtp_service *ss = ctx;
	const struct maplist *l = where == CLEANUP_HEADER ? ss->header_checks
				  : where == CLEANUP_MILTER ? ss->milter_checks
				  : where == CLEANUP_MIME ? ss->mime_checks
				  : where == CLEANUP_NESTED ? ss->nested_checks : ss->body_checks;

	switch (maplist_lookup(l, text, action_r, NULL)) {
	case MAP_FOUND:
		return 1;
	case MAP_NOTFOUND:
		return 0;
	default:
		return -1;
	}
}

/*
 * An action that needs a queue (HOLD, FILTER, REDIRECT, BCC, and PASS and
 * DELAY, which would skip checks or delay mail) in a check table that is a
 * file: refused when the service is built (`mxgate check` names file and
 * line).  A table we cannot read this way still answers at run time, and a
 * match on such an action then tempfails (deliver/cleanup.h).
 */
static int
service_checks_scan(const struct map *m, const char *param, char **err_r)
{
	static const char *const refused[] = { "HOLD", "FILTER", "REDIRECT", "BCC", "PASS",
					       "DELAY" };
	const char *type = map_type_name(m), *spec = map_spec(m), *path;
	int pattern = strcmp(type, "regexp") == 0 || strcmp(type, "pcre") == 0;
	char line[4096];
	FILE *fp;
	int lineno = 0, ret = 0;
	/* milter_header_checks: HOLD is the quarantine answer; PASS and DELAY are warned about */
	int milter = strcmp(param, "milter_header_checks") == 0;

	if (!pattern && strcmp(type, "texthash") != 0)
		return 0;
	path = strchr(spec, ':');
	if (strncmp(spec, "proxy:", 6) == 0)
		path = strchr(spec + 6, ':');
	if (path == NULL || (fp = fopen(path + 1, "r")) == NULL)
		return 0;
	while (ret == 0 && fgets(line, sizeof(line), fp) != NULL) {
		char *p = line, *act;
		size_t n;

		lineno++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '#' || *p == '\n' || *p == '\0' || line[0] == ' ' || line[0] == '\t')
			continue;
		if (pattern) {
			char delim;

			if (strncasecmp(p, "if", 2) == 0 || strncasecmp(p, "endif", 5) == 0)
				continue;
			if (*p == '!')
				p++;
			delim = *p++;
			while (*p && *p != delim) {
				if (*p == '\\' && p[1])
					p++;
				p++;
			}
			if (*p == delim)
				p++;
			while (isalpha((unsigned char)*p))
				p++;
		} else {
			p += strcspn(p, " \t\n");
		}
		while (*p == ' ' || *p == '\t')
			p++;
		act = p;
		n = strcspn(act, " \t\n");
		for (size_t i = milter ? 1 : 0; i < (milter ? 4 : sizeof(refused) / sizeof(refused[0]));
		     i++) {
			if (n == strlen(refused[i]) && strncasecmp(act, refused[i], n) == 0) {
				*err_r = xasprintf("%s: %s, line %d: %s is not implemented by mxgate, "
						   "refused: mxgate has no queue to hold, filter, "
						   "redirect or copy mail in (a match would be "
						   "deferred with 451)", param, path + 1, lineno,
						   refused[i]);
				ret = -1;
				break;
			}
		}
	}
	fclose(fp);
	return ret;
}

static struct maplist *
service_checks_open(const struct conf_view *cf, enum param_id id, const char *param,
		    char **err_r)
{
	size_t n;
	char *const *specs = conf_list(cf, id, &n);
	char *err = NULL;
	struct maplist *l;

	if ((l = maplist_open(specs, n, &err)) == NULL) {
		*err_r = xasprintf("%s: %s", param, err);
		free(err);
		return NULL;
	}
	maplist_set_title(l, param);
	for (size_t i = 0; i < maplist_count(l); i++) {
		if (service_checks_scan(maplist_get(l, i), param, err_r) < 0) {
			maplist_free(&l);
			return NULL;
		}
	}
	/*
	 * The checks run on the event loop, line by line: only tables that
	 * answer from memory (regexp, pcre, texthash, inline, static).
	 */
	if (!maplist_in_memory(l)) {
		for (size_t i = 0; i < maplist_count(l); i++) {
			if (!map_in_memory(maplist_get(l, i))) {
				*err_r = xasprintf("%s: table %s is not supported: mxgate runs the "
						   "content checks with tables that are read into "
						   "memory (regexp, pcre, texthash, inline, static)",
						   param, map_spec(maplist_get(l, i)));
				break;
			}
		}
		maplist_free(&l);
		return NULL;
	}
	return l;
}

/* The addresses of inet_interfaces (all: every interface's), for permit_inet_interfaces. */
static void
service_local_addrs(const struct conf_view *cf, char ***items, size_t *n)
{
	size_t ni;
	char *const *ifs = conf_list(cf, P_inet_interfaces, &ni);

	for (size_t i = 0; i < ni; i++) {
		if (strcasecmp(ifs[i], "all") == 0) {
			struct ifaddrs *ifa, *p;
			char a[INET6_ADDRSTRLEN];

			if (getifaddrs(&ifa) < 0)
				continue;
			for (p = ifa; p != NULL; p = p->ifa_next) {
				const void *src;

				if (p->ifa_addr == NULL)
					continue;
				if (p->ifa_addr->sa_family == AF_INET)
					src = &((struct sockaddr_in *)(void *)p->ifa_addr)->sin_addr;
				else if (p->ifa_addr->sa_family == AF_INET6)
					src = &((struct sockaddr_in6 *)(void *)p->ifa_addr)->sin6_addr;
				else
					continue;
				if (inet_ntop(p->ifa_addr->sa_family, src, a, sizeof(a)) == NULL)
					continue;
				*items = xrealloc(*items, (*n + 1) * sizeof(**items));
				(*items)[(*n)++] = xstrdup(a);
			}
			freeifaddrs(ifa);
		} else if (strcasecmp(ifs[i], "loopback-only") == 0) {
			*items = xrealloc(*items, (*n + 2) * sizeof(**items));
			(*items)[(*n)++] = xstrdup("127.0.0.1");
			(*items)[(*n)++] = xstrdup("::1");
		} else {
			*items = xrealloc(*items, (*n + 1) * sizeof(**items));
			(*items)[(*n)++] = xstrdup(ifs[i]);
		}
	}
}

static int
service_cleanup_init(struct smtp_service *ss, const struct conf_view *cf, char **err_r)
{
	struct cleanup_conf *cc = &ss->cleanup;
	char *const *v;
	char **items = NULL;
	size_t n, nitems = 0;
	int ret = 0;

	cc->header_size_limit = (size_t)conf_int(cf, P_header_size_limit);
	cc->line_limit = (size_t)conf_int(cf, P_line_length_limit);
	cc->hopcount_limit = conf_int(cf, P_hopcount_limit);
	cc->body_checks_size_limit = conf_int(cf, P_body_checks_size_limit);
	cc->hostname = ss->hostname;
	cc->myorigin = conf_str(cf, P_myorigin);
	cc->rcpt_witheld = conf_str(cf, P_undisclosed_recipients_header);
	v = conf_list(cf, P_message_drop_headers, &n);
	cc->drop = xcalloc(n + 1, sizeof(*cc->drop));
	for (size_t i = 0; i < n; i++)
		cc->drop[cc->ndrop++] = xstrdup(v[i]);
	cleanup_charset(cc->reject_chars, &cc->have_reject,
			conf_str(cf, P_message_reject_characters));
	cleanup_charset(cc->strip_chars, &cc->have_strip, conf_str(cf, P_message_strip_characters));
	ss->always_add_hdrs = conf_bool(cf, P_always_add_missing_headers);
	ss->orig_rcpt = conf_bool(cf, P_enable_original_recipient);
	if ((ss->header_checks = service_checks_open(cf, P_header_checks, "header_checks",
						     err_r)) == NULL
	    || (ss->body_checks = service_checks_open(cf, P_body_checks, "body_checks",
						      err_r)) == NULL)
		return -1;
	if ((ss->mime_checks = service_checks_open(cf, P_mime_header_checks,
						   "mime_header_checks", err_r)) == NULL
	    || (ss->nested_checks = service_checks_open(cf, P_nested_header_checks,
						      "nested_header_checks", err_r)) == NULL
	    || (ss->milter_checks = service_checks_open(cf, P_milter_header_checks,
						      "milter_header_checks", err_r)) == NULL)
		return -1;
	cc->milter_header_checks = !maplist_empty(ss->milter_checks);
	cc->mime_header_checks = !maplist_empty(ss->mime_checks);
	cc->nested_header_checks = !maplist_empty(ss->nested_checks);
	cc->header_checks = !maplist_empty(ss->header_checks);
	cc->body_checks = !maplist_empty(ss->body_checks);
	cc->check = service_check;
	cc->check_ctx = ss;

	v = conf_list(cf, P_local_header_rewrite_clients, &n);
	for (size_t i = 0; i < n && ret == 0; i++) {
		if (strcasecmp(v[i], "permit_inet_interfaces") == 0) {
			service_local_addrs(cf, &items, &nitems);
		} else if (strcasecmp(v[i], "permit_mynetworks") == 0) {
			size_t nm;
			char *const *nets = conf_list(cf, P_mynetworks, &nm);

			items = xrealloc(items, (nitems + nm + 1) * sizeof(*items));
			for (size_t k = 0; k < nm; k++)
				items[nitems++] = xstrdup(nets[k]);
		} else if (strcasecmp(v[i], "static:all") == 0) {
			ss->hdr_rewrite_all = 1;
		} else if (strcasecmp(v[i], "permit_sasl_authenticated") == 0
			   || strcasecmp(v[i], "permit_tls_clientcerts") == 0
			   || strcasecmp(v[i], "permit_tls_all_clientcerts") == 0) {
			;	/* mxgate has no SASL, and no client certificates yet */
		} else {
			*err_r = xasprintf("local_header_rewrite_clients: %s is not implemented by "
					   "mxgate (permit_inet_interfaces, permit_mynetworks, "
					   "permit_sasl_authenticated and static:all are)", v[i]);
			ret = -1;
		}
	}
	if (ret == 0 && (ss->hdr_rewrite = addrlist_create_flags(items, nitems,
								  ADDRLIST_ADDR_ONLY, err_r)) == NULL) {
		char *e = *err_r;

		*err_r = xasprintf("local_header_rewrite_clients: %s", e);
		free(e);
		ret = -1;
	}
	for (size_t i = 0; i < nitems; i++)
		free(items[i]);
	free(items);
	return ret;
}

int
smtp_service_adds_headers(const struct smtp_service *ss, const char *name,
			  const struct sockaddr *sa)
{
	return ss->always_add_hdrs || ss->hdr_rewrite_all
	       || (ss->hdr_rewrite != NULL && addrlist_match(ss->hdr_rewrite, name, sa));
}

static void service_destroy(struct smtp_service *ss);

/* restrict_problem_fn: the first problem, as "<param>: <why>". */
static void
service_restrict_problem(void *ctx, const char *param, const char *item, const char *why)
{
	char **err_r = ctx;

	(void)item;
	if (*err_r == NULL)
		*err_r = xasprintf("%s: %s", param, why);
}

/* Everything a session of this service needs from one view (normal or stress). */
/*
 * The TLS level and context (normal NULL: build it; else share the normal
 * data's).  Postfix's show-stoppers are errors; no certificate is a
 * warning, as in Postfix, and STARTTLS then gets 454.
 */
static int
service_tls_init(struct smtp_service *ss, const struct conf_service *cs,
		 const struct conf_view *cf, const struct smtp_service *normal, char **err_r)
{
	char   *warn = NULL, *err = NULL;

	if (tls_policy_read(cf, &ss->tls, err_r) < 0)
		return -1;
	if (ss->tls.level == TLS_LEVEL_NONE)
		return 0;
	if (normal != NULL) {
		ss->tls_srv = tls_server_ref(normal->tls_srv);
		return 0;
	}
	if (tls_server_build(cf, &ss->tls, &ss->tls_srv, &warn, &err) < 0) {
		*err_r = err;
		return -1;
	}
	if (warn != NULL) {
		msg_warn("service %s: %s", cs->name, warn);
		free(warn);
	}
	return 0;
}

static struct smtp_service *
service_create(const struct conf_service *cs, const struct conf_view *cf,
		       struct recipient_policy *policy, struct restrict_policy *restrictions,
		       const struct smtp_service *normal, char **err_r)
{
	struct smtp_service *ss = xcalloc(1, sizeof(*ss));
	struct recipient_conf *rc;
	char *const *exc;
	size_t nexc;
	const char *bl;

	ss->cf = cf;
	ss->service_name = xstrdup(cs->name);
	ss->anvil_service = xstrdup(*conf_str(cf, P_mxgate_anvil_service) != '\0'
				    ? conf_str(cf, P_mxgate_anvil_service) : cs->name);
	ss->hostname = xstrdup(conf_str(cf, P_myhostname));
	ss->banner = xstrdup(conf_str(cf, P_smtpd_banner));
	ss->soft_limit = conf_int(cf, P_smtpd_soft_error_limit);
	ss->hard_limit = conf_int(cf, P_smtpd_hard_error_limit);
	ss->junk_limit = conf_int(cf, P_smtpd_junk_command_limit);
	ss->sleep_time = conf_time(cf, P_smtpd_error_sleep_time);
	ss->timeout = conf_time(cf, P_smtpd_timeout);
	ss->deadline = conf_bool(cf, P_smtpd_per_request_deadline);
	ss->min_data_rate = conf_int(cf, P_smtpd_min_data_rate);
	ss->body_memory_limit = conf_int(cf, P_mxgate_message_memory_limit);
	ss->line_limit = conf_int(cf, P_line_length_limit);
	ss->size_limit = conf_int(cf, P_message_size_limit);
	ss->queue_minfree = conf_int(cf, P_queue_minfree);
	ss->rcpt_limit = conf_int(cf, P_smtpd_recipient_limit);
	ss->overshoot_limit = conf_int(cf, P_smtpd_recipient_overshoot_limit);
	ss->soft_bounce = conf_bool(cf, P_soft_bounce);
	ss->helo_required = conf_bool(cf, P_smtpd_helo_required);
	ss->vrfy_disabled = conf_bool(cf, P_disable_vrfy_command);
	ss->forbid_pipelining = conf_bool(cf, P_smtpd_forbid_unauth_pipelining);
	ss->smtputf8 = conf_bool(cf, P_smtputf8_enable);
	ss->bare_lf_code = (int)conf_int(cf, P_smtpd_forbid_bare_newline_reject_code);
	ss->conn_count_limit = conf_int(cf, P_smtpd_client_connection_count_limit);
	ss->conn_rate_limit = conf_int(cf, P_smtpd_client_connection_rate_limit);
	ss->msg_rate_limit = conf_int(cf, P_smtpd_client_message_rate_limit);
	ss->rcpt_rate_limit = conf_int(cf, P_smtpd_client_recipient_rate_limit);
	ss->v4_prefix = (int)conf_int(cf, P_smtpd_client_ipv4_prefix_length);
	ss->v6_prefix = (int)conf_int(cf, P_smtpd_client_ipv6_prefix_length);
	ss->newtls_rate_limit = conf_int(cf, P_smtpd_client_new_tls_session_rate_limit);
	/* Postfix talks to anvil only when one of its limits is set (the count limit is, by default). */
	ss->anvil_on = ss->conn_count_limit > 0 || ss->conn_rate_limit > 0 || ss->msg_rate_limit > 0
		|| ss->rcpt_rate_limit > 0
		|| conf_int(cf, P_smtpd_client_new_tls_session_rate_limit) > 0
		|| conf_int(cf, P_smtpd_client_auth_rate_limit) > 0;
	bl = conf_str(cf, P_smtpd_forbid_bare_newline);
	if (strcasecmp(bl, "reject") == 0) {
		ss->bare_lf_reject = 1;
	} else if (strcasecmp(bl, "normalize") != 0 && strcasecmp(bl, "yes") != 0) {
		/* Never let a bare LF end DATA (SMTP smuggling, CVE-2023-51764). */
		msg_warn("service %s: smtpd_forbid_bare_newline = %s is not supported, because it "
			 "allows SMTP smuggling; using \"normalize\"", cs->name, bl);
	}
	if (service_tls_init(ss, cs, cf, normal, err_r) < 0)
		goto fail;
	service_ehlo_init(ss, cf);
	if (service_forbid_init(&ss->forbid, cf, err_r) < 0)
		goto fail;
	if (service_cleanup_init(ss, cf, err_r) < 0)
		goto fail;
	if (*conf_str(cf, P_smtpd_milters) != '\0') {
		char *e = NULL;

		if ((ss->milters = milter_conf_new(conf_str(cf, P_smtpd_milters), cf, &e)) == NULL) {
			*err_r = xasprintf("smtpd_milters: %s", e);
			free(e);
			goto fail;
		}
		if (milter_conf_count(ss->milters) == 0)
			milter_conf_free(&ss->milters);
	}
	ss->view = cf;
	{
		size_t n;
		char *const *specs = conf_list(cf, P_smtpd_milter_maps, &n);
		char *e = NULL;
		struct maplist *l;

		if (n > 0) {
			if ((l = maplist_open(specs, n, &e)) == NULL) {
				*err_r = xasprintf("smtpd_milter_maps: %s", e);
				free(e);
				goto fail;
			}
			maplist_set_title(l, "smtpd_milter_maps");
			ss->milter_maps = xcalloc(1, sizeof(*ss->milter_maps));
			ss->milter_maps->l = l;
			ss->milter_maps->refs = 1;
		}
	}
	{
		char *const *noop = conf_list(cf, P_smtpd_noop_commands, &ss->nnoop);

		ss->noop_cmds = xcalloc(ss->nnoop + 1, sizeof(*ss->noop_cmds));
		for (size_t i = 0; i < ss->nnoop; i++)
			ss->noop_cmds[i] = xstrdup(noop[i]);
	}
	exc = conf_list(cf, P_smtpd_forbid_bare_newline_exclusions, &nexc);
	if ((ss->bare_lf_exclusions = addrlist_create(exc, nexc, err_r)) == NULL) {
		char *e = *err_r;

		*err_r = xasprintf("smtpd_forbid_bare_newline_exclusions: %s", e);
		free(e);
		goto fail;
	}
	exc = conf_list(cf, P_smtpd_client_event_limit_exceptions, &nexc);
	if ((ss->exceptions = addrlist_create(exc, nexc, err_r)) == NULL) {
		char *e = *err_r;

		*err_r = xasprintf("smtpd_client_event_limit_exceptions: %s", e);
		free(e);
		goto fail;
	}
	if (policy == NULL) {
		rc = recipient_conf_from_view(cf);
		policy = recipient_policy_create(rc, err_r);
		free(rc);
		if (policy == NULL)
			goto fail;
	} else {
		policy = recipient_policy_ref(policy);
	}
	ss->policy = policy;
	if (restrictions == NULL) {
		*err_r = NULL;
		ss->acl = restrict_create(cf, policy, service_restrict_problem, err_r);
		if (ss->acl == NULL)
			goto fail;
	} else {
		ss->acl = restrict_ref(restrictions);
	}
	return ss;
fail:
	service_destroy(ss);
	return NULL;
}

static void
service_destroy(struct smtp_service *ss)
{
	size_t i;

	if (ss == NULL)
		return;
	for (i = 0; i < ss->forbid.nwords; i++)
		free(ss->forbid.words[i]);
	free(ss->forbid.words);
	for (i = 0; i < ss->forbid.nres; i++)
		regfree(&ss->forbid.res[i]);
	free(ss->forbid.res);
	for (i = 0; i < ss->nehlo; i++)
		free(ss->ehlo[i]);
	free(ss->ehlo);
	if (ss->policy)
		recipient_policy_free(&ss->policy);
	restrict_free(&ss->acl);
	if (ss->exceptions)
		addrlist_free(&ss->exceptions);
	if (ss->bare_lf_exclusions)
		addrlist_free(&ss->bare_lf_exclusions);
	for (i = 0; i < ss->cleanup.ndrop; i++)
		free(ss->cleanup.drop[i]);
	free(ss->cleanup.drop);
	maplist_free(&ss->header_checks);
	maplist_free(&ss->body_checks);
	maplist_free(&ss->mime_checks);
	maplist_free(&ss->nested_checks);
	maplist_free(&ss->milter_checks);
	if (ss->hdr_rewrite)
		addrlist_free(&ss->hdr_rewrite);
	for (i = 0; i < ss->nnoop; i++)
		free(ss->noop_cmds[i]);
	free(ss->noop_cmds);
	tls_server_free(&ss->tls_srv);
	milter_conf_free(&ss->milters);
	smtp_milter_maps_unref(&ss->milter_maps);
	free(ss->service_name);
	free(ss->anvil_service);
	free(ss->hostname);
	free(ss->banner);
	free(ss);
}

int
smtp_service_build(const struct conf_service *cs, void **normal_r, void **stress_r,
		      char **err_r)
{
	struct smtp_service *normal, *stress;

	if ((normal = service_create(cs, cs->view, NULL, NULL, NULL, err_r)) == NULL)
		return -1;
	if ((stress = service_create(cs, cs->view_stress, normal->policy, normal->acl,
				     normal, err_r)) == NULL) {
		service_destroy(normal);
		return -1;
	}
	*normal_r = normal;
	*stress_r = stress;
	return 0;
}

void
smtp_service_data_free(void *normal, void *stress)
{
	service_destroy(stress);
	service_destroy(normal);
}

