/*
 * clockshift.so - an LD_PRELOAD shim for the fault suite (RELIABILITY.md
 * section 4, row 73): it steps one process's wall clock by the number of
 * seconds written in the file named by $CLOCKSHIFT_FILE, read at every call,
 * and leaves the monotonic clocks alone.
 *
 * Why not libfaketime: in an ASan build it hangs at start-up, because ASan's
 * initialisation calls clock_gettime() while libfaketime is still looking
 * up the real one with dlsym(). This shim looks nothing up: the real clock
 * is the system call, so it works before and inside any runtime's set-up.
 */
#define _GNU_SOURCE
#include <sys/syscall.h>
#include <sys/time.h>

#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long
clockshift_seconds(void)
{
	const char *path = getenv("CLOCKSHIFT_FILE");
	char buf[32];
	long n;
	int fd;

	if (path == NULL)
		return 0;
	fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = syscall(SYS_read, fd, buf, sizeof buf - 1);
	syscall(SYS_close, fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return strtol(buf, NULL, 10);
}

int
clock_gettime(clockid_t id, struct timespec *ts)
{
	if (syscall(SYS_clock_gettime, id, ts) != 0)
		return -1;
	if (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)
		ts->tv_sec += clockshift_seconds();
	return 0;
}

int
gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
	struct timespec ts;

	(void)tz;
	if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
		return -1;
	/* glibc declares tv nonnull. */
	tv->tv_sec = ts.tv_sec;
	tv->tv_usec = ts.tv_nsec / 1000;
	return 0;
}

time_t
time(time_t *t)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
		return (time_t)-1;
	if (t != NULL)
		*t = ts.tv_sec;
	return ts.tv_sec;
}
