/*
 * lookup_keys: Postfix's key orders.  See lookup_keys.h.
 */
#include "policy/lookup_keys.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/xalloc.h"

static void add(struct lookup_keys *ks, char *key)
{
	if (ks->n == LOOKUP_KEYS_MAX) {
		free(key);
		return;
	}
	ks->k[ks->n].key = key;
	ks->k[ks->n].partial = ks->n > 0;
	ks->n++;
}

/* Lowercase every key: Postfix's smtpd folds the address it looks up
 * (smtpd_resolve_addr()), so even a case-sensitive pattern sees it folded. */
static void fold(struct lookup_keys *ks)
{
	for (size_t i = 0; i < ks->n; i++)
		for (char *c = ks->k[i].key; *c; c++)
			if (*c >= 'A' && *c <= 'Z')
				*c = (char)(*c - 'A' + 'a');
}

size_t lookup_keys_base_len(const char *delim, const char *lp)
{
	size_t len = strlen(lp), n;

	if (delim == NULL || *delim == '\0' || len == 0 || strcasecmp(lp, "postmaster") == 0
	    || strcasecmp(lp, "mailer-daemon") == 0 || strcasecmp(lp, "double-bounce") == 0)
		return len;
	if (strchr(delim, '-') != NULL
	    && (strncasecmp(lp, "owner-", 6) == 0
		|| (len > 8 && strcasecmp(lp + len - 8, "-request") == 0)))
		return len;
	n = strcspn(lp, delim);
	return n == 0 ? len : n;
}

void lookup_keys_virtual(struct lookup_keys *ks, const char *delim, const char *lp,
			 const char *domain, bool local)
{
	size_t blen = lookup_keys_base_len(delim, lp);
	bool has_ext = blen < strlen(lp);

	ks->n = 0;
	if (domain) {
		add(ks, xasprintf("%s@%s", lp, domain));
		if (has_ext)
			add(ks, xasprintf("%.*s@%s", (int)blen, lp, domain));
	}
	if (local) {
		add(ks, xstrdup(lp));
		if (has_ext)
			add(ks, xstrndup(lp, blen));
	}
	if (domain)
		add(ks, xasprintf("@%s", domain));
	fold(ks);
}

void lookup_keys_local(struct lookup_keys *ks, const char *delim, const char *lp)
{
	lookup_keys_virtual(ks, delim, lp, NULL, true);
}

/* domain, then its parents: "b.c", "c" (parent) or ".b.c", ".c". */
static void add_domain(struct lookup_keys *ks, const char *domain, bool parent)
{
	const char *name = domain, *next;

	while (*name != '\0') {
		add(ks, xstrdup(name));
		if ((next = strchr(name + 1, '.')) == NULL)
			break;
		name = parent ? next + 1 : next;
	}
}

void lookup_keys_access(struct lookup_keys *ks, const char *delim, const char *addr,
			bool parent)
{
	const char *at = strrchr(addr, '@');
	char *lp;
	size_t blen;

	ks->n = 0;
	if (at == NULL) {	/* Postfix warns "no @domain in address" and asks nothing */
		return;
	}
	lp = xstrndup(addr, (size_t)(at - addr));
	blen = lookup_keys_base_len(delim, lp);
	add(ks, xstrdup(addr));
	if (blen < strlen(lp))
		add(ks, xasprintf("%.*s%s", (int)blen, lp, at));
	if (at[1] != '\0')
		add_domain(ks, at + 1, parent);
	add(ks, xasprintf("%s@", lp));
	if (blen < strlen(lp))
		add(ks, xasprintf("%.*s@", (int)blen, lp));
	free(lp);
	fold(ks);
}

/* Postfix's valid_hostaddr(): an IPv4 or IPv6 address, no parent lookups. */
static bool is_address(const char *s)
{
	return strspn(s, "0123456789.") == strlen(s) || strchr(s, ':') != NULL;
}

void lookup_keys_client(struct lookup_keys *ks, const char *hostname, const char *addr,
			bool parent)
{
	char *a;
	char delim;

	ks->n = 0;
	if (hostname != NULL && *hostname != '\0') {
		if (is_address(hostname) || strcmp(hostname, "unknown") == 0)
			add(ks, xstrdup(hostname));
		else
			add_domain(ks, hostname, parent);
	}
	if (addr == NULL || *addr == '\0')
		return;
	/* the address is a "full" key again: a cidr table is asked it */
	a = xstrdup(addr);
	delim = strchr(a, ':') != NULL ? ':' : '.';
	for (bool first = true;; first = false) {
		char *cut;

		add(ks, xstrdup(a));
		if (first && ks->n > 0)
			ks->k[ks->n - 1].partial = false;
		if ((cut = strrchr(a, delim)) == NULL)
			break;
		*cut = '\0';
	}
	free(a);
}

void lookup_keys_free(struct lookup_keys *ks)
{
	for (size_t i = 0; i < ks->n; i++)
		free(ks->k[i].key);
	ks->n = 0;
}

enum map_status lookup_keys_find(const struct maplist *l, const struct lookup_keys *ks,
				 char **value_r, size_t *which_r, const struct map **found_in_r)
{
	if (value_r)
		*value_r = NULL;
	for (size_t i = 0; i < ks->n; i++) {
		const struct lookup_key *k = &ks->k[i];
		enum map_status st;

		if (*k->key == '\0')
			continue;
		st = k->partial ? maplist_lookup_partial(l, k->key, value_r, found_in_r)
				: maplist_lookup(l, k->key, value_r, found_in_r);
		if (st == MAP_NOTFOUND)
			continue;
		if (st == MAP_FOUND && which_r)
			*which_r = i;
		return st;
	}
	return MAP_NOTFOUND;
}
