/*
 * lhelper: the privileged local delivery helper.  See lhelper.h.
 *
 * Wire format (one host, one build: native byte order):
 *   control socket (SOCK_SEQPACKET): a datagram "J" carrying two descriptors,
 *     the job's socket (SOCK_STREAM) and the body;
 *   job socket, daemon -> job: u32 length, then the request: u32 magic,
 *     str sender, str received, str hostname, u32 ncopies, and per copy u32
 *     kind, u32 uid, u32 gid, u64 size_limit, u32 local_user, str path, str
 *     delivered_to, str orig_to, str trace (str: u32 length + bytes; length
 *     0xffffffff: none); later one byte: 'C' commit or 'R' roll back;
 *   job -> daemon: one byte ('S' staged, 'K' committed / rolled back, 'F'
 *     failed) then str text (why, for 'F').
 */
#include "deliver/lhelper.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "deliver/maildir.h"
#include "deliver/mbox.h"
#include "deliver/spool.h"
#include "log/log.h"
#include "util/buf.h"
#include "util/xalloc.h"

#define LH_MAGIC	0x6d78676cu	/* "mxgl" */
#define LH_MAX_REQUEST	(16u << 20)	/* recipients and headers, never the body */
#define LH_MAX_COPIES	100000u
#define LH_NONE		0xffffffffu
#define LH_TIMEOUT_SEC	900		/* a job that hangs (20 lock tries per mailbox...) */

struct lhelper {
	pid_t	pid;
	int	ctl;
};

/* One staged copy. */
struct lh_staged {
	const struct lhelper_copy *copy;
	struct maildir_batch *batch;
	struct mbox_copy *mbox;
	int	published;
};

struct lhelper_job {
	int	fd;			/* helper: the job socket; -1 in process */
	/* in process: */
	struct lh_staged *st;
	size_t	nst;
};

/* ---- checks ---- */

static int
lh_path_clean(const char *p)
{
	if (*p != '/')
		return 0;
	for (const char *s = p; *s; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
		if (*s == '/' && s[1] == '.'
		    && (s[2] == '/' || s[2] == '\0' || (s[2] == '.' && (s[3] == '/' || s[3] == '\0'))))
			return 0;
		if (*s == '/' && s[1] == '/')
			return 0;
	}
	return 1;
}

/* Is path strictly below dir (dir with or without its trailing '/')? */
static int
lh_below(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	while (n > 1 && dir[n - 1] == '/')
		n--;
	if (n <= 1)
		return 0;	/* "/" or "": a home of "/" grants nothing */
	return strncmp(path, dir, n) == 0 && path[n] == '/' && path[n + 1] != '\0';
}

/* path is dir/name (mbox) or dir/name/ (Maildir)? */
static int
lh_is_spool_entry(const char *path, const char *dir, const char *name)
{
	size_t n = strlen(dir), k = strlen(name);

	while (n > 1 && dir[n - 1] == '/')
		n--;
	if (n <= 1 || strncmp(path, dir, n) != 0 || path[n] != '/')
		return 0;
	path += n + 1;
	return strncmp(path, name, k) == 0 && (path[k] == '\0' || strcmp(path + k, "/") == 0);
}

