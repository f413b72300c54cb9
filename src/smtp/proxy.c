/*
 * proxy: the PROXY protocol header parser.  See proxy.h.
 *
 * The reasons and the checks follow Postfix 3.7.11's haproxy_srvr.c: v1 is
 * "PROXY TCP4|TCP6 <client> <server> <cport> <sport>\n" (tokens split on
 * space and CR, extra tokens ignored), addresses validated for their family
 * and printed numerically (IPv4-mapped IPv6 as IPv4), ports without a
 * leading zero up to 65535; v2 is the 16-byte header (signature, version 2,
 * PROXY or LOCAL, TCP over IPv4 or IPv6) and its address block.
 */
#include "smtp/proxy.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <netdb.h>

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <strings.h>

static const unsigned char proxy_sig2[12] = "\r\n\r\n\0\r\nQUIT\n";

#define PP2_HEADER_LEN 16

/* Print sa numerically into addr (::ffff:a.b.c.d as a.b.c.d); 0 or -1. */
static int
proxy_print(const struct sockaddr *sa, socklen_t salen, char *addr, size_t alen, char *port,
	    size_t plen)
{
	char	h[NI_MAXHOST], p[NI_MAXSERV];

	if (getnameinfo(sa, salen, h, sizeof(h), p, sizeof(p), NI_NUMERICHOST | NI_NUMERICSERV)
	    != 0 || strlen(h) >= alen || (port != NULL && strlen(p) >= plen))
		return -1;
	if (strncasecmp(h, "::ffff:", 7) == 0 && strchr(h + 7, '.') != NULL)
		memmove(h, h + 7, strlen(h + 7) + 1);
	memcpy(addr, h, strlen(h) + 1);
	if (port != NULL)
		memcpy(port, p, strlen(p) + 1);
	return 0;
}

/* Postfix's valid_ipv4_hostaddr(): four decimal parts of 1-3 digits, each <= 255. */
static int
proxy_valid_v4(const char *s)
{
	int	parts = 0;

	for (;;) {
		int	v = 0, digits = 0;

		while (isdigit((unsigned char)*s) && digits < 4) {
			v = v * 10 + (*s++ - '0');
			digits++;
		}
		if (digits == 0 || digits > 3 || v > 255)
			return 0;
		if (++parts == 4)
			return *s == '\0';
		if (*s++ != '.')
			return 0;
	}
}

static int
proxy_addr(const char *tok, int family, char *out, size_t olen)
{
	struct addrinfo hints, *res = NULL;
	int	ok;

	if (tok == NULL || strlen(tok) >= 46)
		return -1;
	if (family == AF_INET ? !proxy_valid_v4(tok)
	    : (strchr(tok, ':') == NULL || strchr(tok, '%') != NULL))
		return -1;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = family;
	hints.ai_flags = AI_NUMERICHOST;
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(tok, NULL, &hints, &res) != 0 || res == NULL)
		return -1;
	ok = proxy_print(res->ai_addr, res->ai_addrlen, out, olen, NULL, 0);
	freeaddrinfo(res);
	return ok;
}

/* Postfix's valid_hostport(). */
static int
proxy_port(const char *tok, char *out)
{
	size_t	n;

	if (tok == NULL || (tok[0] == '0' && tok[1] != '\0'))
		return -1;
	n = strlen(tok);
	if (n == 0 || n > 5 || strspn(tok, "0123456789") != n || atoi(tok) > 65535)
		return -1;
	memcpy(out, tok, n + 1);
	return 0;
}

/* The next token of *cp, split on space and CR (Postfix's mystrtok(" \r")). */
static char *
proxy_token(char **cp)
{
	char   *s = *cp, *start;

	s += strspn(s, " \r");
	if (*s == '\0')
		return NULL;
	start = s;
	s += strcspn(s, " \r");
	if (*s)
		*s++ = '\0';
	*cp = s;
	return start;
}

static enum proxy_status
proxy_parse_v1(const unsigned char *buf, size_t len, int eof, struct proxy_result *r,
	       const char **why_r)
{
	char	line[PROXY_HEADER_MAX + 1], *cp = line, *tok;
	const unsigned char *nl = memchr(buf, '\n', len);
	int	family;

	if (nl == NULL) {
		if (!eof && len < PROXY_HEADER_MAX)
			return PROXY_MORE;
		*why_r = "missing protocol header terminator";
		return PROXY_ERROR;
	}
	memcpy(line, buf, (size_t)(nl - buf));
	line[nl - buf] = '\0';
	/* a NUL inside the line ends it, as in Postfix's C-string parse */
	tok = proxy_token(&cp);
	if (tok == NULL || strcmp(tok, "PROXY") != 0) {
		*why_r = "bad or missing protocol header";
		return PROXY_ERROR;
	}
	tok = proxy_token(&cp);
	if (tok != NULL && strcasecmp(tok, "TCP6") == 0)
		family = AF_INET6;
	else if (tok != NULL && strcasecmp(tok, "TCP4") == 0)
		family = AF_INET;
	else {
		*why_r = "bad or missing protocol type";
		return PROXY_ERROR;
	}
	if (proxy_addr(proxy_token(&cp), family, r->client_addr, sizeof(r->client_addr)) < 0) {
		*why_r = "bad or missing client address";
		return PROXY_ERROR;
	}
	if (proxy_addr(proxy_token(&cp), family, r->server_addr, sizeof(r->server_addr)) < 0) {
		*why_r = "bad or missing server address";
		return PROXY_ERROR;
	}
	if (proxy_port(proxy_token(&cp), r->client_port) < 0) {
		*why_r = "bad or missing client port";
		return PROXY_ERROR;
	}
	if (proxy_port(proxy_token(&cp), r->server_port) < 0) {
		*why_r = "bad or missing server port";
		return PROXY_ERROR;
	}
	r->len = (size_t)(nl - buf) + 1;
	return PROXY_DONE;
}

