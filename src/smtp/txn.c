/*
 * txn: the mail transaction.  See txn.h.
 */
#include "smtp/txn.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include "deliver/cleanup.h"
#include "deliver/deliver.h"
#include "deliver/spool.h"
#include "smtp/address.h"
#include "util/xalloc.h"

static void
txn_rcpt_free(struct txn_rcpt *r)
{
	free(r->addr);
	free(r->quoted);
	for (size_t k = 0; k < r->ntargets; k++) {
		free(r->targets[k].quoted);
		free(r->targets[k].maildir);
		free(r->targets[k].transport);
		for (size_t v = 0; v < r->targets[k].nvia; v++)
			free(r->targets[k].via[v]);
		free(r->targets[k].via);
	}
	free(r->targets);
}

int
txn_remove_rcpt(struct txn *t, const char *addr)
{
	for (size_t i = 0; i < t->nrcpts; i++) {
		if (strcasecmp(t->rcpts[i].addr, addr) != 0)
			continue;
		txn_rcpt_free(&t->rcpts[i]);
		memmove(t->rcpts + i, t->rcpts + i + 1, (t->nrcpts - i - 1) * sizeof(*t->rcpts));
		t->nrcpts--;
		return 1;
	}
	return 0;
}

void
txn_reset(struct txn *t)
{
	size_t i;

	free(t->sender);
	for (i = 0; i < t->nrcpts; i++)
		txn_rcpt_free(&t->rcpts[i]);
	free(t->rcpts);
	spool_unref(&t->body);
	buf_free(&t->chunk);
	if (t->cl_on)
		cleanup_free(&t->cl);
	free(t->cl_sender);
	free(t->cl_log_ctx);
	buf_free(&t->clout);
	memset(t, 0, sizeof(*t));
	t->bdat_refuse = -1;
}

void
txn_drop_message(struct txn *t)
{
	char   *sender = t->sender;
	int	utf8 = t->smtputf8;
	struct timeval arrival = t->arrival;
	size_t	count = t->rcpt_count;
	long	overshoot = t->rcpt_overshoot;

	t->sender = NULL;
	txn_reset(t);
	t->sender = sender;
	t->smtputf8 = utf8;
	t->arrival = arrival;
	t->rcpt_count = count;
	t->rcpt_overshoot = overshoot;
}

void
txn_new_queue_id(struct txn *t)
{
	static atomic_uint seq;
	struct timeval tv;
	unsigned n = atomic_fetch_add(&seq, 1);

	/* Postfix-like short id: microseconds (5 hex) then a sequence mixed with time. */
	gettimeofday(&tv, NULL);
	snprintf(t->queue_id, sizeof(t->queue_id), "%05X%06X", (unsigned)tv.tv_usec & 0xFFFFF,
		 ((unsigned)tv.tv_sec * 2654435761u + n * 40503u) & 0xFFFFFF);
}

int
txn_has_rcpt(const struct txn *t, const char *addr)
{
	size_t i;

	for (i = 0; i < t->nrcpts; i++)
		if (strcasecmp(t->rcpts[i].addr, addr) == 0)
			return 1;
	return 0;
}

char *
txn_quote(const char *addr)
{
	struct buf b = BUF_INIT;

	if (*addr != '\0')
		smtp_addr_quote(&b, addr);
	return buf_steal(&b);
}

struct txn_rcpt *
txn_add_rcpt(struct txn *t, const char *addr)
{
	struct txn_rcpt *r;

	if (t->nrcpts == t->rcpt_cap) {
		t->rcpt_cap = t->rcpt_cap ? 2 * t->rcpt_cap : 4;
		t->rcpts = xrealloc(t->rcpts, t->rcpt_cap * sizeof(*t->rcpts));
	}
	r = &t->rcpts[t->nrcpts++];
	memset(r, 0, sizeof(*r));
	r->addr = xstrdup(addr);
	r->quoted = txn_quote(addr);
	return r;
}

