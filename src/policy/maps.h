/*
 * maps: Postfix-style lookup tables ("type:name"), read-only.
 *
 * Supported types, as a Postfix admin writes them in main.cf:
 *
 *   texthash:/path       the text file itself, read once at open: "key value"
 *                        per line, '#' comments and blank lines skipped, a
 *                        line starting with whitespace continues the previous
 *                        one.  Keys are folded to lowercase; a duplicate key
 *                        is warned about and the first entry wins (postmap).
 *   cdb:/path            tinycdb file /path.cdb as built by "postmap cdb:/path"
 *                        (keys without a trailing NUL) or "postmap -N" (with
 *                        one); both are tried.  The file is mmap'd at open.
 *   unix:passwd.byname   getpwnam_r(3); the value is the passwd entry as
 *                        "name:passwd:uid:gid:gecos:dir:shell".
 *   static:value         every key is found, with that value; also
 *                        static:{value with spaces}.
 *   inline:{k=v, k2=v2}  a small table in the spec itself; an element with
 *                        spaces or commas is written { key = value }.
 *
 * The other types live in files of their own behind policy/map_type.h
 * (maps.c: map_types[] lists them).
 *
 * "proxy:" in front of a spec is accepted and ignored (mxgate has no
 * proxymap(8)).  Every other type is refused at open with a message that
 * names the type and the spec.
 *
 * Lookups fold the key to lowercase, as Postfix does for these tables.
 *
 * Threads: a map never changes after map_open(); map_lookup() and
 * maplist_lookup() may be called from any number of threads at once.
 * map_free() must not race with lookups.
 *
 * Files are read when the map is opened.  A table rebuilt afterwards (postmap
 * renames a new .cdb into place; an edited texthash file) is not seen until
 * the map is opened again.  For indexed tables (cdb) map_changed() tells
 * the caller when to do that, as Postfix's daemons notice that an indexed
 * table changed and restart; a text table (texthash) changes at a reload,
 * as in Postfix.
 */
#ifndef MXGATE_POLICY_MAPS_H
#define MXGATE_POLICY_MAPS_H

#include <stdbool.h>
#include <stddef.h>

struct map;

enum map_status {
	MAP_NOTFOUND,	/* the table does not have the key */
	MAP_FOUND,	/* *value_r is set */
	MAP_FAIL,	/* the table could not answer: the caller tempfails */
	MAP_CONFIG,	/* maplist only: a table answered an empty value, which Postfix
			 * calls a configuration error (451 4.3.5) */
};


/*
 * Open the table named by spec ("texthash:/etc/mxgate/vmailbox").  Returns
 * the map, or NULL with *err_r set (caller frees) to a message that names the
 * spec: unsupported type, missing file, unreadable or corrupt file, bad syntax.
 */
struct map *map_open(const char *spec, char **err_r);

/*
 * Look key up.  On MAP_FOUND, *value_r is a malloc'd copy of the value
 * (caller frees); otherwise *value_r is set to NULL.  value_r may be NULL when
 * only the presence matters.  MAP_FAIL is logged here with the spec and key
 * (escaped), as Postfix's "lookup error for" warning.
 */
enum map_status map_lookup(const struct map *m, const char *key, char **value_r);

/*
 * Every entry of a table that can be read whole, for settings that load a
 * table when the configuration is read (tls_server_sni_maps): texthash,
 * inline, cdb, hash, btree and lmdb.  fn(ctx, key, value) is called once per
 * entry, the key as stored (file tables: as postmap folded it; a trailing
 * NUL that postmap -N wrote is dropped from key and value), in no
 * particular order.  Returns 0, or -1 with *why_r set (caller frees) for a
 * type that cannot be listed (patterns, remote tables, static, unix) or a
 * file that could not be read.  It reads the file: not on an event loop.
 */
typedef void map_entry_fn(void *ctx, const char *key, const char *value);
int map_each(const struct map *m, map_entry_fn *fn, void *ctx, char **why_r);

/* Free the map and set *mp to NULL; a NULL *mp is fine. */
void map_free(struct map **mp);

/* The spec as given to map_open(), "proxy:" included. */
const char *map_spec(const struct map *m);

