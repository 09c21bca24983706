// SPDX-License-Identifier: MIT
/*
 * Pipes, with a forked child holding them too:
 *
 *   10/11  a full 1 MiB pipe: F_SETPIPE_SZ 1 MiB and 1 MiB of a pattern queued
 *   12/13  "up": the child writes, the parent reads; the parent closed its write end
 *   14/15  "down": the parent writes, the child reads; the child closed its write end
 *   16/17  read end O_NONBLOCK, write end blocking, nothing queued
 *   18/19  read end also dup()ed to fd 50, FD_CLOEXEC on fd 50 only; "abc" queued
 *   20/21  a one-page pipe (F_SETPIPE_SZ 4096) holding exactly one page
 *   22     a third open file of the 16/17 pipe, opened O_RDWR through /proc/self/fd/16
 *
 * Both up and down carry a message queued before the dump.  After SIGTERM the parent's fds
 * must be there with the same numbers, F_GETFD/F_GETFL flags and kinds, the same fds must
 * share open file descriptions (kcmp) and pipes (inode), and the child must still share the
 * parent's open files.  Then the pipes must behave: the 1 MiB pipe has its size, is full and
 * gives back the pattern; the empty non-blocking end says EAGAIN; a flag set through fd 50
 * shows on fd 18 and "abc" comes out; the parent sends a second message down and closes its
 * end, the child sends a second message up, reads down to EOF, checks it and reports up;
 * the parent reads up to EOF (so no stray write end was made anywhere) and reaps the child.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

#define BIG_SIZE (1 << 20)
#define BIG_SEED 0x50495045ull
#define SMALL_SEED 0x534d414cull
#define PAGE 4096
#define CHILD_NS (5 * TL_NSEC_PER_SEC)

enum {
	BIG_R = 10,
	BIG_W,
	UP_R,
	UP_W,
	DOWN_R,
	DOWN_W,
	NB_R,
	NB_W,
	CX_R,
	CX_W,
	SM_R,
	SM_W,
	NB_RW,
	CX_DUP = 50,
};

static const char up_pre[] = "up: queued before the dump\n";
static const char up_post[] = "up: written after the restore\n";
static const char down_pre[] = "down: queued before the dump\n";
static const char down_post[] = "down: written after the restore\n";
static const char child_ok[] = "child: ok\n";

static unsigned char big[BIG_SIZE];
static pid_t child;

/* ---- the fd table, compared as a whole ---- */

static struct tl_fdtab fdtab_before, fdtab_after;

/* ---- helpers ---- */

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000l};

	nanosleep(&ts, NULL);
}

static void move_fd(int fd, int want)
{
	if (fd == want)
		return;
	if (dup2(fd, want) != want)
		tl_fail("dup2 %d to %d: %m", fd, want);
	close(fd);
}

/* A pipe at fds r and r + 1, made at high numbers first so they cannot collide. */
static void make_pipe(int r)
{
	int p[2];

	if (pipe(p))
		tl_fail("pipe: %m");
	move_fd(fcntl(p[0], F_DUPFD, 100), r);
	move_fd(fcntl(p[1], F_DUPFD, 100), r + 1);
	close(p[0]);
	close(p[1]);
}

static void write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len) {
		n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			tl_fail("write to fd %d: %m", fd);
		p += n;
		len -= n;
	}
}

