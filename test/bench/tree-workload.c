// SPDX-License-Identifier: MIT
/*
 * Tree benchmark workload: a root and 99 children (100 processes), each with 4 threads and
 * 8 MiB of private anonymous memory of its own, every page written with bytes distinct per
 * process (so nothing is shared copy-on-write and nothing compresses to zero pages).  Prints
 * "<pid> ready" and then "pids <pid>..." (every process of the tree, the root first) on stdout,
 * then sleeps until killed.  The children leave by themselves once their parent is gone.
 */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PROCS 100
#define THREADS 4 /* per process, the main thread included */
#define MEM (8ul << 20)
#define SETUP_NS (30 * 1000000000ull)

static pid_t pids[PROCS];
static int *ready; /* shared: how many processes are set up */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000l};

	nanosleep(&ts, NULL);
}

static void *idle_thread(void *arg)
{
	for (;;)
		pause();
	return NULL;
}

/* This process's memory and threads; false on failure. */
static int setup(void)
{
	uint64_t *mem, x = 0x9e3779b97f4a7c15ull ^ ((uint64_t)getpid() << 32);
	pthread_attr_t attr;
	pthread_t t;

	mem = mmap(NULL, MEM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		perror("tree-workload: mmap");
		return -1;
	}
	/* xorshift64*, seeded by the PID: distinct in every process */
	for (size_t i = 0; i < MEM / sizeof(*mem); i++) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		mem[i] = x * 0x2545f4914f6cdd1dull;
	}
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	for (int i = 1; i < THREADS; i++) {
		if (pthread_create(&t, &attr, idle_thread, NULL)) {
			fprintf(stderr, "tree-workload: pthread_create failed\n");
			return -1;
		}
	}
	__atomic_add_fetch(ready, 1, __ATOMIC_RELEASE);
	return 0;
}

int main(void)
{
	pid_t root;
	uint64_t deadline;

	/* The engine dumps session leaders without --shell-job; keep off the caller's tty. */
	if (setsid() < 0 && getsid(0) != getpid()) {
		perror("tree-workload: setsid");
		return 1;
	}
	syscall(SYS_close_range, 3U, ~0U, 0U);
	ready = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (ready == MAP_FAILED) {
		perror("tree-workload: mmap");
		return 1;
	}

	root = pids[0] = getpid();
	fflush(stdout);
	for (int i = 1; i < PROCS; i++) {
		pids[i] = fork();
		if (pids[i] < 0) {
			perror("tree-workload: fork");
			return 1;
		}
		if (pids[i])
			continue;
		if (setup())
			_exit(1);
		while (getppid() == root)
			sleep_ms(100);
		_exit(0);
	}
	if (setup())
		return 1;

	deadline = now_ns() + SETUP_NS;
	while (__atomic_load_n(ready, __ATOMIC_ACQUIRE) < PROCS) {
		if (now_ns() >= deadline) {
			fprintf(stderr, "tree-workload: only %d processes set up\n", *ready);
			return 1;
		}
		sleep_ms(10);
	}
	printf("%d ready\npids", root);
	for (int i = 0; i < PROCS; i++)
		printf(" %d", pids[i]);
	printf("\n");
	fflush(stdout);
	for (;;)
		pause();
}
