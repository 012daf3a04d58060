/* test_txlimit.c - repeated lines and the per-session budget of records. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "txlimit.h"

static const char CMD[] = "command", REPLY[] = "reply";

static int
line(struct txlimit *l, enum txlimit_side side, const char *kind, int code,
    const char *text, unsigned long *n, const char **prev)
{
	return txlimit_repeat(l, side, kind, code, text, strlen(text), n, prev);
}

/* The first few of a run are written, the rest counted and reported once. */
static void
test_repeats_counted(void **state)
{
	struct txlimit l;
	unsigned long n;
	const char *prev;
	int i;

	txlimit_init(&l, 0);
	for (i = 0; i < TXLIMIT_SHOW_REPEATS; i++) {
		assert_int_equal(line(&l, TXLIMIT_CLIENT, CMD, 0, "NOOP", &n, &prev), 0);
		assert_int_equal(n, 0);
	}
	for (i = 0; i < 1000; i++)
		assert_int_equal(line(&l, TXLIMIT_CLIENT, CMD, 0, "NOOP", &n, &prev), 1);
	assert_int_equal(line(&l, TXLIMIT_CLIENT, CMD, 0, "QUIT", &n, &prev), 0);
	assert_int_equal(n, 1000);
	assert_string_equal(prev, "NOOP");
	/* Reported once: the next different line has nothing to report. */
	assert_int_equal(line(&l, TXLIMIT_CLIENT, CMD, 0, "RSET", &n, &prev), 0);
	assert_int_equal(n, 0);
	txlimit_free(&l);
}

/* Each side has its own previous line: interleaved replies still collapse. */
static void
test_sides_apart(void **state)
{
	struct txlimit l;
	unsigned long n;
	const char *prev;
	int i, counted = 0;

	txlimit_init(&l, 0);
	for (i = 0; i < 100; i++) {
		counted += line(&l, TXLIMIT_CLIENT, CMD, 0, "NOOP", &n, &prev);
		counted += line(&l, TXLIMIT_SERVER, REPLY, 250, "250 2.0.0 Ok", &n,
		    &prev);
	}
	assert_int_equal(counted, 2 * (100 - TXLIMIT_SHOW_REPEATS));
	assert_int_equal(txlimit_take_repeats(&l, TXLIMIT_SERVER, &prev),
	    100 - TXLIMIT_SHOW_REPEATS);
	assert_string_equal(prev, "250 2.0.0 Ok");
	assert_int_equal(txlimit_take_repeats(&l, TXLIMIT_CLIENT, &prev),
	    100 - TXLIMIT_SHOW_REPEATS);
	assert_int_equal(txlimit_take_repeats(&l, TXLIMIT_CLIENT, &prev), 0);
	assert_int_equal(txlimit_take_repeats(&l, TXLIMIT_NOTE, &prev), 0);
	txlimit_free(&l);
}

/* Only the same kind, code and bytes repeat; long lines are never counted. */
static void
test_what_repeats(void **state)
{
	struct txlimit l;
	unsigned long n;
	const char *prev;
	char longline[TXLIMIT_TEXT_MAX + 2];
	int i;

	txlimit_init(&l, 0);
	for (i = 0; i < 10; i++) {
		assert_int_equal(line(&l, TXLIMIT_SERVER, REPLY, i % 2 ? 250 : 251,
		    "2xx ok", &n, &prev), 0);
		assert_int_equal(line(&l, TXLIMIT_NOTE, i % 2 ? CMD : REPLY, 0,
		    "same text", &n, &prev), 0);
		assert_int_equal(line(&l, TXLIMIT_CLIENT, CMD, 0,
		    i % 2 ? "NOOP a" : "NOOP b", &n, &prev), 0);
	}
	memset(longline, 'x', sizeof longline - 1);
	longline[sizeof longline - 1] = '\0';
	for (i = 0; i < 10; i++)
		assert_int_equal(line(&l, TXLIMIT_CLIENT, CMD, 0, longline, &n,
		    &prev), 0);
	/* A line that differs only after a NUL is another line. */
	for (i = 0; i < 10; i++)
		assert_int_equal(txlimit_repeat(&l, TXLIMIT_SERVER, REPLY, 250,
		    i % 2 ? "250\0a" : "250\0b", 5, &n, &prev), 0);
	txlimit_free(&l);
}

static void
test_budget(void **state)
{
	struct txlimit l;
	int i;

	txlimit_init(&l, 100);
	for (i = 0; i < 100; i++)
		assert_int_equal(txlimit_admit(&l), 1);
	for (i = 0; i < 50; i++)
		assert_int_equal(txlimit_admit(&l), 0);
	assert_int_equal(l.written, 100);
	assert_int_equal(l.unwritten, 50);
	txlimit_init(&l, 0);
	for (i = 0; i < 100000; i++)
		assert_int_equal(txlimit_admit(&l), 1);
	txlimit_free(&l);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_repeats_counted),
		cmocka_unit_test(test_sides_apart),
		cmocka_unit_test(test_what_repeats),
		cmocka_unit_test(test_budget),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
