/* reply.c - strict SMTP reply lines for smtptap's own dialogue. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "escape.h"
#include "reply.h"
#include "strbuf.h"
#include "xmalloc.h"

void
reply_init(struct reply *r)
{
	reply_free(r);
	memset(r, 0, sizeof *r);
}

void
reply_free(struct reply *r)
{
	free(r->first);
	r->first = NULL;
}

static enum reply_status
reply_fail(struct reply *r, const char *why)
{
	r->error = why;
	return REPLY_ERROR;
}

/* The EHLO keyword of a line's text: "STARTTLS", "AUTH PLAIN" -> "AUTH". */
static int
reply_is_keyword(const char *text, size_t len, const char *kw)
{
	size_t kwlen = strlen(kw);

	if (len < kwlen || strncasecmp(text, kw, kwlen) != 0)
		return 0;
	return len == kwlen || text[kwlen] == ' ';
}

/*
 * The line as it may be shown anywhere: a refusal before TLS comes from
 * whoever is on the path, and it reaches the transcript, the summary and the
 * 421 that the client displays, so it is escaped once, here, and kept short
 * enough for one SMTP reply line.
 */
static char *
reply_show(const char *line, size_t len)
{
	struct strbuf sb;
	char *out;
	size_t show;

	strbuf_init(&sb, 0);
	escape_append(&sb, line, len);
	if ((show = escape_cut(sb.buf, sb.len, REPLY_SHOW_MAX)) < sb.len) {
		sb.len = show;
		strbuf_printf(&sb, " [cut: %zu bytes in all]", len);
	}
	out = xstrndup(strbuf_str(&sb), sb.len);
	strbuf_free(&sb);
	return out;
}

enum reply_status
reply_feed(struct reply *r, const char *line, size_t len)
{
	int code;
	size_t i;

	if (len > REPLY_MAX_LINE)
		return reply_fail(r, "reply line longer than 2048 bytes");
	if (len < 3 || !isdigit((unsigned char)line[0]) ||
	    !isdigit((unsigned char)line[1]) || !isdigit((unsigned char)line[2]))
		return reply_fail(r, "reply does not start with a 3-digit code");
	if (line[0] < '2' || line[0] > '5')
		return reply_fail(r, "reply code is not between 200 and 599");
	if (len > 3 && line[3] != ' ' && line[3] != '-')
		return reply_fail(r, "reply code not followed by a space or '-'");
	for (i = 0; i < len; i++)
		if (line[i] == '\0' || line[i] == '\r' || line[i] == '\n')
			return reply_fail(r, "control character in reply");
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (r->lines == 0) {
		r->code = code;
		free(r->first);
		r->first = reply_show(line, len);
	} else if (code != r->code)
		return reply_fail(r, "multi-line reply changes its code");
	if (++r->lines > REPLY_MAX_LINES)
		return reply_fail(r, "reply has more than 100 lines");
	/* The first line of an EHLO reply is the greeting name, not a keyword. */
	if (r->lines > 1 && len > 4 && reply_is_keyword(line + 4, len - 4, "STARTTLS"))
		r->starttls = 1;
	return (len > 3 && line[3] == '-') ? REPLY_MORE : REPLY_DONE;
}
