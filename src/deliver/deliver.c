/*
 * deliver: delivery requests and their transports.  See deliver.h.
 */
#include "deliver/deliver.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "deliver/maildir.h"
#include "deliver/spool.h"
#include "log/log.h"
#include "util/loop.h"
#include "util/workpool.h"
#include "util/xalloc.h"

struct deliverer {
	struct workpool *writers;
	deliver_store_fn *store;
	void   *store_ctx;
	atomic_int busy;
	/* requests ready to be stored, taken as a group by a writer (FIFO) */
	pthread_mutex_t lock;
	struct deliver_req *head, *tail;
};

/* At most this many messages share one durability step. */
#define DELIVER_GROUP_MAX	64

struct deliver_req {
	struct deliver_req *next;	/* the ready queue */
	struct deliverer *d;
	struct deliver_msg *m;
	struct loop *loop;
	void	(*done)(void *ctx, const struct deliver_msg *m, int ok);
	void   *ctx;		/* NULL done: cancelled */
	int	ok;
};

struct deliver_msg *
deliver_msg_new(const char *queue_id, const char *sender, const char *hostname,
		struct spool *body)
{
	struct deliver_msg *m = xcalloc(1, sizeof(*m));

	snprintf(m->queue_id, sizeof(m->queue_id), "%s", queue_id);
	m->sender = xstrdup(sender);
	m->hostname = xstrdup(hostname);
	m->body = spool_ref(body);
	gettimeofday(&m->arrival, NULL);
	return m;
}

void
deliver_msg_add_maildir(struct deliver_msg *m, const char *address, const char *maildir,
			uid_t uid, gid_t gid)
{
	struct deliver_rcpt *r;

	if (m->nrcpts == m->rcpt_cap) {
		m->rcpt_cap = m->rcpt_cap ? 2 * m->rcpt_cap : 4;
		m->rcpts = xrealloc(m->rcpts, m->rcpt_cap * sizeof(*m->rcpts));
	}
	r = &m->rcpts[m->nrcpts++];
	memset(r, 0, sizeof(*r));
	r->address = xstrdup(address);
	r->transport = DELIVER_MAILDIR;
	r->maildir = xstrdup(maildir);
	r->uid = uid;
	r->gid = gid;
	r->status = -1;
}

void
deliver_rcpt_orig(struct deliver_msg *m, const char *orig)
{
	struct deliver_rcpt *r = &m->rcpts[m->nrcpts - 1];

	free(r->orig);
	r->orig = xstrdup(orig);
}

void
deliver_rcpt_trace(struct deliver_msg *m, const char *trace)
{
	struct deliver_rcpt *r = &m->rcpts[m->nrcpts - 1];

	free(r->trace);
	r->trace = xstrdup(trace);
}

void
deliver_msg_free(struct deliver_msg **mp)
{
	struct deliver_msg *m = *mp;
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < m->nrcpts; i++) {
		free(m->rcpts[i].address);
		free(m->rcpts[i].orig);
		free(m->rcpts[i].trace);
		free(m->rcpts[i].maildir);
	}
	free(m->rcpts);
	free(m->sender);
	free(m->received);
	free(m->hostname);
	spool_unref(&m->body);
	buf_free(&m->err);
	free(m);
	*mp = NULL;
}

static deliver_store_fn deliver_maildir;

struct deliverer *
deliverer_create(struct workpool *writers, deliver_store_fn *store, void *ctx)
{
	struct deliverer *d = xcalloc(1, sizeof(*d));

	d->writers = writers;
	d->store = store != NULL ? store : deliver_maildir;
	d->store_ctx = ctx;
	atomic_init(&d->busy, 0);
	pthread_mutex_init(&d->lock, NULL);
	return d;
}

void
deliverer_free(struct deliverer **dp)
{
	if (*dp == NULL)
		return;
	pthread_mutex_destroy(&(*dp)->lock);
	free(*dp);
	*dp = NULL;
}

int
deliverer_busy(struct deliverer *d)
{
	return atomic_load(&d->busy);
}

