/*
 * session.c - the life of one MUA connection.
 *
 *   CONNECTING  resolve and connect (upstream.c)
 *   GREETING    wait for the upstream's greeting (after the handshake in
 *               implicit mode), hold it back from the MUA
 *   EHLO        smtptap's own EHLO; does the server offer STARTTLS?
 *   STARTTLS    STARTTLS sent; expect 220 and not one byte more
 *   HANDSHAKE   TLS handshake and verification
 *   RELAY       the held greeting goes to the MUA; bytes flow both ways
 *   CLIENT_GONE the MUA closed; deliver the server's last words until it closes
 *   FLUSHING    the upstream is gone (or never came): flush the MUA's output,
 *               then close
 *
 * The MUA's bytes are not read until RELAY, so nothing it says can reach the
 * upstream before TLS is up and verified. Every state has a deadline on the
 * one session timer.
 */
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "escape.h"
#include "log.h"
#include "options.h"
#include "relay_io.h"
#include "reply.h"
#include "session.h"
#include "session_int.h"
#include "smtp.h"
#include "strbuf.h"
#include "tls.h"
#include "transcript.h"
#include "txlimit.h"
#include "upstream.h"
#include "xmalloc.h"

/* Sessions open in all services and all configuration generations. */
static unsigned session_count;

static void	session_up_writecb(struct bufferevent *, void *);
static void	session_up_eventcb(struct bufferevent *, short, void *);
static void	session_cli_readcb(struct bufferevent *, void *);
static void	session_cli_writecb(struct bufferevent *, void *);
static void	session_cli_eventcb(struct bufferevent *, short, void *);

const char *
session_state_name(enum session_state st)
{
	switch (st) {
	case SESSION_CONNECTING:
		return "CONNECTING";
	case SESSION_GREETING:
		return "GREETING";
	case SESSION_EHLO:
		return "EHLO";
	case SESSION_STARTTLS:
		return "STARTTLS";
	case SESSION_HANDSHAKE:
		return "HANDSHAKE";
	case SESSION_RELAY:
		return "RELAY";
	case SESSION_CLIENT_GONE:
		return "CLIENT_GONE";
	case SESSION_FLUSHING:
		return "FLUSHING";
	case SESSION_CLOSED:
		return "CLOSED";
	}
	return "?";
}

static void
session_arm(struct session *s, double seconds)
{
	struct timeval tv;

	tv.tv_sec = (time_t)seconds;
	tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
	evtimer_add(s->timer, &tv);
}

/* The next relay deadline: idle, or the end of the session's lifetime. */
static double
session_relay_deadline(const struct session *s, double idle)
{
	double left = s->svc->opts->session_timeout - session_elapsed(s);

	if (left < idle)
		return left > 0 ? left : 0;
	return idle;
}

/* The only place that changes s->state; each state's deadline is set here. */
void
session_enter(struct session *s, enum session_state next)
{
	const struct options *o = s->svc->opts;

	log_debug("session %08x: %s -> %s", s->id, session_state_name(s->state),
	    session_state_name(next));
	s->state = next;
	if (s->timer == NULL)
		return;
	evtimer_del(s->timer);
	switch (next) {
	case SESSION_GREETING:
	case SESSION_EHLO:
	case SESSION_STARTTLS:
		session_arm(s, o->greeting_timeout);
		break;
	case SESSION_HANDSHAKE:
		session_arm(s, o->tls_timeout);
		break;
	case SESSION_RELAY:
		session_arm(s, session_relay_deadline(s, o->idle_timeout));
		break;
	case SESSION_CLIENT_GONE:
	case SESSION_FLUSHING:
		session_arm(s, FIN_TIMEOUT);
		break;
	default:
		break;
	}
}

