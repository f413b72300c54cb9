/*
 * map_sql: sqlite: and mysql: tables.  See map_sql.h for the contract.
 *
 * The shared part is here once: reading the settings (through
 * policy/map_query.h), the query template, the hosts and their dead times
 * behind policy/map_pool.h's connections, and the lookup (domain filter,
 * expansion, collecting the values).  A backend (struct sql_backend) only
 * connects, quotes and runs one query.
 */
#include "policy/map_sql.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <mysql.h>
#include <errmsg.h>
#include <netdb.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log/log.h"
#include "policy/map_pool.h"
#include "policy/map_query.h"
#include "policy/map_remote.h"
#include "util/buf.h"
#include "util/xalloc.h"

/* How long a lookup waits for a connection of a full pool (seconds). */
#define SQL_POOL_WAIT		MAP_REMOTE_QUEUE_WAIT
/* mysql: connect_timeout, read_timeout, write_timeout (seconds; mxgate's settings). */
#define SQL_MYSQL_CONNECT_TIMEOUT	10
#define SQL_MYSQL_RW_TIMEOUT		10
#define SQL_SQLITE_BUSY_MS	3000
/* Postfix's defaults (dict_mysql.c: RETRY_CONN_INTV, IDLE_CONN_INTV). */
#define SQL_RETRY_INTERVAL	60
#define SQL_IDLE_INTERVAL	60

/* The messages of this module, in one place. */
#define SQL_MSG_CONNECT_FAIL	"connect to %s %s: %s"
#define SQL_MSG_QUERY_LOST	"query to %s %s failed: %s"
#define SQL_MSG_ALL_DEAD_START	"every "	/* how SQL_MSG_ALL_DEAD starts */
#define SQL_MSG_ALL_DEAD	SQL_MSG_ALL_DEAD_START "%s failed less than retry_interval (%ld s) ago"
#define SQL_MSG_QUERY_FAIL	"%s: query failed: %s"
#define SQL_MSG_DOMAIN_FAIL	"%s: 'domain' pattern match failed for '%s'"

struct sql_table;
struct sql_conn;
struct sql_host;

/* Seconds on the monotonic clock: every time in this module (a wall clock step must
 * neither revive a dead host early nor keep it dead). */
static double sql_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* What a backend says about a failed query. */
enum sql_run {
	SQL_RUN_OK,
	SQL_RUN_FAIL,		/* this query failed (SQL error, limit): the lookup fails */
	SQL_RUN_LOST,		/* the connection failed: try another */
};

struct sql_backend {
	const char *type;	/* "mysql" */
	const char *server;	/* "mysql server", in messages */
	/* Settings of this type's file that mxgate refuses (NULL-terminated). */
	const char *const *refused;
	/* The type's own settings, after the common ones; 0 or -1 with *why_r. */
	int	(*configure)(struct sql_table *t, char **why_r);
	/* Optional: once the pool exists, at open; 0 or -1 with *why_r. */
	int	(*prepare)(struct sql_table *t, char **why_r);
	/* A new connection to host; NULL with *err_r (malloc'd). */
	void   *(*connect)(struct sql_table *t, const struct sql_host *h, char **err_r);
	void	(*disconnect)(void *handle);
	map_query_escape_fn *escape;	/* ctx: the handle */
	/* Run query and add each value to r.  *err_r (malloc'd) on failure. */
	enum sql_run (*run)(struct sql_table *t, void *handle, const char *query,
			    struct map_query_result *r, char **err_r);
};

enum sql_host_kind { SQL_HOST_UNIX, SQL_HOST_INET };

struct sql_host {
	char   *label;		/* as written in "hosts" */
	enum sql_host_kind kind;
	char   *name;		/* socket path or host name; NULL: the default socket */
	unsigned port;		/* 0: the default */
	double	retry_at;	/* under the table's lock: no new connection before this */
};

/* One connection of the pool (policy/map_pool.h). */
struct sql_conn {
	struct sql_host *host;
	void   *handle;
	bool	answered;	/* a query was answered on it */
};

struct sql_table {
	const struct sql_backend *be;
	char   *spec;		/* "mysql:/etc/postfix/x.cf", for messages */
	struct map_query_cfg *cfg;
	char   *query;		/* the template */
	const char *result_format;
	long	expansion_limit;
	long	retry_interval, idle_interval;
	/* mysql */
	const char *user, *password, *dbname, *option_file, *option_group;
	bool	require_result_set;
	long	connect_timeout, read_timeout, write_timeout;
	/* hosts; sqlite has one, its dbpath */
	struct sql_host *hosts;
	size_t	nhosts;
	pthread_mutex_t lock;	/* the hosts' retry_at */
	struct map_pool *pool;
};

