/*
 * status.c - meanings of SMTP reply codes, from constant tables.
 *
 * The wording follows the IANA "SMTP Enhanced Status Codes" registry (RFC
 * 3463, 4954, 5248, 6531, 6710, 7293, 7372, 7505, 8617, 8689) and RFC 5321
 * section 4.2.2, in lower case so that it reads as part of a sentence.
 */
#include <stdlib.h>
#include <string.h>

#include "status.h"

struct status_enh {
	unsigned int	 subject;
	unsigned int	 detail;
	const char	*text;
};

static const struct status_enh status_enh[] = {
	{ 0, 0, "other undefined status" },
	{ 1, 0, "other address status" },
	{ 1, 1, "bad destination mailbox address" },
	{ 1, 2, "bad destination system address" },
	{ 1, 3, "bad destination mailbox address syntax" },
	{ 1, 4, "destination mailbox address ambiguous" },
	{ 1, 5, "destination address valid" },
	{ 1, 6, "destination mailbox has moved, no forwarding address" },
	{ 1, 7, "bad sender's mailbox address syntax" },
	{ 1, 8, "bad sender's system address" },
	{ 1, 9, "message relayed to non-compliant mailer" },
	{ 1, 10, "recipient address has null MX" },
	{ 2, 0, "other or undefined mailbox status" },
	{ 2, 1, "mailbox disabled, not accepting messages" },
	{ 2, 2, "mailbox full" },
	{ 2, 3, "message length exceeds administrative limit" },
	{ 2, 4, "mailing list expansion problem" },
	{ 3, 0, "other or undefined mail system status" },
	{ 3, 1, "mail system full" },
	{ 3, 2, "system not accepting network messages" },
	{ 3, 3, "system not capable of selected features" },
	{ 3, 4, "message too big for system" },
	{ 3, 5, "system incorrectly configured" },
	{ 3, 6, "requested priority was changed" },
	{ 4, 0, "other or undefined network or routing status" },
	{ 4, 1, "no answer from host" },
	{ 4, 2, "bad connection" },
	{ 4, 3, "directory server failure" },
	{ 4, 4, "unable to route" },
	{ 4, 5, "mail system congestion" },
	{ 4, 6, "routing loop detected" },
	{ 4, 7, "delivery time expired" },
	{ 5, 0, "other or undefined protocol status" },
	{ 5, 1, "invalid command" },
	{ 5, 2, "syntax error" },
	{ 5, 3, "too many recipients" },
	{ 5, 4, "invalid command arguments" },
	{ 5, 5, "wrong protocol version" },
	{ 5, 6, "authentication exchange line is too long" },
	{ 6, 0, "other or undefined media error" },
	{ 6, 1, "media not supported" },
	{ 6, 2, "conversion required and prohibited" },
	{ 6, 3, "conversion required but not supported" },
	{ 6, 4, "conversion with loss performed" },
	{ 6, 5, "conversion failed" },
	{ 6, 6, "message content not available" },
	{ 6, 7, "non-ASCII addresses not permitted for that sender/recipient" },
	{ 6, 8, "UTF-8 string reply is required, but not permitted by the "
	    "SMTP client" },
	{ 6, 9, "UTF-8 header message cannot be transferred to one or more "
	    "recipients" },
	{ 6, 10, "UTF-8 reply required (deprecated duplicate of X.6.8)" },
	{ 7, 0, "other or undefined security status" },
	{ 7, 1, "delivery not authorized, message refused" },
	{ 7, 2, "mailing list expansion prohibited" },
	{ 7, 3, "security conversion required but not possible" },
	{ 7, 4, "security features not supported" },
	{ 7, 5, "cryptographic failure" },
	{ 7, 6, "cryptographic algorithm not supported" },
	{ 7, 7, "message integrity failure" },
	{ 7, 8, "authentication credentials invalid" },
	{ 7, 9, "authentication mechanism is too weak" },
	{ 7, 10, "encryption needed" },
	{ 7, 11, "encryption required for requested authentication mechanism" },
	{ 7, 12, "a password transition is needed" },
	{ 7, 13, "user account disabled" },
	{ 7, 14, "trust relationship required" },
	{ 7, 15, "priority level is too low" },
	{ 7, 16, "message is too big for the specified priority" },
	{ 7, 17, "mailbox owner has changed" },
	{ 7, 18, "domain owner has changed" },
	{ 7, 19, "RRVS test cannot be completed" },
	{ 7, 20, "no passing DKIM signature found" },
	{ 7, 21, "no acceptable DKIM signature found" },
	{ 7, 22, "no valid author-matched DKIM signature found" },
	{ 7, 23, "SPF validation failed" },
	{ 7, 24, "SPF validation error" },
	{ 7, 25, "reverse DNS validation failed" },
	{ 7, 26, "multiple authentication checks failed" },
	{ 7, 27, "sender address has null MX" },
	{ 7, 28, "mail flood detected" },
	{ 7, 29, "ARC validation failure" },
	{ 7, 30, "REQUIRETLS support required" },
};

