/*
 * session_upgrade.c - before the relay: smtptap's own dialogue with the
 * upstream and the TLS handshake.
 *
 * In STARTTLS mode smtptap reads the greeting and holds it back, sends its
 * own EHLO, checks that STARTTLS is offered, sends it and expects a 220
 * with not one byte after it (CVE-2011-0411 class), then wraps the socket
 * in TLS; in implicit mode the handshake comes first and the greeting
 * after it. Every reply line is read strictly (reply.c) and recorded; any
 * failure reaches the MUA as a 421 with the reason (session_fail).
 */
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include <openssl/ssl.h>

#include "log.h"
#include "options.h"
#include "relay_io.h"
#include "reply.h"
#include "session.h"
#include "session_int.h"
#include "smtp.h"
#include "strbuf.h"
#include "tls.h"
#include "xmalloc.h"

static void
session_send_ehlo(struct session *s)
{
	char line[300];
	int n;

	n = snprintf(line, sizeof line, "EHLO %s", s->svc->ehlo);
	session_note_line(s, "smtptap", "upstream", line, (size_t)n);
	bufferevent_write(s->up, line, (size_t)n);
	bufferevent_write(s->up, "\r\n", 2);
	relay_write_now(s->up);
	reply_init(&s->reply);
	session_enter(s, SESSION_EHLO);
}

static void
session_send_starttls(struct session *s)
{
	session_note_line(s, "smtptap", "upstream", "STARTTLS", 8);
	bufferevent_write(s->up, "STARTTLS\r\n", 10);
	relay_write_now(s->up);
	reply_init(&s->reply);
	session_enter(s, SESSION_STARTTLS);
}

