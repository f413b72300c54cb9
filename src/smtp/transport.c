/*
 * transport: a bufferevent behind struct session_io.  See transport.h.
 */
#include "smtp/transport.h"

#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <errno.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "log/log.h"
#include "net/tls.h"
#include "smtp/session.h"
#include "util/buf.h"
#include "util/xalloc.h"

/* Input buffered at most (beyond it the kernel holds the client's bytes). */
#define TRANSPORT_READ_HIGH	(64 * 1024)
/* Unsent output at which the session is told it drained. */
#define TRANSPORT_WRITE_LOW	(16 * 1024)

struct transport {
	struct bufferevent *bev;	/* the socket's, or the TLS filter over it */
	struct event_base *base;
	SSL    *ssl;			/* TLS: the filter's (it frees it) */
	int	handshaking;		/* the TLS handshake is under way */
	struct event *hs_timer;		/* smtpd_starttls_timeout */
	struct event *flush_ev;		/* plaintext: write what the turn queued */
	int	writing;		/* plaintext: EV_WRITE on (a write did not finish) */
	char   *namaddr;		/* for the handshake's log lines */
	struct buf tls_errors;		/* the handshake's OpenSSL errors, as text */
	struct timeval rtmo, wtmo;	/* the session's timeouts (0: none) */
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

	if (t->writing && t->ssl == NULL && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
		t->writing = 0;
		bufferevent_disable(bev, EV_WRITE);	/* its event is not pending: no syscall */
	}
	if (t->closing) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			transport_finish(t);
	} else if (t->s != NULL) {
		session_on_drained(t->s);
	}
}

static void transport_tls_done(struct transport *t, int ok);

/*
 * Plaintext output: the replies of one loop turn are queued on the output
 * buffer with EV_WRITE off and written by transport_flush() at the end of
 * the turn, in one writev(2), without asking epoll whether the socket is
 * writable (it nearly always is).  Only output the kernel did not take
 * turns EV_WRITE on (t->writing), and the bufferevent then sends the rest
 * as before, under the write timeout, and reports errors as before; EV_WRITE
 * goes off again once that output has gone.  Per reply this saves two
 * epoll_ctl(2) calls (the write event added, then removed).
 */
static void
transport_flush(struct transport *t)
{
	struct evbuffer *out = bufferevent_get_output(t->bev);

	int	n;

	if (t->writing || t->done || evbuffer_get_length(out) == 0)
		return;
	/* A bufferevent's output is frozen at its start for everyone but itself. */
	evbuffer_unfreeze(out, 1);
	n = evbuffer_write(out, bufferevent_getfd(t->bev));
	evbuffer_freeze(out, 1);
	if (n < 0 || evbuffer_get_length(out) > 0) {
		/* EAGAIN, a short write or an error: the bufferevent's own path */
		t->writing = 1;
		bufferevent_enable(t->bev, EV_WRITE);
		return;
	}
	/* All gone: what the bufferevent's write callback would say. */
	if (t->closing)
		transport_finish(t);
	else if (t->s != NULL)
		session_on_drained(t->s);
}

static void
transport_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	transport_flush(arg);
}

