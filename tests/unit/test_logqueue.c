/*
 * test_logqueue.c - the bounded queue between the event loop and the
 * transcript writer: never blocks, drops and counts, says where the gap is,
 * hands over what piled up in one batch and wakes the writer only when it
 * sleeps.
 */
/* pthread_tryjoin_np: _GNU_SOURCE comes from config.h, via the build flags. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "logqueue.h"

static void *
item(int value, size_t size)
{
	int *p = logqueue_item_new(size < sizeof *p ? sizeof *p : size);

	*p = value;
	return p;
}

static void
test_fifo(void **state)
{
	struct logqueue *q = logqueue_new(1 << 20);
	uint64_t d;
	int *p, i;

	for (i = 0; i < 10; i++)
		assert_int_equal(logqueue_push(q, item(i, 16), 0), 0);
	for (i = 0; i < 10; i++) {
		p = logqueue_pop(q, 0, &d);
		assert_non_null(p);
		assert_int_equal(*p, i);
		assert_int_equal(d, 0);
		logqueue_item_free(p);
	}
	assert_null(logqueue_pop(q, 0, &d));
	logqueue_free(q);
}

static void
test_drop_and_count(void **state)
{
	struct logqueue *q = logqueue_new(4096);
	uint64_t d, total;
	size_t bytes, items;
	int *p, queued = 0, dropped = 0, i;

	/* Fill past the limit: the push never waits, it drops. */
	for (i = 0; i < 100; i++) {
		if (logqueue_push(q, item(i, 200), 0) == 0)
			queued++;
		else
			dropped++;
	}
	assert_true(queued > 0 && dropped > 0);
	logqueue_stats(q, &bytes, &items, &total);
	assert_true(bytes <= 4096);
	assert_int_equal(items, (size_t)queued);
	assert_int_equal(total, (uint64_t)dropped);

	/* Drain, then one more: it carries the count of the gap before it. */
	for (i = 0; i < queued; i++) {
		p = logqueue_pop(q, 0, &d);
		assert_int_equal(*p, i);
		assert_int_equal(d, 0);
		logqueue_item_free(p);
	}
	assert_int_equal(logqueue_push(q, item(1000, 200), 0), 0);
	p = logqueue_pop(q, 0, &d);
	assert_int_equal(*p, 1000);
	assert_int_equal(d, (uint64_t)dropped);
	logqueue_item_free(p);
	/* Reported once only. */
	assert_int_equal(logqueue_push(q, item(1001, 200), 0), 0);
	p = logqueue_pop(q, 0, &d);
	assert_int_equal(d, 0);
	logqueue_item_free(p);
	assert_int_equal(logqueue_take_dropped(q), 0);
	logqueue_free(q);
}

static void
test_control_bypasses_limit(void **state)
{
	struct logqueue *q = logqueue_new(512);
	uint64_t d;
	int *p;

	assert_int_equal(logqueue_push(q, item(1, 400), 0), 0);
	assert_int_equal(logqueue_push(q, item(2, 400), 0), -1);
	assert_int_equal(logqueue_push(q, item(3, 400), 1), 0);
	p = logqueue_pop(q, 0, &d);
	assert_int_equal(*p, 1);
	logqueue_item_free(p);
	p = logqueue_pop(q, 0, &d);
	assert_int_equal(*p, 3);
	/* A control item does not carry or reset the count. */
	assert_int_equal(d, 0);
	logqueue_item_free(p);
	assert_int_equal(logqueue_take_dropped(q), 1);
	assert_int_equal(logqueue_take_dropped(q), 0);
	logqueue_free(q);
}

static void
test_close(void **state)
{
	struct logqueue *q = logqueue_new(1 << 16);
	uint64_t d;
	int *p;

	assert_int_equal(logqueue_push(q, item(1, 8), 0), 0);
	logqueue_close(q);
	/* After close: refused and counted; what is queued still drains. */
	assert_int_equal(logqueue_push(q, item(2, 8), 0), -1);
	assert_int_equal(logqueue_push(q, item(3, 8), 1), -1);
	p = logqueue_pop(q, -1, &d);
	assert_int_equal(*p, 1);
	logqueue_item_free(p);
	assert_null(logqueue_pop(q, -1, &d));
	assert_int_equal(logqueue_take_dropped(q), 1);
	/* Items still queued are freed with the queue (ASan checks). */
	logqueue_free(q);
	q = logqueue_new(1 << 16);
	assert_int_equal(logqueue_push(q, item(4, 64), 0), 0);
	logqueue_free(q);
}

