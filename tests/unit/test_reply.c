/* Unit tests for the reply table (src/smtp/replies.def) and its formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtp/reply.h"
#include "util/buf.h"

/* Postfix 3.7.11's replies, byte for byte (POSTFIX_REFERENCE.md §5.8). */
static void
test_postfix_texts(void **state)
{
	struct buf b = BUF_INIT;

	(void)state;
#define CHECK(want, ...) do { buf_reset(&b); reply_format(&b, 0, __VA_ARGS__); \
		assert_string_equal(buf_str(&b), want "\r\n"); } while (0)
	CHECK("220 mx.example.test ESMTP mxgate", RPL_BANNER, "mx.example.test ESMTP mxgate");
	CHECK("250 2.0.0 Ok", RPL_OK);
	CHECK("250 2.1.0 Ok", RPL_MAIL_OK);
	CHECK("250 2.1.5 Ok", RPL_RCPT_OK);
	CHECK("354 End data with <CR><LF>.<CR><LF>", RPL_DATA_GO);
	CHECK("250 2.0.0 Ok: queued as 772F4A74063", RPL_QUEUED, "772F4A74063");
	CHECK("250 2.0.0 Ok: 10 bytes queued as 1EC06A72011", RPL_BDAT_QUEUED, (size_t)10,
	      "1EC06A72011");
	CHECK("221 2.0.0 Bye", RPL_BYE);
	CHECK("501 Syntax: HELO hostname", RPL_HELO_SYNTAX);
	CHECK("501 5.5.4 Syntax: MAIL FROM:<address>", RPL_MAIL_SYNTAX);
	CHECK("501 5.1.7 Bad sender address syntax", RPL_MAIL_BAD_ADDR);
	CHECK("503 5.5.1 Error: nested MAIL command", RPL_MAIL_NESTED);
	CHECK("555 5.5.4 Unsupported option: FOO=bar", RPL_UNSUPPORTED_OPT, "FOO=bar");
	CHECK("552 5.3.4 Message size exceeds fixed limit", RPL_SIZE_TOO_BIG);
	CHECK("501 5.1.3 Bad recipient address syntax", RPL_RCPT_BAD_ADDR);
	CHECK("503 5.5.1 Error: need MAIL command", RPL_NEED_MAIL);
	CHECK("452 4.5.3 Error: too many recipients", RPL_TOO_MANY_RCPTS);
	CHECK("554 5.5.1 Error: no valid recipients", RPL_NO_VALID_RCPTS);
	CHECK("500 5.5.2 Error: command not recognized", RPL_UNKNOWN_CMD);
	CHECK("500 5.5.2 Error: bad syntax", RPL_BAD_SYNTAX);
	CHECK("554 5.5.0 Error: SMTP protocol synchronization", RPL_SYNC_ERROR);
	CHECK("221 2.7.0 Error: I can break rules, too. Goodbye.", RPL_NON_SMTP);
	CHECK("550 5.5.2 mx.example.test Error: bare <LF> received", RPL_BARE_LF, 550,
	      "mx.example.test");
	CHECK("421 4.7.0 mx.example.test Error: too many errors", RPL_TOO_MANY_ERRORS,
	      "mx.example.test");
	CHECK("421 4.4.2 mx.example.test Error: timeout exceeded", RPL_TIMEOUT, "mx.example.test");
	CHECK("421 4.7.0 mx.example.test Error: too many connections from 192.0.2.1",
	      RPL_TOO_MANY_CONN, "mx.example.test", "192.0.2.1");
	CHECK("450 4.7.1 Error: too much mail from 192.0.2.1", RPL_MSG_RATE, "192.0.2.1");
	CHECK("450 4.7.1 Error: too many recipients from 192.0.2.1", RPL_RCPT_RATE, "192.0.2.1");
	CHECK("552 5.3.4 Error: message file too big", RPL_MSG_TOO_BIG);
	CHECK("451 4.3.0 Error: queue file write error", RPL_WRITE_ERROR);
	CHECK("550 5.1.1 <x@local.test>: Recipient address rejected: User unknown in local "
	      "recipient table", RPL_UNKNOWN_LOCAL, 550, "5.1.1", "x@local.test", "Recipient address");
	CHECK("454 4.7.1 <x@elsewhere.example>: Relay access denied", RPL_RELAY_DENIED, 454,
	      "4.7.1", "x@elsewhere.example");
	CHECK("554 5.7.1 <localhost[127.0.0.1]>: Client host rejected: Access denied",
	      RPL_ACL_DENIED, 554, "5.7.1", "localhost[127.0.0.1]", "Client host");
	CHECK("503 5.7.0 Error: access denied for localhost[127.0.0.1]", RPL_ACCESS_DENIED_FOR,
	      "localhost[127.0.0.1]");
#undef CHECK
	buf_free(&b);
}

/* soft_bounce = yes turns every 5xx into 4xx, the enhanced code too; other codes stay. */
static void
test_soft_bounce(void **state)
{
	struct buf b = BUF_INIT;

	(void)state;
	assert_int_equal(reply_format(&b, 1, RPL_NEED_MAIL), 403);
	assert_string_equal(buf_str(&b), "403 4.5.1 Error: need MAIL command\r\n");
	buf_reset(&b);
	assert_int_equal(reply_format(&b, 1, RPL_HELO_SYNTAX), 401);
	assert_string_equal(buf_str(&b), "401 Syntax: HELO hostname\r\n");
	buf_reset(&b);
	assert_int_equal(reply_format(&b, 1, RPL_WRITE_ERROR), 451);
	assert_string_equal(buf_str(&b), "451 4.3.0 Error: queue file write error\r\n");
	buf_reset(&b);
	assert_int_equal(reply_raw(&b, 1, "550 5.1.1 <a@b>: Recipient address rejected: x"), 450);
	assert_string_equal(buf_str(&b), "450 4.1.1 <a@b>: Recipient address rejected: x\r\n");
	buf_reset(&b);
	/* a milter's lines: one reply, each line softened; the trailing CR LF goes */
	assert_int_equal(reply_raw(&b, 1, "550 5.7.1 a\r\n550 5.7.1 b\r\n"), 450);
	assert_string_equal(buf_str(&b), "450-4.7.1 a\r\n450 4.7.1 b\r\n");
	buf_reset(&b);
	assert_int_equal(reply_raw(&b, 0, "554 5.7.1 a\n250 ok\r"), 554);
	assert_string_equal(buf_str(&b), "554 5.7.1 a?250 ok?\r\n");
	buf_free(&b);
}

/* Every row: a code of 0 (a parameter) or 2xx-5xx, and an enhanced code of the same class. */
static void
test_table_is_consistent(void **state)
{
	int id;

	(void)state;
	for (id = 0; id < RPL__COUNT; id++) {
		int code = reply_code((enum reply_id)id);
		const char *dsn = reply_dsn((enum reply_id)id);

		assert_true(code == 0 || (code >= 200 && code <= 599));
		if (code != 0 && *dsn != '\0')
			assert_int_equal(dsn[0] - '0', code / 100);
	}
}

static void
test_reply_string(void **state)
{
	char *s = reply_string(RPL_LOOKUP_FAILURE, "a@b");

	(void)state;
	assert_string_equal(s, "451 4.3.0 <a@b>: Temporary lookup failure");
	free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_postfix_texts),
		cmocka_unit_test(test_soft_bounce),
		cmocka_unit_test(test_table_is_consistent),
		cmocka_unit_test(test_reply_string),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
