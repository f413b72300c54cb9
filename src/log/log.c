#include "log/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/xalloc.h"

int msg_verbose;

static const char *log_progname = "mxgate";
static char *log_syslog_name;	/* NULL: stderr mode */
static char *log_hostname;
static int log_facility = LOG_MAIL;
static struct log_writer *log_w;	/* maillog_file, or NULL for syslog */
static int log_syslog_open;	/* fallback: syslog(3), one ident for every line */
static int log_dev_fd = -1;	/* /dev/log datagram socket: our own tag per line */
static pthread_mutex_t log_dev_lock = PTHREAD_MUTEX_INITIALIZER;

/*
 * The pid in every line's tag, asked once: 0 until then, and set to 0 again
 * in every forked child (pthread_atfork), so a child asks again.
 */
static pid_t log_pid;
static pthread_once_t log_pid_once = PTHREAD_ONCE_INIT;

static void
log_pid_forget(void)
{
	log_pid = 0;
}

static void
log_pid_init(void)
{
	pthread_atfork(NULL, NULL, log_pid_forget);
}

static long
log_getpid(void)
{
	pthread_once(&log_pid_once, log_pid_init);
	if (log_pid == 0)
		log_pid = getpid();
	return (long)log_pid;
}

/* "[pid]: " for log_getpid(), formatted again only when the pid changes (a fork). */
static const char *
log_pid_tag(void)
{
	static __thread long last = -1;
	static __thread char tag[32];
	long pid = log_getpid();

	if (pid != last) {
		snprintf(tag, sizeof(tag), "[%ld]: ", pid);
		last = pid;
	}
	return tag;
}

/*
 * "Mon DD HH:MM:SS" for now, formatted once per second per thread (a line
 * a few microseconds into a new second gets that second's stamp, as before).
 */
static const char *
log_stamp(time_t now)
{
	static __thread time_t last = (time_t)-1;
	static __thread char stamp[32];

	if (now != last) {
		struct tm tm;

		localtime_r(&now, &tm);
		strftime(stamp, sizeof(stamp), "%b %e %H:%M:%S", &tm);
		last = now;
	}
	return stamp;
}

static const char *const log_prefix[] = {
	[LOG_LVL_INFO] = "",
	[LOG_LVL_WARNING] = "warning: ",
	[LOG_LVL_ERROR] = "error: ",
	[LOG_LVL_FATAL] = "fatal: ",
	[LOG_LVL_PANIC] = "panic: ",
};

static const int log_syslog_prio[] = {
	[LOG_LVL_INFO] = LOG_INFO,
	[LOG_LVL_WARNING] = LOG_WARNING,
	[LOG_LVL_ERROR] = LOG_ERR,
	[LOG_LVL_FATAL] = LOG_CRIT,
	[LOG_LVL_PANIC] = LOG_CRIT,
};

/* Postfix's syslog_facility names (msg_syslog.c), those this system has. */
static const struct {
	const char *name;
	int	code;
} log_facilities[] = {
	{"auth", LOG_AUTH},
#ifdef LOG_AUTHPRIV
	{"authpriv", LOG_AUTHPRIV},
#endif
	{"cron", LOG_CRON},
	{"daemon", LOG_DAEMON},
#ifdef LOG_FTP
	{"ftp", LOG_FTP},
#endif
	{"kern", LOG_KERN},
	{"lpr", LOG_LPR},
	{"mail", LOG_MAIL},
	{"news", LOG_NEWS},
#ifdef LOG_SECURITY
	{"security", LOG_SECURITY},
#endif
	{"syslog", LOG_SYSLOG},
	{"user", LOG_USER},
	{"uucp", LOG_UUCP},
	{"local0", LOG_LOCAL0},
	{"local1", LOG_LOCAL1},
	{"local2", LOG_LOCAL2},
	{"local3", LOG_LOCAL3},
	{"local4", LOG_LOCAL4},
	{"local5", LOG_LOCAL5},
	{"local6", LOG_LOCAL6},
	{"local7", LOG_LOCAL7},
};

