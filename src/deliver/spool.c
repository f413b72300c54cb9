/*
 * spool: the in-memory message spool.  See spool.h.
 */
#include "deliver/spool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log/log.h"
#include "util/buf.h"
#include "util/xalloc.h"

struct spool {
	atomic_int refs;
	atomic_long *total;		/* shared by every in-memory spool */
	long	limit;
	long	charged;		/* bytes counted in *total */
	struct buf data;
	enum spool_status status;
	/* the pending commit */
	struct loop *commit_loop;
	void	(*commit_done)(void *arg, enum spool_status st);
	void   *commit_arg;
	int	committed;
};

struct spool *
spool_memory_new(atomic_long *total, long limit)
{
	struct spool *sp = xcalloc(1, sizeof(*sp));

	atomic_init(&sp->refs, 1);
	sp->total = total;
	sp->limit = limit;
	sp->status = SPOOL_OK;
	return sp;
}

struct spool *
spool_ref(struct spool *sp)
{
	atomic_fetch_add(&sp->refs, 1);
	return sp;
}

static void
spool_release(struct spool *sp)
{
	if (sp->charged > 0)
		atomic_fetch_sub(sp->total, sp->charged);
	sp->charged = 0;
	buf_free(&sp->data);
}

void
spool_unref(struct spool **spp)
{
	struct spool *sp = *spp;

	*spp = NULL;
	if (sp == NULL || atomic_fetch_sub(&sp->refs, 1) != 1)
		return;
	spool_release(sp);
	free(sp);
}

enum spool_status
spool_write(struct spool *sp, const void *data, size_t len)
{
	long total;

	if (sp->status != SPOOL_OK || len == 0)
		return sp->status;
	if (sp->committed)
		msg_panic("spool_write after commit");
	total = atomic_fetch_add(sp->total, (long)len) + (long)len;
	sp->charged += (long)len;
	if (sp->limit > 0 && total > sp->limit) {
		/* Not kept: release what this message holds, and refuse from now on. */
		sp->status = SPOOL_NO_SPACE;
		spool_release(sp);
		return sp->status;
	}
	buf_append(&sp->data, data, len);
	return SPOOL_OK;
}

int
spool_busy(const struct spool *sp)
{
	(void)sp;
	return 0;
}

void
spool_on_writable(struct spool *sp, struct loop *l, loop_fn *fn, void *arg)
{
	/* Never busy: the writer is never waiting. */
	(void)sp;
	loop_post(l, fn, arg);
}

static void
spool_commit_cb(void *arg)
{
	struct spool *sp = arg;

	if (sp->commit_done != NULL)
		sp->commit_done(sp->commit_arg, sp->status);
	sp->commit_done = NULL;
	spool_unref(&sp);
}

void
spool_commit(struct spool *sp, struct loop *l, void (*done)(void *arg, enum spool_status st),
	     void *arg)
{
	if (sp->committed)
		msg_panic("spool_commit: committed twice");
	sp->committed = 1;
	sp->commit_loop = l;
	sp->commit_done = done;
	sp->commit_arg = arg;
	/* The post holds a reference until it has run. */
	loop_post(l, spool_commit_cb, spool_ref(sp));
}

void
spool_commit_cancel(struct spool *sp)
{
	sp->commit_done = NULL;
}

enum spool_status
spool_status(const struct spool *sp)
{
	return sp->status;
}

size_t
spool_size(const struct spool *sp)
{
	return sp->data.len;
}

ssize_t
spool_pread(const struct spool *sp, void *buf, size_t len, size_t off)
{
	if (!sp->committed || sp->status != SPOOL_OK) {
		errno = EINVAL;
		return -1;
	}
	if (off >= sp->data.len)
		return 0;
	if (len > sp->data.len - off)
		len = sp->data.len - off;
	memcpy(buf, sp->data.data + off, len);
	return (ssize_t)len;
}
