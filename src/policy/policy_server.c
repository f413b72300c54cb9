/*
 * policy_server: one check_policy_service server's settings, as Postfix
 * 3.7's policy_client_register() and attr_override() read them.  See
 * policy.h for the contract.
 */
#include "policy/policy.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/conf.h"
#include "util/attrlist.h"
#include "util/xalloc.h"

static bool
parse_int(const char *v, int *out)
{
	char   *end;
	long	n;

	if (!isdigit((unsigned char)*v))
		return false;
	n = strtol(v, &end, 10);
	if (*end != '\0' || n > 0x7fffffffL)
		return false;
	*out = (int)n;
	return true;
}

/* One "key=value" (or "{ key = value }") override; false with *err_r. */
static bool
apply_override(struct policy_server *srv, char *item, char **err_r)
{
	char   *key, *value;
	long	t;
	int	n;

	if (attrlist_split(item, "policy", &key, &value, err_r) < 0)
		return false;
	if (*key == '\0') {
		*err_r = xasprintf("malformed option: missing attribute name in \"=%s\"", value);
		return false;
	}
#define TIME_KEY(name, field) \
	if (strcmp(key, name) == 0) { \
		if (!attrlist_time(value, &t) || t < 1) { \
			*err_r = xasprintf("%s: bad time value or unit: %s", key, value); \
			return false; \
		} \
		srv->field = t; \
		return true; \
	}
	TIME_KEY("timeout", timeout)
	TIME_KEY("max_idle", max_idle)
	TIME_KEY("max_ttl", max_ttl)
	TIME_KEY("retry_delay", retry_delay)
#undef TIME_KEY
	if (strcmp(key, "request_limit") == 0 || strcmp(key, "try_limit") == 0) {
		bool	try = key[1] == 'r';

		if (!parse_int(value, &n) || (try && n < 1)) {
			*err_r = xasprintf("bad numerical configuration: %s = %s", key, value);
			return false;
		}
		if (try)
			srv->try_limit = n;
		else
			srv->request_limit = n;
		return true;
	}
	if (strcmp(key, "default_action") == 0 || strcmp(key, "policy_context") == 0) {
		char  **slot = key[0] == 'd' ? &srv->default_action : &srv->policy_context;

		if (key[0] == 'd' && *value == '\0') {
			*err_r = xasprintf("bad string length 0 < 1: %s = %s", key, value);
			return false;
		}
		free(*slot);
		*slot = xstrdup(value);
		return true;
	}
	*err_r = xasprintf("unknown option: \"%s = %s\"", key, value);
	return false;
}

/* "inet:host:port", "unix:path" (private/NAME under queue_directory). */
static bool
parse_name(struct policy_server *srv, const char *name, const struct conf_view *cf,
	   char **err_r)
{
	const char *colon = strchr(name, ':');
	const char *ep = colon ? colon + 1 : NULL;

	if (colon == NULL || colon == name || *ep == '\0') {
		*err_r = xasprintf("need service transport:endpoint instead of \"%s\"", name);
		return false;
	}
	srv->endpoint = xstrdup(ep);
	if ((size_t)(colon - name) == 4 && strncmp(name, "inet", 4) == 0) {
		const char *pc = strrchr(ep, ':');
		char   *host;

		if (pc == NULL || pc[1] == '\0') {
			*err_r = xasprintf("%s: missing port number in \"%s\"", name, ep);
			return false;
		}
		host = xstrndup(ep, (size_t)(pc - ep));
		if (host[0] == '[' && host[strlen(host) - 1] == ']') {
			memmove(host, host + 1, strlen(host));
			host[strlen(host) - 1] = '\0';
		}
		srv->transport = POLICY_INET;
		srv->host = *host ? host : (free(host), xstrdup("localhost"));
		srv->port = xstrdup(pc + 1);
		return true;
	}
	if ((size_t)(colon - name) == 4 && strncmp(name, "unix", 4) == 0) {
		srv->transport = POLICY_UNIX;
		if (ep[0] == '/')
			srv->path = xstrdup(ep);
		else
			srv->path = xasprintf("%s/%s", conf_str(cf, P_queue_directory), ep);
		return true;
	}
	*err_r = xasprintf("unsupported transport type: %.*s (mxgate speaks to policy servers "
			   "over inet: and unix:)", (int)(colon - name), name);
	return false;
}

struct policy_server *
policy_server_new(const char *spec, const struct conf_view *cf, char **err_r)
{
	struct policy_server *srv = xcalloc(1, sizeof(*srv));
	char   *copy = xstrdup(spec), *cp = copy, *name, *item;
	bool	ok = true;

	*err_r = NULL;
	srv->spec = xstrdup(spec);
	srv->timeout = conf_time(cf, P_smtpd_policy_service_timeout);
	srv->max_idle = conf_time(cf, P_smtpd_policy_service_max_idle);
	srv->max_ttl = conf_time(cf, P_smtpd_policy_service_max_ttl);
	srv->retry_delay = conf_time(cf, P_smtpd_policy_service_retry_delay);
	srv->request_limit = (int)conf_int(cf, P_smtpd_policy_service_request_limit);
	srv->try_limit = (int)conf_int(cf, P_smtpd_policy_service_try_limit);
	srv->default_action = xstrdup(conf_str(cf, P_smtpd_policy_service_default_action));
	srv->policy_context = xstrdup(conf_str(cf, P_smtpd_policy_service_policy_context));
	srv->smtputf8 = conf_bool(cf, P_smtputf8_enable);
	if (*cp == '{') {
		size_t	len = strlen(cp);

		if (cp[len - 1] != '}') {
			*err_r = xasprintf("policy service syntax error: missing '}' in \"%s\"", spec);
			ok = false;
		} else {
			cp[len - 1] = '\0';
			cp++;
			if ((name = attrlist_next(&cp)) == NULL) {
				*err_r = xasprintf("empty policy service: \"%s\"", spec);
				ok = false;
			} else {
				ok = parse_name(srv, name, cf, err_r);
			}
			while (ok && (item = attrlist_next(&cp)) != NULL)
				ok = apply_override(srv, item, err_r);
		}
	} else {
		ok = parse_name(srv, spec, cf, err_r);
	}
	free(copy);
	if (!ok)
		policy_server_free(&srv);
	return srv;
}

void
policy_server_free(struct policy_server **sp)
{
	struct policy_server *s = *sp;

	*sp = NULL;
	if (s == NULL)
		return;
	free(s->spec);
	free(s->endpoint);
	free(s->host);
	free(s->port);
	free(s->path);
	free(s->default_action);
	free(s->policy_context);
	free(s);
}
