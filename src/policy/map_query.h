/*
 * map_query: what Postfix's database tables share (its db_common): the
 * client configuration file of sqlite_table(5), mysql_table(5),
 * pgsql_table(5) and ldap_table(5), the "domain" key filter, the %-expansion
 * of "query" (ldap: "query_filter", "search_base") and of "result_format",
 * and "expansion_limit".  The types (map_sql.c, map_ldap.c) do the talking
 * to their server; this module never does I/O except reading the file.
 *
 * Contract:
 *
 *   map_query_cfg_open(path, &why)
 *       Reads path in main.cf syntax ("name = value", '#' comments,
 *       continuation lines, later setting wins).  NULL with *why_r set when
 *       the file cannot be read.  Unknown names are kept (a type asks for
 *       what it knows; map_query_cfg_unused() lists the rest for check).
 *   map_query_cfg_str(cfg, name, dflt)  the value, or dflt when unset.
 *   map_query_cfg_int(cfg, name, dflt, &why)  a decimal >= 0; -1 with *why_r
 *       ("PATH, line N: bad number for \"name\": \"value\"") when it is not.
 *   map_query_cfg_where(cfg, name)  "PATH, line N" of the setting, or PATH.
 *
 *   map_query_domain_ok(cfg, key)
 *       false when "domain" is set and key is not user@domain with domain
 *       in that list (a list of names, or of tables, as Postfix reads it):
 *       the type then answers MAP_NOTFOUND without asking the server.
 *
 *   map_query_expand(fmt, key, value, escape, ctx, out)
 *       Appends fmt to out with Postfix's substitutions:
 *         %%  a '%'
 *         %s  the key            (in result_format: the value)
 *         %u  its local part, or the whole key when it has no '@'
 *         %d  its domain part
 *         %1..%9  the domain's labels, %1 the rightmost
 *         %S %U %D  always the key's (in result_format and query alike)
 *       value is NULL when expanding a query.  Each substituted piece goes
 *       through escape(ctx, piece, len, out) (the server's own quoting:
 *       mysql_real_escape_string, PQescapeStringConn, SQL '' doubling, or
 *       RFC 4515 for ldap); the literal text of fmt is copied as is.
 *       Returns 1 when expanded; 0 when Postfix suppresses the query or the
 *       result (an empty local part for %u, no domain for %d, fewer labels
 *       than %N asks): the type then answers MAP_NOTFOUND (for a result:
 *       skips that value).  -1 for a bad '%' sequence (check reports it).
 *
 *   struct map_query_result: collects the values of one lookup, joined
 *       with "," as Postfix joins rows and attributes, counting them against
 *       expansion_limit; map_query_result_add() returns -1 once the limit is
 *       passed (the type then answers MAP_FAIL, as Postfix's "Expansion
 *       limit exceeded for key" is a temporary error) and logs that warning.
 *
 * Threads: a cfg is read-only after open; any number of threads may use it.
 */
#ifndef MXGATE_POLICY_MAP_QUERY_H
#define MXGATE_POLICY_MAP_QUERY_H

#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"

struct map_query_cfg;

struct map_query_cfg *map_query_cfg_open(const char *path, char **why_r);
void	map_query_cfg_free(struct map_query_cfg **cfgp);

const char *map_query_cfg_str(const struct map_query_cfg *cfg, const char *name,
			      const char *dflt);
long	map_query_cfg_int(const struct map_query_cfg *cfg, const char *name, long dflt,
			  char **why_r);
/* "PATH, line N" (static buffer per cfg: valid until the next call). */
const char *map_query_cfg_where(const struct map_query_cfg *cfg, const char *name);
const char *map_query_cfg_path(const struct map_query_cfg *cfg);

bool	map_query_domain_ok(const struct map_query_cfg *cfg, const char *key);

typedef void map_query_escape_fn(void *ctx, const char *s, size_t len, struct buf *out);

/* Copies s unchanged (for a format whose pieces need no quoting). */
map_query_escape_fn map_query_escape_none;
/* SQL string literal quoting: a ' becomes '' (sqlite). */
map_query_escape_fn map_query_escape_sql;
/* RFC 4515 filter value: * ( ) \ NUL become \2a \28 \29 \5c \00. */
map_query_escape_fn map_query_escape_ldap;

int	map_query_expand(const char *fmt, const char *key, const char *value,
			 map_query_escape_fn *escape, void *ctx, struct buf *out);

struct map_query_result {
	const struct map_query_cfg *cfg;
	const char *key;	/* for result_format's %S %U %D and the warning */
	const char *table;	/* "mysql:/etc/postfix/x.cf", for the warning */
	long	limit;		/* expansion_limit; 0: none */
	long	count;
	struct buf out;
};

void	map_query_result_init(struct map_query_result *r, const struct map_query_cfg *cfg,
			      const char *table, const char *key);
/* Add one value through result_format (default "%s").  0, or -1 over the limit. */
int	map_query_result_add(struct map_query_result *r, const char *value);
/* MAP_FOUND with *value_r (malloc'd) when anything was added, else MAP_NOTFOUND. */
int	map_query_result_done(struct map_query_result *r, char **value_r);

#endif
