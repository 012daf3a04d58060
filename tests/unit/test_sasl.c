/* test_sasl.c - base64 codec and SASL display: decoded where safe, masked always. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "b64.h"
#include "sasl.h"
#include "strbuf.h"

/* ---- helpers ---- */

static int
contains(const char *hay, size_t haylen, const void *needle, size_t n)
{
	size_t i;

	if (n == 0 || n > haylen)
		return 0;
	for (i = 0; i + n <= haylen; i++)
		if (memcmp(hay + i, needle, n) == 0)
			return 1;
	return 0;
}

static char *
enc(const void *p, size_t n)
{
	return b64_encode(p, n);
}

static void
hex(const unsigned char *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

/*
 * The secret must not appear raw, in base64 (at any of the three
 * alignments a longer blob could give it), in hex, or as the whole blob.
 */
static void
assert_no_secret(const char *out, size_t outlen, const char *secret,
    const void *blob, size_t bloblen)
{
	size_t n = strlen(secret), k;
	char h[256], *b, pre[260];

	assert_false(contains(out, outlen, secret, n));
	for (k = 0; k < 3; k++) {
		memset(pre, 'x', k);
		memcpy(pre + k, secret, n);
		b = enc(pre, k + n);
		/* Skip the chars that depend on the prefix or the tail. */
		if (strlen(b) > 8)
			assert_false(contains(out, outlen, b + (k ? 4 : 0),
			    strlen(b) - (k ? 4 : 0) - 4));
		b64_free((unsigned char *)b, strlen(b));
	}
	hex((const unsigned char *)secret, n, h);
	assert_false(contains(out, outlen, h, strlen(h)));
	if (blob != NULL) {
		b = enc(blob, bloblen);
		assert_false(contains(out, outlen, b, strlen(b)));
		b64_free((unsigned char *)b, strlen(b));
	}
}

/* Run one client line through a fresh or given attempt; return its text. */
static const char *
client(struct sasl *s, struct strbuf *sb, const char *line, int initial)
{
	strbuf_reset(sb);
	sasl_client(s, line, strlen(line), initial, sb);
	return strbuf_str(sb);
}

static const char *
server(struct sasl *s, struct strbuf *sb, const char *text)
{
	strbuf_reset(sb);
	sasl_server(s, text, strlen(text), sb);
	return strbuf_str(sb);
}

/* ---- base64 ---- */

static void
test_b64_decode_valid(void **state)
{
	static const struct {
		const char	*in;
		const char	*out;
	} t[] = {
		{ "", "" }, { "YQ==", "a" }, { "YWI=", "ab" }, { "YWJj", "abc" },
		{ "YWxpY2U=", "alice" }, { "VXNlcm5hbWU6", "Username:" },
		{ "+/+/", "\xfb\xff\xbf" },
	};
	unsigned char *p;
	size_t i, n;
	char why[B64_WHY_MAX];

	(void)state;
	for (i = 0; i < sizeof t / sizeof t[0]; i++) {
		strcpy(why, "unchanged");
		p = b64_decode(t[i].in, strlen(t[i].in), &n, why);
		assert_non_null(p);
		assert_int_equal(n, strlen(t[i].out));
		assert_memory_equal(p, t[i].out, n);
		assert_int_equal(p[n], 0);
		assert_string_equal(why, "");
		b64_free(p, n);
	}
}

static void
test_b64_decode_nul(void **state)
{
	unsigned char *p;
	size_t n;

	(void)state;
	p = b64_decode("AGEAYgBj", 8, &n, NULL);
	assert_non_null(p);
	assert_int_equal(n, 6);
	assert_memory_equal(p, "\0a\0b\0c", 6);
	b64_free(p, n);
}

static void
test_b64_decode_invalid(void **state)
{
	static const struct {
		const char	*in;
		size_t		 len;
		const char	*why;
	} t[] = {
		{ "YWx!Y2U=", 8, "invalid base64: '!' at offset 3" },
		{ "YWxpY2U", 7, "invalid base64: length 7 is not a multiple of 4" },
		{ "YQ=a", 4, "invalid base64: misplaced '=' padding at offset 3" },
		{ "Y===", 4, "invalid base64: misplaced '=' padding at offset 3" },
		{ "=YQ=", 4, "invalid base64: misplaced '=' padding at offset 1" },
		{ " YQ==", 5, "invalid base64: byte 0x20 at offset 0" },
		{ "YQ==\r\n", 6, "invalid base64: byte 0x0d at offset 4" },
		{ "YQ\0=", 4, "invalid base64: byte 0x00 at offset 2" },
		{ "YQ-=", 4, "invalid base64: '-' at offset 2" },
		{ "YWJj\xc3\xa4", 6, "invalid base64: byte 0xc3 at offset 4" },
		{ "YQ==YQ==", 8, "invalid base64: misplaced '=' padding at offset 4" },
	};
	unsigned char *p;
	size_t i, n = 99;
	char why[B64_WHY_MAX];

	(void)state;
	for (i = 0; i < sizeof t / sizeof t[0]; i++) {
		why[0] = '\0';
		p = b64_decode(t[i].in, t[i].len, &n, why);
		assert_null(p);
		assert_int_equal(n, 0);
		assert_string_equal(why, t[i].why);
	}
}

static void
test_b64_check(void **state)
{
	size_t off;

	(void)state;
	assert_int_equal(b64_check("YWJj", 4, &off), B64_OK);
	assert_int_equal(b64_check("YW!j", 4, &off), B64_BADCHAR);
	assert_int_equal(off, 2);
	assert_int_equal(b64_check("YWJ", 3, &off), B64_BADLEN);
	assert_int_equal(b64_check("Y=Jj", 4, &off), B64_BADPAD);
	assert_int_equal(off, 2);
}

static void
test_b64_roundtrip(void **state)
{
	unsigned char in[70], *p;
	size_t n, i, len;
	char *e;

	(void)state;
	for (i = 0; i < sizeof in; i++)
		in[i] = (unsigned char)(i * 37 + 11);
	for (len = 0; len <= sizeof in; len++) {
		e = b64_encode(in, len);
		assert_int_equal(strlen(e), (len + 2) / 3 * 4);
		p = b64_decode(e, strlen(e), &n, NULL);
		assert_non_null(p);
		assert_int_equal(n, len);
		if (len > 0)
			assert_memory_equal(p, in, len);
		b64_free(p, n);
		b64_free((unsigned char *)e, strlen(e));
	}
	e = b64_encode((const unsigned char *)"alice", 5);
	assert_string_equal(e, "YWxpY2U=");
	b64_free((unsigned char *)e, strlen(e));
}

/* ---- PLAIN ---- */

static const char rfc_blob[] = "Ursel\0Kurt\0xipj3plmq";
#define RFC_BLOB_LEN	(sizeof rfc_blob - 1)

static void
test_plain_rfc4616(void **state)
{
	struct strbuf sb = STRBUF_INIT;
	struct sasl *s;
	char *ir = enc(rfc_blob, RFC_BLOB_LEN);
	const char *out;

	(void)state;
	assert_string_equal(ir, "VXJzZWwAS3VydAB4aXBqM3BsbXE=");
	s = sasl_new("plain", 5);
	assert_string_equal(sasl_mech(s), "PLAIN");
	assert_string_equal(sasl_user(s), "");
	out = client(s, &sb, ir, 1);
	assert_string_equal(out,
	    "authzid=\"Ursel\" user=\"Kurt\" password=<masked, 9 bytes>; "
	    "authzid differs from user");
	assert_false(sasl_last_public(s));
	assert_string_equal(sasl_user(s), "Kurt");
	assert_no_secret(sb.buf, sb.len, "xipj3plmq", rfc_blob, RFC_BLOB_LEN);
	sasl_free(s);
	b64_free((unsigned char *)ir, strlen(ir));
	strbuf_free(&sb);
}

static void
test_plain_continuation(void **state)
{
	static const char blob[] = "\0alice@example.org\0Secret-Pw123";
	struct strbuf sb = STRBUF_INIT;
	struct sasl *s = sasl_new("PLAIN", 5);
	char *b = enc(blob, sizeof blob - 1);

	(void)state;
	assert_string_equal(server(s, &sb, ""), "\"\"");
	assert_string_equal(client(s, &sb, b, 0), "authzid=\"\" "
	    "user=\"alice@example.org\" password=<masked, 12 bytes>");
	assert_no_secret(sb.buf, sb.len, "Secret-Pw123", blob, sizeof blob - 1);
	/* A second payload is not expected; it is masked whole. */
	assert_string_equal(client(s, &sb, b, 0), "<masked, 31 bytes, contains NUL>");
	assert_no_secret(sb.buf, sb.len, "Secret-Pw123", blob, sizeof blob - 1);
	sasl_free(s);
	b64_free((unsigned char *)b, strlen(b));
	strbuf_free(&sb);
}

static void
test_plain_wrong_nul_count(void **state)
{
	static const struct {
		const char	*blob;
		size_t		 len;
		const char	*out;
	} t[] = {
		{ "alice\0xipj3plmq", 15, "malformed PLAIN (1 NUL separators, "
		    "expected 2): <masked, 15 bytes, contains NUL>" },
		{ "alicexipj3plmq", 14, "malformed PLAIN (0 NUL separators, "
		    "expected 2): <masked, 14 bytes>" },
		{ "\0alice\0xipj3plmq\0", 17, "malformed PLAIN (3 NUL separators, "
		    "expected 2): <masked, 17 bytes, contains NUL>" },
		{ "\0\0\0\0xipj3plmq", 13, "malformed PLAIN (4 NUL separators, "
		    "expected 2): <masked, 13 bytes, contains NUL>" },
	};
	struct strbuf sb = STRBUF_INIT;
	struct sasl *s;
	size_t i;
	char *b;

	(void)state;
	for (i = 0; i < sizeof t / sizeof t[0]; i++) {
		s = sasl_new("PLAIN", 5);
		b = enc(t[i].blob, t[i].len);
		assert_string_equal(client(s, &sb, b, 1), t[i].out);
		assert_no_secret(sb.buf, sb.len, "xipj3plmq", t[i].blob,
		    t[i].len);
		/* Nothing is guessed, not even the user name. */
		assert_false(contains(sb.buf, sb.len, "alice", 5));
		assert_string_equal(sasl_user(s), "");
		b64_free((unsigned char *)b, strlen(b));
		sasl_free(s);
	}
	strbuf_free(&sb);
}

static void
test_plain_empty_ir(void **state)
{
	struct strbuf sb = STRBUF_INIT;
	struct sasl *s = sasl_new("PLAIN", 5);

	(void)state;
	assert_string_equal(client(s, &sb, "=", 1), "malformed PLAIN "
	    "(0 NUL separators, expected 2): <masked, 0 bytes, empty>");
	sasl_free(s);
	/* "=" means empty only as an initial response. */
	s = sasl_new("PLAIN", 5);
	assert_string_equal(client(s, &sb, "=", 0), "undecodable: invalid "
	    "base64 length 1, not a multiple of 4; <masked, 1 bytes>");
	sasl_free(s);
	strbuf_free(&sb);
}

static void
test_plain_invalid_base64(void **state)
{
	static const struct {
		const char	*line;
		const char	*out;
	} t[] = {
		/* A password typed raw where base64 belongs. */
		{ "xipj3plmq!", "undecodable: invalid base64 character at "
		    "offset 9; <masked, 10 bytes>" },
		{ "xipj3plmq", "undecodable: invalid base64 length 9, not a "
		    "multiple of 4; <masked, 9 bytes>" },
		{ "AHhpcGozcGxtcQ= =", "undecodable: invalid base64 character "
		    "at offset 15; <masked, 17 bytes>" },
		{ "AGFsaWNlAHhpcGozcGxtcQ==\r", "undecodable: invalid base64 "
		    "character at offset 24; <masked, 25 bytes>" },
		{ "x=ipj3plmq12", "undecodable: invalid base64 padding at "
		    "offset 2; <masked, 12 bytes>" },
	};
	struct strbuf sb = STRBUF_INIT;
	struct sasl *s;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof t / sizeof t[0]; i++) {
		s = sasl_new("PLAIN", 5);
		assert_string_equal(client(s, &sb, t[i].line, 1), t[i].out);
		assert_no_secret(sb.buf, sb.len, "xipj3plmq", NULL, 0);
		assert_no_secret(sb.buf, sb.len, "plmq", NULL, 0);
		assert_false(contains(sb.buf, sb.len, "!", 1));
		sasl_free(s);
	}
	strbuf_free(&sb);
}

