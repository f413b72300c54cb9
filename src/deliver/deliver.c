/*
 * deliver: delivery requests and their transports.  See deliver.h.
 */
#include "deliver/deliver.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <errno.h>
#include <sys/time.h>
#include <unistd.h>

#include "deliver/journal.h"
#include "deliver/lmtp.h"
#include "deliver/lhelper.h"
#include "deliver/maildir.h"
#include "deliver/spool.h"
#include "log/log.h"
#include "smtp/reply.h"
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
	int	active;		/* jobs working the ready queue (under lock) */
	struct lhelper *helper;		/* NULL: none */
	const struct lhelper_conf *lconf;
	uid_t	run_uid;
	struct journal *journal;	/* NULL: every copy fsync'd by itself */
};

/* At most this many messages share one durability step. */
#define DELIVER_GROUP_MAX	64
/*
 * At most this many jobs work the ready queue at once (group commit): while
 * they store their groups, the messages that become ready wait in the queue
 * and the next round takes them together, so that a busy server makes fewer,
 * larger groups (fewer directory fsyncs, fewer wake-ups) instead of one
 * writer per message.  Two, so that one group's staging overlaps the other's
 * fsyncs.
 */
_Static_assert(DELIVER_GROUP_MAX <= JOURNAL_ROUND_MAX, "a round fits the journal's");

#ifndef DELIVER_ROUNDS_MAX
#define DELIVER_ROUNDS_MAX	2
#endif

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

static struct deliver_rcpt *
rcpt_new(struct deliver_msg *m, const char *address, enum deliver_transport tr)
{
	struct deliver_rcpt *r;

	if (m->nrcpts == m->rcpt_cap) {
		m->rcpt_cap = m->rcpt_cap ? 2 * m->rcpt_cap : 4;
		m->rcpts = xrealloc(m->rcpts, m->rcpt_cap * sizeof(*m->rcpts));
	}
	r = &m->rcpts[m->nrcpts++];
	memset(r, 0, sizeof(*r));
	r->address = xstrdup(address);
	r->transport = tr;
	r->status = -1;
	r->uid = (uid_t)-1;
	r->gid = (gid_t)-1;
	return r;
}

void
deliver_msg_add_maildir(struct deliver_msg *m, const char *address, const char *maildir,
			uid_t uid, gid_t gid)
{
	struct deliver_rcpt *r = rcpt_new(m, address, DELIVER_MAILDIR);

	r->maildir = xstrdup(maildir);
	r->uid = uid;
	r->gid = gid;
}

void
deliver_msg_add_lmtp(struct deliver_msg *m, const char *address, const char *nexthop)
{
	rcpt_new(m, address, DELIVER_LMTP)->nexthop = xstrdup(nexthop);
}

void
deliver_msg_add_discard(struct deliver_msg *m, const char *address, const char *text)
{
	rcpt_new(m, address, DELIVER_DISCARD)->nexthop = xstrdup(text);
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
		free(m->rcpts[i].nexthop);
		free(m->rcpts[i].log);
	}
	free(m->rcpts);
	free(m->sender);
	free(m->received);
	free(m->reply);
	free(m->hostname);
	spool_unref(&m->body);
	buf_free(&m->err);
	free(m);
	*mp = NULL;
}

static deliver_store_fn deliver_store;

