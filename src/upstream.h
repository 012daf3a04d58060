/*
 * upstream.h - resolve the upstream name and connect to it, trying every
 * address it resolves to (IPv4 and IPv6) in turn, each with a timeout.
 *
 * The callback runs exactly once, from the event loop, never from inside
 * upstream_connect(): with a connected socket bufferevent (callbacks unset,
 * now the caller's) or with NULL, an RFC 3463 status and a reason. The
 * connector is gone when the callback runs; do not cancel it from there.
 */
#ifndef SMTPTAP_UPSTREAM_H
#define SMTPTAP_UPSTREAM_H

#include <stdint.h>

struct bufferevent;
struct event_base;
struct evdns_base;
struct hostport;
struct upstream;

typedef void (*upstream_cb)(struct bufferevent *, const char *status,
    const char *reason, void *arg);

/* session and service name the transcript records; service may be NULL. */
struct upstream	*upstream_connect(struct event_base *, struct evdns_base *,
		    const struct hostport *, double timeout, uint32_t session,
		    const char *service, upstream_cb, void *arg);
/* Stop trying; the callback will not run. */
void		 upstream_cancel(struct upstream *);

#endif
