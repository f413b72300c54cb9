/*
 * maps: Postfix-style lookup tables.  See maps.h for the contract.
 *
 * Every map is immutable after map_open(): texthash and inline tables are a
 * hash table built at open, a cdb file is mmap'd and each lookup works on its
 * own copy of the small struct cdb (tinycdb keeps the "found" position in
 * it), and passwd lookups use getpwnam_r().  So lookups need no lock.
 */
#include "policy/maps.h"
#include "policy/map_type.h"
#include "policy/map_db.h"
#include "policy/map_lmdb.h"
#include "policy/map_pattern.h"
#include "policy/map_remote.h"
#include "policy/map_socket.h"
#include "policy/map_sql.h"

#include <cdb.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log/log.h"
#include "util/buf.h"
#include "util/xalloc.h"

/* The built-in types; the others are in map_types[] below. */
#define MAPS_BUILTIN "texthash, cdb, unix:passwd.byname, static, inline"

/*
 * The table types in files of their own (policy/map_type.h).  One slot per
 * file, kept apart by blank lines.
 */
static const struct map_type *const map_types[] = {

	/* map_db.c: hash, btree */
	&map_type_hash, &map_type_btree,

	/* map_lmdb.c: lmdb */
	&map_type_lmdb,

	/* map_pattern.c: cidr, regexp, pcre */
	&map_type_cidr, &map_type_regexp, &map_type_pcre,

	/* map_sql.c: sqlite, mysql, pgsql */
	&map_type_sqlite, &map_type_mysql,

	/* map_ldap.c: ldap; map_pgsql.c: pgsql (policy/map_remote.h) */
	&map_type_ldap,
	&map_type_pgsql,

	/* map_socket.c: socketmap, tcp */
	&map_type_socketmap, &map_type_tcp,

	NULL
};

/* Largest getpwnam_r() buffer we grow to before calling it a failure. */
#define PASSWD_BUF_MAX (1024 * 1024)

struct hentry {
	char *key;		/* lowercase */
	char *value;
	struct hentry *next;
};

struct htab {
	struct hentry **slots;
	size_t nslots;		/* power of two */
	size_t count;
};

struct filestamp {
	char *path;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
};

enum map_builtin {
	MAP_TYPE_TEXTHASH,
	MAP_TYPE_CDB,
	MAP_TYPE_PASSWD,	/* unix:passwd.byname */
	MAP_TYPE_STATIC,
	MAP_TYPE_INLINE,
	MAP_TYPE_OTHER,		/* one of map_types[] */
};

struct map {
	char *spec;		/* as given, "proxy:" included */
	enum map_builtin type;
	const struct map_type *ext;	/* MAP_TYPE_OTHER: the type */
	struct map_impl *impl;		/* and its state */
	struct htab tab;	/* texthash, inline */
	struct filestamp stamp;	/* texthash, cdb */
	int cdb_fd;
	struct cdb cdb;
	char *static_value;
	struct map_slots *slots;	/* MAPT_REMOTE: lookups in progress */
};

/* A remote table's cap on concurrent lookups (map_type.h). */
struct map_slots {
	pthread_mutex_t lock;
	pthread_cond_t freed;
	int	inflight;
	time_t	warned;		/* last "all busy" warning */
};

struct maplist {
	struct map **maps;
	size_t n;
	char *title;		/* the parameter, for warnings (maplist_set_title) */
};

/* ---- small helpers ---- */


