/*
 * anvil_backend: what a backend of the anvil interface implements.  Private
 * to src/policy/anvil*.c; users include policy/anvil.h only.
 *
 * A backend embeds struct anvil as the FIRST member of its own object and
 * fills in ops.  Each request function must call cb exactly once (before or
 * after it returns) and never while holding a lock.
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

struct anvil_ops {
	const char *name;	/* "memory", "redis" */
	void (*request)(struct anvil *a, enum anvil_op op, const char *ident, time_t now,
			anvil_cb *cb, void *ctx);
	void (*sweep)(struct anvil *a, time_t now);
	size_t (*entries)(struct anvil *a);
	void (*log_statistics)(struct anvil *a, time_t now);
	void (*set_rate_time_unit)(struct anvil *a, long rate_time_unit);
	void (*free)(struct anvil *a);
};

struct anvil {
	const struct anvil_ops *ops;
};

#endif
