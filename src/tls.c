/* tls.c - OpenSSL client context, per-session SSL, and explanations. */
#include <arpa/inet.h>

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/util.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "escape.h"
#include "hostport.h"
#include "options.h"
#include "strbuf.h"
#include "tls.h"
#include "xmalloc.h"

static int tls_peer_idx = -1;

static void
tls_x509_name(X509_NAME *name, char *buf, size_t size)
{
	BIO *bio = BIO_new(BIO_s_mem());
	struct strbuf sb;
	char *data;
	long n;

	buf[0] = '\0';
	if (bio == NULL)
		return;
	X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
	n = BIO_get_mem_data(bio, &data);
	strbuf_init(&sb, size - 1);
	if (n > 0)
		escape_append(&sb, data, (size_t)n);
	snprintf(buf, size, "%s", strbuf_str(&sb));
	strbuf_free(&sb);
	BIO_free(bio);
}

static void
tls_asn1_time(const ASN1_TIME *t, char *buf, size_t size)
{
	struct tm tm;

	/* ISO 8601 in UTC, like the transcript's own timestamps. */
	if (ASN1_TIME_to_tm(t, &tm) != 1 ||
	    strftime(buf, size, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(buf, size, "?");
}

/* Records every verification error; fails the handshake only when enforcing. */
static int
tls_verify_cb(int ok, X509_STORE_CTX *ctx)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(ctx,
	    SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tls_peer *peer = ssl ? SSL_get_ex_data(ssl, tls_peer_idx) : NULL;
	X509 *cert = X509_STORE_CTX_get_current_cert(ctx);
	X509 *target = X509_STORE_CTX_get0_cert(ctx);
	char nb[40], na[40];

	if (peer == NULL)
		return ok;
	if (peer->leaf == NULL && target != NULL && X509_up_ref(target) == 1)
		peer->leaf = target;
	if (ok)
		return 1;
	if (peer->nerrors++ == 0) {
		peer->error = X509_STORE_CTX_get_error(ctx);
		peer->depth = X509_STORE_CTX_get_error_depth(ctx);
		if (cert != NULL) {
			tls_x509_name(X509_get_subject_name(cert), peer->subject,
			    sizeof peer->subject);
			tls_asn1_time(X509_get0_notBefore(cert), nb, sizeof nb);
			tls_asn1_time(X509_get0_notAfter(cert), na, sizeof na);
			snprintf(peer->validity, sizeof peer->validity,
			    "valid from %s until %s", nb, na);
		}
	}
	return peer->enforce ? 0 : 1;
}

/*
 * Renegotiation is refused (SSL_OP_NO_RENEGOTIATION): OpenSSL answers a
 * server's request with a warning alert, and most servers then end TLS with
 * a bare "handshake failure". Remember the refusal, so that the transcript
 * can say what really happened.
 */
static void
tls_info_cb(const SSL *ssl, int where, int ret)
{
	struct tls_peer *peer;

	if ((where & SSL_CB_WRITE_ALERT) != SSL_CB_WRITE_ALERT ||
	    (ret & 0xff) != SSL_AD_NO_RENEGOTIATION)
		return;
	if ((peer = SSL_get_ex_data(ssl, tls_peer_idx)) != NULL)
		peer->reneg_refused = 1;
}

SSL_CTX *
tls_ctx_new(const struct options *o, char **cause)
{
	SSL_CTX *ctx;

	if (tls_peer_idx == -1)
		tls_peer_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		xasprintf(cause, "cannot create a TLS context");
		return NULL;
	}
	/* Debian's openssl.cnf sets no floor; do not rely on it. */
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/*
	 * SMTP detects truncation itself (221 after QUIT, the reply after the
	 * end of DATA), so a peer that closes without close_notify is noted in
	 * the transcript rather than treated as an error.
	 */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF |
	    SSL_OP_NO_RENEGOTIATION);
	/* An idle session holds no TLS record buffers (34 KiB otherwise). */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (o->ca_file != NULL && access(o->ca_file, R_OK) != 0) {
		xasprintf(cause, "--ca-file %s: %s", o->ca_file, strerror(errno));
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (o->ca_path != NULL && access(o->ca_path, R_OK | X_OK) != 0) {
		xasprintf(cause, "--ca-path %s: %s", o->ca_path, strerror(errno));
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (o->ca_file != NULL || o->ca_path != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, o->ca_file, o->ca_path) != 1) {
			unsigned long e = ERR_peek_last_error();

			xasprintf(cause, "cannot load CA certificates from %s: %s",
			    o->ca_file != NULL ? o->ca_file : o->ca_path,
			    e ? ERR_reason_error_string(e) : "no certificates found");
			ERR_clear_error();
			SSL_CTX_free(ctx);
			return NULL;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		xasprintf(cause, "cannot load the system trust store");
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, tls_verify_cb);
	SSL_CTX_set_info_callback(ctx, tls_info_cb);
	return ctx;
}

SSL *
tls_ssl_new(SSL_CTX *ctx, const char *name, struct tls_peer *peer, char **cause)
{
	SSL *ssl;
	int ok;

	if ((ssl = SSL_new(ctx)) == NULL) {
		xasprintf(cause, "cannot create a TLS session");
		return NULL;
	}
	snprintf(peer->name, sizeof peer->name, "%s", name);
	peer->error = X509_V_OK;
	SSL_set_ex_data(ssl, tls_peer_idx, peer);
	if (hostport_is_ip(name)) {
		/* RFC 6066 forbids IP literals in SNI; check the address instead. */
		ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name);
	} else {
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		ok = SSL_set_tlsext_host_name(ssl, name) == 1 &&
		    SSL_set1_host(ssl, name) == 1;
	}
	if (!ok) {
		xasprintf(cause, "cannot set the name to verify (%s)", name);
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

void
tls_peer_clear(struct tls_peer *peer)
{
	X509_free(peer->leaf);
	memset(peer, 0, sizeof *peer);
}

void
tls_describe_session(SSL *ssl, struct strbuf *sb)
{
	strbuf_printf(sb, "%s cipher %s", SSL_get_version(ssl),
	    SSL_get_cipher_name(ssl));
}

/* "DNS:a, IP:b"; returns the number of names, 0 if there is no SAN. */
static int
tls_describe_san(X509 *cert, struct strbuf *sb)
{
	GENERAL_NAMES *names;
	const GENERAL_NAME *gn;
	const unsigned char *ip;
	char buf[64];
	int i, n = 0, len;

	names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	if (names == NULL)
		return 0;
	for (i = 0; i < sk_GENERAL_NAME_num(names); i++) {
		gn = sk_GENERAL_NAME_value(names, i);
		if (gn->type == GEN_DNS) {
			strbuf_adds(sb, n++ ? ", DNS:" : "DNS:");
			escape_append(sb, ASN1_STRING_get0_data(gn->d.dNSName),
			    (size_t)ASN1_STRING_length(gn->d.dNSName));
		} else if (gn->type == GEN_IPADD) {
			ip = ASN1_STRING_get0_data(gn->d.iPAddress);
			len = ASN1_STRING_length(gn->d.iPAddress);
			if (len == 4)
				inet_ntop(AF_INET, ip, buf, sizeof buf);
			else if (len == 16)
				inet_ntop(AF_INET6, ip, buf, sizeof buf);
			else
				snprintf(buf, sizeof buf, "?");
			strbuf_printf(sb, "%sIP:%s", n++ ? ", " : "", buf);
		}
	}
	GENERAL_NAMES_free(names);
	return n;
}

void
tls_describe_cert(X509 *cert, struct strbuf *sb)
{
	char subject[256], issuer[256], na[40];

	tls_x509_name(X509_get_subject_name(cert), subject, sizeof subject);
	tls_x509_name(X509_get_issuer_name(cert), issuer, sizeof issuer);
	tls_asn1_time(X509_get0_notAfter(cert), na, sizeof na);
	strbuf_printf(sb, "subject \"%s\" issuer \"%s\" SAN ", subject, issuer);
	if (tls_describe_san(cert, sb) == 0)
		strbuf_adds(sb, "(none)");
	strbuf_printf(sb, " valid until %s", na);
}

void
tls_cert_facts(X509 *cert, struct tls_cert_facts *f)
{
	struct strbuf sb;

	tls_x509_name(X509_get_subject_name(cert), f->subject, sizeof f->subject);
	tls_x509_name(X509_get_issuer_name(cert), f->issuer, sizeof f->issuer);
	tls_asn1_time(X509_get0_notAfter(cert), f->not_after,
	    sizeof f->not_after);
	strbuf_init(&sb, sizeof f->san - 1);
	tls_describe_san(cert, &sb);
	snprintf(f->san, sizeof f->san, "%s", strbuf_str(&sb));
	strbuf_free(&sb);
}

/* The names a certificate answers to: its SANs, else its common name. */
static void
tls_presented_names(X509 *cert, struct strbuf *sb)
{
	char cn[256];
	int idx;
	X509_NAME_ENTRY *e;
	ASN1_STRING *s;

	if (tls_describe_san(cert, sb) > 0)
		return;
	idx = X509_NAME_get_index_by_NID(X509_get_subject_name(cert),
	    NID_commonName, -1);
	if (idx < 0) {
		strbuf_adds(sb, "no names");
		return;
	}
	e = X509_NAME_get_entry(X509_get_subject_name(cert), idx);
	s = X509_NAME_ENTRY_get_data(e);
	snprintf(cn, sizeof cn, "CN=");
	strbuf_adds(sb, cn);
	escape_append(sb, ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s));
}

void
tls_describe_verify(const struct tls_peer *peer, struct strbuf *why,
    struct strbuf *detail)
{
	const char *text = X509_verify_cert_error_string(peer->error);

	switch (peer->error) {
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
		strbuf_printf(why, "upstream certificate does not match %s "
		    "(presented: ", peer->name);
		if (peer->leaf != NULL)
			tls_presented_names(peer->leaf, why);
		else
			strbuf_adds(why, "no certificate");
		strbuf_adds(why, ")");
		break;
	case X509_V_ERR_CERT_HAS_EXPIRED:
		strbuf_printf(why, "upstream certificate has expired (%s)",
		    peer->validity);
		break;
	case X509_V_ERR_CERT_NOT_YET_VALID:
		strbuf_printf(why, "upstream certificate is not yet valid (%s)",
		    peer->validity);
		break;
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_CERT_UNTRUSTED:
		strbuf_printf(why, "upstream certificate is not trusted: %s", text);
		break;
	default:
		strbuf_printf(why, "upstream certificate failed verification: %s",
		    text);
		break;
	}
	/* Which certificate of the chain, for the transcript. */
	strbuf_printf(detail, "%sOpenSSL error %d at depth %d, subject \"%s\"",
	    detail == why ? " (" : "", peer->error, peer->depth, peer->subject);
	if (detail == why)
		strbuf_adds(detail, ")");
}

void
tls_describe_error(struct bufferevent *bev, struct strbuf *sb, int *not_tls)
{
	unsigned long e;
	const char *reason;
	int n = 0, sockerr = EVUTIL_SOCKET_ERROR();
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	const struct tls_peer *peer = ssl != NULL ?
	    SSL_get_ex_data(ssl, tls_peer_idx) : NULL;

	*not_tls = 0;
	while ((e = bufferevent_get_openssl_error(bev)) != 0) {
		/* libevent mixes SSL_get_error() values into the queue (lib 0). */
		if (ERR_GET_LIB(e) == 0)
			continue;
		reason = ERR_reason_error_string(e);
		if (reason == NULL)
			reason = "unknown OpenSSL error";
		if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
		    (ERR_GET_REASON(e) == SSL_R_WRONG_VERSION_NUMBER ||
		    ERR_GET_REASON(e) == SSL_R_PACKET_LENGTH_TOO_LONG ||
		    ERR_GET_REASON(e) == SSL_R_UNKNOWN_PROTOCOL))
			*not_tls = 1;
		strbuf_printf(sb, "%s%s", n++ ? "; " : "", reason);
	}
	if (peer != NULL && peer->reneg_refused) {
		strbuf_adds(sb, n++ ? ", after the upstream asked to renegotiate "
		    "TLS, which smtptap refuses" : "the upstream asked to "
		    "renegotiate TLS, which smtptap refuses");
	}
	if (n == 0) {
		if (sockerr != 0)
			strbuf_adds(sb, evutil_socket_error_to_string(sockerr));
		else
			strbuf_adds(sb, "connection closed by upstream");
	}
}
