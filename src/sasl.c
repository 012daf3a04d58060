/*
 * sasl.c - show what an SMTP AUTH exchange says without showing a secret.
 *
 * Each mechanism is a row in sasl_mechs[]: a handler for decoded client
 * payloads and, optionally, one for decoded server challenges. A mechanism
 * not in the table is opaque: its client payloads are reduced to a length.
 *
 * Display rules (tests/fuzz/fuzz_sasl.c checks the first two):
 * - text a peer chose (user names, realms, JSON errors) is shown only through
 *   sasl_quote(): inside double quotes, escaped;
 * - outside quotes there is only smtptap's own text, lengths and numbers;
 * - a client payload is split into fields only when its whole structure is as
 *   the mechanism defines it. Otherwise it is masked whole and the reason is
 *   named: a misplaced separator must not turn a password into a user name.
 */
#include <stdio.h>
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
/* SCRAM state kept for consistency checks; longer values are not checked. */
#define SASL_NELEM(a)	(sizeof (a) / sizeof (a)[0])
#define SASL_KEEP_MAX	1024

/* XOAUTH2 and OAUTHBEARER separate their key=value pairs with ^A. */
#define SASL_KVSEP	0x01

struct sasl_mechdef {
	const char	*name;
	/* A decoded client payload; s->round counts earlier client payloads. */
	void		(*client)(struct sasl *, const unsigned char *, size_t,
			    struct strbuf *);
	/*
	 * A decoded server challenge; returns 1 if it showed it, 0 to leave
	 * it to the generic display. May steer the next round.
	 */
	int		(*server)(struct sasl *, const unsigned char *, size_t,
			    struct strbuf *);
	size_t		 hashlen;	/* SCRAM: bytes in a proof */
};

struct sasl {
	const struct sasl_mechdef *def;
	char		 mech[SASL_MECH_SHOW];
	unsigned int	 round;		/* client payloads seen */
	int		 prompt;	/* LOGIN: the prompt before the first */
	int		 done;		/* cancelled: everything after is masked */
	int		 public;	/* last client line held no secret */
	int		 plus;		/* a -PLUS mechanism: channel binding */
	struct strbuf	 user;
	/* SCRAM: what later messages must repeat. Not secret; wiped anyway. */
	struct strbuf	 gs2;		/* the client-first GS2 header */
	struct strbuf	 cnonce;	/* the client's nonce */
	struct strbuf	 snonce;	/* client + server nonce */
};

static void	sasl_plain_client(struct sasl *, const unsigned char *, size_t,
		    struct strbuf *);
static void	sasl_login_client(struct sasl *, const unsigned char *, size_t,
		    struct strbuf *);
static int	sasl_login_server(struct sasl *, const unsigned char *, size_t,
		    struct strbuf *);
static void	sasl_cram_client(struct sasl *, const unsigned char *, size_t,
		    struct strbuf *);
static void	sasl_digest_client(struct sasl *, const unsigned char *, size_t,
		    struct strbuf *);
static int	sasl_digest_server(struct sasl *, const unsigned char *, size_t,
		    struct strbuf *);
static void	sasl_scram_client(struct sasl *, const unsigned char *, size_t,
		    struct strbuf *);
static int	sasl_scram_server(struct sasl *, const unsigned char *, size_t,
		    struct strbuf *);
static void	sasl_xoauth2_client(struct sasl *, const unsigned char *,
		    size_t, struct strbuf *);
static void	sasl_oauthbearer_client(struct sasl *, const unsigned char *,
		    size_t, struct strbuf *);
static int	sasl_oauth_server(struct sasl *, const unsigned char *, size_t,
		    struct strbuf *);
static void	sasl_external_client(struct sasl *, const unsigned char *,
		    size_t, struct strbuf *);
static void	sasl_opaque_client(struct sasl *, const unsigned char *, size_t,
		    struct strbuf *);

static const struct sasl_mechdef sasl_mechs[] = {
	{ "PLAIN", sasl_plain_client, NULL, 0 },
	{ "LOGIN", sasl_login_client, sasl_login_server, 0 },
	{ "CRAM-MD5", sasl_cram_client, NULL, 0 },
	{ "DIGEST-MD5", sasl_digest_client, sasl_digest_server, 0 },
	{ "SCRAM-SHA-1", sasl_scram_client, sasl_scram_server, 20 },
	{ "SCRAM-SHA-1-PLUS", sasl_scram_client, sasl_scram_server, 20 },
	{ "SCRAM-SHA-256", sasl_scram_client, sasl_scram_server, 32 },
	{ "SCRAM-SHA-256-PLUS", sasl_scram_client, sasl_scram_server, 32 },
	{ "SCRAM-SHA-512", sasl_scram_client, sasl_scram_server, 64 },
	{ "SCRAM-SHA-512-PLUS", sasl_scram_client, sasl_scram_server, 64 },
	{ "XOAUTH2", sasl_xoauth2_client, sasl_oauth_server, 0 },
	{ "OAUTHBEARER", sasl_oauthbearer_client, sasl_oauth_server, 0 },
	{ "EXTERNAL", sasl_external_client, NULL, 0 },
	/* Binary tokens that may carry credentials: lengths only. */
	{ "NTLM", sasl_opaque_client, NULL, 0 },
	{ "GSSAPI", sasl_opaque_client, NULL, 0 },
	{ "GSS-SPNEGO", sasl_opaque_client, NULL, 0 },
};

static const struct sasl_mechdef sasl_opaque = {
	NULL, sasl_opaque_client, NULL, 0
};

