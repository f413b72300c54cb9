/*
 * anvil_backend: what a backend of the anvil interface implements.  Private
 * to the anvil modules (src/policy/anvil*.c, and the test backend under
 * tests/); users include policy/anvil.h only.
 *
 * A backend embeds struct anvil as the FIRST member of its own object, fills
 * in ops and calls anvil_init() on it.
 *
 * request() must call cb exactly once, before or after it returns, never
 * while holding a lock, and on l's thread.  It returns NULL when cb already
 * ran, else a handle of its own that cancel() takes: after cancel() the
 * backend never calls cb for that request.  cb may be NULL (no answer
 * wanted): then request() returns NULL and keeps no handle for the caller.
 * A backend that answers synchronously may ignore l (l may be NULL then).
 */
#ifndef MXGATE_POLICY_ANVIL_BACKEND_H
#define MXGATE_POLICY_ANVIL_BACKEND_H

#include "policy/anvil.h"

enum anvil_op {
	ANVIL_OP_CONNECT,
	ANVIL_OP_DISCONNECT,
	ANVIL_OP_MESSAGE,
	ANVIL_OP_RECIPIENT,
	ANVIL_OP_NEWTLS,
	ANVIL_OP_NEWTLS_REPORT,
	ANVIL_OP_AUTH,
	ANVIL_OP_LOOKUP,
};
#define ANVIL_OP_N	(ANVIL_OP_LOOKUP + 1)

struct anvil_ops {
	const char *name;	/* "memory", "redis" */
	void   *(*request)(struct anvil *a, struct loop *l, enum anvil_op op, const char *ident,
			   time_t now, anvil_cb *cb, void *ctx);
	void	(*cancel)(struct anvil *a, void *handle);	/* NULL: never pending */
	void	(*sweep)(struct anvil *a, time_t now);
	size_t	(*entries)(struct anvil *a);
	void	(*log_statistics)(struct anvil *a, time_t now);
	void	(*set_rate_time_unit)(struct anvil *a, long rate_time_unit);
	void	(*free)(struct anvil *a);
	/* Optional (NULL: nothing to do / nothing to list): */
	void	(*attach)(struct anvil *a, struct loop *l, struct event_base *base);
	void	(*detach)(struct anvil *a, struct loop *l);
	size_t	(*list)(struct anvil *a, time_t now, const char *match, anvil_list_fn *fn,
			void *ctx);
	size_t	(*clear)(struct anvil *a, time_t now, const char *match);
};

struct anvil {
	const struct anvil_ops *ops;
	long	timeout_ms;		/* the answer bound (atomics) */
	long	next_warn;		/* time() of the next bound warning allowed (atomics) */
	long	given_up;		/* requests given up on since the last warning (atomics) */
};

/* Set the front-end fields of a new backend object. */
void anvil_init(struct anvil *a, const struct anvil_ops *ops);

/* The request's name in Postfix's anvil protocol ("connect", "rcpt" ...). */
const char *anvil_op_name(enum anvil_op op);

#endif
