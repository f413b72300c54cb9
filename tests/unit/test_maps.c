/*
 * policy/maps: texthash parsing (comments, continuation lines, case folding,
 * duplicates), cdb files built by the real postmap(1) with and without -N and
 * by libcdb, unix:passwd.byname, static, inline, proxy:, refused types,
 * maplist order and failure, change detection, and lookups from many threads.
 *
 * postmap must be installed (Debian package postfix-cdb for cdb): without it
 * the cdb tests fail, they are never skipped.
 */
#include <cdb.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "policy/maps.h"
#include "util/buf.h"
#include "util/xalloc.h"

#include "scratch.h"

static char tmpdir[] = "/tmp/mxgate-test-maps-XXXXXX";

static char *tpath(const char *name)
{
	return scratch_path(tmpdir, name);
}

static void write_file(const char *name, const char *text)
{
	scratch_write(tmpdir, name, text);
}

/* Run postmap against our own scratch main.cf, so /etc/postfix is not needed. */
static void run_postmap(const char *flags, const char *name)
{
	char *cmd = xasprintf("postmap -c %s %s cdb:%s/%s", tmpdir, flags, tmpdir, name);
	int rc = system(cmd);

	if (rc != 0)
		fail_msg("\"%s\" failed (status %d): is postfix-cdb installed?", cmd, rc);
	free(cmd);
}

static const char table_text[] =
	"# a comment\n"
	"\n"
	"Foo@Example.COM    v1\n"
	"bar\tv2 with  spaces   \n"
	"baz  first\n"
	"  continued here\n"
	"   # indented comment\n"
	"qux  x\n"
	"\tand more\n"
	"dup  first\n"
	"dup  second\n"
	"novalue\n"
	"@example.org  catchall\n"
	"user@virt.test  virt.test/user/\n";

/* bad.cdb: every hash table points past the end of the file. */
static void write_corrupt_cdb(void)
{
	char *p = tpath("bad.cdb");
	unsigned char hdr[2048 + 8];
	FILE *fp;

	memset(hdr, 0, sizeof(hdr));
	for (int i = 0; i < 256; i++) {
		cdb_pack(2048, hdr + i * 8);
		cdb_pack(1000, hdr + i * 8 + 4);
	}
	fp = fopen(p, "w");
	assert_non_null(fp);
	assert_int_equal(fwrite(hdr, 1, sizeof(hdr), fp), sizeof(hdr));
	fclose(fp);
	free(p);
}

static int group_setup(void **state)
{
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	write_file("main.cf", "compatibility_level = 3.6\n");
	write_file("table", table_text);
	write_file("table0", table_text);
	run_postmap("", "table");
	run_postmap("-N", "table0");
	write_corrupt_cdb();
	return 0;
}

static int group_teardown(void **state)
{
	char *cmd = xasprintf("rm -rf %s", tmpdir);
	int rc = system(cmd);

	free(cmd);
	return rc == 0 ? 0 : -1;
}

struct lookup_case {
	const char *key;
	enum map_status status;
	const char *value;
};

/* The same answers from texthash and from both postmap-built cdb files. */
static const struct lookup_case table_cases[] = {
	{ "foo@example.com", MAP_FOUND, "v1" },
	{ "FOO@EXAMPLE.COM", MAP_FOUND, "v1" },
	{ "Foo@Example.COM", MAP_FOUND, "v1" },
	{ "bar", MAP_FOUND, "v2 with  spaces" },
	{ "baz", MAP_FOUND, "first  continued here" },
	{ "qux", MAP_FOUND, "x\tand more" },
	{ "dup", MAP_FOUND, "first" },
	{ "novalue", MAP_NOTFOUND, NULL },
	{ "@example.org", MAP_FOUND, "catchall" },
	{ "user@virt.test", MAP_FOUND, "virt.test/user/" },
	{ "nosuch", MAP_NOTFOUND, NULL },
	{ "", MAP_NOTFOUND, NULL },
	{ "#", MAP_NOTFOUND, NULL },
	{ "a comment", MAP_NOTFOUND, NULL },
	{ "continued", MAP_NOTFOUND, NULL },
	{ "foo", MAP_NOTFOUND, NULL },
};

