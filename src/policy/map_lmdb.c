/*
 * map_lmdb: the table type "lmdb:NAME", read from NAME.lmdb as postmap(1)
 * and postalias(1) (postfix-lmdb) write it, the way Postfix 3.7's dict_lmdb
 * reads it.
 *
 *   open     NAME.lmdb as one file (MDB_NOSUBDIR), read-only, without
 *            LMDB's lock file (MDB_NOLOCK: Postfix locks the file itself).
 *            Errors as Postfix words them: "open database NAME.lmdb: No such
 *            file or directory", "... MDB_INVALID: File is not an LMDB file".
 *   lookup   a read-only transaction per lookup, under a shared fcntl(2)
 *            lock on NAME.lmdb (map_dbfile.h; postmap updates the file in
 *            one transaction, so a lookup sees the old table or the new one).
 *            Both key forms (with and without the trailing NUL).  A file that
 *            postmap has grown past our memory map (MDB_MAP_RESIZED) is
 *            mapped again and the lookup retried, as Postfix's slmdb does.
 *   threads  one environment per table, used under the table's mutex.
 */
#include "policy/map_lmdb.h"

#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log/log.h"
#include "policy/map_dbfile.h"
#include "util/xalloc.h"

/* Postfix's lmdb_map_size default: the map a reader starts with. */
#define MAPLMDB_MAP_SIZE	(16 * 1024 * 1024)

/* Times a lookup maps a grown file again before it gives up. */
#define MAPLMDB_RESIZE_RETRIES	2

struct map_impl {
	char *src_path;		/* NAME */
	char *db_path;		/* NAME.lmdb */
	pthread_mutex_t mutex;	/* everything below */
	MDB_env *env;
	MDB_dbi dbi;
	int fd;			/* LMDB's descriptor of the file: the lock */
	struct stat open_st;	/* the file at open (watch) */
	unsigned try_flags;	/* MAPDB_TRY1NULL | MAPDB_TRY0NULL */
	MDB_txn *txn;		/* during a lookup */
};

static void maplmdb_free(struct map_impl *mi)
{
	if (mi->env != NULL)
		mdb_env_close(mi->env);
	pthread_mutex_destroy(&mi->mutex);
	free(mi->src_path);
	free(mi->db_path);
	free(mi);
}

/* A read transaction; a file grown past the map is mapped again. */
static int maplmdb_txn_begin(struct map_impl *mi, MDB_txn **txn_r)
{
	int rc;

	for (int i = 0;; i++) {
		rc = mdb_txn_begin(mi->env, NULL, MDB_RDONLY, txn_r);
		if (rc != MDB_MAP_RESIZED || i >= MAPLMDB_RESIZE_RETRIES)
			return rc;
		if ((rc = mdb_env_set_mapsize(mi->env, 0)) != 0)
			return rc;
	}
}

static struct map_impl *maplmdb_open(const char *name, char **why_r)
{
	struct map_impl *mi = xcalloc(1, sizeof(*mi));
	MDB_txn *txn = NULL;
	int rc;

	mi->src_path = xstrdup(name);
	mi->db_path = xasprintf("%s.lmdb", name);
	mi->try_flags = MAPDB_TRY1NULL | MAPDB_TRY0NULL;
	pthread_mutex_init(&mi->mutex, NULL);
	if ((rc = mdb_env_create(&mi->env)) != 0
	    || (rc = mdb_env_set_mapsize(mi->env, MAPLMDB_MAP_SIZE)) != 0
	    || (rc = mdb_env_open(mi->env, mi->db_path, MDB_NOSUBDIR | MDB_NOLOCK | MDB_RDONLY,
				  0644)) != 0
	    || (rc = maplmdb_txn_begin(mi, &txn)) != 0
	    || (rc = mdb_dbi_open(txn, NULL, 0, &mi->dbi)) != 0
	    || (rc = mdb_txn_commit(txn)) != 0) {
		if (txn != NULL && rc != 0)
			mdb_txn_abort(txn);
		*why_r = xasprintf("open database %s: %s", mi->db_path, mdb_strerror(rc));
		maplmdb_free(mi);
		return NULL;
	}
	if ((rc = mdb_env_get_fd(mi->env, &mi->fd)) != 0 || fstat(mi->fd, &mi->open_st) < 0) {
		*why_r = xasprintf("fstat %s: %s", mi->db_path,
				   rc ? mdb_strerror(rc) : strerror(errno));
		maplmdb_free(mi);
		return NULL;
	}
	mapdb_warn_if_older(mi->db_path, &mi->open_st, mi->src_path);
	return mi;
}

