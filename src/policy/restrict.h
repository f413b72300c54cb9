/*
 * restrict: Postfix's SMTP access restrictions (smtpd_check.c's evaluation,
 * as Postfix 3.7 does it) for one service: the restriction lists, the
 * restriction classes, the access tables and their actions, the reply texts,
 * codes and log lines.
 *
 * Lists.  smtpd_client_restrictions, smtpd_helo_restrictions,
 * smtpd_sender_restrictions, smtpd_relay_restrictions and
 * smtpd_recipient_restrictions (in the order smtpd_relay_before_recipient_
 * restrictions gives), smtpd_data_restrictions and
 * smtpd_end_of_data_restrictions; each name in smtpd_restriction_classes is
 * a parameter whose value is a list, usable as a restriction and as an access
 * table value.  Evaluation follows generic_checks(): elements in order, the
 * first OK or REJECT ends the list, DUNNO goes on; warn_if_reject turns the
 * next element's reject into a "reject_warning" log line; defer_if_permit and
 * defer_if_reject remember a deferral that a later permit (at the end of the
 * RCPT, DATA or END-OF-DATA stage) or a later 5xx reject turns into the
 * reply; soft_bounce makes every 5xx a 4xx, log line included.
 *
 * Stages (struct restrict_req.stage) and what each evaluates:
 *   CLIENT  smtpd_client_restrictions (smtpd_delay_reject = no: at connect)
 *   HELO    smtpd_helo_restrictions (smtpd_delay_reject = no: at HELO/EHLO)
 *   SENDER  smtpd_sender_restrictions, then the implicit
 *           reject_unlisted_sender (smtpd_reject_unlisted_sender) (no: at MAIL)
 *   RCPT    with smtpd_delay_reject = yes first CLIENT, HELO and SENDER, then
 *           the relay and recipient lists, the deferral of a permit, and
 *           the recipient's own check (policy/recipient.h: unknown users,
 *           lookup failures), which mxgate always applies at the end, since it
 *           cannot store mail for an address it does not know (Postfix skips
 *           it with smtpd_reject_unlisted_recipient = no and bounces later);
 *           also for VRFY
 *   DATA, EOD  smtpd_data_restrictions, smtpd_end_of_data_restrictions
 *
 * Never relaying: in the RCPT stage, when the relay or recipient list would
 * permit (OK) a recipient that is not one of mxgate's own destinations
 * (recipient_resolve() says RCPT_RELAY_DENIED), the recipient gets the reply
 * reject_unauth_destination gives ("<relay_domains_reject_code> 5.7.1 <rcpt>:
 * Relay access denied") at that point; so does one that both lists leave
 * undecided.  A DISCARD is honoured (nothing is delivered).
 *
 * Restrictions implemented: permit, reject, defer, defer_if_permit,
 * defer_if_reject, warn_if_reject, sleep N (the evaluation stops, the caller
 * waits on a timer and evaluates again, skipping the sleeps done: no thread
 * sleeps), reject_unauth_pipelining, permit_mynetworks,
 * permit_sasl_authenticated and permit_tls_*clientcerts (never match: nobody
 * authenticates), check_client_access, check_reverse_client_hostname_access,
 * check_helo_access, check_sender_access, check_recipient_access (and a bare
 * type:table, which means the stage's own check_*_access),
 * reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname (and the old
 * names reject_invalid_hostname, reject_non_fqdn_hostname),
 * reject_non_fqdn_sender, reject_non_fqdn_recipient, reject_unlisted_sender,
 * reject_unlisted_recipient (check_recipient_maps), permit_auth_destination,
 * reject_unauth_destination, defer_unauth_destination,
 * reject_multi_recipient_bounce, reject_plaintext_session (always: no TLS
 * yet), reject_sender_login_mismatch and its relatives with
 * smtpd_sender_login_maps (as Postfix with smtpd_sasl_auth_enable: a sender
 * that has an owner is rejected "not logged in"; without it Postfix ignores
 * them with a warning, and so does mxgate).
 *
 * Access table results (check_table_result()): OK, RELAY, all digits, DUNNO,
 * REJECT [text], DEFER [text], DEFER_IF_PERMIT [text], DEFER_IF_REJECT
 * [text], 4NN/5NN text (with an optional enhanced code), WARN and INFO
 * (logged), PREPEND header (kept for the stored copy: restrict_out.prepend),
 * DISCARD (accept and drop: restrict_out.discard), a list of restrictions
 * or class names.  HOLD, FILTER, REDIRECT, BCC need a queue or a relay that
 * mxgate does not have: they answer "451 4.3.5 Server configuration error"
 * with a warning (never a silent acceptance).  A table that fails gives
 * Postfix's "451 4.3.5 <name>: <class> rejected: Server configuration error".
 *
 * DNS restrictions (answers through RESTRICT_ASK, below): the DNS lists
 * (reject_rbl_client, reject_rbl, reject_rhsbl_{client,reverse_client,helo,
 * sender,recipient}, permit_dnswl_client, permit_rhswl_client,
 * reject_maps_rbl) with Postfix's "=" reply filters, TXT reasons,
 * default_rbl_reply and rbl_reply_maps (rbl_pagein(), rbl_reject_reply()); a
 * list that does not answer is skipped with "RBL lookup error"
 * (restrict_ask_log()), an allowlist that does not answer is a
 * defer_if_reject; reject_unknown_helo_hostname, reject_unknown_sender_domain
 * (reject_unknown_address), reject_unknown_recipient_domain (our own domains
 * are not asked), reject_unknown_client_hostname and
 * reject_unknown_reverse_client_hostname (req.name_status, reverse_status),
 * check_{client,reverse_client_hostname,helo,sender,recipient}_{mx,ns,a}_access
 * (check_server_access(): names, then addresses, at most DNS_RR_LIMIT; OK is
 * refused).
 *
 * check_policy_service (policy/policy.h): the server is parsed when the
 * list is built (a bad one is a problem reported); the evaluation builds
 * Postfix 3.7's request and ends with RESTRICT_ASK (kind POLICY) until the
 * answers hold the action for this command (ask_serial); the action goes
 * through check_table_result() as "policy query", a failed server gets its
 * default_action.  In an access table value it answers 451 4.3.5.
 *
 * Address verification: reject_unverified_recipient, with the recipient's
 * own lookup (recipient_resolve()) as the probe, since mxgate sends no mail:
 * a mailbox found passes; an unknown user is the probe bouncing
 * ("<unverified_recipient_reject_code> 4.1.1 <rcpt>: Recipient address
 * rejected: unverified address: unknown user: \"...\"", the delivery agent's
 * text; a 5xx code says "undeliverable address"); a table that does not
 * answer is the probe deferring (unverified_recipient_defer_code, "mail
 * system configuration error"); a 4xx goes through
 * unverified_recipient_tempfail_action; unverified_recipient_reject_reason
 * replaces the text.  Never "Address verification in progress", and nothing
 * is cached (address_verify_* change nothing).  reject_unverified_sender is
 * refused (mxgate cannot probe a sender without sending mail).
 *
 * Not implemented (sender verification, and what needs
 * TLS or relaying): a list that names one cannot be created
 * (restrict_create() reports it: `check` names it, `run` refuses), and an
 * access table value that names one answers 451 4.3.5 with a warning.
 *
 * Log lines are Postfix's log_whatsup(): "<queue id|NOQUEUE>: <reject|
 * reject_warning|warn|info|discard|permit>: <where> from <namaddr>: <text>;
 * from=<...> to=<...> proto=... helo=<...>".  The evaluation does not log:
 * it collects the lines (restrict_out.log) and the caller logs them in order
 * once the answer is used, so that an evaluation run again after a sleep
 * logs once.
 *
 * Threads: a policy is read-only after restrict_create() and reference
 * counted; restrict_eval() may run on many threads at once (it may block on
 * tables, unless try_only).  restrict_start() runs it on a pool and answers
 * on the caller's loop.
 */
