/*
 * map_socket: the client tables "socketmap:" and "tcp:", whose answers come
 * from a server, as Postfix 3.7's dict_sockmap and dict_tcp ask it.
 *
 *   socketmap:inet:HOST:PORT:NAME, socketmap:unix:/PATH:NAME (socketmap_table(5))
 *            query: the netstring "NAME KEY"; reply: a netstring "OK value"
 *            (found), "NOTFOUND " (not found), "TEMP ...", "TIMEOUT ...",
 *            "PERM ..." or anything else (the table could not answer:
 *            MAP_FAIL, with Postfix's "socketmap server temporary error: ..."
 *            warning).  A key longer than 10000 bytes is "not found" with a
 *            warning, a reply longer than 100000 bytes a failure, as in
 *            Postfix.  A connection the server has closed is retried once on a
 *            new one.  Idle connections are closed after 10 s, every
 *            connection after 100 s (Postfix's auto_clnt).
 *   tcp:HOST:PORT (tcp_table(5))
 *            query: "get KEY\n" with '%', white space and unprintable bytes
 *            as %XX; reply: one line of at most 4096 bytes, "200 value"
 *            (found, %XX decoded), "500 ..." (not found), "400 ..." (could
 *            not answer: MAP_FAIL); anything else is a malformed reply
 *            (MAP_FAIL, connection closed).  A connection that breaks is
 *            tried again once on a new one.  Postfix tries up to 10 times a
 *            second apart; mxgate does not hold a lookups-pool thread for
 *            10 s, the caller tempfails at once instead.
 *
 *   Both     keys go to the server as the caller gave them (MAPT_NOFOLD, as
 *            Postfix sends them) and are not split into parent domains
 *            (MAPT_PATTERN, Postfix's DICT_FLAG_PATTERN).  Every connect,
 *            read and write has Postfix's 100 s time limit.  Each table has
 *            a pool of at most MAP_REMOTE_CONCURRENCY connections (maps.c lets
 *            no more lookups in at once): a lookup takes an idle one or opens
 *            one, or waits (at most the time limit) for one to come back.  A server that cannot be reached is a
 *            MAP_FAIL and one warning for the whole outage ("connect to
 *            ENDPOINT: Connection refused"); the first connection that works
 *            again logs that it does.
 *   open     parses the name only: the first lookup connects, as Postfix.
 *   probe    (mxgate check) connects once: "connect to ENDPOINT: why".
 */
#include "policy/map_socket.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log/log.h"
#include "util/buf.h"
#include "util/xalloc.h"

/* Postfix's limits (dict_sockmap.c, dict_tcp.c). */
#define MAPSOCK_TIMEOUT		100	/* seconds: connect, each read, each write */
#define MAPSOCK_MAX_REPLY	100000	/* socketmap reply netstring */
#define MAPSOCK_MAX_QUERY	10000	/* socketmap key */
#define MAPSOCK_MAX_IDLE	10	/* seconds: close an idle socketmap connection */
#define MAPSOCK_MAX_TTL		100	/* seconds: close an old socketmap connection */
#define MAPTCP_MAXLEN		4096	/* tcp reply line */

/* Longest key or reply text quoted in a warning. */
#define MAPSOCK_LOG_MAX		200

enum mapsock_kind { MAPSOCK_SOCKETMAP, MAPSOCK_TCP };

struct mapsock_conn {
	int fd;
	time_t born, used;
	char rbuf[4096];
	size_t rpos, rlen;
	struct mapsock_conn *next;	/* idle list */
};

struct map_impl {
	enum mapsock_kind kind;
	char *title;		/* "socketmap:unix:/path:name", "tcp:host:port" */
	char *endpoint;		/* "host:port" or "/path", as Postfix names it */
	bool is_unix;
	char *host, *port;	/* inet */
	char *sockmap_name;	/* socketmap */
	pthread_mutex_t mutex;	/* everything below */
	pthread_cond_t cond;	/* a connection came back */
	struct mapsock_conn *idle;
	int nconn;		/* idle and in use */
	bool down;		/* the last connect failed (warned once) */
};

