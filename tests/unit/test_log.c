/*
 * Unit tests for log_printable() (src/log/log.c): client text in smtpd's
 * address and HELO log fields, as Postfix 3.7.11's printable() leaves it,
 * except that C1 controls become '?' (mxgate).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "log/log.h"
#include "util/buf.h"

static void
check(const char *in, size_t len, int utf8, const char *want)
{
	struct buf b = BUF_INIT;

	log_printable(&b, in, len, utf8);
	if (strcmp(buf_str(&b), want) != 0)
		fail_msg("[%.*s] utf8=%d: got [%s] want [%s]", (int)len, in, utf8, buf_str(&b), want);
	buf_free(&b);
}

#define CHECK(in, utf8, want) check((in), sizeof(in) - 1, (utf8), (want))

static void
test_printable(void **state)
{
	CHECK("<a@b\xc3\xbc" "cher.example>", 1, "<a@b\xc3\xbc" "cher.example>");
	CHECK("<a@b\xc3\xbc" "cher.example>", 0, "<a@b??cher.example>");
	CHECK("\xf0\x9f\x98\x80", 1, "\xf0\x9f\x98\x80");
	/* Nothing is escaped: backslash, quotes and brackets stay. */
	CHECK("\"a\\\"b\"@x", 1, "\"a\\\"b\"@x");
	/* Controls, DEL, NUL, broken and overlong UTF-8, surrogates: '?' per byte. */
	CHECK("a\r\nb\tc\x7f", 1, "a??b?c?");
	CHECK("a\0b", 1, "a?b");
	CHECK("\xc3", 1, "?");
	CHECK("\xc3(", 1, "?(");
	CHECK("\xc0\xaf", 1, "??");
	CHECK("\xed\xa0\x80", 1, "???");
	CHECK("\xf4\x90\x80\x80", 1, "????");
	CHECK("\xff", 1, "?");
	/* mxgate: C1 controls (U+009B is CSI to some terminals) are '?' too; U+00A0 is kept. */
	CHECK("\xc2\x9b" "31m", 1, "??31m");
	CHECK("\xc2\x80\xc2\xa0", 1, "??\xc2\xa0");
	/* Empty input. */
	check("", 0, 1, "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_printable),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
