/*
 * anvil: the backend-independent part of the interface: the registry of
 * backends, request dispatch with the answer bound and cancellation, and
 * the helpers that build idents.  See anvil.h.
 */
#include "policy/anvil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "log/log.h"
#include "policy/anvil_backend.h"
#include "util/buf.h"
#include "util/loop.h"
#include "util/xalloc.h"

/* Seconds between two "no answer" warnings. */
#define ANVIL_WARN_EVERY	60

/* ---- backends --------------------------------------------------------- */

#define ANVIL_MAX_BACKENDS	8

static struct {
	const char *name;
	anvil_factory *create;
} anvil_backends[ANVIL_MAX_BACKENDS];
static size_t anvil_nbackends;

void
anvil_backend_register(const char *name, anvil_factory *create)
{
	if (anvil_nbackends == ANVIL_MAX_BACKENDS)
		msg_panic("anvil_backend_register: too many backends");
	anvil_backends[anvil_nbackends].name = name;
	anvil_backends[anvil_nbackends].create = create;
	anvil_nbackends++;
}

struct anvil *
anvil_create(const char *spec, long rate_time_unit, size_t max_entries, char **err_r)
{
	const char *colon = strchr(spec, ':');
	size_t nlen = colon ? (size_t)(colon - spec) : strlen(spec);
	size_t i;

	*err_r = NULL;
	if (nlen == 6 && strncmp(spec, "memory", 6) == 0 && colon == NULL)
		return anvil_memory_create(rate_time_unit, max_entries);
	if (nlen == 5 && strncmp(spec, "redis", 5) == 0)
		return anvil_redis_create(colon ? colon + 1 : "", rate_time_unit, max_entries, err_r);
	for (i = 0; i < anvil_nbackends; i++)
		if (strlen(anvil_backends[i].name) == nlen
		    && strncmp(anvil_backends[i].name, spec, nlen) == 0)
			return anvil_backends[i].create(colon ? colon + 1 : "", rate_time_unit,
							max_entries, err_r);
	*err_r = xasprintf("unknown anvil backend \"%.*s\" (mxgate supports: memory, redis)", (int)nlen,
			   spec);
	return NULL;
}

static struct anvil_settings anvil_cur_settings = {
	"mxgate:", "", ANVIL_DEF_LEASE_TIME
};

void
anvil_set_settings(const struct anvil_settings *s)
{
	static char *prefix, *pwfile;

	free(prefix);
	free(pwfile);
	prefix = xstrdup(s->redis_prefix ? s->redis_prefix : "mxgate:");
	pwfile = xstrdup(s->redis_password_file ? s->redis_password_file : "");
	anvil_cur_settings.redis_prefix = prefix;
	anvil_cur_settings.redis_password_file = pwfile;
	anvil_cur_settings.lease_time = s->lease_time > 0 ? s->lease_time : ANVIL_DEF_LEASE_TIME;
}

const struct anvil_settings *
anvil_get_settings(void)
{
	return &anvil_cur_settings;
}

void
anvil_attach_loop(struct anvil *a, struct loop *l, struct event_base *base)
{
	if (a->ops->attach != NULL)
		a->ops->attach(a, l, base);
}

void
anvil_detach_loop(struct anvil *a, struct loop *l)
{
	if (a->ops->detach != NULL)
		a->ops->detach(a, l);
}

int
anvil_ident_matches(const char *ident, const char *match)
{
	size_t il, ml;

	if (match == NULL || *match == '\0' || strcmp(ident, match) == 0)
		return 1;
	il = strlen(ident);
	ml = strlen(match);
	return il > ml && ident[il - ml - 1] == ':' && strcmp(ident + il - ml, match) == 0;
}

size_t
anvil_list(struct anvil *a, time_t now, const char *match, anvil_list_fn *fn, void *ctx)
{
	return a->ops->list != NULL ? a->ops->list(a, now, match, fn, ctx) : 0;
}

size_t
anvil_clear(struct anvil *a, time_t now, const char *match)
{
	return a->ops->clear != NULL ? a->ops->clear(a, now, match) : 0;
}

void
anvil_init(struct anvil *a, const struct anvil_ops *ops)
{
	a->ops = ops;
	a->timeout_ms = ANVIL_DEF_TIMEOUT_MS;
	a->next_warn = 0;
	a->given_up = 0;
}

