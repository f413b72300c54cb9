/*
 * anvil_redis: the anvil backend that several MX hosts share through one
 * Redis server (see anvil.h for the contract, README "anvil on Redis").
 *
 * Local counts all the time.  Every request is first applied to an
 * in-memory backend of our own (anvil_memory.c), synchronously.  While Redis
 * is usable the answer then comes from Redis; when it is down, slow (no
 * answer within ANVIL_REDIS_BOUND_MS) or answers with an error, the local
 * answer is given instead, so a fallback starts from real numbers and mail
 * never waits longer than the bound for Redis.
 *
 * One connection per worker loop (hiredis's async API on the loop's
 * libevent base, attached by anvil_attach_loop()); everything of a loop's
 * connection (pending requests, its sessions' leases, its timers) is used on
 * that loop's thread only, so none of it takes a lock.
 *
 * Keys, with P = mxgate_anvil_redis_prefix and a hash tag per ident:
 *   P{<ident>}:r  a hash: start (the shared window's start, seconds), conn,
 *                 mail, rcpt, ntls, auth; it expires at the end of its window
 *                 (EXPIREAT start + unit + 1: an event exactly unit seconds
 *                 after start still belongs to the window, as in memory)
 *   P{<ident>}:c  a sorted set of leases: one member per session,
 *                 "<node>/<loop>/<seq>", scored by its expiry in ms; the set
 *                 expires with its last lease
 * Each request is ONE script (EVALSHA; EVAL until the script is loaded and
 * after a NOSCRIPT), so a connect, MAIL or RCPT costs one round trip.
 *
 * Leases.  A loop keeps the members of its live sessions per ident and
 * re-adds them all every lease/3 (and right after a (re)connection, which
 * registers the sessions opened while Redis was away).  A node that dies
 * stops refreshing, and its leases drop out of every count within one lease
 * time.  Clocks: lease expiry and rate windows use each node's own clock;
 * nodes should agree on the time (NTP), a skew shifts them by the skew.
 *
 * Host names.  hiredis resolves a name with getaddrinfo() inside
 * redisAsyncConnect(), which would block the loop for as long as the name
 * server takes.  So a HOST that is not a numeric address is resolved on a
 * thread of the loop's own (a workpool of one thread), before each
 * connection attempt (its first IPv4 address, else its first IPv6 one, in
 * hiredis's order), and hiredis is given the address; the attempt's 500 ms
 * bound covers the resolution.  Stopping waits for a resolution under way.
 *
 * Failure handling.  A loop's connection that fails is dropped and tried
 * again every second.  The first failure logs one warning for the process,
 * and the first loop that gets back logs that Redis is used again: once a
 * script on its new connection has answered without an error (a Redis that
 * accepts connections but answers every script with an error, say -OOM,
 * is not back, and logs no warning per reconnection).
 */
#include "policy/anvil.h"

#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#include "log/log.h"
#include "policy/anvil_backend.h"
#include "util/buf.h"
#include "util/loop.h"
#include "util/workpool.h"
#include "util/xalloc.h"

#define RDS_RECONNECT_MS	1000	/* between two connection attempts */
#define RDS_CONNECT_MS		500	/* a connection (with AUTH, SCRIPT LOAD) must be up by then */
#define RDS_MAX_LOOPS		256
#define RDS_LEASE_BUCKETS	256	/* per loop; chained */

/* The one script: KEYS[1] rates, KEYS[2] leases; ARGV op, now (s), unit (s),
 * now (ms), lease expiry (ms), member... */
static const char rds_script[] =
	"local op, now, unit, nowms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), "
	"tonumber(ARGV[4])\n"
	"local function incr(f)\n"
	"  local s = tonumber(redis.call('HGET', KEYS[1], 'start'))\n"
	"  if s == nil or s + unit < now then\n"
	"    redis.call('DEL', KEYS[1]); s = now\n"
	"    redis.call('HSET', KEYS[1], 'start', s)\n"
	"  end\n"
	"  local v = redis.call('HINCRBY', KEYS[1], f, 1)\n"
	"  redis.call('EXPIREAT', KEYS[1], s + unit + 1)\n"
	"  return v\n"
	"end\n"
	"local function peek(f)\n"
	"  local s = tonumber(redis.call('HGET', KEYS[1], 'start'))\n"
	"  if s == nil or s + unit < now then return 0 end\n"
	"  return tonumber(redis.call('HGET', KEYS[1], f) or '0')\n"
	"end\n"
	"local function leases()\n"
	"  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', nowms)\n"
	"  return redis.call('ZCARD', KEYS[2])\n"
	"end\n"
	"local function expire_leases()\n"
	"  local top = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')\n"
	"  if top[2] then redis.call('PEXPIREAT', KEYS[2], top[2]) end\n"
	"end\n"
	"if op == 'connect' then\n"
	"  local rate = incr('conn')\n"
	"  leases()\n"
	"  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[6])\n"
	"  expire_leases()\n"
	"  return {redis.call('ZCARD', KEYS[2]), rate}\n"
	"elseif op == 'disconnect' then\n"
	"  redis.call('ZREM', KEYS[2], ARGV[6])\n"
	"  return {leases(), 0}\n"
	"elseif op == 'lease' then\n"
	"  for i = 6, #ARGV do redis.call('ZADD', KEYS[2], ARGV[5], ARGV[i]) end\n"
	"  leases(); expire_leases()\n"
	"  return {0, 0}\n"
	"elseif op == 'message' then return {0, incr('mail')}\n"
	"elseif op == 'recipient' then return {0, incr('rcpt')}\n"
	"elseif op == 'newtls' then return {0, incr('ntls')}\n"
	"elseif op == 'auth' then return {0, incr('auth')}\n"
	"elseif op == 'newtls_report' then return {0, peek('ntls')}\n"
	"elseif op == 'lookup' then\n"
	"  return {leases(), peek('conn'), peek('mail'), peek('rcpt'), peek('ntls'), peek('auth')}\n"
	"end\n"
	"return redis.error_reply('mxgate anvil: unknown request ' .. op)\n";

enum rds_state { RDS_DOWN, RDS_CONNECTING, RDS_UP };

enum rds_peak { PEAK_CONN_RATE, PEAK_CONN_COUNT, PEAK_MAIL, PEAK_RCPT, PEAK_NTLS, PEAK_AUTH,
		PEAK_N };

