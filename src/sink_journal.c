/*
 * sink_journal.c - records as structured journal entries.
 *
 * MESSAGE= carries the text form without the timestamp (the journal keeps
 * its own); SMTPTAP_SESSION=, SMTPTAP_SERVICE=, SMTPTAP_DIR=, SMTPTAP_KIND=,
 * SMTPTAP_CODE=, SMTPTAP_ENHANCED= and SMTPTAP_<FIELD>= for every field let
 * "journalctl SMTPTAP_SESSION=1a2b3c4d" pick out one session.
 * sd_journal_sendv() may block on a busy journald; only the writer thread
 * calls it.
 */
#include <sys/uio.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#include "escape.h"
#include "log.h"
#include "sink.h"
#include "strbuf.h"
#include "xmalloc.h"

#define JOURNAL_SOCKET	"/run/systemd/journal/socket"
/* PRIORITY, SYSLOG_IDENTIFIER, SYSLOG_FACILITY, the common keys, cut_bytes. */
#define JOURNAL_FIXED	11
/* Fields are bounded when a record is made; this only keeps offsets sane. */
#define JOURNAL_FIELDS_CAP	(16 * 1024 * 1024)

static int
sink_journal_open(struct sink *s, char **cause)
{
	/* Not fatal: journald may come later; the writer counts what is lost. */
	if (access(JOURNAL_SOCKET, W_OK) != 0)
		log_warnx("transcript: %s: %s; journal records will be dropped "
		    "until journald runs", JOURNAL_SOCKET, strerror(errno));
	return 0;
}

/* "SMTPTAP_<KEY>=value" in sb; returns the offset where it starts. */
static size_t
sink_journal_field(struct strbuf *sb, const char *key, const char *fmt, ...)
    PRINTFLIKE(3, 4);

static size_t
sink_journal_field(struct strbuf *sb, const char *key, const char *fmt, ...)
{
	size_t start = sb->len;
	va_list ap;

	strbuf_adds(sb, "SMTPTAP_");
	for (; *key != '\0'; key++)
		strbuf_addc(sb, isalnum((unsigned char)*key) ?
		    (char)toupper((unsigned char)*key) : '_');
	strbuf_addc(sb, '=');
	va_start(ap, fmt);
	strbuf_vprintf(sb, fmt, ap);
	va_end(ap);
	strbuf_addc(sb, '\0');
	return start;
}

/*
 * "SMTPTAP_<KEY>=value" for a string the record holds: guarded as every
 * output format guards its text, whatever the caller passed.
 */
static size_t
sink_journal_sfield(struct strbuf *sb, const char *key, const char *value)
{
	size_t start = sink_journal_field(sb, key, "%s", "");

	sb->len--;			/* the NUL, back after the value */
	(void)escape_guard(sb, value, strlen(value));
	strbuf_addc(sb, '\0');
	return start;
}

static int
sink_journal_write(struct sink *s, const struct txent *e)
{
	struct strbuf msg, fields;
	struct iovec *iov;
	size_t *offs, n = 0, nf = 0, i, end;
	char buf[40], dir[2] = { e->dir, '\0' };
	const struct tx_field *f;
	int r, prio = LOG_INFO;

	if (strcmp(e->kind, "failed") == 0 || strcmp(e->kind, "dropped") == 0)
		prio = LOG_WARNING;
	strbuf_init(&msg, 256 * 1024);
	strbuf_adds(&msg, "MESSAGE=");
	txformat_line(e, TX_FORMAT_TEXT, 0, &msg);
	msg.len--;			/* no newline */

	/* Offsets, not pointers: the strbuf may move as it grows. */
	strbuf_init(&fields, JOURNAL_FIELDS_CAP);
	offs = xcalloc(JOURNAL_FIXED + e->nfields, sizeof *offs);
	offs[nf++] = fields.len;
	strbuf_printf(&fields, "PRIORITY=%d%c", prio, '\0');
	offs[nf++] = fields.len;
	strbuf_printf(&fields, "SYSLOG_FACILITY=%d%c", LOG_MAIL >> 3, '\0');
	offs[nf++] = fields.len;
	strbuf_printf(&fields, "SYSLOG_IDENTIFIER=smtptap%c", '\0');
	if (e->session != TRANSCRIPT_NOSESSION)
		offs[nf++] = sink_journal_field(&fields, "session", "%08x",
		    e->session);
	if (e->service != NULL)
		offs[nf++] = sink_journal_sfield(&fields, "service",
		    e->service);
	offs[nf++] = sink_journal_sfield(&fields, "dir", dir);
	offs[nf++] = sink_journal_sfield(&fields, "kind", e->kind);
	if (e->code != 0)
		offs[nf++] = sink_journal_field(&fields, "code", "%d", e->code);
	if (txformat_enhanced(e, buf, sizeof buf))
		offs[nf++] = sink_journal_field(&fields, "enhanced", "%s", buf);
	for (i = 0; i < e->nfields; i++) {
		f = &e->fields[i];
		if (f->type == TX_STR && f->str == NULL)
			continue;
		if (f->type == TX_STR)
			offs[nf++] = sink_journal_sfield(&fields, f->key,
			    f->str);
		else if (f->type == TX_BOOL)
			offs[nf++] = sink_journal_field(&fields, f->key, "%s",
			    f->num ? "true" : "false");
		else
			offs[nf++] = sink_journal_field(&fields, f->key, "%lld",
			    f->num);
	}

	if (e->text_cut + e->field_cut > 0)
		offs[nf++] = sink_journal_field(&fields, "cut_bytes", "%zu",
		    e->text_cut + e->field_cut);

	iov = xcalloc(nf + 1, sizeof *iov);
	iov[n].iov_base = msg.buf;
	iov[n++].iov_len = msg.len;
	for (i = 0; i < nf; i++) {
		end = i + 1 < nf ? offs[i + 1] : fields.len;
		iov[n].iov_base = fields.buf + offs[i];
		iov[n++].iov_len = end - offs[i] - 1;	/* without the NUL */
	}
	r = sd_journal_sendv(iov, (int)n);
	free(iov);
	free(offs);
	strbuf_free(&fields);
	strbuf_free(&msg);
	if (r < 0) {
		errno = -r;
		return -1;
	}
	return 0;
}

static int
sink_journal_reopen(struct sink *s, char **cause)
{
	return 0;
}

static void
sink_journal_close(struct sink *s)
{
}

const struct sink_ops sink_journal_ops = {
	"journal",
	sink_journal_open,
	sink_journal_write,
	NULL,			/* one message per record anyway */
	sink_journal_reopen,
	NULL,
	sink_journal_close,
};
