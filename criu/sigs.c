// SPDX-License-Identifier: MIT
/*
 * Signals: dispositions, the blocked mask, pending signals (per thread and shared) and the
 * alternate signal stack, read and set by remote syscalls in the task.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "log.h"

#define SIGINFO_SIZE 128
#define SIGSET_SIZE 8

/* The kernel's view of struct sigaction on x86_64 (not glibc's). */
struct ksigaction {
	uint64_t handler;
	uint64_t flags;
	uint64_t restorer;
	uint64_t mask;
};

struct kstack {
	uint64_t sp;
	int32_t flags;
	int32_t pad;
	uint64_t size;
};

static int dump_pending(struct dump_ctx *d, struct dump_thread *t, bool shared)
{
	for (uint64_t off = 0;; off++) {
		struct __ptrace_peeksiginfo_args args = {
			.off = off,
			.flags = shared ? PTRACE_PEEKSIGINFO_SHARED : 0,
			.nr = 1,
		};
		unsigned char info[SIGINFO_SIZE];
		long n = ptrace(PTRACE_PEEKSIGINFO, t->tid, &args, info);
		ProtobufCBinaryData *slot;
		size_t *count;
		ProtobufCBinaryData **arr;

		if (n < 0) {
			pr_perror("cannot read pending signals of %d", t->tid);
			return -1;
		}
		if (n == 0)
			return 0;
		count = shared ? &d->core->n_shared_pending : &t->core->n_pending;
		arr = shared ? &d->core->shared_pending : &t->core->pending;
		slot = realloc(*arr, (*count + 1) * sizeof(**arr));
		if (!slot)
			return -1;
		*arr = slot;
		slot[*count].data = malloc(SIGINFO_SIZE);
		if (!slot[*count].data)
			return -1;
		memcpy(slot[*count].data, info, SIGINFO_SIZE);
		slot[*count].len = SIGINFO_SIZE;
		(*count)++;
	}
}

int sigs_dump(struct dump_ctx *d)
{
	uint64_t handled = d->status.sig_cgt | d->status.sig_ign;
	long ret;

	d->core->sigactions = calloc(64, sizeof(*d->core->sigactions));
	if (!d->core->sigactions)
		return -1;
	for (int sig = 1; sig <= 64; sig++) {
		struct ksigaction ka;
		SigactionEntry *e;

		/* Default dispositions need no record; SIGKILL/SIGSTOP cannot change. */
		if (!(handled & (1ULL << (sig - 1))) || sig == SIGKILL || sig == SIGSTOP)
			continue;
		ret = rsys4(&d->rs, SYS_rt_sigaction, sig, 0, d->rs.scratch, SIGSET_SIZE);
		if (ret || rsys_peek(&d->rs, d->rs.scratch, &ka, sizeof(ka))) {
			pr_err("cannot read the action of signal %d in %d (%ld)", sig, d->pid, ret);
			return -1;
		}
		e = calloc(1, sizeof(*e));
		if (!e)
			return -1;
		sigaction_entry__init(e);
		e->sig = sig;
		e->handler = ka.handler;
		e->flags = ka.flags;
		e->restorer = ka.restorer;
		e->mask = ka.mask;
		d->core->sigactions[d->core->n_sigactions++] = e;
	}
	return dump_pending(d, dump_thread_at(d, 0), true);
}

/* Per thread: blocked mask, private pending signals, alternate stack. */
int sigs_dump_thread(struct dump_ctx *d, struct dump_thread *t)
{
	struct kstack ss;
	long ret;

	t->core->blocked = t->blocked;
	ret = rsys2(&t->rs, SYS_sigaltstack, 0, t->rs.scratch);
	if (ret || rsys_peek(&t->rs, t->rs.scratch, &ss, sizeof(ss))) {
		pr_err("cannot read the signal stack of %d (%ld)", t->tid, ret);
		return -1;
	}
	if (!(ss.flags & SS_DISABLE)) {
		SigaltstackEntry *e = calloc(1, sizeof(*e));

		if (!e)
			return -1;
		sigaltstack_entry__init(e);
		e->sp = ss.sp;
		e->size = ss.size;
		e->flags = ss.flags & ~SS_ONSTACK; /* a state, not a setting */
		t->core->sigaltstack = e;
	}
	return dump_pending(d, t, false);
}

/*
 * Remote, with every signal blocked in the task: queued signals stay pending until the final
 * mask is set, and nothing is delivered into a half-built task.
 */
static bool sig_recorded(const TaskCoreEntry *core, int sig)
{
	for (size_t i = 0; core && i < core->n_sigactions; i++)
		if (core->sigactions[i]->sig == (uint32_t)sig)
			return true;
	return false;
}

/*
 * A task starts with the actions of whoever forked it: crest (the root) or its restored
 * parent.  Those the image does not record were the default at dump time: put them back, or
 * a child would keep, say, the SIGINT its parent ignores.
 */
