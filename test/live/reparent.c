// SPDX-License-Identifier: MIT
/*
 * A child subreaper and the orphans it adopted.  The root sets PR_SET_CHILD_SUBREAPER, then
 * forks two children that each fork a grandchild and exit at once: the first child (exit 11)
 * is reaped before ready, the second (exit 12) is left a zombie.  Both grandchildren are
 * reparented to the root, which is their parent from then on, though it never forked them.
 *
 * After SIGTERM: PR_GET_CHILD_SUBREAPER still says 1; /proc says the zombie and both
 * grandchildren are the root's children; each grandchild checks that its getppid() is still
 * the root (and its PID unchanged) and exits 0 or 1; the root reaps the zombie (status 12)
 * and both grandchildren.  Then the subreaper must still work: a fresh child forks a fresh
 * grandchild and exits, and that grandchild must become the root's, tell so by getppid() and
 * be reaped by the root.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

#define SETUP_NS (5 * TL_NSEC_PER_SEC)
#define REAP_NS (5 * TL_NSEC_PER_SEC)

/* Exit status bits of a grandchild. */
#define BAD_PID 0x01
#define BAD_PPID 0x02
#define ORPHANED 0x04
#define BAD_SETUP 0x08

static struct shared {
	pid_t gpid[3]; /* the grandchildren: two before ready, one after */
	int recorded[3];
} * sh;

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000l};

	nanosleep(&ts, NULL);
}

static char proc_state(pid_t pid, pid_t *ppid)
{
	char path[64], buf[512], *p;
	char state = '?';

	*ppid = 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (access(path, F_OK))
		return state;
	tl_read_file(path, buf, sizeof(buf));
	p = strrchr(buf, ')');
	if (p && sscanf(p + 1, " %c %d", &state, ppid) != 2)
		state = '?';
	return state;
}

/* Wait until the child that forked us is gone and we are adopted; the new parent or -1. */
static pid_t wait_adopted(pid_t forker)
{
	uint64_t deadline = tl_now_ns() + SETUP_NS;

	while (getppid() == forker) {
		if (tl_now_ns() >= deadline)
			return -1;
		sleep_ms(1);
	}
	return getppid();
}

/* A grandchild: once adopted, record, wait for SIGTERM and check getppid() again. */
static void __attribute__((noreturn)) grandchild(int idx, pid_t forker)
{
	pid_t pid = getpid(), ppid = wait_adopted(forker);
	int bad = 0;

	if (ppid < 0)
		_exit(BAD_SETUP);
	sh->gpid[idx] = pid;
	__atomic_store_n(&sh->recorded[idx], 1, __ATOMIC_RELEASE);
	if (idx == 2)
		_exit(0); /* the one after restore only has to be adopted */
	while (!tl_term) {
		if (getppid() != ppid) {
			tl_log("grandchild %d: parent is now %d, not %d: leaving", pid, getppid(),
			       ppid);
			_exit(ORPHANED);
		}
		sleep_ms(20);
	}
	if (getpid() != pid)
		bad |= BAD_PID;
	if (getppid() != ppid)
		bad |= BAD_PPID;
	if (bad)
		tl_log("grandchild: pid %d ppid %d, was %d %d", getpid(), getppid(), pid, ppid);
	_exit(bad);
}

/* A child that forks grandchild idx and exits with code. */
static pid_t spawn_forker(int idx, int code)
{
	pid_t pid, g, me;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		tl_fail("fork: %m");
	if (pid)
		return pid;
	me = getpid();
	g = fork();
	if (g < 0)
		_exit(100);
	if (!g)
		grandchild(idx, me);
	_exit(code);
}

/* Reap our child by the deadline; -1: not our child; -2: late, so SIGKILLed and reaped. */
static int reap(pid_t pid, uint64_t deadline)
{
	int st;
	pid_t r;

	if (pid <= 0)
		return -1;
	for (;;) {
		r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return st;
		if (r < 0 && errno != EINTR)
			return -1;
		if (!r && tl_now_ns() >= deadline) {
			kill(pid, SIGKILL); /* our unreaped child: the PID is ours */
			while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
				;
			return -2;
		}
		sleep_ms(5);
	}
}

