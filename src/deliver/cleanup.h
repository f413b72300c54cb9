/*
 * cleanup: what Postfix 3.7's cleanup(8) does to the content of a message
 * that smtpd(8) received, as a streaming filter.  Pure data in, data out: no
 * I/O, no event loop.  The body reader's converted bytes (smtp/dataread.h:
 * LF line ends, no dot-stuffing, a bare CR already a space) go in with
 * cleanup_feed(), in pieces of any size; what is to be stored comes out,
 * appended to the caller's struct buf, which the caller hands to
 * spool_write() and empties as it likes (cleanup keeps no pointer into it).
 *
 * Memory: at most one record (line_length_limit bytes) and one header
 * (header_size_limit plus one record) are held; the body streams through.
 *
 * Records.  Postfix's smtpd hands cleanup a line in records of at most
 * line_length_limit bytes; cleanup works on records, and so does this:
 *  - header_size_limit: a header (a header line and its continuation lines)
 *    takes further records only while it is shorter than the limit; the rest
 *    of the header is dropped.  Stored header lines end with LF.
 *  - "Name  : value" is stored "Name: value" (the blanks before the colon
 *    go, as mime_state does).
 *  - message_drop_headers: such headers of the primary header are not stored.
 *  - hopcount_limit: the Received: headers (the server's own, which the
 *    caller feeds first, included) are counted; at hopcount_limit the
 *    message is refused (CLEANUP_HOPS: "554 5.4.0 Error: too many hops").
 *  - message_reject_characters (CLEANUP_REJECT, "disallowed character") and
 *    message_strip_characters, per record, header and body.
 *  - At the end of the primary header: the Message-Id:, Date:, From: and
 *    To: headers that the message lacks are added when add_missing is set
 *    (the client matched local_header_rewrite_clients, or
 *    always_add_missing_headers = yes), with Postfix's texts:
 *      Message-Id: <YYYYMMDDhhmmss.QUEUEID@myhostname>   (GMT, the arrival)
 *      Date: <arrival, mail_date() format>
 *      From: <sender>   ("MAILER-DAEMON" for <>)
 *      To: undisclosed-recipients:;   (without To:, Cc:, Resent-To/Cc:)
 *    (Resent-Message-Id/Date/From instead once a Resent- header was seen.)
 *  - With add_missing (the "local" rewrite context), an address header
 *    (From, To, Cc, Reply-To, Sender, Resent-*, ...) whose value is a
 *    plain list of addresses (atoms, dots, '@'; no phrase, comment or angle
 *    brackets) gets "@myorigin" after each address that has no domain, as
 *    Postfix's rewrite does for "From: foo".  Other forms are stored as
 *    sent (README: a difference from Postfix).
 *  - A line that is neither a header nor a continuation ends the primary
 *    header; when it is not empty, an empty line is stored before it.
 *
 * MIME, as Postfix's mime_state: a Content-Type: multipart/... header
 * pushes its boundary (at most 100 deep, 2048 bytes kept); a body line
 * "--boundary" starts a part's header block, "--boundary--" ends the
 * multipart; an empty line after the header of a message/rfc822 part (or of
 * a multipart/digest part) starts an attached message's header block.
 *
 * Checks (as Postfix's cleanup): header_checks on the primary header,
 * mime_header_checks on MIME headers (Content-*, MIME-Version) and on the
 * headers of parts, nested_header_checks on the headers of attached
 * messages, body_checks on body records (not on headers of parts), within
 * body_checks_size_limit of each body.  conf->check(ctx, ...) looks the
 * text up (the caller's tables, which must answer at once: in memory).  The
 * actions: REJECT [text], WARN [text], INFO, IGNORE, STRIP, PREPEND text,
 * REPLACE text, DISCARD [text], DUNNO and OK; HOLD, FILTER, REDIRECT, BCC,
 * PASS and DELAY are refused by the configuration check where it can read
 * the table, and a match on one at run time gives CLEANUP_TEMPFAIL (never a
 * silent accept).  A failed lookup tempfails too.  Only the primary header
 * gets message_drop_headers, the missing headers and the address rewrite.
 * Log lines are left to the caller (cleanup_take_logs()), without the queue
 * id, each after its level ("I " info, "W " warning) and ending with LF:
 * "I reject: header Subject: x from <log_ctx>: 5.7.1 message content
 * rejected" (the content cut at 200 bytes), "I warning: header ..." (WARN),
 * "I message-id=<..>", "W message rejected: hopcount exceeded".
 *
 * The result (cleanup_result()) is sticky: after REJECT, DISCARD, TEMPFAIL
 * or HOPS nothing more is produced, and the caller answers at end of data.
 *
 * size: the queue-file content size Postfix's qmgr logs as size=: per
 * stored record (a line cut in records of line_length_limit), 1 byte of
 * type, the record length as a base-128 varint, the bytes.
 */
