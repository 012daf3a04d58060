/*
 * xmalloc.h - allocation that does not return NULL.
 *
 * A failure first spends a reserve set aside at start-up and retries, and
 * tells whoever the thread blamed (xmalloc_blame): the event loop blames the
 * session whose callback runs, which then ends with a 421 while the others
 * go on (session.c), and the reserve is set aside again. Only a failure with
 * the reserve already spent ends the process.
 */
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

/* Set n bytes aside (once, before the threads start). */
void	 xmalloc_reserve(size_t n);
/* Set the reserve aside again if it was spent: 0, or -1 if it cannot be. */
int	 xmalloc_refill(void);
/* On this thread, a failure sets *flag to 1 (NULL: nobody to tell). */
void	 xmalloc_blame(int *flag);
/* Allocation failures survived so far. */
unsigned long xmalloc_failures(void);

/*
 * Tests only: SMTPTAP_TEST_FAIL_ALLOC=N[+K] in the environment when
 * xmalloc_reserve() runs makes the Nth allocation after it (then every Kth)
 * fail as if malloc had returned NULL, while a reserve is there to spend.
 */
#define XMALLOC_FAIL_ENV	"SMTPTAP_TEST_FAIL_ALLOC"

#endif
