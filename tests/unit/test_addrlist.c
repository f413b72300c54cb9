/*
 * policy/addrlist: Postfix-style client lists, table-driven.  Each row is a
 * list (items as the caller splits them), flags, and a client (name and
 * address) with the expected answer; a second table has lists that must be
 * refused, with a piece of the message.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "policy/addrlist.h"

#define MAX_ITEMS 6
#define P ADDRLIST_PARENT_MATCH
#define A ADDRLIST_ADDR_ONLY

struct match_case {
	const char *items[MAX_ITEMS];	/* NULL-terminated */
	int flags;
	const char *name;		/* client name, or NULL */
	const char *addr;		/* client address, or NULL */
	int want;
};

static const struct match_case match_cases[] = {
	/* IPv4 addresses and networks */
	{ { "127.0.0.0/8" }, 0, "localhost", "127.0.0.1", 1 },
	{ { "127.0.0.0/8" }, 0, "localhost", "127.255.255.255", 1 },
	{ { "127.0.0.0/8" }, 0, "unknown", "128.0.0.1", 0 },
	{ { "192.0.2.1" }, 0, "unknown", "192.0.2.1", 1 },
	{ { "192.0.2.1" }, 0, "unknown", "192.0.2.2", 0 },
	{ { "[192.0.2.1]" }, 0, "unknown", "192.0.2.1", 1 },
	{ { "[192.0.2.0]/24" }, 0, "unknown", "192.0.2.200", 1 },
	{ { "192.0.2.128/25" }, 0, "unknown", "192.0.2.127", 0 },
	{ { "192.0.2.128/25" }, 0, "unknown", "192.0.2.128", 1 },
	{ { "0.0.0.0/0" }, 0, "unknown", "203.0.113.9", 1 },
	{ { "0.0.0.0/0" }, 0, "unknown", "2001:db8::1", 0 },
	{ { "192.0.2.1/32" }, 0, "unknown", "192.0.2.1", 1 },
	/* IPv4-mapped IPv6 clients match IPv4 items, and only those */
	{ { "127.0.0.0/8" }, 0, "unknown", "::ffff:127.0.0.1", 1 },
	{ { "192.0.2.1" }, 0, "unknown", "::ffff:192.0.2.1", 1 },
	{ { "::ffff:192.0.2.1" }, 0, "unknown", "::ffff:192.0.2.1", 0 },
	{ { "[::ffff:0.0.0.0]/96" }, 0, "unknown", "::ffff:192.0.2.1", 0 },
	/* IPv6, bracketed or bare */
	{ { "[::1]/128" }, 0, "localhost", "::1", 1 },
	{ { "[::1]" }, 0, "localhost", "::1", 1 },
	{ { "::1" }, 0, "localhost", "::1", 1 },
	{ { "::1" }, 0, "localhost", "::2", 0 },
	{ { "[fe80::]/64" }, 0, "unknown", "fe80::1:2:3:4", 1 },
	{ { "[fe80::]/64" }, 0, "unknown", "fe80:0:0:1::1", 0 },
	{ { "2001:db8::/32" }, 0, "unknown", "2001:db8:ffff::1", 1 },
	{ { "2001:db8::/32" }, 0, "unknown", "2001:db9::1", 0 },
	{ { "2001:db8::/33" }, 0, "unknown", "2001:db8:7fff::1", 1 },
	{ { "2001:db8::/33" }, 0, "unknown", "2001:db8:8000::1", 0 },
	{ { "[2001:DB8::1]" }, 0, "unknown", "2001:db8::1", 1 },
	{ { "[2001:db8::1]" }, 0, "unknown", "192.0.2.1", 0 },
	{ { "::/0" }, 0, "unknown", "192.0.2.1", 0 },
	/* client names */
	{ { "mx.example.com" }, 0, "MX.Example.COM", "192.0.2.1", 1 },
	{ { "MX.EXAMPLE.COM" }, 0, "mx.example.com", "192.0.2.1", 1 },
	{ { "example.com" }, 0, "example.com", "192.0.2.1", 1 },
	{ { "example.com" }, 0, "mx.example.com", "192.0.2.1", 0 },
	{ { "example.com" }, P, "mx.example.com", "192.0.2.1", 1 },
	{ { "example.com" }, P, "a.b.example.com", "192.0.2.1", 1 },
	{ { "example.com" }, P, "badexample.com", "192.0.2.1", 0 },
	{ { "example.com" }, P, "example.com.evil", "192.0.2.1", 0 },
	{ { ".example.com" }, 0, "mx.example.com", "192.0.2.1", 1 },
	{ { ".example.com" }, 0, "example.com", "192.0.2.1", 0 },
	{ { ".example.com" }, 0, "badexample.com", "192.0.2.1", 0 },
	{ { ".example.com" }, P, "mx.example.com", "192.0.2.1", 1 },
	{ { "example.com" }, 0, NULL, "192.0.2.1", 0 },
	{ { "unknown" }, 0, "unknown", "192.0.2.1", 1 },
	/* mynetworks: addresses only, names never match */
	{ { "example.com" }, A | P, "example.com", "192.0.2.1", 0 },
	{ { "example.com", "192.0.2.0/24" }, A | P, "example.com", "192.0.2.1", 1 },
	/* negation: first match wins, a negated match ends with "no" */
	{ { "!192.0.2.1", "192.0.2.0/24" }, 0, "unknown", "192.0.2.1", 0 },
	{ { "!192.0.2.1", "192.0.2.0/24" }, 0, "unknown", "192.0.2.2", 1 },
	{ { "192.0.2.0/24", "!192.0.2.1" }, 0, "unknown", "192.0.2.1", 1 },
	{ { "!.bad.example", ".example" }, 0, "mx.bad.example", "192.0.2.1", 0 },
	{ { "!.bad.example", ".example" }, 0, "mx.good.example", "192.0.2.1", 1 },
	{ { "!!192.0.2.1" }, 0, "unknown", "192.0.2.1", 1 },
	{ { "![::1]" }, 0, "localhost", "::1", 0 },
	/* a name item and an address item in one list, either may match */
	{ { "mx.example.com", "[::1]/128", "127.0.0.0/8" }, 0, "mx.example.com", "198.51.100.1", 1 },
	{ { "mx.example.com", "[::1]/128", "127.0.0.0/8" }, 0, "localhost", "::1", 1 },
	{ { "mx.example.com", "[::1]/128", "127.0.0.0/8" }, 0, "localhost", "10.0.0.1", 0 },
	/* empty items are skipped; an empty list matches nothing */
	{ { "", "192.0.2.1" }, 0, "unknown", "192.0.2.1", 1 },
	{ { NULL }, 0, "unknown", "192.0.2.1", 0 },
	/* no client address */
	{ { "0.0.0.0/0" }, 0, "unknown", NULL, 0 },
	{ { "unknown" }, 0, "unknown", NULL, 1 },
};

