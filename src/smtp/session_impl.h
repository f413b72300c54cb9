/*
 * session_impl.h: the session's internals, shared by smtp/session.c (the
 * engine: input, replies, the tarpit, waits, bookkeeping, the greeting) and
 * smtp/commands.c (the command table and its handlers).  Nothing else
 * includes it.
 */
#ifndef MXGATE_SMTP_SESSION_IMPL_H
#define MXGATE_SMTP_SESSION_IMPL_H

#include <sys/socket.h>
#include <sys/time.h>

#include "policy/restrict.h"
#include "smtp/address.h"
#include "smtp/linereader.h"
#include "smtp/reply.h"
#include "smtp/session.h"
#include "smtp/txn.h"
#include "util/buf.h"

struct loop_timer;
struct session;

/* ---- commands (commands.c) ---- */

enum cmd_flags {
	CMD_JUNK = 1 << 0,	/* counts against smtpd_junk_command_limit */
	CMD_LAST = 1 << 1,	/* must be last in a pipelined group (RFC 2920) */
	CMD_PRE_TLS = 1 << 2,	/* allowed before STARTTLS at the encrypt level */
};

/*
 * What a handler returns.  CMD_WAIT: it started a request and will finish
 * by calling session_command_done() itself (perhaps before it returns, when
 * the answer came at once).  CMD_BODY: DATA or BDAT now reads a body; the
 * command is complete when the body has been handled.
 */
enum cmd_result { CMD_OK = 0, CMD_FAIL = -1, CMD_WAIT = 1, CMD_BODY = 2 };

typedef enum cmd_result (*cmd_fn)(struct session *s, const char *args);

struct cmd {
	const char *name;
	const char *stat;	/* name in the disconnect line */
	cmd_fn	fn;
	int	flags;
};

/* Postfix's order, which is also the order of the "disconnect" line. */
extern const struct cmd session_cmds[];
extern const size_t session_ncmds;
#define CMD_MAX		16	/* room for the table plus "unknown" */

const struct cmd *session_cmd_find(const char *verb, size_t len);
enum cmd_result session_cmd_data(struct session *s, const char *args);
enum cmd_result session_cmd_bdat(struct session *s, const char *args);

/*
 * The state a BDAT chunk that is being read (and, after it, the chunk that
 * was read) leaves for logs, Postfix's: "reject: BDAT content from ...".
 */
#define SESSION_BDAT_CONTENT	"BDAT content"

/* ---- the session ---- */

enum sess_state {
	S_CONNECT,	/* before the banner */
	S_CMD,		/* reading commands */
	S_DATA,		/* reading a DATA body */
	S_BDAT,		/* reading a BDAT chunk */
};

/* The request a waiting session has in flight. */
enum sess_wait {
	W_NONE,
	W_ANVIL,	/* struct anvil_req */
	W_COMMIT,	/* the txn's spool commit */
	W_SPOOL,	/* the txn's spool is busy: it takes no bytes now */
	W_DELIVER,	/* struct deliver_req */
	W_RESTRICT,	/* struct restrict_job: the restrictions, and a RCPT's tables */
	W_SLEEP,	/* a restriction's "sleep": s->sleep_t */
	W_DNS,		/* struct dns_query: a DNS lookup for the restrictions */
	W_POLICY,	/* struct policy_query: a policy server's answer */
	W_TLS,		/* the transport's TLS handshake (session_on_tls()) */
	W_TLS_RATE,	/* struct anvil_req: anvil's new TLS session rate */
	W_MILTER,	/* struct milters: an event's answer (session_milter.c) */
	W_MILTER_READ,	/* a pool job of session_milter.c: a piece of the changed copy's
			 * body read, the recipients a milter added looked up, or the
			 * client address in smtpd_milter_maps */
};

/* How a command continues once its restrictions are evaluated (out->verdict PASS or REJECT). */
typedef void session_restrict_next(struct session *s, struct restrict_out *out);

/* How MAIL, RCPT and VRFY continue once anvil has counted them (rate -1: no limit). */
typedef void session_rate_next(struct session *s, int rate);

struct outline {		/* a reply line waiting for the tarpit timer */
	struct outline *next;
	int	delay;
	size_t	len;
	char	data[];
};

