/*
 * deliver/mbox: the bytes Postfix's local(8) writes into an mbox, and the
 * append/rollback contract.
 *
 *  - the From_ line (two spaces, asctime without its LF, MAILER-DAEMON for
 *    <>), Return-Path, Delivered-To, trace, Received, content, the blank line;
 *  - ">From " quoting at every line start and only there, also when the
 *    body arrives one byte at a time (a line start split across reads);
 *  - a last line without LF gets one;
 *  - append to an existing mbox keeps what was there; rollback truncates
 *    back to it; a mailbox over size_limit fails EFBIG and is left as it
 *    was; a symlink is not followed; control bytes are refused;
 *  - mailbox_delivery_lock parsing; the dotlock is removed after commit.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "deliver/mbox.h"
#include "deliver/spool.h"
#include "util/buf.h"

/* A spool whose pread() returns at most step bytes: reads split anywhere. */
struct step_spool {
	struct spool sp;
	const char *data;
	size_t	len, step;
};

static ssize_t
step_pread(const struct spool *sp, void *buf, size_t len, size_t off)
{
	const struct step_spool *s = (const struct step_spool *)sp;
	size_t n;

	if (off >= s->len)
		return 0;
	n = s->len - off;
	if (n > len)
		n = len;
	if (n > s->step)
		n = s->step;
	memcpy(buf, s->data + off, n);
	return (ssize_t)n;
}

static size_t step_size(const struct spool *sp) { return ((const struct step_spool *)sp)->len; }
static void step_free(struct spool *sp) { (void)sp; }

static const struct spool_ops step_ops = {
	.pread = step_pread,
	.size = step_size,
	.free = step_free,
};

/* 2024-01-01 12:34:56 UTC, a Monday; the tests run with TZ=UTC. */
#define NOW 1704112496

static const char *
fmt(const char *sender, const char *content, size_t step, const char *trace)
{
	static struct buf out;
	struct step_spool ss = { .data = content, .len = strlen(content), .step = step };
	struct mbox_msg m = {
		.sender = sender,
		.received = "Received: by mx.example (mxgate) id 4ABC; Mon, 1 Jan 2024\n",
		.now = NOW,
	};
	struct mbox_rcpt r = { .path = "/nonexistent", .delivered_to = "u@example.com",
			       .trace = trace };

	m.received_len = strlen(m.received);
	if (step > 0) {
		spool_init(&ss.sp, &step_ops);
		m.body = &ss.sp;
	} else {
		m.content = content;
		m.content_len = strlen(content);
	}
	buf_reset(&out);
	assert_int_equal(mbox_format(&m, &r, &out), 0);
	return buf_str(&out);
}

#define HEAD "Return-Path: <a@example.org>\nDelivered-To: u@example.com\n" \
	"Received: by mx.example (mxgate) id 4ABC; Mon, 1 Jan 2024\n"

static void
test_layout(void **state)
{
	(void)state;
	assert_string_equal(fmt("a@example.org", "Subject: x\n\nhello\n", 0, NULL),
			    "From a@example.org  Mon Jan  1 12:34:56 2024\n" HEAD
			    "Subject: x\n\nhello\n\n");
	/* the null sender */
	assert_string_equal(fmt("", "S: x\n\nb\n", 0, NULL),
			    "From MAILER-DAEMON  Mon Jan  1 12:34:56 2024\n"
			    "Return-Path: <>\nDelivered-To: u@example.com\n"
			    "Received: by mx.example (mxgate) id 4ABC; Mon, 1 Jan 2024\n"
			    "S: x\n\nb\n\n");
	/* no LF at the end: one is added, then the blank line */
	assert_string_equal(fmt("a@example.org", "S: x\n\nno newline", 0, NULL),
			    "From a@example.org  Mon Jan  1 12:34:56 2024\n" HEAD
			    "S: x\n\nno newline\n\n");
	/* trace lines go between Delivered-To and Received */
	assert_string_equal(fmt("a@example.org", "S: x\n\nb\n", 0, "Delivered-To: f@example.com\n"),
			    "From a@example.org  Mon Jan  1 12:34:56 2024\n"
			    "Return-Path: <a@example.org>\nDelivered-To: u@example.com\n"
			    "Delivered-To: f@example.com\n"
			    "Received: by mx.example (mxgate) id 4ABC; Mon, 1 Jan 2024\n"
			    "S: x\n\nb\n\n");
}

static void
test_quoting(void **state)
{
	const char *in = "S: x\n\nFrom me\nFrom\nFrom:x\n From y\nxFrom z\n>From q\nFrom ";
	const char *want = "From a@example.org  Mon Jan  1 12:34:56 2024\n" HEAD
			   "S: x\n\n>From me\nFrom\nFrom:x\n From y\nxFrom z\n>From q\n>From \n\n";
	size_t steps[] = { 0, 1, 2, 3, 4, 5, 6, 7, 13, 65536 };

	(void)state;
	for (size_t i = 0; i < sizeof(steps) / sizeof(*steps); i++)
		assert_string_equal(fmt("a@example.org", in, steps[i], NULL), want);
	/* a short last line without LF, split */
	assert_string_equal(fmt("a@example.org", "S: x\n\nFro", 1, NULL),
			    "From a@example.org  Mon Jan  1 12:34:56 2024\n" HEAD "S: x\n\nFro\n\n");
}

