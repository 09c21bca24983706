// SPDX-License-Identifier: MIT
/*
 * Interval timers (setitimer) and POSIX timers (timer_create), read and re-armed by remote
 * syscalls in the task.  Each timer keeps its
 * remaining time and interval; POSIX timers keep their ids (PR_TIMER_CREATE_RESTORE_IDS,
 * Linux 6.15; older kernels hand out ids in order from 0, so we create and drop fillers).
 */
#include <errno.h>
#include <stddef.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "log.h"

#ifndef PR_TIMER_CREATE_RESTORE_IDS
#define PR_TIMER_CREATE_RESTORE_IDS 77 /* Linux 6.15 */
#define PR_TIMER_CREATE_RESTORE_IDS_OFF 0
#define PR_TIMER_CREATE_RESTORE_IDS_ON 1
#endif

#define NSEC 1000000000ULL

static uint64_t ts_ns(const struct timespec *ts)
{
	return ts->tv_sec * NSEC + ts->tv_nsec;
}

static struct timespec ns_ts(uint64_t ns)
{
	return (struct timespec){.tv_sec = ns / NSEC, .tv_nsec = ns % NSEC};
}

static int dump_itimers(struct dump_ctx *d)
{
	d->core->itimers = calloc(3, sizeof(*d->core->itimers));
	if (!d->core->itimers)
		return -1;
	for (int which = ITIMER_REAL; which <= ITIMER_PROF; which++) {
		struct itimerval it;
		long ret = rsys2(&d->rs, SYS_getitimer, which, d->rs.scratch);
		ItimerEntry *e;

		if (ret || rsys_peek(&d->rs, d->rs.scratch, &it, sizeof(it))) {
			pr_err("cannot read interval timer %d of %d (%ld)", which, d->pid, ret);
			return -1;
		}
		/*
		 * Disarmed only when both are zero: a periodic timer whose expiry signal is
		 * still pending is re-armed by the kernel when the signal is delivered, and
		 * reads as 0 until then.
		 */
		if (!it.it_value.tv_sec && !it.it_value.tv_usec && !it.it_interval.tv_sec &&
		    !it.it_interval.tv_usec)
			continue;
		e = calloc(1, sizeof(*e));
		if (!e)
			return -1;
		itimer_entry__init(e);
		e->which = which;
		e->interval_us = it.it_interval.tv_sec * 1000000ULL + it.it_interval.tv_usec;
		e->value_us = it.it_value.tv_sec * 1000000ULL + it.it_value.tv_usec;
		d->core->itimers[d->core->n_itimers++] = e;
	}
	return 0;
}

static int dump_posix_timers(struct dump_ctx *d)
{
	struct vec timers = VEC_INIT(struct proc_timer);
	int ret = -1;

	if (proc_parse_timers(d->pid, &timers))
		goto out;
	d->core->posix_timers = calloc(timers.len + 1, sizeof(*d->core->posix_timers));
	if (!d->core->posix_timers)
		goto out;
	for (size_t i = 0; i < timers.len; i++) {
		const struct proc_timer *t = vec_at(&timers, struct proc_timer, i);
		struct itimerspec its;
		long r = rsys2(&d->rs, SYS_timer_gettime, t->id, d->rs.scratch);
		PosixTimerEntry *e;

		if (r || rsys_peek(&d->rs, d->rs.scratch, &its, sizeof(its))) {
			pr_err("cannot read POSIX timer %d of %d (%ld)", t->id, d->pid, r);
			goto out;
		}
		e = calloc(1, sizeof(*e));
		if (!e)
			goto out;
		posix_timer_entry__init(e);
		e->id = t->id;
		e->clockid = t->clockid;
		e->sigev_notify = t->notify;
		e->sigev_signo = t->signo;
		e->sigev_value = t->sigev_value;
		e->has_notify_tid = true;
		e->notify_tid = t->notify_tid;
		e->interval_ns = ts_ns(&its.it_interval);
		e->value_ns = ts_ns(&its.it_value);
		d->core->posix_timers[d->core->n_posix_timers++] = e;
	}
	ret = 0;
out:
	vec_free(&timers);
	return ret;
}

int timers_dump(struct dump_ctx *d)
{
	return dump_itimers(d) || dump_posix_timers(d) ? -1 : 0;
}

