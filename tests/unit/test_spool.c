/*
 * deliver/spool: the in-memory spool: bytes in, a commit that answers later
 * on the loop (never inside the call) and can be cancelled, reads after the
 * commit, the shared memory bound (past it nothing is kept, the status says
 * NO_SPACE, the bytes are given back), and references; the disk spool:
 * streaming with back-pressure into an unnamed file, small messages kept in
 * their buffer, a write error, the shared bound, the spool directory's
 * preparation and cleanup.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "deliver/spool.h"
#include "fakeloop.h"
#include "util/buf.h"
#include "util/loop.h"
#include "util/workpool.h"

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

/* ---- the disk spool (an inline writers pool: jobs run at submit, answers on the loop) ---- */

static int writable_calls;

static void
on_writable(void *arg)
{
	(void)arg;
	writable_calls++;
}

static int
dir_entries(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

struct disk_fixture {
	char	dir[64];
	struct workpool *pool;
	struct spool_dir *sd;
	struct fakeloop *fl;
	struct spool_ctx *ctx;
};

static void
disk_setup(struct disk_fixture *f, const char *sub)
{
	struct buf err = BUF_INIT;
	char path[128];

	snprintf(f->dir, sizeof(f->dir), "/tmp/mxgate-spool-unit-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(path, sizeof(path), "%s/%s", f->dir, sub);
	if (sub[0] != '\0' && strcmp(sub, "missing") != 0)
		assert_int_equal(spool_dir_prepare(path, &err), 0);
	buf_free(&err);
	f->pool = workpool_create("writers", 0);
	f->sd = spool_dir_new(path, f->pool);
	f->fl = fakeloop_new();
	f->ctx = spool_ctx_new(f->sd, fakeloop_loop(f->fl));
}

static void
disk_teardown(struct disk_fixture *f)
{
	char cmd[128];

	fakeloop_run(f->fl);
	spool_ctx_free(&f->ctx);
	workpool_destroy(&f->pool);
	fakeloop_free(&f->fl);
	spool_dir_free(&f->sd);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
}

/* 1 MB in 1000-byte pieces, feeding only while the spool is not busy, as a session does. */
static void
test_disk_streams_with_back_pressure(void **state)
{
	struct disk_fixture f;
	atomic_long total = 0;
	struct spool *sp;
	char piece[1000], out[4096];
	size_t written = 0, max_total = 0, off = 0;
	int busy_seen = 0;

	(void)state;
	disk_setup(&f, "spool");
	sp = spool_disk_new(f.ctx, &total, 0);
	while (written < 1000 * 1000) {
		if (spool_busy(sp)) {
			busy_seen++;
			writable_calls = 0;
			spool_on_writable(sp, fakeloop_loop(f.fl), on_writable, NULL);
			assert_int_equal(writable_calls, 0);	/* never inside the call */
			fakeloop_run(f.fl);
			assert_int_equal(writable_calls, 1);
			continue;
		}
		for (size_t i = 0; i < sizeof(piece); i++)
			piece[i] = (char)('a' + (written + i) % 26);
		assert_int_equal(spool_write(sp, piece, sizeof(piece)), SPOOL_OK);
		written += sizeof(piece);
		if ((size_t)total > max_total)
			max_total = (size_t)total;
	}
	assert_true(busy_seen > 0);
	/* what a spool holds in memory: its buffer and the one being written, 32 KiB each */
	assert_true(max_total <= 2 * 32 * 1024 + sizeof(piece));
	done_calls = 0;
	spool_commit(sp, fakeloop_loop(f.fl), on_commit, NULL);
	assert_int_equal(done_calls, 0);
	fakeloop_run(f.fl);
	assert_int_equal(done_calls, 1);
	assert_int_equal(done_status, SPOOL_OK);
	assert_int_equal(total, 0);
	assert_int_equal(spool_size(sp), written);
	/* the file has no name */
	assert_int_equal(dir_entries(spool_dir_path(f.sd)), 0);
	for (;;) {
		ssize_t n = spool_pread(sp, out, sizeof(out), off);

		assert_true(n >= 0);
		if (n == 0)
			break;
		for (ssize_t i = 0; i < n; i++)
			assert_int_equal(out[i], (char)('a' + (off + (size_t)i) % 26));
		off += (size_t)n;
	}
	assert_int_equal(off, written);
	spool_unref(&sp);
	disk_teardown(&f);
}

/* A message under 32 KiB is committed in its buffer: no file at all. */
static void
test_disk_small_message_in_memory(void **state)
{
	struct disk_fixture f;
	atomic_long total = 0;
	struct spool *sp;
	char out[32];

	(void)state;
	disk_setup(&f, "spool");
	sp = spool_disk_new(f.ctx, &total, 0);
	assert_int_equal(spool_write(sp, "small body\n", 11), SPOOL_OK);
	assert_int_equal(workpool_busy(f.pool), 0);
	spool_commit(sp, fakeloop_loop(f.fl), on_commit, NULL);
	done_calls = 0;
	fakeloop_run(f.fl);
	assert_int_equal(done_calls, 1);
	assert_int_equal(done_status, SPOOL_OK);
	assert_int_equal(spool_pread(sp, out, sizeof(out), 0), 11);
	assert_memory_equal(out, "small body\n", 11);
	assert_int_equal(total, 11);		/* counted until freed */
	spool_unref(&sp);
	assert_int_equal(total, 0);
	disk_teardown(&f);
}

/* The spool directory is gone: the first write job fails, the status is sticky. */
static void
test_disk_write_error(void **state)
{
	struct disk_fixture f;
	atomic_long total = 0;
	struct spool *sp;
	static char big[40 * 1024];

	(void)state;
	disk_setup(&f, "missing");
	sp = spool_disk_new(f.ctx, &total, 0);
	assert_int_equal(spool_write(sp, big, sizeof(big)), SPOOL_OK);	/* a job starts */
	fakeloop_run(f.fl);
	assert_int_equal(spool_status(sp), SPOOL_ERROR);
	assert_int_equal(spool_write(sp, big, 10), SPOOL_ERROR);
	assert_int_equal(total, 0);
	done_calls = 0;
	spool_commit(sp, fakeloop_loop(f.fl), on_commit, NULL);
	fakeloop_run(f.fl);
	assert_int_equal(done_calls, 1);
	assert_int_equal(done_status, SPOOL_ERROR);
	spool_unref(&sp);
	disk_teardown(&f);
}

/* The shared bound: over it a spool hands its bytes to a job at once and is busy meanwhile. */
static void
test_disk_shared_bound(void **state)
{
	struct disk_fixture f;
	atomic_long total = 0;
	struct spool *a, *b;
	char piece[6000] = { 0 };

	(void)state;
	disk_setup(&f, "spool");
	a = spool_disk_new(f.ctx, &total, 10000);
	b = spool_disk_new(f.ctx, &total, 10000);
	assert_int_equal(spool_write(a, piece, sizeof(piece)), SPOOL_OK);
	assert_int_equal(spool_busy(a), 0);
	assert_int_equal(spool_write(b, piece, sizeof(piece)), SPOOL_OK);	/* over: b writes */
	assert_int_equal(workpool_busy(f.pool), 0);	/* inline: done */
	assert_int_equal(spool_write(b, piece, 10), SPOOL_OK);
	assert_int_equal(spool_busy(b), 1);	/* its job's answer is not in yet */
	fakeloop_run(f.fl);
	assert_true(total <= 6010);
	spool_unref(&a);
	spool_unref(&b);
	assert_int_equal(total, 0);
	disk_teardown(&f);
}

/* Start-up: the directory is made; stale files are removed, by age or all. */
static void
test_disk_dir_prepare_and_clean(void **state)
{
	struct buf err = BUF_INIT;
	char dir[64], path[256], file[320];
	FILE *fp;

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/mxgate-spool-unit-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/a/b/spool", dir);
	assert_int_equal(spool_dir_prepare(path, &err), 0);
	snprintf(file, sizeof(file), "%s/123.4.tmp", path);
	fp = fopen(file, "w");
	assert_non_null(fp);
	fclose(fp);
	assert_int_equal(spool_dir_clean(path, 3600), 0);	/* fresh: kept */
	assert_int_equal(spool_dir_clean(path, 0), 1);		/* start-up: all */
	assert_int_equal(dir_entries(path), 0);
	/* under a regular file: refused, with the reason */
	fp = fopen(file, "w");
	assert_non_null(fp);
	fclose(fp);
	snprintf(path, sizeof(path), "%s/a/b/spool/123.4.tmp/sub", dir);
	buf_reset(&err);
	assert_int_equal(spool_dir_prepare(path, &err), -1);
	assert_non_null(strstr(buf_str(&err), "Not a directory"));
	buf_free(&err);
	snprintf(file, sizeof(file), "rm -rf %s", dir);
	assert_int_equal(system(file), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_commit_read),
		cmocka_unit_test(test_memory_bound),
		cmocka_unit_test(test_cancel_and_refs),
		cmocka_unit_test(test_disk_streams_with_back_pressure),
		cmocka_unit_test(test_disk_small_message_in_memory),
		cmocka_unit_test(test_disk_write_error),
		cmocka_unit_test(test_disk_shared_bound),
		cmocka_unit_test(test_disk_dir_prepare_and_clean),
	};

	return cmocka_run_group_tests_name("spool", tests, NULL, NULL);
}
