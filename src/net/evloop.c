/*
 * evloop: util/loop.h on libevent.  See evloop.h.
 */
#include "net/evloop.h"

#include <pthread.h>
#include <stdlib.h>

#include <event2/event.h>

#include "log/log.h"
#include "util/loop.h"
#include "util/xalloc.h"

struct evloop_post {
	struct evloop_post *next;
	loop_fn *fn;
	void   *arg;
};

struct evloop {
	struct loop loop;		/* first: a struct loop * is a struct evloop * */
	struct event_base *base;
	struct event *wake_ev;
	pthread_mutex_t lock;
	struct evloop_post *head, *tail;	/* under lock */
};

struct loop_timer {
	struct event *ev;
	loop_fn *fn;
	void   *arg;
};

static void
evloop_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct loop_timer *t = arg;

	(void)fd;
	(void)what;
	t->fn(t->arg);
}

static struct loop_timer *
evloop_timer_new(struct loop *l, loop_fn *fn, void *arg)
{
	struct evloop *el = (struct evloop *)l;
	struct loop_timer *t = xmalloc(sizeof(*t));

	t->fn = fn;
	t->arg = arg;
	if ((t->ev = evtimer_new(el->base, evloop_timer_cb, t)) == NULL)
		msg_fatal("evloop: cannot create a timer");
	return t;
}

static void
evloop_timer_set(struct loop_timer *t, long msec)
{
	struct timeval tv = { msec / 1000, (msec % 1000) * 1000 };

	evtimer_add(t->ev, &tv);
}

static void
evloop_timer_stop(struct loop_timer *t)
{
	evtimer_del(t->ev);
}

static int
evloop_timer_armed(const struct loop_timer *t)
{
	return evtimer_pending(t->ev, NULL) != 0;
}

static void
evloop_timer_free(struct loop_timer *t)
{
	event_free(t->ev);
	free(t);
}

static void
evloop_post(struct loop *l, loop_fn *fn, void *arg)
{
	struct evloop *el = (struct evloop *)l;
	struct evloop_post *p = xmalloc(sizeof(*p));

	p->next = NULL;
	p->fn = fn;
	p->arg = arg;
	pthread_mutex_lock(&el->lock);
	if (el->tail)
		el->tail->next = p;
	else
		el->head = p;
	el->tail = p;
	pthread_mutex_unlock(&el->lock);
	event_active(el->wake_ev, EV_READ, 0);
}

static void
evloop_now(struct loop *l, struct timeval *tv)
{
	event_base_gettimeofday_cached(((struct evloop *)l)->base, tv);
}

static const struct loop_ops evloop_ops = {
	.timer_new = evloop_timer_new,
	.timer_set = evloop_timer_set,
	.timer_stop = evloop_timer_stop,
	.timer_armed = evloop_timer_armed,
	.timer_free = evloop_timer_free,
	.post = evloop_post,
	.now = evloop_now,
};

/* Run what is queued now; what these post runs at the next wake-up. */
static int
evloop_run_posts(struct evloop *el)
{
	struct evloop_post *p, *next;
	int n = 0;

	pthread_mutex_lock(&el->lock);
	p = el->head;
	el->head = el->tail = NULL;
	pthread_mutex_unlock(&el->lock);
	for (; p != NULL; p = next) {
		next = p->next;
		p->fn(p->arg);
		free(p);
		n++;
	}
	return n;
}

static void
evloop_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	evloop_run_posts(arg);
}

struct evloop *
evloop_new(void)
{
	struct evloop *el = xcalloc(1, sizeof(*el));

	el->loop.ops = &evloop_ops;
	pthread_mutex_init(&el->lock, NULL);
	if ((el->base = event_base_new()) == NULL)
		msg_fatal("cannot create an event loop");
	if ((el->wake_ev = event_new(el->base, -1, 0, evloop_wake_cb, el)) == NULL)
		msg_fatal("evloop: cannot create the wake-up event");
	return el;
}

struct loop *
evloop_loop(struct evloop *el)
{
	return &el->loop;
}

struct event_base *
evloop_base(struct evloop *el)
{
	return el->base;
}

void
evloop_run(struct evloop *el)
{
	event_base_loop(el->base, EVLOOP_NO_EXIT_ON_EMPTY);
}

void
evloop_stop(struct evloop *el)
{
	event_base_loopexit(el->base, NULL);
}

void
evloop_free(struct evloop **elp)
{
	struct evloop *el = *elp;

	if (el == NULL)
		return;
	while (evloop_run_posts(el) > 0)
		;
	event_free(el->wake_ev);
	event_base_free(el->base);
	pthread_mutex_destroy(&el->lock);
	free(el);
	*elp = NULL;
}
