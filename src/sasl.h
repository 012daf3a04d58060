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
 * Whether name is a SASL mechanism name (RFC 4422 3.1: 1 to 20 characters
 * of A-Z, 0-9, "-" and "_"), in any case.
 */
#define SASL_MECH_NAME_MAX	20
int		 sasl_mech_valid(const char *name, size_t len);

/*
 * Start an attempt for the mechanism named in "AUTH <mech> [ir]" (any case).
 * Decoded: PLAIN, LOGIN, CRAM-MD5, DIGEST-MD5, SCRAM-SHA-1/-256/-512 and
 * their -PLUS variants, XOAUTH2, OAUTHBEARER, EXTERNAL. NTLM, GSSAPI and
 * unknown mechanisms are opaque: "<opaque, N bytes>", nothing decoded. So
 * is a name that is not a valid mechanism name: it may hold anything the
 * client sent (a password after a stray separator), so not a byte of it is
 * kept.
 */
struct sasl	*sasl_new(const char *mech, size_t mechlen);
/* The same for a name known to be invalid, of len bytes, not kept. */
struct sasl	*sasl_new_invalid(size_t len);

/*
 * The canonical upper-case mechanism name, e.g. "PLAIN", or for an invalid
 * one "<invalid mechanism, N bytes>". At most SASL_MECH_SHOW - 1 bytes.
 */
#define SASL_MECH_SHOW		48
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
 *
 * LOGIN goes by position: the first response (or the initial response) is
 * the user name, the second the password, the rest are masked. The first
 * is shown only when the server asked for it with a prompt that names a
 * user (in one of several languages), an empty prompt, or none at all; a
 * prompt that asks for a password, or one not understood, masks it.
 */
int		 sasl_last_public(const struct sasl *);

/* The user name decoded so far (escaped), or "" if none. */
const char	*sasl_user(const struct sasl *);

void		 sasl_free(struct sasl *);

#endif
