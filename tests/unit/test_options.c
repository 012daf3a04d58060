/* test_options.c - the command line: defaults, every flag, errors that name the flag. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "options.h"

static enum options_result
parse(struct options *o, char **cause, ...)
{
	char *argv[32];
	int argc = 0;
	va_list ap;

	argv[argc++] = (char *)"smtptap";
	va_start(ap, cause);
	while ((argv[argc] = va_arg(ap, char *)) != NULL)
		argc++;
	va_end(ap);
	options_defaults(o);
	*cause = NULL;
	return options_parse(o, argc, argv, cause);
}

static void
test_defaults(void **state)
{
	struct options o;
	char *cause;

	assert_int_equal(parse(&o, &cause, "smtp.example.com", NULL), OPTIONS_RUN);
	assert_string_equal(o.upstream.host, "smtp.example.com");
	assert_int_equal(o.upstream.portnum, 587);
	assert_string_equal(o.listen.host, "127.0.0.1");
	assert_int_equal(o.listen.portnum, 2525);
	assert_int_equal(o.tls, TLS_MODE_STARTTLS);
	assert_true(o.verify);
	assert_null(o.log);
	assert_false(o.once);
	options_free(&o);
}

static void
test_port_465_means_implicit(void **state)
{
	struct options o;
	char *cause;

	assert_int_equal(parse(&o, &cause, "smtp.example.com:465", NULL),
	    OPTIONS_RUN);
	assert_int_equal(o.tls, TLS_MODE_IMPLICIT);
	options_free(&o);
	assert_int_equal(parse(&o, &cause, "--tls", "starttls",
	    "smtp.example.com:465", NULL), OPTIONS_RUN);
	assert_int_equal(o.tls, TLS_MODE_STARTTLS);
	options_free(&o);
}

static void
test_all_flags(void **state)
{
	struct options o;
	char *cause;

	assert_int_equal(parse(&o, &cause, "-l", "[::1]:2600", "-u", "mx:25",
	    "--tls", "none", "--ca-file", "/ca.pem", "--ca-path", "/certs",
	    "--no-verify", "--sni", "mail.example", "--ehlo", "me.example",
	    "-o", "-", "--once", "--connect-timeout", "1.5",
	    "--greeting-timeout", "2", "--tls-timeout", "3",
	    "--idle-timeout", "4", "--resolv-conf", "/r.conf", NULL), OPTIONS_RUN);
	assert_string_equal(o.listen.host, "::1");
	assert_int_equal(o.listen.portnum, 2600);
	assert_string_equal(o.upstream.host, "mx");
	assert_int_equal(o.upstream.portnum, 25);
	assert_int_equal(o.tls, TLS_MODE_NONE);
	assert_string_equal(o.ca_file, "/ca.pem");
	assert_string_equal(o.ca_path, "/certs");
	assert_false(o.verify);
	assert_string_equal(o.sni, "mail.example");
	assert_string_equal(o.ehlo, "me.example");
	assert_string_equal(o.log, "-");
	assert_true(o.once);
	assert_true(o.connect_timeout == 1.5);
	assert_true(o.greeting_timeout == 2);
	assert_true(o.tls_timeout == 3);
	assert_true(o.idle_timeout == 4);
	assert_string_equal(o.resolv_conf, "/r.conf");
	options_free(&o);
}

static void
usage(const char *flagword, ...)
{
	struct options o;
	char *argv[16], *cause = NULL;
	int argc = 0;
	va_list ap;

	argv[argc++] = (char *)"smtptap";
	va_start(ap, flagword);
	while ((argv[argc] = va_arg(ap, char *)) != NULL)
		argc++;
	va_end(ap);
	options_defaults(&o);
	assert_int_equal(options_parse(&o, argc, argv, &cause), OPTIONS_USAGE);
	assert_non_null(cause);
	if (strstr(cause, flagword) == NULL)
		fail_msg("\"%s\" does not name %s", cause, flagword);
	free(cause);
	options_free(&o);
}

static void
test_usage_errors_name_the_flag(void **state)
{
	usage("--tls", "--tls", "maybe", "mx", NULL);
	usage("--connect-timeout", "--connect-timeout", "0", "mx", NULL);
	usage("--idle-timeout", "--idle-timeout", "soon", "mx", NULL);
	usage("-l/--listen", "-l", "mx.example:25", "mx", NULL);
	usage("--bogus", "--bogus", "mx", NULL);
	usage("-x", "-x", "mx", NULL);
	usage("--ca-file", "mx", "--ca-file", NULL);
	usage("HOST[:PORT]", "mx:99999", NULL);
	usage("upstream", NULL);
	usage("given twice", "-u", "a", "b", NULL);
	usage("--no-verify: takes no argument", "--no-verify=yes", "mx", NULL);
	usage("--ehlo", "--ehlo", "two words", "mx", NULL);
}

static void
test_new_flags(void **state)
{
	struct options o;
	char *cause;

	assert_int_equal(parse(&o, &cause, "--max-sessions", "5",
	    "--max-sessions-total", "9", "--session-timeout", "60",
	    "--user", "nobody", "--format", "json", "--shutdown-grace", "0",
	    "-l", "0.0.0.0:2525", "--allow", "10.0.0.0/8,::1 192.0.2.1",
	    "mx", NULL), OPTIONS_RUN);
	assert_int_equal(o.max_sessions, 5);
	assert_int_equal(o.max_sessions_total, 9);
	assert_true(o.session_timeout == 60);
	assert_string_equal(o.user, "nobody");
	assert_int_equal(o.format, TX_FORMAT_JSON);
	assert_true(o.shutdown_grace == 0);
	assert_int_equal(o.nallow, 3);
	options_free(&o);
}

static void
test_config_mode(void **state)
{
	struct options o;
	char *cause;

	assert_int_equal(parse(&o, &cause, "-c", "/etc/x.conf", "-t", "--once",
	    NULL), OPTIONS_RUN);
	assert_string_equal(o.config, "/etc/x.conf");
	assert_true(o.check_config);
	assert_true(o.once);
	options_free(&o);
	usage("HOST[:PORT]: not allowed with -c", "-c", "x.conf", "mx", NULL);
	usage("-l/--listen: not allowed with -c", "-l", "1", "-c", "x.conf", NULL);
	usage("--ca-file: not allowed with -c", "-c", "x", "--ca-file", "y",
	    NULL);
	usage("-t/--check-config: needs -c", "-t", "mx", NULL);
	usage("not a loopback address", "-l", "0.0.0.0:25", "mx", NULL);
	usage("--allow", "--allow", "10.0.0.1/8", "mx", NULL);
	usage("--format", "--format", "xml", "mx", NULL);
	usage("--max-sessions", "--max-sessions", "0", "mx", NULL);
}

/* One table: the config key is the flag's name with '_' for '-'. */
static void
test_keys_follow_flags(void **state)
{
	const struct option_def *d;
	char want[64];
	size_t i, j;

	for (i = 0; i < option_ndefs; i++) {
		d = &option_defs[i];
		if (d->scope == OPTION_CLI) {
			assert_null(d->key);
			continue;
		}
		assert_non_null(d->key);
		assert_non_null(d->defval);
		assert_non_null(d->set);
		if (strcmp(d->name, "no-verify") == 0) {
			assert_string_equal(d->key, "verify");
			continue;
		}
		for (j = 0; d->name[j] != '\0'; j++)
			want[j] = d->name[j] == '-' ? '_' : d->name[j];
		want[j] = '\0';
		assert_string_equal(d->key, want);
		assert_ptr_equal(options_find_key(d->key), d);
	}
}

