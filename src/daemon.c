/*
 * daemon.c - the running program: configuration generations, listeners,
 * reload on SIGHUP, graceful stop on SIGTERM/SIGINT, and systemd's
 * readiness protocol.
 *
 * A generation is one reading of the settings: its services and their TLS
 * contexts. Sessions point into the generation that accepted them, so a
 * reload makes a new generation for new sessions and retires the old one,
 * which is freed when its last session ends. Listeners outlive generations:
 * a listen address that is still configured keeps its socket and simply
 * serves the new service.
 */
#include <sys/types.h>

#include <errno.h>
#include <grp.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>

#include <openssl/ssl.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "conf.h"
#include "daemon.h"
#include "listen.h"
#include "log.h"
#include "options.h"
#include "session.h"
#include "tls.h"
#include "transcript.h"
#include "xmalloc.h"

#define EXIT_CONFIG	78
/* Memory set aside so that an allocation failure ends one session only. */
#define DAEMON_RESERVE	(1024 * 1024)

struct generation {
	struct conf		 conf;
	int			 named;		/* from a file: services have names */
	struct service		*svcs;
	struct tls_ctxset	*tls;		/* the services' contexts */
	char			**problems;	/* without a file: its errors */
	size_t			 nproblems;
	size_t			 nreleased;	/* services whose context is freed */
	struct generation	*next;		/* retired, waiting for sessions */
};

struct bound {
	struct listener		*l;
	char			 key[320];	/* configured address (+ name for port 0) */
};

struct daemon {
	const struct options	*cli;
	struct event_base	*base;
	struct evdns_base	*dns;
	struct generation	*gen;
	struct generation	*retired;
	struct generation	*dying;		/* drained, freed a slice a turn */
	struct event		*dying_ev;
	struct bound		*bound;
	size_t			 nbound;
	struct event		*sigint, *sigterm, *sighup, *sigusr1;
	struct event		*grace;
	int			 stopping;
	char			 hostname[256];

	/* A reload is read on its own thread; the loop goes on meanwhile. */
	int			 loading;	/* the loader thread runs */
	int			 again;		/* SIGHUP while loading */
	pthread_t		 loader;
	struct generation	*loaded;	/* its result */
	int			 loaded_fd[2];	/* it writes a byte when done */
	struct event		*loaded_ev;
};

static void	daemon_session_closed(struct service *);

static void
daemon_notify(const char *fmt, ...) PRINTFLIKE(1, 2);

/* systemd's readiness protocol; nothing without systemd. */
static void
daemon_notify(const char *fmt, ...)
{
#ifdef HAVE_SYSTEMD
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) != -1) {
		sd_notify(0, msg);
		free(msg);
	}
	va_end(ap);
#else
	(void)fmt;
#endif
}

static void
daemon_status(struct daemon *d)
{
	daemon_notify("STATUS=%u sessions open, %zu listening", session_count_all(),
	    d->nbound);
}

/*
 * A relayed piece lives in buffers of up to 64 KiB that are freed as soon as
 * it is written. With glibc's default, a free that leaves more than 128 KiB
 * at the top of the heap gives it back to the kernel, and the next read takes
 * it again: a 10 MB message cost 290 brk calls and faulted every page of its
 * buffers in anew, 17% of the CPU of a bulk transfer. Keeping up to 1 MiB
 * free at the top ends that; an idle smtptap holds at most that much more.
 * (Setting it also fixes glibc's mmap threshold at 128 KiB; no buffer of the
 * relay is that large.)
 */
static void
daemon_malloc_tune(void)
{
#ifdef M_TRIM_THRESHOLD
	(void)mallopt(M_TRIM_THRESHOLD, 1024 * 1024);
#endif
}

/*
 * With the changelist, the epoll_ctl calls an fd gets within one loop turn
 * are merged, and an add followed by a delete costs none: the relay writes
 * at once and takes back the write event libevent has just added
 * (session.c), so a relayed piece costs no epoll_ctl pair. The changelist is
 * unsafe only for a descriptor that shares its file description with
 * another (dup(), or a socket that systemd also holds): closed before the
 * deferred EPOLL_CTL_DEL, it stays registered. smtptap dups nothing, and
 * closes listening sockets one loop turn after their event is deleted
 * (listen.c).
 */