struct deliverer *
deliverer_create(struct workpool *writers, deliver_store_fn *store, void *ctx)
{
	struct deliverer *d = xcalloc(1, sizeof(*d));

	d->writers = writers;
	d->store = store != NULL ? store : deliver_store;
	d->store_ctx = store != NULL ? ctx : d;
	d->run_uid = geteuid();
	atomic_init(&d->busy, 0);
	pthread_mutex_init(&d->lock, NULL);
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
deliverer_set_journal(struct deliverer *d, struct journal *j)
{
	d->journal = j;
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

/* Does rcpt r go through the delivery helper (or its in-process stand-in)? */
static int
deliver_via_helper(const struct deliverer *d, const struct deliver_rcpt *r)
{
	return r->transport == DELIVER_LOCAL
	       || (r->transport == DELIVER_MAILDIR && r->uid != d->run_uid);
}

/* A copy of ours over virtual(8)'s file size limit, virtual_mailbox_limit? */
static int
deliver_over_limit(const struct deliver_msg *m, const struct deliver_rcpt *r)
{
	size_t rlen = m->received ? strlen(m->received) : 0;

	return m->virtual_limit > 0
	       && (long)(spool_size(m->body) + rlen + strlen(r->address) + strlen(m->sender) + 32
			 + (r->trace ? strlen(r->trace) : 0)) > m->virtual_limit;
}

/*
 * The Maildir copies that this process writes: the DELIVER_MAILDIR
 * recipients of its own uid, in order (*n_r of them).
 */
static struct maildir_rcpt *
deliver_maildir_args(const struct deliverer *d, const struct deliver_msg *m,
		     struct maildir_msg *mm, size_t *n_r)
{
	struct maildir_rcpt *mr = xcalloc(m->nrcpts ? m->nrcpts : 1, sizeof(*mr));
	size_t n = 0;

	memset(mm, 0, sizeof(*mm));
	mm->return_path = m->sender;
	mm->received = m->received;
	mm->received_len = m->received ? strlen(m->received) : 0;
	mm->body = m->body;
	mm->hostname = m->hostname;
	for (size_t i = 0; i < m->nrcpts; i++) {
		if (m->rcpts[i].transport != DELIVER_MAILDIR || deliver_via_helper(d, &m->rcpts[i]))
			continue;
		mr[n].maildir = m->rcpts[i].maildir;
		mr[n].delivered_to = m->rcpts[i].address;
		mr[n].trace = m->rcpts[i].trace;
		if (m->orig_rcpt)
			mr[n].orig_to = m->rcpts[i].orig ? m->rcpts[i].orig : m->rcpts[i].address;
		n++;
	}
	*n_r = n;
	return mr;
}

/* Every copy of m is a Maildir one of ours, within its limit (m may join a group). */
static int
deliver_groupable(const struct deliverer *d, const struct deliver_msg *m)
{
	for (size_t i = 0; i < m->nrcpts; i++)
		if (m->rcpts[i].transport != DELIVER_MAILDIR || deliver_via_helper(d, &m->rcpts[i])
		    || deliver_over_limit(m, &m->rcpts[i]))
			return 0;
	return 1;
}

/* "delay=..., delays=a/b/c/d" as Postfix's log_adhoc(). */
static void
log_delays(struct buf *out, const struct deliver_msg *m, const struct timeval *handoff,
	   const struct timeval *conn, const struct timeval *done)
{
	static const struct timeval zero;
	const struct timeval *c = conn->tv_sec ? conn : handoff;

	buf_puts(out, ", delay=");
	lmtp_format_delay(out, &m->arrival, done);
	buf_puts(out, ", delays=");
	lmtp_format_delay(out, &m->arrival, &m->active);
	buf_putc(out, '/');
	lmtp_format_delay(out, &m->active, handoff);
	buf_putc(out, '/');
	if (conn->tv_sec)
		lmtp_format_delay(out, handoff, conn);
	else
		lmtp_format_delay(out, &zero, &zero);
	buf_putc(out, '/');
	lmtp_format_delay(out, c, done);
}

/* "<code> <dsn> <rcpt>: Recipient address rejected: <text>" from an LMTP reply. */
static char *
refusal_reply(const struct deliver_rcpt *r, const struct lmtp_rcpt *lr)
{
	const char *t = lr->reply + (strlen(lr->reply) > 4 ? 4 : strlen(lr->reply));
	size_t dl = strlen(lr->dsn);

	if (strncmp(t, lr->dsn, dl) == 0 && (t[dl] == ' ' || t[dl] == '\0'))
		t += dl;
	while (*t == ' ')
		t++;
	/* Dovecot's "<addr> text": the address is in our reply already */
	if (*t == '<') {
		const char *end = strchr(t, '>');
		size_t al = strlen(r->address);

		if (end != NULL && (size_t)(end - t - 1) == al && strncasecmp(t + 1, r->address, al) == 0)
			for (t = end + 1; *t == ' '; t++)
				;
	}
	return reply_string(RPL_TRANSPORT_REFUSAL, lr->code, lr->dsn, r->address, t);
}

static int
same_trace(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/*
 * One LMTP group: the recipients of m whose nexthop is nh and whose trace
 * (the lines a forwarding local(8) added) is trace: one message, one session.
 * 0 when every one was stored; -1 with m->reply and m->err set.  Each gets
 * its log line.
 */
static int
deliver_lmtp_group(struct deliver_msg *m, const char *nh, const char *trace)
{
	struct lmtp_rcpt *lr = xcalloc(m->nrcpts, sizeof(*lr));
	size_t *idx = xcalloc(m->nrcpts, sizeof(*idx));
	struct lmtp_msg lm = { .sender = m->sender, .received = m->received, .body = m->body };
	char *head = NULL;
	struct lmtp_result res;
	struct timeval handoff, done;
	struct buf err = BUF_INIT;
	size_t n = 0, i;
	int rv, n4 = 0, n5 = 0, n2 = 0, first5 = -1;

	for (i = 0; i < m->nrcpts; i++)
		if (m->rcpts[i].transport == DELIVER_LMTP && m->rcpts[i].log == NULL
		    && strcmp(m->rcpts[i].nexthop, nh) == 0 && same_trace(m->rcpts[i].trace, trace)) {
			idx[n] = i;
			lr[n++].address = m->rcpts[i].address;
		}
	if (trace != NULL) {
		/* above our Received:, as in the queue file that local(8) forwarded */
		head = xasprintf("%s%s", trace, m->received ? m->received : "");
		lm.received = head;
	}
	gettimeofday(&handoff, NULL);
	rv = lmtp_deliver(&m->lmtp, nh, &lm, lr, n, &res, &err);
	gettimeofday(&done, NULL);
	for (i = 0; i < n; i++) {
		if (rv < 0 || lr[i].code == 0)
			n4++;
		else if (lr[i].code / 100 == 2 && !res.rcpt_refused)
			n2++;
		else if (lr[i].code / 100 == 5) {
			n5++;
			if (first5 < 0)
				first5 = (int)i;
		} else if (lr[i].code / 100 != 2)
			n4++;
	}
	/* the rule of deliver.h */
	if (rv < 0 || n4 > 0 || (n5 > 0 && n2 > 0) || (res.rcpt_refused && n5 == 0)) {
		m->reply = reply_string(RPL_LMTP_DEFER);
	} else if (n5 > 0) {
		m->reply = refusal_reply(&m->rcpts[idx[first5]], &lr[first5]);
	}
	for (i = 0; i < n; i++) {
		struct deliver_rcpt *r = &m->rcpts[idx[i]];
		struct buf l = BUF_INIT;
		int ok = rv == 0 && !res.rcpt_refused && lr[i].code / 100 == 2;
		const char *fail_status = m->reply && m->reply[0] == '5' ? "bounced" : "deferred";

		buf_printf(&l, "relay=%s", res.relay);
		log_delays(&l, m, &handoff, &res.conn_done, &done);
		if (ok) {
			r->status = 0;
			buf_printf(&l, ", dsn=%s, status=sent (%s)", lr[i].dsn, lr[i].reply);
		} else if (rv < 0) {
			buf_printf(&l, ", dsn=%s, status=deferred (%s)", res.dsn, buf_str(&err));
		} else if (lr[i].code / 100 == 2) {
			buf_printf(&l, ", dsn=%s, status=%s (not sent: the server refused another"
				   " recipient of this message)", fail_status[0] == 'b' ? "5.0.0"
				   : "4.0.0", fail_status);
		} else {
			buf_printf(&l, ", dsn=%s, status=%s (host %s said: %s (in reply to %s"
				   " command))", lr[i].dsn, lr[i].code / 100 == 5 ? fail_status
				   : "deferred", res.relay, lr[i].reply, lr[i].stage);
		}
		r->log = buf_steal(&l);
		free(lr[i].reply);
	}
	if (m->reply != NULL) {
		buf_reset(&m->err);
		if (rv < 0)
			buf_printf(&m->err, "lmtp delivery failed: %s", buf_str(&err));
		else
			buf_printf(&m->err, "lmtp delivery to %s not complete", res.relay);
	}
	buf_free(&err);
	free(head);
	free(lr);
	free(idx);
	return m->reply != NULL ? -1 : 0;
}

/*
 * The real transports, every copy or none as far as can be: the server's own
 * Maildir copies are staged, the delivery helper stages the others
 * (lhelper.h: it holds them until told to publish or undo), then the LMTP
 * groups (what an LMTP server took cannot be taken back), then the own copies
 * are published and the helper's.  See deliver.h for the replies.
 */
static int
deliver_store(void *ctx, struct deliver_msg *m)
{
	struct deliverer *d = ctx;
	struct maildir_msg mm;
	size_t i, nown, nlocal = 0;
	struct maildir_rcpt *mr = deliver_maildir_args(d, m, &mm, &nown);
	struct lhelper_copy *lc = xcalloc(m->nrcpts ? m->nrcpts : 1, sizeof(*lc));
	struct maildir_batch *batch = NULL;
	struct lhelper_job *job = NULL;
	int ok = 0;

	for (i = 0; i < m->nrcpts; i++) {
		const struct deliver_rcpt *r = &m->rcpts[i];

		if (r->transport != DELIVER_MAILDIR && r->transport != DELIVER_LOCAL)
			continue;
		if (deliver_via_helper(d, r)) {
			struct lhelper_copy *c = &lc[nlocal++];
			size_t n = strlen(r->maildir);

			c->kind = n > 0 && r->maildir[n - 1] == '/' ? LHELPER_MAILDIR : LHELPER_MBOX;
			c->path = r->maildir;
			c->delivered_to = r->address;
			if (m->orig_rcpt)
				c->orig_to = r->orig ? r->orig : r->address;
			c->trace = r->trace;
			c->uid = r->uid;
			c->gid = r->gid;
			c->local_user = r->transport == DELIVER_LOCAL;
			c->size_limit = c->local_user ? m->mailbox_limit : m->virtual_limit;
		} else if (deliver_over_limit(m, r)) {
			buf_reset(&m->err);
			buf_printf(&m->err, "write %s: %s (virtual_mailbox_limit = %ld)", r->maildir,
				   strerror(EFBIG), m->virtual_limit);
			goto done;
		}
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
	for (i = 0; i < m->nrcpts; i++)
		if (m->rcpts[i].transport == DELIVER_LMTP && m->rcpts[i].log == NULL
		    && deliver_lmtp_group(m, m->rcpts[i].nexthop, m->rcpts[i].trace) < 0)
			goto undo;
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
	/* an LMTP copy keeps what its server said: stored is stored, whatever came after */
	for (i = 0; i < m->nrcpts; i++)
		if (m->rcpts[i].transport != DELIVER_LMTP)
			m->rcpts[i].status = ok ? 0 : -1;
	free(mr);
	free(lc);
	return ok ? 0 : -1;
}

/*
 * The Maildir transport for a group of messages that are ready together
 * (fsync batching; each message is still all or nothing):
 *  1. stage every copy of every message in tmp/, written, no fsync yet;
 *  2. the durability step: with a journal (j), one record per message and
 *     one fdatasync for the group (deliver/journal.h); without one, or for
 *     what the journal did not take, fsync every staged file (write-out was
 *     started at staging, so the first fsync carries most of them);
 *  3. rename each message's copies into new/;
 *  4. fsync each distinct directory of the group once (not for journaled
 *     messages: the journal's checkpoint syncs them later).
 * A message that fails a step is rolled back alone; a failure of step 4
 * rolls back the whole group (none of its names is known durable).  No
 * message is answered before step 4 is over: 250 still means stored.
 */
static void
deliver_maildir_group(struct deliver_req **rs, size_t n, struct journal *j,
		      struct journal_round *rd)
{
	struct maildir_batch *b[DELIVER_GROUP_MAX] = { 0 };
	struct maildir_batch *ok_b[DELIVER_GROUP_MAX];
	struct maildir_batch *staged[DELIVER_GROUP_MAX];
	size_t idx[DELIVER_GROUP_MAX];
	size_t i, nok = 0, nstaged = 0;

	for (i = 0; i < n; i++) {
		struct deliver_msg *m = rs[i]->m;
		struct maildir_msg mm;
		size_t nm;
		struct maildir_rcpt *mr = deliver_maildir_args(rs[i]->d, m, &mm, &nm);

		rs[i]->ok = (j != NULL ? maildir_stage_lazy(&mm, mr, nm, &b[i], &m->err)
				       : maildir_stage_nosync(&mm, mr, nm, &b[i], &m->err)) == 0;
		free(mr);
		if (rs[i]->ok) {
			idx[nstaged] = i;
			staged[nstaged++] = b[i];
		}
	}
	/* The journal takes what it can in one fdatasync; the rest is fsync'd copy by copy. */
	journal_write(j, staged, nstaged, rd);
	for (size_t k = 0; k < nstaged; k++) {
		i = idx[k];
		rs[i]->ok = (rd->off[k] >= 0 ? maildir_close_staged(b[i], &rs[i]->m->err)
					     : maildir_flush(b[i], &rs[i]->m->err)) == 0;
	}
	for (size_t k = 0; k < nstaged; k++) {
		i = idx[k];
		if (rs[i]->ok)
			rs[i]->ok = maildir_publish(b[i], &rs[i]->m->err) == 0;
		if (rd->off[k] < 0) {
			if (rs[i]->ok)
				ok_b[nok++] = b[i];
		} else if (rs[i]->ok) {
			journal_covered(j, rd, k, b[i]);
		} else {
			journal_cancel(j, rd, k);
		}
	}
	if (nok > 0) {
		struct buf err = BUF_INIT;

		if (maildir_sync_group(ok_b, nok, &err) < 0)
			for (size_t k = 0; k < nstaged; k++) {
				i = idx[k];
				if (rs[i]->ok && rd->off[k] < 0) {
					rs[i]->ok = 0;
					buf_reset(&rs[i]->m->err);
					buf_puts(&rs[i]->m->err, buf_str(&err));
				}
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
 * On a writer thread: rounds of the ready queue until it is empty.  Each
 * round takes every request that is ready (up to a group), stores them and
 * posts each one's answer.  A job is queued only when fewer than
 * DELIVER_ROUNDS_MAX are at work (deliver_submit()); the decision to stop is
 * taken under the same lock, so no request is left behind.
 */
static void
deliver_work(void *arg)
{
	struct deliverer *d = arg;
	struct deliver_req *rs[DELIVER_GROUP_MAX];
	struct journal_round rd;
	size_t n, i;

	for (;;) {
		n = 0;
		pthread_mutex_lock(&d->lock);
		while (d->head != NULL && n < DELIVER_GROUP_MAX) {
			rs[n++] = d->head;
			d->head = d->head->next;
		}
		if (d->head == NULL)
			d->tail = NULL;
		if (n == 0)
			d->active--;
		pthread_mutex_unlock(&d->lock);
		if (n == 0)
			return;
		rd.half = rd.checkpoint = -1;
		/* all groupable (deliver_submit()); with a journal, a round of one too */
		if (d->store == deliver_store && (n > 1 || d->journal != NULL))
			deliver_maildir_group(rs, n, d->journal, &rd);
		else
			for (i = 0; i < n; i++)
				rs[i]->ok = d->store(d->store_ctx, rs[i]->m) == 0;
		for (i = 0; i < n; i++) {
			/* The body's last reference, most often: its file goes here, not on a loop. */
			spool_unref(&rs[i]->m->body);
			loop_post(rs[i]->loop, deliver_done, rs[i]);
		}
		/* After the answers: this may checkpoint (syncfs) the half the round left. */
		journal_round_end(d->journal, &rd);
	}
}

/* On a writer thread: a message that cannot join a group (LMTP, the helper, a limit). */
static void
deliver_alone_work(void *arg)
{
	struct deliver_req *r = arg;

	r->ok = deliver_store(r->d->store_ctx, r->m) == 0;
	spool_unref(&r->m->body);
	loop_post(r->loop, deliver_done, r);
}

static void
deliver_job_done(void *arg)
{
	(void)arg;
}

static void
log_rcpt(const struct deliver_msg *m, const struct deliver_rcpt *r, const char *agent,
	 const char *rest)
{
	char *orig = NULL;

	/* log_escape_str()'s buffer is per call: the second one is copied */
	if (r->orig != NULL)
		orig = log_escape_dup(r->orig, 300);
	log_as(agent, LOG_LVL_INFO, "%s: to=<%s>%s%s%s, %s", m->queue_id,
	       log_escape_str(r->address, 300), orig ? ", orig_to=<" : "", orig ? orig : "",
	       orig ? ">" : "", rest);
	free(orig);
}

/* The lines Postfix's qmgr and delivery agents write, for pflogsumm and habits. */
static void
deliver_log(const struct deliver_msg *m, int ok)
{
	struct timeval now;
	double delay;
	size_t i;

	if (!ok) {
		int local = 0;

		/* what the LMTP servers were told is a fact, whatever came after */
		for (i = 0; i < m->nrcpts; i++) {
			if (m->rcpts[i].transport == DELIVER_LMTP && m->rcpts[i].log != NULL)
				log_rcpt(m, &m->rcpts[i], "lmtp", m->rcpts[i].log);
			local |= m->rcpts[i].transport == DELIVER_LOCAL;
		}
		msg_error("%s: %s: %s", m->queue_id, m->reply ? "delivery failed"
			  : local ? "local delivery failed" : "maildir delivery failed",
			  buf_str(&m->err));
		return;
	}
	gettimeofday(&now, NULL);
	delay = (double)(now.tv_sec - m->arrival.tv_sec)
		+ (double)(now.tv_usec - m->arrival.tv_usec) / 1e6;
	log_as("qmgr", LOG_LVL_INFO, "%s: from=<%s>, size=%zu, nrcpt=%zu (queue active)",
	       m->queue_id, log_escape_str(m->sender, 300), m->size, m->nrcpts);
	for (i = 0; i < m->nrcpts; i++) {
		const struct deliver_rcpt *r = &m->rcpts[i];
		struct buf l = BUF_INIT;

		switch (r->transport) {
		case DELIVER_LMTP:
			log_rcpt(m, r, "lmtp", r->log ? r->log : "relay=none");
			break;
		case DELIVER_DISCARD:
			buf_puts(&l, "relay=none");
			log_delays(&l, m, &m->active, &(struct timeval){ 0, 0 }, &now);
			buf_printf(&l, ", dsn=2.0.0, status=sent (%s)", r->nexthop);
			log_rcpt(m, r, "discard", buf_str(&l));
			break;
		case DELIVER_MAILDIR:
		case DELIVER_LOCAL: {
			/* local(8) says which it wrote: "delivered to maildir" or "... mailbox" */
			int local = r->transport == DELIVER_LOCAL;
			size_t plen = strlen(r->maildir);

			buf_printf(&l, "relay=%s, delay=%.2g, dsn=2.0.0, status=sent (delivered to %s)",
				   local ? "local" : "virtual", delay,
				   plen > 0 && r->maildir[plen - 1] == '/' ? "maildir" : "mailbox");
			log_rcpt(m, r, local ? "local" : "virtual", buf_str(&l));
			break;
		}
		}
		buf_free(&l);
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
	int new_job;

	r->d = d;
	r->m = m;
	r->loop = l;
	r->done = done;
	r->ctx = ctx;
	gettimeofday(&m->active, NULL);
	atomic_fetch_add(&d->busy, 1);
	if (d->store == deliver_store && !deliver_groupable(d, m)) {
		/* its own job: a slow LMTP server never holds up a group */
		workpool_submit(d->writers, l, deliver_alone_work, deliver_job_done, r);
		return r;
	}
	pthread_mutex_lock(&d->lock);
	if (d->tail != NULL)
		d->tail->next = r;
	else
		d->head = r;
	d->tail = r;
	new_job = d->active < DELIVER_ROUNDS_MAX;
	if (new_job)
		d->active++;
	pthread_mutex_unlock(&d->lock);
	if (new_job)
		workpool_submit(d->writers, l, deliver_work, deliver_job_done, d);
	return r;
}

void
deliver_cancel(struct deliver_req *r)
{
	if (r != NULL)
		r->done = NULL;
}