int
lhelper_check_copy(const struct lhelper_conf *c, const struct lhelper_copy *cp, struct buf *err)
{
	struct passwd pwbuf, *pw = NULL;
	char strbuf[4096];

	buf_reset(err);
	if (cp->uid == 0 || cp->gid == 0) {
		buf_printf(err, "refusing to deliver as root (uid %lu gid %lu) to %s",
			   (unsigned long)cp->uid, (unsigned long)cp->gid, cp->path);
		return -1;
	}
	if (cp->kind != LHELPER_MAILDIR && cp->kind != LHELPER_MBOX) {
		buf_printf(err, "unknown delivery kind %d", (int)cp->kind);
		return -1;
	}
	if (!lh_path_clean(cp->path)
	    || (cp->kind == LHELPER_MAILDIR) != (cp->path[strlen(cp->path) - 1] == '/')) {
		buf_printf(err, "refusing mailbox path %s: not absolute and clean", cp->path);
		return -1;
	}
	if (c->virtual_mailbox_base && *c->virtual_mailbox_base
	    && lh_below(cp->path, c->virtual_mailbox_base) && !cp->local_user
	    && (long)cp->uid >= c->virtual_minimum_uid)
		return 0;
	if (getpwuid_r(cp->uid, &pwbuf, strbuf, sizeof(strbuf), &pw) != 0 || pw == NULL) {
		buf_printf(err, "refusing mailbox %s: no passwd entry for uid %lu", cp->path,
			   (unsigned long)cp->uid);
		return -1;
	}
	if (cp->gid != pw->pw_gid) {
		/* the group comes from the passwd file too, never the request's word */
		buf_printf(err, "refusing mailbox %s: gid %lu is not the primary group %lu of uid %lu",
			   cp->path, (unsigned long)cp->gid, (unsigned long)pw->pw_gid,
			   (unsigned long)cp->uid);
		return -1;
	}
	if (lh_below(cp->path, pw->pw_dir))
		return 0;
	if (c->mail_spool_directory && *c->mail_spool_directory
	    && (lh_is_spool_entry(cp->path, c->mail_spool_directory, pw->pw_name)
		|| (cp->uid == c->default_uid
		    && lh_is_spool_entry(cp->path, c->mail_spool_directory, "root"))))
		return 0;
	buf_printf(err, "refusing mailbox %s: outside the home directory of uid %lu (%s), "
		   "mail_spool_directory and virtual_mailbox_base", cp->path,
		   (unsigned long)cp->uid, pw->pw_dir);
	return -1;
}

/* ---- as the recipient ---- */

/*
 * Become the recipient for good (a copy's own process): groups, then gid,
 * then uid, real, effective and saved, and make sure root cannot be had back.
 */
static int
lh_drop_to(uid_t uid, gid_t gid, struct buf *err)
{
	if (setgroups(1, &gid) < 0 || setresgid(gid, gid, gid) < 0
	    || setresuid(uid, uid, uid) < 0) {
		buf_reset(err);
		buf_printf(err, "cannot become uid %lu gid %lu: %s", (unsigned long)uid,
			   (unsigned long)gid, strerror(errno));
		return -1;
	}
	if (setresuid(0, 0, 0) == 0 || geteuid() == 0) {
		buf_reset(err);
		buf_puts(err, "root could be regained after dropping it");
		return -1;
	}
	return 0;
}

/* The group to write an mbox in mail_spool_directory with (Postfix's spool_gid). */
static gid_t
lh_write_gid(const struct lhelper_conf *c, const struct lhelper_copy *cp)
{
	struct stat st;
	const char *dir = c->mail_spool_directory;
	size_t n;

	if (cp->kind != LHELPER_MBOX || dir == NULL || *dir == '\0')
		return cp->gid;
	n = strlen(dir);
	while (n > 1 && dir[n - 1] == '/')
		n--;
	if (strncmp(cp->path, dir, n) != 0 || cp->path[n] != '/' || strchr(cp->path + n + 1, '/'))
		return cp->gid;
	if (stat(dir, &st) == 0 && (st.st_mode & S_IWOTH) == 0 && (st.st_mode & S_IWGRP) != 0)
		return st.st_gid;
	return cp->gid;
}

/* Postfix's file size limit, for a Maildir file: the copy's whole size. */
static off_t
lh_copy_size(const struct lhelper_msg *m, const struct lhelper_copy *cp)
{
	return (off_t)(strlen("Return-Path: <>\n") + strlen(m->sender)
		       + strlen("Delivered-To: \n") + strlen(cp->delivered_to)
		       + (cp->orig_to ? strlen("X-Original-To: \n") + strlen(cp->orig_to) : 0)
		       + (cp->trace ? strlen(cp->trace) : 0)
		       + (m->received ? strlen(m->received) : 0) + spool_size(m->body));
}

static int
lh_forward_check(const struct lhelper_copy *cp, struct buf *err)
{
	struct passwd pwbuf, *pw = NULL;
	char strbuf[4096], path[PATH_MAX];
	struct stat st;

	if (!cp->local_user)
		return 0;
	if (getpwuid_r(cp->uid, &pwbuf, strbuf, sizeof(strbuf), &pw) != 0 || pw == NULL)
		return 0;
	snprintf(path, sizeof(path), "%s/.forward", pw->pw_dir);
	if (lstat(path, &st) == 0) {
		buf_reset(err);
		buf_printf(err, "%s has a ~/.forward (%s), which mxgate does not follow: deferring "
			   "rather than delivering where it does not point", pw->pw_name, path);
		errno = EAGAIN;
		return -1;
	}
	return 0;
}

