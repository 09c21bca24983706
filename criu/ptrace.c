// SPDX-License-Identifier: MIT
/* ptrace plumbing and remote syscalls. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "ptrace.h"
#include "util.h"

#define XSAVE_MAX (64 << 10)
#define SYSCALL_STOP (SIGTRAP | 0x80) /* PTRACE_O_TRACESYSGOOD */

static int wait_stop(pid_t tid, int *status)
{
	for (;;) {
		pid_t r = waitpid(tid, status, __WALL);

		if (r == tid)
			break;
		if (r < 0 && errno == EINTR)
			continue;
		pr_perror("waitpid(%d)", tid);
		return -1;
	}
	if (WIFEXITED(*status) || WIFSIGNALED(*status)) {
		pr_err("task %d is gone (%s %d)", tid,
		       WIFEXITED(*status) ? "exited with" : "killed by",
		       WIFEXITED(*status) ? WEXITSTATUS(*status) : WTERMSIG(*status));
		return -1;
	}
	return 0;
}

static bool is_event_stop(int status)
{
	return WIFSTOPPED(status) && (status >> 16) == PTRACE_EVENT_STOP;
}

/* Wait for an event-stop; deliver any signal that shows up first, as the kernel would have. */
static int wait_event_stop(pid_t tid)
{
	int status;

	for (;;) {
		if (wait_stop(tid, &status))
			return -1;
		if (is_event_stop(status))
			return 0;
		int sig = 0;

		if ((status >> 16) == 0 && WSTOPSIG(status) != SYSCALL_STOP)
			sig = WSTOPSIG(status); /* signal-delivery-stop: pass it on */
		if (ptrace(PTRACE_CONT, tid, 0, sig)) {
			pr_perror("cannot resume %d", tid);
			return -1;
		}
	}
}

int ptrace_seize_stop(pid_t tid, bool exitkill)
{
	long opts = PTRACE_O_TRACESYSGOOD | (exitkill ? PTRACE_O_EXITKILL : 0);

	if (ptrace(PTRACE_SEIZE, tid, 0, opts)) {
		if (errno == ESRCH)
			pr_err("no such process %d", tid);
		else
			pr_perror("cannot trace %d", tid);
		return -1;
	}
	if (ptrace(PTRACE_INTERRUPT, tid, 0, 0)) {
		pr_perror("cannot interrupt %d", tid);
		ptrace(PTRACE_DETACH, tid, 0, 0);
		return -1;
	}
	if (wait_event_stop(tid)) {
		ptrace(PTRACE_DETACH, tid, 0, 0);
		return -1;
	}
	return 0;
}

int ptrace_seize_nowait(pid_t tid)
{
	if (ptrace(PTRACE_SEIZE, tid, 0, PTRACE_O_TRACESYSGOOD)) {
		if (errno == ESRCH)
			pr_err("no such process %d", tid);
		else
			pr_perror("cannot trace %d", tid);
		return -1;
	}
	if (ptrace(PTRACE_INTERRUPT, tid, 0, 0)) {
		pr_perror("cannot interrupt %d", tid);
		ptrace(PTRACE_DETACH, tid, 0, 0);
		return -1;
	}
	return 0;
}

int ptrace_wait_seized(pid_t tid)
{
	return wait_event_stop(tid);
}

int ptrace_to_event_stop(pid_t tid)
{
	if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) || ptrace(PTRACE_CONT, tid, 0, 0)) {
		pr_perror("cannot re-stop %d", tid);
		return -1;
	}
	return wait_event_stop(tid);
}

int ptrace_detach(pid_t tid)
{
	if (ptrace(PTRACE_DETACH, tid, 0, 0)) {
		pr_perror("cannot detach from %d", tid);
		return -1;
	}
	return 0;
}

int ptrace_get_regs(pid_t tid, struct user_regs_struct *regs)
{
	if (ptrace(PTRACE_GETREGS, tid, 0, regs)) {
		pr_perror("cannot read registers of %d", tid);
		return -1;
	}
	return 0;
}

int ptrace_set_regs(pid_t tid, const struct user_regs_struct *regs)
{
	if (ptrace(PTRACE_SETREGS, tid, 0, regs)) {
		pr_perror("cannot set registers of %d", tid);
		return -1;
	}
	return 0;
}

int ptrace_get_xsave(pid_t tid, void **buf, size_t *len)
{
	struct iovec iov;

	iov.iov_base = malloc(XSAVE_MAX);
	iov.iov_len = XSAVE_MAX;
	if (!iov.iov_base) {
		pr_err("out of memory");
		return -1;
	}
	if (ptrace(PTRACE_GETREGSET, tid, NT_X86_XSTATE, &iov)) {
		pr_perror("cannot read FPU/xsave state of %d", tid);
		free(iov.iov_base);
		return -1;
	}
	*buf = iov.iov_base;
	*len = iov.iov_len;
	return 0;
}

