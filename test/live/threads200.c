// SPDX-License-Identifier: MIT
/*
 * 200 threads, each with state of its own: a __thread value (and its address, which is fs_base
 * plus an offset), a signal mask blocking a thread-specific set of realtime signals, a name
 * ("crest-t000".."crest-t199"), its TID, its CPUs (every third thread pins itself to one
 * CPU, the others keep the process's), its nice value (every fifth raises it by 1-4) and
 * scheduling policy (every seventh runs SCHED_BATCH).  The threads record all of it, then sleep in short
 * nanosleep() steps watching a flag (no futex, no barrier: nothing that a restore could leave
 * half-done).  After SIGTERM the main thread checks every TID is still there and raises the
 * flag; each thread compares its TLS value and address, its mask (pthread_sigmask query), its
 * CPU affinity, its gettid() and its name (/proc/self/task/TID/comm and PR_GET_NAME) with what it recorded and
 * returns.  The main thread joins them with a deadline (a join that never returns would mean
 * clear_child_tid was lost) and prints the verdict.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

#define NTHREADS 200
#define TLS_MAGIC 0x7431730000000000ull
#define SETUP_NS (10 * TL_NSEC_PER_SEC)
#define CHECK_NS (10 * TL_NSEC_PER_SEC)

enum { WAITING, CHECK };
enum { UNCHECKED, GOOD, BAD };

struct thread {
	pthread_t pt;
	int idx;
	pid_t tid;
	uint64_t tls;
	void *tls_addr;
	uint64_t mask; /* signals 1..64 as bits 0..63 */
	char name[16];
	cpu_set_t cpus;
	int nice, policy;
	int registered, result;
	char why[160];
};

static __thread uint64_t tls_value;
static struct thread threads[NTHREADS];
static volatile int phase = WAITING;

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000l};

	nanosleep(&ts, NULL);
}

static uint64_t set_bits(const sigset_t *set)
{
	uint64_t bits = 0;

	for (int s = 1; s <= 64; s++)
		if (sigismember(set, s) == 1)
			bits |= 1ull << (s - 1);
	return bits;
}

/*
 * Thread i blocks SIGTERM (so that only the main thread takes it), the realtime signals
 * SIGRTMIN+0..7 selected by the bits of i + 1 (distinct for every thread), and one of
 * SIGRTMIN+8..23.
 */
static void thread_mask(int i, sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	for (int b = 0; b < 8; b++)
		if ((i + 1) & (1 << b))
			sigaddset(set, SIGRTMIN + b);
	sigaddset(set, SIGRTMIN + 8 + i % 16);
}

static bool read_comm(pid_t tid, char *buf, size_t size)
{
	char path[64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%d/comm", tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return true;
}

static int check_thread(struct thread *t)
{
	char comm[32], pname[17] = "";
	cpu_set_t cpus;
	int nice, policy;
	sigset_t cur;
	uint64_t mask;
	pid_t tid = gettid();

	if (tid != t->tid) {
		snprintf(t->why, sizeof(t->why), "gettid() %d, was %d", tid, t->tid);
		return BAD;
	}
	if (tls_value != t->tls || &tls_value != t->tls_addr) {
		snprintf(t->why, sizeof(t->why), "TLS value %#llx at %p, was %#llx at %p",
			 (unsigned long long)tls_value, (void *)&tls_value,
			 (unsigned long long)t->tls, t->tls_addr);
		return BAD;
	}
	pthread_sigmask(SIG_BLOCK, NULL, &cur);
	mask = set_bits(&cur);
	if (mask != t->mask) {
		snprintf(t->why, sizeof(t->why), "blocked mask %#llx, was %#llx",
			 (unsigned long long)mask, (unsigned long long)t->mask);
		return BAD;
	}
	if (sched_getaffinity(0, sizeof(cpus), &cpus) || !CPU_EQUAL(&cpus, &t->cpus)) {
		snprintf(t->why, sizeof(t->why), "runs on %d CPUs, was %d", CPU_COUNT(&cpus),
			 CPU_COUNT(&t->cpus));
		return BAD;
	}
	errno = 0;
	nice = getpriority(PRIO_PROCESS, tid);
	policy = sched_getscheduler(0);
	if (nice != t->nice || policy != t->policy) {
		snprintf(t->why, sizeof(t->why), "nice %d policy %d, was %d and %d", nice, policy,
			 t->nice, t->policy);
		return BAD;
	}
	if (!read_comm(tid, comm, sizeof(comm)) || strcmp(comm, t->name)) {
		snprintf(t->why, sizeof(t->why), "comm '%s', was '%s'", comm, t->name);
		return BAD;
	}
	prctl(PR_GET_NAME, pname);
	if (strcmp(pname, t->name)) {
		snprintf(t->why, sizeof(t->why), "PR_GET_NAME '%s', was '%s'", pname, t->name);
		return BAD;
	}
	return GOOD;
}

/* Every third thread on one CPU of the process's, in turn; the others on all of them. */
static void pin_some(struct thread *t)
{
	int n, k;

	sched_getaffinity(0, sizeof(t->cpus), &t->cpus);
	n = CPU_COUNT(&t->cpus);
	if (t->idx % 3 || n < 2)
		return;
	k = (t->idx / 3) % n;
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (CPU_ISSET(cpu, &t->cpus) && !k--) {
			CPU_ZERO(&t->cpus);
			CPU_SET(cpu, &t->cpus);
			break;
		}
	}
	sched_setaffinity(0, sizeof(t->cpus), &t->cpus);
	sched_getaffinity(0, sizeof(t->cpus), &t->cpus);
}

