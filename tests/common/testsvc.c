/*
 * testsvc: a session with everything around it, in memory.  See testsvc.h.
 */
#include "testsvc.h"

#include "fakedns.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"
#include "deliver/deliver.h"
#include "deliver/spool.h"
#include "fakeloop.h"
#include "policy/anvil.h"
#include "smtp/service.h"
#include "smtp/session_impl.h"
#include "util/loop.h"
#include "util/workpool.h"
#include "util/xalloc.h"

static int
testsvc_write(const char *dir, const char *name, const char *text)
{
	char path[256];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((fp = fopen(path, "w")) == NULL)
		return -1;
	fputs(text, fp);
	return fclose(fp);
}

/* The in-memory store: runs inline, inside the deliverer's submit. */
static int
testsvc_store(void *ctx, struct deliver_msg *m)
{
	struct testsvc *t = ctx;
	struct testsvc_msg *tm;
	char piece[4096];
	size_t off = 0, i;
	ssize_t n;

	if (t->fail_store) {
		buf_puts(&m->err, "store failed (test)");
		return -1;
	}
	t->msgs = xrealloc(t->msgs, (t->nmsgs + 1) * sizeof(*t->msgs));
	tm = &t->msgs[t->nmsgs++];
	memset(tm, 0, sizeof(*tm));
	snprintf(tm->queue_id, sizeof(tm->queue_id), "%s", m->queue_id);
	while ((n = spool_pread(m->body, piece, sizeof(piece), off)) > 0) {
		buf_append(&tm->body, piece, (size_t)n);
		off += (size_t)n;
	}
	/*
	 * received: the trace lines above the client's content, as stored: the
	 * PREPEND lines (m->received) and our Received: header, which cleanup
	 * put at the start of the spool (deliver/cleanup.h); body: the rest.
	 */
	{
		size_t hl = 0;

		if (tm->body.len > 10 && memcmp(tm->body.data, "Received: ", 10) == 0) {
			const char *p = tm->body.data, *end = p + tm->body.len;

			for (;;) {
				const char *nl = memchr(p, '\n', (size_t)(end - p));

				if (nl == NULL) {
					p = end;
					break;
				}
				p = nl + 1;
				if (p >= end || (*p != '\t' && *p != ' '))
					break;
			}
			hl = (size_t)(p - tm->body.data);
		}
		snprintf(tm->received, sizeof(tm->received), "%s%.*s", m->received ? m->received
			 : "", (int)hl, tm->body.data ? tm->body.data : "");
		if (hl > 0) {
			memmove(tm->body.data, tm->body.data + hl, tm->body.len - hl);
			buf_truncate(&tm->body, tm->body.len - hl);
		}
	}
	tm->nrcpts = m->nrcpts;
	tm->bdat = t->s != NULL && t->s->txn.bdat_used;
	tm->consumed = t->io.consumed;
	for (i = 0; i < m->nrcpts; i++)
		m->rcpts[i].status = 0;
	return 0;
}

int
testsvc_init(struct testsvc *t, const char *main_cf, const char *anvil_spec)
{
	if (testsvc_init_service(t, main_cf) < 0)
		return -1;
	return testsvc_init_env(t, anvil_spec);
}

int
testsvc_init_service(struct testsvc *t, const char *main_cf)
{
	struct conf_report rep = { 0 };
	struct buf cf = BUF_INIT;
	char *err = NULL;
	size_t i;

	memset(t, 0, sizeof(*t));
	snprintf(t->dir, sizeof(t->dir), "/tmp/mxgate-testsvc-XXXXXX");
	if (mkdtemp(t->dir) == NULL)
		return -1;
	buf_printf(&cf, "myhostname = mx.example.test\nmydestination =\nalias_maps =\n"
		   "mynetworks = 192.0.2.0/24\n");
	if (strstr(main_cf, "virtual_mailbox_domains") == NULL)
		buf_printf(&cf, "virtual_mailbox_domains = virt.test\n"
			   "virtual_mailbox_maps = texthash:%s/vmailbox\n"
			   "virtual_mailbox_base = %s/vmail\n"
			   "virtual_uid_maps = static:%d\nvirtual_gid_maps = static:%d\n",
			   t->dir, t->dir, TESTSVC_UID, TESTSVC_UID);
	buf_puts(&cf, main_cf);
	buf_putc(&cf, '\n');
	if (testsvc_write(t->dir, "main.cf", cf.data) < 0
	    || testsvc_write(t->dir, "master.cf", "127.0.0.1:2525 inet n - n - - smtpd\n") < 0
	    || testsvc_write(t->dir, "vmailbox", "alice@virt.test alice/\nbob@virt.test bob/\n") < 0) {
		buf_free(&cf);
		return -1;
	}
	buf_free(&cf);
	if ((t->conf = conf_load(t->dir, NULL, 0, &rep)) == NULL) {
		for (i = 0; i < rep.count; i++)
			fprintf(stderr, "testsvc: %s\n", rep.items[i].text);
		conf_report_free(&rep);
		return -1;
	}
	conf_report_free(&rep);
	if (smtp_service_build(conf_service_at(t->conf, 0), &t->normal, &t->stress, &err) < 0) {
		fprintf(stderr, "testsvc: %s\n", err);
		free(err);
		return -1;
	}
	t->ss = t->normal;
	return 0;
}