void
txn_rcpt_target(struct txn_rcpt *r, const char *address, const char *maildir, uid_t uid,
		gid_t gid, char *const *via, size_t nvia)
{
	struct txn_target *tg;

	r->targets = xrealloc(r->targets, (r->ntargets + 1) * sizeof(*r->targets));
	tg = &r->targets[r->ntargets++];
	tg->quoted = txn_quote(address);
	tg->maildir = xstrdup(maildir ? maildir : "");
	tg->transport = NULL;
	tg->local = 0;
	tg->uid = uid;
	tg->gid = gid;
	tg->nvia = nvia;
	tg->via = nvia ? xcalloc(nvia, sizeof(*tg->via)) : NULL;
	for (size_t i = 0; i < nvia; i++)
		tg->via[i] = txn_quote(via[i]);
}

void
txn_target_transport(struct txn_rcpt *r, const char *transport)
{
	struct txn_target *tg = &r->targets[r->ntargets - 1];

	free(tg->transport);
	tg->transport = transport ? xstrdup(transport) : NULL;
}

void
txn_body_start(struct txn *t, struct spool *sp)
{
	spool_unref(&t->body);
	t->body = sp;
	buf_reset(&t->chunk);
}

void
txn_body_cleanup(struct txn *t, const struct cleanup_conf *cf, int add_missing,
		 const char *head, const char *log_ctx)
{
	if (t->cl_on)
		cleanup_free(&t->cl);
	free(t->cl_sender);
	free(t->cl_log_ctx);
	t->cl_sender = txn_quote(t->sender ? t->sender : "");
	t->cl_log_ctx = xstrdup(log_ctx ? log_ctx : "");
	cleanup_init(&t->cl, cf, &t->clout, add_missing, t->cl_sender, t->queue_id,
		     t->arrival.tv_sec);
	t->cl.log_ctx = t->cl_log_ctx;
	t->cl_on = 1;
	if (head != NULL)
		cleanup_feed(&t->cl, head, strlen(head));
	cleanup_content_start(&t->cl);
}

static void
txn_spool_out(struct txn *t, struct buf *b)
{
	if (b->len == 0)
		return;
	if (t->body != NULL)
		(void)spool_write(t->body, b->data, b->len);
	buf_reset(b);
	/* A large buffer is not kept between reads: a session costs kilobytes. */
	if (b->cap > 64 * 1024)
		buf_free(b);
}

void
txn_body_flush(struct txn *t)
{
	if (t->chunk.len == 0 && t->clout.len == 0)
		return;
	if (!t->cl_on) {
		txn_spool_out(t, &t->chunk);
		return;
	}
	cleanup_feed(&t->cl, t->chunk.data ? t->chunk.data : "", t->chunk.len);
	buf_reset(&t->chunk);
	if (t->chunk.cap > 64 * 1024)
		buf_free(&t->chunk);
	txn_spool_out(t, &t->clout);
}

void
txn_body_end(struct txn *t)
{
	txn_body_flush(t);
	if (t->cl_on) {
		cleanup_finish(&t->cl);
		txn_spool_out(t, &t->clout);
	}
}

const char *
txn_mail_loop(const struct txn *t, const char **rcpt_r)
{
	if (!t->cl_on)
		return NULL;
	for (size_t i = 0; i < t->nrcpts; i++)
		for (size_t k = 0; k < t->rcpts[i].ntargets; k++)
			for (size_t v = 0; v < t->rcpts[i].targets[k].nvia; v++)
				if (cleanup_has_delivered_to(&t->cl, t->rcpts[i].targets[k].via[v])) {
					*rcpt_r = t->rcpts[i].quoted;
					return t->rcpts[i].targets[k].via[v];
				}
	return NULL;
}

