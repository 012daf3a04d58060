/*
 * transcript.c - build transcript records and hand them to the writer thread.
 *
 * The event loop packs each record into one queue item (logqueue.c) and goes
 * on; the writer thread formats it and writes it to the sink. This keeps a
 * full disk, a pipe nobody reads or a slow journal away from the relay: the
 * queue is bounded, and what does not fit is counted and reported as one
 * "dropped" record once writing works again.
 *
 * The writer takes everything queued when it wakes and hands the records to
 * the sink together: a message makes a dozen records, and a wake and a
 * write(2) per record cost more CPU than the relay itself. It never waits
 * for more to come, so a record is as prompt as before.
 */
#include <sys/stat.h>
#include <sys/time.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "escape.h"
#include "log.h"
#include "logqueue.h"
#include "sink.h"
#include "strbuf.h"
#include "transcript.h"
#include "xmalloc.h"

/* At most one diagnostic about lost records per this many seconds. */
#define WARN_INTERVAL	10
/* Records given to the sink at once; bounds the writer's arrays. */
#define RUN_MAX		128
/*
 * What one record may hold in the queue: no line can show more than
 * TXFORMAT_LINE_MAX, so more than that is only memory. What is cut here is
 * counted, and the written record says so.
 */
#define RECORD_TEXT_MAX		TXFORMAT_LINE_MAX
#define RECORD_FIELD_MAX	(64 * 1024)

enum txq_type {
	TXQ_RECORD,
	TXQ_REOPEN,
	TXQ_END,
};

/* What a queue item holds: a control word, then the record. */
struct txq {
	enum txq_type	 type;
	uint32_t	 session;	/* TXQ_END */
	struct txent	 ent;		/* TXQ_RECORD */
	/* The fields, then the strings. */
};

enum transcript_state {
	TRANSCRIPT_NEW,		/* not opened yet: write to stderr at once */
	TRANSCRIPT_RUNNING,
	TRANSCRIPT_STOPPED,	/* closed: records are discarded */
};

static enum transcript_state	 state = TRANSCRIPT_NEW;
static struct logqueue		*queue;
static struct event		*wake_ev;	/* transcript_attach() */
static struct sink		 sink;
static pthread_t		 writer;
static pthread_mutex_t		 done_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t		 done_cond;
static int			 writer_done;

/* The "N transcript records dropped" record, made on the writer thread. */
struct txnote {
	struct txent	 ent;
	struct tx_field	 field;
	char		 text[128];
};

/* A run of records for the sink, each after the notice of a gap before it. */
struct txrun {
	const struct txent	*ent[2 * RUN_MAX];
	size_t			 rec[2 * RUN_MAX];	/* whose entry it is */
	uint64_t		 gap[2 * RUN_MAX];	/* a notice's count, or 0 */
	struct txnote		 note[RUN_MAX];		/* by record */
	size_t			 n;
};

/* Writer-thread state. */
static uint64_t			 lost;		/* not yet reported */
static time_t			 last_warn;
static struct txrun		 run;

int
transcript_parse_format(const char *v, enum tx_format *f)
{
	if (strcmp(v, "text") == 0)
		*f = TX_FORMAT_TEXT;
	else if (strcmp(v, "json") == 0)
		*f = TX_FORMAT_JSON;
	else
		return -1;
	return 0;
}

int
transcript_check_dest(const char *dest, char **cause)
{
	if (dest == NULL)
		return 0;
	if (*dest == '\0') {
		xasprintf(cause, "empty value");
		return -1;
	}
#ifndef HAVE_SYSTEMD
	if (strcmp(dest, "journal") == 0) {
		xasprintf(cause, "\"journal\": smtptap was built without systemd "
		    "support (use syslog, or rebuild with --with-systemd)");
		return -1;
	}
#endif
	if (strncmp(dest, "dir:", 4) == 0 && dest[4] == '\0') {
		xasprintf(cause, "\"dir:\" needs a directory, as in dir:/var/log/smtptap");
		return -1;
	}
	return 0;
}

