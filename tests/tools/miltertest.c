/*
 * miltertest: one whole conversation through milter/milter_client on a real
 * libevent loop, for the system tests (tests/system/test_milter_client.py):
 * connect, HELO, MAIL, RCPT, DATA, the message (headers, body, end of
 * message), then QUIT.
 *
 *   miltertest [-c DIR] [-o name=value]... [-n CLIENT_NAME] [-a CLIENT_ADDR]
 *              [-p CLIENT_PORT] [-h HELO] [-f SENDER] [-r RCPT]... [-i QUEUE_ID]
 *              [-k STAGE [-K MS]] [-w OUT_FILE] MILTERS MESSAGE_FILE
 *
 * MILTERS is an smtpd_milters value ("inet:127.0.0.1:11332, unix:/path").
 * Settings (milter_* parameters) come from DIR/main.cf and -o.  Prints one
 * line per event, "EVENT: continue" or "EVENT: REPLY" (the milter's answer:
 * an SMTP reply, D, H or S; a multi-line reply's CR LF shown as \r\n); the conversation stops at the first answer that
 * is not "continue", as a session would.  After the message: one line per
 * change ("edit TYPE [INDEX] NAME: VALUE (milter)"), the headers as changed
 * ("header TEXT"; in both, a folded header's newlines as "\n"), "body-bytes N" and the body
 * ("body LINE"...); then ABORT, as a session's mail_reset() sends it, and at the end
 * ABORT again after an accepted HELO (Postfix's helo_reset()) and QUIT.  -k STAGE (connect, helo, mail, rcpt, data, message)
 * cancels that event right after reporting it (with -K MS, MS milliseconds later, while
 * the milter is still thinking) and prints "cancelled".  -w OUT_FILE
 * writes the message as changed (headers, empty line, body) after the end of message.
 * Exit 0; 1 when a callback ran inside its call or after a cancel; 2 on
 * usage errors.  The milter client's warnings go to stderr.
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "conf/conf.h"
#include "deliver/spool.h"
#include "milter/milter_client.h"
#include "net/evloop.h"
#include "util/buf.h"
#include "util/workpool.h"
#include "util/xalloc.h"

static struct evloop *mt_el;
static struct event_base *mt_eb;
static struct workpool *mt_pool;
static atomic_long mt_total;
static struct spool *mt_sp;
static struct milters *mt_ms;
static bool mt_in_call, mt_bad, mt_cancelled, mt_helo_ok;
static const char *mt_cancel_stage, *mt_write;
static long mt_cancel_ms;
static const char *mt_name = "client.example", *mt_addr = "127.0.0.1", *mt_port = "54321";
static const char *mt_helo = "client.example", *mt_from = "<sender@example.org>";
static const char *mt_qid = "4Xyz0123ABC";
static const char *mt_hostname;
static char *mt_rcpts[64];
static size_t mt_nrcpt, mt_rcpt_i;
static char *mt_msg;
static size_t mt_msg_len;
static int mt_stage;		/* 0 connect, 1 helo, 2 mail, 3 rcpt, 4 data, 5 message, 6 done */
static struct buf mt_mbuf;

static const char *const mt_stages[] = { "connect", "helo", "mail", "rcpt", "data", "message" };

static void mt_next(void);

/* An address without its <>. */
static const char *
mt_bare(const char *a)
{
	buf_reset(&mt_mbuf);
	if (*a == '<')
		a++;
	buf_puts(&mt_mbuf, a);
	if (mt_mbuf.len && mt_mbuf.data[mt_mbuf.len - 1] == '>')
		buf_truncate(&mt_mbuf, mt_mbuf.len - 1);
	return buf_str(&mt_mbuf);
}

