/*
 * conf: main.cf/master.cf parsing, expansion, types and bounds, services,
 * the problem report, and the conf/check verbs (golden: `mxgate conf -d`
 * against tests/compat/postconf-d.txt, Postfix 3.7.11's `postconf -d`).
 */
#include <errno.h>
#include <fcntl.h>
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

#include "conf/conf.h"
#include "conf/conf_impl.h"
#include "util/buf.h"
#include "util/xalloc.h"

/* ---- helpers ---- */

static char *
test_dir(const char *main_cf, const char *master_cf)
{
	char	tmpl[] = "/tmp/test_conf.XXXXXX";
	char   *dir = xstrdup(mkdtemp(tmpl));
	const char *texts[2] = {main_cf, master_cf};
	const char *names[2] = {"main.cf", "master.cf"};

	for (int i = 0; i < 2; i++) {
		char   *path;
		FILE   *fp;

		if (texts[i] == NULL)
			continue;
		path = xasprintf("%s/%s", dir, names[i]);
		fp = fopen(path, "w");
		assert_non_null(fp);
		fputs(texts[i], fp);
		fclose(fp);
		free(path);
	}
	return dir;
}

static void
test_rmdir(char *dir)
{
	char   *p;

	p = xasprintf("%s/main.cf", dir);
	unlink(p);
	free(p);
	p = xasprintf("%s/master.cf", dir);
	unlink(p);
	free(p);
	rmdir(dir);
	free(dir);
}

/* Load a configuration from text; *rep gets the problems. */
static struct conf *
test_load(const char *main_cf, const char *master_cf, char *const *over, size_t nover,
	  struct conf_report *rep, char **dir_r)
{
	char   *dir = test_dir(main_cf, master_cf);
	struct conf *c;

	memset(rep, 0, sizeof(*rep));
	c = conf_load(dir, over, nover, rep);
	if (dir_r)
		*dir_r = dir;
	else
		test_rmdir(dir);
	return c;
}

/* The first problem whose text contains needle, or NULL. */
static const struct conf_problem *
test_find(const struct conf_report *rep, const char *needle)
{
	for (size_t i = 0; i < rep->count; i++)
		if (strstr(rep->items[i].text, needle) != NULL)
			return &rep->items[i];
	return NULL;
}

static void
test_dump(const struct conf_report *rep)
{
	for (size_t i = 0; i < rep->count; i++) {
		char   *l = conf_problem_format(&rep->items[i]);

		print_message("  %s: %s\n", rep->items[i].is_error ? "error" : "warning", l);
		free(l);
	}
}

/* ---- the table ---- */

static void
test_table_sorted(void **state)
{
	for (int i = 1; i < P__COUNT; i++)
		assert_true(strcmp(conf_params[i - 1].name, conf_params[i].name) < 0);
	for (size_t i = 1; i < postfix_param_count; i++)
		assert_true(strcmp(postfix_param_names[i - 1], postfix_param_names[i]) < 0);
	assert_int_equal(conf_param_id("smtpd_timeout"), P_smtpd_timeout);
	assert_int_equal(conf_param_id("nosuch"), -1);
	assert_string_equal(conf_param_name(P_smtpd_banner), "smtpd_banner");
	assert_true(conf_postfix_known("smtpd_tls_cert_file"));
	assert_true(conf_postfix_known("lmtp_tls_CAfile"));
	assert_false(conf_postfix_known("smtpd_client_ipv6_prefix_length"));
	assert_null(conf_postfix_default("myhostname"));
	assert_string_equal(conf_postfix_default("smtpd_tls_security_level"), "");
}

/*
 * refused.def: sorted, every name Postfix's and not implemented, and
 * Postfix's own default of each is harmless (written in main.cf, it gets
 * the "ignored" warning, not an error), while a harmful value of each is an
 * error naming the value.
 */
static void
test_refused_table(void **state)
{
	size_t	n = conf_refused_count();
	struct buf defaults = BUF_INIT;
	struct conf_report rep;
	struct conf *c;

	assert_true(n > 20);
	assert_null(conf_refused_name(n));
	for (size_t i = 0; i < n; i++) {
		const char *name = conf_refused_name(i), *def = conf_postfix_default(name);

		if (i > 0)
			assert_true(strcmp(conf_refused_name(i - 1), name) < 0);
		assert_true(conf_postfix_known(name));
		assert_int_equal(conf_param_id(name), -1);
		assert_true(conf_param_is_refused(name));
		assert_non_null(def);
		buf_printf(&defaults, "%s = %s\n", name, def);
	}
	assert_false(conf_param_is_refused("smtpd_sasl_path"));
	c = test_load(buf_str(&defaults), NULL, NULL, 0, &rep, NULL);
	if (c == NULL)
		test_dump(&rep);
	assert_non_null(c);
	assert_int_equal(rep.errors, 0);
	for (size_t i = 0; i < n; i++) {
		char   *want = xasprintf("%s: parameter is not implemented by mxgate, ignored",
					 conf_refused_name(i));

		assert_non_null(test_find(&rep, want));
		free(want);
	}
	conf_free(&c);
	conf_report_free(&rep);
	buf_free(&defaults);

	c = test_load("strict_rfc821_envelopes = YES\n"
		      "receive_override_options = no_milters, no_unknown_recipient_checks\n"
		      "smtpd_tls_req_ccert = Yes\n"
		      "my_filter = amavis:[127.0.0.1]:10024\n"
		      "content_filter = ${stress?{}:{$my_filter}}\n",
		      "127.0.0.1:2525 inet n - n - - smtpd -o smtpd_tls_req_ccert=no\n"
		      "127.0.0.1:2526 inet n - n - - smtpd\n",
		      NULL, 0, &rep, NULL);
	assert_null(c);
	if (rep.errors != 4)
		test_dump(&rep);
	assert_int_equal(rep.errors, 4);
	assert_non_null(test_find(&rep, "strict_rfc821_envelopes = YES: parameter is not "
				  "implemented by mxgate, refused: "));
	assert_non_null(test_find(&rep, "receive_override_options = no_milters, "
				  "no_unknown_recipient_checks: parameter"));
	assert_int_equal(test_find(&rep, "smtpd_tls_req_ccert = Yes: parameter")->line, 3);
	/* The filter is off under stress, on otherwise: refused, and only that. */
	assert_int_equal(test_find(&rep, "content_filter = ${stress?{}:{$my_filter}}: "
				   "parameter")->kind, CONF_PROB_NOT_IMPLEMENTED);
	assert_null(test_find(&rep, "content_filter: parameter"));
	/* A service's harmless value is a warning at its master.cf line. */
	assert_int_equal(test_find(&rep, "smtpd_tls_req_ccert: parameter is not "
				   "implemented by mxgate, ignored")->is_error, 0);
	conf_report_free(&rep);
}

/* ---- main.cf parser ---- */

static const struct {
	const char *text;
	const char *name;	/* expected setting (NULL: none) */
	const char *value;
	int	line;
	int	errors;
	int	warnings;
} main_cases[] = {
	{"a = b\n", "a", "b", 1, 0, 0},
	{"a=b", "a", "b", 1, 0, 0},					/* no final newline */
	{"  \n# c\n\na =   x  y  \n", "a", "x  y", 4, 0, 0},
	{"a = one\n  two\n\ttwo2\n", "a", "one two two2", 1, 0, 0},	/* continuation */
	{"a = one\n# comment\n\n  two\n", "a", "one two", 1, 0, 0},	/* comments inside */
	{"a = one\n  # not a comment? it is\n  two\n", "a", "one two", 1, 0, 0},
	{"a = #x\n", "a", "#x", 1, 0, 0},				/* # inside a value */
	{"a =\n", "a", "", 1, 0, 0},
	{"a = 1\na = 2\n", "a", "2", 2, 0, 1},			/* later wins, warned */
	{"  a = 1\n", NULL, NULL, 0, 0, 1},				/* leading space */
	{"bad line\n", NULL, NULL, 0, 1, 0},
	{"= 5\n", NULL, NULL, 0, 1, 0},
	{"a b = 5\n", NULL, NULL, 0, 1, 0},
	{"x = 1\nbad\ny = 2\n", "y", "2", 3, 1, 0},			/* carries on */
	{"a = b\r\n", "a", "b", 1, 0, 0},
};

