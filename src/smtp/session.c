/*
 * session: the SMTP protocol engine.  See session.h for the contract and
 * session_impl.h for the pieces shared with the command handlers
 * (commands.c).
 */
#include "smtp/session.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/conf.h"
#include "deliver/deliver.h"
#include "deliver/spool.h"
#include "log/log.h"
#include "net/tls.h"
#include "policy/addrlist.h"
#include "policy/anvil.h"
#include "policy/policy.h"
#include "policy/restrict.h"
#include "smtp/dataread.h"
#include "smtp/service.h"
#include "smtp/session_impl.h"
#include "util/dns.h"
#include "util/loop.h"
#include "util/xalloc.h"

/* Unsent replies: above HIGH no command runs until the transport says they drained. */
#define SESSION_WRITE_HIGH	(64 * 1024)

/* Commands or chunks handled per wake-up: fairness between clients. */
#define SESSION_BATCH		64

#define CMD_UNKNOWN	session_ncmds	/* stats slot for unknown commands */

static void session_process(struct session *s);
static void session_close(struct session *s);
static void session_deadline_start(struct session *s);
static void session_deadline_stop(struct session *s);
static loop_fn session_deadline_cb;
static void session_message_done(struct session *s, int ok, enum reply_id fail);
static void session_message_commit(struct session *s);
static void session_cleanup_log(void *arg, const char *line);

/* ---- helpers ---------------------------------------------------------- */

static const char *const session_state_name[] = {
	[S_CONNECT] = "CONNECT", [S_CMD] = "CMD", [S_DATA] = "DATA", [S_BDAT] = "BDAT",
};

/* The one place that changes a session's state (logged with -v). */
void
session_enter_state(struct session *s, enum sess_state state)
{
	if (msg_verbose && s->state != state)
		msg_debug("%s: state %s -> %s", s->addr, session_state_name[s->state],
			  session_state_name[state]);
	s->state = state;
}

long
session_now(struct session *s)
{
	return loop_now_sec(s->loop);
}

const char *
session_proto(const struct session *s)
{
	return s->esmtp ? "ESMTP" : "SMTP";
}

const char *
session_skip_space(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* Postfix's to=<> outside RCPT: the transaction's first accepted recipient, if any. */
static const char *
session_first_rcpt(const struct session *s)
{
	return s->txn.nrcpts > 0 ? s->txn.rcpts[0].addr : NULL;
}

void
session_log_reject(struct session *s, const char *verb, const char *reply, const char *from,
		   const char *rcpt)
{
	struct buf b = BUF_INIT;
	struct restrict_req q = {
		.queue_id = s->txn.queue_id, .where = verb, .namaddr = s->namaddr,
		.sender = from, .recipient = rcpt, .proto = session_proto(s), .helo = s->helo,
		.log_utf8 = s->ss->smtputf8,
	};
	char *text = xstrdup(reply);

	text[strcspn(text, "\r\n")] = '\0';
	restrict_format_log(&b, &q, "reject", text);
	msg_info("%s", buf_str(&b));
	buf_free(&b);
	free(text);
}

/* "unknown[127.0.0.2]", plus the network when anvil groups clients by prefix. */
void
session_limit_warning(struct session *s, const char *what, int value)
{
	msg_warn("%s limit exceeded: %d from %s%s%s%s for service %s", what, value, s->namaddr,
		 s->range ? " (range " : "", s->range ? s->range : "", s->range ? ")" : "",
		 s->ss->service_name);
}

/* Not taking input: closing, replies queued or blocked, or a request in flight. */
static int
session_is_busy(const struct session *s)
{
	return s->closing || s->out_head != NULL || s->output_blocked || s->wait != W_NONE
		|| s->state == S_CONNECT;
}

static void
session_resume_cb(void *arg)
{
	struct session *s = arg;

	if (!session_is_busy(s))
		s->io->read(s->ioc, 1);
	session_process(s);
}

/* Process input again soon (from a fresh loop turn, not from this call stack). */
static void
session_resume(struct session *s)
{
	if (!s->closing && !s->in_process)
		loop_timer_start(s->loop, &s->resume_t, session_resume_cb, s, 0);
}

/* ---- output and the tarpit -------------------------------------------- */

/*
 * A client that sends commands but does not read the replies must not make
 * us queue replies without end: above SESSION_WRITE_HIGH unsent bytes no
 * further command is processed until the transport says the output has
 * drained, as a blocking write would in Postfix.  The kernel's buffers then
 * push back on the client.
 */
static void
session_write(struct session *s, const char *data, size_t len)
{
	s->io->write(s->ioc, data, len);
	if (s->io->unsent(s->ioc) > SESSION_WRITE_HIGH)
		s->output_blocked = 1;
}

static void session_pump(struct session *s);

static void
session_tarpit_cb(void *arg)
{
	struct session *s = arg;

	s->tarpit_armed = 0;
	if (s->out_head != NULL)
		s->out_head->delay = 0;
	session_pump(s);
}

/* Write queued lines in order; a line marked delay first waits smtpd_error_sleep_time. */
static void
session_pump(struct session *s)
{
	while (s->out_head != NULL) {
		struct outline *o = s->out_head;

		if (o->delay) {
			if (!s->tarpit_armed) {
				loop_timer_start(s->loop, &s->tarpit_t, session_tarpit_cb, s,
						 s->ss->sleep_time * 1000);
				s->tarpit_armed = 1;
			}
			return;
		}
		session_write(s, o->data, o->len);
		s->out_head = o->next;
		if (s->out_head == NULL)
			s->out_tail = NULL;
		free(o);
	}
	if (s->hangup)
		session_close(s);
	else if (s->tls_start)
		session_starttls(s);
	else
		session_resume(s);
}

/*
 * Send reply lines (CRLF-terminated, one or more).  Postfix sleeps before
 * every reply write once error_count >= smtpd_soft_error_limit; here each
 * such line waits for a timer instead, and input is not processed meanwhile.
 * A 421 or 521 reply ends the session after it is written.
 */
void
session_send(struct session *s, const struct buf *lines)
{
	const char *p = buf_str(lines), *end = p + lines->len;
	int delay = s->ss->sleep_time > 0 && s->error_count >= s->ss->soft_limit;

	if (s->closing)
		return;
	if (lines->len >= 3 && (strncmp(p, "421", 3) == 0 || strncmp(p, "521", 3) == 0))
		s->hangup = 1;
	if (!delay && s->out_head == NULL) {
		session_write(s, p, lines->len);
		if (s->hangup)
			session_close(s);
		return;
	}
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
		struct outline *o = xmalloc(sizeof(*o) + len);

		o->next = NULL;
		o->delay = delay;
		o->len = len;
		memcpy(o->data, p, len);
		if (s->out_tail)
			s->out_tail->next = o;
		else
			s->out_head = o;
		s->out_tail = o;
		p += len;
	}
	session_pump(s);
}

int
session_reply(struct session *s, enum reply_id id, ...)
{
	struct buf b = BUF_INIT;
	va_list ap;
	int code;

	va_start(ap, id);
	code = reply_vformat(&b, s->ss->soft_bounce, id, ap);
	va_end(ap);
	session_send(s, &b);
	buf_free(&b);
	return code;
}

