// SPDX-License-Identifier: MIT
/*
 * The demo workload: prints "count N" every 100 ms on stdout (the demo points it at a log
 * file) until it is killed.  It spends nearly all its time inside clock_nanosleep, so a dump
 * catches it mid-syscall and a restore must resume the sleep, and every line it writes tells
 * whether the restored process continued from where it stopped or started over.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(void)
{
	struct timespec tick = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};
	unsigned long n;
	char line[64];

	/*
	 * A session of its own keeps it apart from the demo's terminal, which crest would only
	 * take along with --shell-job.  Already being a session leader is fine too.
	 */
	if (setsid() < 0 && getsid(0) != getpid()) {
		fprintf(stderr, "demo-counter: setsid: %s\n", strerror(errno));
		return 1;
	}
	/* Hold only stdin, stdout and stderr: whatever else the caller leaked is not ours. */
	syscall(SYS_close_range, 3U, ~0U, 0U);

	for (n = 0;; n++) {
		int len = snprintf(line, sizeof(line), "count %lu\n", n);

		/* One write per line: a reader never sees half a line, before or after restore. */
		if (write(STDOUT_FILENO, line, len) != len)
			return 1;
		while (clock_nanosleep(CLOCK_MONOTONIC, 0, &tick, &tick) == EINTR)
			;
		tick.tv_nsec = 100 * 1000 * 1000;
	}
}
