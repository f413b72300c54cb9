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
 */
#ifndef MXGATE_POLICY_MAP_REMOTE_H
#define MXGATE_POLICY_MAP_REMOTE_H

#include "policy/map_type.h"

extern const struct map_type map_type_pgsql;
extern const struct map_type map_type_ldap;

#endif
