/*
 * map_pool: connections to a table's server.  See map_pool.h for the contract.
 *
 * Idle connections are a stack (the most recently used on top, so a quiet
 * table keeps one warm connection and the others age out).  The lock is
 * never held across connect or disconnect: those talk to the server.
 */
#include "policy/map_pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "log/log.h"
#include "util/xalloc.h"

struct idle {
	void   *conn;
	time_t	since;		/* CLOCK_MONOTONIC seconds */
};

struct map_pool {
	char   *table;
	const struct map_pool_ops *ops;
	void   *ctx;
	int	wait_s;
	int	idle_s;
	pthread_mutex_t lock;
	pthread_cond_t freed;	/* a connection came back, or a slot opened */
	struct idle idle[MAP_POOL_CAP];
	int	nidle;
	int	open;		/* idle + in use + being connected */
	bool	down;		/* an outage was logged and no answer came since */
};

static time_t mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

struct map_pool *map_pool_create(const char *table, const struct map_pool_ops *ops, void *ctx,
				 int wait_s, int idle_s)
{
	struct map_pool *p = xcalloc(1, sizeof(*p));
	pthread_condattr_t ca;

	p->table = xstrdup(table);
	p->ops = ops;
	p->ctx = ctx;
	p->wait_s = wait_s > 0 ? wait_s : 1;
	p->idle_s = idle_s > 0 ? idle_s : 1;
	pthread_mutex_init(&p->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->freed, &ca);
	pthread_condattr_destroy(&ca);
	return p;
}

/* Under the lock: move the connections idle too long into out[]; returns how many. */
static int pool_take_stale(struct map_pool *p, void **out)
{
	time_t now = mono_now();
	int n = 0, keep = 0;

	for (int i = 0; i < p->nidle; i++) {
		if (now - p->idle[i].since >= p->idle_s)
			out[n++] = p->idle[i].conn;
		else
			p->idle[keep++] = p->idle[i];
	}
	p->nidle = keep;
	p->open -= n;
	return n;
}

static void pool_close_all(struct map_pool *p, void **conns, int n)
{
	for (int i = 0; i < n; i++)
		p->ops->disconnect(p->ctx, conns[i]);
}

void *map_pool_get(struct map_pool *p, char **why_r)
{
	void *stale[MAP_POOL_CAP], *conn = NULL;
	struct timespec deadline;
	int nstale;

	*why_r = NULL;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += p->wait_s;
	pthread_mutex_lock(&p->lock);
	nstale = pool_take_stale(p, stale);
	for (;;) {
		if (p->nidle > 0) {
			conn = p->idle[--p->nidle].conn;
			break;
		}
		if (p->open < MAP_POOL_CAP) {
			p->open++;
			break;
		}
		if (pthread_cond_timedwait(&p->freed, &p->lock, &deadline) == ETIMEDOUT
		    && p->nidle == 0 && p->open >= MAP_POOL_CAP) {
			pthread_mutex_unlock(&p->lock);
			pool_close_all(p, stale, nstale);
			*why_r = xasprintf("all %d connections stayed busy for %d s", MAP_POOL_CAP,
					   p->wait_s);
			return NULL;
		}
	}
	pthread_mutex_unlock(&p->lock);
	pool_close_all(p, stale, nstale);
	if (conn != NULL)
		return conn;
	conn = p->ops->connect(p->ctx, why_r);
	if (conn == NULL) {
		pthread_mutex_lock(&p->lock);
		p->open--;
		pthread_cond_signal(&p->freed);
		pthread_mutex_unlock(&p->lock);
		if (*why_r == NULL)
			*why_r = xstrdup("connect failed");
	}
	return conn;
}

void map_pool_put(struct map_pool *p, void *conn, bool broken)
{
	void *drop[MAP_POOL_CAP];
	int ndrop = 0;

	pthread_mutex_lock(&p->lock);
	if (broken) {
		for (int i = 0; i < p->nidle; i++)
			drop[ndrop++] = p->idle[i].conn;
		p->nidle = 0;
		p->open -= ndrop + 1;
		pthread_cond_broadcast(&p->freed);
	} else {
		p->idle[p->nidle].conn = conn;
		p->idle[p->nidle].since = mono_now();
		p->nidle++;
		pthread_cond_signal(&p->freed);
	}
	pthread_mutex_unlock(&p->lock);
	if (broken)
		p->ops->disconnect(p->ctx, conn);
	pool_close_all(p, drop, ndrop);
}

void map_pool_outcome(struct map_pool *p, bool answered, const char *why)
{
	bool log_down = false, log_up = false;

	pthread_mutex_lock(&p->lock);
	if (answered && p->down) {
		p->down = false;
		log_up = true;
	} else if (!answered && !p->down) {
		p->down = true;
		log_down = true;
	}
	pthread_mutex_unlock(&p->lock);
	if (log_down)
		msg_warn("%s: server unavailable: %s; lookups fail until it answers", p->table,
			 why ? why : "unknown error");
	if (log_up)
		msg_info("%s: server answers again", p->table);
}

void map_pool_free(struct map_pool **pp)
{
	struct map_pool *p = *pp;

	if (p == NULL)
		return;
	for (int i = 0; i < p->nidle; i++)
		p->ops->disconnect(p->ctx, p->idle[i].conn);
	pthread_cond_destroy(&p->freed);
	pthread_mutex_destroy(&p->lock);
	free(p->table);
	free(p);
	*pp = NULL;
}
