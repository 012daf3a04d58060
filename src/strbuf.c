/* strbuf.c - bounded growable strings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"
#include "xmalloc.h"

void
strbuf_init(struct strbuf *sb, size_t cap)
{
	memset(sb, 0, sizeof *sb);
	sb->cap = cap;
}

static size_t
strbuf_cap(const struct strbuf *sb)
{
	return sb->cap ? sb->cap : STRBUF_DEFAULT_CAP;
}

/* Make room for n more bytes plus the NUL; returns how many fit under the cap. */
static size_t
strbuf_reserve(struct strbuf *sb, size_t n)
{
	size_t room = strbuf_cap(sb) - sb->len, want, size;
	char *nbuf;

	if (n > room)
		n = room;
	want = sb->len + n + 1;
	if (want > sb->size) {
		size = sb->size ? sb->size : 64;
		while (size < want)
			size *= 2;
		/* Grow by copy so that old contents can be wiped, not left in freed memory. */
		nbuf = xmalloc(size);
		if (sb->buf != NULL) {
			memcpy(nbuf, sb->buf, sb->len + 1);
			explicit_bzero(sb->buf, sb->size);
			free(sb->buf);
		} else
			nbuf[0] = '\0';
		sb->buf = nbuf;
		sb->size = size;
	}
	return n;
}

void
strbuf_add(struct strbuf *sb, const void *p, size_t n)
{
	size_t fit = strbuf_reserve(sb, n);

	memcpy(sb->buf + sb->len, p, fit);
	sb->len += fit;
	sb->buf[sb->len] = '\0';
	sb->dropped += n - fit;
}

void
strbuf_addc(struct strbuf *sb, char c)
{
	strbuf_add(sb, &c, 1);
}

void
strbuf_adds(struct strbuf *sb, const char *s)
{
	strbuf_add(sb, s, strlen(s));
}

void
strbuf_vprintf(struct strbuf *sb, const char *fmt, va_list ap)
{
	char small[256], *big = NULL;
	va_list ap2;
	int n;

	va_copy(ap2, ap);
	n = vsnprintf(small, sizeof small, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return;
	if ((size_t)n < sizeof small) {
		strbuf_add(sb, small, (size_t)n);
		explicit_bzero(small, sizeof small);
		return;
	}
	big = xmalloc((size_t)n + 1);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	strbuf_add(sb, big, (size_t)n);
	explicit_bzero(big, (size_t)n + 1);
	free(big);
}

void
strbuf_printf(struct strbuf *sb, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	strbuf_vprintf(sb, fmt, ap);
	va_end(ap);
}

void
strbuf_reset(struct strbuf *sb)
{
	if (sb->buf != NULL) {
		explicit_bzero(sb->buf, sb->len);
		sb->buf[0] = '\0';
	}
	sb->len = 0;
	sb->dropped = 0;
}

void
strbuf_free(struct strbuf *sb)
{
	if (sb->buf != NULL) {
		explicit_bzero(sb->buf, sb->size);
		free(sb->buf);
	}
	sb->buf = NULL;
	sb->len = sb->size = sb->dropped = 0;
}

const char *
strbuf_str(const struct strbuf *sb)
{
	return sb->buf != NULL ? sb->buf : "";
}
