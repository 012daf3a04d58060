/*
 * smtp.c - follow an SMTP conversation from copies of the relayed bytes.
 *
 * Each direction has its own line assembler; records are emitted only when
 * a line, a BDAT chunk or a direction ends, so the way the bytes were cut
 * into pieces cannot change the transcript. The server's replies decide the
 * state (RFC 2920 pipelining: a FIFO of commands awaiting replies); when the
 * parser cannot tell what a client line is, it shows only its length.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "escape.h"
#include "sasl.h"
#include "smtp.h"
#include "status.h"
#include "strbuf.h"
#include "xmalloc.h"

/*
 * Commands awaiting a reply, as runs of one kind: a flood of NOOPs takes
 * one slot, so only a client alternating hundreds of kinds without reading
 * a reply can overflow it. The FIFO is allocated while commands await a
 * reply, SMTP_RUNS_FIRST runs at first (what a pipelined transaction uses),
 * and grows by doubling: an idle session holds none of it.
 */
#define SMTP_RUNS_MAX		256
#define SMTP_RUNS_FIRST		8
#define SMTP_HEADERS_MAX	100	/* header records per message */
#define SMTP_CAPS_MAX		40	/* capabilities listed per EHLO reply */
#define SMTP_CAP_SHOW		80	/* bytes shown of one capability */
#define SMTP_MECHS_SIZE		256	/* " PLAIN LOGIN " and its NUL, at most */
#define SMTP_DIAG_MAX		200
#define SMTP_QUOTED_MAX		4096	/* masked bytes a reply is checked against */
#define SMTP_QUOTE_PIECE	8	/* bytes of a masked line that count as quoted */
#define SMTP_ARROW		" \xe2\x87\x92 "	/* U+21D2 */

enum smtp_cmd {
	SMTP_CMD_OTHER,
	SMTP_CMD_UNKNOWN,	/* merged after an overflow: kind lost */
	SMTP_CMD_JUNK,		/* message data the server read as commands */
	SMTP_CMD_MASKED,	/* a line not shown: it may hold a secret */
	SMTP_CMD_EHLO,
	SMTP_CMD_HELO,
	SMTP_CMD_MAIL,
	SMTP_CMD_RCPT,
	SMTP_CMD_DATA,
	SMTP_CMD_DOT,		/* end of DATA: its reply accepts the message */
	SMTP_CMD_BDAT,
	SMTP_CMD_BDAT_LAST,
	SMTP_CMD_AUTH,
	SMTP_CMD_STARTTLS,
	SMTP_CMD_RSET,
	SMTP_CMD_QUIT,
};

/* How status.c and the verdict name what a reply answers. */
static const char *const smtp_cmd_verb[] = {
	[SMTP_CMD_OTHER] = NULL,
	[SMTP_CMD_UNKNOWN] = NULL,
	[SMTP_CMD_JUNK] = NULL,
	[SMTP_CMD_MASKED] = NULL,
	[SMTP_CMD_EHLO] = "EHLO",
	[SMTP_CMD_HELO] = "HELO",
	[SMTP_CMD_MAIL] = "MAIL",
	[SMTP_CMD_RCPT] = "RCPT",
	[SMTP_CMD_DATA] = "DATA",
	[SMTP_CMD_DOT] = ".",
	[SMTP_CMD_BDAT] = "BDAT",
	[SMTP_CMD_BDAT_LAST] = "BDAT LAST",
	[SMTP_CMD_AUTH] = "AUTH",
	[SMTP_CMD_STARTTLS] = "STARTTLS",
	[SMTP_CMD_RSET] = "RSET",
	[SMTP_CMD_QUIT] = "QUIT",
};

static const struct {
	const char	*verb;
	enum smtp_cmd	 cmd;
} smtp_verbs[] = {
	{ "AUTH", SMTP_CMD_AUTH },
	{ "DATA", SMTP_CMD_DATA },
	{ "BDAT", SMTP_CMD_BDAT },
	{ "STARTTLS", SMTP_CMD_STARTTLS },
	{ "EHLO", SMTP_CMD_EHLO },
	{ "LHLO", SMTP_CMD_EHLO },
	{ "HELO", SMTP_CMD_HELO },
	{ "MAIL", SMTP_CMD_MAIL },
	{ "RCPT", SMTP_CMD_RCPT },
	{ "RSET", SMTP_CMD_RSET },
	{ "QUIT", SMTP_CMD_QUIT },
};

/*
 * One line being assembled; only the first size bytes are kept. buf is
 * allocated on the first byte kept and freed when the line ends, so an idle
 * session holds no line buffer; between lines it is smtp_no_line.
 */
struct smtp_line {
	unsigned char	*buf;
	size_t		 size;
	size_t		 kept;
	size_t		 total;		/* bytes before the LF */
	unsigned char	 first;
	unsigned char	 prev;		/* last byte added, to tell CRLF from LF */
	unsigned char	 prev2;		/* the one before */
	int		 dotcr;		/* starts with ".\r" */
	int		 crdotcr;	/* "\r.\r" seen: a smuggling shape */
};

/* Never written: kept is 0 whenever buf points here. */
static unsigned char smtp_no_line[1];

/* The message of the current DATA or BDAT transfer. */
struct smtp_body {
	int		 confirmed;	/* the 354 has been seen (or BDAT) */
	int		 early_noted;
	int		 in_headers;
	int		 seen_header;
	int		 bdat;		/* counted chunks: no dot, no smuggling */
	int		 prev_bare_lf;	/* the previous line ended in LF only */
	int		 dot_early;	/* "." sent before the 354 */
	int		 orphan;	/* DATA was refused: lines are commands */
	unsigned int	 headers;
	uint64_t	 more_headers;
	uint64_t	 bytes;
	uint64_t	 lines;
	uint64_t	 longest;
	uint64_t	 bare_lf;
	uint64_t	 bare_cr;
	uint64_t	 nul;
	uint64_t	 eightbit;
	uint64_t	 smuggle;
	uint64_t	 chunks;
};

/*
 * What one EHLO reply offered. The list is only for the capabilities note
 * and is freed once that is out; the flags and mechanisms stay for the
 * checks and the verdict.
 */
struct smtp_caps {
	struct strbuf	 list;		/* "SIZE 10240000, 8BITMIME, ..." */
	struct strbuf	 auth;		/* " PLAIN LOGIN " (escaped, spaced) */
	uint64_t	 size;		/* SIZE limit, 0 if none or unlimited */
	unsigned int	 n;
	unsigned int	 lines;
	int		 has_auth;
	int		 has_8bitmime;
	int		 has_smtputf8;
	int		 done;		/* the whole reply was seen */
};

struct smtp_run {
	enum smtp_cmd	 cmd;
	uint64_t	 n;
};

/* The failure or success a verdict reports. */
struct smtp_outcome {
	const char	*verb;		/* from smtp_cmd_verb; NULL if none */
	int		 code;
	char		 enh[STATUS_ENH_MAX];
	const char	*meaning;	/* static text from status.c */
};

/*
 * Pipelined commands named in replies: the display text of each of the
 * last SMTP_SENT_RING commands, cut to SMTP_SENT_TEXT - 1 bytes, kept only
 * until its reply. The ring of pointers exists while commands await a
 * reply, so an idle session holds neither it nor any text.
 */
#define SMTP_SENT_RING	32
#define SMTP_SENT_TEXT	100

struct smtp {
	smtp_rec_cb		 cb;
	void			*arg;
	struct smtp_stats	 stats;
	struct strbuf		 out;		/* the record being built */
	struct strbuf		 tmp;		/* sasl output, before it joins out */
	struct smtp_line	 line[2];
	struct smtp_line	 bline;		/* message lines inside BDAT chunks */
	int			 eof[2];

	struct smtp_run		*fifo;		/* NULL while nruns is 0 */
	unsigned int		 fifo_size;	/* runs allocated */
	unsigned int		 head;
	unsigned int		 nruns;
	uint64_t		 count;		/* commands awaiting a reply */
	uint64_t		 seq_replied;	/* commands answered so far */
	int			 overflow_noted;

	int			 greeted;
	int			 greeting_code;
	int			 desync;	/* unsure what client lines are */
	int			 opaque;	/* after STARTTLS: nothing to parse */
	int			 reply_open;	/* inside a multi-line reply */

	/* Recent commands' text, to name what a pipelined reply answers. */
	char			**sent;		/* [SMTP_SENT_RING] or NULL */
	uint64_t		 seq_sent;	/* commands queued so far */
	int			 seq_broken;	/* data read as commands: no names */
	int			 reply_code;
	unsigned int		 reply_lines;	/* lines of the current reply */

	int			 body;		/* inside DATA */
	struct smtp_body	 b;

	uint64_t		 bdat_left;
	uint64_t		 bdat_size;
	int			 bdat_last;
	int			 bdat_msg;	/* a BDAT message is being sent */

	/* The transaction: MAIL parameters, recipients, failures. */
	int			 mail_body8;
	int			 mail_utf8;
	int			 msg_failed;	/* a BDAT chunk was rejected */
	unsigned int		 rcpt_ok;
	uint64_t		 msg_bytes;	/* size of the last finished message */
	struct smtp_outcome	 fail;		/* first failure of the transaction */
	struct smtp_outcome	 accepted;	/* the last accepted message */
	unsigned int		 accepted_rcpts;
	uint64_t		 accepted_bytes;
	int			 fail_after_accept;

	/* Capabilities: [0] smtptap's own EHLO before TLS, [1] the client's. */
	struct smtp_caps	 caps[2];
	int			 pretls;	/* smtp_pretls_caps() was used */
	int			 caps_noted;

	/* The AUTH exchange in progress and the last one's outcome. */
	struct sasl		*sasl;
	uint64_t		 auth_seq;	/* its place among the commands */
	int			 auth_ir;	/* with an initial response */
	int			 auth_cancelled;
	int			 auth_offered;	/* -1 unknown, 0 no, 1 yes */
	int			 auth_none;	/* the server offered no AUTH */
	int			 auth_final;	/* a final reply was seen */
	int			 auth_challenged; /* a 334 awaits the client's line */
	int			 auth_noted;	/* the choice was noted once */
	int			 auth_invalid;	/* not decoded: masked past the verb */
	int			 auth_secret;	/* a client line may have held one */
	/*
	 * The masked client lines since the AUTH began, lower case, each
	 * ended by '\n' (which no line holds): a reply that quotes a piece
	 * of one is shown by its codes only. Full: every such reply is.
	 */
	struct strbuf		 quoted;
	int			 quoted_full;
	/*
	 * An AUTH was sent and no plain command has followed its success:
	 * a client line that is not plainly a command may be a secret.
	 */
	int			 auth_wary;
	int			 wary_noted;
	int			 data_refused;	/* the next line may be its body */
	struct smtp_outcome	 auth;
	char			*auth_diag;	/* NULL when there is none */

	int			 client_tls;	/* the client's STARTTLS: 220 */
	int			 quit;
	char			 last_verb[24];	/* before QUIT, escaped */
	uint64_t		 commands_before_quit;
};

_Static_assert(sizeof ((struct smtp_stats *)0)->auth_mech >= SASL_MECH_SHOW,
    "auth_mech holds any sasl_mech()");