static struct event_base *
daemon_base_new(void)
{
	struct event_config *cfg;
	struct event_base *base;

	if ((cfg = event_config_new()) == NULL)
		return NULL;
	event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	return base;
}

static struct evdns_base *
daemon_dns(struct event_base *base, const char *path, char **cause)
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

static void
generation_free(struct generation *g)
{
	size_t i;

	if (g == NULL)
		return;
	for (i = 0; g->svcs != NULL && i < g->conf.nservices; i++)
		SSL_CTX_free(g->svcs[i].ssl_ctx);
	tls_ctxset_free(g->tls);
	free(g->svcs);
	for (i = 0; i < g->nproblems; i++)
		free(g->problems[i]);
	free(g->problems);
	conf_free(&g->conf);
	free(g);
}

/*
 * Frees g a part at a time: TLS context references until the time is up,
 * then the rest. Returns 1 when g is gone. A generation of thousands of
 * contexts takes a second or so to free (each context's CAs are many
 * small allocations, and the loader thread made them in another arena).
 */
static int
generation_free_some(struct generation *g, const struct timespec *until)
{
	struct service *svc;
	struct timespec now;

	for (;;) {
		if (g->nreleased < g->conf.nservices) {
			svc = &g->svcs[g->nreleased++];
			if (svc->ssl_ctx == NULL)
				continue;
			SSL_CTX_free(svc->ssl_ctx);
			svc->ssl_ctx = NULL;
		} else if (g->tls == NULL || !tls_ctxset_release_one(g->tls))
			break;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > until->tv_sec || (now.tv_sec == until->tv_sec &&
		    now.tv_nsec >= until->tv_nsec))
			return 0;
	}
	generation_free(g);
	return 1;
}

static unsigned
generation_sessions(const struct generation *g)
{
	unsigned n = 0;
	size_t i;

	for (i = 0; i < g->conf.nservices; i++)
		n += g->svcs[i].sessions;
	return n;
}

static size_t
generation_nerrors(const struct generation *g)
{
	return g->conf.nerrors + g->nproblems;
}

/* Error i, as printed: "file:line: message", or the message alone. */
static const char *
generation_error(const struct generation *g, size_t i)
{
	return i < g->conf.nerrors ? g->conf.errors[i] :
	    g->problems[i - g->conf.nerrors];
}

/*
 * A problem found after parsing (a CA file, a user): with -c it is a
 * config error at the line that set the key; without, it names the flag.
 */
static void
generation_problem(struct generation *g, const struct conf_service *cs,
    const char *key, const char *fmt, ...) PRINTFLIKE(4, 5);

static void
generation_problem(struct generation *g, const struct conf_service *cs,
    const char *key, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) == -1)
		fatalx("out of memory");
	va_end(ap);
	if (g->named) {
		conf_error(&g->conf, conf_line(&g->conf, cs, key), cs, "%s", msg);
		free(msg);
		return;
	}
	g->problems = xrealloc(g->problems,
	    (g->nproblems + 1) * sizeof *g->problems);
	g->problems[g->nproblems++] = msg;
}

/* getpwnam() shares a buffer: the loader thread must not use it. */
static int
generation_user_exists(const char *user)
{
	struct passwd pw, *found = NULL;
	char buf[16384];

	return getpwnam_r(user, &pw, buf, sizeof buf, &found) == 0 &&
	    found != NULL;
}

/*
 * Reads the settings (the -c file, or the command line as one service
 * without a name) and checks what conf.c cannot: CA files, the user. The
 * errors are kept in the generation, for the caller to report. It touches
 * nothing but its arguments and the files, and takes references to prev's
 * TLS contexts, so it may run on the loader thread while prev serves.
 */
