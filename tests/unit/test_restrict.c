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

#include "fakedns.h"
#include "fakeloop.h"
#include "testsvc.h"
#include "util/dns.h"
#include "util/xalloc.h"

#define NAMADDR "unknown[198.51.100.7]"

/* One step: what the client sends and the exact output it gets ("" none yet). */
struct step {
	const char *send;
	const char *want;
	int	timers;		/* virtual timers to jump over before the output is taken */
};

/* The client's names and the DNS records for play_dns(); NULL records: no resolver. */
struct client {
	const char *name, *reverse;
	int	name_status, reverse_status;
	const char *const *records;
	size_t	*queries;		/* set: how many queries the session asked */
};

static void
play_dns(const char *main_cf, const struct client *c, const struct step *steps)
{
	struct testsvc t;

	assert_int_equal(testsvc_init(&t, main_cf, "memory"), 0);
	if (c && c->records)
		testsvc_set_dns(&t, c->records);
	testsvc_connect_named(&t, "198.51.100.7", c && c->name ? c->name : "unknown",
			      c && c->reverse ? c->reverse : "unknown", c ? c->name_status : 0,
			      c ? c->reverse_status : 0);
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
	if (c && c->queries)
		*c->queries = t.dns ? fakedns_count(t.dns, NULL, 0) : 0;
	testsvc_free(&t);
}

