/*
 * policy/recipient: every verdict with its exact reply line, as Postfix 3.7.11
 * gives them (the replies below were read from a real Postfix smtpd with the
 * same tables), sender-specified routing, path traversal in the local part
 * and in mailbox values, lookup failures, refused configurations, and
 * classification from several threads at once.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "policy/recipient.h"
#include "util/xalloc.h"

#include "scratch.h"

static char tmpdir[] = "/tmp/mxgate-test-rcpt-XXXXXX";
static char *vbase;

static char *tpath(const char *name)
{
	return scratch_path(tmpdir, name);
}

static void write_file(const char *name, const char *text)
{
	scratch_write(tmpdir, name, text);
}

/* Specs that the policies below use, built once. */
static char *s_vmailbox, *s_uids, *s_gids, *s_lrm, *s_mydest, *s_bad;

static int group_setup(void **state)
{
	unsigned char hdr[2048 + 8];
	FILE *fp;
	char *p;

	if (mkdtemp(tmpdir) == NULL)
		return -1;
	vbase = tpath("vbase");
	write_file("vmailbox",
		   "alice@virt.test     virt.test/alice/\n"
		   "bob@virt.test       virt.test/bob\n"
		   "@catch.test         catch/\n"
		   "evil1@virt.test     ../etc/\n"
		   "evil2@virt.test     virt.test/../../etc/\n"
		   "evil3@virt.test     virt.test/../\n"
		   "evil4@virt.test     virt.test/..\n"
		   "evil5@virt.test     ..\n"
		   "ctl@virt.test       virt\001test/\n"
		   "abs@virt.test       /abs/olute/\n"
		   "dots@virt.test      ./virt.test//dots/./\n"
		   "base@virt.test      /\n"
		   "base2@virt.test     ./\n"
		   "lowuid@virt.test    virt.test/lowuid/\n"
		   "zerogid@virt.test   virt.test/zerogid/\n"
		   "baduid@virt.test    virt.test/baduid/\n"
		   "x@nouid.test        nouid/\n");
	write_file("uids",
		   "lowuid@virt.test  50\n"
		   "baduid@virt.test  50x\n"
		   "@virt.test        5000\n"
		   "@catch.test       5001\n");
	write_file("gids", "zerogid@virt.test 0\n");
	write_file("lrm",
		   "full@local.test  x\n"
		   "listed           x\n"
		   "@local2.test     x\n"
		   "a/b              x\n"
		   "..               x\n");
	write_file("mydest", "tabledom.test  whatever\n");
	/* bad.cdb: every hash table points past the end: lookups fail */
	memset(hdr, 0, sizeof(hdr));
	for (int i = 0; i < 256; i++) {
		unsigned v = 2048, l = 1000;

		hdr[i * 8] = (unsigned char)(v & 0xff);
		hdr[i * 8 + 1] = (unsigned char)(v >> 8);
		hdr[i * 8 + 4] = (unsigned char)(l & 0xff);
		hdr[i * 8 + 5] = (unsigned char)(l >> 8);
	}
	p = tpath("bad.cdb");
	fp = fopen(p, "w");
	free(p);
	if (fp == NULL || fwrite(hdr, 1, sizeof(hdr), fp) != sizeof(hdr))
		return -1;
	fclose(fp);
	s_vmailbox = xasprintf("texthash:%s/vmailbox", tmpdir);
	s_uids = xasprintf("texthash:%s/uids", tmpdir);
	s_gids = xasprintf("texthash:%s/gids", tmpdir);
	s_lrm = xasprintf("texthash:%s/lrm", tmpdir);
	s_mydest = xasprintf("texthash:%s/mydest", tmpdir);
	s_bad = xasprintf("cdb:%s/bad", tmpdir);
	return 0;
}

static int group_teardown(void **state)
{
	char *cmd = xasprintf("rm -rf %s", tmpdir);
	int rc = system(cmd);

	free(cmd);
	free(vbase);
	free(s_vmailbox);
	free(s_uids);
	free(s_gids);
	free(s_lrm);
	free(s_mydest);
	free(s_bad);
	return rc == 0 ? 0 : -1;
}

/* Postfix 3.7 defaults for a receive-only MX, with local and virtual domains. */
static char *d_mydest[3];
static char *d_lrm[2];
static char *d_vdomains[] = { (char *)"virt.test", (char *)"catch.test", (char *)"nouid.test",
			       (char *)"trailing.test." };
static char *d_vmaps[1];
static char *d_uid[1];
static char *d_gid[2];
static char *d_relay[] = { (char *)"permit_mynetworks", (char *)"permit_sasl_authenticated",
			   (char *)"defer_unauth_destination" };

static struct recipient_conf base_conf(void)
{
	struct recipient_conf rc;

	d_mydest[0] = (char *)"local.test";
	d_mydest[1] = (char *)"LocalHost";
	d_mydest[2] = s_mydest;
	d_lrm[0] = (char *)"proxy:unix:passwd.byname";
	d_lrm[1] = s_lrm;
	d_vmaps[0] = s_vmailbox;
	d_uid[0] = s_uids;
	d_gid[0] = s_gids;
	d_gid[1] = (char *)"static:5000";
	memset(&rc, 0, sizeof(rc));
	rc.mydestination = d_mydest;
	rc.n_mydestination = 3;
	rc.myorigin = "local.test";
	rc.local_recipient_maps = d_lrm;
	rc.n_local_recipient_maps = 2;
	rc.virtual_mailbox_domains = d_vdomains;
	rc.n_virtual_mailbox_domains = 4;
	rc.virtual_mailbox_maps = d_vmaps;
	rc.n_virtual_mailbox_maps = 1;
	rc.virtual_mailbox_base = vbase;
	rc.virtual_uid_maps = d_uid;
	rc.n_virtual_uid_maps = 1;
	rc.virtual_gid_maps = d_gid;
	rc.n_virtual_gid_maps = 2;
	rc.virtual_minimum_uid = 100;
	rc.relay_restrictions = d_relay;
	rc.n_relay_restrictions = 3;
	rc.recipient_delimiter = "+";
	rc.reject_unlisted_recipient = 1;
	rc.unknown_local_code = 550;
	rc.unknown_virtual_code = 550;
	rc.relay_reject_code = 554;
	return rc;
}

static struct recipient_policy *make_policy(const struct recipient_conf *rc)
{
	char *err = NULL;
	struct recipient_policy *p = recipient_policy_create(rc, &err);

	if (p == NULL)
		fail_msg("recipient_policy_create: %s", err);
	return p;
}

#define NOID ((long)-1)

