/*
 * fuzz_smtp.c - libFuzzer target for the transcript parser (smtp.c).
 *
 * Input: byte 0 picks how each event is cut into pieces, byte 1 seeds the
 * cutting, then events: a type byte, and for data a length byte and that
 * many bytes. Types (mod 10): 0-2 client bytes, 3-5 server bytes, 6 an
 * "AUTH PLAIN" line whose password is the canary, 7 an "AUTH XOAUTH2" line
 * whose token is the canary, 8 a line of smtptap's pre-TLS EHLO reply,
 * 9 the end of one direction.
 *
 * Checked here: every record is one line of printable, valid UTF-8 text of
 * bounded length; the canary appears in no record and no verdict, in no
 * form (raw, base64 at each alignment, hex); and feeding every event whole
 * gives the same records and verdict as feeding it in pieces.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "escape.h"
#include "smtp.h"
#include "strbuf.h"

#define CANARY		"Kq7Zp-v0Tx.9mWr"
#define REC_MAX		(70 * 1024)	/* the parser's strbuf cap and more */

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

enum ev_type {
	EV_CLIENT,
	EV_SERVER,
	EV_PRETLS,
	EV_EOF_CLIENT,
	EV_EOF_SERVER,
};

struct ev {
	enum ev_type	 type;
	const uint8_t	*data;
	size_t		 len;
};

struct script {
	struct ev	*ev;
	size_t		 n;
	uint8_t		*own;		/* the injected AUTH lines */
	size_t		 ownlen;
	/* The fuzzer's own bytes per stream: client, server, pre-TLS. */
	struct strbuf	 noise[3];
};

static void
fuzz_fail(const char *what, const char *text)
{
	fprintf(stderr, "fuzz_smtp: %s\n%s\n", what, text != NULL ? text : "");
	abort();
}

/* Valid UTF-8, no control byte: what escape.c promises. */
static void
fuzz_check_text(const char *t, size_t len)
{
	const unsigned char *p = (const unsigned char *)t;
	size_t i = 0, k, n;

	if (strlen(t) != len)
		fuzz_fail("record length differs from strlen", t);
	if (len > REC_MAX)
		fuzz_fail("record too long", NULL);
	while (i < len) {
		if (p[i] < 0x20 || p[i] == 0x7f)
			fuzz_fail("control byte in record", t);
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		if (p[i] >= 0xc2 && p[i] <= 0xdf)
			n = 2;
		else if (p[i] >= 0xe0 && p[i] <= 0xef)
			n = 3;
		else if (p[i] >= 0xf0 && p[i] <= 0xf4)
			n = 4;
		else
			fuzz_fail("invalid UTF-8 lead byte in record", t);
		if (i + n > len)
			fuzz_fail("truncated UTF-8 in record", t);
		for (k = 1; k < n; k++)
			if ((p[i + k] & 0xc0) != 0x80)
				fuzz_fail("invalid UTF-8 in record", t);
		i += n;
	}
}

static void
fuzz_rec(const struct smtp_rec *r, void *arg)
{
	struct strbuf *log = arg;

	fuzz_check_text(r->text, r->len);
	strbuf_printf(log, "%d %d %d %s\n", (int)r->dir, (int)r->kind, r->code,
	    r->text);
}

/* Tiny PRNG: the cutting must be reproducible from the input alone. */
static uint32_t
fuzz_rnd(uint32_t *s)
{
	*s = *s * 1103515245u + 12345u;
	return *s >> 8;
}

