/*
 * services: which master.cf inet services mxgate opens, and how (issue 11).
 *
 * conf.c builds one conf_service per inet line; this file decides the two
 * cases where a line is not served as an ordinary smtpd:
 *
 * - a submission-style service (its own -o smtpd_sasl_auth_enable = yes, or
 *   its own -o restriction list that ends in "permit_sasl_authenticated,
 *   reject"):
 *   mxgate offers no AUTH and never relays, so such a service would only
 *   turn every client away.  It is not opened, with a warning at its line.
 * - an inet postscreen line: mxgate has no postscreen(8).  The port is
 *   served by smtpd with the settings of the pass service that postscreen
 *   hands clients to (smtpd_service_name, "smtpd"), and the postscreen_*
 *   settings in use are named at start-up.  Those that would make
 *   postscreen reject or drop clients are errors (never silent).
 */
#include "conf/conf_impl.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/buf.h"
#include "util/xalloc.h"

/* The lists that a submission service ends in "permit_sasl_authenticated, reject". */
static const enum param_id conf_sasl_lists[] = {
	P_smtpd_client_restrictions, P_smtpd_helo_restrictions, P_smtpd_sender_restrictions,
	P_smtpd_relay_restrictions, P_smtpd_recipient_restrictions,
};

char   *
conf_service_submission(const struct conf_view *v, const struct conf_settings *opts)
{
	const struct conf_setting *s = conf_settings_get(opts, "smtpd_sasl_auth_enable");

	if (s != NULL && conf_bool(v, P_smtpd_sasl_auth_enable))
		return xasprintf("smtpd_sasl_auth_enable = %s", s->value);
	for (size_t i = 0; i < sizeof(conf_sasl_lists) / sizeof(conf_sasl_lists[0]); i++) {
		size_t	n;
		char  *const *l = conf_list(v, conf_sasl_lists[i], &n);

		/* the line's own -o: a main.cf that turns every client away is served as such */
		if (conf_settings_get(opts, conf_param_name(conf_sasl_lists[i])) == NULL)
			continue;
		if (n >= 2 && strcasecmp(l[n - 1], "reject") == 0
		    && strcasecmp(l[n - 2], "permit_sasl_authenticated") == 0)
			return xasprintf("%s ends in permit_sasl_authenticated, reject",
					 conf_param_name(conf_sasl_lists[i]));
	}
	return NULL;
}

/*
 * The postscreen settings that would reject or drop clients.  Each is
 * refused when its action (expanded in the postscreen line's context) is
 * enforce or drop and its condition holds.
 */
enum conf_ps_cond {
	PS_ALWAYS,		/* the action alone */
	PS_ENABLE,		/* cond names a yes/no parameter that must be yes */
	PS_NONEMPTY,		/* cond names a list that must not be empty */
	PS_ACCESS,		/* postscreen_access_list holds more than permit_mynetworks */
};

static const struct {
	const char *action;
	enum conf_ps_cond kind;
	const char *cond;
	const char *why;
} conf_ps_rules[] = {
	{"postscreen_dnsbl_action", PS_NONEMPTY, "postscreen_dnsbl_sites",
	 "clients listed by postscreen_dnsbl_sites would not be turned away; use "
	 "reject_rbl_client in smtpd_client_restrictions, or set postscreen_dnsbl_action = ignore"},
	{"postscreen_greet_action", PS_ALWAYS, NULL,
	 "clients that speak before the greeting would not be turned away by the pregreet test "
	 "(set postscreen_greet_action = ignore)"},
	{"postscreen_pipelining_action", PS_ENABLE, "postscreen_pipelining_enable",
	 "clients that pipeline without PIPELINING would not be turned away by the deep protocol "
	 "test (set postscreen_pipelining_enable = no)"},
	{"postscreen_non_smtp_command_action", PS_ENABLE, "postscreen_non_smtp_command_enable",
	 "clients that send non-SMTP commands would not be turned away by the deep protocol test "
	 "(set postscreen_non_smtp_command_enable = no)"},
	{"postscreen_bare_newline_action", PS_ENABLE, "postscreen_bare_newline_enable",
	 "clients that send bare newlines would not be turned away by the deep protocol test "
	 "(set postscreen_bare_newline_enable = no)"},
	{"postscreen_denylist_action", PS_ACCESS, "postscreen_access_list",
	 "clients that postscreen_access_list rejects would not be turned away; use "
	 "check_client_access in smtpd_client_restrictions, or set postscreen_denylist_action = "
	 "ignore"},
};

