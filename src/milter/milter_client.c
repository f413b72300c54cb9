/*
 * milter_client: a session's milters on a worker's loop.  See
 * milter_client.h; the states, replies and warnings follow Postfix 3.7's
 * milter.c and milter8.c, with every blocking read and write of theirs
 * turned into a wait on the loop.
 */
#include "milter/milter_client.h"

#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "conf/conf.h"
#include "deliver/spool.h"
#include "log/log.h"
#include "milter/milter_proto.h"
#include "util/buf.h"
#include "util/attrlist.h"
#include "util/workpool.h"
#include "util/xalloc.h"

/* ---- settings ---- */

enum { MAC_CONN, MAC_HELO, MAC_MAIL, MAC_RCPT, MAC_DATA, MAC_EOH, MAC_EOD, MAC_UNK, MAC__N };

struct milter_def {
	char   *name;			/* as written: "inet:127.0.0.1:11332" */
	bool	is_unix;
	char   *host, *port, *path;
	long	conn_timeout, cmd_timeout, msg_timeout;
	char   *protocol;
	char   *def_action;
};

struct milter_conf {
	struct milter_def *defs;
	size_t	n;
	char   *macros[MAC__N];		/* the milter_*_macros lists */
	char  **deflt_names, **deflt_values;	/* milter_macro_defaults, names in braces */
	size_t	ndeflt;
	char   *daemon_name, *macro_v;
	size_t	size_limit;		/* message_size_limit (0: none): what edits may make */
};

/* "key=value" or "{ key = value }": Postfix's attr_override() keys, "milter_" dropped. */
static bool
def_override(struct milter_def *d, char *item, char **err_r)
{
	char   *key, *value;
	long	t;

	if (attrlist_split(item, "milter", &key, &value, err_r) < 0)
		return false;
	if (strcmp(key, "connect_timeout") == 0 || strcmp(key, "command_timeout") == 0
	    || strcmp(key, "content_timeout") == 0) {
		if (!attrlist_time(value, &t) || t < 1) {
			*err_r = xasprintf("%s: bad time value or unit: %s", key, value);
			return false;
		}
		if (strcmp(key, "connect_timeout") == 0)
			d->conn_timeout = t;
		else if (strcmp(key, "command_timeout") == 0)
			d->cmd_timeout = t;
		else
			d->msg_timeout = t;
		return true;
	}
	if (strcmp(key, "protocol") == 0 || strcmp(key, "default_action") == 0) {
		char  **slot = key[0] == 'p' ? &d->protocol : &d->def_action;

		if (*value == '\0') {
			*err_r = xasprintf("bad string length 0 < 1: %s = %s", key, value);
			return false;
		}
		free(*slot);
		*slot = xstrdup(value);
		return true;
	}
	*err_r = xasprintf("unknown option: \"%s = %s\"", key, value);
	return false;
}

/* transport:endpoint, as milter8_connect() reads it. */
static bool
def_name(struct milter_def *d, const char *name, const struct conf_view *v, char **err_r)
{
	const char *colon = strchr(name, ':');
	const char *ep = colon ? colon + 1 : NULL;
	size_t	tlen;

	d->name = xstrdup(name);
	if (colon == NULL || colon == name || *ep == '\0') {
		*err_r = xasprintf("Milter service needs transport:endpoint instead of \"%s\"", name);
		return false;
	}
	tlen = (size_t)(colon - name);
	if (tlen == 4 && strncmp(name, "inet", 4) == 0) {
		const char *pc = strrchr(ep, ':');
		char   *host;

		if (pc == NULL || pc[1] == '\0') {
			*err_r = xasprintf("milter %s: missing port number in \"%s\"", name, ep);
			return false;
		}
		host = xstrndup(ep, (size_t)(pc - ep));
		if (host[0] == '[' && strlen(host) >= 2 && host[strlen(host) - 1] == ']') {
			memmove(host, host + 1, strlen(host));
			host[strlen(host) - 1] = '\0';
		}
		d->host = *host ? host : (free(host), xstrdup("localhost"));
		d->port = xstrdup(pc + 1);
		return true;
	}
	if ((tlen == 4 && strncmp(name, "unix", 4) == 0)
	    || (tlen == 5 && strncmp(name, "local", 5) == 0)) {
		d->is_unix = true;
		d->path = ep[0] == '/' ? xstrdup(ep)
			  : xasprintf("%s/%s", conf_str(v, P_queue_directory), ep);
		return true;
	}
	*err_r = xasprintf("invalid transport name: %.*s in Milter service: %s", (int)tlen, name,
			   name);
	return false;
}

static void
def_free(struct milter_def *d)
{
	free(d->name);
	free(d->host);
	free(d->port);
	free(d->path);
	free(d->protocol);
	free(d->def_action);
}

/* milter_macro_defaults: "name=value" or "{ name = value }", names as {name}. */
static bool
conf_defaults(struct milter_conf *mc, const char *spec, char **err_r)
{
	char   *copy = xstrdup(spec), *cp = copy, *item, *eq, *name, *value;
	size_t	i;

	while ((item = attrlist_next(&cp)) != NULL) {
		if (*item == '{' && strchr(item, '=') != NULL) {
			size_t	len = strlen(item);

			if (item[len - 1] != '}') {
				*err_r = xasprintf("malformed default macro entry: missing '}' in "
						   "\"%s\"", spec);
				free(copy);
				return false;
			}
			item[len - 1] = '\0';
			item++;
		}
		if ((eq = strchr(item, '=')) == NULL) {
			*err_r = xasprintf("malformed default macro entry: missing '=' in \"%s\"",
					   spec);
			free(copy);
			return false;
		}
		*eq = '\0';
		name = attrlist_trim(item);
		value = attrlist_trim(eq + 1);
		name = *name == '{' ? xstrdup(name) : xasprintf("{%s}", name);
		for (i = 0; i < mc->ndeflt; i++)
			if (strcmp(mc->deflt_names[i], name) == 0)
				break;
		if (i < mc->ndeflt) {
			msg_warn("ignoring multiple default macro entries for %s in \"%s\"", name, spec);
			free(name);
			continue;
		}
		mc->deflt_names = xrealloc(mc->deflt_names, (mc->ndeflt + 1) * sizeof(char *));
		mc->deflt_values = xrealloc(mc->deflt_values, (mc->ndeflt + 1) * sizeof(char *));
		mc->deflt_names[mc->ndeflt] = name;
		mc->deflt_values[mc->ndeflt] = xstrdup(value);
		mc->ndeflt++;
	}
	free(copy);
	return true;
}

struct milter_conf *
milter_conf_new(const char *milters, const struct conf_view *v, char **err_r)
{
	static const enum param_id mac_params[MAC__N] = {
		P_milter_connect_macros, P_milter_helo_macros, P_milter_mail_macros,
		P_milter_rcpt_macros, P_milter_data_macros, P_milter_end_of_header_macros,
		P_milter_end_of_data_macros, P_milter_unknown_command_macros,
	};
	struct milter_conf *mc = xcalloc(1, sizeof(*mc));
	char   *copy = xstrdup(milters ? milters : ""), *cp = copy, *item;
	size_t	i;
	bool	ok = true;

	*err_r = NULL;
	for (i = 0; i < MAC__N; i++)
		mc->macros[i] = xstrdup(conf_str(v, mac_params[i]));
	mc->daemon_name = xstrdup(conf_str(v, P_milter_macro_daemon_name));
	mc->macro_v = xstrdup(conf_str(v, P_milter_macro_v));
	mc->size_limit = conf_int(v, P_message_size_limit) > 0
			 ? (size_t)conf_int(v, P_message_size_limit) : (size_t)-1;
	ok = conf_defaults(mc, conf_str(v, P_milter_macro_defaults), err_r);
	while (ok && (item = attrlist_next(&cp)) != NULL) {
		struct milter_def *d;

		mc->defs = xrealloc(mc->defs, (mc->n + 1) * sizeof(*mc->defs));
		d = &mc->defs[mc->n++];
		memset(d, 0, sizeof(*d));
		d->conn_timeout = conf_time(v, P_milter_connect_timeout);
		d->cmd_timeout = conf_time(v, P_milter_command_timeout);
		d->msg_timeout = conf_time(v, P_milter_content_timeout);
		d->protocol = xstrdup(conf_str(v, P_milter_protocol));
		d->def_action = xstrdup(conf_str(v, P_milter_default_action));
		if (*item == '{') {
			size_t	len = strlen(item);
			char   *op, *name, *o;

			if (item[len - 1] != '}') {
				*err_r = xasprintf("milter service syntax error: missing '}' in \"%s\"",
						   item);
				ok = false;
				break;
			}
			item[len - 1] = '\0';
			op = item + 1;
			if ((name = attrlist_next(&op)) == NULL) {
				*err_r = xasprintf("empty milter definition: \"%s\"", milters);
				ok = false;
				break;
			}
			ok = def_name(d, name, v, err_r);
			while (ok && (o = attrlist_next(&op)) != NULL)
				ok = def_override(d, o, err_r);
		} else {
			ok = def_name(d, item, v, err_r);
		}
	}
	free(copy);
	if (!ok)
		milter_conf_free(&mc);
	return mc;
}

void
milter_conf_free(struct milter_conf **mcp)
{
	struct milter_conf *mc = *mcp;
	size_t	i;

	*mcp = NULL;
	if (mc == NULL)
		return;
	for (i = 0; i < mc->n; i++)
		def_free(&mc->defs[i]);
	free(mc->defs);
	for (i = 0; i < MAC__N; i++)
		free(mc->macros[i]);
	for (i = 0; i < mc->ndeflt; i++) {
		free(mc->deflt_names[i]);
		free(mc->deflt_values[i]);
	}
	free(mc->deflt_names);
	free(mc->deflt_values);
	free(mc->daemon_name);
	free(mc->macro_v);
	free(mc);
}