/* ---- LOGIN ---- */

static void
test_login_two_rounds(void **state)
{
	struct strbuf sb = STRBUF_INIT;
	struct sasl *s = sasl_new("login", 5);
	char *pw = enc("xipj3plmq", 9);

	(void)state;
	assert_string_equal(sasl_mech(s), "LOGIN");
	assert_string_equal(server(s, &sb, "VXNlcm5hbWU6"), "\"Username:\"");
	assert_string_equal(client(s, &sb, "YWxpY2U=", 0), "user=\"alice\"");
	assert_true(sasl_last_public(s));
	assert_string_equal(sasl_user(s), "alice");
	assert_string_equal(server(s, &sb, "UGFzc3dvcmQ6"), "\"Password:\"");
	assert_string_equal(client(s, &sb, pw, 0),
	    "password=<masked, 9 bytes>");
	assert_false(sasl_last_public(s));
	assert_no_secret(sb.buf, sb.len, "xipj3plmq", NULL, 0);
	/* Anything after the password is masked too. */
	assert_string_equal(client(s, &sb, pw, 0), "<masked, 9 bytes>");
	assert_false(sasl_last_public(s));
	assert_no_secret(sb.buf, sb.len, "xipj3plmq", NULL, 0);
	assert_string_equal(sasl_user(s), "alice");
	sasl_free(s);
	b64_free((unsigned char *)pw, strlen(pw));
	strbuf_free(&sb);
}

/* aiosmtpd's prompts end in NUL ("User Name\0"): still shown as text. */
static void
test_login_prompts_with_nul(void **state)
{
	struct strbuf sb = STRBUF_INIT;
	struct sasl *s = sasl_new("LOGIN", 5);

	(void)state;
	assert_string_equal(server(s, &sb, "VXNlciBOYW1lAA=="),
	    "\"User Name\\x00\"");
	assert_string_equal(server(s, &sb, "UGFzc3dvcmQA"), "\"Password\\x00\"");
	/* NUL inside the text is not a prompt any more. */
	assert_string_equal(server(s, &sb, "AGFiYw=="), "<4 bytes binary>");
	sasl_free(s);
	strbuf_free(&sb);
}

static void
test_login_initial_response(void **state)
{
	struct strbuf sb = STRBUF_INIT;
	struct sasl *s = sasl_new("LOGIN", 5);
	char *pw = enc("xipj3plmq", 9);

	(void)state;
	assert_string_equal(client(s, &sb, "YWxpY2U=", 1), "user=\"alice\"");
	assert_true(sasl_last_public(s));
	assert_string_equal(server(s, &sb, "UGFzc3dvcmQ6"), "\"Password:\"");
	assert_string_equal(client(s, &sb, pw, 0),
	    "password=<masked, 9 bytes>");
	assert_no_secret(sb.buf, sb.len, "xipj3plmq", NULL, 0);
	sasl_free(s);
	b64_free((unsigned char *)pw, strlen(pw));
	strbuf_free(&sb);
}

