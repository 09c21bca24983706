// SPDX-License-Identifier: MIT
/*
 * What a task does to its memory while lazy pages are still being filled (lazy/lazyops).
 * Four 32 MiB regions of private anonymous memory, every page holding its own pattern.  The
 * program watches the clock in a 1 ms loop; the first gap of over 50 ms is the freeze, and
 * right after it (the restore: lazy pages have barely started) it, at once:
 *   - forks a child that checks region A page by page (the child's missing pages must come
 *     from the images too, through the fork event) and exits 0 or 1;
 *   - moves region B with mremap() and checks it at its new address;
 *   - drops region C with MADV_DONTNEED and checks it reads as zeros (the images must not
 *     fill it back);
 *   - checks region D where it is.
 * Without a freeze (plain runs) the same happens at SIGTERM.  PASS when every check held.
 */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

#define REGION (32UL << 20)
#define PAGE 4096UL

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ull + ts.tv_nsec / 1000000;
}

static void fill(char *base, int tag)
{
	for (unsigned long off = 0; off < REGION; off += PAGE)
		for (unsigned long w = 0; w < PAGE; w += 512)
			*(uint64_t *)(base + off + w) = ((uint64_t)tag << 56) ^ (off + w) ^ 0x5a5a;
}

/* The first bad page, or -1. */
static long check(const char *base, int tag)
{
	for (unsigned long off = 0; off < REGION; off += PAGE)
		for (unsigned long w = 0; w < PAGE; w += 512)
			if (*(const uint64_t *)(base + off + w) !=
			    (((uint64_t)tag << 56) ^ (off + w) ^ 0x5a5a))
				return off / PAGE;
	return -1;
}

static long check_zero(const char *base)
{
	for (unsigned long off = 0; off < REGION; off += 8)
		if (*(const uint64_t *)(base + off))
			return off / PAGE;
	return -1;
}

static void act(char *a, char **b, char *c, char *d, char *b_new)
{
	pid_t child = fork();
	int status;
	long bad;

	if (child < 0)
		tl_fail("fork: %m");
	if (child == 0)
		_exit(check(a, 1) < 0 ? 0 : 1);
	*b = mremap(*b, REGION, REGION, MREMAP_MAYMOVE | MREMAP_FIXED, b_new);
	if (*b == MAP_FAILED)
		tl_fail("mremap: %m");
	if (madvise(c, REGION, MADV_DONTNEED))
		tl_fail("madvise: %m");
	bad = check(*b, 2);
	tl_expect(bad < 0, "region B after mremap: page %ld differs", bad);
	bad = check_zero(c);
	tl_expect(bad < 0, "region C after MADV_DONTNEED: page %ld is not zero", bad);
	bad = check(d, 4);
	tl_expect(bad < 0, "region D: page %ld differs", bad);
	if (waitpid(child, &status, 0) != child)
		tl_fail("waitpid: %m");
	tl_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "the child forked after the freeze saw region A differ (status %#x)", status);
	bad = check(a, 1);
	tl_expect(bad < 0, "region A: page %ld differs", bad);
}

int main(void)
{
	char *mem, *a, *b, *c, *d, *b_new;
	uint64_t last;
	bool done = false;

	tl_init();
	/* the four regions, and room to move B to, apart so none merge */
	mem = mmap(NULL, 11 * REGION, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		tl_fail("mmap: %m");
	a = mem;
	b = mem + 2 * REGION;
	c = mem + 4 * REGION;
	d = mem + 6 * REGION;
	b_new = mem + 8 * REGION;
	for (char *r = a; r <= d; r += 2 * REGION)
		if (mprotect(r, REGION, PROT_READ | PROT_WRITE))
			tl_fail("mprotect: %m");
	munmap(b_new, REGION); /* a hole for B to move to */
	fill(a, 1);
	fill(b, 2);
	fill(c, 3);
	fill(d, 4);
	tl_ready();
	last = now_ms();
	while (!tl_term) {
		uint64_t t = now_ms();

		if (!done && t - last > 50) {
			tl_log("freeze of %llu ms seen: acting at once",
			       (unsigned long long)(t - last));
			act(a, &b, c, d, b_new);
			done = true;
		}
		last = t;
		usleep(1000);
	}
	if (!done)
		act(a, &b, c, d, b_new);
	tl_done();
}
