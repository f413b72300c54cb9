/*
 * memio: an in-memory transport (struct session_io) for unit tests and the
 * session fuzzer.  The test plays the client: memio_feed() is what the
 * client sends (delivered to the session like a bufferevent's read
 * callback, only while the session reads), out collects what the server
 * wrote.  A slow client can be simulated: with slow set, written bytes
 * count as unsent until memio_drain().
 */
#ifndef MXGATE_TESTS_MEMIO_H
#define MXGATE_TESTS_MEMIO_H

#include <stddef.h>

#include "util/buf.h"

struct session;

struct memio {
	struct session *s;
	struct buf in;		/* sent by the client, not consumed yet */
	size_t	in_off;
	size_t	consumed;	/* bytes consumed so far */
	struct buf out;		/* everything written */
	size_t	unsent;		/* with slow: written and not drained */
	int	slow;
	int	reading;
	int	closed;
	long	read_tmo, write_tmo;
	/* called for every write (before it is appended to out), if set */
	void	(*on_write)(struct memio *m, const char *data, size_t len);
	/*
	 * starttls(): counted, the SSL object freed, the unconsumed input
	 * dropped (as the transport does); out.len at the call.  The test then
	 * calls session_on_tls() itself.
	 */
	int	tls_calls;
	size_t	tls_out_len;
	long	tls_timeout;
};

extern const struct session_io memio_ops;

void memio_init(struct memio *m);
void memio_free(struct memio *m);
/* The client sends len bytes. */
void memio_feed(struct memio *m, const void *data, size_t len);
void memio_feeds(struct memio *m, const char *s);
/* The client reads everything: unsent output drains (session_on_drained). */
void memio_drain(struct memio *m);
/* Take the text written since the last call (caller frees). */
char *memio_take(struct memio *m);

#endif
