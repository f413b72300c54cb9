/*
 * policy/map_query: the client configuration file (settings, numbers,
 * refused settings, file:line in messages), the %-expansion of queries and
 * result formats as sqlite_table(5)/mysql_table(5) describe it (each case
 * below is one of the documented rules), the domain filter, result joining
 * and expansion_limit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "policy/map_query.h"
#include "policy/maps.h"
#include "util/xalloc.h"

static char tmpdir[] = "/tmp/mxgate-test-mapq-XXXXXX";

static char *write_cf(const char *name, const char *text)
{
	char *p = xasprintf("%s/%s", tmpdir, name);
	FILE *fp = fopen(p, "w");

	assert_non_null(fp);
	assert_true(fputs(text, fp) >= 0);
	assert_int_equal(fclose(fp), 0);
	return p;
}

static struct map_query_cfg *open_cf(const char *text)
{
	char *p = write_cf("t.cf", text), *why = NULL;
	struct map_query_cfg *cfg = map_query_cfg_open("sqlite", p, &why);

	if (cfg == NULL)
		fail_msg("open: %s", why);
	free(p);
	return cfg;
}

/* The query fmt expanded for key, or "(skipped)". */
static char *query(struct map_query_cfg *cfg, const char *fmt, const char *key)
{
	struct buf out = BUF_INIT;
	char *why = NULL;

	assert_true(map_query_parse(cfg, fmt, true, &why) >= 0);
	if (map_query_expand(cfg, fmt, key, NULL, map_query_escape_sql, NULL, &out) != 1) {
		buf_free(&out);
		return xstrdup("(skipped)");
	}
	return buf_steal(&out);
}

#define assert_query(fmt, key, want) do { \
	struct map_query_cfg *c_ = open_cf("hosts = x\n"); \
	char *got_ = query(c_, fmt, key); \
	assert_string_equal(got_, want); \
	free(got_); \
	map_query_cfg_free(&c_); \
} while (0)

static void test_query_expansion(void **state)
{
	(void)state;
	assert_query("SELECT x WHERE a='%s'", "User@Mail.Example.COM",
		     "SELECT x WHERE a='User@Mail.Example.COM'");
	assert_query("%u|%d", "user@mail.example.com", "user|mail.example.com");
	assert_query("%1|%2|%3", "user@mail.example.com", "com|example|mail");
	assert_query("%S|%U|%D", "user@example.com", "user@example.com|user|example.com");
	assert_query("100%% %s", "k", "100% k");
	/* %u of a key without '@' is the whole key; %d then suppresses the query */
	assert_query("%u", "postmaster", "postmaster");
	assert_query("%u %d", "postmaster", "(skipped)");
	/* an empty local part suppresses %u, not %d */
	assert_query("%u", "@example.com", "(skipped)");
	assert_query("%d", "@example.com", "example.com");
	/* fewer labels than %N asks */
	assert_query("%3", "user@example.com", "(skipped)");
	assert_query("%2", "user@example.com", "example");
	/* an empty key is never asked */
	assert_query("%s", "", "(skipped)");
	/* quoting applies to the substituted pieces only */
	assert_query("'%s' 'lit'", "o'brien@example.com", "'o''brien@example.com' 'lit'");
}

static void test_bad_template(void **state)
{
	struct map_query_cfg *cfg = open_cf("query = SELECT %x\n");
	char *why = NULL;

	(void)state;
	assert_int_equal(map_query_parse(cfg, "SELECT %x", true, &why), -1);
	assert_string_equal(why, "invalid query template: SELECT %x");
	free(why);
	why = NULL;
	assert_int_equal(map_query_parse(cfg, "static", false, &why), 0);
	assert_int_equal(map_query_parse(cfg, "%s", false, &why), 1);
	map_query_cfg_free(&cfg);
}

static void test_results(void **state)
{
	struct map_query_cfg *cfg = open_cf("result_format = %u at %d for %U\n"
					    "expansion_limit = 2\n");
	const char *fmt = map_query_cfg_str(cfg, "result_format", "%s");
	struct map_query_result r;
	char *why = NULL, *value;

	(void)state;
	assert_int_equal(map_query_parse(cfg, "%s", true, &why), 1);
	assert_int_equal(map_query_parse(cfg, fmt, false, &why), 1);
	assert_int_equal(map_query_cfg_int(cfg, "expansion_limit", 0, &why), 2);
	map_query_result_init(&r, cfg, fmt, 2, "alice@example.com");
	assert_int_equal(map_query_result_add(&r, "bob@example.net"), 0);
	assert_int_equal(map_query_result_add(&r, "no-domain"), 0);	/* skipped: no %d */
	assert_int_equal(map_query_result_add(&r, ""), 0);		/* skipped, warned */
	assert_int_equal(map_query_result_add(&r, "carol@example.org"), 0);
	assert_int_equal(map_query_result_done(&r, &value), MAP_FOUND);
	assert_string_equal(value, "bob at example.net for alice,carol at example.org for alice");
	free(value);

	map_query_result_init(&r, cfg, fmt, 2, "alice@example.com");
	assert_int_equal(map_query_result_add(&r, "a@x"), 0);
	assert_int_equal(map_query_result_add(&r, "b@x"), 0);
	assert_int_equal(map_query_result_add(&r, "c@x"), -1);
	map_query_result_free(&r);

	map_query_result_init(&r, cfg, fmt, 0, "alice@example.com");
	assert_int_equal(map_query_result_add(&r, "nodomain"), 0);
	assert_int_equal(map_query_result_done(&r, &value), MAP_NOTFOUND);
	assert_null(value);
	map_query_cfg_free(&cfg);
}

