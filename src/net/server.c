/*
 * server: workers, listeners, accept and the session cap, pools,
 * generations, reload and shutdown.  See server.h.
 */
#include "net/server.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "conf/conf.h"
#include "deliver/deliver.h"
#include "deliver/journal.h"
#include "deliver/maildir.h"
#include "deliver/spool.h"
#include "log/log.h"
#include "net/control.h"
#include "net/evloop.h"
#include "net/peername.h"
#include "net/resolver.h"
#include "net/policyclient.h"
#include "net/spawner.h"
#include "net/tls.h"
#include "policy/anvil.h"
#include "policy/recipient.h"
#include "policy/restrict.h"
#include "smtp/conn.h"
#include "smtp/service.h"
#include "smtp/session.h"
#include "util/buf.h"
#include "util/loop.h"
#include "util/workpool.h"
#include "util/xalloc.h"
#include "version.h"

/* At most this many accept() calls per wake-up, so one flood cannot starve the loop. */
#define SERVER_ACCEPT_BATCH	32
/* Threads of the writers and lookups pools. */
#define SERVER_WRITERS		4
#define SERVER_LOOKUPS		4
/* Threads of the remote lookups pool: MAP_REMOTE_CONCURRENCY for each of 4 tables. */
#define SERVER_REMOTE_LOOKUPS	16

/* Runtime state of one master.cf smtpd service. */
struct service_rt {
	struct server *srv;
	const struct conf_service *cs;	/* worker 0 only (reload changes it there) */
	int    *fds;			/* listening sockets */
	struct event **lev;		/* their accept events (worker 0) */
	size_t	nfds;
	atomic_int cap;			/* maxproc; 0 = no limit (changed by reload) */
	int	backlog;
	atomic_int sessions;		/* live sessions, all workers */
	struct service_gen *gen;	/* the current session data (under srv->gen_lock) */
	pthread_mutex_t refresh_lock;	/* lookups threads: one table check at a time */
	atomic_long stress_until;	/* stress (POSTFIX_REFERENCE.md §2.3) lasts until then */
	time_t	limit_warned;		/* last "has reached its process limit" (acceptor) */
	int	accepting;		/* acceptor-thread only */
	struct event *resume_ev;	/* activated from any worker */
};

/*
 * A configuration and what was built from it stay alive while a session
 * uses them: a reload makes new ones current, and the old ones are freed
 * when the last session that started with them ends.
 */
struct conf_gen {
	struct conf *conf;
	int	refs;		/* service_gens built from it, +1 while current */
};

struct service_gen {
	struct server *srv;
	const struct conf_service *cs;
	void   *smtp;		/* smtp/service.h data for sessions */
	void   *smtp_stress;	/* the same, for sessions that start under stress */
	int	indexed;	/* its tables include an indexed one (cdb) */
	struct conf_gen *cgen;
	int	refs;		/* sessions that use it, +1 while current */
};

struct worker {
	struct server *srv;
	int	index;
	pthread_t tid;
	struct evloop *el;
	struct evdns_base *dns;		/* client names (net/peername.h) */
	struct spool_ctx *spool;	/* its sessions' disk spools */
	struct dns_client *resolver;	/* the DNS restrictions (net/resolver.h) */
	struct session_env env;
	struct conn *conns;		/* live connections (smtp/conn.c) */
	size_t	nsessions;		/* this worker's thread only */
};

struct server {
	struct conf *conf;			/* the current one (worker 0) */
	struct conf_gen *cgen;
	pthread_mutex_t gen_lock;		/* every refs field, svc->gen */
	char  **overrides;			/* -o name=value from the command line */
	size_t	noverrides;
	struct anvil *anvil;			/* shared by every worker */
	struct event *sweep_ev, *stats_ev, *hup_ev, *drain_ev, *sigterm_ev, *sigint_ev;
	int	control_fd;			/* mxgate_control_socket, -1: none */
	char   *control_path;
	struct control *control;
	atomic_long body_bytes;			/* message bodies held in memory, all sessions */
	int	drain_ticks;			/* shutdown: 50 ms ticks waited */
	const struct conf_view *global;
	const char *config_dir;
	struct worker *workers;
	int	nworkers;
	struct service_rt *svcs;
	size_t	nsvcs;
	struct workpool *writers, *lookups, *remote_lookups, *config;
	struct deliverer *deliver;
	struct journal *journal;	/* the delivery journal, or NULL */
	struct spool_dir *spool_dir;		/* mxgate_spool_directory */
	struct workpool *disk;			/* free space and stale-file cleanup */
	atomic_long free_bytes;			/* least free space of spool and mailboxes; -1 unknown */
	atomic_int disk_inflight;		/* a disk job is queued or running */
	time_t	next_cleanup;			/* worker 0: when the next cleanup is due */
	int	reloading;			/* worker 0: a reload is being built */
	unsigned next_worker;			/* acceptor thread only */
	uid_t	run_uid;			/* the uid sessions run as */
	gid_t	run_gid;
	struct lhelper *helper;			/* the privileged delivery helper, or NULL */
	const struct lhelper_conf *lconf;
	uid_t	default_uid;			/* default_privs (mail for root) */
	gid_t	default_gid;
	atomic_int stopping;
};

