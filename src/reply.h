/*
 * reply.h - strict reader for the replies smtptap itself waits for before TLS
 * (greeting, EHLO, STARTTLS). Pure.
 *
 * A reply is one or more lines "NNN-text" ending with "NNN text" or "NNN".
 * Unlike the transcript parser, this one rejects anything irregular: before
 * TLS the peer is unauthenticated and smtptap acts on what it says.
 */
#ifndef SMTPTAP_REPLY_H
#define SMTPTAP_REPLY_H

#include <stddef.h>

#define REPLY_MAX_LINES	100
#define REPLY_MAX_LINE	2048		/* RFC 5321 says 512; be lenient */
/* Escaped bytes of the first line kept for messages: a 421 stays < 512. */
#define REPLY_SHOW_MAX	300

enum reply_status {
	REPLY_MORE,		/* a continuation line: feed the next one */
	REPLY_DONE,		/* the last line was fed */
	REPLY_ERROR,		/* malformed: r->error says why */
};

struct reply {
	int		 code;		/* from the first line */
	int		 lines;
	int		 starttls;	/* an EHLO line advertised STARTTLS */
	/*
	 * The first line for messages: escaped (escape.c), cut after
	 * REPLY_SHOW_MAX bytes with " [cut: N bytes in all]"; NULL before.
	 */
	char		*first;
	const char	*error;		/* static text: why it is malformed */
};

/*
 * Start reading a reply. The struct must be zeroed or have been read into
 * before: the first line of the last reply is freed. Sessions live long
 * after their dialogue, so the line is allocated, not a fixed array.
 */
void		  reply_init(struct reply *);
/* One line without its CRLF. */
enum reply_status reply_feed(struct reply *, const char *, size_t);
/* The dialogue is over: frees the first line; reply_init() may follow. */
void		  reply_free(struct reply *);

#endif
