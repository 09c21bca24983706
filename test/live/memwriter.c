// SPDX-License-Identifier: MIT
/*
 * Memory written at about 200 MB/s without pause, while pre-dump rounds copy it.  256 MiB of
 * private anonymous memory is swept page by page: write number s goes to page s % NPAGES and
 * fills it with a record of s and the page index (header) and words derived from both (body),
 * so a page copied half-way through a write, a page from an older round or one in the wrong
 * place all show.  After the start every page holds a record.
 *
 * The whole memory is verified whenever the loop finds it was held up for more than GAP_MS
 * (a freeze: after a restore that is the first thing it does) and after SIGTERM.  It must be
 * exactly the last sweep: page i holds the newest s <= last with s % NPAGES == i, so every
 * page is at most one sweep behind and sequence numbers only go up along the sweep.  Every
 * 100 ms "# progress S" tells the runner the loop is running.
 */
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>

#include "testlib.h"

#define PAGE 4096ul
#define WORDS (PAGE / 8)
#define SIZE (256ul << 20)
#define NPAGES (SIZE / PAGE)
#define RATE (200ull << 20) /* bytes per second */
#define PAGES_PER_SEC (RATE / PAGE)
#define GAP_MS 50
#define PROGRESS_NS (100 * TL_NSEC_PER_MSEC)
#define MAGIC 0x5eb1a7e5ull

static uint64_t *mem;
static uint64_t next_seq; /* the next write's number: NPAGES after the first sweep */

static uint64_t body_word(uint64_t s, uint64_t j)
{
	return (s * 0x9e3779b97f4a7c15ull) ^ (j * 0xff51afd7ed558ccdull) ^ MAGIC;
}

static void write_page(uint64_t s)
{
	uint64_t *p = mem + (s % NPAGES) * WORDS;

	p[0] = s;
	p[1] = s % NPAGES;
	for (uint64_t j = 2; j < WORDS; j++)
		p[j] = body_word(s, j);
}

/* Every page must hold the last sweep's record; returns the number of bad pages. */
static uint64_t verify(const char *when)
{
	uint64_t last = next_seq - 1, bad = 0;

	for (uint64_t i = 0; i < NPAGES; i++) {
		const uint64_t *p = mem + i * WORDS;
		/* newest s <= last with s % NPAGES == i */
		uint64_t want = last - ((last % NPAGES + NPAGES - i) % NPAGES);
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
		tl_expect(false, "%s: %llu of %lu pages are not the last sweep's", when,
			  (unsigned long long)bad, NPAGES);
	return bad;
}

int main(void)
{
	uint64_t start, now, prev, next_progress, written = 0, due, gaps = 0, max_gap = 0;
	uint64_t active_ns = 0;
	double rate;
	struct timespec nap = {.tv_nsec = 200000};

	tl_init();
	mem = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		tl_fail("mmap: %m");
	for (next_seq = 0; next_seq < NPAGES; next_seq++)
		write_page(next_seq);
	tl_log("%lu MiB at %llu MiB/s", SIZE >> 20, RATE >> 20);
	tl_ready();

	start = prev = tl_now_ns();
	next_progress = start + PROGRESS_NS;
	while (!tl_term) {
		now = tl_now_ns();
		if (now - prev > GAP_MS * TL_NSEC_PER_MSEC) {
			/* held up (a freeze, a restore): check everything before going on */
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
		due = active_ns * PAGES_PER_SEC / TL_NSEC_PER_SEC;
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
	rate = active_ns ? written * (double)PAGE / (1 << 20) * TL_NSEC_PER_SEC / active_ns : 0;
	tl_log("%llu pages written in %llu ms of running (%.0f MiB/s), %llu gaps, longest %llu ms",
	       (unsigned long long)written, (unsigned long long)(active_ns / TL_NSEC_PER_MSEC),
	       rate, (unsigned long long)gaps, (unsigned long long)max_gap);
	/* at half the rate the test would not be what it claims */
	tl_expect(active_ns < TL_NSEC_PER_SEC / 2 || rate >= (RATE >> 20) / 2,
		  "wrote only %.0f MiB/s", rate);
	tl_done();
}