static void
test_parse_main(void **state)
{
	for (size_t i = 0; i < sizeof(main_cases) / sizeof(main_cases[0]); i++) {
		struct conf_settings s = {0};
		struct conf_report rep = {0};
		size_t	warnings;

		conf_parse_main("main.cf", main_cases[i].text, &s, &rep);
		warnings = rep.count - rep.errors;
		if (rep.errors != (size_t) main_cases[i].errors
		    || warnings != (size_t) main_cases[i].warnings) {
			print_message("case %zu: %zu errors %zu warnings\n", i, rep.errors, warnings);
			test_dump(&rep);
			fail();
		}
		if (main_cases[i].name) {
			const struct conf_setting *it = conf_settings_get(&s, main_cases[i].name);

			assert_non_null(it);
			assert_string_equal(it->value, main_cases[i].value);
			assert_int_equal(it->line, main_cases[i].line);
			assert_string_equal(it->file, "main.cf");
		}
		conf_settings_free(&s);
		conf_report_free(&rep);
	}
}

/* ---- lists ---- */

static const struct {
	const char *in;
	const char *out[6];
} list_cases[] = {
	{"", {NULL}},
	{"  ,, ", {NULL}},
	{"a", {"a", NULL}},
	{"a, b,c\td\n e", {"a", "b", "c", "d", "e", NULL}},
	{"CONNECT GET POST regexp:{{/^[^A-Z]/ Bogus}}",
	 {"CONNECT", "GET", "POST", "regexp:{{/^[^A-Z]/ Bogus}}", NULL}},
	{"{ a, b } c", {"{ a, b }", "c", NULL}},
	{"hash:/etc/aliases, nis:mail.aliases", {"hash:/etc/aliases", "nis:mail.aliases", NULL}},
};

static void
test_list_split(void **state)
{
	for (size_t i = 0; i < sizeof(list_cases) / sizeof(list_cases[0]); i++) {
		size_t	n, k;
		char   *err;
		char  **v = conf_split_list(list_cases[i].in, &n, &err);

		assert_non_null(v);
		for (k = 0; list_cases[i].out[k]; k++) {
			assert_non_null(v[k]);
			assert_string_equal(v[k], list_cases[i].out[k]);
		}
		assert_null(v[k]);
		assert_int_equal(n, k);
		conf_list_free(v);
	}
	{
		char   *err = NULL;

		assert_null(conf_split_list("a {b c", NULL, &err));
		assert_non_null(err);
		free(err);
	}
}

/* ---- expansion ---- */

/* The main.cf every expansion case sees. */
static const char exp_main[] =
    "name = Postfix\n"
    "empty =\n"
    "host = mx.example.test\n"
    "both = $name on $host\n"
    "dollar = x$$y\n"
    "lvl = 3.6\n"
    "compatibility_level = 3.6\n"
    "loop1 = $loop2\n"
    "loop2 = ${loop1}\n"
    "self = a $self\n"
    "bad = a${b\n";

static const struct {
	const char *in;
	const char *out;	/* NULL: an error whose text contains err */
	const char *err;
} exp_cases[] = {
	{"plain", "plain", NULL},
	{"$name", "Postfix", NULL},
	{"${name}", "Postfix", NULL},
	{"$(name)", "Postfix", NULL},
	{"${ name }", "Postfix", NULL},
	{"$name.x-$host", "Postfix.x-mx.example.test", NULL},
	{"$nosuch|${nosuch}", "|", NULL},
	{"$both", "Postfix on mx.example.test", NULL},
	{"a$$b", "a$b", NULL},
	{"a$$$name", "a$Postfix", NULL},
	{"$dollar", "x$y", NULL},			/* $$ is not expanded again */
	{"${name?yes}", "yes", NULL},
	{"${name?{yes}}", "yes", NULL},
	{"${empty?yes}", "", NULL},
	{"${nosuch?{yes}}", "", NULL},
	{"${name:no}", "", NULL},
	{"${empty:no}", "no", NULL},
	{"${nosuch:{no}}", "no", NULL},
	{"${name?{a}:{b}}", "a", NULL},
	{"${empty?{a}:{b}}", "b", NULL},
	{"${empty?{a}:b}", "b", NULL},
	{"${name ? {a} : {b}}", "a", NULL},
	{"${name?{$host}:{b}}z", "mx.example.testz", NULL},
	{"${name?{{x}}}", "{x}", NULL},
	{"${name?{a{x}b}}", "a{x}b", NULL},
	{"${name?x y}", "x y", NULL},
	{"${empty?{${name?{in}}}:{${name:{no}}}}", "", NULL},
	{"${name?{${name?{in}}}:{no}}", "in", NULL},
	{"${stress?{1}:{20}}", "20", NULL},
	{"${{a} == {a} ? {y} : {n}}", "y", NULL},
	{"${{a} != {a} ? {y} : {n}}", "n", NULL},
	{"${{b} > {a} ? {y} : {n}}", "y", NULL},
	{"${{b} >= {a}?{y}:n}", "y", NULL},
	{"${{b} < {a} ? {y} : {n}}", "n", NULL},
	{"${{a} <= {a} ? {y} : {n}}", "y", NULL},
	{"${{10} > {9} ? {y} : {n}}", "y", NULL},	/* numbers compare numerically */
	{"${{010} == {10} ? {y} : {n}}", "y", NULL},
	{"${{3.10} > {3.9} ? {y} : {n}}", "n", NULL},	/* not numbers: bytewise */
	{"${{3.10} >level {3.9} ? {y} : {n}}", "y", NULL},
	{"${{3.6} <level {3.10} ? {y} : {n}}", "y", NULL},
	{"${{3.6} <level {3.6.0} ? {y} : {n}}", "n", NULL},
	{"${{3} ==level {3.0} ? {y} : {n}}", "y", NULL},
	{"${{3.6.1} >=level {3.6} ? {y} : {n}}", "y", NULL},
	{"${{3.6} !=level {3.6} ? {y} : {n}}", "n", NULL},
	{"${{3.6} <=level {2} ? {y} : {n}}", "n", NULL},
	{"${{$compatibility_level} <level {2} ? {subnet} : {host}}", "host", NULL},
	{"${{$lvl}<level{2}?{a}:{b}}", "b", NULL},
	{"${{b} > {a}?{y}}", "y", NULL},
	{"${{b} > {a}:{y}}", "", NULL},
	{"${{a} > {b}:{y}}", "y", NULL},
	{"${{x} <level {2} ? {y} : {n}}", NULL, "malformed compatibility level"},
	{"${{a} foo {b} ? {y}}", NULL, "expected"},
	{"${{a} == {b}}", "", NULL},
	{"${{a} == {a} }", "true", NULL},
	{"${{a} == {a} x}", NULL, "expected"},
	{"${name?{x} y}", NULL, "\":\" expected"},
	{"${nosuch:{x} y}", NULL, "unexpected input"},
	{"${name", NULL, "truncated macro reference"},
	{"a$", NULL, "empty macro name"},
	{"a$-b", NULL, "empty macro name"},
	{"${}", NULL, "empty macro name"},
	{"${a-b}", NULL, "unexpected input"},
	{"$loop1", NULL, "unreasonable macro call nesting"},
	{"$self", NULL, "unreasonable macro call nesting"},
	{"$bad", NULL, "truncated macro reference"},
};

static void
test_expand(void **state)
{
	struct conf_settings s = {0};
	struct conf_report rep = {0};

	conf_parse_main("main.cf", exp_main, &s, &rep);
	assert_int_equal(rep.count, 0);
	for (size_t i = 0; i < sizeof(exp_cases) / sizeof(exp_cases[0]); i++) {
		struct conf_ctx ctx;
		struct buf out = BUF_INIT;
		char   *err = NULL;
		int	rc;

		conf_ctx_init(&ctx, NULL, NULL, &s, NULL);
		rc = conf_exp_text(ctx.ex, exp_cases[i].in, &out, &err);
		if (exp_cases[i].out) {
			if (rc != 0)
				print_message("case %zu \"%s\": %s\n", i, exp_cases[i].in, err);
			assert_int_equal(rc, 0);
			assert_string_equal(buf_str(&out), exp_cases[i].out);
		} else {
			if (rc == 0)
				print_message("case %zu \"%s\" gave \"%s\"\n", i, exp_cases[i].in,
					      buf_str(&out));
			assert_int_equal(rc, -1);
			assert_non_null(err);
			if (strstr(err, exp_cases[i].err) == NULL)
				print_message("case %zu: %s\n", i, err);
			assert_non_null(strstr(err, exp_cases[i].err));
		}
		free(err);
		buf_free(&out);
		conf_ctx_free(&ctx);
	}
	conf_settings_free(&s);
}

