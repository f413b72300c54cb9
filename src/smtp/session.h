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

struct conf_service;

/*
 * Prepare what every session of a service shares (recipient tables,
 * forbidden-command patterns, EHLO keywords, anvil settings), from cs->view
 * (*normal_r) and cs->view_stress (*stress_r).  Called per service before
 * accepting and again on reload; returns 0, or -1 with *err_r set (caller
 * frees).  The caller stores the results in service_rt.smtp/.smtp_stress.
 */
int session_service_build(const struct conf_service *cs, void **normal_r, void **stress_r,
			  char **err_r);
/* Free per-service data that a reload replaced (normal, then stress). */
void session_service_data_free(void *normal, void *stress);

/* Take over an accepted socket: runs on w's thread. */
void session_start(struct worker *w, struct service_rt *svc, int fd, const struct sockaddr *sa,
		   socklen_t salen);

/* Free every session of w (shutdown only, after its loop has stopped). */
void session_free_all(struct worker *w);

#endif
