/*
 * map_pgsql: "pgsql:/etc/postfix/x.cf", PostgreSQL lookups as pgsql_table(5)
 * describes them, through libpq.
 *
 * The file (policy/map_query.h reads it):
 *   hosts        host, host:port, inet:host[:port], unix:/socket/dir, or a
 *                postgresql:// URI (then user, password and dbname come from
 *                it); default localhost.  Servers are tried in random order,
 *                UNIX sockets before TCP before URIs, as Postfix does; one
 *                that failed is left alone for retry_interval seconds
 *                (default 60).  A single host is listed twice, as Postfix
 *                does, so that one broken connection (a server restart) is
 *                retried at once on a fresh one.
 *   user, password, dbname, encoding (client encoding, default UTF8)
 *   query        with %s %u %d %S %U %D %1..%9, each piece quoted with
 *                PQescapeStringConn() on the connection that runs it; or
 *                the obsolete select_function, or select_field, table,
 *                where_field and additional_conditions.
 *   result_format, domain, expansion_limit: policy/map_query.h.
 *   idle_interval (default 60): an idle connection is closed after it.
 *
 * Every row's every column is a value (joined with ','); NULL and empty
 * values are skipped.  A query that fails (server gone, SQL error, timeout)
 * marks that server down and the next one is tried; when none answers the
 * lookup is MAP_FAIL.  Connections: policy/map_pool.h, at most MAP_POOL_CAP
 * per table; connect and query each wait at most PGSQL_TIMEOUT seconds
 * (libpq's connect_timeout; poll() on the socket for the query), so a
 * server that hangs costs a lookup a bounded time.
 */
#include "policy/map_remote.h"

#include <ctype.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "log/log.h"
#include "policy/map_pool.h"
#include "policy/map_query.h"
#include "util/buf.h"
#include "util/xalloc.h"

/* Seconds a connect, and a query, may take (Postfix's pgsql client has no setting). */
#define PGSQL_TIMEOUT		10
#define PGSQL_RETRY_DEFAULT	60	/* retry_interval */
#define PGSQL_IDLE_DEFAULT	60	/* idle_interval */

enum pg_host_kind { PGH_UNIX, PGH_INET, PGH_URI };	/* the order they are tried in */

struct pg_host {
	char   *spec;		/* as written in "hosts", for messages */
	enum pg_host_kind kind;
	char   *host;		/* libpq "host" (a socket directory for PGH_UNIX); URI */
	char   *port;		/* NULL: libpq's default */
	time_t	dead_until;	/* under impl->lock */
};

struct map_impl {
	char   *table;		/* "pgsql:PATH" */
	struct map_query_cfg *cfg;
	char   *query;
	const char *result_format;
	long	expansion_limit;
	const char *user, *password, *dbname, *encoding;
	long	retry_interval;
	struct pg_host *hosts;
	size_t	nhosts;
	pthread_mutex_t lock;
	struct map_pool *pool;
};

struct pg_conn {
	PGconn *db;
	size_t	host;		/* index in impl->hosts */
};

/* ---- hosts ---- */

/* Postfix's valid_uri_scheme(): ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) "://" */
static bool pg_is_uri(const char *s)
{
	if (!isalpha((unsigned char)*s))
		return false;
	while (isalnum((unsigned char)*s) || *s == '+' || *s == '-' || *s == '.')
		s++;
	return strncmp(s, "://", 3) == 0;
}

static void pg_host_init(struct pg_host *h, const char *spec)
{
	const char *d = spec;
	char *colon;

	memset(h, 0, sizeof(*h));
	h->spec = xstrdup(spec);
	if (pg_is_uri(spec)) {
		h->kind = PGH_URI;
		h->host = xstrdup(spec);
		return;
	}
	if (strncmp(d, "unix:", 5) == 0 || strncmp(d, "inet:", 5) == 0)
		d += 5;
	h->host = xstrdup(d);
	if (h->host[0] != '\0' && h->host[0] != '/') {
		h->kind = PGH_INET;
		if ((colon = strrchr(h->host, ':')) != NULL) {
			*colon = '\0';
			h->port = xstrdup(colon + 1);
		}
	} else {
		h->kind = PGH_UNIX;
	}
}

