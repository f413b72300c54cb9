/*
 * reject_unverified_recipient (policy/restrict.c) through whole sessions in
 * memory (testsvc): the recipient's own lookup is the probe.  A known
 * virtual or local recipient passes; an unknown one gets Postfix 3.7's
 * "unverified address" deferral (450 4.1.1, with virtual(8)'s and local(8)'s
 * "unknown user" texts, as recorded from the reference Postfix), or its
 * "undeliverable address" reject with a 5xx unverified_recipient_reject_code;
 * unverified_recipient_tempfail_action = defer rejects at once (a later
 * reject cannot win), defer_if_permit lets a later 5xx reject win;
 * unverified_recipient_reject_reason replaces the text; a table that does
 * not answer is the probe deferring (unverified_recipient_defer_code,
 * "mail system configuration error"); warn_if_reject logs and passes; the
 * reject log line is Postfix's.  reject_unverified_sender stays refused.
 * The client is 198.51.100.7, whose name is "unknown".
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

#include "conf/conf.h"
#include "log/log.h"
#include "testsvc.h"
#include "util/xalloc.h"

struct step {
	const char *send;
	const char *want;
};

#define LOCAL	"mydestination = local.test\nlocal_recipient_maps = inline:{carol=x}\n"
#define UNV	"smtpd_recipient_restrictions = reject_unverified_recipient, " \
		"reject_unauth_destination\n"
#define BANNER	{ NULL, "220 mx.example.test ESMTP mxgate\r\n" }
#define HELO	{ "HELO client.example\r\n", "250 mx.example.test\r\n" }
#define MAIL	{ "MAIL FROM:<a@example.org>\r\n", "250 2.1.0 Ok\r\n" }
#define OK(a)	{ "RCPT TO:<" a ">\r\n", "250 2.1.5 Ok\r\n" }
/*
 * A known local user passes the verification; the unit tests have no
 * privileged delivery helper, so the session then defers it (not the
 * restriction's "unverified address").
 */
#define LOCAL_OK(a) { "RCPT TO:<" a ">\r\n", "451 4.3.0 <" a ">: Recipient address rejected: " \
		      "Local delivery is not available\r\n" }
#define END	{ NULL, NULL }

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
		testsvc_settle(&t, 0);
		got = memio_take(&t.io);
		if (strcmp(got, s->want) != 0)
			fail_msg("%s: after \"%s\": got \"%s\", want \"%s\"", main_cf,
				 s->send ? s->send : "(banner)", got, s->want);
		free(got);
	}
	testsvc_free(&t);
}

static void
test_known_and_unknown(void **state)
{
	(void)state;
	play(LOCAL UNV, (const struct step[]) {
		BANNER, HELO, MAIL, OK("alice@virt.test"), LOCAL_OK("carol@local.test"),
		{ "RCPT TO:<bob2@virt.test>\r\n", "450 4.1.1 <bob2@virt.test>: Recipient address "
		  "rejected: unverified address: unknown user: \"bob2@virt.test\"\r\n" },
		/* virtual(8) folds the whole address, extension and all */
		{ "RCPT TO:<Dave+Ext@Virt.Test>\r\n", "450 4.1.1 <Dave+Ext@Virt.Test>: Recipient "
		  "address rejected: unverified address: unknown user: \"dave+ext@virt.test\"\r\n" },
		/* local(8) names the user, folded */
		{ "RCPT TO:<NoSuch@local.test>\r\n", "450 4.1.1 <NoSuch@local.test>: "
		  "Recipient address rejected: unverified address: unknown user: \"nosuch\"\r\n" },
		END });
	/* without recipient_delimiter the extension stays */
	play("mydestination = local.test\nlocal_recipient_maps = inline:{carol=x}\n" UNV,
	     (const struct step[]) { BANNER, HELO, MAIL,
		{ "RCPT TO:<a+b@local.test>\r\n", "450 4.1.1 <a+b@local.test>: Recipient address "
		  "rejected: unverified address: unknown user: \"a+b\"\r\n" }, END });
	/* an unknown user in a virtual alias domain: trivial-rewrite's error(8) text */
	play("virtual_alias_domains = valias.test\nvirtual_alias_maps = "
	     "inline:{carol@valias.test=alice@virt.test}\n" UNV, (const struct step[]) {
		BANNER, HELO, MAIL, OK("carol@valias.test"),
		{ "RCPT TO:<dave@valias.test>\r\n", "450 4.1.1 <dave@valias.test>: Recipient "
		  "address rejected: unverified address: User unknown in virtual alias table\r\n" },
		END });
	/* not ours: no probe, the relay check refuses it as always */
	play(UNV, (const struct step[]) { BANNER, HELO, MAIL,
		{ "RCPT TO:<x@elsewhere.example>\r\n",
		  "454 4.7.1 <x@elsewhere.example>: Relay access denied\r\n" }, END });
}

