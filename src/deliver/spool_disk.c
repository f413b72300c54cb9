/*
 * spool_disk: the disk spool.  See spool.h.
 *
 * One spool is one unnamed file in the spool directory (O_TMPFILE, or a
 * name unlinked right after it is made where the file system has no
 * O_TMPFILE).  The loop thread fills a small buffer; a writer job
 * (util/workpool.h) writes it to the file while the loop fills the next.
 * At most one job per spool runs at a time, so the file is written in
 * order with plain write(2) and no lock.
 */
#include "deliver/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log/log.h"
#include "util/buf.h"
#include "util/workpool.h"
#include "util/xalloc.h"

/* A write job starts once this much is buffered; the spool is busy while
 * a job runs and this much is buffered again. */
#define SPOOL_DISK_FLUSH	(32 * 1024)

/*
 * Released spool files kept for reuse (emptied, still unnamed): creating
 * and releasing an inode per message costs more than the bytes of most
 * messages (ext4's inode allocator scans past recently released inodes).
 */
#define SPOOL_DIR_KEEP	64

struct spool_dir {
	char   *path;
	struct workpool *writers;
	atomic_ulong seq;
	pthread_mutex_t lock;		/* free[] */
	int	free[SPOOL_DIR_KEEP];
	int	nfree;
};

struct spool_disk {
	struct spool base;		/* first */
	struct spool_dir *dir;
	struct spool_ctx *ctx;
	atomic_long *total;		/* bytes buffered, every spool */
	long	limit;
	/* loop thread */
	struct buf fill;		/* bytes not yet handed to a job */
	int	job;			/* a write job runs */
	size_t	size;			/* bytes taken (the file's size once committed) */
	enum spool_status status;
	int	committing, committed;
	int	in_memory;		/* committed in fill, no file (a small message) */
	void	(*commit_done)(void *arg, enum spool_status st);
	void   *commit_arg;
	struct loop *commit_loop;
	loop_fn *writable_fn;
	void   *writable_arg;
	struct loop *writable_loop;
	/* the job's (the loop does not touch them while job is set) */
	int	fd;
	struct buf out;
	enum spool_status job_status;
	int	job_errno;
};

struct spool_ctx {
	struct spool_dir *dir;
	struct loop *loop;
};

struct spool_dir *
spool_dir_new(const char *path, struct workpool *writers)
{
	struct spool_dir *d = xcalloc(1, sizeof(*d));

	d->path = xstrdup(path);
	d->writers = writers;
	atomic_init(&d->seq, 0);
	pthread_mutex_init(&d->lock, NULL);
	return d;
}

void
spool_dir_free(struct spool_dir **dp)
{
	if (*dp == NULL)
		return;
	for (int i = 0; i < (*dp)->nfree; i++)
		close((*dp)->free[i]);
	pthread_mutex_destroy(&(*dp)->lock);
	free((*dp)->path);
	free(*dp);
	*dp = NULL;
}

const char *
spool_dir_path(const struct spool_dir *d)
{
	return d->path;
}

struct spool_ctx *
spool_ctx_new(struct spool_dir *d, struct loop *l)
{
	struct spool_ctx *c = xcalloc(1, sizeof(*c));

	c->dir = d;
	c->loop = l;
	return c;
}

void
spool_ctx_free(struct spool_ctx **cp)
{
	free(*cp);
	*cp = NULL;
}

/* ---- the writer side ------------------------------------------------------- */

static enum spool_status
disk_status_of(int err)
{
	return err == ENOSPC || err == EDQUOT ? SPOOL_NO_SPACE : SPOOL_ERROR;
}

