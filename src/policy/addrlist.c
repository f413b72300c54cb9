/*
 * addrlist: Postfix-style client lists.  See addrlist.h.
 */
#include "policy/addrlist.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "util/xalloc.h"

enum addrlist_kind { ITEM_ADDR, ITEM_NAME };

struct addrlist_item {
	enum addrlist_kind kind;
	bool negate;
	int family;			/* ITEM_ADDR: AF_INET or AF_INET6 */
	int prefix;			/* ITEM_ADDR: 32 or 128 for one address */
	unsigned char addr[16];		/* ITEM_ADDR: network, host bits zero */
	char *name;			/* ITEM_NAME: lowercase */
};

struct addrlist {
	int flags;
	size_t n;
	struct addrlist_item items[];
};

/* Is any bit after the first prefix bits of addr (len bytes) set? */
static bool
addrlist_host_bits(const unsigned char *addr, size_t len, int prefix)
{
	size_t i;

	for (i = 0; i < len; i++) {
		int keep = prefix - (int)i * 8;
		unsigned char mask;

		if (keep >= 8)
			continue;
		mask = keep <= 0 ? 0 : (unsigned char)(0xff << (8 - keep));
		if ((addr[i] & (unsigned char)~mask) != 0)
			return true;
	}
	return false;
}

static bool
addrlist_prefix_eq(const unsigned char *a, const unsigned char *b, int prefix)
{
	int whole = prefix / 8, rest = prefix % 8;

	if (memcmp(a, b, (size_t)whole) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((a[whole] ^ b[whole]) & (unsigned char)(0xff << (8 - rest))) == 0;
}

/* "32" within 0..max; anything else (sign, spaces, leading junk) fails. */
static int
addrlist_parse_prefix(const char *s, int max)
{
	int v = 0;

	if (*s == '\0' || strlen(s) > 3)
		return -1;
	for (; *s != '\0'; s++) {
		if (!isdigit((unsigned char)*s))
			return -1;
		v = v * 10 + (*s - '0');
	}
	return v <= max ? v : -1;
}

static bool
addrlist_name_ok(const char *s)
{
	if (*s == '\0' || strcmp(s, ".") == 0)
		return false;
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (!isalnum(c) && c != '-' && c != '.' && c != '_')
			return false;
	}
	return true;
}

/*
 * Parse an address item: "addr", "addr/len", "[addr]", "[addr]/len".  Returns
 * 0, or -1 with *err_r set; item is the whole item, for messages.
 */
static int
addrlist_parse_addr(struct addrlist_item *it, const char *item, const char *text,
		    char **err_r)
{
	char *copy = xstrdup(text), *addr = copy, *slash;
	int max, rc = -1;

	if (*addr == '[') {
		char *close = strchr(addr, ']');

		if (close == NULL || (close[1] != '\0' && close[1] != '/')) {
			*err_r = xasprintf("\"%s\": bad address syntax", item);
			goto out;
		}
		slash = close[1] == '/' ? close + 1 : NULL;
		*close = '\0';
		addr++;
	} else {
		slash = strchr(addr, '/');
	}
	if (slash != NULL)
		*slash++ = '\0';
	if (inet_pton(AF_INET, addr, it->addr) == 1) {
		it->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, addr, it->addr) == 1) {
		it->family = AF_INET6;
		max = 128;
	} else {
		*err_r = xasprintf("\"%s\": bad address syntax", item);
		goto out;
	}
	if (slash == NULL) {
		it->prefix = max;
	} else if ((it->prefix = addrlist_parse_prefix(slash, max)) < 0) {
		*err_r = xasprintf("\"%s\": bad network prefix length \"%s\" (0 to %d)", item,
				   slash, max);
		goto out;
	}
	if (addrlist_host_bits(it->addr, (size_t)max / 8, it->prefix)) {
		char net[INET6_ADDRSTRLEN];
		unsigned char masked[16];
		int i;

		memcpy(masked, it->addr, sizeof(masked));
		for (i = it->prefix; i < max; i++)
			masked[i / 8] &= (unsigned char)~(0x80 >> (i % 8));
		inet_ntop(it->family, masked, net, sizeof(net));
		*err_r = xasprintf("\"%s\": non-null host address bits, perhaps you should use "
				   "\"%s%s%s/%d\" instead", item,
				   *text == '[' ? "[" : "", net, *text == '[' ? "]" : "",
				   it->prefix);
		goto out;
	}
	it->kind = ITEM_ADDR;
	rc = 0;
