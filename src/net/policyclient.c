/*
 * policyclient: check_policy_service's client on a worker's loop.  See
 * policyclient.h; the retry and warning rules follow Postfix 3.7's
 * attr_clnt_request() and auto_clnt.
 */
#include "net/policyclient.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <netinet/in.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "log/log.h"
#include "policy/policy.h"
#include "util/xalloc.h"

struct pc_conn;
struct pq;

/* One server endpoint: its idle connections and the queries waiting for one. */
struct pc_endpoint {
	char   *key;			/* "inet:host:port" / "unix:path" */
	struct pc_conn *idle;		/* idle connections, newest first */
	int	nconns;			/* open or opening */
	struct pq *wait_head, *wait_tail;
	struct pc_endpoint *next;
};

struct pcli {
	struct policy_client base;	/* first: what sessions see */
	struct event_base *eb;
	struct evdns_base *dns;
	struct pc_endpoint *endpoints;
};

enum cstate { C_RESOLVING, C_CONNECTING, C_SENDING, C_READING, C_IDLE };

struct pc_conn {
	struct pcli *c;
	struct pc_endpoint *ep;
	int	fd;
	enum cstate st;
	struct event *io;		/* the wait of the moment, with its timeout */
	struct event *idle_t, *ttl_t;
	struct evdns_getaddrinfo_request *gai;
	struct pq *q;			/* the request in flight */
	int	req_count;
	bool	expired;		/* max_ttl passed while busy */
	/* an answer of evdns_getaddrinfo() inside its own call, kept for conn_open() */
	bool	in_gai_call, gai_inline;
	int	gai_result;
	struct evutil_addrinfo *gai_res;
	/* unix: a full listen queue (EAGAIN) is tried again until the deadline */
	struct sockaddr_un sun;
	struct timeval connect_deadline;
	long	max_idle;
	struct pc_conn *next;		/* idle list */
};

struct pq {
	struct pcli *c;
	struct pc_endpoint *ep;
	/* the server's settings, copied: the policy may go before the answer does */
	char   *endpoint;		/* as logged */
	enum policy_transport transport;
	char   *host, *port, *path;
	long	timeout, retry_delay, max_idle, max_ttl;
	int	request_limit, try_limit;
	char   *request;
	size_t	req_len, sent;
	struct policy_parser pp;
	bool	got_bytes;
	policy_cb *cb;
	void   *ctx;
	int	tries;
	bool	waiting;		/* in ep's wait queue */
	struct pc_conn *conn;
	struct event *t;		/* the start and retry timer */
	struct pq *next;		/* wait queue */
};

static void pq_start(evutil_socket_t fd, short what, void *arg);
static void conn_unix_again(evutil_socket_t fd, short what, void *arg);
static void conn_io(evutil_socket_t fd, short what, void *arg);
static void conn_close(struct pc_conn **cp);
static void conn_send(struct pc_conn *k);

static struct timeval
tv_sec(long s)
{
	struct timeval tv = { s, 0 };

	return tv;
}

static struct pc_endpoint *
endpoint_get(struct pcli *c, const char *key)
{
	struct pc_endpoint *ep;

	for (ep = c->endpoints; ep; ep = ep->next)
		if (strcmp(ep->key, key) == 0)
			return ep;
	ep = xcalloc(1, sizeof(*ep));
	ep->key = xstrdup(key);
	ep->next = c->endpoints;
	c->endpoints = ep;
	return ep;
}

static void
pq_free(struct pq *q)
{
	if (q->t)
		event_free(q->t);
	policy_parser_free(&q->pp);
	free(q->endpoint);
	free(q->host);
	free(q->port);
	free(q->path);
	free(q->request);
	free(q);
}

static void
wait_remove(struct pq *q)
{
	struct pc_endpoint *ep = q->ep;
	struct pq **pp, *prev = NULL;

	if (!q->waiting)
		return;
	for (pp = &ep->wait_head; *pp; prev = *pp, pp = &(*pp)->next)
		if (*pp == q) {
			*pp = q->next;
			if (ep->wait_tail == q)
				ep->wait_tail = prev;
			break;
		}
	q->waiting = false;
	q->next = NULL;
}