static struct generation *
generation_load(const struct options *cli, const char *hostname,
    const struct tls_ctxset *prev)
{
	struct generation *g = xcalloc(1, sizeof *g);
	struct conf_service *cs;
	struct service *svc;
	char *cause = NULL;
	size_t i;

	if (cli->config != NULL) {
		g->named = 1;
		conf_load(&g->conf, cli->config);
	} else {
		g->conf.services = xcalloc(1, sizeof *g->conf.services);
		g->conf.nservices = 1;
		options_copy(&g->conf.services[0].opts, cli);
		options_copy(&g->conf.global, cli);
	}
	if (g->conf.global.user != NULL &&
	    !generation_user_exists(g->conf.global.user))
		generation_problem(g, NULL, "user", "user \"%s\": no such user",
		    g->conf.global.user);
	g->tls = tls_ctxset_new();
	g->svcs = xcalloc(g->conf.nservices ? g->conf.nservices : 1,
	    sizeof *g->svcs);
	for (i = 0; i < g->conf.nservices; i++) {
		cs = &g->conf.services[i];
		svc = &g->svcs[i];
		svc->name = g->named ? cs->name : NULL;
		svc->opts = &cs->opts;
		svc->ehlo = cs->opts.ehlo != NULL ? cs->opts.ehlo : hostname;
		svc->on_close = daemon_session_closed;
		if (cs->opts.tls == TLS_MODE_NONE)
			continue;
		if ((svc->ssl_ctx = tls_ctxset_get(g->tls, prev, &cs->opts,
		    &cause)) == NULL) {
			generation_problem(g, cs, cs->opts.ca_file != NULL ?
			    "ca_file" : cs->opts.ca_path != NULL ? "ca_path" :
			    "tls", "%s", cause);
			free(cause);
			cause = NULL;
		}
	}
	return g;
}

/* Where a generation read before (or off) the loop gets the loop's parts. */
static void
generation_attach(struct daemon *d, struct generation *g)
{
	size_t i;

	for (i = 0; i < g->conf.nservices; i++) {
		g->svcs[i].base = d->base;
		g->svcs[i].dns = d->dns;
		g->svcs[i].owner = d;
	}
}

/* "file:line: message" on stderr, the form editors jump to. */
static void
generation_report(const struct generation *g)
{
	size_t i, n = generation_nerrors(g);

	for (i = 0; i < n; i++)
		fprintf(stderr, "%s%s\n", g->named ? "" : "smtptap: ",
		    generation_error(g, i));
	if (g->named)
		fprintf(stderr, "%s: %zu error%s\n", g->conf.path, n,
		    n == 1 ? "" : "s");
}

/* Which listener serves a service: its configured address. */
static void
bound_key(const struct service *svc, char *buf, size_t size)
{
	char addr[300];

	hostport_fmt(&svc->opts->listen, addr, sizeof addr);
	/* Port 0 binds anew each time; only the same service may keep it. */
	snprintf(buf, size, "%s%s%s", addr, svc->opts->listen.portnum == 0 ?
	    " " : "", svc->opts->listen.portnum == 0 && svc->name != NULL ?
	    svc->name : "");
}

static int
bound_cmp(const void *a, const void *b)
{
	return strcmp(((const struct bound *)a)->key,
	    ((const struct bound *)b)->key);
}

static void
daemon_announce(const struct service *svc, const struct listener *l)
{
	const struct options *o = svc->opts;
	char upstream[300];
	struct tx_field f[] = {
		TXF_STR("version", PACKAGE_VERSION),
		TXF_STR("address", listen_address(l)),
		TXF_STR("upstream", upstream),
		TXF_STR("tls", options_tls_name(o->tls)),
		TXF_BOOL("verify", o->tls != TLS_MODE_NONE && o->verify),
	};

	hostport_fmt(&o->upstream, upstream, sizeof upstream);
	transcript_recordf(TRANSCRIPT_NOSESSION, svc->name, '*', "listening", 0,
	    f, TX_NFIELDS(f), "smtptap %s %s%s%slistening on %s, upstream %s "
	    "(%s%s)", PACKAGE_VERSION, svc->name != NULL ? "[" : "",
	    svc->name != NULL ? svc->name : "", svc->name != NULL ? "] " : "",
	    listen_address(l), upstream, options_tls_name(o->tls),
	    o->tls != TLS_MODE_NONE && !o->verify ?
	    ", verification not enforced" : "");
	if (o->tls == TLS_MODE_NONE)
		transcript_note(TRANSCRIPT_NOSESSION, "warning: %s%s%stls none: "
		    "the upstream connection is not encrypted",
		    svc->name != NULL ? "[" : "", svc->name != NULL ? svc->name :
		    "", svc->name != NULL ? "] " : "--");
}

