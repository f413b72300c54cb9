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

static size_t
sat_add(size_t a, size_t b)
{
	return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

/*
 * Store n bytes that count `weight` towards the size (n for content, 2 for a
 * line end stored as one LF).  Past the limit nothing more is stored.
 */
static void
dr_emit(struct datareader *dr, const char *p, size_t n, size_t weight)
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
	memset(dr, 0, sizeof(*dr));
	dr->out = out;
	dr->size_limit = size_limit;
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
				dr_emit(dr, "\n", 1, 2);
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
				dr_emit(dr, "\n", 1, 2);
				dr->prev_crlf = 1;
				dr->state = DR_S_BOL;
				i++;
			} else {
				/* A bare CR is an ordinary byte of the line. */
				dr_emit(dr, "\r", 1, 1);
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
	memset(st, 0, sizeof(*st));
	st->size_limit = size_limit;
}

static void
bdat_store(struct bdat_state *st, struct buf *out, const char *p, size_t n)
{
	if (!st->too_big && n > 0)
		buf_append(out, p, n);
}

void
bdat_append(struct bdat_state *st, struct buf *out, const char *data, size_t len)
{
	size_t i = 0, j;

	if (len == 0)
		return;
	st->size = sat_add(st->size, len);
	if (st->size_limit && st->size > st->size_limit)
		st->too_big = 1;

	if (st->pending_cr) {
		st->pending_cr = 0;
		if (data[0] == '\n') {
			bdat_store(st, out, "\n", 1);
			i = 1;
		} else {
			bdat_store(st, out, "\r", 1);
		}
	}
	while (i < len) {
		/* Copy up to the next CR, then decide what the CR is. */
		for (j = i; j < len && data[j] != '\r'; j++)
			if (data[j] == '\n' && (j == 0 || data[j - 1] != '\r'))
				st->bare_lf_seen = 1;
		bdat_store(st, out, data + i, j - i);
		if (j == len)
			break;
		if (j + 1 == len) {
			st->pending_cr = 1;	/* CR at the end of the chunk: wait */
			break;
		}
		if (data[j + 1] == '\n') {
			bdat_store(st, out, "\n", 1);
			i = j + 2;
		} else {
			bdat_store(st, out, "\r", 1);
			i = j + 1;
		}
	}
}

void
bdat_finish(struct bdat_state *st, struct buf *out)
{
	if (st->pending_cr) {
		st->pending_cr = 0;
		bdat_store(st, out, "\r", 1);
	}
}