const char *
anvil_op_name(enum anvil_op op)
{
	static const char *const names[] = {
		[ANVIL_OP_CONNECT] = "connect", [ANVIL_OP_DISCONNECT] = "disconnect",
		[ANVIL_OP_MESSAGE] = "message", [ANVIL_OP_RECIPIENT] = "recipient",
		[ANVIL_OP_NEWTLS] = "newtls", [ANVIL_OP_NEWTLS_REPORT] = "newtls_report",
		[ANVIL_OP_AUTH] = "auth", [ANVIL_OP_LOOKUP] = "lookup",
	};

	return names[op];
}

void
anvil_free(struct anvil **ap)
{
	if (*ap == NULL)
		return;
	(*ap)->ops->free(*ap);
	*ap = NULL;
}

void
anvil_set_rate_time_unit(struct anvil *a, long rate_time_unit)
{
	a->ops->set_rate_time_unit(a, rate_time_unit);
}

void
anvil_set_timeout(struct anvil *a, long msec)
{
	__atomic_store_n(&a->timeout_ms, msec < 1 ? 1 : msec, __ATOMIC_RELAXED);
}

/* ---- requests --------------------------------------------------------- */

struct anvil_req {
	struct anvil *a;
	struct loop *loop;
	anvil_cb *cb;
	void   *ctx;
	enum anvil_op op;
	struct loop_timer *bound;	/* the answer bound, while pending */
	void   *handle;			/* the backend's, while pending */
	int	in_request;		/* inside ops->request(): cb may come at once */
	int	answered;
};

static void
anvil_req_free(struct anvil_req *req)
{
	if (req->bound != NULL)
		loop_timer_free(req->loop, &req->bound);
	free(req);
}

/* The backend's answer, on the caller's loop. */
static void
anvil_answer(void *ctx, const struct anvil_reply *r)
{
	struct anvil_req *req = ctx;

	req->answered = 1;
	req->cb(req->ctx, r);
	if (!req->in_request)
		anvil_req_free(req);
}

