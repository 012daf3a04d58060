/*
 * test_conf.c - the config file: inheritance, every kind of error with
 * file:line, all errors in one run, typo suggestions, secrets never echoed,
 * and the example file and man pages that must list every key and flag.
 */
#include <sys/socket.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conf.h"
#include "options.h"

static int
load(struct conf *c, const char *text)
{
	FILE *fp;
	int n;

	fp = fmemopen((void *)(uintptr_t)text, strlen(text), "r");
	assert_non_null(fp);
	n = conf_load_file(c, "t.conf", fp);
	fclose(fp);
	return n;
}

static char *
all_errors(const struct conf *c)
{
	static char buf[16384];
	size_t i, off = 0;

	buf[0] = '\0';
	for (i = 0; i < c->nerrors && off < sizeof buf; i++)
		off += (size_t)snprintf(buf + off, sizeof buf - off, "%s\n",
		    c->errors[i]);
	return buf;
}

/* The file has exactly one error, and it contains want. */
static void
one_error(const char *text, const char *want)
{
	struct conf c;

	if (load(&c, text) != 1)
		fail_msg("expected one error containing '%s', got %zu:\n%s",
		    want, c.nerrors, all_errors(&c));
	if (strstr(c.errors[0], want) == NULL)
		fail_msg("'%s' does not contain '%s'", c.errors[0], want);
	conf_free(&c);
}

static const struct conf_service *
service(const struct conf *c, const char *name)
{
	size_t i;

	for (i = 0; i < c->nservices; i++)
		if (strcmp(c->services[i].name, name) == 0)
			return &c->services[i];
	fail_msg("no service [%s]", name);
	abort();
}

static void
test_inheritance(void **state)
{
	struct conf c;
	const struct conf_service *a, *b;

	assert_int_equal(load(&c,
	    "# top\n"
	    "connect_timeout = 7\n"
	    "ca_file = /top.pem\n"
	    "verify = no\n"
	    "log = /var/log/t\n"
	    "max_sessions_total = 50\n"
	    "\n"
	    "[a]\n"
	    "listen = 127.0.0.1:2525\n"
	    "upstream = mx.example:465\n"
	    "\n"
	    "  [b]  ; indented header and a comment\n"
	    "    listen = 2526\n"
	    "    upstream = mx2.example   ; inline comment\n"
	    "    ca_file = /b.pem\n"
	    "    verify = yes\n"
	    "    allow = 127.0.0.0/8, ::1\n"
	    "    max_sessions = 3\n"), 0);
	assert_int_equal(c.nservices, 2);
	a = service(&c, "a");
	b = service(&c, "b");
	assert_int_equal(a->line, 8);
	assert_int_equal(a->opts.tls, TLS_MODE_IMPLICIT);	/* from port 465 */
	assert_true(a->opts.connect_timeout == 7);
	assert_string_equal(a->opts.ca_file, "/top.pem");
	assert_false(a->opts.verify);
	assert_int_equal(a->opts.max_sessions, 100);
	assert_int_equal(a->opts.max_sessions_total, 50);
	assert_int_equal(b->opts.tls, TLS_MODE_STARTTLS);
	assert_int_equal(b->opts.upstream.portnum, 587);
	assert_string_equal(b->opts.upstream.host, "mx2.example");
	assert_true(b->opts.connect_timeout == 7);
	assert_string_equal(b->opts.ca_file, "/b.pem");
	assert_true(b->opts.verify);
	assert_int_equal(b->opts.listen.portnum, 2526);
	assert_int_equal(b->opts.nallow, 2);
	assert_int_equal(b->opts.max_sessions, 3);
	assert_string_equal(c.global.log, "/var/log/t");
	/* Where each value came from, for later messages. */
	assert_int_equal(conf_line(&c, a, "ca_file"), 3);
	assert_int_equal(conf_line(&c, b, "ca_file"), 15);
	assert_int_equal(conf_line(&c, a, "sni"), 8);
	conf_free(&c);
}

