/*
 * milter_client: one SMTP session's conversation with its milters
 * (smtpd_milters), on the worker's libevent loop, as Postfix 3.7's smtpd
 * and cleanup hold it (milter.c, milter8.c): the same events in the same
 * order, the same macros, the same replies, the same warnings, and the
 * same milter_default_action when a filter fails.
 *
 * Settings (struct milter_conf, immutable, shared by every session of a
 * service generation): the list of milters as smtpd_milters writes it
 * ("inet:host:port", "unix:/path", "local:/path", a relative unix path
 * being under queue_directory; or "{ name, connect_timeout=10s,
 * command_timeout=.., content_timeout=.., default_action=..,
 * protocol=.. }"), milter_connect_timeout, milter_command_timeout,
 * milter_content_timeout, milter_protocol, milter_default_action, the
 * eight milter_*_macros lists, milter_macro_defaults,
 * milter_macro_daemon_name and milter_macro_v.
 *
 * A conversation (struct milters, one per session): the session reports
 * each event and gets the answer through its callback, on the loop, never
 * inside the call.  One event at a time: an event is reported only after
 * the previous one's callback ran (or after milters_cancel()).  The
 * milters are asked in order; the first one that answers something other
 * than "continue" decides, and the ones after it are not asked (Postfix's
 * chain).  The answer is Postfix's milter reply string:
 *   NULL            go on (continue or accept)
 *   "4XX X.Y.Z ..." / "5XX X.Y.Z ..."   the reply to give (may be multi-line:
 *                   lines separated by "\r\n"); a connect-time reject is
 *                   given again for every later event
 *   "D"             discard the message (accept it, store nothing)
 *   "H"             quarantine (Postfix: hold)
 *   "S"             421 and disconnect
 * The session turns it into its reply and log line as Postfix's
 * check_milter_reply() does ("milter-reject: RCPT from ...").
 *
 * Connections: each milter is connected (nonblocking, bounded by its
 * connect timeout) at the connect event, as Postfix does (libmilter closes
 * the socket when the session ends), and negotiated (SMFIC_OPTNEG, the
 * filter's version, actions, protocol flags and macro lists).  Each wait
 * for bytes is bounded by the command timeout, or the content timeout from
 * the first header to the end of the message.  A failure (connect,
 * negotiation, timeout, EOF, a malformed or unexpected reply) logs
 * Postfix's warning ("milter inet:127.0.0.1:11332: can't read
 * SMFIC_RCPT reply packet header: ..."), closes that milter's socket, and
 * from then on that milter answers milter_default_action for every event
 * of the session: accept (NULL), reject ("550 5.5.0 Service
 * unavailable"), tempfail ("451 4.7.1 Service unavailable - try again
 * later"), quarantine ("H").
 *
 * The message: milters_message() sends the header, end of header, body
 * chunks and end of message of a committed spool (as stored: LF line
 * ends; mxgate's own Received: header, which milters never see, is given
 * as the text to hide), to each milter in turn; each milter sees the
 * message as the milters before it changed it.  The message is streamed:
 * the spool is read in pieces of MILTER_PIECE bytes on a worker pool
 * (milters_set_io(): never on the loop), one piece in flight per session,
 * and each milter reads the body again from the start.  Only the header
 * section is held whole (parsed into the view), bounded by
 * MILTER_HEADER_MAX: a longer header section is not given to the milters
 * and the message's answer is "552 5.3.4 Error: message header section too
 * big" (HEAD_TOO_BIG; Postfix has no such bound: its cleanup reads the
 * headers from the queue file one at a time).  A body replacement
 * (SMFIR_REPLBODY) goes, as it arrives, into a new spool (milter_io's
 * new_spool: the daemon's is an unnamed file in mxgate_spool_directory,
 * written by the writers pool, back-pressure stopping the reads from that
 * milter), which is committed before the next milter reads the body from
 * it.  The changes (add, insert, change, delete header; replace body;
 * change sender; add and delete recipients; quarantine) are collected in
 * order (milters_edits()) and applied to the view (milters_view(),
 * milters_body()) for the next milter and for the caller.  The changes may
 * not make the message larger than message_size_limit: past it the rest
 * are skipped and the message's answer is "552 5.3.4 Error: message file
 * too big" (unless a milter discards, shuts down or tempfails), the reply
 * Postfix's smtpd gives when cleanup's queue file grows past the limit.  A
 * spool that cannot be read or a replacement that cannot be stored answers
 * "451 4.3.0 Error: queue file write error" (with a warning).
 *
 * THREADS: a struct milters and everything it calls back belong to the loop
 * it was made on (milter_io's loop must be that loop).  A read on the pool
 * touches only its own job (a spool reference, offsets, a buffer); a
 * cancelled one is marked abandoned and freed when its answer comes.
 */
