/* logqueue.c - the bounded, never-blocking queue of logqueue.h. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "logqueue.h"
#include "xmalloc.h"

struct lq_item {
	struct lq_item	*next;
	size_t		 size;		/* of the payload */
	uint64_t	 dropped_before;
	int		 control;
	/* Payload follows, aligned for any type. */
	max_align_t	 payload[];
};

struct logqueue {
	pthread_mutex_t	 mtx;
	pthread_cond_t	 cond;
	struct lq_item	*head, *tail;
	size_t		 limit;
	size_t		 bytes;		/* bytes queued (data items, headers too) */
	size_t		 items;
	uint64_t	 pending_drops;	/* not yet attached to an item */
	uint64_t	 dropped_total;
	uint64_t	 wakeups;	/* signals sent to a sleeping consumer */
	int		 waiting;	/* the consumer sleeps, not yet signalled */
	int		 closed;
	/* logqueue_set_waker(): who signals instead of the push. */
	void		(*waker)(void *);
	void		*waker_arg;
	pthread_t	 waker_thread;
};

static struct lq_item *
lq_header(void *payload)
{
	/* payload came from logqueue_item_new(): the header is right before. */
	return (struct lq_item *)(void *)((char *)payload -
	    offsetof(struct lq_item, payload));
}

static const struct lq_item *
lq_cheader(const void *payload)
{
	return (const struct lq_item *)(const void *)((const char *)payload -
	    offsetof(struct lq_item, payload));
}

struct logqueue *
logqueue_new(size_t limit)
{
	struct logqueue *q = xcalloc(1, sizeof *q);
	pthread_condattr_t ca;

	pthread_mutex_init(&q->mtx, NULL);
	/* Timed waits on the monotonic clock: a clock step must not stall. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->cond, &ca);
	pthread_condattr_destroy(&ca);
	q->limit = limit;
	return q;
}

void
logqueue_free(struct logqueue *q)
{
	struct lq_item *it, *next;

	if (q == NULL)
		return;
	for (it = q->head; it != NULL; it = next) {
		next = it->next;
		logqueue_item_free(it->payload);
	}
	pthread_cond_destroy(&q->cond);
	pthread_mutex_destroy(&q->mtx);
	free(q);
}

void *
logqueue_item_new(size_t size)
{
	struct lq_item *it = xcalloc(1, sizeof *it + size);

	it->size = size;
	return it->payload;
}

void
logqueue_item_free(void *payload)
{
	struct lq_item *it;

	if (payload == NULL)
		return;
	it = lq_header(payload);
	explicit_bzero(it, sizeof *it + it->size);
	free(it);
}

int
logqueue_push(struct logqueue *q, void *payload, int control)
{
	struct lq_item *it = lq_header(payload);
	void (*waker)(void *);
	void *waker_arg;
	pthread_t waker_thread;
	int wake = 0;

	pthread_mutex_lock(&q->mtx);
	if (q->closed || (!control && q->bytes + sizeof *it + it->size >
	    q->limit)) {
		if (!control) {
			q->pending_drops++;
			q->dropped_total++;
		}
		pthread_mutex_unlock(&q->mtx);
		logqueue_item_free(payload);
		return -1;
	}
	it->control = control;
	it->next = NULL;
	if (!control) {
		it->dropped_before = q->pending_drops;
		q->pending_drops = 0;
		q->bytes += sizeof *it + it->size;
	}
	if (q->tail != NULL)
		q->tail->next = it;
	else
		q->head = it;
	q->tail = it;
	q->items++;
	/*
	 * A consumer that is awake takes this item with the others before it
	 * sleeps again: only a sleeping one needs the (costly) wake, and only
	 * once. Clearing the flag here, under the lock, makes it once.
	 */
	if (q->waiting) {
		q->waiting = 0;
		q->wakeups++;
		wake = 1;
	}
	waker = q->waker;
	waker_arg = q->waker_arg;
	waker_thread = q->waker_thread;
	pthread_mutex_unlock(&q->mtx);
	/*
	 * Signalled after the unlock so that the consumer does not wake only
	 * to block on the mutex we hold. It already waits on the condvar (it
	 * set the flag under the lock before waiting), so it cannot miss this.
	 */
	if (wake && waker != NULL && pthread_equal(pthread_self(), waker_thread))
		waker(waker_arg);
	else if (wake)
		pthread_cond_signal(&q->cond);
	return 0;
}

