/*
 * parse: main.cf and master.cf syntax, list splitting, service endpoints.
 *
 * Both files use Postfix's logical lines: a line that starts with
 * whitespace continues the previous one; lines whose first non-blank
 * character is '#' and blank lines are skipped (they do not end a logical
 * line).  A continuation is joined with one space.
 */
#include "conf/conf_impl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/xalloc.h"

/* ---- settings ---- */

const struct conf_setting *
conf_settings_get(const struct conf_settings *s, const char *name)
{
	if (s == NULL)
		return NULL;
	for (size_t i = 0; i < s->count; i++)
		if (strcmp(s->items[i].name, name) == 0)
			return &s->items[i];
	return NULL;
}

int
conf_settings_set(struct conf_settings *s, const char *name, const char *value,
		  const char *file, int line)
{
	struct conf_setting *it;

	for (size_t i = 0; i < s->count; i++) {
		it = &s->items[i];
		if (strcmp(it->name, name) == 0) {
			free(it->value);
			free(it->file);
			it->value = xstrdup(value);
			it->file = file ? xstrdup(file) : NULL;
			it->line = line;
			return 1;
		}
	}
	if (s->count == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 16;
		s->items = xrealloc(s->items, s->cap * sizeof(*s->items));
	}
	it = &s->items[s->count++];
	it->name = xstrdup(name);
	it->value = xstrdup(value);
	it->file = file ? xstrdup(file) : NULL;
	it->line = line;
	return 0;
}

void
conf_settings_free(struct conf_settings *s)
{
	for (size_t i = 0; i < s->count; i++) {
		free(s->items[i].name);
		free(s->items[i].value);
		free(s->items[i].file);
	}
	free(s->items);
	s->items = NULL;
	s->count = s->cap = 0;
}

/* ---- files ---- */

int
conf_read_file(const char *path, char **text_r)
{
	struct buf b = BUF_INIT;
	char	chunk[8192];
	ssize_t	n;
	int	fd, saved;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			saved = errno;
			close(fd);
			buf_free(&b);
			errno = saved;
			return -1;
		}
		buf_append(&b, chunk, (size_t) n);
	}
	close(fd);
	buf_append(&b, "", 0);	/* allocated and terminated even when empty */
	*text_r = buf_steal(&b);
	return 0;
}

/* ---- logical lines ---- */

