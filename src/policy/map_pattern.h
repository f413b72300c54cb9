/*
 * map_pattern: the pattern tables cidr:, regexp: (POSIX regcomp/regexec) and
 * pcre: (PCRE2), as Postfix 3.7 reads them (cidr_table(5), regexp_table(5),
 * pcre_table(5)).  The registry (maps.c) holds the three map_type objects;
 * the rest is here for the unit tests and the fuzzer.
 *
 *   open()    reads the whole file (or an inline "{ rule, { rule } ... }"
 *             name, as Postfix 3.7 allows) and compiles every rule.  Like
 *             Postfix, a bad rule does not stop the open: it is logged with
 *             msg_warn() in Postfix's words ("regexp map /etc/postfix/x,
 *             line 3: ...: skipping this rule") and left out, and so is an
 *             ENDIF without IF; an IF without ENDIF is warned about at the
 *             end.  open() fails only when the file cannot be read
 *             ("open /etc/postfix/x: No such file or directory") or an inline
 *             name is malformed.
 *   lookup()  the key as given (MAPT_NOFOLD: Postfix folds no key of these
 *             types).  Rules are tried in order, IF/ENDIF blocks skipped when
 *             their condition fails; the first match answers, with $N, ${N}
 *             and $(N) replaced by what group N matched and $$ by $.  A
 *             rule whose matcher reports an error (PCRE2's match, depth or
 *             heap limit, a regexec() error) is logged as Postfix logs it and
 *             counts as not matching, as in Postfix: the lookup goes on with
 *             the next rule.  Never MAP_FAIL.  Lookups share only read-only
 *             compiled rules (each lookup has its own match buffers), so they
 *             need no lock and run on any number of threads.
 *
 * Safety on hostile keys: every pcre2_match() runs with a match limit
 * (PCRE2's built-in 10,000,000, the limit Postfix runs with), a depth limit
 * and a heap cap, so a pathological pattern costs a bounded time; IF nesting
 * is a heap stack, not recursion.  regexp: has no such limit (the POSIX API
 * offers none, and Postfix sets none): an admin's pattern with back-references
 * can cost a long key seconds of one lookups-pool thread, as it costs Postfix.
 */
#ifndef MXGATE_POLICY_MAP_PATTERN_H
#define MXGATE_POLICY_MAP_PATTERN_H

#include <stddef.h>

#include "policy/map_type.h"

extern const struct map_type map_type_cidr;
extern const struct map_type map_type_regexp;
extern const struct map_type map_type_pcre;

/*
 * The table of one of the three types built from text, as open() builds it
 * from a file's contents: name is the map name in warnings (the path).
 * Never fails.  Free it with type->close().
 */
struct map_impl *map_pattern_open_text(const struct map_type *type, const char *name,
				       const char *text, size_t len);

/*
 * The logical-line reader the three types share (Postfix's readllines()),
 * resumable: feed it any split of the input, then finish it.  It calls fn
 * with each logical line (NUL-terminated, continuations joined without
 * their newline) and the number of its first physical line.  Blank lines
 * and lines whose first non-blank byte is '#' are dropped, also inside a
 * logical line; a logical line that starts with whitespace is warned about
 * ("PATH: logical line must not start with whitespace: ...") and dropped.
 */
typedef void map_lines_fn(void *ctx, char *line, int lineno);

struct map_lines;

struct map_lines *map_lines_new(const char *path, map_lines_fn *fn, void *ctx);
void map_lines_feed(struct map_lines *ml, const char *data, size_t len);
/* End of input: a last line without its newline counts. */
void map_lines_finish(struct map_lines *ml);
void map_lines_free(struct map_lines **mlp);

#endif