/* The Maildir copies of one message (its recipients all go there). */
static struct maildir_rcpt *
deliver_maildir_args(const struct deliver_msg *m, struct maildir_msg *mm)
{
	struct maildir_rcpt *mr = xcalloc(m->nrcpts, sizeof(*mr));

	memset(mm, 0, sizeof(*mm));
	mm->return_path = m->sender;
	mm->received = m->received;
	mm->received_len = m->received ? strlen(m->received) : 0;
	mm->body = m->body;
	mm->hostname = m->hostname;
	for (size_t i = 0; i < m->nrcpts; i++) {
		mr[i].maildir = m->rcpts[i].maildir;
		mr[i].delivered_to = m->rcpts[i].address;
		mr[i].trace = m->rcpts[i].trace;
		if (m->orig_rcpt)
			mr[i].orig_to = m->rcpts[i].orig ? m->rcpts[i].orig : m->rcpts[i].address;
	}
	return mr;
}

/* The Maildir transport for one message alone: every copy, or none. */
static int
deliver_maildir(void *ctx, struct deliver_msg *m)
{
	struct maildir_msg mm;
	struct maildir_rcpt *mr = deliver_maildir_args(m, &mm);
	int ok;

	(void)ctx;
	ok = maildir_deliver(&mm, mr, m->nrcpts, &m->err) == 0;
	for (size_t i = 0; i < m->nrcpts; i++)
		m->rcpts[i].status = ok ? 0 : -1;
	free(mr);
	return ok ? 0 : -1;
}

/*
 * The Maildir transport for a group of messages that are ready together
 * (fsync batching; each message is still all or nothing):
 *  1. stage every copy of every message in tmp/, written, no fsync yet;
 *  2. the durability step: fsync every staged file (write-out was started
 *     at staging, so the first fsync's journal commit carries most of them);
 *  3. rename each message's copies into new/;
 *  4. fsync each distinct directory of the group once.
 * A message that fails a step is rolled back alone; a failure of step 4
 * rolls back the whole group (none of its names is known durable).  No
 * message is answered before step 4 is over: 250 still means stored.
 */
static void
deliver_maildir_group(struct deliver_req **rs, size_t n)
{
	struct maildir_batch *b[DELIVER_GROUP_MAX] = { 0 };
	struct maildir_batch *ok_b[DELIVER_GROUP_MAX];
	size_t i, nok = 0;

	for (i = 0; i < n; i++) {
		struct deliver_msg *m = rs[i]->m;
		struct maildir_msg mm;
		struct maildir_rcpt *mr = deliver_maildir_args(m, &mm);

		rs[i]->ok = maildir_stage_nosync(&mm, mr, m->nrcpts, &b[i], &m->err) == 0;
		free(mr);
	}
	for (i = 0; i < n; i++)
		if (rs[i]->ok)
			rs[i]->ok = maildir_flush(b[i], &rs[i]->m->err) == 0;
	for (i = 0; i < n; i++) {
		if (rs[i]->ok)
			rs[i]->ok = maildir_publish(b[i], &rs[i]->m->err) == 0;
		if (rs[i]->ok)
			ok_b[nok++] = b[i];
	}
	if (nok > 0) {
		struct buf err = BUF_INIT;

		if (maildir_sync_group(ok_b, nok, &err) < 0)
			for (i = 0; i < n; i++)
				if (rs[i]->ok) {
					rs[i]->ok = 0;
					buf_reset(&rs[i]->m->err);
					buf_puts(&rs[i]->m->err, buf_str(&err));
				}
		buf_free(&err);
	}
	for (i = 0; i < n; i++) {
		struct deliver_msg *m = rs[i]->m;

		if (!rs[i]->ok)
			maildir_rollback(b[i]);
		maildir_batch_free(&b[i]);
		for (size_t k = 0; k < m->nrcpts; k++)
			m->rcpts[k].status = rs[i]->ok ? 0 : -1;
	}
}

static void deliver_done(void *arg);