/* Which sink a destination names; sets sink.path and sink.fd. */
static const struct sink_ops *
transcript_pick(const char *dest)
{
	struct stat st;

	sink.fd = -1;
	if (dest == NULL || strcmp(dest, "stderr") == 0) {
		sink.fd = STDERR_FILENO;
		return &sink_file_ops;
	}
	if (strcmp(dest, "-") == 0) {
		sink.fd = STDOUT_FILENO;
		return &sink_file_ops;
	}
	if (strcmp(dest, "syslog") == 0)
		return &sink_syslog_ops;
#ifdef HAVE_SYSTEMD
	if (strcmp(dest, "journal") == 0)
		return &sink_journal_ops;
#endif
	if (strncmp(dest, "dir:", 4) == 0) {
		sink.path = xstrdup(dest + 4);
		return &sink_dir_ops;
	}
	sink.path = xstrdup(dest);
	if (stat(dest, &st) == 0 && S_ISDIR(st.st_mode))
		return &sink_dir_ops;
	return &sink_file_ops;
}

/* The writer could not write: say so now and then, never per record. */
static void
transcript_warn(const char *fmt, ...) PRINTFLIKE(1, 2);

static void
transcript_warn(const char *fmt, ...)
{
	char msg[512];
	time_t now = time(NULL);
	va_list ap;

	if (last_warn != 0 && now - last_warn < WARN_INTERVAL)
		return;
	last_warn = now;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	log_warnx("transcript: %s", msg);
}

static const char *
transcript_where(void)
{
	if (sink.path != NULL)
		return sink.path;
	if (sink.ops == &sink_file_ops)
		return sink.fd == STDOUT_FILENO ? "standard output" :
		    "standard error";
	return sink.ops->name;
}

static const struct txent *
transcript_dropped_ent(struct txnote *note, uint64_t n)
{
	struct txent *e = &note->ent;

	memset(e, 0, sizeof *e);
	gettimeofday(&e->tv, NULL);
	e->dir = '*';
	e->kind = "dropped";
	snprintf(note->text, sizeof note->text, "%llu transcript record%s "
	    "dropped (log destination full or blocked)", (unsigned long long)n,
	    n == 1 ? "" : "s");
	e->text = note->text;
	e->len = strlen(note->text);
	note->field = (struct tx_field)TXF_NUM("count", n);
	e->fields = &note->field;
	e->nfields = 1;
	return e;
}

static int
transcript_write_dropped(uint64_t n)
{
	struct txnote note;

	return sink.ops->write(&sink, transcript_dropped_ent(&note, n));
}

/*
 * Write one record, first the count of the records lost before it. When the
 * count cannot be written the record is not tried either: a record that does
 * appear is always preceded by the news of any gap before it.
 */
static void
transcript_write_ent(const struct txent *e, uint64_t dropped_before)
{
	if (dropped_before > 0) {
		transcript_warn("%llu records dropped: %s did not keep up",
		    (unsigned long long)dropped_before, transcript_where());
		lost += dropped_before;
	}
	if (lost > 0) {
		if (transcript_write_dropped(lost) != 0) {
			lost++;
			transcript_warn("cannot write to %s: %s; records are "
			    "being dropped", transcript_where(), strerror(errno));
			return;
		}
		lost = 0;
	}
	if (sink.ops->write(&sink, e) != 0) {
		lost++;
		transcript_warn("cannot write to %s: %s; records are being dropped",
		    transcript_where(), strerror(errno));
	}
}

/* Records whose sink has no write_batch: one at a time, as they always were. */
static void
transcript_write_each(void *const *recs, size_t n)
{
	const struct txq *q;
	size_t i;

	for (i = 0; i < n; i++) {
		q = recs[i];
		transcript_write_ent(&q->ent, logqueue_item_dropped(recs[i]));
	}
}

/*
 * The entries for records from..n-1: each record after the notice of the gap
 * before it, the first one's gap including what was lost before the run.
 */
static void
transcript_plan(void *const *recs, size_t from, size_t n)
{
	const struct txq *q;
	uint64_t gap;
	size_t i;

	run.n = 0;
	for (i = from; i < n; i++) {
		q = recs[i];
		gap = logqueue_item_dropped(recs[i]) + (i == from ? lost : 0);
		if (gap > 0) {
			run.rec[run.n] = i;
			run.gap[run.n] = gap;
			run.ent[run.n++] = transcript_dropped_ent(&run.note[i],
			    gap);
		}
		run.rec[run.n] = i;
		run.gap[run.n] = 0;
		run.ent[run.n++] = &q->ent;
	}
}

