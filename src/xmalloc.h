/* xmalloc.h - allocation that cannot return NULL: out of memory is fatal. */
#ifndef SMTPTAP_XMALLOC_H
#define SMTPTAP_XMALLOC_H

#include <stddef.h>

#include "attrib.h"

void	*xmalloc(size_t);
void	*xcalloc(size_t, size_t);
void	*xrealloc(void *, size_t);
char	*xstrdup(const char *);
char	*xstrndup(const char *, size_t);
int	 xasprintf(char **, const char *, ...) PRINTFLIKE(2, 3);

#endif
