/*
 * journal: the delivery journal of the group commit.  See journal.h.
 *
 * The file: two halves, each a header block and JOURNAL_HALF_SIZE bytes of
 * records.
 *   header (at the half's start, HDR_BLOCK bytes reserved):
 *     u32 magic "MXJH", u32 state (EMPTY or LIVE), u64 gen, u32 crc
 *   record (8-byte aligned, one after the other from the header block on):
 *     u32 magic (REC_MAGIC, or REC_CANCELLED), u32 len (the whole record,
 *     padded), u64 gen (the half's), u32 crc (of the record with this field
 *     0), u32 ncopies, then per copy: u32 path_len, u32 data_len, the path,
 *     the data.
 * gen grows by one at every use of a half, over the file's life (the
 * headers keep it when empty), so a record left from an earlier use never
 * matches its half's header.
 */
#include "deliver/journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "deliver/maildir.h"
#include "log/log.h"
#include "util/buf.h"
#include "util/xalloc.h"

#define HDR_MAGIC	0x484a584dU	/* "MXJH" */
#define REC_MAGIC	0x524a584dU	/* "MXJR" */
#define REC_CANCELLED	0x434a584dU	/* "MXJC": rolled back, not to be recovered */
#define HDR_BLOCK	4096
#define REC_HEAD	24		/* magic, len, gen, crc, ncopies */
#define HALF_EMPTY	0
#define HALF_LIVE	1
/* A half's first record older than this: the next round switches halves. */
#define CHECKPOINT_AGE_US	1000000L
/* No record for this long: journal_tick() checkpoints the half (no round will). */
#define CHECKPOINT_IDLE_US	1000000L
/* File systems remembered per half for its syncfs; past that, sync(2). */
#define DEVS_MAX	8

struct half {
	off_t	start;		/* of its header */
	uint64_t gen;		/* of its current (or last) use */
	int	live;		/* its header says LIVE */
	off_t	tail;		/* next record's offset, from start + HDR_BLOCK */
	int	inflight;	/* rounds between journal_write() and journal_round_end() */
	int	checkpointing;	/* a checkpoint of it is running */
	struct timeval first;	/* when its first record was written */
	struct timeval last;	/* when its last record was */
	struct { dev_t dev; int fd; } devs[DEVS_MAX];
	int	ndevs;
	int	sync_all;	/* more file systems than devs[]: sync(2) */
	char  **pend;		/* directories durable once its checkpoint is */
	size_t	npend, cappend;
};

struct journal {
	char   *path;
	int	fd;
	int	broken;		/* an error turned it off */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int	cur;		/* the half rounds write to */
	uint64_t gen;		/* the highest in use */
	struct half h[2];
	/* Group commit of the rounds' fdatasyncs (journal_sync()), under lock: */
	uint64_t written;	/* rounds whose pwrite is over */
	uint64_t synced;	/* the highest count that an fdatasync covered */
	int	syncing;	/* an fdatasync is under way */
	pthread_cond_t sync_cond;
};

/* CRC-32C (Castagnoli), bytewise: records are small. */
static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void
crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78U : c >> 1;
		crc_table[i] = c;
	}
}

static uint32_t
crc32c(const void *p, size_t len)
{
	const unsigned char *s = p;
	uint32_t c = 0xffffffffU;

	pthread_once(&crc_once, crc_init);
	while (len-- > 0)
		c = crc_table[(c ^ *s++) & 0xff] ^ (c >> 8);
	return c ^ 0xffffffffU;
}

