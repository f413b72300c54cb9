#include "net/server.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "conf/conf.h"
#include "deliver/pool.h"
#include "policy/anvil.h"
#include "log/log.h"
#include "net/peername.h"
#include "smtp/service.h"
#include "smtp/session.h"
#include "util/xalloc.h"
#include "version.h"

struct worker_handoff {
	struct worker_handoff *next;
	struct service_rt *svc;
	int	fd;
	socklen_t salen;
	struct sockaddr_storage sa;
};

/* At most this many accept() calls per wake-up, so one flood cannot starve the loop. */
#define SERVER_ACCEPT_BATCH	32

static struct server *server_signal_target;

/* ---- binding ---------------------------------------------------------- */

static int
server_listen_one(struct service_rt *svc, const struct addrinfo *ai)
{
	char host[NI_MAXHOST], port[NI_MAXSERV];
	int fd, on = 1;

	getnameinfo(ai->ai_addr, ai->ai_addrlen, host, sizeof(host), port, sizeof(port),
		    NI_NUMERICHOST | NI_NUMERICSERV);
	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
	if (fd < 0) {
		if (errno == EAFNOSUPPORT && ai->ai_family == AF_INET6) {
			msg_warn("service %s: IPv6 is not available, not listening on [%s]:%s",
				 svc->cs->name, host, port);
			return 0;
		}
		msg_error("service %s: socket for %s port %s: %s", svc->cs->name, host, port,
			  strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (ai->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		msg_error("service %s: bind %s port %s: %s", svc->cs->name, host, port,
			  strerror(errno));
		close(fd);
		return -1;
	}
	/* Postfix master(8): the backlog is max(maxproc, default_process_limit). */
	if (listen(fd, svc->backlog) < 0) {
		msg_error("service %s: listen %s port %s: %s", svc->cs->name, host, port,
			  strerror(errno));
		close(fd);
		return -1;
	}
	svc->fds = xrealloc(svc->fds, (svc->nfds + 1) * sizeof(*svc->fds));
	svc->fds[svc->nfds++] = fd;
	return 0;
}

static int
server_bind_host(struct service_rt *svc, const char *host, int family)
{
	struct addrinfo hints, *res, *ai;
	int err, rc = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = family;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((err = getaddrinfo(host, svc->cs->port, &hints, &res)) != 0) {
		msg_error("service %s: cannot resolve listen address \"%s\": %s",
			  svc->cs->name, host ? host : "*", gai_strerror(err));
		return -1;
	}
	for (ai = res; ai != NULL && rc == 0; ai = ai->ai_next)
		rc = server_listen_one(svc, ai);
	freeaddrinfo(res);
	return rc;
}

static int
server_bind_service(struct server *srv, struct service_rt *svc)
{
	const struct conf_view *v = svc->cs->view;
	char *const *ifaces, *const *protos;
	size_t nif, nproto, i;
	int want4 = 0, want6 = 0;

	if (svc->cs->host != NULL) {
		const char *h = svc->cs->host;

		if (*h == '[') {	/* [v6addr] */
			char *bare = xstrndup(h + 1, strlen(h) - 2);
			int rc = server_bind_host(svc, bare, AF_UNSPEC);

			free(bare);
			return rc;
		}
		return server_bind_host(svc, h, AF_UNSPEC);
	}
	protos = conf_list(v, P_inet_protocols, &nproto);
	for (i = 0; i < nproto; i++) {
		if (strcasecmp(protos[i], "all") == 0)
			want4 = want6 = 1;
		else if (strcasecmp(protos[i], "ipv4") == 0)
			want4 = 1;
		else if (strcasecmp(protos[i], "ipv6") == 0)
			want6 = 1;
	}
	ifaces = conf_list(v, P_inet_interfaces, &nif);
	for (i = 0; i < nif; i++) {
		const char *ifc = ifaces[i];
		int rc = 0;

		if (strcasecmp(ifc, "all") == 0) {
			if (want6)
				rc = server_bind_host(svc, "::", AF_INET6);
			if (rc == 0 && want4)
				rc = server_bind_host(svc, "0.0.0.0", AF_INET);
		} else if (strcasecmp(ifc, "loopback-only") == 0) {
			if (want4)
				rc = server_bind_host(svc, "127.0.0.1", AF_INET);
			if (rc == 0 && want6)
				rc = server_bind_host(svc, "::1", AF_INET6);
		} else {
			rc = server_bind_host(svc, ifc, AF_UNSPEC);
		}
		if (rc < 0)
			return -1;
	}
	(void)srv;
	return 0;
}

int
server_bind(struct server *srv)
{
	size_t i;
	long dpl = conf_int(srv->global, P_default_process_limit);

	srv->nsvcs = conf_service_count(srv->conf);
	srv->svcs = xcalloc(srv->nsvcs, sizeof(*srv->svcs));
	for (i = 0; i < srv->nsvcs; i++) {
		struct service_rt *svc = &srv->svcs[i];

		svc->srv = srv;
		svc->cs = conf_service_at(srv->conf, i);
		atomic_init(&svc->cap, svc->cs->maxproc);
		svc->backlog = svc->cs->maxproc > dpl ? svc->cs->maxproc : (int)dpl;
		atomic_init(&svc->sessions, 0);
		if (server_bind_service(srv, svc) < 0)
			return -1;
		if (svc->nfds == 0) {
			msg_error("service %s: no address to listen on", svc->cs->name);
			return -1;
		}
	}
	return 0;
}

/* ---- accepting -------------------------------------------------------- */

static void
server_accepting(struct service_rt *svc, int on)
{
	size_t i;

	if (svc->accepting == on)
		return;
	svc->accepting = on;
	for (i = 0; i < svc->nfds; i++) {
		if (on)
			event_add(svc->lev[i], NULL);
		else
			event_del(svc->lev[i]);
	}
}

static int
server_at_cap(struct service_rt *svc)
{
	int cap = atomic_load(&svc->cap);

	return cap > 0 && atomic_load(&svc->sessions) >= cap;
}

static void
server_handoff(struct server *srv, struct service_rt *svc, int fd, struct sockaddr_storage *sa,
	       socklen_t salen)
{
	struct worker *w = &srv->workers[srv->next_worker++ % (unsigned)srv->nworkers];
	struct worker_handoff *h = xmalloc(sizeof(*h));

	h->next = NULL;
	h->svc = svc;
	h->fd = fd;
	h->salen = salen;
	memcpy(&h->sa, sa, sizeof(*sa));
	pthread_mutex_lock(&w->lock);
	if (w->tail)
		w->tail->next = h;
	else
		w->head = h;
	w->tail = h;
	pthread_mutex_unlock(&w->lock);
	event_active(w->wake_ev, EV_READ, 0);
}

static void
server_emfile_retry(evutil_socket_t fd, short what, void *arg)
{
	struct service_rt *svc = arg;

	(void)fd;
	(void)what;
	if (!server_at_cap(svc) && !atomic_load(&svc->srv->stopping))
		server_accepting(svc, 1);
}

/* How Postfix's master names a service's endpoint: "25" for "smtp", "[host]:port" otherwise. */
static void
server_endpoint(const struct conf_service *cs, char *out, size_t outlen)
{
	if (cs->host == NULL)
		snprintf(out, outlen, "%s", cs->port);
	else if (*cs->host == '[')
		snprintf(out, outlen, "%s:%s", cs->host, cs->port);
	else
		snprintf(out, outlen, "[%s]:%s", cs->host, cs->port);
}

/*
 * The service has used its last slot (POSTFIX_REFERENCE.md §2.3): eligible
 * services enter stress for 1000 s from now, and master's warning is logged
 * at most once per 1000 s.  Loopback-only services and maxproc 1 never do.
 */
static void
server_reached_limit(struct service_rt *svc)
{
	time_t now = time(NULL);
	char endpoint[300];

	if (!svc->cs->stress_eligible)
		return;
	atomic_store(&svc->stress_until, (long)now + 1000);
	if (svc->limit_warned != 0 && now < svc->limit_warned + 1000)
		return;
	svc->limit_warned = now;
	server_endpoint(svc->cs, endpoint, sizeof(endpoint));
	log_as("master", LOG_LVL_WARNING, "service \"%s\" (%s) has reached its process limit \"%d\": "
	       "new clients may experience noticeable delays", svc->cs->name, endpoint,
	       atomic_load(&svc->cap));
	log_as("master", LOG_LVL_WARNING, "to avoid this condition, increase the process count in "
	       "master.cf or reduce the service time per client");
	log_as("master", LOG_LVL_WARNING, "see http://www.postfix.org/STRESS_README.html for "
	       "examples of stress-adapting configuration settings");
}

void *
server_service_acquire(struct service_rt *svc, struct service_gen **gen_r)
{
	struct server *srv = svc->srv;
	struct service_gen *gen;
	void *data;

	pthread_mutex_lock(&srv->gen_lock);
	gen = svc->gen;
	gen->refs++;
	pthread_mutex_unlock(&srv->gen_lock);
	*gen_r = gen;
	data = gen->smtp;
	if (gen->cs->stress_mode == CONF_STRESS_AUTO && gen->cs->stress_eligible
	    && atomic_load(&svc->stress_until) > (long)time(NULL))
		data = gen->smtp_stress;
	return data;
}

/* Drop one reference; the last one frees the data, then perhaps its configuration. */
static void
server_conf_gen_release(struct server *srv, struct conf_gen *cg)
{
	int last;

	pthread_mutex_lock(&srv->gen_lock);
	last = --cg->refs == 0;
	pthread_mutex_unlock(&srv->gen_lock);
	if (last) {
		conf_free(&cg->conf);
		free(cg);
	}
}

void
server_service_release(struct server *srv, struct service_gen *gen)
{
	int last;

	pthread_mutex_lock(&srv->gen_lock);
	last = --gen->refs == 0;
	pthread_mutex_unlock(&srv->gen_lock);
	if (last) {
		smtp_service_data_free(gen->smtp, gen->smtp_stress);
		server_conf_gen_release(srv, gen->cgen);
		free(gen);
	}
}

static struct service_gen *
server_gen_build(struct server *srv, const struct conf_service *cs, char **err_r)
{
	struct service_gen *gen = xcalloc(1, sizeof(*gen));

	if (smtp_service_build(cs, &gen->smtp, &gen->smtp_stress, err_r) < 0) {
		free(gen);
		return NULL;
	}
	gen->cs = cs;
	gen->refs = 1;
	gen->cgen = srv->cgen;
	pthread_mutex_lock(&srv->gen_lock);
	srv->cgen->refs++;
	pthread_mutex_unlock(&srv->gen_lock);
	return gen;
}

int
server_build_services(struct server *srv, char **err_r)
{
	size_t i;

	pthread_mutex_init(&srv->gen_lock, NULL);
	srv->cgen = xcalloc(1, sizeof(*srv->cgen));
	srv->cgen->conf = srv->conf;
	srv->cgen->refs = 1;
	for (i = 0; i < srv->nsvcs; i++) {
		struct service_rt *svc = &srv->svcs[i];

		if ((svc->gen = server_gen_build(srv, svc->cs, err_r)) == NULL) {
			char *e = *err_r;

			*err_r = xasprintf("service %s: %s", svc->cs->name, e);
			free(e);
			return -1;
		}
	}
	return 0;
}

static void
server_accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct service_rt *svc = arg;
	struct server *srv = svc->srv;
	int n;

	(void)what;
	for (n = 0; n < SERVER_ACCEPT_BATCH; n++) {
		struct sockaddr_storage sa;
		socklen_t salen = sizeof(sa);
		int fd;

		if (server_at_cap(svc)) {
			server_accepting(svc, 0);
			return;
		}
		fd = accept4(lfd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				/* Back off instead of spinning on a readable listen socket. */
				static const struct timeval one_second = { 1, 0 };

				msg_warn("service %s: accept: %s; pausing new connections for 1s",
					 svc->cs->name, strerror(errno));
				server_accepting(svc, 0);
				event_base_once(srv->workers[0].base, -1, EV_TIMEOUT,
						server_emfile_retry, svc, &one_second);
			}
			return;
		}
		atomic_fetch_add(&svc->sessions, 1);
		if (server_at_cap(svc))
			server_reached_limit(svc);
		server_handoff(srv, svc, fd, &sa, salen);
	}
}

