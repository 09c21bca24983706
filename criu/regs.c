// SPDX-License-Identifier: MIT
/*
 * Registers, FPU/SSE/AVX state, and syscall restart.
 *
 * A task interrupted inside a blocking syscall carries -ERESTART* in ax and the syscall
 * number in orig_ax; the kernel turns that into a restart when the task leaves a stop inside
 * signal delivery, which is where restore leaves it (a PTRACE_EVENT_STOP) before detaching.
 * -ERESTART_RESTARTBLOCK restarts through the task's kernel restart_block, which a new task
 * does not have: for nanosleep/clock_nanosleep the kernel wrote the time left into the
 * caller's rem buffer, and restore plants a fresh restart_block by running the same sleep
 * for that time in the task and interrupting it.  Other such syscalls (poll, select and futex
 * waits with a timeout) come back with EINTR, as after a signal.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>

#include "internal.h"
#include "log.h"

#define ERESTARTSYS 512
#define ERESTARTNOINTR 513
#define ERESTARTNOHAND 514
#define ERESTART_RESTARTBLOCK 516

/* image field, glibc's struct user_regs_struct field */
#define REGS_FIELDS(X)                                                                        \
	X(r15, r15)                                                                           \
	X(r14, r14) X(r13, r13) X(r12, r12) X(bp, rbp) X(bx, rbx) X(r11, r11) X(r10, r10)     \
		X(r9, r9) X(r8, r8) X(ax, rax) X(cx, rcx) X(dx, rdx) X(si, rsi) X(di, rdi)    \
			X(orig_ax, orig_rax) X(ip, rip) X(cs, cs) X(flags, eflags) X(sp, rsp) \
				X(ss, ss) X(fs_base, fs_base) X(gs_base, gs_base) X(ds, ds)   \
					X(es, es) X(fs, fs) X(gs, gs)

static void regs_to_entry(const struct user_regs_struct *r, UserRegsX86Entry *e)
{
#define X(img, u) e->img = r->u;
	REGS_FIELDS(X)
#undef X
}

static void entry_to_regs(const UserRegsX86Entry *e, struct user_regs_struct *r)
{
#define X(img, u) r->u = e->img;
	REGS_FIELDS(X)
#undef X
}

/* The time a sleep still had to run, from the rem buffer the kernel filled on interrupt. */
static int dump_sleep_restart(struct dump_ctx *d, struct dump_thread *t)
{
	const struct user_regs_struct *r = &t->regs;
	unsigned long rem;
	uint32_t clockid;
	struct timespec ts;
	SleepRestartEntry *e;

	if ((long)r->rax != -ERESTART_RESTARTBLOCK)
		return 0;
	if (r->orig_rax == SYS_nanosleep) {
		rem = r->rsi;
		clockid = CLOCK_MONOTONIC;
	} else if (r->orig_rax == SYS_clock_nanosleep) {
		rem = r->r10;
		clockid = r->rdi;
	} else {
		pr_info("thread %d was in syscall %llu: it will see EINTR after restore", t->tid,
			(unsigned long long)r->orig_rax);
		return 0;
	}
	if (!rem) {
		pr_info("thread %d sleeps without a rem buffer: its sleep ends with EINTR", t->tid);
		return 0;
	}
	if (rsys_peek(&t->rs, rem, &ts, sizeof(ts)))
		return -1;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -1;
	sleep_restart_entry__init(e);
	e->clockid = clockid;
	e->remaining_ns = ts.tv_sec * 1000000000ULL + ts.tv_nsec;
	t->core->sleep_restart = e;
	return 0;
}

int regs_dump(struct dump_ctx *d, struct dump_thread *t)
{
	ThreadCoreEntry *c = t->core;
	void *xsave;
	size_t len;

	c->regs = calloc(1, sizeof(*c->regs));
	if (!c->regs)
		return -1;
	user_regs_x86_entry__init(c->regs);
	regs_to_entry(&t->regs, c->regs);
	if (ptrace_get_xsave(t->tid, &xsave, &len))
		return -1;
	c->has_xsave = true;
	c->xsave.data = xsave;
	c->xsave.len = len;
	return dump_sleep_restart(d, t);
}

/* Re-arm an interrupted sleep; returns the register ax value the thread should resume with. */
static int plant_sleep_restart(struct restore_ctx *r, struct restore_thread *th, long *ax)
{
	const ThreadCoreEntry *t = th->core;
	const UserRegsX86Entry *regs = t->regs;
	const SleepRestartEntry *s = t->sleep_restart;
	struct timespec ts = {s->remaining_ns / 1000000000ULL, s->remaining_ns % 1000000000ULL};
	unsigned long rem = regs->orig_ax == SYS_nanosleep ? regs->si : regs->r10;
	long ret;

	if (rsys_poke(&th->rs, th->rs.scratch, &ts, sizeof(ts)))
		return -1;
	ret = rsys_call_interrupted(&th->rs, SYS_clock_nanosleep, s->clockid, 0, th->rs.scratch,
				    rem);
	if (ret == -ERESTART_RESTARTBLOCK || ret == 0) {
		*ax = ret; /* 0: the time was already up */
		return 0;
	}
	pr_err("cannot re-arm the sleep of %d (%ld)", th->tid, ret);
	return -1;
}

/* Uses scratch memory: run before it is unmapped.  Computes the final registers. */
int regs_prepare_restart(struct restore_ctx *r, struct restore_thread *th)
{
	const ThreadCoreEntry *t = th->core;
	struct user_regs_struct *out = &th->regs;
	long ax;

	entry_to_regs(t->regs, out);
	ax = (long)out->rax;
	if (ax != -ERESTART_RESTARTBLOCK)
		return 0;
	if (t->sleep_restart) {
		if (plant_sleep_restart(r, th, &ax))
			return -1;
		if (ax == 0) {
			out->rax = 0;
			out->orig_rax = -1;
		}
		return 0;
	}
	out->rax = -EINTR;
	return 0;
}

/* From the final event-stop: the restart logic runs on these as the thread leaves it. */
int regs_restore(struct restore_thread *th)
{
	const ThreadCoreEntry *t = th->core;

	if (t->has_xsave && ptrace_set_xsave(th->tid, t->xsave.data, t->xsave.len))
		return -1;
	return ptrace_set_regs(th->tid, &th->regs);
}
