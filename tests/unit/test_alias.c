/*
 * policy/alias: cleanup(8)'s virtual_alias_maps expansion (order, recursion,
 * self-reference, extensions, "@domain", every limit), aliases(5) values and
 * include files, the text behind file tables; and, through policy/recipient,
 * local aliases that nest, loop, include files and lead where mxgate cannot
 * store (commands, files, other domains, unknown users).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "policy/alias.h"
#include "policy/recipient.h"
#include "util/xalloc.h"

#include "scratch.h"

static char tmpdir[] = "/tmp/mxgate-test-alias-XXXXXX";
static struct maplist *valias;

static const char VALIAS[] =
	"info@v.test      alice@v.test, bob@v.test\n"
	"sales@v.test     info@v.test,carol@v.test\n"
	"self@v.test      self@v.test, alice@v.test\n"
	"ext@v.test       carol@v.test\n"
	"exact+x@v.test   dave@v.test\n"
	"bare@v.test      someone\n"
	"@old.test        @new.test\n"
	"loop1@v.test     loop2@v.test\n"
	"loop2@v.test     loop1@v.test\n"
	"wide@v.test      a@v.test, b@v.test, c@v.test\n"
	"quoted@v.test    \"a b\"@v.test, <angle@v.test>\n"
	"luser            local-only@v.test\n";

static int group_setup(void **state)
{
	char *spec;
	char *err = NULL;

	(void)state;
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	scratch_write(tmpdir, "valias", VALIAS);
	spec = xasprintf("texthash:%s/valias", tmpdir);
	valias = maplist_open(&spec, 1, &err);
	free(spec);
	return valias == NULL ? -1 : 0;
}

static int group_teardown(void **state)
{
	char *cmd = xasprintf("rm -rf %s", tmpdir);
	int rc = system(cmd);

	(void)state;
	free(cmd);
	maplist_free(&valias);
	return rc == 0 ? 0 : -1;
}

static int local_answer;

static int is_local(void *ctx, const char *domain)
{
	(void)ctx;
	(void)domain;
	return local_answer;
}

static struct alias_virtual av_default(void)
{
	struct alias_virtual av = {
		.maps = valias,
		.delimiter = "+",
		.myorigin = "origin.test",
		.recursion_limit = 1000,
		.expansion_limit = 1000,
		.addrlen_limit = 1000,
		.propagate = true,
		.is_local = is_local,
	};

	local_answer = 0;
	return av;
}

/* Expand addr and compare with the ", "-joined want ("" for a refusal). */
static void expect(const struct alias_virtual *av, const char *addr, enum alias_status want_st,
		   bool want_matched, const char *want, const char *want_why)
{
	struct alias_list out = { NULL, 0, 0 };
	char *why = NULL, *got;
	bool matched = false;
	enum alias_status st = alias_virtual_expand(av, addr, &out, &matched, &why);
	size_t len = 1;

	for (size_t i = 0; i < out.n; i++)
		len += strlen(out.v[i]) + 2;
	got = xcalloc(1, len);
	for (size_t i = 0; i < out.n; i++) {
		if (i > 0)
			strcat(got, ", ");
		strcat(got, out.v[i]);
	}
	if (st != want_st)
		fail_msg("%s: status %d, want %d (%s)", addr, st, want_st, why ? why : "");
	if (st == ALIAS_OK && matched != want_matched)
		fail_msg("%s: matched %d, want %d", addr, matched, want_matched);
	if (strcmp(got, want) != 0)
		fail_msg("%s: got \"%s\", want \"%s\"", addr, got, want);
	if (want_why != NULL && (why == NULL || strcmp(why, want_why) != 0))
		fail_msg("%s: why \"%s\", want \"%s\"", addr, why ? why : "(null)", want_why);
	if (want_why == NULL && why != NULL)
		fail_msg("%s: unexpected why \"%s\"", addr, why);
	free(got);
	free(why);
	alias_list_free(&out);
}

