/*
 * dataread: DATA body reader and BDAT converter.  Contract in dataread.h.
 */
#include "smtp/dataread.h"

#include <stdint.h>
#include <string.h>

/* Where in a line the DATA reader is. */
enum {
	DR_S_BOL,		/* at the start of a line */
	DR_S_DOT,		/* the line so far is "." */
	DR_S_DOT_CR,		/* the line so far is ".\r" */
	DR_S_TEXT,		/* inside a line; nothing held back */
	DR_S_CR,		/* inside a line; a CR is held back (CRLF or ordinary byte?) */
};

/*
 * What a CR that ends no line is stored as: a space, as Postfix 3.7.11's
 * cleanup stores it (cleanup_replace_stray_cr_lf = yes).  Left in the
 * message, the next hop might read it as a line end (outbound SMTP
 * smuggling), and signatures would depend on how it does.
 */
#define STRAY_CR	" "

static size_t
sat_add(size_t a, size_t b)
{
	return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

static void dr_emit_plain(struct datareader *dr, const char *p, size_t n, size_t weight);

/*
 * Store n bytes that count `weight` towards the size (n for content, 2 for a
 * line end stored as one LF).  Past the limit nothing more is stored.
 */
static void
dr_emit(struct datareader *dr, const char *p, size_t n, size_t weight)
{
	if (dr->line_limit > 0 && n > 0 && weight == n) {
		/*
		 * Content: Postfix reads a line in records of at most
		 * line_length_limit bytes, and each record counts 2 more.
		 */
		while (n > 0) {
			size_t room;

			if (dr->rec_raw == dr->line_limit) {
				dr->rec_raw = 0;
				dr_emit_plain(dr, NULL, 0, 2);
			}
			room = dr->line_limit - dr->rec_raw;
			if (room > n)
				room = n;
			dr_emit_plain(dr, p, room, room);
			dr->rec_raw += room;
			p += room;
			n -= room;
		}
		return;
	}
	dr_emit_plain(dr, p, n, weight);
}

/* A line end (stored as one LF, counted 2): a full record before it counts 2 more. */
static void
dr_line_end(struct datareader *dr)
{
	if (dr->line_limit > 0 && dr->rec_raw == dr->line_limit)
		dr_emit_plain(dr, NULL, 0, 2);
	dr->rec_raw = 0;
	dr_emit_plain(dr, "\n", 1, 2);
}

static void
dr_emit_plain(struct datareader *dr, const char *p, size_t n, size_t weight)
{
	size_t room;

	/* Cut at the exact byte, so the stored prefix never depends on splits. */
	if (!dr->too_big && dr->size_limit) {
		room = dr->size < dr->size_limit ? dr->size_limit - dr->size : 0;
		if (weight > room) {
			dr->too_big = 1;
			if (weight == n)	/* content: keep what fits */
				buf_append(dr->out, p, room);
			n = 0;
		}
	}
	dr->size = sat_add(dr->size, weight);
	if (!dr->too_big && n > 0)
		buf_append(dr->out, p, n);
}

void
dr_init(struct datareader *dr, struct buf *out, size_t size_limit)
{
	dr_init_limits(dr, out, size_limit, 0);
}

void
dr_init_limits(struct datareader *dr, struct buf *out, size_t size_limit, size_t line_limit)
{
	memset(dr, 0, sizeof(*dr));
	dr->out = out;
	dr->size_limit = size_limit;
	dr->line_limit = line_limit;
	dr->state = DR_S_BOL;
	/* The DATA command's own CRLF precedes the first line. */
	dr->prev_crlf = 1;
}

enum dr_status
dr_feed(struct datareader *dr, const char *data, size_t len, size_t *used_r)
{
	size_t i = 0, j;
	unsigned char c;

	*used_r = 0;
	if (dr->done)
		return DR_DONE;

	while (i < len) {
		c = (unsigned char)data[i];
		switch (dr->state) {
		case DR_S_BOL:
			if (c == '.') {
				dr->state = DR_S_DOT;
				dr->rec_raw = 1;	/* the dot is a byte of the record */
				i++;
			} else {
				dr->state = DR_S_TEXT;
			}
			break;
		case DR_S_DOT:
			if (c == '\r') {
				dr->state = DR_S_DOT_CR;
				i++;
			} else if (c == '\n') {
				/* SMTP smuggling: "." ended by a bare LF is dropped, never the end. */
				dr->bare_lf_seen = 1;
				dr->dropped_dots++;
				dr->prev_crlf = 0;
				dr->rec_raw = 0;
				dr->state = DR_S_BOL;
				i++;
			} else {
				/* RFC 5321 4.5.2: drop the leading dot, keep the rest. */
				dr->state = DR_S_TEXT;
			}
			break;
		case DR_S_DOT_CR:
			if (c == '\n') {
				i++;
				if (dr->prev_crlf) {
					/* <CR><LF>.<CR><LF>: the only end of data. */
					dr->done = 1;
					dr->raw_bytes = sat_add(dr->raw_bytes, i);
					*used_r = i;
					return DR_DONE;
				}
				/* SMTP smuggling: "<LF>.<CR><LF>" is dropped, never the end. */
				dr->dropped_dots++;
				dr->prev_crlf = 1;
				dr->rec_raw = 0;
				dr->state = DR_S_BOL;
			} else {
				/* ".\r" + more: an unstuffed line that starts with a CR byte. */
				dr->state = DR_S_CR;
			}
			break;
		case DR_S_TEXT:
			for (j = i; j < len && data[j] != '\r' && data[j] != '\n'; j++)
				;
			if (j > i)
				dr_emit(dr, data + i, j - i, j - i);
			i = j;
			if (i == len)
				break;
			if (data[i] == '\n') {
				dr_line_end(dr);
				dr->bare_lf_seen = 1;
				dr->prev_crlf = 0;
				dr->state = DR_S_BOL;
			} else {
				dr->state = DR_S_CR;
			}
			i++;
			break;
		case DR_S_CR:
			if (c == '\n') {
				dr_line_end(dr);
				dr->prev_crlf = 1;
				dr->state = DR_S_BOL;
				i++;
			} else {
				/* A bare CR is content, stored as a space (dataread.h). */
				dr_emit(dr, STRAY_CR, 1, 1);
				if (c == '\r') {
					i++;	/* still holding one CR */
				} else {
					dr->state = DR_S_TEXT;
				}
			}
			break;
		}
	}
	dr->raw_bytes = sat_add(dr->raw_bytes, len);
	*used_r = len;
	return DR_AGAIN;
}

void
bdat_init(struct bdat_state *st, size_t size_limit)
{
	bdat_init_limits(st, size_limit, 0);
}

void
bdat_init_limits(struct bdat_state *st, size_t size_limit, size_t line_limit)
{
	memset(st, 0, sizeof(*st));
	st->size_limit = size_limit;
	st->line_limit = line_limit;
}

/* Count weight towards the size; past the limit the message is too big. */
static void
bdat_count(struct bdat_state *st, size_t weight)
{
	st->size = sat_add(st->size, weight);
	if (st->size_limit && st->size > st->size_limit)
		st->too_big = 1;
}

/* n content bytes of the current line, in records of at most line_limit bytes. */
static void
bdat_content(struct bdat_state *st, struct buf *out, const char *p, size_t n)
{
	while (n > 0) {
		size_t room = n;

		if (st->line_limit > 0) {
			if (st->rec_raw == st->line_limit) {
				st->rec_raw = 0;
				bdat_count(st, 2);
			}
			room = st->line_limit - st->rec_raw;
			if (room > n)
				room = n;
		}
		bdat_count(st, room);
		if (!st->too_big)
			buf_append(out, p, room);
		st->rec_raw += room;
		st->in_line = 1;
		p += room;
		n -= room;
	}
}

static void
bdat_line_end(struct bdat_state *st, struct buf *out)
{
	if (st->line_limit > 0 && st->rec_raw == st->line_limit)
		bdat_count(st, 2);
	st->rec_raw = 0;
	st->in_line = 0;
	bdat_count(st, 2);
	if (!st->too_big)
		buf_append(out, "\n", 1);
}

void
bdat_append(struct bdat_state *st, struct buf *out, const char *data, size_t len)
{
	size_t i = 0, j;

	if (len == 0)
		return;
	st->raw = sat_add(st->raw, len);
	if (st->pending_cr) {
		st->pending_cr = 0;
		if (data[0] == '\n') {
			bdat_line_end(st, out);
			i = 1;
		} else {
			bdat_content(st, out, STRAY_CR, 1);
		}
	}
	while (i < len) {
		/* Content up to the next CR or LF, then decide what the CR is. */
		for (j = i; j < len && data[j] != '\r' && data[j] != '\n'; j++)
			;
		bdat_content(st, out, data + i, j - i);
		if (j == len)
			break;
		if (data[j] == '\n') {
			st->bare_lf_seen = 1;
			bdat_line_end(st, out);
			i = j + 1;
		} else if (j + 1 == len) {
			st->pending_cr = 1;	/* CR at the end of the chunk: wait */
			break;
		} else if (data[j + 1] == '\n') {
			bdat_line_end(st, out);
			i = j + 2;
		} else {
			bdat_content(st, out, STRAY_CR, 1);
			i = j + 1;
		}
	}
}

void
bdat_finish(struct bdat_state *st, struct buf *out)
{
	if (st->pending_cr) {
		st->pending_cr = 0;
		bdat_content(st, out, STRAY_CR, 1);
	}
	/*
	 * Postfix counts a last line without its end like any other line (a
	 * full last record gets no empty one after it), and its delivery ends
	 * the message with a line end, stored here.
	 */
	if (st->in_line) {
		st->in_line = 0;
		st->rec_raw = 0;
		bdat_count(st, 2);
		if (!st->too_big)
			buf_append(out, "\n", 1);
	}
}
