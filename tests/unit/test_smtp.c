/*
 * test_smtp.c - the transcript parser: records, stats, masking, and the same
 * records whatever the segmentation of the input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "b64.h"
#include "smtp.h"
#include "strbuf.h"

#define CANARY		"Canary-Pw-9x7"
#define PLAIN_BLOB	"\0alice@example.org\0" CANARY
#define PLAIN_BLOB_LEN	(sizeof PLAIN_BLOB - 1)

/* ---- recording ---- */

static int keep_pairing;	/* keep the "[to CMD]" of pipelined replies */

struct log {
	struct strbuf	 sb;
	unsigned int	 records;
	size_t		 maxlen;
};

static void
rec_cb(const struct smtp_rec *r, void *arg)
{
	static const char kinds[] = "carhn";
	struct log *l = arg;
	const char *to;
	size_t i, len;

	/* Every record is one safe line: escaped, NUL-terminated, sized. */
	assert_int_equal(strlen(r->text), r->len);
	for (i = 0; i < r->len; i++)
		assert_false((unsigned char)r->text[i] < 0x20 ||
		    (unsigned char)r->text[i] == 0x7f);
	assert_true(r->kind == SMTP_REC_REPLY || r->code == 0);
	if (r->len > l->maxlen)
		l->maxlen = r->len;
	l->records++;
	len = r->len;
	/* The golden transcripts predate the "[to CMD]" naming of pipelined
	 * replies; test_pipelined_reply_names_command checks it. */
	if (!keep_pairing && r->kind == SMTP_REC_REPLY && len > 0 &&
	    r->text[len - 1] == ']' && (to = strstr(r->text, " [to ")) != NULL)
		len = (size_t)(to - r->text);
	strbuf_printf(&l->sb, "%c%c %d %.*s\n", r->dir == SMTP_CLIENT ? 'C' : 'S',
	    kinds[r->kind], r->code, (int)len, r->text);
}

/* ---- scripts ---- */

#define EV_EOF	((size_t)-1)
/* An event holding one line of smtptap's own EHLO reply before TLS. */
#define PRETLS	((enum smtp_dir)2)

/* The verdict of the last run(), for run_all_ways() to compare. */
static char verdict[2048];

struct ev {
	enum smtp_dir	 dir;
	char		*data;
	size_t		 len;	/* EV_EOF: end of that direction */
};

struct script {
	struct ev	 ev[64];
	size_t		 n;
};

static void
add(struct script *s, enum smtp_dir dir, const void *data, size_t len)
{
	struct ev *e;

	assert_true(s->n < 64);
	e = &s->ev[s->n++];
	e->dir = dir;
	e->len = len;
	e->data = malloc(len + 1);
	memcpy(e->data, data, len);
}

static void
adds(struct script *s, enum smtp_dir dir, const char *str)
{
	add(s, dir, str, strlen(str));
}

static void
add_eof(struct script *s, enum smtp_dir dir)
{
	struct ev *e;

	assert_true(s->n < 64);
	e = &s->ev[s->n++];
	e->dir = dir;
	e->data = NULL;
	e->len = EV_EOF;
}

/* A client line: base64 of bytes, then CRLF. */
static void
add_b64(struct script *s, const char *prefix, const void *p, size_t n)
{
	char *b = b64_encode(p, n), *line;
	size_t len = strlen(prefix) + strlen(b) + 2;

	line = malloc(len + 1);
	snprintf(line, len + 1, "%s%s\r\n", prefix, b);
	adds(s, SMTP_CLIENT, line);
	free(line);
	b64_free((unsigned char *)b, strlen(b));
}

static void
script_free(struct script *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		free(s->ev[i].data);
	s->n = 0;
}

/*
 * Feed a script, each event in pieces of at most chunk bytes (0: whole);
 * with split > 0, each event in two pieces cut at split instead.
 */
static char *
run(const struct script *s, size_t chunk, size_t split,
    struct smtp_stats *stats, struct log *out)
{
	struct log l;
	struct smtp *p;
	size_t i, off, n;

	memset(&l, 0, sizeof l);
	strbuf_init(&l.sb, 1024 * 1024);
	p = smtp_new(rec_cb, &l);
	for (i = 0; i < s->n; i++) {
		if (s->ev[i].len == EV_EOF) {
			smtp_eof(p, s->ev[i].dir);
			continue;
		}
		if (s->ev[i].dir == PRETLS) {
			smtp_pretls_caps(p, s->ev[i].data, s->ev[i].len);
			continue;
		}
		for (off = 0; off < s->ev[i].len; off += n) {
			n = s->ev[i].len - off;
			if (split > 0 && off == 0 && split < n)
				n = split;
			else if (chunk > 0 && chunk < n)
				n = chunk;
			smtp_feed(p, s->ev[i].dir, s->ev[i].data + off, n);
		}
	}
	if (stats != NULL)
		*stats = *smtp_stats(p);
	smtp_eof(p, SMTP_CLIENT);
	smtp_eof(p, SMTP_SERVER);
	{
		struct strbuf v;

		strbuf_init(&v, sizeof verdict - 1);
		smtp_verdict(p, &v);
		snprintf(verdict, sizeof verdict, "%s", strbuf_str(&v));
		assert_int_equal(v.dropped, 0);
		strbuf_free(&v);
	}
	smtp_free(p);
	if (out != NULL)
		*out = l;
	assert_int_equal(l.sb.dropped, 0);
	return l.sb.buf != NULL ? l.sb.buf : strdup("");
}

/* n == 0: the whole of needle. */
static int
contains(const char *hay, const char *needle, size_t n)
{
	size_t i, len = strlen(hay);

	if (n == 0)
		n = strlen(needle);
	for (i = 0; n > 0 && i + n <= len; i++)
		if (memcmp(hay + i, needle, n) == 0)
			return 1;
	return 0;
}

/* The canary in no form: raw, base64 at each alignment, hex, PLAIN blob. */
static void
assert_no_canary(const char *t)
{
	char pre[32], *b, h[64];
	size_t k, i, n = strlen(CANARY);

	assert_false(contains(t, CANARY, n));
	for (k = 0; k < 3; k++) {
		memset(pre, 0, k);
		memcpy(pre + k, CANARY, n);
		b = b64_encode((unsigned char *)pre, k + n);
		assert_false(contains(t, b + (k ? 4 : 0), strlen(b) - 4 -
		    (k ? 4 : 0)));
		b64_free((unsigned char *)b, strlen(b));
	}
	for (i = 0; i < n; i++)
		snprintf(h + 2 * i, 3, "%02x", (unsigned char)CANARY[i]);
	assert_false(contains(t, h, 2 * n));
	b = b64_encode((const unsigned char *)PLAIN_BLOB, PLAIN_BLOB_LEN);
	assert_false(contains(t, b, strlen(b)));
	b64_free((unsigned char *)b, strlen(b));
}

/* Same records for every segmentation; returns the whole-feed transcript. */
static char *
run_all_ways(const struct script *s, struct smtp_stats *stats)
{
	struct smtp_stats st2;
	char *ref, *t;
	size_t maxlen = 0, i, k;
	char vref[sizeof verdict];

	ref = run(s, 0, 0, stats, NULL);
	assert_no_canary(ref);
	assert_no_canary(verdict);
	memcpy(vref, verdict, sizeof vref);
	for (i = 0; i < s->n; i++)
		if (s->ev[i].len != EV_EOF && s->ev[i].len > maxlen)
			maxlen = s->ev[i].len;
	for (k = 1; k < maxlen; k++) {
		t = run(s, 0, k, &st2, NULL);
		if (strcmp(ref, t) != 0)
			fail_msg("split at %zu differs:\n%s\n---\n%s", k, ref, t);
		assert_string_equal(verdict, vref);
		assert_memory_equal(&st2, stats, sizeof st2);
		free(t);
	}
	for (k = 1; k <= 17; k++) {
		t = run(s, k, 0, &st2, NULL);
		if (strcmp(ref, t) != 0)
			fail_msg("chunk %zu differs:\n%s\n---\n%s", k, ref, t);
		assert_string_equal(verdict, vref);
		assert_memory_equal(&st2, stats, sizeof st2);
		free(t);
	}
	memcpy(verdict, vref, sizeof vref);
	return ref;
}

/* ---- the full session ---- */

static const char session_expected[] =
	"Sr 220 220 mx.example ESMTP\n"
	"Cc 0 EHLO client\n"
	"Sr 250 250-mx.example\n"
	"Sr 250 250-PIPELINING\n"
	"Sr 250 250-AUTH PLAIN LOGIN\n"
	"Sr 250 250-CHUNKING\n"
	"Sr 250 250 8BITMIME\n"
	"Sn 0 capabilities: PIPELINING, AUTH PLAIN LOGIN, CHUNKING, "
	    "8BITMIME\n"
	"Ca 0 AUTH PLAIN\n"
	"Cn 0 AUTH PLAIN: offered by the server (offered: PLAIN LOGIN)\n"
	"Sr 334 334  \xe2\x87\x92 \"\"\n"
	"Ca 0 * \xe2\x87\x92 cancelled (*)\n"
	"Sr 501 501 5.7.0 Authentication cancelled \xe2\x87\x92 "
	    "authentication cancelled by the client (*)\n"
	"Ca 0 AUTH PLAIN <masked> \xe2\x87\x92 authzid=\"\" "
	    "user=\"alice@example.org\" password=<masked, 13 bytes>\n"
	"Sr 535 535 5.7.8 Authentication failed \xe2\x87\x92 "
	    "authentication credentials invalid\n"
	"Ca 0 auth login\n"
	"Sr 334 334 VXNlcm5hbWU6 \xe2\x87\x92 \"Username:\"\n"
	"Ca 0 YWxpY2U= \xe2\x87\x92 user=\"alice\"\n"
	"Sr 334 334 UGFzc3dvcmQ6 \xe2\x87\x92 \"Password:\"\n"
	"Ca 0 <masked> \xe2\x87\x92 password=<masked, 13 bytes>\n"
	"Sr 235 235 2.7.0 Authentication successful \xe2\x87\x92 "
	    "authentication succeeded\n"
	"Cc 0 MAIL FROM:<alice@example.org>\n"
	"Cc 0 RCPT TO:<bob@example.net>\n"
	"Cc 0 DATA\n"
	"Sr 250 250 2.1.0 Ok \xe2\x87\x92 success (address)\n"
	"Sr 250 250 2.1.5 Ok \xe2\x87\x92 destination address valid\n"
	"Sr 354 354 End data with <CR><LF>.<CR><LF>\n"
	"Ch 0 (header) Subject: hello\n"
	"Ch 0 (header) X-Folded: a\n"
	"Ch 0 (header) \\tb\n"
	"Ch 0 (header) From: \\x1b[2J<alice@example.org> [LF]\n"
	"Cn 0 message: 112 bytes, 10 lines, longest line 29 bytes, "
	    "2 bare LF, 1 bare CR, 1 NUL\n"
	"Cc 0 .\n"
	"Sr 250 250 2.0.0 Ok: queued as 1 \xe2\x87\x92 message accepted\n"
	"Cc 0 MAIL FROM:<a@x>\n"
	"Cc 0 RCPT TO:<b@y>\n"
	"Cc 0 BDAT 12\n"
	"Cn 0 BDAT chunk: 12 bytes\n"
	"Cc 0 BDAT 3 LAST\n"
	"Cn 0 BDAT chunk: 3 bytes, LAST\n"
	"Cn 0 message: 15 bytes, 4 lines, longest line 4 bytes, "
	    "2 BDAT chunks\n"
	"Sr 250 250 Ok\n"
	"Sr 250 250 Ok\n"
	"Sr 250 250 2.0.0 12 octets received \xe2\x87\x92 success\n"
	"Sr 250 250 2.0.0 Ok: queued as 2 \xe2\x87\x92 message accepted\n"
	"Cc 0 NO\\x00OP\n"
	"Cc 0 @LONG@ [+904 bytes]\n"
	"Cc 0 VRFY \\x1b]0;evil\\x07\\r\n"
	"Sr 502 502 5.5.2 Error \xe2\x87\x92 syntax error\n"
	"Sr 500 500 5.5.2 Line too long \xe2\x87\x92 syntax error\n"
	"Sr 252 252 maybe\n"
	"Cc 0 QUIT\n"
	"Sr 221 221 2.0.0 Bye \xe2\x87\x92 success\n";