/* The expanded value of name in ctx, "" when it does not expand. */
static const char *
conf_ps_value(struct conf_ctx *ctx, const char *name)
{
	char   *err = NULL;
	const char *v = conf_exp_name(ctx->ex, name, &err);

	free(err);
	return v ? v : "";
}

static int
conf_ps_cond_holds(struct conf_ctx *ctx, enum conf_ps_cond kind, const char *cond)
{
	char  **items;
	size_t	n;
	char   *err = NULL;
	int	res;

	switch (kind) {
	case PS_ALWAYS:
		return 1;
	case PS_ENABLE:
		return strcasecmp(conf_ps_value(ctx, cond), "yes") == 0;
	default:
		if ((items = conf_split_list(conf_ps_value(ctx, cond), &n, &err)) == NULL) {
			free(err);
			return 1;
		}
		res = n > 0;
		if (kind == PS_ACCESS)
			res = n > 1 || (n == 1 && strcasecmp(items[0], "permit_mynetworks") != 0);
		conf_list_free(items);
		return res;
	}
}

/* Does any layer set a postscreen_* name?  Appends it to b once. */
static void
conf_ps_names(const struct conf_settings *const *layers, size_t nlayers, struct buf *b)
{
	for (size_t l = 0; l < nlayers; l++) {
		for (size_t i = 0; layers[l] && i < layers[l]->count; i++) {
			const char *name = layers[l]->items[i].name;
			int	seen = 0;

			if (strncmp(name, "postscreen_", 11) != 0
			    || strncmp(name, "postscreen_upstream_proxy_", 26) == 0)
				continue;
			for (size_t k = 0; !seen && k < l; k++)
				seen = conf_settings_get(layers[k], name) != NULL;
			for (size_t k = 0; !seen && k < i; k++)
				seen = strcmp(layers[l]->items[k].name, name) == 0;
			if (seen)
				continue;
			buf_printf(b, "%s%s", b->len ? ", " : "", name);
		}
	}
}

int
conf_check_postscreen(const char *master_path, const struct conf_master_ent *ps,
		      const struct conf_master_ent *pass, const struct conf_settings *over,
		      const struct conf_settings *main, struct conf_settings *eff,
		      struct conf_report *rep)
{
	struct conf_ctx ctx, pctx;
	const struct conf_settings *layers[] = { &ps->opts, over, main };
	struct buf names = BUF_INIT;
	const char *proto, *tmout;
	const struct conf_setting *s;
	size_t	errors = rep->errors;

	conf_ctx_init(&ctx, &ps->opts, over, main, NULL);
	for (size_t i = 0; i < sizeof(conf_ps_rules) / sizeof(conf_ps_rules[0]); i++) {
		const char *action = conf_ps_value(&ctx, conf_ps_rules[i].action);
		const struct conf_setting *at;

		if (strcasecmp(action, "enforce") != 0 && strcasecmp(action, "drop") != 0)
			continue;
		if (!conf_ps_cond_holds(&ctx, conf_ps_rules[i].kind, conf_ps_rules[i].cond))
			continue;
		/* Where the admin wrote it: the action, else what enabled it. */
		at = conf_ctx_setting(&ctx, conf_ps_rules[i].action);
		if (at == NULL && strcmp(conf_ps_rules[i].action, "postscreen_denylist_action") == 0)
			at = conf_ctx_setting(&ctx, "postscreen_blacklist_action");
		if (at == NULL && conf_ps_rules[i].cond != NULL)
			at = conf_ctx_setting(&ctx, conf_ps_rules[i].cond);
		conf_report_add(rep, 1, CONF_PROB_NOT_IMPLEMENTED, at ? at->file : master_path,
				at ? at->line : ps->line, at ? at->name : conf_ps_rules[i].action,
				action, "%s = %s: postscreen is not implemented by mxgate, refused: "
				"service \"%s\" (%s, line %d) is served by smtpd without the screen: %s",
				conf_ps_rules[i].action, action, ps->name, master_path, ps->line,
				conf_ps_rules[i].why);
	}
	/* postscreen's own per-client connection limit, if stricter than smtpd's */
	{
		long	pl = atol(conf_ps_value(&ctx, "postscreen_client_connection_count_limit"));
		struct conf_ctx sctx;
		long	sl;

		conf_ctx_init(&sctx, &pass->opts, over, main, NULL);
		sl = atol(conf_ps_value(&sctx, "smtpd_client_connection_count_limit"));
		conf_ctx_free(&sctx);
		if (pl > 0 && (sl == 0 || pl < sl)) {
			s = conf_ctx_setting(&ctx, "postscreen_client_connection_count_limit");
			conf_report_add(rep, 1, CONF_PROB_NOT_IMPLEMENTED, s ? s->file : master_path,
					s ? s->line : ps->line,
					s ? s->name : "postscreen_client_connection_count_limit",
					s ? s->value : NULL,
					"postscreen_client_connection_count_limit = %ld: postscreen is "
					"not implemented by mxgate, refused: service \"%s\" (%s, line %d) "
					"would allow a client smtpd_client_connection_count_limit = %ld "
					"connections (set both to the same value)",
					pl, ps->name, master_path, ps->line, sl);
		}
	}