/* The members of one ident's leases that this loop holds. */
struct rds_lease {
	struct rds_lease *next;
	unsigned long *seq;
	size_t n, cap;
	char ident[];
};

struct anvil_rds;

struct rds_loop {
	struct anvil_rds *r;
	struct loop *loop;
	struct event_base *base;
	int index;
	redisAsyncContext *ac;
	enum rds_state state;
	int	failed;			/* has failed before: no waiting while reconnecting */
	int	proving;		/* failed: the next script answer that is not an
					 * error says Redis is back */
	char sha[48];			/* the loaded script's SHA1, "" until loaded */
	struct loop_timer *reconnect;	/* also the connection bound while connecting */
	struct loop_timer *refresh;
	struct loop_timer *drop;	/* frees a failed ac outside hiredis' callbacks */
	unsigned long seq;
	struct rds_lease *leases[RDS_LEASE_BUCKETS];
	struct rds_req *pending;	/* doubly linked */
	struct workpool *dns;		/* a host name: its resolutions; else NULL */
	struct rds_resolve *resolving;	/* the one under way, or NULL */
	char	addr[INET6_ADDRSTRLEN];	/* its answer, for the next attempt; "" none */
};

/* One resolution of r->host on rl->dns.  rl is NULL once the loop is
 * detached: done() then only frees it. */
struct rds_resolve {
	struct rds_loop *rl;
	char   *host;			/* a copy: work() never reads the loop's data */
	char	addr[INET6_ADDRSTRLEN];	/* the answer: the first address */
	char	err[128];		/* or why not */
};

/* One script call in flight.  Freed when hiredis is done with it AND the
 * caller got its answer (or needed none). */
struct rds_req {
	struct rds_req *prev, *next;	/* on rl->pending while the caller waits */
	struct rds_loop *rl;
	anvil_cb *cb;			/* NULL: answered, cancelled or none wanted */
	void   *ctx;
	enum anvil_op op;
	time_t	now;
	struct anvil_reply local;	/* the fallback answer */
	struct loop_timer *bound;
	int	in_redis;		/* hiredis still owes a callback */
	int	retried;		/* sent again with EVAL after NOSCRIPT */
	int	argc, cap;
	char  **argv;
	size_t *argvlen;
	char	ident[];
};

struct rds_peak_rec {
	int	value;
	time_t	when;
	char   *ident;
};

struct anvil_rds {
	struct anvil base;		/* first */
	struct anvil *local;		/* the in-memory counts */
	long	unit;			/* atomics */
	long	lease_ms;
	char   *host;			/* NULL for a unix socket */
	int	host_is_name;		/* host is not a numeric address: resolved off the loop */
	int	port;
	char   *path;
	char   *where;			/* "127.0.0.1:6379", "unix:/run/redis.sock" for logs */
	char   *password;		/* NULL: no AUTH */
	char   *prefix;
	char	node[64];
	int	down;			/* atomics: a warning has been logged, no "back" yet */
	pthread_mutex_t lock;		/* loops[] and the peaks */
	struct rds_loop *loops[RDS_MAX_LOOPS];
	int	nloops;
	struct rds_peak_rec peak[PEAK_N];
	size_t	peak_cache;
	time_t	peak_cache_when;
};

static void rds_connect(struct rds_loop *rl);
static void rds_fail(struct rds_loop *rl, const char *why);

static long
rds_unit(struct anvil_rds *r)
{
	return __atomic_load_n(&r->unit, __ATOMIC_RELAXED);
}

static long long
rds_now_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static struct rds_loop *
rds_loop_of(struct anvil_rds *r, struct loop *l)
{
	struct rds_loop *rl = NULL;
	int i;

	if (l == NULL)
		return NULL;
	pthread_mutex_lock(&r->lock);
	for (i = 0; i < r->nloops; i++)
		if (r->loops[i]->loop == l) {
			rl = r->loops[i];
			break;
		}
	pthread_mutex_unlock(&r->lock);
	return rl;
}

/* ---- statistics (the memory backend's lines, from the answers given) --- */