static void
build_session(struct script *s)
{
	char *big;

	adds(s, SMTP_SERVER, "220 mx.example ESMTP\r\n");
	adds(s, SMTP_CLIENT, "EHLO client\r\n");
	adds(s, SMTP_SERVER, "250-mx.example\r\n250-PIPELINING\r\n"
	    "250-AUTH PLAIN LOGIN\r\n250-CHUNKING\r\n250 8BITMIME\r\n");
	adds(s, SMTP_CLIENT, "AUTH PLAIN\r\n");
	adds(s, SMTP_SERVER, "334 \r\n");
	adds(s, SMTP_CLIENT, "*\r\n");
	adds(s, SMTP_SERVER, "501 5.7.0 Authentication cancelled\r\n");
	add_b64(s, "AUTH PLAIN ", PLAIN_BLOB, PLAIN_BLOB_LEN);
	adds(s, SMTP_SERVER, "535 5.7.8 Authentication failed\r\n");
	adds(s, SMTP_CLIENT, "auth login\r\n");
	adds(s, SMTP_SERVER, "334 VXNlcm5hbWU6\r\n");
	adds(s, SMTP_CLIENT, "YWxpY2U=\r\n");
	adds(s, SMTP_SERVER, "334 UGFzc3dvcmQ6\r\n");
	add_b64(s, "", CANARY, strlen(CANARY));
	adds(s, SMTP_SERVER, "235 2.7.0 Authentication successful\r\n");
	/* Pipelined: three commands in one segment. */
	adds(s, SMTP_CLIENT, "MAIL FROM:<alice@example.org>\r\n"
	    "RCPT TO:<bob@example.net>\r\nDATA\r\n");
	adds(s, SMTP_SERVER, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
	    "354 End data with <CR><LF>.<CR><LF>\r\n");
	add(s, SMTP_CLIENT, "Subject: hello\r\nX-Folded: a\r\n\tb\r\n"
	    "From: \x1b[2J<alice@example.org>\n\r\nbody line\r\n"
	    "..dot-stuffed\r\nbare\nlf\rcr\r\nnul\0here\r\n.\r\n", 116);
	adds(s, SMTP_SERVER, "250 2.0.0 Ok: queued as 1\r\n");
	/* The chunk holds what would end DATA; it must not be scanned. */
	adds(s, SMTP_CLIENT, "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n"
	    "BDAT 12\r\na\r\n.\r\nQUIT\r\nBDAT 3 LAST\r\nxyz");
	adds(s, SMTP_SERVER, "250 Ok\r\n250 Ok\r\n"
	    "250 2.0.0 12 octets received\r\n250 2.0.0 Ok: queued as 2\r\n");
	big = malloc(5000 + 2);
	memset(big, 'X', 5000);
	memcpy(big + 5000, "\r\n", 2);
	add(s, SMTP_CLIENT, "NO\0OP\r\n", 7);
	add(s, SMTP_CLIENT, big, 5002);
	free(big);
	adds(s, SMTP_CLIENT, "VRFY \x1b]0;evil\x07\r\r\n");
	adds(s, SMTP_SERVER, "502 5.5.2 Error\r\n500 5.5.2 Line too long\r\n"
	    "252 maybe\r\n");
	adds(s, SMTP_CLIENT, "QUIT\r\n");
	adds(s, SMTP_SERVER, "221 2.0.0 Bye\r\n");
	add_eof(s, SMTP_CLIENT);
	add_eof(s, SMTP_SERVER);
}

static char *
expected_session(void)
{
	char *x = malloc(sizeof session_expected + SMTP_LINE_MAX), *at;
	size_t pre;

	at = strstr(session_expected, "@LONG@");
	pre = (size_t)(at - session_expected);
	memcpy(x, session_expected, pre);
	memset(x + pre, 'X', SMTP_LINE_MAX);
	strcpy(x + pre + SMTP_LINE_MAX, at + 6);
	return x;
}

static void
test_session(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	char *t, *x;

	(void)state;
	build_session(&s);
	t = run_all_ways(&s, &st);
	x = expected_session();
	if (getenv("TEST_SMTP_DUMP") != NULL)
		fputs(t, stderr);
	assert_string_equal(t, x);
	assert_int_equal(st.messages_accepted, 2);
	assert_int_equal(st.messages_rejected, 0);
	assert_int_equal(st.commands, 15);
	assert_string_equal(st.auth_mech, "LOGIN");
	assert_string_equal(st.auth_user, "alice");
	assert_int_equal(st.auth_code, 235);
	free(t);
	free(x);
	script_free(&s);
}

static void
test_session_byte_at_a_time(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	char *t, *x;

	(void)state;
	build_session(&s);
	t = run(&s, 1, 0, &st, NULL);
	x = expected_session();
	assert_string_equal(t, x);
	assert_int_equal(st.messages_accepted, 2);
	free(t);
	free(x);
	script_free(&s);
}

/* ---- AUTH corner cases ---- */

static void
test_auth_login_initial_response(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	char *t;

	(void)state;
	adds(&s, SMTP_SERVER, "220 x\r\n");
	adds(&s, SMTP_CLIENT, "AUTH LOGIN YWxpY2U=\r\n");
	adds(&s, SMTP_SERVER, "334 UGFzc3dvcmQ6\r\n");
	add_b64(&s, "", CANARY "\n", strlen(CANARY) + 1);
	adds(&s, SMTP_SERVER, "535 5.7.8 no\r\n");
	t = run_all_ways(&s, &st);
	assert_string_equal(t,
	    "Sr 220 220 x\n"
	    "Ca 0 AUTH LOGIN YWxpY2U= \xe2\x87\x92 user=\"alice\"\n"
	    "Sr 334 334 UGFzc3dvcmQ6 \xe2\x87\x92 \"Password:\"\n"
	    "Ca 0 <masked> \xe2\x87\x92 password=<masked, 14 bytes, "
	    "ends with LF (0x0a)>\n"
	    "Sr 535 535 5.7.8 no \xe2\x87\x92 authentication credentials invalid\n");
	assert_string_equal(st.auth_mech, "LOGIN");
	assert_string_equal(st.auth_user, "alice");
	assert_int_equal(st.auth_code, 535);
	free(t);
	script_free(&s);
}

/* Raw (not base64) secrets, pipelined lines, a PLAIN blob as continuation. */
static void
test_auth_fail_closed(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	char *t;

	(void)state;
	adds(&s, SMTP_SERVER, "220 x\r\n");
	adds(&s, SMTP_CLIENT, "AUTH LOGIN\r\n");
	adds(&s, SMTP_SERVER, "334 VXNlcm5hbWU6\r\n");
	adds(&s, SMTP_CLIENT, "alice\r\n" CANARY "\r\n");
	adds(&s, SMTP_SERVER, "501 5.5.2 bad base64\r\n");
	/* A line pipelined behind AUTH is treated as SASL, never shown. */
	adds(&s, SMTP_CLIENT, "AUTH PLAIN\r\n" CANARY "\r\n");
	adds(&s, SMTP_SERVER, "334 \r\n");
	add_b64(&s, "", PLAIN_BLOB, PLAIN_BLOB_LEN);
	adds(&s, SMTP_SERVER, "235 ok\r\n");
	adds(&s, SMTP_CLIENT, "AUTH XOAUTH2 ");
	add_b64(&s, "", "user=a\1auth=Bearer " CANARY "\1\1",
	    strlen(CANARY) + 21);
	adds(&s, SMTP_SERVER, "235 ok\r\n");
	t = run_all_ways(&s, &st);
	assert_string_equal(t,
	    "Sr 220 220 x\n"
	    "Ca 0 AUTH LOGIN\n"
	    "Sr 334 334 VXNlcm5hbWU6 \xe2\x87\x92 \"Username:\"\n"
	    "Ca 0 <masked> \xe2\x87\x92 undecodable: invalid base64 length 5, "
	    "not a multiple of 4; <masked, 5 bytes>\n"
	    "Ca 0 <masked> \xe2\x87\x92 undecodable: invalid base64 character "
	    "at offset 6; <masked, 13 bytes>\n"
	    "Sr 501 501 5.5.2 bad base64 \xe2\x87\x92 cannot decode "
	    "the client's "
	    "response (base64)\n"
	    "Ca 0 AUTH PLAIN\n"
	    "Ca 0 <masked> \xe2\x87\x92 undecodable: invalid base64 character "
	    "at offset 6; <masked, 13 bytes>\n"
	    "Sr 334 334  \xe2\x87\x92 \"\"\n"
	    "Ca 0 <masked> \xe2\x87\x92 <masked, 32 bytes, contains NUL>\n"
	    "Sr 235 235 ok \xe2\x87\x92 authentication succeeded\n"
	    "Ca 0 AUTH XOAUTH2 <masked> \xe2\x87\x92 user=\"a\" auth "
	    "scheme=Bearer token=<masked, 13 bytes>\n"
	    "Sr 235 235 ok \xe2\x87\x92 authentication succeeded\n");
	assert_string_equal(st.auth_mech, "XOAUTH2");
	assert_string_equal(st.auth_user, "a");
	assert_int_equal(st.auth_code, 235);
	free(t);
	script_free(&s);
}

/* A 334 nobody asked for: the next client line may be a secret. */
static void
test_unexpected_334_masks(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	char *t;

	(void)state;
	adds(&s, SMTP_SERVER, "220 x\r\n");
	adds(&s, SMTP_CLIENT, "NOOP\r\n");
	adds(&s, SMTP_SERVER, "334 UGFzc3dvcmQ6\r\n");
	adds(&s, SMTP_CLIENT, CANARY "\r\n");
	adds(&s, SMTP_SERVER, "235 ok\r\n");
	adds(&s, SMTP_CLIENT, "RSET\r\n");
	adds(&s, SMTP_SERVER, "250 ok\r\n");
	adds(&s, SMTP_CLIENT, "NOOP\r\n");
	adds(&s, SMTP_SERVER, "250 ok\r\n");
	t = run_all_ways(&s, &st);
	assert_string_equal(t,
	    "Sr 220 220 x\n"
	    "Cc 0 NOOP\n"
	    "Sr 334 334 UGFzc3dvcmQ6\n"
	    "Sn 0 unexpected 334 (no AUTH outstanding); client lines hidden "
	    "until resynchronised\n"
	    "Cc 0 [13 bytes, not shown]\n"
	    "Sr 235 235 ok\n"
	    "Cc 0 RSET\n"
	    "Sr 250 250 ok\n"
	    "Cc 0 NOOP\n"
	    "Sr 250 250 ok\n");
	free(t);
	script_free(&s);
}

static void
test_unexpected_reply(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	char *t;

	(void)state;
	adds(&s, SMTP_SERVER, "220-x\r\n220 y\r\n");
	adds(&s, SMTP_SERVER, "250 spontaneous\r\n");
	adds(&s, SMTP_CLIENT, "MAIL FROM:<a@b>\r\n");
	adds(&s, SMTP_SERVER, "250 ok\r\n");
	adds(&s, SMTP_CLIENT, "RSET\r\n");
	adds(&s, SMTP_SERVER, "250-a\r\n220 b\r\nxyz\r\n");
	t = run_all_ways(&s, &st);
	assert_string_equal(t,
	    "Sr 220 220-x\n"
	    "Sr 220 220 y\n"
	    "Sr 250 250 spontaneous\n"
	    "Sn 0 unexpected reply (no command outstanding)\n"
	    "Cc 0 [15 bytes, not shown]\n"
	    "Sr 250 250 ok\n"
	    "Cc 0 RSET\n"
	    "Sr 250 250-a\n"
	    "Sr 220 220 b\n"
	    "Sn 0 reply code changed from 250 to 220 within a multi-line reply\n"
	    "Sr 0 xyz\n"
	    "Sn 0 malformed reply line (no 3-digit code)\n");
	assert_int_equal(st.commands, 2);
	free(t);
	script_free(&s);
}

/* ---- DATA and BDAT ---- */

static void
test_data_header_limit(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	struct log l;
	char line[128], *t;
	int i;

	(void)state;
	adds(&s, SMTP_SERVER, "220 x\r\n");
	adds(&s, SMTP_CLIENT, "DATA\r\n");
	adds(&s, SMTP_SERVER, "354 go\r\n");
	for (i = 0; i < 30; i++) {
		snprintf(line, sizeof line, "X-H%d: v\r\nX-H%db: w\r\n"
		    "X-H%dc: u\r\nX-H%dd: z\r\nX-H%de: y\r\n", i, i, i, i, i);
		adds(&s, SMTP_CLIENT, line);
	}
	adds(&s, SMTP_CLIENT, "\r\nSubject: not a header, in the body\r\n.\r\n");
	adds(&s, SMTP_SERVER, "550 5.7.1 no\r\n");
	t = run(&s, 0, 0, &st, &l);
	assert_int_equal(l.records, 2 + 1 + 100 + 1 + 1 + 1 + 1);
	assert_true(contains(t, "Ch 0 (header) X-H19e: y\n", 0));
	assert_false(contains(t, "X-H20:", 0));
	assert_true(contains(t, "Cn 0 ... 50 more header lines\n"
	    "Cn 0 message: 1608 bytes, 152 lines", 0));
	assert_false(contains(t, "in the body", 0));
	assert_int_equal(st.messages_rejected, 1);
	assert_int_equal(st.messages_accepted, 0);
	free(t);
	script_free(&s);
}

static void
test_data_refused(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	char *t;

	(void)state;
	adds(&s, SMTP_SERVER, "220 x\r\n");
	adds(&s, SMTP_CLIENT, "DATA\r\n");
	adds(&s, SMTP_SERVER, "554 5.5.1 no valid recipients\r\n");
	adds(&s, SMTP_CLIENT, "Subject: x\r\n");
	adds(&s, SMTP_SERVER, "500 what\r\n");
	t = run_all_ways(&s, &st);
	assert_string_equal(t,
	    "Sr 220 220 x\n"
	    "Cc 0 DATA\n"
	    "Sr 554 554 5.5.1 no valid recipients \xe2\x87\x92 no valid recipients\n"
	    "Cn 0 the client sends message data although DATA was refused: "
	    "the server reads it as commands; counted, not shown\n"
	    "Sr 500 500 [4 bytes not shown] \xe2\x87\x92 syntax error, command "
	    "unrecognized\n"
	    "Cn 0 message after the refused DATA, incomplete (no end of data): "
	    "12 bytes, 1 lines, longest line 10 bytes\n");
	assert_int_equal(st.messages_rejected, 1);
	free(t);
	script_free(&s);
}