static const char *
mt_macro(void *ctx, const char *name)
{
	static char buf[512];

	(void)ctx;
	if (strcmp(name, "{j}") == 0)
		return mt_hostname;
	if (strcmp(name, "{_}") == 0) {
		snprintf(buf, sizeof(buf), "%s [%s]", mt_name, mt_addr);
		return buf;
	}
	if (strcmp(name, "{client_addr}") == 0)
		return mt_addr;
	if (strcmp(name, "{client_name}") == 0 || strcmp(name, "{client_ptr}") == 0)
		return mt_name;
	if (strcmp(name, "{client_port}") == 0)
		return mt_port;
	if (strcmp(name, "{daemon_addr}") == 0)
		return "127.0.0.1";
	if (strcmp(name, "{daemon_port}") == 0)
		return "25";
	/* as Postfix's smtpd: the queue id exists once the first recipient is in */
	if (strcmp(name, "{i}") == 0)
		return mt_stage >= 4 || (mt_stage == 3 && mt_rcpt_i > 0) ? mt_qid : NULL;
	if (strcmp(name, "{mail_addr}") == 0)
		return mt_stage >= 2 ? mt_bare(mt_from) : NULL;
	if (strcmp(name, "{mail_host}") == 0 && mt_stage >= 2) {
		const char *at = strrchr(mt_bare(mt_from), '@');

		return at ? at + 1 : mt_hostname;
	}
	if (strcmp(name, "{rcpt_addr}") == 0)
		return mt_stage == 3 ? mt_bare(mt_rcpts[mt_rcpt_i]) : NULL;
	if (strcmp(name, "{rcpt_host}") == 0 && mt_stage == 3) {
		const char *at = strrchr(mt_bare(mt_rcpts[mt_rcpt_i]), '@');

		return at ? at + 1 : mt_hostname;
	}
	if (strcmp(name, "{mail_mailer}") == 0)
		return mt_stage >= 2 ? "smtp" : NULL;
	if (strcmp(name, "{rcpt_mailer}") == 0)
		return mt_stage == 3 ? "virtual" : NULL;
	return NULL;
}

/* The reply on one line: a multi-line reply's CR LF as \\r\\n. */
static void
mt_print_reply(const char *what, const char *reply)
{
	const char *p;

	printf("%s: ", what);
	for (p = reply ? reply : "continue"; *p; p++)
		if (*p == '\r')
			printf("\\r");
		else if (*p == '\n')
			printf("\\n");
		else
			putchar(*p);
	putchar('\n');
}

/* One line: the newlines of a folded header as \\n. */
static const char *
mt_oneline(const char *s)
{
	static struct buf b;
	const char *p;

	buf_reset(&b);
	for (p = s; *p; p++)
		if (*p == '\n')
			buf_puts(&b, "\\n");
		else
			buf_putc(&b, *p);
	return buf_str(&b);
}

static void
mt_report(void)
{
	const struct milter_edit *e;
	const struct milter_header *h;
	const char *body, *p;
	size_t	n, i, blen, boff;
	struct spool *bsp;
	char   *bodybuf;
	static const char *const types[] = {
		"add_header", "insert_header", "change_header", "delete_header",
		"replace_body", "change_from", "add_rcpt", "delete_rcpt", "quarantine",
	};

	e = milters_edits(mt_ms, &n);
	for (i = 0; i < n; i++) {
		if (e[i].type == MILTER_EDIT_REPLACE_BODY)
			printf("edit %s %zu bytes (%s)\n", types[e[i].type], e[i].size,
			       e[i].milter);
		else if (e[i].type == MILTER_EDIT_DELETE_HEADER)
			printf("edit %s %u %s (%s)\n", types[e[i].type], e[i].index, e[i].name,
			       e[i].milter);
		else if (e[i].type == MILTER_EDIT_INSERT_HEADER
			 || e[i].type == MILTER_EDIT_CHANGE_HEADER)
			printf("edit %s %u %s:%s (%s)\n", types[e[i].type], e[i].index, e[i].name,
			       mt_oneline(e[i].text), e[i].milter);
		else if (e[i].type == MILTER_EDIT_ADD_HEADER)
			printf("edit %s %s:%s (%s)\n", types[e[i].type], e[i].name,
			       mt_oneline(e[i].text), e[i].milter);
		else
			printf("edit %s %s%s%s (%s)\n", types[e[i].type], e[i].name,
			       *e[i].value ? " " : "", e[i].value, e[i].milter);
	}
	milters_view(mt_ms, &h, &n);
	bsp = milters_body(mt_ms, &boff, &blen);
	/* the tool reads the body whole to print it (the client does not) */
	bodybuf = xmalloc(blen + 1);
	for (i = 0; i < blen;) {
		ssize_t	got = spool_pread(bsp, bodybuf + i, blen - i, boff + i);

		if (got <= 0) {
			printf("body read error\n");
			mt_bad = true;
			blen = i;
			break;
		}
		i += (size_t)got;
	}
	body = bodybuf;
	for (i = 0; i < n; i++) {
		printf("header ");
		for (p = h[i].raw; *p; p++)
			if (*p == '\n')
				printf("\\n");
			else
				putchar(*p);
		putchar('\n');
	}
	printf("body-bytes %zu\n", blen);
	if (mt_write) {
		FILE   *fp = fopen(mt_write, "w");

		if (fp == NULL) {
			perror(mt_write);
			mt_bad = true;
		} else {
			for (i = 0; i < n; i++)
				fprintf(fp, "%s\n", h[i].raw);
			fputc('\n', fp);
			fwrite(body, 1, blen, fp);
			fclose(fp);
		}
	}
	for (p = body; p < body + blen;) {
		const char *nl = memchr(p, '\n', (size_t)(body + blen - p));
		size_t	ll = nl ? (size_t)(nl - p) : (size_t)(body + blen - p);

		printf("body %.*s\n", (int)ll, p);
		p += ll + (nl ? 1 : 0);
	}
	free(bodybuf);
}

