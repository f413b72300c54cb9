/*
 * anvil_memory: the in-memory anvil backend (see anvil.h for the contract).
 *
 * Layout.  64 shards, each a chained hash table with its own mutex; the
 * shard and the bucket come from one keyed hash (SipHash-2-4 with a random
 * key, so that a client who picks its addresses cannot aim them all at one
 * chain).  A request locks exactly one shard.  Code that must visit several
 * shards (sweep, eviction, the memory bound) locks them one at a time,
 * never two at once, so there is no lock order to get wrong.
 *
 * Expiry without timers.  Each shard keeps its idle entries (count 0) on a
 * list in the order they became idle.  Since every idle entry lives for the
 * same `unit` seconds, the list head expires first: anvil_sweep() pops heads
 * while they are due, and eviction at the memory bound compares the 64
 * heads.  Threads pass slightly different `now` values, so the order is
 * approximate by a second at most; that only delays a removal by one sweep.
 *
 * Statistics.  Peaks are read without the lock and updated under stats_lock
 * only when a value beats them, so the common path takes no global lock.
 */
#include "policy/anvil.h"

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "log/log.h"
#include "policy/anvil_backend.h"
#include "util/xalloc.h"

#define MEM_SHARDS		64	/* a power of two */
#define MEM_BUCKETS_INIT	16	/* per shard, a power of two */
#define MEM_FULL_WARN_EVERY	60	/* seconds between "table full" warnings */

enum mem_rate { RATE_CONN, RATE_MAIL, RATE_RCPT, RATE_NTLS, RATE_AUTH, RATE_N };

/* Peaks, in the order of the statistics lines. */
enum mem_peak { PEAK_CONN_RATE, PEAK_CONN_COUNT, PEAK_MAIL, PEAK_RCPT, PEAK_NTLS, PEAK_AUTH,
		PEAK_N };

struct mem_entry {
	struct mem_entry *hnext;		/* hash chain */
	struct mem_entry *iprev, *inext;	/* idle list, when idle */
	uint64_t hash;
	time_t start;		/* the shared rate window's start */
	time_t idle_since;	/* when count became 0 */
	int count;
	int rate[RATE_N];
	bool idle;		/* on the shard's idle list (count == 0) */
	char ident[];
};

struct mem_shard {
	pthread_mutex_t lock;
	struct mem_entry **buckets;
	size_t nbuckets;
	size_t n;
	struct mem_entry *idle_head, *idle_tail;	/* oldest first */
} __attribute__((aligned(64)));

struct mem_peak_rec {
	int value;		/* read without stats_lock: atomics */
	time_t when;
	char *ident;
};

struct anvil_mem {
	struct anvil base;		/* first: struct anvil * casts to this */
	long unit;			/* anvil_rate_time_unit: atomics */
	size_t max_entries;
	size_t total;			/* entries in all shards: atomics */
	uint64_t key[2];		/* SipHash key */
	time_t next_full_warn;		/* atomics */
	pthread_mutex_t stats_lock;
	struct mem_peak_rec peak[PEAK_N];
	size_t peak_cache;		/* atomics */
	time_t peak_cache_when;
	struct mem_shard shards[MEM_SHARDS];
};

/*
 * SipHash-2-4 (Aumasson and Bernstein, 2012), written from the paper.
 */
#define ROTL64(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND() \
	do { \
		v0 += v1; v1 = ROTL64(v1, 13); v1 ^= v0; v0 = ROTL64(v0, 32); \
		v2 += v3; v3 = ROTL64(v3, 16); v3 ^= v2; \
		v0 += v3; v3 = ROTL64(v3, 21); v3 ^= v0; \
		v2 += v1; v1 = ROTL64(v1, 17); v1 ^= v2; v2 = ROTL64(v2, 32); \
	} while (0)

