/*
 * sasl.c - show what an SMTP AUTH exchange says without showing a secret.
 *
 * Each mechanism is a row in sasl_mechs[]: a handler for decoded client
 * payloads and, optionally, one for decoded server challenges. A mechanism
 * not in the table is opaque: its client payloads are reduced to a length.
 */
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "escape.h"
#include "sasl.h"
#include "strbuf.h"
#include "xmalloc.h"

/* Keep the escaped user name short enough for struct smtp_stats. */
#define SASL_USER_MAX	255
#define SASL_USER_IN	60

struct sasl_mechdef {
	const char	*name;
	/* A decoded client payload; round counts earlier client payloads. */
	void		(*client)(struct sasl *, const unsigned char *, size_t,
			    struct strbuf *);
	/* A decoded server challenge, already shown; may steer the next round. */
	void		(*server)(struct sasl *, const unsigned char *, size_t);
};

struct sasl {
	const struct sasl_mechdef *def;
	char		 mech[32];
	unsigned int	 round;		/* client payloads seen */
	int		 expect_pass;	/* the server asked for a password */
	int		 done;		/* cancelled: everything after is masked */
	int		 public;	/* last client line held no secret */
	struct strbuf	 user;
};

static void	sasl_plain_client(struct sasl *, const unsigned char *, size_t,
		    struct strbuf *);
static void	sasl_login_client(struct sasl *, const unsigned char *, size_t,
		    struct strbuf *);
static void	sasl_login_server(struct sasl *, const unsigned char *, size_t);
static void	sasl_opaque_client(struct sasl *, const unsigned char *, size_t,
		    struct strbuf *);

static const struct sasl_mechdef sasl_mechs[] = {
	{ "PLAIN", sasl_plain_client, NULL },
	{ "LOGIN", sasl_login_client, sasl_login_server },
};

static const struct sasl_mechdef sasl_opaque = {
	NULL, sasl_opaque_client, NULL
};

static int
sasl_upper(int c)
{
	return c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c;
}

static int
sasl_name_eq(const char *p, size_t n, const char *name)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (name[i] == '\0' || sasl_upper((unsigned char)p[i]) != name[i])
			return 0;
	return name[n] == '\0';
}

struct sasl *
sasl_new(const char *mech, size_t mechlen)
{
	struct sasl *s = xcalloc(1, sizeof *s);
	size_t i, n;
	int c;

	strbuf_init(&s->user, SASL_USER_MAX);
	s->def = &sasl_opaque;
	for (i = 0; i < sizeof sasl_mechs / sizeof sasl_mechs[0]; i++)
		if (sasl_name_eq(mech, mechlen, sasl_mechs[i].name))
			s->def = &sasl_mechs[i];
	/* RFC 4422 names are [A-Z0-9-_]; anything else shows as '?'. */
	n = mechlen < sizeof s->mech - 1 ? mechlen : sizeof s->mech - 1;
	for (i = 0; i < n; i++) {
		c = sasl_upper((unsigned char)mech[i]);
		if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_'))
			c = '?';
		s->mech[i] = (char)c;
	}
	s->mech[n] = '\0';
	return s;
}

const char *
sasl_mech(const struct sasl *s)
{
	return s->mech;
}

const char *
sasl_user(const struct sasl *s)
{
	return strbuf_str(&s->user);
}

int
sasl_last_public(const struct sasl *s)
{
	return s->public;
}

void
sasl_free(struct sasl *s)
{
	if (s == NULL)
		return;
	strbuf_free(&s->user);
	explicit_bzero(s, sizeof *s);
	free(s);
}

/* Escape, and make '"' unambiguous inside a quoted string. */
static void
sasl_quote_append(struct strbuf *out, const unsigned char *p, size_t n)
{
	const unsigned char *q;

	while (n > 0 && (q = memchr(p, '"', n)) != NULL) {
		escape_append(out, p, (size_t)(q - p));
		strbuf_add(out, "\\\"", 2);
		n -= (size_t)(q - p) + 1;
		p = q + 1;
	}
	escape_append(out, p, n);
}

static void
sasl_quote(struct strbuf *out, const unsigned char *p, size_t n)
{
	strbuf_addc(out, '"');
	sasl_quote_append(out, p, n);
	strbuf_addc(out, '"');
}

static void
sasl_set_user(struct sasl *s, const unsigned char *p, size_t n)
{
	strbuf_reset(&s->user);
	if (n > SASL_USER_IN) {
		sasl_quote_append(&s->user, p, SASL_USER_IN);
		strbuf_printf(&s->user, " [+%zu bytes]", n - SASL_USER_IN);
	} else
		sasl_quote_append(&s->user, p, n);
}

static const char *
sasl_wsp_name(unsigned char c)
{
	switch (c) {
	case ' ':
		return "space (0x20)";
	case '\t':
		return "tab (0x09)";
	case '\r':
		return "CR (0x0d)";
	case '\n':
		return "LF (0x0a)";
	}
	return NULL;
}

/*
 * "<masked, N bytes>" plus remarks that help debug a failing login without
 * revealing content: stray white space at either end, NUL, non-ASCII.
 */
static void
sasl_mask(struct strbuf *out, const unsigned char *p, size_t n)
{
	const char *w;
	size_t i;
	int nul = 0, high = 0;

	strbuf_printf(out, "<masked, %zu bytes", n);
	if (n == 0)
		strbuf_adds(out, ", empty");
	else {
		if ((w = sasl_wsp_name(p[0])) != NULL)
			strbuf_printf(out, ", starts with %s", w);
		if ((w = sasl_wsp_name(p[n - 1])) != NULL)
			strbuf_printf(out, ", ends with %s", w);
	}
	for (i = 0; i < n; i++) {
		if (p[i] == '\0')
			nul = 1;
		else if (p[i] >= 0x80)
			high = 1;
	}
	if (nul)
		strbuf_adds(out, ", contains NUL");
	if (high)
		strbuf_adds(out, ", non-ASCII");
	strbuf_addc(out, '>');
}