int ptrace_set_xsave(pid_t tid, const void *buf, size_t len)
{
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};

	if (ptrace(PTRACE_SETREGSET, tid, NT_X86_XSTATE, &iov)) {
		pr_perror("cannot set FPU/xsave state of %d", tid);
		return -1;
	}
	return 0;
}

int rsys_find_ip(struct rsys *rs, unsigned long start, unsigned long end)
{
	char path[64];
	unsigned char *buf;
	size_t len = end - start;
	int fd;

	if (!start || end <= start || len > (1 << 20)) {
		pr_err("task %d has no usable vdso to run system calls from", rs->tid);
		return -1;
	}
	snprintf(path, sizeof(path), "/proc/%d/mem", rs->tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	buf = malloc(len);
	if (fd < 0 || !buf || pread(fd, buf, len, start) != (ssize_t)len) {
		pr_perror("cannot read the vdso of %d", rs->tid);
		free(buf);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	for (size_t i = 0; i + 1 < len; i++) {
		if (buf[i] == 0x0f && buf[i + 1] == 0x05) {
			rs->ip = start + i;
			free(buf);
			return 0;
		}
	}
	free(buf);
	pr_err("no syscall instruction in the vdso of %d", rs->tid);
	return -1;
}

static long rsys_fail(struct rsys *rs, const char *what)
{
	pr_perror("remote syscall in %d: %s", rs->tid, what);
	rs->failed = true;
	return -ESRCH;
}

/* Resume to the next syscall stop, passing over nothing else: our tasks have every signal
 * blocked while we drive them, so any other stop is a bug or the task dying. */
static int to_syscall_stop(struct rsys *rs)
{
	int status;

	if (ptrace(PTRACE_SYSCALL, rs->tid, 0, 0))
		return -1;
	if (wait_stop(rs->tid, &status))
		return -1;
	while (is_event_stop(status)) {
		/* A pending PTRACE_INTERRUPT fires first: step over it. */
		if (ptrace(PTRACE_SYSCALL, rs->tid, 0, 0) || wait_stop(rs->tid, &status))
			return -1;
	}
	if (!WIFSTOPPED(status) || WSTOPSIG(status) != SYSCALL_STOP) {
		pr_err("task %d stopped by signal %d during a remote syscall", rs->tid,
		       WSTOPSIG(status));
		errno = EINTR;
		return -1;
	}
	return 0;
}

static int rsys_enter(struct rsys *rs, long nr, const unsigned long *a)
{
	struct user_regs_struct regs = rs->regs;

	if (rs->failed)
		return -1;
	regs.rip = rs->ip;
	regs.rax = nr;
	regs.orig_rax = -1; /* not in a syscall: no restart logic may touch these registers */
	regs.rdi = a[0];
	regs.rsi = a[1];
	regs.rdx = a[2];
	regs.r10 = a[3];
	regs.r8 = a[4];
	regs.r9 = a[5];
	if (ptrace(PTRACE_SETREGS, rs->tid, 0, &regs))
		return -1;
	rs->nr_calls++;
	return to_syscall_stop(rs); /* entry */
}

static long rsys_result(struct rsys *rs)
{
	struct user_regs_struct regs;

	if (ptrace(PTRACE_GETREGS, rs->tid, 0, &regs))
		return rsys_fail(rs, "read result");
	return (long)regs.rax;
}

int rsys_start(struct rsys *rs, long nr, unsigned long a1, unsigned long a2, unsigned long a3,
	       unsigned long a4, unsigned long a5, unsigned long a6)
{
	struct user_regs_struct regs = rs->regs;

	if (rs->failed)
		return -1;
	regs.rip = rs->ip;
	regs.rax = nr;
	regs.orig_rax = -1; /* not in a syscall: no restart logic may touch these registers */
	regs.rdi = a1;
	regs.rsi = a2;
	regs.rdx = a3;
	regs.r10 = a4;
	regs.r8 = a5;
	regs.r9 = a6;
	if (ptrace(PTRACE_SETREGS, rs->tid, 0, &regs)) {
		rsys_fail(rs, "set registers");
		return -1;
	}
	rs->nr_calls++;
	if (ptrace(PTRACE_SINGLESTEP, rs->tid, 0, 0)) {
		rsys_fail(rs, "step");
		return -1;
	}
	return 0;
}

long rsys_finish(struct rsys *rs)
{
	int status;

	if (rs->failed)
		return -ESRCH;
	for (;;) {
		if (wait_stop(rs->tid, &status))
			return rsys_fail(rs, "step");
		/* a pending PTRACE_INTERRUPT, or the fork/clone event of a remote clone3 */
		if (WIFSTOPPED(status) && (status >> 16)) {
			if (ptrace(PTRACE_SINGLESTEP, rs->tid, 0, 0))
				return rsys_fail(rs, "step");
			continue;
		}
		if (WIFSTOPPED(status) && WSTOPSIG(status) == SIGTRAP)
			break;
		pr_err("task %d stopped by signal %d during a remote syscall", rs->tid,
		       WSTOPSIG(status));
		rs->failed = true;
		return -ESRCH;
	}
	return rsys_result(rs);
}

/*
 * One remote syscall costs one stop: single-stepping over the syscall instruction runs the
 * whole syscall and traps right after it (half the round trips of syscall-entry/exit stops).
 */
long rsys_call(struct rsys *rs, long nr, unsigned long a1, unsigned long a2, unsigned long a3,
	       unsigned long a4, unsigned long a5, unsigned long a6)
{
	if (rsys_start(rs, nr, a1, a2, a3, a4, a5, a6))
		return -ESRCH;
	return rsys_finish(rs);
}

long rsys_call_interrupted(struct rsys *rs, long nr, unsigned long a1, unsigned long a2,
			   unsigned long a3, unsigned long a4)
{
	unsigned long a[6] = {a1, a2, a3, a4, 0, 0};
	char path[64], state[256];
	int status;

	if (rsys_enter(rs, nr, a) || ptrace(PTRACE_SYSCALL, rs->tid, 0, 0))
		return rsys_fail(rs, "run");
	/* Wait until it really sleeps in the kernel, then kick it out. */
	snprintf(path, sizeof(path), "/proc/%d/stat", rs->tid);
	for (int i = 0; i < 10000; i++) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		ssize_t n = fd >= 0 ? read(fd, state, sizeof(state) - 1) : -1;
		char *p;

		if (fd >= 0)
			close(fd);
		if (n <= 0)
			break;
		state[n] = 0;
		p = strrchr(state, ')');
		if (p && p[2] == 'S')
			break;
		usleep(10);
	}
	if (ptrace(PTRACE_INTERRUPT, rs->tid, 0, 0) || wait_stop(rs->tid, &status))
		return rsys_fail(rs, "interrupt");
	if (!WIFSTOPPED(status) || WSTOPSIG(status) != SYSCALL_STOP)
		return rsys_fail(rs, "unexpected stop");
	return rsys_result(rs);
}

int rsys_poke(struct rsys *rs, unsigned long addr, const void *buf, size_t len)
{
	struct iovec local = {.iov_base = (void *)buf, .iov_len = len};
	struct iovec remote = {.iov_base = (void *)addr, .iov_len = len};

	if (process_vm_writev(rs->tid, &local, 1, &remote, 1, 0) != (ssize_t)len) {
		pr_perror("cannot write %zu bytes at %#lx in %d", len, addr, rs->tid);
		return -1;
	}
	return 0;
}

int rsys_peek(struct rsys *rs, unsigned long addr, void *buf, size_t len)
{
	struct iovec local = {.iov_base = buf, .iov_len = len};
	struct iovec remote = {.iov_base = (void *)addr, .iov_len = len};

	if (process_vm_readv(rs->tid, &local, 1, &remote, 1, 0) != (ssize_t)len) {
		pr_perror("cannot read %zu bytes at %#lx in %d", len, addr, rs->tid);
		return -1;
	}
	return 0;
}

int rsys_scratch_map(struct rsys *rs, unsigned long hint, size_t len)
{
	/*
	 * Anywhere (a dump): shared, because a shared anonymous mapping never merges with a VMA
	 * next to it, whose line in /proc/PID/smaps must stay what it was (vmaflags.c).
	 */
	long flags = MAP_ANONYMOUS | (hint ? MAP_PRIVATE | MAP_FIXED_NOREPLACE : MAP_SHARED);
	long addr = rsys6(rs, SYS_mmap, hint, len, PROT_READ | PROT_WRITE, flags, -1, 0);

	if (addr < 0 && addr > -4096) {
		errno = -addr;
		pr_perror("cannot map scratch memory in %d", rs->tid);
		return -1;
	}
	if (hint && (unsigned long)addr != hint) {
		pr_err("scratch memory in %d landed at %#lx, not %#lx", rs->tid, addr, hint);
		return -1;
	}
	rs->scratch = addr;
	rs->scratch_len = len;
	return 0;
}

int rsys_scratch_unmap(struct rsys *rs)
{
	long ret;

	if (!rs->scratch)
		return 0;
	ret = rsys2(rs, SYS_munmap, rs->scratch, rs->scratch_len);
	rs->scratch = 0;
	if (ret) {
		errno = -ret;
		pr_perror("cannot unmap scratch memory in %d", rs->tid);
		return -1;
	}
	return 0;
}

int rsys_take_fd(struct rsys *rs, pid_t pid, long tfd)
{
	int pidfd, fd = -1;

	if (tfd < 0) {
		errno = (int)-tfd;
		return -1;
	}
	pidfd = syscall(SYS_pidfd_open, pid, 0);
	if (pidfd >= 0) {
		fd = syscall(SYS_pidfd_getfd, pidfd, (int)tfd, 0);
		close(pidfd);
	}
	rsys1(rs, SYS_close, tfd);
	return fd;
}
