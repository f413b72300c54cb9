/*
 * deliver/lmtp: the client against a scripted server on a unix socket (a
 * thread): the dialogue and its bytes (dot-stuffing, CRLF, a body that does
 * not end in a newline), multi-line replies, a refused RCPT (no DATA), the
 * per-recipient replies after the dot, a server that closes, one that is
 * silent (the step's timeout), garbage replies; nexthop syntax; and the
 * delays as Postfix's format_tv() prints them.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "deliver/lmtp.h"
#include "deliver/spool.h"
#include "util/buf.h"
#include "util/xalloc.h"

#include "fakeloop.h"

/* One step of the server: what it reads first (a line prefix, NULL: nothing), then what it
 * sends (NULL: close the connection; "" send nothing and wait). */
struct step {
	const char *expect;
	const char *send;
};

struct server {
	char path[108];
	int lfd;
	const struct step *steps;
	struct buf seen;	/* every byte the client sent */
	int ok;			/* every expect matched */
	pthread_t tid;
};

static int
read_line(int fd, struct buf *seen, char *line, size_t cap)
{
	size_t n = 0;

	for (;;) {
		char c;
		ssize_t r = read(fd, &c, 1);

		if (r <= 0)
			return -1;
		buf_putc(seen, c);
		if (c == '\n')
			break;
		if (n + 1 < cap)
			line[n++] = c;
	}
	line[n] = '\0';
	return 0;
}

static void *
server_main(void *arg)
{
	struct server *s = arg;
	int fd = accept(s->lfd, NULL, NULL);
	char line[8192];

	s->ok = fd >= 0;
	for (const struct step *st = s->steps; fd >= 0 && (st->expect || st->send); st++) {
		if (st->expect != NULL) {
			if (strcmp(st->expect, "<body>") == 0) {
				/* up to and including the lone dot */
				do {
					if (read_line(fd, &s->seen, line, sizeof(line)) < 0) {
						s->ok = 0;
						goto out;
					}
				} while (strcmp(line, ".\r") != 0);
			} else if (read_line(fd, &s->seen, line, sizeof(line)) < 0
				   || strncmp(line, st->expect, strlen(st->expect)) != 0) {
				s->ok = 0;
				goto out;
			}
		}
		if (st->send == NULL)
			goto out;
		if (*st->send == '\0') {
			/* silence: until the client gives up */
			while (read(fd, line, sizeof(line)) > 0)
				;
			goto out;
		}
		if (write(fd, st->send, strlen(st->send)) < 0)
			goto out;
	}
	/* read what else comes (QUIT) until the client closes */
	while (fd >= 0 && read_line(fd, &s->seen, line, sizeof(line)) == 0)
		if (strncmp(line, "QUIT", 4) == 0 && write(fd, "221 2.0.0 Bye\r\n", 15) < 0)
			break;
out:
	if (fd >= 0)
		close(fd);
	return NULL;
}

static void
server_start(struct server *s, const struct step *steps)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };

	memset(s, 0, sizeof(*s));
	snprintf(s->path, sizeof(s->path), "/tmp/mxgate-lmtp-%d-%p", (int)getpid(), (void *)s);
	unlink(s->path);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", s->path);
	s->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(s->lfd >= 0);
	assert_int_equal(bind(s->lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(s->lfd, 1), 0);
	s->steps = steps;
	assert_int_equal(pthread_create(&s->tid, NULL, server_main, s), 0);
}

static void
server_end(struct server *s)
{
	pthread_join(s->tid, NULL);
	close(s->lfd);
	unlink(s->path);
}

static struct lmtp_conf
conf(void)
{
	struct lmtp_conf c;

	memset(&c, 0, sizeof(c));
	c.connect_timeout = 0;
	c.lhlo_timeout = c.mail_timeout = c.rcpt_timeout = 5;
	c.data_init_timeout = c.data_xfer_timeout = c.data_done_timeout = 5;
	c.rset_timeout = c.quit_timeout = 1;
	c.tcp_port = 24;
	snprintf(c.lhlo_name, sizeof(c.lhlo_name), "mx.example.test");
	snprintf(c.queue_directory, sizeof(c.queue_directory), "/nonexistent");
	snprintf(c.myhostname, sizeof(c.myhostname), "mx.example.test");
	return c;
}

