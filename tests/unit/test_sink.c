/*
 * test_sink.c - batched transcript writes: the lines of many records in
 * few write(2)s, byte for byte what one write per record gave, and on a
 * failure an exact count of the lines that went out whole. Every format
 * and sink: no raw control, bidi or invisible character whatever a record
 * holds; a record over the line limit cut to one whole line that says so;
 * destinations that are not smtptap's own file refused, never waited on.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#ifdef HAVE_SYSTEMD
#include <systemd/sd-journal.h>
#endif

#include "escape.h"
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

/* ------------------------------------------------------------------------
 * No raw control in any format or sink (defence in depth)
 * ------------------------------------------------------------------------ */

/* Unicode's Bidi_Control and Default_Ignorable_Code_Point, C1, separators. */
static const uint32_t hidden_ranges[][2] = {
	{ 0x0080, 0x009f }, { 0x00ad, 0x00ad }, { 0x034f, 0x034f },
	{ 0x061c, 0x061c }, { 0x115f, 0x1160 }, { 0x17b4, 0x17b5 },
	{ 0x180b, 0x180f }, { 0x200b, 0x200f }, { 0x2028, 0x2029 },
	{ 0x202a, 0x202e }, { 0x2060, 0x206f }, { 0x3164, 0x3164 },
	{ 0xfe00, 0xfe0f }, { 0xfeff, 0xfeff }, { 0xffa0, 0xffa0 },
	{ 0xfff0, 0xfffb }, { 0x1bca0, 0x1bca3 }, { 0x1d173, 0x1d17a },
	{ 0xe0000, 0xe0fff },
};

static int
ref_hidden(uint32_t c)
{
	size_t i;

	if (c < 0x20 || c == 0x7f)
		return 1;
	for (i = 0; i < sizeof hidden_ranges / sizeof hidden_ranges[0]; i++)
		if (c >= hidden_ranges[i][0] && c <= hidden_ranges[i][1])
			return 1;
	return 0;
}

static size_t
utf8_encode(uint32_t c, unsigned char *out)
{
	if (c < 0x80) {
		out[0] = (unsigned char)c;
		return 1;
	}
	if (c < 0x800) {
		out[0] = (unsigned char)(0xc0 | c >> 6);
		out[1] = (unsigned char)(0x80 | (c & 0x3f));
		return 2;
	}
	if (c < 0x10000) {
		out[0] = (unsigned char)(0xe0 | c >> 12);
		out[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3f));
		out[2] = (unsigned char)(0x80 | (c & 0x3f));
		return 3;
	}
	out[0] = (unsigned char)(0xf0 | c >> 18);
	out[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3f));
	out[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3f));
	out[3] = (unsigned char)(0x80 | (c & 0x3f));
	return 4;
}

/* Decodes strict UTF-8 at p; 0 if invalid. */
static size_t
utf8_decode(const unsigned char *p, size_t n, uint32_t *cp)
{
	size_t len, i;
	uint32_t c;

	if (p[0] < 0x80) {
		*cp = p[0];
		return 1;
	}
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2, c = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3, c = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4, c = p[0] & 0x07;
	else
		return 0;
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (p[i] & 0x3f);
	}
	if ((len == 3 && c < 0x800) || (len == 4 && c < 0x10000) ||
	    (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
		return 0;
	*cp = c;
	return len;
}

/* Fails unless s is valid UTF-8 with no control, bidi or invisible. */
static void
assert_clean(const char *what, const char *s, size_t n, int colour)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, len;
	uint32_t c = 0;

	while (i < n) {
		/* Our own colours: ESC [ digits ; m. */
		if (colour && p[i] == 0x1b && i + 1 < n && p[i + 1] == '[') {
			for (i += 2; i < n && (isdigit(p[i]) || p[i] == ';'); i++)
				;
			assert_true(i < n && p[i] == 'm');
			i++;
			continue;
		}
		if ((len = utf8_decode(p + i, n - i, &c)) == 0)
			fail_msg("%s: invalid UTF-8 at %zu: %.*s", what, i,
			    (int)n, s);
		if (ref_hidden(c))
			fail_msg("%s: raw U+%04X at %zu in %.*s", what,
			    (unsigned)c, i, (int)(n > 300 ? 300 : n), s);
		i += len;
	}
}

/* A line: its newline at the end only, the rest clean. */
static void
assert_clean_line(const char *what, const char *s, size_t n, int colour)
{
	assert_true(n > 0 && s[n - 1] == '\n');
	assert_null(memchr(s, '\n', n - 1));
	assert_clean(what, s, n - 1, colour);
}