static void
test_pop_timeout(void **state)
{
	struct logqueue *q = logqueue_new(1 << 16);
	struct timespec a, b;
	uint64_t d;
	long ms;

	clock_gettime(CLOCK_MONOTONIC, &a);
	assert_null(logqueue_pop(q, 50, &d));
	clock_gettime(CLOCK_MONOTONIC, &b);
	ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
	assert_true(ms >= 40 && ms < 2000);
	logqueue_free(q);
}

/* The values of a taken batch, in order, and each item's drop count. */
static size_t
batch_values(void *first, int *values, uint64_t *drops, size_t max)
{
	size_t n = 0;
	void *p;

	for (p = first; p != NULL && n < max; p = logqueue_item_next(p)) {
		values[n] = *(int *)p;
		drops[n++] = logqueue_item_dropped(p);
	}
	return n;
}

static void
test_take_batch(void **state)
{
	struct logqueue *q = logqueue_new(3 * 300);
	uint64_t drops[8], total;
	size_t bytes, items;
	int values[8];
	void *first;

	/* 200-byte items plus headers: two fit in the limit, a third does not. */
	assert_int_equal(logqueue_push(q, item(1, 200), 0), 0);
	assert_int_equal(logqueue_push(q, item(2, 200), 0), 0);
	assert_int_equal(logqueue_push(q, item(3, 200), 0), 0);
	assert_int_equal(logqueue_push(q, item(4, 200), 0), -1);
	assert_int_equal(logqueue_push(q, item(5, 200), 0), -1);
	first = logqueue_take(q, 0);
	assert_non_null(first);
	assert_int_equal(batch_values(first, values, drops, 8), 3);
	assert_int_equal(values[0], 1);
	assert_int_equal(values[1], 2);
	assert_int_equal(values[2], 3);
	assert_int_equal(drops[0] + drops[1] + drops[2], 0);

	/* Taken, not released: still counted, so the next push is dropped. */
	logqueue_stats(q, &bytes, &items, &total);
	assert_int_equal(items, 0);
	assert_true(bytes > 3 * 200);
	assert_int_equal(total, 2);
	assert_int_equal(logqueue_push(q, item(6, 200), 0), -1);
	logqueue_release(q, first, NULL);
	logqueue_stats(q, &bytes, NULL, NULL);
	assert_int_equal(bytes, 0);

	/* The gap of three travels with the next item, and only with it. */
	assert_int_equal(logqueue_push(q, item(7, 200), 0), 0);
	assert_int_equal(logqueue_push(q, item(8, 200), 0), 0);
	first = logqueue_take(q, 0);
	assert_int_equal(batch_values(first, values, drops, 8), 2);
	assert_int_equal(values[0], 7);
	assert_int_equal(drops[0], 3);
	assert_int_equal(values[1], 8);
	assert_int_equal(drops[1], 0);
	logqueue_release(q, first, NULL);
	assert_null(logqueue_take(q, 0));
	logqueue_free(q);
}

static void
test_take_keeps_control_order(void **state)
{
	struct logqueue *q = logqueue_new(512);
	uint64_t drops[8];
	int values[8];
	void *first;

	assert_int_equal(logqueue_push(q, item(1, 400), 0), 0);
	assert_int_equal(logqueue_push(q, item(2, 8), 1), 0);
	assert_int_equal(logqueue_push(q, item(3, 400), 0), -1);
	assert_int_equal(logqueue_push(q, item(4, 8), 1), 0);
	first = logqueue_take(q, 0);
	assert_int_equal(batch_values(first, values, drops, 8), 3);
	assert_int_equal(values[0], 1);
	assert_int_equal(values[1], 2);
	assert_int_equal(values[2], 4);
	/* Control items carry no count: the gap waits for the next record. */
	assert_int_equal(drops[1] + drops[2], 0);
	logqueue_release(q, first, NULL);
	assert_int_equal(logqueue_push(q, item(5, 8), 0), 0);
	first = logqueue_take(q, 0);
	assert_int_equal(batch_values(first, values, drops, 8), 1);
	assert_int_equal(values[0], 5);
	assert_int_equal(drops[0], 1);
	logqueue_release(q, first, NULL);
	logqueue_free(q);
}