/* Read until EOF (or size bytes) within 5 s; returns the length, -1 on error or timeout. */
static ssize_t read_to_eof(int fd, char *buf, size_t size)
{
	uint64_t deadline = tl_now_ns() + CHILD_NS;
	struct pollfd p = {.fd = fd, .events = POLLIN};
	size_t len = 0;
	ssize_t n;

	while (len < size) {
		if (tl_now_ns() >= deadline) {
			errno = ETIMEDOUT;
			return -1;
		}
		if (poll(&p, 1, 50) <= 0)
			continue;
		n = read(fd, buf + len, size - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (!n)
			break;
		len += n;
	}
	return len;
}

static int queued(int fd)
{
	int n = -1;

	if (ioctl(fd, FIONREAD, &n))
		return -1;
	return n;
}

static short revents(int fd, short events)
{
	struct pollfd p = {.fd = fd, .events = events};

	if (poll(&p, 1, 0) < 0)
		return -1;
	return p.revents;
}

/* ---- the child ---- */

static void __attribute__((noreturn)) child_main(pid_t parent)
{
	char buf[256];
	ssize_t n;

	close(UP_R);
	close(DOWN_W);
	write_all(UP_W, up_pre, strlen(up_pre));
	while (!tl_term) {
		if (getppid() != parent)
			_exit(2);
		sleep_ms(20);
	}
	write_all(UP_W, up_post, strlen(up_post));
	n = read_to_eof(DOWN_R, buf, sizeof(buf) - 1);
	if (n < 0) {
		snprintf(buf, sizeof(buf), "child: read of the down pipe: %s\n", strerror(errno));
		write_all(UP_W, buf, strlen(buf));
		_exit(1);
	}
	buf[n] = '\0';
	if (strncmp(buf, down_pre, strlen(down_pre)) || strcmp(buf + strlen(down_pre), down_post)) {
		char msg[512];

		snprintf(msg, sizeof(msg), "child: down pipe held \"%s\"\n", buf);
		write_all(UP_W, msg, strlen(msg));
		_exit(1);
	}
	write_all(UP_W, child_ok, strlen(child_ok));
	_exit(0);
}

/* ---- the parent ---- */

static void build(void)
{
	char path[64];
	int size;

	make_pipe(BIG_R);
	size = fcntl(BIG_W, F_SETPIPE_SZ, BIG_SIZE);
	if (size != BIG_SIZE)
		tl_fail("F_SETPIPE_SZ 1 MiB: %d %m", size);
	tl_fill(big, sizeof(big), BIG_SEED);
	write_all(BIG_W, big, sizeof(big));
	memset(big, 0, sizeof(big));

	make_pipe(UP_R);
	make_pipe(DOWN_R);
	write_all(DOWN_W, down_pre, strlen(down_pre));

	make_pipe(NB_R);
	if (fcntl(NB_R, F_SETFL, O_NONBLOCK))
		tl_fail("F_SETFL: %m");
	snprintf(path, sizeof(path), "/proc/self/fd/%d", NB_R);
	move_fd(open(path, O_RDWR), NB_RW);

	make_pipe(CX_R);
	if (fcntl(CX_R, F_DUPFD_CLOEXEC, CX_DUP) != CX_DUP)
		tl_fail("F_DUPFD_CLOEXEC to %d: %m", CX_DUP);
	write_all(CX_W, "abc", 3);

	make_pipe(SM_R);
	size = fcntl(SM_W, F_SETPIPE_SZ, PAGE);
	if (size != PAGE)
		tl_fail("F_SETPIPE_SZ 4096: %d %m", size);
	tl_fill(big, PAGE, SMALL_SEED);
	write_all(SM_W, big, PAGE);
	memset(big, 0, PAGE);
}

static void start_child(void)
{
	pid_t parent = getpid();
	uint64_t deadline = tl_now_ns() + CHILD_NS;

	fflush(stdout);
	child = fork();
	if (child < 0)
		tl_fail("fork: %m");
	if (!child)
		child_main(parent);
	close(UP_W);
	close(DOWN_R);
	while (queued(UP_R) != (int)strlen(up_pre)) {
		if (tl_now_ns() > deadline)
			tl_fail("the child did not write its first message");
		sleep_ms(5);
	}
}

static void check_child_shares(void)
{
	static const int fds[] = {BIG_R, BIG_W, NB_R, NB_W, NB_RW, CX_R, CX_W, CX_DUP, SM_R, SM_W};

	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		tl_expect(syscall(SYS_kcmp, getpid(), child, KCMP_FILE, fds[i], fds[i]) == 0,
			  "the child's fd %d is not the parent's open file", fds[i]);
	tl_expect(syscall(SYS_kcmp, getpid(), child, KCMP_FILE, UP_R, UP_W) != 0,
		  "kcmp of the up pipe's ends says they are one file");
}

static void check_big(void)
{
	ssize_t n, bad;
	size_t len = 0;

	tl_expect(fcntl(BIG_R, F_GETPIPE_SZ) == BIG_SIZE, "1 MiB pipe: F_GETPIPE_SZ %d",
		  fcntl(BIG_R, F_GETPIPE_SZ));
	tl_expect(queued(BIG_R) == BIG_SIZE, "1 MiB pipe: %d bytes queued", queued(BIG_R));
	tl_expect(!(revents(BIG_W, POLLOUT) & POLLOUT), "1 MiB pipe: the write end is writable");
	if (fcntl(BIG_R, F_SETFL, O_NONBLOCK))
		tl_fail("F_SETFL: %m");
	while (len < sizeof(big)) {
		n = read(BIG_R, big + len, sizeof(big) - len);
		if (n <= 0)
			break;
		len += n;
	}
	if (tl_expect(len == sizeof(big), "1 MiB pipe: read %zu bytes", len)) {
		bad = tl_check_fill(big, len, BIG_SEED);
		tl_expect(bad < 0, "1 MiB pipe: wrong byte at offset %zd", bad);
	}
	tl_expect(read(BIG_R, big, 1) < 0 && errno == EAGAIN, "1 MiB pipe: more than 1 MiB queued");
	tl_expect(revents(BIG_W, POLLOUT) & POLLOUT, "1 MiB pipe: not writable once drained");
}

static void check_small(void)
{
	char buf[16];
	ssize_t n, bad;

	tl_expect(fcntl(SM_R, F_GETPIPE_SZ) == PAGE, "one-page pipe: F_GETPIPE_SZ %d",
		  fcntl(SM_R, F_GETPIPE_SZ));
	tl_expect(!(revents(SM_W, POLLOUT) & POLLOUT), "one-page pipe: the write end is writable");
	n = read(SM_R, big, PAGE);
	if (tl_expect(n == PAGE, "one-page pipe: read %zd bytes", n)) {
		bad = tl_check_fill(big, PAGE, SMALL_SEED);
		tl_expect(bad < 0, "one-page pipe: wrong byte at offset %zd", bad);
	}
	tl_expect(queued(SM_R) == 0, "one-page pipe: %d bytes left", queued(SM_R));
	write_all(SM_W, "xyz", 3);
	tl_expect(read(SM_R, buf, sizeof(buf)) == 3 && !memcmp(buf, "xyz", 3),
		  "one-page pipe: a new write did not come out");
}

static void check_nonblock(void)
{
	char buf[8];

	tl_expect(fcntl(NB_R, F_GETFL) == (O_RDONLY | O_NONBLOCK),
		  "O_NONBLOCK read end: F_GETFL %#o", fcntl(NB_R, F_GETFL));
	tl_expect(fcntl(NB_W, F_GETFL) == O_WRONLY, "blocking write end: F_GETFL %#o",
		  fcntl(NB_W, F_GETFL));
	tl_expect(read(NB_R, buf, sizeof(buf)) < 0 && errno == EAGAIN,
		  "empty O_NONBLOCK read end did not say EAGAIN");
	write_all(NB_W, "12345", 5);
	tl_expect(read(NB_R, buf, sizeof(buf)) == 5 && !memcmp(buf, "12345", 5),
		  "O_NONBLOCK pipe: a new write did not come out");
	/* open() adds the kernel's O_LARGEFILE, which glibc's is not */
	tl_expect((fcntl(NB_RW, F_GETFL) & (O_ACCMODE | O_NONBLOCK)) == O_RDWR,
		  "O_RDWR pipe fd: F_GETFL %#o", fcntl(NB_RW, F_GETFL));
	tl_expect(write(NB_RW, "67", 2) == 2, "write to the O_RDWR pipe fd: %m");
	tl_expect(read(NB_R, buf, sizeof(buf)) == 2 && !memcmp(buf, "67", 2),
		  "a write on the O_RDWR fd did not come out of the read end");
	write_all(NB_W, "89", 2);
	tl_expect(read(NB_RW, buf, sizeof(buf)) == 2 && !memcmp(buf, "89", 2),
		  "the O_RDWR fd does not read what the write end wrote");
}

static void check_cloexec_dup(void)
{
	char buf[8];

	tl_expect(fcntl(CX_R, F_GETFD) == 0, "fd %d: F_GETFD %#x", CX_R, fcntl(CX_R, F_GETFD));
	tl_expect(fcntl(CX_DUP, F_GETFD) == FD_CLOEXEC, "fd %d: F_GETFD %#x", CX_DUP,
		  fcntl(CX_DUP, F_GETFD));
	tl_expect(queued(CX_R) == 3, "dup()ed pipe: %d bytes queued", queued(CX_R));
	/* status flags belong to the open file: set through one fd, seen through the other */
	fcntl(CX_DUP, F_SETFL, O_NONBLOCK);
	tl_expect(fcntl(CX_R, F_GETFL) & O_NONBLOCK, "O_NONBLOCK set on fd %d is not on fd %d",
		  CX_DUP, CX_R);
	tl_expect(read(CX_DUP, buf, sizeof(buf)) == 3 && !memcmp(buf, "abc", 3),
		  "dup()ed pipe: \"abc\" did not come out of fd %d", CX_DUP);
	tl_expect(read(CX_R, buf, 1) < 0 && errno == EAGAIN, "dup()ed pipe: fd %d has more data",
		  CX_R);
}

static void check_up_down(void)
{
	char buf[1024], want[512];
	ssize_t n;
	int st;

	tl_expect(queued(UP_R) == (int)strlen(up_pre), "up pipe: %d bytes queued, expected %zu",
		  queued(UP_R), strlen(up_pre));
	write_all(DOWN_W, down_post, strlen(down_post));
	close(DOWN_W);
	kill(child, SIGTERM);
	/* EOF only comes when the child's end is the last write end left */
	n = read_to_eof(UP_R, buf, sizeof(buf) - 1);
	if (tl_expect(n >= 0, "read of the up pipe: %m")) {
		buf[n] = '\0';
		snprintf(want, sizeof(want), "%s%s%s", up_pre, up_post, child_ok);
		tl_expect(!strcmp(buf, want), "up pipe held \"%s\", expected \"%s\"", buf, want);
	} else {
		kill(child, SIGKILL);
	}
	if (waitpid(child, &st, 0) != child)
		tl_expect(false, "waitpid: %m");
	else
		tl_expect(WIFEXITED(st) && !WEXITSTATUS(st), "child ended with status %#x", st);
}

int main(void)
{
	tl_init();
	build();
	start_child();
	tl_fdtab_snap(&fdtab_before);
	tl_ready();
	tl_wait_term();
	tl_fdtab_snap(&fdtab_after);
	tl_fdtab_compare(&fdtab_before, &fdtab_after, " (pipe)");
	check_child_shares();
	check_big();
	check_small();
	check_nonblock();
	check_cloexec_dup();
	check_up_down();
	tl_done();
}
