/*
 * mbox: Postfix-format mbox appends with locking and rollback.  See mbox.h.
 */
#include "deliver/mbox.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "deliver/spool.h"
#include "log/log.h"
#include "util/buf.h"
#include "util/xalloc.h"

/* Postfix's defaults: deliver_lock_attempts, deliver_lock_delay, stale_lock_time. */
#define MBOX_LOCK_TRIES		20
#define MBOX_LOCK_DELAY_US	1000000
#define MBOX_STALE_LOCK		500

struct mbox_copy {
	int	fd;
	char   *path;
	int	dotlocked;
	off_t	old_size;
};

int
mbox_lock_parse(const char *value, const char **bad_r, size_t *badlen_r)
{
	const char *p = value;
	int mask = 0;

	for (;;) {
		size_t n;

		p += strspn(p, " \t\r\n,");
		if (*p == '\0')
			return mask;
		n = strcspn(p, " \t\r\n,");
		if (n == 5 && strncasecmp(p, "fcntl", 5) == 0)
			mask |= MBOX_LOCK_FCNTL;
		else if (n == 5 && strncasecmp(p, "flock", 5) == 0)
			mask |= MBOX_LOCK_FLOCK;
		else if (n == 7 && strncasecmp(p, "dotlock", 7) == 0)
			mask |= MBOX_LOCK_DOTLOCK;
		else {
			*bad_r = p;
			*badlen_r = n;
			return -1;
		}
		p += n;
	}
}

/* ---- the bytes ---- */

/* Where formatted bytes go: a buffer, or a file at an offset (flushed in pieces). */
struct mbox_out {
	struct buf *buf;	/* pending bytes (the whole copy when fd < 0) */
	int	fd;
	off_t	off;		/* next file offset */
	off_t	limit;		/* 0: none; else the file may not grow past it */
	int	bol;		/* at the start of a line */
	int	err;		/* errno of the first failure */
	const char *what;	/* the operation that failed */
};

static void
mbox_flush(struct mbox_out *o)
{
	size_t done = 0;

	if (o->fd < 0 || o->err)
		return;
	if (o->limit > 0 && o->off + (off_t)o->buf->len > o->limit) {
		o->err = EFBIG;		/* Postfix: the file size rlimit */
		o->what = "write";
		return;
	}
	/* write(2) at the end we hold locked (tests/shim/faultfs.c fails write) */
	if (lseek(o->fd, o->off, SEEK_SET) < 0) {
		o->err = errno;
		o->what = "seek";
		return;
	}
	while (done < o->buf->len) {
		ssize_t w = write(o->fd, o->buf->data + done, o->buf->len - done);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			o->err = errno;
			o->what = "write";
			return;
		}
		done += (size_t)w;
		o->off += w;
	}
	buf_reset(o->buf);
}

static void
mbox_put_raw(struct mbox_out *o, const char *s, size_t n)
{
	buf_append(o->buf, s, n);
	if (n > 0)
		o->bol = s[n - 1] == '\n';
	if (o->fd >= 0 && o->buf->len >= 65536)
		mbox_flush(o);
}

/* The start of a line kept back (fewer than 5 bytes, no LF yet). */
struct mbox_hold {
	char	b[5];
	size_t	n;
};

/*
 * Message text: "From " at the start of a line gets '>' (MAIL_COPY_QUOTE).
 * A line start split across two reads must be seen whole, so up to 5 bytes
 * of it are held back in h until its end or the fifth byte.
 */
static void
mbox_put_text(struct mbox_out *o, struct mbox_hold *h, const char *s, size_t n)
{
	while (n > 0) {
		const char *line;
		size_t len;

		if (h->n > 0) {
			while (n > 0 && h->n < 5 && h->b[h->n - 1] != '\n') {
				h->b[h->n++] = *s++;
				n--;
			}
			if (h->n < 5 && h->b[h->n - 1] != '\n')
				return;		/* still short: wait for more */
			line = h->b;
			len = h->n;
			h->n = 0;
		} else {
			const char *nl = memchr(s, '\n', n);

			len = nl ? (size_t)(nl - s) + 1 : n;
			if (o->bol && nl == NULL && len < 5) {
				memcpy(h->b, s, len);
				h->n = len;
				return;
			}
			line = s;
			s += len;
			n -= len;
		}
		if (o->bol && len >= 5 && memcmp(line, "From ", 5) == 0)
			buf_putc(o->buf, '>');
		mbox_put_raw(o, line, len);
	}
}

/* What is still held at the end of the text goes out as it is. */
static void
mbox_put_held(struct mbox_out *o, struct mbox_hold *h)
{
	if (h->n > 0)
		mbox_put_raw(o, h->b, h->n);
	h->n = 0;
}