static void
test_release_part(void **state)
{
	struct logqueue *q = logqueue_new(1 << 16);
	size_t all, left;
	void *first, *second, *third;

	assert_int_equal(logqueue_push(q, item(1, 100), 0), 0);
	assert_int_equal(logqueue_push(q, item(2, 100), 1), 0);
	assert_int_equal(logqueue_push(q, item(3, 1000), 0), 0);
	logqueue_stats(q, &all, NULL, NULL);
	first = logqueue_take(q, 0);
	second = logqueue_item_next(first);
	third = logqueue_item_next(second);
	assert_non_null(third);
	assert_null(logqueue_item_next(third));
	/* The first two: the record's bytes come back, the control had none. */
	logqueue_release(q, first, third);
	logqueue_stats(q, &left, NULL, NULL);
	assert_true(left < all && left > 1000);
	assert_int_equal(*(int *)third, 3);
	logqueue_release(q, third, NULL);
	logqueue_stats(q, &left, NULL, NULL);
	assert_int_equal(left, 0);
	logqueue_free(q);
}

/* Waits (without a deadline that matters) until the consumer sleeps. */
static void
until_consumer_sleeps(struct logqueue *q)
{
	struct timespec ms = { 0, 1000000 };
	int waiting = 0, i;

	for (i = 0; i < 60000 && !waiting; i++) {
		(void)logqueue_wakeups(q, &waiting);
		if (!waiting)
			nanosleep(&ms, NULL);
	}
	assert_true(waiting);
}

struct taker {
	struct logqueue	*q;
	void		*batch[2];
};

/* Takes what is there, then sleeps until more comes. */
static void *
take_twice(void *arg)
{
	struct taker *t = arg;

	t->batch[0] = logqueue_take(t->q, -1);
	t->batch[1] = logqueue_take(t->q, -1);
	return NULL;
}

static void
test_wake_only_a_sleeper(void **state)
{
	struct logqueue *q = logqueue_new(1 << 16);
	struct taker t = { q, { NULL, NULL } };
	uint64_t drops[8];
	int values[8], waiting;
	size_t n, m = 0;
	pthread_t th;
	void *rest;

	/* Nobody sleeps: no signal at all, however many pushes. */
	for (n = 0; n < 5; n++)
		assert_int_equal(logqueue_push(q, item((int)n, 16), 0), 0);
	assert_int_equal(logqueue_wakeups(q, &waiting), 0);
	assert_false(waiting);

	assert_int_equal(pthread_create(&th, NULL, take_twice, &t), 0);
	until_consumer_sleeps(q);
	/* The first push wakes it; the two after find it woken or awake. */
	assert_int_equal(logqueue_push(q, item(10, 16), 0), 0);
	assert_int_equal(logqueue_push(q, item(11, 16), 0), 0);
	assert_int_equal(logqueue_push(q, item(12, 16), 0), 0);
	pthread_join(th, NULL);
	assert_int_equal(logqueue_wakeups(q, &waiting), 1);
	assert_false(waiting);

	assert_int_equal(batch_values(t.batch[0], values, drops, 8), 5);
	assert_int_equal(values[4], 4);
	/* What the woken taker did not get is still queued, in order. */
	n = batch_values(t.batch[1], values, drops, 8);
	assert_true(n >= 1 && n <= 3);
	rest = logqueue_take(q, 0);
	if (rest != NULL)
		m = batch_values(rest, values + n, drops + n, 8 - n);
	assert_int_equal(n + m, 3);
	assert_int_equal(values[0], 10);
	assert_int_equal(values[1], 11);
	assert_int_equal(values[2], 12);
	logqueue_release(q, t.batch[0], NULL);
	logqueue_release(q, t.batch[1], NULL);
	logqueue_release(q, rest, NULL);
	logqueue_free(q);
}

