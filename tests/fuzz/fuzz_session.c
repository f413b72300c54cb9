/*
 * libFuzzer target for a whole SMTP session (smtp/session.c, commands.c,
 * txn.c and everything they call), driven in memory and in virtual time
 * (tests/common/: fakeloop, memio, testsvc): fuzzed client bytes in fuzzed
 * chunk sizes, anvil answering at once, 0 ms, 200 ms late or never, a slow
 * or fast reader, a store that works or fails.
 *
 * Input: byte 0 = configuration (bits 0-1: service variant, 2-3: anvil,
 * 4: slow client, 5: the store fails, 6: end with a client timeout instead
 * of end of input, 7: a lock-step client that sends one line at a time and
 * waits for the server, as most clients do; otherwise the bytes come in
 * chunks of fuzzer-chosen sizes, pipelined), byte 1 = split seed, the rest =
 * what the client sends.
 *
 * Invariants (any violation traps):
 *  - no reply comes before its command is complete: the server writes only
 *    before the banner's greeting step, or while no partial command line
 *    has been read, and never in the middle of DATA or of a BDAT chunk;
 *    the exceptions are the replies that come unasked (421 for a timeout or
 *    too many errors, and the 554 for talking before the greeting);
 *  - nothing is written after the session closed;
 *  - at most one final 250 per message, and every "queued as" names a
 *    message that was stored (and every stored message got at most one);
 *  - DATA ends only at CRLF.CRLF: when a DATA message is stored, what the
 *    client sent so far ends with "\r\n.\r\n", or with ".\r\n" right after
 *    the DATA command's own line (Postfix 3.7.11 does not look at how that
 *    command line ended either: "DATA\n.\r\n" is an empty message);
 *  - the session's own memory stays within a fixed bound.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fakeloop.h"
#include "fuzz_split.h"
#include "memio.h"
#include "smtp/session_impl.h"
#include "testsvc.h"
#include "util/buf.h"
#include "util/xalloc.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The session's own memory, line reader and reply queue included. */
#define FZ_SESSION_MEMORY_MAX	(256 * 1024)

static const char *const fz_main[] = {
	/* 0: small limits, so that every limit is reached */
	("message_size_limit = 20000\nsmtpd_recipient_limit = 4\n"
	"smtpd_recipient_overshoot_limit = 2\nsmtpd_junk_command_limit = 12\n"
	"smtpd_soft_error_limit = 3\nsmtpd_hard_error_limit = 8\n"
	"smtpd_client_message_rate_limit = 3\nsmtpd_client_recipient_rate_limit = 6\n"
	"smtpd_client_connection_count_limit = 2\nsmtpd_noop_commands = XYZZY\n"
	"line_length_limit = 600\n"),
	/* 1: bare LF refused, no SMTPUTF8, no CHUNKING, helo required, VRFY off,
	 * local users (unix:passwd.byname: looked up on the pool) */
	("smtpd_forbid_bare_newline = reject\nsmtputf8_enable = no\n"
	"mydestination = local.test\nlocal_recipient_maps = unix:passwd.byname\n"
	"smtpd_discard_ehlo_keywords = chunking\nsmtpd_helo_required = yes\n"
	"disable_vrfy_command = yes\nmessage_size_limit = 5000\n"),
	/* 2: no pipelining checks, per-request deadline */
	("smtpd_forbid_unauth_pipelining = no\nsmtpd_per_request_deadline = yes\n"
	"smtpd_timeout = 20s\nsmtpd_min_data_rate = 100\nmessage_size_limit = 30000\n"),
	/* 3 (as stress): access restrictions at every stage, HELO/address syntax
	 * checks on the client's bytes, sleep, deferrals, PREPEND (no DISCARD:
	 * the checks below want every "queued as" stored), DNS lists and
	 * lookups answered by fakedns (fz_zone) on the loop */
	("smtpd_forbid_unauth_pipelining = no\nsmtpd_delay_reject = no\n"
	"mynetworks = 198.51.100.0/24\n"
	"smtpd_client_restrictions = reject_rbl_client zen.test=127.0.0.9, "
	"permit_dnswl_client slow.test, reject_rhsbl_reverse_client dbl.test\n"
	"smtpd_restriction_classes = fqdn\nfqdn = reject_non_fqdn_helo_hostname, "
	"reject_non_fqdn_sender\n"
	"smtpd_helo_restrictions = warn_if_reject, reject_invalid_helo_hostname, "
	"check_helo_access pcre:{{/^x/ fqdn}, {/^d/ DEFER_IF_PERMIT go}, {/^r/ REJECT no}}, "
	"reject_rhsbl_helo dbl.test, check_helo_mx_access inline:{mx.bad.test=REJECT}, "
	"reject_unknown_helo_hostname\n"
	"smtpd_sender_restrictions = check_sender_access inline:{{<>=DEFER_IF_REJECT}, "
	"{example.org=PREPEND X-Seen: yes}}, reject_non_fqdn_sender, "
	"reject_unknown_sender_domain, reject_rhsbl_sender dbl.test=127.0.1.[2..3], "
	"check_sender_a_access inline:{192.0.2.66=REJECT}\n"
	"smtpd_recipient_restrictions = reject_unauth_pipelining, reject_non_fqdn_recipient, "
	"sleep 1, permit_mynetworks, check_recipient_access inline:{{bob@=550 5.7.1 no}}, "
	"reject_unauth_destination\n"
	"smtpd_data_restrictions = reject_multi_recipient_bounce\n"
	"smtpd_end_of_data_restrictions = check_sender_access inline:{d@x.test=reject}\n"),
};
#define FZ_VARIANTS	(sizeof(fz_main) / sizeof(fz_main[0]))

