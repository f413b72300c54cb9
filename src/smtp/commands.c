/*
 * commands: the SMTP command table and its handlers (session_impl.h).
 *
 * Each handler checks its preconditions first, in Postfix 3.7's order (the
 * order decides which reply a client gets for a command that is wrong in
 * several ways), then acts.  A handler that must ask anvil or a recipient
 * table returns CMD_WAIT and continues in a callback; the callback finishes
 * the command with session_command_done().
 */
#include <ctype.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conf/conf.h"
#include "log/log.h"
#include "policy/anvil.h"
#include "policy/recipient.h"
#include "policy/restrict.h"
#include "smtp/service.h"
#include "smtp/session_impl.h"
#include "util/loop.h"
#include "util/xalloc.h"

static enum cmd_result cmd_helo(struct session *, const char *);
static enum cmd_result cmd_ehlo(struct session *, const char *);
static enum cmd_result cmd_starttls(struct session *, const char *);
static enum cmd_result cmd_auth(struct session *, const char *);
static enum cmd_result cmd_mail(struct session *, const char *);
static enum cmd_result cmd_rcpt(struct session *, const char *);
static enum cmd_result cmd_rset(struct session *, const char *);
static enum cmd_result cmd_noop(struct session *, const char *);
static enum cmd_result cmd_vrfy(struct session *, const char *);
static enum cmd_result cmd_etrn(struct session *, const char *);
static enum cmd_result cmd_quit(struct session *, const char *);

const struct cmd session_cmds[] = {
	{ "HELO", "helo", cmd_helo, CMD_JUNK | CMD_LAST | CMD_PRE_TLS },
	{ "EHLO", "ehlo", cmd_ehlo, CMD_JUNK | CMD_LAST | CMD_PRE_TLS },
	{ "STARTTLS", "starttls", cmd_starttls, CMD_PRE_TLS },
	{ "AUTH", "auth", cmd_auth, 0 },
	{ "MAIL", "mail", cmd_mail, 0 },
	{ "RCPT", "rcpt", cmd_rcpt, 0 },
	{ "DATA", "data", session_cmd_data, CMD_LAST },
	{ "BDAT", "bdat", session_cmd_bdat, 0 },
	{ "RSET", "rset", cmd_rset, CMD_JUNK },
	{ "NOOP", "noop", cmd_noop, CMD_JUNK | CMD_LAST | CMD_PRE_TLS },
	{ "VRFY", "vrfy", cmd_vrfy, CMD_JUNK | CMD_LAST },
	{ "ETRN", "etrn", cmd_etrn, CMD_JUNK },
	{ "QUIT", "quit", cmd_quit, CMD_PRE_TLS },
};
const size_t session_ncmds = sizeof(session_cmds) / sizeof(session_cmds[0]);

_Static_assert(sizeof(session_cmds) / sizeof(session_cmds[0]) < CMD_MAX,
	       "CMD_MAX must leave room for the unknown-command slot");

const struct cmd *
session_cmd_find(const char *verb, size_t len)
{
	size_t i;

	for (i = 0; i < session_ncmds; i++)
		if (strlen(session_cmds[i].name) == len
		    && strncasecmp(session_cmds[i].name, verb, len) == 0)
			return &session_cmds[i];
	return NULL;
}

/* ---- HELO, EHLO ------------------------------------------------------- */

/*
 * The HELO/EHLO name as Postfix keeps it (for the Received: header and the
 * helo=<> of log lines): the argument's words joined by one space, then
 * each of space < > ( ) \ " ; @ replaced with '?', so that the name reads as
 * one token wherever it is written.  mxgate keeps at most 255 bytes.
 */
static char *
session_helo_name(struct session *s, const char *args, int esmtp)
{
	int unused;
	char *name = smtp_collapse_args(args, NULL, &unused), *p;

	if (name == NULL) {
		session_reply(s, esmtp ? RPL_EHLO_SYNTAX : RPL_HELO_SYNTAX);
		return NULL;
	}
	for (p = name; *p; p++)
		if (strchr(" <>()\\\";@", *p) != NULL)
			*p = '?';
	if (strlen(name) > 255)
		name[255] = '\0';
	return name;
}

static void
session_helo_reply(struct session *s, int esmtp)
{
	struct buf b = BUF_INIT;
	size_t i, last = 0;

	if (!esmtp) {
		session_reply(s, RPL_HELO, s->ss->hostname);
		return;
	}
	reply_format(&b, 0, RPL_HELO, s->ss->hostname);
	for (i = 0; i < s->ss->nehlo; i++) {
		if (i == s->ss->ehlo_starttls && s->tls != NULL)
			continue;	/* not inside TLS */
		b.data[last + 3] = '-';		/* "250 host" becomes "250-host" */
		last = b.len;
		reply_format(&b, 0, RPL_HELO, s->ss->ehlo[i]);
	}
	session_send(s, &b);
	buf_free(&b);
}

