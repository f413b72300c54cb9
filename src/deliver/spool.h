/*
 * spool: the body of one message while it arrives and until it is
 * delivered.  The session appends what DATA or BDAT bring (already
 * converted: LF line ends, no dot-stuffing), commits at the end, and hands
 * a reference to the delivery (deliver/deliver.h), which reads it back from
 * a writer thread.
 *
 * A spool is an interface (struct spool_ops, below), with two kinds here:
 *
 * The disk spool (the daemon's): each message is an unnamed file in
 * mxgate_spool_directory (O_TMPFILE; where the file system has none, a name
 * unlinked right after it is made), so a crash leaves nothing behind and
 * the last reference releases it (up to 64 released files are emptied and
 * kept open, unnamed, for the next messages).  spool_write() only appends to
 * a small buffer on the loop thread; a writer job (the writers pool) writes
 * each 32 KiB of it to the file while the session fills the next, at most
 * one job per spool, so a session holds at most about 2 x 32 KiB plus one
 * network read, whatever the message's size.  The spool is busy while a
 * job runs and the next 32 KiB are buffered, or while the bytes buffered in
 * memory by every spool together (*total) exceed the bound
 * (mxgate_message_memory_limit): back-pressure, never a refusal.  A write
 * A message that ends before its first 32 KiB were handed to a job never
 * gets a file: it is committed in that buffer (bounded like any session's
 * buffer, and counted in *total until freed).  A write
 * that fails (ENOSPC/EDQUOT: SPOOL_NO_SPACE; anything else: SPOOL_ERROR) is
 * logged, the bytes are dropped, the status is sticky, and the session
 * answers 452 4.3.1 or 451 4.3.0 at the end of the data.  The commit writes
 * what is left; it does not fsync: the spool is a staging area, and "250
 * means stored" is the Maildir copies' fsync (a crash before them loses
 * only a message that got no 250).
 *
 * The in-memory spool (tests and fuzzers): the bytes in one growing
 * buffer, every in-memory spool counted against one shared total bounded by
 * the limit.  A message that would go past it is not kept: SPOOL_NO_SPACE.
 *
 * THREADS: spool_write(), spool_busy(), spool_on_writable(),
 * spool_on_writable_cancel(), spool_commit() and spool_commit_cancel() are
 * called on the owner's loop thread.
 * spool_pread() and spool_size() may be called from any thread once the
 * commit has completed with SPOOL_OK; spool_ref()/spool_unref() from any
 * thread.
 */
#ifndef MXGATE_DELIVER_SPOOL_H
#define MXGATE_DELIVER_SPOOL_H

#include <stdatomic.h>
#include <stddef.h>
#include <sys/types.h>

#include "util/loop.h"

struct spool;

enum spool_status {
	SPOOL_OK,
	SPOOL_NO_SPACE,		/* over the memory bound (or, on disk, ENOSPC/EDQUOT) */
	SPOOL_ERROR,		/* could not store (a write error) */
};

/* What a spool implements; the functions below dispatch to it. */
struct spool_ops {
	enum spool_status (*write)(struct spool *sp, const void *data, size_t len);
	int	(*busy)(const struct spool *sp);
	void	(*on_writable)(struct spool *sp, struct loop *l, loop_fn *fn, void *arg);
	void	(*on_writable_cancel)(struct spool *sp);
	void	(*commit)(struct spool *sp, struct loop *l,
			  void (*done)(void *arg, enum spool_status st), void *arg);
	void	(*commit_cancel)(struct spool *sp);
	enum spool_status (*status)(const struct spool *sp);
	size_t	(*size)(const struct spool *sp);
	ssize_t	(*pread)(const struct spool *sp, void *buf, size_t len, size_t off);
	void	(*free)(struct spool *sp);	/* the last reference went */
	int	(*fd)(const struct spool *sp);	/* optional: the file, or -1 */
};

/* The common part; an implementation embeds it first and calls spool_init(). */
struct spool {
	const struct spool_ops *ops;
	atomic_int refs;
};

void spool_init(struct spool *sp, const struct spool_ops *ops);

