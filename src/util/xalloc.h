/*
 * xalloc: allocation that either succeeds or ends the process loudly.
 *
 * Every function here returns valid memory or logs "out of memory" through
 * msg_fatal() and exits.  Callers never check for NULL.  Paths where running
 * out is an expected, client-driven condition (a huge request) must bound the
 * request before they allocate instead.
 */
#ifndef MXGATE_UTIL_XALLOC_H
#define MXGATE_UTIL_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* printf into a newly allocated string. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
