/*
 * smtptap.c - main(): settings, the shared service, the event loop.
 *
 * Exit status follows sysexits(3): 64 for a usage error, 78 for a
 * configuration error, 1 for a runtime failure such as a port in use.
 */
#include <sys/prctl.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>

#include <openssl/crypto.h>
#include <openssl/ssl.h>

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

/*
 * SIGUSR1, and SIGHUP until it also reloads the configuration: reopen the
 * transcript file after logrotate moved it away.
 */
static void
smtptap_reopen_cb(evutil_socket_t sig, short what, void *arg)
{
	transcript_note(TRANSCRIPT_NOSESSION, "signal %d: reopening the "
	    "transcript", (int)sig);
	transcript_reopen();
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

/* Start-up failed: one line that says why, everything released. */
static int
smtptap_exit(struct options *opts, struct service *svc, char *cause, int status)
{
	if (cause != NULL)
		fprintf(stderr, "smtptap: %s%s\n", cause, status == EXIT_USAGE ?
		    "\nTry 'smtptap --help'." : "");
	free(cause);
	if (svc != NULL) {
		if (svc->dns != NULL)
			evdns_base_free(svc->dns, 0);
		if (svc->base != NULL)
			event_base_free(svc->base);
		SSL_CTX_free(svc->ssl_ctx);
	}
	transcript_close();
	options_free(opts);
	return status;
}

int
main(int argc, char **argv)
{
	struct options opts;
	struct service svc;
	struct listener *l;
	struct event *sigint, *sigterm, *sighup, *sigusr1;
	char hostname[256], upstream[300], *cause = NULL;

	/* Memory holds credentials: no core dumps, no same-uid ptrace. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	signal(SIGPIPE, SIG_IGN);
	log_init(getenv("SMTPTAP_DEBUG") != NULL);

	options_defaults(&opts);
	switch (options_parse(&opts, argc, argv, &cause)) {
	case OPTIONS_HELP:
		options_help(stdout);
		return smtptap_exit(&opts, NULL, NULL, 0);
	case OPTIONS_VERSION:
		printf("smtptap %s (libevent %s, %s)\n", PACKAGE_VERSION,
		    event_get_version(), OpenSSL_version(OPENSSL_VERSION));
		return smtptap_exit(&opts, NULL, NULL, 0);
	case OPTIONS_USAGE:
		return smtptap_exit(&opts, NULL, cause, EXIT_USAGE);
	case OPTIONS_RUN:
		break;
	}

	memset(&svc, 0, sizeof svc);
	svc.opts = &opts;
	if (opts.ehlo != NULL)
		svc.ehlo = opts.ehlo;
	else if (gethostname(hostname, sizeof hostname) == 0 &&
	    hostname[0] != '\0' && strpbrk(hostname, " \t\r\n") == NULL) {
		hostname[sizeof hostname - 1] = '\0';
		svc.ehlo = hostname;
	} else
		svc.ehlo = "localhost";

	if (opts.tls != TLS_MODE_NONE &&
	    (svc.ssl_ctx = tls_ctx_new(&opts, &cause)) == NULL)
		return smtptap_exit(&opts, &svc, cause, EXIT_CONFIG);
	if (transcript_open(opts.log, opts.format, &cause) != 0)
		return smtptap_exit(&opts, &svc, cause, 1);
	event_set_log_callback(smtptap_libevent_log);
	if ((svc.base = event_base_new()) == NULL)
		fatalx("cannot create the event loop");
	if ((svc.dns = smtptap_dns(svc.base, opts.resolv_conf, &cause)) == NULL)
		return smtptap_exit(&opts, &svc, cause, EXIT_CONFIG);
	if ((l = listen_start(&svc, &opts.listen, &cause)) == NULL)
		return smtptap_exit(&opts, &svc, cause, 1);
	if (opts.once)
		svc.on_close = smtptap_once_cb;
	sigint = evsignal_new(svc.base, SIGINT, smtptap_signal_cb, svc.base);
	sigterm = evsignal_new(svc.base, SIGTERM, smtptap_signal_cb, svc.base);
	if (sigint == NULL || sigterm == NULL || evsignal_add(sigint, NULL) != 0 ||
	    evsignal_add(sigterm, NULL) != 0)
		fatalx("cannot install signal handlers");
	sighup = evsignal_new(svc.base, SIGHUP, smtptap_reopen_cb, NULL);
	sigusr1 = evsignal_new(svc.base, SIGUSR1, smtptap_reopen_cb, NULL);
	if (sighup == NULL || sigusr1 == NULL || evsignal_add(sighup, NULL) != 0 ||
	    evsignal_add(sigusr1, NULL) != 0)
		fatalx("cannot install signal handlers");

	hostport_fmt(&opts.upstream, upstream, sizeof upstream);
	{
		struct tx_field f[] = {
			TXF_STR("version", PACKAGE_VERSION),
			TXF_STR("address", listen_address(l)),
			TXF_STR("upstream", upstream),
			TXF_STR("tls", options_tls_name(opts.tls)),
			TXF_BOOL("verify", opts.tls != TLS_MODE_NONE && opts.verify),
		};

		transcript_recordf(TRANSCRIPT_NOSESSION, NULL, '*', "listening", 0,
		    f, TX_NFIELDS(f), "smtptap %s listening on %s, upstream %s "
		    "(%s%s)", PACKAGE_VERSION, listen_address(l), upstream,
		    options_tls_name(opts.tls), opts.tls != TLS_MODE_NONE &&
		    !opts.verify ? ", verification not enforced" : "");
	}
	if (opts.tls == TLS_MODE_NONE)
		transcript_note(TRANSCRIPT_NOSESSION, "warning: --tls none: the "
		    "upstream connection is not encrypted");

	event_base_dispatch(svc.base);

	listen_free(l);
	session_close_all(&svc);
	/* Let the sessions' deferred frees run. */
	svc.on_close = NULL;
	event_base_loop(svc.base, EVLOOP_NONBLOCK);
	event_free(sigint);
	event_free(sigterm);
	event_free(sighup);
	event_free(sigusr1);
	evdns_base_free(svc.dns, 1);
	event_base_free(svc.base);
	SSL_CTX_free(svc.ssl_ctx);
	transcript_close();
	options_free(&opts);
	libevent_global_shutdown();
	return 0;
}