static void
fuzz_feed(struct smtp *p, const struct ev *e, int mode, uint32_t *seed)
{
	size_t off, n;

	switch (e->type) {
	case EV_EOF_CLIENT:
		smtp_eof(p, SMTP_CLIENT);
		return;
	case EV_EOF_SERVER:
		smtp_eof(p, SMTP_SERVER);
		return;
	case EV_PRETLS:
		smtp_pretls_caps(p, (const char *)e->data, e->len);
		return;
	default:
		break;
	}
	for (off = 0; off < e->len; off += n) {
		n = e->len - off;
		switch (mode) {
		case 0:
			break;
		case 1:
			n = 1;
			break;
		case 2:
			n = 1 + fuzz_rnd(seed) % 16;
			break;
		default:
			if (off == 0)
				n = fuzz_rnd(seed) % (e->len + 1);
			if (n == 0)
				n = e->len;
			break;
		}
		if (n > e->len - off)
			n = e->len - off;
		smtp_feed(p, e->type == EV_CLIENT ? SMTP_CLIENT : SMTP_SERVER,
		    e->data + off, n);
	}
}

/* Records and verdict for one way of cutting the events. */
static char *
fuzz_run(const struct script *s, int mode, uint32_t seed)
{
	struct strbuf log;
	struct smtp *p;
	size_t i;
	char *out;

	strbuf_init(&log, 64 * 1024 * 1024);
	p = smtp_new(fuzz_rec, &log);
	for (i = 0; i < s->n; i++)
		fuzz_feed(p, &s->ev[i], mode, &seed);
	smtp_eof(p, SMTP_CLIENT);
	smtp_eof(p, SMTP_SERVER);
	{
		struct strbuf v;

		strbuf_init(&v, 0);
		smtp_verdict(p, &v);
		fuzz_check_text(strbuf_str(&v), v.len);
		strbuf_printf(&log, "verdict: %s\n", strbuf_str(&v));
		strbuf_free(&v);
	}
	smtp_free(p);
	if (log.dropped > 0)
		fuzz_fail("record log over 64 MiB", NULL);
	out = strdup(strbuf_str(&log));
	strbuf_free(&log);
	return out;
}

/* The canary's forms: raw, base64 at three alignments (inner part), hex. */
static int
fuzz_has_canary(const char *t, size_t len)
{
	char pre[64], hex[64], *b;
	size_t k, i, n = strlen(CANARY), blen;
	int found = 0;

	if (memmem(t, len, CANARY, n) != NULL)
		return 1;
	for (k = 0; k < 3 && !found; k++) {
		memset(pre, 'A', k);
		memcpy(pre + k, CANARY, n);
		b = b64_encode((const unsigned char *)pre, k + n);
		blen = strlen(b);
		/* Skip the characters that mix in the neighbours' bits. */
		if (memmem(t, len, b + 4, blen - 8) != NULL)
			found = 1;
		b64_free((unsigned char *)b, blen);
	}
	for (i = 0; i < n; i++)
		snprintf(hex + 2 * i, 3, "%02x", (unsigned char)CANARY[i]);
	if (memmem(t, len, hex, 2 * n) != NULL)
		found = 1;
	return found;
}