static int
parse_is_space(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Where each physical line starts inside a logical line (for token lines). */
struct parse_mark {
	size_t	off;
	int	line;
};

struct parse_logical {
	struct buf text;
	int	line;		/* first physical line; 0 = none pending */
	struct parse_mark *marks;
	size_t	nmarks, cap;
};

static void
parse_mark(struct parse_logical *lg, int line)
{
	if (lg->nmarks == lg->cap) {
		lg->cap = lg->cap ? 2 * lg->cap : 8;
		lg->marks = xrealloc(lg->marks, lg->cap * sizeof(*lg->marks));
	}
	lg->marks[lg->nmarks++] = (struct parse_mark) { lg->text.len, line };
}

static int
parse_line_at(const struct parse_logical *lg, size_t off)
{
	int	line = lg->line;

	for (size_t i = 0; i < lg->nmarks && lg->marks[i].off <= off; i++)
		line = lg->marks[i].line;
	return line;
}

typedef void (*parse_logical_fn)(void *ctx, const struct parse_logical *lg);

/*
 * Feed text as logical lines to fn.  Whitespace at the start of a logical
 * line is a warning, and that line is skipped (as Postfix does).
 */
static void
parse_logical_lines(const char *path, const char *text, parse_logical_fn fn, void *ctx,
		    struct conf_report *rep)
{
	struct parse_logical lg = {BUF_INIT, 0, NULL, 0, 0};
	const char *p = text;
	int	lineno = 0;

	while (*p) {
		const char *eol = strchr(p, '\n');
		size_t	len = eol ? (size_t) (eol - p) : strlen(p);
		size_t	a = 0, b = len;

		lineno++;
		while (a < len && parse_is_space(p[a]))
			a++;
		while (b > a && parse_is_space(p[b - 1]))
			b--;
		if (a == b || p[a] == '#') {
			/* blank or comment: skipped */
		} else if (a > 0) {
			if (lg.line == 0) {
				conf_report_add(rep, 0, CONF_PROB_SYNTAX, path, lineno, NULL, NULL,
						"logical line must not start with whitespace: \"%.*s\"",
						(int) len, p);
			} else {
				buf_putc(&lg.text, ' ');
				parse_mark(&lg, lineno);
				buf_append(&lg.text, p + a, b - a);
			}
		} else {
			if (lg.line != 0)
				fn(ctx, &lg);
			buf_reset(&lg.text);
			lg.nmarks = 0;
			lg.line = lineno;
			buf_append(&lg.text, p + a, b - a);
		}
		p += len;
		if (*p == '\n')
			p++;
	}
	if (lg.line != 0)
		fn(ctx, &lg);
	buf_free(&lg.text);
	free(lg.marks);
}

/* ---- main.cf ---- */

struct parse_main_ctx {
	const char *path;
	struct conf_settings *out;
	struct conf_report *rep;
};

static void
parse_main_line(void *vctx, const struct parse_logical *lg)
{
	struct parse_main_ctx *ctx = vctx;
	const char *s = buf_str(&lg->text);
	const char *n = s, *v;
	const struct conf_setting *old;
	char   *name;

	while (*n && !parse_is_space(*n) && *n != '=')
		n++;
	if (n == s) {
		conf_report_add(ctx->rep, 1, CONF_PROB_SYNTAX, ctx->path, lg->line, NULL, NULL,
				"missing attribute name: \"%s\"", s);
		return;
	}
	v = n;
	while (parse_is_space(*v))
		v++;
	if (*v != '=') {
		conf_report_add(ctx->rep, 1, CONF_PROB_SYNTAX, ctx->path, lg->line, NULL, NULL,
				"missing '=' after attribute name: \"%s\"", s);
		return;
	}
	v++;
	while (parse_is_space(*v))
		v++;
	name = xstrndup(s, (size_t) (n - s));
	if ((old = conf_settings_get(ctx->out, name)) != NULL)
		conf_report_add(ctx->rep, 0, CONF_PROB_OTHER, ctx->path, lg->line, name, old->value,
				"overriding earlier entry: %s=%s", name, old->value);
	conf_settings_set(ctx->out, name, v, ctx->path, lg->line);
	free(name);
}

void
conf_parse_main(const char *path, const char *text, struct conf_settings *out,
		struct conf_report *rep)
{
	struct parse_main_ctx ctx = {path, out, rep};

	parse_logical_lines(path, text, parse_main_line, &ctx, rep);
}

/* ---- tokens and lists ---- */

/*
 * Next token of s from *pos: separated by characters in seps, with {...}
 * groups (nested) kept whole.  Returns the token length (0 at the end) and
 * its start in *start_r; -1 on an unbalanced '{'.
 */
static long
parse_token(const char *s, size_t *pos, const char *seps, size_t *start_r)
{
	size_t	i = *pos, depth = 0;

	while (s[i] && strchr(seps, s[i]) != NULL)
		i++;
	*start_r = i;
	for (; s[i]; i++) {
		if (s[i] == '{')
			depth++;
		else if (s[i] == '}' && depth > 0)
			depth--;
		else if (depth == 0 && strchr(seps, s[i]) != NULL)
			break;
	}
	*pos = i;
	if (depth > 0)
		return -1;
	return (long) (i - *start_r);
}

char **
conf_split_list(const char *value, size_t *n_r, char **err_r)
{
	char  **v = xcalloc(1, sizeof(*v));
	size_t	n = 0, pos = 0, start;
	long	len;

	*err_r = NULL;
	while ((len = parse_token(value, &pos, ", \t\r\n", &start)) > 0) {
		v = xrealloc(v, (n + 2) * sizeof(*v));
		v[n++] = xstrndup(value + start, (size_t) len);
		v[n] = NULL;
	}
	if (len < 0) {
		*err_r = xasprintf("missing '}' in \"%s\"", value + start);
		conf_list_free(v);
		return NULL;
	}
	if (n_r)
		*n_r = n;
	return v;
}

void
conf_list_free(char **list)
{
	if (list == NULL)
		return;
	for (char **p = list; *p; p++)
		free(*p);
	free(list);
}

/* ---- master.cf ---- */

struct parse_master_ctx {
	const char *path;
	struct conf_master_ent *ents;
	size_t	n;
	struct conf_report *rep;
	struct conf_master_ent *spawns;
	size_t	nspawns;
};

struct parse_tok {
	char   *text;
	int	line;
};

/* "name=value" or "{ name = value }" (braces, spaces around '=' allowed). */
static void
parse_master_opt(struct parse_master_ctx *ctx, struct conf_master_ent *ent,
		 const char *tok, int line)
{
	size_t	len = strlen(tok), a = 0, b;
	const char *eq;
	char   *body, *name, *value;

	if (len >= 2 && tok[0] == '{' && tok[len - 1] == '}') {
		a = 1;
		len--;
	}
	body = xstrndup(tok + a, len - a);
	if ((eq = strchr(body, '=')) == NULL) {
		conf_report_add(ctx->rep, 1, CONF_PROB_SYNTAX, ctx->path, line, NULL, tok,
				"-o option requires name=value: \"%s\"", tok);
		free(body);
		return;
	}
	a = 0;
	while (parse_is_space(body[a]))
		a++;
	b = (size_t) (eq - body);
	while (b > a && parse_is_space(body[b - 1]))
		b--;
	if (b == a) {
		conf_report_add(ctx->rep, 1, CONF_PROB_SYNTAX, ctx->path, line, NULL, tok,
				"missing attribute name in -o option: \"%s\"", tok);
		free(body);
		return;
	}
	name = xstrndup(body + a, b - a);
	a = (size_t) (eq - body) + 1;
	while (parse_is_space(body[a]))
		a++;
	b = strlen(body);
	while (b > a && parse_is_space(body[b - 1]))
		b--;
	value = xstrndup(body + a, b - a);
	conf_settings_set(&ent->opts, name, value, ctx->path, line);
	free(name);
	free(value);
	free(body);
}

static void
parse_master_line(void *vctx, const struct parse_logical *lg)
{
	struct parse_master_ctx *ctx = vctx;
	const char *s = buf_str(&lg->text);
	struct parse_tok *toks = NULL;
	size_t	ntok = 0, pos = 0, start;
	long	len;
	struct conf_master_ent *ent;

	while ((len = parse_token(s, &pos, " \t\r\n", &start)) > 0) {
		toks = xrealloc(toks, (ntok + 1) * sizeof(*toks));
		toks[ntok].text = xstrndup(s + start, (size_t) len);
		toks[ntok].line = parse_line_at(lg, start);
		ntok++;
	}
	if (len < 0) {
		conf_report_add(ctx->rep, 1, CONF_PROB_SYNTAX, ctx->path, lg->line, NULL, NULL,
				"missing '}' in \"%s\"", s + start);
		goto out;
	}
	if (ntok < 8) {
		conf_report_add(ctx->rep, 1, CONF_PROB_SYNTAX, ctx->path, lg->line, NULL, NULL,
				"bad field count: \"%s\"", s);
		goto out;
	}
	/*
	 * Postfix's master.cf lists many services; ours are inet smtpd, inet
	 * postscreen (served by smtpd with the settings of the pass service it
	 * hands clients to) and pass smtpd, and spawn.  Any other inet line is
	 * not opened, with a warning at its line.
	 */
	if (strcmp(toks[7].text, "spawn") == 0) {
		/* spawn(8): mxgate runs the command itself (net/spawner.h) */
		ctx->spawns = xrealloc(ctx->spawns, (ctx->nspawns + 1) * sizeof(*ctx->spawns));
		ent = &ctx->spawns[ctx->nspawns++];
		memset(ent, 0, sizeof(*ent));
		ent->type = xstrdup(toks[1].text);
		ent->priv = xstrdup(toks[2].text);
		ent->unpriv = xstrdup(toks[3].text);
		ent->wakeup = xstrdup(toks[5].text);
	} else {
		enum conf_ment_kind kind;

		if (strcmp(toks[1].text, "inet") == 0 && strcmp(toks[7].text, "smtpd") == 0)
			kind = MENT_SMTPD;
		else if (strcmp(toks[1].text, "inet") == 0
			 && strcmp(toks[7].text, "postscreen") == 0)
			kind = MENT_POSTSCREEN;
		else if (strcmp(toks[1].text, "pass") == 0 && strcmp(toks[7].text, "smtpd") == 0)
			kind = MENT_PASS;
		else {
			/* another daemon on a network port (qmqpd, ...): said, never silent */
			if (strcmp(toks[1].text, "inet") == 0)
				conf_report_add(ctx->rep, 0, CONF_PROB_OTHER, ctx->path, lg->line,
						NULL, toks[0].text, "service \"%s\": not opened: "
						"mxgate serves inet services of smtpd, postscreen and "
						"spawn only, not \"%s\"", toks[0].text, toks[7].text);
			goto out;
		}
		ctx->ents = xrealloc(ctx->ents, (ctx->n + 1) * sizeof(*ctx->ents));
		ent = &ctx->ents[ctx->n++];
		memset(ent, 0, sizeof(*ent));
		ent->kind = kind;
	}
	ent->chroot = xstrdup(toks[4].text);
	ent->name = xstrdup(toks[0].text);
	ent->maxproc = xstrdup(toks[6].text);
	ent->line = lg->line;
	for (size_t i = 8; i < ntok; i++) {
		if (strcmp(toks[i].text, "-o") == 0) {
			if (i + 1 == ntok) {
				conf_report_add(ctx->rep, 1, CONF_PROB_SYNTAX, ctx->path, toks[i].line,
						NULL, NULL, "-o option requires name=value");
				break;
			}
			i++;
			parse_master_opt(ctx, ent, toks[i].text, toks[i].line);
		} else if (strncmp(toks[i].text, "-o", 2) == 0) {
			parse_master_opt(ctx, ent, toks[i].text + 2, toks[i].line);
		} else if (ent->type != NULL) {
			/* spawn: options, then its attributes (user=, argv=) */
			if (toks[i].text[0] == '-') {
				if (strcmp(toks[i].text, "-v") != 0 && ent->badopt == NULL)
					ent->badopt = xstrdup(toks[i].text);
				continue;
			}
			for (; i < ntok; i++) {
				ent->args = xrealloc(ent->args, (ent->nargs + 2) * sizeof(*ent->args));
				ent->args[ent->nargs++] = xstrdup(toks[i].text);
				ent->args[ent->nargs] = NULL;
			}
			break;
		}
		/* other smtpd options (-v, -D, ...) have no meaning here */
	}
out:
	for (size_t i = 0; i < ntok; i++)
		free(toks[i].text);
	free(toks);
}

void
conf_parse_master(const char *path, const char *text, struct conf_master_ent **ents_r,
		  size_t *n_r, struct conf_master_ent **spawns_r, size_t *nspawns_r,
		  struct conf_report *rep)
{
	struct parse_master_ctx ctx = {path, NULL, 0, rep, NULL, 0};

	parse_logical_lines(path, text, parse_master_line, &ctx, rep);
	*ents_r = ctx.ents;
	*n_r = ctx.n;
	*spawns_r = ctx.spawns;
	*nspawns_r = ctx.nspawns;
}

void
conf_master_ents_free(struct conf_master_ent *ents, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(ents[i].name);
		free(ents[i].maxproc);
		conf_settings_free(&ents[i].opts);
		free(ents[i].type);
		free(ents[i].priv);
		free(ents[i].unpriv);
		free(ents[i].chroot);
		free(ents[i].wakeup);
		free(ents[i].badopt);
		for (size_t k = 0; k < ents[i].nargs; k++)
			free(ents[i].args[k]);
		free(ents[i].args);
	}
	free(ents);
}