/* The name is good: it replaces the old one and ends the transaction (s->arg: the name). */
static void
session_helo_accept(struct session *s)
{
	int esmtp = strcmp(s->cur->name, "EHLO") == 0;

	if (s->helo != NULL)
		session_milter_helo_reset(s);
	free(s->helo);
	s->helo = s->arg;
	s->arg = NULL;
	s->esmtp = esmtp;
	session_transaction_reset(s);
	session_helo_reply(s, esmtp);
	session_command_done(s, CMD_OK);
}

/*
 * The milters' answer to HELO: logged; only a 421 is given (Postfix: a
 * reject sticks and applies to MAIL and the commands after it).
 */
static void
session_helo_milter(struct session *s, const char *reply)
{
	reply = session_milter_check(s, reply);
	if (reply != NULL && strncmp(reply, "421", 3) == 0) {
		session_reply_text(s, reply);
		session_command_done(s, CMD_FAIL);
		return;
	}
	session_helo_accept(s);
}

/* smtpd_helo_restrictions at HELO time (smtpd_delay_reject = no). */
static void
session_helo_checked(struct session *s, struct restrict_out *out)
{
	if (out->verdict == RESTRICT_REJECT) {
		session_reply_text(s, out->reply);
		session_command_done(s, CMD_FAIL);
		return;
	}
	session_milter_helo(s, s->arg, session_helo_milter);
}

static enum cmd_result
session_helo_cmd(struct session *s, const char *args, int esmtp)
{
	if ((s->arg = session_helo_name(s, args, esmtp)) == NULL)
		return CMD_FAIL;
	if (!restrict_delay_reject(s->ss->acl) && !restrict_stage_empty(s->ss->acl, RESTRICT_HELO))
		session_restrict(s, RESTRICT_HELO, s->arg, session_helo_checked);
	else
		session_milter_helo(s, s->arg, session_helo_milter);
	return CMD_WAIT;
}

static enum cmd_result
cmd_helo(struct session *s, const char *args)
{
	return session_helo_cmd(s, args, 0);
}

static enum cmd_result
cmd_ehlo(struct session *s, const char *args)
{
	return session_helo_cmd(s, args, 1);
}

/* ---- STARTTLS (RFC 3207) ------------------------------------------------ */

/* Postfix's starttls_cmd() after the checks: 220, forget the session's state, handshake. */
static void
starttls_go(struct session *s)
{
	session_reply(s, RPL_STARTTLS_GO);
	/* RFC 3207 4.2: the client must forget what it knew; so does the server */
	if (s->helo != NULL)
		session_milter_helo_reset(s);
	free(s->helo);
	s->helo = NULL;
	session_transaction_reset(s);
	session_starttls(s);
}

/* anvil's new TLS session rate, asked before the handshake. */
static void
starttls_rate_answer(void *ctx, const struct anvil_reply *r)
{
	struct session *s = ctx;

	session_waited(s);
	if (r->status == 0 && r->rate > s->ss->newtls_rate_limit) {
		msg_warn("Refusing STARTTLS request from %s for service %s", s->namaddr,
			 s->ss->service_name);
		session_reply(s, RPL_TLS_RATE, s->namaddr);
		session_command_done(s, CMD_FAIL);
		return;
	}
	starttls_go(s);
}

static enum cmd_result
cmd_starttls(struct session *s, const char *args)
{
	const char *milter;

	if (*session_skip_space(args) != '\0') {
		session_reply(s, RPL_STARTTLS_SYNTAX);
		return CMD_FAIL;
	}
	if ((milter = session_milter_other(s)) != NULL) {
		/* Sendmail compatibility: a 4XX becomes 454 */
		if (milter[0] == '5')
			session_reply_text(s, milter);
		else
			session_reply(s, RPL_MILTER_TLS_TEMP);
		return CMD_FAIL;
	}
	if (s->tls != NULL) {
		session_reply(s, RPL_TLS_ACTIVE);
		return CMD_FAIL;
	}
	if (s->ss->tls.level == TLS_LEVEL_NONE || s->ss->ehlo_starttls >= s->ss->nehlo) {
		/* not offered (level none, or smtpd_discard_ehlo_keywords) */
		session_reply(s, RPL_NOT_IMPLEMENTED);
		return CMD_FAIL;
	}
	if (s->ss->tls_srv == NULL || s->io->starttls == NULL) {
		session_reply(s, RPL_TLS_UNAVAILABLE);
		return CMD_FAIL;
	}
	if (s->ss->newtls_rate_limit > 0 && s->ident != NULL) {
		session_wait(s, W_TLS_RATE, anvil_newtls_report(s->env->anvil, s->loop, s->ident,
								 session_now(s),
								 starttls_rate_answer, s));
		return CMD_WAIT;
	}
	starttls_go(s);
	return CMD_WAIT;
}

