#include "smtp/service.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/conf.h"
#include "log/log.h"
#include "policy/addrlist.h"
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
		"PIPELINING", "SIZE", "VRFY", "ENHANCEDSTATUSCODES", "8BITMIME", "SMTPUTF8",
		"CHUNKING",
	};
	char *const *discard;
	size_t ndiscard, i, k;

	discard = conf_list(cf, P_smtpd_discard_ehlo_keywords, &ndiscard);
	ss->ehlo = xcalloc(sizeof(keywords) / sizeof(keywords[0]), sizeof(*ss->ehlo));
	for (i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++) {
		int drop = 0;

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
		if (strcmp(keywords[i], "SIZE") == 0 && ss->size_limit > 0)
			ss->ehlo[ss->nehlo++] = xasprintf("SIZE %ld", ss->size_limit);
		else
			ss->ehlo[ss->nehlo++] = xstrdup(keywords[i]);
	}
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
static struct smtp_service *
service_create(const struct conf_service *cs, const struct conf_view *cf,
		       struct recipient_policy *policy, struct restrict_policy *restrictions,
		       char **err_r)
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
	service_ehlo_init(ss, cf);
	if (service_forbid_init(&ss->forbid, cf, err_r) < 0)
		goto fail;
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
	for (i = 0; i < ss->nnoop; i++)
		free(ss->noop_cmds[i]);
	free(ss->noop_cmds);
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

	if ((normal = service_create(cs, cs->view, NULL, NULL, err_r)) == NULL)
		return -1;
	if ((stress = service_create(cs, cs->view_stress, normal->policy, normal->acl,
				     err_r)) == NULL) {
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