static void
session_sockaddr(const struct sockaddr *sa, socklen_t len, char *buf,
    size_t size)
{
	char host[64], port[8];

	if (getnameinfo(sa, len, host, sizeof host, port, sizeof port,
	    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		snprintf(buf, size, "?");
		return;
	}
	if (sa->sa_family == AF_INET6)
		snprintf(buf, size, "[%s]:%s", host, port);
	else
		snprintf(buf, size, "%s:%s", host, port);
}

/*
 * Seconds on the monotonic clock: durations and idle times must not jump
 * when the wall clock is stepped (NTP, an admin's date -s).
 */
double
session_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

double
session_elapsed(const struct session *s)
{
	return session_mono() - s->start;
}

/*
 * The session is gone for good: only now does it stop counting, because its
 * service belongs to a configuration generation that a reload may free as
 * soon as the count reaches 0 (daemon.c), and on_close reads the service.
 */
static void
session_release(struct session *s)
{
	struct service *svc = s->svc;

	free(s);
	svc->sessions--;
	session_count--;
	if (svc->on_close != NULL)
		svc->on_close(svc);
}

static void
session_reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	event_free(s->reaper);
	session_release(s);
}

/*
 * The one teardown path. Callbacks of freed bufferevents are cleared by
 * libevent, and the struct itself is freed from the loop, so a caller may
 * still return through code that holds s. Callers return at once.
 */
void
session_close(struct session *s, const char *why)
{
	if (s->state == SESSION_CLOSED)
		return;
	if (s->parser != NULL) {
		smtp_eof(s->parser, SMTP_CLIENT);
		smtp_eof(s->parser, SMTP_SERVER);
	}
	session_repeats_flush(s);
	if (why != NULL)
		session_record_close(s, why);
	session_verdict(s);
	session_summary(s);
	/* Nothing more about this session: its own file may be closed. */
	transcript_session_end(s->id);
	session_enter(s, SESSION_CLOSED);
	upstream_cancel(s->connector);
	s->connector = NULL;
	if (s->up != NULL)
		bufferevent_free(s->up);
	if (s->cli != NULL)
		bufferevent_free(s->cli);
	s->up = s->cli = NULL;
	tls_peer_clear(&s->peer);
	if (s->parser != NULL)
		smtp_free(s->parser);
	s->parser = NULL;
	strbuf_free(&s->greeting);
	reply_free(&s->reply);
	free(s->failure);
	s->failure = NULL;
	txlimit_free(&s->limit);
	event_free(s->timer);
	s->timer = NULL;
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		s->svc->head = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
	if (s->reaper != NULL)
		event_active(s->reaper, EV_TIMEOUT, 0);
	else
		session_release(s);
}

unsigned
session_count_all(void)
{
	return session_count;
}

void
session_close_all(struct service *svc)
{
	while (svc->head != NULL)
		session_close(svc->head, "smtptap is shutting down");
}

void
session_free_upstream(struct session *s)
{
	if (s->up != NULL)
		bufferevent_free(s->up);
	s->up = NULL;
	upstream_cancel(s->connector);
	s->connector = NULL;
}

/* Flush what the MUA still has to receive, then close. */
void
session_flush_and_close(struct session *s)
{
	if (s->cli == NULL ||
	    evbuffer_get_length(bufferevent_get_output(s->cli)) == 0) {
		session_close(s, NULL);
		return;
	}
	bufferevent_disable(s->cli, EV_READ);
	bufferevent_enable(s->cli, EV_WRITE);
	session_enter(s, SESSION_FLUSHING);
}

/*
 * smtptap's own reply to the MUA: kept to one reply line (RFC 5321: 512
 * with CRLF) with escapes whole, recorded, and given its CRLF.
 */
static void
session_to_client(struct session *s, struct strbuf *line)
{
	struct tx_field f[] = {
		TXF_STR("who", "smtptap"), TXF_STR("to", "client"),
	};

	if (line->len > SESSION_421_MAX) {
		line->len = escape_cut(line->buf, line->len, SESSION_421_MAX - 4);
		strbuf_adds(line, " ...");
	}
	session_recordf(s, '*', "dialogue", 0, f, TX_NFIELDS(f), "to client: %s",
	    strbuf_str(line));
	strbuf_add(line, "\r\n", 2);
}

/*
 * Before the relay, the upstream could not be used: tell the MUA why in its
 * greeting ("421 <status> smtptap: <reason>") and close. The transcript gets
 * the reason and the detail too. Ends the session.
 */