static void
test_no_section_is_default(void **state)
{
	struct conf c;

	assert_int_equal(load(&c, "listen = 2600\nupstream = mx\n"), 0);
	assert_int_equal(c.nservices, 1);
	assert_string_equal(c.services[0].name, "default");
	assert_int_equal(c.services[0].opts.listen.portnum, 2600);
	conf_free(&c);
	one_error("# nothing\nconnect_timeout = 3\n", "no service");
}

static void
test_each_error_names_file_and_line(void **state)
{
	static const char svc[] = "[s]\nlisten = 2525\nupstream = mx\n";
	char text[1024];

	one_error("ca_fil = /x\n[s]\nlisten = 1\nupstream = mx\n",
	    "t.conf:1: unknown key \"ca_fil\" (did you mean \"ca_file\"?)");
	snprintf(text, sizeof text, "%stls = x\n", svc);
	one_error(text, "t.conf:4: [s] tls: expected starttls, implicit or "
	    "none, got \"x\"");
	snprintf(text, sizeof text, "%ssni = a\nsni = b\n", svc);
	one_error(text, "t.conf:5: [s] duplicate key \"sni\" (first set on "
	    "line 4)");
	snprintf(text, sizeof text, "%s%s", svc, svc);
	one_error(text, "t.conf:4: duplicate section [s] (first on line 1)");
	one_error("[s]\nlisten = 2525\n", "t.conf:1: [s] no upstream");
	one_error("[s]\nupstream = mx\n", "t.conf:1: [s] no listen address");
	one_error("[a]\nlisten = 127.0.0.1:25\nupstream = mx\n"
	    "[b]\nlisten = 127.0.0.1:25\nupstream = mx\n",
	    "t.conf:5: [b] listen 127.0.0.1:25 is already used by [a] (line 2)");
	one_error("[a]\nlisten = 0.0.0.0:25\nupstream = mx\nallow = ::1\n"
	    "[b]\nlisten = 127.0.0.1:25\nupstream = mx\n",
	    "already used by [a]");
	snprintf(text, sizeof text, "%suser = nobody\n", svc);
	one_error(text, "t.conf:4: [s] user: only allowed at the top");
	snprintf(text, sizeof text, "%sjust words\n", svc);
	one_error(text, "t.conf:4: [s] expected \"key = value\"");
	snprintf(text, sizeof text, "%slisten: 2\n", svc);
	one_error(text, "t.conf:4: [s] expected \"key = value\"");
	one_error("[s\nlisten = 1\nupstream = mx\n", "t.conf:1: section header");
	one_error("[a b]\nlisten = 1\nupstream = mx\n", "t.conf:1: bad service "
	    "name");
	one_error("[a] x\nlisten = 1\nupstream = mx\n", "t.conf:1: text after");
	one_error("[s]\nlisten = 0.0.0.0:2525\nupstream = mx\n",
	    "t.conf:2: [s] listen 0.0.0.0:2525 is not a loopback address");
	one_error("[s]\nlisten = [::]:2525\nupstream = mx\nallow = 10.0.0.1/8\n",
	    "t.conf:4: [s] allow: \"10.0.0.1/8\": address bits set");
	one_error("[s]\nlisten = localhost.example:25\nupstream = mx\n",
	    "t.conf:2: [s] listen: listen address");
	one_error("once = yes\n[s]\nlisten = 1\nupstream = mx\n",
	    "t.conf:1: \"once\" is a command-line option only (--once)");
	one_error("no_verify = 1\n[s]\nlisten = 1\nupstream = mx\n",
	    "\"verify = no\"");
	one_error("format = xml\n[s]\nlisten = 1\nupstream = mx\n",
	    "t.conf:1: format: expected text or json, got \"xml\"");
	one_error("max_sessions = 0\n[s]\nlisten = 1\nupstream = mx\n",
	    "t.conf:1: max_sessions: expected a number");
	one_error("[s]\nlisten = 1\nupstream = mx\nidle_timeout = -1\n",
	    "t.conf:4: [s] idle_timeout: expected seconds");
}

