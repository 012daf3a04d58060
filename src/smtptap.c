/*
 * smtptap.c - main(): the command line, then the daemon.
 *
 * Exit status follows sysexits(3): 64 for a usage error, 78 for a
 * configuration error, 1 for a runtime failure such as a port in use.
 */
#include <sys/prctl.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include <event2/event.h>

#include <openssl/crypto.h>

#include "daemon.h"
#include "log.h"
#include "options.h"

#define EXIT_USAGE	64

int
main(int argc, char **argv)
{
	struct options opts;
	char *cause = NULL;
	int status = 0;

	/* Memory holds credentials: no core dumps, no same-uid ptrace. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	signal(SIGPIPE, SIG_IGN);
	log_init(getenv("SMTPTAP_DEBUG") != NULL);

	options_defaults(&opts);
	switch (options_parse(&opts, argc, argv, &cause)) {
	case OPTIONS_HELP:
		options_help(stdout);
		break;
	case OPTIONS_VERSION:
		printf("smtptap %s (libevent %s, %s)\n", PACKAGE_VERSION,
		    event_get_version(), OpenSSL_version(OPENSSL_VERSION));
		break;
	case OPTIONS_USAGE:
		fprintf(stderr, "smtptap: %s\nTry 'smtptap --help'.\n", cause);
		free(cause);
		status = EXIT_USAGE;
		break;
	case OPTIONS_RUN:
		log_init(opts.verbose || getenv("SMTPTAP_DEBUG") != NULL);
		status = daemon_main(&opts);
		libevent_global_shutdown();
		break;
	}
	options_free(&opts);
	return status;
}