out:
	free(copy);
	return rc;
}

static int
addrlist_parse_item(struct addrlist_item *it, const char *item, char **err_r)
{
	const char *p = item;

	memset(it, 0, sizeof(*it));
	while (*p == '!') {
		it->negate = !it->negate;
		p++;
	}
	if (*p == '\0') {
		*err_r = xasprintf("\"%s\": negation of nothing", item);
		return -1;
	}
	if (*p == '/') {
		*err_r = xasprintf("\"%s\": pattern files are not supported in mxgate; "
				   "list the addresses and names in main.cf", item);
		return -1;
	}
	if (*p != '[' && strchr(p, ':') != NULL) {
		/* A bare IPv6 address or network, else a "type:table". */
		char *a = xstrndup(p, strcspn(p, "/"));
		bool v6 = inet_pton(AF_INET6, a, it->addr) == 1;

		free(a);
		if (!v6) {
			*err_r = xasprintf("\"%s\": lookup tables are not supported in mxgate; "
					   "list the addresses and names in main.cf", item);
			return -1;
		}
	}
	if (*p == '[' || strchr(p, ':') != NULL)
		return addrlist_parse_addr(it, item, p, err_r);
	if (strchr(p, '/') != NULL || inet_pton(AF_INET, p, it->addr) == 1)
		return addrlist_parse_addr(it, item, p, err_r);
	if (!addrlist_name_ok(p)) {
		*err_r = xasprintf("\"%s\": not an address, a network or a host name", item);
		return -1;
	}
	it->kind = ITEM_NAME;
	it->name = xstrdup(p);
	for (char *c = it->name; *c != '\0'; c++)
		*c = (char)tolower((unsigned char)*c);
	return 0;
}

struct addrlist *
addrlist_create_flags(char *const *items, size_t n, int flags, char **err_r)
{
	struct addrlist *l = xcalloc(1, sizeof(*l) + n * sizeof(l->items[0]));
	size_t i;

	l->flags = flags;
	for (i = 0; i < n; i++) {
		if (items[i] == NULL || items[i][0] == '\0')
			continue;
		if (addrlist_parse_item(&l->items[l->n], items[i], err_r) < 0) {
			addrlist_free(&l);
			return NULL;
		}
		l->n++;
	}
	return l;
}

struct addrlist *
addrlist_create(char *const *items, size_t n, char **err_r)
{
	return addrlist_create_flags(items, n, 0, err_r);
}

void
addrlist_free(struct addrlist **lp)
{
	size_t i;

	if (*lp == NULL)
		return;
	for (i = 0; i < (*lp)->n; i++)
		free((*lp)->items[i].name);
	free(*lp);
	*lp = NULL;
}

static bool
addrlist_match_name(const struct addrlist *l, const char *pat, const char *name)
{
	size_t nlen = strlen(name), plen = strlen(pat);

	if (strcasecmp(name, pat) == 0)
		return true;
	if (nlen <= plen)
		return false;
	if (strcasecmp(name + nlen - plen, pat) != 0)
		return false;
	if (pat[0] == '.')
		return true;
	return (l->flags & ADDRLIST_PARENT_MATCH) && name[nlen - plen - 1] == '.';
}

int
addrlist_match(const struct addrlist *l, const char *client_name, const struct sockaddr *sa)
{
	unsigned char addr[16];
	int family = 0;
	size_t i;

	if (sa != NULL && sa->sa_family == AF_INET) {
		memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		family = AF_INET;
	} else if (sa != NULL && sa->sa_family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a6)) {
			memcpy(addr, a6->s6_addr + 12, 4);
			family = AF_INET;
		} else {
			memcpy(addr, a6->s6_addr, 16);
			family = AF_INET6;
		}
	}
	for (i = 0; i < l->n; i++) {
		const struct addrlist_item *it = &l->items[i];
		bool hit;

		if (it->kind == ITEM_ADDR)
			hit = family != 0 && it->family == family
			      && addrlist_prefix_eq(addr, it->addr, it->prefix);
		else
			hit = client_name != NULL && !(l->flags & ADDRLIST_ADDR_ONLY)
			      && addrlist_match_name(l, it->name, client_name);
		if (hit)
			return it->negate ? 0 : 1;
	}
	return 0;
}
