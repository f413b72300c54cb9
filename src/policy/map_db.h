/*
 * map_db: the table types "hash" and "btree" (Berkeley DB files NAME.db as
 * postmap and postalias write them).  map_db.c's header states what they do;
 * policy/map_type.h is the contract they implement.
 */
#ifndef MXGATE_POLICY_MAP_DB_H
#define MXGATE_POLICY_MAP_DB_H

#include "policy/map_type.h"

extern const struct map_type map_type_hash;
extern const struct map_type map_type_btree;

/* Every entry of a hash and btree table (maps.h: map_each()); 0, or -1 with *why_r. */
int map_db_each(struct map_impl *mi, map_entry_fn *fn, void *ctx, char **why_r);

#endif