/*
 * Gives every service of g a listener: the one already bound to its
 * address, or a new one. On failure nothing changes and *cause says why.
 */
static int
daemon_bind(struct daemon *d, struct generation *g, char **cause)
{
	struct bound *nb;
	struct listener *l;
	size_t i, j, n = g->conf.nservices;
	char key[320], *why = NULL;
	int *kept = xcalloc(d->nbound + 1, sizeof *kept);
	struct bound *prev;

	/* Sorted, so that thousands of services are matched in no time. */
	if (d->nbound > 1)
		qsort(d->bound, d->nbound, sizeof *d->bound, bound_cmp);
	nb = xcalloc(n ? n : 1, sizeof *nb);
	for (i = 0; i < n; i++) {
		bound_key(&g->svcs[i], key, sizeof key);
		snprintf(nb[i].key, sizeof nb[i].key, "%s", key);
		prev = d->nbound == 0 ? NULL : bsearch(&nb[i], d->bound,
		    d->nbound, sizeof *d->bound, bound_cmp);
		if (prev != NULL && !kept[prev - d->bound]) {
			kept[prev - d->bound] = 1;
			nb[i].l = prev->l;
			continue;
		}
		if ((l = listen_start(&g->svcs[i], &g->svcs[i].opts->listen,
		    &why)) == NULL) {
			if (g->named)
				xasprintf(cause, "[%s] %s", g->svcs[i].name, why);
			else
				*cause = xstrdup(why);
			free(why);
			/* Undo: free only what this call bound. */
			for (j = 0; j < i; j++) {
				size_t k;
				int old = 0;

				for (k = 0; k < d->nbound; k++)
					old |= d->bound[k].l == nb[j].l;
				if (!old)
					listen_free(nb[j].l);
			}
			free(nb);
			free(kept);
			return -1;
		}
		nb[i].l = l;
		nb[i].key[sizeof nb[i].key - 1] = '\0';
		l = NULL;
	}
	/* Committed: re-point kept listeners, close the ones no longer wanted. */
	for (j = 0; j < d->nbound; j++)
		if (!kept[j]) {
			transcript_note(TRANSCRIPT_NOSESSION, "no longer listening "
			    "on %s", listen_address(d->bound[j].l));
			listen_free(d->bound[j].l);
		}
	for (i = 0; i < n; i++) {
		listen_set_service(nb[i].l, &g->svcs[i]);
		daemon_announce(&g->svcs[i], nb[i].l);
	}
	free(d->bound);
	free(kept);
	d->bound = nb;
	d->nbound = n;
	return 0;
}

static void
daemon_unbind(struct daemon *d)
{
	size_t i;

	for (i = 0; i < d->nbound; i++)
		listen_free(d->bound[i].l);
	free(d->bound);
	d->bound = NULL;
	d->nbound = 0;
}

#define DAEMON_FREE_SLICE_NS	1000000	/* freeing, per loop turn */

/*
 * After the loop has polled its sockets: an event made active from its own
 * callback would run again in the same turn, and the slices would be one.
 */
static void
daemon_dying_later(struct daemon *d)
{
	static const struct timeval now = { 0, 0 };

	evtimer_add(d->dying_ev, &now);
}

static void
daemon_dying_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	struct generation *g;
	struct timespec until;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_nsec += DAEMON_FREE_SLICE_NS;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	while ((g = d->dying) != NULL) {
		d->dying = g->next;
		if (!generation_free_some(g, &until)) {
			d->dying = g;
			break;
		}
	}
	if (d->dying != NULL)
		daemon_dying_later(d);
}

static void
daemon_reap(struct daemon *d)
{
	struct generation **gp = &d->retired, *g;

	while ((g = *gp) != NULL) {
		if (generation_sessions(g) == 0) {
			*gp = g->next;
			if (d->dying_ev == NULL) {
				generation_free(g);
				continue;
			}
			g->next = d->dying;
			d->dying = g;
			daemon_dying_later(d);
		} else
			gp = &g->next;
	}
}

