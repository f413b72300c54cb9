/*
 * tls: the server side of TLS (OpenSSL 3), as Postfix 3.7's smtpd sets it
 * up from its smtpd_tls_* and tls_* parameters.
 *
 * One struct tls_server per service generation (built with the service
 * data, at start-up, at `mxgate check` and on reload, never per
 * connection): an SSL_CTX with the certificates and keys, protocols,
 * cipher grade and exclusions, ECDHE groups (tls_eecdh_auto_curves;
 * smtpd_tls_eecdh_grade is ignored, as in Postfix >= 3.6), DH parameters, client
 * certificate request and CA, session cache timeout and session tickets,
 * options.  It is read-only once built (OpenSSL locks its own session
 * cache), so every event-loop thread makes its SSL objects from it.
 *
 * Settings (Postfix 3.7's meaning):
 *   smtpd_tls_security_level none | may | encrypt ("" : smtpd_use_tls and
 *     smtpd_enforce_tls decide); smtpd_tls_wrappermode = yes implies
 *     encrypt.  At encrypt the mandatory protocols, ciphers and exclusions
 *     apply, else the opportunistic ones.
 *   smtpd_tls_chain_files, or smtpd_tls_cert_file/key_file (and the legacy
 *     eccert/eckey, dcert/dkey pairs): no certificate at all is not an
 *     error (STARTTLS then gets 454, as in Postfix, and a warning is logged
 *     when the service is built); a file that cannot be read or does not
 *     hold a matching key and certificate is an error (`check` names it,
 *     `run` and reload refuse the configuration).
 *   tls_server_sni_maps: read whole when the server is built (the tables
 *     through policy/maps.h's map_each(): texthash, inline, cdb, hash,
 *     btree, lmdb); one SSL_CTX per distinct value, with the same settings
 *     and that value's keys and chains.  The handshake's servername
 *     callback looks the client's name up in memory (the name, then each
 *     parent domain as ".example.com", as Postfix), switches to the match,
 *     or keeps the default chain ("TLS SNI ... not matched, using default
 *     chain").  A value that is not base64 of PEM keys and chains (indexed
 *     tables: postmap -F), names files that cannot be read (texthash,
 *     inline), or does not load, is an error that names table and key.
 *   smtpd_tls_dh1024_param_file: a file that cannot be opened or decoded
 *     is Postfix's warning and OpenSSL's automatic DH group; parameters
 *     that OpenSSL's security level refuses (1024 bits) are an error.
 *   Session resumption: OpenSSL's in-process cache and RFC 5077 tickets
 *     (one per handshake, keys made per generation), valid for
 *     smtpd_tls_session_cache_timeout; 0 turns both off.
 *
 * THREADS: tls_server_build() from any thread; the rest from any thread
 * on a built server.
 */
#ifndef MXGATE_NET_TLS_H
#define MXGATE_NET_TLS_H

#include <stddef.h>

struct buf;
struct conf_view;
struct tls_server;

/* What the session needs to know about the service's TLS. */
enum tls_level { TLS_LEVEL_NONE, TLS_LEVEL_MAY, TLS_LEVEL_ENCRYPT };

struct tls_policy {
	enum tls_level level;	/* none, may (STARTTLS offered), encrypt (required) */
	int	wrappermode;	/* TLS from the first byte */
	int	loglevel;	/* smtpd_tls_loglevel: >= 1 logs the summary line */
	int	received_header;/* smtpd_tls_received_header */
	int	auth_only;	/* smtpd_tls_auth_only (or encrypt) */
	long	handshake_timeout;	/* smtpd_starttls_timeout, seconds */
};

/*
 * Read the policy of one view (no files are opened).  Returns 0, or -1
 * with *err_r ("<param> = <value>: <why>", caller frees) for a level
 * Postfix refuses.
 */
int tls_policy_read(const struct conf_view *cf, struct tls_policy *p, char **err_r);

