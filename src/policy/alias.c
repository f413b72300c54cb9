/*
 * alias: virtual_alias_maps and aliases(5) expansion.  See alias.h for the
 * contract and for what Postfix 3.7 does that this follows.
 */
#include "policy/alias.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "policy/lookup_keys.h"
#include "util/buf.h"
#include "util/xalloc.h"

/* ---- lists ---- */

void alias_list_add(struct alias_list *l, const char *s)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 4;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	l->v[l->n++] = xstrdup(s);
}

bool alias_list_has(const struct alias_list *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcasecmp(l->v[i], s) == 0)
			return true;
	return false;
}

void alias_list_free(struct alias_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

static void targets_add(struct alias_targets *t, enum alias_kind kind, char *text)
{
	if (t->n == t->cap) {
		t->cap = t->cap ? 2 * t->cap : 4;
		t->v = xrealloc(t->v, t->cap * sizeof(*t->v));
	}
	t->v[t->n].kind = kind;
	t->v[t->n].text = text;
	t->n++;
}

void alias_targets_free(struct alias_targets *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->v[i].text);
	free(t->v);
	t->v = NULL;
	t->n = t->cap = 0;
}

/* ---- parsing a value ---- */

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* "a b"@d -> a b@d; <x> -> x.  s is trimmed and not empty. */
static char *address_internal(const char *s, size_t len)
{
	struct buf b = BUF_INIT;

	if (len >= 2 && s[0] == '<' && s[len - 1] == '>') {
		s++;
		len -= 2;
	}
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"')
			continue;
		if (s[i] == '\\' && i + 1 < len) {
			buf_putc(&b, s[++i]);
			continue;
		}
		buf_putc(&b, s[i]);
	}
	if (b.len == 0)
		buf_puts(&b, "");
	return buf_steal(&b);
}

/*
 * One element, trimmed: what kind it is.  A wholly quoted element ("|cmd
 * args") loses its quotes first, as aliases(5) asks commands with spaces
 * to be written.
 */
static void add_element(struct alias_targets *t, const char *s, size_t len, bool addresses_only)
{
	while (len > 0 && is_space(*s)) {
		s++;
		len--;
	}
	while (len > 0 && is_space(s[len - 1]))
		len--;
	if (len == 0)
		return;
	if (!addresses_only) {
		const char *u = s;
		size_t ulen = len;

		if (ulen >= 2 && u[0] == '"' && u[ulen - 1] == '"'
		    && memchr(u + 1, '"', ulen - 2) == NULL) {
			u++;
			ulen -= 2;
		}
		if (ulen > 0 && u[0] == '|') {
			targets_add(t, ALIAS_COMMAND, xstrndup(u, ulen));
			return;
		}
		if (ulen > 0 && u[0] == '/') {
			targets_add(t, ALIAS_FILE, xstrndup(u, ulen));
			return;
		}
		if (ulen > 9 && strncasecmp(u, ":include:", 9) == 0) {
			const char *p = u + 9;
			size_t plen = ulen - 9;

			while (plen > 0 && is_space(*p)) {
				p++;
				plen--;
			}
			targets_add(t, ALIAS_INCLUDE, xstrndup(p, plen));
			return;
		}
	}
	targets_add(t, ALIAS_ADDRESS, address_internal(s, len));
}

static void split_value(const char *value, struct alias_targets *t, bool addresses_only)
{
	const char *start = value;
	bool quoted = false;

	for (const char *c = value;; c++) {
		if (*c == '"')
			quoted = !quoted;
		else if (*c == '\\' && c[1] != '\0')
			c++;
		else if (*c == '\0' || ((*c == ',' || *c == '\n') && !quoted)) {
			add_element(t, start, (size_t)(c - start), addresses_only);
			if (*c == '\0')
				break;
			start = c + 1;
		}
	}
}

void alias_parse(const char *value, struct alias_targets *t)
{
	split_value(value, t, false);
}

/* ---- virtual expansion ---- */

/* user+ext (internal) -> where the extension starts, or NULL. */
static const char *extension_of(const char *delim, const char *lp)
{
	size_t blen = lookup_keys_base_len(delim, lp);

	return blen < strlen(lp) ? lp + blen : NULL;
}

/*
 * One lookup of a (mail_addr_map()): *res_r gets the addresses of the
 * value, canonicalised.  MAP_NOTFOUND, MAP_FOUND, MAP_FAIL/MAP_CONFIG.
 */
