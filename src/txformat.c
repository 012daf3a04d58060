/*
 * txformat.c - a transcript record as a text line or a JSON object.
 *
 * Runs on the writer thread. The text form is the one tests and people have
 * always read; the JSON form is the stable schema of smtptap-json(5).
 *
 * The text and fields arrive escaped (escape.c), but this is the last place
 * before a file, a terminal, syslog or the journal, so every string passes
 * escape_guard() here too: a caller that forgot to escape costs a "\xNN",
 * never a raw control. Printable ASCII, nearly every record, is checked
 * and copied in one pass.
 *
 * A line has a length limit, and a record over it is cut where it stays
 * one whole line: the text form ends with a mark, the JSON form stays a
 * valid object with "cut_bytes". A cut never splits an escape or a UTF-8
 * sequence.
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
#include "xmalloc.h"

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

/* Room after a cut text for its mark, a colour reset and the newline. */
#define TXF_MARK_ROOM	64
/* A JSON record's keys, numbers and punctuation, besides its strings. */
#define TXF_JSON_FIXED	320
#define TXF_JSON_PERKEY	40

/* What is left of max, and of the buffer's own cap, for one line. */
static size_t
txformat_room(const struct strbuf *sb, size_t max)
{
	size_t cap = sb->cap != 0 ? sb->cap : STRBUF_DEFAULT_CAP;
	size_t left = cap > sb->len ? cap - sb->len : 0;

	return max < left ? max : left;
}

/*
 * Drops what sb holds past from + keep (the tail of a cut text, and what
 * the buffer's cap dropped). Returns how many bytes that left out.
 */
static size_t
txformat_cut(struct strbuf *sb, size_t from, size_t keep, size_t dropped)
{
	size_t gone = sb->len - from - keep + (sb->dropped - dropped);

	explicit_bzero(sb->buf + from + keep, sb->len - from - keep);
	sb->len = from + keep;
	sb->buf[sb->len] = '\0';
	sb->dropped = dropped;
	return gone;
}

static void
txformat_mark(struct strbuf *sb, size_t cut)
{
	if (cut > 0)
		strbuf_printf(sb, " [record cut, %zu bytes left out]", cut);
}

static void
txformat_text(const struct txent *e, int flags, size_t max, struct strbuf *sb)
{
	char ts[40];
	const char *dir;
	size_t start = sb->len, dropped = sb->dropped, tstart, room, keep, cut;

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
	tstart = sb->len;
	room = max > tstart - start + TXF_MARK_ROOM ?
	    max - (tstart - start) - TXF_MARK_ROOM : 0;
	/*
	 * Text arrives escaped; this is the last guard against a forged line
	 * or a raw control, whatever the caller passed.
	 */
	(void)escape_guard(sb, e->text, e->len);
	cut = e->text_cut;
	if (sb->len - tstart > room || sb->dropped != dropped) {
		keep = escape_cut(sb->buf + tstart, sb->len - tstart, room);
		cut += txformat_cut(sb, tstart, keep, dropped);
	}
	txformat_mark(sb, cut);
	if (flags & TXF_COLOUR)
		strbuf_adds(sb, ANSI_RESET);
}

/*
 * A string of a JSON record: guarded (a copy only when it is not plain
 * ASCII), what JSON takes to write it, and what it may take.
 */
struct txjstr {
	const char	*s;
	size_t		 len;
	size_t		 cost;
	size_t		 allow;
	int		 shared;	/* allow set by txformat_jshare() */
	struct strbuf	 copy;
};

/* Bytes JSON takes for s: '"' and '\\' are written with a backslash. */
static size_t
txformat_jcost(const char *s, size_t len)
{
	size_t i, cost = len;

	for (i = 0; i < len; i++)
		cost += s[i] == '"' || s[i] == '\\';
	return cost;
}

/* The longest prefix of guarded s, whole units, that costs at most room. */
static size_t
txformat_jkeep(const char *s, size_t len, size_t room)
{
	size_t at = 0, u, c;

	while (at < len) {
		u = escape_unit(s + at, len - at);
		c = txformat_jcost(s + at, u);
		if (c > room)
			break;
		room -= c;
		at += u;
	}
	return at;
}