static enum cmd_result
cmd_auth(struct session *s, const char *args)
{
	(void)args;
	session_reply(s, RPL_AUTH_DISABLED);
	return CMD_FAIL;
}

/* ---- the anvil rates of MAIL, RCPT and VRFY ---------------------------- */

/*
 * Count a MAIL or RCPT/VRFY event with anvil; s->rate_next(s, rate)
 * continues the command once the answer is there (rate -1: no answer, no
 * limit).  Returns CMD_WAIT: the continuation has run, or will.
 */
static void
session_rate_answer(void *ctx, const struct anvil_reply *r)
{
	struct session *s = ctx;

	session_waited(s);
	s->rate_next(s, r->status == 0 ? r->rate : -1);
}

static enum cmd_result
session_rate(struct session *s, struct anvil_req *(*req)(struct anvil *, struct loop *,
							 const char *, time_t, anvil_cb *, void *),
	     session_rate_next *next)
{
	s->rate_next = next;
	session_wait(s, W_ANVIL, req(s->env->anvil, s->loop, s->ident, session_now(s),
				     session_rate_answer, s));
	return CMD_WAIT;
}

/* ---- MAIL ------------------------------------------------------------- */

/*
 * "Illegal address syntax": the address as the client wrote it (after
 * "FROM:"/"TO:", or VRFY's argument), as Postfix's printable() shows it.
 */
static void
session_log_illegal(struct session *s, const char *cmd, const char *text, size_t len)
{
	struct buf b = BUF_INIT;

	log_printable(&b, text, len, s->ss->smtputf8);
	msg_warn("Illegal address syntax from %s in %s command: %s", s->namaddr, cmd, buf_str(&b));
	buf_free(&b);
}

/*
 * A MAIL or RCPT address that Postfix refuses with 501: one that did not
 * parse (warned about unless its quote or bracket is unclosed: Postfix's
 * tokenizer refuses those before it looks at the address), or one that its
 * resolver refuses (smtp_path_resolvable()).  Returns 1 when the address is
 * bad; the caller replies.
 */
static int
session_bad_address(struct session *s, const char *cmd, const struct smtp_path *path, int utf8)
{
	if (path->addr != NULL && smtp_path_resolvable(path, utf8))
		return 0;
	if (path->addr != NULL || !path->unclosed)
		session_log_illegal(s, cmd, path->word, path->word_len);
	return 1;
}

/* The reply to a bad ESMTP parameter; nothing for PARAM_OK. */
static void
session_param_reply(struct session *s, int rc, const char *bad)
{
	switch (rc) {
	case PARAM_OK:
		break;
	case PARAM_BAD_SIZE:
		session_reply(s, RPL_SIZE_SYNTAX);
		break;
	case PARAM_SIZE_OVERFLOW:
		session_reply(s, RPL_SIZE_FS_LIMIT);
		break;
	case PARAM_DSN_DISABLED:
		session_reply(s, RPL_DSN_DISABLED);
		break;
	default:
		session_reply(s, RPL_UNSUPPORTED_OPT, bad ? log_escape_str(bad, 100) : "");
		break;
	}
}

/*
 * Postfix's smtpd_check_queue(): the file systems of the spool and the
 * mailboxes need queue_minfree, and 1.5 x message_size_limit, free.  The
 * free space is the server's last measurement (refreshed every second off
 * the loop): MAIL never waits for the disk.  Returns 1 when refused (the
 * reply is sent).
 */
static int
mail_check_space(struct session *s)
{
	long free_b = s->env->free_bytes ? atomic_load(s->env->free_bytes) : -1;

	if (free_b < 0)
		return 0;
	if (s->ss->queue_minfree >= free_b || (double)s->ss->size_limit >= (double)free_b / 1.5) {
		struct buf r = BUF_INIT;

		reply_format(&r, 0, RPL_NO_STORAGE);
		session_log_reject(s, "MAIL", buf_str(&r), NULL, NULL);
		msg_warn("not enough free space in mail queue: %ld bytes < 1.5*message size limit",
			 free_b);
		session_send(s, &r);
		buf_free(&r);
		restrict_state_reset_mail(&s->rst);
		session_command_done(s, CMD_FAIL);
		return 1;
	}
	return 0;
}

static void
mail_milter(struct session *s, const char *reply)
{
	static atomic_uint seqno;

	if ((reply = session_milter_check(s, reply)) != NULL) {
		/* Postfix's mail_reset(): the access map side effects, and ABORT */
		restrict_state_reset_mail(&s->rst);
		session_milter_abort(s);
		session_reply_text(s, reply);
		session_command_done(s, CMD_FAIL);
		return;
	}
	s->txn.sender = xstrdup(s->path.addr);
	s->txn.smtputf8 = s->arg_utf8;
	gettimeofday(&s->txn.arrival, NULL);
	/* Postfix's "pid.sec.usec.seqno", seqno shared by every thread: unique per message */
	snprintf(s->txn.instance, sizeof(s->txn.instance), "%x.%lx.%lx.%x", (unsigned)getpid(),
		 (unsigned long)s->txn.arrival.tv_sec, (unsigned long)s->txn.arrival.tv_usec,
		 atomic_fetch_add(&seqno, 1));
	session_reply(s, RPL_MAIL_OK);
	session_command_done(s, CMD_OK);
}

