/*
 * tls: the server's SSL_CTX, built from the configuration.  See tls.h.
 */
#include "net/tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "conf/conf.h"
#include "log/log.h"
#include "policy/maps.h"
#include "util/buf.h"
#include "util/hostname.h"
#include "util/xalloc.h"

struct tls_sni;

struct tls_server {
	atomic_int refs;
	SSL_CTX *ctx;
	struct tls_sni *sni;	/* tls_server_sni_maps, NULL if empty */
};

/* ---- the policy ---------------------------------------------------------- */

static int
tls_loglevel(const char *v)
{
	static const char *const names[] = { "none", "routine", "debug", "ssl-expert",
					     "ssl-developer" };

	if (v[0] >= '0' && v[0] <= '9' && v[1] == '\0')
		return v[0] - '0';
	for (int i = 0; i < 5; i++)
		if (strcasecmp(v, names[i]) == 0)
			return i;
	/* Postfix takes a mask of names too ("summary", "cache"...): log the summary. */
	return 1;
}

int
tls_policy_read(const struct conf_view *cf, struct tls_policy *p, char **err_r)
{
	const char *lev = conf_str(cf, P_smtpd_tls_security_level);
	int	enforce = conf_bool(cf, P_smtpd_enforce_tls);
	int	use = conf_bool(cf, P_smtpd_use_tls);

	memset(p, 0, sizeof(*p));
	p->wrappermode = conf_bool(cf, P_smtpd_tls_wrappermode);
	/* Postfix: the level wins over the legacy booleans, wrapper mode over both. */
	if (!p->wrappermode && *lev != '\0') {
		if (strcasecmp(lev, "none") == 0) {
			use = enforce = 0;
		} else if (strcasecmp(lev, "may") == 0) {
			use = 1;
			enforce = 0;
		} else if (strcasecmp(lev, "encrypt") == 0) {
			use = enforce = 1;
		} else if (strcasecmp(lev, "fingerprint") == 0 || strcasecmp(lev, "verify") == 0
			   || strcasecmp(lev, "secure") == 0) {
			/* Postfix: "unsupported TLS level ..., using encrypt" */
			msg_warn("smtpd_tls_security_level: unsupported TLS level \"%s\", using "
				 "\"encrypt\"", lev);
			use = enforce = 1;
		} else {
			*err_r = xasprintf("smtpd_tls_security_level = %s: Invalid TLS level \"%s\"",
					   lev, lev);
			return -1;
		}
	}
	enforce = p->wrappermode || enforce;
	use = use || enforce;
	p->level = enforce ? TLS_LEVEL_ENCRYPT : use ? TLS_LEVEL_MAY : TLS_LEVEL_NONE;
	p->loglevel = tls_loglevel(conf_str(cf, P_smtpd_tls_loglevel));
	p->received_header = conf_bool(cf, P_smtpd_tls_received_header);
	p->auth_only = conf_bool(cf, P_smtpd_tls_auth_only) || enforce;
	p->handshake_timeout = conf_time(cf, P_smtpd_starttls_timeout);
	return 0;
}

/* ---- errors -------------------------------------------------------------- */

/* One queued error as Postfix's tls_print_errors() shows it (no "warning: "). */
static void
tls_format_error(struct buf *out, unsigned long e, const char *file, int line, const char *data,
		 int flags)
{
	char	text[256];

	ERR_error_string_n(e, text, sizeof(text));
	if (flags & ERR_TXT_STRING)
		buf_printf(out, "TLS library problem: %s:%s:%d:%s:\n", text, file, line, data);
	else
		buf_printf(out, "TLS library problem: %s:%s:%d:\n", text, file, line);
}


void
tls_log_errors(void)
{
	unsigned long e;
	const char *file, *data, *func;
	int	line, flags;

	while ((e = ERR_get_error_all(&file, &line, &func, &data, &flags)) != 0) {
		struct buf b = BUF_INIT;

		tls_format_error(&b, e, file, line, data, flags);
		b.data[b.len - 1] = '\0';
		msg_warn("%s", b.data);
		buf_free(&b);
	}
}

/*
 * At the end of a failed SSL_accept() step the errors are still queued
 * with their file and line, which libevent's filter then drains and keeps
 * as bare codes: copy them out as text here (and queue the codes again,
 * so that the filter still sees an SSL error).
 */
static void
tls_info_cb(const SSL *ssl, int where, int ret)
{
	struct buf *out = SSL_get_app_data(ssl);
	unsigned long e, codes[16];
	const char *file, *data, *func;
	int	line, flags, n = 0;

	if (out == NULL || !(where & SSL_CB_EXIT) || ret > 0 || ERR_peek_error() == 0)
		return;
	while ((e = ERR_get_error_all(&file, &line, &func, &data, &flags)) != 0) {
		tls_format_error(out, e, file, line, data, flags);
		if (n < 16)
			codes[n++] = e;
	}
	for (int i = 0; i < n; i++)
		ERR_raise(ERR_GET_LIB(codes[i]), ERR_GET_REASON(codes[i]));
}

void
tls_ssl_capture_errors(void *ssl, struct buf *out)
{
	SSL_set_app_data(ssl, out);
	SSL_set_info_callback(ssl, tls_info_cb);
}

/* The first queued OpenSSL error as text (the queue is cleared). */
static const char *
tls_error_text(char *out, size_t len)
{
	unsigned long e = ERR_peek_last_error();

	if (e == 0)
		snprintf(out, len, "unknown error");
	else
		ERR_error_string_n(e, out, len);
	ERR_clear_error();
	return out;
}

/* ---- protocols ----------------------------------------------------------- */

static const struct {
	const char *name;
	int	version;
	long	op;
} tls_protos[] = {
	{ "SSLv2", 0x0200, 0 },
	{ "SSLv3", SSL3_VERSION, SSL_OP_NO_SSLv3 },
	{ "TLSv1", TLS1_VERSION, SSL_OP_NO_TLSv1 },
	{ "TLSv1.1", TLS1_1_VERSION, SSL_OP_NO_TLSv1_1 },
	{ "TLSv1.2", TLS1_2_VERSION, SSL_OP_NO_TLSv1_2 },
	{ "TLSv1.3", TLS1_3_VERSION, SSL_OP_NO_TLSv1_3 },
};
#define TLS_NPROTOS	(sizeof(tls_protos) / sizeof(tls_protos[0]))