/* An unnamed file in the spool directory. */
static int
disk_open(struct spool_disk *s)
{
	char *name;
	int fd = -1;

	pthread_mutex_lock(&s->dir->lock);
	if (s->dir->nfree > 0)
		fd = s->dir->free[--s->dir->nfree];
	pthread_mutex_unlock(&s->dir->lock);
	if (fd >= 0)
		return fd;	/* emptied and rewound when it was released */
#ifdef O_TMPFILE
	fd = open(s->dir->path, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
		return fd;
#endif
	/* No O_TMPFILE here: a name that lives for two system calls. */
	for (int tries = 0; tries < 8; tries++) {
		name = xasprintf("%s/%ld.%lu.tmp", s->dir->path, (long)getpid(),
				 atomic_fetch_add(&s->dir->seq, 1));
		fd = open(name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
		if (fd >= 0 && unlink(name) < 0) {
			int saved = errno;

			close(fd);
			fd = -1;
			errno = saved;
		}
		free(name);
		if (fd >= 0 || errno != EEXIST)
			break;
	}
	return fd;
}

/* On a writer thread: write s->out at the end of the file. */
static void
disk_write_work(void *arg)
{
	struct spool_disk *s = arg;
	const char *p = s->out.data;
	size_t left = s->out.len;

	s->job_status = SPOOL_OK;
	if (s->fd < 0 && (s->fd = disk_open(s)) < 0) {
		s->job_errno = errno;
		s->job_status = disk_status_of(errno);
		return;
	}
	while (left > 0) {
		ssize_t w = write(s->fd, p, left);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			s->job_errno = w < 0 ? errno : EIO;
			s->job_status = disk_status_of(s->job_errno);
			return;
		}
		p += w;
		left -= (size_t)w;
	}
}

static void disk_job_start(struct spool_disk *s);

static void
disk_drop_fill(struct spool_disk *s)
{
	if (s->fill.len > 0)
		atomic_fetch_sub(s->total, (long)s->fill.len);
	buf_free(&s->fill);
}

static int
disk_busy(const struct spool *sp)
{
	const struct spool_disk *s = (const struct spool_disk *)sp;

	if (s->status != SPOOL_OK || !s->job)
		return 0;
	return s->fill.len >= SPOOL_DISK_FLUSH
	       || (s->limit > 0 && atomic_load(s->total) > s->limit && s->fill.len > 0);
}

static void
disk_commit_finish(struct spool_disk *s)
{
	void (*done)(void *arg, enum spool_status st) = s->commit_done;

	s->committing = 0;
	s->committed = 1;
	s->commit_done = NULL;
	if (!s->in_memory)
		buf_free(&s->fill);
	if (done != NULL)
		done(s->commit_arg, s->status);
}

/* On the loop thread: the job is over. */
static void
disk_write_done(void *arg)
{
	struct spool_disk *s = arg;
	struct spool *sp = &s->base;

	s->job = 0;
	atomic_fetch_sub(s->total, (long)s->out.len);
	buf_reset(&s->out);
	if (s->job_status != SPOOL_OK && s->status == SPOOL_OK) {
		char ebuf[256];

		s->status = s->job_status;
		msg_warn("spool file in %s: %s", s->dir->path,
			 strerror_r(s->job_errno, ebuf, sizeof(ebuf)));
		disk_drop_fill(s);
	}
	if (atomic_load(&s->base.refs) == 1) {
		/*
		 * Only this job still holds the spool (the session dropped the
		 * message; at shutdown, the writers pool may be gone): write
		 * nothing more.
		 */
		disk_drop_fill(s);
	} else if (s->status == SPOOL_OK
	    && (s->fill.len >= SPOOL_DISK_FLUSH || (s->committing && s->fill.len > 0)
		|| (s->limit > 0 && atomic_load(s->total) > s->limit && s->fill.len > 0)))
		disk_job_start(s);
	if (!s->job)
		buf_free(&s->out);
	if (s->writable_fn != NULL && !disk_busy(sp)) {
		loop_fn *fn = s->writable_fn;

		s->writable_fn = NULL;
		fn(s->writable_arg);
	}
	if (s->committing && !s->job)
		disk_commit_finish(s);
	spool_unref(&sp);	/* the job's reference */
}

static void
disk_job_start(struct spool_disk *s)
{
	struct buf t = s->out;

	s->out = s->fill;
	s->fill = t;
	buf_reset(&s->fill);
	s->job = 1;
	workpool_submit(s->dir->writers, s->ctx->loop, disk_write_work, disk_write_done,
			spool_ref(&s->base));
}

/* ---- the spool interface --------------------------------------------------- */

static enum spool_status
disk_write(struct spool *sp, const void *data, size_t len)
{
	struct spool_disk *s = (struct spool_disk *)sp;

	if (s->status != SPOOL_OK || len == 0)
		return s->status;
	if (s->committing || s->committed)
		msg_panic("spool_write after commit");
	buf_append(&s->fill, data, len);
	s->size += len;
	atomic_fetch_add(s->total, (long)len);
	if (!s->job && (s->fill.len >= SPOOL_DISK_FLUSH
			|| (s->limit > 0 && atomic_load(s->total) > s->limit)))
		disk_job_start(s);
	return SPOOL_OK;
}

static void
disk_writable_post(void *arg)
{
	struct spool_disk *s = arg;
	struct spool *sp = &s->base;

	if (s->writable_fn != NULL && !disk_busy(sp)) {
		loop_fn *fn = s->writable_fn;

		s->writable_fn = NULL;
		fn(s->writable_arg);
	}
	spool_unref(&sp);
}

static void
disk_on_writable(struct spool *sp, struct loop *l, loop_fn *fn, void *arg)
{
	struct spool_disk *s = (struct spool_disk *)sp;

	s->writable_fn = fn;
	s->writable_arg = arg;
	s->writable_loop = l;
	/* Not busy (or no longer): answer at once, never inside the call. */
	if (!disk_busy(sp))
		loop_post(l, disk_writable_post, spool_ref(sp));
}

static void
disk_on_writable_cancel(struct spool *sp)
{
	((struct spool_disk *)sp)->writable_fn = NULL;
}

static void
disk_commit_post(void *arg)
{
	struct spool_disk *s = arg;
	struct spool *sp = &s->base;

	if (s->committing && !s->job)
		disk_commit_finish(s);
	spool_unref(&sp);
}

static void
disk_commit(struct spool *sp, struct loop *l, void (*done)(void *arg, enum spool_status st),
	    void *arg)
{
	struct spool_disk *s = (struct spool_disk *)sp;

	if (s->committing || s->committed)
		msg_panic("spool_commit: committed twice");
	s->committing = 1;
	s->commit_done = done;
	s->commit_arg = arg;
	s->commit_loop = l;
	if (s->job)
		return;		/* its end starts the last one, or finishes */
	if (s->status == SPOOL_OK && s->fd < 0) {
		/*
		 * The whole message fits in the buffer (under 32 KiB): it
		 * stays there, and no file is made (most mail is this small;
		 * a file's create and release is most of a small message's
		 * disk cost).  It is still charged to *total until freed.
		 */
		s->in_memory = 1;
	} else if (s->status == SPOOL_OK && s->fill.len > 0) {
		disk_job_start(s);	/* the last bytes */
		return;
	}
	loop_post(l, disk_commit_post, spool_ref(sp));
}

static void
disk_commit_cancel(struct spool *sp)
{
	((struct spool_disk *)sp)->commit_done = NULL;
}

static enum spool_status
disk_status(const struct spool *sp)
{
	return ((const struct spool_disk *)sp)->status;
}

static size_t
disk_size(const struct spool *sp)
{
	return ((const struct spool_disk *)sp)->size;
}

static ssize_t
disk_pread(const struct spool *sp, void *buf, size_t len, size_t off)
{
	const struct spool_disk *s = (const struct spool_disk *)sp;
	ssize_t n;

	if (!s->committed || s->status != SPOOL_OK || (s->fd < 0 && !s->in_memory)) {
		errno = EINVAL;
		return -1;
	}
	if (off >= s->size)
		return 0;
	if (len > s->size - off)
		len = s->size - off;
	if (s->in_memory) {
		memcpy(buf, s->fill.data + off, len);
		return (ssize_t)len;
	}
	do
		n = pread(s->fd, buf, len, (off_t)off);
	while (n < 0 && errno == EINTR);
	if (n == 0) {
		errno = EIO;	/* shorter than what was written */
		return -1;
	}
	return n;
}

static int
disk_fd(const struct spool *sp)
{
	const struct spool_disk *s = (const struct spool_disk *)sp;

	return s->committed && s->status == SPOOL_OK && !s->in_memory ? s->fd : -1;
}

/*
 * The last reference: the file has no name, so closing it releases it;
 * up to SPOOL_DIR_KEEP of them are emptied and kept for the next messages
 * instead (a file that saw a write error is not).
 * A delivered message's last reference goes on the writer thread that
 * stored it (deliver.c); a message a session drops releases it on the loop.
 */
static void
disk_free(struct spool *sp)
{
	struct spool_disk *s = (struct spool_disk *)sp;

	disk_drop_fill(s);
	buf_free(&s->out);
	if (s->fd >= 0) {
		int kept = 0;

		/* Emptied (its blocks freed) and rewound, it serves the next message. */
		if (s->status == SPOOL_OK && ftruncate(s->fd, 0) == 0
		    && lseek(s->fd, 0, SEEK_SET) == 0) {
			pthread_mutex_lock(&s->dir->lock);
			if (s->dir->nfree < SPOOL_DIR_KEEP) {
				s->dir->free[s->dir->nfree++] = s->fd;
				kept = 1;
			}
			pthread_mutex_unlock(&s->dir->lock);
		}
		if (!kept)
			close(s->fd);
	}
	free(s);
}

static const struct spool_ops spool_disk_ops = {
	.write = disk_write,
	.busy = disk_busy,
	.on_writable = disk_on_writable,
	.on_writable_cancel = disk_on_writable_cancel,
	.commit = disk_commit,
	.commit_cancel = disk_commit_cancel,
	.status = disk_status,
	.size = disk_size,
	.pread = disk_pread,
	.free = disk_free,
	.fd = disk_fd,
};

struct spool *
spool_disk_new(void *ctx, atomic_long *total, long limit)
{
	struct spool_ctx *c = ctx;
	struct spool_disk *s = xcalloc(1, sizeof(*s));

	spool_init(&s->base, &spool_disk_ops);
	s->dir = c->dir;
	s->ctx = c;
	s->total = total;
	s->limit = limit;
	s->status = SPOOL_OK;
	s->fd = -1;
	return &s->base;
}

/* ---- start-up and cleanup --------------------------------------------------- */

int
spool_dir_prepare(const char *path, struct buf *err)
{
	struct stat st;
	char *p = xstrdup(path);

	/* mkdir -p, mode 0700 */
	for (char *c = p + 1; ; c++) {
		if (*c == '/' || *c == '\0') {
			char save = *c;

			*c = '\0';
			if (mkdir(p, 0700) < 0 && errno != EEXIST) {
				buf_printf(err, "mkdir %s: %s", p, strerror(errno));
				free(p);
				return -1;
			}
			*c = save;
			if (save == '\0')
				break;
		}
	}
	free(p);
	if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
		buf_printf(err, "%s: not a directory", path);
		return -1;
	}
	if (access(path, W_OK | X_OK) < 0) {
		buf_printf(err, "%s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

long
spool_dir_clean(const char *path, long older_than)
{
	DIR *d = opendir(path);
	struct dirent *e;
	time_t now = time(NULL);
	long removed = 0;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		struct stat st;

		if (e->d_name[0] == '.' || strcmp(e->d_name, SPOOL_JOURNAL_NAME) == 0)
			continue;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0
		    || !S_ISREG(st.st_mode))
			continue;
		if (older_than > 0 && now - st.st_mtime < older_than)
			continue;
		if (unlinkat(dirfd(d), e->d_name, 0) == 0) {
			msg_info("removed stale spool file %s/%s", path, e->d_name);
			removed++;
		}
	}
	closedir(d);
	return removed;
}
