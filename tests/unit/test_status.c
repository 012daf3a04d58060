/*
 * test_status.c - reply code meanings: the registry names, the basic codes,
 * the reply-and-command rules and the parsing of "NNN X.Y.Z text".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "status.h"

static void
test_enhanced(void **state)
{
	static const struct {
		const char	*code;
		const char	*text;
	} tab[] = {
		{ "5.7.8", "authentication credentials invalid" },
		{ "5.7.0", "other or undefined security status" },
		{ "5.7.1", "delivery not authorized, message refused" },
		{ "5.7.11", "encryption required for requested authentication "
		    "mechanism" },
		{ "4.7.0", "other or undefined security status" },
		{ "5.5.2", "syntax error" },
		{ "5.1.1", "bad destination mailbox address" },
		{ "4.2.2", "mailbox full" },
		{ "5.2.2", "mailbox full" },
		{ "5.3.4", "message too big for system" },
		{ "4.4.2", "bad connection" },
		{ "5.1.10", "recipient address has null MX" },
		{ "5.5.6", "authentication exchange line is too long" },
		{ "5.6.10", "UTF-8 reply required (deprecated duplicate of "
		    "X.6.8)" },
		{ "5.7.30", "REQUIRETLS support required" },
		{ "5.0.0", "other undefined status" },
		{ "2.0.0", "success" },
		{ "2.1.5", "destination address valid" },
		{ "2.7.0", "success (security)" },
		{ "2.6.4", "conversion with loss performed" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof tab / sizeof tab[0]; i++) {
		if (status_enhanced(tab[i].code) == NULL)
			fail_msg("%s: no meaning", tab[i].code);
		assert_string_equal(status_enhanced(tab[i].code), tab[i].text);
	}
	/* Unregistered, wrong class, malformed. */
	assert_null(status_enhanced("5.7.31"));
	assert_null(status_enhanced("5.8.0"));
	assert_null(status_enhanced("3.0.0"));
	assert_null(status_enhanced("6.0.0"));
	assert_null(status_enhanced("5.7"));
	assert_null(status_enhanced("5.7.8."));
	assert_null(status_enhanced("55.7.8"));
	assert_null(status_enhanced("5.7.1000"));
	assert_null(status_enhanced("5..8"));
	assert_null(status_enhanced(""));
	assert_null(status_enhanced(NULL));
}

/* Every registry row from the issue: X.1.0-10, X.2.0-4, ... X.7.0-30. */
static void
test_enhanced_complete(void **state)
{
	static const unsigned int last[] = { 0, 10, 4, 6, 7, 6, 10, 30 };
	char code[16];
	unsigned int subject, detail;

	(void)state;
	for (subject = 0; subject < 8; subject++)
		for (detail = 0; detail <= last[subject]; detail++) {
			snprintf(code, sizeof code, "4.%u.%u", subject, detail);
			if (status_enhanced(code) == NULL)
				fail_msg("%s has no meaning", code);
		}
}

static void
test_basic(void **state)
{
	static const int codes[] = { 211, 214, 220, 221, 235, 250, 251, 252,
	    334, 354, 421, 450, 451, 452, 455, 500, 501, 502, 503, 504, 530,
	    534, 535, 538, 550, 551, 552, 553, 554, 555 };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof codes / sizeof codes[0]; i++)
		if (status_basic(codes[i]) == NULL)
			fail_msg("%d has no meaning", codes[i]);
	assert_string_equal(status_basic(421), "service not available, "
	    "closing transmission channel");
	assert_string_equal(status_basic(535), "authentication credentials "
	    "invalid");
	assert_null(status_basic(299));
	assert_null(status_basic(0));
	assert_null(status_basic(600));
}

static void
test_context(void **state)
{
	(void)state;
	assert_string_equal(status_context(530, "5.7.0", "MAIL"),
	    "must authenticate (or issue STARTTLS) first");
	assert_string_equal(status_context(554, "5.7.1", "RCPT"),
	    "relay access denied");
	assert_string_equal(status_context(535, "5.7.8", "AUTH"),
	    "authentication credentials invalid");
	assert_string_equal(status_context(250, "", "."), "message accepted");
	assert_string_equal(status_context(250, NULL, "BDAT LAST"),
	    "message accepted");
	/* A non-last chunk's 250 accepts nothing yet. */
	assert_null(status_context(250, "2.0.0", "BDAT"));
	assert_null(status_context(554, "5.7.1", "MAIL"));
	assert_null(status_context(554, "5.7.1", NULL));
	assert_null(status_context(530, "5.7.0", "EHLO"));

	/* status_explain: context, then enhanced, then basic for failures. */
	assert_string_equal(status_explain(554, "5.7.1", "RCPT"),
	    "relay access denied");
	assert_string_equal(status_explain(554, "5.7.1", "."),
	    "delivery not authorized, message refused");
	assert_string_equal(status_explain(451, "", "RCPT"),
	    "requested action aborted: local error in processing");
	assert_string_equal(status_explain(250, "2.1.5", "RCPT"),
	    "destination address valid");
	assert_null(status_explain(250, "", "RCPT"));
	assert_null(status_explain(354, NULL, "DATA"));
	/* An unregistered enhanced code falls back to the basic meaning. */
	assert_string_equal(status_explain(550, "5.9.9", "RCPT"),
	    "requested action not taken: mailbox unavailable");
}

static void
test_parse(void **state)
{
	static const struct {
		int		 code;
		const char	*text;
		const char	*enh;
	} tab[] = {
		{ 535, "535 5.7.8 Error: authentication failed", "5.7.8" },
		{ 250, "250-2.1.0 Ok", "2.1.0" },
		{ 250, "250 2.0.0", "2.0.0" },
		{ 550, "550 5.1.10 null MX", "5.1.10" },
		{ 550, "550 4.1.1 class differs", "" },
		{ 550, "550 5.1 short", "" },
		{ 550, "550 5.1.1x glued", "" },
		{ 550, "550 mailbox 5.1.1", "" },
		{ 550, "550", "" },
		{ 550, "550 5.999.999 x", "5.999.999" },
		{ 550, "550 5.1000.1 x", "" },
		{ 250, "250 2.0.0.0 x", "" },
	};
	char enh[STATUS_ENH_MAX];
	size_t i;
	int ok;

	(void)state;
	for (i = 0; i < sizeof tab / sizeof tab[0]; i++) {
		ok = status_parse(tab[i].code, tab[i].text,
		    strlen(tab[i].text), enh);
		assert_int_equal(ok, tab[i].enh[0] != '\0');
		if (strcmp(enh, tab[i].enh) != 0)
			fail_msg("\"%s\": \"%s\", want \"%s\"", tab[i].text,
			    enh, tab[i].enh);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_enhanced),
		cmocka_unit_test(test_enhanced_complete),
		cmocka_unit_test(test_basic),
		cmocka_unit_test(test_context),
		cmocka_unit_test(test_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