static void
server_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct service_rt *svc = arg;

	(void)fd;
	(void)what;
	if (!server_at_cap(svc) && !atomic_load(&svc->srv->stopping))
		server_accepting(svc, 1);
}

void
server_session_ended(struct worker *w, struct service_rt *svc)
{
	int left = atomic_fetch_sub(&svc->sessions, 1) - 1;

	w->nsessions--;
	int cap = atomic_load(&svc->cap);

	if (cap > 0 && left == cap - 1)
		event_active(svc->resume_ev, EV_READ, 0);
}

/* ---- workers ---------------------------------------------------------- */

static void
server_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct worker_handoff *h;

	(void)fd;
	(void)what;
	pthread_mutex_lock(&w->lock);
	h = w->head;
	w->head = w->tail = NULL;
	pthread_mutex_unlock(&w->lock);
	while (h != NULL) {
		struct worker_handoff *next = h->next;

		w->nsessions++;
		session_start(w, h->svc, h->fd, (struct sockaddr *)&h->sa, h->salen);
		free(h);
		h = next;
	}
}

static void *
server_worker_main(void *arg)
{
	struct worker *w = arg;

	event_base_dispatch(w->base);
	return NULL;
}

/* ---- anvil housekeeping ------------------------------------------------ */

static void
server_sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;

	(void)fd;
	(void)what;
	anvil_sweep(srv->anvil, time(NULL));
}

