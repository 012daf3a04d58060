/*
 * fuzz_sasl.c - libFuzzer target for the SASL decoder.
 *
 * Input: the first byte picks a mechanism from fuzz_mechs[] (bit 7 set: the
 * first line is an initial response; bit 6 set: lines are payloads that the
 * target base64-encodes, so that mutations reach the decoders instead of
 * dying in base64); the rest is split on '\n' into lines fed alternately as
 * client lines and 334 texts, as the parser would. A trailing '\r' is kept:
 * the decoder must cope with it.
 *
 * Checked on every output: it is printable one-line text (escaped), its
 * double quotes balance, and outside quotes (where sasl.c puts nothing a
 * peer chose) there is no canary "CANARYpw", neither raw, in base64 at any
 * alignment, nor in hex. Seeds put the canary where passwords, tokens,
 * digests and proofs go.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "sasl.h"
#include "strbuf.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static const char *const fuzz_mechs[] = {
	"PLAIN", "LOGIN", "CRAM-MD5", "DIGEST-MD5", "SCRAM-SHA-1",
	"SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS",
	"SCRAM-SHA-512", "XOAUTH2", "OAUTHBEARER", "EXTERNAL", "NTLM",
	"GSSAPI", "X-UNKNOWN", "plain", "scram-sha-256",
};
#define FUZZ_NMECHS	(sizeof fuzz_mechs / sizeof fuzz_mechs[0])

/* "CANARYpw" raw, in hex, and the inner part of its base64 at 3 offsets. */
static const char *const fuzz_canary[] = {
	"CANARYpw",
	"43414e4152597077", "43414E4152597077",
	"Q0FOQVJZcH",		/* "CANARYpw", the tail depends on what follows */
	"TkFSWXB3",		/* "?CANARYpw", from the second group on */
	"QU5BUllwd",		/* "??CANARYpw", likewise */
};

static void
fuzz_fail(const char *why, const struct strbuf *sb)
{
	fprintf(stderr, "fuzz_sasl: %s: %.*s\n", why, (int)sb->len,
	    sb->buf != NULL ? sb->buf : "");
	abort();
}

static int
fuzz_has(const char *p, size_t n, const char *s)
{
	size_t k = strlen(s), i;

	for (i = 0; i + k <= n; i++)
		if (memcmp(p + i, s, k) == 0)
			return 1;
	return 0;
}

/* Well-formed UTF-8 sequence length at p, or 0. */
static size_t
fuzz_utf8(const unsigned char *p, size_t n)
{
	size_t len, i;

	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (n < len)
		return 0;
	for (i = 1; i < len; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return len;
}

/* public: text that is all public (a user name), so no canary check. */
static void
fuzz_check(const struct strbuf *sb, int public)
{
	const unsigned char *p = (const unsigned char *)sb->buf;
	char *outside;
	size_t i, k, n = sb->len, m = 0;
	int inq = 0;

	if (n == 0)
		return;
	outside = malloc(n + 1);
	for (i = 0; i < n; i++) {
		if (p[i] < 0x20 || p[i] == 0x7f)
			fuzz_fail("control byte in output", sb);
		if (p[i] >= 0x80) {
			if ((k = fuzz_utf8(p + i, n - i)) == 0)
				fuzz_fail("invalid UTF-8 in output", sb);
			i += k - 1;
			if (!inq)
				outside[m++] = '?';
			continue;
		}
		if (public)
			continue;
		if (inq) {
			if (p[i] == '\\' && i + 1 < n)
				i++;
			else if (p[i] == '"') {
				inq = 0;
				outside[m++] = '"';	/* no joins across */
			}
			continue;
		}
		if (p[i] == '"')
			inq = 1;
		else
			outside[m++] = (char)p[i];
	}
	if (inq)
		fuzz_fail("unbalanced quotes", sb);
	for (k = 0; k < sizeof fuzz_canary / sizeof fuzz_canary[0]; k++)
		if (fuzz_has(outside, m, fuzz_canary[k]))
			fuzz_fail("canary outside quotes", sb);
	free(outside);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct strbuf sb = STRBUF_INIT;
	struct sasl *s;
	const char *mech, *p, *end, *nl, *line;
	char *e = NULL;
	size_t len;
	int client, initial, encode;

	if (size < 1)
		return 0;
	mech = fuzz_mechs[(data[0] & 0x3f) % FUZZ_NMECHS];
	initial = (data[0] & 0x80) != 0;
	encode = (data[0] & 0x40) != 0;
	client = initial;
	s = sasl_new(mech, strlen(mech));
	p = (const char *)data + 1;
	end = (const char *)data + size;
	while (p <= end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		len = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		line = p;
		if (encode && !(len == 1 && p[0] == '*')) {
			e = b64_encode((const unsigned char *)p, len);
			line = e;
			len = strlen(e);
		}
		strbuf_reset(&sb);
		if (client) {
			if (len > SASL_LINE_MAX)
				sasl_client_long(s, len, initial, &sb);
			else
				sasl_client(s, line, len, initial, &sb);
		} else
			sasl_server(s, line, len, &sb);
		if (e != NULL) {
			b64_free((unsigned char *)e, len);
			e = NULL;
		}
		fuzz_check(&sb, 0);
		initial = 0;
		client = !client;
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	strbuf_reset(&sb);
	strbuf_adds(&sb, sasl_user(s));
	fuzz_check(&sb, 1);
	strbuf_reset(&sb);
	strbuf_adds(&sb, sasl_mech(s));
	fuzz_check(&sb, 1);
	sasl_free(s);
	strbuf_free(&sb);
	return 0;
}