static void
mail_accept(struct session *s)
{
	if (mail_check_space(s))
		return;
	session_milter_mail(s, mail_milter);
}

/* smtpd_sender_restrictions at MAIL time (smtpd_delay_reject = no). */
static void
mail_checked(struct session *s, struct restrict_out *out)
{
	if (out->verdict == RESTRICT_REJECT) {
		/* Postfix resets the access map side effects (PREPEND, DISCARD) */
		restrict_state_reset_mail(&s->rst);
		session_reply_text(s, out->reply);
		session_command_done(s, CMD_FAIL);
		return;
	}
	mail_accept(s);
}

static void
mail_finish(struct session *s, int rate)
{
	struct smtp_path *path = &s->path;
	struct esmtp_params ep;
	char *bad = NULL;
	int rc, utf8;

	/* smtpd_client_message_rate_limit: counted even when the request then fails. */
	if (rate > s->ss->msg_rate_limit && s->ss->msg_rate_limit > 0) {
		session_limit_warning(s, "Message delivery request rate", rate);
		session_reply(s, RPL_MSG_RATE, s->addr);
		session_command_done(s, CMD_FAIL);
		return;
	}
	/*
	 * RFC 6531: a domain in UTF-8 needs SMTPUTF8 on this MAIL command;
	 * without it Postfix refuses the address (and warns), whatever else
	 * the parameters say.
	 */
	utf8 = path->addr != NULL && s->ss->smtputf8 && smtp_params_has(path->params, "SMTPUTF8");
	if (session_bad_address(s, "MAIL", path, utf8)) {
		session_reply(s, RPL_MAIL_BAD_ADDR);
		session_command_done(s, CMD_FAIL);
		return;
	}
	rc = smtp_parse_params(path->params, &ep, &bad);
	session_param_reply(s, rc, bad);
	if (rc == PARAM_OK && s->ss->size_limit > 0 && ep.has_size
	    && ep.size > (uint64_t)s->ss->size_limit) {
		struct buf r = BUF_INIT;

		reply_format(&r, s->ss->soft_bounce, RPL_SIZE_TOO_BIG);
		session_send(s, &r);
		session_log_reject(s, "MAIL", buf_str(&r), path->addr, NULL);
		buf_free(&r);
		rc = -1;
	}
	free(bad);
	if (rc != PARAM_OK) {
		session_command_done(s, CMD_FAIL);
		return;
	}
	s->arg_utf8 = utf8;
	s->txn.msg_size = ep.has_size ? (unsigned long)ep.size : 0;
	if (!restrict_delay_reject(s->ss->acl) && !restrict_stage_empty(s->ss->acl, RESTRICT_SENDER)) {
		session_restrict(s, RESTRICT_SENDER, path->addr, mail_checked);
		return;
	}
	mail_accept(s);
}

static enum cmd_result
cmd_mail(struct session *s, const char *args)
{
	int rc;

	if (s->ss->helo_required && s->helo == NULL) {
		session_reply(s, RPL_NEED_HELO);
		return CMD_FAIL;
	}
	if (s->txn.sender != NULL) {
		session_reply(s, RPL_MAIL_NESTED);
		return CMD_FAIL;
	}
	if (s->txn.bdat_discard) {
		session_reply(s, RPL_MAIL_AFTER_BDAT);
		return CMD_FAIL;
	}
	rc = smtp_parse_path(args, "FROM:", &s->path);
	if (rc == PATH_SYNTAX) {
		session_reply(s, RPL_MAIL_SYNTAX);
		return CMD_FAIL;
	}
	/* Postfix asks anvil after the syntax check and before the address check. */
	if (s->ss->msg_rate_limit > 0 && s->ident != NULL)
		return session_rate(s, anvil_message, mail_finish);
	mail_finish(s, -1);
	return CMD_WAIT;
}

/* ---- RCPT ------------------------------------------------------------- */

/*
 * Where a local(8) user's copy goes, as local(8) decides it: home_mailbox
 * ("Maildir/": a Maildir in ~; "Mailbox": an mbox in ~), else an mbox
 * mail_spool_directory/user (a Maildir there when the directory ends in
 * '/').  Mail for root is written with default_privs's ids (the delivery
 * helper never writes as root).  Returns NULL with *path_r (caller frees),
 * *uid_r and *gid_r set, or the 451 reply after logging why mxgate cannot
 * store it now (no passwd entry, no helper for another uid, ...).
 */