/*
 * How a session gets its spools: a factory with its context (the memory
 * bound is the session's mxgate_message_memory_limit).  NULL factory:
 * spool_memory_new().  The daemon's is spool_disk_new() with a spool_ctx.
 */
typedef struct spool *spool_factory(void *ctx, atomic_long *total, long limit);

/*
 * An empty in-memory spool.  *total is the shared count of bytes held by
 * every in-memory spool; limit bounds it (0: no bound).  The caller holds
 * the one reference.
 */
struct spool *spool_memory_new(atomic_long *total, long limit);

struct buf;
struct workpool;
struct spool_dir;
struct spool_ctx;

/*
 * The spool directory (path copied) whose files the writers pool writes.
 * Free it after the pool is destroyed and every spool is gone.
 */
struct spool_dir *spool_dir_new(const char *path, struct workpool *writers);
void spool_dir_free(struct spool_dir **dp);
const char *spool_dir_path(const struct spool_dir *d);
/* One per event loop: the factory context of the sessions on loop l. */
struct spool_ctx *spool_ctx_new(struct spool_dir *d, struct loop *l);
void spool_ctx_free(struct spool_ctx **cp);
/* A spool_factory: an empty disk spool (ctx: a struct spool_ctx). */
struct spool *spool_disk_new(void *ctx, atomic_long *total, long limit);

/*
 * At start-up (blocking): make path (and its parents, mode 0700) unless
 * it exists, and check that it is a directory we may write.  -1 with *err
 * set ("mkdir /x: Permission denied") otherwise.
 */
int spool_dir_prepare(const char *path, struct buf *err);
/* The delivery journal's name in the spool directory (deliver/journal.h). */
#define SPOOL_JOURNAL_NAME	"journal"

/*
 * Blocking (start-up, or a writer/cleanup thread): remove the regular
 * files in path (but the journal) whose mtime is at least older_than seconds ago (0: all of
 * them), each logged.  Returns how many were removed.
 */
long spool_dir_clean(const char *path, long older_than);

/* One more reference; the spool is freed (its bytes released) with the last. */
struct spool *spool_ref(struct spool *sp);
void spool_unref(struct spool **spp);

/*
 * Append len bytes.  Returns the spool's status, which is sticky: after a
 * failure nothing more is stored (the session keeps reading to the end of
 * the data, then answers the failure).  Never blocks.
 */
enum spool_status spool_write(struct spool *sp, const void *data, size_t len);

/*
 * Back-pressure: non-zero while the writer should stop feeding bytes (a
 * disk spool with too much not yet written).  fn(arg) then runs once on l,
 * never inside the call, when the spool takes bytes again (at once, posted,
 * if it is not busy); spool_on_writable_cancel() before then: it will not.
 * The in-memory spool is never busy.
 */
int spool_busy(const struct spool *sp);
void spool_on_writable(struct spool *sp, struct loop *l, loop_fn *fn, void *arg);
void spool_on_writable_cancel(struct spool *sp);

/*
 * The last byte has been written: make the message whole and readable.
 * done(arg, status) runs later on l, never inside this call.  At most one
 * commit per spool.  spool_commit_cancel() before done runs: done will not
 * run.
 */
void spool_commit(struct spool *sp, struct loop *l, void (*done)(void *arg, enum spool_status st),
		  void *arg);
void spool_commit_cancel(struct spool *sp);

/* The status so far (SPOOL_OK until a write failed). */
enum spool_status spool_status(const struct spool *sp);
/* Bytes stored. */
size_t spool_size(const struct spool *sp);
/*
 * Copy up to len bytes from offset off into buf.  Returns the number of
 * bytes copied (0 at the end), or -1 with errno set.  After a successful
 * commit only.
 */
ssize_t spool_pread(const struct spool *sp, void *buf, size_t len, size_t off);
/*
 * After a successful commit: the descriptor of the file that holds the
 * bytes (the disk spool's, open for reading at any offset: pread or
 * copy_file_range, never its file position), or -1 when the bytes are not
 * in a file (in memory).  The spool keeps it; valid while a reference is held.
 */
int spool_fd(const struct spool *sp);

#endif
