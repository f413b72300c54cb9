/*
 * rcpt_lookup: recipient_resolve() (policy/recipient.h) off the event loop.
 * The tables behind a recipient may block (getpwnam_r behind LDAP or sssd,
 * and later SQL and LDAP tables), so the lookup runs on the lookups pool
 * (util/workpool.h) and the answer comes back on the caller's loop.
 *
 * The request holds its own copy of the address and a reference to the
 * policy, so a reload that replaces the policy, or a session that goes
 * away, never pulls anything from under a running lookup.
 *
 * An address that needs only tables that are all in memory (texthash,
 * inline, static: recipient_try_resolve()) cannot block, since a lookup is a
 * hash probe: it is answered at once, cb runs inside rcpt_lookup_start() and
 * the result is NULL, which saves two thread hops per RCPT.  Everything else
 * (cdb, unix:passwd.byname) goes to the pool, and a policy with a remote
 * table (mysql, pgsql, ldap, socketmap, ...: recipient_policy_remote()) to
 * the remote pool, so that a slow server holds up only lookups that need it,
 * never those that use files (and each remote table has its own cap on
 * concurrent lookups: policy/map_type.h).
 *
 * THREADS: rcpt_lookup_start() and rcpt_lookup_cancel() on the loop's
 * thread; cb runs there.
 */
#ifndef MXGATE_POLICY_RCPT_LOOKUP_H
#define MXGATE_POLICY_RCPT_LOOKUP_H

struct loop;
struct rcpt_lookup;
struct rcpt_result;
struct recipient_policy;
struct workpool;

/*
 * The answer.  r is the lookup's result; cb may take its strings (set the
 * fields it takes to NULL): whatever is left is freed after cb returns.
 */
typedef void rcpt_lookup_cb(void *ctx, struct rcpt_result *r);

/*
 * Classify addr (internal form) as recipient_resolve() does, on the pool;
 * returns the request, or NULL when cb has already run (in-memory tables).
 */
struct rcpt_lookup *rcpt_lookup_start(const struct recipient_policy *p, struct workpool *pool,
				      struct workpool *remote, struct loop *l, const char *addr,
				      rcpt_lookup_cb *cb, void *ctx);
/* Withdraw the request: cb will not run; the lookup's result is discarded. */
void rcpt_lookup_cancel(struct rcpt_lookup *q);

#endif
