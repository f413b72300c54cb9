#include "deliver/pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "log/log.h"
#include "util/xalloc.h"

struct deliver_job {
	struct deliver_job *next;
	void (*work)(void *arg);
	void (*done)(void *arg);
	void *arg;
	struct event *ev;	/* on the submitter's base; activated when work is over */
};

struct deliver_pool {
	pthread_mutex_t lock;
	pthread_cond_t nonempty;
	struct deliver_job *head;	/* FIFO: take from head, append at tail */
	struct deliver_job *tail;
	int stopping;
	int nthreads;
	pthread_t *threads;
};

/*
 * The job's event holds the loop open while the job is in flight: it is
 * added with this timeout, which never expires in practice; the pool thread
 * activates it long before.  An event with neither fd nor timeout would not
 * count as pending, and a loop with nothing else to wait for would return
 * before done() ran.
 */
static const struct timeval deliver_hold = { 10L * 365 * 24 * 3600, 0 };

/* On the loop thread that owns the base. */
static void
deliver_job_done(evutil_socket_t fd, short what, void *ctx)
{
	struct deliver_job *job = ctx;

	if ((what & EV_TIMEOUT) && !(what & EV_READ)) {
		/* The hold expired before the work finished (after ten years): hold again. */
		event_add(job->ev, &deliver_hold);
		return;
	}
	event_free(job->ev);
	job->done(job->arg);
	free(job);
}

static void *
deliver_thread(void *ctx)
{
	struct deliver_pool *p = ctx;
	struct deliver_job *job;

	for (;;) {
		pthread_mutex_lock(&p->lock);
		while (p->head == NULL && !p->stopping)
			pthread_cond_wait(&p->nonempty, &p->lock);
		job = p->head;
		if (job == NULL) {	/* stopping and drained */
			pthread_mutex_unlock(&p->lock);
			return NULL;
		}
		p->head = job->next;
		if (p->head == NULL)
			p->tail = NULL;
		pthread_mutex_unlock(&p->lock);

		job->work(job->arg);
		/*
		 * Hand the job back to its loop.  EV_READ tells the callback that
		 * this is the wake-up, not the hold timeout.  After this call the
		 * job belongs to the loop thread: do not touch it again.
		 */
		event_active(job->ev, EV_READ, 0);
	}
}

struct deliver_pool *
deliver_pool_create(int nthreads)
{
	struct deliver_pool *p;
	int err;

	if (nthreads < 1)
		msg_panic("deliver_pool_create: nthreads %d", nthreads);
	p = xcalloc(1, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->nonempty, NULL);
	p->threads = xcalloc((size_t)nthreads, sizeof(*p->threads));
	for (int i = 0; i < nthreads; i++) {
		if ((err = pthread_create(&p->threads[i], NULL, deliver_thread, p)) != 0)
			msg_fatal("deliver_pool_create: start writer thread: %s", strerror(err));
		p->nthreads++;
	}
	return p;
}

void
deliver_pool_destroy(struct deliver_pool **pp)
{
	struct deliver_pool *p = *pp;

	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = 1;
	pthread_cond_broadcast(&p->nonempty);
	pthread_mutex_unlock(&p->lock);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_cond_destroy(&p->nonempty);
	pthread_mutex_destroy(&p->lock);
	free(p->threads);
	free(p);
	*pp = NULL;
}

void
deliver_pool_submit(struct deliver_pool *p, struct event_base *base,
		    void (*work)(void *arg), void (*done)(void *arg), void *arg)
{
	struct deliver_job *job = xcalloc(1, sizeof(*job));

	job->work = work;
	job->done = done;
	job->arg = arg;
	job->ev = event_new(base, -1, 0, deliver_job_done, job);
	if (job->ev == NULL || event_add(job->ev, &deliver_hold) < 0)
		msg_fatal("deliver_pool_submit: cannot create the completion event");

	pthread_mutex_lock(&p->lock);
	if (p->stopping)
		msg_panic("deliver_pool_submit: pool is being destroyed");
	if (p->tail)
		p->tail->next = job;
	else
		p->head = job;
	p->tail = job;
	pthread_cond_signal(&p->nonempty);
	pthread_mutex_unlock(&p->lock);
}