void
logqueue_set_waker(struct logqueue *q, void (*waker)(void *), void *arg)
{
	pthread_mutex_lock(&q->mtx);
	q->waker = waker;
	q->waker_arg = arg;
	q->waker_thread = pthread_self();
	pthread_mutex_unlock(&q->mtx);
}

void
logqueue_wake(struct logqueue *q)
{
	/* Harmless when nobody waits: a condvar signal is not remembered. */
	pthread_cond_signal(&q->cond);
}

/* With the lock held: until an item is queued, close, or the timeout. */
static void
lq_wait(struct logqueue *q, int timeout_ms)
{
	struct timespec ts;

	if (timeout_ms >= 0) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += timeout_ms / 1000;
		ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
	}
	while (q->head == NULL && !q->closed) {
		/* Again after every wake: a push clears it as it signals. */
		q->waiting = 1;
		if (timeout_ms < 0)
			pthread_cond_wait(&q->cond, &q->mtx);
		else if (pthread_cond_timedwait(&q->cond, &q->mtx, &ts) ==
		    ETIMEDOUT)
			break;
	}
	q->waiting = 0;
}

void *
logqueue_pop(struct logqueue *q, int timeout_ms, uint64_t *dropped_before)
{
	struct lq_item *it;

	*dropped_before = 0;
	pthread_mutex_lock(&q->mtx);
	lq_wait(q, timeout_ms);
	if ((it = q->head) == NULL) {
		pthread_mutex_unlock(&q->mtx);
		return NULL;
	}
	q->head = it->next;
	if (q->head == NULL)
		q->tail = NULL;
	q->items--;
	if (!it->control)
		q->bytes -= sizeof *it + it->size;
	*dropped_before = it->dropped_before;
	pthread_mutex_unlock(&q->mtx);
	it->next = NULL;
	return it->payload;
}

void *
logqueue_take(struct logqueue *q, int timeout_ms)
{
	struct lq_item *it;

	pthread_mutex_lock(&q->mtx);
	lq_wait(q, timeout_ms);
	/* The bytes stay counted: logqueue_release() gives them back. */
	it = q->head;
	q->head = q->tail = NULL;
	q->items = 0;
	pthread_mutex_unlock(&q->mtx);
	return it != NULL ? it->payload : NULL;
}

void *
logqueue_item_next(const void *payload)
{
	const struct lq_item *it = lq_cheader(payload);

	return it->next != NULL ? it->next->payload : NULL;
}

uint64_t
logqueue_item_dropped(const void *payload)
{
	return lq_cheader(payload)->dropped_before;
}

void
logqueue_release(struct logqueue *q, void *payload, void *stop)
{
	struct lq_item *it, *next, *end;
	size_t bytes = 0;

	end = stop != NULL ? lq_header(stop) : NULL;
	for (it = payload != NULL ? lq_header(payload) : NULL; it != end &&
	    it != NULL; it = next) {
		next = it->next;
		if (!it->control)
			bytes += sizeof *it + it->size;
		logqueue_item_free(it->payload);
	}
	if (bytes == 0)
		return;
	/* One lock for the lot: the producer takes the same lock per push. */
	pthread_mutex_lock(&q->mtx);
	q->bytes -= bytes;
	pthread_mutex_unlock(&q->mtx);
}

void
logqueue_close(struct logqueue *q)
{
	pthread_mutex_lock(&q->mtx);
	q->closed = 1;
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->mtx);
}

uint64_t
logqueue_take_dropped(struct logqueue *q)
{
	uint64_t n;

	pthread_mutex_lock(&q->mtx);
	n = q->pending_drops;
	q->pending_drops = 0;
	pthread_mutex_unlock(&q->mtx);
	return n;
}

void
logqueue_stats(struct logqueue *q, size_t *bytes, size_t *items,
    uint64_t *dropped_total)
{
	pthread_mutex_lock(&q->mtx);
	if (bytes != NULL)
		*bytes = q->bytes;
	if (items != NULL)
		*items = q->items;
	if (dropped_total != NULL)
		*dropped_total = q->dropped_total;
	pthread_mutex_unlock(&q->mtx);
}

uint64_t
logqueue_wakeups(struct logqueue *q, int *waiting)
{
	uint64_t n;

	pthread_mutex_lock(&q->mtx);
	n = q->wakeups;
	if (waiting != NULL)
		*waiting = q->waiting;
	pthread_mutex_unlock(&q->mtx);
	return n;
}