struct error_case {
	const char *items[MAX_ITEMS];
	const char *message;	/* a part of *err_r */
};

static const struct error_case error_cases[] = {
	{ { "/etc/postfix/network_table" },
	  "\"/etc/postfix/network_table\": pattern files are not supported in mxgate" },
	{ { "127.0.0.0/8", "hash:/etc/postfix/network_table" },
	  "\"hash:/etc/postfix/network_table\": lookup tables are not supported in mxgate" },
	{ { "cidr:/etc/x" }, "\"cidr:/etc/x\": lookup tables are not supported" },
	{ { "!texthash:/etc/x" }, "\"!texthash:/etc/x\": lookup tables are not supported" },
	{ { "static:all" }, "\"static:all\": lookup tables are not supported" },
	{ { "127.0.0.1/8" },
	  "\"127.0.0.1/8\": non-null host address bits, perhaps you should use "
	  "\"127.0.0.0/8\" instead" },
	{ { "[192.0.2.1]/24" }, "\"[192.0.2.1]/24\": non-null host address bits, perhaps you "
	  "should use \"[192.0.2.0]/24\" instead" },
	{ { "[2001:db8::1]/64" }, "\"[2001:db8::1]/64\": non-null host address bits, perhaps "
	  "you should use \"[2001:db8::]/64\" instead" },
	{ { "192.0.2.0/33" }, "\"192.0.2.0/33\": bad network prefix length \"33\" (0 to 32)" },
	{ { "[::1]/129" }, "bad network prefix length \"129\" (0 to 128)" },
	{ { "192.0.2.0/" }, "bad network prefix length" },
	{ { "192.0.2.0/+8" }, "bad network prefix length" },
	{ { "192.0.2.0/ 8" }, "bad network prefix length" },
	{ { "192.0.2/24" }, "\"192.0.2/24\": bad address syntax" },
	{ { "[192.0.2.1" }, "\"[192.0.2.1\": bad address syntax" },
	{ { "[192.0.2.1]x" }, "bad address syntax" },
	{ { "[example.com]" }, "bad address syntax" },
	{ { "256.0.0.1/8" }, "bad address syntax" },
	{ { "!" }, "\"!\": negation of nothing" },
	{ { "exa mple.com" }, "\"exa mple.com\": not an address, a network or a host name" },
	{ { "*.example.com" }, "not an address, a network or a host name" },
	{ { "." }, "not an address, a network or a host name" },
};

