/*
 * deliver: the one interface between a finished SMTP transaction and the
 * mailboxes.  A request carries the envelope, the recipients (each with its
 * transport) and the body as a committed spool (deliver/spool.h); it runs
 * off the event loops and completes with a result for each recipient.
 *
 * Transports: today only DELIVER_MAILDIR, virtual(8)-style delivery into a
 * Maildir as the user mxgate runs as (deliver/maildir.h).  LMTP and the
 * privileged local helper will be further transports behind the same
 * request.
 *
 * All or nothing (DESIGN.md promise 2): the Maildir transport stores every
 * copy or none, so every recipient gets the same result; the caller answers
 * 250 only when every recipient is stored.
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
 *   mxgate/qmgr:    <id>: removed
 * and "<id>: maildir delivery failed: <why>" (error) on failure.  The lines
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
	uid_t	uid;
	gid_t	gid;
	int	status;		/* after completion: 0 stored, -1 not stored */
};

struct deliver_msg {
	char	queue_id[16];
	char   *sender;		/* RFC 5321 (quoted) form, "" for <> */
	char   *received;	/* the Received: header the server adds (LF line ends) */
	char   *hostname;	/* myhostname, for Maildir file names */
	struct spool *body;	/* committed; the message holds a reference */
	size_t	size;		/* the message size as Postfix counts it (logs) */
	struct timeval arrival;	/* MAIL FROM time, for delay= */
	/* file size limits (0: none): mailbox_size_limit for DELIVER_LOCAL copies,
	 * virtual_mailbox_limit for DELIVER_MAILDIR ones, as local(8) and virtual(8) */
	long	mailbox_limit;
	long	virtual_limit;
	struct deliver_rcpt *rcpts;
	size_t	nrcpts, rcpt_cap;
	struct buf err;		/* after a failure: why, for the log */
};

/* An empty message; the setters below copy what they are given. */
struct deliver_msg *deliver_msg_new(const char *queue_id, const char *sender,
				    const char *hostname, struct spool *body);
void deliver_msg_add_maildir(struct deliver_msg *m, const char *address, const char *maildir,
			     uid_t uid, gid_t gid);
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