/* timer_create in the task; returns the id it got, or -1. */
static int create_timer(struct restore_ctx *r, const PosixTimerEntry *e, int notify)
{
	struct {
		struct sigevent sev;
		int id;
	} arg;
	struct rsys *rs = &r->rs;
	long ret;

	memset(&arg, 0, sizeof(arg));
	arg.sev.sigev_notify = notify;
	arg.sev.sigev_signo = e->sigev_signo;
	arg.sev.sigev_value.sival_ptr = (void *)(uintptr_t)e->sigev_value;
	if (notify == SIGEV_THREAD_ID)
		arg.sev._sigev_un._tid = e->notify_tid;
	arg.id = e->id; /* the id wanted, with PR_TIMER_CREATE_RESTORE_IDS */
	if (rsys_poke(rs, rs->scratch, &arg, sizeof(arg)))
		return -1;
	ret = rsys3(rs, SYS_timer_create, e->clockid, rs->scratch,
		    rs->scratch + offsetof(typeof(arg), id));
	if (rcheck(r, "timer_create", ret) ||
	    rsys_peek(rs, rs->scratch + offsetof(typeof(arg), id), &arg.id, sizeof(int)))
		return -1;
	return arg.id;
}

static int restore_itimers(struct restore_ctx *r)
{
	struct rsys *rs = &r->rs;

	for (int which = ITIMER_REAL; which <= ITIMER_PROF; which++) {
		struct itimerval it = {0};

		/* a forked task starts with none; the root could inherit nothing either */
		for (size_t i = 0; i < r->core->n_itimers; i++) {
			const ItimerEntry *e = r->core->itimers[i];

			if (e->which != (uint32_t)which)
				continue;
			it.it_interval = (struct timeval){e->interval_us / 1000000,
							  e->interval_us % 1000000};
			/* expired with its signal pending: the next period starts now */
			uint64_t value = e->value_us ? e->value_us : e->interval_us;

			it.it_value = (struct timeval){value / 1000000, value % 1000000};
		}
		if (!it.it_value.tv_sec && !it.it_value.tv_usec)
			continue;
		if (rsys_poke(rs, rs->scratch, &it, sizeof(it)) ||
		    rcheck(r, "setitimer", rsys3(rs, SYS_setitimer, which, rs->scratch, 0)))
			return -1;
	}
	return 0;
}

int timers_restore(struct restore_ctx *r)
{
	const TaskCoreEntry *core = r->core;
	struct rsys *rs = &r->rs;
	size_t n = core->n_posix_timers, order[n + 1];
	int next = 0, fillers[64], nfill = 0;
	bool exact;

	if (restore_itimers(r))
		return -1;
	if (!n)
		return 0;
	exact = !rsys5(rs, SYS_prctl, PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_ON,
		       0, 0, 0);
	/*
	 * /proc/PID/timers lists the newest timer first: create them oldest first so the list
	 * reads the same.  Without exact ids, ids come in order: create them by id, with
	 * fillers for the gaps, dropped after.
	 */
	for (size_t i = 0; i < n; i++)
		order[i] = n - 1 - i;
	for (size_t i = 1; !exact && i < n; i++) /* insertion sort by id: a handful of timers */
		for (size_t j = i; j > 0 && core->posix_timers[order[j - 1]]->id >
						    core->posix_timers[order[j]]->id;
		     j--) {
			size_t t = order[j];

			order[j] = order[j - 1];
			order[j - 1] = t;
		}
	for (size_t i = 0; i < n; i++) {
		const PosixTimerEntry *e = core->posix_timers[order[i]];
		/* a periodic timer waiting for its signal's delivery to re-arm reads as 0 */
		struct itimerspec its = {ns_ts(e->interval_ns),
					 ns_ts(e->value_ns ? e->value_ns : e->interval_ns)};
		int id;

		while (!exact && next < e->id) {
			id = create_timer(r, e, SIGEV_NONE);
			if (id != next || nfill == (int)ARRAY_SIZE(fillers)) {
				pr_err("cannot recreate POSIX timer %d of %d", e->id, r->pid);
				return -1;
			}
			fillers[nfill++] = id;
			next++;
		}
		id = create_timer(r, e, e->sigev_notify);
		if (id != e->id) {
			pr_err("cannot recreate POSIX timer %d of %d (got %d)", e->id, r->pid, id);
			return -1;
		}
		next = id + 1;
		if (rsys_poke(rs, rs->scratch, &its, sizeof(its)) ||
		    rcheck(r, "timer_settime", rsys4(rs, SYS_timer_settime, id, 0, rs->scratch, 0)))
			return -1;
	}
	for (int i = 0; i < nfill; i++)
		rsys1(rs, SYS_timer_delete, fillers[i]);
	if (exact)
		rsys5(rs, SYS_prctl, PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_OFF,
		      0, 0, 0);
	return 0;
}