int
session_reply_text(struct session *s, const char *text)
{
	struct buf b = BUF_INIT;
	int code = reply_raw(&b, s->ss->soft_bounce, text);

	session_send(s, &b);
	buf_free(&b);
	return code;
}

void
session_hangup(struct session *s)
{
	s->hangup = 1;
	if (s->out_head == NULL)
		session_close(s);
}

/* ---- waits ------------------------------------------------------------ */

void
session_wait(struct session *s, enum sess_wait kind, void *handle)
{
	/*
	 * The answer may have come already (handle NULL: the callback ran and
	 * called session_waited()).  Only a request still in flight is kept.
	 */
	if (handle == NULL)
		return;
	s->wait = kind;
	s->wait_handle = handle;
	session_deadline_stop(s);
	s->io->read(s->ioc, 0);
}

void
session_waited(struct session *s)
{
	s->wait = W_NONE;
	s->wait_handle = NULL;
}

/* Withdraw the request in flight: its answer, if it comes, is dropped. */
static void
session_wait_cancel(struct session *s)
{
	switch (s->wait) {
	case W_NONE:
		break;
	case W_ANVIL:
		anvil_cancel(s->wait_handle);
		break;
	case W_COMMIT:
		spool_commit_cancel(s->wait_handle);
		break;
	case W_SPOOL:
		spool_on_writable_cancel(s->wait_handle);
		break;
	case W_DELIVER:
		deliver_cancel(s->wait_handle);
		break;
	case W_RESTRICT:
		restrict_cancel(s->wait_handle);
		break;
	case W_SLEEP:
		loop_timer_stop(s->loop, s->sleep_t);
		break;
	case W_DNS:
		dns_cancel(s->env->dns, s->wait_handle);
		break;
	case W_POLICY:
		policy_cancel(s->env->policy, s->wait_handle);
		break;
	case W_TLS:
		break;		/* the transport's; it goes with the connection */
	case W_TLS_RATE:
		anvil_cancel(s->wait_handle);
		break;
	case W_MILTER:
	case W_MILTER_READ:
		session_milter_cancel(s);
		break;
	}
	session_waited(s);
}

/* ---- bookkeeping after a command -------------------------------------- */

/* Postfix checks the hard error limit before it reads the next command. */
static void
session_after_command(struct session *s)
{
	if (s->closing || s->hangup)
		return;
	if (s->error_count >= s->ss->hard_limit) {
		msg_info("too many errors after %s from %s", s->where, s->namaddr);
		session_reply(s, RPL_TOO_MANY_ERRORS, s->ss->hostname);
		session_hangup(s);
	}
}

void
session_command_done(struct session *s, enum cmd_result rc)
{
	const struct cmd *cmd = s->cur;
	size_t idx = (size_t)(cmd - session_cmds);

	s->cur = NULL;
	s->stat_total[idx]++;
	if (rc == CMD_OK)
		s->stat_ok[idx]++;
	else
		s->error_count++;
	if ((cmd->flags & CMD_JUNK) && s->junk_cmds++ > s->ss->junk_limit)
		s->error_count++;
	smtp_path_free(&s->path);
	free(s->arg);
	s->arg = NULL;
	lr_next(&s->lr);
	session_after_command(s);
	session_resume(s);
}

/* ---- commands --------------------------------------------------------- */

/*
 * RFC 2920 and smtpd_forbid_unauth_pipelining: input that is already waiting
 * after a command that must end a pipelined group (or before the banner, or
 * in a non-ESMTP session) is logged, and refused when the parameter is on.
 * Once per session, as in Postfix (its SMTPD_FLAG_ILL_PIPELINING stays set
 * and stops the check).  Returns 1 when the session was ended for it.
 */
static int
session_check_pipelining(struct session *s, const char *after)
{
	char peek[100];
	size_t n;
	struct buf esc = BUF_INIT;

	if (s->ill_pipelining || s->io->pending(s->ioc) == 0)
		return 0;
	n = s->io->peek_copy(s->ioc, peek, sizeof(peek));
	log_escape(&esc, peek, n, 100);
	msg_info("improper command pipelining after %s from %s: %s", after, s->namaddr,
		 buf_str(&esc));
	buf_free(&esc);
	s->ill_pipelining = 1;
	if (!s->ss->forbid_pipelining)
		return 0;
	session_reply(s, RPL_SYNC_ERROR);
	session_hangup(s);
	return 1;
}

/* The milters' answer to an unknown command. */
static void
session_unknown_answer(struct session *s, const char *reply)
{
	if ((reply = session_milter_check(s, reply)) != NULL)
		session_reply_text(s, reply);
	else
		session_reply(s, RPL_UNKNOWN_CMD);
	s->error_count++;
	lr_next(&s->lr);
	session_after_command(s);
	session_resume(s);
}

/* One complete command line is in s->lr. */
static void
session_command(struct session *s)
{
	const char *line = buf_str(&s->lr.line);
	const char *verb, *args;
	size_t vlen;
	const struct cmd *cmd;
	enum cmd_result rc;

	if (s->lr.overlong)
		msg_warn("%s: request longer than %ld: %s", s->namaddr, s->ss->line_limit,
			 log_escape_str(line, 30));
	if (s->lr.bare_lf && s->bare_lf_reject) {
		/* Logged as "reject: <the state so far> from ...", as Postfix does. */
		session_log_reject(s, s->where, "bare <LF> received", s->txn.sender,
				   session_first_rcpt(s));
		session_reply(s, RPL_BARE_LF, s->ss->bare_lf_code, s->ss->hostname);
		session_hangup(s);
		lr_next(&s->lr);
		return;
	}
	/*
	 * Postfix answers these before it looks the verb up: they are neither in
	 * the disconnect statistics nor a state ("too many errors after EHLO").
	 */
	if (s->ss->smtputf8 && !smtp_utf8_valid(line, strlen(line))) {
		session_reply(s, RPL_BAD_UTF8);
		goto error;
	}
	if (smtp_split_command(line, strlen(line), &verb, &vlen, &args) < 0) {
		session_reply(s, RPL_BAD_SYNTAX);
		goto error;
	}
	/* smtpd_noop_commands: 250 and the junk rule, before the command table. */
	if (smtp_service_noop_command(s->ss, verb, vlen)) {
		session_reply(s, RPL_OK);
		if (s->junk_cmds++ > s->ss->junk_limit)
			s->error_count++;
		goto next;
	}
	if ((cmd = session_cmd_find(verb, vlen)) == NULL) {
		s->where = "UNKNOWN";
		s->stat_total[CMD_UNKNOWN]++;
		if (smtp_service_forbidden(s->ss, verb, vlen)) {
			msg_warn("non-SMTP command from %s: %s", s->namaddr, log_escape_str(line, 100));
			session_reply(s, RPL_NON_SMTP);
			session_hangup(s);
			lr_next(&s->lr);
			return;
		}
		if (s->access_denied != NULL)
			goto denied;
		if (s->ms != NULL) {
			/* the milters hear of it first; their reply replaces the 500 */
			char *v = xasprintf("%.*s", (int)vlen, verb);

			session_milter_unknown(s, v, session_unknown_answer);
			free(v);
			return;
		}
		session_reply(s, RPL_UNKNOWN_CMD);
		goto error;
	}
	if (s->access_denied != NULL && strcmp(cmd->name, "QUIT") != 0) {
		/* smtpd_delay_reject = no and the client was refused: only QUIT works */
		s->stat_total[cmd - session_cmds]++;
		goto denied;
	}
	if (s->ss->tls.level == TLS_LEVEL_ENCRYPT && s->tls == NULL
	    && !(cmd->flags & CMD_PRE_TLS)) {
		/* Postfix: counted in the statistics, "where" unchanged */
		s->stat_total[cmd - session_cmds]++;
		session_reply(s, RPL_TLS_REQUIRED);
		goto error;
	}
	s->where = cmd->name;
	s->cur = cmd;
	s->args = args;
	/*
	 * Postfix looks for input queued behind a command that must end a
	 * pipelined group (or any command before EHLO) before it runs it: the
	 * command then gets the 554 instead of its own reply.
	 */
	if (((cmd->flags & CMD_LAST) || !s->esmtp) && session_check_pipelining(s, cmd->name)) {
		s->stat_total[cmd - session_cmds]++;
		s->cur = NULL;
		lr_next(&s->lr);
		return;
	}
	rc = cmd->fn(s, args);
	if (rc == CMD_OK || rc == CMD_FAIL)
		session_command_done(s, rc);
	/* CMD_WAIT and CMD_BODY finish later, through session_command_done(). */
	return;
denied:
	/* Postfix repeats a 421 (a milter's), else refuses each command */
	if (strncmp(s->access_denied + 1, "21", 2) == 0) {
		session_reply_text(s, s->access_denied);
		goto next;
	}
	session_reply(s, RPL_ACCESS_DENIED_FOR, s->namaddr);
error:
	s->error_count++;
next:
	lr_next(&s->lr);
	session_after_command(s);
}