static void
server_stats_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;

	(void)fd;
	(void)what;
	anvil_log_statistics(srv->anvil, time(NULL));
}

static void
server_stats_schedule(struct server *srv)
{
	struct timeval tv = { conf_time(srv->global, P_anvil_status_update_time), 0 };

	event_del(srv->stats_ev);
	event_add(srv->stats_ev, &tv);
}

/* ---- reload (SIGHUP) -------------------------------------------------- */

static const struct conf_service *
server_find_service(const struct conf *c, const struct conf_service *old)
{
	size_t i;

	for (i = 0; i < conf_service_count(c); i++) {
		const struct conf_service *cs = conf_service_at(c, i);

		if (strcmp(cs->name, old->name) == 0 && strcmp(cs->port, old->port) == 0
		    && ((cs->host == NULL && old->host == NULL)
			|| (cs->host && old->host && strcmp(cs->host, old->host) == 0)))
			return cs;
	}
	return NULL;
}

/*
 * Read the configuration again.  Sessions that are running keep what they
 * started with; new sessions get the new settings.  anvil's counters are
 * kept (Postfix loses them).  Listening sockets stay: adding, removing or
 * moving a master.cf service needs a restart, and says so.  A configuration
 * with errors is not used: the running one stays, and the errors are logged.
 * What a reload replaces is freed when the last session that started with it
 * ends (struct service_gen, struct conf_gen).
 */