/* A valid non-loopback listener with its allow list. */
static void
test_allow_makes_any_address_fine(void **state)
{
	struct conf c;

	assert_int_equal(load(&c, "[s]\nlisten = 0.0.0.0:2525\nupstream = mx\n"
	    "allow = 192.0.2.0/24 2001:db8::/32\n"), 0);
	conf_free(&c);
}

static void
test_all_errors_in_one_run(void **state)
{
	static const char text[] =
	    "ca_fil = /x\n"				/* 1 */
	    "verify = maybe\n"				/* 2 */
	    "[gmail]\n"					/* 3 */
	    "listen = 127.0.0.1:2525\n"			/* 4 */
	    "upstream = smtp.gmail.com:465\n"		/* 5 */
	    "tls = x\n"					/* 6 */
	    "tls = implicit\n"				/* 7 */
	    "shutdown_grace = 3\n"			/* 8 */
	    "[gmail]\n"					/* 9 */
	    "idel_timeout = 3\n"			/* 10 */
	    "[nolisten]\n"				/* 11 */
	    "upstream = x\n"				/* 12 */
	    "[clash]\n"					/* 13 */
	    "listen = 127.0.0.1:2525\n"			/* 14 */
	    "upstream = y\n"				/* 15 */
	    "garbage\n";				/* 16 */
	static const char *want[] = {
	    "t.conf:1: ", "t.conf:2: ", "t.conf:6: ", "t.conf:7: ", "t.conf:8: ",
	    "t.conf:9: ", "t.conf:10: ", "t.conf:11: ", "t.conf:14: ",
	    "t.conf:16: ",
	};
	struct conf c;
	size_t i;

	assert_int_equal(load(&c, text), (int)(sizeof want / sizeof want[0]));
	for (i = 0; i < sizeof want / sizeof want[0]; i++)
		if (strncmp(c.errors[i], want[i], strlen(want[i])) != 0)
			fail_msg("error %zu is not on %s:\n%s", i, want[i],
			    all_errors(&c));
	assert_non_null(strstr(c.errors[6], "did you mean \"idle_timeout\""));
	conf_free(&c);
}

static void
test_typo_suggestions(void **state)
{
	static const struct {
		const char *typo, *key;
	} cases[] = {
		{ "ca_fil", "ca_file" }, { "upstrem", "upstream" },
		{ "lisetn", "listen" }, { "idle_timout", "idle_timeout" },
		{ "conect_timeout", "connect_timeout" }, { "Sni", "sni" },
		{ "max_session", "max_sessions" }, { "alow", "allow" },
		{ "usr", "user" }, { "formta", "format" },
	};
	struct conf c;
	char text[256], want[128];
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(text, sizeof text, "%s = 1\n[s]\nlisten = 1\n"
		    "upstream = mx\n", cases[i].typo);
		snprintf(want, sizeof want, "(did you mean \"%s\"?)", cases[i].key);
		one_error(text, want);
	}
	/* Nothing near: no suggestion. */
	assert_int_equal(load(&c, "frobnicate = 1\n[s]\nlisten = 1\n"
	    "upstream = mx\n"), 1);
	assert_string_equal(c.errors[0], "t.conf:1: unknown key \"frobnicate\"");
	conf_free(&c);
	assert_int_equal(conf_distance("ca_file", "ca_fiel"), 1);
	assert_int_equal(conf_distance("abc", "abc"), 0);
	assert_int_equal(conf_distance("", "abc"), 3);
	assert_int_equal(conf_distance("kitten", "sitting"), 3);
}