/* ---- message bodies ---------------------------------------------------- */

/* A BDAT chunk has been read completely. */
static void
session_bdat_chunk_done(struct session *s)
{
	struct txn *t = &s->txn;

	session_enter_state(s, S_CMD);
	if (t->bdat_refuse >= 0 || t->bdat_discard) {
		if (t->bdat_refuse >= 0)
			session_reply(s, (enum reply_id)t->bdat_refuse);
		else
			session_reply(s, RPL_BDAT_DISCARDED, t->bdat_chunk);
		t->bdat_refuse = -1;
		t->bdat_discard = 1;
		/* Postfix: a refused LAST chunk ends the transaction. */
		if (t->bdat_last)
			session_transaction_reset(s);
		session_command_done(s, CMD_FAIL);
		return;
	}
	if (!t->bdat_last && (t->bdat.too_big || (t->bdat.bare_lf_seen && s->bare_lf_reject))) {
		/*
		 * Postfix judges a chunk's content when the chunk has been read:
		 * a bare LF (reject) or a message grown past message_size_limit
		 * gets its end-of-message reply now, the transaction ends, and
		 * the chunks that follow are discarded until LAST.
		 */
		if (t->bdat.too_big) {
			msg_warn("%s: queue file size limit exceeded", t->queue_id[0] ? t->queue_id
				 : "NOQUEUE");
			session_reply(s, RPL_MSG_TOO_BIG);
		} else {
			session_log_reject(s, s->where, "bare <LF> received", t->sender,
					   session_first_rcpt(s));
			session_reply(s, RPL_BARE_LF, s->ss->bare_lf_code, s->ss->hostname);
		}
		session_transaction_reset(s);
		t->bdat_discard = 1;
		session_command_done(s, CMD_FAIL);
		return;
	}
	if (!t->bdat_last) {
		session_reply(s, RPL_BDAT_CHUNK, t->bdat_chunk);
		session_command_done(s, CMD_OK);
		return;
	}
	bdat_finish(&t->bdat, &t->chunk);
	session_body_flush(s);
	session_message_end(s, t->bdat.too_big, t->bdat.bare_lf_seen, t->bdat.size);
}

/* The reply to the end of a message; the transaction is reset. */
static void
session_message_done(struct session *s, int ok, enum reply_id fail)
{
	size_t size = s->txn.bdat_used ? s->txn.bdat.size : s->txn.dr.size;

	if (ok) {
		/* Postfix resets the counters just before the 250, so it is never delayed. */
		s->error_count = 0;
		s->junk_cmds = 0;
		if (s->txn.bdat_used)
			session_reply(s, RPL_BDAT_QUEUED, size, s->txn.queue_id);
		else
			session_reply(s, RPL_QUEUED, s->txn.queue_id);
	} else if (fail == RPL_BARE_LF) {
		session_reply(s, RPL_BARE_LF, s->ss->bare_lf_code, s->ss->hostname);
	} else {
		session_reply(s, fail);
	}
	session_transaction_reset(s);
	session_command_done(s, ok ? CMD_OK : CMD_FAIL);
}

static void
session_delivered(void *ctx, const struct deliver_msg *m, int ok)
{
	struct session *s = ctx;

	session_waited(s);
	if (!ok && m->reply != NULL) {
		/* the transport's own reply (deliver.h: an LMTP server's answers) */
		session_reply_text(s, m->reply);
		session_transaction_reset(s);
		session_command_done(s, CMD_FAIL);
		return;
	}
	session_message_done(s, ok, RPL_WRITE_ERROR);
}

/* tls_comment: where the Received: header's TLS comment goes (freed by the caller). */
static struct txn_client
session_txn_client(const struct session *s, struct buf *tls_comment)
{
	struct txn_client c = {
		.helo = s->helo,
		.namaddr = s->namaddr,
		.addr = s->addr,
		.proto = session_proto(s),
		/* RFC 3848: "ESMTPS" (txn_received() adds the S to ESMTP only) */
		.tls = s->tls != NULL,
		.hostname = s->ss->hostname,
		.mail_name = conf_str(s->ss->cf, P_mail_name),
	};

	if (s->tls != NULL && s->ss->tls.received_header) {
		tls_format_received(tls_comment, s->tls, conf_bool(s->ss->cf, P_smtpd_tls_ask_ccert));
		c.tls_comment = buf_str(tls_comment);
	}
	return c;
}

/* The spool has the whole message (or says why not): deliver it. */
static void
session_committed(void *arg, enum spool_status st)
{
	struct session *s = arg;

	session_waited(s);
	if (st != SPOOL_OK) {
		session_message_done(s, 0, st == SPOOL_NO_SPACE ? RPL_NO_STORAGE : RPL_WRITE_ERROR);
		return;
	}
	if (!s->rst.discard && session_milter_wants_message(s)) {
		/* the milters see the stored copy first (smtp/session_milter.c) */
		session_milter_message(s);
		return;
	}
	session_deliver(s);
}