/* Every key and string of a JSON value, decoded, is clean. */
static void
assert_clean_json(json_t *v)
{
	const char *key;
	json_t *m;
	size_t i;

	switch (json_typeof(v)) {
	case JSON_OBJECT:
		json_object_foreach(v, key, m) {
			assert_clean("JSON key", key, strlen(key), 0);
			assert_clean_json(m);
		}
		break;
	case JSON_ARRAY:
		json_array_foreach(v, i, m)
			assert_clean_json(m);
		break;
	case JSON_STRING:
		assert_clean("JSON string", json_string_value(v),
		    json_string_length(v), 0);
		break;
	default:
		break;
	}
}

static json_t *
assert_json_line(const char *s, size_t n)
{
	json_error_t err;
	json_t *o;

	assert_clean_line("JSON line", s, n, 0);
	o = json_loadb(s, n, 0, &err);
	if (o == NULL)
		fail_msg("not JSON (%s): %.*s", err.text, (int)(n > 300 ? 300 :
		    n), s);
	assert_true(json_is_object(o));
	assert_clean_json(o);
	return o;
}

/* Every byte or character a record must never carry raw into a sink. */
struct bad {
	unsigned char	b[4];
	size_t		n;
};

static struct bad	*bads;
static size_t		 nbads;

static void
bad_add(const unsigned char *b, size_t n)
{
	bads = realloc(bads, (nbads + 1) * sizeof *bads);
	memcpy(bads[nbads].b, b, n);
	bads[nbads++].n = n;
}

static void
make_bads(void)
{
	unsigned char b[4];
	size_t i;
	uint32_t c;

	if (nbads > 0)
		return;
	for (c = 0; c < 0x20; c++) {
		b[0] = (unsigned char)c;
		bad_add(b, 1);
	}
	b[0] = 0x7f;
	bad_add(b, 1);
	for (c = 0x80; c <= 0xff; c++) {	/* raw: invalid UTF-8 alone */
		b[0] = (unsigned char)c;
		bad_add(b, 1);
	}
	for (i = 0; i < sizeof hidden_ranges / sizeof hidden_ranges[0]; i++)
		for (c = hidden_ranges[i][0]; c <= hidden_ranges[i][1]; c++)
			bad_add(b, utf8_encode(c, b));
}

/* A record with bad in its text, service, kind and every string field. */
struct badrec {
	struct txent	 e;
	struct tx_field	 f[3];
	char		 text[32], service[16], kind[16], str[16], key[16];
};

static void
make_badrec(struct badrec *r, const struct bad *bad)
{
	memset(r, 0, sizeof *r);
	/* memcpy, not printf: bad may be a NUL. */
	memcpy(r->text, "421 4.7.0 <", 11);
	memcpy(r->text + 11, bad->b, bad->n);
	memcpy(r->text + 11 + bad->n, "> refused", 10);
	snprintf(r->service, sizeof r->service, "svc%.*s", (int)bad->n,
	    (const char *)bad->b);
	snprintf(r->kind, sizeof r->kind, "failed%.*s", (int)bad->n,
	    (const char *)bad->b);
	snprintf(r->str, sizeof r->str, "why%.*s!", (int)bad->n,
	    (const char *)bad->b);
	snprintf(r->key, sizeof r->key, "k%.*s", (int)bad->n,
	    (const char *)bad->b);
	r->e.tv.tv_sec = 1764412800;
	r->e.session = 0x1a2b3c4d;
	r->e.dir = '*';
	r->e.code = 421;
	r->e.service = r->service;
	r->e.kind = r->kind;
	r->e.text = r->text;
	/* The text holds a NUL when bad is one: its length says so. */
	r->e.len = 11 + bad->n + 9;
	r->f[0] = (struct tx_field)TXF_STR("reason", r->str);
	r->f[1] = (struct tx_field)TXF_STR(r->key, r->str);
	r->f[2] = (struct tx_field)TXF_NUM("count", 1);
	r->e.fields = r->f;
	r->e.nfields = 3;
}

