/* listen.c - bind, accept, and back off when out of file descriptors. */
#include <sys/socket.h>

#include <netinet/in.h>

#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "hostport.h"
#include "listen.h"
#include "log.h"
#include "options.h"
#include "session.h"
#include "transcript.h"
#include "xmalloc.h"

#define BACKOFF_MIN_MS	100
#define BACKOFF_MAX_MS	1000

struct listener {
	struct service		*svc;
	struct evconnlistener	*lev;
	int			 fd;
	int			 inherited;	/* from systemd, which keeps it open */
	struct event		*resume;
	int			 backoff_ms;
	unsigned long		 paused;
	char			 addr[80];
};

static void
listen_fmt(const struct sockaddr *sa, socklen_t len, char *buf, size_t size)
{
	char host[64], port[8];

	if (getnameinfo(sa, len, host, sizeof host, port, sizeof port,
	    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		snprintf(buf, size, "?");
	else if (sa->sa_family == AF_INET6)
		snprintf(buf, size, "[%s]:%s", host, port);
	else
		snprintf(buf, size, "%s:%s", host, port);
}

/*
 * Turn a client away with one reply line. The socket is fresh, so its send
 * buffer is empty and the short write cannot block; the client sends
 * nothing before the greeting, so closing does not reset the connection.
 */
static void
listen_refuse(struct listener *l, int fd, const char *why, const char *reply)
{
	char line[256];
	int n;

	n = snprintf(line, sizeof line, "%s\r\n", reply);
	if (n > 0 && (size_t)n < sizeof line &&
	    send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) == -1)
		log_debug("refusing a client on %s: %s", l->addr, strerror(errno));
	transcript_note(TRANSCRIPT_NOSESSION, "%s%s%srefused a client on %s: %s",
	    l->svc->name != NULL ? "[" : "", l->svc->name != NULL ?
	    l->svc->name : "", l->svc->name != NULL ? "] " : "", l->addr, why);
	close(fd);
}

static void
listen_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct listener *l = arg;
	struct service *svc = l->svc;
	const struct options *o = svc->opts;
	char peer[80], why[160], reply[200];
	unsigned total;

	l->backoff_ms = 0;
	if (o->nallow != 0 && !cidr_match(o->allow, o->nallow, sa)) {
		listen_fmt(sa, (socklen_t)salen, peer, sizeof peer);
		/* The reply names the address, without its port. */
		if (sa->sa_family == AF_INET6 && peer[0] == '[')
			peer[strcspn(peer, "]") + 1] = '\0';
		else
			peer[strcspn(peer, ":")] = '\0';
		snprintf(why, sizeof why, "%s is not in the allow list", peer);
		snprintf(reply, sizeof reply, "554 5.7.1 smtptap: %s is not "
		    "allowed to use this service", peer);
		listen_refuse(l, fd, why, reply);
		return;
	}
	/* Sessions of a configuration replaced by SIGHUP still count. */
	total = session_count_all();
	if (svc->sessions >= o->max_sessions || total >= o->max_sessions_total) {
		snprintf(why, sizeof why, "too many sessions (%u %s)",
		    svc->sessions >= o->max_sessions ? o->max_sessions :
		    o->max_sessions_total, svc->sessions >= o->max_sessions ?
		    "in this service" : "in all");
		snprintf(reply, sizeof reply, "421 4.3.2 smtptap: too many "
		    "sessions (%u)", svc->sessions >= o->max_sessions ?
		    o->max_sessions : o->max_sessions_total);
		listen_refuse(l, fd, why, reply);
		return;
	}
	session_start(svc, fd, sa, (socklen_t)salen);
}

static void
listen_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;

	evconnlistener_enable(l->lev);
}

static void
listen_error_cb(struct evconnlistener *lev, void *arg)
{
	struct listener *l = arg;
	int err = EVUTIL_SOCKET_ERROR();
	struct timeval tv;

	/* The socket stays readable: without a pause this loop would spin. */
	evconnlistener_disable(lev);
	l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2 : BACKOFF_MIN_MS;
	if (l->backoff_ms > BACKOFF_MAX_MS)
		l->backoff_ms = BACKOFF_MAX_MS;
	if (l->paused++ == 0 || l->backoff_ms < BACKOFF_MAX_MS)
		log_warnx("accept on %s: %s; pausing for %d ms (%u sessions open)",
		    l->addr, evutil_socket_error_to_string(err), l->backoff_ms,
		    l->svc->sessions);
	tv.tv_sec = l->backoff_ms / 1000;
	tv.tv_usec = (l->backoff_ms % 1000) * 1000;
	evtimer_add(l->resume, &tv);
}

/*
 * Sockets that systemd opened for us (socket activation): taken over by the
 * service configured for the same address instead of binding anew.
 */
static int	 listen_inherited[64];
static int	 listen_ninherited = -1;

static void
listen_inherit_init(void)
{
	int n = 0;

	if (listen_ninherited != -1)
		return;
	listen_ninherited = 0;
#ifdef HAVE_SYSTEMD
	if ((n = sd_listen_fds(1)) < 0) {
		log_warnx("socket activation: %s", strerror(-n));
		n = 0;
	}
	for (int i = 0; i < n && listen_ninherited < 64; i++)
		if (sd_is_socket(SD_LISTEN_FDS_START + i, AF_UNSPEC, SOCK_STREAM,
		    1) > 0)
			listen_inherited[listen_ninherited++] = SD_LISTEN_FDS_START + i;
#else
	(void)n;
#endif
}