/*
 * True when the file behind an indexed (cdb) map has been replaced or
 * modified since open (inode, size or mtime differ, or it is gone).  Always
 * false for the other types.  It calls stat(2): not on an event loop.
 */
bool map_changed(const struct map *m);
/* The type as a spec names it: "texthash", "cdb", "unix", "hash", ... */
const char *map_type_name(const struct map *m);
/* A server answers (mysql, ldap, socketmap, ...): lookups may wait on it. */
bool map_is_remote(const struct map *m);
/* regexp, pcre, cidr: matched against the whole string once, not key by key. */
bool map_is_pattern(const struct map *m);
/* True when the map is an indexed file table that map_changed() watches. */
bool map_is_indexed(const struct map *m);
/*
 * True when a lookup can never block: the table is all in memory after open
 * (texthash, inline, static), so a lookup is a hash probe.  cdb (file pages
 * read on demand) and unix:passwd.byname (NSS: files, LDAP, sssd) can block.
 */
bool map_in_memory(const struct map *m);

/*
 * maplist: the tables of one parameter, in order ("proxy:unix:passwd.byname
 * $alias_maps" expands to two specs).  The first table that has the key wins.
 */
struct maplist;

/*
 * Open every spec (n may be 0: an empty list).  On failure returns NULL with
 * *err_r set to the first map's error; nothing stays open.
 */
struct maplist *maplist_open(char *const *specs, size_t n, char **err_r);

/*
 * A spec that cannot be opened: why is map_open()'s message (it names the
 * spec).  Both strings are valid during the call only.
 */
typedef void maps_problem_fn(void *ctx, const char *spec, const char *why);

/*
 * Like maplist_open(), but it does not stop at the first spec that cannot be
 * opened: it tries them all and calls report(ctx, spec, why) for each one
 * that fails, in list order.  Returns NULL when any failed (nothing stays
 * open), so that `mxgate check` can name every bad table in one run.
 */
struct maplist *maplist_open_report(char *const *specs, size_t n, maps_problem_fn *report,
				    void *ctx);

/*
 * Look key up in each table in order.  MAP_FOUND from the first table that
 * has the key (*found_in_r, when not NULL, is that table).  An empty value
 * is a MAP_CONFIG, with Postfix's two warnings ("... returns an empty string
 * result", "... should return NO RESULT in case of NOT FOUND").  A MAP_FAIL stops
 * the search and is returned as such, as Postfix does: a later table must not
 * answer for one that could not.  An empty list gives MAP_NOTFOUND.
 */
enum map_status maplist_lookup(const struct maplist *l, const char *key, char **value_r,
			       const struct map **found_in_r);

/*
 * Like maplist_lookup(), for a key that is not the whole string the caller
 * was given (user@domain of user+ext@domain, @domain, a parent domain):
 * pattern tables (map_is_pattern(): regexp, pcre, cidr) are skipped, since
 * Postfix asks them the whole string once.
 */
enum map_status maplist_lookup_partial(const struct maplist *l, const char *key,
				       char **value_r, const struct map **found_in_r);

/* The parameter the list is for ("virtual_mailbox_maps"): warnings name it,
 * as Postfix's do.  Without one they name the table. */
void maplist_set_title(struct maplist *l, const char *title);

/* True when the list has no tables (or l is NULL). */
bool maplist_empty(const struct maplist *l);
/* The spec of the first table for which map_changed() is true, or NULL. */
const char *maplist_changed(const struct maplist *l);
/* True when one of the tables is indexed (map_is_indexed()). */
bool maplist_has_indexed(const struct maplist *l);
/* True when one of the tables is map_is_remote(). */
bool maplist_has_remote(const struct maplist *l);
/*
 * For `mxgate check`: a remote table connects to its servers now.  0 when
 * it did (or the type has nothing to check), -1 with *why_r (caller frees,
 * it names the spec) when it did not.  Blocks for the type's timeouts.
 */
int map_probe(const struct map *m, char **why_r);

/* True when every table is map_in_memory() (an empty list is). */
bool maplist_in_memory(const struct maplist *l);
size_t maplist_count(const struct maplist *l);
/* The i-th table (i < maplist_count()). */
const struct map *maplist_get(const struct maplist *l, size_t i);
void maplist_free(struct maplist **lp);

#endif