size_t
milter_conf_count(const struct milter_conf *mc)
{
	return mc ? mc->n : 0;
}

/* ---- one milter's connection ---- */

/* Postfix's MILTER8_STAT_*. */
enum m8_state {
	ST_ERROR = 1, ST_CLOSED, ST_READY, ST_ENVELOPE, ST_MESSAGE, ST_ACCEPT_CON,
	ST_ACCEPT_MSG, ST_REJECT_CON,
};

/* What the connection is waiting for. */
enum m8_wait { W_NONE, W_RESOLVE, W_CONNECT, W_OPTNEG, W_REPLY };

struct m8 {
	struct milters *ms;
	const struct milter_def *d;
	int	fd;
	struct event *ev;
	enum m8_state state;
	enum m8_wait wait;
	char   *def_reply;
	int	skip_event_type;
	uint32_t my_version, my_events;
	uint32_t version, rq_mask, ev_mask, np_mask;
	char   *macros[MAC__N];		/* the filter's own lists (SETSYMLIST), or NULL */
	struct buf out;
	size_t	out_off;
	struct milter_reader rd;
	struct buf in;			/* bytes read and not yet parsed */
	int	event;			/* the event whose reply is awaited */
	long	timeout;		/* of the wait of the moment */
	struct evdns_getaddrinfo_request *gai;
	bool	in_gai_call, gai_inline;
	int	gai_result;
	struct evutil_addrinfo *gai_res;
	/* a body replacement being received */
	bool	repl_body, body_lockout;
	struct buf body;		/* the chunk being built for SMFIC_BODY */
	struct spool *nb;		/* the replacement body, as it arrives */
	size_t	nb_len;			/* its bytes so far */
	bool	nb_cr;			/* a CR held back (CR LF becomes LF) */
	char	nb_last;		/* its last byte */
	bool	paused;			/* nb is busy: no reading from this milter */
};

/* ---- the conversation ---- */

#define EV_MESSAGE 'm'		/* a job kind of ours: the whole message */

struct job {
	bool	active;
	int	event;			/* SMFIC_* or EV_MESSAGE */
	char   *s1, *s2, *s3;		/* name/addr/port, helo, unknown command */
	int	family;
	char  **argv;
	size_t	argc;
	bool	rejected;
	milter_cb *cb;
	void   *ctx;
	size_t	cur;			/* the milter being asked */
	int	stage;
	char   *mres;			/* the current milter's answer */
	bool	waiting;		/* a milter's answer is awaited */
	/* the message */
	size_t	hi;			/* next header */
	size_t	boff;			/* next body byte */
	char   *resp;			/* the answer so far (owned) */
	size_t	first_edit;		/* the current milter's first edit */
};

/*
 * Postfix's edit_resp: once the changes would make the message larger than
 * message_size_limit, the rest are skipped and the end of message answers
 * "552 5.3.4 Error: message file too big" (unless the milter discards, shuts
 * down or tempfails): smtpd's reply when cleanup's queue file edits fail so.
 */
#define EDIT_TOO_BIG "552 5.3.4 Error: message file too big"
#define HEAD_TOO_BIG "552 5.3.4 Error: message header section too big"
#define IO_ERROR "451 4.3.0 Error: queue file write error"

/* A read of the message on the pool: the header section, or a body piece. */
struct rd_job {
	struct milters *ms;
	struct spool *sp;		/* a reference */
	size_t	off, len, n;
	char   *data;
	bool	head, failed, abandoned;
};
struct milters {
	const struct milter_conf *mc;
	struct event_base *eb;
	struct evdns_base *dns;
	milter_macro_fn *mac;
	void   *mac_ctx;
	struct m8 *m;
	size_t	n;
	struct job job;
	struct event *kick;		/* runs the job from the loop */
	struct milter_io io;
	/* the message view and edits */
	struct spool *src;		/* the message given (a reference) */
	char   *hide;			/* the first header to hide, or NULL */
	struct buf head;		/* the header section as read; the hidden header after */
	size_t	hidden_len;
	bool	head_done;
	struct milter_header *hdrs;
	size_t	nhdrs;
	struct spool *bsrc;		/* the body as changed: bsrc[bbase .. bbase + blen) */
	size_t	bbase, blen;
	char   *piece;			/* the body piece read (the current milter's) */
	size_t	plen, poff;
	struct rd_job *rd;		/* the read in flight, or NULL */
	struct spool *commit_sp;	/* a replacement body being committed, or NULL */
	struct milter_edit *edits;
	size_t	nedits;
	size_t	edit_bytes;		/* what the edits of this message add */
	size_t	msg_len;		/* the message given (headers and body) */
	const char *edit_resp;		/* EDIT_TOO_BIG, the header check's reply, or NULL */
	milter_header_check_fn *hdr_check;	/* milter_header_checks, or NULL */
	void   *hdr_check_ctx;
};

static void drive(struct milters *ms);
static bool m8_parse(struct m8 *m);
static void m8_io(evutil_socket_t fd, short what, void *arg);

static char *
dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

static void
set_def_reply(struct m8 *m, const char *reply)
{
	char   *old = m->def_reply;

	m->def_reply = dup_or_null(reply);
	free(old);
}

/* The answer of the current milter's event (sync or async); drive() goes on. */
static void
m8_answer(struct m8 *m, const char *resp)
{
	struct job *j = &m->ms->job;

	free(j->mres);
	j->mres = dup_or_null(resp);
	j->waiting = false;
}

/* The replacement body being received is dropped. */
static void
nb_drop(struct m8 *m)
{
	if (m->nb != NULL && m->paused)
		spool_on_writable_cancel(m->nb);
	m->paused = false;
	spool_unref(&m->nb);
	m->nb_len = 0;
	m->nb_cr = false;
}

static void
m8_close(struct m8 *m)
{
	if (m->gai) {
		evdns_getaddrinfo_cancel(m->gai);
		m->gai = NULL;
	}
	if (m->ev) {
		event_free(m->ev);
		m->ev = NULL;
	}
	if (m->fd >= 0) {
		close(m->fd);
		m->fd = -1;
	}
	buf_reset(&m->out);
	buf_reset(&m->in);
	m->out_off = 0;
	milter_reader_free(&m->rd);
	milter_reader_init(&m->rd);
	m->wait = W_NONE;
	nb_drop(m);
}

/* milter8_comm_error(): close, and the default action from now on. */
static const char *
m8_comm_error(struct m8 *m)
{
	const char *reply, *a = m->d->def_action;

	if (m->fd >= 0)
		shutdown(m->fd, SHUT_RDWR);
	m8_close(m);
	if (strcasecmp(a, "accept") == 0)
		reply = NULL;
	else if (strcasecmp(a, "reject") == 0)
		reply = "550 5.5.0 Service unavailable";
	else if (strcasecmp(a, "tempfail") == 0)
		reply = "451 4.7.1 Service unavailable - try again later";
	else if (strcasecmp(a, "quarantine") == 0)
		reply = "H";
	else {
		msg_warn("milter %s: unrecognized default action: %s", m->d->name, a);
		reply = "451 4.3.5 Server configuration problem - try again later";
	}
	set_def_reply(m, reply);
	m->state = ST_ERROR;
	return m->def_reply;
}

/* milter8_conf_error(): the same for a configuration or protocol problem. */
static const char *
m8_conf_error(struct m8 *m)
{
	const char *a = m->d->def_action;

	if (m->fd >= 0)
		shutdown(m->fd, SHUT_RDWR);
	m8_close(m);
	if (strcasecmp(a, "accept") == 0)
		set_def_reply(m, NULL);
	else if (strcasecmp(a, "quarantine") == 0)
		set_def_reply(m, "H");
	else
		set_def_reply(m, "451 4.3.5 Server configuration problem - try again later");
	m->state = ST_ERROR;
	return m->def_reply;
}

static void
m8_close_stream(struct m8 *m)
{
	m8_close(m);
	m->state = ST_CLOSED;
}

static const char *
cmd_name(int event)
{
	const char *n = milter_cmd_name(event);

	return n ? n : "(unknown MTA event)";
}

/* Watch the socket: write while output is queued, read while a reply is awaited. */
static void
m8_arm(struct m8 *m)
{
	short	what = 0;
	struct timeval tv = { m->timeout, 0 };

	if (m->out_off < m->out.len)
		what |= EV_WRITE;
	if ((m->wait == W_REPLY || m->wait == W_OPTNEG) && !m->paused)
		what |= EV_READ;
	if (m->wait == W_CONNECT)
		what = EV_WRITE;
	if (m->ev)
		event_del(m->ev);
	if (what == 0)
		return;
	if (m->ev == NULL)
		m->ev = event_new(m->ms->eb, m->fd, what, m8_io, m);
	else
		event_assign(m->ev, m->ms->eb, m->fd, what, m8_io, m);
	event_add(m->ev, m->timeout > 0 ? &tv : NULL);
}

/*
 * Send what is queued, as far as the socket takes it.  -1: a write error
 * (warned, comm error).
 */
static int
m8_flush(struct m8 *m)
{
	while (m->out_off < m->out.len) {
		ssize_t	n = send(m->fd, m->out.data + m->out_off, m->out.len - m->out_off,
				 MSG_NOSIGNAL);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			msg_warn("milter %s: error writing command: %s", m->d->name, strerror(errno));
			m8_comm_error(m);
			return -1;
		}
		m->out_off += (size_t)n;
	}
	buf_reset(&m->out);
	m->out_off = 0;
	return 0;
}

/* ---- macros ---- */

static const char *
macro_value(struct milters *ms, const char *cname)
{
	const struct milter_conf *mc = ms->mc;
	const char *v = NULL;
	size_t	i;

	if (strcmp(cname, "{daemon_name}") == 0)
		return mc->daemon_name;
	if (strcmp(cname, "{v}") == 0)
		return mc->macro_v;
	if (ms->mac)
		v = ms->mac(ms->mac_ctx, cname);
	if (v == NULL)
		for (i = 0; i < mc->ndeflt; i++)
			if (strcmp(mc->deflt_names[i], cname) == 0)
				return mc->deflt_values[i];
	return v;
}

