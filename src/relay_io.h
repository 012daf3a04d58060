/*
 * relay_io.h - the socket side of relaying (relay_io.c): write at once,
 * read with one readv into adaptive room, move buffers without bloat, and
 * half-close after a TLS close_notify.
 */
#ifndef SMTPTAP_RELAY_IO_H
#define SMTPTAP_RELAY_IO_H

#include <event2/util.h>

struct bufferevent;
struct evbuffer;

/* Write what bev (or the socket under its TLS filter) has queued, now. */
void	relay_write_now(struct bufferevent *);
/* Append all of src to dst, copying bytes that are spread thin. */
void	relay_move(struct evbuffer *dst, struct evbuffer *src);
/* TCP_NODELAY on or off. */
void	relay_nodelay(evutil_socket_t, int on);
/* Read bev's socket with relay_io's reader; before its read event is added. */
void	relay_reader_install(struct bufferevent *);
/* Half-close the socket under a TLS filter once its close_notify has left. */
void	relay_fin_after(struct bufferevent *filter);

#endif
