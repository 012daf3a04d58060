/* options.c - the settings table, command-line parsing and --help. */
#include <sys/socket.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "xmalloc.h"

#define DEFAULT_LISTEN		"127.0.0.1:2525"
#define DEFAULT_UPSTREAM_PORT	"587"
#define IMPLICIT_TLS_PORT	465
#define MAX_SESSIONS_LIMIT	1000000
#define MAX_RECORDS_LIMIT	1000000000

static int
set_config(struct options *o, const char *v, char **cause)
{
	if (*v == '\0') {
		xasprintf(cause, "empty file name");
		return -1;
	}
	free(o->config);
	o->config = xstrdup(v);
	return 0;
}

static int
set_check_config(struct options *o, const char *v, char **cause)
{
	o->check_config = 1;
	return 0;
}

static int
set_listen(struct options *o, const char *v, char **cause)
{
	return hostport_parse_listen(v, "127.0.0.1", &o->listen, cause);
}

static int
set_upstream(struct options *o, const char *v, char **cause)
{
	if (hostport_parse(v, DEFAULT_UPSTREAM_PORT, &o->upstream, cause) != 0)
		return -1;
	o->have_upstream = 1;
	return 0;
}

static int
set_tls(struct options *o, const char *v, char **cause)
{
	if (strcmp(v, "starttls") == 0)
		o->tls = TLS_MODE_STARTTLS;
	else if (strcmp(v, "implicit") == 0)
		o->tls = TLS_MODE_IMPLICIT;
	else if (strcmp(v, "none") == 0)
		o->tls = TLS_MODE_NONE;
	else {
		xasprintf(cause, "expected starttls, implicit or none, got \"%s\"", v);
		return -1;
	}
	o->tls_set = 1;
	return 0;
}

static int
set_string(char **dst, const char *v, char **cause)
{
	if (*v == '\0') {
		xasprintf(cause, "empty value");
		return -1;
	}
	free(*dst);
	*dst = xstrdup(v);
	return 0;
}

static int
set_ca_file(struct options *o, const char *v, char **cause)
{
	return set_string(&o->ca_file, v, cause);
}

static int
set_ca_path(struct options *o, const char *v, char **cause)
{
	return set_string(&o->ca_path, v, cause);
}

/* --no-verify passes NULL; the config key is "verify = yes|no". */
static int
set_verify(struct options *o, const char *v, char **cause)
{
	if (v == NULL)
		o->verify = 0;
	else if (strcmp(v, "yes") == 0 || strcmp(v, "true") == 0 ||
	    strcmp(v, "on") == 0)
		o->verify = 1;
	else if (strcmp(v, "no") == 0 || strcmp(v, "false") == 0 ||
	    strcmp(v, "off") == 0)
		o->verify = 0;
	else {
		xasprintf(cause, "expected yes or no, got \"%s\"", v);
		return -1;
	}
	return 0;
}

static int
set_sni(struct options *o, const char *v, char **cause)
{
	return set_string(&o->sni, v, cause);
}

static int
set_ehlo(struct options *o, const char *v, char **cause)
{
	if (strpbrk(v, " \t\r\n") != NULL) {
		xasprintf(cause, "the EHLO name must be one word");
		return -1;
	}
	return set_string(&o->ehlo, v, cause);
}

static int
set_log(struct options *o, const char *v, char **cause)
{
	if (transcript_check_dest(v, cause) != 0)
		return -1;
	return set_string(&o->log, v, cause);
}

static int
set_format(struct options *o, const char *v, char **cause)
{
	if (transcript_parse_format(v, &o->format) != 0) {
		xasprintf(cause, "expected text or json, got \"%s\"", v);
		return -1;
	}
	return 0;
}

static int
set_resolv_conf(struct options *o, const char *v, char **cause)
{
	return set_string(&o->resolv_conf, v, cause);
}

static int
set_verbose(struct options *o, const char *v, char **cause)
{
	o->verbose = 1;
	return 0;
}

static int
set_once(struct options *o, const char *v, char **cause)
{
	o->once = 1;
	return 0;
}

static int
set_seconds(double *dst, const char *v, double min, int min_ok, double max,
    char **cause)
{
	char *end;
	double d;

	errno = 0;
	d = strtod(v, &end);
	if (errno != 0 || end == v || *end != '\0' || !isfinite(d) ||
	    d < min || (d == min && !min_ok) || d > max) {
		xasprintf(cause, "expected seconds between %g and %g, got \"%s\"",
		    min, max, v);
		return -1;
	}
	*dst = d;
	return 0;
}

