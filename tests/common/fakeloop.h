/*
 * fakeloop: util/loop.h in virtual time, for unit tests and fuzzers.
 * Nothing runs by itself: fakeloop_run() runs what is posted and the timers
 * that are due now; fakeloop_advance() moves the clock to the next timer.
 * Time starts at 1,700,000,000 s.  Single-threaded (loop_post() from
 * another thread is not supported: use inline pools).
 */
#ifndef MXGATE_TESTS_FAKELOOP_H
#define MXGATE_TESTS_FAKELOOP_H

struct fakeloop;
struct loop;

struct fakeloop *fakeloop_new(void);
struct loop *fakeloop_loop(struct fakeloop *fl);
/* Run posts and due timers until none is left; returns how many callbacks ran. */
int fakeloop_run(struct fakeloop *fl);
/* Jump to the earliest armed timer and run (fakeloop_run); 0 if no timer is armed. */
int fakeloop_advance(struct fakeloop *fl);
/* Move the clock by msec and run what became due. */
void fakeloop_sleep(struct fakeloop *fl, long msec);
long long fakeloop_now_ms(struct fakeloop *fl);
/* Timers still armed (a leak check before free). */
int fakeloop_armed(struct fakeloop *fl);
/* Run what is posted, then free; timers must have been freed by their owners. */
void fakeloop_free(struct fakeloop **flp);

#endif
