/*
 * service: what every SMTP session of one master.cf service shares, built
 * once from a configuration view (and again on reload): the limits and reply
 * settings as plain numbers, the EHLO keyword list, the forbidden-command
 * patterns, the anvil settings and client exceptions, and the recipient
 * policy (lookup tables).  Read-only after it is built, so sessions on every
 * event-loop thread share it without locks.  The recipient policy is
 * reference-counted (policy/recipient.h): the normal and the stress data
 * hold one reference each, and a lookup in flight holds its own.
 */
#ifndef MXGATE_SMTP_SERVICE_H
#define MXGATE_SMTP_SERVICE_H

#include <regex.h>
#include <sys/socket.h>
#include <stddef.h>

#include "net/tls.h"
#include "deliver/cleanup.h"

struct addrlist;
struct milter_conf;
struct maplist;
struct conf_service;
struct conf_view;
struct recipient_policy;
struct restrict_policy;

struct smtp_forbid {
	char  **words;		/* verbs that are never SMTP (CONNECT GET POST) */
	size_t	nwords;
	regex_t *res;		/* regexp: patterns matched against the verb */
	size_t	nres;
};

struct smtp_service {
	const struct conf_view *cf;
	char   *service_name;	/* master.cf service name, for logs */
	char   *anvil_service;	/* anvil's <service>: mxgate_anvil_service, else service_name */
	struct recipient_policy *policy;
	struct restrict_policy *acl;		/* the access restrictions (policy/restrict.h) */
	struct smtp_forbid forbid;
	char   *hostname;
	char   *banner;
	char  **ehlo;		/* EHLO keyword lines after the host name */
	size_t	nehlo;
	long	soft_limit, hard_limit, junk_limit, sleep_time, timeout;
	long	line_limit, size_limit, rcpt_limit, overshoot_limit;
	long	queue_minfree;		/* queue_minfree: bytes that MAIL needs free */
	int	soft_bounce, helo_required, vrfy_disabled, forbid_pipelining;
	int	bare_lf_reject, bare_lf_code, smtputf8;
	struct addrlist *bare_lf_exclusions;	/* smtpd_forbid_bare_newline_exclusions */
	char  **noop_cmds;	/* smtpd_noop_commands */
	size_t	nnoop;
	int	chunking;		/* CHUNKING offered: BDAT allowed */
	int	deadline;		/* smtpd_per_request_deadline */
	long	min_data_rate;
	long	body_memory_limit;	/* mxgate_message_memory_limit; 0 = none */
	/* anvil (POSTFIX_REFERENCE.md §3) */
	struct addrlist *exceptions;	/* smtpd_client_event_limit_exceptions */
	int	anvil_on;		/* some limit is set: talk to anvil */
	long	conn_count_limit, conn_rate_limit, msg_rate_limit, rcpt_rate_limit;
	int	v4_prefix, v6_prefix;
	long	newtls_rate_limit;	/* smtpd_client_new_tls_session_rate_limit */
	/* TLS (net/tls.h): the level and the context, shared by normal and stress data */
	struct tls_policy tls;
	struct tls_server *tls_srv;	/* NULL: no certificate (STARTTLS gets 454) or level none */
	size_t	ehlo_starttls;		/* index of "STARTTLS" in ehlo[]; nehlo when not offered */
	/* what cleanup(8) does to the content (deliver/cleanup.h) */
	struct cleanup_conf cleanup;
	struct maplist *header_checks, *body_checks, *mime_checks, *nested_checks;
	struct maplist *milter_checks;	/* milter_header_checks */
	struct addrlist *hdr_rewrite;	/* local_header_rewrite_clients' addresses */
	int	hdr_rewrite_all;	/* ... static:all */
	int	always_add_hdrs;	/* always_add_missing_headers */
	int	orig_rcpt;		/* enable_original_recipient: X-Original-To: */
	struct milter_conf *milters;	/* smtpd_milters (milter/milter_client.h); NULL: none */
	struct smtp_milter_maps *milter_maps;	/* smtpd_milter_maps; NULL: none */
	const struct conf_view *view;	/* the view it was built from (milter_conf_new() of
					 * a smtpd_milter_maps answer); lives as long as ss */
};

/*
 * smtpd_milter_maps: the tables, shared by the service data and the lookups
 * in flight on the pool (a session that goes leaves its job running).
 */
struct smtp_milter_maps {
	struct maplist *l;
	int	refs;		/* atomic */
};
struct smtp_milter_maps *smtp_milter_maps_ref(struct smtp_milter_maps *m);
void	smtp_milter_maps_unref(struct smtp_milter_maps **mp);

/* Does the client get the headers cleanup adds when missing (Message-Id, Date, From)? */
int smtp_service_adds_headers(const struct smtp_service *ss, const char *name,
			      const struct sockaddr *sa);

/*
 * Build the data for cs->view (*normal_r) and cs->view_stress (*stress_r);
 * the stress data shares the normal data's recipient policy.  Returns 0, or
 * -1 with *err_r set (caller frees) when a table cannot be opened or a
 * pattern is bad.  The pointers are untyped so that the network layer can
 * hold them without knowing this structure.
 */
int smtp_service_build(const struct conf_service *cs, void **normal_r, void **stress_r,
		       char **err_r);
/* Free what smtp_service_build made (normal, then stress; NULL is fine). */
void smtp_service_data_free(void *normal, void *stress);

/* Is this verb one of smtpd_noop_commands (case-insensitive)? */
int smtp_service_noop_command(const struct smtp_service *ss, const char *verb, size_t len);

/*
 * Is this unknown verb a non-SMTP command (smtpd_forbidden_commands, or a
 * mail header such as "Subject:")?  Postfix then answers 221 and hangs up.
 */
int smtp_service_forbidden(const struct smtp_service *ss, const char *verb, size_t len);

#endif
