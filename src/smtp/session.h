/*
 * session: the SMTP protocol of one client, from the greeting to QUIT, as
 * Postfix 3.7's smtpd(8) speaks it: the command table, the error and junk
 * counts, the tarpit, smtpd_timeout and the per-request deadline, the
 * pipelining checks, the anvil limits, and the mail transaction (through
 * smtp/txn.h).  It owns no socket and knows no libevent: bytes come and go
 * through a transport (struct session_io, smtp/transport.h implements it on
 * a bufferevent), time and timers through a loop (util/loop.h), and every
 * step that must ask someone else (anvil, a recipient table, the spool, a
 * delivery) is a request whose answer comes later.  So the same code runs
 * in the daemon, in a unit test and in the whole-session fuzzer.  A spool
 * that pushes back (spool_busy()) makes the session stop reading the body
 * until it takes bytes again.
 *
 * Suspend and resume.  A command handler either finishes at once or starts
 * a request and WAITS.  While it waits the session takes no input: what the
 * client has sent stays buffered (in the transport, then in the kernel), so
 * pipelined commands keep their order, and it resumes exactly where it
 * stopped when the answer comes.  The bookkeeping after a command (the
 * disconnect-line statistics, the error count, the junk rule, the hard
 * limit) runs once, when the command is complete, on either path.  A wait
 * is bounded by its backend (anvil's answer bound, a table's own timeouts);
 * smtpd_timeout bounds client I/O only.
 *
 * Life cycle.  session_new(), then session_start() once the client's name is
 * known (the caller does the PTR lookup).  The transport reports input,
 * drained output, a client timeout and end of input through the
 * session_on_*() functions.  When the session is over it calls io->close():
 * the transport sends what is queued and then tells ITS owner, who calls
 * session_free() at a safe point (never inside a session callback).
 * session_free() cancels the request in flight (its answer is dropped),
 * sends anvil its disconnect and logs the "disconnect from" line.
 *
 * THREADS: everything runs on env->loop's thread.
 */
#ifndef MXGATE_SMTP_SESSION_H
#define MXGATE_SMTP_SESSION_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

struct anvil;
struct deliverer;
struct spool;
struct loop;
struct event_base;
struct evdns_base;
struct session;
struct smtp_service;
struct workpool;

/* What a session needs from its server; the caller keeps all of it alive. */
struct session_env {
	struct loop *loop;
	struct anvil *anvil;
	struct workpool *lookups;	/* recipient tables */
	struct workpool *remote_lookups;	/* those with a remote table */
	struct deliverer *deliver;
	struct dns_client *dns;		/* the loop's resolver (NULL: every lookup fails, RETRY) */
	struct policy_client *policy;	/* the loop's policy client (NULL: every query fails) */
	atomic_long *body_bytes;	/* message bodies in memory, every session */
	uid_t	run_uid;		/* the uid mail is written as */
	int	helper;			/* the privileged delivery helper runs: any uid */
	uid_t	default_uid;		/* default_privs, for mail to root; (uid_t)-1: none */
	gid_t	default_gid;
	/* where message bodies go (deliver/spool.h); NULL: the in-memory spool */
	struct spool *(*spool_new)(void *ctx, atomic_long *total, long limit);
	void   *spool_ctx;
	/*
	 * Free bytes on the least free of the file systems that hold the spool
	 * and the mailboxes, refreshed off the loop; NULL or -1: unknown (no
	 * check at MAIL).
	 */
	atomic_long *free_bytes;
	/*
	 * The milters' libevent loop and resolver (milter/milter_client.h), and
	 * the pool that reads a stored message back for them.  milter_eb NULL
	 * (unit tests): the sessions run no milters.
	 */
	struct event_base *milter_eb;
	struct evdns_base *milter_dns;
	struct workpool *readers;
};

/*
 * The transport, as the session uses it (io is the transport's own
 * context).  Input is pulled: the session peeks and consumes what it has
 * handled, and nothing else, so unhandled bytes stay where they are.
 */