/* Message data before the 354 is counted but its headers stay hidden. */
static void
test_data_before_354(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	char *t;

	(void)state;
	adds(&s, SMTP_SERVER, "220 x\r\n");
	add_b64(&s, "DATA\r\nAUTH PLAIN ", PLAIN_BLOB, PLAIN_BLOB_LEN);
	adds(&s, SMTP_CLIENT, "Subject: s\r\n.\r\n");
	adds(&s, SMTP_SERVER, "354 go\r\n250 ok\r\n");
	t = run_all_ways(&s, &st);
	assert_string_equal(t,
	    "Sr 220 220 x\n"
	    "Cc 0 DATA\n"
	    "Cn 0 client sent message data before the reply to DATA; its "
	    "headers are not shown\n"
	    "Cn 0 message: 69 bytes, 2 lines, longest line 55 bytes\n"
	    "Cc 0 .\n"
	    "Sr 354 354 go\n"
	    "Sr 250 250 ok \xe2\x87\x92 message accepted\n");
	assert_int_equal(st.messages_accepted, 1);
	free(t);
	script_free(&s);
}

/* "\r\n.\n" is not the end of DATA; the server's reply decides. */
static void
test_data_smuggling(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	char *t;

	(void)state;
	adds(&s, SMTP_SERVER, "220 x\r\n");
	adds(&s, SMTP_CLIENT, "DATA\r\n");
	adds(&s, SMTP_SERVER, "354 go\r\n");
	adds(&s, SMTP_CLIENT, "A: b\r\n\r\nx\r\n.\nMAIL FROM:<evil>\r\n");
	adds(&s, SMTP_SERVER, "250 ok\r\n");
	adds(&s, SMTP_CLIENT, "RSET\r\n");
	adds(&s, SMTP_SERVER, "250 ok\r\n");
	adds(&s, SMTP_CLIENT, "QUIT\r\n");
	adds(&s, SMTP_SERVER, "221 ok\r\n");
	t = run_all_ways(&s, &st);
	assert_string_equal(t,
	    "Sr 220 220 x\n"
	    "Cc 0 DATA\n"
	    "Sr 354 354 go\n"
	    "Ch 0 (header) A: b\n"
	    "Cn 0 possible smuggling sequence (\\r\\n.\\n) in message data, "
	    "line 4: servers may disagree on where this message ends\n"
	    "Sr 250 250 ok\n"
	    "Sn 0 the server ended the message where smtptap saw no CRLF.CRLF "
	    "(at the smuggling sequence): what followed was commands to it\n"
	    "Cn 0 message: 30 bytes, 5 lines, longest line 16 bytes, 1 bare LF, "
	    "1 possible smuggling sequences\n"
	    "Cc 0 RSET\n"
	    "Sr 250 250 ok\n"
	    "Cc 0 QUIT\n"
	    "Sr 221 221 ok\n");
	free(t);
	script_free(&s);
}

static void
test_bdat_zero_and_bad(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	char *t;

	(void)state;
	adds(&s, SMTP_SERVER, "220 x\r\n");
	adds(&s, SMTP_CLIENT, "BDAT 0 last \r\nBDAT x\r\nbdat 99999999999999999999\r\n");
	adds(&s, SMTP_SERVER, "250 ok\r\n501 a\r\n501 b\r\n");
	adds(&s, SMTP_CLIENT, "BDAT 10\r\n12345");
	add_eof(&s, SMTP_CLIENT);
	t = run_all_ways(&s, &st);
	assert_string_equal(t,
	    "Sr 220 220 x\n"
	    "Cc 0 BDAT 0 last \n"
	    "Cn 0 BDAT chunk: 0 bytes, LAST\n"
	    "Cn 0 message: 0 bytes, 0 lines, longest line 0 bytes, "
	    "1 BDAT chunk\n"
	    "Cc 0 BDAT x\n"
	    "Cc 0 bdat 99999999999999999999\n"
	    "Sr 250 250 ok \xe2\x87\x92 message accepted\n"
	    "Sr 501 501 a \xe2\x87\x92 syntax error in parameters or arguments\n"
	    "Sr 501 501 b \xe2\x87\x92 syntax error in parameters or arguments\n"
	    "Cc 0 BDAT 10\n"
	    "Cn 0 BDAT chunk incomplete: 5 of 10 bytes\n"
	    "Cn 0 message incomplete (no BDAT LAST): 5 bytes, 1 lines, "
	    "longest line 5 bytes, 0 BDAT chunks\n");
	assert_int_equal(st.messages_accepted, 1);
	free(t);
	script_free(&s);
}

/* ---- framing, bounds, end of stream ---- */

static void
test_long_lines_bounded(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	struct log l;
	char *big = malloc(1024 * 1024), *t, want[64];

	(void)state;
	memset(big, 'A', 1024 * 1024);
	adds(&s, SMTP_SERVER, "220 x\r\n");
	add(&s, SMTP_CLIENT, big, 1024 * 1024);
	adds(&s, SMTP_CLIENT, "\r\n");
	memcpy(big, "250-", 4);
	add(&s, SMTP_SERVER, big, 1024 * 1024);
	adds(&s, SMTP_SERVER, "\n250 ok\r\n");
	t = run(&s, 4096, 0, &st, &l);
	snprintf(want, sizeof want, " [+%d bytes]\n", 1024 * 1024 - SMTP_LINE_MAX);
	assert_true(contains(t, want, strlen(want)));
	snprintf(want, sizeof want, " [+%d bytes] [LF]\n", 1024 * 1024 -
	    SMTP_LINE_MAX);
	assert_true(contains(t, want, strlen(want)));
	assert_true(l.maxlen < SMTP_LINE_MAX + 40);
	assert_int_equal(l.records, 4);
	free(t);
	free(big);
	script_free(&s);
}

static void
test_eof_partial(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	char *t;

	(void)state;
	adds(&s, SMTP_SERVER, "220 x\r\n");
	adds(&s, SMTP_CLIENT, "DATA\r\n");
	adds(&s, SMTP_SERVER, "354 go\r\n");
	adds(&s, SMTP_CLIENT, "H: v\r\n\r\nbody\r\npart");
	add_eof(&s, SMTP_CLIENT);
	adds(&s, SMTP_SERVER, "421 4.4.2 timeout\r");
	add_eof(&s, SMTP_SERVER);
	t = run_all_ways(&s, &st);
	assert_string_equal(t,
	    "Sr 220 220 x\n"
	    "Cc 0 DATA\n"
	    "Sr 354 354 go\n"
	    "Ch 0 (header) H: v\n"
	    "Cn 0 message incomplete (no end of data): 18 bytes, 4 lines, "
	    "longest line 4 bytes\n"
	    "Sr 421 421 4.4.2 timeout\\r [no CRLF]\n");
	free(t);
	script_free(&s);
	adds(&s, SMTP_SERVER, "220 x\r\n");
	adds(&s, SMTP_CLIENT, "QUI");
	add_eof(&s, SMTP_CLIENT);
	adds(&s, SMTP_CLIENT, "ignored after eof\r\n");
	t = run_all_ways(&s, &st);
	assert_string_equal(t, "Sr 220 220 x\nCc 0 QUI [no CRLF]\n");
	assert_int_equal(st.commands, 0);
	free(t);
	script_free(&s);
}

static void
test_starttls_opaque(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	char *t;

	(void)state;
	adds(&s, SMTP_SERVER, "220 x\r\n");
	adds(&s, SMTP_CLIENT, "STARTTLS\r\n");
	adds(&s, SMTP_SERVER, "220 go ahead\r\n");
	add(&s, SMTP_CLIENT, "\x16\x03\x01\x02\0\n\n\nAUTH PLAIN x\r\n", 22);
	adds(&s, SMTP_SERVER, "\x16\x03\x03\n250 x\r\n");
	add_eof(&s, SMTP_CLIENT);
	t = run_all_ways(&s, &st);
	assert_string_equal(t,
	    "Sr 220 220 x\n"
	    "Cc 0 STARTTLS\n"
	    "Sr 220 220 go ahead\n"
	    "Sn 0 STARTTLS accepted: what follows is encrypted and not parsed\n");
	free(t);
	script_free(&s);
}

/* A flood of one command takes one slot: every reply still pairs. */
static void
test_pipeline_flood(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	struct log l;
	char c[70 * 6 + 1], r[70 * 8 + 1], *t;
	int i;

	(void)state;
	for (i = 0; i < 70; i++) {
		memcpy(c + 6 * i, "NOOP\r\n", 6);
		memcpy(r + 8 * i, "250 ok\r\n", 8);
	}
	adds(&s, SMTP_SERVER, "220 x\r\n");
	add(&s, SMTP_CLIENT, c, 70 * 6);
	add(&s, SMTP_SERVER, r, 70 * 8);
	t = run(&s, 0, 0, &st, &l);
	assert_int_equal(st.commands, 70);
	assert_int_equal(l.records, 1 + 70 + 70);
	assert_false(contains(t, "Sn 0 unexpected reply", 0));
	assert_false(contains(t, "not shown", 0));
	free(t);
	script_free(&s);
}

/*
 * More kinds of commands in flight than the FIFO holds: kinds are lost,
 * counts are not, and an AUTH behind them is still matched (by its place).
 */
static void
test_pipeline_overflow(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	struct log l;
	char *c, *r, *t;
	int i;

	(void)state;
	c = malloc(300 * 6 + 1);
	r = malloc(300 * 8 + 1);
	for (i = 0; i < 300; i++) {
		memcpy(c + 6 * i, i % 2 ? "RSET\r\n" : "NOOP\r\n", 6);
		memcpy(r + 8 * i, "250 ok\r\n", 8);
	}
	adds(&s, SMTP_SERVER, "220 x\r\n");
	add(&s, SMTP_CLIENT, c, 300 * 6);
	add_b64(&s, "AUTH PLAIN ", PLAIN_BLOB, PLAIN_BLOB_LEN);
	add(&s, SMTP_SERVER, r, 300 * 8);
	adds(&s, SMTP_SERVER, "535 5.7.8 no\r\n");
	adds(&s, SMTP_CLIENT, "NOOP\r\n");
	adds(&s, SMTP_SERVER, "250 ok\r\n");
	t = run(&s, 0, 0, &st, &l);
	assert_no_canary(t);
	assert_int_equal(st.commands, 302);
	assert_true(contains(t, "Cn 0 more than 256 kinds of commands "
	    "awaiting replies", 0));
	/* After the overflow, client lines are hidden, not guessed at. */
	assert_true(contains(t, "Cc 0 [4 bytes, not shown]\n", 0));
	assert_false(contains(t, "Sn 0 unexpected", 0));
	assert_string_equal(st.auth_mech, "PLAIN");
	assert_int_equal(st.auth_code, 535);
	/* Every reply matched: in step again for the last NOOP. */
	assert_true(contains(t, "Cc 0 NOOP\nSr 250 250 ok\n", 0));
	free(t);
	free(c);
	free(r);
	script_free(&s);
}

/* ---- memory at rest (issue 5: thousands of idle sessions) ---- */

static void
feed_str(struct smtp *p, enum smtp_dir dir, const char *str)
{
	smtp_feed(p, dir, str, strlen(str));
}

static void
pretls_str(struct smtp *p, const char *line)
{
	smtp_pretls_caps(p, line, strlen(line));
}

/*
 * A session at rest after the EHLO exchange keeps no buffer of the parser
 * but the mechanisms the server offered: the capability lists go once the
 * note is out, line and record buffers once a line is done, the FIFO and
 * the names of pipelined commands once every command has its reply.
 */
static void
test_idle_holds_nothing(void **state)
{
	struct log l;
	struct smtp *p;
	char *big;
	size_t held;

	(void)state;
	memset(&l, 0, sizeof l);
	strbuf_init(&l.sb, 1024 * 1024);
	p = smtp_new(rec_cb, &l);
	assert_int_equal(smtp_held(p), 0);
	pretls_str(p, "250-smtptap.example");
	pretls_str(p, "250-AUTH PLAIN");
	pretls_str(p, "250 STARTTLS");
	feed_str(p, SMTP_SERVER, "220 mx.example ESMTP\r\n");
	feed_str(p, SMTP_CLIENT, "EHLO client\r\n");
	/* Waiting for the reply: the command is queued, and named. */
	assert_true(smtp_held(p) > 0);
	feed_str(p, SMTP_SERVER, "250-mx.example\r\n250-PIPELINING\r\n"
	    "250-SIZE 1000\r\n250 8BITMIME\r\n");
	assert_true(contains(l.sb.buf, "Sn 0 capabilities: before TLS: "
	    "AUTH PLAIN, STARTTLS; after TLS: PIPELINING, SIZE 1000, "
	    "8BITMIME; no AUTH offered\n", 0));
	assert_int_equal(smtp_held(p), 0);

	/* A line is held while it is incomplete, however long it gets. */
	feed_str(p, SMTP_CLIENT, "NOOP ");
	assert_true(smtp_held(p) > 0);
	big = malloc(5001);
	memset(big, 'x', 5000);
	big[5000] = '\0';
	feed_str(p, SMTP_CLIENT, big);
	feed_str(p, SMTP_CLIENT, "\r\n");
	assert_true(contains(l.sb.buf, "Cc 0 NOOP xxxx", 0));
	assert_true(contains(l.sb.buf, " [+909 bytes]\n", 0));
	feed_str(p, SMTP_SERVER, "250 ok\r\n");
	assert_int_equal(smtp_held(p), 0);
	/* The same for a partial reply line. */
	feed_str(p, SMTP_CLIENT, "NOOP\r\n");
	feed_str(p, SMTP_SERVER, "250 o");
	assert_true(smtp_held(p) > 0);
	feed_str(p, SMTP_SERVER, "k\r\n");
	assert_int_equal(smtp_held(p), 0);

	/* A second EHLO that offers AUTH: only its mechanisms stay. */
	feed_str(p, SMTP_CLIENT, "EHLO again\r\n");
	feed_str(p, SMTP_SERVER, "250-mx.example\r\n250 AUTH PLAIN LOGIN\r\n");
	held = smtp_held(p);
	smtp_free(p);
	free(big);
	strbuf_free(&l.sb);
	/* Not collected: the first EHLO reply was the one that counts. */
	assert_int_equal(held, 0);

	memset(&l, 0, sizeof l);
	strbuf_init(&l.sb, 1024 * 1024);
	p = smtp_new(rec_cb, &l);
	feed_str(p, SMTP_SERVER, "220 mx.example ESMTP\r\n");
	feed_str(p, SMTP_CLIENT, "EHLO client\r\n");
	feed_str(p, SMTP_SERVER, "250-mx.example\r\n250 AUTH PLAIN LOGIN\r\n");
	held = smtp_held(p);
	assert_true(held > 0);
	assert_true(held <= 64);
	/* ... and are what the AUTH note compares with. */
	feed_str(p, SMTP_CLIENT, "AUTH CRAM-MD5\r\n");
	assert_true(contains(l.sb.buf, "Cn 0 AUTH CRAM-MD5: NOT offered by "
	    "the server (offered: PLAIN LOGIN)\n", 0));
	feed_str(p, SMTP_SERVER, "504 5.5.4 no\r\n");
	assert_int_equal(smtp_held(p), held);
	smtp_free(p);
	strbuf_free(&l.sb);
}

