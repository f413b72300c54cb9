/*
 * resolver: util/dns.h's resolver on libevent.  See resolver.h.
 */
#include "net/resolver.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/event.h>

#include "log/log.h"
#include "util/loop.h"
#include "util/xalloc.h"

#define RESOLVER_MAXNS		3	/* glibc's MAXNS */
#define RESOLVER_TIMEOUT	5	/* glibc's RES_TIMEOUT */
#define RESOLVER_MAXTIMEOUT	30	/* RES_MAXRETRANS */
#define RESOLVER_ATTEMPTS	2	/* RES_DFLRETRY */
#define RESOLVER_MAXATTEMPTS	5	/* RES_MAXRETRY */
#define RESOLVER_QUERY_MAX	512
#define RESOLVER_UDP_MAX	4096
#define RESOLVER_READS		16	/* datagrams read per wake-up */

struct resolver {
	struct dns_client client;	/* first: a dns_client * is a resolver * */
	struct event_base *base;
	struct loop *loop;
	struct sockaddr_storage ns[RESOLVER_MAXNS];
	socklen_t nslen[RESOLVER_MAXNS];
	int	nns;
	int	timeout;		/* seconds per try */
	int	attempts;
	struct dns_query *head;		/* running queries */
};

struct dns_query {
	struct resolver *r;
	struct dns_query *prev, *next;
	dns_cb *cb;
	void   *ctx;
	int	type;
	char   *name;			/* asked now (a CNAME's target after a re-ask) */
	int	cnames;			/* re-asks done */
	int	try;			/* 0 .. attempts * nns - 1 */
	int	refused;		/* tries that ended in ICMP unreachable */
	bool	timed_out;		/* a try ran out of time */
	uint16_t id;
	unsigned char q[RESOLVER_QUERY_MAX + 2];	/* 2: the TCP length prefix */
	size_t	qlen;
	int	fd;
	struct event *ev;
	/* TCP */
	bool	tcp;
	size_t	sent;
	unsigned char lenbuf[2];
	unsigned char *rbuf;
	size_t	rwant, rgot;
	/* timers */
	struct loop_timer *try_timer, *deadline, *later;
	bool	have_last;		/* last: a SERVFAIL/NOTIMP/REFUSED answer */
	struct dns_answer last;
	struct dns_answer result;	/* for "later" */
};

static void resolver_start_try(struct dns_query *q);

/* ---- configuration -------------------------------------------------------- */

static int
resolver_add_ns(struct resolver *r, const char *addr)
{
	struct addrinfo hints, *res;

	if (r->nns >= RESOLVER_MAXNS)
		return 0;
	memset(&hints, 0, sizeof(hints));
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	hints.ai_socktype = SOCK_DGRAM;
	if (getaddrinfo(addr, "53", &hints, &res) != 0)
		return -1;
	if (res->ai_addrlen <= sizeof(r->ns[0])) {
		memcpy(&r->ns[r->nns], res->ai_addr, res->ai_addrlen);
		r->nslen[r->nns++] = res->ai_addrlen;
	}
	freeaddrinfo(res);
	return 0;
}

static void
resolver_read_conf(struct resolver *r, const char *path)
{
	FILE   *fp = fopen(path, "r");
	char	line[1024];

	r->timeout = RESOLVER_TIMEOUT;
	r->attempts = RESOLVER_ATTEMPTS;
	while (fp != NULL && fgets(line, sizeof(line), fp) != NULL) {
		char   *save, *word = strtok_r(line, " \t\r\n", &save);

		if (word == NULL || *word == '#' || *word == ';')
			continue;
		if (strcmp(word, "nameserver") == 0) {
			if ((word = strtok_r(NULL, " \t\r\n", &save)) != NULL
			    && resolver_add_ns(r, word) < 0)
				msg_warn("%s: bad nameserver address: %s", path, word);
		} else if (strcmp(word, "options") == 0) {
			while ((word = strtok_r(NULL, " \t\r\n", &save)) != NULL) {
				if (strncmp(word, "timeout:", 8) == 0) {
					r->timeout = atoi(word + 8);
					if (r->timeout < 1)
						r->timeout = 1;	/* glibc waits at least 1 s */
					if (r->timeout > RESOLVER_MAXTIMEOUT)
						r->timeout = RESOLVER_MAXTIMEOUT;
				} else if (strncmp(word, "attempts:", 9) == 0) {
					r->attempts = atoi(word + 9);
					if (r->attempts < 1)
						r->attempts = 1;
					if (r->attempts > RESOLVER_MAXATTEMPTS)
						r->attempts = RESOLVER_MAXATTEMPTS;
				}
			}
		}
	}
	if (fp != NULL)
		fclose(fp);
	if (r->nns == 0)
		(void)resolver_add_ns(r, "127.0.0.1");	/* as glibc without servers */
}

