// SPDX-License-Identifier: MIT
/*
 * Pending signals of a thread group.  Four threads (main, T1, T2, T3) all block SIGUSR1,
 * SIGUSR2, SIGRTMIN+2 and SIGRTMIN+3.  Pending for the whole group (shared): SIGUSR1 from
 * kill() and two queued SIGRTMIN+2 from sigqueue(); pending for one thread (private): SIGUSR2
 * for T1 (pthread_kill) and a queued SIGRTMIN+3 for T2 (pthread_sigqueue).  Each thread
 * records what /proc/self/task/TID/status says is pending privately and shared, what
 * sigpending() says, and its blocked mask.
 *
 * After SIGTERM each thread must find the same.  Then the signals are let in one place at a
 * time: T1 unblocks SIGUSR2, which must be delivered once, in T1; T2 unblocks SIGRTMIN+3,
 * delivered once in T2 with its value; then the main thread unblocks the shared ones, which
 * must all reach it: SIGUSR1 once, SIGRTMIN+2 twice with its two values in order.  Nothing
 * may be pending afterwards.  The threads poll a command word with nanosleep() between steps.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

#define NTHREADS 4 /* thread 0 is the main thread */
#define SH_RT (SIGRTMIN + 2)
#define PR_RT (SIGRTMIN + 3)
#define VAL_SH1 0x51
#define VAL_SH2 0x52
#define VAL_PR 0x62
#define STEP_NS (5 * TL_NSEC_PER_SEC)
#define MAX_GOT 16

enum { CMD_NONE, CMD_RECORD, CMD_CHECK, CMD_UNBLOCK, CMD_EXIT };

struct pend {
	uint64_t private_, shared, sigpending, blocked;
};

struct thr {
	pthread_t pt;
	pid_t tid;
	int idx;
	int private_sig; /* its own pending signal, 0 for none */
	int cmd, ack;
	struct pend before, after;
};

struct got {
	int sig, code, value;
	pid_t tid;
};

static struct thr thr[NTHREADS];
static struct got got[MAX_GOT];
static int nr_got;

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000l};

	nanosleep(&ts, NULL);
}

static uint64_t bit(int sig)
{
	return 1ull << (sig - 1);
}

static uint64_t set_bits(const sigset_t *set)
{
	uint64_t bits = 0;

	for (int s = 1; s <= 64; s++)
		if (sigismember(set, s) == 1)
			bits |= bit(s);
	return bits;
}

static void on_sig(int sig, siginfo_t *si, void *uc)
{
	int n = __atomic_fetch_add(&nr_got, 1, __ATOMIC_SEQ_CST);

	if (n < MAX_GOT)
		got[n] = (struct got){sig, si->si_code, si->si_value.sival_int, gettid()};
}

/* What is pending for the calling thread, from the kernel's two points of view. */
static void get_pend(struct pend *p)
{
	char path[64], val[32];
	static __thread char text[8192];
	sigset_t set;
	ssize_t n;
	int fd;

	memset(p, 0, sizeof(*p));
	snprintf(path, sizeof(path), "/proc/self/task/%d/status", gettid());
	fd = open(path, O_RDONLY | O_CLOEXEC);
	n = fd < 0 ? -1 : read(fd, text, sizeof(text) - 1);
	if (fd >= 0)
		close(fd);
	text[n > 0 ? n : 0] = '\0';
	if (tl_status_field(text, "SigPnd", val, sizeof(val)))
		p->private_ = strtoull(val, NULL, 16);
	if (tl_status_field(text, "ShdPnd", val, sizeof(val)))
		p->shared = strtoull(val, NULL, 16);
	sigpending(&set);
	p->sigpending = set_bits(&set);
	pthread_sigmask(SIG_BLOCK, NULL, &set);
	p->blocked = set_bits(&set);
}

static void unblock(int sig)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, sig);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

