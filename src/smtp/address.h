/*
 * address: parsing of the untrusted arguments of MAIL FROM / RCPT TO and of
 * the command verb, matching Postfix 3.7 smtpd with strict_rfc821_envelopes
 * = no (measured against Postfix 3.7.11; the unit tests hold the cases).
 *
 * Command words.  The argument text is split into words at spaces and tabs,
 * except inside "quoted strings" (backslash escapes the next byte) and
 * <angle brackets>, so `<"john smith"@x>` and `FOO=<x y>` are one word each.
 * The first word must start with the keyword ("FROM:" / "TO:", any case);
 * the address is the rest of that word ("FROM:<a@b>") or, when that is
 * empty, the next word ("FROM: <a@b>", "FROM: a@b").  The words after the
 * address are the ESMTP parameters.
 *
 * Address syntax (RFC 5321 path, read as leniently as Postfix reads it with
 * its RFC 822 tokenizer):
 *  - angle brackets are optional: `<a@b>`, `a@b`, `a@b>` are all a@b; a
 *    phrase before the brackets is dropped (`<Joe <a@b>>` is a@b);
 *  - a source route is removed: `<@a,@b:u@d>` is u@d (never relayed to a);
 *  - RFC 822 comments are removed: `<u@local (c)>` is u@local;
 *  - quoted strings and backslash escapes are unquoted: `<"john smith"@x>`
 *    is `john smith@x` and `<wietse\ venema@x>` is `wietse venema@x`;
 *  - the domain (after the LAST '@') must be a valid host name (labels of
 *    letters, digits, '-' and '_', 1..63 bytes, not starting or ending with
 *    '-', at most 255 bytes, not all-numeric, one trailing dot allowed) or an
 *    address literal [1.2.3.4] / [IPv6:...]; an unclosed literal is closed;
 *  - the local part is free-form (`.a@b`, `a..b@c`, `a@b@c` (local "a@b"),
 *    `a:b@c` pass, as in Postfix), but two words may not follow each other
 *    without '.', '@' or ':' between them (`<a b@c>` is bad).
 *  Bad: unbalanced quote (`<"abc@local>`), unclosed `<` (`<a@b`), text after
 *  the closing `>` (`<a@b>x`), two addresses (`<a@b,c@d>`), ';', an empty
 *  or invalid domain (`<john@ >`, `<u@>`, `<a@-b>`, `<a@[foo]>`), a trailing
 *  backslash.  `<a@b> <c@d>` parses as a@b with parameter `<c@d>`, which
 *  smtp_parse_params() rejects as unsupported (Postfix: 555 5.5.4).
 *
 * Canonical form.  out->addr is Postfix's internal form: quotes and escapes
 * removed (`john smith@x`).  It is what Postfix prints in replies (`<john
 * smith@x>`), and what mailbox and access lookups must use.  For log lines
 * (from=<...>, to=<...>) and headers (Return-Path) use smtp_addr_quote(),
 * which re-quotes a local part that needs it, as Postfix logs it:
 * `"john smith"@x`, `""@doe`.
 *
 * Differences from Postfix (deliberate, safer on nonsense): C0 control bytes
 * and DEL in an address are bad syntax (Postfix accepts them); `<>x` is bad
 * (Postfix takes "x"); an address without a real '@' whose internal form
 * would contain one (`<"a@evil">`, `<a\@evil>`, `<[x@evil]>`) is bad, so
 * the text after the last '@' of out->addr is always a checked domain.  NUL: arg is a C string, so a NUL ends it, as in
 * Postfix: `<a\0b@local>` is read as `<a`, which is bad syntax.
 *
 * Memory: arg longer than SMTP_ARG_MAX bytes is PATH_BAD without further
 * work; everything allocated is proportional to strlen(arg).
 */
#ifndef MXGATE_SMTP_ADDRESS_H
#define MXGATE_SMTP_ADDRESS_H

