#include "smtp/session.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <regex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "conf/conf.h"
#include "deliver/maildir.h"
#include "deliver/pool.h"
#include "log/log.h"
#include "net/peername.h"
#include "net/server.h"
#include "policy/addrlist.h"
#include "policy/anvil.h"
#include "policy/recipient.h"
#include "smtp/address.h"
#include "smtp/dataread.h"
#include "smtp/linereader.h"
#include "smtp/reply.h"
#include "smtp/service.h"
#include "util/buf.h"
#include "util/xalloc.h"

/* Input buffered at most (beyond it the kernel holds the client's bytes). */
#define SESSION_READ_HIGH	(64 * 1024)
/* Unsent replies: above HIGH no command runs until they drain to LOW. */
#define SESSION_WRITE_HIGH	(64 * 1024)
#define SESSION_WRITE_LOW	(16 * 1024)

/* ---- the command table ------------------------------------------------ */

struct session;

enum cmd_flags {
	CMD_JUNK = 1 << 0,	/* counts against smtpd_junk_command_limit */
	CMD_LAST = 1 << 1,	/* must be last in a pipelined group (RFC 2920) */
};

/* Handlers return 0 on success, -1 on failure (counted as an error). */
typedef int (*cmd_fn)(struct session *s, const char *args);

static int cmd_helo(struct session *, const char *);
static int cmd_ehlo(struct session *, const char *);
static int cmd_starttls(struct session *, const char *);
static int cmd_auth(struct session *, const char *);
static int cmd_mail(struct session *, const char *);
static int cmd_rcpt(struct session *, const char *);
static int cmd_data(struct session *, const char *);
static int cmd_bdat(struct session *, const char *);
static int cmd_rset(struct session *, const char *);
static int cmd_noop(struct session *, const char *);
static int cmd_vrfy(struct session *, const char *);
static int cmd_etrn(struct session *, const char *);
static int cmd_quit(struct session *, const char *);

/* Postfix's order, which is also the order of the "disconnect" log line. */
static const struct cmd {
	const char *name;
	const char *stat;	/* name in the disconnect line */
	cmd_fn	fn;
	int	flags;
} cmd_table[] = {
	{ "HELO", "helo", cmd_helo, CMD_JUNK | CMD_LAST },
	{ "EHLO", "ehlo", cmd_ehlo, CMD_JUNK | CMD_LAST },
	{ "STARTTLS", "starttls", cmd_starttls, 0 },
	{ "AUTH", "auth", cmd_auth, 0 },
	{ "MAIL", "mail", cmd_mail, 0 },
	{ "RCPT", "rcpt", cmd_rcpt, 0 },
	{ "DATA", "data", cmd_data, CMD_LAST },
	{ "BDAT", "bdat", cmd_bdat, 0 },
	{ "RSET", "rset", cmd_rset, CMD_JUNK },
	{ "NOOP", "noop", cmd_noop, CMD_JUNK | CMD_LAST },
	{ "VRFY", "vrfy", cmd_vrfy, CMD_JUNK | CMD_LAST },
	{ "ETRN", "etrn", cmd_etrn, CMD_JUNK },
	{ "QUIT", "quit", cmd_quit, 0 },
};

#define CMD_COUNT	(sizeof(cmd_table) / sizeof(cmd_table[0]))
#define CMD_UNKNOWN	CMD_COUNT	/* stats slot for unknown commands */

/* A command's row, for its statistics. */
static size_t
cmd_index(cmd_fn fn)
{
	size_t i;

	for (i = 0; i < CMD_COUNT && cmd_table[i].fn != fn; i++)
		;
	return i;
}

/* ---- the session ------------------------------------------------------ */

enum sess_state {
	S_LOOKUP,	/* waiting for the client's name; no banner yet */
	S_CMD,		/* reading commands */
	S_DATA,		/* reading a DATA body */
	S_BDAT,		/* reading a BDAT chunk */
	S_DELIVER,	/* the writer pool has the message */
};

struct outline {		/* a reply line waiting for the tarpit timer */
	struct outline *next;
	int	delay;
	size_t	len;
	char	data[];
};

struct rcpt {
	char   *addr;		/* internal form: lookups, replies */
	char   *quoted;		/* RFC 5321 form: headers, logs */
	char   *maildir;
};

struct deliver_job;

struct session {
	struct session *next, *prev;	/* worker's list */
	struct worker *w;
	struct service_rt *svc;
	struct smtp_service *ss;
	struct service_gen *gen;	/* keeps ss alive across a reload */
	struct bufferevent *bev;
	struct event *free_ev;		/* frees the session at a safe point */
	struct event *resume_ev;	/* continues input processing later */
	struct event *tarpit_ev;
	struct peername_req *lookup;
	enum sess_state state;
	const char *where;		/* for "<reason> after <where>" */
	char	addr[64];
	char   *namaddr;		/* "name[addr]" */
	char   *helo;
	int	esmtp;
	int	closing, hangup, tarpit_armed;
	int	output_blocked;		/* replies wait for the client: no new commands */
	int	error_count, junk_cmds, rcpt_overshoot;
	unsigned stat_ok[CMD_COUNT + 1], stat_total[CMD_COUNT + 1];
	struct outline *out_head, *out_tail;
	struct linereader lr;

	/* the mail transaction */
	char   *sender;
	struct rcpt *rcpts;
	size_t	nrcpts, rcpt_cap;
	char	queue_id[16];
	struct buf body;
	struct datareader dr;
	struct bdat_state bdat;
	size_t	bdat_left;		/* bytes of the current chunk still to read */
	size_t	bdat_total;
	int	bdat_last, bdat_discard, bdat_used;
	struct deliver_job *job;
	struct timeval t_arrival;
	size_t	body_charged;		/* bytes of body counted in srv->body_bytes */
	int	body_refused;		/* over mxgate_message_memory_limit: 452 at the end */

	/* anvil */
	char   *ident;			/* "<service>:<client key>"; NULL: exempt or off */
	char   *range;			/* the client key when it is a network, for logs */
	int	anvil_connected;	/* a connect was counted: disconnect at the end */
	struct sockaddr_storage sa;

	/* smtpd_per_request_deadline */
	struct event *deadline_ev;
	int	deadline_armed;
	struct timeval deadline_at;
};

struct deliver_job {
	struct session *s;
	struct maildir_msg msg;
	struct maildir_rcpt *rcpts;
	size_t	nrcpts;
	struct buf received;		/* the Received: header */
	struct buf body;		/* the message, taken over from the session */
	struct buf err;
	int	rc;
	int	is_bdat;
	size_t	size;
	char   *sender_quoted;
	size_t	body_charged;		/* moved from the session with the body */
};

static void session_process(struct session *s);
static void session_close(struct session *s);
static void session_transaction_reset(struct session *s);

/* ---- helpers ---------------------------------------------------------- */

static const char *const session_state_name[] = {
	[S_LOOKUP] = "LOOKUP", [S_CMD] = "CMD", [S_DATA] = "DATA", [S_BDAT] = "BDAT",
	[S_DELIVER] = "DELIVER",
};

/* The one place that changes a session's state (logged with -v). */
static void
session_enter_state(struct session *s, enum sess_state state)
{
	if (msg_verbose && s->state != state)
		msg_debug("%s: state %s -> %s", s->addr, session_state_name[s->state],
			  session_state_name[state]);
	s->state = state;
}