/* What variant 3's DNS knows (tests/common/fakedns.h). */
static const char *const fz_zone[] = {
	"7.100.51.198.zen.test A 127.0.0.2",
	"7.100.51.198.zen.test TXT listed",
	"7.100.51.198.slow.test A RETRY",
	"x.test.dbl.test A 127.0.1.2",
	"example.org.dbl.test A 127.0.1.3",
	"example.org.dbl.test TXT spam domain",
	"example.org MX 10 mx.bad.test",
	"example.org A 192.0.2.66",
	"x.test MX NULLMX",
	"d.test MX RETRY",
	"d.test A INVAL",
	NULL,
};

static const char *const fz_anvil[] = {
	"memory", "test-delay:0", "test-delay:200", "test-delay:never",
};

static struct testsvc fz_svc[FZ_VARIANTS];

/* What one run saw. */
static struct {
	struct testsvc *t;
	struct buf fed;		/* every byte the client sent */
	int	timeout_event;	/* the harness is delivering a client timeout */
	size_t	queued_seen;
	char	queued[64][16];	/* queue ids of the "queued as" replies */
	struct buf line;	/* the reply line being written, for the checks */
} fz;

/* A reply that comes unasked: a timeout, too many errors, early talk. */
static int
fz_unasked(const char *data, size_t len)
{
	return (len >= 9 && memcmp(data, "421 4.4.2", 9) == 0)
	       || (len >= 9 && memcmp(data, "421 4.7.0", 9) == 0)
	       || (len >= 9 && memcmp(data, "554 5.5.0", 9) == 0)
	       || (len >= 9 && memcmp(data, "550 5.5.2", 9) == 0);
}

static void
fz_note_queued(const char *line, size_t len)
{
	const char *p;
	char id[16];
	size_t n;

	if (len < 4 || memcmp(line, "250 ", 4) != 0)
		return;
	if ((p = memmem(line, len, "queued as ", 10)) == NULL)
		return;
	p += 10;
	n = (size_t)(line + len - p);
	while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == '\n'))
		n--;
	FZ_CHECK(n > 0 && n < sizeof(id));
	memcpy(id, p, n);
	id[n] = '\0';
	for (size_t i = 0; i < fz.queued_seen && i < 64; i++)
		FZ_CHECK(strcmp(fz.queued[i], id) != 0);	/* one 250 per message */
	if (fz.queued_seen < 64)
		memcpy(fz.queued[fz.queued_seen], id, n + 1);
	fz.queued_seen++;
}

/* memio's hook: every write the session makes. */
static void
fz_on_write(struct memio *m, const char *data, size_t len)
{
	struct session *s = m->s;

	FZ_CHECK(!m->closed);
	FZ_CHECK(len > 0 && data[len - 1] == '\n');
	if (!fz.timeout_event && !fz_unasked(data, len)) {
		/* DATA's own 354 is written as the body reading starts */
		FZ_CHECK(s->state == S_CONNECT || s->state == S_CMD
			 || (s->state == S_DATA && len >= 4 && memcmp(data, "354 ", 4) == 0));
		FZ_CHECK(lr_partial_len(&s->lr) == 0);
	}
	for (const char *p = data, *end = data + len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)(nl - p) + 1;

		fz_note_queued(p, n);
		p += n;
	}
}

static void
fz_check_memory(void)
{
	if (fz.t->s != NULL)
		FZ_CHECK(session_memory(fz.t->s) < FZ_SESSION_MEMORY_MAX);
}