/* Read results. */
#define MAPSOCK_EOF	(-1)
#define MAPSOCK_TIME	(-2)
#define MAPSOCK_FORMAT	(-3)
#define MAPSOCK_SIZE	(-4)

/* Postfix's netstring_strerror() words. */
static const char *mapsock_strerror(int err)
{
	switch (err) {
	case MAPSOCK_EOF: return "unexpected disconnect";
	case MAPSOCK_TIME: return "time limit exceeded";
	case MAPSOCK_FORMAT: return "input format error";
	case MAPSOCK_SIZE: return "input exceeds size limit";
	}
	return "unknown netstring error";
}

/* ---- connections ---- */

/* Wait until fd is ready for events: 1, 0 on timeout, -1 on error. */
static int mapsock_wait(int fd, short events)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int rc;

	do
		rc = poll(&pfd, 1, MAPSOCK_TIMEOUT * 1000);
	while (rc < 0 && errno == EINTR);
	return rc;
}

/* Non-blocking connect with the time limit.  fd, or -1 with errno set. */
static int mapsock_connect_addr(int family, const struct sockaddr *sa, socklen_t salen)
{
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), err = 0;
	socklen_t len = sizeof(err);

	if (fd < 0)
		return -1;
	if (connect(fd, sa, salen) == 0)
		return fd;
	if (errno != EINPROGRESS)
		goto fail;
	switch (mapsock_wait(fd, POLLOUT)) {
	case 0: errno = ETIMEDOUT; goto fail;
	case -1: goto fail;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		goto fail;
	if (err != 0) {
		errno = err;
		goto fail;
	}
	return fd;
fail:
	err = errno;
	close(fd);
	errno = err;
	return -1;
}

/* A new connection, or NULL with *why_r set (malloc'd). */
static struct mapsock_conn *mapsock_connect(const struct map_impl *mi, char **why_r)
{
	struct mapsock_conn *c;
	int fd = -1;

	if (mi->is_unix) {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };

		memcpy(sun.sun_path, mi->endpoint, strlen(mi->endpoint) + 1);	/* checked at open */
		fd = mapsock_connect_addr(AF_UNIX, (struct sockaddr *)&sun, sizeof(sun));
		if (fd < 0) {
			*why_r = xstrdup(strerror(errno));
			return NULL;
		}
	} else {
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL, *ai;
		int rc = getaddrinfo(mi->host, mi->port, &hints, &res), err = ECONNREFUSED;

		if (rc != 0) {
			*why_r = xasprintf("%s: %s", mi->host, rc == EAI_SYSTEM ? strerror(errno)
									 : gai_strerror(rc));
			return NULL;
		}
		for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
			fd = mapsock_connect_addr(ai->ai_family, ai->ai_addr, ai->ai_addrlen);
			if (fd < 0)
				err = errno;
		}
		freeaddrinfo(res);
		if (fd < 0) {
			*why_r = xstrdup(strerror(err));
			return NULL;
		}
	}
	c = xcalloc(1, sizeof(*c));
	c->fd = fd;
	c->born = c->used = time(NULL);
	return c;
}

static void mapsock_conn_free(struct mapsock_conn *c)
{
	close(c->fd);
	free(c);
}

/* Too old or idle too long to use (socketmap only, as Postfix's auto_clnt). */
static bool mapsock_expired(const struct map_impl *mi, const struct mapsock_conn *c, time_t now)
{
	return mi->kind == MAPSOCK_SOCKETMAP
	       && (now - c->used >= MAPSOCK_MAX_IDLE || now - c->born >= MAPSOCK_MAX_TTL);
}

/*
 * A connection for one exchange: an idle one (unless fresh), else a new one
 * below the cap, else wait for one to come back.  NULL: MAP_FAIL (warned).
 */
