/*
 * mxgate: an SMTP receiving server (MX) that behaves like Postfix's smtpd.
 *
 *   mxgate run   [-c DIR] [-o name=value]...   run in the foreground until SIGTERM
 *   mxgate conf  [-c DIR] [-d|-n|-x|-h] [name ...]   postconf(1) semantics
 *   mxgate check [-c DIR]                      validate the configuration
 *   mxgate anvil show [-c DIR] [CLIENT]        anvil's counts (Redis, or the control socket)
 *   mxgate anvil clear [-c DIR] CLIENT         reset a client's rates
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/resource.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "conf/conf.h"
#include "deliver/spool.h"
#include "deliver/lhelper.h"
#include "deliver/mbox.h"
#include "log/log.h"
#include "net/control.h"
#include "net/server.h"
#include "net/spawner.h"
#include "policy/anvil.h"
#include "policy/mapcmd.h"
#include "policy/recipient.h"
#include "policy/restrict.h"
#include "smtp/service.h"
#include "util/buf.h"
#include "util/xalloc.h"
#include "version.h"

#define MXGATE_DEFAULT_CONFIG_DIR "/etc/mxgate"

static void
usage(void)
{
	fprintf(stderr,
		"usage: mxgate run   [-c DIR] [-o name=value]...\n"
		"       mxgate conf  [-c DIR] [-d|-n|-x|-h] [-o name=value]... [name ...]\n"
		"       mxgate check [-c DIR]\n"
		"       mxgate map   [-c DIR] -q KEY|- TYPE:NAME...\n"
		"       mxgate anvil show  [-c DIR] [-o name=value]... [CLIENT]\n"
		"       mxgate anvil clear [-c DIR] [-o name=value]... CLIENT\n");
	exit(2);
}

static void
print_report(const struct conf_report *rep, int errors_only)
{
	size_t i;

	for (i = 0; i < rep->count; i++) {
		const struct conf_problem *p = &rep->items[i];
		char *line;

		if (errors_only && !p->is_error)
			continue;
		line = conf_problem_format(p);
		if (p->is_error)
			msg_error("%s", line);
		else
			msg_warn("%s", line);
		free(line);
	}
}

/* What check_services() has printed, so that a problem shared by services is listed once. */
struct check_seen {
	const struct conf *c;
	const struct conf_service *cs;
	char  **lines;		/* printed, with location */
	size_t	nlines;
	char  **texts;		/* this service's table problems as "param: why" */
	size_t	ntexts;
	int	errors;
};

static void
check_seen_add(char ***v, size_t *n, char *s)
{
	*v = xrealloc(*v, (*n + 1) * sizeof(**v));
	(*v)[(*n)++] = s;
}

static int
check_seen_has(char *const *v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i], s) == 0)
			return 1;
	return 0;
}

/* Start daemon logging with the settings of main.cf (see log.h). */
static int
log_open_global(const struct conf_view *g, char **err_r)
{
	struct log_conf lc = {
		.syslog_name = conf_str(g, P_syslog_name),
		.syslog_facility = conf_str(g, P_syslog_facility),
		.maillog_file = conf_str(g, P_maillog_file),
		.maillog_file_prefixes = conf_str(g, P_maillog_file_prefixes),
		.hostname = conf_str(g, P_myhostname),
	};

	return log_open_conf(&lc, err_r);
}

/*
 * A recipient_problem_fn: one table (or list entry) that cannot be used,
 * printed at the main.cf or master.cf line that wrote it, once.
 */
