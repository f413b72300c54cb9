/*
 * policy: check_policy_service's pieces without a network.  The answer
 * parser (Postfix's plain attribute protocol) fed whole and one byte at a
 * time; the request text Postfix 3.7 sends; the server specs with their
 * per-server overrides and the smtpd_policy_service_* defaults; and whole
 * sessions in memory (testsvc) with a policy client of our own: the action
 * decides the reply, a failure gives the default action, a new command
 * asks again, the request is the one the builder makes.
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
#include "fakeloop.h"
#include "policy/policy.h"
#include "policy/restrict.h"
#include "testsvc.h"
#include "util/loop.h"
#include "util/xalloc.h"

/* ---- the parser ---- */

struct pcase {
	const char *in;
	size_t	len;		/* 0: strlen(in) */
	enum policy_parse_status st;
	const char *action;	/* DONE: the action, NULL: missing */
	size_t	used;		/* DONE: bytes taken */
};

static enum policy_parse_status
feed(const char *in, size_t len, size_t step, char **action_r, size_t *used_r)
{
	struct policy_parser pp;
	enum policy_parse_status st = POLICY_PARSE_MORE;
	size_t	off = 0, used;
	const char *why;

	policy_parser_init(&pp);
	while (off < len && st == POLICY_PARSE_MORE) {
		size_t	n = step && step < len - off ? step : len - off;

		st = policy_parse(&pp, in + off, n, &used, &why);
		assert_true(used <= n);
		if (st == POLICY_PARSE_ERROR)
			assert_non_null(why);
		off += used;
	}
	*action_r = pp.action ? xstrdup(pp.action) : NULL;
	*used_r = off;
	policy_parser_free(&pp);
	return st;
}

