/*
 * map_db: the Berkeley DB tables "hash:NAME" and "btree:NAME", read from
 * NAME.db as postmap(1) and postalias(1) write it (libdb5.3), the way
 * Postfix 3.7's dict_db reads it.
 *
 *   open     NAME.db, read-only, in a private Berkeley DB environment whose
 *            home is the file's directory (so a DB_CONFIG file there applies,
 *            as in Postfix), under a shared lock.  Errors as Postfix words
 *            them: "open database NAME.db: No such file or directory"; a file
 *            Berkeley DB refuses ("Invalid argument") also gets Berkeley DB's
 *            own reason in parentheses.  "database NAME.db is older than
 *            source file NAME" is a warning, as in Postfix.
 *   lookup   under a shared flock(2) on NAME.db (map_dbfile.h: postmap holds
 *            an exclusive one while it truncates and rewrites the file, so no
 *            lookup sees half a table; the wait is bounded, then MAP_FAIL).
 *            Both key forms (with and without the trailing NUL).
 *            postmap rewrites NAME.db in place: a handle opened before the
 *            rewrite has stale pages in its cache.  So each lookup, holding
 *            the lock, compares the file with the one the handle read and
 *            opens it again when it changed (or when NAME.db is now another
 *            file): an answer is always from one whole table, the old or the
 *            new.  maps.c notices the change too (watch()) and reopens the
 *            whole table, as Postfix's daemons restart.
 *   threads  one Berkeley DB handle per table, used under the table's mutex
 *            (the lock descriptor is shared as well).
 */
#include "policy/map_db.h"

#include <db.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log/log.h"
#include "policy/map_dbfile.h"
#include "util/xalloc.h"

/* Postfix's DICT_DB_NELM (hash tables) and its read cache (db_read_buf, 128k). */
#define MAPDB_HASH_NELM		4096
#define MAPDB_READ_CACHE	(128 * 1024)

/* Longest Berkeley DB message kept for the reason of an open error. */
#define MAPDB_ERRMSG_MAX	200

struct map_impl {
	const char *type;	/* "hash" or "btree" */
	DBTYPE dbtype;
	char *src_path;		/* NAME */
	char *db_path;		/* NAME.db */
	pthread_mutex_t mutex;	/* everything below */
	int lock_fd;		/* NAME.db, for the shared lock; -1 if none */
	DB_ENV *env;
	DB *db;
	struct stat db_st;	/* the file as db read it (stale check) */
	struct stat open_st;	/* the file at open (watch) */
	unsigned try_flags;	/* MAPDB_TRY1NULL | MAPDB_TRY0NULL */
	char errmsg[MAPDB_ERRMSG_MAX];	/* Berkeley DB's last message */
};

/* Berkeley DB's messages go here instead of stderr. */
static void mapdb_errcall(const DB_ENV *env, const char *pfx, const char *msg)
{
	struct map_impl *mi = env->app_private;

	(void)pfx;
	snprintf(mi->errmsg, sizeof(mi->errmsg), "%s", msg);
}

static void mapdb_close_db(struct map_impl *mi)
{
	if (mi->db != NULL)
		mi->db->close(mi->db, 0);
	if (mi->env != NULL)
		mi->env->close(mi->env, 0);
	mi->db = NULL;
	mi->env = NULL;
}

/* "No such file or directory", or Berkeley DB's own code's text. */
static const char *mapdb_strerror(int err)
{
	return db_strerror(err);
}

/*
 * Open the database handle (the caller holds the shared lock if the file
 * exists).  0, or -1 with *why_r set.
 */
static int mapdb_open_db(struct map_impl *mi, char **why_r)
{
	char *home = xstrdup(mi->db_path), *slash = strrchr(home, '/');
	const char *base = slash ? slash + 1 : mi->db_path;
	u_int32_t gbytes, bytes;
	int ncache, err;

	if (slash == home)
		home[1] = '\0';
	else if (slash != NULL)
		*slash = '\0';
	else
		strcpy(home, ".");
	mi->errmsg[0] = '\0';
	if ((err = db_env_create(&mi->env, 0)) != 0) {
		*why_r = xasprintf("create DB environment: %s", mapdb_strerror(err));
		goto fail;
	}
	mi->env->app_private = mi;
	mi->env->set_errcall(mi->env, mapdb_errcall);
	if (mi->env->get_cachesize(mi->env, &gbytes, &bytes, &ncache) == 0 && gbytes == 0
	    && bytes < MAPDB_READ_CACHE) {
		(void)mi->env->set_cache_max(mi->env, 0, MAPDB_READ_CACHE);
		(void)mi->env->set_cachesize(mi->env, 0, MAPDB_READ_CACHE, ncache);
	}
	if ((err = mi->env->open(mi->env, home, DB_INIT_MPOOL | DB_CREATE | DB_PRIVATE, 0)) != 0) {
		*why_r = xasprintf("open DB environment: %s", mapdb_strerror(err));
		goto fail;
	}
	if ((err = db_create(&mi->db, mi->env, 0)) != 0) {
		*why_r = xasprintf("create DB database: %s", mapdb_strerror(err));
		goto fail;
	}
	if (mi->dbtype == DB_HASH)
		(void)mi->db->set_h_nelem(mi->db, MAPDB_HASH_NELM);
	if ((err = mi->db->open(mi->db, NULL, base, NULL, mi->dbtype, DB_RDONLY, 0644)) != 0) {
		*why_r = xasprintf("open database %s: %s%s%s%s", mi->db_path, mapdb_strerror(err),
				   mi->errmsg[0] ? " (" : "", mi->errmsg, mi->errmsg[0] ? ")" : "");
		goto fail;
	}
	free(home);
	return 0;
fail:
	mapdb_close_db(mi);
	free(home);
	return -1;
}