static void
lh_undo(struct lh_staged *st, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (st[i].batch) {
			maildir_rollback(st[i].batch);
			maildir_batch_free(&st[i].batch);
		}
		mbox_rollback(&st[i].mbox);
	}
}

static int
lh_stage_all(const struct lhelper_conf *c, const struct lhelper_msg *m,
	     struct lh_staged **st_r, struct buf *err)
{
	struct lh_staged *st = xcalloc(m->ncopies ? m->ncopies : 1, sizeof(*st));
	size_t i;

	for (i = 0; i < m->ncopies; i++) {
		const struct lhelper_copy *cp = &m->copies[i];
		int rc = -1;

		st[i].copy = cp;
		if (lhelper_check_copy(c, cp, err) < 0) {
			errno = EPERM;
			break;
		}
		if (lh_forward_check(cp, err) < 0) {
			rc = -1;
		} else if (cp->kind == LHELPER_MAILDIR) {
			struct maildir_msg mm = {
				.return_path = m->sender,
				.received = m->received,
				.received_len = m->received ? strlen(m->received) : 0,
				.body = m->body,
				.hostname = m->hostname,
			};
			struct maildir_rcpt mr = { .maildir = cp->path,
						   .delivered_to = cp->delivered_to,
						   .orig_to = cp->orig_to,
						   .trace = cp->trace };

			if (cp->size_limit > 0 && lh_copy_size(m, cp) > cp->size_limit) {
				buf_reset(err);
				buf_printf(err, "write %s: %s", cp->path, strerror(EFBIG));
				errno = EFBIG;
			} else {
				rc = maildir_stage(&mm, &mr, 1, &st[i].batch, err);
			}
		} else {
			struct mbox_msg mb = {
				.sender = m->sender,
				.received = m->received,
				.received_len = m->received ? strlen(m->received) : 0,
				.body = m->body,
			};
			struct mbox_rcpt mr = { .path = cp->path, .delivered_to = cp->delivered_to,
						.orig_to = cp->orig_to, .trace = cp->trace };
			size_t j;

			/* two copies for one mbox (alice and alice+x): one lock, both behind it */
			for (j = 0; j < i; j++)
				if (st[j].mbox != NULL && strcmp(st[j].copy->path, cp->path) == 0)
					break;
			if (j < i) {
				rc = mbox_append_more(st[j].mbox, &mb, &mr, cp->size_limit, err);
			} else {
				st[i].mbox = mbox_append(&mb, &mr, c->lock_mask, cp->size_limit, err);
				rc = st[i].mbox ? 0 : -1;
			}
		}
		if (rc < 0)
			break;
	}
	if (i < m->ncopies) {
		lh_undo(st, i + 1);
		free(st);
		return -1;
	}
	*st_r = st;
	return 0;
}

/* Publish every staged copy; on a failure undo them all (published ones too). */
static int
lh_publish_all(struct lh_staged *st, size_t n, struct buf *err)
{
	for (size_t i = 0; i < n; i++) {
		if (st[i].batch == NULL)
			continue;
		if (maildir_publish(st[i].batch, err) < 0 || maildir_sync(st[i].batch, err) < 0) {
			lh_undo(st, n);
			return -1;
		}
	}
	return 0;
}

/* Keep every copy: release the mbox locks, forget the Maildir batches. */
static void
lh_finish_all(struct lh_staged *st, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		maildir_batch_free(&st[i].batch);
		mbox_commit(&st[i].mbox);
	}
}

static int
lh_commit_all(struct lh_staged *st, size_t n, struct buf *err)
{
	if (lh_publish_all(st, n, err) < 0)
		return -1;
	lh_finish_all(st, n);
	return 0;
}

/* ---- the wire ---- */

static void
lh_put_u32(struct buf *b, uint32_t v)
{
	buf_append(b, &v, sizeof(v));
}

static void
lh_put_str(struct buf *b, const char *s)
{
	if (s == NULL) {
		lh_put_u32(b, LH_NONE);
		return;
	}
	lh_put_u32(b, (uint32_t)strlen(s));
	buf_append(b, s, strlen(s));
}

struct lh_reader {
	const char *p;
	size_t	left;
	int	bad;
};

