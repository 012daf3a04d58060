/*
 * session_report.c - what a session writes to the transcript: its own
 * dialogue before the relay, the TLS facts, the parser's records within the
 * session's limits, the verdict and the summary. Every record goes through
 * session_record(), which names the session and its service.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "escape.h"
#include "session.h"
#include "session_int.h"
#include "smtp.h"
#include "strbuf.h"
#include "tls.h"
#include "transcript.h"
#include "txlimit.h"

/* The service's name in records: NULL without a config file. */
#define SESSION_SERVICE(s)	((s)->svc->name)

void
session_record(struct session *s, char dir, const char *kind, int code,
    const struct tx_field *f, size_t nf, const char *text, size_t len)
{
	transcript_record(s->id, SESSION_SERVICE(s), dir, kind, code, f, nf,
	    text, len);
}

void
session_recordf(struct session *s, char dir, const char *kind, int code,
    const struct tx_field *f, size_t nf, const char *fmt, ...)
{
	struct strbuf sb;
	va_list ap;

	strbuf_init(&sb, 0);
	va_start(ap, fmt);
	strbuf_vprintf(&sb, fmt, ap);
	va_end(ap);
	session_record(s, dir, kind, code, f, nf, strbuf_str(&sb), sb.len);
	strbuf_free(&sb);
}

void
session_note(struct session *s, const char *fmt, ...)
{
	struct strbuf sb;
	va_list ap;

	strbuf_init(&sb, 0);
	va_start(ap, fmt);
	strbuf_vprintf(&sb, fmt, ap);
	va_end(ap);
	session_record(s, '*', "note", 0, NULL, 0, strbuf_str(&sb), sb.len);
	strbuf_free(&sb);
}

void
session_record_close(struct session *s, const char *why)
{
	struct tx_field f[] = { TXF_STR("reason", why) };

	session_recordf(s, '*', "close", 0, f, TX_NFIELDS(f), "close: %s", why);
}

void
session_report_connect(struct session *s)
{
	struct tx_field f[] = {
		TXF_STR("client", s->client_addr),
		TXF_STR("local", s->local_addr),
	};

	session_recordf(s, '*', "connect", 0, f, TX_NFIELDS(f),
	    "connect from %s to %s", s->client_addr, s->local_addr);
}

void
session_report_tls(struct session *s, SSL *ssl)
{
	X509 *cert = SSL_get0_peer_certificate(ssl);
	struct tls_cert_facts cf;
	struct strbuf sb, why, detail;
	int ok;

	strbuf_init(&sb, 0);
	strbuf_adds(&sb, "TLS ");
	tls_describe_session(ssl, &sb);
	{
		struct tx_field f[] = {
			TXF_STR("event", "established"),
			TXF_STR("version", SSL_get_version(ssl)),
			TXF_STR("cipher", SSL_get_cipher_name(ssl)),
		};

		session_record(s, '*', "tls", 0, f,
		    TX_NFIELDS(f), sb.buf, sb.len);
	}
	strbuf_reset(&sb);
	memset(&cf, 0, sizeof cf);
	if (cert != NULL) {
		strbuf_adds(&sb, "certificate ");
		tls_describe_cert(cert, &sb);
		tls_cert_facts(cert, &cf);
	} else
		strbuf_adds(&sb, "certificate: none presented");
	{
		struct tx_field f[] = {
			TXF_BOOL("presented", cert != NULL),
			TXF_STR("subject", cert != NULL ? cf.subject : NULL),
			TXF_STR("issuer", cert != NULL ? cf.issuer : NULL),
			TXF_STR("san", cert != NULL && cf.san[0] != '\0' ?
			    cf.san : NULL),
			TXF_STR("not_after", cert != NULL ? cf.not_after : NULL),
		};

		session_record(s, '*', "certificate",
		    0, f, TX_NFIELDS(f), sb.buf, sb.len);
	}
	strbuf_reset(&sb);
	strbuf_init(&why, 0);
	strbuf_init(&detail, 0);
	ok = s->peer.nerrors == 0 && cert != NULL &&
	    SSL_get_verify_result(ssl) == X509_V_OK;
	if (ok)
		strbuf_printf(&sb, "verification ok (name \"%s\")", s->peer.name);
	else {
		strbuf_adds(&sb, "verification FAILED: ");
		tls_describe_verify(&s->peer, &sb, &sb);
		if (s->peer.nerrors > 1)
			strbuf_printf(&sb, " (and %d more errors)", s->peer.nerrors - 1);
		strbuf_adds(&sb, "; continuing because of --no-verify");
		tls_describe_verify(&s->peer, &why, &detail);
	}
	{
		struct tx_field f[] = {
			TXF_STR("result", ok ? "ok" : "failed"),
			TXF_STR("name", s->peer.name),
			TXF_STR("reason", ok ? NULL : strbuf_str(&why)),
			TXF_STR("detail", ok ? NULL : strbuf_str(&detail)),
			TXF_NUM("errors", s->peer.nerrors),
			TXF_BOOL("enforced", s->peer.enforce),
		};

		session_record(s, '*', "verify", 0, f,
		    TX_NFIELDS(f), sb.buf, sb.len);
	}
	strbuf_free(&why);
	strbuf_free(&detail);
	strbuf_free(&sb);
}

