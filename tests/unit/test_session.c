/*
 * smtp/session: the protocol engine driven in memory (no libevent), in
 * virtual time: replies of a whole transaction; pipelined commands keep
 * their order and get no reply before a late anvil answer; a limit whose
 * answer comes late is still enforced, and one that never comes fails
 * open after mxgate_anvil_timeout with one warning; the bookkeeping after a
 * command (errors, tarpit, hard limit) is the same whether the answer came
 * at once or later; a session freed while a lookup or a delivery is in
 * flight drops the answer safely (ASan/LSan watch); the store failing gives
 * 451 and no message; a BDAT chunk whose content fails is refused when read;
 * STARTTLS (the transport's handshake faked): 530 at encrypt, the 220 written
 * before the handshake starts (also behind the tarpit), plaintext behind it
 * dropped, the state reset, 554 inside TLS, ESMTPS and the TLS comment in the
 * Received: header, the command fed one byte at a time.
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
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "fakeloop.h"
#include "slowspool.h"
#include "log/log.h"
#include "net/tls.h"
#include "testsvc.h"
#include "util/xalloc.h"

/* Everything the server wrote since the last call, as one string. */
static char *
take(struct testsvc *t)
{
	return memio_take(&t->io);
}

static void
expect_out(struct testsvc *t, const char *want)
{
	char *got = take(t);

	assert_string_equal(got, want);
	free(got);
}

/* Connect, EHLO (lock-step: pipelining after EHLO is refused), MAIL, RCPT alice, DATA. */
static void
open_data(struct testsvc *t)
{
	static const char *const steps[] = {
		"EHLO c\r\n", "MAIL FROM:<a@example.org>\r\n", "RCPT TO:<alice@virt.test>\r\n",
		"DATA\r\n",
	};

	testsvc_connect(t, "198.51.100.7");
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		memio_feeds(&t->io, steps[i]);
		testsvc_settle(t, 0);
	}
	free(take(t));
}

static const char EHLO_REPLY[] =
	"250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n"
	"250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n";

static void
test_transaction(void **state)
{
	struct testsvc t;

	assert_int_equal(testsvc_init(&t, "", "memory"), 0);
	testsvc_connect(&t, "198.51.100.7");
	testsvc_settle(&t, 0);
	expect_out(&t, "220 mx.example.test ESMTP mxgate\r\n");
	memio_feeds(&t.io, "EHLO client.example\r\n");
	testsvc_settle(&t, 0);
	expect_out(&t, EHLO_REPLY);
	memio_feeds(&t.io, "MAIL FROM:<a@example.org>\r\nRCPT TO:<alice@virt.test>\r\n"
		    "RCPT TO:<nobody@virt.test>\r\nDATA\r\n");
	testsvc_settle(&t, 0);
	expect_out(&t, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 <nobody@virt.test>: Recipient "
		   "address rejected: User unknown in virtual mailbox table\r\n"
		   "354 End data with <CR><LF>.<CR><LF>\r\n");
	/* Fed one byte at a time: nothing is answered before the final dot's LF. */
	{
		const char *body = "Subject: x\r\n\r\n..dot\r\nbody\r\n.\r\n";

		for (size_t i = 0; body[i]; i++) {
			char *got;

			memio_feed(&t.io, body + i, 1);
			testsvc_settle(&t, 0);
			got = take(&t);
			if (body[i + 1] != '\0')
				assert_string_equal(got, "");
			else
				assert_non_null(strstr(got, "250 2.0.0 Ok: queued as "));
			free(got);
		}
	}
	assert_int_equal(t.nmsgs, 1);
	assert_int_equal(t.msgs[0].nrcpts, 1);
	assert_string_equal(t.msgs[0].body.data, "Subject: x\n\n.dot\nbody\n");
	memio_feeds(&t.io, "QUIT\r\n");
	testsvc_settle(&t, 0);
	expect_out(&t, "221 2.0.0 Bye\r\n");
	assert_true(t.io.closed);
	testsvc_free(&t);
}

