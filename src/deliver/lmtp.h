/*
 * lmtp: an LMTP client (RFC 2033) that hands one message to one LMTP server
 * (Dovecot's lmtp, Cyrus ...) for a group of recipients, as Postfix's lmtp(8)
 * does for one queue file and one nexthop.
 *
 * Nexthops (Postfix's lmtp(8) syntax, the part after "lmtp:" in a transport):
 *	unix:/path		a UNIX-domain socket; a relative path is relative
 *				to queue_directory, as Postfix's lmtp(8), which
 *				runs there ("unix:private/dovecot-lmtp")
 *	inet:host[:port]	TCP; host may be [host] or a bracketed IPv6
 *	host[:port], [host][:port]	the same as inet:
 * The default port is lmtp_tcp_port (24).  No MX lookup, ever (as lmtp(8)).
 * A host name is resolved with getaddrinfo() (/etc/hosts first), and each of
 * its addresses is tried in turn.
 *
 * The dialogue: greeting, LHLO lmtp_lhlo_name, MAIL FROM:<sender>, one RCPT
 * TO:<address> per recipient; when every RCPT was accepted, DATA, the
 * message (CRLF line ends, dot-stuffed), ".", and one reply per recipient;
 * then QUIT.  When the server refuses any RCPT, no DATA is sent (the
 * message is not delivered to anybody: lmtp_deliver() says which recipient
 * was refused and how) and the session ends with RSET and QUIT.  No
 * pipelining, no connection reuse: one connection per call.
 *
 * Every wait is bounded by Postfix's lmtp_*_timeout of that step (connect:
 * lmtp_connect_timeout, 0 meaning the kernel's own bound; greeting and LHLO:
 * lmtp_lhlo_timeout; MAIL, RCPT, DATA, the message, the final dot: their own;
 * QUIT and RSET: lmtp_quit_timeout / lmtp_rset_timeout, whose failure
 * changes nothing).  A reply line longer than 4096 bytes, or a reply of
 * more than 100 lines, is a protocol error.  Control bytes in a reply (TAB
 * too) are stored as '?': the replies go into log lines and, for a refusal,
 * into the SMTP client's reply.
 *
 * THREADS: lmtp_deliver() blocks (connect, poll, read, write): call it on a
 * writers-pool thread only, never on an event loop.  It keeps no state.
 */
#ifndef MXGATE_DELIVER_LMTP_H
#define MXGATE_DELIVER_LMTP_H

#include <stddef.h>
#include <sys/time.h>

struct buf;
struct conf_view;
struct spool;

/* The lmtp(8) settings a delivery uses (copied: nothing points into conf). */
struct lmtp_conf {
	long	connect_timeout;	/* lmtp_connect_timeout, s; 0: the kernel's */
	long	lhlo_timeout;		/* lmtp_lhlo_timeout (the greeting too) */
	long	mail_timeout;
	long	rcpt_timeout;
	long	data_init_timeout;
	long	data_xfer_timeout;
	long	data_done_timeout;
	long	rset_timeout;
	long	quit_timeout;
	long	tcp_port;		/* lmtp_tcp_port */
	char	lhlo_name[256];		/* lmtp_lhlo_name */
	char	queue_directory[1024];	/* for unix: paths that are relative */
	char	myhostname[256];	/* the host part of relay= for unix: sockets */
};

/* The settings of one configuration view (any thread that may read it). */
void lmtp_conf_from_view(struct lmtp_conf *c, const struct conf_view *cf);

/*
 * Is nexthop something lmtp_deliver() can connect to?  NULL when it is, else
 * a static reason ("names no LMTP server", ...).  Does no I/O.
 */
const char *lmtp_nexthop_problem(const char *nexthop);

struct lmtp_msg {
	const char *sender;	/* RFC 5321 form, "" for <> */
	const char *received;	/* headers put before the body (LF line ends), or NULL */
	const struct spool *body; /* committed: the message with LF line ends */
};

struct lmtp_rcpt {
	const char *address;	/* RFC 5321 form */
	/* results: */
	int	code;		/* the server's reply code for it; 0: none (not asked,
				 * or the session failed before its answer) */
	char	dsn[16];	/* enhanced status code: the server's, else derived
				 * from code ("2.0.0", "4.0.0", "5.0.0") */
	char   *reply;		/* the whole reply, lines joined by a space, malloc'd */
	const char *stage;	/* the command it answered: "RCPT TO", "end of DATA" */
};

struct lmtp_result {
	char	relay[1400];	/* "host[addr]:port" or "host[path]" (relay= in logs);
				 * "none" when no connection was made */
	struct timeval conn_done; /* when LHLO was answered (delays= third part) */
	int	rcpt_refused;	/* a RCPT was refused: no DATA was sent */
	char	dsn[16];	/* after a session failure: 4.4.1 (no connection),
				 * 4.4.2 (lost or timed out), or the server's */
};

/*
 * Deliver msg to the n recipients through the server that nexthop names.
 * Returns 0 when the dialogue went through to the per-recipient replies
 * after the final dot, or stopped because a RCPT was refused (res->
 * rcpt_refused): each recipient has its code then (0 for those not asked).
 * Returns -1 when the session failed (no server, timeout, protocol error, a
 * refusal of LHLO, MAIL or DATA): *err says why, Postfix's way ("connect to
 * host[path]: Connection refused", "host h[a] said: 451 ... (in reply to
 * MAIL FROM command)", "conversation with h[a] timed out while sending end
 * of data -- message may be sent more than once"), and no recipient counts
 * as delivered, although after the final dot some may have been (the
 * caller treats them all as not delivered: a duplicate, never a loss).
 * Free each rcpts[i].reply with free().
 */
int lmtp_deliver(const struct lmtp_conf *c, const char *nexthop, const struct lmtp_msg *msg,
		 struct lmtp_rcpt *rcpts, size_t n, struct lmtp_result *res, struct buf *err);

/* Postfix's format_tv(): a delay with 2 significant digits, at most `maxdig`
 * decimals (delay_logging_resolution_limit, 2), appended to out. */
void lmtp_format_delay(struct buf *out, const struct timeval *from, const struct timeval *to);

#endif