static void *thread_fn(void *arg)
{
	struct thr *t = arg;
	sigset_t term;
	int cmd;

	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &term, NULL);
	__atomic_store_n(&t->tid, gettid(), __ATOMIC_RELEASE);
	for (;;) {
		cmd = __atomic_load_n(&t->cmd, __ATOMIC_ACQUIRE);
		if (cmd == t->ack) {
			sleep_ms(5);
			continue;
		}
		switch (cmd) {
		case CMD_RECORD:
			get_pend(&t->before);
			break;
		case CMD_CHECK:
			get_pend(&t->after);
			break;
		case CMD_UNBLOCK:
			if (t->private_sig)
				unblock(t->private_sig);
			break;
		}
		__atomic_store_n(&t->ack, cmd, __ATOMIC_RELEASE);
		if (cmd == CMD_EXIT)
			return NULL;
	}
}

/* Have thread i (1..3) run cmd; false when it does not answer in time. */
static bool command(int i, int cmd)
{
	uint64_t deadline = tl_now_ns() + STEP_NS;

	__atomic_store_n(&thr[i].cmd, cmd, __ATOMIC_RELEASE);
	while (__atomic_load_n(&thr[i].ack, __ATOMIC_ACQUIRE) != cmd) {
		if (tl_now_ns() >= deadline)
			return false;
		sleep_ms(1);
	}
	return true;
}

static void expect_pend(const struct thr *t, const struct pend *p, const char *when)
{
	uint64_t shared = bit(SIGUSR1) | bit(SH_RT);
	uint64_t private_ = t->private_sig ? bit(t->private_sig) : 0;
	uint64_t blocked = bit(SIGUSR1) | bit(SIGUSR2) | bit(SH_RT) | bit(PR_RT);

	if (t->idx)
		blocked |= bit(SIGTERM);
	tl_expect(p->private_ == private_,
		  "%s: thread %d (%d): private pending %#llx, expected %#llx", when, t->idx, t->tid,
		  (unsigned long long)p->private_, (unsigned long long)private_);
	tl_expect(p->shared == shared, "%s: thread %d (%d): shared pending %#llx, expected %#llx",
		  when, t->idx, t->tid, (unsigned long long)p->shared, (unsigned long long)shared);
	tl_expect(p->sigpending == (shared | private_),
		  "%s: thread %d (%d): sigpending() %#llx, expected %#llx", when, t->idx, t->tid,
		  (unsigned long long)p->sigpending, (unsigned long long)(shared | private_));
	tl_expect(p->blocked == blocked, "%s: thread %d (%d): blocked %#llx, expected %#llx", when,
		  t->idx, t->tid, (unsigned long long)p->blocked, (unsigned long long)blocked);
}

/* got[from..] must be exactly n deliveries of sig in thread t, with the values given. */
static void expect_got(int from, int n, int sig, const struct thr *t, int code, const int *values)
{
	int have = __atomic_load_n(&nr_got, __ATOMIC_ACQUIRE) - from;

	if (!tl_expect(have == n, "%d deliveries on unblocking signal %d in thread %d, expected %d",
		       have, sig, t->idx, n))
		return;
	for (int i = 0; i < n; i++) {
		const struct got *g = &got[from + i];

		tl_expect(g->sig == sig && g->tid == t->tid && g->code == code,
			  "delivery %d: signal %d in %d code %d, expected %d in %d code %d",
			  from + i, g->sig, g->tid, g->code, sig, t->tid, code);
		if (values)
			tl_expect(g->value == values[i], "signal %d: value %#x, expected %#x", sig,
				  g->value, values[i]);
	}
}

