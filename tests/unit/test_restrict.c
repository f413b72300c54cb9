/*
 * policy/restrict through whole sessions in memory (testsvc), in virtual
 * time: the replies of each stage with smtpd_delay_reject yes and no, the
 * deferrals (defer_if_permit, defer_if_reject), warn_if_reject, soft_bounce,
 * a permit that would relay, sleep as a timer, reject_unauth_pipelining,
 * DATA and END-OF-DATA restrictions, DISCARD (nothing stored), PREPEND (the
 * header above Received:), HOLD refused, an access value naming a
 * restriction or a class, and the HELO, sender and recipient syntax checks.
 * The client is 198.51.100.7, whose name is "unknown".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fakeloop.h"
#include "testsvc.h"
#include "util/xalloc.h"

#define NAMADDR "unknown[198.51.100.7]"

/* One step: what the client sends and the exact output it gets ("" none yet). */
struct step {
	const char *send;
	const char *want;
	int	timers;		/* virtual timers to jump over before the output is taken */
};

static void
play(const char *main_cf, const struct step *steps)
{
	struct testsvc t;

	assert_int_equal(testsvc_init(&t, main_cf, "memory"), 0);
	testsvc_connect(&t, "198.51.100.7");
	for (const struct step *s = steps; s->want != NULL; s++) {
		char *got;

		if (s->send != NULL)
			memio_feeds(&t.io, s->send);
		testsvc_settle(&t, s->timers);
		got = memio_take(&t.io);
		if (strcmp(got, s->want) != 0)
			fail_msg("after \"%s\": got \"%s\", want \"%s\"", s->send ? s->send : "(banner)",
				 got, s->want);
		free(got);
	}
	testsvc_free(&t);
}

#define BANNER	{ NULL, "220 mx.example.test ESMTP mxgate\r\n", 0 }
#define HELO	{ "HELO client.example\r\n", "250 mx.example.test\r\n", 0 }
#define MAIL	{ "MAIL FROM:<a@example.org>\r\n", "250 2.1.0 Ok\r\n", 0 }
#define RCPT_OK	{ "RCPT TO:<alice@virt.test>\r\n", "250 2.1.5 Ok\r\n", 0 }
#define END	{ NULL, NULL, 0 }

static void
test_reject_and_defer(void **state)
{
	(void)state;
	play("smtpd_client_restrictions = reject\n", (const struct step[]) {
		BANNER, HELO, MAIL,
		{ "RCPT TO:<alice@virt.test>\r\n",
		  "554 5.7.1 <" NAMADDR ">: Client host rejected: Access denied\r\n", 0 }, END });
	play("smtpd_helo_restrictions = defer\ndefer_code = 421\n", (const struct step[]) {
		BANNER, HELO, MAIL,
		{ "RCPT TO:<alice@virt.test>\r\n",
		  "421 4.3.2 <client.example>: Helo command rejected: Try again later\r\n", 0 },
		END });
	/* defer_if_permit, then permit: the deferral */
	play("smtpd_sender_restrictions = defer_if_permit, permit\n", (const struct step[]) {
		BANNER, HELO, MAIL,
		{ "RCPT TO:<alice@virt.test>\r\n",
		  "450 4.7.0 <a@example.org>: Sender address rejected: defer_if_permit requested\r\n",
		  0 }, END });
	/* defer_if_reject, then a 5xx reject: the deferral instead */
	play("smtpd_recipient_restrictions = defer_if_reject, reject\n", (const struct step[]) {
		BANNER, HELO, MAIL,
		{ "RCPT TO:<alice@virt.test>\r\n",
		  "450 4.7.0 <alice@virt.test>: Recipient address rejected: defer_if_reject "
		  "requested\r\n", 0 }, END });
	/* warn_if_reject: logged, not refused */
	play("smtpd_recipient_restrictions = warn_if_reject, reject, reject_unauth_destination\n",
	     (const struct step[]) { BANNER, HELO, MAIL, RCPT_OK, END });
	/* soft_bounce makes it 4xx, enhanced code too */
	play("soft_bounce = yes\nsmtpd_recipient_restrictions = reject\n", (const struct step[]) {
		BANNER, HELO, MAIL,
		{ "RCPT TO:<alice@virt.test>\r\n",
		  "454 4.7.1 <alice@virt.test>: Recipient address rejected: Access denied\r\n", 0 },
		END });
}

