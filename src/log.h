/*
 * log.h - smtptap's own diagnostics (not the transcript): start-up errors,
 * libevent warnings, resource trouble. Never given protocol bytes.
 */
#ifndef SMTPTAP_LOG_H
#define SMTPTAP_LOG_H

#include "attrib.h"

void	log_init(int verbose);
void	log_warn(const char *, ...) PRINTFLIKE(1, 2);	/* appends strerror(errno) */
void	log_warnx(const char *, ...) PRINTFLIKE(1, 2);
void	log_info(const char *, ...) PRINTFLIKE(1, 2);
void	log_debug(const char *, ...) PRINTFLIKE(1, 2);
NORETURN void fatal(const char *, ...) PRINTFLIKE(1, 2);
NORETURN void fatalx(const char *, ...) PRINTFLIKE(1, 2);

#endif
