/*
 * journal: one file that many Maildir deliveries share, so that a group of
 * messages is made durable by one fdatasync(2) instead of an fsync of every
 * copy and of every new/ directory (issue 10: throughput past the
 * per-message fsync limit; DESIGN.md promise 2 still holds: 250 means
 * stored, by the journal until the copies themselves are synced).
 *
 * A group (deliver.c's round) is written like this:
 *   1. every copy is staged in its Maildir's tmp/ without fsync
 *      (maildir_stage_lazy());
 *   2. journal_write(): one record per message (each copy's new/ path and
 *      its bytes, read back from the staged file), all in one pwrite, then
 *      one fdatasync of the journal; one at a time: a round whose pwrite
 *      ends while another round's fdatasync runs waits for it and then
 *      runs the next one, for every round written by then (group commit);
 *   3. the copies are renamed into new/ (maildir_publish()), without any
 *      fsync, and the messages answered;
 *   4. journal_round_end().
 * The copies reach the disk later: the journal is two halves, written in
 * turn; when the half in use is full, or its first record is a second old,
 * the next round switches to the other half, and the old half is
 * checkpointed: once the rounds in it have published their copies, one
 * syncfs(2) of each file system those copies are on, then the half's header
 * says "empty" (fdatasync'd).  Its records are then never read again.
 * When no round comes for a second, journal_tick() checkpoints the half in
 * use the same way.
 *
 * Recovery (journal_open(), blocking, at start-up, before any delivery):
 * the records of each live half are read in order, up to the first that is
 * torn (a bad magic, length or checksum, or another generation's).  For each
 * copy of a record: a file at its new/ path with the recorded bytes, or one in
 * cur/ under the same name with a ":2," suffix (a reader has seen it), is
 * left alone; otherwise the copy is written again (tmp/, fsync, rename to
 * that new/ path, fsync new/).  Then both halves are marked empty.  So a
 * message that got its 250 is in its Maildir after a crash or a power loss,
 * once.  A message is delivered twice only when a reader deleted its copy
 * in the second before the crash, or when its publish failed (it got 4xx:
 * its record is marked cancelled, but that mark is not synced at once);
 * a duplicate, never a loss.
 *
 * What is not journaled (the caller fsyncs it as before): a message whose
 * record would exceed JOURNAL_RECORD_MAX (large messages are bound by
 * bandwidth, not by fsyncs), and everything once the journal has failed
 * (a write or fdatasync error: logged once, then the journal is off).
 *
 * The file is locked (flock): a second process on the same spool directory
 * gets an error from journal_open() and delivers without a journal.
 *
 * THREADS: journal_write(), journal_cancel(), journal_covered(),
 * journal_round_end() and journal_tick() from any thread but a loop,
 * concurrently (a lock inside); they block on the disk.
 * journal_open() and journal_close() alone (start-up, shutdown).
 */
#ifndef MXGATE_DELIVER_JOURNAL_H
#define MXGATE_DELIVER_JOURNAL_H

#include <stddef.h>
#include <sys/types.h>

struct buf;
struct journal;
struct maildir_batch;

/* Each half holds this much; a record is at most JOURNAL_RECORD_MAX. */
#define JOURNAL_HALF_SIZE	(4L * 1024 * 1024)
#define JOURNAL_RECORD_MAX	(60L * 1024)
/* A round of up to this many messages always fits in one half. */
#define JOURNAL_ROUND_MAX	64

/* What one round wrote (journal_write() fills it; journal_round_end() ends it). */
struct journal_round {
	int	half;			/* -1: nothing journaled */
	int	checkpoint;		/* the half to checkpoint after it, or -1 */
	off_t	off[JOURNAL_ROUND_MAX];	/* each journaled batch's record, or -1 */
};

/*
 * Open (or create, mode 0600) the journal at path, lock it, and recover what
 * it holds (see above; each copy written again is logged, and a summary).
 * NULL with *err set ("open /x: Permission denied", "... is in use by
 * another process") otherwise.
 */
struct journal *journal_open(const char *path, struct buf *err);
/* Checkpoint what is live (syncfs) and close.  NULL is fine. */
void journal_close(struct journal **jp);

/*
 * Journal the staged batches bs[0..n) (n <= JOURNAL_ROUND_MAX): on return
 * rd->off[i] >= 0 for each batch whose copies are now durable in the
 * journal; the caller fsyncs the others (maildir_flush()) as without a
 * journal.  Returns how many were journaled.  Never fails the message: a
 * journal error turns the journal off (logged) and returns 0.
 */
size_t journal_write(struct journal *j, struct maildir_batch *const *bs, size_t n,
		     struct journal_round *rd);
/* Batch i of the round was rolled back after all: its record must not be recovered. */
void journal_cancel(struct journal *j, const struct journal_round *rd, size_t i);
/*
 * Batch b (the round's i-th) is published: the directories it made become
 * known durable once its half is checkpointed (maildir_known_durable()).
 */
void journal_covered(struct journal *j, const struct journal_round *rd, size_t i,
		     const struct maildir_batch *b);
/* The round's copies are published (or rolled back): may run a checkpoint (syncfs). */
void journal_round_end(struct journal *j, struct journal_round *rd);
/*
 * Called about once a second (the server's disk thread): when no record has
 * come for a second, the half in use is checkpointed now, so that under a
 * light load, too, records are live for a second or two only (a copy that a
 * reader deletes comes back after a crash only within that window).  It
 * blocks on the disk (syncfs).  NULL is fine.
 */
void journal_tick(struct journal *j);

#endif
