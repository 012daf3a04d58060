/*
 * options.h - smtptap's settings and the one table that defines them.
 *
 * Each setting is described once, in options.c: its long flag, short flag,
 * argument, default and help text, and the setter that validates it. The
 * command line, --help and (later) the config file all read that table, so
 * they cannot drift apart.
 */
#ifndef SMTPTAP_OPTIONS_H
#define SMTPTAP_OPTIONS_H

#include <stdio.h>

#include "attrib.h"
#include "hostport.h"
#include "transcript.h"

enum tls_mode {
	TLS_MODE_STARTTLS,
	TLS_MODE_IMPLICIT,
	TLS_MODE_NONE,
};

struct options {
	struct hostport	 listen;
	struct hostport	 upstream;
	int		 have_upstream;
	enum tls_mode	 tls;
	int		 tls_set;		/* given explicitly, else from the port */
	char		*ca_file;
	char		*ca_path;
	int		 verify;		/* 0 with --no-verify */
	char		*sni;			/* NULL: the upstream host */
	char		*ehlo;			/* NULL: the local host name */
	char		*log;			/* NULL: stderr; see transcript.h */
	enum tx_format	 format;		/* of the transcript */
	char		*resolv_conf;		/* NULL: /etc/resolv.conf */
	int		 once;
	double		 connect_timeout;
	double		 greeting_timeout;
	double		 tls_timeout;
	double		 idle_timeout;
};

enum options_result {
	OPTIONS_RUN,
	OPTIONS_HELP,
	OPTIONS_VERSION,
	OPTIONS_USAGE,		/* *cause says what is wrong and names the flag */
};

void		 options_defaults(struct options *);
enum options_result options_parse(struct options *, int, char **, char **cause);
void		 options_help(FILE *);
void		 options_free(struct options *);
const char	*options_tls_name(enum tls_mode);

#endif
