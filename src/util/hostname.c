/*
 * hostname: Postfix's host name and address syntax rules (hostname.h).
 */
#include "util/hostname.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "util/xalloc.h"

#define LABEL_MAX	63
#define NAME_MAX_LEN	255

bool
hostname_valid(const char *name)
{
	size_t label = 0;
	bool non_numeric = false;
	const char *p;

	if (*name == '\0')
		return false;
	for (p = name; *p; p++) {
		unsigned char ch = (unsigned char)*p;

		if (isalnum(ch) || ch == '_') {
			if (++label > LABEL_MAX)
				return false;
			if (!isdigit(ch))
				non_numeric = true;
		} else if (ch == '.') {
			if (label == 0 || p[1] == '\0')
				return false;
			label = 0;
		} else if (ch == '-') {
			non_numeric = true;
			if (++label == 1 || p[1] == '\0' || p[1] == '.')
				return false;
		} else {
			return false;
		}
	}
	return non_numeric && (size_t)(p - name) <= NAME_MAX_LEN;
}

/* A UTF-8 sequence at p (non-ASCII lead byte): its length, or 0 if malformed. */
static size_t
utf8_seq(const unsigned char *p)
{
	size_t n, i;

	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4;
	else
		return 0;
	for (i = 1; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

bool
hostname_utf8_valid(const char *name, bool utf8)
{
	const unsigned char *p;
	size_t label = 0;

	for (p = (const unsigned char *)name; *p; p++)
		if (*p >= 0x80)
			break;
	if (*p == '\0' || !utf8)
		return hostname_valid(name);
	if (*name == '\0' || strlen(name) > NAME_MAX_LEN)
		return false;
	for (p = (const unsigned char *)name; *p; ) {
		if (*p >= 0x80) {
			size_t n = utf8_seq(p);

			if (n == 0)
				return false;
			p += n;
			label++;
		} else if (isalnum(*p) || *p == '_' || *p == '-') {
			if (*p == '-' && (label == 0 || p[1] == '\0' || p[1] == '.'))
				return false;
			p++;
			label++;
		} else if (*p == '.') {
			if (label == 0 || p[1] == '\0')
				return false;
			label = 0;
			p++;
		} else {
			return false;
		}
	}
	return true;
}

bool
hostaddr_ipv4_valid(const char *addr)
{
	int fields = 0, val = 0;
	bool in_field = false;
	const char *p;

	for (p = addr; *p; p++) {
		if (isdigit((unsigned char)*p)) {
			if (!in_field) {
				in_field = true;
				val = 0;
				fields++;
			}
			val = val * 10 + (*p - '0');
			if (val > 255)
				return false;
		} else if (*p == '.') {
			if (!in_field || p[1] == '\0')
				return false;
			/* 0.0.0.0 is an address, 0.1.2.3 is not */
			if (fields == 1 && val == 0 && addr[strspn(addr, "0.")] != '\0')
				return false;
			in_field = false;
		} else {
			return false;
		}
	}
	return fields == 4;
}

bool
hostaddr_ipv6_valid(const char *addr)
{
	const char *p = addr;
	int fields = 0;
	bool compressed = false;

	if (p[0] == ':') {
		if (p[1] != ':')
			return false;
		compressed = true;
		p += 2;
		if (*p == '\0')
			return true;	/* "::" */
	}
	for (;;) {
		size_t n = strspn(p, "0123456789abcdefABCDEF");

		if (p[n] == '.') {
			/* a trailing dotted quad stands for two fields */
			if (!hostaddr_ipv4_valid(p) || fields > 6 || (fields == 0 && !compressed))
				return false;
			fields += 2;
			break;
		}
		if (n < 1 || n > 4)
			return false;
		fields++;
		p += n;
		if (*p == '\0')
			break;
		if (*p != ':')
			return false;
		p++;
		if (*p == ':') {
			if (compressed)
				return false;
			compressed = true;
			p++;
			if (*p == '\0')
				break;
		} else if (*p == '\0') {
			return false;
		}
		if (fields > 7)
			return false;
	}
	return compressed ? fields <= 7 : fields == 8;
}

bool
hostaddr_valid(const char *addr)
{
	if (*addr == '\0')
		return false;
	return strchr(addr, ':') ? hostaddr_ipv6_valid(addr) : hostaddr_ipv4_valid(addr);
}

bool
mailhost_addr_valid(const char *addr)
{
	if (strncasecmp(addr, "IPv6:", 5) == 0)
		return hostaddr_ipv6_valid(addr + 5);
	return hostaddr_ipv4_valid(addr);
}

char *
hostname_trim_dot(const char *name)
{
	size_t len = strlen(name);

	if (len > 1 && name[len - 1] == '.' && name[len - 2] != '.')
		return xstrndup(name, len - 1);
	return xstrdup(name);
}