static const char *const session_side_name[TXLIMIT_NSIDES] = {
	"client", "server", "smtptap",
};

/* A line counted rather than written: say how often, once it changes. */
static void
session_repeats_note(struct session *s, enum txlimit_side side,
    unsigned long n, const char *line)
{
	struct tx_field f[] = {
		TXF_STR("side", session_side_name[side]), TXF_NUM("repeats", n),
	};

	if (!txlimit_admit(&s->limit))
		return;
	if (side == TXLIMIT_NOTE)
		session_recordf(s, '*', "note", 0, f,
		    TX_NFIELDS(f), "the note \"%s\" was repeated %lu more times",
		    line, n);
	else
		session_recordf(s, '*', "note", 0, f,
		    TX_NFIELDS(f), "the %s sent the line \"%s\" %lu more times",
		    session_side_name[side], line, n);
}

/*
 * Every record the peers cause goes through here: repeats are counted and
 * the session's budget is kept (txlimit.h), so that a client cannot make
 * the transcript many times larger than what it sends.
 */
static void
session_peer_record(struct session *s, enum txlimit_side side, char dir,
    const char *kind, int code, const struct tx_field *f, size_t nf,
    const char *text, size_t len)
{
	unsigned long n;
	const char *prev;

	if (txlimit_repeat(&s->limit, side, kind, code, text, len, &n, &prev))
		return;
	if (n > 0)
		session_repeats_note(s, side, n, prev);
	if (txlimit_admit(&s->limit)) {
		session_record(s, dir, kind, code, f,
		    nf, text, len);
		return;
	}
	if (s->limit.unwritten == 1)
		session_recordf(s, '*', "note", 0,
		    NULL, 0, "transcript limit: this session wrote %lu records; "
		    "later ones are counted, not written (max_records)",
		    s->limit.written);
}

/* The session ends: the repeats not reported yet. */
void
session_repeats_flush(struct session *s)
{
	enum txlimit_side side;
	unsigned long n;
	const char *prev;

	for (side = 0; side < TXLIMIT_NSIDES; side++)
		if ((n = txlimit_take_repeats(&s->limit, side, &prev)) > 0)
			session_repeats_note(s, side, n, prev);
}

/* Transcript records from the parser of the relayed bytes. */
void
session_parser_cb(const struct smtp_rec *rec, void *arg)
{
	struct session *s = arg;
	struct tx_field side[] = {
		TXF_STR("side", rec->dir == SMTP_CLIENT ? "client" : "server"),
	};
	const char *kind;
	char dir;

	switch (rec->kind) {
	case SMTP_REC_COMMAND:
		kind = "command";
		break;
	case SMTP_REC_AUTH:
		kind = "auth";
		break;
	case SMTP_REC_REPLY:
		kind = "reply";
		break;
	case SMTP_REC_HEADER:
		kind = "header";
		break;
	default:
		kind = "note";
		break;
	}
	/* The parser's own remarks are smtptap's words ("*"), about a side. */
	if (rec->kind == SMTP_REC_NOTE)
		dir = '*';
	else
		dir = rec->dir == SMTP_CLIENT ? 'C' : 'S';
	session_peer_record(s, rec->kind == SMTP_REC_NOTE ? TXLIMIT_NOTE :
	    rec->dir == SMTP_CLIENT ? TXLIMIT_CLIENT : TXLIMIT_SERVER, dir, kind,
	    rec->code, side, rec->kind == SMTP_REC_NOTE ? 1 : 0, rec->text,
	    rec->len);
}

