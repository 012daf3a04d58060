/*
 * test_sink.c - batched transcript writes: the lines of many records in
 * few write(2)s, byte for byte what one write per record gave, and on a
 * failure an exact count of the lines that went out whole.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "sink.h"
#include "strbuf.h"

#define NREC	2000

static struct txent	 rec[NREC];
static const struct txent *ptr[NREC];
static char		 text[NREC][64];

/* Records of a few sessions, as the writer would get them. */
static void
make_records(size_t n, const uint32_t *sessions, size_t nsessions)
{
	size_t i;

	for (i = 0; i < n; i++) {
		memset(&rec[i], 0, sizeof rec[i]);
		rec[i].tv.tv_sec = 1764412800 + (time_t)(i / 100);
		rec[i].tv.tv_usec = (suseconds_t)(i * 1000 % 1000000);
		rec[i].session = sessions[i % nsessions];
		rec[i].dir = "CS*"[i % 3];
		rec[i].kind = "note";
		snprintf(text[i], sizeof text[i], "record %zu of the batch", i);
		rec[i].text = text[i];
		rec[i].len = strlen(text[i]);
		ptr[i] = &rec[i];
	}
}

/* What one write per record used to give, for records from..to-1. */
static void
expected(struct strbuf *sb, size_t from, size_t to, uint32_t session)
{
	size_t i;

	for (i = from; i < to; i++)
		if (rec[i].session == session)
			txformat_line(&rec[i], TX_FORMAT_TEXT, TXF_TIMESTAMP, sb);
}

static char *
slurp_fd(int fd, size_t *len)
{
	struct strbuf sb;
	char buf[4096];
	ssize_t n;
	char *out;

	strbuf_init(&sb, 1 << 24);
	while ((n = read(fd, buf, sizeof buf)) > 0)
		strbuf_add(&sb, buf, (size_t)n);
	*len = sb.len;
	out = malloc(sb.len + 1);
	memcpy(out, sb.len ? sb.buf : "", sb.len);
	out[sb.len] = '\0';
	strbuf_free(&sb);
	return out;
}

static char *
slurp(int dirfd, const char *name, size_t *len)
{
	char *out;
	int fd;

	fd = openat(dirfd, name, O_RDONLY);
	assert_true(fd != -1);
	out = slurp_fd(fd, len);
	close(fd);
	return out;
}

static void
test_lines_to_file(void **state)
{
	uint32_t one = 0x1a2b3c4d;
	char path[] = "/tmp/test_sink.XXXXXX", *got;
	struct strbuf want;
	size_t len;
	int fd;

	/* Enough to fill the 64 KiB buffer a few times over. */
	make_records(NREC, &one, 1);
	assert_true((fd = mkstemp(path)) != -1);
	unlink(path);
	assert_int_equal(sink_write_lines(fd, ptr, NREC, TX_FORMAT_TEXT,
	    TXF_TIMESTAMP), NREC);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	got = slurp_fd(fd, &len);
	strbuf_init(&want, 1 << 24);
	expected(&want, 0, NREC, one);
	assert_int_equal(len, want.len);
	assert_memory_equal(got, want.buf, len);
	free(got);
	strbuf_free(&want);
	close(fd);
	sink_lines_free();
}

static void
test_partial_write_counts_whole_lines(void **state)
{
	uint32_t one = 7;
	struct strbuf want;
	size_t n, len, i, newlines = 0;
	char *got;
	int p[2];

	make_records(NREC, &one, 1);
	/* A full pipe nobody reads: write(2) stops short, then EAGAIN. */
	assert_int_equal(pipe(p), 0);
	assert_int_equal(fcntl(p[1], F_SETFL, O_NONBLOCK), 0);
	(void)fcntl(p[1], F_SETPIPE_SZ, 4096);
	n = sink_write_lines(p[1], ptr, NREC, TX_FORMAT_TEXT, TXF_TIMESTAMP);
	assert_true(n > 0 && n < NREC);
	assert_int_equal(errno, EAGAIN);
	close(p[1]);
	got = slurp_fd(p[0], &len);
	close(p[0]);
	/* The n lines said to be whole are there, and no more whole ones. */
	strbuf_init(&want, 1 << 24);
	expected(&want, 0, n, one);
	assert_true(len >= want.len);
	assert_memory_equal(got, want.buf, want.len);
	for (i = 0; i < len; i++)
		newlines += got[i] == '\n';
	assert_int_equal(newlines, n);
	free(got);
	strbuf_free(&want);
	sink_lines_free();
}

