/*
 * deliver/maildir: what a user would see in the mailbox.
 *
 *  - one and three recipients: files in new/, byte-exact, headers in
 *    Postfix virtual(8) order, mode 0600;
 *  - 100 deliveries in a tight loop, and 4 threads x 50 into one Maildir:
 *    every name distinct (row 58);
 *  - a Maildir (and its parents) that does not exist yet is created 0700;
 *  - failures (new/ not writable or not a directory, tmp/ not a directory,
 *    the Maildir a file, refused arguments) leave no file in any new/ or
 *    tmp/ (rows 54, 57; RFC 5321 4.1.1.4).
 *
 * Under tests/shim/faultfs.so (MXGATE_FAULT set, see maildir_fault.sh) only
 * test_fault runs: delivery must fail with the injected errno, naming the
 * operation, and leave no copy behind.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "deliver/maildir.h"
#include "deliver/spool.h"
#include "fakeloop.h"
#include "util/loop.h"
#include "util/buf.h"

#define HOST "mx.example.com"

static char base[4096];		/* the test's temp dir, per test */

/* A message with the awkward bytes rows 17 and 19 care about: a long line and a NUL. */
static char *content;
static size_t content_len;

static void
make_content(void)
{
	struct buf b = BUF_INIT;

	buf_puts(&b, "Received: from client.example (client.example [192.0.2.1])\n"
		 "\tby " HOST " (mxgate) with ESMTP id 4ABCDEF\n"
		 "\tfor <u1@example.com>; Mon,  1 Jan 2024 00:00:00 +0000 (UTC)\n"
		 "From: a@example.org\nSubject: test\n\nbody line 1\n");
	for (int i = 0; i < 5000; i++)
		buf_putc(&b, (char)('a' + i % 26));
	buf_puts(&b, "\nNUL here:");
	buf_append(&b, "\0", 1);
	buf_puts(&b, ":end\n.\n..dots stay as given\n");
	content_len = b.len;
	content = buf_steal(&b);
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int
chmod_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	if (flag == FTW_D || flag == FTW_DP)
		chmod(path, 0700);
	return 0;
}

static int
setup(void **state)
{
	const char *t = getenv("TMPDIR");

	snprintf(base, sizeof(base), "%s/mxgate-maildir-XXXXXX", t && *t ? t : "/tmp");
	if (mkdtemp(base) == NULL)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	nftw(base, chmod_entry, 16, FTW_PHYS);
	nftw(base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

/* "<base>/<name>/Maildir/" in a static ring of buffers. */
static const char *
mdir(const char *name)
{
	static char ring[8][4200];
	static int k;
	char *p = ring[k++ % 8];

	snprintf(p, sizeof(ring[0]), "%s/%s/Maildir/", base, name);
	return p;
}

static const char *
sub(const char *maildir, const char *s)
{
	static char ring[8][4400];
	static int k;
	char *p = ring[k++ % 8];

	snprintf(p, sizeof(ring[0]), "%s%s", maildir, s);
	return p;
}

/* Entries in dir, not counting . and ..; -1 when dir cannot be read. */
static int
count_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

/* The name of the only file in dir (static). */
static const char *
only_file(const char *dir)
{
	static char name[1024];
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(name, sizeof(name), "%s", e->d_name);
		n++;
	}
	closedir(d);
	assert_int_equal(n, 1);
	return name;
}

static char *
read_all(const char *path, size_t *len_r)
{
	FILE *f = fopen(path, "rb");
	struct buf b = BUF_INIT;
	char chunk[8192];
	size_t n;

	assert_non_null(f);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_append(&b, chunk, n);
	fclose(f);
	*len_r = b.len;
	return b.data ? buf_steal(&b) : calloc(1, 1);
}

/* new/ holds exactly one file: the expected copy, byte for byte, mode 0600. */
static void
check_copy(const char *maildir, const char *return_path, const char *delivered_to)
{
	struct buf want = BUF_INIT;
	char path[8192];
	const char *name = only_file(sub(maildir, "new"));
	struct stat st;
	regex_t re;
	char *got;
	size_t len;

	assert_int_equal(regcomp(&re, "^[0-9]+\\.V[0-9a-f]+I[0-9a-f]+M[0-9]+\\." HOST "$",
				 REG_EXTENDED | REG_NOSUB), 0);
	assert_int_equal(regexec(&re, name, 0, NULL, 0), 0);
	regfree(&re);

	snprintf(path, sizeof(path), "%snew/%s", maildir, name);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);

	buf_printf(&want, "Return-Path: <%s>\nDelivered-To: %s\n", return_path, delivered_to);
	buf_append(&want, content, content_len);
	got = read_all(path, &len);
	assert_int_equal(len, want.len);
	assert_memory_equal(got, want.data, len);
	free(got);
	buf_free(&want);

	assert_int_equal(count_files(sub(maildir, "tmp")), 0);
	assert_int_equal(count_files(sub(maildir, "cur")), 0);
}