static enum map_status map_one(const struct alias_virtual *av, const char *a,
			       struct alias_list *res)
{
	const char *at = strrchr(a, '@');
	char *lp = at ? xstrndup(a, (size_t)(at - a)) : xstrdup(a);
	const char *domain = at ? at + 1 : NULL;
	const char *ext = extension_of(av->delimiter, lp);
	struct alias_targets t = { NULL, 0, 0 };
	struct lookup_keys ks;
	enum map_status st;
	char *value = NULL;
	size_t which = 0;
	bool stripped = false;
	int local = 0;

	if (domain != NULL) {
		if (av->myorigin != NULL && strcasecmp(domain, av->myorigin) == 0)
			local = 1;
		else if (av->is_local != NULL)
			local = av->is_local(av->ctx, domain);
		if (local < 0) {
			free(lp);
			return MAP_FAIL;
		}
	} else {
		local = 1;
	}
	lookup_keys_virtual(&ks, av->delimiter, lp, domain, local == 1);
	st = lookup_keys_find(av->maps, &ks, &value, &which, NULL);
	if (st == MAP_FOUND && ext != NULL) {
		/* The key without the extension matched: user@domain or user. */
		const char *k = ks.k[which].key;
		size_t blen = (size_t)(ext - lp);

		stripped = k[0] != '@' && strncasecmp(k, lp, blen) == 0
			   && (k[blen] == '\0' || k[blen] == '@');
	}
	lookup_keys_free(&ks);
	if (st != MAP_FOUND) {
		free(lp);
		return st;
	}
	if (value[0] == '@') {
		/* "@other": the user part (without an unmatched extension) @other */
		size_t ulen = stripped ? (size_t)(ext - lp) : strlen(lp);
		char *v = xasprintf("%.*s%s", (int)ulen, lp, value);

		free(value);
		value = v;
	}
	split_value(value, &t, true);
	for (size_t i = 0; i < t.n; i++) {
		const char *r = t.v[i].text;
		const char *rat = strrchr(r, '@');
		struct buf b = BUF_INIT;

		if (*r == '\0')
			continue;
		if (rat == NULL) {
			buf_puts(&b, r);
			if (stripped && av->propagate)
				buf_puts(&b, ext);
			if (av->myorigin != NULL)
				buf_printf(&b, "@%s", av->myorigin);
		} else {
			buf_append(&b, r, (size_t)(rat - r));
			if (stripped && av->propagate)
				buf_puts(&b, ext);
			buf_puts(&b, rat);
		}
		alias_list_add(res, buf_str(&b));
		buf_free(&b);
	}
	alias_targets_free(&t);
	free(value);
	free(lp);
	if (res->n == 0)
		return MAP_FAIL;	/* Postfix: "returns non-address result", try again */
	return MAP_FOUND;
}

enum alias_status alias_virtual_expand(const struct alias_virtual *av, const char *addr,
				       struct alias_list *out, bool *matched_r, char **why_r)
{
	struct alias_list fixed = { NULL, 0, 0 };	/* addresses that expanded into themselves */
	enum alias_status rc = ALIAS_OK;
	const char *title = "virtual_alias_maps";

	*matched_r = false;
	*why_r = NULL;
	alias_list_add(out, addr);
	if (maplist_empty(av->maps))
		return ALIAS_OK;
	for (size_t arg = 0; arg < out->n; arg++) {
		if ((long)out->n > av->expansion_limit) {
			*why_r = xasprintf("unreasonable %s map expansion size for %s -- message not"
					   " accepted, try again later", title, addr);
			rc = ALIAS_LIMIT;
			goto out;
		}
		for (long count = 0;; count++) {
			struct alias_list res = { NULL, 0, 0 };
			enum map_status st;
			char *lhs;

			if (alias_list_has(&fixed, out->v[arg]))
				break;
			if (count >= av->recursion_limit) {
				*why_r = xasprintf("unreasonable %s map nesting for %s -- message not"
						   " accepted, try again later", title, addr);
				rc = ALIAS_LIMIT;
				goto out;
			}
			st = map_one(av, out->v[arg], &res);
			if (st == MAP_NOTFOUND) {
				alias_list_free(&res);
				break;
			}
			if (st != MAP_FOUND) {
				alias_list_free(&res);
				rc = ALIAS_FAIL;
				goto out;
			}
			*matched_r = true;
			lhs = out->v[arg];
			for (size_t i = 0; i < res.n; i++) {
				if ((long)strlen(res.v[i]) > av->addrlen_limit) {
					*why_r = xasprintf("unreasonable %s result %.300s... -- message"
							   " not accepted, try again later", title,
							   res.v[i]);
					if (i > 0)
						free(lhs);
					else
						out->v[arg] = lhs;
					alias_list_free(&res);
					rc = ALIAS_LIMIT;
					goto out;
				}
				if (i == 0)
					out->v[arg] = xstrdup(res.v[0]);
				else
					alias_list_add(out, res.v[i]);
				/* Allow an address to expand into itself once. */
				if (strcasecmp(lhs, res.v[i]) == 0 && !alias_list_has(&fixed, lhs))
					alias_list_add(&fixed, lhs);
			}
			free(lhs);
			alias_list_free(&res);
		}
	}
out:
	alias_list_free(&fixed);
	if (rc != ALIAS_OK)
		alias_list_free(out);
	return rc;
}