#ifndef MXGATE_MILTER_MILTER_CLIENT_H
#define MXGATE_MILTER_MILTER_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conf_view;
struct event_base;
struct evdns_base;
struct milter_conf;
struct milters;

/*
 * The settings, from a service's view, for the milter list milters (the
 * value of smtpd_milters, or of smtpd_milter_maps' answer).  NULL with
 * *err_r (Postfix's fatal text; caller frees) for a bad list: an empty
 * "{ }", an unknown override, a bad time, a transport other than inet,
 * unix and local, a missing port.
 */
struct milter_conf *milter_conf_new(const char *milters, const struct conf_view *v,
				    char **err_r);
void	milter_conf_free(struct milter_conf **mcp);
size_t	milter_conf_count(const struct milter_conf *mc);

/*
 * The session's macro values: name is in braces ("{client_addr}", "{j}",
 * "{_}", "{i}", "{mail_addr}" ...); the value, or NULL when the session has
 * none (then milter_macro_defaults applies, else the macro is not sent).
 * The value need only live until the next call.  The client answers
 * {daemon_name} (milter_macro_daemon_name) and {v} (milter_macro_v) itself.
 */
typedef const char *milter_macro_fn(void *ctx, const char *name);

/* An event's answer; reply is only valid during the call. */
typedef void milter_cb(void *ctx, const char *reply);

/* dns may be NULL (then only numeric hosts and "localhost" connect). */
struct milters *milters_new(const struct milter_conf *mc, struct event_base *eb,
			    struct evdns_base *dns, milter_macro_fn *mac, void *mac_ctx);
/* Cancels what is in flight (no callback), sends QUIT, closes every socket. */
void	milters_free(struct milters **msp);

/* ---- the events (each: the callback later, exactly once, unless cancelled) ---- */

/*
 * Connect: family AF_INET, AF_INET6, AF_UNIX or anything else (unknown);
 * name "unknown" with a known address is sent as "[addr]"; port as text
 * (NULL: 0).  Connects and negotiates with each milter first.
 */
void	milters_connect(struct milters *ms, const char *name, const char *addr,
			const char *port, int family, milter_cb *cb, void *ctx);
void	milters_helo(struct milters *ms, const char *helo, milter_cb *cb, void *ctx);
/* argv[0] is the address as given ("<a@b>"), then each ESMTP parameter. */
void	milters_mail(struct milters *ms, const char *const *argv, size_t argc, milter_cb *cb,
		     void *ctx);
/*
 * rejected: the recipient was rejected by mxgate (only milters that asked
 * for rejected recipients, SMFIP_RCPT_REJ, are told; the session's macro
 * callback gives {rcpt_mailer} "error" then, as Postfix).
 */
void	milters_rcpt(struct milters *ms, const char *const *argv, size_t argc, bool rejected,
		     milter_cb *cb, void *ctx);
void	milters_data(struct milters *ms, milter_cb *cb, void *ctx);
void	milters_unknown(struct milters *ms, const char *command, milter_cb *cb, void *ctx);
/*
 * How the message is read and a replaced body stored (required before
 * milters_message()): pool runs the reads (its answers posted to loop, the
 * loop of eb); new_spool(ctx) makes an empty spool for a body replacement.
 */
struct loop;
struct spool;
struct workpool;
struct milter_io {
	struct loop *loop;
	struct workpool *pool;
	struct spool *(*new_spool)(void *ctx);
	void   *ctx;
};
void	milters_set_io(struct milters *ms, const struct milter_io *io);

/* The bytes of one read from a spool, and the most the header section may hold. */
#define MILTER_PIECE		((size_t)2 * 65536)
#define MILTER_HEADER_MAX	((size_t)1024 * 1024)

/*
 * The message: sp, committed (a reference is taken).  hide: the text of a
 * first header the milters do not see (mxgate's Received:, as cleanup was
 * given it, continuation lines included) if the message starts with it, or
 * NULL.  The edit list and the view are reset at the start.
 */
void	milters_message(struct milters *ms, struct spool *sp, const char *hide, milter_cb *cb,
			void *ctx);

