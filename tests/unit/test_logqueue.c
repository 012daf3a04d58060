/*
 * test_logqueue.c - the bounded queue between the event loop and the
 * transcript writer: never blocks, drops and counts, says where the gap is.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

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
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