/* ---- one query -------------------------------------------------------------- */

static uint16_t
resolver_random_id(void)
{
	uint16_t id;

	if (getrandom(&id, sizeof(id), GRND_NONBLOCK) != (ssize_t)sizeof(id)) {
		struct timeval tv;

		gettimeofday(&tv, NULL);
		id = (uint16_t)(random() ^ tv.tv_usec ^ getpid());
	}
	return id;
}

/* Close the socket of the current try, and stop its timer. */
static void
resolver_io_stop(struct dns_query *q)
{
	if (q->ev != NULL) {
		event_free(q->ev);
		q->ev = NULL;
	}
	if (q->fd >= 0) {
		close(q->fd);
		q->fd = -1;
	}
	free(q->rbuf);
	q->rbuf = NULL;
	q->tcp = false;
	loop_timer_stop(q->r->loop, q->try_timer);
}

/* Unlink and free q, with everything it holds; the callback does not run. */
static void
resolver_query_free(struct dns_query *q)
{
	struct resolver *r = q->r;

	if (q->prev)
		q->prev->next = q->next;
	else
		r->head = q->next;
	if (q->next)
		q->next->prev = q->prev;
	resolver_io_stop(q);
	loop_timer_free(r->loop, &q->try_timer);
	loop_timer_free(r->loop, &q->deadline);
	loop_timer_free(r->loop, &q->later);
	dns_answer_free(&q->last);
	dns_answer_free(&q->result);
	free(q->name);
	free(q);
}

/* The end: a goes to the callback (and is freed), then q is. */
static void
resolver_finish(struct dns_query *q, struct dns_answer *a)
{
	dns_cb *cb = q->cb;
	void   *ctx = q->ctx;
	struct dns_answer ans = *a;

	memset(a, 0, sizeof(*a));
	resolver_query_free(q);
	cb(ctx, &ans);
	dns_answer_free(&ans);
}

static void
resolver_finish_status(struct dns_query *q, enum dns_status status, const char *error)
{
	struct dns_answer a;

	memset(&a, 0, sizeof(a));
	a.status = status;
	a.error = error ? xstrdup(error) : NULL;
	resolver_finish(q, &a);
}

/* Every try done: the last "try the next server" answer, or a timeout. */
static void
resolver_give_up(struct dns_query *q)
{
	if (q->have_last) {
		q->have_last = false;
		resolver_finish(q, &q->last);
	} else if (!q->timed_out && q->refused > 0) {
		resolver_finish_status(q, DNS_RETRY, "connection refused");
	} else if (!q->timed_out) {
		resolver_finish_status(q, DNS_RETRY, "no name server reachable");
	} else {
		resolver_finish_status(q, DNS_RETRY, "timeout");
	}
}

static void
resolver_next_try(struct dns_query *q)
{
	resolver_io_stop(q);
	q->try++;
	resolver_start_try(q);
}

/* A reply to this query (parsed into a): the answer, or on to the next server. */
static void
resolver_answer(struct dns_query *q, struct dns_answer *a)
{
	/* glibc's res_send() moves on after these, keeping the last */
	if (a->status == DNS_RETRY && (a->rcode == 2 || a->rcode == 4 || a->rcode == 5)) {
		dns_answer_free(&q->last);
		q->last = *a;
		q->have_last = true;
		resolver_next_try(q);
		return;
	}
	if (a->status == DNS_NOTFOUND && a->cname != NULL) {
		if (q->cnames >= RESOLVER_CNAME_MAX) {
			free(a->cname);
			a->cname = NULL;
			free(a->error);
			a->error = xasprintf("Name server loop for %s", q->name);
			resolver_finish(q, a);
			return;
		}
		q->cnames++;
		free(q->name);
		q->name = a->cname;
		a->cname = NULL;
		dns_answer_free(a);
		resolver_io_stop(q);
		q->try = 0;
		q->refused = 0;
		q->timed_out = false;
		dns_answer_free(&q->last);
		q->have_last = false;
		resolver_start_try(q);
		return;
	}
	resolver_finish(q, a);
}