static int
mbox_text_ok(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

static int
mbox_trace_ok(const char *s)
{
	int bol = 1;

	for (; *s; s++) {
		if (*s == '\n') {
			if (bol)
				return 0;	/* an empty line would end the header */
			bol = 1;
			continue;
		}
		if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
			return 0;
		bol = 0;
	}
	return bol;
}

/* Everything of one copy into o; 0, or -1 with o->err (EINVAL: refused). */
static int
mbox_emit(const struct mbox_msg *m, const struct mbox_rcpt *r, struct mbox_out *o)
{
	struct mbox_hold h = { .n = 0 };
	char tbuf[64];
	struct tm tm;
	time_t now = m->now ? m->now : time(NULL);

	if (!mbox_text_ok(m->sender) || !mbox_text_ok(r->delivered_to)
	    || (r->orig_to && !mbox_text_ok(r->orig_to)) || (r->trace && !mbox_trace_ok(r->trace))) {
		o->err = EINVAL;
		o->what = "refuse header text for";
		return -1;
	}
	localtime_r(&now, &tm);
	asctime_r(&tm, tbuf);
	/* mail_copy(): "From %s  %.24s" */
	buf_printf(o->buf, "From %s  %.24s\n", *m->sender ? m->sender : "MAILER-DAEMON", tbuf);
	buf_printf(o->buf, "Return-Path: <%s>\n", m->sender);
	if (r->orig_to != NULL && *r->orig_to)
		buf_printf(o->buf, "X-Original-To: %s\n", r->orig_to);
	buf_printf(o->buf, "Delivered-To: %s\n", r->delivered_to);
	o->bol = 1;
	if (r->trace)
		mbox_put_text(o, &h, r->trace, strlen(r->trace));
	if (m->received)
		mbox_put_text(o, &h, m->received, m->received_len);
	if (m->body != NULL) {
		char chunk[65536];
		size_t off = 0;
		ssize_t got;

		while ((got = spool_pread(m->body, chunk, sizeof(chunk), off)) > 0) {
			mbox_put_text(o, &h, chunk, (size_t)got);
			off += (size_t)got;
			if (o->err)
				return -1;
		}
		if (got < 0) {
			o->err = errno;
			o->what = "read message body for";
			return -1;
		}
	} else if (m->content_len > 0) {
		mbox_put_text(o, &h, m->content, m->content_len);
	}
	mbox_put_held(o, &h);
	if (!o->bol)
		mbox_put_raw(o, "\n", 1);
	mbox_put_raw(o, "\n", 1);	/* MAIL_COPY_BLANK */
	mbox_flush(o);
	return o->err ? -1 : 0;
}

int
mbox_format(const struct mbox_msg *m, const struct mbox_rcpt *r, struct buf *out)
{
	struct mbox_out o = { .buf = out, .fd = -1 };

	if (mbox_emit(m, r, &o) < 0) {
		errno = o.err;
		return -1;
	}
	return 0;
}

/* ---- locking ---- */

static void
mbox_set_err(struct buf *err, int errnum, const char *op, const char *path)
{
	char ebuf[256];

	buf_reset(err);
	buf_printf(err, "%s %s: %s", op, path, strerror_r(errnum, ebuf, sizeof(ebuf)));
	errno = errnum;
}

/* Postfix's dot_lockfile(): 0, or -1 with errno. */
static int
mbox_dotlock(const char *path)
{
	char *lock = xasprintf("%s.lock", path);
	int count, fd, rc = -1;
	struct stat st;

	for (count = 1;; count++) {
		if ((fd = open(lock, O_WRONLY | O_EXCL | O_CREAT | O_CLOEXEC, 0)) >= 0) {
			close(fd);
			rc = 0;
			break;
		}
		if (count >= MBOX_LOCK_TRIES || errno != EEXIST)
			break;
		if (stat(lock, &st) == 0 && time(NULL) > st.st_ctime + MBOX_STALE_LOCK
		    && unlink(lock) < 0 && errno != ENOENT)
			break;
		usleep(MBOX_LOCK_DELAY_US);
	}
	free(lock);
	return rc;
}

static void
mbox_dotunlock(const char *path)
{
	char *lock = xasprintf("%s.lock", path);
	int saved = errno;

	(void)unlink(lock);
	free(lock);
	errno = saved;
}

static int
mbox_kernel_lock(int fd, int mask)
{
	for (int count = 1;; count++) {
		int rc = 0;

		if (mask & MBOX_LOCK_FCNTL) {
			/*
			 * An open file description lock: it conflicts with other
			 * processes' fcntl locks as a POSIX one does, and, unlike
			 * one, also with another writer thread of this process.
			 */
			struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

			rc = fcntl(fd, F_OFD_SETLK, &fl);
		}
		if (rc == 0 && (mask & MBOX_LOCK_FLOCK))
			rc = flock(fd, LOCK_EX | LOCK_NB);
		if (rc == 0)
			return 0;
		if (count >= MBOX_LOCK_TRIES || (errno != EAGAIN && errno != EACCES
						 && errno != EWOULDBLOCK))
			return -1;
		usleep(MBOX_LOCK_DELAY_US);
	}
}

static void
mbox_close(struct mbox_copy **cp)
{
	struct mbox_copy *c = *cp;

	if (c == NULL)
		return;
	close(c->fd);		/* releases the fcntl and flock locks */
	if (c->dotlocked)
		mbox_dotunlock(c->path);
	free(c->path);
	free(c);
	*cp = NULL;
}

struct mbox_copy *
mbox_append(const struct mbox_msg *m, const struct mbox_rcpt *r, int lock_mask,
	    off_t size_limit, struct buf *err)
{
	struct mbox_copy *c;
	struct stat st;
	struct buf pending = BUF_INIT;
	struct mbox_out o;
	int e;

	if (r->path[0] != '/') {
		mbox_set_err(err, EINVAL, "refuse relative mailbox path", r->path);
		return NULL;
	}
	c = xcalloc(1, sizeof(*c));
	c->fd = -1;
	c->path = xstrdup(r->path);
	if ((lock_mask & MBOX_LOCK_DOTLOCK) && (stat(r->path, &st) < 0 || S_ISREG(st.st_mode))) {
		if (mbox_dotlock(r->path) < 0) {
			e = errno;
			char *lock = xasprintf("%s.lock", r->path);

			mbox_set_err(err, e, "create lock file", lock);
			free(lock);
			goto fail;
		}
		c->dotlocked = 1;
	}
	/* O_NOFOLLOW: a symlink planted in a writable spool directory is not followed */
	c->fd = open(r->path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
	if (c->fd < 0) {
		mbox_set_err(err, errno, "open mailbox", r->path);
		goto fail;
	}
	if (fstat(c->fd, &st) < 0) {
		mbox_set_err(err, errno, "fstat mailbox", r->path);
		goto fail;
	}
	if (!S_ISREG(st.st_mode) || st.st_nlink != 1) {
		mbox_set_err(err, EPERM, "refuse mailbox that is not a regular file with one link",
			     r->path);
		goto fail;
	}
	if (st.st_uid != geteuid()) {
		/* strict_mailbox_ownership = yes: "destination is not owned by recipient" */
		mbox_set_err(err, EPERM, "refuse mailbox not owned by the recipient", r->path);
		goto fail;
	}
	if (lock_mask & (MBOX_LOCK_FCNTL | MBOX_LOCK_FLOCK)) {
		if (mbox_kernel_lock(c->fd, lock_mask) < 0) {
			mbox_set_err(err, errno, "lock mailbox", r->path);
			goto fail;
		}
	}
	/* the size under the lock: another writer may have appended before */
	if (fstat(c->fd, &st) < 0) {
		mbox_set_err(err, errno, "fstat mailbox", r->path);
		goto fail;
	}
	c->old_size = st.st_size;
	o = (struct mbox_out){ .buf = &pending, .fd = c->fd, .off = st.st_size,
			       .limit = size_limit };
	if (mbox_emit(m, r, &o) < 0) {
		mbox_set_err(err, o.err, o.what, r->path);
		buf_free(&pending);
		mbox_rollback(&c);
		errno = o.err;
		return NULL;
	}
	buf_free(&pending);
	if (fsync(c->fd) < 0) {
		e = errno;
		mbox_set_err(err, e, "fsync mailbox", r->path);
		mbox_rollback(&c);
		errno = e;
		return NULL;
	}
	return c;
fail:
	e = errno;
	mbox_close(&c);
	errno = e;
	return NULL;
}

int
mbox_append_more(struct mbox_copy *c, const struct mbox_msg *m, const struct mbox_rcpt *r,
		 off_t size_limit, struct buf *err)
{
	struct buf pending = BUF_INIT;
	struct mbox_out o;
	struct stat st;

	if (fstat(c->fd, &st) < 0) {
		mbox_set_err(err, errno, "fstat mailbox", c->path);
		return -1;
	}
	o = (struct mbox_out){ .buf = &pending, .fd = c->fd, .off = st.st_size,
			       .limit = size_limit };
	if (mbox_emit(m, r, &o) < 0) {
		mbox_set_err(err, o.err, o.what, c->path);
		buf_free(&pending);
		errno = o.err;
		return -1;
	}
	buf_free(&pending);
	if (fsync(c->fd) < 0) {
		int e = errno;

		mbox_set_err(err, e, "fsync mailbox", c->path);
		errno = e;
		return -1;
	}
	return 0;
}

void
mbox_commit(struct mbox_copy **cp)
{
	mbox_close(cp);
}

void
mbox_rollback(struct mbox_copy **cp)
{
	struct mbox_copy *c = *cp;

	if (c == NULL)
		return;
	/* while still locked: nobody else has appended behind us */
	if (ftruncate(c->fd, c->old_size) < 0 || fsync(c->fd) < 0)
		msg_warn("cannot truncate mailbox %s back to %lld bytes: %s", c->path,
			 (long long)c->old_size, strerror(errno));
	mbox_close(cp);
}