static void pg_hosts_parse(struct map_impl *t, const char *list)
{
	static const char sep[] = ", \t\r\n";
	char *copy = xstrdup(list), *save = NULL;
	size_t cap = 0;

	for (char *w = strtok_r(copy, sep, &save); w != NULL; w = strtok_r(NULL, sep, &save)) {
		if (t->nhosts == cap) {
			cap = cap ? cap * 2 : 4;
			t->hosts = xrealloc(t->hosts, cap * sizeof(*t->hosts));
		}
		pg_host_init(&t->hosts[t->nhosts++], w);
	}
	free(copy);
	if (t->nhosts == 0) {
		t->hosts = xrealloc(t->hosts, 2 * sizeof(*t->hosts));
		pg_host_init(&t->hosts[t->nhosts++], "localhost");
	}
	/* One server (a load balancer, say) is never left alone after one failure. */
	if (t->nhosts == 1) {
		t->hosts = xrealloc(t->hosts, 2 * sizeof(*t->hosts));
		pg_host_init(&t->hosts[t->nhosts++], t->hosts[0].spec);
	}
}

/* ---- connections ---- */

/* libpq's message (it may span lines, and ends with one) as one log line. */
static char *pg_error_text(const char *msg)
{
	size_t n = strlen(msg);
	char *one;

	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
		n--;
	one = xstrndup(msg, n);
	for (char *p = one; *p; p++)
		if (*p == '\n' || *p == '\t')
			*p = ' ';
	return one;
}

static PGconn *pg_connect_host(const struct map_impl *t, const struct pg_host *h)
{
	char timeout[16];
	const char *kw[8], *val[8];
	int n = 0;

	snprintf(timeout, sizeof(timeout), "%d", PGSQL_TIMEOUT);
	kw[n] = "connect_timeout", val[n++] = timeout;
	if (h->kind == PGH_URI) {
		/* expand_dbname: the URI's own settings win over connect_timeout above */
		kw[n] = "dbname", val[n++] = h->host;
	} else {
		kw[n] = "host", val[n++] = h->host;
		if (h->port != NULL)
			kw[n] = "port", val[n++] = h->port;
		kw[n] = "dbname", val[n++] = t->dbname;
		kw[n] = "user", val[n++] = t->user;
		kw[n] = "password", val[n++] = t->password;
	}
	kw[n] = NULL, val[n] = NULL;
	return PQconnectdbParams(kw, val, 1);
}

/* A working connection to h, or NULL with *why_r. */
static PGconn *pg_open_host(const struct map_impl *t, const struct pg_host *h, char **why_r)
{
	PGconn *db = pg_connect_host(t, h);
	char *e;

	if (db != NULL && PQstatus(db) == CONNECTION_OK && PQsetClientEncoding(db, t->encoding) == 0)
		return db;
	if (db == NULL) {
		*why_r = xasprintf("connect to pgsql server %s: out of memory", h->spec);
	} else if (PQstatus(db) == CONNECTION_OK) {
		*why_r = xasprintf("pgsql server %s: cannot set the encoding to %s", h->spec,
				   t->encoding);
	} else {
		e = pg_error_text(PQerrorMessage(db));
		*why_r = xasprintf("connect to pgsql server %s: %s", h->spec, e);
		free(e);
	}
	PQfinish(db);
	return NULL;
}

