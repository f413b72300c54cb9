#include "deliver/maildir.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "deliver/spool.h"
#include "log/log.h"
#include "util/buf.h"
#include "util/xalloc.h"

/* Where one copy stands, so that a failure can undo exactly what was done. */
enum copy_state {
	COPY_NONE,	/* nothing on disk */
	COPY_STAGED,	/* tmp_path exists */
	COPY_RENAMED,	/* new_path exists */
	COPY_UNSURE,	/* rename failed: either may exist */
};

struct maildir_copy {
	enum copy_state state;
	char *tmp_path;
	char *new_path;
	int	fd;		/* staged without fsync: open until maildir_flush() */
};

/* A small list of distinct directory paths (no trailing '/'). */
struct maildir_dirs {
	char **v;
	size_t n;
	size_t cap;
};

/* maildir_stage_how()'s nosync: staged for a journal, no write-out started. */
#define MAILDIR_LAZY 2

/* Process-wide sequence number: unique tmp/ names across threads. */
static unsigned long maildir_seq;

/* Retries of O_EXCL on an existing tmp/ name before giving up. */
#define MAILDIR_EXCL_TRIES 8

static void
maildir_set_err(struct buf *err, int errnum, const char *op, const char *path)
{
	char ebuf[256];

	buf_reset(err);
	buf_printf(err, "%s %s: %s", op, path, strerror_r(errnum, ebuf, sizeof(ebuf)));
	errno = errnum;
}

static void
maildir_dirs_add(struct maildir_dirs *d, const char *path, size_t len)
{
	for (size_t i = 0; i < d->n; i++)
		if (strlen(d->v[i]) == len && memcmp(d->v[i], path, len) == 0)
			return;
	if (d->n == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 8;
		d->v = xrealloc(d->v, d->cap * sizeof(*d->v));
	}
	d->v[d->n++] = xstrndup(path, len);
}

static void
maildir_dirs_free(struct maildir_dirs *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->v[i]);
	free(d->v);
	d->v = NULL;
	d->n = d->cap = 0;
}

/*
 * Directories whose own entry is known to be on disk: made or found by this
 * process, and their parent fsync'd since.  An existing directory is not
 * assumed durable (a failed or crashed delivery may have made it without
 * fsyncing its parent), so the first delivery that finds it fsyncs its
 * parents up to one that is known; later deliveries skip that work.
 */
static pthread_mutex_t maildir_durable_lock = PTHREAD_MUTEX_INITIALIZER;
static char **maildir_durable;		/* open addressing; NULL = empty slot */
static size_t maildir_durable_n, maildir_durable_cap;

static size_t
maildir_durable_slot(char **tab, size_t cap, const char *path)
{
	size_t h = 1469598103934665603ULL;

	for (const char *c = path; *c; c++)
		h = (h ^ (unsigned char)*c) * 1099511628211ULL;
	for (h &= cap - 1; tab[h] != NULL && strcmp(tab[h], path) != 0; h = (h + 1) & (cap - 1))
		;
	return h;
}

static int
maildir_is_durable(const char *path)
{
	int known;

	pthread_mutex_lock(&maildir_durable_lock);
	known = maildir_durable_cap > 0
		&& maildir_durable[maildir_durable_slot(maildir_durable, maildir_durable_cap,
							path)] != NULL;
	pthread_mutex_unlock(&maildir_durable_lock);
	return known;
}

void
maildir_known_durable(char *const *v, size_t n)
{
	pthread_mutex_lock(&maildir_durable_lock);
	for (size_t i = 0; i < n; i++) {
		size_t slot;

		if (2 * (maildir_durable_n + 1) > maildir_durable_cap) {
			size_t cap = maildir_durable_cap ? 2 * maildir_durable_cap : 256;
			char **tab = xcalloc(cap, sizeof(*tab));

			for (size_t k = 0; k < maildir_durable_cap; k++)
				if (maildir_durable[k] != NULL)
					tab[maildir_durable_slot(tab, cap, maildir_durable[k])] =
						maildir_durable[k];
			free(maildir_durable);
			maildir_durable = tab;
			maildir_durable_cap = cap;
		}
		slot = maildir_durable_slot(maildir_durable, maildir_durable_cap, v[i]);
		if (maildir_durable[slot] == NULL) {
			maildir_durable[slot] = xstrdup(v[i]);
			maildir_durable_n++;
		}
	}
	pthread_mutex_unlock(&maildir_durable_lock);
}

