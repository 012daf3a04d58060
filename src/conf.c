/*
 * conf.c - the config file, read with libinih.
 *
 * libinih splits "key = value" lines and strips comments and blanks, but
 * three of its habits do not fit an error report with file:line for every
 * mistake (checked against Debian's libinih 55):
 *  - the handler gets no line number (INI_HANDLER_LINENO is 0 in the
 *    shared library, and defining it here would break the ABI);
 *  - a line longer than INI_MAX_LINE is cut short silently and its rest is
 *    read as a new line, which shifts every later line number;
 *  - an indented line is a continuation of the previous value, and a line
 *    that is not "key = value" only moves the return value, which holds
 *    the first error line alone.
 * So the file reaches libinih through conf_reader(), an fgets-style reader
 * that counts lines, reports over-long and malformed lines itself, strips
 * indentation, and handles the [section] lines (libinih does not call the
 * handler for an empty section, and cannot tell "[a] [b] [a]" from one
 * [a]). libinih then sees only comments, blanks and well-formed key lines.
 */
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>

#include "conf.h"
#include "hostport.h"
#include "options.h"
#include "xmalloc.h"

_Static_assert(CONF_KEYMAX >= 64, "keyline must cover options.given");

struct conf_parser {
	struct conf	*conf;
	FILE		*fp;
	char		*buf;
	size_t		 bufsize;
	int		 lineno;
	int		 failed;	/* read error: stop */
	long		 cur;		/* index in conf->services, -1: the top */
	uint64_t	 top_here;	/* keys set at the top */
	uint64_t	 top_failed;	/* keys at the top with a bad value */
};

void
conf_error(struct conf *conf, int line, const struct conf_service *cs,
    const char *fmt, ...)
{
	va_list ap;
	char *msg, *full;
	size_t i;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) == -1)
		abort();
	va_end(ap);
	if (line > 0)
		xasprintf(&full, "%s:%d: %s%s%s%s", conf->path, line,
		    cs != NULL ? "[" : "", cs != NULL ? cs->name : "",
		    cs != NULL ? "] " : "", msg);
	else
		xasprintf(&full, "%s: %s%s%s%s", conf->path,
		    cs != NULL ? "[" : "", cs != NULL ? cs->name : "",
		    cs != NULL ? "] " : "", msg);
	free(msg);

	/* Kept in line order, since the whole-file checks come last. */
	conf->errors = xrealloc(conf->errors,
	    (conf->nerrors + 1) * sizeof *conf->errors);
	conf->errlines = xrealloc(conf->errlines,
	    (conf->nerrors + 1) * sizeof *conf->errlines);
	for (i = conf->nerrors; i > 0 && conf->errlines[i - 1] > line; i--) {
		conf->errors[i] = conf->errors[i - 1];
		conf->errlines[i] = conf->errlines[i - 1];
	}
	conf->errors[i] = full;
	conf->errlines[i] = line;
	conf->nerrors++;
}

size_t
conf_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i, j, best, *d;
	size_t w = lb + 1, cost;

	/* Keys are short; anything long is no typo of one. */
	if (la > 64 || lb > 64)
		return (size_t)-1;
	d = xcalloc((la + 1) * w, sizeof *d);
	for (i = 0; i <= la; i++)
		d[i * w] = i;
	for (j = 0; j <= lb; j++)
		d[j] = j;
	for (i = 1; i <= la; i++) {
		for (j = 1; j <= lb; j++) {
			cost = a[i - 1] == b[j - 1] ? 0 : 1;
			best = d[(i - 1) * w + j] + 1;
			if (d[i * w + j - 1] + 1 < best)
				best = d[i * w + j - 1] + 1;
			if (d[(i - 1) * w + j - 1] + cost < best)
				best = d[(i - 1) * w + j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] &&
			    a[i - 2] == b[j - 1] &&
			    d[(i - 2) * w + j - 2] + 1 < best)
				best = d[(i - 2) * w + j - 2] + 1;
			d[i * w + j] = best;
		}
	}
	best = d[la * w + lb];
	free(d);
	return best;
}

/* A key that may hold a credential: its value is never repeated. */
static int
conf_secret_key(const char *key)
{
	static const char *words[] = { "pass", "secret", "token" };
	char lower[CONF_NAMEMAX + 1];
	size_t i;

	for (i = 0; key[i] != '\0' && i < sizeof lower - 1; i++)
		lower[i] = (char)tolower((unsigned char)key[i]);
	lower[i] = '\0';
	for (i = 0; i < sizeof words / sizeof words[0]; i++)
		if (strstr(lower, words[i]) != NULL)
			return 1;
	return 0;
}

static struct conf_service *
conf_current(struct conf_parser *p)
{
	return p->cur >= 0 ? &p->conf->services[p->cur] : NULL;
}

