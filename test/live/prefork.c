// SPDX-License-Identifier: MIT
/*
 * A pre-fork server: the root fills 64 MiB of private anonymous memory, then forks 50 workers
 * that read all of it and each write exactly one page of their own.  The region is shared
 * copy-on-write by 51 processes, 64 MiB of memory in all, not 51 copies; after a restore it must
 * stay so.  Before ready the root sums the proportional set size (Pss, which divides a shared
 * page among its sharers) of the whole tree from /proc/PID/smaps_rollup, and the Pss of the
 * region alone from /proc/PID/smaps; after SIGTERM it measures again and fails if the tree's
 * total grew by more than 10%.  Rss (which counts a shared page in every sharer) is reported
 * too.  Then every worker checks every page of the region (the pattern, and its own page) and
 * exits 0 or 1; the root checks its own copy, reaps them all and prints the verdict.  Odd
 * workers also pin themselves to one CPU, and every worker checks it has its CPUs back.
 */
#include <errno.h>
#include <sched.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

#define PAGE 4096ul
#define REGION (64ul << 20)
#define NPAGES (REGION / PAGE)
#define WORKERS 50
#define SEED 0x7072656630000000ull
#define WORKER_SEED 0x776f726b00000000ull
#define MAX_GROWTH_PCT 10
#define SETUP_NS (10 * TL_NSEC_PER_SEC)
#define REAP_NS (8 * TL_NSEC_PER_SEC)

static char *region;
static pid_t workers[WORKERS];
/* Workers say here that they have written their page; shared, it is no part of the region. */
static int *ready;

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000l};

	nanosleep(&ts, NULL);
}

/*
 * The pattern: word k of the region is (k + 1) * golden ratio ^ seed, cheap enough to check
 * 51 times 64 MiB in well under a second (tl_check_fill() would take seconds).
 */
#define GOLDEN 0x9e3779b97f4a7c15ull
#define WORDS_PER_PAGE (PAGE / 8)

static void fill_page(size_t page, uint64_t seed)
{
	uint64_t *w = (uint64_t *)(region + page * PAGE);
	uint64_t e = (page * WORDS_PER_PAGE + 1) * GOLDEN;

	for (size_t i = 0; i < WORDS_PER_PAGE; i++, e += GOLDEN)
		w[i] = e ^ seed;
}

static bool page_ok(size_t page, uint64_t seed)
{
	const uint64_t *w = (const uint64_t *)(region + page * PAGE);
	uint64_t e = (page * WORDS_PER_PAGE + 1) * GOLDEN, diff = 0;

	for (size_t i = 0; i < WORDS_PER_PAGE; i++, e += GOLDEN)
		diff |= w[i] ^ e ^ seed;
	return !diff;
}

/* The one page worker w writes: spread over the region, distinct per worker. */
static size_t worker_page(int w)
{
	return (size_t)w * (NPAGES / WORKERS) + 7;
}

/* First page of [0, NPAGES) that is not as it should be for worker w (-1: the root), or -1. */
static ssize_t bad_page(int w)
{
	for (size_t p = 0; p < NPAGES; p++) {
		uint64_t seed = SEED;

		if (w >= 0 && p == worker_page(w))
			seed = WORKER_SEED + w;
		if (!page_ok(p, seed))
			return p;
	}
	return -1;
}

/*
 * Odd workers run on one CPU of their own choosing, the others on all the root's: after the
 * restore each must have its own again (crest builds the tree on one CPU of its own).
 */
static void pick_cpus(int w, cpu_set_t *cpus)
{
	int n = CPU_COUNT(cpus), k = (w / 2) % (n ? n : 1);

	if (!(w % 2) || n < 2)
		return;
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (CPU_ISSET(cpu, cpus) && !k--) {
			CPU_ZERO(cpus);
			CPU_SET(cpu, cpus);
			break;
		}
	}
	if (sched_setaffinity(0, sizeof(*cpus), cpus))
		_exit(4);
}

static void __attribute__((noreturn)) worker(int w, pid_t parent)
{
	volatile char sink;
	cpu_set_t cpus, now;
	ssize_t p;

	if (sched_getaffinity(0, sizeof(cpus), &cpus))
		_exit(4);
	pick_cpus(w, &cpus);

	/* Read everything, as a server worker reads its preloaded data... */
	for (size_t off = 0; off < REGION; off += PAGE)
		sink = region[off];
	(void)sink;
	/* ...and write one page of it. */
	fill_page(worker_page(w), WORKER_SEED + w);
	__atomic_add_fetch(ready, 1, __ATOMIC_RELEASE);

	while (!tl_term) {
		if (getppid() != parent) {
			tl_log("worker %d: parent is now %d, not %d: leaving", w, getppid(),
			       parent);
			_exit(2);
		}
		sleep_ms(20);
	}
	if (sched_getaffinity(0, sizeof(now), &now) || !CPU_EQUAL(&now, &cpus)) {
		tl_log("worker %d: runs on %d CPUs, not the %d it chose", w, CPU_COUNT(&now),
		       CPU_COUNT(&cpus));
		_exit(3);
	}
	p = bad_page(w);
	if (p >= 0) {
		tl_log("worker %d: page %zd of the region differs%s", w, p,
		       (size_t)p == worker_page(w) ? " (its own page)" : "");
		_exit(1);
	}
	_exit(0);
}

