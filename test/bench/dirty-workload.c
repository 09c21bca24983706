// SPDX-License-Identifier: MIT
/*
 * Pre-dump benchmark workload: 1 GiB of private anonymous memory, every page written with
 * random bytes, then rewritten at a steady rate (argument 1, MB/s; default 50) for as long as
 * it runs: one 8-byte store into each of a stream of pseudo-random pages, so every store dirties
 * a whole page, the way a big heap with a scattered working set does.  Prints "<pid> ready" on
 * stdout once the memory is filled.  A held-up loop (a freeze) does not catch up afterwards.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define TOTAL (1UL << 30)
#define PAGE 4096UL
#define NPAGES (TOTAL / PAGE)
#define TICK_NS 1000000L /* 1 ms between bursts */

static uint64_t xorshift64s(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	double mbps = argc > 1 ? atof(argv[1]) : 50;
	uint64_t seed = 0x9E3779B97F4A7C15ULL ^ (uint64_t)time(NULL), *mem;
	uint64_t pages_per_tick, prev, now;
	struct timespec tick = {0, TICK_NS};

	/* The engine dumps session leaders without --shell-job; keep off the caller's tty. */
	if (setsid() < 0 && getsid(0) != getpid()) {
		perror("dirty-workload: setsid");
		return 1;
	}
	syscall(SYS_close_range, 3U, ~0U, 0U);
	if (mbps <= 0) {
		fprintf(stderr, "dirty-workload: bad rate '%s' (MB/s)\n", argv[1]);
		return 1;
	}
	mem = mmap(NULL, TOTAL, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		perror("dirty-workload: mmap");
		return 1;
	}
	for (size_t i = 0; i < TOTAL / sizeof(*mem); i++)
		mem[i] = xorshift64s(&seed);

	/* MB/s in pages a millisecond, the remainder carried over so the rate is exact */
	pages_per_tick = (uint64_t)(mbps * 1e6 / PAGE / 1000 * 1024);
	printf("%d ready\n", getpid());
	fflush(stdout);
	prev = now_ns();
	for (uint64_t acc = 0;;) {
		nanosleep(&tick, NULL);
		now = now_ns();
		/* at most 10 ticks' worth after a pause: no burst after a freeze */
		acc += pages_per_tick * ((now - prev) / TICK_NS < 10 ? (now - prev) / TICK_NS : 10);
		prev += (now - prev) / TICK_NS * TICK_NS;
		for (; acc >= 1024; acc -= 1024) {
			uint64_t r = xorshift64s(&seed);

			mem[(r % NPAGES) * (PAGE / sizeof(*mem)) + (r >> 55)] = r;
		}
	}
}
