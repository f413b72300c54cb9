/*
 * anvil_delay: a test-only anvil backend that wraps the in-memory backend
 * and answers after a delay, to prove that sessions enforce limits whose
 * answers come late (and fail open only past the answer bound).
 *
 *   mxgate_anvil_backend = test-delay:MS      answer MS milliseconds later
 *   mxgate_anvil_backend = test-delay:never   never answer
 *
 * Every event is counted by the memory backend at once, in request order,
 * so counts and windows are exactly those of the memory backend; only the
 * answer travels through a timer on the caller's loop (MS = 0 still answers
 * at the next loop turn, never inside the request).  A request without a
 * callback (a disconnect) gets no timer.
 *
 * Linked into the test daemon build/tests/mxgate-anvil-delay and the session
 * fuzzer only; the production binary does not know the name.  Registered by
 * a constructor, before main() runs.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "policy/anvil.h"
#include "policy/anvil_backend.h"
#include "util/loop.h"
#include "util/xalloc.h"

struct delay_req;

struct anvil_delay {
	struct anvil base;		/* first */
	struct anvil *inner;		/* the memory backend */
	long	delay_ms;		/* -1: never */
	pthread_mutex_t lock;
	struct delay_req *pending;	/* for free(): requests still to answer */
};

struct delay_req {
	struct delay_req *prev, *next;
	struct anvil_delay *d;
	struct loop *loop;
	struct loop_timer *timer;
	anvil_cb *cb;
	void   *ctx;
	struct anvil_reply r;
};

static void
delay_capture(void *ctx, const struct anvil_reply *r)
{
	*(struct anvil_reply *)ctx = *r;
}

static void
delay_unlink(struct delay_req *q)
{
	struct anvil_delay *d = q->d;

	pthread_mutex_lock(&d->lock);
	if (q->prev)
		q->prev->next = q->next;
	else
		d->pending = q->next;
	if (q->next)
		q->next->prev = q->prev;
	pthread_mutex_unlock(&d->lock);
}

static void
delay_req_free(struct delay_req *q)
{
	if (q->timer != NULL)
		loop_timer_free(q->loop, &q->timer);
	free(q);
}

static void
delay_fire(void *arg)
{
	struct delay_req *q = arg;

	delay_unlink(q);
	q->cb(q->ctx, &q->r);
	delay_req_free(q);
}

static void *
delay_request(struct anvil *a, struct loop *l, enum anvil_op op, const char *ident, time_t now,
	      anvil_cb *cb, void *ctx)
{
	struct anvil_delay *d = (struct anvil_delay *)a;
	struct anvil_reply r = { .status = -1 };
	struct delay_req *q;

	/* The memory backend answers at once; apply the event now, in order. */
	(void)d->inner->ops->request(d->inner, NULL, op, ident, now, delay_capture, &r);
	if (cb == NULL)
		return NULL;
	q = xcalloc(1, sizeof(*q));
	q->d = d;
	q->loop = l;
	q->cb = cb;
	q->ctx = ctx;
	q->r = r;
	pthread_mutex_lock(&d->lock);
	q->next = d->pending;
	if (d->pending)
		d->pending->prev = q;
	d->pending = q;
	pthread_mutex_unlock(&d->lock);
	if (d->delay_ms >= 0) {
		q->timer = loop_timer_new(l, delay_fire, q);
		loop_timer_set(l, q->timer, d->delay_ms);
	}
	return q;
}

static void
delay_cancel(struct anvil *a, void *handle)
{
	struct delay_req *q = handle;

	(void)a;
	delay_unlink(q);
	delay_req_free(q);
}

static void
delay_sweep(struct anvil *a, time_t now)
{
	anvil_sweep(((struct anvil_delay *)a)->inner, now);
}

static size_t
delay_entries(struct anvil *a)
{
	return anvil_entries(((struct anvil_delay *)a)->inner);
}

static void
delay_log_statistics(struct anvil *a, time_t now)
{
	anvil_log_statistics(((struct anvil_delay *)a)->inner, now);
}

static void
delay_set_rate_time_unit(struct anvil *a, long unit)
{
	anvil_set_rate_time_unit(((struct anvil_delay *)a)->inner, unit);
}

/* At shutdown, after the loops stopped: drop what was never answered. */
static void
delay_free(struct anvil *a)
{
	struct anvil_delay *d = (struct anvil_delay *)a;

	while (d->pending != NULL) {
		struct delay_req *q = d->pending;

		d->pending = q->next;
		delay_req_free(q);
	}
	anvil_free(&d->inner);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

static const struct anvil_ops delay_ops = {
	.name = "test-delay",
	.request = delay_request,
	.cancel = delay_cancel,
	.sweep = delay_sweep,
	.entries = delay_entries,
	.log_statistics = delay_log_statistics,
	.set_rate_time_unit = delay_set_rate_time_unit,
	.free = delay_free,
};

static struct anvil *
delay_create(const char *arg, long unit, size_t max_entries, char **err_r)
{
	struct anvil_delay *d;
	long ms = -1;
	char *end;

	if (strcmp(arg, "never") != 0) {
		errno = 0;
		ms = strtol(arg, &end, 10);
		if (*arg == '\0' || *end != '\0' || errno != 0 || ms < 0) {
			*err_r = xasprintf("test-delay: bad delay \"%s\": milliseconds or \"never\"",
					   arg);
			return NULL;
		}
	}
	d = xcalloc(1, sizeof(*d));
	anvil_init(&d->base, &delay_ops);
	d->inner = anvil_memory_create(unit, max_entries);
	d->delay_ms = ms;
	pthread_mutex_init(&d->lock, NULL);
	return &d->base;
}

__attribute__((constructor)) static void
delay_register(void)
{
	anvil_backend_register("test-delay", delay_create);
}
