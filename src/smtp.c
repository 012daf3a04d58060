/*
 * smtp.c - follow an SMTP conversation from copies of the relayed bytes.
 *
 * Each direction has its own line assembler; records are emitted only when
 * a line, a BDAT chunk or a direction ends, so the way the bytes were cut
 * into pieces cannot change the transcript. The server's replies decide the
 * state (RFC 2920 pipelining: a FIFO of commands awaiting replies); when the
 * parser cannot tell what a client line is, it shows only its length.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "escape.h"
#include "sasl.h"
#include "smtp.h"
#include "strbuf.h"
#include "xmalloc.h"

#define SMTP_FIFO_MAX		64	/* commands awaiting a reply */
#define SMTP_HEADERS_MAX	100	/* header records per message */
#define SMTP_ARROW		" \xe2\x87\x92 "	/* U+21D2 */

enum smtp_cmd {
	SMTP_CMD_OTHER,
	SMTP_CMD_AUTH,
	SMTP_CMD_DATA,
	SMTP_CMD_DOT,		/* end of DATA: its reply accepts the message */
	SMTP_CMD_BDAT,
	SMTP_CMD_BDAT_LAST,
	SMTP_CMD_STARTTLS,
};

static const struct {
	const char	*verb;
	enum smtp_cmd	 cmd;
} smtp_verbs[] = {
	{ "AUTH", SMTP_CMD_AUTH },
	{ "DATA", SMTP_CMD_DATA },
	{ "BDAT", SMTP_CMD_BDAT },
	{ "STARTTLS", SMTP_CMD_STARTTLS },
};

/* One line being assembled; only the first size bytes are kept. */
struct smtp_line {
	unsigned char	*buf;
	size_t		 size;
	size_t		 kept;
	size_t		 total;		/* bytes before the LF */
	unsigned char	 first;
	unsigned char	 prev;		/* last byte added, to tell CRLF from LF */
	int		 skip;		/* a body line: count it, keep nothing */
};

struct smtp_body {
	int		 confirmed;	/* the 354 has been seen */
	int		 early_noted;
	int		 in_headers;
	int		 seen_header;
	unsigned int	 headers;
	uint64_t	 more_headers;
	uint64_t	 bytes;
	uint64_t	 lines;
	uint64_t	 longest;
	uint64_t	 bare_lf;
	uint64_t	 bare_cr;
	uint64_t	 nul;
};

struct smtp {
	smtp_rec_cb		 cb;
	void			*arg;
	struct smtp_stats	 stats;
	struct strbuf		 out;		/* the record being built */
	struct strbuf		 tmp;		/* sasl output, before it joins out */
	struct smtp_line	 line[2];
	int			 eof[2];

	enum smtp_cmd		 fifo[SMTP_FIFO_MAX];
	unsigned int		 head;
	unsigned int		 count;

	int			 greeted;
	int			 desync;	/* unsure what client lines are */
	int			 opaque;	/* after STARTTLS: nothing to parse */
	int			 reply_open;	/* inside a multi-line reply */
	int			 reply_code;

	int			 body;		/* inside DATA */
	struct smtp_body	 b;

	uint64_t		 bdat_left;
	uint64_t		 bdat_size;
	int			 bdat_last;

	struct sasl		*sasl;		/* AUTH outstanding */
};

/*
 * A line's buffer exists only while a line is being kept: an idle session
 * holds none (16 KiB less each). Between lines buf points here, never
 * written (kept is 0).
 */
static unsigned char smtp_no_line[1];

struct smtp *
smtp_new(smtp_rec_cb cb, void *arg)
{
	struct smtp *p = xcalloc(1, sizeof *p);

	p->cb = cb;
	p->arg = arg;
	strbuf_init(&p->out, 0);
	strbuf_init(&p->tmp, 0);
	/* A SASL response may legitimately be this long (RFC 4954). */
	p->line[SMTP_CLIENT].size = SASL_LINE_MAX;
	p->line[SMTP_SERVER].size = SMTP_LINE_MAX;
	p->line[SMTP_CLIENT].buf = smtp_no_line;
	p->line[SMTP_SERVER].buf = smtp_no_line;
	return p;
}