int
log_facility_code(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(log_facilities) / sizeof(log_facilities[0]); i++)
		if (strcmp(log_facilities[i].name, name) == 0)
			return log_facilities[i].code;
	return -1;
}

void
log_set_progname(const char *name)
{
	log_progname = name;
}

/*
 * The local syslog socket.  Writing to it ourselves (as glibc's syslog does)
 * lets each line carry its own tag, "mxgate/smtpd[pid]" or "mxgate/anvil[pid]",
 * as Postfix's processes do, which pflogsumm and fail2ban filters key on.
 */
static int
log_dev_connect(void)
{
	struct sockaddr_un sun;
	const char *path = getenv("MXGATE_SYSLOG_SOCKET");	/* tests, containers */
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path && *path ? path : "/dev/log");
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * One datagram per line; reconnect once if syslogd was restarted.  Never
 * blocks: an event loop must not wait for a slow syslogd, so a line that
 * does not fit is dropped and counted, and the count is reported with the
 * next line that gets through.
 */
static unsigned long log_dev_dropped;

static void
log_dev_send(const char *data, size_t len)
{
	pthread_mutex_lock(&log_dev_lock);
	if (send(log_dev_fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
		if (errno == ECONNREFUSED || errno == ENOTCONN || errno == EPIPE) {
			int fd = log_dev_connect();

			if (fd >= 0) {
				close(log_dev_fd);
				log_dev_fd = fd;
				if (send(log_dev_fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0)
					goto out;
			}
		}
		log_dev_dropped++;
	} else if (log_dev_dropped > 0) {
		char note[128];
		int n = snprintf(note, sizeof(note), "<%d>%s/smtpd[%ld]: warning: %lu log lines "
				 "dropped: syslog did not keep up", log_facility | LOG_WARNING,
				 log_syslog_name, log_getpid(), log_dev_dropped);

		if (n > 0 && send(log_dev_fd, note, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0)
			log_dev_dropped = 0;
	}
out:
	pthread_mutex_unlock(&log_dev_lock);
}

/* ---- maillog_file: a bounded queue and one writer thread ---- */

/* One queued line. */
struct log_node {
	struct log_node *next;
	unsigned long dropped;	/* lines dropped just before this one: a note first */
	time_t	stamp;		/* when it was queued (for the note) */
	size_t	len;
	char	data[];
};

struct log_writer {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t more;	/* to the writer: a node, a drop or stop */
	pthread_cond_t done;	/* from the writer: a node written, or exited */
	int	fd;
	char   *tag;		/* "<host> <syslog_name>/smtpd[<pid>]: " for the notes */
	struct log_node *head, **tail;
	size_t	bytes;		/* queued or being written, bookkeeping included */
	unsigned long dropped;	/* lines dropped since the last note */
	int	dropping;	/* dropping until bytes <= LOG_QUEUE_BYTES / 2 */
	unsigned long long queued, written;	/* nodes, ever */
	unsigned long long taken;	/* nodes the writer has taken off the queue */
	int	idle;		/* the writer waits for a first line: signal it */
	int	urgent;		/* a fatal line is queued: write now */
	int	stop, exited;
};

static size_t
log_node_cost(const struct log_node *n)
{
	return sizeof(*n) + n->len;
}

/* All of it, in one write(2) unless the kernel takes less. */
static void
log_write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;	/* a full disk or a closed pipe: nobody to tell */
		p += n;
		len -= (size_t)n;
	}
}

/* Lines in one writev(2), through short writes and EINTR. */
static void
log_write_iov(int fd, struct iovec *iov, int cnt)
{
	while (cnt > 0) {
		ssize_t n = writev(fd, iov, cnt);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;	/* a full disk or a closed pipe: nobody to tell */
		while (cnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
}

static void
log_write_note(struct log_writer *w, unsigned long dropped, time_t stamp)
{
	char	when[32];
	struct tm tm;
	struct buf b = BUF_INIT;

	localtime_r(&stamp, &tm);
	strftime(when, sizeof(when), "%b %e %H:%M:%S", &tm);
	buf_printf(&b, "%s %swarning: %lu log lines dropped: maillog_file did not keep up\n",
		   when, w->tag, dropped);
	log_write_all(w->fd, b.data, b.len);
	buf_free(&b);
}

/* Up to this many lines go out in one writev(2). */
#define LOG_WRITE_BATCH	64
/* How long the writer waits for more lines once one has come (ms). */
#define LOG_LINGER_MS	2

/* Write lines in order, LOG_WRITE_BATCH at a time (a gap note stands alone). */
static void
log_write_nodes(struct log_writer *w, struct log_node *n)
{
	struct iovec iov[LOG_WRITE_BATCH];
	int cnt = 0;

	for (; n != NULL; n = n->next) {
		if (n->dropped > 0 || cnt == LOG_WRITE_BATCH) {
			log_write_iov(w->fd, iov, cnt);
			cnt = 0;
			if (n->dropped > 0)
				log_write_note(w, n->dropped, n->stamp);
		}
		iov[cnt].iov_base = n->data;
		iov[cnt].iov_len = n->len;
		cnt++;
	}
	log_write_iov(w->fd, iov, cnt);
}

static void *
log_writer_main(void *arg)
{
	struct log_writer *w = arg;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		struct log_node *batch, *n, *next;
		unsigned long dropped = 0, count = 0;
		size_t bytes = 0;

		while (w->head == NULL && w->dropped == 0 && !w->stop) {
			w->idle = 1;
			pthread_cond_wait(&w->more, &w->lock);
			w->idle = 0;
		}
		/*
		 * Let the lines of the next LOG_LINGER_MS come too (unless a batch
		 * is full or a fatal line waits): one wake-up and one writev(2) for
		 * many lines, where a busy server would pay a wake-up per line.
		 */
		if (w->head != NULL && !w->stop && !w->urgent) {
			struct timespec until;

			clock_gettime(CLOCK_MONOTONIC, &until);
			until.tv_nsec += LOG_LINGER_MS * 1000000L;
			if (until.tv_nsec >= 1000000000L) {
				until.tv_sec++;
				until.tv_nsec -= 1000000000L;
			}
			while (!w->stop && !w->urgent && w->queued - w->taken < LOG_WRITE_BATCH)
				if (pthread_cond_timedwait(&w->more, &w->lock, &until) == ETIMEDOUT)
					break;
		}
		w->urgent = 0;
		/* Everything queued now, in one go. */
		batch = w->head;
		w->head = NULL;
		w->tail = &w->head;
		w->taken = w->queued;
		if (batch == NULL && w->dropped > 0) {
			/* Caught up with no line since the gap: say so now. */
			dropped = w->dropped;
			w->dropped = 0;
			w->dropping = 0;
		} else if (batch == NULL) {
			break;	/* stop, and nothing left */
		}
		pthread_mutex_unlock(&w->lock);
		if (batch == NULL)
			log_write_note(w, dropped, time(NULL));
		else
			log_write_nodes(w, batch);
		for (n = batch; n != NULL; n = next) {
			next = n->next;
			bytes += log_node_cost(n);
			count++;
			free(n);
		}
		pthread_mutex_lock(&w->lock);
		w->bytes -= bytes;
		w->written += count;
		pthread_cond_broadcast(&w->done);
	}
	w->exited = 1;
	pthread_cond_broadcast(&w->done);
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static void
log_writer_append(struct log_writer *w, struct log_node *n)
{
	n->next = NULL;
	*w->tail = n;
	w->tail = &n->next;
	w->bytes += log_node_cost(n);
	w->queued++;
}

/*
 * Queue one line (never blocks on the file).  force: a fatal or panic line,
 * queued past the bound.  Returns the line's sequence number, or 0 when it
 * was dropped.
 */
static unsigned long long
log_writer_put(struct log_writer *w, const char *data, size_t len, int force)
{
	struct log_node *n = xmalloc(sizeof(*n) + len);
	unsigned long long seq = 0;

	n->len = len;
	n->dropped = 0;
	n->stamp = time(NULL);
	memcpy(n->data, data, len);
	pthread_mutex_lock(&w->lock);
	if (w->dropping && w->bytes + log_node_cost(n) <= LOG_QUEUE_BYTES / 2)
		w->dropping = 0;
	if (!force && (w->dropping || w->bytes + log_node_cost(n) > LOG_QUEUE_BYTES)) {
		w->dropping = 1;
		w->dropped++;
		pthread_mutex_unlock(&w->lock);
		free(n);
		return 0;
	}
	/* The gap ends here: the writer puts the note before this line. */
	n->dropped = w->dropped;
	w->dropped = 0;
	w->dropping = 0;
	log_writer_append(w, n);
	seq = w->queued;
	if (force)
		w->urgent = 1;
	/* A lingering writer is woken only for a full batch or a fatal line. */
	if (w->idle || force || w->queued - w->taken == LOG_WRITE_BATCH)
		pthread_cond_signal(&w->more);
	pthread_mutex_unlock(&w->lock);
	return seq;
}

/* Wait until node seq is written or the writer is gone; 0, or -1 on timeout. */
static int
log_writer_wait(struct log_writer *w, unsigned long long seq, int seconds)
{
	struct timespec deadline;
	int	rc = 0;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += seconds;
	pthread_mutex_lock(&w->lock);
	while (w->written < seq && !w->exited && rc == 0)
		if (pthread_cond_timedwait(&w->done, &w->lock, &deadline) == ETIMEDOUT)
			rc = -1;
	if (w->written >= seq || w->exited)
		rc = 0;
	pthread_mutex_unlock(&w->lock);
	return rc;
}

static struct log_writer *
log_writer_start(int fd, const char *hostname, const char *syslog_name, char **err_r)
{
	struct log_writer *w = xcalloc(1, sizeof(*w));
	sigset_t all, old;
	pthread_condattr_t attr;
	int	rc;

	w->fd = fd;
	w->tail = &w->head;
	w->tag = xasprintf("%s %s/smtpd[%ld]: ", hostname, syslog_name, log_getpid());
	pthread_mutex_init(&w->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);	/* the linger's clock */
	pthread_cond_init(&w->more, &attr);
	pthread_condattr_destroy(&attr);
	pthread_cond_init(&w->done, NULL);
	/*
	 * The writer takes no signal: they go to the loops that handle them,
	 * and a reader of /dev/stdout that goes away gives EPIPE, not SIGPIPE.
	 */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&w->thread, NULL, log_writer_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc == 0)
		(void)pthread_setname_np(w->thread, "mxg log");
	if (rc != 0) {
		*err_r = xasprintf("cannot start the maillog_file writer thread: %s", strerror(rc));
		pthread_mutex_destroy(&w->lock);
		pthread_cond_destroy(&w->more);
		pthread_cond_destroy(&w->done);
		free(w->tag);
		free(w);
		return NULL;
	}
	return w;
}

/*
 * Drain, stop and free.  A writer still stuck in write(2) after the timeout
 * (a reader that stopped reading) is left to the exiting process with its
 * memory and descriptor: freeing them under it would be worse.
 */
static void
log_writer_stop(struct log_writer *w)
{
	struct timespec deadline;
	int	exited;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += LOG_FLUSH_TIMEOUT;
	pthread_mutex_lock(&w->lock);
	w->stop = 1;
	pthread_cond_signal(&w->more);
	while (!w->exited)
		if (pthread_cond_timedwait(&w->done, &w->lock, &deadline) == ETIMEDOUT)
			break;
	exited = w->exited;
	pthread_mutex_unlock(&w->lock);
	if (!exited) {
		pthread_detach(w->thread);
		return;
	}
	pthread_join(w->thread, NULL);
	close(w->fd);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->more);
	pthread_cond_destroy(&w->done);
	free(w->tag);
	free(w);
}

/* ---- opening maillog_file ---- */

int
log_file_allowed(const char *path, const char *prefixes)
{
	static const char sep[] = ", \t\r\n";	/* Postfix's CHARS_COMMA_SP */
	const char *p = prefixes;

	while (p != NULL && *(p += strspn(p, sep)) != '\0') {
		size_t	n = strcspn(p, sep);

		if (strncmp(path, p, n) == 0)
			return 1;
		p += n;
	}
	return 0;
}

static const char *
log_file_type(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFLNK: return "a symbolic link";
	case S_IFDIR: return "a directory";
	case S_IFIFO: return "a FIFO";
	case S_IFCHR: return "a character device";
	case S_IFBLK: return "a block device";
	case S_IFSOCK: return "a socket";
	default: return "not a regular file";
	}
}

