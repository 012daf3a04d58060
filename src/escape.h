/*
 * escape.h - render untrusted bytes as one line of safe text.
 *
 * Peers control what smtptap logs. Nothing they send may forge a transcript
 * line, move a terminal's cursor, hide or reorder what a reader sees, or
 * break a JSON encoder, so every byte of protocol data passes through
 * escape_append() before any output sink; and every output format passes
 * what it is given through escape_guard() as well, in case a caller forgot.
 */
#ifndef SMTPTAP_ESCAPE_H
#define SMTPTAP_ESCAPE_H

#include <stddef.h>
#include <stdint.h>

struct strbuf;

/*
 * Printable ASCII and well-formed UTF-8 are kept; '\\' becomes "\\\\";
 * CR, LF and TAB become "\\r", "\\n", "\\t"; other control bytes, DEL, the
 * hidden code points of escape_is_hidden() and invalid UTF-8 become
 * "\\xNN" per byte.
 */
void	escape_append(struct strbuf *, const void *, size_t);

/* As escape_append(), but at most max input bytes, then " [+N bytes]". */
void	escape_append_max(struct strbuf *, const void *, size_t, size_t max);

/*
 * A control (C0, DEL, C1), a line or paragraph separator, a Unicode
 * Bidi_Control or Default_Ignorable_Code_Point, or an interlinear
 * annotation control: never written raw.
 */
int	escape_is_hidden(uint32_t);

/*
 * For text that should have been escaped already: what escape_append()
 * would keep is copied as it is, '\\' included (so escaped text is left
 * unchanged), and every other byte becomes "\\xNN". Returns how many input
 * bytes it had to escape (0 for text escaped as it should be).
 */
size_t	escape_guard(struct strbuf *, const void *, size_t);

/* Length of the leading run of printable ASCII (0x20-0x7e): the fast path. */
size_t	escape_plain_len(const void *, size_t);

/*
 * In escaped text: the length of the unit at the start that must not be
 * split ("\\xNN", "\\" and the byte after it, a UTF-8 sequence), else 1.
 */
size_t	escape_unit(const void *, size_t);

/*
 * In escaped text: the longest prefix of at most max bytes that ends
 * between two units, so that a cut never splits an escape or a character.
 */
size_t	escape_cut(const void *, size_t, size_t max);

#endif
