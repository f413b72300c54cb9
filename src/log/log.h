/*
 * log: Postfix-format logging.
 *
 * Before log_open() every message goes to stderr as "mxgate: warning: text"
 * (the form postconf(1) uses), which is what the conf and check verbs want.
 * After log_open() messages go to syslog, facility mail, one datagram per
 * line on /dev/log (or $MXGATE_SYSLOG_SOCKET) tagged "<syslog_name>/<process>
 * [<pid>]" as Postfix's processes tag theirs (syslog(3) with the one ident
 * "<syslog_name>/smtpd" when there is no such socket), or, when maillog_file
 * is set, are appended to that file as "Mmm dd hh:mm:ss <host>
 * <syslog_name>/smtpd[<pid>]: text", one write(2) per line, so concurrent
 * threads never interleave a line.
 *
 * Levels: info (no prefix), warning ("warning: "), error ("error: "),
 * fatal ("fatal: ", then exit(1)), panic ("panic: ", then abort()).  These
 * are safe to call from any thread.
 */
#ifndef MXGATE_LOG_LOG_H
#define MXGATE_LOG_LOG_H

#include <stdarg.h>
#include <stddef.h>

struct buf;

enum log_level { LOG_LVL_INFO, LOG_LVL_WARNING, LOG_LVL_ERROR, LOG_LVL_FATAL, LOG_LVL_PANIC };

/*
 * Start daemon logging.  maillog_file NULL or "" means syslog.  hostname is
 * the name printed in maillog_file lines.  Returns 0, or -1 with *err_r set
 * to a message (caller frees) when the file cannot be opened.
 */
int log_open(const char *syslog_name, const char *maillog_file, const char *hostname,
	     char **err_r);
/* Back to stderr; closes the file.  For tests and for shutdown. */
void log_close(void);
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

#endif