static void
test_login_password_prompt_first(void **state)
{
	struct strbuf sb = STRBUF_INIT;
	struct sasl *s = sasl_new("LOGIN", 5);
	char *pw = enc("xipj3plmq", 9), *prompt = enc("Enter PASSWORD", 14);

	(void)state;
	assert_string_equal(server(s, &sb, prompt), "\"Enter PASSWORD\"");
	assert_string_equal(client(s, &sb, pw, 0),
	    "password=<masked, 9 bytes>");
	assert_false(sasl_last_public(s));
	assert_string_equal(sasl_user(s), "");
	assert_no_secret(sb.buf, sb.len, "xipj3plmq", NULL, 0);
	sasl_free(s);
	b64_free((unsigned char *)pw, strlen(pw));
	b64_free((unsigned char *)prompt, strlen(prompt));
	strbuf_free(&sb);
}

static void
test_login_empty_and_quotes(void **state)
{
	struct strbuf sb = STRBUF_INIT;
	struct sasl *s = sasl_new("LOGIN", 5);
	char *u = enc("a\"b\\c\x1b[2J\n", 10);

	(void)state;
	assert_string_equal(client(s, &sb, "=", 1), "user=\"\"");
	sasl_free(s);
	s = sasl_new("LOGIN", 5);
	assert_string_equal(client(s, &sb, u, 0),
	    "user=\"a\\\"b\\\\c\\x1b[2J\\n\"");
	assert_string_equal(sasl_user(s), "a\\\"b\\\\c\\x1b[2J\\n");
	sasl_free(s);
	b64_free((unsigned char *)u, strlen(u));
	strbuf_free(&sb);
}

/* ---- cancel, diagnostics, other mechanisms ---- */

static void
test_cancel(void **state)
{
	struct strbuf sb = STRBUF_INIT;
	struct sasl *s = sasl_new("LOGIN", 5);
	char *pw = enc("xipj3plmq", 9);

	(void)state;
	assert_string_equal(server(s, &sb, "VXNlcm5hbWU6"), "\"Username:\"");
	assert_string_equal(client(s, &sb, "*", 0), "cancelled (*)");
	assert_true(sasl_last_public(s));
	/* After a cancel nothing is decoded any more. */
	assert_string_equal(client(s, &sb, pw, 0), "<masked, 12 bytes>");
	assert_false(sasl_last_public(s));
	assert_no_secret(sb.buf, sb.len, "xipj3plmq", NULL, 0);
	sasl_free(s);
	/* "*" as an initial response is not a cancel (nor valid base64). */
	s = sasl_new("PLAIN", 5);
	assert_string_equal(client(s, &sb, "*", 1), "undecodable: invalid "
	    "base64 character at offset 0; <masked, 1 bytes>");
	sasl_free(s);
	b64_free((unsigned char *)pw, strlen(pw));
	strbuf_free(&sb);
}

static void
test_mask_diagnostics(void **state)
{
	static const struct {
		const char	*pw;
		size_t		 len;
		const char	*out;
	} t[] = {
		{ "xipj3plmq\n", 10, "password=<masked, 10 bytes, ends with LF (0x0a)>" },
		{ "xipj3plmq\r\n", 11, "password=<masked, 11 bytes, ends with LF (0x0a)>" },
		{ " xipj3plmq\t", 11, "password=<masked, 11 bytes, starts with "
		    "space (0x20), ends with tab (0x09)>" },
		{ "\rxipj3plmq ", 11, "password=<masked, 11 bytes, starts with "
		    "CR (0x0d), ends with space (0x20)>" },
		{ "xipj\0" "3plmq", 10, "password=<masked, 10 bytes, contains NUL>" },
		{ "xipj3pl\xc3\xa4mq", 11, "password=<masked, 11 bytes, non-ASCII>" },
		{ "", 0, "password=<masked, 0 bytes, empty>" },
	};
	struct strbuf sb = STRBUF_INIT;
	struct sasl *s;
	size_t i;
	char *b;

	(void)state;
	for (i = 0; i < sizeof t / sizeof t[0]; i++) {
		s = sasl_new("LOGIN", 5);
		client(s, &sb, "YWxpY2U=", 1);
		b = enc(t[i].pw, t[i].len);
		assert_string_equal(client(s, &sb, b, 0), t[i].out);
		assert_no_secret(sb.buf, sb.len, "3plmq", NULL, 0);
		assert_no_secret(sb.buf, sb.len, "xipj", NULL, 0);
		b64_free((unsigned char *)b, strlen(b));
		sasl_free(s);
	}
	/* The same remarks apply to PLAIN's password field. */
	s = sasl_new("PLAIN", 5);
	b = enc("\0u\0xipj3plmq\n", 13);
	assert_string_equal(client(s, &sb, b, 1), "authzid=\"\" user=\"u\" "
	    "password=<masked, 10 bytes, ends with LF (0x0a)>");
	assert_no_secret(sb.buf, sb.len, "xipj3plmq", "\0u\0xipj3plmq\n", 13);
	b64_free((unsigned char *)b, strlen(b));
	sasl_free(s);
	strbuf_free(&sb);
}

static void
test_unknown_mechanism(void **state)
{
	static const char tok[] =
	    "user=alice\x01" "auth=Bearer ya29.xipj3plmq\x01\x01";
	struct strbuf sb = STRBUF_INIT;
	struct sasl *s = sasl_new("x-oauth9", 8);
	char *b = enc(tok, sizeof tok - 1), *c;

	(void)state;
	assert_string_equal(sasl_mech(s), "X-OAUTH9");
	strbuf_reset(&sb);
	sasl_client(s, b, strlen(b), 1, &sb);
	assert_string_equal(sb.buf, "<opaque, 39 bytes>");
	assert_false(sasl_last_public(s));
	assert_false(contains(sb.buf, sb.len, "alice", 5));
	assert_no_secret(sb.buf, sb.len, "xipj3plmq", tok, sizeof tok - 1);
	assert_string_equal(sasl_user(s), "");
	/* Server challenges: printable ones decoded, others by length. */
	c = enc("{\"status\":\"401\"}", 16);
	assert_string_equal(server(s, &sb, c), "\"{\\\"status\\\":\\\"401\\\"}\"");
	b64_free((unsigned char *)c, strlen(c));
	c = enc("\x01\x02\x03\x00\xff", 5);
	assert_string_equal(server(s, &sb, c), "<5 bytes binary>");
	b64_free((unsigned char *)c, strlen(c));
	assert_string_equal(server(s, &sb, "Go ahead"), "(not base64)");
	/* An unknown mechanism never decodes a client line, in any round. */
	assert_string_equal(client(s, &sb, "YWxpY2U=", 0), "<opaque, 5 bytes>");
	sasl_free(s);
	b64_free((unsigned char *)b, strlen(b));
	strbuf_free(&sb);
}

