/*
 * conn: an accepted socket, from accept to close.  See conn.h.
 *
 *   conn_start ─► indexed tables changed? (lookups pool, only when the
 *                 service has an indexed table; new service data if so)
 *              ─► transport + session ─► client name (PTR + forward, evdns)
 *              ─► session_start (greeting, anvil, banner) ... QUIT
 *              ─► transport closed ─► conn_free (posted: a safe point)
 */
#include "smtp/conn.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"
#include "net/peername.h"
#include "net/server.h"
#include "policy/restrict.h"
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
};

static void
conn_free(struct conn *c)
{
	struct conn **head = worker_conns(c->w);

	server_service_check_cancel(c->check);
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

/* The service data is current: build the session and look the client's name up. */
static void
conn_begin(struct conn *c)
{
	struct sockaddr_storage local;
	socklen_t llen = sizeof(local);
	int	have_local = getsockname(c->fd, (struct sockaddr *)&local, &llen) == 0;

	c->tp = transport_new(worker_base(c->w), c->fd, conn_closed, c);
	c->fd = -1;	/* the transport owns it now */
	c->s = session_new(worker_session_env(c->w), c->ss, &transport_io, c->tp,
			   &c->sa.sa, c->salen);
	if (have_local)
		session_set_server(c->s, (struct sockaddr *)&local);
	transport_attach(c->tp, c->s);
	if (conf_bool(c->ss->cf, P_smtpd_peername_lookup))
		c->lookup = peername_lookup(worker_dns(c->w), &c->sa.sa,
					    conn_named, c);
	else
		conn_named(c, "unknown", "unknown", RESTRICT_PEER_PERM, RESTRICT_PEER_PERM);
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
