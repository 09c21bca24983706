// SPDX-License-Identifier: MIT
/*
 * crest restore.  crest forks the task with clone3(set_tid) so it gets its old PID.  Until it
 * stops, the child still runs crest's code and sets up everything that does not depend on the
 * address space: fds, session, cwd, umask, name, signal actions, timers, pending signals.
 * Then crest seizes it and, by remote syscalls, replaces its address space with the dumped
 * one, restores mm fields, thread pointers, credentials, the signal mask and registers, and
 * lets it go.  A failure at any point kills the child: nothing half-built survives.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/rseq.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "image.h"
#include "internal.h"
#include "log.h"

#define RSEQ_SIG 0x53053053

int open_images_dir(const char *dir, bool create);

int restore_add_helper(struct restore_ctx *r, int fd)
{
	int nfd = fd_move_above(fd, r->helper_base), *slot;

	if (nfd < 0) {
		pr_perror("cannot move fd above %d", r->helper_base);
		close(fd);
		return -1;
	}
	slot = vec_push(&r->helpers);
	if (!slot) {
		close(nfd);
		return -1;
	}
	*slot = nfd;
	return nfd;
}

static int read_images(struct restore_ctx *r)
{
	ProtobufCMessage *msg;
	struct utsname u;

	if (img_read_one(r->dirfd, IMG_INVENTORY, 0, &inventory_entry__descriptor, &msg))
		return -1;
	r->inv = (InventoryEntry *)msg;
	uname(&u);
	if (r->inv->img_version != IMG_VERSION) {
		pr_err("inventory.img: image version %u, this crest reads %u", r->inv->img_version,
		       IMG_VERSION);
		return -1;
	}
	if (strcmp(r->inv->arch, u.machine)) {
		pr_err("images are for %s, this machine is %s", r->inv->arch, u.machine);
		return -1;
	}
	if (r->inv->has_vdso_sha256) {
		unsigned char digest[32];
		size_t len;

		if (vdso_digest(digest, &len) || r->inv->vdso_sha256.len != sizeof(digest) ||
		    memcmp(digest, r->inv->vdso_sha256.data, sizeof(digest))) {
			pr_err("this kernel's vdso differs from the one the images were dumped on "
			       "(kernel %s): restore on the same kernel",
			       r->inv->kernel_release);
			return -1;
		}
	}
	if (img_read_one(r->dirfd, IMG_PSTREE, 0, &pstree_entry__descriptor, &msg))
		return -1;
	r->pstree = (PstreeEntry *)msg;
	r->pid = r->pstree->pid;
	if (r->pid <= 1 || r->pstree->pid != r->inv->root_pid || r->pstree->n_threads != 1 ||
	    r->pstree->threads[0] != r->pstree->pid) {
		pr_err("pstree.img: unsupported or inconsistent tree (pid %u, %zu threads)",
		       r->pstree->pid, r->pstree->n_threads);
		return -1;
	}
	if (img_read_one(r->dirfd, IMG_CORE, r->pid, &task_core_entry__descriptor, &msg))
		return -1;
	r->core = (TaskCoreEntry *)msg;
	if (r->core->pid != (uint32_t)r->pid || r->core->n_threads != 1 ||
	    !r->core->threads[0]->regs || r->core->creds == NULL) {
		pr_err("core-%d.img: inconsistent with pstree.img", r->pid);
		return -1;
	}
	if (sigs_validate(r->core))
		return -1;
	if (img_read_one(r->dirfd, IMG_MM, r->pid, &mm_entry__descriptor, &msg))
		return -1;
	r->mm = (MmEntry *)msg;
	return 0;
}

static int int_cmp(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* Close every fd of the child that is neither a target fd nor a helper. */
static void child_close_others(const int *keep, size_t n)
{
	unsigned int from = 0;

	for (size_t i = 0; i < n; i++) {
		if ((unsigned int)keep[i] > from)
			syscall(SYS_close_range, from, keep[i] - 1, 0);
		from = keep[i] + 1;
	}
	syscall(SYS_close_range, from, ~0U, 0);
}