static int
set_connect_timeout(struct options *o, const char *v, char **cause)
{
	return set_seconds(&o->connect_timeout, v, 0, 0, 86400, cause);
}

static int
set_greeting_timeout(struct options *o, const char *v, char **cause)
{
	return set_seconds(&o->greeting_timeout, v, 0, 0, 86400, cause);
}

static int
set_tls_timeout(struct options *o, const char *v, char **cause)
{
	return set_seconds(&o->tls_timeout, v, 0, 0, 86400, cause);
}

static int
set_idle_timeout(struct options *o, const char *v, char **cause)
{
	return set_seconds(&o->idle_timeout, v, 0, 0, 86400, cause);
}

static int
set_session_timeout(struct options *o, const char *v, char **cause)
{
	return set_seconds(&o->session_timeout, v, 0, 0, 86400, cause);
}

/* 0 is allowed: close the open sessions at once. */
static int
set_shutdown_grace(struct options *o, const char *v, char **cause)
{
	return set_seconds(&o->shutdown_grace, v, 0, 1, 86400, cause);
}

static int
set_count(unsigned *dst, const char *v, char **cause)
{
	char *end;
	unsigned long n;

	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0' || *v == '-' || *v == '+' ||
	    n < 1 || n > MAX_SESSIONS_LIMIT) {
		xasprintf(cause, "expected a number between 1 and %d, got \"%s\"",
		    MAX_SESSIONS_LIMIT, v);
		return -1;
	}
	*dst = (unsigned)n;
	return 0;
}

/* Records a session may write: large, but a bound on a client's amplification. */
static int
set_max_records(struct options *o, const char *v, char **cause)
{
	char *end;
	unsigned long n;

	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0' || *v == '-' || *v == '+' ||
	    n < 100 || n > MAX_RECORDS_LIMIT) {
		xasprintf(cause, "expected a number between 100 and %d, got \"%s\"",
		    MAX_RECORDS_LIMIT, v);
		return -1;
	}
	o->max_records = (unsigned)n;
	return 0;
}

static int
set_max_sessions(struct options *o, const char *v, char **cause)
{
	return set_count(&o->max_sessions, v, cause);
}

static int
set_max_sessions_total(struct options *o, const char *v, char **cause)
{
	return set_count(&o->max_sessions_total, v, cause);
}

/* A list replaces the previous one, as every other setting does. */
static int
set_allow(struct options *o, const char *v, char **cause)
{
	struct cidr *list = NULL;
	size_t n = 0, len;
	const char *p = v;
	char word[INET6_ADDRSTRLEN + 8];

	for (;;) {
		p += strspn(p, ", \t");
		if (*p == '\0')
			break;
		len = strcspn(p, ", \t");
		if (len >= sizeof word) {
			xasprintf(cause, "\"%.*s\" is not an address or CIDR",
			    (int)len, p);
			free(list);
			return -1;
		}
		memcpy(word, p, len);
		word[len] = '\0';
		list = xrealloc(list, (n + 1) * sizeof *list);
		if (cidr_parse(word, &list[n], cause) != 0) {
			free(list);
			return -1;
		}
		n++;
		p += len;
	}
	if (n == 0) {
		xasprintf(cause, "empty list: give addresses or CIDRs such as "
		    "192.0.2.0/24");
		return -1;
	}
	free(o->allow);
	o->allow = list;
	o->nallow = n;
	return 0;
}

static int
set_user(struct options *o, const char *v, char **cause)
{
	if (strpbrk(v, " \t:/") != NULL) {
		xasprintf(cause, "\"%s\" is not a user name", v);
		return -1;
	}
	return set_string(&o->user, v, cause);
}

/*
 * The table. The config key is the flag's name with '_' for '-', except
 * verify (--no-verify); test_options.c checks that rule. Keep the order:
 * --help lists the entries in it, and the man pages follow it.
 */
