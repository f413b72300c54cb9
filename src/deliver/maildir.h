/*
 * maildir: all-or-nothing Maildir delivery of one message to N mailboxes.
 *
 * DESIGN.md promise 2, "250 means stored": maildir_deliver() returns 0 only
 * when every copy is on disk (file fsync'd, renamed into new/, new/ and every
 * newly created directory's parent fsync'd).  On any failure it removes every
 * copy it made, in tmp/ and in new/, so the caller answers 4xx and the sender
 * retries: RFC 5321 4.1.1.4, no partial acceptance.
 *
 * THREADS: synchronous and blocking (write, fsync, rename, mkdir).  Call it
 * ONLY from a writer thread (deliver/pool.h), never on an event-loop thread.
 * It keeps no state between calls and is safe to run concurrently from
 * several threads, also into the same Maildir.
 *
 * TRUST: the Maildir paths come from configuration and maps, never from
 * client bytes (SECURITY_CHECKLIST row 29: the caller maps a local part to a
 * mailbox and refuses traversal).  As a second line, maildir_deliver()
 * refuses a relative path, one without the trailing '/', and one with a "."
 * or ".." component, and it refuses any control byte (below 0x20, or 0x7f:
 * CR, LF, TAB...) in return_path and delivered_to, and any in trace but
 * the LF that ends each line and TAB, as well as an empty line there (row
 * 60: no header injection).  Both refusals return -1 with errno EINVAL
 * before any disk work.
 */
#ifndef MXGATE_DELIVER_MAILDIR_H
#define MXGATE_DELIVER_MAILDIR_H

#include <stddef.h>

struct buf;
struct spool;

struct maildir_msg {
	/*
	 * Envelope sender as written between the brackets of Return-Path:
	 * (already quoted where the local part needs it); "" for the null
	 * sender <>.
	 */
	const char *return_path;
	/* Headers the server adds before the message (Received:), or NULL. */
	const char *received;
	size_t received_len;
	/*
	 * The message, LF line endings, no dot-stuffing: content_len bytes at
	 * content, or, when body is not NULL, the committed spool's bytes
	 * (content is then ignored).
	 */
	const char *content;
	size_t content_len;
	const struct spool *body;
	/*
	 * myhostname, for unique file names.  '/' and ':' are written as
	 * "\057" and "\072" (Maildir convention).  NULL or "" means "localhost".
	 */
	const char *hostname;
};

struct maildir_rcpt {
	/* Absolute path of the Maildir, ending in '/'. */
	const char *maildir;
	/* Address for Delivered-To: (the caller folds case as Postfix does). */
	const char *delivered_to;
	/*
	 * Header lines of this copy only, written below Delivered-To (LF line
	 * ends, each line ending in LF; TAB allowed), or NULL: the Received: and
	 * Delivered-To: lines that a forwarding local(8) prepended.
	 */
	const char *trace;
	/*
	 * The original recipient for X-Original-To: (virtual(8) writes it
	 * between Return-Path: and Delivered-To: when enable_original_recipient
	 * = yes), or NULL: none.
	 */
	const char *orig_to;
};

/*
 * The copies of one message, between the steps below.  Steps (each returns
 * 0, or -1 with *err set to "<operation> <path>: <strerror>" and errno set):
 *
 *  maildir_stage()    a. create each Maildir, its missing parents and
 *                        tmp/ new/ cur/, mode 0700;
 *                     b. write every copy to tmp/<unique> (O_CREAT|O_EXCL,
 *                        0600) and fsync it.
 *  maildir_publish()  c. only when every copy is staged, rename each into
 *                        new/ as "<sec>.V<dev hex>I<ino hex>M<usec>.<hostname>"
 *                        (Postfix's name: device and inode of the staged
 *                        file make it unique even for two deliveries in the
 *                        same microsecond).
 *  maildir_sync()     d. fsync each distinct new/ directory and the parent
 *                        of each directory created in step a.  A directory
 *                        found already there is not assumed durable (a
 *                        failed delivery or a crash may have made it without
 *                        fsyncing its parent): its parents are fsync'd up to
 *                        one this process knows to be durable, once per
 *                        directory per process.  Step a is skipped for a
 *                        Maildir whose directories are all known durable
 *                        (no mkdir calls); when its tmp/ file then cannot be
 *                        created (ENOENT: removed since), step a runs and
 *                        the copy is tried once more.
 *  maildir_rollback() undo what the steps did: no copy is left in any tmp/
 *                        or new/ (directories made in step a stay).  A
 *                        rollback step that fails is logged with msg_warn().
 *                        It also forgets every directory known durable, so
 *                        that the next deliveries find and sync them again.
 *
 * A batch is durable after maildir_sync() returned 0.  The steps are
 * separate so that a caller may publish several messages and then sync the
 * directories they share once (fsync batching).  maildir_batch_free() frees
 * the batch without undoing anything.
 */
struct maildir_batch;