static void
check_table_problem(void *ctx, const char *param, const char *item, const char *why)
{
	struct check_seen *sn = ctx;
	struct conf_origin o;
	bool origin;
	char *line;

	check_seen_add(&sn->texts, &sn->ntexts, xasprintf("%s: %s", param, why));
	if (item == NULL)
		return;		/* a reply code: conf's bounds have said it already */
	origin = conf_origin(sn->c, sn->cs, param, item, &o);
	if (!origin) {
		/* a built-in default: no line to point at */
		line = xasprintf("service %s: %s: %s", sn->cs->name, param, why);
	} else {
		/* a -o on the command line (no file) prints as it is */
		char *where = o.file ? xasprintf("%s, line %d: ", o.file, o.line) : xstrdup("");

		if (strcmp(o.name, param) != 0)
			line = xasprintf("%s%s (via $%s): %s", where, param, o.name, why);
		else
			line = xasprintf("%s%s: %s", where, param, why);
		free(where);
	}
	if (check_seen_has(sn->lines, sn->nlines, line)) {
		free(line);
		return;
	}
	if (origin) {
		/* one table at one line, once: alias_maps is also $alias_maps in
		 * local_recipient_maps */
		char *key = xasprintf("\001%s:%d: %s: %s", o.file ? o.file : "", o.line, item, why);

		if (check_seen_has(sn->lines, sn->nlines, key)) {
			free(key);
			free(line);
			return;
		}
		check_seen_add(&sn->lines, &sn->nlines, key);
	}
	msg_error("%s", line);
	check_seen_add(&sn->lines, &sn->nlines, line);
	sn->errors++;
}

/* A recipient_alias_fn: an alias target mxgate cannot deliver to, once. */
static void
check_alias_problem(void *ctx, const char *param, const char *file, int line, const char *what)
{
	struct check_seen *sn = ctx;
	char *text = xasprintf("%s, line %d: %s: %s", file, line, param, what);

	if (check_seen_has(sn->lines, sn->nlines, text)) {
		free(text);
		return;
	}
	msg_warn("%s", text);
	check_seen_add(&sn->lines, &sn->nlines, text);
}

/* recipient_alias_fn: a transport_maps entry that `run` would refuse at RCPT is an error. */
static void
check_transport_problem(void *ctx, const char *param, const char *file, int line,
			const char *what)
{
	struct check_seen *sn = ctx;
	char *text = xasprintf("%s, line %d: %s: %s", file, line, param, what);

	if (check_seen_has(sn->lines, sn->nlines, text)) {
		free(text);
		return;
	}
	msg_error("%s", text);
	sn->errors++;
	check_seen_add(&sn->lines, &sn->nlines, text);
}

/*
 * `mxgate check`, beyond the parameter values: open every lookup table of
 * every service the way the daemon would, naming each one that cannot be
 * opened (not only the first), and say which recipients will be deferred
 * until the privileged delivery helper exists.  Returns the number of errors.
 */
static int local_conf_read(const struct conf_view *g, struct lhelper_conf *lc, uid_t *def_uid_r,
			   gid_t *def_gid_r);