/* Exponential and deep inputs end with an error quickly, never a hang. */
static void
test_expand_limits(void **state)
{
	struct conf_settings s = {0};
	struct conf_ctx ctx;
	struct buf text = BUF_INIT, out = BUF_INIT;
	char   *err = NULL;

	/* a0 = xxxx, a(n) = $a(n-1)$a(n-1): 2^40 bytes if nothing stopped it */
	conf_settings_set(&s, "a0", "xxxxxxxxxxxxxxxx", NULL, 0);
	for (int i = 1; i <= 40; i++) {
		char   *n = xasprintf("a%d", i), *v = xasprintf("$a%d$a%d", i - 1, i - 1);

		conf_settings_set(&s, n, v, NULL, 0);
		free(n);
		free(v);
	}
	conf_ctx_init(&ctx, NULL, NULL, &s, NULL);
	assert_int_equal(conf_exp_text(ctx.ex, "$a40", &out, &err), -1);
	assert_non_null(strstr(err, "longer"));
	free(err);
	conf_ctx_free(&ctx);

	/* 5000 nested conditionals */
	for (int i = 0; i < 5000; i++)
		buf_puts(&text, "${x?{");
	for (int i = 0; i < 5000; i++)
		buf_puts(&text, "}}");
	conf_settings_set(&s, "x", "1", NULL, 0);
	conf_ctx_init(&ctx, NULL, NULL, &s, NULL);
	buf_reset(&out);
	assert_int_equal(conf_exp_text(ctx.ex, buf_str(&text), &out, &err), -1);
	assert_non_null(strstr(err, "nesting"));
	free(err);
	conf_ctx_free(&ctx);
	buf_free(&text);
	buf_free(&out);
	conf_settings_free(&s);
}

static void
test_expand_refs(void **state)
{
	struct conf_raw raw;
	struct conf_report rep = {0};
	char   *dir = test_dir("a = $b ${c} $(d) ${e?{$f}:{${g}}} $$h ${{$i} == {1}?{x}}\n"
			       "b = 1\nc = 2\nd = 3\nh = 4\nunused_one = 5\n", NULL);

	conf_raw_load(&raw, dir, NULL, 0, 0, &rep);
	for (const char *const *n = (const char *const[]) {"b", "c", "d", "e", "f", "g", "i", NULL};
	     *n; n++)
		assert_true(conf_raw_is_ref(&raw, *n));
	assert_false(conf_raw_is_ref(&raw, "h"));
	/* a, h and unused_one are set, unknown and not referenced: unused */
	assert_non_null(test_find(&rep, "unused parameter: a=$b"));
	assert_non_null(test_find(&rep, "unused parameter: h=4"));
	assert_non_null(test_find(&rep, "unused parameter: unused_one=5"));
	assert_null(test_find(&rep, "unused parameter: b="));
	assert_int_equal(rep.errors, 0);
	conf_raw_free(&raw);
	conf_report_free(&rep);
	test_rmdir(dir);
}

/* ---- types, units and bounds ---- */

static const struct {
	const char *setting;
	enum param_id id;
	long	value;		/* expected when err is NULL */
	const char *err;
} type_cases[] = {
	{"smtpd_timeout = 10", P_smtpd_timeout, 10, NULL},
	{"smtpd_timeout = 10s", P_smtpd_timeout, 10, NULL},
	{"smtpd_timeout = 5m", P_smtpd_timeout, 300, NULL},
	{"smtpd_timeout = 2h", P_smtpd_timeout, 7200, NULL},
	{"smtpd_timeout = 1d", P_smtpd_timeout, 86400, NULL},
	{"anvil_status_update_time = 1w", P_anvil_status_update_time, 604800, NULL},
	{"smtpd_timeout = 2d", P_smtpd_timeout, 0, "invalid smtpd_timeout parameter value 2d > 86400s"},
	{"smtpd_timeout = 0", P_smtpd_timeout, 0, "invalid smtpd_timeout parameter value 0 < 1s"},
	{"smtpd_timeout = 10x", P_smtpd_timeout, 0, "parameter smtpd_timeout: bad time value or unit: 10x"},
	{"smtpd_timeout = 10ss", P_smtpd_timeout, 0, "bad time value"},
	{"smtpd_timeout = s", P_smtpd_timeout, 0, "bad time value"},
	{"smtpd_timeout = 99999999999w", P_smtpd_timeout, 0, "too large"},
	{"smtpd_error_sleep_time = 0", P_smtpd_error_sleep_time, 0, NULL},
	{"smtpd_hard_error_limit = 7", P_smtpd_hard_error_limit, 7, NULL},
	{"smtpd_hard_error_limit = 0", P_smtpd_hard_error_limit, 0, "invalid smtpd_hard_error_limit parameter value 0 < 1"},
	{"smtpd_hard_error_limit = abc", P_smtpd_hard_error_limit, 0, "bad numerical configuration: smtpd_hard_error_limit = abc"},
	{"smtpd_hard_error_limit = 5 5", P_smtpd_hard_error_limit, 0, "bad numerical"},
	{"smtpd_hard_error_limit = 99999999999999999999", P_smtpd_hard_error_limit, 0, "bad numerical"},
	{"relay_domains_reject_code = 600", P_relay_domains_reject_code, 0, "> 599"},
	{"smtpd_client_ipv6_prefix_length = 64", P_smtpd_client_ipv6_prefix_length, 64, NULL},
	{"smtpd_client_ipv6_prefix_length = 129", P_smtpd_client_ipv6_prefix_length, 0, "> 128"},
	{"smtpd_helo_required = YES", P_smtpd_helo_required, 1, NULL},
	{"smtpd_helo_required = no", P_smtpd_helo_required, 0, NULL},
	{"smtpd_helo_required = maybe", P_smtpd_helo_required, 0, "bad boolean configuration: smtpd_helo_required = maybe"},
	{"smtpd_forbid_bare_newline = reject", P_smtpd_forbid_bare_newline, 0, NULL},
	{"smtpd_forbid_bare_newline = sometimes", P_smtpd_forbid_bare_newline, 0, "unknown value"},
	{"mynetworks_style = bogus", P_mynetworks_style, 0, "unknown value"},
	{"inet_protocols = ipv4, ipv5", P_inet_protocols, 0, "unknown value \"ipv5\""},
	{"compatibility_level = x", P_compatibility_level, 0, "malformed compatibility level"},
	{"smtpd_per_record_deadline = yes", P_smtpd_per_request_deadline, 1, NULL},
	{"x = 4\nsmtpd_recipient_limit = ${x}0", P_smtpd_recipient_limit, 40, NULL},
};

static void
test_types(void **state)
{
	for (size_t i = 0; i < sizeof(type_cases) / sizeof(type_cases[0]); i++) {
		struct conf_report rep;
		char   *text = xasprintf("%s\n", type_cases[i].setting);
		struct conf *c = test_load(text, NULL, NULL, 0, &rep, NULL);
		const struct conf_view *g;

		if (type_cases[i].err == NULL) {
			if (c == NULL) {
				print_message("case %zu (%s):\n", i, type_cases[i].setting);
				test_dump(&rep);
			}
			assert_non_null(c);
			g = conf_global(c);
			switch (conf_params[type_cases[i].id].type) {
			case CONF_T_INT:
				assert_int_equal(conf_int(g, type_cases[i].id), type_cases[i].value);
				break;
			case CONF_T_TIME:
				assert_int_equal(conf_time(g, type_cases[i].id), type_cases[i].value);
				break;
			case CONF_T_BOOL:
				assert_int_equal(conf_bool(g, type_cases[i].id), type_cases[i].value);
				break;
			default:
				break;
			}
		} else {
			const struct conf_problem *p = test_find(&rep, type_cases[i].err);

			assert_null(c);
			if (p == NULL) {
				print_message("case %zu (%s): want \"%s\"\n", i, type_cases[i].setting,
					      type_cases[i].err);
				test_dump(&rep);
			}
			assert_non_null(p);
			assert_true(p->is_error);
			assert_int_equal(p->kind, CONF_PROB_VALUE);
		}
		conf_free(&c);
		conf_report_free(&rep);
		free(text);
	}
}