static void test_virtual_expansion(void **state)
{
	struct alias_virtual av = av_default();

	(void)state;
	expect(&av, "nobody@v.test", ALIAS_OK, false, "nobody@v.test", NULL);
	expect(&av, "info@v.test", ALIAS_OK, true, "alice@v.test, bob@v.test", NULL);
	expect(&av, "INFO@V.TEST", ALIAS_OK, true, "alice@v.test, bob@v.test", NULL);
	/* Postfix's order: the first result replaces the address and is expanded at once */
	expect(&av, "sales@v.test", ALIAS_OK, true, "alice@v.test, carol@v.test, bob@v.test",
	       NULL);
	/* an address that maps to itself is kept, and not looked up again */
	expect(&av, "self@v.test", ALIAS_OK, true, "self@v.test, alice@v.test", NULL);
	/* no '@': @myorigin */
	expect(&av, "bare@v.test", ALIAS_OK, true, "someone@origin.test", NULL);
	/* quotes and angle brackets go: internal form */
	expect(&av, "quoted@v.test", ALIAS_OK, true, "a b@v.test, angle@v.test", NULL);
	/* "@old.test @new.test": the user part stays, with its extension */
	expect(&av, "u+x@old.test", ALIAS_OK, true, "u+x@new.test", NULL);
	/* a bare key only when the domain is local (or myorigin) */
	expect(&av, "luser@v.test", ALIAS_OK, false, "luser@v.test", NULL);
	expect(&av, "luser@origin.test", ALIAS_OK, true, "local-only@v.test", NULL);
	local_answer = 1;
	expect(&av, "luser@v.test", ALIAS_OK, true, "local-only@v.test", NULL);
	local_answer = -1;
	expect(&av, "luser@v.test", ALIAS_FAIL, false, "", NULL);
}

static void test_virtual_extensions(void **state)
{
	struct alias_virtual av = av_default();

	(void)state;
	/* matched without the extension: it is appended to each result */
	expect(&av, "ext+foo@v.test", ALIAS_OK, true, "carol+foo@v.test", NULL);
	expect(&av, "info+z@v.test", ALIAS_OK, true, "alice+z@v.test, bob+z@v.test", NULL);
	/* matched with it: nothing to propagate */
	expect(&av, "exact+x@v.test", ALIAS_OK, true, "dave@v.test", NULL);
	av.propagate = false;
	expect(&av, "ext+foo@v.test", ALIAS_OK, true, "carol@v.test", NULL);
	av.delimiter = NULL;
	expect(&av, "ext+foo@v.test", ALIAS_OK, false, "ext+foo@v.test", NULL);
}

static void test_virtual_limits(void **state)
{
	struct alias_virtual av = av_default();

	(void)state;
	expect(&av, "loop1@v.test", ALIAS_LIMIT, false, "",
	       "unreasonable virtual_alias_maps map nesting for loop1@v.test -- message not"
	       " accepted, try again later");
	/* Postfix counts the lookup that finds nothing: one level needs 2 */
	av.recursion_limit = 2;
	expect(&av, "info@v.test", ALIAS_OK, true, "alice@v.test, bob@v.test", NULL);
	expect(&av, "sales@v.test", ALIAS_LIMIT, false, "",
	       "unreasonable virtual_alias_maps map nesting for sales@v.test -- message not"
	       " accepted, try again later");
	av = av_default();
	av.expansion_limit = 2;
	expect(&av, "info@v.test", ALIAS_OK, true, "alice@v.test, bob@v.test", NULL);
	expect(&av, "wide@v.test", ALIAS_LIMIT, false, "",
	       "unreasonable virtual_alias_maps map expansion size for wide@v.test -- message"
	       " not accepted, try again later");
	av = av_default();
	av.addrlen_limit = 11;
	expect(&av, "wide@v.test", ALIAS_OK, true, "a@v.test, b@v.test, c@v.test", NULL);
	expect(&av, "info@v.test", ALIAS_LIMIT, false, "",
	       "unreasonable virtual_alias_maps result alice@v.test... -- message not accepted,"
	       " try again later");
}

