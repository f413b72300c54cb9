/*
 * policy/map_db, map_lmdb: hash, btree and lmdb tables built by the real
 * postmap(1): the open errors as Postfix words them (missing, corrupt file),
 * a file damaged after open answers MAP_FAIL (never "not found"), a lookup
 * waits for postmap's exclusive lock and gives up with MAP_FAIL after
 * MAPDB_LOCK_WAIT_MS, a rebuild is seen by map_changed(), and many threads
 * look up in one table at once.
 *
 * postmap (postfix, postfix-lmdb) must be installed: without it these tests
 * fail, they are never skipped.
 */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "policy/map_dbfile.h"
#include "policy/maps.h"
#include "util/xalloc.h"

#include "scratch.h"

static char tmpdir[] = "/tmp/mxgate-test-map-db-XXXXXX";

static const char *const types[] = { "hash", "btree", "lmdb" };
static const char *const suffixes[] = { ".db", ".db", ".lmdb" };
#define NTYPES 3

static char *tpath(const char *name)
{
	return scratch_path(tmpdir, name);
}

static void write_file(const char *name, const char *text)
{
	scratch_write(tmpdir, name, text);
}

/* postmap against our own scratch main.cf, so /etc/postfix is not needed. */
static void run_postmap(const char *flags, const char *type, const char *name)
{
	char *cmd = xasprintf("postmap -c %s %s %s:%s/%s", tmpdir, flags, type, tmpdir, name);
	int rc = system(cmd);

	if (rc != 0)
		fail_msg("\"%s\" failed (status %d): are postfix and postfix-lmdb installed?", cmd, rc);
	free(cmd);
}

static char *spec_of(const char *type, const char *name)
{
	return xasprintf("%s:%s/%s", type, tmpdir, name);
}

static struct map *open_ok(const char *spec)
{
	char *err = NULL;
	struct map *m = map_open(spec, &err);

	if (m == NULL)
		fail_msg("%s: %s", spec, err);
	return m;
}

static int group_setup(void **state)
{
	FILE *fp;
	char *p;

	if (mkdtemp(tmpdir) == NULL)
		return -1;
	p = tpath("main.cf");
	fp = fopen(p, "w");
	free(p);
	if (fp == NULL)
		return -1;
	fputs("compatibility_level = 3.6\nmail_owner = postfix\nsetgid_group = postdrop\n", fp);
	fclose(fp);
	return 0;
}

static int group_teardown(void **state)
{
	char *cmd = xasprintf("rm -rf %s", tmpdir);
	int rc = system(cmd);

	free(cmd);
	return rc == 0 ? 0 : -1;
}

static void test_open_errors(void **state)
{
	for (int i = 0; i < NTYPES; i++) {
		char *spec = spec_of(types[i], "nonexistent"), *err = NULL;
		char *want = xasprintf("%s: open database %s/nonexistent%s: No such file or directory",
				       spec, tmpdir, suffixes[i]);
		char *bad = xasprintf("corrupt-%s", types[i]), *badpath = tpath(bad);
		char *badfile = xasprintf("%s%s", badpath, suffixes[i]);
		char *badspec = spec_of(types[i], bad);
		char junk[8192];
		FILE *fp;

		assert_null(map_open(spec, &err));
		assert_non_null(err);
		assert_string_equal(err, want);
		free(err);

		/* Not a database: "Invalid argument" (BDB), "MDB_INVALID" (LMDB). */
		for (size_t j = 0; j < sizeof(junk); j++)
			junk[j] = (char)(j * 7 + 3);
		fp = fopen(badfile, "w");
		assert_non_null(fp);
		assert_int_equal(fwrite(junk, 1, sizeof(junk), fp), sizeof(junk));
		assert_int_equal(fclose(fp), 0);
		err = NULL;
		assert_null(map_open(badspec, &err));
		assert_non_null(err);
		free(want);
		want = xasprintf("%s: open database %s%s: %s", badspec, badpath, suffixes[i],
				 i < 2 ? "Invalid argument" : "MDB_INVALID");
		if (strncmp(err, want, strlen(want)) != 0)
			fail_msg("error \"%s\", want \"%s...\"", err, want);
		free(err);
		free(want);
		free(spec);
		free(bad);
		free(badpath);
		free(badfile);
		free(badspec);
	}
}

