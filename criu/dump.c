// SPDX-License-Identifier: MIT
/*
 * crest dump: freeze the task, read everything, write the images, then kill it (or let it
 * run on).  Whatever fails, the task is put back exactly as it was found: registers, signal
 * mask, no scratch mapping, untraced.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "image.h"
#include "internal.h"
#include "log.h"

int open_images_dir(const char *dir, bool create)
{
	int fd;

	if (!dir) {
		pr_err("no images directory given (-D)");
		return -1;
	}
	if (create && mkdir(dir, 0700) && errno != EEXIST) {
		pr_perror("cannot create images directory %s", dir);
		return -1;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		pr_perror("cannot open images directory %s", dir);
	return fd;
}

/* What we can refuse before touching the task at all. */
static int dump_precheck(struct dump_ctx *d)
{
	char path[64];
	char *children;

	if (d->pid <= 0) {
		pr_err("no process to dump (-t PID)");
		return -1;
	}
	if (d->pid == getpid() || d->pid == getppid()) {
		pr_err("crest cannot dump itself or its parent");
		return -1;
	}
	if (proc_parse_stat(d->pid, &d->stat))
		return -1;
	if (d->stat.state == 'Z' || d->stat.state == 'X') {
		pr_err("process %d is a zombie", d->pid);
		return -1;
	}
	if (d->stat.num_threads != 1) {
		pr_err("process %d has %ld threads: multi-threaded processes are not supported yet",
		       d->pid, d->stat.num_threads);
		return -1;
	}
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", d->pid, d->pid);
	children = read_file_at(AT_FDCWD, path, NULL);
	if (children && children[0]) {
		pr_err("process %d has children (%.40s): process trees are not supported yet",
		       d->pid, children);
		free(children);
		return -1;
	}
	free(children);
	return 0;
}

static int write_inventory(struct dump_ctx *d)
{
	InventoryEntry inv = INVENTORY_ENTRY__INIT;
	struct utsname u;
	const struct proc_vma *vdso = vma_find_special(&d->vmas, "[vdso]");
	const struct proc_vma *vvar = vma_find_special(&d->vmas, "[vvar]");
	const struct proc_vma *vclk = vma_find_special(&d->vmas, "[vvar_vclock]");
	char *boot_id = read_file_at(AT_FDCWD, "/proc/sys/kernel/random/boot_id", NULL);
	int ret;

	uname(&u);
	inv.img_version = IMG_VERSION;
	inv.root_pid = d->pid;
	inv.arch = u.machine;
	inv.kernel_release = u.release;
	inv.crest_version = CREST_VERSION;
	inv.has_dump_realtime_ns = inv.has_dump_monotonic_ns = true;
	inv.dump_realtime_ns = now_ns(CLOCK_REALTIME);
	inv.dump_monotonic_ns = now_ns(CLOCK_MONOTONIC);
	if (boot_id) {
		boot_id[strcspn(boot_id, "\n")] = 0;
		inv.boot_id = boot_id;
	}
	inv.has_vdso_size = inv.has_vvar_size = inv.has_vvar_vclock_size = true;
	inv.vdso_size = vdso ? vdso->end - vdso->start : 0;
	inv.vvar_size = vvar ? vvar->end - vvar->start : 0;
	inv.vvar_vclock_size = vclk ? vclk->end - vclk->start : 0;
	unsigned char digest[32];
	size_t vdso_len;

	/* Same kernel, same vdso: a task's saved return addresses into it stay valid. */
	if (!vdso_digest(digest, &vdso_len) && vdso && vdso_len == vdso->end - vdso->start) {
		inv.has_vdso_sha256 = true;
		inv.vdso_sha256.data = digest;
		inv.vdso_sha256.len = sizeof(digest);
	}
	inv.has_shell_job = true;
	inv.shell_job = d->opts->shell_job;
	if (d->thread->has_xsave) {
		inv.has_xsave_size = true;
		inv.xsave_size = d->thread->xsave.len;
	}
	ret = img_write_one(d->dirfd, IMG_INVENTORY, 0, &inv.base);
	free(boot_id);
	return ret;
}

static int write_pstree(struct dump_ctx *d)
{
	PstreeEntry ps = PSTREE_ENTRY__INIT;
	uint32_t tid = d->pid;

	ps.pid = d->pid;
	ps.ppid = 0;
	ps.pgid = d->stat.pgid;
	ps.sid = d->stat.sid;
	ps.threads = &tid;
	ps.n_threads = 1;
	return img_write_one(d->dirfd, IMG_PSTREE, 0, &ps.base);
}