static void
test_formats_never_write_raw_controls(void **state)
{
	static const int flags[] = { 0, TXF_TIMESTAMP, TXF_COLOUR,
	    TXF_TIMESTAMP | TXF_COLOUR };
	struct badrec r;
	struct strbuf sb;
	json_t *o;
	size_t i, k;

	make_bads();
	strbuf_init(&sb, 1 << 20);
	for (i = 0; i < nbads; i++) {
		make_badrec(&r, &bads[i]);
		for (k = 0; k < sizeof flags / sizeof flags[0]; k++) {
			strbuf_reset(&sb);
			txformat_line(&r.e, TX_FORMAT_TEXT, flags[k], &sb);
			assert_clean_line("text line", sb.buf, sb.len,
			    flags[k] & TXF_COLOUR);
			/* Shown as "\xNN", not dropped. */
			assert_non_null(strstr(sb.buf, "<\\x"));
		}
		strbuf_reset(&sb);
		txformat_line(&r.e, TX_FORMAT_JSON, 0, &sb);
		o = assert_json_line(sb.buf, sb.len);
		assert_non_null(strstr(json_string_value(json_object_get(o,
		    "text")), "<\\x"));
		json_decref(o);
	}
	strbuf_free(&sb);
}

/* Escaped text and readable UTF-8 come out exactly as they went in. */
static void
test_formats_keep_escaped_text(void **state)
{
	const char *txt = "334 Contrase\xc3\xb1" "a: \\x1b[2J \\\\ caf\xc3\xa9";
	struct txent e;
	struct strbuf sb;
	json_t *o;

	memset(&e, 0, sizeof e);
	e.session = 5;
	e.dir = 'S';
	e.kind = "reply";
	e.code = 334;
	e.text = txt;
	e.len = strlen(txt);
	strbuf_init(&sb, 0);
	txformat_line(&e, TX_FORMAT_TEXT, 0, &sb);
	assert_string_equal(sb.buf, "00000005 S: 334 Contrase\xc3\xb1" "a: "
	    "\\x1b[2J \\\\ caf\xc3\xa9\n");
	strbuf_reset(&sb);
	txformat_line(&e, TX_FORMAT_JSON, 0, &sb);
	o = assert_json_line(sb.buf, sb.len);
	assert_string_equal(json_string_value(json_object_get(o, "text")),
	    txt);
	assert_null(json_object_get(o, "cut_bytes"));
	json_decref(o);
	strbuf_free(&sb);
}

/* syslog(3) and the journal, caught in the act. */
static struct strbuf	 sys_msgs;
static int		 sys_count;

void
openlog(const char *ident, int option, int facility)
{
	(void)ident;
	(void)option;
	(void)facility;
}

void
closelog(void)
{
}

void
syslog(int prio, const char *fmt, ...)
{
	va_list ap;

	(void)prio;
	va_start(ap, fmt);
	strbuf_vprintf(&sys_msgs, fmt, ap);
	va_end(ap);
	strbuf_addc(&sys_msgs, '\n');
	sys_count++;
}

/* One syslog message per record: clean, in the sink's format. */
static void
test_syslog_never_writes_raw_controls(void **state)
{
	enum tx_format fmts[] = { TX_FORMAT_TEXT, TX_FORMAT_JSON };
	struct badrec r;
	struct sink s;
	char *cause = NULL;
	size_t i, k;
	json_t *o;

	make_bads();
	for (k = 0; k < 2; k++) {
		memset(&s, 0, sizeof s);
		s.ops = &sink_syslog_ops;
		s.format = fmts[k];
		assert_int_equal(s.ops->open(&s, &cause), 0);
		for (i = 0; i < nbads; i++) {
			make_badrec(&r, &bads[i]);
			strbuf_init(&sys_msgs, 1 << 20);
			sys_count = 0;
			assert_int_equal(s.ops->write(&s, &r.e), 0);
			assert_int_equal(sys_count, 1);
			if (fmts[k] == TX_FORMAT_JSON) {
				o = assert_json_line(sys_msgs.buf, sys_msgs.len);
				json_decref(o);
			} else
				assert_clean_line("syslog", sys_msgs.buf,
				    sys_msgs.len, 0);
			strbuf_free(&sys_msgs);
		}
		s.ops->close(&s);
	}
}

#ifdef HAVE_SYSTEMD
static struct strbuf	 jr_fields[32];
static int		 jr_n;

int
sd_journal_sendv_with_location(const char *file, const char *line,
    const char *func, const struct iovec *iov, int n)
{
	int i;

	(void)file;
	(void)line;
	(void)func;
	assert_true(n <= 32);
	for (i = 0; i < n; i++) {
		strbuf_init(&jr_fields[i], 1 << 20);
		strbuf_add(&jr_fields[i], iov[i].iov_base, iov[i].iov_len);
	}
	jr_n = n;
	return 0;
}

static void
jr_free(void)
{
	int i;

	for (i = 0; i < jr_n; i++)
		strbuf_free(&jr_fields[i]);
	jr_n = 0;
}