void
smtp_free(struct smtp *p)
{
	int i;

	if (p == NULL)
		return;
	for (i = 0; i < 2; i++)
		if (p->line[i].buf != smtp_no_line) {
			explicit_bzero(p->line[i].buf, p->line[i].kept);
			free(p->line[i].buf);
		}
	sasl_free(p->sasl);
	strbuf_free(&p->out);
	strbuf_free(&p->tmp);
	explicit_bzero(p, sizeof *p);
	free(p);
}

const struct smtp_stats *
smtp_stats(const struct smtp *p)
{
	return &p->stats;
}

static void
smtp_emit(struct smtp *p, enum smtp_dir dir, enum smtp_rec_kind kind,
    int code)
{
	struct smtp_rec r;

	r.dir = dir;
	r.kind = kind;
	r.text = strbuf_str(&p->out);
	r.len = p->out.len;
	r.code = code;
	p->cb(&r, p->arg);
	strbuf_reset(&p->out);
}

static void PRINTFLIKE(3, 4)
smtp_note(struct smtp *p, enum smtp_dir dir, const char *fmt, ...)
{
	va_list ap;

	strbuf_reset(&p->out);
	va_start(ap, fmt);
	strbuf_vprintf(&p->out, fmt, ap);
	va_end(ap);
	smtp_emit(p, dir, SMTP_REC_NOTE, 0);
}

/* Case-insensitive, length-based: wire data may hold NUL. */
static int
smtp_ieq(const unsigned char *s, size_t n, const char *lit)
{
	size_t i;
	int c;

	for (i = 0; i < n; i++) {
		if (lit[i] == '\0')
			return 0;
		c = s[i];
		if (c >= 'a' && c <= 'z')
			c -= 'a' - 'A';
		if (c != lit[i])
			return 0;
	}
	return lit[n] == '\0';
}

/* The line's length without its terminator, and whether it had a CR. */
static size_t
smtp_line_len(const struct smtp_line *l, int eof, int *crlf)
{
	*crlf = !eof && l->total > 0 && l->prev == '\r';
	return l->total - (*crlf ? 1 : 0);
}

/* Escaped text of the kept part, " [+N bytes]" for the rest, marks. */
static void
smtp_line_text(struct smtp *p, const struct smtp_line *l, size_t len,
    int crlf, int eof)
{
	size_t show = len < l->kept ? len : l->kept;

	if (show > SMTP_LINE_MAX)
		show = SMTP_LINE_MAX;
	escape_append(&p->out, l->buf, show);
	if (len > show)
		strbuf_printf(&p->out, " [+%zu bytes]", len - show);
	if (eof)
		strbuf_adds(&p->out, " [no CRLF]");
	else if (!crlf)
		strbuf_adds(&p->out, " [LF]");
}

static void
smtp_line_add(struct smtp *p, struct smtp_line *l, const unsigned char *d,
    size_t n, int count)
{
	const unsigned char *q, *end = d + n;
	size_t fit;

	if (n == 0)
		return;
	if (l->total == 0) {
		l->first = d[0];
		/* Message lines after the headers are only counted, never
		 * shown: nothing of them need be kept (most of a bulk DATA). */
		l->skip = count && !p->b.in_headers;
	}
	if (count) {
		/* A CR is bare unless the LF follows: the previous piece's last
		 * byte, and every CR here but the last byte. memchr, not a loop
		 * per byte: this runs over every byte of every message. */
		if (l->prev == '\r')
			p->b.bare_cr++;
		for (q = d; (q = memchr(q, '\r', (size_t)(end - 1 - q))) != NULL;
		    q++)
			p->b.bare_cr++;
		for (q = d; (q = memchr(q, '\0', (size_t)(end - q))) != NULL; q++)
			p->b.nul++;
	}
	l->prev = d[n - 1];
	if (l->skip) {
		l->total += n;
		return;
	}
	fit = l->size - l->kept;
	if (fit > n)
		fit = n;
	if (fit > 0 && l->buf == smtp_no_line)
		l->buf = xmalloc(l->size);
	memcpy(l->buf + l->kept, d, fit);
	l->kept += fit;
	l->total += n;
}

static void
smtp_line_reset(struct smtp_line *l)
{
	if (l->buf != smtp_no_line) {
		explicit_bzero(l->buf, l->kept);
		free(l->buf);
		l->buf = smtp_no_line;
	}
	l->kept = l->total = 0;
	l->first = l->prev = 0;
	l->skip = 0;
}

