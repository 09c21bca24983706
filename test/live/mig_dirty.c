// SPDX-License-Identifier: MIT
/*
 * The workload of the migration tests (test/live/migrate.sh): a small tree whose memory keeps
 * changing while it is copied.
 *
 *   the root's main thread  rewrites MIG_MB (default 64) MiB of private anonymous memory page
 *                           by page at MIG_RATE (default 50) MB/s, in sweeps: write number s
 *                           goes to page s % NPAGES and fills it with s, the page index and
 *                           words derived from both (test/live/memwriter.c's scheme), so a
 *                           page copied half-way through a write, one from an older round or
 *                           one in the wrong place all show.  The whole region is verified
 *                           whenever the loop was held up for more than GAP_MS (a freeze:
 *                           after a migration that is the first thing it does) and after
 *                           SIGTERM: page i must hold the newest s <= last with
 *                           s % NPAGES == i.
 *   a second thread         refills 1 MiB of its own with a pseudo-random stream (the seed
 *                           is the pass number) every 10 ms; after SIGTERM the region must
 *                           hold its last complete pass.
 *   a child process         holds 4 MiB of pseudo-random memory and checks it at SIGTERM
 *                           (which its parent forwards); its exit status goes into the
 *                           parent's verdict.
 *
 * Before "ready" it prints "# tree ROOT CHILD THREAD" (the child's pid, the thread's tid);
 * every 100 ms "# progress S"; after each hold-up "# memory verified after a gap of N ms".
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

#define PAGE 4096ul
#define WORDS (PAGE / 8)
#define GAP_MS 50
#define PROGRESS_NS (100 * TL_NSEC_PER_MSEC)
#define MAGIC 0x6d16a7e5ull
#define THREAD_SIZE (1ul << 20)
#define THREAD_SEED 0x7417ead0000ull
#define CHILD_SIZE (4ul << 20)
#define CHILD_SEED 0xc41d5eedull

static uint64_t *mem;
static uint64_t npages;
static uint64_t next_seq; /* the next write's number */

static unsigned char *thread_mem;
static volatile uint64_t thread_done; /* passes the thread completed */
static volatile int thread_stop;
static volatile pid_t thread_tid;

static uint64_t body_word(uint64_t s, uint64_t j)
{
	return (s * 0x9e3779b97f4a7c15ull) ^ (j * 0xff51afd7ed558ccdull) ^ MAGIC;
}

static void write_page(uint64_t s)
{
	uint64_t *p = mem + (s % npages) * WORDS;

	p[0] = s;
	p[1] = s % npages;
	for (uint64_t j = 2; j < WORDS; j++)
		p[j] = body_word(s, j);
}

/* Every page must hold the last sweep's record; returns the number of bad pages. */
static uint64_t verify(const char *when)
{
	uint64_t last = next_seq - 1, bad = 0;

	for (uint64_t i = 0; i < npages; i++) {
		const uint64_t *p = mem + i * WORDS;
		uint64_t want = last - ((last % npages + npages - i) % npages);
		uint64_t j = 2;

		while (j < WORDS && p[j] == body_word(p[0], j))
			j++;
		if (p[0] == want && p[1] == i && j == WORDS)
			continue;
		if (!bad++)
			tl_expect(false,
				  "%s: page %llu holds seq %llu index %llu (want %llu %llu), body "
				  "%s at word %llu",
				  when, (unsigned long long)i, (unsigned long long)p[0],
				  (unsigned long long)p[1], (unsigned long long)want,
				  (unsigned long long)i, j == WORDS ? "good" : "bad",
				  (unsigned long long)j);
	}
	if (bad)
		tl_expect(false, "%s: %llu of %llu pages are not the last sweep's", when,
			  (unsigned long long)bad, (unsigned long long)npages);
	return bad;
}

static void *thread_main(void *arg)
{
	struct timespec tick = {.tv_nsec = 10 * TL_NSEC_PER_MSEC};

	thread_tid = (pid_t)syscall(SYS_gettid);
	while (!thread_stop) {
		tl_fill(thread_mem, THREAD_SIZE, THREAD_SEED + thread_done + 1);
		thread_done = thread_done + 1;
		nanosleep(&tick, NULL);
	}
	return arg;
}

