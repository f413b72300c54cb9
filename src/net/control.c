/*
 * control: the daemon's control socket (see control.h).
 */
#include "net/control.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "log/log.h"
#include "policy/anvil.h"
#include "util/buf.h"
#include "util/xalloc.h"

#define CONTROL_READ_TIMEOUT	5	/* seconds for the request line */

struct control {
	struct evconnlistener *lev;
	struct anvil *anvil;
	char   *path;
};

static int
control_addr(struct sockaddr_un *sun, const char *path, char **err_r)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path)) {
		*err_r = xasprintf("mxgate_control_socket = %s: the path is too long", path);
		return -1;
	}
	memcpy(sun->sun_path, path, strlen(path) + 1);
	return 0;
}

int
control_bind(const char *path, uid_t uid, gid_t gid, char **err_r)
{
	struct sockaddr_un sun;
	char *dir = xstrdup(path), *slash = strrchr(dir, '/');
	struct stat st;
	int fd;

	*err_r = NULL;
	if (path[0] != '/') {
		*err_r = xasprintf("mxgate_control_socket = %s: not an absolute path", path);
		free(dir);
		return -1;
	}
	if (control_addr(&sun, path, err_r) < 0) {
		free(dir);
		return -1;
	}
	if (slash != NULL && slash != dir) {
		*slash = '\0';
		if (stat(dir, &st) < 0 && errno == ENOENT) {
			if (mkdir(dir, 0755) < 0 || chown(dir, uid, gid) < 0) {
				*err_r = xasprintf("mxgate_control_socket = %s: cannot create %s: %s",
						   path, dir, strerror(errno));
				free(dir);
				return -1;
			}
		}
	}
	free(dir);
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		(void)unlink(path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0) {
		*err_r = xasprintf("mxgate_control_socket = %s: socket: %s", path, strerror(errno));
		return -1;
	}
	/* The mode holds from the start: no moment in which others may connect. */
	{
		mode_t old = umask(0177);
		int rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));

		umask(old);
		if (rc < 0) {
			*err_r = xasprintf("mxgate_control_socket = %s: bind: %s", path,
					   strerror(errno));
			close(fd);
			return -1;
		}
	}
	if (chown(path, uid, gid) < 0 || chmod(path, 0600) < 0 || listen(fd, 16) < 0) {
		*err_r = xasprintf("mxgate_control_socket = %s: %s", path, strerror(errno));
		close(fd);
		(void)unlink(path);
		return -1;
	}
	return fd;
}

void
control_format(struct buf *out, const char *ident, const struct anvil_reply *r)
{
	buf_printf(out, "%s count=%d connection_rate=%d message_rate=%d recipient_rate=%d "
		   "newtls_rate=%d auth_rate=%d\n", log_escape_str(ident, 200), r->count, r->rate,
		   r->mail, r->rcpt, r->newtls, r->auth);
}

static void
control_list_line(void *ctx, const char *ident, const struct anvil_reply *r)
{
	control_format(ctx, ident, r);
}

/* The answer to one request line. */
static void
control_answer(struct control *ctl, const char *line, struct buf *out)
{
	time_t now = time(NULL);

	if (strcmp(line, "show") == 0) {
		(void)anvil_list(ctl->anvil, now, NULL, control_list_line, out);
	} else if (strncmp(line, "show ", 5) == 0) {
		(void)anvil_list(ctl->anvil, now, line + 5, control_list_line, out);
	} else if (strncmp(line, "clear ", 6) == 0 && line[6] != '\0') {
		buf_printf(out, "cleared %zu\n", anvil_clear(ctl->anvil, now, line + 6));
		msg_info("control: anvil clear %s", log_escape_str(line + 6, 200));
	} else {
		buf_puts(out, "error: expected show [CLIENT] or clear CLIENT\n");
	}
}

static void
control_conn_event(struct bufferevent *bev, short what, void *arg)
{
	(void)what;
	(void)arg;
	bufferevent_free(bev);
}