#ifndef MXGATE_POLICY_RESTRICT_H
#define MXGATE_POLICY_RESTRICT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "policy/recipient.h"

struct buf;
struct conf_view;
struct dns_answer;
struct loop;
struct restrict_policy;
struct workpool;

enum restrict_stage {
	RESTRICT_CLIENT, RESTRICT_HELO, RESTRICT_SENDER, RESTRICT_RCPT,
	RESTRICT_DATA, RESTRICT_EOD,
};

/* A deferral kept for later (Postfix's SMTPD_DEFER). */
struct restrict_defer {
	bool	active;
	int	cls;		/* the error class (restrict.c) */
	int	code;
	char	dsn[12];
	char   *reason;
};

/*
 * What one session carries from stage to stage.  Zero it for a new session;
 * restrict_state_free() at the end; restrict_state_reset_mail() when a
 * transaction ends (RSET, HELO, after a message).
 */
struct restrict_state {
	struct restrict_defer dip;	/* defer_if_permit in effect */
	bool	dip_client, dip_helo, dip_sender;	/* as each stage left it */
	struct restrict_defer dip_saved[3];	/* their reasons */
	bool	discard;		/* DISCARD: accept, store nothing */
	char  **prepend;		/* PREPEND headers, NULL-terminated */
	size_t	nprepend;
};

