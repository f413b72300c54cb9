/*
 * workpool: threads that run blocking work off the event loops.  See
 * workpool.h.
 */
#include "util/workpool.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log/log.h"
#include "util/loop.h"
#include "util/xalloc.h"

struct workpool_job {
	struct workpool_job *next;
	void	(*work)(void *arg);
	void	(*done)(void *arg);
	void   *arg;
	struct loop *loop;
};

struct workpool {
	char   *name;
	pthread_mutex_t lock;
	pthread_cond_t nonempty;
	struct workpool_job *head, *tail;	/* FIFO: take at head, append at tail */
	int	stopping;
	int	busy;				/* queued or running */
	int	nthreads;
	pthread_t *threads;
};

/* On the loop thread: the job is over. */
static void
workpool_job_done(void *ctx)
{
	struct workpool_job *job = ctx;

	job->done(job->arg);
	free(job);
}

static void
workpool_finish(struct workpool *p, struct workpool_job *job)
{
	pthread_mutex_lock(&p->lock);
	p->busy--;
	pthread_mutex_unlock(&p->lock);
	/* After this the job belongs to its loop: do not touch it again. */
	loop_post(job->loop, workpool_job_done, job);
}

static void *
workpool_thread(void *ctx)
{
	struct workpool *p = ctx;
	struct workpool_job *job;

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
		workpool_finish(p, job);
	}
}

void
thread_name(pthread_t t, const char *name)
{
	char	n[16];

	/* "mxg " and at most 11 characters of name: what top -H and perf show */
	snprintf(n, sizeof(n), "mxg %s", name);
	(void)pthread_setname_np(t, n);
}

struct workpool *
workpool_create(const char *name, int nthreads)
{
	struct workpool *p = xcalloc(1, sizeof(*p));
	int i, err;

	if (nthreads < 0)
		msg_panic("workpool_create(%s): nthreads %d", name, nthreads);
	p->name = xstrdup(name);
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->nonempty, NULL);
	p->threads = xcalloc((size_t)(nthreads > 0 ? nthreads : 1), sizeof(*p->threads));
	for (i = 0; i < nthreads; i++) {
		if ((err = pthread_create(&p->threads[i], NULL, workpool_thread, p)) != 0)
			msg_fatal("%s pool: cannot start a thread: %s", name, strerror(err));
		thread_name(p->threads[i], name);
		p->nthreads++;
	}
	return p;
}

void
workpool_destroy(struct workpool **pp)
{
	struct workpool *p = *pp;
	int i;

	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = 1;
	pthread_cond_broadcast(&p->nonempty);
	pthread_mutex_unlock(&p->lock);
	for (i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_cond_destroy(&p->nonempty);
	pthread_mutex_destroy(&p->lock);
	free(p->threads);
	free(p->name);
	free(p);
	*pp = NULL;
}

void
workpool_submit(struct workpool *p, struct loop *l, void (*work)(void *arg),
		void (*done)(void *arg), void *arg)
{
	struct workpool_job *job = xcalloc(1, sizeof(*job));

	job->work = work;
	job->done = done;
	job->arg = arg;
	job->loop = l;
	pthread_mutex_lock(&p->lock);
	if (p->stopping)
		msg_panic("workpool_submit: the %s pool is being destroyed", p->name);
	p->busy++;
	if (p->nthreads == 0) {
		pthread_mutex_unlock(&p->lock);
		work(arg);
		workpool_finish(p, job);
		return;
	}
	if (p->tail)
		p->tail->next = job;
	else
		p->head = job;
	p->tail = job;
	pthread_cond_signal(&p->nonempty);
	pthread_mutex_unlock(&p->lock);
}

int
workpool_busy(struct workpool *p)
{
	int n;

	pthread_mutex_lock(&p->lock);
	n = p->busy;
	pthread_mutex_unlock(&p->lock);
	return n;
}
