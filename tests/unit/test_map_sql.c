/*
 * policy/map_sql: what the system tests (tests/system/test_tables_sql.py,
 * against postmap and a real mariadbd) do not reach:
 *   - open errors name the file and line: tls_* refused, no dbname, an
 *     incomplete legacy query, a bad port, a bad template, a missing
 *     sqlite file (and it is not created);
 *   - a mysql host that cannot be reached: every lookup is MAP_FAIL (never
 *     MAP_NOTFOUND), from many threads at once, the outage is logged once,
 *     and lookups in the dead time do not try to connect again;
 *   - the domain filter and a suppressed query answer MAP_NOTFOUND without
 *     asking the (dead) server;
 *   - one sqlite table looked up from 16 threads at once (its pool of
 *     read-only connections), every answer right.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "log/log.h"
#include "policy/maps.h"
#include "scratch.h"
#include "util/buf.h"
#include "util/xalloc.h"

static char tmpdir[] = "/tmp/mxgate-test-mapsql-XXXXXX";

static char *tpath(const char *name)
{
	return scratch_path(tmpdir, name);
}

/* Writes name in tmpdir; returns "type:PATH" (caller frees). */
static char *write_cf(const char *type, const char *name, const char *text)
{
	char *p = tpath(name), *spec;

	scratch_write(tmpdir, name, text);
	spec = xasprintf("%s:%s", type, p);
	free(p);
	return spec;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct map *open_ok(const char *spec)
{
	char *err = NULL;
	struct map *m = map_open(spec, &err);

	if (m == NULL)
		fail_msg("open %s: %s", spec, err);
	return m;
}

/* ---- the log, read back from a maillog_file ---- */

static char log_path[PATH_MAX];

static void log_start(void)
{
	char *err = NULL;

	snprintf(log_path, sizeof(log_path), "%s/maillog", tmpdir);
	unlink(log_path);
	assert_int_equal(log_open("mxgate", log_path, "mx.example.test", &err), 0);
}

/* Stops logging; how many lines contain needle. */
static int log_count(const char *needle)
{
	char line[2048];
	int n = 0;
	FILE *fp;

	log_close();
	fp = fopen(log_path, "r");
	assert_non_null(fp);
	while (fgets(line, sizeof(line), fp) != NULL)
		if (strstr(line, needle) != NULL)
			n++;
	fclose(fp);
	return n;
}

/* ---- open errors ---- */

static void expect_open_error(const char *type, const char *text, const char *want)
{
	char *spec = write_cf(type, "bad.cf", text), *err = NULL;
	struct map *m = map_open(spec, &err);

	assert_null(m);
	assert_non_null(err);
	if (strstr(err, want) == NULL)
		fail_msg("open error \"%s\" does not contain \"%s\"", err, want);
	free(err);
	free(spec);
}

static void test_open_errors(void **state)
{
	char *where = tpath("bad.cf");
	char *want;

	(void)state;
	want = xasprintf("%s, line 3: setting \"tls_key_file\" is not supported by mxgate", where);
	expect_open_error("mysql", "dbname = d\nquery = SELECT 1 WHERE '%s'\ntls_key_file = /k\n",
			  want);
	free(want);
	expect_open_error("mysql", "query = SELECT x FROM y WHERE z='%s'\n",
			  "\"dbname\" is not set");
	expect_open_error("mysql", "dbname = d\ntable = t\nselect_field = f\n",
			  "neither \"query\" nor \"where_field\" is set");
	want = xasprintf("%s, line 2: unknown port in \"db.example:nope\"", where);
	expect_open_error("mysql", "dbname = d\nhosts = unix:/x, db.example:nope\nquery = q '%s'\n",
			  want);
	free(want);
	want = xasprintf("%s, line 2: invalid query template", where);
	expect_open_error("mysql", "dbname = d\nquery = SELECT '%q'\n", want);
	free(want);
	want = xasprintf("%s, line 3: \"idle_interval\" must be at least 1", where);
	expect_open_error("mysql", "dbname = d\nquery = q '%s'\nidle_interval = 0\n", want);
	free(want);
	expect_open_error("sqlite", "query = SELECT 1\n", "\"dbpath\" is not set");
	free(where);

	/* A missing sqlite file is an open error, and read-only means it is not created. */
	{
		char *db = tpath("nonexistent.sqlite"), *text, *spec, *err = NULL;
		struct stat st;

		text = xasprintf("dbpath = %s\nquery = SELECT 1 WHERE '%%s'\n", db);
		spec = write_cf("sqlite", "missing.cf", text);
		assert_null(map_open(spec, &err));
		assert_non_null(strstr(err, "line 1: connect to sqlite database "));
		assert_non_null(strstr(err, ": open database \""));
		assert_int_equal(stat(db, &st), -1);
		assert_int_equal(errno, ENOENT);
		free(err);
		free(spec);
		free(text);
		free(db);
	}
}

/* ---- a mysql server that is not there ---- */

#define DEAD_THREADS	8
#define DEAD_LOOKUPS	25

struct dead_arg {
	struct map *m;
	int fail, other;
};

static void *dead_worker(void *p)
{
	struct dead_arg *a = p;

	for (int i = 0; i < DEAD_LOOKUPS; i++) {
		char *v = NULL;

		if (map_lookup(a->m, "alice@example.test", &v) == MAP_FAIL)
			a->fail++;
		else
			a->other++;
		free(v);
	}
	return NULL;
}

static void test_mysql_dead_host(void **state)
{
	char *sock = tpath("no-server.sock"), *text, *spec, *label;
	struct dead_arg args[DEAD_THREADS];
	pthread_t th[DEAD_THREADS];
	struct map *m;
	double t0;

	(void)state;
	text = xasprintf("hosts = unix:%s\nuser = u\npassword = p\ndbname = d\n"
			 "query = SELECT maildir FROM mailbox WHERE local_part='%%u' AND domain='%%d'\n"
			 "domain = example.test\n", sock);
	spec = write_cf("mysql", "dead.cf", text);
	m = open_ok(spec);
	log_start();
	for (int i = 0; i < DEAD_THREADS; i++) {
		args[i] = (struct dead_arg){ .m = m };
		assert_int_equal(pthread_create(&th[i], NULL, dead_worker, &args[i]), 0);
	}
	for (int i = 0; i < DEAD_THREADS; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(args[i].fail, DEAD_LOOKUPS);
		assert_int_equal(args[i].other, 0);
	}
	/* In the dead time a lookup fails at once: it does not connect again. */
	t0 = now();
	for (int i = 0; i < 200; i++)
		assert_int_equal(map_lookup(m, "bob@example.test", NULL), MAP_FAIL);
	assert_true(now() - t0 < 1.0);
	/* Not asked at all: outside the domain filter, or a query Postfix suppresses. */
	assert_int_equal(map_lookup(m, "carol@elsewhere.test", NULL), MAP_NOTFOUND);
	assert_int_equal(map_lookup(m, "example.test", NULL), MAP_NOTFOUND);
	assert_int_equal(map_lookup(m, "@example.test", NULL), MAP_NOTFOUND);
	label = xasprintf("warning: %s: server unavailable: connect to mysql server unix:%s: ",
			  spec, sock);
	assert_int_equal(log_count(label), 1);
	free(label);
	map_free(&m);
	free(spec);
	free(text);
	free(sock);
}

/* A socket that accepts and hangs up: the host is tried again after retry_interval. */
static void test_mysql_retry_interval(void **state)
{
	char *sock = tpath("hangup.sock"), *text, *spec, *label;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int lfd, accepted = 0, c;
	struct map *m;

	(void)state;
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
	assert_true(lfd >= 0);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(lfd, 16), 0);
	text = xasprintf("hosts = unix:%s\ndbname = d\nquery = SELECT 1 WHERE '%%s'\n"
			 "retry_interval = 1\nconnect_timeout = 2\n", sock);
	spec = write_cf("mysql", "retry.cf", text);
	m = open_ok(spec);
	log_start();
	/* The client waits for the server's greeting: hang up on it from here. */
	for (int round = 0; round < 2; round++) {
		pthread_t th;
		struct dead_arg a = { .m = m };
		double t0 = now();

		assert_int_equal(pthread_create(&th, NULL, dead_worker, &a), 0);
		while (now() - t0 < 1.5) {
			if ((c = accept(lfd, NULL, NULL)) >= 0) {
				accepted++;
				close(c);
			}
			usleep(10000);
		}
		assert_int_equal(pthread_join(th, NULL), 0);
		assert_int_equal(a.fail, DEAD_LOOKUPS);
		if (round == 0)
			sleep(1);	/* past retry_interval */
	}
	/* One connect at first, one again after the dead time; not one per lookup. */
	assert_true(accepted >= 2);
	assert_true(accepted <= 4);
	label = xasprintf("warning: %s: server unavailable: connect to mysql server unix:%s: ",
			  spec, sock);
	assert_int_equal(log_count(label), 1);
	free(label);
	map_free(&m);
	close(lfd);
	unlink(sock);
	free(spec);
	free(text);
	free(sock);
}