/* ---- settings ---- */

/* "PATH, line N: text" for the setting name (caller frees). */
static char *sql_setting_error(const struct sql_table *t, const char *name, const char *fmt,
			       const char *value)
{
	char *what = xasprintf(fmt, value);
	char *s = xasprintf("%s: %s", map_query_cfg_where(t->cfg, name), what);

	free(what);
	return s;
}

static int sql_get_int(struct sql_table *t, const char *name, long dflt, long min, long *out,
		       char **why_r)
{
	long v = map_query_cfg_int(t->cfg, name, dflt, why_r);

	if (v < 0)
		return -1;
	if (v < min) {
		*why_r = xasprintf("%s: \"%s\" must be at least %ld", map_query_cfg_where(t->cfg, name),
				   name, min);
		return -1;
	}
	*out = v;
	return 0;
}

static int sql_get_bool(struct sql_table *t, const char *name, bool dflt, bool *out,
			char **why_r)
{
	int v = map_query_cfg_bool(t->cfg, name, dflt, why_r);

	if (v < 0)
		return -1;
	*out = v != 0;
	return 0;
}

/* A setting that must not be empty when set (Postfix: "bad string length"). */
static const char *sql_get_nonempty(struct sql_table *t, const char *name, const char *dflt,
				    char **why_r)
{
	const char *v = map_query_cfg_str(t->cfg, name, dflt);

	if (v == NULL || *v == '\0') {
		*why_r = v == NULL ? xasprintf("%s: \"%s\" is not set", map_query_cfg_path(t->cfg), name)
				   : sql_setting_error(t, name, "\"%s\" is empty", name);
		return NULL;
	}
	return v;
}

/* query, or Postfix's legacy "SELECT select_field FROM table WHERE where_field='%s' ..." */
static int sql_build_query(struct sql_table *t, char **why_r)
{
	static const char *const legacy[] = { "table", "select_field", "where_field" };
	const char *v[3];
	const char *q = map_query_cfg_str(t->cfg, "query", NULL);

	if (q != NULL) {
		t->query = xstrdup(q);
		return 0;
	}
	for (size_t i = 0; i < 3; i++) {
		v[i] = map_query_cfg_str(t->cfg, legacy[i], NULL);
		if (v[i] == NULL || *v[i] == '\0') {
			*why_r = xasprintf("%s: neither \"query\" nor \"%s\" is set",
					   map_query_cfg_path(t->cfg), legacy[i]);
			return -1;
		}
	}
	t->query = xasprintf("SELECT %s FROM %s WHERE %s='%%s' %s", v[1], v[0], v[2],
			     map_query_cfg_str(t->cfg, "additional_conditions", ""));
	return 0;
}

/* Both templates are parsed before any expansion (map_query.h); a bad '%' is refused. */
static int sql_parse_template(struct sql_table *t, const char *name, const char *fmt, bool query,
			      char **why_r)
{
	char *why = NULL;

	if (map_query_parse(t->cfg, fmt, query, &why) < 0) {
		*why_r = xasprintf("%s: %s", map_query_cfg_where(t->cfg, name), why);
		free(why);
		return -1;
	}
	return 0;
}

static int sql_configure(struct sql_table *t, char **why_r)
{
	if ((t->be->refused != NULL && map_query_cfg_refuse(t->cfg, t->be->refused, why_r) < 0)
	    || sql_build_query(t, why_r) < 0
	    || (t->result_format = sql_get_nonempty(t, "result_format", "%s", why_r)) == NULL
	    || sql_parse_template(t, "query", t->query, true, why_r) < 0
	    || sql_parse_template(t, "result_format", t->result_format, false, why_r) < 0
	    || sql_get_int(t, "expansion_limit", 0, 0, &t->expansion_limit, why_r) < 0)
		return -1;
	t->retry_interval = SQL_RETRY_INTERVAL;
	t->idle_interval = SQL_IDLE_INTERVAL;
	return t->be->configure(t, why_r);
}

/* ---- the hosts: map_pool's connect and disconnect ---- */