/*
 * A late anvil: the banner waits for the connect answer, pipelined MAIL,
 * RCPT and DATA are answered in order and only after each answer came, and
 * the limits are enforced.
 */
static void
test_late_anvil_enforced(void **state)
{
	struct testsvc t;
	char *got;

	assert_int_equal(testsvc_init(&t, "smtpd_client_message_rate_limit = 1\n"
				      "smtpd_client_recipient_rate_limit = 1\n",
				      "test-delay:200"), 0);
	testsvc_connect(&t, "198.51.100.7");
	fakeloop_run(t.fl);
	expect_out(&t, "");			/* the banner waits for anvil */
	fakeloop_sleep(t.fl, 199);
	expect_out(&t, "");
	fakeloop_sleep(t.fl, 1);
	expect_out(&t, "220 mx.example.test ESMTP mxgate\r\n");
	memio_feeds(&t.io, "EHLO c\r\n");
	fakeloop_run(t.fl);
	free(take(&t));
	memio_feeds(&t.io, "MAIL FROM:<a@example.org>\r\nRCPT TO:<alice@virt.test>\r\n"
		    "RCPT TO:<bob@virt.test>\r\nDATA\r\n");
	fakeloop_run(t.fl);
	expect_out(&t, "");			/* MAIL waits for its message rate */
	fakeloop_sleep(t.fl, 200);
	expect_out(&t, "250 2.1.0 Ok\r\n");	/* RCPT now waits for its rate */
	fakeloop_sleep(t.fl, 200);
	expect_out(&t, "250 2.1.5 Ok\r\n");
	fakeloop_sleep(t.fl, 200);		/* the second RCPT is over the rate */
	expect_out(&t, "450 4.7.1 Error: too many recipients from 198.51.100.7\r\n"
		   "354 End data with <CR><LF>.<CR><LF>\r\n");
	memio_feeds(&t.io, ".\r\nMAIL FROM:<b@example.org>\r\n");
	testsvc_settle(&t, 10);
	got = take(&t);
	assert_non_null(strstr(got, "250 2.0.0 Ok: queued as "));
	assert_non_null(strstr(got, "\r\n450 4.7.1 Error: too much mail from 198.51.100.7\r\n"));
	free(got);
	assert_int_equal(t.nmsgs, 1);
	testsvc_free(&t);
}

/* No answer at all: after mxgate_anvil_timeout the session goes on without a limit. */
static void
test_never_answered_fails_open(void **state)
{
	struct testsvc t;
	char logpath[] = "/tmp/mxgate-test-session-log-XXXXXX";
	char *err = NULL, line[512];
	int fd = mkstemp(logpath), warnings = 0;
	FILE *fp;

	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(log_open("mxgate", logpath, "mx.example.test", &err), 0);
	assert_int_equal(testsvc_init(&t, "smtpd_client_connection_count_limit = 1\n"
				      "mxgate_anvil_timeout = 3s\n", "test-delay:never"), 0);
	testsvc_connect(&t, "198.51.100.7");
	fakeloop_sleep(t.fl, 2999);
	expect_out(&t, "");
	fakeloop_sleep(t.fl, 1);
	expect_out(&t, "220 mx.example.test ESMTP mxgate\r\n");
	testsvc_free(&t);
	log_close();
	fp = fopen(logpath, "r");
	assert_non_null(fp);
	while (fgets(line, sizeof(line), fp) != NULL)
		if (strstr(line, "warning: anvil: no answer to a connect request within 3s; "
			   "applying no limit") != NULL)
			warnings++;
	fclose(fp);
	unlink(logpath);
	assert_int_equal(warnings, 1);
}

/*
 * The bookkeeping runs once per command on both paths: with soft 2 and hard
 * 3, three refused MAILs are answered at once, the third one 1 s late (the
 * tarpit), and then the 421 comes, the same with a late anvil.
 */