static void child_main(void)
{
	unsigned char *m =
		mmap(NULL, CHILD_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ssize_t bad;

	/* the parent's pages, as they were at the fork, are no state of the child's */
	munmap(mem, npages * PAGE);
	munmap(thread_mem, THREAD_SIZE);
	if (m == MAP_FAILED)
		_exit(2);
	tl_fill(m, CHILD_SIZE, CHILD_SEED);
	tl_wait_term();
	bad = tl_check_fill(m, CHILD_SIZE, CHILD_SEED);
	_exit(bad < 0 ? 0 : 1);
}

static unsigned long env_num(const char *name, unsigned long dflt)
{
	const char *v = getenv(name);

	return v && *v ? strtoul(v, NULL, 10) : dflt;
}

int main(void)
{
	uint64_t now, prev, next_progress, written = 0, due, gaps = 0, max_gap = 0, active_ns = 0;
	unsigned long mb = env_num("MIG_MB", 64), rate = env_num("MIG_RATE", 50);
	uint64_t pages_per_sec = rate * 1000000 / PAGE;
	struct timespec nap = {.tv_nsec = 200000};
	pthread_t th;
	pid_t child;
	int st;

	tl_init();
	npages = (mb << 20) / PAGE;
	mem = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	thread_mem =
		mmap(NULL, THREAD_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!npages || mem == MAP_FAILED || thread_mem == MAP_FAILED)
		tl_fail("mmap: %m");
	for (next_seq = 0; next_seq < npages; next_seq++)
		write_page(next_seq);
	fflush(stdout);
	child = fork();
	if (child < 0)
		tl_fail("fork: %m");
	if (!child)
		child_main();
	if (pthread_create(&th, NULL, thread_main, NULL))
		tl_fail("pthread_create failed");
	while (!thread_tid || !thread_done)
		usleep(1000);
	tl_log("%lu MiB at %lu MB/s", mb, rate);
	printf("# tree %d %d %d\n", (int)getpid(), (int)child, (int)thread_tid);
	tl_ready();

	prev = tl_now_ns();
	next_progress = prev + PROGRESS_NS;
	while (!tl_term) {
		now = tl_now_ns();
		if (now - prev > GAP_MS * TL_NSEC_PER_MSEC) {
			uint64_t gap_ms = (now - prev) / TL_NSEC_PER_MSEC;

			gaps++;
			if (gap_ms > max_gap)
				max_gap = gap_ms;
			if (verify("after a gap"))
				break;
			tl_log("memory verified after a gap of %llu ms at seq %llu",
			       (unsigned long long)gap_ms, (unsigned long long)next_seq);
			now = tl_now_ns();
		} else {
			active_ns += now - prev;
		}
		prev = now;
		/* the schedule counts only time we ran: no burst to catch up after a gap */
		due = active_ns * pages_per_sec / TL_NSEC_PER_SEC;
		while (written < due) {
			write_page(next_seq++);
			written++;
		}
		if (now >= next_progress) {
			printf("# progress %llu\n", (unsigned long long)next_seq);
			next_progress = now + PROGRESS_NS;
		}
		nanosleep(&nap, NULL);
	}
	if (!tl_failures())
		verify("after SIGTERM");
	thread_stop = 1;
	pthread_join(th, NULL);
	tl_expect(tl_check_fill(thread_mem, THREAD_SIZE, THREAD_SEED + thread_done) < 0,
		  "the thread's region is not its pass %llu", (unsigned long long)thread_done);
	kill(child, SIGTERM);
	while (waitpid(child, &st, 0) < 0)
		;
	tl_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		  "the child's memory check failed "
		  "(status %#x)",
		  st);
	tl_log("%llu pages written in %llu ms of running, %llu gaps, longest %llu ms",
	       (unsigned long long)written, (unsigned long long)(active_ns / TL_NSEC_PER_MSEC),
	       (unsigned long long)gaps, (unsigned long long)max_gap);
	tl_done();
}
