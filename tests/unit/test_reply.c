/* test_reply.c - the strict reader for smtptap's own pre-TLS dialogue. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "reply.h"

static enum reply_status
feed(struct reply *r, const char *line)
{
	return reply_feed(r, line, strlen(line));
}

static void
test_single_line(void **state)
{
	struct reply r = { 0 };

	reply_init(&r);
	assert_int_equal(feed(&r, "220 mx.example ESMTP ready"), REPLY_DONE);
	assert_int_equal(r.code, 220);
	assert_string_equal(r.first, "220 mx.example ESMTP ready");
	reply_init(&r);
	assert_int_equal(feed(&r, "220"), REPLY_DONE);
	reply_free(&r);
}

static void
test_ehlo_capabilities(void **state)
{
	struct reply r = { 0 };

	reply_init(&r);
	assert_int_equal(feed(&r, "250-mx.example"), REPLY_MORE);
	assert_int_equal(feed(&r, "250-PIPELINING"), REPLY_MORE);
	assert_int_equal(feed(&r, "250-starttls"), REPLY_MORE);
	assert_int_equal(feed(&r, "250 8BITMIME"), REPLY_DONE);
	assert_int_equal(r.code, 250);
	assert_int_equal(r.lines, 4);
	assert_true(r.starttls);
	reply_free(&r);
}

static void
test_starttls_not_offered(void **state)
{
	struct reply r = { 0 };

	reply_init(&r);
	/* The greeting name and a look-alike keyword are not STARTTLS. */
	assert_int_equal(feed(&r, "250-STARTTLS"), REPLY_MORE);
	assert_int_equal(feed(&r, "250-STARTTLSX"), REPLY_MORE);
	assert_int_equal(feed(&r, "250 AUTH PLAIN"), REPLY_DONE);
	assert_false(r.starttls);
	reply_free(&r);
}

static void
test_malformed(void **state)
{
	static const char *bad[] = {
		"", "2", "22", "abc hello", "600 no", "199 no", "250x", "2500 x",
	};
	struct reply r = { 0 };
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		reply_init(&r);
		assert_int_equal(feed(&r, bad[i]), REPLY_ERROR);
		assert_true(strlen(r.error) > 0);
	}
	reply_init(&r);
	assert_int_equal(reply_feed(&r, "220 a\0b", 7), REPLY_ERROR);
	reply_init(&r);
	assert_int_equal(feed(&r, "250-one"), REPLY_MORE);
	assert_int_equal(feed(&r, "220 two"), REPLY_ERROR);
	assert_non_null(strstr(r.error, "changes its code"));
	reply_free(&r);
}

static void
test_limits(void **state)
{
	struct reply r = { 0 };
	char line[REPLY_MAX_LINE + 2];
	int i;

	reply_init(&r);
	for (i = 0; i < REPLY_MAX_LINES; i++)
		assert_int_equal(feed(&r, "250-x"), REPLY_MORE);
	assert_int_equal(feed(&r, "250-x"), REPLY_ERROR);

	memset(line, 'a', sizeof line);
	memcpy(line, "250 ", 4);
	reply_init(&r);
	assert_int_equal(reply_feed(&r, line, sizeof line), REPLY_ERROR);
	assert_int_equal(reply_feed(&r, line, REPLY_MAX_LINE), REPLY_DONE);
	/* The longest line is accepted; for messages its start is kept. */
	assert_memory_equal(r.first, line, REPLY_SHOW_MAX);
	assert_string_equal(r.first + REPLY_SHOW_MAX, " [cut: 2048 bytes in all]");
	reply_free(&r);
}

/*
 * The first line is allocated: each new reply replaces it, a malformed
 * first line leaves none, and reply_free() may come before reply_init().
 */
static void
test_first_line_lifetime(void **state)
{
	struct reply r = { 0 };

	reply_init(&r);
	assert_null(r.first);
	assert_int_equal(feed(&r, "220 one"), REPLY_DONE);
	assert_string_equal(r.first, "220 one");
	reply_init(&r);
	assert_null(r.first);
	assert_int_equal(feed(&r, "250-two"), REPLY_MORE);
	assert_int_equal(feed(&r, "250 three"), REPLY_DONE);
	assert_string_equal(r.first, "250-two");
	reply_free(&r);
	assert_null(r.first);
	reply_free(&r);
	reply_init(&r);
	assert_int_equal(feed(&r, "2x0 bad"), REPLY_ERROR);
	assert_null(r.first);
	assert_non_null(r.error);
	reply_init(&r);
	assert_null(r.error);
	reply_free(&r);
}

/*
 * A refusal's first line comes from whoever is on the path before TLS and is
 * shown in the transcript and in the client's 421: every control byte, DEL,
 * C1 control and bidirectional override in it is escaped.
 */
static void
test_first_line_escaped(void **state)
{
	static const char *const hostile[] = {
		"\x1b[2J\x1b]0;owned\x07", "\x7f", "\xc2\x9b[31m",
		"\xe2\x80\xae", "\xe2\x80\xaa", "\xe2\x81\xa6", "\\x1b",
		"\xff\xfe", "\xc0\xaf", "\x0b\x0c\x08\x09",
	};
	struct reply r = { 0 };
	char line[64];
	size_t i, k;
	int c;

	for (c = 1; c < 0x20; c++) {
		if (c == '\r' || c == '\n')
			continue;
		snprintf(line, sizeof line, "454 4.7.0 no%cway", c);
		reply_init(&r);
		assert_int_equal(feed(&r, line), REPLY_DONE);
		assert_int_equal(r.code, 454);
		for (k = 0; r.first[k] != '\0'; k++)
			assert_true((unsigned char)r.first[k] >= 0x20);
		assert_non_null(strstr(r.first, "no\\"));
	}
	for (i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
		snprintf(line, sizeof line, "554 5.7.1 %s end", hostile[i]);
		reply_init(&r);
		assert_int_equal(feed(&r, line), REPLY_DONE);
		for (k = 0; r.first[k] != '\0'; k++) {
			unsigned char b = (unsigned char)r.first[k];

			assert_true(b >= 0x20 && b < 0x7f);
		}
		assert_non_null(strstr(r.first, " end"));
	}
	reply_free(&r);
}

/* A long first line is cut between escapes, never inside one. */
static void
test_first_line_cut_whole(void **state)
{
	struct reply r = { 0 };
	char line[REPLY_MAX_LINE];
	const char *cut, *p;
	size_t pad, n;

	for (pad = 0; pad < 8; pad++) {
		memset(line, 0x1b, sizeof line);
		memcpy(line, "550 ", 4);
		memset(line + 4, 'a', pad);
		n = 4 + pad + 200;
		reply_init(&r);
		assert_int_equal(reply_feed(&r, line, n), REPLY_DONE);
		cut = strstr(r.first, " [cut: ");
		assert_non_null(cut);
		assert_true((size_t)(cut - r.first) <= REPLY_SHOW_MAX);
		for (p = r.first + 4 + pad; p < cut; p += 4)
			assert_memory_equal(p, "\\x1b", 4);
		assert_ptr_equal(p, cut);
	}
	reply_free(&r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_single_line),
		cmocka_unit_test(test_ehlo_capabilities),
		cmocka_unit_test(test_starttls_not_offered),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_first_line_lifetime),
		cmocka_unit_test(test_first_line_escaped),
		cmocka_unit_test(test_first_line_cut_whole),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
