/*
 * lmtp: a blocking LMTP client for the writers pool.  See lmtp.h.
 */
#include "deliver/lmtp.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "conf/conf.h"
#include "deliver/spool.h"
#include "util/buf.h"
#include "util/xalloc.h"

#define LMTP_LINE_MAX	4096
#define LMTP_REPLY_LINES 100
#define LMTP_OUT_FLUSH	65536

void
lmtp_conf_from_view(struct lmtp_conf *c, const struct conf_view *cf)
{
	memset(c, 0, sizeof(*c));
	c->connect_timeout = conf_time(cf, P_lmtp_connect_timeout);
	c->lhlo_timeout = conf_time(cf, P_lmtp_lhlo_timeout);
	c->mail_timeout = conf_time(cf, P_lmtp_mail_timeout);
	c->rcpt_timeout = conf_time(cf, P_lmtp_rcpt_timeout);
	c->data_init_timeout = conf_time(cf, P_lmtp_data_init_timeout);
	c->data_xfer_timeout = conf_time(cf, P_lmtp_data_xfer_timeout);
	c->data_done_timeout = conf_time(cf, P_lmtp_data_done_timeout);
	c->rset_timeout = conf_time(cf, P_lmtp_rset_timeout);
	c->quit_timeout = conf_time(cf, P_lmtp_quit_timeout);
	c->tcp_port = conf_int(cf, P_lmtp_tcp_port);
	snprintf(c->lhlo_name, sizeof(c->lhlo_name), "%s", conf_str(cf, P_lmtp_lhlo_name));
	snprintf(c->queue_directory, sizeof(c->queue_directory), "%s",
		 conf_str(cf, P_queue_directory));
	snprintf(c->myhostname, sizeof(c->myhostname), "%s", conf_str(cf, P_myhostname));
}

/* ---- nexthops ---- */

struct nexthop {
	int	is_unix;
	char	path[1024];	/* unix: as written */
	char	host[512];	/* inet: without brackets */
	char	port[32];
};

static const char *
nexthop_parse(const char *nh, long defport, struct nexthop *out)
{
	const char *s = nh, *colon;

	memset(out, 0, sizeof(*out));
	if (strncmp(s, "unix:", 5) == 0) {
		s += 5;
		if (*s == '\0')
			return "names no socket";
		if (strlen(s) >= sizeof(out->path) - 1)
			return "socket path too long";
		out->is_unix = 1;
		snprintf(out->path, sizeof(out->path), "%s", s);
		return NULL;
	}
	if (strncmp(s, "inet:", 5) == 0)
		s += 5;
	if (*s == '\0')
		return "names no LMTP server";
	if (*s == '[') {
		const char *end = strchr(s, ']');

		if (end == NULL || end == s + 1)
			return "bad [host] syntax";
		if ((size_t)(end - s - 1) >= sizeof(out->host))
			return "host name too long";
		memcpy(out->host, s + 1, (size_t)(end - s - 1));
		s = end + 1;
		if (*s == ':')
			colon = s;
		else if (*s == '\0')
			colon = NULL;
		else
			return "bad [host]:port syntax";
	} else {
		colon = strrchr(s, ':');
		if (colon != NULL && strchr(s, ':') != colon)
			return "an IPv6 address must be written [addr]";
		size_t hl = colon ? (size_t)(colon - s) : strlen(s);

		if (hl == 0)
			return "names no LMTP server";
		if (hl >= sizeof(out->host))
			return "host name too long";
		memcpy(out->host, s, hl);
	}
	if (colon != NULL) {
		const char *p = colon + 1;

		if (*p == '\0' || strlen(p) >= sizeof(out->port))
			return "bad port";
		snprintf(out->port, sizeof(out->port), "%s", p);
	} else {
		snprintf(out->port, sizeof(out->port), "%ld", defport > 0 ? defport : 24);
	}
	for (const char *q = out->host; *q; q++)
		if ((unsigned char)*q <= ' ' || *q == '/')
			return "bad host name";
	return NULL;
}

const char *
lmtp_nexthop_problem(const char *nexthop)
{
	struct nexthop nh;

	return nexthop_parse(nexthop, 24, &nh);
}

/* ---- the connection ---- */

struct lconn {
	int	fd;
	char	in[LMTP_LINE_MAX * 2];
	size_t	ilen, ipos;
	struct buf out;
	const char *relay;
};

