/*
 * policy/map_pool: reuse of an idle connection, the cap and the bounded
 * wait (and a waiter woken by a put), a broken connection taking the idle
 * ones with it, a failed connect giving its slot back, and the outage and
 * recovery each logged once however many lookups fail.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>

#include <cmocka.h>

#include "policy/map_pool.h"
#include "util/xalloc.h"

struct fake {
	int	next_id;
	int	connects, disconnects;
	int	fail;		/* connect fails while set */
};

static void *fake_connect(void *ctx, char **why_r)
{
	struct fake *f = ctx;
	int *c;

	if (f->fail) {
		*why_r = xstrdup("connect to fake server: refused");
		return NULL;
	}
	c = xmalloc(sizeof(*c));
	*c = ++f->next_id;
	f->connects++;
	return c;
}

static void fake_disconnect(void *ctx, void *conn)
{
	struct fake *f = ctx;

	f->disconnects++;
	free(conn);
}

static const struct map_pool_ops fake_ops = { fake_connect, fake_disconnect };

static void test_idle_connection_is_reused(void **state)
{
	struct fake f = { 0 };
	struct map_pool *p = map_pool_create("fake:/t.cf", &fake_ops, &f, 1, 60);
	char *why = NULL;
	int *a, *b;

	(void)state;
	a = map_pool_get(p, &why);
	assert_non_null(a);
	map_pool_put(p, a, false);
	b = map_pool_get(p, &why);
	assert_ptr_equal(a, b);
	assert_int_equal(f.connects, 1);
	map_pool_put(p, b, false);
	map_pool_free(&p);
	assert_null(p);
	assert_int_equal(f.disconnects, 1);
}

struct putter {
	struct map_pool *p;
	void *conn;
};

static void *put_later(void *arg)
{
	struct putter *pu = arg;

	usleep(200 * 1000);
	map_pool_put(pu->p, pu->conn, false);
	return NULL;
}

static void test_cap_and_bounded_wait(void **state)
{
	struct fake f = { 0 };
	struct map_pool *p = map_pool_create("fake:/t.cf", &fake_ops, &f, 1, 60);
	void *c[MAP_POOL_CAP], *extra;
	struct putter pu;
	pthread_t th;
	char *why = NULL;

	(void)state;
	for (int i = 0; i < MAP_POOL_CAP; i++) {
		c[i] = map_pool_get(p, &why);
		assert_non_null(c[i]);
	}
	assert_int_equal(f.connects, MAP_POOL_CAP);
	/* All busy: a get gives up after wait_s. */
	extra = map_pool_get(p, &why);
	assert_null(extra);
	assert_non_null(why);
	assert_non_null(strstr(why, "stayed busy for 1 s"));
	free(why);
	why = NULL;
	/* A put while one waits hands that connection over. */
	pu.p = p;
	pu.conn = c[0];
	assert_int_equal(pthread_create(&th, NULL, put_later, &pu), 0);
	extra = map_pool_get(p, &why);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_ptr_equal(extra, c[0]);
	assert_int_equal(f.connects, MAP_POOL_CAP);
	for (int i = 0; i < MAP_POOL_CAP; i++)
		map_pool_put(p, c[i], false);
	map_pool_free(&p);
	assert_int_equal(f.disconnects, MAP_POOL_CAP);
}

static void test_broken_closes_idle_ones(void **state)
{
	struct fake f = { 0 };
	struct map_pool *p = map_pool_create("fake:/t.cf", &fake_ops, &f, 1, 60);
	char *why = NULL;
	int *a, *b, *c;

	(void)state;
	a = map_pool_get(p, &why);
	b = map_pool_get(p, &why);
	map_pool_put(p, a, false);
	map_pool_put(p, b, true);	/* the server dropped b: a is stale too */
	assert_int_equal(f.disconnects, 2);
	c = map_pool_get(p, &why);
	assert_non_null(c);
	assert_int_equal(*c, 3);	/* a fresh one */
	map_pool_put(p, c, false);
	map_pool_free(&p);
	assert_int_equal(f.disconnects, 3);
}

static void test_failed_connect_gives_slot_back(void **state)
{
	struct fake f = { .fail = 1 };
	struct map_pool *p = map_pool_create("fake:/t.cf", &fake_ops, &f, 1, 60);
	void *c[MAP_POOL_CAP];
	char *why = NULL;

	(void)state;
	for (int i = 0; i < MAP_POOL_CAP + 2; i++) {
		assert_null(map_pool_get(p, &why));
		assert_string_equal(why, "connect to fake server: refused");
		free(why);
		why = NULL;
	}
	f.fail = 0;
	for (int i = 0; i < MAP_POOL_CAP; i++)
		assert_non_null(c[i] = map_pool_get(p, &why));
	for (int i = 0; i < MAP_POOL_CAP; i++)
		map_pool_put(p, c[i], false);
	map_pool_free(&p);
}

/* What the pool logs (to stderr, as before log_open()). */
static char *captured(void (*fn)(struct map_pool *), struct map_pool *p)
{
	char path[] = "/tmp/mxgate-test-pool-XXXXXX", *text;
	int fd = mkstemp(path), saved = dup(2);
	long n;
	FILE *fp;

	assert_true(fd >= 0 && saved >= 0);
	fflush(stderr);
	assert_true(dup2(fd, 2) >= 0);
	fn(p);
	fflush(stderr);
	assert_true(dup2(saved, 2) >= 0);
	close(saved);
	fp = fdopen(fd, "r");
	assert_non_null(fp);
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	rewind(fp);
	text = xcalloc(1, (size_t)n + 1);
	assert_int_equal(fread(text, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	unlink(path);
	return text;
}

static void outage_and_back(struct map_pool *p)
{
	for (int i = 0; i < 5; i++)
		map_pool_outcome(p, false, "connect to fake server: refused");
	for (int i = 0; i < 3; i++)
		map_pool_outcome(p, true, NULL);
	map_pool_outcome(p, false, "timed out");
	map_pool_outcome(p, true, NULL);
}

static int count(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *s = hay; (s = strstr(s, needle)) != NULL; s += strlen(needle))
		n++;
	return n;
}

static void test_outage_logged_once(void **state)
{
	struct fake f = { 0 };
	struct map_pool *p = map_pool_create("fake:/t.cf", &fake_ops, &f, 1, 60);
	char *log;

	(void)state;
	/* Answers with no outage log nothing. */
	map_pool_outcome(p, true, NULL);
	log = captured(outage_and_back, p);
	assert_int_equal(count(log, "warning: fake:/t.cf: server unavailable: connect to fake "
			       "server: refused; lookups fail until it answers\n"), 1);
	assert_int_equal(count(log, "warning: fake:/t.cf: server unavailable: timed out;"), 1);
	assert_int_equal(count(log, "server unavailable"), 2);
	assert_int_equal(count(log, "fake:/t.cf: server answers again\n"), 2);
	free(log);
	map_pool_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_idle_connection_is_reused),
		cmocka_unit_test(test_cap_and_bounded_wait),
		cmocka_unit_test(test_broken_closes_idle_ones),
		cmocka_unit_test(test_failed_connect_gives_slot_back),
		cmocka_unit_test(test_outage_logged_once),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