/*
 * More commands in flight than the name ring holds: a command more than
 * SMTP_SENT_RING commands older than the newest is answered without a
 * name, the rest with their own, also where a slot held an answered
 * command before or an unanswered one that fell out of the ring.
 */
static void
test_pipeline_deeper_than_ring(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	struct strbuf c = STRBUF_INIT, r = STRBUF_INIT;
	char want[64], *t;
	int i;

	(void)state;
	keep_pairing = 1;
	adds(&s, SMTP_SERVER, "220 mx.example ESMTP\r\n");
	adds(&s, SMTP_CLIENT, "EHLO client\r\n");
	adds(&s, SMTP_SERVER, "250-mx.example\r\n250 PIPELINING\r\n");
	for (i = 0; i < 20; i++)
		strbuf_printf(&c, "NOOP %d\r\n", i);
	add(&s, SMTP_CLIENT, c.buf, c.len);
	for (i = 0; i < 5; i++)
		strbuf_printf(&r, "250 ok %d\r\n", i);
	add(&s, SMTP_SERVER, r.buf, r.len);
	strbuf_reset(&c);
	strbuf_reset(&r);
	for (i = 20; i < 40; i++)
		strbuf_printf(&c, "NOOP %d\r\n", i);
	add(&s, SMTP_CLIENT, c.buf, c.len);
	for (i = 5; i < 40; i++)
		strbuf_printf(&r, "250 ok %d\r\n", i);
	add(&s, SMTP_SERVER, r.buf, r.len);
	adds(&s, SMTP_CLIENT, "QUIT\r\n");
	adds(&s, SMTP_SERVER, "221 bye\r\n");
	t = run_all_ways(&s, &st);
	keep_pairing = 0;
	/*
	 * EHLO was command 0, so "NOOP i" is command i + 1. While 40 were
	 * sent, the replies to 6, 7 and 8 came more than 32 commands late.
	 */
	for (i = 0; i < 40; i++) {
		if (i == 39 || (i >= 5 && i <= 7))
			snprintf(want, sizeof want, "Sr 250 250 ok %d\n", i);
		else
			snprintf(want, sizeof want, "Sr 250 250 ok %d [to NOOP "
			    "%d]\n", i, i);
		if (!contains(t, want, 0))
			fail_msg("no \"%s\" in:\n%s", want, t);
	}
	assert_int_equal(st.commands, 42);
	assert_false(contains(t, "unexpected", 0));
	free(t);
	strbuf_free(&c);
	strbuf_free(&r);
	script_free(&s);
}

/*
 * The FIFO starts small and grows while commands of alternating kinds
 * pile up, here while its runs wrap around the end of the array: every
 * reply still pairs with its command, so the 354 opens the message data
 * and the two RCPTs after the last MAIL count.
 */
static void
test_pipeline_fifo_grows(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	struct strbuf c = STRBUF_INIT, r = STRBUF_INIT;
	char *t;
	int i;

	(void)state;
	adds(&s, SMTP_SERVER, "220 mx.example ESMTP\r\n");
	adds(&s, SMTP_CLIENT, "MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nNOOP\r\n"
	    "RSET\r\nMAIL FROM:<c@x>\r\nRCPT TO:<d@x>\r\n");
	adds(&s, SMTP_SERVER, "250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n"
	    "250 ok\r\n");
	for (i = 0; i < 20; i++)
		strbuf_adds(&c, "NOOP\r\nRSET\r\n");
	strbuf_adds(&c, "RCPT TO:<e@x>\r\nDATA\r\n");
	add(&s, SMTP_CLIENT, c.buf, c.len);
	strbuf_adds(&r, "250 2.1.5 ok d\r\n");
	for (i = 0; i < 40; i++)
		strbuf_adds(&r, "250 ok\r\n");
	strbuf_adds(&r, "250 2.1.5 ok e\r\n354 go\r\n");
	add(&s, SMTP_SERVER, r.buf, r.len);
	adds(&s, SMTP_CLIENT, "Subject: hi\r\n\r\nbody\r\n.\r\n");
	adds(&s, SMTP_SERVER, "250 2.0.0 queued\r\n");
	t = run_all_ways(&s, &st);
	assert_true(contains(t, "Ch 0 (header) Subject: hi\n", 0));
	assert_int_equal(st.messages_accepted, 1);
	assert_int_equal(st.commands, 48);
	assert_false(contains(t, "unexpected", 0));
	assert_true(strncmp(verdict, "message accepted 250 2.0.0 (2 "
	    "recipients, ", 39) == 0);
	free(t);
	strbuf_free(&c);
	strbuf_free(&r);
	script_free(&s);
}

/*
 * The mechanisms offered are kept up to SMTP_MECHS_SIZE bytes, " A B ":
 * a name that does not fit is left out whole and a shorter one after it
 * still goes in, up to the last byte.
 */
static void
test_auth_mechs_bounded(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	struct strbuf e = STRBUF_INIT, want = STRBUF_INIT;
	char *t;
	int i;

	(void)state;
	strbuf_adds(&e, "250-mx.example\r\n250-AUTH");
	strbuf_adds(&want, "Cn 0 AUTH B: NOT offered by the server (offered:");
	for (i = 1; i <= 22; i++) {
		strbuf_printf(&e, " M%08d", i);
		strbuf_printf(&want, " M%08d", i);
	}
	/* 221 bytes so far: 40 more would pass 256, 1 and then 30 fit. */
	strbuf_printf(&e, " %s A %s B\r\n250 8BITMIME\r\n",
	    "LLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLL",
	    "ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ");
	strbuf_printf(&want, " A %s)\n", "ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ");
	adds(&s, SMTP_SERVER, "220 mx.example ESMTP\r\n");
	adds(&s, SMTP_CLIENT, "EHLO client\r\n");
	add(&s, SMTP_SERVER, e.buf, e.len);
	/* The note says "offered" once, "NOT offered" every time. */
	adds(&s, SMTP_CLIENT, "AUTH A\r\n");
	adds(&s, SMTP_SERVER, "504 5.5.4 no\r\n");
	adds(&s, SMTP_CLIENT, "AUTH B\r\n");
	adds(&s, SMTP_SERVER, "504 5.5.4 no\r\n");
	t = run_all_ways(&s, &st);
	if (!contains(t, want.buf, 0))
		fail_msg("no \"%s\" in:\n%s", want.buf, t);
	assert_true(contains(t, "Cn 0 AUTH A: offered by the server "
	    "(offered:", 0));
	free(t);
	strbuf_free(&e);
	strbuf_free(&want);
	script_free(&s);
}

/* ---- RFC examples ---- */

/* RFC 2920 section 3.2, with a dot-stuffed line in the message. */
static void
test_rfc2920_pipelining(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	char *t;

	(void)state;
	adds(&s, SMTP_SERVER, "220 innosoft.com SMTP service ready\r\n");
	adds(&s, SMTP_CLIENT, "EHLO dbc.mtview.ca.us\r\n");
	adds(&s, SMTP_SERVER, "250-innosoft.com\r\n250 PIPELINING\r\n");
	adds(&s, SMTP_CLIENT, "MAIL FROM:<mrose@dbc.mtview.ca.us>\r\n"
	    "RCPT TO:<ned@innosoft.com>\r\nRCPT TO:<dan@innosoft.com>\r\n"
	    "RCPT TO:<kvc@innosoft.com>\r\nDATA\r\n");
	adds(&s, SMTP_SERVER, "250 sender <mrose@dbc.mtview.ca.us> OK\r\n"
	    "250 recipient <ned@innosoft.com> OK\r\n"
	    "250 recipient <dan@innosoft.com> OK\r\n"
	    "250 recipient <kvc@innosoft.com> OK\r\n"
	    "354 enter mail, end with line containing only \".\"\r\n");
	adds(&s, SMTP_CLIENT, "Subject: pipelined\r\n\r\n..leading dot\r\n"
	    ".\r\nQUIT\r\n");
	adds(&s, SMTP_SERVER, "250 message sent\r\n221 goodbye\r\n");
	t = run_all_ways(&s, &st);
	assert_string_equal(t,
	    "Sr 220 220 innosoft.com SMTP service ready\n"
	    "Cc 0 EHLO dbc.mtview.ca.us\n"
	    "Sr 250 250-innosoft.com\n"
	    "Sr 250 250 PIPELINING\n"
	    "Sn 0 capabilities: PIPELINING; no AUTH offered\n"
	    "Cc 0 MAIL FROM:<mrose@dbc.mtview.ca.us>\n"
	    "Cc 0 RCPT TO:<ned@innosoft.com>\n"
	    "Cc 0 RCPT TO:<dan@innosoft.com>\n"
	    "Cc 0 RCPT TO:<kvc@innosoft.com>\n"
	    "Cc 0 DATA\n"
	    "Sr 250 250 sender <mrose@dbc.mtview.ca.us> OK\n"
	    "Sr 250 250 recipient <ned@innosoft.com> OK\n"
	    "Sr 250 250 recipient <dan@innosoft.com> OK\n"
	    "Sr 250 250 recipient <kvc@innosoft.com> OK\n"
	    "Sr 354 354 enter mail, end with line containing only \".\"\n"
	    "Ch 0 (header) Subject: pipelined\n"
	    "Cn 0 message: 36 bytes, 3 lines, longest line 18 bytes\n"
	    "Cc 0 .\n"
	    "Cc 0 QUIT\n"
	    "Sr 250 250 message sent \xe2\x87\x92 message accepted\n"
	    "Sr 221 221 goodbye\n");
	assert_string_equal(verdict, "message accepted 250 (3 recipients, "
	    "36 bytes)");
	assert_int_equal(st.messages_accepted, 1);
	free(t);
	script_free(&s);
}

/* RFC 2920 section 3.3: every recipient refused; DATA refused. */
static void
test_rfc2920_failures(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	char *t;

	(void)state;
	adds(&s, SMTP_SERVER, "220 innosoft.com SMTP service ready\r\n");
	adds(&s, SMTP_CLIENT, "EHLO dbc.mtview.ca.us\r\n");
	adds(&s, SMTP_SERVER, "250-innosoft.com\r\n250 PIPELINING\r\n");
	adds(&s, SMTP_CLIENT, "MAIL FROM:<mrose@dbc.mtview.ca.us>\r\n"
	    "RCPT TO:<ned@innosoft.com>\r\nRCPT TO:<dan@innosoft.com>\r\n"
	    "RCPT TO:<kvc@innosoft.com>\r\nDATA\r\n");
	adds(&s, SMTP_SERVER, "250 sender <mrose@dbc.mtview.ca.us> OK\r\n"
	    "550 remote mail to <ned@innosoft.com> refused\r\n"
	    "550 remote mail to <dan@innosoft.com> refused\r\n"
	    "550 remote mail to <kvc@innosoft.com> refused\r\n"
	    "554 no valid recipients given\r\n");
	adds(&s, SMTP_CLIENT, "RSET\r\n");
	adds(&s, SMTP_SERVER, "250 reset state\r\n");
	adds(&s, SMTP_CLIENT, "QUIT\r\n");
	adds(&s, SMTP_SERVER, "221 goodbye\r\n");
	t = run_all_ways(&s, &st);
	if (getenv("TEST_SMTP_DUMP") != NULL)
		fputs(t, stderr);
	assert_true(contains(t, "Sr 554 554 no valid recipients given "
	    "\xe2\x87\x92 no valid recipients, or the transaction failed\n"
	    "Cc 0 RSET\n"
	    "Sr 250 250 reset state\n", 0));
	assert_true(contains(t, "Sr 550 550 remote mail to <kvc@innosoft.com> "
	    "refused \xe2\x87\x92 requested action not taken: mailbox "
	    "unavailable\n", 0));
	assert_string_equal(verdict, "no message sent: RCPT rejected 550 "
	    "requested action not taken: mailbox unavailable");
	assert_int_equal(st.messages_rejected, 1);
	free(t);
	script_free(&s);
}