static int
tls_proto_index(const char *name)
{
	for (size_t i = 0; i < TLS_NPROTOS; i++)
		if (strcasecmp(tls_protos[i].name, name) == 0)
			return (int)i;
	return -1;
}

/*
 * Postfix's protocol list: "!SSLv2, !SSLv3", "TLSv1.2 TLSv1.3", ">=TLSv1",
 * "<=TLSv1.2".  Sets the context's version range and the SSL_OP_NO_* for
 * the holes in it.  Returns 0 or -1 (bad list).
 */
static int
tls_set_protocols(SSL_CTX *ctx, char *const *items, size_t n)
{
	int	incl = 0, excl = 0, lo = 0, hi = (int)TLS_NPROTOS - 1, i;
	long	ops = 0;

	for (size_t k = 0; k < n; k++) {
		const char *it = items[k];

		if (strncmp(it, ">=", 2) == 0) {
			if ((i = tls_proto_index(it + 2)) < 0)
				return -1;
			lo = i > lo ? i : lo;
		} else if (strncmp(it, "<=", 2) == 0) {
			if ((i = tls_proto_index(it + 2)) < 0)
				return -1;
			hi = i < hi ? i : hi;
		} else if (*it == '!') {
			if ((i = tls_proto_index(it + 1)) < 0)
				return -1;
			excl |= 1 << i;
		} else {
			if ((i = tls_proto_index(it)) < 0)
				return -1;
			incl |= 1 << i;
		}
	}
	if (incl == 0)
		incl = (1 << TLS_NPROTOS) - 1;
	incl &= ~excl;
	/* SSLv2 is never spoken; SSLv3 only if the library still has it. */
	for (i = 0; i < (int)TLS_NPROTOS; i++)
		if (i < lo || i > hi)
			incl &= ~(1 << i);
	incl &= ~1;
	if (incl == 0)
		return -1;
	for (lo = 0; !(incl & (1 << lo)); lo++)
		;
	for (hi = (int)TLS_NPROTOS - 1; !(incl & (1 << hi)); hi--)
		;
	for (i = lo; i <= hi; i++)
		if (!(incl & (1 << i)))
			ops |= tls_protos[i].op;
	SSL_CTX_set_min_proto_version(ctx, tls_protos[lo].version);
	SSL_CTX_set_max_proto_version(ctx, hi == (int)TLS_NPROTOS - 1 ? 0 : tls_protos[hi].version);
	if (ops)
		SSL_CTX_set_options(ctx, (uint64_t)ops);
	return 0;
}

/* ---- ciphers ------------------------------------------------------------- */

/*
 * The grade's OpenSSL list (tls_<grade>_cipherlist) with the exclusions
 * appended as ":!name", as Postfix's tls_set_ciphers() builds it.  Returns
 * NULL with *err_r for an unknown grade or an exclusion with a modifier.
 */
static char *
tls_cipher_list(const struct conf_view *cf, int enforce, int ask_ccert, char **err_r)
{
	const char *grade = conf_str(cf, enforce ? P_smtpd_tls_mandatory_ciphers
				     : P_smtpd_tls_ciphers);
	static const struct {
		const char *name;
		enum param_id id;
	} grades[] = {
		{ "high", P_tls_high_cipherlist }, { "medium", P_tls_medium_cipherlist },
		{ "low", P_tls_low_cipherlist }, { "export", P_tls_export_cipherlist },
		{ "null", P_tls_null_cipherlist },
	};
	const char *list = NULL;
	struct buf b = BUF_INIT;
	enum param_id excl[2] = { P_smtpd_tls_exclude_ciphers, P_smtpd_tls_mandatory_exclude_ciphers };

	for (size_t i = 0; i < sizeof(grades) / sizeof(grades[0]); i++)
		if (strcasecmp(grade, grades[i].name) == 0)
			list = conf_str(cf, grades[i].id);
	if (list == NULL) {
		*err_r = xasprintf("%s = %s: invalid cipher grade",
				   enforce ? "smtpd_tls_mandatory_ciphers" : "smtpd_tls_ciphers",
				   grade);
		return NULL;
	}
	buf_puts(&b, list);
	for (int k = 0; k < (enforce ? 2 : 1); k++) {
		size_t n;
		char *const *items = conf_list(cf, excl[k], &n);

		for (size_t i = 0; i < n; i++) {
			char *copy = xstrdup(items[i]), *save = copy, *tok;

			while ((tok = strsep(&save, ":")) != NULL) {
				if (*tok == '\0')
					continue;
				if (strchr("!+-@", *tok) != NULL) {
					*err_r = xasprintf("%s = %s: invalid unary '!+-@' in cipher "
							   "exclusion: %s", conf_param_name(excl[k]),
							   conf_str(cf, excl[k]), tok);
					free(copy);
					buf_free(&b);
					return NULL;
				}
				buf_printf(&b, ":!%s", tok);
			}
			free(copy);
		}
	}
	if (ask_ccert)
		buf_puts(&b, ":!aNULL");
	return buf_steal(&b);
}

/* ---- certificates -------------------------------------------------------- */

/*
 * smtpd_tls_chain_files: each file holds a key followed by its certificate
 * chain (leaf first); several keys (RSA, ECDSA, Ed25519) may follow one
 * another, in one file or across files, as Postfix reads them.  With mem
 * set, the PEM text is mem (a tls_server_sni_maps value) and files[0] only
 * names it.  Errors start with what ("smtpd_tls_chain_files").
 */