static void
session_queue_id(char out[16])
{
	static atomic_uint seq;
	struct timeval tv;
	unsigned n = atomic_fetch_add(&seq, 1);

	/* Postfix-like short id: microseconds (5 hex) then a per-process sequence mixed with time. */
	gettimeofday(&tv, NULL);
	snprintf(out, 16, "%05X%06X", (unsigned)tv.tv_usec & 0xFFFFF,
		 ((unsigned)tv.tv_sec * 2654435761u + n * 40503u) & 0xFFFFFF);
}

static int
session_is_busy(const struct session *s)
{
	return s->closing || s->out_head != NULL || s->output_blocked || s->state == S_DELIVER
		|| s->state == S_LOOKUP;
}

/* The event loop's cached time, in whole seconds, for anvil. */
static time_t
session_now(struct session *s)
{
	struct timeval tv;

	event_base_gettimeofday_cached(s->w->base, &tv);
	return tv.tv_sec;
}

static void
session_anvil_ignore(void *ctx, const struct anvil_reply *r)
{
	(void)ctx;
	(void)r;
}

/* ---- output and the tarpit -------------------------------------------- */

/*
 * A client that sends commands but does not read the replies must not make
 * us queue replies without end: above SESSION_WRITE_HIGH unsent bytes no
 * further command is processed until the output has drained to
 * SESSION_WRITE_LOW (the write callback), as a blocking write would in
 * Postfix.  The kernel's buffers then push back on the client.
 */
static void
session_write(struct session *s, const char *data, size_t len)
{
	bufferevent_write(s->bev, data, len);
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) > SESSION_WRITE_HIGH)
		s->output_blocked = 1;
}

static void session_pump(struct session *s);

static void
session_tarpit_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	(void)fd;
	(void)what;
	s->tarpit_armed = 0;
	if (s->out_head != NULL)
		s->out_head->delay = 0;
	session_pump(s);
}

/* Write queued lines in order; a line marked delay first waits smtpd_error_sleep_time. */
static void
session_pump(struct session *s)
{
	while (s->out_head != NULL) {
		struct outline *o = s->out_head;

		if (o->delay) {
			if (!s->tarpit_armed) {
				struct timeval tv = { s->ss->sleep_time, 0 };

				evtimer_add(s->tarpit_ev, &tv);
				s->tarpit_armed = 1;
			}
			return;
		}
		session_write(s, o->data, o->len);
		s->out_head = o->next;
		if (s->out_head == NULL)
			s->out_tail = NULL;
		free(o);
	}
	if (s->hangup)
		session_close(s);
	else
		event_active(s->resume_ev, EV_READ, 0);
}

/*
 * Send reply lines (CRLF-terminated, one or more).  Postfix sleeps before
 * every reply write once error_count >= smtpd_soft_error_limit; here each
 * such line waits for a timer instead, and input is not processed meanwhile.
 * A 421 or 521 reply ends the session after it is written.
 */
static void
session_send(struct session *s, const struct buf *lines)
{
	const char *p = buf_str(lines), *end = p + lines->len;
	int delay = s->ss->sleep_time > 0 && s->error_count >= s->ss->soft_limit;

	if (lines->len >= 3 && (strncmp(p, "421", 3) == 0 || strncmp(p, "521", 3) == 0))
		s->hangup = 1;
	if (!delay && s->out_head == NULL) {
		session_write(s, p, lines->len);
		if (s->hangup)
			session_close(s);
		return;
	}
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
		struct outline *o = xmalloc(sizeof(*o) + len);

		o->next = NULL;
		o->delay = delay;
		o->len = len;
		memcpy(o->data, p, len);
		if (s->out_tail)
			s->out_tail->next = o;
		else
			s->out_head = o;
		s->out_tail = o;
		p += len;
	}
	session_pump(s);
}

static int
session_reply(struct session *s, enum reply_id id, ...)
{
	struct buf b = BUF_INIT;
	va_list ap;
	int code;

	va_start(ap, id);
	code = reply_vformat(&b, s->ss->soft_bounce, id, ap);
	va_end(ap);
	session_send(s, &b);
	buf_free(&b);
	return code;
}

static int
session_reply_text(struct session *s, const char *text)
{
	struct buf b = BUF_INIT;
	int code = reply_raw(&b, s->ss->soft_bounce, text);

	session_send(s, &b);
	buf_free(&b);
	return code;
}

/* ---- life cycle ------------------------------------------------------- */

static void
session_log_disconnect(struct session *s)
{
	struct buf b = BUF_INIT;
	unsigned ok = 0, total = 0;
	size_t i;

	for (i = 0; i <= CMD_COUNT; i++) {
		if (s->stat_total[i] == 0)
			continue;
		buf_printf(&b, " %s=", i == CMD_UNKNOWN ? "unknown" : cmd_table[i].stat);
		if (s->stat_ok[i] == s->stat_total[i])
			buf_printf(&b, "%u", s->stat_ok[i]);
		else
			buf_printf(&b, "%u/%u", s->stat_ok[i], s->stat_total[i]);
		ok += s->stat_ok[i];
		total += s->stat_total[i];
	}
	if (ok == total)
		buf_printf(&b, " commands=%u", ok);
	else
		buf_printf(&b, " commands=%u/%u", ok, total);
	msg_info("disconnect from %s%s", s->namaddr, buf_str(&b));
	buf_free(&b);
}

static void
session_job_free(struct deliver_job **jp)
{
	struct deliver_job *j = *jp;

	if (j == NULL)
		return;
	atomic_fetch_sub(&j->s->w->srv->body_bytes, (long)j->body_charged);
	free(j->rcpts);
	free(j->sender_quoted);
	buf_free(&j->received);
	buf_free(&j->body);
	buf_free(&j->err);
	free(j);
	*jp = NULL;
}

static void
session_free(struct session *s)
{
	struct worker *w = s->w;
	struct outline *o;

	if (s->namaddr != NULL)
		session_log_disconnect(s);
	if (s->anvil_connected)
		anvil_disconnect(s->w->srv->anvil, s->ident, session_now(s), session_anvil_ignore, NULL);
	if (s->lookup)
		peername_cancel(s->lookup);
	session_transaction_reset(s);
	session_job_free(&s->job);
	while ((o = s->out_head) != NULL) {
		s->out_head = o->next;
		free(o);
	}
	if (s->bev)
		bufferevent_free(s->bev);
	event_free(s->free_ev);
	event_free(s->resume_ev);
	event_free(s->tarpit_ev);
	event_free(s->deadline_ev);
	lr_free(&s->lr);
	free(s->ident);
	free(s->range);
	free(s->namaddr);
	free(s->helo);
	if (s->prev)
		s->prev->next = s->next;
	else
		w->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	server_session_ended(w, s->svc);
	server_service_release(w->srv, s->gen);
	free(s);
}

/*
 * Free the session from its own event, at a safe point.  While the writer
 * pool holds its message (S_DELIVER) the session only stays marked closing:
 * the job reads the session's recipients, and its completion frees it.
 */
static void
session_schedule_free(struct session *s)
{
	s->closing = 1;
	if (s->state != S_DELIVER)
		event_active(s->free_ev, EV_READ, 0);
}

static void
session_free_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	session_free(arg);
}