void
session_fail(struct session *s, const char *status, const char *detail,
    const char *fmt, ...)
{
	va_list ap;
	struct strbuf reason, line;

	strbuf_init(&reason, 1024);
	va_start(ap, fmt);
	strbuf_vprintf(&reason, fmt, ap);
	va_end(ap);
	free(s->failure);
	s->failure = xstrdup(strbuf_str(&reason));
	{
		struct tx_field f[] = {
			TXF_STR("reason", strbuf_str(&reason)),
			TXF_STR("detail", detail != NULL && *detail != '\0' ?
			    detail : NULL),
			TXF_STR("status", status),
		};

		if (detail != NULL && *detail != '\0')
			session_recordf(s, '*', "failed",
			    0, f, TX_NFIELDS(f), "failed: %s; %s",
			    strbuf_str(&reason), detail);
		else
			session_recordf(s, '*', "failed",
			    0, f, TX_NFIELDS(f), "failed: %s", strbuf_str(&reason));
	}
	session_free_upstream(s);
	if (s->cli != NULL) {
		strbuf_init(&line, 0);
		strbuf_printf(&line, "421 %s smtptap: %s", status, strbuf_str(&reason));
		session_to_client(s, &line);
		bufferevent_write(s->cli, line.buf, line.len);
		strbuf_free(&line);
	}
	strbuf_free(&reason);
	session_flush_and_close(s);
}

/* The MUA's side is read from here on; the held greeting goes out first. */
void
session_start_relay(struct session *s)
{
	struct evbuffer *held;
	size_t early;

	session_enter(s, SESSION_RELAY);
	s->last_activity = session_mono();
	if (s->parser == NULL)	/* may exist: smtptap's EHLO fed it */
		s->parser = smtp_new(session_parser_cb, s);
	bufferevent_setcb(s->up, session_up_readcb_g, session_up_writecb_g,
	    session_up_eventcb_g, s);
	bufferevent_write(s->cli, s->greeting.buf, s->greeting.len);
	smtp_feed(s->parser, SMTP_SERVER, s->greeting.buf, s->greeting.len);
	s->bytes_s2c += s->greeting.len;
	strbuf_free(&s->greeting);
	reply_free(&s->reply);		/* smtptap's own dialogue is over */
	held = bufferevent_get_input(s->cli);
	if ((early = evbuffer_get_length(held)) > 0)
		session_note(s, "the client sent %zu bytes before the "
		    "greeting; relaying them now", early);
	bufferevent_setwatermark(s->cli, EV_READ, 0, 0);
	bufferevent_enable(s->cli, EV_READ | EV_WRITE);
	bufferevent_enable(s->up, EV_READ | EV_WRITE);
	relay_write_now(s->cli);
	if (early > 0)
		session_cli_readcb(s->cli, s);
}

void
session_up_readcb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	switch (s->state) {
	case SESSION_GREETING:
	case SESSION_EHLO:
	case SESSION_STARTTLS:
		session_dialogue_read(s);
		break;
	case SESSION_RELAY:
		session_relay(s, s->up, s->cli, SMTP_SERVER);
		break;
	case SESSION_CLIENT_GONE:
		session_relay(s, s->up, s->cli, SMTP_SERVER);
		if (s->up_shut_pending)
			session_up_shutdown(s);
		break;
	default:
		/* Bytes during the handshake belong to OpenSSL; none reach here. */
		break;
	}
}

static void
session_up_writecb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	if (s->up_shut_pending) {
		session_up_shutdown(s);
		return;
	}

	if (s->cli_throttled && s->cli != NULL &&
	    evbuffer_get_length(bufferevent_get_output(bev)) <= RELAY_HIWAT / 2) {
		s->cli_throttled = 0;
		bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
		if (s->state == SESSION_RELAY)
			bufferevent_enable(s->cli, EV_READ);
	}
}

static void
session_cli_writecb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	if (s->state == SESSION_FLUSHING &&
	    evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
		session_close(s, NULL);
		return;
	}
	if (s->up_throttled && s->up != NULL &&
	    evbuffer_get_length(bufferevent_get_output(bev)) <= RELAY_HIWAT / 2) {
		s->up_throttled = 0;
		bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
		bufferevent_enable(s->up, EV_READ);
	}
}