static void
rds_peak(struct anvil_rds *r, enum rds_peak which, int value, const char *ident, time_t now)
{
	struct rds_peak_rec *p = &r->peak[which];

	if (value <= __atomic_load_n(&p->value, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&r->lock);
	if (value > p->value) {
		__atomic_store_n(&p->value, value, __ATOMIC_RELAXED);
		p->when = now;
		free(p->ident);
		p->ident = xstrdup(ident);
	}
	pthread_mutex_unlock(&r->lock);
}

static void
rds_peaks(struct anvil_rds *r, enum anvil_op op, const struct anvil_reply *rep,
	  const char *ident, time_t now)
{
	static const enum rds_peak of[ANVIL_OP_N] = {
		[ANVIL_OP_CONNECT] = PEAK_CONN_RATE, [ANVIL_OP_DISCONNECT] = PEAK_N,
		[ANVIL_OP_MESSAGE] = PEAK_MAIL, [ANVIL_OP_RECIPIENT] = PEAK_RCPT,
		[ANVIL_OP_NEWTLS] = PEAK_NTLS, [ANVIL_OP_NEWTLS_REPORT] = PEAK_N,
		[ANVIL_OP_AUTH] = PEAK_AUTH, [ANVIL_OP_LOOKUP] = PEAK_N,
	};
	size_t entries = anvil_entries(r->local);

	if (rep->status != 0)
		return;
	if (of[op] != PEAK_N)
		rds_peak(r, of[op], rep->rate, ident, now);
	if (op == ANVIL_OP_CONNECT)
		rds_peak(r, PEAK_CONN_COUNT, rep->count, ident, now);
	if (entries > __atomic_load_n(&r->peak_cache, __ATOMIC_RELAXED)) {
		pthread_mutex_lock(&r->lock);
		if (entries > r->peak_cache) {
			__atomic_store_n(&r->peak_cache, entries, __ATOMIC_RELAXED);
			r->peak_cache_when = now;
		}
		pthread_mutex_unlock(&r->lock);
	}
}

static const char *
rds_stamp(char *out, size_t len, time_t when)
{
	struct tm tm;

	localtime_r(&when, &tm);
	strftime(out, len, "%b %e %H:%M:%S", &tm);
	return out;
}

static void
rds_log_statistics(struct anvil *a, time_t now)
{
	static const char *const what[PEAK_N] = {
		[PEAK_CONN_RATE] = "connection rate", [PEAK_CONN_COUNT] = "connection count",
		[PEAK_MAIL] = "message rate", [PEAK_RCPT] = "recipient rate",
		[PEAK_NTLS] = "newtls rate", [PEAK_AUTH] = "auth rate",
	};
	struct anvil_rds *r = (struct anvil_rds *)a;
	long unit = rds_unit(r);
	char stamp[32];
	int i;

	(void)now;
	pthread_mutex_lock(&r->lock);
	for (i = 0; i < PEAK_N; i++) {
		struct rds_peak_rec *p = &r->peak[i];

		if (p->value <= 0)
			continue;
		if (i == PEAK_CONN_COUNT)
			log_as("anvil", LOG_LVL_INFO, "statistics: max %s %d for (%s) at %s", what[i],
			       p->value, p->ident, rds_stamp(stamp, sizeof(stamp), p->when));
		else
			log_as("anvil", LOG_LVL_INFO, "statistics: max %s %d/%lds for (%s) at %s",
			       what[i], p->value, unit, p->ident,
			       rds_stamp(stamp, sizeof(stamp), p->when));
		__atomic_store_n(&p->value, 0, __ATOMIC_RELAXED);
		free(p->ident);
		p->ident = NULL;
	}
	if (r->peak_cache > 0)
		log_as("anvil", LOG_LVL_INFO, "statistics: max cache size %zu at %s", r->peak_cache,
		       rds_stamp(stamp, sizeof(stamp), r->peak_cache_when));
	__atomic_store_n(&r->peak_cache, 0, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&r->lock);
}

/* ---- leases held by one loop ------------------------------------------- */

static uint32_t
rds_hash(const char *s)
{
	uint32_t h = 2166136261u;	/* FNV-1a: our own idents, no attacker-chosen chains
					 * beyond the clients a loop holds sessions for */

	while (*s)
		h = (h ^ (unsigned char)*s++) * 16777619u;
	return h;
}

static struct rds_lease **
rds_lease_slot(struct rds_loop *rl, const char *ident)
{
	struct rds_lease **pp = &rl->leases[rds_hash(ident) % RDS_LEASE_BUCKETS];

	while (*pp != NULL && strcmp((*pp)->ident, ident) != 0)
		pp = &(*pp)->next;
	return pp;
}

static unsigned long
rds_lease_add(struct rds_loop *rl, const char *ident)
{
	struct rds_lease **pp = rds_lease_slot(rl, ident), *e = *pp;

	if (e == NULL) {
		size_t len = strlen(ident);

		e = xcalloc(1, sizeof(*e) + len + 1);
		memcpy(e->ident, ident, len + 1);
		*pp = e;
	}
	if (e->n == e->cap) {
		e->cap = e->cap ? e->cap * 2 : 2;
		e->seq = xrealloc(e->seq, e->cap * sizeof(*e->seq));
	}
	e->seq[e->n++] = ++rl->seq;
	return rl->seq;
}

/* Take one of ident's members away; 0 when this loop holds none. */
static unsigned long
rds_lease_remove(struct rds_loop *rl, const char *ident)
{
	struct rds_lease **pp = rds_lease_slot(rl, ident), *e = *pp;
	unsigned long seq;

	if (e == NULL)
		return 0;
	seq = e->seq[--e->n];
	if (e->n == 0) {
		*pp = e->next;
		free(e->seq);
		free(e);
	}
	return seq;
}

/* ---- script calls ------------------------------------------------------ */

static void
rds_key(struct buf *b, struct anvil_rds *r, const char *ident, const char *what)
{
	buf_puts(b, r->prefix);
	buf_putc(b, '{');
	buf_puts(b, ident);
	buf_puts(b, "}:");
	buf_puts(b, what);
}

static void
rds_req_free(struct rds_req *q)
{
	int i;

	if (q->bound != NULL)
		loop_timer_free(q->rl->loop, &q->bound);
	for (i = 0; i < q->argc; i++)
		free(q->argv[i]);
	free(q->argv);
	free(q->argvlen);
	free(q);
}

/* Off the pending list, bound stopped: the caller gets no further answer. */
static void
rds_req_settle(struct rds_req *q)
{
	struct rds_loop *rl = q->rl;

	if (q->prev != NULL)
		q->prev->next = q->next;
	else if (rl->pending == q)
		rl->pending = q->next;
	if (q->next != NULL)
		q->next->prev = q->prev;
	q->prev = q->next = NULL;
	if (q->bound != NULL)
		loop_timer_free(rl->loop, &q->bound);
	q->cb = NULL;
}

static void
rds_req_answer(struct rds_req *q, const struct anvil_reply *rep)
{
	anvil_cb *cb = q->cb;
	void   *ctx = q->ctx;

	rds_req_settle(q);
	rds_peaks(q->rl->r, q->op, rep, q->ident, q->now);
	if (cb != NULL)
		cb(ctx, rep);
}

static int
rds_clamp(long long v)
{
	return v < 0 ? 0 : v > INT_MAX ? INT_MAX : (int)v;
}

static int rds_send(struct rds_req *q);

static void
rds_reply_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct rds_req *q = privdata;
	struct rds_loop *rl = q->rl;
	redisReply *rr = reply;

	(void)ac;
	q->in_redis = 0;
	if (rr != NULL && rr->type == REDIS_REPLY_ERROR && !q->retried
	    && strncmp(rr->str, "NOSCRIPT", 8) == 0) {
		q->retried = 1;
		rl->sha[0] = '\0';
		if (rds_send(q) == 0)
			return;
	}
	if (rr != NULL && rr->type == REDIS_REPLY_ARRAY && rr->elements >= 2) {
		struct anvil_reply rep = { 0 };
		long long v[6] = { 0 };
		size_t i;

		for (i = 0; i < rr->elements && i < 6; i++)
			if (rr->element[i]->type == REDIS_REPLY_INTEGER)
				v[i] = rr->element[i]->integer;
		rep.count = rds_clamp(v[0]);
		rep.rate = rds_clamp(v[1]);
		if (rl->proving) {
			struct anvil_rds *r = rl->r;
			int was = 1;

			rl->proving = 0;
			if (__atomic_compare_exchange_n(&r->down, &was, 0, 0, __ATOMIC_RELAXED,
							__ATOMIC_RELAXED))
				log_as("anvil", LOG_LVL_INFO, "Redis at %s is back; sharing counts again",
				       r->where);
		}
		if (q->op == ANVIL_OP_LOOKUP) {
			rep.mail = rds_clamp(v[2]);
			rep.rcpt = rds_clamp(v[3]);
			rep.newtls = rds_clamp(v[4]);
			rep.auth = rds_clamp(v[5]);
		}
		if (q->cb != NULL)
			rds_req_answer(q, &rep);
	} else {
		if (q->cb != NULL)
			rds_req_answer(q, &q->local);
		if (rr != NULL && rl->state != RDS_DOWN) {
			char why[256];

			snprintf(why, sizeof(why), "%s",
				 rr->type == REDIS_REPLY_ERROR ? rr->str : "unexpected reply type");
			rds_fail(rl, why);
		}
		/* rr == NULL: the connection is going away; its callbacks say why. */
	}
	rds_req_free(q);
}

