/* SPDX-License-Identifier: MIT */
/*
 * Tracing a task from outside, and executing system calls in it ("remote syscalls"): its
 * registers are pointed at a `syscall` instruction that already exists in its address space
 * (in the vdso), it runs exactly that one instruction between a syscall-entry and a
 * syscall-exit stop, and its registers are put back.  Nothing is injected.
 */
#ifndef CREST_PTRACE_H
#define CREST_PTRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/user.h>

/* Seize a task and bring it to a PTRACE_EVENT_STOP; signals that arrive meanwhile are
 * delivered (handlers set up) exactly as if we had not been there. */
int ptrace_seize_stop(pid_t tid, bool exitkill);
/* The same in two halves, for tasks frozen by a cgroup: they stop once thawed. */
int ptrace_seize_nowait(pid_t tid);
int ptrace_wait_seized(pid_t tid);
/* From any ptrace stop, get to a PTRACE_EVENT_STOP: the only stop from which the kernel's
 * syscall restart logic runs on the registers we set before detaching. */
int ptrace_to_event_stop(pid_t tid);
int ptrace_detach(pid_t tid);

int ptrace_get_regs(pid_t tid, struct user_regs_struct *regs);
int ptrace_set_regs(pid_t tid, const struct user_regs_struct *regs);
/* NT_X86_XSTATE; *buf is malloc'ed. */
int ptrace_get_xsave(pid_t tid, void **buf, size_t *len);
int ptrace_set_xsave(pid_t tid, const void *buf, size_t len);

struct rsys {
	pid_t tid;
	unsigned long ip;	      /* address of a `syscall` instruction in the task */
	struct user_regs_struct regs; /* template for every call */
	unsigned long scratch;	      /* remote scratch memory (0 when none) */
	size_t scratch_len;
	bool failed; /* tracing broke: the task is gone or unusable */
	unsigned long nr_calls;
};

/* Find a `syscall` instruction in [start, end) of the task's memory (its vdso). */
int rsys_find_ip(struct rsys *rs, unsigned long start, unsigned long end);

/* Execute syscall nr in the task: returns its result (-errno on failure).  When the
 * tracing itself fails, rs->failed is set, the reason logged and -ESRCH returned. */
long rsys_call(struct rsys *rs, long nr, unsigned long a1, unsigned long a2, unsigned long a3,
	       unsigned long a4, unsigned long a5, unsigned long a6);
/*
 * The same in two halves: start it (0, or -1 with rs->failed set) and let the task run it
 * while crest does other things, then wait for its result.  Nothing else may be asked of the
 * task in between.
 */
int rsys_start(struct rsys *rs, long nr, unsigned long a1, unsigned long a2, unsigned long a3,
	       unsigned long a4, unsigned long a5, unsigned long a6);
long rsys_finish(struct rsys *rs);
#define rsys0(rs, nr) rsys_call(rs, nr, 0, 0, 0, 0, 0, 0)
#define rsys1(rs, nr, a) rsys_call(rs, nr, (unsigned long)(a), 0, 0, 0, 0, 0)
#define rsys2(rs, nr, a, b) rsys_call(rs, nr, (unsigned long)(a), (unsigned long)(b), 0, 0, 0, 0)
#define rsys3(rs, nr, a, b, c) \
	rsys_call(rs, nr, (unsigned long)(a), (unsigned long)(b), (unsigned long)(c), 0, 0, 0)
#define rsys4(rs, nr, a, b, c, d)                                                     \
	rsys_call(rs, nr, (unsigned long)(a), (unsigned long)(b), (unsigned long)(c), \
		  (unsigned long)(d), 0, 0)
#define rsys5(rs, nr, a, b, c, d, e)                                                  \
	rsys_call(rs, nr, (unsigned long)(a), (unsigned long)(b), (unsigned long)(c), \
		  (unsigned long)(d), (unsigned long)(e), 0)
#define rsys6(rs, nr, a, b, c, d, e, f)                                               \
	rsys_call(rs, nr, (unsigned long)(a), (unsigned long)(b), (unsigned long)(c), \
		  (unsigned long)(d), (unsigned long)(e), (unsigned long)(f))

/* Map / unmap an anonymous scratch area in the task (at hint, or anywhere when 0). */
int rsys_scratch_map(struct rsys *rs, unsigned long hint, size_t len);
int rsys_scratch_unmap(struct rsys *rs);
/* Copy to / from the task's memory (any readable/writable mapping). */
int rsys_poke(struct rsys *rs, unsigned long addr, const void *buf, size_t len);
int rsys_peek(struct rsys *rs, unsigned long addr, void *buf, size_t len);
/*
 * Move fd tfd of the task pid (the result of a remote syscall: negative is its error) into
 * crest: crest gets its own copy (pidfd_getfd) and the task's is closed, so the task never
 * keeps one of ours.  -1 on failure, tfd closed in the task all the same.
 */
int rsys_take_fd(struct rsys *rs, pid_t pid, long tfd);

/* Run a syscall that blocks (clock_nanosleep), interrupt it once it sleeps, and return its
 * result: used to leave a kernel restart_block behind. */
long rsys_call_interrupted(struct rsys *rs, long nr, unsigned long a1, unsigned long a2,
			   unsigned long a3, unsigned long a4);

#endif
