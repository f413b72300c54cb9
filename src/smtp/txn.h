/*
 * txn: one mail transaction (MAIL to the end of the message): the envelope,
 * the recipients with where each one goes, and the body on its way into a
 * spool (deliver/spool.h), plus what the delivery request is built from.
 * Plain data with helpers; the session (smtp/session.c) drives it.
 *
 * Recipients.  rcpts holds the DISTINCT accepted recipients (a repeated RCPT
 * for the same address is delivered once); rcpt_count counts every accepted
 * RCPT, repeats included, because that is what smtpd_recipient_limit counts
 * in Postfix.  Each recipient has its targets, the copies it is delivered
 * as (itself, or where its aliases lead: policy/recipient.h, which keeps a
 * final address once per RCPT).  The delivery request gets every target of
 * every recipient: one copy per (recipient, final address), as Postfix's
 * duplicate filter keys on the original recipient too
 * (enable_original_recipient = yes): mail to info@ (-> alice) and team@
 * (-> alice, bob) stores two copies for alice.
 */
#ifndef MXGATE_SMTP_TXN_H
#define MXGATE_SMTP_TXN_H

#include <stdatomic.h>
#include <stddef.h>
#include <sys/time.h>
#include <sys/types.h>

#include "deliver/cleanup.h"
#include "smtp/dataread.h"
#include "util/buf.h"

struct deliver_msg;
struct spool;

struct txn_target {
	char   *quoted;		/* the final address, RFC 5321 form: Delivered-To:, to= */
	char   *maildir;	/* where it is delivered (virtual Maildir; local: the
				 * Maildir ending in '/' or the mbox file) */
	int	local;		/* a local(8) user's mailbox (deliver.h: DELIVER_LOCAL) */
	uid_t	uid;
	gid_t	gid;
	char  **via;		/* RFC 5321 form: the local(8) addresses that forwarded
				 * it here, newest first (rcpt_target's via) */
	size_t	nvia;
	char   *transport;	/* NULL: maildir; "lmtp:NEXTHOP", "discard:TEXT"
				 * (policy/recipient.h rcpt_target's transport) */
};

struct txn_rcpt {
	char   *addr;		/* internal form: lookups, replies */
	char   *quoted;		/* RFC 5321 form: headers, logs (orig_to=) */
	struct txn_target *targets;
	size_t	ntargets;
};

struct txn {
	char   *sender;		/* internal form; NULL before MAIL */
	int	smtputf8;	/* MAIL had SMTPUTF8 */
	struct timeval arrival;	/* when MAIL was accepted */
	char	queue_id[16];	/* "" until the first accepted RCPT */
	struct txn_rcpt *rcpts;
	size_t	nrcpts, rcpt_cap;
	size_t	rcpt_count;	/* accepted RCPTs, repeats included */
	long	rcpt_overshoot;	/* RCPTs refused for the recipient limit */

	/* the body */
	struct spool *body;	/* NULL until DATA or the first BDAT */
	struct buf chunk;	/* converted bytes on their way to cleanup */
	struct cleanup cl;	/* what cleanup(8) does to them (deliver/cleanup.h) */
	int	cl_on;		/* cl is in use (txn_body_cleanup()) */
	char   *cl_sender;	/* RFC 5321 form of the sender, for cl */
	char   *cl_log_ctx;	/* "name[addr]; from=<..> to=<..> proto=.. helo=<..>" */
	struct buf clout;	/* cleanup's output on its way to the spool */
	struct datareader dr;	/* DATA */
	struct bdat_state bdat;	/* BDAT */
	size_t	bdat_left;	/* bytes of the current chunk still to read */
	size_t	bdat_chunk;	/* bytes of the current chunk read so far */
	size_t	bdat_raw;	/* bytes of every chunk so far (logs) */
	int	bdat_last;	/* the current chunk is the LAST one */
	int	bdat_refuse;	/* reply id refusing this chunk once it is read; -1: none */
	int	bdat_discard;	/* after a refusal: discard every chunk until LAST */
	int	bdat_used;	/* this transaction is a BDAT one */

	/* for policy servers (check_policy_service) */
	unsigned long msg_size;	/* MAIL SIZE= (0: none) */
	unsigned long act_size;	/* the message's size once its end was seen */
	char	instance[64];	/* "" until MAIL is accepted, then unique (Postfix's format) */
};

/* Forget everything (RSET, HELO, after a message); keeps nothing allocated. */
void txn_reset(struct txn *t);

/*
 * The message was refused after its body (smtpd_end_of_data_restrictions):
 * drop the body, the queue id and the recipients that would have got it, and
 * keep the sender and the RCPT count, as Postfix keeps its transaction (a MAIL
 * now is "nested"; new recipients start a new queue file).
 */
void txn_drop_message(struct txn *t);

