/*
 * map_pool: the bounded pool of connections that a remote table type
 * (MAPT_REMOTE: map_pgsql.c, map_ldap.c) keeps per open table, and the one
 * place that logs the table's outage and its recovery.
 *
 * Contract:
 *
 *   map_pool_create(table, ops, ctx, wait_s, idle_s)
 *       table ("pgsql:/etc/postfix/x.cf") names the table in log lines and
 *       is copied.  ops->connect(ctx, &why) opens one connection (the type
 *       chooses the server) or returns NULL with *why malloc'd;
 *       ops->disconnect(ctx, conn) closes and frees one.  ctx outlives the
 *       pool.  At most MAP_POOL_CAP connections are open at once.
 *
 *   map_pool_get(pool, &why_r)
 *       A connection for this thread alone: an idle one (the most recently
 *       used; ones idle longer than idle_s are closed first), else a new
 *       one while fewer than MAP_POOL_CAP are open, else it waits for one
 *       to be put back, at most wait_s seconds.  NULL with *why_r
 *       (malloc'd) when connect failed or the wait timed out.  The connect
 *       runs without the pool's lock, so a slow server never blocks a
 *       lookup that finds an idle connection.
 *
 *   map_pool_put(pool, conn, broken)
 *       Gives it back.  broken: the connection failed (I/O error, timeout,
 *       server gone); it is closed, and so is every idle one, since a
 *       server that dropped one (a restart) has dropped them all: the next
 *       get connects afresh.
 *
 *   map_pool_outcome(pool, answered, why)
 *       The type says how a lookup ended.  !answered (the lookup is a
 *       MAP_FAIL because the server could not be used; why says how): the
 *       first such lookup after an answer logs
 *         warning: TABLE: server unavailable: WHY; lookups fail until it answers
 *       and the following ones log nothing.  answered: after an outage,
 *       logs once "TABLE: server answers again".  Never per lookup.
 *
 *   map_pool_free(&pool)  closes every connection; none may be out.
 *
 * Threads: every function may be called from any number of threads at once.
 */
#ifndef MXGATE_POLICY_MAP_POOL_H
#define MXGATE_POLICY_MAP_POOL_H

#include <stdbool.h>

#include "policy/map_type.h"

/* Connections per table: maps.c lets no more lookups of one remote table run at once. */
#define MAP_POOL_CAP	MAP_REMOTE_CONCURRENCY

struct map_pool;

struct map_pool_ops {
	void   *(*connect)(void *ctx, char **why_r);
	void	(*disconnect)(void *ctx, void *conn);
};

struct map_pool *map_pool_create(const char *table, const struct map_pool_ops *ops, void *ctx,
				 int wait_s, int idle_s);
void   *map_pool_get(struct map_pool *pool, char **why_r);
void	map_pool_put(struct map_pool *pool, void *conn, bool broken);
void	map_pool_outcome(struct map_pool *pool, bool answered, const char *why);
void	map_pool_free(struct map_pool **poolp);

#endif
