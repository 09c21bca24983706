// SPDX-License-Identifier: MIT
/*
 * A busy counting loop, the simplest thing that must survive: the count lives in a register,
 * the loop reads the clock through the vdso, and every 100 ms it prints the count.  After
 * SIGTERM the count must have gone on increasing from where it was (a restart from scratch
 * would print a second "ready" line, which the runner checks for).
 */
#include <stdint.h>
#include <stdio.h>

#include "testlib.h"

#define REPORT_NS (100 * TL_NSEC_PER_MSEC)

int main(void)
{
	uint64_t n = 0, reported = 0, reports = 0;
	uint64_t start, prev, next, now, gap, max_gap = 0;

	tl_init();
	start = prev = tl_now_ns();
	next = start + REPORT_NS;
	tl_ready();

	while (!tl_term) {
		n++;
		/* Read the clock only now and then so the loop is mostly pure register work. */
		if (n & 0xfff)
			continue;
		now = tl_now_ns();
		if (now < prev)
			tl_fail("CLOCK_MONOTONIC went back: %llu < %llu", (unsigned long long)now,
				(unsigned long long)prev);
		gap = now - prev;
		if (gap > max_gap)
			max_gap = gap;
		prev = now;
		if (now < next)
			continue;
		if (n <= reported)
			tl_fail("count went back: %llu after %llu", (unsigned long long)n,
				(unsigned long long)reported);
		printf("count %llu\n", (unsigned long long)n);
		reported = n;
		reports++;
		next = now + REPORT_NS;
	}

	tl_expect(n > reported, "final count %llu not above last report %llu",
		  (unsigned long long)n, (unsigned long long)reported);
	tl_log("final count %llu after %llu reports in %llu ms, longest pause %llu ms",
	       (unsigned long long)n, (unsigned long long)reports,
	       (unsigned long long)((tl_now_ns() - start) / TL_NSEC_PER_MSEC),
	       (unsigned long long)(max_gap / TL_NSEC_PER_MSEC));
	tl_done();
}
