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

/*
 * Code points that are valid but act on a terminal, or that a reader
 * cannot see: C1 controls, the line and paragraph separators, all of
 * Unicode's Bidi_Control and all of Default_Ignorable_Code_Point (Unicode
 * 14), and the interlinear annotation controls, which some renderers use
 * to hide text. The zero-width joiners and the variation selectors are in
 * Default_Ignorable too and are shown escaped on purpose: in a transcript
 * read to find out why "alice" was refused, an invisible character that
 * makes it "alice<U+200D>" must be seen, and that is worth an emoji shown
 * as bytes. Sorted, for the binary search.
 */
static const struct {
	uint32_t	lo, hi;
} dangerous[] = {
	{ 0x0080, 0x009f },	/* C1 controls */
	{ 0x00ad, 0x00ad },	/* soft hyphen */
	{ 0x034f, 0x034f },	/* combining grapheme joiner */
	{ 0x061c, 0x061c },	/* Arabic letter mark (bidi) */
	{ 0x115f, 0x1160 },	/* Hangul fillers */
	{ 0x17b4, 0x17b5 },	/* Khmer inherent vowels */
	{ 0x180b, 0x180f },	/* Mongolian variation selectors, vowel sep. */
	{ 0x200b, 0x200f },	/* zero width space, (non-)joiner, LRM, RLM */
	{ 0x2028, 0x2029 },	/* line and paragraph separators */
	{ 0x202a, 0x202e },	/* bidi embeddings and overrides */
	{ 0x2060, 0x206f },	/* word joiner, invisible operators, isolates */
	{ 0x3164, 0x3164 },	/* Hangul filler */
	{ 0xfe00, 0xfe0f },	/* variation selectors */
	{ 0xfeff, 0xfeff },	/* BOM, zero width no-break space */
	{ 0xffa0, 0xffa0 },	/* halfwidth Hangul filler */
	{ 0xfff0, 0xfffb },	/* unassigned ignorables, interlinear annotation */
	{ 0x1bca0, 0x1bca3 },	/* shorthand format controls */
	{ 0x1d173, 0x1d17a },	/* musical symbol format controls */
	{ 0xe0000, 0xe0fff },	/* tags, variation selectors supplement */
};

int
escape_is_hidden(uint32_t c)
{
	size_t lo = 0, hi = sizeof dangerous / sizeof dangerous[0], mid;

	if (c < 0x80)
		return c < 0x20 || c == 0x7f;
	while (lo < hi) {
		mid = (lo + hi) / 2;
		if (c < dangerous[mid].lo)
			hi = mid;
		else if (c > dangerous[mid].hi)
			lo = mid + 1;
		else
			return 1;
	}
	return 0;
}

static void
escape_byte(struct strbuf *sb, unsigned char c)
{
	static const char hex[] = "0123456789abcdef";
	char out[4] = { '\\', 'x', hex[c >> 4], hex[c & 15] };

	strbuf_add(sb, out, sizeof out);
}

/* Length of the run of plain printable ASCII at p, '\\' included or not. */
static size_t
escape_plain_run(const unsigned char *p, size_t n, int backslash_ok)
{
	size_t i = 0;

	while (i < n && p[i] >= 0x20 && p[i] < 0x7f &&
	    (backslash_ok || p[i] != '\\'))
		i++;
	return i;
}

/*
 * Non-ASCII at p: a safe UTF-8 sequence is copied, anything else (a byte
 * of invalid UTF-8, a hidden code point) is "\\xNN" per byte. Returns the
 * bytes consumed and adds to *escaped those it escaped.
 */
static size_t
escape_nonascii(struct strbuf *sb, const unsigned char *p, size_t n,
    size_t *escaped)
{
	size_t len, k;
	uint32_t cp;

	if ((len = utf8_seqlen(p, n, &cp)) == 0) {
		escape_byte(sb, p[0]);
		*escaped += 1;
		return 1;
	}
	if (escape_is_hidden(cp)) {
		for (k = 0; k < len; k++)
			escape_byte(sb, p[k]);
		*escaped += len;
	} else
		strbuf_add(sb, p, len);
	return len;
}

void
escape_append(struct strbuf *sb, const void *data, size_t n)
{
	const unsigned char *p = data;
	size_t i = 0, run, escaped = 0;

	while (i < n) {
		/* Copy runs of plain printable ASCII in one go. */
		if ((run = escape_plain_run(p + i, n - i, 0)) > 0) {
			strbuf_add(sb, p + i, run);
			i += run;
			if (i >= n)
				break;
		}
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
		if (p[i] >= 0x80) {
			i += escape_nonascii(sb, p + i, n - i, &escaped);
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
escape_guard(struct strbuf *sb, const void *data, size_t n)
{
	const unsigned char *p = data;
	size_t i = 0, run, escaped = 0;

	while (i < n) {
		if ((run = escape_plain_len(p + i, n - i)) > 0) {
			strbuf_add(sb, p + i, run);
			i += run;
			if (i >= n)
				break;
		}
		if (p[i] >= 0x80) {
			i += escape_nonascii(sb, p + i, n - i, &escaped);
			continue;
		}
		escape_byte(sb, p[i]);
		escaped++;
		i++;
	}
	return escaped;
}

/*
 * Eight bytes at a time: a byte below 0x20 or above 0x7e in a word sets
 * its top bit in one of the two tests (the classic "has less than" and
 * "has more than" bit tricks, valid for limits below 128).
 */
#define ONES	0x0101010101010101ULL
#define HIGHS	0x8080808080808080ULL

size_t
escape_plain_len(const void *data, size_t n)
{
	const unsigned char *p = data;
	uint64_t w;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		memcpy(&w, p + i, 8);
		if ((((w - ONES * 0x20) & ~w) | ((w + ONES * 1) | w)) & HIGHS)
			break;
	}
	return i + escape_plain_run(p + i, n - i, 1);
}

static int
ishexdigit(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

size_t
escape_unit(const void *data, size_t n)
{
	const unsigned char *p = data;
	size_t len;
	uint32_t cp;

	if (n == 0)
		return 0;
	if (p[0] == '\\') {
		if (n >= 4 && p[1] == 'x' && ishexdigit(p[2]) && ishexdigit(p[3]))
			return 4;
		return n >= 2 ? 2 : 1;
	}
	if (p[0] >= 0x80 && (len = utf8_seqlen(p, n, &cp)) > 0)
		return len;
	return 1;
}

size_t
escape_cut(const void *data, size_t n, size_t max)
{
	const char *p = data;
	size_t at = 0, u;

	if (n <= max)
		return n;
	while (at < max) {
		/* Plain ASCII without a backslash is cut anywhere. */
		u = escape_plain_run((const unsigned char *)p + at, max - at, 0);
		at += u;
		if (at >= max)
			break;
		u = escape_unit(p + at, n - at);
		if (at + u > max)
			break;
		at += u;
	}
	return at;
}