/* Wrap the upstream socket in TLS: the filter does both modes alike. */
void
session_start_tls(struct session *s)
{
	const struct options *o = s->svc->opts;
	const char *name = o->sni != NULL ? o->sni : o->upstream.host;
	struct bufferevent *filter;
	char *cause = NULL;
	SSL *ssl;

	s->peer.enforce = o->verify;
	if ((ssl = tls_ssl_new(s->svc->ssl_ctx, name, &s->peer, &cause)) == NULL) {
		session_fail(s, "4.7.0", NULL, "%s", cause);
		free(cause);
		return;
	}
	bufferevent_setcb(s->up, NULL, NULL, NULL, NULL);
	bufferevent_setwatermark(s->up, EV_WRITE, 0, TLS_UNDER_HIWAT);
	filter = bufferevent_openssl_filter_new(s->svc->base, s->up, ssl,
	    BUFFEREVENT_SSL_CONNECTING,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (filter == NULL) {
		/* libevent has freed ssl; s->up is still ours. */
		session_fail(s, "4.7.0", NULL, "cannot start TLS: out of resources");
		return;
	}
	s->up = filter;
	bufferevent_openssl_set_allow_dirty_shutdown(filter, 1);
	bufferevent_set_max_single_read(filter, MAX_SINGLE_READ);
	bufferevent_set_max_single_write(filter, MAX_SINGLE_WRITE);
	bufferevent_setcb(filter, session_up_readcb_g, session_up_writecb_g,
	    session_up_eventcb_g, s);
	/* Starts the handshake: the ClientHello goes out from here. */
	bufferevent_enable(filter, EV_READ | EV_WRITE);
	relay_write_now(filter);
	{
		struct tx_field f[] = {
			TXF_STR("event", "handshake"), TXF_STR("name", name),
			TXF_BOOL("enforced", o->verify),
		};

		session_recordf(s, '*', "tls", 0, f,
		    TX_NFIELDS(f), "TLS handshake with %s (%s)", name, o->verify ?
		    "verifying" : "verification not enforced: --no-verify");
	}
	session_enter(s, SESSION_HANDSHAKE);
}

/* The handshake finished: say what was negotiated and whom we talk to. */
void
session_tls_up(struct session *s)
{
	SSL *ssl = bufferevent_openssl_get_ssl(s->up);

	/* The handshake's last flight (our Finished) is queued: send it now. */
	relay_write_now(s->up);
	s->tls_up = 1;
	snprintf(s->tls_version, sizeof s->tls_version, "%s", SSL_get_version(ssl));
	session_report_tls(s, ssl);

	if (s->svc->opts->tls == TLS_MODE_IMPLICIT) {
		reply_init(&s->reply);
		session_enter(s, SESSION_GREETING);
		/* The greeting may have come with the last handshake flight. */
		session_up_readcb(s->up, s);
		return;
	}
	session_start_relay(s);
}

void
session_handshake_failed(struct session *s, short what)
{
	const struct options *o = s->svc->opts;
	struct strbuf why, detail;
	int not_tls = 0;

	strbuf_init(&why, 0);
	strbuf_init(&detail, 0);
	if (s->peer.nerrors > 0 && s->peer.enforce) {
		tls_describe_verify(&s->peer, &why, &detail);
		session_fail(s, "4.7.0", strbuf_str(&detail), "%s", strbuf_str(&why));
	} else {
		/* A plaintext server greets and may close at once: its bytes can
		 * arrive with the EOF, so look at OpenSSL's errors first. */
		tls_describe_error(s->up, &detail, &not_tls);
		if (not_tls && o->tls == TLS_MODE_IMPLICIT)
			session_fail(s, "4.7.0", strbuf_str(&detail), "upstream does "
			    "not speak TLS on port %s (try --tls starttls)",
			    o->upstream.port);
		else if (what & BEV_EVENT_EOF)
			session_fail(s, "4.7.0", NULL, "upstream closed the "
			    "connection during the TLS handshake");
		else
			session_fail(s, "4.7.0", NULL, "TLS handshake with upstream "
			    "failed: %s", strbuf_str(&detail));
	}
	strbuf_free(&why);
	strbuf_free(&detail);
}

/* A complete reply to what smtptap itself waited for. May end the session. */
static void
session_reply_done(struct session *s, size_t leftover)
{
	const struct options *o = s->svc->opts;

	switch (s->state) {
	case SESSION_GREETING:
		if (s->reply.code != 220) {
			/* The server's own refusal: pass it on as it is. */
			session_note(s, "upstream refused the session; "
			    "passing its greeting to the client");
			free(s->failure);
			xasprintf(&s->failure, "upstream greeting %d", s->reply.code);
			bufferevent_write(s->cli, s->greeting.buf, s->greeting.len);
			session_free_upstream(s);
			session_flush_and_close(s);
			return;
		}
		if (leftover > 0) {
			session_fail(s, "4.4.2", NULL, "upstream sent %zu bytes after its "
			    "greeting before any command", leftover);
			return;
		}
		if (o->tls == TLS_MODE_STARTTLS)
			session_send_ehlo(s);
		else
			session_start_relay(s);
		return;
	case SESSION_EHLO:
		if (s->reply.code != 250) {
			session_fail(s, "4.7.0", NULL, "upstream rejected smtptap's EHLO: "
			    "%s", s->reply.first);
			return;
		}
		if (!s->reply.starttls) {
			session_fail(s, "4.7.0", NULL, "upstream does not offer STARTTLS");
			return;
		}
		if (leftover > 0) {
			session_fail(s, "4.7.0", NULL, "upstream sent %zu bytes after its "
			    "EHLO reply", leftover);
			return;
		}
		session_send_starttls(s);
		return;
	case SESSION_STARTTLS:
		if (s->reply.code != 220) {
			session_fail(s, "4.7.0", NULL, "upstream refused STARTTLS: %s",
			    s->reply.first);
			return;
		}
		/* CVE-2011-0411 class: nothing may ride along with the 220. */
		if (leftover > 0) {
			session_fail(s, "4.7.0", NULL, "upstream sent %zu bytes after its "
			    "220 to STARTTLS (possible injection)", leftover);
			return;
		}
		session_start_tls(s);
		return;
	default:
		fatalx("session %08x: reply in state %s", s->id,
		    session_state_name(s->state));
	}
}

/* Read reply lines for smtptap's own dialogue. May end the session. */
void
session_dialogue_read(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->up);
	struct evbuffer_ptr eol;
	size_t eol_len, linelen;
	char line[REPLY_MAX_LINE + 3];
	enum reply_status rs;

	for (;;) {
		eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
		if (eol.pos < 0) {
			if (evbuffer_get_length(in) > REPLY_MAX_LINE) {
				session_fail(s, "4.4.2", NULL, "upstream sent a reply line "
				    "longer than %d bytes", REPLY_MAX_LINE);
			}
			return;
		}
		if ((size_t)eol.pos > REPLY_MAX_LINE) {
			session_fail(s, "4.4.2", NULL, "upstream sent a reply line longer "
			    "than %d bytes", REPLY_MAX_LINE);
			return;
		}
		linelen = (size_t)eol.pos + eol_len;
		evbuffer_remove(in, line, linelen);
		if (s->state == SESSION_GREETING) {
			if (s->greeting.len + linelen > GREETING_MAX) {
				session_fail(s, "4.4.2", NULL, "upstream greeting is longer "
				    "than %d bytes", GREETING_MAX);
				return;
			}
			strbuf_add(&s->greeting, line, linelen);
		}
		session_note_line(s, "upstream", "smtptap", line, (size_t)eol.pos);
		/* What the server offers before TLS, for the parser's summary. */
		if (s->state == SESSION_EHLO) {
			if (s->parser == NULL)
				s->parser = smtp_new(session_parser_cb, s);
			smtp_pretls_caps(s->parser, line, (size_t)eol.pos);
		}
		rs = reply_feed(&s->reply, line, (size_t)eol.pos);
		if (rs == REPLY_ERROR) {
			session_fail(s, "4.4.2", NULL, "upstream sent an invalid reply (%s)",
			    s->reply.error);
			return;
		}
		if (rs == REPLY_DONE) {
			session_reply_done(s, evbuffer_get_length(in));
			return;
		}
	}
}
