/*
 * txformat.c - a transcript record as a text line or a JSON object.
 *
 * Runs on the writer thread. The text form is the one tests and people have
 * always read; the JSON form is the stable schema of smtptap-json(5). The
 * text arrives escaped (escape.c), so it is printable UTF-8; jansson checks
 * that again, and anything it refuses is escaped once more rather than lost.
 */
#include <sys/time.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "escape.h"
#include "sink.h"
#include "strbuf.h"
#include "transcript.h"

#define ANSI_RESET	"\033[0m"
#define ANSI_CYAN	"\033[36m"
#define ANSI_GREEN	"\033[32m"
#define ANSI_RED	"\033[31m"
#define ANSI_BOLDRED	"\033[1;31m"
#define ANSI_YELLOW	"\033[33m"
#define ANSI_DIM	"\033[2m"

/*
 * Records come many to a second, and gmtime_r() with strftime() cost more
 * than the rest of a text line: the seconds are formatted once per second
 * (per thread: the event loop formats too, before the writer starts).
 */
void
txformat_time(const struct timeval *tv, char *buf, size_t size)
{
	static _Thread_local char secs[24];
	static _Thread_local time_t cached;
	static _Thread_local int valid;
	struct tm tm;
	int ms = (int)(tv->tv_usec / 1000) % 1000;

	if (!valid || tv->tv_sec != cached) {
		gmtime_r(&tv->tv_sec, &tm);
		strftime(secs, sizeof secs, "%Y-%m-%dT%H:%M:%S", &tm);
		cached = tv->tv_sec;
		valid = 1;
	}
	snprintf(buf, size, "%s.%03dZ", secs, ms);
}

/*
 * RFC 3463: "class.subject.detail" right after "NNN " or "NNN-", class the
 * same as the reply's first digit (2, 4 or 5), 1-3 and 1-3 digits.
 */
int
txformat_enhanced(const struct txent *e, char *buf, size_t size)
{
	const char *p = e->text, *start;
	int part, n;

	if (e->code < 200 || e->len < 9 || (p[3] != ' ' && p[3] != '-'))
		return 0;
	p += 4;
	start = p;
	if (*p != '0' + e->code / 100 || (*p != '2' && *p != '4' && *p != '5'))
		return 0;
	p++;
	for (part = 0; part < 2; part++) {
		if (*p++ != '.')
			return 0;
		for (n = 0; isdigit((unsigned char)*p) && n < 4; n++)
			p++;
		if (n < 1 || n > 3)
			return 0;
	}
	if (*p != '\0' && *p != ' ')
		return 0;
	if ((size_t)(p - start) >= size)
		return 0;
	memcpy(buf, start, (size_t)(p - start));
	buf[p - start] = '\0';
	return 1;
}

static const char *
txformat_colour(const struct txent *e)
{
	size_t i;

	switch (e->dir) {
	case 'C':
		return ANSI_CYAN;
	case 'S':
		return e->code >= 400 ? ANSI_RED : ANSI_GREEN;
	default:
		break;
	}
	if (strcmp(e->kind, "failed") == 0 || strcmp(e->kind, "dropped") == 0)
		return ANSI_BOLDRED;
	if (strcmp(e->kind, "verify") == 0) {
		for (i = 0; i < e->nfields; i++)
			if (strcmp(e->fields[i].key, "result") == 0 &&
			    e->fields[i].str != NULL &&
			    strcmp(e->fields[i].str, "ok") != 0)
				return ANSI_YELLOW;
	}
	if (strcmp(e->kind, "summary") == 0 || strcmp(e->kind, "tls") == 0 ||
	    strcmp(e->kind, "listening") == 0)
		return ANSI_YELLOW;
	return ANSI_DIM;
}

/* "%08x " */
static void
txformat_session(uint32_t session, struct strbuf *sb)
{
	static const char hex[] = "0123456789abcdef";
	char buf[9];
	int i;

	for (i = 7; i >= 0; i--, session >>= 4)
		buf[i] = hex[session & 0xf];
	buf[8] = ' ';
	strbuf_add(sb, buf, sizeof buf);
}