static void mapdb_free(struct map_impl *mi)
{
	mapdb_close_db(mi);
	if (mi->lock_fd >= 0)
		close(mi->lock_fd);
	pthread_mutex_destroy(&mi->mutex);
	free(mi->src_path);
	free(mi->db_path);
	free(mi);
}

static struct map_impl *mapdb_open(const char *type, DBTYPE dbtype, const char *name,
				   char **why_r)
{
	struct map_impl *mi = xcalloc(1, sizeof(*mi));
	int major, minor;

	(void)db_version(&major, &minor, NULL);
	if (major != DB_VERSION_MAJOR || minor != DB_VERSION_MINOR) {
		*why_r = xasprintf("incorrect version of Berkeley DB: compiled against %d.%d.%d,"
				   " run-time linked against %d.%d", DB_VERSION_MAJOR,
				   DB_VERSION_MINOR, DB_VERSION_PATCH, major, minor);
		free(mi);
		return NULL;
	}
	mi->type = type;
	mi->dbtype = dbtype;
	mi->src_path = xstrdup(name);
	mi->db_path = xasprintf("%s.db", name);
	mi->try_flags = MAPDB_TRY1NULL | MAPDB_TRY0NULL;
	pthread_mutex_init(&mi->mutex, NULL);
	mi->lock_fd = open(mi->db_path, O_RDONLY | O_CLOEXEC);
	if (mi->lock_fd < 0) {
		*why_r = xasprintf("open database %s: %s", mi->db_path, strerror(errno));
		mapdb_free(mi);
		return NULL;
	}
	if (mapdb_lock_shared(mi->lock_fd, MAPDB_LOCK_FLOCK, mi->db_path) < 0) {
		*why_r = xasprintf("shared-lock database %s for open: not available", mi->db_path);
		mapdb_free(mi);
		return NULL;
	}
	if (mapdb_open_db(mi, why_r) < 0 || fstat(mi->lock_fd, &mi->db_st) < 0) {
		if (*why_r == NULL)
			*why_r = xasprintf("fstat %s: %s", mi->db_path, strerror(errno));
		mapdb_unlock(mi->lock_fd, MAPDB_LOCK_FLOCK, mi->db_path);
		mapdb_free(mi);
		return NULL;
	}
	mapdb_unlock(mi->lock_fd, MAPDB_LOCK_FLOCK, mi->db_path);
	mi->open_st = mi->db_st;
	mapdb_warn_if_older(mi->db_path, &mi->db_st, mi->src_path);
	return mi;
}

/*
 * Holding the mutex: take the shared lock on the file that NAME.db names now
 * and make sure the handle reads that file as it is.  0 (locked), or -1
 * (not locked, warning logged).
 */
static int mapdb_lock_current(struct map_impl *mi)
{
	struct stat path_st, fd_st;
	char *why = NULL;

	if (stat(mi->db_path, &path_st) == 0 && (path_st.st_ino != mi->db_st.st_ino
						 || path_st.st_dev != mi->db_st.st_dev)) {
		/* NAME.db is another file now: lock that one. */
		int fd = open(mi->db_path, O_RDONLY | O_CLOEXEC);

		if (fd >= 0) {
			close(mi->lock_fd);
			mi->lock_fd = fd;
		}
	}
	if (mapdb_lock_shared(mi->lock_fd, MAPDB_LOCK_FLOCK, mi->db_path) < 0)
		return -1;
	if (fstat(mi->lock_fd, &fd_st) < 0) {
		msg_warn("fstat %s: %s", mi->db_path, strerror(errno));
		goto fail;
	}
	if (mi->db != NULL && !mapdb_stat_differs(&fd_st, &mi->db_st))
		return 0;
	/* postmap has rewritten it since the handle read it. */
	mapdb_close_db(mi);
	if (mapdb_open_db(mi, &why) < 0) {
		msg_warn("%s:%s: %s", mi->type, mi->src_path, why);
		free(why);
		goto fail;
	}
	mi->db_st = fd_st;
	mi->try_flags = MAPDB_TRY1NULL | MAPDB_TRY0NULL;
	return 0;
fail:
	mapdb_unlock(mi->lock_fd, MAPDB_LOCK_FLOCK, mi->db_path);
	return -1;
}