static void
smtp_push(struct smtp *p, enum smtp_cmd cmd)
{
	if (p->count == SMTP_FIFO_MAX) {
		if (!p->desync)
			smtp_note(p, SMTP_CLIENT, "more than %d commands "
			    "awaiting replies; replies may be matched to the "
			    "wrong commands", SMTP_FIFO_MAX);
		p->desync = 1;
		return;
	}
	p->fifo[(p->head + p->count) % SMTP_FIFO_MAX] = cmd;
	p->count++;
}

static enum smtp_cmd
smtp_pop(struct smtp *p)
{
	enum smtp_cmd cmd = p->fifo[p->head];

	p->head = (p->head + 1) % SMTP_FIFO_MAX;
	p->count--;
	return cmd;
}

/* ---- client: message data ---- */

static void
smtp_headers_end(struct smtp *p)
{
	if (!p->b.in_headers)
		return;
	p->b.in_headers = 0;
	if (p->b.more_headers > 0)
		smtp_note(p, SMTP_CLIENT, "... %llu more header lines",
		    (unsigned long long)p->b.more_headers);
}

static void
smtp_body_start(struct smtp *p)
{
	memset(&p->b, 0, sizeof p->b);
	p->body = 1;
	p->b.in_headers = 1;
}

/* "Name:" with a printable name, or a folded continuation (RFC 5322 2.2). */
static int
smtp_is_header(const struct smtp *p, const struct smtp_line *l, size_t len)
{
	size_t i, n = len < l->kept ? len : l->kept;

	if (l->buf[0] == ' ' || l->buf[0] == '\t')
		return p->b.seen_header;
	for (i = 0; i < n; i++) {
		if (l->buf[i] == ':')
			return i > 0;
		if (l->buf[i] <= ' ' || l->buf[i] >= 0x7f)
			return 0;
	}
	return 0;
}

static void
smtp_body_summary(struct smtp *p, const char *what)
{
	strbuf_printf(&p->out, "%s: %llu bytes, %llu lines, longest line %llu "
	    "bytes", what, (unsigned long long)p->b.bytes,
	    (unsigned long long)p->b.lines, (unsigned long long)p->b.longest);
	if (p->b.bare_lf > 0)
		strbuf_printf(&p->out, ", %llu bare LF",
		    (unsigned long long)p->b.bare_lf);
	if (p->b.bare_cr > 0)
		strbuf_printf(&p->out, ", %llu bare CR",
		    (unsigned long long)p->b.bare_cr);
	if (p->b.nul > 0)
		strbuf_printf(&p->out, ", %llu NUL",
		    (unsigned long long)p->b.nul);
	smtp_emit(p, SMTP_CLIENT, SMTP_REC_NOTE, 0);
}

static void
smtp_body_header(struct smtp *p, const struct smtp_line *l, size_t len,
    int crlf)
{
	if (len == 0 || !smtp_is_header(p, l, len)) {
		smtp_headers_end(p);
		return;
	}
	p->b.seen_header = 1;
	/* Before the 354 the line may not be message data at all. */
	if (!p->b.confirmed)
		return;
	if (p->b.headers >= SMTP_HEADERS_MAX) {
		p->b.more_headers++;
		return;
	}
	p->b.headers++;
	strbuf_adds(&p->out, "(header) ");
	smtp_line_text(p, l, len, crlf, 0);
	smtp_emit(p, SMTP_CLIENT, SMTP_REC_HEADER, 0);
}

static void
smtp_body_line(struct smtp *p, int eof)
{
	struct smtp_line *l = &p->line[SMTP_CLIENT];
	int crlf;
	size_t len = smtp_line_len(l, eof, &crlf), stuffed;

	if (crlf && len == 1 && l->first == '.') {
		smtp_headers_end(p);
		smtp_body_summary(p, "message");
		strbuf_adds(&p->out, ".");
		smtp_emit(p, SMTP_CLIENT, SMTP_REC_COMMAND, 0);
		p->body = 0;
		smtp_push(p, SMTP_CMD_DOT);
		return;
	}
	if (!p->b.confirmed && !p->b.early_noted) {
		p->b.early_noted = 1;
		smtp_note(p, SMTP_CLIENT, "client sent message data before "
		    "the reply to DATA; its headers are not shown");
	}
	/* Sizes are of the message as stored: without the stuffed dot that
	 * RFC 5321 4.5.2 puts before a line starting with ".". */
	stuffed = l->total > 0 && l->first == '.';
	p->b.lines++;
	p->b.bytes += l->total + (eof ? 0 : 1) - stuffed;
	if (!eof && !crlf)
		p->b.bare_lf++;
	if (len - stuffed > p->b.longest)
		p->b.longest = len - stuffed;
	if (p->b.in_headers && !eof)
		smtp_body_header(p, l, len, crlf);
}