/*
 * Success codes: the registry's "other or undefined ..." names describe
 * failures and would mislead under a 2xx reply, so X.Y.0 reads "success".
 */
static const char *const status_success[] = {
	"success",
	"success (address)",
	"success (mailbox)",
	"success (mail system)",
	"success (network or routing)",
	"success (protocol)",
	"success (message content)",
	"success (security)",
};

struct status_basic {
	int		 code;
	const char	*text;
};

static const struct status_basic status_basic_tab[] = {
	{ 211, "system status, or system help reply" },
	{ 214, "help message" },
	{ 220, "service ready" },
	{ 221, "service closing transmission channel" },
	{ 235, "authentication succeeded" },
	{ 250, "requested mail action okay, completed" },
	{ 251, "user not local; will forward" },
	{ 252, "cannot VRFY user, but will accept message and attempt "
	    "delivery" },
	{ 334, "authentication continues (server challenge)" },
	{ 354, "start mail input; end with <CRLF>.<CRLF>" },
	{ 421, "service not available, closing transmission channel" },
	{ 432, "a password transition is needed" },
	{ 450, "requested mail action not taken: mailbox unavailable" },
	{ 451, "requested action aborted: local error in processing" },
	{ 452, "requested action not taken: insufficient system storage" },
	{ 454, "temporary authentication failure" },
	{ 455, "server unable to accommodate parameters" },
	{ 500, "syntax error, command unrecognized" },
	{ 501, "syntax error in parameters or arguments" },
	{ 502, "command not implemented" },
	{ 503, "bad sequence of commands" },
	{ 504, "command parameter not implemented" },
	{ 521, "server does not accept mail" },
	{ 530, "authentication required" },
	{ 534, "authentication mechanism is too weak" },
	{ 535, "authentication credentials invalid" },
	{ 538, "encryption required for requested authentication mechanism" },
	{ 550, "requested action not taken: mailbox unavailable" },
	{ 551, "user not local" },
	{ 552, "requested mail action aborted: exceeded storage allocation" },
	{ 553, "requested action not taken: mailbox name not allowed" },
	{ 554, "transaction failed" },
	{ 555, "MAIL FROM/RCPT TO parameters not recognized or not "
	    "implemented" },
	{ 556, "domain does not accept mail" },
};

/*
 * Reply and command together. code 0 matches any code of the class given
 * by enh; enh NULL matches any (or no) enhanced code. First match wins, so
 * the specific rows come first.
 */
struct status_ctx {
	int		 code;
	const char	*enh;
	const char	*verb;
	const char	*text;
};

static const struct status_ctx status_ctx_tab[] = {
	{ 530, "5.7.0", "MAIL", "must authenticate (or issue STARTTLS) first" },
	{ 530, "5.7.0", "RCPT", "must authenticate (or issue STARTTLS) first" },
	{ 530, "5.7.0", "DATA", "must authenticate (or issue STARTTLS) first" },
	{ 530, "5.7.0", "AUTH", "must issue STARTTLS first" },
	{ 530, NULL, "MAIL", "must authenticate (or issue STARTTLS) first" },
	{ 530, NULL, "RCPT", "must authenticate (or issue STARTTLS) first" },
	{ 530, "5.7.11", "AUTH", "encryption required for requested "
	    "authentication mechanism" },
	{ 538, NULL, "AUTH", "encryption required for requested "
	    "authentication mechanism" },
	{ 554, "5.7.1", "RCPT", "relay access denied" },
	{ 550, "5.7.1", "RCPT", "recipient refused by policy (e.g. relay "
	    "access denied)" },
	{ 454, "4.7.1", "RCPT", "relay access denied (temporarily)" },
	{ 553, "5.7.1", "MAIL", "sender address not allowed for this login" },
	{ 535, NULL, "AUTH", "authentication credentials invalid" },
	{ 534, NULL, "AUTH", "authentication mechanism is too weak" },
	{ 454, NULL, "AUTH", "temporary authentication failure" },
	{ 454, NULL, "STARTTLS", "TLS not available due to temporary reason" },
	{ 504, NULL, "AUTH", "authentication mechanism not supported" },
	{ 501, "5.5.2", "AUTH", "cannot decode the client's response "
	    "(base64)" },
	{ 503, NULL, "AUTH", "AUTH not allowed now (already authenticated, "
	    "or in a mail transaction)" },
	{ 503, NULL, "MAIL", "bad sequence: MAIL before EHLO, or a "
	    "transaction already open" },
	{ 503, NULL, "RCPT", "bad sequence: RCPT needs MAIL first" },
	{ 503, NULL, "DATA", "bad sequence: DATA needs an accepted RCPT "
	    "first" },
	{ 554, "5.5.1", "DATA", "no valid recipients" },
	{ 554, NULL, "DATA", "no valid recipients, or the transaction "
	    "failed" },
	{ 552, NULL, "MAIL", "message size exceeds the server's limit" },
	{ 235, NULL, "AUTH", "authentication succeeded" },
	{ 501, NULL, "AUTH cancelled", "authentication cancelled by the "
	    "client (*)" },
	{ 554, NULL, "greeting", "the server refuses this connection" },
	{ 0, "2", ".", "message accepted" },
	{ 0, "2", "BDAT LAST", "message accepted" },
};