#include <stddef.h>
#include <stdint.h>

struct buf;

/* Longest argument text parsed (the command line is capped at 2048 anyway). */
#define SMTP_ARG_MAX 4096

/*
 * Split a command line (without CRLF) into verb and arguments: verb =
 * the bytes up to the first space or tab, after leading spaces and tabs;
 * *args_r points just after the verb (at the separating space, "" if none),
 * so MAIL's arg is " FROM:<a@b>".  Returns 0, or -1 when the line is empty
 * or all blanks (Postfix: "500 5.5.2 Error: bad syntax").
 */
int smtp_split_command(const char *line, size_t len, const char **verb_r, size_t *verb_len_r,
		       const char **args_r);

/*
 * Non-zero when s[0..len) is valid UTF-8 (no overlong forms, no surrogates,
 * at most U+10FFFF).  ASCII always is.  Postfix answers a command that is not
 * "500 5.5.2 Error: bad UTF-8 syntax" (smtputf8_enable = yes).
 */
int smtp_utf8_valid(const char *s, size_t len);

enum smtp_path_result {
	PATH_OK = 0,
	PATH_SYNTAX,	/* no keyword or no address: "501 5.5.4 Syntax: MAIL FROM:<address>"
			 * / "501 5.5.4 Syntax: RCPT TO:<address>" */
	PATH_BAD,	/* bad address: "501 5.1.7 Bad sender address syntax"
			 * / "501 5.1.3 Bad recipient address syntax" */
};

struct smtp_path {
	char	*addr;		/* internal form, allocated; "" for the null path <> */
	const char *params;	/* points INTO arg: the ESMTP parameter text, "" if none */
	int	source_route;	/* a source route was removed */
	int	has_8bit;	/* addr has a byte >= 0x80 (SMTPUTF8 policy is the caller's) */
	int	domain_8bit;	/* the domain has UTF-8: acceptable only with SMTPUTF8,
				 * else treat as PATH_BAD (Postfix does) */
	const char *word;	/* points INTO arg: the address as written, for warnings */
	size_t	word_len;
	int	unclosed;	/* PATH_BAD: the address leaves a "..." or <...> open
				 * (Postfix's tokenizer fails: 501 without a warning) */
};

/*
 * Parse the argument of MAIL or RCPT: arg is the text after the verb,
 * leading space included; keyword is "FROM:" or "TO:".  The null path (<>,
 * and forms that reduce to it such as <@x:>) is PATH_OK with addr "" for
 * "FROM:", and PATH_BAD for any other keyword (RCPT TO:<> is 501 5.1.3).
 * On PATH_OK, out->addr must be released with smtp_path_free(); on other
 * results out->addr is NULL and smtp_path_free() is harmless.  On PATH_BAD
 * out->word/word_len still name the address as written and out->unclosed
 * says whether it leaves a quote or bracket open: Postfix logs "Illegal
 * address syntax from <client> in <MAIL|RCPT> command: <word>" for every bad
 * address except those.
 */
int smtp_parse_path(const char *arg, const char *keyword, struct smtp_path *out);
void smtp_path_free(struct smtp_path *out);

/*
 * Postfix's second check of an address that parsed (smtpd_check_addr(): what
 * its resolver refuses): an internal form that starts with '-' (Postfix's
 * allow_min_user = no, which mxgate does not make configurable: a command
 * run for the address could take it for an option), and a domain in UTF-8
 * unless utf8 (SMTPUTF8 given, RFC 6531; an 8-bit local part is fine).  The
 * null address passes.  Returns 1 when the address is acceptable, 0 when the
 * caller must log "Illegal address syntax" and reply 501 (5.1.7 for MAIL,
 * 5.1.3 for RCPT and VRFY); also 0 when p->addr is NULL.
 */
int smtp_path_resolvable(const struct smtp_path *p, int utf8);