static int
tls_load_chain(SSL_CTX *ctx, const char *what, char *const *files, size_t n, const char *mem,
	       char **err_r)
{
	EVP_PKEY *key = NULL;
	X509   *leaf = NULL;
	STACK_OF(X509) *chain = NULL;
	int	loaded = 0, rc = -1;
	char	etext[256];

	for (size_t f = 0; f < n; f++) {
		BIO    *bio = mem != NULL ? BIO_new_mem_buf(mem, -1) : BIO_new_file(files[f], "r");
		STACK_OF(X509_INFO) *infos;

		if (bio == NULL) {
			*err_r = xasprintf("%s: cannot open %s: %s", what, files[f],
					   tls_error_text(etext, sizeof(etext)));
			goto out;
		}
		infos = PEM_X509_INFO_read_bio(bio, NULL, NULL, NULL);
		BIO_free(bio);
		if (infos == NULL || sk_X509_INFO_num(infos) == 0) {
			*err_r = xasprintf("%s: no PEM key or certificate in %s", what, files[f]);
			sk_X509_INFO_pop_free(infos, X509_INFO_free);
			ERR_clear_error();
			goto out;
		}
		for (int i = 0; i < sk_X509_INFO_num(infos); i++) {
			X509_INFO *xi = sk_X509_INFO_value(infos, i);

			if (xi->x_pkey != NULL && xi->x_pkey->dec_pkey != NULL) {
				if (key != NULL) {
					if (leaf == NULL
					    || SSL_CTX_use_cert_and_key(ctx, leaf, key, chain, 1) != 1)
						goto bad_pair;
					loaded++;
				}
				EVP_PKEY_free(key);
				X509_free(leaf);
				sk_X509_pop_free(chain, X509_free);
				key = xi->x_pkey->dec_pkey;
				EVP_PKEY_up_ref(key);
				leaf = NULL;
				chain = sk_X509_new_null();
			}
			if (xi->x509 != NULL) {
				if (key == NULL) {
					*err_r = xasprintf("%s: %s: a certificate before its private "
							   "key", what, files[f]);
					sk_X509_INFO_pop_free(infos, X509_INFO_free);
					goto out;
				}
				X509_up_ref(xi->x509);
				if (leaf == NULL)
					leaf = xi->x509;
				else
					sk_X509_push(chain, xi->x509);
			}
		}
		sk_X509_INFO_pop_free(infos, X509_INFO_free);
	}
	if (key != NULL) {
		if (leaf == NULL || SSL_CTX_use_cert_and_key(ctx, leaf, key, chain, 1) != 1)
			goto bad_pair;
		loaded++;
	}
	rc = loaded > 0 ? 0 : -1;
	if (rc < 0)
		*err_r = xasprintf("%s: no private key found", what);
	goto out;
bad_pair:
	*err_r = xasprintf("%s: a private key without its matching certificate: %s", what,
			   tls_error_text(etext, sizeof(etext)));
out:
	EVP_PKEY_free(key);
	X509_free(leaf);
	sk_X509_pop_free(chain, X509_free);
	return rc;
}

/* One legacy certificate (chain) file and its key file. */
static int
tls_load_pair(SSL_CTX *ctx, const char *cert, const char *key, const char *cparam,
	      const char *kparam, char **err_r)
{
	char	etext[256];

	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		*err_r = xasprintf("%s = %s: cannot load the certificate: %s", cparam, cert,
				   tls_error_text(etext, sizeof(etext)));
		return -1;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, *key ? key : cert, SSL_FILETYPE_PEM) != 1) {
		*err_r = xasprintf("%s = %s: cannot load the private key: %s", kparam,
				   *key ? key : cert, tls_error_text(etext, sizeof(etext)));
		return -1;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		*err_r = xasprintf("%s = %s: the private key does not match the certificate in "
				   "%s: %s", kparam, *key ? key : cert, cert,
				   tls_error_text(etext, sizeof(etext)));
		return -1;
	}
	return 0;
}

/* ---- the context --------------------------------------------------------- */

/* Ask for a client certificate, accept whatever comes (Postfix logs, then decides). */
static int
tls_verify_cb(int ok, X509_STORE_CTX *x)
{
	(void)ok;
	(void)x;
	return 1;
}

static const struct {
	const char *name;
	uint64_t op;
} tls_ssl_opts[] = {
	{ "ENABLE_MIDDLEBOX_COMPAT", SSL_OP_ENABLE_MIDDLEBOX_COMPAT },
	{ "LEGACY_SERVER_CONNECT", SSL_OP_LEGACY_SERVER_CONNECT },
	{ "NO_COMPRESSION", SSL_OP_NO_COMPRESSION },
	{ "NO_RENEGOTIATION", SSL_OP_NO_RENEGOTIATION },
	{ "NO_SESSION_RESUMPTION_ON_RENEGOTIATION", SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION },
	{ "NO_TICKET", SSL_OP_NO_TICKET },
	{ "PRIORITIZE_CHACHA", SSL_OP_PRIORITIZE_CHACHA },
};

static int
tls_set_ssl_options(SSL_CTX *ctx, const struct conf_view *cf, char **err_r)
{
	size_t n;
	char *const *items = conf_list(cf, P_tls_ssl_options, &n);

	for (size_t i = 0; i < n; i++) {
		uint64_t op = 0;
		char   *end;

		if (strncasecmp(items[i], "0x", 2) == 0) {
			op = strtoull(items[i], &end, 16);
			if (*end != '\0')
				goto bad;
		} else {
			for (size_t k = 0; k < sizeof(tls_ssl_opts) / sizeof(tls_ssl_opts[0]); k++)
				if (strcasecmp(items[i], tls_ssl_opts[k].name) == 0)
					op = tls_ssl_opts[k].op;
			if (op == 0)
				goto bad;
		}
		SSL_CTX_set_options(ctx, op);
		continue;
bad:
		*err_r = xasprintf("tls_ssl_options = %s: unknown option \"%s\"",
				   conf_str(cf, P_tls_ssl_options), items[i]);
		return -1;
	}
	return 0;
}

/*
 * The ECDHE groups: tls_eecdh_auto_curves, those the library knows, in
 * order.  smtpd_tls_eecdh_grade is read and ignored, whatever its value:
 * "As of Postfix 3.6, the value of this parameter is always ignored, and
 * Postfix behaves as though the auto value was chosen" (postconf(5)), and
 * Postfix 3.7's tls_server.c sets the auto curves only.
 */
static int
tls_set_groups(SSL_CTX *ctx, const struct conf_view *cf, char **err_r)
{
	struct buf b = BUF_INIT;
	int	rc = 0;
	size_t	n;
	char  *const *curves = conf_list(cf, P_tls_eecdh_auto_curves, &n);

	for (size_t i = 0; i < n; i++) {
		SSL_CTX *probe = SSL_CTX_new(TLS_server_method());

		if (probe != NULL && SSL_CTX_set1_groups_list(probe, curves[i]) == 1)
			buf_printf(&b, "%s%s", b.len ? ":" : "", curves[i]);
		SSL_CTX_free(probe);
	}
	ERR_clear_error();
	if (b.len == 0 || SSL_CTX_set1_groups_list(ctx, buf_str(&b)) != 1) {
		char	etext[256];

		*err_r = xasprintf("tls_eecdh_auto_curves = %s: no usable curve: %s",
				   conf_str(cf, P_tls_eecdh_auto_curves),
				   tls_error_text(etext, sizeof(etext)));
		rc = -1;
	}
	buf_free(&b);
	return rc;
}