/* h failed: no new connection to it for retry_interval seconds. */
static void sql_host_dead(struct sql_table *t, struct sql_host *h)
{
	pthread_mutex_lock(&t->lock);
	h->retry_at = sql_now() + (double)t->retry_interval;
	pthread_mutex_unlock(&t->lock);
}

/*
 * The hosts a new connection may go to, best first: not dead (or due for a
 * retry), UNIX sockets before TCP, random among equals.
 */
static size_t sql_hosts_order(struct sql_table *t, struct sql_host **out)
{
	double now = sql_now();
	size_t n = 0;

	pthread_mutex_lock(&t->lock);
	for (int kind = SQL_HOST_UNIX; kind <= SQL_HOST_INET; kind++) {
		size_t first = n;

		for (size_t i = 0; i < t->nhosts; i++) {
			struct sql_host *h = &t->hosts[i];

			if ((int)h->kind == kind && h->retry_at <= now)
				out[n++] = h;
		}
		for (size_t i = n - first; i > 1; i--) {	/* Fisher-Yates */
			size_t j = arc4random_uniform((uint32_t)i);
			struct sql_host *tmp = out[first + i - 1];

			out[first + i - 1] = out[first + j];
			out[first + j] = tmp;
		}
	}
	pthread_mutex_unlock(&t->lock);
	return n;
}

/* map_pool ops: a new connection, to the first host that takes it. */
static void *sql_pool_connect(void *ctx, char **why_r)
{
	struct sql_table *t = ctx;
	struct sql_host **order = xcalloc(t->nhosts, sizeof(*order));
	struct sql_conn *c = NULL;
	char *why = NULL;
	size_t n = sql_hosts_order(t, order);

	for (size_t i = 0; i < n && c == NULL; i++) {
		char *err = NULL;
		void *h = t->be->connect(t, order[i], &err);

		if (h == NULL) {
			sql_host_dead(t, order[i]);
			free(why);
			why = xasprintf(SQL_MSG_CONNECT_FAIL, t->be->server, order[i]->label, err);
			free(err);
			continue;
		}
		c = xcalloc(1, sizeof(*c));
		c->host = order[i];
		c->handle = h;
	}
	free(order);
	if (c == NULL)
		*why_r = why != NULL ? why : xasprintf(SQL_MSG_ALL_DEAD, t->be->server,
						       t->retry_interval);
	else
		free(why);
	return c;
}

static void sql_pool_disconnect(void *ctx, void *conn)
{
	struct sql_table *t = ctx;
	struct sql_conn *c = conn;

	t->be->disconnect(c->handle);
	free(c);
}

static const struct map_pool_ops sql_pool_ops = { sql_pool_connect, sql_pool_disconnect };

/* ---- the lookup ---- */

/* A stale connection (the server restarted) fails within this many seconds. */
#define SQL_STALE_FAILS_WITHIN	1.0

static enum map_status sql_lookup(struct map_impl *mi, const char *key, char **value_r)
{
	struct sql_table *t = (struct sql_table *)mi;
	struct buf query = BUF_INIT;
	char *why = NULL;

