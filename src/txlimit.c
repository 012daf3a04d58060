/* txlimit.c - repeated lines counted, and a budget of records per session. */
#include <stdlib.h>
#include <string.h>

#include "txlimit.h"
#include "xmalloc.h"

struct txlimit_slot {
	const char	*kind;		/* static strings: compared as pointers */
	int		 code;
	size_t		 len;		/* > TXLIMIT_TEXT_MAX: no line kept */
	unsigned long	 seen;		/* times in a row, the first included */
	int		 cur;		/* text[cur]: the line; the other, the one before */
	char		 text[2][TXLIMIT_TEXT_MAX + 1];
};

void
txlimit_init(struct txlimit *l, unsigned long max)
{
	memset(l, 0, sizeof *l);
	l->max = max;
}

void
txlimit_free(struct txlimit *l)
{
	if (l->slots != NULL) {
		explicit_bzero(l->slots, TXLIMIT_NSIDES * sizeof *l->slots);
		free(l->slots);
	}
	l->slots = NULL;
}

static unsigned long
txlimit_counted(const struct txlimit_slot *sl)
{
	return sl->seen > TXLIMIT_SHOW_REPEATS ? sl->seen - TXLIMIT_SHOW_REPEATS : 0;
}

int
txlimit_repeat(struct txlimit *l, enum txlimit_side side, const char *kind,
    int code, const char *text, size_t len, unsigned long *repeats,
    const char **prev)
{
	struct txlimit_slot *sl;

	*repeats = 0;
	*prev = NULL;
	if (l->slots == NULL)
		l->slots = xcalloc(TXLIMIT_NSIDES, sizeof *l->slots);
	sl = &l->slots[side];
	if (sl->seen > 0 && len <= TXLIMIT_TEXT_MAX && sl->len == len &&
	    sl->kind == kind && sl->code == code &&
	    memcmp(sl->text[sl->cur], text, len) == 0) {
		sl->seen++;
		return sl->seen > TXLIMIT_SHOW_REPEATS;
	}
	if ((*repeats = txlimit_counted(sl)) > 0)
		*prev = sl->text[sl->cur];
	/* The old line stays readable for the caller until the next call. */
	sl->cur = !sl->cur;
	sl->kind = kind;
	sl->code = code;
	sl->len = len;
	sl->seen = 1;
	if (len <= TXLIMIT_TEXT_MAX) {
		memcpy(sl->text[sl->cur], text, len);
		sl->text[sl->cur][len] = '\0';
	} else
		sl->text[sl->cur][0] = '\0';
	return 0;
}

unsigned long
txlimit_take_repeats(struct txlimit *l, enum txlimit_side side,
    const char **prev)
{
	struct txlimit_slot *sl;
	unsigned long n;

	*prev = NULL;
	if (l->slots == NULL)
		return 0;
	sl = &l->slots[side];
	if ((n = txlimit_counted(sl)) > 0)
		*prev = sl->text[sl->cur];
	sl->seen = 0;
	return n;
}

int
txlimit_admit(struct txlimit *l)
{
	if (l->max != 0 && l->written >= l->max) {
		l->unwritten++;
		return 0;
	}
	l->written++;
	return 1;
}
