/*
 * session_milter: the SMTP session's side of smtpd_milters, as Postfix 3.7's
 * smtpd.c and cleanup_milter.c hold it: each event goes to the milter
 * client (milter/milter_client.h) and the command continues with the answer
 * (session_milter_next), which Postfix's check_milter_reply() logs; the
 * macros are smtpd_milter.c's smtpd_milter_eval(); at the end of a message
 * the stored copy goes to the milters (which read it in pieces off the loop,
 * on the readers pool), and is replaced by the copy they changed before the
 * delivery: its headers from the milters' view, its body copied in pieces
 * (the readers pool reads, the spool's writers write) from the stored copy
 * or from a milter's replacement, so no message is held whole in memory.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "conf/conf.h"
#include "deliver/cleanup.h"
#include "deliver/spool.h"
#include "log/log.h"
#include "milter/milter_client.h"
#include "policy/maps.h"
#include "policy/recipient.h"
#include "smtp/service.h"
#include "smtp/session_impl.h"
#include "util/workpool.h"
#include "util/xalloc.h"

/* ---- macros (Postfix's smtpd_milter_eval()) ---- */

/* The domain of an address, or "" (a local part alone). */
static const char *
mac_domain(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at ? at + 1 : "";
}

/* {rcpt_mailer}: how mxgate delivers the recipient (Postfix: its transport). */
static const char *
mac_rcpt_mailer(const struct session *s, const char *addr)
{
	for (size_t i = 0; i < s->txn.nrcpts; i++) {
		const struct txn_rcpt *r = &s->txn.rcpts[i];

		if (strcasecmp(r->addr, addr) != 0 || r->ntargets == 0)
			continue;
		if (r->targets[0].local)
			return "local";
		if (r->targets[0].transport != NULL) {
			static const char *const kinds[] = { "lmtp", "discard" };

			for (size_t k = 0; k < 2; k++)
				if (strncmp(r->targets[0].transport, kinds[k], strlen(kinds[k])) == 0)
					return kinds[k];
		}
		return "virtual";
	}
	return "virtual";
}

static const char *
session_milter_macro(void *ctx, const char *name)
{
	struct session *s = ctx;
	const struct txn *t = &s->txn;
	char *b = s->milter_buf;
	size_t bl = sizeof(s->milter_buf);
	const char *sender = t->sender;
	const char *rcpt = NULL;

	/* During MAIL and RCPT, the address of the command (Postfix's PUSH_STRING). */
	if (s->cur != NULL && strcmp(s->cur->name, "MAIL") == 0 && sender == NULL)
		sender = s->path.addr;
	if (s->cur != NULL && strcmp(s->cur->name, "RCPT") == 0)
		rcpt = s->path.addr;

	if (strcmp(name, "{j}") == 0)
		return s->ss->hostname;
	if (strcmp(name, "{_}") == 0) {
		snprintf(b, bl, "%s [%s]%s", s->reverse_name, s->addr,
			 strcasecmp(s->name, s->reverse_name) != 0 ? " (may be forged)" : "");
		return b;
	}
	if (strcmp(name, "{client_addr}") == 0) {
		if (s->sa.sa.sa_family == AF_INET6 && strchr(s->addr, ':') != NULL) {
			snprintf(b, bl, "IPv6:%s", s->addr);
			return b;
		}
		return s->addr;
	}
	if (strcmp(name, "{client_port}") == 0)
		return s->client_port[0] ? s->client_port : "0";
	if (strcmp(name, "{client_name}") == 0)
		return s->name;
	if (strcmp(name, "{client_ptr}") == 0)
		return s->reverse_name;
	if (strcmp(name, "{client_resolve}") == 0)
		return s->name_status == RESTRICT_PEER_OK ? "OK"
			: s->name_status == RESTRICT_PEER_FORGED ? "FORGED"
			: s->name_status == RESTRICT_PEER_TEMP ? "TEMP" : "FAIL";
	if (strcmp(name, "{daemon_addr}") == 0)
		return s->server_addr[0] ? s->server_addr : NULL;
	if (strcmp(name, "{daemon_port}") == 0)
		return s->server_port[0] ? s->server_port : NULL;
	if (strcmp(name, "{tls_version}") == 0)
		return s->tls ? s->tls->protocol : NULL;
	if (strcmp(name, "{cipher}") == 0)
		return s->tls ? s->tls->cipher : NULL;
	if (strcmp(name, "{cipher_bits}") == 0) {
		if (s->tls == NULL)
			return NULL;
		snprintf(b, bl, "%d", s->tls->usebits);
		return b;
	}
	if (strcmp(name, "{cert_subject}") == 0)
		return s->tls && s->tls->peer_trusted ? s->tls->peer_cn : NULL;
	if (strcmp(name, "{cert_issuer}") == 0)
		return s->tls && s->tls->peer_trusted ? s->tls->issuer_cn : NULL;
	if (strcmp(name, "{i}") == 0)
		return t->queue_id[0] ? t->queue_id : NULL;
	/* {auth_type} {auth_authen} {auth_author}: mxgate has no SASL: NULL */
	if (strcmp(name, "{mail_addr}") == 0) {
		if (sender == NULL)
			return NULL;
		free(s->milter_quoted);
		s->milter_quoted = txn_quote(sender);
		return s->milter_quoted;
	}
	/* the sender's domain is someone else's: Postfix resolves it to smtp:domain */
	if (strcmp(name, "{mail_host}") == 0)
		return sender ? mac_domain(sender) : NULL;
	if (strcmp(name, "{mail_mailer}") == 0)
		return sender ? "smtp" : NULL;
	if (strcmp(name, "{rcpt_addr}") == 0 || strcmp(name, "{rcpt_host}") == 0) {
		if (rcpt == NULL)
			return NULL;
		if (s->milter_rcpt_rej != NULL) {
			/*
			 * "554 5.7.1 <user@example.com>: Relay access denied": {rcpt_host}
			 * is the enhanced code, {rcpt_addr} the text after the address
			 * (Sendmail's error mailer; Postfix's two split_at() calls)
			 */
			const char *p = s->milter_rcpt_rej + (strlen(s->milter_rcpt_rej) > 4 ? 4 : 0);
			size_t n = strcspn(p, " ");

			if (strcmp(name, "{rcpt_host}") == 0) {
				snprintf(b, bl, "%.*s", (int)n, p);
				return b;
			}
			if (p[n] == '\0')
				return NULL;
			p += n + 1;
			n = strcspn(p, " ");
			snprintf(b, bl, "%s", p[n] ? p + n + 1 : "");
			return b;
		}
		if (strcmp(name, "{rcpt_host}") == 0)
			return mac_domain(rcpt);
		free(s->milter_quoted);
		s->milter_quoted = txn_quote(rcpt);
		return s->milter_quoted;
	}
	if (strcmp(name, "{rcpt_mailer}") == 0) {
		if (rcpt == NULL)
			return NULL;
		return s->milter_rcpt_rej != NULL ? "error" : mac_rcpt_mailer(s, rcpt);
	}
	return NULL;
}