	/*
	 * The service's settings: the pass line's, with postscreen's upstream
	 * proxy protocol (smtpd behind postscreen ignores its own, with
	 * Postfix's warning).
	 */
	for (size_t i = 0; i < pass->opts.count; i++) {
		s = &pass->opts.items[i];
		conf_settings_set(eff, s->name, s->value, s->file, s->line);
	}
	conf_ctx_init(&pctx, &pass->opts, over, main, NULL);
	if (*conf_ps_value(&pctx, "smtpd_upstream_proxy_protocol") != '\0') {
		s = conf_ctx_setting(&pctx, "smtpd_upstream_proxy_protocol");
		conf_report_add(rep, 0, CONF_PROB_OTHER, s ? s->file : master_path,
				s ? s->line : pass->line, "smtpd_upstream_proxy_protocol", NULL,
				"service \"%s\": ignoring non-empty smtpd_upstream_proxy_protocol "
				"setting behind postscreen", ps->name);
	}
	conf_ctx_free(&pctx);
	proto = conf_ps_value(&ctx, "postscreen_upstream_proxy_protocol");
	tmout = conf_ps_value(&ctx, "postscreen_upstream_proxy_timeout");
	s = conf_ctx_setting(&ctx, "postscreen_upstream_proxy_protocol");
	conf_settings_set(eff, "smtpd_upstream_proxy_protocol", proto,
			  s ? s->file : master_path, s ? s->line : ps->line);
	s = conf_ctx_setting(&ctx, "postscreen_upstream_proxy_timeout");
	conf_settings_set(eff, "smtpd_upstream_proxy_timeout", *tmout ? tmout : "5s",
			  s ? s->file : master_path, s ? s->line : ps->line);

	conf_ps_names(layers, 3, &names);
	conf_report_add(rep, 0, CONF_PROB_OTHER, master_path, ps->line, NULL, ps->name,
			"service \"%s\": postscreen is not implemented by mxgate: this port is "
			"served by smtpd with the settings of service \"%s\" (line %d)%s%s",
			ps->name, pass->name, pass->line,
			names.len ? "; postscreen settings not applied: " : "",
			names.len ? buf_str(&names) : "");
	buf_free(&names);
	conf_ctx_free(&ctx);
	return rep->errors > errors ? -1 : 0;
}

const struct conf_master_ent *
conf_postscreen_pass(const struct conf_master_ent *ps, const struct conf_master_ent *ents,
		     size_t n, const struct conf_settings *over,
		     const struct conf_settings *main, char **name_r)
{
	struct conf_ctx ctx;
	const struct conf_master_ent *found = NULL;

	conf_ctx_init(&ctx, &ps->opts, over, main, NULL);
	*name_r = xstrdup(conf_ps_value(&ctx, "smtpd_service_name"));
	conf_ctx_free(&ctx);
	for (size_t i = 0; i < n; i++)
		if (ents[i].kind == MENT_PASS && strcmp(ents[i].name, *name_r) == 0)
			found = &ents[i];	/* the last one wins, as in master */
	return found;
}