/* hash and btree read NAME.db; each refuses the other's format. */
static void test_wrong_format(void **state)
{
	char *spec = spec_of("btree", "fmt"), *err = NULL;
	struct map *m;
	char *v = NULL;

	write_file("fmt", "k v\n");
	run_postmap("", "hash", "fmt");
	assert_null(map_open(spec, &err));
	assert_non_null(strstr(err, "fmt.db: Invalid argument"));
	free(err);
	free(spec);
	spec = spec_of("hash", "fmt");
	m = open_ok(spec);
	assert_int_equal(map_lookup(m, "K", &v), MAP_FOUND);
	assert_string_equal(v, "v");
	free(v);
	map_free(&m);
	free(spec);
}

/*
 * A file that is damaged after the table was opened (not by postmap: it
 * truncates and rewrites under its lock) answers MAP_FAIL, not "not found".
 */
static void test_damaged_after_open(void **state)
{
	for (int i = 0; i < 2; i++) {	/* lmdb maps the file: cutting it would be SIGBUS */
		char *spec = spec_of(types[i], "damaged"), *p = tpath("damaged.db");
		struct map *m;
		char *v = NULL;
		int fd;

		write_file("damaged", "a 1\nb 2\n");
		run_postmap("", types[i], "damaged");
		m = open_ok(spec);
		assert_int_equal(map_lookup(m, "a", &v), MAP_FOUND);
		assert_string_equal(v, "1");
		free(v);
		fd = open(p, O_WRONLY | O_TRUNC);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, "garbage", 7), 7);
		close(fd);
		assert_int_equal(map_lookup(m, "a", &v), MAP_FAIL);
		assert_null(v);
		assert_int_equal(map_lookup(m, "zzz", &v), MAP_FAIL);
		assert_true(map_changed(m));
		map_free(&m);
		free(spec);
		free(p);
	}
}

/* The exclusive lock postmap holds, taken by a thread of ours for a while. */
struct holder {
	const char *path;
	int style;		/* enum mapdb_lock_style */
	int ms;
	int fd;
};

static void hold_lock(struct holder *h)
{
	h->fd = open(h->path, O_RDWR);
	assert_true(h->fd >= 0);
	if (h->style == MAPDB_LOCK_FLOCK) {
		assert_int_equal(flock(h->fd, LOCK_EX), 0);
	} else {
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

		/* A classic POSIX lock, as postmap takes (it conflicts with our OFD lock). */
		assert_int_equal(fcntl(h->fd, F_SETLK, &fl), 0);
	}
}

