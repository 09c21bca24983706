// SPDX-License-Identifier: MIT
/*
 * A task frozen inside nanosleep(3 s).  Whether the engine restarts the sleep transparently or
 * makes it return EINTR with the remaining time (what a signal would do), a correct program
 * that loops on EINTR with the remaining time must wake no earlier than its deadline, and no
 * later than the deadline plus the time it spent between being interrupted and resuming.
 */
#include <errno.h>
#include <time.h>

#include "testlib.h"

#define SLEEP_NS (3 * TL_NSEC_PER_SEC)
#define SLACK_NS (500 * TL_NSEC_PER_MSEC)
#define CAP_NS (10 * TL_NSEC_PER_SEC)

static uint64_t ts_ns(const struct timespec *ts)
{
	return ts->tv_sec * TL_NSEC_PER_SEC + ts->tv_nsec;
}

int main(void)
{
	struct timespec req = {.tv_sec = SLEEP_NS / TL_NSEC_PER_SEC}, rem;
	uint64_t start, deadline, woke, back, stopped, lost = 0;
	int eintr = 0;

	tl_init();
	tl_ready();
	start = tl_now_ns();
	deadline = start + SLEEP_NS;

	while (nanosleep(&req, &rem)) {
		back = tl_now_ns();
		if (errno != EINTR)
			tl_fail("nanosleep: %m");
		eintr++;
		/*
		 * rem says when the sleep was cut short: each earlier interruption pushed the end
		 * of the sleep back by the time lost until we called again.
		 */
		if (ts_ns(&rem) >= ts_ns(&req))
			tl_fail("nanosleep left rem %llu ns >= request %llu ns",
				(unsigned long long)ts_ns(&rem), (unsigned long long)ts_ns(&req));
		stopped = deadline + lost - ts_ns(&rem);
		if (stopped > back)
			tl_fail("rem %llu ns claims the sleep ended in the future",
				(unsigned long long)ts_ns(&rem));
		lost += back - stopped;
		req = rem;
	}
	woke = tl_now_ns();
	tl_wait_term();

	tl_log("slept %llu ms (deadline %llu ms), EINTR %d times, %llu ms between interruptions "
	       "and resuming",
	       (unsigned long long)((woke - start) / TL_NSEC_PER_MSEC),
	       (unsigned long long)(SLEEP_NS / TL_NSEC_PER_MSEC), eintr,
	       (unsigned long long)(lost / TL_NSEC_PER_MSEC));
	tl_expect(woke >= deadline, "woke %llu us before the deadline",
		  (unsigned long long)((deadline - woke) / 1000));
	tl_expect(woke <= deadline + lost + SLACK_NS,
		  "woke %llu ms after the deadline (%llu ms lost)",
		  (unsigned long long)((woke - deadline) / TL_NSEC_PER_MSEC),
		  (unsigned long long)(lost / TL_NSEC_PER_MSEC));
	tl_expect(woke <= deadline + CAP_NS, "woke more than %llu s late",
		  (unsigned long long)(CAP_NS / TL_NSEC_PER_SEC));
	tl_done();
}
