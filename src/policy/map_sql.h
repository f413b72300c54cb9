/*
 * map_sql: the SQL table types "sqlite:" and "mysql:" (policy/map_type.h),
 * configured by Postfix's client configuration files as sqlite_table(5) and
 * mysql_table(5) describe them: "sqlite:/etc/postfix/x.cf".  The file's
 * syntax, the domain filter, the %-expansion, result_format and
 * expansion_limit are policy/map_query.h's; this module talks to the
 * database.
 *
 * Both types:
 *   query, or the legacy select_field + table + where_field
 *   (+ additional_conditions) from which Postfix builds
 *   "SELECT f FROM t WHERE w='%s' c".  Each non-NULL value of the result
 *   goes through result_format and the values are joined with ",".
 *   sqlite: the first column of every row.  mysql: every column of every
 *   row.  An empty result is "not found".
 *
 * sqlite:  dbpath, opened read-only (SQLITE_OPEN_READONLY) at open, so a
 *   missing or unreadable file is an open error and is never created (as
 *   Postfix's sqlite3_open() would).  MAP_POOL_CAP read-only connections,
 *   all opened at open (so before the daemon drops its privileges), serve
 *   the threads through the same pool; a writer holding the lock is waited
 *   for 3 s (the busy timeout), then the lookup fails (MAP_FAIL).
 *
 * mysql (MAPT_REMOTE):  hosts (host, host:port, inet:host[:port],
 *   unix:/path; "localhost" is the default socket; default "localhost"),
 *   user, password, dbname, option_file, option_group (default "client"),
 *   require_result_set (default yes); from later Postfix versions
 *   retry_interval and idle_interval (default 60 s each; Postfix 3.7 has
 *   them fixed at 60); and mxgate's own connect_timeout, read_timeout and
 *   write_timeout (seconds, default 10 each: MYSQL_OPT_*_TIMEOUT; Postfix
 *   ignores them and has none; an option_file's connect-timeout overrides
 *   connect_timeout).  Nothing connects at open.
 *   Connections: policy/map_pool.h (at most MAP_POOL_CAP per table, a
 *   bounded wait for one, idle_interval, an outage and its end logged once:
 *   "TABLE: server unavailable: WHY; ..." and "TABLE: server answers
 *   again"; maps.c logs each failed lookup).  A new connection goes to a
 *   host that is not marked dead, UNIX sockets first, in random order among
 *   equals.  A host that refuses a connection, or whose connection fails a
 *   query after waiting (a hung server), is dead for retry_interval
 *   seconds: lookups then go to the other hosts, and with none left fail at
 *   once (MAP_FAIL) without waiting on it.  A query that fails at once on a
 *   connection that had answered before (the server restarted) is tried
 *   again on a new connection.  An SQL error (a bad query) fails that
 *   lookup, is logged each time, and counts as an answer.
 *   A key that is not UTF-8 is warned about and not found, without asking
 *   (policy/map_remote.h), as postmap has it.
 *
 * Refused at open, naming the file and line: a tls_* setting (mxgate does
 * not do TLS to the server, and ignoring it would send the password in
 * clear), "mysql:name" without a path (Postfix's obsolete main.cf form, by
 * map_query), a number, boolean, port or template that is not valid, an
 * empty or missing dbname or dbpath, a query that is neither "query" nor
 * the complete legacy form.
 *
 * Known differences from Postfix 3.7: mysql read/write timeouts (Postfix
 * waits as long as the client library does, which is forever); the dead
 * time is retry_interval, not a fixed 60 s; a missing sqlite file fails at
 * open, where Postfix creates an empty database and fails each query.
 *
 * Threads: lookups run on any number of threads at once; each connection
 * is used by one lookup at a time (map_pool), and the hosts' dead times are
 * under the table's mutex.
 */
#ifndef MXGATE_POLICY_MAP_SQL_H
#define MXGATE_POLICY_MAP_SQL_H

#include "policy/map_type.h"

extern const struct map_type map_type_sqlite;
extern const struct map_type map_type_mysql;

#endif