static void check_cases(const char *spec, const struct lookup_case *cases, size_t n)
{
	char *err = NULL;
	struct map *m = map_open(spec, &err);

	if (m == NULL)
		fail_msg("map_open(%s): %s", spec, err);
	for (size_t i = 0; i < n; i++) {
		char *value = (char *)"junk";
		enum map_status st = map_lookup(m, cases[i].key, &value);

		if (st != cases[i].status)
			fail_msg("%s: key \"%s\": status %d, want %d", spec, cases[i].key, st,
				 cases[i].status);
		if (cases[i].value) {
			assert_non_null(value);
			if (strcmp(value, cases[i].value) != 0)
				fail_msg("%s: key \"%s\": value \"%s\", want \"%s\"", spec,
					 cases[i].key, value, cases[i].value);
		} else {
			assert_null(value);
		}
		free(value);
		/* value_r may be NULL */
		assert_int_equal(map_lookup(m, cases[i].key, NULL), cases[i].status);
	}
	map_free(&m);
	assert_null(m);
}

static void test_texthash(void **state)
{
	char *spec = xasprintf("texthash:%s/table", tmpdir);
	char *pspec = xasprintf("proxy:texthash:%s/table", tmpdir);

	check_cases(spec, table_cases, sizeof(table_cases) / sizeof(table_cases[0]));
	check_cases(pspec, table_cases, sizeof(table_cases) / sizeof(table_cases[0]));
	free(spec);
	free(pspec);
}

static void test_cdb_postmap(void **state)
{
	char *spec = xasprintf("cdb:%s/table", tmpdir);
	char *spec0 = xasprintf("proxy:cdb:%s/table0", tmpdir);

	check_cases(spec, table_cases, sizeof(table_cases) / sizeof(table_cases[0]));
	check_cases(spec0, table_cases, sizeof(table_cases) / sizeof(table_cases[0]));
	free(spec);
	free(spec0);
}

