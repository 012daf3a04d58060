/*
 * session.h - one MUA connection and its upstream, from accept to close.
 *
 * A session is an explicit state machine (see session.c). It owns both
 * bufferevents, the connector, the timer and the transcript parser; the one
 * teardown path frees all of them. Functions that may end a session say so;
 * their callers return at once afterwards.
 */
#ifndef SMTPTAP_SESSION_H
#define SMTPTAP_SESSION_H

#include <sys/socket.h>

#include <stddef.h>

#include <openssl/ssl.h>

struct event_base;
struct evdns_base;
struct options;
struct session;

/* What every session shares: settings, the TLS context, the loop. */
struct service {
	const char		*name;		/* config [section]; NULL: command line */
	const struct options	*opts;
	SSL_CTX			*ssl_ctx;	/* NULL with --tls none */
	struct event_base	*base;
	struct evdns_base	*dns;
	const char		*ehlo;
	struct session		*head;		/* open sessions */
	unsigned		 sessions;	/* open now */
	unsigned long long	 total;		/* since start */
	/* Called after each session is freed (generations, --once, stop). */
	void			(*on_close)(struct service *);
	void			*owner;		/* for on_close */
};

void	session_start(struct service *, int fd, const struct sockaddr *,
	    socklen_t);
/* Closes every open session of a service (shutdown). */
void	session_close_all(struct service *);
/* Open sessions in every service, old configurations included. */
unsigned session_count_all(void);

#endif
