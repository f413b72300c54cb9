/*
 * cmd: the "conf" and "check" verbs.
 *
 * conf mimics postconf(1): "name = value" lines, the unexpanded value unless
 * -x, defaults only with -d, main.cf settings only with -n, values only with
 * -h; an unknown name gets "<name>: unknown parameter" on stderr and the
 * exit status stays 0.  As postconf does, it warns about main.cf and
 * master.cf names nobody uses ("<file>: unused parameter: name=value").
 */
#include "conf/conf_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log/log.h"
#include "util/xalloc.h"

struct cmd_opts {
	const char *dir;
	int	dir_given;
	int	d, n, x, h;
	char  **over;
	size_t	nover;
	char  **names;
	size_t	nnames;
};

/* "mxgate: fatal: ..." as postconf words it, but return to the caller. */
static void __attribute__((format(printf, 1, 2)))
cmd_fatal(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_vmsg("smtpd", LOG_LVL_FATAL, fmt, ap);
	va_end(ap);
}

static void
cmd_opts_free(struct cmd_opts *o)
{
	free(o->over);
	free(o->names);
}

/*
 * Options may come before, after or between names, as with GNU getopt.
 * Returns 0, or -1 after a usage message.
 */
static int
cmd_parse(int argc, char **argv, const char *flags, const char *usage, struct cmd_opts *o)
{
	int	only_names = 0;

	memset(o, 0, sizeof(*o));
	o->dir = CONF_DEFAULT_DIR;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];

		if (only_names || a[0] != '-' || a[1] == 0) {
			o->names = xrealloc(o->names, (o->nnames + 1) * sizeof(*o->names));
			o->names[o->nnames++] = argv[i];
			continue;
		}
		if (strcmp(a, "--") == 0) {
			only_names = 1;
			continue;
		}
		for (const char *f = a + 1; *f; f++) {
			if (strchr(flags, *f) == NULL) {
				msg_warn("invalid option -- '%c'", *f);
				cmd_fatal("usage: %s", usage);
				return -1;
			}
			if (*f == 'c' || *f == 'o') {
				const char *arg = f[1] ? f + 1 : (i + 1 < argc ? argv[++i] : NULL);

				if (arg == NULL) {
					msg_warn("option requires an argument -- '%c'", *f);
					cmd_fatal("usage: %s", usage);
					return -1;
				}
				if (*f == 'c') {
					o->dir = arg;
					o->dir_given = 1;
				} else {
					o->over = xrealloc(o->over, (o->nover + 1) * sizeof(*o->over));
					o->over[o->nover++] = (char *) arg;
				}
				break;
			}
			switch (*f) {
			case 'd': o->d = 1; break;
			case 'n': o->n = 1; break;
			case 'x': o->x = 1; break;
			case 'h': o->h = 1; break;
			}
		}
	}
	return 0;
}

static int
cmd_strcmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* postconf prints values with whitespace runs folded into one space. */
static void
cmd_print(const char *name, const char *value, int value_only)
{
	struct buf b = BUF_INIT;
	int	space = 0;

	for (const char *p = value; *p; p++) {
		if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
			space = 1;
			continue;
		}
		if (space && b.len)
			buf_putc(&b, ' ');
		space = 0;
		buf_putc(&b, *p);
	}
	if (value_only)
		printf("%s\n", buf_str(&b));
	else if (b.len)
		printf("%s = %s\n", name, buf_str(&b));
	else
		printf("%s =\n", name);
	buf_free(&b);
}

/* Print what reading the files found, in postconf's words where it has them. */
static int
cmd_print_problems(const struct conf_report *rep, const char *main_path)
{
	int	status = 0;

	for (size_t i = 0; i < rep->count; i++) {
		const struct conf_problem *p = &rep->items[i];
		char   *line;

		if (p->kind == CONF_PROB_NOT_IMPLEMENTED)
			continue;
		if (p->kind == CONF_PROB_UNUSED) {
			msg_warn("%s: %s", p->file ? p->file : main_path, p->text);
			continue;
		}
		line = conf_problem_format(p);
		if (p->is_error) {
			msg_error("%s", line);
			status = 1;
		} else {
			msg_warn("%s", line);
		}
		free(line);
	}
	return status;
}

