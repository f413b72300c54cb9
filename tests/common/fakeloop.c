/*
 * fakeloop: a virtual-time struct loop.  See fakeloop.h.
 */
#include "fakeloop.h"

#include <stdlib.h>
#include <string.h>

#include "util/loop.h"
#include "util/xalloc.h"

struct fakeloop_post {
	struct fakeloop_post *next;
	loop_fn *fn;
	void   *arg;
};

struct loop_timer {
	struct loop_timer *next, *prev;	/* every timer of the loop */
	struct fakeloop *fl;
	loop_fn *fn;
	void   *arg;
	int	armed;
	long long due;		/* ms */
	unsigned long seq;	/* arming order: ties fire in that order */
};

struct fakeloop {
	struct loop loop;	/* first */
	long long now;		/* ms */
	unsigned long seq;
	struct fakeloop_post *head, *tail;
	struct loop_timer *timers;
};

static struct loop_timer *
fl_timer_new(struct loop *l, loop_fn *fn, void *arg)
{
	struct fakeloop *fl = (struct fakeloop *)l;
	struct loop_timer *t = xcalloc(1, sizeof(*t));

	t->fl = fl;
	t->fn = fn;
	t->arg = arg;
	t->next = fl->timers;
	if (fl->timers)
		fl->timers->prev = t;
	fl->timers = t;
	return t;
}

static void
fl_timer_set(struct loop_timer *t, long msec)
{
	t->armed = 1;
	t->due = t->fl->now + msec;
	t->seq = ++t->fl->seq;
}

static void
fl_timer_stop(struct loop_timer *t)
{
	t->armed = 0;
}

static int
fl_timer_armed(const struct loop_timer *t)
{
	return t->armed;
}

static void
fl_timer_free(struct loop_timer *t)
{
	struct fakeloop *fl = t->fl;

	if (t->prev)
		t->prev->next = t->next;
	else
		fl->timers = t->next;
	if (t->next)
		t->next->prev = t->prev;
	free(t);
}

static void
fl_post(struct loop *l, loop_fn *fn, void *arg)
{
	struct fakeloop *fl = (struct fakeloop *)l;
	struct fakeloop_post *p = xcalloc(1, sizeof(*p));

	p->fn = fn;
	p->arg = arg;
	if (fl->tail)
		fl->tail->next = p;
	else
		fl->head = p;
	fl->tail = p;
}

static void
fl_now(struct loop *l, struct timeval *tv)
{
	struct fakeloop *fl = (struct fakeloop *)l;

	tv->tv_sec = (time_t)(fl->now / 1000);
	tv->tv_usec = (suseconds_t)((fl->now % 1000) * 1000);
}

static const struct loop_ops fl_ops = {
	.timer_new = fl_timer_new,
	.timer_set = fl_timer_set,
	.timer_stop = fl_timer_stop,
	.timer_armed = fl_timer_armed,
	.timer_free = fl_timer_free,
	.post = fl_post,
	.now = fl_now,
};

struct fakeloop *
fakeloop_new(void)
{
	struct fakeloop *fl = xcalloc(1, sizeof(*fl));

	fl->loop.ops = &fl_ops;
	fl->now = 1700000000LL * 1000;
	return fl;
}

struct loop *
fakeloop_loop(struct fakeloop *fl)
{
	return &fl->loop;
}

long long
fakeloop_now_ms(struct fakeloop *fl)
{
	return fl->now;
}

/* The armed timer that is due first (and was armed first among equals), or NULL. */
static struct loop_timer *
fl_next_timer(struct fakeloop *fl)
{
	struct loop_timer *t, *best = NULL;

	for (t = fl->timers; t != NULL; t = t->next)
		if (t->armed && (best == NULL || t->due < best->due
				 || (t->due == best->due && t->seq < best->seq)))
			best = t;
	return best;
}

int
fakeloop_run(struct fakeloop *fl)
{
	int n = 0;

	for (;;) {
		struct loop_timer *t;

		if (fl->head != NULL) {
			struct fakeloop_post *p = fl->head;

			fl->head = p->next;
			if (fl->head == NULL)
				fl->tail = NULL;
			p->fn(p->arg);
			free(p);
			n++;
			continue;
		}
		if ((t = fl_next_timer(fl)) != NULL && t->due <= fl->now) {
			t->armed = 0;
			t->fn(t->arg);
			n++;
			continue;
		}
		return n;
	}
}

int
fakeloop_advance(struct fakeloop *fl)
{
	struct loop_timer *t = fl_next_timer(fl);

	if (t == NULL)
		return 0;
	if (t->due > fl->now)
		fl->now = t->due;
	fakeloop_run(fl);
	return 1;
}

void
fakeloop_sleep(struct fakeloop *fl, long msec)
{
	long long until = fl->now + msec;
	struct loop_timer *t;

	while ((t = fl_next_timer(fl)) != NULL && t->due <= until) {
		if (t->due > fl->now)
			fl->now = t->due;
		fakeloop_run(fl);
	}
	fl->now = until;
	fakeloop_run(fl);
}

int
fakeloop_armed(struct fakeloop *fl)
{
	struct loop_timer *t;
	int n = 0;

	for (t = fl->timers; t != NULL; t = t->next)
		n += t->armed;
	return n;
}

void
fakeloop_free(struct fakeloop **flp)
{
	struct fakeloop *fl = *flp;

	if (fl == NULL)
		return;
	while (fl->head != NULL) {
		struct fakeloop_post *p = fl->head;

		fl->head = p->next;
		p->fn(p->arg);
		free(p);
	}
	/* Timers still here are the caller's leak: LeakSanitizer names them. */
	free(fl);
	*flp = NULL;
}
