/*
 * hostport.h - parse "HOST[:PORT]" and "[ADDR:]PORT" the way users type them.
 *
 * IPv6 literals go in brackets when a port follows ("[::1]:2525"); a bare
 * literal with several colons ("::1") is taken as a host without a port.
 */
#ifndef SMTPTAP_HOSTPORT_H
#define SMTPTAP_HOSTPORT_H

#include "attrib.h"

#define HOSTPORT_HOSTMAX	255

struct hostport {
	char		host[HOSTPORT_HOSTMAX + 1];	/* no brackets */
	char		port[6];
	unsigned short	portnum;
};

/* "HOST[:PORT]"; defport when none is given. On error, *cause is allocated. */
int	hostport_parse(const char *, const char *defport, struct hostport *,
	    char **cause) WUNRES;

/* "[ADDR:]PORT", for listening: ADDR defaults to defaddr; port 0 is allowed. */
int	hostport_parse_listen(const char *, const char *defaddr,
	    struct hostport *, char **cause) WUNRES;

/* Nonzero when host is an IPv4 or IPv6 literal (no brackets). */
int	hostport_is_ip(const char *host);

/* "host:port", or "[v6]:port"; returns buf. */
char	*hostport_fmt(const struct hostport *, char *buf, unsigned long size);

#endif
