/*
 * txn: the delivery request a transaction becomes (txn_deliver_msg()): one
 * copy per (recipient, final address), orig_to when an alias led there, and
 * the header lines of a copy that local(8) forwarded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "deliver/deliver.h"
#include "deliver/spool.h"
#include "smtp/txn.h"

static const struct txn_client client = {
	.helo = "client.example", .namaddr = "localhost[127.0.0.1]", .addr = "127.0.0.1",
	.proto = "ESMTP", .hostname = "mx.example.test", .mail_name = "mxgate",
};

static atomic_long total;

static void
start(struct txn *t)
{
	memset(t, 0, sizeof(*t));
	t->bdat_refuse = -1;
	t->sender = strdup("a@example.org");
	txn_new_queue_id(t);
	txn_body_start(t, spool_memory_new(&total, 1 << 20));
}

static void
add(struct txn *t, const char *rcpt, const char *const *finals, size_t n)
{
	struct txn_rcpt *r = txn_add_rcpt(t, rcpt);

	for (size_t i = 0; i < n; i++)
		txn_rcpt_target(r, finals[i], "/srv/vmail/x/", 5000, 5000, NULL, 0);
}

/* info -> alice; team -> alice, bob; sales -> bob: alice twice, bob twice. */
static void
test_copy_per_rcpt_and_final(void **state)
{
	static const char *info[] = { "alice@virt.test" }, *team[] = { "alice@virt.test",
		"bob@virt.test" }, *sales[] = { "bob@virt.test" }, *self[] = { "carol@virt.test" };
	struct txn t;
	struct deliver_msg *m;
	const char *want[][2] = {
		{ "alice@virt.test", "info@virt.test" }, { "alice@virt.test", "team@virt.test" },
		{ "bob@virt.test", "team@virt.test" }, { "bob@virt.test", "sales@virt.test" },
		{ "carol@virt.test", NULL },
	};

	(void)state;
	start(&t);
	add(&t, "info@virt.test", info, 1);
	add(&t, "team@virt.test", team, 2);
	add(&t, "sales@virt.test", sales, 1);
	add(&t, "carol@virt.test", self, 1);
	m = txn_deliver_msg(&t, &client, 10);
	assert_int_equal(m->nrcpts, 5);
	for (size_t i = 0; i < 5; i++) {
		assert_string_equal(m->rcpts[i].address, want[i][0]);
		if (want[i][1] == NULL)
			assert_null(m->rcpts[i].orig);
		else
			assert_string_equal(m->rcpts[i].orig, want[i][1]);
		assert_null(m->rcpts[i].trace);
	}
	deliver_msg_free(&m);
	txn_reset(&t);
}

/* What each forwarding local(8) adds, newest on top. */
static void
test_forwarded_trace(void **state)
{
	static char *via[] = { (char *)"team@local.test", (char *)"fwd@local.test" };
	struct txn t;
	struct txn_rcpt *r;
	struct deliver_msg *m;
	char want[512];
	const char *tr, *p;

	(void)state;
	start(&t);
	r = txn_add_rcpt(&t, "fwd@local.test");
	txn_rcpt_target(r, "alice@virt.test", "/srv/vmail/alice/", 5000, 5000, via, 2);
	m = txn_deliver_msg(&t, &client, 10);
	assert_int_equal(m->nrcpts, 1);
	assert_string_equal(m->rcpts[0].address, "alice@virt.test");
	assert_string_equal(m->rcpts[0].orig, "fwd@local.test");
	tr = m->rcpts[0].trace;
	assert_non_null(tr);
	/* "Received: by mx.example.test (mxgate)\n\tid <id>; <date>\nDelivered-To: <via>\n" */
	p = tr;
	for (int i = 0; i < 2; i++) {
		snprintf(want, sizeof(want), "Received: by mx.example.test (mxgate)\n\tid %s; ",
			 t.queue_id);
		assert_memory_equal(p, want, strlen(want));
		p = strchr(p, '\n');
		assert_non_null(p);
		p = strchr(p + 1, '\n');
		assert_non_null(p);
		snprintf(want, sizeof(want), "\nDelivered-To: %s\n", via[i]);
		assert_memory_equal(p, want, strlen(want));
		p += strlen(want);
	}
	assert_int_equal(*p, '\0');
	deliver_msg_free(&m);
	txn_reset(&t);
}

/* A milter's delete_rcpt: the recipient and its copies go, the others stay in order. */
static void
test_remove_rcpt(void **state)
{
	static const char *a[] = { "alice@virt.test" }, *b[] = { "bob@virt.test" },
		*c[] = { "carol@virt.test" };
	struct txn t;
	struct deliver_msg *m;

	(void)state;
	start(&t);
	add(&t, "alice@virt.test", a, 1);
	add(&t, "bob@virt.test", b, 1);
	add(&t, "carol@virt.test", c, 1);
	assert_int_equal(txn_remove_rcpt(&t, "BOB@virt.test"), 1);
	assert_int_equal(txn_remove_rcpt(&t, "bob@virt.test"), 0);
	assert_int_equal(txn_remove_rcpt(&t, "nobody@virt.test"), 0);
	assert_int_equal(t.nrcpts, 2);
	assert_false(txn_has_rcpt(&t, "bob@virt.test"));
	m = txn_deliver_msg(&t, &client, 10);
	assert_int_equal(m->nrcpts, 2);
	assert_string_equal(m->rcpts[0].address, "alice@virt.test");
	assert_string_equal(m->rcpts[1].address, "carol@virt.test");
	deliver_msg_free(&m);
	assert_int_equal(txn_remove_rcpt(&t, "alice@virt.test"), 1);
	assert_int_equal(txn_remove_rcpt(&t, "carol@virt.test"), 1);
	assert_int_equal(t.nrcpts, 0);
	txn_reset(&t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_copy_per_rcpt_and_final),
		cmocka_unit_test(test_forwarded_trace),
		cmocka_unit_test(test_remove_rcpt),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
