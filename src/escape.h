/*
 * escape.h - render untrusted bytes as one line of safe text.
 *
 * Peers control what smtptap logs. Nothing they send may forge a transcript
 * line, move a terminal's cursor or break a JSON encoder, so every byte of
 * protocol data passes through escape_append() before any output sink.
 */
#ifndef SMTPTAP_ESCAPE_H
#define SMTPTAP_ESCAPE_H

#include <stddef.h>

struct strbuf;

/*
 * Printable ASCII and well-formed UTF-8 are kept; '\\' becomes "\\\\";
 * CR, LF and TAB become "\\r", "\\n", "\\t"; other control bytes, DEL, C1
 * controls, bidirectional overrides and invalid UTF-8 become "\\xNN" per byte.
 */
void	escape_append(struct strbuf *, const void *, size_t);

/* As escape_append(), but at most max input bytes, then " [+N bytes]". */
void	escape_append_max(struct strbuf *, const void *, size_t, size_t max);

/*
 * Where to cut escaped text (the output of escape_append()) so that at most
 * max bytes remain and no "\\xNN" escape or UTF-8 sequence is split.
 */
size_t	escape_cut(const char *, size_t len, size_t max);

#endif