static char *
rcpt_local_mailbox(struct session *s, const char *addr, const struct rcpt_target *t,
		   char **path_r, uid_t *uid_r, gid_t *gid_r)
{
	const char *hm = conf_str(s->ss->cf, P_home_mailbox);
	const char *spool = conf_str(s->ss->cf, P_mail_spool_directory);
	uid_t uid = t->uid;
	gid_t gid = t->gid;
	size_t hl;
	int root = 0;

	if (t->uid == (uid_t)-1 || t->user == NULL || t->home == NULL) {
		/* no passwd entry (postmaster without an alias, a table's own value) */
		msg_warn("%s: no passwd entry for this local recipient, and mxgate does"
			 " not bounce; deferring", addr);
		return reply_string(RPL_NO_HELPER, addr, "Local delivery is not available");
	}
	if (uid == 0) {
		if (s->env->default_uid == (uid_t)-1 || s->env->default_uid == 0) {
			msg_warn("%s: mail for %s would be written as default_privs, which is not "
				 "set up; deferring", addr, t->user);
			return reply_string(RPL_NO_HELPER, addr, "Local delivery is not available");
		}
		uid = s->env->default_uid;
		gid = s->env->default_gid;
		root = 1;
	}
	if (*hm != '\0') {
		if (*hm == '/' || strstr(hm, "..") != NULL) {
			msg_warn("%s: home_mailbox = %s: not a path inside the home directory; "
				 "deferring", addr, hm);
			return reply_string(RPL_CONFIG_ERROR);
		}
		if (root) {
			msg_warn("%s: mail for %s is written with default_privs rights, which cannot "
				 "write %s in %s; deferring (alias %s to a user)", addr, t->user, hm,
				 t->home, t->user);
			return reply_string(RPL_NO_HELPER, addr, "Local delivery is not available");
		}
		hl = strlen(t->home);
		while (hl > 1 && t->home[hl - 1] == '/')
			hl--;
		*path_r = xasprintf("%.*s/%s", (int)hl, t->home, hm);
	} else {
		size_t sl = strlen(spool);

		if (sl > 0 && spool[sl - 1] == '/')
			*path_r = xasprintf("%s%s/", spool, t->user);
		else
			*path_r = xasprintf("%s/%s", spool, t->user);
	}
	if (!s->env->helper && uid != s->env->run_uid) {
		msg_warn("%s: delivery to %s as uid %ld needs the privileged delivery helper, which"
			 " runs only when mxgate is started as root; deferring", addr, *path_r,
			 (long)uid);
		free(*path_r);
		*path_r = NULL;
		return reply_string(RPL_NO_HELPER, addr, "Local delivery is not available");
	}
	*uid_r = uid;
	*gid_r = gid;
	return NULL;
}

static void
rcpt_local_free(char **lpath, uid_t *luid, gid_t *lgid, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(lpath[i]);
	free(lpath);
	free(luid);
	free(lgid);
}

/* A rejected recipient, after the milters heard of it: the reject (s->arg) is the reply. */
static void
rcpt_rejected(struct session *s, const char *reply)
{
	(void)reply;
	session_reply_text(s, s->arg);
	session_command_done(s, CMD_FAIL);
}

/* The milters' answer to an accepted recipient (it is in the transaction already). */
static void
rcpt_milter(struct session *s, const char *reply)
{
	if ((reply = session_milter_check(s, reply)) != NULL) {
		s->txn.rcpt_count--;
		if (s->milter_rcpt_new)
			txn_remove_rcpt(&s->txn, s->path.addr);
		session_reply_text(s, reply);
		session_command_done(s, CMD_FAIL);
		return;
	}
	if (s->txn.queue_id[0] == '\0') {
		txn_new_queue_id(&s->txn);
		msg_info("%s: client=%s", s->txn.queue_id, s->namaddr);
	}
	session_reply(s, RPL_RCPT_OK);
	session_command_done(s, CMD_OK);
}