/* A new queue id, Postfix-like (11 hex digits), into t->queue_id. */
void txn_new_queue_id(struct txn *t);

/* Is addr (internal form) already one of the recipients?  (case-insensitive) */
int txn_has_rcpt(const struct txn *t, const char *addr);
/* Remove the recipient addr (case-insensitive); 0 when it is not one. */
int txn_remove_rcpt(struct txn *t, const char *addr);
/* Add a recipient (copies addr); then give it its targets. */
struct txn_rcpt *txn_add_rcpt(struct txn *t, const char *addr);
/*
 * A mailbox of r: address is the final address, via the local(8) addresses
 * that forwarded it there, newest first (nvia 0: none), all internal form
 * (copied).
 */
void txn_rcpt_target(struct txn_rcpt *r, const char *address, const char *maildir, uid_t uid,
		     gid_t gid, char *const *via, size_t nvia);

/* The last target added to r goes through transport (copied; NULL: maildir). */
void txn_target_transport(struct txn_rcpt *r, const char *transport);

/* An address in RFC 5321 form ("john smith"@x stays quoted); "" for <>. */
char *txn_quote(const char *addr);

/* Start the body in sp (the transaction takes the reference). */
void txn_body_start(struct txn *t, struct spool *sp);
/*
 * Then pass the body through cleanup (cf; add_missing: add Message-Id,
 * Date, From when missing), starting with head (the PREPEND lines and the
 * Received: header, LF line ends), which goes through cleanup as the first
 * header lines, as smtpd(8) writes them to cleanup(8).  log_ctx is what
 * cleanup's log lines say after "from " (copied).  Without this call the
 * body is stored as the readers converted it.
 */
void txn_body_cleanup(struct txn *t, const struct cleanup_conf *cf, int add_missing,
		      const char *head, const char *log_ctx);
/* Move what the readers converted (t->chunk) through cleanup into the spool. */
void txn_body_flush(struct txn *t);
/* The end of the body: cleanup gives out what it holds (then the spool has it all). */
void txn_body_end(struct txn *t);
/*
 * cleanup's log lines so far, each as Postfix's cleanup(8) logs it (queue id
 * first), to log with log_as("cleanup", ...): calls fn(arg, line) for each.
 */
void txn_cleanup_logs(struct txn *t, void (*fn)(void *arg, const char *line), void *arg);

/*
 * local(8)'s mail forwarding loop check, for the copies that local(8)
 * addresses forwarded (a target's via): the first via address that the
 * message already has a Delivered-To: header for (RFC 5321 form), with the
 * recipient it belongs to in *rcpt_r; NULL when there is none.  After
 * txn_body_end() only.
 */
const char *txn_mail_loop(const struct txn *t, const char **rcpt_r);

/* What the Received: header says about the client and the server. */
struct txn_client {
	const char *helo;	/* NULL: no HELO/EHLO */
	const char *namaddr;	/* "name[addr]" */
	const char *addr;
	const char *proto;	/* "SMTP", "ESMTP", "UTF8SMTP" ... */
	const char *hostname;	/* myhostname */
	const char *mail_name;
	/*
	 * TLS (the TLS helper sets them): tls makes ESMTP "ESMTPS"; tls_comment,
	 * when not NULL, is the lines Postfix writes below "Received: from"
	 * ("\t(using TLSv1.3 with cipher ...)" and the client certificate line),
	 * each starting with a TAB, LF-separated, without a final LF.
	 */
	int	tls;
	const char *tls_comment;
};

/*
 * Append the Received: header Postfix's smtpd(8) writes (LF line ends):
 *	Received: from <helo, or the name> (<name> [<addr>])
 *		by <myhostname> (<mail_name>) with <proto> id <queue id>
 *		for <rcpt>; <MAIL time>
 * with "for" only when exactly one RCPT was accepted, else
 *		by <myhostname> (<mail_name>) with <proto> id <queue id>;
 *		<MAIL time>
 * proto is UTF8SMTP for MAIL ... SMTPUTF8, ESMTPS with tls.
 */
void txn_received(const struct txn *t, const struct txn_client *c, struct buf *out);

/*
 * The delivery request for the committed body: envelope, every target of
 * every recipient (with the recipient as its orig_to when an alias led
 * there), the Received: header, and size (the message size as Postfix
 * counts it).  A target that local(8) forwarded gets, below its own
 * Delivered-To, what each forwarding local(8) prepended, newest on top:
 *	Received: by <hostname> (<mail_name>)
 *		id <queue_id>; <date>
 *	Delivered-To: <via>
 * (Postfix's forwarded copy is a new queue file with its own id; mxgate has
 * one, the transaction's).
 */
struct deliver_msg *txn_deliver_msg(const struct txn *t, const struct txn_client *c,
				    size_t size);

#endif