static void
mt_done(void)
{
	/* the session's end as Postfix's: helo_reset() aborts after an accepted HELO */
	if (mt_helo_ok)
		milters_abort(mt_ms);
	milters_disconnect(mt_ms);
	printf("quit\n");
	evloop_stop(mt_el);
}

static void
mt_cb(void *ctx, const char *reply)
{
	char	what[600];

	(void)ctx;
	if (mt_in_call) {
		printf("callback inside its call\n");
		mt_bad = true;
	}
	if (mt_cancelled) {
		printf("callback after cancel\n");
		mt_bad = true;
	}
	if (mt_stage == 3)
		snprintf(what, sizeof(what), "rcpt %s", mt_rcpts[mt_rcpt_i]);
	else
		snprintf(what, sizeof(what), "%s", mt_stages[mt_stage]);
	mt_print_reply(what, reply);
	if (mt_stage == 5) {
		mt_report();
		/* the transaction is over: the session's mail_reset() aborts, as Postfix's */
		milters_abort(mt_ms);
	}
	if (reply != NULL) {
		mt_done();
		return;
	}
	if (mt_stage == 1)
		mt_helo_ok = true;
	if (mt_stage == 3 && ++mt_rcpt_i < mt_nrcpt) {
		mt_next();
		return;
	}
	mt_stage++;
	if (mt_stage == 6) {
		mt_done();
		return;
	}
	mt_next();
}

static void
mt_after_cancel(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	printf("cancelled\n");
	mt_done();
}

static void
mt_do_cancel(evutil_socket_t fd, short what, void *arg)
{
	struct timeval sec = { 1, 0 };

	(void)fd;
	(void)what;
	(void)arg;
	if (mt_cancelled)
		return;
	milters_cancel(mt_ms);
	mt_cancelled = true;
	event_base_once(mt_eb, -1, EV_TIMEOUT, mt_after_cancel, NULL, &sec);
}

static void
mt_next(void)
{
	const char *argv[2];

	mt_in_call = true;
	switch (mt_stage) {
	case 0:
		milters_connect(mt_ms, mt_name, mt_addr, mt_port,
				strchr(mt_addr, ':') ? AF_INET6 : AF_INET, mt_cb, NULL);
		break;
	case 1:
		milters_helo(mt_ms, mt_helo, mt_cb, NULL);
		break;
	case 2:
		argv[0] = mt_from;
		milters_mail(mt_ms, argv, 1, mt_cb, NULL);
		break;
	case 3:
		argv[0] = mt_rcpts[mt_rcpt_i];
		milters_rcpt(mt_ms, argv, 1, false, mt_cb, NULL);
		break;
	case 4:
		milters_data(mt_ms, mt_cb, NULL);
		break;
	case 5:
		milters_message(mt_ms, mt_sp, NULL, mt_cb, NULL);
		break;
	}
	mt_in_call = false;
	if (mt_cancel_stage && strcmp(mt_cancel_stage, mt_stages[mt_stage]) == 0) {
		struct timeval tv = { mt_cancel_ms / 1000, (mt_cancel_ms % 1000) * 1000 };

		if (mt_cancel_ms == 0)
			mt_do_cancel(-1, 0, NULL);
		else
			event_base_once(mt_eb, -1, EV_TIMEOUT, mt_do_cancel, NULL, &tv);
	}
}

static struct spool *
mt_new_spool(void *ctx)
{
	(void)ctx;
	return spool_memory_new(&mt_total, 0);
}

