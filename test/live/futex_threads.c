// SPDX-License-Identifier: MIT
/*
 * Threads in the middle of futex calls, and one that never sleeps:
 *
 *   8 waiters, each in FUTEX_WAIT without a timeout on a word of its own (even ones with
 *   FUTEX_WAIT, odd ones with FUTEX_WAIT_PRIVATE: the two are different keys in the kernel);
 *   one thread in FUTEX_WAIT with a 2 s timeout on a word nobody changes;
 *   one thread incrementing a counter in a busy loop.
 *
 * Before ready every sleeper must be inside futex() (/proc/self/task/TID/syscall).  After
 * SIGTERM they must be there again; the main thread then changes each waiter's word and wakes
 * it with the matching FUTEX_WAKE, which must wake exactly one thread, and the waiter must
 * have seen the new value.  The timed wait may come back with EINTR after a restore (crest
 * documents that, as CRIU does), and then waits again for what is left of its deadline; it
 * must end with ETIMEDOUT, not before its deadline and not much after max(deadline, the
 * moment it resumed).  The busy counter must have gone on increasing, and keep doing so.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

#define NWAITERS 8
#define WORD(i) (0x1000 + (i))
#define WOKEN(i) (0x2000 + (i))
#define TIMED_WORD 0x5eed
#define TIMED_NS (2 * TL_NSEC_PER_SEC)
#define TIMED_SLACK_NS (1 * TL_NSEC_PER_SEC)
#define SETUP_NS (5 * TL_NSEC_PER_SEC)
#define WAKE_NS (5 * TL_NSEC_PER_SEC)

struct waiter {
	pthread_t pt;
	int idx;
	pid_t tid;
	int word;
	int started, done;
	int seen, wakeups, eintr, eagain;
};

static struct waiter waiters[NWAITERS];

static struct {
	pthread_t pt;
	pid_t tid;
	int word, started, done;
	uint64_t start, deadline, resumed, woke;
	int eintr, spurious, err;
} timed = {.word = TIMED_WORD};

static struct {
	pthread_t pt;
	pid_t tid;
	int started;
	volatile int stop;
	volatile uint64_t count;
} busy;

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000l};

	nanosleep(&ts, NULL);
}

static long futex(int *uaddr, int op, int val, const struct timespec *ts)
{
	return syscall(SYS_futex, uaddr, op, val, ts, NULL, 0);
}

static int wait_op(int i)
{
	return i & 1 ? FUTEX_WAIT_PRIVATE : FUTEX_WAIT;
}

static int wake_op(int i)
{
	return i & 1 ? FUTEX_WAKE_PRIVATE : FUTEX_WAKE;
}

static void block_term(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static void *waiter_fn(void *arg)
{
	struct waiter *w = arg;
	int v;

	block_term();
	w->tid = gettid();
	__atomic_store_n(&w->started, 1, __ATOMIC_RELEASE);
	while ((v = __atomic_load_n(&w->word, __ATOMIC_ACQUIRE)) == WORD(w->idx)) {
		if (!futex(&w->word, wait_op(w->idx), WORD(w->idx), NULL))
			w->wakeups++;
		else if (errno == EINTR)
			w->eintr++;
		else if (errno == EAGAIN)
			w->eagain++;
	}
	w->seen = v;
	__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void *timed_fn(void *arg)
{
	struct timespec ts;
	uint64_t now, left;

	block_term();
	timed.tid = gettid();
	timed.start = timed.resumed = tl_now_ns();
	timed.deadline = timed.start + TIMED_NS;
	__atomic_store_n(&timed.started, 1, __ATOMIC_RELEASE);
	for (;;) {
		now = tl_now_ns();
		left = now >= timed.deadline ? 0 : timed.deadline - now;
		ts.tv_sec = left / TL_NSEC_PER_SEC;
		ts.tv_nsec = left % TL_NSEC_PER_SEC;
		if (!futex(&timed.word, FUTEX_WAIT_PRIVATE, TIMED_WORD, &ts)) {
			timed.spurious++; /* nobody wakes this word: the deadline decides */
			continue;
		}
		timed.woke = tl_now_ns();
		if (errno == EINTR) {
			timed.eintr++;
			timed.resumed = timed.woke;
			continue;
		}
		timed.err = errno;
		break;
	}
	__atomic_store_n(&timed.done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void *busy_fn(void *arg)
{
	block_term();
	busy.tid = gettid();
	__atomic_store_n(&busy.started, 1, __ATOMIC_RELEASE);
	while (!busy.stop)
		busy.count++;
	return NULL;
}

/* The syscall number a sleeping thread is in, -1 when running, -2 when unreadable. */
static long in_syscall(pid_t tid)
{
	char path[64], buf[256];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -2;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -2;
	buf[n] = '\0';
	if (!strncmp(buf, "running", 7))
		return -1;
	return strtol(buf, NULL, 10);
}

/* Wait until the thread sleeps in futex(); false at the deadline. */
static bool wait_in_futex(pid_t tid, uint64_t deadline)
{
	while (in_syscall(tid) != SYS_futex) {
		if (tl_now_ns() >= deadline)
			return false;
		sleep_ms(1);
	}
	return true;
}

static void wait_started(int *flag, const char *what, uint64_t deadline)
{
	while (!__atomic_load_n(flag, __ATOMIC_ACQUIRE)) {
		if (tl_now_ns() >= deadline)
			tl_fail("%s never started", what);
		sleep_ms(1);
	}
}

static void start(pthread_t *pt, void *(*fn)(void *), void *arg)
{
	int err = pthread_create(pt, NULL, fn, arg);

	if (err)
		tl_fail("pthread_create: %s", strerror(err));
}

int main(void)
{
	uint64_t deadline, c0, c1, c2, limit;
	struct timespec ts;
	long woken[NWAITERS];
	int err;

	tl_init();
	for (int i = 0; i < NWAITERS; i++) {
		waiters[i].idx = i;
		waiters[i].word = WORD(i);
		start(&waiters[i].pt, waiter_fn, &waiters[i]);
	}
	start(&timed.pt, timed_fn, NULL);
	start(&busy.pt, busy_fn, NULL);

	deadline = tl_now_ns() + SETUP_NS;
	for (int i = 0; i < NWAITERS; i++) {
		wait_started(&waiters[i].started, "a waiter", deadline);
		if (!wait_in_futex(waiters[i].tid, deadline))
			tl_fail("waiter %d (%d) is not in futex()", i, waiters[i].tid);
	}
	wait_started(&timed.started, "the timed waiter", deadline);
	if (!wait_in_futex(timed.tid, deadline))
		tl_fail("the timed waiter (%d) is not in futex()", timed.tid);
	wait_started(&busy.started, "the busy thread", deadline);
	while (!busy.count)
		sleep_ms(1);
	c0 = busy.count;

	tl_ready();
	tl_wait_term();

	/* Before anything is woken: every waiter is back in futex(), the counter went on. */
	c1 = busy.count;
	tl_expect(c1 > c0, "busy count %llu, was %llu at ready", (unsigned long long)c1,
		  (unsigned long long)c0);
	deadline = tl_now_ns() + WAKE_NS;
	for (int i = 0; i < NWAITERS; i++) {
		tl_expect(wait_in_futex(waiters[i].tid, deadline),
			  "waiter %d (%d) is not in futex() (syscall %ld)", i, waiters[i].tid,
			  in_syscall(waiters[i].tid));
		tl_expect(!waiters[i].done, "waiter %d woke on its own", i);
	}

	for (int i = 0; i < NWAITERS; i++) {
		__atomic_store_n(&waiters[i].word, WOKEN(i), __ATOMIC_RELEASE);
		woken[i] = futex(&waiters[i].word, wake_op(i), 1, NULL);
	}
	for (int i = 0; i < NWAITERS; i++) {
		struct waiter *w = &waiters[i];

		while (!__atomic_load_n(&w->done, __ATOMIC_ACQUIRE) && tl_now_ns() < deadline)
			sleep_ms(1);
		tl_expect(woken[i] == 1, "FUTEX_WAKE of waiter %d woke %ld threads", i, woken[i]);
		if (!tl_expect(w->done, "waiter %d (%d) did not wake", i, w->tid))
			continue;
		tl_expect(w->seen == WOKEN(i), "waiter %d saw %#x, expected %#x", i, w->seen,
			  WOKEN(i));
		tl_log("waiter %d: %d wakeups, %d EINTR, %d EAGAIN", i, w->wakeups, w->eintr,
		       w->eagain);
	}

	/* The timed waiter ends by itself at its deadline. */
	deadline = timed.deadline + WAKE_NS;
	while (!__atomic_load_n(&timed.done, __ATOMIC_ACQUIRE) && tl_now_ns() < deadline)
		sleep_ms(5);
	if (tl_expect(timed.done, "the timed wait did not end")) {
		tl_log("timed wait: %llu ms (deadline %llu ms), EINTR %d times, %d spurious "
		       "wakeups, resumed at %llu ms",
		       (unsigned long long)((timed.woke - timed.start) / TL_NSEC_PER_MSEC),
		       (unsigned long long)(TIMED_NS / TL_NSEC_PER_MSEC), timed.eintr,
		       timed.spurious,
		       (unsigned long long)((timed.resumed - timed.start) / TL_NSEC_PER_MSEC));
		tl_expect(timed.err == ETIMEDOUT, "the timed wait ended with %s",
			  strerror(timed.err));
		tl_expect(timed.woke >= timed.deadline, "ETIMEDOUT %llu us before the deadline",
			  (unsigned long long)((timed.deadline - timed.woke) / 1000));
		limit = timed.deadline > timed.resumed ? timed.deadline : timed.resumed;
		tl_expect(timed.woke <= limit + TIMED_SLACK_NS,
			  "the timed wait ended %llu ms after max(deadline, resume)",
			  (unsigned long long)((timed.woke - limit) / TL_NSEC_PER_MSEC));
	}

	c2 = busy.count;
	sleep_ms(20);
	tl_expect(busy.count > c2, "busy count stuck at %llu", (unsigned long long)c2);
	busy.stop = 1;
	tl_log("busy count: %llu at ready, %llu after SIGTERM, %llu at the end",
	       (unsigned long long)c0, (unsigned long long)c1, (unsigned long long)busy.count);

	/* A join relies on clear_child_tid: one that never returns would mean it was lost. */
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 3;
	for (int i = 0; i < NWAITERS; i++) {
		if (!waiters[i].done)
			continue;
		err = pthread_timedjoin_np(waiters[i].pt, NULL, &ts);
		tl_expect(!err, "join of waiter %d: %s", i, strerror(err));
	}
	if (timed.done) {
		err = pthread_timedjoin_np(timed.pt, NULL, &ts);
		tl_expect(!err, "join of the timed waiter: %s", strerror(err));
	}
	err = pthread_timedjoin_np(busy.pt, NULL, &ts);
	tl_expect(!err, "join of the busy thread: %s", strerror(err));
	tl_done();
}
