/*
 * dataread: the DATA body reader (RFC 5321 4.5.2 dot-unstuffing) and the
 * BDAT (RFC 3030) chunk converter.  No I/O: the caller feeds bytes.
 *
 * DATA
 * ----
 * Input: the bytes the client sends after the 354 reply.  Output, appended
 * to the caller's struct buf: the message content with LF line endings
 * (Maildir convention), dot-unstuffed.
 *
 * End of data (SMTP smuggling defence, CVE-2023-51764; mxgate's
 * smtpd_forbid_bare_newline = normalize, DESIGN.md):
 *  - Data ends ONLY at <CR><LF>.<CR><LF>: a line that is exactly "." ended
 *    by CRLF, whose preceding line ending was also CRLF.  The CRLF of the
 *    DATA command itself counts as the preceding one, so ".\r\n" right away
 *    ends an empty message.
 *  - A bare LF is accepted as a line end (stored as LF) and sets
 *    bare_lf_seen, but a "." line whose own ending or preceding ending was a
 *    bare LF is dropped: neither stored nor the end of data (Postfix 3.7.11
 *    normalize).  So "\n.\n", "\n.\r\n" and "\r\n.\n" never end data.
 *  - A bare CR is never part of a line ending: "\r.\r\n" and "x\r.\r\n" never
 *    end data.  A CR not followed by LF is content and is stored as a space,
 *    as Postfix 3.7.11's cleanup stores it (cleanup_replace_stray_cr_lf =
 *    yes): the next hop cannot take it for a line end (outbound smuggling).
 *  - Dot-unstuffing: a line starting with "." loses that first dot ("..x" ->
 *    ".x", ".x" -> "x").
 *  - Everything else, NUL and other C0 bytes and lines of any length
 *    included, is stored byte-exact; lines are never split or truncated.
 *    (For BDAT too: a bare LF is a line end, a stray CR a space.)
 *
 * Size (Postfix counts "the sum of line lengths + 2 per line"): size =
 * for every stored line, its length after unstuffing and without terminator,
 * plus 2, whether it ended with CRLF or a bare LF.  Unstuffed dots and
 * dropped "." lines do not count; the final "." line does not count.  With a
 * line_limit (line_length_limit, dr_init_limits()), a line is read as
 * Postfix's smtpd reads it, in records of at most line_limit bytes (the
 * stuffing dot included), and every record counts 2 more: a 5000-byte line
 * is 5006 with the default 2048, a line of exactly 2048 bytes 2052.  When
 * size_limit is not 0 and size would exceed it, nothing more is appended to
 * the buf, too_big is set, and reading goes on to the end of data, so the
 * caller can answer "552 5.3.4 Error: message file too big" in sync.
 *
 * The reader resumes across arbitrary split points (the final 5 bytes may
 * arrive one per feed).  It keeps no pointer into the output buf, so the
 * caller may write out and buf_reset() the buf between feeds (stream to a
 * file).  dr_init() does not empty the buf.
 *
 * BDAT
 * ----
 * bdat_append() converts CRLF to LF, also when the CR ends one chunk and the
 * LF starts the next; a bare CR is stored as a space (as for DATA); everything
 * else (bare LF, NUL, dots) is stored byte-exact: BDAT has no dot-stuffing.  size is Postfix's count, the one it
 * reports in "250 2.0.0 Ok: <N> bytes queued as ..." and checks against
 * message_size_limit: as for DATA, every line (CRLF or a bare LF ends one)
 * counts its length plus 2, in records of at most line_limit bytes, and a
 * last line without its end counts plus 2 too ("ab\r\ncde\r\nfg\r\n." is 16).
 * raw counts the octets received.  bdat_finish() after the LAST chunk stores
 * a trailing lone CR (as a space) and ends a last line that has no end with
 * an LF, counted as a line end, as Postfix stores and counts it.
 */
#ifndef MXGATE_SMTP_DATAREAD_H
#define MXGATE_SMTP_DATAREAD_H

#include <stddef.h>

#include "util/buf.h"

struct datareader {
	/* public, read-only for the caller */
	size_t	size;		/* message size counted as above (saturates at SIZE_MAX) */
	int	too_big;	/* size exceeded size_limit; output stopped */
	int	bare_lf_seen;	/* some line ended with a bare LF (for smtpd_forbid_bare_newline=reject) */
	size_t	dropped_dots;	/* "." lines dropped by the normalize rule */
	size_t	raw_bytes;	/* bytes consumed, terminator included (for "(N bytes)" logs) */

	/* private */
	struct buf *out;
	size_t	size_limit;
	size_t	line_limit;	/* 0: lines are not cut into records */
	size_t	rec_raw;	/* bytes of the current record */
	int	state;
	int	prev_crlf;	/* the previous line ending was CRLF */
	int	done;
};

enum dr_status {
	DR_AGAIN,		/* all bytes consumed; end of data not seen yet */
	DR_DONE,		/* end of data seen (see used_r) */
};

/*
 * Start reading a message into out (not emptied; appended to).  size_limit
 * is message_size_limit; 0 means unlimited.
 */
void dr_init(struct datareader *dr, struct buf *out, size_t size_limit);
/* The same, with Postfix's records of at most line_limit bytes (0: none). */
void dr_init_limits(struct datareader *dr, struct buf *out, size_t size_limit,
		    size_t line_limit);

/*
 * Consume bytes.  On DR_AGAIN all len bytes were consumed (*used_r = len).
 * On DR_DONE *used_r is the number of bytes up to and including the LF of
 * the final ".\r\n"; the bytes after it were NOT consumed: they are the
 * client's next command.  After DR_DONE, further calls return DR_DONE with
 * *used_r = 0.
 */
enum dr_status dr_feed(struct datareader *dr, const char *data, size_t len, size_t *used_r);

struct bdat_state {
	/* public, read-only for the caller */
	size_t	size;		/* Postfix's message size, see above (saturates) */
	size_t	raw;		/* octets received in all chunks (saturates) */
	int	too_big;	/* size exceeded size_limit; output stopped */
	int	bare_lf_seen;	/* an LF not preceded by CR was seen */

	/* private */
	size_t	size_limit;
	size_t	line_limit;	/* 0: lines are not cut into records */
	size_t	rec_raw;	/* bytes of the current record */
	int	in_line;	/* the current line has content */
	int	pending_cr;	/* the previous chunk ended with a CR */
};

/* Start a BDAT message; size_limit 0 means unlimited. */
void bdat_init(struct bdat_state *st, size_t size_limit);
void bdat_init_limits(struct bdat_state *st, size_t size_limit, size_t line_limit);

/* Append one chunk's bytes (any split), CRLF -> LF, to out. */
void bdat_append(struct bdat_state *st, struct buf *out, const char *data, size_t len);

/* After the LAST chunk: store a CR held back at the very end of the data. */
void bdat_finish(struct bdat_state *st, struct buf *out);

#endif