static void test_parse(void **state)
{
	struct alias_targets t = { NULL, 0, 0 };
	static const struct {
		enum alias_kind kind;
		const char *text;
	} want[] = {
		{ ALIAS_ADDRESS, "a@b.test" },
		{ ALIAS_COMMAND, "|/usr/bin/x, y" },
		{ ALIAS_FILE, "/var/mail/box" },
		{ ALIAS_INCLUDE, "/etc/inc" },
		{ ALIAS_ADDRESS, "c@d.test" },
		{ ALIAS_ADDRESS, "q r@d.test" },
		{ ALIAS_ADDRESS, "user" },
		{ ALIAS_COMMAND, "|cmd" },
	};

	(void)state;
	alias_parse(" a@b.test, \"|/usr/bin/x, y\" ,/var/mail/box, :INCLUDE: /etc/inc,"
		    " <c@d.test>, \"q r\"@d.test,, user\n|cmd\n", &t);
	assert_int_equal(t.n, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < t.n; i++) {
		assert_int_equal(t.v[i].kind, want[i].kind);
		assert_string_equal(t.v[i].text, want[i].text);
	}
	alias_targets_free(&t);
}

static void test_include_read(void **state)
{
	char *text = NULL, *why = NULL, *path;
	char *big;

	(void)state;
	assert_int_equal(alias_include_read("relative/inc", &text, &why), -1);
	assert_string_equal(why, ":include:relative/inc uses a relative path");
	free(why);
	path = scratch_path(tmpdir, "missing.inc");
	assert_int_equal(alias_include_read(path, &text, &why), -1);
	assert_non_null(strstr(why, "cannot open include file"));
	free(why);
	free(path);
	scratch_write(tmpdir, "team.inc", "# comment\nbob@v.test\n  # indented comment\ncarol\n");
	path = scratch_path(tmpdir, "team.inc");
	assert_int_equal(alias_include_read(path, &text, &why), 0);
	assert_string_equal(text, "bob@v.test\ncarol\n");
	free(text);
	free(path);
	big = xmalloc(ALIAS_INCLUDE_MAX + 2);
	memset(big, 'x', ALIAS_INCLUDE_MAX + 1);
	big[ALIAS_INCLUDE_MAX + 1] = '\0';
	scratch_write(tmpdir, "big.inc", big);
	free(big);
	path = scratch_path(tmpdir, "big.inc");
	assert_int_equal(alias_include_read(path, &text, &why), -1);
	assert_non_null(strstr(why, "bytes"));
	free(why);
	free(path);
}

struct scanned {
	char got[2048];
};

static void scan_cb(void *ctx, const char *key, const char *value, int line)
{
	struct scanned *sc = ctx;
	size_t n = strlen(sc->got);

	snprintf(sc->got + n, sizeof(sc->got) - n, "%d [%s] [%s]\n", line, key, value);
}

static void test_source_and_scan(void **state)
{
	struct scanned sc = { "" };
	char *path, *src;

	(void)state;
	scratch_write(tmpdir, "aliases", "# head\nRoot: admin@v.test,\n\tother@v.test\n\n"
		      "cmd:|/bin/true\nplain   value\n");
	path = scratch_path(tmpdir, "aliases");
	assert_int_equal(alias_scan_file(path, scan_cb, &sc), 0);
	assert_string_equal(sc.got, "2 [root] [admin@v.test, \tother@v.test]\n"
				    "5 [cmd:|/bin/true] []\n"
				    "6 [plain] [value]\n");
	src = xasprintf("hash:%s", path);
	{
		char *f = alias_source_file(src);

		assert_non_null(f);
		assert_string_equal(f, path);
		free(f);
	}
	free(src);
	src = xasprintf("texthash:%s/nonexistent", tmpdir);
	{
		char *f = alias_source_file(src);

		assert_non_null(f);	/* texthash names its text, whether or not it exists */
		free(f);
	}
	free(src);
	src = xasprintf("cdb:%s/nonexistent", tmpdir);
	assert_null(alias_source_file(src));
	free(src);
	assert_null(alias_source_file("pcre:/etc/x"));
	assert_null(alias_source_file("static:x"));
	assert_int_equal(alias_scan_file("/nonexistent/x", scan_cb, &sc), -1);
	free(path);
}