static void
run_errors(const char *anvil, long delay_ms)
{
	struct testsvc t;
	long long t0;
	char *got;

	assert_int_equal(testsvc_init(&t, "smtpd_client_message_rate_limit = 1\n"
				      "smtpd_soft_error_limit = 2\nsmtpd_hard_error_limit = 4\n",
				      anvil), 0);
	testsvc_connect(&t, "198.51.100.7");
	testsvc_settle(&t, 5);
	free(take(&t));
	memio_feeds(&t.io, "EHLO c\r\n");
	testsvc_settle(&t, 5);
	free(take(&t));
	memio_feeds(&t.io, "MAIL FROM:<a@example.org>\r\nRSET\r\n");
	testsvc_settle(&t, 5);
	expect_out(&t, "250 2.1.0 Ok\r\n250 2.0.0 Ok\r\n");
	/* error 1, error 2: at once (after anvil's answer) */
	for (int i = 0; i < 2; i++) {
		t0 = fakeloop_now_ms(t.fl);
		memio_feeds(&t.io, "MAIL FROM:<a@example.org>\r\n");
		testsvc_settle(&t, 5);
		expect_out(&t, "450 4.7.1 Error: too much mail from 198.51.100.7\r\n");
		assert_int_equal(fakeloop_now_ms(t.fl) - t0, delay_ms);
	}
	/* error 3 and 4: error_count >= soft, so each reply waits 1 s */
	for (int i = 0; i < 2; i++) {
		memio_feeds(&t.io, "MAIL FROM:<a@example.org>\r\n");
		fakeloop_sleep(t.fl, delay_ms + 999);
		expect_out(&t, "");
		fakeloop_sleep(t.fl, 1);
		got = take(&t);
		assert_string_equal(got, "450 4.7.1 Error: too much mail from 198.51.100.7\r\n");
		free(got);
	}
	/* the hard limit: the 421 comes unasked, one more second later */
	t0 = fakeloop_now_ms(t.fl);
	testsvc_settle(&t, 5);
	expect_out(&t, "421 4.7.0 mx.example.test Error: too many errors\r\n");
	assert_int_equal(fakeloop_now_ms(t.fl) - t0, 1000);
	assert_true(t.io.closed);
	testsvc_free(&t);
}

static void
test_bookkeeping_once(void **state)
{
	run_errors("memory", 0);
	run_errors("test-delay:0", 0);
	run_errors("test-delay:300", 300);
}

/*
 * Freed while its recipient lookup's answer is still queued: dropped
 * safely.  A local user is looked up in unix:passwd.byname, which may block:
 * the lookups pool answers (inline here, but posted).  An address that
 * needs only tables in memory (texthash) is answered at once.
 */
static void
test_free_with_lookup_in_flight(void **state)
{
	struct testsvc t;

	assert_int_equal(testsvc_init(&t, "mydestination = local.test\n"
				      "local_recipient_maps = proxy:unix:passwd.byname\n", "memory"), 0);
	testsvc_connect(&t, "198.51.100.7");
	testsvc_settle(&t, 0);
	memio_feeds(&t.io, "EHLO c\r\n");
	testsvc_settle(&t, 0);
	memio_feeds(&t.io, "MAIL FROM:<a@example.org>\r\n");
	testsvc_settle(&t, 0);
	free(take(&t));
	memio_feeds(&t.io, "RCPT TO:<alice@virt.test>\r\n");	/* texthash: at once */
	expect_out(&t, "250 2.1.5 Ok\r\n");
	memio_feeds(&t.io, "RCPT TO:<nosuchuser@local.test>\r\n");
	/* the inline pool has looked it up; the answer is posted, not run */
	expect_out(&t, "");
	testsvc_disconnect(&t);
	testsvc_settle(&t, 0);		/* runs the posted answer: dropped */
	testsvc_free(&t);
}