/* Hand q to hiredis: EVALSHA once the script is loaded, else EVAL.
 * Returns -1 when hiredis refused it (the connection is going away). */
static int
rds_send(struct rds_req *q)
{
	struct rds_loop *rl = q->rl;
	const char **argv;
	size_t *argvlen;
	int i, rc;

	if (rl->ac == NULL || rl->state == RDS_DOWN)
		return -1;
	argv = xcalloc((size_t)q->argc + 3, sizeof(*argv));
	argvlen = xcalloc((size_t)q->argc + 3, sizeof(*argvlen));
	if (rl->sha[0] != '\0') {
		argv[0] = "EVALSHA";
		argv[1] = rl->sha;
	} else {
		argv[0] = "EVAL";
		argv[1] = rds_script;
	}
	argvlen[0] = strlen(argv[0]);
	argvlen[1] = strlen(argv[1]);
	argv[2] = "2";
	argvlen[2] = 1;
	for (i = 0; i < q->argc; i++) {
		argv[3 + i] = q->argv[i];
		argvlen[3 + i] = q->argvlen[i];
	}
	rc = redisAsyncCommandArgv(rl->ac, rds_reply_cb, q, 3 + q->argc, argv, argvlen);
	free(argv);
	free(argvlen);
	if (rc != REDIS_OK)
		return -1;
	q->in_redis = 1;
	return 0;
}

static void
rds_bound_cb(void *arg)
{
	struct rds_req *q = arg;
	struct rds_loop *rl = q->rl;

	loop_timer_free(rl->loop, &q->bound);
	rds_req_answer(q, &q->local);
	rds_fail(rl, "no answer within " "200" " ms");
	/* q is freed by its hiredis callback (rds_fail drops the connection later). */
}

static void
rds_req_arg(struct rds_req *q, const char *s, size_t len)
{
	if (q->argc == q->cap) {
		q->cap = q->cap ? q->cap * 2 : 8;
		q->argv = xrealloc(q->argv, (size_t)q->cap * sizeof(*q->argv));
		q->argvlen = xrealloc(q->argvlen, (size_t)q->cap * sizeof(*q->argvlen));
	}
	q->argv[q->argc] = xcalloc(1, len + 1);
	memcpy(q->argv[q->argc], s, len);
	q->argvlen[q->argc] = len;
	q->argc++;
}

static void
rds_req_argf(struct rds_req *q, const char *fmt, long long v)
{
	char tmp[32];
	int n = snprintf(tmp, sizeof(tmp), fmt, v);

	rds_req_arg(q, tmp, (size_t)n);
}

/* A new call for ident (KEYS and the fixed ARGV filled in). */
static struct rds_req *
rds_req_new(struct rds_loop *rl, const char *op, const char *ident, time_t now)
{
	struct anvil_rds *r = rl->r;
	size_t len = strlen(ident);
	struct rds_req *q = xcalloc(1, sizeof(*q) + len + 1);
	struct buf b = BUF_INIT;
	long long ms = rds_now_ms();

	memcpy(q->ident, ident, len + 1);
	q->rl = rl;
	q->now = now;
	rds_key(&b, r, ident, "r");
	rds_req_arg(q, b.data, b.len);
	buf_reset(&b);
	rds_key(&b, r, ident, "c");
	rds_req_arg(q, b.data, b.len);
	buf_free(&b);
	rds_req_arg(q, op, strlen(op));
	rds_req_argf(q, "%lld", (long long)now);
	rds_req_argf(q, "%lld", (long long)rds_unit(r));
	rds_req_argf(q, "%lld", ms);
	rds_req_argf(q, "%lld", ms + r->lease_ms);
	return q;
}

static void
rds_req_member(struct rds_req *q, unsigned long seq)
{
	char tmp[128];
	int n = snprintf(tmp, sizeof(tmp), "%s/%d/%lu", q->rl->r->node, q->rl->index, seq);

	rds_req_arg(q, tmp, (size_t)n);
}

/* Re-add every lease this loop holds (one script per ident, pipelined). */
static void
rds_refresh_all(struct rds_loop *rl)
{
	size_t b;

	for (b = 0; b < RDS_LEASE_BUCKETS; b++) {
		struct rds_lease *e;

		for (e = rl->leases[b]; e != NULL; e = e->next) {
			struct rds_req *q = rds_req_new(rl, "lease", e->ident, time(NULL));
			size_t i;

			for (i = 0; i < e->n; i++)
				rds_req_member(q, e->seq[i]);
			if (rds_send(q) < 0) {
				rds_req_free(q);
				return;
			}
		}
	}
}

static void
rds_refresh_cb(void *arg)
{
	struct rds_loop *rl = arg;

	if (rl->state == RDS_UP)
		rds_refresh_all(rl);
	loop_timer_set(rl->loop, rl->refresh, rl->r->lease_ms / 3 > 0 ? rl->r->lease_ms / 3 : 1);
}

/* ---- the connection ----------------------------------------------------- */

/* Answer every waiting caller from the local counts. */
static void
rds_answer_pending_locally(struct rds_loop *rl)
{
	while (rl->pending != NULL) {
		struct rds_req *q = rl->pending;

		rds_req_answer(q, &q->local);	/* takes q off the list */
	}
}

static void
rds_drop_cb(void *arg)
{
	struct rds_loop *rl = arg;
	redisAsyncContext *ac = rl->ac;

	rl->ac = NULL;
	if (ac != NULL) {
		ac->data = NULL;
		redisAsyncFree(ac);	/* calls the pending callbacks with NULL */
	}
}