static void
test_secrets_not_echoed(void **state)
{
	struct conf c;
	char text[1024], longline[400];
	size_t i;

	memset(longline, 'S', sizeof longline);
	memcpy(longline, "ca_file = hunter2", 17);
	longline[sizeof longline - 1] = '\0';
	snprintf(text, sizeof text,
	    "password = hunter2\n"
	    "smtp_password hunter2\n"
	    "api_token = hunter2\n"
	    "Client_Secret: hunter2\n"
	    "%s\n"
	    "[s]\nlisten = 1\nupstream = mx\n", longline);
	assert_int_equal(load(&c, text), 5);
	for (i = 0; i < c.nerrors; i++)
		if (strstr(c.errors[i], "hunter2") != NULL ||
		    strstr(c.errors[i], "SSSS") != NULL)
			fail_msg("secret echoed: %s", c.errors[i]);
	conf_free(&c);
}

static void
test_long_line(void **state)
{
	struct conf c;
	char text[2048], path[600];

	memset(path, 'a', sizeof path);
	path[0] = '/';
	path[sizeof path - 1] = '\0';
	snprintf(text, sizeof text, "[s]\nlisten = 1\nca_file = %s\n"
	    "upstream = mx\ntls = bogus\n", path);
	assert_int_equal(load(&c, text), 2);
	assert_non_null(strstr(c.errors[0], "t.conf:3: [s] line too long"));
	/* The rest of the long line is not read as a line of its own. */
	assert_non_null(strstr(c.errors[1], "t.conf:5: [s] tls:"));
	conf_free(&c);

	/* Just within the limit. */
	memset(path, 'b', sizeof path);
	path[0] = '/';
	path[197 - strlen("ca_file = ")] = '\0';
	snprintf(text, sizeof text, "[s]\nlisten = 1\nupstream = mx\n"
	    "ca_file = %s\n", path);
	assert_int_equal(load(&c, text), 0);
	assert_int_equal(strlen(c.services[0].opts.ca_file), strlen(path));
	conf_free(&c);
}

/* A path that is no readable file: one error, with open()'s own reason. */
static void
unreadable(const char *path, const char *reason)
{
	struct conf c;
	char want[512];

	snprintf(want, sizeof want, "%s: %s", path, reason);
	if (conf_load(&c, path) != 1)
		fail_msg("%s: expected one error, got %zu:\n%s", path, c.nerrors,
		    all_errors(&c));
	if (strcmp(c.errors[0], want) != 0)
		fail_msg("got '%s', expected '%s'", c.errors[0], want);
	conf_free(&c);
}

static void
test_missing_file(void **state)
{
	unreadable("/nonexistent/smtptap.conf", "No such file or directory");
	unreadable("/", "Is a directory");
	unreadable("/dev/null/smtptap.conf", "Not a directory");
}

static void
test_cidr(void **state)
{
	struct cidr list[3];
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	char *cause = NULL;

	assert_int_equal(cidr_parse("10.0.0.0/8", &list[0], &cause), 0);
	assert_int_equal(cidr_parse("2001:db8::/32", &list[1], &cause), 0);
	assert_int_equal(cidr_parse("192.0.2.7", &list[2], &cause), 0);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	inet_pton(AF_INET, "10.200.3.4", &sin.sin_addr);
	assert_true(cidr_match(list, 3, (struct sockaddr *)&sin));
	inet_pton(AF_INET, "11.0.0.1", &sin.sin_addr);
	assert_false(cidr_match(list, 3, (struct sockaddr *)&sin));
	inet_pton(AF_INET, "192.0.2.7", &sin.sin_addr);
	assert_true(cidr_match(list, 3, (struct sockaddr *)&sin));
	inet_pton(AF_INET, "192.0.2.8", &sin.sin_addr);
	assert_false(cidr_match(list, 3, (struct sockaddr *)&sin));
	memset(&sin6, 0, sizeof sin6);
	sin6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "2001:db8:1::5", &sin6.sin6_addr);
	assert_true(cidr_match(list, 3, (struct sockaddr *)&sin6));
	inet_pton(AF_INET6, "2001:db9::5", &sin6.sin6_addr);
	assert_false(cidr_match(list, 3, (struct sockaddr *)&sin6));
	assert_int_equal(cidr_parse("10.0.0.0/33", &list[0], &cause), -1);
	free(cause);
	assert_int_equal(cidr_parse("example.com", &list[0], &cause), -1);
	free(cause);
	assert_int_equal(cidr_parse("10.0.0.0/", &list[0], &cause), -1);
	free(cause);
}