/* glibc registered an rseq area in crest's TLS: the new address space will not have it. */
static void child_unregister_rseq(void)
{
	void *area = (char *)__builtin_thread_pointer() + __rseq_offset;
	unsigned int lens[] = { 32, __rseq_size, 20 };

	if (!__rseq_size)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(lens); i++)
		if (!syscall(SYS_rseq, area, lens[i], 1 /* RSEQ_FLAG_UNREGISTER */, RSEQ_SIG))
			return;
}

static void __attribute__((noreturn))
child_fail(int status_fd, const char *step)
{
	char msg[256];
	int n = snprintf(msg, sizeof(msg), "%s: %s", step, strerror(errno));

	write(status_fd, msg, n > 0 ? n : 0);
	_exit(1);
}

static void __attribute__((noreturn))
child_main(struct restore_ctx *r, pid_t parent, int status_fd, int wait_fd, const int *keep,
	   size_t nkeep)
{
	uint64_t all = ~0ULL;
	char c;

	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, NULL, sizeof(all));
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if (getppid() != parent)
		_exit(1);
	child_unregister_rseq();
	if (files_restore_child(r))
		child_fail(status_fd, "fds");
	child_close_others(keep, nkeep);
	if (task_restore_child(r))
		child_fail(status_fd, "task state (session, cwd, umask, name)");
	if (sigs_restore_child(r))
		child_fail(status_fd, "signals");
	if (timers_restore_child(r))
		child_fail(status_fd, "timers");
	c = 0;
	write(status_fd, &c, 1);
	/* crest seizes us here and never lets this read return. */
	for (;;)
		read(wait_fd, &c, 1);
}

static int pid_is_free(pid_t pid)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d", pid);
	if (!access(path, F_OK) || kill(pid, 0) == 0 || errno != ESRCH) {
		pr_err("pid %d is already in use: cannot restore with the same pid", pid);
		return -1;
	}
	return 0;
}

static int spawn_child(struct restore_ctx *r)
{
	int status_pipe[2], wait_pipe[2], *keep;
	struct clone_args args = { .exit_signal = SIGCHLD };
	pid_t tid = r->pid, parent = getpid();
	char msg[257];
	ssize_t n;

	if (pipe2(status_pipe, O_CLOEXEC) || pipe2(wait_pipe, O_CLOEXEC)) {
		pr_perror("pipe");
		return -1;
	}
	/* The child's ends become helpers too, so they survive its fd clean-up. */
	status_pipe[1] = restore_add_helper(r, status_pipe[1]);
	wait_pipe[0] = restore_add_helper(r, wait_pipe[0]);
	if (status_pipe[1] < 0 || wait_pipe[0] < 0)
		return -1;
	keep = calloc(r->fds.len + r->helpers.len + 1, sizeof(int));
	if (!keep)
		return -1;
	size_t nkeep = 0;

	for (size_t i = 0; i < r->fds.len; i++)
		keep[nkeep++] = vec_at(&r->fds, struct fd_plan, i)->fd;
	for (size_t i = 0; i < r->helpers.len; i++)
		keep[nkeep++] = *vec_at(&r->helpers, int, i);
	qsort(keep, nkeep, sizeof(int), int_cmp);

	args.set_tid = (uintptr_t)&tid;
	args.set_tid_size = 1;
	fflush(NULL);
	r->child = syscall(SYS_clone3, &args, sizeof(args));
	if (r->child == 0)
		child_main(r, parent, status_pipe[1], wait_pipe[0], keep, nkeep);
	free(keep);
	close(status_pipe[1]);
	if (r->child < 0) {
		if (errno == EEXIST)
			pr_err("pid %d is already in use: cannot restore with the same pid", r->pid);
		else
			pr_perror("cannot create task %d (clone3 with set_tid)", r->pid);
		close(status_pipe[0]);
		r->child = 0;
		return -1;
	}
	n = read(status_pipe[0], msg, sizeof(msg) - 1);
	close(status_pipe[0]);
	close(wait_pipe[1]);
	if (n == 1 && msg[0] == 0)
		return 0;
	msg[n > 0 ? n : 0] = 0;
	pr_err("restoring %d failed before it stopped: %s", r->pid, n > 0 ? msg : "it died");
	return -1;
}