static void
txformat_text(const struct txent *e, int flags, struct strbuf *sb)
{
	char ts[40];
	const char *dir;
	size_t start, i;

	/* No printf here: this runs for every record, and it showed. */
	if (flags & TXF_TIMESTAMP) {
		txformat_time(&e->tv, ts, sizeof ts);
		strbuf_adds(sb, ts);
		strbuf_addc(sb, ' ');
	}
	if (e->session == TRANSCRIPT_NOSESSION)
		strbuf_adds(sb, "- ");
	else
		txformat_session(e->session, sb);
	dir = e->dir == 'C' ? "C: " : e->dir == 'S' ? "S: " : "* ";
	if (flags & TXF_COLOUR)
		strbuf_adds(sb, txformat_colour(e));
	strbuf_adds(sb, dir);
	start = sb->len;
	strbuf_add(sb, e->text, e->len);
	/* Text arrives escaped; this is the last guard against a forged line. */
	for (i = start; i < sb->len; i++)
		if (sb->buf[i] == '\n' || sb->buf[i] == '\r' ||
		    ((flags & TXF_COLOUR) && sb->buf[i] == '\033'))
			sb->buf[i] = '?';
	if (flags & TXF_COLOUR)
		strbuf_adds(sb, ANSI_RESET);
}

/* A JSON string from transcript text, escaped again if jansson refuses it. */
static json_t *
txformat_jstr(const char *s, size_t len)
{
	struct strbuf sb;
	json_t *j;

	if ((j = json_stringn(s, len)) != NULL)
		return j;
	strbuf_init(&sb, 0);
	escape_append(&sb, s, len);
	j = json_stringn(sb.len ? sb.buf : "", sb.len);
	strbuf_free(&sb);
	return j != NULL ? j : json_string("?");
}

static void
txformat_json(const struct txent *e, struct strbuf *sb)
{
	json_t *o = json_object();
	const struct tx_field *f;
	char buf[40];
	char *out;
	size_t i;

	txformat_time(&e->tv, buf, sizeof buf);
	json_object_set_new(o, "time", json_string(buf));
	if (e->session == TRANSCRIPT_NOSESSION)
		json_object_set_new(o, "session", json_null());
	else {
		snprintf(buf, sizeof buf, "%08x", e->session);
		json_object_set_new(o, "session", json_string(buf));
	}
	json_object_set_new(o, "service", e->service != NULL ?
	    txformat_jstr(e->service, strlen(e->service)) : json_null());
	buf[0] = e->dir;
	buf[1] = '\0';
	json_object_set_new(o, "dir", json_string(buf));
	json_object_set_new(o, "kind", json_string(e->kind));
	json_object_set_new(o, "text", txformat_jstr(e->text, e->len));
	if (e->code != 0)
		json_object_set_new(o, "code", json_integer(e->code));
	if (txformat_enhanced(e, buf, sizeof buf))
		json_object_set_new(o, "enhanced", json_string(buf));
	for (i = 0; i < e->nfields; i++) {
		f = &e->fields[i];
		/* The common keys above stay what the schema says they are. */
		if (json_object_get(o, f->key) != NULL)
			continue;
		switch (f->type) {
		case TX_STR:
			json_object_set_new(o, f->key, f->str != NULL ?
			    txformat_jstr(f->str, strlen(f->str)) : json_null());
			break;
		case TX_NUM:
			json_object_set_new(o, f->key, json_integer(f->num));
			break;
		case TX_BOOL:
			json_object_set_new(o, f->key, json_boolean(f->num));
			break;
		}
	}
	/* Compact, keys in insertion order, non-ASCII kept as UTF-8. */
	out = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (out == NULL) {
		strbuf_adds(sb, "{\"kind\":\"error\",\"text\":\"cannot encode a "
		    "record\"}");
		return;
	}
	strbuf_adds(sb, out);
	free(out);
}

void
txformat_line(const struct txent *e, enum tx_format format, int flags,
    struct strbuf *sb)
{
	if (format == TX_FORMAT_JSON)
		txformat_json(e, sb);
	else
		txformat_text(e, flags, sb);
	strbuf_addc(sb, '\n');
}