/* ---- through policy/recipient ---- */

static struct recipient_policy *policy;
static char *vbase;

static int rcpt_setup(void **state)
{
	static char *mydest[] = { (char *)"local.test" };
	static char *lrm[2], *vdom[] = { (char *)"virt.test" }, *vmaps[1], *uid[] =
		{ (char *)"static:5000" }, *gid[] = { (char *)"static:5000" }, *va[1], *am[1];
	struct recipient_conf rc;
	char *err = NULL;

	(void)state;
	scratch_write(tmpdir, "vmailbox", "alice@virt.test alice/\nbob@virt.test bob/\n");
	scratch_write(tmpdir, "r-valias", "fwd@virt.test friend@example.org\n"
					  "root@local.test alice@virt.test\n"
					  "hop@virt.test team@local.test\n"
					  "split@virt.test x1@local.test, x2@local.test\n"
					  "twice@virt.test alice@virt.test, dup@virt.test\n"
					  "dup@virt.test alice@virt.test, bob@virt.test\n");
	/* alias_maps in virtual(5) form, as texthash reads it */
	scratch_write(tmpdir, "r-aliases",
		      "team   alice@virt.test, :include:TMP/r-team.inc\n"
		      "pipe   \"|/usr/bin/procmail\"\n"
		      "box    /var/mail/x\n"
		      "far    alice@virt.test, friend@example.org\n"
		      "ghost  nobody@virt.test\n"
		      "unk    nosuchlocaluser\n"
		      "ping   pong\n"
		      "pong   ping\n"
		      "me     me, bob@virt.test\n"
		      "sys    root\n"
		      "empty  :include:TMP/r-loop.inc\n"
		      "nest   :include:TMP/r-nest.inc\n"
		      "rel    :include:r-team.inc\n"
		      "fwd2   fwd@virt.test\n"
		      "chain  team\n"
		      "outer  hop@virt.test\n"
		      "x1     alice@virt.test\n"
		      "x2     alice@virt.test\n"
		      "both   alice@virt.test, x1, Alice@virt.test\n");
	{
		/* the file names the scratch folder */
		char *p = scratch_path(tmpdir, "r-aliases"), *cmd;

		cmd = xasprintf("sed -i 's|TMP|%s|g' %s", tmpdir, p);
		if (system(cmd) != 0)
			return -1;
		free(cmd);
		free(p);
	}
	{
		char *inc = xasprintf("bob@virt.test\n:include:%s/r-team.inc\n", tmpdir);
		char *loop = xasprintf(":include:%s/r-loop.inc\n", tmpdir);
		char *nest = xasprintf("pipe\n");

		scratch_write(tmpdir, "r-team.inc", inc);
		scratch_write(tmpdir, "r-loop.inc", loop);
		scratch_write(tmpdir, "r-nest.inc", nest);
		free(inc);
		free(loop);
		free(nest);
	}
	vbase = scratch_path(tmpdir, "vbase");
	lrm[0] = (char *)"unix:passwd.byname";
	lrm[1] = xasprintf("texthash:%s/r-aliases", tmpdir);
	am[0] = lrm[1];
	vmaps[0] = xasprintf("texthash:%s/vmailbox", tmpdir);
	va[0] = xasprintf("texthash:%s/r-valias", tmpdir);
	memset(&rc, 0, sizeof(rc));
	rc.mydestination = mydest;
	rc.n_mydestination = 1;
	rc.myorigin = "local.test";
	rc.local_recipient_maps = lrm;
	rc.n_local_recipient_maps = 2;
	rc.virtual_mailbox_domains = vdom;
	rc.n_virtual_mailbox_domains = 1;
	rc.virtual_mailbox_maps = vmaps;
	rc.n_virtual_mailbox_maps = 1;
	rc.virtual_mailbox_base = vbase;
	rc.virtual_uid_maps = uid;
	rc.n_virtual_uid_maps = 1;
	rc.virtual_gid_maps = gid;
	rc.n_virtual_gid_maps = 1;
	rc.virtual_minimum_uid = 100;
	rc.reject_unlisted_recipient = 1;
	rc.unknown_local_code = 550;
	rc.unknown_virtual_code = 550;
	rc.relay_reject_code = 554;
	rc.virtual_alias_maps = va;
	rc.n_virtual_alias_maps = 1;
	rc.alias_maps = am;
	rc.n_alias_maps = 1;
	policy = recipient_policy_create(&rc, &err);
	free(lrm[1]);
	free(vmaps[0]);
	free(va[0]);
	if (policy == NULL) {
		fprintf(stderr, "policy: %s\n", err);
		return -1;
	}
	return 0;
}