/* Why st is no file for maillog_file (NULL: it is fine); buf for the number. */
static const char *
log_file_refusal(const struct stat *st, char *buf, size_t size)
{
	if (S_ISLNK(st->st_mode)) {
		return "file is a symbolic link (mxgate opens maillog_file as root and follows no "
		    "link)";
	} else if (!S_ISREG(st->st_mode)) {
		snprintf(buf, size, "file is %s, not a regular file", log_file_type(st->st_mode));
		return buf;
	} else if (st->st_nlink != 1) {
		snprintf(buf, size, "file has %lu hard links", (unsigned long)st->st_nlink);
		return buf;
	}
	return NULL;
}

static int
log_file_is_stdio(const char *path)
{
	return strcmp(path, "/dev/stdout") == 0 || strcmp(path, "/dev/stderr") == 0;
}

int
log_file_check(const char *path, char **err_r)
{
	struct stat st;
	const char *why;
	char	buf[128];

	if (log_file_is_stdio(path))
		return 0;
	if (lstat(path, &st) < 0) {
		char   *dir, *slash;
		int	rc = 0;

		if (errno != ENOENT) {
			*err_r = xasprintf("maillog_file = %s: %s", path, strerror(errno));
			return -1;
		}
		/* Created at start-up: its directory must be there. */
		dir = xstrdup(path);
		if ((slash = strrchr(dir, '/')) != NULL) {
			const char *bad = NULL;

			slash[slash == dir] = '\0';	/* "/log" is in "/" */
			if (stat(dir, &st) < 0)
				bad = strerror(errno);
			else if (!S_ISDIR(st.st_mode))
				bad = "not a directory";
			if (bad != NULL) {
				*err_r = xasprintf("maillog_file = %s: cannot create file: %s: %s", path,
						   dir, bad);
				rc = -1;
			}
		}
		free(dir);
		return rc;
	}
	if ((why = log_file_refusal(&st, buf, sizeof(buf))) != NULL) {
		*err_r = xasprintf("maillog_file = %s: %s", path, why);
		return -1;
	}
	return 0;
}

