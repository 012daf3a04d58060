/*
 * session_relay.c - the relayed bytes: every byte goes to the other side
 * unchanged and, as a copy, to the transcript parser; the slow side sets
 * the pace (RELAY_HIWAT); the MUA's close is passed on once its bytes left.
 */
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include <openssl/ssl.h>

#include "relay_io.h"
#include "session.h"
#include "session_int.h"
#include "smtp.h"

static void
session_feed(struct session *s, enum smtp_dir dir, struct evbuffer *buf,
    size_t len)
{
	struct evbuffer_iovec vec[16];
	struct evbuffer_ptr ptr;
	int n, i;
	size_t done = 0;

	evbuffer_ptr_set(buf, &ptr, 0, EVBUFFER_PTR_SET);
	while (done < len) {
		n = evbuffer_peek(buf, (ev_ssize_t)(len - done), &ptr, vec, 16);
		if (n <= 0)
			break;
		if (n > 16)
			n = 16;
		for (i = 0; i < n && done < len; i++) {
			size_t take = vec[i].iov_len;

			if (take > len - done)
				take = len - done;
			smtp_feed(s->parser, dir, vec[i].iov_base, take);
			done += take;
		}
		if (evbuffer_ptr_set(buf, &ptr, done, EVBUFFER_PTR_SET) != 0)
			break;
	}
}

/*
 * Move everything readable from src to dst, after the parser has seen a
 * copy. Throttle src when dst holds too much: the slow side sets the pace.
 */
void
session_relay(struct session *s, struct bufferevent *src,
    struct bufferevent *dst, int dir)
{
	struct evbuffer *in = bufferevent_get_input(src);
	size_t len = evbuffer_get_length(in);

	if (len == 0)
		return;
	s->last_activity = session_mono();
	session_feed(s, dir, in, len);
	if (dir == SMTP_CLIENT)
		s->bytes_c2s += len;
	else
		s->bytes_s2c += len;
	if (dst == NULL) {
		evbuffer_drain(in, len);
		return;
	}
	relay_move(bufferevent_get_output(dst), in);
	relay_write_now(dst);
	if (evbuffer_get_length(bufferevent_get_output(dst)) >= RELAY_HIWAT) {
		bufferevent_disable(src, EV_READ);
		bufferevent_setwatermark(dst, EV_WRITE, RELAY_HIWAT / 2, 0);
		if (dir == SMTP_CLIENT)
			s->cli_throttled = 1;
		else
			s->up_throttled = 1;
	}
}

/*
 * The MUA closed its side: once everything it sent has gone out, tell the
 * server too (TLS close_notify, or a TCP half-close), so that a server that
 * waits for more commands ends the session instead of idling.
 */
void
session_up_shutdown(struct session *s)
{
	SSL *ssl;

	if (s->up == NULL ||
	    evbuffer_get_length(bufferevent_get_output(s->up)) > 0)
		return;
	/* A client that pipelined and half-closed still wants the replies. */
	if (s->parser != NULL && smtp_pending(s->parser) > 0)
		return;
	s->up_shut_pending = 0;
	/* Nagle again for the close, so the server gets the last commands
	 * before it sees the close_notify or FIN, not in the same breath:
	 * aiosmtpd drops pipelined commands that arrive with the close. */
	relay_nodelay(bufferevent_getfd(s->up), 0);
	if (s->tls_up) {
		if ((ssl = bufferevent_openssl_get_ssl(s->up)) != NULL)
			SSL_shutdown(ssl);
		relay_fin_after(s->up);
	} else
		shutdown(bufferevent_getfd(s->up), SHUT_WR);
}
