/* transcript.c - format transcript records and write them out. */
#include <sys/stat.h>
#include <sys/time.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "strbuf.h"
#include "transcript.h"
#include "xmalloc.h"

static FILE *transcript_fp;
static int transcript_owned;
static char *transcript_path;

int
transcript_open(const char *path, char **cause)
{
	int fd;

	if (path == NULL) {
		transcript_fp = stderr;
		return 0;
	}
	if (strcmp(path, "-") == 0) {
		transcript_fp = stdout;
		return 0;
	}
	/* The transcript holds user names and message headers: owner only, and
	 * never follow a symlink that someone else may have planted. */
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC,
	    0600);
	if (fd == -1) {
		xasprintf(cause, "cannot open transcript %s: %s", path,
		    errno == ELOOP ? "it is a symbolic link" : strerror(errno));
		return -1;
	}
	if ((transcript_fp = fdopen(fd, "a")) == NULL) {
		xasprintf(cause, "cannot open transcript %s: %s", path,
		    strerror(errno));
		close(fd);
		return -1;
	}
	transcript_owned = 1;
	free(transcript_path);
	transcript_path = xstrdup(path);
	return 0;
}

int
transcript_reopen(void)
{
	FILE *old = transcript_fp;
	char *path, *cause = NULL;

	if (!transcript_owned || transcript_path == NULL)
		return 0;
	/* logrotate moved the file: continue in a new one at the same path. */
	path = xstrdup(transcript_path);
	transcript_owned = 0;
	if (transcript_open(path, &cause) != 0) {
		transcript_fp = old;
		transcript_owned = 1;
		fprintf(stderr, "smtptap: %s; still writing to the old file\n",
		    cause);
		free(cause);
		free(path);
		return -1;
	}
	fclose(old);
	free(path);
	return 0;
}

void
transcript_close(void)
{
	free(transcript_path);
	transcript_path = NULL;
	if (transcript_fp != NULL && transcript_owned)
		fclose(transcript_fp);
	else if (transcript_fp != NULL)
		fflush(transcript_fp);
	transcript_fp = NULL;
	transcript_owned = 0;
}

static void
transcript_prefix(struct strbuf *sb, uint32_t session, const char *dir)
{
	struct timeval tv;
	struct tm tm;
	char ts[32];

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
	if (session == TRANSCRIPT_NOSESSION)
		strbuf_printf(sb, "%s.%03ldZ - %s ", ts, (long)tv.tv_usec / 1000, dir);
	else
		strbuf_printf(sb, "%s.%03ldZ %08x %s ", ts,
		    (long)tv.tv_usec / 1000, session, dir);
}

static void
transcript_write(struct strbuf *sb)
{
	FILE *fp = transcript_fp != NULL ? transcript_fp : stderr;
	size_t i;

	/* Text arrives escaped; this is the last guard against a forged line. */
	for (i = 0; i < sb->len; i++)
		if (sb->buf[i] == '\n' || sb->buf[i] == '\r')
			sb->buf[i] = '?';
	strbuf_addc(sb, '\n');
	fwrite(sb->buf, 1, sb->len, fp);
	fflush(fp);
}

void
transcript_line(uint32_t session, const char *dir, const char *text, size_t len)
{
	struct strbuf sb;

	strbuf_init(&sb, 0);
	transcript_prefix(&sb, session, dir);
	strbuf_add(&sb, text, len);
	transcript_write(&sb);
	strbuf_free(&sb);
}

void
transcript_note(uint32_t session, const char *fmt, ...)
{
	struct strbuf sb;
	va_list ap;

	strbuf_init(&sb, 0);
	transcript_prefix(&sb, session, "*");
	va_start(ap, fmt);
	strbuf_vprintf(&sb, fmt, ap);
	va_end(ap);
	transcript_write(&sb);
	strbuf_free(&sb);
}