/* A bad value names parameter, value and file:line, once, however many views. */
static void
test_error_location(void **state)
{
	struct conf_report rep;
	char   *dir, *want, *line;
	struct conf *c = test_load("# x\nsmtpd_banner = hi\n\nsmtpd_timeout =\n  10x\n",
				   "smtp inet n - n - - smtpd\n2525 inet n - n - - smtpd\n",
				   NULL, 0, &rep, &dir);
	const struct conf_problem *p = test_find(&rep, "bad time value");

	assert_null(c);
	assert_int_equal(rep.errors, 1);
	assert_non_null(p);
	want = xasprintf("%s/main.cf", dir);
	assert_string_equal(p->file, want);
	assert_int_equal(p->line, 4);
	assert_string_equal(p->param, "smtpd_timeout");
	assert_string_equal(p->value, "10x");
	line = conf_problem_format(p);
	free(want);
	want = xasprintf("%s/main.cf, line 4: parameter smtpd_timeout: bad time value or unit: 10x",
			 dir);
	assert_string_equal(line, want);
	free(want);
	free(line);
	conf_report_free(&rep);
	test_rmdir(dir);
}

/* Every problem is collected, not just the first. */
static void
test_report_collects(void **state)
{
	struct conf_report rep;
	char   *over[] = {"smtpd_soft_error_limit=zero", "nonsense", "cmdline_unknown=1"};
	struct conf *c = test_load(
	    "smtpd_timeout = 10x\n"
	    "smtpd_hard_error_limit = 0\n"
	    "bad line\n"
	    "smtpd_helo_required = maybe\n"
	    "smtpd_sasl_path = private/auth\n"
	    "foo_bar = 1\n"
	    "smtpd_banner = ${mail_name\n",
	    "smtp inet n - n - - smtpd -o smtpd_junk_command_limit=abc\n"
	    "submission inet n - n - x smtpd\n"
	    "bad:port:99999 inet n - n - - smtpd\n"
	    "short line\n",
	    over, 3, &rep, NULL);
	static const char *const want[] = {
	    "bad time value or unit: 10x",
	    "invalid smtpd_hard_error_limit parameter value 0 < 1",
	    "missing '=' after attribute name: \"bad line\"",
	    "bad boolean configuration: smtpd_helo_required = maybe",
	    "smtpd_sasl_path: parameter is not implemented by mxgate, ignored",
	    "unused parameter: foo_bar=1",
	    "truncated macro reference",
	    "bad numerical configuration: smtpd_junk_command_limit = abc",
	    "bad maxproc field: \"x\"",
	    "bad port number",
	    "bad field count",
	    "bad numerical configuration: smtpd_soft_error_limit = zero",
	    "-o option requires name=value: \"nonsense\"",
	    "unused parameter: cmdline_unknown=1",
	};

	assert_null(c);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		if (test_find(&rep, want[i]) == NULL) {
			print_message("missing: %s\n", want[i]);
			test_dump(&rep);
			fail();
		}
	}
	assert_int_equal(rep.errors, 11);
	assert_int_equal(rep.count, 14);
	/* sorted: command line first, then main.cf by line, then master.cf */
	assert_null(rep.items[0].file);
	for (size_t i = 1; i < rep.count; i++)
		if (rep.items[i - 1].file && rep.items[i].file
		    && strcmp(rep.items[i - 1].file, rep.items[i].file) == 0)
			assert_true(rep.items[i - 1].line <= rep.items[i].line);
	assert_int_equal(test_find(&rep, "unused parameter: foo_bar")->kind, CONF_PROB_UNUSED);
	assert_int_equal(test_find(&rep, "not implemented")->kind, CONF_PROB_NOT_IMPLEMENTED);
	conf_report_free(&rep);
}

/* User-defined macros are not "unused"; warnings alone do not refuse start-up. */
static void
test_warnings_only(void **state)
{
	struct conf_report rep;
	struct conf *c = test_load("my_banner_text = hello\nsmtpd_banner = $my_banner_text\n"
				   "smtpd_sasl_path = /x\nsmtpd_banner2 = 3\n",
				   NULL, NULL, 0, &rep, NULL);

	assert_non_null(c);
	assert_int_equal(rep.errors, 0);
	assert_int_equal(rep.count, 2);
	assert_non_null(test_find(&rep, "unused parameter: smtpd_banner2=3"));
	assert_string_equal(conf_str(conf_global(c), P_smtpd_banner), "hello");
	conf_free(&c);
	assert_null(c);
	conf_report_free(&rep);
}

/* ---- defaults and overrides ---- */

static void
test_defaults(void **state)
{
	struct conf_report rep;
	struct conf *c = test_load(NULL, NULL, NULL, 0, &rep, NULL);
	const struct conf_view *g;
	char   *const *l;
	size_t	n;
	char   *host = conf_host_name(), *want;

	assert_non_null(c);
	assert_int_equal(rep.count, 0);
	g = conf_global(c);
	assert_int_equal(conf_int(g, P_smtpd_hard_error_limit), 20);
	assert_int_equal(conf_int(g, P_smtpd_junk_command_limit), 100);
	assert_int_equal(conf_time(g, P_smtpd_timeout), 300);
	assert_int_equal(conf_bool(g, P_smtpd_per_request_deadline), 0);
	assert_int_equal(conf_bool(g, P_smtputf8_enable), 1);
	assert_int_equal(conf_int(g, P_smtpd_client_ipv6_prefix_length), 84);
	assert_string_equal(conf_str(g, P_mynetworks_style), "host");
	assert_string_equal(conf_str(g, P_smtpd_relay_restrictions),
			    "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination");
	want = strchr(host, '.') ? xstrdup(host) : xasprintf("%s.localdomain", host);
	assert_string_equal(conf_str(g, P_myhostname), want);
	assert_string_equal(conf_str(g, P_smtpd_banner), (free(want),
		want = xasprintf("%s ESMTP mxgate", conf_str(g, P_myhostname))));
	free(want);
	free(host);
	l = conf_list(g, P_smtpd_forbidden_commands, &n);
	assert_int_equal(n, 4);
	assert_string_equal(l[3], "regexp:{{/^[^A-Z]/ Bogus}}");
	assert_null(l[4]);
	/* mynetworks (host style): every entry a /32 or /128 */
	l = conf_list(g, P_mynetworks, &n);
	assert_true(n >= 1);
	for (size_t i = 0; i < n; i++)
		assert_true(strstr(l[i], "/32") || strstr(l[i], "/128"));
	assert_string_equal(conf_str(g, P_smtpd_client_event_limit_exceptions),
			    conf_str(g, P_mynetworks));
	/* the built-in service */
	assert_int_equal(conf_service_count(c), 1);
	{
		const struct conf_service *s = conf_service_at(c, 0);

		assert_string_equal(s->name, "smtp");
		assert_null(s->host);
		assert_string_equal(s->port, "25");
		assert_int_equal(s->maxproc, 100);
		assert_true(s->stress_eligible);
		assert_int_equal(s->stress_mode, CONF_STRESS_AUTO);
		assert_null(s->file);
		assert_int_equal(conf_int(s->view, P_smtpd_hard_error_limit), 20);
		assert_int_equal(conf_int(s->view_stress, P_smtpd_hard_error_limit), 1);
		assert_int_equal(conf_time(s->view_stress, P_smtpd_timeout), 10);
		assert_int_equal(conf_bool(s->view_stress, P_smtpd_per_request_deadline), 1);
		assert_int_equal(conf_int(s->view_stress, P_smtpd_soft_error_limit), 10);
	}
	conf_free(&c);
	conf_report_free(&rep);
}