/* The file format as postmap writes it, checked against our reading of it. */
static void test_cdb_postmap_format(void **state)
{
	char *p = tpath("table.cdb"), *p0 = tpath("table0.cdb");
	struct cdb c;
	int fd;

	fd = open(p, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(cdb_init(&c, fd), 0);
	assert_int_equal(cdb_find(&c, "foo@example.com", 15), 1);	/* no NUL, folded */
	assert_int_equal(cdb_datalen(&c), 2);
	cdb_free(&c);
	close(fd);
	fd = open(p0, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(cdb_init(&c, fd), 0);
	assert_int_equal(cdb_find(&c, "foo@example.com", 15), 0);
	assert_int_equal(cdb_find(&c, "foo@example.com", 16), 1);	/* -N: with NUL */
	assert_int_equal(cdb_datalen(&c), 3);
	cdb_free(&c);
	close(fd);
	free(p);
	free(p0);
}

/* A file from libcdb's own writer, with a NUL in one value's middle. */
static void test_cdb_libcdb(void **state)
{
	char *p = tpath("own.cdb"), *spec = tpath("own");
	char *fullspec = xasprintf("cdb:%s", spec);
	struct cdb_make cm;
	char *err = NULL, *v = NULL;
	struct map *m;
	int fd;

	fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(cdb_make_start(&cm, fd), 0);
	assert_int_equal(cdb_make_add(&cm, "alpha", 5, "one", 3), 0);
	assert_int_equal(cdb_make_add(&cm, "beta\0", 5, "two\0", 4), 0);
	assert_int_equal(cdb_make_add(&cm, "gamma", 5, "thr\0ee", 6), 0);
	assert_int_equal(cdb_make_finish(&cm), 0);
	close(fd);
	m = map_open(fullspec, &err);
	assert_non_null(m);
	assert_int_equal(map_lookup(m, "ALPHA", &v), MAP_FOUND);
	assert_string_equal(v, "one");
	free(v);
	assert_int_equal(map_lookup(m, "beta", &v), MAP_FOUND);
	assert_string_equal(v, "two");
	free(v);
	assert_int_equal(map_lookup(m, "gamma", &v), MAP_FOUND);
	assert_string_equal(v, "thr");
	free(v);
	assert_int_equal(map_lookup(m, "delta", &v), MAP_NOTFOUND);
	assert_null(v);
	map_free(&m);
	free(p);
	free(spec);
	free(fullspec);
}

/* A corrupt cdb (hash table pointing past the end) answers MAP_FAIL, not "not found". */
static void test_cdb_corrupt(void **state)
{
	char *spec = xasprintf("cdb:%s/bad", tmpdir);
	char *err = NULL, *v = (char *)"junk";
	struct map *m;

	m = map_open(spec, &err);
	assert_non_null(m);
	assert_int_equal(map_lookup(m, "anything", &v), MAP_FAIL);
	assert_null(v);
	map_free(&m);
	free(spec);
}

static void test_passwd(void **state)
{
	char *err = NULL, *v = NULL;
	struct map *m = map_open("proxy:unix:passwd.byname", &err);
	int colons = 0;

	assert_non_null(m);
	assert_string_equal(map_type_name(m), "unix");
	assert_string_equal(map_spec(m), "proxy:unix:passwd.byname");
	assert_int_equal(map_lookup(m, "root", &v), MAP_FOUND);
	assert_non_null(v);
	assert_int_equal(strncmp(v, "root:", 5), 0);
	for (const char *c = v; *c; c++)
		colons += *c == ':';
	assert_int_equal(colons, 6);
	assert_non_null(strstr(v, ":0:0:"));
	free(v);
	assert_int_equal(map_lookup(m, "ROOT", &v), MAP_FOUND);	/* keys are folded */
	free(v);
	assert_int_equal(map_lookup(m, "no-such-user-mxgate", &v), MAP_NOTFOUND);
	assert_null(v);
	assert_int_equal(map_lookup(m, "root@local.test", NULL), MAP_NOTFOUND);
	assert_int_equal(map_lookup(m, "", NULL), MAP_NOTFOUND);
	map_free(&m);
}

static void test_static_inline(void **state)
{
	static const struct {
		const char *spec, *key;
		enum map_status st;
		const char *value;
	} cases[] = {
		{ "static:5000", "anything@anywhere", MAP_FOUND, "5000" },
		{ "static:5000", "", MAP_FOUND, "5000" },
		{ "static:{ a b }", "x", MAP_FOUND, "a b" },
		{ "static:{}", "x", MAP_FOUND, "" },
		{ "proxy:static:vmail", "x", MAP_FOUND, "vmail" },
		{ "inline:{ K1=v1, k2=v2 }", "k1", MAP_FOUND, "v1" },
		{ "inline:{ K1=v1, k2=v2 }", "K2", MAP_FOUND, "v2" },
		{ "inline:{ K1=v1, k2=v2 }", "k3", MAP_NOTFOUND, NULL },
		{ "inline:{k1=a=b}", "k1", MAP_FOUND, "a=b" },
		{ "inline:{ k1=v1, { k2 = v 2 }, k3=v3 }", "k2", MAP_FOUND, "v 2" },
		{ "inline:{ k1=v1, { k2 = v 2 }, k3=v3 }", "k3", MAP_FOUND, "v3" },
		{ "inline:{ k1=v1, k3= }", "k3", MAP_NOTFOUND, NULL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *err = NULL, *v = NULL;
		struct map *m = map_open(cases[i].spec, &err);

		if (m == NULL)
			fail_msg("%s: %s", cases[i].spec, err);
		assert_int_equal(map_lookup(m, cases[i].key, &v), cases[i].st);
		if (cases[i].value)
			assert_string_equal(v, cases[i].value);
		else
			assert_null(v);
		free(v);
		assert_false(map_changed(m));
		map_free(&m);
	}
}

static void test_refused(void **state)
{
	static const struct {
		const char *spec, *want;
	} cases[] = {
		{ "dbm:/etc/aliases",
		  "unsupported map type \"dbm\" in \"dbm:/etc/aliases\": mxgate supports"
		  " texthash, cdb, unix:passwd.byname, static, inline" },
		{ "hash:/nonexistent/mxgate/file",
		  "hash:/nonexistent/mxgate/file: open database /nonexistent/mxgate/file.db:"
		  " No such file or directory" },
		{ "btree:/nonexistent/mxgate/file",
		  "open database /nonexistent/mxgate/file.db: No such file or directory" },
		{ "lmdb:/nonexistent/mxgate/file",
		  "open database /nonexistent/mxgate/file.lmdb: No such file or directory" },
		{ "nis:mail.aliases", "unsupported map type \"nis\"" },
		{ "ldap:/nonexistent/mxgate/ldap.cf",
		  "ldap:/nonexistent/mxgate/ldap.cf: open \"/nonexistent/mxgate/ldap.cf\": No such file" },
		{ "mysql:/nonexistent/mxgate/my.cf", "open \"/nonexistent/mxgate/my.cf\"" },
		{ "pgsql:pgsqlname", "\"pgsqlname\": mxgate reads a table's settings from a file" },
		{ "sqlite:/nonexistent/mxgate/x.cf", "open \"/nonexistent/mxgate/x.cf\"" },
		{ "mysql:mysqlname", "give its path" },
		{ "regexp:/nonexistent/mxgate/re", "regexp:/nonexistent/mxgate/re: open /nonexistent/mxgate/re: No such file or directory" },
		{ "pcre:/nonexistent/mxgate/re", "pcre:/nonexistent/mxgate/re: open /nonexistent/mxgate/re: No such file or directory" },
		{ "cidr:/nonexistent/mxgate/c", "cidr:/nonexistent/mxgate/c: open /nonexistent/mxgate/c: No such file or directory" },
		{ "proxy:dbm:/etc/aliases", "unsupported map type \"dbm\" in \"proxy:dbm:/etc/aliases\"" },
		{ "unix:group.byname", "unsupported map \"unix:group.byname\"" },
		{ "/etc/postfix/file", "expecting \"type:name\" form" },
		{ "static:", "expecting \"type:name\" form" },
		{ ":x", "expecting \"type:name\" form" },
		{ "inline:{}", "bad syntax" },
		{ "inline:k=v", "bad syntax" },
		{ "inline:{ k1 = a b }", "bad syntax" },
		{ "inline:{ {k=v }", "bad syntax" },
		{ "static:{ab", "unbalanced braces" },
		{ "texthash:/nonexistent/mxgate/file", "/nonexistent/mxgate/file" },
		{ "cdb:/nonexistent/mxgate/file", "/nonexistent/mxgate/file.cdb" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *err = NULL;
		struct map *m = map_open(cases[i].spec, &err);

		if (m != NULL)
			fail_msg("%s: opened, want refusal", cases[i].spec);
		assert_non_null(err);
		if (strstr(err, cases[i].want) == NULL)
			fail_msg("%s: error \"%s\" lacks \"%s\"", cases[i].spec, err, cases[i].want);
		free(err);
	}
}

static void test_maplist(void **state)
{
	char *t1 = xasprintf("texthash:%s/l1", tmpdir), *t2 = xasprintf("texthash:%s/l2", tmpdir);
	char *bad = xasprintf("cdb:%s/bad", tmpdir);
	char *specs[] = { t1, t2, (char *)"static:last" };
	char *specs_fail[] = { t1, bad, t2 };
	char *specs_refused[] = { t1, (char *)"dbm:/etc/aliases" };
	const struct map *in = NULL;
	char *err = NULL, *v = NULL;
	struct maplist *l;

	write_file("l1", "a from-l1\n");
	write_file("l2", "a from-l2\nb from-l2\n");
	l = maplist_open(specs, 3, &err);
	assert_non_null(l);
	assert_false(maplist_empty(l));
	assert_int_equal(maplist_count(l), 3);
	assert_int_equal(maplist_lookup(l, "a", &v, &in), MAP_FOUND);
	assert_string_equal(v, "from-l1");
	assert_string_equal(map_spec(in), t1);
	free(v);
	assert_int_equal(maplist_lookup(l, "B", &v, &in), MAP_FOUND);
	assert_string_equal(v, "from-l2");
	assert_string_equal(map_spec(in), t2);
	free(v);
	assert_int_equal(maplist_lookup(l, "zzz", &v, &in), MAP_FOUND);
	assert_string_equal(v, "last");
	assert_string_equal(map_type_name(in), "static");
	free(v);
	maplist_free(&l);
	assert_null(l);

	/* A failing table stops the search: a later one must not answer for it. */
	l = maplist_open(specs_fail, 3, &err);
	assert_non_null(l);
	assert_int_equal(maplist_lookup(l, "a", &v, NULL), MAP_FOUND);	/* l1 answers first */
	free(v);
	assert_int_equal(maplist_lookup(l, "b", &v, &in), MAP_FAIL);
	assert_null(v);
	assert_null(in);
	maplist_free(&l);

	l = maplist_open(specs_refused, 2, &err);
	assert_null(l);
	assert_non_null(strstr(err, "\"dbm\""));
	free(err);

	l = maplist_open(NULL, 0, &err);
	assert_non_null(l);
	assert_true(maplist_empty(l));
	assert_int_equal(maplist_lookup(l, "a", &v, &in), MAP_NOTFOUND);
	assert_null(v);
	maplist_free(&l);
	assert_true(maplist_empty(NULL));
	free(t1);
	free(t2);
	free(bad);
}

/* Every spec that cannot be opened is reported, in order; nothing stays open. */
struct problems {
	char *spec[4];
	char *why[4];
	int n;
};

static void note_problem(void *ctx, const char *spec, const char *why)
{
	struct problems *pr = ctx;

	assert_true(pr->n < 4);
	pr->spec[pr->n] = xstrdup(spec);
	pr->why[pr->n] = xstrdup(why);
	pr->n++;
}

static void test_maplist_report(void **state)
{
	char *t1 = xasprintf("texthash:%s/r1", tmpdir), *gone = xasprintf("texthash:%s/gone", tmpdir);
	char *specs[] = { (char *)"dbm:/etc/aliases", t1, gone, (char *)"ldap:/etc/x.cf" };
	struct problems pr = { { NULL }, { NULL }, 0 };
	struct maplist *l;

	write_file("r1", "a b\n");
	l = maplist_open_report(specs, 4, note_problem, &pr);
	assert_null(l);
	assert_int_equal(pr.n, 3);
	assert_string_equal(pr.spec[0], "dbm:/etc/aliases");
	assert_non_null(strstr(pr.why[0], "unsupported map type \"dbm\" in \"dbm:/etc/aliases\""));
	assert_string_equal(pr.spec[1], gone);
	assert_non_null(strstr(pr.why[1], "No such file or directory"));
	assert_non_null(strstr(pr.why[1], gone));
	assert_string_equal(pr.spec[2], "ldap:/etc/x.cf");
	assert_non_null(strstr(pr.why[2], "ldap:/etc/x.cf: open \"/etc/x.cf\": No such file"));
	for (int i = 0; i < pr.n; i++) {
		free(pr.spec[i]);
		free(pr.why[i]);
	}
	pr.n = 0;
	l = maplist_open_report(specs + 1, 1, note_problem, &pr);
	assert_non_null(l);
	assert_int_equal(pr.n, 0);
	assert_int_equal(maplist_count(l), 1);
	maplist_free(&l);
	free(t1);
	free(gone);
}

static void test_changed(void **state)
{
	char *spec = xasprintf("texthash:%s/ch", tmpdir);
	char *cspec = xasprintf("cdb:%s/table", tmpdir);
	char *err = NULL;
	struct map *m, *c;
	struct maplist *l;
	char *specs[] = { (char *)"static:x", spec };

	write_file("ch", "a 1\n");
	m = map_open(spec, &err);
	c = map_open(cspec, &err);
	l = maplist_open(specs, 2, &err);
	assert_non_null(m);
	assert_non_null(c);
	assert_non_null(l);
	assert_false(map_changed(m));
	assert_false(map_changed(c));
	assert_false(maplist_changed(l));
	/* A text table changes at a reload, as in Postfix: not watched. */
	write_file("ch", "a 22\n");
	assert_false(map_changed(m));
	assert_false(map_is_indexed(m));
	assert_null(maplist_changed(l));
	assert_false(maplist_has_indexed(l));
	/* An indexed one is: postmap renames a new file into place. */
	assert_true(map_is_indexed(c));
	run_postmap("", "table");
	assert_true(map_changed(c));
	map_free(&m);
	map_free(&c);
	maplist_free(&l);
	free(spec);
	free(cspec);
}

/* Many threads on one map at once: run this under -fsanitize=thread too. */
#define NTHREADS 8
#define NLOOKUPS 2000

struct thr {
	const struct maplist *l;
	int errors;
};

static void *thr_main(void *arg)
{
	struct thr *t = arg;

	for (int i = 0; i < NLOOKUPS; i++) {
		char *v = NULL;
		const char *key = (i % 3 == 0) ? "foo@example.com" : (i % 3 == 1) ? "root" : "nosuch";
		enum map_status st = maplist_lookup(t->l, key, &v, NULL);

		if (i % 3 == 0 && (st != MAP_FOUND || strcmp(v, "v1") != 0))
			t->errors++;
		if (i % 3 == 1 && (st != MAP_FOUND || strncmp(v, "root:", 5) != 0))
			t->errors++;
		if (i % 3 == 2 && st != MAP_NOTFOUND)
			t->errors++;
		free(v);
	}
	return NULL;
}

static void test_threads(void **state)
{
	char *c = xasprintf("cdb:%s/table0", tmpdir), *h = xasprintf("texthash:%s/table", tmpdir);
	char *specs1[] = { c, (char *)"unix:passwd.byname" };
	char *specs2[] = { h, (char *)"unix:passwd.byname" };
	char *err = NULL;
	struct maplist *l1 = maplist_open(specs1, 2, &err), *l2 = maplist_open(specs2, 2, &err);
	pthread_t tid[NTHREADS];
	struct thr t[NTHREADS];

	assert_non_null(l1);
	assert_non_null(l2);
	for (int i = 0; i < NTHREADS; i++) {
		t[i].l = (i % 2) ? l1 : l2;
		t[i].errors = 0;
		assert_int_equal(pthread_create(&tid[i], NULL, thr_main, &t[i]), 0);
	}
	for (int i = 0; i < NTHREADS; i++) {
		pthread_join(tid[i], NULL);
		assert_int_equal(t[i].errors, 0);
	}
	maplist_free(&l1);
	maplist_free(&l2);
	free(c);
	free(h);
}

/* map_each(): every entry once, the same from texthash and the two postmap'd cdb files. */
static void each_collect(void *ctx, const char *key, const char *value)
{
	struct buf *b = ctx;

	buf_printf(b, "%s=%s\n", key, value);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *each_sorted(const char *spec)
{
	char *err = NULL, *lines[32], *text, *save, *l;
	struct map *m = map_open(spec, &err);
	struct buf b = BUF_INIT, out = BUF_INIT;
	size_t n = 0;

	assert_non_null(m);
	assert_int_equal(map_each(m, each_collect, &b, &err), 0);
	assert_null(err);
	map_free(&m);
	text = buf_steal(&b);
	for (save = text; (l = strsep(&save, "\n")) != NULL && *l && n < 32;)
		lines[n++] = l;
	qsort(lines, n, sizeof(lines[0]), cmp_str);
	for (size_t i = 0; i < n; i++)
		buf_printf(&out, "%s\n", lines[i]);
	free(text);
	return buf_steal(&out);
}

static void test_map_each(void **state)
{
	char *t = xasprintf("texthash:%s/table", tmpdir), *c = xasprintf("cdb:%s/table", tmpdir);
	char *c0 = xasprintf("proxy:cdb:%s/table0", tmpdir);
	char *a = each_sorted(t), *b = each_sorted(c), *b0 = each_sorted(c0), *err = NULL;
	struct map *m;

	(void)state;
	assert_string_equal(a, "@example.org=catchall\nbar=v2 with  spaces\n"
			    "baz=first  continued here\ndup=first\nfoo@example.com=v1\n"
			    "qux=x\tand more\nuser@virt.test=virt.test/user/\n");
	assert_string_equal(b, a);
	assert_string_equal(b0, a);
	free(a);
	free(b);
	free(b0);
	a = each_sorted("inline:{k1=v1, { k2 = v 2 }}");
	assert_string_equal(a, "k1=v1\nk2=v 2\n");
	free(a);
	/* a type that cannot be listed says so, with the spec */
	m = map_open("static:x", &err);
	assert_non_null(m);
	assert_int_equal(map_each(m, each_collect, NULL, &err), -1);
	assert_non_null(strstr(err, "static:x: a static table cannot be read whole"));
	free(err);
	map_free(&m);
	free(t);
	free(c);
	free(c0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_texthash),
		cmocka_unit_test(test_map_each),
		cmocka_unit_test(test_cdb_postmap),
		cmocka_unit_test(test_cdb_postmap_format),
		cmocka_unit_test(test_cdb_libcdb),
		cmocka_unit_test(test_cdb_corrupt),
		cmocka_unit_test(test_passwd),
		cmocka_unit_test(test_static_inline),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_maplist),
		cmocka_unit_test(test_maplist_report),
		cmocka_unit_test(test_changed),
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
