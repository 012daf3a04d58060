/*
 * tlssink.c - the benchmark's upstream: a single-threaded SMTP sink on
 * libevent and OpenSSL that is never the bottleneck.
 *
 * It listens on up to three ports: cleartext (the no-proxy baseline),
 * STARTTLS (greeting and EHLO in cleartext, then TLS) and implicit TLS. Every
 * command is answered at once (EHLO, HELO, MAIL, RCPT, RSET, NOOP: 250; DATA:
 * 354; QUIT: 221); message data is discarded up to CRLF.CRLF without being
 * copied. Commands may be pipelined. No TLS session tickets and no session
 * cache, so every client makes a full handshake with certificate
 * verification: all proxies pay the same price.
 *
 *   tlssink -C cert.pem -K key.pem [-p PORT] [-s PORT] [-i PORT]
 *
 * It prints "tlssink ready" on stdout once listening and runs until killed.
 */
#include <sys/types.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

enum listener_kind { KIND_PLAIN, KIND_STARTTLS, KIND_IMPLICIT };

struct conn {
	struct bufferevent	*bev;
	evutil_socket_t		 fd;
	enum listener_kind	 kind;
	int			 tls;		/* TLS is up (or being set up) */
	int			 in_data;	/* discarding message data */
	int			 dstate;	/* end-of-data matcher, see data_scan */
	int			 closing;	/* close once the output is flushed */
};

static struct event_base *base;
static SSL_CTX *ctx;
static unsigned long nconns;

static void conn_readcb(struct bufferevent *, void *);
static void conn_writecb(struct bufferevent *, void *);
static void conn_eventcb(struct bufferevent *, short, void *);

static void
conn_free(struct conn *c)
{
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	free(c);
	nconns--;
}

static void
conn_reply(struct conn *c, const char *s)
{
	bufferevent_write(c->bev, s, strlen(s));
}

/*
 * Find the end of message data, ".\r\n" at the start of a line, without
 * copying: dstate 0 inside a line, 1 at the start of a line, 2 after the
 * ".", 3 after ".\r". Returns 1 and the bytes used when the end is found.
 */
static int
data_scan(struct conn *c, const unsigned char *p, size_t n, size_t *used)
{
	const unsigned char *lf;
	size_t i = 0;

	while (i < n) {
		switch (c->dstate) {
		case 0:
			if ((lf = memchr(p + i, '\n', n - i)) == NULL) {
				i = n;
				break;
			}
			i = (size_t)(lf - p) + 1;
			c->dstate = 1;
			break;
		case 1:
			if (p[i] == '.') {
				c->dstate = 2;
				i++;
			} else
				c->dstate = 0;
			break;
		case 2:
			if (p[i] == '\r') {
				c->dstate = 3;
				i++;
			} else
				c->dstate = 0;
			break;
		case 3:
			if (p[i] == '\n') {
				*used = i + 1;
				c->dstate = 0;
				return 1;
			}
			c->dstate = 0;
			break;
		}
	}
	*used = n;
	return 0;
}

/* Discard message data; returns 1 when the end was found (and answered). */
static int
conn_data(struct conn *c, struct evbuffer *in)
{
	struct evbuffer_iovec vec[8];
	size_t total = 0, used;
	int n, i;

	while (evbuffer_get_length(in) > 0) {
		n = evbuffer_peek(in, -1, NULL, vec, 8);
		if (n > 8)
			n = 8;
		total = 0;
		for (i = 0; i < n; i++) {
			if (data_scan(c, vec[i].iov_base, vec[i].iov_len, &used)) {
				evbuffer_drain(in, total + used);
				c->in_data = 0;
				conn_reply(c, "250 2.0.0 Ok: discarded\r\n");
				return 1;
			}
			total += used;
		}
		evbuffer_drain(in, total);
	}
	return 0;
}