static void
test_recipient_restrictions_with_recipient_delimiter(void **state)
{
	(void)state;
	play("recipient_delimiter = +\n" LOCAL UNV, (const struct step[]) {
		BANNER, HELO, MAIL, LOCAL_OK("carol+x@local.test"), LOCAL_OK("Carol+x@Local.Test"),
		{ "RCPT TO:<NoSuch+ext@local.test>\r\n", "450 4.1.1 <NoSuch+ext@local.test>: "
		  "Recipient address rejected: unverified address: unknown user: \"nosuch\"\r\n" },
		END });
}

static void
test_codes_reason_action(void **state)
{
	(void)state;
	/* a 5xx reject code: "undeliverable address", the enhanced code follows it */
	play("unverified_recipient_reject_code = 550\n" UNV, (const struct step[]) {
		BANNER, HELO, MAIL, OK("alice@virt.test"),
		{ "RCPT TO:<bob2@virt.test>\r\n", "550 5.1.1 <bob2@virt.test>: Recipient address "
		  "rejected: undeliverable address: unknown user: \"bob2@virt.test\"\r\n" }, END });
	/* a 2xx code accepts the probe's answer; mxgate's own check still refuses */
	play("unverified_recipient_reject_code = 250\n" UNV, (const struct step[]) {
		BANNER, HELO, MAIL,
		{ "RCPT TO:<bob2@virt.test>\r\n", "550 5.1.1 <bob2@virt.test>: Recipient address "
		  "rejected: User unknown in virtual mailbox table\r\n" }, END });
	/* the custom reason */
	play("unverified_recipient_reject_reason = Address lookup failed\n" UNV,
	     (const struct step[]) { BANNER, HELO, MAIL,
		{ "RCPT TO:<bob2@virt.test>\r\n", "450 4.1.1 <bob2@virt.test>: Recipient address "
		  "rejected: unverified address: Address lookup failed\r\n" }, END });
	/* defer_if_permit (default): a later 5xx reject wins over the deferral */
	play("smtpd_recipient_restrictions = reject_unverified_recipient, check_recipient_access "
	     "inline:{bob2@virt.test=REJECT}, reject_unauth_destination\n", (const struct step[]) {
		BANNER, HELO, MAIL,
		{ "RCPT TO:<bob2@virt.test>\r\n", "554 5.7.1 <bob2@virt.test>: Recipient address "
		  "rejected: Access denied\r\n" }, END });
	/* defer: the 450 at once, the later reject is never reached */
	play("unverified_recipient_tempfail_action = defer\n"
	     "smtpd_recipient_restrictions = reject_unverified_recipient, check_recipient_access "
	     "inline:{bob2@virt.test=REJECT}, reject_unauth_destination\n", (const struct step[]) {
		BANNER, HELO, MAIL,
		{ "RCPT TO:<bob2@virt.test>\r\n", "450 4.1.1 <bob2@virt.test>: Recipient address "
		  "rejected: unverified address: unknown user: \"bob2@virt.test\"\r\n" }, END });
	/* warn_if_reject: logged, not refused; mxgate's own check then refuses the unknown user */
	play("smtpd_recipient_restrictions = warn_if_reject, reject_unverified_recipient, "
	     "reject_unauth_destination\n", (const struct step[]) {
		BANNER, HELO, MAIL, OK("alice@virt.test"),
		{ "RCPT TO:<bob2@virt.test>\r\n", "550 5.1.1 <bob2@virt.test>: Recipient address "
		  "rejected: User unknown in virtual mailbox table\r\n" }, END });
}