/*
 * smtpd_tls_dh1024_param_file, as Postfix 3.7's tls_dh.c reads it with
 * OpenSSL 3: empty or "auto" is OpenSSL's automatic group; a file that
 * cannot be opened or holds no DH parameters gets Postfix's warning (the
 * library's errors after it) and the automatic group, which is what
 * Postfix's "compiled-in defaults" are with OpenSSL 3.  Parameters that
 * load but that the context refuses (1024 bits: too small for OpenSSL 3's
 * default security level, which Postfix lowers to 0 and mxgate does not)
 * are an error.  warn: log the warnings (the service's own context; not
 * again for each tls_server_sni_maps context).
 */
static int
tls_set_dh(SSL_CTX *ctx, const struct conf_view *cf, int warn, char **err_r)
{
	const char *file = conf_str(cf, P_smtpd_tls_dh1024_param_file);
	OSSL_DECODER_CTX *d;
	EVP_PKEY *dh = NULL;
	FILE   *fp;
	char	etext[256];

	if (*file == '\0' || strcmp(file, "auto") == 0) {
		SSL_CTX_set_dh_auto(ctx, 1);
		return 0;
	}
	if ((fp = fopen(file, "r")) == NULL) {
		if (warn)
			msg_warn("error opening DH parameter file \"%s\": %s -- using compiled-in "
				 "defaults", file, strerror(errno));
		SSL_CTX_set_dh_auto(ctx, 1);
		return 0;
	}
	d = OSSL_DECODER_CTX_new_for_pkey(&dh, "PEM", NULL, "DH",
					  OSSL_KEYMGMT_SELECT_DOMAIN_PARAMETERS, NULL, NULL);
	if (d == NULL || !OSSL_DECODER_from_fp(d, fp) || dh == NULL) {
		if (warn) {
			msg_warn("error decoding DH parameters from file \"%s\" -- using "
				 "compiled-in defaults", file);
			tls_log_errors();
		}
		ERR_clear_error();
		OSSL_DECODER_CTX_free(d);
		EVP_PKEY_free(dh);
		fclose(fp);
		SSL_CTX_set_dh_auto(ctx, 1);
		return 0;
	}
	OSSL_DECODER_CTX_free(d);
	fclose(fp);
	if (SSL_CTX_set0_tmp_dh_pkey(ctx, dh) != 1) {
		*err_r = xasprintf("smtpd_tls_dh1024_param_file = %s: cannot load DH parameters: %s",
				   file, tls_error_text(etext, sizeof(etext)));
		EVP_PKEY_free(dh);	/* set0 takes it only when it succeeds */
		return -1;
	}
	return 0;
}

/*
 * A context with every setting of the view but the certificates: the
 * service's own, and one per distinct tls_server_sni_maps value (the SSL
 * then switches to it, and keeps its protocols, ciphers and options, but
 * takes the certificates, DH parameters, CA store and client CA list of the
 * new context, which therefore has all of them too).
 */
static SSL_CTX *
tls_ctx_new(const struct conf_view *cf, const struct tls_policy *p, int warn, char **err_r)
{
	int	enforce = p->level == TLS_LEVEL_ENCRYPT;
	int	ask = conf_bool(cf, P_smtpd_tls_ask_ccert);
	const char *cafile = conf_str(cf, P_smtpd_tls_CAfile);
	const char *capath = conf_str(cf, P_smtpd_tls_CApath);
	long	cache_timeout = conf_time(cf, P_smtpd_tls_session_cache_timeout);
	size_t nproto;
	char *const *protos = conf_list(cf, enforce ? P_smtpd_tls_mandatory_protocols
					: P_smtpd_tls_protocols, &nproto);
	char   *ciphers = NULL;
	char	etext[256];
	SSL_CTX *ctx;

	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		*err_r = xasprintf("cannot allocate server SSL_CTX: %s",
				   tls_error_text(etext, sizeof(etext)));
		return NULL;
	}
	/* Postfix: a peer that closes without close_notify is not an error. */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION);
	if (tls_set_protocols(ctx, protos, nproto) < 0) {
		*err_r = xasprintf("%s = %s: Invalid TLS protocol list",
				   enforce ? "smtpd_tls_mandatory_protocols" : "smtpd_tls_protocols",
				   conf_str(cf, enforce ? P_smtpd_tls_mandatory_protocols
					    : P_smtpd_tls_protocols));
		goto fail;
	}
	if ((ciphers = tls_cipher_list(cf, enforce, ask, err_r)) == NULL)
		goto fail;
	if (SSL_CTX_set_cipher_list(ctx, ciphers) != 1) {
		*err_r = xasprintf("%s: error setting cipher grade: \"%s\": %s",
				   enforce ? "smtpd_tls_mandatory_ciphers" : "smtpd_tls_ciphers",
				   ciphers, tls_error_text(etext, sizeof(etext)));
		goto fail;
	}
	if ((*cafile || *capath)
	    && SSL_CTX_load_verify_locations(ctx, *cafile ? cafile : NULL,
					     *capath ? capath : NULL) != 1) {
		*err_r = xasprintf("smtpd_tls_CAfile = %s, smtpd_tls_CApath = %s: cannot load the "
				   "CA certificates: %s", cafile, capath,
				   tls_error_text(etext, sizeof(etext)));
		goto fail;
	}
	if (ask) {
		if (*cafile) {
			STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cafile);

			if (names != NULL)
				SSL_CTX_set_client_CA_list(ctx, names);
			ERR_clear_error();
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE, tls_verify_cb);
		SSL_CTX_set_verify_depth(ctx, 9 + 1);
	}
	if (tls_set_groups(ctx, cf, err_r) < 0 || tls_set_dh(ctx, cf, warn, err_r) < 0
	    || tls_set_ssl_options(ctx, cf, err_r) < 0)
		goto fail;
	if (conf_bool(cf, P_tls_preempt_cipherlist))
		SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
	/*
	 * Resumption: the in-process cache (every worker of the process shares
	 * the context) and RFC 5077 tickets, one per handshake as Postfix
	 * issues them; both last smtpd_tls_session_cache_timeout.
	 */
	if (cache_timeout > 0) {
		static const unsigned char sid_ctx[] = "mxgate/TLS";

		SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
		SSL_CTX_set_timeout(ctx, cache_timeout);
		SSL_CTX_set_num_tickets(ctx, 1);
	} else {
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_num_tickets(ctx, 0);
	}
	free(ciphers);
	return ctx;