struct rcase {
	const char *addr;
	enum rcpt_verdict verdict;
	int code;
	const char *reply;	/* exact; NULL for OK_* */
	const char *maildir;	/* relative to vbase, "" = none */
	long uid, gid;
	const char *user;	/* exact, NULL = no user */
	const char *reason;	/* substring of the log reason, NULL = don't care */
};

#define UNKNOWN_LOCAL(a) RCPT_UNKNOWN_LOCAL, 550, \
	"550 5.1.1 <" a ">: Recipient address rejected: User unknown in local recipient table"
#define UNKNOWN_VIRTUAL(a) RCPT_UNKNOWN_VIRTUAL, 550, \
	"550 5.1.1 <" a ">: Recipient address rejected: User unknown in virtual mailbox table"
#define RELAY454(a) RCPT_RELAY_DENIED, 454, "454 4.7.1 <" a ">: Relay access denied"
#define CONFIG_ERROR RCPT_TEMPFAIL, 451, "451 4.3.5 Server configuration error"

static const struct rcase default_cases[] = {
	/* local: passwd, texthash, Postfix's key order, specials */
	{ "root@local.test", RCPT_OK_LOCAL, 250, NULL, "", 0, 0, "root", NULL },
	{ "ROOT@LOCAL.TEST.", RCPT_OK_LOCAL, 250, NULL, "", 0, 0, "root", NULL },
	{ "Root@LocalHost", RCPT_OK_LOCAL, 250, NULL, "", 0, 0, "root", NULL },
	{ "root+ext@local.test", RCPT_OK_LOCAL, 250, NULL, "", 0, 0, "root", NULL },
	{ "root", RCPT_OK_LOCAL, 250, NULL, "", 0, 0, "root", NULL },
	{ "root@tabledom.test", RCPT_OK_LOCAL, 250, NULL, "", 0, 0, "root", NULL },
	{ "nosuch@local.test", UNKNOWN_LOCAL("nosuch@local.test"), "", NOID, NOID, NULL, NULL },
	{ "nosuch@tabledom.test", UNKNOWN_LOCAL("nosuch@tabledom.test"), "", NOID, NOID, NULL, NULL },
	{ "nosuch", UNKNOWN_LOCAL("nosuch"), "", NOID, NOID, NULL, NULL },
	{ "abuse@local.test", UNKNOWN_LOCAL("abuse@local.test"), "", NOID, NOID, NULL, NULL },
	{ "postmaster@local.test", RCPT_OK_LOCAL, 250, NULL, "", NOID, NOID, "postmaster", NULL },
	{ "Postmaster@local.test", RCPT_OK_LOCAL, 250, NULL, "", NOID, NOID, "postmaster", NULL },
	{ "POSTMASTER", RCPT_OK_LOCAL, 250, NULL, "", NOID, NOID, "postmaster", NULL },
	{ "mailer-daemon@local.test", RCPT_OK_LOCAL, 250, NULL, "", NOID, NOID, "postmaster", NULL },
	{ "@local.test", RCPT_OK_LOCAL, 250, NULL, "", NOID, NOID, "postmaster", NULL },
	{ "full@local.test", RCPT_OK_LOCAL, 250, NULL, "", NOID, NOID, "full", NULL },
	{ "full+x@local.test", RCPT_OK_LOCAL, 250, NULL, "", NOID, NOID, "full", NULL },
	{ "full@localhost", UNKNOWN_LOCAL("full@localhost"), "", NOID, NOID, NULL, NULL },
	{ "listed@local.test", RCPT_OK_LOCAL, 250, NULL, "", NOID, NOID, "listed", NULL },
	{ "Listed+Ext@localhost", RCPT_OK_LOCAL, 250, NULL, "", NOID, NOID, "listed", NULL },
	{ "any@local2.test", RELAY454("any@local2.test"), "", NOID, NOID, NULL, NULL },
	{ "root@trailing.test", RELAY454("root@trailing.test"), "", NOID, NOID, NULL, NULL },
	/* local parts that must never become a path */
	{ ".@local.test", UNKNOWN_LOCAL(".@local.test"), "", NOID, NOID, NULL, NULL },
	{ "../../etc/x@local.test", UNKNOWN_LOCAL("../../etc/x@local.test"), "", NOID, NOID, NULL, NULL },
	{ "a/b@local.test", RCPT_OK_LOCAL, 250, NULL, "", NOID, NOID, NULL, NULL },
	{ "..@local.test", RCPT_OK_LOCAL, 250, NULL, "", NOID, NOID, NULL, NULL },
	{ "a b@local.test", UNKNOWN_LOCAL("a b@local.test"), "", NOID, NOID, NULL, NULL },
	/* virtual */
	{ "alice@virt.test", RCPT_OK_VIRTUAL, 250, NULL, "/virt.test/alice/", 5000, 5000, NULL, NULL },
	{ "ALICE@VIRT.TEST.", RCPT_OK_VIRTUAL, 250, NULL, "/virt.test/alice/", 5000, 5000, NULL, NULL },
	{ "alice+foo@virt.test", RCPT_OK_VIRTUAL, 250, NULL, "/virt.test/alice/", 5000, 5000, NULL, NULL },
	{ "alice@virt.test@", RCPT_OK_VIRTUAL, 250, NULL, "/virt.test/alice/", 5000, 5000, NULL, NULL },
	{ "anyone@catch.test", RCPT_OK_VIRTUAL, 250, NULL, "/catch/", 5001, 5000, NULL, NULL },
	{ "abs@virt.test", RCPT_OK_VIRTUAL, 250, NULL, "/abs/olute/", 5000, 5000, NULL, NULL },
	{ "dots@virt.test", RCPT_OK_VIRTUAL, 250, NULL, "/virt.test/dots/", 5000, 5000, NULL, NULL },
	{ "carol@virt.test", UNKNOWN_VIRTUAL("carol@virt.test"), "", NOID, NOID, NULL, NULL },
	{ "@virt.test", UNKNOWN_VIRTUAL("@virt.test"), "", NOID, NOID, NULL, NULL },
	{ "postmaster@virt.test", UNKNOWN_VIRTUAL("postmaster@virt.test"), "", NOID, NOID, NULL, NULL },
	{ "x@virt.test.", UNKNOWN_VIRTUAL("x@virt.test."), "", NOID, NOID, NULL, NULL },
	{ "bob@virt.test", CONFIG_ERROR, "", NOID, NOID, NULL, "mbox" },
	{ "evil1@virt.test", CONFIG_ERROR, "", NOID, NOID, NULL, "unsafe mailbox path" },
	{ "evil2@virt.test", CONFIG_ERROR, "", NOID, NOID, NULL, "unsafe mailbox path" },
	{ "evil3@virt.test", CONFIG_ERROR, "", NOID, NOID, NULL, "unsafe mailbox path" },
	{ "evil4@virt.test", CONFIG_ERROR, "", NOID, NOID, NULL, "mbox" },
	{ "evil5@virt.test", CONFIG_ERROR, "", NOID, NOID, NULL, "mbox" },
	{ "ctl@virt.test", CONFIG_ERROR, "", NOID, NOID, NULL, "unsafe mailbox path" },
	{ "base@virt.test", CONFIG_ERROR, "", NOID, NOID, NULL, "unsafe mailbox path" },
	{ "base2@virt.test", CONFIG_ERROR, "", NOID, NOID, NULL, "unsafe mailbox path" },
	{ "lowuid@virt.test", CONFIG_ERROR, "", NOID, NOID, NULL, "bad uid 50 " },
	{ "baduid@virt.test", CONFIG_ERROR, "", NOID, NOID, NULL, "bad uid in virtual_uid_maps" },
	{ "zerogid@virt.test", CONFIG_ERROR, "", NOID, NOID, NULL, "bad gid" },
	{ "x@nouid.test", CONFIG_ERROR, "", NOID, NOID, NULL, "no uid" },
	/* relay: denied whoever asks */
	{ "x@elsewhere.example", RELAY454("x@elsewhere.example"), "", NOID, NOID, NULL, "never relays" },
	{ "root@mx.example.test", RELAY454("root@mx.example.test"), "", NOID, NOID, NULL, NULL },
	{ "root@[127.0.0.1]", RELAY454("root@[127.0.0.1]"), "", NOID, NOID, NULL, NULL },
	{ "x@sub.local.test", RELAY454("x@sub.local.test"), "", NOID, NOID, NULL, NULL },
	/* sender-specified routing */
	{ "root%elsewhere.example@local.test", RELAY454("root%elsewhere.example@local.test"), "", NOID, NOID, NULL, NULL },
	{ "root@elsewhere.example@local.test", RELAY454("root@elsewhere.example@local.test"), "", NOID, NOID, NULL, NULL },
	{ "elsewhere.example!root@local.test", RELAY454("elsewhere.example!root@local.test"), "", NOID, NOID, NULL, NULL },
	{ "nosuch%elsewhere.example@local.test", RELAY454("nosuch%elsewhere.example@local.test"), "", NOID, NOID, NULL, NULL },
	{ "u%ext@virt.test", RELAY454("u%ext@virt.test"), "", NOID, NOID, NULL, "routing" },
	{ "alice%virt.test@virt.test", RELAY454("alice%virt.test@virt.test"), "", NOID, NOID, NULL, NULL },
	{ "alice@ext@virt.test", RELAY454("alice@ext@virt.test"), "", NOID, NOID, NULL, NULL },
	{ "ext!alice@virt.test", RELAY454("ext!alice@virt.test"), "", NOID, NOID, NULL, NULL },
	{ "u%ext@elsewhere.example", RELAY454("u%ext@elsewhere.example"), "", NOID, NOID, NULL, NULL },
	{ "root%local.test@local.test", RCPT_OK_LOCAL, 250, NULL, "", 0, 0, "root", NULL },
	{ "root@local.test@local.test", RCPT_OK_LOCAL, 250, NULL, "", 0, 0, "root", NULL },
	{ "local.test!root@local.test", RCPT_OK_LOCAL, 250, NULL, "", 0, 0, "root", NULL },
	{ "alice%virt.test@local.test", RCPT_OK_VIRTUAL, 250, NULL, "/virt.test/alice/", 5000, 5000, NULL, NULL },
	{ "virt.test!alice@local.test", RCPT_OK_VIRTUAL, 250, NULL, "/virt.test/alice/", 5000, 5000, NULL, NULL },
	{ "root%virt.test@local.test", UNKNOWN_VIRTUAL("root%virt.test@local.test"), "", NOID, NOID, NULL, NULL },
};