/* 1 ready, 0 timed out, -1 error (errno). */
static int
lc_wait(int fd, short events, long timeout_s)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int ms = timeout_s > 0 ? (int)(timeout_s > 2000000 ? 2000000000 : timeout_s * 1000) : -1;
	int rc;

	do
		rc = poll(&pfd, 1, ms);
	while (rc < 0 && errno == EINTR);
	if (rc < 0)
		return -1;
	return rc > 0;
}

/* 0 sent; -1 with errno (ETIMEDOUT for a timeout). */
static int
lc_flush(struct lconn *c, long timeout)
{
	size_t off = 0;

	while (off < c->out.len) {
		ssize_t w = send(c->fd, c->out.data + off, c->out.len - off, MSG_NOSIGNAL);

		if (w > 0) {
			off += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			int rc = lc_wait(c->fd, POLLOUT, timeout);

			if (rc == 0)
				errno = ETIMEDOUT;
			if (rc <= 0)
				return -1;
			continue;
		}
		return -1;
	}
	buf_reset(&c->out);
	return 0;
}

/* One line without CRLF into line (NUL-terminated).  -1 with errno:
 * ETIMEDOUT, ECONNRESET (the server closed), EPROTO (too long). */
static int
lc_getline(struct lconn *c, char *line, size_t cap, long timeout)
{
	for (;;) {
		char *nl = memchr(c->in + c->ipos, '\n', c->ilen - c->ipos);

		if (nl != NULL) {
			size_t len = (size_t)(nl - (c->in + c->ipos));

			if (len > 0 && c->in[c->ipos + len - 1] == '\r')
				len--;
			if (len >= cap) {
				errno = EPROTO;
				return -1;
			}
			memcpy(line, c->in + c->ipos, len);
			line[len] = '\0';
			c->ipos = (size_t)(nl - c->in) + 1;
			return 0;
		}
		if (c->ipos > 0) {
			memmove(c->in, c->in + c->ipos, c->ilen - c->ipos);
			c->ilen -= c->ipos;
			c->ipos = 0;
		}
		if (c->ilen >= sizeof(c->in)) {
			errno = EPROTO;
			return -1;
		}
		ssize_t r = recv(c->fd, c->in + c->ilen, sizeof(c->in) - c->ilen, 0);

		if (r > 0) {
			c->ilen += (size_t)r;
			continue;
		}
		if (r == 0) {
			errno = ECONNRESET;
			return -1;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			int rc = lc_wait(c->fd, POLLIN, timeout);

			if (rc == 0)
				errno = ETIMEDOUT;
			if (rc <= 0)
				return -1;
			continue;
		}
		return -1;
	}
}

/*
 * One reply: *code, and the text (lines joined by a space, as Postfix logs
 * them) in text.  0, or -1 with errno (EPROTO for a malformed reply).
 */
static int
lc_reply(struct lconn *c, long timeout, int *code, struct buf *text)
{
	char line[LMTP_LINE_MAX];

	buf_reset(text);
	for (int n = 0; n < LMTP_REPLY_LINES; n++) {
		if (lc_getline(c, line, sizeof(line), timeout) < 0)
			return -1;
		if (strlen(line) < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0'
		    || line[1] > '9' || line[2] < '0' || line[2] > '9'
		    || (line[3] != '\0' && line[3] != ' ' && line[3] != '-')) {
			errno = EPROTO;
			return -1;
		}
		if (n == 0)
			*code = atoi(line);
		else if (atoi(line) != *code) {
			errno = EPROTO;
			return -1;
		}
		/* the text goes into log lines and an SMTP reply: no control bytes (as Postfix's
		 * printable()) */
		for (char *q = line; *q; q++)
			if ((unsigned char)*q < 0x20 || *q == 0x7f)
				*q = '?';
		if (text->len > 0)
			buf_putc(text, ' ');
		if (n == 0)
			buf_puts(text, line);
		else
			buf_puts(text, line[3] ? line + 4 : "");
		if (line[3] != '-')
			return 0;
	}
	errno = EPROTO;
	return -1;
}

