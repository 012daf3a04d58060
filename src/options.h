/*
 * options.h - smtptap's settings and the one table that defines them.
 *
 * Each setting is described once, in options.c: its long flag, short flag,
 * argument, config key, scope, default and help text, and the setter that
 * validates it. The command line, --help and the config file (conf.c) all
 * read that table, so they cannot drift apart.
 */
#ifndef SMTPTAP_OPTIONS_H
#define SMTPTAP_OPTIONS_H

#include <sys/socket.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "attrib.h"
#include "hostport.h"
#include "transcript.h"

enum tls_mode {
	TLS_MODE_STARTTLS,
	TLS_MODE_IMPLICIT,
	TLS_MODE_NONE,
};

/* One "allow" entry: an address and how many leading bits must match. */
struct cidr {
	int		family;		/* AF_INET or AF_INET6 */
	unsigned char	addr[16];	/* network byte order, host bits zero */
	unsigned	prefix;
};

struct options {
	struct hostport	 listen;
	struct hostport	 upstream;
	int		 have_upstream;
	enum tls_mode	 tls;
	int		 tls_set;		/* given explicitly, else from the port */
	char		*ca_file;
	char		*ca_path;
	int		 verify;		/* 0 with --no-verify or verify = no */
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
	double		 session_timeout;
	unsigned	 max_records;		/* transcript records per session */
	unsigned	 max_sessions;		/* per service */
	unsigned	 max_sessions_total;	/* all services together */
	struct cidr	*allow;			/* NULL: anyone who can connect */
	size_t		 nallow;
	char		*user;			/* NULL: keep the starting user */
	double		 shutdown_grace;

	/* Command line only. */
	char		*config;		/* -c FILE */
	int		 check_config;		/* -t */
	int		 verbose;		/* -v */
	uint64_t	 given;			/* bit i: option_defs[i] was given */
};

enum option_scope {
	OPTION_CLI,		/* command line only: no config key */
	OPTION_GLOBAL,		/* config: only before the first [service] */
	OPTION_BOTH,		/* config: at the top (the default for every
				   service) or in a service */
};

/*
 * A setter validates and stores one value. From the command line a flag
 * without an argument passes NULL; from the config file every key passes
 * its text. On error *cause says why, without the flag or key name.
 */
typedef int (*option_setter)(struct options *, const char *, char **);

struct option_def {
	const char	*name;		/* long flag, without "--" */
	int		 short_flag;	/* 0: long form only */
	const char	*argname;	/* NULL: the flag takes no argument */
	const char	*key;		/* config key; NULL with OPTION_CLI */
	const char	*keyarg;	/* the key's value, when not argname */
	enum option_scope scope;
	const char	*defval;	/* the default in words, for --help and docs */
	const char	*help;
	option_setter	 set;		/* NULL: handled by the caller */
};

extern const struct option_def	option_defs[];
extern const size_t		option_ndefs;

enum options_result {
	OPTIONS_RUN,
	OPTIONS_HELP,
	OPTIONS_VERSION,
	OPTIONS_USAGE,		/* *cause says what is wrong and names the flag */
};

void		 options_defaults(struct options *);
enum options_result options_parse(struct options *, int, char **, char **cause);
void		 options_help(FILE *);
void		 options_copy(struct options *, const struct options *);
void		 options_free(struct options *);
const char	*options_tls_name(enum tls_mode);

/* The table entry for a config key, or NULL. */
const struct option_def *options_find_key(const char *);
/* Index of an entry in option_defs, for options.given and per-key tables. */
size_t		 options_index(const struct option_def *);
/* The value after every setting is known: the TLS mode from the port. */
void		 options_finish(struct options *);
/* Nonzero when the listen address is a loopback address. */
int		 options_listen_is_loopback(const struct options *);

/* "10.0.0.0/8" or "::1": 0, or -1 with *cause. */
int		 cidr_parse(const char *, struct cidr *, char **cause) WUNRES;
/* Nonzero when the address is inside one of the entries. */
int		 cidr_match(const struct cidr *, size_t, const struct sockaddr *);

#endif