static int
deliver(const char *return_path, const struct maildir_rcpt *r, size_t n, const char *host,
	struct buf *err)
{
	struct maildir_msg m = { .return_path = return_path, .content = content,
				  .content_len = content_len, .hostname = host };

	return maildir_deliver(&m, r, n, err);
}

/* No file in new/ or tmp/ of any of these Maildirs (a missing directory counts as empty). */
static void
check_no_copy(const char *const *maildirs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		assert_true(count_files(sub(maildirs[i], "new")) <= 0);
		assert_true(count_files(sub(maildirs[i], "tmp")) <= 0);
	}
}

static void
touch(const char *path)
{
	int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);

	assert_true(fd >= 0);
	close(fd);
}

/* A Maildir with tmp/ new/ cur/ already there. */
static void
make_maildir(const char *maildir)
{
	size_t len = strlen(maildir) - strlen("Maildir/");
	char p[4200];

	assert_true(len < sizeof(p));
	memcpy(p, maildir, len);	/* the user's directory: drop "Maildir/" */
	p[len] = '\0';
	assert_int_equal(mkdir(p, 0700), 0);
	assert_int_equal(mkdir(maildir, 0700), 0);
	assert_int_equal(mkdir(sub(maildir, "tmp"), 0700), 0);
	assert_int_equal(mkdir(sub(maildir, "new"), 0700), 0);
	assert_int_equal(mkdir(sub(maildir, "cur"), 0700), 0);
}

static void
test_one(void **state)
{
	const char *d = mdir("u1");
	struct maildir_rcpt r = { d, "u1@example.com", NULL, NULL };
	struct buf err = BUF_INIT;

	make_maildir(d);
	assert_int_equal(deliver("sender@example.org", &r, 1, HOST, &err), 0);
	check_copy(d, "sender@example.org", "u1@example.com");
	buf_free(&err);
}

static void
test_three_null_sender(void **state)
{
	const char *d[3] = { mdir("u1"), mdir("u2"), mdir("u3") };
	struct maildir_rcpt r[3] = {
		{ d[0], "u1@example.com", NULL, NULL }, { d[1], "u2@example.com", NULL, NULL }, { d[2], "u3@example.net", NULL, NULL },
	};
	struct buf err = BUF_INIT;

	make_maildir(d[0]);
	make_maildir(d[1]);
	make_maildir(d[2]);
	assert_int_equal(deliver("", r, 3, HOST, &err), 0);
	for (int i = 0; i < 3; i++)
		check_copy(d[i], "", r[i].delivered_to);
	buf_free(&err);
}

/* A forwarded copy: its trace lines below Delivered-To, before the message. */
static void
test_trace(void **state)
{
	const char *d[2] = { mdir("u1"), mdir("u2") };
	const char *trace = "Received: by mx.example.test (mxgate)\n\tid 1A2B3C; Tue\n"
			    "Delivered-To: team@example.com\n";
	struct maildir_rcpt r[2] = { { d[0], "u1@example.com", trace, NULL }, { d[1], "u2@example.com", NULL, NULL } };
	struct buf err = BUF_INIT, want = BUF_INIT;
	char path[8192], *got;
	size_t len;

	make_maildir(d[0]);
	make_maildir(d[1]);
	assert_int_equal(deliver("s@example.org", r, 2, HOST, &err), 0);
	snprintf(path, sizeof(path), "%snew/%s", d[0], only_file(sub(d[0], "new")));
	buf_printf(&want, "Return-Path: <s@example.org>\nDelivered-To: u1@example.com\n%s", trace);
	buf_append(&want, content, content_len);
	got = read_all(path, &len);
	assert_int_equal(len, want.len);
	assert_memory_equal(got, want.data, len);
	free(got);
	check_copy(d[1], "s@example.org", "u2@example.com");	/* the other copy has none */
	buf_free(&want);
	buf_free(&err);
}

