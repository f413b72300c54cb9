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

struct policy_client;
struct policy_query;
struct policy_server;

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
