/*
 * reply: the SMTP reply table (replies.def) and its formatting.
 *
 * reply_format() appends one complete reply line, "<code> <dsn> <text>\r\n"
 * (or "<code> <text>\r\n" for rows without an enhanced code), to out.
 * A row whose code is 0 takes its code as the first variadic argument (int).
 * soft_bounce turns 5xx into 4xx, enhanced code included, as Postfix does.
 */
#ifndef MXGATE_SMTP_REPLY_H
#define MXGATE_SMTP_REPLY_H

#include <stdarg.h>

struct buf;

enum reply_id {
#define REPLY(id, code, dsn, text) RPL_##id,
#include "smtp/replies.def"
#undef REPLY
	RPL__COUNT
};

/* The numeric code of a row (0 for rows whose code is a parameter). */
int reply_code(enum reply_id id);
/* The enhanced status code of a row ("" when the row has none). */
const char *reply_dsn(enum reply_id id);
/* Append the formatted reply line (with CRLF); returns the code used. */
int reply_format(struct buf *out, int soft_bounce, enum reply_id id, ...);
int reply_vformat(struct buf *out, int soft_bounce, enum reply_id id, va_list ap);
/* The same reply as a new string without CRLF (caller frees), for the recipient policy. */
char *reply_string(enum reply_id id, ...);
/*
 * Append a free-form reply "<text>\r\n" whose text already starts with the
 * code (as the recipient policy produces them), applying soft_bounce.
 * A text of several lines joined by CR LF (a milter's) is one reply, each
 * line but the last with '-' after the code; a lone CR or LF becomes '?'.
 * Returns the code.
 */
int reply_raw(struct buf *out, int soft_bounce, const char *text);

#endif
