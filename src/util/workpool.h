/*
 * workpool: a small pool of threads for work that may block (disk, table
 * lookups that read files or ask a server), so that an event loop never
 * waits for it.  Two pools exist in the daemon: the writers (Maildir
 * delivery) and the lookups (recipient tables); each has its own threads,
 * so a slow table never holds up a delivery and the other way round.
 *
 * A job is two functions and an argument: work(arg) runs on a pool thread,
 * then done(arg) runs on the loop the job was submitted with (loop_post()).
 * Jobs start in FIFO order; with more than one thread they may finish in
 * any order.
 *
 * Inline pools (nthreads 0), for unit tests and fuzzers: work(arg) runs
 * inside workpool_submit() on the caller's thread, and done(arg) is still
 * posted to the loop, so the caller sees the same order of events as with
 * threads, deterministically.
 *
 * CONTRACT:
 *  - done() runs exactly once per job, on the loop's thread, never inside
 *    workpool_submit() and never on a pool thread.
 *  - work() must not touch anything the loop thread may change meanwhile:
 *    give it its own copies (and references) of what it needs.  To cancel,
 *    the submitter marks the job's argument as abandoned; done() then frees
 *    it without telling anyone.  Nothing is ever freed under a running
 *    work().
 *  - The loop must outlive the job: evloop_free() runs posts still queued,
 *    so a job that finished while the loop was stopping still gets done().
 */
#ifndef MXGATE_UTIL_WORKPOOL_H
#define MXGATE_UTIL_WORKPOOL_H

#include <pthread.h>

struct loop;
struct workpool;

/*
 * Start nthreads threads (0: inline, see above).  name is used in fatal
 * messages and names the threads (thread_name()).  Failing to start a
 * thread is fatal.
 */
struct workpool *workpool_create(const char *name, int nthreads);

/* Name thread t "mxg <name>" (15 characters at most), as top -H and perf show it. */
void	thread_name(pthread_t t, const char *name);

/*
 * Stop taking jobs, let the threads finish every queued job (their done()
 * calls are posted to their loops), join the threads, free the pool and set
 * *pp to NULL.  NULL *pp is fine.  Never call it from a work() function.
 */
void workpool_destroy(struct workpool **pp);

/*
 * Queue a job.  Any thread may submit; it never blocks on the work (it
 * takes the queue mutex, appends and signals).  Allocation failure is
 * fatal; submitting to a pool being destroyed is a bug (panic).
 */
void workpool_submit(struct workpool *p, struct loop *l, void (*work)(void *arg),
		     void (*done)(void *arg), void *arg);

/* Jobs queued or running now (for status and shutdown). */
int workpool_busy(struct workpool *p);

#endif
