/*
 * util/hostname: Postfix's valid_hostname(), valid_hostaddr() and
 * valid_mailhost_addr() rules, case by case (the cases Postfix's own
 * valid_hostname test input covers, plus the HELO forms seen in the wild).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/hostname.h"

static void
test_names(void **state)
{
	static const char *const good[] = {
		"a", "example.com", "mx-1.example.com", "x_y.example", "1a.example", "a.1b",
		"123.example.com4",
	};
	static const char *const bad[] = {
		"", ".", "a.", ".a", "a..b", "-a.example", "a-.example", "a.-b", "a b",
		"1.2.3.4", "123", "a/b", "[1.2.3.4]", "ü.example",
	};
	char label[70], longname[300];

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (!hostname_valid(good[i]))
			fail_msg("rejected %s", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (hostname_valid(bad[i]))
			fail_msg("accepted %s", bad[i]);
	memset(label, 'a', 63);
	label[63] = '\0';
	assert_true(hostname_valid(label));
	label[63] = 'a';
	label[64] = '\0';
	assert_false(hostname_valid(label));
	for (size_t i = 0; i < sizeof(longname) - 1; i++)
		longname[i] = i % 2 ? '.' : 'a';
	longname[255] = '\0';
	assert_true(hostname_valid(longname));
	longname[257] = '\0';
	longname[255] = '.';
	longname[256] = 'a';
	assert_false(hostname_valid(longname));
	/* UTF-8 only with SMTPUTF8, and only well-formed */
	assert_false(hostname_utf8_valid("b\xc3\xbc.example", false));
	assert_true(hostname_utf8_valid("b\xc3\xbc.example", true));
	assert_false(hostname_utf8_valid("b\xc3.example", true));
	assert_false(hostname_utf8_valid("b\xc3\xbc..example", true));
}

static void
test_addresses(void **state)
{
	(void)state;
	assert_true(hostaddr_ipv4_valid("192.0.2.1"));
	assert_true(hostaddr_ipv4_valid("0.0.0.0"));
	assert_false(hostaddr_ipv4_valid("0.1.2.3"));
	assert_false(hostaddr_ipv4_valid("1.2.3"));
	assert_false(hostaddr_ipv4_valid("1.2.3.4.5"));
	assert_false(hostaddr_ipv4_valid("1.2.3.256"));
	assert_false(hostaddr_ipv4_valid("1.2.3."));
	assert_false(hostaddr_ipv4_valid("1..2.3"));
	assert_true(hostaddr_ipv6_valid("::1"));
	assert_true(hostaddr_ipv6_valid("::"));
	assert_true(hostaddr_ipv6_valid("2001:db8::1"));
	assert_true(hostaddr_ipv6_valid("1:2:3:4:5:6:7:8"));
	assert_true(hostaddr_ipv6_valid("::ffff:192.0.2.1"));
	assert_true(hostaddr_ipv6_valid("1:2:3:4:5:6:192.0.2.1"));
	assert_false(hostaddr_ipv6_valid("1:2:3:4:5:6:7:8:9"));
	assert_false(hostaddr_ipv6_valid("1::2::3"));
	assert_false(hostaddr_ipv6_valid(":1"));
	assert_false(hostaddr_ipv6_valid("1:"));
	assert_false(hostaddr_ipv6_valid("12345::1"));
	assert_false(hostaddr_ipv6_valid("g::1"));
	assert_true(hostaddr_valid("2001:db8::1"));
	assert_true(hostaddr_valid("192.0.2.1"));
	assert_false(hostaddr_valid(""));
	assert_true(mailhost_addr_valid("IPv6:2001:db8::1"));
	assert_true(mailhost_addr_valid("ipv6:::1"));
	assert_true(mailhost_addr_valid("192.0.2.1"));
	assert_false(mailhost_addr_valid("2001:db8::1"));
	assert_false(mailhost_addr_valid("1.2.3"));
}

static void
test_trim_dot(void **state)
{
	char *t;

	(void)state;
	t = hostname_trim_dot("example.com.");
	assert_string_equal(t, "example.com");
	free(t);
	t = hostname_trim_dot("example.com..");
	assert_string_equal(t, "example.com..");
	free(t);
	t = hostname_trim_dot(".");
	assert_string_equal(t, ".");
	free(t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_addresses),
		cmocka_unit_test(test_trim_dot),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