static void *thread_fn(void *arg)
{
	struct thread *t = arg;
	sigset_t set;

	tls_value = TLS_MAGIC ^ ((uint64_t)t->idx * 0x9e3779b97f4a7c15ull);
	t->tls = tls_value;
	t->tls_addr = &tls_value;
	t->tid = gettid();
	thread_mask(t->idx, &set);
	pthread_sigmask(SIG_SETMASK, &set, NULL);
	pthread_sigmask(SIG_BLOCK, NULL, &set);
	t->mask = set_bits(&set);
	snprintf(t->name, sizeof(t->name), "crest-t%03d", t->idx);
	pthread_setname_np(pthread_self(), t->name);
	pin_some(t);
	if (t->idx % 5 == 1)
		setpriority(PRIO_PROCESS, t->tid,
			    getpriority(PRIO_PROCESS, t->tid) + 1 + t->idx % 4);
	if (t->idx % 7 == 2) {
		struct sched_param sp = {0};

		sched_setscheduler(0, SCHED_BATCH, &sp);
	}
	t->nice = getpriority(PRIO_PROCESS, t->tid);
	t->policy = sched_getscheduler(0);
	__atomic_store_n(&t->registered, 1, __ATOMIC_RELEASE);

	while (phase == WAITING)
		sleep_ms(50);
	__atomic_store_n(&t->result, check_thread(t), __ATOMIC_RELEASE);
	return NULL;
}

int main(void)
{
	char path[64], comm[32];
	pthread_attr_t attr;
	sigset_t term, set;
	uint64_t deadline, masks_seen[NTHREADS];
	struct timespec ts;
	int err, good = 0;

	tl_init();
	/* Until each thread sets its own mask, SIGTERM must reach only the main thread. */
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &term, NULL);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 128 * 1024);
	for (int i = 0; i < NTHREADS; i++) {
		threads[i].idx = i;
		err = pthread_create(&threads[i].pt, &attr, thread_fn, &threads[i]);
		if (err)
			tl_fail("pthread_create %d: %s", i, strerror(err));
	}
	pthread_sigmask(SIG_UNBLOCK, &term, NULL);

	deadline = tl_now_ns() + SETUP_NS;
	for (int i = 0; i < NTHREADS; i++) {
		while (!__atomic_load_n(&threads[i].registered, __ATOMIC_ACQUIRE)) {
			if (tl_now_ns() >= deadline)
				tl_fail("thread %d never started", i);
			sleep_ms(1);
		}
		/* Distinct masks, distinct TLS values: the test means something only then. */
		masks_seen[i] = threads[i].mask;
		for (int j = 0; j < i; j++)
			if (masks_seen[j] == masks_seen[i] || threads[j].tls == threads[i].tls)
				tl_fail("threads %d and %d share a mask or TLS value", j, i);
		if (!read_comm(threads[i].tid, comm, sizeof(comm)) || strcmp(comm, threads[i].name))
			tl_fail("thread %d is named '%s', not '%s'", i, comm, threads[i].name);
	}
	tl_log("%d threads, TIDs %d..%d", NTHREADS, threads[0].tid, threads[NTHREADS - 1].tid);

	tl_ready();
	tl_wait_term();

	for (int i = 0; i < NTHREADS; i++) {
		snprintf(path, sizeof(path), "/proc/self/task/%d", threads[i].tid);
		tl_expect(!access(path, F_OK), "thread %d: TID %d is gone", i, threads[i].tid);
	}
	pthread_sigmask(SIG_BLOCK, NULL, &set);
	tl_expect(!set_bits(&set), "main thread mask %#llx", (unsigned long long)set_bits(&set));

	phase = CHECK;
	deadline = tl_now_ns() + CHECK_NS;
	for (int i = 0; i < NTHREADS; i++) {
		struct thread *t = &threads[i];
		int res;

		while ((res = __atomic_load_n(&t->result, __ATOMIC_ACQUIRE)) == UNCHECKED &&
		       tl_now_ns() < deadline)
			sleep_ms(5);
		if (!tl_expect(res != UNCHECKED, "thread %d (%d) never checked itself", i, t->tid))
			continue;
		if (tl_expect(res == GOOD, "thread %d (%d): %s", i, t->tid, t->why))
			good++;
	}
	tl_log("%d of %d threads good", good, NTHREADS);

	/* pthread_timedjoin_np() takes a CLOCK_REALTIME deadline. */
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 3;
	for (int i = 0; i < NTHREADS; i++) {
		if (__atomic_load_n(&threads[i].result, __ATOMIC_ACQUIRE) == UNCHECKED)
			continue; /* stuck: exit() takes it along */
		err = pthread_timedjoin_np(threads[i].pt, NULL, &ts);
		tl_expect(!err, "thread %d (%d): join: %s", i, threads[i].tid, strerror(err));
	}
	tl_done();
}