static void
transport_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct transport *t = arg;

	(void)bev;
	if (t->handshaking && !t->closing) {
		if (what & BEV_EVENT_CONNECTED) {
			transport_tls_done(t, 1);
			return;
		}
		/* Postfix's tls_server_start() failure lines */
		if (t->tls_errors.len > 0 || ERR_peek_error() != 0) {
			char   *line = t->tls_errors.data, *nl;

			msg_info("SSL_accept error from %s: %d", t->namaddr, -1);
			while (line != NULL && (nl = strchr(line, '\n')) != NULL) {
				*nl = '\0';
				msg_warn("%s", line);
				line = nl + 1;
			}
			buf_reset(&t->tls_errors);
			tls_log_errors();
		} else if ((what & BEV_EVENT_ERROR) && EVUTIL_SOCKET_ERROR() != 0) {
			msg_info("SSL_accept error from %s: %s", t->namaddr,
				 strerror(EVUTIL_SOCKET_ERROR()));
		} else {
			msg_info("SSL_accept error from %s: lost connection", t->namaddr);
		}
		transport_tls_done(t, 0);
		return;
	}
	if (what & BEV_EVENT_CONNECTED)
		return;
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

	t->base = base;
	if ((t->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL)
		msg_fatal("transport: cannot create a bufferevent");
	t->closed = closed;
	t->owner = owner;
	bufferevent_setcb(t->bev, transport_read_cb, transport_write_cb, transport_event_cb, t);
	/* A client that keeps sending while its replies wait is not read further. */
	bufferevent_setwatermark(t->bev, EV_READ, 0, TRANSPORT_READ_HIGH);
	bufferevent_setwatermark(t->bev, EV_WRITE, TRANSPORT_WRITE_LOW, 0);
	bufferevent_disable(t->bev, EV_READ | EV_WRITE);
	if ((t->flush_ev = event_new(base, -1, 0, transport_flush_cb, t)) == NULL)
		msg_fatal("transport: cannot create an event");
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
	bufferevent_free(t->bev);	/* a TLS filter frees its SSL and the socket's bufferevent */
	if (t->hs_timer != NULL)
		event_free(t->hs_timer);
	event_free(t->flush_ev);
	free(t->namaddr);
	buf_free(&t->tls_errors);
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

/*
 * With TLS: the decrypted bytes (the filter's buffer, and what OpenSSL has
 * decrypted and not handed out), plus the records not yet decrypted (in
 * the socket's buffer and the kernel), which in an SMTP session can only
 * be the client's next commands: Postfix reads (and decrypts) one byte
 * there to find out.
 */
static size_t
tio_pending(void *io)
{
	struct transport *t = io;
	struct bufferevent *under = t->ssl != NULL ? bufferevent_get_underlying(t->bev) : NULL;
	int n = 0;
	size_t have = evbuffer_get_length(bufferevent_get_input(t->bev));

	if (ioctl(bufferevent_getfd(t->bev), FIONREAD, &n) < 0)
		n = 0;
	if (t->ssl != NULL) {
		have += (size_t)SSL_pending(t->ssl);
		if (under != NULL)
			have += evbuffer_get_length(bufferevent_get_input(under));
	}
	return have + (n > 0 ? (size_t)n : 0);
}

static size_t
tio_peek_copy(void *io, char *out, size_t max)
{
	struct transport *t = io;
	struct evbuffer *in = bufferevent_get_input(t->bev);
	ssize_t n;

	if (evbuffer_get_length(in) > 0)
		n = evbuffer_copyout(in, out, max);
	else if (t->ssl != NULL)
		n = 0;	/* still encrypted: nothing to show */
	else
		n = recv(bufferevent_getfd(t->bev), out, max, MSG_PEEK | MSG_DONTWAIT);
	return n > 0 ? (size_t)n : 0;
}

static void
tio_read(void *io, int on)
{
	struct transport *t = io;

	if (t->handshaking)
		return;		/* the handshake reads; the session waits for its end */
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
	if (t->ssl == NULL && !t->writing)
		event_active(t->flush_ev, EV_WRITE, 0);	/* at the end of this turn */
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
	t->rtmo.tv_sec = read_sec > 0 ? read_sec : 0;
	t->wtmo.tv_sec = write_sec > 0 ? write_sec : 0;
	if (!t->handshaking)
		bufferevent_set_timeouts(t->bev, read_sec > 0 ? &t->rtmo : NULL,
					 write_sec > 0 ? &t->wtmo : NULL);
}

static void
tio_close(void *io)
{
	struct transport *t = io;

	if (t->closing)
		return;
	t->closing = 1;
	bufferevent_disable(t->bev, EV_READ);
	if (t->ssl == NULL && !t->writing) {
		event_del(t->flush_ev);
		transport_flush(t);	/* finishes when everything went */
		if (t->done || t->writing)
			return;
	}
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

/* ---- TLS ------------------------------------------------------------------ */

static void
transport_tls_done(struct transport *t, int ok)
{
	struct tls_info info;

	t->handshaking = 0;
	if (t->hs_timer != NULL)
		event_del(t->hs_timer);
	bufferevent_disable(t->bev, EV_READ);
	bufferevent_set_timeouts(t->bev, t->rtmo.tv_sec > 0 ? &t->rtmo : NULL,
				 t->wtmo.tv_sec > 0 ? &t->wtmo : NULL);
	if (ok)
		tls_info_get(t->ssl, &info);
	if (t->s != NULL)
		session_on_tls(t->s, ok ? &info : NULL);
}

/* smtpd_starttls_timeout: a client that stalls in the handshake is cut off. */
static void
transport_hs_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct transport *t = arg;

	(void)fd;
	(void)what;
	if (!t->handshaking)
		return;
	msg_info("SSL_accept error from %s: %s", t->namaddr, strerror(ETIMEDOUT));
	ERR_clear_error();
	transport_tls_done(t, 0);
}

/*
 * Put a TLS filter over the socket's bufferevent.  What the session wrote
 * is already queued on the socket's bufferevent, so it goes out in
 * plaintext first; the plaintext input that nobody consumed is dropped
 * (CVE-2011-0411: commands pipelined behind STARTTLS must not run as if
 * they had come over TLS).
 */
static int
tio_starttls(void *io, void *ssl, long timeout_sec, const char *namaddr)
{
	struct transport *t = io;
	struct bufferevent *tls;
	struct evbuffer *in = bufferevent_get_input(t->bev);
	struct timeval tmo = { timeout_sec, 0 };

	if (t->ssl != NULL || t->closing)
		return -1;
	/* The plaintext reply goes out first, by the socket's bufferevent as before. */
	event_del(t->flush_ev);
	t->writing = 0;
	bufferevent_enable(t->bev, EV_WRITE);
	evbuffer_drain(in, evbuffer_get_length(in));
	bufferevent_set_timeouts(t->bev, NULL, NULL);
	tls = bufferevent_openssl_filter_new(t->base, t->bev, ssl, BUFFEREVENT_SSL_ACCEPTING,
					     BEV_OPT_CLOSE_ON_FREE);
	if (tls == NULL)
		return -1;	/* the caller frees ssl */
	/* A peer that closes without close_notify is an EOF, as Postfix sees it. */
	bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
	tls_ssl_capture_errors(ssl, &t->tls_errors);
	tls_ssl_set_peer(ssl, namaddr);
	t->bev = tls;
	t->ssl = ssl;
	t->handshaking = 1;
	free(t->namaddr);
	t->namaddr = xstrdup(namaddr);
	bufferevent_setcb(tls, transport_read_cb, transport_write_cb, transport_event_cb, t);
	bufferevent_setwatermark(tls, EV_READ, 0, TRANSPORT_READ_HIGH);
	bufferevent_setwatermark(tls, EV_WRITE, TRANSPORT_WRITE_LOW, 0);
	bufferevent_enable(tls, EV_READ | EV_WRITE);
	if (t->hs_timer == NULL)
		t->hs_timer = evtimer_new(t->base, transport_hs_timeout, t);
	evtimer_add(t->hs_timer, &tmo);
	return 0;
}

const struct session_io transport_io = {
	.starttls = tio_starttls,
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