static void
session_up_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;

	if (what & BEV_EVENT_CONNECTED) {
		if (s->state == SESSION_HANDSHAKE)
			session_tls_up(s);
		return;
	}
	switch (s->state) {
	case SESSION_HANDSHAKE:
		session_handshake_failed(s, what);
		return;
	case SESSION_GREETING:
		session_fail(s, "4.4.2", NULL, "upstream closed the connection before "
		    "its greeting");
		return;
	case SESSION_EHLO:
	case SESSION_STARTTLS:
		session_fail(s, "4.4.2", NULL, "upstream closed the connection during "
		    "smtptap's %s", s->state == SESSION_EHLO ? "EHLO" : "STARTTLS");
		return;
	case SESSION_RELAY:
	case SESSION_CLIENT_GONE:
		/* Deferred callbacks ran the read callback first; be sure anyway. */
		session_relay(s, s->up, s->cli, SMTP_SERVER);
		if (s->parser != NULL)
			smtp_eof(s->parser, SMTP_SERVER);
		if ((what & BEV_EVENT_EOF) && s->tls_up) {
			/* SMTP itself tells a truncation from a proper end (221,
			 * the reply to "."): say which kind of close this was. */
			SSL *ssl = bufferevent_openssl_get_ssl(bev);

			session_note(s, "upstream closed the connection (%s)",
			    ssl != NULL && (SSL_get_shutdown(ssl) &
			    SSL_RECEIVED_SHUTDOWN) ? "TLS close_notify received" :
			    "without TLS close_notify");
		} else if (what & BEV_EVENT_EOF)
			session_note(s, "upstream closed the connection");
		else {
			struct strbuf why;
			int not_tls;

			strbuf_init(&why, 0);
			tls_describe_error(bev, &why, &not_tls);
			session_note(s, "upstream connection error: %s",
			    strbuf_str(&why));
			strbuf_free(&why);
		}
		session_free_upstream(s);
		session_flush_and_close(s);
		return;
	default:
		return;
	}
}

static void
session_cli_readcb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	if (s->state == SESSION_RELAY) {
		session_relay(s, s->cli, s->up, SMTP_CLIENT);
		return;
	}
	/* Not relaying yet: hold a little, then stop reading (no spinning on
	 * a full input buffer, no unbounded early talk). */
	if (evbuffer_get_length(bufferevent_get_input(bev)) >= PRE_RELAY_HOLD)
		bufferevent_disable(bev, EV_READ);
}

static void
session_cli_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;
	int err = EVUTIL_SOCKET_ERROR();

	if (s->state == SESSION_RELAY) {
		session_relay(s, s->cli, s->up, SMTP_CLIENT);
		if (s->parser != NULL)
			smtp_eof(s->parser, SMTP_CLIENT);
		if (what & BEV_EVENT_EOF) {
			/* A half-close after QUIT still gets the 221. */
			session_note(s, "client closed the connection");
			bufferevent_disable(bev, EV_READ);
			session_enter(s, SESSION_CLIENT_GONE);
			s->cli_throttled = 0;
			bufferevent_setwatermark(s->up, EV_WRITE, 0, 0);
			s->up_shut_pending = 1;
			session_up_shutdown(s);
			return;
		}
	}
	if (what & BEV_EVENT_EOF)
		session_close(s, s->state == SESSION_FLUSHING ||
		    s->state == SESSION_CLIENT_GONE ? "client gone" :
		    "client closed the connection before the upstream was ready");
	else
		session_close(s, err ? evutil_socket_error_to_string(err) :
		    "client connection error");
}

/*
 * A relayed session timed out. When the server's replies end at a boundary,
 * the MUA is told in SMTP's own words (a server may send 421 at any time,
 * RFC 5321 3.8) before the connection closes. Ends the session.
 */
static void
session_end_421(struct session *s, const char *status, const char *why,
    const char *detail)
{
	struct strbuf line;

	session_free_upstream(s);
	/* Only to a client that reads: one that does not would hold us up. */
	if (s->cli != NULL && s->parser != NULL && smtp_reply_boundary(s->parser) &&
	    evbuffer_get_length(bufferevent_get_output(s->cli)) == 0) {
		strbuf_init(&line, 0);
		strbuf_printf(&line, "421 %s smtptap: %s%s", status, why, detail);
		session_to_client(s, &line);
		bufferevent_write(s->cli, line.buf, line.len);
		strbuf_free(&line);
		session_record_close(s, why);
		session_flush_and_close(s);
		return;
	}
	session_close(s, why);
}

