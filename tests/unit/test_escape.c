/* test_escape.c - nothing a peer sends may forge a line or reach a terminal raw. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "escape.h"
#include "strbuf.h"

static void
check(const char *in, size_t len, const char *want)
{
	struct strbuf sb;

	strbuf_init(&sb, 0);
	escape_append(&sb, in, len);
	assert_string_equal(strbuf_str(&sb), want);
	assert_int_equal(sb.len, strlen(want));
	strbuf_free(&sb);
}

static void
test_plain_ascii(void **state)
{
	check("EHLO client.example", 19, "EHLO client.example");
}

static void
test_controls(void **state)
{
	check("a\r\nb\tc", 6, "a\\r\\nb\\tc");
	check("\x1b[2J", 4, "\\x1b[2J");
	check("x\0y", 3, "x\\x00y");
	check("\x7f", 1, "\\x7f");
	check("back\\slash", 10, "back\\\\slash");
}

static void
test_utf8(void **state)
{
	/* Well-formed UTF-8 is kept as it is. */
	check("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa7", 14,
	    "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa7");
	/* Invalid: lone continuation, truncated sequence, overlong, surrogate. */
	check("\x80", 1, "\\x80");
	check("\xc3", 1, "\\xc3");
	check("\xc0\xaf", 2, "\\xc0\\xaf");
	check("\xed\xa0\x80", 3, "\\xed\\xa0\\x80");
	check("\xf4\x90\x80\x80", 4, "\\xf4\\x90\\x80\\x80");
}

static void
test_deceptive_code_points(void **state)
{
	/* U+202E RIGHT-TO-LEFT OVERRIDE and C1 CSI (U+009B). */
	check("\xe2\x80\xae", 3, "\\xe2\\x80\\xae");
	check("\xc2\x9b", 2, "\\xc2\\x9b");
	check("\xe2\x80\xa8", 3, "\\xe2\\x80\\xa8");
}

/*
 * The reference, written from Unicode's own lists (DerivedCoreProperties:
 * Default_Ignorable_Code_Point; PropList: Bidi_Control) rather than from
 * escape.c: C1, the separators, every bidi and invisible code point.
 */
static const uint32_t hidden_ranges[][2] = {
	{ 0x0080, 0x009f },	/* C1 */
	{ 0x00ad, 0x00ad }, { 0x034f, 0x034f },
	{ 0x061c, 0x061c },	/* ALM: Bidi_Control */
	{ 0x115f, 0x1160 }, { 0x17b4, 0x17b5 }, { 0x180b, 0x180f },
	{ 0x200b, 0x200f },	/* ZWSP, ZWNJ, ZWJ, LRM, RLM */
	{ 0x2028, 0x2029 },	/* line and paragraph separators */
	{ 0x202a, 0x202e },	/* LRE RLE PDF LRO RLO */
	{ 0x2060, 0x206f },	/* WJ, invisible operators, LRI RLI FSI PDI */
	{ 0x3164, 0x3164 }, { 0xfe00, 0xfe0f }, { 0xfeff, 0xfeff },
	{ 0xffa0, 0xffa0 },
	{ 0xfff0, 0xfffb },	/* + interlinear annotation controls */
	{ 0x1bca0, 0x1bca3 }, { 0x1d173, 0x1d17a }, { 0xe0000, 0xe0fff },
};

static int
ref_hidden(uint32_t c)
{
	size_t i;

	for (i = 0; i < sizeof hidden_ranges / sizeof hidden_ranges[0]; i++)
		if (c >= hidden_ranges[i][0] && c <= hidden_ranges[i][1])
			return 1;
	return 0;
}

static size_t
utf8_encode(uint32_t c, unsigned char *out)
{
	if (c < 0x80) {
		out[0] = (unsigned char)c;
		return 1;
	}
	if (c < 0x800) {
		out[0] = (unsigned char)(0xc0 | c >> 6);
		out[1] = (unsigned char)(0x80 | (c & 0x3f));
		return 2;
	}
	if (c < 0x10000) {
		out[0] = (unsigned char)(0xe0 | c >> 12);
		out[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3f));
		out[2] = (unsigned char)(0x80 | (c & 0x3f));
		return 3;
	}
	out[0] = (unsigned char)(0xf0 | c >> 18);
	out[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3f));
	out[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3f));
	out[3] = (unsigned char)(0x80 | (c & 0x3f));
	return 4;
}

