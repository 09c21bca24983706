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
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "testlib.h"

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

static struct tl_fdtab fdtab_before, fdtab_after;

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
	tl_fdtab_snap(&fdtab_before);
	get_masks(mask_before);
	tl_ready();
	tl_wait_term();
	tl_fdtab_snap(&fdtab_after);
	get_masks(mask_after);
	tl_fdtab_compare(&fdtab_before, &fdtab_after, "");
	check();
	tl_done();
}