static void check_case(const struct recipient_policy *p, const struct rcase *c)
{
	struct rcpt_result r;

	recipient_resolve(p, c->addr, &r);
	if (r.verdict != c->verdict)
		fail_msg("<%s>: verdict %d, want %d (reply %s, reason %s)", c->addr, r.verdict,
			 c->verdict, r.reply ? r.reply : "-", r.reason ? r.reason : "-");
	assert_int_equal(r.code, c->code);
	if (c->reply) {
		assert_non_null(r.reply);
		if (strcmp(r.reply, c->reply) != 0)
			fail_msg("<%s>: reply \"%s\", want \"%s\"", c->addr, r.reply, c->reply);
	} else if (c->verdict == RCPT_OK_LOCAL || c->verdict == RCPT_OK_VIRTUAL) {
		assert_null(r.reply);
	}
	if (c->maildir[0]) {
		char *want = xasprintf("%s%s", vbase, c->maildir);

		assert_non_null(r.maildir);
		if (strcmp(r.maildir, want) != 0)
			fail_msg("<%s>: maildir \"%s\", want \"%s\"", c->addr, r.maildir, want);
		free(want);
	} else {
		assert_null(r.maildir);
	}
	if ((long)(int)r.uid != c->uid && !(c->uid == NOID && r.uid == (uid_t)-1))
		fail_msg("<%s>: uid %ld, want %ld", c->addr, (long)r.uid, c->uid);
	if ((long)(int)r.gid != c->gid && !(c->gid == NOID && r.gid == (gid_t)-1))
		fail_msg("<%s>: gid %ld, want %ld", c->addr, (long)r.gid, c->gid);
	if (c->user) {
		if (r.user == NULL || strcmp(r.user, c->user) != 0)
			fail_msg("<%s>: user \"%s\", want \"%s\"", c->addr, r.user ? r.user : "(null)",
				 c->user);
	} else {
		if (r.user != NULL)
			fail_msg("<%s>: user \"%s\", want none", c->addr, r.user);
	}
	if (c->reason && (r.reason == NULL || strstr(r.reason, c->reason) == NULL))
		fail_msg("<%s>: reason \"%s\" lacks \"%s\"", c->addr, r.reason ? r.reason : "(null)",
			 c->reason);
	if (r.verdict == RCPT_OK_LOCAL && r.uid == 0)
		assert_string_equal(r.home, "/root");
	rcpt_result_free(&r);
	assert_null(r.reply);
	assert_null(r.maildir);
}