static void
server_reload(struct server *srv)
{
	struct conf_report rep = { 0 };
	struct conf_gen *old_cgen;
	struct conf *nc;
	size_t i, k;
	long dpl;

	nc = conf_load(srv->config_dir, srv->overrides, srv->noverrides, &rep);
	if (nc == NULL) {
		for (k = 0; k < rep.count; k++)
			if (rep.items[k].is_error) {
				char *t = conf_problem_format(&rep.items[k]);

				msg_error("%s", t);
				free(t);
			}
		msg_warn("reload: the configuration in %s has errors; keeping the running "
			 "configuration", srv->config_dir);
		conf_report_free(&rep);
		return;
	}
	conf_report_free(&rep);
	old_cgen = srv->cgen;
	srv->cgen = xcalloc(1, sizeof(*srv->cgen));
	srv->cgen->conf = nc;
	srv->cgen->refs = 1;
	dpl = conf_int(conf_global(nc), P_default_process_limit);
	for (i = 0; i < srv->nsvcs; i++) {
		struct service_rt *svc = &srv->svcs[i];
		const struct conf_service *old_cs = svc->cs, *ncs = server_find_service(nc, old_cs);
		struct service_gen *gen, *old_gen;
		char *err = NULL;
		int backlog;

		if (ncs == NULL) {
			msg_warn("reload: service %s is no longer in master.cf; it keeps running "
				 "until mxgate is restarted", old_cs->name);
			continue;
		}
		if ((gen = server_gen_build(srv, ncs, &err)) == NULL) {
			msg_warn("reload: service %s: %s; keeping its running configuration",
				 ncs->name, err);
			free(err);
			continue;
		}
		/* Publish the new data; the old goes when its last session ends. */
		pthread_mutex_lock(&srv->gen_lock);
		old_gen = svc->gen;
		svc->gen = gen;
		svc->cs = ncs;
		pthread_mutex_unlock(&srv->gen_lock);
		server_service_release(srv, old_gen);
		atomic_store(&svc->cap, ncs->maxproc);
		backlog = ncs->maxproc > dpl ? ncs->maxproc : (int)dpl;
		if (backlog != svc->backlog) {
			svc->backlog = backlog;
			for (k = 0; k < svc->nfds; k++)
				listen(svc->fds[k], backlog);	/* Linux: changes the backlog in place */
		}
		if (!server_at_cap(svc) && !atomic_load(&srv->stopping))
			server_accepting(svc, 1);
	}
	for (k = 0; k < conf_service_count(nc); k++) {
		const struct conf_service *cs = conf_service_at(nc, k);
		int found = 0;

		for (i = 0; i < srv->nsvcs && !found; i++)
			found = srv->svcs[i].cs == cs;
		if (!found)
			msg_warn("reload: new service %s in master.cf needs a restart to listen",
				 cs->name);
	}
	srv->conf = nc;
	server_conf_gen_release(srv, old_cgen);
	srv->global = conf_global(nc);
	anvil_set_rate_time_unit(srv->anvil, conf_time(srv->global, P_anvil_rate_time_unit));
	server_stats_schedule(srv);
	log_as("master", LOG_LVL_INFO, "reload -- version %s, configuration %s", MXGATE_VERSION, srv->config_dir);
}