/* "\\xNN" for each byte. */
static void
hex_form(const unsigned char *b, size_t n, char *out)
{
	size_t i;

	for (i = 0; i < n; i++)
		sprintf(out + 4 * i, "\\x%02x", b[i]);
}

static void
test_every_control_escaped(void **state)
{
	unsigned char in[3];
	char want[16];
	unsigned c;

	/* Every C0 byte and DEL, between two letters. */
	for (c = 0; c <= 0x7f; c++) {
		if (c >= 0x20 && c < 0x7f)
			continue;
		in[0] = 'a';
		in[1] = (unsigned char)c;
		in[2] = 'b';
		if (c == '\r' || c == '\n' || c == '\t')
			snprintf(want, sizeof want, "a\\%cb",
			    c == '\r' ? 'r' : c == '\n' ? 'n' : 't');
		else
			snprintf(want, sizeof want, "a\\x%02xb", c);
		check((const char *)in, 3, want);
	}
	/* Every C1 control as a raw byte (invalid UTF-8 on its own). */
	for (c = 0x80; c <= 0x9f; c++) {
		in[0] = (unsigned char)c;
		snprintf(want, sizeof want, "\\x%02x", c);
		check((const char *)in, 1, want);
	}
}

static void
test_every_hidden_code_point_escaped(void **state)
{
	unsigned char in[8];
	char want[40];
	size_t i, n;
	uint32_t c;

	for (i = 0; i < sizeof hidden_ranges / sizeof hidden_ranges[0]; i++)
		for (c = hidden_ranges[i][0]; c <= hidden_ranges[i][1]; c++) {
			n = utf8_encode(c, in);
			hex_form(in, n, want);
			check((const char *)in, n, want);
			assert_true(escape_is_hidden(c));
		}
	/* The ones the review named, spelt out. */
	check("\xe2\x80\x8e", 3, "\\xe2\\x80\\x8e");		/* LRM */
	check("\xe2\x80\x8f", 3, "\\xe2\\x80\\x8f");		/* RLM */
	check("\xd8\x9c", 2, "\\xd8\\x9c");			/* ALM */
	check("\xe2\x81\xa4", 3, "\\xe2\\x81\\xa4");		/* U+2064 */
	check("\xf3\xa0\x80\x81", 4, "\\xf3\\xa0\\x80\\x81");	/* TAG */
}

/* Everything else that is valid UTF-8 stays readable, byte for byte. */
static void
test_every_other_code_point_kept(void **state)
{
	struct strbuf sb;
	unsigned char in[4];
	size_t n;
	uint32_t c;

	strbuf_init(&sb, 0);
	for (c = 0x20; c <= 0x10ffff; c++) {
		if (c == 0x7f || c == '\\' || (c >= 0xd800 && c <= 0xdfff) ||
		    ref_hidden(c))
			continue;
		n = utf8_encode(c, in);
		strbuf_reset(&sb);
		escape_append(&sb, in, n);
		if (sb.len != n || memcmp(sb.buf, in, n) != 0)
			fail_msg("U+%04X was changed to \"%s\"", (unsigned)c,
			    strbuf_str(&sb));
		assert_int_equal(escape_is_hidden(c), 0);
	}
	strbuf_free(&sb);
	check("Contrase\xc3\xb1" "a:", 12, "Contrase\xc3\xb1" "a:");
	check("\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d", 8,
	    "\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d");		/* Hebrew */
}

/* Text escaped as it should be passes the guard unchanged. */
static void
test_guard_keeps_escaped_text(void **state)
{
	struct strbuf sb, esc;
	unsigned char all[256];
	size_t i;

	for (i = 0; i < 256; i++)
		all[i] = (unsigned char)i;
	strbuf_init(&esc, 0);
	escape_append(&esc, all, sizeof all);
	escape_append(&esc, "Contrase\xc3\xb1" "a \\x1b \xe2\x80\xae", 19);
	strbuf_init(&sb, 0);
	assert_int_equal(escape_guard(&sb, esc.buf, esc.len), 0);
	assert_int_equal(sb.len, esc.len);
	assert_memory_equal(sb.buf, esc.buf, esc.len);
	strbuf_free(&sb);
	strbuf_free(&esc);
}