static void
mt_committed(void *arg, enum spool_status st)
{
	(void)arg;
	if (st != SPOOL_OK) {
		fprintf(stderr, "miltertest: cannot store the message\n");
		exit(2);
	}
	mt_next();
}

static char *
mt_read_file(const char *path, size_t *len_r)
{
	FILE   *fp = fopen(path, "rb");
	struct buf b = BUF_INIT;
	char	chunk[8192];
	size_t	n;

	if (fp == NULL) {
		perror(path);
		exit(2);
	}
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		buf_append(&b, chunk, n);
	fclose(fp);
	*len_r = b.len;
	buf_str(&b);
	return b.data ? buf_steal(&b) : xstrdup("");
}

int
main(int argc, char **argv)
{
	const char *dir = NULL;
	char   *overrides[64];
	size_t	nover = 0;
	struct conf_report rep = { 0 };
	struct conf *c;
	struct milter_conf *mc;
	char   *err;
	int	i;

	for (i = 1; i + 1 < argc && argv[i][0] == '-' && argv[i][1] && !argv[i][2]; i += 2) {
		const char *v = argv[i + 1];

		switch (argv[i][1]) {
		case 'c': dir = v; break;
		case 'o': if (nover < 64) overrides[nover++] = (char *)v; break;
		case 'n': mt_name = v; break;
		case 'a': mt_addr = v; break;
		case 'p': mt_port = v; break;
		case 'h': mt_helo = v; break;
		case 'f': mt_from = v; break;
		case 'r': if (mt_nrcpt < 64) mt_rcpts[mt_nrcpt++] = (char *)v; break;
		case 'i': mt_qid = v; break;
		case 'k': mt_cancel_stage = v; break;
		case 'w': mt_write = v; break;
		case 'K': mt_cancel_ms = atol(v); break;
		default: goto usage;
		}
	}
	if (argc - i != 2) {
usage:
		fprintf(stderr, "usage: miltertest [-c DIR] [-o name=value]... [-n NAME] [-a ADDR] "
			"[-p PORT] [-h HELO] [-f FROM] [-r RCPT]... [-i QID] [-k STAGE [-K MS]] [-w OUT] "
			"MILTERS MESSAGE_FILE\n");
		return 2;
	}
	if (mt_nrcpt == 0)
		mt_rcpts[mt_nrcpt++] = "<rcpt@example.com>";
	setvbuf(stdout, NULL, _IOLBF, 0);
	if ((c = conf_load(dir ? dir : "/nonexistent", overrides, nover, &rep)) == NULL) {
		size_t	k;

		for (k = 0; k < rep.count; k++) {
			char   *t = conf_problem_format(&rep.items[k]);

			fprintf(stderr, "miltertest: %s\n", t);
			free(t);
		}
		return 2;
	}
	conf_report_free(&rep);
	mt_hostname = conf_str(conf_global(c), P_myhostname);
	if ((mc = milter_conf_new(argv[i], conf_global(c), &err)) == NULL) {
		fprintf(stderr, "miltertest: %s\n", err);
		free(err);
		conf_free(&c);
		return 2;
	}
	mt_msg = mt_read_file(argv[i + 1], &mt_msg_len);
	evthread_use_pthreads();	/* the pool posts to the loop from its thread */
	mt_el = evloop_new();
	mt_eb = evloop_base(mt_el);
	mt_pool = workpool_create("miltertest", 1);
	mt_ms = milters_new(mc, mt_eb, NULL, mt_macro, NULL);
	{
		struct milter_io io = {
			.loop = evloop_loop(mt_el), .pool = mt_pool, .new_spool = mt_new_spool,
		};

		milters_set_io(mt_ms, &io);
	}
	/* the message as a session gives it: a committed spool (here in memory) */
	mt_sp = spool_memory_new(&mt_total, 0);
	spool_write(mt_sp, mt_msg, mt_msg_len);
	spool_commit(mt_sp, evloop_loop(mt_el), mt_committed, NULL);
	evloop_run(mt_el);
	milters_free(&mt_ms);
	workpool_destroy(&mt_pool);
	spool_unref(&mt_sp);
	evloop_free(&mt_el);
	milter_conf_free(&mc);
	conf_free(&c);
	free(mt_msg);
	buf_free(&mt_mbuf);
	return mt_bad ? 1 : 0;
}