int maildir_stage(const struct maildir_msg *m, const struct maildir_rcpt *rcpts, size_t n,
		  struct maildir_batch **batch_r, struct buf *err);
/*
 * Group commit (deliver.c batches the messages that are ready together):
 *  maildir_stage_nosync()  steps a and b without the fsync: each copy is
 *                          written, its write-out started
 *                          (sync_file_range), and its descriptor kept open;
 *  maildir_flush()         fsync and close each copy the batch staged that
 *                          way (the rest of step b).  Call it for every
 *                          batch of the group before publishing any: the
 *                          first fsync's journal commit then carries most of
 *                          the group, and the others find little left to do;
 *  maildir_sync_group()    step d for n published batches at once: each
 *                          distinct directory of the group fsync'd once.
 *                          On failure no batch of the group is durable
 *                          (roll them all back).
 */
int maildir_stage_nosync(const struct maildir_msg *m, const struct maildir_rcpt *rcpts,
			 size_t n, struct maildir_batch **batch_r, struct buf *err);
int maildir_flush(struct maildir_batch *b, struct buf *err);
/*
 * Journaled group commit (deliver/journal.h):
 *  maildir_stage_lazy()    steps a and b without the fsync and without
 *                          starting the write-out; descriptors kept open;
 *  maildir_batch_ncopies(), maildir_batch_copy()
 *                          copy i's open descriptor (-1 once closed) and
 *                          its new/ path, for the journal's record;
 *  maildir_close_staged()  close the copies without fsync (the journal
 *                          holds them);
 *  maildir_batch_npending(), maildir_batch_pending()
 *                          the directories the batch made or found that
 *                          are not known durable: the journal's recovery
 *                          makes them again, and its checkpoint (syncfs)
 *                          makes them durable;
 *  maildir_known_durable() after that checkpoint: those directories count
 *                          as durable (later deliveries into them, with
 *                          or without the journal, skip their fsyncs).
 *                          Marking them earlier would let a copy that
 *                          takes the fsync path in the meantime skip the
 *                          fsync of a directory entry not yet on disk.
 */
int maildir_stage_lazy(const struct maildir_msg *m, const struct maildir_rcpt *rcpts,
		       size_t n, struct maildir_batch **batch_r, struct buf *err);
size_t maildir_batch_ncopies(const struct maildir_batch *b);
int maildir_batch_copy(const struct maildir_batch *b, size_t i, const char **new_path_r);
int maildir_close_staged(struct maildir_batch *b, struct buf *err);
size_t maildir_batch_npending(const struct maildir_batch *b);
const char *maildir_batch_pending(const struct maildir_batch *b, size_t i);
void maildir_known_durable(char *const *paths, size_t n);
int maildir_sync_group(struct maildir_batch *const *bs, size_t n, struct buf *err);
int maildir_publish(struct maildir_batch *b, struct buf *err);
int maildir_sync(struct maildir_batch *b, struct buf *err);
void maildir_rollback(struct maildir_batch *b);
void maildir_batch_free(struct maildir_batch **bp);

/*
 * Deliver one copy of m to each of the n recipients (n >= 1): stage,
 * publish and sync, and roll back on any failure.  Each copy is
 *
 *	Return-Path: <return_path>\n
 *	Delivered-To: <delivered_to>\n
 *	trace
 *	received
 *	content
 *
 * in that order, as Postfix's virtual(8) writes it.  One copy per rcpts[i]:
 * two entries with the same maildir and different delivered_to get two
 * copies; the caller removes entries that are identical.
 *
 * Returns 0 when every copy is durable.  Returns -1 on any failure: no copy
 * is left in any tmp/ or new/ (directories made in step a stay), *err is
 * reset and set to "<operation> <path>: <strerror>", e.g. "fsync file
 * /srv/mail/u/Maildir/tmp/1700000000.M5P7Q3.mx: No space left on device",
 * and errno is that operation's errno (ENOSPC/EDQUOT let the caller choose
 * 452 4.3.1 over 451 4.3.0; EINVAL means refused arguments).
 *
 * BUGS:
 *  - A copy renamed into new/ is visible to an IMAP server before step d;
 *    if step d then fails and the server has already moved the file to
 *    cur/, the rollback cannot remove it (logged) and the sender's retry
 *    produces a duplicate.  Duplicates, never losses.
 *  - Stale tmp/ files (a crash between open and rename: row 55) are
 *    ignored by MUAs; maildir_clean_tmp() removes them.
 */
int maildir_deliver(const struct maildir_msg *m, const struct maildir_rcpt *rcpts, size_t n,
		    struct buf *err);

/*
 * The Maildir 36-hour rule: remove the regular files in tmp/ of every
 * Maildir under base (directories ending in "/tmp", searched depth-first
 * up to 4 levels below base) whose mtime is older than max_age seconds,
 * each logged.  Blocking: a cleanup thread only, never a loop.  Returns how
 * many were removed.
 */
long maildir_clean_tmp(const char *base, long max_age);

#endif