static void
test_mech_names(void **state)
{
	struct sasl *s;

	(void)state;
	s = sasl_new("cram-md5", 8);
	assert_string_equal(sasl_mech(s), "CRAM-MD5");
	sasl_free(s);
	/* Not a mechanism name: not a byte of it is kept (it may be a
	 * password joined to the name by a stray separator). */
	s = sasl_new("X\x1b[2J\0y", 7);
	assert_string_equal(sasl_mech(s), "<invalid mechanism, 7 bytes>");
	sasl_free(s);
	s = sasl_new("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 40);
	assert_string_equal(sasl_mech(s), "<invalid mechanism, 40 bytes>");
	sasl_free(s);
	s = sasl_new("PLAIN\vAGFsaWNlAHhpcGozcGxtcQ==", 30);
	assert_string_equal(sasl_mech(s), "<invalid mechanism, 30 bytes>");
	{
		struct strbuf sb = STRBUF_INIT;

		/* Opaque: nothing decoded, whatever follows. */
		assert_string_equal(client(s, &sb, "AGFsaWNlAHhpcGozcGxtcQ==",
		    0), "<opaque, 16 bytes>");
		strbuf_free(&sb);
	}
	sasl_free(s);
	s = sasl_new_invalid((size_t)-1);
	assert_int_equal(strlen(sasl_mech(s)), 47);
	sasl_free(s);
	/* A prefix of a known name is not that mechanism. */
	s = sasl_new("PLAINX", 6);
	assert_string_equal(sasl_mech(s), "PLAINX");
	{
		struct strbuf sb = STRBUF_INIT;
		char *b = enc("\0u\0xipj3plmq", 12);

		assert_string_equal(client(s, &sb, b, 1), "<opaque, 12 bytes>");
		b64_free((unsigned char *)b, strlen(b));
		strbuf_free(&sb);
	}
	sasl_free(s);
}

/* RFC 4422 3.1: 1 to 20 of A-Z 0-9 - _ (any case here). */
static void
test_mech_valid(void **state)
{
	static const char *const good[] = {
		"PLAIN", "login", "SCRAM-SHA-256-PLUS", "X_Y-9",
		"ABCDEFGHIJKLMNOPQRST",
	};
	static const struct {
		const char	*name;
		size_t		 len;
	} bad[] = {
		{ "", 0 }, { "ABCDEFGHIJKLMNOPQRSTU", 21 }, { "PLAIN\t", 6 },
		{ "PLAIN ", 6 }, { "PLAIN\v", 6 }, { "PLAIN\f", 6 },
		{ "PLAIN\r", 6 }, { "PLAIN\0x", 7 }, { "PL=AIN", 6 },
		{ "PL\xc3\xa4IN", 7 }, { "PLAIN.", 6 }, { "AGFs+/==", 8 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof good / sizeof good[0]; i++)
		assert_true(sasl_mech_valid(good[i], strlen(good[i])));
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_false(sasl_mech_valid(bad[i].name, bad[i].len));
}

/*
 * LOGIN goes by position, whatever language the prompts are in: the
 * second response is the password. The first is the user name unless the
 * prompt for it asks for a password or cannot be understood.
 */
static void
test_login_prompt_languages(void **state)
{
	static const struct {
		const char	*user, *pass;
	} t[] = {
		{ "Nombre de usuario:", "Contrase\xc3\xb1" "a:" },
		{ "Benutzername:", "Passwort:" },
		{ "Nom d'utilisateur :", "Mot de passe :" },
		{ "Nome utente:", "Password:" },
		{ "Nome de usu\xc3\xa1rio:", "Senha:" },
		{ "Gebruikersnaam:", "Wachtwoord:" },
		{ "\xd0\x98\xd0\xbc\xd1\x8f \xd0\xbf\xd0\xbe\xd0\xbb\xd1\x8c"
		  "\xd0\xb7\xd0\xbe\xd0\xb2\xd0\xb0\xd1\x82\xd0\xb5\xd0\xbb\xd1"
		  "\x8f:", "\xd0\x9f\xd0\xb0\xd1\x80\xd0\xbe\xd0\xbb\xd1\x8c:" },
		{ "\xe7\x94\xa8\xe6\x88\xb7\xe5\x90\x8d:",
		  "\xe5\xaf\x86\xe7\xa0\x81:" },
		{ "\xe3\x83\xa6\xe3\x83\xbc\xe3\x82\xb6\xe3\x83\xbc\xe5\x90"
		  "\x8d:", "\xe3\x83\x91\xe3\x82\xb9\xe3\x83\xaf\xe3\x83\xbc"
		  "\xe3\x83\x89:" },
		{ "", "" },			/* a server whose prompts are empty */
		{ "\0", "\0" },
		/* Prompts that name neither: the second is still the password. */
		{ "K\xc3\xa4ytt\xc3\xa4j\xc3\xa4tunnus:", "Tunnus 2:" },
		{ "Vstupte:", "Dal\xc5\xa1\xc3\xad:" },
	};
	struct strbuf sb = STRBUF_INIT;
	struct sasl *s;
	char *u, *pr, *pw = enc("xipj3plmq", 9);
	const char *out;
	size_t i;

	(void)state;
	u = enc("alice", 5);
	for (i = 0; i < sizeof t / sizeof t[0]; i++) {
		s = sasl_new("LOGIN", 5);
		pr = enc(t[i].user, strlen(t[i].user) + (t[i].user[0] == '\0'));
		server(s, &sb, pr);
		b64_free((unsigned char *)pr, strlen(pr));
		out = client(s, &sb, u, 0);
		if (i < 11) {
			assert_string_equal(out, "user=\"alice\"");
			assert_string_equal(sasl_user(s), "alice");
		} else {
			assert_string_equal(out, "user or password=<masked, 5 "
			    "bytes> (the prompt does not say which)");
			assert_false(sasl_last_public(s));
			assert_string_equal(sasl_user(s), "");
		}
		pr = enc(t[i].pass, strlen(t[i].pass) + (t[i].pass[0] == '\0'));
		server(s, &sb, pr);
		b64_free((unsigned char *)pr, strlen(pr));
		assert_string_equal(client(s, &sb, pw, 0),
		    "password=<masked, 9 bytes>");
		assert_false(sasl_last_public(s));
		assert_no_secret(sb.buf, sb.len, "xipj3plmq", NULL, 0);
		sasl_free(s);
	}
	b64_free((unsigned char *)u, strlen(u));
	b64_free((unsigned char *)pw, strlen(pw));
	strbuf_free(&sb);
}

/*
 * A server that asks for the password first, in any language, or with a
 * prompt that cannot be read: the first response is masked.
 */
static void
test_login_password_first_any_language(void **state)
{
	static const char *const prompts[] = {
		"Contrase\xc3\xb1" "a:", "Passwort:", "Mot de passe:", "Senha:",
		"Kennwort:", "Has\xc5\x82o:", "Salasana:", "\xc5\x9e" "ifre:",
		"\xd0\x9f\xd0\xb0\xd1\x80\xd0\xbe\xd0\xbb\xd1\x8c:",
		"\xe5\xaf\x86\xe7\xa2\xbc:",
		"\xe3\x83\x91\xe3\x82\xb9\xe3\x83\xaf\xe3\x83\xbc\xe3\x83\x89:",
		"\xeb\xb9\x84\xeb\xb0\x80\xeb\xb2\x88\xed\x98\xb8:",
		"Contrase\xc3\xb1" "a del usuario:",	/* both: a password */
		"Heslo:", "Jelsz\xc3\xb3:", "Lozinka:",
	};
	struct strbuf sb = STRBUF_INIT;
	struct sasl *s;
	char *pr, *pw = enc("xipj3plmq", 9);
	const char *out;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof prompts / sizeof prompts[0]; i++) {
		s = sasl_new("LOGIN", 5);
		pr = enc(prompts[i], strlen(prompts[i]));
		server(s, &sb, pr);
		b64_free((unsigned char *)pr, strlen(pr));
		out = client(s, &sb, pw, 0);
		if (strcmp(out, "password=<masked, 9 bytes>") != 0)
			fail_msg("prompt %zu: %s", i, out);
		assert_false(sasl_last_public(s));
		assert_string_equal(sasl_user(s), "");
		sasl_free(s);
	}
	/* A prompt that is not base64, or binary, says nothing either. */
	s = sasl_new("LOGIN", 5);
	server(s, &sb, "Contrase\xc3\xb1" "a:");
	assert_string_equal(client(s, &sb, pw, 0), "user or password=<masked, "
	    "9 bytes> (the prompt does not say which)");
	sasl_free(s);
	s = sasl_new("LOGIN", 5);
	server(s, &sb, "AQID");
	assert_string_equal(client(s, &sb, pw, 0), "user or password=<masked, "
	    "9 bytes> (the prompt does not say which)");
	sasl_free(s);
	/* The initial response is the user name, by position. */
	s = sasl_new("LOGIN", 5);
	assert_string_equal(client(s, &sb, "YWxpY2U=", 1), "user=\"alice\"");
	pr = enc("Contrase\xc3\xb1" "a:", 12);
	server(s, &sb, pr);
	b64_free((unsigned char *)pr, strlen(pr));
	assert_string_equal(client(s, &sb, pw, 0), "password=<masked, 9 bytes>");
	/* A server that asks again: masked whatever the prompt says. */
	pr = enc("Nombre de usuario:", 18);
	server(s, &sb, pr);
	b64_free((unsigned char *)pr, strlen(pr));
	assert_string_equal(client(s, &sb, pw, 0), "<masked, 9 bytes>");
	sasl_free(s);
	b64_free((unsigned char *)pw, strlen(pw));
	strbuf_free(&sb);
}

static void
test_too_long(void **state)
{
	struct strbuf sb = STRBUF_INIT;
	struct sasl *s = sasl_new("PLAIN", 5);
	size_t n = SASL_LINE_MAX + 4;
	char *line = malloc(n + 1);

	(void)state;
	memset(line, 'Q', n);
	line[n] = '\0';
	assert_string_equal(client(s, &sb, line, 1),
	    "<masked, 12292 bytes, too long to decode>");
	strbuf_reset(&sb);
	sasl_client_long(s, 99999, 0, &sb);
	assert_string_equal(sb.buf, "<masked, 99999 bytes, too long to decode>");
	free(line);
	sasl_free(s);
	strbuf_free(&sb);
}

/* ---- exchanges: RFC examples and malformed payloads, table-driven ---- */

/*
 * One step of an exchange. 'I' is an initial response, 'C' a client line,
 * 'S' a 334 text: data is the decoded payload and is base64-encoded here.
 * 'c' and 's' are sent as they are (not base64, or deliberately broken).
 */
struct step {
	char		 dir;
	const char	*data;
	size_t		 len;
	const char	*want;
};
#define STEP(d, lit, want)	{ d, lit, sizeof lit - 1, want }

/* Secrets that must never show, in any encoding, whatever the step. */
struct exchange {
	const char		*mech;
	const struct step	*steps;
	size_t			 nsteps;
	const char		*secrets[4];
	const char		*user;	/* sasl_user() at the end */
};

/*
 * Feeds every step; each line sits in a buffer followed by more base64
 * ("QUFB"), so that reading past len would change the result.
 */
static void
exchange_run(const struct exchange *x, char **outs)
{
	struct strbuf sb = STRBUF_INIT;
	struct sasl *s = sasl_new(x->mech, strlen(x->mech));
	const struct step *st;
	size_t i, k, n;
	char *line, *buf;

	for (i = 0; i < x->nsteps; i++) {
		st = &x->steps[i];
		if (st->dir == 'c' || st->dir == 's')
			line = strndup(st->data, st->len);
		else
			line = enc(st->data, st->len);
		n = strlen(line);
		buf = malloc(n + 5);
		memcpy(buf, line, n);
		memcpy(buf + n, "QUFB", 5);
		strbuf_reset(&sb);
		if (st->dir == 'S' || st->dir == 's')
			sasl_server(s, buf, n, &sb);
		else
			sasl_client(s, buf, n, st->dir == 'I', &sb);
		outs[i] = strdup(strbuf_str(&sb));
		for (k = 0; k < 4 && x->secrets[k] != NULL; k++)
			assert_no_secret(sb.buf, sb.len, x->secrets[k],
			    st->data, st->len);
		b64_free((unsigned char *)line, n);
		free(buf);
	}
	assert_string_equal(sasl_user(s), x->user);
	sasl_free(s);
	strbuf_free(&sb);
}

static void
exchange_check(const struct exchange *x)
{
	char *a[16], *b[16];
	size_t i;

	assert_true(x->nsteps <= 16);
	exchange_run(x, a);
	/* A second, fresh attempt gives the same text: no hidden state. */
	exchange_run(x, b);
	for (i = 0; i < x->nsteps; i++) {
		if (strcmp(a[i], x->steps[i].want) != 0)
			print_error("step %zu of %s: got '%s'\n", i, x->mech,
			    a[i]);
		assert_string_equal(a[i], x->steps[i].want);
		assert_string_equal(a[i], b[i]);
		free(a[i]);
		free(b[i]);
	}
}

#define EXCHANGE(mech, steps, user, ...) do {				\
	struct exchange x_ = { mech, steps, sizeof steps /		\
	    sizeof steps[0], { __VA_ARGS__ }, user };			\
	exchange_check(&x_);						\
} while (0)