/* No answer within the bound: fail open, and say so now and then. */
static void
anvil_bound_cb(void *arg)
{
	struct anvil_req *req = arg;
	struct anvil *a = req->a;
	struct anvil_reply r = { .status = -1 };
	long now = (long)time(NULL);
	long ms = __atomic_load_n(&a->timeout_ms, __ATOMIC_RELAXED);
	long next = __atomic_load_n(&a->next_warn, __ATOMIC_RELAXED);
	long since = __atomic_fetch_add(&a->given_up, 1, __ATOMIC_RELAXED);

	if (a->ops->cancel != NULL && req->handle != NULL)
		a->ops->cancel(a, req->handle);
	req->handle = NULL;
	if (now >= next && __atomic_compare_exchange_n(&a->next_warn, &next,
						       now + ANVIL_WARN_EVERY, 0,
						       __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
		__atomic_store_n(&a->given_up, 0, __ATOMIC_RELAXED);
		if (since > 0)
			msg_warn("anvil: no answer to a %s request within %.3gs; applying no limit "
				 "(%ld more requests given up on since the last warning)",
				 anvil_op_name(req->op), (double)ms / 1000.0, since);
		else
			msg_warn("anvil: no answer to a %s request within %.3gs; applying no limit",
				 anvil_op_name(req->op), (double)ms / 1000.0);
	}
	req->cb(req->ctx, &r);
	anvil_req_free(req);
}

static struct anvil_req *
anvil_request(struct anvil *a, struct loop *l, enum anvil_op op, const char *ident, time_t now,
	      anvil_cb *cb, void *ctx)
{
	struct anvil_req *req;

	if (cb == NULL) {
		(void)a->ops->request(a, l, op, ident, now, NULL, NULL);
		return NULL;
	}
	req = xcalloc(1, sizeof(*req));
	req->a = a;
	req->loop = l;
	req->cb = cb;
	req->ctx = ctx;
	req->op = op;
	req->in_request = 1;
	req->handle = a->ops->request(a, l, op, ident, now, anvil_answer, req);
	req->in_request = 0;
	if (req->answered) {
		anvil_req_free(req);
		return NULL;
	}
	if (l == NULL)
		msg_panic("anvil %s: backend %s answers later, but the request has no loop",
			  anvil_op_name(op), a->ops->name);
	req->bound = loop_timer_new(l, anvil_bound_cb, req);
	loop_timer_set(l, req->bound, __atomic_load_n(&a->timeout_ms, __ATOMIC_RELAXED));
	return req;
}

void
anvil_cancel(struct anvil_req *req)
{
	if (req == NULL)
		return;
	if (req->a->ops->cancel != NULL && req->handle != NULL)
		req->a->ops->cancel(req->a, req->handle);
	anvil_req_free(req);
}

#define ANVIL_REQUEST_FN(fn, op) \
	struct anvil_req *fn(struct anvil *a, struct loop *l, const char *ident, time_t now, \
			     anvil_cb *cb, void *ctx) \
	{ \
		return anvil_request(a, l, op, ident, now, cb, ctx); \
	}

ANVIL_REQUEST_FN(anvil_connect, ANVIL_OP_CONNECT)
ANVIL_REQUEST_FN(anvil_disconnect, ANVIL_OP_DISCONNECT)
ANVIL_REQUEST_FN(anvil_message, ANVIL_OP_MESSAGE)
ANVIL_REQUEST_FN(anvil_recipient, ANVIL_OP_RECIPIENT)
ANVIL_REQUEST_FN(anvil_newtls, ANVIL_OP_NEWTLS)
ANVIL_REQUEST_FN(anvil_newtls_report, ANVIL_OP_NEWTLS_REPORT)
ANVIL_REQUEST_FN(anvil_auth, ANVIL_OP_AUTH)
ANVIL_REQUEST_FN(anvil_lookup, ANVIL_OP_LOOKUP)

/* ---- housekeeping ------------------------------------------------------ */

void
anvil_sweep(struct anvil *a, time_t now)
{
	a->ops->sweep(a, now);
}

size_t
anvil_entries(struct anvil *a)
{
	return a->ops->entries != NULL ? a->ops->entries(a) : 0;
}

void
anvil_log_statistics(struct anvil *a, time_t now)
{
	a->ops->log_statistics(a, now);
}

/* ---- idents ------------------------------------------------------------ */

/* Clear every bit of addr (len bytes) after the first prefix bits. */
static void
anvil_mask(unsigned char *addr, size_t len, int prefix)
{
	size_t i;

	for (i = 0; i < len; i++) {
		int keep = prefix - (int)i * 8;

		if (keep >= 8)
			continue;
		addr[i] &= keep <= 0 ? 0 : (unsigned char)(0xff << (8 - keep));
	}
}
int
anvil_client_key(char *out, size_t outlen, const struct sockaddr *sa, int v4_prefix,
		 int v6_prefix)
{
	unsigned char addr[16];
	char text[INET6_ADDRSTRLEN];
	int family, prefix, full, n;

	if (outlen > 0)
		out[0] = '\0';
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		memcpy(addr, &sin->sin_addr, 4);
		family = AF_INET;
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			memcpy(addr, sin6->sin6_addr.s6_addr + 12, 4);
			family = AF_INET;
		} else {
			memcpy(addr, &sin6->sin6_addr, 16);
			family = AF_INET6;
		}
	} else {
		return -1;
	}
	prefix = family == AF_INET ? v4_prefix : v6_prefix;
	full = family == AF_INET ? 32 : 128;
	if (prefix < 0 || prefix > full)
		return -1;
	anvil_mask(addr, (size_t)full / 8, prefix);
	if (inet_ntop(family, addr, text, sizeof(text)) == NULL)
		return -1;
	if (prefix == full)
		n = snprintf(out, outlen, "%s", text);
	else
		n = snprintf(out, outlen, "%s/%d", text, prefix);
	if (n < 0 || (size_t)n >= outlen) {
		if (outlen > 0)
			out[0] = '\0';
		return -1;
	}
	return 0;
}

void
anvil_ident(struct buf *out, const char *service, const char *client_key)
{
	const char *parts[2] = { service, client_key };
	int i;

	for (i = 0; i < 2; i++) {
		const unsigned char *p;

		if (i > 0)
			buf_putc(out, ':');
		for (p = (const unsigned char *)parts[i]; *p != '\0'; p++)
			buf_putc(out, *p >= 0x20 && *p < 0x7f ? (char)*p : '?');
	}
}