/* Everything read while the task is frozen. */
static int dump_frozen(struct dump_ctx *d, MmEntry *mm)
{
	const struct proc_vma *vdso;

	if (proc_parse_stat(d->pid, &d->stat) || proc_parse_status(d->pid, &d->status) ||
	    proc_parse_smaps(d->pid, &d->vmas))
		return -1;
	if (d->status.threads != 1) {
		pr_err("process %d started a thread while being dumped", d->pid);
		return -1;
	}
	d->rs.tid = d->pid;
	d->rs.regs = d->regs;
	vdso = vma_find_special(&d->vmas, "[vdso]");
	if (rsys_find_ip(&d->rs, vdso ? vdso->start : 0, vdso ? vdso->end : 0) ||
	    rsys_scratch_map(&d->rs, 0, PAGE_SIZE))
		return -1;
	if (task_dump(d) || creds_dump(d) || sigs_dump(d) || timers_dump(d) || regs_dump(d) ||
	    files_dump(d) || mem_dump(d, mm))
		return -1;
	return 0;
}

/* Put the task back as we found it and let it go. */
static void dump_release(struct dump_ctx *d)
{
	if (d->rs.scratch && !d->rs.failed)
		rsys_scratch_unmap(&d->rs);
	if (ptrace(PTRACE_SETSIGMASK, d->pid, sizeof(d->blocked), &d->blocked))
		pr_perror("cannot restore the signal mask of %d", d->pid);
	if (!ptrace_to_event_stop(d->pid))
		ptrace_set_regs(d->pid, &d->regs);
	ptrace_detach(d->pid);
}

static int dump_kill(struct dump_ctx *d)
{
	int status;

	if (kill(d->pid, SIGKILL)) {
		pr_perror("cannot kill %d after the dump", d->pid);
		return -1;
	}
	/* As its tracer we see it die; its parent reaps it. */
	while (waitpid(d->pid, &status, __WALL) < 0 && errno == EINTR)
		;
	return 0;
}

int crest_dump(const struct crest_opts *opts)
{
	struct dump_ctx d = { .opts = opts, .pid = opts->pid, .vmas = VEC_INIT(struct proc_vma) };
	/* Built with malloc throughout, so protobuf-c can free them as if unpacked. */
	TaskCoreEntry *core = calloc(1, sizeof(*core));
	ThreadCoreEntry *thread = calloc(1, sizeof(*thread));
	ThreadCoreEntry **threads = calloc(1, sizeof(*threads));
	MmEntry *mm = calloc(1, sizeof(*mm));
	uint64_t all = ~0ULL, t0 = now_ns(CLOCK_MONOTONIC), t_frozen = 0;
	bool seized = false;
	int ret = -1;

	error_reset();
	d.dirfd = -1;
	if (!core || !thread || !threads || !mm) {
		pr_err("out of memory");
		free(core);
		free(thread);
		free(threads);
		free(mm);
		return -1;
	}
	task_core_entry__init(core);
	thread_core_entry__init(thread);
	mm_entry__init(mm);
	threads[0] = thread;
	core->threads = threads;
	core->n_threads = 1;
	d.core = core;
	d.thread = thread;
	if (dump_precheck(&d))
		goto out;
	d.dirfd = open_images_dir(opts->images_dir, true);
	if (d.dirfd < 0)
		goto out;
	if (ptrace_seize_stop(d.pid, false))
		goto out;
	seized = true;
	t_frozen = now_ns(CLOCK_MONOTONIC);
	if (ptrace_get_regs(d.pid, &d.regs))
		goto out;
	if (ptrace(PTRACE_GETSIGMASK, d.pid, sizeof(d.blocked), &d.blocked) ||
	    ptrace(PTRACE_SETSIGMASK, d.pid, sizeof(all), &all)) {
		pr_perror("cannot read the signal mask of %d", d.pid);
		goto out;
	}
	core->pid = thread->tid = d.pid;
	if (dump_frozen(&d, mm))
		goto out;
	if (img_write_one(d.dirfd, IMG_CORE, d.pid, &core->base) ||
	    img_write_one(d.dirfd, IMG_MM, d.pid, &mm->base) || write_pstree(&d) ||
	    write_inventory(&d))
		goto out;
	if (opts->leave_running) {
		dump_release(&d);
	} else if (dump_kill(&d)) {
		dump_release(&d);
		goto out;
	}
	seized = false;
	pr_info("dumped %d: %llu pages scanned, %llu written (%llu MiB), %llu zero, %lu remote "
		"syscalls, frozen %.3f ms, total %.3f ms",
		d.pid, (unsigned long long)d.pages_scanned, (unsigned long long)d.pages_written,
		(unsigned long long)(d.bytes_written >> 20), (unsigned long long)d.pages_zero,
		d.rs.nr_calls, (now_ns(CLOCK_MONOTONIC) - t_frozen) / 1e6,
		(now_ns(CLOCK_MONOTONIC) - t0) / 1e6);
	ret = 0;
out:
	if (seized)
		dump_release(&d);
	if (d.dirfd >= 0)
		close(d.dirfd);
	protobuf_c_message_free_unpacked(&core->base, NULL);
	protobuf_c_message_free_unpacked(&mm->base, NULL);
	vec_free(&d.vmas);
	return ret;
}