/* The restrictions' answer, with the recipient's classification. */
static void
rcpt_checked(struct session *s, struct restrict_out *out)
{
	const char *addr = s->path.addr;
	struct rcpt_result none = { .verdict = RCPT_OK_VIRTUAL, .uid = s->env->run_uid };
	const struct rcpt_result *r = out->have_rcpt ? &out->rcpt : &none;
	char *reply = NULL;
	struct txn_rcpt *tr;
	/* local targets: where each goes and as whom (rcpt_local_mailbox()) */
	char **lpath = NULL;
	uid_t *luid = NULL;
	gid_t *lgid = NULL;
	size_t nt = 0;

	if (out->verdict == RESTRICT_REJECT) {
		/* the milters may ask to hear of rejected recipients; the reject wins */
		s->arg = xstrdup(out->reply);
		session_milter_rcpt(s, s->arg, rcpt_rejected);
		return;
	}
	if (s->rst.discard) {
		/* DISCARD: accepted, and nothing will be stored */
		r = &none;
	} else if (r->verdict == RCPT_OK_VIRTUAL || r->verdict == RCPT_OK_LOCAL) {
		/* every mailbox it goes to must be one we can write now */
		struct rcpt_target self = { .kind = r->verdict, .uid = r->uid, .gid = r->gid,
					    .user = r->user, .home = r->home };
		size_t n = r->ntargets > 0 ? r->ntargets : 1;

		nt = n;
		lpath = xcalloc(n, sizeof(*lpath));
		luid = xcalloc(n, sizeof(*luid));
		lgid = xcalloc(n, sizeof(*lgid));
		for (size_t i = 0; i < n && reply == NULL; i++) {
			const struct rcpt_target *t = r->ntargets > 0 ? &r->targets[i] : &self;

			if (t->transport != NULL) {
				/* lmtp: or discard: no mailbox of ours to write */
			} else if (t->kind == RCPT_OK_LOCAL) {
				reply = rcpt_local_mailbox(s, addr, t, &lpath[i], &luid[i], &lgid[i]);
			} else if (t->uid != s->env->run_uid && !s->env->helper) {
				msg_warn("%s: delivery as uid %ld needs the privileged delivery"
					 " helper, which runs only when mxgate is started as root;"
					 " deferring", addr, (long)t->uid);
				reply = reply_string(RPL_NO_HELPER, addr,
						     "Mailbox owner differs from the server user");
			}
		}
	} else {
		/* passed the restrictions only under warn_if_reject: still nothing to store it in */
		reply = xstrdup(r->reply);
		if (r->reason && (r->verdict == RCPT_TEMPFAIL || r->verdict == RCPT_UNDELIVERABLE))
			msg_warn("%s: %s", addr, r->reason);
	}
	if (reply != NULL) {
		session_log_reject(s, "RCPT", reply, s->txn.sender, addr);
		s->arg = reply;
		rcpt_local_free(lpath, luid, lgid, nt);
		session_milter_rcpt(s, s->arg, rcpt_rejected);
		return;
	}
	/* Postfix counts every accepted RCPT, repeats included, toward the limit. */
	s->txn.rcpt_count++;
	s->milter_rcpt_new = !txn_has_rcpt(&s->txn, addr);
	if (s->milter_rcpt_new) {
		tr = txn_add_rcpt(&s->txn, addr);
		for (size_t i = 0; i < r->ntargets; i++) {
			if (i < nt && lpath[i] != NULL)
				txn_rcpt_target(tr, r->targets[i].address, lpath[i], luid[i],
						lgid[i], r->targets[i].via, r->targets[i].nvia);
			else
				txn_rcpt_target(tr, r->targets[i].address, r->targets[i].maildir,
						r->targets[i].uid, r->targets[i].gid,
						r->targets[i].via, r->targets[i].nvia);
			tr->targets[tr->ntargets - 1].local = i < nt && lpath[i] != NULL;
			txn_target_transport(tr, r->targets[i].transport);
		}
		if (r->ntargets == 0) {	/* a result without targets: the recipient itself */
			if (nt > 0 && lpath[0] != NULL)
				txn_rcpt_target(tr, addr, lpath[0], luid[0], lgid[0], NULL, 0);
			else
				txn_rcpt_target(tr, addr, r->maildir, r->uid, r->gid, NULL, 0);
			tr->targets[tr->ntargets - 1].local = nt > 0 && lpath[0] != NULL;
		}
	}
	rcpt_local_free(lpath, luid, lgid, nt);
	session_milter_rcpt(s, NULL, rcpt_milter);
}

static void
rcpt_after_rate(struct session *s, int rate)
{
	struct smtp_path *path = &s->path;
	char *bad = NULL;
	int rc;

	if (s->ss->rcpt_rate_limit > 0 && rate > s->ss->rcpt_rate_limit) {
		session_limit_warning(s, "Recipient address rate", rate);
		session_reply(s, RPL_RCPT_RATE, s->addr);
		session_command_done(s, CMD_FAIL);
		return;
	}
	if (session_bad_address(s, "RCPT", path, s->txn.smtputf8)) {
		session_reply(s, RPL_RCPT_BAD_ADDR);
		session_command_done(s, CMD_FAIL);
		return;
	}
	/* Postfix checks the parameters before the recipient limit. */
	rc = smtp_parse_rcpt_params(path->params, &bad);
	session_param_reply(s, rc, bad);
	free(bad);
	if (rc != PARAM_OK) {
		session_command_done(s, CMD_FAIL);
		return;
	}
	if (s->ss->rcpt_limit > 0 && (long)s->txn.rcpt_count >= s->ss->rcpt_limit) {
		session_reply(s, RPL_TOO_MANY_RCPTS);
		/* The first smtpd_recipient_overshoot_limit of these are not errors. */
		session_command_done(s, s->txn.rcpt_overshoot++ < s->ss->overshoot_limit ? CMD_OK
				     : CMD_FAIL);
		return;
	}
	session_restrict(s, RESTRICT_RCPT, path->addr, rcpt_checked);
}

