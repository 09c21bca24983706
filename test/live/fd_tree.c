// SPDX-License-Identifier: MIT
/*
 * Three tasks, R -> A -> A1, sharing one eventfd and one pipe through fork():
 *
 *   R   fd 10 eventfd, fd 11 the pipe's read end, fd 12 its write end
 *   A   fd 10, fd 12 (closed fd 11)
 *   A1  fd 10, fd 30 a dup() of the write end with FD_CLOEXEC (closed fds 11 and 12)
 *
 * Before the dump A and A1 each write a record into the pipe and add to the eventfd (R adds
 * too).  After SIGTERM R checks with kcmp that A's and A1's fds are its own open files, the
 * count and the queued records; each task checks its own fd table.  Then A and A1 each write a
 * second record and add again, and exit; R reads all four records, reaps A (which reaps A1),
 * closes its write end and must then see EOF: no other write end may be left anywhere.  The
 * eventfd count must be the sum of every task's additions.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kcmp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

#define STEP_NS (5 * TL_NSEC_PER_SEC)

enum {
	EFD = 10,
	P_R = 11,
	P_W = 12,
	A1_W = 30,
};

enum { R, A, A1, NR_TASKS };
static const char *const names[NR_TASKS] = {"R", "A", "A1"};
/* what each task adds to the eventfd, before the dump and after the restore */
static const uint64_t add_pre[NR_TASKS] = {0x1, 0x10, 0x100};
static const uint64_t add_post[NR_TASKS] = {0, 0x1000, 0x10000};

struct rec {
	char tag[8]; /* "pre" or "post" */
	int who;
	pid_t pid;
};

struct ctl {
	pid_t pid[NR_TASKS];
	int ready[NR_TASKS];
	int bad;
	char msg[256];
};

static struct ctl *ctl;

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000l};

	nanosleep(&ts, NULL);
}

/* A child's failed check: the first one in ctl->msg. */
static void child_expect(bool cond, int me, const char *what, long long got)
{
	if (cond)
		return;
	if (!__atomic_fetch_add(&ctl->bad, 1, __ATOMIC_SEQ_CST))
		snprintf(ctl->msg, sizeof(ctl->msg), "%s: %s (%lld)", names[me], what, got);
}

static int put(int fd, int who, const char *tag, uint64_t add)
{
	struct rec r = {.who = who, .pid = getpid()};

	snprintf(r.tag, sizeof(r.tag), "%s", tag);
	if (write(fd, &r, sizeof(r)) != sizeof(r))
		return -1;
	if (add && write(EFD, &add, sizeof(add)) != sizeof(add))
		return -1;
	return 0;
}

/* Wait for SIGTERM; leave when the parent goes away. */
static void wait_term(pid_t parent)
{
	while (!tl_term) {
		if (getppid() != parent)
			_exit(3);
		sleep_ms(10);
	}
}

static void __attribute__((noreturn)) run_a1(pid_t parent)
{
	if (fcntl(P_W, F_DUPFD_CLOEXEC, A1_W) != A1_W)
		_exit(2);
	close(P_R);
	close(P_W);
	if (put(A1_W, A1, "pre", add_pre[A1]))
		_exit(2);
	ctl->pid[A1] = getpid();
	__atomic_store_n(&ctl->ready[A1], 1, __ATOMIC_RELEASE);
	wait_term(parent);

	child_expect(fcntl(EFD, F_GETFD) == 0, A1, "fd 10 F_GETFD", fcntl(EFD, F_GETFD));
	child_expect(fcntl(A1_W, F_GETFD) == FD_CLOEXEC, A1, "fd 30 F_GETFD", fcntl(A1_W, F_GETFD));
	child_expect(fcntl(A1_W, F_GETFL) == O_WRONLY, A1, "fd 30 F_GETFL", fcntl(A1_W, F_GETFL));
	child_expect(fcntl(P_R, F_GETFD) < 0, A1, "fd 11 is open", P_R);
	child_expect(fcntl(P_W, F_GETFD) < 0, A1, "fd 12 is open", P_W);
	child_expect(!put(A1_W, A1, "post", add_post[A1]), A1, "second record", errno);
	_exit(ctl->bad ? 1 : 0);
}

