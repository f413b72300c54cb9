/*
 * policy/lookup_keys: the key orders of virtual(5), local(8) and access(5)
 * (addresses and clients), with recipient_delimiter and both
 * parent_domain_matches_subdomains styles, as Postfix's manuals and its
 * mail_addr_find()/check_domain_access()/check_addr_access() give them, and
 * which keys are "partial" (not asked of pattern tables).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "policy/lookup_keys.h"
#include "policy/maps.h"
#include "util/buf.h"
#include "util/xalloc.h"

/* "key key* ..." with '*' after each partial key. */
static char *show(struct lookup_keys *ks)
{
	struct buf b = BUF_INIT;

	for (size_t i = 0; i < ks->n; i++)
		buf_printf(&b, "%s%s%s", i ? " " : "", ks->k[i].key, ks->k[i].partial ? "*" : "");
	lookup_keys_free(ks);
	return b.data ? buf_steal(&b) : xstrdup("");
}

#define assert_keys(call, want) do { \
	struct lookup_keys ks_; \
	char *got_; \
	call; \
	got_ = show(&ks_); \
	assert_string_equal(got_, want); \
	free(got_); \
} while (0)

static void test_virtual(void **state)
{
	(void)state;
	assert_keys(lookup_keys_virtual(&ks_, "+", "user+ext", "example.com", false),
		    "user+ext@example.com user@example.com* @example.com*");
	assert_keys(lookup_keys_virtual(&ks_, "+", "user", "example.com", true),
		    "user@example.com user* @example.com*");
	assert_keys(lookup_keys_virtual(&ks_, "+", "user+ext", "example.com", true),
		    "user+ext@example.com user@example.com* user+ext* user* @example.com*");
	assert_keys(lookup_keys_virtual(&ks_, "", "user+ext", "example.com", false),
		    "user+ext@example.com @example.com*");
	/* never split */
	assert_keys(lookup_keys_virtual(&ks_, "-", "owner-list", "x.test", false),
		    "owner-list@x.test @x.test*");
	assert_keys(lookup_keys_virtual(&ks_, "-", "list-request", "x.test", false),
		    "list-request@x.test @x.test*");
	assert_keys(lookup_keys_virtual(&ks_, "+", "+ext", "x.test", false),
		    "+ext@x.test @x.test*");
	assert_keys(lookup_keys_virtual(&ks_, "+", "postmaster", "x.test", false),
		    "postmaster@x.test @x.test*");
	/* folded, as smtpd folds the address it looks up */
	assert_keys(lookup_keys_virtual(&ks_, "+", "User+Ext", "Example.COM", false),
		    "user+ext@example.com user@example.com* @example.com*");
	/* several delimiters: the first of any */
	assert_keys(lookup_keys_virtual(&ks_, "+-", "a-b+c", "x.test", false),
		    "a-b+c@x.test a@x.test* @x.test*");
}

static void test_local(void **state)
{
	(void)state;
	assert_keys(lookup_keys_local(&ks_, "+", "user+ext"), "user+ext user*");
	assert_keys(lookup_keys_local(&ks_, "+", "user"), "user");
}

static void test_access(void **state)
{
	(void)state;
	/* access(5): user+foo@domain, user@domain, domain, user+foo@, user@ */
	assert_keys(lookup_keys_access(&ks_, "+", "user+foo@mail.example.com", true),
		    "user+foo@mail.example.com user@mail.example.com* mail.example.com* "
		    "example.com* com* user+foo@* user@*");
	assert_keys(lookup_keys_access(&ks_, "+", "user@mail.example.com", false),
		    "user@mail.example.com mail.example.com* .example.com* .com* user@*");
	assert_keys(lookup_keys_access(&ks_, NULL, "user+foo@example.com", true),
		    "user+foo@example.com example.com* com* user+foo@*");
	assert_keys(lookup_keys_access(&ks_, NULL, "Bob@X.Test", true), "bob@x.test x.test* test* bob@*");
	/* the null sender's domain-less forms */
	assert_keys(lookup_keys_access(&ks_, "+", "nodomain", true), "");
}

static void test_client(void **state)
{
	(void)state;
	assert_keys(lookup_keys_client(&ks_, "mail.example.com", "192.0.2.1", true),
		    "mail.example.com example.com* com* 192.0.2.1 192.0.2* 192.0* 192*");
	assert_keys(lookup_keys_client(&ks_, "mail.example.com", "192.0.2.1", false),
		    "mail.example.com .example.com* .com* 192.0.2.1 192.0.2* 192.0* 192*");
	assert_keys(lookup_keys_client(&ks_, "unknown", "2001:db8::1", true),
		    "unknown 2001:db8::1 2001:db8:* 2001:db8* 2001*");
	assert_keys(lookup_keys_client(&ks_, "192.0.2.1", "192.0.2.1", true),
		    "192.0.2.1 192.0.2.1 192.0.2* 192.0* 192*");
}

static void test_find(void **state)
{
	char *err = NULL, *value;
	char *specs[] = { "inline:{user@x.test=one, @x.test=catchall, user=bare}" };
	struct maplist *l = maplist_open(specs, 1, &err);
	struct lookup_keys ks;
	size_t which = 99;

	(void)state;
	assert_non_null(l);
	lookup_keys_virtual(&ks, "+", "user+ext", "x.test", false);
	assert_int_equal(lookup_keys_find(l, &ks, &value, &which, NULL), MAP_FOUND);
	assert_string_equal(value, "one");
	assert_int_equal(which, 1);
	free(value);
	lookup_keys_free(&ks);
	lookup_keys_virtual(&ks, "+", "other", "x.test", false);
	assert_int_equal(lookup_keys_find(l, &ks, &value, &which, NULL), MAP_FOUND);
	assert_string_equal(value, "catchall");
	free(value);
	lookup_keys_free(&ks);
	lookup_keys_virtual(&ks, "+", "other", "y.test", false);
	assert_int_equal(lookup_keys_find(l, &ks, &value, NULL, NULL), MAP_NOTFOUND);
	assert_null(value);
	lookup_keys_free(&ks);
	maplist_free(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_virtual),
		cmocka_unit_test(test_local),
		cmocka_unit_test(test_access),
		cmocka_unit_test(test_client),
		cmocka_unit_test(test_find),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