/* ---- service endpoints ---- */

static const struct {
	const char *name;
	const char *port;
} parse_services[] = {
	{"lmtp", "24"}, {"smtp", "25"}, {"smtps", "465"}, {"submission", "587"},
	{"submissions", "465"},
};

static int
parse_port(const char *port, char **port_r, char **err_r)
{
	struct servent *se;

	if (*port && strspn(port, "0123456789") == strlen(port)) {
		char   *end;
		unsigned long v = strtoul(port, &end, 10);

		if (strlen(port) > 5 || v == 0 || v > 65535) {
			*err_r = xasprintf("bad port number: \"%s\"", port);
			return -1;
		}
		*port_r = xasprintf("%lu", v);
		return 0;
	}
	if (*port && (se = getservbyname(port, "tcp")) != NULL) {
		*port_r = xasprintf("%d", ntohs((unsigned short) se->s_port));
		return 0;
	}
	for (size_t i = 0; i < sizeof(parse_services) / sizeof(parse_services[0]); i++) {
		if (strcmp(parse_services[i].name, port) == 0) {
			*port_r = xstrdup(parse_services[i].port);
			return 0;
		}
	}
	*err_r = xasprintf("unknown service name: \"%s\"", port);
	return -1;
}

int
conf_parse_endpoint(const char *name, char **host_r, char **port_r, char **err_r)
{
	const char *colon;
	char   *host = NULL;

	*host_r = *port_r = *err_r = NULL;
	if (name[0] == '[') {
		const char *close = strchr(name, ']');

		if (close == NULL || close[1] != ':' || close == name + 1) {
			*err_r = xasprintf("bad service address: \"%s\"", name);
			return -1;
		}
		host = xstrndup(name + 1, (size_t) (close - name - 1));
		colon = close + 1;
	} else if ((colon = strrchr(name, ':')) != NULL) {
		if (colon > name && !(colon == name + 1 && name[0] == '*'))
			host = xstrndup(name, (size_t) (colon - name));
	}
	if (parse_port(colon ? colon + 1 : name, port_r, err_r) < 0) {
		free(host);
		return -1;
	}
	*host_r = host;
	return 0;
}
