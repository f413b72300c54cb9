/*
 * deliver: the one interface between a finished SMTP transaction and the
 * mailboxes.  A request carries the envelope, the recipients (each with its
 * transport) and the body as a committed spool (deliver/spool.h); it runs
 * off the event loops and completes with a result for each recipient.
 *
 * Transports: DELIVER_MAILDIR, virtual(8)-style delivery into a Maildir as
 * the user mxgate runs as (deliver/maildir.h); DELIVER_LMTP, to an LMTP
 * server (deliver/lmtp.h), one session per group (below); DELIVER_DISCARD,
 * stored nowhere (discard(8)).  The privileged local helper will be a further
 * transport behind the same request.
 *
 * Order, for all or nothing as far as it goes: the Maildir copies are staged
 * (tmp/, fsync'd) first; then each LMTP group is delivered, in the order of
 * first appearance, stopping at the first that fails; then, only when every
 * group took the message, the Maildir copies are published, else rolled back.
 * What an LMTP server stored cannot be taken back: when a later group, or
 * publishing the Maildir copies, fails, the message gets a 4xx all the same
 * and those copies are delivered again when the sender retries (a
 * duplicate, never a loss).  The reply of a failed message (m->reply):
 *  - any LMTP 4xx, or a session that failed (no server, timeout, protocol):
 *    "451 4.3.0 Error: mailbox delivery failed, try again later";
 *  - the server refused RCPTs, all with 5xx (no DATA was sent, so nobody got
 *    it): "<code> <dsn> <rcpt>: Recipient address rejected: <its text>" from
 *    the first one refused;
 *  - after the final dot, every recipient 5xx: the same from the first; some
 *    2xx and some 5xx: 451 (those delivered get a duplicate on the retry);
 *  - a Maildir failure: NULL (the caller's 451 4.3.0 queue file write error).
 *
 * All or nothing (DESIGN.md promise 2): the Maildir copies are all stored or
 * none; the caller answers 250 only when every recipient is stored (ok).
 * A copy that an LMTP server took stays stored even when the message fails
 * (its status is 0 then): at least once, never lost.
 *
 * Same LMTP server, same session: the recipients of one nexthop whose trace
 * lines are the same share one LMTP transaction (copies that local(8)
 * forwarded carry their trace above the Received: header, so they go in a
 * transaction of their own).
 *
 * Batching (group commit): a message whose copies are all Maildir copies of
 * the server's own uid goes on the deliverer's ready queue; at most two
 * writers-pool jobs work that queue at once (one is queued at submit only
 * when fewer are at work), each in rounds: take every request that is ready
 * (up to 64), store them as one group with the Maildir transport (stage
 * every copy without fsync, fsync every copy, rename each message's copies,
 * fsync each distinct directory once; with the delivery journal, below, one
 * journal record per message and one fdatasync replace those fsyncs),
 * answer them, and take the next round until the queue is empty.  So the
 * messages that finish while a group is being made durable wait for the
 * next round and share its fsyncs, without a timer.  No request of a group
 * completes before its last step (250 means stored); each message is still
 * all or nothing (a failed directory fsync fails the group).  A round of
 * one (unless there is a journal: then it is a group of one), or a custom
 * store, stores each by itself.  Any other message (LMTP, the delivery helper, over
 * virtual_mailbox_limit) gets a job of its own, so a slow LMTP server never
 * holds up a group.  The body's reference is dropped on the writer thread
 * once stored, so the spool file is released there.
 *
 * One copy per recipient entry: the caller decides what is a duplicate
 * (smtp/txn.h: one per original recipient and final address).
 *
 * Logging: on completion the deliverer logs what Postfix's qmgr and
 * delivery agents would, tagged as they are:
 *   mxgate/qmgr:    <id>: from=<sender>, size=<N>, nrcpt=<n> (queue active)
 *   mxgate/virtual: <id>: to=<rcpt>, relay=virtual, delay=<s>, dsn=2.0.0,
 *                   status=sent (delivered to maildir)
 *                   (to=<final>, orig_to=<rcpt>, ... when an alias led
 *                   there, as Postfix's virtual(8) logs it)
 *   mxgate/lmtp:    <id>: to=<rcpt>, relay=host[addr]:port, delay=<s>,
 *                   delays=<a/b/c/d>, dsn=2.0.0, status=sent (250 2.0.0 ...)
 *                   as Postfix's lmtp(8) logs it (relay=<myhostname>[path]
 *                   for a unix: socket; status=deferred or bounced with
 *                   "host ... said: ... (in reply to ... command)" otherwise:
 *                   deferred when the client gets a 4xx, bounced for a 5xx)
 *   mxgate/discard: <id>: to=<rcpt>, relay=none, ..., status=sent (TEXT)
 *   mxgate/qmgr:    <id>: removed
 * and on failure, after the lmtp lines of what the LMTP servers answered,
 * "<id>: maildir delivery failed: <why>" or "<id>: delivery failed: lmtp
 * ..." (error).  The lines
 * are logged also when the request was cancelled (the client went away
 * while its message was being stored): what is stored is logged.
 *
 * THREADS: deliver_submit() and deliver_cancel() on the caller's loop
 * thread; the work runs on the writers pool; done runs on the caller's loop.
 */
