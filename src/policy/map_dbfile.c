/*
 * map_dbfile: the lock, key forms and warnings that hash, btree and lmdb
 * share.  See map_dbfile.h for the contract.
 */
#include "policy/map_dbfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>

#include "log/log.h"
#include "util/xalloc.h"

/* The first wait between two tries, and the longest. */
#define MAPDB_LOCK_STEP_MIN_MS	1
#define MAPDB_LOCK_STEP_MAX_MS	50

/* One try: 0 locked, 1 held by another (try again), -1 error. */
static int mapdb_lock_try(int fd, enum mapdb_lock_style style, int type)
{
	if (style == MAPDB_LOCK_FLOCK) {
		if (flock(fd, type == F_UNLCK ? LOCK_UN : (LOCK_SH | LOCK_NB)) == 0)
			return 0;
	} else {
		struct flock fl;

		memset(&fl, 0, sizeof(fl));
		fl.l_type = (short)type;
		fl.l_whence = SEEK_SET;	/* l_start = l_len = 0: the whole file */
		if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
			return 0;
	}
	return errno == EWOULDBLOCK || errno == EAGAIN || errno == EACCES || errno == EINTR ? 1 : -1;
}

int mapdb_lock_shared(int fd, enum mapdb_lock_style style, const char *path)
{
	long waited = 0, step = MAPDB_LOCK_STEP_MIN_MS;

	for (;;) {
		struct timespec ts;
		int rc = mapdb_lock_try(fd, style, F_RDLCK);

		if (rc == 0)
			return 0;
		if (rc < 0) {
			msg_warn("%s: shared-lock database: %s", path, strerror(errno));
			return -1;
		}
		if (waited >= MAPDB_LOCK_WAIT_MS) {
			msg_warn("%s: shared-lock database: still locked after %d ms"
				 " (postmap rewriting it?)", path, MAPDB_LOCK_WAIT_MS);
			return -1;
		}
		ts.tv_sec = step / 1000;
		ts.tv_nsec = (step % 1000) * 1000000L;
		nanosleep(&ts, NULL);
		waited += step;
		if (step < MAPDB_LOCK_STEP_MAX_MS)
			step *= 2;
	}
}

void mapdb_unlock(int fd, enum mapdb_lock_style style, const char *path)
{
	if (mapdb_lock_try(fd, style, F_UNLCK) != 0)
		msg_warn("%s: unlock database: %s", path, strerror(errno));
}

/* One form of the key: 1 found, 0 not, -1 failed. */
static int mapdb_get_form(mapdb_get_fn *get, void *ctx, const char *key, size_t klen,
			  char **value_r)
{
	const void *val;
	size_t vlen;
	int rc = get(ctx, key, klen, &val, &vlen);

	if (rc == 1)
		*value_r = xstrndup(val, vlen);	/* stops at a NUL, as Postfix's SCOPY */
	return rc;
}

enum map_status mapdb_get_both(unsigned *try_flags, mapdb_get_fn *get, void *ctx,
			       const char *key, char **value_r)
{
	size_t klen = strlen(key);
	int rc;

	if (*try_flags & MAPDB_TRY1NULL) {
		rc = mapdb_get_form(get, ctx, key, klen + 1, value_r);
		if (rc < 0)
			return MAP_FAIL;
		if (rc == 1) {
			*try_flags &= ~(unsigned)MAPDB_TRY0NULL;
			return MAP_FOUND;
		}
	}
	if (*try_flags & MAPDB_TRY0NULL) {
		rc = mapdb_get_form(get, ctx, key, klen, value_r);
		if (rc < 0)
			return MAP_FAIL;
		if (rc == 1) {
			*try_flags &= ~(unsigned)MAPDB_TRY1NULL;
			return MAP_FOUND;
		}
	}
	return MAP_NOTFOUND;
}

void mapdb_warn_if_older(const char *db_path, const struct stat *db_st, const char *src_path)
{
	struct stat st;

	if (stat(src_path, &st) == 0 && st.st_mtime > db_st->st_mtime
	    && st.st_mtime < time(NULL) - 100)
		msg_warn("database %s is older than source file %s", db_path, src_path);
}

int mapdb_stat_differs(const struct stat *a, const struct stat *b)
{
	return a->st_dev != b->st_dev || a->st_ino != b->st_ino || a->st_size != b->st_size
	       || a->st_mtim.tv_sec != b->st_mtim.tv_sec
	       || a->st_mtim.tv_nsec != b->st_mtim.tv_nsec
	       || a->st_ctim.tv_sec != b->st_ctim.tv_sec
	       || a->st_ctim.tv_nsec != b->st_ctim.tv_nsec;
}
