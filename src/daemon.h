/*
 * daemon.h - run smtptap with the settings of the command line (or its -c
 * file) until a signal stops it; SIGHUP reloads, SIGUSR1 reopens the logs.
 */
#ifndef SMTPTAP_DAEMON_H
#define SMTPTAP_DAEMON_H

struct options;

/* Returns the exit status: 0, 1 (runtime failure) or 78 (configuration). */
int	daemon_main(const struct options *);

#endif