static uint64_t
mem_siphash(const uint64_t key[2], const unsigned char *in, size_t len)
{
	uint64_t v0 = 0x736f6d6570736575ULL ^ key[0];
	uint64_t v1 = 0x646f72616e646f6dULL ^ key[1];
	uint64_t v2 = 0x6c7967656e657261ULL ^ key[0];
	uint64_t v3 = 0x7465646279746573ULL ^ key[1];
	uint64_t m, last = (uint64_t)len << 56;
	size_t i, j, whole = len - len % 8;

	for (i = 0; i < whole; i += 8) {
		for (m = 0, j = 0; j < 8; j++)
			m |= (uint64_t)in[i + j] << (8 * j);
		v3 ^= m;
		SIPROUND();
		SIPROUND();
		v0 ^= m;
	}
	for (j = 0; i + j < len; j++)
		last |= (uint64_t)in[i + j] << (8 * j);
	v3 ^= last;
	SIPROUND();
	SIPROUND();
	v0 ^= last;
	v2 ^= 0xff;
	SIPROUND();
	SIPROUND();
	SIPROUND();
	SIPROUND();
	return v0 ^ v1 ^ v2 ^ v3;
}

static long
mem_unit(struct anvil_mem *m)
{
	return __atomic_load_n(&m->unit, __ATOMIC_RELAXED);
}

static struct mem_shard *
mem_shard_of(struct anvil_mem *m, uint64_t hash)
{
	return &m->shards[hash >> 58];	/* top 6 bits: MEM_SHARDS == 64 */
}

static int
mem_expired(const struct mem_entry *e, time_t now, long unit)
{
	return e->idle && now - e->idle_since >= unit;
}

static void
mem_idle_append(struct mem_shard *s, struct mem_entry *e, time_t now)
{
	e->idle = true;
	e->idle_since = now;
	e->inext = NULL;
	e->iprev = s->idle_tail;
	if (s->idle_tail != NULL)
		s->idle_tail->inext = e;
	else
		s->idle_head = e;
	s->idle_tail = e;
}

static void
mem_idle_remove(struct mem_shard *s, struct mem_entry *e)
{
	if (e->iprev != NULL)
		e->iprev->inext = e->inext;
	else
		s->idle_head = e->inext;
	if (e->inext != NULL)
		e->inext->iprev = e->iprev;
	else
		s->idle_tail = e->iprev;
	e->iprev = e->inext = NULL;
	e->idle = false;
}