static uint32_t
lh_get_u32(struct lh_reader *r)
{
	uint32_t v = 0;

	if (r->left < sizeof(v)) {
		r->bad = 1;
		return 0;
	}
	memcpy(&v, r->p, sizeof(v));
	r->p += sizeof(v);
	r->left -= sizeof(v);
	return v;
}

static char *
lh_get_str(struct lh_reader *r)
{
	uint32_t n = lh_get_u32(r);
	char *s;

	if (r->bad || n == LH_NONE)
		return NULL;
	if (n > r->left) {
		r->bad = 1;
		return NULL;
	}
	s = xstrndup(r->p, n);
	if (strlen(s) != n)
		r->bad = 1;	/* a NUL inside */
	r->p += n;
	r->left -= n;
	return s;
}

static int
lh_write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t w = send(fd, p, len, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

static int
lh_read_all(int fd, void *data, size_t len)
{
	char *p = data;

	while (len > 0) {
		ssize_t r = read(fd, p, len);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = EPIPE;
			return -1;
		}
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

static int
lh_reply(int fd, char code, const char *text)
{
	struct buf b = BUF_INIT;
	int rc;

	buf_putc(&b, code);
	lh_put_str(&b, text ? text : "");
	rc = lh_write_all(fd, b.data, b.len);
	buf_free(&b);
	return rc;
}

/* 'S', 'K' or 'F' with *text (caller frees), or -1 (the job went away). */
static int
lh_read_reply(int fd, char **text_r)
{
	char code;
	uint32_t n;

	*text_r = NULL;
	if (lh_read_all(fd, &code, 1) < 0 || lh_read_all(fd, &n, sizeof(n)) < 0
	    || n > 65536)
		return -1;
	*text_r = xmalloc(n + 1);
	if (lh_read_all(fd, *text_r, n) < 0) {
		free(*text_r);
		*text_r = NULL;
		return -1;
	}
	(*text_r)[n] = '\0';
	return code;
}

/* ---- the body as a descriptor ---- */

/* A read-only spool over a descriptor: what the job process reads the body from. */
struct lh_fd_spool {
	struct spool sp;
	int	fd;
	size_t	size;
};

static ssize_t
lh_fd_pread(const struct spool *sp, void *buf, size_t len, size_t off)
{
	const struct lh_fd_spool *f = (const struct lh_fd_spool *)sp;
	ssize_t n;

	while ((n = pread(f->fd, buf, len, (off_t)off)) < 0 && errno == EINTR)
		;
	return n;
}

static size_t
lh_fd_size(const struct spool *sp)
{
	return ((const struct lh_fd_spool *)sp)->size;
}

static void
lh_fd_free(struct spool *sp)
{
	(void)sp;
}

static const struct spool_ops lh_fd_ops = {
	.pread = lh_fd_pread,
	.size = lh_fd_size,
	.free = lh_fd_free,
};

/*
 * The body as a descriptor the helper can read: the spool's bytes copied
 * into an anonymous memfd (a spool's own file may be longer than its bytes,
 * and is not the helper's to write).  Returns -1 with errno.
 */
static int
lh_body_fd(const struct spool *body)
{
	char chunk[65536];
	size_t off = 0;
	ssize_t got;
	int fd = memfd_create("mxgate-body", MFD_CLOEXEC);

	if (fd < 0)
		return -1;
	while ((got = spool_pread(body, chunk, sizeof(chunk), off)) > 0) {
		if (pwrite(fd, chunk, (size_t)got, (off_t)off) != got) {
			int e = errno ? errno : EIO;

			close(fd);
			errno = e;
			return -1;
		}
		off += (size_t)got;
	}
	if (got < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* ---- the job process ---- */

/*
 * One copy's process: it drops to the recipient for good before it touches
 * the disk, stages the copy, answers 'S' (or 'F' why), then obeys: 'C'
 * publish (answer 'K' or 'F'), 'R' undo (answer 'K', end), 'D' keep (unlock, answer
 * 'K', end: the daemon's 250 goes out once no lock file is left).  The job going
 * away before 'D' undoes the copy.
 */
/* Does copy k go with copy i's process (the same mbox: one process holds its lock)? */
static int
lh_same_mbox(const struct lhelper_copy *a, const struct lhelper_copy *b)
{
	return a->kind == LHELPER_MBOX && b->kind == LHELPER_MBOX && a->uid == b->uid
	       && strcmp(a->path, b->path) == 0;
}

static void lh_copy_main(const struct lhelper_conf *c, const struct lhelper_msg *m,
			 size_t first, int fd) __attribute__((noreturn));

/* The process of copy first and of every later copy for the same mbox. */
static void
lh_copy_main(const struct lhelper_conf *c, const struct lhelper_msg *m, size_t first, int fd)
{
	const struct lhelper_copy *cp = &m->copies[first];
	struct lhelper_copy *group = xcalloc(m->ncopies, sizeof(*group));
	struct lhelper_msg one = *m;
	struct lh_staged *st = NULL;
	struct buf err = BUF_INIT;
	size_t n = 0;
	char cmd;

	for (size_t k = first; k < m->ncopies; k++)
		if (k == first || lh_same_mbox(cp, &m->copies[k]))
			group[n++] = m->copies[k];
	one.copies = group;
	one.ncopies = n;
	if (lh_drop_to(cp->uid, lh_write_gid(c, cp), &err) < 0
	    || lh_stage_all(c, &one, &st, &err) < 0)
		_exit(lh_reply(fd, 'F', buf_str(&err)) ? 1 : 1);
	if (lh_reply(fd, 'S', "") < 0)
		cmd = 'R';
	else if (lh_read_all(fd, &cmd, 1) < 0)
		cmd = 'R';
	if (cmd == 'C') {
		if (lh_publish_all(st, n, &err) < 0)
			_exit(lh_reply(fd, 'F', buf_str(&err)) ? 1 : 1);
		if (lh_reply(fd, 'K', "") < 0 || lh_read_all(fd, &cmd, 1) < 0)
			cmd = 'R';
	}
	if (cmd == 'D') {
		lh_finish_all(st, n);
		_exit(lh_reply(fd, 'K', "") ? 0 : 0);
	}
	lh_undo(st, n);
	_exit(lh_reply(fd, 'K', "") ? 0 : 0);
}

/* Send cmd to each of the n copy processes and read each answer; 0 if all said 'K'. */
static int
lh_tell(const int *fds, size_t n, char cmd, struct buf *err)
{
	int rc = 0;

	for (size_t i = 0; i < n; i++) {
		char *text = NULL;
		int code;

		if (fds[i] < 0)
			continue;
		if (lh_write_all(fds[i], &cmd, 1) < 0) {
			rc = -1;
			continue;
		}
		code = lh_read_reply(fds[i], &text);
		if (code != 'K') {
			if (rc == 0 && err) {
				buf_reset(err);
				buf_puts(err, text && *text ? text : "a copy's process went away");
			}
			rc = -1;
		}
		free(text);
	}
	return rc;
}

/* The job: check every copy, one process per copy, two phases; answers the daemon on fd. */
static void lh_job_copies(const struct lhelper_conf *c, const struct lhelper_msg *m, int fd)
	__attribute__((noreturn));

static void
lh_job_copies(const struct lhelper_conf *c, const struct lhelper_msg *m, int fd)
{
	int *fds = xcalloc(m->ncopies ? m->ncopies : 1, sizeof(*fds));
	struct buf err = BUF_INIT;
	size_t i, started = 0;
	char verdict;

	/* every check first, as root: nothing is written for a request that asks too much */
	for (i = 0; i < m->ncopies; i++)
		if (lhelper_check_copy(c, &m->copies[i], &err) < 0)
			_exit(lh_reply(fd, 'F', buf_str(&err)) ? 1 : 1);
	for (i = 0; i < m->ncopies; i++) {
		int sv[2];
		pid_t pid;
		char *text = NULL;
		int code;

		fds[i] = -1;
		started = i + 1;
		{
			size_t j;

			for (j = 0; j < i && !lh_same_mbox(&m->copies[j], &m->copies[i]); j++)
				;
			if (j < i)
				continue;	/* copy j's process writes it */
		}
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
			buf_reset(&err);
			buf_printf(&err, "delivery helper: socketpair: %s", strerror(errno));
			break;
		}
		if ((pid = fork()) == 0) {
			close(sv[0]);
			for (size_t k = 0; k < i; k++)
				close(fds[k]);
			close(fd);
			lh_copy_main(c, m, i, sv[1]);
		}
		close(sv[1]);
		if (pid < 0) {
			close(sv[0]);
			buf_reset(&err);
			buf_printf(&err, "delivery helper: fork: %s", strerror(errno));
			break;
		}
		fds[i] = sv[0];
		started = i + 1;
		code = lh_read_reply(fds[i], &text);
		if (code != 'S') {
			buf_reset(&err);
			buf_puts(&err, text && *text ? text : "a copy's process went away");
			free(text);
			break;
		}
		free(text);
	}
	if (i < m->ncopies) {
		(void)lh_tell(fds, started, 'R', NULL);
		_exit(lh_reply(fd, 'F', buf_str(&err)) ? 1 : 1);
	}
	if (lh_reply(fd, 'S', "") < 0 || lh_read_all(fd, &verdict, 1) < 0 || verdict != 'C') {
		/* told to roll back, or the daemon went away: undo every copy */
		(void)lh_tell(fds, started, 'R', NULL);
		_exit(lh_reply(fd, 'K', "") ? 0 : 0);
	}
	if (lh_tell(fds, started, 'C', &err) < 0) {
		(void)lh_tell(fds, started, 'R', NULL);
		_exit(lh_reply(fd, 'F', buf_str(&err)) ? 1 : 1);
	}
	(void)lh_tell(fds, started, 'D', NULL);
	_exit(lh_reply(fd, 'K', "") ? 0 : 0);
}

static void lh_job_main(const struct lhelper_conf *c, int fd, int body_fd)
	__attribute__((noreturn));

static void
lh_job_main(const struct lhelper_conf *c, int fd, int body_fd)
{
	struct lh_fd_spool body = { .fd = body_fd };
	struct lhelper_copy *copies = NULL;
	struct lhelper_msg m = { .conf = c };
	struct lh_reader r;
	struct stat sb;
	struct timeval tv = { LH_TIMEOUT_SEC, 0 };
	uint32_t len, n;
	char *req;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	spool_init(&body.sp, &lh_fd_ops);
	if (fstat(body_fd, &sb) < 0 || !S_ISREG(sb.st_mode))
		_exit(lh_reply(fd, 'F', "the body is not a regular file") ? 1 : 1);
	body.size = (size_t)sb.st_size;
	if (lh_read_all(fd, &len, sizeof(len)) < 0 || len > LH_MAX_REQUEST)
		_exit(1);
	req = xmalloc(len ? len : 1);
	if (lh_read_all(fd, req, len) < 0)
		_exit(1);
	r = (struct lh_reader){ .p = req, .left = len };
	if (lh_get_u32(&r) != LH_MAGIC)
		_exit(lh_reply(fd, 'F', "bad request") ? 1 : 1);
	m.sender = lh_get_str(&r);
	m.received = lh_get_str(&r);
	m.hostname = lh_get_str(&r);
	n = lh_get_u32(&r);
	if (r.bad || n > LH_MAX_COPIES || m.sender == NULL || m.hostname == NULL)
		_exit(lh_reply(fd, 'F', "bad request") ? 1 : 1);
	copies = xcalloc(n ? n : 1, sizeof(*copies));
	for (uint32_t i = 0; i < n && !r.bad; i++) {
		uint32_t lo, hi;

		copies[i].kind = (enum lhelper_kind)lh_get_u32(&r);
		copies[i].uid = (uid_t)lh_get_u32(&r);
		copies[i].gid = (gid_t)lh_get_u32(&r);
		lo = lh_get_u32(&r);
		hi = lh_get_u32(&r);
		copies[i].size_limit = (off_t)(((uint64_t)hi << 32) | lo);
		copies[i].local_user = (int)lh_get_u32(&r);
		copies[i].path = lh_get_str(&r);
		copies[i].delivered_to = lh_get_str(&r);
		copies[i].orig_to = lh_get_str(&r);
		copies[i].trace = lh_get_str(&r);
		if (copies[i].path == NULL || copies[i].delivered_to == NULL)
			r.bad = 1;
	}
	if (r.bad || r.left != 0)
		_exit(lh_reply(fd, 'F', "bad request") ? 1 : 1);
	m.body = &body.sp;
	m.copies = copies;
	m.ncopies = n;
	lh_job_copies(c, &m, fd);
}

/* ---- the helper process ---- */

static void lh_main(const struct lhelper_conf *c, int ctl) __attribute__((noreturn));

static void
lh_main(const struct lhelper_conf *c, int ctl)
{
	signal(SIGCHLD, SIG_IGN);	/* jobs are reaped by the kernel */
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_IGN);	/* the daemon decides when we stop */
	for (;;) {
		char cbuf[CMSG_SPACE(2 * sizeof(int))], byte;
		struct iovec iov = { &byte, 1 };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
				     .msg_controllen = sizeof(cbuf) };
		struct cmsghdr *cm;
		int fds[2] = { -1, -1 };
		ssize_t got = recvmsg(ctl, &mh, MSG_CMSG_CLOEXEC);
		pid_t pid;

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			_exit(0);	/* the daemon closed its end, or died */
		cm = CMSG_FIRSTHDR(&mh);
		if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS
		    && cm->cmsg_len == CMSG_LEN(2 * sizeof(int)))
			memcpy(fds, CMSG_DATA(cm), sizeof(fds));
		if (byte != 'J' || fds[0] < 0 || fds[1] < 0) {
			if (fds[0] >= 0)
				close(fds[0]);
			if (fds[1] >= 0)
				close(fds[1]);
			continue;
		}
		if ((pid = fork()) == 0) {
			close(ctl);
			lh_job_main(c, fds[0], fds[1]);
		}
		if (pid < 0)
			(void)lh_reply(fds[0], 'F', "the delivery helper cannot fork");
		close(fds[0]);
		close(fds[1]);
	}
}

