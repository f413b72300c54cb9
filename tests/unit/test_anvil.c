/*
 * policy/anvil: the in-memory backend against POSTFIX_REFERENCE.md section 3
 * (the observed connection-rate sequence, the window edge, one shared window
 * for all five rates, read-only queries, expiry after the last disconnect,
 * statistics lines read back from a maillog_file), many threads on the same
 * idents, the memory bound, and the client key and ident helpers.
 *
 * Time is passed in, so nothing here sleeps.  T0 is a Tuesday in November;
 * TZ is UTC for the statistics timestamps.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "log/log.h"
#include "policy/anvil.h"
#include "util/buf.h"
#include "util/xalloc.h"

#define T0 ((time_t)1700000000)		/* Nov 14 22:13:20 UTC */

typedef struct anvil_req *anvil_req_fn(struct anvil *, struct loop *, const char *, time_t,
				     anvil_cb *, void *);

struct got {
	int calls;
	struct anvil_reply r;
};

static void
got_cb(void *ctx, const struct anvil_reply *r)
{
	struct got *g = ctx;

	g->calls++;
	g->r = *r;
}

/* One request; the memory backend must answer before it returns. */
static struct anvil_reply
req(anvil_req_fn *fn, struct anvil *a, const char *ident, time_t now)
{
	struct got g = { 0 };

	/* Answered at once: no handle, and no loop needed. */
	assert_null(fn(a, NULL, ident, now, got_cb, &g));
	assert_int_equal(g.calls, 1);
	assert_int_equal(g.r.status, 0);
	return g.r;
}

static int
conn_rate(struct anvil *a, const char *ident, time_t now)
{
	return req(anvil_connect, a, ident, now).rate;
}

/* A short session: connect, then disconnect at the same second. */
static int
session(struct anvil *a, const char *ident, time_t now)
{
	int rate = conn_rate(a, ident, now);

	req(anvil_disconnect, a, ident, now);
	return rate;
}

static void
test_observed_sequence(void **state)
{
	/* exp_connrate.txt: unit 20 s, connection rate limit 3 (reject if > 3). */
	struct anvil *a = anvil_memory_create(20, 0);
	const char *id = "127.0.0.1:2729:127.0.0.1";
	static const struct { time_t t; int rate; int accepted; } seq[] = {
		{ 0, 1, 1 }, { 0, 2, 1 }, { 0, 3, 1 },	/* t=0, 0.2, 0.4 */
		{ 0, 4, 0 }, { 0, 5, 0 },		/* t=0.6, 0.8: 421 */
		{ 16, 6, 0 }, { 16, 7, 0 },		/* still the first window */
		{ 23, 1, 1 }, { 23, 2, 1 }, { 23, 3, 1 },	/* new window */
		{ 24, 4, 0 },
	};
	size_t i;

	for (i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
		int rate = session(a, id, T0 + seq[i].t);

		assert_int_equal(rate, seq[i].rate);
		assert_int_equal(rate <= 3, seq[i].accepted);
	}
	anvil_free(&a);
	assert_null(a);
}

static void
test_window_edge(void **state)
{
	struct anvil *a = anvil_memory_create(20, 0);

	/* Stay connected, so that only the window matters. */
	assert_int_equal(conn_rate(a, "s:x", T0), 1);
	assert_int_equal(conn_rate(a, "s:x", T0 + 20), 2);	/* start + unit: old window */
	assert_int_equal(conn_rate(a, "s:x", T0 + 21), 1);	/* start + unit < now */
	assert_int_equal(conn_rate(a, "s:x", T0 + 41), 2);
	assert_int_equal(req(anvil_connect, a, "s:x", T0 + 42).count, 5);
	anvil_free(&a);
}