static void
server_hup_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	server_reload(arg);
}

static void
server_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct server *srv = arg;

	(void)what;
	log_as("master", LOG_LVL_INFO, "terminating on signal %d", (int)sig);
	server_stop(srv);
}

/* Stop the loops once no message is with the writers (or after 10 s). */
static void
server_drain_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	int i;

	(void)fd;
	(void)what;
	if (atomic_load(&srv->deliveries) > 0 && ++srv->drain_ticks < 200)
		return;
	for (i = 0; i < srv->nworkers; i++)
		event_base_loopexit(srv->workers[i].base, NULL);
}

/*
 * Stop accepting, let the messages the writers have finish and get their
 * replies (a 250 that was earned is sent), then stop every loop.  Runs on
 * worker 0 (the signal callback).
 */
void
server_stop(struct server *srv)
{
	static const struct timeval tick = { 0, 50000 };
	size_t i;

	if (atomic_exchange(&srv->stopping, 1))
		return;
	for (i = 0; i < srv->nsvcs; i++)
		server_accepting(&srv->svcs[i], 0);
	srv->drain_ev = event_new(srv->workers[0].base, -1, EV_PERSIST, server_drain_cb, srv);
	event_add(srv->drain_ev, &tick);
	server_drain_cb(-1, 0, srv);
}