int
lhelper_start(const struct lhelper_conf *c, struct lhelper **h_r)
{
	int sv[2];
	pid_t pid;

	*h_r = NULL;
	if (geteuid() != 0)
		return 0;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		msg_error("delivery helper: socketpair: %s", strerror(errno));
		return -1;
	}
	/* not fflush(NULL): another thread (the spawn log reader) may hold a stream's lock */
	fflush(stdout);
	if ((pid = fork()) < 0) {
		msg_error("delivery helper: fork: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (pid == 0) {
		int ctl = 3;

		log_forked_child();
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		prctl(PR_SET_NAME, "mxgate-helper");
		if (sv[1] != ctl) {
			if (dup2(sv[1], ctl) < 0)
				_exit(1);
		} else if (fcntl(ctl, F_SETFD, 0) < 0) {
			_exit(1);
		}
		/* no network: every descriptor but stdio and the control socket goes */
		close_range(4, ~0U, 0);
		if (unshare(CLONE_NEWNET) < 0)
			msg_warn("delivery helper: unshare(CLONE_NEWNET): %s (it has no socket "
				 "but its control socket all the same)", strerror(errno));
		lh_main(c, ctl);
	}
	close(sv[1]);
	*h_r = xcalloc(1, sizeof(**h_r));
	(*h_r)->pid = pid;
	(*h_r)->ctl = sv[0];
	return 0;
}