static void	smtp_line_reset(struct smtp_line *);
static void	smtp_msg_line(struct smtp *, struct smtp_line *, int, int);
static void	smtp_names_free(struct smtp *);

struct smtp *
smtp_new(smtp_rec_cb cb, void *arg)
{
	struct smtp *p = xcalloc(1, sizeof *p);
	int i;

	p->cb = cb;
	p->arg = arg;
	strbuf_init(&p->out, 0);
	strbuf_init(&p->tmp, 0);
	strbuf_init(&p->quoted, SMTP_QUOTED_MAX);
	/*
	 * Room for SMTP_CAPS_MAX escaped capabilities at their longest, so
	 * that the cap never cuts an escape or a UTF-8 sequence in two.
	 */
	for (i = 0; i < 2; i++) {
		strbuf_init(&p->caps[i].list, SMTP_CAPS_MAX *
		    (4 * SMTP_CAP_SHOW + 32) + 16);
		strbuf_init(&p->caps[i].auth, SMTP_MECHS_SIZE - 1);
	}
	/* A SASL response may legitimately be this long (RFC 4954). */
	p->line[SMTP_CLIENT].size = SASL_LINE_MAX;
	p->line[SMTP_SERVER].size = SMTP_LINE_MAX;
	p->bline.size = SMTP_LINE_MAX;
	p->line[SMTP_CLIENT].buf = smtp_no_line;
	p->line[SMTP_SERVER].buf = smtp_no_line;
	p->bline.buf = smtp_no_line;
	p->auth_offered = -1;
	return p;
}

static void	smtp_quote_watch(struct smtp *, const unsigned char *, size_t,
		    size_t);
static void	smtp_quote_forget(struct smtp *);
static int	smtp_quotes_masked(const struct smtp *, const unsigned char *,
		    size_t);

void
smtp_free(struct smtp *p)
{
	int i;

	if (p == NULL)
		return;
	for (i = 0; i < 2; i++) {
		smtp_line_reset(&p->line[i]);
		strbuf_free(&p->caps[i].list);
		strbuf_free(&p->caps[i].auth);
	}
	smtp_line_reset(&p->bline);
	free(p->fifo);
	smtp_names_free(p);
	free(p->auth_diag);
	sasl_free(p->sasl);
	strbuf_free(&p->out);
	strbuf_free(&p->tmp);
	strbuf_free(&p->quoted);
	explicit_bzero(p, sizeof *p);
	free(p);
}

static size_t
smtp_line_held(const struct smtp_line *l)
{
	return l->buf != smtp_no_line ? l->size : 0;
}

size_t
smtp_held(const struct smtp *p)
{
	size_t n = p->out.size + p->tmp.size + smtp_line_held(&p->bline);
	unsigned int i;

	for (i = 0; i < 2; i++)
		n += smtp_line_held(&p->line[i]) + p->caps[i].list.size +
		    p->caps[i].auth.size;
	n += p->fifo_size * sizeof *p->fifo;
	if (p->sent != NULL) {
		n += SMTP_SENT_RING * sizeof *p->sent;
		for (i = 0; i < SMTP_SENT_RING; i++)
			if (p->sent[i] != NULL)
				n += strlen(p->sent[i]) + 1;
	}
	if (p->auth_diag != NULL)
		n += strlen(p->auth_diag) + 1;
	return n;
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

/* ---- names of pipelined commands ---- */

static void
smtp_names_free(struct smtp *p)
{
	unsigned int i;

	if (p->sent == NULL)
		return;
	for (i = 0; i < SMTP_SENT_RING; i++)
		free(p->sent[i]);
	free(p->sent);
	p->sent = NULL;
}

/*
 * Keep the display text of the command about to be queued, cut to a
 * length at a character boundary (and never inside a "\\xNN" escape).
 */
static void
smtp_remember(struct smtp *p, const char *text, size_t len)
{
	char **slot;
	size_t n = len < SMTP_SENT_TEXT - 1 ? len : SMTP_SENT_TEXT - 1, i;

	/* Once message data was read as commands no reply is named again. */
	if (p->seq_broken)
		return;
	if (n < len) {
		while (n > 0 && ((unsigned char)text[n] & 0xc0) == 0x80)
			n--;
		for (i = n > 3 ? n - 3 : 0; i < n; i++)
			if (text[i] == '\\') {
				n = i;
				break;
			}
	}
	if (p->sent == NULL)
		p->sent = xcalloc(SMTP_SENT_RING, sizeof *p->sent);
	slot = &p->sent[p->seq_sent % SMTP_SENT_RING];
	/* A command more than a ring ago, still unanswered: never named. */
	free(*slot);
	*slot = xmalloc(n + 1);
	memcpy(*slot, text, n);
	(*slot)[n] = '\0';
}

/*
 * The name of the command the reply being read answers; NULL when more
 * than a ring of commands was sent after it, so its slot was reused.
 */
static const char *
smtp_name(const struct smtp *p)
{
	if (p->sent == NULL || p->seq_sent - p->seq_replied > SMTP_SENT_RING)
		return NULL;
	return p->sent[p->seq_replied % SMTP_SENT_RING];
}

/* The command being answered needs its name no more. */
static void
smtp_name_done(struct smtp *p)
{
	char **slot;

	if (p->sent == NULL ||
	    p->seq_sent - p->seq_replied > SMTP_SENT_RING)
		return;		/* the slot is a later command's */
	slot = &p->sent[p->seq_replied % SMTP_SENT_RING];
	free(*slot);
	*slot = NULL;
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

static int
smtp_upper(int c)
{
	return c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c;
}

/* Case-insensitive, length-based: wire data may hold NUL. */
static int
smtp_ieq(const unsigned char *s, size_t n, const char *lit)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (lit[i] == '\0')
			return 0;
		if (smtp_upper(s[i]) != lit[i])
			return 0;
	}
	return lit[n] == '\0';
}

/* Case-insensitive prefix test. */
static int
smtp_iprefix(const unsigned char *s, size_t n, const char *lit)
{
	size_t i;

	for (i = 0; lit[i] != '\0'; i++)
		if (i >= n || smtp_upper(s[i]) != lit[i])
			return 0;
	return 1;
}

/* ---- words of a command line ---- */

/* RFC 5321 separates words with SP; servers take HTAB as well. */
static int
smtp_blank(int c)
{
	return c == ' ' || c == '\t';
}

/*
 * What some server may take for a word break: isspace() and NUL, where a C
 * server's string ends. Commands are recognised by these, so that a line a
 * server could read as DATA or BDAT is treated as one (its data hidden);
 * text that is decoded for display is split at blanks only.
 */
static int
smtp_sep(int c)
{
	return smtp_blank(c) || c == '\v' || c == '\f' || c == '\r' ||
	    c == '\0';
}

/* The verb is s[*start, *end): leading separators are skipped. */
static void
smtp_verb_span(const unsigned char *s, size_t n, size_t *start, size_t *end)
{
	size_t i = 0;

	while (i < n && smtp_sep(s[i]))
		i++;
	*start = i;
	while (i < n && !smtp_sep(s[i]))
		i++;
	*end = i;
}

/*
 * Whether the line starts like AUTH: "AUTH" in any case after any run of
 * spaces and control bytes, whatever follows. Such a line is never shown
 * past the verb. Returns the offset just after the verb, or 0.
 */
static size_t
smtp_auth_like(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n && s[i] <= ' ')
		i++;
	return smtp_iprefix(s + i, n - i, "AUTH") ? i + 4 : 0;
}

/* A decimal number with at most 19 digits; 0 if there is none. */
static int
smtp_number(const unsigned char *s, size_t n, uint64_t *v)
{
	size_t i;

	*v = 0;
	for (i = 0; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
		if (i == 19)
			return 0;
		*v = *v * 10 + (uint64_t)(s[i] - '0');
	}
	return i > 0;
}