static void
maildir_mark_durable(const struct maildir_dirs *d)
{
	maildir_known_durable(d->v, d->n);
}

/*
 * After any failure: nothing is known any more (a Maildir may have been
 * removed under us, and maildir_known() would skip making it again).  The
 * next deliveries find each directory again and fsync its parents once.
 */
static void
maildir_forget_durable(void)
{
	pthread_mutex_lock(&maildir_durable_lock);
	for (size_t k = 0; k < maildir_durable_cap; k++) {
		free(maildir_durable[k]);
		maildir_durable[k] = NULL;
	}
	maildir_durable_n = 0;
	pthread_mutex_unlock(&maildir_durable_lock);
}

/*
 * p exists: unless it is known durable, its parent must be fsync'd, and so
 * on upwards until a known directory (or the root).
 */
static void
maildir_existing(const char *path, struct maildir_dirs *fsync_dirs, struct maildir_dirs *pending)
{
	char *p = xstrdup(path), *slash;

	while (strcmp(p, "/") != 0 && !maildir_is_durable(p)) {
		maildir_dirs_add(pending, p, strlen(p));
		slash = strrchr(p, '/');
		if (slash == NULL)
			break;
		*(slash == p ? slash + 1 : slash) = '\0';
		maildir_dirs_add(fsync_dirs, p, strlen(p));
	}
	free(p);
}

/* Absolute, ends in '/', no "." or ".." component. */
static int
maildir_path_ok(const char *p)
{
	size_t len = strlen(p);
	const char *c, *e;

	if (len < 2 || p[0] != '/' || p[len - 1] != '/')
		return 0;
	for (c = p + 1; *c; c = e + 1) {
		e = strchr(c, '/');
		if ((e - c == 1 && c[0] == '.') || (e - c == 2 && c[0] == '.' && c[1] == '.'))
			return 0;
	}
	return 1;
}

/* SECURITY_CHECKLIST row 60: no CR, LF or other control byte in a header we write. */
static int
maildir_header_ok(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

/* Header lines: each ends in LF, no control byte but those LFs and TAB. */
static int
maildir_trace_ok(const char *s)
{
	size_t len = strlen(s);

	if (len > 0 && (s[0] == '\n' || s[len - 1] != '\n'))
		return 0;
	for (; *s; s++) {
		if (*s == '\n' && s[1] == '\n')
			return 0;	/* an empty line would end the header */
		if (((unsigned char)*s < 0x20 && *s != '\n' && *s != '\t') || *s == 0x7f)
			return 0;
	}
	return 1;
}

/*
 * mkdir path[0..len) (no trailing '/') with its missing parents, mode 0700.
 * The parent of every directory made here goes into fsync_dirs: a new
 * directory entry is durable only once its parent is fsync'd.
 */
static int
maildir_mkdirs(const char *path, size_t len, struct maildir_dirs *fsync_dirs,
	       struct maildir_dirs *pending, struct buf *err)
{
	char *p = xstrndup(path, len);
	char *slash;
	int ret = 0;

	if (mkdir(p, 0700) == 0)
		goto made;
	if (errno == EEXIST)
		goto existing;
	if (errno != ENOENT)
		goto fail;
	/* A parent is missing: make it, then try again. */
	slash = strrchr(p, '/');
	if (slash == NULL || slash == p) {
		errno = ENOENT;
		goto fail;
	}
	if (maildir_mkdirs(p, (size_t)(slash - p), fsync_dirs, pending, err) < 0) {
		ret = -1;
		goto out;
	}
	if (mkdir(p, 0700) == 0)
		goto made;
	if (errno == EEXIST)	/* another thread made it meanwhile */
		goto existing;
fail:
	maildir_set_err(err, errno, "mkdir", p);
	ret = -1;
	goto out;
made:
	slash = strrchr(p, '/');
	maildir_dirs_add(fsync_dirs, p, slash == p ? 1 : (size_t)(slash - p));
	maildir_dirs_add(pending, p, strlen(p));
	goto out;
existing:
	maildir_existing(p, fsync_dirs, pending);
out:
	free(p);
	return ret;
}

/*
 * The Maildir and its tmp/ new/ cur/ are known durable (maildir_mark_durable()):
 * step a has nothing to do, and is skipped (four mkdir(2) calls that fail with
 * EEXIST, each under its parent's lock).  A Maildir removed since is made again
 * when its tmp/ file cannot be created (maildir_stage_how()).
 */
static int
maildir_known(const char *maildir)
{
	static const char *const sub[] = { "", "tmp", "new", "cur" };
	struct buf p = BUF_INIT;
	size_t len = strlen(maildir);
	int known = 1;

	for (size_t i = 0; i < sizeof(sub) / sizeof(sub[0]) && known; i++) {
		buf_reset(&p);
		if (*sub[i] == '\0')
			buf_append(&p, maildir, len - 1);
		else {
			buf_puts(&p, maildir);
			buf_puts(&p, sub[i]);
		}
		known = maildir_is_durable(buf_str(&p));
	}
	buf_free(&p);
	return known;
}

/* Step a for one Maildir: the Maildir itself, then tmp/ new/ cur/. */
static int
maildir_make(const char *maildir, struct maildir_dirs *fsync_dirs, struct maildir_dirs *pending,
	     struct buf *err)
{
	static const char *const sub[] = { "tmp", "new", "cur" };
	struct buf p = BUF_INIT;
	size_t len = strlen(maildir);
	int ret = 0;

	if (maildir_mkdirs(maildir, len - 1, fsync_dirs, pending, err) < 0)
		return -1;
	for (size_t i = 0; i < sizeof(sub) / sizeof(sub[0]); i++) {
		buf_reset(&p);
		buf_puts(&p, maildir);
		buf_puts(&p, sub[i]);
		if (maildir_mkdirs(p.data, p.len, fsync_dirs, pending, err) < 0) {
			ret = -1;
			break;
		}
	}
	buf_free(&p);
	return ret;
}

/* write(2) all of it, through short writes and EINTR. */
static int
maildir_write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, data, len);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (w == 0) {
			errno = EIO;
			return -1;
		}
		data += w;
		len -= (size_t)w;
	}
	return 0;
}

