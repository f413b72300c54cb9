/*
 * server: the daemon's runtime: event-loop threads ("workers"), one
 * listening socket per master.cf service, accept with the per-service
 * session cap, the hand-off of accepted sockets to workers, the thread
 * pools, the configuration generations, reload and shutdown.
 *
 * Threads:
 *  - worker 0 runs the acceptor for every service, the signals, the anvil
 *    housekeeping and the application of a reload, as well as its share of
 *    sessions; every worker owns its connections for their whole life (a
 *    connection never moves).  Sockets reach a worker through its loop's
 *    post queue (util/loop.h).
 *  - the writers pool (4 threads) stores messages; the lookups pool (4
 *    threads) asks recipient tables and checks whether indexed tables
 *    changed, the remote pool (16 threads) asks those that have a remote
 *    table (SQL, LDAP, socketmap); the config pool (1 thread) reads the
 *    configuration and opens its tables on SIGHUP.  No event loop ever does any of that itself.
 *
 * Session cap: each service counts its live sessions across all workers.  At
 * maxproc the acceptor stops watching the listening socket, so further
 * clients wait in the kernel's accept queue, whose length (the listen
 * backlog) is max(maxproc, default_process_limit) as in Postfix's master(8).
 * When a session ends below the cap, the acceptor resumes.  EMFILE/ENFILE on
 * accept pause accepting for a second instead of spinning.
 *
 * Generations: what a session uses (its service's settings and tables)
 * stays alive while the session runs.  A reload, or an indexed table that
 * changed, makes a new generation current; the old one is freed when the
 * last session that started with it ends.
 *
 * The smtp module sees only the functions below: struct server and struct
 * worker are private to server.c.
 */
#ifndef MXGATE_NET_SERVER_H
#define MXGATE_NET_SERVER_H

#include <sys/socket.h>
#include <sys/types.h>

struct conf;
struct conn;
struct event_base;
struct evdns_base;
struct loop;
struct server;
struct service_gen;
struct service_rt;
struct session_env;
struct worker;

/* ---- the daemon (main.c) ---- */

/*
 * A server for conf (it takes the configuration over), read from
 * config_dir with the -o overrides (kept by the caller; reloads use them).
 */
struct server *server_create(struct conf *conf, const char *config_dir, char **overrides,
			     size_t noverrides);
/*
 * Bind every service's sockets (as root where needed).  Returns 0, or -1
 * after logging what failed (address, port, errno).
 */
int server_bind(struct server *srv);
/*
 * Build the session data of every service and the anvil backend (start-up).
 * Returns 0, or -1 with *err_r set (caller frees).
 */
int server_build_services(struct server *srv, char **err_r);
/* The uid and gid sessions run as (after the privilege drop). */
void server_set_run_ids(struct server *srv, uid_t uid, gid_t gid);
/* The control socket (net/control.h) that server_run() serves on worker 0;
 * the server closes fd in the end. */
void server_set_control(struct server *srv, int fd, const char *path);
/*
 * Local delivery: the privileged delivery helper (NULL: none, not started as
 * root), its configuration, and default_privs's ids (mail for root is
 * written with them).  Kept by the caller; before server_run().
 */
struct lhelper;
struct lhelper_conf;
void server_set_local(struct server *srv, struct lhelper *h, const struct lhelper_conf *c,
		      uid_t default_uid, gid_t default_gid);
/*
 * Create the workers and the pools, start accepting, and run until
 * SIGTERM/SIGINT (server_stop()).  Returns the exit status.
 */
int server_run(struct server *srv, int nworkers);
/* Release everything, connections included; frees srv. */
void server_free(struct server **srvp);
/* Stop: no new clients, wait for the messages being stored (10 s at most), end the loops. */
void server_stop(struct server *srv);

/* ---- for connections (smtp/conn.c) ---- */

struct loop *worker_loop(struct worker *w);
struct event_base *worker_base(struct worker *w);
struct evdns_base *worker_dns(struct worker *w);
/* What sessions on this worker need (loop, anvil, pools, ...). */
const struct session_env *worker_session_env(struct worker *w);
/* The head of the worker's list of live connections (conn.c keeps it). */
struct conn **worker_conns(struct worker *w);

/*
 * The session data for a session that starts now, on any thread: the stress
 * variant while the service is under stress (forced with -o stress=yes, or
 * automatic for eligible services for 1000 s after they last reached their
 * process limit).  *gen_r holds it alive until server_service_release().
 */
const void *server_service_acquire(struct service_rt *svc, struct service_gen **gen_r);
void server_service_release(struct service_gen *gen);

/*
 * Postfix's daemons notice that an indexed table changed before they take
 * the next client ("table cdb:... has changed -- restarting").  For a
 * session that acquired gen: when gen's tables include an indexed one,
 * check them on the lookups pool, and when one changed, build and publish
 * the service's data again (once, whoever asks first); then cb(ctx) runs on
 * w's loop and the caller acquires the current data again.  Returns NULL
 * (cb is not called) when gen has no indexed table.  Cancel with
 * server_service_check_cancel() (cb will not run).
 */
struct service_check;
struct service_check *server_service_check(struct worker *w, struct service_rt *svc,
					   struct service_gen *gen, void (*cb)(void *ctx),
					   void *ctx);
void server_service_check_cancel(struct service_check *c);

/* Called by a connection, on its worker's thread, when it has ended. */
void server_session_ended(struct worker *w, struct service_rt *svc);

#endif
