/*
 * session: one SMTP session, from accept to close, on one worker's event
 * loop.  It reads commands with a resumable line reader, runs them through
 * the command table, writes Postfix's replies, paces them with the tarpit
 * timer once the error count reaches smtpd_soft_error_limit, and hands
 * finished messages to the writer pool (no disk work on the loop thread).
 *
 * A session is never freed inside one of its own callbacks: it is marked
 * closing and freed from a separate event at a safe point.
 */
#ifndef MXGATE_SMTP_SESSION_H
#define MXGATE_SMTP_SESSION_H

#include <sys/socket.h>

struct worker;
struct service_rt;

/* Take over an accepted socket: runs on w's thread. */
void session_start(struct worker *w, struct service_rt *svc, int fd, const struct sockaddr *sa,
		   socklen_t salen);

/* Free every session of w (shutdown only, after its loop has stopped). */
void session_free_all(struct worker *w);

#endif