static void
session_write_cb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	(void)bev;
	if (s->closing)
		session_schedule_free(s);
	else if (s->output_blocked) {
		/* The client has read enough of its replies: take commands again. */
		s->output_blocked = 0;
		event_active(s->resume_ev, EV_READ, 0);
	}
}


/* End the session once the replies already queued (tarpit included) are written. */
static void
session_hangup(struct session *s)
{
	s->hangup = 1;
	if (s->out_head == NULL)
		session_close(s);
}

/* Stop reading; free the session once what was written has been sent. */
static void
session_close(struct session *s)
{
	if (s->closing)
		return;
	s->closing = 1;
	bufferevent_disable(s->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0) {
		session_schedule_free(s);
	} else {
		/* A client that never reads its last reply is not waited for past smtpd_timeout. */
		struct timeval tmo = { s->ss->timeout, 0 };

		evtimer_del(s->deadline_ev);
		evtimer_add(s->deadline_ev, &tmo);
		s->deadline_armed = 1;
	}
}

/* smtpd_timeout, or the per-request deadline, ran out. */
static void
session_timeout(struct session *s)
{
	if (s->state == S_DATA || s->state == S_BDAT)
		msg_info("timeout after %s (%zu bytes) from %s", s->where,
			 s->state == S_DATA ? s->dr.raw_bytes : s->bdat_total, s->namaddr);
	else
		msg_info("timeout after %s from %s", s->where, s->namaddr);
	bufferevent_disable(s->bev, EV_READ);
	session_reply(s, RPL_TIMEOUT, s->ss->hostname);
	session_hangup(s);
}

/*
 * smtpd_per_request_deadline: smtpd_timeout is a budget for a whole request
 * (a command line, or a DATA/BDAT transfer), not for each read, so a client
 * trickling a byte at a time cannot stretch it.  During DATA and BDAT the
 * budget grows by received bytes / smtpd_min_data_rate, never past
 * smtpd_timeout from now.
 */
static void
session_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	(void)fd;
	(void)what;
	s->deadline_armed = 0;
	if (s->closing)
		session_schedule_free(s);
	else if (!s->hangup)
		session_timeout(s);
}

static void
session_deadline_set(struct session *s, const struct timeval *at)
{
	struct timeval now, left;

	event_base_gettimeofday_cached(s->w->base, &now);
	s->deadline_at = *at;
	if (timercmp(at, &now, <))
		timerclear(&left);
	else
		timersub(at, &now, &left);
	evtimer_add(s->deadline_ev, &left);
	s->deadline_armed = 1;
}

/* Start the budget for the next request, unless one is running. */
static void
session_deadline_start(struct session *s)
{
	struct timeval now, tmo = { s->ss->timeout, 0 }, at;

	if (!s->ss->deadline || s->deadline_armed)
		return;
	event_base_gettimeofday_cached(s->w->base, &now);
	timeradd(&now, &tmo, &at);
	session_deadline_set(s, &at);
}

static void
session_deadline_stop(struct session *s)
{
	if (s->deadline_armed)
		evtimer_del(s->deadline_ev);
	s->deadline_armed = 0;
}

/* DATA/BDAT: n more bytes arrived; the budget grows by n / smtpd_min_data_rate. */
static void
session_deadline_credit(struct session *s, size_t n)
{
	struct timeval now, max, add, at;
	long usec;

	if (!s->deadline_armed || n == 0)
		return;
	usec = (long)((double)n * 1e6 / (double)s->ss->min_data_rate);
	add.tv_sec = usec / 1000000;
	add.tv_usec = usec % 1000000;
	timeradd(&s->deadline_at, &add, &at);
	event_base_gettimeofday_cached(s->w->base, &now);
	max.tv_sec = now.tv_sec + s->ss->timeout;
	max.tv_usec = now.tv_usec;
	if (timercmp(&at, &max, >))
		at = max;
	session_deadline_set(s, &at);
}

static void
session_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;

	(void)bev;
	if (s->closing) {
		session_schedule_free(s);
		return;
	}
	if ((what & BEV_EVENT_TIMEOUT) && s->state != S_DELIVER) {
		session_timeout(s);
		return;
	}
	if (s->state == S_DATA || s->state == S_BDAT)
		msg_info("lost connection after %s (%zu bytes) from %s", s->where,
			 s->state == S_DATA ? s->dr.raw_bytes : s->bdat_total, s->namaddr);
	else if (strcmp(s->where, "END-OF-MESSAGE") != 0)	/* Postfix is quiet there too */
		msg_info("lost connection after %s from %s", s->where, s->namaddr);
	bufferevent_disable(s->bev, EV_READ | EV_WRITE);
	session_schedule_free(s);
}

static void
session_read_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	session_process(arg);
}

static void
session_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	(void)fd;
	(void)what;
	if (!session_is_busy(s)) {
		bufferevent_enable(s->bev, EV_READ);
		session_process(s);
	}
}

/* Bytes the client has sent that we have not processed yet, in our buffer or the kernel's. */
static size_t
session_pending(struct session *s)
{
	int n = 0;

	ioctl(bufferevent_getfd(s->bev), FIONREAD, &n);
	return evbuffer_get_length(bufferevent_get_input(s->bev)) + (n > 0 ? (size_t)n : 0);
}

/*
 * RFC 2920 and smtpd_forbid_unauth_pipelining: input that is already waiting
 * after a command that must end a pipelined group (or before the banner, or
 * in a non-ESMTP session) is logged, and refused when the parameter is on.
 * Returns 1 when the session was ended for it.
 */
static int
session_check_pipelining(struct session *s, const char *after)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	char peek[100];
	ssize_t n = 0;
	size_t have = evbuffer_get_length(in);
	struct buf esc = BUF_INIT;

	if (session_pending(s) == 0)
		return 0;
	if (have > 0)
		n = evbuffer_copyout(in, peek, sizeof(peek));
	else
		n = recv(bufferevent_getfd(s->bev), peek, sizeof(peek), MSG_PEEK);
	if (n < 0)
		n = 0;
	log_escape(&esc, peek, (size_t)n, 100);
	msg_info("improper command pipelining after %s from %s: %s", after, s->namaddr,
		 buf_str(&esc));
	buf_free(&esc);
	if (!s->ss->forbid_pipelining)
		return 0;
	session_reply(s, RPL_SYNC_ERROR);
	session_hangup(s);
	return 1;
}

static void
session_banner(struct session *s)
{
	session_reply(s, RPL_BANNER, s->ss->banner);
	bufferevent_enable(s->bev, EV_READ);
	session_deadline_start(s);
}

/* "unknown[127.0.0.2]", plus the network when anvil groups clients by prefix. */
static void
session_limit_warning(struct session *s, const char *what, int value)
{
	msg_warn("%s limit exceeded: %d from %s%s%s%s for service %s", what, value, s->namaddr,
		 s->range ? " (range " : "", s->range ? s->range : "", s->range ? ")" : "",
		 s->ss->service_name);
}