int
server_run(struct server *srv, int nworkers, int nwriters)
{
	struct event *sigterm, *sigint;
	sigset_t block, old;
	size_t i;
	int k;

	srv->nworkers = nworkers;
	srv->workers = xcalloc((size_t)nworkers, sizeof(*srv->workers));
	srv->anvil = anvil_memory_create(conf_time(srv->global, P_anvil_rate_time_unit),
					 ANVIL_DEF_MAX_ENTRIES);
	for (k = 0; k < nworkers; k++) {
		struct worker *w = &srv->workers[k];

		w->srv = srv;
		w->index = k;
		pthread_mutex_init(&w->lock, NULL);
		if ((w->base = event_base_new()) == NULL)
			msg_fatal("cannot create an event loop");
		w->wake_ev = event_new(w->base, -1, 0, server_wake_cb, w);
		peername_worker_init(w);
	}
	for (i = 0; i < srv->nsvcs; i++) {
		struct service_rt *svc = &srv->svcs[i];
		size_t j;

		svc->lev = xcalloc(svc->nfds, sizeof(*svc->lev));
		for (j = 0; j < svc->nfds; j++)
			svc->lev[j] = event_new(srv->workers[0].base, svc->fds[j], EV_READ | EV_PERSIST,
						server_accept_cb, svc);
		svc->resume_ev = event_new(srv->workers[0].base, -1, 0, server_resume_cb, svc);
		server_accepting(svc, 1);
	}
	server_signal_target = srv;
	sigterm = evsignal_new(srv->workers[0].base, SIGTERM, server_signal_cb, srv);
	sigint = evsignal_new(srv->workers[0].base, SIGINT, server_signal_cb, srv);
	srv->hup_ev = evsignal_new(srv->workers[0].base, SIGHUP, server_hup_cb, srv);
	event_add(sigterm, NULL);
	event_add(sigint, NULL);
	event_add(srv->hup_ev, NULL);
	{
		static const struct timeval one_second = { 1, 0 };

		srv->sweep_ev = event_new(srv->workers[0].base, -1, EV_PERSIST, server_sweep_cb, srv);
		event_add(srv->sweep_ev, &one_second);
		srv->stats_ev = event_new(srv->workers[0].base, -1, EV_PERSIST, server_stats_cb, srv);
		server_stats_schedule(srv);
	}

	/* Only worker 0 (this thread) takes signals. */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	srv->pool = deliver_pool_create(nwriters);	/* its threads inherit the mask */
	for (k = 1; k < nworkers; k++)
		if (pthread_create(&srv->workers[k].tid, NULL, server_worker_main,
				   &srv->workers[k]) != 0)
			msg_fatal("cannot start event-loop thread: %s", strerror(errno));
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	event_base_dispatch(srv->workers[0].base);

	for (k = 1; k < nworkers; k++)
		pthread_join(srv->workers[k].tid, NULL);
	deliver_pool_destroy(&srv->pool);
	event_free(sigterm);
	event_free(sigint);
	event_free(srv->hup_ev);
	event_free(srv->sweep_ev);
	event_free(srv->stats_ev);
	if (srv->drain_ev)
		event_free(srv->drain_ev);
	srv->hup_ev = srv->sweep_ev = srv->stats_ev = srv->drain_ev = NULL;
	return 0;
}

void
server_free(struct server *srv)
{
	size_t i, j;
	int k;

	for (i = 0; i < srv->nsvcs; i++) {
		struct service_rt *svc = &srv->svcs[i];

		for (j = 0; j < svc->nfds; j++) {
			if (svc->lev)
				event_free(svc->lev[j]);
			close(svc->fds[j]);
		}
		if (svc->resume_ev)
			event_free(svc->resume_ev);
		free(svc->lev);
		free(svc->fds);
		if (svc->gen)
			server_service_release(srv, svc->gen);
		svc->gen = NULL;
	}
	free(srv->svcs);
	srv->svcs = NULL;
	if (srv->cgen) {
		/* The last reference: frees srv->conf too. */
		server_conf_gen_release(srv, srv->cgen);
		srv->cgen = NULL;
		srv->conf = NULL;
	}
	if (srv->anvil != NULL) {
		/* anvil logs its statistics when it exits (§3.4). */
		anvil_log_statistics(srv->anvil, time(NULL));
		anvil_free(&srv->anvil);
	}
	for (k = 0; k < srv->nworkers; k++) {
		struct worker *w = &srv->workers[k];

		/* Sockets accepted but not yet taken over when the loops stopped. */
		while (w->head != NULL) {
			struct worker_handoff *h = w->head;

			w->head = h->next;
			close(h->fd);
			free(h);
		}
		peername_worker_free(w);
		event_free(w->wake_ev);
		event_base_free(w->base);
		pthread_mutex_destroy(&w->lock);
	}
	free(srv->workers);
	srv->workers = NULL;
}
