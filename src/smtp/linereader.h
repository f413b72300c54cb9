/*
 * linereader: a resumable, length-capped reader of SMTP command lines.
 *
 * Feed it whatever bytes the network delivered; it returns LR_LINE as soon
 * as one complete line sits in lr->line, or LR_AGAIN when it consumed every
 * byte and the line is still incomplete.  It never blocks, never looks
 * ahead, and never keeps more than `limit` bytes of a line, however long the
 * line is (a 100 MB line without LF costs `limit` bytes of memory).
 *
 * Line syntax: a line ends at LF.  A CR immediately before that LF is part
 * of the terminator and is stripped, also when the CR and the LF arrive in
 * different feeds.  A CR anywhere else is an ordinary byte of the line
 * (RFC 5321 2.3.8: "RSET\rQUIT\r\n" is one line, "RSET\rQUIT").  NUL bytes
 * are ordinary bytes too; lr->line.len is authoritative, but lr->line.data is
 * NUL-terminated so a C-string user sees the text up to the first NUL.
 *
 * Length cap (Postfix line_length_limit): only the first `limit` bytes of
 * the line (terminator excluded) are kept; the rest, up to the LF, is read
 * and discarded.  Such a line is delivered with overlong = 1 and full_len =
 * its real length (terminator excluded, saturating at SIZE_MAX), so the
 * caller can log "request longer than <limit>" and answer the truncated line.
 *
 * Usage:
 *	lr_init(&lr, 2048);
 *	while (bytes arrive (data, len)) {
 *		while (len > 0 && lr_feed(&lr, data, len, &used) == LR_LINE) {
 *			handle(lr.line.data, lr.line.len, lr.bare_lf, lr.overlong);
 *			lr_next(&lr);
 *			data += used; len -= used;
 *		}
 *	}
 *	lr_free(&lr);
 */
#ifndef MXGATE_SMTP_LINEREADER_H
#define MXGATE_SMTP_LINEREADER_H

#include <stddef.h>

#include "util/buf.h"

struct linereader {
	/* public, valid after LR_LINE until lr_next() */
	struct buf line;	/* the line without its terminator, at most limit bytes */
	int	bare_lf;	/* the line ended with LF not preceded by CR */
	int	overlong;	/* the line was longer than limit and was truncated */
	size_t	full_len;	/* real line length, terminator excluded */

	/* private */
	size_t	limit;		/* bytes of a line kept */
	int	pending_cr;	/* a CR was seen last; it is either ours or the line's */
	int	complete;	/* a line is ready and lr_next() has not been called */
};

enum lr_status {
	LR_AGAIN,		/* all bytes consumed; the line is not complete yet */
	LR_LINE,		/* a complete line is in lr->line */
};

/* Set up an empty reader keeping at most limit bytes per line (limit >= 1). */
void lr_init(struct linereader *lr, size_t limit);

/* Release the memory.  The reader must be lr_init()ed again before reuse. */
void lr_free(struct linereader *lr);

/*
 * Consume bytes from data[0..len).  *used_r is set to the number of bytes
 * consumed: on LR_LINE the bytes up to and including the LF (the rest of data
 * is untouched and must be fed again after lr_next()); on LR_AGAIN all len
 * bytes.  len may be 0.  Calling lr_feed() while a line is still pending
 * (LR_LINE returned, lr_next() not called) discards that line first.
 */
enum lr_status lr_feed(struct linereader *lr, const char *data, size_t len, size_t *used_r);

/* Forget the current line and its flags; keep the memory for the next one. */
void lr_next(struct linereader *lr);

/* Bytes of the current, still incomplete line seen so far (for timeouts and logs). */
size_t lr_partial_len(const struct linereader *lr);

#endif