/* RFC 4616: [authzid] NUL authcid NUL passwd. */
static void
sasl_plain_client(struct sasl *s, const unsigned char *p, size_t n,
    struct strbuf *out)
{
	const unsigned char *nul[2];
	size_t i, count = 0;

	if (s->round > 0) {
		sasl_mask(out, p, n);
		return;
	}
	for (i = 0; i < n; i++)
		if (p[i] == '\0') {
			if (count < 2)
				nul[count] = p + i;
			count++;
		}
	if (count != 2) {
		/* No guessing which part would have been the password. */
		strbuf_printf(out, "malformed PLAIN (%zu NUL separators, "
		    "expected 2): ", count);
		sasl_mask(out, p, n);
		return;
	}
	strbuf_adds(out, "authzid=");
	sasl_quote(out, p, (size_t)(nul[0] - p));
	strbuf_adds(out, " user=");
	sasl_quote(out, nul[0] + 1, (size_t)(nul[1] - nul[0] - 1));
	sasl_set_user(s, nul[0] + 1, (size_t)(nul[1] - nul[0] - 1));
	strbuf_adds(out, " password=");
	sasl_mask(out, nul[1] + 1, n - (size_t)(nul[1] + 1 - p));
}

/* draft-murchison-sasl-login: user name, then password, then nothing. */
static void
sasl_login_client(struct sasl *s, const unsigned char *p, size_t n,
    struct strbuf *out)
{
	if (s->round == 0 && !s->expect_pass) {
		strbuf_adds(out, "user=");
		sasl_quote(out, p, n);
		sasl_set_user(s, p, n);
		s->public = 1;
	} else if (s->round <= 1) {
		strbuf_adds(out, "password=");
		sasl_mask(out, p, n);
	} else
		sasl_mask(out, p, n);
}

/* Case-insensitive search for "pass", length-based (challenges may hold NUL). */
static void
sasl_login_server(struct sasl *s, const unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i + 4 <= n; i++)
		if (sasl_upper(p[i]) == 'P' && sasl_upper(p[i + 1]) == 'A' &&
		    sasl_upper(p[i + 2]) == 'S' && sasl_upper(p[i + 3]) == 'S') {
			s->expect_pass = 1;
			return;
		}
}

static void
sasl_opaque_client(struct sasl *s, const unsigned char *p, size_t n,
    struct strbuf *out)
{
	(void)s;
	(void)p;
	strbuf_printf(out, "<masked, %zu bytes>", n);
}

/* Describe bad base64 by offset only: the bytes may be a secret sent raw. */
static void
sasl_undecodable(struct strbuf *out, const char *line, size_t len)
{
	enum b64_err err;
	size_t off;

	err = b64_check(line, len, &off);
	strbuf_adds(out, "undecodable: invalid base64");
	switch (err) {
	case B64_BADCHAR:
		strbuf_printf(out, " character at offset %zu", off);
		break;
	case B64_BADPAD:
		strbuf_printf(out, " padding at offset %zu", off);
		break;
	case B64_BADLEN:
		strbuf_printf(out, " length %zu, not a multiple of 4", len);
		break;
	case B64_TOOLONG:
	case B64_OK:
		break;
	}
	strbuf_printf(out, "; <masked, %zu bytes>", len);
}

void
sasl_client(struct sasl *s, const char *line, size_t len, int initial,
    struct strbuf *out)
{
	unsigned char *dec;
	size_t declen;

	s->public = 0;
	if (!initial && len == 1 && line[0] == '*') {
		strbuf_adds(out, "cancelled (*)");
		s->done = 1;
		s->public = 1;
		return;
	}
	if (s->done) {
		strbuf_printf(out, "<masked, %zu bytes>", len);
		return;
	}
	if (len > SASL_LINE_MAX) {
		sasl_client_long(s, len, initial, out);
		return;
	}
	if (initial && len == 1 && line[0] == '=')
		len = 0;	/* RFC 4954: "=" is an empty initial response */
	if ((dec = b64_decode(line, len, &declen, NULL)) == NULL) {
		sasl_undecodable(out, line, len);
		s->round++;
		return;
	}
	s->def->client(s, dec, declen, out);
	s->round++;
	b64_free(dec, declen);
}

void
sasl_client_long(struct sasl *s, size_t len, int initial, struct strbuf *out)
{
	(void)initial;
	s->public = 0;
	s->round++;
	strbuf_printf(out, "<masked, %zu bytes, too long to decode>", len);
}

static int
sasl_printable(const unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((p[i] < 0x20 && p[i] != '\t' && p[i] != '\r' &&
		    p[i] != '\n') || p[i] == 0x7f)
			return 0;
	return 1;
}

void
sasl_server(struct sasl *s, const char *text, size_t len, struct strbuf *out)
{
	unsigned char *dec;
	size_t declen, n;

	if ((dec = b64_decode(text, len, &declen, NULL)) == NULL) {
		strbuf_adds(out, "(not base64)");
		return;
	}
	/* Some servers end their prompts with NUL ("User Name\0"): still text. */
	for (n = declen; n > 0 && dec[n - 1] == '\0'; n--)
		;
	if (sasl_printable(dec, n))
		sasl_quote(out, dec, declen);
	else
		strbuf_printf(out, "<%zu bytes binary>", declen);
	if (s->def->server != NULL)
		s->def->server(s, dec, declen);
	b64_free(dec, declen);
}