static struct spool *
body(const char *text)
{
	static atomic_long total;
	struct spool *sp = spool_memory_new(&total, 0);
	struct fakeloop *fl = fakeloop_new();

	assert_int_equal(spool_write(sp, text, strlen(text)), SPOOL_OK);
	spool_commit(sp, fakeloop_loop(fl), NULL, NULL);
	fakeloop_run(fl);
	fakeloop_free(&fl);
	return sp;
}

static const struct step ok_two[] = {
	{ NULL, "220 lmtp ready\r\n" },
	{ "LHLO mx.example.test", "250-lmtp\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n" },
	{ "MAIL FROM:<s@example.org>", "250 2.1.0 OK\r\n" },
	{ "RCPT TO:<a@virt.test>", "250 2.1.5 OK\r\n" },
	{ "RCPT TO:<b@virt.test>", "250 2.1.5 OK\r\n" },
	{ "DATA", "354 OK\r\n" },
	{ "<body>", "250 2.0.0 <a@virt.test> Abc Saved\r\n452 4.2.2 <b@virt.test> Quota\r\n" },
	{ NULL, NULL },
};

static void
test_dialogue(void **state)
{
	struct server s;
	struct lmtp_conf c = conf();
	struct spool *sp = body(".dot\nline\n..two\r\nno newline at the end");
	struct lmtp_msg m = { .sender = "s@example.org", .received = "Received: x\n\tby y\n",
			      .body = sp };
	struct lmtp_rcpt r[2] = { { .address = "a@virt.test" }, { .address = "b@virt.test" } };
	struct lmtp_result res;
	struct buf err = BUF_INIT;
	char nh[200];
	const char *sent;

	(void)state;
	server_start(&s, ok_two);
	snprintf(nh, sizeof(nh), "unix:%s", s.path);
	assert_int_equal(lmtp_deliver(&c, nh, &m, r, 2, &res, &err), 0);
	server_end(&s);
	assert_true(s.ok);
	assert_int_equal(res.rcpt_refused, 0);
	assert_int_equal(r[0].code, 250);
	assert_string_equal(r[0].dsn, "2.0.0");
	assert_string_equal(r[0].reply, "250 2.0.0 <a@virt.test> Abc Saved");
	assert_string_equal(r[0].stage, "end of DATA");
	assert_int_equal(r[1].code, 452);
	assert_string_equal(r[1].dsn, "4.2.2");
	assert_true(res.conn_done.tv_sec > 0);
	{
		char want[300];

		snprintf(want, sizeof(want), "mx.example.test[%s]", s.path);
		assert_string_equal(res.relay, want);
	}
	sent = buf_str(&s.seen);
	assert_non_null(strstr(sent, "\r\nDATA\r\nReceived: x\r\n\tby y\r\n..dot\r\nline\r\n"
				     "...two\r\r\nno newline at the end\r\n.\r\n"));
	free(r[0].reply);
	free(r[1].reply);
	buf_free(&err);
	buf_free(&s.seen);
	spool_unref(&sp);
}

