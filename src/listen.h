/*
 * listen.h - the socket the MUA connects to.
 *
 * Running out of file descriptors pauses accepting with a growing backoff
 * (100 ms to 1 s) and one log line per pause, instead of spinning on a
 * listening socket that stays readable.
 */
#ifndef SMTPTAP_LISTEN_H
#define SMTPTAP_LISTEN_H

#include "attrib.h"

struct hostport;
struct listener;
struct service;

/* Binds and listens; on failure *cause says why in one line. */
struct listener	*listen_start(struct service *, const struct hostport *,
		    char **cause) WUNRES;
/* A reload hands the socket to the new settings for the same address. */
void		 listen_set_service(struct listener *, struct service *);
/* The address actually bound ("127.0.0.1:2525"), port 0 resolved. */
const char	*listen_address(const struct listener *);
void		 listen_free(struct listener *);

#endif
