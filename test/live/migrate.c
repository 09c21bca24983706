// SPDX-License-Identifier: MIT
/*
 * A workload for live migration: MIGRATE_MB (default 16) MiB of private anonymous memory that
 * it keeps rewriting while pre-dump rounds copy it.  Page i holds generation gen[i] of its
 * content, which depends on i and the generation only:
 *
 *   i % 4 == 0, 1: text, lz4 compresses it well;
 *   i % 4 == 2:    zeros in generation 0 (written, so present), text after;
 *   i % 4 == 3:    pseudo-random bytes, which lz4 cannot compress.
 *
 * Every few milliseconds it rewrites a handful of pages with their next generation, so every
 * round has pages to copy again.  After SIGTERM every page must hold exactly the generation
 * gen[] says: memory restored from a chain of rounds must be the memory of the last one.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "testlib.h"

#define PAGE 4096ul
#define BATCH 8		     /* pages rewritten at a time */
#define INTERVAL_NS 5000000u /* between batches */

static unsigned char expect[PAGE];

static void content(unsigned char *page, uint64_t i, uint32_t gen)
{
	size_t off = 0;

	if (i % 4 == 3) {
		tl_fill(page, PAGE, i << 20 | gen);
		return;
	}
	if (i % 4 == 2 && gen == 0) {
		memset(page, 0, PAGE);
		return;
	}
	while (off < PAGE) {
		char line[96];
		int n = snprintf(line, sizeof(line),
				 "page %06llu generation %05u: the same words, over and over\n",
				 (unsigned long long)i, gen);

		if ((size_t)n > PAGE - off)
			n = PAGE - off;
		memcpy(page + off, line, n);
		off += n;
	}
}

static uint64_t next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

int main(void)
{
	const char *mb = getenv("MIGRATE_MB");
	size_t size = (mb ? strtoul(mb, NULL, 10) : 16) << 20, npages;
	uint64_t rng = 0x9e3779b97f4a7c15ull, writes = 0, deadline;
	unsigned char *mem;
	uint32_t *gen;

	tl_init();
	if (!size)
		tl_fail("bad MIGRATE_MB");
	npages = size / PAGE;
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	gen = mmap(NULL, npages * sizeof(*gen), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		   -1, 0);
	if (mem == MAP_FAILED || gen == MAP_FAILED)
		tl_fail("mmap: out of memory");
	for (size_t i = 0; i < npages; i++)
		content(mem + i * PAGE, i, 0);
	tl_ready();

	deadline = tl_now_ns();
	while (!tl_term) {
		for (int k = 0; k < BATCH; k++) {
			size_t i = next(&rng) % npages;

			content(mem + i * PAGE, i, ++gen[i]);
			writes++;
		}
		deadline += INTERVAL_NS;
		tl_sleep_until(deadline);
	}

	tl_log("%llu page writes", (unsigned long long)writes);
	for (size_t i = 0; i < npages; i++) {
		content(expect, i, gen[i]);
		if (!tl_expect(!memcmp(mem + i * PAGE, expect, PAGE),
			       "page %zu does not hold generation %u", i, gen[i]))
			break;
	}
	tl_done();
}