static struct mapsock_conn *mapsock_acquire(struct map_impl *mi, bool fresh)
{
	struct timespec deadline;
	struct mapsock_conn *c;
	char *why = NULL;
	bool was_down;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += MAPSOCK_TIMEOUT;
	pthread_mutex_lock(&mi->mutex);
	for (;;) {
		time_t now = time(NULL);

		while ((c = mi->idle) != NULL) {
			mi->idle = c->next;
			if (!fresh && !mapsock_expired(mi, c, now)) {
				pthread_mutex_unlock(&mi->mutex);
				return c;
			}
			mapsock_conn_free(c);
			mi->nconn--;
		}
		if (mi->nconn < MAP_REMOTE_CONCURRENCY)
			break;
		if (pthread_cond_timedwait(&mi->cond, &mi->mutex, &deadline) == ETIMEDOUT) {
			pthread_mutex_unlock(&mi->mutex);
			msg_warn("table %s: all %d connections busy for %d s", mi->title,
				 MAP_REMOTE_CONCURRENCY, MAPSOCK_TIMEOUT);
			return NULL;
		}
	}
	mi->nconn++;
	pthread_mutex_unlock(&mi->mutex);

	c = mapsock_connect(mi, &why);

	pthread_mutex_lock(&mi->mutex);
	was_down = mi->down;
	mi->down = c == NULL;
	if (c == NULL) {
		mi->nconn--;
		pthread_cond_signal(&mi->cond);
	}
	pthread_mutex_unlock(&mi->mutex);
	if (c == NULL && !was_down)
		msg_warn("connect to %s: %s (table %s: lookups fail until it answers)",
			 mi->endpoint, why, mi->title);
	else if (c != NULL && was_down)
		msg_info("connect to %s: connected again (table %s)", mi->endpoint, mi->title);
	free(why);
	return c;
}

/* Back to the pool (ok) or closed (broken, or the server may have gone). */
static void mapsock_release(struct map_impl *mi, struct mapsock_conn *c, bool ok)
{
	pthread_mutex_lock(&mi->mutex);
	if (ok) {
		c->used = time(NULL);
		c->next = mi->idle;
		mi->idle = c;
	} else {
		mapsock_conn_free(c);
		mi->nconn--;
	}
	pthread_cond_signal(&mi->cond);
	pthread_mutex_unlock(&mi->mutex);
}

/* Close the idle connections: after a disconnect they are likely dead too. */
static void mapsock_drop_idle(struct map_impl *mi)
{
	struct mapsock_conn *c;

	pthread_mutex_lock(&mi->mutex);
	while ((c = mi->idle) != NULL) {
		mi->idle = c->next;
		mapsock_conn_free(c);
		mi->nconn--;
	}
	pthread_cond_broadcast(&mi->cond);
	pthread_mutex_unlock(&mi->mutex);
}

/* After a send() or recv() that did nothing: 1 try again, or MAPSOCK_EOF / MAPSOCK_TIME. */
static int mapsock_again(int fd, ssize_t n, short events)
{
	int rc;

	if (n < 0 && errno == EINTR)
		return 1;
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		if ((rc = mapsock_wait(fd, events)) > 0)
			return 1;
		if (rc == 0)
			return MAPSOCK_TIME;
	}
	return MAPSOCK_EOF;
}

/* 0, or MAPSOCK_EOF / MAPSOCK_TIME. */
static int mapsock_write(struct mapsock_conn *c, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
		int rc;

		if (n > 0) {
			data += n;
			len -= (size_t)n;
		} else if ((rc = mapsock_again(c->fd, n, POLLOUT)) != 1) {
			return rc;
		}
	}
	return 0;
}

/* The next byte, or MAPSOCK_EOF / MAPSOCK_TIME. */
static int mapsock_getc(struct mapsock_conn *c)
{
	while (c->rpos >= c->rlen) {
		ssize_t n = recv(c->fd, c->rbuf, sizeof(c->rbuf), 0);
		int rc;

		if (n > 0) {
			c->rpos = 0;
			c->rlen = (size_t)n;
		} else if ((rc = mapsock_again(c->fd, n, POLLIN)) != 1) {
			return rc;
		}
	}
	return (unsigned char)c->rbuf[c->rpos++];
}

/* ---- socketmap ---- */