static void
test_never_relay(void **state)
{
	(void)state;
	/* permit_mynetworks would let 198.51.100.7 relay: mxgate refuses at that point */
	play("mynetworks = 198.51.100.0/24\n", (const struct step[]) {
		BANNER, HELO, MAIL, RCPT_OK,
		{ "RCPT TO:<x@elsewhere.example>\r\n",
		  "554 5.7.1 <x@elsewhere.example>: Relay access denied\r\n", 0 }, END });
	/* so does an open relay configuration */
	play("smtpd_relay_restrictions = permit\nsmtpd_recipient_restrictions = "
	     "reject_unauth_destination\nrelay_domains_reject_code = 550\n",
	     (const struct step[]) { BANNER, HELO, MAIL,
		{ "RCPT TO:<x@elsewhere.example>\r\n",
		  "550 5.7.1 <x@elsewhere.example>: Relay access denied\r\n", 0 }, END });
	/* outside mynetworks, Postfix's default: defer_unauth_destination */
	play("", (const struct step[]) { BANNER, HELO, MAIL,
		{ "RCPT TO:<x@elsewhere.example>\r\n",
		  "454 4.7.1 <x@elsewhere.example>: Relay access denied\r\n", 0 }, END });
}

static void
test_no_delay_reject(void **state)
{
	(void)state;
	/* the client's reject replaces the banner; then only QUIT works */
	play("smtpd_delay_reject = no\nsmtpd_client_restrictions = reject\n",
	     (const struct step[]) {
		{ NULL, "554 5.7.1 <" NAMADDR ">: Client host rejected: Access denied\r\n", 0 },
		{ "HELO client.example\r\n", "503 5.7.0 Error: access denied for " NAMADDR "\r\n",
		  0 },
		{ "NOOPX\r\n", "503 5.7.0 Error: access denied for " NAMADDR "\r\n", 0 },
		{ "QUIT\r\n", "221 2.0.0 Bye\r\n", 0 }, END });
	/* HELO refused at HELO, MAIL at MAIL */
	play("smtpd_delay_reject = no\nsmtpd_helo_restrictions = reject_non_fqdn_helo_hostname\n"
	     "smtpd_sender_restrictions = reject_non_fqdn_sender\n", (const struct step[]) {
		BANNER,
		{ "HELO client\r\n",
		  "504 5.5.2 <client>: Helo command rejected: need fully-qualified hostname\r\n", 0 },
		HELO,
		{ "MAIL FROM:<a@localhost>\r\n",
		  "504 5.5.2 <a@localhost>: Sender address rejected: need fully-qualified "
		  "address\r\n", 0 },
		MAIL, RCPT_OK, END });
}

static void
test_sleep_is_a_timer(void **state)
{
	(void)state;
	/* nothing before the 3 s have passed; then the evaluation goes on past the sleep */
	play("smtpd_client_restrictions = sleep 3, reject\n", (const struct step[]) {
		BANNER, HELO, MAIL,
		{ "RCPT TO:<alice@virt.test>\r\n", "", 0 },
		{ NULL, "554 5.7.1 <" NAMADDR ">: Client host rejected: Access denied\r\n", 1 },
		END });
	/* a client that talked before the greeting is caught by reject_unauth_pipelining */
	play("smtpd_forbid_unauth_pipelining = no\n"
	     "smtpd_recipient_restrictions = reject_unauth_pipelining, reject_unauth_destination\n",
	     (const struct step[]) { BANNER,
		{ "HELO client.example\r\nMAIL FROM:<a@example.org>\r\n",
		  "250 mx.example.test\r\n250 2.1.0 Ok\r\n", 0 },
		{ "RCPT TO:<alice@virt.test>\r\n",
		  "503 5.5.0 <alice@virt.test>: Recipient address rejected: Improper use of SMTP "
		  "command pipelining\r\n", 0 }, END });
}

static void
test_syntax(void **state)
{
	(void)state;
	play("smtpd_helo_restrictions = reject_invalid_helo_hostname\n", (const struct step[]) {
		BANNER, { "HELO -bad-.example\r\n", "250 mx.example.test\r\n", 0 }, MAIL,
		{ "RCPT TO:<alice@virt.test>\r\n",
		  "501 5.5.2 <-bad-.example>: Helo command rejected: Invalid name\r\n", 0 }, END });
	play("smtpd_helo_restrictions = reject_invalid_hostname\n", (const struct step[]) {
		BANNER, { "HELO [1.2.3]\r\n", "250 mx.example.test\r\n", 0 }, MAIL,
		{ "RCPT TO:<alice@virt.test>\r\n",
		  "501 5.5.2 <[1.2.3]>: Helo command rejected: invalid ip address\r\n", 0 }, END });
	play("smtpd_helo_restrictions = reject_non_fqdn_hostname\n", (const struct step[]) {
		BANNER, { "HELO [192.0.2.1]\r\n", "250 mx.example.test\r\n", 0 }, MAIL, RCPT_OK,
		END });
	play("smtpd_relay_restrictions = reject_non_fqdn_recipient, reject_unauth_destination\n",
	     (const struct step[]) { BANNER, HELO, MAIL,
		{ "RCPT TO:<alice@virt>\r\n",
		  "504 5.5.2 <alice@virt>: Recipient address rejected: need fully-qualified "
		  "address\r\n", 0 }, END });
	/* the multi-recipient bounce: the second recipient of a null sender */
	play("smtpd_data_restrictions = reject_multi_recipient_bounce\n", (const struct step[]) {
		BANNER, HELO, { "MAIL FROM:<>\r\n", "250 2.1.0 Ok\r\n", 0 }, RCPT_OK,
		{ "RCPT TO:<bob@virt.test>\r\n", "250 2.1.5 Ok\r\n", 0 },
		{ "DATA\r\n", "550 5.5.3 <DATA>: Data command rejected: Multi-recipient bounce\r\n",
		  0 }, END });
}