/* Every journal field, MESSAGE and SMTPTAP_*, clean; the fields all there. */
static void
test_journal_never_writes_raw_controls(void **state)
{
	struct badrec r;
	struct sink s;
	size_t i;
	int k, reason = 0, message = 0;

	make_bads();
	memset(&s, 0, sizeof s);
	s.ops = &sink_journal_ops;
	for (i = 0; i < nbads; i++) {
		make_badrec(&r, &bads[i]);
		assert_int_equal(s.ops->write(&s, &r.e), 0);
		for (k = 0; k < jr_n; k++) {
			assert_clean("journal field", jr_fields[k].buf,
			    jr_fields[k].len, 0);
			reason += strncmp(jr_fields[k].buf,
			    "SMTPTAP_REASON=why\\x", 20) == 0;
			message += strncmp(jr_fields[k].buf, "MESSAGE=", 8) == 0;
		}
		jr_free();
	}
	/* All but the NUL, which a C string field cannot hold. */
	assert_int_equal(reason, (int)nbads - 1);
	assert_int_equal(message, (int)nbads);
}
#endif

/* ------------------------------------------------------------------------
 * Records over the line limit: one whole line that says it was cut
 * ------------------------------------------------------------------------ */

/* Escaped text of about n bytes, dense in units a cut must not split. */
static char *
make_units(size_t n, size_t *len)
{
	static const char *const units[] = { "\\x1b", "\xc3\xa9", "\\\\",
	    "ab", "\xe2\x82\xac", "\\r\\n", "\"q\"", "\xf0\x9f\x93\xa7", "z" };
	struct strbuf sb;
	char *out;
	size_t i;

	strbuf_init(&sb, n + 16);
	for (i = 0; sb.len < n; i++)
		strbuf_adds(&sb, units[i % (sizeof units / sizeof units[0])]);
	out = malloc(sb.len + 1);
	memcpy(out, sb.buf, sb.len + 1);
	*len = sb.len;
	strbuf_free(&sb);
	return out;
}

struct bigrec {
	struct txent	 e;
	struct tx_field	 f[4];
	char		*text, *san, *detail;
	size_t		 tlen;
};

static void
make_bigrec(struct bigrec *b, size_t textlen, size_t fieldlen)
{
	size_t n;

	memset(b, 0, sizeof *b);
	b->text = make_units(textlen, &b->tlen);
	b->san = make_units(fieldlen, &n);
	b->detail = make_units(fieldlen / 2, &n);
	b->e.tv.tv_sec = 1764412800;
	b->e.session = 0x0badf00d;
	b->e.dir = '*';
	b->e.kind = "certificate";
	b->e.text = b->text;
	b->e.len = b->tlen;
	b->f[0] = (struct tx_field)TXF_STR("san", b->san);
	b->f[1] = (struct tx_field)TXF_STR("detail", b->detail);
	b->f[2] = (struct tx_field)TXF_BOOL("presented", 1);
	b->f[3] = (struct tx_field)TXF_STR("subject", "CN=localhost");
	b->e.fields = b->f;
	b->e.nfields = 4;
}

static void
free_bigrec(struct bigrec *b)
{
	free(b->text);
	free(b->san);
	free(b->detail);
}

/* kept is a prefix of orig that ends between two units. */
static void
assert_unit_prefix(const char *orig, size_t olen, const char *kept,
    size_t klen)
{
	assert_true(klen <= olen);
	assert_memory_equal(orig, kept, klen);
	assert_int_equal(escape_cut(orig, olen, klen), klen);
}

/* A text line cut short: the kept text, then the mark with the right count. */
static void
assert_cut_text_line(const char *line, size_t n, const struct bigrec *b,
    size_t max)
{
	const char *shown, *mark;
	size_t left;
	char want[80];

	assert_true(n <= max);
	assert_clean_line("cut line", line, n, 0);
	shown = strstr(line, " * ") + 3;
	mark = strstr(shown, " [record cut, ");
	assert_non_null(mark);
	assert_unit_prefix(b->text, b->tlen, shown, (size_t)(mark - shown));
	left = b->tlen - (size_t)(mark - shown);
	snprintf(want, sizeof want, " [record cut, %zu bytes left out]\n", left);
	assert_int_equal((size_t)(line + n - mark), strlen(want));
	assert_memory_equal(mark, want, strlen(want));
}