/* After every session: free drained generations, end --once and stops. */
static void
daemon_session_closed(struct service *svc)
{
	struct daemon *d = svc->owner;

	daemon_reap(d);
	if (d->cli->once || (d->stopping && session_count_all() == 0))
		event_base_loopexit(d->base, NULL);
	else
		daemon_status(d);
}

/* Why the new configuration cannot be used: on stderr and in the transcript. */
static void
daemon_reload_errors(const struct generation *g)
{
	size_t i, n = generation_nerrors(g);

	generation_report(g);
	if (n == 1) {
		transcript_note(TRANSCRIPT_NOSESSION, "reload failed: %s; the "
		    "current configuration stays", generation_error(g, 0));
		return;
	}
	for (i = 0; i < n; i++)
		transcript_note(TRANSCRIPT_NOSESSION, "%s", generation_error(g, i));
	transcript_note(TRANSCRIPT_NOSESSION, "reload failed: the new "
	    "configuration has the %zu errors above; the current one stays", n);
}

/* On the loop: put a freshly read generation in place of the current one. */
static void
daemon_reload_commit(struct daemon *d, struct generation *g)
{
	char *cause = NULL;
	size_t nctx, kept;

	if (generation_nerrors(g) != 0) {
		daemon_reload_errors(g);
		generation_free(g);
		daemon_notify("READY=1");
		return;
	}
	generation_attach(d, g);
	if (daemon_bind(d, g, &cause) != 0) {
		transcript_note(TRANSCRIPT_NOSESSION, "reload failed: %s; the "
		    "current configuration stays", cause);
		log_warnx("reload failed: %s", cause);
		free(cause);
		generation_free(g);
		daemon_notify("READY=1");
		return;
	}
	/* Open sessions finish with the settings they started with. */
	d->gen->next = d->retired;
	d->retired = d->gen;
	d->gen = g;
	daemon_reap(d);
	nctx = tls_ctxset_count(g->tls, &kept);
	transcript_note(TRANSCRIPT_NOSESSION, "reloaded: %zu service%s, %zu TLS "
	    "context%s (%zu kept, %zu loaded); %u session%s continue with the "
	    "previous settings", g->conf.nservices,
	    g->conf.nservices == 1 ? "" : "s", nctx, nctx == 1 ? "" : "s", kept,
	    nctx - kept, session_count_all(),
	    session_count_all() == 1 ? "" : "s");
	daemon_notify("READY=1");
	daemon_status(d);
}

/*
 * The loader thread. The configuration generation_load() reads is its own
 * until the loop takes it; the current generation's contexts are only
 * referenced, and the loop does not replace or free that generation while
 * a load runs.
 */
static void *
daemon_loader(void *arg)
{
	struct daemon *d = arg;
	char byte = 1;
	ssize_t n;

	d->loaded = generation_load(d->cli, d->hostname, d->gen->tls);
	do
		n = write(d->loaded_fd[1], &byte, 1);
	while (n == -1 && errno == EINTR);
	return NULL;
}

static void
daemon_reload_start(struct daemon *d)
{
	sigset_t all, old;
	int error;

	/* Signals are the loop's: the loader thread blocks them all. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	error = pthread_create(&d->loader, NULL, daemon_loader, d);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (error == 0) {
		d->loading = 1;
		return;
	}
	/* No thread: read it here, with the loop waiting. */
	log_warnx("cannot start a thread to read the configuration (%s); "
	    "reading it on the event loop", strerror(error));
	daemon_reload_commit(d, generation_load(d->cli, d->hostname,
	    d->gen->tls));
}

static void
daemon_loaded_drain(struct daemon *d)
{
	char byte;

	while (read(d->loaded_fd[0], &byte, 1) == 1)
		;
}

/* The loader thread is done; returns its generation. */
static struct generation *
daemon_loader_join(struct daemon *d)
{
	struct generation *g;

	pthread_join(d->loader, NULL);
	daemon_loaded_drain(d);
	g = d->loaded;
	d->loaded = NULL;
	d->loading = 0;
	return g;
}

static void
daemon_loaded_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	struct generation *g;

	if (!d->loading) {
		daemon_loaded_drain(d);
		return;
	}
	g = daemon_loader_join(d);
	if (d->stopping) {
		generation_free(g);
		return;
	}
	daemon_reload_commit(d, g);
	if (d->again) {
		d->again = 0;
		daemon_reload_start(d);
	}
}