/* Postfix's milter_macro_lookup(): SMFIC_MACRO for event, names from list. */
static void
put_macros(struct m8 *m, int event, const char *list)
{
	struct milters *ms = m->ms;
	char   *copy = xstrdup(list), *cp = copy, *name;
	char  **nv = NULL;
	size_t	n = 0, i;
	struct buf cname = BUF_INIT;

	while ((name = strsep(&cp, ", \t\r\n")) != NULL) {
		const char *v;

		if (*name == 0)
			continue;
		buf_reset(&cname);
		if (*name != '{')
			buf_printf(&cname, "{%s}", name);
		else
			buf_puts(&cname, name);
		if ((v = macro_value(ms, buf_str(&cname))) == NULL)
			continue;
		nv = xrealloc(nv, (n + 2) * sizeof(char *));
		nv[n++] = xstrdup(name);
		nv[n++] = xstrdup(v);
	}
	milter_put_macros(&m->out, event, (const char *const *)nv, n);
	for (i = 0; i < n; i++)
		free(nv[i]);
	free(nv);
	free(copy);
	buf_free(&cname);
}

static const char *
macro_list(struct m8 *m, int which)
{
	return m->macros[which] && m->macros[which][0] ? m->macros[which] : m->ms->mc->macros[which];
}

/* ---- the event exchange (milter8_event()) ---- */

enum ev_result { EV_DONE, EV_WAIT };

/*
 * Queue the macros and the event packet (built by put), then either answer
 * at once (skipped, no reply wanted, error) or wait for the reply.
 */
static enum ev_result
m8_event(struct m8 *m, int event, uint32_t skip_flag, bool skip_reply, int mac,
	 void (*put)(struct m8 *m, void *arg), void *arg)
{
	if (m->fd < 0 || m->def_reply != NULL) {
		msg_warn("milter8_event: attempt to send event %s to milter %s after error",
			 cmd_name(event), m->d->name);
		m8_answer(m, m->def_reply);
		return EV_DONE;
	}
	if ((skip_flag & m->np_mask) != 0) {
		m8_answer(m, m->def_reply);
		return EV_DONE;
	}
	if (m->skip_event_type != 0) {
		if (event == m->skip_event_type) {
			m8_answer(m, m->def_reply);
			return EV_DONE;
		}
		m->skip_event_type = 0;
	}
	if (mac >= 0)
		put_macros(m, event, macro_list(m, mac));
	if ((skip_flag & m->ev_mask) != 0) {
		if (m8_flush(m) == 0)
			m8_arm(m);
		m8_answer(m, m->def_reply);
		return EV_DONE;
	}
	put(m, arg);
	if (m8_flush(m) < 0) {
		m8_answer(m, m->def_reply);
		return EV_DONE;
	}
	if (skip_reply) {
		m8_arm(m);
		m8_answer(m, m->def_reply);
		return EV_DONE;
	}
	m->event = event;
	m->wait = W_REPLY;
	m->repl_body = false;
	m->body_lockout = false;
	m->ms->job.waiting = true;
	m8_arm(m);
	/* bytes that came after the previous answer are this one's start */
	if (m->in.len > 0 && m8_parse(m)) {
		if (m->fd >= 0)
			m8_arm(m);
		return EV_DONE;
	}
	return EV_WAIT;
}

static bool
in_connect_event(int e)
{
	return e == SMFIC_CONNECT || e == SMFIC_HELO;
}

/* ---- edits ---- */

static void
edit_add(struct milters *ms, struct m8 *m, enum milter_edit_type type, uint32_t index,
	 const char *name, const char *value)
{
	struct milter_edit *e;
	size_t	bytes;
	char   *repl = NULL, *repl_name = NULL;
	const char *find_name = name;

	if (ms->edit_resp != NULL)
		return;		/* skipped after an edit error, as in Postfix */
	if (ms->hdr_check != NULL && (type == MILTER_EDIT_ADD_HEADER
				      || type == MILTER_EDIT_INSERT_HEADER
				      || type == MILTER_EDIT_CHANGE_HEADER)) {
		const char *resp = NULL;
		char   *hdr = xasprintf("%s:%s%s", name ? name : "",
					(m->ev_mask & SMFIP_HDR_LEADSPC) ? "" : " ",
					value ? value : "");
		int	r = ms->hdr_check(ms->hdr_check_ctx, hdr, &repl, &resp);

		free(hdr);
		if (resp != NULL)
			ms->edit_resp = resp;
		if (r == 1) {
			free(repl);
			return;
		}
		if (r == 2 && repl != NULL) {
			char   *colon = strchr(repl, ':');

			if (colon == NULL) {
				free(repl);
				repl = NULL;
			} else {
				repl_name = xasprintf("%.*s", (int)(colon - repl), repl);
				if (type != MILTER_EDIT_CHANGE_HEADER)
					find_name = repl_name;
			}
		} else {
			free(repl);
			repl = NULL;
		}
	}
	bytes = (repl ? strlen(repl) : (name ? strlen(name) : 0) + (value ? strlen(value) : 0)) + 2;
	/* the headers count too: Postfix's queue file holds them, then the edits */
	if (ms->edit_bytes + bytes + ms->msg_len > ms->mc->size_limit
	    || ms->edit_bytes + bytes < ms->edit_bytes) {
		ms->edit_resp = EDIT_TOO_BIG;
		return;
	}
	ms->edit_bytes += bytes;
	ms->edits = xrealloc(ms->edits, (ms->nedits + 1) * sizeof(*ms->edits));
	e = &ms->edits[ms->nedits++];
	memset(e, 0, sizeof(*e));
	e->type = type;
	e->index = index;
	e->name = xstrdup(find_name ? find_name : "");
	e->value = xstrdup(value ? value : "");
	if (type == MILTER_EDIT_CHANGE_HEADER && repl_name != NULL)
		e->new_name = xstrdup(repl_name);
	if (repl != NULL)
		e->text = xstrdup(strchr(repl, ':') + 1);
	else
		e->text = xasprintf("%s%s", (m->ev_mask & SMFIP_HDR_LEADSPC) ? "" : " ", e->value);
	e->milter = m->d->name;
	free(repl);
	free(repl_name);
}

void
milters_set_header_check(struct milters *ms, milter_header_check_fn *fn, void *ctx)
{
	ms->hdr_check = fn;
	ms->hdr_check_ctx = ctx;
}

static void
hdr_set(struct milter_header *h, const char *name, const char *text)
{
	h->raw = xasprintf("%s:%s", name, text);
	h->name_len = strlen(name);
	h->value_off = h->name_len + 1;
}

/* Insert a header before position pos (pos == nhdrs: append). */
static void
view_insert(struct milters *ms, size_t pos, const char *name, const char *text)
{
	ms->hdrs = xrealloc(ms->hdrs, (ms->nhdrs + 1) * sizeof(*ms->hdrs));
	memmove(ms->hdrs + pos + 1, ms->hdrs + pos, (ms->nhdrs - pos) * sizeof(*ms->hdrs));
	hdr_set(&ms->hdrs[pos], name, text);
	ms->nhdrs++;
}

/* The index of the n-th (from 1) header called name, or -1. */
static long
view_find(const struct milters *ms, const char *name, uint32_t n)
{
	size_t	i, len = strlen(name);
	uint32_t seen = 0;

	for (i = 0; i < ms->nhdrs; i++)
		if (ms->hdrs[i].name_len == len && strncasecmp(ms->hdrs[i].raw, name, len) == 0
		    && ++seen == n)
			return (long)i;
	return -1;
}

/* Apply one edit to the view, as cleanup_milter.c applies it to the queue file. */
static void
view_apply(struct milters *ms, const struct milter_edit *e)
{
	long	i;
	size_t	pos;

	switch (e->type) {
	case MILTER_EDIT_ADD_HEADER:
		view_insert(ms, ms->nhdrs, e->name, e->text);
		break;
	case MILTER_EDIT_INSERT_HEADER:
		/* index 0 and 1 are both above the first header milters see */
		pos = e->index == 0 ? 0 : e->index - 1;
		view_insert(ms, pos > ms->nhdrs ? ms->nhdrs : pos, e->name, e->text);
		break;
	case MILTER_EDIT_CHANGE_HEADER:
		if ((i = view_find(ms, e->name, e->index)) < 0) {
			view_insert(ms, ms->nhdrs, e->new_name ? e->new_name : e->name, e->text);
		} else {
			free(ms->hdrs[i].raw);
			hdr_set(&ms->hdrs[i], e->new_name ? e->new_name : e->name, e->text);
		}
		break;
	case MILTER_EDIT_DELETE_HEADER:
		if ((i = view_find(ms, e->name, e->index)) >= 0) {
			free(ms->hdrs[i].raw);
			memmove(ms->hdrs + i, ms->hdrs + i + 1,
				(ms->nhdrs - (size_t)i - 1) * sizeof(*ms->hdrs));
			ms->nhdrs--;
		}
		break;
	case MILTER_EDIT_REPLACE_BODY:
		ms->bsrc = e->body;
		ms->bbase = 0;
		ms->blen = e->size;
		break;
	default:
		break;
	}
}

/* The replacement body's spool takes bytes again: read on from the milter. */
static void
nb_writable(void *arg)
{
	struct m8 *m = arg;

	m->paused = false;
	if (m->fd >= 0)
		m8_arm(m);
}

static void
nb_write(struct m8 *m, const char *p, size_t n)
{
	if (n == 0)
		return;
	(void)spool_write(m->nb, p, n);	/* a failure is sticky: the commit tells */
	m->nb_len += n;
	m->nb_last = p[n - 1];
}

/*
 * Body replacement chunks, into the replacement's spool: CRLF (or LF) line
 * ends become LF.  While the spool is busy, nothing more is read from the
 * milter (back-pressure; what is already buffered is parsed).
 */
