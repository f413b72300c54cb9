/*
 * hostname: the syntax checks Postfix applies to host names and addresses
 * (its valid_hostname(3)), for the HELO and address restrictions.  Pure
 * functions on untrusted bytes; nothing is logged.
 *
 *   hostname_valid()      labels of letters, digits, '_' and '-' (no label
 *                         starting or ending in '-'), 1..63 bytes each,
 *                         separated by single dots, no leading or trailing
 *                         dot, at most 255 bytes, and not all digits and
 *                         dots ("1.2.3.4" is a numeric name, not a name).
 *   hostaddr_ipv4_valid() a dotted quad: four decimal fields 0..255; the
 *                         first 0 only in 0.0.0.0.
 *   hostaddr_ipv6_valid() hex fields separated by ':', at most one "::", at
 *                         most 8 fields, optionally ending in a dotted quad.
 *   hostaddr_valid()      IPv6 when the text has a ':', else IPv4.
 *   mailhost_addr_valid() the inside of an address literal: "IPv6:..." (any
 *                         case) or an IPv4 address.
 *   hostname_utf8_valid() hostname_valid(), or, with utf8 set, a name whose
 *                         non-ASCII labels are valid UTF-8 (Postfix converts
 *                         them to A-labels first; mxgate checks the structure
 *                         only).
 *   hostname_trim_dot()   a copy without one trailing dot unless the name
 *                         ends in "..", as Postfix checks names (caller frees).
 */
#ifndef MXGATE_UTIL_HOSTNAME_H
#define MXGATE_UTIL_HOSTNAME_H

#include <stdbool.h>

bool	hostname_valid(const char *name);
bool	hostname_utf8_valid(const char *name, bool utf8);
bool	hostaddr_ipv4_valid(const char *addr);
bool	hostaddr_ipv6_valid(const char *addr);
bool	hostaddr_valid(const char *addr);
bool	mailhost_addr_valid(const char *addr);
char   *hostname_trim_dot(const char *name);

#endif
