/* test_escape.c - nothing a peer sends may forge a line or reach a terminal raw. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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
		cmocka_unit_test(test_max),
		cmocka_unit_test(test_no_raw_control_in_any_byte),
		cmocka_unit_test(test_strbuf_cap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