static void
daemon_reload(struct daemon *d)
{
	daemon_notify("RELOADING=1");
	transcript_note(TRANSCRIPT_NOSESSION, "SIGHUP: reopening the transcript "
	    "and reading %s again", d->cli->config != NULL ? d->cli->config :
	    "the command line");
	transcript_reopen();
	if (d->loading) {
		/* The file may have changed after the loader read it. */
		d->again = 1;
		transcript_note(TRANSCRIPT_NOSESSION, "a reload is under way; "
		    "reading again when it is done");
		return;
	}
	daemon_reload_start(d);
}

static void
daemon_close_sessions(struct daemon *d)
{
	struct generation *g;
	size_t i;

	for (i = 0; i < d->gen->conf.nservices; i++)
		session_close_all(&d->gen->svcs[i]);
	for (g = d->retired; g != NULL; g = g->next)
		for (i = 0; i < g->conf.nservices; i++)
			session_close_all(&g->svcs[i]);
}

static void
daemon_grace_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;

	transcript_note(TRANSCRIPT_NOSESSION, "grace period over: closing %u "
	    "session%s", session_count_all(), session_count_all() == 1 ? "" : "s");
	event_base_loopexit(d->base, NULL);
}

/*
 * SIGTERM/SIGINT: stop accepting at once, let open sessions finish within
 * shutdown_grace, then close them. A second SIGINT stops at once.
 */
static void
daemon_stop(struct daemon *d, int sig)
{
	struct timeval tv;
	double grace = d->gen->conf.global.shutdown_grace;

	if (d->stopping++) {
		if (sig == SIGINT) {
			transcript_note(TRANSCRIPT_NOSESSION, "second SIGINT: "
			    "closing every session now");
			event_base_loopexit(d->base, NULL);
		}
		return;
	}
	daemon_notify("STOPPING=1");
	daemon_unbind(d);
	if (session_count_all() == 0) {
		transcript_note(TRANSCRIPT_NOSESSION, "signal %d: stopping", sig);
		event_base_loopexit(d->base, NULL);
		return;
	}
	transcript_note(TRANSCRIPT_NOSESSION, "signal %d: no longer accepting; "
	    "waiting up to %gs for %u session%s", sig, grace, session_count_all(),
	    session_count_all() == 1 ? "" : "s");
	tv.tv_sec = (time_t)grace;
	tv.tv_usec = (suseconds_t)((grace - (double)tv.tv_sec) * 1e6);
	evtimer_add(d->grace, &tv);
}

static void
daemon_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;

	switch (sig) {
	case SIGHUP:
		if (!d->stopping)
			daemon_reload(d);
		break;
	case SIGUSR1:
		transcript_note(TRANSCRIPT_NOSESSION, "signal %d: reopening the "
		    "transcript", (int)sig);
		transcript_reopen();
		break;
	default:
		daemon_stop(d, (int)sig);
		break;
	}
}

static void
daemon_libevent_log(int severity, const char *msg)
{
	if (severity >= EVENT_LOG_WARN)
		log_warnx("libevent: %s", msg);
}

/* After binding: root gives way to user= for good. */
static int
daemon_drop(const char *user, char **cause)
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

static struct event *
daemon_signal(struct daemon *d, int sig)
{
	struct event *ev = evsignal_new(d->base, sig, daemon_signal_cb, d);

	if (ev == NULL || evsignal_add(ev, NULL) != 0)
		fatalx("cannot install a handler for signal %d", sig);
	return ev;
}