int
conf_cmd_conf(int argc, char **argv)
{
	static const char usage[] =
	    "mxgate conf [-c DIR] [-d|-n] [-x] [-h] [-o name=value]... [name...]";
	struct cmd_opts o;
	struct conf_report rep = {0};
	struct conf_raw raw;
	struct conf_ctx ctx;
	const char **names;
	size_t	nnames = 0;
	int	status = 0;

	if (cmd_parse(argc, argv, "cdnxho", usage, &o) < 0) {
		cmd_opts_free(&o);
		return 1;
	}
	if (o.d && o.n) {
		cmd_fatal("specify one of -d -n");
		cmd_opts_free(&o);
		return 1;
	}
	if (o.d && o.nover) {
		cmd_fatal("specify one of -d -o");
		cmd_opts_free(&o);
		return 1;
	}
	memset(&raw, 0, sizeof(raw));
	if (!o.d) {
		(void) conf_raw_load(&raw, o.dir, o.over, o.nover, 1, &rep);
		status = cmd_print_problems(&rep, raw.main_path);
		/* postconf treats -c DIR as setting config_directory. */
		if (o.dir_given && conf_settings_get(&raw.main, "config_directory") == NULL
		    && conf_settings_get(&raw.over, "config_directory") == NULL)
			conf_settings_set(&raw.over, "config_directory", o.dir, NULL, 0);
	}
	conf_ctx_init(&ctx, NULL, &raw.over, &raw.main, NULL);

	if (o.nnames > 0) {
		names = xmalloc(o.nnames * sizeof(*names));
		for (size_t i = 0; i < o.nnames; i++)
			names[nnames++] = o.names[i];
	} else {
		size_t	max = P__COUNT + postfix_param_count + raw.main.count + raw.over.count;

		names = xmalloc(max * sizeof(*names));
		for (int i = 0; i < P__COUNT; i++)
			names[nnames++] = conf_params[i].name;
		for (size_t i = 0; i < postfix_param_count; i++)
			names[nnames++] = postfix_param_names[i];
		for (size_t i = 0; i < raw.main.count; i++)
			names[nnames++] = raw.main.items[i].name;
		for (size_t i = 0; i < raw.over.count; i++)
			names[nnames++] = raw.over.items[i].name;
		qsort(names, nnames, sizeof(*names), cmd_strcmp);
	}
	for (size_t i = 0; i < nnames; i++) {
		const char *name = names[i], *val;
		const struct conf_setting *set = conf_ctx_setting(&ctx, name);
		char   *err = NULL;
		int	known;

		if (o.nnames == 0 && i > 0 && strcmp(name, names[i - 1]) == 0)
			continue;
		known = conf_param_id(name) >= 0 || conf_postfix_known(name)
		    || strcmp(name, "config_directory") == 0
		    || (set != NULL && conf_raw_is_ref(&raw, name));
		if (!known) {
			if (o.nnames > 0)
				msg_warn("%s: unknown parameter", name);
			continue;
		}
		if (o.n && set == NULL)
			continue;
		if (o.x)
			val = conf_exp_name(ctx.ex, name, &err);
		else
			val = conf_ctx_lookup(&ctx, name, &err);
		if (err != NULL) {
			msg_warn("%s: %s", name, err);
			free(err);
			status = 1;
			continue;
		}
		cmd_print(name, val ? val : "", o.h);
	}
	fflush(stdout);
	free(names);
	conf_ctx_free(&ctx);
	conf_raw_free(&raw);
	conf_report_free(&rep);
	cmd_opts_free(&o);
	return status;
}

int
conf_cmd_check(int argc, char **argv)
{
	return conf_cmd_check_deep(argc, argv, NULL);
}

int
conf_cmd_check_deep(int argc, char **argv, int (*deep)(const struct conf *c))
{
	struct cmd_opts o;
	struct conf_report rep = {0};
	struct conf *c;
	int	status;

	if (cmd_parse(argc, argv, "co", "mxgate check [-c DIR] [-o name=value]...", &o) < 0) {
		cmd_opts_free(&o);
		return 1;
	}
	if (o.nnames > 0) {
		cmd_fatal("usage: mxgate check [-c DIR] [-o name=value]...");
		cmd_opts_free(&o);
		return 1;
	}
	c = conf_load_anyway(o.dir, o.over, o.nover, &rep);
	for (size_t i = 0; i < rep.count; i++) {
		char   *line = conf_problem_format(&rep.items[i]);

		if (rep.items[i].is_error)
			msg_error("%s", line);
		else
			msg_warn("%s", line);
		free(line);
	}
	status = rep.errors > 0 ? 1 : 0;
	if (c != NULL && deep != NULL && deep(c) > 0)
		status = 1;
	conf_free(&c);
	conf_report_free(&rep);
	cmd_opts_free(&o);
	return status;
}
