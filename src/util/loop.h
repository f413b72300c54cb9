/*
 * loop: one event-loop thread, as the protocol layer, anvil and the thread
 * pools see it: one-shot timers, a cached clock, and "run this function on
 * the loop's thread".  Nothing here names libevent, so the SMTP protocol
 * (smtp/session.h) runs unchanged on a real loop (net/evloop.h, one per
 * worker thread) and on the virtual-time loop of the unit tests and the
 * fuzzers (tests/common/fakeloop.h), which fires timers as fast as the test
 * asks.
 *
 * THREADS: every function except loop_post() must be called on the loop's
 * own thread.  Timer and posted callbacks always run on that thread, never
 * inside the call that armed or posted them.
 *
 * A struct loop is an interface: an implementation embeds it as its first
 * member and fills in ops.
 */
#ifndef MXGATE_UTIL_LOOP_H
#define MXGATE_UTIL_LOOP_H

#include <sys/time.h>

struct loop;
struct loop_timer;

typedef void loop_fn(void *arg);

struct loop_ops {
	struct loop_timer *(*timer_new)(struct loop *l, loop_fn *fn, void *arg);
	void	(*timer_set)(struct loop_timer *t, long msec);
	void	(*timer_stop)(struct loop_timer *t);
	int	(*timer_armed)(const struct loop_timer *t);
	void	(*timer_free)(struct loop_timer *t);
	void	(*post)(struct loop *l, loop_fn *fn, void *arg);
	void	(*now)(struct loop *l, struct timeval *tv);
};

struct loop {
	const struct loop_ops *ops;
};

/* A stopped timer that will call fn(arg) on the loop thread once set and due. */
static inline struct loop_timer *
loop_timer_new(struct loop *l, loop_fn *fn, void *arg)
{
	return l->ops->timer_new(l, fn, arg);
}

/* (Re)arm: fn runs once, msec milliseconds from now (0: at the next turn). */
static inline void
loop_timer_set(struct loop *l, struct loop_timer *t, long msec)
{
	l->ops->timer_set(t, msec < 0 ? 0 : msec);
}

/*
 * Arm *tp, creating it (for fn(arg)) on first use: an owner that may never
 * need a timer (most sessions are never tarpitted) pays nothing for it
 * until then.  Free it with loop_timer_free().
 */
static inline void
loop_timer_start(struct loop *l, struct loop_timer **tp, loop_fn *fn, void *arg, long msec)
{
	if (*tp == NULL)
		*tp = l->ops->timer_new(l, fn, arg);
	l->ops->timer_set(*tp, msec < 0 ? 0 : msec);
}

/* Disarm; fn will not run until the timer is set again.  Harmless when
 * stopped, and when t is NULL (never created). */
static inline void
loop_timer_stop(struct loop *l, struct loop_timer *t)
{
	if (t != NULL)
		l->ops->timer_stop(t);
}

static inline int
loop_timer_armed(struct loop *l, const struct loop_timer *t)
{
	return t != NULL && l->ops->timer_armed(t);
}

/* Stop and free the timer, and set *tp to NULL (NULL *tp is fine). */
static inline void
loop_timer_free(struct loop *l, struct loop_timer **tp)
{
	if (*tp != NULL)
		l->ops->timer_free(*tp);
	*tp = NULL;
}

/*
 * Run fn(arg) on the loop's thread soon, after the current callback
 * returns.  The ONLY function here that may be called from any thread.
 * Posts run in the order they were made.  Posts still queued when the loop
 * is freed are run then (so that what they own is released).
 */
static inline void
loop_post(struct loop *l, loop_fn *fn, void *arg)
{
	l->ops->post(l, fn, arg);
}

/* The loop's cached time: the same for every callback of one loop turn. */
static inline void
loop_now(struct loop *l, struct timeval *tv)
{
	l->ops->now(l, tv);
}

/* Whole seconds of loop_now(), as anvil counts time. */
static inline long
loop_now_sec(struct loop *l)
{
	struct timeval tv;

	l->ops->now(l, &tv);
	return (long)tv.tv_sec;
}

#endif
