/*
 * attrlist: Postfix's "{ name, key = value, ... }" service syntax, as
 * check_policy_service and smtpd_milters take it (Postfix's mystrtokq() and
 * attr_override()): the pieces both parsers share.
 *
 * attrlist_next()   the next item of a comma/space list, a {...} group whole;
 *                   NUL-terminates it in place and advances *cp; NULL at the end.
 * attrlist_split()  one "key=value" or "{ key = value }" item, split in place
 *                   into trimmed key and value; 0, or -1 with *err_r (allocated)
 *                   saying what is wrong, in Postfix's words ("what" names the
 *                   service kind: "policy", "milter").
 * attrlist_trim()   leading and trailing white space removed, in place.
 * attrlist_time()   a Postfix time value (digits, then one of s m h d w, or
 *                   none: seconds); false when it is not one or overflows.
 *
 * THREADS: no state; any thread.
 */
#ifndef MXGATE_UTIL_ATTRLIST_H
#define MXGATE_UTIL_ATTRLIST_H

#include <stdbool.h>

char *attrlist_next(char **cp);
int attrlist_split(char *item, const char *what, char **key_r, char **value_r, char **err_r);
char *attrlist_trim(char *s);
bool attrlist_time(const char *v, long *out);

#endif