	if (!map_remote_key_ok(t->spec, key))
		return MAP_NOTFOUND;
	switch (map_query_domain(t->cfg, key)) {
	case 0:
		return MAP_NOTFOUND;
	case 1:
		break;
	default:
		msg_warn(SQL_MSG_DOMAIN_FAIL, t->spec, key);
		return MAP_FAIL;
	}
	/* Postfix suppresses the query before it asks any server. */
	if (map_query_expand(t->cfg, t->query, key, NULL, NULL, NULL, &query) == 0) {
		buf_free(&query);
		return MAP_NOTFOUND;
	}
	/* Each host at most twice: a connection that went stale, then a new one. */
	for (size_t attempt = 0; attempt < 2 * t->nhosts + 1; attempt++) {
		struct map_query_result r;
		char *err = NULL, *get_why = NULL;
		struct sql_conn *c = map_pool_get(t->pool, &get_why);
		enum sql_run run;
		double t0;

		if (c == NULL) {
			/* A connect error says most; "every server failed ... ago" least. */
			if (why == NULL || strncmp(get_why, SQL_MSG_ALL_DEAD_START,
						   strlen(SQL_MSG_ALL_DEAD_START)) != 0) {
				free(why);
				why = get_why;
			} else {
				free(get_why);
			}
			break;
		}
		buf_reset(&query);
		(void)map_query_expand(t->cfg, t->query, key, NULL, t->be->escape, c->handle, &query);
		map_query_result_init(&r, t->cfg, t->result_format, t->expansion_limit, key);
		t0 = sql_now();
		run = t->be->run(t, c->handle, buf_str(&query), &r, &err);
		if (run != SQL_RUN_LOST) {
			/* The server answered, if only with an SQL error. */
			c->answered = true;
			map_pool_put(t->pool, c, false);
			map_pool_outcome(t->pool, true, NULL);
			buf_free(&query);
			free(why);
			if (run == SQL_RUN_OK)
				return map_query_result_done(&r, value_r) == MAP_FOUND ? MAP_FOUND
										: MAP_NOTFOUND;
			map_query_result_free(&r);
			if (err != NULL)	/* NULL: over expansion_limit, map_query warned */
				msg_warn(SQL_MSG_QUERY_FAIL, t->spec, err);
			free(err);
			return MAP_FAIL;
		}
		map_query_result_free(&r);
		/*
		 * Lost.  A connection that answered before and fails at once is stale (the
		 * server restarted): map_pool drops it and its idle siblings, and the next
		 * attempt connects afresh.  A new connection that fails, or one that failed
		 * only after waiting (a hung server: a new one would wait again), means the
		 * host is dead.
		 */
		if (!c->answered || sql_now() - t0 >= SQL_STALE_FAILS_WITHIN)
			sql_host_dead(t, c->host);
		free(why);
		why = xasprintf(SQL_MSG_QUERY_LOST, t->be->server, c->host->label, err);
		free(err);
		map_pool_put(t->pool, c, true);
	}
	/* Logged once per outage by map_pool; maps.c logs each failed lookup. */
	map_pool_outcome(t->pool, false, why);
	free(why);
	buf_free(&query);
	return MAP_FAIL;
}

/* ---- open and close ---- */

