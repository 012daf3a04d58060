/*
 * sink_file.c - the transcript to stderr, stdout or a file.
 *
 * A file is only ever appended to (O_APPEND: logrotate's copytruncate and
 * several writers stay sane), created 0600 because it holds user names and
 * message headers, never opened through a symbolic link someone may have
 * planted, and refused when it already exists readable by others: smtptap
 * will not add credentials-adjacent data to a file it cannot keep private.
 * stdout and stderr are shared with whoever started smtptap, so they are
 * written as they are, blocking; the writer thread absorbs that.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sink.h"
#include "strbuf.h"
#include "xmalloc.h"

/* A JSON line may hold a 64 KiB text escaped once more. */
#define SINK_LINE_CAP	(256 * 1024)

/* Formatted lines not yet written, and where each ends: writer thread only. */
static struct strbuf	 lines;
static size_t		*line_end;
static size_t		 line_max;

/* write(2) until done or an error (errno); returns the bytes written. */
static size_t
sink_write_some(int fd, const char *buf, size_t len)
{
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = write(fd, buf + done, len - done);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			break;
		}
		done += (size_t)n;
	}
	return done;
}

int
sink_write_all(int fd, const char *buf, size_t len)
{
	return sink_write_some(fd, buf, len) == len ? 0 : -1;
}

/* Appends the record's line, cut at SINK_LINE_CAP as a line of its own was. */
static void
sink_lines_add(const struct txent *e, size_t idx, enum tx_format format,
    int flags)
{
	size_t start = lines.len;

	if (idx >= line_max) {
		line_max = line_max ? line_max * 2 : 64;
		line_end = xrealloc(line_end, line_max * sizeof *line_end);
	}
	/* Room for a whole SINK_LINE_CAP after the flush threshold. */
	if (lines.cap == 0)
		strbuf_init(&lines, SINK_BATCH_BYTES + SINK_LINE_CAP);
	txformat_line(e, format, flags, &lines);
	if (lines.len - start > SINK_LINE_CAP) {
		explicit_bzero(lines.buf + start + SINK_LINE_CAP,
		    lines.len - start - SINK_LINE_CAP);
		lines.len = start + SINK_LINE_CAP;
		lines.buf[lines.len] = '\0';
	}
	line_end[idx] = lines.len;
}

/* Writes the n lines gathered; returns how many went out whole. */
static size_t
sink_lines_flush(int fd, size_t n)
{
	size_t done, whole = 0;
	int saved;

	done = sink_write_some(fd, lines.buf, lines.len);
	saved = errno;
	while (whole < n && line_end[whole] <= done)
		whole++;
	/* The lines held transcript text: wiped, but the memory is kept. */
	strbuf_reset(&lines);
	errno = saved;
	return whole;
}

size_t
sink_write_lines(int fd, const struct txent *const *ents, size_t n,
    enum tx_format format, int flags)
{
	size_t i, first = 0, whole;

	for (i = 0; i < n; i++) {
		sink_lines_add(ents[i], i - first, format, flags);
		if (lines.len < SINK_BATCH_BYTES && i + 1 < n)
			continue;
		whole = sink_lines_flush(fd, i + 1 - first);
		if (whole < i + 1 - first)
			return first + whole;
		first = i + 1;
	}
	return n;
}

void
sink_lines_free(void)
{
	strbuf_free(&lines);
	free(line_end);
	line_end = NULL;
	line_max = 0;
}

int
sink_open_file(int dirfd, const char *path, const char *what, char **cause)
{
	struct stat st;
	int fd, saved;

	fd = openat(dirfd, path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW |
	    O_CLOEXEC | O_NOCTTY, 0600);
	if (fd == -1) {
		saved = errno;
		xasprintf(cause, "cannot open %s %s: %s", what, path,
		    errno == ELOOP ? "it is a symbolic link" : strerror(errno));
		errno = saved;
		return -1;
	}
	if (fstat(fd, &st) == -1) {
		saved = errno;
		xasprintf(cause, "cannot open %s %s: %s", what, path,
		    strerror(errno));
		close(fd);
		errno = saved;
		return -1;
	}
	/* Devices and pipes (/dev/null, a FIFO) have their own rules. */
	if (S_ISREG(st.st_mode) && (st.st_mode & 077) != 0) {
		xasprintf(cause, "refusing %s %s: it is readable or writable by "
		    "group or others (mode %04o); chmod 600 it or choose another "
		    "file", what, path, (unsigned)(st.st_mode & 07777));
		close(fd);
		errno = EPERM;
		return -1;
	}
	return fd;
}

/* Colours only for a person at a terminal who has not opted out. */
static int
sink_file_colour(const struct sink *s)
{
	const char *nc = getenv("NO_COLOR");

	if (s->format != TX_FORMAT_TEXT || (nc != NULL && *nc != '\0'))
		return 0;
	return isatty(s->fd);
}

static int
sink_file_open(struct sink *s, char **cause)
{
	if (s->path != NULL) {
		if ((s->fd = sink_open_file(AT_FDCWD, s->path, "transcript",
		    cause)) == -1)
			return -1;
		s->owned = 1;
	}
	s->colour = sink_file_colour(s);
	return 0;
}

static int
sink_file_flags(const struct sink *s)
{
	return TXF_TIMESTAMP | (s->colour ? TXF_COLOUR : 0);
}

static size_t
sink_file_write_batch(struct sink *s, const struct txent *const *ents,
    size_t n)
{
	return sink_write_lines(s->fd, ents, n, s->format, sink_file_flags(s));
}

static int
sink_file_write(struct sink *s, const struct txent *e)
{
	return sink_file_write_batch(s, &e, 1) == 1 ? 0 : -1;
}

static int
sink_file_reopen(struct sink *s, char **cause)
{
	int fd;

	if (!s->owned)
		return 0;
	if ((fd = sink_open_file(AT_FDCWD, s->path, "transcript", cause)) == -1)
		return -1;
	close(s->fd);
	s->fd = fd;
	return 0;
}

static void
sink_file_close(struct sink *s)
{
	if (s->owned && s->fd != -1)
		close(s->fd);
	s->fd = -1;
	s->owned = 0;
	sink_lines_free();
}

const struct sink_ops sink_file_ops = {
	"file",
	sink_file_open,
	sink_file_write,
	sink_file_write_batch,
	sink_file_reopen,
	NULL,
	sink_file_close,
};