/* A netstring "len:data," of at most max bytes into out.  0 or MAPSOCK_*. */
static int mapsock_get_netstring(struct mapsock_conn *c, struct buf *out, size_t max)
{
	size_t len = 0;
	int ch, digits = 0;

	while ((ch = mapsock_getc(c)) != ':') {
		if (ch < 0)
			return ch;
		if (ch < '0' || ch > '9' || digits++ >= 9)
			return MAPSOCK_FORMAT;
		len = len * 10 + (size_t)(ch - '0');
	}
	if (digits == 0)
		return MAPSOCK_FORMAT;
	if (len > max)
		return MAPSOCK_SIZE;
	for (size_t i = 0; i < len; i++) {
		if ((ch = mapsock_getc(c)) < 0)
			return ch;
		buf_putc(out, (char)ch);
	}
	if ((ch = mapsock_getc(c)) < 0)
		return ch;
	return ch == ',' ? 0 : MAPSOCK_FORMAT;
}

/* One exchange on one connection: 0 with the reply in *reply, or MAPSOCK_*. */
static int mapsock_exchange(struct mapsock_conn *c, const struct buf *req, struct buf *reply)
{
	int rc = mapsock_write(c, req->data, req->len);

	if (rc != 0)
		return rc;
	buf_reset(reply);
	return mapsock_get_netstring(c, reply, MAPSOCK_MAX_REPLY);
}

static enum map_status sockmap_lookup(struct map_impl *mi, const char *key, char **value_r)
{
	struct buf req = BUF_INIT, reply = BUF_INIT, text = BUF_INIT;
	enum map_status st = MAP_FAIL;
	const char *status, *payload;
	char *sp, *copy = NULL;
	int rc = MAPSOCK_EOF;

	if (strlen(key) > MAPSOCK_MAX_QUERY) {
		char *e = log_escape_dup(key, 100);

		msg_warn("table %s query too large: '%s', returning 'not found'", mi->title, e);
		free(e);
		return MAP_NOTFOUND;
	}
	buf_printf(&text, "%s %s", mi->sockmap_name, key);
	buf_printf(&req, "%zu:", text.len);
	buf_append(&req, text.data, text.len);
	buf_putc(&req, ',');
	/* A connection the server closed is tried again once, on a new one. */
	for (int attempt = 0; attempt < 2; attempt++) {
		struct mapsock_conn *c = mapsock_acquire(mi, attempt > 0);

		if (c == NULL)
			goto out;
		rc = mapsock_exchange(c, &req, &reply);
		mapsock_release(mi, c, rc == 0);
		if (rc != MAPSOCK_EOF)
			break;
		mapsock_drop_idle(mi);
	}
	if (rc != 0) {
		msg_warn("table %s lookup error: %s", mi->title, mapsock_strerror(rc));
		goto out;
	}
	/* A NUL inside ends the text, as in Postfix. */
	status = copy = xstrdup(buf_str(&reply));
	sp = strchr(copy, ' ');
	payload = NULL;
	if (sp != NULL) {
		*sp = '\0';
		payload = sp + 1;
	}
	if (strcmp(status, "OK") == 0) {
		/* Postfix 3.7: "OK" without a value is "not found". */
		if (payload != NULL) {
			*value_r = xstrdup(payload);
			st = MAP_FOUND;
		} else {
			st = MAP_NOTFOUND;
		}
	} else if (strcmp(status, "NOTFOUND") == 0) {
		st = MAP_NOTFOUND;
	} else {
		const char *class = strcmp(status, "TEMP") == 0 ? "temporary"
				    : strcmp(status, "TIMEOUT") == 0 ? "timeout"
				    : strcmp(status, "PERM") == 0 ? "permanent" : "unknown";
		char *e;

		while (payload != NULL && (*payload == ' ' || *payload == '\t'))
			payload++;
		e = log_escape_dup(payload ? payload : "", MAPSOCK_LOG_MAX);
		msg_warn("%s socketmap server %s error%s%s", mi->title, class, *e ? ": " : "", e);
		free(e);
	}
out:
	free(copy);
	buf_free(&req);
	buf_free(&reply);
	buf_free(&text);
	return st;
}

/* ---- tcp ---- */

/* Postfix's hex_quote(): '%', white space and unprintable bytes as %XX. */
static void maptcp_quote(struct buf *b, const char *raw)
{
	for (const unsigned char *p = (const unsigned char *)raw; *p; p++) {
		if (*p != '%' && *p > ' ' && *p < 0x7f)
			buf_putc(b, (char)*p);
		else
			buf_printf(b, "%%%02X", *p);
	}
}

