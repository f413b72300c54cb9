/*
 * transport: a bufferevent behind struct session_io.  See transport.h.
 */
#include "smtp/transport.h"

#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "log/log.h"
#include "smtp/session.h"
#include "util/xalloc.h"

/* Input buffered at most (beyond it the kernel holds the client's bytes). */
#define TRANSPORT_READ_HIGH	(64 * 1024)
/* Unsent output at which the session is told it drained. */
#define TRANSPORT_WRITE_LOW	(16 * 1024)

struct transport {
	struct bufferevent *bev;
	struct session *s;
	void	(*closed)(void *owner);
	void   *owner;
	int	closing;	/* io->close() was called */
	int	done;		/* closed() was called */
};

static void
transport_finish(struct transport *t)
{
	if (t->done)
		return;
	t->done = 1;
	bufferevent_disable(t->bev, EV_READ | EV_WRITE);
	t->closed(t->owner);
}

static void
transport_read_cb(struct bufferevent *bev, void *arg)
{
	struct transport *t = arg;

	(void)bev;
	if (!t->closing && t->s != NULL)
		session_on_input(t->s);
}

static void
transport_write_cb(struct bufferevent *bev, void *arg)
{
	struct transport *t = arg;

	if (t->closing) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			transport_finish(t);
	} else if (t->s != NULL) {
		session_on_drained(t->s);
	}
}

static void
transport_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct transport *t = arg;

	(void)bev;
	if (t->closing || t->s == NULL) {
		transport_finish(t);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT)
		session_on_timeout(t->s);
	else
		session_on_eof(t->s);
}

struct transport *
transport_new(struct event_base *base, int fd, void (*closed)(void *owner), void *owner)
{
	struct transport *t = xcalloc(1, sizeof(*t));

	if ((t->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL)
		msg_fatal("transport: cannot create a bufferevent");
	t->closed = closed;
	t->owner = owner;
	bufferevent_setcb(t->bev, transport_read_cb, transport_write_cb, transport_event_cb, t);
	/* A client that keeps sending while its replies wait is not read further. */
	bufferevent_setwatermark(t->bev, EV_READ, 0, TRANSPORT_READ_HIGH);
	bufferevent_setwatermark(t->bev, EV_WRITE, TRANSPORT_WRITE_LOW, 0);
	bufferevent_disable(t->bev, EV_READ);
	bufferevent_enable(t->bev, EV_WRITE);
	return t;
}

void
transport_attach(struct transport *t, struct session *s)
{
	t->s = s;
}

void
transport_free(struct transport **tp)
{
	struct transport *t = *tp;

	if (t == NULL)
		return;
	/*
	 * Drop what the client did not read and what it sent that nobody
	 * handled: a bufferevent freed with a write still pending after its loop
	 * stopped (shutdown with a client that reads nothing) is otherwise never
	 * finalized.
	 */
	bufferevent_disable(t->bev, EV_READ | EV_WRITE);
	evbuffer_drain(bufferevent_get_output(t->bev), evbuffer_get_length(bufferevent_get_output(t->bev)));
	evbuffer_drain(bufferevent_get_input(t->bev), evbuffer_get_length(bufferevent_get_input(t->bev)));
	bufferevent_free(t->bev);
	free(t);
	*tp = NULL;
}

/* ---- struct session_io --------------------------------------------------- */

static size_t
tio_peek(void *io, const char **data_r)
{
	struct transport *t = io;
	struct evbuffer *in = bufferevent_get_input(t->bev);
	struct evbuffer_iovec v;

	if (evbuffer_get_length(in) == 0 || evbuffer_peek(in, -1, NULL, &v, 1) < 1) {
		*data_r = NULL;
		return 0;
	}
	*data_r = v.iov_base;
	return v.iov_len;
}

static void
tio_consume(void *io, size_t n)
{
	struct transport *t = io;

	evbuffer_drain(bufferevent_get_input(t->bev), n);
}

static size_t
tio_pending(void *io)
{
	struct transport *t = io;
	int n = 0;

	if (ioctl(bufferevent_getfd(t->bev), FIONREAD, &n) < 0)
		n = 0;
	return evbuffer_get_length(bufferevent_get_input(t->bev)) + (n > 0 ? (size_t)n : 0);
}

static size_t
tio_peek_copy(void *io, char *out, size_t max)
{
	struct transport *t = io;
	struct evbuffer *in = bufferevent_get_input(t->bev);
	ssize_t n;

	if (evbuffer_get_length(in) > 0)
		n = evbuffer_copyout(in, out, max);
	else
		n = recv(bufferevent_getfd(t->bev), out, max, MSG_PEEK | MSG_DONTWAIT);
	return n > 0 ? (size_t)n : 0;
}

static void
tio_read(void *io, int on)
{
	struct transport *t = io;

	if (on && !t->closing)
		bufferevent_enable(t->bev, EV_READ);
	else
		bufferevent_disable(t->bev, EV_READ);
}

static void
tio_write(void *io, const void *data, size_t len)
{
	struct transport *t = io;

	bufferevent_write(t->bev, data, len);
}

static size_t
tio_unsent(void *io)
{
	struct transport *t = io;

	return evbuffer_get_length(bufferevent_get_output(t->bev));
}

static void
tio_timeouts(void *io, long read_sec, long write_sec)
{
	struct transport *t = io;
	struct timeval r = { read_sec, 0 }, w = { write_sec, 0 };

	bufferevent_set_timeouts(t->bev, read_sec > 0 ? &r : NULL, write_sec > 0 ? &w : NULL);
}

static void
tio_close(void *io)
{
	struct transport *t = io;

	if (t->closing)
		return;
	t->closing = 1;
	bufferevent_disable(t->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(t->bev)) == 0) {
		transport_finish(t);
		return;
	}
	/*
	 * A client that never reads its last reply is not waited for past the
	 * write timeout (smtpd_timeout): writing is on again, also after a
	 * timeout turned it off.
	 */
	bufferevent_enable(t->bev, EV_WRITE);
}

const struct session_io transport_io = {
	.peek = tio_peek,
	.consume = tio_consume,
	.pending = tio_pending,
	.peek_copy = tio_peek_copy,
	.read = tio_read,
	.write = tio_write,
	.unsent = tio_unsent,
	.timeouts = tio_timeouts,
	.close = tio_close,
};
