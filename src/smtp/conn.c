/*
 * conn: an accepted socket, from accept to close.  See conn.h.
 *
 *   conn_start ─► indexed tables changed? (lookups pool, only when the
 *                 service has an indexed table; new service data if so)
 *              ─► PROXY header (smtpd_upstream_proxy_protocol = haproxy:
 *                 read on the loop, bounded by smtpd_upstream_proxy_timeout;
 *                 the client address it gives replaces the socket's)
 *              ─► transport + session ─► client name (PTR + forward, evdns)
 *              ─► session_start (greeting, anvil, banner) ... QUIT
 *              ─► transport closed ─► conn_free (posted: a safe point)
 */
#include "smtp/conn.h"

#include <sys/socket.h>
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "conf/conf.h"
#include "net/peername.h"
#include "net/server.h"
#include "log/log.h"
#include "policy/restrict.h"
#include "smtp/proxy.h"
#include "smtp/service.h"
#include "smtp/session.h"
#include "smtp/transport.h"
#include "util/loop.h"
#include "util/xalloc.h"

struct conn {
	struct conn *next, *prev;	/* the worker's list */
	struct worker *w;
	struct service_rt *svc;
	struct service_gen *gen;	/* keeps ss alive */
	const struct smtp_service *ss;
	int	fd;
	union session_addr sa;
	socklen_t salen;
	struct service_check *check;
	struct peername_req *lookup;
	struct transport *tp;
	struct session *s;
	struct loop_timer *free_t;	/* frees the connection at a safe point */
	/* the PROXY header, while it is read */
	struct event *proxy_ev;
	unsigned char proxy_buf[PROXY_HEADER_MAX];
	size_t	proxy_len;	/* bytes consumed from the socket so far */
	int	proxy_failed;	/* bad header, EOF or timeout: 421 after "connect from" */
	int	have_server;	/* server: the header's server endpoint */
	struct timeval proxy_deadline;	/* smtpd_upstream_proxy_timeout after accept */
	union session_addr server;
};

static void
conn_free(struct conn *c)
{
	struct conn **head = worker_conns(c->w);

	server_service_check_cancel(c->check);
	if (c->proxy_ev != NULL)
		event_free(c->proxy_ev);
	peername_cancel(c->lookup);
	session_free(&c->s);
	transport_free(&c->tp);
	if (c->fd >= 0)
		close(c->fd);
	loop_timer_free(worker_loop(c->w), &c->free_t);
	if (c->prev)
		c->prev->next = c->next;
	else
		*head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	server_session_ended(c->w, c->svc);
	server_service_release(c->gen);
	free(c);
}

static void
conn_free_cb(void *arg)
{
	conn_free(arg);
}

/* The transport has sent what it could and closed: free everything soon. */
static void
conn_closed(void *arg)
{
	struct conn *c = arg;

	loop_timer_start(worker_loop(c->w), &c->free_t, conn_free_cb, c, 0);
}

static void
conn_named(void *ctx, const char *name, const char *reverse, int name_status,
	   int reverse_status)
{
	struct conn *c = ctx;

	c->lookup = NULL;
	session_start(c->s, name, reverse, name_status, reverse_status);
}

/* Build the session and look the client's name up. */
static void
conn_session(struct conn *c)
{
	struct sockaddr_storage local;
	socklen_t llen = sizeof(local);
	int	have_local = getsockname(c->fd, (struct sockaddr *)&local, &llen) == 0;

	c->tp = transport_new(worker_base(c->w), c->fd, conn_closed, c);
	c->fd = -1;	/* the transport owns it now */
	c->s = session_new(worker_session_env(c->w), c->ss, &transport_io, c->tp,
			   &c->sa.sa, c->salen);
	if (c->have_server)
		session_set_server(c->s, &c->server.sa);
	else if (have_local)
		session_set_server(c->s, (struct sockaddr *)&local);
	if (c->proxy_failed)
		session_set_local_error(c->s);
	transport_attach(c->tp, c->s);
	if (conf_bool(c->ss->cf, P_smtpd_peername_lookup))
		c->lookup = peername_lookup(worker_dns(c->w), &c->sa.sa,
					    conn_named, c);
	else
		conn_named(c, "unknown", "unknown", RESTRICT_PEER_PERM, RESTRICT_PEER_PERM);
}

/* addr/port (numeric) into sa; 0 or -1. */
static int
conn_sockaddr(const char *addr, const char *port, union session_addr *sa, socklen_t *len_r)
{
	struct addrinfo hints, *res = NULL;

	memset(&hints, 0, sizeof(hints));
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(addr, port, &hints, &res) != 0 || res == NULL
	    || res->ai_addrlen > sizeof(*sa)) {
		if (res)
			freeaddrinfo(res);
		return -1;
	}
	memset(sa, 0, sizeof(*sa));
	memcpy(sa, res->ai_addr, res->ai_addrlen);
	if (len_r)
		*len_r = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

/* The header is read (or not): on to the session. */
static void
conn_proxy_done(struct conn *c, int ok, const struct proxy_result *r)
{
	event_free(c->proxy_ev);
	c->proxy_ev = NULL;
	if (!ok) {
		c->proxy_failed = 1;
	} else if (!r->local) {
		union session_addr sa;
		socklen_t len;

		if (conn_sockaddr(r->client_addr, r->client_port, &sa, &len) == 0) {
			c->sa = sa;
			c->salen = len;
		}
		c->have_server = conn_sockaddr(r->server_addr, r->server_port, &c->server,
					       NULL) == 0;
	}
	conn_session(c);
}

