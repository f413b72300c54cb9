/*
 * deliver/lhelper: the delivery helper's check of each copy, the line
 * between a request from a daemon that may have been taken over and root's
 * writes (lhelper.h): uid 0 refused, paths outside the recipient's home,
 * its mail_spool_directory entry and virtual_mailbox_base refused, "." and
 * ".." components and relative paths refused, the home directory taken
 * from the passwd entry of the uid and never from the request.
 */
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "deliver/lhelper.h"
#include "util/buf.h"

static struct passwd nobody;
static char nobody_home[512], nobody_name[64];

static int
check(enum lhelper_kind kind, const char *path, uid_t uid, gid_t gid, int local,
      const char *want_in_err)
{
	struct lhelper_conf c = {
		.virtual_mailbox_base = "/srv/vmail",
		.mail_spool_directory = "/var/mail",
		.virtual_minimum_uid = 100,
		.default_uid = nobody.pw_uid,
	};
	struct lhelper_copy cp = { .kind = kind, .path = path, .delivered_to = "u@example.com",
				   .uid = uid, .gid = gid, .local_user = local };
	struct buf err = BUF_INIT;
	int rc = lhelper_check_copy(&c, &cp, &err);

	if (want_in_err != NULL) {
		assert_int_equal(rc, -1);
		if (strstr(buf_str(&err), want_in_err) == NULL)
			fail_msg("%s: \"%s\" not in \"%s\"", path, want_in_err, buf_str(&err));
	} else if (rc != 0) {
		fail_msg("%s refused: %s", path, buf_str(&err));
	}
	buf_free(&err);
	return rc;
}

static void
test_root_refused(void **state)
{
	(void)state;
	check(LHELPER_MBOX, "/var/mail/root", 0, 0, 1, "refusing to deliver as root");
	check(LHELPER_MAILDIR, "/srv/vmail/x/", 0, 5000, 0, "refusing to deliver as root");
	check(LHELPER_MAILDIR, "/srv/vmail/x/", 5000, 0, 0, "refusing to deliver as root");
	/* root's mail goes as default_privs, into the spool's "root" entry only */
	check(LHELPER_MBOX, "/var/mail/root", nobody.pw_uid, nobody.pw_gid, 1, NULL);
}

static void
test_paths(void **state)
{
	char p[600];
	uid_t u = nobody.pw_uid;
	gid_t g = nobody.pw_gid;

	(void)state;
	/* the uid's own home (from passwd), its spool entry */
	snprintf(p, sizeof(p), "%s/Maildir/", nobody_home);
	check(LHELPER_MAILDIR, p, u, g, 1, NULL);
	snprintf(p, sizeof(p), "%s/Mailbox", nobody_home);
	check(LHELPER_MBOX, p, u, g, 1, NULL);
	snprintf(p, sizeof(p), "/var/mail/%s", nobody_name);
	check(LHELPER_MBOX, p, u, g, 1, NULL);
	snprintf(p, sizeof(p), "/var/mail/%s/", nobody_name);
	check(LHELPER_MAILDIR, p, u, g, 1, NULL);
	/* anywhere else */
	check(LHELPER_MBOX, "/etc/passwd", u, g, 1, "outside the home directory");
	check(LHELPER_MBOX, "/var/mail/someoneelse", u, g, 1, "outside the home directory");
	check(LHELPER_MBOX, "/var/mail", u, g, 1, "outside the home directory");
	snprintf(p, sizeof(p), "%s", nobody_home);
	check(LHELPER_MBOX, p, u, g, 1, "outside the home directory");
	snprintf(p, sizeof(p), "%s/../etc/Mailbox", nobody_home);
	check(LHELPER_MBOX, p, u, g, 1, "not absolute and clean");
	snprintf(p, sizeof(p), "%s/./Mailbox", nobody_home);
	check(LHELPER_MBOX, p, u, g, 1, "not absolute and clean");
	snprintf(p, sizeof(p), "%s//Mailbox", nobody_home);
	check(LHELPER_MBOX, p, u, g, 1, "not absolute and clean");
	check(LHELPER_MBOX, "Mailbox", u, g, 1, "not absolute and clean");
	check(LHELPER_MBOX, "/var/mail/a\nb", u, g, 1, "not absolute and clean");
	/* a kind that does not match the path */
	snprintf(p, sizeof(p), "%s/Maildir", nobody_home);
	check(LHELPER_MAILDIR, p, u, g, 1, "not absolute and clean");
	/* the group must be the passwd entry's */
	snprintf(p, sizeof(p), "%s/Mailbox", nobody_home);
	check(LHELPER_MBOX, p, u, 42, 1, "is not the primary group");
	/* a prefix of the home directory's name is not inside it */
	snprintf(p, sizeof(p), "%sX/Mailbox", nobody_home);
	check(LHELPER_MBOX, p, u, g, 1, "outside the home directory");
}

static void
test_virtual(void **state)
{
	(void)state;
	/* a virtual uid needs no passwd entry, but must be at virtual_minimum_uid */
	check(LHELPER_MAILDIR, "/srv/vmail/alice/", 5000, 5000, 0, NULL);
	check(LHELPER_MAILDIR, "/srv/vmail/alice/", 50, 50, 0, "refusing mailbox");
	check(LHELPER_MAILDIR, "/srv/vmailX/alice/", 5000, 5000, 0, "no passwd entry");
	check(LHELPER_MAILDIR, "/srv/vmail/", 5000, 5000, 0, "no passwd entry");
	/* a local user's copy is not allowed into the virtual base */
	check(LHELPER_MAILDIR, "/srv/vmail/alice/", 5000, 5000, 1, "no passwd entry");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_root_refused),
		cmocka_unit_test(test_paths),
		cmocka_unit_test(test_virtual),
	};
	struct passwd *pw = getpwnam("nobody");

	if (pw == NULL) {
		fprintf(stderr, "test_lhelper: no user nobody\n");
		return 1;
	}
	nobody = *pw;
	snprintf(nobody_home, sizeof(nobody_home), "%s", pw->pw_dir);
	snprintf(nobody_name, sizeof(nobody_name), "%s", pw->pw_name);
	nobody.pw_dir = nobody_home;
	nobody.pw_name = nobody_name;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