void
session_deliver(struct session *s)
{
	struct txn_client c;
	struct buf tls_comment = BUF_INIT;
	struct deliver_msg *m;
	size_t size = s->txn.bdat_used ? s->txn.bdat.size : s->txn.dr.size;

	if (s->rst.discard || s->milter_discard || s->txn.nrcpts == 0) {
		/* an access table or a milter said DISCARD: the client is told it is queued */
		session_message_done(s, 1, RPL_OK);
		return;
	}
	c = session_txn_client(s, &tls_comment);
	if (s->milter_size > 0) {
		/* the copy the milters changed */
		size = s->milter_size;
		for (size_t i = 0; i < s->rst.nprepend; i++)
			size += cleanup_line_size(strlen(s->rst.prepend[i]), s->ss->cleanup.line_limit);
	} else if (s->txn.cl_on) {
		/* Postfix's size=: the queue file's content, our Received: header included */
		size = s->txn.cl.size;
		for (size_t i = 0; i < s->rst.nprepend; i++)
			size += cleanup_line_size(strlen(s->rst.prepend[i]), s->ss->cleanup.line_limit);
	}
	m = txn_deliver_msg(&s->txn, &c, size);
	m->orig_rcpt = s->ss->orig_rcpt;
	buf_free(&tls_comment);
	lmtp_conf_from_view(&m->lmtp, s->ss->cf);
	m->mailbox_limit = conf_int(s->ss->cf, P_mailbox_size_limit);
	m->virtual_limit = conf_int(s->ss->cf, P_virtual_mailbox_limit);
	if (s->rst.nprepend > 0) {
		/* PREPEND headers go above our Received: header, as in Postfix */
		struct buf b = BUF_INIT;

		for (size_t i = 0; i < s->rst.nprepend; i++)
			buf_printf(&b, "%s\n", s->rst.prepend[i]);
		if (m->received != NULL)
			buf_puts(&b, m->received);
		free(m->received);
		m->received = buf_steal(&b);
	}
	/*
	 * The delivery holds the body now: it drops it on the writer thread
	 * once stored, so the spool file is released there, not on this loop.
	 */
	spool_unref(&s->txn.body);
	session_wait(s, W_DELIVER, deliver_submit(s->env->deliver, m, s->loop, session_delivered,
						  s));
}

/* smtpd_end_of_data_restrictions said no: the message is not stored. */
static void
session_eod_checked(struct session *s, struct restrict_out *out)
{
	if (out->verdict == RESTRICT_REJECT) {
		session_reply_text(s, out->reply);
		txn_drop_message(&s->txn);
		session_command_done(s, CMD_FAIL);
		return;
	}
	session_message_commit(s);
}

void
session_message_end(struct session *s, int too_big, int bare_lf, size_t size)
{
	struct txn *t = &s->txn;
	struct spool *sp = t->body;

	t->act_size = size;
	s->where = "END-OF-MESSAGE";
	txn_body_end(t);
	txn_cleanup_logs(t, session_cleanup_log, s);
	if (too_big) {
		msg_warn("%s: queue file size limit exceeded", t->queue_id[0] ? t->queue_id : "NOQUEUE");
		session_message_done(s, 0, RPL_MSG_TOO_BIG);
		return;
	}
	if (bare_lf && s->bare_lf_reject) {
		session_log_reject(s, "END-OF-MESSAGE", "bare <LF> received", t->sender,
				   session_first_rcpt(s));
		session_message_done(s, 0, RPL_BARE_LF);
		return;
	}
	if (spool_status(sp) == SPOOL_NO_SPACE) {
		msg_warn("%s: no space to store the message from %s; deferring it",
			 t->queue_id[0] ? t->queue_id : "NOQUEUE", s->namaddr);
		session_message_done(s, 0, RPL_NO_STORAGE);
		return;
	}
	if (!restrict_stage_empty(s->ss->acl, RESTRICT_EOD)) {
		session_restrict(s, RESTRICT_EOD, NULL, session_eod_checked);
		return;
	}
	session_message_commit(s);
}

static void
session_message_commit(struct session *s)
{
	struct spool *sp = s->txn.body;
	struct txn *t = &s->txn;

	/* What cleanup(8) said about the content (Postfix's smtpd replies). */
	switch (t->cl_on ? cleanup_result(&t->cl) : CLEANUP_OK) {
	case CLEANUP_OK:
		break;
	case CLEANUP_REJECT: {
		const char *why = cleanup_reason(&t->cl);

		session_reply(s, RPL_CONTENT_REJECT, *why == '4' ? 451 : 550, why);
		session_transaction_reset(s);
		session_command_done(s, CMD_FAIL);
		return;
	}
	case CLEANUP_DISCARD:
		session_message_done(s, 1, RPL_OK);
		return;
	case CLEANUP_HOPS:
		session_message_done(s, 0, RPL_TOO_MANY_HOPS);
		return;
	case CLEANUP_TEMPFAIL:
		session_message_done(s, 0, RPL_WRITE_ERROR);
		return;
	}
	{
		const char *rcpt = NULL, *loop = txn_mail_loop(t, &rcpt);

		if (loop != NULL) {
			/*
			 * local(8) would bounce this copy; mxgate sends no bounces, and
			 * a copy that cannot be stored fails the whole message (4xx).
			 */
			char *esc = log_escape_dup(rcpt, 300);

			log_as("local", LOG_LVL_INFO, "%s: to=<%s>, orig_to=<%s>, relay=local, "
			       "dsn=4.4.6, status=deferred (mail forwarding loop for %s)",
			       t->queue_id, log_escape_str(loop, 300), esc, log_escape_str(loop, 300));
			free(esc);
			session_reply(s, RPL_MAIL_LOOP, loop);
			session_transaction_reset(s);
			session_command_done(s, CMD_FAIL);
			return;
		}
	}

	s->wait = W_COMMIT;	/* the commit answers later, never inside spool_commit() */
	s->wait_handle = sp;
	session_deadline_stop(s);
	s->io->read(s->ioc, 0);
	spool_commit(sp, s->loop, session_committed, s);
}

void
session_body_resume(struct session *s)
{
	session_resume(s);
}

void
session_transaction_reset(struct session *s)
{
	session_milter_abort(s);
	s->milter_size = 0;
	txn_reset(&s->txn);
	restrict_state_reset_mail(&s->rst);
}

struct spool *
session_new_spool(struct session *s)
{
	if (s->env->spool_new != NULL)
		return s->env->spool_new(s->env->spool_ctx, s->env->body_bytes,
					s->ss->body_memory_limit);
	return spool_memory_new(s->env->body_bytes, s->ss->body_memory_limit);
}

static void
session_cleanup_log(void *arg, const char *line)
{
	struct session *s = arg;

	/* "I text" or "W text" (deliver/cleanup.h) */
	log_as("cleanup", line[0] == 'W' ? LOG_LVL_WARNING : LOG_LVL_INFO, "%s: %s",
	       s->txn.queue_id[0] ? s->txn.queue_id : "NOQUEUE", line + (line[0] ? 2 : 0));
}

void
session_body_flush(struct session *s)
{
	txn_body_flush(&s->txn);
	txn_cleanup_logs(&s->txn, session_cleanup_log, s);
}