int main(void)
{
	static const int sh_values[] = {VAL_SH1, VAL_SH2};
	static const int pr_values[] = {VAL_PR};
	struct sigaction sa = {.sa_sigaction = on_sig, .sa_flags = SA_SIGINFO};
	struct timespec ts;
	uint64_t deadline;
	sigset_t set;
	int err, from;

	tl_init();
	sigemptyset(&sa.sa_mask);
	sigemptyset(&set);
	for (int s = 1; s <= 4; s++) {
		int sig = s == 1 ? SIGUSR1 : s == 2 ? SIGUSR2 : s == 3 ? SH_RT : PR_RT;

		if (sigaction(sig, &sa, NULL))
			tl_fail("sigaction: %m");
		sigaddset(&set, sig);
	}
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	thr[0].tid = gettid();
	thr[1].private_sig = SIGUSR2;
	thr[2].private_sig = PR_RT;
	deadline = tl_now_ns() + STEP_NS;
	for (int i = 1; i < NTHREADS; i++) {
		thr[i].idx = i;
		err = pthread_create(&thr[i].pt, NULL, thread_fn, &thr[i]);
		if (err)
			tl_fail("pthread_create: %s", strerror(err));
		while (!__atomic_load_n(&thr[i].tid, __ATOMIC_ACQUIRE)) {
			if (tl_now_ns() >= deadline)
				tl_fail("thread %d did not start", i);
			sleep_ms(1);
		}
	}

	if (kill(getpid(), SIGUSR1) || sigqueue(getpid(), SH_RT, (union sigval){VAL_SH1}) ||
	    sigqueue(getpid(), SH_RT, (union sigval){VAL_SH2}))
		tl_fail("kill/sigqueue: %m");
	err = pthread_kill(thr[1].pt, SIGUSR2);
	if (!err)
		err = pthread_sigqueue(thr[2].pt, PR_RT, (union sigval){VAL_PR});
	if (err)
		tl_fail("pthread_kill/pthread_sigqueue: %s", strerror(err));

	get_pend(&thr[0].before);
	for (int i = 1; i < NTHREADS; i++)
		if (!command(i, CMD_RECORD))
			tl_fail("thread %d does not answer", i);
	for (int i = 0; i < NTHREADS; i++)
		expect_pend(&thr[i], &thr[i].before, "before");
	if (tl_failures() || nr_got)
		tl_fail("setup: %d signals delivered, %d wrong pending sets", nr_got,
			tl_failures());
	tl_log("threads %d %d %d %d: shared pending %#llx, T1 %#llx, T2 %#llx", thr[0].tid,
	       thr[1].tid, thr[2].tid, thr[3].tid, (unsigned long long)thr[0].before.shared,
	       (unsigned long long)thr[1].before.private_,
	       (unsigned long long)thr[2].before.private_);

	tl_ready();
	tl_wait_term();

	get_pend(&thr[0].after);
	for (int i = 1; i < NTHREADS; i++)
		tl_expect(command(i, CMD_CHECK), "thread %d does not answer", i);
	for (int i = 0; i < NTHREADS; i++)
		expect_pend(&thr[i], &thr[i].after, "after");
	tl_expect(nr_got == 0, "%d signals delivered while blocked", nr_got);

	from = nr_got;
	if (tl_expect(command(1, CMD_UNBLOCK), "T1 does not answer"))
		expect_got(from, 1, SIGUSR2, &thr[1], SI_TKILL, NULL);
	from = nr_got;
	if (tl_expect(command(2, CMD_UNBLOCK), "T2 does not answer"))
		expect_got(from, 1, PR_RT, &thr[2], SI_QUEUE, pr_values);
	from = nr_got;
	if (tl_expect(command(3, CMD_UNBLOCK), "T3 does not answer"))
		expect_got(from, 0, 0, &thr[3], 0, NULL);

	/* The shared ones: only the main thread lets them in now. */
	from = nr_got;
	unblock(SIGUSR1);
	expect_got(from, 1, SIGUSR1, &thr[0], SI_USER, NULL);
	from = nr_got;
	unblock(SH_RT);
	expect_got(from, 2, SH_RT, &thr[0], SI_QUEUE, sh_values);

	sigpending(&set);
	tl_expect(!set_bits(&set), "still pending at the end: %#llx",
		  (unsigned long long)set_bits(&set));
	/* pthread_timedjoin_np() takes a CLOCK_REALTIME deadline. */
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 3;
	for (int i = 1; i < NTHREADS; i++) {
		if (!tl_expect(command(i, CMD_EXIT), "thread %d does not answer", i))
			continue;
		err = pthread_timedjoin_np(thr[i].pt, NULL, &ts);
		tl_expect(!err, "join of thread %d: %s", i, strerror(err));
	}
	tl_done();
}
