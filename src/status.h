/*
 * status.h - what SMTP reply codes mean, for the person reading a transcript.
 *
 * Pure lookups over constant tables: RFC 5321 section 4.2 for the basic
 * three-digit codes, RFC 3463 and the IANA "SMTP Enhanced Status Codes"
 * registry for class.subject.detail codes, and a few pairs of reply and
 * command whose meaning together is sharper than either alone.
 */
#ifndef SMTPTAP_STATUS_H
#define SMTPTAP_STATUS_H

#include <stddef.h>

/* Longest enhanced code kept: "5.999.999" and its NUL. */
#define STATUS_ENH_MAX	10

/*
 * The registry name of an enhanced code such as "5.7.8", lower case; NULL
 * when the class is not 2, 4 or 5 or the subject.detail is not registered.
 */
const char	*status_enhanced(const char *code);

/* The RFC 5321 meaning of a basic reply code; NULL if unassigned. */
const char	*status_basic(int code);

/*
 * A meaning that needs the command the reply answers ("MAIL", "RCPT",
 * "DATA", "." for the end of data, "BDAT", "AUTH", "STARTTLS", ...), e.g.
 * 554 5.7.1 to RCPT is "relay access denied". enh may be NULL or "".
 * NULL when no rule applies.
 */
const char	*status_context(int code, const char *enh, const char *verb);

/*
 * The best explanation: context, else enhanced, else basic for failures
 * (4xx and 5xx; plain success codes need none). NULL if there is nothing
 * worth adding.
 */
const char	*status_explain(int code, const char *enh, const char *verb);

/*
 * The enhanced code at the start of reply text (after "NNN " or "NNN-"),
 * when its class matches the reply's first digit (RFC 2034 section 4).
 * Copies it to out and returns 1, else returns 0 and out is "".
 */
int		 status_parse(int code, const char *text, size_t len,
		     char out[STATUS_ENH_MAX]);

#endif