static void
conf_unknown_key(struct conf_parser *p, const char *key)
{
	const struct option_def *d, *best = NULL;
	char flagform[CONF_NAMEMAX + 1];
	size_t i, dist, bestdist = 3;

	/* A flag's name written as a key: "once", "no_verify", "ca-file". */
	for (i = 0; key[i] != '\0' && i < sizeof flagform - 1; i++)
		flagform[i] = key[i] == '_' ? '-' : key[i];
	flagform[i] = '\0';
	for (i = 0; i < option_ndefs; i++) {
		d = &option_defs[i];
		if (strcmp(d->name, flagform) != 0)
			continue;
		if (d->key != NULL && strcmp(d->key, key) != 0) {
			conf_error(p->conf, p->lineno, conf_current(p),
			    "unknown key \"%s\" (the flag --%s is the key "
			    "\"%s = %s\")", key, d->name, d->key,
			    d->set != NULL && d->argname == NULL ? "no" : "...");
			return;
		}
		if (d->key == NULL) {
			conf_error(p->conf, p->lineno, conf_current(p),
			    "\"%s\" is a command-line option only (--%s)", key,
			    d->name);
			return;
		}
	}
	for (i = 0; i < option_ndefs; i++) {
		d = &option_defs[i];
		if (d->key == NULL)
			continue;
		if ((dist = conf_distance(key, d->key)) < bestdist) {
			bestdist = dist;
			best = d;
		}
	}
	if (best != NULL)
		conf_error(p->conf, p->lineno, conf_current(p),
		    "unknown key \"%s\" (did you mean \"%s\"?)", key, best->key);
	else
		conf_error(p->conf, p->lineno, conf_current(p),
		    "unknown key \"%s\"", key);
}

/* libinih's handler: one "key = value" line, already checked for shape. */
static int
conf_handler(void *arg, const char *section, const char *key,
    const char *value)
{
	struct conf_parser *p = arg;
	struct conf *conf = p->conf;
	struct conf_service *cs = conf_current(p);
	const struct option_def *d;
	struct options *o;
	uint64_t *here, *failed, bit;
	int *keyline;
	size_t idx;
	char *why = NULL;

	if ((d = options_find_key(key)) == NULL) {
		conf_unknown_key(p, key);
		return 1;
	}
	idx = options_index(d);
	bit = 1ULL << idx;
	if (cs != NULL && d->scope == OPTION_GLOBAL) {
		conf_error(conf, p->lineno, cs, "%s: only allowed at the top of "
		    "the file, before the first [service]", key);
		return 1;
	}
	if (cs != NULL) {
		o = &cs->opts;
		here = &cs->here;
		failed = &cs->failed;
		keyline = cs->keyline;
	} else {
		o = &conf->global;
		here = &p->top_here;
		failed = &p->top_failed;
		keyline = conf->keyline;
	}
	if (*here & bit) {
		conf_error(conf, p->lineno, cs, "duplicate key \"%s\" (first set "
		    "on line %d)", key, keyline[idx]);
		return 1;
	}
	*here |= bit;
	keyline[idx] = p->lineno;
	*failed &= ~bit;
	if (d->set(o, value, &why) != 0) {
		*failed |= bit;
		if (conf_secret_key(key))
			conf_error(conf, p->lineno, cs, "%s: invalid value (not "
			    "shown: it may be a secret)", key);
		else
			conf_error(conf, p->lineno, cs, "%s: %s", key, why);
		free(why);
	}
	return 1;
}

static int
conf_valid_name(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > CONF_NAMEMAX)
		return 0;
	for (i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && strchr("_.-", s[i]) == NULL)
			return 0;
	return 1;
}

