/*
 * faultfs: LD_PRELOAD fault injection for the delivery path (the analogue
 * of Postfix's fault_injection_code).  SECURITY_CHECKLIST rows 54 and 56.
 *
 * Environment (read once, at load):
 *   MXGATE_FAULT=write|fsync|rename|open   the operation to fail (write also
 *                                          fails copy_file_range into the file; fsync also
 *                                          fails fdatasync; rename also
 *                                          renameat; open also openat)
 *   MXGATE_FAULT_PATH=substring            fail only calls whose path contains
 *                                          it (fd calls: readlink
 *                                          /proc/self/fd/N; rename: either
 *                                          name; relative names are resolved
 *                                          against the cwd or the dirfd)
 *   MXGATE_FAULT_ERRNO=EIO|ENOSPC|EDQUOT   the errno (default EIO; a number
 *                                          is accepted too)
 *   MXGATE_FAULT_AFTER=N                   the first N matching calls succeed
 *   MXGATE_FSYNC_DELAY_MS=N                sleep N ms inside every matching
 *                                          fsync/fdatasync (failing or not),
 *                                          to show that an event loop never
 *                                          waits on the disk
 *
 * Never fails, never delays: descriptors 0-2, anything that is not a
 * regular file or a directory (sockets, pipes, ttys: a reply to a client is
 * never failed), and descriptors opened with O_APPEND (the maillog_file is
 * opened that way; mail files are not).  A failing call does not reach the
 * kernel, so nothing is written, synced or renamed.
 *
 * Built without sanitizers (Makefile rule build/shim/%.so).  With an ASan
 * binary, preload the ASan runtime first: LD_PRELOAD="libasan.so.N faultfs.so".
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

enum faultfs_op { OP_NONE, OP_WRITE, OP_FSYNC, OP_RENAME, OP_OPEN };

static enum faultfs_op faultfs_op;
static const char *faultfs_path;	/* NULL: every path */
static int faultfs_errno = EIO;
static long faultfs_after;
static long faultfs_delay_ms;
static long faultfs_matches;	/* matching calls so far (atomic) */
static int faultfs_ready;

/* The next definitions (libc's, or the sanitizer's), resolved on first use. */
static void *real_write, *real_copy_file_range, *real_fsync, *real_fdatasync, *real_rename, *real_renameat;
static void *real_open, *real_open64, *real_openat, *real_openat64;

/* Resolve a real function; the shim cannot work without it. */
static void *
faultfs_next(const char *name)
{
	void *f = dlsym(RTLD_NEXT, name);

	if (f == NULL) {
		fprintf(stderr, "faultfs: dlsym(%s) failed\n", name);
		abort();
	}
	return f;
}

static void *
faultfs_real(void **slot, const char *name)
{
	void *f = __atomic_load_n(slot, __ATOMIC_ACQUIRE);

	if (f == NULL) {
		f = faultfs_next(name);
		__atomic_store_n(slot, f, __ATOMIC_RELEASE);
	}
	return f;
}

/* Our own definition has the same type as the real one. */
#define REAL(name) ((__typeof__(&name))faultfs_real(&real_##name, #name))

static int
faultfs_parse_errno(const char *s)
{
	static const struct { const char *name; int value; } tab[] = {
		{ "EIO", EIO }, { "ENOSPC", ENOSPC }, { "EDQUOT", EDQUOT },
		{ "EROFS", EROFS }, { "EACCES", EACCES }, { "EPERM", EPERM },
	};

	if (s == NULL || *s == '\0')
		return EIO;
	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		if (strcmp(s, tab[i].name) == 0)
			return tab[i].value;
	if (atoi(s) > 0)
		return atoi(s);
	fprintf(stderr, "faultfs: unknown MXGATE_FAULT_ERRNO \"%s\", using EIO\n", s);
	return EIO;
}