/* A connection slot became free: the longest-waiting query goes on. */
static void
endpoint_wake(struct pc_endpoint *ep)
{
	struct pq *q = ep->wait_head;
	struct timeval zero = { 0, 0 };

	if (q == NULL)
		return;
	wait_remove(q);
	evtimer_add(q->t, &zero);
}

/* The answer (NULL: the server failed), once. */
static void
pq_deliver(struct pq *q, const char *action)
{
	policy_cb *cb = q->cb;

	q->cb = NULL;
	if (cb)
		cb(q->ctx, action);
	pq_free(q);
}

/*
 * attr_clnt_request()'s failure path: the warning, then another try after
 * retry_delay or the end.  err is the errno Postfix's %m would show.
 */
static void
pq_failed(struct pq *q, int err)
{
	struct timeval tv;

	if (q->conn) {
		q->conn->q = NULL;
		conn_close(&q->conn);
	}
	q->tries++;
	if ((q->try_limit > 0 && q->tries >= q->try_limit)
	    || (err && err != EPIPE && err != ENOENT && err != ECONNRESET))
		msg_warn("problem talking to server %s: %s", q->endpoint,
			 err ? strerror(err) : "Application error");	/* Postfix's %m of 0 */
	if (q->try_limit > 0 && q->tries >= q->try_limit) {
		pq_deliver(q, NULL);
		return;
	}
	tv = tv_sec(q->retry_delay);
	evtimer_add(q->t, &tv);
}

static void
conn_watch(struct pc_conn *k, short what, long timeout)
{
	struct timeval tv = tv_sec(timeout);

	event_del(k->io);
	event_assign(k->io, k->c->eb, k->fd, what, conn_io, k);
	event_add(k->io, timeout > 0 ? &tv : NULL);
}

static void
conn_close(struct pc_conn **cp)
{
	struct pc_conn *k = *cp;
	struct pc_endpoint *ep;
	struct pc_conn **pp;

	*cp = NULL;
	if (k == NULL)
		return;
	ep = k->ep;
	for (pp = &ep->idle; *pp; pp = &(*pp)->next)
		if (*pp == k) {
			*pp = k->next;
			break;
		}
	if (k->gai)
		evdns_getaddrinfo_cancel(k->gai);	/* its callback sees the cancel */
	event_free(k->io);
	if (k->idle_t)
		event_free(k->idle_t);
	if (k->ttl_t)
		event_free(k->ttl_t);
	if (k->fd >= 0)
		close(k->fd);
	ep->nconns--;
	if (k->gai) {
		/* freed by the resolver's callback */
		k->io = NULL;
		k->idle_t = k->ttl_t = NULL;
		k->fd = -1;
		k->ep = NULL;
	} else {
		free(k);
	}
	endpoint_wake(ep);
}

static void
conn_timer(evutil_socket_t fd, short what, void *arg)
{
	struct pc_conn *k = arg;

	(void)fd;
	(void)what;
	if (k->st == C_IDLE)
		conn_close(&k);
	else
		k->expired = true;
}

static void
conn_idle_timer(evutil_socket_t fd, short what, void *arg)
{
	struct pc_conn *k = arg;

	(void)fd;
	(void)what;
	if (k->st == C_IDLE)
		conn_close(&k);
}

/* The connection is up: max_ttl starts, the request goes out. */
static void
conn_connected(struct pc_conn *k)
{
	struct pq *q = k->q;
	struct timeval tv = tv_sec(q->max_ttl);

	k->ttl_t = evtimer_new(k->c->eb, conn_timer, k);
	k->idle_t = evtimer_new(k->c->eb, conn_idle_timer, k);
	if (q->max_ttl > 0)
		evtimer_add(k->ttl_t, &tv);
	conn_send(k);
}

static void
conn_connect_failed(struct pc_conn *k, int err)
{
	struct pq *q = k->q;

	msg_warn("connect to %s: %s", q->endpoint, strerror(err));
	pq_failed(q, err);
}