/* The message itself: from memory, or copied out of the spool in pieces. */
static int
maildir_write_content(int fd, const struct maildir_msg *m)
{
	char piece[64 * 1024];
	size_t off = 0;
	ssize_t n;

	if (m->body == NULL)
		return maildir_write_all(fd, m->content, m->content_len);
	if (spool_fd(m->body) >= 0) {
		/* A spool file: the kernel copies it, no pass through our memory. */
		off_t in = 0;
		size_t size = spool_size(m->body);

		while ((size_t)in < size) {
			ssize_t c = copy_file_range(spool_fd(m->body), &in, fd, NULL,
						    size - (size_t)in, 0);

			if (c < 0 && errno == EINTR)
				continue;
			if (c < 0 && in == 0 && (errno == EXDEV || errno == ENOSYS
						 || errno == EOPNOTSUPP || errno == EINVAL))
				break;	/* not here: read and write */
			if (c < 0)
				return -1;
			if (c == 0) {
				errno = EIO;	/* shorter than what was written */
				return -1;
			}
		}
		if ((size_t)in >= size)
			return 0;
	}
	while ((n = spool_pread(m->body, piece, sizeof(piece), off)) > 0) {
		if (maildir_write_all(fd, piece, (size_t)n) < 0)
			return -1;
		off += (size_t)n;
	}
	return n < 0 ? -1 : 0;
}

/* Step b for one copy: tmp/<unique>, written, fsync'd, closed. */
static int
maildir_stage_one(const struct maildir_msg *m, const struct maildir_rcpt *r, const char *host,
	      struct maildir_copy *c, int nosync, struct buf *err)
{
	struct buf hdr = BUF_INIT;
	struct timespec ts;
	struct stat st;
	int fd = -1;
	int tries;

	for (tries = 0;; tries++) {
		unsigned long seq = __atomic_fetch_add(&maildir_seq, 1, __ATOMIC_RELAXED);

		clock_gettime(CLOCK_REALTIME, &ts);
		free(c->tmp_path);
		c->tmp_path = xasprintf("%stmp/%lld.M%ldP%ldQ%lu.%s", r->maildir,
					(long long)ts.tv_sec, ts.tv_nsec / 1000L,
					(long)getpid(), seq, host);
		fd = open(c->tmp_path, O_CREAT | O_EXCL | (nosync == MAILDIR_LAZY ? O_RDWR : O_WRONLY) | O_CLOEXEC, 0600);
		if (fd >= 0)
			break;
		if (errno != EEXIST || tries + 1 >= MAILDIR_EXCL_TRIES) {
			maildir_set_err(err, errno, "open file", c->tmp_path);
			return -1;
		}
	}
	c->state = COPY_STAGED;