struct server *
server_create(struct conf *conf, const char *config_dir, char **overrides, size_t noverrides)
{
	struct server *srv = xcalloc(1, sizeof(*srv));

	srv->conf = conf;
	srv->global = conf_global(conf);
	srv->config_dir = config_dir;
	srv->overrides = overrides;
	srv->noverrides = noverrides;
	srv->run_uid = geteuid();
	srv->run_gid = getegid();
	srv->control_fd = -1;
	srv->default_uid = (uid_t)-1;
	atomic_init(&srv->body_bytes, 0);
	atomic_init(&srv->free_bytes, -1);
	atomic_init(&srv->disk_inflight, 0);
	pthread_mutex_init(&srv->gen_lock, NULL);
	return srv;
}

void
server_set_control(struct server *srv, int fd, const char *path)
{
	srv->control_fd = fd;
	free(srv->control_path);
	srv->control_path = xstrdup(path);
}

void
server_set_run_ids(struct server *srv, uid_t uid, gid_t gid)
{
	srv->run_uid = uid;
	srv->run_gid = gid;
}

void
server_set_local(struct server *srv, struct lhelper *h, const struct lhelper_conf *c,
		 uid_t default_uid, gid_t default_gid)
{
	srv->helper = h;
	srv->lconf = c;
	srv->default_uid = default_uid;
	srv->default_gid = default_gid;
}

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

/* ---- workers (accessors for the smtp module) ------------------------- */

struct loop *
worker_loop(struct worker *w)
{
	return evloop_loop(w->el);
}

struct event_base *
worker_base(struct worker *w)
{
	return evloop_base(w->el);
}

struct evdns_base *
worker_dns(struct worker *w)
{
	return w->dns;
}

const struct session_env *
worker_session_env(struct worker *w)
{
	return &w->env;
}

struct conn **
worker_conns(struct worker *w)
{
	return &w->conns;
}

/* ---- accepting -------------------------------------------------------- */

struct server_handoff {
	struct worker *w;
	struct service_rt *svc;
	int	fd;
	socklen_t salen;
	struct sockaddr_storage sa;
};

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

/* On the chosen worker: the socket becomes a connection. */
static void
server_handoff_cb(void *arg)
{
	struct server_handoff *h = arg;
	struct worker *w = h->w;

	if (atomic_load(&w->srv->stopping)) {
		/* Accepted while the loops were stopping: nobody will serve it. */
		close(h->fd);
		atomic_fetch_sub(&h->svc->sessions, 1);
	} else {
		w->nsessions++;
		conn_start(w, h->svc, h->fd, (struct sockaddr *)&h->sa, h->salen);
	}
	free(h);
}