void
lhelper_stop(struct lhelper **hp)
{
	struct lhelper *h = *hp;

	if (h == NULL)
		return;
	close(h->ctl);
	/*
	 * A process forked after the helper (the spawner) may hold a copy of the
	 * control socket, so the helper may never see it close: end it.  Jobs are
	 * processes of their own and finish what they were given.
	 */
	kill(h->pid, SIGTERM);
	while (waitpid(h->pid, NULL, 0) < 0 && errno == EINTR)
		;
	free(h);
	*hp = NULL;
}

/* ---- the daemon's side ---- */

static void
lh_encode(const struct lhelper_msg *m, struct buf *b)
{
	size_t start;
	uint32_t len;

	lh_put_u32(b, 0);	/* the length, below */
	start = b->len;
	lh_put_u32(b, LH_MAGIC);
	lh_put_str(b, m->sender);
	lh_put_str(b, m->received);
	lh_put_str(b, m->hostname ? m->hostname : "");
	lh_put_u32(b, (uint32_t)m->ncopies);
	for (size_t i = 0; i < m->ncopies; i++) {
		const struct lhelper_copy *cp = &m->copies[i];
		uint64_t lim = cp->size_limit > 0 ? (uint64_t)cp->size_limit : 0;

		lh_put_u32(b, (uint32_t)cp->kind);
		lh_put_u32(b, (uint32_t)cp->uid);
		lh_put_u32(b, (uint32_t)cp->gid);
		lh_put_u32(b, (uint32_t)lim);
		lh_put_u32(b, (uint32_t)(lim >> 32));
		lh_put_u32(b, (uint32_t)cp->local_user);
		lh_put_str(b, cp->path);
		lh_put_str(b, cp->delivered_to);
		lh_put_str(b, cp->orig_to);
		lh_put_str(b, cp->trace);
	}
	len = (uint32_t)(b->len - start);
	memcpy(b->data + start - sizeof(len), &len, sizeof(len));
}