/*
 * The records in as few writes as the sink manages, with the rule of
 * transcript_write_ent() kept: a record that fails is lost and counted, and
 * one whose gap notice fails is not tried. Those after it are tried again,
 * after a notice of the loss: on a per-session file one broken file must not
 * cost the other sessions their records.
 */
static void
transcript_write_run(void *const *recs, size_t n)
{
	size_t i, from = 0, done;
	uint64_t gap;

	for (i = 0; i < n; i++)
		if ((gap = logqueue_item_dropped(recs[i])) > 0)
			transcript_warn("%llu records dropped: %s did not keep up",
			    (unsigned long long)gap, transcript_where());
	while (from < n) {
		transcript_plan(recs, from, n);
		done = sink.ops->write_batch(&sink, run.ent, run.n);
		if (done == run.n) {
			lost = 0;
			return;
		}
		/*
		 * A record: the notice before it, if any, went out. A notice:
		 * its count is still owed, and its record was not tried.
		 */
		lost = run.gap[done] + 1;
		transcript_warn("cannot write to %s: %s; records are being dropped",
		    transcript_where(), strerror(errno));
		from = run.rec[done] + 1;
	}
}

static void
transcript_do_control(const struct txq *q)
{
	char *cause = NULL;

	switch (q->type) {
	case TXQ_RECORD:
		break;
	case TXQ_REOPEN:
		if (sink.ops->reopen != NULL &&
		    sink.ops->reopen(&sink, &cause) != 0) {
			log_warnx("transcript: %s; still writing to the old file",
			    cause);
			free(cause);
		}
		break;
	case TXQ_END:
		if (sink.ops->end != NULL)
			sink.ops->end(&sink, q->session);
		break;
	}
}

/* The records from item on, up to a control item or RUN_MAX; the next item. */
static void *
transcript_gather(void *item, void **recs, size_t *n)
{
	const struct txq *q;

	for (*n = 0; item != NULL && *n < RUN_MAX; *n += 1) {
		q = item;
		if (q->type != TXQ_RECORD)
			break;
		recs[*n] = item;
		item = logqueue_item_next(item);
	}
	return item;
}

/*
 * A batch taken from the queue: runs of records, written together, and
 * the control items between them, in the order they were queued. Each part
 * is freed once done, so the queue's limit counts only what still waits.
 */
static void
transcript_batch(void *item)
{
	void *recs[RUN_MAX], *first;
	size_t n;

	while (item != NULL) {
		first = item;
		if (((const struct txq *)item)->type != TXQ_RECORD) {
			transcript_do_control(item);
			item = logqueue_item_next(item);
		} else {
			item = transcript_gather(item, recs, &n);
			if (sink.ops->write_batch != NULL)
				transcript_write_run(recs, n);
			else
				transcript_write_each(recs, n);
		}
		logqueue_release(queue, first, item);
	}
}

/*
 * The writer should run when a CPU is free, not preempt the event loop each
 * time a record wakes it: SCHED_BATCH turns off wake-up preemption (and
 * nothing else: same share of the CPU, no timer). Without it, every wake
 * on a busy machine cost the relay a context switch, and the writer took a
 * record or two at a time. When the CPU is idle the writer runs at once, as
 * before. Refused (a seccomp filter, an old kernel): it runs as it always did.
 */
static void
transcript_writer_policy(void)
{
#ifdef SCHED_BATCH
	struct sched_param sp;

	memset(&sp, 0, sizeof sp);
	(void)pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
#endif
}

static void *
transcript_writer(void *arg)
{
	void *batch;

	transcript_writer_policy();
	while ((batch = logqueue_take(queue, -1)) != NULL)
		transcript_batch(batch);
	/* Drops after the last queued record. */
	lost += logqueue_take_dropped(queue);
	if (lost > 0 && transcript_write_dropped(lost) == 0)
		lost = 0;

	pthread_mutex_lock(&done_mtx);
	writer_done = 1;
	pthread_cond_signal(&done_cond);
	pthread_mutex_unlock(&done_mtx);
	return NULL;
}