/* Run what is due; let timers (tarpit, late anvil) fire while the session waits. */
static void
fz_settle(struct testsvc *t)
{
	fakeloop_run(t->fl);
	for (int i = 0; i < 64 && t->s != NULL && !t->io.closed
	     && (t->s->wait != W_NONE || t->s->out_head != NULL); i++)
		if (!fakeloop_advance(t->fl))
			break;
	if (t->io.slow && t->io.unsent > 0 && !t->io.closed)
		memio_drain(&t->io);
	fz_check_memory();
}

/*
 * Is the line that ends just before offset end the DATA command ("DATA",
 * blanks, LF)?  A NUL ends the command as it does in Postfix (which reads a
 * command as a C string): "DATA<NUL>anything" is DATA.
 */
static int
fz_after_data_command(size_t end)
{
	const char *p = fz.fed.data;
	size_t start, i;

	if (end == 0 || p[end - 1] != '\n')
		return 0;
	for (start = end - 1; start > 0 && p[start - 1] != '\n'; start--)
		;
	i = start;
	while (i < end && (p[i] == ' ' || p[i] == '\t'))
		i++;
	if (end - i < 5 || strncasecmp(p + i, "DATA", 4) != 0)
		return 0;
	for (i += 4; i < end - 1 && p[i] != '\0'; i++)
		if (p[i] != ' ' && p[i] != '\t' && !(p[i] == '\r' && i == end - 2))
			return 0;
	return 1;
}

static void
fz_check_stored(struct testsvc *t)
{
	/* DATA messages: the client's bytes end with the terminator at that point. */
	for (size_t i = 0; i < t->nmsgs; i++) {
		const struct testsvc_msg *m = &t->msgs[i];
		size_t found = 0;

		if (!m->bdat) {
			FZ_CHECK(m->consumed >= 5 && m->consumed <= fz.fed.len);
			FZ_CHECK(memcmp(fz.fed.data + m->consumed - 3, ".\r\n", 3) == 0);
			FZ_CHECK(memcmp(fz.fed.data + m->consumed - 5, "\r\n", 2) == 0
				 || fz_after_data_command(m->consumed - 3));
		}
		for (size_t k = 0; k < fz.queued_seen && k < 64; k++)
			found += strcmp(fz.queued[k], m->queue_id) == 0;
		FZ_CHECK(found <= 1);
	}
	/* every "queued as" names a stored message */
	for (size_t k = 0; k < fz.queued_seen && k < 64; k++) {
		size_t i;

		for (i = 0; i < t->nmsgs; i++)
			if (strcmp(fz.queued[k], t->msgs[i].queue_id) == 0)
				break;
		FZ_CHECK(i < t->nmsgs);
	}
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	for (size_t i = 0; i < FZ_VARIANTS; i++)
		if (testsvc_init_service(&fz_svc[i], fz_main[i]) < 0)
			abort();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct testsvc *t;
	struct fz_split sp;
	uint8_t cfg;
	size_t off = 2;
	int stress;

	if (size < 2)
		return 0;
	cfg = data[0];
	t = &fz_svc[(cfg & 3) % FZ_VARIANTS];	/* 3: variant 3, as stress */
	stress = (cfg & 3) == 3;
	memset(&fz, 0, sizeof(fz));
	fz.t = t;
	if (testsvc_init_env(t, fz_anvil[(cfg >> 2) & 3]) < 0)
		abort();
	t->ss = stress ? t->stress : t->normal;
	t->fail_store = (cfg >> 5) & 1;
	if (t == &fz_svc[3])
		testsvc_set_dns(t, fz_zone);
	fz_split_init(&sp, data[1], 64);
	testsvc_connect(t, "198.51.100.7");
	t->io.on_write = fz_on_write;
	t->io.slow = (cfg >> 4) & 1;
	fz_settle(t);
	while (off < size && !t->io.closed) {
		size_t n = fz_split_next(&sp, size - off);

		if (cfg & 0x80) {
			const uint8_t *nl = memchr(data + off, '\n', size - off);

			n = nl ? (size_t)(nl - (data + off)) + 1 : size - off;
		}
		buf_append(&fz.fed, data + off, n);
		memio_feed(&t->io, data + off, n);
		off += n;
		fz_settle(t);
	}
	if (!t->io.closed) {
		if ((cfg >> 6) & 1) {
			fz.timeout_event = 1;
			session_on_timeout(t->s);
			fz.timeout_event = 0;
		} else {
			session_on_eof(t->s);
		}
		fz_settle(t);
	}
	/* Whatever is still in flight completes or is dropped with the session. */
	for (int i = 0; i < 64 && fakeloop_advance(t->fl); i++)
		;
	fz_check_stored(t);
	testsvc_disconnect(t);
	fakeloop_run(t->fl);
	fz_check_stored(t);
	buf_free(&fz.fed);
	testsvc_free_env(t);
	t->ss = t->normal;
	return 0;
}