/* ---- the events ---- */

/*
 * milter_header_checks on a header that a milter adds or changes, with the
 * message's cleanup (deliver/cleanup.h: cleanup_milter_header(), the same
 * matcher and actions as header_checks); its log lines at once.
 */
static void
hbc_log(void *arg, const char *line)
{
	struct session *s = arg;

	log_as("cleanup", line[0] == 'W' ? LOG_LVL_WARNING : LOG_LVL_INFO, "%s: %s",
	       s->txn.queue_id[0] ? s->txn.queue_id : "NOQUEUE", line + (line[0] ? 2 : 0));
}

static int
session_milter_hdr_check(void *ctx, const char *header, char **replace_r, const char **reply_r)
{
	struct session *s = ctx;
	int r;

	if (!s->txn.cl_on || cleanup_result(&s->txn.cl) != CLEANUP_OK)
		return 0;
	r = cleanup_milter_header(&s->txn.cl, header, replace_r);
	txn_cleanup_logs(&s->txn, hbc_log, s);
	switch (cleanup_result(&s->txn.cl)) {
	case CLEANUP_OK:
		break;
	case CLEANUP_DISCARD:
		s->milter_hbc = 1;
		*reply_r = "D";
		break;
	default:
		s->milter_hbc = 1;
		*reply_r = "550 5.7.1 message content rejected";
		break;
	}
	return r;
}

/* A body replacement's spool: the session's kind (the daemon's: a file). */
static struct spool *
session_milter_spool(void *ctx)
{
	return session_new_spool(ctx);
}

static struct workpool *
session_milter_pool(const struct session *s)
{
	return s->env->readers ? s->env->readers : s->env->lookups;
}

static void
session_milter_new(struct session *s, const struct milter_conf *mc)
{
	struct milter_io io = {
		.loop = s->loop, .pool = session_milter_pool(s),
		.new_spool = session_milter_spool, .ctx = s,
	};

	s->ms = milters_new(mc, s->env->milter_eb, s->env->milter_dns, session_milter_macro, s);
	milters_set_io(s->ms, &io);
	if (!maplist_empty(s->ss->milter_checks))
		milters_set_header_check(s->ms, session_milter_hdr_check, s);
}

void
session_milter_init(struct session *s)
{
	if (s->ss->milters == NULL || s->env->milter_eb == NULL || s->ss->milter_maps != NULL)
		return;
	session_milter_new(s, s->ss->milters);
}