/* The connection cannot be used: local answers from now on, one warning for
 * the process, and a new attempt in a second. */
static void
rds_fail(struct rds_loop *rl, const char *why)
{
	struct anvil_rds *r = rl->r;
	int was = 0;

	if (rl->state == RDS_DOWN)
		return;
	rl->state = RDS_DOWN;
	rl->failed = 1;
	rl->proving = 1;
	rl->sha[0] = '\0';
	if (__atomic_compare_exchange_n(&r->down, &was, 1, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		log_as("anvil", LOG_LVL_WARNING,
		       "Redis at %s: %s; using this host's own counts until it is back", r->where,
		       why);
	rds_answer_pending_locally(rl);
	if (rl->ac != NULL)
		loop_timer_set(rl->loop, rl->drop, 0);
	loop_timer_set(rl->loop, rl->reconnect, RDS_RECONNECT_MS);
}

static void
rds_connected_cb(const redisAsyncContext *ac, int status)
{
	struct rds_loop *rl = ac->data;

	if (rl == NULL || status == REDIS_OK)
		return;
	/* hiredis frees ac after this callback */
	rl->ac = NULL;
	rds_fail(rl, ac->errstr[0] ? ac->errstr : "cannot connect");
}

static void
rds_disconnected_cb(const redisAsyncContext *ac, int status)
{
	struct rds_loop *rl = ac->data;

	if (rl == NULL)
		return;
	rl->ac = NULL;
	rds_fail(rl, status == REDIS_OK ? "connection closed"
		 : ac->errstr[0] ? ac->errstr : "connection lost");
}

static void
rds_auth_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct rds_loop *rl = privdata;
	redisReply *rr = reply;

	(void)ac;
	if (rr != NULL && rr->type == REDIS_REPLY_ERROR && rl->state != RDS_DOWN) {
		char why[256];

		snprintf(why, sizeof(why), "AUTH: %s", rr->str);
		rds_fail(rl, why);
	}
}

static void
rds_loaded_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct rds_loop *rl = privdata;
	redisReply *rr = reply;

	(void)ac;
	if (rr == NULL || rl->state == RDS_DOWN)
		return;
	if (rr->type != REDIS_REPLY_STRING || rr->len >= (int)sizeof(rl->sha)) {
		rds_fail(rl, rr->type == REDIS_REPLY_ERROR ? rr->str : "SCRIPT LOAD failed");
		return;
	}
	memcpy(rl->sha, rr->str, (size_t)rr->len);
	rl->sha[rr->len] = '\0';
	rl->state = RDS_UP;
	loop_timer_stop(rl->loop, rl->reconnect);
	/* The sessions opened while Redis was away, and the others' next refresh;
	 * the first of their answers (or of the next request's) logs "back". */
	rds_refresh_all(rl);
}

static void
rds_reconnect_cb(void *arg)
{
	struct rds_loop *rl = arg;

	if (rl->state == RDS_CONNECTING) {	/* the connection bound */
		rds_fail(rl, "no connection within 500 ms");
		return;
	}
	if (rl->ac != NULL) {		/* not dropped yet */
		loop_timer_set(rl->loop, rl->reconnect, 10);
		return;
	}
	rds_connect(rl);
}

static void rds_connect_to(struct rds_loop *rl, const char *host);

static void
rds_resolve_work(void *arg)
{
	struct rds_resolve *q = arg;
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *res = NULL;
	int rc = getaddrinfo(q->host, NULL, &hints, &res);

	/*
	 * IPv4 first, IPv6 only for a name without an IPv4 address, as
	 * hiredis resolves a name itself: AF_UNSPEC would put ::1 before
	 * 127.0.0.1 for "localhost" (RFC 6724), where Redis often listens on
	 * 127.0.0.1 only.  Not again when the name server did not answer
	 * (EAI_AGAIN): that would only double the wait (and a stop's).
	 */
	if ((rc != 0 && rc != EAI_AGAIN) || (rc == 0 && res == NULL)) {
		if (res != NULL)
			freeaddrinfo(res);
		res = NULL;
		hints.ai_family = AF_INET6;
		rc = getaddrinfo(q->host, NULL, &hints, &res);
	}

	if (rc != 0 || res == NULL) {
		snprintf(q->err, sizeof(q->err), "%s: %s", q->host,
			 rc != 0 ? gai_strerror(rc) : "no address");
	} else if (res->ai_family == AF_INET) {
		inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, q->addr,
			  sizeof(q->addr));
	} else if (res->ai_family == AF_INET6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)res->ai_addr)->sin6_addr, q->addr,
			  sizeof(q->addr));
	} else {
		snprintf(q->err, sizeof(q->err), "%s: no IPv4 or IPv6 address", q->host);
	}
	if (res != NULL)
		freeaddrinfo(res);
}

/* On the loop: connect now if the attempt is still waiting for it, else
 * keep the address for the next attempt. */
static void
rds_resolve_done(void *arg)
{
	struct rds_resolve *q = arg;
	struct rds_loop *rl = q->rl;

	if (rl != NULL) {
		rl->resolving = NULL;
		if (q->addr[0] != '\0') {
			snprintf(rl->addr, sizeof(rl->addr), "%s", q->addr);
			if (rl->state == RDS_CONNECTING && rl->ac == NULL)
				rds_connect_to(rl, rl->addr);
		} else if (rl->state == RDS_CONNECTING && rl->ac == NULL) {
			rds_fail(rl, q->err);
		}
	}
	free(q->host);
	free(q);
}

static void
rds_connect(struct rds_loop *rl)
{
	struct anvil_rds *r = rl->r;

	if (rl->dns == NULL) {
		rds_connect_to(rl, r->host);
		return;
	}
	rl->state = RDS_CONNECTING;	/* requests get the local answer meanwhile */
	rl->sha[0] = '\0';
	loop_timer_set(rl->loop, rl->reconnect, RDS_CONNECT_MS);
	if (rl->addr[0] != '\0') {	/* resolved after the last attempt gave up */
		rds_connect_to(rl, rl->addr);
		return;
	}
	if (rl->resolving == NULL) {
		struct rds_resolve *q = xcalloc(1, sizeof(*q));

		q->rl = rl;
		q->host = xstrdup(r->host);
		rl->resolving = q;
		workpool_submit(rl->dns, rl->loop, rds_resolve_work, rds_resolve_done, q);
	}
}