const struct option_def option_defs[] = {
	{ "config", 'c', "FILE", NULL, NULL, OPTION_CLI, NULL,
	  "read the settings and services from FILE (then no HOST[:PORT] or "
	  "setting flags)", set_config },
	{ "check-config", 't', NULL, NULL, NULL, OPTION_CLI, NULL,
	  "check the -c file, print the errors or \"OK\", and exit",
	  set_check_config },
	{ "listen", 'l', "[ADDR:]PORT", "listen", NULL, OPTION_BOTH,
	  DEFAULT_LISTEN " (a config file must set it)",
	  "listen here for the mail client", set_listen },
	{ "upstream", 'u', "HOST[:PORT]", "upstream", NULL, OPTION_BOTH,
	  "none, it is required; port " DEFAULT_UPSTREAM_PORT,
	  "the real server, as the HOST[:PORT] argument", set_upstream },
	{ "tls", 0, "MODE", "tls", NULL, OPTION_BOTH,
	  "implicit for port 465, else starttls",
	  "starttls, implicit or none", set_tls },
	{ "ca-file", 0, "FILE", "ca_file", NULL, OPTION_BOTH,
	  "the system trust store",
	  "trust the CA certificates in FILE instead of the system store",
	  set_ca_file },
	{ "ca-path", 0, "DIR", "ca_path", NULL, OPTION_BOTH,
	  "the system trust store",
	  "trust the hashed CA directory DIR instead of the system store",
	  set_ca_path },
	{ "no-verify", 0, NULL, "verify", "yes|no", OPTION_BOTH,
	  "verify and enforce; key: yes",
	  "verify and log the result, but continue when verification fails",
	  set_verify },
	{ "sni", 0, "NAME", "sni", NULL, OPTION_BOTH, "the upstream host",
	  "name sent as SNI and checked in the certificate", set_sni },
	{ "ehlo", 0, "NAME", "ehlo", NULL, OPTION_BOTH, "the local host name",
	  "name in smtptap's own EHLO", set_ehlo },
	{ "log", 'o', "DEST", "log", NULL, OPTION_GLOBAL, "stderr",
	  "transcript to a FILE, - (stdout), stderr, syslog, journal or a "
	  "directory (dir:PATH, a file per session)", set_log },
	{ "format", 0, "text|json", "format", NULL, OPTION_GLOBAL, "text",
	  "transcript format: text or json (JSON Lines)", set_format },
	{ "once", 0, NULL, NULL, NULL, OPTION_CLI, NULL,
	  "exit when the first session ends", set_once },
	{ "verbose", 'v', NULL, NULL, NULL, OPTION_CLI, NULL,
	  "also write smtptap's own debug notes to stderr (never secrets)",
	  set_verbose },
	{ "connect-timeout", 0, "SEC", "connect_timeout", NULL, OPTION_BOTH, "30",
	  "give up resolving and connecting after SEC seconds",
	  set_connect_timeout },
	{ "greeting-timeout", 0, "SEC", "greeting_timeout", NULL, OPTION_BOTH,
	  "60", "wait SEC seconds for each upstream reply before TLS",
	  set_greeting_timeout },
	{ "tls-timeout", 0, "SEC", "tls_timeout", NULL, OPTION_BOTH, "30",
	  "give up the TLS handshake after SEC seconds", set_tls_timeout },
	{ "idle-timeout", 0, "SEC", "idle_timeout", NULL, OPTION_BOTH, "300",
	  "close a session idle in both directions for SEC seconds",
	  set_idle_timeout },
	{ "session-timeout", 0, "SEC", "session_timeout", NULL, OPTION_BOTH,
	  "3600", "limit on a whole session, busy or not",
	  set_session_timeout },
	{ "max-records", 0, "N", "max_records", NULL, OPTION_BOTH, "100000",
	  "transcript records one session may write; the rest are counted",
	  set_max_records },
	{ "max-sessions", 0, "N", "max_sessions", NULL, OPTION_BOTH, "100",
	  "sessions open at once per service; more get 421 4.3.2",
	  set_max_sessions },
	{ "max-sessions-total", 0, "N", "max_sessions_total", NULL,
	  OPTION_GLOBAL, "1000",
	  "sessions open at once over all services", set_max_sessions_total },
	{ "allow", 0, "CIDR,...", "allow", NULL, OPTION_BOTH,
	  "anyone who can connect; required when listening on a non-loopback "
	  "address",
	  "clients that may connect; others get 554 5.7.1", set_allow },
	{ "user", 0, "NAME", "user", NULL, OPTION_GLOBAL, "the starting user",
	  "when started as root, switch to NAME after binding", set_user },
	{ "shutdown-grace", 0, "SEC", "shutdown_grace", NULL, OPTION_GLOBAL,
	  "30", "on SIGTERM, time open sessions get to finish",
	  set_shutdown_grace },
	{ "resolv-conf", 0, "FILE", "resolv_conf", NULL, OPTION_GLOBAL,
	  "/etc/resolv.conf", "resolver configuration for upstream names",
	  set_resolv_conf },
	{ "version", 'V', NULL, NULL, NULL, OPTION_CLI, NULL,
	  "print the version and exit", NULL },
	{ "help", 'h', NULL, NULL, NULL, OPTION_CLI, NULL,
	  "print this help and exit", NULL },
};
const size_t option_ndefs = sizeof option_defs / sizeof option_defs[0];
#define NOPTIONS (sizeof option_defs / sizeof option_defs[0])