/* "2.0.0"-style code at the start of a reply's text, else derived. */
static void
reply_dsn(const char *reply, int code, char *dsn, size_t cap)
{
	const char *t = reply + (strlen(reply) > 4 ? 4 : strlen(reply));
	size_t n = 0;

	if (t[0] >= '2' && t[0] <= '5' && t[1] == '.' && t[0] == reply[0]) {
		n = 2;
		while (t[n] >= '0' && t[n] <= '9' && n < 5)
			n++;
		if (t[n] == '.' && n > 2) {
			size_t m = n + 1;

			while (t[m] >= '0' && t[m] <= '9' && m < n + 4)
				m++;
			if (m > n + 1 && (t[m] == ' ' || t[m] == '\0') && m < cap) {
				memcpy(dsn, t, m);
				dsn[m] = '\0';
				return;
			}
		}
	}
	snprintf(dsn, cap, "%d.0.0", code / 100);
}

/* Connect to one address; -1 with errno (ETIMEDOUT). */
static int
connect_addr(const struct sockaddr *sa, socklen_t salen, int family, long timeout)
{
	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int rc, e;
	socklen_t elen = sizeof(e);

	if (fd < 0)
		return -1;
	rc = connect(fd, sa, salen);
	if (rc < 0 && errno == EINPROGRESS) {
		rc = lc_wait(fd, POLLOUT, timeout);
		if (rc == 0)
			errno = ETIMEDOUT;
		if (rc <= 0) {
			e = errno;
			close(fd);
			errno = e;
			return -1;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) < 0 || e != 0) {
			if (e == 0)
				e = errno;
			close(fd);
			errno = e;
			return -1;
		}
		return fd;
	}
	if (rc < 0) {
		e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static int
lmtp_connect(const struct lmtp_conf *cf, const struct nexthop *nh, struct lmtp_result *res,
	     struct buf *err)
{
	if (nh->is_unix) {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };
		int n, fd;

		snprintf(res->relay, sizeof(res->relay), "%s[%s]", cf->myhostname, nh->path);
		if (nh->path[0] == '/')
			n = snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", nh->path);
		else
			n = snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/%s",
				     cf->queue_directory, nh->path);
		if (n < 0 || (size_t)n >= sizeof(sun.sun_path)) {
			buf_printf(err, "connect to %s: socket path too long", res->relay);
			snprintf(res->relay, sizeof(res->relay), "none");
			return -1;
		}
		fd = connect_addr((struct sockaddr *)&sun, sizeof(sun), AF_UNIX, cf->connect_timeout);
		if (fd < 0) {
			buf_printf(err, "connect to %s: %s", res->relay, strerror(errno));
			snprintf(res->relay, sizeof(res->relay), "none");
		}
		return fd;
	} else {
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL, *a;
		int rc = getaddrinfo(nh->host, nh->port, &hints, &ai);
		int fd = -1;

		if (rc != 0) {
			buf_printf(err, "Host or domain name not found. Name service error for "
				   "name=%s type=A: %s", nh->host, gai_strerror(rc));
			snprintf(res->relay, sizeof(res->relay), "none");
			return -1;
		}
		for (a = ai; a != NULL && fd < 0; a = a->ai_next) {
			char addr[INET6_ADDRSTRLEN] = "?";
			int port = 0;

			if (a->ai_family == AF_INET) {
				struct sockaddr_in *s4 = (struct sockaddr_in *)a->ai_addr;

				inet_ntop(AF_INET, &s4->sin_addr, addr, sizeof(addr));
				port = ntohs(s4->sin_port);
			} else if (a->ai_family == AF_INET6) {
				struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)a->ai_addr;

				inet_ntop(AF_INET6, &s6->sin6_addr, addr, sizeof(addr));
				port = ntohs(s6->sin6_port);
			} else {
				continue;
			}
			snprintf(res->relay, sizeof(res->relay), "%s[%s]:%d", nh->host, addr, port);
			fd = connect_addr(a->ai_addr, a->ai_addrlen, a->ai_family, cf->connect_timeout);
			if (fd < 0) {
				buf_reset(err);
				buf_printf(err, "connect to %s: %s", res->relay, strerror(errno));
			}
		}
		freeaddrinfo(ai);
		if (fd < 0)
			snprintf(res->relay, sizeof(res->relay), "none");
		return fd;
	}
}