/* map_pool ops: one connection to the first server that takes it. */
static void *pg_connect(void *ctx, char **why_r)
{
	struct map_impl *t = ctx;
	bool *tried = xcalloc(t->nhosts, sizeof(*tried));
	char *why = NULL;

	for (;;) {
		size_t pick = t->nhosts, count = 0;
		enum pg_host_kind kind;
		time_t now = time(NULL);
		PGconn *db;

		/* The best kind among the servers not down, then one of those at random. */
		pthread_mutex_lock(&t->lock);
		for (kind = PGH_UNIX; kind <= PGH_URI && count == 0; kind++)
			for (size_t i = 0; i < t->nhosts; i++)
				if (!tried[i] && t->hosts[i].kind == kind
				    && t->hosts[i].dead_until <= now)
					count++;
		if (count > 0) {
			uint32_t r = arc4random_uniform((uint32_t)count);

			kind--;
			for (size_t i = 0; i < t->nhosts; i++)
				if (!tried[i] && t->hosts[i].kind == kind
				    && t->hosts[i].dead_until <= now && r-- == 0) {
					pick = i;
					break;
				}
		}
		pthread_mutex_unlock(&t->lock);
		if (pick == t->nhosts)
			break;
		tried[pick] = true;
		free(why);
		why = NULL;
		if ((db = pg_open_host(t, &t->hosts[pick], &why)) != NULL) {
			struct pg_conn *c = xmalloc(sizeof(*c));

			c->db = db;
			c->host = pick;
			free(tried);
			return c;
		}
		pthread_mutex_lock(&t->lock);
		t->hosts[pick].dead_until = time(NULL) + t->retry_interval;
		pthread_mutex_unlock(&t->lock);
	}
	free(tried);
	*why_r = why != NULL ? why
		 : xasprintf("every pgsql server failed less than retry_interval (%ld s) ago",
			     t->retry_interval);
	return NULL;
}

static void pg_disconnect(void *ctx, void *conn)
{
	struct pg_conn *c = conn;

	(void)ctx;
	PQfinish(c->db);
	free(c);
}

static const struct map_pool_ops pg_pool_ops = { pg_connect, pg_disconnect };

/* ---- queries ---- */

struct pg_escape_ctx {
	PGconn *db;
	bool	failed;
};

/* map_query_escape_fn: the connection's own quoting (its client encoding). */
static void pg_escape(void *ctx, const char *s, size_t len, struct buf *out)
{
	struct pg_escape_ctx *e = ctx;
	char *to = xmalloc(2 * len + 1);
	int err = 0;
	size_t n = PQescapeStringConn(e->db, to, s, len, &err);

	if (err)
		e->failed = true;
	else
		buf_append(out, to, n);
	free(to);
}

/* The result of q on c, or NULL with *why_r: the connection is then unusable. */
static PGresult *pg_exec(const struct map_impl *t, struct pg_conn *c, const char *q,
			 char **why_r)
{
	const char *spec = t->hosts[c->host].spec;
	struct timespec deadline, now;
	PGresult *res = NULL, *r;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += PGSQL_TIMEOUT;
	if (!PQsendQuery(c->db, q))
		goto conn_error;
	while (PQisBusy(c->db)) {
		struct pollfd pfd = { .fd = PQsocket(c->db), .events = POLLIN };
		long ms;
		int rc;

		clock_gettime(CLOCK_MONOTONIC, &now);
		ms = (deadline.tv_sec - now.tv_sec) * 1000
		     + (deadline.tv_nsec - now.tv_nsec) / 1000000;
		if (ms <= 0 || pfd.fd < 0 || (rc = poll(&pfd, 1, (int)ms)) == 0) {
			*why_r = xasprintf("pgsql server %s: no answer within %d s", spec,
					   PGSQL_TIMEOUT);
			return NULL;
		}
		if (rc < 0)
			continue;	/* EINTR */
		if (!PQconsumeInput(c->db))
			goto conn_error;
	}
	/* The last result of the command is the one that counts. */
	while ((r = PQgetResult(c->db)) != NULL) {
		PQclear(res);
		res = r;
	}
	if (res == NULL)
		goto conn_error;
	switch (PQresultStatus(res)) {
	case PGRES_TUPLES_OK:
	case PGRES_COMMAND_OK:
		return res;
	default: {
		char *e = pg_error_text(PQresultErrorMessage(res));

		*why_r = xasprintf("pgsql query failed on server %s: %s", spec,
				   *e ? e : PQresStatus(PQresultStatus(res)));
		free(e);
		PQclear(res);
		return NULL;
	}
	}
conn_error: {
		char *e = pg_error_text(PQerrorMessage(c->db));

		*why_r = xasprintf("pgsql query failed on server %s: %s", spec, e);
		free(e);
		PQclear(res);
		return NULL;
	}
}

