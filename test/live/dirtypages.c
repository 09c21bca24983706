// SPDX-License-Identifier: MIT
/*
 * A known set of pages written between pre-dump rounds, for the runner to find in each round's
 * pagemap.  A 4 MiB private anonymous region (no transparent huge pages: tracking is per page
 * only for small ones) is filled at start, every page with its own pattern for generation 0.
 * Each SIGUSR1 starts generation k: the pages of set S(k) -- a contiguous block and pages
 * scattered by a hash -- get the pattern of generation k, and the program prints
 *
 *   # dirtied k: FIRST+COUNT FIRST+COUNT ...
 *
 * the runs of S(k) in page indexes, merged and in order.  Generation 3 also maps a new 16-page
 * region and fills it ("# newvma ADDR PAGES" before the dirtied line), which the next round
 * must copy whole.  "# region ADDR PAGES" comes before ready.
 *
 * After SIGTERM every page of both regions must hold the pattern of the generation that last
 * wrote it: restored from a chain of rounds, each page comes from the round that copied it.
 */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "testlib.h"

#define PAGE 4096ul
#define NPAGES 1024
#define NEW_PAGES 16
#define NEW_GEN 3
#define MAX_GEN 64

static unsigned char *region, *newvma;
static unsigned char gen[NPAGES]; /* generation that last wrote each page */
static volatile sig_atomic_t requests;
static char line[16384];

static void on_usr1(int sig)
{
	requests++;
}

static uint64_t seed(unsigned int page, unsigned int g)
{
	return 0xd1a7ull << 40 | (uint64_t)g << 20 | page;
}

/* Is page i in the set generation k writes?  (k >= 1) */
static bool in_set(unsigned int k, unsigned int i)
{
	unsigned int start = (k * 97) % (NPAGES - 64), len = 4 + 8 * k % 40;
	uint64_t h = (uint64_t)(k * 2654435761u) ^ (i * 0x9e3779b97f4a7c15ull);

	if (i >= start && i < start + len)
		return true;
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 32;
	return h % 13 == 0;
}

static void dirty(unsigned int k)
{
	size_t len;
	int runs = 0;

	if (k == NEW_GEN) {
		newvma = mmap(NULL, NEW_PAGES * PAGE, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (newvma == MAP_FAILED)
			tl_fail("mmap of the new region: %m");
		tl_fill(newvma, NEW_PAGES * PAGE, seed(NPAGES, k));
		tl_log("newvma %p %d", (void *)newvma, NEW_PAGES);
	}
	len = snprintf(line, sizeof(line), "dirtied %u:", k);
	for (unsigned int i = 0; i < NPAGES;) {
		unsigned int j = i;

		if (!in_set(k, i)) {
			i++;
			continue;
		}
		while (j < NPAGES && in_set(k, j)) {
			tl_fill(region + j * PAGE, PAGE, seed(j, k));
			gen[j] = k;
			j++;
		}
		len += snprintf(line + len, sizeof(line) - len, " %u+%u", i, j - i);
		if (len >= sizeof(line) - 32)
			tl_fail("too many runs in generation %u", k);
		runs++;
		i = j;
	}
	if (!runs)
		tl_fail("generation %u writes no page", k);
	tl_log("%s", line);
}

int main(void)
{
	struct sigaction sa = {.sa_handler = on_usr1};
	sigset_t block, old, wait;
	unsigned int done = 0;
	int bad = 0;

	tl_init();
	region = mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		      0);
	if (region == MAP_FAILED)
		tl_fail("mmap: %m");
	if (madvise(region, NPAGES * PAGE, MADV_NOHUGEPAGE))
		tl_fail("madvise(MADV_NOHUGEPAGE): %m");
	for (unsigned int i = 0; i < NPAGES; i++)
		tl_fill(region + i * PAGE, PAGE, seed(i, 0));
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL))
		tl_fail("sigaction(SIGUSR1): %m");
	tl_log("region %p %d", (void *)region, NPAGES);
	tl_ready();

	/* Wait for SIGUSR1 or SIGTERM with both blocked around the checks. */
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, &old);
	wait = old;
	sigdelset(&wait, SIGUSR1);
	sigdelset(&wait, SIGTERM);
	while (!tl_term) {
		if (done < (unsigned int)requests) {
			if (done + 1 >= MAX_GEN)
				tl_fail("more than %d generations", MAX_GEN - 1);
			dirty(++done);
			continue;
		}
		sigsuspend(&wait);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);

	for (unsigned int i = 0; i < NPAGES; i++) {
		ssize_t off = tl_check_fill(region + i * PAGE, PAGE, seed(i, gen[i]));

		if (off >= 0 && !bad++)
			tl_expect(false, "page %u (%p) differs at byte %zd from generation %u", i,
				  (void *)(region + i * PAGE), off, gen[i]);
	}
	tl_expect(!bad, "%d of %d pages differ", bad, NPAGES);
	if (newvma) {
		ssize_t off = tl_check_fill(newvma, NEW_PAGES * PAGE, seed(NPAGES, NEW_GEN));

		tl_expect(off < 0, "the new region %p differs at byte %zd", (void *)newvma, off);
	}
	tl_log("%u generations written", done);
	tl_done();
}
