/*
 * deliver: delivery requests and their transports.  See deliver.h.
 */
#include "deliver/deliver.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/time.h>
#include <unistd.h>

#include "deliver/lhelper.h"
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
	struct lhelper *helper;		/* NULL: none */
	const struct lhelper_conf *lconf;
	uid_t	run_uid;
};

struct deliver_req {
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
deliver_msg_add_local(struct deliver_msg *m, const char *address, const char *path, uid_t uid,
		      gid_t gid)
{
	deliver_msg_add_maildir(m, address, path, uid, gid);
	m->rcpts[m->nrcpts - 1].transport = DELIVER_LOCAL;
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
	d->store_ctx = store != NULL ? ctx : d;
	d->run_uid = geteuid();
	atomic_init(&d->busy, 0);
	return d;
}

void
deliverer_set_local(struct deliverer *d, struct lhelper *h, const struct lhelper_conf *c,
		    uid_t run_uid)
{
	d->helper = h;
	d->lconf = c;
	d->run_uid = run_uid;
}

void
deliverer_free(struct deliverer **dp)
{
	free(*dp);
	*dp = NULL;
}

int
deliverer_busy(struct deliverer *d)
{
	return atomic_load(&d->busy);
}

/* Does rcpt r go through the delivery helper (or its in-process stand-in)? */
static int
deliver_via_helper(const struct deliverer *d, const struct deliver_rcpt *r)
{
	return r->transport == DELIVER_LOCAL || r->uid != d->run_uid;
}

/*
 * The Maildir and local transports: every copy, or none.  The server's own
 * Maildir copies are staged here; the others are staged by the delivery
 * helper (lhelper.h), which holds them until it is told to publish or undo
 * them; then the own copies are published, then the helper's.
 */
static int
deliver_maildir(void *ctx, struct deliver_msg *m)
{
	struct deliverer *d = ctx;
	struct maildir_rcpt *mr = xcalloc(m->nrcpts, sizeof(*mr));
	struct lhelper_copy *lc = xcalloc(m->nrcpts, sizeof(*lc));
	struct maildir_msg mm = {
		.return_path = m->sender,
		.received = m->received,
		.received_len = m->received ? strlen(m->received) : 0,
		.body = m->body,
		.hostname = m->hostname,
	};
	struct maildir_batch *batch = NULL;
	struct lhelper_job *job = NULL;
	size_t i, nown = 0, nlocal = 0;
	int ok = 0;

	for (i = 0; i < m->nrcpts; i++) {
		const struct deliver_rcpt *r = &m->rcpts[i];

		if (d != NULL && deliver_via_helper(d, r)) {
			struct lhelper_copy *c = &lc[nlocal++];
			size_t n = strlen(r->maildir);

			c->kind = n > 0 && r->maildir[n - 1] == '/' ? LHELPER_MAILDIR : LHELPER_MBOX;
			c->path = r->maildir;
			c->delivered_to = r->address;
			c->trace = r->trace;
			c->uid = r->uid;
			c->gid = r->gid;
			c->local_user = r->transport == DELIVER_LOCAL;
			c->size_limit = c->local_user ? m->mailbox_limit : m->virtual_limit;
			continue;
		}
		mr[nown].maildir = r->maildir;
		mr[nown].delivered_to = r->address;
		mr[nown].trace = r->trace;
		/* virtual(8)'s file size limit, virtual_mailbox_limit */
		if (m->virtual_limit > 0
		    && (long)(spool_size(m->body) + mm.received_len + strlen(r->address)
			      + strlen(m->sender) + 32 + (r->trace ? strlen(r->trace) : 0))
		       > m->virtual_limit) {
			buf_reset(&m->err);
			buf_printf(&m->err, "write %s: %s (virtual_mailbox_limit = %ld)", r->maildir,
				   strerror(EFBIG), m->virtual_limit);
			goto done;
		}
		nown++;
	}
	/* a failed stage leaves its batch to roll back (maildir.h) */
	if (nown > 0 && maildir_stage(&mm, mr, nown, &batch, &m->err) < 0)
		goto undo;
	if (nlocal > 0) {
		struct lhelper_msg lm = {
			.sender = m->sender,
			.received = m->received,
			.hostname = m->hostname,
			.body = m->body,
			.copies = lc,
			.ncopies = nlocal,
			.conf = d->lconf,
		};

		if (d->helper == NULL && d->lconf == NULL) {
			buf_reset(&m->err);
			buf_puts(&m->err, "no delivery helper for a copy as another user");
			goto undo;
		}
		if ((job = lhelper_prepare(d->helper, &lm, &m->err)) == NULL)
			goto undo;
	}
	if (batch != NULL && (maildir_publish(batch, &m->err) < 0
			      || maildir_sync(batch, &m->err) < 0))
		goto undo;
	if (job != NULL && lhelper_commit(&job, &m->err) < 0)
		goto undo;
	ok = 1;
	goto done;
undo:
	lhelper_rollback(&job);
	if (batch != NULL)
		maildir_rollback(batch);
done:
	maildir_batch_free(&batch);
	for (i = 0; i < m->nrcpts; i++)
		m->rcpts[i].status = ok ? 0 : -1;
	free(mr);
	free(lc);
	return ok ? 0 : -1;
}

/* On a writer thread. */
static void
deliver_work(void *arg)
{
	struct deliver_req *r = arg;

	r->ok = r->d->store(r->d->store_ctx, r->m) == 0;
}

/* The lines Postfix's qmgr and virtual write, for pflogsumm and habits. */
static void
deliver_log(const struct deliver_msg *m, int ok)
{
	struct timeval now;
	double delay;
	size_t i;

	if (!ok) {
		int local = 0;

		for (i = 0; i < m->nrcpts; i++)
			local |= m->rcpts[i].transport == DELIVER_LOCAL;
		msg_error("%s: %s delivery failed: %s", m->queue_id, local ? "local" : "maildir",
			  buf_str(&m->err));
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
		/* local(8) says which it wrote: "delivered to maildir" or "... mailbox" */
		const struct deliver_rcpt *r = &m->rcpts[i];
		int local = r->transport == DELIVER_LOCAL;
		size_t plen = strlen(r->maildir);

		log_as(local ? "local" : "virtual", LOG_LVL_INFO, "%s: to=<%s>%s%s%s, relay=%s, "
		       "delay=%.2g, dsn=2.0.0, status=sent (delivered to %s)", m->queue_id,
		       log_escape_str(r->address, 300), orig ? ", orig_to=<" : "",
		       orig ? orig : "", orig ? ">" : "", local ? "local" : "virtual", delay,
		       plen > 0 && r->maildir[plen - 1] == '/' ? "maildir" : "mailbox");
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
	workpool_submit(d->writers, l, deliver_work, deliver_done, r);
	return r;
}

void
deliver_cancel(struct deliver_req *r)
{
	if (r != NULL)
		r->done = NULL;
}
