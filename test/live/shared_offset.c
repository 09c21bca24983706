// SPDX-License-Identifier: MIT
/*
 * One open file shared by two tasks, with its offset:
 *
 *   parent fd 10 = child fd 10 = child fd 40   data.bin opened O_RDWR once before the fork, at
 *                                              offset 100; the child dup()ed it to fd 40 with
 *                                              FD_CLOEXEC
 *   child fd 11                                data.bin opened again by the child, offset 500
 *   parent fd 12                               data.bin opened again by the parent, offset 2000
 *
 * A MAP_SHARED page is the only other channel between the two.  After SIGTERM the parent
 * checks with kcmp that the child's fds 10 and 40 are its own fd 10's open file and fds 11 and
 * 12 are files of their own, and the offsets.  Then, in turn: the child reads 10 bytes through
 * fd 10 (the bytes at offset 100) and sees fd 40 at 110; the parent sees its fd 10 at 110 and
 * its fd 12 still at 2000, and writes 4 bytes through fd 10; the child sees fd 40 at 114, its
 * fd 11 still at 505 (after a read of 5 bytes) and the parent's bytes in the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

#define SIZE 4096
#define SEED 0x4f464653ull
#define STEP_NS (5 * TL_NSEC_PER_SEC)

enum {
	SHARED = 10,
	CHILD_OWN = 11,
	PARENT_OWN = 12,
	CHILD_DUP = 40,
};

struct ctl {
	int ready, step, bad;
	char msg[256];
};

static struct ctl *ctl;
static unsigned char data[SIZE];
static pid_t child;

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000l};

	nanosleep(&ts, NULL);
}

static void move_fd(int fd, int want)
{
	if (fd < 0)
		tl_fail("open for fd %d: %m", want);
	if (fd == want)
		return;
	if (dup2(fd, want) != want)
		tl_fail("dup2 %d to %d: %m", fd, want);
	close(fd);
}

static off_t pos(int fd)
{
	return lseek(fd, 0, SEEK_CUR);
}

/* Wait until ctl->step reaches step; false after STEP_NS or when the other side went away. */
static bool wait_step(int step, pid_t other)
{
	uint64_t deadline = tl_now_ns() + STEP_NS;

	while (__atomic_load_n(&ctl->step, __ATOMIC_ACQUIRE) < step) {
		if (tl_now_ns() > deadline || kill(other, 0))
			return false;
		sleep_ms(1);
	}
	return true;
}

static void set_step(int step)
{
	__atomic_store_n(&ctl->step, step, __ATOMIC_RELEASE);
}

/* The child's failed checks: the first one in ctl->msg, a count in ctl->bad. */
static void child_expect(bool cond, const char *what, long long got, long long want)
{
	if (cond)
		return;
	if (!ctl->bad++)
		snprintf(ctl->msg, sizeof(ctl->msg), "child: %s: %lld, expected %lld", what, got,
			 want);
}

static void __attribute__((noreturn)) child_main(pid_t parent)
{
	unsigned char buf[16];
	ssize_t n;

	if (fcntl(SHARED, F_DUPFD_CLOEXEC, CHILD_DUP) != CHILD_DUP)
		_exit(2);
	move_fd(open("data.bin", O_RDONLY), CHILD_OWN);
	if (lseek(CHILD_OWN, 500, SEEK_SET) != 500)
		_exit(2);
	__atomic_store_n(&ctl->ready, 1, __ATOMIC_RELEASE);

	while (!tl_term) {
		if (getppid() != parent)
			_exit(3);
		sleep_ms(10);
	}
	if (!wait_step(1, parent))
		_exit(4);
	n = read(SHARED, buf, 10);
	child_expect(n == 10, "read of 10 bytes through fd 10", n, 10);
	child_expect(!memcmp(buf, data + 100, 10), "bytes at offset 100 match", 0, 1);
	child_expect(pos(CHILD_DUP) == 110, "fd 40 offset after the read on fd 10", pos(CHILD_DUP),
		     110);
	child_expect(fcntl(CHILD_DUP, F_GETFD) == FD_CLOEXEC, "fd 40 F_GETFD",
		     fcntl(CHILD_DUP, F_GETFD), FD_CLOEXEC);
	child_expect(fcntl(SHARED, F_GETFD) == 0, "fd 10 F_GETFD", fcntl(SHARED, F_GETFD), 0);
	child_expect(pos(CHILD_OWN) == 500, "fd 11 offset", pos(CHILD_OWN), 500);
	n = read(CHILD_OWN, buf, 5);
	child_expect(n == 5 && !memcmp(buf, data + 500, 5), "read of 5 bytes at 500 through fd 11",
		     n, 5);
	set_step(2);

	if (!wait_step(3, parent))
		_exit(4);
	child_expect(pos(CHILD_DUP) == 114, "fd 40 offset after the parent's write", pos(CHILD_DUP),
		     114);
	child_expect(pos(SHARED) == 114, "fd 10 offset after the parent's write", pos(SHARED), 114);
	child_expect(pos(CHILD_OWN) == 505, "fd 11 offset after the parent's write", pos(CHILD_OWN),
		     505);
	n = pread(CHILD_OWN, buf, 4, 110);
	child_expect(n == 4 && !memcmp(buf, "WXYZ", 4), "the parent's 4 bytes at offset 110", n, 4);
	set_step(4);
	_exit(ctl->bad ? 1 : 0);
}