static enum map_status pg_values(const struct map_impl *t, PGresult *res, const char *key,
				 char **value_r)
{
	struct map_query_result r;
	int rows = PQntuples(res), cols = PQnfields(res);

	map_query_result_init(&r, t->cfg, t->result_format, t->expansion_limit, key);
	for (int i = 0; i < rows; i++) {
		for (int j = 0; j < cols; j++) {
			if (map_query_result_add(&r, PQgetvalue(res, i, j)) < 0) {
				map_query_result_free(&r);
				return MAP_FAIL;
			}
		}
	}
	return (enum map_status)map_query_result_done(&r, value_r);
}

static enum map_status pgsql_lookup(struct map_impl *t, const char *key, char **value_r)
{
	struct buf q = BUF_INIT;
	char *why = NULL;
	enum map_status st;

	if (!map_remote_key_ok(t->table, key))
		return MAP_NOTFOUND;
	switch (map_query_domain(t->cfg, key)) {
	case 0:
		return MAP_NOTFOUND;
	case -1:
		return MAP_FAIL;
	}
	/* Without a connection: does the key have what the templates need? */
	if (map_query_expand(t->cfg, t->query, key, NULL, NULL, NULL, &q) != 1) {
		buf_free(&q);
		return MAP_NOTFOUND;
	}
	/* Each server that fails is marked down and the next is tried (Postfix). */
	for (size_t attempt = 0; attempt < t->nhosts; attempt++) {
		struct pg_escape_ctx esc;
		struct pg_conn *c;
		PGresult *res;

		free(why);
		why = NULL;
		if ((c = map_pool_get(t->pool, &why)) == NULL)
			break;
		esc.db = c->db;
		esc.failed = false;
		buf_reset(&q);
		map_query_expand(t->cfg, t->query, key, NULL, pg_escape, &esc, &q);
		if (esc.failed) {
			char *e = pg_error_text(PQerrorMessage(c->db));

			why = xasprintf("pgsql server %s: cannot quote the key: %s",
					t->hosts[c->host].spec, e);
			free(e);
			res = NULL;
		} else {
			res = pg_exec(t, c, buf_str(&q), &why);
		}
		if (res != NULL) {
			map_pool_put(t->pool, c, false);
			map_pool_outcome(t->pool, true, NULL);
			st = pg_values(t, res, key, value_r);
			PQclear(res);
			buf_free(&q);
			return st;
		}
		pthread_mutex_lock(&t->lock);
		t->hosts[c->host].dead_until = time(NULL) + t->retry_interval;
		pthread_mutex_unlock(&t->lock);
		map_pool_put(t->pool, c, true);
	}
	map_pool_outcome(t->pool, false, why);
	free(why);
	buf_free(&q);
	return MAP_FAIL;
}

/* mxgate check: every server in "hosts" takes a connection now. */
static int pgsql_probe(struct map_impl *t, char **why_r)
{
	for (size_t i = 0; i < t->nhosts; i++) {
		PGconn *db;

		if (i > 0 && strcmp(t->hosts[i].spec, t->hosts[i - 1].spec) == 0)
			continue;	/* the single host that pg_hosts_parse() listed twice */
		if ((db = pg_open_host(t, &t->hosts[i], why_r)) == NULL)
			return -1;
		PQfinish(db);
	}
	return 0;
}

/* ---- open and close ---- */

static void pgsql_close(struct map_impl *t)
{
	map_pool_free(&t->pool);
	for (size_t i = 0; i < t->nhosts; i++) {
		free(t->hosts[i].spec);
		free(t->hosts[i].host);
		free(t->hosts[i].port);
	}
	free(t->hosts);
	free(t->query);
	map_query_cfg_free(&t->cfg);
	pthread_mutex_destroy(&t->lock);
	free(t->table);
	free(t);
}