static int sigs_reset_inherited(struct restore_ctx *r)
{
	struct ksigaction dfl = {0};
	struct rsys *rs = &r->rs;
	bool poked = false;

	for (int sig = 1; sig <= 64; sig++) {
		struct ksigaction own;
		bool inherited;

		if (sig == SIGKILL || sig == SIGSTOP || sig_recorded(r->core, sig))
			continue;
		/* the kernel's view: glibc hides the signals it keeps for itself */
		if (r->parent)
			inherited = sig_recorded(r->parent->core, sig);
		else
			inherited = !syscall(SYS_rt_sigaction, sig, NULL, &own, SIGSET_SIZE) &&
				    own.handler != (uint64_t)(uintptr_t)SIG_DFL;
		if (!inherited)
			continue;
		if (!poked && rsys_poke(rs, rs->scratch, &dfl, sizeof(dfl)))
			return -1;
		poked = true;
		if (rcheck(r, "rt_sigaction",
			   rsys4(rs, SYS_rt_sigaction, sig, rs->scratch, 0, SIGSET_SIZE)))
			return -1;
	}
	return 0;
}

int sigs_restore(struct restore_ctx *r)
{
	const TaskCoreEntry *core = r->core;
	struct rsys *rs = &r->rs;

	if (sigs_reset_inherited(r))
		return -1;
	for (size_t i = 0; i < core->n_sigactions; i++) {
		const SigactionEntry *e = core->sigactions[i];
		struct ksigaction ka = {e->handler, e->flags, e->restorer, e->mask};

		if (rsys_poke(rs, rs->scratch, &ka, sizeof(ka)) ||
		    rcheck(r, "rt_sigaction",
			   rsys4(rs, SYS_rt_sigaction, e->sig, rs->scratch, 0, SIGSET_SIZE)))
			return -1;
	}
	return 0;
}

/*
 * Signals pending for the whole thread group.  First drop the SIGCHLDs that making its zombie
 * children raised: the task saw those long ago; if one was still pending it is in the image.
 */
int sigs_restore_pending(struct restore_ctx *r)
{
	const TaskCoreEntry *core = r->core;
	struct rsys *rs = &r->rs;
	struct {
		uint64_t set;
		struct timespec zero;
	} arg = {1ULL << (SIGCHLD - 1), {0, 0}};

	if (rsys_poke(rs, rs->scratch, &arg, sizeof(arg)))
		return -1;
	while (rsys4(rs, SYS_rt_sigtimedwait, rs->scratch, 0, rs->scratch + sizeof(uint64_t),
		     SIGSET_SIZE) == SIGCHLD)
		;
	for (size_t i = 0; i < core->n_shared_pending; i++) {
		const siginfo_t *si = (const siginfo_t *)core->shared_pending[i].data;

		if (rsys_poke(rs, rs->scratch, si, SIGINFO_SIZE) ||
		    rcheck(r, "queue a pending signal",
			   rsys3(rs, SYS_rt_sigqueueinfo, r->pid, si->si_signo, rs->scratch)))
			return -1;
	}
	return 0;
}

int sigs_restore_thread(struct restore_ctx *r, struct restore_thread *t)
{
	const ThreadCoreEntry *c = t->core;
	struct rsys *rs = &t->rs;
	struct kstack ss = {.flags = SS_DISABLE};

	if (c->sigaltstack) {
		ss.sp = c->sigaltstack->sp;
		ss.flags = (int32_t)c->sigaltstack->flags;
		ss.size = c->sigaltstack->size;
	}
	/* a task forked from its parent inherits the parent's altstack: always set it */
	if (rsys_poke(rs, rs->scratch, &ss, sizeof(ss)) ||
	    rcheck(r, "sigaltstack", rsys2(rs, SYS_sigaltstack, rs->scratch, 0)))
		return -1;
	for (size_t i = 0; i < c->n_pending; i++) {
		const siginfo_t *si = (const siginfo_t *)c->pending[i].data;

		if (rsys_poke(rs, rs->scratch, si, SIGINFO_SIZE) ||
		    rcheck(r, "queue a pending signal",
			   rsys4(rs, SYS_rt_tgsigqueueinfo, r->pid, t->tid, si->si_signo,
				 rs->scratch)))
			return -1;
	}
	return 0;
}

/* Checked by the engine before the child exists: malformed values fail there, not in it. */
int sigs_validate(const TaskCoreEntry *core)
{
	for (size_t i = 0; i < core->n_sigactions; i++) {
		uint32_t sig = core->sigactions[i]->sig;

		if (sig < 1 || sig > 64 || sig == SIGKILL || sig == SIGSTOP) {
			pr_err("core-%u.img: bad signal number %u", core->pid, sig);
			return -1;
		}
	}
	for (size_t k = 0; k <= core->n_threads; k++) {
		size_t n = k ? core->threads[k - 1]->n_pending : core->n_shared_pending;
		ProtobufCBinaryData *arr = k ? core->threads[k - 1]->pending : core->shared_pending;

		for (size_t i = 0; i < n; i++) {
			const siginfo_t *si = (const siginfo_t *)arr[i].data;

			if (arr[i].len != SIGINFO_SIZE || si->si_signo < 1 || si->si_signo > 64) {
				pr_err("core-%u.img: malformed pending signal", core->pid);
				return -1;
			}
		}
	}
	return 0;
}
