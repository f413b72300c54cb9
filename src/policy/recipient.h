/*
 * recipient: classify an envelope recipient as Postfix's smtpd(8) does for a
 * receive-only MX, and say where it would be delivered.
 *
 * Classes, decided by the address's domain (case-insensitive, one trailing
 * dot ignored; list entries are compared as written, lowercased: an entry
 * "example.com." matches nothing, as in Postfix; no subdomain matching).
 * The domain lists read as Postfix's match lists: an element is a domain, a
 * type:table, or "/file/name", which stands for the elements written in
 * that file ('#' lines skipped, files may name files); "!" negates an
 * element, and the first element that matches decides:
 *
 *   local    domain in mydestination.  With smtpd_reject_unlisted_recipient
 *            and a non-empty local_recipient_maps, the address must be found
 *            there (keys below), else "<code> 5.1.1 <addr>: Recipient address
 *            rejected: User unknown in local recipient table".  postmaster,
 *            mailer-daemon (exactly, any case) and the empty local part are
 *            always accepted, as Postfix's smtpd does; "postmaster+x" is not.
 *   virtual  domain in virtual_mailbox_domains.  The address must be found in
 *            virtual_mailbox_maps (keys below), else "... User unknown in
 *            virtual mailbox table".  The value is a Maildir path relative to
 *            virtual_mailbox_base, ending in '/'; uid and gid come from
 *            virtual_uid_maps and virtual_gid_maps, looked up the same way.
 *
 * Lookup keys, in order, the first table hit wins (Postfix's mail_addr_find()
 * as smtpd(8) and virtual(8) call it):
 *     user+ext@domain, user@domain, then, when domain is in mydestination or
 *     is myorigin, user+ext and user, then @domain
 * where "+ext" is the address extension: the local part from its first
 * character that is in recipient_delimiter (every character of the value is
 * a delimiter: "+-" splits "a-b" and "a+b").  No extension when
 * recipient_delimiter is empty (its default) and, as Postfix's split_addr(),
 * none for postmaster, mailer-daemon and double-bounce, none for owner-x and
 * x-request when '-' is a delimiter (owner_request_special = yes), and none
 * when the local part starts with a delimiter ("+user" is looked up whole).
 * "user+" has the empty extension "+".  The message goes to the Maildir that
 * the matching key names; Delivered-To is the recipient as given (the
 * session's job).
 *   relay    anything else: RCPT_RELAY_DENIED, "not one of our destinations".
 *            The reply comes from policy/restrict.c (mxgate never relays:
 *            DESIGN.md), which places it where Postfix's restrictions would
 *            have permitted or refused the relay; r->reply is a fallback
 *            ("<relay_domains_reject_code> 5.7.1 <addr>: Relay access denied",
 *            or 454 4.7.1 when defer_unauth_destination comes first).
 *
 * smtpd_reject_unlisted_recipient: mxgate always checks the recipient tables
 * (an unknown user gets the reply above), whatever the parameter says,
 * because it cannot store mail for an address it does not know, and it has
 * no queue to bounce from later as Postfix does with "no".
 *
 * Sender-specified routing (allow_percent_hack and swap_bangpath as Postfix's
 * defaults, "yes"): at a local domain, "u%d@local", "u@d@local" and
 * "d!u@local" are rewritten to "u@d" and classified again, so that routing
 * back to one of our own domains works and routing anywhere else is relay
 * (denied).  A local part with '@', '%' or '!' at a non-local domain is
 * relay (denied) too.  All as observed from Postfix 3.7.  After 64 rewrites
 * the address is denied as relay (Postfix has no limit).
 *
 * A bare local part ("postmaster") gets "@" myorigin, or is treated as local
 * when myorigin is NULL; a bare "postmaster" is always local (RFC 5321 4.5.1).
 *
 * Lookup failures give TEMPFAIL "451 4.3.0 <addr>: Temporary lookup
 * failure" (Postfix's reply).  A virtual mailbox that mxgate will not deliver
 * to (mbox, uid missing or below virtual_minimum_uid, a path that could leave
 * virtual_mailbox_base) gives TEMPFAIL "451 4.3.5 Server configuration error"
 * at RCPT, with the reason for the log: Postfix would accept and its
 * virtual(8) would defer later; mxgate never accepts what it cannot store.
 *
 * Aliases (policy/alias.h does the expanding; the order is Postfix's).  A
 * domain is local (mydestination), else alias (virtual_alias_domains), else
 * virtual (virtual_mailbox_domains), else relay; a domain in two of the lists
 * gets trivial-rewrite's warning in r->warning ("do not list domain d in BOTH
 * mydestination and virtual_alias_domains").  Relay is RCPT_RELAY_DENIED
 * before any alias is asked: an alias does not make another domain ours (as
 * Postfix's reject_unauth_destination, which runs first).  In our domains:
 *   1. virtual_alias_maps, as cleanup(8): matched, the RCPT is accepted for
 *      the final addresses (no local_recipient_maps or virtual_mailbox_maps
 *      check of the RCPT itself, as Postfix's smtpd); each final address is
 *      then delivered as below, without virtual aliasing again.  Past a limit:
 *      TEMPFAIL "451 4.6.0 Alias expansion error", reason Postfix's warning.
 *      Not matched in an alias domain: RCPT_UNKNOWN_ALIAS "<code> 5.1.1 <addr>:
 *      Recipient address rejected: User unknown in virtual alias table"
 *      (unknown_virtual_alias_reject_code).
 *   2. a virtual address: its mailbox (above).  A local one: it must pass
 *      local_recipient_maps (above), then alias_maps, as local(8): keys
 *      user+ext, user; an alias's targets are addresses (a bare name gets
 *      @myorigin; a local one is expanded again in place, one that names
 *      the alias itself is the user's own mailbox; any other goes through
 *      step 1 again, as local(8) forwards it), :include: files (each read
 *      once per RCPT), |commands and /files.  No alias: the local user.
 * Every mailbox found is a target (r->targets), with the local(8) addresses
 * that forwarded it there (via: each one a Delivered-To line in the copy;
 * an address forwarded by a local alias starts a new local(8) delivery when
 * it reaches a local domain again).  The first target that mxgate
 * cannot store refuses the whole recipient, with r->reason for the log:
 *   an address in no domain of ours: RCPT_UNDELIVERABLE "550 5.1.1 <addr>:
 *     Recipient address rejected: Alias forwards to another domain; this
 *     server does not relay";
 *   an unknown user: RCPT_UNDELIVERABLE "550 5.1.1 <addr>: Recipient address
 *     rejected: Alias target is an unknown user";
 *   |command, /file, an include file that cannot be read: TEMPFAIL "451 4.3.5
 *     Server configuration error";
 *   more than 100 levels (local(8)'s bound): RCPT_UNDELIVERABLE "550 5.4.6
 *     <addr>: Recipient address rejected: Alias database loop";
 *   more than virtual_alias_expansion_limit targets: TEMPFAIL 451 4.6.0.
 * Lookup failures anywhere: TEMPFAIL "451 4.3.0 <addr>: Temporary lookup
 * failure".  README ("Differences from Postfix 3.7", Aliases) says why.
 *
 * Transports (trivial-rewrite(8) and local(8) as Postfix 3.7 resolve them
 * for a receiving MX).  Each final address (after virtual_alias_maps) gets
 * the transport of transport_maps (keys user+ext@domain, user@domain,
 * domain, then .parent domains, then "*"; values "transport:nexthop",
 * "transport:" or ":nexthop", as transport(5)), else virtual_transport for a
 * virtual mailbox domain, local_transport for a local one.  Transports:
 *   virtual:        the Maildir of virtual_mailbox_maps (as above);
 *   local:          local(8): alias_maps, then the user's mailbox, which is
 *                   mailbox_transport when that is set (lmtp: only);
 *   lmtp:NEXTHOP    an LMTP server (deliver/lmtp.h): the address must still
 *                   pass virtual_mailbox_maps or local_recipient_maps, but
 *                   its mailbox path and uid are not needed; a local address
 *                   is not alias-expanded (local(8) never sees it, as in
 *                   Postfix); the target's transport is "lmtp:NEXTHOP";
 *   discard:TEXT    accepted as the address's table says, stored nowhere;
 *                   the target's transport is "discard:TEXT";
 *   error:TEXT      RCPT_UNDELIVERABLE "550 5.1.1 <addr>: Recipient address
 *                   rejected: TEXT" (a leading "5.x.y " in TEXT is the
 *                   enhanced code; no TEXT: "Address is undeliverable"),
 *                   as Postfix's smtpd answers; an alias
 *                   target that resolves there refuses the RCPT like an
 *                   unknown one;
 *   retry:TEXT      the same with 450 4.1.1.
 * Anything else (smtp, relay, a pipe service of master.cf ...), lmtp with a
 * nexthop lmtp(8) could not use, "virtual" for a local domain or "local"
 * for a virtual one: from the parameters, recipient_policy_create() reports
 * it; from a transport_maps entry, the RCPT gets TEMPFAIL "451 4.3.5 Server
 * configuration error" with the entry in r->reason.  Never accepted.
 *
 * Not supported (they give relay): address literals (user@[192.0.2.1]) even
 * for our own addresses, which Postfix accepts as local.
 *
 * Threads: a policy is read-only after recipient_policy_create();
 * recipient_resolve() may run in many threads at once.
 */