/* A JSON line cut short: valid, cut_bytes right, strings unit prefixes. */
static void
assert_cut_json_line(const char *line, size_t n, const struct bigrec *b,
    size_t max)
{
	const char *shown, *mark, *san, *detail;
	size_t tkeep, skeep, dkeep, cut;
	json_t *o;

	assert_true(n <= max);
	o = assert_json_line(line, n);
	shown = json_string_value(json_object_get(o, "text"));
	san = json_string_value(json_object_get(o, "san"));
	detail = json_string_value(json_object_get(o, "detail"));
	assert_non_null(shown);
	assert_non_null(san);
	assert_non_null(detail);
	assert_true(json_is_true(json_object_get(o, "presented")));
	assert_string_equal(json_string_value(json_object_get(o, "subject")),
	    "CN=localhost");
	mark = strstr(shown, " [record cut, ");
	assert_non_null(mark);
	tkeep = (size_t)(mark - shown);
	skeep = strlen(san);
	dkeep = strlen(detail);
	assert_unit_prefix(b->text, b->tlen, shown, tkeep);
	assert_unit_prefix(b->san, strlen(b->san), san, skeep);
	assert_unit_prefix(b->detail, strlen(b->detail), detail, dkeep);
	cut = (b->tlen - tkeep) + (strlen(b->san) - skeep) +
	    (strlen(b->detail) - dkeep);
	assert_int_equal(json_integer_value(json_object_get(o, "cut_bytes")),
	    cut);
	json_decref(o);
}

/* A long record, a short one, a long one, a short one: four whole lines. */
static void
check_long_records(const char *got, size_t len, enum tx_format format,
    const struct bigrec *b, size_t max)
{
	struct strbuf want;
	const char *line = got, *nl;
	int k;

	make_records(1, &(uint32_t){ 0x0badf00d }, 1);
	strbuf_init(&want, 1 << 20);
	txformat_line(&rec[0], format, TXF_TIMESTAMP, &want);
	for (k = 0; k < 4; k++) {
		nl = memchr(line, '\n', len - (size_t)(line - got));
		assert_non_null(nl);
		if (k % 2 == 1) {
			assert_int_equal((size_t)(nl + 1 - line), want.len);
			assert_memory_equal(line, want.buf, want.len);
		} else if (format == TX_FORMAT_JSON)
			assert_cut_json_line(line, (size_t)(nl + 1 - line), b,
			    max);
		else
			assert_cut_text_line(line, (size_t)(nl + 1 - line), b,
			    max);
		line = nl + 1;
	}
	assert_int_equal((size_t)(line - got), len);
	strbuf_free(&want);
}

static void
test_long_records_cut_whole(void **state)
{
	enum tx_format fmts[] = { TX_FORMAT_TEXT, TX_FORMAT_JSON };
	char path[] = "/tmp/test_sink.XXXXXX", *got;
	const struct txent *four[4];
	struct bigrec b;
	size_t len, k;
	int fd;

	/* Text far over the limit, and fields that fill the JSON too. */
	make_bigrec(&b, 1024 * 1024, 300 * 1024);
	make_records(1, &(uint32_t){ 0x0badf00d }, 1);
	four[0] = four[2] = &b.e;
	four[1] = four[3] = &rec[0];
	for (k = 0; k < 2; k++) {
		assert_true((fd = mkstemp(path)) != -1);
		unlink(path);
		strcpy(path, "/tmp/test_sink.XXXXXX");
		assert_int_equal(sink_write_lines(fd, four, 4, fmts[k],
		    TXF_TIMESTAMP), 4);
		assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
		got = slurp_fd(fd, &len);
		make_records(1, &(uint32_t){ 0x0badf00d }, 1);
		check_long_records(got, len, fmts[k], &b, TXFORMAT_LINE_MAX);
		free(got);
		close(fd);
	}
	sink_lines_free();
	free_bigrec(&b);
}

/* Every length around the limit: a cut line is never over it. */
static void
test_cut_at_every_length(void **state)
{
	struct bigrec b;
	struct strbuf sb;
	size_t max;

	make_bigrec(&b, 3000, 2000);
	strbuf_init(&sb, 1 << 20);
	for (max = 1024; max < 9000; max += 7) {
		strbuf_reset(&sb);
		txformat_line_max(&b.e, TX_FORMAT_TEXT, TXF_TIMESTAMP, max, &sb);
		assert_true(sb.len <= max);
		if (sb.len < max - 64)
			assert_null(strstr(sb.buf, "[record cut"));
		if (strstr(sb.buf, "[record cut") != NULL)
			assert_cut_text_line(sb.buf, sb.len, &b, max);
		strbuf_reset(&sb);
		txformat_line_max(&b.e, TX_FORMAT_JSON, 0, max, &sb);
		assert_true(sb.len <= max);
		if (strstr(sb.buf, "[record cut") != NULL)
			assert_cut_json_line(sb.buf, sb.len, &b, max);
		else
			json_decref(assert_json_line(sb.buf, sb.len));
	}
	strbuf_free(&sb);
	free_bigrec(&b);
}

