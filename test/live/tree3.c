// SPDX-License-Identifier: MIT
/*
 * A three-level tree with sessions and process groups:
 *
 *   R   the root: session and group leader, as every test program
 *   +-- A   setsid(): a session leader that is not the root
 *   |   +-- A1  in A's session and group
 *   |   +-- A2  in A's session, leader of a group of its own
 *   +-- B   setpgid(0, 0): a group of its own in R's session
 *       +-- B1  moved into B's group by B
 *       +-- B2  stays in R's group, whose leader is its grandparent
 *
 * Each task records getpid/getppid/getpgid/getsid once the tree is built; the root says ready
 * when all seven have (and the layout is as above).  After SIGTERM every parent passes SIGTERM
 * on to its children, every task compares its ids with the recorded ones and exits with a bit
 * per difference, and every parent reaps its children and folds their failure into its own
 * exit status.  The root prints the verdict.  A task whose parent goes away (the root killed
 * by the runner after a failure) exits by itself.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

/* Exit status bits of a task. */
#define BAD_PID 0x01
#define BAD_PPID 0x02
#define BAD_PGID 0x04
#define BAD_SID 0x08
#define BAD_KID 0x10  /* a child of ours failed */
#define ORPHANED 0x20 /* our parent changed while we waited */
#define BAD_SETUP 0x40

#define SETUP_NS (5 * TL_NSEC_PER_SEC)
#define REAP_NS (5 * TL_NSEC_PER_SEC)

enum { R, A, A1, A2, B, B1, B2, NR_TASKS };
static const char *const names[NR_TASKS] = {"R", "A", "A1", "A2", "B", "B1", "B2"};

struct ids {
	pid_t pid, ppid, pgid, sid;
};

static pid_t root_pid;

/* Written by each task once its ids are final; read by the root before ready. */
static struct shared {
	struct ids ids[NR_TASKS];
	int recorded[NR_TASKS];
} * sh;

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000l};

	nanosleep(&ts, NULL);
}

static struct ids get_ids(void)
{
	return (struct ids){getpid(), getppid(), getpgid(0), getsid(0)};
}

static void record(int me, struct ids *was)
{
	*was = get_ids();
	sh->ids[me] = *was;
	__atomic_store_n(&sh->recorded[me], 1, __ATOMIC_RELEASE);
}

static int check_ids(int me, const struct ids *was)
{
	struct ids now = get_ids();
	int bad = 0;

	if (now.pid != was->pid)
		bad |= BAD_PID;
	if (now.ppid != was->ppid)
		bad |= BAD_PPID;
	if (now.pgid != was->pgid)
		bad |= BAD_PGID;
	if (now.sid != was->sid)
		bad |= BAD_SID;
	if (bad)
		tl_log("%s: pid %d ppid %d pgid %d sid %d, was %d %d %d %d", names[me], now.pid,
		       now.ppid, now.pgid, now.sid, was->pid, was->ppid, was->pgid, was->sid);
	return bad;
}

static const char *status_str(int st, char *buf, size_t size)
{
	if (st == -1)
		snprintf(buf, size, "not our child");
	else if (st == -2)
		snprintf(buf, size, "did not exit in time");
	else if (WIFEXITED(st))
		snprintf(buf, size, "exited %#x", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, size, "killed by signal %d", WTERMSIG(st));
	else
		snprintf(buf, size, "status %#x", st);
	return buf;
}

/*
 * Reap our child by the deadline.  Status -1: not our child; -2: late, so SIGKILLed (waitpid
 * has just said it is our unreaped child, so the PID is ours) and reaped.
 */
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
			kill(pid, SIGKILL);
			while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
				;
			return -2;
		}
		sleep_ms(5);
	}
}

/* SIGTERM our children, reap them; BAD_KID if any did not exit 0. */
static int stop_kids(int me, const pid_t *kids, const int *kid_ids, int n)
{
	uint64_t deadline = tl_now_ns() + REAP_NS;
	char buf[64];
	int bad = 0, st;

	for (int i = 0; i < n; i++)
		kill(kids[i], SIGTERM);
	for (int i = 0; i < n; i++) {
		st = reap(kids[i], deadline);
		if (st == 0)
			continue;
		tl_log("%s: child %s (%d) %s", names[me], names[kid_ids[i]], kids[i],
		       status_str(st, buf, sizeof(buf)));
		bad |= BAD_KID;
	}
	return bad;
}

/* A non-root task: wait for SIGTERM (or leave if orphaned), check, stop the kids, exit. */
static void __attribute__((noreturn))
node_finish(int me, const struct ids *was, const pid_t *kids, const int *kid_ids, int n)
{
	int bad;

	while (!tl_term) {
		pid_t ppid = getppid();

		if (ppid != was->ppid) {
			tl_log("%s: parent is now %d, not %d: leaving", names[me], ppid, was->ppid);
			stop_kids(me, kids, kid_ids, n);
			_exit(ORPHANED);
		}
		sleep_ms(20);
	}
	bad = check_ids(me, was);
	bad |= stop_kids(me, kids, kid_ids, n);
	_exit(bad);
}