/* What the LOGIN prompt before the first client response asked for. */
enum sasl_prompt {
	SASL_PROMPT_NONE,	/* no prompt: the client spoke first */
	SASL_PROMPT_USER,	/* a user name, or an empty prompt */
	SASL_PROMPT_PASS,	/* a password */
	SASL_PROMPT_OTHER,	/* not understood */
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

int
sasl_mech_valid(const char *name, size_t len)
{
	size_t i;
	int c;

	if (len == 0 || len > SASL_MECH_NAME_MAX)
		return 0;
	for (i = 0; i < len; i++) {
		c = sasl_upper((unsigned char)name[i]);
		if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_'))
			return 0;
	}
	return 1;
}

static struct sasl *
sasl_alloc(void)
{
	struct sasl *s = xcalloc(1, sizeof *s);

	strbuf_init(&s->user, SASL_USER_MAX);
	strbuf_init(&s->gs2, SASL_KEEP_MAX);
	strbuf_init(&s->cnonce, SASL_KEEP_MAX);
	strbuf_init(&s->snonce, SASL_KEEP_MAX);
	s->def = &sasl_opaque;
	return s;
}

struct sasl *
sasl_new_invalid(size_t len)
{
	struct sasl *s = sasl_alloc();

	snprintf(s->mech, sizeof s->mech, "<invalid mechanism, %zu bytes>",
	    len);
	return s;
}

struct sasl *
sasl_new(const char *mech, size_t mechlen)
{
	struct sasl *s;
	size_t i, n;

	if (!sasl_mech_valid(mech, mechlen))
		return sasl_new_invalid(mechlen);
	s = sasl_alloc();
	for (i = 0; i < sizeof sasl_mechs / sizeof sasl_mechs[0]; i++)
		if (sasl_name_eq(mech, mechlen, sasl_mechs[i].name))
			s->def = &sasl_mechs[i];
	if (s->def->name != NULL) {
		n = strlen(s->def->name);
		s->plus = n > 5 && strcmp(s->def->name + n - 5, "-PLUS") == 0;
	}
	for (i = 0; i < mechlen; i++)
		s->mech[i] = (char)sasl_upper((unsigned char)mech[i]);
	s->mech[mechlen] = '\0';
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
	strbuf_free(&s->gs2);
	strbuf_free(&s->cnonce);
	strbuf_free(&s->snonce);
	explicit_bzero(s, sizeof *s);
	free(s);
}

/* ---- display helpers ---- */

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
sasl_field(struct strbuf *out, const char *name, const unsigned char *p,
    size_t n)
{
	if (out->len > 0 && out->buf[out->len - 1] != ' ')
		strbuf_addc(out, ' ');
	strbuf_printf(out, "%s=", name);
	sasl_quote(out, p, n);
}

/* Start a field whose value smtptap writes itself (a mask, a length). */
static void
sasl_label(struct strbuf *out, const char *name)
{
	if (out->len > 0 && out->buf[out->len - 1] != ' ')
		strbuf_addc(out, ' ');
	strbuf_printf(out, "%s=", name);
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

static int
sasl_eq(const unsigned char *a, size_t an, const unsigned char *b, size_t bn)
{
	return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

static int
sasl_prefix(const unsigned char *p, size_t n, const char *pre)
{
	size_t k = strlen(pre);

	return n >= k && memcmp(p, pre, k) == 0;
}

/* The next sep-terminated field of [*pp, end); the last may lack sep. */
static int
sasl_next(const unsigned char **pp, const unsigned char *end, int sep,
    const unsigned char **f, size_t *fn)
{
	const unsigned char *p = *pp, *q;

	if (p == NULL || p > end)
		return 0;
	*f = p;
	if ((q = memchr(p, sep, (size_t)(end - p))) == NULL) {
		*fn = (size_t)(end - p);
		*pp = end + 1;		/* past the end: no more fields */
	} else {
		*fn = (size_t)(q - p);
		*pp = q + 1;
	}
	return 1;
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

/* Well-formed UTF-8 (RFC 3629): no overlongs, surrogates or > U+10FFFF. */
static int
sasl_utf8_ok(const unsigned char *p, size_t n)
{
	size_t i = 0, k, need;
	unsigned long c, min;

	while (i < n) {
		c = p[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1;
			c &= 0x1f;
			min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2;
			c &= 0x0f;
			min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3;
			c &= 0x07;
			min = 0x10000;
		} else
			return 0;
		if (n - i - 1 < need)
			return 0;
		for (k = 1; k <= need; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return 0;
			c = c << 6 | (p[i + k] & 0x3f);
		}
		if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
			return 0;
		i += need + 1;
	}
	return 1;
}

/*
 * A secret that is itself base64 of printable text was probably encoded
 * twice (a client library fed an already encoded password). Short values
 * are skipped: too many plain passwords would match by chance.
 */
static int
sasl_b64_twice(const unsigned char *p, size_t n)
{
	unsigned char *dec;
	size_t off, declen, i;
	int text = 1;

	if (n < 8 || b64_check((const char *)p, n, &off) != B64_OK)
		return 0;
	if ((dec = b64_decode((const char *)p, n, &declen, NULL)) == NULL)
		return 0;
	for (i = 0; i < declen; i++)
		if (dec[i] < 0x20 || dec[i] > 0x7e)
			text = 0;
	b64_free(dec, declen);
	return text && declen > 0;
}

/*
 * "<masked, N bytes>" plus remarks that help debug a failing login without
 * revealing content: stray white space at either end, NUL, non-ASCII or
 * invalid UTF-8, encoded twice, empty.
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
	if (high) {
		strbuf_adds(out, ", non-ASCII");
		if (!sasl_utf8_ok(p, n))
			strbuf_adds(out, ", invalid UTF-8");
	}
	if (sasl_b64_twice(p, n))
		strbuf_adds(out, ", looks like base64 itself (encoded twice?)");
	strbuf_addc(out, '>');
}

static int
sasl_ishex(const unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!((p[i] >= '0' && p[i] <= '9') ||
		    (p[i] >= 'a' && p[i] <= 'f') ||
		    (p[i] >= 'A' && p[i] <= 'F')))
			return 0;
	return n > 0;
}

/* A hex digest (CRAM-MD5, DIGEST-MD5): its length is all there is to say. */
static void
sasl_mask_hex(struct strbuf *out, const unsigned char *p, size_t n,
    size_t want)
{
	if (!sasl_ishex(p, n)) {
		strbuf_printf(out, "<masked, %zu bytes, not hex>", n);
		return;
	}
	strbuf_printf(out, "<masked, %zu hex chars", n);
	if (n != want)
		strbuf_printf(out, ", expected %zu", want);
	strbuf_addc(out, '>');
}

/* A base64 proof or signature (SCRAM): decoded length against the hash's. */
static void
sasl_mask_b64(struct strbuf *out, const unsigned char *p, size_t n,
    size_t want)
{
	unsigned char *dec;
	size_t declen;

	if ((dec = b64_decode((const char *)p, n, &declen, NULL)) == NULL) {
		strbuf_printf(out, "<masked, %zu chars, invalid base64>", n);
		return;
	}
	b64_free(dec, declen);
	strbuf_printf(out, "<masked, %zu bytes", declen);
	if (want != 0 && declen != want)
		strbuf_printf(out, ", expected %zu", want);
	strbuf_addc(out, '>');
}

/* A whole payload that did not have the expected structure. */
static void
sasl_malformed(struct sasl *s, struct strbuf *out, const char *why,
    const unsigned char *p, size_t n)
{
	strbuf_printf(out, "malformed %s (%s): ", s->def->name, why);
	sasl_mask(out, p, n);
}

/* A client reply that must be empty (after an error or a final message). */
static void
sasl_ack(struct sasl *s, struct strbuf *out, const unsigned char *p,
    size_t n, const char *what)
{
	if (n == 0) {
		strbuf_printf(out, "empty response (%s)", what);
		s->public = 1;
	} else
		sasl_mask(out, p, n);
}

/* ---- PLAIN (RFC 4616): [authzid] NUL authcid NUL passwd ---- */

static void
sasl_plain_client(struct sasl *s, const unsigned char *p, size_t n,
    struct strbuf *out)
{
	const unsigned char *nul[2];
	size_t i, count = 0, zn, un;

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
	zn = (size_t)(nul[0] - p);
	un = (size_t)(nul[1] - nul[0] - 1);
	sasl_field(out, "authzid", p, zn);
	sasl_field(out, "user", nul[0] + 1, un);
	sasl_set_user(s, nul[0] + 1, un);
	sasl_label(out, "password");
	sasl_mask(out, nul[1] + 1, n - (size_t)(nul[1] + 1 - p));
	/* Acting as someone else needs a server that allows it. */
	if (zn > 0 && !sasl_eq(p, zn, nul[0] + 1, un))
		strbuf_adds(out, "; authzid differs from user");
}

/* ---- LOGIN (draft-murchison-sasl-login): user, then password ---- */

/*
 * Clients answer LOGIN by position: user name first, then password,
 * whatever the prompts say. So the second response is the password, and
 * the first is shown as the user name only when nothing suggests that the
 * server asked for a password first. Prompts are free text in any
 * language: one that names neither is not understood, and then the first
 * response is masked too.
 */
static void
sasl_login_client(struct sasl *s, const unsigned char *p, size_t n,
    struct strbuf *out)
{
	if (s->round > 1) {
		sasl_mask(out, p, n);
		return;
	}
	if (s->round == 1 || s->prompt == SASL_PROMPT_PASS) {
		sasl_label(out, "password");
		sasl_mask(out, p, n);
		return;
	}
	if (s->prompt == SASL_PROMPT_OTHER) {
		sasl_label(out, "user or password");
		sasl_mask(out, p, n);
		strbuf_adds(out, " (the prompt does not say which)");
		return;
	}
	sasl_field(out, "user", p, n);
	sasl_set_user(s, p, n);
	s->public = 1;
}

/*
 * Words of LOGIN prompts, lower case: ASCII is compared in any case, other
 * bytes as they are, so other scripts give stems without the first letter
 * that could be a capital (UTF-8: "арол" of "Пароль", "密", "パス", ...).
 */
static const char *const sasl_pass_words[] = {
	"pass", "contrase", "senha", "kennwort", "wachtwoord", "l\xc3\xb6sen",
	"losen", "has\xc5\x82o", "haslo", "parol", "parool", "heslo", "jelsz",
	"salasana", "adgangskode", "ifre", "geslo", "lozink",
	"slapta", "secret", "token", "sandi", "m\xe1\xba\xadt kh",
	"\xd0\xb0\xd1\x80\xd0\xbe\xd0\xbb",			/* (п)арол */
	"\xcf\x89\xce\xb4\xce\xb9\xce\xba",			/* (κ)ωδικ */
	"\xe5\xaf\x86",					/* 密 */
	"\xe3\x83\x91\xe3\x82\xb9",				/* パス */
	"\xeb\xb9\x84\xeb\xb0\x80",				/* 비밀 */
	"\xd7\xa1\xd7\x99\xd7\xa1\xd7\x9e",			/* סיסמ */
	"\xd9\x85\xd8\xb1\xd9\x88\xd8\xb1",			/* مرور */
	"\xe0\xb8\xa3\xe0\xb8\xab\xe0\xb8\xb1\xe0\xb8\xaa",	/* รหัส */
	"\xe0\xa4\xaa\xe0\xa4\xbe\xe0\xa4\xb8",		/* पास */
};

static const char *const sasl_user_words[] = {
	"user", "name", "login", "usu", "utilisateur", "identifiant",
	"benutzer", "nutzer", "utente", "nome", "gebruiker", "anv\xc3\xa4ndar",
	"anvandar", "u\xc5\xbcytkownik", "uzytkownik", "kullan", "account",
	"\xd0\xbe\xd0\xbb\xd1\x8c\xd0\xb7",			/* (п)ольз */
	"\xd0\xbe\xd0\xb3\xd0\xb8\xd0\xbd",			/* (л)огин */
	"\xe7\x94\xa8\xe6\x88\xb7",				/* 用户 */
	"\xe5\xb8\xb3\xe8\x99\x9f",				/* 帳號 */
	"\xe3\x83\xa6\xe3\x83\xbc\xe3\x82\xb6",		/* ユーザ */
	"\xec\x82\xac\xec\x9a\xa9\xec\x9e\x90",		/* 사용자 */
};

/* Length-based (prompts may hold NUL); ASCII letters in any case. */
static int
sasl_has_word(const unsigned char *p, size_t n, const char *word)
{
	size_t i, k, wn = strlen(word);

	for (i = 0; i + wn <= n; i++) {
		for (k = 0; k < wn; k++)
			if (sasl_upper(p[i + k]) !=
			    sasl_upper((unsigned char)word[k]))
				break;
		if (k == wn)
			return 1;
	}
	return 0;
}

static int
sasl_has_any(const unsigned char *p, size_t n, const char *const *words,
    size_t nwords)
{
	size_t i;

	for (i = 0; i < nwords; i++)
		if (sasl_has_word(p, n, words[i]))
			return 1;
	return 0;
}

static enum sasl_prompt
sasl_login_prompt(const unsigned char *p, size_t n)
{
	size_t i, blank = 1;

	for (i = 0; i < n; i++)
		if (p[i] != '\0' && p[i] != ' ' && p[i] != '\t')
			blank = 0;
	if (blank)
		return SASL_PROMPT_USER;
	if (sasl_has_any(p, n, sasl_pass_words, SASL_NELEM(sasl_pass_words)))
		return SASL_PROMPT_PASS;
	if (sasl_has_any(p, n, sasl_user_words, SASL_NELEM(sasl_user_words)))
		return SASL_PROMPT_USER;
	return SASL_PROMPT_OTHER;
}

static int
sasl_login_server(struct sasl *s, const unsigned char *p, size_t n,
    struct strbuf *out)
{
	(void)out;
	if (s->round == 0)
		s->prompt = sasl_login_prompt(p, n);
	return 0;
}

/* ---- CRAM-MD5 (RFC 2195): "user SP hex(HMAC-MD5)" ---- */

static void
sasl_cram_client(struct sasl *s, const unsigned char *p, size_t n,
    struct strbuf *out)
{
	size_t sp;

	if (s->round > 0) {
		sasl_mask(out, p, n);
		return;
	}
	/* The digest is the last word: user names may contain spaces. */
	for (sp = n; sp > 0 && p[sp - 1] != ' '; sp--)
		;
	if (sp == 0) {
		sasl_malformed(s, out, "no space between user and digest",
		    p, n);
		return;
	}
	/* Anything but a digest there could be a password sent by mistake. */
	if (n - sp != 32 || !sasl_ishex(p + sp, 32)) {
		sasl_malformed(s, out, "the last word is not 32 hex digits",
		    p, n);
		return;
	}
	sasl_field(out, "user", p, sp - 1);
	sasl_set_user(s, p, sp - 1);
	sasl_label(out, "digest");
	sasl_mask_hex(out, p + sp, n - sp, 32);
}

/* ---- DIGEST-MD5 (RFC 2831): name=value or name="quoted", commas ---- */

struct sasl_kv {
	const unsigned char	*k;
	size_t			 kn;
	const unsigned char	*v;	/* quoted: still with its escapes */
	size_t			 vn;
	int			 quoted;
};

static int
sasl_lws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The next directive; 1 with one, 0 at the end, -1 if malformed. */
static int
sasl_digest_next(const unsigned char **pp, const unsigned char *end,
    struct sasl_kv *kv)
{
	const unsigned char *p = *pp;

	/* RFC 2831 7.1: empty list elements and LWS are allowed. */
	while (p < end && (sasl_lws(*p) || *p == ','))
		p++;
	if (p == end)
		return 0;
	kv->k = p;
	while (p < end && *p != '=' && *p != ',' && !sasl_lws(*p) &&
	    *p != '"')
		p++;
	kv->kn = (size_t)(p - kv->k);
	while (p < end && sasl_lws(*p))
		p++;
	if (kv->kn == 0 || p == end || *p != '=')
		return -1;
	p++;
	while (p < end && sasl_lws(*p))
		p++;
	if (p < end && *p == '"') {
		kv->quoted = 1;
		kv->v = ++p;
		while (p < end && *p != '"') {
			if (*p == '\\' && ++p == end)
				return -1;
			p++;
		}
		if (p == end)
			return -1;
		kv->vn = (size_t)(p - kv->v);
		p++;
	} else {
		kv->quoted = 0;
		kv->v = p;
		while (p < end && *p != ',' && !sasl_lws(*p) && *p != '"')
			p++;
		kv->vn = (size_t)(p - kv->v);
	}
	while (p < end && sasl_lws(*p))
		p++;
	if (p < end && *p != ',')
		return -1;
	*pp = p;
	return 1;
}

static int
sasl_digest_valid(const unsigned char *p, size_t n)
{
	const unsigned char *q = p;
	struct sasl_kv kv;
	int r, count = 0;

	while ((r = sasl_digest_next(&q, p + n, &kv)) == 1)
		count++;
	return r == 0 && count > 0;
}

static int
sasl_kv_is(const struct sasl_kv *kv, const char *name)
{
	size_t i;

	for (i = 0; i < kv->kn; i++)
		if (name[i] == '\0' ||
		    sasl_upper(kv->k[i]) != sasl_upper((unsigned char)name[i]))
			return 0;
	return name[kv->kn] == '\0';
}

/* A value without its quoted-pair backslashes, into a strbuf. */
static void
sasl_kv_value(const struct sasl_kv *kv, struct strbuf *sb)
{
	size_t i;

	for (i = 0; i < kv->vn; i++) {
		if (kv->quoted && kv->v[i] == '\\' && i + 1 < kv->vn)
			i++;
		strbuf_addc(sb, (char)kv->v[i]);
	}
}

/* The value, unescaped, in quotes. */
static void
sasl_kv_quote(struct strbuf *out, const struct sasl_kv *kv)
{
	struct strbuf v = STRBUF_INIT;

	strbuf_init(&v, kv->vn + 1);
	sasl_kv_value(kv, &v);
	sasl_quote(out, (const unsigned char *)strbuf_str(&v), v.len);
	strbuf_free(&v);
}

static void
sasl_kv_show(struct strbuf *out, const struct sasl_kv *kv, const char *name)
{
	sasl_label(out, name);
	sasl_kv_quote(out, kv);
}

static size_t
sasl_kv_len(const struct sasl_kv *kv)
{
	struct strbuf v = STRBUF_INIT;
	size_t n;

	strbuf_init(&v, kv->vn + 1);
	sasl_kv_value(kv, &v);
	n = v.len;
	strbuf_free(&v);
	return n;
}

/* An unknown client field: its name in quotes, its value masked. */
static void
sasl_unknown_field(struct strbuf *out, const unsigned char *k, size_t kn,
    const unsigned char *v, size_t vn)
{
	if (out->len > 0 && out->buf[out->len - 1] != ' ')
		strbuf_addc(out, ' ');
	sasl_quote(out, k, kn);
	strbuf_addc(out, '=');
	sasl_mask(out, v, vn);
}

/* Directives that are public in a digest-response; the rest is masked. */
static const char *const sasl_digest_public[] = {
	"username", "realm", "nc", "qop", "digest-uri", "maxbuf", "charset",
	"cipher", "authzid",
};

/* Directives a challenge may carry (RFC 2831 2.1.1), shown by name. */
static const char *const sasl_digest_challenge[] = {
	"realm", "qop", "stale", "maxbuf", "charset", "algorithm", "cipher",
};

static void
sasl_digest_client(struct sasl *s, const unsigned char *p, size_t n,
    struct strbuf *out)
{
	const unsigned char *q = p, *user = NULL, *zid = NULL;
	struct strbuf ub = STRBUF_INIT, zb = STRBUF_INIT;
	struct sasl_kv kv;
	const char *name;
	size_t i, un = 0, zn = 0;

	if (s->round > 0) {
		sasl_ack(s, out, p, n, "after rspauth");
		return;
	}
	if (!sasl_digest_valid(p, n)) {
		sasl_malformed(s, out, "not a list of name=value", p, n);
		return;
	}
	strbuf_init(&ub, n + 1);
	strbuf_init(&zb, n + 1);
	while (sasl_digest_next(&q, p + n, &kv) == 1) {
		if (sasl_kv_is(&kv, "response")) {
			sasl_label(out, "response");
			sasl_mask_hex(out, kv.v, kv.vn, 32);
			continue;
		}
		if (sasl_kv_is(&kv, "nonce") || sasl_kv_is(&kv, "cnonce")) {
			sasl_label(out, sasl_kv_is(&kv, "nonce") ? "nonce" :
			    "cnonce");
			strbuf_printf(out, "<%zu chars>", sasl_kv_len(&kv));
			continue;
		}
		name = NULL;
		for (i = 0; i < sizeof sasl_digest_public /
		    sizeof sasl_digest_public[0]; i++)
			if (sasl_kv_is(&kv, sasl_digest_public[i]))
				name = sasl_digest_public[i];
		if (name == NULL) {
			sasl_unknown_field(out, kv.k, kv.kn, kv.v, kv.vn);
			continue;
		}
		/* Our own spelling of the name: the client's may be odd. */
		sasl_kv_show(out, &kv, strcmp(name, "username") == 0 ? "user" :
		    name);
		if (sasl_kv_is(&kv, "username") && user == NULL) {
			sasl_kv_value(&kv, &ub);
			user = (const unsigned char *)strbuf_str(&ub);
			un = ub.len;
		}
		if (sasl_kv_is(&kv, "authzid") && zid == NULL) {
			sasl_kv_value(&kv, &zb);
			zid = (const unsigned char *)strbuf_str(&zb);
			zn = zb.len;
		}
	}
	if (user != NULL)
		sasl_set_user(s, user, un);
	else
		strbuf_adds(out, "; no username");
	if (zid != NULL && zn > 0 && (user == NULL ||
	    !sasl_eq(zid, zn, user, un)))
		strbuf_adds(out, "; authzid differs from user");
	strbuf_free(&ub);
	strbuf_free(&zb);
}

static int
sasl_digest_server(struct sasl *s, const unsigned char *p, size_t n,
    struct strbuf *out)
{
	const unsigned char *q = p;
	struct sasl_kv kv;
	const char *name;
	size_t i;

	(void)s;
	if (!sasl_digest_valid(p, n))
		return 0;
	while (sasl_digest_next(&q, p + n, &kv) == 1) {
		if (sasl_kv_is(&kv, "rspauth")) {
			/* Proves the server knows the password: treat alike. */
			sasl_label(out, "rspauth");
			sasl_mask_hex(out, kv.v, kv.vn, 32);
		} else if (sasl_kv_is(&kv, "nonce")) {
			sasl_label(out, "nonce");
			strbuf_printf(out, "<%zu chars>", sasl_kv_len(&kv));
		} else {
			/* Challenges are public: every directive is shown. */
			name = NULL;
			for (i = 0; i < SASL_NELEM(sasl_digest_challenge); i++)
				if (sasl_kv_is(&kv, sasl_digest_challenge[i]))
					name = sasl_digest_challenge[i];
			if (name != NULL)
				sasl_kv_show(out, &kv, name);
			else {
				if (out->len > 0 &&
				    out->buf[out->len - 1] != ' ')
					strbuf_addc(out, ' ');
				sasl_quote(out, kv.k, kv.kn);
				strbuf_addc(out, '=');
				sasl_kv_quote(out, &kv);
			}
		}
	}
	return 1;
}

/* ---- GS2 header (RFC 5801), shared by SCRAM and OAUTHBEARER ---- */

struct sasl_gs2 {
	unsigned char		 flag;	/* 'n', 'y' or 'p' */
	const unsigned char	*cb;	/* p=: the channel binding type */
	size_t			 cbn;
	const unsigned char	*authzid; /* a=, still escaped; NULL if none */
	size_t			 authzidn;
	size_t			 len;	/* of the header, with its commas */
};

/* "n,," "y,a=user," "p=tls-unique,,": 0 if well formed. */
static int
sasl_gs2_parse(const unsigned char *p, size_t n, struct sasl_gs2 *g)
{
	const unsigned char *c1, *c2;

	memset(g, 0, sizeof *g);
	if ((c1 = memchr(p, ',', n)) == NULL)
		return -1;
	c2 = memchr(c1 + 1, ',', n - (size_t)(c1 + 1 - p));
	if (c2 == NULL)
		return -1;
	if (c1 - p == 1 && (p[0] == 'n' || p[0] == 'y'))
		g->flag = p[0];
	else if (c1 - p > 2 && p[0] == 'p' && p[1] == '=') {
		g->flag = 'p';
		g->cb = p + 2;
		g->cbn = (size_t)(c1 - p - 2);
	} else
		return -1;
	if (c2 > c1 + 1) {
		if (c2 - c1 - 1 < 2 || c1[1] != 'a' || c1[2] != '=')
			return -1;
		g->authzid = c1 + 3;
		g->authzidn = (size_t)(c2 - c1 - 3);
	}
	g->len = (size_t)(c2 + 1 - p);
	return 0;
}

/* RFC 5802 saslname: "=2C" is ',' and "=3D" is '='; -1 on a bad escape. */
static int
sasl_saslname(struct strbuf *sb, const unsigned char *p, size_t n)
{
	size_t i;
	int bad = 0;

	for (i = 0; i < n; i++) {
		if (p[i] == '=' && i + 2 < n && p[i + 1] == '2' &&
		    (p[i + 2] == 'C' || p[i + 2] == 'c')) {
			strbuf_addc(sb, ',');
			i += 2;
		} else if (p[i] == '=' && i + 2 < n && p[i + 1] == '3' &&
		    (p[i + 2] == 'D' || p[i + 2] == 'd')) {
			strbuf_addc(sb, '=');
			i += 2;
		} else {
			if (p[i] == '=' || p[i] == ',')
				bad = 1;
			strbuf_addc(sb, (char)p[i]);
		}
	}
	return bad ? -1 : 0;
}

/* Show a saslname field decoded; returns the decoded form in sb. */
static void
sasl_show_saslname(struct strbuf *out, const char *name,
    const unsigned char *p, size_t n, struct strbuf *sb)
{
	int bad;

	strbuf_init(sb, n + 1);
	bad = sasl_saslname(sb, p, n);
	sasl_field(out, name, (const unsigned char *)strbuf_str(sb), sb->len);
	if (bad)
		strbuf_adds(out, " (invalid = escape)");
}

static void
sasl_gs2_show(struct strbuf *out, const struct sasl_gs2 *g, struct strbuf *zb)
{
	switch (g->flag) {
	case 'n':
		strbuf_adds(out, "gs2 flag=n (no channel binding)");
		break;
	case 'y':
		strbuf_adds(out, "gs2 flag=y (client could bind, thinks the "
		    "server cannot)");
		break;
	case 'p':
		strbuf_adds(out, "gs2 flag=p");
		sasl_field(out, "channel binding", g->cb, g->cbn);
		break;
	}
	if (g->authzid != NULL)
		sasl_show_saslname(out, "authzid", g->authzid, g->authzidn, zb);
}

/* ---- SCRAM (RFC 5802, RFC 7677): comma-separated a=value ---- */

/* The value of the first attribute named c, or NULL. */
static const unsigned char *
sasl_scram_attr(const unsigned char *p, size_t n, int c, size_t *vn)
{
	const unsigned char *q = p, *f;
	size_t fn;

	while (sasl_next(&q, p + n, ',', &f, &fn))
		if (fn >= 2 && f[0] == c && f[1] == '=') {
			*vn = fn - 2;
			return f + 2;
		}
	return NULL;
}

/* Every attribute is a letter and '='. */
static int
sasl_scram_wellformed(const unsigned char *p, size_t n)
{
	const unsigned char *q = p, *f;
	size_t fn;

	while (sasl_next(&q, p + n, ',', &f, &fn))
		if (fn < 2 || f[1] != '=' || !((f[0] >= 'a' && f[0] <= 'z') ||
		    (f[0] >= 'A' && f[0] <= 'Z')))
			return 0;
	return 1;
}

static void
sasl_keep(struct strbuf *sb, const unsigned char *p, size_t n)
{
	strbuf_reset(sb);
	strbuf_add(sb, p, n);
}

static int
sasl_kept_eq(const struct strbuf *sb, const unsigned char *p, size_t n)
{
	return sb->dropped == 0 && sasl_eq((const unsigned char *)sb->buf,
	    sb->len, p, n);
}

/* client-first-message: gs2-header [m=ext,] n=user,r=nonce[,ext] */
static void
sasl_scram_first(struct sasl *s, const unsigned char *p, size_t n,
    struct strbuf *out)
{
	struct sasl_gs2 g;
	struct strbuf zb = STRBUF_INIT, ub = STRBUF_INIT;
	const unsigned char *bare, *user, *nonce;
	size_t bn, un, nn;

	if (sasl_gs2_parse(p, n, &g) != 0) {
		sasl_malformed(s, out, "no valid GS2 header", p, n);
		return;
	}
	bare = p + g.len;
	bn = n - g.len;
	if (!sasl_scram_wellformed(bare, bn) ||
	    (user = sasl_scram_attr(bare, bn, 'n', &un)) == NULL ||
	    (nonce = sasl_scram_attr(bare, bn, 'r', &nn)) == NULL) {
		sasl_malformed(s, out, "client-first without n= and r=", p, n);
		return;
	}
	sasl_gs2_show(out, &g, &zb);
	sasl_show_saslname(out, "user", user, un, &ub);
	sasl_set_user(s, (const unsigned char *)strbuf_str(&ub), ub.len);
	sasl_label(out, "nonce");
	strbuf_printf(out, "<%zu chars>", nn);
	if (bare[0] == 'm')
		strbuf_adds(out, "; mandatory extension m=");
	if (s->plus && g.flag != 'p')
		strbuf_adds(out, "; -PLUS mechanism without channel binding");
	if (!s->plus && g.flag == 'p')
		strbuf_adds(out, "; channel binding asked for without -PLUS");
	if (g.authzid != NULL && zb.len > 0 && !sasl_eq((const unsigned char *)
	    zb.buf, zb.len, (const unsigned char *)strbuf_str(&ub), ub.len))
		strbuf_adds(out, "; authzid differs from user");
	sasl_keep(&s->gs2, p, g.len);
	sasl_keep(&s->cnonce, nonce, nn);
	strbuf_free(&zb);
	strbuf_free(&ub);
}

/* client-final-message: c=cbind,r=nonce[,ext],p=proof */
static void
sasl_scram_final(struct sasl *s, const unsigned char *p, size_t n,
    struct strbuf *out)
{
	const unsigned char *q = p, *f, *c, *r;
	unsigned char *cb;
	size_t fn, cn, rn, cbn;
	struct sasl_gs2 g;

	if (!sasl_scram_wellformed(p, n) || !sasl_prefix(p, n, "c=") ||
	    (c = sasl_scram_attr(p, n, 'c', &cn)) == NULL ||
	    (r = sasl_scram_attr(p, n, 'r', &rn)) == NULL ||
	    sasl_scram_attr(p, n, 'p', &fn) == NULL) {
		sasl_malformed(s, out, "client-final without c=, r= and p=",
		    p, n);
		return;
	}
	/* c= is base64 of the GS2 header again plus channel binding data. */
	if ((cb = b64_decode((const char *)c, cn, &cbn, NULL)) == NULL)
		strbuf_printf(out, "channel binding=<%zu chars, invalid "
		    "base64>", cn);
	else {
		if (sasl_gs2_parse(cb, cbn, &g) != 0) {
			strbuf_printf(out, "channel binding=<%zu bytes, no "
			    "GS2 header>", cbn);
		} else {
			sasl_field(out, "channel binding header", cb, g.len);
			if (cbn > g.len)
				strbuf_printf(out, " channel binding data=<%zu "
				    "bytes>", cbn - g.len);
			if (s->gs2.len > 0 && !sasl_kept_eq(&s->gs2, cb, g.len))
				strbuf_adds(out, " (differs from "
				    "client-first)");
			if (g.flag == 'p' && cbn == g.len)
				strbuf_adds(out, " (no channel binding data)");
		}
		b64_free(cb, cbn);
	}
	sasl_label(out, "nonce");
	strbuf_printf(out, "<%zu chars", rn);
	if (s->snonce.len > 0) {
		if (sasl_kept_eq(&s->snonce, r, rn))
			strbuf_adds(out, ", the server's");
		else
			strbuf_adds(out, ", differs from the server's");
	}
	strbuf_addc(out, '>');
	/* Everything else: extensions masked, the proof masked. */
	while (sasl_next(&q, p + n, ',', &f, &fn)) {
		if (f[0] == 'c' || f[0] == 'r')
			continue;
		if (f[0] == 'p') {
			sasl_label(out, "proof");
			sasl_mask_b64(out, f + 2, fn - 2, s->def->hashlen);
		} else
			sasl_unknown_field(out, f, 1, f + 2, fn - 2);
	}
}

static void
sasl_scram_client(struct sasl *s, const unsigned char *p, size_t n,
    struct strbuf *out)
{
	if (s->round == 0)
		sasl_scram_first(s, p, n, out);
	else if (s->round == 1)
		sasl_scram_final(s, p, n, out);
	else
		sasl_ack(s, out, p, n, "after the server's final message");
}

static void
sasl_number(struct strbuf *out, const char *name, const unsigned char *p,
    size_t n)
{
	size_t i;
	int digits = n > 0 && n <= 10;

	for (i = 0; i < n; i++)
		if (p[i] < '0' || p[i] > '9')
			digits = 0;
	if (!digits) {
		sasl_field(out, name, p, n);
		strbuf_adds(out, " (not a number)");
		return;
	}
	sasl_label(out, name);
	strbuf_add(out, p, n);
}

static int
sasl_scram_server(struct sasl *s, const unsigned char *p, size_t n,
    struct strbuf *out)
{
	const unsigned char *r, *salt, *it, *v;
	unsigned char *dec;
	size_t rn, sn, in, vn, declen, i;
	unsigned long long iter;

	if (n == 0 || !sasl_scram_wellformed(p, n))
		return 0;
	if (p[0] == 'e') {
		/* server-error: public, and the best diagnosis there is. */
		v = sasl_scram_attr(p, n, 'e', &vn);
		sasl_field(out, "error", v, vn);
		return 1;
	}
	if (p[0] == 'v') {
		v = sasl_scram_attr(p, n, 'v', &vn);
		sasl_label(out, "server signature");
		sasl_mask_b64(out, v, vn, s->def->hashlen);
		return 1;
	}
	/* server-first-message: [m=ext,] r=nonce,s=salt,i=count[,ext] */
	if ((r = sasl_scram_attr(p, n, 'r', &rn)) == NULL ||
	    (salt = sasl_scram_attr(p, n, 's', &sn)) == NULL ||
	    (it = sasl_scram_attr(p, n, 'i', &in)) == NULL)
		return 0;
	sasl_label(out, "nonce");
	strbuf_printf(out, "<%zu chars", rn);
	if (s->cnonce.len > 0 && s->cnonce.dropped == 0) {
		if (rn > s->cnonce.len &&
		    memcmp(r, s->cnonce.buf, s->cnonce.len) == 0)
			strbuf_printf(out, ": client's %zu + server's %zu",
			    s->cnonce.len, rn - s->cnonce.len);
		else
			strbuf_adds(out, ", does not extend the client's");
	}
	strbuf_addc(out, '>');
	sasl_keep(&s->snonce, r, rn);
	sasl_label(out, "salt");
	if ((dec = b64_decode((const char *)salt, sn, &declen, NULL)) == NULL)
		strbuf_printf(out, "<%zu chars, invalid base64>", sn);
	else {
		strbuf_printf(out, "<%zu bytes>", declen);
		b64_free(dec, declen);
	}
	sasl_number(out, "iterations", it, in);
	for (iter = 0, i = 0; i < in && i < 10 && it[i] >= '0' && it[i] <= '9';
	    i++)
		iter = iter * 10 + (unsigned long long)(it[i] - '0');
	if (i == in && iter < 4096)
		strbuf_adds(out, " (fewer than 4096)");
	if (p[0] == 'm')
		strbuf_adds(out, "; mandatory extension m=");
	return 1;
}

/* ---- XOAUTH2 and OAUTHBEARER (RFC 7628): key=value^A...^A^A ---- */

/* 0 if [p, p+n) is "k=v^A" pairs ended by one more ^A and nothing else. */
static const char *
sasl_kv_check(const unsigned char *p, size_t n)
{
	const unsigned char *q = p, *f, *e;
	size_t fn;

	if (n < 2 || p[n - 1] != SASL_KVSEP || p[n - 2] != SASL_KVSEP)
		return "not ended by ^A^A";
	e = p + n - 1;		/* the final ^A: an empty pair */
	while (q < e && sasl_next(&q, e, SASL_KVSEP, &f, &fn)) {
		if (fn == 0)
			return "empty field before the end";
		if (memchr(f, '=', fn) == NULL || f[0] == '=')
			return "a field without key=";
	}
	return NULL;
}

/* "Bearer <token>": the scheme is shown, the token masked. */
static void
sasl_oauth_auth(struct strbuf *out, const unsigned char *v, size_t vn)
{
	const unsigned char *sp;

	if ((sp = memchr(v, ' ', vn)) == NULL || sp == v) {
		sasl_label(out, "auth");
		sasl_mask(out, v, vn);
		strbuf_adds(out, " (no scheme before the token)");
		return;
	}
	sasl_label(out, "auth scheme");
	if (sasl_eq(v, (size_t)(sp - v), (const unsigned char *)"Bearer", 6))
		strbuf_adds(out, "Bearer");
	else
		sasl_quote(out, v, (size_t)(sp - v));
	sasl_label(out, "token");
	sasl_mask(out, sp + 1, vn - (size_t)(sp + 1 - v));
}

/* Shows the pairs; user_key names the one that carries the user name. */
static void
sasl_kv_pairs(struct sasl *s, const unsigned char *p, size_t n,
    struct strbuf *out, int oauthbearer)
{
	const unsigned char *q = p, *f, *eq, *e = p + n - 1;
	size_t fn, kn;
	int auth = 0;

	while (q < e && sasl_next(&q, e, SASL_KVSEP, &f, &fn)) {
		eq = memchr(f, '=', fn);
		kn = (size_t)(eq - f);
		if (!oauthbearer && sasl_eq(f, kn, (const unsigned char *)
		    "user", 4)) {
			sasl_field(out, "user", eq + 1, fn - kn - 1);
			sasl_set_user(s, eq + 1, fn - kn - 1);
		} else if (oauthbearer && (sasl_eq(f, kn,
		    (const unsigned char *)"host", 4) || sasl_eq(f, kn,
		    (const unsigned char *)"port", 4)))
			sasl_field(out, f[0] == 'h' ? "host" : "port", eq + 1,
			    fn - kn - 1);
		else if (sasl_eq(f, kn, (const unsigned char *)"auth", 4)) {
			sasl_oauth_auth(out, eq + 1, fn - kn - 1);
			auth = 1;
		} else
			sasl_unknown_field(out, f, kn, eq + 1, fn - kn - 1);
	}
	if (!auth)
		strbuf_adds(out, "; no auth= field");
}

static void
sasl_xoauth2_client(struct sasl *s, const unsigned char *p, size_t n,
    struct strbuf *out)
{
	const char *why;

	if (s->round > 0) {
		sasl_ack(s, out, p, n, "after the server's error");
		return;
	}
	if ((why = sasl_kv_check(p, n)) != NULL) {
		sasl_malformed(s, out, why, p, n);
		return;
	}
	sasl_kv_pairs(s, p, n, out, 0);
}

static void
sasl_oauthbearer_client(struct sasl *s, const unsigned char *p, size_t n,
    struct strbuf *out)
{
	struct sasl_gs2 g;
	struct strbuf zb = STRBUF_INIT;
	const char *why;

	if (s->round > 0) {
		/* RFC 7628 3.2.3: the client answers an error with ^A. */
		if (n == 1 && p[0] == SASL_KVSEP) {
			strbuf_adds(out,
			    "^A (acknowledges the server's error)");
			s->public = 1;
		} else
			sasl_mask(out, p, n);
		return;
	}
	if (sasl_gs2_parse(p, n, &g) != 0 || g.flag == 'p' ||
	    g.len >= n || p[g.len] != SASL_KVSEP) {
		sasl_malformed(s, out, "no valid GS2 header and ^A", p, n);
		return;
	}
	if ((why = sasl_kv_check(p + g.len + 1, n - g.len - 1)) != NULL) {
		sasl_malformed(s, out, why, p, n);
		return;
	}
	sasl_gs2_show(out, &g, &zb);
	if (g.authzid != NULL)
		sasl_set_user(s, (const unsigned char *)strbuf_str(&zb),
		    zb.len);
	strbuf_free(&zb);
	sasl_kv_pairs(s, p + g.len + 1, n - g.len - 1, out, 1);
}

/* Both send a JSON error as a challenge; the client must then reply. */
static int
sasl_oauth_server(struct sasl *s, const unsigned char *p, size_t n,
    struct strbuf *out)
{
	(void)s;
	if (n == 0 || p[0] != '{')
		return 0;
	sasl_field(out, "error", p, n);
	return 1;
}

/* ---- EXTERNAL (RFC 4422 appendix A): an optional authzid ---- */

static void
sasl_external_client(struct sasl *s, const unsigned char *p, size_t n,
    struct strbuf *out)
{
	if (s->round > 0) {
		sasl_mask(out, p, n);
		return;
	}
	sasl_field(out, "authzid", p, n);
	if (n == 0)
		strbuf_adds(out, " (derive from the certificate)");
	else
		sasl_set_user(s, p, n);
	s->public = 1;
}

static void
sasl_opaque_client(struct sasl *s, const unsigned char *p, size_t n,
    struct strbuf *out)
{
	(void)s;
	(void)p;
	strbuf_printf(out, "<opaque, %zu bytes>", n);
}

/* ---- entry points ---- */

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
		/* A prompt nobody can read may have asked for anything. */
		if (s->round == 0)
			s->prompt = SASL_PROMPT_OTHER;
		return;
	}
	if (s->def->server == NULL || !s->def->server(s, dec, declen, out)) {
		/* Some servers end prompts with NUL ("User Name\0"): text. */
		for (n = declen; n > 0 && dec[n - 1] == '\0'; n--)
			;
		if (sasl_printable(dec, n))
			sasl_quote(out, dec, declen);
		else
			strbuf_printf(out, "<%zu bytes binary>", declen);
	}
	b64_free(dec, declen);
}