/* anvil's answer to the connect event (§0 step 3). */
static void
session_anvil_connected(void *ctx, const struct anvil_reply *r)
{
	struct session *s = ctx;
	const struct smtp_service *ss = s->ss;

	if (r->status == 0 && ss->conn_count_limit > 0 && r->count > ss->conn_count_limit) {
		session_limit_warning(s, "Connection concurrency", r->count);
	} else if (r->status == 0 && ss->conn_rate_limit > 0 && r->rate > ss->conn_rate_limit) {
		session_limit_warning(s, "Connection rate", r->rate);
	} else {
		session_banner(s);
		return;
	}
	session_reply(s, RPL_TOO_MANY_CONN, ss->hostname, s->addr);
	session_hangup(s);
}

/* Before the banner: the early-talker check, then anvil's connect event. */
static void
session_greet(struct session *s)
{
	session_enter_state(s, S_CMD);
	if (session_check_pipelining(s, "CONNECT"))
		return;
	if (s->ident == NULL) {
		session_banner(s);
		return;
	}
	s->anvil_connected = 1;
	anvil_connect(s->w->srv->anvil, s->ident, session_now(s), session_anvil_connected, s);
}

/* Set up the anvil ident, unless anvil is off or the client is exempt. */
static void
session_anvil_init(struct session *s, const char *name)
{
	char key[ANVIL_CLIENT_KEY_LEN];
	struct buf b = BUF_INIT;

	if (!s->ss->anvil_on
	    || addrlist_match(s->ss->exceptions, name, (struct sockaddr *)&s->sa))
		return;
	if (anvil_client_key(key, sizeof(key), (struct sockaddr *)&s->sa, s->ss->v4_prefix,
			     s->ss->v6_prefix) < 0)
		return;
	anvil_ident(&b, s->ss->service_name, key);
	s->ident = buf_steal(&b);
	if (strchr(key, '/') != NULL)
		s->range = xstrdup(key);
}

struct session_anvil_wait {
	int	done;
	struct anvil_reply r;
};

static void
session_anvil_store(void *ctx, const struct anvil_reply *r)
{
	struct session_anvil_wait *wt = ctx;

	wt->r = *r;
	wt->done = 1;
}

/*
 * Count a MAIL or RCPT/VRFY event and return the rate, or 0 when there is no
 * answer at once (fail open).  The in-memory backend always answers at once;
 * a networked backend answers within the request or is treated as failed.
 */
static int
session_anvil_rate(struct session *s, void (*req)(struct anvil *, const char *, time_t,
						  anvil_cb *, void *))
{
	struct session_anvil_wait wt = { 0 };

	if (s->ident == NULL)
		return 0;
	req(s->w->srv->anvil, s->ident, session_now(s), session_anvil_store, &wt);
	return wt.done && wt.r.status == 0 ? wt.r.rate : 0;
}

static void
session_lookup_done(void *ctx, const char *name)
{
	struct session *s = ctx;

	s->lookup = NULL;
	s->namaddr = xasprintf("%s[%s]", name, s->addr);
	msg_info("connect from %s", s->namaddr);
	session_anvil_init(s, name);
	session_greet(s);
}

void
session_start(struct worker *w, struct service_rt *svc, int fd, const struct sockaddr *sa,
	      socklen_t salen)
{
	struct session *s = xcalloc(1, sizeof(*s));
	struct service_gen *gen;
	struct smtp_service *ss = server_service_acquire(svc, &gen);
	struct timeval tmo = { ss->timeout, 0 };

	memcpy(&s->sa, sa, salen < sizeof(s->sa) ? salen : sizeof(s->sa));
	s->w = w;
	s->svc = svc;
	s->ss = ss;
	s->gen = gen;
	s->where = "CONNECT";
	s->state = S_LOOKUP;	/* the initial state */
	if (sa->sa_family == AF_INET6
	    && IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)sa)->sin6_addr))
		inet_ntop(AF_INET, &((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr[12], s->addr,
			  sizeof(s->addr));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, s->addr,
			  sizeof(s->addr));
	else
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, s->addr,
			  sizeof(s->addr));
	s->next = w->sessions;
	if (w->sessions)
		w->sessions->prev = s;
	w->sessions = s;
	s->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
	s->free_ev = event_new(w->base, -1, 0, session_free_cb, s);
	s->resume_ev = event_new(w->base, -1, 0, session_resume_cb, s);
	s->tarpit_ev = evtimer_new(w->base, session_tarpit_cb, s);
	s->deadline_ev = evtimer_new(w->base, session_deadline_cb, s);
	lr_init(&s->lr, (size_t)ss->line_limit);
	bufferevent_setcb(s->bev, session_read_cb, session_write_cb, session_event_cb, s);
	/* With the per-request deadline, the deadline timer does this job. */
	bufferevent_set_timeouts(s->bev, ss->deadline ? NULL : &tmo, &tmo);
	/* A client that keeps sending while its replies wait (tarpit, delivery) is not read further. */
	bufferevent_setwatermark(s->bev, EV_READ, 0, SESSION_READ_HIGH);
	bufferevent_setwatermark(s->bev, EV_WRITE, SESSION_WRITE_LOW, 0);
	bufferevent_disable(s->bev, EV_READ);
	if (conf_bool(ss->cf, P_smtpd_peername_lookup))
		s->lookup = peername_lookup(w, sa, session_lookup_done, s);
	else
		session_lookup_done(s, "unknown");
}

void
session_free_all(struct worker *w)
{
	while (w->sessions != NULL) {
		struct session *s = w->sessions;

		session_free(s);
	}
}

/*
 * Message bodies are held in memory until the writer has them, so the
 * sessions' bodies together are bounded by mxgate_message_memory_limit:
 * a message that would go past it is read to its end but not kept, and gets
 * 452 4.3.1 Insufficient system storage (Postfix's reply when its queue
 * file system is short of space), so the sender tries again later.
 */
static void
session_body_account(struct session *s)
{
	struct server *srv = s->w->srv;
	long delta = (long)s->body.len - (long)s->body_charged;
	long total;

	if (delta == 0)
		return;
	total = atomic_fetch_add(&srv->body_bytes, delta) + delta;
	s->body_charged = s->body.len;
	if (!s->body_refused && delta > 0 && s->ss->body_memory_limit > 0
	    && total > s->ss->body_memory_limit) {
		msg_warn("%s: message bodies in memory exceed mxgate_message_memory_limit (%ld); "
			 "deferring the message from %s", s->queue_id[0] ? s->queue_id : "NOQUEUE",
			 s->ss->body_memory_limit, s->namaddr);
		s->body_refused = 1;
	}
	if (s->body_refused) {
		atomic_fetch_sub(&srv->body_bytes, (long)s->body_charged);
		s->body_charged = 0;
		buf_free(&s->body);
	}
}

/* ---- transaction ------------------------------------------------------ */

static void
session_transaction_reset(struct session *s)
{
	size_t i;

	free(s->sender);
	s->sender = NULL;
	for (i = 0; i < s->nrcpts; i++) {
		free(s->rcpts[i].addr);
		free(s->rcpts[i].quoted);
		free(s->rcpts[i].maildir);
	}
	free(s->rcpts);
	s->rcpts = NULL;
	s->nrcpts = s->rcpt_cap = 0;
	s->rcpt_overshoot = 0;
	s->queue_id[0] = '\0';
	buf_free(&s->body);
	session_body_account(s);
	s->body_refused = 0;
	memset(&s->bdat, 0, sizeof(s->bdat));
	s->bdat_total = s->bdat_left = 0;
	s->bdat_used = 0;
}

