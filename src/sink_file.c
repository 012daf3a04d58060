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

int
sink_write_all(int fd, const char *buf, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, buf, len);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
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
sink_file_write(struct sink *s, const struct txent *e)
{
	struct strbuf sb;
	int r, saved;

	strbuf_init(&sb, SINK_LINE_CAP);
	txformat_line(e, s->format, TXF_TIMESTAMP | (s->colour ? TXF_COLOUR : 0),
	    &sb);
	r = sink_write_all(s->fd, sb.buf, sb.len);
	saved = errno;
	strbuf_free(&sb);
	errno = saved;
	return r;
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
}

const struct sink_ops sink_file_ops = {
	"file",
	sink_file_open,
	sink_file_write,
	sink_file_reopen,
	NULL,
	sink_file_close,
};