/* ---- client: commands and SASL ---- */

/* "BDAT size [LAST]"; 0 if the size is not a plain decimal number. */
static int
smtp_bdat_parse(struct smtp *p, const unsigned char *s, size_t n)
{
	size_t i = 4, start;
	uint64_t size = 0;

	while (i < n && s[i] == ' ')
		i++;
	for (start = i; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
		if (size > (UINT64_MAX - 9) / 10)
			return 0;
		size = size * 10 + (uint64_t)(s[i] - '0');
	}
	if (i == start)
		return 0;
	while (i < n && s[i] == ' ')
		i++;
	while (n > i && s[n - 1] == ' ')
		n--;
	p->bdat_last = 0;
	if (i < n) {
		if (!smtp_ieq(s + i, n - i, "LAST"))
			return 0;
		p->bdat_last = 1;
	}
	p->bdat_size = p->bdat_left = size;
	return 1;
}

static void
smtp_bdat_done(struct smtp *p)
{
	smtp_note(p, SMTP_CLIENT, "BDAT chunk: %llu bytes%s",
	    (unsigned long long)p->bdat_size, p->bdat_last ? ", LAST" : "");
}

/* Masked client text, e.g. in desync: never more than a length. */
static void
smtp_hidden(struct smtp *p, size_t len, int eof)
{
	strbuf_printf(&p->out, "[%zu bytes, not shown]", len);
	if (eof)
		strbuf_adds(&p->out, " [no CRLF]");
}

/* A line that is part of an AUTH exchange: through sasl, never raw. */
static void
smtp_sasl_line(struct smtp *p, int eof)
{
	struct smtp_line *l = &p->line[SMTP_CLIENT];
	int crlf;
	size_t len = smtp_line_len(l, eof, &crlf);

	if (eof) {
		smtp_hidden(p, len, 1);
		smtp_emit(p, SMTP_CLIENT, SMTP_REC_AUTH, 0);
		return;
	}
	strbuf_reset(&p->tmp);
	if (len > l->kept)
		sasl_client_long(p->sasl, len, 0, &p->tmp);
	else
		sasl_client(p->sasl, (const char *)l->buf, len, 0, &p->tmp);
	if (p->desync)
		smtp_hidden(p, len, 0);
	else {
		if (sasl_last_public(p->sasl))
			smtp_line_text(p, l, len, 1, 0);
		else
			strbuf_adds(&p->out, "<masked>");
		strbuf_adds(&p->out, SMTP_ARROW);
		strbuf_add(&p->out, p->tmp.buf, p->tmp.len);
	}
	strbuf_reset(&p->tmp);
	smtp_emit(p, SMTP_CLIENT, SMTP_REC_AUTH, 0);
}

/* "AUTH mech [initial-response]": returns 0 if there is no mechanism. */
static int
smtp_auth_command(struct smtp *p, const unsigned char *s, size_t len,
    size_t kept)
{
	size_t m, mend, ir;

	for (m = 4; m < kept && s[m] == ' '; m++)
		;
	for (mend = m; mend < kept && s[mend] != ' '; mend++)
		;
	if (mend == m)
		return 0;
	for (ir = mend; ir < kept && s[ir] == ' '; ir++)
		;
	sasl_free(p->sasl);
	p->sasl = sasl_new((const char *)s + m, mend - m);
	strbuf_reset(&p->tmp);
	if (ir < len) {
		if (len > kept)
			sasl_client_long(p->sasl, len - ir, 1, &p->tmp);
		else
			sasl_client(p->sasl, (const char *)s + ir, len - ir, 1,
			    &p->tmp);
	}
	if (p->desync)
		smtp_hidden(p, len, 0);
	else {
		escape_append(&p->out, s, mend);
		if (ir < len) {
			strbuf_addc(&p->out, ' ');
			if (sasl_last_public(p->sasl))
				escape_append(&p->out, s + ir, len - ir);
			else
				strbuf_adds(&p->out, "<masked>");
			strbuf_adds(&p->out, SMTP_ARROW);
			strbuf_add(&p->out, p->tmp.buf, p->tmp.len);
		}
	}
	strbuf_reset(&p->tmp);
	smtp_emit(p, SMTP_CLIENT, SMTP_REC_AUTH, 0);
	smtp_push(p, SMTP_CMD_AUTH);
	return 1;
}