/* Raw bytes reaching the guard come out as "\\xNN", '\\' left alone. */
static void
test_guard_escapes_raw(void **state)
{
	struct strbuf sb;
	unsigned char in[8];
	char want[40];
	size_t i, n;
	uint32_t c;

	strbuf_init(&sb, 0);
	for (c = 0; c < 0x20; c++) {
		strbuf_reset(&sb);
		in[0] = (unsigned char)c;
		assert_int_equal(escape_guard(&sb, in, 1), 1);
		hex_form(in, 1, want);
		assert_string_equal(strbuf_str(&sb), want);
	}
	for (i = 0; i < sizeof hidden_ranges / sizeof hidden_ranges[0]; i++)
		for (c = hidden_ranges[i][0]; c <= hidden_ranges[i][1]; c++) {
			strbuf_reset(&sb);
			n = utf8_encode(c, in);
			assert_int_equal(escape_guard(&sb, in, n), n);
			hex_form(in, n, want);
			assert_string_equal(strbuf_str(&sb), want);
		}
	strbuf_reset(&sb);
	assert_int_equal(escape_guard(&sb, "a\\b\x7f\xff", 5), 2);
	assert_string_equal(strbuf_str(&sb), "a\\b\\x7f\\xff");
	strbuf_free(&sb);
}

/* A cut of escaped text ends between units, at every limit. */
static void
test_cut_never_splits(void **state)
{
	struct strbuf sb;
	const char *raw = "ab\x1b\\\xc3\xa9\xe2\x82\xac\xf0\x9f\x93\xa7\x7f"
	    "\xe2\x80\xaez";
	size_t max, cut, at, u;

	strbuf_init(&sb, 0);
	escape_append(&sb, raw, strlen(raw));
	for (max = 0; max <= sb.len; max++) {
		cut = escape_cut(sb.buf, sb.len, max);
		assert_true(cut <= max);
		/* cut falls on a unit boundary, and the next unit is too long. */
		for (at = 0; at < cut; at += u)
			u = escape_unit(sb.buf + at, sb.len - at);
		assert_int_equal(at, cut);
		if (cut < sb.len)
			assert_true(cut + escape_unit(sb.buf + cut,
			    sb.len - cut) > max);
	}
	assert_int_equal(escape_cut(sb.buf, sb.len, sb.len + 5), sb.len);
	/* "\\x1b" and "\\\\" are each one unit. */
	assert_int_equal(escape_cut("a\\x1bc", 6, 4), 1);
	assert_int_equal(escape_cut("a\\\\c", 4, 2), 1);
	strbuf_free(&sb);
}

static void
test_max(void **state)
{
	struct strbuf sb;

	strbuf_init(&sb, 0);
	escape_append_max(&sb, "0123456789", 10, 4);
	assert_string_equal(strbuf_str(&sb), "0123 [+6 bytes]");
	strbuf_reset(&sb);
	escape_append_max(&sb, "0123", 4, 4);
	assert_string_equal(strbuf_str(&sb), "0123");
	strbuf_free(&sb);
}

static void
test_no_raw_control_in_any_byte(void **state)
{
	struct strbuf sb;
	unsigned char all[256];
	size_t i;

	for (i = 0; i < 256; i++)
		all[i] = (unsigned char)i;
	strbuf_init(&sb, 0);
	escape_append(&sb, all, sizeof all);
	for (i = 0; i < sb.len; i++) {
		unsigned char c = (unsigned char)sb.buf[i];

		assert_true(c >= 0x20 && c != 0x7f);
	}
	strbuf_free(&sb);
}

static void
test_strbuf_cap(void **state)
{
	struct strbuf sb;

	strbuf_init(&sb, 8);
	strbuf_adds(&sb, "0123456789");
	assert_int_equal(sb.len, 8);
	assert_int_equal(sb.dropped, 2);
	assert_string_equal(strbuf_str(&sb), "01234567");
	strbuf_printf(&sb, "%d", 42);
	assert_int_equal(sb.dropped, 4);
	strbuf_free(&sb);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_ascii),
		cmocka_unit_test(test_controls),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_deceptive_code_points),
		cmocka_unit_test(test_every_control_escaped),
		cmocka_unit_test(test_every_hidden_code_point_escaped),
		cmocka_unit_test(test_every_other_code_point_kept),
		cmocka_unit_test(test_guard_keeps_escaped_text),
		cmocka_unit_test(test_guard_escapes_raw),
		cmocka_unit_test(test_cut_never_splits),
		cmocka_unit_test(test_max),
		cmocka_unit_test(test_no_raw_control_in_any_byte),
		cmocka_unit_test(test_strbuf_cap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
