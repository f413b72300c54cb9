/*
 * util/workpool: work() runs on pool threads, done() on the loop thread,
 * every job completes, jobs start FIFO, the loop keeps running (timers fire)
 * while the threads are busy, destroy drains the queue, and an inline pool
 * (0 threads) runs work() at once but still posts done() to the loop.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "net/evloop.h"
#include "util/loop.h"
#include "util/workpool.h"

#define NJOBS 1000

struct test_job {
	int idx;
	int on_loop_thread;	/* work() ran on the loop thread: a bug */
	int worked;		/* work() finished */
	int done_calls;
	int done_on_other;	/* done() ran off the loop thread: a bug */
	int done_before_work;	/* done() ran before work() finished: a bug */
	pthread_t worker;
	long work_seq;		/* order in which work() started */
	long sleep_us;
};

static pthread_t loop_thread;
static long work_seq;
static long works_finished;
static int done_count;
static int done_target;
static struct event *tick_ev;
static struct evloop *cur_loop;
static int in_submit;		/* done() must never run inside workpool_submit() */
static int done_in_submit;

static void
job_work(void *arg)
{
	struct test_job *j = arg;

	j->work_seq = __atomic_fetch_add(&work_seq, 1, __ATOMIC_SEQ_CST);
	j->worker = pthread_self();
	j->on_loop_thread = pthread_equal(j->worker, loop_thread);
	if (j->sleep_us)
		usleep((useconds_t)j->sleep_us);
	__atomic_store_n(&j->worked, 1, __ATOMIC_SEQ_CST);
	__atomic_fetch_add(&works_finished, 1, __ATOMIC_SEQ_CST);
}

static void
job_done(void *arg)
{
	struct test_job *j = arg;

	j->done_calls++;
	if (!pthread_equal(pthread_self(), loop_thread))
		j->done_on_other = 1;
	if (!__atomic_load_n(&j->worked, __ATOMIC_SEQ_CST))
		j->done_before_work = 1;
	if (in_submit)
		done_in_submit = 1;
	if (++done_count == done_target) {
		if (tick_ev != NULL)
			event_del(tick_ev);
		evloop_stop(cur_loop);
	}
}

static void
reset(int target)
{
	loop_thread = pthread_self();
	done_in_submit = 0;
	work_seq = 0;
	works_finished = 0;
	done_count = 0;
	done_target = target;
	tick_ev = NULL;
}

static void
submit(struct workpool *p, struct test_job *j)
{
	in_submit = 1;
	workpool_submit(p, evloop_loop(cur_loop), job_work, job_done, j);
	in_submit = 0;
}

static void
check_jobs(struct test_job *jobs, int n)
{
	assert_int_equal(done_in_submit, 0);
	for (int i = 0; i < n; i++) {
		assert_int_equal(jobs[i].worked, 1);
		assert_int_equal(jobs[i].on_loop_thread, 0);
		assert_int_equal(jobs[i].done_calls, 1);
		assert_int_equal(jobs[i].done_on_other, 0);
		assert_int_equal(jobs[i].done_before_work, 0);
	}
}

/* 1000 jobs over 4 threads; the loop has nothing else to wait for. */
static void
test_thousand_jobs(void **state)
{
	struct evloop *el = cur_loop = evloop_new();
	struct workpool *p = workpool_create("test", 4);
	struct test_job *jobs = calloc(NJOBS, sizeof(*jobs));
	pthread_t seen[8];
	int nseen = 0;

	reset(NJOBS);
	for (int i = 0; i < NJOBS; i++) {
		jobs[i].idx = i;
		jobs[i].sleep_us = 50;
		submit(p, &jobs[i]);
	}
	/* The last done() stops the loop. */
	evloop_run(el);
	assert_int_equal(done_count, NJOBS);
	check_jobs(jobs, NJOBS);

	for (int i = 0; i < NJOBS; i++) {
		int k;

		for (k = 0; k < nseen; k++)
			if (pthread_equal(seen[k], jobs[i].worker))
				break;
		if (k == nseen) {
			assert_true(nseen < 4);
			seen[nseen++] = jobs[i].worker;
		}
	}
	assert_true(nseen >= 2);

	workpool_destroy(&p);
	assert_null(p);
	evloop_free(&el);
	free(jobs);
}