void
session_body_start(struct session *s)
{
	struct txn *t = &s->txn;
	struct buf head = BUF_INIT, ctx = BUF_INIT, tls_comment = BUF_INIT;
	struct txn_client c = session_txn_client(s, &tls_comment);
	const char *rcpt = session_first_rcpt(s);

	txn_body_start(t, session_new_spool(s));
	txn_received(t, &c, &head);
	if (s->ms != NULL) {
		/* the milters do not see it, if it is still there (session_milter.c) */
		free(s->milter_received);
		s->milter_received = xstrdup(buf_str(&head));
	}
	/* cleanup_act_log()'s "from <name[addr]>; from=<> to=<> proto= helo=<>" */
	buf_printf(&ctx, "%s;", s->namaddr);
	buf_printf(&ctx, " from=<%s>", t->sender ? log_escape_str(t->sender, 300) : "");
	if (rcpt != NULL)
		buf_printf(&ctx, " to=<%s>", log_escape_str(rcpt, 300));
	buf_printf(&ctx, " proto=%s", session_proto(s));
	if (s->helo)
		buf_printf(&ctx, " helo=<%s>", log_escape_str(s->helo, 300));
	txn_body_cleanup(t, &s->ss->cleanup, smtp_service_adds_headers(s->ss, s->name, &s->sa.sa),
			 buf_str(&head), buf_str(&ctx));
	buf_free(&head);
	buf_free(&ctx);
	buf_free(&tls_comment);
}

static void
session_spool_writable(void *arg)
{
	struct session *s = arg;

	session_waited(s);
	session_resume(s);
}

/*
 * Back-pressure from the spool: while it takes no more bytes, the session
 * reads no more of the body (the transport, then the kernel, then the client
 * hold the rest), and goes on when the spool says it can.
 */
static void
session_spool_check(struct session *s)
{
	struct spool *sp = s->txn.body;

	if (sp == NULL || !spool_busy(sp))
		return;
	s->wait = W_SPOOL;
	s->wait_handle = sp;
	session_deadline_stop(s);
	s->io->read(s->ioc, 0);
	spool_on_writable(sp, s->loop, session_spool_writable, s);
}

/* ---- input ------------------------------------------------------------ */

static void
session_process(struct session *s)
{
	int budget = SESSION_BATCH;
	struct txn *t = &s->txn;

	if (s->in_process)
		return;
	s->in_process = 1;
	while (!session_is_busy(s) && budget-- > 0) {
		const char *data;
		size_t len, used = 0;

		if (s->state == S_BDAT && t->bdat_left == 0) {
			session_bdat_chunk_done(s);
			continue;
		}
		if ((len = s->io->peek(s->ioc, &data)) == 0)
			break;
		switch (s->state) {
		case S_CMD:
			if (lr_feed(&s->lr, data, len, &used) == LR_LINE) {
				s->io->consume(s->ioc, used);
				session_deadline_stop(s);
				session_command(s);
			} else {
				s->io->consume(s->ioc, used);
			}
			break;
		case S_DATA:
			if (dr_feed(&t->dr, data, len, &used) == DR_DONE) {
				s->io->consume(s->ioc, used);
				session_body_flush(s);
				session_deadline_stop(s);
				session_enter_state(s, S_CMD);
				session_message_end(s, t->dr.too_big, t->dr.bare_lf_seen, t->dr.size);
			} else {
				s->io->consume(s->ioc, used);
				session_body_flush(s);
				session_spool_check(s);
			}
			break;
		case S_BDAT:
			used = len < t->bdat_left ? len : t->bdat_left;
			if (!t->bdat_discard && t->bdat_refuse < 0) {
				bdat_append(&t->bdat, &t->chunk, data, used);
				session_body_flush(s);
				session_spool_check(s);
			}
			t->bdat_chunk += used;
			t->bdat_raw += used;
			t->bdat_left -= used;
			s->io->consume(s->ioc, used);
			if (t->bdat_left == 0)
				session_deadline_stop(s);
			budget++;	/* reading a chunk is not a command */
			break;
		case S_CONNECT:
			break;
		}
		/* DATA and BDAT bytes extend the per-request deadline. */
		if ((s->state == S_DATA || s->state == S_BDAT) && s->deadline_armed && used > 0) {
			struct timeval add, at, now, max;
			long usec = (long)((double)used * 1e6 / (double)s->ss->min_data_rate);

			add.tv_sec = usec / 1000000;
			add.tv_usec = usec % 1000000;
			timeradd(&s->deadline_at, &add, &at);
			loop_now(s->loop, &now);
			max.tv_sec = now.tv_sec + s->ss->timeout;
			max.tv_usec = now.tv_usec;
			if (timercmp(&at, &max, >))
				at = max;
			s->deadline_at = at;
			timersub(&at, &now, &add);
			loop_timer_start(s->loop, &s->deadline_t, session_deadline_cb, s,
					 add.tv_sec * 1000 + add.tv_usec / 1000);
		}
	}
	s->in_process = 0;
	if (budget < 0 && !session_is_busy(s) && s->io->peek(s->ioc, &(const char *){ NULL }) > 0)
		session_resume(s);
	if (!session_is_busy(s))
		session_deadline_start(s);
}

void
session_on_input(struct session *s)
{
	session_process(s);
}

void
session_on_drained(struct session *s)
{
	if (s->output_blocked) {
		/* The client has read enough of its replies: take commands again. */
		s->output_blocked = 0;
		session_resume(s);
	}
}

/* ---- timeouts ---------------------------------------------------------- */

/*
 * "<reason> after <state> from <client>"; while a message is coming, as
 * Postfix says it, "after DATA (N bytes)" and "after BDAT (N bytes)" (N:
 * bytes received; Postfix counts its own way).
 */
static void
session_log_end(struct session *s, const char *reason)
{
	if (s->state == S_DATA)
		msg_info("%s after DATA (%zu bytes) from %s", reason, s->txn.dr.raw_bytes,
			 s->namaddr);
	else if (strcmp(s->where, SESSION_BDAT_CONTENT) == 0)
		msg_info("%s after BDAT (%zu bytes) from %s", reason, s->txn.bdat_raw, s->namaddr);
	else
		msg_info("%s after %s from %s", reason, s->where, s->namaddr);
}

/* smtpd_timeout, or the per-request deadline, ran out. */
static void
session_timeout(struct session *s)
{
	if (s->closing || s->hangup)
		return;
	session_log_end(s, "timeout");
	session_wait_cancel(s);
	s->io->read(s->ioc, 0);
	session_reply(s, RPL_TIMEOUT, s->ss->hostname);
	session_hangup(s);
}

void
session_on_timeout(struct session *s)
{
	session_timeout(s);
}

/*
 * smtpd_per_request_deadline: smtpd_timeout is a budget for a whole request
 * (a command line, or a DATA/BDAT transfer), not for each read, so a client
 * trickling a byte at a time cannot stretch it.  During DATA and BDAT the
 * budget grows by received bytes / smtpd_min_data_rate, never past
 * smtpd_timeout from now (session_process()).
 */
