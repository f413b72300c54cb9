/*
 * mapcmd: "mxgate map -q KEY TYPE:NAME...", as postmap(1) -q answers, so an
 * admin checks a table the way they know:
 *
 *   -q KEY   the first table that has KEY prints its value and a newline;
 *            exit 0 when found, 1 when no table has it (nothing printed).
 *   -q -     keys from standard input, one a line: "key<TAB>value" for each
 *            found; exit 0 when any was found, else 1.
 *   -c DIR   accepted as postmap's (the configuration directory); unused.
 *
 * A table that cannot be opened, or that cannot answer, is fatal as in
 * postmap: "mxgate: fatal: <reason>" on standard error, exit 1.  Keys are
 * folded as the daemon folds them (policy/maps.h): this is the same lookup
 * the daemon makes, on the calling thread.
 */
#include "policy/mapcmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log/log.h"
#include "policy/maps.h"
#include "util/xalloc.h"

static void
mapcmd_usage(void)
{
	fprintf(stderr, "usage: mxgate map [-c DIR] -q KEY|- TYPE:NAME...\n");
	exit(2);
}

/* 1: found (value printed), 0: in no table.  A table that fails is fatal. */
static int
mapcmd_query(struct map **maps, size_t n, const char *key, int with_key)
{
	for (size_t i = 0; i < n; i++) {
		char *value = NULL;

		switch (map_lookup(maps[i], key, &value)) {
		case MAP_FOUND:
			if (*value == '\0') {		/* postmap warns, and prints it */
				msg_warn("table %s: key %s: empty string result is not allowed",
					 map_spec(maps[i]), key);
				msg_warn("table %s should return NO RESULT in case of NOT FOUND",
					 map_spec(maps[i]));
			}
			if (with_key)
				printf("%s\t%s\n", key, value);
			else
				printf("%s\n", value);
			free(value);
			return 1;
		case MAP_NOTFOUND:
			break;
		case MAP_FAIL:
		case MAP_CONFIG:
			fflush(stdout);
			msg_fatal("table %s: query error", map_spec(maps[i]));
		}
	}
	return 0;
}

int
map_cmd(int argc, char **argv)
{
	const char *key = NULL;
	struct map **maps;
	size_t n, i;
	int c, found = 0;

	optind = 1;
	while ((c = getopt(argc, argv, "c:q:")) != -1) {
		switch (c) {
		case 'c': break;
		case 'q': key = optarg; break;
		default: mapcmd_usage();
		}
	}
	if (key == NULL || optind >= argc)
		mapcmd_usage();
	n = (size_t)(argc - optind);
	maps = xcalloc(n, sizeof(*maps));
	for (i = 0; i < n; i++) {
		char *err = NULL;

		if ((maps[i] = map_open(argv[optind + (int)i], &err)) == NULL)
			msg_fatal("%s", err);
	}
	if (strcmp(key, "-") != 0) {
		found = mapcmd_query(maps, n, key, 0);
	} else {
		char *line = NULL;
		size_t cap = 0;
		ssize_t len;

		while ((len = getline(&line, &cap, stdin)) >= 0) {
			while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
				line[--len] = '\0';
			found |= mapcmd_query(maps, n, line, 1);
		}
		free(line);
	}
	fflush(stdout);
	for (i = 0; i < n; i++)
		map_free(&maps[i]);
	free(maps);
	return found ? 0 : 1;
}
