/*
 * map_type: one table type ("hash", "pcre", "mysql", ...) as maps.c sees it.
 * maps.c owns the spec: it strips "proxy:", splits "type:name", finds the
 * type in its registry (maps.c: map_types[]), folds the key to lowercase
 * unless the type says MAPT_NOFOLD, logs a MAP_FAIL as Postfix's "lookup
 * error" warning, and watches an indexed type's file for map_changed().
 * The type does the rest.
 *
 * Contract for an implementation:
 *   open()    name is the text after "type:" (for "hash:/etc/aliases",
 *             "/etc/aliases").  Returns the type's state, or NULL with *why_r
 *             set (malloc'd) to a reason that does not repeat the spec:
 *             maps.c prefixes it ("hash:/etc/aliases: open database
 *             \"/etc/aliases.db\": No such file or directory").  A warning
 *             about the file (a bad line that Postfix skips) is logged here
 *             with msg_warn(), "<file>, line N: ...", as Postfix words it.
 *   lookup()  key is folded already unless MAPT_NOFOLD.  MAP_FOUND: *value_r
 *             is malloc'd (value_r is never NULL).  MAP_NOTFOUND: *value_r
 *             untouched.  MAP_FAIL: the table could not answer (I/O error,
 *             server down, timeout); the caller tempfails, so never return
 *             MAP_NOTFOUND for a table that did not answer.  Called from
 *             many threads at once: an implementation locks what it shares.
 *             It may block (file pages, a server), but only for a bounded
 *             time (a remote type's own timeout), and never on a loop: maps
 *             are looked up on the lookups pool (policy/restrict.h: restrict_start()).
 *   watch()   MAPT_INDEXED only: the file that postmap replaces, and its
 *             fstat() when open() opened it (so that a rebuild between the
 *             open and the check is still seen).  NULL otherwise.
 *   close()   frees everything; no lookup runs by then.
 *   probe()   optional (NULL: nothing to check beyond open()).  For a remote
 *             type: connect (and log in) to every configured server now,
 *             within the type's timeouts; 0, or -1 with *why_r naming the
 *             server and the error.  Only `mxgate check` calls it: the
 *             daemon starts with its servers down, as Postfix does, and
 *             tempfails lookups until they answer.
 *
 * A MAPT_REMOTE table gets at most MAP_REMOTE_CONCURRENCY lookups at once
 * from maps.c (a lookup waits up to MAP_REMOTE_QUEUE_WAIT seconds for its
 * turn, then fails), so a type's own pool of connections need not be larger;
 * and lookups that involve a remote table run on a pool of their own
 * (policy/restrict.h: restrict_start()), so a slow server never holds up file tables.
 */
#ifndef MXGATE_POLICY_MAP_TYPE_H
#define MXGATE_POLICY_MAP_TYPE_H

#include <sys/stat.h>

#include "policy/maps.h"

struct map_impl;		/* the type's own state */

#define MAP_REMOTE_CONCURRENCY	4	/* lookups of one remote table at once */
#define MAP_REMOTE_QUEUE_WAIT	10	/* seconds a lookup waits for its turn */

#define MAPT_INDEXED	0x01	/* a file that postmap rebuilds: watch() */
#define MAPT_IN_MEMORY	0x02	/* a lookup never blocks: answered on the loop */
#define MAPT_NOFOLD	0x04	/* the key as the caller gave it (regexp, pcre) */
#define MAPT_PATTERN	0x08	/* matched against the whole string, once (regexp, pcre, cidr) */
#define MAPT_REMOTE	0x10	/* a server answers: its own cap on concurrent lookups */

struct map_type {
	const char *name;
	unsigned flags;
	struct map_impl *(*open)(const char *name, char **why_r);
	enum map_status (*lookup)(struct map_impl *mi, const char *key, char **value_r);
	const char *(*watch)(const struct map_impl *mi, struct stat *st_r);
	void	(*close)(struct map_impl *mi);
	int	(*probe)(struct map_impl *mi, char **why_r);
};

#endif
