/*
 * session_int.h - what the files of a session share, private to them:
 * session.c (the state machine, timers, teardown), session_upgrade.c (the
 * dialogue and TLS before the relay), session_relay.c (the relayed bytes)
 * and session_report.c (the records).
 */
#ifndef SMTPTAP_SESSION_INT_H
#define SMTPTAP_SESSION_INT_H

#include <stdint.h>

#include <openssl/ssl.h>

#include "attrib.h"
#include "reply.h"
#include "strbuf.h"
#include "tls.h"
#include "transcript.h"
#include "txlimit.h"

/* Queued bytes in one direction before the sender is throttled. */
#define RELAY_HIWAT		(256 * 1024)
/* Ciphertext queued under the TLS filter before it stops encrypting. */
#define TLS_UNDER_HIWAT		(64 * 1024)
/* Bytes of an early-talking MUA held back until RELAY. */
#define PRE_RELAY_HOLD		(16 * 1024)
/* smtptap's own 421 to the MUA, without its CRLF. */
#define SESSION_421_MAX		510
/* After one side closed: how long the other gets to finish. */
#define FIN_TIMEOUT		10.0
/* The greeting as held back for the MUA. */
#define GREETING_MAX		(64 * 1024)
/* One read from a peer at most, so no session hogs a loop turn. */
#define MAX_SINGLE_READ		(64 * 1024)
/*
 * One write to the upstream at most: libevent's default, 16 KiB, is one
 * TLS record per loop turn and per writev.
 */
#define MAX_SINGLE_WRITE	(64 * 1024)


struct bufferevent;
struct evbuffer;
struct event;
struct service;
struct smtp;
struct smtp_rec;
struct upstream;

enum session_state {
	SESSION_CONNECTING,
	SESSION_GREETING,
	SESSION_EHLO,
	SESSION_STARTTLS,
	SESSION_HANDSHAKE,
	SESSION_RELAY,
	SESSION_CLIENT_GONE,
	SESSION_FLUSHING,
	SESSION_CLOSED,
};

struct session {
	uint32_t		 id;
	struct service		*svc;
	enum session_state	 state;
	double			 start;		/* monotonic seconds */
	char			 client_addr[80];
	char			 local_addr[80];

	struct bufferevent	*cli;
	struct bufferevent	*up;		/* socket, then the TLS filter on it */
	struct upstream		*connector;
	struct event		*timer;
	struct event		*reaper;	/* frees the session from the loop */

	struct reply		 reply;		/* the reply smtptap is waiting for */
	struct strbuf		 greeting;	/* raw greeting bytes, held back */
	struct smtp		*parser;	/* transcript of the relayed bytes */

	struct tls_peer		 peer;
	int			 tls_up;
	char			 tls_version[32];

	double			 last_activity;	/* monotonic seconds */
	int			 cli_throttled;	/* cli reads off: upstream output full */
	int			 up_throttled;	/* upstream reads off: cli output full */
	int			 up_shut_pending; /* pass the MUA's close on once drained */
	uint64_t		 bytes_c2s;
	uint64_t		 bytes_s2c;
	char			*failure;	/* why the session failed, for the summary */
	struct txlimit		 limit;		/* what the relayed bytes may write */
	int			 oom;		/* an allocation failed for it */
	struct session		*prev, *next;	/* svc->head */
};

/*
 * session.c. Functions that may end a session say so; their callers return
 * at once afterwards (the struct stays valid until the loop's next turn).
 */
const char *session_state_name(enum session_state);
/* The only place that changes s->state; each state's deadline is set here. */
void	session_enter(struct session *, enum session_state);
/* The one teardown path. Ends the session. */
void	session_close(struct session *, const char *why);
/* Before the relay: "421 <status> smtptap: <reason>" to the MUA. Ends it. */
void	session_fail(struct session *, const char *status, const char *detail,
	    const char *fmt, ...) PRINTFLIKE(4, 5);
void	session_free_upstream(struct session *);
/* Flush what the MUA still has to receive, then close. Ends the session. */
void	session_flush_and_close(struct session *);
/* The held greeting goes to the MUA, whose bytes are read from now on. */
void	session_start_relay(struct session *);
void	session_up_readcb(struct bufferevent *, void *);
/* The callbacks libevent calls, each inside the allocation-failure guard. */
void	session_up_readcb_g(struct bufferevent *, void *);
void	session_up_writecb_g(struct bufferevent *, void *);
void	session_up_eventcb_g(struct bufferevent *, short, void *);
void	session_cli_readcb_g(struct bufferevent *, void *);
void	session_cli_writecb_g(struct bufferevent *, void *);
void	session_cli_eventcb_g(struct bufferevent *, short, void *);

/*
 * session_upgrade.c: smtptap's own dialogue with the upstream (greeting,
 * EHLO, STARTTLS) and the TLS handshake. Each may end the session.
 */
void	session_dialogue_read(struct session *);
void	session_start_tls(struct session *);
void	session_tls_up(struct session *);
void	session_handshake_failed(struct session *, short what);

/* session_relay.c: the relayed bytes, through the parser, with backpressure. */
void	session_relay(struct session *, struct bufferevent *src,
	    struct bufferevent *dst, int dir);
/* The MUA closed: pass it on to the upstream once its bytes went out. */
void	session_up_shutdown(struct session *);

/* Seconds on the monotonic clock, and since the session began. */
double	session_mono(void);
double	session_elapsed(const struct session *);

/*
 * session_report.c: every record of a session goes through these, so each
 * carries the session's id and service.
 */
void	session_record(struct session *, char dir, const char *kind, int code,
	    const struct tx_field *, size_t nfields, const char *text,
	    size_t len);
void	session_recordf(struct session *, char dir, const char *kind,
	    int code, const struct tx_field *, size_t nfields, const char *fmt,
	    ...) PRINTFLIKE(7, 8);
/* A note ("*", kind "note") in smtptap's words. */
void	session_note(struct session *, const char *fmt, ...) PRINTFLIKE(2, 3);
/* The "close" record, with its reason. */
void	session_record_close(struct session *, const char *why);
/* "connect from ... to ...". */
void	session_report_connect(struct session *);
/* A line of smtptap's own dialogue before the relay: who sent it, to whom. */
void	session_note_line(struct session *, const char *who, const char *to,
	    const char *line, size_t len);
/* The parser's records (smtp.h), within the session's limits (txlimit.h). */
void	session_parser_cb(const struct smtp_rec *, void *);
/* Repeats counted but not yet reported, before the session's last words. */
void	session_repeats_flush(struct session *);
/* The TLS session, the certificate and the verification result. */
void	session_report_tls(struct session *, SSL *);
void	session_verdict(struct session *);
void	session_summary(struct session *);

#endif