static enum cmd_result
cmd_rcpt(struct session *s, const char *args)
{
	int rc;

	if (s->txn.sender == NULL) {
		session_reply(s, RPL_NEED_MAIL);
		return CMD_FAIL;
	}
	s->arg_utf8 = 0;
	rc = smtp_parse_path(args, "TO:", &s->path);
	if (rc == PATH_SYNTAX) {
		session_reply(s, RPL_RCPT_SYNTAX);
		return CMD_FAIL;
	}
	if (s->ss->rcpt_rate_limit > 0 && s->ident != NULL)
		return session_rate(s, anvil_recipient, rcpt_after_rate);
	rcpt_after_rate(s, -1);
	return CMD_WAIT;
}

/* ---- DATA ------------------------------------------------------------- */

static void
data_start(struct session *s)
{
	struct txn *t = &s->txn;

	session_body_start(s);
	dr_init_limits(&t->dr, &t->chunk, (size_t)s->ss->size_limit, (size_t)s->ss->line_limit);
	session_enter_state(s, S_DATA);
	session_reply(s, RPL_DATA_GO);
}

/* The milters' answer to DATA: refuse it, or read the body. */
static void
data_milter(struct session *s, const char *reply)
{
	if ((reply = session_milter_check(s, reply)) != NULL) {
		session_reply_text(s, reply);
		session_command_done(s, CMD_FAIL);
		return;
	}
	data_start(s);
	session_body_resume(s);
}

/* smtpd_data_restrictions: refuse DATA, or read the body. */
static void
data_checked(struct session *s, struct restrict_out *out)
{
	if (out->verdict == RESTRICT_REJECT) {
		session_reply_text(s, out->reply);
		session_command_done(s, CMD_FAIL);
		return;
	}
	session_milter_data(s, data_milter);
}

enum cmd_result
session_cmd_data(struct session *s, const char *args)
{
	struct txn *t = &s->txn;

	if (t->nrcpts == 0) {
		session_reply(s, t->sender == NULL ? RPL_NEED_RCPT : RPL_NO_VALID_RCPTS);
		return CMD_FAIL;
	}
	if (*session_skip_space(args) != '\0') {
		session_reply(s, RPL_DATA_SYNTAX);
		return CMD_FAIL;
	}
	if (t->bdat_used) {
		session_reply(s, RPL_DATA_AFTER_BDAT);
		return CMD_FAIL;
	}
	if (!restrict_stage_empty(s->ss->acl, RESTRICT_DATA)) {
		session_restrict(s, RESTRICT_DATA, NULL, data_checked);
		return CMD_WAIT;
	}
	if (s->ms != NULL) {
		session_milter_data(s, data_milter);
		return CMD_WAIT;
	}
	data_start(s);
	return CMD_BODY;
}

/* ---- BDAT (RFC 3030) -------------------------------------------------- */

enum cmd_result
session_cmd_bdat(struct session *s, const char *args)
{
	struct txn *t = &s->txn;
	const char *p = session_skip_space(args);
	const char *qid = t->queue_id[0] ? t->queue_id : "NOQUEUE";
	char *end;
	unsigned long long n;

	s->where = "BDAT";
	if (!s->ss->chunking) {
		/* Not offered: the chunk that follows cannot be skipped safely, so hang up (as Postfix). */
		session_reply(s, RPL_BDAT_DISABLED);
		return CMD_FAIL;
	}
	if (!isdigit((unsigned char)*p))
		goto syntax;
	errno = 0;
	n = strtoull(p, &end, 10);
	if (errno != 0 || (*end != '\0' && *end != ' ' && *end != '\t'))
		goto syntax;
	p = session_skip_space(end);
	t->bdat_last = 0;
	if (strncasecmp(p, "LAST", 4) == 0 && *session_skip_space(p + 4) == '\0')
		t->bdat_last = 1;
	else if (*p != '\0')
		goto syntax;
	t->bdat_left = (size_t)n;
	t->bdat_chunk = 0;
	/*
	 * Postfix's order.  A refused chunk is read and dropped, the refusal
	 * answers it, and every later chunk is dropped too until LAST (or RSET),
	 * so that a pipelining client stays in step.
	 */
	if (n == 0 && !t->bdat_last) {
		/* Empty chunks would be junk commands nobody counts. */
		msg_warn("%s: null BDAT request from %s", qid, s->namaddr);
		t->bdat_refuse = RPL_BDAT_NULL;
	} else if (t->bdat_discard) {
		;	/* "551 5.0.0 Discarded <n> bytes after earlier error" */
	} else if (!t->bdat_used && t->nrcpts == 0) {
		t->bdat_refuse = t->sender == NULL ? RPL_NEED_RCPT : RPL_NO_VALID_RCPTS;
	} else {
		if (!t->bdat_used) {
			t->bdat_used = 1;
			session_body_start(s);
			bdat_init_limits(&t->bdat, (size_t)s->ss->size_limit, (size_t)s->ss->line_limit);
			t->bdat_raw = 0;
		}
		if (s->ss->size_limit > 0
		    && (unsigned long long)t->bdat.size > (unsigned long long)s->ss->size_limit - n) {
			msg_warn("%s: BDAT request from %s exceeds message size limit", qid, s->namaddr);
			t->bdat_refuse = RPL_BDAT_TOO_BIG;
		} else {
			s->where = SESSION_BDAT_CONTENT;
		}
	}
	session_enter_state(s, S_BDAT);
	return CMD_BODY;	/* the reply comes when the chunk has been read */
syntax:
	msg_warn("%s%smalformed BDAT command syntax from %s: %s",
		 t->queue_id[0] ? t->queue_id : "", t->queue_id[0] ? ": " : "", s->namaddr,
		 log_escape_str(s->lr.line.data, 100));
	session_reply(s, RPL_BDAT_SYNTAX);
	return CMD_FAIL;
}