/* RFC 3030 section 4.2, headers from the chunk, then a second message. */
static void
test_rfc3030_bdat(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	char *t;

	(void)state;
	adds(&s, SMTP_SERVER, "220 Example.com SMTP receiver ready\r\n");
	adds(&s, SMTP_CLIENT, "EHLO ymir.example.com\r\n");
	adds(&s, SMTP_SERVER, "250-Example.com\r\n250-CHUNKING\r\n"
	    "250-PIPELINING\r\n250 8BITMIME\r\n");
	/* 60 octets: two headers, a blank line, a body with "\r\n.\r\n". */
	adds(&s, SMTP_CLIENT, "MAIL FROM:<data@ymir.example.com>\r\n"
	    "RCPT TO:<ddd@Example.com>\r\nBDAT 60 LAST\r\n"
	    "To: ddd@Example.com\r\nFrom: data@ymir.example.com\r\n\r\n"
	    "Hi\r\n.\r\nX");
	adds(&s, SMTP_SERVER, "250 <data@ymir.example.com> Sender ok\r\n"
	    "250 <ddd@Example.com> Recipient ok\r\n"
	    "250 Message OK, 60 octets received\r\n");
	/* A header cut by a chunk boundary; the first chunk refused. */
	adds(&s, SMTP_CLIENT, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
	    "BDAT 9\r\nSubject: BDAT 6 LAST\r\ncut!\r\n");
	adds(&s, SMTP_SERVER, "250 ok\r\n250 ok\r\n"
	    "552 5.3.4 message too big\r\n554 5.5.0 earlier chunk failed\r\n");
	adds(&s, SMTP_CLIENT, "QUIT\r\n");
	adds(&s, SMTP_SERVER, "221 bye\r\n");
	t = run_all_ways(&s, &st);
	assert_string_equal(t,
	    "Sr 220 220 Example.com SMTP receiver ready\n"
	    "Cc 0 EHLO ymir.example.com\n"
	    "Sr 250 250-Example.com\n"
	    "Sr 250 250-CHUNKING\n"
	    "Sr 250 250-PIPELINING\n"
	    "Sr 250 250 8BITMIME\n"
	    "Sn 0 capabilities: CHUNKING, PIPELINING, 8BITMIME; "
	    "no AUTH offered\n"
	    "Cc 0 MAIL FROM:<data@ymir.example.com>\n"
	    "Cc 0 RCPT TO:<ddd@Example.com>\n"
	    "Cc 0 BDAT 60 LAST\n"
	    "Ch 0 (header) To: ddd@Example.com\n"
	    "Ch 0 (header) From: data@ymir.example.com\n"
	    "Cn 0 BDAT chunk: 60 bytes, LAST\n"
	    "Cn 0 message: 60 bytes, 6 lines, longest line 27 bytes, "
	    "1 BDAT chunk\n"
	    "Sr 250 250 <data@ymir.example.com> Sender ok\n"
	    "Sr 250 250 <ddd@Example.com> Recipient ok\n"
	    "Sr 250 250 Message OK, 60 octets received \xe2\x87\x92 "
	    "message accepted\n"
	    "Cc 0 MAIL FROM:<a@b>\n"
	    "Cc 0 RCPT TO:<c@d>\n"
	    "Cc 0 BDAT 9\n"
	    "Cn 0 BDAT chunk: 9 bytes\n"
	    "Cc 0 BDAT 6 LAST\n"
	    "Ch 0 (header) Subject: cut!\n"
	    "Cn 0 BDAT chunk: 6 bytes, LAST\n"
	    "Cn 0 message: 15 bytes, 1 lines, longest line 13 bytes, "
	    "2 BDAT chunks\n"
	    "Sr 250 250 ok\n"
	    "Sr 250 250 ok\n"
	    "Sr 552 552 5.3.4 message too big \xe2\x87\x92 message too big "
	    "for system\n"
	    "Sn 0 BDAT chunk refused: the message has failed, the server "
	    "discards the rest of it\n"
	    "Sr 554 554 5.5.0 earlier chunk failed \xe2\x87\x92 other or "
	    "undefined protocol status\n"
	    "Cc 0 QUIT\n"
	    "Sr 221 221 bye\n");
	assert_string_equal(verdict, "message accepted 250 (1 recipient, "
	    "60 bytes); then BDAT rejected 552 5.3.4 message too big for "
	    "system");
	assert_int_equal(st.messages_accepted, 1);
	assert_int_equal(st.messages_rejected, 1);
	free(t);
	script_free(&s);
}

/* RFC 4954 section 8 examples: an unknown mechanism, then CRAM-MD5. */
static void
test_rfc4954_examples(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	char *t;

	(void)state;
	adds(&s, SMTP_SERVER, "220 smtp.example.com ESMTP server ready\r\n");
	adds(&s, SMTP_CLIENT, "EHLO jgm.example.com\r\n");
	adds(&s, SMTP_SERVER, "250-smtp.example.com\r\n"
	    "250 AUTH CRAM-MD5 DIGEST-MD5\r\n");
	adds(&s, SMTP_CLIENT, "AUTH FOOBAR\r\n");
	adds(&s, SMTP_SERVER, "504 5.5.4 Unrecognized authentication type.\r\n");
	adds(&s, SMTP_CLIENT, "AUTH CRAM-MD5\r\n");
	adds(&s, SMTP_SERVER, "334 PENCeUxFREJoU0NnbmhNWitOMjNGNndAZWx3b29kLmlu"
	    "bm9zb2Z0LmNvbT4=\r\n");
	adds(&s, SMTP_CLIENT, "ZnJlZCA5ZTk1YWVlMDljNDBhZjJiODRhMGMyYjNiYmFlNzg2"
	    "ZQ==\r\n");
	adds(&s, SMTP_SERVER, "235 2.7.0 Authentication Successful\r\n");
	t = run_all_ways(&s, &st);
	assert_true(contains(t, "Sn 0 capabilities: AUTH CRAM-MD5 DIGEST-MD5\n"
	    "Ca 0 AUTH FOOBAR\n"
	    "Cn 0 AUTH FOOBAR: NOT offered by the server (offered: CRAM-MD5 "
	    "DIGEST-MD5)\n"
	    "Sr 504 504 5.5.4 Unrecognized authentication type. \xe2\x87\x92 "
	    "authentication mechanism not supported\n"
	    "Ca 0 AUTH CRAM-MD5\n", 0));
	assert_true(contains(t, "Sr 235 235 2.7.0 Authentication Successful "
	    "\xe2\x87\x92 authentication succeeded\n", 0));
	/* The digest never shows, whatever sasl.c makes of it. */
	assert_false(contains(t, "9e95aee09c40af2b84a0c2b3bbae786e", 0));
	assert_false(contains(t, "ZnJlZCA5ZTk1", 0));
	assert_string_equal(st.auth_mech, "CRAM-MD5");
	assert_int_equal(st.auth_code, 235);
	assert_true(strncmp(verdict, "AUTH CRAM-MD5", 13) == 0);
	assert_true(contains(verdict, " accepted 235 2.7.0; no message sent, "
	    "session ended after AUTH without QUIT", 0));
	free(t);
	script_free(&s);

	/* The PLAIN example, with STARTTLS offered and taken. */
	adds(&s, SMTP_SERVER, "220-smtp.example.com ESMTP Server\r\n"
	    "220 more\r\n");
	adds(&s, SMTP_CLIENT, "EHLO client.example.com\r\n");
	adds(&s, SMTP_SERVER, "250-smtp.example.com Hello client.example.com\r\n"
	    "250-AUTH DIGEST-MD5 CRAM-MD5\r\n250-ENHANCEDSTATUSCODES\r\n"
	    "250 STARTTLS\r\n");
	adds(&s, SMTP_CLIENT, "AUTH PLAIN dGVzdAB0ZXN0ADEyMzQ=\r\n");
	adds(&s, SMTP_SERVER, "235 2.7.0 Authentication successful\r\n");
	adds(&s, SMTP_CLIENT, "QUIT\r\n");
	adds(&s, SMTP_SERVER, "221 2.0.0 bye\r\n");
	t = run_all_ways(&s, &st);
	assert_true(contains(t, "Ca 0 AUTH PLAIN <masked> \xe2\x87\x92 "
	    "authzid=\"test\" user=\"test\" password=<masked, 4 bytes>\n"
	    "Cn 0 AUTH PLAIN: NOT offered by the server (offered: DIGEST-MD5 "
	    "CRAM-MD5)\n", 0));
	assert_false(contains(t, "1234", 0));
	assert_string_equal(verdict, "AUTH PLAIN (initial-response) as test "
	    "accepted 235 2.7.0; no message sent, client quit after AUTH");
	free(t);
	script_free(&s);

	/* STARTTLS by the client itself. */
	adds(&s, SMTP_SERVER, "220 x\r\n");
	adds(&s, SMTP_CLIENT, "STARTTLS\r\n");
	adds(&s, SMTP_SERVER, "220 2.0.0 Ready to start TLS\r\n");
	t = run_all_ways(&s, &st);
	assert_string_equal(verdict, "the client started TLS itself "
	    "(STARTTLS): the rest of the session is encrypted and not decoded");
	free(t);
	script_free(&s);
}

/* ---- DATA: smuggling shapes, refusal after data ---- */

static void
test_smuggling_shapes(void **state)
{
	static const struct {
		const char	*body;
		const char	*shape;
	} cases[] = {
		{ "a\n.\nb\r\n.\r\n", "(\\n.\\n)" },
		{ "a\r\n.\nb\r\n.\r\n", "(\\r\\n.\\n)" },
		{ "a\n.\r\n", "(\\n.\\r\\n)" },
		{ "a\r\n.\rMAIL FROM:<x>\r\n.\r\n", "(bare CR next to \".\")" },
		{ "a\r.\r\n.\r\n", "(bare CR next to \".\")" },
		{ "a\r\nb\r.\n.\r\n", "(bare CR next to \".\")" },
	};
	struct script s = { .n = 0 };
	struct smtp_stats st;
	char *t, want[160];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		adds(&s, SMTP_SERVER, "220 x\r\n");
		adds(&s, SMTP_CLIENT, "DATA\r\n");
		adds(&s, SMTP_SERVER, "354 go\r\n");
		adds(&s, SMTP_CLIENT, cases[i].body);
		adds(&s, SMTP_SERVER, "250 ok\r\n");
		t = run_all_ways(&s, &st);
		if (getenv("TEST_SMTP_DUMP") != NULL)
			fputs(t, stderr);
		snprintf(want, sizeof want, "Cn 0 possible smuggling sequence "
		    "%s in message data", cases[i].shape);
		if (!contains(t, want, 0))
			fail_msg("case %zu: no \"%s\" in\n%s", i, want, t);
		assert_true(contains(t, " possible smuggling sequences\n", 0));
		free(t);
		script_free(&s);
	}
	/* A clean message has none. */
	adds(&s, SMTP_SERVER, "220 x\r\n");
	adds(&s, SMTP_CLIENT, "DATA\r\n");
	adds(&s, SMTP_SERVER, "354 go\r\n");
	adds(&s, SMTP_CLIENT, "a.\r\n.a\r\n..\r\n.\r\n");
	adds(&s, SMTP_SERVER, "250 ok\r\n");
	t = run_all_ways(&s, &st);
	assert_false(contains(t, "smuggling", 0));
	free(t);
	script_free(&s);
}

/* The server refuses DATA after the client sent the message anyway. */
static void
test_data_refused_after_data(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	char *t;

	(void)state;
	adds(&s, SMTP_SERVER, "220 x\r\n");
	adds(&s, SMTP_CLIENT, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"
	    "Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n");
	adds(&s, SMTP_SERVER, "250 ok\r\n550 5.1.1 no such user\r\n"
	    "554 5.5.1 no valid recipients\r\n500 5.5.2 what\r\n"
	    "500 5.5.2 what\r\n500 5.5.2 what\r\n500 5.5.2 what\r\n"
	    "221 2.0.0 bye\r\n");
	t = run_all_ways(&s, &st);
	assert_string_equal(t,
	    "Sr 220 220 x\n"
	    "Cc 0 MAIL FROM:<a@b>\n"
	    "Cc 0 RCPT TO:<c@d>\n"
	    "Cc 0 DATA\n"
	    "Cn 0 client sent message data before the reply to DATA; its "
	    "headers are not shown\n"
	    "Cn 0 message: 20 bytes, 3 lines, longest line 10 bytes\n"
	    "Cc 0 .\n"
	    "Cc 0 QUIT\n"
	    "Sr 250 250 ok\n"
	    "Sr 550 550 5.1.1 no such user \xe2\x87\x92 bad destination "
	    "mailbox address\n"
	    "Sr 554 554 5.5.1 no valid recipients \xe2\x87\x92 no valid "
	    "recipients\n"
	    "Sn 0 DATA refused after the client sent 3 lines of message data: "
	    "the server reads them as commands\n"
	    "Sr 500 500 5.5.2 [4 bytes not shown] \xe2\x87\x92 syntax error\n"
	    "Sr 500 500 5.5.2 [4 bytes not shown] \xe2\x87\x92 syntax error\n"
	    "Sr 500 500 5.5.2 [4 bytes not shown] \xe2\x87\x92 syntax error\n"
	    "Sr 500 500 5.5.2 [4 bytes not shown] \xe2\x87\x92 syntax error\n"
	    "Sr 221 221 2.0.0 bye \xe2\x87\x92 success\n");
	assert_string_equal(verdict, "no message sent: RCPT rejected 550 5.1.1 "
	    "bad destination mailbox address");
	assert_int_equal(st.messages_accepted, 0);
	assert_int_equal(st.messages_rejected, 1);
	free(t);
	script_free(&s);
}

/* ---- capability summary and verdicts ---- */

static void
add_pretls(struct script *s)
{
	add(s, PRETLS, "250-mx.example", 14);
	add(s, PRETLS, "250-SIZE 100", 12);
	add(s, PRETLS, "250-8BITMIME", 12);
	add(s, PRETLS, "250 STARTTLS", 12);
}