static void
test_table_down(void **state)
{
	(void)state;
	/* the probe deferred: defer code, virtual(8)'s text, whoever the user */
#define DOWN "virtual_mailbox_maps = socketmap:unix:/nonexistent/mxgate-verify:vm\n"
	play(DOWN UNV, (const struct step[]) {
		BANNER, HELO, MAIL,
		{ "RCPT TO:<alice@virt.test>\r\n", "450 4.1.1 <alice@virt.test>: Recipient address "
		  "rejected: unverified address: mail system configuration error\r\n" }, END });
	play("unverified_recipient_defer_code = 451\n" DOWN UNV, (const struct step[]) {
		BANNER, HELO, MAIL,
		{ "RCPT TO:<alice@virt.test>\r\n", "451 4.1.1 <alice@virt.test>: Recipient address "
		  "rejected: unverified address: mail system configuration error\r\n" }, END });
	/* without the restriction: mxgate's own check, Postfix's smtpd reply */
	play(DOWN, (const struct step[]) { BANNER, HELO, MAIL,
		{ "RCPT TO:<alice@virt.test>\r\n",
		  "451 4.3.0 <alice@virt.test>: Temporary lookup failure\r\n" }, END });
#undef DOWN
}

static void
test_log_line(void **state)
{
	struct testsvc t;
	char logpath[] = "/tmp/mxgate-test-verify-log-XXXXXX";
	char *err = NULL, line[1024];
	int fd = mkstemp(logpath), found = 0;
	FILE *fp;
	static const char *const cmds[] = {
		"EHLO client.example\r\n", "MAIL FROM:<a@example.org>\r\n",
		"RCPT TO:<bob2@virt.test>\r\n",
	};

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(log_open("mxgate", logpath, "mx.example.test", &err), 0);
	assert_int_equal(testsvc_init(&t, UNV, "memory"), 0);
	testsvc_connect(&t, "198.51.100.7");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		memio_feeds(&t.io, cmds[i]);
		testsvc_settle(&t, 0);
		free(memio_take(&t.io));
	}
	testsvc_free(&t);
	log_close();
	fp = fopen(logpath, "r");
	assert_non_null(fp);
	while (fgets(line, sizeof(line), fp) != NULL)
		if (strstr(line, ": reject: RCPT from unknown[198.51.100.7]: 450 4.1.1 "
			   "<bob2@virt.test>: Recipient address rejected: unverified address: unknown "
			   "user: \"bob2@virt.test\"; from=<a@example.org> to=<bob2@virt.test> "
			   "proto=ESMTP helo=<client.example>\n") != NULL)
			found++;
	fclose(fp);
	if (found != 1)
		fail_msg("no reject line in %s", logpath);
	unlink(logpath);
}

static void
test_sender_refused(void **state)
{
	struct testsvc t;
	char	cmd[128];

	(void)state;
	/* the service cannot be built: `check` and `run` refuse it (system tests: the text) */
	assert_int_not_equal(testsvc_init_service(&t, "smtpd_sender_restrictions = "
						  "reject_unverified_sender\n"), 0);
	assert_null(t.normal);
	conf_free(&t.conf);	/* testsvc keeps what it loaded when the build fails */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t.dir);
	assert_int_equal(system(cmd), 0);
	/* named by a table value: 451 4.3.5, never passed */
	play("smtpd_recipient_restrictions = check_recipient_access "
	     "inline:{virt.test=reject_unverified_sender}, reject_unauth_destination\n",
	     (const struct step[]) { BANNER, HELO, MAIL,
		{ "RCPT TO:<alice@virt.test>\r\n", "451 4.3.5 Server configuration error\r\n" },
		END });
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_and_unknown),
		cmocka_unit_test(test_recipient_restrictions_with_recipient_delimiter),
		cmocka_unit_test(test_codes_reason_action),
		cmocka_unit_test(test_table_down),
		cmocka_unit_test(test_log_line),
		cmocka_unit_test(test_sender_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