static void
session_deadline_cb(void *arg)
{
	struct session *s = arg;

	s->deadline_armed = 0;
	session_timeout(s);
}

/* Start the budget for the next request, unless one is running. */
static void
session_deadline_start(struct session *s)
{
	struct timeval now, tmo = { s->ss->timeout, 0 };

	if (!s->ss->deadline || s->deadline_armed || s->closing)
		return;
	loop_now(s->loop, &now);
	timeradd(&now, &tmo, &s->deadline_at);
	loop_timer_start(s->loop, &s->deadline_t, session_deadline_cb, s, s->ss->timeout * 1000);
	s->deadline_armed = 1;
}

static void
session_deadline_stop(struct session *s)
{
	if (s->deadline_armed)
		loop_timer_stop(s->loop, s->deadline_t);
	s->deadline_armed = 0;
}

/* ---- the end ----------------------------------------------------------- */

/* Stop everything and ask the transport to close once what is queued is sent. */
static void
session_close(struct session *s)
{
	if (s->closing)
		return;
	s->closing = 1;
	session_wait_cancel(s);
	loop_timer_stop(s->loop, s->tarpit_t);
	loop_timer_stop(s->loop, s->resume_t);
	loop_timer_stop(s->loop, s->sleep_t);
	session_deadline_stop(s);
	s->io->close(s->ioc);
}

int
session_closed(const struct session *s)
{
	return s->closing;
}

void
session_on_eof(struct session *s)
{
	if (s->closing)
		return;
	if (s->namaddr != NULL && strcmp(s->where, "END-OF-MESSAGE") != 0)
		session_log_end(s, "lost connection");
	session_close(s);
}

static void
session_log_disconnect(struct session *s)
{
	struct buf b = BUF_INIT;
	unsigned ok = 0, total = 0;
	size_t i;

	for (i = 0; i <= CMD_UNKNOWN; i++) {
		if (s->stat_total[i] == 0)
			continue;
		buf_printf(&b, " %s=", i == CMD_UNKNOWN ? "unknown" : session_cmds[i].stat);
		if (s->stat_ok[i] == s->stat_total[i])
			buf_printf(&b, "%u", s->stat_ok[i]);
		else
			buf_printf(&b, "%u/%u", s->stat_ok[i], s->stat_total[i]);
		ok += s->stat_ok[i];
		total += s->stat_total[i];
	}
	if (ok == total)
		buf_printf(&b, " commands=%u", ok);
	else
		buf_printf(&b, " commands=%u/%u", ok, total);
	msg_info("disconnect from %s%s", s->namaddr, buf_str(&b));
	buf_free(&b);
}

void
session_free(struct session **sp)
{
	struct session *s = *sp;
	struct outline *o;

	if (s == NULL)
		return;
	*sp = NULL;
	session_wait_cancel(s);
	session_milter_end(s);
	if (s->namaddr != NULL)
		session_log_disconnect(s);
	if (s->anvil_connected)
		anvil_disconnect(s->env->anvil, s->loop, s->ident, session_now(s), NULL, NULL);
	txn_reset(&s->txn);
	smtp_path_free(&s->path);
	free(s->arg);
	while ((o = s->out_head) != NULL) {
		s->out_head = o->next;
		free(o);
	}
	loop_timer_free(s->loop, &s->tarpit_t);
	loop_timer_free(s->loop, &s->deadline_t);
	loop_timer_free(s->loop, &s->resume_t);
	loop_timer_free(s->loop, &s->sleep_t);
	restrict_state_free(&s->rst);
	restrict_answers_free(&s->answers);
	free(s->ask_name);
	free(s->ask_request);
	free(s->access_denied);
	lr_free(&s->lr);
	free(s->ident);
	free(s->range);
	free(s->namaddr);
	free(s->name);
	free(s->reverse_name);
	free(s->helo);
	free(s->tls);
	free(s);
}

size_t
session_memory(const struct session *s)
{
	size_t n = sizeof(*s) + s->lr.line.cap + s->txn.chunk.cap
		   + s->txn.rcpt_cap * sizeof(struct txn_rcpt);
	const struct outline *o;

	for (o = s->out_head; o != NULL; o = o->next)
		n += sizeof(*o) + o->len;
	return n;
}

/* ---- restrictions (policy/restrict.h) --------------------------------- */

/* A socket address's port, as Postfix's policy requests carry it ("" if none). */
static void
session_format_port(const struct sockaddr *sa, char *out, size_t len)
{
	if (sa->sa_family == AF_INET)
		snprintf(out, len, "%u", ntohs(((const struct sockaddr_in *)sa)->sin_port));
	else if (sa->sa_family == AF_INET6)
		snprintf(out, len, "%u", ntohs(((const struct sockaddr_in6 *)sa)->sin6_port));
	else
		*out = '\0';
}

void
session_set_server(struct session *s, const struct sockaddr *sa)
{
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

	s->server_addr[0] = '\0';
	if (sa->sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
		inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], s->server_addr,
			  sizeof(s->server_addr));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &in6->sin6_addr, s->server_addr, sizeof(s->server_addr));
	else if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, s->server_addr,
			  sizeof(s->server_addr));
	session_format_port(sa, s->server_port, sizeof(s->server_port));
}

static void session_restrict_go(struct session *s);
static void session_banner(struct session *s);

static void
session_restrict_wake(void *arg)
{
	struct session *s = arg;

	session_waited(s);
	s->rq.sleeps_done++;
	session_restrict_go(s);
}

/* A DNS answer is in (or none can be had): log, remember it, evaluate again. */
static void
session_dns_store(struct session *s, const struct dns_answer *a)
{
	struct restrict_ask ask = { .kind = RESTRICT_ASK_DNS, .name = s->ask_name,
				    .type = s->ask_type, .rbl = s->ask_rbl };

	restrict_ask_log(&ask, a);
	restrict_answers_add_dns(s->answers, s->ask_name, s->ask_type, a);
	free(s->ask_name);
	s->ask_name = NULL;
	session_restrict_go(s);
}

static void
session_dns_answer(void *ctx, const struct dns_answer *a)
{
	struct session *s = ctx;

	session_waited(s);
	session_dns_store(s, a);
}

static void
session_policy_answer(void *ctx, const char *action)
{
	struct session *s = ctx;

	session_waited(s);
	restrict_answers_add_policy(s->answers, s->rq.ask_serial, s->ask_name, s->ask_request,
				    action);
	free(s->ask_name);
	free(s->ask_request);
	s->ask_name = s->ask_request = NULL;
	session_restrict_go(s);
}