static void
put32(unsigned char *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void
put64(unsigned char *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static uint32_t
get32(const unsigned char *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static uint64_t
get64(const unsigned char *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static int
full_pwrite(int fd, const void *p, size_t len, off_t off)
{
	const char *s = p;

	while (len > 0) {
		ssize_t w = pwrite(fd, s, len, off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (w == 0)
				errno = EIO;
			return -1;
		}
		s += w;
		len -= (size_t)w;
		off += w;
	}
	return 0;
}

static int
full_pread(int fd, void *p, size_t len, off_t off)
{
	char *s = p;

	while (len > 0) {
		ssize_t r = pread(fd, s, len, off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = EIO;	/* shorter than it said */
			return -1;
		}
		s += r;
		len -= (size_t)r;
		off += r;
	}
	return 0;
}

static off_t
half_start(int i)
{
	return (off_t)i * (HDR_BLOCK + JOURNAL_HALF_SIZE);
}

static int
header_write(struct journal *j, int i, int state)
{
	unsigned char hdr[24] = { 0 };

	put32(hdr, HDR_MAGIC);
	put32(hdr + 4, (uint32_t)state);
	put64(hdr + 8, j->h[i].gen);
	put32(hdr + 16, crc32c(hdr, 16));
	return full_pwrite(j->fd, hdr, sizeof(hdr), j->h[i].start);
}

/* 1 with *state_r and *gen_r from a valid header, 0 for none (a new file). */
static int
header_read(int fd, off_t start, int *state_r, uint64_t *gen_r)
{
	unsigned char hdr[24];

	if (full_pread(fd, hdr, sizeof(hdr), start) < 0)
		return 0;
	if (get32(hdr) != HDR_MAGIC || get32(hdr + 16) != crc32c(hdr, 16))
		return 0;
	*state_r = (int)get32(hdr + 4);
	*gen_r = get64(hdr + 8);
	return 1;
}

/* Turn the journal off after an error (under j->lock or alone). */
static void
journal_fail(struct journal *j, const char *op)
{
	if (!j->broken)
		msg_warn("delivery journal %s: %s %s: %m; storing each copy with its own fsync "
			 "from now on", j->path, op, j->path);
	j->broken = 1;
}

/* -- recovery ------------------------------------------------------------ */

/* Is there a cur/ entry "<name>:2,..." beside new/<name>?  (A reader has seen it.) */
static int
seen_in_cur(const char *new_path)
{
	const char *slash = strrchr(new_path, '/');
	size_t dlen, nlen;
	char *cur;
	DIR *d;
	struct dirent *e;
	int found = 0;

	if (slash == NULL || slash - new_path < 4)
		return 0;
	dlen = (size_t)(slash - new_path) - 3;	/* up to "new" */
	nlen = strlen(slash + 1);
	cur = xasprintf("%.*scur", (int)dlen, new_path);
	if ((d = opendir(cur)) != NULL) {
		while (!found && (e = readdir(d)) != NULL)
			found = strncmp(e->d_name, slash + 1, nlen) == 0 && e->d_name[nlen] == ':';
		closedir(d);
	}
	free(cur);
	return found;
}

/* mkdir path and its missing parents (mode 0700), fsyncing each parent. */
static int
make_dirs(const char *path)
{
	char *p = xstrdup(path);
	int ret = 0;

	for (char *s = p + 1; ret == 0; s++) {
		if (*s != '/' && *s != 0)
			continue;
		char c = *s;

		*s = 0;
		if (mkdir(p, 0700) == 0) {
			char *parent = xstrdup(p);
			char *ls = strrchr(parent, '/');
			int fd;

			if (ls == parent)
				ls[1] = 0;
			else
				*ls = 0;
			if ((fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
				if (fsync(fd) < 0)
					ret = -1;
				close(fd);
			}
			free(parent);
		} else if (errno != EEXIST) {
			ret = -1;
		}
		*s = c;
		if (c == 0)
			break;
	}
	free(p);
	return ret;
}

/* Zeros from off to end, written (not a hole, not an unwritten extent). */
static int
zero_fill(int fd, off_t off, off_t end)
{
	static const char zeros[64 * 1024];

	while (off < end) {
		size_t n = end - off < (off_t)sizeof(zeros) ? (size_t)(end - off) : sizeof(zeros);

		if (full_pwrite(fd, zeros, n, off) < 0)
			return -1;
		off += (off_t)n;
	}
	return 0;
}

/* Does the file at path hold exactly these len bytes?  (A power loss may leave zeros.) */
static int
same_content(const char *path, const unsigned char *data, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	unsigned char *have;
	int same;

	if (fd < 0)
		return 0;
	have = xmalloc(len ? len : 1);
	same = full_pread(fd, have, len, 0) == 0 && memcmp(have, data, len) == 0;
	free(have);
	close(fd);
	return same;
}

/*
 * Is a copy whole at new_path (or seen in cur/)?  Else write it there again:
 * 1 written, 0 already there, -1 failed (logged).
 */
static int
recover_copy(const char *new_path, const unsigned char *data, size_t len)
{
	const char *slash = strrchr(new_path, '/');
	struct stat st;
	char *maildir, *tmp, *newdir;
	int fd, ret = -1;

	if (slash == NULL || slash - new_path < 5 || strncmp(slash - 4, "/new/", 5) != 0
	    || new_path[0] != '/' || strstr(new_path, "/../") != NULL) {
		msg_warn("delivery journal: record names no new/ file: %s (skipped)", new_path);
		return -1;
	}
	if (stat(new_path, &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size == len
	    && same_content(new_path, data, len))
		return 0;
	if (seen_in_cur(new_path))
		return 0;
	maildir = xasprintf("%.*s", (int)(slash - new_path - 3), new_path);
	newdir = xasprintf("%.*s", (int)(slash - new_path), new_path);
	tmp = xasprintf("%stmp/%s.recovered", maildir, slash + 1);
	{
		char *t = xasprintf("%stmp", maildir), *c = xasprintf("%scur", maildir);

		if (make_dirs(t) < 0 || make_dirs(newdir) < 0 || make_dirs(c) < 0)
			msg_warn("delivery journal: mkdir below %s: %m", maildir);
		free(t);
		free(c);
	}
	fd = open(tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || full_pwrite(fd, data, len, 0) < 0 || fsync(fd) < 0) {
		msg_warn("delivery journal: write %s: %m", tmp);
	} else if (rename(tmp, new_path) < 0) {
		msg_warn("delivery journal: rename %s to %s: %m", tmp, new_path);
	} else {
		int dfd = open(newdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (dfd < 0 || fsync(dfd) < 0)
			msg_warn("delivery journal: fsync directory %s: %m", newdir);
		else
			ret = 1;
		if (dfd >= 0)
			close(dfd);
	}
	if (fd >= 0)
		close(fd);
	if (ret < 0)
		unlink(tmp);
	free(tmp);
	free(newdir);
	free(maildir);
	return ret;
}

/* Check one record's frame at p (avail bytes there): its length, or 0 when torn. */
static size_t
record_check(const unsigned char *p, size_t avail, uint64_t gen, int *cancelled)
{
	uint32_t magic, len;
	unsigned char head[REC_HEAD];
	uint32_t crc;

	if (avail < REC_HEAD)
		return 0;
	magic = get32(p);
	len = get32(p + 4);
	if ((magic != REC_MAGIC && magic != REC_CANCELLED) || len < REC_HEAD || len > avail
	    || len % 8 != 0 || get64(p + 8) != gen)
		return 0;
	memcpy(head, p, REC_HEAD);
	put32(head, REC_MAGIC);		/* the crc was taken before any cancel */
	put32(head + 16, 0);
	crc = crc32c(head, REC_HEAD);
	crc = crc32c(p + REC_HEAD, len - REC_HEAD) ^ crc;
	if (crc != get32(p + 16))
		return 0;
	*cancelled = magic == REC_CANCELLED;
	return len;
}

/* The checksum as record_check() computes it. */
static uint32_t
record_crc(const unsigned char *p, size_t len)
{
	unsigned char head[REC_HEAD];

	memcpy(head, p, REC_HEAD);
	put32(head + 16, 0);
	return crc32c(head, REC_HEAD) ^ crc32c(p + REC_HEAD, len - REC_HEAD);
}

/* Recover one live half's records; counts added to the totals. */
static void
recover_half(struct journal *j, int i, long *msgs, long *written, long *present, long *failed)
{
	size_t size = JOURNAL_HALF_SIZE;
	unsigned char *buf = xmalloc(size);
	size_t off = 0;

	if (full_pread(j->fd, buf, size, j->h[i].start + HDR_BLOCK) < 0) {
		/* A file cut short: read what is there. */
		struct stat st;
		off_t have = fstat(j->fd, &st) == 0 ? st.st_size - (j->h[i].start + HDR_BLOCK) : 0;

		memset(buf, 0, size);
		if (have > 0 && (size_t)have < size)
			(void)!pread(j->fd, buf, (size_t)have, j->h[i].start + HDR_BLOCK);
	}
	for (;;) {
		int cancelled = 0;
		size_t len = record_check(buf + off, size - off, j->h[i].gen, &cancelled);
		const unsigned char *p, *end;
		uint32_t ncopies;

		if (len == 0)
			break;
		p = buf + off + REC_HEAD;
		end = buf + off + len;
		ncopies = get32(buf + off + 20);
		off += len;
		if (cancelled)
			continue;
		(*msgs)++;
		for (uint32_t k = 0; k < ncopies && end - p >= 8; k++) {
			uint32_t plen = get32(p), dlen = get32(p + 4);
			char *path;

			if ((size_t)(end - p - 8) < (size_t)plen + dlen)
				break;
			path = xstrndup((const char *)p + 8, plen);
			switch (recover_copy(path, p + 8 + plen, dlen)) {
			case 1:
				msg_info("delivery journal: recovered %s", path);
				(*written)++;
				break;
			case 0:
				(*present)++;
				break;
			default:
				(*failed)++;
			}
			free(path);
			p += 8 + plen + dlen;
		}
	}
	free(buf);
}

static int
journal_recover(struct journal *j)
{
	long msgs = 0, written = 0, present = 0, failed = 0;
	int order[2] = { 0, 1 };

	if (j->h[1].live && (!j->h[0].live || j->h[1].gen < j->h[0].gen)) {
		order[0] = 1;
		order[1] = 0;
	}
	for (int k = 0; k < 2; k++)
		if (j->h[order[k]].live)
			recover_half(j, order[k], &msgs, &written, &present, &failed);
	if (msgs > 0 || j->h[0].live || j->h[1].live)
		msg_info("delivery journal %s: %ld message(s) since the last checkpoint: "
			 "%ld cop%s written again, %ld already stored, %ld failed",
			 j->path, msgs, written, written == 1 ? "y" : "ies", present, failed);
	if (failed > 0)
		return -1;	/* keep the records: the next start tries again */
	if (!j->h[0].live && !j->h[1].live)
		return 0;
	for (int i = 0; i < 2; i++)
		if (j->h[i].live) {
			if (header_write(j, i, HALF_EMPTY) < 0)
				return -1;
			j->h[i].live = 0;
		}
	return fdatasync(j->fd);
}

/* -- open and close ---------------------------------------------------------- */

struct journal *
journal_open(const char *path, struct buf *err)
{
	struct journal *j;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	struct stat st;

	if (fd < 0) {
		buf_printf(err, "open %s: %m", path);
		return NULL;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		buf_printf(err, "%s is in use by another process (flock: %m)", path);
		close(fd);
		return NULL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		buf_printf(err, "%s: not a regular file", path);
		close(fd);
		return NULL;
	}
	j = xcalloc(1, sizeof(*j));
	j->path = xstrdup(path);
	j->fd = fd;
	pthread_mutex_init(&j->lock, NULL);
	pthread_cond_init(&j->cond, NULL);
	pthread_cond_init(&j->sync_cond, NULL);
	for (int i = 0; i < 2; i++) {
		int state;
		uint64_t gen;

		j->h[i].start = half_start(i);
		j->h[i].tail = j->h[i].start + HDR_BLOCK;
		if (header_read(fd, j->h[i].start, &state, &gen)) {
			j->h[i].gen = gen;
			j->h[i].live = state == HALF_LIVE;
			if (gen > j->gen)
				j->gen = gen;
		}
	}
	if (journal_recover(j) < 0) {
		buf_printf(err, "%s: recovery did not complete (its records are kept for the "
			   "next start)", path);
		journal_close(&j);
		return NULL;
	}
	/*
	 * Its full size once, written (zeros), so that a round's pwrite never
	 * extends the file nor writes into an unwritten extent: either would
	 * make each round's fdatasync commit the file system's journal (with
	 * every tmp/ file and rename since the last commit), where an
	 * overwrite needs only its own blocks and a cache flush.
	 */
	if (st.st_size < half_start(2)) {
		if (zero_fill(fd, st.st_size, half_start(2)) < 0) {
			int e = errno;

			/* ENOSPC, say: give back what was written, the spool needs it more. */
			(void)!ftruncate(fd, st.st_size);
			errno = e;
			buf_printf(err, "allocate %s: %m", path);
			journal_close(&j);
			return NULL;
		}
		if (fsync(fd) < 0) {
			buf_printf(err, "fsync %s: %m", path);
			journal_close(&j);
			return NULL;
		}
	}
	j->cur = 0;
	return j;
}

static void half_checkpoint(struct journal *j, int i);

static void
half_pend_free(struct half *h)
{
	for (size_t k = 0; k < h->npend; k++)
		free(h->pend[k]);
	h->npend = 0;
}

void
journal_close(struct journal **jp)
{
	struct journal *j = *jp;

	if (j == NULL)
		return;
	for (int i = 0; i < 2; i++)
		if (j->h[i].live && !j->broken)
			half_checkpoint(j, i);
	for (int i = 0; i < 2; i++) {
		for (int k = 0; k < j->h[i].ndevs; k++)
			close(j->h[i].devs[k].fd);
		half_pend_free(&j->h[i]);
		free(j->h[i].pend);
	}
	close(j->fd);
	pthread_mutex_destroy(&j->lock);
	pthread_cond_destroy(&j->cond);
	pthread_cond_destroy(&j->sync_cond);
	free(j->path);
	free(j);
	*jp = NULL;
}

/* -- rounds ------------------------------------------------------------------ */

/* Remember the file system of a copy for its half's syncfs (under j->lock). */
static void
half_add_dev(struct half *h, dev_t dev, const char *new_path)
{
	const char *slash;
	char *dir;
	int fd;

	for (int k = 0; k < h->ndevs; k++)
		if (h->devs[k].dev == dev)
			return;
	if (h->ndevs == DEVS_MAX) {
		h->sync_all = 1;
		return;
	}
	slash = strrchr(new_path, '/');
	dir = xasprintf("%.*s", (int)(slash - new_path), new_path);
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	if (fd < 0) {
		h->sync_all = 1;
		return;
	}
	h->devs[h->ndevs].dev = dev;
	h->devs[h->ndevs].fd = fd;
	h->ndevs++;
}

/*
 * Make half i's copies durable and mark it empty.  Waits for the rounds
 * still in it; called without j->lock.
 */
static void
half_checkpoint(struct journal *j, int i)
{
	struct half *h = &j->h[i];
	int ok = 1;

	pthread_mutex_lock(&j->lock);
	while (h->inflight > 0 || h->checkpointing)
		pthread_cond_wait(&j->cond, &j->lock);
	if (!h->live) {
		pthread_mutex_unlock(&j->lock);
		return;
	}
	h->checkpointing = 1;
	pthread_mutex_unlock(&j->lock);

	if (h->sync_all)
		sync();
	for (int k = 0; k < h->ndevs && ok; k++)
		if (syncfs(h->devs[k].fd) < 0)
			ok = 0;
	pthread_mutex_lock(&j->lock);
	/*
	 * A failed syncfs turns the journal off: the half stays live (its
	 * records are recovered at the next start), and no round may wait
	 * for it to empty.
	 */
	if (!ok)
		journal_fail(j, "syncfs for the mailboxes of");
	else if (!j->broken && (header_write(j, i, HALF_EMPTY) < 0 || fdatasync(j->fd) < 0))
		journal_fail(j, "write header of");
	if (ok && !j->broken) {
		/* The directories its copies made are on disk now, with the copies. */
		maildir_known_durable(h->pend, h->npend);
		half_pend_free(h);
		h->live = 0;
		for (int k = 0; k < h->ndevs; k++)
			close(h->devs[k].fd);
		h->ndevs = 0;
		h->sync_all = 0;
		h->tail = h->start + HDR_BLOCK;
	}
	/* Else the half stays live (its records are recovered at the next start). */
	h->checkpointing = 0;
	pthread_cond_broadcast(&j->cond);
	pthread_mutex_unlock(&j->lock);
}

static long
age_us(const struct timeval *since)
{
	struct timeval now;

	gettimeofday(&now, NULL);
	return (now.tv_sec - since->tv_sec) * 1000000L + (now.tv_usec - since->tv_usec);
}

/* A record for batch b in out (appended, 8-aligned); 0, or -1: not journaled. */
static int
record_build(struct maildir_batch *b, struct buf *out, dev_t *devs, const char **paths,
	     size_t *ndev)
{
	size_t start = out->len, n = maildir_batch_ncopies(b);
	unsigned char head[REC_HEAD] = { 0 };

	buf_append(out, head, sizeof(head));
	for (size_t i = 0; i < n; i++) {
		const char *path;
		int fd = maildir_batch_copy(b, i, &path);
		struct stat st;
		unsigned char lens[8];
		size_t at;

		if (fd < 0 || fstat(fd, &st) < 0
		    || out->len - start + 8 + strlen(path) + (size_t)st.st_size
		       > (size_t)JOURNAL_RECORD_MAX)
			goto no;
		put32(lens, (uint32_t)strlen(path));
		put32(lens + 4, (uint32_t)st.st_size);
		buf_append(out, lens, 8);
		buf_puts(out, path);
		at = out->len;
		buf_reserve(out, (size_t)st.st_size);
		if (full_pread(fd, out->data + at, (size_t)st.st_size, 0) < 0)
			goto no;
		out->len = at + (size_t)st.st_size;
		devs[*ndev] = st.st_dev;
		paths[(*ndev)++] = path;
	}
	while ((out->len - start) % 8 != 0)
		buf_append(out, "", 1);
	put32((unsigned char *)out->data + start, REC_MAGIC);
	put32((unsigned char *)out->data + start + 4, (uint32_t)(out->len - start));
	put32((unsigned char *)out->data + start + 20, (uint32_t)n);
	return 0;
no:
	out->len = start;
	return -1;
}

/*
 * The round's pwrite is over: make it durable.  One fdatasync at a time
 * (group commit): a round that finds one under way waits for it, and is done
 * if that one began after its pwrite; otherwise it runs the next one, for
 * itself and every round whose pwrite is over by then.  Two concurrent
 * fdatasyncs of one file would each flush the device's cache.  -1 when the
 * fdatasync that was to cover this round failed (the journal is then off).
 */
static int
journal_sync(struct journal *j)
{
	uint64_t mine, upto;
	int rc, e;

	pthread_mutex_lock(&j->lock);
	mine = ++j->written;
	while (j->syncing)
		pthread_cond_wait(&j->sync_cond, &j->lock);
	if (j->synced >= mine || j->broken) {
		rc = j->synced >= mine ? 0 : -1;
		pthread_mutex_unlock(&j->lock);
		return rc;
	}
	j->syncing = 1;
	upto = j->written;
	pthread_mutex_unlock(&j->lock);
	rc = fdatasync(j->fd);
	e = errno;
	pthread_mutex_lock(&j->lock);
	j->syncing = 0;
	if (rc == 0) {
		j->synced = upto;
	} else {
		/*
		 * Off before anyone waiting wakes: the failed fdatasync was to
		 * cover their records too, and a second one could say 0 for
		 * pages the first one lost.
		 */
		errno = e;
		journal_fail(j, "write");
	}
	pthread_cond_broadcast(&j->sync_cond);
	pthread_mutex_unlock(&j->lock);
	errno = e;
	return rc;
}

size_t
journal_write(struct journal *j, struct maildir_batch *const *bs, size_t n,
	      struct journal_round *rd)
{
	struct buf out = BUF_INIT;
	size_t starts[JOURNAL_ROUND_MAX], in = 0, ncopies = 0, cap = 0;
	dev_t *devs;
	const char **paths;
	struct half *h;
	off_t off;
	uint64_t gen;

	rd->half = -1;
	rd->checkpoint = -1;
	for (size_t i = 0; i < n; i++) {
		rd->off[i] = -1;
		cap += maildir_batch_ncopies(bs[i]);
	}
	if (j == NULL || j->broken || n == 0 || n > JOURNAL_ROUND_MAX)
		return 0;
	devs = xcalloc(cap ? cap : 1, sizeof(*devs));
	paths = xcalloc(cap ? cap : 1, sizeof(*paths));
	for (size_t i = 0; i < n; i++) {
		starts[i] = out.len;
		if (record_build(bs[i], &out, devs, paths, &ncopies) == 0) {
			rd->off[i] = 0;	/* for now: journaled */
			in++;
		}
	}
	if (in == 0)
		goto out;

	pthread_mutex_lock(&j->lock);
	h = &j->h[j->cur];
	if (h->live && (h->tail + (off_t)out.len > h->start + HDR_BLOCK + JOURNAL_HALF_SIZE
			|| (age_us(&h->first) >= CHECKPOINT_AGE_US && !j->h[1 - j->cur].live))) {
		int other = 1 - j->cur;

		/*
		 * Switch: the other half must be empty.  Full: wait for its
		 * checkpoint (run by the round that left it, which waits for
		 * nothing of ours: this round holds no half yet).
		 */
		while (j->h[other].live && !j->broken)
			pthread_cond_wait(&j->cond, &j->lock);
		rd->checkpoint = j->cur;
		j->cur = other;
		h = &j->h[other];
	}
	if (j->broken) {
		pthread_mutex_unlock(&j->lock);
		in = 0;
		goto out;
	}
	if (!h->live) {
		h->gen = ++j->gen;
		h->tail = h->start + HDR_BLOCK;
		gettimeofday(&h->first, NULL);
		if (header_write(j, j->cur, HALF_LIVE) < 0) {
			journal_fail(j, "write header of");
			pthread_mutex_unlock(&j->lock);
			in = 0;
			goto out;
		}
		h->live = 1;
	}
	gen = h->gen;
	off = h->tail;
	h->tail += (off_t)out.len;
	h->inflight++;
	gettimeofday(&h->last, NULL);
	for (size_t k = 0; k < ncopies; k++)
		half_add_dev(h, devs[k], paths[k]);
	rd->half = j->cur;
	pthread_mutex_unlock(&j->lock);

	/* Fill in the generation and checksums, then one write and one fdatasync. */
	for (size_t i = 0; i < n; i++) {
		unsigned char *p;
		size_t len;

		if (rd->off[i] < 0)
			continue;
		p = (unsigned char *)out.data + starts[i];
		len = get32(p + 4);
		put64(p + 8, gen);
		put32(p + 16, record_crc(p, len));
		rd->off[i] = off + (off_t)starts[i];
	}
	if (full_pwrite(j->fd, out.data, out.len, off) < 0 || journal_sync(j) < 0) {
		pthread_mutex_lock(&j->lock);
		journal_fail(j, "write");
		pthread_mutex_unlock(&j->lock);
		for (size_t i = 0; i < n; i++)
			rd->off[i] = -1;
		in = 0;		/* the caller fsyncs them all; the round still ends */
	}
out:
	if (in == 0)
		for (size_t i = 0; i < n; i++)
			rd->off[i] = -1;
	free(devs);
	free(paths);
	buf_free(&out);
	return in;
}

void
journal_cancel(struct journal *j, const struct journal_round *rd, size_t i)
{
	unsigned char magic[4];

	if (j == NULL || rd->half < 0 || rd->off[i] < 0)
		return;
	put32(magic, REC_CANCELLED);
	/* Not synced: a crash before the checkpoint makes a duplicate, never a loss. */
	if (full_pwrite(j->fd, magic, sizeof(magic), rd->off[i]) < 0)
		msg_warn("delivery journal %s: mark a record cancelled: %m", j->path);
}

void
journal_covered(struct journal *j, const struct journal_round *rd, size_t i,
		const struct maildir_batch *b)
{
	struct half *h;
	size_t n = maildir_batch_npending(b);

	if (j == NULL || rd->half < 0 || rd->off[i] < 0 || n == 0)
		return;
	pthread_mutex_lock(&j->lock);
	h = &j->h[rd->half];
	if (h->npend + n > h->cappend) {
		h->cappend = h->npend + n > 2 * h->cappend ? h->npend + n : 2 * h->cappend;
		h->pend = xrealloc(h->pend, h->cappend * sizeof(*h->pend));
	}
	for (size_t k = 0; k < n; k++)
		h->pend[h->npend++] = xstrdup(maildir_batch_pending(b, k));
	pthread_mutex_unlock(&j->lock);
}

void
journal_tick(struct journal *j)
{
	int old = -1;

	if (j == NULL)
		return;
	pthread_mutex_lock(&j->lock);
	if (!j->broken && j->h[j->cur].live && j->h[j->cur].inflight == 0
	    && !j->h[1 - j->cur].live && age_us(&j->h[j->cur].last) >= CHECKPOINT_IDLE_US) {
		/* As a round would switch: the next round starts the other half. */
		old = j->cur;
		j->cur = 1 - j->cur;
	}
	pthread_mutex_unlock(&j->lock);
	if (old >= 0)
		half_checkpoint(j, old);
}

void
journal_round_end(struct journal *j, struct journal_round *rd)
{
	if (j == NULL)
		return;
	if (rd->half >= 0) {
		pthread_mutex_lock(&j->lock);
		j->h[rd->half].inflight--;
		pthread_cond_broadcast(&j->cond);
		pthread_mutex_unlock(&j->lock);
	}
	if (rd->checkpoint >= 0)
		half_checkpoint(j, rd->checkpoint);
	rd->half = rd->checkpoint = -1;
}
