/* escape.c - make untrusted bytes safe to print on one line. */
#include <stdint.h>
#include <string.h>

#include "escape.h"
#include "strbuf.h"

/* Length of the well-formed UTF-8 sequence at p (RFC 3629), or 0. */
static size_t
utf8_seqlen(const unsigned char *p, size_t n, uint32_t *cp)
{
	size_t len, i;
	uint32_t c;

	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		len = 2;
		c = p[0] & 0x1f;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		len = 3;
		c = p[0] & 0x0f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		len = 4;
		c = p[0] & 0x07;
	} else
		return 0;
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (p[i] & 0x3f);
	}
	/* Reject overlong forms, surrogates and values past U+10FFFF. */
	if ((len == 3 && c < 0x800) || (len == 4 && c < 0x10000) ||
	    (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
		return 0;
	*cp = c;
	return len;
}

/* Code points that are valid but can deceive a reader or a terminal. */
static int
utf8_dangerous(uint32_t c)
{
	return (c >= 0x80 && c <= 0x9f) ||		/* C1 controls */
	    (c >= 0x202a && c <= 0x202e) ||		/* bidi embeddings */
	    (c >= 0x2066 && c <= 0x2069) ||		/* bidi isolates */
	    c == 0x2028 || c == 0x2029 ||		/* line separators */
	    c == 0xfeff;				/* BOM */
}

static void
escape_byte(struct strbuf *sb, unsigned char c)
{
	static const char hex[] = "0123456789abcdef";
	char out[4] = { '\\', 'x', hex[c >> 4], hex[c & 15] };

	strbuf_add(sb, out, sizeof out);
}

void
escape_append(struct strbuf *sb, const void *data, size_t n)
{
	const unsigned char *p = data, *run;
	size_t i = 0, len, k;
	uint32_t cp;

	while (i < n) {
		/* Copy runs of plain printable ASCII in one go. */
		run = p + i;
		while (i < n && p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\')
			i++;
		if (p + i > run)
			strbuf_add(sb, run, (size_t)(p + i - run));
		if (i >= n)
			break;
		switch (p[i]) {
		case '\\':
			strbuf_add(sb, "\\\\", 2);
			i++;
			continue;
		case '\r':
			strbuf_add(sb, "\\r", 2);
			i++;
			continue;
		case '\n':
			strbuf_add(sb, "\\n", 2);
			i++;
			continue;
		case '\t':
			strbuf_add(sb, "\\t", 2);
			i++;
			continue;
		}
		if (p[i] >= 0x80 && (len = utf8_seqlen(p + i, n - i, &cp)) > 0) {
			if (utf8_dangerous(cp))
				for (k = 0; k < len; k++)
					escape_byte(sb, p[i + k]);
			else
				strbuf_add(sb, p + i, len);
			i += len;
			continue;
		}
		escape_byte(sb, p[i]);
		i++;
	}
}

void
escape_append_max(struct strbuf *sb, const void *data, size_t n, size_t max)
{
	if (n <= max) {
		escape_append(sb, data, n);
		return;
	}
	escape_append(sb, data, max);
	strbuf_printf(sb, " [+%zu bytes]", n - max);
}

size_t
escape_cut(const char *s, size_t len, size_t max)
{
	size_t i = 0, t;
	unsigned char c;

	if (len <= max)
		return len;
	while (i < len) {
		c = (unsigned char)s[i];
		if (c == '\\')
			t = i + 1 < len && s[i + 1] == 'x' ? 4 : 2;
		else if (c >= 0xf0)
			t = 4;
		else if (c >= 0xe0)
			t = 3;
		else if (c >= 0xc0)
			t = 2;
		else
			t = 1;
		if (i + t > max)
			break;
		i += t;
	}
	return i;
}
