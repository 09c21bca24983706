// SPDX-License-Identifier: MIT
/*
 * Signal state: dispositions (a SA_SIGINFO|SA_RESTART|SA_ONSTACK handler with its own sa_mask,
 * an ignored signal, a SA_RESETHAND|SA_NODEFER one), the blocked mask, the alternate signal
 * stack, and pending signals -- a private SIGHUP (raise), a shared SIGINT (kill), two queued
 * instances of a shared realtime signal (sigqueue) and a private queued one
 * (rt_tgsigqueueinfo), each with its siginfo.  After SIGTERM the dispositions, mask, altstack
 * and the private/shared pending sets must be identical; then unblocking must deliver every
 * pending signal once with the siginfo it was sent with.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "testlib.h"

#define RT_SHARED (SIGRTMIN + 2)
#define RT_PRIVATE (SIGRTMIN + 3)
#define VAL1 0x1111
#define VAL2 0x2222
#define VAL3 0x3333
#define MAX_GOT 16

struct got {
	int sig, code, value;
	pid_t pid;
};

static struct got got[MAX_GOT];
static volatile int nr_got;
static volatile int usr1_on_altstack, usr1_mask_ok, winch_count;
/* SIGSTKSZ is no constant with _GNU_SOURCE in glibc 2.34+; 64 KiB is plenty. */
static char altstack[64 * 1024] __attribute__((aligned(16)));

static void on_info(int sig, siginfo_t *si, void *uc)
{
	int n = nr_got;

	if (n < MAX_GOT) {
		got[n] = (struct got){sig, si->si_code, si->si_value.sival_int, si->si_pid};
		nr_got = n + 1;
	}
}

static void on_usr1(int sig, siginfo_t *si, void *uc)
{
	char here;
	sigset_t cur;

	usr1_on_altstack = &here >= altstack && &here < altstack + sizeof(altstack);
	/* sa_mask must be in force while the handler runs. */
	sigprocmask(SIG_BLOCK, NULL, &cur);
	usr1_mask_ok = sigismember(&cur, SIGWINCH) && sigismember(&cur, SIGUSR1);
	on_info(sig, si, uc);
}

static void on_winch(int sig)
{
	winch_count++;
}

static void set_action(int sig, void *handler, int flags, const int *mask_sigs)
{
	struct sigaction sa = {.sa_flags = flags};

	if (flags & SA_SIGINFO)
		sa.sa_sigaction = handler;
	else
		sa.sa_handler = handler;
	sigemptyset(&sa.sa_mask);
	for (; mask_sigs && *mask_sigs; mask_sigs++)
		sigaddset(&sa.sa_mask, *mask_sigs);
	if (sigaction(sig, &sa, NULL))
		tl_fail("sigaction(%d): %m", sig);
}

struct action {
	int rc;
	void *handler;
	unsigned long flags;
	void *restorer;
	uint64_t mask;
};

/* Bits 1..64 of a sigset; glibc's sigset_t is longer, and the rest is no kernel state. */
static uint64_t set_bits(const sigset_t *set)
{
	uint64_t bits = 0;

	for (int s = 1; s <= 64; s++)
		if (sigismember(set, s) == 1)
			bits |= 1ull << (s - 1);
	return bits;
}

static void get_actions(struct action *a)
{
	for (int s = 1; s <= 64; s++) {
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		a[s].rc = sigaction(s, NULL, &sa) ? errno : 0;
		a[s].handler = (void *)sa.sa_handler;
		a[s].flags = sa.sa_flags;
		a[s].restorer = (void *)sa.sa_restorer;
		a[s].mask = set_bits(&sa.sa_mask);
	}
}

struct sigstate {
	struct action act[65];
	uint64_t blocked, pending;
	stack_t ss;
	char sigpnd[32], shdpnd[32], sigblk[32], sigign[32], sigcgt[32];
};

static struct sigstate before, after;
static char status[8192];