/* Connect to host (an address when r->host is a name; unused for a unix socket). */
static void
rds_connect_to(struct rds_loop *rl, const char *host)
{
	struct anvil_rds *r = rl->r;
	char addr[INET6_ADDRSTRLEN];
	redisAsyncContext *ac;

	if (host == rl->addr) {		/* a new attempt resolves the name again */
		snprintf(addr, sizeof(addr), "%s", rl->addr);
		host = addr;
		rl->addr[0] = '\0';
	}
	ac = r->path != NULL ? redisAsyncConnectUnix(r->path) : redisAsyncConnect(host, r->port);
	if (ac == NULL || ac->err) {
		char why[256];

		snprintf(why, sizeof(why), "%s", ac != NULL ? ac->errstr : "out of memory");
		if (ac != NULL)
			redisAsyncFree(ac);
		rl->state = RDS_CONNECTING;	/* so that rds_fail() acts */
		rds_fail(rl, why);
		return;
	}
	ac->data = rl;
	rl->ac = ac;
	rl->state = RDS_CONNECTING;
	rl->sha[0] = '\0';
	redisLibeventAttach(ac, rl->base);
	redisAsyncSetConnectCallback(ac, rds_connected_cb);
	redisAsyncSetDisconnectCallback(ac, rds_disconnected_cb);
	if (r->password != NULL)
		redisAsyncCommand(ac, rds_auth_cb, rl, "AUTH %s", r->password);
	redisAsyncCommand(ac, rds_loaded_cb, rl, "SCRIPT LOAD %s", rds_script);
	if (rl->dns == NULL)	/* else set by rds_connect(), before the resolution */
		loop_timer_set(rl->loop, rl->reconnect, RDS_CONNECT_MS);
}

static void
rds_start_cb(void *arg)
{
	struct rds_loop *rl = arg;

	rl->reconnect = loop_timer_new(rl->loop, rds_reconnect_cb, rl);
	rl->refresh = loop_timer_new(rl->loop, rds_refresh_cb, rl);
	rl->drop = loop_timer_new(rl->loop, rds_drop_cb, rl);
	loop_timer_set(rl->loop, rl->refresh, rl->r->lease_ms / 3 > 0 ? rl->r->lease_ms / 3 : 1);
	rds_connect(rl);
}

static void
rds_attach(struct anvil *a, struct loop *l, struct event_base *base)
{
	struct anvil_rds *r = (struct anvil_rds *)a;
	struct rds_loop *rl = xcalloc(1, sizeof(*rl));

	rl->r = r;
	rl->loop = l;
	rl->base = base;
	rl->state = RDS_DOWN;
	pthread_mutex_lock(&r->lock);
	if (r->nloops == RDS_MAX_LOOPS)
		msg_panic("anvil redis: more than %d loops", RDS_MAX_LOOPS);
	rl->index = r->nloops;
	r->loops[r->nloops++] = rl;
	pthread_mutex_unlock(&r->lock);
	if (r->host_is_name)
		rl->dns = workpool_create("anvil redis resolver", 1);
	/* Timers are made on the loop's own thread, once it runs; until then
	 * the state is RDS_DOWN and requests get the local answer. */
	loop_post(l, rds_start_cb, rl);
}

/* Write what hiredis still holds (the last disconnects), for at most the
 * bound: the loop no longer runs. */
static void
rds_flush(redisAsyncContext *ac)
{
	redisContext *c = &ac->c;
	long long end = rds_now_ms() + ANVIL_REDIS_BOUND_MS;
	int done = 0;

	while (!done && rds_now_ms() < end) {
		struct pollfd p = { c->fd, POLLOUT, 0 };

		if (redisBufferWrite(c, &done) == REDIS_ERR)
			break;
		if (!done)
			(void)poll(&p, 1, (int)(end - rds_now_ms()));
	}
}

static void
rds_detach(struct anvil *a, struct loop *l)
{
	struct anvil_rds *r = (struct anvil_rds *)a;
	struct rds_loop *rl = rds_loop_of(r, l);
	size_t b;
	int i;

	if (rl == NULL)
		return;
	rds_answer_pending_locally(rl);
	/* A resolution under way is let finish (its done() runs from the loop's
	 * posts, later, and only frees it). */
	if (rl->resolving != NULL)
		rl->resolving->rl = NULL;
	workpool_destroy(&rl->dns);
	if (rl->ac != NULL) {
		redisAsyncContext *ac = rl->ac;

		if (rl->state == RDS_UP)
			rds_flush(ac);
		rl->ac = NULL;
		ac->data = NULL;
		redisAsyncFree(ac);
	}
	loop_timer_free(l, &rl->reconnect);
	loop_timer_free(l, &rl->refresh);
	loop_timer_free(l, &rl->drop);
	for (b = 0; b < RDS_LEASE_BUCKETS; b++) {
		struct rds_lease *e, *next;

		for (e = rl->leases[b]; e != NULL; e = next) {
			next = e->next;
			free(e->seq);
			free(e);
		}
	}
	pthread_mutex_lock(&r->lock);
	for (i = 0; i < r->nloops; i++)
		if (r->loops[i] == rl) {
			r->loops[i] = r->loops[--r->nloops];
			break;
		}
	pthread_mutex_unlock(&r->lock);
	free(rl);
}

/* ---- requests ---------------------------------------------------------- */

static void
rds_local_cb(void *ctx, const struct anvil_reply *rep)
{
	*(struct anvil_reply *)ctx = *rep;
}