/* Two addresses that map to one Maildir: one copy per Delivered-To. */
static void
test_same_maildir_two_addresses(void **state)
{
	const char *d = mdir("u1");
	struct maildir_rcpt r[2] = { { d, "u1@example.com", NULL, NULL }, { d, "alias@example.com", NULL, NULL } };
	struct buf err = BUF_INIT;

	make_maildir(d);
	assert_int_equal(deliver("s@example.org", r, 2, HOST, &err), 0);
	assert_int_equal(count_files(sub(d, "new")), 2);
	assert_int_equal(count_files(sub(d, "tmp")), 0);
	buf_free(&err);
}

/*
 * The steps one by one: staged copies are only in tmp/, published ones in
 * new/, and a rollback after either step leaves no copy anywhere; the body
 * can come from a committed spool.
 */
static void
test_steps(void **state)
{
	const char *d[2] = { mdir("u1"), mdir("u2") };
	struct maildir_rcpt r[2] = { { d[0], "u1@example.com", NULL, NULL }, { d[1], "u2@example.com", NULL, NULL } };
	struct maildir_msg m = { .return_path = "s@example.org", .content = content,
				 .content_len = content_len, .hostname = HOST };
	struct maildir_batch *b = NULL;
	struct buf err = BUF_INIT;

	make_maildir(d[0]);
	/* stage, then roll back */
	assert_int_equal(maildir_stage(&m, r, 2, &b, &err), 0);
	assert_int_equal(count_files(sub(d[0], "tmp")), 1);
	assert_int_equal(count_files(sub(d[1], "tmp")), 1);	/* made by the stage */
	assert_int_equal(count_files(sub(d[0], "new")), 0);
	maildir_rollback(b);
	maildir_batch_free(&b);
	assert_null(b);
	check_no_copy(d, 2);
	/* stage, publish, then roll back */
	assert_int_equal(maildir_stage(&m, r, 2, &b, &err), 0);
	assert_int_equal(maildir_publish(b, &err), 0);
	assert_int_equal(count_files(sub(d[0], "tmp")), 0);
	assert_int_equal(count_files(sub(d[0], "new")), 1);
	maildir_rollback(b);
	maildir_batch_free(&b);
	check_no_copy(d, 2);
	/* the three steps, with the body from a spool */
	{
		atomic_long total = 0;
		struct spool *sp = spool_memory_new(&total, 0);
		struct fakeloop *fl = fakeloop_new();

		assert_int_equal(spool_write(sp, content, content_len), SPOOL_OK);
		spool_commit(sp, fakeloop_loop(fl), NULL, NULL);
		fakeloop_run(fl);
		m.content = NULL;
		m.content_len = 0;
		m.body = sp;
		assert_int_equal(maildir_stage(&m, r, 2, &b, &err), 0);
		assert_int_equal(maildir_publish(b, &err), 0);
		assert_int_equal(maildir_sync(b, &err), 0);
		maildir_batch_free(&b);
		check_copy(d[0], "s@example.org", "u1@example.com");
		check_copy(d[1], "s@example.org", "u2@example.com");
		spool_unref(&sp);
		assert_int_equal(total, 0);
		fakeloop_free(&fl);
	}
	buf_free(&err);
}

/* Row 58: a tight loop of deliveries to one Maildir never reuses a name. */
static void
test_unique_names(void **state)
{
	const char *d = mdir("u1");
	struct maildir_rcpt r = { d, "u1@example.com", NULL, NULL };
	struct buf err = BUF_INIT;

	make_maildir(d);
	for (int i = 0; i < 100; i++)
		assert_int_equal(deliver("s@example.org", &r, 1, HOST, &err), 0);
	assert_int_equal(count_files(sub(d, "new")), 100);
	assert_int_equal(count_files(sub(d, "tmp")), 0);
	buf_free(&err);
}