/* The message: received, then the body, CRLF line ends, dot-stuffed. */
static int
send_body(struct lconn *c, const struct lmtp_msg *m, long timeout)
{
	int bol = 1;
	char chunk[16384];
	size_t off = 0, total = m->body ? spool_size(m->body) : 0;
	const char *pieces[1] = { m->received };

	for (int part = 0; part < 2; part++) {
		const char *p;
		size_t len;

		if (part == 0) {
			if (pieces[0] == NULL)
				continue;
			p = pieces[0];
			len = strlen(p);
		} else {
			p = NULL;
			len = 0;
		}
		for (;;) {
			if (part == 1) {
				ssize_t r;

				if (off >= total)
					break;
				r = spool_pread(m->body, chunk, sizeof(chunk), off);
				if (r <= 0) {
					errno = r < 0 ? errno : EIO;
					return -2;
				}
				off += (size_t)r;
				p = chunk;
				len = (size_t)r;
			}
			for (size_t i = 0; i < len; i++) {
				if (bol && p[i] == '.')
					buf_putc(&c->out, '.');
				if (p[i] == '\n') {
					buf_append(&c->out, "\r\n", 2);
					bol = 1;
				} else {
					buf_putc(&c->out, p[i]);
					bol = 0;
				}
			}
			if (c->out.len >= LMTP_OUT_FLUSH && lc_flush(c, timeout) < 0)
				return -1;
			if (part == 0)
				break;
		}
	}
	if (!bol)
		buf_append(&c->out, "\r\n", 2);
	buf_append(&c->out, ".\r\n", 3);
	return lc_flush(c, timeout);
}

static void
io_error(struct buf *err, const char *relay, const char *while_doing, const char *extra)
{
	buf_reset(err);
	if (errno == ETIMEDOUT)
		buf_printf(err, "conversation with %s timed out while %s%s", relay, while_doing,
			   extra);
	else if (errno == EPROTO)
		buf_printf(err, "protocol error with %s while %s", relay, while_doing);
	else
		buf_printf(err, "lost connection with %s while %s%s", relay, while_doing, extra);
}

/* Send cmd, read its reply.  0, or -1 with err set (I/O). */
static int
command(struct lconn *c, const char *cmd, long timeout, const char *while_doing, int *code,
	struct buf *text, struct buf *err)
{
	buf_printf(&c->out, "%s\r\n", cmd);
	if (lc_flush(c, timeout) < 0 || lc_reply(c, timeout, code, text) < 0) {
		io_error(err, c->relay, while_doing, "");
		return -1;
	}
	return 0;
}

static void
said(struct buf *err, const char *relay, const struct buf *text, const char *cmd,
     struct lmtp_result *res, int code)
{
	reply_dsn(buf_str(text), code, res->dsn, sizeof(res->dsn));
	buf_reset(err);
	buf_printf(err, "host %s said: %s (in reply to %s command)", relay, buf_str(text), cmd);
}

int
lmtp_deliver(const struct lmtp_conf *cf, const char *nexthop, const struct lmtp_msg *msg,
	     struct lmtp_rcpt *rcpts, size_t n, struct lmtp_result *res, struct buf *err)
{
	struct nexthop nh;
	struct lconn c = { .fd = -1, .out = BUF_INIT };
	struct buf text = BUF_INIT, cmd = BUF_INIT;
	const char *why;
	int code = 0, rv = -1;
	size_t i;