struct lhelper_job *
lhelper_prepare(struct lhelper *h, const struct lhelper_msg *m, struct buf *err)
{
	struct lhelper_job *j = xcalloc(1, sizeof(*j));
	struct buf req = BUF_INIT;
	int sv[2], body_fd, code;
	char *text = NULL;

	j->fd = -1;
	if (h == NULL) {
		if (lh_stage_all(m->conf, m, &j->st, err) < 0) {
			free(j);
			return NULL;
		}
		j->nst = m->ncopies;
		return j;
	}
	if ((body_fd = lh_body_fd(m->body)) < 0) {
		buf_reset(err);
		buf_printf(err, "delivery helper: cannot pass the body: %s", strerror(errno));
		free(j);
		return NULL;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		buf_reset(err);
		buf_printf(err, "delivery helper: socketpair: %s", strerror(errno));
		close(body_fd);
		free(j);
		return NULL;
	}
	{
		char cbuf[CMSG_SPACE(2 * sizeof(int))], byte = 'J';
		struct iovec iov = { &byte, 1 };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
				     .msg_controllen = sizeof(cbuf) };
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		int fds[2] = { sv[1], body_fd };
		ssize_t sent;

		memset(cbuf, 0, sizeof(cbuf));
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(fds));
		memcpy(CMSG_DATA(cm), fds, sizeof(fds));
		while ((sent = sendmsg(h->ctl, &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR)
			;
		close(sv[1]);
		close(body_fd);
		if (sent < 0) {
			buf_reset(err);
			buf_printf(err, "delivery helper: not reachable: %s", strerror(errno));
			close(sv[0]);
			free(j);
			return NULL;
		}
	}
	j->fd = sv[0];
	{
		struct timeval tv = { LH_TIMEOUT_SEC, 0 };

		setsockopt(j->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	lh_encode(m, &req);
	if (lh_write_all(j->fd, req.data, req.len) < 0 || (code = lh_read_reply(j->fd, &text)) < 0) {
		buf_reset(err);
		buf_printf(err, "delivery helper: no answer: %s", strerror(errno));
		buf_free(&req);
		close(j->fd);
		free(j);
		return NULL;
	}
	buf_free(&req);
	if (code != 'S') {
		buf_reset(err);
		buf_puts(err, text);
		free(text);
		close(j->fd);
		free(j);
		return NULL;
	}
	free(text);
	return j;
}

int
lhelper_commit(struct lhelper_job **jp, struct buf *err)
{
	struct lhelper_job *j = *jp;
	char *text = NULL;
	int code, rc = 0;

	*jp = NULL;
	if (j->fd < 0) {
		rc = lh_commit_all(j->st, j->nst, err);
		free(j->st);
		free(j);
		return rc;
	}
	if (lh_write_all(j->fd, "C", 1) < 0 || (code = lh_read_reply(j->fd, &text)) < 0) {
		/* the job rolls back when it sees us go; whether it had published is unknown */
		buf_reset(err);
		buf_printf(err, "delivery helper: no answer to commit: %s", strerror(errno));
		rc = -1;
	} else if (code != 'K') {
		buf_reset(err);
		buf_puts(err, text);
		rc = -1;
	}
	free(text);
	close(j->fd);
	free(j);
	return rc;
}

void
lhelper_rollback(struct lhelper_job **jp)
{
	struct lhelper_job *j = *jp;
	char *text = NULL;

	*jp = NULL;
	if (j == NULL)
		return;
	if (j->fd < 0) {
		lh_undo(j->st, j->nst);
		free(j->st);
		free(j);
		return;
	}
	/* wait for the undo: a retry of the message must not race it */
	if (lh_write_all(j->fd, "R", 1) == 0)
		(void)lh_read_reply(j->fd, &text);
	free(text);
	close(j->fd);
	free(j);
}