/*
 * smtpd_milter_maps: the client address is looked up on the lookups pool
 * before the connect event (Postfix's setup_milters(): maps_find() of the
 * address, flags 0: the address itself, the network for cidr: and other
 * pattern tables).  The answer's milter_conf is built for the session
 * (milter_conf_new() is a parse, no I/O) and freed with it.
 */
struct milter_maps_job {
	struct session *s;
	struct smtp_milter_maps *maps;	/* a reference */
	char	addr[64];
	char   *value;
	enum map_status st;
	int	abandoned;
};

static void
milter_maps_work(void *arg)
{
	struct milter_maps_job *j = arg;

	j->st = maplist_lookup(j->maps->l, j->addr, &j->value, NULL);
}

static void session_milter_connect_now(struct session *s);

static void
milter_maps_done(void *arg)
{
	struct milter_maps_job *j = arg;
	struct session *s = j->s;
	const struct milter_conf *mc;

	if (j->abandoned)
		goto out;	/* s is gone: not a byte of it may be read */
	mc = s->ss->milters;
	session_waited(s);
	s->milter_abandon = NULL;
	if (j->st == MAP_FOUND) {
		char *e = NULL;

		if (strcasecmp(j->value, "DISABLE") == 0) {
			mc = NULL;
		} else if ((s->milter_own = milter_conf_new(j->value, s->ss->view, &e)) == NULL) {
			/* Postfix: milter_create() of a bad list is fatal for the smtpd process */
			msg_warn("smtpd_milter_maps: client %s: %s; the session is refused",
				 s->addr, e);
			free(e);
			s->milter_next = NULL;
			session_reply(s, RPL_LOCAL_ERROR, s->ss->hostname);
			session_hangup(s);
			goto out;
		} else {
			mc = milter_conf_count(s->milter_own) > 0 ? s->milter_own : NULL;
		}
	} else if (j->st != MAP_NOTFOUND) {
		/*
		 * Postfix 3.7's setup_milters(): a failed lookup (maps_find()
		 * returns nothing) falls back to smtpd_milters; map_lookup()
		 * logged the table's warning.
		 */
		msg_warn("smtpd_milter_maps: lookup of %s failed; using smtpd_milters", s->addr);
	}
	if (mc != NULL && s->env->milter_eb != NULL)
		session_milter_new(s, mc);
	session_milter_connect_now(s);
out:
	smtp_milter_maps_unref(&j->maps);
	free(j->value);
	free(j);
}

static void
session_milter_answer(void *ctx, const char *reply)
{
	struct session *s = ctx;
	session_milter_next *next = s->milter_next;

	session_waited(s);
	s->milter_next = NULL;
	free(s->milter_rcpt_rej);
	s->milter_rcpt_rej = NULL;
	next(s, reply);
}

/* The event was started: wait for its answer (never inside the call). */
static void
session_milter_wait(struct session *s, session_milter_next *next)
{
	s->milter_next = next;
	session_wait(s, W_MILTER, s->ms);
}

/* Postfix skips the milters once one said DISCARD (MILTER_SKIP_FLAGS). */
static int
session_milter_skip(const struct session *s)
{
	return s->ms == NULL || s->milter_discard;
}

static void
session_milter_connect_now(struct session *s)
{
	session_milter_next *next = s->milter_next;
	int family = s->sa.sa.sa_family;

	s->milter_next = NULL;
	if (s->ms == NULL) {
		next(s, NULL);
		return;
	}
	milters_connect(s->ms, s->name, s->addr, s->client_port[0] ? s->client_port : "0",
			family, session_milter_answer, s);
	session_milter_wait(s, next);
}

void
session_milter_connect(struct session *s, session_milter_next *next)
{
	struct milter_maps_job *j;

	s->milter_next = next;
	if (s->ss->milter_maps == NULL) {
		session_milter_connect_now(s);
		return;
	}
	j = xcalloc(1, sizeof(*j));
	j->s = s;
	j->maps = smtp_milter_maps_ref(s->ss->milter_maps);
	snprintf(j->addr, sizeof(j->addr), "%s", s->addr);
	s->milter_abandon = &j->abandoned;
	s->wait = W_MILTER_READ;
	s->wait_handle = j;
	workpool_submit(s->env->lookups, s->loop, milter_maps_work, milter_maps_done, j);
}

void
session_milter_helo(struct session *s, const char *helo, session_milter_next *next)
{
	if (session_milter_skip(s)) {
		next(s, NULL);
		return;
	}
	milters_helo(s->ms, helo, session_milter_answer, s);
	session_milter_wait(s, next);
}

