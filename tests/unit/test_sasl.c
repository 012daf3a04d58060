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
	    "authzid=\"Ursel\" user=\"Kurt\" password=<masked, 9 bytes>");
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
	struct sasl *s = sasl_new("xoauth2", 7);
	char *b = enc(tok, sizeof tok - 1), *c;

	(void)state;
	assert_string_equal(sasl_mech(s), "XOAUTH2");
	strbuf_reset(&sb);
	sasl_client(s, b, strlen(b), 1, &sb);
	assert_string_equal(sb.buf, "<masked, 39 bytes>");
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
	assert_string_equal(client(s, &sb, "YWxpY2U=", 0), "<masked, 5 bytes>");
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
	s = sasl_new("X\x1b[2J\0y", 7);
	assert_string_equal(sasl_mech(s), "X??2J?Y");
	sasl_free(s);
	s = sasl_new("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 40);
	assert_int_equal(strlen(sasl_mech(s)), 31);
	sasl_free(s);
	/* A prefix of a known name is not that mechanism. */
	s = sasl_new("PLAINX", 6);
	assert_string_equal(sasl_mech(s), "PLAINX");
	{
		struct strbuf sb = STRBUF_INIT;
		char *b = enc("\0u\0xipj3plmq", 12);

		assert_string_equal(client(s, &sb, b, 1), "<masked, 12 bytes>");
		b64_free((unsigned char *)b, strlen(b));
		strbuf_free(&sb);
	}
	sasl_free(s);
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
		cmocka_unit_test(test_too_long),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