static void
conn_proxy_fail(struct conn *c, const char *why, const unsigned char *buf, size_t len)
{
	struct buf b = BUF_INIT;

	proxy_escape(&b, buf, len);
	msg_warn("haproxy read: %s: %s", why, buf_str(&b));
	buf_free(&b);
	conn_proxy_done(c, 0, NULL);
}

/* Wait for more of the header, until the deadline (one bound for all of it). */
static void
conn_proxy_wait(struct conn *c)
{
	struct timeval now, left;

	evutil_gettimeofday(&now, NULL);
	if (evutil_timercmp(&now, &c->proxy_deadline, >=))
		evutil_timerclear(&left);
	else
		evutil_timersub(&c->proxy_deadline, &now, &left);
	event_add(c->proxy_ev, &left);
}

/*
 * Readable (or the timeout).  Like Postfix, never read past the header: peek,
 * parse what has come with what was consumed before, then take exactly the
 * header's bytes, or everything peeked when the header is not complete yet
 * (so that a level-triggered wake-up does not spin on the same bytes).
 */
static void
conn_proxy_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	unsigned char all[PROXY_HEADER_MAX];
	size_t	room = sizeof(c->proxy_buf) - c->proxy_len;
	struct proxy_result r;
	const char *why;
	ssize_t	n;
	enum proxy_status st;

	if (what & EV_TIMEOUT) {
		msg_warn("haproxy read: timeout error");
		conn_proxy_done(c, 0, NULL);
		return;
	}
	memcpy(all, c->proxy_buf, c->proxy_len);
	n = recv(fd, all + c->proxy_len, room, MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
		conn_proxy_wait(c);
		return;
	}
	if (n <= 0) {
		if (c->proxy_len == 0) {
			if (n < 0)
				msg_warn("haproxy read: %s", strerror(errno));
			else
				msg_warn("haproxy read: EOF");
			conn_proxy_done(c, 0, NULL);
			return;
		}
		st = proxy_parse(all, c->proxy_len, 1, &r, &why);
		if (st == PROXY_DONE)	/* cannot be: it was not complete before */
			why = "missing protocol header terminator";
		conn_proxy_fail(c, why, all, c->proxy_len);
		return;
	}
	st = proxy_parse(all, c->proxy_len + (size_t)n, 0, &r, &why);
	if (st == PROXY_ERROR) {
		conn_proxy_fail(c, why, all, c->proxy_len + (size_t)n);
		return;
	}
	/* take the header's bytes (DONE) or all that came (MORE) off the socket */
	{
		size_t	take = st == PROXY_DONE ? r.len - c->proxy_len : (size_t)n;

		if (recv(fd, c->proxy_buf + c->proxy_len, take, 0) != (ssize_t)take) {
			msg_warn("haproxy read: %s", strerror(errno));
			conn_proxy_done(c, 0, NULL);
			return;
		}
		c->proxy_len += take;
	}
	if (st == PROXY_DONE) {
		conn_proxy_done(c, 1, &r);
		return;
	}
	conn_proxy_wait(c);
}

/* The service data is current: read the PROXY header first if the service wants it. */
static void
conn_begin(struct conn *c)
{
	struct timeval tv, now;

	if (strcmp(conf_str(c->ss->cf, P_smtpd_upstream_proxy_protocol), "haproxy") != 0) {
		conn_session(c);
		return;
	}
	tv.tv_sec = conf_time(c->ss->cf, P_smtpd_upstream_proxy_timeout);
	tv.tv_usec = 0;
	evutil_gettimeofday(&now, NULL);
	evutil_timeradd(&now, &tv, &c->proxy_deadline);
	c->proxy_ev = event_new(worker_base(c->w), c->fd, EV_READ, conn_proxy_cb, c);
	event_add(c->proxy_ev, &tv);
}

/* The indexed tables were checked; new data may have been published meanwhile. */
static void
conn_checked(void *ctx)
{
	struct conn *c = ctx;
	struct service_gen *old = c->gen;

	c->check = NULL;
	c->ss = server_service_acquire(c->svc, &c->gen);
	server_service_release(old);
	conn_begin(c);
}

void
conn_start(struct worker *w, struct service_rt *svc, int fd, const struct sockaddr *sa,
	   socklen_t salen)
{
	struct conn *c = xcalloc(1, sizeof(*c));
	struct conn **head = worker_conns(w);

	c->w = w;
	c->svc = svc;
	c->fd = fd;
	memcpy(&c->sa, sa, salen < sizeof(c->sa) ? salen : sizeof(c->sa));
	c->salen = salen;
	c->next = *head;
	if (*head)
		(*head)->prev = c;
	*head = c;
	c->ss = server_service_acquire(svc, &c->gen);
	if ((c->check = server_service_check(w, svc, c->gen, conn_checked, c)) == NULL)
		conn_begin(c);
}

void
conn_free_all(struct worker *w)
{
	struct conn **head = worker_conns(w);

	while (*head != NULL)
		conn_free(*head);
}