int
transcript_open(const char *dest, enum tx_format format, char **cause)
{
	pthread_condattr_t ca;
	sigset_t all, old;
	int error;

	if (transcript_check_dest(dest, cause) != 0)
		return -1;
	memset(&sink, 0, sizeof sink);
	sink.format = format;
	sink.ops = transcript_pick(dest);
	if (sink.ops->open(&sink, cause) != 0) {
		free(sink.path);
		sink.path = NULL;
		return -1;
	}
	queue = logqueue_new(TRANSCRIPT_QUEUE_LIMIT);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&done_cond, &ca);
	pthread_condattr_destroy(&ca);

	/* Signals belong to the event loop's thread, not to the writer. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	error = pthread_create(&writer, NULL, transcript_writer, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (error != 0) {
		xasprintf(cause, "cannot start the transcript writer: %s",
		    strerror(error));
		sink.ops->close(&sink);
		logqueue_free(queue);
		queue = NULL;
		free(sink.path);
		sink.path = NULL;
		return -1;
	}
	state = TRANSCRIPT_RUNNING;
	return 0;
}

static void
transcript_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	logqueue_wake(queue);
}

/* Runs after the callbacks already due in this loop turn: one wake for all. */
static void
transcript_defer_wake(void *arg)
{
	(void)arg;
	event_active(wake_ev, EV_TIMEOUT, 1);
}

void
transcript_attach(struct event_base *base)
{
	if (queue == NULL || wake_ev != NULL)
		return;
	if ((wake_ev = event_new(base, -1, 0, transcript_wake_cb, NULL)) != NULL)
		logqueue_set_waker(queue, transcript_defer_wake, NULL);
}

void
transcript_detach(void)
{
	if (wake_ev == NULL)
		return;
	logqueue_set_waker(queue, NULL, NULL);
	logqueue_wake(queue);
	event_free(wake_ev);
	wake_ev = NULL;
}

void
transcript_close(void)
{
	struct timespec ts;
	int done;

	if (state != TRANSCRIPT_RUNNING) {
		state = TRANSCRIPT_STOPPED;
		return;
	}
	state = TRANSCRIPT_STOPPED;
	logqueue_close(queue);

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += TRANSCRIPT_FLUSH_MS / 1000;
	ts.tv_nsec += (long)(TRANSCRIPT_FLUSH_MS % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&done_mtx);
	while (!writer_done)
		if (pthread_cond_timedwait(&done_cond, &done_mtx, &ts) != 0)
			break;
	done = writer_done;
	pthread_mutex_unlock(&done_mtx);
	if (!done) {
		/* Blocked in write(2) for good: leave it to exit(). */
		log_warnx("transcript: %s still blocked after %d ms; the records "
		    "not yet written are lost", transcript_where(),
		    TRANSCRIPT_FLUSH_MS);
		return;
	}
	pthread_join(writer, NULL);
	sink.ops->close(&sink);
	free(sink.path);
	sink.path = NULL;
	logqueue_free(queue);
	queue = NULL;
	pthread_cond_destroy(&done_cond);
}

static void
transcript_control(enum txq_type type, uint32_t session)
{
	struct txq *q;

	if (state != TRANSCRIPT_RUNNING)
		return;
	q = logqueue_item_new(sizeof *q);
	q->type = type;
	q->session = session;
	(void)logqueue_push(queue, q, 1);
}

void
transcript_reopen(void)
{
	transcript_control(TXQ_REOPEN, 0);
}

void
transcript_session_end(uint32_t session)
{
	transcript_control(TXQ_END, session);
}

/* Copy s into the item's string area. */
static const char *
transcript_put(char **area, const char *s, size_t len)
{
	char *p = *area;

	memcpy(p, s, len);
	p[len] = '\0';
	*area += len + 1;
	return p;
}

/* A string's length in the queue: cut between escapes past max. */
static size_t
transcript_bound(const char *s, size_t len, size_t max)
{
	return len <= max ? len : escape_cut(s, len, max);
}

/* A string field's length in the queue. */
static size_t
transcript_field_len(const struct tx_field *f)
{
	return transcript_bound(f->str, strlen(f->str), RECORD_FIELD_MAX);
}