/* An address in RFC 5321 form ("john smith"@x stays quoted), for headers and logs. */
static char *
session_quote(const char *addr)
{
	struct buf b = BUF_INIT;

	if (*addr != '\0')
		smtp_addr_quote(&b, addr);
	return buf_steal(&b);
}

static const char *
session_proto(const struct session *s)
{
	return s->esmtp ? "ESMTP" : "SMTP";
}

static void
session_log_reject(struct session *s, const char *verb, const char *reply, const char *from,
		   const char *rcpt)
{
	struct buf b = BUF_INIT;
	size_t len = strlen(reply);

	while (len > 0 && (reply[len - 1] == '\n' || reply[len - 1] == '\r'))
		len--;
	buf_printf(&b, "%s: reject: %s from %s: %.*s;", s->queue_id[0] ? s->queue_id : "NOQUEUE",
		   verb, s->namaddr, (int)len, reply);
	if (from) {
		char *q = session_quote(from);

		buf_printf(&b, " from=<%s>", log_escape_str(q, 300));
		free(q);
	}
	if (rcpt) {
		char *q = session_quote(rcpt);

		buf_printf(&b, " to=<%s>", log_escape_str(q, 300));
		free(q);
	}
	buf_printf(&b, " proto=%s", session_proto(s));
	if (s->helo)
		buf_printf(&b, " helo=<%s>", log_escape_str(s->helo, 100));
	msg_info("%s", buf_str(&b));
	buf_free(&b);
}

/* ---- commands --------------------------------------------------------- */