static void
conn_starttls(struct conn *c)
{
	static const char ok[] = "220 2.0.0 Ready to start TLS\r\n";
	struct bufferevent *old = c->bev;
	SSL *ssl;

	/* The replies before were read by the client, so the output is empty;
	 * the 220 goes out in cleartext before the socket changes hands. */
	if (evbuffer_get_length(bufferevent_get_output(old)) != 0 ||
	    evbuffer_get_length(bufferevent_get_input(old)) != 0 ||
	    send(c->fd, ok, sizeof ok - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof ok - 1)) {
		bufferevent_free(old);
		c->bev = NULL;
		close(c->fd);
		conn_free(c);
		return;
	}
	bufferevent_setcb(old, NULL, NULL, NULL, NULL);
	bufferevent_free(old);		/* not BEV_OPT_CLOSE_ON_FREE: fd stays */
	c->bev = NULL;
	if ((ssl = SSL_new(ctx)) == NULL ||
	    (c->bev = bufferevent_openssl_socket_new(base, c->fd, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		close(c->fd);
		conn_free(c);
		return;
	}
	c->tls = 1;
	bufferevent_setcb(c->bev, conn_readcb, conn_writecb, conn_eventcb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static int
verb_is(const char *line, size_t len, const char *verb)
{
	size_t n = strlen(verb);

	return len >= n && strncasecmp(line, verb, n) == 0 &&
	    (len == n || line[n] == ' ');
}

/* One command line; returns 0 if the connection was handed over or freed. */
static int
conn_command(struct conn *c, const char *line, size_t len)
{
	if (verb_is(line, len, "EHLO")) {
		if (c->kind == KIND_STARTTLS && !c->tls)
			conn_reply(c, "250-tlssink\r\n250-PIPELINING\r\n"
			    "250-8BITMIME\r\n250-STARTTLS\r\n250 SIZE 0\r\n");
		else
			conn_reply(c, "250-tlssink\r\n250-PIPELINING\r\n"
			    "250-8BITMIME\r\n250 SIZE 0\r\n");
	} else if (verb_is(line, len, "HELO"))
		conn_reply(c, "250 tlssink\r\n");
	else if (verb_is(line, len, "MAIL") || verb_is(line, len, "RCPT") ||
	    verb_is(line, len, "RSET") || verb_is(line, len, "NOOP"))
		conn_reply(c, "250 2.0.0 Ok\r\n");
	else if (verb_is(line, len, "DATA")) {
		conn_reply(c, "354 End data with <CR><LF>.<CR><LF>\r\n");
		c->in_data = 1;
		c->dstate = 1;
	} else if (verb_is(line, len, "QUIT")) {
		conn_reply(c, "221 2.0.0 Bye\r\n");
		c->closing = 1;
		bufferevent_disable(c->bev, EV_READ);
		return 1;
	} else if (verb_is(line, len, "STARTTLS") && c->kind == KIND_STARTTLS &&
	    !c->tls) {
		conn_starttls(c);
		return 0;
	} else
		conn_reply(c, "502 5.5.2 Command not recognized\r\n");
	return 1;
}

static void
conn_readcb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line;
	size_t len;

	while (!c->closing) {
		if (c->in_data) {
			if (!conn_data(c, in))
				return;
			continue;
		}
		if ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) == NULL) {
			if (evbuffer_get_length(in) > 4096) {
				conn_free(c);
				return;
			}
			return;
		}
		if (!conn_command(c, line, len)) {
			free(line);
			return;
		}
		free(line);
	}
}

static void
conn_writecb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	if (c->closing && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		conn_free(c);
}

static void
conn_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	if (what & BEV_EVENT_CONNECTED)
		return;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		while (ERR_get_error() != 0)
			;
		conn_free(c);
	}
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	enum listener_kind kind = (enum listener_kind)(intptr_t)arg;
	struct conn *c = calloc(1, sizeof *c);
	SSL *ssl;
	int one = 1;

	if (c == NULL) {
		close(fd);
		return;
	}
	nconns++;
	c->fd = fd;
	c->kind = kind;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (kind == KIND_IMPLICIT) {
		if ((ssl = SSL_new(ctx)) == NULL ||
		    (c->bev = bufferevent_openssl_socket_new(base, fd, ssl,
		    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
			close(fd);
			conn_free(c);
			return;
		}
		c->tls = 1;
	} else if ((c->bev = bufferevent_socket_new(base, fd,
	    kind == KIND_PLAIN ? BEV_OPT_CLOSE_ON_FREE : 0)) == NULL) {
		close(fd);
		conn_free(c);
		return;
	}
	bufferevent_setcb(c->bev, conn_readcb, conn_writecb, conn_eventcb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	conn_reply(c, "220 tlssink ESMTP\r\n");
}

static void
listen_on(const char *port, enum listener_kind kind)
{
	struct sockaddr_in sin;
	struct evconnlistener *l;

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((unsigned short)atoi(port));
	l = evconnlistener_new_bind(base, accept_cb, (void *)(intptr_t)kind,
	    LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE, 4096,
	    (struct sockaddr *)&sin, sizeof sin);
	if (l == NULL) {
		fprintf(stderr, "tlssink: cannot listen on 127.0.0.1:%s: %s\n",
		    port, strerror(errno));
		exit(1);
	}
}

static void
usage(void)
{
	fprintf(stderr, "usage: tlssink -C cert.pem -K key.pem [-p plain-port] "
	    "[-s starttls-port] [-i implicit-port]\n");
	exit(64);
}

int
main(int argc, char **argv)
{
	const char *cert = NULL, *key = NULL, *pport = NULL, *sport = NULL,
	    *iport = NULL;
	int ch;

	while ((ch = getopt(argc, argv, "C:K:p:s:i:")) != -1) {
		switch (ch) {
		case 'C': cert = optarg; break;
		case 'K': key = optarg; break;
		case 'p': pport = optarg; break;
		case 's': sport = optarg; break;
		case 'i': iport = optarg; break;
		default: usage();
		}
	}
	if (pport == NULL && sport == NULL && iport == NULL)
		usage();
	if ((sport != NULL || iport != NULL) && (cert == NULL || key == NULL))
		usage();
	signal(SIGPIPE, SIG_IGN);

	if (sport != NULL || iport != NULL) {
		if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL ||
		    SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
		    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
			fprintf(stderr, "tlssink: cannot load %s / %s\n", cert, key);
			ERR_print_errors_fp(stderr);
			return 1;
		}
		/* Full handshakes only: no resumption for anyone. */
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_num_tickets(ctx, 0);
		/* Thousands of idle sessions: no idle read/write buffers. */
		SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	}
	if ((base = event_base_new()) == NULL)
		return 1;
	if (pport != NULL)
		listen_on(pport, KIND_PLAIN);
	if (sport != NULL)
		listen_on(sport, KIND_STARTTLS);
	if (iport != NULL)
		listen_on(iport, KIND_IMPLICIT);
	printf("tlssink ready\n");
	fflush(stdout);
	event_base_dispatch(base);
	return 0;
}