static void *
rds_request(struct anvil *a, struct loop *l, enum anvil_op op, const char *ident, time_t now,
	    anvil_cb *cb, void *ctx)
{
	struct anvil_rds *r = (struct anvil_rds *)a;
	struct rds_loop *rl = rds_loop_of(r, l);
	struct anvil_reply local = { 0 };
	unsigned long seq = 0;
	struct rds_req *q;

	/* The local counts, always (the memory backend answers at once). */
	(void)r->local->ops->request(r->local, NULL, op, ident, now, rds_local_cb, &local);
	if (rl != NULL && op == ANVIL_OP_CONNECT)
		seq = rds_lease_add(rl, ident);
	else if (rl != NULL && op == ANVIL_OP_DISCONNECT)
		seq = rds_lease_remove(rl, ident);
	if (rl == NULL || rl->state == RDS_DOWN || (rl->state == RDS_CONNECTING && rl->failed)
	    || (op == ANVIL_OP_DISCONNECT && seq == 0)) {
		rds_peaks(r, op, &local, ident, now);
		if (cb != NULL)
			cb(ctx, &local);
		return NULL;
	}
	q = rds_req_new(rl, anvil_op_name(op), ident, now);
	q->op = op;
	q->local = local;
	if (seq != 0)
		rds_req_member(q, seq);
	if (rds_send(q) < 0) {
		rds_req_free(q);
		rds_peaks(r, op, &local, ident, now);
		if (cb != NULL)
			cb(ctx, &local);
		return NULL;
	}
	if (cb == NULL)
		return NULL;	/* fire and forget: freed by its hiredis callback */
	q->cb = cb;
	q->ctx = ctx;
	q->next = rl->pending;
	if (rl->pending != NULL)
		rl->pending->prev = q;
	rl->pending = q;
	q->bound = loop_timer_new(l, rds_bound_cb, q);
	loop_timer_set(l, q->bound, ANVIL_REDIS_BOUND_MS);
	return q;
}

static void
rds_cancel(struct anvil *a, void *handle)
{
	struct rds_req *q = handle;

	(void)a;
	rds_req_settle(q);	/* freed by its hiredis callback */
}

/* ---- the rest of the interface ---------------------------------------- */

static void
rds_sweep(struct anvil *a, time_t now)
{
	anvil_sweep(((struct anvil_rds *)a)->local, now);
}

static size_t
rds_entries(struct anvil *a)
{
	return anvil_entries(((struct anvil_rds *)a)->local);
}

static void
rds_set_rate_time_unit(struct anvil *a, long unit)
{
	struct anvil_rds *r = (struct anvil_rds *)a;

	__atomic_store_n(&r->unit, unit < 1 ? 1 : unit, __ATOMIC_RELAXED);
	anvil_set_rate_time_unit(r->local, unit);
}

static size_t
rds_list(struct anvil *a, time_t now, const char *match, anvil_list_fn *fn, void *ctx)
{
	return anvil_list(((struct anvil_rds *)a)->local, now, match, fn, ctx);
}

static size_t
rds_clear(struct anvil *a, time_t now, const char *match)
{
	return anvil_clear(((struct anvil_rds *)a)->local, now, match);
}