static int rcpt_teardown(void **state)
{
	(void)state;
	recipient_policy_free(&policy);
	free(vbase);
	return 0;
}

/*
 * addr's verdict, reply (NULL: OK), targets ", "-joined (each "address", with
 * " via a < b" for the local(8) addresses that forwarded it, newest first),
 * and a substring of the reason.
 */
static void rcase(const char *addr, enum rcpt_verdict v, const char *reply, const char *targets,
		  const char *reason)
{
	struct rcpt_result r;
	char got[1024] = "";

	recipient_resolve(policy, addr, &r);
	for (size_t i = 0; i < r.ntargets; i++) {
		size_t n = strlen(got);

		snprintf(got + n, sizeof(got) - n, "%s%s%s", i ? ", " : "", r.targets[i].address,
			 r.targets[i].kind == RCPT_OK_LOCAL ? "(local)" : "");
		for (size_t k = 0; k < r.targets[i].nvia; k++) {
			n = strlen(got);
			snprintf(got + n, sizeof(got) - n, "%s%s", k ? " < " : " via ",
				 r.targets[i].via[k]);
		}
	}
	if (r.verdict != v)
		fail_msg("%s: verdict %d, want %d (%s; %s)", addr, r.verdict, v,
			 r.reply ? r.reply : "", r.reason ? r.reason : "");
	if (reply == NULL ? r.reply != NULL : r.reply == NULL || strcmp(r.reply, reply) != 0)
		fail_msg("%s: reply \"%s\", want \"%s\"", addr, r.reply ? r.reply : "(null)",
			 reply ? reply : "(null)");
	if (strcmp(got, targets) != 0)
		fail_msg("%s: targets \"%s\", want \"%s\"", addr, got, targets);
	if (reason != NULL && (r.reason == NULL || strstr(r.reason, reason) == NULL))
		fail_msg("%s: reason \"%s\", want \"%s\"", addr, r.reason ? r.reason : "(null)",
			 reason);
	rcpt_result_free(&r);
}

#define CONFIG "451 4.3.5 Server configuration error"