/* RESTRICT_ASK: ask (on this loop, never waiting), remember the answer, evaluate again. */
static void
session_ask(struct session *s, struct restrict_ask *ask)
{
	void   *h;

	free(s->ask_name);
	free(s->ask_request);
	s->ask_name = ask->name;
	s->ask_type = ask->type;
	s->ask_rbl = ask->rbl;
	s->ask_request = ask->request;
	ask->name = ask->request = NULL;
	if (ask->kind == RESTRICT_ASK_DNS) {
		if (s->env->dns == NULL) {
			struct dns_answer a = { .status = DNS_RETRY, .error = "no resolver" };

			session_dns_store(s, &a);
			return;
		}
		h = dns_query(s->env->dns, s->ask_name, s->ask_type, session_dns_answer, s);
		session_wait(s, W_DNS, h);
		return;
	}
	if (s->env->policy == NULL) {
		restrict_answers_add_policy(s->answers, s->rq.ask_serial, s->ask_name,
					    s->ask_request, NULL);
		session_restrict_go(s);
		return;
	}
	h = policy_query(s->env->policy, ask->server, s->ask_request, session_policy_answer, s);
	session_wait(s, W_POLICY, h);
}

static void
session_restrict_answer(void *ctx, struct restrict_out *out, struct restrict_state *st)
{
	struct session *s = ctx;

	session_waited(s);
	if (out->verdict == RESTRICT_SLEEP) {
		/* "sleep N": a timer, not a thread; then evaluate again past it */
		loop_timer_start(s->loop, &s->sleep_t, session_restrict_wake, s, out->sleep * 1000);
		session_wait(s, W_SLEEP, s->sleep_t);
		return;
	}
	if (out->verdict == RESTRICT_ASK) {
		session_ask(s, &out->ask);
		return;
	}
	restrict_state_free(&s->rst);
	s->rst = *st;
	memset(st, 0, sizeof(*st));
	restrict_out_flush_log(out);
	s->restrict_next(s, out);
}

static void
session_restrict_go(struct session *s)
{
	session_wait(s, W_RESTRICT, restrict_start(s->ss->acl, s->env->lookups,
						  s->env->remote_lookups, s->loop, &s->rq, &s->rst,
						  session_restrict_answer, s));
}

void
session_restrict(struct session *s, enum restrict_stage stage, const char *arg,
		 session_restrict_next *next)
{
	struct restrict_req *q = &s->rq;
	struct txn *t = &s->txn;

	memset(q, 0, sizeof(*q));
	q->stage = stage;
	q->name = s->name;
	q->reverse_name = s->reverse_name;
	q->name_status = s->name_status;
	q->reverse_status = s->reverse_status;
	q->addr = s->addr;
	q->namaddr = s->namaddr;
	q->sa = s->sa.sa.sa_family == AF_INET || s->sa.sa.sa_family == AF_INET6 ? &s->sa.sa : NULL;
	q->helo = stage == RESTRICT_HELO ? arg : s->helo;
	q->sender = stage == RESTRICT_SENDER ? arg : t->sender;
	if (stage == RESTRICT_RCPT)
		q->recipient = arg;
	else if (stage == RESTRICT_DATA || stage == RESTRICT_EOD)
		q->recipient = t->rcpt_count == 1 && t->nrcpts > 0 ? t->rcpts[0].addr : NULL;
	q->queue_id = t->queue_id[0] ? t->queue_id : NULL;
	q->where = s->where;
	q->proto = session_proto(s);
	q->smtputf8 = t->smtputf8
		      || ((stage == RESTRICT_RCPT || stage == RESTRICT_SENDER) && s->arg_utf8);
	q->log_utf8 = s->ss->smtputf8;
	q->ill_pipelining = s->ill_pipelining;
	q->rcpt_count = t->rcpt_count;
	q->client_port = s->client_port;
	q->server_addr = s->server_addr;
	q->server_port = s->server_port;
	q->instance = t->instance;
	q->stress = conf_str(s->ss->cf, P_stress);
	q->size = t->act_size > 0 ? t->act_size : t->msg_size;
	if (s->tls != NULL) {
		q->tls_protocol = s->tls->protocol;
		q->tls_cipher = s->tls->cipher;
		q->tls_keysize = s->tls->usebits;
	}
	if (s->answers == NULL)
		s->answers = restrict_answers_new();
	q->answers = s->answers;
	q->ask_serial = ++s->ask_serial;
	s->restrict_next = next;
	session_restrict_go(s);
}

static void
session_connect_checked(struct session *s, struct restrict_out *out)
{
	if (out->verdict == RESTRICT_REJECT) {
		/* the reject replaces the banner; every command but QUIT is refused */
		session_enter_state(s, S_CMD);
		s->access_denied = xstrdup(out->reply);
		session_reply_text(s, s->access_denied);
		s->error_count++;
		s->io->read(s->ioc, 1);
		session_deadline_start(s);
		session_resume(s);
		return;
	}
	session_banner(s);
}

void
session_restrict_connect(struct session *s)
{
	if (restrict_delay_reject(s->ss->acl) || restrict_stage_empty(s->ss->acl, RESTRICT_CLIENT)) {
		session_banner(s);
		return;
	}
	session_restrict(s, RESTRICT_CLIENT, NULL, session_connect_checked);
}

/* ---- the greeting ------------------------------------------------------- */

/* The milters' answer to the connect event decides the greeting (Postfix's smtpd_proto()). */
static void
session_banner_milter(struct session *s, const char *reply)
{
	reply = session_milter_check(s, reply);
	session_enter_state(s, S_CMD);
	if (reply != NULL && reply[0] == '5') {
		session_reply(s, RPL_MILTER_CONN_REJECT, s->ss->hostname);
		s->error_count++;
	} else if (reply != NULL && strncmp(reply, "421", 3) == 0) {
		session_reply(s, RPL_MILTER_CONN_TEMP, s->ss->hostname);
		return;
	} else {
		session_reply(s, RPL_BANNER, s->ss->banner);
	}
	s->io->read(s->ioc, 1);
	session_deadline_start(s);
	session_resume(s);
}

static void
session_banner(struct session *s)
{
	session_milter_init(s);
	session_milter_connect(s, session_banner_milter);
}

/* anvil's answer to the connect event (POSTFIX_REFERENCE.md §0 step 3). */
static void
session_anvil_connected(void *ctx, const struct anvil_reply *r)
{
	struct session *s = ctx;
	const struct smtp_service *ss = s->ss;

	session_waited(s);
	if (r->status == 0 && ss->conn_count_limit > 0 && r->count > ss->conn_count_limit) {
		session_limit_warning(s, "Connection concurrency", r->count);
	} else if (r->status == 0 && ss->conn_rate_limit > 0 && r->rate > ss->conn_rate_limit) {
		session_limit_warning(s, "Connection rate", r->rate);
	} else {
		session_restrict_connect(s);
		return;
	}
	session_reply(s, RPL_TOO_MANY_CONN, ss->hostname, s->addr);
	session_hangup(s);
}

/* Set up the anvil ident, unless anvil is off or the client is exempt. */
static void
session_anvil_init(struct session *s)
{
	char key[ANVIL_CLIENT_KEY_LEN];
	struct buf b = BUF_INIT;

	if (!s->ss->anvil_on
	    || addrlist_match(s->ss->exceptions, s->name, &s->sa.sa))
		return;
	if (anvil_client_key(key, sizeof(key), &s->sa.sa, s->ss->v4_prefix,
			     s->ss->v6_prefix) < 0)
		return;
	anvil_ident(&b, s->ss->anvil_service, key);
	s->ident = buf_steal(&b);
	if (strchr(key, '/') != NULL)
		s->range = xstrdup(key);
}