static void *release_later(void *arg)
{
	struct holder *h = arg;
	struct timespec ts = { h->ms / 1000, (h->ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
	close(h->fd);	/* drops the lock */
	return NULL;
}

static long ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

static void test_lock_wait(void **state)
{
	for (int i = 0; i < NTYPES; i++) {
		char *name = xasprintf("locked-%s", types[i]), *spec = spec_of(types[i], name);
		char *base = tpath(name), *file = xasprintf("%s%s", base, suffixes[i]);
		struct holder h = { file, i < 2 ? MAPDB_LOCK_FLOCK : MAPDB_LOCK_FCNTL, 300, -1 };
		struct timespec t0;
		struct map *m;
		pthread_t tid;
		char *v = NULL;

		write_file(name, "a 1\n");
		run_postmap("", types[i], name);
		m = open_ok(spec);

		/* A lock held for 300 ms: the lookup waits for it, then answers. */
		hold_lock(&h);
		assert_int_equal(pthread_create(&tid, NULL, release_later, &h), 0);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		assert_int_equal(map_lookup(m, "a", &v), MAP_FOUND);
		assert_string_equal(v, "1");
		free(v);
		assert_true(ms_since(&t0) >= 250);
		pthread_join(tid, NULL);

		/* Held longer than MAPDB_LOCK_WAIT_MS: MAP_FAIL, never "not found". */
		if (i == 0) {
			h.ms = MAPDB_LOCK_WAIT_MS + 2000;
			hold_lock(&h);
			assert_int_equal(pthread_create(&tid, NULL, release_later, &h), 0);
			clock_gettime(CLOCK_MONOTONIC, &t0);
			assert_int_equal(map_lookup(m, "a", &v), MAP_FAIL);
			assert_null(v);
			assert_true(ms_since(&t0) >= MAPDB_LOCK_WAIT_MS);
			pthread_join(tid, NULL);
			assert_int_equal(map_lookup(m, "a", &v), MAP_FOUND);
			free(v);
		}
		map_free(&m);
		free(name);
		free(spec);
		free(base);
		free(file);
	}
}

/* postmap rewrites the file: map_changed() says so; a new open sees the new table. */
static void test_changed(void **state)
{
	for (int i = 0; i < NTYPES; i++) {
		char *name = xasprintf("chg-%s", types[i]), *spec = spec_of(types[i], name);
		struct map *m, *m2;
		char *v = NULL;
		struct timespec ts = { 0, 20 * 1000000L };

		write_file(name, "a old\n");
		run_postmap("", types[i], name);
		m = open_ok(spec);
		assert_true(map_is_indexed(m));
		assert_false(map_changed(m));
		nanosleep(&ts, NULL);
		write_file(name, "a new\nb 2\n");
		run_postmap("", types[i], name);
		assert_true(map_changed(m));
		/* The open table answers from the rebuilt file, whole. */
		assert_int_equal(map_lookup(m, "b", &v), MAP_FOUND);
		assert_string_equal(v, "2");
		free(v);
		m2 = open_ok(spec);
		assert_false(map_changed(m2));
		assert_int_equal(map_lookup(m2, "A", &v), MAP_FOUND);
		assert_string_equal(v, "new");
		free(v);
		map_free(&m);
		map_free(&m2);
		free(name);
		free(spec);
	}
}

/* Many threads on one table at once (and postmap -N's form). */
#define NTHREADS 8
#define NLOOKUPS 3000

struct thr {
	const struct map *m;
	int errors;
};

static void *thr_main(void *arg)
{
	struct thr *t = arg;

	for (int i = 0; i < NLOOKUPS; i++) {
		char key[64], want[64], *v = NULL;
		int n = i % 150;
		enum map_status st;

		snprintf(key, sizeof(key), "user%d@Example.TEST", n);
		snprintf(want, sizeof(want), "value-%d", n);
		st = map_lookup(t->m, n < 100 ? key : "nosuch@example.test", &v);
		if (n < 100 && (st != MAP_FOUND || strcmp(v, want) != 0))
			t->errors++;
		if (n >= 100 && st != MAP_NOTFOUND)
			t->errors++;
		free(v);
	}
	return NULL;
}

static void test_threads(void **state)
{
	FILE *fp;
	char *p = tpath("thr");

	fp = fopen(p, "w");
	assert_non_null(fp);
	for (int i = 0; i < 100; i++)
		fprintf(fp, "user%d@example.test value-%d\n", i, i);
	assert_int_equal(fclose(fp), 0);
	free(p);
	for (int i = 0; i < NTYPES * 2; i++) {
		const char *type = types[i % NTYPES];
		char *spec = spec_of(type, "thr");
		pthread_t tid[NTHREADS];
		struct thr t[NTHREADS];
		struct map *m;

		run_postmap(i < NTYPES ? "" : "-N", type, "thr");
		m = open_ok(spec);
		for (int j = 0; j < NTHREADS; j++) {
			t[j].m = m;
			t[j].errors = 0;
			assert_int_equal(pthread_create(&tid[j], NULL, thr_main, &t[j]), 0);
		}
		for (int j = 0; j < NTHREADS; j++) {
			pthread_join(tid[j], NULL);
			if (t[j].errors != 0)
				fail_msg("%s%s: thread %d: %d wrong answers", spec,
					 i < NTYPES ? "" : " (-N)", j, t[j].errors);
		}
		map_free(&m);
		free(spec);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test(test_wrong_format),
		cmocka_unit_test(test_damaged_after_open),
		cmocka_unit_test(test_lock_wait),
		cmocka_unit_test(test_changed),
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