static const char *
session_skip_space(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

static int
session_set_helo(struct session *s, const char *args, int esmtp)
{
	const char *p = session_skip_space(args);
	size_t len = strlen(p);

	while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
		len--;
	if (len == 0) {
		session_reply(s, esmtp ? RPL_EHLO_SYNTAX : RPL_HELO_SYNTAX);
		return -1;
	}
	free(s->helo);
	s->helo = xstrndup(p, len < 255 ? len : 255);
	s->esmtp = esmtp;
	session_transaction_reset(s);
	return 0;
}

static int
cmd_helo(struct session *s, const char *args)
{
	if (session_set_helo(s, args, 0) < 0)
		return -1;
	session_reply(s, RPL_HELO, s->ss->hostname);
	return 0;
}

static int
cmd_ehlo(struct session *s, const char *args)
{
	struct buf b = BUF_INIT;
	size_t i, last = 0;

	if (session_set_helo(s, args, 1) < 0)
		return -1;
	reply_format(&b, 0, RPL_HELO, s->ss->hostname);
	for (i = 0; i < s->ss->nehlo; i++) {
		b.data[last + 3] = '-';		/* "250 host" becomes "250-host" */
		last = b.len;
		reply_format(&b, 0, RPL_HELO, s->ss->ehlo[i]);
	}
	session_send(s, &b);
	buf_free(&b);
	return 0;
}

static int
cmd_starttls(struct session *s, const char *args)
{
	(void)args;
	session_reply(s, RPL_NOT_IMPLEMENTED);
	return -1;
}

static int
cmd_auth(struct session *s, const char *args)
{
	(void)args;
	session_reply(s, RPL_AUTH_DISABLED);
	return -1;
}

/* Postfix warns when an address parses but is empty where one is required (RCPT TO:<>). */
static void
session_log_bad_address(struct session *s, const char *cmd, const char *args)
{
	const char *colon = strchr(args, ':');
	const char *p = session_skip_space(colon ? colon + 1 : args);

	if (strncmp(p, "<>", 2) == 0 && *session_skip_space(p + 2) == '\0')
		msg_warn("Illegal address syntax from %s in %s command: %s", s->namaddr, cmd,
			 log_escape_str(p, 100));
}

/* The reply to a bad ESMTP parameter; nothing for PARAM_OK. */
static void
session_param_reply(struct session *s, int rc, const char *bad)
{
	switch (rc) {
	case PARAM_OK:
		break;
	case PARAM_BAD_SIZE:
		session_reply(s, RPL_SIZE_SYNTAX);
		break;
	case PARAM_SIZE_OVERFLOW:
		session_reply(s, RPL_SIZE_FS_LIMIT);
		break;
	case PARAM_DSN_DISABLED:
		session_reply(s, RPL_DSN_DISABLED);
		break;
	default:
		session_reply(s, RPL_UNSUPPORTED_OPT, bad ? log_escape_str(bad, 100) : "");
		break;
	}
}

static int
cmd_mail(struct session *s, const char *args)
{
	struct smtp_path path;
	struct esmtp_params ep;
	char *bad = NULL;
	int rc;

	if (s->ss->helo_required && s->helo == NULL) {
		session_reply(s, RPL_NEED_HELO);
		return -1;
	}
	if (s->sender != NULL) {
		session_reply(s, RPL_MAIL_NESTED);
		return -1;
	}
	if (s->bdat_discard) {
		session_reply(s, RPL_MAIL_AFTER_BDAT);
		return -1;
	}
	rc = smtp_parse_path(args, "FROM:", &path);
	if (rc == PATH_SYNTAX) {
		session_reply(s, RPL_MAIL_SYNTAX);
		return -1;
	}
	/* smtpd_client_message_rate_limit: counted even when the request then fails. */
	if (s->ss->msg_rate_limit > 0) {
		int rate = session_anvil_rate(s, anvil_message);

		if (rate > s->ss->msg_rate_limit) {
			session_limit_warning(s, "Message delivery request rate", rate);
			session_reply(s, RPL_MSG_RATE, s->addr);
			smtp_path_free(&path);
			return -1;
		}
	}
	if (rc != PATH_OK) {
		session_reply(s, RPL_MAIL_BAD_ADDR);
		return -1;
	}
	rc = smtp_parse_params(path.params, &ep, &bad);
	session_param_reply(s, rc, bad);
	if (rc == PARAM_OK && s->ss->size_limit > 0 && ep.has_size
	    && ep.size > (uint64_t)s->ss->size_limit) {
		struct buf r = BUF_INIT;

		reply_format(&r, s->ss->soft_bounce, RPL_SIZE_TOO_BIG);
		session_send(s, &r);
		session_log_reject(s, "MAIL", buf_str(&r), path.addr, NULL);
		buf_free(&r);
		rc = -1;
	}
	free(bad);
	if (rc != PARAM_OK) {
		smtp_path_free(&path);
		return -1;
	}
	s->sender = xstrdup(path.addr);
	smtp_path_free(&path);
	gettimeofday(&s->t_arrival, NULL);
	session_reply(s, RPL_MAIL_OK);
	return 0;
}

static int
session_rcpt_known(struct session *s, const char *addr)
{
	size_t i;

	for (i = 0; i < s->nrcpts; i++)
		if (strcasecmp(s->rcpts[i].addr, addr) == 0)
			return 1;
	return 0;
}

/* smtpd_client_recipient_rate_limit, for RCPT and VRFY: 1 when refused (replied). */
static int
session_rcpt_rate_exceeded(struct session *s)
{
	int rate;

	if (s->ss->rcpt_rate_limit <= 0)
		return 0;
	rate = session_anvil_rate(s, anvil_recipient);
	if (rate <= s->ss->rcpt_rate_limit)
		return 0;
	session_limit_warning(s, "Recipient address rate", rate);
	session_reply(s, RPL_RCPT_RATE, s->addr);
	return 1;
}

static int
cmd_rcpt(struct session *s, const char *args)
{
	struct smtp_path path;
	struct rcpt_result r;
	char *bad = NULL;
	int rc;

	if (s->sender == NULL) {
		session_reply(s, RPL_NEED_MAIL);
		return -1;
	}
	rc = smtp_parse_path(args, "TO:", &path);
	if (rc == PATH_SYNTAX) {
		session_reply(s, RPL_RCPT_SYNTAX);
		return -1;
	}
	if (session_rcpt_rate_exceeded(s)) {
		smtp_path_free(&path);
		return -1;
	}
	if (rc != PATH_OK || path.addr[0] == '\0') {
		if (rc == PATH_OK)
			smtp_path_free(&path);
		session_log_bad_address(s, "RCPT", args);
		session_reply(s, RPL_RCPT_BAD_ADDR);
		return -1;
	}
	if (s->ss->rcpt_limit > 0 && (long)s->nrcpts >= s->ss->rcpt_limit) {
		smtp_path_free(&path);
		session_reply(s, RPL_TOO_MANY_RCPTS);
		/* The first smtpd_recipient_overshoot_limit of these are not errors. */
		return s->rcpt_overshoot++ < s->ss->overshoot_limit ? 0 : -1;
	}
	rc = smtp_parse_rcpt_params(path.params, &bad);
	session_param_reply(s, rc, bad);
	free(bad);
	if (rc != PARAM_OK) {
		smtp_path_free(&path);
		return -1;
	}
	recipient_resolve(s->ss->policy, path.addr, &r);
	if (r.verdict == RCPT_OK_VIRTUAL && r.uid != s->svc->srv->run_uid) {
		msg_warn("%s: delivery as uid %ld needs the privileged delivery helper, which is not"
			 " available yet; deferring", path.addr, (long)r.uid);
		rcpt_result_free(&r);
		r.verdict = RCPT_TEMPFAIL;
		r.reply = reply_string(RPL_NO_HELPER, path.addr,
				       "Mailbox owner differs from the server user");
	} else if (r.verdict == RCPT_OK_LOCAL) {
		msg_warn("%s: local delivery needs the privileged delivery helper, which is not"
			 " available yet; deferring", path.addr);
		rcpt_result_free(&r);
		r.verdict = RCPT_TEMPFAIL;
		r.reply = reply_string(RPL_NO_HELPER, path.addr, "Local delivery is not available");
	}
	if (r.verdict != RCPT_OK_VIRTUAL) {
		session_reply_text(s, r.reply);
		session_log_reject(s, "RCPT", r.reply, s->sender, path.addr);
		if (r.reason && r.verdict == RCPT_TEMPFAIL)
			msg_warn("%s: %s", path.addr, r.reason);
		rcpt_result_free(&r);
		smtp_path_free(&path);
		return -1;
	}
	if (!session_rcpt_known(s, path.addr)) {
		if (s->nrcpts == s->rcpt_cap) {
			s->rcpt_cap = s->rcpt_cap ? 2 * s->rcpt_cap : 4;
			s->rcpts = xrealloc(s->rcpts, s->rcpt_cap * sizeof(*s->rcpts));
		}
		s->rcpts[s->nrcpts].addr = xstrdup(path.addr);
		s->rcpts[s->nrcpts].quoted = session_quote(path.addr);
		s->rcpts[s->nrcpts].maildir = xstrdup(r.maildir);
		s->nrcpts++;
	}
	if (s->queue_id[0] == '\0') {
		session_queue_id(s->queue_id);
		msg_info("%s: client=%s", s->queue_id, s->namaddr);
	}
	rcpt_result_free(&r);
	smtp_path_free(&path);
	session_reply(s, RPL_RCPT_OK);
	return 0;
}

static int
cmd_data(struct session *s, const char *args)
{
	if (s->nrcpts == 0) {
		session_reply(s, s->sender == NULL ? RPL_NEED_RCPT : RPL_NO_VALID_RCPTS);
		return -1;
	}
	if (*session_skip_space(args) != '\0') {
		session_reply(s, RPL_DATA_SYNTAX);
		return -1;
	}
	if (s->bdat_used) {
		session_reply(s, RPL_DATA_AFTER_BDAT);
		return -1;
	}
	buf_reset(&s->body);
	dr_init(&s->dr, &s->body, (size_t)s->ss->size_limit);
	session_enter_state(s, S_DATA);
	session_reply(s, RPL_DATA_GO);
	return 0;
}

static int
cmd_rset(struct session *s, const char *args)
{
	if (*session_skip_space(args) != '\0') {
		session_reply(s, RPL_RSET_SYNTAX);
		return -1;
	}
	session_transaction_reset(s);
	s->bdat_discard = 0;
	session_reply(s, RPL_OK);
	return 0;
}

static int
cmd_noop(struct session *s, const char *args)
{
	(void)args;
	session_reply(s, RPL_OK);
	return 0;
}

static int
cmd_vrfy(struct session *s, const char *args)
{
	const char *p = session_skip_space(args);
	struct rcpt_result r;
	char *addr;
	size_t len;
	int rc;

	if (s->ss->vrfy_disabled) {
		session_reply(s, RPL_VRFY_DISABLED);
		return -1;
	}
	if (*p == '\0') {
		session_reply(s, RPL_VRFY_SYNTAX);
		return -1;
	}
	if (session_rcpt_rate_exceeded(s))
		return -1;
	len = strlen(p);
	if (*p == '<' && len >= 2 && p[len - 1] == '>')
		addr = xstrndup(p + 1, len - 2);
	else
		addr = xstrdup(p);
	recipient_resolve(s->ss->policy, addr, &r);
	rc = 0;
	if (r.verdict == RCPT_OK_VIRTUAL || r.verdict == RCPT_OK_LOCAL) {
		session_reply(s, RPL_VRFY_OK, p);
	} else {
		session_reply_text(s, r.reply);
		session_log_reject(s, "VRFY", r.reply, s->sender, addr);
		rc = -1;
	}
	rcpt_result_free(&r);
	free(addr);
	return rc;
}

static int
cmd_etrn(struct session *s, const char *args)
{
	(void)args;
	/* Deliberate difference: no queue to flush (DESIGN.md). */
	session_reply(s, RPL_NOT_IMPLEMENTED);
	return -1;
}

static int
cmd_quit(struct session *s, const char *args)
{
	(void)args;
	session_reply(s, RPL_BYE);
	session_hangup(s);
	return 0;
}

/* ---- BDAT (RFC 3030) -------------------------------------------------- */

static int
cmd_bdat(struct session *s, const char *args)
{
	const char *p = session_skip_space(args);
	char *end;
	unsigned long long n;

	s->where = "BDAT";
	if (!s->ss->chunking) {
		/* Not offered: the chunk that follows cannot be skipped safely, so hang up (as Postfix). */
		session_reply(s, RPL_BDAT_DISABLED);
		return -1;
	}
	if (!isdigit((unsigned char)*p))
		goto syntax;
	errno = 0;
	n = strtoull(p, &end, 10);
	if (errno != 0 || (*end != '\0' && *end != ' ' && *end != '\t'))
		goto syntax;
	p = session_skip_space(end);
	s->bdat_last = 0;
	if (strncasecmp(p, "LAST", 4) == 0 && *session_skip_space(p + 4) == '\0')
		s->bdat_last = 1;
	else if (*p != '\0')
		goto syntax;
	s->bdat_left = (size_t)n;
	if (s->bdat_discard || s->nrcpts == 0) {
		if (!s->bdat_discard && s->bdat_left == 0 && s->bdat_last) {
			session_reply(s, RPL_NEED_RCPT);
			return -1;
		}
		if (!s->bdat_discard) {
			/* Postfix: refuse, then discard this and every later chunk until LAST. */
			s->bdat_discard = 2;	/* 2: first refusal not yet replied */
		}
	} else if (!s->bdat_used) {
		s->bdat_used = 1;
		buf_reset(&s->body);
		bdat_init(&s->bdat, (size_t)s->ss->size_limit);
		s->bdat_total = 0;
	}
	session_enter_state(s, S_BDAT);
	return 0;	/* the reply comes when the chunk has been read */
syntax:
	msg_warn("%s%smalformed BDAT command syntax from %s: %s",
		 s->queue_id[0] ? s->queue_id : "", s->queue_id[0] ? ": " : "", s->namaddr,
		 log_escape_str(s->lr.line.data, 100));
	session_reply(s, RPL_BDAT_SYNTAX);
	return -1;
}

/* ---- end of message --------------------------------------------------- */

static void
session_received(struct session *s, struct buf *out)
{
	char date[64];
	struct tm tm;
	time_t now = time(NULL);
	const char *helo = s->helo;
	const char *name = s->namaddr;
	size_t namelen = strcspn(name, "[");

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %e %b %Y %H:%M:%S %z (%Z)", &tm);
	buf_puts(out, "Received: from ");
	if (helo) {
		const char *p;

		/* Client data in a header: no control characters survive (SECURITY_CHECKLIST 60). */
		for (p = helo; *p; p++)
			buf_putc(out, (unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p);
		buf_printf(out, " (%.*s [%s])", (int)namelen, name, s->addr);
	} else {
		buf_printf(out, "%.*s [%s]", (int)namelen, name, s->addr);
	}
	buf_printf(out, "\n\tby %s (%s) with %s id %s", s->ss->hostname,
		   conf_str(s->ss->cf, P_mail_name), session_proto(s), s->queue_id);
	if (s->nrcpts == 1)
		buf_printf(out, "\n\tfor <%s>", s->rcpts[0].quoted);
	buf_printf(out, "; %s\n", date);
}

static void
session_deliver_work(void *arg)
{
	struct deliver_job *j = arg;

	j->rc = maildir_deliver(&j->msg, j->rcpts, j->nrcpts, &j->err);
}

static void session_message_done(struct session *s, int ok, enum reply_id fail);

static void
session_deliver_done(void *arg)
{
	struct deliver_job *j = arg;
	struct session *s = j->s;

	atomic_fetch_sub(&s->w->srv->deliveries, 1);
	session_enter_state(s, S_CMD);
	if (s->closing) {
		/* The client went away meanwhile: no one to answer; the copies stay (or not). */
		if (j->rc == 0)
			log_as("qmgr", LOG_LVL_INFO, "%s: removed", s->queue_id);
		session_job_free(&s->job);
		session_schedule_free(s);
		return;
	}
	if (j->rc == 0) {
		struct timeval now;
		size_t i;
		double delay;

		gettimeofday(&now, NULL);
		delay = (double)(now.tv_sec - s->t_arrival.tv_sec)
			+ (double)(now.tv_usec - s->t_arrival.tv_usec) / 1e6;
		/* The lines Postfix's qmgr and virtual write, for pflogsumm and habits. */
		log_as("qmgr", LOG_LVL_INFO, "%s: from=<%s>, size=%zu, nrcpt=%zu (queue active)",
		       s->queue_id, log_escape_str(j->sender_quoted, 300), j->size, j->nrcpts);
		for (i = 0; i < j->nrcpts; i++)
			log_as("virtual", LOG_LVL_INFO, "%s: to=<%s>, relay=virtual, delay=%.2g, "
			       "dsn=2.0.0, status=sent (delivered to maildir)", s->queue_id,
			       log_escape_str(j->rcpts[i].delivered_to, 300), delay);
		log_as("qmgr", LOG_LVL_INFO, "%s: removed", s->queue_id);
		session_message_done(s, 1, RPL_OK);
	} else {
		msg_error("%s: maildir delivery failed: %s", s->queue_id, buf_str(&j->err));
		session_message_done(s, 0, RPL_WRITE_ERROR);
	}
}

/* The message is complete (DATA dot or BDAT LAST): check it, then deliver. */
static void
session_message_end(struct session *s, int too_big, int bare_lf, size_t size)
{
	struct deliver_job *j;
	size_t i;

	s->where = "END-OF-MESSAGE";
	if (too_big) {
		msg_warn("%s: queue file size limit exceeded", s->queue_id[0] ? s->queue_id : "NOQUEUE");
		session_message_done(s, 0, RPL_MSG_TOO_BIG);
		return;
	}
	if (bare_lf && s->ss->bare_lf_reject) {
		session_log_reject(s, "END-OF-MESSAGE", "bare <LF> received", s->sender, NULL);
		session_message_done(s, 0, RPL_BARE_LF);
		return;
	}
	if (s->body_refused) {
		session_message_done(s, 0, RPL_NO_STORAGE);
		return;
	}
	j = xcalloc(1, sizeof(*j));
	j->s = s;
	j->size = size;
	j->is_bdat = s->bdat_used;
	session_received(s, &j->received);
	j->body = s->body;		/* no copy: the job owns the message now */
	j->body_charged = s->body_charged;
	memset(&s->body, 0, sizeof(s->body));
	s->body_charged = 0;
	j->rcpts = xcalloc(s->nrcpts, sizeof(*j->rcpts));
	j->nrcpts = s->nrcpts;
	for (i = 0; i < s->nrcpts; i++) {
		j->rcpts[i].maildir = s->rcpts[i].maildir;
		j->rcpts[i].delivered_to = s->rcpts[i].quoted;
	}
	j->sender_quoted = session_quote(s->sender);
	j->msg.return_path = j->sender_quoted;
	j->msg.received = buf_str(&j->received);
	j->msg.received_len = j->received.len;
	j->msg.content = buf_str(&j->body);
	j->msg.content_len = j->body.len;
	j->msg.hostname = s->ss->hostname;
	s->job = j;
	session_enter_state(s, S_DELIVER);
	bufferevent_disable(s->bev, EV_READ);
	atomic_fetch_add(&s->w->srv->deliveries, 1);
	deliver_pool_submit(s->w->srv->pool, s->w->base, session_deliver_work,
			    session_deliver_done, j);
}

static void session_after_command(struct session *s);

/* Reply to the end of a message and reset the transaction. */
static void
session_message_done(struct session *s, int ok, enum reply_id fail)
{
	size_t idx = cmd_index(s->bdat_used ? cmd_bdat : cmd_data);
	size_t size = s->job ? s->job->size : 0;

	session_enter_state(s, S_CMD);
	s->stat_total[idx]++;
	if (ok) {
		/* Postfix resets the counters just before the 250, so it is never delayed. */
		s->error_count = 0;
		s->junk_cmds = 0;
		s->stat_ok[idx]++;
		if (s->bdat_used)
			session_reply(s, RPL_BDAT_QUEUED, size, s->queue_id);
		else
			session_reply(s, RPL_QUEUED, s->queue_id);
	} else {
		if (fail == RPL_BARE_LF)
			session_reply(s, RPL_BARE_LF, s->ss->bare_lf_code, s->ss->hostname);
		else
			session_reply(s, fail);
		s->error_count++;
	}
	session_job_free(&s->job);
	session_transaction_reset(s);
	session_after_command(s);
	/* Input may have waited while the message was checked or delivered. */
	event_active(s->resume_ev, EV_READ, 0);
}

/* ---- input ------------------------------------------------------------ */

/* After every command: the hard error limit (Postfix checks it before the next read). */
static void
session_after_command(struct session *s)
{
	if (s->closing || s->hangup)
		return;
	if (s->error_count >= s->ss->hard_limit) {
		msg_info("too many errors after %s from %s", s->where, s->namaddr);
		session_reply(s, RPL_TOO_MANY_ERRORS, s->ss->hostname);
		session_hangup(s);
	}
}

static void
session_command(struct session *s)
{
	const char *line = buf_str(&s->lr.line);
	const char *verb, *args;
	size_t vlen, i;
	const struct cmd *cmd = NULL;
	int rc;

	if (s->lr.overlong)
		msg_warn("%s: request longer than %ld: %s", s->namaddr, s->ss->line_limit,
			 log_escape_str(line, 30));
	if (s->lr.bare_lf && s->ss->bare_lf_reject) {
		session_log_reject(s, "CONNECT", "bare <LF> received", s->sender, NULL);
		session_reply(s, RPL_BARE_LF, s->ss->bare_lf_code, s->ss->hostname);
		session_hangup(s);
		return;
	}
	if (smtp_split_command(line, strlen(line), &verb, &vlen, &args) < 0) {
		/* Postfix does not count an empty line in the disconnect statistics. */
		s->where = "UNKNOWN";
		session_reply(s, RPL_BAD_SYNTAX);
		s->error_count++;
		session_after_command(s);
		return;
	}
	if (s->ss->smtputf8 && !smtp_utf8_valid(line, strlen(line))) {
		s->where = "UNKNOWN";
		s->stat_total[CMD_UNKNOWN]++;
		session_reply(s, RPL_BAD_UTF8);
		s->error_count++;
		session_after_command(s);
		return;
	}
	for (i = 0; i < CMD_COUNT; i++)
		if (strlen(cmd_table[i].name) == vlen && strncasecmp(cmd_table[i].name, verb, vlen) == 0)
			cmd = &cmd_table[i];
	if (cmd == NULL) {
		if (smtp_service_forbidden(s->ss, verb, vlen)) {
			msg_warn("non-SMTP command from %s: %s", s->namaddr, log_escape_str(line, 100));
			s->stat_total[CMD_UNKNOWN]++;
			session_reply(s, RPL_NON_SMTP);
			session_hangup(s);
			return;
		}
		s->where = "UNKNOWN";
		s->stat_total[CMD_UNKNOWN]++;
		session_reply(s, RPL_UNKNOWN_CMD);
		s->error_count++;
		session_after_command(s);
		return;
	}
	s->where = cmd->name;
	/*
	 * Postfix looks for input queued behind a command that must end a
	 * pipelined group (or any command before EHLO) before it runs it: the
	 * command then gets the 554 instead of its own reply.
	 */
	if (((cmd->flags & CMD_LAST) || !s->esmtp) && session_pending(s) > 0
	    && session_check_pipelining(s, cmd->name)) {
		s->stat_total[cmd - cmd_table]++;
		return;
	}
	rc = cmd->fn(s, args);
	if (cmd->fn == cmd_bdat && rc == 0)
		return;		/* counted when the chunk has been read */
	if (cmd->fn != cmd_data || rc != 0)
		s->stat_total[i = (size_t)(cmd - cmd_table)]++;
	if (rc == 0 && cmd->fn != cmd_data)
		s->stat_ok[cmd - cmd_table]++;
	if (rc < 0)
		s->error_count++;
	if (cmd->flags & CMD_JUNK) {
		if (s->junk_cmds++ > s->ss->junk_limit)
			s->error_count++;
	}
	session_after_command(s);
}

/* A BDAT chunk has been read completely. */
static void
session_bdat_chunk_done(struct session *s)
{
	size_t idx = cmd_index(cmd_bdat);

	session_enter_state(s, S_CMD);
	if (s->bdat_discard) {
		size_t n = s->bdat_total;
		int first = s->bdat_discard == 2;

		s->stat_total[idx]++;
		if (first)
			session_reply(s, RPL_NEED_RCPT);
		else
			session_reply(s, RPL_BDAT_DISCARDED, n);
		s->bdat_discard = s->bdat_last ? 0 : 1;
		s->bdat_total = 0;
		s->error_count++;
		session_after_command(s);
		return;
	}
	if (!s->bdat_last) {
		s->stat_total[idx]++;
		s->stat_ok[idx]++;
		session_reply(s, RPL_BDAT_CHUNK, s->bdat_total);
		session_after_command(s);
		return;
	}
	bdat_finish(&s->bdat, &s->body);
	session_message_end(s, s->bdat.too_big, s->bdat.bare_lf_seen, s->bdat_total);
}

#define SESSION_BATCH	64	/* commands or chunks per wake-up: fairness between clients */

static void
session_process(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	int budget = SESSION_BATCH;

	while (!session_is_busy(s) && budget-- > 0) {
		struct evbuffer_iovec v;
		size_t used = 0;

		if (s->state == S_BDAT && s->bdat_left == 0) {
			session_bdat_chunk_done(s);
			continue;
		}
		if (evbuffer_get_length(in) == 0 || evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		switch (s->state) {
		case S_CMD:
			if (lr_feed(&s->lr, v.iov_base, v.iov_len, &used) == LR_LINE) {
				evbuffer_drain(in, used);
				session_deadline_stop(s);
				session_command(s);
				lr_next(&s->lr);
			} else {
				evbuffer_drain(in, used);
			}
			break;
		case S_DATA:
			if (dr_feed(&s->dr, v.iov_base, v.iov_len, &used) == DR_DONE) {
				evbuffer_drain(in, used);
				session_body_account(s);
				session_deadline_stop(s);
				session_message_end(s, s->dr.too_big, s->dr.bare_lf_seen, s->dr.size);
			} else {
				evbuffer_drain(in, used);
				session_body_account(s);
				session_deadline_credit(s, used);
			}
			break;
		case S_BDAT:
			used = v.iov_len < s->bdat_left ? v.iov_len : s->bdat_left;
			if (!s->bdat_discard) {
				bdat_append(&s->bdat, &s->body, v.iov_base, used);
				session_body_account(s);
			}
			s->bdat_total += used;
			s->bdat_left -= used;
			evbuffer_drain(in, used);
			if (s->bdat_left == 0)
				session_deadline_stop(s);
			else
				session_deadline_credit(s, used);
			budget++;	/* reading a chunk is not a command */
			break;
		default:
			break;
		}
	}
	if (budget < 0 && !session_is_busy(s) && evbuffer_get_length(in) > 0)
		event_active(s->resume_ev, EV_READ, 0);
	if (!session_is_busy(s))
		session_deadline_start(s);
}