fail:
	free(ciphers);
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return NULL;
}

/* ---- tls_server_sni_maps ------------------------------------------------- */

/* What one connection's SNI callback needs: its ex_data (tls_conn_index). */
struct tls_conn {
	char   *namaddr;	/* "name[addr]" for the log lines */
	char   *sni;		/* the name that tls_server_sni_maps accepted, or NULL */
};

static int tls_conn_index = -1;
static pthread_once_t tls_conn_once = PTHREAD_ONCE_INIT;

static void
tls_conn_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	struct tls_conn *c = ptr;

	(void)parent;
	(void)ad;
	(void)idx;
	(void)argl;
	(void)argp;
	if (c == NULL)
		return;
	free(c->namaddr);
	free(c->sni);
	free(c);
}

static void
tls_conn_init(void)
{
	tls_conn_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, tls_conn_free);
}

static struct tls_conn *
tls_conn_get(const SSL *ssl)
{
	return tls_conn_index < 0 ? NULL : SSL_get_ex_data(ssl, tls_conn_index);
}

/* One key of the table(s), lowercase, and the context of its value. */
struct tls_sni_key {
	char   *key;
	size_t	ctx;		/* index in tls_sni.ctxs */
};

struct tls_sni {
	struct tls_sni_key *keys;	/* sorted by key */
	size_t	nkeys;
	SSL_CTX **ctxs;
	char  **pems;		/* the PEM text of each context (build time only) */
	size_t	nctxs;
	struct maplist *maps;	/* kept open for map_changed() only */
};

static void
tls_sni_free(struct tls_sni *sni)
{
	if (sni == NULL)
		return;
	for (size_t i = 0; i < sni->nkeys; i++)
		free(sni->keys[i].key);
	for (size_t i = 0; i < sni->nctxs; i++) {
		SSL_CTX_free(sni->ctxs[i]);
		free(sni->pems != NULL ? sni->pems[i] : NULL);
	}
	free(sni->keys);
	free(sni->ctxs);
	free(sni->pems);
	maplist_free(&sni->maps);
	free(sni);
}

static int
tls_sni_cmp(const void *a, const void *b)
{
	return strcmp(((const struct tls_sni_key *)a)->key, ((const struct tls_sni_key *)b)->key);
}

/* Strict base64 (Postfix's base64_decode()): NULL when value is not base64. */
static char *
tls_unbase64(const char *v)
{
	static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t	len = strlen(v), o = 0;
	char   *out;

	if (len == 0 || len % 4 != 0)
		return NULL;
	out = xmalloc(len / 4 * 3 + 1);
	for (size_t i = 0; i < len; i += 4) {
		unsigned acc = 0;
		int	pad = 0;

		for (int k = 0; k < 4; k++) {
			const char *c = v[i + k] != '\0' ? strchr(alpha, v[i + k]) : NULL;

			if (v[i + k] == '=' && i + 4 == len && k >= 2
			    && (k == 3 || v[i + 3] == '=')) {
				pad++;
				acc <<= 6;
			} else if (c == NULL || pad) {
				free(out);
				return NULL;
			} else {
				acc = acc << 6 | (unsigned)(c - alpha);
			}
		}
		out[o++] = (char)(acc >> 16);
		if (pad < 2)
			out[o++] = (char)(acc >> 8 & 0xff);
		if (pad < 1)
			out[o++] = (char)(acc & 0xff);
	}
	out[o] = '\0';
	if (strlen(out) != o) {	/* a NUL inside: not PEM text */
		free(out);
		return NULL;
	}
	return out;
}

/*
 * A source table's value (texthash, inline): file names, separated by
 * commas or spaces, whose contents are joined with a newline, as Postfix's
 * dict_file_to_buf() reads them.  NULL with *why_r.
 */
static char *
tls_read_files(const char *value, char **why_r)
{
	struct buf b = BUF_INIT;
	char   *copy = xstrdup(value), *save = copy, *f;
	int	n = 0;

	while ((f = strsep(&save, ", \t")) != NULL) {
		FILE   *fp;
		char	chunk[4096];
		size_t	got;

		if (*f == '\0')
			continue;
		if ((fp = fopen(f, "re")) == NULL) {
			*why_r = xasprintf("open %s: %s", f, strerror(errno));
			goto fail;
		}
		if (n++ > 0)
			buf_putc(&b, '\n');
		while ((got = fread(chunk, 1, sizeof(chunk), fp)) > 0)
			buf_append(&b, chunk, got);
		if (ferror(fp)) {
			*why_r = xasprintf("read %s: %s", f, strerror(errno));
			fclose(fp);
			goto fail;
		}
		fclose(fp);
	}
	if (n == 0) {
		*why_r = xasprintf("empty pathname list: >>%s<<", value);
		goto fail;
	}
	free(copy);
	return buf_steal(&b);
fail:
	free(copy);
	buf_free(&b);
	return NULL;
}

/* Reading the tables: every entry of one table, and the problems found. */
struct tls_sni_build {
	const struct conf_view *cf;
	const struct tls_policy *p;
	struct tls_sni *sni;
	const struct map *map;
	int	source;		/* the values are file names (texthash, inline) */
	int	later;		/* not the first table */
	struct buf errors;	/* "table T: key K: why", "; " between */
	size_t	cap_keys, cap_ctxs;
};

static void
tls_sni_problem(struct tls_sni_build *b, const char *key, const char *why)
{
	char   *ek = log_escape_dup(key, 200);

	buf_printf(&b->errors, "%stable %s: key %s: %s", b->errors.len ? "; " : "",
		   map_spec(b->map), ek, why);
	free(ek);
}

static int
tls_sni_has(const struct tls_sni *sni, const char *key)
{
	for (size_t i = 0; i < sni->nkeys; i++)
		if (strcmp(sni->keys[i].key, key) == 0)
			return 1;
	return 0;
}

