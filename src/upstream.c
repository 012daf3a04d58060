/* upstream.c - evdns resolution and a connect attempt per address. */
#include <sys/socket.h>

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "hostport.h"
#include "transcript.h"
#include "upstream.h"
#include "xmalloc.h"

enum upstream_state {
	UPSTREAM_START,
	UPSTREAM_RESOLVING,
	UPSTREAM_RESOLVED,
	UPSTREAM_CONNECTING,
};

struct upstream {
	enum upstream_state	 state;
	struct event_base	*base;
	struct evdns_base	*dns;
	struct hostport		 hp;
	struct timeval		 timeout;
	uint32_t		 session;
	const char		*service;	/* for the transcript; may be NULL */
	upstream_cb		 cb;
	void			*arg;

	struct evdns_getaddrinfo_request *dnsreq;
	int			 dns_err;
	int			 dns_timed_out;
	int			 cancelled;	/* freed by the DNS callback */
	struct evutil_addrinfo	*addrs;
	struct evutil_addrinfo	*cur;
	char			 curaddr[64];

	struct bufferevent	*bev;
	struct event		*step;		/* runs the next step from the loop */
	struct event		*timer;		/* DNS and per-address deadline */
	char			*last_error;
};

static void	upstream_try_next(struct upstream *);

/* An "upstream" record: event is trying, connected or error. */
static void
upstream_record(struct upstream *u, const char *event, const char *error,
    const char *text)
{
	struct tx_field f[] = {
		TXF_STR("event", event),
		TXF_STR("host", u->hp.host),
		TXF_STR("port", u->hp.port),
		TXF_STR("address", u->curaddr),
		TXF_STR("error", error),
	};

	transcript_record(u->session, u->service, '*', "upstream", 0, f,
	    TX_NFIELDS(f), text, strlen(text));
}

static void
upstream_free(struct upstream *u)
{
	if (u->bev != NULL)
		bufferevent_free(u->bev);
	if (u->addrs != NULL)
		evutil_freeaddrinfo(u->addrs);
	event_free(u->step);
	event_free(u->timer);
	free(u->last_error);
	free(u);
}

/* Hands the result over and frees the connector first, as upstream.h says. */
static void
upstream_finish(struct upstream *u, struct bufferevent *bev, const char *status,
    const char *reason)
{
	upstream_cb cb = u->cb;
	void *arg = u->arg;
	char *copy = reason != NULL ? xstrdup(reason) : NULL;

	u->bev = NULL;
	upstream_free(u);
	cb(bev, status, copy, arg);
	free(copy);
}

static void
upstream_fail(struct upstream *u, const char *status, const char *fmt, ...)
    PRINTFLIKE(3, 4);

static void
upstream_fail(struct upstream *u, const char *status, const char *fmt, ...)
{
	va_list ap;
	char *reason;

	va_start(ap, fmt);
	if (vasprintf(&reason, fmt, ap) == -1)
		reason = NULL;
	va_end(ap);
	upstream_finish(u, NULL, status, reason != NULL ? reason :
	    "cannot connect to upstream");
	free(reason);
}

static void
upstream_dns_cb(int err, struct evutil_addrinfo *res, void *arg)
{
	struct upstream *u = arg;

	u->dnsreq = NULL;
	if (u->cancelled) {
		if (res != NULL)
			evutil_freeaddrinfo(res);
		upstream_free(u);
		return;
	}
	u->dns_err = err;
	u->addrs = res;
	u->state = UPSTREAM_RESOLVED;
	/* Possibly called from inside evdns_getaddrinfo(): continue from the loop. */
	event_active(u->step, EV_TIMEOUT, 0);
}

static void
upstream_resolved(struct upstream *u)
{
	evtimer_del(u->timer);
	if (u->dns_timed_out) {
		upstream_fail(u, "4.4.3", "cannot resolve upstream host \"%s\": "
		    "no answer within %gs", u->hp.host,
		    (double)u->timeout.tv_sec + u->timeout.tv_usec / 1e6);
		return;
	}
	if (u->dns_err != 0 || u->addrs == NULL) {
		upstream_fail(u, "4.4.3", "cannot resolve upstream host \"%s\": %s",
		    u->hp.host, u->dns_err ? evutil_gai_strerror(u->dns_err) :
		    "no address");
		return;
	}
	u->cur = u->addrs;
	upstream_try_next(u);
}

static void
upstream_step_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upstream *u = arg;
	struct evutil_addrinfo hints;

	switch (u->state) {
	case UPSTREAM_START:
		memset(&hints, 0, sizeof hints);
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_protocol = IPPROTO_TCP;
		u->state = UPSTREAM_RESOLVING;
		evtimer_add(u->timer, &u->timeout);
		u->dnsreq = evdns_getaddrinfo(u->dns, u->hp.host, u->hp.port,
		    &hints, upstream_dns_cb, u);
		/* NULL when the answer came at once (hosts file, IP literal). */
		if (u->state != UPSTREAM_RESOLVING)
			u->dnsreq = NULL;
		break;
	case UPSTREAM_RESOLVED:
		upstream_resolved(u);
		break;
	default:
		break;
	}
}