static void
make_addr(struct sockaddr_storage *ss, const char *text)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(text, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, text, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

		s4->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, text, &s4->sin_addr), 1);
	}
}

static size_t
count_items(const char *const *items)
{
	size_t n = 0;

	while (n < MAX_ITEMS && items[n] != NULL)
		n++;
	return n;
}

static void
test_match(void **state)
{
	size_t i;

	for (i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
		const struct match_case *c = &match_cases[i];
		struct sockaddr_storage ss;
		struct addrlist *l;
		char *err = NULL;
		int got;

		l = addrlist_create_flags((char *const *)c->items, count_items(c->items), c->flags,
					  &err);
		if (l == NULL)
			fail_msg("case %zu (%s): %s", i, c->items[0], err);
		if (c->addr != NULL)
			make_addr(&ss, c->addr);
		got = addrlist_match(l, c->name, c->addr != NULL ? (struct sockaddr *)&ss : NULL);
		if (got != c->want)
			fail_msg("case %zu: list \"%s\"... flags %d, client %s[%s]: got %d, want %d",
				 i, c->items[0] ? c->items[0] : "", c->flags,
				 c->name ? c->name : "(null)", c->addr ? c->addr : "(null)", got,
				 c->want);
		addrlist_free(&l);
		assert_null(l);
	}
}

static void
test_errors(void **state)
{
	size_t i;

	for (i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++) {
		const struct error_case *c = &error_cases[i];
		struct addrlist *l;
		char *err = NULL;

		l = addrlist_create((char *const *)c->items, count_items(c->items), &err);
		if (l != NULL)
			fail_msg("case %zu: \"%s\" accepted", i, c->items[count_items(c->items) - 1]);
		assert_non_null(err);
		if (strstr(err, c->message) == NULL)
			fail_msg("case %zu: message \"%s\" lacks \"%s\"", i, err, c->message);
		free(err);
	}
}

static void
test_default_flags(void **state)
{
	/* addrlist_create(): names matched, no parent-domain matching. */
	char *items[] = { "example.com", ".example.net" };
	struct sockaddr_storage ss;
	struct addrlist *l;
	char *err = NULL;

	make_addr(&ss, "192.0.2.1");
	l = addrlist_create(items, 2, &err);
	assert_non_null(l);
	assert_int_equal(addrlist_match(l, "example.com", (struct sockaddr *)&ss), 1);
	assert_int_equal(addrlist_match(l, "mx.example.com", (struct sockaddr *)&ss), 0);
	assert_int_equal(addrlist_match(l, "mx.example.net", (struct sockaddr *)&ss), 1);
	assert_int_equal(addrlist_match(l, "unknown", NULL), 0);
	addrlist_free(&l);
	addrlist_free(&l);	/* NULL is fine */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_default_flags),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