/* Freed while anvil's answer is still to come: the request is withdrawn, the answer dropped. */
static void
test_free_with_anvil_in_flight(void **state)
{
	struct testsvc t;

	assert_int_equal(testsvc_init(&t, "", "test-delay:200"), 0);
	testsvc_connect(&t, "198.51.100.7");
	fakeloop_run(t.fl);
	expect_out(&t, "");
	testsvc_disconnect(&t);
	assert_int_equal(fakeloop_armed(t.fl), 0);	/* the delay timer went with it */
	testsvc_settle(&t, 5);
	testsvc_free(&t);
}

/* Freed while its message is being stored: the store finishes, no reply. */
static void
test_free_with_delivery_in_flight(void **state)
{
	struct testsvc t;

	assert_int_equal(testsvc_init(&t, "", "memory"), 0);
	open_data(&t);
	memio_feeds(&t.io, "x\r\n.\r\n");
	fakeloop_run(t.fl);	/* the commit answers; the delivery's answer is posted */
	testsvc_disconnect(&t);
	testsvc_settle(&t, 0);
	assert_int_equal(t.nmsgs, 1);	/* stored: a duplicate is better than a loss */
	testsvc_free(&t);
}

/*
 * A spool that pushes back: once it holds its window the session reads no
 * more of the body (the client's bytes stay in the transport), and it goes
 * on when the spool takes bytes again; the message arrives whole.
 */
static void
test_spool_back_pressure(void **state)
{
	static size_t window = 100;
	struct testsvc t;
	char piece[200];
	size_t before;
	char *got;

	assert_int_equal(testsvc_init(&t, "", "memory"), 0);
	t.env.spool_new = slowspool_new;
	t.env.spool_ctx = &window;
	open_data(&t);
	memset(piece, 'x', sizeof(piece) - 2);
	piece[sizeof(piece) - 2] = '\r';
	piece[sizeof(piece) - 1] = '\n';
	before = t.io.consumed;
	memio_feed(&t.io, piece, sizeof(piece));	/* taken: the spool is not full yet */
	testsvc_settle(&t, 0);
	assert_int_equal(t.io.consumed, before + sizeof(piece));
	assert_int_equal(t.io.reading, 0);		/* the session stopped reading */
	for (int i = 0; i < 3; i++)
		memio_feed(&t.io, piece, sizeof(piece));
	memio_feeds(&t.io, ".\r\n");
	testsvc_settle(&t, 0);
	assert_int_equal(t.io.consumed, before + sizeof(piece));	/* held back */
	expect_out(&t, "");
	for (int i = 0; i < 10 && t.nmsgs == 0; i++) {
		slowspool_release(slowspool_last());
		testsvc_settle(&t, 0);
	}
	got = take(&t);
	assert_non_null(strstr(got, "250 2.0.0 Ok: queued as "));
	free(got);
	assert_int_equal(t.nmsgs, 1);
	/* CRLF stored as LF; the first line is no header: cleanup puts an empty line above it */
	assert_int_equal(t.msgs[0].body.len, 1 + 4 * (sizeof(piece) - 1));
	testsvc_free(&t);
}

/* The store fails: 451, no message, the session goes on. */
static void
test_store_failure(void **state)
{
	struct testsvc t;

	assert_int_equal(testsvc_init(&t, "", "memory"), 0);
	t.fail_store = 1;
	open_data(&t);
	memio_feeds(&t.io, "x\r\n.\r\nNOOP\r\n");
	testsvc_settle(&t, 0);
	expect_out(&t, "451 4.3.0 Error: queue file write error\r\n250 2.0.0 Ok\r\n");
	assert_int_equal(t.nmsgs, 0);
	testsvc_free(&t);
}