/*
 * A protocol line smtptap itself sent or received before the relay: who is
 * "smtptap" or "upstream", to is who it was for.
 */
void
session_note_line(struct session *s, const char *who, const char *to,
    const char *line, size_t len)
{
	struct tx_field f[] = { TXF_STR("who", who), TXF_STR("to", to) };
	struct strbuf sb;

	strbuf_init(&sb, 0);
	strbuf_printf(&sb, "%s> ", who);
	escape_append_max(&sb, line, len, 512);
	session_record(s, '*', "dialogue", 0, f,
	    TX_NFIELDS(f), sb.buf, sb.len);
	strbuf_free(&sb);
}

/* One line a person can act on, from the parser; right before the summary. */
void
session_verdict(struct session *s)
{
	struct strbuf sb;

	/* Before the relay, or failed: the summary's "failed:" says it all. */
	if (s->parser == NULL || s->failure != NULL || s->state < SESSION_RELAY)
		return;
	strbuf_init(&sb, 0);
	smtp_verdict(s->parser, &sb);
	{
		struct tx_field f[] = { TXF_STR("verdict", strbuf_str(&sb)) };

		session_recordf(s, '*', "verdict", 0,
		    f, TX_NFIELDS(f), "verdict: %s", strbuf_str(&sb));
	}
	strbuf_free(&sb);
}

void
session_summary(struct session *s)
{
	const struct smtp_stats *st = s->parser ? smtp_stats(s->parser) : NULL;
	int auth = st != NULL && st->auth_mech[0] != '\0';
	double elapsed = session_elapsed(s);
	struct tx_field f[] = {
		TXF_NUM("duration_ms", (long long)(elapsed * 1000)),
		TXF_NUM("bytes_c2s", s->bytes_c2s),
		TXF_NUM("bytes_s2c", s->bytes_s2c),
		TXF_STR("tls", s->tls_up ? s->tls_version : NULL),
		TXF_STR("auth_mech", auth ? st->auth_mech : NULL),
		TXF_STR("auth_user", auth && st->auth_user[0] != '\0' ?
		    st->auth_user : NULL),
		TXF_NUM("auth_code", auth ? st->auth_code : 0),
		TXF_NUM("messages_accepted", st ? st->messages_accepted : 0),
		TXF_NUM("messages_rejected", st ? st->messages_rejected : 0),
		TXF_STR("failure", s->failure),
		TXF_NUM("records_unwritten", s->limit.unwritten),
	};
	struct strbuf sb;

	strbuf_init(&sb, 0);
	strbuf_printf(&sb, "summary: duration %.3fs, client→server %llu bytes, "
	    "server→client %llu bytes, tls %s", elapsed,
	    (unsigned long long)s->bytes_c2s, (unsigned long long)s->bytes_s2c,
	    s->tls_up ? s->tls_version : "none");
	if (auth) {
		strbuf_printf(&sb, ", auth %s", st->auth_mech);
		if (st->auth_user[0] != '\0')
			strbuf_printf(&sb, " user=\"%s\"", st->auth_user);
		if (st->auth_code != 0)
			strbuf_printf(&sb, " %d (%s)", st->auth_code,
			    st->auth_code / 100 == 2 ? "accepted" : "rejected");
		else
			strbuf_adds(&sb, " (no answer)");
	} else
		strbuf_adds(&sb, ", auth none");
	strbuf_printf(&sb, ", messages %llu accepted %llu rejected",
	    st ? (unsigned long long)st->messages_accepted : 0ULL,
	    st ? (unsigned long long)st->messages_rejected : 0ULL);
	if (s->limit.unwritten > 0)
		strbuf_printf(&sb, ", %lu records not written (max_records)",
		    s->limit.unwritten);
	if (s->failure != NULL)
		strbuf_printf(&sb, ", failed: %s", s->failure);
	session_record(s, '*', "summary", 0, f,
	    TX_NFIELDS(f), sb.buf, sb.len);
	strbuf_free(&sb);
}