void
session_milter_mail(struct session *s, session_milter_next *next)
{
	const char *argv[64];
	size_t argc = 0;
	char *addr, *params;

	if (session_milter_skip(s)) {
		next(s, NULL);
		return;
	}
	s->milter_need_abort = 1;
	addr = xasprintf("<%s>", s->path.addr);
	argv[argc++] = addr;
	params = xstrdup(s->path.params ? s->path.params : "");
	for (char *sv, *p = strtok_r(params, " ", &sv); p != NULL && argc < 64;
	     p = strtok_r(NULL, " ", &sv))
		argv[argc++] = p;
	milters_mail(s->ms, argv, argc, session_milter_answer, s);
	free(addr);
	free(params);
	session_milter_wait(s, next);
}

void
session_milter_rcpt(struct session *s, const char *reject, session_milter_next *next)
{
	const char *argv[64];
	size_t argc = 0;
	char *addr, *params;

	if (session_milter_skip(s)) {
		next(s, NULL);
		return;
	}
	free(s->milter_rcpt_rej);
	s->milter_rcpt_rej = reject ? xstrdup(reject) : NULL;
	addr = xasprintf("<%s>", s->path.addr);
	argv[argc++] = addr;
	params = xstrdup(s->path.params ? s->path.params : "");
	for (char *sv, *p = strtok_r(params, " ", &sv); p != NULL && argc < 64;
	     p = strtok_r(NULL, " ", &sv))
		argv[argc++] = p;
	milters_rcpt(s->ms, argv, argc, reject != NULL, session_milter_answer, s);
	free(addr);
	free(params);
	session_milter_wait(s, next);
}

void
session_milter_data(struct session *s, session_milter_next *next)
{
	if (session_milter_skip(s)) {
		next(s, NULL);
		return;
	}
	milters_data(s->ms, session_milter_answer, s);
	session_milter_wait(s, next);
}

void
session_milter_unknown(struct session *s, const char *verb, session_milter_next *next)
{
	if (s->ms == NULL) {
		next(s, NULL);
		return;
	}
	milters_unknown(s->ms, verb, session_milter_answer, s);
	session_milter_wait(s, next);
}

const char *
session_milter_other(struct session *s)
{
	const char *r;

	if (s->ms == NULL || (r = milters_other(s->ms)) == NULL)
		return NULL;
	return r[0] == '4' || r[0] == '5' ? r : NULL;
}

const char *
session_milter_check(struct session *s, const char *reply)
{
	struct buf b = BUF_INIT;
	const char *action, *text = NULL;
	const char *rcpt = s->cur != NULL && strcmp(s->cur->name, "RCPT") == 0 ? s->path.addr
			   : s->txn.nrcpts > 0 ? s->txn.rcpts[0].addr : NULL;
	const char *sender = s->txn.sender;
	struct restrict_req q = {
		.queue_id = s->txn.queue_id, .where = s->where, .namaddr = s->namaddr,
		.proto = session_proto(s), .helo = s->helo, .log_utf8 = s->ss->smtputf8,
	};
	char *line1;

	if (reply == NULL)
		return NULL;
	if (s->cur != NULL && strcmp(s->cur->name, "MAIL") == 0 && sender == NULL)
		sender = s->path.addr;
	if (s->cur != NULL && (strcmp(s->cur->name, "HELO") == 0
			       || strcmp(s->cur->name, "EHLO") == 0) && s->arg != NULL)
		q.helo = s->arg;
	q.sender = sender;
	q.recipient = rcpt;
	switch (reply[0]) {
	case 'H':
		s->milter_hold = 1;
		action = "milter-hold";
		text = "milter triggers HOLD action";
		reply = NULL;
		break;
	case 'D':
		s->milter_discard = 1;
		action = "milter-discard";
		text = "milter triggers DISCARD action";
		reply = NULL;
		break;
	case 'S':
		action = "milter-reject";
		free(s->milter_reply);
		s->milter_reply = reply_string(RPL_MILTER_CLOSING);
		reply = s->milter_reply;
		break;
	default:
		action = "milter-reject";
		break;
	}
	/* a multi-line reply is logged whole, its CR LF as "??" (Postfix's printable()) */
	line1 = xstrdup(text ? text : reply);
	for (char *p = line1; *p; p++)
		if (*p == '\r' || *p == '\n')
			*p = '?';
	restrict_format_log(&b, &q, action, line1);
	msg_info("%s", buf_str(&b));
	buf_free(&b);
	free(line1);
	return reply;
}

void
session_milter_helo_reset(struct session *s)
{
	if (s->ms != NULL)
		milters_abort(s->ms);
}

void
session_milter_abort(struct session *s)
{
	if (s->ms != NULL && s->milter_need_abort)
		milters_abort(s->ms);
	s->milter_need_abort = 0;
	s->milter_discard = 0;
	s->milter_hold = 0;
}

