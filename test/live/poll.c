// SPDX-License-Identifier: MIT
/*
 * A task frozen inside poll(NULL, 0, 3000).  crest documents that an interrupted poll (like a
 * futex wait) with a timeout comes back as EINTR, as after a signal; a real program then polls
 * again for what is left of its own deadline.  It must wake no earlier than the deadline and
 * promptly after max(deadline, the moment it resumed).
 */
#include <errno.h>
#include <poll.h>

#include "testlib.h"

#define WAIT_NS (3 * TL_NSEC_PER_SEC)
#define SLACK_NS (500 * TL_NSEC_PER_MSEC)

int main(void)
{
	uint64_t start, deadline, now, resumed, woke;
	int eintr = 0, early = 0, r, ms;

	tl_init();
	tl_ready();
	start = resumed = tl_now_ns();
	deadline = start + WAIT_NS;

	for (;;) {
		now = tl_now_ns();
		/* Round up: a timeout rounded down would return just before the deadline. */
		ms = now >= deadline ? 0
				     : (deadline - now + TL_NSEC_PER_MSEC - 1) / TL_NSEC_PER_MSEC;
		r = poll(NULL, 0, ms);
		woke = tl_now_ns();
		if (r < 0 && errno == EINTR) {
			eintr++;
			resumed = woke;
			continue;
		}
		if (r < 0)
			tl_fail("poll: %m");
		if (r > 0)
			tl_fail("poll with no fds returned %d", r);
		if (woke >= deadline)
			break;
		/* A timeout that expired early: wrong, but keep going to report how it ends. */
		early++;
	}
	tl_wait_term();

	tl_log("waited %llu ms (deadline %llu ms), EINTR %d times, resumed at %llu ms",
	       (unsigned long long)((woke - start) / TL_NSEC_PER_MSEC),
	       (unsigned long long)(WAIT_NS / TL_NSEC_PER_MSEC), eintr,
	       (unsigned long long)((resumed - start) / TL_NSEC_PER_MSEC));
	tl_expect(!early, "poll timed out %d times before the deadline", early);
	now = deadline > resumed ? deadline : resumed;
	tl_expect(woke <= now + SLACK_NS, "woke %llu ms after max(deadline, resume)",
		  (unsigned long long)((woke - now) / TL_NSEC_PER_MSEC));
	tl_done();
}