static void *
take_once(void *arg)
{
	struct taker *t = arg;

	t->batch[0] = logqueue_take(t->q, -1);
	return NULL;
}

static void
test_close_wakes_a_sleeper(void **state)
{
	struct logqueue *q = logqueue_new(1 << 16);
	struct taker t = { q, { q, NULL } };
	pthread_t th;

	assert_int_equal(pthread_create(&th, NULL, take_once, &t), 0);
	until_consumer_sleeps(q);
	logqueue_close(q);
	pthread_join(th, NULL);
	assert_null(t.batch[0]);
	/* Close is not a push: no wake was counted for it. */
	assert_int_equal(logqueue_wakeups(q, NULL), 0);
	logqueue_free(q);
}

static void
count_waker(void *arg)
{
	(*(int *)arg)++;
}

struct pusher {
	struct logqueue	*q;
	int		 value;
};

static void *
push_one(void *arg)
{
	struct pusher *p = arg;

	assert_int_equal(logqueue_push(p->q, item(p->value, 16), 0), 0);
	return NULL;
}

/*
 * With a waker, pushes from its thread leave the wake to it (once, however
 * many pushes), and the consumer sleeps on until logqueue_wake(). A push
 * from any other thread still wakes the consumer itself.
 */
static void
test_waker_defers_the_wake(void **state)
{
	struct logqueue *q = logqueue_new(1 << 16);
	struct taker t = { q, { NULL, NULL } };
	struct pusher p = { q, 20 };
	struct timespec pause = { 0, 50000000 };
	pthread_t th, other;
	uint64_t drops[4];
	int values[4], calls = 0;

	(void)state;
	logqueue_set_waker(q, count_waker, &calls);
	assert_int_equal(pthread_create(&th, NULL, take_once, &t), 0);
	until_consumer_sleeps(q);
	assert_int_equal(logqueue_push(q, item(1, 16), 0), 0);
	assert_int_equal(logqueue_push(q, item(2, 16), 0), 0);
	assert_int_equal(logqueue_push(q, item(3, 16), 0), 0);
	assert_int_equal(calls, 1);
	nanosleep(&pause, NULL);
	assert_int_equal(pthread_tryjoin_np(th, NULL), EBUSY);
	logqueue_wake(q);
	pthread_join(th, NULL);
	assert_int_equal(batch_values(t.batch[0], values, drops, 4), 3);
	assert_int_equal(values[0], 1);
	assert_int_equal(values[2], 3);
	logqueue_release(q, t.batch[0], NULL);

	t.batch[0] = NULL;
	assert_int_equal(pthread_create(&th, NULL, take_once, &t), 0);
	until_consumer_sleeps(q);
	assert_int_equal(pthread_create(&other, NULL, push_one, &p), 0);
	pthread_join(other, NULL);
	pthread_join(th, NULL);		/* woken without logqueue_wake() */
	assert_int_equal(calls, 1);
	assert_int_equal(batch_values(t.batch[0], values, drops, 4), 1);
	assert_int_equal(values[0], 20);
	logqueue_release(q, t.batch[0], NULL);

	/* No waker: the push wakes the consumer itself again. */
	logqueue_set_waker(q, NULL, NULL);
	t.batch[0] = NULL;
	assert_int_equal(pthread_create(&th, NULL, take_once, &t), 0);
	until_consumer_sleeps(q);
	assert_int_equal(logqueue_push(q, item(30, 16), 0), 0);
	pthread_join(th, NULL);
	assert_int_equal(calls, 1);
	logqueue_release(q, t.batch[0], NULL);
	logqueue_free(q);
}

