/* test_hostport.c - the address forms users type. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hostport.h"

static void
ok(const char *in, const char *host, const char *port)
{
	struct hostport hp;
	char *cause = NULL;

	assert_int_equal(hostport_parse(in, "587", &hp, &cause), 0);
	assert_null(cause);
	assert_string_equal(hp.host, host);
	assert_string_equal(hp.port, port);
	assert_int_equal(hp.portnum, atoi(port));
}

static void
bad(const char *in, const char *why)
{
	struct hostport hp;
	char *cause = NULL;

	assert_int_equal(hostport_parse(in, "587", &hp, &cause), -1);
	assert_non_null(cause);
	assert_non_null(strstr(cause, why));
	free(cause);
}

static void
test_upstream_forms(void **state)
{
	ok("smtp.example.com", "smtp.example.com", "587");
	ok("smtp.example.com:465", "smtp.example.com", "465");
	ok("192.0.2.1:25", "192.0.2.1", "25");
	ok("[2001:db8::1]:465", "2001:db8::1", "465");
	ok("2001:db8::1", "2001:db8::1", "587");
	ok("::1", "::1", "587");
}

static void
test_upstream_errors(void **state)
{
	bad("host:0", "expected 1 to 65535");
	bad("host:65536", "expected 1 to 65535");
	bad("host:smtp", "expected a number");
	bad("host:", "expected a number");
	bad(":25", "missing host");
	bad("[::1", "missing ']'");
	bad("[mail.example]:25", "not an IPv6 address");
	bad("bad host:25", "invalid host name");
}

static void
test_listen_forms(void **state)
{
	struct hostport hp;
	char *cause = NULL, buf[80];

	assert_int_equal(hostport_parse_listen("2525", "127.0.0.1", &hp, &cause), 0);
	assert_string_equal(hostport_fmt(&hp, buf, sizeof buf), "127.0.0.1:2525");
	assert_int_equal(hostport_parse_listen("0", "127.0.0.1", &hp, &cause), 0);
	assert_int_equal(hp.portnum, 0);
	assert_int_equal(hostport_parse_listen("[::1]:2525", "127.0.0.1", &hp,
	    &cause), 0);
	assert_string_equal(hostport_fmt(&hp, buf, sizeof buf), "[::1]:2525");
	assert_int_equal(hostport_parse_listen("localhost:25", "127.0.0.1", &hp,
	    &cause), 0);
	assert_string_equal(hp.host, "127.0.0.1");
	assert_int_equal(hostport_parse_listen("mail.example:25", "127.0.0.1",
	    &hp, &cause), -1);
	assert_non_null(strstr(cause, "not an IP address"));
	free(cause);
	cause = NULL;
	assert_int_equal(hostport_parse_listen("127.0.0.1", "127.0.0.1", &hp,
	    &cause), -1);
	free(cause);
}

static void
test_is_ip(void **state)
{
	assert_true(hostport_is_ip("127.0.0.1"));
	assert_true(hostport_is_ip("::1"));
	assert_false(hostport_is_ip("localhost"));
	assert_false(hostport_is_ip("1.2.3"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_upstream_forms),
		cmocka_unit_test(test_upstream_errors),
		cmocka_unit_test(test_listen_forms),
		cmocka_unit_test(test_is_ip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
