/* hostport.c - host and port parsing for the command line and the config. */
#include <arpa/inet.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostport.h"
#include "xmalloc.h"

int
hostport_is_ip(const char *host)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, host, buf) == 1 ||
	    inet_pton(AF_INET6, host, buf) == 1;
}

static int
hostport_setport(struct hostport *hp, const char *port, int allow_zero,
    char **cause)
{
	char *end;
	unsigned long n;

	if (*port == '\0' || strspn(port, "0123456789") != strlen(port)) {
		xasprintf(cause, "invalid port \"%s\": expected a number", port);
		return -1;
	}
	errno = 0;
	n = strtoul(port, &end, 10);
	if (errno != 0 || n > 65535 || (n == 0 && !allow_zero)) {
		xasprintf(cause, "invalid port \"%s\": expected %d to 65535",
		    port, allow_zero ? 0 : 1);
		return -1;
	}
	hp->portnum = (unsigned short)n;
	snprintf(hp->port, sizeof hp->port, "%lu", n);
	return 0;
}

static int
hostport_sethost(struct hostport *hp, const char *host, size_t len,
    char **cause)
{
	if (len == 0) {
		xasprintf(cause, "missing host name");
		return -1;
	}
	if (len > HOSTPORT_HOSTMAX) {
		xasprintf(cause, "host name longer than %d characters",
		    HOSTPORT_HOSTMAX);
		return -1;
	}
	memcpy(hp->host, host, len);
	hp->host[len] = '\0';
	if (strspn(hp->host, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:%") != len) {
		xasprintf(cause, "invalid host name \"%.*s\"", (int)len, host);
		return -1;
	}
	return 0;
}

/* Splits s into host and optional port; returns the port text or NULL. */
static int
hostport_split(const char *s, struct hostport *hp, const char **port,
    char **cause)
{
	const char *close, *colon;

	*port = NULL;
	if (s[0] == '[') {
		if ((close = strchr(s, ']')) == NULL) {
			xasprintf(cause, "missing ']' in \"%s\"", s);
			return -1;
		}
		if (close[1] == ':')
			*port = close + 2;
		else if (close[1] != '\0') {
			xasprintf(cause, "unexpected text after ']' in \"%s\"", s);
			return -1;
		}
		if (hostport_sethost(hp, s + 1, (size_t)(close - s - 1), cause) != 0)
			return -1;
		if (!hostport_is_ip(hp->host)) {
			xasprintf(cause, "\"%s\" in brackets is not an IPv6 address",
			    hp->host);
			return -1;
		}
		return 0;
	}
	colon = strchr(s, ':');
	if (colon != NULL && strchr(colon + 1, ':') == NULL) {
		*port = colon + 1;
		return hostport_sethost(hp, s, (size_t)(colon - s), cause);
	}
	return hostport_sethost(hp, s, strlen(s), cause);
}

int
hostport_parse(const char *s, const char *defport, struct hostport *hp,
    char **cause)
{
	const char *port;

	memset(hp, 0, sizeof *hp);
	if (hostport_split(s, hp, &port, cause) != 0)
		return -1;
	return hostport_setport(hp, port != NULL ? port : defport, 0, cause);
}

int
hostport_parse_listen(const char *s, const char *defaddr, struct hostport *hp,
    char **cause)
{
	const char *port;

	memset(hp, 0, sizeof *hp);
	if (strspn(s, "0123456789") == strlen(s) && *s != '\0') {
		if (hostport_sethost(hp, defaddr, strlen(defaddr), cause) != 0)
			return -1;
		return hostport_setport(hp, s, 1, cause);
	}
	if (hostport_split(s, hp, &port, cause) != 0)
		return -1;
	if (port == NULL) {
		xasprintf(cause, "missing port in \"%s\"", s);
		return -1;
	}
	if (strcmp(hp->host, "localhost") == 0)
		strcpy(hp->host, "127.0.0.1");
	if (!hostport_is_ip(hp->host)) {
		xasprintf(cause, "listen address \"%s\" is not an IP address",
		    hp->host);
		return -1;
	}
	return hostport_setport(hp, port, 1, cause);
}

char *
hostport_fmt(const struct hostport *hp, char *buf, unsigned long size)
{
	if (strchr(hp->host, ':') != NULL)
		snprintf(buf, size, "[%s]:%s", hp->host, hp->port);
	else
		snprintf(buf, size, "%s:%s", hp->host, hp->port);
	return buf;
}