struct session {
	const struct session_env *env;	/* the server's, outlives the session */
	const struct smtp_service *ss;
	const struct session_io *io;
	void   *ioc;
	struct loop *loop;
	enum sess_state state;
	enum sess_wait wait;
	void   *wait_handle;		/* NULL while the answer is being delivered at once */
	const char *where;		/* for "<reason> after <where>" */
	char	addr[64];
	char   *namaddr;		/* "name[addr]"; NULL before session_start() */
	char   *name;
	char   *reverse_name;		/* the PTR name, verified or not, or "unknown" */
	int	name_status, reverse_status;	/* policy/restrict.h: enum restrict_peer */
	char   *helo;
	int	esmtp;
	union session_addr sa;
	char	client_port[8];		/* for policy servers; "" when unknown */
	char	server_addr[64], server_port[8];	/* where the client connected */
	int	closing, hangup;
	int	local_error;	/* session_set_local_error(): 421 at once */
	int	output_blocked;		/* replies wait for the client: no new commands */
	int	in_process;		/* session_process() is on the stack */
	int	bare_lf_reject;		/* smtpd_forbid_bare_newline=reject, client not excluded */
	int	error_count, junk_cmds;
	unsigned stat_ok[CMD_MAX], stat_total[CMD_MAX];
	const struct cmd *cur;		/* the command being executed */
	const char *args;		/* its arguments (in lr.line) */
	session_rate_next *rate_next;	/* MAIL/RCPT/VRFY after anvil's answer */
	struct outline *out_head, *out_tail;
	struct loop_timer *tarpit_t, *deadline_t, *resume_t;
	int	tarpit_armed;
	struct timeval deadline_at;
	int	deadline_armed;
	struct linereader lr;
	struct txn txn;
	struct smtp_path path;		/* MAIL/RCPT's address across a wait */
	char   *arg;			/* VRFY's argument across a wait */
	int	arg_utf8;		/* VRFY ... SMTPUTF8 */

	/* restrictions (policy/restrict.h) */
	struct restrict_state rst;
	char   *access_denied;		/* smtpd_delay_reject = no: the client's reject */
	int	ill_pipelining;		/* improper pipelining was seen (reject_unauth_pipelining) */
	struct restrict_req rq;		/* the evaluation in progress */
	session_restrict_next *restrict_next;
	struct loop_timer *sleep_t;
	struct restrict_answers *answers;	/* DNS and policy answers (restrict.h) */
	char   *ask_name;		/* the question in flight (W_DNS, W_POLICY) */
	int	ask_type;
	bool	ask_rbl;
	char   *ask_request;
	unsigned ask_serial;		/* session_restrict() calls */

	/* anvil */
	char   *ident;			/* "<service>:<client key>"; NULL: exempt or off */
	char   *range;			/* the client key when it is a network, for logs */
	int	anvil_connected;	/* a connect was counted: disconnect at the end */

	/* TLS (net/tls.h) */
	struct tls_info *tls;		/* the handshake's facts; NULL: plaintext */
	int	tls_start;		/* start the handshake once the queued replies are out */

	/* milters (smtp/session_milter.c, milter/milter_client.h); ms NULL: none */
	struct milters *ms;
	struct milter_conf *milter_own;	/* smtpd_milter_maps' list for this session */
	void	(*milter_next)(struct session *s, const char *reply);
	int	milter_rcpt_new;	/* RCPT: this recipient is new in the transaction */
	int	milter_need_abort;	/* a MAIL event was sent: ABORT when the transaction ends */
	int	milter_discard;		/* a milter said discard: skip milters, store nothing */
	int	milter_hold;		/* a milter said quarantine (Postfix's HOLD flag) */
	int	milter_hbc;		/* milter_header_checks rejected or discarded the message */
	char   *milter_rcpt_rej;	/* RCPT: the restriction's reject text, for macros */
	char	milter_buf[512];	/* a macro's value */
	char   *milter_quoted;		/* a macro's value */
	char   *milter_reply;		/* the 421 for a milter's "S" */
	size_t	milter_size;		/* the changed copy's size for logs (0: the spool's) */
	int    *milter_abandon;		/* W_MILTER_READ's job: set to drop it */
	char   *milter_received;	/* our Received: header as cleanup was given it */
	struct spool *milter_store;	/* the changed copy being written */
	struct spool *milter_copy_src;	/* the body it copies (the milters' view) */
	size_t	milter_copy_off, milter_copy_left;
};

