/*
 * linereader: resumable SMTP command-line reader.  Contract in linereader.h.
 */
#include "smtp/linereader.h"

#include <stdint.h>
#include <string.h>

#include "log/log.h"

void
lr_init(struct linereader *lr, size_t limit)
{
	memset(lr, 0, sizeof(*lr));
	if (limit == 0)
		msg_panic("lr_init: zero line limit");
	lr->limit = limit;
	/*
	 * No allocation up front: most command lines are short, and an idle
	 * session should cost little.  The buffer grows with the line and never
	 * past limit (+1 for the NUL, rounded up by buf).
	 */
}

void
lr_free(struct linereader *lr)
{
	buf_free(&lr->line);
	memset(lr, 0, sizeof(*lr));
}

void
lr_next(struct linereader *lr)
{
	buf_reset(&lr->line);
	lr->bare_lf = 0;
	lr->overlong = 0;
	lr->full_len = 0;
	lr->pending_cr = 0;
	lr->complete = 0;
}

size_t
lr_partial_len(const struct linereader *lr)
{
	return lr->complete ? 0 : lr->full_len + (size_t)lr->pending_cr;
}

/*
 * Add line bytes, keeping only the first limit of them: the check happens
 * before the LF arrives, so an endless line never grows the buffer.
 */
static void
lr_add(struct linereader *lr, const char *p, size_t n)
{
	size_t room;

	if (n == 0)
		return;
	lr->full_len = (lr->full_len > SIZE_MAX - n) ? SIZE_MAX : lr->full_len + n;
	room = lr->limit - lr->line.len;
	if (n > room) {
		lr->overlong = 1;
		n = room;
	}
	if (n > 0)
		buf_append(&lr->line, p, n);
}

enum lr_status
lr_feed(struct linereader *lr, const char *data, size_t len, size_t *used_r)
{
	const char *lf;
	size_t seg;

	if (lr->complete)
		lr_next(lr);
	*used_r = 0;
	if (len == 0)
		return LR_AGAIN;

	lf = memchr(data, '\n', len);
	seg = lf ? (size_t)(lf - data) : len;	/* bytes before the LF */

	/*
	 * A CR held back from the previous feed belongs to the line unless this
	 * feed starts with the LF that makes it a CRLF.
	 */
	if (lr->pending_cr && seg > 0) {
		lr->pending_cr = 0;
		lr_add(lr, "\r", 1);
	}
	if (lf) {
		if (seg > 0 && data[seg - 1] == '\r') {
			lr_add(lr, data, seg - 1);
			lr->bare_lf = 0;
		} else {
			lr_add(lr, data, seg);
			lr->bare_lf = !lr->pending_cr;
		}
		lr->pending_cr = 0;
		lr->complete = 1;
		*used_r = seg + 1;
		return LR_LINE;
	}
	/* No LF: hold back a final CR, it may be the first half of CRLF. */
	if (seg > 0 && data[seg - 1] == '\r') {
		lr_add(lr, data, seg - 1);
		lr->pending_cr = 1;
	} else {
		lr_add(lr, data, seg);
	}
	*used_r = len;
	return LR_AGAIN;
}
