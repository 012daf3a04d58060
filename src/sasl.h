/*
 * sasl.h - decode SMTP AUTH exchanges for display, secrets masked at the source.
 *
 * Pure apart from OpenSSL's base64 (through b64.h). One struct sasl lives for
 * one AUTH attempt. Every function appends display text to a strbuf; the text
 * names the fields it could decode (authzid, user, ...) and replaces every
 * secret with "<masked, N bytes>". Nothing that could hold a secret is ever
 * copied to the output, neither raw nor in base64 nor in hex; decode buffers
 * are wiped before they are freed.
 */
#ifndef SMTPTAP_SASL_H
#define SMTPTAP_SASL_H

#include <stddef.h>

struct strbuf;
struct sasl;

/*
 * Start an attempt for the mechanism named in "AUTH <mech> [ir]" (any case).
 * Decoded: PLAIN, LOGIN, CRAM-MD5, DIGEST-MD5, SCRAM-SHA-1/-256/-512 and
 * their -PLUS variants, XOAUTH2, OAUTHBEARER, EXTERNAL. NTLM, GSSAPI and
 * unknown mechanisms are opaque: "<opaque, N bytes>", nothing decoded.
 */
struct sasl	*sasl_new(const char *mech, size_t mechlen);

/* The canonical upper-case mechanism name, e.g. "PLAIN". */
const char	*sasl_mech(const struct sasl *);

/*
 * The client sent an initial response (the text after "AUTH MECH ") or a
 * continuation line (CRLF already removed). Appends e.g.
 *   authzid="" user="alice@example.org" password=<masked, 12 bytes>
 *   user="alice" auth scheme=Bearer token=<masked, 180 bytes>
 * "=" as an initial response means empty; "*" cancels the exchange.
 * Text the peer chose is always inside double quotes, escaped; outside them
 * there are only fixed words, lengths and numbers. A payload whose structure
 * is wrong is masked whole: "malformed <MECH> (<why>): <masked, ...>".
 */
void		 sasl_client(struct sasl *, const char *line, size_t len,
		     int initial, struct strbuf *out);

/*
 * The server sent "334 <text>"; text is what follows "334 ". Appends e.g.
 *   "Username:"
 *   nonce=<40 chars: client's 24 + server's 16> salt=<16 bytes> iterations=4096
 * Mechanism-specific where the challenge has a structure (SCRAM, DIGEST-MD5,
 * the JSON error of XOAUTH2 and OAUTHBEARER), otherwise the decoded text in
 * quotes, or "<N bytes binary>". Server proofs (SCRAM v=, rspauth) are masked.
 */
void		 sasl_server(struct sasl *, const char *text, size_t len,
		     struct strbuf *out);

/*
 * The client sent a line too long to decode (more than SASL_LINE_MAX bytes):
 * it counts as a round and is shown as its length only.
 */
#define SASL_LINE_MAX	12288	/* RFC 4954 4: servers accept at least this */
void		 sasl_client_long(struct sasl *, size_t len, int initial,
		     struct strbuf *out);

/*
 * Whether the last client line holds nothing secret (a LOGIN user name, a
 * cancel), so that the caller may show it as sent. 0 when in doubt.
 */
int		 sasl_last_public(const struct sasl *);

/* The user name decoded so far (escaped), or "" if none. */
const char	*sasl_user(const struct sasl *);

void		 sasl_free(struct sasl *);

#endif
