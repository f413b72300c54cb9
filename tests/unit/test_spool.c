/*
 * deliver/spool: the in-memory spool: bytes in, a commit that answers later
 * on the loop (never inside the call) and can be cancelled, reads after the
 * commit, the shared memory bound (past it nothing is kept, the status says
 * NO_SPACE, the bytes are given back), and references.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "deliver/spool.h"
#include "fakeloop.h"
#include "util/loop.h"

static int done_calls;
static enum spool_status done_status;

static void
on_commit(void *arg, enum spool_status st)
{
	(void)arg;
	done_calls++;
	done_status = st;
}

static void
test_write_commit_read(void **state)
{
	atomic_long total = 0;
	struct spool *sp = spool_memory_new(&total, 0);
	struct fakeloop *fl = fakeloop_new();
	char out[16];

	assert_int_equal(spool_write(sp, "hello ", 6), SPOOL_OK);
	assert_int_equal(spool_write(sp, "world", 5), SPOOL_OK);
	assert_int_equal(total, 11);
	assert_int_equal(spool_busy(sp), 0);
	assert_int_equal(spool_pread(sp, out, sizeof(out), 0), -1);	/* not committed */
	done_calls = 0;
	spool_commit(sp, fakeloop_loop(fl), on_commit, NULL);
	assert_int_equal(done_calls, 0);	/* never inside the call */
	fakeloop_run(fl);
	assert_int_equal(done_calls, 1);
	assert_int_equal(done_status, SPOOL_OK);
	assert_int_equal(spool_size(sp), 11);
	assert_int_equal(spool_pread(sp, out, 5, 0), 5);
	assert_memory_equal(out, "hello", 5);
	assert_int_equal(spool_pread(sp, out, sizeof(out), 6), 5);
	assert_memory_equal(out, "world", 5);
	assert_int_equal(spool_pread(sp, out, sizeof(out), 11), 0);
	spool_unref(&sp);
	assert_null(sp);
	assert_int_equal(total, 0);
	fakeloop_free(&fl);
}

/* Two spools share the bound: the one that would go past it keeps nothing. */
static void
test_memory_bound(void **state)
{
	atomic_long total = 0;
	struct spool *a = spool_memory_new(&total, 100);
	struct spool *b = spool_memory_new(&total, 100);
	char big[60];

	memset(big, 'x', sizeof(big));
	assert_int_equal(spool_write(a, big, 60), SPOOL_OK);
	assert_int_equal(spool_write(b, big, 30), SPOOL_OK);
	assert_int_equal(spool_write(b, big, 30), SPOOL_NO_SPACE);
	assert_int_equal(total, 60);		/* b gave its bytes back */
	assert_int_equal(spool_write(b, "y", 1), SPOOL_NO_SPACE);	/* sticky */
	assert_int_equal(spool_status(b), SPOOL_NO_SPACE);
	assert_int_equal(spool_size(b), 0);
	spool_unref(&b);
	assert_int_equal(total, 60);
	spool_unref(&a);
	assert_int_equal(total, 0);
}

/* A cancelled commit never answers; a reference keeps the bytes after the owner let go. */
static void
test_cancel_and_refs(void **state)
{
	atomic_long total = 0;
	struct spool *sp = spool_memory_new(&total, 0);
	struct spool *ref;
	struct fakeloop *fl = fakeloop_new();
	char out[4];

	assert_int_equal(spool_write(sp, "abc", 3), SPOOL_OK);
	done_calls = 0;
	spool_commit(sp, fakeloop_loop(fl), on_commit, NULL);
	spool_commit_cancel(sp);
	ref = spool_ref(sp);
	spool_unref(&sp);		/* the owner goes; the posted commit holds one too */
	fakeloop_run(fl);
	assert_int_equal(done_calls, 0);
	assert_int_equal(spool_pread(ref, out, sizeof(out), 0), 3);
	assert_int_equal(total, 3);
	spool_unref(&ref);
	assert_int_equal(total, 0);
	fakeloop_free(&fl);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_commit_read),
		cmocka_unit_test(test_memory_bound),
		cmocka_unit_test(test_cancel_and_refs),
	};

	return cmocka_run_group_tests_name("spool", tests, NULL, NULL);
}