/* "query", else select_function, else the four obsolete pieces (pgsql_table(5)). */
static char *pg_query_template(const struct map_query_cfg *cfg, char **why_r)
{
	const char *q = map_query_cfg_str(cfg, "query", NULL);
	const char *fn = map_query_cfg_str(cfg, "select_function", NULL);
	const char *field, *table, *where;

	if (q != NULL)
		return xstrdup(q);
	if (fn != NULL)
		return xasprintf("SELECT %s('%%s')", fn);
	field = map_query_cfg_str(cfg, "select_field", "");
	table = map_query_cfg_str(cfg, "table", "");
	where = map_query_cfg_str(cfg, "where_field", "");
	if (*field == '\0' || *table == '\0' || *where == '\0') {
		*why_r = xasprintf("%s: no \"query\" (nor select_function, nor select_field, table "
				   "and where_field)", map_query_cfg_path(cfg));
		return NULL;
	}
	return xasprintf("SELECT %s FROM %s WHERE %s = '%%s' %s", field, table, where,
			 map_query_cfg_str(cfg, "additional_conditions", ""));
}

static struct map_impl *pgsql_open(const char *name, char **why_r)
{
	struct map_impl *t = xcalloc(1, sizeof(*t));
	char *why = NULL;
	long idle;

	pthread_mutex_init(&t->lock, NULL);
	t->table = xasprintf("pgsql:%s", name);
	if ((t->cfg = map_query_cfg_open("pgsql", name, &why)) == NULL)
		goto fail;
	t->user = map_query_cfg_str(t->cfg, "user", "");
	t->password = map_query_cfg_str(t->cfg, "password", "");
	t->dbname = map_query_cfg_str(t->cfg, "dbname", "");
	t->encoding = map_query_cfg_str(t->cfg, "encoding", "UTF8");
	t->result_format = map_query_cfg_str(t->cfg, "result_format", "%s");
	if ((t->retry_interval = map_query_cfg_int(t->cfg, "retry_interval", PGSQL_RETRY_DEFAULT,
						   &why)) < 0
	    || (idle = map_query_cfg_int(t->cfg, "idle_interval", PGSQL_IDLE_DEFAULT, &why)) < 0
	    || (t->expansion_limit = map_query_cfg_int(t->cfg, "expansion_limit", 0, &why)) < 0)
		goto fail;
	if (t->retry_interval < 1 || idle < 1) {
		const char *p = t->retry_interval < 1 ? "retry_interval" : "idle_interval";

		why = xasprintf("%s: bad numerical configuration: %s = %s (min 1)",
				map_query_cfg_where(t->cfg, p), p, map_query_cfg_str(t->cfg, p, ""));
		goto fail;
	}
	if ((t->query = pg_query_template(t->cfg, &why)) == NULL)
		goto fail;
	if (map_query_parse(t->cfg, t->query, true, &why) < 0
	    || map_query_parse(t->cfg, t->result_format, false, &why) < 0) {
		char *w = why;

		why = xasprintf("%s: %s", map_query_cfg_path(t->cfg), w);
		free(w);
		goto fail;
	}
	pg_hosts_parse(t, map_query_cfg_str(t->cfg, "hosts", ""));
	for (size_t i = 0; i < t->nhosts; i++) {
		if (t->hosts[i].kind != PGH_URI && *t->dbname == '\0') {
			why = xasprintf("%s: host target '%s' requires dbname setting",
					map_query_cfg_path(t->cfg), t->hosts[i].spec);
			goto fail;
		}
	}
	t->pool = map_pool_create(t->table, &pg_pool_ops, t, PGSQL_TIMEOUT, (int)idle);
	return t;
fail:
	*why_r = why;
	pgsql_close(t);
	return NULL;
}

const struct map_type map_type_pgsql = {
	.name = "pgsql",
	.flags = MAPT_REMOTE,
	.open = pgsql_open,
	.lookup = pgsql_lookup,
	.watch = NULL,
	.close = pgsql_close,
	.probe = pgsql_probe,
};