#ifndef MXGATE_POLICY_RECIPIENT_H
#define MXGATE_POLICY_RECIPIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/*
 * Already-expanded parameter values (the conf module's job).  Every list is
 * an array of n strings; n == 0 means empty.  Map lists hold "type:name"
 * specs; domain lists hold domain names or "type:name" tables whose keys are
 * domains.  Nothing here is kept after recipient_policy_create(): it copies.
 */
struct recipient_conf {
	char *const *mydestination;		size_t n_mydestination;
	const char *myorigin;			/* NULL: bare local part is local */
	char *const *local_recipient_maps;	size_t n_local_recipient_maps;
	char *const *virtual_mailbox_domains;	size_t n_virtual_mailbox_domains;
	char *const *virtual_mailbox_maps;	size_t n_virtual_mailbox_maps;
	const char *virtual_mailbox_base;
	char *const *virtual_uid_maps;		size_t n_virtual_uid_maps;
	char *const *virtual_gid_maps;		size_t n_virtual_gid_maps;
	long virtual_minimum_uid;		/* 100 */
	char *const *relay_restrictions;	size_t n_relay_restrictions;
	char *const *recipient_restrictions;	size_t n_recipient_restrictions;
	const char *recipient_delimiter;	/* NULL or "": none (Postfix default) */
	int reject_unlisted_recipient;		/* smtpd_reject_unlisted_recipient: 1 */
	int unknown_local_code;			/* unknown_local_recipient_reject_code: 550 */
	int unknown_virtual_code;		/* unknown_virtual_mailbox_reject_code: 550 */
	int relay_reject_code;			/* relay_domains_reject_code: 554 */
	/* aliases (policy/alias.h) */
	char *const *virtual_alias_maps;	size_t n_virtual_alias_maps;
	char *const *virtual_alias_domains;	size_t n_virtual_alias_domains;
	char *const *alias_maps;		size_t n_alias_maps;
	long virtual_alias_recursion_limit;	/* 1000 */
	long virtual_alias_expansion_limit;	/* 1000 */
	long virtual_alias_address_length_limit; /* 1000 */
	int propagate_virtual;			/* propagate_unmatched_extensions has "virtual" */
	int unknown_alias_code;			/* unknown_virtual_alias_reject_code: 550 */
	/* transports (see "Transports" above); NULL: Postfix's defaults */
	char *const *transport_maps;		size_t n_transport_maps;
	const char *virtual_transport;		/* "virtual" */
	const char *local_transport;		/* "local:$myhostname" */
	const char *mailbox_transport;		/* "" */
};

struct conf_view;

/*
 * The recipient_conf of one configuration view (conf.h): the parameters of
 * the same names (relay_restrictions and recipient_restrictions are
 * smtpd_relay_restrictions and smtpd_recipient_restrictions).  The strings
 * and lists belong to the view, which must outlive the result; free the
 * result with free().
 */
struct recipient_conf *recipient_conf_from_view(const struct conf_view *cf);

struct recipient_policy;

/*
 * One thing that keeps a policy from being created: param is the parameter's
 * name, item the list item at fault (a table spec such as
 * "hash:/etc/aliases", or a domain list entry such as "/etc/destinations";
 * NULL for a reply code), why the reason, which names the item.  The
 * strings are valid during the call only.
 */
typedef void recipient_problem_fn(void *ctx, const char *param, const char *item,
				  const char *why);

/*
 * Open every table of every parameter.  Does not stop at the first problem:
 * report(ctx, ...) is called for each table that cannot be opened or has an
 * unsupported type, each "/file" of a domain list that cannot be read (or
 * that nests too deep), each "!" with nothing after it and each bad reply
 * code, in parameter order.  Returns
 * NULL when there was any (nothing stays open).
 */
struct recipient_policy *recipient_policy_create_report(const struct recipient_conf *rc,
						       recipient_problem_fn *report, void *ctx);

/*
 * The same, with the first problem in *err_r (caller frees) as
 * "<param>: <why>", e.g. 'virtual_mailbox_maps: unsupported map type "hash"
 * in "hash:/etc/postfix/vmailbox": ...'.
 */
struct recipient_policy *recipient_policy_create(const struct recipient_conf *rc, char **err_r);
/*
 * Policies are reference-counted, so that a lookup running on a pool thread
 * keeps its policy alive while a reload replaces it: create gives one
 * reference, recipient_policy_ref() another, and recipient_policy_free()
 * drops one (the last frees) and sets *pp to NULL.  Any thread.
 */
struct recipient_policy *recipient_policy_ref(const struct recipient_policy *p);
void recipient_policy_free(struct recipient_policy **pp);

/*
 * The spec of an indexed table (cdb) whose file changed since create, or
 * NULL: the caller builds a new policy and swaps it in (Postfix's smtpd
 * restarts for the same reason: "table cdb:... has changed -- restarting").
 * It calls stat(2): not on an event loop.  recipient_policy_has_indexed():
 * whether there is any table to watch at all.
 */
const char *recipient_policy_changed(const struct recipient_policy *p);

/* True when a table of the policy is remote (map_is_remote()): its lookups go
 * to the remote pool (policy/restrict.h: restrict_start()). */
bool recipient_policy_remote(const struct recipient_policy *p);

/*
 * For `mxgate check`: map_probe() every remote table of the policy, calling
 * report(ctx, param, spec, why) for each one that does not answer.  Returns
 * the number of those.  Blocks (connects to servers).
 */
size_t recipient_policy_probe(const struct recipient_policy *p, recipient_problem_fn *report,
			      void *ctx);
bool recipient_policy_has_indexed(const struct recipient_policy *p);

/*
 * For `mxgate check`: read the text behind every file table of alias_maps
 * and virtual_alias_maps (texthash:NAME, and NAME beside a hash:, btree:,
 * cdb:, lmdb: or dbm: table when it exists: alias.h) and call report(ctx,
 * param, file, line, what) for each target that mxgate cannot deliver to: a
 * |command, a /file, an address outside mxgate's domains, an unknown user,
 * an :include: file that cannot be read (and the same inside include files).
 * Returns how many.  Blocks (files, lookups): not on an event loop.
 */
typedef void recipient_alias_fn(void *ctx, const char *param, const char *file, int line,
				const char *what);
size_t recipient_policy_check_aliases(const struct recipient_policy *p,
				      recipient_alias_fn *report, void *ctx);
/*
 * For `mxgate check`: the same for transport_maps: report(ctx,
 * "transport_maps", file, line, what) for each entry whose value is a
 * transport mxgate does not implement or an LMTP nexthop it cannot use
 * ("Transports").  Returns how many.  Blocks (files).
 */
size_t recipient_policy_check_transports(const struct recipient_policy *p,
					 recipient_alias_fn *report, void *ctx);


enum rcpt_verdict {
	RCPT_OK_LOCAL,		/* accept; deliver as local user (privileged helper) */
	RCPT_OK_VIRTUAL,	/* accept; deliver into r->maildir as r->uid:r->gid */
	RCPT_UNKNOWN_LOCAL,	/* reject: user unknown in local recipient table */
	RCPT_UNKNOWN_VIRTUAL,	/* reject: user unknown in virtual mailbox table */
	RCPT_RELAY_DENIED,	/* reject: relay access denied (not one of our domains) */
	RCPT_TEMPFAIL,		/* 451: lookup failure or undeliverable config */
	RCPT_UNKNOWN_ALIAS,	/* reject: user unknown in virtual alias table */
	RCPT_UNDELIVERABLE,	/* reject (550): an alias leads outside our mailboxes */
};

/*
 * One mailbox an accepted recipient is delivered to: the recipient itself,
 * or what its aliases lead to.
 */
struct rcpt_target {
	enum rcpt_verdict kind;	/* RCPT_OK_LOCAL or RCPT_OK_VIRTUAL */
	char *address;		/* the final address, internal form (to= in the logs) */
	char *user;		/* OK_LOCAL: as rcpt_result's user */
	char *home;		/* OK_LOCAL: passwd home or NULL */
	char *maildir;		/* OK_VIRTUAL: as rcpt_result's maildir */
	uid_t uid;		/* as rcpt_result's */
	gid_t gid;
	/*
	 * The addresses whose local(8) delivery forwarded this copy through
	 * alias_maps (each adds "Delivered-To: <it>" when it forwards), newest
	 * first, case-folded as local(8) writes them; nvia 0 when no local
	 * alias forwarded it.  An alias of a local address expanded again in
	 * place adds none (local(8) keeps the first address), and neither does
	 * virtual_alias_maps (cleanup(8) writes no Delivered-To).
	 */
	char **via;
	size_t nvia;
	/*
	 * NULL: the built-in delivery of kind (virtual: the Maildir; local: the
	 * local user).  Else "lmtp:NEXTHOP" or "discard:TEXT" ("Transports").
	 */
	char *transport;
};

struct rcpt_result {
	enum rcpt_verdict verdict;
	int code;		/* the reply's three-digit code */
	char *reply;		/* whole reply line without CRLF; NULL for OK_* */
	char *reason;		/* for the log, NULL if none; never sent to the client */
	/* OK_LOCAL: */
	char *user;		/* passwd name when found in unix:passwd.byname, else the
				 * lowercased local part minus extension when it is
				 * safe as a name (no '/', not "." or ".."), else NULL */
	char *home;		/* passwd home directory, or NULL */
	/* OK_VIRTUAL: absolute, normalised, ends in '/', under the base */
	char *maildir;
	/* OK_LOCAL from a passwd entry, and OK_VIRTUAL; (uid_t)-1 otherwise */
	uid_t uid;
	gid_t gid;
	/*
	 * OK_*: every copy the recipient leads to (at least one, no two with
	 * the same kind, address and via: the same final address reached twice
	 * from one RCPT is one copy, as Postfix's duplicate filters keep it,
	 * unless different local(8) deliveries forwarded it there, which are
	 * different queue files in Postfix); the fields above are the first
	 * one's.  verdict is RCPT_OK_LOCAL when any target is local.
	 */
	struct rcpt_target *targets;
	size_t ntargets;
	/* Lines to log at warning level, '\n'-separated, or NULL (any verdict). */
	char *warning;
};

/*
 * Classify addr, the recipient in internal form (source route stripped,
 * quotes removed: "a b"@d is a b@d), which also appears in the reply
 * text as given.  Fills *r (previous contents are ignored, not freed); release
 * with rcpt_result_free().
 */
void recipient_resolve(const struct recipient_policy *p, const char *addr, struct rcpt_result *r);
/*
 * recipient_resolve() using only tables that cannot block (map_in_memory():
 * texthash, inline, static), for the event loop; a recipient that aliases
 * may expand (virtual_alias_maps not empty, or a local one with alias_maps)
 * always goes to the pool.  Returns true with *r set
 * when that was enough; false (nothing to free) when the address needs a
 * table that may block (cdb, unix:passwd.byname, ...): resolve it on a pool
 * thread instead.
 */
bool recipient_try_resolve(const struct recipient_policy *p, const char *addr,
			   struct rcpt_result *r);
void rcpt_result_free(struct rcpt_result *r);

#endif