/* RFC 4954 4 and 9: PLAIN with and without initial response, cancel. */
static void
test_rfc4954(void **state)
{
	static const struct step ir[] = {
		STEP('I', "test\0test\0" "1234", "authzid=\"test\" "
		    "user=\"test\" password=<masked, 4 bytes>"),
	};
	static const struct step cont[] = {
		STEP('S', "", "\"\""),
		STEP('C', "test\0test\0" "1234", "authzid=\"test\" "
		    "user=\"test\" password=<masked, 4 bytes>"),
	};
	static const struct step cancel[] = {
		STEP('S', "Username:", "\"Username:\""),
		STEP('c', "*", "cancelled (*)"),
	};
	static const struct step login[] = {
		STEP('S', "Username:", "\"Username:\""),
		STEP('C', "tim", "user=\"tim\""),
		STEP('S', "Password:", "\"Password:\""),
		STEP('C', "tanstaaftanstaaf", "password=<masked, 16 bytes>"),
	};

	char *b = enc("test\0test\0" "1234", 14);

	(void)state;
	assert_string_equal(b, "dGVzdAB0ZXN0ADEyMzQ=");
	b64_free((unsigned char *)b, strlen(b));
	EXCHANGE("PLAIN", ir, "test", "1234");
	EXCHANGE("PLAIN", cont, "test", "1234");
	EXCHANGE("LOGIN", cancel, "", NULL);
	EXCHANGE("LOGIN", login, "tim", "tanstaaftanstaaf");
}

/* RFC 2195 2: the challenge is public, the digest is not. */
static void
test_cram_md5_rfc2195(void **state)
{
	static const struct step t[] = {
		STEP('s', "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+",
		    "\"<1896.697170952@postoffice.reston.mci.net>\""),
		STEP('c', "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw",
		    "user=\"tim\" digest=<masked, 32 hex chars>"),
	};

	(void)state;
	EXCHANGE("CRAM-MD5", t, "tim", "b913a602c7eda7a495b4e6e7334d3890",
	    "tanstaaftanstaaf");
}