static void
tls_sni_entry(void *ctx, const char *key, const char *value)
{
	struct tls_sni_build *b = ctx;
	struct tls_sni *sni = b->sni;
	char   *pem = NULL, *why = NULL, *lkey = xstrdup(key);
	size_t	c;

	/*
	 * The key as stored: Postfix folds the name it looks up, and postmap
	 * (texthash and inline too) folds the keys it stores.  An earlier
	 * table has the key: Postfix's lookup never sees this one.  (One
	 * table has each key once.)
	 */
	if (b->later && tls_sni_has(sni, lkey))
		goto out;
	if (*value == '\0') {
		tls_sni_problem(b, key, "empty value");
		goto out;
	}
	pem = b->source ? tls_read_files(value, &why) : tls_unbase64(value);
	if (pem == NULL) {
		if (why == NULL) {
			char   *ev = log_escape_dup(value, 30);

			why = xasprintf("malformed BASE64 value: %s (build the table with "
					"\"postmap -F\")", ev);
			free(ev);
		}
		tls_sni_problem(b, key, why);
		goto out;
	}
	for (c = 0; c < sni->nctxs; c++)
		if (strcmp(sni->pems[c], pem) == 0)
			break;
	if (c == sni->nctxs) {
		SSL_CTX *sctx = tls_ctx_new(b->cf, b->p, 0, &why);
		char	name[] = "the value";
		char   *names[] = { name };

		if (sctx == NULL) {
			tls_sni_problem(b, key, why);
			goto out;
		}
		if (tls_load_chain(sctx, "SNI data", names, 1, pem, &why) < 0) {
			SSL_CTX_free(sctx);
			ERR_clear_error();
			tls_sni_problem(b, key, why);
			goto out;
		}
		if (sni->nctxs == b->cap_ctxs) {
			b->cap_ctxs = b->cap_ctxs ? 2 * b->cap_ctxs : 8;
			sni->ctxs = xrealloc(sni->ctxs, b->cap_ctxs * sizeof(*sni->ctxs));
			sni->pems = xrealloc(sni->pems, b->cap_ctxs * sizeof(*sni->pems));
		}
		sni->ctxs[c] = sctx;
		sni->pems[c] = pem;
		pem = NULL;
		sni->nctxs++;
	}
	if (sni->nkeys == b->cap_keys) {
		b->cap_keys = b->cap_keys ? 2 * b->cap_keys : 16;
		sni->keys = xrealloc(sni->keys, b->cap_keys * sizeof(*sni->keys));
	}
	sni->keys[sni->nkeys].key = lkey;
	sni->keys[sni->nkeys].ctx = c;
	sni->nkeys++;
	lkey = NULL;
out:
	free(lkey);
	free(pem);
	free(why);
}

/*
 * Read every table of tls_server_sni_maps now, and make one context per
 * distinct value: the handshake then picks one with no I/O.  The values
 * are Postfix's: base64 of the PEM files' contents in an indexed table
 * (postmap -F), file names in a source table (texthash, inline).
 */
static int
tls_sni_load(const struct conf_view *cf, const struct tls_policy *p, struct tls_sni **sni_r,
	     char **err_r)
{
	size_t	n;
	char *const *specs = conf_list(cf, P_tls_server_sni_maps, &n);
	struct maplist *l;
	struct tls_sni_build b = { .cf = cf, .p = p, .errors = BUF_INIT };
	char   *err = NULL;

	*sni_r = NULL;
	if (n == 0)
		return 0;
	if ((l = maplist_open(specs, n, &err)) == NULL) {
		*err_r = xasprintf("tls_server_sni_maps: %s", err);
		free(err);
		return -1;
	}
	b.sni = xcalloc(1, sizeof(*b.sni));
	for (size_t i = 0; i < maplist_count(l); i++) {
		const char *type;

		b.map = maplist_get(l, i);
		b.later = i > 0;
		type = map_type_name(b.map);
		b.source = strcmp(type, "texthash") == 0 || strcmp(type, "inline") == 0;
		if (map_each(b.map, tls_sni_entry, &b, &err) < 0) {
			buf_printf(&b.errors, "%s%s", b.errors.len ? "; " : "", err);
			free(err);
		}
	}
	b.sni->maps = l;
	if (b.errors.len > 0) {
		*err_r = xasprintf("tls_server_sni_maps: %s", buf_str(&b.errors));
		buf_free(&b.errors);
		tls_sni_free(b.sni);
		return -1;
	}
	buf_free(&b.errors);
	for (size_t i = 0; i < b.sni->nctxs; i++)
		free(b.sni->pems[i]);
	free(b.sni->pems);
	b.sni->pems = NULL;
	qsort(b.sni->keys, b.sni->nkeys, sizeof(*b.sni->keys), tls_sni_cmp);
	*sni_r = b.sni;
	return 0;
}

static SSL_CTX *
tls_sni_find(const struct tls_sni *sni, const char *name)
{
	struct tls_sni_key probe = { .key = (char *)name }, *hit;

	hit = bsearch(&probe, sni->keys, sni->nkeys, sizeof(*sni->keys), tls_sni_cmp);
	return hit != NULL ? sni->ctxs[hit->ctx] : NULL;
}

/*
 * The client's SNI, as Postfix's server_sni_callback(): the name, then
 * each parent domain as ".example.com"; a match switches the connection to
 * that value's context, no match keeps the default chain.  Memory only.
 */
static int
tls_sni_cb(SSL *ssl, int *alert, void *arg)
{
	struct tls_server *srv = arg;
	struct tls_conn *c = tls_conn_get(ssl);
	const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	const char *namaddr = c != NULL && c->namaddr != NULL ? c->namaddr : "unknown";
	const char *cp;
	char   *lower;
	SSL_CTX *ctx = NULL;

	(void)alert;
	if (srv->sni == NULL || sni == NULL || *sni == '\0')
		return SSL_TLSEXT_ERR_NOACK;
	if (!hostname_valid(sni)) {
		char   *es = log_escape_dup(sni, 255);

		msg_warn("TLS SNI from %s is invalid: %s", namaddr, es);
		free(es);
		return SSL_TLSEXT_ERR_NOACK;
	}
	/* TLS 1.3 HelloRetryRequest: the callback runs again, with the same name */
	if (c != NULL && c->sni != NULL) {
		if (strcmp(sni, c->sni) == 0)
			return SSL_TLSEXT_ERR_OK;
		msg_warn("TLS SNI changed from %s initially %s, %s after hello retry",
			 namaddr, c->sni, sni);
		return SSL_TLSEXT_ERR_NOACK;
	}
	lower = xstrdup(sni);
	for (char *q = lower; *q; q++)
		*q = (char)(*q >= 'A' && *q <= 'Z' ? *q - 'A' + 'a' : *q);
	cp = lower;
	do {
		ctx = tls_sni_find(srv->sni, cp);
	} while (ctx == NULL && (cp = strchr(cp + 1, '.')) != NULL);
	free(lower);
	if (ctx == NULL) {
		msg_info("TLS SNI %s from %s not matched, using default chain", sni, namaddr);
		return SSL_TLSEXT_ERR_NOACK;
	}
	SSL_set_SSL_CTX(ssl, ctx);
	if (c != NULL)
		c->sni = xstrdup(sni);
	return SSL_TLSEXT_ERR_OK;
}