	/* Postfix virtual(8) order: Return-Path:, X-Original-To:, Delivered-To:, the message. */
	buf_printf(&hdr, "Return-Path: <%s>\n", m->return_path);
	if (r->orig_to != NULL && *r->orig_to)
		buf_printf(&hdr, "X-Original-To: %s\n", r->orig_to);
	buf_printf(&hdr, "Delivered-To: %s\n", r->delivered_to);
	if (r->trace != NULL)
		buf_puts(&hdr, r->trace);
	if (maildir_write_all(fd, hdr.data, hdr.len) < 0
	    || (m->received_len > 0 && maildir_write_all(fd, m->received, m->received_len) < 0)
	    || maildir_write_content(fd, m) < 0) {
		maildir_set_err(err, errno, "write file", c->tmp_path);
		goto fail;
	}
	if (!nosync && fsync(fd) < 0) {
		maildir_set_err(err, errno, "fsync file", c->tmp_path);
		goto fail;
	}
	if (fstat(fd, &st) < 0) {
		maildir_set_err(err, errno, "fstat file", c->tmp_path);
		goto fail;
	}
	if (nosync) {
		/*
		 * Start the write-out now (and with it the block allocation),
		 * so that the group's fsyncs find the data on its way and the
		 * first one's journal commit carries every file's metadata.
		 * Not for a copy the journal will hold (MAILDIR_LAZY): its
		 * write-out waits for the checkpoint's syncfs, many at once.
		 */
		if (nosync != MAILDIR_LAZY)
			(void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
		c->fd = fd;
		fd = -1;
	} else if (close(fd) < 0 && errno != EINTR) {
		/* Linux closes the descriptor even when close() says EINTR. */
		fd = -1;
		maildir_set_err(err, errno, "close file", c->tmp_path);
		goto fail;
	}
	fd = -1;
	buf_free(&hdr);
	/*
	 * Postfix's new/ name.  Device and inode of a file that still exists
	 * are unique on the machine, so two deliveries in one microsecond
	 * (two threads, or two recipients in one Maildir) never collide.
	 */
	c->new_path = xasprintf("%snew/%lld.V%lxI%lxM%ld.%s", r->maildir, (long long)ts.tv_sec,
				(unsigned long)st.st_dev, (unsigned long)st.st_ino,
				ts.tv_nsec / 1000L, host);
	return 0;

fail:
	if (fd >= 0) {
		int saved = errno;

		close(fd);
		errno = saved;
	}
	buf_free(&hdr);
	return -1;
}

/* fsync a directory (path without trailing '/', or "/"). */
static int
maildir_fsync_dir(const char *dir, struct buf *err)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0) {
		maildir_set_err(err, errno, "open directory", dir);
		return -1;
	}
	/*
	 * EROFS/EINVAL: a file system that cannot or need not sync directories
	 * (a read-only mount above the mailboxes): its entries are as durable
	 * as they get.
	 */
	if (fsync(fd) < 0 && errno != EROFS && errno != EINVAL) {
		maildir_set_err(err, errno, "fsync directory", dir);
		close(fd);
		return -1;
	}
	if (close(fd) < 0 && errno != EINTR) {
		maildir_set_err(err, errno, "close directory", dir);
		return -1;
	}
	return 0;
}

/*
 * Remove one file of a rolled-back copy.  ours: we know the file exists
 * (renamed into new/ by us), so even ENOENT is worth a warning: a mail
 * reader has already moved it to cur/ and we cannot take it back.
 */
static void
maildir_unlink(const char *path, int ours)
{
	char ebuf[256];

	if (unlink(path) == 0 || (!ours && (errno == ENOENT || errno == ENOTDIR)))
		return;
	msg_warn("maildir rollback: unlink %s: %s%s", path,
		 strerror_r(errno, ebuf, sizeof(ebuf)),
		 ours ? " (the sender's retry may deliver a duplicate)" : "");
}