static void test_local_aliases(void **state)
{
	(void)state;
	/* each forwarded copy carries local(8)'s Delivered-To, as given, case-folded */
	rcase("team@local.test", RCPT_OK_VIRTUAL, NULL,
	      "alice@virt.test via team@local.test, bob@virt.test via team@local.test", NULL);
	rcase("Team@Local.test", RCPT_OK_VIRTUAL, NULL,
	      "alice@virt.test via team@local.test, bob@virt.test via team@local.test", NULL);
	/* an alias of a local alias is expanded in place: local(8) keeps the first address */
	rcase("chain@local.test", RCPT_OK_VIRTUAL, NULL,
	      "alice@virt.test via chain@local.test, bob@virt.test via chain@local.test", NULL);
	/* forwarded to an address that cleanup(8) aliases back to a local alias: two hops */
	rcase("outer@local.test", RCPT_OK_VIRTUAL, NULL,
	      "alice@virt.test via team@local.test < outer@local.test,"
	      " bob@virt.test via team@local.test < outer@local.test", NULL);
	rcase("hop@virt.test", RCPT_OK_VIRTUAL, NULL,
	      "alice@virt.test via team@local.test, bob@virt.test via team@local.test", NULL);
	/* one RCPT, one final address: one copy (virtual chains; a local alias listing it twice) */
	rcase("twice@virt.test", RCPT_OK_VIRTUAL, NULL, "alice@virt.test, bob@virt.test", NULL);
	rcase("both@local.test", RCPT_OK_VIRTUAL, NULL, "alice@virt.test via both@local.test",
	      NULL);
	/* ... unless two local(8) deliveries forwarded it: two queue files in Postfix */
	rcase("split@virt.test", RCPT_OK_VIRTUAL, NULL,
	      "alice@virt.test via x1@local.test, alice@virt.test via x2@local.test", NULL);
	/* an alias that names itself: the user's own mailbox too (local(8)) */
	rcase("me@local.test", RCPT_OK_LOCAL, NULL,
	      "me@local.test(local), bob@virt.test via me@local.test", NULL);
	/* root is aliased by virtual_alias_maps, but local(8) does not apply those */
	rcase("sys@local.test", RCPT_OK_LOCAL, NULL, "root@local.test(local)", NULL);
	rcase("root@local.test", RCPT_OK_VIRTUAL, NULL, "alice@virt.test", NULL);
	rcase("pipe@local.test", RCPT_TEMPFAIL, CONFIG, "", "is a command");
	rcase("box@local.test", RCPT_TEMPFAIL, CONFIG, "", "is a file");
	rcase("nest@local.test", RCPT_TEMPFAIL, CONFIG, "", "alias pipe: target");
	rcase("rel@local.test", RCPT_TEMPFAIL, CONFIG, "", "uses a relative path");
	rcase("far@local.test", RCPT_UNDELIVERABLE,
	      "550 5.1.1 <far@local.test>: Recipient address rejected: Alias forwards to another"
	      " domain; this server does not relay", "", "<friend@example.org> is outside");
	rcase("fwd2@local.test", RCPT_UNDELIVERABLE,
	      "550 5.1.1 <fwd2@local.test>: Recipient address rejected: Alias forwards to another"
	      " domain; this server does not relay", "", "<friend@example.org> is outside");
	rcase("ghost@local.test", RCPT_UNDELIVERABLE,
	      "550 5.1.1 <ghost@local.test>: Recipient address rejected: Alias target is an"
	      " unknown user", "", "<nobody@virt.test> is unknown in virtual mailbox table");
	rcase("unk@local.test", RCPT_UNDELIVERABLE,
	      "550 5.1.1 <unk@local.test>: Recipient address rejected: Alias target is an"
	      " unknown user", "", "<nosuchlocaluser@local.test> is an unknown local user");
	rcase("ping@local.test", RCPT_UNDELIVERABLE,
	      "550 5.4.6 <ping@local.test>: Recipient address rejected: Alias database loop", "",
	      "alias database loop for p");
	rcase("empty@local.test", RCPT_TEMPFAIL, CONFIG, "", "lead to no mailbox");
	rcase("nosuch@local.test", RCPT_UNKNOWN_LOCAL,
	      "550 5.1.1 <nosuch@local.test>: Recipient address rejected: User unknown in local"
	      " recipient table", "", NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_virtual_expansion),
		cmocka_unit_test(test_virtual_extensions),
		cmocka_unit_test(test_virtual_limits),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_include_read),
		cmocka_unit_test(test_source_and_scan),
		cmocka_unit_test_setup_teardown(test_local_aliases, rcpt_setup, rcpt_teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