#ifndef MXGATE_DELIVER_CLEANUP_H
#define MXGATE_DELIVER_CLEANUP_H

#include <stddef.h>
#include <time.h>

#include "util/buf.h"

enum cleanup_result {
	CLEANUP_OK,
	CLEANUP_REJECT,		/* reason: the reply text ("5.7.1 message content rejected") */
	CLEANUP_DISCARD,	/* the client is told 250, nothing is stored */
	CLEANUP_HOPS,		/* too many Received: headers */
	CLEANUP_TEMPFAIL,	/* a lookup failed, or an action mxgate cannot do */
};

enum cleanup_where {
	CLEANUP_HEADER,		/* header_checks */
	CLEANUP_BODY,		/* body_checks */
	CLEANUP_CONTENT,	/* message_reject_characters (logs only) */
	CLEANUP_MIME,		/* mime_header_checks: MIME headers, parts' headers */
	CLEANUP_NESTED,		/* nested_header_checks: attached messages' headers */
	CLEANUP_MILTER,		/* milter_header_checks: headers that milters add or change */
};

/*
 * A check: look text (a whole header, folded lines joined by LF, or one body
 * record) up.  Returns 1 with *action_r (malloc'd, caller frees) on a match,
 * 0 for none, -1 when the table could not answer.
 */
typedef int cleanup_check_fn(void *ctx, enum cleanup_where where, const char *text,
			     char **action_r);

/* What the whole service shares; read-only once built. */
struct cleanup_conf {
	size_t	header_size_limit;	/* 102400 */
	size_t	line_limit;		/* line_length_limit: the record size */
	long	hopcount_limit;		/* 50 */
	long	body_checks_size_limit;	/* 51200 */
	char  **drop;			/* message_drop_headers, lower case */
	size_t	ndrop;
	unsigned char reject_chars[256], strip_chars[256];	/* 1: in the set */
	int	have_reject, have_strip;
	cleanup_check_fn *check;	/* NULL: no checks */
	void   *check_ctx;
	int	header_checks, body_checks;	/* which ones to run */
	int	mime_header_checks, nested_header_checks;
	int	milter_header_checks;
	const char *hostname;		/* myhostname */
	const char *myorigin;		/* appended to unqualified header addresses */
	const char *rcpt_witheld;	/* undisclosed_recipients_header */
};

/* Build conf's character sets from the parameter values (Postfix escapes: \t, \0, \ooo ...). */
void cleanup_charset(unsigned char set[256], int *have_r, const char *spec);

struct cleanup {
	/* public, read-only */
	size_t	size;		/* queue-file content size so far (see above) */
	int	hops;		/* Received: headers seen */

