/*
 * libFuzzer target for src/policy/map_pattern.c.  Input: byte 0 picks the
 * type (cidr, regexp, pcre), byte 1 seeds the split; the rest up to the first
 * 0xff byte is a table, each later 0xff-separated piece a key.
 *
 * Checks: no crash, no leak, no hang (PCRE2's limits); the logical-line
 * reader yields the same lines whether the table comes whole or in
 * fuzzer-chosen pieces; every lookup says found or not found (never fail),
 * with a value exactly when found; a cidr key that is found is an address.
 */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_split.h"
#include "policy/map_pattern.h"
#include "util/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void collect(void *ctx, char *line, int lineno)
{
	buf_printf(ctx, "%d:%s\n", lineno, line);
}

static char *lines_of(const char *text, size_t len, uint32_t seed, size_t max)
{
	struct buf out = BUF_INIT;
	struct map_lines *ml = map_lines_new("F", collect, &out);
	struct fz_split sp;

	fz_split_init(&sp, seed, max);
	for (size_t off = 0; off < len;) {
		size_t n = fz_split_next(&sp, len - off);

		map_lines_feed(ml, text + off, n);
		off += n;
	}
	map_lines_finish(ml);
	map_lines_free(&ml);
	return buf_steal(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct map_type *types[] = { &map_type_cidr, &map_type_regexp, &map_type_pcre };
	const struct map_type *type;
	const char *text, *end, *p;
	struct map_impl *t;
	char *whole, *split;
	size_t tlen;

	if (size < 2)
		return 0;
	type = types[data[0] % 3];
	text = (const char *)data + 2;
	end = (const char *)data + size;
	p = memchr(text, 0xff, (size_t)(end - text));
	tlen = (size_t)((p ? p : end) - text);

	whole = lines_of(text, tlen, data[1], 0);
	split = lines_of(text, tlen, data[1], 1 + data[1] % 8);
	FZ_CHECK(strcmp(whole, split) == 0);
	free(whole);
	free(split);

	t = map_pattern_open_text(type, "F", text, tlen);
	while (p != NULL && p < end) {
		const char *k = p + 1, *q = memchr(k, 0xff, (size_t)(end - k));
		size_t klen = (size_t)((q ? q : end) - k);
		char *key = malloc(klen + 1), *v = NULL;	/* not strndup: k is not terminated */
		enum map_status st;

		FZ_CHECK(key != NULL);
		memcpy(key, k, klen);
		key[klen] = '\0';
		st = type->lookup(t, key, &v);
		FZ_CHECK(st == MAP_FOUND || st == MAP_NOTFOUND);
		FZ_CHECK((st == MAP_FOUND) == (v != NULL));
		if (st == MAP_FOUND && type == &map_type_cidr) {
			unsigned char a[16];

			FZ_CHECK(inet_pton(strchr(key, ':') ? AF_INET6 : AF_INET, key, a) == 1);
		}
		free(v);
		free(key);
		p = q;
	}
	type->close(t);
	return 0;
}