static int maptcp_hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Postfix's hex_unquote(): NULL on a bad %XX. */
static char *maptcp_unquote(const char *hex)
{
	struct buf b = BUF_INIT;
	char *r;

	for (const char *p = hex; *p; p++) {
		char ch = *p;

		if (ch == '%') {
			int hi = maptcp_hexval((unsigned char)p[1]);
			int lo = hi < 0 ? -1 : maptcp_hexval((unsigned char)p[2]);

			if (lo < 0) {
				buf_free(&b);
				return NULL;
			}
			ch = (char)(hi << 4 | lo);
			p += 2;
		}
		buf_putc(&b, ch);
	}
	r = xstrdup(buf_str(&b));
	buf_free(&b);
	return r;
}

/* One reply line without its newline: 0, MAPSOCK_EOF/TIME, or MAPSOCK_SIZE. */
static int maptcp_get_line(struct mapsock_conn *c, struct buf *line)
{
	buf_reset(line);
	for (size_t n = 0; n < MAPTCP_MAXLEN; n++) {
		int ch = mapsock_getc(c);

		if (ch < 0)
			return ch;
		if (ch == '\n')
			return 0;
		buf_putc(line, (char)ch);
	}
	return MAPSOCK_SIZE;
}

static enum map_status maptcp_lookup(struct map_impl *mi, const char *key, char **value_r)
{
	struct buf req = BUF_INIT, line = BUF_INIT;
	enum map_status st = MAP_FAIL;
	struct mapsock_conn *c = NULL;
	const char *s;
	char *e, *value = NULL;
	int rc = MAPSOCK_EOF;

	buf_puts(&req, "get ");
	maptcp_quote(&req, key);
	buf_puts(&req, "\n");
	for (int attempt = 0; attempt < 2; attempt++) {
		if ((c = mapsock_acquire(mi, attempt > 0)) == NULL)
			goto out;
		if ((rc = mapsock_write(c, req.data, req.len)) == 0)
			rc = maptcp_get_line(c, &line);
		if (rc == 0)
			break;
		mapsock_release(mi, c, false);
		c = NULL;
		mapsock_drop_idle(mi);
		if (rc != MAPSOCK_EOF)
			break;
	}
	if (rc != 0) {
		if (rc == MAPSOCK_SIZE)
			msg_warn("read TCP map reply from %s: text longer than %d", mi->endpoint,
				 MAPTCP_MAXLEN);
		else
			msg_warn("read TCP map reply from %s: unexpected EOF (%s)", mi->endpoint,
				 rc == MAPSOCK_TIME ? strerror(ETIMEDOUT) : "connection closed");
		goto out;
	}
	s = buf_str(&line);
	e = log_escape_dup(s, MAPSOCK_LOG_MAX);
	if (s[0] >= '0' && s[0] <= '9' && s[1] >= '0' && s[1] <= '9' && s[2] >= '0' && s[2] <= '9'
	    && (s[3] == ' ' || s[3] == '\t' || s[3] == '\n' || s[3] == '\v' || s[3] == '\f'
		|| s[3] == '\r'))
		value = maptcp_unquote(s + 4);
	if (value == NULL) {
		msg_warn("read TCP map reply from %s: malformed reply: %s", mi->endpoint, e);
	} else if (s[0] == '2') {
		*value_r = value;
		value = NULL;
		st = MAP_FOUND;
	} else if (s[0] == '5') {
		st = MAP_NOTFOUND;
	} else if (s[0] != '4') {
		msg_warn("read TCP map reply from %s: bad status code: %s", mi->endpoint, e);
	}
	free(e);
	free(value);
	/* Postfix keeps the connection after 2xx and 5xx only. */
	mapsock_release(mi, c, st != MAP_FAIL);
	c = NULL;
out:
	buf_free(&req);
	buf_free(&line);
	return st;
}

/* ---- open and close ---- */

static void mapsock_free(struct map_impl *mi)
{
	mapsock_drop_idle(mi);
	pthread_cond_destroy(&mi->cond);
	pthread_mutex_destroy(&mi->mutex);
	free(mi->title);
	free(mi->endpoint);
	free(mi->host);
	free(mi->port);
	free(mi->sockmap_name);
	free(mi);
}