/*
 * A BDAT chunk that is not LAST but whose content fails (past
 * message_size_limit by Postfix's line count, or a bare LF with
 * smtpd_forbid_bare_newline = reject) is refused once read, the transaction
 * ends, and the chunks up to LAST are discarded; nothing is stored.  The
 * chunk arrives whole, then one byte at a time.
 */
static void
bdat_content_refused(const char *main_cf, const char *chunk, const char *want)
{
	for (int trickle = 0; trickle <= 1; trickle++) {
		struct testsvc t;
		char *cmd;
		size_t i;

		assert_int_equal(testsvc_init(&t, main_cf, "memory"), 0);
		testsvc_connect(&t, "198.51.100.7");
		memio_feeds(&t.io, "EHLO c\r\n");
		testsvc_settle(&t, 0);
		memio_feeds(&t.io, "MAIL FROM:<a@example.org>\r\nRCPT TO:<alice@virt.test>\r\n");
		testsvc_settle(&t, 0);
		free(take(&t));
		cmd = xasprintf("BDAT %zu\r\n%s", strlen(chunk), chunk);
		for (i = 0; cmd[i]; i += trickle ? 1 : strlen(cmd)) {
			memio_feed(&t.io, cmd + i, trickle ? 1 : strlen(cmd));
			testsvc_settle(&t, 0);
		}
		free(cmd);
		expect_out(&t, want);
		memio_feeds(&t.io, "BDAT 5 LAST\r\nend\r\n");
		testsvc_settle(&t, 0);
		expect_out(&t, "551 5.0.0 Discarded 5 bytes after earlier error\r\n");
		memio_feeds(&t.io, "MAIL FROM:<a@example.org>\r\n");
		testsvc_settle(&t, 0);
		expect_out(&t, "250 2.1.0 Ok\r\n");
		assert_int_equal(t.nmsgs, 0);
		testsvc_free(&t);
	}
}

static void
test_bdat_content_refused(void **state)
{
	/* 80 bytes, 120 by Postfix's count (a bare LF counts 2). */
	bdat_content_refused("message_size_limit = 100",
			     "a\na\na\na\na\na\na\na\na\na\na\na\na\na\na\na\na\na\na\na\n"
			     "a\na\na\na\na\na\na\na\na\na\na\na\na\na\na\na\na\na\na\na\n",
			     "552 5.3.4 Error: message file too big\r\n");
	bdat_content_refused("smtpd_forbid_bare_newline = reject", "bare\nlf\r\n",
			     "550 5.5.2 mx.example.test Error: bare <LF> received\r\n");
}

/* The HELO name as Postfix keeps it: words joined by one space, specials as '?'. */
static void
test_helo_name(void **state)
{
	static const struct { const char *cmd, *want; } cases[] = {
		{ "EHLO client.example\r\n", "Received: from client.example (" },
		{ "EHLO client   example \r\n", "Received: from client?example (" },
		{ "HELO \"x y\" <z>@w;(\\)\r\n", "Received: from ?x?y???z??w???? (" },
		{ "EHLO a\rX-Injected: 1\r\n", "Received: from a?X-Injected:?1 (" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct testsvc t;

		assert_int_equal(testsvc_init(&t, "", "memory"), 0);
		testsvc_connect(&t, "198.51.100.7");
		memio_feeds(&t.io, cases[i].cmd);
		testsvc_settle(&t, 0);
		memio_feeds(&t.io, "MAIL FROM:<a@example.org>\r\n");
		testsvc_settle(&t, 0);
		memio_feeds(&t.io, "RCPT TO:<alice@virt.test>\r\n");
		testsvc_settle(&t, 0);
		memio_feeds(&t.io, "DATA\r\n");
		testsvc_settle(&t, 0);
		memio_feeds(&t.io, "Subject: x\r\n\r\nbody\r\n.\r\n");
		testsvc_settle(&t, 0);
		assert_int_equal(t.nmsgs, 1);
		if (strncmp(t.msgs[0].received, cases[i].want, strlen(cases[i].want)) != 0)
			fail_msg("%s: got %s", cases[i].cmd, t.msgs[0].received);
		testsvc_free(&t);
	}
}


/* ---- STARTTLS ------------------------------------------------------------- */

/* A self-signed RSA certificate and its key in dir/c.pem and dir/k.pem. */
static void
make_cert(const char *dir)
{
	EVP_PKEY *pk = EVP_RSA_gen(2048);
	X509   *x = X509_new();
	char	path[128];
	FILE   *f;

	assert_non_null(pk);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, pk);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
				   (const unsigned char *)"mx.test", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	assert_true(X509_sign(x, pk, EVP_sha256()) > 0);
	snprintf(path, sizeof(path), "%s/c.pem", dir);
	assert_non_null(f = fopen(path, "w"));
	PEM_write_X509(f, x);
	fclose(f);
	snprintf(path, sizeof(path), "%s/k.pem", dir);
	assert_non_null(f = fopen(path, "w"));
	PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	X509_free(x);
	EVP_PKEY_free(pk);
}