static void
session_timeout_421(struct session *s, const char *why, double limit)
{
	char detail[64];

	snprintf(detail, sizeof detail, " (%gs)", limit);
	session_end_421(s, "4.4.2", why, detail);
}

static void
session_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	const struct options *o = s->svc->opts;
	double idle;

	switch (s->state) {
	case SESSION_GREETING:
		if (o->tls == TLS_MODE_STARTTLS)
			session_fail(s, "4.4.2", NULL, "upstream sent no greeting within "
			    "%gs (a server that expects TLS at once, as on port 465, "
			    "needs --tls implicit)", o->greeting_timeout);
		else
			session_fail(s, "4.4.2", NULL, "upstream sent no greeting within "
			    "%gs", o->greeting_timeout);
		return;
	case SESSION_EHLO:
	case SESSION_STARTTLS:
		session_fail(s, "4.4.2", NULL, "upstream did not answer smtptap's %s "
		    "within %gs", s->state == SESSION_EHLO ? "EHLO" : "STARTTLS",
		    o->greeting_timeout);
		return;
	case SESSION_HANDSHAKE:
		session_fail(s, "4.4.2", NULL, "TLS handshake with upstream timed out "
		    "after %gs", o->tls_timeout);
		return;
	case SESSION_RELAY:
		if (session_elapsed(s) >= o->session_timeout) {
			/* A slow talker that never idles still ends. */
			session_timeout_421(s, "session lasted longer than "
			    "session_timeout", o->session_timeout);
			return;
		}
		idle = session_mono() - s->last_activity;
		if (idle < o->idle_timeout) {
			session_arm(s, session_relay_deadline(s,
			    o->idle_timeout - idle));
			return;
		}
		session_timeout_421(s, "idle timeout", o->idle_timeout);
		return;
	case SESSION_CLIENT_GONE:
		session_close(s, "upstream did not close after the client left");
		return;
	case SESSION_FLUSHING:
		session_close(s, "client did not read the rest in time");
		return;
	default:
		return;
	}
}

/* The connector finished: a connected socket, or why not. */
static void
session_connected_cb(struct bufferevent *bev, const char *status,
    const char *reason, void *arg)
{
	struct session *s = arg;
	const struct options *o = s->svc->opts;

	s->connector = NULL;
	if (bev == NULL) {
		session_fail(s, status, NULL, "%s", reason);
		return;
	}
	s->up = bev;
	relay_nodelay(bufferevent_getfd(bev), 1);
	bufferevent_set_max_single_read(bev, MAX_SINGLE_READ);
	bufferevent_set_max_single_write(bev, MAX_SINGLE_WRITE);
	relay_reader_install(bev);
	bufferevent_setcb(bev, session_up_readcb_g, session_up_writecb_g,
	    session_up_eventcb_g, s);
	/* EV_WRITE is on since the bufferevent was made; enabling it again
	 * would arm the write event with nothing to write: two epoll_ctl
	 * calls and a loop turn for nothing. */
	bufferevent_enable(bev, EV_READ);
	if (o->tls == TLS_MODE_IMPLICIT) {
		session_start_tls(s);
		return;
	}
	reply_init(&s->reply);
	session_enter(s, SESSION_GREETING);
}

/*
 * Allocation failures while a session's callback runs are that session's:
 * it ends with a 421 once the callback returns (xmalloc.h). Callbacks may
 * nest (a write triggers a write callback): the outermost one decides.
 */
static int	session_guard_depth;

static void
session_guard_enter(struct session *s)
{
	if (session_guard_depth++ == 0)
		xmalloc_blame(&s->oom);
}

static void
session_guard_leave(struct session *s)
{
	if (--session_guard_depth > 0)
		return;
	xmalloc_blame(NULL);
	if (!s->oom) {
		/* Another thread (the transcript writer) may have spent it. */
		(void)xmalloc_refill();
		return;
	}
	s->oom = 0;
	if (s->state != SESSION_CLOSED) {
		log_warnx("session %08x: out of memory: closing it", s->id);
		if (s->state < SESSION_RELAY)
			session_fail(s, "4.3.0", NULL, "out of memory");
		else {
			free(s->failure);
			s->failure = xstrdup("out of memory");
			session_end_421(s, "4.3.0", "out of memory", "");
		}
	}
	/* Ready for the next failure, or the one after that is fatal. */
	if (xmalloc_refill() != 0)
		log_warnx("out of memory: no reserve left");
}