/* Undo every copy; keeps errno. */
static void
maildir_undo(struct maildir_copy *copies, size_t n, struct maildir_dirs *new_dirs)
{
	int saved = errno;
	int renamed = 0;

	for (size_t i = 0; i < n; i++) {
		struct maildir_copy *c = &copies[i];

		switch (c->state) {
		case COPY_NONE:
			break;
		case COPY_STAGED:
			maildir_unlink(c->tmp_path, 0);
			break;
		case COPY_RENAMED:
			renamed = 1;
			maildir_unlink(c->new_path, 1);
			break;
		case COPY_UNSURE:
			/* Some filesystems (NFS) can fail a rename that happened. */
			renamed = 1;
			maildir_unlink(c->tmp_path, 0);
			maildir_unlink(c->new_path, 0);
			break;
		}
		c->state = COPY_NONE;
	}
	/* Best effort: make the removals durable, so a crash does not bring a copy back. */
	if (renamed) {
		for (size_t i = 0; i < new_dirs->n; i++) {
			int fd = open(new_dirs->v[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);

			if (fd >= 0) {
				(void)fsync(fd);
				close(fd);
			}
		}
	}
	errno = saved;
}

struct maildir_batch {
	struct maildir_copy *copies;
	size_t	n;
	struct maildir_dirs fsync_dirs;	/* parents of new directories */
	struct maildir_dirs pending;	/* durable once fsync_dirs are */
	struct maildir_dirs new_dirs;	/* distinct new/ directories */
};

void
maildir_batch_free(struct maildir_batch **bp)
{
	struct maildir_batch *b = *bp;
	int saved = errno;
	size_t i;

	if (b == NULL)
		return;
	for (i = 0; i < b->n; i++) {
		if (b->copies[i].fd >= 0)
			close(b->copies[i].fd);
		free(b->copies[i].tmp_path);
		free(b->copies[i].new_path);
	}
	free(b->copies);
	maildir_dirs_free(&b->fsync_dirs);
	maildir_dirs_free(&b->pending);
	maildir_dirs_free(&b->new_dirs);
	free(b);
	*bp = NULL;
	errno = saved;
}

/* Refuse bad arguments before touching the disk. */
static int
maildir_check_args(const struct maildir_msg *m, const struct maildir_rcpt *rcpts, size_t n,
		   struct buf *err)
{
	size_t i;

	if (n == 0) {
		maildir_set_err(err, EINVAL, "deliver", "(no recipients)");
		return -1;
	}
	if (!maildir_header_ok(m->return_path)) {
		maildir_set_err(err, EINVAL, "deliver",
				"(control character in Return-Path address)");
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (!maildir_path_ok(rcpts[i].maildir)) {
			buf_reset(err);
			buf_printf(err, "deliver %s: not an absolute Maildir path ending in '/'",
				   rcpts[i].maildir);
			errno = EINVAL;
			return -1;
		}
		if (!maildir_header_ok(rcpts[i].delivered_to)
		    || (rcpts[i].orig_to != NULL && !maildir_header_ok(rcpts[i].orig_to))) {
			buf_reset(err);
			buf_printf(err, "deliver %s: control character in Delivered-To or X-Original-To address",
				   rcpts[i].maildir);
			errno = EINVAL;
			return -1;
		}
		if (rcpts[i].trace != NULL && !maildir_trace_ok(rcpts[i].trace)) {
			buf_reset(err);
			buf_printf(err, "deliver %s: malformed trace header lines", rcpts[i].maildir);
			errno = EINVAL;
			return -1;
		}
	}
	return 0;
}

static int
maildir_stage_how(const struct maildir_msg *m, const struct maildir_rcpt *rcpts, size_t n,
		  int nosync, struct maildir_batch **batch_r, struct buf *err)
{
	struct maildir_batch *b;
	struct buf host = BUF_INIT;
	int ret = -1;
	size_t i, j;

	*batch_r = NULL;
	if (maildir_check_args(m, rcpts, n, err) < 0)
		return -1;
	/* Maildir convention: '/' and ':' in the host name are written in octal. */
	if (m->hostname == NULL || *m->hostname == '\0')
		buf_puts(&host, "localhost");
	for (const char *h = m->hostname ? m->hostname : ""; *h; h++) {
		if (*h == '/')
			buf_puts(&host, "\\057");
		else if (*h == ':')
			buf_puts(&host, "\\072");
		else
			buf_putc(&host, *h);
	}
	b = xcalloc(1, sizeof(*b));
	b->copies = xcalloc(n, sizeof(*b->copies));
	for (i = 0; i < n; i++)
		b->copies[i].fd = -1;
	b->n = n;
	*batch_r = b;

	/* a. Directories, once per distinct Maildir. */
	for (i = 0; i < n; i++) {
		struct buf nd = BUF_INIT;

		for (j = 0; j < i; j++)
			if (strcmp(rcpts[i].maildir, rcpts[j].maildir) == 0)
				break;
		if (j < i)
			continue;
		if (!maildir_known(rcpts[i].maildir)
		    && maildir_make(rcpts[i].maildir, &b->fsync_dirs, &b->pending, err) < 0)
			goto out;
		buf_puts(&nd, rcpts[i].maildir);
		buf_puts(&nd, "new");
		maildir_dirs_add(&b->new_dirs, nd.data, nd.len);
		buf_free(&nd);
	}
	/* b. Stage every copy in tmp/. */
	for (i = 0; i < n; i++) {
		if (maildir_stage_one(m, &rcpts[i], host.data, &b->copies[i], nosync, err) == 0)
			continue;
		/* ENOENT: a Maildir known to exist was removed: make it again, once */
		if (errno != ENOENT || b->copies[i].state != COPY_NONE
		    || maildir_make(rcpts[i].maildir, &b->fsync_dirs, &b->pending, err) < 0
		    || maildir_stage_one(m, &rcpts[i], host.data, &b->copies[i], nosync, err) < 0)
			goto out;
	}
	ret = 0;
out:
	{
		int saved = errno;

		buf_free(&host);
		errno = saved;
	}
	return ret;
}

int
maildir_stage(const struct maildir_msg *m, const struct maildir_rcpt *rcpts, size_t n,
	      struct maildir_batch **batch_r, struct buf *err)
{
	return maildir_stage_how(m, rcpts, n, 0, batch_r, err);
}

int
maildir_stage_nosync(const struct maildir_msg *m, const struct maildir_rcpt *rcpts, size_t n,
		     struct maildir_batch **batch_r, struct buf *err)
{
	return maildir_stage_how(m, rcpts, n, 1, batch_r, err);
}

/* Close each copy staged without fsync, fsyncing it first when sync is set. */
static int
maildir_close_copies(struct maildir_batch *b, int sync, struct buf *err)
{
	for (size_t i = 0; i < b->n; i++) {
		struct maildir_copy *c = &b->copies[i];
		int fd = c->fd;

		if (fd < 0)
			continue;
		c->fd = -1;
		if (sync && fsync(fd) < 0) {
			maildir_set_err(err, errno, "fsync file", c->tmp_path);
			close(fd);
			return -1;
		}
		if (close(fd) < 0 && errno != EINTR) {
			maildir_set_err(err, errno, "close file", c->tmp_path);
			return -1;
		}
	}
	return 0;
}

int
maildir_stage_lazy(const struct maildir_msg *m, const struct maildir_rcpt *rcpts, size_t n,
		   struct maildir_batch **batch_r, struct buf *err)
{
	return maildir_stage_how(m, rcpts, n, MAILDIR_LAZY, batch_r, err);
}

size_t
maildir_batch_ncopies(const struct maildir_batch *b)
{
	return b->n;
}

int
maildir_batch_copy(const struct maildir_batch *b, size_t i, const char **new_path_r)
{
	*new_path_r = b->copies[i].new_path;
	return b->copies[i].fd;
}

int
maildir_close_staged(struct maildir_batch *b, struct buf *err)
{
	return maildir_close_copies(b, 0, err);
}

size_t
maildir_batch_npending(const struct maildir_batch *b)
{
	return b->pending.n;
}

const char *
maildir_batch_pending(const struct maildir_batch *b, size_t i)
{
	return b->pending.v[i];
}

int
maildir_flush(struct maildir_batch *b, struct buf *err)
{
	return maildir_close_copies(b, 1, err);
}

int
maildir_publish(struct maildir_batch *b, struct buf *err)
{
	size_t i;

	/* c. Only now that every copy is safe in tmp/, publish them in new/. */
	for (i = 0; i < b->n; i++) {
		struct maildir_copy *c = &b->copies[i];

		if (rename(c->tmp_path, c->new_path) < 0) {
			int saved = errno;
			char *what = xasprintf("%s to %s", c->tmp_path, c->new_path);

			c->state = COPY_UNSURE;
			maildir_set_err(err, saved, "rename file", what);
			free(what);
			errno = saved;
			return -1;
		}
		c->state = COPY_RENAMED;
	}
	return 0;
}

int
maildir_sync(struct maildir_batch *b, struct buf *err)
{
	size_t i;

	/* d. Make the new names durable: each new/, then each new directory's parent. */
	for (i = 0; i < b->new_dirs.n; i++)
		if (maildir_fsync_dir(b->new_dirs.v[i], err) < 0)
			return -1;
	for (i = 0; i < b->fsync_dirs.n; i++)
		if (maildir_fsync_dir(b->fsync_dirs.v[i], err) < 0)
			return -1;
	maildir_mark_durable(&b->pending);
	return 0;
}

int
maildir_sync_group(struct maildir_batch *const *bs, size_t n, struct buf *err)
{
	struct maildir_dirs dirs = { 0 };
	int ret = 0;
	size_t i, k;

	/* d. for the whole group: each distinct directory once, new/ first. */
	for (i = 0; i < n; i++)
		for (k = 0; k < bs[i]->new_dirs.n; k++)
			maildir_dirs_add(&dirs, bs[i]->new_dirs.v[k], strlen(bs[i]->new_dirs.v[k]));
	for (i = 0; i < n; i++)
		for (k = 0; k < bs[i]->fsync_dirs.n; k++)
			maildir_dirs_add(&dirs, bs[i]->fsync_dirs.v[k],
					 strlen(bs[i]->fsync_dirs.v[k]));
	for (i = 0; i < dirs.n && ret == 0; i++)
		if (maildir_fsync_dir(dirs.v[i], err) < 0)
			ret = -1;
	maildir_dirs_free(&dirs);
	if (ret == 0)
		for (i = 0; i < n; i++)
			maildir_mark_durable(&bs[i]->pending);
	return ret;
}

void
maildir_rollback(struct maildir_batch *b)
{
	if (b != NULL) {
		maildir_undo(b->copies, b->n, &b->new_dirs);
		maildir_forget_durable();
	}
}

int
maildir_deliver(const struct maildir_msg *m, const struct maildir_rcpt *rcpts, size_t n,
		struct buf *err)
{
	struct maildir_batch *b = NULL;
	int ret = -1;

	if (maildir_stage(m, rcpts, n, &b, err) == 0 && maildir_publish(b, err) == 0
	    && maildir_sync(b, err) == 0)
		ret = 0;
	if (ret < 0)
		maildir_rollback(b);
	maildir_batch_free(&b);
	return ret;
}

/* Recursion of maildir_clean_tmp(): dir is open; tmp says it is a tmp/. */
static long
maildir_clean_dir(int dfd, const char *path, int tmp, int depth, time_t now, long max_age)
{
	DIR *d = fdopendir(dfd);
	struct dirent *e;
	long removed = 0;

	if (d == NULL) {
		close(dfd);
		return 0;
	}
	while ((e = readdir(d)) != NULL) {
		struct stat st;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (tmp && S_ISREG(st.st_mode)) {
			if (now - st.st_mtime > max_age
			    && unlinkat(dirfd(d), e->d_name, 0) == 0) {
				msg_info("removed stale Maildir file %s/%s", path, e->d_name);
				removed++;
			}
		} else if (!tmp && S_ISDIR(st.st_mode) && depth > 0) {
			int sub = openat(dirfd(d), e->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			char *subpath;

			if (sub < 0)
				continue;
			subpath = xasprintf("%s/%s", path, e->d_name);
			removed += maildir_clean_dir(sub, subpath, strcmp(e->d_name, "tmp") == 0,
						     depth - 1, now, max_age);
			free(subpath);
		}
	}
	closedir(d);
	return removed;
}

long
maildir_clean_tmp(const char *base, long max_age)
{
	int fd;

	if (base == NULL || *base == '\0')
		return 0;
	fd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	return maildir_clean_dir(fd, base, 0, 6, time(NULL), max_age);
}