static void
faultfs_init(void)
{
	const char *s;

	if (__atomic_load_n(&faultfs_ready, __ATOMIC_ACQUIRE))
		return;
	s = getenv("MXGATE_FAULT");
	if (s == NULL || *s == '\0')
		faultfs_op = OP_NONE;
	else if (strcmp(s, "write") == 0)
		faultfs_op = OP_WRITE;
	else if (strcmp(s, "fsync") == 0)
		faultfs_op = OP_FSYNC;
	else if (strcmp(s, "rename") == 0)
		faultfs_op = OP_RENAME;
	else if (strcmp(s, "open") == 0)
		faultfs_op = OP_OPEN;
	else {
		fprintf(stderr, "faultfs: unknown MXGATE_FAULT \"%s\", ignored\n", s);
		faultfs_op = OP_NONE;
	}
	s = getenv("MXGATE_FAULT_PATH");
	faultfs_path = (s && *s) ? s : NULL;
	faultfs_errno = faultfs_parse_errno(getenv("MXGATE_FAULT_ERRNO"));
	s = getenv("MXGATE_FAULT_AFTER");
	faultfs_after = s ? atol(s) : 0;
	s = getenv("MXGATE_FSYNC_DELAY_MS");
	faultfs_delay_ms = s ? atol(s) : 0;
	__atomic_store_n(&faultfs_ready, 1, __ATOMIC_RELEASE);
}

__attribute__((constructor)) static void
faultfs_ctor(void)
{
	faultfs_init();
}

/* The file an fd refers to, or 0 when it is not a file we may touch. */
static int
faultfs_fd_target(int fd, int dirs_too, char *path, size_t size)
{
	char link[64];
	struct stat st;
	ssize_t n;
	int fl;

	if (fd <= 2)
		return 0;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || (fl & O_APPEND))	/* the log file */
		return 0;
	if (fstat(fd, &st) < 0)
		return 0;
	if (!S_ISREG(st.st_mode) && !(dirs_too && S_ISDIR(st.st_mode)))
		return 0;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, size - 1);
	if (n < 0)
		return 0;
	path[n] = '\0';
	return 1;
}

/* path made absolute against dirfd (or the cwd), for matching only. */
static void
faultfs_abs(int dirfd, const char *path, char *out, size_t size)
{
	char base[PATH_MAX];

	if (path[0] == '/' || size < 2) {
		snprintf(out, size, "%s", path);
		return;
	}
	if (dirfd == AT_FDCWD) {
		if (getcwd(base, sizeof(base)) == NULL)
			base[0] = '\0';
	} else {
		char link[64];
		ssize_t n;

		snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
		n = readlink(link, base, sizeof(base) - 1);
		base[n < 0 ? 0 : n] = '\0';
	}
	snprintf(out, size, "%s/%s", base, path);
}

/* A path we may fail: a regular file or directory, or one not there yet. */
static int
faultfs_path_kind_ok(const char *abs)
{
	struct stat st;

	if (lstat(abs, &st) < 0)
		return errno == ENOENT;
	return S_ISREG(st.st_mode) || S_ISDIR(st.st_mode);
}

static int
faultfs_path_matches(const char *abs)
{
	return faultfs_path == NULL || strstr(abs, faultfs_path) != NULL;
}

/* Count a matching call; fail it when the first N have passed. */
static int
faultfs_trip(void)
{
	long n = __atomic_fetch_add(&faultfs_matches, 1, __ATOMIC_RELAXED);

	if (n < faultfs_after)
		return 0;
	errno = faultfs_errno;
	return 1;
}

ssize_t
write(int fd, const void *buf, size_t count)
{
	char path[PATH_MAX];

	faultfs_init();
	if (faultfs_op == OP_WRITE && faultfs_fd_target(fd, 0, path, sizeof(path))
	    && faultfs_path_matches(path) && faultfs_trip())
		return -1;
	return REAL(write)(fd, buf, count);
}

/* The kernel's file-to-file copy writes too (a Maildir copy from the spool file). */
ssize_t
copy_file_range(int fd_in, off_t *off_in, int fd_out, off_t *off_out, size_t len,
		unsigned int flags)
{
	char path[PATH_MAX];

	faultfs_init();
	if (faultfs_op == OP_WRITE && faultfs_fd_target(fd_out, 0, path, sizeof(path))
	    && faultfs_path_matches(path) && faultfs_trip())
		return -1;
	return ((ssize_t (*)(int, off_t *, int, off_t *, size_t, unsigned int))
		faultfs_real(&real_copy_file_range, "copy_file_range"))(fd_in, off_in, fd_out,
									  off_out, len, flags);
}