/* An AUTH line carrying the canary, with a suffix that sasl diagnoses. */
static void
fuzz_inject(struct script *s, int xoauth, uint8_t variant, int line_start)
{
	static const char *const suffix[] = { "", "\n", " ", "\r\n", "\xc3" };
	char blob[128], *b, line[256];
	size_t n;
	int len;

	if (xoauth)
		n = (size_t)snprintf(blob, sizeof blob, "user=u@x\1auth=Bearer "
		    "%s%s\1\1", CANARY, suffix[variant % 5]);
	else {
		n = (size_t)snprintf(blob + 1, sizeof blob - 1, "u@x%c%s%s", 0,
		    CANARY, suffix[variant % 5]) + 1;
		blob[0] = '\0';
	}
	b = b64_encode((const unsigned char *)blob, n);
	len = snprintf(line, sizeof line, "%sAUTH %s %s\r\n",
	    line_start ? "" : "\r\n", xoauth ? "XOAUTH2" : "PLAIN", b);
	b64_free((unsigned char *)b, strlen(b));
	memcpy(s->own + s->ownlen, line, (size_t)len);
	s->ev[s->n].type = EV_CLIENT;
	s->ev[s->n].data = s->own + s->ownlen;
	s->ev[s->n].len = (size_t)len;
	s->ownlen += (size_t)len;
	s->n++;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct script s;
	size_t i = 2, len;
	uint8_t t, last_client = '\n';
	int mode, canary = 0, chunking = 0, spelled = 0, k;
	uint32_t seed;
	char *whole, *cut;

	if (size < 2)
		return 0;
	mode = 1 + data[0] % 3;
	seed = data[1];
	memset(&s, 0, sizeof s);
	s.ev = calloc(size + 1, sizeof *s.ev);
	s.own = malloc((size + 1) * 256);
	for (k = 0; k < 3; k++)
		strbuf_init(&s.noise[k], 64 * 1024 * 1024);
	while (i < size) {
		t = data[i++] % 10;
		switch (t) {
		case 6:
		case 7:
			fuzz_inject(&s, t == 7, i < size ? data[i] : 0,
			    last_client == '\n');
			i += i < size;
			last_client = '\n';
			canary = 1;
			/* Keep the noise apart: the line is not the fuzzer's. */
			strbuf_addc(&s.noise[0], '\n');
			continue;
		case 9:
			s.ev[s.n].type = i < size && data[i] % 2 ?
			    EV_EOF_SERVER : EV_EOF_CLIENT;
			s.n++;
			i += i < size;
			continue;
		default:
			break;
		}
		if (i >= size)
			break;
		len = data[i++];
		if (len > size - i)
			len = size - i;
		s.ev[s.n].type = t < 3 ? EV_CLIENT : t < 6 ? EV_SERVER :
		    EV_PRETLS;
		s.ev[s.n].data = data + i;
		s.ev[s.n].len = len;
		if (t < 3 && len > 0)
			last_client = data[i + len - 1];
		/* A line cannot span two streams: keep each on its own. */
		strbuf_add(&s.noise[t < 3 ? 0 : t < 6 ? 1 : 2], data + i, len);
		if (t >= 6)
			strbuf_addc(&s.noise[2], '\n');
		s.n++;
		i += len;
	}
	/*
	 * Inside a BDAT chunk the parser counts octets, so a chunk may end
	 * in the middle of an injected line and leave the rest to be read
	 * as a command, as the server itself would: no canary promise then.
	 */
	for (i = 0; i + 4 <= s.noise[0].len && !chunking; i++)
		if ((s.noise[0].buf[i] | 0x20) == 'b' &&
		    (s.noise[0].buf[i + 1] | 0x20) == 'd' &&
		    (s.noise[0].buf[i + 2] | 0x20) == 'a' &&
		    (s.noise[0].buf[i + 3] | 0x20) == 't')
			chunking = 1;
	/*
	 * The fuzzer may spell the canary itself (it sees our memmem), also
	 * through the escaping: "\x14" + "b71375..." reads as the hex form.
	 */
	for (k = 0; k < 3; k++) {
		struct strbuf esc;

		if (fuzz_has_canary(strbuf_str(&s.noise[k]), s.noise[k].len))
			spelled = 1;
		strbuf_init(&esc, 1 << 20);
		escape_append(&esc, strbuf_str(&s.noise[k]), s.noise[k].len);
		if (fuzz_has_canary(strbuf_str(&esc), esc.len))
			spelled = 1;
		strbuf_free(&esc);
	}

	whole = fuzz_run(&s, 0, seed);
	cut = fuzz_run(&s, mode, seed);
	if (strcmp(whole, cut) != 0) {
		fprintf(stderr, "fuzz_smtp: segmentation mode %d changed the "
		    "records\n--- whole:\n%s\n--- cut:\n%s\n", mode, whole, cut);
		abort();
	}
	if (canary && !chunking && !spelled &&
	    fuzz_has_canary(whole, strlen(whole)))
		fuzz_fail("canary in the records", whole);
	free(whole);
	free(cut);
	for (k = 0; k < 3; k++)
		strbuf_free(&s.noise[k]);
	free(s.own);
	free(s.ev);
	return 0;
}