/* ---- RSET, NOOP, ETRN, QUIT ------------------------------------------- */

static enum cmd_result
cmd_rset(struct session *s, const char *args)
{
	if (*session_skip_space(args) != '\0') {
		session_reply(s, RPL_RSET_SYNTAX);
		return CMD_FAIL;
	}
	session_transaction_reset(s);
	session_reply(s, RPL_OK);
	return CMD_OK;
}

static enum cmd_result
cmd_noop(struct session *s, const char *args)
{
	(void)args;
	session_reply(s, RPL_OK);
	return CMD_OK;
}

static enum cmd_result
cmd_etrn(struct session *s, const char *args)
{
	const char *milter;

	(void)args;
	if ((milter = session_milter_other(s)) != NULL) {
		session_reply_text(s, milter);
		return CMD_FAIL;
	}
	/* Deliberate difference: no queue to flush (DESIGN.md). */
	session_reply(s, RPL_NOT_IMPLEMENTED);
	return CMD_FAIL;
}

static enum cmd_result
cmd_quit(struct session *s, const char *args)
{
	(void)args;
	session_reply(s, RPL_BYE);
	session_hangup(s);
	return CMD_OK;
}

/* ---- VRFY ------------------------------------------------------------- */

static void
vrfy_checked(struct session *s, struct restrict_out *out)
{
	if (out->verdict == RESTRICT_REJECT) {
		session_reply_text(s, out->reply);
		session_command_done(s, CMD_FAIL);
		return;
	}
	session_reply(s, RPL_VRFY_OK, s->arg);
	session_command_done(s, CMD_OK);
}

static void
vrfy_after_rate(struct session *s, int rate)
{
	const char *milter;

	if (s->ss->rcpt_rate_limit > 0 && rate > s->ss->rcpt_rate_limit) {
		session_limit_warning(s, "Recipient address rate", rate);
		session_reply(s, RPL_RCPT_RATE, s->addr);
		session_command_done(s, CMD_FAIL);
		return;
	}
	if ((milter = session_milter_other(s)) != NULL) {
		session_reply_text(s, milter);
		session_command_done(s, CMD_FAIL);
		return;
	}
	/*
	 * Postfix parses VRFY's argument as a recipient (an empty one is bad,
	 * and so is every one it cannot parse: no tokenizer check here), and a
	 * UTF-8 domain needs "VRFY address SMTPUTF8".
	 */
	if (smtp_parse_address(s->arg, &s->path) != PATH_OK || s->path.addr[0] == '\0'
	    || !smtp_path_resolvable(&s->path, s->arg_utf8)) {
		session_log_illegal(s, "VRFY", s->arg, strlen(s->arg));
		session_reply(s, RPL_RCPT_BAD_ADDR);
		session_command_done(s, CMD_FAIL);
		return;
	}
	session_restrict(s, RESTRICT_RCPT, s->path.addr, vrfy_checked);
}

static enum cmd_result
cmd_vrfy(struct session *s, const char *args)
{
	if (s->ss->vrfy_disabled) {
		session_reply(s, RPL_VRFY_DISABLED);
		return CMD_FAIL;
	}
	s->arg = smtp_collapse_args(args, s->ss->smtputf8 ? "SMTPUTF8" : NULL, &s->arg_utf8);
	if (s->arg == NULL) {
		session_reply(s, RPL_VRFY_SYNTAX);
		return CMD_FAIL;
	}
	if (s->ss->rcpt_rate_limit > 0 && s->ident != NULL)
		return session_rate(s, anvil_recipient, vrfy_after_rate);
	vrfy_after_rate(s, -1);
	return CMD_WAIT;
}