static void
txformat_jprep(struct txjstr *j, const char *s, size_t len)
{
	memset(j, 0, sizeof *j);
	j->s = s;
	j->len = len;
	if (escape_plain_len(s, len) != len) {
		/* Room for every byte as "\xNN": nothing dropped. */
		strbuf_init(&j->copy, 4 * len + 1);
		(void)escape_guard(&j->copy, s, len);
		j->s = j->copy.len ? j->copy.buf : "";
		j->len = j->copy.len;
	}
}

/*
 * When the strings do not fit in budget, share it out: the short ones are
 * kept whole and the long ones get equal parts of the rest, so a huge text
 * cannot cost a record its small fields.
 */
static void
txformat_jshare(struct txjstr *js, size_t n, size_t budget)
{
	size_t i, k, least, t, total = 0;

	/* JSON at most doubles a string: nearly every record stops here. */
	for (i = 0; i < n; i++)
		total += js[i].len;
	if (total <= budget / 2)
		return;
	for (total = 0, i = 0; i < n; i++) {
		js[i].cost = js[i].allow = txformat_jcost(js[i].s, js[i].len);
		total += js[i].cost;
	}
	if (total <= budget)
		return;
	/* Cheapest first; a record has a dozen strings at most. */
	for (k = 0; k < n; k++) {
		least = n;
		for (i = 0; i < n; i++)
			if (!js[i].shared && (least == n ||
			    js[i].cost < js[least].cost))
				least = i;
		t = budget / (n - k);
		js[least].allow = js[least].cost < t ? js[least].cost : t;
		js[least].shared = 1;
		budget -= js[least].allow;
	}
}

/*
 * The JSON string for js as allowed; the input bytes left out in *cut.
 * The text (mark set) ends with the mark of the text form when cut, with
 * tcut the bytes cut before.
 */
static json_t *
txformat_jvalue(struct txjstr *js, int mark, size_t tcut, size_t *cut)
{
	struct strbuf sb;
	size_t keep = js->len;
	json_t *v;

	if (js->allow < js->cost) {
		/* The mark of a cut text fits in what the text gave up. */
		keep = txformat_jkeep(js->s, js->len, js->allow);
		*cut += js->len - keep;
	}
	if (!mark || (tcut == 0 && keep == js->len))
		v = json_stringn(keep ? js->s : "", keep);
	else {
		strbuf_init(&sb, keep + TXF_MARK_ROOM);
		strbuf_add(&sb, js->s, keep);
		txformat_mark(&sb, tcut + js->len - keep);
		v = json_stringn(sb.buf, sb.len);
		strbuf_free(&sb);
	}
	strbuf_free(&js->copy);
	return v != NULL ? v : json_string("?");
}

/* A key: the program's own, but a bad one is still not written raw. */
static void
txformat_jset(json_t *o, const char *key, json_t *v)
{
	struct strbuf sb;
	size_t len = strlen(key);

	if (escape_plain_len(key, len) == len) {
		json_object_set_new(o, key, v);
		return;
	}
	strbuf_init(&sb, 4 * len + 1);
	(void)escape_guard(&sb, key, len);
	json_object_set_new(o, strbuf_str(&sb), v);
	strbuf_free(&sb);
}

/* Strings: service, kind, text, then the fields. */
#define TXJ_SERVICE	0
#define TXJ_KIND	1
#define TXJ_TEXT	2
#define TXJ_FIELDS	3
#define TXJ_STACK	32