static void
repl_body_chunk(struct m8 *m, const char *p, size_t n)
{
	struct milters *ms = m->ms;
	struct buf out = BUF_INIT;
	size_t	i;

	if (ms->edit_resp != NULL)
		return;
	if (m->nb_len + n + ms->edit_bytes > ms->mc->size_limit) {
		ms->edit_resp = EDIT_TOO_BIG;
		nb_drop(m);
		return;
	}
	if (m->nb == NULL) {
		m->nb = ms->io.new_spool(ms->io.ctx);
		m->nb_len = 0;
		m->nb_cr = false;
		m->nb_last = 0;
	}
	buf_reserve(&out, n);
	for (i = 0; i < n; i++) {
		if (m->nb_cr && p[i] != '\n')
			buf_putc(&out, '\r');
		m->nb_cr = p[i] == '\r';
		if (!m->nb_cr)
			buf_putc(&out, p[i]);
	}
	nb_write(m, out.data, out.len);
	buf_free(&out);
	if (!m->paused && spool_busy(m->nb)) {
		m->paused = true;
		spool_on_writable(m->nb, ms->io.loop, nb_writable, m);
	}
}

static void drive_resume(struct milters *ms);

static void
commit_done(void *arg, enum spool_status st)
{
	struct milters *ms = arg;

	ms->commit_sp = NULL;
	if (st != SPOOL_OK) {
		msg_warn("milter: cannot store the replaced message body: %s",
			 st == SPOOL_NO_SPACE ? "no space" : "write error");
		ms->edit_resp = IO_ERROR;
		if (ms->job.active && ms->job.resp == NULL)
			ms->job.resp = xstrdup(IO_ERROR);
	}
	drive_resume(ms);
}

/*
 * The replacement is complete: an edit (unless it makes the message too
 * big), its spool committed before anyone reads it (drive() waits).
 */
static void
repl_body_end(struct m8 *m)
{
	struct milters *ms = m->ms;
	struct milter_edit *e;

	if (m->nb != NULL && m->nb_cr)
		nb_write(m, "\r", 1);
	m->nb_cr = false;
	if (m->nb != NULL && m->nb_len > 0 && m->nb_last != '\n')
		nb_write(m, "\n", 1);
	if (m->nb != NULL && m->paused) {
		spool_on_writable_cancel(m->nb);
		m->paused = false;
	}
	m->repl_body = false;
	m->body_lockout = true;
	if (ms->edit_resp != NULL || m->nb == NULL) {
		nb_drop(m);
		return;
	}
	/* the body counts as the text of an edit (Postfix: the queue file grows) */
	if (ms->edit_bytes + m->nb_len + 2 + ms->msg_len > ms->mc->size_limit) {
		ms->edit_resp = EDIT_TOO_BIG;
		nb_drop(m);
		return;
	}
	ms->edit_bytes += m->nb_len + 2;
	ms->edits = xrealloc(ms->edits, (ms->nedits + 1) * sizeof(*ms->edits));
	e = &ms->edits[ms->nedits++];
	memset(e, 0, sizeof(*e));
	e->type = MILTER_EDIT_REPLACE_BODY;
	e->name = xstrdup("");
	e->value = xstrdup("");
	e->text = xstrdup("");
	e->milter = m->d->name;
	e->body = m->nb;
	e->size = m->nb_len;
	m->nb = NULL;
	m->nb_len = 0;
	ms->commit_sp = e->body;
	spool_commit(e->body, ms->io.loop, commit_done, ms);
}

/*
 * One reply packet for the awaited event.  Returns true when the event is
 * answered (m8_answer() called), false to read on.
 */
static bool
m8_reply(struct m8 *m, struct milter_reply *rep)
{
	struct milters *ms = m->ms;
	int	event = m->event;
	int	cmd = rep->cmd;
	const char *rn;

	if (m->repl_body && cmd != SMFIR_REPLBODY)
		repl_body_end(m);
	switch (cmd) {
	case SMFIR_PROGRESS:
		return false;
	case SMFIR_CONTINUE:
		m8_answer(m, m->def_reply);
		return true;
	case SMFIR_ACCEPT:
		if (in_connect_event(event)) {
			m8_close_stream(m);
			m->state = ST_ACCEPT_CON;
		} else {
			m->state = ST_ACCEPT_MSG;
		}
		m8_answer(m, m->def_reply);
		return true;
	case SMFIR_DISCARD:
		if (in_connect_event(event)) {
			msg_warn("milter %s: DISCARD action is not allowed for connect or helo",
				 m->d->name);
			m8_answer(m, m->def_reply);
		} else {
			m->state = ST_ACCEPT_MSG;
			m8_answer(m, "D");
		}
		return true;
	case SMFIR_REJECT:
	case SMFIR_TEMPFAIL:
	case SMFIR_REPLYCODE: {
		const char *r = cmd == SMFIR_REJECT ? "550 5.7.1 Command rejected"
				: cmd == SMFIR_TEMPFAIL ? "451 4.7.1 Service unavailable - try again later"
				: rep->name;

		if (in_connect_event(event)) {
			char   *keep = xstrdup(r);

			m8_close_stream(m);
			m->state = ST_REJECT_CON;
			set_def_reply(m, keep);
			free(keep);
			m8_answer(m, m->def_reply);
		} else {
			m8_answer(m, r);
		}
		return true;
	}
	case SMFIR_SHUTDOWN:
		m8_close_stream(m);
		m->state = ST_REJECT_CON;
		set_def_reply(m, "S");
		m8_answer(m, m->def_reply);
		return true;
	case SMFIR_QUARANTINE:
		/*
		 * Postfix keeps "H" as the milter's default reply (in cleanup's
		 * copy of the milter, which lives for one message).  Here it is
		 * an edit and this message's answer; the session's milter is
		 * not poisoned for the next message.
		 */
		edit_add(ms, m, MILTER_EDIT_QUARANTINE, 0, rep->name, NULL);
		set_def_reply(m, "H");
		return false;
	case SMFIR_SKIP:
		m->skip_event_type = event;
		m8_answer(m, m->def_reply);
		return true;
	default:
		break;
	}
	if (event == SMFIC_BODYEOB) {
		switch (cmd) {
		case SMFIR_CHGHEADER:
			edit_add(ms, m, rep->value[0] ? MILTER_EDIT_CHANGE_HEADER
				 : MILTER_EDIT_DELETE_HEADER, rep->index, rep->name, rep->value);
			return false;
		case SMFIR_ADDHEADER:
			edit_add(ms, m, MILTER_EDIT_ADD_HEADER, 0, rep->name, rep->value);
			return false;
		case SMFIR_INSHEADER:
			edit_add(ms, m, MILTER_EDIT_INSERT_HEADER, rep->index, rep->name, rep->value);
			return false;
		case SMFIR_CHGFROM:
			edit_add(ms, m, MILTER_EDIT_CHANGE_FROM, 0, rep->name, rep->value);
			return false;
		case SMFIR_ADDRCPT:
		case SMFIR_ADDRCPT_PAR:
			edit_add(ms, m, MILTER_EDIT_ADD_RCPT, 0, rep->name, rep->value);
			return false;
		case SMFIR_DELRCPT:
			edit_add(ms, m, MILTER_EDIT_DELETE_RCPT, 0, rep->name, NULL);
			return false;
		case SMFIR_REPLBODY:
			if (m->body_lockout) {
				msg_warn("milter %s: body replacement requests can't currently be "
					 "mixed with other requests", m->d->name);
				m8_answer(m, m8_conf_error(m));
				return true;
			}
			m->repl_body = true;
			repl_body_chunk(m, rep->body, rep->body_len);
			return false;
		default:
			break;
		}
	}
	rn = milter_reply_name(cmd);
	msg_warn("milter %s: unexpected filter response %s after event %s", m->d->name,
		 rn ? rn : "(unknown filter reply)", cmd_name(event));
	m8_answer(m, m8_comm_error(m));
	return true;
}

/* ---- negotiation (milter8_connect()'s second half) ---- */

static void
m8_optneg_reply(struct m8 *m, struct milter_reply *rep)
{
	size_t	i;
	static const int stage_slot[MILTER_STAGES] = {
		MAC_CONN, MAC_HELO, MAC_MAIL, MAC_RCPT, MAC_DATA, MAC_EOD, MAC_EOH,
	};

	m->wait = W_NONE;
	if (rep->cmd != SMFIC_OPTNEG) {
		msg_warn("milter %s: unexpected reply \"%c\" in initial handshake", m->d->name,
			 rep->cmd);
		m8_answer(m, m8_comm_error(m));
		return;
	}
	m->version = rep->version;
	m->rq_mask = rep->actions;
	m->ev_mask = rep->protocol;
	if (m->version > m->my_version) {
		msg_warn("milter %s: protocol version %d conflict with MTA protocol version %d",
			 m->d->name, (int)m->version, (int)m->my_version);
		m8_answer(m, m8_comm_error(m));
		return;
	}
	if ((m->rq_mask & MILTER_MTA_ACTIONS) != m->rq_mask) {
		msg_warn("milter %s: request mask 0x%x conflict with MTA request mask 0x%lx",
			 m->d->name, m->rq_mask, (unsigned long)MILTER_MTA_ACTIONS);
		m8_answer(m, m8_comm_error(m));
		return;
	}
	if (m->version < m->my_version) {
		if (m->version < 2)
			msg_warn("milter %s: unexpected protocol version %d", m->d->name,
				 (int)m->version);
		else
			m->np_mask = milter_np_mask_for(m->np_mask, m->version);
	}
	m->state = ST_READY;
	set_def_reply(m, NULL);
	m->skip_event_type = 0;
	for (i = 0; i < rep->nsyms; i++) {
		if (rep->syms[i].stage >= MILTER_STAGES) {
			msg_warn("milter %s: ignoring unknown macro type %u", m->d->name,
				 (unsigned)rep->syms[i].stage);
			continue;
		}
		free(m->macros[stage_slot[rep->syms[i].stage]]);
		m->macros[stage_slot[rep->syms[i].stage]] = xstrdup(rep->syms[i].names);
	}
	m8_answer(m, NULL);
}