/*
 * Parse text as one address (VRFY's argument, already collapsed by
 * smtp_collapse_args()), with the rules above.  The null address parses
 * (addr ""); the caller refuses it where one is required.
 */
int smtp_parse_address(const char *text, struct smtp_path *out);

/*
 * Non-zero when one of the ESMTP parameter words in params is keyword
 * (case-insensitive): SMTPUTF8 decides how MAIL FROM's address is checked
 * before the other parameters are.
 */
int smtp_params_has(const char *params, const char *keyword);

/*
 * Postfix's reading of a command's arguments as words (smtpd_token()):
 * split at white space (space, tab, CR, LF, VT, FF) except inside "..." and
 * <...>; "TO:" and "FROM:" end a word.  When the last of two or more words
 * is trailing (case-insensitive; NULL: none), it is dropped and *trailing_r
 * set.  Returns the remaining words joined by single spaces (caller frees),
 * or NULL when none remain (or args is longer than SMTP_ARG_MAX).  VRFY's
 * "address [SMTPUTF8]".
 */
char *smtp_collapse_args(const char *args, const char *trailing, int *trailing_r);

/*
 * Append the external (RFC 5321 quoted) form of an internal address to out:
 * the local part is quoted when it is empty or has a special character,
 * a space or control, or a leading, trailing or double dot; '"' and '\' in
 * it are backslash-escaped.  The result always parses back to addr.
 * (mxgate: Postfix logs the internal "@b:u@d" of <@a:@b:u@d> unquoted; we
 * write "@b:u"@d.)
 */
void smtp_addr_quote(struct buf *out, const char *addr);

/* ESMTP parameters. */
enum smtp_param_result {
	PARAM_OK = 0,
	PARAM_BAD_SIZE,		/* "501 5.5.4 Bad message size syntax" */
	PARAM_SIZE_OVERFLOW,	/* "552 5.3.4 Message size exceeds file system imposed limit" */
	PARAM_DSN_DISABLED,	/* "501 5.7.1 DSN support is disabled" (RET, ENVID, NOTIFY, ORCPT) */
	PARAM_UNSUPPORTED,	/* "555 5.5.4 Unsupported option: %s", *bad_r */
};

enum smtp_body_type { BODY_NONE = 0, BODY_7BIT, BODY_8BITMIME };

struct esmtp_params {
	int	has_size;	/* SIZE= given (the last one counts, like Postfix) */
	uint64_t size;		/* declared size; the caller compares it with
				 * message_size_limit: "552 5.3.4 Message size exceeds fixed limit" */
	enum smtp_body_type body;
	int	smtputf8;	/* SMTPUTF8 given */
	int	auth;		/* AUTH=... given (accepted and ignored, as Postfix does) */
};

/*
 * Parse MAIL FROM's parameters (struct smtp_path.params) into *p (zeroed
 * first).  Keywords are case-insensitive; they are checked in order and the
 * first bad one decides, as in Postfix:
 *   SIZE=<digits>            else PARAM_BAD_SIZE; above 2^63-1: PARAM_SIZE_OVERFLOW
 *   BODY=7BIT | 8BITMIME     else PARAM_UNSUPPORTED
 *   SMTPUTF8                 (no value)
 *   AUTH=<anything>          accepted, ignored
 *   RET=, ENVID=             PARAM_DSN_DISABLED (mxgate offers no DSN)
 *   anything else            PARAM_UNSUPPORTED
 * On PARAM_UNSUPPORTED *bad_r is the offending word exactly as sent (caller
 * frees; the caller must escape it before logging); otherwise *bad_r is NULL.
 */
int smtp_parse_params(const char *params, struct esmtp_params *p, char **bad_r);

/*
 * Parse RCPT TO's parameters: NOTIFY= and ORCPT= give PARAM_DSN_DISABLED,
 * anything else PARAM_UNSUPPORTED with *bad_r as above; no parameter: PARAM_OK.
 */
int smtp_parse_rcpt_params(const char *params, char **bad_r);

#endif