static void
test_cram_md5_malformed(void **state)
{
	/* The password sent instead of a digest: nothing is shown. */
	static const struct step raw[] = {
		STEP('C', "tim tanstaaftanstaaf", "malformed CRAM-MD5 (the last "
		    "word is not 32 hex digits): <masked, 20 bytes>"),
	};
	static const struct step nospace[] = {
		STEP('C', "tanstaaftanstaaf", "malformed CRAM-MD5 (no space "
		    "between user and digest): <masked, 16 bytes>"),
	};
	static const struct step shorter[] = {
		STEP('C', "tim b913a602c7eda7a495b4e6e7334d389",
		    "malformed CRAM-MD5 (the last word is not 32 hex digits): "
		    "<masked, 35 bytes>"),
		STEP('C', "b913a602c7eda7a495b4e6e7334d3890",
		    "<masked, 32 bytes>"),
	};
	static const struct step spaces[] = {
		STEP('C', "tim  smith b913a602c7eda7a495b4e6e7334d3890",
		    "user=\"tim  smith\" digest=<masked, 32 hex chars>"),
	};

	(void)state;
	EXCHANGE("CRAM-MD5", raw, "", "tanstaaf", "tim");
	EXCHANGE("CRAM-MD5", nospace, "", "tanstaaf");
	EXCHANGE("CRAM-MD5", shorter, "", "b913a602c7eda7a4");
	EXCHANGE("CRAM-MD5", spaces, "tim  smith", "b913a602c7eda7a4");
}

/* RFC 5802 5: user "user", password "pencil". */
static void
test_scram_sha1_rfc5802(void **state)
{
	static const struct step t[] = {
		STEP('I', "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
		    "gs2 flag=n (no channel binding) user=\"user\" "
		    "nonce=<24 chars>"),
		STEP('S', "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
		    "s=QSXCR+Q6sek8bf92,i=4096", "nonce=<42 chars: client's 24 "
		    "+ server's 18> salt=<12 bytes> iterations=4096"),
		STEP('C', "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
		    "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", "channel binding "
		    "header=\"n,,\" nonce=<42 chars, the server's> "
		    "proof=<masked, 20 bytes>"),
		STEP('S', "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
		    "server signature=<masked, 20 bytes>"),
		STEP('C', "", "empty response (after the server's final "
		    "message)"),
	};

	(void)state;
	EXCHANGE("SCRAM-SHA-1", t, "user", "pencil",
	    "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts", "rmF9pqV8S7suAoZWja4dJRkFsKQ");
}

/* RFC 7677 3, no initial response. */
static void
test_scram_sha256_rfc7677(void **state)
{
	static const struct step t[] = {
		STEP('S', "", "\"\""),
		STEP('C', "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
		    "gs2 flag=n (no channel binding) user=\"user\" "
		    "nonce=<20 chars>"),
		STEP('S', "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
		    "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "nonce=<50 chars: "
		    "client's 20 + server's 30> salt=<16 bytes> "
		    "iterations=4096"),
		STEP('C', "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)"
		    "hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		    "channel binding header=\"n,,\" nonce=<50 chars, the "
		    "server's> proof=<masked, 32 bytes>"),
		STEP('S', "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
		    "server signature=<masked, 32 bytes>"),
	};

	(void)state;
	EXCHANGE("scram-sha-256", t, "user", "pencil",
	    "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ",
	    "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4");
}

/* -PLUS, authzid, =2C/=3D, channel binding data, checks, errors. */
static void
test_scram_plus_and_checks(void **state)
{
	static const struct step plus[] = {
		STEP('I', "p=tls-exporter,a=adm=2Cin,n=us=3Der,r=abc",
		    "gs2 flag=p channel binding=\"tls-exporter\" "
		    "authzid=\"adm,in\" user=\"us=er\" nonce=<3 chars>; authzid "
		    "differs from user"),
		STEP('S', "r=abcdef,s=QSXCR+Q6sek8bf92,i=1000", "nonce=<6 chars: "
		    "client's 3 + server's 3> salt=<12 bytes> iterations=1000 "
		    "(fewer than 4096)"),
		/* c= is "p=tls-exporter,a=adm=2Cin," and 10 binding bytes. */
		STEP('C', "c=cD10bHMtZXhwb3J0ZXIsYT1hZG09MkNpbiwAAQIDBAUGBwgJ,"
		    "r=abcdef,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", "channel "
		    "binding header=\"p=tls-exporter,a=adm=2Cin,\" channel "
		    "binding data=<10 bytes> nonce=<6 chars, the server's> "
		    "proof=<masked, 20 bytes, expected 32>"),
		STEP('S', "e=invalid-proof", "error=\"invalid-proof\""),
	};
	static const struct step mismatch[] = {
		STEP('I', "y,,n=bob,r=abc", "gs2 flag=y (client could bind, "
		    "thinks the server cannot) user=\"bob\" nonce=<3 chars>; "
		    "-PLUS mechanism without channel binding"),
		STEP('S', "r=xyzdef,s=QSXC,i=9x", "nonce=<6 chars, does not "
		    "extend the client's> salt=<3 bytes> iterations=\"9x\" "
		    "(not a number)"),
		/* c= "n,," where client-first said "y,,"; x= is masked. */
		STEP('C', "c=biws,r=abcdef,x=pencil,p=pencil!",
		    "channel binding header=\"n,,\" (differs from "
		    "client-first) nonce=<6 chars, differs from the server's> "
		    "\"x\"=<masked, 6 bytes> proof=<masked, 7 chars, invalid "
		    "base64>"),
	};
	static const struct step bad[] = {
		STEP('I', "n=user,r=abc", "malformed SCRAM-SHA-1 (no valid GS2 "
		    "header): <masked, 12 bytes>"),
		STEP('C', "c=biws,r=abc,pencil", "malformed SCRAM-SHA-1 "
		    "(client-final without c=, r= and p=): <masked, 19 bytes>"),
		STEP('C', "pencil", "<masked, 6 bytes>"),
	};
	static const struct step bad2[] = {
		STEP('I', "n,,n=user", "malformed SCRAM-SHA-1 (client-first "
		    "without n= and r=): <masked, 9 bytes>"),
	};
	static const struct step esc[] = {
		STEP('I', "n,,n=a=2Cb=3Dc=x,r=abc", "gs2 flag=n (no channel "
		    "binding) user=\"a,b=c=x\" (invalid = escape) "
		    "nonce=<3 chars>"),
	};
	static const struct step notplus[] = {
		STEP('I', "p=tls-unique,,n=u,r=abc", "gs2 flag=p channel "
		    "binding=\"tls-unique\" user=\"u\" nonce=<3 chars>; "
		    "channel binding asked for without -PLUS"),
	};

	(void)state;
	EXCHANGE("SCRAM-SHA-256-PLUS", plus, "us=er",
	    "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts");
	EXCHANGE("SCRAM-SHA-1-PLUS", mismatch, "bob", "pencil");
	EXCHANGE("SCRAM-SHA-1", bad, "", "pencil");
	EXCHANGE("SCRAM-SHA-1", bad2, "", "pencil");
	EXCHANGE("SCRAM-SHA-1", esc, "a,b=c=x", "pencil");
	EXCHANGE("SCRAM-SHA-1", notplus, "u", "pencil");
}

