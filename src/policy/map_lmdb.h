/*
 * map_lmdb: the table type "lmdb" (NAME.lmdb as postfix-lmdb's postmap and
 * postalias write it).  map_lmdb.c's header states what it does;
 * policy/map_type.h is the contract it implements.
 */
#ifndef MXGATE_POLICY_MAP_LMDB_H
#define MXGATE_POLICY_MAP_LMDB_H

#include "policy/map_type.h"

extern const struct map_type map_type_lmdb;

/* Every entry of a lmdb table (maps.h: map_each()); 0, or -1 with *why_r. */
int map_lmdb_each(struct map_impl *mi, map_entry_fn *fn, void *ctx, char **why_r);

#endif