static void
test_take_timeout(void **state)
{
	struct logqueue *q = logqueue_new(1 << 16);
	int waiting = 1;

	assert_null(logqueue_take(q, 0));
	assert_null(logqueue_take(q, 20));
	/* Timed out: nobody is left marked as sleeping, so no wake is owed. */
	(void)logqueue_wakeups(q, &waiting);
	assert_false(waiting);
	assert_int_equal(logqueue_push(q, item(1, 8), 0), 0);
	assert_int_equal(logqueue_wakeups(q, NULL), 0);
	logqueue_release(q, logqueue_take(q, 0), NULL);
	logqueue_free(q);
}

/* A producer and a slow consumer: every item is either seen or counted. */
struct race {
	struct logqueue	*q;
	uint64_t	 seen, gaps;
	int		 last;
	int		 ordered;
};

static void *
consumer(void *arg)
{
	struct race *r = arg;
	uint64_t d;
	int *p;

	while ((p = logqueue_pop(r->q, -1, &d)) != NULL) {
		if (*p <= r->last)
			r->ordered = 0;
		r->last = *p;
		r->seen++;
		r->gaps += d;
		logqueue_item_free(p);
	}
	r->gaps += logqueue_take_dropped(r->q);
	return NULL;
}

/* The same with batches: in order, nothing lost uncounted, few wakes. */
struct batches {
	struct logqueue	*q;
	uint64_t	 seen, gaps, batches;
	int		 last;
	int		 ordered;
};

static void *
batch_consumer(void *arg)
{
	struct batches *b = arg;
	void *first, *p;

	while ((first = logqueue_take(b->q, -1)) != NULL) {
		b->batches++;
		for (p = first; p != NULL; p = logqueue_item_next(p)) {
			if (*(int *)p <= b->last)
				b->ordered = 0;
			b->last = *(int *)p;
			b->seen++;
			b->gaps += logqueue_item_dropped(p);
		}
		logqueue_release(b->q, first, NULL);
	}
	b->gaps += logqueue_take_dropped(b->q);
	return NULL;
}

static void
test_threads_batches(void **state)
{
	struct batches b;
	pthread_t t;
	size_t bytes;
	int i, n = 200000;

	memset(&b, 0, sizeof b);
	b.q = logqueue_new(64 * 1024);
	b.last = -1;
	b.ordered = 1;
	assert_int_equal(pthread_create(&t, NULL, batch_consumer, &b), 0);
	for (i = 0; i < n; i++)
		(void)logqueue_push(b.q, item(i, 100), 0);
	logqueue_close(b.q);
	pthread_join(t, NULL);
	assert_true(b.ordered);
	assert_int_equal(b.seen + b.gaps, (uint64_t)n);
	/* Every wake ended a sleep with a batch; pushes to a busy taker none. */
	assert_true(logqueue_wakeups(b.q, NULL) <= b.batches);
	logqueue_stats(b.q, &bytes, NULL, NULL);
	assert_int_equal(bytes, 0);
	logqueue_free(b.q);
}

static void
test_threads(void **state)
{
	struct race r;
	pthread_t t;
	int i, n = 200000;

	memset(&r, 0, sizeof r);
	r.q = logqueue_new(64 * 1024);
	r.last = -1;
	r.ordered = 1;
	assert_int_equal(pthread_create(&t, NULL, consumer, &r), 0);
	for (i = 0; i < n; i++)
		(void)logqueue_push(r.q, item(i, 100), 0);
	logqueue_close(r.q);
	pthread_join(t, NULL);
	assert_true(r.ordered);
	assert_int_equal(r.seen + r.gaps, (uint64_t)n);
	logqueue_free(r.q);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fifo),
		cmocka_unit_test(test_drop_and_count),
		cmocka_unit_test(test_control_bypasses_limit),
		cmocka_unit_test(test_close),
		cmocka_unit_test(test_pop_timeout),
		cmocka_unit_test(test_take_batch),
		cmocka_unit_test(test_take_keeps_control_order),
		cmocka_unit_test(test_release_part),
		cmocka_unit_test(test_waker_defers_the_wake),
		cmocka_unit_test(test_wake_only_a_sleeper),
		cmocka_unit_test(test_close_wakes_a_sleeper),
		cmocka_unit_test(test_take_timeout),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_threads_batches),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
