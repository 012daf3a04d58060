/*
 * relay_io.c - moving bytes between the two sockets of a session, the only
 * file that knows libevent 2.1.12's bufferevent internals.
 *
 * libevent's socket bufferevent costs system calls that a proxy pays for
 * every relayed piece: an ioctl before every read, 4 KiB reads, and a loop
 * turn plus two epoll_ctl calls before every write. The functions here take
 * the place of those paths on a session's sockets and mirror what libevent
 * does there, errors and callbacks included, so that the rest of smtptap
 * uses the public API only.
 */
#include <sys/socket.h>
#include <sys/uio.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <stdlib.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
/* For the read and write events of a socket bufferevent. */
#include <event2/bufferevent_struct.h>
#include <event2/event.h>

#include "relay_io.h"
#include "xmalloc.h"

/* Relayed bytes per buffer below which they are copied (relay_move). */
#define RELAY_CHAIN_MIN		1024
/*
 * The least room for a read: with the chain's header, one 4 KiB
 * allocation, enough for a command or a small message at once.
 */
#define READ_ROOM_MIN		(4096 - 128)

/*
 * Write what bev has queued at once, from the callback that queued it.
 * Left to libevent, every relayed piece costs an epoll_ctl to add the write
 * event, a loop turn to see it fire, the writev, and an epoll_ctl to delete
 * it again. Here the event that libevent has just added is deleted in the
 * same turn, which the changelist (daemon.c) turns into no system call. What
 * the socket does not take stays queued under that write event, as before.
 * For the TLS filter, the socket is the bufferevent under it. This mirrors
 * bufferevent_writecb() of libevent 2.1.12 (bufferevent_sock.c), errors and
 * write callbacks included.
 */
void
relay_write_now(struct bufferevent *bev)
{
	struct bufferevent *sock;
	struct evbuffer *out;
	evutil_socket_t fd;
	int n, err;

	if (bev == NULL)
		return;
	if ((sock = bufferevent_get_underlying(bev)) == NULL)
		sock = bev;
	out = bufferevent_get_output(sock);
	fd = bufferevent_getfd(sock);
	if (fd < 0 || evbuffer_get_length(out) == 0 ||
	    !(bufferevent_get_enabled(sock) & EV_WRITE))
		return;
	/* A bufferevent keeps the start of its output frozen but for its own
	 * writes. */
	evbuffer_unfreeze(out, 1);
	n = evbuffer_write_atmost(out, fd,
	    bufferevent_get_max_single_write(sock));
	evbuffer_freeze(out, 1);
	if (n <= 0) {
		err = EVUTIL_SOCKET_ERROR();
		if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK || err == EINTR))
			return;
		/* Reported as libevent's own write would, with this errno. */
		bufferevent_disable(sock, EV_WRITE);
		EVUTIL_SET_SOCKET_ERROR(err);
		bufferevent_trigger_event(sock, BEV_EVENT_WRITING |
		    (n < 0 ? BEV_EVENT_ERROR : BEV_EVENT_EOF), 0);
		return;
	}
	if (evbuffer_get_length(out) == 0)
		event_del(&sock->ev_write);
	bufferevent_trigger(sock, EV_WRITE, 0);
}

/*
 * Append all of src to dst. Buffers well filled move whole; bytes spread
 * thin over many buffers are copied into the room dst has, so that what a
 * throttled peer holds costs about its size: the TLS filter can decrypt
 * each small record into a buffer of its own, and moved as they were,
 * the replies of a server to a client that did not read them took 11 MB
 * for the 256 KiB of RELAY_HIWAT (test f50).
 */
void
relay_move(struct evbuffer *dst, struct evbuffer *src)
{
	struct evbuffer_iovec vec[16];
	size_t len = evbuffer_get_length(src), done;
	int n, i;

	/* One buffer into an empty dst moves at no cost in memory either:
	 * the bytes that follow are copied into its room. */
	n = evbuffer_peek(src, -1, NULL, NULL, 0);
	if (n <= 0 || len / (size_t)n >= RELAY_CHAIN_MIN ||
	    (n == 1 && evbuffer_get_length(dst) == 0)) {
		evbuffer_add_buffer(dst, src);
		return;
	}
	while ((n = evbuffer_peek(src, -1, NULL, vec, 16)) > 0) {
		if (n > 16)
			n = 16;
		for (i = 0, done = 0; i < n; i++) {
			evbuffer_add(dst, vec[i].iov_base, vec[i].iov_len);
			done += vec[i].iov_len;
		}
		evbuffer_drain(src, done);
	}
}

/*
 * Small writes go out at once. With Nagle, the last TLS record of a message
 * (the ".") waited for the ACK of the bulk before it, which the peer delays
 * by 40 ms: the bulk benchmark spent 40 ms per message in epoll_wait.
 */
void
relay_nodelay(evutil_socket_t fd, int on)
{
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
}

/* The close_notify left: the TCP half-close follows (relay_fin_after). */
static void
relay_fin_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info,
    void *arg)
{
	struct bufferevent *filter = arg;

	if (info->n_deleted == 0 || evbuffer_get_length(buf) > 0)
		return;
	evbuffer_remove_cb(buf, relay_fin_cb, filter);
	shutdown(bufferevent_getfd(filter), SHUT_WR);
}