/* The answer for a command without an event of its own (Postfix's milter_other_event()). */
const char *milters_other(struct milters *ms);
/*
 * The transaction ends (RSET, a new MAIL after a finished message, a
 * rejected DATA): ABORT to every milter in a transaction, no answer
 * (Postfix's milter_abort()).  Cancels an event still in flight.
 */
void	milters_abort(struct milters *ms);
/* The session ends: QUIT, close (Postfix's milter_disc_event()). */
void	milters_disconnect(struct milters *ms);
/*
 * The event in flight gets no callback.  A milter that still owes its
 * answer is out of step with us and is closed (default action from then on).
 */
void	milters_cancel(struct milters *ms);

/* ---- the message's changes ---- */

/*
 * milter_header_checks: each header that a milter adds, inserts or changes
 * goes, as it is to be stored ("Name: value", or "Name:value" with
 * SMFIP_HDR_LEADSPC), to fn before it becomes an edit (Postfix checks it
 * in cleanup_add_header(), cleanup_patch_header()).  fn returns 0 (keep),
 * 1 (drop: the header is not added, a change is not made) or 2 (store
 * *replace_r, "Name: value", malloc'd, instead).  A non-NULL *reply_r ("D",
 * or "5XX ..." / "4XX ...", valid until the next message) ends the
 * message's edits: the later ones are skipped and the message's answer is
 * that reply, as for Postfix's milter_hbc_reply.
 */
typedef int milter_header_check_fn(void *ctx, const char *header, char **replace_r,
				   const char **reply_r);
void	milters_set_header_check(struct milters *ms, milter_header_check_fn *fn, void *ctx);

enum milter_edit_type {
	MILTER_EDIT_ADD_HEADER,		/* name, value */
	MILTER_EDIT_INSERT_HEADER,	/* index (0: above every header, mxgate's Received:
					 * included; N: after the Nth header, Received:
					 * counting as the first), name, value */
	MILTER_EDIT_CHANGE_HEADER,	/* index (the Nth header of that name, from 1, in
					 * the message as milters see it), name, value */
	MILTER_EDIT_DELETE_HEADER,	/* index, name (a CHGHEADER with an empty value) */
	MILTER_EDIT_REPLACE_BODY,	/* size: the new body's length (LF line ends); the
					 * body is in body, a committed spool */
	MILTER_EDIT_CHANGE_FROM,	/* name: the address, value: ESMTP args ("" none) */
	MILTER_EDIT_ADD_RCPT,		/* name: the address, value: ESMTP args ("" none) */
	MILTER_EDIT_DELETE_RCPT,	/* name: the address */
	MILTER_EDIT_QUARANTINE,		/* name: the reason */
};

struct milter_edit {
	enum milter_edit_type type;
	uint32_t index;
	char   *name;
	char   *value;
	/*
	 * The header text as it goes into the message after "name:": a space
	 * then value, unless the milter negotiated SMFIP_HDR_LEADSPC
	 * (Postfix's hdr_space).
	 */
	char   *text;
	const char *milter;		/* which milter asked (its name) */
	char   *new_name;		/* CHANGE_HEADER: milter_header_checks' REPLACE gave the
					 * header this name (NULL: name) */
	struct spool *body;		/* REPLACE_BODY: the new body */
	size_t	size;			/* REPLACE_BODY: its length */
};

/* The changes of the last milters_message(), in the order they were asked. */
const struct milter_edit *milters_edits(const struct milters *ms, size_t *n_r);

struct milter_header {
	char   *raw;			/* the whole header, "Name: value", continuation
					 * lines joined with "\n", no final newline */
	size_t	name_len;		/* raw[0 .. name_len) is the name */
	size_t	value_off;		/* raw + value_off is the value after the colon */
};

/*
 * The message after every change of the last milters_message(): its
 * headers in order (the hidden header not among them).  Valid until the
 * next message or milters_free().
 */
void	milters_view(const struct milters *ms, const struct milter_header **hdrs_r,
		     size_t *nhdrs_r);
/*
 * Its body (LF line ends): len_r bytes of the returned spool (committed)
 * from off_r.  The spool is valid until the next message or milters_free()
 * (take a reference to keep it).
 */
struct spool *milters_body(const struct milters *ms, size_t *off_r, size_t *len_r);
/* The hidden header as the message has it (its length in *len_r; 0: none). */
const char *milters_hidden(const struct milters *ms, size_t *len_r);

#endif
