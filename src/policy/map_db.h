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

#endif