void
transcript_record(uint32_t session, const char *service, char dir,
    const char *kind, int code, const struct tx_field *fields, size_t nfields,
    const char *text, size_t len)
{
	struct txq *q;
	struct txent *e, tmp;
	struct tx_field *f;
	struct strbuf sb;
	size_t size, i, text_cut, field_cut = 0, flen;
	char *area;

	if (state == TRANSCRIPT_STOPPED)
		return;
	text_cut = len;
	len = transcript_bound(text, len, RECORD_TEXT_MAX);
	text_cut -= len;
	if (state == TRANSCRIPT_NEW) {
		/* Before transcript_open(): straight to stderr, as text. */
		memset(&tmp, 0, sizeof tmp);
		gettimeofday(&tmp.tv, NULL);
		tmp.session = session;
		tmp.dir = dir;
		tmp.code = code;
		tmp.kind = kind;
		tmp.text = text;
		tmp.len = len;
		tmp.text_cut = text_cut;
		strbuf_init(&sb, 0);
		txformat_line(&tmp, TX_FORMAT_TEXT, TXF_TIMESTAMP, &sb);
		(void)sink_write_all(STDERR_FILENO, sb.buf, sb.len);
		strbuf_free(&sb);
		return;
	}

	size = sizeof *q + nfields * sizeof *fields + strlen(kind) + 1 + len + 1;
	if (service != NULL)
		size += strlen(service) + 1;
	for (i = 0; i < nfields; i++) {
		size += strlen(fields[i].key) + 1;
		if (fields[i].type == TX_STR && fields[i].str != NULL) {
			flen = transcript_field_len(&fields[i]);
			field_cut += strlen(fields[i].str) - flen;
			size += flen + 1;
		}
	}
	q = logqueue_item_new(size);
	q->type = TXQ_RECORD;
	e = &q->ent;
	/* struct txq is aligned for any member, and so is what follows it. */
	f = (struct tx_field *)(q + 1);
	area = (char *)(f + nfields);
	gettimeofday(&e->tv, NULL);
	e->session = session;
	e->dir = dir;
	e->code = code;
	e->kind = transcript_put(&area, kind, strlen(kind));
	e->service = service != NULL ?
	    transcript_put(&area, service, strlen(service)) : NULL;
	e->text = transcript_put(&area, text, len);
	e->len = len;
	e->text_cut = text_cut;
	e->field_cut = field_cut;
	e->fields = f;
	e->nfields = nfields;
	for (i = 0; i < nfields; i++) {
		f[i] = fields[i];
		f[i].key = transcript_put(&area, fields[i].key,
		    strlen(fields[i].key));
		if (fields[i].type == TX_STR && fields[i].str != NULL)
			f[i].str = transcript_put(&area, fields[i].str,
			    transcript_field_len(&fields[i]));
	}
	/* Full: dropped and counted inside; the writer reports the count. */
	(void)logqueue_push(queue, q, 0);
}

void
transcript_recordf(uint32_t session, const char *service, char dir,
    const char *kind, int code, const struct tx_field *fields, size_t nfields,
    const char *fmt, ...)
{
	struct strbuf sb;
	va_list ap;

	strbuf_init(&sb, 0);
	va_start(ap, fmt);
	strbuf_vprintf(&sb, fmt, ap);
	va_end(ap);
	transcript_record(session, service, dir, kind, code, fields, nfields,
	    sb.len ? sb.buf : "", sb.len);
	strbuf_free(&sb);
}

void
transcript_line(uint32_t session, const char *dir, const char *text, size_t len)
{
	char d = dir[0] == 'C' || dir[0] == 'S' ? dir[0] : '*';

	transcript_record(session, NULL, d, d == 'C' ? "command" : d == 'S' ?
	    "reply" : "note", 0, NULL, 0, text, len);
}

void
transcript_note(uint32_t session, const char *fmt, ...)
{
	struct strbuf sb;
	va_list ap;

	strbuf_init(&sb, 0);
	va_start(ap, fmt);
	strbuf_vprintf(&sb, fmt, ap);
	va_end(ap);
	transcript_record(session, NULL, '*', "note", 0, NULL, 0,
	    sb.len ? sb.buf : "", sb.len);
	strbuf_free(&sb);
}