/* ---- reading ---- */

/* A read error of the awaited reply, with Postfix's warning. */
static void
m8_read_failed(struct m8 *m, int err)
{
	bool	optneg = m->wait == W_OPTNEG;
	const char *what = err ? strerror(err) : "Unexpected end of input";

	if (m->rd.done || m->rd.hlen < 4)	/* nothing of this packet yet */
		msg_warn("milter %s: can't read %s reply packet header: %s", m->d->name,
			 cmd_name(optneg ? SMFIC_OPTNEG : m->event), what);
	else if (!m->rd.have_cmd)
		msg_warn("milter %s: EOF while reading command code: %s", m->d->name, what);
	else
		msg_warn("milter %s: EOF while reading data: %s", m->d->name, what);
	if (optneg)
		msg_warn("milter %s: read error in initial handshake", m->d->name);
	m8_answer(m, m8_comm_error(m));
}

/*
 * Parse what is buffered: true when the awaited answer came (or failed);
 * the bytes after it stay buffered for the next reply, as in Postfix's
 * stream.
 */
static bool
m8_parse(struct m8 *m)
{
	size_t	off = 0, used;
	const char *why;
	char	whybuf[256];
	struct milter_reply rep;
	bool	answered = false;

	while (!answered && off < m->in.len) {
		enum milter_read_status st = milter_read(&m->rd, m->in.data + off, m->in.len - off,
							  &used, &why);

		off += used;
		if (st == MILTER_READ_MORE)
			break;
		if (st == MILTER_READ_ERROR) {
			msg_warn("milter %s: %s", m->d->name, why);
			m8_answer(m, m8_comm_error(m));
			return true;
		}
		if (milter_decode(&m->rd, &rep, whybuf, sizeof(whybuf), &why) != 0) {
			msg_warn("milter %s: %s", m->d->name, why);
			if (m->wait == W_OPTNEG) {
				msg_warn("milter %s: read error in initial handshake", m->d->name);
				m8_answer(m, m8_comm_error(m));
			} else if (rep.cmd == SMFIR_REPLYCODE || rep.cmd == SMFIR_CHGHEADER
				   || rep.cmd == SMFIR_INSHEADER) {
				m8_answer(m, m8_conf_error(m));
			} else {
				m8_answer(m, m8_comm_error(m));
			}
			return true;
		}
		if (m->wait == W_OPTNEG) {
			m8_optneg_reply(m, &rep);
			answered = true;
		} else if (m8_reply(m, &rep)) {
			if (m->wait == W_REPLY)
				m->wait = W_NONE;
			answered = true;
		}
	}
	if (m->fd >= 0) {
		memmove(m->in.data, m->in.data + off, m->in.len - off);
		buf_truncate(&m->in, m->in.len - off);
	}
	return answered;
}

static void
m8_read(struct m8 *m)
{
	char	data[16384];
	ssize_t	n = recv(m->fd, data, sizeof(data), 0);

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
		m8_arm(m);
		return;
	}
	if (n <= 0) {
		m8_read_failed(m, n < 0 ? errno : 0);
		return;
	}
	buf_append(&m->in, data, (size_t)n);
	if (!m8_parse(m)) {
		m8_arm(m);
		return;
	}
	if (m->fd >= 0)
		m8_arm(m);
}

/* Connected: SMFIC_OPTNEG goes out, its reply is awaited. */
static void
m8_connected(struct m8 *m)
{
	m->wait = W_OPTNEG;
	m->timeout = m->d->cmd_timeout;
	milter_put_optneg(&m->out, m->my_version, MILTER_MTA_ACTIONS, m->my_events);
	if (m8_flush(m) < 0) {
		msg_warn("milter %s: write error in initial handshake", m->d->name);
		m8_answer(m, m->def_reply);
		return;
	}
	m8_arm(m);
}

static void
m8_connect_failed(struct m8 *m, int err)
{
	msg_warn("connect to Milter service %s: %s", m->d->name, strerror(err));
	m8_answer(m, m8_comm_error(m));
}

/* After an asynchronous step: the job goes on if it was waiting for it. */
static void
m8_resume(struct milters *ms)
{
	drive_resume(ms);
}

static void
m8_io(evutil_socket_t fd, short what, void *arg)
{
	struct m8 *m = arg;
	struct milters *ms = m->ms;
	bool	awaiting = m->wait == W_REPLY || m->wait == W_OPTNEG;

	(void)fd;
	if (what & EV_TIMEOUT) {
		if (m->wait == W_CONNECT)
			m8_connect_failed(m, ETIMEDOUT);
		else if (awaiting)
			m8_read_failed(m, ETIMEDOUT);
		else {
			msg_warn("milter %s: error writing command: %s", m->d->name,
				 strerror(ETIMEDOUT));
			m8_comm_error(m);
		}
		m8_resume(ms);
		return;
	}
	if (m->wait == W_CONNECT) {
		int	err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(m->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err != 0)
			m8_connect_failed(m, err);
		else
			m8_connected(m);
		m8_resume(ms);
		return;
	}
	if (what & EV_WRITE) {
		if (m8_flush(m) < 0) {
			if (awaiting)
				m8_answer(m, m->def_reply);
			m8_resume(ms);
			return;
		}
	}
	if ((what & EV_READ) && awaiting) {
		m8_read(m);
		m8_resume(ms);
		return;
	}
	m8_arm(m);
}

static void
m8_connect_addr(struct m8 *m, const struct sockaddr *sa, socklen_t len)
{
	m->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (m->fd < 0) {
		m8_connect_failed(m, errno);
		return;
	}
	if (connect(m->fd, sa, len) == 0) {
		m8_connected(m);
		return;
	}
	if (errno == EINPROGRESS) {
		m->wait = W_CONNECT;
		m->timeout = m->d->conn_timeout;
		m8_arm(m);
		return;
	}
	/* a unix socket's full listen queue (EAGAIN) fails at once */
	m8_connect_failed(m, errno);
}

static void
m8_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
	struct m8 *m = arg;

	if (m->in_gai_call) {
		m->gai_inline = true;
		m->gai_result = result;
		m->gai_res = res;
		return;
	}
	m->gai = NULL;
	if (result == EVUTIL_EAI_CANCEL) {
		if (res)
			evutil_freeaddrinfo(res);
		return;
	}
	if (result != 0 || res == NULL) {
		if (res)
			evutil_freeaddrinfo(res);
		msg_warn("connect to Milter service %s: %s", m->d->name, "Host not found");
		m8_answer(m, m8_comm_error(m));
	} else {
		m8_connect_addr(m, res->ai_addr, (socklen_t)res->ai_addrlen);
		evutil_freeaddrinfo(res);
	}
	m8_resume(m->ms);
}

/*
 * milter8_connect(): parse milter_protocol, connect, OPTNEG.  Answers NULL
 * when negotiated, the default reply on failure (through m8_answer()).
 */
static enum ev_result
m8_connect(struct m8 *m)
{
	const struct milter_def *d = m->d;
	char   *err;

	if (milter_protocol_parse(d->protocol, &m->my_version, &m->my_events, &err) != 0) {
		msg_warn("milter %s: %s", d->name, err);
		free(err);
		m8_answer(m, m8_conf_error(m));
		return EV_DONE;
	}
	m->np_mask = milter_np_mask(m->my_events);
	m->ms->job.waiting = true;
	if (d->is_unix) {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };

		if (strlen(d->path) >= sizeof(sun.sun_path)) {
			m8_connect_failed(m, ENAMETOOLONG);
			return m->ms->job.waiting ? EV_WAIT : EV_DONE;
		}
		memcpy(sun.sun_path, d->path, strlen(d->path) + 1);
		m8_connect_addr(m, (struct sockaddr *)&sun, sizeof(sun));
	} else {
		struct evutil_addrinfo hints = { 0 }, *res = NULL;
		const char *host = strcmp(d->host, "localhost") == 0 ? "127.0.0.1" : d->host;

		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = EVUTIL_AI_NUMERICHOST | EVUTIL_AI_NUMERICSERV;
		if (evutil_getaddrinfo(host, d->port, &hints, &res) == 0 && res != NULL) {
			m8_connect_addr(m, res->ai_addr, (socklen_t)res->ai_addrlen);
			evutil_freeaddrinfo(res);
		} else if (m->ms->dns == NULL) {
			msg_warn("connect to Milter service %s: %s", d->name, "Host not found");
			m8_answer(m, m8_comm_error(m));
		} else {
			hints.ai_flags = EVUTIL_AI_ADDRCONFIG;
			m->wait = W_RESOLVE;
			m->in_gai_call = true;
			m->gai = evdns_getaddrinfo(m->ms->dns, host, d->port, &hints, m8_resolved, m);
			m->in_gai_call = false;
			if (m->gai_inline) {
				m->gai_inline = false;
				m->gai = NULL;
				if (m->gai_result != 0 || m->gai_res == NULL) {
					if (m->gai_res)
						evutil_freeaddrinfo(m->gai_res);
					msg_warn("connect to Milter service %s: %s", d->name,
						 "Host not found");
					m8_answer(m, m8_comm_error(m));
				} else {
					m8_connect_addr(m, m->gai_res->ai_addr,
							(socklen_t)m->gai_res->ai_addrlen);
					evutil_freeaddrinfo(m->gai_res);
				}
				m->gai_res = NULL;
			}
		}
	}
	return m->ms->job.waiting ? EV_WAIT : EV_DONE;
}

/* ---- the envelope events ---- */