static void
test_computed(void **state)
{
	struct conf_report rep;
	char   *over[] = {"mynetworks_style=subnet", "inet_interfaces=127.0.0.1"};
	struct conf *c = test_load("myhostname = mx.example.com\n", NULL, over, 2, &rep, NULL);
	const struct conf_view *g = conf_global(c);

	assert_string_equal(conf_str(g, P_mydomain), "example.com");
	assert_string_equal(conf_str(g, P_mydestination),
			    "mx.example.com, localhost.example.com, localhost");
	assert_string_equal(conf_str(g, P_mynetworks), "127.0.0.0/8");
	conf_free(&c);
	conf_report_free(&rep);

	c = test_load("mydomain = example.org\ninet_interfaces = 127.0.0.1\n", NULL, NULL, 0,
		      &rep, NULL);
	g = conf_global(c);
	{
		char   *host = conf_host_name();
		char   *want = strchr(host, '.') ? xstrdup(host) : xasprintf("%s.example.org", host);

		assert_string_equal(conf_str(g, P_myhostname), want);
		free(want);
		free(host);
	}
	assert_string_equal(conf_str(g, P_mynetworks), "127.0.0.1/32");
	conf_free(&c);
	conf_report_free(&rep);

	c = test_load("myhostname = mx\nmynetworks = 10.0.0.0/8, [::1]/128\n", NULL, NULL, 0,
		      &rep, NULL);
	g = conf_global(c);
	assert_string_equal(conf_str(g, P_mydomain), "localdomain");
	{
		size_t	n;
		char   *const *l = conf_list(g, P_mynetworks, &n);

		assert_int_equal(n, 2);
		assert_string_equal(l[1], "[::1]/128");
	}
	conf_free(&c);
	conf_report_free(&rep);

	/* class style, IPv4 loopback: class A */
	{
		char   *err = NULL;
		char   *v = conf_mynetworks("class", "127.0.0.1", "ipv4", &err);

		assert_non_null(v);
		assert_string_equal(v, "127.0.0.0/8");
		free(v);
		v = conf_mynetworks("host", "loopback-only", "ipv4", &err);
		assert_string_equal(v, "127.0.0.1/32");
		free(v);
		assert_null(conf_mynetworks("bogus", "all", "all", &err));
		assert_non_null(strstr(err, "mask style"));
		free(err);
	}
}

/* mxgate run -o overrides main.cf; a service's -o overrides both. */
static void
test_overrides(void **state)
{
	struct conf_report rep;
	char   *over[] = {"smtpd_soft_error_limit = 3", "smtpd_hard_error_limit=5"};
	struct conf *c = test_load("smtpd_soft_error_limit = 7\nsmtpd_hard_error_limit = 9\n",
				   "smtp inet n - n - - smtpd -o smtpd_hard_error_limit=6\n",
				   over, 2, &rep, NULL);
	const struct conf_service *s;

	assert_non_null(c);
	assert_int_equal(conf_int(conf_global(c), P_smtpd_soft_error_limit), 3);
	assert_int_equal(conf_int(conf_global(c), P_smtpd_hard_error_limit), 5);
	s = conf_service_at(c, 0);
	assert_int_equal(conf_int(s->view, P_smtpd_soft_error_limit), 3);
	assert_int_equal(conf_int(s->view, P_smtpd_hard_error_limit), 6);
	assert_int_equal(conf_int(s->view_stress, P_smtpd_hard_error_limit), 6);
	conf_free(&c);
	conf_report_free(&rep);
}

/* ---- master.cf ---- */

static const char master_cf[] =
    "# Postfix master process configuration file.\n"
    "#\n"
    "smtp      inet  n       -       y       -       -       smtpd\n"
    "  -o smtpd_junk_command_limit=7\n"
    "#  -o commented=out\n"
    "\n"
    "  -o { smtpd_banner = hello  there }\n"
    "127.0.0.1:2525 inet n - n - 1 smtpd -o stress=\n"
    "[::1]:2526 inet n - n - 0 smtpd -o stress=yes -osmtpd_timeout=20s\n"
    "192.0.2.10:submission inet n - n - 10 smtpd -o{smtpd_helo_required=yes}\n"
    "2527      inet  n       -       n       -       -       smtpd -v\n"
    "localhost:2528 inet n - n - 5 smtpd\n"
    "pickup    unix  n       -       y       60      1       pickup\n"
    "  -o content_filter=\n"
    "smtp      unix  -       -       y       -       -       smtp\n"
    "relay     unix  -       -       y       -       -       smtp -o bogus_name=1\n"
    "tlsproxy  unix  -       -       y       -       0       tlsproxy\n";

static void
test_master(void **state)
{
	struct conf_report rep;
	char   *dir;
	struct conf *c = test_load("default_process_limit = 42\n", master_cf, NULL, 0, &rep, &dir);
	const struct conf_service *s;
	char   *path = xasprintf("%s/master.cf", dir);

	if (c == NULL)
		test_dump(&rep);
	assert_non_null(c);
	/* other services and their -o are not ours; chroot "y" is said once */
	assert_int_equal(rep.count, 1);
	assert_false(rep.items[0].is_error);
	assert_int_equal(rep.items[0].line, 3);
	assert_string_equal(rep.items[0].text, "service \"smtp\": chroot \"y\" is accepted, but "
			    "mxgate does not chroot (for this service or any other): its network "
			    "side runs as mail_owner, without root and without capabilities "
			    "(docs/security.md)");
	assert_int_equal(conf_service_count(c), 6);

	s = conf_service_at(c, 0);
	assert_string_equal(s->name, "smtp");
	assert_null(s->host);
	assert_string_equal(s->port, "25");
	assert_int_equal(s->maxproc, 42);
	assert_true(s->stress_eligible);
	assert_int_equal(s->stress_mode, CONF_STRESS_AUTO);
	assert_string_equal(s->file, path);
	assert_int_equal(s->line, 3);
	assert_int_equal(conf_int(s->view, P_smtpd_junk_command_limit), 7);
	assert_int_equal(conf_int(s->view_stress, P_smtpd_junk_command_limit), 7);
	assert_int_equal(conf_int(s->view_stress, P_smtpd_hard_error_limit), 1);
	assert_string_equal(conf_str(s->view, P_smtpd_banner), "hello  there");
	assert_string_equal(conf_str(s->view, P_stress), "");
	assert_string_equal(conf_str(s->view_stress, P_stress), "yes");

	s = conf_service_at(c, 1);
	assert_string_equal(s->host, "127.0.0.1");
	assert_string_equal(s->port, "2525");
	assert_int_equal(s->maxproc, 1);
	assert_false(s->stress_eligible);
	assert_int_equal(s->stress_mode, CONF_STRESS_OFF);
	assert_int_equal(conf_int(s->view, P_smtpd_hard_error_limit), 20);

	s = conf_service_at(c, 2);
	assert_string_equal(s->host, "::1");
	assert_string_equal(s->port, "2526");
	assert_int_equal(s->maxproc, 0);
	assert_false(s->stress_eligible);	/* loopback */
	assert_int_equal(s->stress_mode, CONF_STRESS_ON);
	assert_int_equal(conf_int(s->view, P_smtpd_hard_error_limit), 1);
	assert_int_equal(conf_time(s->view, P_smtpd_timeout), 20);

	s = conf_service_at(c, 3);
	assert_string_equal(s->host, "192.0.2.10");
	assert_string_equal(s->port, "587");
	assert_int_equal(s->maxproc, 10);
	assert_true(s->stress_eligible);
	assert_int_equal(conf_bool(s->view, P_smtpd_helo_required), 1);
	assert_int_equal(conf_bool(conf_global(c), P_smtpd_helo_required), 0);

	s = conf_service_at(c, 4);
	assert_null(s->host);
	assert_string_equal(s->port, "2527");
	assert_int_equal(s->line, 11);

	s = conf_service_at(c, 5);
	assert_string_equal(s->host, "localhost");
	assert_false(s->stress_eligible);

	conf_free(&c);
	conf_report_free(&rep);
	free(path);
	test_rmdir(dir);
}

