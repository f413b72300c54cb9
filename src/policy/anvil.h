/*
 * anvil: per-client connection counts and event rates, as Postfix's anvil(8)
 * keeps them for smtpd(8) (POSTFIX_REFERENCE.md section 3).
 *
 * One interface, several backends.  A struct anvil is opaque: there is the
 * in-memory backend (anvil_memory_create()) and the Redis one that several
 * MX hosts share (anvil_redis.c, "redis:HOST:PORT" or "redis:unix:PATH").  The daemon creates one struct anvil, shares it
 * between all event-loop threads, and keeps it across a configuration reload
 * so that counters survive SIGHUP (anvil_set_rate_time_unit() changes the
 * window length in place).
 *
 * Idents.  Every request names an ident "<service>:<client-key>", built by
 * the caller: <service> is the master.cf service name ("smtp",
 * "127.0.0.1:2729"), <client-key> comes from anvil_client_key().
 * anvil_ident() builds it the way Postfix does.  Separate services have
 * separate counters for the same client.
 *
 * Asynchronous by design.  Every request takes the caller's loop
 * (util/loop.h), a callback and a context.  The callback receives the
 * reply exactly once, on that loop's thread, and is never called with a
 * backend lock held, so it may issue further anvil requests.  CALLERS MUST
 * HANDLE BOTH KINDS OF COMPLETION:
 *   - synchronous: the in-memory backend calls cb before the request function
 *     returns, and the request function then returns NULL (so cb may run
 *     before the code after the call, and a session that cb frees must not
 *     be touched after the call returns);
 *   - asynchronous: a networked backend (or the test backend that delays
 *     its answers) calls cb later, from the loop the request was made on;
 *     the request function returns a handle, valid until cb runs.
 * anvil_cancel(handle) withdraws a request: cb will not be called, and a
 * late answer is dropped.  The event itself may still have been counted (a
 * cancelled connect still needs its disconnect).  The reply struct is only
 * valid during the callback: copy what you need.
 *
 * The answer bound.  A backend that does not answer within the bound set by
 * anvil_set_timeout() (mxgate_anvil_timeout, 5 s by default) is given up
 * on: the request is cancelled in the backend, cb gets status -1, and the
 * warning "anvil: no answer to a <op> request within <N>s; applying no
 * limit" is logged (at most once a minute, with the number of requests
 * given up on since).  It is the OUTER bound: a backend's own fallback (the
 * Redis backend's local counts) acts sooner.
 *
 * Fail open.  status -1 means the backend could not answer; the caller then
 * applies no limit (Postfix smtpd does the same when anvil fails), and mail
 * keeps flowing.
 *
 * Time.  Every request carries the caller's notion of "now" in whole
 * seconds (the event loop's cached time), which keeps tests deterministic.
 * Small differences between threads are harmless.
 *
 * The fixed-window algorithm (section 3.3):
 *   - per ident: count (concurrent connections), five rate counters
 *     (connection, message, recipient, newtls, auth) and ONE shared window
 *     start, one-second resolution;
 *   - on every increment: if start + unit < now (strictly), all five rates
 *     are reset and start = now; then the counter is incremented, saturating
 *     at INT_MAX; a connect also increments count after the rate update.
 *     An event exactly `unit` seconds after start stays in the old window;
 *   - read-only queries (newtls_report, lookup) report 0 rates for an
 *     expired window without starting a new one; an unknown ident reports 0;
 *   - when count drops to 0 the entry becomes idle; it is deleted `unit`
 *     seconds later (at now >= idle_since + unit) unless a new connect comes
 *     first, so rate history survives at least one time unit.  Removal is
 *     done by anvil_sweep(); until then every request treats an expired idle
 *     entry as absent.
 */
#ifndef MXGATE_POLICY_ANVIL_H
#define MXGATE_POLICY_ANVIL_H

#include <stddef.h>
#include <time.h>

struct anvil;
struct buf;
struct sockaddr;

