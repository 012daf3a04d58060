/*
 * transcript.h - the record of every session, for a person to debug from.
 *
 * One line per record: "<UTC time with ms> <session> <dir> <text>", where
 * session is 8 hex digits ("-" for the program's own lines) and dir is "C:"
 * (client to server), "S:" (server to client) or "*" (smtptap's note).
 * Callers pass text that is already escaped and masked; transcript_note()
 * takes a format whose peer-supplied parts must have been escaped first.
 */
#ifndef SMTPTAP_TRANSCRIPT_H
#define SMTPTAP_TRANSCRIPT_H

#include <stddef.h>
#include <stdint.h>

#include "attrib.h"

#define TRANSCRIPT_NOSESSION	0

/* path NULL: stderr; "-": stdout; else a file created 0600, appended to. */
int	transcript_open(const char *path, char **cause) WUNRES;
void	transcript_close(void);
/* Open the file again under its name (after logrotate); 0 for stderr/stdout. */
int	transcript_reopen(void);

void	transcript_line(uint32_t session, const char *dir, const char *text,
	    size_t len);
void	transcript_note(uint32_t session, const char *fmt, ...) PRINTFLIKE(2, 3);

#endif