static void
test_count_and_disconnect(void **state)
{
	struct anvil *a = anvil_memory_create(60, 0);
	struct anvil_reply r;

	/* Count limit 2: the third simultaneous connection is over it. */
	assert_int_equal(req(anvil_connect, a, "s:c", T0).count, 1);
	assert_int_equal(req(anvil_connect, a, "s:c", T0).count, 2);
	r = req(anvil_connect, a, "s:c", T0);
	assert_int_equal(r.count, 3);
	assert_int_equal(r.rate, 3);
	assert_int_equal(req(anvil_disconnect, a, "s:c", T0).count, 2);
	assert_int_equal(req(anvil_lookup, a, "s:c", T0).count, 2);
	req(anvil_disconnect, a, "s:c", T0);
	req(anvil_disconnect, a, "s:c", T0);
	/* Never below 0, and an unknown ident is not created by a disconnect. */
	assert_int_equal(req(anvil_disconnect, a, "s:c", T0).count, 0);
	assert_int_equal(req(anvil_lookup, a, "s:c", T0).count, 0);
	r = req(anvil_disconnect, a, "s:unknown", T0);
	assert_int_equal(r.count, 0);
	assert_int_equal(anvil_entries(a), 1);
	/* Separate services, separate counters. */
	assert_int_equal(req(anvil_connect, a, "smtp:192.0.2.1", T0).count, 1);
	assert_int_equal(req(anvil_connect, a, "submission:192.0.2.1", T0).count, 1);
	anvil_free(&a);
}

static void
test_expiry(void **state)
{
	struct anvil *a = anvil_memory_create(20, 0);

	/* Rate history survives one unit after the last disconnect ... */
	assert_int_equal(session(a, "s:a", T0), 1);
	assert_int_equal(session(a, "s:a", T0 + 19), 2);
	/* ... and the entry is gone unit seconds after it (idle since T0 + 19). */
	assert_int_equal(anvil_entries(a), 1);
	anvil_sweep(a, T0 + 38);
	assert_int_equal(anvil_entries(a), 1);
	anvil_sweep(a, T0 + 39);
	assert_int_equal(anvil_entries(a), 0);

	/* Without a sweep, requests treat an expired idle entry as absent.  At
	 * T0 + 120 + 20 a continuously connected client would still be in its
	 * window (the edge), but this one left at T0 + 120. */
	assert_int_equal(session(a, "s:b", T0 + 120), 1);
	assert_int_equal(conn_rate(a, "s:b", T0 + 140), 1);
	assert_int_equal(req(anvil_lookup, a, "s:b", T0 + 140).count, 1);

	/* A new connect cancels the expiry. */
	assert_int_equal(session(a, "s:c", T0 + 200), 1);
	assert_int_equal(conn_rate(a, "s:c", T0 + 210), 2);	/* connected again */
	anvil_sweep(a, T0 + 300);
	assert_int_equal(req(anvil_lookup, a, "s:c", T0 + 300).count, 1);
	req(anvil_disconnect, a, "s:c", T0 + 300);
	anvil_sweep(a, T0 + 319);
	assert_int_equal(req(anvil_lookup, a, "s:c", T0 + 319).count, 0);
	assert_int_equal(conn_rate(a, "s:c", T0 + 319), 1);	/* still there; window from 200 over */
	req(anvil_disconnect, a, "s:c", T0 + 319);
	anvil_sweep(a, T0 + 339);
	assert_int_equal(anvil_entries(a), 1);			/* s:b is still connected */
	anvil_free(&a);
}

static void
test_shared_window(void **state)
{
	struct anvil *a = anvil_memory_create(20, 0);
	struct anvil_reply r;

	/* A message event resets the connection window. */
	assert_int_equal(conn_rate(a, "s:m", T0), 1);
	assert_int_equal(conn_rate(a, "s:m", T0), 2);
	assert_int_equal(conn_rate(a, "s:m", T0), 3);
	assert_int_equal(req(anvil_message, a, "s:m", T0 + 21).rate, 1);
	r = req(anvil_lookup, a, "s:m", T0 + 21);
	assert_int_equal(r.count, 3);
	assert_int_equal(r.rate, 0);
	assert_int_equal(r.mail, 1);
	assert_int_equal(conn_rate(a, "s:m", T0 + 22), 1);

	/* The window a message started also ends the connections counted in
	 * it: separate windows would give 2 at T0 + 21. */
	assert_int_equal(req(anvil_message, a, "s:n", T0).rate, 1);
	assert_int_equal(conn_rate(a, "s:n", T0 + 15), 1);
	assert_int_equal(conn_rate(a, "s:n", T0 + 21), 1);

	/* Every counter, and each in the same window. */
	assert_int_equal(req(anvil_recipient, a, "s:n", T0 + 22).rate, 1);
	assert_int_equal(req(anvil_recipient, a, "s:n", T0 + 22).rate, 2);
	assert_int_equal(req(anvil_newtls, a, "s:n", T0 + 23).rate, 1);
	assert_int_equal(req(anvil_auth, a, "s:n", T0 + 23).rate, 1);
	assert_int_equal(req(anvil_auth, a, "s:n", T0 + 24).rate, 2);
	assert_int_equal(req(anvil_message, a, "s:n", T0 + 24).rate, 1);
	r = req(anvil_lookup, a, "s:n", T0 + 41);
	assert_int_equal(r.count, 2);
	assert_int_equal(r.rate, 1);
	assert_int_equal(r.mail, 1);
	assert_int_equal(r.rcpt, 2);
	assert_int_equal(r.newtls, 1);
	assert_int_equal(r.auth, 2);
	/* Window from T0 + 21 is over at T0 + 42: all read as 0 ... */
	r = req(anvil_lookup, a, "s:n", T0 + 42);
	assert_int_equal(r.count, 2);
	assert_int_equal(r.rate + r.mail + r.rcpt + r.newtls + r.auth, 0);
	/* ... and the next increment resets them all. */
	assert_int_equal(req(anvil_auth, a, "s:n", T0 + 42).rate, 1);
	r = req(anvil_lookup, a, "s:n", T0 + 42);
	assert_int_equal(r.rcpt, 0);
	assert_int_equal(r.auth, 1);
	anvil_free(&a);
}