void
relay_fin_after(struct bufferevent *filter)
{
	struct bufferevent *sock = bufferevent_get_underlying(filter);
	struct evbuffer *out;

	if (sock == NULL)
		return;
	out = bufferevent_get_output(sock);
	relay_write_now(filter);
	if (evbuffer_get_length(out) == 0)
		shutdown(bufferevent_getfd(filter), SHUT_WR);
	else
		evbuffer_add_cb(out, relay_fin_cb, filter);
}

/*
 * Reading a socket bufferevent, libevent 2.1 asks the kernel how much is
 * waiting (ioctl FIONREAD) before every readv, and reads 4096 bytes at most
 * (EVBUFFER_MAX_READ in buffer.c), whatever bufferevent_set_max_single_read()
 * says: two system calls for a 40-byte command, four or more for 64 KiB of a
 * message. relay_reader_cb() takes the place of libevent's read callback
 * on a session's two sockets and reads with one readv into room that starts
 * at one page and doubles while reads fill it, up to the max single read: a
 * bulk transfer settles at 64 KiB a read, while a command gets a small buffer
 * (the relay may move buffers whole to the other side, where a throttled
 * peer would hold a large buffer for a few bytes). What it does not handle
 * itself, the read high watermark used before the relay and timeouts, goes
 * to libevent's callback. It mirrors bufferevent_readcb() of libevent
 * 2.1.12, EOF and errors included.
 */
static event_callback_fn	 libevent_readcb;
/* Room for the next read, per descriptor (a bufferevent has no spare field,
 * and the descriptor outlives every callback of its bufferevent). */
static size_t			*read_room;
static size_t			 read_room_fds;

static void
relay_reader_cb(evutil_socket_t fd, short what, void *arg)
{
	struct bufferevent *bev = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_iovec vec[2];
	struct iovec iov[2];
	size_t room, got, max = (size_t)bufferevent_get_max_single_read(bev);
	ssize_t n;
	int nvec, i, err;

	/* Room for the header too: a full read is one 2^n allocation. */
	max = max > READ_ROOM_MIN + 128 ? max - 128 : READ_ROOM_MIN;
	if (what != EV_READ || bev->wm_read.high != 0 ||
	    (size_t)fd >= read_room_fds) {
		libevent_readcb(fd, what, arg);
		return;
	}
	room = read_room[fd];
	/* A bufferevent keeps the end of its input frozen between reads. */
	evbuffer_unfreeze(in, 0);
	if ((nvec = evbuffer_reserve_space(in, (ev_ssize_t)room, vec, 2)) <= 0) {
		evbuffer_freeze(in, 0);
		libevent_readcb(fd, what, arg);
		return;
	}
	for (i = 0, got = 0; i < nvec; i++) {
		iov[i].iov_base = vec[i].iov_base;
		iov[i].iov_len = vec[i].iov_len < room - got ? vec[i].iov_len :
		    room - got;
		got += iov[i].iov_len;
	}
	n = readv(fd, iov, nvec);
	err = errno;
	if (n > 0) {
		for (i = 0, got = (size_t)n; i < nvec; i++) {
			vec[i].iov_len = got < iov[i].iov_len ? got : iov[i].iov_len;
			got -= vec[i].iov_len;
		}
		evbuffer_commit_space(in, vec, nvec);
	}
	evbuffer_freeze(in, 0);
	if (n > 0) {
		/* Grow while reads fill their room; back to the least at once. */
		room = (size_t)n < room ? READ_ROOM_MIN : 2 * room;
		read_room[fd] = room > max ? max : room;
		bufferevent_trigger(bev, EV_READ, 0);
		return;
	}
	if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK || err == EINTR))
		return;
	bufferevent_disable(bev, EV_READ);
	EVUTIL_SET_SOCKET_ERROR(n < 0 ? err : 0);
	bufferevent_trigger_event(bev, BEV_EVENT_READING |
	    (n < 0 ? BEV_EVENT_ERROR : BEV_EVENT_EOF), 0);
}

void
relay_reader_install(struct bufferevent *bev)
{
	evutil_socket_t fd = bufferevent_getfd(bev);
	size_t nfds;

	if (fd < 0 || event_pending(&bev->ev_read, EV_READ, NULL))
		return;
	if (libevent_readcb == NULL)
		libevent_readcb = event_get_callback(&bev->ev_read);
	/* Not the socket bufferevent this was written for: leave it be. */
	if (event_get_callback(&bev->ev_read) != libevent_readcb ||
	    event_get_callback_arg(&bev->ev_read) != bev)
		return;
	if ((size_t)fd >= read_room_fds) {
		nfds = (size_t)fd + 256;
		read_room = xrealloc(read_room, nfds * sizeof *read_room);
		read_room_fds = nfds;
	}
	read_room[fd] = READ_ROOM_MIN;
	event_assign(&bev->ev_read, bufferevent_get_base(bev), fd,
	    event_get_events(&bev->ev_read), relay_reader_cb, bev);
}