static void
conn_connect_addr(struct pc_conn *k, const struct sockaddr *sa, socklen_t len)
{
	struct pq *q = k->q;

	k->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (k->fd < 0) {
		conn_connect_failed(k, errno);
		return;
	}
	k->st = C_CONNECTING;
	if (connect(k->fd, sa, len) == 0) {
		conn_connected(k);
		return;
	}
	if (errno == EAGAIN && sa->sa_family == AF_UNIX) {
		/*
		 * The server's listen queue is full (a spawn service at maxproc):
		 * a unix socket does not connect later by itself, so try again
		 * every 100 ms until the timeout, as a blocking connect would wait.
		 */
		struct timeval now, tick = { 0, 100000 };

		close(k->fd);
		k->fd = -1;
		evutil_gettimeofday(&now, NULL);
		if (!evutil_timerisset(&k->connect_deadline)) {
			struct timeval t = tv_sec(q->timeout);

			evutil_timeradd(&now, &t, &k->connect_deadline);
		} else if (evutil_timercmp(&now, &k->connect_deadline, >=)) {
			conn_connect_failed(k, ETIMEDOUT);
			return;
		}
		k->st = C_CONNECTING;
		event_del(k->io);
		event_assign(k->io, k->c->eb, -1, 0, conn_unix_again, k);
		event_add(k->io, &tick);
		return;
	}
	if (errno == EINPROGRESS || errno == EAGAIN) {
		conn_watch(k, EV_WRITE, q->timeout);
		return;
	}
	conn_connect_failed(k, errno);
}

static void
conn_unix_again(evutil_socket_t fd, short what, void *arg)
{
	struct pc_conn *k = arg;

	(void)fd;
	(void)what;
	conn_connect_addr(k, (struct sockaddr *)&k->sun, sizeof(k->sun));
}

static void
conn_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
	struct pc_conn *k = arg;

	if (k->in_gai_call) {
		/* answered inside evdns_getaddrinfo(): conn_open() goes on with it */
		k->gai_inline = true;
		k->gai_result = result;
		k->gai_res = res;
		return;
	}
	k->gai = NULL;
	if (k->ep == NULL) {		/* closed while resolving */
		if (res)
			evutil_freeaddrinfo(res);
		free(k);
		return;
	}
	if (result != 0 || res == NULL) {
		struct pq *q = k->q;

		if (result == EVUTIL_EAI_CANCEL)
			return;
		msg_warn("connect to %s: %s", q->endpoint, "Host not found");
		pq_failed(q, 0);
		return;
	}
	conn_connect_addr(k, res->ai_addr, (socklen_t)res->ai_addrlen);
	evutil_freeaddrinfo(res);
}

static void
conn_open(struct pq *q)
{
	struct pc_conn *k = xcalloc(1, sizeof(*k));

	k->c = q->c;
	k->ep = q->ep;
	k->fd = -1;
	k->q = q;
	k->max_idle = q->max_idle;
	k->io = event_new(q->c->eb, -1, 0, conn_io, k);
	q->ep->nconns++;
	q->conn = k;
	if (q->transport == POLICY_UNIX) {
		k->sun.sun_family = AF_UNIX;
		if (strlen(q->path) >= sizeof(k->sun.sun_path)) {
			conn_connect_failed(k, ENAMETOOLONG);
			return;
		}
		memcpy(k->sun.sun_path, q->path, strlen(q->path) + 1);
		conn_connect_addr(k, (struct sockaddr *)&k->sun, sizeof(k->sun));
		return;
	}
	{
		struct evutil_addrinfo hints = { 0 }, *res = NULL;
		const char *host = q->host;

		if (strcmp(host, "localhost") == 0)
			host = "127.0.0.1";
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = EVUTIL_AI_NUMERICHOST | EVUTIL_AI_NUMERICSERV;
		if (evutil_getaddrinfo(host, q->port, &hints, &res) == 0 && res != NULL) {
			conn_connect_addr(k, res->ai_addr, (socklen_t)res->ai_addrlen);
			evutil_freeaddrinfo(res);
			return;
		}
		if (q->c->dns == NULL) {
			msg_warn("connect to %s: %s", q->endpoint, "Host not found");
			pq_failed(q, 0);
			return;
		}
		hints.ai_flags = EVUTIL_AI_ADDRCONFIG;
		k->st = C_RESOLVING;
		k->in_gai_call = true;
		k->gai = evdns_getaddrinfo(q->c->dns, host, q->port, &hints, conn_resolved, k);
		k->in_gai_call = false;
		if (k->gai_inline) {
			k->gai = NULL;
			conn_resolved(k->gai_result, k->gai_res, k);
		}
	}
}

