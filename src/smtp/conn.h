/*
 * conn: an accepted socket on its way through a session.  It binds the
 * pieces: the service data (acquired for the connection's life, checked
 * for changed indexed tables first), the transport (smtp/transport.h), the
 * client-name lookup (net/peername.h), and the protocol (smtp/session.h).
 * It frees them at a safe point once the transport has closed, and tells
 * the server the session ended (session cap).
 *
 * THREADS: the worker's loop thread, for the connection's whole life.
 */
#ifndef MXGATE_SMTP_CONN_H
#define MXGATE_SMTP_CONN_H

#include <sys/socket.h>

struct conn;
struct service_rt;
struct worker;

/* Take over an accepted socket: runs on w's thread. */
void conn_start(struct worker *w, struct service_rt *svc, int fd, const struct sockaddr *sa,
		socklen_t salen);

/* Free every connection of w (shutdown only, after its loop has stopped). */
void conn_free_all(struct worker *w);

#endif