void	restrict_state_reset_mail(struct restrict_state *st);
void	restrict_state_free(struct restrict_state *st);
void	restrict_state_copy(struct restrict_state *dst, const struct restrict_state *src);

/*
 * How the client's names were found (Postfix's SMTPD_PEER_CODE_*), for
 * reject_unknown_client_hostname (450 for TEMP, unknown_client_reject_code
 * otherwise) and reject_unknown_reverse_client_hostname.  0 (a caller that
 * does not know): OK for a name, PERM for "unknown".
 */
enum restrict_peer {
	RESTRICT_PEER_OK = 2, RESTRICT_PEER_TEMP = 4, RESTRICT_PEER_PERM = 5,
	RESTRICT_PEER_FORGED = 6,	/* the PTR name does not resolve back (name only) */
};

/* One evaluation's input.  The strings are the caller's during the call. */
struct restrict_req {
	enum restrict_stage stage;
	const char *name;		/* verified client name or "unknown" */
	const char *reverse_name;	/* the reverse (PTR) name or "unknown" */
	int	name_status, reverse_status;	/* enum restrict_peer, or 0 */
	const char *addr;		/* printable client address */
	const char *client_port;	/* its port, or NULL */
	const char *namaddr;		/* "name[addr]" */
	const struct sockaddr *sa;	/* AF_INET/AF_INET6 or NULL */
	const char *helo;		/* NULL: none yet */
	const char *sender;		/* NULL: no MAIL; "" the null sender */
	const char *recipient;		/* RCPT/VRFY address; DATA/EOD: NULL or the only one */
	const char *queue_id;		/* NULL: NOQUEUE */
	const char *where;		/* "CONNECT", "HELO", "MAIL", "RCPT", "VRFY", "DATA", ... */
	const char *proto;		/* "SMTP" or "ESMTP" */
	bool	smtputf8;		/* this MAIL/VRFY asked for SMTPUTF8 */
	bool	log_utf8;		/* smtputf8_enable: logs keep UTF-8 readable */
	bool	ill_pipelining;		/* improper pipelining was seen */
	size_t	rcpt_count;		/* recipients accepted so far */
	unsigned sleeps_done;		/* sleeps already waited (RESTRICT_SLEEP) */
	const struct restrict_answers *answers;	/* what was asked so far (RESTRICT_ASK) */
	unsigned ask_serial;		/* the command's number, for policy answers */
	bool	try_only;		/* only tables in memory: else RESTRICT_WOULD_BLOCK */
	/* for check_policy_service's request (policy/policy.h); NULL reads as "" */
	const char *server_addr;	/* the address and port the client connected to */
	const char *server_port;
	const char *instance;		/* one value per transaction ("" outside one) */
	const char *stress;		/* "yes" under stress, else "" */
	unsigned long size;		/* MAIL SIZE=, the message's size at END-OF-MESSAGE */
	/* TLS: protocol NULL in a plaintext session (reject_plaintext_session, policy requests) */
	const char *tls_protocol;	/* "TLSv1.3" */
	const char *tls_cipher;		/* "TLS_AES_256_GCM_SHA384" */
	int	tls_keysize;		/* the cipher's bits in use */
};