/* The event in flight (W_MILTER) or the read (W_MILTER_READ) is dropped. */
void
session_milter_cancel(struct session *s)
{
	if (s->wait == W_MILTER && s->ms != NULL)
		milters_cancel(s->ms);
	free(s->milter_rcpt_rej);
	s->milter_rcpt_rej = NULL;
	if (s->wait == W_MILTER_READ && s->milter_abandon != NULL) {
		*s->milter_abandon = 1;
		s->milter_abandon = NULL;
	}
}

void
session_milter_end(struct session *s)
{
	if (s->ms == NULL) {
		milter_conf_free(&s->milter_own);
		return;
	}
	/* Postfix's end of session: helo_reset(), mail_reset(), then the disconnect event */
	if (s->helo != NULL)
		milters_abort(s->ms);
	if (s->milter_need_abort)
		milters_abort(s->ms);
	milters_disconnect(s->ms);
	milters_free(&s->ms);
	spool_unref(&s->milter_store);
	spool_unref(&s->milter_copy_src);
	free(s->milter_quoted);
	s->milter_quoted = NULL;
	free(s->milter_reply);
	s->milter_reply = NULL;
	free(s->milter_received);
	s->milter_received = NULL;
	milter_conf_free(&s->milter_own);
}

/* ---- the end of the message ---- */

/* The added recipients resolved on the lookups pool. */
struct milter_rcpts {
	struct session *s;
	struct recipient_policy *policy;	/* a reference */
	char  **addrs;
	const char **milters;		/* which milter added each (its name) */
	struct rcpt_result *res;
	size_t	n;
	int	abandoned;
};

/* cleanup_milter.c's log line: "<qid>: milter-reject: END-OF-MESSAGE from ..." */
static void
eom_log(struct session *s, const char *action, const char *text)
{
	struct buf b = BUF_INIT;
	struct restrict_req q = {
		.queue_id = s->txn.queue_id, .where = "END-OF-MESSAGE", .namaddr = s->namaddr,
		.sender = s->txn.sender,
		.recipient = s->txn.nrcpts > 0 ? s->txn.rcpts[0].addr : NULL,
		.proto = session_proto(s), .helo = s->helo, .log_utf8 = s->ss->smtputf8,
	};
	char *line1 = xstrdup(text);

	for (char *p = line1; *p; p++)
		if (*p == '\r' || *p == '\n')
			*p = '?';
	restrict_format_log(&b, &q, action, line1);
	log_as("cleanup", LOG_LVL_INFO, "%s", buf_str(&b));
	buf_free(&b);
	free(line1);
}

/* The message ends without delivery: the reply (text), then the transaction is over. */
static void
eom_fail_text(struct session *s, const char *text)
{
	session_reply_text(s, text);
	session_transaction_reset(s);
	session_command_done(s, CMD_FAIL);
}

static void
eom_fail(struct session *s, enum reply_id id)
{
	session_reply(s, id);
	session_transaction_reset(s);
	session_command_done(s, CMD_FAIL);
}

/*
 * A milter's address ("<a@b>", "a@b", "<\"john smith\"@b>") in internal
 * form ("john smith@b"), as Postfix's cleanup_milter.c turns it with
 * tok822_internalize() before it changes the sender or adds or deletes a
 * recipient: brackets, quotes and escapes go.  One that does not parse as
 * an address loses its brackets only.
 */
static char *
edit_addr(const char *a)
{
	struct smtp_path p = { 0 };
	size_t n = strlen(a);
	char *out;

	if (smtp_parse_address(a, &p) == PATH_OK) {
		out = xstrdup(p.addr);
		smtp_path_free(&p);
		return out;
	}
	smtp_path_free(&p);
	if (n >= 2 && a[0] == '<' && a[n - 1] == '>')
		return xasprintf("%.*s", (int)(n - 2), a + 1);
	return xstrdup(a);
}

static void
eom_committed(void *arg, enum spool_status st)
{
	struct session *s = arg;

	session_waited(s);
	if (st != SPOOL_OK) {
		eom_fail(s, st == SPOOL_NO_SPACE ? RPL_NO_STORAGE : RPL_WRITE_ERROR);
		return;
	}
	session_deliver(s);
}

/*
 * The changed copy being written: a piece of the body read on the readers
 * pool (one at a time), then appended to the new spool on the loop.
 */
struct milter_copy {
	struct spool *src;		/* a reference */
	size_t	off, len, n;
	char   *data;
	int	failed;
	int	abandoned;
	struct session *s;
};

static void
milter_copy_work(void *arg)
{
	struct milter_copy *c = arg;

	while (c->n < c->len) {
		ssize_t n = spool_pread(c->src, c->data + c->n, c->len - c->n, c->off + c->n);

		if (n <= 0) {
			c->failed = 1;
			break;
		}
		c->n += (size_t)n;
	}
}

static void
milter_copy_free(struct milter_copy *c)
{
	spool_unref(&c->src);
	free(c->data);
	free(c);
}