static void
test_help_lists_every_flag(void **state)
{
	static const char *flags[] = {
		"--listen", "--upstream", "--tls", "--ca-file", "--ca-path",
		"--no-verify", "--sni", "--ehlo", "--log", "--once",
		"--connect-timeout", "--greeting-timeout", "--tls-timeout",
		"--idle-timeout", "--resolv-conf", "--version", "--help",
		"--config", "--check-config", "--max-sessions",
		"--max-sessions-total", "--session-timeout", "--allow", "--user",
		"--format", "--shutdown-grace",
	};
	char buf[8192];
	FILE *fp = fmemopen(buf, sizeof buf, "w");
	size_t i;

	assert_non_null(fp);
	options_help(fp);
	fclose(fp);
	for (i = 0; i < sizeof flags / sizeof flags[0]; i++)
		if (strstr(buf, flags[i]) == NULL)
			fail_msg("--help does not mention %s", flags[i]);
}

static void
test_help_and_version(void **state)
{
	struct options o;
	char *cause;

	assert_int_equal(parse(&o, &cause, "-h", NULL), OPTIONS_HELP);
	options_free(&o);
	assert_int_equal(parse(&o, &cause, "--version", NULL), OPTIONS_VERSION);
	options_free(&o);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_port_465_means_implicit),
		cmocka_unit_test(test_all_flags),
		cmocka_unit_test(test_usage_errors_name_the_flag),
		cmocka_unit_test(test_new_flags),
		cmocka_unit_test(test_config_mode),
		cmocka_unit_test(test_keys_follow_flags),
		cmocka_unit_test(test_help_lists_every_flag),
		cmocka_unit_test(test_help_and_version),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
