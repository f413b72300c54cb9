/*
 * server: the daemon's runtime: event-loop threads ("workers"), one listening
 * socket per master.cf service, accept with the per-service session cap, and
 * the hand-off of accepted sockets to workers.
 *
 * Threads: worker 0 runs the acceptor for every service as well as its share
 * of sessions; every worker owns its sessions for their whole life (a session
 * never moves).  Sockets reach a worker through a mutex-protected queue and
 * a wake-up event (event_active is thread-safe after evthread_use_pthreads).
 *
 * Session cap: each service counts its live sessions across all workers.  At
 * maxproc the acceptor stops watching the listening socket, so further
 * clients wait in the kernel's accept queue, whose length (the listen backlog)
 * is max(maxproc, default_process_limit) as in Postfix's master(8).  When a
 * session ends below the cap, the acceptor resumes.  EMFILE/ENFILE on accept
 * pause accepting for a second instead of spinning.
 */
#ifndef MXGATE_NET_SERVER_H
#define MXGATE_NET_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

struct conf;
struct conf_service;
struct conf_view;
struct recipient_policy;
struct deliver_pool;
struct event_base;
struct evdns_base;
struct event;
struct server;
struct session;

/* Runtime state of one master.cf smtpd service. */
struct service_rt {
	struct server *srv;
	const struct conf_service *cs;
	int    *fds;			/* listening sockets */
	struct event **lev;		/* their accept events (worker 0) */
	size_t	nfds;
	atomic_int cap;			/* maxproc; 0 = no limit (changed by reload) */
	int	backlog;
	atomic_int sessions;		/* live sessions, all workers */
	struct service_gen *gen;	/* the current session data (under srv->gen_lock) */
	atomic_long stress_until;	/* stress (POSTFIX_REFERENCE.md §2.3) lasts until then */
	time_t	limit_warned;		/* last "has reached its process limit" (acceptor) */
	int	accepting;		/* acceptor-thread only */
	struct event *resume_ev;	/* activated from any worker */
};

struct worker_handoff;

struct worker {
	struct server *srv;
	int	index;
	pthread_t tid;
	struct event_base *base;
	struct evdns_base *dns;
	struct event *wake_ev;
	pthread_mutex_t lock;
	struct worker_handoff *head, *tail;	/* sockets waiting for this worker */
	size_t	nsessions;			/* this worker's thread only */
	struct session *sessions;		/* list of live sessions (session.c) */
};

struct anvil;

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
	const struct conf_service *cs;
	void   *smtp;		/* smtp/service.h data for sessions */
	void   *smtp_stress;	/* the same, for sessions that start under stress */
	struct conf_gen *cgen;
	int	refs;		/* sessions that use it, +1 while current */
};

struct server {
	struct conf *conf;
	struct conf_gen *cgen;			/* the current configuration */
	pthread_mutex_t gen_lock;		/* every refs field above */
	char  **overrides;			/* -o name=value from the command line */
	size_t	noverrides;
	struct anvil *anvil;			/* shared by every worker */
	struct event *sweep_ev, *stats_ev, *hup_ev, *drain_ev;
	atomic_int deliveries;			/* messages with the writer pool now */
	atomic_long body_bytes;			/* message bodies held in memory, all sessions */
	int	drain_ticks;			/* shutdown: 50 ms ticks waited */
	const struct conf_view *global;
	const char *config_dir;
	struct worker *workers;
	int	nworkers;
	struct service_rt *svcs;
	size_t	nsvcs;
	struct deliver_pool *pool;
	unsigned next_worker;			/* acceptor thread only */
	uid_t	run_uid;			/* the uid sessions run as */
	gid_t	run_gid;
	atomic_int stopping;
};

/*
 * Bind every service's sockets (as root where needed).  Returns 0, or -1
 * after logging what failed (address, port, errno).
 */
int server_bind(struct server *srv);
/*
 * Create workers and the writer pool, start accepting, and run until
 * server_stop().  Returns the exit status.
 */
int server_run(struct server *srv, int nworkers, int nwriters);
/* Release everything server_bind and server_run made (after session_free_all). */
void server_free(struct server *srv);
/* Stop: no new clients, wait for the writers' messages (10 s at most), end the loops. */
void server_stop(struct server *srv);

/*
 * Build the session data of every service (start-up).  Returns 0, or -1 with
 * *err_r set (caller frees).
 */
int server_build_services(struct server *srv, char **err_r);
/*
 * The session data for a session that starts now, on any thread: the stress
 * variant while the service is under stress (forced with -o stress=yes, or
 * automatic for eligible services for 1000 s after they last reached their
 * process limit).  *gen_r holds it alive until server_service_release().
 */
void *server_service_acquire(struct service_rt *svc, struct service_gen **gen_r);
void server_service_release(struct server *srv, struct service_gen *gen);

/* Called by a session, on its worker's thread, when it has ended. */
void server_session_ended(struct worker *w, struct service_rt *svc);

#endif