enum restrict_verdict {
	RESTRICT_PASS,		/* go on (the stage permitted or did not decide) */
	RESTRICT_REJECT,	/* out.reply is the reply */
	RESTRICT_SLEEP,		/* wait out.sleep seconds, then evaluate again with
				 * sleeps_done + 1 */
	RESTRICT_WOULD_BLOCK,	/* try_only and a table may block: use the pool */
	RESTRICT_ASK,		/* out.ask needs an answer from someone else: get it,
				 * add it to the answers, evaluate again */
};

/*
 * Answers from someone else.  A restriction that needs a DNS record or a
 * policy server's action looks for it in req.answers; when it is not there
 * the evaluation ends with RESTRICT_ASK and out.ask says what to ask.  The
 * caller asks (on its loop: net/resolver.h, policy/policy.h), adds the
 * answer with restrict_answers_add_*() and evaluates again: what was asked
 * before is found this time.  So one session asks each name once, and a
 * stage with several lookups asks them one after another, as Postfix does.
 * After RESTRICT_ASK_MAX answers a session asks nothing more: a DNS lookup
 * then fails as a timeout would (DNS_RETRY), a policy query as a server that
 * does not answer.
 *
 * THREADS: one writer (the session, on its loop, never while an evaluation
 * runs for it), any number of readers, also an evaluation that was cancelled
 * and still runs on a pool: entries are only ever prepended, never moved, and
 * freed with the last reference (restrict_answers_ref()).
 */
#define RESTRICT_ASK_MAX 200

enum restrict_ask_kind { RESTRICT_ASK_DNS, RESTRICT_ASK_POLICY };

struct policy_server;

struct restrict_ask {
	enum restrict_ask_kind kind;
	char   *name;		/* DNS: the name asked; POLICY: the server as written */
	int	type;		/* DNS: the record type (util/dns.h) */
	char   *request;	/* POLICY: the request, "name=value\n" lines and the
				 * empty line that ends it */
	const struct policy_server *server;	/* POLICY: its settings (the policy's) */
	bool	rbl;		/* DNS: a DNS list's A query (restrict_ask_log()) */
};

/*
 * Log what Postfix logs when the answer comes in (rbl_pagein()): a DNS list
 * that does not answer is "warning: <query>: RBL lookup error: <why>", once
 * per session and name, as the answer is cached.
 */
void	restrict_ask_log(const struct restrict_ask *ask, const struct dns_answer *a);

struct restrict_answers;

struct restrict_answers *restrict_answers_new(void);
struct restrict_answers *restrict_answers_ref(struct restrict_answers *a);
void	restrict_answers_free(struct restrict_answers **ap);	/* drops a reference */
size_t	restrict_answers_count(const struct restrict_answers *a);
void	restrict_answers_add_dns(struct restrict_answers *a, const char *name, int type,
				 const struct dns_answer *ans);
/*
 * action NULL: the server failed (the restriction's default action applies).
 * serial is req.ask_serial: a policy server is asked again for the next
 * command (postgrey's answer changes with time), DNS answers are kept for
 * the whole session.
 */
void	restrict_answers_add_policy(struct restrict_answers *a, unsigned serial,
				    const char *server, const char *request, const char *action);