static void eom_copy_next(struct session *s);

static void
eom_copy_fail(struct session *s, enum spool_status st)
{
	spool_unref(&s->milter_store);
	spool_unref(&s->milter_copy_src);
	eom_fail(s, st == SPOOL_NO_SPACE ? RPL_NO_STORAGE : RPL_WRITE_ERROR);
}

static void
milter_copy_done(void *arg)
{
	struct milter_copy *c = arg;
	struct session *s = c->s;

	if (c->abandoned) {
		milter_copy_free(c);
		return;
	}
	session_waited(s);
	s->milter_abandon = NULL;
	if (c->failed) {
		msg_warn("%s: cannot read the message back for the milters' copy", s->txn.queue_id);
		milter_copy_free(c);
		eom_copy_fail(s, SPOOL_ERROR);
		return;
	}
	(void)spool_write(s->milter_store, c->data, c->n);	/* sticky; checked next */
	s->milter_copy_off += c->n;
	s->milter_copy_left -= c->n;
	milter_copy_free(c);
	eom_copy_next(s);
}

static void
eom_copy_writable(void *arg)
{
	struct session *s = arg;

	session_waited(s);
	eom_copy_next(s);
}

/* The next piece of the body, or the commit once it is all in. */
static void
eom_copy_next(struct session *s)
{
	struct spool *sp = s->milter_store;
	enum spool_status st = spool_status(sp);
	struct milter_copy *c;
	size_t want;

	if (st != SPOOL_OK) {
		eom_copy_fail(s, st);
		return;
	}
	if (s->milter_copy_left == 0) {
		spool_unref(&s->milter_copy_src);
		spool_unref(&s->txn.body);
		s->txn.body = sp;
		s->milter_store = NULL;
		s->wait = W_COMMIT;
		s->wait_handle = sp;
		spool_commit(sp, s->loop, eom_committed, s);
		return;
	}
	if (spool_busy(sp)) {
		s->wait = W_SPOOL;
		s->wait_handle = sp;
		spool_on_writable(sp, s->loop, eom_copy_writable, s);
		return;
	}
	want = s->milter_copy_left < MILTER_PIECE ? s->milter_copy_left : MILTER_PIECE;
	c = xcalloc(1, sizeof(*c));
	c->s = s;
	c->src = spool_ref(s->milter_copy_src);
	c->off = s->milter_copy_off;
	c->len = want;
	c->data = xmalloc(want);
	s->milter_abandon = &c->abandoned;
	s->wait = W_MILTER_READ;
	s->wait_handle = c;
	workpool_submit(session_milter_pool(s), s->loop, milter_copy_work, milter_copy_done, c);
}

/*
 * The headers of milters_view(), with our Received: where it was, then the
 * body of milters_body(), into a new spool (the daemon's: a file, written
 * by the writers pool, never on the loop; back-pressure as for DATA).
 */
static void
eom_store_view(struct session *s)
{
	const struct milter_header *h;
	size_t nh, blen, boff, hidden_len;
	const char *hidden;
	struct spool *body;
	struct spool *sp = session_new_spool(s);
	struct buf b = BUF_INIT;

	milters_view(s->ms, &h, &nh);
	body = milters_body(s->ms, &boff, &blen);
	hidden = milters_hidden(s->ms, &hidden_len);
	/*
	 * A header inserted at index 0 goes above our Received: header, as in
	 * Postfix (index 1 is below it); the view has both at its top.  Those
	 * still at the top of the view, in the order they were inserted (each
	 * above the one before), move above Received:.
	 */
	{
		size_t n, top = 0;
		const struct milter_edit *e = milters_edits(s->ms, &n);

		for (size_t i = n; i-- > 0 && top < nh;) {
			if (e[i].type != MILTER_EDIT_INSERT_HEADER || e[i].index != 0)
				continue;
			if (strncmp(h[top].raw, e[i].name, h[top].name_len) != 0
			    || strlen(e[i].name) != h[top].name_len
			    || strcmp(h[top].raw + h[top].value_off, e[i].text) != 0)
				break;
			top++;
		}
		for (size_t i = 0; i < top; i++) {
			buf_puts(&b, h[i].raw);
			buf_putc(&b, '\n');
		}
		h += top;
		nh -= top;
	}
	buf_append(&b, hidden, hidden_len);
	for (size_t i = 0; i < nh; i++) {
		buf_puts(&b, h[i].raw);
		buf_putc(&b, '\n');
	}
	buf_putc(&b, '\n');
	(void)spool_write(sp, b.data, b.len);	/* sticky; eom_copy_next() checks */
	s->milter_size = b.len + blen;
	buf_free(&b);
	spool_unref(&s->milter_store);
	spool_unref(&s->milter_copy_src);
	s->milter_store = sp;
	s->milter_copy_src = spool_ref(body);
	s->milter_copy_off = boff;
	s->milter_copy_left = blen;
	eom_copy_next(s);
}