static void
put_connect(struct m8 *m, void *arg)
{
	struct job *j = arg;
	const char *name = j->s1, *addr = j->s2;
	char   *sm_name = NULL;
	unsigned port = 0;
	int	fam;

	if (j->s3 != NULL) {
		char   *end;
		long	p = strtol(j->s3, &end, 10);

		if (*j->s3 == 0 || *end != 0 || p < 0 || p > 65535 || !isdigit((unsigned char)*j->s3))
			msg_warn("milter %s: bad client port number %s", m->d->name, j->s3);
		else
			port = (unsigned)p;
	}
	/* Postfix's "unknown" host name becomes Sendmail's "[addr]" */
	if (strcmp(name, "unknown") == 0 && strcmp(addr, "unknown") != 0)
		name = sm_name = xasprintf("[%s]", addr);
	fam = j->family == AF_INET ? SMFIA_INET : j->family == AF_INET6 ? SMFIA_INET6
	      : j->family == AF_UNIX ? SMFIA_UNIX : SMFIA_UNKNOWN;
	milter_put_connect(&m->out, name, fam, fam == SMFIA_UNIX ? 0 : port, addr);
	free(sm_name);
}

static void
put_string(struct m8 *m, void *arg)
{
	struct job *j = arg;

	milter_put_string(&m->out, j->event, j->s1);
}

static void
put_argv(struct m8 *m, void *arg)
{
	struct job *j = arg;

	milter_put_argv(&m->out, j->event, (const char *const *)j->argv, j->argc);
}

static void
put_none(struct m8 *m, void *arg)
{
	struct job *j = arg;

	milter_put_empty(&m->out, j->event);
}

/* One milter, one envelope event: milter8_*_event(). */
static enum ev_result
m8_envelope(struct m8 *m)
{
	struct job *j = &m->ms->job;

	switch (j->event) {
	case SMFIC_CONNECT:
		if (m->state != ST_READY)	/* ERROR: no connection */
			break;
		m->state = ST_ENVELOPE;
		m->timeout = m->d->cmd_timeout;
		return m8_event(m, SMFIC_CONNECT, SMFIP_NOCONNECT, (m->ev_mask & SMFIP_NR_CONN) != 0,
				MAC_CONN, put_connect, j);
	case SMFIC_HELO:
		if (m->state != ST_ENVELOPE && m->state != ST_ACCEPT_MSG)
			break;
		return m8_event(m, SMFIC_HELO, SMFIP_NOHELO, (m->ev_mask & SMFIP_NR_HELO) != 0,
				MAC_HELO, put_string, j);
	case SMFIC_MAIL:
		if (m->state != ST_ENVELOPE)
			break;
		return m8_event(m, SMFIC_MAIL, SMFIP_NOMAIL, (m->ev_mask & SMFIP_NR_MAIL) != 0,
				MAC_MAIL, put_argv, j);
	case SMFIC_RCPT:
		if (j->rejected && (m->ev_mask & SMFIP_RCPT_REJ) == 0) {
			m8_answer(m, NULL);	/* not asked: no answer of its own */
			return EV_DONE;
		}
		if (m->state != ST_ENVELOPE)
			break;
		return m8_event(m, SMFIC_RCPT, SMFIP_NORCPT, (m->ev_mask & SMFIP_NR_RCPT) != 0,
				MAC_RCPT, put_argv, j);
	case SMFIC_DATA:
		if (m->state != ST_ENVELOPE)
			break;
		return m8_event(m, SMFIC_DATA, SMFIP_NODATA, (m->ev_mask & SMFIP_NR_DATA) != 0,
				MAC_DATA, put_none, j);
	case SMFIC_UNKNOWN:
		if (m->state != ST_ENVELOPE)
			break;
		return m8_event(m, SMFIC_UNKNOWN, SMFIP_NOUNKNOWN, (m->ev_mask & SMFIP_NR_UNKN) != 0,
				MAC_UNK, put_string, j);
	}
	m8_answer(m, m->def_reply);
	return EV_DONE;
}

/* ---- the message (milter8_message() and its MIME callbacks) ---- */

/*
 * A header line: printable name characters, optional blanks, then ':'
 * (Postfix's is_header()).  The name's length, or 0 when line is not one.
 */
static size_t
header_name_len(const char *line, size_t ll)
{
	size_t	i = 0, name_len;

	while (i < ll && line[i] > 32 && line[i] < 127 && line[i] != ':')
		i++;
	name_len = i;
	while (i < ll && (line[i] == ' ' || line[i] == '\t'))
		i++;
	return name_len == 0 || i >= ll || line[i] != ':' ? 0 : name_len;
}

/* The headers of msg into the view; returns where the body starts. */
static size_t
view_parse(struct milters *ms, const char *msg, size_t len)
{
	size_t	off = 0;
	struct buf cur = BUF_INIT;
	size_t	name_len = 0;
	bool	have = false;

	while (off < len) {
		const char *nl = memchr(msg + off, '\n', len - off);
		size_t	end = nl ? (size_t)(nl - msg) : len, ll = end - off;
		const char *line = msg + off;
		size_t	next = nl ? end + 1 : len;

		if (ll > 0 && line[ll - 1] == '\r')
			ll--;
		if (have && ll > 0 && (line[0] == ' ' || line[0] == '\t')) {
			buf_putc(&cur, '\n');
			buf_append(&cur, line, ll);
			off = next;
			continue;
		}
		if (have) {
			struct milter_header *h;

			ms->hdrs = xrealloc(ms->hdrs, (ms->nhdrs + 1) * sizeof(*ms->hdrs));
			h = &ms->hdrs[ms->nhdrs++];
			h->name_len = name_len;
			h->value_off = strchr(buf_str(&cur) + name_len, ':') - buf_str(&cur) + 1;
			h->raw = buf_steal(&cur);
			have = false;
		}
		if (ll == 0) {
			off = next;	/* the empty line: not part of the body milters see */
			break;
		}
		if ((name_len = header_name_len(line, ll)) == 0)
			break;	/* not a header: the body starts here */
		buf_append(&cur, line, ll);
		have = true;
		off = next;
	}
	if (have) {
		struct milter_header *h;

		ms->hdrs = xrealloc(ms->hdrs, (ms->nhdrs + 1) * sizeof(*ms->hdrs));
		h = &ms->hdrs[ms->nhdrs++];
		h->name_len = name_len;
		h->value_off = strchr(buf_str(&cur) + name_len, ':') - buf_str(&cur) + 1;
		h->raw = buf_steal(&cur);
	}
	buf_free(&cur);
	return off;
}

/*
 * Where the header section of msg[0 .. len) ends (the body's start), by
 * view_parse()'s rules; -1 when a line is not complete yet (eof false).
 */
static long
head_end(const char *msg, size_t len, bool eof)
{
	size_t	off = 0;
	bool	have = false;

	while (off < len) {
		const char *nl = memchr(msg + off, '\n', len - off);
		size_t	end = nl ? (size_t)(nl - msg) : len, ll = end - off;
		const char *line = msg + off;
		size_t	next = nl ? end + 1 : len;

		if (nl == NULL && !eof)
			return -1;
		if (ll > 0 && line[ll - 1] == '\r')
			ll--;
		if (have && ll > 0 && (line[0] == ' ' || line[0] == '\t')) {
			off = next;
			continue;
		}
		if (ll == 0)
			return (long)next;
		if (header_name_len(line, ll) == 0)
			return (long)off;
		have = true;
		off = next;
	}
	return eof ? (long)len : -1;
}

/*
 * How long the hidden header (mxgate's Received:, the spool's first header,
 * cleanup's) is at the start of msg; 0 when the first header is not it
 * (header_checks removed it: the client's first Received: is the milters'
 * to see, as in Postfix, whose milter8 hides only the text of its own).
 */
static size_t
hidden_len(const char *msg, size_t len, const char *ours)
{
	size_t	off = 0;

	if (ours == NULL || strlen(ours) > len || strncmp(msg, ours, strlen(ours)) != 0)
		return 0;
	if (len < 9 || strncasecmp(msg, "Received:", 9) != 0)
		return 0;
	while (off < len) {
		const char *nl = memchr(msg + off, '\n', len - off);

		off = nl ? (size_t)(nl - msg) + 1 : len;
		if (off >= len || (msg[off] != ' ' && msg[off] != '\t'))
			break;
	}
	return off;
}

static void
rd_work(void *arg)
{
	struct rd_job *r = arg;

	while (r->n < r->len) {
		ssize_t	n = spool_pread(r->sp, r->data + r->n, r->len - r->n, r->off + r->n);

		if (n <= 0) {
			r->failed = true;
			break;
		}
		r->n += (size_t)n;
	}
}

static void
rd_free(struct rd_job *r)
{
	spool_unref(&r->sp);
	free(r->data);
	free(r);
}

static void
rd_done(void *arg)
{
	struct rd_job *r = arg;
	struct milters *ms;
	struct job *j;

	if (r->abandoned) {
		rd_free(r);	/* its milters may be gone */
		return;
	}
	ms = r->ms;
	j = &ms->job;
	ms->rd = NULL;
	if (r->failed) {
		msg_warn("milter: cannot read the stored message for the milters");
		free(j->resp);
		j->resp = xstrdup(IO_ERROR);
	} else if (r->head) {
		buf_append(&ms->head, r->data, r->n);
	} else {
		size_t	n = r->n;

		/* a CR at the end of a piece waits for the next: it may be a CR LF's */
		if (j->boff + n < ms->blen && n > 1 && r->data[n - 1] == '\r')
			n--;
		free(ms->piece);
		ms->piece = r->data;
		r->data = NULL;
		ms->plen = n;
		ms->poff = 0;
		j->boff += n;
	}
	rd_free(r);
	drive_resume(ms);
}