int
testsvc_init_env(struct testsvc *t, const char *anvil_spec)
{
	char *err = NULL;

	t->nmsgs = 0;
	t->msgs = NULL;
	t->s = NULL;
	if ((t->anvil = anvil_create(anvil_spec, 60, 0, &err)) == NULL) {
		fprintf(stderr, "testsvc: %s\n", err);
		free(err);
		return -1;
	}
	anvil_set_timeout(t->anvil,
			  conf_time(conf_global(t->conf), P_mxgate_anvil_timeout) * 1000);
	t->fl = fakeloop_new();
	t->pool = workpool_create("test", 0);
	t->deliver = deliverer_create(t->pool, testsvc_store, t);
	atomic_init(&t->body_bytes, 0);
	t->env.loop = fakeloop_loop(t->fl);
	t->env.anvil = t->anvil;
	t->env.lookups = t->pool;
	t->env.remote_lookups = t->pool;
	t->env.deliver = t->deliver;
	t->env.body_bytes = &t->body_bytes;
	t->env.run_uid = TESTSVC_UID;
	return 0;
}

struct session *
testsvc_connect(struct testsvc *t, const char *addr)
{
	return testsvc_connect_named(t, addr, "unknown", "unknown", 0, 0);
}

void
testsvc_set_dns(struct testsvc *t, const char *const *records)
{
	fakedns_free(&t->dns);
	t->dns = fakedns_new(t->env.loop, records);
	t->env.dns = fakedns_client(t->dns);
}

struct session *
testsvc_connect_named(struct testsvc *t, const char *addr, const char *name, const char *reverse,
		      int name_status, int reverse_status)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	inet_pton(AF_INET, addr, &sin.sin_addr);
	memio_init(&t->io);
	t->s = session_new(&t->env, t->ss, &memio_ops, &t->io, (struct sockaddr *)&sin,
			   sizeof(sin));
	t->io.s = t->s;
	session_start(t->s, name, reverse, name_status, reverse_status);
	return t->s;
}

void
testsvc_disconnect(struct testsvc *t)
{
	session_free(&t->s);
	t->io.s = NULL;
	memio_free(&t->io);
}

void
testsvc_settle(struct testsvc *t, int max_timers)
{
	fakeloop_run(t->fl);
	while (max_timers-- > 0 && fakeloop_advance(t->fl))
		;
}

void
testsvc_free_env(struct testsvc *t)
{
	size_t i;

	if (t->s != NULL)
		testsvc_disconnect(t);
	if (t->fl != NULL)
		fakeloop_run(t->fl);
	anvil_free(&t->anvil);
	fakedns_free(&t->dns);
	t->env.dns = NULL;
	workpool_destroy(&t->pool);
	if (t->fl != NULL)
		fakeloop_free(&t->fl);
	deliverer_free(&t->deliver);
	for (i = 0; i < t->nmsgs; i++)
		buf_free(&t->msgs[i].body);
	free(t->msgs);
	t->msgs = NULL;
	t->nmsgs = 0;
}

void
testsvc_free(struct testsvc *t)
{
	char cmd[128];

	testsvc_free_env(t);
	smtp_service_data_free(t->normal, t->stress);
	conf_free(&t->conf);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "testsvc: cannot remove %s\n", t->dir);
}