static void
test_rcpt_refused_no_data(void **state)
{
	static const struct step steps[] = {
		{ NULL, "220 ready\r\n" },
		{ "LHLO", "250 lmtp\r\n" },
		{ "MAIL", "250 2.1.0 OK\r\n" },
		{ "RCPT TO:<a@virt.test>", "250 2.1.5 OK\r\n" },
		{ "RCPT TO:<c@virt.test>", "550 5.1.1 <c@virt.test> User doesn't exist: c@virt.test\r\n" },
		{ "RSET", "250 2.0.0 OK\r\n" },
		{ NULL, NULL },
	};
	struct server s;
	struct lmtp_conf c = conf();
	struct lmtp_msg m = { .sender = "", .received = "Subject: x\n\nbody\n" };
	struct lmtp_rcpt r[2] = { { .address = "a@virt.test" }, { .address = "c@virt.test" } };
	struct lmtp_result res;
	struct buf err = BUF_INIT;
	char nh[200];

	(void)state;
	server_start(&s, steps);
	snprintf(nh, sizeof(nh), "unix:%s", s.path);
	assert_int_equal(lmtp_deliver(&c, nh, &m, r, 2, &res, &err), 0);
	server_end(&s);
	assert_true(s.ok);
	assert_int_equal(res.rcpt_refused, 1);
	assert_int_equal(r[0].code, 250);
	assert_int_equal(r[1].code, 550);
	assert_string_equal(r[1].dsn, "5.1.1");
	assert_string_equal(r[1].stage, "RCPT TO");
	assert_null(strstr(buf_str(&s.seen), "DATA"));
	assert_non_null(strstr(buf_str(&s.seen), "MAIL FROM:<>\r\n"));
	free(r[0].reply);
	free(r[1].reply);
	buf_free(&err);
	buf_free(&s.seen);
}

