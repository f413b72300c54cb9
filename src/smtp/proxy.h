/*
 * proxy: the haproxy PROXY protocol header, versions 1 (text) and 2
 * (binary), as Postfix 3.7's smtpd reads it (smtpd_upstream_proxy_protocol
 * = haproxy; global/haproxy_srvr.c).  No I/O: the caller peeks at the bytes
 * that have come and feeds them all each time.
 *
 *   proxy_parse(buf, len, eof, &r, &why)
 *       buf[0..len) the first bytes of the connection (at most
 *       PROXY_HEADER_MAX are looked at, as Postfix peeks at 536).  eof: no
 *       more bytes will come.
 *       PROXY_MORE   the bytes so far are the start of a header: wait.
 *       PROXY_DONE   r->len bytes are the header; r holds the client and
 *                    server endpoints (r->local: a v2 LOCAL command, no
 *                    endpoints: the connection's own are used).
 *       PROXY_ERROR  *why is Postfix's reason ("bad or missing client
 *                    address", "short protocol header", ...).
 *   A header gives the same answer fed whole or one byte at a time.  Bytes
 *   that cannot start a header are refused at once, with the reason Postfix
 *   gives for what has come so far ("short protocol header" below 16 bytes,
 *   "unrecognized protocol header" from 16 on).
 *   Bounds: nothing past buf[len) or PROXY_HEADER_MAX is read; v2 TLVs are
 *   skipped; UNKNOWN (v1) and UNIX/UDP (v2) are refused, as in Postfix.
 *
 *   proxy_escape(b, buf, len): Postfix's escape() of the bytes, for the
 *       "haproxy read: <why>: <bytes>" warning.
 */
#ifndef MXGATE_SMTP_PROXY_H
#define MXGATE_SMTP_PROXY_H

#include <stddef.h>

#include "util/buf.h"

#define PROXY_HEADER_MAX 536

enum proxy_status {
	PROXY_ERROR = -1,
	PROXY_MORE = 0,
	PROXY_DONE = 1,
};

struct proxy_result {
	size_t	len;			/* bytes the header takes */
	int	local;			/* v2 LOCAL: no endpoints */
	char	client_addr[46], client_port[6];	/* numeric, ::ffff: stripped */
	char	server_addr[46], server_port[6];
};

enum proxy_status proxy_parse(const unsigned char *buf, size_t len, int eof,
			      struct proxy_result *r, const char **why_r);
void proxy_escape(struct buf *b, const unsigned char *buf, size_t len);

#endif