/* Sum of a smaps_rollup field over the tree, in kB; false when a task cannot be read. */
static bool tree_rollup(const char *key, unsigned long *kb)
{
	static char text[8192];
	char path[64], val[64];

	*kb = 0;
	for (int i = -1; i < WORKERS; i++) {
		pid_t pid = i < 0 ? getpid() : workers[i];

		snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", pid);
		tl_read_file(path, text, sizeof(text));
		if (!tl_status_field(text, key, val, sizeof(val)))
			return false;
		*kb += strtoul(val, NULL, 10);
	}
	return true;
}

/* Sum of the region's Pss over the tree, in kB, from the smaps entry at its address. */
static bool tree_region_pss(unsigned long *kb)
{
	static char text[256 * 1024];
	char path[64], head[32], val[64];
	const char *vma;

	*kb = 0;
	snprintf(head, sizeof(head), "%lx-", (unsigned long)region);
	for (int i = -1; i < WORKERS; i++) {
		pid_t pid = i < 0 ? getpid() : workers[i];

		snprintf(path, sizeof(path), "/proc/%d/smaps", pid);
		tl_read_file(path, text, sizeof(text));
		vma = text;
		while (vma && strncmp(vma, head, strlen(head))) {
			vma = strchr(vma, '\n');
			if (vma)
				vma++;
		}
		if (!vma || !tl_status_field(vma, "Pss", val, sizeof(val)))
			return false;
		*kb += strtoul(val, NULL, 10);
	}
	return true;
}

struct usage {
	unsigned long pss, rss, region_pss;
};

static void measure(struct usage *u, const char *when)
{
	if (!tree_rollup("Pss", &u->pss) || !tree_rollup("Rss", &u->rss) ||
	    !tree_region_pss(&u->region_pss))
		tl_fail("cannot read the memory use of the tree %s", when);
	tl_log("%s: tree Pss %lu kB (region %lu kB), Rss %lu kB", when, u->pss, u->region_pss,
	       u->rss);
}

int main(void)
{
	struct usage before, after;
	uint64_t deadline;
	int st;
	ssize_t p;

	tl_init();
	ready = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	region = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ready == MAP_FAILED || region == MAP_FAILED)
		tl_fail("mmap: %m");
	/* One VMA of our own that no neighbour can merge with, so smaps shows it alone. */
	madvise(region, REGION, MADV_NOHUGEPAGE);
	for (size_t pg = 0; pg < NPAGES; pg++)
		fill_page(pg, SEED);

	fflush(stdout);
	for (int w = 0; w < WORKERS; w++) {
		pid_t parent = getpid();

		workers[w] = fork();
		if (workers[w] < 0)
			tl_fail("fork: %m");
		if (!workers[w])
			worker(w, parent);
	}
	deadline = tl_now_ns() + SETUP_NS;
	while (__atomic_load_n(ready, __ATOMIC_ACQUIRE) < WORKERS) {
		if (waitpid(-1, &st, WNOHANG) > 0 || tl_now_ns() >= deadline) {
			for (int w = 0; w < WORKERS; w++)
				kill(workers[w], SIGTERM);
			tl_fail("only %d of %d workers got ready", *ready, WORKERS);
		}
		sleep_ms(2);
	}
	measure(&before, "before");

	tl_ready();
	tl_wait_term();

	measure(&after, "after");
	tl_expect(after.pss * 100 <= before.pss * (100 + MAX_GROWTH_PCT),
		  "tree Pss grew from %lu kB to %lu kB, more than %d%%", before.pss, after.pss,
		  MAX_GROWTH_PCT);
	tl_log("Pss after/before: %.3f, region Pss after/before: %.3f",
	       (double)after.pss / before.pss, (double)after.region_pss / before.region_pss);

	for (int w = 0; w < WORKERS; w++)
		kill(workers[w], SIGTERM);
	p = bad_page(-1);
	tl_expect(p < 0, "page %zd of the root's region differs", p);
	deadline = tl_now_ns() + REAP_NS;
	for (int w = 0; w < WORKERS; w++) {
		pid_t r;

		while ((r = waitpid(workers[w], &st, WNOHANG)) == 0 && tl_now_ns() < deadline)
			sleep_ms(5);
		if (r == 0) {
			/* still our child, so the PID is ours */
			kill(workers[w], SIGKILL);
			waitpid(workers[w], &st, 0);
			tl_expect(false, "worker %d (%d) did not finish", w, workers[w]);
		} else if (r < 0) {
			tl_expect(false, "worker %d (%d): waitpid: %m", w, workers[w]);
		} else if (!WIFEXITED(st) || WEXITSTATUS(st)) {
			tl_expect(false, "worker %d (%d) ended with status %#x", w, workers[w], st);
		}
	}
	tl_expect(waitpid(-1, &st, WNOHANG) < 0 && errno == ECHILD, "children left over");
	tl_done();
}
