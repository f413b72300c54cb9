/*
 * memio: the in-memory transport.  See memio.h.
 */
#include "memio.h"

#include <stdlib.h>
#include <string.h>

#include "net/tls.h"
#include "smtp/session.h"
#include "util/xalloc.h"

void
memio_init(struct memio *m)
{
	memset(m, 0, sizeof(*m));
}

void
memio_free(struct memio *m)
{
	buf_free(&m->in);
	buf_free(&m->out);
}

void
memio_feed(struct memio *m, const void *data, size_t len)
{
	if (m->in_off > 0 && m->in_off == m->in.len) {
		buf_reset(&m->in);
		m->in_off = 0;
	}
	buf_append(&m->in, data, len);
	if (m->reading && !m->closed && m->s != NULL)
		session_on_input(m->s);
}

void
memio_feeds(struct memio *m, const char *s)
{
	memio_feed(m, s, strlen(s));
}

void
memio_drain(struct memio *m)
{
	m->unsent = 0;
	if (!m->closed && m->s != NULL)
		session_on_drained(m->s);
}

char *
memio_take(struct memio *m)
{
	char *s = xstrndup(m->out.data ? m->out.data : "", m->out.len);

	buf_reset(&m->out);
	return s;
}

static size_t
mio_peek(void *io, const char **data_r)
{
	struct memio *m = io;

	if (m->in_off == m->in.len) {
		*data_r = NULL;
		return 0;
	}
	*data_r = m->in.data + m->in_off;
	return m->in.len - m->in_off;
}

static void
mio_consume(void *io, size_t n)
{
	struct memio *m = io;

	m->in_off += n;
	m->consumed += n;
}

static size_t
mio_pending(void *io)
{
	struct memio *m = io;

	return m->in.len - m->in_off;
}

static size_t
mio_peek_copy(void *io, char *out, size_t max)
{
	struct memio *m = io;
	size_t n = m->in.len - m->in_off;

	if (n > max)
		n = max;
	if (n > 0)
		memcpy(out, m->in.data + m->in_off, n);
	return n;
}

static void
mio_read(void *io, int on)
{
	struct memio *m = io;

	m->reading = on;
}

static void
mio_write(void *io, const void *data, size_t len)
{
	struct memio *m = io;

	if (m->on_write)
		m->on_write(m, data, len);
	buf_append(&m->out, data, len);
	if (m->slow)
		m->unsent += len;
}

static size_t
mio_unsent(void *io)
{
	return ((struct memio *)io)->unsent;
}

static void
mio_timeouts(void *io, long read_sec, long write_sec)
{
	struct memio *m = io;

	m->read_tmo = read_sec;
	m->write_tmo = write_sec;
}

static void
mio_close(void *io)
{
	struct memio *m = io;

	m->closed = 1;
	m->reading = 0;
}

static int
mio_starttls(void *io, void *ssl, long timeout_sec, const char *namaddr)
{
	struct memio *m = io;

	(void)namaddr;
	tls_ssl_free(ssl);
	m->tls_calls++;
	m->tls_out_len = m->out.len;
	m->tls_timeout = timeout_sec;
	m->in_off = m->in.len;	/* plaintext behind STARTTLS is dropped */
	return 0;
}

const struct session_io memio_ops = {
	.starttls = mio_starttls,
	.peek = mio_peek,
	.consume = mio_consume,
	.pending = mio_pending,
	.peek_copy = mio_peek_copy,
	.read = mio_read,
	.write = mio_write,
	.unsent = mio_unsent,
	.timeouts = mio_timeouts,
	.close = mio_close,
};