/* ---- one sqlite table, many threads ---- */

#define SQ_THREADS	16
#define SQ_LOOKUPS	300
#define SQ_USERS	50

struct sq_arg {
	struct map *m;
	int seed, wrong;
};

static void *sq_worker(void *p)
{
	struct sq_arg *a = p;

	for (int i = 0; i < SQ_LOOKUPS; i++) {
		int u = (a->seed * 7 + i) % (SQ_USERS + 5);	/* some are not there */
		char key[64], want[64];
		char *v = NULL;
		enum map_status st;

		snprintf(key, sizeof(key), "user%d@example.test", u);
		snprintf(want, sizeof(want), "example.test/user%d/,u%d", u, u);
		st = map_lookup(a->m, key, &v);
		if (u < SQ_USERS ? st != MAP_FOUND || strcmp(v, want) != 0 : st != MAP_NOTFOUND)
			a->wrong++;
		free(v);
	}
	return NULL;
}

static void test_sqlite_threads(void **state)
{
	char *db = tpath("threads.sqlite"), *text, *spec;
	struct sq_arg args[SQ_THREADS];
	pthread_t th[SQ_THREADS];
	struct buf sql = BUF_INIT;
	sqlite3 *h = NULL;
	struct map *m;

	(void)state;
	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	buf_puts(&sql, "CREATE TABLE mailbox (username TEXT, maildir TEXT);"
		       "CREATE TABLE alias (address TEXT, goto TEXT);");
	for (int u = 0; u < SQ_USERS; u++)
		buf_printf(&sql, "INSERT INTO mailbox VALUES ('user%d@example.test', "
				 "'example.test/user%d/');"
				 "INSERT INTO alias VALUES ('user%d@example.test', 'u%d');",
			   u, u, u, u);
	assert_int_equal(sqlite3_exec(h, buf_str(&sql), NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_close(h), SQLITE_OK);
	buf_free(&sql);
	text = xasprintf("dbpath = %s\n"
			 "query = SELECT maildir FROM mailbox WHERE username='%%s'"
			 " UNION ALL SELECT goto FROM alias WHERE address='%%s'\n", db);
	spec = write_cf("sqlite", "threads.cf", text);
	m = open_ok(spec);
	for (int i = 0; i < SQ_THREADS; i++) {
		args[i] = (struct sq_arg){ .m = m, .seed = i };
		assert_int_equal(pthread_create(&th[i], NULL, sq_worker, &args[i]), 0);
	}
	for (int i = 0; i < SQ_THREADS; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(args[i].wrong, 0);
	}
	map_free(&m);
	free(spec);
	free(text);
	free(db);
}

static int setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	char *cmd = xasprintf("rm -rf %s", tmpdir);

	(void)state;
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
	free(cmd);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test(test_mysql_dead_host),
		cmocka_unit_test(test_mysql_retry_interval),
		cmocka_unit_test(test_sqlite_threads),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
