/*
 * lookup_keys: the keys Postfix asks a table for, in its order, for each
 * kind of use, and one function that asks them.  Every caller of a table
 * list goes through here, so that the order and the pattern-table rule are
 * written once.
 *
 * The first key of every sequence is the whole string the caller was given
 * (the "full" key); every other key is "partial": pattern tables (regexp,
 * pcre, cidr) are asked only the full key, as Postfix asks them.
 *
 *   lookup_keys_virtual()  virtual(5) and the recipient tables:
 *                          user+ext@domain, user@domain, then (when local)
 *                          user+ext, user, then @domain.
 *   lookup_keys_local()    local(8) alias_maps: user+ext, user.
 *   lookup_keys_access()   access(5) for an address: user+ext@domain,
 *                          user@domain, domain and its parents ("b.c" with
 *                          parent matching, ".b.c" without), user+ext@,
 *                          user@.
 *   lookup_keys_client()   access(5) for a client: the hostname and its
 *                          parents (as above; none for an address literal
 *                          or "unknown"), then the address and its shorter
 *                          prefixes: 1.2.3.4, 1.2.3, 1.2, 1 (IPv6: split
 *                          at ':').
 *
 * The extension is split off with recipient_delimiter by Postfix's rules
 * (lookup_keys_base_len()): postmaster, mailer-daemon and double-bounce are
 * never split, nor owner-x and x-request when '-' is a delimiter, nor a
 * local part that starts with a delimiter.  delim NULL or "": no split.
 *
 * The keys of an address (virtual, local, access) are lowercased, since
 * Postfix's smtpd folds the address it looks up (smtpd_resolve_addr()), so
 * that a case-sensitive pattern sees it folded too; a client's are as given.
 *
 * A key list owns its strings.  Nothing here blocks except lookup_keys_find(),
 * which asks the tables (map_lookup(): not on an event loop unless every
 * table is in memory).
 */
#ifndef MXGATE_POLICY_LOOKUP_KEYS_H
#define MXGATE_POLICY_LOOKUP_KEYS_H

#include <stdbool.h>
#include <stddef.h>

#include "policy/maps.h"

#define LOOKUP_KEYS_MAX 64

struct lookup_key {
	char   *key;
	bool	partial;
};

struct lookup_keys {
	struct lookup_key k[LOOKUP_KEYS_MAX];
	size_t	n;
};

size_t	lookup_keys_base_len(const char *delim, const char *localpart);

/* domain NULL: a bare local part (only the keys without '@'). */
void	lookup_keys_virtual(struct lookup_keys *ks, const char *delim, const char *localpart,
			    const char *domain, bool local);
void	lookup_keys_local(struct lookup_keys *ks, const char *delim, const char *localpart);
/* addr: user@domain (internal form).  parent: parent_domain_matches_subdomains
 * lists the parameter (smtpd_access_maps). */
void	lookup_keys_access(struct lookup_keys *ks, const char *delim, const char *addr,
			   bool parent);
/* hostname may be NULL or "unknown"; addr the printable address. */
void	lookup_keys_client(struct lookup_keys *ks, const char *hostname, const char *addr,
			   bool parent);
void	lookup_keys_free(struct lookup_keys *ks);

/*
 * Ask l each key in order.  MAP_FOUND from the first that is found (*value_r
 * malloc'd, *which_r the index of the key when not NULL), MAP_FAIL as soon as
 * a table fails, MAP_NOTFOUND after the last.  Empty keys are not asked.
 */
enum map_status lookup_keys_find(const struct maplist *l, const struct lookup_keys *ks,
				 char **value_r, size_t *which_r, const struct map **found_in_r);

#endif
