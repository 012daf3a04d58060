/* options.c - the settings table, command-line parsing and --help. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "xmalloc.h"

#define DEFAULT_LISTEN		"127.0.0.1:2525"
#define DEFAULT_UPSTREAM_PORT	"587"
#define IMPLICIT_TLS_PORT	465

typedef int (*option_setter)(struct options *, const char *, char **);

struct option_def {
	const char	*name;		/* long flag; the config key will be name with '_' */
	int		 short_flag;	/* 0: long form only */
	const char	*argname;	/* NULL: takes no argument */
	const char	*help;
	option_setter	 set;		/* NULL: --help and --version, handled by the caller */
};

static int
set_listen(struct options *o, const char *v, char **cause)
{
	return hostport_parse_listen(v, "127.0.0.1", &o->listen, cause);
}

static int
set_upstream(struct options *o, const char *v, char **cause)
{
	if (o->have_upstream) {
		xasprintf(cause, "upstream given twice (\"%s\" and \"%s\")",
		    o->upstream.host, v);
		return -1;
	}
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

static int
set_no_verify(struct options *o, const char *v, char **cause)
{
	o->verify = 0;
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
set_once(struct options *o, const char *v, char **cause)
{
	o->once = 1;
	return 0;
}

static int
set_seconds(double *dst, const char *v, char **cause)
{
	char *end;
	double d;

	errno = 0;
	d = strtod(v, &end);
	if (errno != 0 || end == v || *end != '\0' || !isfinite(d) ||
	    d <= 0 || d > 86400) {
		xasprintf(cause, "expected seconds between 0 and 86400, got \"%s\"", v);
		return -1;
	}
	*dst = d;
	return 0;
}

static int
set_connect_timeout(struct options *o, const char *v, char **cause)
{
	return set_seconds(&o->connect_timeout, v, cause);
}

static int
set_greeting_timeout(struct options *o, const char *v, char **cause)
{
	return set_seconds(&o->greeting_timeout, v, cause);
}

static int
set_tls_timeout(struct options *o, const char *v, char **cause)
{
	return set_seconds(&o->tls_timeout, v, cause);
}

static int
set_idle_timeout(struct options *o, const char *v, char **cause)
{
	return set_seconds(&o->idle_timeout, v, cause);
}

static const struct option_def option_defs[] = {
	{ "listen", 'l', "[ADDR:]PORT",
	  "listen here for the mail client (default " DEFAULT_LISTEN ")", set_listen },
	{ "upstream", 'u', "HOST[:PORT]",
	  "the real server, as the HOST[:PORT] argument (default port "
	  DEFAULT_UPSTREAM_PORT ")", set_upstream },
	{ "tls", 0, "MODE",
	  "starttls, implicit or none (default implicit for port 465, else starttls)",
	  set_tls },
	{ "ca-file", 0, "FILE",
	  "trust the CA certificates in FILE instead of the system store", set_ca_file },
	{ "ca-path", 0, "DIR",
	  "trust the hashed CA directory DIR instead of the system store", set_ca_path },
	{ "no-verify", 0, NULL,
	  "verify and log the result, but continue when verification fails",
	  set_no_verify },
	{ "sni", 0, "NAME",
	  "name sent as SNI and checked in the certificate (default the upstream host)",
	  set_sni },
	{ "ehlo", 0, "NAME",
	  "name in smtptap's own EHLO (default the local host name)", set_ehlo },
	{ "log", 'o', "DEST",
	  "transcript to a FILE, - (stdout), stderr, syslog, journal or a "
	  "directory (dir:PATH, a file per session) (default stderr)", set_log },
	{ "format", 0, "FORMAT",
	  "transcript format: text or json (JSON Lines) (default text)",
	  set_format },
	{ "once", 0, NULL, "exit when the first session ends", set_once },
	{ "connect-timeout", 0, "SEC",
	  "give up resolving and connecting after SEC seconds (default 30)",
	  set_connect_timeout },
	{ "greeting-timeout", 0, "SEC",
	  "wait SEC seconds for each upstream reply before TLS (default 60)",
	  set_greeting_timeout },
	{ "tls-timeout", 0, "SEC",
	  "give up the TLS handshake after SEC seconds (default 30)", set_tls_timeout },
	{ "idle-timeout", 0, "SEC",
	  "close a session idle in both directions for SEC seconds (default 300)",
	  set_idle_timeout },
	{ "resolv-conf", 0, "FILE",
	  "resolver configuration for upstream names (default /etc/resolv.conf)",
	  set_resolv_conf },
	{ "version", 'V', NULL, "print the version and exit", NULL },
	{ "help", 'h', NULL, "print this help and exit", NULL },
};
#define NOPTIONS (sizeof option_defs / sizeof option_defs[0])

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
	o->connect_timeout = 30;
	o->greeting_timeout = 60;
	o->tls_timeout = 30;
	o->idle_timeout = 300;
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
	memset(o, 0, sizeof *o);
}

void
options_help(FILE *fp)
{
	char left[64];
	size_t i;
	const struct option_def *d;

	fprintf(fp, "usage: smtptap [options] HOST[:PORT]\n\n"
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
			fprintf(fp, "  %-26s %s\n", left, d->help);
		else
			fprintf(fp, "  %s\n  %-26s %s\n", left, "", d->help);
	}
	fprintf(fp, "\nExit status: 0 success, 1 runtime failure, 64 usage error, "
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

enum options_result
options_parse(struct options *o, int argc, char **argv, char **cause)
{
	struct option longopts[NOPTIONS + 1];
	char shortopts[NOPTIONS * 2 + 2], *p = shortopts, *why = NULL, *flag;
	const struct option_def *d;
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
		if (d->set(o, optarg, &why) != 0) {
			flag = options_flagname(d);
			xasprintf(cause, "%s: %s", flag, why);
			free(flag);
			free(why);
			return OPTIONS_USAGE;
		}
	}
	if (optind < argc) {
		if (argc - optind > 1) {
			xasprintf(cause, "unexpected argument \"%s\" (one upstream only)",
			    argv[optind + 1]);
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
	if (!o->tls_set)
		o->tls = o->upstream.portnum == IMPLICIT_TLS_PORT ?
		    TLS_MODE_IMPLICIT : TLS_MODE_STARTTLS;
	return OPTIONS_RUN;
}