static void __attribute__((noreturn)) run_a(pid_t parent)
{
	uint64_t deadline = tl_now_ns() + STEP_NS;
	pid_t me = getpid(), kid;
	int st;

	close(P_R);
	fflush(stdout);
	kid = fork();
	if (kid < 0)
		_exit(2);
	if (!kid)
		run_a1(me);
	if (put(P_W, A, "pre", add_pre[A]))
		_exit(2);
	while (!__atomic_load_n(&ctl->ready[A1], __ATOMIC_ACQUIRE)) {
		if (tl_now_ns() > deadline)
			_exit(2);
		sleep_ms(1);
	}
	ctl->pid[A] = me;
	__atomic_store_n(&ctl->ready[A], 1, __ATOMIC_RELEASE);
	wait_term(parent);

	kill(kid, SIGTERM);
	child_expect(fcntl(EFD, F_GETFD) == 0, A, "fd 10 F_GETFD", fcntl(EFD, F_GETFD));
	child_expect(fcntl(P_W, F_GETFD) == 0, A, "fd 12 F_GETFD", fcntl(P_W, F_GETFD));
	child_expect(fcntl(P_R, F_GETFD) < 0, A, "fd 11 is open", P_R);
	child_expect(fcntl(A1_W, F_GETFD) < 0, A, "fd 30 is open", A1_W);
	child_expect(!put(P_W, A, "post", add_post[A]), A, "second record", errno);
	deadline = tl_now_ns() + STEP_NS;
	while (waitpid(kid, &st, WNOHANG) != kid) {
		if (tl_now_ns() > deadline) {
			kill(kid, SIGKILL);
			waitpid(kid, &st, 0);
			child_expect(false, A, "A1 did not exit", 0);
			break;
		}
		sleep_ms(5);
	}
	child_expect(WIFEXITED(st) && WEXITSTATUS(st) <= 1, A, "A1's exit status", st);
	_exit(ctl->bad ? 1 : 0);
}