/* "D.S.D" with 1-3 digit subject and detail; returns 0 if malformed. */
static int
status_split(const char *code, unsigned int *cls, unsigned int *subject,
    unsigned int *detail)
{
	unsigned int v[3] = { 0, 0, 0 };
	size_t i, n;

	for (i = 0; i < 3; i++) {
		for (n = 0; *code >= '0' && *code <= '9'; code++, n++) {
			if (n == 3)
				return 0;
			v[i] = v[i] * 10 + (unsigned int)(*code - '0');
		}
		if (n == 0 || (i == 0 && n != 1))
			return 0;
		if (i < 2 && *code++ != '.')
			return 0;
	}
	if (*code != '\0')
		return 0;
	*cls = v[0];
	*subject = v[1];
	*detail = v[2];
	return 1;
}

const char *
status_enhanced(const char *code)
{
	unsigned int cls, subject, detail;
	size_t i;

	if (code == NULL || !status_split(code, &cls, &subject, &detail))
		return NULL;
	if (cls != 2 && cls != 4 && cls != 5)
		return NULL;
	if (cls == 2 && detail == 0 &&
	    subject < sizeof status_success / sizeof status_success[0])
		return status_success[subject];
	for (i = 0; i < sizeof status_enh / sizeof status_enh[0]; i++)
		if (status_enh[i].subject == subject &&
		    status_enh[i].detail == detail)
			return status_enh[i].text;
	return NULL;
}

const char *
status_basic(int code)
{
	size_t i;

	for (i = 0; i < sizeof status_basic_tab / sizeof status_basic_tab[0];
	    i++)
		if (status_basic_tab[i].code == code)
			return status_basic_tab[i].text;
	return NULL;
}

const char *
status_context(int code, const char *enh, const char *verb)
{
	const struct status_ctx *c;
	size_t i;

	if (verb == NULL)
		return NULL;
	if (enh != NULL && *enh == '\0')
		enh = NULL;
	for (i = 0; i < sizeof status_ctx_tab / sizeof status_ctx_tab[0];
	    i++) {
		c = &status_ctx_tab[i];
		if (strcmp(c->verb, verb) != 0)
			continue;
		if (c->code == 0) {
			/* A class-wide rule: the class digit of the code. */
			if (code / 100 != c->enh[0] - '0')
				continue;
		} else {
			if (c->code != code)
				continue;
			if (c->enh != NULL && (enh == NULL ||
			    strcmp(c->enh, enh) != 0))
				continue;
		}
		return c->text;
	}
	return NULL;
}

const char *
status_explain(int code, const char *enh, const char *verb)
{
	const char *s;

	if ((s = status_context(code, enh, verb)) != NULL)
		return s;
	if (enh != NULL && *enh != '\0' && (s = status_enhanced(enh)) != NULL)
		return s;
	if (code >= 400 && code < 600)
		return status_basic(code);
	return NULL;
}

int
status_parse(int code, const char *text, size_t len, char out[STATUS_ENH_MAX])
{
	unsigned int cls, subject, detail;
	size_t i = 4, start;

	out[0] = '\0';
	if (len < 4 + 5 || (text[3] != ' ' && text[3] != '-'))
		return 0;
	/* RFC 2034: the code follows the reply code and one space. */
	start = i;
	while (i < len && i - start < STATUS_ENH_MAX - 1 &&
	    ((text[i] >= '0' && text[i] <= '9') || text[i] == '.'))
		i++;
	if (i < len && text[i] != ' ' && text[i] != '\t')
		return 0;
	memcpy(out, text + start, i - start);
	out[i - start] = '\0';
	if (!status_split(out, &cls, &subject, &detail) ||
	    (int)cls != code / 100) {
		out[0] = '\0';
		return 0;
	}
	return 1;
}
