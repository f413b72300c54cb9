/*
 * mbox: append one message to a UNIX mbox file as Postfix's local(8)
 * does (global/mail_copy.c with MAIL_COPY_MBOX, global/mbox_open.c), so
 * that an mbox written by mxgate reads byte for byte like one written by
 * Postfix 3.7:
 *
 *	From <sender>  <asctime>\n	  sender "" is MAILER-DAEMON; two spaces;
 *					  asctime(localtime()) without its \n
 *	Return-Path: <sender>\n
 *	Delivered-To: <delivered_to>\n
 *	trace				  (a forwarding local(8)'s lines)
 *	received
 *	content				  every line that starts "From " gets '>'
 *					  in front (MAIL_COPY_QUOTE); a last line
 *					  without LF gets one
 *	\n				  the blank line that ends the message
 *
 * Locking (mailbox_delivery_lock, Debian's default "fcntl, dotlock"): the
 * dotlock first (path.lock, O_EXCL, tried up to 20 times a second apart,
 * a lock older than 500 s is removed: deliver_lock_attempts, deliver_lock_delay
 * and stale_lock_time at their defaults), then the file is opened
 * (O_NOFOLLOW: never through a symlink; it must be a regular file with one
 * link and, as strict_mailbox_ownership = yes, owned by the euid), then the
 * kernel locks (fcntl and/or flock, non-blocking, tried as often).  Locks
 * are held until mbox_commit() or mbox_rollback(): a caller that stores one
 * message in several mailboxes keeps every one locked until all copies are
 * written, and undoes them all on a failure.
 *
 * Size limit: a mailbox that would grow past size_limit bytes (mailbox_size_limit
 * or virtual_mailbox_limit; 0: none) is not written: EFBIG, "File too large",
 * as Postfix's file-size rlimit gives it.
 *
 * THREADS: blocking file I/O: a writer thread or the delivery helper, never
 * an event loop.  No global state.
 *
 * TRUST: the path comes from configuration and the passwd entry; the caller
 * (the delivery helper) checks it.  As maildir.h, control bytes in sender and
 * delivered_to, and in trace anything but LF-ended lines (TAB allowed),
 * are refused with EINVAL before any disk work.
 */
#ifndef MXGATE_DELIVER_MBOX_H
#define MXGATE_DELIVER_MBOX_H

#include <stddef.h>
#include <sys/types.h>
#include <time.h>

struct buf;
struct spool;

enum {
	MBOX_LOCK_FCNTL = 1,
	MBOX_LOCK_FLOCK = 2,
	MBOX_LOCK_DOTLOCK = 4,
};

/*
 * Parse mailbox_delivery_lock / virtual_mailbox_lock ("fcntl, dotlock").
 * Returns the mask, or -1 with *bad_r the word that is not a lock style
 * (points into value; not NUL-terminated past the word: *badlen_r).
 */
int mbox_lock_parse(const char *value, const char **bad_r, size_t *badlen_r);

struct mbox_msg {
	const char *sender;		/* RFC 5321 form between the brackets, "" for <> */
	const char *received;		/* headers the server adds, or NULL */
	size_t	received_len;
	/* the message: content_len bytes at content, or body when not NULL */
	const char *content;
	size_t	content_len;
	const struct spool *body;
	time_t	now;			/* the From_ line's time (0: time(NULL)) */
};

struct mbox_rcpt {
	const char *path;		/* the mbox file, absolute */
	const char *delivered_to;
	const char *orig_to;		/* X-Original-To: above Delivered-To:, or NULL */
	const char *trace;		/* or NULL */
};

/* One open, locked mailbox with the copy appended and fsync'd. */
struct mbox_copy;

/*
 * Lock r->path (lock_mask: MBOX_LOCK_*), append the copy and fsync it.
 * Returns the copy (locked, for mbox_commit() or mbox_rollback()), or NULL
 * with *err set to "<what> <path>: <strerror>" and errno set (the mailbox is
 * then as it was and unlocked).
 */
struct mbox_copy *mbox_append(const struct mbox_msg *m, const struct mbox_rcpt *r,
			      int lock_mask, off_t size_limit, struct buf *err);
/*
 * Another copy of a message into the mailbox that c holds locked (one
 * message for alice and alice+x): appended behind what c wrote, under c's
 * locks; c's commit keeps both, its rollback undoes both.  0, or -1 with
 * *err set (the caller then rolls c back).
 */
int mbox_append_more(struct mbox_copy *c, const struct mbox_msg *m, const struct mbox_rcpt *r,
		     off_t size_limit, struct buf *err);
/* Keep the copy: release the locks, close, free.  *cp becomes NULL. */
void mbox_commit(struct mbox_copy **cp);
/*
 * Undo the copy: truncate the mailbox back to its old size (while still
 * locked), release the locks, close, free.  A truncate that fails is logged.
 */
void mbox_rollback(struct mbox_copy **cp);

/*
 * Format the copy into out (appended): the exact bytes mbox_append() writes
 * (for tests, and to compare with Postfix).
 */
int mbox_format(const struct mbox_msg *m, const struct mbox_rcpt *r, struct buf *out);

#endif
