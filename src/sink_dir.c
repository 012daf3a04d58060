/*
 * sink_dir.c - one transcript file per session in a directory.
 *
 * A session's records go to "<UTC start>-<session>.log" (such as
 * 20261129T103000Z-1a2b3c4d.log), opened at its first record and closed when
 * the session ends, so that one conversation can be read, mailed or deleted
 * on its own. smtptap's own records (start-up, signals, dropped counts) go to
 * "smtptap.log" in the same directory. Every file follows the rules of
 * sink_open_file(): 0600, appended to, never through a symbolic link, and
 * refused when it is not smtptap's alone or is not a file at all: anyone
 * who may write to the directory can plant one under a name to come.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "sink.h"
#include "strbuf.h"
#include "xmalloc.h"

#define DIR_GLOBAL	"smtptap.log"
/* At most one diagnostic about a session file per this many seconds. */
#define DIR_WARN_INTERVAL	10

struct dir_file {
	uint32_t	 session;
	int		 fd;
};

struct dir_priv {
	int		 dirfd;
	int		 global;	/* smtptap.log */
	struct dir_file	*files;		/* open sessions */
	size_t		 nfiles, size;
};

static int
sink_dir_opendir(const char *path, char **cause)
{
	int fd;

	/* O_NONBLOCK: a FIFO at the path must fail, not wait for a writer. */
	if ((fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NONBLOCK)) ==
	    -1)
		xasprintf(cause, "cannot open transcript directory %s: %s", path,
		    strerror(errno));
	return fd;
}

/* A file of the directory, opened by sink_open_file(), named in full. */
static int
sink_dir_file(const struct sink *s, int dirfd, const char *name,
    const char *what, char **cause)
{
	char *shown;
	int fd, saved;

	xasprintf(&shown, "%s/%s", s->path, name);
	fd = sink_open_file(dirfd, name, shown, what, cause);
	saved = errno;
	free(shown);
	errno = saved;
	return fd;
}

static int
sink_dir_open(struct sink *s, char **cause)
{
	struct dir_priv *p;
	int dirfd, global;

	if ((dirfd = sink_dir_opendir(s->path, cause)) == -1)
		return -1;
	if ((global = sink_dir_file(s, dirfd, DIR_GLOBAL, "transcript",
	    cause)) == -1) {
		close(dirfd);
		return -1;
	}
	p = xcalloc(1, sizeof *p);
	p->dirfd = dirfd;
	p->global = global;
	s->priv = p;
	return 0;
}

static struct dir_file *
sink_dir_find(struct dir_priv *p, uint32_t session)
{
	size_t i;

	for (i = 0; i < p->nfiles; i++)
		if (p->files[i].session == session)
			return &p->files[i];
	return NULL;
}

/*
 * Why a session's file was not opened, with the path: something planted
 * there is worth knowing about, not only an errno. The writer counts the
 * lost records; this says why, at most once per interval.
 */
static void
sink_dir_refused(const struct sink *s, const char *cause)
{
	static time_t last;
	time_t now = time(NULL);
	int saved = errno;

	if (last == 0 || now - last >= DIR_WARN_INTERVAL) {
		last = now;
		log_warnx("transcript: %s", cause);
	}
	errno = saved;
}

/* The session's file, opened at its first record. -1 with errno. */
static int
sink_dir_session_fd(struct sink *s, const struct txent *e)
{
	struct dir_priv *p = s->priv;
	struct dir_file *f;
	struct tm tm;
	char name[64], ts[32], *cause = NULL;
	int fd;

	if ((f = sink_dir_find(p, e->session)) != NULL)
		return f->fd;
	gmtime_r(&e->tv.tv_sec, &tm);
	strftime(ts, sizeof ts, "%Y%m%dT%H%M%SZ", &tm);
	snprintf(name, sizeof name, "%s-%08x.log", ts, e->session);
	if ((fd = sink_dir_file(s, p->dirfd, name, "session transcript",
	    &cause)) == -1) {
		sink_dir_refused(s, cause);
		free(cause);
		return -1;
	}
	if (p->nfiles == p->size) {
		p->size = p->size ? p->size * 2 : 16;
		p->files = xrealloc(p->files, p->size * sizeof *p->files);
	}
	p->files[p->nfiles].session = e->session;
	p->files[p->nfiles].fd = fd;
	p->nfiles++;
	return fd;
}

/* smtptap.log for the program's own records, else the session's file. */
static int
sink_dir_fd(struct sink *s, const struct txent *e)
{
	struct dir_priv *p = s->priv;

	if (e->session == TRANSCRIPT_NOSESSION)
		return p->global;
	return sink_dir_session_fd(s, e);
}

/*
 * One write per run of records for the same file. Runs, not all of a
 * session's records at once: the records reach the files in the order they
 * were made, so a "dropped" notice in smtptap.log still comes before what
 * follows the gap.
 */
static size_t
sink_dir_write_batch(struct sink *s, const struct txent *const *ents,
    size_t n)
{
	size_t i = 0, run, whole;
	int fd;

	while (i < n) {
		if ((fd = sink_dir_fd(s, ents[i])) == -1)
			return i;
		for (run = 1; i + run < n &&
		    ents[i + run]->session == ents[i]->session; run++)
			;
		whole = sink_write_lines(fd, ents + i, run, s->format,
		    TXF_TIMESTAMP);
		i += whole;
		if (whole < run)
			return i;
	}
	return n;
}

static int
sink_dir_write(struct sink *s, const struct txent *e)
{
	return sink_dir_write_batch(s, &e, 1) == 1 ? 0 : -1;
}

static void
sink_dir_end(struct sink *s, uint32_t session)
{
	struct dir_priv *p = s->priv;
	struct dir_file *f;

	if ((f = sink_dir_find(p, session)) == NULL)
		return;
	close(f->fd);
	*f = p->files[--p->nfiles];
}

/*
 * The directory may have been moved away and made again: new sessions go to
 * the one now at the path. Open sessions finish in the file they started.
 */
static int
sink_dir_reopen(struct sink *s, char **cause)
{
	struct dir_priv *p = s->priv;
	int dirfd, global;

	if ((dirfd = sink_dir_opendir(s->path, cause)) == -1)
		return -1;
	if ((global = sink_dir_file(s, dirfd, DIR_GLOBAL, "transcript",
	    cause)) == -1) {
		close(dirfd);
		return -1;
	}
	close(p->global);
	close(p->dirfd);
	p->dirfd = dirfd;
	p->global = global;
	return 0;
}

static void
sink_dir_close(struct sink *s)
{
	struct dir_priv *p = s->priv;
	size_t i;

	if (p == NULL)
		return;
	for (i = 0; i < p->nfiles; i++)
		close(p->files[i].fd);
	free(p->files);
	close(p->global);
	close(p->dirfd);
	free(p);
	s->priv = NULL;
	sink_lines_free();
}

const struct sink_ops sink_dir_ops = {
	"directory",
	sink_dir_open,
	sink_dir_write,
	sink_dir_write_batch,
	sink_dir_reopen,
	sink_dir_end,
	sink_dir_close,
};