static pid_t spawn(void (*fn)(void))
{
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid < 0 && getpid() == root_pid)
		tl_fail("fork: %m");
	if (pid < 0) {
		tl_log("fork: %m");
		_exit(BAD_SETUP);
	}
	if (!pid) {
		fn();
		_exit(BAD_SETUP);
	}
	return pid;
}

static void leaf(int me)
{
	struct ids was;

	record(me, &was);
	node_finish(me, &was, NULL, NULL, 0);
}

static void run_a1(void)
{
	leaf(A1);
}

static void run_a2(void)
{
	if (setpgid(0, 0)) {
		tl_log("A2: setpgid: %m");
		_exit(BAD_SETUP);
	}
	leaf(A2);
}

static void run_b2(void)
{
	leaf(B2);
}

static void run_b1(void)
{
	uint64_t deadline = tl_now_ns() + SETUP_NS;

	/* B moves us into its group once it has made it. */
	while (getpgid(0) != getppid()) {
		if (tl_now_ns() >= deadline) {
			tl_log("B1: never moved into B's group");
			_exit(BAD_SETUP);
		}
		sleep_ms(1);
	}
	leaf(B1);
}

static void run_a(void)
{
	static const int kid_ids[] = {A1, A2};
	pid_t kids[2];
	struct ids was;

	if (setsid() < 0) {
		tl_log("A: setsid: %m");
		_exit(BAD_SETUP);
	}
	kids[0] = spawn(run_a1);
	kids[1] = spawn(run_a2);
	record(A, &was);
	node_finish(A, &was, kids, kid_ids, 2);
}

static void run_b(void)
{
	static const int kid_ids[] = {B1, B2};
	pid_t kids[2];
	struct ids was;

	/* Both children start in R's group; then B makes its own and takes B1 along. */
	kids[0] = spawn(run_b1);
	kids[1] = spawn(run_b2);
	if (setpgid(0, 0) || setpgid(kids[0], getpid())) {
		tl_log("B: setpgid: %m");
		kill(kids[0], SIGTERM);
		kill(kids[1], SIGTERM);
		_exit(BAD_SETUP);
	}
	record(B, &was);
	node_finish(B, &was, kids, kid_ids, 2);
}

/* The layout the header comment draws, from the ids every task recorded. */
static void check_layout(void)
{
	const struct ids *id = sh->ids;
	const struct {
		int task, parent, group, session;
	} want[NR_TASKS] = {
		{R, -1, R, R}, {A, R, A, A},  {A1, A, A, A}, {A2, A, A2, A},
		{B, R, B, R},  {B1, B, B, R}, {B2, B, R, R},
	};

	for (int i = 0; i < NR_TASKS; i++) {
		const struct ids *t = &id[want[i].task];

		if (want[i].parent >= 0 && t->ppid != id[want[i].parent].pid)
			tl_fail("%s: parent %d, not %s", names[i], t->ppid, names[want[i].parent]);
		if (t->pgid != id[want[i].group].pid)
			tl_fail("%s: group %d, not %s's", names[i], t->pgid, names[want[i].group]);
		if (t->sid != id[want[i].session].pid)
			tl_fail("%s: session %d, not %s's", names[i], t->sid,
				names[want[i].session]);
	}
}

int main(void)
{
	static const int kid_ids[] = {A, B};
	uint64_t deadline;
	struct ids was;
	pid_t kids[2];
	char buf[64];
	int st;

	tl_init();
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		tl_fail("mmap: %m");
	root_pid = getpid();
	record(R, &was);
	kids[0] = spawn(run_a);
	kids[1] = spawn(run_b);

	deadline = tl_now_ns() + SETUP_NS;
	for (int i = 0; i < NR_TASKS; i++) {
		while (!__atomic_load_n(&sh->recorded[i], __ATOMIC_ACQUIRE)) {
			/* a child that died in its setup */
			if (waitpid(-1, &st, WNOHANG) > 0 || tl_now_ns() >= deadline) {
				kill(kids[0], SIGTERM);
				kill(kids[1], SIGTERM);
				tl_fail("%s never recorded its ids", names[i]);
			}
			sleep_ms(1);
		}
	}
	check_layout();
	for (int i = 0; i < NR_TASKS; i++)
		tl_log("%-2s pid %d ppid %d pgid %d sid %d", names[i], sh->ids[i].pid,
		       sh->ids[i].ppid, sh->ids[i].pgid, sh->ids[i].sid);

	tl_ready();
	tl_wait_term();

	st = check_ids(R, &was);
	tl_expect(!st, "root ids changed (bits %#x)", st);
	deadline = tl_now_ns() + REAP_NS;
	kill(kids[0], SIGTERM);
	kill(kids[1], SIGTERM);
	for (int i = 0; i < 2; i++) {
		st = reap(kids[i], deadline);
		tl_expect(st == 0, "child %s (%d) %s", names[kid_ids[i]], kids[i],
			  status_str(st, buf, sizeof(buf)));
	}
	tl_expect(waitpid(-1, &st, WNOHANG) < 0 && errno == ECHILD,
		  "children left after reaping A and B");
	tl_done();
}