/* options.given is a 64-bit mask. */
_Static_assert(NOPTIONS <= 64, "too many options for options.given");

/* getopt_long returns 256 + index for options without a short flag. */
#define LONG_ONLY_BASE	256

const char *
options_tls_name(enum tls_mode m)
{
	switch (m) {
	case TLS_MODE_STARTTLS:
		return "starttls";
	case TLS_MODE_IMPLICIT:
		return "implicit";
	case TLS_MODE_NONE:
		return "none";
	}
	return "?";
}

const struct option_def *
options_find_key(const char *key)
{
	size_t i;

	for (i = 0; i < NOPTIONS; i++)
		if (option_defs[i].key != NULL &&
		    strcmp(option_defs[i].key, key) == 0)
			return &option_defs[i];
	return NULL;
}

size_t
options_index(const struct option_def *d)
{
	return (size_t)(d - option_defs);
}

void
options_defaults(struct options *o)
{
	char *cause = NULL;

	memset(o, 0, sizeof *o);
	if (hostport_parse_listen(DEFAULT_LISTEN, "127.0.0.1", &o->listen,
	    &cause) != 0)
		abort();
	o->tls = TLS_MODE_STARTTLS;
	o->verify = 1;
	o->format = TX_FORMAT_TEXT;
	o->connect_timeout = 30;
	o->greeting_timeout = 60;
	o->tls_timeout = 30;
	o->idle_timeout = 300;
	o->session_timeout = 3600;
	o->max_sessions = 100;
	o->max_sessions_total = 1000;
	o->max_records = 100000;
	o->shutdown_grace = 30;
}

