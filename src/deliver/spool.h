/*
 * spool: the body of one message while it arrives and until it is
 * delivered.  The session appends what DATA or BDAT bring (already
 * converted: LF line ends, no dot-stuffing), commits at the end, and hands
 * a reference to the delivery (deliver/deliver.h), which reads it back from
 * a writer thread.
 *
 * Today there is one kind, the in-memory spool: the bytes are kept in one
 * growing buffer, and every in-memory spool of the process counts against
 * one shared total bounded by mxgate_message_memory_limit.  A message that
 * would go past the bound is not kept: the spool stops storing, reports
 * SPOOL_NO_SPACE from then on, and the session answers "452 4.3.1
 * Insufficient system storage" at the end of the data (Postfix's reply when
 * its queue file system is short of space).  The interface is the one a
 * disk spool needs (append with back-pressure, an asynchronous commit that
 * makes the bytes durable, reads from any thread), so that a spool on disk
 * can replace it without changing its callers.
 *
 * A spool is an interface (struct spool_ops, below): the in-memory spool
 * implements it here, tests add one that pushes back, and the disk spool of
 * the delivery issue will be another.
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
 * spool_memory_new().
 */
typedef struct spool *spool_factory(void *ctx, atomic_long *total, long limit);

/*
 * An empty in-memory spool.  *total is the shared count of bytes held by
 * every in-memory spool; limit bounds it (0: no bound).  The caller holds
 * the one reference.
 */
struct spool *spool_memory_new(atomic_long *total, long limit);

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

#endif