/* Read len bytes at off (of the message, or of the body as changed) on the pool. */
static void
rd_start(struct milters *ms, bool head, size_t off, size_t len)
{
	struct rd_job *r = xcalloc(1, sizeof(*r));

	r->ms = ms;
	r->sp = spool_ref(head ? ms->src : ms->bsrc);
	r->head = head;
	r->off = off;
	r->len = len;
	r->data = xmalloc(len ? len : 1);
	ms->rd = r;
	workpool_submit(ms->io.pool, ms->io.loop, rd_work, rd_done, r);
}

/*
 * Before the first milter: the header section, read until it is complete,
 * into the view.
 */
static void
head_step(struct milters *ms)
{
	struct job *j = &ms->job;
	size_t	size = spool_size(ms->src), rl, body;
	const char *hd = buf_str(&ms->head);
	long	end = head_end(hd, ms->head.len, ms->head.len >= size);

	if (end < 0 && ms->head.len < MILTER_HEADER_MAX) {
		size_t	want = size - ms->head.len;

		rd_start(ms, true, ms->head.len, want < MILTER_PIECE ? want : MILTER_PIECE);
		return;
	}
	if (end < 0 || (size_t)end > MILTER_HEADER_MAX) {
		msg_warn("milter: the message's header section is over %zu bytes; not given to "
			 "the milters", MILTER_HEADER_MAX);
		j->resp = xstrdup(HEAD_TOO_BIG);
		return;
	}
	rl = hidden_len(hd, (size_t)end, ms->hide);
	body = rl + view_parse(ms, hd + rl, (size_t)end - rl);
	ms->bsrc = ms->src;
	ms->bbase = body;
	ms->blen = size - body;
	ms->msg_len = size - rl;
	buf_truncate(&ms->head, rl);
	ms->hidden_len = rl;
	ms->head_done = true;
}

static void
view_reset(struct milters *ms)
{
	size_t	i;

	for (i = 0; i < ms->nhdrs; i++)
		free(ms->hdrs[i].raw);
	free(ms->hdrs);
	ms->hdrs = NULL;
	ms->nhdrs = 0;
	ms->bsrc = NULL;
	ms->bbase = ms->blen = 0;
	free(ms->piece);
	ms->piece = NULL;
	ms->plen = ms->poff = 0;
	spool_unref(&ms->src);
	free(ms->hide);
	ms->hide = NULL;
	buf_free(&ms->head);
	ms->hidden_len = 0;
	ms->head_done = false;
	for (i = 0; i < ms->nedits; i++) {
		spool_unref(&ms->edits[i].body);
		free(ms->edits[i].name);
		free(ms->edits[i].value);
		free(ms->edits[i].text);
		free(ms->edits[i].new_name);
	}
	free(ms->edits);
	ms->edits = NULL;
	ms->nedits = 0;
	ms->edit_bytes = 0;
	ms->msg_len = 0;
	ms->edit_resp = NULL;
}

struct hdr_arg {
	const char *name;
	const char *value;
};

static void
put_header(struct m8 *m, void *arg)
{
	struct hdr_arg *h = arg;

	milter_put_header(&m->out, h->name, h->value);
}

static void
put_body(struct m8 *m, void *arg)
{
	(void)arg;
	milter_put_body(&m->out, m->body.data,
			m->body.len < MILTER_CHUNK_SIZE ? m->body.len : MILTER_CHUNK_SIZE);
}

static void
put_eob(struct m8 *m, void *arg)
{
	(void)arg;
	milter_put_empty(&m->out, SMFIC_BODYEOB);
}

static void
put_eoh(struct m8 *m, void *arg)
{
	(void)arg;
	milter_put_empty(&m->out, SMFIC_EOH);
}

/* MILTER8_MESSAGE_DONE() */
static bool
msg_done(const struct m8 *m)
{
	return m->state != ST_MESSAGE || m->ms->job.mres != NULL;
}

enum { MS_START, MS_HEADERS, MS_EOH, MS_BODY, MS_FLUSH, MS_EOB, MS_END };

/*
 * One step of the message for milter m.  EV_WAIT: an answer is awaited;
 * EV_DONE with stage MS_END: this milter is done (its answer in mres).
 */
static enum ev_result
msg_step(struct milters *ms, struct m8 *m)
{
	struct job *j = &ms->job;

	switch (j->stage) {
	case MS_START:
		free(j->mres);
		j->mres = NULL;
		if (m->state != ST_ENVELOPE) {
			m8_answer(m, m->def_reply);
			j->stage = MS_END;
			return EV_DONE;
		}
		m->state = ST_MESSAGE;
		m->timeout = m->d->msg_timeout;
		buf_reset(&m->body);
		j->hi = 0;
		j->boff = 0;
		ms->plen = ms->poff = 0;
		j->stage = (m->ev_mask & SMFIP_NOHDRS) ? MS_EOH : MS_HEADERS;
		return EV_DONE;
	case MS_HEADERS:
		if (msg_done(m)) {
			j->stage = MS_END;
			return EV_DONE;
		}
		if (j->hi < ms->nhdrs) {
			const struct milter_header *h = &ms->hdrs[j->hi++];
			char   *name = xstrndup(h->raw, h->name_len);
			const char *v = h->raw + h->value_off;
			struct hdr_arg a;
			enum ev_result r;

			/* Sendmail eats one space (not tab) after the colon */
			if ((m->ev_mask & SMFIP_HDR_LEADSPC) == 0 && *v == ' ')
				v++;
			a.name = name;
			a.value = v;
			r = m8_event(m, SMFIC_HEADER, SMFIP_NOHDRS, (m->ev_mask & SMFIP_NR_HDR) != 0,
				     MAC_EOH, put_header, &a);
			free(name);
			return r;
		}
		j->stage = MS_EOH;
		return EV_DONE;
	case MS_EOH:
		j->stage = (m->ev_mask & SMFIP_NOBODY) ? MS_EOB : MS_BODY;
		if (msg_done(m)) {
			j->stage = MS_END;
			return EV_DONE;
		}
		if (m->ev_mask & SMFIP_NOEOH)
			return EV_DONE;
		return m8_event(m, SMFIC_EOH, SMFIP_NOEOH, (m->ev_mask & SMFIP_NR_EOH) != 0, MAC_EOH,
				put_eoh, NULL);
	case MS_BODY:
		if (msg_done(m)) {
			j->stage = MS_END;
			return EV_DONE;
		}
		/*
		 * The body as Postfix sends it: each line with CRLF, the stream
		 * cut into chunks of MILTER_CHUNK_SIZE (a CRLF may straddle two).
		 * The body is read in pieces (rd_start()); a line may straddle
		 * two pieces.
		 */
		while (m->body.len < MILTER_CHUNK_SIZE) {
			const char *p, *nl;
			size_t	left, ll;

			if (ms->poff >= ms->plen) {
				size_t	want = ms->blen - j->boff;

				if (j->boff >= ms->blen)
					break;
				rd_start(ms, false, ms->bbase + j->boff,
					 want < MILTER_PIECE ? want : MILTER_PIECE);
				return EV_WAIT;
			}
			p = ms->piece + ms->poff;
			left = ms->plen - ms->poff;
			nl = memchr(p, '\n', left);
			ll = nl ? (size_t)(nl - p) : left;
			ms->poff += nl ? ll + 1 : ll;
			if (nl && ll > 0 && p[ll - 1] == '\r')
				ll--;	/* a CRLF message given: the CR is ours to add */
			buf_append(&m->body, p, ll);
			if (nl || j->boff >= ms->blen)
				buf_append(&m->body, "\r\n", 2);
		}
		if (m->body.len >= MILTER_CHUNK_SIZE) {
			j->stage = MS_FLUSH;
			return m8_event(m, SMFIC_BODY, SMFIP_NOBODY, (m->ev_mask & SMFIP_NR_BODY) != 0,
					MAC_EOD, put_body, NULL);
		}
		j->stage = MS_EOB;
		return EV_DONE;
	case MS_FLUSH:
		/* the chunk went: what is beyond it starts the next one */
		memmove(m->body.data, m->body.data + MILTER_CHUNK_SIZE,
			m->body.len - MILTER_CHUNK_SIZE);
		buf_truncate(&m->body, m->body.len - MILTER_CHUNK_SIZE);
		j->stage = MS_BODY;
		return EV_DONE;
	case MS_EOB:
		if (msg_done(m)) {
			j->stage = MS_END;
			return EV_DONE;
		}
		if (m->body.len > 0) {
			enum ev_result r = m8_event(m, SMFIC_BODY, SMFIP_NOBODY,
						    (m->ev_mask & SMFIP_NR_BODY) != 0, MAC_EOD,
						    put_body, NULL);

			buf_reset(&m->body);
			return r;	/* back here, with an empty chunk */
		}
		j->stage = MS_END;
		return m8_event(m, SMFIC_BODYEOB, 0, false, MAC_EOD, put_eob, NULL);
	}
	return EV_DONE;
}

/* The end of one milter's message: restore its state, apply its edits for the next. */
static void
msg_milter_end(struct milters *ms, struct m8 *m, size_t first_edit)
{
	size_t	i;

	if (m->repl_body)
		repl_body_end(m);
	m->repl_body = false;
	m->body_lockout = false;
	m->timeout = m->d->cmd_timeout;
	if (m->state == ST_MESSAGE || m->state == ST_ACCEPT_MSG)
		m->state = ST_ENVELOPE;
	/* a quarantine is this message's, not the session's (see SMFIR_QUARANTINE) */
	if (m->def_reply && strcmp(m->def_reply, "H") == 0 && m->state != ST_ERROR)
		set_def_reply(m, NULL);
	for (i = first_edit; i < ms->nedits; i++)
		view_apply(ms, &ms->edits[i]);
}

/* ---- the driver ---- */

static void
job_clear(struct job *j)
{
	size_t	i;

	free(j->s1);
	free(j->s2);
	free(j->s3);
	for (i = 0; i < j->argc; i++)
		free(j->argv[i]);
	free(j->argv);
	free(j->mres);
	free(j->resp);
	memset(j, 0, sizeof(*j));
}

