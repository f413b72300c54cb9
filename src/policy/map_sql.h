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
 *   missing or unreadable file is an open error; a writer holding the lock
 *   is waited for SQL_SQLITE_BUSY_MS, then the lookup fails (MAP_FAIL).
 *
 * mysql (MAPT_REMOTE):  hosts (host, host:port, inet:host[:port],
 *   unix:/path; "localhost" is the default socket; default "localhost"),
 *   user, password, dbname, option_file, option_group (default "client"),
 *   require_result_set (default yes), and from later Postfix versions
 *   retry_interval and idle_interval (default 60 s each; Postfix 3.7 has
 *   them fixed at 60).  Nothing connects at open.  A lookup takes an idle
 *   connection of the table's pool, or opens one while fewer than
 *   SQL_POOL_MAX are open, or waits for one up to SQL_POOL_WAIT seconds;
 *   a new connection goes to a host that is not marked dead, UNIX sockets
 *   first and in random order among equals.  A host whose connection fails
 *   is dead for retry_interval seconds: lookups then go to the other hosts,
 *   and with none left fail at once (MAP_FAIL) without waiting on it.  The
 *   outage is logged once, when the host goes dead ("connect to mysql
 *   server H: error"), and its return once ("mysql server H: connected
 *   again"); retries in between that fail are not logged again.  A query
 *   that fails on a connection that had answered before (a server restart)
 *   is retried once on a new connection before the host counts as dead.
 *   Timeouts: SQL_MYSQL_CONNECT_TIMEOUT, SQL_MYSQL_RW_TIMEOUT for each read
 *   and write (MYSQL_OPT_*_TIMEOUT); an option_file may set others
 *   (connect-timeout, read-timeout, write-timeout in its group).  A
 *   connection idle for idle_interval is closed and opened anew before use.
 *   An SQL error (bad query) fails that lookup and leaves the host alive.
 *
 * Refused at open, naming the file and line: a tls_* setting (mxgate does
 * not do TLS to the server, and ignoring it would send the password in
 * clear), "mysql:name" without a path (Postfix's obsolete main.cf form), a
 * number, boolean or template that is not valid, an empty dbname or dbpath.
 *
 * Threads: lookups run on any number of threads at once; each connection
 * is used by one lookup at a time, and the pool and host states are under
 * the table's mutex.
 */
#ifndef MXGATE_POLICY_MAP_SQL_H
#define MXGATE_POLICY_MAP_SQL_H

#include "policy/map_type.h"

extern const struct map_type map_type_sqlite;
extern const struct map_type map_type_mysql;

#endif