static char *
slurp(const char *rel)
{
	const char *top = getenv("TOP_SRCDIR");
	char path[1024], *buf;
	FILE *fp;
	long n;

	snprintf(path, sizeof path, "%s/%s", top != NULL ? top : ".", rel);
	if ((fp = fopen(path, "r")) == NULL)
		fail_msg("cannot open %s (set TOP_SRCDIR)", path);
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	rewind(fp);
	buf = calloc(1, (size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	return buf;
}

/* conf/smtptap.conf parses and names every key with its flag. */
static void
test_example_conf(void **state)
{
	const struct option_def *d;
	struct conf c;
	char *text, want[128];
	size_t i;

	text = slurp("conf/smtptap.conf");
	if (load(&c, text) != 0)
		fail_msg("conf/smtptap.conf:\n%s", all_errors(&c));
	assert_true(c.nservices >= 2);
	conf_free(&c);
	for (i = 0; i < option_ndefs; i++) {
		d = &option_defs[i];
		if (d->key == NULL)
			continue;
		snprintf(want, sizeof want, "# %s = ", d->key);
		if (strstr(text, want) == NULL)
			fail_msg("conf/smtptap.conf does not show \"%s\"", want);
		snprintf(want, sizeof want, "--%s)", d->name);
		if (strstr(text, want) == NULL &&
		    (snprintf(want, sizeof want, "--%s ", d->name),
		    strstr(text, want) == NULL))
			fail_msg("conf/smtptap.conf does not name the flag %s", want);
	}
	free(text);
}

/* "Fl Fl name" as a whole word in mdoc source. */
static int
has_flag(const char *man, const char *name)
{
	char want[128];
	const char *p = man;
	size_t len;

	len = (size_t)snprintf(want, sizeof want, "Fl Fl %s", name);
	while ((p = strstr(p, want)) != NULL) {
		if (strchr(" \n,", p[len]) != NULL)
			return 1;
		p += len;
	}
	return 0;
}

/* Every key in smtptap.conf(5), every flag in smtptap(1) (mdoc sources). */
static void
test_man_pages(void **state)
{
	const struct option_def *d;
	char *man1, *man5, want[128];
	size_t i;

	man1 = slurp("doc/smtptap.1");
	man5 = slurp("doc/smtptap.conf.5");
	for (i = 0; i < option_ndefs; i++) {
		d = &option_defs[i];
		if (!has_flag(man1, d->name))
			fail_msg("smtptap(1) lacks \"Fl Fl %s\"", d->name);
		if (d->short_flag) {
			snprintf(want, sizeof want, "Fl %c", d->short_flag);
			if (strstr(man1, want) == NULL)
				fail_msg("smtptap(1) lacks \"%s\"", want);
		}
		if (d->key == NULL)
			continue;
		snprintf(want, sizeof want, ".It Ic %s ", d->key);
		if (strstr(man5, want) == NULL)
			fail_msg("smtptap.conf(5) lacks \"%s\"", want);
		if (!has_flag(man5, d->name))
			fail_msg("smtptap.conf(5) does not name --%s", d->name);
	}
	free(man1);
	free(man5);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_inheritance),
		cmocka_unit_test(test_no_section_is_default),
		cmocka_unit_test(test_each_error_names_file_and_line),
		cmocka_unit_test(test_allow_makes_any_address_fine),
		cmocka_unit_test(test_all_errors_in_one_run),
		cmocka_unit_test(test_typo_suggestions),
		cmocka_unit_test(test_secrets_not_echoed),
		cmocka_unit_test(test_long_line),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_cidr),
		cmocka_unit_test(test_example_conf),
		cmocka_unit_test(test_man_pages),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