/* Defaults, as mxgate's parameter table has them. */
#define ANVIL_DEF_RATE_TIME_UNIT	60	/* anvil_rate_time_unit, seconds */
#define ANVIL_DEF_MAX_ENTRIES		100000
#define ANVIL_DEF_V4_PREFIX		32
#define ANVIL_DEF_V6_PREFIX		84	/* DESIGN.md: Postfix 3.8's grouping */

/* Longest client key anvil_client_key() produces, with its NUL. */
#define ANVIL_CLIENT_KEY_LEN		64	/* "ffff:...:ffff/128" is 44 */

struct anvil_reply {
	int status;	/* 0 ok; -1 backend failure: apply no limit (fail open) */
	int count;	/* connect, lookup: concurrent connections; disconnect:
			 * connections left */
	int rate;	/* connect: connection rate; message: message rate;
			 * recipient: recipient rate; newtls, newtls_report: new
			 * TLS session rate; auth: AUTH rate; lookup: connection
			 * rate */
	/* lookup only (0 otherwise): */
	int mail;	/* message rate */
	int rcpt;	/* recipient rate */
	int newtls;	/* new TLS session rate */
	int auth;	/* AUTH rate */
};

typedef void anvil_cb(void *ctx, const struct anvil_reply *r);

struct anvil_req;
struct loop;

/*
 * The backend that mxgate_anvil_backend names: "memory" or "redis:..." (built
 * in; see anvil_redis_create(), which also reads anvil_get_settings()), or
 * "<name>[:<argument>]" for a backend registered with
 * anvil_backend_register() (the test builds register "test-delay").
 * Returns NULL with *err_r set (caller frees) for an unknown name or a bad
 * argument; the message names the value.
 */
struct anvil *anvil_create(const char *spec, long rate_time_unit, size_t max_entries,
			   char **err_r);

/* A backend constructor: arg is the text after "<name>:" ("" when none). */
typedef struct anvil *anvil_factory(const char *arg, long rate_time_unit, size_t max_entries,
				    char **err_r);
/* Make "<name>[:arg]" known to anvil_create().  Call before threads start. */
void anvil_backend_register(const char *name, anvil_factory *create);

/*
 * Settings of the networked backends (the Redis one), read by anvil_create()
 * from the process-wide copy that anvil_set_settings() keeps.  Call it
 * before anvil_create(), from one thread.  The strings are copied.
 */
struct anvil_settings {
	const char *redis_prefix;		/* mxgate_anvil_redis_prefix ("mxgate:") */
	const char *redis_password_file;	/* mxgate_anvil_redis_password_file ("": none) */
	long	lease_time;			/* mxgate_anvil_lease_time, seconds (60) */
};
void anvil_set_settings(const struct anvil_settings *s);
/* The current settings (defaults until anvil_set_settings()). */
const struct anvil_settings *anvil_get_settings(void);
#define ANVIL_DEF_LEASE_TIME		60

/*
 * The event loops a networked backend works on.  The daemon attaches every
 * worker loop (with its libevent base) before the loops run, and detaches
 * them after they stopped and before their bases are freed.  The memory
 * backend ignores both.  A request made on a loop that was never attached
 * is answered from the backend's local state.
 */
struct event_base;
void anvil_attach_loop(struct anvil *a, struct loop *l, struct event_base *base);
void anvil_detach_loop(struct anvil *a, struct loop *l);

/*
 * Operator views (`mxgate anvil show|clear`, the control socket).
 * anvil_list() calls fn for every live ident that matches: match NULL or ""
 * is every ident; else the ident itself ("smtp:192.0.2.1") or its client
 * key (the text after the service name: "192.0.2.1").  r holds count and
 * all five rates as anvil_lookup() reports them.  Returns the number listed.
 * The Redis backend lists this host's local counts (the shared ones are
 * read from Redis by `mxgate anvil show` itself).
 * anvil_clear() resets the rates of every matching ident (the window starts
 * again at now); the connection count, which counts live sessions, stays.
 * Returns the number of idents cleared.
 */