/* A connection that is still good: nothing unasked waiting on it, no EOF. */
static bool
conn_alive(struct pc_conn *k)
{
	char	ch;
	ssize_t	n = recv(k->fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);

	return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static void
conn_send(struct pc_conn *k)
{
	struct pq *q = k->q;

	k->st = C_SENDING;
	while (q->sent < q->req_len) {
		ssize_t	n = send(k->fd, q->request + q->sent, q->req_len - q->sent, MSG_NOSIGNAL);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			conn_watch(k, EV_WRITE, q->timeout);
			return;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			pq_failed(q, errno);
			return;
		}
		q->sent += (size_t)n;
	}
	k->st = C_READING;
	conn_watch(k, EV_READ, q->timeout);
}

/* Where the answer stopped, as attr_scan_plain() names it. */
static const char *
reading_what(const struct pq *q)
{
	return q->pp.len > 0 && memchr(q->pp.line, '=', q->pp.len) ? "input attribute value"
	       : "input attribute name";
}

/* The answer is in: the callback, and the connection goes back to the pool. */
static void
conn_answered(struct pc_conn *k, bool leftover)
{
	struct pq *q = k->q;
	char   *action = q->pp.action;
	struct pc_endpoint *ep = k->ep;

	q->pp.action = NULL;
	q->conn = NULL;
	k->q = NULL;
	k->req_count++;
	if (leftover || k->expired || (q->request_limit > 0 && k->req_count >= q->request_limit)) {
		conn_close(&k);
	} else {
		struct timeval tv = tv_sec(k->max_idle);

		k->st = C_IDLE;
		conn_watch(k, EV_READ, 0);
		if (k->max_idle > 0)
			evtimer_add(k->idle_t, &tv);
		if (ep->wait_head != NULL) {
			/* a waiting query takes it now (its start timer finds it idle) */
			k->next = ep->idle;
			ep->idle = k;
			endpoint_wake(ep);
		} else {
			k->next = ep->idle;
			ep->idle = k;
		}
	}
	pq_deliver(q, action);
	free(action);
}

static void
conn_read(struct pc_conn *k)
{
	struct pq *q = k->q;
	char	data[4096];
	ssize_t	n = recv(k->fd, data, sizeof(data), 0);
	size_t	used;
	const char *why;
	enum policy_parse_status st;

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
		conn_watch(k, EV_READ, q->timeout);
		return;
	}
	if (n <= 0) {
		int	err = n < 0 ? errno : 0;

		if (q->got_bytes)
			msg_warn("premature end-of-input on %s while reading %s", q->endpoint,
				 reading_what(q));
		pq_failed(q, err);
		return;
	}
	q->got_bytes = true;
	st = policy_parse(&q->pp, data, (size_t)n, &used, &why);
	switch (st) {
	case POLICY_PARSE_MORE:
		conn_watch(k, EV_READ, q->timeout);
		return;
	case POLICY_PARSE_ERROR:
		msg_warn("%s from %s", why, q->endpoint);
		pq_failed(q, 0);
		return;
	case POLICY_PARSE_DONE:
		if (q->pp.action == NULL) {
			msg_warn("missing attribute action in input from %s", q->endpoint);
			pq_failed(q, 0);
			return;
		}
		conn_answered(k, used < (size_t)n);
		return;
	}
}

static void
conn_io(evutil_socket_t fd, short what, void *arg)
{
	struct pc_conn *k = arg;
	struct pq *q = k->q;

	(void)fd;
	if (k->st == C_IDLE) {
		/* the server closed it, or talks unasked: either way it is done */
		conn_close(&k);
		return;
	}
	if (what & EV_TIMEOUT) {
		if (k->st == C_CONNECTING) {
			conn_connect_failed(k, ETIMEDOUT);
			return;
		}
		if (k->st == C_READING && q->got_bytes)
			msg_warn("timeout on %s while reading %s", q->endpoint, reading_what(q));
		pq_failed(q, ETIMEDOUT);
		return;
	}
	switch (k->st) {
	case C_CONNECTING: {
		int	err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err != 0) {
			conn_connect_failed(k, err);
			return;
		}
		conn_connected(k);
		return;
	}
	case C_SENDING:
		conn_send(k);
		return;
	case C_READING:
		conn_read(k);
		return;
	default:
		return;
	}
}