static int maplmdb_get(void *ctx, const char *key, size_t klen, const void **val_r,
		       size_t *vlen_r)
{
	struct map_impl *mi = ctx;
	MDB_val k = { .mv_size = klen, .mv_data = (void *)key }, v;
	int rc = mdb_get(mi->txn, mi->dbi, &k, &v);

	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0) {
		msg_warn("error reading lmdb:%s: %s", mi->src_path, mdb_strerror(rc));
		return -1;
	}
	*val_r = v.mv_data;
	*vlen_r = v.mv_size;
	return 1;
}

static enum map_status maplmdb_lookup(struct map_impl *mi, const char *key, char **value_r)
{
	enum map_status st = MAP_FAIL;
	int rc;

	pthread_mutex_lock(&mi->mutex);
	if (mapdb_lock_shared(mi->fd, MAPDB_LOCK_FCNTL, mi->db_path) < 0) {
		pthread_mutex_unlock(&mi->mutex);
		return MAP_FAIL;
	}
	if ((rc = maplmdb_txn_begin(mi, &mi->txn)) != 0) {
		msg_warn("error reading lmdb:%s: %s", mi->src_path, mdb_strerror(rc));
	} else {
		st = mapdb_get_both(&mi->try_flags, maplmdb_get, mi, key, value_r);
		mdb_txn_abort(mi->txn);
		mi->txn = NULL;
	}
	mapdb_unlock(mi->fd, MAPDB_LOCK_FCNTL, mi->db_path);
	pthread_mutex_unlock(&mi->mutex);
	return st;
}

int map_lmdb_each(struct map_impl *mi, map_entry_fn *fn, void *ctx, char **why_r)
{
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	int rc;

	pthread_mutex_lock(&mi->mutex);
	if (mapdb_lock_shared(mi->fd, MAPDB_LOCK_FCNTL, mi->db_path) < 0) {
		pthread_mutex_unlock(&mi->mutex);
		*why_r = xasprintf("cannot lock %s", mi->db_path);
		return -1;
	}
	if ((rc = maplmdb_txn_begin(mi, &txn)) == 0
	    && (rc = mdb_cursor_open(txn, mi->dbi, &cur)) == 0) {
		while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
			size_t kl = k.mv_size, vl = v.mv_size;
			char *ks, *vs;

			if (kl > 0 && ((char *)k.mv_data)[kl - 1] == '\0')
				kl--;
			if (vl > 0 && ((char *)v.mv_data)[vl - 1] == '\0')
				vl--;
			ks = xstrndup(k.mv_data, kl);
			vs = xstrndup(v.mv_data, vl);
			fn(ctx, ks, vs);
			free(ks);
			free(vs);
		}
		if (rc == MDB_NOTFOUND)
			rc = 0;
		mdb_cursor_close(cur);
	}
	if (txn != NULL)
		mdb_txn_abort(txn);
	mapdb_unlock(mi->fd, MAPDB_LOCK_FCNTL, mi->db_path);
	pthread_mutex_unlock(&mi->mutex);
	if (rc != 0) {
		*why_r = xasprintf("error reading lmdb:%s: %s", mi->src_path, mdb_strerror(rc));
		return -1;
	}
	return 0;
}

static const char *maplmdb_watch(const struct map_impl *mi, struct stat *st_r)
{
	*st_r = mi->open_st;
	return mi->db_path;
}

const struct map_type map_type_lmdb = {
	.name = "lmdb",
	.flags = MAPT_INDEXED,
	.open = maplmdb_open,
	.lookup = maplmdb_lookup,
	.watch = maplmdb_watch,
	.close = maplmdb_free,
};
