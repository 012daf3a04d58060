/*
 * tls.h - the OpenSSL side of the upstream connection: client contexts
 * shared by the services with the same trust, one SSL per session with SNI
 * and the host-name check, and the words that explain a handshake or a
 * certificate to a person.
 */
#ifndef SMTPTAP_TLS_H
#define SMTPTAP_TLS_H

#include <openssl/ssl.h>

#include "attrib.h"

struct bufferevent;
struct options;
struct strbuf;

/* What the verify callback saw during one handshake. */
struct tls_peer {
	int	 enforce;	/* fail the handshake on the first error */
	int	 error;		/* first X509_V_ERR_*, X509_V_OK when none */
	int	 depth;		/* of the certificate with the first error */
	int	 nerrors;
	char	 subject[256];	/* of that certificate */
	char	 validity[128];	/* its notBefore/notAfter, for time errors */
	X509	*leaf;		/* the server's certificate, when one was sent */
	char	 name[256];	/* the name or IP checked */
	int	 reneg_refused;	/* the server asked to renegotiate */
};

/* A certificate's facts one by one, escaped, for structured records. */
struct tls_cert_facts {
	char	 subject[256];
	char	 issuer[256];
	char	 san[1024];	/* "DNS:a, IP:b"; "" when there is no SAN */
	char	 not_after[40];
};

/*
 * The client contexts of one configuration. Loading the CA certificates is
 * nearly all of a context's cost (the system store: 150 certificates, 27 ms
 * and 850 KiB), so services with the same ca_file and ca_path share one, and
 * a reload keeps the previous configuration's when those files are unchanged
 * (same inode, size, mtime and ctime; for a directory, of every entry).
 * Building a set reads prev and takes references to its contexts, nothing
 * else: it may run on another thread while prev is in use.
 */
struct tls_ctxset;

struct tls_ctxset *tls_ctxset_new(void);
/* A context for o's trust (a new reference: SSL_CTX_free it), or NULL. */
SSL_CTX	*tls_ctxset_get(struct tls_ctxset *, const struct tls_ctxset *prev,
	    const struct options *o, char **cause) WUNRES;
/* Contexts in the set; *kept: how many came from prev. */
size_t	 tls_ctxset_count(const struct tls_ctxset *, size_t *kept);
/*
 * Drops one of the set's references; returns 0 when none was left. Freeing
 * a context with its CAs takes up to a millisecond, so a large set is
 * dropped a few at a time, between other work.
 */
int	 tls_ctxset_release_one(struct tls_ctxset *);
void	 tls_ctxset_free(struct tls_ctxset *);
/* A new SSL for one session; name is checked (and sent as SNI unless an IP). */
SSL	*tls_ssl_new(SSL_CTX *, const char *name, struct tls_peer *,
	    char **cause) WUNRES;
void	 tls_peer_clear(struct tls_peer *);

/* "TLSv1.3 cipher TLS_AES_256_GCM_SHA384" */
void	 tls_describe_session(SSL *, struct strbuf *);
/* "subject "CN=..." issuer "CN=..." SAN DNS:a, IP:b valid until ..." */
void	 tls_describe_cert(X509 *, struct strbuf *);
void	 tls_cert_facts(X509 *, struct tls_cert_facts *);
/*
 * Why verification failed, in words for the MUA's 421 ("upstream certificate
 * has expired (...)"), and which certificate for the transcript. The two
 * strbufs may be the same one.
 */
void	 tls_describe_verify(const struct tls_peer *, struct strbuf *why,
	    struct strbuf *detail);
/*
 * Why a handshake failed, from libevent's copy of the OpenSSL error queue
 * and errno. Sets *not_tls when the peer answered with something that is not
 * TLS (a plaintext server).
 */
void	 tls_describe_error(struct bufferevent *, struct strbuf *, int *not_tls);

#endif
