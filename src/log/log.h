/*
 * log: Postfix-format logging.
 *
 * Before log_open() every message goes to stderr as "mxgate: warning: text"
 * (the form postconf(1) uses), which is what the conf and check verbs want.
 * After log_open() messages go to one of:
 *
 * syslog (maillog_file empty): one datagram per line on /dev/log (or
 *     $MXGATE_SYSLOG_SOCKET) with priority <syslog_facility | severity>,
 *     tagged "<syslog_name>/<process>[<pid>]" as Postfix's processes tag
 *     theirs (syslog(3) with the one ident "<syslog_name>/smtpd" and that
 *     facility when there is no such socket).
 *     A send never blocks: a line the socket does not take is dropped and
 *     counted, and the count is reported with the next line that gets
 *     through ("warning: N log lines dropped: syslog did not keep up").
 *
 * maillog_file: "Mmm dd hh:mm:ss <host> <syslog_name>/<process>[<pid>]: text"
 *     appended to the file.  The thread that logs never writes the file: it
 *     formats the line and puts it on a queue that one writer thread (started
 *     by log_open(), ended by log_close()) empties in order, up to 64 lines
 *     per writev(2) and each line whole, so lines never interleave and an
 *     event loop never waits on the disk or on a stalled reader of
 *     /dev/stdout.  Once a line has come, the writer waits up to 2 ms for
 *     more (a busy server then pays one wake-up for many lines): a line is
 *     in the file at most a few ms after it was logged; a fatal line is
 *     written at once, and the process waits for it.
 *     Bound: LOG_QUEUE_BYTES of queued text (each line counted with its
 *     bookkeeping).  Drop policy: a line that does not fit is dropped and
 *     counted, and so is every later line until the queue has drained to half
 *     the bound (so an overloaded file gets few, large gaps rather than a
 *     warning between every two lines).  Where a gap ends, or as soon as the
 *     writer has emptied the queue, the writer appends
 *         warning: N log lines dropped: maillog_file did not keep up
 *     (tagged <syslog_name>/smtpd) at the place of the gap.
 *     fatal and panic lines are never dropped: the caller queues them past
 *     the bound and waits until the writer has written them and every line
 *     queued before them (at most LOG_FLUSH_TIMEOUT seconds: a reader that
 *     never reads again must not keep a dying process alive; the line has
 *     gone to stderr too).  log_close() drains the queue the same way.
 *
 * Levels: info (no prefix), warning ("warning: "), error ("error: "),
 * fatal ("fatal: ", then exit(1)), panic ("panic: ", then abort()).  These
 * are safe to call from any thread.  log_open() and log_close() are not:
 * call them while no other thread logs (start-up, shutdown).
 */
#ifndef MXGATE_LOG_LOG_H
#define MXGATE_LOG_LOG_H

#include <stdarg.h>
#include <stddef.h>

struct buf;

enum log_level { LOG_LVL_INFO, LOG_LVL_WARNING, LOG_LVL_ERROR, LOG_LVL_FATAL, LOG_LVL_PANIC };

/* Queue bound and drain time of maillog_file logging (see above). */
#define LOG_QUEUE_BYTES		(1024 * 1024)
#define LOG_FLUSH_TIMEOUT	10

/* What log_open_conf() needs from main.cf. */
struct log_conf {
	const char *syslog_name;	/* tag prefix: "mxgate" in "mxgate/smtpd" */
	const char *syslog_facility;	/* Postfix's name ("mail", "local3"); NULL: "mail" */
	const char *maillog_file;	/* NULL or "": syslog */
	const char *maillog_file_prefixes;	/* a maillog_file must start with one
						 * of these (comma/space separated);
						 * NULL: no restriction (unit tests) */
	const char *hostname;		/* printed in maillog_file lines */
};

