/*
 * matchlist: Postfix match lists of names.  See matchlist.h.
 */
#include "policy/matchlist.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy/maps.h"
#include "util/xalloc.h"

struct matchelem {
	bool	negate;		/* "!elem": a match means "not in the list" */
	char   *name;		/* NULL: maps entry map */
	size_t	map;
};

struct matchlist {
	struct matchelem *elems;	/* in list order: the first that matches decides */
	size_t	n, cap;
	struct maplist *maps;		/* the type:table elements, in order */
};

struct build {
	struct matchlist *ml;
	matchlist_problem_fn *fn;
	void   *ctx;
	char  **specs;
	size_t	nspecs, cap;
};

static void add_items(struct build *b, const char *text, bool negate, int depth);

static void problem(struct build *b, const char *item, const char *fmt, const char *arg)
{
	char *why = xasprintf(fmt, arg, errno == 0 ? "" : strerror(errno));

	b->fn(b->ctx, item, why);
	free(why);
}

static void add_elem(struct matchlist *ml, bool negate, char *name, size_t map)
{
	if (ml->n == ml->cap) {
		ml->cap = ml->cap ? 2 * ml->cap : 8;
		ml->elems = xrealloc(ml->elems, ml->cap * sizeof(*ml->elems));
	}
	ml->elems[ml->n].negate = negate;
	ml->elems[ml->n].name = name;
	ml->elems[ml->n].map = map;
	ml->n++;
}

/* "/file/name": its elements, as if written in place (comment lines skipped). */
static void add_file(struct build *b, const char *path, bool negate, int depth)
{
	char *line = NULL;
	size_t cap = 0;
	FILE *fp;

	if (depth >= MATCHLIST_FILE_DEPTH) {
		char *why = xasprintf("\"%s\": files nested more than %d deep", path,
				      MATCHLIST_FILE_DEPTH);

		b->fn(b->ctx, path, why);
		free(why);
		return;
	}
	if ((fp = fopen(path, "re")) == NULL) {
		problem(b, path, "open file \"%s\": %s", path);
		return;
	}
	while (getline(&line, &cap, fp) >= 0) {
		const char *q = line + strspn(line, " \t");

		if (*q != '#')
			add_items(b, line, negate, depth + 1);
	}
	if (ferror(fp))
		problem(b, path, "read file \"%s\": %s", path);
	free(line);
	fclose(fp);
}

static void add_item(struct build *b, const char *it, bool negate, int depth)
{
	while (*it == '!') {
		negate = !negate;
		it++;
	}
	if (*it == '\0') {
		b->fn(b->ctx, "!", "no domain or table after '!'");
	} else if (*it == '/') {
		add_file(b, it, negate, depth);
	} else if (strchr(it, ':') != NULL) {
		if (b->nspecs == b->cap) {
			b->cap = b->cap ? 2 * b->cap : 4;
			b->specs = xrealloc(b->specs, b->cap * sizeof(*b->specs));
		}
		add_elem(b->ml, negate, NULL, b->nspecs);
		b->specs[b->nspecs++] = xstrdup(it);
	} else {
		add_elem(b->ml, negate, xstrdup(it), 0);
	}
}

/* Elements separated by blanks and commas. */
static void add_items(struct build *b, const char *text, bool negate, int depth)
{
	const char *p = text;

	for (;;) {
		size_t n;
		char *it;

		p += strspn(p, " \t\r\n,");
		if ((n = strcspn(p, " \t\r\n,")) == 0)
			break;
		it = xstrndup(p, n);
		add_item(b, it, negate, depth);
		free(it);
		p += n;
	}
}

/* maps_problem_fn: a table element that does not open. */
static void map_problem(void *ctx, const char *spec, const char *why)
{
	struct build *b = ctx;

	b->fn(b->ctx, spec, why);
}

static struct matchlist *finish(struct build *b)
{
	b->ml->maps = maplist_open_report(b->specs, b->nspecs, map_problem, b);
	for (size_t i = 0; i < b->nspecs; i++)
		free(b->specs[i]);
	free(b->specs);
	return b->ml;
}

struct matchlist *matchlist_open(char *const *items, size_t n, matchlist_problem_fn *fn,
				 void *ctx)
{
	struct build b = { .ml = xcalloc(1, sizeof(struct matchlist)), .fn = fn, .ctx = ctx };

	for (size_t i = 0; i < n; i++)
		if (items[i][0] != '\0')
			add_item(&b, items[i], false, 0);
	return finish(&b);
}

struct matchlist *matchlist_open_text(const char *text, matchlist_problem_fn *fn, void *ctx)
{
	struct build b = { .ml = xcalloc(1, sizeof(struct matchlist)), .fn = fn, .ctx = ctx };

	add_items(&b, text, false, 0);
	return finish(&b);
}

void matchlist_free(struct matchlist **mlp)
{
	struct matchlist *ml = *mlp;

	*mlp = NULL;
	if (ml == NULL)
		return;
	for (size_t i = 0; i < ml->n; i++)
		free(ml->elems[i].name);
	free(ml->elems);
	maplist_free(&ml->maps);
	free(ml);
}

enum matchlist_result matchlist_match(const struct matchlist *ml, const char *name,
				      bool try_only)
{
	for (size_t i = 0; i < ml->n; i++) {
		const struct matchelem *e = &ml->elems[i];
		bool hit;

		if (e->name != NULL) {
			hit = strcasecmp(e->name, name) == 0;
		} else {
			const struct map *m = maplist_get(ml->maps, e->map);

			if (try_only && !map_in_memory(m))
				return ML_WOULD_BLOCK;
			switch (map_lookup(m, name, NULL)) {
			case MAP_FAIL:
			case MAP_CONFIG:
				return ML_FAIL;
			case MAP_FOUND:
				hit = true;
				break;
			default:
				hit = false;
				break;
			}
		}
		if (hit)
			return e->negate ? ML_NOMATCH : ML_MATCH;
	}
	return ML_NOMATCH;
}

bool matchlist_empty(const struct matchlist *ml)
{
	return ml->n == 0;
}

const struct maplist *matchlist_maps(const struct matchlist *ml)
{
	return ml->maps;
}