static enum proxy_status
proxy_parse_v2(const unsigned char *buf, size_t len, int eof, struct proxy_result *r,
	       const char **why_r)
{
	size_t	body, total;
	struct sockaddr_storage ss;

	if (len < PP2_HEADER_LEN) {
		if (!eof && memcmp(buf, proxy_sig2, len < 12 ? len : 12) == 0)
			return PROXY_MORE;
		*why_r = "short protocol header";
		return PROXY_ERROR;
	}
	if (memcmp(buf, proxy_sig2, 12) != 0) {
		*why_r = "unrecognized protocol header";
		return PROXY_ERROR;
	}
	if ((buf[12] & 0xF0) != 0x20) {
		*why_r = "unrecognized protocol version";
		return PROXY_ERROR;
	}
	body = ((size_t)buf[14] << 8) | buf[15];
	total = PP2_HEADER_LEN + body;
	if (len < total) {
		if (!eof && total <= PROXY_HEADER_MAX)
			return PROXY_MORE;
		*why_r = "short version 2 protocol header";
		return PROXY_ERROR;
	}
	switch (buf[12] & 0x0F) {
	case 0x00:		/* LOCAL: the proxy's own connection */
		r->local = 1;
		r->len = total;
		return PROXY_DONE;
	case 0x01:
		break;
	default:
		*why_r = "bad command in proxy header";
		return PROXY_ERROR;
	}
	memset(&ss, 0, sizeof(ss));
	if (buf[13] == 0x11) {	/* TCP over IPv4 */
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;

		if (body < 12) {
			*why_r = "short address field";
			return PROXY_ERROR;
		}
		in->sin_family = AF_INET;
		memcpy(&in->sin_addr, buf + 16, 4);
		memcpy(&in->sin_port, buf + 24, 2);
		if (proxy_print((struct sockaddr *)in, sizeof(*in), r->client_addr,
				sizeof(r->client_addr), r->client_port, sizeof(r->client_port)) < 0) {
			*why_r = "client network address conversion error";
			return PROXY_ERROR;
		}
		memcpy(&in->sin_addr, buf + 20, 4);
		memcpy(&in->sin_port, buf + 26, 2);
		if (proxy_print((struct sockaddr *)in, sizeof(*in), r->server_addr,
				sizeof(r->server_addr), r->server_port, sizeof(r->server_port)) < 0) {
			*why_r = "server network address conversion error";
			return PROXY_ERROR;
		}
	} else if (buf[13] == 0x21) {	/* TCP over IPv6 */
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		if (body < 36) {
			*why_r = "short address field";
			return PROXY_ERROR;
		}
		in6->sin6_family = AF_INET6;
		memcpy(&in6->sin6_addr, buf + 16, 16);
		memcpy(&in6->sin6_port, buf + 48, 2);
		if (proxy_print((struct sockaddr *)in6, sizeof(*in6), r->client_addr,
				sizeof(r->client_addr), r->client_port, sizeof(r->client_port)) < 0) {
			*why_r = "client network address conversion error";
			return PROXY_ERROR;
		}
		memcpy(&in6->sin6_addr, buf + 32, 16);
		memcpy(&in6->sin6_port, buf + 50, 2);
		if (proxy_print((struct sockaddr *)in6, sizeof(*in6), r->server_addr,
				sizeof(r->server_addr), r->server_port, sizeof(r->server_port)) < 0) {
			*why_r = "server network address conversion error";
			return PROXY_ERROR;
		}
	} else {
		*why_r = "unsupported network protocol";
		return PROXY_ERROR;
	}
	r->len = total;		/* TLVs skipped */
	return PROXY_DONE;
}

enum proxy_status
proxy_parse(const unsigned char *buf, size_t len, int eof, struct proxy_result *r,
	    const char **why_r)
{
	static const char v1[] = "PROXY ";

	memset(r, 0, sizeof(*r));
	*why_r = NULL;
	if (len > PROXY_HEADER_MAX)
		len = PROXY_HEADER_MAX;
	if (len == 0) {
		if (!eof)
			return PROXY_MORE;
		*why_r = "short protocol header";
		return PROXY_ERROR;
	}
	if (len >= 6 && memcmp(buf, v1, 6) == 0)
		return proxy_parse_v1(buf, len, eof, r, why_r);
	if (len < 6 && !eof && memcmp(buf, v1, len) == 0)
		return PROXY_MORE;
	return proxy_parse_v2(buf, len, eof, r, why_r);
}

void
proxy_escape(struct buf *b, const unsigned char *buf, size_t len)
{
	static const char from[] = "\a\b\f\n\r\t\v", to[] = "abfnrtv";

	for (size_t i = 0; i < len; i++) {
		int	ch = buf[i];
		const char *e;

		if (ch < 0x80 && isprint(ch)) {
			if (ch == '\\')
				buf_putc(b, '\\');
			buf_putc(b, (char)ch);
		} else if (ch != 0 && (e = strchr(from, ch)) != NULL) {
			buf_putc(b, '\\');
			buf_putc(b, to[e - from]);
		} else {
			buf_printf(b, "\\%03o", ch);
		}
	}
}
