/*
 * session_int.h - what session.c (the state machine) and session_report.c
 * (its records) share about one session. Private to those two files.
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

struct bufferevent;
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