static int
faultfs_sync(int fd)
{
	char path[PATH_MAX];

	faultfs_init();
	if ((faultfs_op != OP_FSYNC && faultfs_delay_ms <= 0)
	    || !faultfs_fd_target(fd, 1, path, sizeof(path)) || !faultfs_path_matches(path))
		return 0;
	if (faultfs_delay_ms > 0) {
		struct timespec ts = { faultfs_delay_ms / 1000, (faultfs_delay_ms % 1000) * 1000000L };

		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
	return faultfs_op == OP_FSYNC && faultfs_trip();
}

int
fsync(int fd)
{
	if (faultfs_sync(fd))
		return -1;
	return REAL(fsync)(fd);
}

int
fdatasync(int fd)
{
	if (faultfs_sync(fd))
		return -1;
	return REAL(fdatasync)(fd);
}

static int
faultfs_rename(int olddirfd, const char *oldpath, int newdirfd, const char *newpath)
{
	char a[PATH_MAX], b[PATH_MAX];

	faultfs_init();
	if (faultfs_op != OP_RENAME || oldpath == NULL || newpath == NULL)
		return 0;
	faultfs_abs(olddirfd, oldpath, a, sizeof(a));
	faultfs_abs(newdirfd, newpath, b, sizeof(b));
	if (!faultfs_path_kind_ok(a))
		return 0;
	if (!faultfs_path_matches(a) && !faultfs_path_matches(b))
		return 0;
	return faultfs_trip();
}

int
rename(const char *oldpath, const char *newpath)
{
	if (faultfs_rename(AT_FDCWD, oldpath, AT_FDCWD, newpath))
		return -1;
	return REAL(rename)(oldpath, newpath);
}

int
renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath)
{
	if (faultfs_rename(olddirfd, oldpath, newdirfd, newpath))
		return -1;
	return REAL(renameat)(olddirfd, oldpath, newdirfd, newpath);
}

static int
faultfs_open(int dirfd, const char *path, int flags)
{
	char a[PATH_MAX];

	faultfs_init();
	if (faultfs_op != OP_OPEN || path == NULL || (flags & O_APPEND))
		return 0;
	faultfs_abs(dirfd, path, a, sizeof(a));
	if (!faultfs_path_kind_ok(a) || !faultfs_path_matches(a))
		return 0;
	return faultfs_trip();
}

/* The mode argument exists only with O_CREAT or O_TMPFILE. */
#define FAULTFS_MODE(flags, last)                                     \
	mode_t mode = 0;                                              \
	if ((flags) & (O_CREAT | O_TMPFILE)) {                        \
		va_list ap;                                           \
		va_start(ap, last);                                   \
		mode = (mode_t)va_arg(ap, int);                       \
		va_end(ap);                                           \
	}

int
open(const char *path, int flags, ...)
{
	FAULTFS_MODE(flags, flags);
	if (faultfs_open(AT_FDCWD, path, flags))
		return -1;
	return REAL(open)(path, flags, mode);
}

int
open64(const char *path, int flags, ...)
{
	FAULTFS_MODE(flags, flags);
	if (faultfs_open(AT_FDCWD, path, flags))
		return -1;
	return REAL(open64)(path, flags, mode);
}

int
openat(int dirfd, const char *path, int flags, ...)
{
	FAULTFS_MODE(flags, flags);
	if (faultfs_open(dirfd, path, flags))
		return -1;
	return REAL(openat)(dirfd, path, flags, mode);
}

int
openat64(int dirfd, const char *path, int flags, ...)
{
	FAULTFS_MODE(flags, flags);
	if (faultfs_open(dirfd, path, flags))
		return -1;
	return REAL(openat64)(dirfd, path, flags, mode);
}