#ifndef MXGATE_DELIVER_DELIVER_H
#define MXGATE_DELIVER_DELIVER_H

#include <stddef.h>
#include <sys/time.h>
#include <sys/types.h>

#include "deliver/lmtp.h"
#include "util/buf.h"

struct deliverer;
struct deliver_req;
struct loop;
struct spool;
struct workpool;

enum deliver_transport {
	DELIVER_MAILDIR,	/* a virtual mailbox; written as the server's own uid, or
				 * through the delivery helper when uid is another */
	DELIVER_LOCAL,		/* a local(8) user's mailbox (Maildir or mbox), written
				 * as uid by the delivery helper (deliver/lhelper.h), or
				 * in this process when uid is the server's own */
	DELIVER_LMTP,		/* an LMTP server: nexthop */
	DELIVER_DISCARD,	/* nowhere: nexthop is discard(8)'s text */
};

struct deliver_rcpt {
	char   *address;	/* RFC 5321 (quoted) form: Delivered-To:, logs */
	char   *orig;		/* the RCPT it came from when an alias led here
				 * (orig_to= in the log), else NULL */
	char   *trace;		/* header lines written below Delivered-To (LF line
				 * ends: what a forwarding local(8) adds), or NULL */
	enum deliver_transport transport;
	char   *maildir;	/* DELIVER_MAILDIR: absolute, ends in '/'; DELIVER_LOCAL:
				 * the Maildir (ending in '/') or the mbox file */
	char   *nexthop;	/* DELIVER_LMTP, DELIVER_DISCARD */
	char   *log;		/* after completion: its log line from "relay=" on, or NULL */
	uid_t	uid;
	gid_t	gid;
	int	status;		/* after completion: 0 stored, -1 not stored (an LMTP
				 * copy may be stored although the message failed) */
};

struct deliver_msg {
	char	queue_id[16];
	char   *sender;		/* RFC 5321 (quoted) form, "" for <> */
	char   *received;	/* header lines above the spool's content (LF line ends), or
				 * NULL: the PREPEND lines of the access restrictions.  Our
				 * Received: header is in the spool, where cleanup put it
				 * (deliver/cleanup.h), unless the transaction ran without
				 * cleanup (unit tests) */
	char   *hostname;	/* myhostname, for Maildir file names */
	struct spool *body;	/* committed; the message holds a reference */
	size_t	size;		/* Postfix's qmgr size=: the queue file's content size (logs) */
	struct timeval arrival;	/* MAIL FROM time, for delay= */
	int	orig_rcpt;	/* enable_original_recipient: each copy gets X-Original-To: */
	/* file size limits (0: none): mailbox_size_limit for DELIVER_LOCAL copies,
	 * virtual_mailbox_limit for DELIVER_MAILDIR ones, as local(8) and virtual(8) */
	long	mailbox_limit;
	long	virtual_limit;
	struct deliver_rcpt *rcpts;
	size_t	nrcpts, rcpt_cap;
	struct buf err;		/* after a failure: why, for the log */
	char   *reply;		/* after a failure: the reply line for the client, or
				 * NULL for the caller's own */
	struct lmtp_conf lmtp;	/* for DELIVER_LMTP (lmtp_conf_from_view()) */
	struct timeval active;	/* when it was submitted (delays=) */
};