static void test_domain_filter(void **state)
{
	char *list = write_cf("domains", "# comment\nlisted.test\n");
	char *text = xasprintf("domain = example.com, !bad.example.com, %s, inline:{t.test=1}\n",
			       list);
	struct map_query_cfg *cfg = open_cf(text);

	(void)state;
	assert_int_equal(map_query_domain(cfg, "user@example.com"), 1);
	assert_int_equal(map_query_domain(cfg, "user@EXAMPLE.com"), 1);
	assert_int_equal(map_query_domain(cfg, "user@sub.example.com"), 0);	/* no parents */
	assert_int_equal(map_query_domain(cfg, "user@listed.test"), 1);
	assert_int_equal(map_query_domain(cfg, "user@t.test"), 1);
	assert_int_equal(map_query_domain(cfg, "user@other.test"), 0);
	assert_int_equal(map_query_domain(cfg, "example.com"), 0);	/* not an address */
	assert_int_equal(map_query_domain(cfg, "@example.com"), 0);	/* no local part */
	map_query_cfg_free(&cfg);
	cfg = open_cf("hosts = x\n");
	assert_int_equal(map_query_domain(cfg, "anything"), 1);
	map_query_cfg_free(&cfg);
	free(text);
	free(list);
}

static void test_config_errors(void **state)
{
	char *p, *why = NULL;
	struct map_query_cfg *cfg;
	static const char *const unsupported[] = { "tls_cert", "tls_key", NULL };

	(void)state;
	assert_null(map_query_cfg_open("mysql", "/nonexistent/mysql.cf", &why));
	assert_string_equal(why, "open \"/nonexistent/mysql.cf\": No such file or directory");
	free(why);
	assert_null(map_query_cfg_open("mysql", "mysqlname", &why));
	assert_non_null(strstr(why, "give its path"));
	free(why);

	cfg = open_cf("# x\nhosts = a b\n  c\nexpansion_limit = ten\ntls_key = /k\nbool = maybe\n");
	assert_string_equal(map_query_cfg_str(cfg, "hosts", NULL), "a b c");
	assert_null(map_query_cfg_str(cfg, "user", NULL));
	assert_int_equal(map_query_cfg_int(cfg, "expansion_limit", 0, &why), -1);
	p = xasprintf("%s/t.cf, line 4: bad numerical configuration: expansion_limit = ten",
		      tmpdir);
	assert_string_equal(why, p);
	free(p);
	free(why);
	why = NULL;
	assert_int_equal(map_query_cfg_int(cfg, "retry_interval", 60, &why), 60);
	assert_int_equal(map_query_cfg_refuse(cfg, unsupported, &why), -1);
	p = xasprintf("%s/t.cf, line 5: setting \"tls_key\" is not supported by mxgate", tmpdir);
	assert_string_equal(why, p);
	free(p);
	free(why);
	why = NULL;
	assert_int_equal(map_query_cfg_bool(cfg, "bool", 0, &why), -1);
	assert_non_null(strstr(why, "line 6: bad boolean configuration: bool = maybe"));
	free(why);
	why = NULL;
	assert_int_equal(map_query_cfg_bool(cfg, "unset", 1, &why), 1);
	map_query_cfg_free(&cfg);

	p = write_cf("d.cf", "domain = /nonexistent/list\n");
	assert_null(map_query_cfg_open("sqlite", p, &why));
	assert_non_null(strstr(why, "d.cf, line 1: domain = /nonexistent/list: open file "
			       "\"/nonexistent/list\": No such file or directory"));
	free(why);
	free(p);
}

static void test_escape_ldap(void **state)
{
	struct buf out = BUF_INIT;

	(void)state;
	map_query_escape_ldap(NULL, "a*(b)\\c", 7, &out);
	map_query_escape_ldap(NULL, "\0", 1, &out);
	assert_string_equal(buf_str(&out), "a\\2a\\28b\\29\\5cc\\00");
	buf_free(&out);
}

static int setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	char *cmd = xasprintf("rm -rf %s", tmpdir);
	int rc = system(cmd);

	(void)state;
	free(cmd);
	return rc == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_query_expansion),
		cmocka_unit_test(test_bad_template),
		cmocka_unit_test(test_results),
		cmocka_unit_test(test_domain_filter),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_escape_ldap),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