static int mapdb_get(void *ctx, const char *key, size_t klen, const void **val_r,
		     size_t *vlen_r)
{
	struct map_impl *mi = ctx;
	DBT k, v;
	int err;

	memset(&k, 0, sizeof(k));
	memset(&v, 0, sizeof(v));
	k.data = (void *)key;
	k.size = (u_int32_t)klen;
	err = mi->db->get(mi->db, NULL, &k, &v, 0);
	if (err == DB_NOTFOUND)
		return 0;
	if (err != 0) {
		msg_warn("error reading %s: %s", mi->db_path,
			 err == DB_KEYEMPTY ? strerror(EINVAL) : mapdb_strerror(err));
		return -1;
	}
	*val_r = v.data;
	*vlen_r = v.size;
	return 1;
}

static enum map_status mapdb_lookup(struct map_impl *mi, const char *key, char **value_r)
{
	enum map_status st;

	if (strlen(key) >= UINT32_MAX)
		return MAP_NOTFOUND;
	pthread_mutex_lock(&mi->mutex);
	if (mapdb_lock_current(mi) < 0) {
		pthread_mutex_unlock(&mi->mutex);
		return MAP_FAIL;
	}
	st = mapdb_get_both(&mi->try_flags, mapdb_get, mi, key, value_r);
	mapdb_unlock(mi->lock_fd, MAPDB_LOCK_FLOCK, mi->db_path);
	pthread_mutex_unlock(&mi->mutex);
	return st;
}

int map_db_each(struct map_impl *mi, map_entry_fn *fn, void *ctx, char **why_r)
{
	DBC *cur = NULL;
	DBT k, v;
	int err = 0;

	pthread_mutex_lock(&mi->mutex);
	if (mapdb_lock_current(mi) < 0) {
		pthread_mutex_unlock(&mi->mutex);
		*why_r = xasprintf("cannot lock %s", mi->db_path);
		return -1;
	}
	if ((err = mi->db->cursor(mi->db, NULL, &cur, 0)) == 0) {
		memset(&k, 0, sizeof(k));
		memset(&v, 0, sizeof(v));
		while ((err = cur->c_get(cur, &k, &v, DB_NEXT)) == 0) {
			size_t kl = k.size, vl = v.size;
			char *ks, *vs;

			if (kl > 0 && ((char *)k.data)[kl - 1] == '\0')
				kl--;
			if (vl > 0 && ((char *)v.data)[vl - 1] == '\0')
				vl--;
			ks = xstrndup(k.data, kl);
			vs = xstrndup(v.data, vl);
			fn(ctx, ks, vs);
			free(ks);
			free(vs);
		}
		cur->c_close(cur);
		if (err == DB_NOTFOUND)
			err = 0;
	}
	mapdb_unlock(mi->lock_fd, MAPDB_LOCK_FLOCK, mi->db_path);
	pthread_mutex_unlock(&mi->mutex);
	if (err != 0) {
		*why_r = xasprintf("error reading %s: %s", mi->db_path, mapdb_strerror(err));
		return -1;
	}
	return 0;
}

static const char *mapdb_watch(const struct map_impl *mi, struct stat *st_r)
{
	*st_r = mi->open_st;
	return mi->db_path;
}

static struct map_impl *mapdb_hash_open(const char *name, char **why_r)
{
	return mapdb_open("hash", DB_HASH, name, why_r);
}

static struct map_impl *mapdb_btree_open(const char *name, char **why_r)
{
	return mapdb_open("btree", DB_BTREE, name, why_r);
}

const struct map_type map_type_hash = {
	.name = "hash",
	.flags = MAPT_INDEXED,
	.open = mapdb_hash_open,
	.lookup = mapdb_lookup,
	.watch = mapdb_watch,
	.close = mapdb_free,
};

const struct map_type map_type_btree = {
	.name = "btree",
	.flags = MAPT_INDEXED,
	.open = mapdb_btree_open,
	.lookup = mapdb_lookup,
	.watch = mapdb_watch,
	.close = mapdb_free,
};