static int restore_task(struct restore_ctx *r)
{
	struct user_regs_struct regs;
	uint64_t blocked = r->core->threads[0]->blocked;
	long ret;

	if (ptrace_seize_stop(r->child, true))
		return -1;
	r->rs.tid = r->child;
	if (ptrace_get_regs(r->child, &r->rs.regs))
		return -1;
	if (mem_restore(r) || task_restore_late(r) || creds_restore(r) ||
	    task_restore_dumpable(r) || regs_prepare_restart(r, &regs))
		return -1;
	ret = rsys3(&r->rs, SYS_close_range, r->helper_base, ~0U, 0);
	if (ret) {
		pr_err("cannot close crest's fds in %d (%ld)", r->pid, ret);
		return -1;
	}
	if (rsys_scratch_unmap(&r->rs))
		return -1;
	if (ptrace(PTRACE_SETSIGMASK, r->child, sizeof(blocked), &blocked)) {
		pr_perror("cannot set the signal mask of %d", r->pid);
		return -1;
	}
	if (ptrace_to_event_stop(r->child) || regs_restore(r, &regs))
		return -1;
	return ptrace_detach(r->child);
}

static void restore_ctx_free(struct restore_ctx *r)
{
	for (size_t i = 0; i < r->helpers.len; i++)
		close(*vec_at(&r->helpers, int, i));
	vec_free(&r->helpers);
	vec_free(&r->fds);
	for (size_t i = 0; i < r->nr_pagemap; i++)
		pagemap_entry__free_unpacked(r->pagemap[i], NULL);
	free(r->pagemap);
	free(r->vma_fds);
	if (r->pagemap_head)
		pagemap_head__free_unpacked(r->pagemap_head, NULL);
	if (r->mm)
		mm_entry__free_unpacked(r->mm, NULL);
	if (r->core)
		task_core_entry__free_unpacked(r->core, NULL);
	if (r->pstree)
		pstree_entry__free_unpacked(r->pstree, NULL);
	if (r->inv)
		inventory_entry__free_unpacked(r->inv, NULL);
	if (r->dirfd >= 0)
		close(r->dirfd);
}

int crest_restore(const struct crest_opts *opts, pid_t *root_pid)
{
	struct restore_ctx r = {
		.opts = opts,
		.fds = VEC_INIT(struct fd_plan),
		.helpers = VEC_INIT(int),
		.pages_fd = -1,
		.exe_fd = -1,
		.tty_fd = -1,
	};
	struct rlimit nofile;
	uint64_t t0 = now_ns(CLOCK_MONOTONIC);
	int ret = -1;

	error_reset();
	/* Helpers sit above the target's highest fd: allow as many as the hard limit does. */
	if (!getrlimit(RLIMIT_NOFILE, &nofile) && nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &nofile);
	}
	r.dirfd = open_images_dir(opts->images_dir, false);
	if (r.dirfd < 0 || read_images(&r) || pid_is_free(r.pid))
		goto out;
	if (files_restore_prepare(&r) || mem_restore_prepare(&r))
		goto out;
	if (spawn_child(&r) || restore_task(&r))
		goto out;
	pr_info("restored %d: %lu remote syscalls, %.3f ms", r.pid, r.rs.nr_calls,
		(now_ns(CLOCK_MONOTONIC) - t0) / 1e6);
	if (root_pid)
		*root_pid = r.pid;
	r.child = 0;
	ret = 0;
out:
	if (r.child > 0) {
		int status;

		kill(r.child, SIGKILL);
		while (waitpid(r.child, &status, __WALL) < 0 && errno == EINTR)
			;
	}
	restore_ctx_free(&r);
	return ret;
}
