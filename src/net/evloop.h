/*
 * evloop: the libevent implementation of util/loop.h, one per event-loop
 * thread (worker).  It owns the event_base: the transport and the name
 * lookups that need libevent itself get it from evloop_base().
 *
 * loop_post() is a mutex-protected FIFO and one wake-up event made active
 * with event_active(), which is thread-safe because main() calls
 * evthread_use_pthreads() before any base exists.
 */
#ifndef MXGATE_NET_EVLOOP_H
#define MXGATE_NET_EVLOOP_H

struct event_base;
struct evloop;
struct loop;

/* A new loop with its own event_base.  Allocation failure is fatal. */
struct evloop *evloop_new(void);
struct loop *evloop_loop(struct evloop *el);
struct event_base *evloop_base(struct evloop *el);
/*
 * Run the loop on the calling thread until evloop_stop().  It does not
 * return when it has nothing to wait for (EVLOOP_NO_EXIT_ON_EMPTY).
 */
void evloop_run(struct evloop *el);
/* Make evloop_run() return after the current turn; any thread. */
void evloop_stop(struct evloop *el);
/*
 * Run every post still queued (also those they post), then free the loop
 * and its base and set *elp to NULL.  Timers must have been freed by their
 * owners; the loop must not be running.
 */
void evloop_free(struct evloop **elp);

#endif