static void sql_free(struct sql_table *t)
{
	map_pool_free(&t->pool);
	for (size_t i = 0; i < t->nhosts; i++) {
		free(t->hosts[i].label);
		free(t->hosts[i].name);
	}
	free(t->hosts);
	free(t->query);
	free(t->spec);
	map_query_cfg_free(&t->cfg);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static struct map_impl *sql_open(const struct sql_backend *be, const char *name, char **why_r)
{
	struct sql_table *t;

	t = xcalloc(1, sizeof(*t));
	t->be = be;
	t->spec = xasprintf("%s:%s", be->type, name);
	pthread_mutex_init(&t->lock, NULL);
	/* It refuses a name without a path (Postfix's obsolete main.cf form). */
	t->cfg = map_query_cfg_open(be->type, name, why_r);
	if (t->cfg == NULL || sql_configure(t, why_r) < 0) {
		sql_free(t);
		return NULL;
	}
	t->pool = map_pool_create(t->spec, &sql_pool_ops, t, SQL_POOL_WAIT, (int)t->idle_interval);
	if (be->prepare != NULL && be->prepare(t, why_r) < 0) {
		sql_free(t);
		return NULL;
	}
	return (struct map_impl *)t;
}

/*
 * `mxgate check`: connect to every host now, apart from the pool (the
 * host states are the daemon's business).  Each host that does not take
 * the connection is named.
 */
static int sql_probe(struct map_impl *mi, char **why_r)
{
	struct sql_table *t = (struct sql_table *)mi;
	struct buf why = BUF_INIT;

	for (size_t i = 0; i < t->nhosts; i++) {
		char *err = NULL;
		void *h = t->be->connect(t, &t->hosts[i], &err);

		if (h != NULL) {
			t->be->disconnect(h);
			continue;
		}
		if (why.len > 0)
			buf_puts(&why, "; ");
		buf_printf(&why, SQL_MSG_CONNECT_FAIL, t->be->server, t->hosts[i].label, err);
		free(err);
	}
	if (why.len == 0)
		return 0;
	*why_r = buf_steal(&why);
	return -1;
}

static void sql_close(struct map_impl *mi)
{
	sql_free((struct sql_table *)mi);
}

/* ---- mysql ---- */

/* mxgate does not do TLS to the server: ignoring these would send the password in clear. */
static const char *const mysql_refused[] = {
	"tls_cert_file", "tls_key_file", "tls_CAfile", "tls_CApath", "tls_ciphers",
	"tls_verify_cert", NULL,
};

static pthread_once_t mysql_once = PTHREAD_ONCE_INIT;

static void mysql_library_start(void)
{
	/* Not thread-safe, and mysql_init() would call it on the first lookup. */
	if (mysql_library_init(0, NULL, NULL) != 0)
		msg_fatal("mysql: cannot initialise the client library");
}

/* "unix:/path", "inet:host:port", "host:port", "host" (Postfix's host_init()). */
static int mysql_host_parse(struct sql_table *t, struct sql_host *h, const char *spec,
			    char **why_r)
{
	const char *d = spec;
	char *colon;

	h->label = xstrdup(spec);
	if (strncmp(d, "unix:", 5) == 0) {
		h->kind = SQL_HOST_UNIX;
		h->name = xstrdup(d + 5);
		return 0;
	}
	if (strncmp(d, "inet:", 5) == 0)
		d += 5;
	h->kind = SQL_HOST_INET;
	h->name = xstrdup(d);
	if ((colon = strrchr(h->name, ':')) != NULL) {
		char *end;
		long port;

		*colon++ = '\0';
		port = strtol(colon, &end, 10);
		if (*colon == '\0' || *end != '\0' || port <= 0 || port > 65535) {
			struct servent se, *res = NULL;
			char tmp[1024];

			if (getservbyname_r(colon, "tcp", &se, tmp, sizeof(tmp), &res) != 0
			    || res == NULL) {
				*why_r = sql_setting_error(t, "hosts", "unknown port in \"%s\"", spec);
				return -1;
			}
			port = ntohs((uint16_t)res->s_port);
		}
		h->port = (unsigned)port;
	}
	if (strcasecmp(h->name, "localhost") == 0) {
		/* The MySQL way: "localhost" is the default UNIX socket. */
		free(h->name);
		h->name = NULL;
		h->kind = SQL_HOST_UNIX;
	}
	return 0;
}

static int mysql_configure(struct sql_table *t, char **why_r)
{
	const char *hosts = map_query_cfg_str(t->cfg, "hosts", "");
	char *copy, *tok, *save = NULL;
	size_t cap;

	t->user = map_query_cfg_str(t->cfg, "user", "");
	t->password = map_query_cfg_str(t->cfg, "password", "");
	t->option_file = map_query_cfg_str(t->cfg, "option_file", NULL);
	t->option_group = map_query_cfg_str(t->cfg, "option_group", "client");
	if ((t->dbname = sql_get_nonempty(t, "dbname", NULL, why_r)) == NULL
	    || sql_get_bool(t, "require_result_set", true, &t->require_result_set, why_r) < 0
	    || sql_get_int(t, "retry_interval", SQL_RETRY_INTERVAL, 1, &t->retry_interval,
			   why_r) < 0
	    || sql_get_int(t, "idle_interval", SQL_IDLE_INTERVAL, 1, &t->idle_interval, why_r) < 0
	    || sql_get_int(t, "connect_timeout", SQL_MYSQL_CONNECT_TIMEOUT, 1, &t->connect_timeout,
			   why_r) < 0
	    || sql_get_int(t, "read_timeout", SQL_MYSQL_RW_TIMEOUT, 1, &t->read_timeout, why_r) < 0
	    || sql_get_int(t, "write_timeout", SQL_MYSQL_RW_TIMEOUT, 1, &t->write_timeout,
			   why_r) < 0)
		return -1;
	copy = xstrdup(hosts);
	cap = strlen(hosts) / 2 + 1;
	t->hosts = xcalloc(cap, sizeof(*t->hosts));
	for (tok = strtok_r(copy, ", \t\r\n", &save); tok != NULL;
	     tok = strtok_r(NULL, ", \t\r\n", &save)) {
		if (mysql_host_parse(t, &t->hosts[t->nhosts++], tok, why_r) < 0) {
			free(copy);
			return -1;
		}
	}
	free(copy);
	if (t->nhosts == 0 && mysql_host_parse(t, &t->hosts[t->nhosts++], "localhost", why_r) < 0)
		return -1;
	pthread_once(&mysql_once, mysql_library_start);
	return 0;
}

static void *mysql_connect(struct sql_table *t, const struct sql_host *h, char **err_r)
{
	unsigned connect_timeout = (unsigned)t->connect_timeout;
	unsigned read_timeout = (unsigned)t->read_timeout, write_timeout = (unsigned)t->write_timeout;
	MYSQL *db = mysql_init(NULL);

	if (db == NULL)
		msg_fatal("mysql: out of memory");
	/* Ours first: an option file read at connect may set connect-timeout. */
	mysql_options(db, MYSQL_OPT_CONNECT_TIMEOUT, &connect_timeout);
	mysql_options(db, MYSQL_OPT_READ_TIMEOUT, &read_timeout);
	mysql_options(db, MYSQL_OPT_WRITE_TIMEOUT, &write_timeout);
	if (t->option_file != NULL)
		mysql_options(db, MYSQL_READ_DEFAULT_FILE, t->option_file);
	if (t->option_group != NULL && *t->option_group != '\0')
		mysql_options(db, MYSQL_READ_DEFAULT_GROUP, t->option_group);
	if (mysql_real_connect(db, h->kind == SQL_HOST_INET ? h->name : NULL, t->user, t->password,
			       t->dbname, h->port, h->kind == SQL_HOST_UNIX ? h->name : NULL,
			       CLIENT_MULTI_RESULTS) == NULL) {
		*err_r = xstrdup(mysql_error(db));
		mysql_close(db);
		return NULL;
	}
	return db;
}

static void mysql_disconnect(void *handle)
{
	mysql_close(handle);
}

static void mysql_escape(void *ctx, const char *s, size_t len, struct buf *out)
{
	char *tmp = xmalloc(2 * len + 1);
	unsigned long n = mysql_real_escape_string(ctx, tmp, s, (unsigned long)len);

	/* It fails only on a buffer too small: 2 * len + 1 is its documented need. */
	if (n == (unsigned long)-1)
		msg_panic("mysql_real_escape_string: buffer of %zu bytes too small", 2 * len + 1);
	buf_append(out, tmp, n);
	free(tmp);
}

/* Client errors (CR_*, 2000 and up) mean the connection; server errors the query. */
static bool mysql_conn_error(MYSQL *db)
{
	return mysql_errno(db) >= CR_MIN_ERROR && mysql_errno(db) <= CR_MAX_ERROR;
}

static enum sql_run mysql_run(struct sql_table *t, void *handle, const char *query,
			      struct map_query_result *r, char **err_r)
{
	MYSQL *db = handle;
	MYSQL_RES *first = NULL;
	enum sql_run st = SQL_RUN_OK;
	int next;

	if (mysql_query(db, query) != 0) {
		*err_r = xstrdup(mysql_error(db));
		return mysql_conn_error(db) ? SQL_RUN_LOST : SQL_RUN_FAIL;
	}
	/* Every result set is read (a stored procedure may send several), only one may have rows. */
	do {
		MYSQL_RES *res = mysql_store_result(db);

		if (res != NULL) {
			if (first == NULL) {
				first = res;
			} else {
				mysql_free_result(res);
				if (*err_r == NULL)
					*err_r = xstrdup("multiple result sets returning data are not supported");
				st = SQL_RUN_FAIL;
			}
		} else if (mysql_field_count(db) != 0) {
			if (*err_r == NULL)
				*err_r = xstrdup(mysql_error(db));
			st = mysql_conn_error(db) ? SQL_RUN_LOST : SQL_RUN_FAIL;
		}
		if ((next = mysql_next_result(db)) > 0) {
			if (*err_r == NULL)
				*err_r = xstrdup(mysql_error(db));
			st = mysql_conn_error(db) ? SQL_RUN_LOST : SQL_RUN_FAIL;
		}
	} while (next == 0);
	if (st == SQL_RUN_OK && first == NULL && t->require_result_set) {
		*err_r = xstrdup("query returned no result set (require_result_set = yes)");
		st = SQL_RUN_FAIL;
	}
	if (st == SQL_RUN_OK && first != NULL) {
		unsigned nf = mysql_num_fields(first);
		MYSQL_ROW row;

		while (st == SQL_RUN_OK && (row = mysql_fetch_row(first)) != NULL)
			for (unsigned j = 0; j < nf && st == SQL_RUN_OK; j++)
				if (row[j] != NULL && map_query_result_add(r, row[j]) < 0)
					st = SQL_RUN_FAIL;	/* map_query warned */
	}
	if (first != NULL)
		mysql_free_result(first);
	return st;
}

static const struct sql_backend mysql_backend = {
	.type = "mysql",
	.server = "mysql server",
	.refused = mysql_refused,
	.configure = mysql_configure,
	.connect = mysql_connect,
	.disconnect = mysql_disconnect,
	.escape = mysql_escape,
	.run = mysql_run,
};

static struct map_impl *mysql_open(const char *name, char **why_r)
{
	return sql_open(&mysql_backend, name, why_r);
}

const struct map_type map_type_mysql = {
	.name = "mysql",
	.flags = MAPT_REMOTE,
	.open = mysql_open,
	.lookup = sql_lookup,
	.close = sql_close,
	.probe = sql_probe,
};

/* ---- sqlite ---- */

static int sqlite_configure(struct sql_table *t, char **why_r)
{
	const char *dbpath = sql_get_nonempty(t, "dbpath", NULL, why_r);

	if (dbpath == NULL)
		return -1;
	t->hosts = xcalloc(1, sizeof(*t->hosts));
	t->nhosts = 1;
	t->hosts[0].label = xstrdup(dbpath);
	t->hosts[0].name = xstrdup(dbpath);
	/* A file has no idle timeout, and no dead time worth waiting for. */
	t->idle_interval = INT_MAX;
	t->retry_interval = 0;
	return 0;
}

/*
 * Every connection of the pool is opened at open: a missing file is an open
 * error, and a file that only root may read is read by a daemon that has
 * dropped its privileges since.  They stay (no idle timeout, never broken).
 */
static int sqlite_prepare(struct sql_table *t, char **why_r)
{
	void *conns[MAP_POOL_CAP];
	int n = 0, rc = 0;

	while (n < MAP_POOL_CAP) {
		char *why = NULL;

		if ((conns[n] = map_pool_get(t->pool, &why)) == NULL) {
			*why_r = xasprintf("%s: %s", map_query_cfg_where(t->cfg, "dbpath"), why);
			free(why);
			rc = -1;
			break;
		}
		n++;
	}
	while (n > 0)
		map_pool_put(t->pool, conns[--n], false);
	return rc;
}

static void *sqlite_connect(struct sql_table *t, const struct sql_host *h, char **err_r)
{
	sqlite3 *db = NULL;
	int rc;

	(void)t;
	/* NOMUTEX: one lookup at a time uses a connection (the pool). */
	rc = sqlite3_open_v2(h->name, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		*err_r = xasprintf("open database \"%s\": %s", h->name,
				   db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, SQL_SQLITE_BUSY_MS);
	return db;
}

static void sqlite_disconnect(void *handle)
{
	sqlite3_close(handle);
}

static enum sql_run sqlite_run(struct sql_table *t, void *handle, const char *query,
			       struct map_query_result *r, char **err_r)
{
	sqlite3 *db = handle;
	sqlite3_stmt *stmt = NULL;
	enum sql_run st = SQL_RUN_OK;
	int rc;

	(void)t;
	if (sqlite3_prepare_v2(db, query, -1, &stmt, NULL) != SQLITE_OK) {
		*err_r = xasprintf("SQL prepare failed: %s", sqlite3_errmsg(db));
		sqlite3_finalize(stmt);
		return SQL_RUN_FAIL;
	}
	/* Postfix reads the first column of each row. */
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		const char *v = (const char *)sqlite3_column_text(stmt, 0);

		if (v != NULL && map_query_result_add(r, v) < 0) {
			st = SQL_RUN_FAIL;	/* map_query warned */
			break;
		}
	}
	if (st == SQL_RUN_OK && rc != SQLITE_DONE) {
		*err_r = xasprintf("SQL step failed: %s", sqlite3_errmsg(db));
		st = SQL_RUN_FAIL;
	}
	sqlite3_finalize(stmt);
	return st;
}

static const struct sql_backend sqlite_backend = {
	.type = "sqlite",
	.server = "sqlite database",
	.configure = sqlite_configure,
	.prepare = sqlite_prepare,
	.connect = sqlite_connect,
	.disconnect = sqlite_disconnect,
	.escape = map_query_escape_sql,	/* sqlite3_mprintf("%q") as Postfix quotes */
	.run = sqlite_run,
};

static struct map_impl *sqlite_open(const char *name, char **why_r)
{
	return sql_open(&sqlite_backend, name, why_r);
}

const struct map_type map_type_sqlite = {
	.name = "sqlite",
	.flags = 0,
	.open = sqlite_open,
	.lookup = sql_lookup,
	.close = sql_close,
};
