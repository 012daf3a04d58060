/*
 * sink_syslog.c - one syslog message per record, facility mail.
 *
 * The text form without the timestamp (syslog adds its own), or the JSON
 * object with --format json, guarded and bounded as in every other sink
 * (txformat.c). syslog(3) may block on a busy /dev/log; only the writer
 * thread calls it.
 */
#include <string.h>
#include <syslog.h>

#include "sink.h"
#include "strbuf.h"

/*
 * Longest message: rsyslog keeps 8 KiB by default (header included) and
 * cuts the rest, which would leave a JSON record broken; a record cut here
 * stays whole and says so.
 */
#define SYSLOG_LINE_MAX	(8 * 1024 - 512)

static int
sink_syslog_open(struct sink *s, char **cause)
{
	/* LOG_NDELAY: connect now, while /dev/log is still reachable. */
	openlog("smtptap", LOG_PID | LOG_NDELAY, LOG_MAIL);
	return 0;
}

static int
sink_syslog_write(struct sink *s, const struct txent *e)
{
	struct strbuf sb;
	int prio = LOG_INFO;

	if (strcmp(e->kind, "failed") == 0 || strcmp(e->kind, "dropped") == 0)
		prio = LOG_WARNING;
	strbuf_init(&sb, SYSLOG_LINE_MAX);
	txformat_line_max(e, s->format, 0, SYSLOG_LINE_MAX, &sb);
	if (sb.len > 0)
		sb.buf[--sb.len] = '\0';	/* no newline in a message */
	syslog(prio, "%s", sb.buf);
	strbuf_free(&sb);
	return 0;
}

static int
sink_syslog_reopen(struct sink *s, char **cause)
{
	/* A restarted syslog daemon: connect again. */
	closelog();
	openlog("smtptap", LOG_PID | LOG_NDELAY, LOG_MAIL);
	return 0;
}

static void
sink_syslog_close(struct sink *s)
{
	closelog();
}

const struct sink_ops sink_syslog_ops = {
	"syslog",
	sink_syslog_open,
	sink_syslog_write,
	NULL,			/* one message per record anyway */
	sink_syslog_reopen,
	NULL,
	sink_syslog_close,
};
