/*
 * spool: the dispatch of the spool interface and the in-memory spool.  See
 * spool.h.
 */
#include "deliver/spool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log/log.h"
#include "util/buf.h"
#include "util/xalloc.h"

/* ---- the interface ------------------------------------------------------- */

void
spool_init(struct spool *sp, const struct spool_ops *ops)
{
	sp->ops = ops;
	atomic_init(&sp->refs, 1);
}

struct spool *
spool_ref(struct spool *sp)
{
	atomic_fetch_add(&sp->refs, 1);
	return sp;
}

void
spool_unref(struct spool **spp)
{
	struct spool *sp = *spp;

	*spp = NULL;
	if (sp != NULL && atomic_fetch_sub(&sp->refs, 1) == 1)
		sp->ops->free(sp);
}

enum spool_status
spool_write(struct spool *sp, const void *data, size_t len)
{
	return sp->ops->write(sp, data, len);
}

int
spool_busy(const struct spool *sp)
{
	return sp->ops->busy(sp);
}

void
spool_on_writable(struct spool *sp, struct loop *l, loop_fn *fn, void *arg)
{
	sp->ops->on_writable(sp, l, fn, arg);
}

void
spool_on_writable_cancel(struct spool *sp)
{
	sp->ops->on_writable_cancel(sp);
}

void
spool_commit(struct spool *sp, struct loop *l, void (*done)(void *arg, enum spool_status st),
	     void *arg)
{
	sp->ops->commit(sp, l, done, arg);
}

void
spool_commit_cancel(struct spool *sp)
{
	sp->ops->commit_cancel(sp);
}

enum spool_status
spool_status(const struct spool *sp)
{
	return sp->ops->status(sp);
}

size_t
spool_size(const struct spool *sp)
{
	return sp->ops->size(sp);
}

ssize_t
spool_pread(const struct spool *sp, void *buf, size_t len, size_t off)
{
	return sp->ops->pread(sp, buf, len, off);
}

int
spool_fd(const struct spool *sp)
{
	return sp->ops->fd != NULL ? sp->ops->fd(sp) : -1;
}

/* ---- the in-memory spool ------------------------------------------------- */

struct spool_mem {
	struct spool base;		/* first */
	atomic_long *total;		/* shared by every in-memory spool */
	long	limit;
	long	charged;		/* bytes counted in *total */
	struct buf data;
	enum spool_status status;
	/* the pending commit */
	void	(*commit_done)(void *arg, enum spool_status st);
	void   *commit_arg;
	int	committed;
	/* a pending "writable" call (never busy: it is posted at once) */
	loop_fn *writable_fn;
	void   *writable_arg;
};

static void
mem_release(struct spool_mem *m)
{
	if (m->charged > 0)
		atomic_fetch_sub(m->total, m->charged);
	m->charged = 0;
	buf_free(&m->data);
}

static void
mem_free(struct spool *sp)
{
	struct spool_mem *m = (struct spool_mem *)sp;

	mem_release(m);
	free(m);
}

static enum spool_status
mem_write(struct spool *sp, const void *data, size_t len)
{
	struct spool_mem *m = (struct spool_mem *)sp;
	long total;

	if (m->status != SPOOL_OK || len == 0)
		return m->status;
	if (m->committed)
		msg_panic("spool_write after commit");
	total = atomic_fetch_add(m->total, (long)len) + (long)len;
	m->charged += (long)len;
	if (m->limit > 0 && total > m->limit) {
		/* Not kept: release what this message holds, and refuse from now on. */
		m->status = SPOOL_NO_SPACE;
		mem_release(m);
		return m->status;
	}
	buf_append(&m->data, data, len);
	return SPOOL_OK;
}

static int
mem_busy(const struct spool *sp)
{
	(void)sp;
	return 0;
}

static void
mem_writable_cb(void *arg)
{
	struct spool_mem *m = arg;
	loop_fn *fn = m->writable_fn;
	struct spool *sp = &m->base;

	m->writable_fn = NULL;
	if (fn != NULL)
		fn(m->writable_arg);
	spool_unref(&sp);	/* the post's reference */
}

static void
mem_on_writable(struct spool *sp, struct loop *l, loop_fn *fn, void *arg)
{
	struct spool_mem *m = (struct spool_mem *)sp;

	m->writable_fn = fn;
	m->writable_arg = arg;
	loop_post(l, mem_writable_cb, spool_ref(sp));
}

static void
mem_on_writable_cancel(struct spool *sp)
{
	((struct spool_mem *)sp)->writable_fn = NULL;
}

static void
mem_commit_cb(void *arg)
{
	struct spool_mem *m = arg;
	struct spool *sp = &m->base;

	if (m->commit_done != NULL)
		m->commit_done(m->commit_arg, m->status);
	m->commit_done = NULL;
	spool_unref(&sp);	/* the post's reference */
}

static void
mem_commit(struct spool *sp, struct loop *l, void (*done)(void *arg, enum spool_status st),
	   void *arg)
{
	struct spool_mem *m = (struct spool_mem *)sp;

	if (m->committed)
		msg_panic("spool_commit: committed twice");
	m->committed = 1;
	m->commit_done = done;
	m->commit_arg = arg;
	/* The post holds a reference until it has run. */
	loop_post(l, mem_commit_cb, spool_ref(sp));
}

static void
mem_commit_cancel(struct spool *sp)
{
	((struct spool_mem *)sp)->commit_done = NULL;
}

static enum spool_status
mem_status(const struct spool *sp)
{
	return ((const struct spool_mem *)sp)->status;
}

static size_t
mem_size(const struct spool *sp)
{
	return ((const struct spool_mem *)sp)->data.len;
}

static ssize_t
mem_pread(const struct spool *sp, void *buf, size_t len, size_t off)
{
	const struct spool_mem *m = (const struct spool_mem *)sp;

	if (!m->committed || m->status != SPOOL_OK) {
		errno = EINVAL;
		return -1;
	}
	if (off >= m->data.len)
		return 0;
	if (len > m->data.len - off)
		len = m->data.len - off;
	memcpy(buf, m->data.data + off, len);
	return (ssize_t)len;
}

static const struct spool_ops spool_mem_ops = {
	.write = mem_write,
	.busy = mem_busy,
	.on_writable = mem_on_writable,
	.on_writable_cancel = mem_on_writable_cancel,
	.commit = mem_commit,
	.commit_cancel = mem_commit_cancel,
	.status = mem_status,
	.size = mem_size,
	.pread = mem_pread,
	.free = mem_free,
};

struct spool *
spool_memory_new(atomic_long *total, long limit)
{
	struct spool_mem *m = xcalloc(1, sizeof(*m));

	spool_init(&m->base, &spool_mem_ops);
	m->total = total;
	m->limit = limit;
	m->status = SPOOL_OK;
	return &m->base;
}