/* Where an -o option sits on a continuation line, its errors point there. */
static void
test_master_errors(void **state)
{
	struct conf_report rep;
	struct conf *c = test_load(NULL,
				   "smtp inet n - n - - smtpd\n"
				   "  -o smtpd_timeout=1y\n"
				   "  -o nosuch_param=1 -o novalue -o\n"
				   "2525 inet n - n - - smtpd -o { smtpd_banner = a\n",
				   NULL, 0, &rep, NULL);
	const struct conf_problem *p;

	assert_null(c);
	p = test_find(&rep, "bad time value");
	assert_non_null(p);
	assert_int_equal(p->line, 2);
	p = test_find(&rep, "unused parameter: nosuch_param=1");
	assert_non_null(p);
	assert_int_equal(p->line, 3);
	assert_non_null(test_find(&rep, "requires name=value: \"novalue\""));
	assert_non_null(test_find(&rep, "-o option requires name=value"));
	p = test_find(&rep, "missing '}'");
	assert_non_null(p);
	assert_int_equal(p->line, 4);
	conf_report_free(&rep);

	/* inet_interfaces on loopback only: no stress for host-less services */
	c = test_load("inet_interfaces = loopback-only\n", "smtp inet n - n - - smtpd\n", NULL, 0,
		      &rep, NULL);
	assert_non_null(c);
	assert_false(conf_service_at(c, 0)->stress_eligible);
	conf_free(&c);
	conf_report_free(&rep);
	c = test_load("inet_interfaces = 127.0.0.1, 192.0.2.1\n", "smtp inet n - n - - smtpd\n",
		      NULL, 0, &rep, NULL);
	assert_non_null(c);
	assert_true(conf_service_at(c, 0)->stress_eligible);
	conf_free(&c);
	conf_report_free(&rep);
}

/*
 * An endpoint named again by a later master.cf entry: Postfix's master warns
 * "duplicate master.cf entry for service "X" (canonical) -- using the last
 * entry" and serves the last one (observed with Postfix 3.7.11); so does
 * conf_load, at the later line, naming the earlier one.
 */
static void
test_master_duplicates(void **state)
{
	struct conf_report rep;
	char   *dir;
	struct conf *c = test_load(NULL,
				   "smtp inet n - n - - smtpd -o smtpd_banner=one\n"
				   "127.0.0.1:2525 inet n - n - - smtpd\n"
				   "25 inet n - n - - smtpd -o smtpd_banner=two\n"
				   "[::1]:2526 inet n - n - - smtpd\n"
				   "[0:0::1]:2526 inet n - n - - smtpd -o smtpd_banner=v6\n"
				   "2527 inet n - n - - smtpd\n"
				   "127.0.0.1:smtp inet n - n - - smtpd\n",
				   NULL, 0, &rep, &dir);
	char   *path = xasprintf("%s/master.cf", dir);
	const struct conf_problem *p;

	assert_non_null(c);
	assert_int_equal(rep.errors, 0);
	p = test_find(&rep, "duplicate master.cf entry for service \"smtp\" (25) -- using the "
		      "last entry; the entry at line 1 is ignored");
	assert_non_null(p);
	assert_false(p->is_error);
	assert_string_equal(p->file, path);
	assert_int_equal(p->line, 3);
	p = test_find(&rep, "duplicate master.cf entry for service \"[::1]:2526\" ([::1]:2526)");
	assert_non_null(p);
	assert_int_equal(p->line, 5);
	assert_non_null(strstr(p->text, "the entry at line 4 is ignored"));
	assert_int_equal(rep.count, 2);	/* 127.0.0.1:2525, 2527, 127.0.0.1:25 are distinct */
	assert_int_equal(conf_service_count(c), 5);
	assert_string_equal(conf_service_at(c, 0)->name, "127.0.0.1:2525");
	assert_string_equal(conf_service_at(c, 1)->name, "25");
	assert_string_equal(conf_str(conf_service_at(c, 1)->view, P_smtpd_banner), "two");
	assert_int_equal(conf_service_at(c, 1)->line, 3);
	assert_string_equal(conf_service_at(c, 2)->name, "[0:0::1]:2526");
	assert_string_equal(conf_str(conf_service_at(c, 2)->view, P_smtpd_banner), "v6");
	conf_free(&c);
	conf_report_free(&rep);
	free(path);
	test_rmdir(dir);
}

/*
 * virtual_mailbox_base must be absolute (Postfix's virtual(8) stops on a
 * relative one, and on an empty one when it has mail to deliver): an error
 * at the line that sets it, so that `run` refuses to start.
 */
static void
test_virtual_base(void **state)
{
	struct conf_report rep;
	char   *dir;
	struct conf *c;
	const struct conf_problem *p;
	char   *path;

	c = test_load("virtual_mailbox_domains = virt.test\nvirtual_mailbox_base = vmail\n", NULL,
		      NULL, 0, &rep, &dir);
	assert_null(c);
	p = test_find(&rep, "do not specify relative pathname: virtual_mailbox_base = vmail");
	assert_non_null(p);
	assert_true(p->is_error);
	path = xasprintf("%s/main.cf", dir);
	assert_string_equal(p->file, path);
	assert_int_equal(p->line, 2);
	assert_string_equal(p->param, "virtual_mailbox_base");
	assert_string_equal(p->value, "vmail");
	assert_int_equal(rep.errors, 1);	/* once, though every view sees it */
	free(path);
	conf_report_free(&rep);
	test_rmdir(dir);

	/* relative even with no virtual domain: nothing could ever use it */
	c = test_load("virtual_mailbox_base = ./vmail\n", NULL, NULL, 0, &rep, NULL);
	assert_null(c);
	assert_non_null(test_find(&rep, "relative pathname: virtual_mailbox_base = ./vmail"));
	conf_report_free(&rep);

	/* empty: an error only when there are virtual domains */
	c = test_load("virtual_mailbox_maps = static:x/\n", NULL, NULL, 0, &rep, NULL);
	assert_null(c);
	p = test_find(&rep, "bad string length 0 < 1: virtual_mailbox_base = ");
	assert_non_null(p);
	assert_null(p->file);	/* the built-in default */
	conf_report_free(&rep);
	c = test_load("myhostname = mx.example.test\n", NULL, NULL, 0, &rep, NULL);
	assert_non_null(c);
	conf_free(&c);
	conf_report_free(&rep);

	/* a service's own -o: its master.cf line; the global view is fine */
	c = test_load("virtual_mailbox_domains = virt.test\nvirtual_mailbox_base = /var/vmail\n",
		      "smtp inet n - n - - smtpd\n2525 inet n - n - - smtpd\n"
		      "  -o virtual_mailbox_base=var/vmail\n", NULL, 0, &rep, NULL);
	assert_null(c);
	p = test_find(&rep, "relative pathname: virtual_mailbox_base = var/vmail");
	assert_non_null(p);
	assert_int_equal(p->line, 3);
	assert_int_equal(rep.errors, 1);
	conf_report_free(&rep);

	/* conf_load_anyway keeps the configuration for `mxgate check` */
	dir = test_dir("virtual_mailbox_base = vmail\n", NULL);
	memset(&rep, 0, sizeof(rep));
	c = conf_load_anyway(dir, NULL, 0, &rep);
	assert_non_null(c);
	assert_int_equal(rep.errors, 1);
	assert_int_equal(conf_service_count(c), 1);
	conf_free(&c);
	conf_report_free(&rep);
	test_rmdir(dir);
}