static void
test_access_actions(void **state)
{
	(void)state;
	play("smtpd_sender_restrictions = check_sender_access inline:{a@example.org=HOLD}\n",
	     (const struct step[]) { BANNER, HELO, MAIL,
		{ "RCPT TO:<alice@virt.test>\r\n", "451 4.3.5 Server configuration error\r\n", 0 },
		END });
	/* a value that names restrictions and a class */
	play("smtpd_restriction_classes = strict\nstrict = reject_non_fqdn_helo_hostname, permit\n"
	     "smtpd_sender_restrictions = check_sender_access inline:{example.org=strict}\n",
	     (const struct step[]) { BANNER,
		{ "HELO client\r\n", "250 mx.example.test\r\n", 0 }, MAIL,
		{ "RCPT TO:<alice@virt.test>\r\n",
		  "504 5.5.2 <client>: Helo command rejected: need fully-qualified hostname\r\n", 0 },
		END });
	play("smtpd_recipient_restrictions = check_recipient_access "
	     "inline:{{alice@=550 5.7.9 No thanks}}, reject_unauth_destination\n",
	     (const struct step[]) { BANNER, HELO, MAIL,
		{ "RCPT TO:<alice@virt.test>\r\n",
		  "550 5.7.9 <alice@virt.test>: Recipient address rejected: No thanks\r\n", 0 },
		END });
	/* a restriction that mxgate does not implement, named by a table: refused, never passed */
	play("smtpd_recipient_restrictions = check_recipient_access "
	     "inline:{virt.test=reject_unverified_recipient}, reject_unauth_destination\n",
	     (const struct step[]) { BANNER, HELO, MAIL,
		{ "RCPT TO:<alice@virt.test>\r\n", "451 4.3.5 Server configuration error\r\n", 0 },
		END });
}

/* One message from a@example.org to alice; the whole output (t stays up: the caller frees it). */
static char *
one_message(struct testsvc *t, const char *main_cf)
{
	static const char *const steps[] = {
		"HELO c.example\r\n", "MAIL FROM:<a@example.org>\r\n", "RCPT TO:<alice@virt.test>\r\n",
		"DATA\r\n", "Subject: x\r\n\r\nhi\r\n.\r\n",
	};

	assert_int_equal(testsvc_init(t, main_cf, "memory"), 0);
	testsvc_connect(t, "198.51.100.7");
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		memio_feeds(&t->io, steps[i]);
		testsvc_settle(t, 0);
	}
	return memio_take(&t->io);
}

static void
test_data_eod_discard_prepend(void **state)
{
	struct testsvc t;
	char *got;

	(void)state;
	play("smtpd_data_restrictions = reject\n", (const struct step[]) { BANNER, HELO, MAIL,
		RCPT_OK, { "DATA\r\n",
		  "554 5.7.1 <DATA>: Data command rejected: Access denied\r\n", 0 }, END });
	play("smtpd_end_of_data_restrictions = defer\n", (const struct step[]) { BANNER, HELO,
		MAIL, RCPT_OK, { "DATA\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n", 0 },
		{ "Subject: x\r\n\r\nhi\r\n.\r\n",
		  "450 4.3.2 <END-OF-MESSAGE>: End-of-data rejected: Try again later\r\n", 0 },
		END });

	/* DISCARD: the client hears "queued", nothing is stored */
	got = one_message(&t, "smtpd_sender_restrictions = check_sender_access "
			  "inline:{a@example.org=DISCARD}\n");
	assert_non_null(strstr(got, "250 2.1.5 Ok\r\n354 End data"));
	assert_non_null(strstr(got, "250 2.0.0 Ok: queued as "));
	assert_int_equal(t.nmsgs, 0);
	free(got);
	testsvc_free(&t);

	/* PREPEND: the header goes above our Received: */
	free(one_message(&t, "smtpd_recipient_restrictions = check_recipient_access "
			 "inline:{{alice@virt.test=PREPEND X-Seen: yes}}, reject_unauth_destination\n"));
	assert_int_equal(t.nmsgs, 1);
	assert_memory_equal(t.msgs[0].received, "X-Seen: yes\nReceived: from c.example", 36);
	testsvc_free(&t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reject_and_defer),
		cmocka_unit_test(test_never_relay),
		cmocka_unit_test(test_no_delay_reject),
		cmocka_unit_test(test_sleep_is_a_timer),
		cmocka_unit_test(test_syntax),
		cmocka_unit_test(test_access_actions),
		cmocka_unit_test(test_data_eod_discard_prepend),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
