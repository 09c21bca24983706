// SPDX-License-Identifier: MIT
/*
 * ITIMER_REAL firing every 100 ms into a SIGALRM counter.  After SIGTERM the timer must still
 * have its 100 ms interval and keep firing at about 10 per second.
 */
#include <sys/time.h>

#include "testlib.h"

#define INTERVAL_US 100000
#define MEASURE_NS (1 * TL_NSEC_PER_SEC)

static volatile unsigned long ticks;

static void on_alarm(int sig)
{
	ticks++;
}

int main(void)
{
	struct itimerval it = {
		.it_interval = {.tv_usec = INTERVAL_US},
		.it_value = {.tv_usec = INTERVAL_US},
	};
	struct sigaction sa = {.sa_handler = on_alarm, .sa_flags = SA_RESTART};
	unsigned long at_ready, c1, c2;
	uint64_t t1, t2;
	double rate;

	tl_init();
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGALRM, &sa, NULL))
		tl_fail("sigaction: %m");
	if (setitimer(ITIMER_REAL, &it, NULL))
		tl_fail("setitimer: %m");
	/* See it fire once before declaring the state built. */
	while (!ticks)
		tl_sleep_until(tl_now_ns() + 10 * TL_NSEC_PER_MSEC);
	at_ready = ticks;
	tl_ready();
	tl_wait_term();

	if (getitimer(ITIMER_REAL, &it))
		tl_fail("getitimer: %m");
	tl_expect(it.it_interval.tv_sec == 0 && it.it_interval.tv_usec == INTERVAL_US,
		  "interval is %ld.%06ld s", (long)it.it_interval.tv_sec,
		  (long)it.it_interval.tv_usec);
	tl_expect(it.it_value.tv_sec || it.it_value.tv_usec, "the timer is disarmed");
	tl_expect(it.it_value.tv_sec == 0 && it.it_value.tv_usec <= INTERVAL_US,
		  "next expiry in %ld.%06ld s", (long)it.it_value.tv_sec,
		  (long)it.it_value.tv_usec);

	c1 = ticks;
	t1 = tl_now_ns();
	tl_sleep_until(t1 + MEASURE_NS);
	c2 = ticks;
	t2 = tl_now_ns();
	rate = (c2 - c1) * 1e9 / (t2 - t1);
	tl_log("%lu ticks at ready, %lu at SIGTERM, %.1f/s after", at_ready, c1, rate);
	tl_expect(c1 >= at_ready, "tick count went back from %lu to %lu", at_ready, c1);
	tl_expect(rate >= 7 && rate <= 13, "firing at %.1f/s, not about 10/s", rate);
	tl_done();
}