struct session_io {
	/* The first contiguous piece of unconsumed input (0: none yet). */
	size_t	(*peek)(void *io, const char **data_r);
	void	(*consume)(void *io, size_t n);
	/*
	 * Every byte the client sent that the session has not consumed: the
	 * transport's buffer and what the kernel (or TLS, after decryption)
	 * still holds.  peek_copy() copies the first max of them (for logs).
	 */
	size_t	(*pending)(void *io);
	size_t	(*peek_copy)(void *io, char *out, size_t max);
	/* Read from the network (on), or stop so the kernel pushes back (off). */
	void	(*read)(void *io, int on);
	void	(*write)(void *io, const void *data, size_t len);
	/* Bytes written and not yet sent (back-pressure). */
	size_t	(*unsent)(void *io);
	/*
	 * smtpd_timeout for reads (0: none; the session's deadline does it) and
	 * writes, in seconds: on expiry the transport calls session_on_timeout().
	 */
	void	(*timeouts)(void *io, long read_sec, long write_sec);
	/* Send what was written, then close; no session_on_*() call follows. */
	void	(*close)(void *io);
	/*
	 * Start TLS as the server (NULL: the transport has none).  What was
	 * written is sent in plaintext first; input not consumed yet is
	 * discarded.  ssl (net/tls.h's tls_server_ssl_new()) belongs to the
	 * transport from a 0 return on (on -1 the caller frees it).  The
	 * handshake takes at most timeout_sec; its end comes through
	 * session_on_tls(), never inside this call.  namaddr: for the
	 * handshake's log lines.
	 */
	int	(*starttls)(void *io, void *ssl, long timeout_sec, const char *namaddr);
};

/*
 * A client's address, as much of it as a session keeps: IPv4 or IPv6
 * (another family keeps only its family, and matches no address list).
 */
union session_addr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

/*
 * A session for a connected client (sa: its address).  Nothing is sent
 * before session_start().  env must outlive the session.
 */
struct session *session_new(const struct session_env *env, const struct smtp_service *ss,
			    const struct session_io *io, void *io_ctx, const struct sockaddr *sa,
			    socklen_t salen);

/*
 * The client's name is known ("unknown" when it could not be verified; reverse
 * is the PTR name even when unverified, for check_reverse_client_hostname_access;
 * the statuses say how each was found, net/peername.h, 0 when not known):
 * log "connect from", check for talk before the greeting, ask anvil, and
 * send the banner or the 421.
 */
void session_start(struct session *s, const char *name, const char *reverse, int name_status,
		   int reverse_status);

/*
 * Before session_start: the connection could not be set up (a bad or late
 * PROXY header, smtp/proxy.h).  session_start then logs "connect from",
 * answers "421 4.3.0 <myhostname> Server local error" and hangs up, as
 * Postfix's smtpd does with SMTPD_FLAG_HANGUP: no anvil, no banner.
 */
void session_set_local_error(struct session *s);

/* The address the client connected to (policy requests' server_address/port). */
void session_set_server(struct session *s, const struct sockaddr *sa);

/* The transport's events. */
void session_on_input(struct session *s);	/* new input is buffered */
void session_on_drained(struct session *s);	/* unsent output fell below the low mark */
void session_on_timeout(struct session *s);	/* smtpd_timeout on a read or a write */
void session_on_eof(struct session *s);		/* the client closed, or the connection broke */
/* The TLS handshake is over: info (copied) when it worked, NULL when it failed (logged). */
struct tls_info;
void session_on_tls(struct session *s, const struct tls_info *info);

/* The session asked its transport to close (it will not ask for anything else). */
int session_closed(const struct session *s);

/* Cancel what is in flight, log the disconnect, free, set *sp to NULL. */
void session_free(struct session **sp);

/* Bytes the session holds now (line reader, reply queue, transaction), for tests. */
size_t session_memory(const struct session *s);

#endif
