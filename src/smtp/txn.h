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
	struct buf chunk;	/* converted bytes on their way to the spool */
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
/* Add a recipient (copies addr); then give it its targets. */
struct txn_rcpt *txn_add_rcpt(struct txn *t, const char *addr);
/*
 * A mailbox of r: address is the final address, via the local(8) addresses
 * that forwarded it there, newest first (nvia 0: none), all internal form
 * (copied).
 */
void txn_rcpt_target(struct txn_rcpt *r, const char *address, const char *maildir, uid_t uid,
		     gid_t gid, char *const *via, size_t nvia);

/* An address in RFC 5321 form ("john smith"@x stays quoted); "" for <>. */
char *txn_quote(const char *addr);

/* Start the body in sp (the transaction takes the reference). */
void txn_body_start(struct txn *t, struct spool *sp);
/* Move what the readers converted (t->chunk) into the spool. */
void txn_body_flush(struct txn *t);

/* What the Received: header says about the client and the server. */
struct txn_client {
	const char *helo;	/* NULL: no HELO/EHLO */
	const char *namaddr;	/* "name[addr]" */
	const char *addr;
	const char *proto;	/* "SMTP", "ESMTP", "UTF8SMTP" ... */
	const char *hostname;	/* myhostname */
	const char *mail_name;
};

/* Append the Received: header Postfix would add (LF line ends). */
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