/* "host:port" or "[host]:port" into mi->host, mi->port.  0 or -1. */
static int mapsock_parse_inet(struct map_impl *mi, const char *hp)
{
	const char *colon = strrchr(hp, ':');

	if (hp[0] == '[') {
		const char *close = strchr(hp, ']');

		if (close == NULL || close[1] != ':' || close == hp + 1)
			return -1;
		mi->host = xstrndup(hp + 1, (size_t)(close - hp - 1));
		colon = close + 1;
	} else {
		if (colon == NULL)
			return -1;
		mi->host = colon == hp ? xstrdup("localhost") : xstrndup(hp, (size_t)(colon - hp));
	}
	if (colon[1] == '\0')
		return -1;
	mi->port = xstrdup(colon + 1);
	mi->endpoint = xstrdup(hp);
	return 0;
}

static struct map_impl *mapsock_new(enum mapsock_kind kind, const char *title)
{
	struct map_impl *mi = xcalloc(1, sizeof(*mi));

	mi->kind = kind;
	mi->title = xstrdup(title);
	pthread_mutex_init(&mi->mutex, NULL);
	pthread_cond_init(&mi->cond, NULL);
	return mi;
}

static struct map_impl *sockmap_open(const char *name, char **why_r)
{
	char *title = xasprintf("socketmap:%s", name);
	struct map_impl *mi = mapsock_new(MAPSOCK_SOCKETMAP, title);
	const char *colon = strrchr(name, ':');
	char *server;

	free(title);
	if (colon == NULL || colon == name) {
		*why_r = xstrdup("socketmap requires server:socketmap argument");
		mapsock_free(mi);
		return NULL;
	}
	server = xstrndup(name, (size_t)(colon - name));
	mi->sockmap_name = xstrdup(colon + 1);
	if (strncmp(server, "unix:", 5) == 0 && server[5] != '\0') {
		mi->is_unix = true;
		mi->endpoint = xstrdup(server + 5);
		if (strlen(mi->endpoint) >= sizeof(((struct sockaddr_un *)0)->sun_path))
			*why_r = xasprintf("socket path too long: \"%s\"", mi->endpoint);
	} else if (strncmp(server, "inet:", 5) == 0) {
		if (mapsock_parse_inet(mi, server + 5) < 0)
			*why_r = xasprintf("need inet:host:port instead of \"%s\"", server);
	} else {
		/* Postfix also has local: (its own public/private sockets): not here. */
		*why_r = xasprintf("need service inet:host:port or unix:pathname instead of \"%s\"",
				   server);
	}
	free(server);
	if (*why_r != NULL) {
		mapsock_free(mi);
		return NULL;
	}
	return mi;
}

static struct map_impl *maptcp_open(const char *name, char **why_r)
{
	char *title = xasprintf("tcp:%s", name);
	struct map_impl *mi = mapsock_new(MAPSOCK_TCP, title);

	free(title);
	if (mapsock_parse_inet(mi, name) < 0) {
		*why_r = xasprintf("need host:port instead of \"%s\"", name);
		mapsock_free(mi);
		return NULL;
	}
	return mi;
}

static int mapsock_probe(struct map_impl *mi, char **why_r)
{
	char *why = NULL;
	struct mapsock_conn *c = mapsock_connect(mi, &why);

	if (c == NULL) {
		*why_r = xasprintf("connect to %s: %s", mi->endpoint, why);
		free(why);
		return -1;
	}
	mapsock_conn_free(c);
	return 0;
}

const struct map_type map_type_socketmap = {
	.name = "socketmap",
	.flags = MAPT_REMOTE | MAPT_NOFOLD | MAPT_PATTERN,
	.open = sockmap_open,
	.lookup = sockmap_lookup,
	.watch = NULL,
	.close = mapsock_free,
	.probe = mapsock_probe,
};

const struct map_type map_type_tcp = {
	.name = "tcp",
	.flags = MAPT_REMOTE | MAPT_NOFOLD | MAPT_PATTERN,
	.open = maptcp_open,
	.lookup = maptcp_lookup,
	.watch = NULL,
	.close = mapsock_free,
	.probe = mapsock_probe,
};
