/*
 * matchlist: a Postfix match list of names (its string_list and, with exact
 * names, its domain_list): mydestination, virtual_mailbox_domains, the
 * "domain" setting of a database table.
 *
 * Each element is a name (compared case-insensitively, as written: no dot
 * is stripped, so "example.com." never matches), a type:table whose keys
 * are names, or "/file/name", which stands for the elements in that file
 * (blank- or comma-separated, '#' comment lines skipped, files naming files
 * up to MATCHLIST_FILE_DEPTH deep).  "!" before an element negates it.  The
 * first element that matches decides; none matching is no match.
 *
 * Problems at open (an unreadable file, a table that does not open, a bare
 * "!") go to the caller's problem function, each one, and opening goes on:
 * the list is usable but the caller normally refuses the configuration.
 *
 * Threads: read-only after open; matchlist_match() from any thread.  A
 * table element may block (it is looked up with map_lookup()), unless the
 * caller asks with try_only, which answers ML_WOULD_BLOCK instead.
 */
#ifndef MXGATE_POLICY_MATCHLIST_H
#define MXGATE_POLICY_MATCHLIST_H

#include <stdbool.h>
#include <stddef.h>

struct matchlist;
struct maplist;

#define MATCHLIST_FILE_DEPTH 8

/* item: the element concerned ("/etc/x", "hash:/etc/y", "!"); why: the text. */
typedef void matchlist_problem_fn(void *ctx, const char *item, const char *why);

/* From already split elements (conf_list()); never NULL. */
struct matchlist *matchlist_open(char *const *items, size_t n, matchlist_problem_fn *fn,
				 void *ctx);
/* From a text value: elements separated by blanks and commas. */
struct matchlist *matchlist_open_text(const char *text, matchlist_problem_fn *fn, void *ctx);
void	matchlist_free(struct matchlist **mlp);

enum matchlist_result { ML_NOMATCH, ML_MATCH, ML_FAIL, ML_WOULD_BLOCK };

/* name is compared as given (callers lowercase domains first). */
enum matchlist_result matchlist_match(const struct matchlist *ml, const char *name,
				      bool try_only);

bool	matchlist_empty(const struct matchlist *ml);
/* The type:table elements, for change detection (maplist_changed()). */
const struct maplist *matchlist_maps(const struct matchlist *ml);

#endif