/*
 * Start daemon logging.  Returns 0, or -1 with *err_r set to a message
 * (caller frees) that names the parameter and its value: an unknown
 * syslog_facility, a maillog_file outside maillog_file_prefixes, or one that
 * cannot be opened safely.
 *
 * maillog_file is opened in the calling process (root, before the privilege
 * drop), so it is opened carefully: "/dev/stdout" and "/dev/stderr" are the
 * descriptors the process already has; any other path must be a regular file
 * with one link, or not exist (then it is created, mode 0644).  A symbolic
 * link (even one owned by root), a FIFO, a device, a socket or a directory is
 * refused, and the open never blocks.  Postfix's postlogd opens the file with
 * safe_open(), which refuses directories, files with several links and
 * symbolic links except those owned by root in a root-owned directory, but
 * accepts FIFOs and devices.
 */
int log_open_conf(const struct log_conf *lc, char **err_r);
/* log_open_conf() with facility mail and no maillog_file_prefixes check. */
int log_open(const char *syslog_name, const char *maillog_file, const char *hostname,
	     char **err_r);
/*
 * Back to stderr: drains the maillog_file queue (at most LOG_FLUSH_TIMEOUT
 * seconds), ends the writer thread, closes the file.  For tests and shutdown.
 */
void log_close(void);
/*
 * In a process just forked from a logging one (the delivery helper): back
 * to stderr without touching the parent's writer thread, queue or sockets.
 */
void log_forked_child(void);

/*
 * The syslog facility code (LOG_MAIL, LOG_LOCAL3, ...) of a name that
 * Postfix's syslog_facility accepts on this system (auth, authpriv, cron,
 * daemon, ftp, kern, lpr, mail, news, syslog, user, uucp, local0..local7;
 * case matters, as in Postfix), or -1.
 */
int log_facility_code(const char *name);
/*
 * 1 if path starts with one of the prefixes (a comma/whitespace separated
 * list), as Postfix's maillog_file_prefixes check does: a plain string
 * prefix, so "/var" also admits "/variable".  0 otherwise (and for an empty
 * list).
 */
int log_file_allowed(const char *path, const char *prefixes);
/*
 * What log_open_conf() would say about path without opening or creating
 * it: 0 when it is "/dev/stdout", "/dev/stderr", a regular file with one
 * link or absent; -1 with *err_r (caller frees) otherwise.  For `mxgate
 * check`.
 */
int log_file_check(const char *path, char **err_r);

/* The program name used for stderr messages (default "mxgate"). */
void log_set_progname(const char *name);

/* Log one line as another Postfix process name ("anvil", "master"). */
void log_as(const char *process, enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void log_vmsg(const char *process, enum log_level level, const char *fmt, va_list ap);

void msg_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void msg_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void msg_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void msg_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void msg_panic(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Debug lines (state changes) are logged only when this is non-zero. */
extern int msg_verbose;
void msg_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Append client data to out in C-escaped form: printable ASCII as is, and
 * \r \n \t \\ and \ooo for everything else, so a log line never carries a
 * control byte or a line break from a client.  At most max input bytes are
 * escaped; when data is longer, "..." is appended.
 */
void log_escape(struct buf *out, const void *data, size_t len, size_t max);
/* The same, as a new string (caller frees). */
char *log_escape_dup(const char *s, size_t max);
/* The same, into a static per-thread buffer: valid until the next call. */
const char *log_escape_str(const char *s, size_t max);

/*
 * Append client text to out as Postfix's printable() leaves it where smtpd
 * logs an address or a HELO name ("Illegal address syntax ... : <...>",
 * "from=<...> to=<...> helo=<...>"): printable ASCII as is and, when utf8
 * (smtputf8_enable), every well-formed UTF-8 character from U+00A0 up; every
 * other byte becomes '?'.  Nothing is escaped and nothing is cut, so the
 * caller bounds len.  (mxgate: Postfix keeps the C1 controls U+0080..U+009F
 * too, which a terminal may obey (U+009B is CSI); here they are '?'.)
 */
void log_printable(struct buf *out, const void *data, size_t len, int utf8);

#endif
