// SPDX-License-Identifier: MIT
/*
 * timerfds:
 *
 *   10  CLOCK_MONOTONIC, every 100 ms
 *   11  CLOCK_MONOTONIC, one shot 3 s after it was armed
 *   12  CLOCK_MONOTONIC, armed and disarmed again, TFD_NONBLOCK
 *   13  CLOCK_MONOTONIC, one shot 10 ms out that expired before the dump and was not read
 *   14  CLOCK_REALTIME, TFD_TIMER_ABSTIME at an absolute time 6 s after it was armed
 *   15  CLOCK_BOOTTIME, every 250 ms
 *   16  CLOCK_MONOTONIC, every 1 ms: the task is frozen for some ms at least, so its tick count
 *       shows whether the expiries while frozen were counted
 *
 * The periodic ones are read once before the dump, which tells their phase: timerfd_gettime()
 * between two clock_gettime() calls gives the absolute time of the next expiry, and the ones
 * after it follow at whole periods.  After SIGTERM the fd table must be as it was, fdinfo must
 * show the same clock and interval, and the timers must keep their schedule:
 *
 *   - a periodic timer's tick count covers every expiry since that read, those while it was
 *     frozen included (within 2), and the next expiry timerfd_gettime() tells is on the phase
 *     (within 3 ms); the 100 ms one then wakes three blocking reads on the phase (within
 *     20 ms: the scheduler has its part), one tick each
 *   - the one-shot timer is due 3 s after it was armed (within 3 ms), and fires then (within
 *     20 ms), once
 *   - the disarmed one is disarmed and says EAGAIN; the expired one gives its one tick
 *   - the CLOCK_REALTIME one is still due at its absolute time (within 3 ms)
 *
 * The dump and restore must take less than the 3 s of the one-shot timer for its moment to be
 * checked; when they take longer it must simply have fired.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

#define MS TL_NSEC_PER_MSEC
#define SLACK (20 * MS)	     /* for the moment a read returns: the scheduler's part */
#define PHASE_SLACK (3 * MS) /* for an expiry time the kernel reports */
#define PER_NS (100 * MS)
#define BOOT_NS (250 * MS)
#define FAST_NS (1 * MS)
#define ONE_NS (3000 * MS)
#define RT_NS (6000 * MS)
#define EXP_NS (10 * MS)

enum {
	PER = 10,
	ONE,
	OFF,
	EXP,
	RT,
	BOOT,
	FAST,
	TFD_FIRST = PER,
	TFD_LAST = FAST,
};

struct tinfo {
	char clockid[16], interval[64];
};

static struct tinfo info_before[TFD_LAST + 1], info_after[TFD_LAST + 1];

/* A periodic timer and the absolute time (on its clock) of its next expiry after our read. */
struct periodic {
	int fd;
	clockid_t clock;
	uint64_t period, next;
	const char *name;
};

static struct periodic per = {PER, CLOCK_MONOTONIC, PER_NS, 0, "100 ms timer"};
static struct periodic boot = {BOOT, CLOCK_BOOTTIME, BOOT_NS, 0, "250 ms CLOCK_BOOTTIME timer"};
static struct periodic fast = {FAST, CLOCK_MONOTONIC, FAST_NS, 0, "1 ms timer"};
static uint64_t one_due, rt_due;

/* ---- the fd table, compared as a whole ---- */

static struct tl_fdtab fdtab_before, fdtab_after;

/* ---- helpers ---- */

static void move_fd(int fd, int want)
{
	if (fd < 0)
		tl_fail("timerfd for fd %d: %m", want);
	if (fd == want)
		return;
	if (dup2(fd, want) != want)
		tl_fail("dup2 %d to %d: %m", fd, want);
	close(fd);
}

static uint64_t now_on(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return ts.tv_sec * TL_NSEC_PER_SEC + ts.tv_nsec;
}

static uint64_t ts_ns(const struct timespec *ts)
{
	return ts->tv_sec * TL_NSEC_PER_SEC + ts->tv_nsec;
}

static struct timespec ns_ts(uint64_t ns)
{
	return (struct timespec){ns / TL_NSEC_PER_SEC, ns % TL_NSEC_PER_SEC};
}

static double ms(int64_t ns)
{
	return ns / 1e6;
}

static bool readable(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};

	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/*
 * The absolute time of the timer's next expiry on clock, 0 when disarmed; *interval its
 * interval.  The clock is read on both sides of timerfd_gettime(): the midpoint is within a
 * few microseconds of the kernel's "now".
 */
static uint64_t next_expiry(int fd, clockid_t clock, uint64_t *interval)
{
	struct itimerspec its;
	uint64_t a, b;

	a = now_on(clock);
	if (timerfd_gettime(fd, &its))
		tl_fail("timerfd_gettime %d: %m", fd);
	b = now_on(clock);
	if (interval)
		*interval = ts_ns(&its.it_interval);
	if (!ts_ns(&its.it_value))
		return 0;
	return a + (b - a) / 2 + ts_ns(&its.it_value);
}

