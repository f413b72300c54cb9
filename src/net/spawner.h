/*
 * spawner: master.cf "spawn" services (Postfix's spawn(8) under its
 * master(8)), for the policy servers that check_policy_service talks to
 * (policyd-spf and the like).
 *
 * spawner_start() runs in `mxgate run` before the privilege drop, while the
 * process has one thread (a fork beside a running thread could leave the
 * child an allocator lock held for ever).  It binds every spawn service: a unix
 * socket at queue_directory/private/NAME (public/NAME with private = n;
 * queue_directory and that directory are created when missing, private/
 * mode 0700 owned by mail_owner, so that mxgate's own policy client reaches
 * the socket after the drop; the socket is mode 0666, as Postfix's master
 * makes it), or an inet host:port (a host-less one on inet_interfaces).
 * Then it forks the spawner process, which keeps the privileges it needs to
 * change users and nothing else: no network clients, no tables, no log file
 * (its lines go through a pipe to the daemon, which logs them as
 * "spawn" from a thread that spawner_log_start() starts once the log is
 * open; until then they wait in the pipe).
 *
 * The spawner process accepts a connection and runs the service's argv in a
 * new process, one per connection (spawn_command()): setgid, initgroups,
 * setuid to user= (as root; never root, never mail_owner: conf refuses them),
 * a new session (setsid), stdin, stdout and stderr the connection, an
 * environment of export_environment's variables plus PATH=/usr/bin:/bin,
 * execvp without a shell.  At maxproc running commands it stops accepting
 * (the listen backlog holds further clients).  A command still running after
 * the service's time limit (<service>_time_limit, default
 * command_time_limit) is killed, with its process group (SIGKILL), with
 * spawn's warnings ("<argv0>: process id N: command time limit exceeded",
 * "command <argv0> killed by signal 9", "command <argv0> exit status N").
 *
 * Started as an ordinary user, a service whose user= is someone else cannot
 * be honoured: spawner_start() refuses (the daemon does not start).  One
 * whose user= is the current user runs as it.
 *
 * The spawn services are read at start-up only: a reload keeps them as they
 * were (changes to them need a restart).  spawner_stop() (at shutdown, and
 * also when the daemon dies, because the spawner watches a pipe) ends the
 * spawner, which sends its commands SIGTERM, then SIGKILL after 2 s.
 */
#ifndef MXGATE_NET_SPAWNER_H
#define MXGATE_NET_SPAWNER_H

struct conf;
struct spawner;

/*
 * Returns 0 and *sp_r (NULL when there is no spawn service), or -1 after
 * logging why (msg_error: a bind that fails, a user that cannot be had).
 */
int	spawner_start(const struct conf *c, const char *config_dir, struct spawner **sp_r);
/* The daemon's side of the spawner's log pipe (sp may be NULL). */
void	spawner_log_start(struct spawner *sp);
void	spawner_stop(struct spawner **sp);
/* Do a and b have different spawn services (for reload's warning)? */
int	spawner_conf_differs(const struct conf *a, const struct conf *b);

#endif