/* conf_origin: the line that wrote a value, through $references. */
static void
test_origin(void **state)
{
	struct conf_report rep;
	char   *dir, *main_path, *master_path;
	char   *over[] = {(char *) "virtual_gid_maps = static:7"};
	struct conf *c = test_load("myhostname = mx.example.test\n"
				   "alias_maps = hash:/etc/aliases\n"
				   "maps_dir = /etc/mxgate\n"
				   "virtual_mailbox_maps = texthash:$maps_dir/vmailbox\n"
				   "virtual_uid_maps = static:5000\n"
				   "virtual_mailbox_base = /var/vmail\n",
				   "smtp inet n - n - - smtpd\n"
				   "2525 inet n - n - - smtpd -o virtual_uid_maps=cdb:/x/uids\n",
				   over, 1, &rep, &dir);
	const struct conf_service *smtp, *sub;
	struct conf_origin o;

	if (c == NULL)
		test_dump(&rep);
	assert_non_null(c);
	main_path = xasprintf("%s/main.cf", dir);
	master_path = xasprintf("%s/master.cf", dir);
	smtp = conf_service_at(c, 0);
	sub = conf_service_at(c, 1);
	/* the default "proxy:unix:passwd.byname $alias_maps" leads to alias_maps */
	assert_int_equal(conf_origin(c, smtp, "local_recipient_maps", "hash:/etc/aliases", &o), 1);
	assert_string_equal(o.file, main_path);
	assert_int_equal(o.line, 2);
	assert_string_equal(o.name, "alias_maps");
	/* the built-in part of the default has no line */
	assert_int_equal(conf_origin(c, smtp, "local_recipient_maps", "proxy:unix:passwd.byname",
				     &o), 0);
	/* pieced together by expansion: the parameter's own line */
	assert_int_equal(conf_origin(c, smtp, "virtual_mailbox_maps",
				     "texthash:/etc/mxgate/vmailbox", &o), 1);
	assert_int_equal(o.line, 4);
	assert_string_equal(o.name, "virtual_mailbox_maps");
	/* a service's -o, and main.cf for the others */
	assert_int_equal(conf_origin(c, sub, "virtual_uid_maps", "cdb:/x/uids", &o), 1);
	assert_string_equal(o.file, master_path);
	assert_int_equal(o.line, 2);
	assert_int_equal(conf_origin(c, smtp, "virtual_uid_maps", "static:5000", &o), 1);
	assert_string_equal(o.file, main_path);
	assert_int_equal(o.line, 5);
	assert_int_equal(conf_origin(c, NULL, "virtual_uid_maps", NULL, &o), 1);
	assert_int_equal(o.line, 5);
	/* the command line */
	assert_int_equal(conf_origin(c, smtp, "virtual_gid_maps", "static:7", &o), 1);
	assert_null(o.file);
	assert_int_equal(o.line, 0);
	conf_free(&c);
	conf_report_free(&rep);
	free(main_path);
	free(master_path);
	test_rmdir(dir);
}

static const struct {
	const char *in;
	const char *host;
	const char *port;	/* NULL: error */
} endpoint_cases[] = {
	{"smtp", NULL, "25"},
	{"25", NULL, "25"},
	{"2525", NULL, "2525"},
	{"submission", NULL, "587"},
	{"127.0.0.1:2525", "127.0.0.1", "2525"},
	{"mx.example.com:smtp", "mx.example.com", "25"},
	{"[::1]:2526", "::1", "2526"},
	{"[2001:db8::1]:smtp", "2001:db8::1", "25"},
	{"*:2525", NULL, "2525"},
	{"0", NULL, NULL},
	{"65536", NULL, NULL},
	{"nosuchservice", NULL, NULL},
	{"[::1]2526", NULL, NULL},
	{"[::1", NULL, NULL},
	{"host:", NULL, NULL},
};

static void
test_endpoint(void **state)
{
	for (size_t i = 0; i < sizeof(endpoint_cases) / sizeof(endpoint_cases[0]); i++) {
		char   *host, *port, *err;
		int	rc = conf_parse_endpoint(endpoint_cases[i].in, &host, &port, &err);

		if (endpoint_cases[i].port == NULL) {
			assert_int_equal(rc, -1);
			assert_non_null(err);
			free(err);
			continue;
		}
		assert_int_equal(rc, 0);
		if (endpoint_cases[i].host)
			assert_string_equal(host, endpoint_cases[i].host);
		else
			assert_null(host);
		assert_string_equal(port, endpoint_cases[i].port);
		free(host);
		free(port);
	}
}

/* ---- verbs ---- */

/* Run a verb with stdout and stderr captured. */
static int
test_verb(int (*verb)(int, char **), const char *const *args, char **out_r, char **err_r)
{
	char	otmpl[] = "/tmp/test_conf_out.XXXXXX", etmpl[] = "/tmp/test_conf_err.XXXXXX";
	int	ofd = mkstemp(otmpl), efd = mkstemp(etmpl);
	int	save_out = dup(1), save_err = dup(2), argc = 0, rc;
	char   *argv[32];

	for (; args[argc]; argc++)
		argv[argc] = (char *) args[argc];
	argv[argc] = NULL;
	fflush(stdout);
	dup2(ofd, 1);
	dup2(efd, 2);
	rc = verb(argc, argv);
	fflush(stdout);
	dup2(save_out, 1);
	dup2(save_err, 2);
	close(save_out);
	close(save_err);
	close(ofd);
	close(efd);
	assert_int_equal(conf_read_file(otmpl, out_r), 0);
	assert_int_equal(conf_read_file(etmpl, err_r), 0);
	unlink(otmpl);
	unlink(etmpl);
	return rc;
}

static char *
test_compat_file(void)
{
	char   *text = NULL;
	const char *here = __FILE__, *tail = strstr(here, "tests/unit/");
	char   *path;

	if (conf_read_file("tests/compat/postconf-d.txt", &text) == 0)
		return text;
	if (tail == NULL)
		return NULL;
	path = xasprintf("%.*stests/compat/postconf-d.txt", (int) (tail - here), here);
	if (conf_read_file(path, &text) < 0)
		text = NULL;
	free(path);
	return text;
}

/* The "name = ..." line of text, or NULL. */
static char *
test_line_of(const char *text, const char *name)
{
	size_t	len = strlen(name);

	for (const char *p = text; p && *p;) {
		const char *eol = strchr(p, '\n');

		if (strncmp(p, name, len) == 0 && p[len] == ' ' && p[len + 1] == '=')
			return xstrndup(p, eol ? (size_t) (eol - p) : strlen(p));
		p = eol ? eol + 1 : NULL;
	}
	return NULL;
}

static void
test_golden_defaults(void **state)
{
	static const char *const skip[] = {
	    /* DESIGN.md's deliberate differences */
	    "mail_name", "mail_owner", "syslog_name", "compatibility_level", "config_directory",
	    "alias_maps",
	    "smtpd_forbid_bare_newline", "smtpd_forbid_unauth_pipelining",
	    /* computed from this host, or Postfix's own process */
	    "myhostname", "mydomain", "mynetworks", "process_id", "process_name",
	    NULL,
	};
	char   *ref = test_compat_file(), *out, *err;
	const char *args[] = {"-c", "/nonexistent", "-d", NULL};
	size_t	checked = 0;

	if (ref == NULL)
		skip();
	assert_int_equal(test_verb(conf_cmd_conf, args, &out, &err), 0);
	assert_string_equal(err, "");
	/* every Postfix line: ours equals it, except the rows above */
	for (const char *p = ref; *p;) {
		const char *eol = strchr(p, '\n');
		char   *want = xstrndup(p, eol ? (size_t) (eol - p) : strlen(p));
		char   *name = xstrndup(want, strcspn(want, " "));
		char   *got = test_line_of(out, name);
		int	skipped = 0;

		for (const char *const *s = skip; *s; s++)
			skipped |= strcmp(*s, name) == 0;
		if (!skipped) {
			if (got == NULL || strcmp(got, want) != 0)
				print_message("want: %s\ngot:  %s\n", want, got ? got : "(none)");
			assert_non_null(got);
			assert_string_equal(got, want);
			checked++;
		}
		free(want);
		free(name);
		free(got);
		p = eol ? eol + 1 : p + strlen(p);
	}
	assert_true(checked > 1000);
	/* every implemented parameter appears, with mxgate's default */
	for (int i = 0; i < P__COUNT; i++) {
		char   *got = test_line_of(out, conf_params[i].name);
		char   *want = *conf_params[i].def
		    ? xasprintf("%s = %s", conf_params[i].name, conf_params[i].def)
		    : xasprintf("%s =", conf_params[i].name);

		assert_non_null(got);
		if (i != P_myhostname && i != P_mydomain && i != P_mynetworks)
			assert_string_equal(got, want);
		free(got);
		free(want);
	}
	free(out);
	free(err);
	free(ref);
}