	/* private */
	const struct cleanup_conf *cf;
	struct buf *out;
	struct buf rec;		/* the record being read */
	struct buf hdr;		/* the header being collected */
	struct buf logs;	/* log lines for the caller, LF-separated */
	struct buf reason;
	int	state;		/* header or body */
	int	first;		/* at the first lines of the client's content */
	struct cl_bound {
		char   *text;
		size_t	len;
		int	ctype, stype;	/* what a part is by default */
		struct cl_bound *next;
	} *stack;		/* the boundaries of the enclosing multiparts */
	int	nesting;	/* -1 outside any multipart */
	int	ctype, stype;	/* the current content type */
	char  **delivered;	/* the Delivered-To: values stored (lower case) */
	size_t	ndelivered;
	int	prev_cont;	/* the previous record was cut (more of its line follows) */
	int	hdr_trunc_logged;
	unsigned long seen;	/* header types seen (bits) */
	int	resent;
	int	add_missing;
	int	result;
	int	milter_hold;	/* milter_header_checks said HOLD (the quarantine answer) */
	int	in_milter;	/* in cleanup_milter_header(): its log format */
	long	body_offset;
	const char *sender;	/* RFC 5321 form; "" for <> */
	const char *queue_id;
	time_t	arrival;
	/* public, set by the caller after cleanup_init(): "from <log_ctx>" in log lines */
	const char *log_ctx;
};

/*
 * Start a message: output goes to out.  add_missing: add the missing
 * headers (see above).  sender and queue_id must stay valid until
 * cleanup_free().
 */
void cleanup_init(struct cleanup *c, const struct cleanup_conf *cf, struct buf *out,
		  int add_missing, const char *sender, const char *queue_id, time_t arrival);
/*
 * What is fed from now on is the client's content (what came before, the
 * server's own header lines): leading mbox "From " lines (after any '>')
 * become "X-Mailbox-Line: From ..." headers, as smtpd(8) makes them.
 */
void cleanup_content_start(struct cleanup *c);
/* Feed content (any split). */
void cleanup_feed(struct cleanup *c, const char *data, size_t len);
/* The end of the content: flush what is held. */
void cleanup_finish(struct cleanup *c);
enum cleanup_result cleanup_result(const struct cleanup *c);
/* The REJECT/DISCARD text ("5.7.1 message content rejected" when the action had none). */
const char *cleanup_reason(const struct cleanup *c);
/* The log lines produced so far (each ends with LF), moved into out. */
void cleanup_take_logs(struct cleanup *c, struct buf *out);
void cleanup_free(struct cleanup *c);

/*
 * Does the stored primary header have "Delivered-To: addr" (addr in RFC 5321
 * form, compared without case; the header's first line, as local(8) reads
 * the first 1000 of them back for its mail forwarding loop check)?
 */
int cleanup_has_delivered_to(const struct cleanup *c, const char *addr);

/*
 * milter_header_checks (Postfix's cleanup_milter_header_checks()): a header
 * that a milter adds, inserts or changes, "Name: value" as it is to be
 * stored, looked up with conf->check(CLEANUP_MILTER), after the content is
 * done.  Returns 0 to store it, 1 to drop it (IGNORE, STRIP; a change is
 * then not made), 2 to store *replace_r (REPLACE; malloc'd) instead.  The
 * actions are Postfix's there: REJECT and DISCARD set the result (later
 * headers are not checked), HOLD sets milter_hold, WARN, INFO, REPLACE,
 * STRIP, IGNORE, DUNNO, OK; PREPEND is logged and warned about as not
 * implemented (as Postfix 3.7 does); FILTER, REDIRECT and BCC tempfail
 * (mxgate has no queue); anything else is warned about ("unsupported
 * command").  Log lines are Postfix's "milter-header-ACTION: header
 * <first 60 bytes> from <log_ctx>[: text]".
 */
int cleanup_milter_header(struct cleanup *c, const char *header, char **replace_r);

/* The queue-file size of one stored line of len bytes (its LF excluded). */
size_t cleanup_line_size(size_t len, size_t line_limit);

#endif
