/*
 * slowspool: a spool that pushes back.  See slowspool.h.
 */
#include "slowspool.h"

#include <stdlib.h>

#include "deliver/spool.h"
#include "util/loop.h"
#include "util/xalloc.h"

struct slowspool {
	struct spool base;	/* first */
	struct spool *inner;	/* the bytes: an in-memory spool */
	size_t	window, pending;
	struct loop *loop;
	loop_fn *fn;		/* the writer waiting for room, or NULL */
	void   *arg;
};

static struct slowspool *slow_last;

static enum spool_status
slow_write(struct spool *sp, const void *data, size_t len)
{
	struct slowspool *s = (struct slowspool *)sp;

	s->pending += len;
	return spool_write(s->inner, data, len);
}

static int
slow_busy(const struct spool *sp)
{
	const struct slowspool *s = (const struct slowspool *)sp;

	return s->pending >= s->window;
}

static void
slow_on_writable(struct spool *sp, struct loop *l, loop_fn *fn, void *arg)
{
	struct slowspool *s = (struct slowspool *)sp;

	s->loop = l;
	s->fn = fn;
	s->arg = arg;
	if (!slow_busy(sp))
		slowspool_release(sp);
}

static void
slow_on_writable_cancel(struct spool *sp)
{
	((struct slowspool *)sp)->fn = NULL;
}

static void
slow_commit(struct spool *sp, struct loop *l, void (*done)(void *arg, enum spool_status st),
	    void *arg)
{
	spool_commit(((struct slowspool *)sp)->inner, l, done, arg);
}

static void
slow_commit_cancel(struct spool *sp)
{
	spool_commit_cancel(((struct slowspool *)sp)->inner);
}

static enum spool_status
slow_status(const struct spool *sp)
{
	return spool_status(((const struct slowspool *)sp)->inner);
}

static size_t
slow_size(const struct spool *sp)
{
	return spool_size(((const struct slowspool *)sp)->inner);
}

static ssize_t
slow_pread(const struct spool *sp, void *buf, size_t len, size_t off)
{
	return spool_pread(((const struct slowspool *)sp)->inner, buf, len, off);
}

static void
slow_free(struct spool *sp)
{
	struct slowspool *s = (struct slowspool *)sp;

	if (slow_last == s)
		slow_last = NULL;
	spool_unref(&s->inner);
	free(s);
}

static const struct spool_ops slow_ops = {
	.write = slow_write,
	.busy = slow_busy,
	.on_writable = slow_on_writable,
	.on_writable_cancel = slow_on_writable_cancel,
	.commit = slow_commit,
	.commit_cancel = slow_commit_cancel,
	.status = slow_status,
	.size = slow_size,
	.pread = slow_pread,
	.free = slow_free,
};

struct spool *
slowspool_new(void *ctx, atomic_long *total, long limit)
{
	struct slowspool *s = xcalloc(1, sizeof(*s));

	spool_init(&s->base, &slow_ops);
	s->inner = spool_memory_new(total, limit);
	s->window = *(const size_t *)ctx;
	slow_last = s;
	return &s->base;
}

/* Posted: the writer is told unless it cancelled meanwhile. */
static void
slow_writable_cb(void *arg)
{
	struct slowspool *s = arg;
	struct spool *sp = &s->base;
	loop_fn *fn = s->fn;

	s->fn = NULL;
	if (fn != NULL)
		fn(s->arg);
	spool_unref(&sp);
}

void
slowspool_release(struct spool *sp)
{
	struct slowspool *s = (struct slowspool *)sp;

	s->pending = 0;
	if (s->fn != NULL)
		loop_post(s->loop, slow_writable_cb, spool_ref(sp));
}

struct spool *
slowspool_last(void)
{
	return slow_last ? &slow_last->base : NULL;
}