static void
control_conn_written(struct bufferevent *bev, void *arg)
{
	(void)arg;
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		bufferevent_free(bev);
}

static void
control_conn_read(struct bufferevent *bev, void *arg)
{
	struct control *ctl = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t n;
	char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF);
	struct buf out = BUF_INIT;

	if (line == NULL) {
		if (evbuffer_get_length(in) > CONTROL_MAX_LINE)
			bufferevent_free(bev);
		return;
	}
	if (n > CONTROL_MAX_LINE) {
		free(line);
		bufferevent_free(bev);
		return;
	}
	control_answer(ctl, line, &out);
	free(line);
	bufferevent_disable(bev, EV_READ);
	bufferevent_setcb(bev, NULL, control_conn_written, control_conn_event, ctl);
	if (out.len == 0) {
		buf_free(&out);
		bufferevent_free(bev);
		return;
	}
	bufferevent_write(bev, out.data, out.len);
	buf_free(&out);
}

static void
control_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int len,
	       void *arg)
{
	struct control *ctl = arg;
	struct bufferevent *bev;
	struct timeval tv = { CONTROL_READ_TIMEOUT, 0 };

	(void)sa;
	(void)len;
	bev = bufferevent_socket_new(evconnlistener_get_base(lev), fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		close(fd);
		return;
	}
	bufferevent_setcb(bev, control_conn_read, NULL, control_conn_event, ctl);
	bufferevent_set_timeouts(bev, &tv, &tv);
	bufferevent_enable(bev, EV_READ);
}

struct control *
control_start(int fd, const char *path, struct event_base *base, struct anvil *a)
{
	struct control *ctl = xcalloc(1, sizeof(*ctl));

	ctl->anvil = a;
	ctl->path = xstrdup(path);
	ctl->lev = evconnlistener_new(base, control_accept, ctl,
				      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (ctl->lev == NULL)
		msg_fatal("control socket %s: cannot listen", path);
	return ctl;
}

void
control_free(struct control **cp)
{
	struct control *ctl = *cp;

	if (ctl == NULL)
		return;
	evconnlistener_free(ctl->lev);
	(void)unlink(ctl->path);
	free(ctl->path);
	free(ctl);
	*cp = NULL;
}

static long long
control_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
control_request(const char *path, const char *line, struct buf *out, long timeout_ms,
		char **err_r)
{
	struct sockaddr_un sun;
	long long end = control_now_ms() + timeout_ms;
	struct buf req = BUF_INIT;
	size_t sent = 0;
	int fd;

	*err_r = NULL;
	if (control_addr(&sun, path, err_r) < 0)
		return -1;
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0
	    || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		*err_r = xasprintf("cannot connect to the control socket %s: %s (is `mxgate run` "
				   "running with this configuration?)", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	buf_printf(&req, "%s\n", line);
	(void)fcntl(fd, F_SETFL, O_NONBLOCK);
	for (;;) {
		struct pollfd p = { fd, sent < req.len ? POLLOUT : POLLIN, 0 };
		long long left = end - control_now_ms();
		ssize_t n;
		char tmp[4096];

		if (left <= 0) {
			*err_r = xasprintf("control socket %s: no answer within %ld ms", path,
					   timeout_ms);
			break;
		}
		if (poll(&p, 1, (int)left) < 0 && errno != EINTR) {
			*err_r = xasprintf("control socket %s: poll: %s", path, strerror(errno));
			break;
		}
		if (sent < req.len) {
			n = write(fd, req.data + sent, req.len - sent);
			if (n < 0 && errno != EAGAIN && errno != EINTR) {
				*err_r = xasprintf("control socket %s: %s", path, strerror(errno));
				break;
			}
			if (n > 0)
				sent += (size_t)n;
			continue;
		}
		n = read(fd, tmp, sizeof(tmp));
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			*err_r = xasprintf("control socket %s: %s", path, strerror(errno));
			break;
		}
		buf_append(out, tmp, (size_t)n);
	}
	close(fd);
	buf_free(&req);
	return *err_r != NULL ? -1 : 0;
}
