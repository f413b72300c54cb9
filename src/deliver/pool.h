/*
 * pool: the writer threads.  DESIGN.md: disk work (write, fsync, rename)
 * never runs on an event-loop thread.  A session hands its delivery to the
 * pool and is woken on its own loop thread when it is done.
 *
 * A job is two callbacks and an argument: work(arg) runs on a pool thread,
 * then done(arg) runs on the event-loop thread that owns the base the job
 * was submitted with.  Jobs start in FIFO order (one shared queue, a pthread
 * mutex and condition variable); with more than one thread they may finish
 * in any order.
 *
 * REQUIREMENTS:
 *  - evthread_use_pthreads() was called at start-up, before the bases were
 *    created: the pool thread wakes the loop with event_active(), which is
 *    only thread-safe on a base that has locks and a notification channel.
 *  - The caller keeps arg (the session, its transaction) alive until done
 *    runs.  A session that is closing while a job is in flight is marked and
 *    freed from done(), the next safe point; never free it in between.
 *  - The base's loop keeps running until every job submitted with it has
 *    had its done() called.  Each job holds the loop open (an added event),
 *    so event_base_dispatch() does not return "no events" while a job is in
 *    flight.  Never free a base with a job in flight.
 *
 * NEVER: done() is never called on a pool thread, nor from inside
 * deliver_pool_submit(); work() is never called on the submitting thread.
 *
 * BUGS: each job fsyncs on its own.  Grouping the fsyncs of messages that
 * finish together (DESIGN.md: "Group fsyncs where several messages finish
 * together") is a later optimisation.
 */
#ifndef MXGATE_DELIVER_POOL_H
#define MXGATE_DELIVER_POOL_H

struct event_base;
struct deliver_pool;

/*
 * Start nthreads writer threads (nthreads >= 1).  Failing to start a thread
 * is fatal (msg_fatal): the server cannot keep promise 2 without them.
 */
struct deliver_pool *deliver_pool_create(int nthreads);

/*
 * Stop accepting jobs, let the threads finish every queued job (work() runs
 * for each; their done() callbacks are queued on their bases and run when
 * those loops next run), join the threads, free the pool and set *pp to
 * NULL.  A NULL *pp is a no-op.  Do not call it from a work() callback.
 */
void deliver_pool_destroy(struct deliver_pool **pp);

/*
 * Queue a job; call only from the loop thread that owns base (the done
 * event is created there).  Never blocks on disk: it takes the queue
 * mutex, appends and signals.  Allocation failure is fatal.
 */
void deliver_pool_submit(struct deliver_pool *p, struct event_base *base,
			 void (*work)(void *arg), void (*done)(void *arg), void *arg);

#endif
