/*
 * conf.h - the config file: global settings and one [section] per service.
 *
 * Keys before the first [section] are global settings and the defaults of
 * every service; each [name] is a service that starts from those defaults.
 * A file without any section is one service named "default". The keys are
 * the keys of the option table (options.c), so the file and the command
 * line cannot drift apart.
 *
 * conf_load() reads the file and nothing else (no CA files, no users): it
 * is pure apart from that read, so the unit tests drive it from memory.
 * Every error is collected, as "file:line: message", instead of stopping at
 * the first, so that -t reports them all in one run.
 */
#ifndef SMTPTAP_CONF_H
#define SMTPTAP_CONF_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "attrib.h"
#include "options.h"

#define CONF_NAMEMAX	64	/* longest service name */
#define CONF_KEYMAX	64	/* option_defs entries that lines are kept for */

struct conf_service {
	char		 name[CONF_NAMEMAX + 1];
	int		 line;			/* of "[name]"; 0 for "default" */
	int		 bad;			/* the header was an error: skip */
	uint64_t	 here;			/* keys set in this section */
	uint64_t	 failed;		/* keys whose value was wrong */
	int		 keyline[CONF_KEYMAX];	/* where each value came from, 0:
						   the built-in default */
	struct options	 opts;
};

struct conf {
	char			*path;		/* as given, for messages */
	struct options		 global;
	int			 keyline[CONF_KEYMAX];
	struct conf_service	*services;
	size_t			 nservices;
	char			**errors;	/* "path:line: message", by line */
	int			*errlines;
	size_t			 nerrors;
};

/* Reads and checks the file; returns the number of errors (0: usable). */
int	conf_load(struct conf *, const char *path);
/* The same from an open stream; name is used in the messages. */
int	conf_load_file(struct conf *, const char *name, FILE *);
void	conf_free(struct conf *);

/* Adds "path:line: [service] message" (line 0: "path: ..."). */
void	conf_error(struct conf *, int line, const struct conf_service *,
	    const char *fmt, ...) PRINTFLIKE(4, 5);
/* The line that set key for a service (or the top), or its section's line. */
int	conf_line(const struct conf *, const struct conf_service *,
	    const char *key);

/* Damerau-Levenshtein distance (optimal string alignment), for "did you mean". */
size_t	conf_distance(const char *, const char *);

#endif