	memset(res, 0, sizeof(*res));
	snprintf(res->relay, sizeof(res->relay), "none");
	snprintf(res->dsn, sizeof(res->dsn), "4.4.1");
	for (i = 0; i < n; i++) {
		rcpts[i].code = 0;
		rcpts[i].dsn[0] = '\0';
		rcpts[i].reply = NULL;
		rcpts[i].stage = NULL;
	}
	why = nexthop_parse(nexthop, cf->tcp_port, &nh);
	if (why != NULL) {
		buf_printf(err, "bad LMTP destination \"%s\": %s", nexthop, why);
		return -1;
	}
	c.fd = lmtp_connect(cf, &nh, res, err);
	if (c.fd < 0)
		return -1;
	c.relay = res->relay;
	snprintf(res->dsn, sizeof(res->dsn), "4.4.2");
	if (lc_reply(&c, cf->lhlo_timeout, &code, &text) < 0) {
		io_error(err, c.relay, "receiving the initial server greeting", "");
		goto out;
	}
	if (code != 220) {
		buf_reset(err);
		buf_printf(err, "host %s refused to talk to me: %s", c.relay, buf_str(&text));
		goto quit;
	}
	buf_printf(&cmd, "LHLO %s", cf->lhlo_name);
	if (command(&c, buf_str(&cmd), cf->lhlo_timeout, "receiving the LHLO reply", &code, &text, err) < 0)
		goto out;
	if (code / 100 != 2) {
		said(err, c.relay, &text, "LHLO", res, code);
		goto quit;
	}
	gettimeofday(&res->conn_done, NULL);
	buf_reset(&cmd);
	buf_printf(&cmd, "MAIL FROM:<%s>", msg->sender);
	if (command(&c, buf_str(&cmd), cf->mail_timeout, "sending MAIL FROM", &code, &text,
		    err) < 0)
		goto out;
	if (code / 100 != 2) {
		said(err, c.relay, &text, "MAIL FROM", res, code);
		goto quit;
	}
	for (i = 0; i < n; i++) {
		buf_reset(&cmd);
		buf_printf(&cmd, "RCPT TO:<%s>", rcpts[i].address);
		if (command(&c, buf_str(&cmd), cf->rcpt_timeout, "sending RCPT TO", &code, &text,
			    err) < 0)
			goto out;
		rcpts[i].code = code;
		rcpts[i].stage = "RCPT TO";
		rcpts[i].reply = xstrdup(buf_str(&text));
		reply_dsn(rcpts[i].reply, code, rcpts[i].dsn, sizeof(rcpts[i].dsn));
		if (code / 100 != 2)
			res->rcpt_refused = 1;
	}
	if (res->rcpt_refused) {
		/* all or nothing: nobody gets it unless everybody can */
		buf_puts(&c.out, "RSET\r\n");
		if (lc_flush(&c, cf->rset_timeout) == 0)
			(void)lc_reply(&c, cf->rset_timeout, &code, &text);
		rv = 0;
		goto quit;
	}
	if (command(&c, "DATA", cf->data_init_timeout, "sending DATA", &code, &text, err) < 0)
		goto out;
	if (code != 354) {
		said(err, c.relay, &text, "DATA", res, code);
		goto quit;
	}
	{
		int rc = send_body(&c, msg, cf->data_xfer_timeout);

		if (rc == -2) {
			buf_reset(err);
			buf_printf(err, "error reading the message from the spool: %s",
				   strerror(errno));
			goto out;
		}
		if (rc < 0) {
			io_error(err, c.relay, "sending message body", "");
			goto out;
		}
	}
	for (i = 0; i < n; i++) {
		if (lc_reply(&c, cf->data_done_timeout, &code, &text) < 0) {
			io_error(err, c.relay, "sending end of data",
				 " -- message may be sent more than once");
			goto out;
		}
		free(rcpts[i].reply);
		rcpts[i].code = code;
		rcpts[i].stage = "end of DATA";
		rcpts[i].reply = xstrdup(buf_str(&text));
		reply_dsn(rcpts[i].reply, code, rcpts[i].dsn, sizeof(rcpts[i].dsn));
	}
	rv = 0;
quit:
	buf_reset(&c.out);
	buf_puts(&c.out, "QUIT\r\n");
	if (lc_flush(&c, cf->quit_timeout) == 0)
		(void)lc_reply(&c, cf->quit_timeout, &code, &text);
out:
	if (c.fd >= 0)
		close(c.fd);
	buf_free(&c.out);
	buf_free(&text);
	buf_free(&cmd);
	return rv;
}

/* ---- delays ---- */

void
lmtp_format_delay(struct buf *out, const struct timeval *from, const struct timeval *to)
{
	static const long pow10[] = { 1, 10, 100, 1000, 10000, 100000, 1000000 };
	const int sig_dig = 2, max_dig = 2;
	long sec = to->tv_sec - from->tv_sec, usec = to->tv_usec - from->tv_usec;
	long ures, wid, n;

	while (usec < 0) {
		usec += 1000000;
		sec--;
	}
	if (sec < 0)
		sec = usec = 0;
	ures = 1000000 / pow10[max_dig];
	wid = pow10[sig_dig];
	if (sec > 0) {
		for (n = 1; sec >= n && n <= wid / 10; n *= 10)
			;
		ures = (1000000 / wid) * n;
	} else {
		while (usec >= wid * ures)
			ures *= 10;
	}
	if (ures > 1) {
		usec += ures / 2;
		if (usec >= 1000000) {
			sec++;
			usec -= 1000000;
		}
	}
	buf_printf(out, "%ld", sec);
	if (usec >= ures) {
		long rem = usec;

		buf_putc(out, '.');
		for (n = 100000; rem >= ures && n > 0; n /= 10) {
			buf_putc(out, "0123456789"[rem / n]);
			rem %= n;
		}
	}
}