static void
upstream_addr(const struct sockaddr *sa, char *buf, size_t size)
{
	if (getnameinfo(sa, sa->sa_family == AF_INET6 ?
	    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in),
	    buf, (socklen_t)size, NULL, 0, NI_NUMERICHOST) != 0)
		snprintf(buf, size, "?");
}

static void
upstream_attempt_failed(struct upstream *u, const char *error,
    const char *fmt, ...) PRINTFLIKE(3, 4);

static void
upstream_attempt_failed(struct upstream *u, const char *error,
    const char *fmt, ...)
{
	va_list ap;

	free(u->last_error);
	va_start(ap, fmt);
	if (vasprintf(&u->last_error, fmt, ap) == -1)
		u->last_error = NULL;
	va_end(ap);
	upstream_record(u, "error", error, u->last_error ? u->last_error : "?");
	if (u->bev != NULL) {
		bufferevent_free(u->bev);
		u->bev = NULL;
	}
	evtimer_del(u->timer);
	u->cur = u->cur->ai_next;
	upstream_try_next(u);
}

static void
upstream_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct upstream *u = arg;
	int err = EVUTIL_SOCKET_ERROR();
	const char *error;
	char *text;

	if (what & BEV_EVENT_CONNECTED) {
		evtimer_del(u->timer);
		bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
		xasprintf(&text, "connected to %s port %s", u->curaddr, u->hp.port);
		upstream_record(u, "connected", NULL, text);
		free(text);
		upstream_finish(u, bev, NULL, NULL);
		return;
	}
	error = err ? evutil_socket_error_to_string(err) : "connection failed";
	upstream_attempt_failed(u, error, "cannot connect to upstream %s port "
	    "%s: %s", u->curaddr, u->hp.port, error);
}

static void
upstream_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upstream *u = arg;

	if (u->state == UPSTREAM_RESOLVING) {
		/* The DNS callback follows with EVUTIL_EAI_CANCEL. */
		u->dns_timed_out = 1;
		if (u->dnsreq != NULL)
			evdns_getaddrinfo_cancel(u->dnsreq);
		return;
	}
	if (u->state == UPSTREAM_CONNECTING)
		upstream_attempt_failed(u, "timed out", "connection to upstream "
		    "%s port %s timed out after %gs", u->curaddr, u->hp.port,
		    (double)u->timeout.tv_sec + u->timeout.tv_usec / 1e6);
}

static void
upstream_try_next(struct upstream *u)
{
	const char *error;

	for (; u->cur != NULL; u->cur = u->cur->ai_next) {
		upstream_addr(u->cur->ai_addr, u->curaddr, sizeof u->curaddr);
		{
			char *text;

			xasprintf(&text, "upstream %s port %s: trying %s",
			    u->hp.host, u->hp.port, u->curaddr);
			upstream_record(u, "trying", NULL, text);
			free(text);
		}
		u->bev = bufferevent_socket_new(u->base, -1,
		    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
		if (u->bev == NULL)
			break;
		bufferevent_setcb(u->bev, NULL, NULL, upstream_event_cb, u);
		u->state = UPSTREAM_CONNECTING;
		if (bufferevent_socket_connect(u->bev, u->cur->ai_addr,
		    (int)u->cur->ai_addrlen) == 0) {
			evtimer_add(u->timer, &u->timeout);
			return;
		}
		free(u->last_error);
		error = evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR());
		xasprintf(&u->last_error, "cannot connect to upstream %s port %s: %s",
		    u->curaddr, u->hp.port, error);
		upstream_record(u, "error", error, u->last_error);
		bufferevent_free(u->bev);
		u->bev = NULL;
	}
	upstream_fail(u, "4.4.1", "%s", u->last_error != NULL ? u->last_error :
	    "cannot connect to upstream: out of resources");
}

struct upstream *
upstream_connect(struct event_base *base, struct evdns_base *dns,
    const struct hostport *hp, double timeout, uint32_t session,
    const char *service, upstream_cb cb, void *arg)
{
	struct upstream *u = xcalloc(1, sizeof *u);

	u->service = service;
	u->base = base;
	u->dns = dns;
	u->hp = *hp;
	u->timeout.tv_sec = (time_t)timeout;
	u->timeout.tv_usec = (suseconds_t)((timeout - (double)u->timeout.tv_sec) * 1e6);
	u->session = session;
	u->cb = cb;
	u->arg = arg;
	u->step = event_new(base, -1, 0, upstream_step_cb, u);
	u->timer = evtimer_new(base, upstream_timer_cb, u);
	if (u->step == NULL || u->timer == NULL) {
		upstream_free(u);
		return NULL;
	}
	event_active(u->step, EV_TIMEOUT, 0);
	return u;
}

void
upstream_cancel(struct upstream *u)
{
	if (u == NULL)
		return;
	if (u->dnsreq != NULL) {
		/* evdns calls back later with EVUTIL_EAI_CANCEL; free then. */
		u->cancelled = 1;
		event_del(u->step);
		evtimer_del(u->timer);
		evdns_getaddrinfo_cancel(u->dnsreq);
		return;
	}
	upstream_free(u);
}