static void expect_exit(const char *what, pid_t pid, int st, int code)
{
	tl_expect(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == code,
		  "%s (%d): %s %#x, expected exit %d", what, pid,
		  st == -1   ? "not our child"
		  : st == -2 ? "did not end"
			     : "status",
		  st, code);
}

static bool wait_recorded(int idx)
{
	uint64_t deadline = tl_now_ns() + SETUP_NS;

	while (!__atomic_load_n(&sh->recorded[idx], __ATOMIC_ACQUIRE)) {
		if (tl_now_ns() >= deadline)
			return false;
		sleep_ms(1);
	}
	return true;
}

static void expect_state(const char *when, const char *what, pid_t pid, char want)
{
	pid_t ppid;
	char state = proc_state(pid, &ppid);

	tl_expect(want == 'Z' ? state == 'Z' : state != 'Z' && state != '?',
		  "%s: %s (%d) is in state %c", when, what, pid, state);
	tl_expect(ppid == getpid(), "%s: %s (%d) has parent %d, not us", when, what, pid, ppid);
}

int main(void)
{
	pid_t c1, c2, d, g1, g2, g3, ppid;
	uint64_t deadline;
	int v = -1, st;

	tl_init();
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		tl_fail("mmap: %m");
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))
		tl_fail("PR_SET_CHILD_SUBREAPER: %m");

	c1 = spawn_forker(0, 11);
	c2 = spawn_forker(1, 12);
	deadline = tl_now_ns() + SETUP_NS;
	st = reap(c1, deadline);
	if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 11)
		tl_fail("the first child (%d) ended with %#x", c1, st);
	if (!wait_recorded(0) || !wait_recorded(1))
		tl_fail("the grandchildren were not adopted");
	g1 = sh->gpid[0];
	g2 = sh->gpid[1];
	while (proc_state(c2, &ppid) != 'Z') {
		if (tl_now_ns() >= deadline)
			tl_fail("the second child (%d) did not end", c2);
		sleep_ms(1);
	}
	expect_state("before", "the zombie child", c2, 'Z');
	expect_state("before", "grandchild 1", g1, 'R');
	expect_state("before", "grandchild 2", g2, 'R');
	if (tl_failures())
		tl_done();
	tl_log("subreaper %d: zombie child %d, adopted grandchildren %d and %d", getpid(), c2, g1,
	       g2);

	tl_ready();
	tl_wait_term();

	tl_expect(!prctl(PR_GET_CHILD_SUBREAPER, &v, 0, 0, 0) && v == 1,
		  "PR_GET_CHILD_SUBREAPER says %d", v);
	expect_state("after", "the zombie child", c2, 'Z');
	expect_state("after", "grandchild 1", g1, 'R');
	expect_state("after", "grandchild 2", g2, 'R');

	deadline = tl_now_ns() + REAP_NS;
	kill(g1, SIGTERM);
	kill(g2, SIGTERM);
	expect_exit("the zombie child", c2, reap(c2, deadline), 12);
	expect_exit("grandchild 1", g1, reap(g1, deadline), 0);
	expect_exit("grandchild 2", g2, reap(g2, deadline), 0);

	/* Still a subreaper: a new orphan comes to us. */
	d = spawn_forker(2, 13);
	deadline = tl_now_ns() + REAP_NS;
	expect_exit("the new child", d, reap(d, deadline), 13);
	if (tl_expect(wait_recorded(2), "the new grandchild was not adopted")) {
		g3 = sh->gpid[2];
		expect_exit("the new grandchild", g3, reap(g3, deadline), 0);
	}
	tl_expect(waitpid(-1, &st, WNOHANG) < 0 && errno == ECHILD, "children left over");
	tl_done();
}