/* Open maillog_file as described in log.h.  Returns the descriptor or -1. */
static int
log_file_open(const char *path, char **err_r)
{
	struct stat st;
	const char *why;
	char	buf[128];
	int	fd, flags;

	/* As Postfix's postlog: /dev/stdout and /dev/stderr are the descriptors we have. */
	if (log_file_is_stdio(path)) {
		fd = fcntl(strcmp(path, "/dev/stdout") == 0 ? STDOUT_FILENO : STDERR_FILENO,
			   F_DUPFD_CLOEXEC, 3);
		if (fd < 0)
			*err_r = xasprintf("maillog_file = %s: %s", path, strerror(errno));
		return fd;
	}
	/*
	 * Look first, so that a device is not even opened (opening some has
	 * effects); then open without following a link and without blocking (a
	 * FIFO put there in between), and look again at what was opened.
	 */
	if (log_file_check(path, err_r) < 0)
		return -1;
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY
		  | O_CLOEXEC, 0644);
	if (fd < 0) {
		*err_r = errno == ELOOP
		    ? xasprintf("maillog_file = %s: file is a symbolic link (mxgate opens "
				"maillog_file as root and follows no link)", path)
		    : xasprintf("maillog_file = %s: cannot open file: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		*err_r = xasprintf("maillog_file = %s: fstat: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if ((why = log_file_refusal(&st, buf, sizeof(buf))) != NULL) {
		*err_r = xasprintf("maillog_file = %s: %s", path, why);
		close(fd);
		return -1;
	}
	if ((flags = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
		*err_r = xasprintf("maillog_file = %s: fcntl: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int
log_open_conf(const struct log_conf *lc, char **err_r)
{
	const char *file = lc->maillog_file;
	int	facility = LOG_MAIL;

	log_close();
	if (lc->syslog_facility != NULL
	    && (facility = log_facility_code(lc->syslog_facility)) < 0) {
		*err_r = xasprintf("parameter syslog_facility: unrecognized value: %s",
				   lc->syslog_facility);
		return -1;
	}
	if (file != NULL && *file != '\0') {
		int	fd;

		/* Postfix's maillog_client.c text. */
		if (lc->maillog_file_prefixes != NULL
		    && !log_file_allowed(file, lc->maillog_file_prefixes)) {
			*err_r = xasprintf("maillog_file value '%s' does not match any prefix in "
					   "maillog_file_prefixes", file);
			return -1;
		}
		if ((fd = log_file_open(file, err_r)) < 0)
			return -1;
		if ((log_w = log_writer_start(fd, lc->hostname, lc->syslog_name, err_r)) == NULL) {
			close(fd);
			return -1;
		}
	} else if ((log_dev_fd = log_dev_connect()) < 0) {
		/* No /dev/log: syslog(3) with one ident; other process names go in the text. */
		static char ident[256];

		snprintf(ident, sizeof(ident), "%s/smtpd", lc->syslog_name);
		openlog(ident, LOG_PID | LOG_NDELAY, facility);
		log_syslog_open = 1;
	}
	log_facility = facility;
	log_syslog_name = xstrdup(lc->syslog_name);
	log_hostname = xstrdup(lc->hostname);
	return 0;
}

int
log_open(const char *syslog_name, const char *maillog_file, const char *hostname, char **err_r)
{
	struct log_conf lc = {
		.syslog_name = syslog_name,
		.maillog_file = maillog_file,
		.hostname = hostname,
	};

	return log_open_conf(&lc, err_r);
}

void
log_close(void)
{
	if (log_w != NULL)
		log_writer_stop(log_w);
	log_w = NULL;
	if (log_syslog_open)
		closelog();
	log_syslog_open = 0;
	if (log_dev_fd >= 0)
		close(log_dev_fd);
	log_dev_fd = -1;
	log_facility = LOG_MAIL;
	free(log_syslog_name);
	free(log_hostname);
	log_syslog_name = log_hostname = NULL;
}

void
log_forked_child(void)
{
	/* the writer thread and its lock stayed in the parent: never touch them */
	log_w = NULL;
	log_syslog_open = 0;
	log_dev_fd = -1;
	log_syslog_name = NULL;
	log_pid = 0;	/* also done by pthread_atfork: a child made otherwise */
}

static pthread_key_t log_line_key;
static pthread_once_t log_line_once = PTHREAD_ONCE_INIT;

static void
log_line_key_free(void *p)
{
	buf_free(p);
	free(p);
}

static void
log_line_key_init(void)
{
	pthread_key_create(&log_line_key, log_line_key_free);
}

/* This thread's line buffer, freed when the thread ends. */
static struct buf *
log_line_buf(void)
{
	static __thread struct buf *b;

	if (b == NULL) {
		pthread_once(&log_line_once, log_line_key_init);
		b = xcalloc(1, sizeof(*b));
		pthread_setspecific(log_line_key, b);
	}
	return b;
}

/*
 * Postfix's msg_vprintf(): the text of a log line is printable(), so that
 * no text from outside (a milter's, a client's) can end it and forge the
 * next one: each control character (CR, LF, ...) becomes '?'.
 */
static void
log_controls(struct buf *line, size_t from)
{
	for (size_t i = from; i < line->len; i++)
		if ((unsigned char)line->data[i] < 0x20 || line->data[i] == 0x7f)
			line->data[i] = '?';
}

void
log_vmsg(const char *process, enum log_level level, const char *fmt, va_list ap)
{
	/*
	 * One line buffer per thread, kept between lines (no allocation per
	 * line); a line logged while another is being formatted on the same
	 * thread (from a signal handler, say) gets a buffer of its own.
	 */
	static __thread int kept_busy;
	struct buf local = BUF_INIT, *kept = kept_busy ? NULL : log_line_buf();
	struct buf *lp = kept != NULL ? kept : &local;
#define line (*lp)
	int saved_errno = errno;

	kept_busy++;
	buf_reset(lp);

	if (log_syslog_name == NULL) {
		buf_printf(&line, "%s: %s", log_progname, log_prefix[level]);
		buf_vprintf(&line, fmt, ap);
		buf_putc(&line, '\n');
		(void)!write(STDERR_FILENO, line.data, line.len);
	} else if (log_syslog_open) {
		if (strcmp(process, "smtpd") != 0)
			buf_printf(&line, "[%s] ", process);
		buf_puts(&line, log_prefix[level]);
		{
			size_t from = line.len;

			buf_vprintf(&line, fmt, ap);
			log_controls(&line, from);
		}
		syslog(log_syslog_prio[level], "%s", line.data);
	} else {
		const char *stamp = log_stamp(time(NULL));
		va_list ap2;

		/* A daemon that stops also says why on stderr, for whoever started it. */
		if (level >= LOG_LVL_FATAL) {
			struct buf e = BUF_INIT;

			va_copy(ap2, ap);
			buf_printf(&e, "%s: %s", log_progname, log_prefix[level]);
			buf_vprintf(&e, fmt, ap2);
			buf_putc(&e, '\n');
			va_end(ap2);
			(void)!write(STDERR_FILENO, e.data, e.len);
			buf_free(&e);
		}
		/*
		 * maillog_file: "stamp host tag[pid]: text\n"; /dev/log: "<pri>stamp tag[pid]: text".
		 * The prefix by hand: vsnprintf is a measurable share of a message's CPU.
		 */
		if (log_w != NULL) {
			buf_puts(&line, stamp);
			buf_putc(&line, ' ');
			buf_puts(&line, log_hostname);
			buf_putc(&line, ' ');
		} else {
			buf_printf(&line, "<%d>%s ", log_facility | log_syslog_prio[level], stamp);
		}
		buf_puts(&line, log_syslog_name);
		buf_putc(&line, '/');
		buf_puts(&line, process);
		buf_puts(&line, log_pid_tag());
		buf_puts(&line, log_prefix[level]);
		{
			size_t from = line.len;

			buf_vprintf(&line, fmt, ap);
			log_controls(&line, from);
		}
		if (log_w != NULL) {
			int fatal = level >= LOG_LVL_FATAL;
			unsigned long long seq;

			buf_putc(&line, '\n');
			seq = log_writer_put(log_w, line.data, line.len, fatal);
			/* The process ends next: the line must be in the file first. */
			if (fatal)
				(void)log_writer_wait(log_w, seq, LOG_FLUSH_TIMEOUT);
		} else {
			log_dev_send(line.data, line.len);
		}
	}
#undef line
	buf_free(&local);
	/* A buffer grown by a huge line is not kept. */
	if (kept != NULL && kept->cap > 4096)
		buf_free(kept);
	kept_busy--;
	errno = saved_errno;
}

void
log_as(const char *process, enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(process, level, fmt, ap);
	va_end(ap);
}

#define LOG_FN(name, level) \
	void name(const char *fmt, ...) \
	{ \
		va_list ap; \
		va_start(ap, fmt); \
		log_vmsg("smtpd", level, fmt, ap); \
		va_end(ap); \
	}

LOG_FN(msg_info, LOG_LVL_INFO)
LOG_FN(msg_warn, LOG_LVL_WARNING)
LOG_FN(msg_error, LOG_LVL_ERROR)

void
msg_debug(const char *fmt, ...)
{
	va_list ap;

	if (!msg_verbose)
		return;
	va_start(ap, fmt);
	log_vmsg("smtpd", LOG_LVL_INFO, fmt, ap);
	va_end(ap);
}

void
msg_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg("smtpd", LOG_LVL_FATAL, fmt, ap);
	va_end(ap);
	exit(1);
}

void
msg_panic(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg("smtpd", LOG_LVL_PANIC, fmt, ap);
	va_end(ap);
	abort();
}

void
log_escape(struct buf *out, const void *data, size_t len, size_t max)
{
	const unsigned char *p = data;
	size_t i, n = len < max ? len : max;

	for (i = 0; i < n; i++) {
		unsigned char c = p[i];

		switch (c) {
		case '\r': buf_puts(out, "\\r"); break;
		case '\n': buf_puts(out, "\\n"); break;
		case '\t': buf_puts(out, "\\t"); break;
		case '\\': buf_puts(out, "\\\\"); break;
		default:
			if (c >= 0x20 && c < 0x7f)
				buf_putc(out, (char)c);
			else
				buf_printf(out, "\\%03o", c);
		}
	}
	if (len > max)
		buf_puts(out, "...");
}

/* The length of the well-formed UTF-8 character at p[0..n), or 0. */
static size_t
log_utf8_char(const unsigned char *p, size_t n)
{
	size_t len, i;
	unsigned cp;

	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		len = 2;
		cp = p[0] & 0x1f;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		len = 3;
		cp = p[0] & 0x0f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		len = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff
	    || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

void
log_printable(struct buf *out, const void *data, size_t len, int utf8)
{
	const unsigned char *p = data;
	size_t i = 0, n;

	while (i < len) {
		if (p[i] >= 0x20 && p[i] < 0x7f) {
			buf_putc(out, (char)p[i++]);
		} else if (utf8 && p[i] >= 0x80 && (n = log_utf8_char(p + i, len - i)) > 0
			   && !(n == 2 && p[i] == 0xc2 && p[i + 1] < 0xa0)) {
			buf_append(out, (const char *)p + i, n);
			i += n;
		} else {
			buf_putc(out, '?');
			i++;
		}
	}
}

char *
log_escape_dup(const char *s, size_t max)
{
	struct buf b = BUF_INIT;

	log_escape(&b, s, strlen(s), max);
	return buf_steal(&b);
}

static pthread_key_t log_escape_key;
static pthread_once_t log_escape_once = PTHREAD_ONCE_INIT;

static void
log_escape_key_free(void *p)
{
	buf_free(p);
	free(p);
}

static void
log_escape_key_init(void)
{
	pthread_key_create(&log_escape_key, log_escape_key_free);
}

const char *
log_escape_str(const char *s, size_t max)
{
	struct buf *b;

	/* One buffer per thread, freed when the thread ends. */
	pthread_once(&log_escape_once, log_escape_key_init);
	if ((b = pthread_getspecific(log_escape_key)) == NULL) {
		b = xcalloc(1, sizeof(*b));
		pthread_setspecific(log_escape_key, b);
	}
	buf_reset(b);
	log_escape(b, s, strlen(s), max);
	return buf_str(b);
}
