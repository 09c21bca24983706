// SPDX-License-Identifier: MIT
/*
 * Zombies: the root forks four children that end at once -- exit(3), exit(7), killed by
 * SIGKILL (sent to itself) and killed by SIGUSR1's default action -- and does not reap them:
 * before ready each must be a zombie (state Z, our child) whose status waitid(WNOWAIT) reports
 * without reaping.  After SIGTERM they must still be zombies, children of ours; then the root
 * reaps them in four different ways -- waitpid(pid), waitid(P_PID), waitpid(-1) and wait() --
 * and checks every PID and status exactly, and that nothing is left to wait for.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

#define NKIDS 4
#define SETUP_NS (5 * TL_NSEC_PER_SEC)

struct kid {
	const char *what;
	int code;   /* CLD_EXITED or CLD_KILLED */
	int status; /* exit status or signal */
	pid_t pid;
};

static struct kid kids[NKIDS] = {
	{"exit(3)", CLD_EXITED, 3},
	{"exit(7)", CLD_EXITED, 7},
	{"SIGKILL", CLD_KILLED, SIGKILL},
	{"SIGUSR1", CLD_KILLED, SIGUSR1},
};

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000l};

	nanosleep(&ts, NULL);
}

/* State letter and parent of pid from /proc/PID/stat; '?' when there is no such process. */
static char proc_state(pid_t pid, pid_t *ppid)
{
	char path[64], buf[512], *p;
	char state = '?';

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (access(path, F_OK))
		return state;
	tl_read_file(path, buf, sizeof(buf));
	p = strrchr(buf, ')');
	if (p && sscanf(p + 1, " %c %d", &state, ppid) != 2)
		state = '?';
	return state;
}

/* The wait status a child of kids[i]'s kind ends with. */
static bool status_ok(const struct kid *k, int st)
{
	if (k->code == CLD_EXITED)
		return WIFEXITED(st) && WEXITSTATUS(st) == k->status;
	return WIFSIGNALED(st) && WTERMSIG(st) == k->status && !WCOREDUMP(st);
}

static struct kid *kid_of(pid_t pid)
{
	for (int i = 0; i < NKIDS; i++)
		if (kids[i].pid == pid)
			return &kids[i];
	return NULL;
}

/* Every child must be a zombie of ours, and waitid(WNOWAIT) must report its status. */
static void check_zombies(const char *when)
{
	for (int i = 0; i < NKIDS; i++) {
		struct kid *k = &kids[i];
		siginfo_t si;
		pid_t ppid = 0;
		char state = proc_state(k->pid, &ppid);

		tl_expect(state == 'Z', "%s: child %s (%d) is in state %c", when, k->what, k->pid,
			  state);
		tl_expect(ppid == getpid(), "%s: child %s (%d) has parent %d", when, k->what,
			  k->pid, ppid);
		memset(&si, 0, sizeof(si));
		if (!tl_expect(!waitid(P_PID, k->pid, &si, WEXITED | WNOHANG | WNOWAIT),
			       "%s: waitid(WNOWAIT) of %s (%d): %m", when, k->what, k->pid))
			continue;
		tl_expect(si.si_pid == k->pid && si.si_code == k->code && si.si_status == k->status,
			  "%s: child %s (%d): waitid says pid %d code %d status %d", when, k->what,
			  k->pid, si.si_pid, si.si_code, si.si_status);
	}
}

static void check_reaped(struct kid *k, pid_t got, int st, const char *how)
{
	if (!tl_expect(got == k->pid, "%s for %s returned %d, expected %d", how, k->what, got,
		       k->pid))
		return;
	tl_expect(status_ok(k, st), "%s: %s (%d) has status %#x", how, k->what, k->pid, st);
}

int main(void)
{
	uint64_t deadline;
	siginfo_t si;
	pid_t got;
	int st;

	tl_init();
	fflush(stdout);
	for (int i = 0; i < NKIDS; i++) {
		kids[i].pid = fork();
		if (kids[i].pid < 0)
			tl_fail("fork: %m");
		if (kids[i].pid)
			continue;
		/* The child. */
		if (kids[i].code == CLD_EXITED)
			_exit(kids[i].status);
		signal(kids[i].status, SIG_DFL);
		kill(getpid(), kids[i].status);
		_exit(100); /* not reached */
	}
	deadline = tl_now_ns() + SETUP_NS;
	for (int i = 0; i < NKIDS; i++) {
		pid_t ppid;

		while (proc_state(kids[i].pid, &ppid) != 'Z') {
			if (tl_now_ns() >= deadline)
				tl_fail("child %s (%d) did not end", kids[i].what, kids[i].pid);
			sleep_ms(1);
		}
	}
	check_zombies("before");
	if (tl_failures())
		tl_done();
	for (int i = 0; i < NKIDS; i++)
		tl_log("zombie %d: %s", kids[i].pid, kids[i].what);

	tl_ready();
	tl_wait_term();

	check_zombies("after");

	/* Reaped one way each; the last two in whatever order the kernel picks. */
	while ((got = waitpid(kids[1].pid, &st, WNOHANG)) < 0 && errno == EINTR)
		;
	check_reaped(&kids[1], got, st, "waitpid(pid)");

	memset(&si, 0, sizeof(si));
	if (tl_expect(!waitid(P_PID, kids[2].pid, &si, WEXITED | WNOHANG), "waitid: %m")) {
		tl_expect(si.si_pid == kids[2].pid && si.si_code == kids[2].code &&
				  si.si_status == kids[2].status,
			  "waitid(P_PID) for %s: pid %d code %d status %d", kids[2].what, si.si_pid,
			  si.si_code, si.si_status);
	}

	got = waitpid(-1, &st, WNOHANG);
	if (tl_expect(got > 0, "waitpid(-1) returned %d", got) &&
	    tl_expect(kid_of(got) && (got == kids[0].pid || got == kids[3].pid),
		      "waitpid(-1) returned %d, not a zombie left", got))
		check_reaped(kid_of(got), got, st, "waitpid(-1)");

	/* The last one: wait() blocks, so make sure there is one left. */
	if (tl_expect(waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid,
		      "no zombie left for wait()")) {
		got = wait(&st);
		if (tl_expect(got > 0 && kid_of(got), "wait() returned %d", got))
			check_reaped(kid_of(got), got, st, "wait()");
	}

	tl_expect(waitpid(-1, &st, WNOHANG) < 0 && errno == ECHILD,
		  "something is left to wait for");
	tl_done();
}
