/*
 * slowspool: a test spool that pushes back, as a disk spool does when the
 * disk is slower than the client: it keeps the bytes in an in-memory spool,
 * and once `window` bytes were written since the last slowspool_release()
 * it is busy until the test releases it (a "write finished").
 */
#ifndef MXGATE_TESTS_SLOWSPOOL_H
#define MXGATE_TESTS_SLOWSPOOL_H

#include <stdatomic.h>
#include <stddef.h>

struct spool;

/* The factory a session_env takes: ctx points at the window (a size_t). */
struct spool *slowspool_new(void *ctx, atomic_long *total, long limit);
/* The spool takes bytes again; a waiting writer is told (posted). */
void slowspool_release(struct spool *sp);
/* The spool most recently made (the one the current session writes). */
struct spool *slowspool_last(void);

#endif