/* The file (stdout, stderr) and dir: sinks keep the next record whole. */
static void
test_long_records_through_sinks(void **state)
{
	char tmpl[] = "/tmp/test_sink_long.XXXXXX", path[128], name[64], *got;
	enum tx_format fmts[] = { TX_FORMAT_TEXT, TX_FORMAT_JSON };
	const struct txent *four[4];
	struct bigrec b;
	struct sink s;
	char *dir, *cause = NULL;
	size_t len, k;
	int dirfd, fd;

	make_bigrec(&b, 600 * 1024, 200 * 1024);
	assert_non_null(dir = mkdtemp(tmpl));
	dirfd = open(dir, O_RDONLY | O_DIRECTORY);
	for (k = 0; k < 2; k++) {
		make_records(1, &(uint32_t){ 0x0badf00d }, 1);
		four[0] = four[2] = &b.e;
		four[1] = four[3] = &rec[0];

		/* A file by name. */
		snprintf(path, sizeof path, "%s/file.log", dir);
		memset(&s, 0, sizeof s);
		s.ops = &sink_file_ops;
		s.path = path;
		s.format = fmts[k];
		assert_int_equal(s.ops->open(&s, &cause), 0);
		assert_int_equal(s.ops->write_batch(&s, four, 4), 4);
		s.ops->close(&s);
		got = slurp(dirfd, "file.log", &len);
		check_long_records(got, len, fmts[k], &b, TXFORMAT_LINE_MAX);
		free(got);
		unlinkat(dirfd, "file.log", 0);

		/* A descriptor, as stdout and stderr are. */
		assert_true((fd = openat(dirfd, "fd.log", O_RDWR | O_CREAT,
		    0600)) != -1);
		memset(&s, 0, sizeof s);
		s.ops = &sink_file_ops;
		s.fd = fd;
		s.format = fmts[k];
		assert_int_equal(s.ops->open(&s, &cause), 0);
		assert_int_equal(s.ops->write_batch(&s, four, 4), 4);
		s.ops->close(&s);
		close(fd);
		got = slurp(dirfd, "fd.log", &len);
		check_long_records(got, len, fmts[k], &b, TXFORMAT_LINE_MAX);
		free(got);
		unlinkat(dirfd, "fd.log", 0);

		/* dir: the session's own file. */
		memset(&s, 0, sizeof s);
		s.ops = &sink_dir_ops;
		s.path = dir;
		s.format = fmts[k];
		assert_int_equal(s.ops->open(&s, &cause), 0);
		assert_int_equal(s.ops->write_batch(&s, four, 4), 4);
		s.ops->end(&s, 0x0badf00d);
		s.ops->close(&s);
		session_file(0x0badf00d, name, sizeof name);
		got = slurp(dirfd, name, &len);
		check_long_records(got, len, fmts[k], &b, TXFORMAT_LINE_MAX);
		free(got);
		unlinkat(dirfd, name, 0);
		unlinkat(dirfd, "smtptap.log", 0);
	}
	close(dirfd);
	assert_int_equal(rmdir(dir), 0);
	free_bigrec(&b);
}

/* syslog's messages are shorter; a cut one is still whole and valid. */
static void
test_long_record_to_syslog(void **state)
{
	enum tx_format fmts[] = { TX_FORMAT_TEXT, TX_FORMAT_JSON };
	struct bigrec b;
	struct sink s;
	char *cause = NULL, *nl;
	size_t k;

	make_bigrec(&b, 100 * 1024, 50 * 1024);
	for (k = 0; k < 2; k++) {
		memset(&s, 0, sizeof s);
		s.ops = &sink_syslog_ops;
		s.format = fmts[k];
		assert_int_equal(s.ops->open(&s, &cause), 0);
		strbuf_init(&sys_msgs, 1 << 20);
		sys_count = 0;
		assert_int_equal(s.ops->write(&s, &b.e), 0);
		assert_int_equal(sys_count, 1);
		assert_true(sys_msgs.len <= 8 * 1024);
		nl = memchr(sys_msgs.buf, '\n', sys_msgs.len);
		assert_true(nl == sys_msgs.buf + sys_msgs.len - 1);
		/* The text form without the time: "0badf00d * ...". */
		if (fmts[k] == TX_FORMAT_JSON)
			assert_cut_json_line(sys_msgs.buf, sys_msgs.len, &b,
			    8 * 1024);
		else
			assert_cut_text_line(sys_msgs.buf, sys_msgs.len, &b,
			    8 * 1024);
		strbuf_free(&sys_msgs);
		s.ops->close(&s);
	}
	free_bigrec(&b);
}