static void build(void)
{
	pid_t parent = getpid();
	uint64_t deadline;

	ctl = mmap(NULL, sizeof(*ctl), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (ctl == MAP_FAILED)
		tl_fail("mmap: %m");
	if (chdir(tl_dir()))
		tl_fail("chdir %s: %m", tl_dir());
	tl_fill(data, sizeof(data), SEED);
	tl_write_file("data.bin", data, sizeof(data));
	move_fd(open("data.bin", O_RDWR), SHARED);
	if (lseek(SHARED, 100, SEEK_SET) != 100)
		tl_fail("lseek: %m");

	fflush(stdout);
	child = fork();
	if (child < 0)
		tl_fail("fork: %m");
	if (!child)
		child_main(parent);

	move_fd(open("data.bin", O_RDONLY), PARENT_OWN);
	if (lseek(PARENT_OWN, 2000, SEEK_SET) != 2000)
		tl_fail("lseek: %m");
	deadline = tl_now_ns() + STEP_NS;
	while (!__atomic_load_n(&ctl->ready, __ATOMIC_ACQUIRE)) {
		if (tl_now_ns() > deadline)
			tl_fail("the child did not get ready");
		sleep_ms(1);
	}
}

static bool same_file(pid_t p1, int fd1, pid_t p2, int fd2)
{
	return syscall(SYS_kcmp, p1, p2, KCMP_FILE, fd1, fd2) == 0;
}

static void check(void)
{
	pid_t me = getpid();
	int st;

	tl_expect(same_file(me, SHARED, child, SHARED), "the child's fd 10 is not the parent's");
	tl_expect(same_file(me, SHARED, child, CHILD_DUP),
		  "the child's fd 40 is not the parent's fd 10");
	tl_expect(!same_file(me, SHARED, child, CHILD_OWN),
		  "the child's fd 11 is the parent's fd 10");
	tl_expect(!same_file(me, PARENT_OWN, child, CHILD_OWN),
		  "the child's fd 11 is the parent's fd 12");
	tl_expect(!same_file(me, SHARED, me, PARENT_OWN), "fds 10 and 12 are one open file");
	tl_expect(pos(SHARED) == 100, "fd 10 at offset %lld, not 100", (long long)pos(SHARED));
	tl_expect(pos(PARENT_OWN) == 2000, "fd 12 at offset %lld, not 2000",
		  (long long)pos(PARENT_OWN));

	kill(child, SIGTERM);
	set_step(1);
	if (tl_expect(wait_step(2, child), "the child did not read (step %d)", ctl->step)) {
		tl_expect(pos(SHARED) == 110,
			  "fd 10 at offset %lld after the child's read, not 110",
			  (long long)pos(SHARED));
		tl_expect(pos(PARENT_OWN) == 2000, "fd 12 at offset %lld after the child's read",
			  (long long)pos(PARENT_OWN));
		tl_expect(write(SHARED, "WXYZ", 4) == 4, "write to fd 10: %m");
		set_step(3);
		tl_expect(wait_step(4, child), "the child did not check the write (step %d)",
			  ctl->step);
	}
	if (waitpid(child, &st, 0) != child) {
		tl_expect(false, "waitpid: %m");
		return;
	}
	tl_expect(!ctl->bad, "%s (%d failed checks in the child)", ctl->msg, ctl->bad);
	tl_expect(WIFEXITED(st) && !WEXITSTATUS(st), "child ended with status %#x", st);
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