static char *
copy_string(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

void
options_copy(struct options *dst, const struct options *src)
{
	*dst = *src;
	dst->ca_file = copy_string(src->ca_file);
	dst->ca_path = copy_string(src->ca_path);
	dst->sni = copy_string(src->sni);
	dst->ehlo = copy_string(src->ehlo);
	dst->log = copy_string(src->log);
	dst->resolv_conf = copy_string(src->resolv_conf);
	dst->user = copy_string(src->user);
	dst->config = copy_string(src->config);
	dst->allow = NULL;
	if (src->nallow != 0) {
		dst->allow = xcalloc(src->nallow, sizeof *dst->allow);
		memcpy(dst->allow, src->allow, src->nallow * sizeof *dst->allow);
	}
}

void
options_free(struct options *o)
{
	free(o->ca_file);
	free(o->ca_path);
	free(o->sni);
	free(o->ehlo);
	free(o->log);
	free(o->resolv_conf);
	free(o->user);
	free(o->config);
	free(o->allow);
	memset(o, 0, sizeof *o);
}

void
options_finish(struct options *o)
{
	if (!o->tls_set)
		o->tls = o->upstream.portnum == IMPLICIT_TLS_PORT ?
		    TLS_MODE_IMPLICIT : TLS_MODE_STARTTLS;
}

int
options_listen_is_loopback(const struct options *o)
{
	struct in6_addr a6;
	struct in_addr a4;

	if (inet_pton(AF_INET, o->listen.host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, o->listen.host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6);
	return 0;
}

int
cidr_parse(const char *s, struct cidr *c, char **cause)
{
	char addr[INET6_ADDRSTRLEN + 1], *end;
	const char *slash;
	unsigned long prefix;
	unsigned i, max;
	size_t len;

	memset(c, 0, sizeof *c);
	slash = strchr(s, '/');
	len = slash != NULL ? (size_t)(slash - s) : strlen(s);
	if (len == 0 || len >= sizeof addr)
		goto bad;
	memcpy(addr, s, len);
	addr[len] = '\0';
	if (inet_pton(AF_INET, addr, c->addr) == 1) {
		c->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, addr, c->addr) == 1) {
		c->family = AF_INET6;
		max = 128;
	} else
		goto bad;
	c->prefix = max;
	if (slash != NULL) {
		errno = 0;
		prefix = strtoul(slash + 1, &end, 10);
		if (errno != 0 || end == slash + 1 || *end != '\0' ||
		    slash[1] == '-' || slash[1] == '+' || prefix > max)
			goto bad;
		c->prefix = (unsigned)prefix;
	}
	/* Host bits set are a typo more often than not ("10.1.0.0/8"). */
	for (i = c->prefix; i < max; i++)
		if (c->addr[i / 8] & (0x80 >> (i % 8))) {
			xasprintf(cause, "\"%s\": address bits set beyond the "
			    "/%u prefix", s, c->prefix);
			return -1;
		}
	return 0;

bad:
	xasprintf(cause, "\"%s\" is not an address or CIDR (such as 192.0.2.0/24 "
	    "or 2001:db8::/32)", s);
	return -1;
}

int
cidr_match(const struct cidr *list, size_t n, const struct sockaddr *sa)
{
	const unsigned char *a;
	unsigned i, bits;
	size_t k;
	int family = sa->sa_family;

	if (family == AF_INET)
		a = (const unsigned char *)
		    &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
	else if (family == AF_INET6)
		a = (const unsigned char *)
		    &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
	else
		return 0;
	for (k = 0; k < n; k++) {
		if (list[k].family != family)
			continue;
		bits = list[k].prefix;
		for (i = 0; i < bits / 8; i++)
			if (a[i] != list[k].addr[i])
				break;
		if (i < bits / 8)
			continue;
		if (bits % 8 != 0 && ((a[i] ^ list[k].addr[i]) &
		    (0xff << (8 - bits % 8)) & 0xff) != 0)
			continue;
		return 1;
	}
	return 0;
}

void
options_help(FILE *fp)
{
	char left[64];
	size_t i;
	const struct option_def *d;

	fprintf(fp, "usage: smtptap [options] HOST[:PORT]\n"
	    "       smtptap -c FILE [-t] [--once]\n\n"
	    "Accept a mail client in cleartext, connect to HOST over TLS (STARTTLS or\n"
	    "implicit), relay both ways byte for byte and write a transcript with AUTH\n"
	    "decoded and secrets masked.\n\n");
	for (i = 0; i < NOPTIONS; i++) {
		d = &option_defs[i];
		if (d->short_flag)
			snprintf(left, sizeof left, "-%c, --%s%s%s", d->short_flag,
			    d->name, d->argname ? " " : "", d->argname ? d->argname : "");
		else
			snprintf(left, sizeof left, "    --%s%s%s", d->name,
			    d->argname ? " " : "", d->argname ? d->argname : "");
		if (strlen(left) < 26)
			fprintf(fp, "  %-26s %s", left, d->help);
		else
			fprintf(fp, "  %s\n  %-26s %s", left, "", d->help);
		if (d->defval != NULL)
			fprintf(fp, " (default %s)", d->defval);
		fputc('\n', fp);
	}
	fprintf(fp, "\nEvery setting is also a config file key: the flag's name with\n"
	    "'_' for '-' (--no-verify is \"verify = no\"). See smtptap.conf(5).\n"
	    "\nExit status: 0 success, 1 runtime failure, 64 usage error, "
	    "78 configuration error.\nSee smtptap(1).\n");
}

static char *
options_flagname(const struct option_def *d)
{
	char *s;

	if (d->short_flag)
		xasprintf(&s, "-%c/--%s", d->short_flag, d->name);
	else
		xasprintf(&s, "--%s", d->name);
	return s;
}

static const struct option_def *
options_find_name(const char *name)
{
	size_t i;

	for (i = 0; i < NOPTIONS; i++)
		if (strcmp(option_defs[i].name, name) == 0)
			return &option_defs[i];
	abort();
}

/* With -c, the file holds every setting: a flag as well would be ambiguous. */
static enum options_result
options_check_config_mode(struct options *o, int positional, char **cause)
{
	const struct option_def *d;
	char *flag;
	size_t i;

	if (positional) {
		xasprintf(cause, "HOST[:PORT]: not allowed with -c/--config "
		    "(set \"upstream\" in the config file)");
		return OPTIONS_USAGE;
	}
	for (i = 0; i < NOPTIONS; i++) {
		d = &option_defs[i];
		if (d->scope == OPTION_CLI || (o->given & (1ULL << i)) == 0)
			continue;
		flag = options_flagname(d);
		xasprintf(cause, "%s: not allowed with -c/--config (set \"%s\" in "
		    "the config file)", flag, d->key);
		free(flag);
		return OPTIONS_USAGE;
	}
	return OPTIONS_RUN;
}

enum options_result
options_parse(struct options *o, int argc, char **argv, char **cause)
{
	struct option longopts[NOPTIONS + 1];
	char shortopts[NOPTIONS * 2 + 2], *p = shortopts, *why = NULL, *flag;
	const struct option_def *d;
	char where[300];
	size_t i;
	int c;

	*p++ = ':';	/* report a missing argument as ':' rather than '?' */
	for (i = 0; i < NOPTIONS; i++) {
		d = &option_defs[i];
		longopts[i].name = d->name;
		longopts[i].has_arg = d->argname ? required_argument : no_argument;
		longopts[i].flag = NULL;
		longopts[i].val = d->short_flag ? d->short_flag :
		    LONG_ONLY_BASE + (int)i;
		if (d->short_flag) {
			*p++ = (char)d->short_flag;
			if (d->argname)
				*p++ = ':';
		}
	}
	*p = '\0';
	memset(&longopts[NOPTIONS], 0, sizeof longopts[NOPTIONS]);

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		if (c == '?' || c == ':') {
			d = NULL;
			for (i = 0; i < NOPTIONS && optopt != 0; i++)
				if (optopt == option_defs[i].short_flag ||
				    optopt == LONG_ONLY_BASE + (int)i)
					d = &option_defs[i];
			if (d != NULL) {
				flag = options_flagname(d);
				xasprintf(cause, "%s: %s", flag, c == ':' ?
				    "missing argument" : "takes no argument");
				free(flag);
			} else if (optopt > 0 && optopt < LONG_ONLY_BASE)
				xasprintf(cause, "-%c: unknown option", optopt);
			else
				xasprintf(cause, "%s: unknown option", argv[optind - 1]);
			return OPTIONS_USAGE;
		}
		d = NULL;
		for (i = 0; i < NOPTIONS; i++)
			if (c == option_defs[i].short_flag ||
			    c == LONG_ONLY_BASE + (int)i)
				d = &option_defs[i];
		if (d == NULL)
			abort();
		if (d->set == NULL)
			return d->short_flag == 'h' ? OPTIONS_HELP : OPTIONS_VERSION;
		if (d->set == set_upstream && o->have_upstream) {
			xasprintf(cause, "upstream given twice (\"%s\" and \"%s\")",
			    o->upstream.host, optarg);
			return OPTIONS_USAGE;
		}
		o->given |= 1ULL << options_index(d);
		if (d->set(o, d->argname != NULL ? optarg : NULL, &why) != 0) {
			flag = options_flagname(d);
			xasprintf(cause, "%s: %s", flag, why);
			free(flag);
			free(why);
			return OPTIONS_USAGE;
		}
	}
	if (o->config != NULL)
		return options_check_config_mode(o, optind < argc, cause);
	if (o->check_config) {
		xasprintf(cause, "-t/--check-config: needs -c/--config FILE");
		return OPTIONS_USAGE;
	}
	if (optind < argc) {
		if (argc - optind > 1) {
			xasprintf(cause, "unexpected argument \"%s\" (one upstream only)",
			    argv[optind + 1]);
			return OPTIONS_USAGE;
		}
		if (o->have_upstream) {
			xasprintf(cause, "upstream given twice (\"%s\" and \"%s\")",
			    o->upstream.host, argv[optind]);
			return OPTIONS_USAGE;
		}
		if (set_upstream(o, argv[optind], &why) != 0) {
			xasprintf(cause, "HOST[:PORT]: %s", why);
			free(why);
			return OPTIONS_USAGE;
		}
	}
	if (!o->have_upstream) {
		xasprintf(cause, "no upstream server: give HOST[:PORT] or -u/--upstream");
		return OPTIONS_USAGE;
	}
	if (o->nallow == 0 && !options_listen_is_loopback(o)) {
		flag = options_flagname(options_find_name("listen"));
		xasprintf(cause, "%s %s is not a loopback address: give --allow "
		    "CIDR,... for the clients that may connect", flag,
		    hostport_fmt(&o->listen, where, sizeof where));
		free(flag);
		return OPTIONS_USAGE;
	}
	options_finish(o);
	return OPTIONS_RUN;
}