/* ------------------------------------------------------------------------
 * Destinations that are not smtptap's own file
 * ------------------------------------------------------------------------ */

static void
on_alarm(int sig)
{
	(void)sig;
	fail_msg("blocked: open(2) waited");
}

/* Refused at once, the cause naming the path and saying why in words. */
static void
assert_refused(int dirfd, const char *path, const char *words)
{
	char *cause = NULL;

	signal(SIGALRM, on_alarm);
	alarm(5);
	if (sink_open_file(dirfd, path, path, "transcript", &cause) != -1)
		fail_msg("%s was accepted", path);
	alarm(0);
	assert_non_null(cause);
	if (strstr(cause, path) == NULL || strstr(cause, words) == NULL)
		fail_msg("cause \"%s\" lacks the path or \"%s\"", cause, words);
	free(cause);
}

static void
test_open_refuses_what_is_not_ours(void **state)
{
	char tmpl[] = "/tmp/test_sink_dest.XXXXXX", path[100], other[100], *dir;
	struct sockaddr_un sun;
	struct stat st;
	char *cause = NULL;
	int fd, rd, sock;

	assert_non_null(dir = mkdtemp(tmpl));

	/* A FIFO nobody reads, and one somebody does. */
	snprintf(path, sizeof path, "%s/fifo", dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	assert_refused(AT_FDCWD, path, "FIFO");
	assert_true((rd = open(path, O_RDONLY | O_NONBLOCK)) != -1);
	assert_refused(AT_FDCWD, path, "FIFO");
	close(rd);
	unlink(path);

	/* A socket. */
	snprintf(path, sizeof path, "%s/sock", dir);
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	assert_true(strlen(path) < sizeof sun.sun_path);
	memcpy(sun.sun_path, path, strlen(path) + 1);
	assert_true((sock = socket(AF_UNIX, SOCK_DGRAM, 0)) != -1);
	assert_int_equal(bind(sock, (struct sockaddr *)&sun, sizeof sun), 0);
	assert_refused(AT_FDCWD, path, "socket");
	close(sock);
	unlink(path);

	/* A directory. */
	assert_refused(AT_FDCWD, dir, "directory");

	/* Another user's file, 0600: named, and left as it was. */
	snprintf(path, sizeof path, "%s/theirs.log", dir);
	assert_true((fd = open(path, O_WRONLY | O_CREAT, 0600)) != -1);
	close(fd);
	assert_int_equal(chown(path, 65534, 65534), 0);
	assert_refused(AT_FDCWD, path, "uid 65534");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 0);
	unlink(path);

	/* Ours, but with a second name. */
	snprintf(path, sizeof path, "%s/ours.log", dir);
	assert_true((fd = open(path, O_WRONLY | O_CREAT, 0600)) != -1);
	close(fd);
	snprintf(other, sizeof other, "%s/other-name", dir);
	assert_int_equal(link(path, other), 0);
	assert_refused(AT_FDCWD, path, "2 hard links");
	assert_refused(AT_FDCWD, other, "2 hard links");
	unlink(other);

	/* Ours alone: accepted, as are the character devices. */
	assert_true((fd = sink_open_file(AT_FDCWD, path, path, "transcript",
	    &cause)) != -1);
	close(fd);
	unlink(path);
	assert_true((fd = sink_open_file(AT_FDCWD, "/dev/null", "/dev/null",
	    "transcript", &cause)) != -1);
	close(fd);
	assert_int_equal(rmdir(dir), 0);
}

