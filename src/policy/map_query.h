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
 *   map_query_cfg_open(type, path, &why)
 *       Reads path in main.cf syntax ("name = value", '#' comments,
 *       continuation lines, later setting wins; no $name expansion, as
 *       Postfix's cfg_parser).  NULL with *why_r when the file cannot be
 *       read or has a syntax error ("PATH, line N: ...").  A name that is
 *       not an absolute or ./relative path is refused: Postfix would then
 *       read NAME_param settings from main.cf, which mxgate does not.
 *   map_query_cfg_str(cfg, name, dflt)  the value, or dflt when unset.
 *   map_query_cfg_int / _bool(cfg, name, dflt, &why)  -1 with *why_r
 *       ("PATH, line N: bad numerical configuration: name = value") when
 *       the value is not a decimal number (yes/no for bool).
 *   map_query_cfg_refuse(cfg, names[], &why)  -1 with *why_r naming the
 *       first of names[] that is set ("PATH, line N: setting "tls_cert" is
 *       not supported by mxgate"): for what a type does not implement.
 *
 *   map_query_parse(cfg, fmt, query, &why)
 *       Checks a template ("query", "query_filter", "result_format", ...)
 *       and records which parts of the key and value it needs; every
 *       template of a table is parsed before the first expansion, since
 *       the checks of one depend on all (as in Postfix's db_common).
 *       Returns 1 when fmt has a %-substitution, 0 when it has none, -1
 *       with *why_r on a bad '%' sequence.
 *
 *   map_query_domain(cfg, key)
 *       The "domain" filter: 1 when key may be asked, 0 when "domain" is
 *       set and key is not user@domain with domain in that match list
 *       (policy/matchlist.h: names, tables, /files): the type then answers
 *       MAP_NOTFOUND without asking the server.  -1: a table in the list
 *       failed (MAP_FAIL).
 *
 *   map_query_expand(cfg, fmt, value, key, escape, ctx, out)
 *       Postfix's db_common_expand().  For a query, value is the lookup key
 *       and key is NULL; for a result, value is the result and key the
 *       lookup key.  When out is not empty, a ',' is appended first (that
 *       is how results are joined).  Substitutions:
 *         %%  a '%'
 *         %s %u %d  value, its local part (all of it when it has no '@'),
 *                   its domain part
 *         %S %U %D  the same of the key (of value for a query)
 *         %1..%9    the domain's labels, %1 the rightmost (of the key)
 *       Each substituted piece goes through escape(ctx, piece, len, out)
 *       (the server's quoting); the literal text of fmt is copied.
 *       Returns 1 when expanded; 0 when skipped as Postfix skips it: an
 *       empty value (warned: "empty query string" / "empty lookup result
 *       for"), an empty local part for %u, no domain for %d, fewer or empty
 *       labels than %N asks.
 *
 *   struct map_query_result: the values of one lookup through
 *       "result_format", counted against "expansion_limit".
 *       map_query_result_add() returns -1 once the limit is passed, having
 *       logged Postfix's "Expansion limit exceeded for key" warning: the
 *       type then answers MAP_FAIL, as Postfix does.
 *
 * Threads: a cfg is read-only once its templates are parsed; any number of
 * threads may use it then.
 */
#ifndef MXGATE_POLICY_MAP_QUERY_H
#define MXGATE_POLICY_MAP_QUERY_H

#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"

struct map_query_cfg;

/* type: "mysql", "ldap", ... (for messages: "table \"mysql:PATH\"") */
struct map_query_cfg *map_query_cfg_open(const char *type, const char *path, char **why_r);
void	map_query_cfg_free(struct map_query_cfg **cfgp);
const char *map_query_cfg_path(const struct map_query_cfg *cfg);
/* "PATH, line N" of name's setting, or PATH when unset (per-thread buffer,
 * valid until the next call on this thread). */
const char *map_query_cfg_where(const struct map_query_cfg *cfg, const char *name);

const char *map_query_cfg_str(const struct map_query_cfg *cfg, const char *name,
			      const char *dflt);
long	map_query_cfg_int(const struct map_query_cfg *cfg, const char *name, long dflt,
			  char **why_r);
int	map_query_cfg_bool(const struct map_query_cfg *cfg, const char *name, int dflt,
			   char **why_r);
int	map_query_cfg_refuse(const struct map_query_cfg *cfg, const char *const *names,
			     char **why_r);

int	map_query_parse(struct map_query_cfg *cfg, const char *fmt, bool query, char **why_r);

int	map_query_domain(const struct map_query_cfg *cfg, const char *key);

typedef void map_query_escape_fn(void *ctx, const char *s, size_t len, struct buf *out);

/* SQL string literal quoting: a ' becomes '' (sqlite). */
map_query_escape_fn map_query_escape_sql;
/* RFC 4515 filter value: * ( ) \ NUL become \2a \28 \29 \5c \00. */
map_query_escape_fn map_query_escape_ldap;

/* escape NULL: pieces are copied as they are. */
int	map_query_expand(const struct map_query_cfg *cfg, const char *fmt, const char *value,
			 const char *key, map_query_escape_fn *escape, void *ctx,
			 struct buf *out);

struct map_query_result {
	const struct map_query_cfg *cfg;
	const char *fmt;	/* result_format */
	const char *key;	/* the lookup key */
	long	limit;		/* expansion_limit; 0: none */
	long	count;
	struct buf out;
};

/* fmt: the table's result_format (parsed with map_query_parse). */
void	map_query_result_init(struct map_query_result *r, const struct map_query_cfg *cfg,
			      const char *fmt, long limit, const char *key);
/* One value (a column of a row, an attribute value).  0, or -1 over the limit. */
int	map_query_result_add(struct map_query_result *r, const char *value);
/* MAP_FOUND with *value_r (malloc'd) when a value was added, else MAP_NOTFOUND;
 * the result is freed either way. */
int	map_query_result_done(struct map_query_result *r, char **value_r);
void	map_query_result_free(struct map_query_result *r);

#endif