static int
check_services(const struct conf *c)
{
	const char *owner = conf_str(conf_global(c), P_mail_owner);
	struct passwd *pw = getpwnam(owner);
	uid_t run_uid = geteuid() == 0 ? (pw ? pw->pw_uid : (uid_t)-1) : geteuid();
	struct check_seen sn = { c, NULL, NULL, 0, NULL, 0, 0 };
	const char *maillog = conf_str(conf_global(c), P_maillog_file);
	char *why = NULL;
	size_t i, k, n;

	if (geteuid() == 0 && pw == NULL) {
		msg_error("mail_owner = %s: no such user (create it with `make deps`)", owner);
		sn.errors++;
	}
	{
		/* what `run` reads for local delivery: mailbox_delivery_lock, default_privs */
		struct lhelper_conf lc = { 0 };
		uid_t du;
		gid_t dg;

		if (local_conf_read(conf_global(c), &lc, &du, &dg) < 0)
			sn.errors++;
		free((char *)lc.virtual_mailbox_base);
		free((char *)lc.mail_spool_directory);
	}
	{
		const char *spec = conf_str(conf_global(c), P_mxgate_anvil_backend);
		char *err = NULL;
		struct anvil_settings set = {
			conf_str(conf_global(c), P_mxgate_anvil_redis_prefix),
			conf_str(conf_global(c), P_mxgate_anvil_redis_password_file),
			conf_time(conf_global(c), P_mxgate_anvil_lease_time),
		};
		struct anvil *a;

		anvil_set_settings(&set);
		a = anvil_create(spec, 60, 1, &err);

		if (a == NULL) {
			msg_error("mxgate_anvil_backend = %s: %s", spec, err);
			free(err);
			sn.errors++;
		}
		anvil_free(&a);
	}
	/* What `run` would refuse to open (the prefixes are checked with the values). */
	if (*maillog != '\0' && log_file_check(maillog, &why) < 0) {
		msg_error("%s", why);
		free(why);
		sn.errors++;
	}
	for (i = 0; i < conf_service_count(c); i++) {
		const struct conf_service *cs = conf_service_at(c, i);
		struct recipient_conf *rc = recipient_conf_from_view(cs->view);
		struct recipient_policy *policy;
		void *normal, *stress;
		char *err = NULL;
		char *const *uids;

		sn.cs = cs;
		policy = recipient_policy_create_report(rc, check_table_problem, &sn);
		if (policy != NULL) {
			struct restrict_policy *acl;

			recipient_policy_probe(policy, check_table_problem, &sn);
			recipient_policy_check_aliases(policy, check_alias_problem, &sn);
			recipient_policy_check_transports(policy, check_transport_problem, &sn);
			/* the restriction lists, classes and access tables */
			if ((acl = restrict_create(cs->view, policy, check_table_problem, &sn)) != NULL)
				restrict_probe(acl, check_table_problem, &sn);
			restrict_free(&acl);
		}
		recipient_policy_free(&policy);
		free(rc);
		/* The other things a service needs (patterns, address lists), once each. */
		if (smtp_service_build(cs, &normal, &stress, &err) < 0) {
			if (!check_seen_has(sn.texts, sn.ntexts, err)) {
				msg_error("service %s: %s", cs->name, err);
				sn.errors++;
			}
			free(err);
		} else {
			smtp_service_data_free(normal, stress);
		}
		for (k = 0; k < sn.ntexts; k++)
			free(sn.texts[k]);
		sn.ntexts = 0;
		if (err != NULL)
			continue;
		uids = conf_list(cs->view, P_virtual_uid_maps, &n);
		for (k = 0; k < n && geteuid() != 0; k++)
			if (strncmp(uids[k], "static:", 7) == 0
			    && (uid_t)strtoul(uids[k] + 7, NULL, 10) != run_uid)
				msg_warn("service %s: virtual_uid_maps = %s, but mxgate, not started as "
					 "root, has no privileged delivery helper and writes mail as uid %ld "
					 "only; such recipients are deferred with 451", cs->name, uids[k],
					 (long)run_uid);
		if (!conf_bool(cs->view, P_smtpd_reject_unlisted_recipient))
			msg_warn("service %s: smtpd_reject_unlisted_recipient = no: mxgate refuses unknown "
				 "recipients all the same, since it can neither store nor bounce mail for "
				 "them", cs->name);
		if (conf_list(cs->view, P_mydestination, &n), n > 0 && geteuid() != 0)
			msg_warn("service %s: mxgate, not started as root, has no privileged delivery "
				 "helper: local users (mydestination) other than uid %ld are deferred "
				 "with 451", cs->name, (long)run_uid);
	}
	for (k = 0; k < sn.nlines; k++)
		free(sn.lines[k]);
	free(sn.lines);
	free(sn.texts);
	return sn.errors;
}

/*
 * A session costs a descriptor, not a process: take every descriptor the
 * hard limit allows (accept() backs off on EMFILE when they run out).
 */
static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			msg_warn("cannot raise the open file limit: %s", strerror(errno));
	}
}

/*
 * Started as root: the spool directory is made now and given to
 * mail_owner, who writes it after the drop (server_run() checks it).
 */
static void
prepare_spool_as_root(const struct conf_view *global)
{
	const char *spool = conf_str(global, P_mxgate_spool_directory);
	const char *owner = conf_str(global, P_mail_owner);
	struct buf err = BUF_INIT;
	struct passwd *pw;

	if (geteuid() != 0 || (pw = getpwnam(owner)) == NULL)
		return;
	if (spool_dir_prepare(spool, &err) < 0)
		msg_fatal("mxgate_spool_directory = %s: %s", spool, buf_str(&err));
	if (chown(spool, pw->pw_uid, pw->pw_gid) < 0)
		msg_fatal("mxgate_spool_directory = %s: chown %s: %s", spool, owner,
			  strerror(errno));
}

