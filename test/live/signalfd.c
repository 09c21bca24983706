// SPDX-License-Identifier: MIT
/*
 * signalfd masks, with the signals blocked as signalfd wants:
 *
 *   10  SIGUSR1 | SIGRTMIN, blocking; a SIGRTMIN sent with sigqueue() is pending at the dump
 *   11  SIGUSR2, SFD_NONBLOCK | SFD_CLOEXEC
 *   12  made for SIGUSR2, then changed with signalfd(12, ...) to SIGRTMIN + 1
 *
 * After SIGTERM the fd table must be as it was (numbers, flags, kinds), fdinfo must show the
 * same masks, and the fds must read the right signals: fd 10 the pending SIGRTMIN with its
 * value, then a raised SIGUSR1 and a queued SIGRTMIN; fd 11 nothing (EAGAIN) until SIGUSR2 is
 * raised, which fd 10 must not see; fd 12 a queued SIGRTMIN + 1 and nothing else.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "testlib.h"

#define MAX_FD 128
#define VAL1 0x5111
#define VAL2 0x5222
#define VAL3 0x5333

enum {
	SFD1 = 10,
	SFD2,
	SFD3,
	SFD_FIRST = SFD1,
	SFD_LAST = SFD3,
};

static char mask_before[SFD_LAST + 1][32], mask_after[SFD_LAST + 1][32];

/* ---- the fd table, compared as a whole ---- */

struct fdsnap {
	bool open;
	int fdflags, flflags;
	char kind[256]; /* the link, with a pipe's inode number cut off */
	dev_t dev;
	ino_t ino;
};

static struct fdsnap snap_before[MAX_FD], snap_after[MAX_FD];
static signed char file_before[MAX_FD][MAX_FD], file_after[MAX_FD][MAX_FD];

/* 1 when fds a and b are one open file description, 0 when not, -1 when either is closed */
static signed char same_file(const struct fdsnap *st, int a, int b)
{
	if (!st[a].open || !st[b].open)
		return -1;
	return syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, a, b) == 0;
}

static void snap(struct fdsnap *st, signed char (*same)[MAX_FD])
{
	char link[64];
	struct stat sb;
	ssize_t n;

	for (int fd = 0; fd < MAX_FD; fd++) {
		struct fdsnap *s = &st[fd];

		memset(s, 0, sizeof(*s));
		s->fdflags = fcntl(fd, F_GETFD);
		if (s->fdflags < 0)
			continue;
		s->open = true;
		s->flflags = fcntl(fd, F_GETFL);
		if (!fstat(fd, &sb)) {
			s->dev = sb.st_dev;
			s->ino = sb.st_ino;
		}
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		n = readlink(link, s->kind, sizeof(s->kind) - 1);
		if (n < 0)
			tl_fail("readlink %s: %m", link);
		s->kind[n] = '\0';
		if (!strncmp(s->kind, "pipe:", 5))
			s->kind[4] = '\0';
	}
	for (int a = 0; a < MAX_FD; a++)
		for (int b = 0; b < MAX_FD; b++)
			same[a][b] = same_file(st, a, b);
}

static bool same_inode(const struct fdsnap *a, const struct fdsnap *b)
{
	return a->dev == b->dev && a->ino == b->ino;
}

static void snap_compare(void)
{
	for (int fd = 0; fd < MAX_FD; fd++) {
		struct fdsnap *a = &snap_before[fd], *b = &snap_after[fd];

		if (!tl_expect(a->open == b->open, "fd %d is %s", fd, b->open ? "new" : "gone") ||
		    !a->open)
			continue;
		tl_expect(!strcmp(a->kind, b->kind), "fd %d: %s, was %s", fd, b->kind, a->kind);
		tl_expect(a->fdflags == b->fdflags, "fd %d: F_GETFD %#x, was %#x", fd, b->fdflags,
			  a->fdflags);
		tl_expect(a->flflags == b->flflags, "fd %d: F_GETFL %#o, was %#o", fd, b->flflags,
			  a->flflags);
		for (int o = 0; o < fd; o++) {
			if (!snap_before[o].open || !snap_after[o].open)
				continue;
			tl_expect(file_before[fd][o] == file_after[fd][o],
				  "fds %d and %d %s share an open file description", o, fd,
				  file_after[fd][o] == 1 ? "now" : "no longer");
			tl_expect(same_inode(a, &snap_before[o]) == same_inode(b, &snap_after[o]),
				  "fds %d and %d %s the same inode", o, fd,
				  same_inode(b, &snap_after[o]) ? "now have" : "no longer have");
		}
	}
}

/* ---- helpers ---- */

static void move_fd(int fd, int want)
{
	if (fd < 0)
		tl_fail("signalfd for fd %d: %m", want);
	if (fd == want)
		return;
	if (dup2(fd, want) != want)
		tl_fail("dup2 %d to %d: %m", fd, want);
	close(fd);
}

static bool readable(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};

	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static void get_masks(char (*masks)[32])
{
	char path[64], text[1024];

	for (int fd = SFD_FIRST; fd <= SFD_LAST; fd++) {
		snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
		tl_read_file(path, text, sizeof(text));
		if (!tl_status_field(text, "sigmask", masks[fd], sizeof(masks[fd])))
			tl_fail("no sigmask in %s", path);
	}
}