static void
feed(struct testsvc *t, const char *text)
{
	memio_feeds(&t->io, text);
	testsvc_settle(t, 10);
}

static const struct tls_info fake_tls = {
	.protocol = "TLSv1.3", .cipher = "TLS_FAKE", .usebits = 128, .algbits = 256,
	.kex = "X25519", .sig = "RSA-PSS", .sig_bits = 2048, .sig_dgst = "SHA256",
};

static void
test_starttls(void **state)
{
	char	dir[] = "/tmp/test_session_tls.XXXXXX", cf[512], *got;
	struct testsvc t;

	assert_non_null(mkdtemp(dir));
	make_cert(dir);
	snprintf(cf, sizeof(cf), "smtpd_tls_security_level = encrypt\nsmtpd_tls_cert_file = %s/c.pem\n"
		 "smtpd_tls_key_file = %s/k.pem\nsmtpd_tls_received_header = yes\n"
		 "smtpd_starttls_timeout = 7s\n", dir, dir);
	assert_int_equal(testsvc_init(&t, cf, "memory"), 0);
	testsvc_connect(&t, "198.51.100.7");
	testsvc_settle(&t, 0);
	free(take(&t));
	feed(&t, "EHLO c\r\n");
	got = take(&t);
	assert_non_null(strstr(got, "250-VRFY\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n"));
	free(got);
	feed(&t, "MAIL FROM:<a@example.org>\r\n");
	expect_out(&t, "530 5.7.0 Must issue a STARTTLS command first\r\n");
	feed(&t, "STARTTLS now\r\n");
	expect_out(&t, "501 5.5.4 Syntax: STARTTLS\r\n");
	/* CVE-2011-0411: what follows STARTTLS in the same packet is never run */
	feed(&t, "STARTTLS\r\nEHLO evil\r\nMAIL FROM:<evil@example.org>\r\n");
	expect_out(&t, "220 2.0.0 Ready to start TLS\r\n");
	assert_int_equal(t.io.tls_calls, 1);
	assert_int_equal(t.io.tls_timeout, 7);
	assert_int_equal(t.io.in_off, t.io.in.len);
	/* nothing happens until the handshake is over */
	feed(&t, "NOOP\r\n");
	expect_out(&t, "");
	t.io.in_off = t.io.in.len;
	session_on_tls(t.s, &fake_tls);
	testsvc_settle(&t, 0);
	expect_out(&t, "");
	feed(&t, "STARTTLS\r\n");
	expect_out(&t, "554 5.5.1 Error: TLS already active\r\n");
	/* the HELO name is gone: no EHLO, no 250 for MAIL's sake is needed here */
	feed(&t, "RCPT TO:<alice@virt.test>\r\n");
	expect_out(&t, "503 5.5.1 Error: need MAIL command\r\n");
	feed(&t, "EHLO c\r\n");
	got = take(&t);
	assert_null(strstr(got, "STARTTLS"));
	free(got);
	feed(&t, "MAIL FROM:<a@example.org>\r\n");
	feed(&t, "RCPT TO:<alice@virt.test>\r\n");
	feed(&t, "DATA\r\n");
	feed(&t, "Subject: x\r\n\r\nbody\r\n.\r\n");
	assert_int_equal(t.nmsgs, 1);
	if (strstr(t.msgs[0].received, "Received: from c (unknown [198.51.100.7])\n"
		   "\t(using TLSv1.3 with cipher TLS_FAKE (128/256 bits)\n"
		   "\t key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256)\n"
		   "\t(No client certificate requested)\n"
		   "\tby mx.example.test (mxgate) with ESMTPS id ") == NULL)
		fail_msg("Received: %s", t.msgs[0].received);
	testsvc_disconnect(&t);
	testsvc_free(&t);
	snprintf(cf, sizeof(cf), "rm -rf %s", dir);
	assert_int_equal(system(cf), 0);
}