static char dir[256];

static int
setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/test_mbox.XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int
teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static char *
slurp(const char *path, size_t *len_r)
{
	FILE *f = fopen(path, "r");
	struct buf b = BUF_INIT;
	char chunk[4096];
	size_t n;

	if (f == NULL)
		return NULL;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_append(&b, chunk, n);
	fclose(f);
	*len_r = b.len;
	buf_putc(&b, '\0');
	return buf_steal(&b);
}

static struct mbox_copy *
append(const char *path, const char *content, off_t limit, struct buf *err)
{
	struct mbox_msg m = { .sender = "a@example.org", .content = content,
			      .content_len = strlen(content), .now = NOW };
	struct mbox_rcpt r = { .path = path, .delivered_to = "u@example.com" };

	return mbox_append(&m, &r, MBOX_LOCK_FCNTL | MBOX_LOCK_DOTLOCK, limit, err);
}

static void
test_append_commit_rollback(void **state)
{
	char path[300], lock[320];
	struct buf err = BUF_INIT;
	struct mbox_copy *c;
	struct stat st;
	char *got;
	size_t len;

	(void)state;
	snprintf(path, sizeof(path), "%s/u", dir);
	snprintf(lock, sizeof(lock), "%s/u.lock", dir);
	c = append(path, "S: one\n\nFrom here\n", 0, &err);
	assert_non_null(c);
	assert_int_equal(stat(lock, &st), 0);	/* locked until the verdict */
	mbox_commit(&c);
	assert_null(c);
	assert_int_equal(stat(lock, &st), -1);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	got = slurp(path, &len);
	assert_string_equal(got, "From a@example.org  Mon Jan  1 12:34:56 2024\n"
			    "Return-Path: <a@example.org>\nDelivered-To: u@example.com\n"
			    "S: one\n\n>From here\n\n");
	free(got);
	/* a second message, rolled back: the file is as it was */
	c = append(path, "S: two\n\nbody\n", 0, &err);
	assert_non_null(c);
	assert_int_equal(stat(path, &st), 0);
	assert_true(st.st_size > (off_t)len);
	mbox_rollback(&c);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, (off_t)len);
	assert_int_equal(stat(lock, &st), -1);
	/* over the size limit: EFBIG, nothing written */
	c = append(path, "S: three\n\nbody\n", (off_t)len + 10, &err);
	assert_null(c);
	assert_int_equal(errno, EFBIG);
	assert_non_null(strstr(buf_str(&err), "File too large"));
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, (off_t)len);
	assert_int_equal(stat(lock, &st), -1);
	buf_free(&err);
}

static void
test_refusals(void **state)
{
	char path[300], target[300];
	struct buf err = BUF_INIT;
	struct stat st;
	struct mbox_msg m = { .sender = "a@example.org", .content = "x\n", .content_len = 2 };
	struct mbox_rcpt r = { .delivered_to = "u@example.com" };

	(void)state;
	/* a symlink is not followed */
	snprintf(path, sizeof(path), "%s/link", dir);
	snprintf(target, sizeof(target), "%s/target", dir);
	assert_int_equal(symlink(target, path), 0);
	assert_null(append(path, "S: x\n\nb\n", 0, &err));
	assert_int_equal(stat(target, &st), -1);
	/* a header injection in Delivered-To */
	snprintf(path, sizeof(path), "%s/u2", dir);
	r.path = path;
	r.delivered_to = "u@example.com\nBcc: x";
	assert_null(mbox_append(&m, &r, MBOX_LOCK_FCNTL, 0, &err));
	assert_int_equal(errno, EINVAL);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 0);
	/* relative */
	r.path = "relative";
	r.delivered_to = "u@example.com";
	assert_null(mbox_append(&m, &r, MBOX_LOCK_FCNTL, 0, &err));
	assert_int_equal(errno, EINVAL);
	buf_free(&err);
}

static void
test_lock_parse(void **state)
{
	const char *bad;
	size_t badlen;

	(void)state;
	assert_int_equal(mbox_lock_parse("fcntl, dotlock", &bad, &badlen),
			 MBOX_LOCK_FCNTL | MBOX_LOCK_DOTLOCK);
	assert_int_equal(mbox_lock_parse("flock", &bad, &badlen), MBOX_LOCK_FLOCK);
	assert_int_equal(mbox_lock_parse("", &bad, &badlen), 0);
	assert_int_equal(mbox_lock_parse("fcntl,bogus dotlock", &bad, &badlen), -1);
	assert_int_equal(badlen, 5);
	assert_memory_equal(bad, "bogus", 5);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_quoting),
		cmocka_unit_test(test_lock_parse),
		cmocka_unit_test_setup_teardown(test_append_commit_rollback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
	};

	setenv("TZ", "UTC", 1);
	tzset();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
