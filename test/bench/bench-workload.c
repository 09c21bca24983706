// SPDX-License-Identifier: MIT
/*
 * Benchmark workload: 1 GiB of private anonymous memory, every page really allocated, mixed
 * the way a real heap tends to be for a checkpointer: half random bytes (incompressible), a
 * quarter zero-filled pages (present, but need not be stored), a quarter repetitive text
 * (highly compressible).  Prints "<pid> ready" on stdout, then sleeps until killed.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define TOTAL (1UL << 30)

/* xorshift64*: fast enough to fill 512 MiB in a fraction of a second, unlike rand(). */
static uint64_t xorshift64s(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static void fill_random(uint64_t *p, size_t len)
{
	uint64_t seed = 0x9E3779B97F4A7C15ULL ^ (uint64_t)time(NULL);

	for (size_t i = 0; i < len / sizeof(*p); i++)
		p[i] = xorshift64s(&seed);
}

static void fill_text(char *p, size_t len)
{
	static const char text[] = "The quick brown fox checkpoints the lazy dog; restore resumes "
				   "it at the very same instruction. ";
	size_t n = sizeof(text) - 1;

	for (size_t off = 0; off < len; off += n)
		memcpy(p + off, text, len - off < n ? len - off : n);
}

int main(void)
{
	char *mem;

	/* The engine dumps session leaders without --shell-job; keep off the caller's tty. */
	if (setsid() < 0 && getsid(0) != getpid()) {
		perror("bench-workload: setsid");
		return 1;
	}
	syscall(SYS_close_range, 3U, ~0U, 0U);

	mem = mmap(NULL, TOTAL, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		perror("bench-workload: mmap");
		return 1;
	}
	fill_random((uint64_t *)mem, TOTAL / 2);
	/* Written, not just left untouched: these pages exist and hold zeros. */
	memset(mem + TOTAL / 2, 0, TOTAL / 4);
	fill_text(mem + TOTAL / 2 + TOTAL / 4, TOTAL / 4);

	printf("%d ready\n", getpid());
	fflush(stdout);
	for (;;)
		pause();
}
