/*
 * xmalloc.c - allocation wrappers. A proxy that cannot allocate cannot relay
 * the session at hand, but the others may go on: see xmalloc.h.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

static _Atomic(void *)		 reserve;
static size_t			 reserve_size;
static atomic_ulong		 failures;
static _Thread_local int	*blamed;

/* SMTPTAP_TEST_FAIL_ALLOC: the allocations counted, and which fail. */
static atomic_ulong		 inject_count;
static unsigned long		 inject_first, inject_every;

static NORETURN void
xmalloc_fail(size_t n)
{
	fprintf(stderr, "smtptap: out of memory (allocating %zu bytes)\n", n);
	abort();
}

static int
xmalloc_injected(void)
{
	unsigned long n;

	if (inject_first == 0 || atomic_load(&reserve) == NULL)
		return 0;
	n = atomic_fetch_add(&inject_count, 1) + 1;
	if (n == inject_first)
		return 1;
	return inject_every != 0 && n > inject_first &&
	    (n - inject_first) % inject_every == 0;
}

/* Spend the reserve so that the retry can succeed; 0 if there was none. */
static int
xmalloc_spend(void)
{
	void *r = atomic_exchange(&reserve, NULL);

	if (r == NULL)
		return 0;
	free(r);
	atomic_fetch_add(&failures, 1);
	if (blamed != NULL)
		*blamed = 1;
	return 1;
}

void *
xmalloc(size_t n)
{
	void *p = xmalloc_injected() ? NULL : malloc(n ? n : 1);

	if (p == NULL && (!xmalloc_spend() || (p = malloc(n ? n : 1)) == NULL))
		xmalloc_fail(n);
	return p;
}

void *
xcalloc(size_t nmemb, size_t size)
{
	void *p = xmalloc_injected() ? NULL :
	    calloc(nmemb ? nmemb : 1, size ? size : 1);

	if (p == NULL && (!xmalloc_spend() ||
	    (p = calloc(nmemb ? nmemb : 1, size ? size : 1)) == NULL))
		xmalloc_fail(nmemb * size);
	return p;
}

void *
xrealloc(void *old, size_t n)
{
	void *p = xmalloc_injected() ? NULL : realloc(old, n ? n : 1);

	if (p == NULL && (!xmalloc_spend() ||
	    (p = realloc(old, n ? n : 1)) == NULL))
		xmalloc_fail(n);
	return p;
}

char *
xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

int
xasprintf(char **out, const char *fmt, ...)
{
	va_list ap, ap2;
	int n;

	va_start(ap, fmt);
	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		xmalloc_fail(strlen(fmt));
	*out = xmalloc((size_t)n + 1);
	vsnprintf(*out, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return n;
}

void
xmalloc_reserve(size_t n)
{
	const char *v = getenv(XMALLOC_FAIL_ENV);
	char *end;

	if (v != NULL && *v != '\0') {
		inject_first = strtoul(v, &end, 10);
		if (*end == '+')
			inject_every = strtoul(end + 1, NULL, 10);
	}
	reserve_size = n;
	(void)xmalloc_refill();
}

int
xmalloc_refill(void)
{
	void *r, *expected = NULL;

	if (reserve_size == 0 || atomic_load(&reserve) != NULL)
		return 0;
	if ((r = malloc(reserve_size)) == NULL)
		return -1;
	if (!atomic_compare_exchange_strong(&reserve, &expected, r))
		free(r);
	return 0;
}

void
xmalloc_blame(int *flag)
{
	blamed = flag;
}

unsigned long
xmalloc_failures(void)
{
	return atomic_load(&failures);
}