/* One thread: work() starts in submission order. */
static void
test_fifo(void **state)
{
	struct evloop *el = cur_loop = evloop_new();
	struct workpool *p = workpool_create("test", 1);
	struct test_job jobs[100];

	memset(jobs, 0, sizeof(jobs));
	reset(100);
	for (int i = 0; i < 100; i++) {
		jobs[i].idx = i;
		submit(p, &jobs[i]);
	}
	evloop_run(el);
	check_jobs(jobs, 100);
	for (int i = 0; i < 100; i++)
		assert_int_equal(jobs[i].work_seq, i);
	workpool_destroy(&p);
	evloop_free(&el);
}

static int ticks;

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	ticks++;
}

/* Slow disk work does not stall the loop: a 10 ms timer keeps firing. */
static void
test_loop_not_blocked(void **state)
{
	struct evloop *el = cur_loop = evloop_new();
	struct workpool *p = workpool_create("test", 2);
	struct timeval ten_ms = { 0, 10000 };
	struct test_job jobs[2];

	memset(jobs, 0, sizeof(jobs));
	reset(2);
	ticks = 0;
	tick_ev = event_new(evloop_base(el), -1, EV_PERSIST, on_tick, NULL);
	event_add(tick_ev, &ten_ms);
	for (int i = 0; i < 2; i++) {
		jobs[i].sleep_us = 300000;
		submit(p, &jobs[i]);
	}
	evloop_run(el);
	check_jobs(jobs, 2);
	/* ~30 expected; be lenient for loaded machines and sanitizers. */
	assert_true(ticks >= 10);
	event_free(tick_ev);
	tick_ev = NULL;
	workpool_destroy(&p);
	evloop_free(&el);
}

/* destroy() runs every queued work() before it returns; done() runs later on the loop. */
static void
test_destroy_drains(void **state)
{
	struct evloop *el = cur_loop = evloop_new();
	struct workpool *p = workpool_create("test", 2);
	struct test_job jobs[50];

	memset(jobs, 0, sizeof(jobs));
	reset(50);
	for (int i = 0; i < 50; i++) {
		jobs[i].sleep_us = 1000;
		submit(p, &jobs[i]);
	}
	workpool_destroy(&p);
	assert_null(p);
	assert_int_equal(works_finished, 50);
	assert_int_equal(done_count, 0);
	evloop_run(el);
	assert_int_equal(done_count, 50);
	check_jobs(jobs, 50);
	evloop_free(&el);
}

/* destroy() with done() posts still queued: evloop_free() runs them. */
static void
test_free_runs_posts(void **state)
{
	struct evloop *el = cur_loop = evloop_new();
	struct workpool *p = workpool_create("test", 1);
	struct test_job jobs[5];

	memset(jobs, 0, sizeof(jobs));
	reset(5);
	for (int i = 0; i < 5; i++)
		submit(p, &jobs[i]);
	workpool_destroy(&p);
	assert_int_equal(done_count, 0);
	evloop_free(&el);
	assert_null(el);
	assert_int_equal(done_count, 5);
	check_jobs(jobs, 5);
}

/* Inline pool: work() at once on the caller's thread, done() later on the loop, in order. */
static void
test_inline(void **state)
{
	struct evloop *el = cur_loop = evloop_new();
	struct workpool *p = workpool_create("inline", 0);
	struct test_job jobs[10];

	memset(jobs, 0, sizeof(jobs));
	reset(10);
	for (int i = 0; i < 10; i++) {
		submit(p, &jobs[i]);
		assert_int_equal(jobs[i].worked, 1);
		assert_true(pthread_equal(jobs[i].worker, loop_thread));
	}
	assert_int_equal(done_count, 0);
	assert_int_equal(workpool_busy(p), 0);
	evloop_run(el);
	assert_int_equal(done_count, 10);
	assert_int_equal(done_in_submit, 0);
	for (int i = 0; i < 10; i++) {
		assert_int_equal(jobs[i].done_calls, 1);
		assert_int_equal(jobs[i].work_seq, i);
	}
	workpool_destroy(&p);
	evloop_free(&el);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_thousand_jobs),
		cmocka_unit_test(test_fifo),
		cmocka_unit_test(test_loop_not_blocked),
		cmocka_unit_test(test_destroy_drains),
		cmocka_unit_test(test_free_runs_posts),
		cmocka_unit_test(test_inline),
	};

	if (evthread_use_pthreads() < 0)
		return 1;
	return cmocka_run_group_tests_name("workpool", tests, NULL, NULL);
}
