// SPDX-License-Identifier: MIT
/*
 * A task frozen inside FUTEX_WAIT with a 3 s relative timeout on a word nobody changes.  An
 * interrupted wait may come back as EINTR (crest documents that); the program then waits again
 * for what is left of its own deadline.  The wait must end with ETIMEDOUT, no earlier than the
 * deadline and promptly after max(deadline, the moment it resumed).
 */
#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

#define WAIT_NS (3 * TL_NSEC_PER_SEC)
#define SLACK_NS (500 * TL_NSEC_PER_MSEC)
#define WORD 0x5eed1234

static int word = WORD;

int main(void)
{
	uint64_t start, deadline, now, resumed, woke, left;
	struct timespec ts;
	int eintr = 0, spurious = 0;
	long r;

	tl_init();
	tl_ready();
	start = resumed = tl_now_ns();
	deadline = start + WAIT_NS;

	for (;;) {
		now = tl_now_ns();
		left = now >= deadline ? 0 : deadline - now;
		ts.tv_sec = left / TL_NSEC_PER_SEC;
		ts.tv_nsec = left % TL_NSEC_PER_SEC;
		r = syscall(SYS_futex, &word, FUTEX_WAIT, WORD, &ts, NULL, 0);
		woke = tl_now_ns();
		if (r == 0) {
			/* Nobody wakes this word: count it, the deadline decides. */
			spurious++;
			continue;
		}
		if (errno == EINTR) {
			eintr++;
			resumed = woke;
			continue;
		}
		if (errno == ETIMEDOUT)
			break;
		if (errno == EAGAIN)
			tl_fail("futex word changed to %#x", word);
		tl_fail("futex: %m");
	}
	tl_wait_term();

	tl_log("waited %llu ms (deadline %llu ms), EINTR %d times, %d spurious wakeups, resumed "
	       "at %llu ms",
	       (unsigned long long)((woke - start) / TL_NSEC_PER_MSEC),
	       (unsigned long long)(WAIT_NS / TL_NSEC_PER_MSEC), eintr, spurious,
	       (unsigned long long)((resumed - start) / TL_NSEC_PER_MSEC));
	tl_expect(word == WORD, "futex word changed to %#x", word);
	tl_expect(woke >= deadline, "ETIMEDOUT %llu us before the deadline",
		  (unsigned long long)((deadline - woke) / 1000));
	now = deadline > resumed ? deadline : resumed;
	tl_expect(woke <= now + SLACK_NS, "woke %llu ms after max(deadline, resume)",
		  (unsigned long long)((woke - now) / TL_NSEC_PER_MSEC));
	tl_done();
}
