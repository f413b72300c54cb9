/*
 * buf: a length-tracked, auto-growing byte string (like Postfix's VSTRING).
 *
 * Anything built from client data goes into a buf, never a fixed array.
 * The data is always NUL-terminated after buf_* calls, so buf.data can be
 * used as a C string when the content has no NUL of its own.
 * Growing may move buf.data: never keep a pointer into it across an append.
 * A zero-initialised struct buf (BUF_INIT) is a valid empty buf.
 */
#ifndef MXGATE_UTIL_BUF_H
#define MXGATE_UTIL_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
	char   *data;	/* NULL until the first append */
	size_t  len;	/* bytes used, excluding the terminating NUL */
	size_t  cap;	/* bytes allocated */
};

#define BUF_INIT { NULL, 0, 0 }

void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *data, size_t len);
void buf_puts(struct buf *b, const char *s);
void buf_putc(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Empty the buf, keeping its memory. */
void buf_reset(struct buf *b);
/* Shorten to len bytes (len <= b->len). */
void buf_truncate(struct buf *b, size_t len);
/* Release the memory; the buf is empty and reusable afterwards. */
void buf_free(struct buf *b);
/* The content as a C string: "" for an empty buf, never NULL. */
const char *buf_str(const struct buf *b);
/* Take the memory out of the buf (caller frees); the buf is left empty. */
char *buf_steal(struct buf *b);

#endif
