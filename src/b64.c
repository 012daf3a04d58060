/* b64.c - strict base64 on top of OpenSSL's EVP block codec. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "b64.h"
#include "xmalloc.h"

/* EVP_DecodeBlock takes an int length; stay well clear of INT_MAX. */
#define B64_IN_MAX	(64 * 1024 * 1024)

static int
b64_alpha(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/*
 * EVP_DecodeBlock skips leading and trailing whitespace and accepts '=' in
 * odd places, so strictness is checked here, before the codec sees anything.
 */
enum b64_err
b64_check(const char *in, size_t inlen, size_t *off)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t i, pad = 0;

	*off = 0;
	if (inlen > B64_IN_MAX)
		return B64_TOOLONG;
	for (i = 0; i < inlen; i++) {
		*off = i;
		if (p[i] == '=') {
			if (++pad > 2)
				return B64_BADPAD;
			continue;
		}
		if (!b64_alpha(p[i]))
			return B64_BADCHAR;
		if (pad > 0)
			return B64_BADPAD;
	}
	*off = inlen;
	if (inlen % 4 != 0)
		return B64_BADLEN;
	return B64_OK;
}

static void
b64_why(char *why, const char *in, size_t inlen, enum b64_err err, size_t off)
{
	unsigned char c = off < inlen ? (unsigned char)in[off] : 0;

	if (why == NULL)
		return;
	switch (err) {
	case B64_BADCHAR:
		if (c > 0x20 && c < 0x7f && c != '\'' && c != '\\')
			snprintf(why, B64_WHY_MAX,
			    "invalid base64: '%c' at offset %zu", c, off);
		else
			snprintf(why, B64_WHY_MAX,
			    "invalid base64: byte 0x%02x at offset %zu", c, off);
		break;
	case B64_BADPAD:
		snprintf(why, B64_WHY_MAX,
		    "invalid base64: misplaced '=' padding at offset %zu", off);
		break;
	case B64_BADLEN:
		snprintf(why, B64_WHY_MAX,
		    "invalid base64: length %zu is not a multiple of 4", inlen);
		break;
	case B64_TOOLONG:
		snprintf(why, B64_WHY_MAX,
		    "invalid base64: length %zu is too long", inlen);
		break;
	case B64_OK:
		why[0] = '\0';
		break;
	}
}

unsigned char *
b64_decode(const char *in, size_t inlen, size_t *outlen, char *why)
{
	enum b64_err err;
	unsigned char *out;
	size_t off, size, pad = 0;
	int n;

	*outlen = 0;
	if ((err = b64_check(in, inlen, &off)) != B64_OK) {
		b64_why(why, in, inlen, err, off);
		return NULL;
	}
	if (why != NULL)
		why[0] = '\0';
	size = inlen / 4 * 3;
	out = xmalloc(size + 1);
	if (inlen == 0) {
		out[0] = '\0';
		return out;
	}
	while (pad < 2 && in[inlen - 1 - pad] == '=')
		pad++;
	n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)inlen);
	if (n < 0 || (size_t)n != size) {
		/* Cannot happen after b64_check; fail closed all the same. */
		OPENSSL_cleanse(out, size + 1);
		free(out);
		b64_why(why, in, inlen, B64_BADCHAR, 0);
		return NULL;
	}
	/* The codec counts the bytes that padding stands for; drop them. */
	*outlen = size - pad;
	OPENSSL_cleanse(out + *outlen, size + 1 - *outlen);
	out[*outlen] = '\0';
	return out;
}

void
b64_free(unsigned char *p, size_t len)
{
	if (p == NULL)
		return;
	OPENSSL_cleanse(p, len + 1);
	free(p);
}

char *
b64_encode(const unsigned char *in, size_t inlen)
{
	unsigned char *out;
	size_t size;

	if (inlen > (size_t)B64_IN_MAX)
		inlen = B64_IN_MAX;	/* callers never come near this */
	size = (inlen + 2) / 3 * 4;
	out = xmalloc(size + 1);
	if (EVP_EncodeBlock(out, in, (int)inlen) != (int)size)
		out[0] = '\0';
	out[size] = '\0';
	return (char *)out;
}