static void build(void)
{
	uint64_t deadline = tl_now_ns() + STEP_NS;
	int p[2], efd;
	pid_t kid;

	ctl = mmap(NULL, sizeof(*ctl), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (ctl == MAP_FAILED)
		tl_fail("mmap: %m");
	efd = eventfd(0, 0);
	if (efd < 0 || pipe(p))
		tl_fail("eventfd or pipe: %m");
	if (dup2(efd, EFD) != EFD || dup2(p[0], P_R) != P_R || dup2(p[1], P_W) != P_W)
		tl_fail("dup2: %m");
	close(efd);
	close(p[0]);
	close(p[1]);
	ctl->pid[R] = getpid();
	if (put(P_W, R, "pre", add_pre[R]))
		tl_fail("write: %m");

	fflush(stdout);
	kid = fork();
	if (kid < 0)
		tl_fail("fork: %m");
	if (!kid)
		run_a(getppid());
	while (!__atomic_load_n(&ctl->ready[A], __ATOMIC_ACQUIRE)) {
		if (tl_now_ns() > deadline)
			tl_fail("the children did not get ready");
		sleep_ms(1);
	}
	if (ctl->pid[A] != kid)
		tl_fail("A says it is %d, fork said %d", ctl->pid[A], kid);
}

static bool same_file(pid_t p1, int fd1, pid_t p2, int fd2)
{
	return syscall(SYS_kcmp, p1, p2, KCMP_FILE, fd1, fd2) == 0;
}

static uint64_t fdinfo_count(void)
{
	char text[1024], count[64];

	tl_read_file("/proc/self/fdinfo/10", text, sizeof(text));
	if (!tl_status_field(text, "eventfd-count", count, sizeof(count)))
		tl_fail("no eventfd-count in fdinfo");
	return strtoull(count, NULL, 16);
}

static int queued(int fd)
{
	int n = -1;

	ioctl(fd, FIONREAD, &n);
	return n;
}

/* Read a record within STEP_NS; false at EOF, error or timeout. */
static bool get_rec(struct rec *r)
{
	struct pollfd p = {.fd = P_R, .events = POLLIN};

	memset(r, 0, sizeof(*r));
	if (poll(&p, 1, STEP_NS / TL_NSEC_PER_MSEC) != 1)
		return false;
	return read(P_R, r, sizeof(*r)) == sizeof(*r);
}

static void check(void)
{
	pid_t me = getpid(), a = ctl->pid[A], a1 = ctl->pid[A1];
	uint64_t sum = 0, v = 0;
	int seen[NR_TASKS][2] = {{0}};
	struct rec r;
	char c;
	int st;

	tl_expect(same_file(me, EFD, a, EFD), "A's fd 10 is not R's eventfd");
	tl_expect(same_file(me, EFD, a1, EFD), "A1's fd 10 is not R's eventfd");
	tl_expect(same_file(me, P_W, a, P_W), "A's fd 12 is not R's pipe write end");
	tl_expect(same_file(me, P_W, a1, A1_W), "A1's fd 30 is not R's pipe write end");
	tl_expect(fdinfo_count() == 0x111, "eventfd count %#" PRIx64 ", expected 0x111",
		  fdinfo_count());
	tl_expect(queued(P_R) == 3 * (int)sizeof(r), "%d bytes queued in the pipe, expected %zu",
		  queued(P_R), 3 * sizeof(r));

	kill(a, SIGTERM);
	/* R's, A's and A1's pre records, then A's and A1's post records */
	for (int i = 0; i < 5; i++) {
		int post;

		if (!tl_expect(get_rec(&r), "record %d did not come (%m)", i))
			break;
		post = !strcmp(r.tag, "post");
		if (!tl_expect(r.who >= 0 && r.who < NR_TASKS && (post || !strcmp(r.tag, "pre")) &&
				       r.pid == ctl->pid[r.who],
			       "record %d is no record: \"%.8s\" %d %d", i, r.tag, r.who, r.pid))
			continue;
		tl_expect(!seen[r.who][post]++, "two %s records from %s", r.tag, names[r.who]);
		tl_expect(!post || seen[r.who][0], "%s's post record came before its pre record",
			  names[r.who]);
	}
	for (int t = A; t < NR_TASKS; t++)
		tl_expect(seen[t][0] == 1 && seen[t][1] == 1, "%s: %d pre and %d post records",
			  names[t], seen[t][0], seen[t][1]);
	tl_expect(seen[R][0] == 1, "R's pre record came %d times", seen[R][0]);

	if (waitpid(a, &st, 0) != a)
		tl_expect(false, "waitpid: %m");
	else
		tl_expect(WIFEXITED(st) && !WEXITSTATUS(st), "A ended with status %#x", st);
	tl_expect(!ctl->bad, "%s (%d failed checks in the children)", ctl->msg, ctl->bad);

	/* with every other write end gone, closing R's makes EOF; a stray one would hang */
	close(P_W);
	errno = 0;
	tl_expect(poll(&(struct pollfd){.fd = P_R, .events = POLLIN}, 1, 1000) == 1 &&
			  read(P_R, &c, 1) == 0,
		  "no EOF on the pipe with R's write end closed (%m)");

	for (int t = 0; t < NR_TASKS; t++)
		sum += add_pre[t] + add_post[t];
	tl_expect(read(EFD, &v, sizeof(v)) == sizeof(v) && v == sum,
		  "eventfd read %#" PRIx64 ", expected %#" PRIx64, v, sum);
}

int main(void)
{
	tl_init();
	build();
	tl_ready();
	tl_wait_term();
	check();
	tl_done();
}
