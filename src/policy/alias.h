/*
 * alias: the two alias expansions of Postfix, as pieces that the recipient
 * classifier (policy/recipient.c) drives at RCPT time.  mxgate has no queue,
 * so what Postfix's cleanup(8) and local(8) decide after the 250 is decided
 * here, before it.
 *
 *   alias_virtual_expand()  cleanup(8)'s virtual_alias_maps expansion of one
 *                           recipient (every domain, not only
 *                           virtual_alias_domains): recursive, the result
 *                           is the list of final addresses.
 *   alias_parse()           one aliases(5) right-hand side (an alias_maps
 *                           value or a :include: file) as targets: address,
 *                           |command, /file/name, :include:/file/name.
 *   alias_include_read()    a :include: file, bounded.
 *   alias_source_file(),
 *   alias_scan_file()       for `mxgate check`: the text behind a file table
 *                           and its entries, line by line.
 *
 * Virtual expansion, as cleanup_map1n_internal() and mail_addr_map() of
 * Postfix 3.7:
 *   - each address is looked up with virtual(5)'s keys (lookup_keys_virtual():
 *     user+ext@domain, user@domain, then user+ext and user when the domain
 *     is local (mydestination, or myorigin), then @domain); a value is a list
 *     of addresses separated by commas; an address without '@' gets
 *     "@myorigin"; a value "@other" keeps the user part (without an
 *     unmatched extension): user@other;
 *   - an extension that the matching key did not have is appended to each
 *     result's local part when propagate_unmatched_extensions lists
 *     "virtual" (user+ext@d -> x+ext@e for "user@d x@e");
 *   - each result is expanded again, until nothing matches; an address that
 *     maps to itself (among others or alone) is kept as it is and not looked
 *     up again (Postfix's self-reference rule);
 *   - limits: more than expansion_limit addresses, recursion_limit lookups
 *     for one address, or a result longer than addrlen_limit: ALIAS_LIMIT,
 *     with Postfix's warning text in *why_r ("unreasonable virtual_alias_maps
 *     map nesting for a@d -- message not accepted, try again later"); Postfix
 *     then tempfails the message with "451 4.6.0 Alias expansion error";
 *   - a table that fails: ALIAS_FAIL (the table has logged why).
 *
 * aliases(5) values: targets are separated by commas (not inside "...");
 * each is trimmed, and a target written wholly in double quotes loses them.
 * "|..." is a command, "/..." a file, ":include:..." (any case) an include
 * file, anything else an address (<...> stripped, "local part" unquoted).
 * Newlines count as commas (include files list one target per line).
 *
 * Nothing here keeps state between calls; every function may run on many
 * threads at once.  Lookups block (map_lookup()): a pool thread's job.
 */
#ifndef MXGATE_POLICY_ALIAS_H
#define MXGATE_POLICY_ALIAS_H

#include <stdbool.h>
#include <stddef.h>

#include "policy/maps.h"

/* A list of strings, owned. */
struct alias_list {
	char  **v;
	size_t	n, cap;
};

void	alias_list_add(struct alias_list *l, const char *s);
/* True when s is in l (case-insensitive). */
bool	alias_list_has(const struct alias_list *l, const char *s);
void	alias_list_free(struct alias_list *l);

enum alias_status {
	ALIAS_OK,	/* *out is the expansion (addr itself when nothing matched) */
	ALIAS_FAIL,	/* a table could not answer: 451 4.3.0 Temporary lookup failure */
	ALIAS_LIMIT,	/* a limit was passed: *why_r says which, as Postfix logs it */
};

/*
 * Whether domain is local for the key order (mydestination or myorigin):
 * 1 yes, 0 no, -1 the domain list could not answer.
 */
typedef int alias_local_fn(void *ctx, const char *domain);

struct alias_virtual {
	const struct maplist *maps;	/* virtual_alias_maps; empty: nothing matches */
	const char *delimiter;		/* recipient_delimiter, NULL: none */
	const char *myorigin;		/* for results without '@'; NULL: left bare */
	long	recursion_limit;	/* virtual_alias_recursion_limit */
	long	expansion_limit;	/* virtual_alias_expansion_limit */
	long	addrlen_limit;		/* virtual_alias_address_length_limit */
	bool	propagate;		/* propagate_unmatched_extensions has "virtual" */
	alias_local_fn *is_local;
	void   *ctx;
};

/*
 * Expand addr (internal form, user@domain).  On ALIAS_OK *out (empty on
 * entry) holds the final addresses in Postfix's order, and *matched_r says
 * whether any table matched (false: *out is addr alone).  On the other
 * results *out is empty and *why_r (caller frees; NULL for ALIAS_FAIL) is
 * the warning to log.  The addresses are internal form, as the table wrote
 * them (not case-folded).
 */
enum alias_status alias_virtual_expand(const struct alias_virtual *av, const char *addr,
				       struct alias_list *out, bool *matched_r, char **why_r);

enum alias_kind {
	ALIAS_ADDRESS,		/* an address, internal form; may lack "@domain" */
	ALIAS_COMMAND,		/* "|command": mxgate runs no commands */
	ALIAS_FILE,		/* "/file/name": mxgate writes no files but Maildirs */
	ALIAS_INCLUDE,		/* ":include:/file/name": text is the file name */
};

struct alias_target {
	enum alias_kind kind;
	char   *text;		/* the address, command, file or include file name */
};

struct alias_targets {
	struct alias_target *v;
	size_t	n, cap;
};

/* Append the targets of one aliases(5) value to *t; empty elements are skipped. */
void	alias_parse(const char *value, struct alias_targets *t);
void	alias_targets_free(struct alias_targets *t);

/* The most an include file may hold: a bigger one is a configuration error. */
#define ALIAS_INCLUDE_MAX (1024 * 1024)

/*
 * Read a :include: file (an absolute path) into *text_r (caller frees),
 * '#' comment lines left out.  -1 with *why_r (caller frees) when the path
 * is relative, the file cannot be read or is bigger than ALIAS_INCLUDE_MAX.
 */
int	alias_include_read(const char *path, char **text_r, char **why_r);

/*
 * For `mxgate check`: the text file behind a table spec, or NULL (caller
 * frees): texthash:NAME is NAME; hash:, btree:, cdb:, lmdb: and dbm: NAME
 * give NAME, the source that postmap/postalias built the table from, when it
 * exists (the indexed file itself is not read).
 */
char   *alias_source_file(const char *spec);

/*
 * Call fn for each entry of a text table: key (with a trailing ':' of
 * aliases(5) removed, lowercased), value (continuation lines joined) and the
 * line the entry starts on.  -1 when the file cannot be read.
 */
typedef void alias_entry_fn(void *ctx, const char *key, const char *value, int line);
int	alias_scan_file(const char *path, alias_entry_fn *fn, void *ctx);

#endif
