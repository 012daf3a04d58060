/*
 * transcript.h - the record of every session, for a person to debug from and
 * for a log pipeline to consume.
 *
 * A record is structured: session, service, direction, kind, reply code,
 * named fields and a text. The text form shows one line per record:
 * "<UTC time with ms> <session> <dir> <text>", where session is 8 hex digits
 * ("-" for the program's own lines) and dir is "C:" (client to server), "S:"
 * (server to client) or "*" (smtptap's note). The JSON form is one object per
 * record (smtptap-json(5)). Callers pass text and fields that are already
 * escaped and masked; transcript_note() takes a format whose peer-supplied
 * parts must have been escaped first.
 *
 * Records are queued and written by one writer thread: no call here ever
 * waits for the destination. When it does not keep up, records are dropped
 * and counted, and the count is written once writing works again.
 */
#ifndef SMTPTAP_TRANSCRIPT_H
#define SMTPTAP_TRANSCRIPT_H

#include <stddef.h>
#include <stdint.h>

#include "attrib.h"

#define TRANSCRIPT_NOSESSION	0

/* Bytes of records held for a slow destination before records are dropped. */
#define TRANSCRIPT_QUEUE_LIMIT	(4 * 1024 * 1024)
/* How long exit waits for the queue to drain. */
#define TRANSCRIPT_FLUSH_MS	2000

enum tx_format {
	TX_FORMAT_TEXT,
	TX_FORMAT_JSON,
};

enum tx_ftype {
	TX_STR,		/* str; NULL is JSON null */
	TX_NUM,		/* num */
	TX_BOOL,	/* num != 0 */
};

struct tx_field {
	const char	*key;	/* lower case, [a-z_]: also SMTPTAP_<KEY> in the journal */
	enum tx_ftype	 type;
	const char	*str;
	long long	 num;
};

#define TXF_STR(k, v)	{ (k), TX_STR, (v), 0 }
#define TXF_NUM(k, v)	{ (k), TX_NUM, NULL, (long long)(v) }
#define TXF_BOOL(k, v)	{ (k), TX_BOOL, NULL, (v) ? 1 : 0 }
#define TX_NFIELDS(a)	(sizeof (a) / sizeof (a)[0])

/*
 * Destinations: NULL or "stderr"; "-" (stdout); "syslog"; "journal" (when
 * built with libsystemd); "dir:PATH" or an existing directory (a file per
 * session); else a file path. transcript_check_dest() only checks the
 * syntax, for option parsing (a usage error); transcript_open() opens it
 * (a runtime error) and starts the writer thread.
 */
int	transcript_check_dest(const char *dest, char **cause) WUNRES;
int	transcript_parse_format(const char *, enum tx_format *) WUNRES;
int	transcript_open(const char *dest, enum tx_format, char **cause) WUNRES;
/* Reopen the file (logrotate): SIGHUP, SIGUSR1. In order with the records. */
void	transcript_reopen(void);
/* The session wrote its last record (a per-session file may be closed). */
void	transcript_session_end(uint32_t session);
/* Drain the queue for at most TRANSCRIPT_FLUSH_MS, stop the writer. */
void	transcript_close(void);
/*
 * Records made on the loop's thread wake the writer once per loop turn, not
 * once each: a wake is a futex call and, on a busy machine, a context
 * switch. transcript_detach() before the loop is freed.
 */
struct event_base;
void	transcript_attach(struct event_base *);
void	transcript_detach(void);

/*
 * dir: 'C', 'S' or '*'. kind: "command", "reply", "connect"... (see
 * smtptap-json(5)). code: the reply code, else 0. service: NULL if none.
 */
void	transcript_record(uint32_t session, const char *service, char dir,
	    const char *kind, int code, const struct tx_field *, size_t nfields,
	    const char *text, size_t len);
void	transcript_recordf(uint32_t session, const char *service, char dir,
	    const char *kind, int code, const struct tx_field *, size_t nfields,
	    const char *fmt, ...) PRINTFLIKE(8, 9);

/* The older forms: dir "C:", "S:" or "*"; kind from dir, or "note". */
void	transcript_line(uint32_t session, const char *dir, const char *text,
	    size_t len);
void	transcript_note(uint32_t session, const char *fmt, ...) PRINTFLIKE(2, 3);

#endif