/* read(2) of a timerfd: the ticks, or 0 with errno set */
static uint64_t ticks_of(int fd)
{
	uint64_t n = 0;

	if (read(fd, &n, sizeof(n)) != sizeof(n))
		return 0;
	return n;
}

/* Signed distance of t from the nearest expiry next + k * period. */
static int64_t off_phase(const struct periodic *p, uint64_t t)
{
	int64_t d = (int64_t)((t - p->next) % p->period);

	if (t < p->next)
		d = -(int64_t)((p->next - t) % p->period);
	if (d > (int64_t)p->period / 2)
		d -= p->period;
	if (d < -(int64_t)p->period / 2)
		d += p->period;
	return d;
}

/* Expiries at next + k * period, k >= 0, that are <= t. */
static int64_t expiries_until(const struct periodic *p, uint64_t t)
{
	return t < p->next ? 0 : (int64_t)((t - p->next) / p->period) + 1;
}

static void get_info(struct tinfo *info)
{
	char path[64], text[1024];

	for (int fd = TFD_FIRST; fd <= TFD_LAST; fd++) {
		snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
		tl_read_file(path, text, sizeof(text));
		if (!tl_status_field(text, "clockid", info[fd].clockid, sizeof(info[fd].clockid)) ||
		    !tl_status_field(text, "it_interval", info[fd].interval,
				     sizeof(info[fd].interval)))
			tl_fail("no clockid or it_interval in %s", path);
	}
}

static void arm(int fd, int flags, uint64_t value, uint64_t interval)
{
	struct itimerspec its = {.it_value = ns_ts(value), .it_interval = ns_ts(interval)};

	if (timerfd_settime(fd, flags, &its, NULL))
		tl_fail("timerfd_settime %d: %m", fd);
}

/* Arm a periodic timer, wait for its first expiry and learn the next one. */
static void start_periodic(struct periodic *p)
{
	uint64_t interval;

	move_fd(timerfd_create(p->clock, 0), p->fd);
	arm(p->fd, 0, p->period, p->period);
	/* a busy machine may deschedule us past more than one period of the 1 ms timer */
	if (ticks_of(p->fd) < 1)
		tl_fail("%s: the first read gave no tick: %m", p->name);
	p->next = next_expiry(p->fd, p->clock, &interval);
	if (!p->next || interval != p->period)
		tl_fail("%s: not armed every %" PRIu64 " ns after its first expiry", p->name,
			p->period);
}

static void build(void)
{
	uint64_t t;

	start_periodic(&per);
	start_periodic(&boot);
	start_periodic(&fast);

	move_fd(timerfd_create(CLOCK_MONOTONIC, 0), ONE);
	arm(ONE, 0, ONE_NS, 0);
	one_due = next_expiry(ONE, CLOCK_MONOTONIC, NULL);

	move_fd(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK), OFF);
	arm(OFF, 0, TL_NSEC_PER_SEC, 0);
	arm(OFF, 0, 0, 0);

	move_fd(timerfd_create(CLOCK_MONOTONIC, 0), EXP);
	arm(EXP, 0, EXP_NS, 0);

	move_fd(timerfd_create(CLOCK_REALTIME, 0), RT);
	rt_due = now_on(CLOCK_REALTIME) + RT_NS;
	arm(RT, TFD_TIMER_ABSTIME, rt_due, 0);

	t = tl_now_ns() + 2 * EXP_NS;
	tl_sleep_until(t);
	if (!readable(EXP))
		tl_fail("the 10 ms timer has not expired after 20 ms");
}

/* Ticks since the read before the dump, and the phase. */
static void check_periodic(struct periodic *p)
{
	uint64_t a, b, n, next, interval;
	int64_t lo, hi, d;

	a = now_on(p->clock);
	n = readable(p->fd) ? ticks_of(p->fd) : 0;
	b = now_on(p->clock);
	lo = expiries_until(p, a) - 2;
	hi = expiries_until(p, b) + 2;
	tl_log("%s: %" PRIu64 " ticks %.1f ms after the expiry before the dump", p->name, n,
	       ms(b - p->next));
	tl_expect((int64_t)n >= lo && (int64_t)n <= hi,
		  "%s: %" PRIu64 " ticks %.1f ms after the first expiry counted, expected %" PRId64
		  "..%" PRId64,
		  p->name, n, ms(b - p->next), lo + 2, hi - 2);
	next = next_expiry(p->fd, p->clock, &interval);
	tl_expect(interval == p->period, "%s: interval %" PRIu64 " ns", p->name, interval);
	if (!tl_expect(next, "%s: disarmed", p->name))
		return;
	d = off_phase(p, next);
	tl_expect(d >= -(int64_t)PHASE_SLACK && d <= (int64_t)PHASE_SLACK,
		  "%s: next expiry %.3f ms off the phase", p->name, ms(d));
	tl_expect(next > b && next <= b + p->period + SLACK,
		  "%s: next expiry %.3f ms from now, the period is %.0f ms", p->name,
		  ms((int64_t)(next - b)), ms(p->period));
}