/* Unlink e from its shard (lock held) and free it. */
static void
mem_delete(struct anvil_mem *m, struct mem_shard *s, struct mem_entry *e)
{
	struct mem_entry **pp = &s->buckets[e->hash & (s->nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	if (e->idle)
		mem_idle_remove(s, e);
	s->n--;
	__atomic_fetch_sub(&m->total, 1, __ATOMIC_RELAXED);
	free(e);
}

static void
mem_grow(struct mem_shard *s)
{
	size_t nb = s->nbuckets * 2, i;
	struct mem_entry **nbk = xcalloc(nb, sizeof(*nbk));

	for (i = 0; i < s->nbuckets; i++) {
		struct mem_entry *e, *next;

		for (e = s->buckets[i]; e != NULL; e = next) {
			next = e->hnext;
			e->hnext = nbk[e->hash & (nb - 1)];
			nbk[e->hash & (nb - 1)] = e;
		}
	}
	free(s->buckets);
	s->buckets = nbk;
	s->nbuckets = nb;
}

/* The live entry for ident (lock held), or NULL.  An expired idle entry is
 * deleted on the way: it is absent to every request. */
static struct mem_entry *
mem_find(struct anvil_mem *m, struct mem_shard *s, uint64_t hash, const char *ident,
	 time_t now, long unit)
{
	struct mem_entry *e;

	for (e = s->buckets[hash & (s->nbuckets - 1)]; e != NULL; e = e->hnext) {
		if (e->hash == hash && strcmp(e->ident, ident) == 0)
			break;
	}
	if (e != NULL && mem_expired(e, now, unit)) {
		mem_delete(m, s, e);
		e = NULL;
	}
	return e;
}

/* A new entry with no connections and an empty window (lock held; a slot
 * has been reserved in m->total). */
static struct mem_entry *
mem_insert(struct mem_shard *s, uint64_t hash, const char *ident, time_t now)
{
	size_t len = strlen(ident);
	struct mem_entry *e = xcalloc(1, sizeof(*e) + len + 1);
	size_t b;

	memcpy(e->ident, ident, len + 1);
	e->hash = hash;
	e->start = now;
	if (s->n >= s->nbuckets * 2)
		mem_grow(s);
	b = hash & (s->nbuckets - 1);
	e->hnext = s->buckets[b];
	s->buckets[b] = e;
	s->n++;
	mem_idle_append(s, e, now);
	return e;
}

/* Remove every due idle entry of one shard. */
static void
mem_sweep_shard(struct anvil_mem *m, struct mem_shard *s, time_t now, long unit)
{
	pthread_mutex_lock(&s->lock);
	while (s->idle_head != NULL && mem_expired(s->idle_head, now, unit))
		mem_delete(m, s, s->idle_head);
	pthread_mutex_unlock(&s->lock);
}

static void
mem_sweep(struct anvil *a, time_t now)
{
	struct anvil_mem *m = (struct anvil_mem *)a;
	long unit = mem_unit(m);
	int i;

	for (i = 0; i < MEM_SHARDS; i++)
		mem_sweep_shard(m, &m->shards[i], now, unit);
}

static size_t
mem_entries(struct anvil *a)
{
	struct anvil_mem *m = (struct anvil_mem *)a;

	return __atomic_load_n(&m->total, __ATOMIC_RELAXED);
}

/* Evict the idle entry closest to expiry.  Returns 0 when no entry is idle.
 * No lock is held on entry. */
static int
mem_evict_one(struct anvil_mem *m)
{
	struct mem_shard *best = NULL;
	time_t best_since = 0;
	int i;

	for (i = 0; i < MEM_SHARDS; i++) {
		struct mem_shard *s = &m->shards[i];

		pthread_mutex_lock(&s->lock);
		if (s->idle_head != NULL && (best == NULL || s->idle_head->idle_since < best_since)) {
			best = s;
			best_since = s->idle_head->idle_since;
		}
		pthread_mutex_unlock(&s->lock);
	}
	if (best == NULL)
		return 0;
	/* Another thread may have changed that shard meanwhile: take its
	 * current oldest idle entry, or report success and let the caller
	 * try again. */
	pthread_mutex_lock(&best->lock);
	if (best->idle_head != NULL)
		mem_delete(m, best, best->idle_head);
	pthread_mutex_unlock(&best->lock);
	return 1;
}

static void
mem_peak_cache(struct anvil_mem *m, size_t total, time_t now)
{
	if (total <= __atomic_load_n(&m->peak_cache, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&m->stats_lock);
	if (total > m->peak_cache) {
		__atomic_store_n(&m->peak_cache, total, __ATOMIC_RELAXED);
		m->peak_cache_when = now;
	}
	pthread_mutex_unlock(&m->stats_lock);
}

/* Reserve room for one new entry in m->total.  Returns 0 when the table is
 * full of connected entries.  No lock is held on entry. */
static int
mem_reserve(struct anvil_mem *m, time_t now)
{
	int attempt;

	for (attempt = 0; attempt < 8; attempt++) {
		size_t cur = __atomic_load_n(&m->total, __ATOMIC_RELAXED);

		while (cur < m->max_entries) {
			if (__atomic_compare_exchange_n(&m->total, &cur, cur + 1, false,
							__ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
				mem_peak_cache(m, cur + 1, now);
				return 1;
			}
		}
		if (attempt == 0)
			mem_sweep(&m->base, now);
		else if (!mem_evict_one(m))
			return 0;
	}
	return 0;
}

static void
mem_warn_full(struct anvil_mem *m, const char *ident, time_t now)
{
	time_t next = __atomic_load_n(&m->next_full_warn, __ATOMIC_RELAXED);

	if (now < next)
		return;
	if (!__atomic_compare_exchange_n(&m->next_full_warn, &next, now + MEM_FULL_WARN_EVERY,
					 false, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		return;
	log_as("anvil", LOG_LVL_WARNING,
	       "table full: %zu clients, all connected; not tracking (%s): no limit applied",
	       m->max_entries, log_escape_str(ident, 200));
}

static void
mem_peak(struct anvil_mem *m, enum mem_peak which, int value, const char *ident, time_t now)
{
	struct mem_peak_rec *p = &m->peak[which];

	if (value <= __atomic_load_n(&p->value, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&m->stats_lock);
	if (value > p->value) {
		__atomic_store_n(&p->value, value, __ATOMIC_RELAXED);
		p->when = now;
		free(p->ident);
		p->ident = xstrdup(ident);
	}
	pthread_mutex_unlock(&m->stats_lock);
}

static int
mem_incr(int v)
{
	return v < INT_MAX ? v + 1 : v;
}

/* Bump one rate counter, first starting a new window if the old one is
 * over (strictly: start + unit < now). */
static int
mem_rate_incr(struct mem_entry *e, enum mem_rate which, time_t now, long unit)
{
	if (e->start + unit < now) {
		memset(e->rate, 0, sizeof(e->rate));
		e->start = now;
	}
	e->rate[which] = mem_incr(e->rate[which]);
	return e->rate[which];
}

/* A rate as a read-only query sees it: 0 once the window is over. */
static int
mem_rate_peek(const struct mem_entry *e, enum mem_rate which, time_t now, long unit)
{
	return e->start + unit < now ? 0 : e->rate[which];
}

/* Always answers at once: l is not used, and nothing is ever pending. */
static void *
mem_request(struct anvil *a, struct loop *l, enum anvil_op op, const char *ident, time_t now,
	    anvil_cb *cb, void *ctx)
{
	struct anvil_mem *m = (struct anvil_mem *)a;
	struct anvil_reply r = { 0 };
	long unit = mem_unit(m);
	uint64_t hash = mem_siphash(m->key, (const unsigned char *)ident, strlen(ident));
	struct mem_shard *s = mem_shard_of(m, hash);
	enum mem_peak peak = PEAK_N;
	struct mem_entry *e;

	pthread_mutex_lock(&s->lock);
	e = mem_find(m, s, hash, ident, now, unit);
	if (e == NULL) {
		int reserved;

		if (op == ANVIL_OP_DISCONNECT || op == ANVIL_OP_NEWTLS_REPORT
		    || op == ANVIL_OP_LOOKUP) {
			pthread_mutex_unlock(&s->lock);
			if (cb != NULL)
				cb(ctx, &r);
			return NULL;
		}
		/* Room is made without this shard's lock held (see the top). */
		pthread_mutex_unlock(&s->lock);
		reserved = mem_reserve(m, now);
		pthread_mutex_lock(&s->lock);
		e = mem_find(m, s, hash, ident, now, unit);
		if (e != NULL) {
			if (reserved)	/* another thread inserted it meanwhile */
				__atomic_fetch_sub(&m->total, 1, __ATOMIC_RELAXED);
		} else if (reserved) {
			e = mem_insert(s, hash, ident, now);
		} else {
			pthread_mutex_unlock(&s->lock);
			mem_warn_full(m, ident, now);
			r.count = 1;
			r.rate = 1;
			if (cb != NULL)
				cb(ctx, &r);
			return NULL;
		}
	}

	switch (op) {
	case ANVIL_OP_CONNECT:
		r.rate = mem_rate_incr(e, RATE_CONN, now, unit);
		if (e->idle)
			mem_idle_remove(s, e);
		e->count = mem_incr(e->count);
		r.count = e->count;
		peak = PEAK_CONN_RATE;
		break;
	case ANVIL_OP_DISCONNECT:
		if (e->count > 0 && --e->count == 0)
			mem_idle_append(s, e, now);
		r.count = e->count;
		break;
	case ANVIL_OP_MESSAGE:
		r.rate = mem_rate_incr(e, RATE_MAIL, now, unit);
		peak = PEAK_MAIL;
		break;
	case ANVIL_OP_RECIPIENT:
		r.rate = mem_rate_incr(e, RATE_RCPT, now, unit);
		peak = PEAK_RCPT;
		break;
	case ANVIL_OP_NEWTLS:
		r.rate = mem_rate_incr(e, RATE_NTLS, now, unit);
		peak = PEAK_NTLS;
		break;
	case ANVIL_OP_NEWTLS_REPORT:
		r.rate = mem_rate_peek(e, RATE_NTLS, now, unit);
		break;
	case ANVIL_OP_AUTH:
		r.rate = mem_rate_incr(e, RATE_AUTH, now, unit);
		peak = PEAK_AUTH;
		break;
	case ANVIL_OP_LOOKUP:
		r.count = e->count;
		r.rate = mem_rate_peek(e, RATE_CONN, now, unit);
		r.mail = mem_rate_peek(e, RATE_MAIL, now, unit);
		r.rcpt = mem_rate_peek(e, RATE_RCPT, now, unit);
		r.newtls = mem_rate_peek(e, RATE_NTLS, now, unit);
		r.auth = mem_rate_peek(e, RATE_AUTH, now, unit);
		break;
	}
	pthread_mutex_unlock(&s->lock);

	if (peak != PEAK_N)
		mem_peak(m, peak, r.rate, ident, now);
	if (op == ANVIL_OP_CONNECT)
		mem_peak(m, PEAK_CONN_COUNT, r.count, ident, now);
	if (cb != NULL)
		cb(ctx, &r);
	(void)l;
	return NULL;
}

/* ctime()'s "Mmm dd hh:mm:ss", the 15 characters after the weekday. */
static const char *
mem_stamp(char *out, size_t len, time_t when)
{
	struct tm tm;

	localtime_r(&when, &tm);
	strftime(out, len, "%b %e %H:%M:%S", &tm);
	return out;
}

static void
mem_log_statistics(struct anvil *a, time_t now)
{
	static const char *const what[PEAK_N] = {
		[PEAK_CONN_RATE] = "connection rate",
		[PEAK_CONN_COUNT] = "connection count",
		[PEAK_MAIL] = "message rate",
		[PEAK_RCPT] = "recipient rate",
		[PEAK_NTLS] = "newtls rate",
		[PEAK_AUTH] = "auth rate",
	};
	struct anvil_mem *m = (struct anvil_mem *)a;
	long unit = mem_unit(m);
	char stamp[32];
	int i;

	pthread_mutex_lock(&m->stats_lock);
	for (i = 0; i < PEAK_N; i++) {
		struct mem_peak_rec *p = &m->peak[i];

		if (p->value <= 0)
			continue;
		if (i == PEAK_CONN_COUNT)
			log_as("anvil", LOG_LVL_INFO, "statistics: max %s %d for (%s) at %s",
			       what[i], p->value, p->ident,
			       mem_stamp(stamp, sizeof(stamp), p->when));
		else
			log_as("anvil", LOG_LVL_INFO, "statistics: max %s %d/%lds for (%s) at %s",
			       what[i], p->value, unit, p->ident,
			       mem_stamp(stamp, sizeof(stamp), p->when));
		__atomic_store_n(&p->value, 0, __ATOMIC_RELAXED);
		free(p->ident);
		p->ident = NULL;
	}
	if (m->peak_cache > 0)
		log_as("anvil", LOG_LVL_INFO, "statistics: max cache size %zu at %s", m->peak_cache,
		       mem_stamp(stamp, sizeof(stamp), m->peak_cache_when));
	__atomic_store_n(&m->peak_cache, 0, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&m->stats_lock);
}

static void
mem_set_rate_time_unit(struct anvil *a, long rate_time_unit)
{
	struct anvil_mem *m = (struct anvil_mem *)a;

	__atomic_store_n(&m->unit, rate_time_unit < 1 ? 1 : rate_time_unit, __ATOMIC_RELAXED);
}

/* Visit every live entry that matches, one shard locked at a time; clear:
 * reset its rates.  fn runs with the shard's lock held: it must not call
 * anvil (the control socket only formats a line). */
static size_t
mem_visit(struct anvil_mem *m, time_t now, const char *match, int clear, anvil_list_fn *fn,
	  void *ctx)
{
	long unit = mem_unit(m);
	size_t n = 0;
	int i;

	for (i = 0; i < MEM_SHARDS; i++) {
		struct mem_shard *s = &m->shards[i];
		size_t b;

		pthread_mutex_lock(&s->lock);
		for (b = 0; b < s->nbuckets; b++) {
			struct mem_entry *e;

			for (e = s->buckets[b]; e != NULL; e = e->hnext) {
				struct anvil_reply r = { 0 };

				if (mem_expired(e, now, unit) || !anvil_ident_matches(e->ident, match))
					continue;
				n++;
				if (clear) {
					memset(e->rate, 0, sizeof(e->rate));
					e->start = now;
					continue;
				}
				r.count = e->count;
				r.rate = mem_rate_peek(e, RATE_CONN, now, unit);
				r.mail = mem_rate_peek(e, RATE_MAIL, now, unit);
				r.rcpt = mem_rate_peek(e, RATE_RCPT, now, unit);
				r.newtls = mem_rate_peek(e, RATE_NTLS, now, unit);
				r.auth = mem_rate_peek(e, RATE_AUTH, now, unit);
				fn(ctx, e->ident, &r);
			}
		}
		pthread_mutex_unlock(&s->lock);
	}
	return n;
}

static size_t
mem_list(struct anvil *a, time_t now, const char *match, anvil_list_fn *fn, void *ctx)
{
	return mem_visit((struct anvil_mem *)a, now, match, 0, fn, ctx);
}

static size_t
mem_clear(struct anvil *a, time_t now, const char *match)
{
	return mem_visit((struct anvil_mem *)a, now, match, 1, NULL, NULL);
}

static void
mem_free(struct anvil *a)
{
	struct anvil_mem *m = (struct anvil_mem *)a;
	int i;

	for (i = 0; i < MEM_SHARDS; i++) {
		struct mem_shard *s = &m->shards[i];
		size_t b;

		for (b = 0; b < s->nbuckets; b++) {
			struct mem_entry *e, *next;

			for (e = s->buckets[b]; e != NULL; e = next) {
				next = e->hnext;
				free(e);
			}
		}
		free(s->buckets);
		pthread_mutex_destroy(&s->lock);
	}
	for (i = 0; i < PEAK_N; i++)
		free(m->peak[i].ident);
	pthread_mutex_destroy(&m->stats_lock);
	free(m);
}

static const struct anvil_ops mem_ops = {
	.name = "memory",
	.request = mem_request,
	.sweep = mem_sweep,
	.entries = mem_entries,
	.log_statistics = mem_log_statistics,
	.set_rate_time_unit = mem_set_rate_time_unit,
	.free = mem_free,
	.list = mem_list,
	.clear = mem_clear,
};

struct anvil *
anvil_memory_create(long rate_time_unit, size_t max_entries)
{
	struct anvil_mem *m;
	int i;

	/* aligned_alloc: the shards are cache-line aligned. */
	m = aligned_alloc(64, (sizeof(*m) + 63) / 64 * 64);
	if (m == NULL)
		msg_fatal("anvil: out of memory");
	memset(m, 0, sizeof(*m));
	anvil_init(&m->base, &mem_ops);
	m->unit = rate_time_unit < 1 ? 1 : rate_time_unit;
	m->max_entries = max_entries > 0 ? max_entries : ANVIL_DEF_MAX_ENTRIES;
	if (getrandom(m->key, sizeof(m->key), GRND_NONBLOCK) != (ssize_t)sizeof(m->key)) {
		/* No entropy yet (early boot): still better than a fixed key. */
		m->key[0] = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
		m->key[1] = (uint64_t)(uintptr_t)m ^ 0x9e3779b97f4a7c15ULL;
	}
	pthread_mutex_init(&m->stats_lock, NULL);
	for (i = 0; i < MEM_SHARDS; i++) {
		struct mem_shard *s = &m->shards[i];

		pthread_mutex_init(&s->lock, NULL);
		s->nbuckets = MEM_BUCKETS_INIT;
		s->buckets = xcalloc(s->nbuckets, sizeof(*s->buckets));
	}
	return &m->base;
}