static enum smtp_cmd
smtp_verb(const unsigned char *s, size_t n)
{
	size_t i, vlen;

	for (vlen = 0; vlen < n && s[vlen] != ' '; vlen++)
		;
	for (i = 0; i < sizeof smtp_verbs / sizeof smtp_verbs[0]; i++)
		if (smtp_ieq(s, vlen, smtp_verbs[i].verb))
			return smtp_verbs[i].cmd;
	return SMTP_CMD_OTHER;
}

static void
smtp_command(struct smtp *p, int eof)
{
	struct smtp_line *l = &p->line[SMTP_CLIENT];
	int crlf;
	size_t len = smtp_line_len(l, eof, &crlf);
	size_t kept = len < l->kept ? len : l->kept;
	enum smtp_cmd cmd = smtp_verb(l->buf, kept);

	if (eof) {
		/* The server never saw a whole command: show, don't track. */
		if (p->desync || cmd == SMTP_CMD_AUTH)
			smtp_hidden(p, len, 1);
		else
			smtp_line_text(p, l, len, 0, 1);
		smtp_emit(p, SMTP_CLIENT, SMTP_REC_COMMAND, 0);
		return;
	}
	p->stats.commands++;
	if (cmd == SMTP_CMD_AUTH && smtp_auth_command(p, l->buf, len, kept))
		return;
	if (cmd == SMTP_CMD_AUTH)
		cmd = SMTP_CMD_OTHER;
	if (cmd == SMTP_CMD_BDAT) {
		if (!smtp_bdat_parse(p, l->buf, kept))
			cmd = SMTP_CMD_OTHER;
		else if (p->bdat_last)
			cmd = SMTP_CMD_BDAT_LAST;
	}
	if (p->desync)
		smtp_hidden(p, len, 0);
	else
		smtp_line_text(p, l, len, crlf, 0);
	smtp_emit(p, SMTP_CLIENT, SMTP_REC_COMMAND, 0);
	smtp_push(p, cmd);
	if (cmd == SMTP_CMD_DATA)
		smtp_body_start(p);
	if ((cmd == SMTP_CMD_BDAT || cmd == SMTP_CMD_BDAT_LAST) &&
	    p->bdat_left == 0)
		smtp_bdat_done(p);
}

static void
smtp_client_line(struct smtp *p, int eof)
{
	if (p->body)
		smtp_body_line(p, eof);
	else if (p->sasl != NULL)
		smtp_sasl_line(p, eof);	/* fail closed: all of it is SASL */
	else
		smtp_command(p, eof);
	smtp_line_reset(&p->line[SMTP_CLIENT]);
}

/*
 * The message body after the headers, whole lines from a line start: only
 * counted, so counted here in one pass, without a record or a copy. The
 * same sums as smtp_line_add and smtp_body_line give line by line. Stops at
 * the "." line and at a line that does not end in this piece; returns the
 * bytes used.
 */
static size_t
smtp_body_fast(struct smtp *p, const unsigned char *d, size_t n)
{
	const unsigned char *s = d, *end = d + n, *lf, *q;
	size_t total, len, stuffed;
	int crlf;

	while (s < end && (lf = memchr(s, '\n', (size_t)(end - s))) != NULL) {
		total = (size_t)(lf - s);
		if (total == 2 && s[0] == '.' && s[1] == '\r')
			break;
		crlf = total > 0 && lf[-1] == '\r';
		len = total - (crlf ? 1 : 0);
		/* A CR is bare unless it ends the line. */
		for (q = s; len > 0 && (q = memchr(q, '\r',
		    (size_t)(s + len - q))) != NULL; q++)
			p->b.bare_cr++;
		stuffed = total > 0 && s[0] == '.';
		p->b.lines++;
		p->b.bytes += total + 1 - stuffed;
		if (!crlf)
			p->b.bare_lf++;
		if (len - stuffed > p->b.longest)
			p->b.longest = len - stuffed;
		s = lf + 1;
	}
	for (q = d; (q = memchr(q, '\0', (size_t)(s - q))) != NULL; q++)
		p->b.nul++;
	return (size_t)(s - d);
}

