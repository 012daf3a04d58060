/*
 * smtptap.c - main(): settings, one service per config section, the loop.
 *
 * Exit status follows sysexits(3): 64 for a usage error, 78 for a
 * configuration error, 1 for a runtime failure such as a port in use.
 */
#include <sys/prctl.h>
#include <sys/types.h>

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>

#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include "conf.h"
#include "listen.h"
#include "log.h"
#include "options.h"
#include "session.h"
#include "tls.h"
#include "transcript.h"
#include "xmalloc.h"

#define EXIT_USAGE	64
#define EXIT_CONFIG	78

static int stopping;

static void
smtptap_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct event_base *base = arg;

	/* A second signal while stopping exits at once. */
	if (stopping++)
		exit(0);
	transcript_note(TRANSCRIPT_NOSESSION, "signal %d: stopping", (int)sig);
	event_base_loopexit(base, NULL);
}

static void
smtptap_once_cb(struct service *svc)
{
	event_base_loopexit(svc->base, NULL);
}

static void
smtptap_libevent_log(int severity, const char *msg)
{
	if (severity >= EVENT_LOG_WARN)
		log_warnx("libevent: %s", msg);
}

static struct evdns_base *
smtptap_dns(struct event_base *base, const char *path, char **cause)
{
	struct evdns_base *dns;
	int r;

	if ((dns = evdns_base_new(base, 0)) == NULL) {
		xasprintf(cause, "cannot start the resolver");
		return NULL;
	}
	r = evdns_base_resolv_conf_parse(dns, DNS_OPTIONS_ALL,
	    path != NULL ? path : "/etc/resolv.conf");
	/* 1 = file missing: evdns then asks 127.0.0.1, as libc would. */
	if (r != 0 && !(r == 1 && path == NULL)) {
		xasprintf(cause, "cannot use resolver configuration %s (error %d)",
		    path != NULL ? path : "/etc/resolv.conf", r);
		evdns_base_free(dns, 0);
		return NULL;
	}
	return dns;
}


/* What main() owns: the settings, the services and what they share. */
struct smtptap {
	struct options		 opts;		/* the command line */
	struct conf		 conf;		/* its services; one without -c */
	int			 named;		/* from a file: services have names */
	struct service		*svcs;
	struct listener		**listeners;
	struct event_base	*base;
	struct evdns_base	*dns;
	char			 hostname[256];
};

/* Releases everything; safe at any point of start-up. */
static void
smtptap_free(struct smtptap *st)
{
	size_t i;

	for (i = 0; st->svcs != NULL && i < st->conf.nservices; i++) {
		if (st->listeners != NULL)
			listen_free(st->listeners[i]);
		SSL_CTX_free(st->svcs[i].ssl_ctx);
	}
	free(st->listeners);
	free(st->svcs);
	if (st->dns != NULL)
		evdns_base_free(st->dns, 0);
	if (st->base != NULL)
		event_base_free(st->base);
	transcript_close();
	conf_free(&st->conf);
	options_free(&st->opts);
}

/* Start-up failed: one line that says why, everything released. */
static int
smtptap_exit(struct smtptap *st, char *cause, int status)
{
	if (cause != NULL)
		fprintf(stderr, "smtptap: %s%s\n", cause, status == EXIT_USAGE ?
		    "\nTry 'smtptap --help'." : "");
	free(cause);
	smtptap_free(st);
	return status;
}

/*
 * A problem found after parsing (a CA file, a user): with -c it is a
 * config error at the line that set the key; without, it names the flag.
 */
static void
smtptap_problem(struct smtptap *st, const struct conf_service *cs,
    const char *key, const char *fmt, ...) PRINTFLIKE(4, 5);

static void
smtptap_problem(struct smtptap *st, const struct conf_service *cs,
    const char *key, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) == -1)
		fatalx("out of memory");
	va_end(ap);
	if (st->named)
		conf_error(&st->conf, conf_line(&st->conf, cs, key), cs, "%s",
		    msg);
	else
		fprintf(stderr, "smtptap: %s\n", msg);
	free(msg);
}