/* ---- TLS ------------------------------------------------------------------ */

static void session_greet(struct session *s);

/* The handshake failed, or could not start: Postfix loses the client. */
static void
session_tls_failed(struct session *s)
{
	if (s->cur != NULL) {
		/* STARTTLS: counted, not successful ("starttls=0/1") */
		s->stat_total[s->cur - session_cmds]++;
		s->cur = NULL;
	}
	session_log_end(s, "lost connection");
	session_close(s);
}

void
session_starttls(struct session *s)
{
	void   *ssl;

	if (s->closing)
		return;
	if (s->out_head != NULL) {
		/* the 220 waits for the tarpit: the handshake comes after it */
		s->tls_start = 1;
		return;
	}
	s->tls_start = 0;
	ssl = tls_server_ssl_new(s->ss->tls_srv);
	if (ssl == NULL) {
		tls_log_errors();
		session_tls_failed(s);
		return;
	}
	if (s->io->starttls(s->ioc, ssl, s->ss->tls.handshake_timeout, s->namaddr) < 0) {
		tls_ssl_free(ssl);
		tls_log_errors();
		session_tls_failed(s);
		return;
	}
	session_wait(s, W_TLS, s);
}

/* TLS is on: the STARTTLS command is complete, or wrapper mode greets. */
static void
session_tls_ready(struct session *s)
{
	if (s->cur != NULL) {
		session_command_done(s, CMD_OK);
		return;
	}
	session_greet(s);
}

/* anvil counted the new TLS session (Postfix enforces the limit here, after the fact). */
static void
session_tls_counted(void *ctx, const struct anvil_reply *r)
{
	struct session *s = ctx;

	session_waited(s);
	if (r->status == 0 && r->rate > s->ss->newtls_rate_limit) {
		msg_warn("New TLS session rate limit exceeded: %d from %s for service %s", r->rate,
			 s->namaddr, s->ss->service_name);
		if (s->cur != NULL) {
			/* Postfix ends the session inside STARTTLS: "starttls=0/1" */
			s->stat_total[s->cur - session_cmds]++;
			s->cur = NULL;
		}
		session_reply(s, RPL_TLS_RATE_HANGUP, s->ss->hostname, s->namaddr);
		session_hangup(s);
		return;
	}
	session_tls_ready(s);
}

void
session_on_tls(struct session *s, const struct tls_info *info)
{
	struct buf b = BUF_INIT;

	if (s->wait != W_TLS || s->closing)
		return;
	session_waited(s);
	if (info == NULL) {
		session_tls_failed(s);
		return;
	}
	s->tls = xmalloc(sizeof(*s->tls));
	*s->tls = *info;
	if (s->ss->tls.loglevel >= 1) {
		tls_format_summary(&b, s->tls, s->namaddr);
		msg_info("%s", buf_str(&b));
		buf_free(&b);
	}
	if (s->ss->newtls_rate_limit > 0 && s->ident != NULL && !info->reused) {
		session_wait(s, W_TLS_RATE, anvil_newtls(s->env->anvil, s->loop, s->ident,
							 session_now(s), session_tls_counted, s));
		return;
	}
	session_tls_ready(s);
}

/* Wrapper mode: anvil's new TLS session rate before the handshake. */
static void
session_wrapper_rate(void *ctx, const struct anvil_reply *r)
{
	struct session *s = ctx;

	session_waited(s);
	if (r->status == 0 && r->rate > s->ss->newtls_rate_limit) {
		msg_warn("Refusing TLS service request from %s for service %s", s->namaddr,
			 s->ss->service_name);
		session_close(s);
		return;
	}
	session_starttls(s);
}

void
session_set_local_error(struct session *s)
{
	s->local_error = 1;
}

void
session_start(struct session *s, const char *name, const char *reverse, int name_status,
	      int reverse_status)
{
	s->name = xstrdup(name);
	s->reverse_name = xstrdup(reverse);
	s->name_status = name_status;
	s->reverse_status = reverse_status;
	s->namaddr = xasprintf("%s[%s]", name, s->addr);
	msg_info("connect from %s", s->namaddr);
	if (s->local_error) {
		session_reply(s, RPL_LOCAL_ERROR, s->ss->hostname);
		session_hangup(s);
		return;
	}
	s->bare_lf_reject = s->ss->bare_lf_reject
		&& !addrlist_match(s->ss->bare_lf_exclusions, s->name, &s->sa.sa);
	session_anvil_init(s);
	if (s->ss->tls.wrappermode) {
		/* smtpd_tls_wrappermode: TLS from the first byte, then the greeting */
		if (s->ss->tls_srv == NULL || s->io->starttls == NULL) {
			msg_warn("Wrapper-mode request dropped from %s for service %s. TLS context "
				 "initialization failed. For details see earlier warnings in your "
				 "logs.", s->namaddr, s->ss->service_name);
			session_close(s);
			return;
		}
		if (s->ss->newtls_rate_limit > 0 && s->ident != NULL) {
			session_wait(s, W_TLS_RATE,
				     anvil_newtls_report(s->env->anvil, s->loop, s->ident,
							 session_now(s), session_wrapper_rate, s));
			return;
		}
		session_starttls(s);
		return;
	}
	session_greet(s);
}

/* The early-talker check, anvil's connect, the client restrictions, the banner. */
static void
session_greet(struct session *s)
{
	/* Talk before the greeting: always logged, refused with the parameter on. */
	if (session_check_pipelining(s, "CONNECT"))
		return;
	if (s->ident == NULL) {
		session_restrict_connect(s);
		return;
	}
	s->anvil_connected = 1;
	session_wait(s, W_ANVIL, anvil_connect(s->env->anvil, s->loop, s->ident, session_now(s),
					       session_anvil_connected, s));
}

struct session *
session_new(const struct session_env *env, const struct smtp_service *ss,
	    const struct session_io *io, void *io_ctx, const struct sockaddr *sa, socklen_t salen)
{
	struct session *s = xcalloc(1, sizeof(*s));

	s->env = env;
	s->ss = ss;
	s->io = io;
	s->ioc = io_ctx;
	s->loop = env->loop;
	s->where = "CONNECT";
	s->state = S_CONNECT;
	txn_reset(&s->txn);
	memcpy(&s->sa, sa, salen < sizeof(s->sa) ? salen : sizeof(s->sa));
	if (sa->sa_family == AF_INET6
	    && IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)sa)->sin6_addr))
		inet_ntop(AF_INET, &((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr[12], s->addr,
			  sizeof(s->addr));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, s->addr,
			  sizeof(s->addr));
	else if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, s->addr,
			  sizeof(s->addr));
	else
		snprintf(s->addr, sizeof(s->addr), "unknown");
	session_format_port(sa, s->client_port, sizeof(s->client_port));
	lr_init(&s->lr, (size_t)ss->line_limit);
	/* With the per-request deadline, the deadline timer does the read timeout's job. */
	io->timeouts(io_ctx, ss->deadline ? 0 : ss->timeout, ss->timeout);
	io->read(io_ctx, 0);
	return s;
}
