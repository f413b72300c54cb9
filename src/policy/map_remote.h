/*
 * map_remote: the table types that ask a server and live in files of their
 * own (policy/map_type.h; maps.c lists them in map_types[]).
 *
 *   map_type_pgsql   map_pgsql.c: pgsql_table(5), through libpq
 *   map_type_ldap    map_ldap.c: ldap_table(5), through libldap
 *
 * Both are MAPT_REMOTE: each open table keeps a bounded pool of connections
 * (policy/map_pool.h), a lookup waits a bounded time, and a server that does
 * not answer makes the lookup MAP_FAIL (the caller tempfails).
 *
 * map_remote_key_ok(table, key)
 *     false, having logged "TABLE: non-UTF-8 key ..." as Postfix does, when
 *     key is not well-formed UTF-8: the type then answers MAP_NOTFOUND
 *     without asking its server (which may refuse such a query: a lookup
 *     error, and a server marked down, for one client's bad address).
 */
#ifndef MXGATE_POLICY_MAP_REMOTE_H
#define MXGATE_POLICY_MAP_REMOTE_H

#include <stdbool.h>

#include "policy/map_type.h"

extern const struct map_type map_type_pgsql;
extern const struct map_type map_type_ldap;

bool	map_remote_key_ok(const char *table, const char *key);

#endif