static void
conf_section(struct conf_parser *p, const char *line)
{
	struct conf *conf = p->conf;
	struct conf_service *cs;
	const char *end, *rest;
	size_t len, i;
	int bad = 0;

	end = strchr(line + 1, ']');
	rest = end != NULL ? end + 1 : "";
	rest += strspn(rest, " \t");
	if (end == NULL) {
		conf_error(conf, p->lineno, NULL, "section header without "
		    "closing \"]\"");
		bad = 1;
		len = 0;
	} else if (*rest != '\0' && *rest != '#' && *rest != ';') {
		conf_error(conf, p->lineno, NULL, "text after the section "
		    "header");
		bad = 1;
		len = (size_t)(end - line - 1);
	} else {
		len = (size_t)(end - line - 1);
		if (!conf_valid_name(line + 1, len)) {
			conf_error(conf, p->lineno, NULL, "bad service name "
			    "\"%.*s\" (1 to %d letters, digits, '_', '.' or '-')",
			    (int)(len > 80 ? 80 : len), line + 1, CONF_NAMEMAX);
			bad = 1;
		}
	}
	if (len > CONF_NAMEMAX)
		len = CONF_NAMEMAX;
	for (i = 0; !bad && i < conf->nservices; i++) {
		cs = &conf->services[i];
		if (!cs->bad && strlen(cs->name) == len &&
		    strncmp(cs->name, line + 1, len) == 0) {
			conf_error(conf, p->lineno, NULL, "duplicate section "
			    "[%.*s] (first on line %d)", (int)len, line + 1,
			    cs->line);
			bad = 1;
		}
	}

	/*
	 * A bad header still opens a section, so that its keys are checked
	 * and none of them lands in the service above it.
	 */
	conf->services = xrealloc(conf->services,
	    (conf->nservices + 1) * sizeof *conf->services);
	cs = &conf->services[conf->nservices];
	memset(cs, 0, sizeof *cs);
	memcpy(cs->name, line + 1, len);
	cs->name[len] = '\0';
	cs->line = p->lineno;
	cs->bad = bad;
	memcpy(cs->keyline, conf->keyline, sizeof cs->keyline);
	cs->failed = p->top_failed;
	options_copy(&cs->opts, &conf->global);
	p->cur = (long)conf->nservices++;
}

/* libinih's reader: one line per call, see the comment at the top. */
static char *
conf_reader(char *str, int num, void *arg)
{
	struct conf_parser *p = arg;
	struct conf *conf = p->conf;
	ssize_t n;
	size_t eq;
	char *line;
	int err;

	if (p->failed)
		return NULL;
	errno = 0;
	if ((n = getline(&p->buf, &p->bufsize, p->fp)) == -1) {
		err = errno;
		if (ferror(p->fp)) {
			conf_error(conf, p->lineno + 1, NULL, "read error: %s",
			    strerror(err));
			p->failed = 1;
		}
		return NULL;
	}
	p->lineno++;
	line = p->buf;
	if (n > 0 && line[n - 1] == '\n')
		line[--n] = '\0';
	if (n > 0 && line[n - 1] == '\r')
		line[--n] = '\0';
	snprintf(str, (size_t)num, "\n");
	if (p->lineno == 1 && strncmp(line, "\xef\xbb\xbf", 3) == 0) {
		line += 3;
		n -= 3;
	}
	/* Never echo the line: it may be a password pasted in. */
	if (memchr(line, '\0', (size_t)n) != NULL) {
		conf_error(conf, p->lineno, conf_current(p), "NUL byte in line");
		return str;
	}
	/* libinih needs room for "\r\n\0" on top of the text. */
	if (n > num - 3) {
		conf_error(conf, p->lineno, conf_current(p), "line too long "
		    "(%zd bytes, at most %d)", n, num - 3);
		return str;
	}
	line += strspn(line, " \t");
	if (*line == '\0' || *line == '#' || *line == ';')
		return str;
	if (*line == '[') {
		conf_section(p, line);
		return str;
	}
	/* libinih also splits on ':'; only "key = value" is documented. */
	eq = strcspn(line, "=:");
	if (line[eq] != '=' || eq == 0) {
		conf_error(conf, p->lineno, conf_current(p), "expected "
		    "\"key = value\" or \"[service]\"");
		return str;
	}
	snprintf(str, (size_t)num, "%s\n", line);
	return str;
}

int
conf_line(const struct conf *conf, const struct conf_service *cs,
    const char *key)
{
	const struct option_def *d = options_find_key(key);
	int line;

	if (d == NULL)
		abort();
	line = cs != NULL ? cs->keyline[options_index(d)] :
	    conf->keyline[options_index(d)];
	if (line == 0 && cs != NULL)
		line = cs->line;
	return line;
}

/* Two listen addresses that cannot both be bound. */
static int
conf_same_listen(const struct hostport *a, const struct hostport *b)
{
	int a_any, b_any, a_v6, b_v6;

	/* Port 0: the kernel picks a free port for each. */
	if (a->portnum == 0 || b->portnum == 0 || a->portnum != b->portnum)
		return 0;
	if (strcmp(a->host, b->host) == 0)
		return 1;
	a_v6 = strchr(a->host, ':') != NULL;
	b_v6 = strchr(b->host, ':') != NULL;
	a_any = strcmp(a->host, "0.0.0.0") == 0 || strcmp(a->host, "::") == 0;
	b_any = strcmp(b->host, "0.0.0.0") == 0 || strcmp(b->host, "::") == 0;
	return a_v6 == b_v6 && (a_any || b_any);
}

#define KEYBIT(key)	(1ULL << options_index(options_find_key(key)))
#define KEYLINE(cs, key) ((cs)->keyline[options_index(options_find_key(key))])

/*
 * The checks that need the whole file. A key whose value was already
 * reported as wrong is not reported again as missing or clashing.
 */