static sigset_t set_of(int a, int b)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, a);
	if (b)
		sigaddset(&set, b);
	return set;
}

/* Read one siginfo from fd and check it; value only for SI_QUEUE. */
static void expect_sig(int fd, int sig, int code, int value)
{
	struct signalfd_siginfo si;
	ssize_t n;

	memset(&si, 0, sizeof(si));
	n = read(fd, &si, sizeof(si));
	if (!tl_expect(n == sizeof(si), "fd %d: read %zd bytes (%m), expected signal %d", fd, n,
		       sig))
		return;
	tl_expect((int)si.ssi_signo == sig, "fd %d: signal %u, expected %d", fd, si.ssi_signo, sig);
	tl_expect(si.ssi_code == code, "fd %d: signal %u: si_code %d, expected %d", fd,
		  si.ssi_signo, si.ssi_code, code);
	tl_expect((pid_t)si.ssi_pid == getpid(), "fd %d: signal %u: si_pid %u, expected %d", fd,
		  si.ssi_signo, si.ssi_pid, getpid());
	if (code == SI_QUEUE)
		tl_expect(si.ssi_int == value, "fd %d: signal %u: value %#x, expected %#x", fd,
			  si.ssi_signo, si.ssi_int, value);
}

static void build(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGRTMIN);
	sigaddset(&set, SIGRTMIN + 1);
	if (sigprocmask(SIG_BLOCK, &set, NULL))
		tl_fail("sigprocmask: %m");

	set = set_of(SIGUSR1, SIGRTMIN);
	move_fd(signalfd(-1, &set, 0), SFD1);
	set = set_of(SIGUSR2, 0);
	move_fd(signalfd(-1, &set, SFD_NONBLOCK), SFD2);
	if (fcntl(SFD2, F_SETFD, FD_CLOEXEC))
		tl_fail("F_SETFD: %m");
	move_fd(signalfd(-1, &set, 0), SFD3);
	set = set_of(SIGRTMIN + 1, 0);
	if (signalfd(SFD3, &set, 0) != SFD3)
		tl_fail("changing the mask of fd %d: %m", SFD3);

	if (sigqueue(getpid(), SIGRTMIN, (union sigval){.sival_int = VAL1}))
		tl_fail("sigqueue: %m");
	if (!readable(SFD1) || readable(SFD2) || readable(SFD3))
		tl_fail("only fd %d should be readable", SFD1);
}

static void check(void)
{
	struct signalfd_siginfo si;

	for (int fd = SFD_FIRST; fd <= SFD_LAST; fd++)
		tl_expect(!strcmp(mask_before[fd], mask_after[fd]), "fd %d: sigmask %s, was %s", fd,
			  mask_after[fd], mask_before[fd]);
	tl_expect(fcntl(SFD2, F_GETFD) == FD_CLOEXEC, "fd %d: F_GETFD %#x", SFD2,
		  fcntl(SFD2, F_GETFD));
	tl_expect(fcntl(SFD2, F_GETFL) & O_NONBLOCK, "fd %d lost O_NONBLOCK", SFD2);

	/* the signal pending since before the dump */
	tl_expect(readable(SFD1), "fd %d is not readable with SIGRTMIN pending", SFD1);
	tl_expect(!readable(SFD2), "fd %d is readable with nothing of its pending", SFD2);
	tl_expect(!readable(SFD3), "fd %d is readable with nothing of its pending", SFD3);
	expect_sig(SFD1, SIGRTMIN, SI_QUEUE, VAL1);
	tl_expect(!readable(SFD1), "fd %d still readable after the pending signal", SFD1);

	/* new ones: the standard signal first, then the realtime one */
	raise(SIGUSR1);
	sigqueue(getpid(), SIGRTMIN, (union sigval){.sival_int = VAL2});
	expect_sig(SFD1, SIGUSR1, SI_TKILL, 0);
	expect_sig(SFD1, SIGRTMIN, SI_QUEUE, VAL2);
	tl_expect(!readable(SFD1), "fd %d still readable after two reads", SFD1);

	/* fd 11 reads SIGUSR2, and only fd 11 */
	errno = 0;
	tl_expect(read(SFD2, &si, sizeof(si)) < 0 && errno == EAGAIN,
		  "fd %d: read with nothing pending did not say EAGAIN (%m)", SFD2);
	raise(SIGUSR2);
	tl_expect(!readable(SFD1), "fd %d is readable with SIGUSR2 pending", SFD1);
	tl_expect(!readable(SFD3), "fd %d is readable with SIGUSR2 pending", SFD3);
	expect_sig(SFD2, SIGUSR2, SI_TKILL, 0);

	/* fd 12 has its second mask */
	sigqueue(getpid(), SIGRTMIN + 1, (union sigval){.sival_int = VAL3});
	tl_expect(!readable(SFD1) && !readable(SFD2), "SIGRTMIN + 1 made fd %d or %d readable",
		  SFD1, SFD2);
	expect_sig(SFD3, SIGRTMIN + 1, SI_QUEUE, VAL3);
}

int main(void)
{
	tl_init();
	build();
	snap(snap_before, file_before);
	get_masks(mask_before);
	tl_ready();
	tl_wait_term();
	snap(snap_after, file_after);
	get_masks(mask_after);
	snap_compare();
	check();
	tl_done();
}