int
tls_server_build(const struct conf_view *cf, const struct tls_policy *p,
		 struct tls_server **srv_r, char **warn_r, char **err_r)
{
	const char *cert = conf_str(cf, P_smtpd_tls_cert_file);
	const char *key = conf_str(cf, P_smtpd_tls_key_file);
	const char *eccert = conf_str(cf, P_smtpd_tls_eccert_file);
	const char *dcert = conf_str(cf, P_smtpd_tls_dcert_file);
	size_t nchain;
	char *const *chain = conf_list(cf, P_smtpd_tls_chain_files, &nchain);
	struct tls_sni *sni = NULL;
	SSL_CTX *ctx;

	*srv_r = NULL;
	*warn_r = NULL;
	*err_r = NULL;
	if (strcasecmp(cert, "none") == 0)
		cert = "";
	if (*cert == '\0' && *eccert == '\0' && *dcert == '\0' && nchain == 0) {
		*warn_r = xstrdup("No server certs available. TLS won't be enabled");
		return 0;
	}
	if ((ctx = tls_ctx_new(cf, p, 1, err_r)) == NULL)
		return -1;
	/* Postfix's chain files win over the legacy files (it warns when both are set). */
	if (nchain > 0) {
		if (*cert || *eccert || *dcert)
			msg_warn("Both smtpd_tls_chain_files and one or more of the legacy "
				 "smtpd_tls_cert_file, smtpd_tls_eccert_file or smtpd_tls_dcert_file "
				 "are non-empty; the legacy parameters will be ignored");
		if (tls_load_chain(ctx, "smtpd_tls_chain_files", chain, nchain, NULL,
				   err_r) < 0)
			goto fail;
	} else {
		if (*cert && tls_load_pair(ctx, cert, key, "smtpd_tls_cert_file",
					   "smtpd_tls_key_file", err_r) < 0)
			goto fail;
		if (*eccert && tls_load_pair(ctx, eccert, conf_str(cf, P_smtpd_tls_eckey_file),
					     "smtpd_tls_eccert_file", "smtpd_tls_eckey_file",
					     err_r) < 0)
			goto fail;
		if (*dcert && tls_load_pair(ctx, dcert, conf_str(cf, P_smtpd_tls_dkey_file),
					    "smtpd_tls_dcert_file", "smtpd_tls_dkey_file",
					    err_r) < 0)
			goto fail;
	}
	if (tls_sni_load(cf, p, &sni, err_r) < 0)
		goto fail;
	pthread_once(&tls_conn_once, tls_conn_init);
	*srv_r = xcalloc(1, sizeof(**srv_r));
	atomic_init(&(*srv_r)->refs, 1);
	(*srv_r)->ctx = ctx;
	(*srv_r)->sni = sni;
	if (sni != NULL) {
		SSL_CTX_set_tlsext_servername_callback(ctx, tls_sni_cb);
		SSL_CTX_set_tlsext_servername_arg(ctx, *srv_r);
	}
	return 0;
fail:
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return -1;
}

struct tls_server *
tls_server_ref(struct tls_server *srv)
{
	if (srv != NULL)
		atomic_fetch_add(&srv->refs, 1);
	return srv;
}

void
tls_server_free(struct tls_server **srvp)
{
	struct tls_server *srv = *srvp;

	*srvp = NULL;
	if (srv == NULL || atomic_fetch_sub(&srv->refs, 1) != 1)
		return;
	SSL_CTX_free(srv->ctx);
	tls_sni_free(srv->sni);
	free(srv);
}

int
tls_server_has_indexed(const struct tls_server *srv)
{
	return srv != NULL && srv->sni != NULL && maplist_has_indexed(srv->sni->maps);
}

const char *
tls_server_changed(const struct tls_server *srv)
{
	return tls_server_has_indexed(srv) ? maplist_changed(srv->sni->maps) : NULL;
}