/* A thing planted under a session's file name costs that session only. */
static void
test_dir_refuses_planted_session_files(void **state)
{
	uint32_t sessions[] = { 0x31313131, 0x32323232, 0x33333333 };
	char tmpl[] = "/tmp/test_sink_plant.XXXXXX", name[64], *dir, *got;
	struct sink s;
	struct stat st;
	char *cause = NULL;
	size_t len;
	int dirfd, fd;

	make_records(3, sessions, 3);
	assert_non_null(dir = mkdtemp(tmpl));
	dirfd = open(dir, O_RDONLY | O_DIRECTORY);
	/* A FIFO nobody reads, and another user's file. */
	session_file(sessions[0], name, sizeof name);
	assert_int_equal(mkfifoat(dirfd, name, 0600), 0);
	session_file(sessions[1], name, sizeof name);
	assert_true((fd = openat(dirfd, name, O_WRONLY | O_CREAT, 0600)) != -1);
	close(fd);
	assert_int_equal(fchownat(dirfd, name, 65534, 65534, 0), 0);

	memset(&s, 0, sizeof s);
	s.ops = &sink_dir_ops;
	s.path = dir;
	s.format = TX_FORMAT_TEXT;
	assert_int_equal(s.ops->open(&s, &cause), 0);
	signal(SIGALRM, on_alarm);
	alarm(5);
	assert_int_equal(s.ops->write_batch(&s, ptr, 1), 0);
	assert_int_equal(s.ops->write_batch(&s, ptr + 1, 1), 0);
	assert_int_equal(s.ops->write_batch(&s, ptr + 2, 1), 1);
	alarm(0);
	s.ops->close(&s);

	assert_int_equal(fstatat(dirfd, name, &st, 0), 0);
	assert_int_equal(st.st_size, 0);
	session_file(sessions[2], name, sizeof name);
	got = slurp(dirfd, name, &len);
	assert_non_null(strstr(got, "record 2 of the batch"));
	free(got);
	close(dirfd);
	assert_int_equal(system("rm -rf /tmp/test_sink_plant.*"), 0);
}

/* Start-up and reopen: smtptap.log, or the file, planted. */
static void
test_planted_at_open_and_reopen(void **state)
{
	char tmpl[] = "/tmp/test_sink_reopen.XXXXXX", path[128], old[140];
	char *dir, *cause = NULL;
	struct sink s, d;
	int dirfd, fd;

	assert_non_null(dir = mkdtemp(tmpl));
	dirfd = open(dir, O_RDONLY | O_DIRECTORY);

	/* dir: with a FIFO for smtptap.log: refused, at once. */
	assert_int_equal(mkfifoat(dirfd, "smtptap.log", 0600), 0);
	memset(&d, 0, sizeof d);
	d.ops = &sink_dir_ops;
	d.path = dir;
	signal(SIGALRM, on_alarm);
	alarm(5);
	assert_int_equal(d.ops->open(&d, &cause), -1);
	alarm(0);
	assert_non_null(strstr(cause, "smtptap.log"));
	assert_non_null(strstr(cause, "FIFO"));
	free(cause);
	cause = NULL;
	unlinkat(dirfd, "smtptap.log", 0);

	/* A file sink whose path is replaced by a FIFO, then a file of nobody's. */
	snprintf(path, sizeof path, "%s/t.log", dir);
	memset(&s, 0, sizeof s);
	s.ops = &sink_file_ops;
	s.path = path;
	assert_int_equal(s.ops->open(&s, &cause), 0);
	fd = s.fd;
	snprintf(old, sizeof old, "%s.1", path);
	assert_int_equal(rename(path, old), 0);
	assert_int_equal(mkfifo(path, 0600), 0);
	alarm(5);
	assert_int_equal(s.ops->reopen(&s, &cause), -1);
	alarm(0);
	assert_non_null(strstr(cause, "FIFO"));
	free(cause);
	cause = NULL;
	assert_int_equal(s.fd, fd);		/* still the old file */
	unlink(path);
	assert_true((fd = open(path, O_WRONLY | O_CREAT, 0600)) != -1);
	close(fd);
	assert_int_equal(chown(path, 65534, 65534), 0);
	assert_int_equal(s.ops->reopen(&s, &cause), -1);
	assert_non_null(strstr(cause, "uid 65534"));
	free(cause);
	s.ops->close(&s);
	close(dirfd);
	assert_int_equal(system("rm -rf /tmp/test_sink_reopen.*"), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lines_to_file),
		cmocka_unit_test(test_partial_write_counts_whole_lines),
		cmocka_unit_test(test_dir_sink_runs_by_session),
		cmocka_unit_test(test_formats_never_write_raw_controls),
		cmocka_unit_test(test_formats_keep_escaped_text),
		cmocka_unit_test(test_syslog_never_writes_raw_controls),
#ifdef HAVE_SYSTEMD
		cmocka_unit_test(test_journal_never_writes_raw_controls),
#endif
		cmocka_unit_test(test_long_records_cut_whole),
		cmocka_unit_test(test_cut_at_every_length),
		cmocka_unit_test(test_long_records_through_sinks),
		cmocka_unit_test(test_long_record_to_syslog),
		cmocka_unit_test(test_open_refuses_what_is_not_ours),
		cmocka_unit_test(test_dir_refuses_planted_session_files),
		cmocka_unit_test(test_planted_at_open_and_reopen),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
