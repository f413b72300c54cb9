/*
 * scratch: files in a unit test's temporary folder.  See scratch.h.
 */
#include "scratch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/xalloc.h"

char *scratch_path(const char *dir, const char *name)
{
	return xasprintf("%s/%s", dir, name);
}

void scratch_write(const char *dir, const char *name, const char *text)
{
	char *p = scratch_path(dir, name);
	FILE *fp = fopen(p, "w");

	if (fp == NULL || fputs(text, fp) < 0 || fclose(fp) != 0) {
		fprintf(stderr, "scratch_write %s: %s\n", p, strerror(errno));
		abort();
	}
	free(p);
}