static void
daemon_free(struct daemon *d)
{
	struct generation *g;

	/* The loader may be reading the current generation's contexts. */
	if (d->loading)
		generation_free(daemon_loader_join(d));
	daemon_unbind(d);
	if (d->gen != NULL)
		daemon_close_sessions(d);
	/* Let the sessions' deferred frees run. */
	if (d->base != NULL)
		event_base_loop(d->base, EVLOOP_NONBLOCK);
	while ((g = d->retired) != NULL) {
		d->retired = g->next;
		generation_free(g);
	}
	while ((g = d->dying) != NULL) {
		d->dying = g->next;
		generation_free(g);
	}
	if (d->dying_ev != NULL)
		event_free(d->dying_ev);
	generation_free(d->gen);
	if (d->sigint != NULL) {
		event_free(d->sigint);
		event_free(d->sigterm);
		event_free(d->sighup);
		event_free(d->sigusr1);
	}
	if (d->grace != NULL)
		event_free(d->grace);
	if (d->loaded_ev != NULL)
		event_free(d->loaded_ev);
	if (d->loaded_fd[0] != -1) {
		close(d->loaded_fd[0]);
		close(d->loaded_fd[1]);
	}
	if (d->dns != NULL)
		evdns_base_free(d->dns, 1);
	transcript_detach();
	if (d->base != NULL)
		event_base_free(d->base);
	transcript_close();
}

int
daemon_main(const struct options *cli)
{
	struct daemon d;
	const struct options *g;
	char *cause = NULL;
	int status = 0;

	memset(&d, 0, sizeof d);
	d.cli = cli;
	d.loaded_fd[0] = d.loaded_fd[1] = -1;
	daemon_malloc_tune();
	if (gethostname(d.hostname, sizeof d.hostname) != 0 ||
	    d.hostname[0] == '\0' || strpbrk(d.hostname, " \t\r\n") != NULL)
		strcpy(d.hostname, "localhost");
	d.hostname[sizeof d.hostname - 1] = '\0';

	/* Every mistake is reported in one run, then the exit status says it. */
	d.gen = generation_load(cli, d.hostname, NULL);
	if (generation_nerrors(d.gen) != 0) {
		generation_report(d.gen);
		generation_free(d.gen);
		return EXIT_CONFIG;
	}
	if (cli->check_config) {
		printf("%s: OK (%zu service%s)\n", d.gen->conf.path,
		    d.gen->conf.nservices, d.gen->conf.nservices == 1 ? "" : "s");
		daemon_free(&d);
		return 0;
	}
	g = &d.gen->conf.global;
	if (transcript_open(g->log, g->format, &cause) != 0) {
		status = 1;
		goto out;
	}
	event_set_log_callback(daemon_libevent_log);
	if ((d.base = daemon_base_new()) == NULL)
		fatalx("cannot create the event loop");
	transcript_attach(d.base);
	/* Headroom for a session to fail cleanly when memory runs out. */
	xmalloc_reserve(DAEMON_RESERVE);
	if ((d.dns = daemon_dns(d.base, g->resolv_conf, &cause)) == NULL) {
		status = EXIT_CONFIG;
		goto out;
	}
	/* The generation was read before the loop existed. */
	generation_attach(&d, d.gen);
	if (pipe2(d.loaded_fd, O_CLOEXEC | O_NONBLOCK) != 0)
		fatal("pipe");
	if ((d.dying_ev = evtimer_new(d.base, daemon_dying_cb, &d)) == NULL)
		fatalx("cannot create an event");
	if ((d.loaded_ev = event_new(d.base, d.loaded_fd[0],
	    EV_READ | EV_PERSIST, daemon_loaded_cb, &d)) == NULL ||
	    event_add(d.loaded_ev, NULL) != 0)
		fatalx("cannot watch the configuration loader");
	/*
	 * Signals are caught before the first "listening on" line: whoever
	 * waits for that line may send a SIGHUP at once, and its default
	 * action would end the process. They are handled once the loop runs.
	 */
	d.grace = evtimer_new(d.base, daemon_grace_cb, &d);
	d.sigint = daemon_signal(&d, SIGINT);
	d.sigterm = daemon_signal(&d, SIGTERM);
	d.sighup = daemon_signal(&d, SIGHUP);
	d.sigusr1 = daemon_signal(&d, SIGUSR1);
	if (daemon_bind(&d, d.gen, &cause) != 0 ||
	    daemon_drop(g->user, &cause) != 0) {
		status = 1;
		goto out;
	}

	daemon_notify("READY=1");
	daemon_status(&d);
	event_base_dispatch(d.base);
out:
	if (cause != NULL)
		fprintf(stderr, "smtptap: %s\n", cause);
	free(cause);
	daemon_free(&d);
	return status;
}