static void
test_caps_summary(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	char *t;

	(void)state;
	add_pretls(&s);
	adds(&s, SMTP_SERVER, "220 mx.example ESMTP\r\n");
	adds(&s, SMTP_CLIENT, "EHLO c\r\n");
	adds(&s, SMTP_SERVER, "250-mx.example\r\n250-SIZE 100\r\n"
	    "250-8BITMIME\r\n250 AUTH PLAIN LOGIN\r\n");
	add_b64(&s, "AUTH PLAIN ", PLAIN_BLOB, PLAIN_BLOB_LEN);
	adds(&s, SMTP_SERVER, "235 2.7.0 ok\r\n");
	adds(&s, SMTP_CLIENT, "MAIL FROM:<alice@example.org> AUTH=<alice@example.org>"
	    " SIZE=500 SMTPUTF8\r\nRCPT TO:<b@c>\r\nDATA\r\n");
	adds(&s, SMTP_SERVER, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n");
	adds(&s, SMTP_CLIENT, "Subject: gr\xc3\xbc\xc3\x9f\r\n\r\n"
	    "0123456789012345678901234567890123456789012345678901234567890123456789"
	    "0123456789012345678901234567890123456789012345678901234567890123456789"
	    "\r\n.\r\n");
	adds(&s, SMTP_SERVER, "552 5.3.4 Message size exceeds fixed limit\r\n");
	adds(&s, SMTP_CLIENT, "QUIT\r\n");
	adds(&s, SMTP_SERVER, "221 2.0.0 bye\r\n");
	t = run_all_ways(&s, &st);
	if (getenv("TEST_SMTP_DUMP") != NULL)
		fprintf(stderr, "%s* verdict: %s\n", t, verdict);
	assert_true(contains(t, "Sn 0 capabilities: before TLS: SIZE 100, "
	    "8BITMIME, STARTTLS; after TLS: SIZE 100, 8BITMIME, AUTH PLAIN "
	    "LOGIN\n", 0));
	assert_true(contains(t, "Cn 0 AUTH PLAIN: offered by the server "
	    "(offered: PLAIN LOGIN)\n", 0));
	assert_true(contains(t, "Cn 0 MAIL FROM parameter "
	    "AUTH=<alice@example.org>: the submitter's authenticated identity "
	    "(RFC 4954 section 5)\n", 0));
	assert_true(contains(t, "Cn 0 MAIL FROM uses SMTPUTF8 but the server "
	    "did not offer it\n", 0));
	assert_true(contains(t, "Cn 0 MAIL FROM declares SIZE=500, over the "
	    "server's limit of 100 bytes\n", 0));
	assert_true(contains(t, "Cn 0 the message (161 bytes) is larger than "
	    "the server's SIZE limit (100 bytes)\n", 0));
	assert_true(contains(t, "Ch 0 (header) Subject: gr\xc3\xbc\xc3\x9f\n",
	    0));
	assert_string_equal(verdict, "message rejected 552 5.3.4 message too "
	    "big for system; the message (161 bytes) is over the SIZE limit "
	    "(100 bytes)");
	free(t);
	script_free(&s);

	/* 8-bit data without BODY=8BITMIME. */
	adds(&s, SMTP_SERVER, "220 x\r\n");
	adds(&s, SMTP_CLIENT, "EHLO c\r\n");
	adds(&s, SMTP_SERVER, "250-x\r\n250 8BITMIME\r\n");
	adds(&s, SMTP_CLIENT, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
	adds(&s, SMTP_SERVER, "250 ok\r\n250 ok\r\n354 go\r\n");
	adds(&s, SMTP_CLIENT, "\r\n\xe9t\xe9\r\n.\r\n");
	adds(&s, SMTP_SERVER, "250 2.0.0 queued\r\n");
	t = run_all_ways(&s, &st);
	assert_true(contains(t, "Cn 0 message: 7 bytes, 2 lines, longest line "
	    "3 bytes, 2 8-bit bytes\n"
	    "Cn 0 the message has 8-bit data but MAIL FROM declared neither "
	    "BODY=8BITMIME nor SMTPUTF8\n", 0));
	assert_string_equal(verdict, "message accepted 250 2.0.0 (1 recipient, "
	    "7 bytes)");
	free(t);
	script_free(&s);
}

static void
test_verdicts(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	char *t, *big;

	(void)state;
	/* AUTH LOGIN (initial-response), password with a trailing LF. */
	adds(&s, SMTP_SERVER, "220 x\r\n");
	adds(&s, SMTP_CLIENT, "EHLO c\r\n");
	adds(&s, SMTP_SERVER, "250-x\r\n250 AUTH PLAIN LOGIN\r\n");
	add_b64(&s, "AUTH LOGIN ", "alice@example.org", 17);
	adds(&s, SMTP_SERVER, "334 UGFzc3dvcmQ6\r\n");
	add_b64(&s, "", CANARY "\n", strlen(CANARY) + 1);
	adds(&s, SMTP_SERVER, "535 5.7.8 Error: authentication failed\r\n");
	adds(&s, SMTP_CLIENT, "QUIT\r\n");
	adds(&s, SMTP_SERVER, "221 2.0.0 Bye\r\n");
	t = run_all_ways(&s, &st);
	assert_true(contains(t, "Sr 535 535 5.7.8 Error: authentication failed "
	    "\xe2\x87\x92 authentication credentials invalid\n", 0));
	assert_string_equal(verdict, "AUTH LOGIN (initial-response) as "
	    "alice@example.org rejected 535 5.7.8; the password ends in LF "
	    "(0x0a)");
	free(t);
	script_free(&s);

	/* Relay denied. */
	adds(&s, SMTP_SERVER, "220 x\r\n");
	adds(&s, SMTP_CLIENT, "EHLO c\r\n");
	adds(&s, SMTP_SERVER, "250-x\r\n250 AUTH PLAIN\r\n");
	adds(&s, SMTP_CLIENT, "MAIL FROM:<a@b>\r\nRCPT TO:<x@elsewhere>\r\n"
	    "DATA\r\n");
	adds(&s, SMTP_SERVER, "250 2.1.0 ok\r\n554 5.7.1 <x@elsewhere>: Relay "
	    "access denied\r\n554 5.5.1 Error: no valid recipients\r\n");
	adds(&s, SMTP_CLIENT, "QUIT\r\n");
	adds(&s, SMTP_SERVER, "221 2.0.0 Bye\r\n");
	t = run_all_ways(&s, &st);
	assert_true(contains(t, "Relay access denied \xe2\x87\x92 relay "
	    "access denied\n", 0));
	assert_string_equal(verdict, "no message sent: RCPT rejected 554 5.7.1 "
	    "relay access denied; the client did not authenticate");
	free(t);
	script_free(&s);

	/* No AUTH offered, the client tries anyway. */
	adds(&s, SMTP_SERVER, "220 x\r\n");
	adds(&s, SMTP_CLIENT, "EHLO c\r\n");
	adds(&s, SMTP_SERVER, "250-x\r\n250 PIPELINING\r\n");
	add_b64(&s, "AUTH PLAIN ", PLAIN_BLOB, PLAIN_BLOB_LEN);
	adds(&s, SMTP_SERVER, "503 5.5.1 Error: authentication not enabled\r\n");
	adds(&s, SMTP_CLIENT, "MAIL FROM:<a@b>\r\n");
	adds(&s, SMTP_SERVER, "530 5.7.0 Must issue a STARTTLS command "
	    "first\r\n");
	t = run_all_ways(&s, &st);
	assert_true(contains(t, "Cn 0 AUTH PLAIN: the server offered no AUTH "
	    "mechanism\n", 0));
	assert_true(contains(t, "first \xe2\x87\x92 must authenticate (or "
	    "issue STARTTLS) first\n", 0));
	assert_string_equal(verdict, "AUTH PLAIN (initial-response) as "
	    "alice@example.org rejected 503 5.5.1 AUTH not allowed now "
	    "(already authenticated, or in a mail transaction); the server "
	    "offered no AUTH mechanism");
	free(t);
	script_free(&s);

	/* No AUTH offered, and the client goes straight to MAIL. */
	adds(&s, SMTP_SERVER, "220 x\r\n");
	adds(&s, SMTP_CLIENT, "EHLO c\r\n");
	adds(&s, SMTP_SERVER, "250-x\r\n250 PIPELINING\r\n");
	adds(&s, SMTP_CLIENT, "MAIL FROM:<a@b>\r\n");
	adds(&s, SMTP_SERVER, "530 5.7.0 Authentication required\r\n");
	t = run_all_ways(&s, &st);
	assert_string_equal(verdict, "no message sent: MAIL rejected 530 5.7.0 "
	    "must authenticate (or issue STARTTLS) first; the server offered "
	    "no AUTH mechanism");
	free(t);
	script_free(&s);

	/* Quit after EHLO; and a message of 14.2 kB. */
	adds(&s, SMTP_SERVER, "220 x\r\n");
	adds(&s, SMTP_CLIENT, "EHLO c\r\n");
	adds(&s, SMTP_SERVER, "250 x\r\n");
	adds(&s, SMTP_CLIENT, "QUIT\r\n");
	adds(&s, SMTP_SERVER, "221 2.0.0 Bye\r\n");
	t = run_all_ways(&s, &st);
	assert_string_equal(verdict, "no message sent: client quit after EHLO");
	free(t);
	script_free(&s);

	big = malloc(14200);
	memset(big, 'a', 14200);
	memcpy(big + 98, "\r\n", 2);
	memcpy(big + 14195, "\r\n.\r\n", 5);
	adds(&s, SMTP_SERVER, "220 x\r\n");
	adds(&s, SMTP_CLIENT, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
	adds(&s, SMTP_SERVER, "250 ok\r\n250 ok\r\n354 go\r\n");
	add(&s, SMTP_CLIENT, big, 14200);
	adds(&s, SMTP_SERVER, "250 2.0.0 Ok: queued\r\n");
	t = run(&s, 0, 0, &st, NULL);
	assert_string_equal(verdict, "message accepted 250 2.0.0 (1 recipient, "
	    "14.2 kB)");
	free(t);
	free(big);
	script_free(&s);

	/* The greeting refuses. */
	adds(&s, SMTP_SERVER, "554 5.7.1 go away\r\n");
	t = run_all_ways(&s, &st);
	assert_true(contains(t, "go away \xe2\x87\x92 the server refuses "
	    "this connection\n", 0));
	assert_string_equal(verdict, "the server refused the session with 554 "
	    "(transaction failed)");
	free(t);
	script_free(&s);
}

/* Pieces of SMTP and junk, glued at random: no crash, same records. */
static const char *const soup[] = {
	"220 x\r\n", "250-a\r\n", "250 b\r\n", "334 VXNlcm5hbWU6\r\n",
	"334 \r\n", "354 go\r\n", "235 ok\r\n", "535 no\r\n", "\r\n",
	"\n", "\r", ".\r\n", ".\n", "AUTH PLAIN ", "AUTH LOGIN\r\n",
	"AUTH", "DATA\r\n", "BDAT 5\r\n", "BDAT 3 LAST\r\n", "*\r\n",
	"YWxpY2U=\r\n", "Subject: s\r\n", " fold\r\n", "STARTTLS\r\n",
	"\x1b[2J", "\xc3\xa4", "\xff", "=", "MAIL FROM:<a>\r\n", "99",
};

static uint32_t
rnd(uint32_t *seed)
{
	*seed = *seed * 1103515245u + 12345u;
	return *seed >> 8;
}

/*
 * NUL and 8-bit bytes are counted in 64-byte blocks with a word-by-word
 * fallback: put them at every offset of a block, in bodies of every length
 * around the block size, fed whole and in odd pieces, and compare the
 * counts with a byte-by-byte count.
 */
static void
test_odd_byte_counts(void **state)
{
	unsigned char body[300];
	char want[160], *t;
	size_t len, i, nul, eight, chunk;
	unsigned seed = 7;
	struct script sc;

	(void)state;
	for (len = 1; len <= 200; len += (len < 140 ? 1 : 13)) {
		nul = eight = 0;
		for (i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			switch ((seed >> 16) % 11) {
			case 0:
				body[i] = '\0';
				nul++;
				break;
			case 1:
				body[i] = (unsigned char)(0x80 + (seed >> 8) % 128);
				eight++;
				break;
			default:
				body[i] = (unsigned char)('a' + (seed >> 8) % 26);
				break;
			}
		}
		memcpy(body + len, "\r\n.\r\n", 5);
		memset(&sc, 0, sizeof sc);
		adds(&sc, SMTP_CLIENT, "DATA\r\n");
		adds(&sc, SMTP_SERVER, "354 go\r\n");
		add(&sc, SMTP_CLIENT, body, len + 5);
		adds(&sc, SMTP_SERVER, "250 ok\r\n");
		want[0] = '\0';
		if (nul > 0)
			snprintf(want, sizeof want, ", %zu NUL", nul);
		if (eight > 0)
			snprintf(want + strlen(want), sizeof want - strlen(want),
			    ", %zu 8-bit bytes", eight);
		for (chunk = 0; chunk <= 67; chunk += 67) {
			t = run(&sc, chunk, 0, NULL, NULL);
			if (want[0] != '\0' && strstr(t, want) == NULL)
				fail_msg("length %zu, chunk %zu: want \"%s\" in\n%s",
				    len, chunk, want, t);
			if (want[0] == '\0' && (strstr(t, " NUL") != NULL ||
			    strstr(t, "8-bit bytes") != NULL))
				fail_msg("length %zu: no odd bytes, yet\n%s", len, t);
			free(t);
		}
		script_free(&sc);
	}
}

static void
test_random_soup(void **state)
{
	struct script s = { .n = 0 };
	char buf[512], *a, *b, *c;
	uint32_t seed = 42;
	size_t len, k;
	int iter, ev, pieces;

	(void)state;
	for (iter = 0; iter < 300; iter++) {
		for (ev = 0; ev < 40; ev++) {
			len = 0;
			pieces = 1 + (int)(rnd(&seed) % 6);
			while (pieces-- > 0) {
				k = rnd(&seed) % (sizeof soup / sizeof soup[0]);
				memcpy(buf + len, soup[k], strlen(soup[k]));
				len += strlen(soup[k]);
			}
			if (rnd(&seed) % 8 == 0)
				buf[len++] = '\0';
			add(&s, rnd(&seed) % 2 ? SMTP_CLIENT : SMTP_SERVER, buf,
			    len);
		}
		add_eof(&s, SMTP_CLIENT);
		add_eof(&s, SMTP_SERVER);
		a = run(&s, 0, 0, NULL, NULL);
		b = run(&s, 1, 0, NULL, NULL);
		c = run(&s, 1 + rnd(&seed) % 13, 0, NULL, NULL);
		assert_string_equal(a, b);
		assert_string_equal(a, c);
		free(a);
		free(b);
		free(c);
		script_free(&s);
	}
}

/* ---- hostile whitespace, credentials outside AUTH, refused DATA ---- */

static char *
upper_dup(const char *t)
{
	char *u = strdup(t), *c;

	for (c = u; *c != '\0'; c++)
		if (*c >= 'a' && *c <= 'z')
			*c = (char)(*c - 'a' + 'A');
	return u;
}

/*
 * No 8-character piece of the base64 of the PLAIN blob, at any alignment,
 * in any case (a server may quote the line upper-cased).
 */
static void
assert_no_blob_piece(const char *t)
{
	char pre[64], *b, *ub, *ut = upper_dup(t);
	size_t k, i, n;

	for (k = 0; k < 3; k++) {
		memset(pre, 'x', k);
		memcpy(pre + k, PLAIN_BLOB, PLAIN_BLOB_LEN);
		b = b64_encode((unsigned char *)pre, k + PLAIN_BLOB_LEN);
		n = strlen(b);
		ub = upper_dup(b);
		/* Skip the chars that depend on the prefix or the tail. */
		for (i = k ? 4 : 0; i + 8 + 4 <= n; i++)
			if (contains(t, b + i, 8) || contains(ut, ub + i, 8))
				fail_msg("piece %.8s of the blob in:\n%s", b + i, t);
		free(ub);
		b64_free((unsigned char *)b, n);
	}
	free(ut);
}

/*
 * Every way of separating AUTH's words: those a server splits at (SP,
 * HTAB, runs of them, leading and trailing ones, any case) are decoded;
 * the others (VT, FF, bare CR, NUL, none at all, a control before the
 * verb) are masked past the verb, and the summary names no mechanism.
 * run_all_ways() also cuts every line at every byte.
 */
static void
test_auth_whitespace(void **state)
{
	static const struct {
		const char	*pre, *sep;	/* before the blob */
		size_t		 prelen;
		int		 valid;
	} t[] = {
		{ "AUTH PLAIN ", NULL, 11, 1 },
		{ "AUTH PLAIN\t", NULL, 11, 1 },
		{ "AUTH\tPLAIN ", NULL, 11, 1 },
		{ "AUTH\tPLAIN\t", NULL, 11, 1 },
		{ " AUTH PLAIN ", NULL, 12, 1 },
		{ "\t AUTH  \t PLAIN \t ", NULL, 18, 1 },
		{ "aUtH pLaIn ", NULL, 11, 1 },
		{ "AUTH PLAIN\v", NULL, 11, 0 },
		{ "AUTH PLAIN\f", NULL, 11, 0 },
		{ "AUTH PLAIN\r", NULL, 11, 0 },
		{ "AUTH PLAIN\0", NULL, 11, 0 },
		{ "AUTH\vPLAIN ", NULL, 11, 0 },
		{ "AUTH\rPLAIN ", NULL, 11, 0 },
		{ "AUTH\0PLAIN ", NULL, 11, 0 },
		{ "AUTHPLAIN ", NULL, 10, 0 },
		{ "\vAUTH PLAIN ", NULL, 12, 0 },
		{ "\0AUTH PLAIN ", NULL, 12, 0 },
		{ "\rAUTH PLAIN ", NULL, 12, 0 },
		{ "AUTH PLAIN=", NULL, 11, 0 },
		{ "AUTH PLAIN,", NULL, 11, 0 },
		{ "AUTH ", NULL, 5, 0 },	/* the blob as the mechanism */
	};
	struct script s = { .n = 0 };
	struct smtp_stats st;
	char *b, line[256], *t1, mech[64];
	size_t i, n, blen;

	(void)state;
	b = b64_encode((const unsigned char *)PLAIN_BLOB, PLAIN_BLOB_LEN);
	blen = strlen(b);
	for (i = 0; i < sizeof t / sizeof t[0]; i++) {
		adds(&s, SMTP_SERVER, "220 x\r\n");
		memcpy(line, t[i].pre, t[i].prelen);
		memcpy(line + t[i].prelen, b, blen);
		n = t[i].prelen + blen;
		/* Trailing blanks too, where the line is decoded. */
		if (i % 2 == 0 && t[i].valid) {
			memcpy(line + n, " \t ", 3);
			n += 3;
		}
		memcpy(line + n, "\r\n", 2);
		add(&s, SMTP_CLIENT, line, n + 2);
		if (i % 3 == 1) {
			/* aiosmtpd: the first word, upper case, quoted. */
			char echo[300], *u;
			size_t e;

			line[n] = '\0';
			u = upper_dup(line);
			e = strcspn(u, " ");
			snprintf(echo, sizeof echo, "500 Error: command \"%.*s\" "
			    "not recognized\r\n", (int)e, u);
			add(&s, SMTP_SERVER, echo, strlen(echo));
			free(u);
		} else
			adds(&s, SMTP_SERVER, "535 5.7.8 no\r\n");
		adds(&s, SMTP_CLIENT, "QUIT\r\n");
		adds(&s, SMTP_SERVER, "221 bye\r\n");
		t1 = run_all_ways(&s, &st);
		assert_no_blob_piece(t1);
		assert_no_blob_piece(verdict);
		assert_no_blob_piece(st.auth_mech);
		if (t[i].valid) {
			assert_string_equal(st.auth_mech, "PLAIN");
			assert_string_equal(st.auth_user, "alice@example.org");
			assert_true(contains(t1, "password=<masked, 13 bytes>",
			    0));
			assert_true(i % 3 == 1 || contains(t1, "Sr 535 535 5.7.8 "
			    "no", 0));
		} else {
			snprintf(mech, sizeof mech, "<invalid mechanism, %zu "
			    "bytes>", n - (t[i].prelen - (i == 20 ? 1 : 0)) +
			    (i == 20 ? 0 : 0));
			assert_true(strncmp(st.auth_mech, "<invalid mechanism, ",
			    20) == 0);
			assert_string_equal(st.auth_user, "");
			assert_true(contains(t1, "<masked, ", 0));
			assert_true(contains(verdict, "AUTH <invalid mechanism, ",
			    0));
			assert_false(contains(t1, "NOT offered", 0));
		}
		/* The AUTH line is an AUTH record; the next line is shown. */
		assert_true(contains(t1, "\nCa 0 ", 0));
		assert_true(contains(t1, "\nCc 0 QUIT\n", 0));
		free(t1);
		script_free(&s);
	}
	b64_free((unsigned char *)b, blen);
}

/* What the line after the verb is masked as, and nothing past it. */
static void
test_auth_masked_past_verb(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	char *t;

	(void)state;
	adds(&s, SMTP_SERVER, "220 x\r\n");
	adds(&s, SMTP_CLIENT, "EHLO a\r\n");
	adds(&s, SMTP_SERVER, "250-x\r\n250 AUTH PLAIN\r\n");
	add(&s, SMTP_CLIENT, " aUtH\vPLAIN\vsecretpw\r\n", 22);
	adds(&s, SMTP_SERVER, "334 \r\n");
	adds(&s, SMTP_CLIENT, "c2VjcmV0cHc=\r\n");
	adds(&s, SMTP_SERVER, "535 5.7.8 no\r\n");
	adds(&s, SMTP_CLIENT, "AUTH\r\n");
	adds(&s, SMTP_SERVER, "501 5.5.4 Syntax: AUTH mechanism\r\n");
	t = run_all_ways(&s, &st);
	assert_string_equal(t,
	    "Sr 220 220 x\n"
	    "Cc 0 EHLO a\n"
	    "Sr 250 250-x\n"
	    "Sr 250 250 AUTH PLAIN\n"
	    "Sn 0 capabilities: AUTH PLAIN\n"
	    "Ca 0  aUtH <masked, 15 bytes> \xe2\x87\x92 not \"AUTH mechanism\" "
	    "with a valid mechanism name: not decoded\n"
	    "Sr 334 334  \xe2\x87\x92 \"\"\n"
	    "Ca 0 <masked> \xe2\x87\x92 <opaque, 8 bytes>\n"
	    "Sr 535 535 5.7.8 no \xe2\x87\x92 authentication "
	    "credentials invalid\n"
	    "Cc 0 AUTH\n"
	    "Sr 501 501 5.5.4 Syntax: AUTH mechanism \xe2\x87\x92 invalid "
	    "command arguments\n");
	assert_string_equal(st.auth_mech, "<invalid mechanism, 15 bytes>");
	assert_false(contains(t, "secret", 0));
	assert_false(contains(verdict, "secret", 0));
	assert_string_equal(verdict, "AUTH <invalid mechanism, 15 bytes> "
	    "rejected 535 5.7.8 authentication credentials invalid");
	free(t);
	script_free(&s);
}

/*
 * BDAT's words split as AUTH's: the chunk is counted, never shown, with
 * any separator a server might split at, leading and trailing blanks.
 */
static void
test_bdat_whitespace(void **state)
{
	static const struct {
		const char	*cmd;
		size_t		 len;
	} t[] = {
		{ "BDAT 22 LAST", 12 }, { "BDAT\t22\tLAST", 12 },
		{ " BDAT  22  LAST ", 16 }, { "\tbdat\t22 last\t", 14 },
		{ "BDAT\v22\vLAST", 12 }, { "BDAT\f22\fLAST", 12 },
		{ "BDAT\r22\rLAST", 12 }, { "BDAT\00022\0LAST", 12 },
		{ "bDaT 22 lAsT", 12 },
	};
	struct script s = { .n = 0 };
	struct smtp_stats st;
	char line[64], *t1;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof t / sizeof t[0]; i++) {
		adds(&s, SMTP_SERVER, "220 x\r\n");
		adds(&s, SMTP_CLIENT, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
		adds(&s, SMTP_SERVER, "250 ok\r\n250 ok\r\n");
		memcpy(line, t[i].cmd, t[i].len);
		memcpy(line + t[i].len, "\r\n", 2);
		add(&s, SMTP_CLIENT, line, t[i].len + 2);
		adds(&s, SMTP_CLIENT, "Chunkline1\r\nQUIT\r\nRSET\r\n");
		adds(&s, SMTP_SERVER, "250 2.0.0 queued\r\n");
		t1 = run_all_ways(&s, &st);
		assert_true(contains(t1, "Cn 0 BDAT chunk: 22 bytes, LAST\n", 0));
		assert_false(contains(t1, "Chunkline1", 0));
		assert_false(contains(t1, "QUIT", 0));
		assert_false(contains(t1, "RSET", 0));
		assert_int_equal(st.messages_accepted, 1);
		free(t1);
		script_free(&s);
	}
}

/*
 * After an AUTH that did not succeed, a line that is not plainly a
 * command may be a secret: masked with its length, and the reply to it
 * too (servers quote what they refuse). Plain commands stay shown.
 */
static void
test_auth_wary(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	char *t;
	int i;

	(void)state;
	for (i = 0; i < 5; i++) {
		adds(&s, SMTP_SERVER, "220 x\r\n");
		switch (i) {
		case 0:		/* a final 504, then the response anyway */
			adds(&s, SMTP_CLIENT, "AUTH FOO\r\n");
			adds(&s, SMTP_SERVER, "504 5.5.4 no\r\n");
			break;
		case 1:		/* "*" and 501, then the response anyway */
			adds(&s, SMTP_CLIENT, "AUTH PLAIN\r\n");
			adds(&s, SMTP_SERVER, "334 \r\n");
			adds(&s, SMTP_CLIENT, "*\r\n");
			adds(&s, SMTP_SERVER, "501 5.7.0 cancelled\r\n");
			break;
		case 2:		/* a duplicate reply taken for AUTH's */
			adds(&s, SMTP_CLIENT, "AUTH LOGIN\r\n");
			adds(&s, SMTP_SERVER, "250 2.0.0 Ok\r\n");
			break;
		case 3:		/* a 535, then the password typed again */
			adds(&s, SMTP_CLIENT, "AUTH LOGIN\r\n");
			adds(&s, SMTP_SERVER, "334 VXNlcm5hbWU6\r\n");
			adds(&s, SMTP_CLIENT, "YWxpY2U=\r\n");
			adds(&s, SMTP_SERVER, "334 UGFzc3dvcmQ6\r\n");
			adds(&s, SMTP_CLIENT, "eA==\r\n");
			adds(&s, SMTP_SERVER, "535 5.7.8 no\r\n");
			break;
		case 4:		/* a 235 nobody asked for */
			adds(&s, SMTP_CLIENT, "AUTH LOGIN\r\n");
			adds(&s, SMTP_SERVER, "235 2.7.0 Ok\r\n");
			break;
		}
		adds(&s, SMTP_CLIENT, CANARY "\r\n");
		adds(&s, SMTP_SERVER, "500 5.5.2 Error: command \"" CANARY
		    "\" not recognized\r\n");
		adds(&s, SMTP_CLIENT, CANARY " more words\r\nVRFY " CANARY
		    "\r\nHELP " CANARY "\r\nNOOP " CANARY "\r\nMAIL " CANARY
		    "\r\nEHLO " CANARY " x\r\n");
		adds(&s, SMTP_SERVER, "500-" CANARY "\r\n500 " CANARY "\r\n"
		    "502 5.5.1 " CANARY "\r\n502 " CANARY "\r\n250 " CANARY
		    "\r\n501 " CANARY "\r\n501 " CANARY "\r\n");
		/* Plain commands are shown, and so are their replies. */
		adds(&s, SMTP_CLIENT, "EHLO client.example\r\nNOOP\r\n"
		    "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRSET\r\n");
		adds(&s, SMTP_SERVER, "250 mx\r\n250 ok\r\n250 ok\r\n250 ok\r\n"
		    "250 ok\r\n");
		/* Still after a failure; after a success, a session again. */
		adds(&s, SMTP_CLIENT, i < 4 ? CANARY "\r\n" : "XFOO\r\n");
		adds(&s, SMTP_SERVER, i < 4 ? "500 5.5.2 " CANARY "\r\n" :
		    "500 5.5.2 XFOO?\r\n");
		if (i < 4)
			add(&s, SMTP_CLIENT, CANARY, strlen(CANARY));
		t = run_all_ways(&s, &st);
		if (getenv("TEST_SMTP_DUMP") != NULL)
			fputs(t, stderr);
		assert_true(contains(t, "Cn 0 a client line after AUTH that is "
		    "not a plain SMTP command is masked, and so is the reply to "
		    "it: it may be a password\nCc 0 <masked, 13 bytes>\n", 0));
		assert_true(contains(t, "Sr 500 500 5.5.2 [45 bytes not shown] "
		    "\xe2\x87\x92 syntax error\n", 0));
		assert_true(contains(t, "Cc 0 <masked, 24 bytes>\n", 0));
		assert_true(contains(t, "Cc 0 EHLO client.example\n"
		    "Cc 0 NOOP\nCc 0 MAIL FROM:<a@b>\nCc 0 RCPT TO:<c@d>\n"
		    "Cc 0 RSET\n", 0));
		if (i < 4)
			assert_true(contains(t, "Cc 0 <masked, 13 bytes> "
			    "[no CRLF]\n", 0));
		else
			assert_true(contains(t, "Cc 0 XFOO\n", 0));
		assert_false(contains(t, "Canar", 0));
		assert_false(contains(verdict, "Canar", 0));
		/* The note is said once per AUTH. */
		assert_null(strstr(strstr(t, "is masked, and so") + 1,
		    "is masked, and so"));
		free(t);
		script_free(&s);
	}
}

/* After a successful AUTH an ordinary session is shown in full. */
static void
test_auth_success_not_masked(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	char *t;

	(void)state;
	adds(&s, SMTP_SERVER, "220 x\r\n");
	add_b64(&s, "AUTH PLAIN ", PLAIN_BLOB, PLAIN_BLOB_LEN);
	adds(&s, SMTP_SERVER, "235 2.7.0 ok\r\n");
	adds(&s, SMTP_CLIENT, "MAIL FROM:<a@b> SIZE=10\r\nRCPT TO:<c@d>\r\n"
	    "VRFY bob\r\nXFOO bar\r\nNOOP\r\nRSET\r\nQUIT\r\n");
	adds(&s, SMTP_SERVER, "250 ok\r\n250 ok\r\n252 bob\r\n500 XFOO?\r\n"
	    "250 ok\r\n250 ok\r\n221 bye\r\n");
	t = run_all_ways(&s, &st);
	if (getenv("TEST_SMTP_DUMP") != NULL)
		fputs(t, stderr);
	assert_true(contains(t, "Cc 0 MAIL FROM:<a@b> SIZE=10\n"
	    "Cc 0 RCPT TO:<c@d>\nCc 0 VRFY bob\nCc 0 XFOO bar\nCc 0 NOOP\n"
	    "Cc 0 RSET\nCc 0 QUIT\n", 0));
	assert_true(contains(t, "Sr 500 500 XFOO? \xe2\x87\x92 syntax error, command unrecognized\n", 0));
	assert_false(contains(t, "Cc 0 <masked", 0));
	assert_false(contains(t, "not shown", 0));
	free(t);
	script_free(&s);
}

/* The message a client sends after DATA was refused is counted, not shown. */
static void
test_data_refused_body(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	char *t;
	int i;

	(void)state;
	for (i = 0; i < 3; i++) {
		adds(&s, SMTP_SERVER, "220 x\r\n");
		adds(&s, SMTP_CLIENT, "MAIL FROM:<a@b>\r\nDATA\r\n");
		adds(&s, SMTP_SERVER, "250 ok\r\n");
		if (i == 2)	/* refused after a line of it was sent */
			adds(&s, SMTP_CLIENT, "Subject: Body-Secret-1\r\n");
		adds(&s, SMTP_SERVER, i == 0 ? "554 5.5.1 no valid recipients"
		    "\r\n" : "503 5.5.1 need RCPT\r\n");
		if (i != 2)
			adds(&s, SMTP_CLIENT, "Subject: Body-Secret-1\r\n");
		adds(&s, SMTP_CLIENT, "\r\nBody-Secret-2\r\nQUIT\r\n"
		    "AUTH PLAIN x\r\n.\r\nQUIT\r\n");
		adds(&s, SMTP_SERVER, "500 5.5.2 \"Subject: Body-Secret-1\"\r\n"
		    "500 5.5.2 \"\"\r\n500 5.5.2 \"Body-Secret-2\"\r\n221 quits"
		    "\r\n500 AUTH Body-Secret-3\r\n500 5.5.2 \".\"\r\n"
		    "221 2.0.0 bye\r\n");
		t = run_all_ways(&s, &st);
		if (getenv("TEST_SMTP_DUMP") != NULL)
			fputs(t, stderr);
		assert_false(contains(t, "Body-Secret", 0));
		assert_false(contains(verdict, "Body-Secret", 0));
		assert_true(contains(t, "Cn 0 message after the refused DATA: "
		    "61 bytes, 5 lines, longest line 22 bytes\nCc 0 .\n", 0));
		assert_true(contains(t, "Sr 500 500 5.5.2 [3 bytes not shown]", 0));
		/* In step again: the last QUIT and its reply are shown. */
		assert_true(contains(t, "Cc 0 .\nCc 0 QUIT\n", 0));
		assert_true(contains(t, "Sr 221 221 [5 bytes not shown]\n", 0));
		assert_true(contains(t, "Sr 221 221 2.0.0 bye \xe2\x87\x92 "
		    "success\n", 0));
		assert_int_equal(st.messages_rejected, 1);
		assert_int_equal(st.messages_accepted, 0);
		free(t);
		script_free(&s);
	}
	/* A plain command after the refusal is a command. */
	adds(&s, SMTP_SERVER, "220 x\r\n");
	adds(&s, SMTP_CLIENT, "DATA\r\n");
	adds(&s, SMTP_SERVER, "554 5.5.1 no\r\n");
	adds(&s, SMTP_CLIENT, "RSET\r\n");
	adds(&s, SMTP_SERVER, "250 ok\r\n");
	t = run_all_ways(&s, &st);
	assert_true(contains(t, "Cc 0 RSET\nSr 250 250 ok\n", 0));
	assert_false(contains(t, "refused DATA", 0));
	free(t);
	script_free(&s);
}

/* Under PIPELINING a reply names the command it answers (RFC 2920 example). */
static void
test_pipelined_reply_names_command(void **state)
{
	struct script s = { .n = 0 };
	struct smtp_stats st;
	char *t;

	(void)state;
	keep_pairing = 1;
	adds(&s, SMTP_SERVER, "220 innosoft.com SMTP service ready\r\n");
	adds(&s, SMTP_CLIENT, "EHLO dbc.mtview.ca.us\r\n");
	adds(&s, SMTP_SERVER, "250-innosoft.com\r\n250 PIPELINING\r\n");
	adds(&s, SMTP_CLIENT, "MAIL FROM:<mrose@dbc.mtview.ca.us>\r\n"
	    "RCPT TO:<ned@innosoft.com>\r\nRCPT TO:<kvc@innosoft.com>\r\n"
	    "DATA\r\n");
	adds(&s, SMTP_SERVER, "250 sender OK\r\n250 ned OK\r\n"
	    "550 mailbox unavailable\r\n354 go ahead\r\n");
	adds(&s, SMTP_CLIENT, "hi\r\n.\r\nQUIT\r\n");
	adds(&s, SMTP_SERVER, "250 sent\r\n221 bye\r\n");
	t = run_all_ways(&s, &st);
	keep_pairing = 0;
	/* Each reply names its command while later ones were already shown. */
	assert_non_null(strstr(t, "Sr 250 250 sender OK [to MAIL FROM:"
	    "<mrose@dbc.mtview.ca.us>]\n"));
	assert_non_null(strstr(t, "Sr 250 250 ned OK [to RCPT TO:"
	    "<ned@innosoft.com>]\n"));
	assert_non_null(strstr(t, "[to RCPT TO:<kvc@innosoft.com>]\n"));
	assert_non_null(strstr(t, "Sr 550 550 mailbox unavailable"));
	/* The last command of a group, and one sent alone, need no name. */
	assert_non_null(strstr(t, "Sr 354 354 go ahead\n"));
	assert_null(strstr(t, "[to DATA]"));
	assert_null(strstr(t, "[to QUIT]"));
	assert_null(strstr(t, "[to EHLO"));
	free(t);
	script_free(&s);
}

/*
 * A refusal after a masked line keeps its text unless it quotes a piece of
 * that line (in any case): the provider's words are what a user debugs from.
 */
static void
test_auth_refusal_text_kept(void **state)
{
	static const struct {
		const char	*client;	/* after the failed AUTH */
		const char	*reply;
		int		 hidden;
	} t[] = {
		{ "hunter2-password\r\n",
		  "500 5.5.2 Error: command \"HUNTER2-PASSWORD\" not recognized\r\n", 1 },
		{ "hunter2-password\r\n",
		  "500 5.5.2 unknown command 'hunter2-pa...'\r\n", 1 },
		{ "abc12\r\n", "500 5.5.2 what is ABC12?\r\n", 1 },
		{ "hunter2-password\r\n",
		  "500 5.5.2 Error: command not recognized\r\n", 0 },
		{ "abc12\r\n", "502 5.5.1 unrecognised\r\n", 0 },
	};
	struct script s = { .n = 0 };
	struct smtp_stats st;
	char *txt;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof t / sizeof t[0]; i++) {
		adds(&s, SMTP_SERVER, "220 x\r\n");
		adds(&s, SMTP_CLIENT, "AUTH PLAIN AGFsaWNlAHdyb25nLXBhc3N3b3Jk\r\n");
		adds(&s, SMTP_SERVER, "535 5.7.139 Authentication unsuccessful, "
		    "SmtpClientAuthentication is disabled for the Tenant\r\n");
		adds(&s, SMTP_CLIENT, t[i].client);
		adds(&s, SMTP_SERVER, t[i].reply);
		adds(&s, SMTP_CLIENT, "QUIT\r\n");
		adds(&s, SMTP_SERVER, "221 bye\r\n");
		txt = run_all_ways(&s, &st);
		/* The AUTH line is not quoted: the provider's text is shown. */
		assert_true(contains(txt, "SmtpClientAuthentication is disabled "
		    "for the Tenant", 0));
		assert_false(contains(txt, "hunter2", 0));
		assert_false(contains(txt, "HUNTER2", 0));
		assert_false(contains(txt, "abc12", 0));
		assert_false(contains(txt, "ABC12", 0));
		assert_int_equal(contains(txt, "bytes not shown]", 0), t[i].hidden);
		free(txt);
		script_free(&s);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_session),
		cmocka_unit_test(test_session_byte_at_a_time),
		cmocka_unit_test(test_auth_login_initial_response),
		cmocka_unit_test(test_auth_fail_closed),
		cmocka_unit_test(test_unexpected_334_masks),
		cmocka_unit_test(test_unexpected_reply),
		cmocka_unit_test(test_data_header_limit),
		cmocka_unit_test(test_data_refused),
		cmocka_unit_test(test_data_before_354),
		cmocka_unit_test(test_data_smuggling),
		cmocka_unit_test(test_bdat_zero_and_bad),
		cmocka_unit_test(test_long_lines_bounded),
		cmocka_unit_test(test_eof_partial),
		cmocka_unit_test(test_starttls_opaque),
		cmocka_unit_test(test_pipeline_flood),
		cmocka_unit_test(test_pipeline_overflow),
		cmocka_unit_test(test_idle_holds_nothing),
		cmocka_unit_test(test_pipeline_deeper_than_ring),
		cmocka_unit_test(test_pipeline_fifo_grows),
		cmocka_unit_test(test_auth_mechs_bounded),
		cmocka_unit_test(test_rfc2920_pipelining),
		cmocka_unit_test(test_pipelined_reply_names_command),
		cmocka_unit_test(test_rfc2920_failures),
		cmocka_unit_test(test_rfc3030_bdat),
		cmocka_unit_test(test_rfc4954_examples),
		cmocka_unit_test(test_smuggling_shapes),
		cmocka_unit_test(test_data_refused_after_data),
		cmocka_unit_test(test_caps_summary),
		cmocka_unit_test(test_verdicts),
		cmocka_unit_test(test_odd_byte_counts),
		cmocka_unit_test(test_random_soup),
		cmocka_unit_test(test_auth_whitespace),
		cmocka_unit_test(test_auth_masked_past_verb),
		cmocka_unit_test(test_auth_refusal_text_kept),
		cmocka_unit_test(test_bdat_whitespace),
		cmocka_unit_test(test_auth_wary),
		cmocka_unit_test(test_auth_success_not_masked),
		cmocka_unit_test(test_data_refused_body),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