/* Start (or retry) a query: an idle connection, a new one, or the wait queue. */
static void
pq_start(evutil_socket_t fd, short what, void *arg)
{
	struct pq *q = arg;
	struct pc_endpoint *ep = q->ep;
	struct pc_conn *k;

	(void)fd;
	(void)what;
	q->sent = 0;
	q->got_bytes = false;
	policy_parser_free(&q->pp);
	policy_parser_init(&q->pp);
	while ((k = ep->idle) != NULL) {
		ep->idle = k->next;
		k->next = NULL;
		if (!conn_alive(k)) {
			conn_close(&k);
			continue;
		}
		evtimer_del(k->idle_t);
		k->q = q;
		q->conn = k;
		conn_send(k);
		return;
	}
	if (ep->nconns >= POLICYCLIENT_MAX_CONNS) {
		q->waiting = true;
		if (ep->wait_tail)
			ep->wait_tail->next = q;
		else
			ep->wait_head = q;
		ep->wait_tail = q;
		return;
	}
	conn_open(q);
}

static struct policy_query *
pc_query(struct policy_client *pc, const struct policy_server *srv, const char *request,
	 policy_cb *cb, void *ctx)
{
	struct pcli *c = (struct pcli *)pc;
	struct pq *q = xcalloc(1, sizeof(*q));
	struct timeval zero = { 0, 0 };
	char   *key;

	q->c = c;
	q->endpoint = xstrdup(srv->endpoint);
	q->transport = srv->transport;
	q->host = srv->host ? xstrdup(srv->host) : NULL;
	q->port = srv->port ? xstrdup(srv->port) : NULL;
	q->path = srv->path ? xstrdup(srv->path) : NULL;
	q->timeout = srv->timeout;
	q->retry_delay = srv->retry_delay;
	q->max_idle = srv->max_idle;
	q->max_ttl = srv->max_ttl;
	q->request_limit = srv->request_limit;
	q->try_limit = srv->try_limit;
	q->request = xstrdup(request);
	q->req_len = strlen(request);
	q->cb = cb;
	q->ctx = ctx;
	policy_parser_init(&q->pp);
	key = srv->transport == POLICY_UNIX ? xasprintf("unix:%s", srv->path)
	      : xasprintf("inet:%s:%s", srv->host, srv->port);
	q->ep = endpoint_get(c, key);
	free(key);
	q->t = evtimer_new(c->eb, pq_start, q);
	evtimer_add(q->t, &zero);	/* never inside query() */
	return (struct policy_query *)q;
}

static void
pc_cancel(struct policy_query *pqh)
{
	struct pq *q = (struct pq *)pqh;

	if (q == NULL || q->cb == NULL)
		return;		/* being delivered */
	wait_remove(q);
	if (q->conn) {
		q->conn->q = NULL;
		conn_close(&q->conn);
	}
	pq_free(q);
}

static const struct policy_client_ops pc_ops = { pc_query, pc_cancel };

struct policy_client *
policyclient_new(struct event_base *base, struct evdns_base *dns)
{
	struct pcli *c = xcalloc(1, sizeof(*c));

	c->base.ops = &pc_ops;
	c->eb = base;
	c->dns = dns;
	return &c->base;
}

void
policyclient_free(struct policy_client **pcp)
{
	struct pcli *c = (struct pcli *)*pcp;
	struct pc_endpoint *ep, *next;

	*pcp = NULL;
	if (c == NULL)
		return;
	for (ep = c->endpoints; ep; ep = next) {
		next = ep->next;
		while (ep->wait_head) {
			struct pq *q = ep->wait_head;

			wait_remove(q);
			pq_free(q);
		}
		while (ep->idle) {
			struct pc_conn *k = ep->idle;

			conn_close(&k);
		}
		free(ep->key);
		free(ep);
	}
	free(c);
}