static void
smtp_feed_client(struct smtp *p, const unsigned char *d, size_t n)
{
	struct smtp_line *l = &p->line[SMTP_CLIENT];
	const unsigned char *lf;
	size_t seg;

	while (n > 0 && !p->opaque) {
		if (p->body && p->b.confirmed && !p->b.in_headers &&
		    l->total == 0 && p->bdat_left == 0 &&
		    (seg = smtp_body_fast(p, d, n)) > 0) {
			d += seg;
			n -= seg;
			continue;
		}
		if (p->bdat_left > 0) {
			/* Chunk octets are counted, never scanned (RFC 3030). */
			seg = n < p->bdat_left ? n : (size_t)p->bdat_left;
			p->bdat_left -= seg;
			d += seg;
			n -= seg;
			if (p->bdat_left == 0)
				smtp_bdat_done(p);
			continue;
		}
		lf = memchr(d, '\n', n);
		seg = lf != NULL ? (size_t)(lf - d) : n;
		smtp_line_add(p, l, d, seg, p->body);
		d += seg;
		n -= seg;
		if (lf != NULL) {
			d++;
			n--;
			smtp_client_line(p, 0);
		}
	}
}

/* ---- server ---- */

static void
smtp_reply_data(struct smtp *p, int code)
{
	if (code == 354) {
		if (p->body)
			p->b.confirmed = 1;
		return;
	}
	p->stats.messages_rejected++;
	if (!p->body)
		return;
	if (p->b.lines > 0 || p->line[SMTP_CLIENT].total > 0) {
		smtp_note(p, SMTP_SERVER, "DATA refused after the client sent "
		    "message data; following lines may be misread");
		p->desync = 1;
	}
	p->body = 0;
}

static void
smtp_reply_unexpected(struct smtp *p)
{
	smtp_note(p, SMTP_SERVER, "unexpected reply (no command outstanding)");
	p->desync = 1;
	if (p->body) {
		/* The server thinks the message ended; believe it. */
		smtp_note(p, SMTP_SERVER, "leaving message data early");
		p->body = 0;
	}
}

static void
smtp_reply_auth(struct smtp *p, int code)
{
	snprintf(p->stats.auth_mech, sizeof p->stats.auth_mech, "%s",
	    sasl_mech(p->sasl));
	snprintf(p->stats.auth_user, sizeof p->stats.auth_user, "%s",
	    sasl_user(p->sasl));
	p->stats.auth_code = code;
	sasl_free(p->sasl);
	p->sasl = NULL;
}

/* A reply is complete: match it to the oldest outstanding command. */
static void
smtp_reply_done(struct smtp *p, int code)
{
	enum smtp_cmd cmd;

	if (p->count == 0) {
		if (!p->greeted)
			p->greeted = 1;
		else
			smtp_reply_unexpected(p);
		return;
	}
	p->greeted = 1;
	if (code == 334 && p->fifo[p->head] == SMTP_CMD_AUTH)
		return;		/* a challenge: the exchange goes on */
	cmd = smtp_pop(p);
	if (code == 334) {
		smtp_note(p, SMTP_SERVER, "unexpected 334 (no AUTH "
		    "outstanding); client lines hidden until resynchronised");
		p->desync = 1;
		return;
	}
	switch (cmd) {
	case SMTP_CMD_AUTH:
		smtp_reply_auth(p, code);
		break;
	case SMTP_CMD_DATA:
		smtp_reply_data(p, code);
		break;
	case SMTP_CMD_DOT:
	case SMTP_CMD_BDAT_LAST:
		if (code >= 200 && code < 300)
			p->stats.messages_accepted++;
		else
			p->stats.messages_rejected++;
		break;
	case SMTP_CMD_STARTTLS:
		if (code == 220) {
			smtp_note(p, SMTP_SERVER, "STARTTLS accepted: what "
			    "follows is encrypted and not parsed");
			p->opaque = 1;
		}
		break;
	case SMTP_CMD_BDAT:
	case SMTP_CMD_OTHER:
		break;
	}
	if (p->count == 0 && p->sasl == NULL)
		p->desync = 0;
}