/* Started as root: become mail_owner for good, right after binding. */
static int
drop_privileges(struct server *srv, const struct conf_view *global)
{
	const char *owner = conf_str(global, P_mail_owner);
	struct passwd *pw;

	if (geteuid() != 0) {
		server_set_run_ids(srv, geteuid(), getegid());
		return 0;
	}
	if ((pw = getpwnam(owner)) == NULL) {
		msg_error("mail_owner = %s: no such user (create it with `make deps`, or set "
			  "mail_owner)", owner);
		return -1;
	}
	if (pw->pw_uid == 0) {
		msg_error("mail_owner = %s: must not be a privileged user", owner);
		return -1;
	}
	if (setgroups(1, &pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
		msg_error("cannot drop privileges to mail_owner %s: %s", owner, strerror(errno));
		return -1;
	}
	if (setuid(0) == 0) {
		msg_error("privileges could be regained after dropping them");
		return -1;
	}
	server_set_run_ids(srv, pw->pw_uid, pw->pw_gid);
	return 0;
}

/*
 * The control socket, bound as the starting user and owned by mail_owner.
 * Without it the daemon runs all the same (`mxgate anvil` cannot reach it
 * then): a warning, not a refusal to start.
 */
static void
control_open(struct server *srv, const struct conf_view *global)
{
	const char *path = conf_str(global, P_mxgate_control_socket);
	uid_t uid = geteuid();
	gid_t gid = getegid();
	char *err = NULL;
	int fd;

	if (*path == '\0')
		return;
	if (geteuid() == 0) {
		struct passwd *pw = getpwnam(conf_str(global, P_mail_owner));

		if (pw == NULL)
			return;		/* drop_privileges() says why */
		uid = pw->pw_uid;
		gid = pw->pw_gid;
	}
	if ((fd = control_bind(path, uid, gid, &err)) < 0) {
		msg_warn("%s; `mxgate anvil` cannot reach this daemon", err);
		free(err);
		return;
	}
	server_set_control(srv, fd, path);
}

static void
anvil_show_line(void *ctx, const char *ident, const struct anvil_reply *r)
{
	control_format(ctx, ident, r);
}

static int
anvil_line_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Print the lines of text sorted (the daemon lists them in hash order). */
static void
print_sorted(const char *text)
{
	char *copy = xstrdup(text), *p, *save = NULL;
	char **lines = NULL;
	size_t n = 0, i;

	for (p = strtok_r(copy, "\n", &save); p != NULL; p = strtok_r(NULL, "\n", &save)) {
		lines = xrealloc(lines, (n + 1) * sizeof(*lines));
		lines[n++] = p;
	}
	qsort(lines, n, sizeof(*lines), anvil_line_cmp);
	for (i = 0; i < n; i++)
		printf("%s\n", lines[i]);
	free(lines);
	free(copy);
}

/*
 * mxgate anvil show [-c DIR] [-o name=value]... [CLIENT] | clear ... CLIENT: with the Redis
 * backend against Redis (every node's counts), else through the running
 * daemon's control socket.  Exit 0; clear exits 1 when nothing matched;
 * 2 for an error.
 */
static int
cmd_anvil(int argc, char **argv)
{
	const char *dir = MXGATE_DEFAULT_CONFIG_DIR, *match = NULL, *spec;
	struct conf_report rep = { 0 };
	const struct conf_view *global;
	struct conf *conf;
	struct buf out = BUF_INIT;
	char **overrides;
	size_t noverrides = 0;
	char *err = NULL;
	int c, clear, rc = 0;
	long n;

	if (argc < 2)
		usage();
	if (strcmp(argv[1], "show") == 0)
		clear = 0;
	else if (strcmp(argv[1], "clear") == 0)
		clear = 1;
	else
		usage();
	argc--;
	argv++;
	optind = 1;
	overrides = xcalloc((size_t)argc + 1, sizeof(*overrides));
	while ((c = getopt(argc, argv, "c:o:")) != -1) {
		switch (c) {
		case 'c': dir = optarg; break;
		case 'o': overrides[noverrides++] = optarg; break;
		default: usage();
		}
	}
	if (argc - optind > 1 || (clear && argc - optind != 1))
		usage();
	if (optind < argc)
		match = argv[optind];
	if ((conf = conf_load(dir, overrides, noverrides, &rep)) == NULL) {
		print_report(&rep, 1);
		msg_error("configuration in %s has %zu error%s", dir, rep.errors,
			  rep.errors == 1 ? "" : "s");
		conf_report_free(&rep);
		free(overrides);
		return 2;
	}
	conf_report_free(&rep);
	global = conf_global(conf);
	spec = conf_str(global, P_mxgate_anvil_backend);
	if (strncmp(spec, "redis:", 6) == 0) {
		struct anvil_settings set = {
			conf_str(global, P_mxgate_anvil_redis_prefix),
			conf_str(global, P_mxgate_anvil_redis_password_file),
			conf_time(global, P_mxgate_anvil_lease_time),
		};

		anvil_set_settings(&set);
		n = anvil_redis_admin(spec + 6, clear, match, conf_time(global, P_anvil_rate_time_unit),
				      anvil_show_line, &out, &err);
		if (n < 0) {
			msg_error("%s", err);
			rc = 2;
		} else if (clear) {
			printf("cleared %ld\n", n);
			rc = n > 0 ? 0 : 1;
		} else {
			fputs(buf_str(&out), stdout);
		}
	} else {
		struct buf line = BUF_INIT;

		buf_printf(&line, "%s%s%s", clear ? "clear" : "show", match ? " " : "",
			   match ? match : "");
		if (control_request(conf_str(global, P_mxgate_control_socket), buf_str(&line), &out,
				    5000, &err) < 0) {
			msg_error("%s", err);
			rc = 2;
		} else if (strncmp(buf_str(&out), "error:", 6) == 0) {
			fputs(buf_str(&out), stderr);
			rc = 2;
		} else if (clear) {
			fputs(buf_str(&out), stdout);
			rc = strcmp(buf_str(&out), "cleared 0\n") == 0 ? 1 : 0;
		} else {
			print_sorted(buf_str(&out));
		}
		buf_free(&line);
	}
	free(err);
	buf_free(&out);
	conf_free(&conf);
	free(overrides);
	return rc;
}

/*
 * Local delivery settings, read once at start-up (the helper is forked with
 * them; a reload does not change them).  Returns 0, or -1 after msg_error()
 * naming the parameter.
 */
static int
local_conf_read(const struct conf_view *g, struct lhelper_conf *lc, uid_t *def_uid_r,
		gid_t *def_gid_r)
{
	const char *lock = conf_str(g, P_mailbox_delivery_lock);
	const char *privs = conf_str(g, P_default_privs);
	const char *bad;
	size_t badlen;
	struct passwd *pw;
	int mask = mbox_lock_parse(lock, &bad, &badlen);

	if (mask < 0) {
		msg_error("mailbox_delivery_lock = %s: unknown lock style \"%.*s\" (fcntl, flock, "
			  "dotlock)", lock, (int)badlen, bad);
		return -1;
	}
	if ((pw = getpwnam(privs)) == NULL) {
		msg_error("default_privs = %s: unknown user name value", privs);
		return -1;
	}
	if (pw->pw_uid == 0 || pw->pw_gid == 0) {
		msg_error("default_privs = %s: must not be a privileged user", privs);
		return -1;
	}
	*def_uid_r = pw->pw_uid;
	*def_gid_r = pw->pw_gid;
	lc->virtual_mailbox_base = xstrdup(conf_str(g, P_virtual_mailbox_base));
	lc->mail_spool_directory = xstrdup(conf_str(g, P_mail_spool_directory));
	lc->virtual_minimum_uid = conf_int(g, P_virtual_minimum_uid);
	lc->default_uid = pw->pw_uid;
	lc->lock_mask = mask;
	return 0;
}

static int
cmd_run(int argc, char **argv)
{
	const char *dir = MXGATE_DEFAULT_CONFIG_DIR;
	char **overrides = xcalloc((size_t)argc + 1, sizeof(*overrides));
	size_t noverrides = 0;
	struct conf_report rep = { 0 };
	const struct conf_view *global;
	struct server *srv;
	struct spawner *spawner = NULL;
	struct lhelper *helper = NULL;
	static struct lhelper_conf lconf;
	uid_t def_uid;
	gid_t def_gid;
	struct conf *conf;
	char *err = NULL;
	int c, nworkers, rc;
	long ncpu;

	optind = 1;
	while ((c = getopt(argc, argv, "c:o:v")) != -1) {
		switch (c) {
		case 'c': dir = optarg; break;
		case 'o': overrides[noverrides++] = optarg; break;
		case 'v': msg_verbose++; break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
	if ((conf = conf_load(dir, overrides, noverrides, &rep)) == NULL) {
		print_report(&rep, 1);
		msg_fatal("configuration in %s has %zu error%s; see `mxgate check -c %s`", dir,
			  rep.errors, rep.errors == 1 ? "" : "s", dir);
	}
	global = conf_global(conf);
	/*
	 * The privileged delivery helper and the spawner of master.cf's spawn
	 * services: forked while we are root and have one thread (before the log
	 * writer), so that the children's allocator and locks are in a state that
	 * no other thread left half-way.  What goes wrong here is said on stderr,
	 * as a configuration error is.
	 */
	if (local_conf_read(global, &lconf, &def_uid, &def_gid) < 0)
		msg_fatal("cannot set up local delivery");
	if (lhelper_start(&lconf, &helper) < 0)
		msg_fatal("cannot start the privileged delivery helper");
	if (spawner_start(conf, dir, &spawner) < 0)
		msg_fatal("cannot start the spawn services");
	if (log_open_global(global, &err) < 0)
		msg_fatal("%s", err);
	spawner_log_start(spawner);
	print_report(&rep, 0);
	conf_report_free(&rep);
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	tzset();	/* the time zone is read now, not by a loop writing a Received: header */

	srv = server_create(conf, dir, overrides, noverrides);
	if (server_bind(srv) < 0)
		msg_fatal("cannot listen on the configured services");
	server_set_local(srv, helper, &lconf, def_uid, def_gid);
	if (server_build_services(srv, &err) < 0)
		msg_fatal("%s", err);
	prepare_spool_as_root(global);
	control_open(srv, global);
	if (drop_privileges(srv, global) < 0)
		msg_fatal("refusing to run with the privileges of the starting user");

	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	nworkers = ncpu > 0 ? (int)ncpu : 1;
	/*
	 * Postfix's master(8) logs its start, reload and stop lines.  Once
	 * "daemon started" is out, a SIGHUP or SIGTERM must reach the loop's
	 * handlers, which server_run() sets up: until then they wait, blocked.
	 */
	{
		sigset_t early;

		sigemptyset(&early);
		sigaddset(&early, SIGTERM);
		sigaddset(&early, SIGINT);
		sigaddset(&early, SIGHUP);
		pthread_sigmask(SIG_BLOCK, &early, NULL);
	}
	log_as("master", LOG_LVL_INFO, "daemon started -- version %s, configuration %s",
	       MXGATE_VERSION, dir);
	rc = server_run(srv, nworkers);
	server_free(&srv);
	lhelper_stop(&helper);
	spawner_stop(&spawner);
	log_as("master", LOG_LVL_INFO, "daemon stopped");
	free(overrides);
	log_close();
	return rc;
}

int
main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	evthread_use_pthreads();
	if (strcmp(argv[1], "run") == 0)
		return cmd_run(argc - 1, argv + 1);
	if (strcmp(argv[1], "conf") == 0)
		return conf_cmd_conf(argc - 2, argv + 2);
	if (strcmp(argv[1], "check") == 0)
		return conf_cmd_check_deep(argc - 2, argv + 2, check_services);
	if (strcmp(argv[1], "anvil") == 0)
		return cmd_anvil(argc - 1, argv + 1);
	if (strcmp(argv[1], "map") == 0)
		return map_cmd(argc - 1, argv + 1);
	if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "-V") == 0) {
		printf("mxgate %s\n", MXGATE_VERSION);
		return 0;
	}
	usage();
}