static void run_cases(const struct recipient_policy *p, const struct rcase *cases, size_t n)
{
	for (size_t i = 0; i < n; i++)
		check_case(p, &cases[i]);
}

/* root%local.test%...@local.test with n hops through our own domain. */
static char *routed(int n)
{
	char *s = xstrdup("root"), *t;

	for (int i = 0; i < n; i++) {
		t = xasprintf("%s%%local.test", s);
		free(s);
		s = t;
	}
	t = xasprintf("%s@local.test", s);
	free(s);
	return t;
}

static void test_default(void **state)
{
	struct recipient_conf rc = base_conf();
	struct recipient_policy *p = make_policy(&rc);
	struct rcpt_result r;
	char *a;

	run_cases(p, default_cases, sizeof(default_cases) / sizeof(default_cases[0]));
	a = routed(18);		/* Postfix: 250 */
	recipient_resolve(p, a, &r);
	assert_int_equal(r.verdict, RCPT_OK_LOCAL);
	assert_string_equal(r.user, "root");
	rcpt_result_free(&r);
	free(a);
	a = routed(70);		/* our bound on the work */
	recipient_resolve(p, a, &r);
	assert_int_equal(r.verdict, RCPT_RELAY_DENIED);
	assert_non_null(strstr(r.reason, "routing"));
	rcpt_result_free(&r);
	free(a);
	assert_false(recipient_policy_changed(p));
	recipient_policy_free(&p);
	assert_null(p);
}

/* Other codes, reject_unauth_destination, a myorigin that is not ours. */
static void test_codes(void **state)
{
	static char *relay[] = { (char *)"permit_mynetworks", (char *)"reject_unauth_destination" };
	static const struct rcase cases[] = {
		{ "nosuch@local.test", RCPT_UNKNOWN_LOCAL, 450,
		  "450 4.1.1 <nosuch@local.test>: Recipient address rejected: User unknown in local recipient table",
		  "", NOID, NOID, NULL, NULL },
		{ "nosuch@virt.test", RCPT_UNKNOWN_VIRTUAL, 551,
		  "551 5.1.1 <nosuch@virt.test>: Recipient address rejected: User unknown in virtual mailbox table",
		  "", NOID, NOID, NULL, NULL },
		{ "x@elsewhere.example", RCPT_RELAY_DENIED, 553,
		  "553 5.7.1 <x@elsewhere.example>: Relay access denied", "", NOID, NOID, NULL, NULL },
		{ "root%x@local.test", RCPT_RELAY_DENIED, 553,
		  "553 5.7.1 <root%x@local.test>: Relay access denied", "", NOID, NOID, NULL, NULL },
		/* bare names get @myorigin, which is not ours here: as Postfix */
		{ "root", RCPT_RELAY_DENIED, 553, "553 5.7.1 <root>: Relay access denied", "", NOID,
		  NOID, NULL, NULL },
		{ "postmaster", RCPT_OK_LOCAL, 250, NULL, "", NOID, NOID, "postmaster", NULL },
	};
	struct recipient_conf rc = base_conf();
	struct recipient_policy *p;

	rc.unknown_local_code = 450;
	rc.unknown_virtual_code = 551;
	rc.relay_reject_code = 553;
	rc.relay_restrictions = relay;
	rc.n_relay_restrictions = 2;
	rc.myorigin = "mx.example.test";
	p = make_policy(&rc);
	run_cases(p, cases, sizeof(cases) / sizeof(cases[0]));
	recipient_policy_free(&p);
}

/* Which of defer_/reject_unauth_destination comes first decides the reply. */
static void test_relay_order(void **state)
{
	static char *l_defer_first[] = { (char *)"permit_mynetworks", (char *)"defer_unauth_destination",
					 (char *)"reject_unauth_destination" };
	static char *l_reject[] = { (char *)"reject_unauth_destination" };
	static char *l_defer[] = { (char *)"defer_unauth_destination" };
	static char *l_none[] = { (char *)"permit_mynetworks", (char *)"permit" };
	static const struct {
		char **relay;
		size_t n_relay;
		char **rcpt;
		size_t n_rcpt;
		int code;
		const char *reply;
	} cases[] = {
		{ l_defer_first, 3, NULL, 0, 554, "454 4.7.1 <x@ext.example>: Relay access denied" },
		{ NULL, 0, l_reject, 1, 554, "554 5.7.1 <x@ext.example>: Relay access denied" },
		{ l_reject, 1, l_defer, 1, 554, "554 5.7.1 <x@ext.example>: Relay access denied" },
		{ l_none, 2, l_defer, 1, 554, "454 4.7.1 <x@ext.example>: Relay access denied" },
		{ l_none, 2, l_none, 2, 554, "454 4.7.1 <x@ext.example>: Relay access denied" },
		{ NULL, 0, NULL, 0, 554, "454 4.7.1 <x@ext.example>: Relay access denied" },
		{ l_reject, 1, NULL, 0, 450, "450 4.7.1 <x@ext.example>: Relay access denied" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct recipient_conf rc = base_conf();
		struct recipient_policy *p;
		struct rcpt_result r;

		rc.relay_restrictions = cases[i].relay;
		rc.n_relay_restrictions = cases[i].n_relay;
		rc.recipient_restrictions = cases[i].rcpt;
		rc.n_recipient_restrictions = cases[i].n_rcpt;
		rc.relay_reject_code = cases[i].code;
		p = make_policy(&rc);
		recipient_resolve(p, "x@ext.example", &r);
		assert_int_equal(r.verdict, RCPT_RELAY_DENIED);
		assert_string_equal(r.reply, cases[i].reply);
		rcpt_result_free(&r);
		recipient_policy_free(&p);
	}
}

/* smtpd_reject_unlisted_recipient = no, or local_recipient_maps empty: accept. */
static void test_unlisted_off(void **state)
{
	struct recipient_conf rc = base_conf();
	struct recipient_policy *p;
	struct rcpt_result r;

	rc.reject_unlisted_recipient = 0;
	p = make_policy(&rc);
	recipient_resolve(p, "nosuch+x@local.test", &r);
	assert_int_equal(r.verdict, RCPT_OK_LOCAL);
	assert_string_equal(r.user, "nosuch");
	rcpt_result_free(&r);
	recipient_resolve(p, "../x@local.test", &r);
	assert_int_equal(r.verdict, RCPT_OK_LOCAL);
	assert_null(r.user);	/* never a path */
	rcpt_result_free(&r);
	recipient_resolve(p, "carol@virt.test", &r);	/* nowhere to deliver: still unknown */
	assert_int_equal(r.verdict, RCPT_UNKNOWN_VIRTUAL);
	rcpt_result_free(&r);
	recipient_policy_free(&p);

	rc = base_conf();
	rc.n_local_recipient_maps = 0;
	rc.myorigin = NULL;
	p = make_policy(&rc);
	recipient_resolve(p, "nosuch@local.test", &r);
	assert_int_equal(r.verdict, RCPT_OK_LOCAL);
	rcpt_result_free(&r);
	recipient_resolve(p, "nosuch", &r);	/* no myorigin: bare names are local */
	assert_int_equal(r.verdict, RCPT_OK_LOCAL);
	assert_string_equal(r.user, "nosuch");
	rcpt_result_free(&r);
	recipient_policy_free(&p);
}

/*
 * Address extensions split as Postfix's split_addr(): not for owner-x or
 * x-request when '-' is a delimiter, not with a leading delimiter.  "listed"
 * is in the local table: listed-ext is found through its base, but
 * owner-listed, listed-request and -listed are not split and are unknown.
 */
static void test_extension_split(void **state)
{
	static const struct {
		const char *addr;
		enum rcpt_verdict verdict;
	} cases[] = {
		{ "listed-ext@local.test", RCPT_OK_LOCAL },
		{ "owner-listed@local.test", RCPT_UNKNOWN_LOCAL },
		{ "listed-request@local.test", RCPT_UNKNOWN_LOCAL },
		{ "-listed@local.test", RCPT_UNKNOWN_LOCAL },
		{ "listed+x@local.test", RCPT_OK_LOCAL },
		{ "+listed@local.test", RCPT_UNKNOWN_LOCAL },
	};
	struct recipient_conf rc = base_conf();
	struct recipient_policy *p;

	rc.recipient_delimiter = "+-";
	p = make_policy(&rc);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct rcpt_result r;

		recipient_resolve(p, cases[i].addr, &r);
		if (r.verdict != cases[i].verdict)
			fail_msg("%s: verdict %d, want %d", cases[i].addr, r.verdict,
				 cases[i].verdict);
		rcpt_result_free(&r);
	}
	recipient_policy_free(&p);
}