/* Replies (session.c).  They return the reply's code. */
int session_reply(struct session *s, enum reply_id id, ...);
int session_reply_text(struct session *s, const char *text);
void session_send(struct session *s, const struct buf *lines);
/* End the session once the replies already queued (tarpit included) are written. */
void session_hangup(struct session *s);

/* A handler that returned CMD_WAIT or CMD_BODY finishes here (ok: CMD_OK or CMD_FAIL). */
void session_command_done(struct session *s, enum cmd_result rc);
/* Wait for a request (kind) that may already have answered (handle NULL). */
void session_wait(struct session *s, enum sess_wait kind, void *handle);
/* The answer came: the session no longer waits. */
void session_waited(struct session *s);

void session_enter_state(struct session *s, enum sess_state state);
void session_log_reject(struct session *s, const char *verb, const char *reply,
			const char *from, const char *rcpt);
void session_limit_warning(struct session *s, const char *what, int value);
const char *session_proto(const struct session *s);
const char *session_skip_space(const char *p);
/* The event loop's cached time, in whole seconds, for anvil. */
long session_now(struct session *s);

/*
 * Evaluate a restriction stage for the current command (RCPT and VRFY:
 * recipient is the address); next(s, out) continues it with the verdict,
 * after any "sleep" the restrictions asked for.  The log lines of the
 * evaluation are written before next runs.
 */
void session_restrict(struct session *s, enum restrict_stage stage, const char *recipient,
		      session_restrict_next *next);
/* Read input again after a continuation that entered a body state (DATA). */
void session_body_resume(struct session *s);
/* smtpd_delay_reject = no: evaluate the client restrictions, then the banner. */
void session_restrict_connect(struct session *s);

/*
 * STARTTLS: start the handshake once the queued replies (the 220) are
 * written; the session waits (W_TLS) and continues in session_on_tls().
 */
void session_starttls(struct session *s);

/* A new spool for a message body (the environment's kind). */
struct spool *session_new_spool(struct session *s);
/* DATA or the first BDAT: a new spool, and cleanup (deliver/cleanup.h) in front of it. */
void session_body_start(struct session *s);
/* txn_body_flush(), and cleanup's log lines logged. */
void session_body_flush(struct session *s);

/* The message is complete (DATA dot, BDAT LAST): check it, store it, reply. */
void session_message_end(struct session *s, int too_big, int bare_lf, size_t size);
/* The transaction is over: reset it (RSET, HELO, after a message). */
void session_transaction_reset(struct session *s);

/* ---- milters (session_milter.c) ---- */

/* How a command continues with a milter's answer (NULL: go on; else a reply, logged). */
typedef void session_milter_next(struct session *s, const char *reply);

/* smtpd_milters: make the session's conversation (none without milters). */
void session_milter_init(struct session *s);
/* Each event; next runs later with the answer (at once, reply NULL, without milters). */
void session_milter_connect(struct session *s, session_milter_next *next);
void session_milter_helo(struct session *s, const char *helo, session_milter_next *next);
void session_milter_mail(struct session *s, session_milter_next *next);
void session_milter_rcpt(struct session *s, const char *reject, session_milter_next *next);
void session_milter_data(struct session *s, session_milter_next *next);
void session_milter_unknown(struct session *s, const char *verb, session_milter_next *next);
/* AUTH, STARTTLS, VRFY, ETRN: a 4XX/5XX reply to give, or NULL. */
const char *session_milter_other(struct session *s);
/*
 * Postfix's check_milter_reply(): log the answer (milter-reject, -discard,
 * -hold) at s->where and return the reply to give, or NULL (go on).
 */
const char *session_milter_check(struct session *s, const char *reply);
/* A new HELO replaces an accepted one: ABORT (Postfix's helo_reset()). */
void session_milter_helo_reset(struct session *s);
/* The transaction ends (RSET, HELO, after a message, a rejected MAIL). */
void session_milter_abort(struct session *s);
/* The session ends: disconnect, free (an event in flight is cancelled). */
void session_milter_end(struct session *s);
void session_milter_cancel(struct session *s);
/*
 * The message is committed: run it through the milters, then deliver
 * (session_deliver()) the stored copy as they changed it, or reply as they say.
 */
int session_milter_wants_message(const struct session *s);
void session_milter_message(struct session *s);
/* Deliver the committed message (session.c): 250 and nothing stored after a discard. */
void session_deliver(struct session *s);

#endif
