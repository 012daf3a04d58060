/*
 * sink.h - where transcript records end up, behind one small vtable.
 *
 * Everything here runs on the transcript writer thread only (transcript.c),
 * except open(), which runs once at start-up on the main thread so that a
 * bad destination stops smtptap before it listens. A sink may block: only
 * the writer thread waits for it, never the event loop.
 */
#ifndef SMTPTAP_SINK_H
#define SMTPTAP_SINK_H

#include <sys/time.h>

#include <stddef.h>
#include <stdint.h>

#include "transcript.h"

struct strbuf;

/* A queued record: one allocation, the fields and strings follow it. */
struct txent {
	struct timeval		 tv;		/* when the event loop made it */
	uint32_t		 session;	/* TRANSCRIPT_NOSESSION: global */
	char			 dir;		/* 'C', 'S' or '*' */
	int			 code;		/* reply code, 0 if none */
	const char		*service;	/* NULL: none */
	const char		*kind;
	const char		*text;		/* escaped, masked, NUL-terminated */
	size_t			 len;
	size_t			 text_cut;	/* bytes of text left out when made */
	size_t			 field_cut;	/* the same for the string fields */
	size_t			 nfields;
	const struct tx_field	*fields;
};

struct sink;

struct sink_ops {
	const char	*name;
	/* Main thread, at start-up. Fills *cause on failure. */
	int		(*open)(struct sink *, char **cause);
	/* 0, or -1 with errno set: the record is lost and counted. */
	int		(*write)(struct sink *, const struct txent *);
	/*
	 * Records in order, in as few system calls as the sink can (NULL:
	 * write() each). Returns how many, from the first, were written
	 * whole; when fewer than n, errno says why the next one failed and
	 * those after it were not tried.
	 */
	size_t		(*write_batch)(struct sink *, const struct txent *const *,
			    size_t n);
	/* SIGHUP/SIGUSR1: the old destination stays in use on failure. */
	int		(*reopen)(struct sink *, char **cause);
	/* The session ended: let go of what it held (NULL: nothing to do). */
	void		(*end)(struct sink *, uint32_t session);
	void		(*close)(struct sink *);
};

struct sink {
	const struct sink_ops	*ops;
	char			*path;		/* file or directory, else NULL */
	int			 fd;		/* file sinks: stdout, stderr or a file */
	int			 owned;		/* fd is ours to close */
	enum tx_format		 format;
	int			 colour;	/* ANSI colours (text to a terminal) */
	void			*priv;
};

extern const struct sink_ops sink_file_ops;
extern const struct sink_ops sink_dir_ops;
extern const struct sink_ops sink_syslog_ops;
#ifdef HAVE_SYSTEMD
extern const struct sink_ops sink_journal_ops;
#endif

/* Formatting flags. */
#define TXF_TIMESTAMP	0x1	/* lead with the time (not for syslog/journal) */
#define TXF_COLOUR	0x2	/* ANSI colours */

/* Longest line, newline included, that txformat_line() writes. */
#define TXFORMAT_LINE_MAX	(256 * 1024)

/*
 * The record as one line, with its newline, in the sink's format: never
 * longer than max (nor than the strbuf's cap allows), never with a raw
 * control, bidi or invisible character whatever the record holds.
 */
void	txformat_line_max(const struct txent *, enum tx_format, int flags,
	    size_t max, struct strbuf *);
/* txformat_line_max() with TXFORMAT_LINE_MAX. */
void	txformat_line(const struct txent *, enum tx_format, int flags,
	    struct strbuf *);
/* "2026-11-29T10:30:00.123Z" */
void	txformat_time(const struct timeval *, char *, size_t);
/* "5.7.8" from a reply's text when it carries an enhanced status code. */
int	txformat_enhanced(const struct txent *, char *, size_t);

/*
 * Opens a transcript file (relative to dirfd, or AT_FDCWD): appended to,
 * created 0600, never through a symbolic link, never waiting. Refused, with
 * the reason in words: a FIFO, a socket, a block device, a directory; a
 * regular file owned by another user, readable or writable by group or
 * others, or with more than one hard link. Character devices (/dev/null,
 * a terminal) are written to. shown: the path as messages give it. Returns
 * the fd, or -1 with *cause and errno.
 */
int	sink_open_file(int dirfd, const char *path, const char *shown,
	    const char *what, char **cause);
/* write(2) until done; -1 with errno on error. */
int	sink_write_all(int fd, const char *, size_t);
/*
 * The records as lines, to fd, in one write(2) per SINK_BATCH_BYTES or so
 * rather than one per record. Returns how many were written whole; fewer
 * than n with errno on error. Writer thread only (one shared buffer).
 */
size_t	sink_write_lines(int fd, const struct txent *const *, size_t n,
	    enum tx_format, int flags);
/* Lets go of the buffer of sink_write_lines() (when the sink closes). */
void	sink_lines_free(void);

/* Bytes of formatted lines gathered before they are written. */
#define SINK_BATCH_BYTES	(64 * 1024)

#endif