/* "14.2 kB": decimal units, as mail clients show sizes. */
static void
smtp_size(struct strbuf *sb, uint64_t n)
{
	if (n < 1000)
		strbuf_printf(sb, "%llu bytes", (unsigned long long)n);
	else if (n < 1000 * 1000)
		strbuf_printf(sb, "%.1f kB", (double)n / 1e3);
	else if (n < 1000 * 1000 * 1000)
		strbuf_printf(sb, "%.1f MB", (double)n / 1e6);
	else
		strbuf_printf(sb, "%.1f GB", (double)n / 1e9);
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

/*
 * NUL and 8-bit bytes of message data. This sees every byte of every
 * message, and most 64-byte blocks hold neither: a block is first tested
 * whole, as signed bytes, where both kinds are <= 0 (GCC/clang vector
 * extensions: SSE2 on x86-64, NEON on arm64, plain code elsewhere). Only
 * a block that holds one is counted, eight bytes at a time.
 */
typedef signed char smtp_v16 __attribute__((vector_size(16)));

static int
smtp_block_odd(const unsigned char *d)
{
	smtp_v16 a, b, c, e, m;
	const smtp_v16 zero = { 0 };
	uint64_t w[2];

	memcpy(&a, d, 16);
	memcpy(&b, d + 16, 16);
	memcpy(&c, d + 32, 16);
	memcpy(&e, d + 48, 16);
	m = (smtp_v16)((a <= zero) | (b <= zero) | (c <= zero) | (e <= zero));
	memcpy(w, &m, 16);
	return (w[0] | w[1]) != 0;
}

static void
smtp_count_words(struct smtp *p, const unsigned char *d, size_t n)
{
	const uint64_t ones = 0x0101010101010101ULL;
	const uint64_t high = 0x8080808080808080ULL;
	const uint64_t low7 = 0x7f7f7f7f7f7f7f7fULL;
	uint64_t w, nul, eight;
	size_t i;

	for (i = 0; i + 8 <= n; i += 8) {
		memcpy(&w, d + i, 8);
		eight = w & high;
		/* 0x80 in exactly the bytes that are 0: no carry crosses. */
		nul = ~(((w & low7) + low7) | w | low7);
		if ((eight | nul) == 0)
			continue;
		/* One bit per byte, summed into the top byte (at most 8). */
		p->b.eightbit += ((eight >> 7) * ones) >> 56;
		p->b.nul += ((nul >> 7) * ones) >> 56;
	}
	for (; i < n; i++) {
		if (d[i] == '\0')
			p->b.nul++;
		else if (d[i] >= 0x80)
			p->b.eightbit++;
	}
}

static void
smtp_count_odd(struct smtp *p, const unsigned char *d, size_t n)
{
	size_t i;

	for (i = 0; i + 64 <= n; i += 64)
		if (smtp_block_odd(d + i))
			smtp_count_words(p, d + i, 64);
	smtp_count_words(p, d + i, n - i);
}

/*
 * The CRs of d[0..n) another byte of the line follows are bare (the last
 * byte may yet be the CR of a CRLF); "\r.\r" is a smuggling shape.
 */
static void
smtp_count_cr(struct smtp *p, struct smtp_line *l, const unsigned char *d,
    size_t n)
{
	const unsigned char *q, *end = d + n;

	if (n < 2)
		return;
	for (q = d; (q = memchr(q, '\r', (size_t)(end - 1 - q))) != NULL;
	    q++) {
		p->b.bare_cr++;
		if (end - q > 2 && q[1] == '.' && q[2] == '\r')
			l->crdotcr = 1;
	}
}

/* count: message data, whose odd bytes the body summary counts. */
static void
smtp_line_add(struct smtp *p, struct smtp_line *l, const unsigned char *d,
    size_t n, int count)
{
	size_t fit;

	if (n == 0)
		return;
	if (l->total == 0)
		l->first = d[0];
	if (l->total < 2 && l->total + n >= 2)
		l->dotcr = l->first == '.' && d[1 - l->total] == '\r';
	if (count) {
		/* What the previous piece's last bytes make with these. */
		if (l->prev == '\r')
			p->b.bare_cr++;
		if ((l->prev2 == '\r' && l->prev == '.' && d[0] == '\r') ||
		    (n >= 2 && l->prev == '\r' && d[0] == '.' && d[1] == '\r'))
			l->crdotcr = 1;
		smtp_count_cr(p, l, d, n);
		smtp_count_odd(p, d, n);
	}
	l->prev2 = n > 1 ? d[n - 2] : l->prev;
	l->prev = d[n - 1];
	fit = l->size - l->kept;
	if (fit > n)
		fit = n;
	if (fit > 0) {
		if (l->buf == smtp_no_line)
			l->buf = xmalloc(l->size);
		memcpy(l->buf + l->kept, d, fit);
		l->kept += fit;
	}
	l->total += n;
}

/* The line is done: wipe what was kept (it may be a secret) and free it. */
static void
smtp_line_reset(struct smtp_line *l)
{
	if (l->buf != smtp_no_line) {
		explicit_bzero(l->buf, l->kept);
		free(l->buf);
		l->buf = smtp_no_line;
	}
	l->kept = l->total = 0;
	l->first = l->prev = l->prev2 = 0;
	l->dotcr = l->crdotcr = 0;
}

/* ---- commands awaiting replies ---- */

static enum smtp_cmd
smtp_head(const struct smtp *p)
{
	return p->nruns > 0 ? p->fifo[p->head].cmd : SMTP_CMD_OTHER;
}

/* The i-th run from the head. */
static struct smtp_run *
smtp_run_at(struct smtp *p, unsigned int i)
{
	return &p->fifo[(p->head + i) % p->fifo_size];
}

/*
 * Room for one more run, below SMTP_RUNS_MAX: allocated on the first
 * command, doubled when full, the runs moved to start at index 0.
 */
static void
smtp_fifo_room(struct smtp *p)
{
	struct smtp_run *n;
	unsigned int size, i;

	if (p->nruns < p->fifo_size)
		return;
	size = p->fifo_size == 0 ? SMTP_RUNS_FIRST : p->fifo_size * 2;
	if (size > SMTP_RUNS_MAX)
		size = SMTP_RUNS_MAX;
	n = xcalloc(size, sizeof *n);
	for (i = 0; i < p->nruns; i++)
		n[i] = *smtp_run_at(p, i);
	free(p->fifo);
	p->fifo = n;
	p->fifo_size = size;
	p->head = 0;
}

/* Every command was answered: an idle session keeps no FIFO. */
static void
smtp_fifo_release(struct smtp *p)
{
	free(p->fifo);
	p->fifo = NULL;
	p->fifo_size = 0;
	p->head = 0;
}

static void
smtp_overflow(struct smtp *p)
{
	if (!p->overflow_noted)
		smtp_note(p, SMTP_CLIENT, "more than %d kinds of commands "
		    "awaiting replies; replies may be matched to the wrong "
		    "commands", SMTP_RUNS_MAX);
	p->overflow_noted = 1;
	p->desync = 1;
}

/*
 * Queue a command. When the FIFO is full the command joins the last run,
 * whose kind is then unknown: the count, and so the pairing of later
 * replies, stays right even when the kinds do not.
 */
static void
smtp_push(struct smtp *p, enum smtp_cmd cmd)
{
	struct smtp_run *last;

	p->count++;
	p->seq_sent++;
	if (p->nruns > 0) {
		last = smtp_run_at(p, p->nruns - 1);
		if (last->cmd == cmd) {
			last->n++;
			return;
		}
		if (p->nruns == SMTP_RUNS_MAX) {
			smtp_overflow(p);
			last->cmd = SMTP_CMD_UNKNOWN;
			last->n++;
			return;
		}
	}
	smtp_fifo_room(p);
	last = smtp_run_at(p, p->nruns);
	last->cmd = cmd;
	last->n = 1;
	p->nruns++;
}

/* Queue n commands ahead of all others (message data read as commands). */
static void
smtp_push_front(struct smtp *p, enum smtp_cmd cmd, uint64_t n)
{
	struct smtp_run *r;

	if (n == 0)
		return;
	p->count += n;
	p->seq_broken = 1;
	smtp_names_free(p);
	if (p->sasl != NULL && p->auth_seq >= p->seq_replied)
		p->auth_seq += n;
	if (p->nruns > 0 && p->fifo[p->head].cmd == cmd) {
		p->fifo[p->head].n += n;
		return;
	}
	if (p->nruns == SMTP_RUNS_MAX) {
		smtp_overflow(p);
		p->fifo[p->head].cmd = SMTP_CMD_UNKNOWN;
		p->fifo[p->head].n += n;
		return;
	}
	smtp_fifo_room(p);
	p->head = (p->head + p->fifo_size - 1) % p->fifo_size;
	r = &p->fifo[p->head];
	r->cmd = cmd;
	r->n = n;
	p->nruns++;
}

static enum smtp_cmd
smtp_pop(struct smtp *p)
{
	struct smtp_run *r = &p->fifo[p->head];
	enum smtp_cmd cmd = r->cmd;

	smtp_name_done(p);
	p->count--;
	p->seq_replied++;
	if (--r->n == 0) {
		p->head = (p->head + 1) % p->fifo_size;
		if (--p->nruns == 0)
			smtp_fifo_release(p);
	}
	if (p->count == 0)
		smtp_names_free(p);
	return cmd;
}

int
smtp_reply_boundary(const struct smtp *p)
{
	return !p->opaque && p->line[SMTP_SERVER].total == 0 && !p->reply_open;
}

uint64_t
smtp_pending(const struct smtp *p)
{
	/*
	 * After a client STARTTLS nothing is parsed: nothing is known. After
	 * a 334 the server waits for the client, not the other way round.
	 */
	return p->opaque || p->auth_challenged ? 0 : p->count;
}

/* The reply being read answers the AUTH in progress. */
static int
smtp_answers_auth(const struct smtp *p)
{
	return p->sasl != NULL && p->count > 0 &&
	    p->auth_seq == p->seq_replied;
}

/* ---- capabilities ---- */

/*
 * Append " NAME " to a list of mechanism names, upper case, with anything
 * outside the RFC 4422 alphabet as '?' so that the list stays plain text.
 * A name that would not fit in SMTP_MECHS_SIZE is left out whole.
 */
static void
smtp_mech_add(struct strbuf *list, const unsigned char *s, size_t n)
{
	size_t i;
	int c;

	if (list->len + n + 3 > SMTP_MECHS_SIZE)
		return;
	if (list->len == 0)
		strbuf_addc(list, ' ');
	for (i = 0; i < n; i++) {
		c = smtp_upper(s[i]);
		if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_'))
			c = '?';
		strbuf_addc(list, (char)c);
	}
	strbuf_addc(list, ' ');
}

/* The offered mechanisms, " PLAIN LOGIN ", or "". */
static const char *
smtp_mechs(const struct smtp_caps *c)
{
	return strbuf_str(&c->auth);
}

/* One "250-KEYWORD params" line of an EHLO reply, after the first. */
static void
smtp_caps_line(struct smtp_caps *c, const unsigned char *s, size_t len)
{
	size_t kw, i, m;
	uint64_t v;

	if (len <= 4)
		return;
	s += 4;
	len -= 4;
	for (kw = 0; kw < len && s[kw] != ' ' && s[kw] != '='; kw++)
		;
	if (c->n < SMTP_CAPS_MAX) {
		if (c->n > 0)
			strbuf_adds(&c->list, ", ");
		escape_append_max(&c->list, s, len, SMTP_CAP_SHOW);
	} else if (c->n == SMTP_CAPS_MAX)
		strbuf_adds(&c->list, ", ...");
	c->n++;
	if (smtp_ieq(s, kw, "SIZE")) {
		if (kw < len && smtp_number(s + kw + 1, len - kw - 1, &v))
			c->size = v;
	} else if (smtp_ieq(s, kw, "8BITMIME"))
		c->has_8bitmime = 1;
	else if (smtp_ieq(s, kw, "SMTPUTF8"))
		c->has_smtputf8 = 1;
	else if (smtp_ieq(s, kw, "AUTH")) {
		/* "AUTH PLAIN LOGIN" or the old "AUTH=PLAIN LOGIN". */
		c->has_auth = 1;
		for (i = kw + 1; i < len; i = m + 1) {
			for (m = i; m < len && s[m] != ' '; m++)
				;
			if (m == i)
				continue;
			smtp_mech_add(&c->auth, s + i, m - i);
		}
	}
}

/* Whether mech (upper case) is in the offered list. */
static int
smtp_caps_offers(const struct smtp_caps *c, const char *mech)
{
	char want[40];

	snprintf(want, sizeof want, " %s ", mech);
	return strstr(smtp_mechs(c), want) != NULL;
}

void
smtp_pretls_caps(struct smtp *p, const char *line, size_t len)
{
	struct smtp_caps *c = &p->caps[0];
	const unsigned char *s = (const unsigned char *)line;

	p->pretls = 1;
	/* Only the capabilities note shows these, and it is out already. */
	if (p->caps_noted || c->done || len < 3 ||
	    !smtp_iprefix(s, len, "250"))
		return;
	if (c->lines++ > 0)
		smtp_caps_line(c, s, len);
	if (len == 3 || s[3] == ' ')
		c->done = 1;
}

/* Once per session, when the client's EHLO has been answered. */
static void
smtp_caps_note(struct smtp *p)
{
	struct smtp_caps *pre = &p->caps[0], *post = &p->caps[1];

	if (p->caps_noted)
		return;
	p->caps_noted = 1;
	strbuf_adds(&p->out, "capabilities: ");
	if (p->pretls) {
		strbuf_adds(&p->out, "before TLS: ");
		if (pre->n > 0)
			strbuf_add(&p->out, pre->list.buf, pre->list.len);
		else
			strbuf_adds(&p->out, "(none)");
		strbuf_adds(&p->out, "; after TLS: ");
	}
	if (post->n > 0)
		strbuf_add(&p->out, post->list.buf, post->list.len);
	else
		strbuf_adds(&p->out, "(none)");
	if (!post->has_auth)
		strbuf_adds(&p->out, "; no AUTH offered");
	smtp_emit(p, SMTP_SERVER, SMTP_REC_NOTE, 0);
	/* Nothing else reads the lists, nor the pre-TLS mechanisms. */
	strbuf_free(&pre->list);
	strbuf_free(&pre->auth);
	strbuf_free(&post->list);
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
smtp_body_start(struct smtp *p, int bdat)
{
	memset(&p->b, 0, sizeof p->b);
	p->b.in_headers = 1;
	p->b.bdat = bdat;
	/* Chunk octets are message data by definition: no 354 to wait for. */
	p->b.confirmed = bdat;
	if (bdat)
		p->bdat_msg = 1;
	else
		p->body = 1;
}

/*
 * The client sends a message although DATA was refused: the server reads
 * each line as a command and answers it. The lines are a message all the
 * same, so they are counted like one and not shown.
 */
static void
smtp_orphan_start(struct smtp *p)
{
	smtp_body_start(p, 0);
	p->b.orphan = 1;
	p->b.early_noted = 1;
	smtp_note(p, SMTP_CLIENT, "the client sends message data although "
	    "DATA was refused: the server reads it as commands; counted, not "
	    "shown");
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

/* The end of a message: its summary, then what the caps make of it. */
static void
smtp_body_summary(struct smtp *p, const char *what)
{
	strbuf_printf(&p->out, "%s: %llu bytes, %llu lines, longest line %llu "
	    "bytes", what, (unsigned long long)p->b.bytes,
	    (unsigned long long)p->b.lines, (unsigned long long)p->b.longest);
	if (p->b.bdat)
		strbuf_printf(&p->out, ", %llu BDAT chunk%s",
		    (unsigned long long)p->b.chunks, p->b.chunks == 1 ? "" : "s");
	if (p->b.bare_lf > 0)
		strbuf_printf(&p->out, ", %llu bare LF",
		    (unsigned long long)p->b.bare_lf);
	if (p->b.bare_cr > 0)
		strbuf_printf(&p->out, ", %llu bare CR",
		    (unsigned long long)p->b.bare_cr);
	if (p->b.nul > 0)
		strbuf_printf(&p->out, ", %llu NUL",
		    (unsigned long long)p->b.nul);
	if (p->b.eightbit > 0)
		strbuf_printf(&p->out, ", %llu 8-bit bytes",
		    (unsigned long long)p->b.eightbit);
	if (p->b.smuggle > 0)
		strbuf_printf(&p->out, ", %llu possible smuggling sequences",
		    (unsigned long long)p->b.smuggle);
	smtp_emit(p, SMTP_CLIENT, SMTP_REC_NOTE, 0);
}

static void
smtp_message_end(struct smtp *p, const char *what)
{
	smtp_headers_end(p);
	smtp_body_summary(p, what);
	p->msg_bytes = p->b.bytes;
	if (p->desync)
		return;
	if (p->caps[1].size > 0 && p->b.bytes > p->caps[1].size)
		smtp_note(p, SMTP_CLIENT, "the message (%llu bytes) is larger "
		    "than the server's SIZE limit (%llu bytes)",
		    (unsigned long long)p->b.bytes,
		    (unsigned long long)p->caps[1].size);
	if (p->b.eightbit > 0 && !p->mail_body8 && !p->mail_utf8)
		smtp_note(p, SMTP_CLIENT, "the message has 8-bit data but MAIL "
		    "FROM declared neither BODY=8BITMIME nor SMTPUTF8");
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

/*
 * SMTP smuggling (postfix.org/smtp-smuggling.html): an end of data that one
 * server honours and the next does not. A bare "." line, a "." after a bare
 * LF, or a CR next to a "." without its LF.
 */
static void
smtp_smuggle(struct smtp *p, const struct smtp_line *l, size_t len, int crlf,
    int eof)
{
	const char *shape = NULL;

	if (p->b.bdat || eof)
		return;
	if (len == 1 && l->first == '.' && !crlf)
		shape = p->b.prev_bare_lf ? "\\n.\\n" : "\\r\\n.\\n";
	else if (len == 1 && l->first == '.' && p->b.prev_bare_lf)
		shape = "\\n.\\r\\n";
	else if (l->crdotcr || (len >= 2 && l->dotcr) || (!crlf &&
	    l->total >= 2 && l->prev == '.' && l->prev2 == '\r'))
		shape = "bare CR next to \".\"";
	if (shape == NULL)
		return;
	if (p->b.smuggle++ == 0)
		smtp_note(p, SMTP_CLIENT, "possible smuggling sequence (%s) in "
		    "message data, line %llu: servers may disagree on where "
		    "this message ends", shape,
		    (unsigned long long)p->b.lines);
}

/* One line of message data, whether from DATA or inside BDAT chunks. */
static void
smtp_msg_line(struct smtp *p, struct smtp_line *l, int eof, int dotted)
{
	int crlf;
	size_t len = smtp_line_len(l, eof, &crlf), stuffed;

	/* Sizes are of the message as stored: DATA puts a stuffed dot before
	 * a line starting with "." (RFC 5321 4.5.2); BDAT sends it as it is. */
	stuffed = dotted && l->total > 0 && l->first == '.';
	p->b.lines++;
	p->b.bytes += l->total + (eof ? 0 : 1) - stuffed;
	if (!eof && !crlf)
		p->b.bare_lf++;
	if (len - stuffed > p->b.longest)
		p->b.longest = len - stuffed;
	smtp_smuggle(p, l, len, crlf, eof);
	p->b.prev_bare_lf = !eof && !crlf;
	if (p->b.in_headers && !eof)
		smtp_body_header(p, l, len, crlf);
}

static void
smtp_body_line(struct smtp *p, int eof)
{
	struct smtp_line *l = &p->line[SMTP_CLIENT];
	int crlf;
	size_t len = smtp_line_len(l, eof, &crlf);

	/*
	 * Only CRLF "." CRLF ends the data (RFC 5321 4.1.1.4): after a bare LF
	 * the "." line is data, noted as a smuggling shape. A server that ends
	 * the message there anyway shows it with its reply, and the parser
	 * follows the server.
	 */
	if (crlf && len == 1 && l->first == '.' && !p->b.prev_bare_lf &&
	    p->b.orphan) {
		smtp_headers_end(p);
		smtp_body_summary(p, "message after the refused DATA");
		strbuf_adds(&p->out, ".");
		smtp_remember(p, ". (end of message data)", 23);
		smtp_emit(p, SMTP_CLIENT, SMTP_REC_COMMAND, 0);
		p->body = 0;
		smtp_push(p, SMTP_CMD_JUNK);
		return;
	}
	if (crlf && len == 1 && l->first == '.' && !p->b.prev_bare_lf) {
		smtp_message_end(p, "message");
		strbuf_adds(&p->out, ".");
		smtp_remember(p, ". (end of message data)", 23);
		smtp_emit(p, SMTP_CLIENT, SMTP_REC_COMMAND, 0);
		p->body = 0;
		p->b.dot_early = !p->b.confirmed;
		smtp_push(p, SMTP_CMD_DOT);
		return;
	}
	if (!p->b.confirmed && !p->b.early_noted) {
		p->b.early_noted = 1;
		smtp_note(p, SMTP_CLIENT, "client sent message data before "
		    "the reply to DATA; its headers are not shown");
	}
	smtp_msg_line(p, l, eof, 1);
	if (p->b.orphan && !eof)
		smtp_push(p, SMTP_CMD_JUNK);
}

/*
 * Whole message lines after the headers, from a line start. They are only
 * counted, so they are counted straight from the piece in one pass: no
 * copy, no per-byte loop, the same sums smtp_line_add and smtp_msg_line
 * give line by line. Stops at a line that does not end in the piece (kept
 * as usual: the server may yet make it a command) and, in DATA, at the end
 * of data. Returns the bytes used.
 */
static size_t
smtp_body_lines(struct smtp *p, const unsigned char *d, size_t n, int dotted)
{
	const unsigned char *s = d, *end = d + n, *lf;
	struct smtp_line v;
	size_t total;

	while (s < end && (lf = memchr(s, '\n', (size_t)(end - s))) != NULL) {
		total = (size_t)(lf - s);
		if (dotted && total == 2 && s[0] == '.' && s[1] == '\r' &&
		    !p->b.prev_bare_lf)
			break;		/* CRLF "." CRLF: smtp_body_line's */
		memset(&v, 0, sizeof v);
		v.buf = smtp_no_line;
		v.total = total;
		if (total > 0) {
			v.first = s[0];
			v.prev = s[total - 1];
			v.prev2 = total > 1 ? s[total - 2] : 0;
			v.dotcr = total > 1 && s[0] == '.' && s[1] == '\r';
			smtp_count_cr(p, &v, s, total);
		}
		smtp_msg_line(p, &v, 0, dotted);
		s = lf + 1;
	}
	smtp_count_odd(p, d, (size_t)(s - d));
	return (size_t)(s - d);
}

/* ---- client: commands and SASL ---- */

/*
 * "BDAT size [LAST]", the words split as smtp_verb() splits them: a line
 * that a lenient server reads as BDAT is taken for one, so that its chunk
 * is counted rather than shown. 0 if the size is not a decimal number.
 */
static int
smtp_bdat_parse(const unsigned char *s, size_t n, uint64_t *sizep, int *last)
{
	size_t i, start;
	uint64_t size = 0;

	smtp_verb_span(s, n, &start, &i);
	while (i < n && smtp_sep(s[i]))
		i++;
	for (start = i; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
		if (size > (UINT64_MAX - 9) / 10)
			return 0;
		size = size * 10 + (uint64_t)(s[i] - '0');
	}
	if (i == start || (i < n && !smtp_sep(s[i])))
		return 0;
	while (i < n && smtp_sep(s[i]))
		i++;
	while (n > i && smtp_sep(s[n - 1]))
		n--;
	*last = 0;
	if (i < n) {
		if (!smtp_ieq(s + i, n - i, "LAST"))
			return 0;
		*last = 1;
	}
	*sizep = size;
	return 1;
}

/* A chunk was counted in full: list it; LAST also ends the message. */
static void
smtp_bdat_done(struct smtp *p)
{
	p->b.chunks++;
	smtp_note(p, SMTP_CLIENT, "BDAT chunk: %llu bytes%s",
	    (unsigned long long)p->bdat_size, p->bdat_last ? ", LAST" : "");
	if (!p->bdat_last)
		return;
	if (p->bline.total > 0)
		smtp_msg_line(p, &p->bline, 1, 0);
	smtp_line_reset(&p->bline);
	smtp_message_end(p, "message");
	p->bdat_msg = 0;
}

/* Chunk octets: counted, never searched for an end (RFC 3030). */
static void
smtp_bdat_bytes(struct smtp *p, const unsigned char *d, size_t n)
{
	struct smtp_line *l = &p->bline;
	const unsigned char *lf;
	size_t seg;

	while (n > 0) {
		if (l->total == 0 && !p->b.in_headers) {
			seg = smtp_body_lines(p, d, n, 0);
			d += seg;
			n -= seg;
			if (n == 0)
				break;
		}
		lf = memchr(d, '\n', n);
		seg = lf != NULL ? (size_t)(lf - d) : n;
		smtp_line_add(p, l, d, seg, 1);
		d += seg;
		n -= seg;
		if (lf != NULL) {
			d++;
			n--;
			smtp_msg_line(p, l, 0, 0);
			smtp_line_reset(l);
		}
	}
}

/* Masked client text, e.g. in desync: never more than a length. */
static void
smtp_hidden(struct smtp *p, size_t len, int eof)
{
	strbuf_printf(&p->out, "[%zu bytes, not shown]", len);
	if (eof)
		strbuf_adds(&p->out, " [no CRLF]");
}

/* One remark of a mask, as part of a sentence about the named field. */
static void
smtp_diag_remark(struct strbuf *d, int more, const char *name, size_t nlen,
    const char *r, size_t n)
{
	if (!more) {
		strbuf_adds(d, "the ");
		if (name != NULL && nlen > 0)
			strbuf_add(d, name, nlen);
		else
			strbuf_adds(d, "secret");
		strbuf_addc(d, ' ');
	} else
		strbuf_adds(d, ", ");
	if (n >= 10 && strncmp(r, "ends with ", 10) == 0) {
		strbuf_adds(d, "ends in ");
		strbuf_add(d, r + 10, n - 10);
	} else if ((n >= 12 && strncmp(r, "starts with ", 12) == 0) ||
	    (n >= 9 && strncmp(r, "contains ", 9) == 0) ||
	    (n >= 4 && strncmp(r, "has ", 4) == 0))
		strbuf_add(d, r, n);
	else {
		strbuf_adds(d, "is ");
		strbuf_add(d, r, n);
	}
}

/*
 * Keep what sasl said is wrong with a secret, for the verdict: from
 * "password=<masked, 14 bytes, ends with LF (0x0a)>" make "the password
 * ends in LF (0x0a)". The text is sasl's already masked output, so nothing
 * here can hold the secret itself.
 */
static void
smtp_auth_diag(struct smtp *p, const char *t, size_t len)
{
	struct strbuf d = STRBUF_INIT;
	const char *m, *name, *end, *r, *comma;
	size_t nlen;
	int any = 0, first;

	strbuf_init(&d, SMTP_DIAG_MAX - 1);
	if (len > 13 && strncmp(t, "undecodable: ", 13) == 0) {
		end = memchr(t, ';', len);
		strbuf_adds(&d, "the response is ");
		strbuf_add(&d, t + 13, end != NULL ? (size_t)(end - t - 13) :
		    len - 13);
		any = 1;
	} else if (len > 9 && strncmp(t, "malformed", 9) == 0) {
		end = memchr(t, ':', len);
		strbuf_adds(&d, "the response is ");
		strbuf_add(&d, t, end != NULL ? (size_t)(end - t) : len);
		any = 1;
	}
	for (m = strstr(t, "<masked, "); !any && m != NULL;
	    m = strstr(m + 1, "<masked, ")) {
		/* The field name before "=<masked", if any. */
		nlen = 0;
		if (m > t && m[-1] == '=') {
			for (name = m - 1; name > t && ((name[-1] >= 'a' &&
			    name[-1] <= 'z') || name[-1] == '_' ||
			    name[-1] == '-'); name--)
				;
			nlen = (size_t)(m - 1 - name);
		} else
			name = NULL;
		if ((end = strchr(m, '>')) == NULL)
			break;
		/* "N bytes" first, then each remark after ", ". */
		for (r = m + 9, first = 1; r < end; first = 0) {
			if ((comma = memmem(r, (size_t)(end - r), ", ", 2)) ==
			    NULL)
				comma = end;
			if (!first && strncmp(r, "too long", 8) != 0) {
				smtp_diag_remark(&d, any, name, nlen, r,
				    (size_t)(comma - r));
				any = 1;
			}
			r = comma == end ? end : comma + 2;
		}
	}
	if (any && d.dropped == 0) {
		free(p->auth_diag);
		p->auth_diag = xstrdup(strbuf_str(&d));
	}
	strbuf_free(&d);
}

/* A line that is part of an AUTH exchange: through sasl, never raw. */
/* The summary names an AUTH still in progress too (code 0: no answer). */
static void
smtp_auth_progress(struct smtp *p)
{
	snprintf(p->stats.auth_mech, sizeof p->stats.auth_mech, "%s",
	    sasl_mech(p->sasl));
	snprintf(p->stats.auth_user, sizeof p->stats.auth_user, "%s",
	    sasl_user(p->sasl));
	p->stats.auth_code = 0;
}

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
	if (len == 1 && l->buf[0] == '*')
		p->auth_cancelled = 1;
	if (!sasl_last_public(p->sasl)) {
		p->auth_secret = 1;
		smtp_quote_watch(p, l->buf, len, l->kept);
	}
	smtp_auth_diag(p, strbuf_str(&p->tmp), p->tmp.len);
	if (p->desync) {
		smtp_hidden(p, len, 0);
		smtp_quote_watch(p, l->buf, len, l->kept);
	} else {
		if (sasl_last_public(p->sasl))
			smtp_line_text(p, l, len, 1, 0);
		else
			strbuf_adds(&p->out, "<masked>");
		strbuf_adds(&p->out, SMTP_ARROW);
		strbuf_add(&p->out, p->tmp.buf, p->tmp.len);
	}
	strbuf_reset(&p->tmp);
	smtp_emit(p, SMTP_CLIENT, SMTP_REC_AUTH, 0);
	if (p->sasl != NULL)
		smtp_auth_progress(p);
}

/* Whether the server offered the mechanism the client just chose. */
static void
smtp_auth_offered(struct smtp *p)
{
	const struct smtp_caps *c = &p->caps[1];
	const char *mech = sasl_mech(p->sasl);

	p->auth_offered = -1;
	p->auth_none = 0;
	if (!c->done)
		return;
	if (!c->has_auth) {
		p->auth_none = 1;
		p->auth_offered = 0;
		if (!p->desync)
			smtp_note(p, SMTP_CLIENT, "AUTH %s: the server offered "
			    "no AUTH mechanism", mech);
		return;
	}
	p->auth_offered = smtp_caps_offers(c, mech);
	/* Said once; after that only a choice the server did not offer. */
	if (!p->desync && (!p->auth_noted || !p->auth_offered))
		smtp_note(p, SMTP_CLIENT, "AUTH %s: %s by the server (offered:"
		    "%.*s)", mech, p->auth_offered ? "offered" : "NOT offered",
		    (int)c->auth.len - 1, smtp_mechs(c));
	p->auth_noted = 1;
}

/* The words of "AUTH mech [initial-response]", offsets into the line. */
struct smtp_authcmd {
	size_t	mech, mech_end;
	size_t	ir, ir_end;		/* ir == ir_end: no initial response */
	int	valid;			/* as a server splits it, a valid name */
};

/*
 * Split at blanks, as servers split it (RFC 5321 SP, and HTAB). The line
 * is decoded only when it is that exactly: blanks before the verb, a blank
 * after it, a valid mechanism name (RFC 4422). verb is the offset after
 * "AUTH"; len may exceed kept (the bytes held).
 */
static void
smtp_auth_split(const unsigned char *s, size_t len, size_t kept, size_t verb,
    struct smtp_authcmd *a)
{
	size_t i;

	a->valid = verb < kept && smtp_blank(s[verb]);
	for (i = 0; i + 4 < verb; i++)
		if (!smtp_blank(s[i]))
			a->valid = 0;
	for (i = verb; i < kept && smtp_blank(s[i]); i++)
		;
	a->mech = i;
	for (; i < kept && !smtp_blank(s[i]); i++)
		;
	a->mech_end = i;
	if (i == kept && kept < len)
		a->valid = 0;		/* the name runs past what is held */
	a->valid = a->valid && sasl_mech_valid((const char *)s + a->mech,
	    a->mech_end - a->mech);
	for (; i < kept && smtp_blank(s[i]); i++)
		;
	a->ir = i;
	a->ir_end = len;
	if (len == kept)
		while (a->ir_end > a->ir && smtp_blank(s[a->ir_end - 1]))
			a->ir_end--;
	if (a->ir > a->ir_end)
		a->ir = a->ir_end;
}

/* Show a valid AUTH line: the verb and mechanism as sent, the rest masked. */
static void
smtp_auth_show(struct smtp *p, const unsigned char *s,
    const struct smtp_authcmd *a)
{
	escape_append(&p->out, s, a->mech_end);
	if (a->ir == a->ir_end)
		return;
	strbuf_addc(&p->out, ' ');
	if (sasl_last_public(p->sasl))
		escape_append(&p->out, s + a->ir, a->ir_end - a->ir);
	else
		strbuf_adds(&p->out, "<masked>");
	strbuf_adds(&p->out, SMTP_ARROW);
	strbuf_add(&p->out, p->tmp.buf, p->tmp.len);
}

/*
 * A line that starts like AUTH (verb: the offset after "AUTH"). Everything
 * after the verb is masked whole unless the line is a well-formed AUTH: a
 * stray separator (VT, CR, NUL) may join the mechanism name to the
 * password, and some servers split there all the same. Returns 0 when only
 * blanks follow the verb: a plain command to show.
 */
static int
smtp_auth_command(struct smtp *p, const unsigned char *s, size_t len,
    size_t kept, size_t verb)
{
	struct smtp_authcmd a;

	smtp_auth_split(s, len, kept, verb, &a);
	if (a.mech == len)
		return 0;
	sasl_free(p->sasl);
	if (a.valid)
		p->sasl = sasl_new((const char *)s + a.mech,
		    a.mech_end - a.mech);
	else
		p->sasl = sasl_new_invalid(len - verb);
	p->auth_ir = a.valid && a.ir < a.ir_end;
	p->auth_invalid = !a.valid;
	p->auth_secret = !a.valid || p->auth_ir;
	if (p->auth_secret)
		smtp_quote_watch(p, s + verb, len - verb, kept - verb);
	p->auth_cancelled = 0;
	p->auth_final = 0;
	free(p->auth_diag);
	p->auth_diag = NULL;
	memset(&p->auth, 0, sizeof p->auth);
	strbuf_reset(&p->tmp);
	if (p->auth_ir) {
		if (len > kept)
			sasl_client_long(p->sasl, a.ir_end - a.ir, 1, &p->tmp);
		else
			sasl_client(p->sasl, (const char *)s + a.ir,
			    a.ir_end - a.ir, 1, &p->tmp);
		smtp_auth_diag(p, strbuf_str(&p->tmp), p->tmp.len);
	}
	if (p->desync)
		smtp_hidden(p, len, 0);
	else if (a.valid)
		smtp_auth_show(p, s, &a);
	else {
		escape_append(&p->out, s, verb);
		strbuf_printf(&p->out, " <masked, %zu bytes>" SMTP_ARROW "not "
		    "\"AUTH mechanism\" with a valid mechanism name: not "
		    "decoded", len - verb);
	}
	strbuf_reset(&p->tmp);
	smtp_remember(p, "AUTH", 4);
	smtp_emit(p, SMTP_CLIENT, SMTP_REC_AUTH, 0);
	smtp_auth_progress(p);
	/* Matched by its place, not by the FIFO: that may have overflowed. */
	p->auth_seq = p->seq_replied + p->count;
	smtp_push(p, SMTP_CMD_AUTH);
	if (a.valid)
		smtp_auth_offered(p);
	else
		p->auth_offered = -1, p->auth_none = 0;
	return 1;
}

/*
 * "MAIL FROM:<path> params": note AUTH=, and remember BODY=8BITMIME,
 * SMTPUTF8 and SIZE= for the checks at the end of the message.
 */
static void
smtp_mail_params(struct smtp *p, const unsigned char *s, size_t n)
{
	const unsigned char *gt;
	size_t i, e;
	uint64_t v;

	p->mail_body8 = p->mail_utf8 = 0;
	if ((gt = memchr(s, '>', n)) == NULL)
		return;
	for (i = (size_t)(gt - s) + 1; i < n; i = e) {
		while (i < n && s[i] == ' ')
			i++;
		for (e = i; e < n && s[e] != ' '; e++)
			;
		if (e == i)
			break;
		if (smtp_iprefix(s + i, e - i, "AUTH=")) {
			if (p->desync)
				continue;
			strbuf_adds(&p->out, "MAIL FROM parameter ");
			escape_append_max(&p->out, s + i, e - i, 300);
			strbuf_adds(&p->out, ": the submitter's authenticated "
			    "identity (RFC 4954 section 5)");
			if (p->stats.auth_code / 100 != 2)
				strbuf_adds(&p->out, "; the client has not "
				    "authenticated");
			smtp_emit(p, SMTP_CLIENT, SMTP_REC_NOTE, 0);
		} else if (smtp_ieq(s + i, e - i, "BODY=8BITMIME") ||
		    smtp_ieq(s + i, e - i, "BODY=BINARYMIME")) {
			p->mail_body8 = 1;
			if (p->caps[1].done && !p->caps[1].has_8bitmime &&
			    !p->desync)
				smtp_note(p, SMTP_CLIENT, "MAIL FROM declares "
				    "8-bit data but the server did not offer "
				    "8BITMIME");
		} else if (smtp_ieq(s + i, e - i, "SMTPUTF8")) {
			p->mail_utf8 = 1;
			if (p->caps[1].done && !p->caps[1].has_smtputf8 &&
			    !p->desync)
				smtp_note(p, SMTP_CLIENT, "MAIL FROM uses "
				    "SMTPUTF8 but the server did not offer it");
		} else if (smtp_iprefix(s + i, e - i, "SIZE=") &&
		    smtp_number(s + i + 5, e - i - 5, &v) &&
		    p->caps[1].size > 0 && v > p->caps[1].size && !p->desync)
			smtp_note(p, SMTP_CLIENT, "MAIL FROM declares SIZE=%llu, "
			    "over the server's limit of %llu bytes",
			    (unsigned long long)v,
			    (unsigned long long)p->caps[1].size);
	}
}

static enum smtp_cmd
smtp_verb(const unsigned char *s, size_t n)
{
	size_t i, vs, ve;

	smtp_verb_span(s, n, &vs, &ve);
	for (i = 0; i < sizeof smtp_verbs / sizeof smtp_verbs[0]; i++)
		if (smtp_ieq(s + vs, ve - vs, smtp_verbs[i].verb))
			return smtp_verbs[i].cmd;
	return SMTP_CMD_OTHER;
}

/*
 * Whether a line is plainly an ordinary command, in the form clients send
 * it: a password sent as a command after a failed AUTH, or a message sent
 * after a refused DATA, is not. Commands with free text (VRFY, HELP x,
 * unknown ones) are not plain.
 */
static int
smtp_plain_command(const unsigned char *s, size_t n, enum smtp_cmd cmd)
{
	size_t vs, ve, as, ae, i;

	smtp_verb_span(s, n, &vs, &ve);
	if (vs > 0 || (ve < n && !smtp_blank(s[ve])))
		return 0;
	for (as = ve; as < n && smtp_blank(s[as]); as++)
		;
	for (ae = n; ae > as && smtp_blank(s[ae - 1]); ae--)
		;
	switch (cmd) {
	case SMTP_CMD_MAIL:
		return smtp_iprefix(s + as, ae - as, "FROM:");
	case SMTP_CMD_RCPT:
		return smtp_iprefix(s + as, ae - as, "TO:");
	case SMTP_CMD_EHLO:
	case SMTP_CMD_HELO:
		for (i = as; i < ae; i++)
			if (smtp_blank(s[i]))
				return 0;
		return as < ae;
	case SMTP_CMD_BDAT:
	case SMTP_CMD_BDAT_LAST:
		return 1;		/* its syntax was checked */
	case SMTP_CMD_DATA:
	case SMTP_CMD_RSET:
	case SMTP_CMD_QUIT:
	case SMTP_CMD_STARTTLS:
		return as == ae;
	default:
		return as == ae && (smtp_ieq(s, ve, "NOOP") ||
		    smtp_ieq(s, ve, "HELP"));
	}
}

/* The last command before QUIT, for "client quit after EHLO". */
static void
smtp_last_verb(struct smtp *p, enum smtp_cmd cmd, const unsigned char *s,
    size_t n)
{
	struct strbuf sb;
	size_t vs, vlen;

	if (cmd == SMTP_CMD_QUIT)
		return;
	p->commands_before_quit++;
	if (cmd != SMTP_CMD_OTHER && cmd != SMTP_CMD_BDAT_LAST) {
		snprintf(p->last_verb, sizeof p->last_verb, "%s",
		    smtp_cmd_verb[cmd]);
		return;
	}
	if (cmd == SMTP_CMD_BDAT_LAST) {
		snprintf(p->last_verb, sizeof p->last_verb, "BDAT");
		return;
	}
	smtp_verb_span(s, n, &vs, &vlen);
	vlen -= vs;
	strbuf_init(&sb, sizeof p->last_verb - 1);
	escape_append(&sb, s + vs, vlen < 5 ? vlen : 5);
	snprintf(p->last_verb, sizeof p->last_verb, "%s",
	    sb.dropped == 0 ? strbuf_str(&sb) : "a command");
	strbuf_free(&sb);
}

/* The line's kind, BDAT's size and LAST parsed; AUTH is decided apart. */
static enum smtp_cmd
smtp_classify(const unsigned char *s, size_t kept, uint64_t *size, int *last)
{
	enum smtp_cmd cmd = smtp_verb(s, kept);

	if (cmd == SMTP_CMD_AUTH)
		return SMTP_CMD_OTHER;	/* smtp_auth_like() decides */
	if (cmd == SMTP_CMD_BDAT) {
		if (!smtp_bdat_parse(s, kept, size, last))
			return SMTP_CMD_OTHER;
		if (*last)
			return SMTP_CMD_BDAT_LAST;
	}
	return cmd;
}

/*
 * From an AUTH until a plain command follows its success, a line that is
 * not plainly a command may be a secret: a response the client sent after
 * the exchange ended (504, "*" and 501, a reply the parser took for the
 * end), a password typed as a command after a 535.
 */
static int
smtp_wary(const struct smtp *p, const unsigned char *s, size_t len,
    size_t kept, enum smtp_cmd cmd)
{
	return p->auth_wary && (len > kept || !smtp_plain_command(s, kept, cmd));
}

static void
smtp_masked_line(struct smtp *p, size_t len, int eof)
{
	if (!p->wary_noted) {
		p->wary_noted = 1;
		smtp_note(p, SMTP_CLIENT, "a client line after AUTH that is "
		    "not a plain SMTP command is masked, and so is the reply to "
		    "it: it may be a password");
	}
	strbuf_printf(&p->out, "<masked, %zu bytes>", len);
	if (eof)
		strbuf_adds(&p->out, " [no CRLF]");
}

/*
 * A masked line is queued without its kind (so that nothing reads its
 * words), except where the kind decides what the next bytes are: data
 * the server may take as a message, or TLS, stays hidden.
 */
static enum smtp_cmd
smtp_masked_kind(enum smtp_cmd cmd)
{
	switch (cmd) {
	case SMTP_CMD_DATA:
	case SMTP_CMD_BDAT:
	case SMTP_CMD_BDAT_LAST:
	case SMTP_CMD_STARTTLS:
	case SMTP_CMD_RSET:
	case SMTP_CMD_QUIT:
		return cmd;
	default:
		return SMTP_CMD_MASKED;
	}
}

static void	smtp_orphan_start(struct smtp *);
static void	smtp_body_line(struct smtp *, int);

/*
 * After a refused DATA: a line that is not plainly a command is the start
 * of the message the client sends anyway.
 */
static int
smtp_orphan(struct smtp *p, const unsigned char *s, size_t len, size_t kept,
    size_t verb, enum smtp_cmd cmd, int eof)
{
	if (!p->data_refused)
		return 0;
	p->data_refused = 0;
	if (verb != 0 || (len <= kept && smtp_plain_command(s, kept, cmd)))
		return 0;
	smtp_orphan_start(p);
	smtp_body_line(p, eof);
	return 1;
}

static void
smtp_command(struct smtp *p, int eof)
{
	struct smtp_line *l = &p->line[SMTP_CLIENT];
	int crlf, last = 0, masked;
	size_t len = smtp_line_len(l, eof, &crlf);
	size_t kept = len < l->kept ? len : l->kept;
	size_t verb = smtp_auth_like(l->buf, kept);
	uint64_t size = 0;
	enum smtp_cmd cmd = smtp_classify(l->buf, kept, &size, &last);

	if (smtp_orphan(p, l->buf, len, kept, verb, cmd, eof))
		return;
	masked = verb == 0 && smtp_wary(p, l->buf, len, kept, cmd);
	if (eof) {
		/* The server never saw a whole command: show, don't track. */
		if (p->desync || verb != 0)
			smtp_hidden(p, len, 1);
		else if (masked)
			smtp_masked_line(p, len, 1);
		else
			smtp_line_text(p, l, len, 0, 1);
		smtp_emit(p, SMTP_CLIENT, SMTP_REC_COMMAND, 0);
		return;
	}
	p->stats.commands++;
	if (verb != 0) {
		if (!p->auth_wary)
			p->wary_noted = 0;
		p->auth_wary = 1;
		if (!p->desync)
			smtp_last_verb(p, SMTP_CMD_AUTH, l->buf, kept);
		if (smtp_auth_command(p, l->buf, len, kept, verb))
			return;
	} else if (!p->desync && !masked)
		smtp_last_verb(p, cmd, l->buf, kept);
	if (cmd == SMTP_CMD_BDAT || cmd == SMTP_CMD_BDAT_LAST) {
		p->bdat_size = p->bdat_left = size;
		p->bdat_last = last;
	}
	if (p->desync) {
		smtp_hidden(p, len, 0);
		smtp_quote_watch(p, l->buf, len, kept);
	} else if (masked) {
		smtp_masked_line(p, len, 0);
		smtp_quote_watch(p, l->buf, len, kept);
	} else {
		smtp_line_text(p, l, len, crlf, 0);
		if (p->stats.auth_code == 235) {
			p->auth_wary = 0;
			smtp_quote_forget(p);
		}
	}
	smtp_remember(p, strbuf_str(&p->out), p->out.len);
	smtp_emit(p, SMTP_CLIENT, SMTP_REC_COMMAND, 0);
	if (masked || (p->desync && cmd == SMTP_CMD_OTHER))
		cmd = smtp_masked_kind(cmd);
	smtp_push(p, cmd);
	switch (cmd) {
	case SMTP_CMD_MAIL:
		smtp_mail_params(p, l->buf, kept);
		break;
	case SMTP_CMD_DATA:
		smtp_body_start(p, 0);
		break;
	case SMTP_CMD_BDAT:
	case SMTP_CMD_BDAT_LAST:
		if (!p->bdat_msg)
			smtp_body_start(p, 1);
		if (p->bdat_left == 0)
			smtp_bdat_done(p);
		break;
	case SMTP_CMD_RSET:
		/* A BDAT message in progress is abandoned. */
		p->bdat_msg = 0;
		smtp_line_reset(&p->bline);
		break;
	case SMTP_CMD_QUIT:
		p->quit = 1;
		break;
	default:
		break;
	}
}

static void
smtp_client_line(struct smtp *p, int eof)
{
	p->auth_challenged = 0;
	if (p->body)
		smtp_body_line(p, eof);
	else if (p->sasl != NULL)
		smtp_sasl_line(p, eof);	/* fail closed: all of it is SASL */
	else
		smtp_command(p, eof);
	smtp_line_reset(&p->line[SMTP_CLIENT]);
}

static void
smtp_feed_client(struct smtp *p, const unsigned char *d, size_t n)
{
	struct smtp_line *l = &p->line[SMTP_CLIENT];
	const unsigned char *lf;
	size_t seg;

	while (n > 0 && !p->opaque) {
		if (p->bdat_left > 0) {
			seg = n < p->bdat_left ? n : (size_t)p->bdat_left;
			p->bdat_left -= seg;
			if (p->bdat_msg)
				smtp_bdat_bytes(p, d, seg);
			d += seg;
			n -= seg;
			if (p->bdat_left == 0)
				smtp_bdat_done(p);
			continue;
		}
		/* After the headers (and any note on early data) lines of a
		 * message are only counted: most of a DATA goes this way. */
		if (p->body && l->total == 0 && !p->b.in_headers &&
		    (p->b.confirmed || p->b.early_noted) && !p->b.orphan &&
		    (seg = smtp_body_lines(p, d, n, 1)) > 0) {
			p->auth_challenged = 0;
			d += seg;
			n -= seg;
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

/* The first failure of a transaction: later ones are mostly its echo. */
static void
smtp_fail(struct smtp *p, enum smtp_cmd cmd, int code, const char *enh)
{
	if (p->fail.code != 0)
		return;
	p->fail.verb = smtp_cmd_verb[cmd];
	p->fail.code = code;
	snprintf(p->fail.enh, sizeof p->fail.enh, "%s", enh);
	p->fail.meaning = status_explain(code, enh, p->fail.verb);
	p->fail_after_accept = p->stats.messages_accepted > 0;
}

/*
 * DATA refused. Whatever message data the client already sent, the server
 * read as commands and answers one by one: queue them ahead of the rest so
 * those replies pair up, and hide what follows until back in step.
 */
static void
smtp_reply_data(struct smtp *p, int code)
{
	struct smtp_run *h = p->nruns > 0 ? &p->fifo[p->head] : NULL;
	uint64_t n = 0;

	if (code == 354) {
		if (p->body)
			p->b.confirmed = 1;
		return;
	}
	p->stats.messages_rejected++;
	if (p->body && p->b.lines == 0) {
		/* Nothing sent yet: what comes next may be the message. */
		p->body = 0;
		p->data_refused = 1;
	} else if (p->body && !p->b.orphan) {
		/* The rest of the message is read as commands too. */
		n = p->b.lines;
		p->b.orphan = 1;
		p->b.early_noted = 1;
		smtp_note(p, SMTP_SERVER, "DATA refused after the client sent "
		    "%llu lines of message data: the server reads them and the "
		    "rest as commands; counted, not shown",
		    (unsigned long long)n);
		smtp_push_front(p, SMTP_CMD_JUNK, n);
		return;
	} else if (h != NULL && h->cmd == SMTP_CMD_DOT && p->b.dot_early) {
		/* The "." was sent too: it is one more line read as command. */
		n = p->b.lines;
		if (h->n == 1)
			h->cmd = SMTP_CMD_JUNK;
		else
			n++, h->n--, p->count--;
	}
	p->b.dot_early = 0;
	if (n == 0)
		return;
	smtp_note(p, SMTP_SERVER, "DATA refused after the client sent %llu "
	    "lines of message data: the server reads them as commands",
	    (unsigned long long)n);
	smtp_push_front(p, SMTP_CMD_JUNK, n);
	p->desync = 1;
}

static void	smtp_reply_message(struct smtp *, enum smtp_cmd, int,
		    const char *);

static void
smtp_reply_unexpected(struct smtp *p, int code, const char *enh)
{
	if (p->body && !p->b.bdat && p->b.confirmed && !p->desync) {
		/*
		 * The server answered inside what looked like message data: it
		 * saw an end of data the parser did not (a smuggling shape).
		 * The server is the ground truth for what it stored.
		 */
		smtp_note(p, SMTP_SERVER, "the server ended the message where "
		    "smtptap saw no CRLF.CRLF%s: what followed was commands to "
		    "it", p->b.smuggle ? " (at the smuggling sequence)" : "");
		smtp_message_end(p, "message");
		p->body = 0;
		smtp_reply_message(p, SMTP_CMD_DOT, code, enh);
		return;
	}
	smtp_note(p, SMTP_SERVER, "unexpected reply (no command outstanding)");
	p->desync = 1;
	if (p->body) {
		/* The server thinks the message ended; believe it. */
		smtp_note(p, SMTP_SERVER, "leaving message data early");
		p->body = 0;
	}
}

static void
smtp_reply_auth(struct smtp *p, int code, const char *enh)
{
	snprintf(p->stats.auth_mech, sizeof p->stats.auth_mech, "%s",
	    sasl_mech(p->sasl));
	snprintf(p->stats.auth_user, sizeof p->stats.auth_user, "%s",
	    sasl_user(p->sasl));
	p->stats.auth_code = code;
	p->auth_final = 1;
	p->auth.verb = "AUTH";
	p->auth.code = code;
	snprintf(p->auth.enh, sizeof p->auth.enh, "%s", enh);
	p->auth.meaning = status_explain(code, enh, p->auth_cancelled ?
	    "AUTH cancelled" : "AUTH");
	sasl_free(p->sasl);
	p->sasl = NULL;
}

/* A message ended with this reply (to "." or BDAT LAST). */
static void
smtp_reply_message(struct smtp *p, enum smtp_cmd cmd, int code,
    const char *enh)
{
	if (p->msg_failed)
		return;		/* counted when its chunk was rejected */
	if (code / 100 == 2) {
		p->stats.messages_accepted++;
		p->accepted.verb = smtp_cmd_verb[cmd];
		p->accepted.code = code;
		snprintf(p->accepted.enh, sizeof p->accepted.enh, "%s", enh);
		p->accepted_rcpts = p->rcpt_ok;
		p->accepted_bytes = p->msg_bytes;
		p->fail_after_accept = 0;
		memset(&p->fail, 0, sizeof p->fail);
	} else {
		p->stats.messages_rejected++;
		smtp_fail(p, cmd, code, enh);
	}
}

/* A reply is complete: match it to the oldest outstanding command. */
static void
smtp_reply_done(struct smtp *p, int code, const char *enh)
{
	enum smtp_cmd cmd;
	int auth;

	if (p->count == 0) {
		if (!p->greeted) {
			p->greeted = 1;
			p->greeting_code = code;
		} else
			smtp_reply_unexpected(p, code, enh);
		return;
	}
	p->greeted = 1;
	auth = smtp_answers_auth(p);
	if (code == 334 && auth) {
		p->auth_challenged = 1;
		return;		/* a challenge: the exchange goes on */
	}
	cmd = smtp_pop(p);
	if (auth)
		cmd = SMTP_CMD_AUTH;
	if (code == 334) {
		smtp_note(p, SMTP_SERVER, "unexpected 334 (no AUTH "
		    "outstanding); client lines hidden until resynchronised");
		p->desync = 1;
		return;
	}
	switch (cmd) {
	case SMTP_CMD_AUTH:
		if (p->sasl != NULL)
			smtp_reply_auth(p, code, enh);
		break;
	case SMTP_CMD_EHLO:
		if (code == 250 && !p->caps[1].done) {
			p->caps[1].done = 1;
			smtp_caps_note(p);
		}
		break;
	case SMTP_CMD_MAIL:
		p->rcpt_ok = 0;
		p->msg_failed = 0;
		memset(&p->fail, 0, sizeof p->fail);
		if (code >= 400)
			smtp_fail(p, cmd, code, enh);
		break;
	case SMTP_CMD_RCPT:
		if (code / 100 == 2)
			p->rcpt_ok++;
		else
			smtp_fail(p, cmd, code, enh);
		break;
	case SMTP_CMD_DATA:
		if (code != 354)
			smtp_fail(p, cmd, code, enh);
		smtp_reply_data(p, code);
		break;
	case SMTP_CMD_DOT:
	case SMTP_CMD_BDAT_LAST:
		smtp_reply_message(p, cmd, code, enh);
		break;
	case SMTP_CMD_BDAT:
		/* RFC 3030 section 2: a refused chunk fails the message. */
		if (code >= 400 && !p->msg_failed) {
			p->stats.messages_rejected++;
			smtp_fail(p, cmd, code, enh);
			p->msg_failed = 1;
			smtp_note(p, SMTP_SERVER, "BDAT chunk refused: the "
			    "message has failed, the server discards the rest "
			    "of it");
		}
		break;
	case SMTP_CMD_STARTTLS:
		if (code == 220) {
			smtp_note(p, SMTP_SERVER, "STARTTLS accepted: what "
			    "follows is encrypted and not parsed");
			p->opaque = 1;
			p->client_tls = 1;
		}
		break;
	case SMTP_CMD_RSET:
		p->msg_failed = 0;
		break;
	case SMTP_CMD_HELO:
	case SMTP_CMD_QUIT:
	case SMTP_CMD_OTHER:
	case SMTP_CMD_UNKNOWN:
	case SMTP_CMD_JUNK:
	case SMTP_CMD_MASKED:
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

/* What the command the reply answers is called, for status_context(). */
static const char *
smtp_reply_verb(const struct smtp *p)
{
	if (p->count == 0)
		return p->greeted ? NULL : "greeting";
	if (smtp_answers_auth(p))
		return p->auth_cancelled ? "AUTH cancelled" : "AUTH";
	return smtp_cmd_verb[smtp_head(p)];
}

/*
 * The reply answers a client line that was not shown: servers often quote
 * the command they refuse ('500 Error: command "X" not recognized', "504
 * mechanism X not available", '535 failed: "AUTH PLAIN ..."'), so its
 * text is not shown either. So for a refusal of AUTH after a line that may
 * have held a secret, and for any final reply to an AUTH line that was not
 * decoded; a 334 is decoded, and a success quotes nothing.
 */
static int
smtp_reply_quotes_hidden(const struct smtp *p, int code,
    const unsigned char *s, size_t len)
{
	enum smtp_cmd h;

	if (p->count == 0)
		return 0;
	if (smtp_answers_auth(p))
		return code != 334 && (p->auth_invalid ||
		    (p->auth_secret && code / 100 != 2)) &&
		    smtp_quotes_masked(p, s, len);
	h = smtp_head(p);
	return h == SMTP_CMD_JUNK ||
	    (h == SMTP_CMD_MASKED && smtp_quotes_masked(p, s, len));
}

/* Keep a masked client line for smtp_quotes_masked(); fail closed when long. */
static void
smtp_quote_watch(struct smtp *p, const unsigned char *s, size_t len,
    size_t kept)
{
	size_t i;

	if (len == 0)
		return;
	if (len > kept || p->quoted.len + len + 1 > SMTP_QUOTED_MAX) {
		p->quoted_full = 1;
		return;
	}
	for (i = 0; i < len; i++)
		strbuf_addc(&p->quoted, (char)tolower(s[i]));
	strbuf_addc(&p->quoted, '\n');
}

/* The AUTH is over and a plain command shown: nothing to watch for. */
static void
smtp_quote_forget(struct smtp *p)
{
	strbuf_reset(&p->quoted);
	p->quoted_full = 0;
}

/*
 * Does a reply quote a masked client line? Servers echo refused commands
 * (aiosmtpd, sendmail), upper-cased at times: any SMTP_QUOTE_PIECE bytes of
 * a masked line in the reply, in any case, count; a shorter line counts
 * whole. Replies that quote nothing keep their text, which is what a user
 * needs to read ("534 5.7.9 Application-specific password required").
 */
static int
smtp_quotes_masked(const struct smtp *p, const unsigned char *s, size_t len)
{
	char low[SMTP_LINE_MAX];
	const char *seg, *end, *nl;
	size_t i, n, w;

	if (p->quoted_full)
		return 1;
	if (len > sizeof low)
		return 1;
	for (i = 0; i < len; i++)
		low[i] = (char)tolower(s[i]);
	seg = strbuf_str(&p->quoted);
	end = seg + p->quoted.len;
	for (; seg < end; seg = nl + 1) {
		nl = memchr(seg, '\n', (size_t)(end - seg));
		n = (size_t)(nl - seg);
		w = n < SMTP_QUOTE_PIECE ? n : SMTP_QUOTE_PIECE;
		for (i = 0; i + w <= n; i++)
			if (memmem(low, len, seg + i, w) != NULL) {
				explicit_bzero(low, len);
				return 1;
			}
	}
	explicit_bzero(low, len);
	return 0;
}

/* "500 5.5.2 [30 bytes not shown]": the codes, the text's length. */
static void
smtp_reply_hidden(struct smtp *p, const unsigned char *s, size_t len,
    int code, const char *enh, int eof)
{
	size_t skip = 0;

	if (code != 0) {
		strbuf_printf(&p->out, "%d", code);
		skip = 3;
		if (len > 3) {
			strbuf_addc(&p->out, (char)s[3]);
			skip = 4;
		}
		if (enh[0] != '\0') {
			strbuf_printf(&p->out, "%s ", enh);
			skip += strlen(enh) + 1;
		}
	}
	if (len > skip)
		strbuf_printf(&p->out, "[%zu bytes not shown]", len - skip);
	if (eof)
		strbuf_adds(&p->out, " [no CRLF]");
}

static void
smtp_server_line(struct smtp *p, int eof)
{
	struct smtp_line *l = &p->line[SMTP_SERVER];
	int crlf, last = 0, code;
	size_t len = smtp_line_len(l, eof, &crlf);
	size_t kept = len < l->kept ? len : l->kept;
	char enh[STATUS_ENH_MAX];
	const char *why, *name;

	code = smtp_reply_code(l->buf, kept, &last);
	enh[0] = '\0';
	if (code != 0)
		status_parse(code, (const char *)l->buf, kept, enh);
	if (smtp_reply_quotes_hidden(p, code, l->buf, len > kept ? kept : len) ||
	    (len > kept && smtp_reply_quotes_hidden(p, code, NULL, 0)))
		smtp_reply_hidden(p, l->buf, len, code, enh, eof);
	else
		smtp_line_text(p, l, len, crlf, eof);
	if (code == 334 && !eof && smtp_answers_auth(p)) {
		strbuf_reset(&p->tmp);
		if (len > kept)
			strbuf_adds(&p->tmp, "(too long to decode)");
		else
			sasl_server(p->sasl, kept > 4 ? (const char *)l->buf +
			    4 : "", kept > 4 ? kept - 4 : 0, &p->tmp);
		strbuf_adds(&p->out, SMTP_ARROW);
		strbuf_add(&p->out, p->tmp.buf, p->tmp.len);
		strbuf_reset(&p->tmp);
	} else if (code != 0 && last && !eof &&
	    (why = status_explain(code, enh, smtp_reply_verb(p))) != NULL) {
		strbuf_adds(&p->out, SMTP_ARROW);
		strbuf_adds(&p->out, why);
	}
	/* Under PIPELINING the command answered is not the last one shown. */
	if (code != 0 && code != 334 && last && !eof && p->count > 0 &&
	    !p->seq_broken && !p->desync && p->seq_replied + 1 < p->seq_sent &&
	    (name = smtp_name(p)) != NULL)
		strbuf_printf(&p->out, " [to %s]", name);
	/* The client's EHLO reply: collect what it offers, once. */
	if (code == 250 && !eof && p->reply_lines > 0 && p->count > 0 &&
	    smtp_head(p) == SMTP_CMD_EHLO && !smtp_answers_auth(p) &&
	    !p->caps[1].done)
		smtp_caps_line(&p->caps[1], l->buf, kept);
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
		p->reply_lines++;
		return;
	}
	p->reply_open = 0;
	p->reply_lines = 0;
	smtp_reply_done(p, code, enh);
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

/*
 * Between pieces of input the record buffers are empty (each record is
 * emitted where it is built): give them back, so that a session at rest
 * holds no record text and one long line's buffer is not kept for good.
 */
static void
smtp_rest(struct smtp *p)
{
	if (p->out.len == 0)
		strbuf_free(&p->out);
	if (p->tmp.len == 0)
		strbuf_free(&p->tmp);
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
	smtp_rest(p);
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
	} else if (p->line[SMTP_CLIENT].total > 0)
		smtp_client_line(p, 1);
	if (p->body) {
		smtp_headers_end(p);
		smtp_body_summary(p, p->b.orphan ? "message after the refused "
		    "DATA, incomplete (no end of data)" :
		    "message incomplete (no end of data)");
		p->body = 0;
	}
	if (p->bdat_msg) {
		if (p->bline.total > 0)
			smtp_msg_line(p, &p->bline, 1, 0);
		smtp_line_reset(&p->bline);
		smtp_headers_end(p);
		smtp_body_summary(p, "message incomplete (no BDAT LAST)");
		p->bdat_msg = 0;
	}
}

/* ---- the verdict ---- */

static void
smtp_code_text(struct strbuf *sb, const struct smtp_outcome *o, int meaning)
{
	strbuf_printf(sb, "%d", o->code);
	if (o->enh[0] != '\0')
		strbuf_printf(sb, " %s", o->enh);
	if (meaning && o->meaning != NULL)
		strbuf_printf(sb, " %s", o->meaning);
}

static void
smtp_verdict_auth(const struct smtp *p, struct strbuf *sb)
{
	strbuf_printf(sb, "AUTH %s", p->stats.auth_mech[0] != '\0' ?
	    p->stats.auth_mech : sasl_mech(p->sasl));
	if (p->auth_ir)
		strbuf_adds(sb, " (initial-response)");
	if (p->stats.auth_user[0] != '\0')
		strbuf_printf(sb, " as %s", p->stats.auth_user);
}

/* Why the client may have been refused, from what the server offered. */
static void
smtp_verdict_offer(const struct smtp *p, struct strbuf *sb)
{
	if (p->auth_none)
		strbuf_adds(sb, "; the server offered no AUTH mechanism");
	else if (p->auth_offered == 0)
		strbuf_printf(sb, "; the server did not offer %s (offered:%.*s)",
		    p->stats.auth_mech, (int)p->caps[1].auth.len - 1,
		    smtp_mechs(&p->caps[1]));
}

void
smtp_verdict(const struct smtp *p, struct strbuf *sb)
{
	const struct smtp_outcome *f = &p->fail;
	int authed = p->stats.auth_code / 100 == 2;

	if (!p->greeted) {
		strbuf_adds(sb, "no reply from the server");
		return;
	}
	if (p->greeting_code >= 400) {
		strbuf_printf(sb, "the server refused the session with %d "
		    "(%s)", p->greeting_code, status_basic(p->greeting_code) ?
		    status_basic(p->greeting_code) : "error");
		return;
	}
	if (p->client_tls) {
		strbuf_adds(sb, "the client started TLS itself (STARTTLS): the "
		    "rest of the session is encrypted and not decoded");
		return;
	}
	if (p->stats.messages_accepted > 0) {
		if (p->stats.messages_accepted == 1)
			strbuf_adds(sb, "message accepted ");
		else
			strbuf_printf(sb, "%llu messages accepted, the last ",
			    (unsigned long long)p->stats.messages_accepted);
		smtp_code_text(sb, &p->accepted, 0);
		strbuf_printf(sb, " (%u recipient%s, ", p->accepted_rcpts,
		    p->accepted_rcpts == 1 ? "" : "s");
		smtp_size(sb, p->accepted_bytes);
		strbuf_addc(sb, ')');
		if (p->fail_after_accept && f->code != 0) {
			strbuf_printf(sb, "; then %s rejected ",
			    f->verb == NULL ? "a command" :
			    strcmp(f->verb, ".") == 0 ? "a message" : f->verb);
			smtp_code_text(sb, f, 1);
		}
		return;
	}
	if (p->sasl != NULL || (p->stats.auth_mech[0] != '\0' && !authed)) {
		smtp_verdict_auth(p, sb);
		if (p->sasl != NULL || !p->auth_final)
			strbuf_adds(sb, ": no final reply from the server");
		else if (p->auth_cancelled)
			strbuf_printf(sb, " cancelled by the client (*), %d",
			    p->auth.code);
		else {
			strbuf_adds(sb, " rejected ");
			smtp_code_text(sb, &p->auth, p->auth_diag == NULL);
		}
		if (p->auth_diag != NULL)
			strbuf_printf(sb, "; %s", p->auth_diag);
		smtp_verdict_offer(p, sb);
		return;
	}
	if (f->code != 0) {
		if (f->verb != NULL && (strcmp(f->verb, ".") == 0 ||
		    strcmp(f->verb, "BDAT LAST") == 0))
			strbuf_adds(sb, "message rejected ");
		else
			strbuf_printf(sb, "no message sent: %s rejected ",
			    f->verb != NULL ? f->verb : "a command");
		smtp_code_text(sb, f, 1);
		if ((f->code == 530 || strcmp(f->enh, "5.7.1") == 0) &&
		    !authed) {
			if (p->caps[1].done && !p->caps[1].has_auth)
				strbuf_adds(sb, "; the server offered no AUTH "
				    "mechanism");
			else
				strbuf_adds(sb, "; the client did not "
				    "authenticate");
		}
		if (p->caps[1].size > 0 && p->msg_bytes > p->caps[1].size)
			strbuf_printf(sb, "; the message (%llu bytes) is over "
			    "the SIZE limit (%llu bytes)",
			    (unsigned long long)p->msg_bytes,
			    (unsigned long long)p->caps[1].size);
		return;
	}
	if (p->stats.messages_rejected > 0) {
		strbuf_adds(sb, "message rejected");
		return;
	}
	if (authed) {
		smtp_verdict_auth(p, sb);
		strbuf_adds(sb, " accepted ");
		smtp_code_text(sb, &p->auth, 0);
		strbuf_adds(sb, "; no message sent, ");
	} else
		strbuf_adds(sb, "no message sent: ");
	if (p->quit)
		strbuf_printf(sb, "client quit after %s", p->last_verb[0] !=
		    '\0' ? p->last_verb : "the greeting");
	else if (p->commands_before_quit == 0 && p->stats.commands == 0)
		strbuf_adds(sb, "client sent no command");
	else
		strbuf_printf(sb, "session ended after %s without QUIT",
		    p->last_verb[0] != '\0' ? p->last_verb : "a command");
}