static void
test_long_line_cut_as_before(void **state)
{
	uint32_t one = 9;
	struct txent big;
	struct strbuf want;
	const struct txent *two[2];
	char path[] = "/tmp/test_sink.XXXXXX", *got, *huge;
	size_t len, hugelen = 300 * 1024, cap = 256 * 1024;
	int fd;

	make_records(1, &one, 1);
	huge = malloc(hugelen);
	memset(huge, 'x', hugelen);
	big = rec[0];
	big.text = huge;
	big.len = hugelen;
	two[0] = &big;
	two[1] = &rec[0];
	assert_true((fd = mkstemp(path)) != -1);
	unlink(path);
	assert_int_equal(sink_write_lines(fd, two, 2, TX_FORMAT_TEXT,
	    TXF_TIMESTAMP), 2);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	got = slurp_fd(fd, &len);
	/* The first 256 KiB of the long line, as its own buffer kept, then
	 * the next record whole. */
	strbuf_init(&want, 1 << 20);
	expected(&want, 0, 1, one);
	assert_int_equal(len, cap + want.len);
	assert_memory_equal(got + cap - 10, "xxxxxxxxxx", 10);
	assert_memory_equal(got + cap, want.buf, want.len);
	strbuf_free(&want);
	free(got);
	free(huge);
	close(fd);
	sink_lines_free();
}

static int
count_logs(const char *dir)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		n += strstr(de->d_name, ".log") != NULL;
	closedir(d);
	return n;
}

/* The file a session's records go to: named by its first record's time. */
static void
session_file(uint32_t session, char *name, size_t size)
{
	struct tm tm;
	char ts[32];
	size_t i;

	if (session == TRANSCRIPT_NOSESSION) {
		snprintf(name, size, "smtptap.log");
		return;
	}
	for (i = 0; rec[i].session != session; i++)
		;
	gmtime_r(&rec[i].tv.tv_sec, &tm);
	strftime(ts, sizeof ts, "%Y%m%dT%H%M%SZ", &tm);
	snprintf(name, size, "%s-%08x.log", ts, session);
}

static void
test_dir_sink_runs_by_session(void **state)
{
	/* Two runs of 0x22222222 in a row, the others alone. */
	uint32_t sessions[] = { 0x11111111, TRANSCRIPT_NOSESSION, 0x22222222,
	    0x22222222 };
	char tmpl[] = "/tmp/test_sink_dir.XXXXXX", *dir, *got, name[64];
	struct strbuf want;
	struct sink s;
	struct stat st;
	char *cause = NULL;
	size_t len, k;
	int dirfd;

	make_records(40, sessions, 4);
	assert_non_null(dir = mkdtemp(tmpl));
	memset(&s, 0, sizeof s);
	s.ops = &sink_dir_ops;
	s.path = dir;
	s.format = TX_FORMAT_TEXT;
	assert_int_equal(s.ops->open(&s, &cause), 0);
	assert_int_equal(s.ops->write_batch(&s, ptr, 40), 40);
	s.ops->end(&s, 0x11111111);
	s.ops->end(&s, 0x22222222);
	s.ops->close(&s);

	/* smtptap.log and one file per session, each with its records in order. */
	assert_int_equal(count_logs(dir), 3);
	dirfd = open(dir, O_RDONLY | O_DIRECTORY);
	for (k = 0; k < 3; k++) {
		session_file(sessions[k], name, sizeof name);
		assert_int_equal(fstatat(dirfd, name, &st, 0), 0);
		assert_int_equal(st.st_mode & 0777, 0600);
		got = slurp(dirfd, name, &len);
		strbuf_init(&want, 1 << 20);
		expected(&want, 0, 40, sessions[k]);
		assert_true(want.len > 0);
		assert_int_equal(len, want.len);
		assert_memory_equal(got, want.buf, len);
		strbuf_free(&want);
		free(got);
		assert_int_equal(unlinkat(dirfd, name, 0), 0);
	}
	close(dirfd);
	assert_int_equal(rmdir(dir), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lines_to_file),
		cmocka_unit_test(test_partial_write_counts_whole_lines),
		cmocka_unit_test(test_long_line_cut_as_before),
		cmocka_unit_test(test_dir_sink_runs_by_session),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