#define SESSION_GUARDED(scope, name, params, args)			\
scope void								\
name##_g params								\
{									\
	struct session *s = arg;					\
									\
	session_guard_enter(s);						\
	name args;							\
	session_guard_leave(s);						\
}

SESSION_GUARDED(extern, session_up_readcb,
    (struct bufferevent *bev, void *arg), (bev, arg))
SESSION_GUARDED(extern, session_up_writecb,
    (struct bufferevent *bev, void *arg), (bev, arg))
SESSION_GUARDED(extern, session_up_eventcb,
    (struct bufferevent *bev, short what, void *arg), (bev, what, arg))
SESSION_GUARDED(extern, session_cli_readcb,
    (struct bufferevent *bev, void *arg), (bev, arg))
SESSION_GUARDED(extern, session_cli_writecb,
    (struct bufferevent *bev, void *arg), (bev, arg))
SESSION_GUARDED(extern, session_cli_eventcb,
    (struct bufferevent *bev, short what, void *arg), (bev, what, arg))
SESSION_GUARDED(static, session_timer_cb,
    (evutil_socket_t fd, short what, void *arg), (fd, what, arg))
SESSION_GUARDED(static, session_connected_cb, (struct bufferevent *bev,
    const char *status, const char *reason, void *arg),
    (bev, status, reason, arg))

static void
session_begin(struct session *s, struct service *svc, int fd,
    const struct sockaddr *sa, socklen_t salen)
{
	struct sockaddr_storage local;
	socklen_t locallen = sizeof local;

	s->svc = svc;
	do {
		if (RAND_bytes((unsigned char *)&s->id, sizeof s->id) != 1)
			s->id = (uint32_t)random();
	} while (s->id == 0);
	s->start = session_mono();
	strbuf_init(&s->greeting, GREETING_MAX);
	txlimit_init(&s->limit, svc->opts->max_records);
	session_sockaddr(sa, salen, s->client_addr, sizeof s->client_addr);
	if (getsockname(fd, (struct sockaddr *)&local, &locallen) == 0)
		session_sockaddr((struct sockaddr *)&local, locallen,
		    s->local_addr, sizeof s->local_addr);
	session_report_connect(s);
	svc->sessions++;
	svc->total++;
	session_count++;
	s->next = svc->head;
	if (svc->head != NULL)
		svc->head->prev = s;
	svc->head = s;

	s->timer = evtimer_new(svc->base, session_timer_cb_g, s);
	s->reaper = event_new(svc->base, -1, 0, session_reap_cb, s);
	s->cli = bufferevent_socket_new(svc->base, fd,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (s->timer == NULL || s->reaper == NULL || s->cli == NULL) {
		log_warnx("session %08x: out of resources", s->id);
		if (s->cli == NULL)
			evutil_closesocket(fd);
		session_close(s, "out of resources");
		return;
	}
	relay_nodelay(fd, 1);
	bufferevent_set_max_single_read(s->cli, MAX_SINGLE_READ);
	relay_reader_install(s->cli);
	bufferevent_setcb(s->cli, session_cli_readcb_g, session_cli_writecb_g,
	    session_cli_eventcb_g, s);
	/* Read only to notice a client that leaves early; relay nothing yet. */
	bufferevent_setwatermark(s->cli, EV_READ, 0, PRE_RELAY_HOLD);
	/* EV_WRITE is on from creation (see session_connected_cb). */
	bufferevent_enable(s->cli, EV_READ);

	session_enter(s, SESSION_CONNECTING);
	s->connector = upstream_connect(svc->base, svc->dns, &svc->opts->upstream,
	    svc->opts->connect_timeout, s->id, svc->name, session_connected_cb_g,
	    s);
	if (s->connector == NULL)
		session_fail(s, "4.3.0", NULL, "out of resources");
}

void
session_start(struct service *svc, int fd, const struct sockaddr *sa,
    socklen_t salen)
{
	struct session *s = xcalloc(1, sizeof *s);

	session_guard_enter(s);
	session_begin(s, svc, fd, sa, salen);
	session_guard_leave(s);
}