static void
test_cmd_conf(void **state)
{
	char   *dir = test_dir("smtpd_banner = $x   hello\n  world\nx = 1\nfoo_bar = 2\n"
			       "smtpd_tls_cert_file = /c\n",
			       "smtp inet n - n - - smtpd -o qq=1\n");
	char   *out, *err, *want;
	static const struct {
		const char *args[8];
		const char *out;
		int	rc;
	} cases[] = {
	    {{"-d", "smtpd_hard_error_limit", NULL}, "smtpd_hard_error_limit = ${stress?{1}:{20}}\n", 0},
	    {{"-dx", "smtpd_hard_error_limit", NULL}, "smtpd_hard_error_limit = 20\n", 0},
	    {{"-dh", "smtpd_timeout", NULL}, "${stress?{10}:{300}}s\n", 0},
	    {{"-d", "-h", "-x", "smtpd_timeout", NULL}, "300s\n", 0},
	    {{"-d", "smtpd_tls_cert_file", "smtpd_tls_security_level", NULL},
	     "smtpd_tls_cert_file =\nsmtpd_tls_security_level =\n", 0},
	    {{"-d", "mail_version", "mail_name", NULL}, "mail_version = 3.7.11\nmail_name = mxgate\n", 0},
	    {{"smtpd_banner", NULL}, "smtpd_banner = $x hello world\n", 0},
	    {{"-x", "smtpd_banner", NULL}, "smtpd_banner = 1 hello world\n", 0},
	    {{"x", "smtpd_tls_cert_file", NULL}, "x = 1\nsmtpd_tls_cert_file = /c\n", 0},
	    {{"-n", NULL}, "config_directory = DIR\nsmtpd_banner = $x hello world\n"
			   "smtpd_tls_cert_file = /c\nx = 1\n", 0},
	    {{"-nh", "smtpd_banner", "smtpd_timeout", NULL}, "$x hello world\n", 0},
	    {{"-o", "stress=yes", "-x", "smtpd_hard_error_limit", "smtpd_timeout",
	      "smtpd_per_request_deadline", NULL},
	     "smtpd_hard_error_limit = 1\nsmtpd_timeout = 10s\nsmtpd_per_request_deadline = yes\n", 0},
	    {{"-x", "-o", "smtpd_client_connection_limit_exceptions=10.0.0.0/8",
	      "smtpd_client_event_limit_exceptions", NULL},
	     "smtpd_client_event_limit_exceptions =\n", 0},
	    {{"-x", "default_rbl_reply", NULL},
	     "default_rbl_reply = $rbl_code Service unavailable; $rbl_class [$rbl_what] blocked "
	     "using $rbl_domain${rbl_reason?; $rbl_reason}\n", 0},
	    {{"smtpd_timeout", "nosuchparam", "foo_bar", "smtpd_soft_error_limit", NULL},
	     "smtpd_timeout = ${stress?{10}:{300}}s\nsmtpd_soft_error_limit = 10\n", 0},
	    {{"-d", "-n", NULL}, "", 1},
	    {{"-d", "-o", "a=b", NULL}, "", 1},
	    {{"-Z", NULL}, "", 1},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *args[12] = {"-c", dir};
		size_t	k = 2;
		char   *exp_out;

		for (size_t j = 0; cases[i].args[j]; j++)
			args[k++] = cases[i].args[j];
		args[k] = NULL;
		assert_int_equal(test_verb(conf_cmd_conf, args, &out, &err), cases[i].rc);
		{
			/* DIR stands for the directory */
			struct buf b = BUF_INIT;
			const char *p = cases[i].out, *q;

			while ((q = strstr(p, "DIR")) != NULL) {
				buf_append(&b, p, (size_t) (q - p));
				buf_puts(&b, dir);
				p = q + 3;
			}
			buf_puts(&b, p);
			exp_out = buf_steal(&b);
			if (exp_out == NULL)
				exp_out = xstrdup("");
		}
		if (strcmp(out, exp_out) != 0)
			print_message("case %zu: got\n%s---\nstderr:\n%s", i, out, err);
		assert_string_equal(out, exp_out);
		free(exp_out);
		/* postconf's warnings, with our name */
		if (strncmp(cases[i].args[0], "-d", 2) != 0) {
			want = xasprintf("mxgate: warning: %s/main.cf: unused parameter: foo_bar=2\n",
					 dir);
			if (cases[i].rc == 0) {
				assert_non_null(strstr(err, want));
				free(want);
				want = xasprintf("mxgate: warning: %s/master.cf: unused parameter: qq=1\n",
						 dir);
				assert_non_null(strstr(err, want));
			}
			free(want);
		}
		if (i == 14) {
			assert_non_null(strstr(err, "mxgate: warning: nosuchparam: unknown parameter\n"));
			assert_non_null(strstr(err, "mxgate: warning: foo_bar: unknown parameter\n"));
		}
		if (i == 15)
			assert_string_equal(err, "mxgate: fatal: specify one of -d -n\n");
		assert_null(strstr(err, "not implemented"));
		free(out);
		free(err);
	}
	test_rmdir(dir);
}

static void
test_cmd_conf_all(void **state)
{
	char   *dir = test_dir("x = 1\nsmtpd_banner = $x\n", NULL);
	const char *args[] = {"-c", dir, NULL};
	char   *out, *err;
	const char *prev = NULL;
	size_t	lines = 0;

	assert_int_equal(test_verb(conf_cmd_conf, args, &out, &err), 0);
	assert_string_equal(err, "");
	/* sorted, one line per name, user-defined x included */
	for (char *p = out, *eol; *p; p = eol + 1) {
		eol = strchr(p, '\n');
		*eol = 0;
		*strchr(p, ' ') = 0;
		if (prev)
			assert_true(strcmp(prev, p) < 0);
		prev = p;
		lines++;
	}
	{
		size_t extra = 0;	/* parameters that only mxgate has */

		for (int i = 0; i < P__COUNT; i++)
			extra += !conf_postfix_known(conf_params[i].name);
		assert_true(extra >= 3);	/* mxgate_anvil_backend, _timeout, ... */
		assert_int_equal(lines, postfix_param_count + extra + 1);	/* + x */
	}
	free(out);
	free(err);
	test_rmdir(dir);
}

static void
test_cmd_check(void **state)
{
	char   *dir = test_dir("smtpd_timeout = 10x\nsmtpd_sasl_path = /c\nfoo = 1\n", NULL);
	const char *args[] = {"-c", dir, NULL};
	char   *out, *err, *want;

	assert_int_equal(test_verb(conf_cmd_check, args, &out, &err), 1);
	assert_string_equal(out, "");
	want = xasprintf("mxgate: error: %s/main.cf, line 1: parameter smtpd_timeout: bad time "
			 "value or unit: 10x\n"
			 "mxgate: warning: %s/main.cf, line 2: smtpd_sasl_path: parameter is "
			 "not implemented by mxgate, ignored\n"
			 "mxgate: warning: %s/main.cf, line 3: unused parameter: foo=1\n",
			 dir, dir, dir);
	assert_string_equal(err, want);
	free(want);
	free(out);
	free(err);
	test_rmdir(dir);

	dir = test_dir("smtpd_timeout = 10m\n", NULL);
	args[1] = dir;
	assert_int_equal(test_verb(conf_cmd_check, args, &out, &err), 0);
	assert_string_equal(err, "");
	free(out);
	free(err);
	test_rmdir(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_sorted),
		cmocka_unit_test(test_refused_table),
		cmocka_unit_test(test_parse_main),
		cmocka_unit_test(test_list_split),
		cmocka_unit_test(test_expand),
		cmocka_unit_test(test_expand_limits),
		cmocka_unit_test(test_expand_refs),
		cmocka_unit_test(test_types),
		cmocka_unit_test(test_error_location),
		cmocka_unit_test(test_report_collects),
		cmocka_unit_test(test_warnings_only),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_computed),
		cmocka_unit_test(test_overrides),
		cmocka_unit_test(test_master),
		cmocka_unit_test(test_master_errors),
		cmocka_unit_test(test_master_duplicates),
		cmocka_unit_test(test_virtual_base),
		cmocka_unit_test(test_origin),
		cmocka_unit_test(test_endpoint),
		cmocka_unit_test(test_golden_defaults),
		cmocka_unit_test(test_cmd_conf),
		cmocka_unit_test(test_cmd_conf_all),
		cmocka_unit_test(test_cmd_check),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