static void
resolver_tcp_read(struct dns_query *q)
{
	struct dns_answer a;
	int	i;

	for (i = 0; i < RESOLVER_READS; i++) {
		ssize_t n;

		if (q->rbuf == NULL)
			n = read(q->fd, q->lenbuf + q->rgot, 2 - q->rgot);
		else
			n = read(q->fd, q->rbuf + q->rgot, q->rwant - q->rgot);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			resolver_next_try(q);
			return;
		}
		q->rgot += (size_t)n;
		if (q->rbuf == NULL) {
			if (q->rgot < 2)
				continue;
			q->rwant = (size_t)(q->lenbuf[0] << 8 | q->lenbuf[1]);
			if (q->rwant == 0) {
				resolver_next_try(q);
				return;
			}
			q->rbuf = xmalloc(q->rwant);
			q->rgot = 0;
			continue;
		}
		if (q->rgot < q->rwant)
			continue;
		/* over TCP the reply is what there is: TC set means nothing more */
		if (q->rwant > 2)
			q->rbuf[2] &= (unsigned char)~0x02;
		if (dns_parse_reply(q->rbuf, q->rwant, q->id, q->name, q->type, &a) != 1) {
			dns_answer_free(&a);
			resolver_next_try(q);	/* not our reply: this server is broken */
			return;
		}
		resolver_answer(q, &a);
		return;
	}
}

static void
resolver_tcp_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_query *q = arg;

	if (q->sent < q->qlen + 2) {
		int	err = 0;
		socklen_t elen = sizeof(err);
		ssize_t n;

		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err != 0) {
			resolver_next_try(q);
			return;
		}
		n = send(fd, q->q + q->sent, q->qlen + 2 - q->sent, MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			resolver_next_try(q);
			return;
		}
		q->sent += (size_t)n;
		if (q->sent < q->qlen + 2)
			return;
		event_free(q->ev);
		q->ev = event_new(q->r->base, q->fd, EV_READ | EV_PERSIST, resolver_tcp_cb, q);
		if (q->ev == NULL)
			msg_fatal("resolver: cannot create an event");
		event_add(q->ev, NULL);
		return;
	}
	(void)what;
	resolver_tcp_read(q);
}

/* TC: the same question to the same server over TCP, with a new timeout. */
static void
resolver_start_tcp(struct dns_query *q)
{
	struct resolver *r = q->r;
	int	srv = q->try % r->nns;

	resolver_io_stop(q);
	q->tcp = true;
	q->sent = 0;
	q->rgot = 0;
	q->fd = socket(r->ns[srv].ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (q->fd < 0 || (connect(q->fd, (struct sockaddr *)&r->ns[srv], r->nslen[srv]) < 0
			  && errno != EINPROGRESS)) {
		resolver_next_try(q);
		return;
	}
	/* the query with its 2-byte length in front (RFC 1035 4.2.2) */
	memmove(q->q + 2, q->q, q->qlen);
	q->q[0] = (unsigned char)(q->qlen >> 8);
	q->q[1] = (unsigned char)q->qlen;
	q->ev = event_new(r->base, q->fd, EV_WRITE | EV_PERSIST, resolver_tcp_cb, q);
	if (q->ev == NULL)
		msg_fatal("resolver: cannot create an event");
	event_add(q->ev, NULL);
	loop_timer_set(r->loop, q->try_timer, r->timeout * 1000L);
}

static void
resolver_udp_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_query *q = arg;
	unsigned char buf[RESOLVER_UDP_MAX];
	struct dns_answer a;
	int	i, ret;

	(void)what;
	for (i = 0; i < RESOLVER_READS; i++) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_TRUNC);

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			/* ICMP port or host unreachable: nobody answers there */
			q->refused++;
			resolver_next_try(q);
			return;
		}
		if ((size_t)n > sizeof(buf)) {
			/* more than we take over UDP: as TC, if it is ours */
			if (n >= 4 && (buf[0] << 8 | buf[1]) == q->id) {
				resolver_start_tcp(q);
				return;
			}
			continue;
		}
		ret = dns_parse_reply(buf, (size_t)n, q->id, q->name, q->type, &a);
		if (ret == 0) {
			dns_answer_free(&a);
			continue;	/* not ours: keep waiting */
		}
		if (ret < 0) {
			dns_answer_free(&a);
			resolver_start_tcp(q);
			return;
		}
		resolver_answer(q, &a);
		return;
	}
}