/* After the envelope changes: store the changed copy (if the content changed) and deliver. */
static void
eom_content(struct session *s)
{
	size_t n;
	const struct milter_edit *e = milters_edits(s->ms, &n);
	int content = 0;

	for (size_t i = 0; i < n; i++)
		if (e[i].type <= MILTER_EDIT_REPLACE_BODY)
			content = 1;
	if (s->txn.nrcpts == 0) {
		/* every recipient deleted: nothing to store, as for a discard */
		log_as("cleanup", LOG_LVL_INFO, "%s: milter deleted every recipient; message "
		       "not stored", s->txn.queue_id);
		session_deliver(s);
		return;
	}
	if (!content) {
		session_deliver(s);
		return;
	}
	eom_store_view(s);
}

static void
milter_rcpts_free(struct milter_rcpts *j)
{
	for (size_t i = 0; i < j->n; i++) {
		free(j->addrs[i]);
		if (j->res != NULL)
			rcpt_result_free(&j->res[i]);
	}
	free(j->addrs);
	free(j->milters);
	free(j->res);
	recipient_policy_free(&j->policy);
	free(j);
}

static void
milter_rcpts_work(void *arg)
{
	struct milter_rcpts *j = arg;

	j->res = xcalloc(j->n, sizeof(*j->res));
	for (size_t i = 0; i < j->n; i++)
		recipient_resolve(j->policy, j->addrs[i], &j->res[i]);
}

/*
 * An added recipient must be one mxgate delivers to itself, into a mailbox
 * it can write now (a virtual mailbox as the server's user, an LMTP or
 * discard transport); anything else fails the message with 451 4.3.0 and a
 * warning: mxgate does not relay, and never drops a recipient silently.
 */
static void
milter_rcpts_done(void *arg)
{
	struct milter_rcpts *j = arg;
	struct session *s = j->s;

	if (j->abandoned) {
		milter_rcpts_free(j);
		return;
	}
	session_waited(s);
	s->milter_abandon = NULL;
	for (size_t i = 0; i < j->n; i++) {
		const struct rcpt_result *r = &j->res[i];
		int ok = r->verdict == RCPT_OK_VIRTUAL;

		for (size_t k = 0; ok && k < r->ntargets; k++)
			if (r->targets[k].kind != RCPT_OK_VIRTUAL
			    || (r->targets[k].transport == NULL && r->targets[k].uid != s->env->run_uid
				&& !s->env->helper))
				ok = 0;
		if (!ok) {
			msg_warn("%s: milter %s: add_rcpt <%s>: %s; the message is deferred",
				 s->txn.queue_id, j->milters[i], j->addrs[i],
				 r->reply ? r->reply : "not a recipient that mxgate can deliver");
			milter_rcpts_free(j);
			eom_fail(s, RPL_MILTER_ADD_RCPT);
			return;
		}
	}
	for (size_t i = 0; i < j->n; i++) {
		const struct rcpt_result *r = &j->res[i];
		struct txn_rcpt *tr;

		if (txn_has_rcpt(&s->txn, j->addrs[i]))
			continue;
		tr = txn_add_rcpt(&s->txn, j->addrs[i]);
		for (size_t k = 0; k < r->ntargets; k++) {
			txn_rcpt_target(tr, r->targets[k].address, r->targets[k].maildir,
					r->targets[k].uid, r->targets[k].gid, r->targets[k].via,
					r->targets[k].nvia);
			txn_target_transport(tr, r->targets[k].transport);
		}
		if (r->ntargets == 0)
			txn_rcpt_target(tr, j->addrs[i], r->maildir, r->uid, r->gid, NULL, 0);
	}
	milter_rcpts_free(j);
	eom_content(s);
}