static void get_state(struct sigstate *st)
{
	sigset_t set;

	get_actions(st->act);
	sigprocmask(SIG_BLOCK, NULL, &set);
	st->blocked = set_bits(&set);
	sigpending(&set);
	st->pending = set_bits(&set);
	if (sigaltstack(NULL, &st->ss))
		tl_fail("sigaltstack: %m");
	/* Only /proc tells private from shared pending signals. */
	tl_read_file("/proc/self/status", status, sizeof(status));
	tl_status_field(status, "SigPnd", st->sigpnd, sizeof(st->sigpnd));
	tl_status_field(status, "ShdPnd", st->shdpnd, sizeof(st->shdpnd));
	tl_status_field(status, "SigBlk", st->sigblk, sizeof(st->sigblk));
	tl_status_field(status, "SigIgn", st->sigign, sizeof(st->sigign));
	tl_status_field(status, "SigCgt", st->sigcgt, sizeof(st->sigcgt));
}

static void compare_state(void)
{
	for (int s = 1; s <= 64; s++) {
		struct action *a = &before.act[s], *b = &after.act[s];

		tl_expect(a->rc == b->rc && a->handler == b->handler && a->flags == b->flags &&
				  a->restorer == b->restorer && a->mask == b->mask,
			  "signal %d action: handler %p flags %#lx restorer %p mask %#llx, was %p "
			  "%#lx %p %#llx",
			  s, b->handler, b->flags, b->restorer, (unsigned long long)b->mask,
			  a->handler, a->flags, a->restorer, (unsigned long long)a->mask);
	}
	tl_expect(before.blocked == after.blocked, "blocked %#llx, was %#llx",
		  (unsigned long long)after.blocked, (unsigned long long)before.blocked);
	tl_expect(before.pending == after.pending, "pending %#llx, was %#llx",
		  (unsigned long long)after.pending, (unsigned long long)before.pending);
	tl_expect(before.ss.ss_sp == after.ss.ss_sp && before.ss.ss_size == after.ss.ss_size &&
			  before.ss.ss_flags == after.ss.ss_flags,
		  "sigaltstack %p+%zu flags %#x, was %p+%zu flags %#x", after.ss.ss_sp,
		  after.ss.ss_size, after.ss.ss_flags, before.ss.ss_sp, before.ss.ss_size,
		  before.ss.ss_flags);
	tl_expect(!strcmp(before.sigpnd, after.sigpnd), "private pending %s, was %s", after.sigpnd,
		  before.sigpnd);
	tl_expect(!strcmp(before.shdpnd, after.shdpnd), "shared pending %s, was %s", after.shdpnd,
		  before.shdpnd);
	tl_expect(!strcmp(before.sigblk, after.sigblk), "SigBlk %s, was %s", after.sigblk,
		  before.sigblk);
	tl_expect(!strcmp(before.sigign, after.sigign), "SigIgn %s, was %s", after.sigign,
		  before.sigign);
	tl_expect(!strcmp(before.sigcgt, after.sigcgt), "SigCgt %s, was %s", after.sigcgt,
		  before.sigcgt);
}

static const struct got *find_got(int sig, int nth)
{
	for (int i = 0; i < nr_got; i++)
		if (got[i].sig == sig && !nth--)
			return &got[i];
	return NULL;
}

static void expect_got(int sig, int nth, int code, int value, const char *what)
{
	const struct got *g = find_got(sig, nth);

	if (!tl_expect(g != NULL, "%s (signal %d) was not delivered", what, sig))
		return;
	tl_expect(g->code == code, "%s: si_code %d, sent with %d", what, g->code, code);
	tl_expect(g->pid == getpid(), "%s: si_pid %d, sent by %d", what, g->pid, getpid());
	if (code == SI_QUEUE)
		tl_expect(g->value == value, "%s: si_value %#x, sent %#x", what, g->value, value);
}

