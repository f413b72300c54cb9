/*
 * spawner: master.cf spawn services.  See spawner.h.  The spawner process
 * is single-threaded and plain: poll(), accept(), fork(), waitpid(); it
 * never calls the log module (the log writer thread does not exist in it),
 * it writes "<level><text>\n" lines to a pipe that a thread of the daemon
 * reads and logs.
 */
#include "net/spawner.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>

#include "conf/conf.h"
#include "log/log.h"
#include "util/xalloc.h"

struct sp_listener {
	int	fd;
	size_t	svc;		/* index into the services */
};

struct sp_child {
	pid_t	pid;
	size_t	svc;
	time_t	deadline;
	int	killed;
};

struct spawner {
	pid_t	pid;		/* the spawner process */
	int	life_w;		/* its end closes: the spawner stops */
	int	log_r;
	int	log_started;	/* spawner_log_start() made log_thread */
	pthread_t log_thread;
};

/* ---- in the daemon ---- */

static int
sp_listen_unix(const struct conf_spawn *s, uid_t owner_uid, gid_t owner_gid, int have_owner)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char   *dir = xstrdup(s->path), *slash, *top;
	int	fd, private_dir;

	if (strlen(s->path) >= sizeof(sun.sun_path)) {
		msg_error("service %s: socket path too long: %s", s->name, s->path);
		free(dir);
		return -1;
	}
	/* queue_directory, then private/ (or public/) in it */
	slash = strrchr(dir, '/');
	*slash = '\0';
	top = xstrdup(dir);
	*strrchr(top, '/') = '\0';
	private_dir = strcmp(slash - strlen("private"), "private") == 0;
	if (*top && mkdir(top, 0755) < 0 && errno != EEXIST) {
		msg_error("service %s: cannot create queue_directory %s: %s", s->name, top,
			  strerror(errno));
		free(dir);
		free(top);
		return -1;
	}
	if (mkdir(dir, private_dir ? 0700 : 0755) == 0) {
		if (geteuid() == 0 && have_owner && chown(dir, owner_uid, owner_gid) < 0) {
			msg_error("service %s: chown %s: %s", s->name, dir, strerror(errno));
			free(dir);
			free(top);
			return -1;
		}
	} else if (errno != EEXIST) {
		msg_error("service %s: cannot create %s: %s", s->name, dir, strerror(errno));
		free(dir);
		free(top);
		return -1;
	}
	free(dir);
	free(top);
	memcpy(sun.sun_path, s->path, strlen(s->path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) {
		msg_error("service %s: socket: %s", s->name, strerror(errno));
		return -1;
	}
	(void)unlink(s->path);	/* a stale socket from an earlier run */
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0
	    || chmod(s->path, 0666) < 0
	    || listen(fd, s->maxproc > 0 ? s->maxproc : 100) < 0) {
		msg_error("service %s: bind/listen %s: %s", s->name, s->path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int
sp_listen_inet(const struct conf_spawn *s, const char *host, int **fds, size_t *nfds)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *res, *ai;
	int	rc, on = 1;

	if ((rc = getaddrinfo(host, s->port, &hints, &res)) != 0) {
		msg_error("service %s: %s: %s", s->name, host, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		int	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

		if (fd < 0) {
			if (errno == EAFNOSUPPORT)
				continue;
			msg_error("service %s: socket: %s", s->name, strerror(errno));
			freeaddrinfo(res);
			return -1;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0
		    || listen(fd, s->maxproc > 0 ? s->maxproc : 100) < 0) {
			msg_error("service %s: bind %s port %s: %s", s->name, host ? host : "*",
				  s->port, strerror(errno));
			close(fd);
			freeaddrinfo(res);
			return -1;
		}
		*fds = xrealloc(*fds, (*nfds + 1) * sizeof(**fds));
		(*fds)[(*nfds)++] = fd;
		break;		/* the first address of the name, as one listener */
	}
	freeaddrinfo(res);
	return 0;
}

static void *
sp_log_thread(void *arg)
{
	struct spawner *sp = arg;
	FILE   *f = fdopen(sp->log_r, "r");
	char	line[4096];

	if (f == NULL)
		return NULL;
	while (fgets(line, sizeof(line), f) != NULL) {
		enum log_level lv = line[0] == 'W' ? LOG_LVL_WARNING
				    : line[0] == 'F' ? LOG_LVL_FATAL : LOG_LVL_INFO;

		line[strcspn(line, "\n")] = '\0';
		if (lv == LOG_LVL_FATAL) {
			/* a command that could not be started: the spawner goes on */
			log_as("spawn", LOG_LVL_FATAL, "%s", line + 1);
		} else {
			log_as("spawn", lv, "%s", line + 1);
		}
	}
	fclose(f);
	return NULL;
}

static long sp_time_limit(const struct conf_spawn *s);
static void sp_main(const struct conf *c, struct sp_listener *ls, size_t nls, int life_r,
		    int log_w) __attribute__((noreturn));

int
spawner_start(const struct conf *c, const char *config_dir, struct spawner **sp_r)
{
	size_t	n = conf_spawn_count(c), nls = 0;
	struct sp_listener *ls = NULL;
	const char *owner = conf_str(conf_global(c), P_mail_owner);
	struct passwd *pw = getpwnam(owner);
	int	have_owner = pw != NULL;
	uid_t	owner_uid = pw ? pw->pw_uid : 0;
	gid_t	owner_gid = pw ? pw->pw_gid : 0;
	int	life[2], logp[2];
	struct spawner *sp;
	pid_t	pid;

	(void)config_dir;
	*sp_r = NULL;
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		const struct conf_spawn *s = conf_spawn_at(c, i);

		if (geteuid() != 0 && s->uid != geteuid()) {
			msg_error("service %s: user=%s: mxgate runs as uid %ld, not as root, and "
				  "cannot run commands as another user; start it as root, or name "
				  "the current user in user=", s->name, s->user, (long)geteuid());
			goto fail;
		}
	}
	for (size_t i = 0; i < n; i++) {
		const struct conf_spawn *s = conf_spawn_at(c, i);
		int    *fds = NULL;
		size_t	nfds = 0;

		if (!s->inet) {
			int	fd = sp_listen_unix(s, owner_uid, owner_gid, have_owner);

			if (fd < 0)
				goto fail;
			fds = xmalloc(sizeof(*fds));
			fds[nfds++] = fd;
		} else if (s->host != NULL) {
			if (sp_listen_inet(s, s->host, &fds, &nfds) < 0)
				goto fail;
		} else {
			size_t	ni;
			char *const *ifs = conf_list(conf_global(c), P_inet_interfaces, &ni);

			for (size_t k = 0; k < ni; k++) {
				int	rc;

				if (strcmp(ifs[k], "all") == 0)
					rc = sp_listen_inet(s, "0.0.0.0", &fds, &nfds) < 0
					     || sp_listen_inet(s, "::", &fds, &nfds) < 0;
				else if (strcmp(ifs[k], "loopback-only") == 0)
					rc = sp_listen_inet(s, "127.0.0.1", &fds, &nfds) < 0;
				else
					rc = sp_listen_inet(s, ifs[k], &fds, &nfds) < 0;
				if (rc) {
					free(fds);
					goto fail;
				}
			}
		}
		for (size_t k = 0; k < nfds; k++) {
			ls = xrealloc(ls, (nls + 1) * sizeof(*ls));
			ls[nls].fd = fds[k];
			ls[nls++].svc = i;
		}
		free(fds);
	}
	if (pipe2(life, O_CLOEXEC) < 0 || pipe2(logp, O_CLOEXEC) < 0) {
		msg_error("spawn services: pipe: %s", strerror(errno));
		goto fail;
	}
	if ((pid = fork()) < 0) {
		msg_error("spawn services: fork: %s", strerror(errno));
		goto fail;
	}
	if (pid == 0) {
		close(life[1]);
		close(logp[0]);
		sp_main(c, ls, nls, life[0], logp[1]);
	}
	close(life[0]);
	close(logp[1]);
	for (size_t k = 0; k < nls; k++)
		close(ls[k].fd);
	free(ls);
	sp = xcalloc(1, sizeof(*sp));
	sp->pid = pid;
	sp->life_w = life[1];
	sp->log_r = logp[0];
	*sp_r = sp;
	return 0;
fail:
	for (size_t k = 0; k < nls; k++)
		close(ls[k].fd);
	free(ls);
	return -1;
}

void
spawner_log_start(struct spawner *sp)
{
	sigset_t all, old;
	int rc;

	if (sp == NULL || sp->log_started)
		return;
	/*
	 * The thread takes no signal: a SIGHUP or SIGTERM that comes before the
	 * loop's handlers are set (the journal's recovery runs in between) must
	 * wait for them, not find this thread with the default action (exit).
	 */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&sp->log_thread, NULL, sp_log_thread, sp);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		msg_fatal("spawn services: cannot start the log thread");
	(void)pthread_setname_np(sp->log_thread, "mxg spawn log");
	sp->log_started = 1;
}