static void
test_read_only(void **state)
{
	struct anvil *a = anvil_memory_create(20, 0);
	struct anvil_reply r;

	/* Unknown ident: zeros, and nothing is stored. */
	r = req(anvil_lookup, a, "s:r", T0);
	assert_int_equal(r.count + r.rate + r.mail + r.rcpt + r.newtls + r.auth, 0);
	assert_int_equal(req(anvil_newtls_report, a, "s:r", T0).rate, 0);
	assert_int_equal(anvil_entries(a), 0);

	assert_int_equal(conn_rate(a, "s:r", T0), 1);		/* stays connected */
	assert_int_equal(req(anvil_newtls, a, "s:r", T0).rate, 1);
	assert_int_equal(req(anvil_newtls_report, a, "s:r", T0 + 20).rate, 1);
	assert_int_equal(req(anvil_newtls, a, "s:r", T0 + 20).rate, 2);
	assert_int_equal(req(anvil_newtls_report, a, "s:r", T0 + 20).rate, 2);
	/* Expired window: 0, without starting a new one.  Had the report at
	 * T0 + 21 started a window, the connect at T0 + 42 would be in a new one. */
	assert_int_equal(req(anvil_newtls_report, a, "s:r", T0 + 21).rate, 0);
	assert_int_equal(conn_rate(a, "s:r", T0 + 30), 1);
	assert_int_equal(conn_rate(a, "s:r", T0 + 42), 2);
	anvil_free(&a);
}

static void
test_set_rate_time_unit(void **state)
{
	struct anvil *a = anvil_memory_create(60, 0);

	assert_int_equal(conn_rate(a, "s:u", T0), 1);
	assert_int_equal(conn_rate(a, "s:u", T0 + 30), 2);
	anvil_set_rate_time_unit(a, 10);	/* reload: same object, new unit */
	assert_int_equal(conn_rate(a, "s:u", T0 + 31), 1);
	assert_int_equal(req(anvil_lookup, a, "s:u", T0 + 31).count, 3);
	anvil_free(&a);
}

/*
 * Statistics, read back from a maillog_file.
 */
static char log_path[] = "/tmp/mxgate-test-anvil-XXXXXX";