/* An empty message; the setters below copy what they are given. */
struct deliver_msg *deliver_msg_new(const char *queue_id, const char *sender,
				    const char *hostname, struct spool *body);
void deliver_msg_add_maildir(struct deliver_msg *m, const char *address, const char *maildir,
			     uid_t uid, gid_t gid);
void deliver_msg_add_lmtp(struct deliver_msg *m, const char *address, const char *nexthop);
void deliver_msg_add_discard(struct deliver_msg *m, const char *address, const char *text);
/* A local user's copy (DELIVER_LOCAL): path is a Maildir when it ends in '/'. */
void deliver_msg_add_local(struct deliver_msg *m, const char *address, const char *path,
			   uid_t uid, gid_t gid);
/* The last recipient added came from orig (an alias): orig_to= in its log line. */
void deliver_rcpt_orig(struct deliver_msg *m, const char *orig);
/* The last recipient added gets trace (maildir.h: maildir_rcpt's trace) in its copy. */
void deliver_rcpt_trace(struct deliver_msg *m, const char *trace);
void deliver_msg_free(struct deliver_msg **mp);

/*
 * How a message is stored, on a writers thread: 0 when every recipient's
 * copy is stored (set m->rcpts[i].status), -1 with m->err set otherwise.
 * NULL selects the real transports (Maildir); the fuzzer and unit tests
 * pass an in-memory store.
 */
typedef int deliver_store_fn(void *ctx, struct deliver_msg *m);

/* A deliverer that runs store on the writers pool (both kept by the caller). */
struct deliverer *deliverer_create(struct workpool *writers, deliver_store_fn *store, void *ctx);
/*
 * Copies whose uid is not run_uid, and every DELIVER_LOCAL copy, go to the
 * delivery helper h (NULL: none; such copies with another uid then fail,
 * which the recipient check refuses before).  c is the helper's
 * configuration (mbox locking, the paths it allows); both are kept by the
 * caller.  Without this call: no helper, and run_uid is geteuid().
 */
struct lhelper;
struct lhelper_conf;
void deliverer_set_local(struct deliverer *d, struct lhelper *h, const struct lhelper_conf *c,
			 uid_t run_uid);
/*
 * Group commit through the delivery journal j (deliver/journal.h; kept by
 * the caller, closed after the deliverer is freed): the Maildir copies of a
 * round are made durable by one fdatasync of the journal, and a round of
 * one message goes that way too.  Without this call: fsyncs per copy.
 */
struct journal;
void deliverer_set_journal(struct deliverer *d, struct journal *j);
void deliverer_free(struct deliverer **dp);

/*
 * Deliver m (the deliverer takes it over).  done(ctx, m, ok) runs on l when
 * every recipient has its result (ok: all of them stored); m is freed right
 * after done returns.  Returns a handle for deliver_cancel(): the delivery
 * goes on, done is not called.
 */
struct deliver_req *deliver_submit(struct deliverer *d, struct deliver_msg *m, struct loop *l,
				   void (*done)(void *ctx, const struct deliver_msg *m, int ok),
				   void *ctx);
void deliver_cancel(struct deliver_req *r);

/* Messages submitted and not completed yet (shutdown waits for them). */
int deliverer_busy(struct deliverer *d);

#endif