/* RFC 7628 4.1 and 4.3: success form, then the error form. */
static void
test_oauthbearer_rfc7628(void **state)
{
	static const struct step ok[] = {
		STEP('I', "n,a=user@example.com,\x01" "host=server.example.com"
		    "\x01" "port=143\x01" "auth=Bearer vF9dft4qmTc2Nvb3RlckBh"
		    "bHRhdmlzdGEuY29tCg==\x01\x01", "gs2 flag=n (no channel "
		    "binding) authzid=\"user@example.com\" "
		    "host=\"server.example.com\" port=\"143\" auth scheme=Bearer "
		    "token=<masked, 42 bytes>"),
	};
	static const struct step err[] = {
		STEP('I', "n,a=user@example.com,\x01" "host=server.example.com"
		    "\x01" "port=143\x01" "auth=Bearer vF9dft4qmTc2Nvb3RlckBh"
		    "bHRhdmlzdGEuY29tCg==\x01\x01", "gs2 flag=n (no channel "
		    "binding) authzid=\"user@example.com\" "
		    "host=\"server.example.com\" port=\"143\" auth scheme=Bearer "
		    "token=<masked, 42 bytes>"),
		STEP('s', "eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcG"
		    "xlX3Njb3BlIiwib3BlbmlkLWNvbmZpZ3VyYXRpb24iOiJodHRwczovL2V4"
		    "YW1wbGUuY29tLy53ZWxsLWtub3duL29wZW5pZC1jb25maWd1cmF0aW9uIn"
		    "0=", "error=\"{\\\"status\\\":\\\"invalid_token\\\","
		    "\\\"scope\\\":\\\"example_scope\\\",\\\"openid-configuration"
		    "\\\":\\\"https://example.com/.well-known/openid-configuration"
		    "\\\"}\""),
		STEP('c', "AQ==", "^A (acknowledges the server's error)"),
	};
	static const struct step bad[] = {
		STEP('I', "p=tls-unique,,\x01" "auth=Bearer xipj3plmq\x01\x01",
		    "malformed OAUTHBEARER (no valid GS2 header and ^A): "
		    "<masked, 38 bytes>"),
	};
	static const struct step bad2[] = {
		STEP('I', "n,,\x01" "auth=Bearer xipj3plmq\n\x01",
		    "malformed OAUTHBEARER (not ended by ^A^A): <masked, 27 "
		    "bytes>"),
	};
	static const struct step noauth[] = {
		STEP('I', "n,,\x01" "host=h\x01" "x=xipj3plmq\x01\x01",
		    "gs2 flag=n (no channel binding) host=\"h\" "
		    "\"x\"=<masked, 9 bytes>; no auth= field"),
		STEP('C', "xipj3plmq", "<masked, 9 bytes>"),
	};

	(void)state;
	EXCHANGE("OAUTHBEARER", ok, "user@example.com",
	    "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg");
	EXCHANGE("OAUTHBEARER", err, "user@example.com",
	    "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg");
	EXCHANGE("OAUTHBEARER", bad, "", "xipj3plmq");
	EXCHANGE("OAUTHBEARER", bad2, "", "xipj3plmq");
	EXCHANGE("OAUTHBEARER", noauth, "", "xipj3plmq");
}

/* Google's XOAUTH2: a token, then the JSON error and the empty reply. */
static void
test_xoauth2(void **state)
{
	static const struct step t[] = {
		STEP('I', "user=someuser@example.com\x01" "auth=Bearer ya29.vF9d"
		    "ft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg\x01\x01",
		    "user=\"someuser@example.com\" auth scheme=Bearer "
		    "token=<masked, 45 bytes>"),
		STEP('S', "{\"status\":\"401\",\"schemes\":\"Bearer\","
		    "\"scope\":\"https://mail.google.com/\"}", "error=\"{\\\""
		    "status\\\":\\\"401\\\",\\\"schemes\\\":\\\"Bearer\\\","
		    "\\\"scope\\\":\\\"https://mail.google.com/\\\"}\""),
		STEP('C', "", "empty response (after the server's error)"),
	};
	/* curl --oauth2-bearer with a token copied with its newline. */
	static const struct step nl[] = {
		STEP('S', "", "\"\""),
		STEP('C', "user=alice\x01" "auth=bearer xipj3plmqQ\n\x01\x01",
		    "user=\"alice\" auth scheme=\"bearer\" token=<masked, 11 "
		    "bytes, ends with LF (0x0a)>"),
	};
	static const struct step bad[] = {
		STEP('I', "user=alice\x01" "auth=Bearer xipj3plmq", "malformed "
		    "XOAUTH2 (not ended by ^A^A): <masked, 32 bytes>"),
		STEP('C', "xipj3plmq", "<masked, 9 bytes>"),
	};
	static const struct step bad2[] = {
		STEP('I', "user=alice\x01xipj3plmq\x01\x01", "malformed XOAUTH2 "
		    "(a field without key=): <masked, 22 bytes>"),
	};
	static const struct step bad3[] = {
		STEP('I', "user=alice\x01\x01" "auth=Bearer xipj3plmq\x01\x01",
		    "malformed XOAUTH2 (empty field before the end): <masked, "
		    "35 bytes>"),
	};
	static const struct step noscheme[] = {
		STEP('I', "user=alice\x01" "auth=xipj3plmq\x01\x01",
		    "user=\"alice\" auth=<masked, 9 bytes> (no scheme before "
		    "the token)"),
	};

	(void)state;
	EXCHANGE("XOAUTH2", t, "someuser@example.com",
	    "ya29.vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg");
	EXCHANGE("XOAUTH2", nl, "alice", "xipj3plmq");
	EXCHANGE("XOAUTH2", bad, "", "xipj3plmq", "alice");
	EXCHANGE("XOAUTH2", bad2, "", "xipj3plmq", "alice");
	EXCHANGE("XOAUTH2", bad3, "", "xipj3plmq", "alice");
	EXCHANGE("XOAUTH2", noscheme, "alice", "xipj3plmq");
}

/* RFC 2831 4: user "chris", password "secret". */
static void
test_digest_md5_rfc2831(void **state)
{
	static const struct step t[] = {
		STEP('S', "realm=\"elwood.innosoft.com\",nonce=\"OA6MG9tEQGm2hh\","
		    "qop=\"auth\",algorithm=md5-sess,charset=utf-8",
		    "realm=\"elwood.innosoft.com\" nonce=<14 chars> qop=\"auth\" "
		    "algorithm=\"md5-sess\" charset=\"utf-8\""),
		STEP('C', "charset=utf-8,username=\"chris\","
		    "realm=\"elwood.innosoft.com\",nonce=\"OA6MG9tEQGm2hh\","
		    "nc=00000001,cnonce=\"OA6MHXh6VqTrRk\","
		    "digest-uri=\"imap/elwood.innosoft.com\","
		    "response=d388dad90d4bbd760a152321f2143af7,qop=auth",
		    "charset=\"utf-8\" user=\"chris\" "
		    "realm=\"elwood.innosoft.com\" nonce=<14 chars> "
		    "nc=\"00000001\" cnonce=<14 chars> "
		    "digest-uri=\"imap/elwood.innosoft.com\" "
		    "response=<masked, 32 hex chars> qop=\"auth\""),
		STEP('S', "rspauth=ea40f60335c427b5527b84dbabcdfffd",
		    "rspauth=<masked, 32 hex chars>"),
		STEP('C', "", "empty response (after rspauth)"),
	};
	static const struct step odd[] = {
		STEP('S', "realm=\"a\\\"b\" , x-new=\"1\",nonce=\"abc\"",
		    "realm=\"a\\\"b\" \"x-new\"=\"1\" nonce=<3 chars>"),
		STEP('C', "username=\"c\\\\hris\",authzid=\"root\","
		    "password=\"secret\",response=secret",
		    "user=\"c\\\\hris\" authzid=\"root\" \"password\"=<masked, "
		    "6 bytes> response=<masked, 6 bytes, not hex>; authzid "
		    "differs from user"),
	};
	static const struct step bad[] = {
		STEP('S', "not a challenge", "\"not a challenge\""),
		STEP('C', "username=\"chris,response=secret", "malformed "
		    "DIGEST-MD5 (not a list of name=value): <masked, 31 "
		    "bytes>"),
	};
	static const struct step bad2[] = {
		STEP('C', "", "malformed DIGEST-MD5 (not a list of name=value): "
		    "<masked, 0 bytes, empty>"),
	};

	(void)state;
	EXCHANGE("DIGEST-MD5", t, "chris", "d388dad90d4bbd760a152321f2143af7",
	    "ea40f60335c427b5527b84dbabcdfffd", "secret");
	EXCHANGE("DIGEST-MD5", odd, "c\\\\hris", "secret");
	EXCHANGE("DIGEST-MD5", bad, "", "secret", "chris");
	EXCHANGE("DIGEST-MD5", bad2, "", "secret");
}