static void
txformat_json(const struct txent *e, size_t max, struct strbuf *sb)
{
	json_t *o = json_object();
	const struct tx_field *f;
	struct txjstr stack[TXJ_STACK], *js = stack;
	char buf[40];
	char *out;
	size_t i, cut = 0, n = TXJ_FIELDS, budget;
	size_t fixed = TXF_JSON_FIXED + e->nfields * TXF_JSON_PERKEY;

	if (TXJ_FIELDS + e->nfields > TXJ_STACK)
		js = xcalloc(TXJ_FIELDS + e->nfields, sizeof *js);
	txformat_jprep(&js[TXJ_SERVICE], e->service != NULL ? e->service : "",
	    e->service != NULL ? strlen(e->service) : 0);
	txformat_jprep(&js[TXJ_KIND], e->kind, strlen(e->kind));
	txformat_jprep(&js[TXJ_TEXT], e->text, e->len);
	for (i = 0; i < e->nfields; i++, n++) {
		f = &e->fields[i];
		txformat_jprep(&js[n], f->type == TX_STR && f->str != NULL ?
		    f->str : "", f->type == TX_STR && f->str != NULL ?
		    strlen(f->str) : 0);
	}
	budget = max > fixed + TXF_MARK_ROOM ? max - fixed - TXF_MARK_ROOM : 0;
	txformat_jshare(js, n, budget);

	txformat_time(&e->tv, buf, sizeof buf);
	json_object_set_new(o, "time", json_string(buf));
	if (e->session == TRANSCRIPT_NOSESSION)
		json_object_set_new(o, "session", json_null());
	else {
		snprintf(buf, sizeof buf, "%08x", e->session);
		json_object_set_new(o, "session", json_string(buf));
	}
	json_object_set_new(o, "service", e->service != NULL ?
	    txformat_jvalue(&js[TXJ_SERVICE], 0, 0, &cut) : json_null());
	buf[0] = e->dir == 'C' || e->dir == 'S' ? e->dir : '*';
	buf[1] = '\0';
	json_object_set_new(o, "dir", json_string(buf));
	json_object_set_new(o, "kind", txformat_jvalue(&js[TXJ_KIND], 0, 0,
	    &cut));
	json_object_set_new(o, "text", txformat_jvalue(&js[TXJ_TEXT], 1,
	    e->text_cut, &cut));
	if (e->code != 0)
		json_object_set_new(o, "code", json_integer(e->code));
	if (txformat_enhanced(e, buf, sizeof buf))
		json_object_set_new(o, "enhanced", json_string(buf));
	for (i = 0; i < e->nfields; i++) {
		f = &e->fields[i];
		/* The common keys above stay what the schema says they are. */
		if (json_object_get(o, f->key) != NULL) {
			strbuf_free(&js[TXJ_FIELDS + i].copy);
			continue;
		}
		switch (f->type) {
		case TX_STR:
			txformat_jset(o, f->key, f->str != NULL ?
			    txformat_jvalue(&js[TXJ_FIELDS + i], 0, 0, &cut) :
			    json_null());
			break;
		case TX_NUM:
			txformat_jset(o, f->key, json_integer(f->num));
			break;
		case TX_BOOL:
			txformat_jset(o, f->key, json_boolean(f->num));
			break;
		}
		strbuf_free(&js[TXJ_FIELDS + i].copy);
	}
	if (e->service == NULL)
		strbuf_free(&js[TXJ_SERVICE].copy);
	if (js != stack)
		free(js);
	cut += e->text_cut + e->field_cut;
	if (cut > 0)
		json_object_set_new(o, "cut_bytes", json_integer((json_int_t)cut));
	/* Compact, keys in insertion order, non-ASCII kept as UTF-8. */
	out = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (out == NULL || strlen(out) >= max) {
		strbuf_adds(sb, "{\"kind\":\"error\",\"text\":\"cannot encode a "
		    "record\"}");
		free(out);
		return;
	}
	strbuf_adds(sb, out);
	free(out);
}

void
txformat_line_max(const struct txent *e, enum tx_format format, int flags,
    size_t max, struct strbuf *sb)
{
	/* The newline always fits: it is what keeps the next record whole. */
	max = txformat_room(sb, max);
	max = max > 0 ? max - 1 : 0;
	if (format == TX_FORMAT_JSON)
		txformat_json(e, max, sb);
	else
		txformat_text(e, flags, max, sb);
	strbuf_addc(sb, '\n');
}

void
txformat_line(const struct txent *e, enum tx_format format, int flags,
    struct strbuf *sb)
{
	txformat_line_max(e, format, flags, TXFORMAT_LINE_MAX, sb);
}
