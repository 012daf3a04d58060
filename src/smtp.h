/*
 * smtp.h - observe an SMTP conversation and describe it for the transcript.
 *
 * Pure: no libevent, no OpenSSL, no I/O. The relay feeds copies of the bytes
 * it moves, in each direction, in whatever pieces they arrived; the parser
 * calls back once per transcript record. The relay never depends on what the
 * parser thinks, so a parser mistake can only make the transcript less
 * precise, never change a byte on the wire.
 *
 * Records are already escaped (escape.h) and masked (sasl.h): a record's text
 * never holds a password, token or proof, in any encoding. Any segmentation
 * of the same bytes yields the same records.
 */
#ifndef SMTPTAP_SMTP_H
#define SMTPTAP_SMTP_H

#include <stddef.h>
#include <stdint.h>

enum smtp_dir {
	SMTP_CLIENT,		/* MUA to server */
	SMTP_SERVER,		/* server to MUA */
};

enum smtp_rec_kind {
	SMTP_REC_COMMAND,	/* a client command line */
	SMTP_REC_AUTH,		/* an AUTH command or SASL continuation, decoded and masked */
	SMTP_REC_REPLY,		/* one server reply line (multi-line replies give several) */
	SMTP_REC_HEADER,	/* one header line of a DATA message */
	SMTP_REC_NOTE,		/* the parser's own remark: body summary, desync, line too long */
};

struct smtp_rec {
	enum smtp_dir		 dir;	/* whose bytes the record is about */
	enum smtp_rec_kind	 kind;
	const char		*text;	/* NUL-terminated; valid only during the callback */
	size_t			 len;
	int			 code;	/* reply code for SMTP_REC_REPLY, else 0 */
};

typedef void (*smtp_rec_cb)(const struct smtp_rec *, void *arg);

/* What the session summary line reports. */
struct smtp_stats {
	uint64_t	messages_accepted;	/* 2xx after the end of DATA */
	uint64_t	messages_rejected;	/* 4xx/5xx after the end of DATA, or to DATA */
	uint64_t	commands;
	/*
	 * "" when no AUTH was attempted; a valid SASL mechanism name, or
	 * "<invalid mechanism, N bytes>": never other bytes of the line.
	 */
	char		auth_mech[48];
	char		auth_user[256];		/* escaped; "" when unknown */
	int		auth_code;		/* final reply code to the last AUTH, 0 if none */
};

/* Longest line the parser keeps for display; longer lines are relayed whole
 * and shown truncated with " [+N bytes]". */
#define SMTP_LINE_MAX	4096

struct smtp	*smtp_new(smtp_rec_cb, void *arg);
void		 smtp_feed(struct smtp *, enum smtp_dir, const void *, size_t);
/* The direction ended: flush a partial line as a record marked "[no CRLF]". */
void		 smtp_eof(struct smtp *, enum smtp_dir);
const struct smtp_stats *smtp_stats(const struct smtp *);
/* Client commands the server has not answered yet. */
uint64_t	 smtp_pending(const struct smtp *);
/* The server's bytes end at a reply boundary: smtptap may add a reply. */
int		 smtp_reply_boundary(const struct smtp *);
/*
 * smtptap's own EHLO reply before TLS, one line at a time without its CRLF
 * (STARTTLS mode only): the capability summary compares it with what the
 * server offers the client after TLS.
 */
void		 smtp_pretls_caps(struct smtp *, const char *line, size_t len);

/*
 * One line a person can act on, appended to the strbuf, e.g.
 *   message accepted 250 2.0.0 (1 recipient, 14.2 kB)
 *   AUTH LOGIN (initial-response) as alice rejected 535 5.7.8; the
 *   password ends in LF (0x0a)
 * Escaped and masked like every record. Call it after smtp_eof().
 */
struct strbuf;
void		 smtp_verdict(const struct smtp *, struct strbuf *);

/* Wipes any buffered client bytes (they may hold credentials) and frees. */
void		 smtp_free(struct smtp *);

/*
 * Heap bytes the parser holds besides its own struct and the state of an
 * AUTH exchange in progress: line buffers, the commands awaiting replies,
 * capability lists. Between exchanges only the mechanisms the server
 * offered remain, so that thousands of idle sessions cost little; the unit
 * tests hold the parser to that.
 */
size_t		 smtp_held(const struct smtp *);

#endif
