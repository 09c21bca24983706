// SPDX-License-Identifier: MIT
/*
 * A tree that never holds still: the root forks a short-lived child about every millisecond
 * and keeps up to four of them in flight, reaping the oldest before it forks another.  The
 * children live 0, 1 or 2 ms (in nanosleep()) and exit with their sequence number modulo 128,
 * so a dump catches the root in fork(), in waitpid() or in between, with children sleeping,
 * exiting and zombies.  Every waitpid() must return the oldest child with the status it chose.
 * After SIGTERM the root must go on forking and reaping as before for another 200 children,
 * then reap the last ones; nothing may be left to wait for.  The longest pause between two
 * forks (the dump) is logged.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

#define IN_FLIGHT 4
#define READY_AFTER 20
#define MORE_AFTER_TERM 200

static uint64_t forked, reaped, max_gap, last;
static pid_t ring[IN_FLIGHT]; /* child number n is in ring[n % IN_FLIGHT] */

static void sleep_us(unsigned int us)
{
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000l};

	nanosleep(&ts, NULL);
}

/* Reap the oldest child; the test fails at the first wrong answer. */
static void reap_oldest(void)
{
	pid_t pid = ring[reaped % IN_FLIGHT], got;
	int code = reaped & 0x7f, st;

	while ((got = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
		;
	if (got != pid)
		tl_fail("child %llu (%d): waitpid returned %d: %m", (unsigned long long)reaped, pid,
			got);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != code)
		tl_fail("child %llu (%d): status %#x, expected exit %d", (unsigned long long)reaped,
			pid, st, code);
	reaped++;
}

static void one(void)
{
	uint64_t now;
	pid_t pid;

	if (forked - reaped == IN_FLIGHT)
		reap_oldest();
	pid = fork();
	if (pid < 0)
		tl_fail("fork %llu: %m", (unsigned long long)forked);
	if (!pid) {
		sleep_us(forked % 3 * 1000);
		_exit(forked & 0x7f);
	}
	ring[forked % IN_FLIGHT] = pid;
	forked++;
	now = tl_now_ns();
	if (last && now - last > max_gap)
		max_gap = now - last;
	last = now;
	sleep_us(1000);
}

int main(void)
{
	uint64_t at_ready, at_term, start;
	int st;

	tl_init();
	fflush(stdout); /* nothing buffered for the children to inherit */
	start = tl_now_ns();
	while (forked < READY_AFTER)
		one();
	at_ready = forked;

	tl_ready();
	while (!tl_term)
		one();
	at_term = forked;
	for (int i = 0; i < MORE_AFTER_TERM; i++)
		one();
	while (reaped < forked)
		reap_oldest();

	tl_log("%llu children: %llu at ready, %llu at SIGTERM; longest pause between forks %llu "
	       "ms in %llu ms",
	       (unsigned long long)forked, (unsigned long long)at_ready,
	       (unsigned long long)at_term, (unsigned long long)(max_gap / TL_NSEC_PER_MSEC),
	       (unsigned long long)((tl_now_ns() - start) / TL_NSEC_PER_MSEC));
	tl_expect(forked == at_term + MORE_AFTER_TERM, "count %llu", (unsigned long long)forked);
	tl_expect(waitpid(-1, &st, WNOHANG) < 0 && errno == ECHILD, "children left over");
	tl_done();
}