void *
tls_server_ssl_new(struct tls_server *srv)
{
	SSL    *ssl = SSL_new(srv->ctx);

	if (ssl != NULL && tls_conn_index >= 0
	    && SSL_set_ex_data(ssl, tls_conn_index, xcalloc(1, sizeof(struct tls_conn))) != 1) {
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

void
tls_ssl_set_peer(void *ssl, const char *namaddr)
{
	struct tls_conn *c = tls_conn_get(ssl);

	if (c != NULL) {
		free(c->namaddr);
		c->namaddr = xstrdup(namaddr);
	}
}

void
tls_ssl_free(void *ssl)
{
	SSL_free(ssl);
}

/* ---- after the handshake ------------------------------------------------- */

static void
tls_copy(char *out, size_t len, const char *s)
{
	snprintf(out, len, "%s", s ? s : "");
}

/* A key's signature algorithm name, as Postfix names it (RSA-PSS, ECDSA, ED25519 ...). */
static void
tls_key_sig(EVP_PKEY *pk, char *name, size_t nlen, char *curve, size_t clen, int *bits)
{
	int	nid = EVP_PKEY_get_base_id(pk);

	switch (nid) {
	case EVP_PKEY_RSA:
		tls_copy(name, nlen, "RSA-PSS");
		*bits = EVP_PKEY_get_bits(pk);
		break;
	case EVP_PKEY_EC:
		tls_copy(name, nlen, "ECDSA");
		if (!EVP_PKEY_get_group_name(pk, curve, clen, NULL))
			curve[0] = '\0';
		break;
	default:
		tls_copy(name, nlen, OBJ_nid2sn(nid));
		break;
	}
}

void
tls_info_get(void *vssl, struct tls_info *info)
{
	SSL    *ssl = vssl;
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
	X509   *peer;
	EVP_PKEY *pk;
	int	nid;

	memset(info, 0, sizeof(*info));
	tls_copy(info->protocol, sizeof(info->protocol), SSL_get_version(ssl));
	tls_copy(info->cipher, sizeof(info->cipher), SSL_CIPHER_get_name(c));
	info->usebits = SSL_CIPHER_get_bits(c, &info->algbits);
	info->reused = SSL_session_reused(ssl);
	/* Postfix logs "to <name>" only for a name that tls_server_sni_maps accepted */
	if (tls_conn_get(ssl) != NULL && tls_conn_get(ssl)->sni != NULL)
		tls_copy(info->sni, sizeof(info->sni), tls_conn_get(ssl)->sni);
	if ((peer = SSL_get0_peer_certificate(ssl)) != NULL) {
		X509_NAME *issuer = X509_get_issuer_name(peer);

		info->peer_cert = 1;
		info->peer_trusted = SSL_get_verify_result(ssl) == X509_V_OK;
		if (X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName,
					      info->peer_cn, sizeof(info->peer_cn)) < 0)
			info->peer_cn[0] = '\0';
		/* Postfix's issuer: its CN, else its organization */
		if (X509_NAME_get_text_by_NID(issuer, NID_commonName, info->issuer_cn,
					      sizeof(info->issuer_cn)) < 0
		    && X509_NAME_get_text_by_NID(issuer, NID_organizationName, info->issuer_cn,
						 sizeof(info->issuer_cn)) < 0)
			info->issuer_cn[0] = '\0';
	}
	/* Postfix's tls_get_signature_params(): TLS 1.3 only. */
	if (SSL_version(ssl) < TLS1_3_VERSION)
		return;
	if (SSL_get_peer_tmp_key(ssl, &pk) == 1) {
		switch (nid = EVP_PKEY_get_base_id(pk)) {
		case EVP_PKEY_DH:
			tls_copy(info->kex, sizeof(info->kex), "DHE");
			info->kex_bits = EVP_PKEY_get_bits(pk);
			break;
		case EVP_PKEY_EC:
			tls_copy(info->kex, sizeof(info->kex), "ECDHE");
			if (!EVP_PKEY_get_group_name(pk, info->kex_curve, sizeof(info->kex_curve),
						     NULL))
				info->kex_curve[0] = '\0';
			break;
		default:
			tls_copy(info->kex, sizeof(info->kex), OBJ_nid2sn(EVP_PKEY_type(nid)));
			break;
		}
		EVP_PKEY_free(pk);
	}
	if (SSL_get_certificate(ssl) != NULL
	    && (pk = X509_get0_pubkey(SSL_get_certificate(ssl))) != NULL) {
		tls_key_sig(pk, info->sig, sizeof(info->sig), info->sig_curve,
			    sizeof(info->sig_curve), &info->sig_bits);
		if (SSL_get_signature_nid(ssl, &nid) && nid != NID_undef)
			tls_copy(info->sig_dgst, sizeof(info->sig_dgst), OBJ_nid2sn(nid));
	}
	if (peer != NULL && (pk = X509_get0_pubkey(peer)) != NULL) {
		tls_key_sig(pk, info->csig, sizeof(info->csig), info->csig_curve,
			    sizeof(info->csig_curve), &info->csig_bits);
		if (SSL_get_peer_signature_nid(ssl, &nid) && nid != NID_undef)
			tls_copy(info->csig_dgst, sizeof(info->csig_dgst), OBJ_nid2sn(nid));
	}
	ERR_clear_error();
}

/* " name (curve)" or " name (N bits)", then " <what>-digest D". */
static void
tls_format_sig(struct buf *out, const char *what, const char *name, const char *curve,
	       int bits, const char *dgst)
{
	buf_printf(out, "%s-signature %s", what, name);
	if (*curve)
		buf_printf(out, " (%s)", curve);
	else if (bits > 0)
		buf_printf(out, " (%d bits)", bits);
	if (*dgst)
		buf_printf(out, " %s-digest %s", what, dgst);
}

static void
tls_format_kex(struct buf *out, const struct tls_info *i)
{
	buf_printf(out, "key-exchange %s", i->kex);
	if (*i->kex_curve)
		buf_printf(out, " (%s)", i->kex_curve);
	else if (i->kex_bits > 0)
		buf_printf(out, " (%d bits)", i->kex_bits);
}

void
tls_format_summary(struct buf *out, const struct tls_info *i, const char *namaddr)
{
	buf_printf(out, "%s TLS connection %s from %s%s%s: %s with cipher %s (%d/%d bits)",
		   !i->peer_cert ? "Anonymous" : i->peer_trusted ? "Trusted" : "Untrusted",
		   "established", namaddr, *i->sni ? " to " : "", i->sni, i->protocol,
		   i->cipher, i->usebits, i->algbits);
	if (*i->kex) {
		buf_putc(out, ' ');
		tls_format_kex(out, i);
	}
	if (*i->sig) {
		buf_putc(out, ' ');
		tls_format_sig(out, "server", i->sig, i->sig_curve, i->sig_bits, i->sig_dgst);
	}
	if (*i->csig) {
		buf_putc(out, ' ');
		tls_format_sig(out, "client", i->csig, i->csig_curve, i->csig_bits, i->csig_dgst);
	}
}

/* Postfix's comment_sanitize(), roughly: no parentheses or quotes break the comment. */
static void
tls_comment_text(struct buf *out, const char *s)
{
	for (; *s; s++)
		buf_putc(out, (unsigned char)*s < 0x20 || *s == 0x7f || *s == '(' || *s == ')'
			 || *s == '"' || *s == '\\' ? '?' : *s);
}

void
tls_format_received(struct buf *out, const struct tls_info *i, int ask_ccert)
{
	int	cont = 0;

	buf_printf(out, "\t(using %s with cipher %s (%d/%d bits)", i->protocol, i->cipher,
		   i->usebits, i->algbits);
	if (*i->kex) {
		buf_puts(out, "\n\t ");
		tls_format_kex(out, i);
		cont = 1;
	}
	if (*i->sig) {
		buf_puts(out, cont ? " " : "\n\t ");
		tls_format_sig(out, "server", i->sig, i->sig_curve, i->sig_bits, i->sig_dgst);
	}
	if (*i->csig) {
		buf_puts(out, "\n\t ");
		tls_format_sig(out, "client", i->csig, i->csig_curve, i->csig_bits, i->csig_dgst);
	}
	buf_putc(out, ')');
	if (i->peer_cert) {
		buf_puts(out, "\n\t(Client CN \"");
		tls_comment_text(out, i->peer_cn);
		buf_puts(out, "\", Issuer \"");
		tls_comment_text(out, i->issuer_cn);
		buf_printf(out, "\" (%s))", i->peer_trusted ? "verified OK" : "not verified");
	} else {
		buf_puts(out, ask_ccert ? "\n\t(Client did not present a certificate)"
			 : "\n\t(No client certificate requested)");
	}
}