/* The answer to the message: reply, discard, hold, or apply the changes. */
static void
eom_answer(struct session *s, const char *reply)
{
	size_t n;
	const struct milter_edit *e;
	struct milter_rcpts *j;

	if (s->milter_hbc) {
		/*
		 * milter_header_checks rejected or discarded: cleanup logged it
		 * (milter-header-reject ...), the milter's reply is not logged
		 * again (Postfix's milter_hbc_reply); the reply is cleanup's.
		 */
		enum cleanup_result cr = cleanup_result(&s->txn.cl);

		s->milter_hbc = 0;
		if (cr == CLEANUP_DISCARD) {
			s->milter_discard = 1;
			s->milter_size = 0;
			session_deliver(s);
		} else if (cr == CLEANUP_REJECT) {
			const char *why = cleanup_reason(&s->txn.cl);

			session_reply(s, RPL_CONTENT_REJECT, *why == '4' ? 451 : 550, why);
			session_transaction_reset(s);
			session_command_done(s, CMD_FAIL);
		} else {
			eom_fail(s, RPL_WRITE_ERROR);
		}
		return;
	}
	if (reply == NULL && s->txn.cl_on && s->txn.cl.milter_hold && !s->milter_hold) {
		/* milter_header_checks' HOLD (logged as milter-header-hold) */
		eom_fail(s, RPL_MILTER_HOLD);
		return;
	}
	if (reply == NULL && s->milter_hold)
		reply = "H";
	if (reply != NULL) {
		switch (reply[0]) {
		case 'D':
			eom_log(s, "milter-discard", "milter triggers DISCARD action");
			s->milter_discard = 1;
			s->milter_size = 0;
			session_deliver(s);	/* it answers 250 and stores nothing */
			return;
		case 'H':
			eom_log(s, "milter-hold", "milter triggers HOLD action");
			eom_fail(s, RPL_MILTER_HOLD);
			return;
		case 'S':
			/*
			 * Deliberate difference: Postfix 3.7's cleanup logs this line,
			 * then sets CLEANUP_STAT_CONT in its flags, where that bit is
			 * CLEANUP_FLAG_DISCARD: the client gets 250 and the message is
			 * dropped.  mxgate gives the 421 the milter asked for, so the
			 * client keeps the message and tries again.
			 */
			eom_log(s, "milter-reject", "message content rejected");
			eom_fail(s, RPL_MILTER_CLOSING);
			return;
		default:
			eom_log(s, "milter-reject", strlen(reply) > 4 ? reply + 4 : reply);
			eom_fail_text(s, reply);
			return;
		}
	}
	e = milters_edits(s->ms, &n);
	for (size_t i = 0; i < n; i++) {
		if (e[i].type == MILTER_EDIT_QUARANTINE) {
			eom_log(s, "milter-hold", "milter triggers HOLD action");
			eom_fail(s, RPL_MILTER_HOLD);
			return;
		}
	}
	/* the envelope: change_from, delete_rcpt now; add_rcpt after its lookup */
	j = xcalloc(1, sizeof(*j));
	j->s = s;
	for (size_t i = 0; i < n; i++) {
		char *a;

		switch (e[i].type) {
		case MILTER_EDIT_CHANGE_FROM:
			free(s->txn.sender);
			s->txn.sender = edit_addr(e[i].name);
			break;
		case MILTER_EDIT_DELETE_RCPT:
			/* the internal form, exactly (Postfix's cleanup_del_rcpt() strcmp()) */
			a = edit_addr(e[i].name);
			for (size_t k = 0; k < s->txn.nrcpts; k++)
				if (strcmp(s->txn.rcpts[k].addr, a) == 0) {
					txn_remove_rcpt(&s->txn, a);
					break;
				}
			free(a);
			break;
		case MILTER_EDIT_ADD_RCPT:
			j->addrs = xrealloc(j->addrs, (j->n + 1) * sizeof(*j->addrs));
			j->milters = xrealloc(j->milters, (j->n + 1) * sizeof(*j->milters));
			j->milters[j->n] = e[i].milter;
			j->addrs[j->n++] = edit_addr(e[i].name);
			break;
		default:
			break;
		}
	}
	if (j->n == 0) {
		free(j);
		eom_content(s);
		return;
	}
	j->policy = recipient_policy_ref(s->ss->policy);
	s->milter_abandon = &j->abandoned;
	s->wait = W_MILTER_READ;
	s->wait_handle = j;
	workpool_submit(s->env->lookups, s->loop, milter_rcpts_work, milter_rcpts_done, j);
}

int
session_milter_wants_message(const struct session *s)
{
	return s->ms != NULL && !s->milter_discard;
}

static void eom_read(struct session *s);

/*
 * BDAT: the DATA event goes with the last chunk, just before the message
 * (Postfix sends it at the first chunk; the order the milters see is the
 * same).  A reply to it is the message's reply.
 */
static void
eom_bdat_data(struct session *s, const char *reply)
{
	const char *where = s->where;

	s->where = "DATA";
	reply = session_milter_check(s, reply);
	s->where = where;
	if (reply != NULL) {
		eom_fail_text(s, reply);
		return;
	}
	if (s->milter_discard) {
		session_deliver(s);
		return;
	}
	eom_read(s);
}

void
session_milter_message(struct session *s)
{
	s->milter_hbc = 0;
	if (s->txn.bdat_used) {
		milters_data(s->ms, session_milter_answer, s);
		session_milter_wait(s, eom_bdat_data);
		return;
	}
	eom_read(s);
}

static void
eom_read(struct session *s)
{
	s->milter_size = 0;
	milters_message(s->ms, s->txn.body, s->txn.cl_on ? s->milter_received : NULL,
			session_milter_answer, s);
	session_milter_wait(s, eom_answer);
}
