/* tls.c - OpenSSL client contexts, per-session SSL, and explanations. */
#include <sys/stat.h>

#include <arpa/inet.h>

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
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

static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void
tls_init(void)
{
	tls_peer_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/*
 * The whole recipe of a client context: it reads nothing else, so that two
 * services whose trust is the same may share one context. A setting that
 * comes to shape the context must be added here (and to tls_trust_same).
 */
static SSL_CTX *
tls_ctx_new(const char *ca_file, const char *ca_path, char **cause)
{
	SSL_CTX *ctx;
	int err;

	pthread_once(&tls_once, tls_init);
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
	if (ca_file != NULL && access(ca_file, R_OK) != 0) {
		err = errno;
		xasprintf(cause, "--ca-file %s: %s", ca_file, strerror(err));
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (ca_path != NULL && access(ca_path, R_OK | X_OK) != 0) {
		err = errno;
		xasprintf(cause, "--ca-path %s: %s", ca_path, strerror(err));
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (ca_file != NULL || ca_path != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, ca_file, ca_path) != 1) {
			unsigned long e = ERR_peek_last_error();

			xasprintf(cause, "cannot load CA certificates from %s: %s",
			    ca_file != NULL ? ca_file : ca_path,
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
	/* Verification is always on; --no-verify only stops enforcing it. */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, tls_verify_cb);
	SSL_CTX_set_info_callback(ctx, tls_info_cb);
	return ctx;
}

/*
 * Which version of the CA files a context was loaded from: a hash of what
 * stat() says of each (a directory: of every entry, in any order). A file
 * edited, replaced or touched has a new identity, so a reload reads it again.
 */
#define FNV_OFFSET	0xcbf29ce484222325ULL
#define FNV_PRIME	0x100000001b3ULL

static uint64_t
tls_fnv(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;

	while (len-- > 0)
		h = (h ^ *p++) * FNV_PRIME;
	return h;
}

static uint64_t
tls_stat_id(uint64_t h, const char *path)
{
	struct stat st;
	int64_t f[8];

	h = tls_fnv(h, path, strlen(path) + 1);
	if (stat(path, &st) != 0) {
		f[0] = errno;
		return tls_fnv(h, f, sizeof f[0]);
	}
	f[0] = (int64_t)st.st_dev;
	f[1] = (int64_t)st.st_ino;
	f[2] = (int64_t)st.st_size;
	f[3] = (int64_t)st.st_mode;
	f[4] = (int64_t)st.st_mtim.tv_sec;
	f[5] = (int64_t)st.st_mtim.tv_nsec;
	f[6] = (int64_t)st.st_ctim.tv_sec;
	f[7] = (int64_t)st.st_ctim.tv_nsec;
	return tls_fnv(h, f, sizeof f);
}

static uint64_t
tls_dir_id(uint64_t h, const char *dir)
{
	DIR *dp;
	struct dirent *de;
	char *path;
	uint64_t sum = 0;

	h = tls_stat_id(h, dir);
	if ((dp = opendir(dir)) == NULL)
		return h;
	/* OpenSSL reads a hashed directory lazily: any entry may matter. */
	while ((de = readdir(dp)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		xasprintf(&path, "%s/%s", dir, de->d_name);
		sum += tls_stat_id(FNV_OFFSET, path);
		free(path);
	}
	closedir(dp);
	return tls_fnv(h, &sum, sizeof sum);
}

/* Every directory of a ':'-separated list, as OpenSSL reads SSL_CERT_DIR. */
static uint64_t
tls_dirs_id(uint64_t h, const char *list)
{
	char *copy = xstrdup(list), *p = copy, *dir;

	while ((dir = strsep(&p, ":")) != NULL)
		if (*dir != '\0')
			h = tls_dir_id(h, dir);
	free(copy);
	return h;
}

static uint64_t
tls_trust_id(const char *ca_file, const char *ca_path)
{
	const char *file, *dir;
	uint64_t h = FNV_OFFSET;

	if (ca_file != NULL || ca_path != NULL) {
		if (ca_file != NULL)
			h = tls_stat_id(h, ca_file);
		if (ca_path != NULL)
			h = tls_dir_id(h, ca_path);
		return h;
	}
	/* The system store, where SSL_CTX_set_default_verify_paths looks. */
	if ((file = getenv(X509_get_default_cert_file_env())) == NULL)
		file = X509_get_default_cert_file();
	if ((dir = getenv(X509_get_default_cert_dir_env())) == NULL)
		dir = X509_get_default_cert_dir();
	h = tls_stat_id(h, file);
	return tls_dirs_id(h, dir);
}

/* One context of a set: its trust settings, and the context or why not. */
struct tls_ctxent {
	char		*ca_file;	/* NULL: none given */
	char		*ca_path;
	uint64_t	 id;		/* tls_trust_id() when it was loaded */
	SSL_CTX		*ctx;		/* NULL: cause says why */
	char		*cause;
};

/* Open addressing on the settings' names; index holds entry + 1. */
struct tls_ctxset {
	struct tls_ctxent	*ents;
	size_t			 nents;
	size_t			*index;
	size_t			 mask;		/* index has mask + 1 slots */
	size_t			 kept;		/* contexts taken from prev */
	size_t			 released;	/* entries dropped so far */
};

static int
tls_streq(const char *a, const char *b)
{
	return a == NULL || b == NULL ? a == b : strcmp(a, b) == 0;
}

static size_t
tls_slot_hash(const char *ca_file, const char *ca_path)
{
	uint64_t h = FNV_OFFSET;

	h = ca_file != NULL ? tls_fnv(h, ca_file, strlen(ca_file) + 1) :
	    tls_fnv(h, "", 1);
	h = ca_path != NULL ? tls_fnv(h, ca_path, strlen(ca_path) + 1) :
	    tls_fnv(h, "", 1);
	return (size_t)h;
}

static struct tls_ctxent *
tls_ctxset_find(const struct tls_ctxset *set, const char *ca_file,
    const char *ca_path)
{
	size_t i;
	struct tls_ctxent *e;

	if (set == NULL || set->index == NULL)
		return NULL;
	for (i = tls_slot_hash(ca_file, ca_path) & set->mask;
	    set->index[i] != 0; i = (i + 1) & set->mask) {
		e = &set->ents[set->index[i] - 1];
		if (tls_streq(e->ca_file, ca_file) && tls_streq(e->ca_path, ca_path))
			return e;
	}
	return NULL;
}

static void
tls_ctxset_insert(struct tls_ctxset *set, size_t i)
{
	size_t j = tls_slot_hash(set->ents[i].ca_file, set->ents[i].ca_path) &
	    set->mask;

	while (set->index[j] != 0)
		j = (j + 1) & set->mask;
	set->index[j] = i + 1;
}

/* Indexes the last entry; at most half full, so every probe ends. */
static void
tls_ctxset_index(struct tls_ctxset *set)
{
	size_t i;

	if (set->index != NULL && set->nents * 2 <= set->mask + 1) {
		tls_ctxset_insert(set, set->nents - 1);
		return;
	}
	free(set->index);
	set->mask = set->mask ? set->mask * 2 + 1 : 15;
	set->index = xcalloc(set->mask + 1, sizeof *set->index);
	for (i = 0; i < set->nents; i++)
		tls_ctxset_insert(set, i);
}

struct tls_ctxset *
tls_ctxset_new(void)
{
	return xcalloc(1, sizeof(struct tls_ctxset));
}

SSL_CTX *
tls_ctxset_get(struct tls_ctxset *set, const struct tls_ctxset *prev,
    const struct options *o, char **cause)
{
	struct tls_ctxent *e, *old;

	if ((e = tls_ctxset_find(set, o->ca_file, o->ca_path)) == NULL) {
		set->ents = xrealloc(set->ents,
		    (set->nents + 1) * sizeof *set->ents);
		e = &set->ents[set->nents++];
		memset(e, 0, sizeof *e);
		e->ca_file = o->ca_file != NULL ? xstrdup(o->ca_file) : NULL;
		e->ca_path = o->ca_path != NULL ? xstrdup(o->ca_path) : NULL;
		tls_ctxset_index(set);
		/* Taken before loading: a file changed meanwhile is read again. */
		e->id = tls_trust_id(e->ca_file, e->ca_path);
		old = tls_ctxset_find(prev, e->ca_file, e->ca_path);
		if (old != NULL && old->ctx != NULL && old->id == e->id &&
		    SSL_CTX_up_ref(old->ctx) == 1) {
			e->ctx = old->ctx;
			set->kept++;
		} else
			e->ctx = tls_ctx_new(e->ca_file, e->ca_path, &e->cause);
	}
	if (e->ctx == NULL) {
		*cause = xstrdup(e->cause);
		return NULL;
	}
	if (SSL_CTX_up_ref(e->ctx) != 1) {
		xasprintf(cause, "cannot share a TLS context");
		return NULL;
	}
	return e->ctx;
}

size_t
tls_ctxset_count(const struct tls_ctxset *set, size_t *kept)
{
	size_t i, n = 0;

	for (i = 0; i < set->nents; i++)
		n += set->ents[i].ctx != NULL;
	if (kept != NULL)
		*kept = set->kept;
	return n;
}

int
tls_ctxset_release_one(struct tls_ctxset *set)
{
	struct tls_ctxent *e;

	while (set->released < set->nents) {
		e = &set->ents[set->released++];
		if (e->ctx != NULL) {
			SSL_CTX_free(e->ctx);
			e->ctx = NULL;
			return 1;
		}
	}
	return 0;
}

void
tls_ctxset_free(struct tls_ctxset *set)
{
	size_t i;

	if (set == NULL)
		return;
	for (i = 0; i < set->nents; i++) {
		SSL_CTX_free(set->ents[i].ctx);
		free(set->ents[i].ca_file);
		free(set->ents[i].ca_path);
		free(set->ents[i].cause);
	}
	free(set->ents);
	free(set->index);
	free(set);
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
