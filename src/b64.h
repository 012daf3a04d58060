/*
 * b64.h - strict base64 decoding for SASL payloads, on OpenSSL's EVP codec.
 *
 * Strict: only the RFC 4648 alphabet, correct padding, length a multiple of 4,
 * no whitespace. On failure, why[] (B64_WHY_MAX bytes) receives a short
 * explanation naming the first offending character and its offset, e.g.
 *   "invalid base64: '!' at offset 7" or "invalid base64: length 5 is not a multiple of 4".
 */
#ifndef SMTPTAP_B64_H
#define SMTPTAP_B64_H

#include <stddef.h>

/*
 * Decodes in[0..inlen) into a fresh buffer (NUL-terminated for convenience,
 * not counted in *outlen). Returns NULL on invalid input. The caller must
 * release the buffer with b64_free(), which wipes it.
 */
#define B64_WHY_MAX	96

unsigned char	*b64_decode(const char *in, size_t inlen, size_t *outlen,
		    char *why);
void		 b64_free(unsigned char *, size_t len);

/* Encodes into a fresh NUL-terminated buffer; release with b64_free(p, strlen(p)). */
char		*b64_encode(const unsigned char *in, size_t inlen);

/*
 * The same strictness checks without decoding, for callers that must not
 * quote the offending character (it may belong to a secret sent raw).
 * *off receives the offset of the first offending character.
 */
enum b64_err {
	B64_OK,
	B64_BADCHAR,		/* not in the alphabet */
	B64_BADPAD,		/* '=' followed by data, or more than two */
	B64_BADLEN,		/* length not a multiple of 4 */
	B64_TOOLONG,		/* beyond what the codec takes in one call */
};
enum b64_err	 b64_check(const char *in, size_t inlen, size_t *off);

#endif
