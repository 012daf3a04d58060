/*
 * sink_file.c - the transcript to stderr, stdout or a file.
 *
 * A file is only ever appended to (O_APPEND: logrotate's copytruncate and
 * several writers stay sane), created 0600 because it holds user names and
 * message headers, never opened through a symbolic link someone may have
 * planted, and refused when it already exists and is not smtptap's alone
 * (another owner, readable by others, a second name): smtptap will not add
 * credentials-adjacent data to a file it cannot keep private. A FIFO is
 * refused without waiting for a reader: a planted one would hold start-up
 * for ever, and its reader could be anyone.
 * stdout and stderr are shared with whoever started smtptap, so they are
 * written as they are, blocking; the writer thread absorbs that.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sink.h"
#include "strbuf.h"
#include "xmalloc.h"

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

/* Appends the record's line: txformat keeps it whole and within its cap. */
static void
sink_lines_add(const struct txent *e, size_t idx, enum tx_format format,
    int flags)
{
	if (idx >= line_max) {
		line_max = line_max ? line_max * 2 : 64;
		line_end = xrealloc(line_end, line_max * sizeof *line_end);
	}
	/* Room for a whole longest line after the flush threshold. */
	if (lines.cap == 0)
		strbuf_init(&lines, SINK_BATCH_BYTES + TXFORMAT_LINE_MAX);
	txformat_line(e, format, flags, &lines);
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

/* "alice (uid 1000)", or "uid 1000" when the name is unknown. */
static void
sink_user(uid_t uid, char *buf, size_t size)
{
	struct passwd pw, *res = NULL;
	char tmp[1024];

	if (getpwuid_r(uid, &pw, tmp, sizeof tmp, &res) == 0 && res != NULL)
		snprintf(buf, size, "%s (uid %lu)", pw.pw_name,
		    (unsigned long)uid);
	else
		snprintf(buf, size, "uid %lu", (unsigned long)uid);
}

/*
 * Why an opened destination must not be written to, in words; NULL when
 * it may. A regular file must be smtptap's alone: its owner, no access
 * for group or others, no other name (a hard link planted in a shared
 * directory could be another user's file, or one of root's). Character
 * devices (/dev/null, a terminal) are system objects nobody can plant.
 */
static const char *
sink_file_refusal(const struct stat *st, char *buf, size_t size)
{
	char owner[160], self[160];

	if (S_ISFIFO(st->st_mode))
		return "it is a FIFO (named pipe), which smtptap does not write "
		    "to; to pipe the transcript to a program, use -o -";
	if (S_ISCHR(st->st_mode))
		return NULL;
	if (!S_ISREG(st->st_mode))
		return "it is not a regular file";
	if (st->st_uid != geteuid()) {
		sink_user(st->st_uid, owner, sizeof owner);
		sink_user(geteuid(), self, sizeof self);
		snprintf(buf, size, "it belongs to %s, not to %s that smtptap "
		    "runs as; remove it or choose another file", owner, self);
		return buf;
	}
	if ((st->st_mode & 077) != 0) {
		snprintf(buf, size, "it is readable or writable by group or "
		    "others (mode %04o); chmod 600 it or choose another file",
		    (unsigned)(st->st_mode & 07777));
		return buf;
	}
	if (st->st_nlink != 1) {
		snprintf(buf, size, "it has %lu hard links, so it may be another "
		    "file as well; remove it or choose another file",
		    (unsigned long)st->st_nlink);
		return buf;
	}
	return NULL;
}

/* Why open(2) failed, in words: ENXIO is a FIFO with no reader or a socket. */
static const char *
sink_open_error(int dirfd, const char *path, int error)
{
	struct stat st;

	if (error == ELOOP)
		return "it is a symbolic link";
	if (error == ENXIO &&
	    fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (S_ISFIFO(st.st_mode))
			return "it is a FIFO (named pipe), which smtptap does "
			    "not write to; to pipe the transcript to a program, "
			    "use -o -";
		if (S_ISSOCK(st.st_mode))
			return "it is a socket";
	}
	if (error == EISDIR)
		return "it is a directory";
	return strerror(error);
}

int
sink_open_file(int dirfd, const char *path, const char *shown,
    const char *what, char **cause)
{
	struct stat st;
	const char *why;
	char buf[512];
	int fd, saved, fl;

	/*
	 * O_NONBLOCK: opening a FIFO with no reader (or a terminal line
	 * waiting for carrier) would wait for ever; it fails at once instead.
	 */
	fd = openat(dirfd, path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW |
	    O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0600);
	if (fd == -1) {
		saved = errno;
		xasprintf(cause, "cannot open %s %s: %s", what, shown,
		    sink_open_error(dirfd, path, saved));
		errno = saved;
		return -1;
	}
	if (fstat(fd, &st) == -1) {
		saved = errno;
		xasprintf(cause, "cannot open %s %s: %s", what, shown,
		    strerror(errno));
		close(fd);
		errno = saved;
		return -1;
	}
	if ((why = sink_file_refusal(&st, buf, sizeof buf)) != NULL) {
		xasprintf(cause, "refusing %s %s: %s", what, shown, why);
		close(fd);
		errno = EPERM;
		return -1;
	}
	/* A terminal is written to as stderr is: the writer thread waits. */
	if ((fl = fcntl(fd, F_GETFL)) != -1)
		(void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
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
		if ((s->fd = sink_open_file(AT_FDCWD, s->path, s->path,
		    "transcript", cause)) == -1)
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
	if ((fd = sink_open_file(AT_FDCWD, s->path, s->path, "transcript",
	    cause)) == -1)
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
