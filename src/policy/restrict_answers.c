/*
 * restrict_answers: the answers a session's restrictions asked for (DNS
 * records, policy actions); the contract is in restrict.h.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy/restrict.h"
#include "util/dns.h"
#include "util/xalloc.h"

struct answer {
	struct answer *next;
	enum restrict_ask_kind kind;
	char   *name;		/* DNS name (as asked) or policy server */
	int	type;
	char   *request;	/* POLICY */
	unsigned serial;	/* POLICY: the command it was asked for */
	char   *action;		/* POLICY; NULL: failed */
	struct dns_answer dns;
};

struct restrict_answers {
	atomic_int refs;
	_Atomic(struct answer *) head;
	atomic_size_t count;
};

struct restrict_answers *
restrict_answers_new(void)
{
	struct restrict_answers *a = xcalloc(1, sizeof(*a));

	atomic_init(&a->refs, 1);
	return a;
}

struct restrict_answers *
restrict_answers_ref(struct restrict_answers *a)
{
	if (a != NULL)
		atomic_fetch_add(&a->refs, 1);
	return a;
}

void
restrict_answers_free(struct restrict_answers **ap)
{
	struct restrict_answers *a = *ap;
	struct answer *n, *next;

	*ap = NULL;
	if (a == NULL || atomic_fetch_sub(&a->refs, 1) != 1)
		return;
	for (n = atomic_load(&a->head); n != NULL; n = next) {
		next = n->next;
		free(n->name);
		free(n->request);
		free(n->action);
		dns_answer_free(&n->dns);
		free(n);
	}
	free(a);
}

size_t
restrict_answers_count(const struct restrict_answers *a)
{
	return a ? atomic_load(&((struct restrict_answers *)a)->count) : 0;
}

static void
publish(struct restrict_answers *a, struct answer *n)
{
	n->next = atomic_load(&a->head);
	atomic_store(&a->head, n);	/* seq_cst: readers see n complete */
	atomic_fetch_add(&a->count, 1);
}

void
restrict_answers_add_dns(struct restrict_answers *a, const char *name, int type,
			 const struct dns_answer *ans)
{
	struct answer *n = xcalloc(1, sizeof(*n));

	n->kind = RESTRICT_ASK_DNS;
	n->name = xstrdup(name);
	n->type = type;
	dns_answer_copy(&n->dns, ans);
	publish(a, n);
}

void
restrict_answers_add_policy(struct restrict_answers *a, unsigned serial, const char *server,
			    const char *request, const char *action)
{
	struct answer *n = xcalloc(1, sizeof(*n));

	n->kind = RESTRICT_ASK_POLICY;
	n->name = xstrdup(server);
	n->request = xstrdup(request);
	n->serial = serial;
	n->action = action ? xstrdup(action) : NULL;
	publish(a, n);
}

const struct dns_answer *
restrict_answers_dns(const struct restrict_answers *a, const char *name, int type)
{
	if (a == NULL)
		return NULL;
	for (struct answer *n = atomic_load(&((struct restrict_answers *)a)->head); n; n = n->next)
		if (n->kind == RESTRICT_ASK_DNS && n->type == type && strcasecmp(n->name, name) == 0)
			return &n->dns;
	return NULL;
}

bool
restrict_answers_policy(const struct restrict_answers *a, unsigned serial, const char *server,
			const char *request, const char **action_r)
{
	if (a == NULL)
		return false;
	for (struct answer *n = atomic_load(&((struct restrict_answers *)a)->head); n; n = n->next)
		if (n->kind == RESTRICT_ASK_POLICY && n->serial == serial
		    && strcmp(n->name, server) == 0
		    && strcmp(n->request, request) == 0) {
			*action_r = n->action;
			return true;
		}
	return false;
}