/*
 * Build the server context for a view whose level is not none.  Returns 0
 * and *srv_r, or -1 with *err_r set (caller frees).  *srv_r is NULL (and
 * *warn_r says why, caller frees) when no certificate is configured: the
 * service then answers STARTTLS with 454.
 */
int tls_server_build(const struct conf_view *cf, const struct tls_policy *p,
		     struct tls_server **srv_r, char **warn_r, char **err_r);
struct tls_server *tls_server_ref(struct tls_server *srv);
/*
 * tls_server_sni_maps has an indexed table (hash, cdb, lmdb ...), and the
 * spec of the first one whose file postmap replaced since the build (NULL
 * if none): the caller builds the service again, as Postfix's smtpd
 * restarts ("table ...(0,lock|fold_fix|src_rhs_is_file) has changed").
 * tls_server_changed() calls stat(2): not on an event loop.
 */
int	tls_server_has_indexed(const struct tls_server *srv);
const char *tls_server_changed(const struct tls_server *srv);
void tls_server_free(struct tls_server **srvp);

/* A new SSL object (as void *: callers need no OpenSSL headers); NULL on failure. */
void   *tls_server_ssl_new(struct tls_server *srv);
void	tls_ssl_free(void *ssl);
/* The client ("name[addr]") that the SNI callback's log lines name. */
void	tls_ssl_set_peer(void *ssl, const char *namaddr);

/* The facts of a finished handshake, as Postfix logs them. */
struct tls_info {
	char	protocol[16];	/* "TLSv1.3" */
	char	cipher[64];	/* "TLS_AES_256_GCM_SHA384" */
	int	usebits, algbits;
	char	kex[32];	/* TLS 1.3: "X25519", "ECDHE", "DHE"; else "" */
	char	kex_curve[32];
	int	kex_bits;
	char	sig[32];	/* the server's signature: "RSA-PSS", "ECDSA" */
	char	sig_curve[32];
	int	sig_bits;
	char	sig_dgst[32];
	char	csig[32];	/* the client's, when it sent a certificate */
	char	csig_curve[32];
	int	csig_bits;
	char	csig_dgst[32];
	int	peer_cert;	/* the client presented a certificate */
	int	peer_trusted;	/* ... that verified against smtpd_tls_CAfile/CApath */
	char	peer_cn[256];	/* its subject CN */
	char	issuer_cn[256];	/* its issuer's CN (or O) */
	int	reused;		/* the session was resumed */
	char	sni[256];	/* the name tls_server_sni_maps accepted, "" if none */
};

/* Fill *info from an SSL object whose handshake is complete. */
void tls_info_get(void *ssl, struct tls_info *info);

/*
 * Postfix's summary line: "Anonymous TLS connection established from
 * <namaddr>: TLSv1.3 with cipher ... (256/256 bits) key-exchange X25519
 * server-signature RSA-PSS (2048 bits) server-digest SHA256".
 */
void tls_format_summary(struct buf *out, const struct tls_info *info, const char *namaddr);

/*
 * The Received: header's TLS comment (smtpd_tls_received_header), lines
 * that start with a TAB, joined by LF, no LF at the end:
 *	(using TLSv1.3 with cipher ... (256/256 bits)
 *	 key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256)
 *	(No client certificate requested)
 * (with ask_ccert: "(Client did not present a certificate)", or the
 * client's "(Client CN "...", Issuer "..." (verified OK))").
 */
void tls_format_received(struct buf *out, const struct tls_info *info, int ask_ccert);

/*
 * Keep the OpenSSL errors of a failed handshake step as text lines in *out
 * ("TLS library problem: error:...:file:line:data:", LF after each), with
 * the file and line that libevent's filter would drop.  out must outlive
 * the SSL object.
 */
void tls_ssl_capture_errors(void *ssl, struct buf *out);

/* The OpenSSL errors queued on this thread, as Postfix's "TLS library problem" warnings. */
void tls_log_errors(void);

#endif
