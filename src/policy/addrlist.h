/*
 * addrlist: Postfix-style client lists, for mynetworks,
 * smtpd_client_event_limit_exceptions and smtpd_forbid_bare_newline_exclusions.
 *
 * The caller splits the parameter value into items (commas and/or
 * whitespace, after $name expansion); addrlist_create() parses them once.
 * Items, first match wins:
 *
 *   192.0.2.1            an IPv4 address; also "[192.0.2.1]"
 *   192.0.2.0/24         an IPv4 network; also "[192.0.2.0]/24"
 *   [2001:db8::1]        an IPv6 address; brackets optional ("::1")
 *   [2001:db8::]/32      an IPv6 network; brackets optional ("2001:db8::/32")
 *   mx.example.com       the client name, case-insensitive
 *   .example.com         any name below example.com (not example.com itself)
 *   !item                negation: if item matches, the search ends with
 *                        "no match"; "!" may be repeated and toggles
 *
 * A client name pattern without a leading dot ("example.com") matches
 * subdomains too ("mx.example.com") only with ADDRLIST_PARENT_MATCH: set it
 * when Postfix's parent_domain_matches_subdomains lists the parameter.  Its
 * default, in Postfix 3.7 and mxgate, lists mynetworks but NOT
 * smtpd_client_event_limit_exceptions or smtpd_forbid_bare_newline_exclusions.
 *
 * A client address that is IPv4-mapped IPv6 (::ffff:192.0.2.1) is matched as
 * the IPv4 address, against IPv4 items only.
 *
 * Refused, with a message that names the item:
 *   - "/file/name" (pattern files) and "type:table" (e.g. "hash:/etc/x"):
 *     not supported in mxgate;
 *   - a network with host bits set ("127.0.0.1/8"): Postfix 3.7 warns
 *     "non-null host address bits" and fails the lookup at match time;
 *     mxgate refuses it up front;
 *   - a prefix length out of range, an unparsable address, a name with
 *     characters no host name has, a lone "!".
 */
#ifndef MXGATE_POLICY_ADDRLIST_H
#define MXGATE_POLICY_ADDRLIST_H

#include <stddef.h>

struct addrlist;
struct sockaddr;

/* "example.com" matches its subdomains too (parent_domain_matches_subdomains). */
#define ADDRLIST_PARENT_MATCH	(1 << 0)
/* Addresses only, as Postfix matches mynetworks: name items are accepted but
 * never match. */
#define ADDRLIST_ADDR_ONLY	(1 << 1)

/*
 * Parse n items (empty items are skipped; n == 0 gives a list that matches
 * nothing).  Returns the list, or NULL with *err_r set to a message that
 * names the first bad item (caller frees).  addrlist_create() is
 * addrlist_create_flags() with flags 0 (names matched, no parent-domain
 * matching: right for smtpd_client_event_limit_exceptions).
 */
struct addrlist *addrlist_create(char *const *items, size_t n, char **err_r);
struct addrlist *addrlist_create_flags(char *const *items, size_t n, int flags, char **err_r);

/* Free the list and set *lp to NULL.  NULL *lp is fine. */
void addrlist_free(struct addrlist **lp);

/*
 * 1 when the client matches (and the matching item is not negated), else 0.
 * client_name is the verified name or "unknown" (NULL: name items never
 * match); sa is an AF_INET or AF_INET6 address (NULL or another family:
 * address items never match).  Thread-safe: a list never changes after
 * creation.
 */
int addrlist_match(const struct addrlist *l, const char *client_name,
		   const struct sockaddr *sa);

#endif