/* A table that cannot answer gives Postfix's 451 4.3.0, never "unknown". */
static void test_lookup_failure(void **state)
{
	static const char *fail451 = "451 4.3.0 <%s>: Temporary lookup failure";
	struct {
		const char *which;
		const char *addr;
	} cases[] = {
		{ "local", "root@local.test" },
		{ "local", "nosuch@local.test" },
		{ "virtual", "alice@virt.test" },
		{ "uid", "alice@virt.test" },
		{ "gid", "alice@virt.test" },
		{ "mydest", "x@elsewhere.example" },
		{ "vdomains", "x@elsewhere.example" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct recipient_conf rc = base_conf();
		char *bad[] = { s_bad };
		char *mydest[] = { (char *)"local.test", s_bad };
		char *vdom[] = { (char *)"virt.test", s_bad };
		struct recipient_policy *p;
		struct rcpt_result r;
		char *want;

		if (strcmp(cases[i].which, "local") == 0) {
			rc.local_recipient_maps = bad;
			rc.n_local_recipient_maps = 1;
		} else if (strcmp(cases[i].which, "virtual") == 0) {
			rc.virtual_mailbox_maps = bad;
		} else if (strcmp(cases[i].which, "uid") == 0) {
			rc.virtual_uid_maps = bad;
		} else if (strcmp(cases[i].which, "gid") == 0) {
			rc.virtual_gid_maps = bad;
			rc.n_virtual_gid_maps = 1;
		} else if (strcmp(cases[i].which, "mydest") == 0) {
			rc.mydestination = mydest;
			rc.n_mydestination = 2;
		} else {
			rc.virtual_mailbox_domains = vdom;
			rc.n_virtual_mailbox_domains = 2;
		}
		p = make_policy(&rc);
		recipient_resolve(p, cases[i].addr, &r);
		want = xasprintf(fail451, cases[i].addr);
		if (r.verdict != RCPT_TEMPFAIL || strcmp(r.reply, want) != 0)
			fail_msg("%s %s: verdict %d reply \"%s\"", cases[i].which, cases[i].addr,
				 r.verdict, r.reply ? r.reply : "-");
		assert_int_equal(r.code, 451);
		free(want);
		rcpt_result_free(&r);
		recipient_policy_free(&p);
	}
}

static void test_base(void **state)
{
	static const struct {
		const char *base;
		const char *want;	/* NULL: tempfail */
	} cases[] = {
		{ "/var/mail/vhosts", "/var/mail/vhosts/virt.test/alice/" },
		{ "/var/mail/vhosts/", "/var/mail/vhosts/virt.test/alice/" },
		{ "//var//mail/./vhosts", "/var/mail/vhosts/virt.test/alice/" },
		{ "/", "/virt.test/alice/" },
		{ "", NULL },
		{ "var/mail", NULL },
		{ "/var/../etc", NULL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct recipient_conf rc = base_conf();
		struct recipient_policy *p;
		struct rcpt_result r;

		rc.virtual_mailbox_base = cases[i].base;
		p = make_policy(&rc);
		recipient_resolve(p, "alice@virt.test", &r);
		if (cases[i].want) {
			assert_int_equal(r.verdict, RCPT_OK_VIRTUAL);
			assert_string_equal(r.maildir, cases[i].want);
		} else {
			assert_int_equal(r.verdict, RCPT_TEMPFAIL);
			assert_string_equal(r.reply, "451 4.3.5 Server configuration error");
			assert_non_null(strstr(r.reason, "virtual_mailbox_base"));
		}
		rcpt_result_free(&r);
		recipient_policy_free(&p);
	}
}

static void test_minimum_uid(void **state)
{
	struct recipient_conf rc = base_conf();
	char *uid0[] = { (char *)"static:0" };
	struct recipient_policy *p;
	struct rcpt_result r;

	rc.virtual_minimum_uid = 1;
	p = make_policy(&rc);
	recipient_resolve(p, "lowuid@virt.test", &r);	/* 50 >= 1 */
	assert_int_equal(r.verdict, RCPT_OK_VIRTUAL);
	assert_int_equal(r.uid, 50);
	rcpt_result_free(&r);
	recipient_policy_free(&p);

	rc.virtual_minimum_uid = 0;
	rc.virtual_uid_maps = uid0;
	p = make_policy(&rc);
	recipient_resolve(p, "alice@virt.test", &r);	/* root: never */
	assert_int_equal(r.verdict, RCPT_TEMPFAIL);
	assert_non_null(strstr(r.reason, "bad uid 0"));
	rcpt_result_free(&r);
	recipient_policy_free(&p);
}

static void test_create_errors(void **state)
{
	static char *dbm[] = { (char *)"dbm:/etc/postfix/vmailbox" };
	static char *lrm[] = { (char *)"proxy:unix:passwd.byname", (char *)"dbm:/etc/aliases" };
	static char *file[] = { (char *)"local.test", (char *)"/etc/postfix/destinations" };
	static char *neg[] = { (char *)"!" };
	static char *ldap[] = { (char *)"ldap:/etc/postfix/ldap-domains.cf" };
	static char *missing[] = { (char *)"texthash:/nonexistent/mxgate/uids" };
	static const char *want[] = {
		"virtual_mailbox_maps: unsupported map type \"dbm\" in \"dbm:/etc/postfix/vmailbox\"",
		"local_recipient_maps: unsupported map type \"dbm\" in \"dbm:/etc/aliases\"",
		"mydestination: open file \"/etc/postfix/destinations\": No such file or directory",
		"mydestination: no domain or table after '!'",
		"virtual_mailbox_domains: ldap:/etc/postfix/ldap-domains.cf: open \"/etc/postfix/ldap-domains.cf\": No such file",
		"virtual_uid_maps: texthash:/nonexistent/mxgate/uids: open",
		"unknown_local_recipient_reject_code: bad reply code 250",
		"relay_domains_reject_code: bad reply code 600",
	};

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		struct recipient_conf rc = base_conf();
		struct recipient_policy *p;
		char *err = NULL;

		switch (i) {
		case 0: rc.virtual_mailbox_maps = dbm; break;
		case 1: rc.local_recipient_maps = lrm; break;
		case 2: rc.mydestination = file; rc.n_mydestination = 2; break;
		case 3: rc.mydestination = neg; rc.n_mydestination = 1; break;
		case 4: rc.virtual_mailbox_domains = ldap; rc.n_virtual_mailbox_domains = 1; break;
		case 5: rc.virtual_uid_maps = missing; break;
		case 6: rc.unknown_local_code = 250; break;
		case 7: rc.relay_reject_code = 600; break;
		}
		p = recipient_policy_create(&rc, &err);
		assert_null(p);
		assert_non_null(err);
		if (strncmp(err, want[i], strlen(want[i])) != 0)
			fail_msg("case %zu: error \"%s\", want \"%s...\"", i, err, want[i]);
		free(err);
	}
}

/*
 * recipient_policy_create_report() does not stop at the first problem: every
 * bad table of every parameter is reported with its parameter and item, in
 * parameter order, and no policy is made.
 */
struct noted {
	char *line[8];
	int n;
};

static void note(void *ctx, const char *param, const char *item, const char *why)
{
	struct noted *nt = ctx;

	assert_true(nt->n < 8);
	nt->line[nt->n++] = xasprintf("%s | %s | %s", param, item ? item : "(none)", why);
}

static void test_create_report_all(void **state)
{
	static char *mydest[] = { (char *)"local.test", (char *)"/etc/postfix/destinations" };
	static char *lrm[] = { (char *)"proxy:unix:passwd.byname", (char *)"dbm:/etc/aliases" };
	static char *vmaps[] = { (char *)"texthash:/nonexistent/vmailbox",
				 (char *)"nis:mail.vmailbox" };
	static char *gids[] = { (char *)"ldap:/etc/postfix/gids.cf" };
	static const char *want[] = {
		"relay_domains_reject_code | (none) | bad reply code 250",
		"mydestination | /etc/postfix/destinations | open file \"/etc/postfix/destinations\": No such file or directory",
		"local_recipient_maps | dbm:/etc/aliases | unsupported map type \"dbm\" in \"dbm:/etc/aliases\"",
		"virtual_mailbox_maps | texthash:/nonexistent/vmailbox | texthash:/nonexistent/vmailbox: open",
		"virtual_mailbox_maps | nis:mail.vmailbox | unsupported map type \"nis\"",
		"virtual_gid_maps | ldap:/etc/postfix/gids.cf | ldap:/etc/postfix/gids.cf: open \"/etc/postfix/gids.cf\": No such file",
	};
	struct recipient_conf rc = base_conf();
	struct noted nt = { { NULL }, 0 };
	char *err = NULL;

	rc.relay_reject_code = 250;
	rc.mydestination = mydest;
	rc.n_mydestination = 2;
	rc.local_recipient_maps = lrm;
	rc.virtual_mailbox_maps = vmaps;
	rc.n_virtual_mailbox_maps = 2;
	rc.virtual_gid_maps = gids;
	rc.n_virtual_gid_maps = 1;
	assert_null(recipient_policy_create_report(&rc, note, &nt));
	assert_int_equal(nt.n, (int)(sizeof(want) / sizeof(want[0])));
	for (int i = 0; i < nt.n; i++) {
		if (strncmp(nt.line[i], want[i], strlen(want[i])) != 0)
			fail_msg("problem %d: \"%s\", want \"%s...\"", i, nt.line[i], want[i]);
		free(nt.line[i]);
	}
	/* The one-error form keeps the first, as "param: why". */
	assert_null(recipient_policy_create(&rc, &err));
	assert_string_equal(err, "relay_domains_reject_code: bad reply code 250: need 4xx or 5xx");
	free(err);
}

/*
 * With myorigin = the virtual domain, Postfix's mail_addr_find() also tries
 * the bare local part (with and then without the extension) before @domain:
 * observed with Postfix 3.7.11, where "carol carol/" in virtual_mailbox_maps
 * accepted carol@virt.test and carol+x@virt.test and delivered both into
 * carol/.  With another myorigin the bare key is not tried.
 */
static void test_virtual_bare_key_at_myorigin(void **state)
{
	static char *vmaps[1];
	struct recipient_conf rc = base_conf();
	struct recipient_policy *p;
	struct rcpt_result r;
	char *want;

	write_file("vbare", "carol  virt.test/carol/\n@virt.test  virt.test/catchall/\n");
	vmaps[0] = xasprintf("texthash:%s/vbare", tmpdir);
	rc.virtual_mailbox_maps = vmaps;
	rc.myorigin = "Virt.Test";
	p = make_policy(&rc);
	want = xasprintf("%s/virt.test/carol/", vbase);
	recipient_resolve(p, "carol+x@virt.test", &r);
	assert_int_equal(r.verdict, RCPT_OK_VIRTUAL);
	assert_string_equal(r.maildir, want);
	rcpt_result_free(&r);
	recipient_policy_free(&p);
	free(want);

	rc.myorigin = "local.test";
	p = make_policy(&rc);
	want = xasprintf("%s/virt.test/catchall/", vbase);
	recipient_resolve(p, "carol+x@virt.test", &r);
	assert_int_equal(r.verdict, RCPT_OK_VIRTUAL);
	assert_string_equal(r.maildir, want);	/* @virt.test, not "carol" */
	rcpt_result_free(&r);
	recipient_policy_free(&p);
	free(want);
	free(vmaps[0]);
}

/*
 * Domain lists as Postfix's match lists: "/file" elements stand for the
 * file's elements (nested files too, '#' lines skipped), "!" negates, and
 * the first element that matches decides (compat session domain-list-file
 * shows Postfix 3.7.11 doing the same).
 */
static void test_domain_list_files(void **state)
{
	static char *vdom[3];
	struct recipient_conf rc = base_conf();
	struct recipient_policy *p;
	struct rcpt_result r;
	char *inner = tpath("vdom-inner"), *outer = tpath("vdom-outer");
	char *text = xasprintf("# virtual domains\nvirt.test, !neg.virt.test\n  %s\n", inner);

	write_file("vdom-inner", "# nested\nneg.virt.test other.virt.test\n");
	write_file("vdom-outer", text);
	vdom[0] = (char *)"!Neg.Virt.Test";
	vdom[1] = outer;
	rc.virtual_mailbox_domains = vdom;
	rc.n_virtual_mailbox_domains = 2;
	p = make_policy(&rc);
	recipient_resolve(p, "alice@virt.test", &r);
	assert_int_equal(r.verdict, RCPT_OK_VIRTUAL);
	rcpt_result_free(&r);
	recipient_resolve(p, "alice@other.virt.test", &r);	/* via the nested file */
	assert_int_equal(r.verdict, RCPT_UNKNOWN_VIRTUAL);
	rcpt_result_free(&r);
	recipient_resolve(p, "alice@neg.virt.test", &r);	/* negated before the file */
	assert_int_equal(r.verdict, RCPT_RELAY_DENIED);
	rcpt_result_free(&r);
	recipient_policy_free(&p);

	/* A file that names itself stops at the nesting bound: a problem, not a loop. */
	free(text);
	text = xasprintf("virt.test %s\n", outer);
	write_file("vdom-outer", text);
	{
		char *err = NULL;

		assert_null(recipient_policy_create(&rc, &err));
		assert_non_null(strstr(err, "files nested more than"));
		free(err);
	}
	free(text);
	free(inner);
	free(outer);
}

static void test_changed(void **state)
{
	struct recipient_conf rc = base_conf();
	struct recipient_policy *p;
	struct rcpt_result r;

	write_file("vmailbox2", "alice@virt.test virt.test/alice/\n");
	d_vmaps[0] = xasprintf("texthash:%s/vmailbox2", tmpdir);
	rc.virtual_mailbox_maps = d_vmaps;
	p = make_policy(&rc);
	free(d_vmaps[0]);
	d_vmaps[0] = s_vmailbox;
	assert_null(recipient_policy_changed(p));
	assert_false(recipient_policy_has_indexed(p));
	write_file("vmailbox2", "alice@virt.test virt.test/alice/\ncarol@virt.test virt.test/carol/\n");
	/* A text table changes at a reload (as in Postfix): not reported. */
	assert_null(recipient_policy_changed(p));
	recipient_resolve(p, "carol@virt.test", &r);	/* not seen until re-created */
	assert_int_equal(r.verdict, RCPT_UNKNOWN_VIRTUAL);
	rcpt_result_free(&r);
	recipient_policy_free(&p);
}

/* A lookup's reference keeps the policy alive after its owner let go. */
static void test_refs(void **state)
{
	struct recipient_conf rc = base_conf();
	struct recipient_policy *p = make_policy(&rc);
	struct recipient_policy *q = recipient_policy_ref(p);
	struct rcpt_result r;

	recipient_policy_free(&p);
	assert_null(p);
	recipient_resolve(q, "alice@virt.test", &r);
	assert_int_equal(r.verdict, RCPT_OK_VIRTUAL);
	rcpt_result_free(&r);
	recipient_policy_free(&q);
	assert_null(q);
}

#define NTHREADS 8

static void *thr_main(void *arg)
{
	const struct recipient_policy *p = arg;

	for (int k = 0; k < 20; k++)
		run_cases(p, default_cases, sizeof(default_cases) / sizeof(default_cases[0]));
	return NULL;
}

/*
 * Transports (recipient.h "Transports"): transport_maps keys in transport(5)'s
 * order, the parameters, lmtp targets without a mailbox path, error:/retry:
 * replies as Postfix's smtpd, and what is refused.
 */
static const char *target_transport(const struct rcpt_result *r)
{
	assert_int_equal(r->ntargets, 1);
	return r->targets[0].transport;
}

static void test_transports(void **state)
{
	char *tmaps[1], *vmaps2;
	struct recipient_conf rc = base_conf();
	struct recipient_policy *p;
	struct rcpt_result r;
	static const struct {
		const char *addr;
		enum rcpt_verdict verdict;
		const char *transport;	/* the target's, or the reply when refused */
	} cases[] = {
		{ "alice+x@virt.test", RCPT_OK_VIRTUAL, "lmtp:unix:/run/ext" },	/* user+ext@domain */
		{ "alice+y@virt.test", RCPT_OK_VIRTUAL, "lmtp:unix:/run/user" },	/* user@domain */
		{ "bob@virt.test", RCPT_OK_VIRTUAL, "lmtp:inet:127.0.0.1:24" },	/* domain; an mbox path is fine */
		{ "x@catch.test", RCPT_OK_VIRTUAL, "discard:gone" },
		{ "nobody@virt.test", RCPT_UNKNOWN_VIRTUAL, NULL },		/* still checked */
		{ "closed@virt.test", RCPT_UNDELIVERABLE,
		  "550 5.7.1 <closed@virt.test>: Recipient address rejected: go away" },
		{ "later@virt.test", RCPT_TEMPFAIL,
		  "450 4.1.1 <later@virt.test>: Recipient address rejected: not now" },
		{ "relay@virt.test", RCPT_TEMPFAIL, "451 4.3.5 Server configuration error" },
		{ "full@local.test", RCPT_OK_LOCAL, "lmtp:[10.0.0.1]:2424" },	/* "*" */
		{ "keep@virt.test", RCPT_OK_VIRTUAL, NULL },			/* ":" keeps virtual */
	};

	write_file("vmailbox2", "alice@virt.test a/\nbob@virt.test bobmbox\n"
		   "closed@virt.test c/\nlater@virt.test l/\nrelay@virt.test r/\n"
		   "keep@virt.test keep/\n@catch.test catch/\n");
	write_file("transport", "alice+x@virt.test lmtp:unix:/run/ext\n"
		   "alice@virt.test lmtp:unix:/run/user\n"
		   "virt.test lmtp:inet:127.0.0.1:24\n"
		   "catch.test discard:gone\n"
		   ".local.test discard:subdomains only\n"
		   "closed@virt.test error:5.7.1 go away\n"
		   "later@virt.test retry:not now\n"
		   "relay@virt.test relay:[192.0.2.1]\n"
		   "keep@virt.test :\n"
		   "* lmtp:[10.0.0.1]:2424\n");
	tmaps[0] = xasprintf("texthash:%s/transport", tmpdir);
	rc = base_conf();
	vmaps2 = xasprintf("texthash:%s/vmailbox2", tmpdir);
	d_vmaps[0] = vmaps2;
	rc.transport_maps = tmaps;
	rc.n_transport_maps = 1;
	p = make_policy(&rc);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		recipient_resolve(p, cases[i].addr, &r);
		if (r.verdict != cases[i].verdict)
			fail_msg("%s: verdict %d, want %d (%s)", cases[i].addr, r.verdict,
				 cases[i].verdict, r.reply ? r.reply : "");
		if (cases[i].verdict == RCPT_OK_VIRTUAL || cases[i].verdict == RCPT_OK_LOCAL) {
			if (cases[i].transport)
				assert_string_equal(target_transport(&r), cases[i].transport);
			else
				assert_null(target_transport(&r));
		} else if (cases[i].transport) {
			assert_string_equal(r.reply, cases[i].transport);
		}
		if (strcmp(cases[i].addr, "relay@virt.test") == 0)
			assert_non_null(strstr(r.reason, "transport \"relay:[192.0.2.1]\": mxgate never relays"));
		rcpt_result_free(&r);
	}
	recipient_policy_free(&p);
	d_vmaps[0] = s_vmailbox;

	/* the parameters: virtual_transport, local_transport (no aliases), mailbox_transport */
	rc = base_conf();
	rc.virtual_transport = "lmtp:unix:private/dovecot-lmtp";
	rc.mailbox_transport = "lmtp:unix:/run/mbox";
	p = make_policy(&rc);
	recipient_resolve(p, "alice@virt.test", &r);
	assert_int_equal(r.verdict, RCPT_OK_VIRTUAL);
	assert_string_equal(target_transport(&r), "lmtp:unix:private/dovecot-lmtp");
	rcpt_result_free(&r);
	recipient_resolve(p, "full@local.test", &r);
	assert_int_equal(r.verdict, RCPT_OK_LOCAL);
	assert_string_equal(target_transport(&r), "lmtp:unix:/run/mbox");
	rcpt_result_free(&r);
	recipient_policy_free(&p);
	rc = base_conf();
	rc.local_transport = "lmtp:inet:dovecot.example";
	p = make_policy(&rc);
	recipient_resolve(p, "full@local.test", &r);
	assert_int_equal(r.verdict, RCPT_OK_LOCAL);
	assert_string_equal(target_transport(&r), "lmtp:inet:dovecot.example");
	rcpt_result_free(&r);
	recipient_resolve(p, "nosuchuser@local.test", &r);
	assert_int_equal(r.verdict, RCPT_UNKNOWN_LOCAL);
	rcpt_result_free(&r);
	recipient_policy_free(&p);

	/* refused at create, naming the parameter and the value */
	{
		static const struct {
			int which;	/* 0 virtual_, 1 local_, 2 mailbox_transport */
			const char *value, *want;
		} bad[] = {
			{ 0, "smtp:[192.0.2.1]", "virtual_transport: transport \"smtp:[192.0.2.1]\": mxgate never relays" },
			{ 0, "local", "virtual_transport: transport \"local\" cannot be used here" },
			{ 1, "virtual", "local_transport: transport \"virtual\" cannot be used here" },
			{ 1, "dovecot:x", "local_transport: transport \"dovecot:x\" is not one mxgate implements" },
			{ 2, "virtual", "mailbox_transport: transport \"virtual\" cannot be used here" },
			{ 0, "lmtp:", "virtual_transport: transport \"lmtp:\": names no LMTP server" },
			{ 0, "lmtp:unix:", "virtual_transport: transport \"lmtp:unix:\": names no socket" },
			{ 0, "lmtp:inet:[::1", "virtual_transport: transport \"lmtp:inet:[::1\": bad [host] syntax" },
			{ 0, "lmtp:::1", "virtual_transport: transport \"lmtp:::1\": an IPv6 address must be written [addr]" },
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			char *err = NULL;

			rc = base_conf();
			if (bad[i].which == 0)
				rc.virtual_transport = bad[i].value;
			else if (bad[i].which == 1)
				rc.local_transport = bad[i].value;
			else
				rc.mailbox_transport = bad[i].value;
			p = recipient_policy_create(&rc, &err);
			assert_null(p);
			if (err == NULL || strncmp(err, bad[i].want, strlen(bad[i].want)) != 0)
				fail_msg("case %zu: error \"%s\", want \"%s...\"", i, err ? err : "(none)",
					 bad[i].want);
			free(err);
		}
	}
	free(tmaps[0]);
	free(vmaps2);
}

static void test_threads(void **state)
{
	struct recipient_conf rc = base_conf();
	struct recipient_policy *p = make_policy(&rc);
	pthread_t tid[NTHREADS];

	for (int i = 0; i < NTHREADS; i++)
		assert_int_equal(pthread_create(&tid[i], NULL, thr_main, p), 0);
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(tid[i], NULL);
	recipient_policy_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default),
		cmocka_unit_test(test_codes),
		cmocka_unit_test(test_relay_order),
		cmocka_unit_test(test_unlisted_off),
		cmocka_unit_test(test_extension_split),
		cmocka_unit_test(test_lookup_failure),
		cmocka_unit_test(test_base),
		cmocka_unit_test(test_minimum_uid),
		cmocka_unit_test(test_create_errors),
		cmocka_unit_test(test_create_report_all),
		cmocka_unit_test(test_virtual_bare_key_at_myorigin),
		cmocka_unit_test(test_domain_list_files),
		cmocka_unit_test(test_changed),
		cmocka_unit_test(test_refs),
		cmocka_unit_test(test_transports),
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