/* Try number q->try: its server, a new socket and id, the query, the timer. */
static void
resolver_start_try(struct dns_query *q)
{
	struct resolver *r = q->r;

	for (; q->try < r->attempts * r->nns; q->try++) {
		int	srv = q->try % r->nns, len;

		q->id = resolver_random_id();
		len = dns_build_query(q->id, q->name, q->type, q->q, RESOLVER_QUERY_MAX);
		if (len < 0) {
			char   *why = xasprintf("Name service error for %s: invalid host or domain name",
						q->name);

			resolver_finish_status(q, DNS_NOTFOUND, why);
			free(why);
			return;
		}
		q->qlen = (size_t)len;
		q->fd = socket(r->ns[srv].ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (q->fd < 0) {
			msg_warn("resolver: socket: %s", strerror(errno));
			continue;
		}
		if (connect(q->fd, (struct sockaddr *)&r->ns[srv], r->nslen[srv]) < 0
		    || send(q->fd, q->q, q->qlen, 0) < 0) {
			if (errno == ECONNREFUSED)
				q->refused++;
			close(q->fd);
			q->fd = -1;
			continue;
		}
		q->ev = event_new(r->base, q->fd, EV_READ | EV_PERSIST, resolver_udp_cb, q);
		if (q->ev == NULL)
			msg_fatal("resolver: cannot create an event");
		event_add(q->ev, NULL);
		loop_timer_set(r->loop, q->try_timer, r->timeout * 1000L);
		return;
	}
	resolver_give_up(q);
}

static void
resolver_try_timeout(void *arg)
{
	struct dns_query *q = arg;

	q->timed_out = true;
	resolver_next_try(q);
}

static void
resolver_deadline(void *arg)
{
	resolver_finish_status(arg, DNS_RETRY, "timeout");
}

static void
resolver_later(void *arg)
{
	struct dns_query *q = arg;

	resolver_finish(q, &q->result);
}

static void
resolver_first_try(void *arg)
{
	resolver_start_try(arg);
}

static struct dns_query *
resolver_query(struct dns_client *c, const char *name, int type, dns_cb *cb, void *ctx)
{
	struct resolver *r = (struct resolver *)c;
	struct dns_query *q = xcalloc(1, sizeof(*q));

	q->r = r;
	q->cb = cb;
	q->ctx = ctx;
	q->type = type;
	q->name = xstrdup(name);
	q->fd = -1;
	q->next = r->head;
	if (r->head)
		r->head->prev = q;
	r->head = q;
	q->try_timer = loop_timer_new(r->loop, resolver_try_timeout, q);
	loop_timer_start(r->loop, &q->deadline, resolver_deadline, q,
			 r->timeout * 1000L * (r->attempts * r->nns + 1));
	/* A name that cannot be asked answers at the next turn (not inside this call). */
	if (dns_build_query(0, name, type, q->q, RESOLVER_QUERY_MAX) < 0) {
		q->result.status = DNS_NOTFOUND;
		q->result.error = xasprintf("Name service error for %s: invalid host or domain name",
					    name);
		loop_timer_start(r->loop, &q->later, resolver_later, q, 0);
		return q;
	}
	/*
	 * resolver_start_try() may give up at once (no socket for any
	 * server), which would call back inside this call: start it from a
	 * zero timer instead.
	 */
	loop_timer_start(r->loop, &q->later, resolver_first_try, q, 0);
	return q;
}

static void
resolver_cancel(struct dns_query *q)
{
	if (q != NULL)
		resolver_query_free(q);
}

static const struct dns_client_ops resolver_ops = {
	.query = resolver_query,
	.cancel = resolver_cancel,
};

struct dns_client *
resolver_new_conf(struct event_base *base, struct loop *loop, const char *path)
{
	struct resolver *r = xcalloc(1, sizeof(*r));

	r->client.ops = &resolver_ops;
	r->base = base;
	r->loop = loop;
	resolver_read_conf(r, path);
	return &r->client;
}

struct dns_client *
resolver_new(struct event_base *base, struct loop *loop)
{
	return resolver_new_conf(base, loop, "/etc/resolv.conf");
}

void
resolver_free(struct dns_client **cp)
{
	struct resolver *r;

	if (*cp == NULL)
		return;
	r = (struct resolver *)*cp;
	while (r->head != NULL)
		resolver_query_free(r->head);
	free(r);
	*cp = NULL;
}
