/*
 * strbuf.h - a growable byte string with a hard cap.
 *
 * Everything that builds transcript text goes through a strbuf so that no
 * peer can make smtptap allocate without bound: past the cap, appends are
 * counted in "dropped" and discarded.
 */
#ifndef SMTPTAP_STRBUF_H
#define SMTPTAP_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

#include "attrib.h"

struct strbuf {
	char	*buf;		/* always NUL-terminated once allocated */
	size_t	 len;
	size_t	 size;
	size_t	 cap;		/* maximum len; 0 means STRBUF_DEFAULT_CAP */
	size_t	 dropped;	/* bytes not stored because of the cap */
};

#define STRBUF_DEFAULT_CAP	(64 * 1024)
#define STRBUF_INIT		{ NULL, 0, 0, 0, 0 }

void	 strbuf_init(struct strbuf *, size_t cap);
void	 strbuf_add(struct strbuf *, const void *, size_t);
void	 strbuf_addc(struct strbuf *, char);
void	 strbuf_adds(struct strbuf *, const char *);
void	 strbuf_printf(struct strbuf *, const char *, ...) PRINTFLIKE(2, 3);
void	 strbuf_vprintf(struct strbuf *, const char *, va_list) PRINTFLIKE(2, 0);
void	 strbuf_reset(struct strbuf *);
/* Wipes the contents before releasing them: strbufs may have held secrets. */
void	 strbuf_free(struct strbuf *);
const char *strbuf_str(const struct strbuf *);

#endif
