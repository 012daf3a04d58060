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
	int		 closed;
};

static struct lq_item *
lq_header(void *payload)
{
	/* payload came from logqueue_item_new(): the header is right before. */
	return (struct lq_item *)(void *)((char *)payload -
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
	pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->mtx);
	return 0;
}

void *
logqueue_pop(struct logqueue *q, int timeout_ms, uint64_t *dropped_before)
{
	struct lq_item *it;
	struct timespec ts;

	*dropped_before = 0;
	if (timeout_ms >= 0) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += timeout_ms / 1000;
		ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
	}
	pthread_mutex_lock(&q->mtx);
	while (q->head == NULL && !q->closed) {
		if (timeout_ms < 0)
			pthread_cond_wait(&q->cond, &q->mtx);
		else if (pthread_cond_timedwait(&q->cond, &q->mtx, &ts) ==
		    ETIMEDOUT)
			break;
	}
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
	return it->payload;
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