void
txn_cleanup_logs(struct txn *t, void (*fn)(void *arg, const char *line), void *arg)
{
	struct buf b = BUF_INIT;
	char *p, *nl;

	if (!t->cl_on)
		return;
	cleanup_take_logs(&t->cl, &b);
	if (b.len == 0) {
		buf_free(&b);
		return;
	}
	for (p = b.data; (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
		*nl = '\0';
		fn(arg, p);
	}
	buf_free(&b);
}

/* Postfix's mail_date(): the date of a Received: header. */
static void
txn_date(char *date, size_t size)
{
	struct tm tm;
	time_t now = time(NULL);

	localtime_r(&now, &tm);
	strftime(date, size, "%a, %e %b %Y %H:%M:%S %z (%Z)", &tm);
}

/* Client data in a header: no control characters survive (SECURITY_CHECKLIST 60). */
static void
txn_header_text(struct buf *out, const char *s)
{
	for (; *s; s++)
		buf_putc(out, (unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s);
}

void
txn_received(const struct txn *t, const struct txn_client *c, struct buf *out)
{
	char date[64];
	size_t namelen = strcspn(c->namaddr, "[");
	const char *proto = t->smtputf8 ? "UTF8SMTP" : c->proto;
	/* RFC 3848's S is defined for ESMTP only (not for SMTP; UTF8SMTPS is ESMTP too) */
	const char *s = c->tls && strcmp(c->proto, "ESMTP") == 0 ? "S" : "";
	struct tm tm;
	time_t when = t->arrival.tv_sec;

	localtime_r(&when, &tm);
	strftime(date, sizeof(date), "%a, %e %b %Y %H:%M:%S %z (%Z)", &tm);
	buf_puts(out, "Received: from ");
	if (c->helo)
		txn_header_text(out, c->helo);
	else
		buf_printf(out, "%.*s", (int)namelen, c->namaddr);
	buf_printf(out, " (%.*s [%s%s])", (int)namelen, c->namaddr,
		   strchr(c->addr, ':') ? "IPv6:" : "", c->addr);
	if (c->tls_comment != NULL && *c->tls_comment)
		buf_printf(out, "\n%s", c->tls_comment);
	if (t->rcpt_count == 1 && t->nrcpts == 1)
		buf_printf(out, "\n\tby %s (%s) with %s%s id %s\n\tfor <%s>; %s\n", c->hostname,
			   c->mail_name, proto, s, t->queue_id, t->rcpts[0].quoted, date);
	else
		buf_printf(out, "\n\tby %s (%s) with %s%s id %s;\n\t%s\n", c->hostname,
			   c->mail_name, proto, s, t->queue_id, date);
}

struct deliver_msg *
txn_deliver_msg(const struct txn *t, const struct txn_client *c, size_t size)
{
	char *sender = txn_quote(t->sender ? t->sender : "");
	struct deliver_msg *m = deliver_msg_new(t->queue_id, sender, c->hostname, t->body);
	struct buf rcv = BUF_INIT;
	char date[64];
	size_t i;

	free(sender);
	/* with cleanup, the Received: header went into the spool at the start of the body */
	if (!t->cl_on) {
		txn_received(t, c, &rcv);
		m->received = buf_steal(&rcv);
	}
	m->size = size;
	m->arrival = t->arrival;
	txn_date(date, sizeof(date));
	/*
	 * Postfix's duplicate filter keys on (original recipient, final
	 * address): a final address that two RCPTs lead to is two copies.
	 * Within one RCPT the targets are distinct already (recipient.h), and
	 * a repeated RCPT is one recipient (txn_has_rcpt()).
	 */
	for (i = 0; i < t->nrcpts; i++) {
		for (size_t k = 0; k < t->rcpts[i].ntargets; k++) {
			const struct txn_target *tg = &t->rcpts[i].targets[k];

			if (tg->transport != NULL && strncmp(tg->transport, "lmtp:", 5) == 0)
				deliver_msg_add_lmtp(m, tg->quoted, tg->transport + 5);
			else if (tg->transport != NULL && strncmp(tg->transport, "discard:", 8) == 0)
				deliver_msg_add_discard(m, tg->quoted, tg->transport + 8);
			else if (tg->local)
				deliver_msg_add_local(m, tg->quoted, tg->maildir, tg->uid, tg->gid);
			else
				deliver_msg_add_maildir(m, tg->quoted, tg->maildir, tg->uid, tg->gid);
			if (strcasecmp(tg->quoted, t->rcpts[i].quoted) != 0)
				deliver_rcpt_orig(m, t->rcpts[i].quoted);
			if (tg->nvia > 0) {
				struct buf tr = BUF_INIT;

				/* what each forwarding local(8) prepended, newest on top */
				for (size_t v = 0; v < tg->nvia; v++) {
					buf_printf(&tr, "Received: by %s (%s)\n\tid %s; %s\n"
						   "Delivered-To: ", c->hostname, c->mail_name,
						   t->queue_id, date);
					txn_header_text(&tr, tg->via[v]);
					buf_putc(&tr, '\n');
				}
				deliver_rcpt_trace(m, buf_str(&tr));
				buf_free(&tr);
			}
		}
	}
	return m;
}