static void
test_parse(void **state)
{
	static const struct pcase cases[] = {
		{ "action=DUNNO\n\n", 0, POLICY_PARSE_DONE, "DUNNO", 14 },
		{ "action=REJECT go away\n\n", 0, POLICY_PARSE_DONE, "REJECT go away", 23 },
		/* other attributes before and after are skipped; the first action wins */
		{ "foo=bar\naction=OK\naction=REJECT\nx\n\n", 0, POLICY_PARSE_DONE, "OK", 35 },
		/* '=' in the value is the value's */
		{ "action=PREPEND X-A: b=c\n\n", 0, POLICY_PARSE_DONE, "PREPEND X-A: b=c", 25 },
		/* an empty action is an action (check_table_result: permit) */
		{ "action=\n\n", 0, POLICY_PARSE_DONE, "", 9 },
		/* the empty line alone: Postfix's "missing attribute action" */
		{ "\n", 0, POLICY_PARSE_DONE, NULL, 1 },
		{ "foo=bar\n\n", 0, POLICY_PARSE_DONE, NULL, 9 },
		/* bytes after the empty line are not taken */
		{ "action=DUNNO\n\naction=X\n\n", 0, POLICY_PARSE_DONE, "DUNNO", 14 },
		/* "action" without '=' */
		{ "action\n\n", 0, POLICY_PARSE_ERROR, NULL, 0 },
		/* not done yet */
		{ "action=DUNNO\n", 0, POLICY_PARSE_MORE, NULL, 0 },
		{ "action=DUN", 0, POLICY_PARSE_MORE, NULL, 0 },
		/* a NUL ends the line's text, not the line */
		{ "action=OK\0junk\n\n", 16, POLICY_PARSE_DONE, "OK", 16 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct pcase *c = &cases[i];
		size_t	len = c->len ? c->len : strlen(c->in);

		for (size_t step = 0; step <= 3; step++) {
			char   *action;
			size_t	used;
			enum policy_parse_status st = feed(c->in, len, step, &action, &used);

			if (st != c->st)
				fail_msg("case %zu step %zu: status %d, want %d", i, step, st, c->st);
			if (st == POLICY_PARSE_DONE) {
				if (c->action == NULL)
					assert_null(action);
				else
					assert_string_equal(action, c->action);
				assert_int_equal(used, c->used);
			}
			free(action);
		}
	}
}

static void
test_parse_bounds(void **state)
{
	char   *big = xcalloc(1, POLICY_LINE_MAX + 16);
	char   *action;
	size_t	used;

	(void)state;
	memcpy(big, "action=", 7);
	memset(big + 7, 'x', POLICY_LINE_MAX + 4);
	assert_int_equal(feed(big, strlen(big), 0, &action, &used), POLICY_PARSE_ERROR);
	free(action);
	assert_int_equal(feed(big, strlen(big), 1, &action, &used), POLICY_PARSE_ERROR);
	free(action);
	free(big);
	/* many short lines, never an empty one */
	{
		size_t	n = POLICY_ANSWER_MAX + 100;
		char   *lines = xcalloc(1, n + 1);

		for (size_t i = 0; i + 4 <= n; i += 4)
			memcpy(lines + i, "a=b\n", 4);
		assert_int_equal(feed(lines, strlen(lines), 0, &action, &used), POLICY_PARSE_ERROR);
		free(action);
		free(lines);
	}
}

static void
test_utf8(void **state)
{
	(void)state;
	assert_true(policy_valid_utf8("REJECT plain"));
	assert_true(policy_valid_utf8("REJECT caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
	assert_false(policy_valid_utf8("REJECT \xff\xfe"));
	assert_false(policy_valid_utf8("REJECT \xc0\xaf"));		/* overlong */
	assert_false(policy_valid_utf8("REJECT \xed\xa0\x80"));	/* surrogate */
	assert_false(policy_valid_utf8("REJECT \xc3"));		/* cut */
}

/* ---- the request ---- */

static const char want_rcpt[] =
	"request=smtpd_access_policy\n"
	"protocol_state=RCPT\n"
	"protocol_name=ESMTP\n"
	"client_address=192.0.2.9\n"
	"client_name=client.example\n"
	"client_port=40000\n"
	"reverse_client_name=rev.example\n"
	"server_address=192.0.2.1\n"
	"server_port=25\n"
	"helo_name=helo.example\n"
	"sender=s@example.org\n"
	"recipient=r@example.net\n"
	"recipient_count=0\n"
	"queue_id=\n"
	"instance=1a.2b.3c.0\n"
	"size=1234\n"
	"etrn_domain=\n"
	"stress=\n"
	"sasl_method=\n"
	"sasl_username=\n"
	"sasl_sender=\n"
	"ccert_subject=\n"
	"ccert_issuer=\n"
	"ccert_fingerprint=\n"
	"ccert_pubkey_fingerprint=\n"
	"encryption_protocol=\n"
	"encryption_cipher=\n"
	"encryption_keysize=0\n"
	"policy_context=ctx\n"
	"\n";

static void
test_request(void **state)
{
	struct policy_server srv = { .policy_context = "ctx" };
	struct restrict_req q = {
		.stage = RESTRICT_RCPT, .name = "client.example", .reverse_name = "rev.example",
		.addr = "192.0.2.9", .helo = "helo.example", .sender = "s@example.org",
		.recipient = "r@example.net", .where = "RCPT", .proto = "ESMTP", .rcpt_count = 3,
		.client_port = "40000", .server_addr = "192.0.2.1", .server_port = "25",
		.instance = "1a.2b.3c.0", .size = 1234,
	};
	char   *r;

	(void)state;
	r = policy_request_build(&q, &srv);
	assert_string_equal(r, want_rcpt);
	free(r);
	/* DATA (BDAT too) counts the recipients and says DATA; NULLs are empty */
	q.where = "BDAT";
	q.recipient = NULL;
	q.helo = NULL;
	q.stress = "yes";
	q.queue_id = "ABC123";
	r = policy_request_build(&q, &srv);
	assert_non_null(strstr(r, "\nprotocol_state=DATA\n"));
	assert_non_null(strstr(r, "\nrecipient_count=3\n"));
	assert_non_null(strstr(r, "\nrecipient=\n"));
	assert_non_null(strstr(r, "\nhelo_name=\n"));
	assert_non_null(strstr(r, "\nstress=yes\n"));
	assert_non_null(strstr(r, "\nqueue_id=ABC123\n"));
	free(r);
}

/* ---- server specs ---- */

static struct conf *
load(const char *main_cf, char *dir)
{
	struct conf_report rep = { 0 };
	struct conf *c;
	char	path[128];
	FILE   *f;

	strcpy(dir, "/tmp/mxgate-test-policy-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/main.cf", dir);
	assert_non_null(f = fopen(path, "w"));
	fputs(main_cf, f);
	fclose(f);
	c = conf_load(dir, NULL, 0, &rep);
	conf_report_free(&rep);
	assert_non_null(c);
	return c;
}

static void
unload(struct conf **c, const char *dir)
{
	char	path[128];

	conf_free(c);
	snprintf(path, sizeof(path), "%s/main.cf", dir);
	unlink(path);
	rmdir(dir);
}

static void
test_server_spec(void **state)
{
	char	dir[64];
	struct conf *c = load("smtpd_policy_service_timeout = 7s\n"
			      "smtpd_policy_service_try_limit = 3\n"
			      "queue_directory = /var/spool/q\n", dir);
	const struct conf_view *v = conf_global(c);
	struct policy_server *s;
	char   *err;

	(void)state;
	s = policy_server_new("inet:127.0.0.1:10023", v, &err);
	assert_non_null(s);
	assert_int_equal(s->transport, POLICY_INET);
	assert_string_equal(s->host, "127.0.0.1");
	assert_string_equal(s->port, "10023");
	assert_string_equal(s->endpoint, "127.0.0.1:10023");
	assert_int_equal(s->timeout, 7);
	assert_int_equal(s->try_limit, 3);
	assert_int_equal(s->max_idle, 300);
	assert_int_equal(s->max_ttl, 1000);
	assert_int_equal(s->retry_delay, 1);
	assert_int_equal(s->request_limit, 0);
	assert_string_equal(s->default_action, "451 4.3.5 Server configuration problem");
	assert_string_equal(s->policy_context, "");
	policy_server_free(&s);
	assert_null(s);

	s = policy_server_new("unix:private/policy", v, &err);
	assert_non_null(s);
	assert_int_equal(s->transport, POLICY_UNIX);
	assert_string_equal(s->path, "/var/spool/q/private/policy");
	assert_string_equal(s->endpoint, "private/policy");
	policy_server_free(&s);

	s = policy_server_new("{ unix:/run/p.sock, timeout=2m, max_idle=5, "
			      "{ default_action = 450 4.7.1 try again }, policy_context=abc, "
			      "request_limit=4, try_limit=1, retry_delay=3s, max_ttl=1h }", v, &err);
	assert_non_null(s);
	assert_string_equal(s->path, "/run/p.sock");
	assert_int_equal(s->max_idle, 5);
	assert_int_equal(s->timeout, 120);
	assert_int_equal(s->try_limit, 1);
	assert_int_equal(s->request_limit, 4);
	assert_int_equal(s->retry_delay, 3);
	assert_int_equal(s->max_ttl, 3600);
	assert_string_equal(s->default_action, "450 4.7.1 try again");
	assert_string_equal(s->policy_context, "abc");
	policy_server_free(&s);

	/* "max_idle = 5" without braces is three items: the first has no '=' */
	{
		static const char *const bad[][2] = {
			{ "{ inet:h:1, max_idle = 5 }", "malformed option" },
			{ "{ inet:h:1, timeout=soon }", "bad time value or unit" },
			{ "{ inet:h:1, try_limit=0 }", "bad numerical configuration" },
			{ "{ inet:h:1, shoe_size=9 }", "unknown option" },
			{ "{ inet:h:1, { default_action = } }", "bad string length" },
			{ "{ inet:h:1", "missing '}'" },
			{ "{ }", "empty policy service" },
			{ "inet:", "need service transport:endpoint" },
			{ "inet:nohost", "missing port number" },
			{ "tcp:127.0.0.1:1", "unsupported transport type" },
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			err = NULL;
			s = policy_server_new(bad[i][0], v, &err);
			if (s != NULL)
				fail_msg("\"%s\" was accepted", bad[i][0]);
			assert_non_null(err);
			if (strstr(err, bad[i][1]) == NULL)
				fail_msg("\"%s\": \"%s\" does not say \"%s\"", bad[i][0], err, bad[i][1]);
			free(err);
		}
	}
	unload(&c, dir);
}

/* ---- whole sessions with a policy client of our own ---- */

struct fq {
	struct fakepc *pc;
	policy_cb *cb;
	void   *ctx;
	char   *request;
	int	cancelled;
};

struct fakepc {
	struct policy_client base;
	struct loop *loop;
	const char *(*answer)(const char *request);
	char   *requests[16];
	size_t	nrequests;
};

static void
fq_answer(void *arg)
{
	struct fq *q = arg;

	if (!q->cancelled)
		q->cb(q->ctx, q->pc->answer(q->request));
	free(q->request);
	free(q);
}

static struct policy_query *
fake_query(struct policy_client *c, const struct policy_server *srv, const char *request,
	   policy_cb *cb, void *ctx)
{
	struct fakepc *pc = (struct fakepc *)c;
	struct fq *q = xcalloc(1, sizeof(*q));

	(void)srv;
	q->pc = pc;
	q->cb = cb;
	q->ctx = ctx;
	q->request = xstrdup(request);
	if (pc->nrequests < 16)
		pc->requests[pc->nrequests++] = xstrdup(request);
	loop_post(pc->loop, fq_answer, q);	/* never inside query() */
	return (struct policy_query *)q;
}

static void
fake_cancel(struct policy_query *pq)
{
	((struct fq *)pq)->cancelled = 1;
}

static const struct policy_client_ops fake_ops = { fake_query, fake_cancel };

static const char *
answer_by_rcpt(const char *request)
{
	if (strstr(request, "\nrecipient=alice@virt.test\n"))
		return "REJECT not alice";
	if (strstr(request, "\nrecipient=bob@virt.test\n"))
		return "DUNNO";
	return NULL;	/* the server failed */
}

static void
say(struct testsvc *t, const char *line, const char *want)
{
	char   *got;

	if (line)
		memio_feeds(&t->io, line);
	testsvc_settle(t, 0);
	got = memio_take(&t->io);
	if (strcmp(got, want) != 0)
		fail_msg("after \"%s\": got \"%s\", want \"%s\"", line ? line : "(banner)", got, want);
	free(got);
}

static void
test_session(void **state)
{
	struct testsvc t;
	struct fakepc pc = { .base = { &fake_ops }, .answer = answer_by_rcpt };

	(void)state;
	assert_int_equal(testsvc_init(&t, "smtpd_recipient_restrictions = "
				      "reject_unauth_destination, check_policy_service "
				      "inet:127.0.0.1:9\n", "memory"), 0);
	pc.loop = t.env.loop;
	t.env.policy = &pc.base;
	testsvc_connect(&t, "198.51.100.7");
	say(&t, NULL, "220 mx.example.test ESMTP mxgate\r\n");
	say(&t, "EHLO client.example\r\n", "250-mx.example.test\r\n250-PIPELINING\r\n"
	    "250-SIZE 10240000\r\n250-VRFY\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
	    "250-SMTPUTF8\r\n250 CHUNKING\r\n");
	say(&t, "MAIL FROM:<s@example.org> SIZE=99\r\n", "250 2.1.0 Ok\r\n");
	say(&t, "RCPT TO:<alice@virt.test>\r\n",
	    "554 5.7.1 <alice@virt.test>: Recipient address rejected: not alice\r\n");
	say(&t, "RCPT TO:<bob@virt.test>\r\n", "250 2.1.5 Ok\r\n");
	/* the same recipient again: a new command asks again */
	say(&t, "RCPT TO:<bob@virt.test>\r\n", "250 2.1.5 Ok\r\n");
	assert_int_equal(pc.nrequests, 3);
	assert_non_null(strstr(pc.requests[2], "\nrecipient=bob@virt.test\n"));
	assert_non_null(strstr(pc.requests[1], "\nqueue_id=\n"));
	assert_null(strstr(pc.requests[2], "\nqueue_id=\n"));	/* bob's RCPT made one */
	assert_non_null(strstr(pc.requests[0], "\nsize=99\n"));
	assert_non_null(strstr(pc.requests[0], "\nclient_address=198.51.100.7\n"));
	assert_non_null(strstr(pc.requests[0], "\nhelo_name=client.example\n"));
	assert_null(strstr(pc.requests[0], "\ninstance=\n"));
	testsvc_free(&t);
	for (size_t i = 0; i < pc.nrequests; i++)
		free(pc.requests[i]);
}

static void
test_session_default_action(void **state)
{
	struct testsvc t;
	struct fakepc pc = { .base = { &fake_ops }, .answer = answer_by_rcpt };

	(void)state;
	/* the server fails (NULL): Postfix's default action, or the one configured */
	assert_int_equal(testsvc_init(&t, "smtpd_recipient_restrictions = "
				      "reject_unauth_destination, check_policy_service "
				      "{ inet:127.0.0.1:9, { default_action=DEFER_IF_PERMIT down } }, "
				      "check_policy_service inet:127.0.0.1:8\n", "memory"), 0);
	pc.loop = t.env.loop;
	t.env.policy = &pc.base;
	testsvc_connect(&t, "198.51.100.7");
	say(&t, NULL, "220 mx.example.test ESMTP mxgate\r\n");
	say(&t, "HELO client.example\r\n", "250 mx.example.test\r\n");
	say(&t, "MAIL FROM:<s@example.org>\r\n", "250 2.1.0 Ok\r\n");
	say(&t, "RCPT TO:<nobody@virt.test>\r\n",
	    "451 4.3.5 <nobody@virt.test>: Recipient address rejected: Server configuration "
	    "problem\r\n");
	assert_int_equal(pc.nrequests, 2);
	testsvc_free(&t);
	for (size_t i = 0; i < pc.nrequests; i++)
		free(pc.requests[i]);

	/* no client at all: every query fails */
	assert_int_equal(testsvc_init(&t, "smtpd_recipient_restrictions = "
				      "reject_unauth_destination, check_policy_service "
				      "{ inet:127.0.0.1:9, { default_action=DEFER_IF_PERMIT down } }\n",
				      "memory"), 0);
	testsvc_connect(&t, "198.51.100.7");
	say(&t, NULL, "220 mx.example.test ESMTP mxgate\r\n");
	say(&t, "HELO client.example\r\n", "250 mx.example.test\r\n");
	say(&t, "MAIL FROM:<s@example.org>\r\n", "250 2.1.0 Ok\r\n");
	say(&t, "RCPT TO:<alice@virt.test>\r\n",
	    "450 4.7.1 <alice@virt.test>: Recipient address rejected: down\r\n");
	testsvc_free(&t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_parse_bounds),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_request),
		cmocka_unit_test(test_server_spec),
		cmocka_unit_test(test_session),
		cmocka_unit_test(test_session_default_action),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