static void
log_start(void)
{
	char *err = NULL;
	int fd;

	strcpy(log_path, "/tmp/mxgate-test-anvil-XXXXXX");
	fd = mkstemp(log_path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(log_open("mxgate", log_path, "mx.example.test", &err), 0);
}

/* Stop logging; return the text after "]: " of each line, one per line, and
 * check every line came from mxgate/anvil. */
static char *
log_finish(void)
{
	struct buf out = BUF_INIT;
	char line[1024];
	FILE *fp;

	log_close();
	fp = fopen(log_path, "r");
	assert_non_null(fp);
	while (fgets(line, sizeof(line), fp) != NULL) {
		const char *p = strstr(line, " mx.example.test mxgate/anvil[");

		assert_non_null(p);
		p = strstr(p, "]: ");
		assert_non_null(p);
		buf_puts(&out, p + 3);
	}
	fclose(fp);
	unlink(log_path);
	return buf_steal(&out);
}

static void
test_statistics(void **state)
{
	struct anvil *a = anvil_memory_create(20, 0);
	const char *A = "127.0.0.1:2729:127.0.0.1", *B = "smtp:192.0.2.7";
	char *text;
	int i;

	log_start();
	for (i = 0; i < 3; i++)
		req(anvil_connect, a, A, T0);
	for (i = 0; i < 3; i++)		/* equal, not greater: A stays */
		req(anvil_connect, a, B, T0 + 1);
	req(anvil_message, a, B, T0 + 2);
	req(anvil_message, a, B, T0 + 2);
	req(anvil_message, a, A, T0 + 3);
	req(anvil_message, a, A, T0 + 3);
	req(anvil_recipient, a, A, T0 + 4);
	req(anvil_auth, a, B, T0 + 65);	/* B's new window, day-of-month padding */
	for (i = 0; i < 6; i++)
		req(anvil_disconnect, a, i < 3 ? A : B, T0 + 5);
	anvil_log_statistics(a, T0 + 600);
	anvil_log_statistics(a, T0 + 1200);	/* peaks were reset: nothing */
	text = log_finish();
	assert_string_equal(text,
		"statistics: max connection rate 3/20s for (127.0.0.1:2729:127.0.0.1) at Nov 14 22:13:20\n"
		"statistics: max connection count 3 for (127.0.0.1:2729:127.0.0.1) at Nov 14 22:13:20\n"
		"statistics: max message rate 2/20s for (smtp:192.0.2.7) at Nov 14 22:13:22\n"
		"statistics: max recipient rate 1/20s for (127.0.0.1:2729:127.0.0.1) at Nov 14 22:13:24\n"
		"statistics: max auth rate 1/20s for (smtp:192.0.2.7) at Nov 14 22:14:25\n"
		"statistics: max cache size 2 at Nov 14 22:13:21\n");
	free(text);

	/* A strictly greater value replaces the first ident; newtls appears;
	 * the day of month is space-padded; the unit is the current one. */
	log_start();
	anvil_set_rate_time_unit(a, 60);
	anvil_sweep(a, (time_t)1701475199);
	assert_int_equal(anvil_entries(a), 0);
	req(anvil_newtls, a, A, (time_t)1701475200);	/* Dec  2 00:00:00 */
	req(anvil_newtls, a, B, (time_t)1701475201);
	req(anvil_newtls, a, B, (time_t)1701475202);
	anvil_log_statistics(a, (time_t)1701475300);
	text = log_finish();
	assert_string_equal(text,
		"statistics: max newtls rate 2/60s for (smtp:192.0.2.7) at Dec  2 00:00:02\n"
		"statistics: max cache size 2 at Dec  2 00:00:01\n");
	free(text);
	anvil_free(&a);
}

/*
 * Threads.
 */
#define THREADS		4
#define ITERATIONS	20000
#define IDENTS		8

struct worker {
	struct anvil *a;
	int id;
};

static void
count_cb(void *ctx, const struct anvil_reply *r)
{
	int *calls = ctx;

	(*calls)++;
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	char ident[32];
	int i, calls = 0;

	for (i = 0; i < ITERATIONS; i++) {
		/* Overlapping idents; time moves on, so windows and expiry run. */
		time_t now = T0 + i / 500;
		int k = (i * 7 + w->id) % IDENTS, held = 1 + i % 3, j;

		snprintf(ident, sizeof(ident), "smtp:10.0.0.%d", k);
		for (j = 0; j < held; j++)
			anvil_connect(w->a, NULL, ident, now, count_cb, &calls);
		anvil_message(w->a, NULL, ident, now, count_cb, &calls);
		anvil_recipient(w->a, NULL, ident, now, count_cb, &calls);
		anvil_lookup(w->a, NULL, ident, now, count_cb, &calls);
		for (j = 0; j < held; j++)
			anvil_disconnect(w->a, NULL, ident, now, count_cb, &calls);
		if (w->id == 0 && i % 100 == 0) {
			anvil_sweep(w->a, now);
			anvil_log_statistics(w->a, now);
		}
	}
	return (void *)(intptr_t)calls;
}

static void
test_threads(void **state)
{
	struct anvil *a = anvil_memory_create(5, 0);
	struct worker w[THREADS];
	pthread_t t[THREADS];
	char ident[32];
	long expected = 0;
	int i;

	log_start();		/* statistics lines go to the file */
	for (i = 0; i < THREADS; i++) {
		w[i].a = a;
		w[i].id = i;
		assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	}
	for (i = 0; i < THREADS; i++) {
		void *calls;
		int j;

		assert_int_equal(pthread_join(t[i], &calls), 0);
		for (j = 0; j < ITERATIONS; j++)
			expected += 3 + 2 * (1 + j % 3);
		assert_int_equal((intptr_t)calls, expected);
		expected = 0;
	}
	free(log_finish());
	for (i = 0; i < IDENTS; i++) {
		snprintf(ident, sizeof(ident), "smtp:10.0.0.%d", i);
		assert_int_equal(req(anvil_lookup, a, ident, T0 + ITERATIONS / 500).count, 0);
	}
	assert_true(anvil_entries(a) <= IDENTS);
	anvil_sweep(a, T0 + ITERATIONS / 500 + 5);
	assert_int_equal(anvil_entries(a), 0);
	anvil_free(&a);
}

/* The same at the memory bound: eviction and fail-open race each other. */
struct bound_worker {
	struct anvil *a;
	int id;
};

static void *
bound_worker_main(void *arg)
{
	struct bound_worker *w = arg;
	char ident[32];
	int i, calls = 0;

	for (i = 0; i < ITERATIONS; i++) {
		time_t now = T0 + i / 2000;
		int k = (i * 13 + w->id * 5) % 64;

		snprintf(ident, sizeof(ident), "smtp:10.1.0.%d", k);
		anvil_connect(w->a, NULL, ident, now, count_cb, &calls);
		anvil_recipient(w->a, NULL, ident, now, count_cb, &calls);
		anvil_disconnect(w->a, NULL, ident, now, count_cb, &calls);
		if (w->id == 0 && i % 50 == 0)
			anvil_sweep(w->a, now);
	}
	return (void *)(intptr_t)calls;
}

static void
test_threads_bound(void **state)
{
	struct anvil *a = anvil_memory_create(5, 16);
	struct bound_worker w[THREADS];
	pthread_t t[THREADS];
	char ident[32];
	int i;

	log_start();		/* "table full" warnings go to the file */
	for (i = 0; i < THREADS; i++) {
		w[i].a = a;
		w[i].id = i;
		assert_int_equal(pthread_create(&t[i], NULL, bound_worker_main, &w[i]), 0);
	}
	for (i = 0; i < THREADS; i++) {
		void *calls;

		assert_int_equal(pthread_join(t[i], &calls), 0);
		assert_int_equal((intptr_t)calls, 3 * ITERATIONS);
	}
	free(log_finish());
	assert_true(anvil_entries(a) <= 16);
	for (i = 0; i < 64; i++) {
		snprintf(ident, sizeof(ident), "smtp:10.1.0.%d", i);
		assert_int_equal(req(anvil_lookup, a, ident, T0 + ITERATIONS / 2000).count, 0);
	}
	anvil_free(&a);
}

/*
 * The memory bound.
 */
static void
ident_n(char *out, size_t len, int n)
{
	snprintf(out, len, "smtp:198.51.%d.%d", n / 256, n % 256);
}

static int
count_substr(const char *text, const char *needle)
{
	int n = 0;

	for (; (text = strstr(text, needle)) != NULL; text++)
		n++;
	return n;
}

static void
test_bound_all_connected(void **state)
{
	struct anvil *a = anvil_memory_create(60, 100);
	char ident[32], *text;
	struct anvil_reply r;
	int i;

	log_start();
	for (i = 0; i < 200; i++) {
		ident_n(ident, sizeof(ident), i);
		r = req(anvil_connect, a, ident, T0);
		assert_int_equal(r.count, 1);
		assert_int_equal(r.rate, 1);
	}
	assert_int_equal(anvil_entries(a), 100);
	/* The first 100 are tracked, the rest answer count 1 rate 1 (fail open). */
	ident_n(ident, sizeof(ident), 50);
	r = req(anvil_connect, a, ident, T0);
	assert_int_equal(r.count, 2);
	assert_int_equal(r.rate, 2);
	ident_n(ident, sizeof(ident), 150);
	r = req(anvil_connect, a, ident, T0 + 30);
	assert_int_equal(r.count, 1);
	assert_int_equal(r.rate, 1);
	assert_int_equal(req(anvil_message, a, ident, T0 + 30).rate, 1);
	req(anvil_disconnect, a, ident, T0 + 30);	/* never stored: nothing */
	assert_int_equal(anvil_entries(a), 100);
	/* Once a minute at most. */
	r = req(anvil_connect, a, ident, T0 + 60);
	assert_int_equal(r.count, 1);
	anvil_log_statistics(a, T0 + 61);
	text = log_finish();
	assert_int_equal(count_substr(text, "warning: table full: 100 clients, all connected; "
				      "not tracking (smtp:198.51.0."), 2);
	assert_non_null(strstr(text, "statistics: max cache size 100 at Nov 14 22:13:20\n"));
	free(text);

	/* A disconnect makes one entry idle; the next new ident evicts it. */
	ident_n(ident, sizeof(ident), 7);
	assert_int_equal(req(anvil_disconnect, a, ident, T0 + 61).count, 0);
	ident_n(ident, sizeof(ident), 170);
	r = req(anvil_connect, a, ident, T0 + 62);
	assert_int_equal(r.count, 1);
	assert_int_equal(req(anvil_connect, a, ident, T0 + 62).count, 2);	/* stored */
	ident_n(ident, sizeof(ident), 7);
	assert_int_equal(req(anvil_lookup, a, ident, T0 + 62).count, 0);
	assert_int_equal(req(anvil_lookup, a, ident, T0 + 62).rate, 0);	/* history gone */
	assert_int_equal(anvil_entries(a), 100);
	anvil_free(&a);
}

static void
test_bound_idle_eviction(void **state)
{
	struct anvil *a = anvil_memory_create(1000, 100);
	char ident[32];
	int i;

	/* 100 idle entries, idle since T0 + i: ident 0 is closest to expiry. */
	for (i = 0; i < 100; i++) {
		ident_n(ident, sizeof(ident), i);
		session(a, ident, T0 + i);
	}
	assert_int_equal(anvil_entries(a), 100);
	ident_n(ident, sizeof(ident), 100);
	assert_int_equal(conn_rate(a, ident, T0 + 100), 1);
	ident_n(ident, sizeof(ident), 0);
	assert_int_equal(req(anvil_lookup, a, ident, T0 + 100).rate, 0);	/* evicted */
	ident_n(ident, sizeof(ident), 1);
	assert_int_equal(req(anvil_lookup, a, ident, T0 + 100).rate, 1);	/* kept */

	/* 99 more: each evicts the oldest idle one, never a connected one. */
	for (i = 101; i < 200; i++) {
		ident_n(ident, sizeof(ident), i);
		assert_int_equal(req(anvil_connect, a, ident, T0 + i).count, 1);
	}
	assert_int_equal(anvil_entries(a), 100);
	for (i = 0; i < 200; i++) {
		ident_n(ident, sizeof(ident), i);
		assert_int_equal(req(anvil_lookup, a, ident, T0 + 200).count, i >= 100);
	}
	anvil_free(&a);
}

static void
test_bound_sweeps_first(void **state)
{
	struct anvil *a = anvil_memory_create(20, 100);
	char ident[32];
	int i;

	for (i = 0; i < 100; i++) {
		ident_n(ident, sizeof(ident), i);
		session(a, ident, T0);
	}
	/* All expired at T0 + 20: the first new ident sweeps them all. */
	ident_n(ident, sizeof(ident), 100);
	assert_int_equal(conn_rate(a, ident, T0 + 20), 1);
	assert_int_equal(anvil_entries(a), 1);
	anvil_free(&a);
}

/*
 * Helpers.
 */
static void
test_client_key(void **state)
{
	static const struct {
		const char *addr;
		int v4, v6;
		const char *key;
	} cases[] = {
		{ "192.0.2.1", 32, 84, "192.0.2.1" },
		{ "192.0.2.1", 24, 84, "192.0.2.0/24" },
		{ "192.0.2.255", 25, 84, "192.0.2.128/25" },
		{ "192.0.2.1", 0, 84, "0.0.0.0/0" },
		{ "2001:db8::1", 32, 128, "2001:db8::1" },
		{ "2001:db8:1:2:3456:789a:bcde:f012", 32, 84, "2001:db8:1:2:3456:7000::/84" },
		{ "2001:db8:1:2:3456:789a:bcde:f012", 32, 64, "2001:db8:1:2::/64" },
		{ "::1", 32, 84, "::/84" },
		{ "::ffff:192.0.2.1", 32, 84, "192.0.2.1" },
		{ "::ffff:192.0.2.1", 16, 84, "192.0.0.0/16" },
		{ "192.0.2.1", 33, 84, NULL },
		{ "2001:db8::1", 32, 129, NULL },
		{ "2001:db8::1", 32, -1, NULL },
	};
	char out[ANVIL_CLIENT_KEY_LEN];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_storage ss;

		memset(&ss, 0, sizeof(ss));
		if (strchr(cases[i].addr, ':') != NULL) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

			s6->sin6_family = AF_INET6;
			assert_int_equal(inet_pton(AF_INET6, cases[i].addr, &s6->sin6_addr), 1);
		} else {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

			s4->sin_family = AF_INET;
			assert_int_equal(inet_pton(AF_INET, cases[i].addr, &s4->sin_addr), 1);
		}
		if (cases[i].key == NULL) {
			assert_int_equal(anvil_client_key(out, sizeof(out), (struct sockaddr *)&ss,
							  cases[i].v4, cases[i].v6), -1);
			continue;
		}
		assert_int_equal(anvil_client_key(out, sizeof(out), (struct sockaddr *)&ss,
						  cases[i].v4, cases[i].v6), 0);
		assert_string_equal(out, cases[i].key);
		/* Too small a buffer fails, and leaves "". */
		assert_int_equal(anvil_client_key(out, strlen(cases[i].key), (struct sockaddr *)&ss,
						  cases[i].v4, cases[i].v6), -1);
		assert_string_equal(out, "");
	}
	{
		struct sockaddr sa = { .sa_family = AF_UNIX };

		assert_int_equal(anvil_client_key(out, sizeof(out), &sa, 32, 128), -1);
	}
}

