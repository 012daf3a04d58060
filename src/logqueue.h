/*
 * logqueue.h - a bounded queue of transcript records between the event loop
 * and the one writer thread.
 *
 * Pure: pthreads only, no libevent, no I/O. The event loop must never wait
 * for a log destination, so a push never blocks: when the queue already holds
 * its byte limit the item is freed and counted instead. The count travels
 * with the next item that does fit ("dropped_before"), so the writer can say
 * exactly where the gap is. Control items (reopen, end of a session) bypass
 * the limit: they are tiny and losing one would leak or misroute.
 *
 * Items may hold transcript text, so they are wiped when freed.
 *
 * One consumer (the writer thread) takes items. A push wakes it only when it
 * sleeps: a wake per record (a futex call, often a context switch) cost
 * more than writing the record, and the consumer takes whatever piled up
 * meanwhile in one go.
 */
#ifndef SMTPTAP_LOGQUEUE_H
#define SMTPTAP_LOGQUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "attrib.h"

struct logqueue;

struct logqueue	*logqueue_new(size_t limit);
/* Frees the queue and every item still in it. No thread may use it after. */
void		 logqueue_free(struct logqueue *);

/* A zeroed payload of size bytes, to fill and push (or logqueue_item_free). */
void		*logqueue_item_new(size_t size);
void		 logqueue_item_free(void *);

/*
 * Appends the item or, past the limit or after logqueue_close(), frees and
 * counts it. Returns 0 when queued, -1 when dropped. A control item is
 * queued whatever the limit (but not after close).
 */
int		 logqueue_push(struct logqueue *, void *item, int control);
/*
 * A push that finds the consumer asleep wakes it at once, unless a waker is
 * set: then a push from the thread that set it calls waker(arg) instead,
 * which must see that logqueue_wake() follows. An event loop uses this to
 * wake the consumer once per loop turn rather than once per record. A NULL
 * waker restores waking at once; call logqueue_wake() after it in case a
 * wake was still owed.
 */
void		 logqueue_set_waker(struct logqueue *, void (*waker)(void *),
		    void *arg);
void		 logqueue_wake(struct logqueue *);

/*
 * The oldest item, waiting at most timeout_ms (-1: for ever) for one. NULL
 * on timeout, or when the queue is closed and empty. *dropped_before is the
 * number of items dropped just before this one.
 */
void		*logqueue_pop(struct logqueue *, int timeout_ms,
		    uint64_t *dropped_before);

/*
 * Every queued item at once, waiting as logqueue_pop() does: the oldest, or
 * NULL on timeout or when closed and empty. The rest follow it in order
 * through logqueue_item_next(). The batch still counts against the limit
 * until logqueue_release() hands it back, so a stalled destination holds
 * no more than the limit in all, queued and taken.
 */
void		*logqueue_take(struct logqueue *, int timeout_ms);
/* The item after this one in its batch, or NULL. Free with release only. */
void		*logqueue_item_next(const void *item);
/* Items dropped just before this one; 0 for a control item. */
uint64_t	 logqueue_item_dropped(const void *item);
/*
 * Frees item and those after it in its batch, up to but not including stop
 * (NULL: to the end of the batch), and gives their bytes back to the limit.
 */
void		 logqueue_release(struct logqueue *, void *item, void *stop);

/* Stop accepting; pop and take drain what is left, then return NULL. */
void		 logqueue_close(struct logqueue *);
/* Items dropped since the last one queued (reported by nobody yet); resets. */
uint64_t	 logqueue_take_dropped(struct logqueue *);
/*
 * Totals since creation, for diagnostics and tests. queued_bytes counts
 * taken batches not yet released; items counts only what is still queued.
 */
void		 logqueue_stats(struct logqueue *, size_t *queued_bytes,
		    size_t *items, uint64_t *dropped_total);
/*
 * How many times a push woke the sleeping consumer since creation, and
 * (when waiting is not NULL) whether the consumer sleeps now.
 */
uint64_t	 logqueue_wakeups(struct logqueue *, int *waiting);

#endif