static void
play(const char *main_cf, const struct step *steps)
{
	play_dns(main_cf, NULL, steps);
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
	     "inline:{virt.test=reject_unverified_sender}, reject_unauth_destination\n",
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

static const char *const zone[] = {
	"7.100.51.198.zen.test A 127.0.0.2",
	"7.100.51.198.zen.test A 127.0.0.4",
	"7.100.51.198.zen.test TXT Listed by zen: see http://zen.test/",
	"7.100.51.198.slow.test A RETRY",
	"spam.example.dbl.test A 127.0.1.2",
	"spam.example.dbl.test TXT Domain spam.example is listed",
	"client.example A 192.0.2.10",
	"example.org MX 10 mx.example.org",
	"mx.example.org A 192.0.2.25",
	"badmx.example MX 10 mx.bad.example",
	"mx.bad.example A 192.0.2.66",
	"null.example MX NULLMX",
	"flaky.example MX RETRY",
	"flaky.example A RETRY",
	"flaky.example AAAA RETRY",
	"mail.client.example A 192.0.2.10",
	NULL,
};

static void
test_dns_lists(void **state)
{
	const struct client c = { .records = zone };
	size_t	queries = 0;
	const struct client counted = { .records = zone, .queries = &queries };

	(void)state;
	play_dns("smtpd_client_restrictions = reject_rbl_client zen.test\n", &c,
		 (const struct step[]) { BANNER, HELO, MAIL,
		{ "RCPT TO:<alice@virt.test>\r\n", "554 5.7.1 Service unavailable; Client host "
		  "[198.51.100.7] blocked using zen.test; Listed by zen: see http://zen.test/\r\n", 0 },
		END });
	/* a filter that no answer matches; one that the second address matches */
	play_dns("smtpd_client_restrictions = reject_rbl_client zen.test=127.0.0.3\n", &c,
		 (const struct step[]) { BANNER, HELO, MAIL, RCPT_OK, END });
	play_dns("smtpd_client_restrictions = reject_rbl_client zen.test=127.0.0.[3..5]\n"
		 "maps_rbl_reject_code = 550\n", &c,
		 (const struct step[]) { BANNER, HELO, MAIL,
		{ "RCPT TO:<alice@virt.test>\r\n", "550 5.7.1 Service unavailable; Client host "
		  "[198.51.100.7] blocked using zen.test; Listed by zen: see http://zen.test/\r\n", 0 },
		END });
	/* a list that does not answer: the benefit of the doubt */
	play_dns("smtpd_client_restrictions = reject_rbl_client slow.test\n", &c,
		 (const struct step[]) { BANNER, HELO, MAIL, RCPT_OK, END });
	/* no resolver at all: the same */
	play_dns("smtpd_client_restrictions = reject_rbl_client zen.test\n", NULL,
		 (const struct step[]) { BANNER, HELO, MAIL, RCPT_OK, END });
	/* rhsbl on the sender's domain, without TXT */
	play_dns("smtpd_sender_restrictions = reject_rhsbl_sender dbl.test\n"
		 "default_rbl_reply = $rbl_code 5.7.9 $rbl_class $rbl_what via $rbl_domain"
		 "${rbl_reason?: $rbl_reason}\n", &c,
		 (const struct step[]) { BANNER, HELO,
		{ "MAIL FROM:<bob@spam.example>\r\n", "250 2.1.0 Ok\r\n", 0 },
		{ "RCPT TO:<alice@virt.test>\r\n", "554 5.7.9 Sender address bob@spam.example via "
		  "dbl.test: Domain spam.example is listed\r\n", 0 }, END });
	/* a bad template: Postfix's generic reply */
	play_dns("smtpd_client_restrictions = reject_rbl_client zen.test\n"
		 "default_rbl_reply = blocked\n", &c,
		 (const struct step[]) { BANNER, HELO, MAIL,
		{ "RCPT TO:<alice@virt.test>\r\n", "450 4.7.1 Service unavailable\r\n", 0 }, END });
	/* one query per name per session, however many recipients */
	play_dns("smtpd_client_restrictions = reject_rbl_client zen.test=127.0.0.9\n", &counted,
		 (const struct step[]) { BANNER, HELO, MAIL, RCPT_OK, RCPT_OK, RCPT_OK, END });
	assert_int_equal(queries, 1);
	/* an allowlist that lists the client permits it past a later reject */
	play_dns("smtpd_client_restrictions = permit_dnswl_client zen.test, reject\n", &c,
		 (const struct step[]) { BANNER, HELO, MAIL, RCPT_OK, END });
	/* an allowlist that does not answer defers a later reject */
	play_dns("smtpd_client_restrictions = permit_dnswl_client slow.test, reject\n", &c,
		 (const struct step[]) { BANNER, HELO, MAIL,
		{ "RCPT TO:<alice@virt.test>\r\n", "450 4.7.1 <198.51.100.7>: Client host rejected: "
		  "Service unavailable\r\n", 0 }, END });
}

static void
test_dns_unknown(void **state)
{
	const struct client c = { .records = zone };
	const struct client named = { .name = "mail.client.example",
				      .reverse = "mail.client.example", .records = zone };
	const struct client temp = { .name = "unknown", .reverse = "unknown",
				     .name_status = 4, .reverse_status = 4, .records = zone };

	(void)state;
	play_dns("smtpd_client_restrictions = reject_unknown_client_hostname\n", &c,
		 (const struct step[]) { BANNER, HELO, MAIL,
		{ "RCPT TO:<alice@virt.test>\r\n", "450 4.7.25 Client host rejected: cannot find "
		  "your hostname, [198.51.100.7]\r\n", 0 }, END });
	play_dns("smtpd_client_restrictions = reject_unknown_client_hostname\n"
		 "unknown_client_reject_code = 550\n", &named,
		 (const struct step[]) { BANNER, HELO, MAIL, RCPT_OK, END });
	play_dns("smtpd_client_restrictions = reject_unknown_reverse_client_hostname\n"
		 "unknown_client_reject_code = 550\n", &temp,
		 (const struct step[]) { BANNER, HELO, MAIL,
		{ "RCPT TO:<alice@virt.test>\r\n", "450 4.7.1 Client host rejected: cannot find "
		  "your reverse hostname, [198.51.100.7]\r\n", 0 }, END });
	play_dns("smtpd_helo_restrictions = reject_unknown_helo_hostname\n", &c,
		 (const struct step[]) { BANNER,
		{ "HELO nowhere.example\r\n", "250 mx.example.test\r\n", 0 }, MAIL,
		{ "RCPT TO:<alice@virt.test>\r\n", "450 4.7.1 <nowhere.example>: Helo command "
		  "rejected: Host not found\r\n", 0 }, END });
	play_dns("smtpd_helo_restrictions = reject_unknown_helo_hostname\n", &c,
		 (const struct step[]) { BANNER, HELO, MAIL, RCPT_OK, END });
	play_dns("smtpd_sender_restrictions = reject_unknown_sender_domain\n"
		 "unknown_address_reject_code = 550\n", &c,
		 (const struct step[]) { BANNER, HELO, MAIL, RCPT_OK,
		{ "RSET\r\n", "250 2.0.0 Ok\r\n", 0 },
		{ "MAIL FROM:<a@nowhere.example>\r\n", "250 2.1.0 Ok\r\n", 0 },
		{ "RCPT TO:<alice@virt.test>\r\n", "550 5.1.8 <a@nowhere.example>: Sender address "
		  "rejected: Domain not found\r\n", 0 },
		{ "RSET\r\n", "250 2.0.0 Ok\r\n", 0 },
		{ "MAIL FROM:<a@null.example>\r\n", "250 2.1.0 Ok\r\n", 0 },
		{ "RCPT TO:<alice@virt.test>\r\n", "550 5.7.27 <a@null.example>: Sender address "
		  "rejected: Domain null.example does not accept mail (nullMX)\r\n", 0 },
		{ "RSET\r\n", "250 2.0.0 Ok\r\n", 0 },
		{ "MAIL FROM:<a@flaky.example>\r\n", "250 2.1.0 Ok\r\n", 0 },
		{ "RCPT TO:<alice@virt.test>\r\n", "450 4.1.8 <a@flaky.example>: Sender address "
		  "rejected: Domain not found\r\n", 0 }, END });
	/* a temporary failure is a defer_if_permit: a later reject wins */
	play_dns("smtpd_sender_restrictions = reject_unknown_sender_domain, "
		 "check_sender_access inline:{a@flaky.example=REJECT}\n", &c,
		 (const struct step[]) { BANNER, HELO,
		{ "MAIL FROM:<a@flaky.example>\r\n", "250 2.1.0 Ok\r\n", 0 },
		{ "RCPT TO:<alice@virt.test>\r\n", "554 5.7.1 <a@flaky.example>: Sender address "
		  "rejected: Access denied\r\n", 0 }, END });
	/* our own domains are never asked */
	play_dns("smtpd_sender_restrictions = reject_unknown_sender_domain\n", &c,
		 (const struct step[]) { BANNER, HELO,
		{ "MAIL FROM:<bob@virt.test>\r\n", "250 2.1.0 Ok\r\n", 0 }, RCPT_OK, END });
}

static void
test_dns_server_access(void **state)
{
	const struct client c = { .records = zone };

	(void)state;
	/* by the MX host's name, then by its address */
	play_dns("smtpd_sender_restrictions = check_sender_mx_access inline:{mx.bad.example=REJECT}\n",
		 &c, (const struct step[]) { BANNER, HELO,
		{ "MAIL FROM:<a@badmx.example>\r\n", "250 2.1.0 Ok\r\n", 0 },
		{ "RCPT TO:<alice@virt.test>\r\n", "554 5.7.1 <a@badmx.example>: Sender address "
		  "rejected: Access denied\r\n", 0 }, END });
	play_dns("smtpd_sender_restrictions = check_sender_mx_access inline:{192.0.2.66=REJECT}\n",
		 &c, (const struct step[]) { BANNER, HELO,
		{ "MAIL FROM:<a@badmx.example>\r\n", "250 2.1.0 Ok\r\n", 0 },
		{ "RCPT TO:<alice@virt.test>\r\n", "554 5.7.1 <a@badmx.example>: Sender address "
		  "rejected: Access denied\r\n", 0 }, END });
	/* no MX: the domain is its own mail host; A: the name's address */
	play_dns("smtpd_helo_restrictions = check_helo_a_access inline:{192.0.2.10=REJECT}\n",
		 &c, (const struct step[]) { BANNER, HELO, MAIL,
		{ "RCPT TO:<alice@virt.test>\r\n", "554 5.7.1 <client.example>: Helo command "
		  "rejected: Access denied\r\n", 0 }, END });
	/* OK is not allowed */
	play_dns("smtpd_sender_restrictions = check_sender_mx_access inline:{mx.example.org=OK}\n",
		 &c, (const struct step[]) { BANNER, HELO, MAIL,
		{ "RCPT TO:<alice@virt.test>\r\n", "451 4.3.5 Server configuration error\r\n", 0 },
		END });
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reject_and_defer),
		cmocka_unit_test(test_dns_lists),
		cmocka_unit_test(test_dns_unknown),
		cmocka_unit_test(test_dns_server_access),
		cmocka_unit_test(test_never_relay),
		cmocka_unit_test(test_no_delay_reject),
		cmocka_unit_test(test_sleep_is_a_timer),
		cmocka_unit_test(test_syntax),
		cmocka_unit_test(test_access_actions),
		cmocka_unit_test(test_data_eod_discard_prepend),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
