/*
 * attrlist: Postfix's service attribute lists.  See attrlist.h.
 */
#include "util/attrlist.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "util/xalloc.h"

bool
attrlist_time(const char *v, long *out)
{
	char   *end;
	long	n, mul = 1;

	if (!isdigit((unsigned char)*v))
		return false;
	n = strtol(v, &end, 10);
	if (*end != '\0') {
		switch (tolower((unsigned char)*end)) {
		case 's': mul = 1; break;
		case 'm': mul = 60; break;
		case 'h': mul = 3600; break;
		case 'd': mul = 86400; break;
		case 'w': mul = 604800; break;
		default: return false;
		}
		if (end[1] != '\0')
			return false;
	}
	if (n > 0x7fffffffL / mul)
		return false;
	*out = n * mul;
	return true;
}

char *
attrlist_trim(char *s)
{
	char   *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

char *
attrlist_next(char **cp)
{
	char   *s = *cp, *start;
	int	depth = 0;

	s += strspn(s, ", \t\r\n");
	if (*s == '\0') {
		*cp = s;
		return NULL;
	}
	start = s;
	for (; *s; s++) {
		if (*s == '{')
			depth++;
		else if (*s == '}' && depth > 0)
			depth--;
		else if (depth == 0 && strchr(", \t\r\n", *s))
			break;
	}
	if (*s)
		*s++ = '\0';
	*cp = s;
	return start;
}

int
attrlist_split(char *item, const char *what, char **key_r, char **value_r, char **err_r)
{
	char   *eq;

	if (*item == '{') {
		size_t	len = strlen(item);

		if (len < 2 || item[len - 1] != '}') {
			*err_r = xasprintf("%s service syntax error: missing '}' in \"%s\"", what, item);
			return -1;
		}
		item[len - 1] = '\0';
		item++;
	}
	if ((eq = strchr(item, '=')) == NULL) {
		*err_r = xasprintf("malformed option: missing '=' in \"%s\"", attrlist_trim(item));
		return -1;
	}
	*eq = '\0';
	*key_r = attrlist_trim(item);
	*value_r = attrlist_trim(eq + 1);
	return 0;
}