typedef void anvil_list_fn(void *ctx, const char *ident, const struct anvil_reply *r);
size_t anvil_list(struct anvil *a, time_t now, const char *match, anvil_list_fn *fn, void *ctx);
size_t anvil_clear(struct anvil *a, time_t now, const char *match);
/* Does ident match match as anvil_list() matches? */
int anvil_ident_matches(const char *ident, const char *match);

/* The answer bound, in milliseconds (values below 1 are taken as 1). */
void anvil_set_timeout(struct anvil *a, long msec);
#define ANVIL_DEF_TIMEOUT_MS		5000	/* mxgate_anvil_timeout */

/*
 * In-memory backend, shared by all threads of the process: a hash table of
 * 64 shards with a mutex each.  rate_time_unit is anvil_rate_time_unit in
 * seconds (values below 1 are taken as 1).
 *
 * MEMORY BOUND: the table holds at most max_entries idents (0 is taken as
 * ANVIL_DEF_MAX_ENTRIES).  When a new ident arrives at the bound, expired
 * idle entries are swept first; if the table is still full, the idle entry
 * (count 0) closest to expiry is evicted, losing its rate history early.  If
 * every entry is connected (count > 0), the new ident is NOT stored and the
 * request answers status 0 with count 1 and rate 1, so that the client is
 * not limited (fail open), and a warning is logged at most once a minute.  A
 * later disconnect for an ident that was never stored does nothing.
 * Memory use is about (100 + ident length) bytes per entry.
 *
 * Never fails (allocation failure ends the process, util/xalloc.h).
 */
struct anvil *anvil_memory_create(long rate_time_unit, size_t max_entries);

/*
 * Redis backend (anvil_redis.c): arg is "HOST:PORT" or "unix:PATH".  Reads
 * the password file now (so that it may be readable by root only); makes
 * no connection until a loop is attached.  Returns NULL with *err_r set
 * for a bad argument or an unreadable password file.
 */
struct anvil *anvil_redis_create(const char *arg, long rate_time_unit, size_t max_entries,
				 char **err_r);
/*
 * `mxgate anvil show|clear` against Redis itself (blocking, a 2 s bound per
 * command; the settings as for anvil_redis_create()).  show (clear == 0)
 * calls fn for every ident under the prefix that matches (as anvil_list():
 * count = live leases of every node, the rates of the current window of
 * rate_time_unit); clear deletes their rate windows (leases stay: they are
 * live sessions).  Returns the number of idents listed or cleared, or -1
 * with *err_r set.
 */
long anvil_redis_admin(const char *arg, int clear, const char *match, long rate_time_unit,
		       anvil_list_fn *fn, void *ctx, char **err_r);

/* The Redis backend's answer bound: past it, the local counts answer. */
#define ANVIL_REDIS_BOUND_MS		200

/* Destroy the object and set *ap to NULL.  NULL *ap is fine.  No request may
 * be running or pending. */
void anvil_free(struct anvil **ap);

/* Change anvil_rate_time_unit in place (reload): counters and windows are
 * kept; the new unit applies from the next request on. */
void anvil_set_rate_time_unit(struct anvil *a, long rate_time_unit);

/*
 * Requests, one per request of Postfix's anvil protocol.  ident must be a
 * NUL-terminated string; the backend copies what it keeps.  l is the
 * caller's loop: cb runs there.  Each returns a handle while the answer is
 * still to come, and NULL when cb already ran.  cb may be NULL (no answer
 * wanted, as for most disconnects): then the result is always NULL.
 */
/* count++ and connection rate++: reply count, rate.  Every connect that the
 * caller counts needs exactly one anvil_disconnect() later, also when the
 * client was refused for its count or rate (rejected events still count). */
struct anvil_req *anvil_connect(struct anvil *a, struct loop *l, const char *ident, time_t now,
				anvil_cb *cb, void *ctx);