struct thread_arg {
	const char *maildir;
	int failures;
};

static void *
deliver_thread(void *ctx)
{
	struct thread_arg *a = ctx;
	struct maildir_rcpt r = { a->maildir, "u1@example.com", NULL, NULL };
	struct buf err = BUF_INIT;

	for (int i = 0; i < 50; i++)
		if (deliver("s@example.org", &r, 1, HOST, &err) < 0)
			a->failures++;
	buf_free(&err);
	return NULL;
}

/* Row 58 with writer threads: 4 threads x 50 deliveries into one Maildir, 200 files. */
static void
test_unique_names_threads(void **state)
{
	const char *d = mdir("u1");
	struct thread_arg a[4];
	pthread_t t[4];

	make_maildir(d);
	for (int i = 0; i < 4; i++) {
		a[i].maildir = d;
		a[i].failures = 0;
		assert_int_equal(pthread_create(&t[i], NULL, deliver_thread, &a[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(a[i].failures, 0);
	}
	assert_int_equal(count_files(sub(d, "new")), 200);
	assert_int_equal(count_files(sub(d, "tmp")), 0);
}

/* Maildir convention: '/' and ':' in the host name are written as \057 and \072. */
static void
test_hostname_escaped(void **state)
{
	const char *d = mdir("u1");
	struct maildir_rcpt r = { d, "u1@example.com", NULL, NULL };
	struct buf err = BUF_INIT;
	const char *name;

	make_maildir(d);
	assert_int_equal(deliver("s@example.org", &r, 1, "mx/a:b", &err), 0);
	name = only_file(sub(d, "new"));
	assert_non_null(strstr(name, ".mx\\057a\\072b"));
	assert_null(strchr(name, ':'));
	buf_free(&err);
}

/* A Maildir that does not exist, nor its parents: made 0700, message delivered. */
static void
test_creates_maildir(void **state)
{
	char d[4200];
	struct maildir_rcpt r = { d, "new@example.com", NULL, NULL };
	struct buf err = BUF_INIT;
	struct stat st;
	mode_t old = umask(022);

	snprintf(d, sizeof(d), "%s/example.com/new/Maildir/", base);
	assert_int_equal(deliver("s@example.org", &r, 1, HOST, &err), 0);
	umask(old);
	check_copy(d, "s@example.org", "new@example.com");
	for (int i = 0; i < 4; i++) {
		const char *p = i == 0 ? d : sub(d, i == 1 ? "tmp" : i == 2 ? "new" : "cur");

		assert_int_equal(stat(p, &st), 0);
		assert_true(S_ISDIR(st.st_mode));
		assert_int_equal(st.st_mode & 07777, 0700);
	}
	buf_free(&err);
}

/*
 * Row 57, as root too: the third recipient's new/ is a file, so its rename
 * fails after the first two copies were already renamed into new/.  Both
 * must be taken back.
 */
static void
test_fail_new_is_file(void **state)
{
	const char *d[3] = { mdir("u1"), mdir("u2"), mdir("u3") };
	struct maildir_rcpt r[3] = {
		{ d[0], "u1@example.com", NULL, NULL }, { d[1], "u2@example.com", NULL, NULL }, { d[2], "u3@example.com", NULL, NULL },
	};
	struct buf err = BUF_INIT;

	make_maildir(d[0]);
	make_maildir(d[1]);
	make_maildir(d[2]);
	assert_int_equal(rmdir(sub(d[2], "new")), 0);
	touch(sub(d[2], "new"));
	errno = 0;
	assert_int_equal(deliver("s@example.org", r, 3, HOST, &err), -1);
	assert_int_equal(errno, ENOTDIR);
	print_message("err: %s\n", err.data);
	assert_non_null(strstr(err.data, "rename file "));
	assert_non_null(strstr(err.data, d[2]));
	assert_non_null(strstr(err.data, strerror(ENOTDIR)));
	check_no_copy(d, 2);
	assert_int_equal(count_files(sub(d[2], "tmp")), 0);
	buf_free(&err);
}

/*
 * Row 57 as a user would set it up: chmod 0500 new/.  Root writes anyway, so
 * as root the check runs in a child that has become nobody (uid 65534), in a
 * directory of its own under /tmp that nobody can reach.
 */
static void test_fail_new_readonly_as_user(void);

static void
test_fail_new_readonly(void **state)
{
	int status;
	pid_t pid;

	(void)state;
	if (geteuid() != 0) {
		test_fail_new_readonly_as_user();
		return;
	}
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char dir[] = "/tmp/mxgate-maildir-ro-XXXXXX";

		if (mkdtemp(dir) == NULL || chown(dir, 65534, 65534) < 0
		    || setgid(65534) < 0 || setuid(65534) < 0)
			_exit(2);
		snprintf(base, sizeof(base), "%s", dir);
		test_fail_new_readonly_as_user();
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void
test_fail_new_readonly_as_user(void)
{
	const char *d[3] = { mdir("u1"), mdir("u2"), mdir("u3") };
	struct maildir_rcpt r[3] = {
		{ d[0], "u1@example.com", NULL, NULL }, { d[1], "u2@example.com", NULL, NULL }, { d[2], "u3@example.com", NULL, NULL },
	};
	struct buf err = BUF_INIT;

	make_maildir(d[0]);
	make_maildir(d[1]);
	make_maildir(d[2]);
	assert_int_equal(chmod(sub(d[1], "new"), 0500), 0);
	assert_int_equal(deliver("s@example.org", r, 3, HOST, &err), -1);
	assert_int_equal(errno, EACCES);
	assert_non_null(strstr(err.data, d[1]));
	check_no_copy(d, 3);
	buf_free(&err);
}

/* The second tmp/ is a file: staging fails, the first staged copy is removed. */
static void
test_fail_tmp_is_file(void **state)
{
	const char *d[2] = { mdir("u1"), mdir("u2") };
	struct maildir_rcpt r[2] = { { d[0], "u1@example.com", NULL, NULL }, { d[1], "u2@example.com", NULL, NULL } };
	struct buf err = BUF_INIT;

	make_maildir(d[0]);
	make_maildir(d[1]);
	assert_int_equal(rmdir(sub(d[1], "tmp")), 0);
	touch(sub(d[1], "tmp"));
	assert_int_equal(deliver("s@example.org", r, 2, HOST, &err), -1);
	assert_int_equal(errno, ENOTDIR);
	assert_non_null(strstr(err.data, "open file "));
	assert_non_null(strstr(err.data, d[1]));
	assert_int_equal(count_files(sub(d[0], "tmp")), 0);
	assert_int_equal(count_files(sub(d[0], "new")), 0);
	assert_int_equal(count_files(sub(d[1], "new")), 0);
	buf_free(&err);
}

/* The second Maildir path is a file: mkdir of its tmp/ fails, nothing is written. */
static void
test_fail_maildir_is_file(void **state)
{
	const char *d[2] = { mdir("u1"), mdir("u2") };
	struct maildir_rcpt r[2] = { { d[0], "u1@example.com", NULL, NULL }, { d[1], "u2@example.com", NULL, NULL } };
	struct buf err = BUF_INIT;
	char p[4200];

	make_maildir(d[0]);
	snprintf(p, sizeof(p), "%s/u2", base);
	assert_int_equal(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/u2/Maildir", base);
	touch(p);
	assert_int_equal(deliver("s@example.org", r, 2, HOST, &err), -1);
	assert_int_equal(errno, ENOTDIR);
	assert_non_null(strstr(err.data, "mkdir "));
	check_no_copy(d, 1);
	buf_free(&err);
}

/* Refused before any disk work: EINVAL, nothing created. */
static void
test_refuse_bad_args(void **state)
{
	char ok[4200], dotdot[4200];
	const char *bad_paths[] = { "relative/Maildir/", NULL, dotdot, "" };
	struct buf err = BUF_INIT;

	snprintf(ok, sizeof(ok), "%s/u1/Maildir/", base);
	snprintf(dotdot, sizeof(dotdot), "%s/u1/../u2/Maildir/", base);
	bad_paths[1] = mdir("u1");
	/* no trailing '/' */
	((char *)bad_paths[1])[strlen(bad_paths[1]) - 1] = '\0';

	for (size_t i = 0; i < sizeof(bad_paths) / sizeof(bad_paths[0]); i++) {
		struct maildir_rcpt r = { bad_paths[i], "u1@example.com", NULL, NULL };

		errno = 0;
		assert_int_equal(deliver("s@example.org", &r, 1, HOST, &err), -1);
		assert_int_equal(errno, EINVAL);
	}
	{
		/* Row 60: no header injection through envelope addresses. */
		struct maildir_rcpt r = { ok, "u1@example.com\nBcc: x@example.net", NULL, NULL };

		assert_int_equal(deliver("s@example.org", &r, 1, HOST, &err), -1);
		assert_int_equal(errno, EINVAL);
		r.delivered_to = "u1@example.com";
		assert_int_equal(deliver("s@example.org>\r\nX-Evil: 1", &r, 1, HOST, &err), -1);
		assert_int_equal(errno, EINVAL);
		assert_int_equal(deliver("s@example.org", &r, 0, HOST, &err), -1);
		assert_int_equal(errno, EINVAL);
	}
	{
		/* trace: lines that end in LF, TAB allowed, no CR, no empty line */
		static const char *bad_trace[] = {
			"Delivered-To: a@example.com",			/* no LF at the end */
			"Delivered-To: a@example.com\r\n",
			"Delivered-To: a@example.com\n\nX-Evil: 1\n",	/* ends the header */
			"\nDelivered-To: a@example.com\n",
			"Delivered-To: a\001@example.com\n",
		};

		for (size_t i = 0; i < sizeof(bad_trace) / sizeof(bad_trace[0]); i++) {
			struct maildir_rcpt r = { ok, "u1@example.com", bad_trace[i], NULL };

			errno = 0;
			assert_int_equal(deliver("s@example.org", &r, 1, HOST, &err), -1);
			assert_int_equal(errno, EINVAL);
		}
	}
	assert_int_equal(count_files(base), 0);
	buf_free(&err);
}

/*
 * Under faultfs.so: the injected fault makes delivery fail, with the
 * injected errno and the operation in the message, and no copy anywhere.
 */
static void
test_fault(void **state)
{
	const char *op = getenv("MXGATE_FAULT");
	const char *en = getenv("MXGATE_FAULT_ERRNO");
	int want = EIO;
	const char *d[3] = { mdir("u1"), mdir("u2"), mdir("u3") };
	struct maildir_rcpt r[3] = {
		{ d[0], "u1@example.com", NULL, NULL }, { d[1], "u2@example.com", NULL, NULL }, { d[2], "u3@example.com", NULL, NULL },
	};
	struct buf err = BUF_INIT;
	int ret;

	if (en && strcmp(en, "ENOSPC") == 0)
		want = ENOSPC;
	else if (en && strcmp(en, "EDQUOT") == 0)
		want = EDQUOT;
	make_maildir(d[0]);
	make_maildir(d[1]);
	make_maildir(d[2]);
	errno = 0;
	ret = deliver("s@example.org", r, 3, HOST, &err);
	print_message("MXGATE_FAULT=%s: maildir_deliver returned %d, err: %s\n", op, ret,
		      err.data ? err.data : "(none)");
	assert_int_equal(ret, -1);
	assert_int_equal(errno, want);
	assert_non_null(strstr(err.data, op));
	assert_non_null(strstr(err.data, strerror(want)));
	check_no_copy(d, 3);
	buf_free(&err);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_one, setup, teardown),
		cmocka_unit_test_setup_teardown(test_steps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_three_null_sender, setup, teardown),
		cmocka_unit_test_setup_teardown(test_trace, setup, teardown),
		cmocka_unit_test_setup_teardown(test_same_maildir_two_addresses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unique_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unique_names_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostname_escaped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_creates_maildir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fail_new_is_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fail_new_readonly, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fail_tmp_is_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fail_maildir_is_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refuse_bad_args, setup, teardown),
	};
	const struct CMUnitTest fault_tests[] = {
		cmocka_unit_test_setup_teardown(test_fault, setup, teardown),
	};
	const char *fault = getenv("MXGATE_FAULT");

	make_content();
	if (fault != NULL && *fault != '\0')
		return cmocka_run_group_tests_name("maildir_fault", fault_tests, NULL, NULL);
	return cmocka_run_group_tests_name("maildir", tests, NULL, NULL);
}
