#include "smtp/reply.h"

#include <stdlib.h>
#include <string.h>

#include "log/log.h"
#include "util/buf.h"

struct reply_row {
	int	code;
	const char *dsn;
	const char *text;
};

static const struct reply_row reply_table[RPL__COUNT] = {
#define REPLY(id, code, dsn, text) [RPL_##id] = { code, dsn, text },
#include "smtp/replies.def"
#undef REPLY
};

int
reply_code(enum reply_id id)
{
	return reply_table[id].code;
}

const char *
reply_dsn(enum reply_id id)
{
	return reply_table[id].dsn;
}

/* soft_bounce: 5xx becomes 4xx, and a 5.x.y enhanced code becomes 4.x.y. */
static int
reply_soften(struct buf *out, size_t start, int code)
{
	if (code < 500 || code > 599)
		return code;
	out->data[start] = '4';
	if (out->len > start + 5 && out->data[start + 4] == '5' && out->data[start + 5] == '.')
		out->data[start + 4] = '4';
	return code - 100;
}

int
reply_vformat(struct buf *out, int soft_bounce, enum reply_id id, va_list ap)
{
	const struct reply_row *r = &reply_table[id];
	size_t start = out->len;
	int code = r->code;
	char num[4];

	if (code == 0)
		code = va_arg(ap, int);
	/* Every reply goes through here: no printf for what needs none. */
	if (code >= 100 && code <= 999) {
		num[0] = (char)('0' + code / 100);
		num[1] = (char)('0' + code / 10 % 10);
		num[2] = (char)('0' + code % 10);
		num[3] = ' ';
		buf_append(out, num, sizeof(num));
	} else {
		buf_printf(out, "%d ", code);
	}
	if (*r->dsn) {
		buf_puts(out, r->dsn);
		buf_putc(out, ' ');
	}
	if (strchr(r->text, '%') == NULL)
		buf_puts(out, r->text);
	else
		buf_vprintf(out, r->text, ap);
	buf_append(out, "\r\n", 2);
	if (soft_bounce)
		code = reply_soften(out, start, code);
	return code;
}

int
reply_format(struct buf *out, int soft_bounce, enum reply_id id, ...)
{
	va_list ap;
	int code;

	va_start(ap, id);
	code = reply_vformat(out, soft_bounce, id, ap);
	va_end(ap);
	return code;
}

char *
reply_string(enum reply_id id, ...)
{
	struct buf b = BUF_INIT;
	va_list ap;

	va_start(ap, id);
	reply_vformat(&b, 0, id, ap);
	va_end(ap);
	buf_truncate(&b, b.len - 2);	/* the CRLF */
	return buf_steal(&b);
}

int
reply_raw(struct buf *out, int soft_bounce, const char *text)
{
	int code = atoi(text);

	if (code < 200 || code > 599)
		msg_panic("reply_raw: bad reply \"%s\"", text);
	/*
	 * A multi-line text (a milter's "550-5.7.1 a\r\n550 5.7.1 b") is one
	 * reply, as Postfix's smtpd_chat_reply() sends it: each line but the
	 * last gets '-' after its code, a trailing CR LF goes, soft_bounce
	 * applies to each line.  Deliberate difference: a lone CR or LF inside
	 * a line becomes '?' (Postfix sends it as is): no text can end the
	 * reply early and have the client read the rest as the next one.
	 */
	for (const char *cp = text;;) {
		const char *next = strstr(cp, "\r\n");
		size_t line = out->len, n = next ? (size_t)(next - cp) : strlen(cp);
		int last = next == NULL || next[2] == '\0';

		buf_append(out, cp, n);
		for (size_t i = line; i < out->len; i++)
			if (out->data[i] == '\r' || out->data[i] == '\n')
				out->data[i] = '?';
		if (!last && n > 3)
			out->data[line + 3] = '-';
		buf_append(out, "\r\n", 2);
		if (soft_bounce && out->data[line] == '5')
			reply_soften(out, line, 500);
		if (last)
			break;
		cp = next + 2;
	}
	if (soft_bounce && code >= 500)
		code -= 100;
	return code;
}