void
spawner_stop(struct spawner **spp)
{
	struct spawner *sp = *spp;
	int	status;

	*spp = NULL;
	if (sp == NULL)
		return;
	close(sp->life_w);
	while (waitpid(sp->pid, &status, 0) < 0 && errno == EINTR)
		;
	if (sp->log_started)
		pthread_join(sp->log_thread, NULL);
	else
		close(sp->log_r);
	free(sp);
}

static int
sp_str_differs(const char *a, const char *b)
{
	return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

int
spawner_conf_differs(const struct conf *a, const struct conf *b)
{
	size_t	n = conf_spawn_count(a);

	if (n != conf_spawn_count(b))
		return 1;
	for (size_t i = 0; i < n; i++) {
		const struct conf_spawn *x = conf_spawn_at(a, i), *y = conf_spawn_at(b, i);
		size_t	k;

		if (sp_str_differs(x->name, y->name) || x->inet != y->inet
		    || sp_str_differs(x->host, y->host) || sp_str_differs(x->port, y->port)
		    || sp_str_differs(x->path, y->path) || sp_str_differs(x->user, y->user)
		    || x->uid != y->uid || x->gid != y->gid || x->maxproc != y->maxproc
		    || sp_time_limit(x) != sp_time_limit(y))
			return 1;
		for (k = 0; x->argv[k] && y->argv[k]; k++)
			if (strcmp(x->argv[k], y->argv[k]) != 0)
				return 1;
		if (x->argv[k] || y->argv[k])
			return 1;
		{
			size_t	nx, ny;
			char *const *ex = conf_list(x->view, P_export_environment, &nx);
			char *const *ey = conf_list(y->view, P_export_environment, &ny);

			if (nx != ny)
				return 1;
			for (k = 0; k < nx; k++)
				if (strcmp(ex[k], ey[k]) != 0)
					return 1;
		}
	}
	return 0;
}

/* ---- in the spawner process ---- */

static int sp_log_fd = -1;

static void sp_log(char level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
sp_log(char level, const char *fmt, ...)
{
	char	line[2048];
	va_list ap;
	int	n;

	line[0] = level;
	va_start(ap, fmt);
	n = vsnprintf(line + 1, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	n = n + 1 > (int)sizeof(line) - 2 ? (int)sizeof(line) - 2 : n + 1;
	line[n++] = '\n';
	(void)!write(sp_log_fd, line, (size_t)n);
}

/* Close every descriptor but keep[] (sorted or not). */
static void
sp_close_others(const int *keep, size_t nkeep)
{
	int	maxfd = (int)sysconf(_SC_OPEN_MAX);

	if (maxfd < 0 || maxfd > 65536)
		maxfd = 65536;
	for (int fd = 3; fd < maxfd; fd++) {
		size_t	k;

		for (k = 0; k < nkeep && keep[k] != fd; k++)
			;
		if (k == nkeep)
			(void)close(fd);
	}
}

/* spawn_command(): the child's side; never returns. */
static void __attribute__((noreturn))
sp_exec(const struct conf_spawn *s, int conn)
{
	size_t	nenv = 0, nexport;
	char  **env = xcalloc(64, sizeof(*env));
	char *const *export = conf_list(s->view, P_export_environment, &nexport);
	sigset_t none;

	if (geteuid() == 0) {
		if (setgid(s->gid) < 0 || initgroups(s->user, s->gid) < 0 || setuid(s->uid) < 0) {
			sp_log('F', "spawn_command: set_ugid %ld:%ld: %s", (long)s->uid, (long)s->gid,
			       strerror(errno));
			_exit(1);
		}
		if (setuid(0) == 0) {
			sp_log('F', "spawn_command: privileges could be regained");
			_exit(1);
		}
	}
	(void)setsid();
	if (dup2(conn, STDIN_FILENO) < 0 || dup2(conn, STDOUT_FILENO) < 0
	    || dup2(conn, STDERR_FILENO) < 0) {
		sp_log('F', "spawn_command: dup2: %s", strerror(errno));
		_exit(1);
	}
	if (conn > 2)
		close(conn);
	/* clean_env(export_environment), then PATH */
	for (size_t i = 0; i < nexport && nenv < 60; i++) {
		const char *v = getenv(export[i]);

		if (v != NULL)
			env[nenv++] = xasprintf("%s=%s", export[i], v);
	}
	env[nenv++] = xstrdup("PATH=/usr/bin:/bin");
	env[nenv] = NULL;
	signal(SIGPIPE, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execvpe(s->argv[0], s->argv, env);
	/* "spawn_comand": Postfix 3.7's own spelling in this message */
	sp_log('F', "spawn_comand: execvp %s: %s", s->argv[0], strerror(errno));
	_exit(1);
}

/* <service>_time_limit, else command_time_limit (spawn's get_service_attr()). */
static long
sp_time_limit(const struct conf_spawn *s)
{
	return s->time_limit > 0 ? s->time_limit : conf_time(s->view, P_command_time_limit);
}

static void
sp_reaped(const struct conf *c, struct sp_child *ch, int status)
{
	const struct conf_spawn *s = conf_spawn_at(c, ch->svc);

	if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
		sp_log('W', "command %s exit status %d", s->argv[0], WEXITSTATUS(status));
	if (WIFSIGNALED(status))
		sp_log('W', "command %s killed by signal %d", s->argv[0], WTERMSIG(status));
}

static void
sp_main(const struct conf *c, struct sp_listener *ls, size_t nls, int life_r, int log_w)
{
	size_t	nsvc = conf_spawn_count(c), nch = 0, cap = 16;
	struct sp_child *ch = xcalloc(cap, sizeof(*ch));
	size_t *running = xcalloc(nsvc, sizeof(*running));
	struct pollfd *pfd = xcalloc(nls + 2, sizeof(*pfd));
	int    *keep = xcalloc(nls + 3, sizeof(*keep));
	sigset_t chld;
	int	sfd, stopping = 0;
	time_t	stop_at = 0;

	sp_log_fd = log_w;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	/* the daemon decides (the pipe): a terminal's ^C or a group's SIGTERM reach us too */
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	for (size_t k = 0; k < nls; k++)
		keep[k] = ls[k].fd;
	keep[nls] = life_r;
	keep[nls + 1] = log_w;
	keep[nls + 2] = sfd;
	sp_close_others(keep, nls + 3);
	for (;;) {
		size_t	np = 0;
		int	timeout = -1;
		time_t	now = time(NULL);

		/* time limits */
		for (size_t i = 0; i < nch; i++) {
			if (!ch[i].killed && now >= ch[i].deadline) {
				sp_log('W', "%s: process id %lu: command time limit exceeded",
				       conf_spawn_at(c, ch[i].svc)->argv[0], (unsigned long)ch[i].pid);
				kill(-ch[i].pid, SIGKILL);
				kill(ch[i].pid, SIGKILL);
				ch[i].killed = 1;
			}
			if (!ch[i].killed) {
				long	ms = (long)(ch[i].deadline - now) * 1000;

				if (timeout < 0 || ms < timeout)
					timeout = (int)(ms > 0 ? ms : 0);
			}
		}
		if (stopping) {
			if (nch == 0)
				_exit(0);
			if (now >= stop_at) {
				for (size_t i = 0; i < nch; i++) {
					kill(-ch[i].pid, SIGKILL);
					kill(ch[i].pid, SIGKILL);
				}
			}
			timeout = 200;
		}
		pfd[np].fd = life_r;
		pfd[np++].events = POLLIN;
		pfd[np].fd = sfd;
		pfd[np++].events = POLLIN;
		for (size_t k = 0; k < nls && !stopping; k++) {
			const struct conf_spawn *s = conf_spawn_at(c, ls[k].svc);

			pfd[np].fd = s->maxproc > 0 && running[ls[k].svc] >= (size_t)s->maxproc
				     ? -1 : ls[k].fd;
			pfd[np++].events = POLLIN;
		}
		if (poll(pfd, np, timeout) < 0) {
			if (errno == EINTR)
				continue;
			_exit(1);
		}
		if (!stopping && (pfd[0].revents & (POLLIN | POLLHUP | POLLERR))) {
			/* the daemon is gone or stopping: so are we */
			stopping = 1;
			stop_at = time(NULL) + 2;
			for (size_t i = 0; i < nch; i++) {
				kill(-ch[i].pid, SIGTERM);
				kill(ch[i].pid, SIGTERM);
			}
			for (size_t k = 0; k < nls; k++)
				close(ls[k].fd);
			nls = 0;
		}
		if (pfd[1].revents & POLLIN) {
			struct signalfd_siginfo si;
			int	status;
			pid_t	pid;

			while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
				;
			while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
				for (size_t i = 0; i < nch; i++) {
					if (ch[i].pid != pid)
						continue;
					sp_reaped(c, &ch[i], status);
					running[ch[i].svc]--;
					ch[i] = ch[--nch];
					break;
				}
			}
		}
		for (size_t k = 0; k < nls && !stopping; k++) {
			const struct conf_spawn *s;
			int	conn;
			pid_t	pid;

			if (!(pfd[2 + k].revents & POLLIN))
				continue;
			s = conf_spawn_at(c, ls[k].svc);
			if ((conn = accept4(ls[k].fd, NULL, NULL, SOCK_CLOEXEC)) < 0)
				continue;
			/* the command gets a blocking descriptor, as from Postfix's master */
			fcntl(conn, F_SETFL, fcntl(conn, F_GETFL) & ~O_NONBLOCK);
			if ((pid = fork()) < 0) {
				sp_log('W', "fork: %s", strerror(errno));
				close(conn);
				continue;
			}
			if (pid == 0)
				sp_exec(s, conn);
			close(conn);
			if (nch == cap)
				ch = xrealloc(ch, (cap *= 2) * sizeof(*ch));
			ch[nch].pid = pid;
			ch[nch].svc = ls[k].svc;
			ch[nch].deadline = time(NULL) + sp_time_limit(s);
			ch[nch++].killed = 0;
			running[ls[k].svc]++;
		}
	}
}