static void
test_external(void **state)
{
	static const struct step empty[] = {
		STEP('c', "=", "authzid=\"\" (derive from the certificate)"),
	};
	static const struct step named[] = {
		STEP('S', "", "\"\""),
		STEP('C', "alice@example.org", "authzid=\"alice@example.org\""),
	};
	struct strbuf sb = STRBUF_INIT;
	struct sasl *s;

	(void)state;
	/* "=" only means empty as an initial response: use the API. */
	s = sasl_new("EXTERNAL", 8);
	assert_string_equal(client(s, &sb, "=", 1), empty[0].want);
	assert_true(sasl_last_public(s));
	sasl_free(s);
	EXCHANGE("EXTERNAL", named, "alice@example.org", NULL);
	strbuf_free(&sb);
}

/* Binary tokens that may hold credentials: lengths only, every round. */
static void
test_opaque_mechanisms(void **state)
{
	static const struct step ntlm[] = {
		STEP('I', "NTLMSSP\0\x01\0\0\0", "<opaque, 12 bytes>"),
		STEP('S', "NTLMSSP\0\x02\0\0\0\x01\x02", "<14 bytes binary>"),
		STEP('C', "NTLMSSP\0\x03\0\0\0xipj3plmq", "<opaque, 21 bytes>"),
	};
	static const struct step gss[] = {
		STEP('S', "", "\"\""),
		STEP('C', "\x60\x82xipj3plmq", "<opaque, 11 bytes>"),
		STEP('C', "", "<opaque, 0 bytes>"),
	};
	static const struct step unknown[] = {
		STEP('I', "alice\0xipj3plmq", "<opaque, 15 bytes>"),
	};

	(void)state;
	EXCHANGE("NTLM", ntlm, "", "xipj3plmq");
	EXCHANGE("gssapi", gss, "", "xipj3plmq");
	EXCHANGE("X-MADE-UP", unknown, "", "xipj3plmq", "alice");
}

static void
test_mask_more_diagnostics(void **state)
{
	static const struct step utf8[] = {
		STEP('I', "\0u\0xipj\xc3\xa4plmq", "authzid=\"\" user=\"u\" "
		    "password=<masked, 10 bytes, non-ASCII>"),
	};
	static const struct step latin1[] = {
		STEP('I', "\0u\0xipj\xe4plmq", "authzid=\"\" user=\"u\" "
		    "password=<masked, 9 bytes, non-ASCII, invalid UTF-8>"),
	};
	static const struct step overlong[] = {
		STEP('I', "\0u\0xipj\xc0\xafplmq", "authzid=\"\" user=\"u\" "
		    "password=<masked, 10 bytes, non-ASCII, invalid UTF-8>"),
	};
	/* "eGlwajNwbG1xMTI=" is base64 of "xipj3plmq12". */
	static const struct step twice[] = {
		STEP('I', "\0u\0eGlwajNwbG1xMTI=", "authzid=\"\" user=\"u\" "
		    "password=<masked, 16 bytes, looks like base64 itself "
		    "(encoded twice?)>"),
	};
	/* Base64 of binary, and short base64, are ordinary passwords. */
	static const struct step notwice[] = {
		STEP('I', "\0u\0+/+/+/+/", "authzid=\"\" user=\"u\" "
		    "password=<masked, 8 bytes>"),
		STEP('C', "YWJj", "<masked, 4 bytes>"),
	};
	static const struct step token[] = {
		STEP('I', "user=u\x01" "auth=Bearer  eGlwajNwbG1xMTI=\r\n\x01\x01",
		    "user=\"u\" auth scheme=Bearer token=<masked, 19 bytes, "
		    "starts with space (0x20), ends with LF (0x0a)>"),
	};

	(void)state;
	EXCHANGE("PLAIN", utf8, "u", "xipj");
	EXCHANGE("PLAIN", latin1, "u", "xipj");
	EXCHANGE("PLAIN", overlong, "u", "xipj");
	EXCHANGE("PLAIN", twice, "u", "xipj3plmq12", "eGlwajNwbG1xMTI");
	EXCHANGE("PLAIN", notwice, "u", "+/+/+/+/");
	EXCHANGE("XOAUTH2", token, "u", "eGlwajNwbG1xMTI");
}

/* The secrets of every mechanism, past a cancel: nothing decoded. */
static void
test_cancel_every_mechanism(void **state)
{
	static const char *const mechs[] = {
		"PLAIN", "LOGIN", "CRAM-MD5", "DIGEST-MD5", "SCRAM-SHA-1",
		"SCRAM-SHA-256-PLUS", "XOAUTH2", "OAUTHBEARER", "EXTERNAL",
		"NTLM", "GSSAPI", "X-UNKNOWN",
	};
	struct strbuf sb = STRBUF_INIT;
	struct sasl *s;
	size_t i;
	char *b = enc("n,,n=u,r=xipj3plmq", 18);

	(void)state;
	for (i = 0; i < sizeof mechs / sizeof mechs[0]; i++) {
		s = sasl_new(mechs[i], strlen(mechs[i]));
		assert_string_equal(client(s, &sb, "*", 0), "cancelled (*)");
		assert_string_equal(client(s, &sb, b, 0), "<masked, 24 bytes>");
		assert_no_secret(sb.buf, sb.len, "xipj3plmq", NULL, 0);
		sasl_free(s);
	}
	b64_free((unsigned char *)b, strlen(b));
	strbuf_free(&sb);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_b64_decode_valid),
		cmocka_unit_test(test_b64_decode_nul),
		cmocka_unit_test(test_b64_decode_invalid),
		cmocka_unit_test(test_b64_check),
		cmocka_unit_test(test_b64_roundtrip),
		cmocka_unit_test(test_plain_rfc4616),
		cmocka_unit_test(test_plain_continuation),
		cmocka_unit_test(test_plain_wrong_nul_count),
		cmocka_unit_test(test_plain_empty_ir),
		cmocka_unit_test(test_plain_invalid_base64),
		cmocka_unit_test(test_login_two_rounds),
		cmocka_unit_test(test_login_prompts_with_nul),
		cmocka_unit_test(test_login_initial_response),
		cmocka_unit_test(test_login_password_prompt_first),
		cmocka_unit_test(test_login_empty_and_quotes),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_mask_diagnostics),
		cmocka_unit_test(test_unknown_mechanism),
		cmocka_unit_test(test_mech_names),
		cmocka_unit_test(test_mech_valid),
		cmocka_unit_test(test_login_prompt_languages),
		cmocka_unit_test(test_login_password_first_any_language),
		cmocka_unit_test(test_too_long),
		cmocka_unit_test(test_rfc4954),
		cmocka_unit_test(test_cram_md5_rfc2195),
		cmocka_unit_test(test_cram_md5_malformed),
		cmocka_unit_test(test_scram_sha1_rfc5802),
		cmocka_unit_test(test_scram_sha256_rfc7677),
		cmocka_unit_test(test_scram_plus_and_checks),
		cmocka_unit_test(test_oauthbearer_rfc7628),
		cmocka_unit_test(test_xoauth2),
		cmocka_unit_test(test_digest_md5_rfc2831),
		cmocka_unit_test(test_external),
		cmocka_unit_test(test_opaque_mechanisms),
		cmocka_unit_test(test_mask_more_diagnostics),
		cmocka_unit_test(test_cancel_every_mechanism),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
