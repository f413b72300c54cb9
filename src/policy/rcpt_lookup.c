/*
 * rcpt_lookup: recipient lookups on the lookups pool.  See rcpt_lookup.h.
 */
#include "policy/rcpt_lookup.h"

#include <stdlib.h>

#include "policy/recipient.h"
#include "util/workpool.h"
#include "util/xalloc.h"

struct rcpt_lookup {
	struct recipient_policy *policy;	/* a reference of our own */
	char   *addr;
	struct rcpt_result r;
	rcpt_lookup_cb *cb;			/* NULL: cancelled */
	void   *ctx;
};

static void
rcpt_lookup_work(void *arg)
{
	struct rcpt_lookup *q = arg;

	recipient_resolve(q->policy, q->addr, &q->r);
}

static void
rcpt_lookup_done(void *arg)
{
	struct rcpt_lookup *q = arg;

	if (q->cb != NULL)
		q->cb(q->ctx, &q->r);
	rcpt_result_free(&q->r);
	recipient_policy_free(&q->policy);
	free(q->addr);
	free(q);
}

struct rcpt_lookup *
rcpt_lookup_start(const struct recipient_policy *p, struct workpool *pool,
		  struct workpool *remote, struct loop *l, const char *addr, rcpt_lookup_cb *cb,
		  void *ctx)
{
	struct rcpt_lookup *q;
	struct rcpt_result r;

	if (recipient_try_resolve(p, addr, &r)) {
		cb(ctx, &r);
		rcpt_result_free(&r);
		return NULL;
	}
	q = xcalloc(1, sizeof(*q));
	q->policy = recipient_policy_ref(p);
	q->addr = xstrdup(addr);
	q->cb = cb;
	q->ctx = ctx;
	workpool_submit(recipient_policy_remote(p) ? remote : pool, l, rcpt_lookup_work,
			rcpt_lookup_done, q);
	return q;
}

void
rcpt_lookup_cancel(struct rcpt_lookup *q)
{
	if (q != NULL)
		q->cb = NULL;
}
