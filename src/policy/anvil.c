/*
 * anvil: the backend-independent part of the interface (dispatch) and the
 * helpers that build idents.  See anvil.h.
 */
#include "policy/anvil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "policy/anvil_backend.h"
#include "util/buf.h"

void
anvil_free(struct anvil **ap)
{
	if (*ap == NULL)
		return;
	(*ap)->ops->free(*ap);
	*ap = NULL;
}

void
anvil_set_rate_time_unit(struct anvil *a, long rate_time_unit)
{
	a->ops->set_rate_time_unit(a, rate_time_unit);
}

#define ANVIL_REQUEST_FN(fn, op) \
	void fn(struct anvil *a, const char *ident, time_t now, anvil_cb *cb, void *ctx) \
	{ \
		a->ops->request(a, op, ident, now, cb, ctx); \
	}

ANVIL_REQUEST_FN(anvil_connect, ANVIL_OP_CONNECT)
ANVIL_REQUEST_FN(anvil_disconnect, ANVIL_OP_DISCONNECT)
ANVIL_REQUEST_FN(anvil_message, ANVIL_OP_MESSAGE)
ANVIL_REQUEST_FN(anvil_recipient, ANVIL_OP_RECIPIENT)
ANVIL_REQUEST_FN(anvil_newtls, ANVIL_OP_NEWTLS)
ANVIL_REQUEST_FN(anvil_newtls_report, ANVIL_OP_NEWTLS_REPORT)
ANVIL_REQUEST_FN(anvil_auth, ANVIL_OP_AUTH)
ANVIL_REQUEST_FN(anvil_lookup, ANVIL_OP_LOOKUP)

void
anvil_sweep(struct anvil *a, time_t now)
{
	a->ops->sweep(a, now);
}

size_t
anvil_entries(struct anvil *a)
{
	return a->ops->entries != NULL ? a->ops->entries(a) : 0;
}

void
anvil_log_statistics(struct anvil *a, time_t now)
{
	a->ops->log_statistics(a, now);
}

/* Clear every bit of addr (len bytes) after the first prefix bits. */
static void
anvil_mask(unsigned char *addr, size_t len, int prefix)
{
	size_t i;

	for (i = 0; i < len; i++) {
		int keep = prefix - (int)i * 8;

		if (keep >= 8)
			continue;
		addr[i] &= keep <= 0 ? 0 : (unsigned char)(0xff << (8 - keep));
	}
}

int
anvil_client_key(char *out, size_t outlen, const struct sockaddr *sa, int v4_prefix,
		 int v6_prefix)
{
	unsigned char addr[16];
	char text[INET6_ADDRSTRLEN];
	int family, prefix, full, n;

	if (outlen > 0)
		out[0] = '\0';
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		memcpy(addr, &sin->sin_addr, 4);
		family = AF_INET;
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			memcpy(addr, sin6->sin6_addr.s6_addr + 12, 4);
			family = AF_INET;
		} else {
			memcpy(addr, &sin6->sin6_addr, 16);
			family = AF_INET6;
		}
	} else {
		return -1;
	}
	prefix = family == AF_INET ? v4_prefix : v6_prefix;
	full = family == AF_INET ? 32 : 128;
	if (prefix < 0 || prefix > full)
		return -1;
	anvil_mask(addr, (size_t)full / 8, prefix);
	if (inet_ntop(family, addr, text, sizeof(text)) == NULL)
		return -1;
	if (prefix == full)
		n = snprintf(out, outlen, "%s", text);
	else
		n = snprintf(out, outlen, "%s/%d", text, prefix);
	if (n < 0 || (size_t)n >= outlen) {
		if (outlen > 0)
			out[0] = '\0';
		return -1;
	}
	return 0;
}

void
anvil_ident(struct buf *out, const char *service, const char *client_key)
{
	const char *parts[2] = { service, client_key };
	int i;

	for (i = 0; i < 2; i++) {
		const unsigned char *p;

		if (i > 0)
			buf_putc(out, ':');
		for (p = (const unsigned char *)parts[i]; *p != '\0'; p++)
			buf_putc(out, *p >= 0x20 && *p < 0x7f ? (char)*p : '?');
	}
}