/* The answers as the evaluation finds them (NULL: not asked yet). */
const struct dns_answer *restrict_answers_dns(const struct restrict_answers *a, const char *name,
					      int type);
/* *action_r NULL: the server failed.  false: not asked yet. */
bool	restrict_answers_policy(const struct restrict_answers *a, unsigned serial,
				const char *server, const char *request, const char **action_r);

struct restrict_logline {
	bool	warning;	/* msg_warn, else msg_info */
	char   *text;
};

struct restrict_out {
	enum restrict_verdict verdict;
	char   *reply;		/* REJECT: the whole reply line, no CRLF */
	long	sleep;		/* SLEEP: seconds */
	struct restrict_ask ask;	/* ASK: what to ask */
	struct restrict_logline *log;
	size_t	nlog;
	/* RCPT: the recipient's classification (valid when have_rcpt) */
	bool	have_rcpt;
	struct rcpt_result rcpt;
};

void	restrict_out_free(struct restrict_out *out);
/* Log out's lines (msg_info / msg_warn), in order, and forget them. */
void	restrict_out_flush_log(struct restrict_out *out);

/* One thing that keeps the policy from being created (param: the list's parameter or class). */
typedef void restrict_problem_fn(void *ctx, const char *param, const char *item,
				 const char *why);

/*
 * Parse every list of cf and open its access tables; rp is the service's
 * recipient policy (a reference is taken).  Reports every problem (unknown
 * or unimplemented restriction, missing argument, table that does not
 * open, undefined class, neither relay nor recipient list having a
 * restriction that rejects by default) and returns NULL if there was any.
 */
struct restrict_policy *restrict_create(const struct conf_view *cf,
					const struct recipient_policy *rp,
					restrict_problem_fn *report, void *ctx);
struct restrict_policy *restrict_ref(const struct restrict_policy *p);
void	restrict_free(struct restrict_policy **pp);

/* smtpd_delay_reject, and whether a stage's lists are empty (no work). */
bool	restrict_delay_reject(const struct restrict_policy *p);
bool	restrict_stage_empty(const struct restrict_policy *p, enum restrict_stage stage);
/* True when a table of the policy (or its recipient policy) is remote. */
bool	restrict_remote(const struct restrict_policy *p);
/* For `check`: map_probe() the remote access tables. */
size_t	restrict_probe(const struct restrict_policy *p, restrict_problem_fn *report, void *ctx);
/* An indexed access table whose file changed, or NULL (recipient_policy_changed()). */
const char *restrict_changed(const struct restrict_policy *p);
bool	restrict_has_indexed(const struct restrict_policy *p);

/*
 * Evaluate req's stage with st (updated in place) into *out (zero it
 * first; free with restrict_out_free()).
 */
void	restrict_eval(const struct restrict_policy *p, const struct restrict_req *req,
		      struct restrict_state *st, struct restrict_out *out);

/*
 * Postfix's log_whatsup() line into b: "<qid|NOQUEUE>: <what>: <where> from
 * <namaddr>: <text>; from=<..> to=<..> proto=.. helo=<..>".
 */
void	restrict_format_log(struct buf *b, const struct restrict_req *req, const char *what,
			    const char *text);

/* ---- asynchronous evaluation ---- */

struct restrict_job;
/* The answer: out and st belong to the job; cb may move what it wants out of them. */
typedef void restrict_cb(void *ctx, struct restrict_out *out, struct restrict_state *st);

/*
 * Evaluate on the loop when every table is in memory (cb runs inside and the
 * result is NULL), else on pool (remote when the policy has a remote table).
 * req's strings and st are copied.
 */
struct restrict_job *restrict_start(const struct restrict_policy *p, struct workpool *pool,
				    struct workpool *remote, struct loop *l,
				    const struct restrict_req *req, const struct restrict_state *st,
				    restrict_cb *cb, void *ctx);
void	restrict_cancel(struct restrict_job *j);

#endif
