/*
 * policy: Postfix's SMTPD policy delegation (check_policy_service) as the
 * restrictions and the session see it: one server's settings, and the
 * asynchronous client interface (no libevent here: the real client is in
 * net/, the tests use their own).
 *
 * A server is named as in Postfix 3.7: "inet:host:port", "unix:/path", or
 * "unix:private/NAME" (relative to queue_directory, a master.cf service),
 * optionally with per-server settings in braces: "{ inet:host:port,
 * timeout=10s, default_action=DUNNO, ... }".  Its settings default to the
 * smtpd_policy_service_* parameters.
 *
 * The request is the text the restriction built ("name=value\n" lines and
 * the empty line that ends them); the answer is the value of the server's
 * "action=" attribute.  A server that cannot be reached, does not answer in
 * time, or answers without an action gives NULL after the client's retries
 * (the caller then applies the server's default action).
 */
#ifndef MXGATE_POLICY_POLICY_H
#define MXGATE_POLICY_POLICY_H

#include <stdbool.h>
#include <stddef.h>

struct conf_view;
struct policy_client;
struct policy_query;
struct restrict_req;

enum policy_transport { POLICY_INET, POLICY_UNIX };

/*
 * One check_policy_service server with its settings (Postfix 3.7's
 * policy_client_register()): read-only once made, owned by the restriction
 * policy that named it.
 */
struct policy_server {
	char   *spec;			/* as written: the key of its answers */
	char   *endpoint;		/* "127.0.0.1:10023", "private/policy": as logged */
	enum policy_transport transport;
	char   *host, *port;		/* inet */
	char   *path;			/* unix: the socket's path (private/... under
					 * queue_directory) */
	long	timeout, max_idle, max_ttl, retry_delay;	/* seconds */
	int	request_limit, try_limit;
	char   *default_action;
	char   *policy_context;
	bool	smtputf8;		/* smtputf8_enable: an action must be UTF-8 */
};

/*
 * Parse a server as written in a restriction list: "inet:host:port",
 * "unix:/path", "unix:private/NAME", or "{ name, timeout=10s, ... }" with
 * the keys timeout, max_idle, max_ttl, retry_delay (times), request_limit,
 * try_limit (numbers), default_action, policy_context (text), each of them
 * also in braces ("{ default_action = 451 4.3.5 text }"); the rest from
 * cf's smtpd_policy_service_* parameters.  NULL with *err_r (Postfix's
 * fatal message; caller frees) when it is bad.
 */
struct policy_server *policy_server_new(const char *spec, const struct conf_view *cf,
					char **err_r);
void	policy_server_free(struct policy_server **sp);

/*
 * The request Postfix 3.7's check_policy_service() sends for req, in its
 * order ("name=value\n" lines, then the empty line); caller frees.
 */
char   *policy_request_build(const struct restrict_req *req, const struct policy_server *srv);

/* Is s well-formed UTF-8 (Postfix's valid_utf8_string())? */
bool	policy_valid_utf8(const char *s);
/* A copy of s for a log line: every byte outside ASCII's printable range is '?'. */
char   *policy_printable(const char *s);

/* ---- the answer (Postfix's plain attribute protocol) ---- */

enum policy_parse_status {
	POLICY_PARSE_MORE,	/* feed more bytes */
	POLICY_PARSE_DONE,	/* the empty line: action_r is set, or NULL when missing */
	POLICY_PARSE_ERROR,	/* bad input: warning says why */
};

/* Longest answer line accepted (Postfix has no bound; a server must not run us out). */
#define POLICY_LINE_MAX ((size_t)8192)
/* Most answer bytes accepted in all. */
#define POLICY_ANSWER_MAX ((size_t)65536)

struct policy_parser {
	char   *line;		/* the line so far */
	size_t	len, cap, total;
	char   *action;		/* the first action= value */
	bool	done;
};

void	policy_parser_init(struct policy_parser *pp);
void	policy_parser_free(struct policy_parser *pp);
/*
 * Feed n bytes; *used_r is how many were taken (DONE stops at the empty
 * line; the rest belongs to nobody).  DONE: pp->action is the action (NULL:
 * the answer had none: Postfix's "missing attribute action").  ERROR:
 * *why_r is a static text for the warning ("premature end-of-input"
 * is the caller's, on EOF).
 */
enum policy_parse_status policy_parse(struct policy_parser *pp, const char *data, size_t n,
				      size_t *used_r, const char **why_r);

/* action is only valid during the call; NULL: the server failed. */
typedef void policy_cb(void *ctx, const char *action);

struct policy_client_ops {
	struct policy_query *(*query)(struct policy_client *c, const struct policy_server *srv,
				      const char *request, policy_cb *cb, void *ctx);
	void	(*cancel)(struct policy_query *q);
};

/*
 * One client, bound to one loop: cb runs on that loop, exactly once, never
 * inside query(); cancel() before then means it never runs.
 */
struct policy_client {
	const struct policy_client_ops *ops;
};

static inline struct policy_query *
policy_query(struct policy_client *c, const struct policy_server *srv, const char *request,
	     policy_cb *cb, void *ctx)
{
	return c->ops->query(c, srv, request, cb, ctx);
}

static inline void
policy_cancel(struct policy_client *c, struct policy_query *q)
{
	c->ops->cancel(q);
}

#endif
