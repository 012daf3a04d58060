/*
 * txlimit.h - how much one session may write to the transcript.
 *
 * A client controls how many records its session makes: 2 MB of bare LFs
 * made 36-57 times as much transcript. Two bounds keep that in proportion:
 * a line repeated over and over in one direction is written a few times and
 * then counted, and a session that still writes more than its budget of
 * records has the rest counted, not written. Pure: no I/O, no libevent.
 */
#ifndef SMTPTAP_TXLIMIT_H
#define SMTPTAP_TXLIMIT_H

#include <stddef.h>

#include "attrib.h"

/* Who a record is from: each has its own "previous line". */
enum txlimit_side {
	TXLIMIT_CLIENT,
	TXLIMIT_SERVER,
	TXLIMIT_NOTE,
	TXLIMIT_NSIDES,
};

/* Identical lines in a row written before the rest are counted. */
#define TXLIMIT_SHOW_REPEATS	3
/* Longer lines are never taken for repeats (their copy is not kept). */
#define TXLIMIT_TEXT_MAX	160

struct txlimit_slot;

struct txlimit {
	unsigned long		 max;		/* records; 0: no limit */
	unsigned long		 written;
	unsigned long		 unwritten;	/* over the budget */
	struct txlimit_slot	*slots;		/* allocated at the first line */
};

void	txlimit_init(struct txlimit *, unsigned long max);
/* Wipes the kept lines and frees them. */
void	txlimit_free(struct txlimit *);

/*
 * A line about to be recorded. Returns 1 when it repeats the side's previous
 * line often enough to be counted instead of written. Otherwise returns 0,
 * the line becomes the side's previous line, and *repeats says how many
 * counted repeats of the line before it to report first (with the text it
 * had, *prev, valid until the next call for the side; 0: nothing to report).
 */
int	txlimit_repeat(struct txlimit *, enum txlimit_side, const char *kind,
	    int code, const char *text, size_t len, unsigned long *repeats,
	    const char **prev) WUNRES;
/* At the end: the side's counted repeats not reported yet (and the line). */
unsigned long txlimit_take_repeats(struct txlimit *, enum txlimit_side,
	    const char **prev);
/*
 * A record is about to be written: 1 if the budget allows it (it is
 * counted), 0 if not (it is counted in unwritten; the caller says so once,
 * when unwritten becomes 1, in a record that is always written).
 */
int	txlimit_admit(struct txlimit *) WUNRES;

#endif
