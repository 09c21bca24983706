// SPDX-License-Identifier: MIT
/*
 * POSIX timers: a periodic 50 ms CLOCK_MONOTONIC timer signalling SIGRTMIN+1 with a value, and
 * a second, disarmed CLOCK_REALTIME one, so there are two ids to keep apart.  After SIGTERM
 * both must exist under the same ids (timer_gettime works, /proc/self/timers reads the same),
 * the first with its interval, still firing at about 20 per second with the same value and
 * si_timerid.
 */
#include <string.h>
#include <time.h>

#include "testlib.h"

#define INTERVAL_NS (50 * TL_NSEC_PER_MSEC)
#define MEASURE_NS (1 * TL_NSEC_PER_SEC)
#define VALUE 0xabc

static volatile unsigned long ticks, bad_info;
static volatile int last_timerid;
static char timers_before[4096], timers_after[4096];

static void on_timer(int sig, siginfo_t *si, void *uc)
{
	if (si->si_code != SI_TIMER || si->si_value.sival_int != VALUE)
		bad_info++;
	last_timerid = si->si_timerid;
	ticks++;
}

int main(void)
{
	struct sigevent sev = {
		.sigev_notify = SIGEV_SIGNAL,
		.sigev_value = {.sival_int = VALUE},
	};
	struct itimerspec its = {
		.it_interval = {.tv_nsec = INTERVAL_NS},
		.it_value = {.tv_nsec = INTERVAL_NS},
	};
	struct sigaction sa = {.sa_sigaction = on_timer, .sa_flags = SA_SIGINFO | SA_RESTART};
	timer_t t_mono, t_real;
	int id_at_ready;
	unsigned long at_ready, c1, c2;
	uint64_t t1, t2;
	double rate;

	tl_init();
	sev.sigev_signo = SIGRTMIN + 1;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGRTMIN + 1, &sa, NULL))
		tl_fail("sigaction: %m");
	if (timer_create(CLOCK_REALTIME, &sev, &t_real))
		tl_fail("timer_create: %m");
	if (timer_create(CLOCK_MONOTONIC, &sev, &t_mono))
		tl_fail("timer_create: %m");
	if (timer_settime(t_mono, 0, &its, NULL))
		tl_fail("timer_settime: %m");
	while (ticks < 2)
		tl_sleep_until(tl_now_ns() + 10 * TL_NSEC_PER_MSEC);
	at_ready = ticks;
	id_at_ready = last_timerid;
	tl_read_file("/proc/self/timers", timers_before, sizeof(timers_before));
	tl_log("timer ids %ld and %ld", (long)(intptr_t)t_mono, (long)(intptr_t)t_real);
	tl_ready();
	tl_wait_term();

	tl_read_file("/proc/self/timers", timers_after, sizeof(timers_after));
	if (!tl_expect(!strcmp(timers_before, timers_after), "/proc/self/timers differs")) {
		tl_log("before:\n%s", timers_before);
		tl_log("after:\n%s", timers_after);
	}
	memset(&its, 0, sizeof(its));
	if (tl_expect(!timer_gettime(t_mono, &its), "timer_gettime(monotonic timer): %m")) {
		tl_expect(its.it_interval.tv_sec == 0 && its.it_interval.tv_nsec == INTERVAL_NS,
			  "interval is %ld.%09ld s", (long)its.it_interval.tv_sec,
			  its.it_interval.tv_nsec);
		tl_expect(its.it_value.tv_sec || its.it_value.tv_nsec, "the timer is disarmed");
	}
	memset(&its, 0xff, sizeof(its));
	if (tl_expect(!timer_gettime(t_real, &its), "timer_gettime(realtime timer): %m"))
		tl_expect(!its.it_value.tv_sec && !its.it_value.tv_nsec &&
				  !its.it_interval.tv_sec && !its.it_interval.tv_nsec,
			  "the disarmed timer is armed");

	c1 = ticks;
	t1 = tl_now_ns();
	tl_sleep_until(t1 + MEASURE_NS);
	c2 = ticks;
	t2 = tl_now_ns();
	rate = (c2 - c1) * 1e9 / (t2 - t1);
	tl_log("%lu ticks at ready, %lu at SIGTERM, %.1f/s after", at_ready, c1, rate);
	tl_expect(c1 >= at_ready, "tick count went back from %lu to %lu", at_ready, c1);
	tl_expect(rate >= 15 && rate <= 25, "firing at %.1f/s, not about 20/s", rate);
	tl_expect(!bad_info, "%lu signals with a wrong si_code or si_value", bad_info);
	tl_expect(last_timerid == id_at_ready, "si_timerid %d, was %d", last_timerid, id_at_ready);
	tl_expect(timer_delete(t_mono) == 0 && timer_delete(t_real) == 0, "timer_delete: %m");
	tl_done();
}
