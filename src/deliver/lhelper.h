/*
 * lhelper: the privileged local delivery helper (DESIGN.md, Privileges).
 *
 * `mxgate run`, started as root, calls lhelper_start() before it drops to
 * mail_owner.  That forks the helper process, which keeps root and nothing
 * else: every descriptor but its end of one socketpair is closed, it enters
 * a network namespace of its own (unshare(CLONE_NEWNET): no interface but a
 * down loopback), and it never logs itself (its stderr is the daemon's).
 * The network-facing daemon never holds the privilege; it only asks.
 *
 * A request (lhelper_prepare(), on a writer thread) is one message for
 * several copies: the envelope (Return-Path), the Received: text, the
 * hostname for Maildir names, an open descriptor of the body (SCM_RIGHTS),
 * and per copy its kind (Maildir or mbox), path, uid, gid, Delivered-To,
 * trace lines and size limit.  The daemon makes a new socketpair per
 * request and passes one end, with the body, over the helper's control
 * socket (SOCK_SEQPACKET: one atomic datagram); the helper forks a job
 * process for it, so requests run side by side and a crash takes one job.
 *
 * The job process checks every copy before it touches the disk (a daemon
 * that has been taken over cannot make it write anywhere else):
 *   - uid 0 and gid 0 are refused (mail for root arrives as default_privs:
 *     recipient side), and so is a uid without a passwd entry (but under
 *     virtual_mailbox_base), and a gid that is not the passwd entry's;
 *   - the path must be absolute, without "." or ".." components, and under
 *     the uid's own home directory (getpwuid(), never the request's word),
 *     or be mail_spool_directory/<that user's name> (or its Maildir), or
 *     mail_spool_directory/root for default_privs, or under
 *     virtual_mailbox_base (a non-empty one) for a uid at or above
 *     virtual_minimum_uid;
 *   - control bytes in headers (maildir.h, mbox.h).
 * Then each copy is written by a process of its own that drops to the
 * recipient for good before it touches the disk (setgroups, setresgid,
 * setresuid, and a check that root cannot be had back), so that the file is
 * owned by the recipient, quota is theirs, no path the recipient controls (a
 * symlink in ~) can make root write through it, and the process that copies
 * the message's bytes cannot become root again.  The group is the
 * recipient's, or mail_spool_directory's group when that directory is
 * group-writable (Postfix's spool_gid).  A local user with a ~/.forward is
 * refused (tempfail): mxgate cannot run what it says, and must not deliver
 * as if it were not there.
 *
 * All or nothing, in two phases: the copies' processes stage every copy
 * (Maildir: tmp/ file written and fsync'd; mbox: appended, fsync'd, and
 * still locked) and the job answers "staged"; then lhelper_commit()
 * publishes (Maildir rename into new/, fsync of new/; a failure there undoes
 * every copy, published ones too), then the mbox locks are released; or
 * lhelper_rollback() (or the daemon going away) undoes every copy: tmp/
 * files removed, every mbox truncated back to its old size while still
 * locked.
 *
 * Without a helper (not started as root), lhelper_prepare(NULL, ...) does
 * the same in the calling process, without changing ids, for copies whose
 * uid is the process's own; the caller refuses the others before (at RCPT,
 * with 451 and a log line).
 *
 * THREADS: lhelper_start() in main, before any thread but the log writer
 * exists (before the spawner, which inherits the control socket);
 * lhelper_stop() after the writers ended.  lhelper_prepare(),
 * lhelper_commit() and lhelper_rollback() block: writer threads only; any
 * number at once.
 */
#ifndef MXGATE_DELIVER_LHELPER_H
#define MXGATE_DELIVER_LHELPER_H

#include <stddef.h>
#include <sys/types.h>

struct buf;
struct spool;

enum lhelper_kind {
	LHELPER_MAILDIR = 1,	/* path ends in '/' */
	LHELPER_MBOX = 2,
};

/* What the helper checks against, fixed at start-up. */
struct lhelper_conf {
	const char *virtual_mailbox_base;	/* "" : no virtual copies */
	const char *mail_spool_directory;
	long	virtual_minimum_uid;
	uid_t	default_uid;			/* default_privs, or (uid_t)-1 */
	int	lock_mask;			/* mailbox_delivery_lock (mbox.h) */
};

struct lhelper;

/*
 * As root: fork the helper.  Returns 0 with *h_r, or -1 after msg_error().
 * Not root: 0 with *h_r NULL (no helper).
 */
int	lhelper_start(const struct lhelper_conf *c, struct lhelper **h_r);
/*
 * Close the control socket, end the helper (SIGTERM) and wait for it; jobs
 * already handed over finish on their own (a job whose daemon went away
 * undoes its copies).
 */
void	lhelper_stop(struct lhelper **h);

struct lhelper_copy {
	enum lhelper_kind kind;
	const char *path;
	const char *delivered_to;
	const char *orig_to;	/* X-Original-To: (enable_original_recipient), or NULL */
	const char *trace;	/* or NULL */
	uid_t	uid;
	gid_t	gid;
	off_t	size_limit;	/* 0: none */
	int	local_user;	/* a local(8) user: refuse one with a ~/.forward */
};

struct lhelper_msg {
	const char *sender;	/* Return-Path text, "" for <> */
	const char *received;	/* or NULL */
	const char *hostname;
	const struct spool *body;
	const struct lhelper_copy *copies;
	size_t	ncopies;
	/* with the mbox lock mask: for the in-process case (no helper) */
	const struct lhelper_conf *conf;
};

struct lhelper_job;

/*
 * Stage every copy of m (h NULL: in this process, as this process).
 * Returns the job, or NULL with *err set (nothing left on disk).
 */
struct lhelper_job *lhelper_prepare(struct lhelper *h, const struct lhelper_msg *m,
				    struct buf *err);
/* Publish; 0, or -1 with *err (every copy undone).  Frees the job. */
int	lhelper_commit(struct lhelper_job **jp, struct buf *err);
/* Undo every copy.  Frees the job. */
void	lhelper_rollback(struct lhelper_job **jp);

/*
 * The helper's check of one copy (exposed for the unit tests): 0, or -1
 * with *err saying why (uid 0, no passwd entry, a path outside home, the
 * spool and the base, a "." or ".." component).
 */
int	lhelper_check_copy(const struct lhelper_conf *c, const struct lhelper_copy *cp,
			   struct buf *err);

#endif
