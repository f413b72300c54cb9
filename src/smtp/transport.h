/*
 * transport: a client connection on a bufferevent, as a struct session_io
 * (smtp/session.h).  It owns the socket and the bufferevent; it answers
 * "how much input is pending" from its own buffer plus what the kernel
 * holds (FIONREAD), so that the pipelining checks never read the socket
 * behind its back.
 *
 * TLS: io->starttls() puts libevent's OpenSSL filter over the socket's
 * bufferevent (server side).  What was written goes out in plaintext first
 * (the 220); plaintext input nobody consumed is dropped (CVE-2011-0411).
 * The handshake runs on the loop, bounded by a timer (smtpd_starttls_timeout;
 * then "SSL_accept error from ...: Connection timed out"); its end is
 * session_on_tls() with the handshake's facts, or NULL after Postfix's
 * failure lines (SSL_accept error, TLS library problem) were logged.  The
 * session's timeouts are off during the handshake and back after it.  From
 * then on peek/consume see decrypted bytes, and pending() counts them plus
 * the records not yet decrypted (in the socket's buffer and the kernel).
 *
 * Buffering: at most 64 KiB of input is read ahead of the session (beyond
 * it the kernel holds the client's bytes); the session is told the output
 * drained when unsent replies fall to 16 KiB.  Writing (plaintext): what a
 * loop turn writes goes out at the turn's end in one writev(2), with no
 * write event; only output the kernel did not take is left to the
 * bufferevent's write event, under the write timeout.
 *
 * Closing: io->close() stops reading, sends what is queued (bounded by the
 * write timeout, smtpd_timeout), then calls the owner's closed(owner)
 * exactly once, possibly from inside close() itself: the owner must free
 * the transport and its session later, at a safe point.  A client that
 * goes away, or a write timeout, while closing ends it at once.
 *
 * THREADS: one loop thread (the base's).
 */
#ifndef MXGATE_SMTP_TRANSPORT_H
#define MXGATE_SMTP_TRANSPORT_H

struct event_base;
struct session;
struct session_io;
struct transport;

/* The operations; pass the transport itself as their context. */
extern const struct session_io transport_io;

/*
 * Take over the connected socket fd (closed with the transport).  Reading
 * starts disabled; events go to the session set with transport_attach().
 */
struct transport *transport_new(struct event_base *base, int fd, void (*closed)(void *owner),
				void *owner);
void transport_attach(struct transport *t, struct session *s);
void transport_free(struct transport **tp);

#endif