/* Each case: the server's script, and the start of the error. */
static void
test_failures(void **state)
{
	static const struct step closes[] = { { NULL, "220 ready\r\n" }, { "LHLO", NULL },
					      { NULL, NULL } };
	static const struct step silent[] = { { NULL, "220 ready\r\n" }, { "LHLO", "250 x\r\n" },
					      { "MAIL", "" }, { NULL, NULL } };
	static const struct step garbage[] = { { NULL, "220 ready\r\n" },
					       { "LHLO", "hello there\r\n" }, { NULL, NULL } };
	static const struct step mixed[] = { { NULL, "220 ready\r\n" },
					     { "LHLO", "250-x\r\n251 y\r\n" }, { NULL, NULL } };
	static const struct step busy[] = { { NULL, "421 4.3.2 busy\r\n" }, { NULL, NULL } };
	static const struct step mail[] = { { NULL, "220 ready\r\n" }, { "LHLO", "250 x\r\n" },
					    { "MAIL", "451 4.3.0 try later\r\n" }, { NULL, NULL } };
	static const struct step lost[] = {
		{ NULL, "220 ready\r\n" }, { "LHLO", "250 x\r\n" }, { "MAIL", "250 ok\r\n" },
		{ "RCPT", "250 ok\r\n" }, { "DATA", "354 go\r\n" }, { "<body>", NULL },
		{ NULL, NULL },
	};
	static const struct {
		const struct step *steps;
		const char *err;
		const char *dsn;
	} cases[] = {
		{ closes, "lost connection with mx.example.test[", "4.4.2" },
		{ silent, "conversation with mx.example.test[", "4.4.2" },
		{ garbage, "protocol error with mx.example.test[", "4.4.2" },
		{ mixed, "protocol error with", "4.4.2" },
		{ busy, "host mx.example.test[", "4.4.2" },
		{ mail, "host mx.example.test[", "4.3.0" },
		{ lost, "lost connection with mx.example.test[", "4.4.2" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct server s;
		struct lmtp_conf c = conf();
		struct lmtp_msg m = { .sender = "s@x", .received = "a\n" };
		struct lmtp_rcpt r[1] = { { .address = "a@virt.test" } };
		struct lmtp_result res;
		struct buf err = BUF_INIT;
		char nh[200];
		struct timeval t0, t1;

		c.mail_timeout = 1;
		server_start(&s, cases[i].steps);
		snprintf(nh, sizeof(nh), "unix:%s", s.path);
		gettimeofday(&t0, NULL);
		assert_int_equal(lmtp_deliver(&c, nh, &m, r, 1, &res, &err), -1);
		gettimeofday(&t1, NULL);
		server_end(&s);
		if (strncmp(buf_str(&err), cases[i].err, strlen(cases[i].err)) != 0)
			fail_msg("case %zu: \"%s\", want \"%s...\"", i, buf_str(&err), cases[i].err);
		assert_string_equal(res.dsn, cases[i].dsn);
		assert_true(t1.tv_sec - t0.tv_sec <= 3);
		if (cases[i].steps == silent)
			assert_non_null(strstr(buf_str(&err), "timed out while sending MAIL FROM"));
		if (cases[i].steps == lost)
			assert_non_null(strstr(buf_str(&err), "message may be sent more than once"));
		if (cases[i].steps == mail)
			assert_non_null(strstr(buf_str(&err), "said: 451 4.3.0 try later (in reply to"
						  " MAIL FROM command)"));
		free(r[0].reply);
		buf_free(&err);
		buf_free(&s.seen);
	}
}

static void
test_no_server(void **state)
{
	struct lmtp_conf c = conf();
	struct lmtp_msg m = { .sender = "s@x", .received = "a\n" };
	struct lmtp_rcpt r[1] = { { .address = "a@virt.test" } };
	struct lmtp_result res;
	struct buf err = BUF_INIT;

	(void)state;
	assert_int_equal(lmtp_deliver(&c, "unix:private/dovecot-lmtp", &m, r, 1, &res, &err), -1);
	assert_string_equal(buf_str(&err), "connect to mx.example.test[private/dovecot-lmtp]: "
			    "No such file or directory");
	assert_string_equal(res.relay, "none");
	assert_string_equal(res.dsn, "4.4.1");
	buf_free(&err);
}

static void
test_nexthops(void **state)
{
	static const struct {
		const char *nh, *why;
	} cases[] = {
		{ "unix:/run/dovecot/lmtp", NULL }, { "unix:private/dovecot-lmtp", NULL },
		{ "inet:127.0.0.1:24", NULL }, { "inet:localhost", NULL }, { "[::1]:2424", NULL },
		{ "inet:[::1]", NULL }, { "dovecot.example", NULL }, { "[10.0.0.1]", NULL },
		{ "unix:", "names no socket" }, { "", "names no LMTP server" },
		{ "inet:", "names no LMTP server" }, { ":24", "names no LMTP server" },
		{ "::1", "an IPv6 address must be written [addr]" }, { "[]:24", "bad [host] syntax" },
		{ "[::1]x", "bad [host]:port syntax" }, { "host:", "bad port" },
		{ "a b:24", "bad host name" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *why = lmtp_nexthop_problem(cases[i].nh);

		if (cases[i].why == NULL ? why != NULL : why == NULL || strcmp(why, cases[i].why))
			fail_msg("\"%s\": \"%s\", want \"%s\"", cases[i].nh, why ? why : "(ok)",
				 cases[i].why ? cases[i].why : "(ok)");
	}
}

/* Postfix's format_tv() with 2 significant digits and at most 2 decimals. */
static void
test_delays(void **state)
{
	static const struct {
		long sec, usec;
		const char *want;
	} cases[] = {
		{ 0, 0, "0" }, { 0, 4000, "0" }, { 0, 5000, "0.01" }, { 0, 12345, "0.01" },
		{ 0, 15000, "0.02" }, { 0, 123456, "0.12" }, { 0, 995000, "1" }, { 1, 234000, "1.2" },
		{ 12, 345000, "12" }, { 123, 456000, "123" }, { 9, 960000, "10" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct timeval from = { 1000, 500000 }, to;
		struct buf b = BUF_INIT;

		to.tv_sec = from.tv_sec + cases[i].sec + (from.tv_usec + cases[i].usec) / 1000000;
		to.tv_usec = (from.tv_usec + cases[i].usec) % 1000000;
		lmtp_format_delay(&b, &from, &to);
		if (strcmp(buf_str(&b), cases[i].want) != 0)
			fail_msg("%ld.%06ld: \"%s\", want \"%s\"", cases[i].sec, cases[i].usec,
				 buf_str(&b), cases[i].want);
		buf_free(&b);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dialogue),
		cmocka_unit_test(test_rcpt_refused_no_data),
		cmocka_unit_test(test_failures),
		cmocka_unit_test(test_no_server),
		cmocka_unit_test(test_nexthops),
		cmocka_unit_test(test_delays),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