static void
server_handoff(struct server *srv, struct service_rt *svc, int fd, struct sockaddr_storage *sa,
	       socklen_t salen)
{
	struct worker *w = &srv->workers[srv->next_worker++ % (unsigned)srv->nworkers];
	struct server_handoff *h = xmalloc(sizeof(*h));

	h->w = w;
	h->svc = svc;
	h->fd = fd;
	h->salen = salen;
	memcpy(&h->sa, sa, sizeof(*sa));
	loop_post(worker_loop(w), server_handoff_cb, h);
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
				event_base_once(worker_base(&srv->workers[0]), -1, EV_TIMEOUT,
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
	int cap = atomic_load(&svc->cap);

	w->nsessions--;
	if (cap > 0 && left == cap - 1)
		event_active(svc->resume_ev, EV_READ, 0);
}

/* ---- generations -------------------------------------------------------- */

const void *
server_service_acquire(struct service_rt *svc, struct service_gen **gen_r)
{
	struct server *srv = svc->srv;
	struct service_gen *gen;
	const void *data;

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
server_service_release(struct service_gen *gen)
{
	struct server *srv;
	int last;

	if (gen == NULL)
		return;
	srv = gen->srv;
	pthread_mutex_lock(&srv->gen_lock);
	last = --gen->refs == 0;
	pthread_mutex_unlock(&srv->gen_lock);
	if (last) {
		smtp_service_data_free(gen->smtp, gen->smtp_stress);
		server_conf_gen_release(srv, gen->cgen);
		free(gen);
	}
}

/* Build the session data of cs, from configuration generation cg (any thread). */
static struct service_gen *
server_gen_build(struct server *srv, const struct conf_service *cs, struct conf_gen *cg,
		 char **err_r)
{
	struct service_gen *gen = xcalloc(1, sizeof(*gen));

	if (smtp_service_build(cs, &gen->smtp, &gen->smtp_stress, err_r) < 0) {
		free(gen);
		return NULL;
	}
	gen->srv = srv;
	gen->cs = cs;
	gen->refs = 1;
	gen->cgen = cg;
	gen->indexed = restrict_has_indexed(((struct smtp_service *)gen->smtp)->acl)
		       || tls_server_has_indexed(((struct smtp_service *)gen->smtp)->tls_srv);
	pthread_mutex_lock(&srv->gen_lock);
	cg->refs++;
	pthread_mutex_unlock(&srv->gen_lock);
	return gen;
}

/*
 * Make gen current for svc, if the current one is still expected (NULL:
 * whichever it is); the old one goes when its last session ends.  Returns 0,
 * or -1 (gen released) when another generation came first.
 */
static int
server_gen_publish(struct server *srv, struct service_rt *svc, struct service_gen *expected,
		   struct service_gen *gen)
{
	struct service_gen *old;

	pthread_mutex_lock(&srv->gen_lock);
	old = svc->gen;
	if (expected != NULL && old != expected) {
		pthread_mutex_unlock(&srv->gen_lock);
		server_service_release(gen);
		return -1;
	}
	svc->gen = gen;
	pthread_mutex_unlock(&srv->gen_lock);
	server_service_release(old);
	return 0;
}

int
server_build_services(struct server *srv, char **err_r)
{
	char *err = NULL;
	size_t i;

	srv->cgen = xcalloc(1, sizeof(*srv->cgen));
	srv->cgen->conf = srv->conf;
	srv->cgen->refs = 1;
	for (i = 0; i < srv->nsvcs; i++) {
		struct service_rt *svc = &srv->svcs[i];

		pthread_mutex_init(&svc->refresh_lock, NULL);
		if ((svc->gen = server_gen_build(srv, svc->cs, srv->cgen, err_r)) == NULL) {
			char *e = *err_r;

			*err_r = xasprintf("service %s: %s", svc->cs->name, e);
			free(e);
			return -1;
		}
	}
	{
		struct anvil_settings set = {
			conf_str(srv->global, P_mxgate_anvil_redis_prefix),
			conf_str(srv->global, P_mxgate_anvil_redis_password_file),
			conf_time(srv->global, P_mxgate_anvil_lease_time),
		};

		anvil_set_settings(&set);
	}
	srv->anvil = anvil_create(conf_str(srv->global, P_mxgate_anvil_backend),
				  conf_time(srv->global, P_anvil_rate_time_unit),
				  ANVIL_DEF_MAX_ENTRIES, &err);
	if (srv->anvil == NULL) {
		*err_r = xasprintf("mxgate_anvil_backend = %s: %s",
				   conf_str(srv->global, P_mxgate_anvil_backend), err);
		free(err);
		return -1;
	}
	anvil_set_timeout(srv->anvil, conf_time(srv->global, P_mxgate_anvil_timeout) * 1000);
	return 0;
}

/* ---- indexed tables that changed ---------------------------------------- */

struct service_check {
	struct worker *w;
	struct service_rt *svc;
	struct service_gen *gen;	/* a reference of our own */
	void	(*cb)(void *ctx);	/* NULL: cancelled */
	void   *ctx;
};

/* On a lookups thread: did one of gen's indexed tables change?  Then rebuild, once. */
static void
server_check_work(void *arg)
{
	struct service_check *c = arg;
	struct service_rt *svc = c->svc;
	struct server *srv = svc->srv;
	const struct smtp_service *ss = c->gen->smtp;
	struct service_gen *gen;
	const char *changed, *flags = "lock|fold_fix|utf8_request";
	char *err = NULL;
	int current;

	pthread_mutex_lock(&svc->refresh_lock);
	pthread_mutex_lock(&srv->gen_lock);
	current = svc->gen == c->gen;
	pthread_mutex_unlock(&srv->gen_lock);
	/* tls_server_sni_maps: Postfix opens it with flags of its own */
	if (current && (changed = restrict_changed(ss->acl)) == NULL
	    && (changed = tls_server_changed(ss->tls_srv)) != NULL)
		flags = "lock|fold_fix|src_rhs_is_file";
	if (current && changed != NULL) {
		/*
		 * Postfix's daemons log this (with the table's open flags, as
		 * Postfix 3.7.11 prints them for smtpd's tables) and restart; new
		 * sessions get the new table.
		 */
		while (strncmp(changed, "proxy:", 6) == 0)
			changed += 6;
		msg_info("table %s(0,%s) has changed -- restarting", changed, flags);
		if ((gen = server_gen_build(srv, c->gen->cs, c->gen->cgen, &err)) != NULL) {
			/* A reload that came meanwhile wins: its tables are newer still. */
			(void)server_gen_publish(srv, svc, c->gen, gen);
		} else {
			msg_warn("service %s: %s; keeping the tables in use", c->gen->cs->name, err);
			free(err);
		}
	}
	pthread_mutex_unlock(&svc->refresh_lock);
}

static void
server_check_done(void *arg)
{
	struct service_check *c = arg;

	if (c->cb != NULL)
		c->cb(c->ctx);
	server_service_release(c->gen);
	free(c);
}

struct service_check *
server_service_check(struct worker *w, struct service_rt *svc, struct service_gen *gen,
		     void (*cb)(void *ctx), void *ctx)
{
	struct service_check *c;

	if (!gen->indexed)
		return NULL;
	c = xcalloc(1, sizeof(*c));
	c->w = w;
	c->svc = svc;
	c->gen = gen;
	c->cb = cb;
	c->ctx = ctx;
	pthread_mutex_lock(&svc->srv->gen_lock);
	gen->refs++;
	pthread_mutex_unlock(&svc->srv->gen_lock);
	workpool_submit(svc->srv->lookups, worker_loop(w), server_check_work, server_check_done, c);
	return c;
}

void
server_service_check_cancel(struct service_check *c)
{
	if (c != NULL)
		c->cb = NULL;
}

/* ---- anvil housekeeping ------------------------------------------------ */

/* The Maildir 36-hour rule (maildir.h), checked hourly. */
#define SERVER_TMP_MAX_AGE	(36 * 3600)
#define SERVER_CLEANUP_EVERY	3600
/* A spool file has a name for two system calls at most (spool.h): after an hour it is stale. */
#define SERVER_SPOOL_MAX_AGE	3600

struct server_disk_job {
	struct server *srv;
	char   *spool;		/* mxgate_spool_directory */
	char   *mailboxes;	/* virtual_mailbox_base, or NULL */
	int	cleanup;
};

/* Free bytes for unprivileged users on the file system of path; -1 unknown. */
static long
server_free_bytes(const char *path)
{
	struct statvfs st;

	if (path == NULL || *path == '\0' || statvfs(path, &st) < 0)
		return -1;
	return (long)((unsigned long long)st.f_bavail * st.f_frsize > (unsigned long long)LONG_MAX
		      ? LONG_MAX : (long)((unsigned long long)st.f_bavail * st.f_frsize));
}

static long
server_least_free(const char *spool, const char *mailboxes)
{
	long a = server_free_bytes(spool), b = server_free_bytes(mailboxes);

	if (a < 0)
		return b;
	return b >= 0 && b < a ? b : a;
}

/* On the disk pool's thread: statvfs, an idle journal's checkpoint, stale files hourly. */
static void
server_disk_work(void *arg)
{
	struct server_disk_job *j = arg;

	atomic_store(&j->srv->free_bytes, server_least_free(j->spool, j->mailboxes));
	journal_tick(j->srv->journal);
	if (j->cleanup) {
		spool_dir_clean(j->spool, SERVER_SPOOL_MAX_AGE);
		maildir_clean_tmp(j->mailboxes, SERVER_TMP_MAX_AGE);
	}
}

static void
server_disk_done(void *arg)
{
	struct server_disk_job *j = arg;

	atomic_store(&j->srv->disk_inflight, 0);
	free(j->spool);
	free(j->mailboxes);
	free(j);
}

/* Worker 0, every second: refresh the free space off the loop (never waits for it). */
static void
server_disk_refresh(struct server *srv)
{
	struct server_disk_job *j;
	const char *mb;
	time_t now = time(NULL);

	if (srv->disk == NULL || atomic_exchange(&srv->disk_inflight, 1))
		return;
	j = xcalloc(1, sizeof(*j));
	j->srv = srv;
	j->spool = xstrdup(spool_dir_path(srv->spool_dir));
	mb = conf_str(srv->global, P_virtual_mailbox_base);
	j->mailboxes = *mb ? xstrdup(mb) : NULL;
	if (now >= srv->next_cleanup) {
		j->cleanup = 1;
		srv->next_cleanup = now + SERVER_CLEANUP_EVERY;
	}
	workpool_submit(srv->disk, worker_loop(&srv->workers[0]), server_disk_work,
			server_disk_done, j);
}

static void
server_sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;

	(void)fd;
	(void)what;
	anvil_sweep(srv->anvil, time(NULL));
	server_disk_refresh(srv);
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

/* A reload built off the loops (config pool), applied on worker 0. */
struct server_reload {
	struct server *srv;
	struct conf *conf;		/* NULL: the configuration had errors */
	struct conf_gen *cgen;
	struct service_gen **gens;	/* per running service; NULL: keep its data */
	const struct conf_service **found;	/* the new entry of each running service */
};

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

/* On the config thread: read the files and open the tables. */
static void
server_reload_work(void *arg)
{
	struct server_reload *r = arg;
	struct server *srv = r->srv;
	struct conf_report rep = { 0 };
	size_t i, k;

	r->conf = conf_load(srv->config_dir, srv->overrides, srv->noverrides, &rep);
	if (r->conf == NULL) {
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
	r->cgen = xcalloc(1, sizeof(*r->cgen));
	r->cgen->conf = r->conf;
	r->cgen->refs = 1;
	r->gens = xcalloc(srv->nsvcs, sizeof(*r->gens));
	r->found = xcalloc(srv->nsvcs, sizeof(*r->found));
	for (i = 0; i < srv->nsvcs; i++) {
		/* svc->cs only changes on worker 0, after this job is over. */
		const struct conf_service *old = srv->svcs[i].cs, *ncs;
		char *err = NULL;

		if ((ncs = server_find_service(r->conf, old)) == NULL) {
			msg_warn("reload: service %s is no longer in master.cf; it keeps running "
				 "until mxgate is restarted", old->name);
			continue;
		}
		r->found[i] = ncs;
		if ((r->gens[i] = server_gen_build(srv, ncs, r->cgen, &err)) == NULL) {
			msg_warn("reload: service %s: %s; keeping its running configuration",
				 ncs->name, err);
			free(err);
		}
	}
	/* srv->conf only changes on worker 0, after this job is over */
	if (strcmp(conf_str(conf_global(r->conf), P_mxgate_spool_directory),
		   spool_dir_path(srv->spool_dir)) != 0)
		msg_warn("reload: mxgate_spool_directory changed; the spool stays in %s until "
			 "mxgate is restarted", spool_dir_path(srv->spool_dir));
	if (spawner_conf_differs(srv->conf, r->conf))
		msg_warn("reload: the spawn services in master.cf changed; they keep running as "
			 "they were until mxgate is restarted");
	for (k = 0; k < conf_service_count(r->conf); k++) {
		const struct conf_service *cs = conf_service_at(r->conf, k);
		int found = 0;

		for (i = 0; i < srv->nsvcs && !found; i++)
			found = r->found[i] == cs;
		if (!found)
			msg_warn("reload: new service %s in master.cf needs a restart to listen",
				 cs->name);
	}
}

/*
 * On worker 0: switch to what the config thread built.  Sessions that are
 * running keep what they started with; new sessions get the new settings.
 * anvil's counters are kept (Postfix loses them).  Listening sockets stay.
 */
static void
server_reload_done(void *arg)
{
	struct server_reload *r = arg;
	struct server *srv = r->srv;
	struct conf_gen *old_cgen;
	size_t i, k;
	long dpl;

	srv->reloading = 0;
	if (r->conf == NULL) {
		free(r);
		return;
	}
	if (atomic_load(&srv->stopping)) {
		for (i = 0; i < srv->nsvcs; i++)
			server_service_release(r->gens[i]);
		server_conf_gen_release(srv, r->cgen);
		goto out;
	}
	dpl = conf_int(conf_global(r->conf), P_default_process_limit);
	for (i = 0; i < srv->nsvcs; i++) {
		struct service_rt *svc = &srv->svcs[i];
		const struct conf_service *ncs = r->found[i];
		int backlog;

		if (r->gens[i] == NULL)
			continue;
		svc->cs = ncs;
		(void)server_gen_publish(srv, svc, NULL, r->gens[i]);
		atomic_store(&svc->cap, ncs->maxproc);
		backlog = ncs->maxproc > dpl ? ncs->maxproc : (int)dpl;
		if (backlog != svc->backlog) {
			svc->backlog = backlog;
			for (k = 0; k < svc->nfds; k++)
				listen(svc->fds[k], backlog);	/* Linux: changes the backlog in place */
		}
		if (!server_at_cap(svc))
			server_accepting(svc, 1);
	}
	/* The anvil backend and its connections are made once, at start. */
	if (strcmp(conf_str(srv->global, P_mxgate_anvil_backend),
		   conf_str(conf_global(r->conf), P_mxgate_anvil_backend)) != 0
	    || strcmp(conf_str(srv->global, P_mxgate_anvil_redis_prefix),
		      conf_str(conf_global(r->conf), P_mxgate_anvil_redis_prefix)) != 0
	    || strcmp(conf_str(srv->global, P_mxgate_anvil_redis_password_file),
		      conf_str(conf_global(r->conf), P_mxgate_anvil_redis_password_file)) != 0
	    || conf_time(srv->global, P_mxgate_anvil_lease_time)
	       != conf_time(conf_global(r->conf), P_mxgate_anvil_lease_time))
		msg_warn("reload: mxgate_anvil_backend and the mxgate_anvil_redis_* and "
			 "mxgate_anvil_lease_time parameters take effect at the next restart; "
			 "anvil keeps %s", conf_str(srv->global, P_mxgate_anvil_backend));
	old_cgen = srv->cgen;
	srv->cgen = r->cgen;
	srv->conf = r->conf;
	srv->global = conf_global(r->conf);
	server_conf_gen_release(srv, old_cgen);
	anvil_set_rate_time_unit(srv->anvil, conf_time(srv->global, P_anvil_rate_time_unit));
	anvil_set_timeout(srv->anvil, conf_time(srv->global, P_mxgate_anvil_timeout) * 1000);
	server_stats_schedule(srv);
	log_as("master", LOG_LVL_INFO, "reload -- version %s, configuration %s", MXGATE_VERSION,
	       srv->config_dir);
out:
	free(r->gens);
	free(r->found);
	free(r);
}

static void
server_hup_cb(evutil_socket_t sig, short what, void *arg)
{
	struct server *srv = arg;
	struct server_reload *r;

	(void)sig;
	(void)what;
	if (srv->reloading) {
		msg_info("reload: a reload is already being read; this one is folded into it");
		return;
	}
	srv->reloading = 1;
	r = xcalloc(1, sizeof(*r));
	r->srv = srv;
	workpool_submit(srv->config, worker_loop(&srv->workers[0]), server_reload_work,
			server_reload_done, r);
}

/* ---- shutdown ------------------------------------------------------------ */

static void
server_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct server *srv = arg;

	(void)what;
	log_as("master", LOG_LVL_INFO, "terminating on signal %d", (int)sig);
	server_stop(srv);
}

/*
 * On each worker's own thread, as its last act: its connections go while
 * the loop still runs (libevent finalizes a bufferevent from its loop), then
 * the loop stops.
 */
static void
server_worker_quit(void *arg)
{
	struct worker *w = arg;

	conn_free_all(w);
	evloop_stop(w->el);
}

/* Stop the loops once no message is being stored (or after 10 s). */
static void
server_drain_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	int i;

	(void)fd;
	(void)what;
	if (deliverer_busy(srv->deliver) > 0 && ++srv->drain_ticks < 200)
		return;
	event_del(srv->drain_ev);
	for (i = 0; i < srv->nworkers; i++)
		loop_post(worker_loop(&srv->workers[i]), server_worker_quit, &srv->workers[i]);
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
	srv->drain_ev = event_new(worker_base(&srv->workers[0]), -1, EV_PERSIST, server_drain_cb,
				  srv);
	event_add(srv->drain_ev, &tick);
	server_drain_cb(-1, 0, srv);
}

/* ---- run ------------------------------------------------------------------ */

static void *
server_worker_main(void *arg)
{
	struct worker *w = arg;

	evloop_run(w->el);
	return NULL;
}

/*
 * Blocking start-up step: recover the delivery journal left in the spool
 * directory (always: a crashed run's acknowledged mail is in it), then keep
 * it for the group commit unless mxgate_delivery_journal = no.  A journal
 * that cannot be used is warned about, and each copy is fsync'd instead.
 */
static void
server_journal_open(struct server *srv, const char *spool)
{
	char *path = xasprintf("%s/%s", spool, SPOOL_JOURNAL_NAME);
	int use = conf_bool(srv->global, P_mxgate_delivery_journal);
	struct buf err = BUF_INIT;

	if (use || access(path, F_OK) == 0) {
		srv->journal = journal_open(path, &err);
		if (srv->journal == NULL)
			msg_warn("delivery journal: %s; storing each copy with its own fsync",
				 buf_str(&err));
	}
	if (!use && srv->journal != NULL) {
		journal_close(&srv->journal);
		if (unlink(path) < 0)
			msg_warn("delivery journal: unlink %s: %m", path);
	}
	if (srv->journal != NULL)
		deliverer_set_journal(srv->deliver, srv->journal);
	buf_free(&err);
	free(path);
}

int
server_run(struct server *srv, int nworkers)
{
	static const struct timeval one_second = { 1, 0 };
	struct event_base *base0;
	sigset_t block, old;
	size_t i;
	int k;

	srv->nworkers = nworkers;
	srv->workers = xcalloc((size_t)nworkers, sizeof(*srv->workers));
	/* Pools first: their threads inherit the signal mask set below. */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	srv->writers = workpool_create("writers", SERVER_WRITERS);
	srv->lookups = workpool_create("lookups", SERVER_LOOKUPS);
	srv->remote_lookups = workpool_create("remote", SERVER_REMOTE_LOOKUPS);
	srv->config = workpool_create("config", 1);
	srv->disk = workpool_create("disk", 1);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	srv->deliver = deliverer_create(srv->writers, NULL, NULL);
	{
		const char *spool = conf_str(srv->global, P_mxgate_spool_directory);
		struct buf err = BUF_INIT;

		/* Before any loop runs: a blocking start-up step. */
		if (spool_dir_prepare(spool, &err) < 0)
			msg_fatal("mxgate_spool_directory = %s: %s", spool, buf_str(&err));
		/* Every file there is a crashed run's: none belongs to a live message. */
		spool_dir_clean(spool, 0);
		srv->spool_dir = spool_dir_new(spool, srv->writers);
		server_journal_open(srv, spool);
		/* The first answer before any client: the MAIL check knows from the start. */
		atomic_store(&srv->free_bytes,
			     server_least_free(spool, conf_str(srv->global, P_virtual_mailbox_base)));
	}
	deliverer_set_local(srv->deliver, srv->helper, srv->lconf, srv->run_uid);
	for (k = 0; k < nworkers; k++) {
		struct worker *w = &srv->workers[k];

		w->srv = srv;
		w->index = k;
		w->el = evloop_new();
		w->dns = peername_dns_new(evloop_base(w->el));
		w->resolver = resolver_new(evloop_base(w->el), evloop_loop(w->el));
		w->env.dns = w->resolver;
		w->env.policy = policyclient_new(evloop_base(w->el), w->dns);
		w->env.loop = evloop_loop(w->el);
		w->env.anvil = srv->anvil;
		anvil_attach_loop(srv->anvil, evloop_loop(w->el), evloop_base(w->el));
		w->env.lookups = srv->lookups;
		w->env.remote_lookups = srv->remote_lookups;
		w->env.deliver = srv->deliver;
		w->env.body_bytes = &srv->body_bytes;
		w->env.run_uid = srv->run_uid;
		w->spool = spool_ctx_new(srv->spool_dir, w->env.loop);
		w->env.spool_new = spool_disk_new;
		w->env.spool_ctx = w->spool;
		w->env.free_bytes = &srv->free_bytes;
		w->env.milter_eb = evloop_base(w->el);
		w->env.milter_dns = w->dns;
		w->env.readers = srv->writers;
		w->env.helper = srv->helper != NULL;
		w->env.default_uid = srv->lconf ? srv->default_uid : (uid_t)-1;
		w->env.default_gid = srv->default_gid;
	}
	base0 = worker_base(&srv->workers[0]);
	for (i = 0; i < srv->nsvcs; i++) {
		struct service_rt *svc = &srv->svcs[i];
		size_t j;

		svc->lev = xcalloc(svc->nfds, sizeof(*svc->lev));
		for (j = 0; j < svc->nfds; j++)
			svc->lev[j] = event_new(base0, svc->fds[j], EV_READ | EV_PERSIST,
						server_accept_cb, svc);
		svc->resume_ev = event_new(base0, -1, 0, server_resume_cb, svc);
		server_accepting(svc, 1);
	}
	srv->sigterm_ev = evsignal_new(base0, SIGTERM, server_signal_cb, srv);
	srv->sigint_ev = evsignal_new(base0, SIGINT, server_signal_cb, srv);
	srv->hup_ev = evsignal_new(base0, SIGHUP, server_hup_cb, srv);
	event_add(srv->sigterm_ev, NULL);
	event_add(srv->sigint_ev, NULL);
	event_add(srv->hup_ev, NULL);
	srv->sweep_ev = event_new(base0, -1, EV_PERSIST, server_sweep_cb, srv);
	event_add(srv->sweep_ev, &one_second);
	if (srv->control_fd >= 0) {
		srv->control = control_start(srv->control_fd, srv->control_path, base0, srv->anvil);
		srv->control_fd = -1;
	}
	srv->stats_ev = event_new(base0, -1, EV_PERSIST, server_stats_cb, srv);
	server_stats_schedule(srv);

	/* Only worker 0 (this thread) takes signals. */
	pthread_sigmask(SIG_BLOCK, &block, &old);
	for (k = 1; k < nworkers; k++)
		if (pthread_create(&srv->workers[k].tid, NULL, server_worker_main,
				   &srv->workers[k]) != 0)
			msg_fatal("cannot start event-loop thread: %s", strerror(errno));
		else {
			char	n[16];

			snprintf(n, sizeof(n), "loop %d", k);
			thread_name(srv->workers[k].tid, n);
		}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	/* what came since `mxgate run` blocked them (its "daemon started" line) is taken now */
	pthread_sigmask(SIG_UNBLOCK, &block, NULL);

	evloop_run(srv->workers[0].el);

	for (k = 1; k < nworkers; k++)
		pthread_join(srv->workers[k].tid, NULL);
	return 0;
}

/*
 * After the loops stopped: connections first (their requests are cancelled,
 * anvil gets their disconnects), then the pools (jobs still queued run, and
 * their answers are posted), then the loops (which run those posts, so what
 * they own is freed), then anvil, the generations and the configuration.
 */
void
server_free(struct server **srvp)
{
	struct server *srv = *srvp;
	size_t i, j;
	int k;

	if (srv == NULL)
		return;
	atomic_store(&srv->stopping, 1);
	for (k = 0; k < srv->nworkers; k++)
		conn_free_all(&srv->workers[k]);
	workpool_destroy(&srv->config);
	workpool_destroy(&srv->disk);
	workpool_destroy(&srv->lookups);
	workpool_destroy(&srv->remote_lookups);
	workpool_destroy(&srv->writers);
	if (srv->anvil != NULL) {
		/* anvil logs its statistics when it exits (§3.4). */
		anvil_log_statistics(srv->anvil, time(NULL));
	}
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
	}
	if (srv->sigterm_ev) {
		event_free(srv->sigterm_ev);
		event_free(srv->sigint_ev);
		event_free(srv->hup_ev);
		event_free(srv->sweep_ev);
		event_free(srv->stats_ev);
	}
	if (srv->drain_ev)
		event_free(srv->drain_ev);
	control_free(&srv->control);
	if (srv->control_fd >= 0)
		close(srv->control_fd);
	free(srv->control_path);
	for (k = 0; k < srv->nworkers; k++) {
		struct worker *w = &srv->workers[k];

		if (srv->anvil != NULL)
			anvil_detach_loop(srv->anvil, evloop_loop(w->el));
		policyclient_free(&w->env.policy);
		peername_dns_free(&w->dns);
		resolver_free(&w->resolver);
		evloop_free(&w->el);
		/* Handoffs run by evloop_free() found the server stopping. */
		spool_ctx_free(&w->spool);
	}
	free(srv->workers);
	spool_dir_free(&srv->spool_dir);
	deliverer_free(&srv->deliver);
	journal_close(&srv->journal);
	anvil_free(&srv->anvil);
	for (i = 0; i < srv->nsvcs; i++) {
		struct service_rt *svc = &srv->svcs[i];

		server_service_release(svc->gen);
		svc->gen = NULL;
		pthread_mutex_destroy(&svc->refresh_lock);
	}
	free(srv->svcs);
	if (srv->cgen) {
		/* The last reference: frees srv->conf too. */
		server_conf_gen_release(srv, srv->cgen);
		srv->cgen = NULL;
		srv->conf = NULL;
	} else {
		conf_free(&srv->conf);
	}
	pthread_mutex_destroy(&srv->gen_lock);
	free(srv);
	*srvp = NULL;
}
