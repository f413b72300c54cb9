/*
 * conn: an accepted socket on its way through a session.  It binds the
 * pieces: the service data (acquired for the connection's life, checked
 * for changed indexed tables first), the PROXY header when the service has
 * smtpd_upstream_proxy_protocol = haproxy (smtp/proxy.h: read on the loop
 * before anything else, within smtpd_upstream_proxy_timeout; its client
 * address replaces the socket's for the whole session; a bad header, EOF
 * or the timeout gives Postfix's warning and, after "connect from", 421
 * 4.3.0 Server local error), the transport (smtp/transport.h), the
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