static void
rds_free(struct anvil *a)
{
	struct anvil_rds *r = (struct anvil_rds *)a;
	int i;

	if (r->nloops > 0)
		msg_panic("anvil redis: freed with %d loops attached", r->nloops);
	anvil_free(&r->local);
	for (i = 0; i < PEAK_N; i++)
		free(r->peak[i].ident);
	if (r->password != NULL) {
		explicit_bzero(r->password, strlen(r->password));
		free(r->password);
	}
	free(r->host);
	free(r->path);
	free(r->where);
	free(r->prefix);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

static const struct anvil_ops rds_ops = {
	.name = "redis",
	.request = rds_request,
	.cancel = rds_cancel,
	.sweep = rds_sweep,
	.entries = rds_entries,
	.log_statistics = rds_log_statistics,
	.set_rate_time_unit = rds_set_rate_time_unit,
	.free = rds_free,
	.attach = rds_attach,
	.detach = rds_detach,
	.list = rds_list,
	.clear = rds_clear,
};

/* The first line of the password file, without its line end. */
static char *
rds_read_password(const char *file, char **err_r)
{
	char buf[1024];
	ssize_t n;
	int fd = open(file, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		*err_r = xasprintf("mxgate_anvil_redis_password_file = %s: %s", file,
				   strerror(errno));
		return NULL;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0) {
		*err_r = xasprintf("mxgate_anvil_redis_password_file = %s: %s", file,
				   strerror(errno));
		return NULL;
	}
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (buf[0] == '\0') {
		*err_r = xasprintf("mxgate_anvil_redis_password_file = %s: the file is empty", file);
		return NULL;
	}
	return xstrdup(buf);
}

static int
anvil_redis_parse(const char *arg, char **host_r, int *port_r, char **path_r, char **err_r)
{
	const char *colon;
	char *end;
	long port;

	*host_r = *path_r = NULL;
	*port_r = 0;
	if (strncmp(arg, "unix:", 5) == 0) {
		if (arg[5] != '/') {
			*err_r = xasprintf("expected redis:unix:/PATH, an absolute path");
			return -1;
		}
		*path_r = xstrdup(arg + 5);
		return 0;
	}
	colon = strrchr(arg, ':');
	if (colon == NULL || colon == arg) {
		*err_r = xasprintf("expected redis:HOST:PORT or redis:unix:/PATH");
		return -1;
	}
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (errno != 0 || *end != '\0' || colon[1] == '\0' || port < 1 || port > 65535) {
		*err_r = xasprintf("bad Redis port \"%s\"", colon + 1);
		return -1;
	}
	if (arg[0] == '[' && colon[-1] == ']')
		*host_r = xasprintf("%.*s", (int)(colon - arg - 2), arg + 1);
	else
		*host_r = xasprintf("%.*s", (int)(colon - arg), arg);
	*port_r = (int)port;
	return 0;
}

struct anvil *
anvil_redis_create(const char *arg, long rate_time_unit, size_t max_entries, char **err_r)
{
	const struct anvil_settings *set = anvil_get_settings();
	struct anvil_rds *r;
	char *host, *path, *password = NULL;
	uint32_t rnd = 0;
	char hn[32];
	int port;

	*err_r = NULL;
	if (anvil_redis_parse(arg, &host, &port, &path, err_r) < 0)
		return NULL;
	if (set->redis_password_file[0] != '\0'
	    && (password = rds_read_password(set->redis_password_file, err_r)) == NULL) {
		free(host);
		free(path);
		return NULL;
	}
	r = xcalloc(1, sizeof(*r));
	anvil_init(&r->base, &rds_ops);
	r->local = anvil_memory_create(rate_time_unit, max_entries);
	r->unit = rate_time_unit < 1 ? 1 : rate_time_unit;
	r->lease_ms = set->lease_time * 1000;
	r->host = host;
	if (host != NULL) {
		unsigned char a6[16];

		r->host_is_name = inet_pton(AF_INET, host, a6) != 1
			&& inet_pton(AF_INET6, host, a6) != 1;
	}
	r->port = port;
	r->path = path;
	r->where = path != NULL ? xasprintf("unix:%s", path) : xasprintf("%s:%d", host, port);
	r->password = password;
	r->prefix = xstrdup(set->redis_prefix);
	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
		rnd = (uint32_t)rds_now_ms();
	if (gethostname(hn, sizeof(hn)) < 0)
		snprintf(hn, sizeof(hn), "node");
	hn[sizeof(hn) - 1] = '\0';
	snprintf(r->node, sizeof(r->node), "%s.%ld.%08x", hn, (long)getpid(), rnd);
	pthread_mutex_init(&r->lock, NULL);
	return &r->base;
}

/* ---- `mxgate anvil` against Redis --------------------------------------- */

static int
rds_ident_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A glob that matches prefix literally, then "{*}:?". */
static char *
rds_scan_pattern(const char *prefix)
{
	struct buf b = BUF_INIT;
	const char *p;

	for (p = prefix; *p; p++) {
		if (strchr("*?[]\\", *p) != NULL)
			buf_putc(&b, '\\');
		buf_putc(&b, *p);
	}
	buf_puts(&b, "{*}:?");
	return buf_steal(&b);
}

long
anvil_redis_admin(const char *arg, int clear, const char *match, long unit, anvil_list_fn *fn,
		  void *ctx, char **err_r)
{
	const struct anvil_settings *set = anvil_get_settings();
	struct timeval tv = { 2, 0 };
	char *host, *path, *password = NULL, *pattern;
	char **idents = NULL;
	size_t nidents = 0, cap = 0, plen = strlen(set->redis_prefix), i;
	char cursor[32] = "0";
	redisContext *c;
	redisReply *rr;
	long n = 0;
	int port;

	*err_r = NULL;
	if (anvil_redis_parse(arg, &host, &port, &path, err_r) < 0)
		return -1;
	if (set->redis_password_file[0] != '\0'
	    && (password = rds_read_password(set->redis_password_file, err_r)) == NULL) {
		free(host);
		free(path);
		return -1;
	}
	c = path != NULL ? redisConnectUnixWithTimeout(path, tv) : redisConnectWithTimeout(host, port, tv);
	if (c == NULL || c->err) {
		if (path != NULL)
			*err_r = xasprintf("Redis at unix:%s: %s", path, c ? c->errstr : "out of memory");
		else
			*err_r = xasprintf("Redis at %s:%d: %s", host, port,
					   c ? c->errstr : "out of memory");
		goto out;
	}
	redisSetTimeout(c, tv);
	if (password != NULL) {
		rr = redisCommand(c, "AUTH %s", password);
		if (rr == NULL || rr->type == REDIS_REPLY_ERROR) {
			*err_r = xasprintf("Redis AUTH: %s", rr ? rr->str : c->errstr);
			freeReplyObject(rr);
			goto out;
		}
		freeReplyObject(rr);
	}
	pattern = rds_scan_pattern(set->redis_prefix);
	do {
		rr = redisCommand(c, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
		if (rr == NULL || rr->type != REDIS_REPLY_ARRAY || rr->elements != 2) {
			*err_r = xasprintf("Redis SCAN: %s", rr == NULL ? c->errstr
					   : rr->type == REDIS_REPLY_ERROR ? rr->str : "unexpected reply");
			freeReplyObject(rr);
			free(pattern);
			goto out;
		}
		snprintf(cursor, sizeof(cursor), "%s", rr->element[0]->str);
		for (i = 0; i < rr->element[1]->elements; i++) {
			const char *k = rr->element[1]->element[i]->str;
			size_t klen = strlen(k);

			/* P{IDENT}:r or P{IDENT}:c */
			if (klen < plen + 4 || k[plen] != '{' || k[klen - 3] != '}')
				continue;
			if (nidents == cap) {
				cap = cap ? cap * 2 : 64;
				idents = xrealloc(idents, cap * sizeof(*idents));
			}
			idents[nidents++] = xasprintf("%.*s", (int)(klen - plen - 4), k + plen + 1);
		}
		freeReplyObject(rr);
	} while (strcmp(cursor, "0") != 0);
	free(pattern);
	qsort(idents, nidents, sizeof(*idents), rds_ident_cmp);
	for (i = 0; i < nidents; i++) {
		struct buf kr = BUF_INIT, kc = BUF_INIT;
		struct anvil_rds fake = { .prefix = set->redis_prefix ? (char *)set->redis_prefix : NULL };

		if ((i > 0 && strcmp(idents[i], idents[i - 1]) == 0)
		    || !anvil_ident_matches(idents[i], match))
			continue;
		rds_key(&kr, &fake, idents[i], "r");
		rds_key(&kc, &fake, idents[i], "c");
		if (clear) {
			rr = redisCommand(c, "DEL %s", kr.data);
		} else {
			long long ms = rds_now_ms();

			rr = redisCommand(c, "EVAL %s 2 %s %s lookup %lld %ld %lld %lld", rds_script,
					  kr.data, kc.data, (long long)time(NULL), unit, ms, ms);
		}
		buf_free(&kr);
		buf_free(&kc);
		if (rr == NULL || rr->type == REDIS_REPLY_ERROR) {
			*err_r = xasprintf("Redis: %s", rr ? rr->str : c->errstr);
			freeReplyObject(rr);
			n = -1;
			goto out;
		}
		if (!clear && rr->type == REDIS_REPLY_ARRAY && rr->elements == 6) {
			struct anvil_reply rep = {
				.count = rds_clamp(rr->element[0]->integer),
				.rate = rds_clamp(rr->element[1]->integer),
				.mail = rds_clamp(rr->element[2]->integer),
				.rcpt = rds_clamp(rr->element[3]->integer),
				.newtls = rds_clamp(rr->element[4]->integer),
				.auth = rds_clamp(rr->element[5]->integer),
			};

			/* Expired windows and leases: nothing left to show. */
			if (rep.count + rep.rate + rep.mail + rep.rcpt + rep.newtls + rep.auth > 0) {
				fn(ctx, idents[i], &rep);
				n++;
			}
		} else if (clear) {
			n++;
		}
		freeReplyObject(rr);
	}
out:
	if (*err_r != NULL)
		n = -1;
	for (i = 0; i < nidents; i++)
		free(idents[i]);
	free(idents);
	if (c != NULL)
		redisFree(c);
	if (password != NULL) {
		explicit_bzero(password, strlen(password));
		free(password);
	}
	free(host);
	free(path);
	return n;
}