static char *fold_lower(const char *s)
{
	char *r = xstrdup(s);

	for (char *p = r; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	return r;
}

static int is_space(int c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static uint64_t hash_str(const char *s)
{
	uint64_t h = 14695981039346656037ULL;	/* FNV-1a */

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

static void htab_init(struct htab *t)
{
	t->nslots = 64;
	t->count = 0;
	t->slots = xcalloc(t->nslots, sizeof(*t->slots));
}

static struct hentry *htab_find(const struct htab *t, const char *key)
{
	if (t->nslots == 0)
		return NULL;
	for (struct hentry *e = t->slots[hash_str(key) & (t->nslots - 1)]; e; e = e->next)
		if (strcmp(e->key, key) == 0)
			return e;
	return NULL;
}

static void htab_grow(struct htab *t)
{
	size_t n = t->nslots * 2;
	struct hentry **slots = xcalloc(n, sizeof(*slots));

	for (size_t i = 0; i < t->nslots; i++) {
		struct hentry *e = t->slots[i], *next;

		for (; e; e = next) {
			size_t j = hash_str(e->key) & (n - 1);

			next = e->next;
			e->next = slots[j];
			slots[j] = e;
		}
	}
	free(t->slots);
	t->slots = slots;
	t->nslots = n;
}

/* Takes ownership of key and value.  Returns false (and frees them) on a duplicate. */
static bool htab_add(struct htab *t, char *key, char *value)
{
	struct hentry *e;
	size_t i;

	if (htab_find(t, key)) {
		free(key);
		free(value);
		return false;
	}
	if (t->count >= t->nslots)
		htab_grow(t);
	e = xmalloc(sizeof(*e));
	e->key = key;
	e->value = value;
	i = hash_str(key) & (t->nslots - 1);
	e->next = t->slots[i];
	t->slots[i] = e;
	t->count++;
	return true;
}

static void htab_free(struct htab *t)
{
	for (size_t i = 0; i < t->nslots; i++) {
		struct hentry *e = t->slots[i], *next;

		for (; e; e = next) {
			next = e->next;
			free(e->key);
			free(e->value);
			free(e);
		}
	}
	free(t->slots);
	t->slots = NULL;
	t->nslots = t->count = 0;
}

static void stamp_set(struct filestamp *fs, const char *path, const struct stat *st)
{
	fs->path = xstrdup(path);
	fs->dev = st->st_dev;
	fs->ino = st->st_ino;
	fs->size = st->st_size;
	fs->mtime = st->st_mtim;
}

static bool stamp_changed(const struct filestamp *fs)
{
	struct stat st;

	if (fs->path == NULL)
		return false;
	if (stat(fs->path, &st) < 0)
		return true;
	return st.st_dev != fs->dev || st.st_ino != fs->ino || st.st_size != fs->size
	       || st.st_mtim.tv_sec != fs->mtime.tv_sec || st.st_mtim.tv_nsec != fs->mtime.tv_nsec;
}

/* ---- texthash ---- */

/* One logical line: "key whitespace value". */
static void texthash_entry(struct map *m, const char *path, int lineno, char *line)
{
	char *p = line, *key, *value, *end;

	while (is_space((unsigned char)*p))
		p++;
	key = p;
	while (*p && !is_space((unsigned char)*p))
		p++;
	if (*p)
		*p++ = '\0';
	while (is_space((unsigned char)*p))
		p++;
	value = p;
	end = value + strlen(value);
	while (end > value && is_space((unsigned char)end[-1]))
		*--end = '\0';
	if (*key == '\0' || *value == '\0') {
		msg_warn("%s, line %d: expected format: key whitespace value", path, lineno);
		return;
	}
	if (!htab_add(&m->tab, fold_lower(key), xstrdup(value))) {
		char *e = log_escape_dup(key, 100);

		msg_warn("%s, line %d: duplicate entry: \"%s\"", path, lineno, e);
		free(e);
	}
}

static int texthash_load(struct map *m, const char *path, char **err_r)
{
	struct buf logical = BUF_INIT;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int lineno = 0, start = 0;
	struct stat st;
	FILE *fp;

	fp = fopen(path, "re");
	if (fp == NULL) {
		*err_r = xasprintf("open \"%s\": %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fileno(fp), &st) < 0) {
		*err_r = xasprintf("stat \"%s\": %s", path, strerror(errno));
		fclose(fp);
		return -1;
	}
	stamp_set(&m->stamp, path, &st);
	htab_init(&m->tab);
	while ((len = getline(&line, &cap, fp)) >= 0) {
		const char *q;

		lineno++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		for (q = line; is_space((unsigned char)*q); q++)
			;
		if (*q == '\0' || *q == '#')
			continue;	/* blank or comment: does not end a logical line */
		if (is_space((unsigned char)line[0]) && logical.len > 0) {
			buf_puts(&logical, line);	/* continuation keeps its whitespace */
			continue;
		}
		if (logical.len > 0)
			texthash_entry(m, path, start, logical.data);
		buf_reset(&logical);
		buf_puts(&logical, line);
		start = lineno;
	}
	if (ferror(fp)) {
		*err_r = xasprintf("read \"%s\": %s", path, strerror(errno));
		free(line);
		buf_free(&logical);
		fclose(fp);
		return -1;
	}
	if (logical.len > 0)
		texthash_entry(m, path, start, logical.data);
	free(line);
	buf_free(&logical);
	fclose(fp);
	return 0;
}

/* ---- cdb ---- */

static int cdb_open_file(struct map *m, const char *name, char **err_r)
{
	char *path = xasprintf("%s.cdb", name);
	struct stat st;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		*err_r = xasprintf("open database \"%s\": %s", path, strerror(errno));
		free(path);
		return -1;
	}
	if (fstat(fd, &st) < 0 || cdb_init(&m->cdb, fd) < 0) {
		*err_r = xasprintf("open database \"%s\": %s", path,
				   errno ? strerror(errno) : "not a cdb file");
		close(fd);
		free(path);
		return -1;
	}
	m->cdb_fd = fd;
	stamp_set(&m->stamp, path, &st);
	free(path);
	return 0;
}

static enum map_status cdb_lookup_key(const struct map *m, const char *key, char **value_r)
{
	size_t klen = strlen(key);

	if (klen >= UINT32_MAX)
		return MAP_NOTFOUND;
	/* postmap writes keys without the NUL by default, with it under -N. */
	for (int withnul = 0; withnul <= 1; withnul++) {
		struct cdb c = m->cdb;	/* private copy: cdb_find writes into it */
		const char *data;
		unsigned vlen;
		int rc;

		rc = cdb_find(&c, key, (unsigned)klen + (unsigned)withnul);
		if (rc < 0)
			return MAP_FAIL;
		if (rc == 0)
			continue;
		vlen = cdb_datalen(&c);
		data = cdb_get(&c, vlen, cdb_datapos(&c));
		if (data == NULL)
			return MAP_FAIL;
		if (vlen > 0 && data[vlen - 1] == '\0')
			vlen--;
		if (value_r)
			*value_r = xstrndup(data, vlen);
		return MAP_FOUND;
	}
	return MAP_NOTFOUND;
}

/* ---- unix:passwd.byname ---- */

static enum map_status passwd_lookup(const char *key, char **value_r)
{
	size_t size = 1024;
	long sys = sysconf(_SC_GETPW_R_SIZE_MAX);
	enum map_status st = MAP_FAIL;

	if (sys > 0 && (size_t)sys > size)
		size = (size_t)sys;
	for (;;) {
		struct passwd pw, *res = NULL;
		char *tmp = xmalloc(size);
		int rc = getpwnam_r(key, &pw, tmp, size, &res);

		if (rc == ERANGE && size < PASSWD_BUF_MAX) {
			free(tmp);
			size *= 2;
			continue;
		}
		if (rc == 0 && res != NULL) {
			if (value_r)
				*value_r = xasprintf("%s:%s:%ld:%ld:%s:%s:%s", pw.pw_name,
						     pw.pw_passwd ? pw.pw_passwd : "",
						     (long)pw.pw_uid, (long)pw.pw_gid,
						     pw.pw_gecos ? pw.pw_gecos : "",
						     pw.pw_dir ? pw.pw_dir : "",
						     pw.pw_shell ? pw.pw_shell : "");
			st = MAP_FOUND;
		} else if (rc == 0 || rc == ENOENT || rc == ESRCH || rc == EBADF || rc == EPERM) {
			st = MAP_NOTFOUND;
		} else {
			char *e = log_escape_dup(key, 100);

			msg_warn("unix:passwd.byname: getpwnam_r(\"%s\"): %s", e, strerror(rc));
			free(e);
			st = MAP_FAIL;
		}
		free(tmp);
		return st;
	}
}

/* ---- static and inline ---- */

/* "{ text }" → "text"; anything else unchanged.  NULL on unbalanced braces. */
static char *strip_braces(const char *s)
{
	size_t len = strlen(s);
	const char *b, *e;

	if (len == 0 || s[0] != '{')
		return xstrdup(s);
	if (s[len - 1] != '}')
		return NULL;
	b = s + 1;
	e = s + len - 1;
	while (b < e && is_space((unsigned char)*b))
		b++;
	while (e > b && is_space((unsigned char)e[-1]))
		e--;
	return xstrndup(b, (size_t)(e - b));
}

static int inline_add(struct map *m, const char *elem, size_t len, char **err_r)
{
	char *text = xstrndup(elem, len), *inner, *eq, *k, *v, *end;

	inner = strip_braces(text);
	free(text);
	if (inner == NULL) {
		*err_r = xasprintf("unbalanced braces");
		return -1;
	}
	eq = strchr(inner, '=');
	if (eq == NULL) {
		*err_r = xasprintf("missing '=' in \"%s\"", inner);
		free(inner);
		return -1;
	}
	*eq = '\0';
	k = inner;
	end = eq;
	while (end > k && is_space((unsigned char)end[-1]))
		*--end = '\0';
	while (is_space((unsigned char)*k))
		k++;
	v = eq + 1;
	while (is_space((unsigned char)*v))
		v++;
	if (*k == '\0') {
		*err_r = xasprintf("empty key");
		free(inner);
		return -1;
	}
	if (*v == '\0') {
		/* Postfix warns and the key then finds nothing. */
		char *e = log_escape_dup(k, 100);

		msg_warn("table %s: key %s: empty string result is not allowed", m->spec, e);
		free(e);
	} else if (!htab_add(&m->tab, fold_lower(k), xstrdup(v))) {
		char *e = log_escape_dup(k, 100);

		msg_warn("table %s: duplicate key \"%s\" ignored", m->spec, e);
		free(e);
	}
	free(inner);
	return 0;
}

/* inline:{ a=b, { c = d e }, f=g } */
static int inline_parse(struct map *m, const char *name, char **err_r)
{
	size_t len = strlen(name);
	const char *p, *end;
	char *why = NULL;
	int n = 0;

	if (len < 2 || name[0] != '{' || name[len - 1] != '}')
		goto bad;
	htab_init(&m->tab);
	p = name + 1;
	end = name + len - 1;
	while (p < end) {
		const char *start;

		while (p < end && (is_space((unsigned char)*p) || *p == ','))
			p++;
		if (p >= end)
			break;
		start = p;
		if (*p == '{') {
			int depth = 0;

			for (; p < end; p++) {
				if (*p == '{')
					depth++;
				else if (*p == '}' && --depth == 0)
					break;
			}
			if (p >= end) {
				why = xstrdup("unbalanced braces");
				goto bad;
			}
			p++;
		} else {
			while (p < end && !is_space((unsigned char)*p) && *p != ',')
				p++;
		}
		if (inline_add(m, start, (size_t)(p - start), &why) < 0)
			goto bad;
		n++;
	}
	if (n == 0)
		goto bad;
	return 0;
bad:
	*err_r = xasprintf("bad syntax: \"%s\"%s%s; need \"inline:{name=value...}\"", m->spec,
			   why ? ": " : "", why ? why : "");
	free(why);
	return -1;
}

/* ---- the other types ---- */

static const struct map_type *map_type_find(const char *name)
{
	for (size_t i = 0; map_types[i] != NULL; i++)
		if (strcmp(map_types[i]->name, name) == 0)
			return map_types[i];
	return NULL;
}

/* "mxgate supports texthash, cdb, ..." (caller frees). */
static char *maps_supported(void)
{
	struct buf b = BUF_INIT;
	char *s;

	buf_puts(&b, "mxgate supports " MAPS_BUILTIN);
	for (size_t i = 0; map_types[i] != NULL; i++) {
		buf_puts(&b, ", ");
		buf_puts(&b, map_types[i]->name);
	}
	s = xstrdup(b.data);
	buf_free(&b);
	return s;
}

/* ---- remote tables: at most MAP_REMOTE_CONCURRENCY lookups at once ---- */

/* Wait (bounded) for a free slot; false, with a warning a minute at most, when none came. */
static bool slot_take(const struct map *m)
{
	struct map_slots *sl = m->slots;
	struct timespec until;
	bool ok = true;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += MAP_REMOTE_QUEUE_WAIT;
	pthread_mutex_lock(&sl->lock);
	while (sl->inflight >= MAP_REMOTE_CONCURRENCY && ok)
		if (pthread_cond_timedwait(&sl->freed, &sl->lock, &until) == ETIMEDOUT
		    && sl->inflight >= MAP_REMOTE_CONCURRENCY)
			ok = false;
	if (ok) {
		sl->inflight++;
	} else {
		time_t now = time(NULL);

		if (now - sl->warned >= 60) {
			sl->warned = now;
			msg_warn("table %s: %d lookups in progress for more than %ds; "
				 "failing the ones that wait", m->spec,
				 MAP_REMOTE_CONCURRENCY, MAP_REMOTE_QUEUE_WAIT);
		}
	}
	pthread_mutex_unlock(&sl->lock);
	return ok;
}

static void slot_give(const struct map *m)
{
	pthread_mutex_lock(&m->slots->lock);
	m->slots->inflight--;
	pthread_cond_signal(&m->slots->freed);
	pthread_mutex_unlock(&m->slots->lock);
}

/* ---- public ---- */

struct map *map_open(const char *spec, char **err_r)
{
	const char *s = spec, *colon;
	char *type, *why = NULL;
	struct map *m;

	*err_r = NULL;
	while (strncmp(s, "proxy:", 6) == 0)
		s += 6;
	colon = strchr(s, ':');
	if (colon == NULL || colon == s || colon[1] == '\0') {
		*err_r = xasprintf("bad lookup table \"%s\": expecting \"type:name\" form", spec);
		return NULL;
	}
	type = xstrndup(s, (size_t)(colon - s));
	m = xcalloc(1, sizeof(*m));
	m->spec = xstrdup(spec);
	m->cdb_fd = -1;
	if (strcmp(type, "texthash") == 0) {
		m->type = MAP_TYPE_TEXTHASH;
		if (texthash_load(m, colon + 1, &why) < 0)
			goto fail;
	} else if (strcmp(type, "cdb") == 0) {
		m->type = MAP_TYPE_CDB;
		if (cdb_open_file(m, colon + 1, &why) < 0)
			goto fail;
	} else if (strcmp(type, "unix") == 0) {
		m->type = MAP_TYPE_PASSWD;
		if (strcmp(colon + 1, "passwd.byname") != 0) {
			char *sup = maps_supported();

			*err_r = xasprintf("unsupported map \"%s\": %s", spec, sup);
			free(sup);
			free(type);
			map_free(&m);
			return NULL;
		}
	} else if (strcmp(type, "static") == 0) {
		m->type = MAP_TYPE_STATIC;
		m->static_value = strip_braces(colon + 1);
		if (m->static_value == NULL) {
			why = xstrdup("unbalanced braces");
			goto fail;
		}
	} else if (strcmp(type, "inline") == 0) {
		m->type = MAP_TYPE_INLINE;
		if (inline_parse(m, colon + 1, err_r) < 0) {
			free(type);
			map_free(&m);
			return NULL;
		}
	} else if ((m->ext = map_type_find(type)) != NULL) {
		m->type = MAP_TYPE_OTHER;
		if ((m->impl = m->ext->open(colon + 1, &why)) == NULL)
			goto fail;
		if (m->ext->flags & MAPT_REMOTE) {
			pthread_condattr_t ca;

			m->slots = xcalloc(1, sizeof(*m->slots));
			pthread_mutex_init(&m->slots->lock, NULL);
			pthread_condattr_init(&ca);
			pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
			pthread_cond_init(&m->slots->freed, &ca);
			pthread_condattr_destroy(&ca);
		}
		if (m->ext->flags & MAPT_INDEXED) {
			struct stat st;
			const char *path = m->ext->watch(m->impl, &st);

			if (path != NULL)
				stamp_set(&m->stamp, path, &st);
		}
	} else {
		char *sup = maps_supported();

		*err_r = xasprintf("unsupported map type \"%s\" in \"%s\": %s", type, spec, sup);
		free(sup);
		free(type);
		map_free(&m);
		return NULL;
	}
	free(type);
	return m;
fail:
	*err_r = xasprintf("%s: %s", spec, why);
	free(why);
	free(type);
	map_free(&m);
	return NULL;
}

enum map_status map_lookup(const struct map *m, const char *key, char **value_r)
{
	enum map_status st = MAP_NOTFOUND;
	struct hentry *e;
	char *k;

	if (value_r)
		*value_r = NULL;
	if (m->type == MAP_TYPE_STATIC) {
		if (value_r)
			*value_r = xstrdup(m->static_value);
		return MAP_FOUND;
	}
	k = m->type == MAP_TYPE_OTHER && (m->ext->flags & MAPT_NOFOLD) ? xstrdup(key)
								       : fold_lower(key);
	switch (m->type) {
	case MAP_TYPE_OTHER: {
		char *v = NULL;

		if (m->slots != NULL && !slot_take(m)) {
			st = MAP_FAIL;
			break;
		}
		st = m->ext->lookup(m->impl, k, &v);
		if (m->slots != NULL)
			slot_give(m);
		if (st == MAP_FOUND && value_r)
			*value_r = v;
		else
			free(v);
		break;
	}
	case MAP_TYPE_TEXTHASH:
	case MAP_TYPE_INLINE:
		e = htab_find(&m->tab, k);
		if (e) {
			if (value_r)
				*value_r = xstrdup(e->value);
			st = MAP_FOUND;
		}
		break;
	case MAP_TYPE_CDB:
		st = cdb_lookup_key(m, k, value_r);
		break;
	case MAP_TYPE_PASSWD:
		st = passwd_lookup(k, value_r);
		break;
	case MAP_TYPE_STATIC:
		break;
	}
	if (st == MAP_FAIL) {
		char *ek = log_escape_dup(k, 200);

		msg_warn("%s lookup error for \"%s\"", m->spec, ek);
		free(ek);
	}
	free(k);
	return st;
}

/* A key or value of n bytes as a string, without the NUL that postmap -N stores. */
static char *each_str(const void *p, size_t n)
{
	if (n > 0 && ((const char *)p)[n - 1] == '\0')
		n--;
	return xstrndup(p, n);
}

static int cdb_each(const struct map *m, map_entry_fn *fn, void *ctx, char **why_r)
{
	struct cdb c = m->cdb;
	unsigned pos;
	int rc;

	cdb_seqinit(&pos, &c);
	while ((rc = cdb_seqnext(&pos, &c)) > 0) {
		const void *k = cdb_get(&c, cdb_keylen(&c), cdb_keypos(&c));
		const void *v = cdb_get(&c, cdb_datalen(&c), cdb_datapos(&c));
		char *ks, *vs;

		if (k == NULL || v == NULL)
			break;
		ks = each_str(k, cdb_keylen(&c));
		vs = each_str(v, cdb_datalen(&c));
		fn(ctx, ks, vs);
		free(ks);
		free(vs);
	}
	if (rc != 0) {
		*why_r = xasprintf("%s: cannot read the database", m->spec);
		return -1;
	}
	return 0;
}

int map_each(const struct map *m, map_entry_fn *fn, void *ctx, char **why_r)
{
	char *why = NULL;

	*why_r = NULL;
	switch (m->type) {
	case MAP_TYPE_TEXTHASH:
	case MAP_TYPE_INLINE:
		for (size_t i = 0; i < m->tab.nslots; i++)
			for (const struct hentry *e = m->tab.slots[i]; e != NULL; e = e->next)
				fn(ctx, e->key, e->value);
		return 0;
	case MAP_TYPE_CDB:
		return cdb_each(m, fn, ctx, why_r);
	case MAP_TYPE_OTHER: {
		int (*each)(struct map_impl *, map_entry_fn *, void *, char **) = NULL;

		if (m->ext == &map_type_hash || m->ext == &map_type_btree)
			each = map_db_each;
		else if (m->ext == &map_type_lmdb)
			each = map_lmdb_each;
		if (each == NULL)
			break;
		if (each(m->impl, fn, ctx, &why) < 0) {
			*why_r = xasprintf("%s: %s", m->spec, why);
			free(why);
			return -1;
		}
		return 0;
	}
	default:
		break;
	}
	*why_r = xasprintf("%s: a %s table cannot be read whole (texthash, inline, cdb, hash, "
			   "btree and lmdb can)", m->spec, map_type_name(m));
	return -1;
}

void map_free(struct map **mp)
{
	struct map *m = *mp;

	if (m == NULL)
		return;
	htab_free(&m->tab);
	if (m->impl != NULL)
		m->ext->close(m->impl);
	if (m->cdb_fd >= 0) {
		cdb_free(&m->cdb);
		close(m->cdb_fd);
	}
	if (m->slots != NULL) {
		pthread_mutex_destroy(&m->slots->lock);
		pthread_cond_destroy(&m->slots->freed);
		free(m->slots);
	}
	free(m->stamp.path);
	free(m->static_value);
	free(m->spec);
	free(m);
	*mp = NULL;
}

const char *map_spec(const struct map *m)
{
	return m->spec;
}

const char *map_type_name(const struct map *m)
{
	switch (m->type) {
	case MAP_TYPE_TEXTHASH: return "texthash";
	case MAP_TYPE_CDB: return "cdb";
	case MAP_TYPE_PASSWD: return "unix";
	case MAP_TYPE_STATIC: return "static";
	case MAP_TYPE_INLINE: return "inline";
	case MAP_TYPE_OTHER: break;
	}
	return m->ext->name;
}

bool map_is_indexed(const struct map *m)
{
	return m->type == MAP_TYPE_CDB
	       || (m->type == MAP_TYPE_OTHER && (m->ext->flags & MAPT_INDEXED));
}

bool map_in_memory(const struct map *m)
{
	return m->type == MAP_TYPE_TEXTHASH || m->type == MAP_TYPE_INLINE
	       || m->type == MAP_TYPE_STATIC
	       || (m->type == MAP_TYPE_OTHER && (m->ext->flags & MAPT_IN_MEMORY));
}

bool map_is_remote(const struct map *m)
{
	return m->type == MAP_TYPE_OTHER && (m->ext->flags & MAPT_REMOTE);
}

bool map_is_pattern(const struct map *m)
{
	return m->type == MAP_TYPE_OTHER && (m->ext->flags & MAPT_PATTERN);
}

bool map_changed(const struct map *m)
{
	return map_is_indexed(m) && stamp_changed(&m->stamp);
}

struct maplist *maplist_open_report(char *const *specs, size_t n, maps_problem_fn *report,
				    void *ctx)
{
	struct maplist *l = xcalloc(1, sizeof(*l));
	bool failed = false;

	l->maps = xcalloc(n ? n : 1, sizeof(*l->maps));
	for (size_t i = 0; i < n; i++) {
		char *why = NULL;
		struct map *m = map_open(specs[i], &why);

		if (m == NULL) {
			report(ctx, specs[i], why);
			free(why);
			failed = true;
			continue;
		}
		l->maps[l->n++] = m;
	}
	if (failed)
		maplist_free(&l);
	return l;
}

/* maplist_open(): keep the first problem. */
static void maplist_first_problem(void *ctx, const char *spec, const char *why)
{
	char **err_r = ctx;

	(void)spec;
	if (*err_r == NULL)
		*err_r = xstrdup(why);
}

struct maplist *maplist_open(char *const *specs, size_t n, char **err_r)
{
	*err_r = NULL;
	return maplist_open_report(specs, n, maplist_first_problem, err_r);
}

void maplist_set_title(struct maplist *l, const char *title)
{
	if (l == NULL)
		return;
	free(l->title);
	l->title = xstrdup(title);
}

static enum map_status maplist_find(const struct maplist *l, const char *key, bool partial,
				    char **value_r, const struct map **found_in_r)
{
	if (value_r)
		*value_r = NULL;
	if (found_in_r)
		*found_in_r = NULL;
	for (size_t i = 0; l && i < l->n; i++) {
		enum map_status st;
		char *value = NULL;

		if (partial && map_is_pattern(l->maps[i]))
			continue;
		st = map_lookup(l->maps[i], key, &value);
		if (st == MAP_FOUND && *value == '\0') {
			/* Postfix's maps_find(): a configuration error, so the caller tempfails */
			const char *title = l->title ? l->title : map_spec(l->maps[i]);
			char *ek = log_escape_dup(key, 200);

			msg_warn("%s lookup of %s returns an empty string result", title, ek);
			msg_warn("%s should return NO RESULT in case of NOT FOUND", title);
			free(ek);
			free(value);
			return MAP_CONFIG;
		}
		if (value_r)
			*value_r = value;
		else
			free(value);

		if (st == MAP_NOTFOUND)
			continue;
		if (st == MAP_FOUND && found_in_r)
			*found_in_r = l->maps[i];
		return st;
	}
	return MAP_NOTFOUND;
}

enum map_status maplist_lookup(const struct maplist *l, const char *key, char **value_r,
			       const struct map **found_in_r)
{
	return maplist_find(l, key, false, value_r, found_in_r);
}

enum map_status maplist_lookup_partial(const struct maplist *l, const char *key,
				       char **value_r, const struct map **found_in_r)
{
	return maplist_find(l, key, true, value_r, found_in_r);
}

int map_probe(const struct map *m, char **why_r)
{
	char *why = NULL;

	*why_r = NULL;
	if (m->type != MAP_TYPE_OTHER || m->ext->probe == NULL || m->ext->probe(m->impl, &why) == 0)
		return 0;
	*why_r = xasprintf("%s: %s", m->spec, why != NULL ? why : "no answer");
	free(why);
	return -1;
}

bool maplist_has_remote(const struct maplist *l)
{
	for (size_t i = 0; l && i < l->n; i++)
		if (map_is_remote(l->maps[i]))
			return true;
	return false;
}

bool maplist_empty(const struct maplist *l)
{
	return l == NULL || l->n == 0;
}

const char *maplist_changed(const struct maplist *l)
{
	for (size_t i = 0; l && i < l->n; i++)
		if (map_changed(l->maps[i]))
			return map_spec(l->maps[i]);
	return NULL;
}

bool maplist_in_memory(const struct maplist *l)
{
	for (size_t i = 0; l && i < l->n; i++)
		if (!map_in_memory(l->maps[i]))
			return false;
	return true;
}

bool maplist_has_indexed(const struct maplist *l)
{
	for (size_t i = 0; l && i < l->n; i++)
		if (map_is_indexed(l->maps[i]))
			return true;
	return false;
}

size_t maplist_count(const struct maplist *l)
{
	return l ? l->n : 0;
}

const struct map *maplist_get(const struct maplist *l, size_t i)
{
	return l->maps[i];
}

void maplist_free(struct maplist **lp)
{
	struct maplist *l = *lp;

	if (l == NULL)
		return;
	for (size_t i = 0; i < l->n; i++)
		map_free(&l->maps[i]);
	free(l->maps);
	free(l->title);
	free(l);
	*lp = NULL;
}