/* The 220 behind the tarpit: the handshake starts only once it is written; byte by byte. */
static void
test_starttls_tarpit_and_bytes(void **state)
{
	char	dir[] = "/tmp/test_session_tls.XXXXXX", cf[512], *got;
	const char *cmd = "STARTTLS\r\n";
	struct testsvc t;

	assert_non_null(mkdtemp(dir));
	make_cert(dir);
	snprintf(cf, sizeof(cf), "smtpd_tls_security_level = may\nsmtpd_tls_cert_file = %s/c.pem\n"
		 "smtpd_tls_key_file = %s/k.pem\nsmtpd_soft_error_limit = 1\n", dir, dir);
	assert_int_equal(testsvc_init(&t, cf, "memory"), 0);
	testsvc_connect(&t, "198.51.100.7");
	testsvc_settle(&t, 0);
	feed(&t, "EHLO c\r\n");
	free(take(&t));
	feed(&t, "FOO\r\n");		/* one error: replies wait for the tarpit now */
	for (size_t i = 0; cmd[i]; i++) {
		memio_feed(&t.io, cmd + i, 1);
		testsvc_settle(&t, 0);
		assert_int_equal(t.io.tls_calls, 0);	/* the 220 still waits for the tarpit */
	}
	testsvc_settle(&t, 10);
	assert_int_equal(t.io.tls_calls, 1);
	assert_int_equal(t.io.tls_out_len, t.io.out.len);	/* the 220 was out first */
	got = take(&t);
	assert_string_equal(got, "500 5.5.2 Error: command not recognized\r\n"
			    "220 2.0.0 Ready to start TLS\r\n");
	free(got);
	/* a failed handshake ends the session */
	session_on_tls(t.s, NULL);
	testsvc_settle(&t, 0);
	assert_true(t.io.closed);
	testsvc_disconnect(&t);
	testsvc_free(&t);
	snprintf(cf, sizeof(cf), "rm -rf %s", dir);
	assert_int_equal(system(cf), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_transaction),
		cmocka_unit_test(test_late_anvil_enforced),
		cmocka_unit_test(test_never_answered_fails_open),
		cmocka_unit_test(test_bookkeeping_once),
		cmocka_unit_test(test_free_with_anvil_in_flight),
		cmocka_unit_test(test_free_with_lookup_in_flight),
		cmocka_unit_test(test_free_with_delivery_in_flight),
		cmocka_unit_test(test_store_failure),
		cmocka_unit_test(test_spool_back_pressure),
		cmocka_unit_test(test_bdat_content_refused),
		cmocka_unit_test(test_helo_name),
		cmocka_unit_test(test_starttls),
		cmocka_unit_test(test_starttls_tarpit_and_bytes),
	};

	return cmocka_run_group_tests_name("session", tests, NULL, NULL);
}