/* Checks what conf.c cannot (it reads nothing but the file); 0 if all is well. */
static int
smtptap_prepare(struct smtptap *st)
{
	struct conf_service *cs;
	struct service *svc;
	const char *user = st->conf.global.user;
	char *cause = NULL;
	size_t i;
	int bad = 0;

	if (user != NULL && getpwnam(user) == NULL) {
		smtptap_problem(st, NULL, "user", "user \"%s\": no such user",
		    user);
		bad = 1;
	}
	st->svcs = xcalloc(st->conf.nservices, sizeof *st->svcs);
	if (gethostname(st->hostname, sizeof st->hostname) != 0 ||
	    st->hostname[0] == '\0' ||
	    strpbrk(st->hostname, " \t\r\n") != NULL)
		strcpy(st->hostname, "localhost");
	st->hostname[sizeof st->hostname - 1] = '\0';
	for (i = 0; i < st->conf.nservices; i++) {
		cs = &st->conf.services[i];
		svc = &st->svcs[i];
		svc->name = st->named ? cs->name : NULL;
		svc->opts = &cs->opts;
		svc->ehlo = cs->opts.ehlo != NULL ? cs->opts.ehlo : st->hostname;
		svc->all = st->svcs;
		svc->nall = st->conf.nservices;
		/* Each service its own context: ca_file may differ. */
		if (cs->opts.tls != TLS_MODE_NONE &&
		    (svc->ssl_ctx = tls_ctx_new(&cs->opts, &cause)) == NULL) {
			smtptap_problem(st, cs, cs->opts.ca_file != NULL ?
			    "ca_file" : cs->opts.ca_path != NULL ? "ca_path" :
			    "tls", "%s", cause);
			free(cause);
			cause = NULL;
			bad = 1;
		}
	}
	return bad;
}