static void
job_finish(struct milters *ms)
{
	struct job *j = &ms->job;
	milter_cb *cb = j->cb;
	void   *ctx = j->ctx;
	char   *resp = j->resp;

	j->resp = NULL;
	job_clear(j);
	free(ms->piece);
	ms->piece = NULL;
	ms->plen = ms->poff = 0;
	if (cb)
		cb(ctx, resp);
	free(resp);
}

static void
drive(struct milters *ms)
{
	struct job *j = &ms->job;

	while (j->active && !j->waiting && ms->rd == NULL && ms->commit_sp == NULL) {
		struct m8 *m;

		if (j->cur >= ms->n || j->resp != NULL) {
			job_finish(ms);
			return;
		}
		m = &ms->m[j->cur];
		if (j->event == EV_MESSAGE && !ms->head_done) {
			head_step(ms);
			continue;
		}
		if (j->event == EV_MESSAGE) {
			if (j->stage == MS_START)
				j->first_edit = ms->nedits;
			if (j->stage == MS_END) {
				/* the milter's message is over (or it was skipped) */
				if (!j->waiting) {
					char   *r = j->mres;

					j->mres = NULL;
					msg_milter_end(ms, m, j->first_edit);
					/* an edit that failed overrides all but D, S, 4XX */
					if (ms->edit_resp && (r == NULL || !strchr("DS4", r[0]))) {
						free(r);
						r = xstrdup(ms->edit_resp);
					}
					j->resp = r;
					j->cur++;
					j->stage = MS_START;
				}
				continue;
			}
			msg_step(ms, m);
			continue;
		}
		switch (j->stage) {
		case 0:
			j->stage = 1;
			free(j->mres);
			j->mres = NULL;
			if (j->event == SMFIC_CONNECT && m->state == ST_CLOSED) {
				m8_connect(m);
				continue;
			}
			/* FALLTHROUGH */
		case 1:
			if (j->event == SMFIC_CONNECT && j->mres != NULL) {
				/* the connection failed: its default reply */
				j->stage = 2;
				continue;
			}
			j->stage = 2;
			m8_envelope(m);
			continue;
		case 2:
			j->resp = j->mres;
			j->mres = NULL;
			j->cur++;
			j->stage = 0;
			continue;
		}
	}
}

/* After a read or a commit: the job goes on if nothing else holds it. */
static void
drive_resume(struct milters *ms)
{
	if (ms->job.active && !ms->job.waiting)
		drive(ms);
}

static void
kick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	drive(arg);
}

static void
job_start(struct milters *ms, int event, milter_cb *cb, void *ctx)
{
	struct job *j = &ms->job;

	if (j->active)
		msg_panic("milters: event %s while another is in flight", cmd_name(event));
	j->active = true;
	j->event = event;
	j->cb = cb;
	j->ctx = ctx;
	{
		struct timeval zero = { 0, 0 };

		evtimer_add(ms->kick, &zero);	/* never inside the call */
	}
}

/* ---- the interface ---- */

struct milters *
milters_new(const struct milter_conf *mc, struct event_base *eb, struct evdns_base *dns,
	    milter_macro_fn *mac, void *mac_ctx)
{
	struct milters *ms = xcalloc(1, sizeof(*ms));
	size_t	i;

	ms->mc = mc;
	ms->eb = eb;
	ms->dns = dns;
	ms->mac = mac;
	ms->mac_ctx = mac_ctx;
	ms->n = milter_conf_count(mc);
	ms->m = xcalloc(ms->n ? ms->n : 1, sizeof(*ms->m));
	for (i = 0; i < ms->n; i++) {
		struct m8 *m = &ms->m[i];

		m->ms = ms;
		m->d = &mc->defs[i];
		m->fd = -1;
		m->state = ST_CLOSED;
		milter_reader_init(&m->rd);
	}
	ms->kick = evtimer_new(eb, kick_cb, ms);
	return ms;
}

void
milters_cancel(struct milters *ms)
{
	struct job *j = &ms->job;

	if (!j->active)
		return;
	if (j->waiting && j->cur < ms->n) {
		struct m8 *m = &ms->m[j->cur];

		/* out of step: close it, as Postfix poisons a socket it cannot resync */
		if (m->wait == W_REPLY || m->wait == W_OPTNEG || m->wait == W_CONNECT
		    || m->wait == W_RESOLVE) {
			m8_comm_error(m);
		}
	}
	event_del(ms->kick);
	if (ms->rd != NULL) {
		ms->rd->abandoned = true;	/* rd_done() frees it */
		ms->rd = NULL;
	}
	if (ms->commit_sp != NULL) {
		spool_commit_cancel(ms->commit_sp);
		ms->commit_sp = NULL;
	}
	job_clear(j);
}

void
milters_connect(struct milters *ms, const char *name, const char *addr, const char *port,
		int family, milter_cb *cb, void *ctx)
{
	job_start(ms, SMFIC_CONNECT, cb, ctx);
	ms->job.s1 = xstrdup(name);
	ms->job.s2 = xstrdup(addr);
	ms->job.s3 = dup_or_null(port);
	ms->job.family = family;
}

void
milters_helo(struct milters *ms, const char *helo, milter_cb *cb, void *ctx)
{
	job_start(ms, SMFIC_HELO, cb, ctx);
	ms->job.s1 = xstrdup(helo);
}

static void
job_argv(struct job *j, const char *const *argv, size_t argc)
{
	size_t	i;

	j->argv = xcalloc(argc + 1, sizeof(char *));
	for (i = 0; i < argc; i++)
		j->argv[i] = xstrdup(argv[i]);
	j->argc = argc;
}

void
milters_mail(struct milters *ms, const char *const *argv, size_t argc, milter_cb *cb, void *ctx)
{
	job_start(ms, SMFIC_MAIL, cb, ctx);
	job_argv(&ms->job, argv, argc);
}

void
milters_rcpt(struct milters *ms, const char *const *argv, size_t argc, bool rejected,
	     milter_cb *cb, void *ctx)
{
	job_start(ms, SMFIC_RCPT, cb, ctx);
	job_argv(&ms->job, argv, argc);
	ms->job.rejected = rejected;
}

void
milters_data(struct milters *ms, milter_cb *cb, void *ctx)
{
	job_start(ms, SMFIC_DATA, cb, ctx);
}

void
milters_unknown(struct milters *ms, const char *command, milter_cb *cb, void *ctx)
{
	job_start(ms, SMFIC_UNKNOWN, cb, ctx);
	ms->job.s1 = xstrdup(command);
}

void
milters_set_io(struct milters *ms, const struct milter_io *io)
{
	ms->io = *io;
}

void
milters_message(struct milters *ms, struct spool *sp, const char *hide, milter_cb *cb,
		void *ctx)
{
	if (ms->io.pool == NULL || ms->io.new_spool == NULL)
		msg_panic("milters_message: no milters_set_io()");
	job_start(ms, EV_MESSAGE, cb, ctx);
	view_reset(ms);
	ms->src = spool_ref(sp);
	ms->hide = dup_or_null(hide);
}

const char *
milters_other(struct milters *ms)
{
	size_t	i;

	for (i = 0; i < ms->n; i++)
		if (ms->m[i].def_reply)
			return ms->m[i].def_reply;
	return NULL;
}

void
milters_abort(struct milters *ms)
{
	size_t	i;

	milters_cancel(ms);
	for (i = 0; i < ms->n; i++) {
		struct m8 *m = &ms->m[i];

		switch (m->state) {
		case ST_ENVELOPE:
		case ST_MESSAGE:
		case ST_ACCEPT_MSG:
			if (m->fd < 0)
				break;
			milter_put_empty(&m->out, SMFIC_ABORT);
			if (m8_flush(m) == 0) {
				m->state = ST_ENVELOPE;
				m->timeout = m->d->cmd_timeout;
				m8_arm(m);
			}
			break;
		default:
			break;
		}
	}
}

void
milters_disconnect(struct milters *ms)
{
	size_t	i;

	milters_cancel(ms);
	for (i = 0; i < ms->n; i++) {
		struct m8 *m = &ms->m[i];

		if (m->state == ST_CLOSED || m->state == ST_READY)
			continue;
		if (m->fd >= 0 && (m->state == ST_ENVELOPE || m->state == ST_MESSAGE
				   || m->state == ST_ACCEPT_MSG)) {
			milter_put_empty(&m->out, SMFIC_QUIT);
			(void)m8_flush(m);	/* what the socket takes now; then it closes */
		}
		m8_close_stream(m);
		set_def_reply(m, NULL);
	}
}

void
milters_free(struct milters **msp)
{
	struct milters *ms = *msp;
	size_t	i, k;

	*msp = NULL;
	if (ms == NULL)
		return;
	milters_disconnect(ms);
	for (i = 0; i < ms->n; i++) {
		struct m8 *m = &ms->m[i];

		m8_close(m);
		milter_reader_free(&m->rd);
		buf_free(&m->out);
		buf_free(&m->in);
		buf_free(&m->body);
		free(m->def_reply);
		for (k = 0; k < MAC__N; k++)
			free(m->macros[k]);
	}
	free(ms->m);
	view_reset(ms);
	event_free(ms->kick);
	free(ms);
}

const struct milter_edit *
milters_edits(const struct milters *ms, size_t *n_r)
{
	*n_r = ms->nedits;
	return ms->edits;
}

void
milters_view(const struct milters *ms, const struct milter_header **hdrs_r, size_t *nhdrs_r)
{
	*hdrs_r = ms->hdrs;
	*nhdrs_r = ms->nhdrs;
}

struct spool *
milters_body(const struct milters *ms, size_t *off_r, size_t *len_r)
{
	*off_r = ms->bbase;
	*len_r = ms->blen;
	return ms->bsrc;
}

const char *
milters_hidden(const struct milters *ms, size_t *len_r)
{
	*len_r = ms->hidden_len;
	return ms->hidden_len ? ms->head.data : "";
}