int main(void)
{
	static const int usr1_mask[] = {SIGWINCH, 0};
	stack_t ss = {.ss_sp = altstack, .ss_size = sizeof(altstack)};
	siginfo_t si;
	sigset_t set;
	pid_t pid;

	tl_init();
	pid = getpid();

	if (sigaltstack(&ss, NULL))
		tl_fail("sigaltstack: %m");
	set_action(SIGUSR1, on_usr1, SA_SIGINFO | SA_RESTART | SA_ONSTACK, usr1_mask);
	set_action(SIGUSR2, SIG_IGN, 0, NULL);
	set_action(SIGWINCH, on_winch, SA_RESETHAND | SA_NODEFER, NULL);
	set_action(SIGHUP, on_info, SA_SIGINFO, NULL);
	set_action(SIGINT, on_info, SA_SIGINFO, NULL);
	set_action(RT_SHARED, on_info, SA_SIGINFO | SA_RESTART, NULL);
	set_action(RT_PRIVATE, on_info, SA_SIGINFO, NULL);

	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGINT);
	sigaddset(&set, RT_SHARED);
	sigaddset(&set, RT_PRIVATE);
	sigaddset(&set, SIGPIPE); /* blocked, never sent */
	sigprocmask(SIG_BLOCK, &set, NULL);

	raise(SIGHUP);	   /* tgkill: private */
	kill(pid, SIGINT); /* to the process: shared */
	if (sigqueue(pid, RT_SHARED, (union sigval){.sival_int = VAL1}) ||
	    sigqueue(pid, RT_SHARED, (union sigval){.sival_int = VAL2}))
		tl_fail("sigqueue: %m");
	memset(&si, 0, sizeof(si));
	si.si_signo = RT_PRIVATE;
	si.si_code = SI_QUEUE;
	si.si_pid = pid;
	si.si_uid = getuid();
	si.si_value.sival_int = VAL3;
	if (syscall(SYS_rt_tgsigqueueinfo, pid, pid, RT_PRIVATE, &si))
		tl_fail("rt_tgsigqueueinfo: %m");

	get_state(&before);
	if (nr_got)
		tl_fail("a blocked signal was delivered");
	tl_log("pending private %s shared %s, blocked %s", before.sigpnd, before.shdpnd,
	       before.sigblk);

	tl_ready();
	tl_wait_term();

	get_state(&after);
	compare_state();
	tl_expect(nr_got == 0, "%d signals were delivered while blocked", nr_got);

	/* Now let them in: each exactly once, with its siginfo. */
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	expect_got(SIGHUP, 0, SI_TKILL, 0, "SIGHUP");
	expect_got(SIGINT, 0, SI_USER, 0, "SIGINT");
	/* Queued instances of one realtime signal arrive in the order they were sent. */
	expect_got(RT_SHARED, 0, SI_QUEUE, VAL1, "first queued realtime signal");
	expect_got(RT_SHARED, 1, SI_QUEUE, VAL2, "second queued realtime signal");
	expect_got(RT_PRIVATE, 0, SI_QUEUE, VAL3, "private queued realtime signal");
	tl_expect(nr_got == 5, "%d signals delivered on unblock, expected 5", nr_got);
	sigpending(&set);
	tl_expect(set_bits(&set) == 0, "still pending after unblock: %#llx",
		  (unsigned long long)set_bits(&set));

	/* The handlers still behave as installed. */
	raise(SIGUSR1);
	expect_got(SIGUSR1, 0, SI_TKILL, 0, "SIGUSR1");
	tl_expect(usr1_on_altstack, "SIGUSR1 handler did not run on the alternate stack");
	tl_expect(usr1_mask_ok, "SIGUSR1 handler ran without its sa_mask");
	raise(SIGUSR2); /* ignored: we must survive it */
	raise(SIGWINCH);
	tl_expect(winch_count == 1, "SIGWINCH handler ran %d times", winch_count);
	{
		struct sigaction sa;

		sigaction(SIGWINCH, NULL, &sa);
		tl_expect(sa.sa_handler == SIG_DFL, "SA_RESETHAND did not reset SIGWINCH");
	}
	tl_done();
}