/* "NNN", "NNN text" or "NNN-text"; returns the code or 0. */
static int
smtp_reply_code(const unsigned char *s, size_t len, int *last)
{
	if (len < 3 || s[0] < '2' || s[0] > '5' || s[1] < '0' || s[1] > '9' ||
	    s[2] < '0' || s[2] > '9')
		return 0;
	if (len > 3 && s[3] != ' ' && s[3] != '-')
		return 0;
	*last = len == 3 || s[3] == ' ';
	return (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
}

static void
smtp_server_line(struct smtp *p, int eof)
{
	struct smtp_line *l = &p->line[SMTP_SERVER];
	int crlf, last = 0, code;
	size_t len = smtp_line_len(l, eof, &crlf);
	size_t kept = len < l->kept ? len : l->kept;

	code = smtp_reply_code(l->buf, kept, &last);
	smtp_line_text(p, l, len, crlf, eof);
	if (code == 334 && !eof && p->sasl != NULL && p->count > 0 &&
	    p->fifo[p->head] == SMTP_CMD_AUTH) {
		strbuf_reset(&p->tmp);
		if (len > kept)
			strbuf_adds(&p->tmp, "(too long to decode)");
		else
			sasl_server(p->sasl, kept > 4 ? (const char *)l->buf +
			    4 : "", kept > 4 ? kept - 4 : 0, &p->tmp);
		strbuf_adds(&p->out, SMTP_ARROW);
		strbuf_add(&p->out, p->tmp.buf, p->tmp.len);
		strbuf_reset(&p->tmp);
	}
	smtp_emit(p, SMTP_SERVER, SMTP_REC_REPLY, code);
	if (eof)
		return;
	if (code == 0) {
		smtp_note(p, SMTP_SERVER, "malformed reply line "
		    "(no 3-digit code)");
		return;
	}
	if (p->reply_open && code != p->reply_code)
		smtp_note(p, SMTP_SERVER, "reply code changed from %d to %d "
		    "within a multi-line reply", p->reply_code, code);
	if (!last) {
		if (!p->reply_open)
			p->reply_code = code;
		p->reply_open = 1;
		return;
	}
	p->reply_open = 0;
	smtp_reply_done(p, code);
}

static void
smtp_feed_server(struct smtp *p, const unsigned char *d, size_t n)
{
	struct smtp_line *l = &p->line[SMTP_SERVER];
	const unsigned char *lf;
	size_t seg;

	while (n > 0 && !p->opaque) {
		lf = memchr(d, '\n', n);
		seg = lf != NULL ? (size_t)(lf - d) : n;
		smtp_line_add(p, l, d, seg, 0);
		d += seg;
		n -= seg;
		if (lf != NULL) {
			d++;
			n--;
			smtp_server_line(p, 0);
			smtp_line_reset(l);
		}
	}
}

void
smtp_feed(struct smtp *p, enum smtp_dir dir, const void *data, size_t n)
{
	if (p->eof[dir])
		return;
	if (dir == SMTP_CLIENT)
		smtp_feed_client(p, data, n);
	else
		smtp_feed_server(p, data, n);
}

void
smtp_eof(struct smtp *p, enum smtp_dir dir)
{
	if (p->eof[dir])
		return;
	p->eof[dir] = 1;
	if (p->opaque)
		return;
	if (dir == SMTP_SERVER) {
		if (p->line[SMTP_SERVER].total > 0) {
			smtp_server_line(p, 1);
			smtp_line_reset(&p->line[SMTP_SERVER]);
		}
		return;
	}
	if (p->bdat_left > 0) {
		smtp_note(p, SMTP_CLIENT, "BDAT chunk incomplete: %llu of "
		    "%llu bytes", (unsigned long long)(p->bdat_size -
		    p->bdat_left), (unsigned long long)p->bdat_size);
		p->bdat_left = 0;
		return;
	}
	if (p->line[SMTP_CLIENT].total > 0)
		smtp_client_line(p, 1);
	if (p->body) {
		smtp_headers_end(p);
		smtp_body_summary(p, "message incomplete (no end of data)");
		p->body = 0;
	}
}