/* After binding: root gives way to user= for good. */
static int
smtptap_drop(const char *user, char **cause)
{
	struct passwd *pw;

	if (user == NULL)
		return 0;
	if (getuid() != 0 && geteuid() != 0) {
		transcript_note(TRANSCRIPT_NOSESSION, "user %s: not started as "
		    "root, running as uid %lu", user, (unsigned long)getuid());
		return 0;
	}
	if ((pw = getpwnam(user)) == NULL) {
		xasprintf(cause, "user %s: no such user", user);
		return -1;
	}
	if (setgroups(1, &pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
	    setuid(pw->pw_uid) != 0) {
		xasprintf(cause, "cannot switch to user %s: %s", user,
		    strerror(errno));
		return -1;
	}
	/* A drop that can be undone is no drop. */
	if (pw->pw_uid != 0 && setuid(0) != -1) {
		xasprintf(cause, "switched to user %s, but could get root back",
		    user);
		return -1;
	}
	transcript_note(TRANSCRIPT_NOSESSION, "running as user %s (uid %lu)",
	    user, (unsigned long)pw->pw_uid);
	return 0;
}

static void
smtptap_announce(struct smtptap *st, size_t i)
{
	const struct service *svc = &st->svcs[i];
	const struct options *o = svc->opts;
	char upstream[300];

	hostport_fmt(&o->upstream, upstream, sizeof upstream);
	transcript_note(TRANSCRIPT_NOSESSION, "smtptap %s %s%s%slistening on %s, "
	    "upstream %s (%s%s)", PACKAGE_VERSION, svc->name != NULL ? "[" : "",
	    svc->name != NULL ? svc->name : "", svc->name != NULL ? "] " : "",
	    listen_address(st->listeners[i]), upstream, options_tls_name(o->tls),
	    o->tls != TLS_MODE_NONE && !o->verify ?
	    ", verification not enforced" : "");
	if (o->tls == TLS_MODE_NONE)
		transcript_note(TRANSCRIPT_NOSESSION, "warning: %s%s%stls none: "
		    "the upstream connection is not encrypted",
		    svc->name != NULL ? "[" : "", svc->name != NULL ? svc->name :
		    "", svc->name != NULL ? "] " : "--");
}

int
main(int argc, char **argv)
{
	struct smtptap st;
	struct event *sigint, *sigterm;
	const struct options *g;
	char *cause = NULL, *where;
	size_t i;

	/* Memory holds credentials: no core dumps, no same-uid ptrace. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	signal(SIGPIPE, SIG_IGN);
	log_init(getenv("SMTPTAP_DEBUG") != NULL);

	memset(&st, 0, sizeof st);
	options_defaults(&st.opts);
	switch (options_parse(&st.opts, argc, argv, &cause)) {
	case OPTIONS_HELP:
		options_help(stdout);
		return smtptap_exit(&st, NULL, 0);
	case OPTIONS_VERSION:
		printf("smtptap %s (libevent %s, %s)\n", PACKAGE_VERSION,
		    event_get_version(), OpenSSL_version(OPENSSL_VERSION));
		return smtptap_exit(&st, NULL, 0);
	case OPTIONS_USAGE:
		return smtptap_exit(&st, cause, EXIT_USAGE);
	case OPTIONS_RUN:
		break;
	}

	if (st.opts.config != NULL) {
		st.named = 1;
		conf_load(&st.conf, st.opts.config);
	} else {
		/* The command line is one service without a name. */
		st.conf.services = xcalloc(1, sizeof *st.conf.services);
		st.conf.nservices = 1;
		options_copy(&st.conf.services[0].opts, &st.opts);
		options_copy(&st.conf.global, &st.opts);
	}
	/* Also with file errors: every mistake is reported in one run. */
	if (smtptap_prepare(&st) != 0 && !st.named)
		return smtptap_exit(&st, NULL, EXIT_CONFIG);
	if (st.conf.nerrors != 0) {
		for (i = 0; i < st.conf.nerrors; i++)
			fprintf(stderr, "%s\n", st.conf.errors[i]);
		fprintf(stderr, "%s: %zu error%s\n", st.conf.path,
		    st.conf.nerrors, st.conf.nerrors == 1 ? "" : "s");
		return smtptap_exit(&st, NULL, EXIT_CONFIG);
	}
	if (st.opts.check_config) {
		printf("%s: OK (%zu service%s)\n", st.conf.path,
		    st.conf.nservices, st.conf.nservices == 1 ? "" : "s");
		return smtptap_exit(&st, NULL, 0);
	}
	g = &st.conf.global;

	if (transcript_open(g->log, &cause) != 0)
		return smtptap_exit(&st, cause, 1);
	event_set_log_callback(smtptap_libevent_log);
	if ((st.base = event_base_new()) == NULL)
		fatalx("cannot create the event loop");
	if ((st.dns = smtptap_dns(st.base, g->resolv_conf, &cause)) == NULL)
		return smtptap_exit(&st, cause, EXIT_CONFIG);
	st.listeners = xcalloc(st.conf.nservices, sizeof *st.listeners);
	for (i = 0; i < st.conf.nservices; i++) {
		st.svcs[i].base = st.base;
		st.svcs[i].dns = st.dns;
		if (st.opts.once)
			st.svcs[i].on_close = smtptap_once_cb;
		st.listeners[i] = listen_start(&st.svcs[i],
		    &st.conf.services[i].opts.listen, &cause);
		if (st.listeners[i] == NULL) {
			if (st.named) {
				xasprintf(&where, "[%s] %s", st.svcs[i].name, cause);
				free(cause);
				cause = where;
			}
			return smtptap_exit(&st, cause, 1);
		}
	}
	if (smtptap_drop(g->user, &cause) != 0)
		return smtptap_exit(&st, cause, 1);
	sigint = evsignal_new(st.base, SIGINT, smtptap_signal_cb, st.base);
	sigterm = evsignal_new(st.base, SIGTERM, smtptap_signal_cb, st.base);
	if (sigint == NULL || sigterm == NULL || evsignal_add(sigint, NULL) != 0 ||
	    evsignal_add(sigterm, NULL) != 0)
		fatalx("cannot install signal handlers");

	for (i = 0; i < st.conf.nservices; i++)
		smtptap_announce(&st, i);
	if (g->format != LOG_FORMAT_TEXT)
		transcript_note(TRANSCRIPT_NOSESSION, "warning: format %s is not "
		    "written yet; writing text", options_format_name(g->format));

	event_base_dispatch(st.base);

	for (i = 0; i < st.conf.nservices; i++) {
		listen_free(st.listeners[i]);
		st.listeners[i] = NULL;
		session_close_all(&st.svcs[i]);
		/* Let the sessions' deferred frees run. */
		st.svcs[i].on_close = NULL;
	}
	event_base_loop(st.base, EVLOOP_NONBLOCK);
	event_free(sigint);
	event_free(sigterm);
	evdns_base_free(st.dns, 1);
	st.dns = NULL;
	smtptap_free(&st);
	libevent_global_shutdown();
	return 0;
}