/* An inherited listening socket bound to exactly this address, or -1. */
static int
listen_take_inherited(const struct sockaddr *want, socklen_t wantlen)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int i, fd;

	listen_inherit_init();
	for (i = 0; i < listen_ninherited; i++) {
		len = sizeof ss;
		fd = listen_inherited[i];
		if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
		    len != wantlen || memcmp(&ss, want, len) != 0)
			continue;
		listen_inherited[i] = listen_inherited[--listen_ninherited];
		return fd;
	}
	return -1;
}

/* Wrap a listening socket; closes it on failure. */
static struct listener *
listen_fd(struct service *svc, int fd, int inherited, const char *where,
    char **cause)
{
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof ss;
	struct listener *l = xcalloc(1, sizeof *l);

	l->svc = svc;
	l->fd = fd;
	l->inherited = inherited;
	evutil_make_socket_nonblocking(fd);
	evutil_make_socket_closeonexec(fd);
	if (getsockname(fd, (struct sockaddr *)&ss, &sslen) == 0)
		listen_fmt((struct sockaddr *)&ss, sslen, l->addr, sizeof l->addr);
	/* An inherited socket is closed by listen_free(), a turn later. */
	l->lev = evconnlistener_new(svc->base, listen_accept_cb, l,
	    LEV_OPT_CLOSE_ON_EXEC | (inherited ? 0 : LEV_OPT_CLOSE_ON_FREE), 0,
	    fd);
	l->resume = evtimer_new(svc->base, listen_resume_cb, l);
	if (l->lev == NULL || l->resume == NULL) {
		xasprintf(cause, "cannot listen on %s: out of resources", where);
		if (l->lev == NULL)
			close(fd);
		listen_free(l);
		return NULL;
	}
	evconnlistener_set_error_cb(l->lev, listen_error_cb);
	return l;
}

struct listener *
listen_start(struct service *svc, const struct hostport *hp, char **cause)
{
	struct evutil_addrinfo hints, *ai = NULL;
	char where[300];
	int fd, one = 1, r;

	hostport_fmt(hp, where, sizeof where);
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = EVUTIL_AI_NUMERICHOST | EVUTIL_AI_PASSIVE |
	    EVUTIL_AI_NUMERICSERV;
	if ((r = evutil_getaddrinfo(hp->host, hp->port, &hints, &ai)) != 0) {
		xasprintf(cause, "cannot listen on %s: %s", where,
		    evutil_gai_strerror(r));
		return NULL;
	}
	if ((fd = listen_take_inherited(ai->ai_addr, ai->ai_addrlen)) != -1) {
		evutil_freeaddrinfo(ai);
		transcript_note(TRANSCRIPT_NOSESSION, "%s: socket from systemd "
		    "(socket activation)", where);
		return listen_fd(svc, fd, 1, where, cause);
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1) {
		xasprintf(cause, "cannot listen on %s: %s", where, strerror(errno));
		evutil_freeaddrinfo(ai);
		return NULL;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (ai->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) == -1 || listen(fd, 511) == -1) {
		xasprintf(cause, "cannot listen on %s: %s", where, strerror(errno));
		close(fd);
		evutil_freeaddrinfo(ai);
		return NULL;
	}
	evutil_freeaddrinfo(ai);
	return listen_fd(svc, fd, 0, where, cause);
}

void
listen_set_service(struct listener *l, struct service *svc)
{
	l->svc = svc;
}

const char *
listen_address(const struct listener *l)
{
	return l->addr;
}

static void
listen_close_cb(evutil_socket_t unused, short what, void *arg)
{
	close((int)(intptr_t)arg);
}

/*
 * The event loop's changelist (daemon.c) removes a deleted event from epoll
 * at the start of the next loop turn. A socket that systemd handed us stays
 * open in systemd after we close it, and so would stay registered, making
 * epoll_wait spin through a shutdown grace period: close it only after that
 * turn has begun. A timer of 1 us, not 0: an event made active at once would
 * run in this turn. Our own sockets are closed at once (LEV_OPT_CLOSE_ON_FREE),
 * so that a stopping smtptap refuses connections from the moment it says so:
 * closing the last descriptor of a socket takes it out of epoll anyway.
 */
static void
listen_close_later(struct event_base *base, int fd)
{
	const struct timeval next_turn = { 0, 1 };

	if (event_base_once(base, -1, EV_TIMEOUT, listen_close_cb,
	    (void *)(intptr_t)fd, &next_turn) != 0)
		close(fd);
}

void
listen_free(struct listener *l)
{
	if (l == NULL)
		return;
	if (l->lev != NULL) {
		struct event_base *base = evconnlistener_get_base(l->lev);

		evconnlistener_free(l->lev);
		if (l->inherited)
			listen_close_later(base, l->fd);
	}
	if (l->resume != NULL)
		event_free(l->resume);
	free(l);
}
