// SPDX-License-Identifier: MIT
/*
 * Restartable sequences: glibc registers an rseq area for the thread at startup.  After a
 * restore the kernel must know that registration again (a second registration with the same
 * area, length and signature is refused with EBUSY only while one is in force), and must keep
 * the area's cpu_id current: pinned to a CPU, the area must say that CPU.
 */
#include <errno.h>
#include <sched.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "testlib.h"

static struct rseq *area(void)
{
	return (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
}

/*
 * 0 when the area is registered, else the errno of our attempt (0 itself would mean the
 * attempt succeeded, i.e. nothing was registered: reported as -1).  glibc registers the full
 * 32-byte struct; newer glibcs export a smaller feature size in __rseq_size, so try both.
 */
static int registered(void)
{
	unsigned int lens[2] = {__rseq_size, sizeof(struct rseq)};
	int err = 0;

	for (int i = 0; i < 2; i++) {
		if (!syscall(SYS_rseq, area(), lens[i], 0, RSEQ_SIG))
			return -1;
		if (errno == EBUSY)
			return 0;
		err = errno;
	}
	return err;
}

/* The CPU the area reports once we are pinned to cpu (false when we cannot pin there). */
static bool area_cpu_on(int cpu, int *seen)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		return false;
	sched_yield();
	*seen = (int)*(volatile __u32 *)&area()->cpu_id;
	return true;
}

int main(void)
{
	int before, after, seen, ncpu = 0;
	cpu_set_t all;

	tl_init();
	if (!__rseq_size)
		tl_fail("glibc did not register rseq (GLIBC_TUNABLES=glibc.pthread.rseq=0?)");
	before = registered();
	if (before)
		tl_fail("rseq not registered before the dump (%d)", before);
	tl_ready();
	tl_wait_term();

	after = registered();
	tl_expect(after == 0, "rseq registration lost (%s)",
		  after < 0 ? "registering again succeeded" : "registering again failed oddly");
	tl_expect(area()->rseq_cs == 0, "rseq_cs is %#llx outside any critical section",
		  (unsigned long long)area()->rseq_cs);
	if (sched_getaffinity(0, sizeof(all), &all))
		tl_fail("sched_getaffinity: %m");
	for (int cpu = 0; cpu < CPU_SETSIZE && ncpu < 2; cpu++) {
		if (!CPU_ISSET(cpu, &all) || !area_cpu_on(cpu, &seen))
			continue;
		ncpu++;
		tl_expect(seen == cpu, "pinned to CPU %d, the rseq area says %d", cpu, seen);
	}
	tl_expect(ncpu > 0, "could not pin to any CPU");
	sched_setaffinity(0, sizeof(all), &all);
	tl_done();
}