static void
conf_check(struct conf *conf)
{
	struct conf_service *cs, *other;
	char where[300];
	size_t i, j;
	int line;

	for (i = 0; i < conf->nservices; i++) {
		cs = &conf->services[i];
		if (cs->bad)
			continue;
		options_finish(&cs->opts);
		if (KEYLINE(cs, "upstream") == 0)
			conf_error(conf, cs->line, cs, "no upstream (set "
			    "\"upstream = HOST[:PORT]\" here or at the top)");
		if (KEYLINE(cs, "listen") == 0) {
			conf_error(conf, cs->line, cs, "no listen address (set "
			    "\"listen = [ADDR:]PORT\" here or at the top)");
			continue;
		}
		if (cs->failed & KEYBIT("listen"))
			continue;
		line = conf_line(conf, cs, "listen");
		hostport_fmt(&cs->opts.listen, where, sizeof where);
		if (cs->opts.nallow == 0 && !(cs->failed & KEYBIT("allow")) &&
		    !options_listen_is_loopback(&cs->opts))
			conf_error(conf, line, cs, "listen %s is not a loopback "
			    "address: add \"allow = CIDR ...\" for the clients "
			    "that may connect", where);
		for (j = 0; j < i; j++) {
			other = &conf->services[j];
			if (other->bad || KEYLINE(other, "listen") == 0 ||
			    (other->failed & KEYBIT("listen")))
				continue;
			if (conf_same_listen(&cs->opts.listen,
			    &other->opts.listen)) {
				conf_error(conf, line, cs, "listen %s is already "
				    "used by [%s] (line %d)", where, other->name,
				    conf_line(conf, other, "listen"));
				break;
			}
		}
	}
}

int
conf_load_file(struct conf *conf, const char *name, FILE *fp)
{
	struct conf_parser p;
	struct conf_service *cs;
	int r;

	memset(conf, 0, sizeof *conf);
	conf->path = xstrdup(name);
	options_defaults(&conf->global);

	memset(&p, 0, sizeof p);
	p.conf = conf;
	p.fp = fp;
	p.cur = -1;
	r = ini_parse_stream(conf_reader, &p, conf_handler, &p);
	free(p.buf);
	if (r == -2)
		conf_error(conf, 0, NULL, "out of memory");
	/* The rest of the file is unknown: "no upstream" and such would mislead. */
	if (p.failed)
		return (int)conf->nerrors;

	/* No section: the top is the one service, named "default". */
	if (conf->nservices == 0) {
		conf->services = xcalloc(1, sizeof *conf->services);
		cs = &conf->services[0];
		strcpy(cs->name, "default");
		memcpy(cs->keyline, conf->keyline, sizeof cs->keyline);
		cs->failed = p.top_failed;
		options_copy(&cs->opts, &conf->global);
		conf->nservices = 1;
		if (KEYLINE(cs, "upstream") == 0 && KEYLINE(cs, "listen") == 0) {
			conf_error(conf, 0, NULL, "no service: add a [name] "
			    "section with \"upstream\" and \"listen\", or set "
			    "both at the top for a single service");
			return (int)conf->nerrors;
		}
	}
	conf_check(conf);
	return (int)conf->nerrors;
}

/* The file could not be read at all: one error, with the reason. */
static int
conf_unreadable(struct conf *conf, const char *path, int err)
{
	memset(conf, 0, sizeof *conf);
	conf->path = xstrdup(path);
	options_defaults(&conf->global);
	conf_error(conf, 0, NULL, "%s", strerror(err));
	return (int)conf->nerrors;
}

int
conf_load(struct conf *conf, const char *path)
{
	struct stat st;
	FILE *fp;
	int fd, n, err;

	/*
	 * errno is copied at once: the allocations and option defaults that
	 * build the error may change it (they turned ENOENT into "Success").
	 */
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1)
		return conf_unreadable(conf, path, errno);
	/* Linux opens a directory for reading; only read() fails, later. */
	if (fstat(fd, &st) == -1)
		err = errno;
	else
		err = S_ISDIR(st.st_mode) ? EISDIR : 0;
	if (err != 0) {
		close(fd);
		return conf_unreadable(conf, path, err);
	}
	if ((fp = fdopen(fd, "r")) == NULL) {
		err = errno;
		close(fd);
		return conf_unreadable(conf, path, err);
	}
	n = conf_load_file(conf, path, fp);
	fclose(fp);
	return n;
}

void
conf_free(struct conf *conf)
{
	size_t i;

	for (i = 0; i < conf->nservices; i++)
		options_free(&conf->services[i].opts);
	free(conf->services);
	for (i = 0; i < conf->nerrors; i++)
		free(conf->errors[i]);
	free(conf->errors);
	free(conf->errlines);
	options_free(&conf->global);
	free(conf->path);
	memset(conf, 0, sizeof *conf);
}