static void
test_ident(void **state)
{
	struct buf b = BUF_INIT;

	anvil_ident(&b, "127.0.0.1:2729", "127.0.0.1");
	assert_string_equal(buf_str(&b), "127.0.0.1:2729:127.0.0.1");
	buf_reset(&b);
	anvil_ident(&b, "sm\ttp\x7f", "a\nb\xc3\xa9");
	assert_string_equal(buf_str(&b), "sm?tp?:a?b??");
	buf_free(&b);
}

struct listed {
	int n;
	char text[1024];
};

static void
list_cb(void *ctx, const char *ident, const struct anvil_reply *r)
{
	struct listed *l = ctx;
	size_t len = strlen(l->text);

	l->n++;
	snprintf(l->text + len, sizeof(l->text) - len, "%s %d %d %d %d;", ident, r->count, r->rate,
		 r->mail, r->rcpt);
}

/* anvil_list() and anvil_clear(): what `mxgate anvil show|clear` see. */
static void
test_list_and_clear(void **state)
{
	struct anvil *a = anvil_memory_create(60, 0);
	struct listed l = { 0 };

	(void)state;
	req(anvil_connect, a, "smtp:192.0.2.1", T0);
	req(anvil_connect, a, "smtp:192.0.2.1", T0);
	req(anvil_message, a, "smtp:192.0.2.1", T0);
	req(anvil_recipient, a, "smtp:192.0.2.1", T0);
	session(a, "smtp:192.0.2.2", T0);
	session(a, "submission:192.0.2.2", T0);
	assert_int_equal(anvil_list(a, T0, "192.0.2.1", list_cb, &l), 1);
	assert_string_equal(l.text, "smtp:192.0.2.1 2 2 1 1;");
	memset(&l, 0, sizeof(l));
	assert_int_equal(anvil_list(a, T0, "192.0.2.2", list_cb, &l), 2);
	assert_int_equal(anvil_list(a, T0, NULL, list_cb, &l), 3 + 0);
	memset(&l, 0, sizeof(l));
	assert_int_equal(anvil_list(a, T0, "smtp:192.0.2.2", list_cb, &l), 1);
	assert_string_equal(l.text, "smtp:192.0.2.2 0 1 0 0;");
	/* clear: the rates start again, the count of live sessions stays */
	assert_int_equal(anvil_clear(a, T0 + 1, "192.0.2.1"), 1);
	memset(&l, 0, sizeof(l));
	anvil_list(a, T0 + 1, "192.0.2.1", list_cb, &l);
	assert_string_equal(l.text, "smtp:192.0.2.1 2 0 0 0;");
	assert_int_equal(conn_rate(a, "smtp:192.0.2.1", T0 + 1), 1);
	assert_int_equal(anvil_clear(a, T0 + 1, "192.0.2.9"), 0);
	/* an expired idle entry is not listed */
	memset(&l, 0, sizeof(l));
	assert_int_equal(anvil_list(a, T0 + 61, "192.0.2.2", list_cb, &l), 0);
	anvil_free(&a);
}

