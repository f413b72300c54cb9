/*
 * map_dbfile: what the indexed file types that postmap(1) writes in place
 * (hash and btree in map_db.c, lmdb in map_lmdb.c) share: the lock that
 * keeps a lookup out of a file that postmap is rewriting, the two key forms,
 * and Postfix's "older than source file" warning.
 *
 * Locks.  postmap takes an exclusive lock on NAME.db (flock(2) on Linux,
 * Postfix's INTERNAL_LOCK) while it truncates and rewrites the file, and a
 * Postfix reader takes a shared one around each lookup; lmdb uses fcntl(2)
 * locks instead.  mapdb_lock_shared() takes the shared lock of the style
 * given, waiting at most MAPDB_LOCK_WAIT_MS (Postfix waits forever): a
 * lookup that cannot get it in time is a MAP_FAIL, never a NOTFOUND.  The
 * fcntl style uses open file description locks (F_OFD_SETLK), which conflict
 * with postmap's classic fcntl locks but belong to the descriptor, not to the
 * process: closing another descriptor of the same file does not drop them.
 * Both styles belong to a descriptor that every thread shares, so the caller
 * serializes lock, lookup and unlock (one mutex per table).
 *
 * Key forms.  postmap writes "key\0" -> "value\0" by default and, under -N,
 * "key" -> "value".  mapdb_get_both() tries the key with its NUL first, then
 * without, and, like Postfix's DICT_FLAG_TRY1NULL / TRY0NULL, keeps to the
 * form it found first for the table's later lookups.  A value ends at its
 * first NUL (Postfix copies it as a C string).
 */
#ifndef MXGATE_POLICY_MAP_DBFILE_H
#define MXGATE_POLICY_MAP_DBFILE_H

#include <stddef.h>
#include <sys/stat.h>

#include "policy/maps.h"

/* How long a lookup waits for postmap to finish rewriting the file. */
#define MAPDB_LOCK_WAIT_MS	10000

enum mapdb_lock_style {
	MAPDB_LOCK_FLOCK,	/* hash, btree: flock(2) */
	MAPDB_LOCK_FCNTL,	/* lmdb: fcntl(2) record lock on the whole file */
};

/*
 * Take a shared lock on fd, waiting at most MAPDB_LOCK_WAIT_MS.  0, or -1
 * with a warning logged that names path and why ("timed out ..." or the
 * system error).
 */
int mapdb_lock_shared(int fd, enum mapdb_lock_style style, const char *path);

/* Release the lock taken by mapdb_lock_shared() (an error is only logged). */
void mapdb_unlock(int fd, enum mapdb_lock_style style, const char *path);

/* The key forms still tried (start with both, as Postfix does). */
#define MAPDB_TRY1NULL	0x01
#define MAPDB_TRY0NULL	0x02

/*
 * One lookup of exactly klen bytes of key: 1 found (*val_r, *vlen_r point
 * into the type's memory, valid until the next call), 0 not there, -1 the
 * table could not answer (the callback has logged why).
 */
typedef int mapdb_get_fn(void *ctx, const char *key, size_t klen, const void **val_r,
			 size_t *vlen_r);

/*
 * Look key up in both forms (see above), updating *try_flags.  MAP_FOUND
 * with *value_r malloc'd, MAP_NOTFOUND, or MAP_FAIL when get() failed.
 */
enum map_status mapdb_get_both(unsigned *try_flags, mapdb_get_fn *get, void *ctx,
			       const char *key, char **value_r);

/*
 * Postfix's warning at open when the source file (the table's name without
 * its suffix) is newer than the indexed file db_st, unless it changed in the
 * last 100 seconds: "database X.db is older than source file X".
 */
void mapdb_warn_if_older(const char *db_path, const struct stat *db_st, const char *src_path);

/* True when st_a and st_b are not the same file in the same state. */
int mapdb_stat_differs(const struct stat *st_a, const struct stat *st_b);

#endif