/*
 * On a writer thread: take every request that is ready (up to a group),
 * store them, post each one's answer.  One job is queued per request; a job
 * that finds the queue empty (another took its request into a group) does
 * nothing.
 */
static void
deliver_work(void *arg)
{
	struct deliverer *d = arg;
	struct deliver_req *rs[DELIVER_GROUP_MAX];
	size_t n = 0, i;

	pthread_mutex_lock(&d->lock);
	while (d->head != NULL && n < DELIVER_GROUP_MAX) {
		rs[n++] = d->head;
		d->head = d->head->next;
	}
	if (d->head == NULL)
		d->tail = NULL;
	pthread_mutex_unlock(&d->lock);
	if (n == 0)
		return;
	if (d->store == deliver_maildir && n > 1)
		deliver_maildir_group(rs, n);
	else
		for (i = 0; i < n; i++)
			rs[i]->ok = d->store(d->store_ctx, rs[i]->m) == 0;
	for (i = 0; i < n; i++) {
		/* The body's last reference, most often: its file goes here, not on a loop. */
		spool_unref(&rs[i]->m->body);
		loop_post(rs[i]->loop, deliver_done, rs[i]);
	}
}

static void
deliver_job_done(void *arg)
{
	(void)arg;
}

/* The lines Postfix's qmgr and virtual write, for pflogsumm and habits. */
static void
deliver_log(const struct deliver_msg *m, int ok)
{
	struct timeval now;
	double delay;
	size_t i;

	if (!ok) {
		msg_error("%s: maildir delivery failed: %s", m->queue_id, buf_str(&m->err));
		return;
	}
	gettimeofday(&now, NULL);
	delay = (double)(now.tv_sec - m->arrival.tv_sec)
		+ (double)(now.tv_usec - m->arrival.tv_usec) / 1e6;
	log_as("qmgr", LOG_LVL_INFO, "%s: from=<%s>, size=%zu, nrcpt=%zu (queue active)",
	       m->queue_id, log_escape_str(m->sender, 300), m->size, m->nrcpts);
	for (i = 0; i < m->nrcpts; i++) {
		char *orig = NULL;

		/* log_escape_str()'s buffer is per call: the second one is copied */
		if (m->rcpts[i].orig != NULL)
			orig = log_escape_dup(m->rcpts[i].orig, 300);
		log_as("virtual", LOG_LVL_INFO, "%s: to=<%s>%s%s%s, relay=virtual, delay=%.2g, "
		       "dsn=2.0.0, status=sent (delivered to maildir)", m->queue_id,
		       log_escape_str(m->rcpts[i].address, 300), orig ? ", orig_to=<" : "",
		       orig ? orig : "", orig ? ">" : "", delay);
		free(orig);
	}
	log_as("qmgr", LOG_LVL_INFO, "%s: removed", m->queue_id);
}

static void
deliver_done(void *arg)
{
	struct deliver_req *r = arg;

	atomic_fetch_sub(&r->d->busy, 1);
	deliver_log(r->m, r->ok);
	if (r->done != NULL)
		r->done(r->ctx, r->m, r->ok);
	deliver_msg_free(&r->m);
	free(r);
}

struct deliver_req *
deliver_submit(struct deliverer *d, struct deliver_msg *m, struct loop *l,
	       void (*done)(void *ctx, const struct deliver_msg *m, int ok), void *ctx)
{
	struct deliver_req *r = xcalloc(1, sizeof(*r));

	r->d = d;
	r->m = m;
	r->loop = l;
	r->done = done;
	r->ctx = ctx;
	atomic_fetch_add(&d->busy, 1);
	pthread_mutex_lock(&d->lock);
	if (d->tail != NULL)
		d->tail->next = r;
	else
		d->head = r;
	d->tail = r;
	pthread_mutex_unlock(&d->lock);
	workpool_submit(d->writers, l, deliver_work, deliver_job_done, d);
	return r;
}

void
deliver_cancel(struct deliver_req *r)
{
	if (r != NULL)
		r->done = NULL;
}