/* count-- (never below 0); at 0 the entry starts to expire. */
struct anvil_req *anvil_disconnect(struct anvil *a, struct loop *l, const char *ident, time_t now,
				anvil_cb *cb, void *ctx);
/* Message (MAIL) rate++: reply rate. */
struct anvil_req *anvil_message(struct anvil *a, struct loop *l, const char *ident, time_t now,
				anvil_cb *cb, void *ctx);
/* Recipient (RCPT and VRFY) rate++: reply rate. */
struct anvil_req *anvil_recipient(struct anvil *a, struct loop *l, const char *ident, time_t now,
				anvil_cb *cb, void *ctx);
/* New TLS session rate++ (after a new, non-resumed handshake): reply rate. */
struct anvil_req *anvil_newtls(struct anvil *a, struct loop *l, const char *ident, time_t now,
				anvil_cb *cb, void *ctx);
/* New TLS session rate, read-only (at STARTTLS): reply rate. */
struct anvil_req *anvil_newtls_report(struct anvil *a, struct loop *l, const char *ident, time_t now,
				anvil_cb *cb, void *ctx);
/* AUTH rate++: reply rate. */
struct anvil_req *anvil_auth(struct anvil *a, struct loop *l, const char *ident, time_t now,
				anvil_cb *cb, void *ctx);
/* Every value, read-only: count, rate, mail, rcpt, newtls, auth. */
struct anvil_req *anvil_lookup(struct anvil *a, struct loop *l, const char *ident, time_t now,
				anvil_cb *cb, void *ctx);

/* Withdraw a pending request (on its loop's thread): cb will not run. */
void anvil_cancel(struct anvil_req *req);

/*
 * Housekeeping, called by the daemon from one event loop.
 */
/* Remove idle entries whose time is up.  Call it about once a second. */
void anvil_sweep(struct anvil *a, time_t now);

/* The number of idents stored now, expired ones not yet swept included (for
 * status output and tests); 0 from a backend that cannot tell. */
size_t anvil_entries(struct anvil *a);

/*
 * Log the peaks since the last call as process "anvil", then reset them
 * (section 3.4), in this order and only for values > 0:
 *   statistics: max connection rate <N>/<unit>s for (<ident>) at <Mmm dd hh:mm:ss>
 *   statistics: max connection count <N> for (<ident>) at <Mmm dd hh:mm:ss>
 *   statistics: max message rate <N>/<unit>s for (<ident>) at ...
 *   statistics: max recipient rate <N>/<unit>s for (<ident>) at ...
 *   statistics: max newtls rate <N>/<unit>s for (<ident>) at ...
 *   statistics: max auth rate <N>/<unit>s for (<ident>) at ...
 *   statistics: max cache size <N> at <Mmm dd hh:mm:ss>
 * Each peak names the FIRST ident and time (local time) that reached it:
 * only a strictly greater value replaces it.  The daemon calls this every
 * anvil_status_update_time and at shutdown.
 */
void anvil_log_statistics(struct anvil *a, time_t now);

/*
 * Helpers for callers.
 */
/*
 * Write the anvil key for a client address into out: the address itself
 * when the prefix is full (v4_prefix 32, v6_prefix 128), else the network in
 * CIDR form ("192.0.2.0/24", "2001:db8::/84").  An IPv4-mapped IPv6 address
 * (::ffff:192.0.2.1) counts as IPv4 and uses v4_prefix.  Returns 0, or -1
 * (out set to "" when outlen > 0) for an address family other than AF_INET
 * and AF_INET6, a prefix out of range (v4 0..32, v6 0..128) or an outlen
 * below what the key needs (ANVIL_CLIENT_KEY_LEN is always enough).
 */
int anvil_client_key(char *out, size_t outlen, const struct sockaddr *sa, int v4_prefix,
		     int v6_prefix);

/* Append "<service>:<client_key>" to out, with every non-printable byte
 * replaced by '?' (as Postfix's smtpd does). */
void anvil_ident(struct buf *out, const char *service, const char *client_key);

#endif