/* ---- include files ---- */

int alias_include_read(const char *path, char **text_r, char **why_r)
{
	struct buf b = BUF_INIT;
	struct stat st;
	char line[4096];
	FILE *f;

	*text_r = NULL;
	if (path[0] != '/') {
		*why_r = xasprintf(":include:%s uses a relative path", path);
		return -1;
	}
	if ((f = fopen(path, "re")) == NULL) {
		*why_r = xasprintf("cannot open include file %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > ALIAS_INCLUDE_MAX) {
		*why_r = xasprintf("include file %s: not a regular file of at most %d bytes", path,
				   ALIAS_INCLUDE_MAX);
		fclose(f);
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		const char *s = line;

		while (is_space(*s))
			s++;
		if (*s == '#')
			continue;
		buf_puts(&b, line);
		if (b.len > ALIAS_INCLUDE_MAX)
			break;
	}
	fclose(f);
	if (b.len > ALIAS_INCLUDE_MAX) {
		buf_free(&b);
		*why_r = xasprintf("include file %s is bigger than %d bytes", path, ALIAS_INCLUDE_MAX);
		return -1;
	}
	if (b.len == 0)
		buf_puts(&b, "");
	*text_r = buf_steal(&b);
	return 0;
}

/* ---- text tables, for check ---- */

char *alias_source_file(const char *spec)
{
	static const char *const types[] = { "hash:", "btree:", "cdb:", "lmdb:", "dbm:" };
	struct stat st;

	if (strncmp(spec, "proxy:", 6) == 0)
		spec += 6;
	if (strncmp(spec, "texthash:", 9) == 0)
		return xstrdup(spec + 9);
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		size_t n = strlen(types[i]);

		if (strncmp(spec, types[i], n) == 0) {
			if (stat(spec + n, &st) == 0 && S_ISREG(st.st_mode))
				return xstrdup(spec + n);
			return NULL;
		}
	}
	return NULL;
}

static void scan_flush(struct buf *entry, int line, alias_entry_fn *fn, void *ctx)
{
	char *s = entry->data;
	size_t klen;
	char *key, *value;

	if (entry->len == 0)
		return;
	while (is_space(*s))
		s++;
	klen = strcspn(s, " \t\r\n");
	key = xstrndup(s, klen);
	if (klen > 0 && key[klen - 1] == ':')
		key[klen - 1] = '\0';
	for (char *c = key; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c - 'A' + 'a');
	value = s + klen;
	while (is_space(*value))
		value++;
	fn(ctx, key, value, line);
	free(key);
	buf_reset(entry);
}

int alias_scan_file(const char *path, alias_entry_fn *fn, void *ctx)
{
	struct buf entry = BUF_INIT;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int lineno = 0, start = 0;
	FILE *f = fopen(path, "re");

	if (f == NULL)
		return -1;
	while ((len = getline(&line, &cap, f)) >= 0) {
		lineno++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (line[0] == '#' || strspn(line, " \t") == (size_t)len) {
			/* a comment or a blank line ends an entry */
			scan_flush(&entry, start, fn, ctx);
			continue;
		}
		if (is_space(line[0]) && entry.len > 0) {
			buf_putc(&entry, ' ');
			buf_puts(&entry, line);
			continue;
		}
		scan_flush(&entry, start, fn, ctx);
		start = lineno;
		buf_puts(&entry, line);
	}
	scan_flush(&entry, start, fn, ctx);
	buf_free(&entry);
	free(line);
	fclose(f);
	return 0;
}