/*
 * After a read that takes what has expired, three blocking reads: each returns at an expiry
 * on the phase, with one tick.
 */
static void check_firing(struct periodic *p)
{
	uint64_t n, t;
	int64_t d;

	if (readable(p->fd))
		ticks_of(p->fd);
	for (int i = 0; i < 3; i++) {
		n = ticks_of(p->fd);
		t = now_on(p->clock);
		d = off_phase(p, t);
		tl_expect(n == 1, "%s: read %d after the restore gave %" PRIu64 " ticks (%m)",
			  p->name, i, n);
		tl_expect(d >= -(int64_t)SLACK && d <= (int64_t)SLACK,
			  "%s: read %d after the restore returned %.3f ms off the phase", p->name,
			  i, ms(d));
	}
}

static void check_one_shot(void)
{
	uint64_t now = tl_now_ns(), due, n, t;

	if (now >= one_due) {
		/* the dump and restore took longer than the timer: it must have fired */
		tl_log("one-shot timer: SIGTERM came %.1f ms after it was due", ms(now - one_due));
		n = ticks_of(ONE);
		tl_expect(n == 1, "one-shot timer: %" PRIu64 " ticks after it was due", n);
		return;
	}
	tl_expect(!readable(ONE), "one-shot timer fired %.1f ms early", ms(one_due - now));
	due = next_expiry(ONE, CLOCK_MONOTONIC, NULL);
	if (!tl_expect(due, "one-shot timer is disarmed %.1f ms before it was due",
		       ms(one_due - now)))
		return;
	tl_expect(due + PHASE_SLACK >= one_due && due <= one_due + PHASE_SLACK,
		  "one-shot timer due %.3f ms off its time", ms((int64_t)(due - one_due)));
	n = ticks_of(ONE);
	t = tl_now_ns();
	tl_expect(n == 1, "one-shot timer: %" PRIu64 " ticks", n);
	tl_expect(t + SLACK >= one_due && t <= one_due + SLACK,
		  "one-shot timer fired %.3f ms off its time", ms((int64_t)(t - one_due)));
	tl_expect(!next_expiry(ONE, CLOCK_MONOTONIC, NULL), "one-shot timer re-armed itself");
	tl_expect(!readable(ONE), "one-shot timer readable again");
}

static void check_others(void)
{
	uint64_t n, due, interval;

	tl_expect(!next_expiry(OFF, CLOCK_MONOTONIC, &interval) && !interval,
		  "the disarmed timer is armed");
	errno = 0;
	n = ticks_of(OFF);
	tl_expect(!n && errno == EAGAIN, "the disarmed timer read %" PRIu64 " (%m), not EAGAIN", n);

	tl_expect(readable(EXP), "the expired timer is not readable");
	n = ticks_of(EXP);
	tl_expect(n == 1, "the expired timer read %" PRIu64 " ticks, not 1", n);
	tl_expect(!next_expiry(EXP, CLOCK_MONOTONIC, NULL), "the expired timer is armed again");
	tl_expect(!readable(EXP), "the expired timer is still readable");

	due = next_expiry(RT, CLOCK_REALTIME, &interval);
	tl_expect(due + PHASE_SLACK >= rt_due && due <= rt_due + PHASE_SLACK && !interval,
		  "CLOCK_REALTIME timer due %.3f ms off its absolute time",
		  ms((int64_t)(due - rt_due)));
	tl_expect(!readable(RT), "CLOCK_REALTIME timer fired early");
}

int main(void)
{
	tl_init();
	build();
	tl_fdtab_snap(&fdtab_before);
	get_info(info_before);
	tl_ready();
	tl_wait_term();
	/* the timing first */
	check_periodic(&per);
	check_periodic(&boot);
	check_periodic(&fast);
	tl_fdtab_snap(&fdtab_after);
	get_info(info_after);
	tl_fdtab_compare(&fdtab_before, &fdtab_after, "");
	for (int fd = TFD_FIRST; fd <= TFD_LAST; fd++)
		tl_expect(!strcmp(info_before[fd].clockid, info_after[fd].clockid) &&
				  !strcmp(info_before[fd].interval, info_after[fd].interval),
			  "fd %d: clockid %s it_interval %s, was %s %s", fd, info_after[fd].clockid,
			  info_after[fd].interval, info_before[fd].clockid,
			  info_before[fd].interval);
	check_others();
	check_one_shot();
	check_firing(&per);
	tl_done();
}