static void
test_ident_matches(void **state)
{
	(void)state;
	assert_true(anvil_ident_matches("smtp:192.0.2.1", NULL));
	assert_true(anvil_ident_matches("smtp:192.0.2.1", ""));
	assert_true(anvil_ident_matches("smtp:192.0.2.1", "192.0.2.1"));
	assert_true(anvil_ident_matches("smtp:192.0.2.1", "smtp:192.0.2.1"));
	assert_true(anvil_ident_matches("127.0.0.1:2525:2001:db8::/84", "2001:db8::/84"));
	assert_false(anvil_ident_matches("smtp:192.0.2.11", "192.0.2.1"));
	assert_false(anvil_ident_matches("smtp:192.0.2.1", "2.0.2.1"));
	assert_false(anvil_ident_matches("smtp:192.0.2.1", "smtp:192.0.2.1x"));
}

/* The Redis backend's argument; creating it makes no connection, and a request on a loop that
 * was never attached is answered at once from the local counts. */
static void
test_redis_spec(void **state)
{
	static const char *const bad[] = {
		"redis:", "redis:localhost", "redis:localhost:", "redis:localhost:0",
		"redis:localhost:65536", "redis:localhost:6379x", "redis:unix:relative", "redis::6379",
	};
	struct anvil_settings set = { "test:", "", 3 };
	struct anvil *a;
	char *err = NULL;
	size_t i;

	(void)state;
	anvil_set_settings(&set);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		a = anvil_create(bad[i], 60, 0, &err);
		assert_null(a);
		assert_non_null(err);
		free(err);
		err = NULL;
	}
	a = anvil_create("redis:unix:/nonexistent/redis.sock", 60, 0, &err);
	assert_non_null(a);
	anvil_free(&a);
	a = anvil_create("redis:[::1]:6379", 60, 0, &err);
	assert_non_null(a);
	assert_int_equal(req(anvil_connect, a, "smtp:192.0.2.1", T0).count, 1);
	assert_int_equal(req(anvil_connect, a, "smtp:192.0.2.1", T0).rate, 2);
	assert_int_equal(req(anvil_disconnect, a, "smtp:192.0.2.1", T0).count, 1);
	assert_int_equal(anvil_entries(a), 1);
	anvil_free(&a);
	/* an unreadable password file is refused when the backend is made */
	set.redis_password_file = "/nonexistent/password";
	anvil_set_settings(&set);
	assert_null(anvil_create("redis:127.0.0.1:6379", 60, 0, &err));
	assert_non_null(strstr(err, "mxgate_anvil_redis_password_file = /nonexistent/password"));
	free(err);
	set.redis_password_file = "";
	anvil_set_settings(&set);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_observed_sequence),
		cmocka_unit_test(test_window_edge),
		cmocka_unit_test(test_count_and_disconnect),
		cmocka_unit_test(test_expiry),
		cmocka_unit_test(test_shared_window),
		cmocka_unit_test(test_read_only),
		cmocka_unit_test(test_set_rate_time_unit),
		cmocka_unit_test(test_statistics),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_threads_bound),
		cmocka_unit_test(test_bound_all_connected),
		cmocka_unit_test(test_bound_idle_eviction),
		cmocka_unit_test(test_bound_sweeps_first),
		cmocka_unit_test(test_client_key),
		cmocka_unit_test(test_ident),
		cmocka_unit_test(test_list_and_clear),
		cmocka_unit_test(test_ident_matches),
		cmocka_unit_test(test_redis_spec),
	};

	setenv("TZ", "UTC", 1);
	tzset();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
