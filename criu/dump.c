// SPDX-License-Identifier: MIT
/*
 * crest dump: freeze the whole tree, read everything, write the images, then kill it (or let
 * it run on).  Freezing seizes every thread of a task before looking at its children, so the
 * set of tasks cannot change behind our back.  Whatever fails, every task is put back exactly
 * as it was found: registers, signal masks, no scratch mapping, untraced.
 */
#include <dirent.h>
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
#include "net-lock.h"
#include "page-server.h"
#include "sk-inet.h"

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

static struct dump_ctx *task_new(struct dump_tree *t, pid_t pid, struct dump_ctx *parent)
{
	struct dump_ctx *d = calloc(1, sizeof(*d)), **slot;

	if (!d || !(slot = vec_push(&t->tasks))) {
		free(d);
		pr_err("out of memory");
		return NULL;
	}
	*slot = d;
	d->opts = t->opts;
	d->tree = t;
	d->parent = parent;
	d->dirfd = t->dirfd;
	d->pid = pid;
	d->pidfd = -1;
	d->uffd = -1;
	d->vmas = (struct vec)VEC_INIT(struct proc_vma);
	d->threads = (struct vec)VEC_INIT(struct dump_thread);
	return d;
}

static bool thread_known(const struct dump_ctx *d, pid_t tid)
{
	for (size_t i = 0; i < d->threads.len; i++)
		if (dump_thread_at(d, i)->tid == tid)
			return true;
	return false;
}

/* Seize every thread; list again until no new one shows up (they cannot, once all stop). */
static int seize_threads(struct dump_ctx *d)
{
	char path[64];
	bool found;

	snprintf(path, sizeof(path), "/proc/%d/task", d->pid);
	do {
		DIR *dir = opendir(path);
		struct dirent *de;

		if (!dir) {
			pr_perror("cannot list the threads of %d", d->pid);
			return -1;
		}
		found = false;
		while ((de = readdir(dir))) {
			pid_t tid = atoi(de->d_name);
			struct dump_thread *th;

			if (tid <= 0 || thread_known(d, tid))
				continue;
			/* the leader first, whatever order readdir gives */
			if (!d->threads.len && tid != d->pid)
				continue;
			if (d->tree->frozen_cgroup ? ptrace_seize_nowait(tid)
						   : ptrace_seize_stop(tid, false)) {
				if (tid != d->pid && errno == ESRCH)
					continue; /* a thread that just exited */
				closedir(dir);
				return -1;
			}
			th = vec_push(&d->threads);
			if (!th) {
				ptrace_detach(tid);
				closedir(dir);
				return -1;
			}
			th->tid = tid;
			found = true;
		}
		closedir(dir);
	} while (found);
	return 0;
}

/* Is pid a member of the cgroup (its cgroup.procs)? */
static bool in_cgroup(const char *cg, pid_t pid)
{
	char path[4096], *procs, *p;
	bool found = false;

	snprintf(path, sizeof(path), "%s/cgroup.procs", cg);
	procs = read_file_at(AT_FDCWD, path, NULL);
	for (p = procs; p && *p && !found; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		found = atoi(p) == pid;
	free(procs);
	return found;
}

/* Take one task: a zombie is only recorded, a live one is seized whole. */
static int take_task(struct dump_tree *t, pid_t pid, struct dump_ctx *parent)
{
	struct dump_ctx *d = task_new(t, pid, parent);

	if (!d || proc_parse_stat(pid, &d->stat))
		return -1;
	if (t->frozen_cgroup && !in_cgroup(t->opts->freeze_cgroup, pid)) {
		pr_err("task %d is not in cgroup %s: the freezer cannot hold it", pid,
		       t->opts->freeze_cgroup);
		return -1;
	}
	if (d->stat.state == 'Z' || d->stat.state == 'X') {
		if (!parent) {
			pr_err("process %d is a zombie", pid);
			return -1;
		}
		d->zombie = true;
		d->exit_code = d->stat.exit_code;
		return 0;
	}
	if (!seize_threads(d))
		return 0;
	/*
	 * A child of a frozen parent may still exit while we take it: it is then a zombie its
	 * parent has not reaped, and is dumped as one.
	 */
	if (parent && !proc_parse_stat(pid, &d->stat) &&
	    (d->stat.state == 'Z' || d->stat.state == 'X')) {
		for (size_t i = 0; i < d->threads.len; i++)
			ptrace_detach(dump_thread_at(d, i)->tid);
		d->threads.len = 0;
		d->zombie = true;
		d->exit_code = d->stat.exit_code;
		error_reset();
		return 0;
	}
	return -1;
}

static int take_children(struct dump_tree *t, struct dump_ctx *d)
{
	struct vec children = VEC_INIT(pid_t);
	int ret = 0;

	for (size_t i = 0; !ret && i < d->threads.len; i++) {
		pid_t tid = dump_thread_at(d, i)->tid;

		children.len = 0;
		if (proc_read_children(d->pid, tid, &children)) {
			pr_perror("cannot read /proc/%d/task/%d/children", d->pid, tid);
			ret = -1;
		}
		for (size_t j = 0; !ret && j < children.len; j++)
			ret = take_task(t, *vec_at(&children, pid_t, j), d);
	}
	vec_free(&children);
	return ret;
}

/* Wait for every seized thread's stop (after a cgroup thaw). */
static int wait_seized(struct dump_tree *t)
{
	int ret = 0;

	for (size_t i = 0; i < t->tasks.len; i++) {
		struct dump_ctx *d = *vec_at(&t->tasks, struct dump_ctx *, i);

		for (size_t j = 0; j < d->threads.len; j++)
			if (ptrace_wait_seized(dump_thread_at(d, j)->tid))
				ret = -1;
	}
	return ret;
}

/*
 * Freeze the tree, parents before children.  Without a cgroup, each task's threads are stopped
 * before its children are listed, so no task can appear unseen.  With one, the freezer stops
 * everything first; ptrace stops then come when the cgroup thaws.
 */
static int tree_seize(struct dump_tree *t, pid_t root)
{
	const char *cg = t->opts->freeze_cgroup;
	int ret = -1;

	if (cg && freezer_freeze(cg))
		return -1;
	t->frozen_cgroup = cg;
	if (take_task(t, root, NULL))
		goto out;
	for (size_t i = 0; i < t->tasks.len; i++) {
		struct dump_ctx *d = *vec_at(&t->tasks, struct dump_ctx *, i);

		if (!d->zombie && take_children(t, d))
			goto out;
	}
	ret = 0;
out:
	if (cg) {
		if (freezer_thaw(cg))
			ret = -1;
		if (wait_seized(t))
			ret = -1;
	}
	return ret;
}

/* Put one task back as we found it and let it go. */
static void task_release(struct dump_ctx *d)
{
	if (d->rs.scratch && !d->rs.failed)
		rsys_scratch_unmap(&d->rs);
	for (size_t i = 0; i < d->threads.len; i++) {
		struct dump_thread *th = dump_thread_at(d, i);

		if (th->masked &&
		    ptrace(PTRACE_SETSIGMASK, th->tid, sizeof(th->blocked), &th->blocked))
			pr_perror("cannot restore the signal mask of %d", th->tid);
		if (th->rs.regs.rip && !ptrace_to_event_stop(th->tid))
			ptrace_set_regs(th->tid, &th->regs);
		ptrace_detach(th->tid);
	}
}

static void tree_release(struct dump_tree *t)
{
	for (size_t i = 0; i < t->tasks.len; i++)
		task_release(*vec_at(&t->tasks, struct dump_ctx *, i));
}

static int tree_kill(struct dump_tree *t)
{
	int status, ret = 0;

	for (size_t i = 0; i < t->tasks.len; i++) {
		struct dump_ctx *d = *vec_at(&t->tasks, struct dump_ctx *, i);

		if (!d->zombie && kill(d->pid, SIGKILL)) {
			pr_perror("cannot kill %d after the dump", d->pid);
			ret = -1;
		}
	}
	/*
	 * The tree will never run again: its freeze ends here.  What follows is the kernel
	 * tearing it down (freeing its memory: ~90 ms for 1 GiB here), which a dump still waits
	 * for, so that a restore finds the PIDs free; it is reported as teardown.
	 */
	t->t_killed = now_ns(CLOCK_MONOTONIC);
	/*
	 * As their tracer we see every thread die; their parents reap them.  In any order: a pid
	 * namespace's dying init, in whichever of its threads exits last, waits until every
	 * other thread and task in the namespace is gone, which for a traced one means until we
	 * took its death, so no single thread may be waited for first.
	 */
	for (size_t left = 1; left;) {
		left = 0;
		for (size_t i = t->tasks.len; i-- > 0;) {
			struct dump_ctx *d = *vec_at(&t->tasks, struct dump_ctx *, i);

			for (size_t j = d->threads.len; j-- > 0;) {
				struct dump_thread *th = dump_thread_at(d, j);
				pid_t r;

				if (th->gone)
					continue;
				r = waitpid(th->tid, &status, __WALL | WNOHANG);
				if (r == th->tid || (r < 0 && errno == ECHILD))
					th->gone = true;
				else
					left++;
			}
		}
		if (left)
			usleep(200);
	}
	return ret;
}

/* Registers and masks of every thread; every signal blocked while we work. */
static int stop_threads(struct dump_ctx *d)
{
	uint64_t all = ~0ULL;

	for (size_t i = 0; i < d->threads.len; i++) {
		struct dump_thread *th = dump_thread_at(d, i);

		if (ptrace_get_regs(th->tid, &th->regs))
			return -1;
		if (ptrace(PTRACE_GETSIGMASK, th->tid, sizeof(th->blocked), &th->blocked) ||
		    ptrace(PTRACE_SETSIGMASK, th->tid, sizeof(all), &all)) {
			pr_perror("cannot read the signal mask of %d", th->tid);
			return -1;
		}
		th->masked = true;
		th->rs.tid = th->tid;
		th->rs.regs = th->regs;
	}
	return 0;
}

static int dump_threads(struct dump_ctx *d)
{
	TaskCoreEntry *core = d->core;

	core->threads = calloc(d->threads.len, sizeof(*core->threads));
	if (!core->threads)
		return -1;
	for (size_t i = 0; i < d->threads.len; i++) {
		struct dump_thread *th = dump_thread_at(d, i);

		th->core = calloc(1, sizeof(*th->core));
		if (!th->core)
			return -1;
		thread_core_entry__init(th->core);
		core->threads[core->n_threads++] = th->core;
		th->core->tid = th->tid;
		/* every thread runs syscalls at the same vdso address, in the same scratch */
		th->rs.ip = d->rs.ip;
		th->rs.scratch = d->rs.scratch;
		th->rs.scratch_len = d->rs.scratch_len;
		if (regs_dump(d, th) || sigs_dump_thread(d, th) || task_dump_thread(d, th))
			return -1;
	}
	return 0;
}

/* The previous round's pagemap of this task: what "unchanged" pages can point at. */
static int load_prev_runs(struct dump_ctx *d)
{
	struct cr_img *img;
	ProtobufCMessage *msg;
	size_t cap = 0;
	int n;

	char name[64];

	img_name(IMG_PAGEMAP, d->pid, name, sizeof(name));
	if (faccessat(d->tree->prev_dirfd, name, F_OK, 0))
		return 0; /* a task new since then: everything is copied */
	img = img_open_read(d->tree->prev_dirfd, IMG_PAGEMAP, d->pid);
	if (!img)
		return -1;
	if (img_read_msg(img, &pagemap_head__descriptor, &msg) != 1) {
		img_close(img);
		return -1;
	}
	protobuf_c_message_free_unpacked(msg, NULL);
	while ((n = img_read_msg(img, &pagemap_entry__descriptor, &msg)) == 1) {
		PagemapEntry *e = (PagemapEntry *)msg;

		if (d->nr_prev_runs == cap) {
			PagemapEntry **nr =
				realloc(d->prev_runs, (cap = cap * 2 + 64) * sizeof(*nr));

			if (!nr) {
				protobuf_c_message_free_unpacked(msg, NULL);
				n = -1;
				break;
			}
			d->prev_runs = nr;
		}
		if (d->nr_prev_runs && e->vaddr < d->prev_runs[d->nr_prev_runs - 1]->vaddr) {
			pr_err("%s: runs out of order", img_path(img));
			protobuf_c_message_free_unpacked(msg, NULL);
			n = -1;
			break;
		}
		d->prev_runs[d->nr_prev_runs++] = e;
	}
	img_close(img);
	return n < 0 ? -1 : 0;
}

/* Everything of one live task, read while the tree is frozen. */
static int dump_one(struct dump_ctx *d)
{
	const struct proc_vma *vdso;

	d->core = calloc(1, sizeof(*d->core));
	d->mm = calloc(1, sizeof(*d->mm));
	if (!d->core || !d->mm)
		return -1;
	task_core_entry__init(d->core);
	mm_entry__init(d->mm);
	d->core->pid = d->pid;
	if (stop_threads(d) || proc_parse_stat(d->pid, &d->stat) ||
	    proc_parse_status(d->pid, &d->status) || vmaflags_read(d))
		return -1;
	if (d->status.threads != (int)d->threads.len) {
		pr_err("process %d changed its threads while being dumped", d->pid);
		return -1;
	}
	pr_debug("task %d: %zu VMAs read", d->pid, d->vmas.len);
	d->rs = dump_thread_at(d, 0)->rs;
	vdso = vma_find_special(&d->vmas, "[vdso]");
	if (rsys_find_ip(&d->rs, vdso ? vdso->start : 0, vdso ? vdso->end : 0) ||
	    rsys_scratch_map(&d->rs, 0, PAGE_SIZE))
		return -1;
	if (d->tree->prev_dirfd >= 0 && load_prev_runs(d))
		return -1;
	if (d->tree->pre_dump) {
		/* memory only, and tracking armed by the same scan that plans the copy */
		if (track_check(d) || track_arm(d) || mem_dump(d, d->mm))
			return -1;
		return rsys_scratch_unmap(&d->rs);
	}
	if (d->tree->prev_track)
		track_mark(d);
	if (dump_threads(d) || task_dump(d) || creds_dump(d) || sigs_dump(d) || timers_dump(d) ||
	    files_dump(d))
		return -1;
	pr_debug("task %d: threads, state and files saved", d->pid);
	if (mem_dump(d, d->mm) || vmaflags_verify(d))
		return -1;
	pr_debug("task %d: memory saved", d->pid);
	if (rsys_scratch_unmap(&d->rs))
		return -1;
	return img_write_one(d->dirfd, IMG_CORE, d->pid, &d->core->base) ||
			       img_write_one(d->dirfd, IMG_MM, d->pid, &d->mm->base)
		       ? -1
		       : 0;
}

static int write_pstree(struct dump_tree *t)
{
	struct cr_img *img = img_open_write(t->dirfd, IMG_PSTREE, 0);
	int ret = 0;

	if (!img)
		return -1;
	for (size_t i = 0; !ret && i < t->tasks.len; i++) {
		struct dump_ctx *d = *vec_at(&t->tasks, struct dump_ctx *, i);
		PstreeEntry ps = PSTREE_ENTRY__INIT;
		uint32_t tids[d->threads.len + 1], ns_tids[d->threads.len + 1];

		ps.pid = d->pid;
		ps.ppid = d->parent ? d->parent->pid : 0;
		ps.pgid = d->stat.pgid;
		ps.sid = d->stat.sid;
		for (size_t j = 0; j < d->threads.len; j++)
			tids[j] = dump_thread_at(d, j)->tid;
		ps.threads = tids;
		ps.n_threads = d->threads.len;
		if (ns_dump_pids(t, d, &ps, ns_tids)) {
			ret = -1;
			break;
		}
		if (d->zombie) {
			ps.has_zombie = ps.has_exit_status = true;
			ps.zombie = true;
			ps.exit_status = d->exit_code;
		}
		ret = img_write_msg(img, &ps.base);
	}
	if (img_close(img))
		ret = -1;
	return ret;
}

static int write_inventory(struct dump_tree *t)
{
	struct dump_ctx *root = *vec_at(&t->tasks, struct dump_ctx *, 0);
	InventoryEntry inv = INVENTORY_ENTRY__INIT;
	struct utsname u;
	const struct proc_vma *vdso = vma_find_special(&root->vmas, "[vdso]");
	const struct proc_vma *vvar = vma_find_special(&root->vmas, "[vvar]");
	const struct proc_vma *vclk = vma_find_special(&root->vmas, "[vvar_vclock]");
	char *boot_id = read_file_at(AT_FDCWD, "/proc/sys/kernel/random/boot_id", NULL);
	unsigned char digest[32];
	size_t vdso_len;
	int ret;

	uname(&u);
	inv.img_version = IMG_VERSION;
	inv.root_pid = root->pid;
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
	/* Same kernel, same vdso: a task's saved return addresses into it stay valid. */
	if (!vdso_digest(digest, &vdso_len) && vdso && vdso_len == vdso->end - vdso->start) {
		inv.has_vdso_sha256 = true;
		inv.vdso_sha256.data = digest;
		inv.vdso_sha256.len = sizeof(digest);
	}
	inv.has_shell_job = true;
	inv.shell_job = t->opts->shell_job;
	if (t->opts->prev_images_dir)
		inv.parent_dir = (char *)t->opts->prev_images_dir;
	if (t->netlock_made || t->netlock_made6)
		inv.net_lock = (char *)netlock_name(t->netlock_kind);
	if (root->threads.len && dump_thread_at(root, 0)->core &&
	    dump_thread_at(root, 0)->core->has_xsave) {
		inv.has_xsave_size = true;
		inv.xsave_size = dump_thread_at(root, 0)->core->xsave.len;
	}
	ret = img_write_one(t->dirfd, IMG_INVENTORY, 0, &inv.base);
	free(boot_id);
	return ret;
}

static int dump_precheck(const struct crest_opts *opts)
{
	if (opts->pid <= 0) {
		pr_err("no process to dump (-t PID)");
		return -1;
	}
	if (opts->pid == getpid() || opts->pid == getppid()) {
		pr_err("crest cannot dump itself or its parent");
		return -1;
	}
	if (opts->network_lock && netlock_parse(opts->network_lock) < 0) {
		pr_err("unknown --network-lock '%s' (nftables, iptables or skip)",
		       opts->network_lock);
		return -1;
	}
	return 0;
}

static void tree_free(struct dump_tree *t)
{
	vmaflags_free(t);
	vec_free(&t->tcp_repaired);
	if (t->netns)
		netns_entry__free_unpacked(t->netns, NULL);
	for (size_t i = 0; i < t->tasks.len; i++) {
		struct dump_ctx *d = *vec_at(&t->tasks, struct dump_ctx *, i);

		if (d->core)
			protobuf_c_message_free_unpacked(&d->core->base, NULL);
		if (d->mm)
			protobuf_c_message_free_unpacked(&d->mm->base, NULL);
		for (size_t j = 0; j < d->nr_prev_runs; j++)
			pagemap_entry__free_unpacked(d->prev_runs[j], NULL);
		free(d->prev_runs);
		if (d->uffd >= 0)
			close(d->uffd);
		if (d->pidfd >= 0)
			close(d->pidfd);
		vec_free(&d->page_plan);
		vec_free(&d->vmas);
		vec_free(&d->threads);
		free(d);
	}
	vec_free(&t->tasks);
	vec_free(&t->file_keys);
	vec_free(&t->mnt_ids);
	vec_free(&t->pty_masters);
	ghost_dump_fini(t, false); /* crest_dump keeps the links of a dump that succeeded */
	vec_free(&t->shmem_keys);
	vec_free(&t->pipes);
	img_close(t->files);
	img_close(t->shmem);
	if (t->prev_track)
		track_entry__free_unpacked(t->prev_track, NULL);
	if (t->holder_pidfd >= 0)
		close(t->holder_pidfd);
	if (t->prev_dirfd >= 0)
		close(t->prev_dirfd);
	if (t->dirfd >= 0)
		close(t->dirfd);
}

/* A JSON string: the path as given, with what JSON cannot hold escaped. */
static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = *s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/*
 * --stats: this round's numbers as JSON in the images directory, one key a line.  The times
 * are CRIU's: freezing is seizing the tree, frozen from then until it runs again (pre-dump) or
 * is released or killed (dump); the tree was stopped for the sum of both.  The dump itself is
 * done by now, so a stats file that cannot be written only warns.
 */
struct round_stats {
	uint64_t scanned, written, zero, cow, parent, bytes, calls;
};

static void write_stats(struct dump_tree *t, const struct round_stats *s, uint64_t t0,
			uint64_t t_seize, uint64_t t_frozen, uint64_t t_thawed)
{
	const char *name = t->pre_dump ? "stats-predump.json" : "stats-dump.json";
	int fd = openat(t->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;

	if (!f) {
		pr_warn("cannot write %s: %s", name, strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	fprintf(f, "{\n  \"type\": \"%s\",\n  \"root_pid\": %d,\n  \"parent\": ",
		t->pre_dump ? "pre-dump" : "dump", t->opts->pid);
	if (t->opts->prev_images_dir)
		json_str(f, t->opts->prev_images_dir);
	else
		fputs("null", f);
	fprintf(f,
		",\n  \"tasks\": %zu,\n  \"pages_scanned\": %llu,\n  \"pages_written\": %llu,\n"
		"  \"pages_unchanged\": %llu,\n  \"pages_zero\": %llu,\n  \"pages_cow\": %llu,\n"
		"  \"bytes_written\": %llu,\n  \"remote_syscalls\": %llu,\n"
		"  \"freezing_ms\": %.3f,\n  \"frozen_ms\": %.3f,\n  \"teardown_ms\": %.3f,\n"
		"  \"total_ms\": %.3f\n}\n",
		t->tasks.len, (unsigned long long)s->scanned, (unsigned long long)s->written,
		(unsigned long long)s->parent, (unsigned long long)s->zero,
		(unsigned long long)s->cow, (unsigned long long)s->bytes,
		(unsigned long long)s->calls, (t_frozen - t_seize) / 1e6,
		((t->t_killed ?: t_thawed) - t_frozen) / 1e6,
		t->t_killed ? (t_thawed - t->t_killed) / 1e6 : 0.0,
		(now_ns(CLOCK_MONOTONIC) - t0) / 1e6);
	if (fclose(f))
		pr_warn("cannot write %s: %s", name, strerror(errno));
}

static void log_stats(struct dump_tree *t, uint64_t t0, uint64_t t_seize, uint64_t t_frozen,
		      uint64_t t_thawed)
{
	uint64_t scanned = 0, written = 0, zero = 0, cow = 0, parent = 0, bytes = 0, calls = 0;

	for (size_t i = 0; i < t->tasks.len; i++) {
		struct dump_ctx *d = *vec_at(&t->tasks, struct dump_ctx *, i);

		scanned += d->pages_scanned;
		written += d->pages_written;
		zero += d->pages_zero;
		cow += d->pages_cow;
		parent += d->pages_parent;
		bytes += d->bytes_written;
		calls += d->rs.nr_calls;
		for (size_t j = 0; j < d->threads.len; j++)
			calls += dump_thread_at(d, j)->rs.nr_calls;
	}
	pr_info("dumped %zu tasks: %llu pages scanned, %llu written (%llu MiB), %llu zero, %llu "
		"shared with the parent, %llu unchanged since the previous round, %llu remote "
		"syscalls, frozen %.3f ms (then %.3f ms of teardown), total %.3f ms",
		t->tasks.len, (unsigned long long)scanned, (unsigned long long)written,
		(unsigned long long)(bytes >> 20), (unsigned long long)zero,
		(unsigned long long)cow, (unsigned long long)parent, (unsigned long long)calls,
		((t->t_killed ?: t_thawed) - t_frozen) / 1e6,
		t->t_killed ? (t_thawed - t->t_killed) / 1e6 : 0.0,
		(now_ns(CLOCK_MONOTONIC) - t0) / 1e6);
	if (t->opts->round_stats) {
		*t->opts->round_stats = (struct crest_round_stats){
			.pages_scanned = scanned,
			.pages_written = written,
			.bytes_written = bytes,
			.frozen_ms = ((t->t_killed ?: t_thawed) - t_frozen) / 1e6,
			.total_ms = (now_ns(CLOCK_MONOTONIC) - t0) / 1e6,
			.frozen_at_ns = t_seize,
		};
	}
	if (t->opts->stats) {
		struct round_stats s = {scanned, written, zero, cow, parent, bytes, calls};

		write_stats(t, &s, t0, t_seize, t_frozen, t_thawed);
	}
}

/* --prev-images-dir: the round this one builds on (relative to the images directory). */
static int open_prev(struct dump_tree *t)
{
	const char *prev = t->opts->prev_images_dir;
	ProtobufCMessage *msg;
	InventoryEntry *inv;
	int ret;

	if (!prev)
		return 0;
	t->prev_dirfd = openat(t->dirfd, prev, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (t->prev_dirfd < 0) {
		pr_perror("cannot open the previous images directory %s", prev);
		return -1;
	}
	if (img_read_one(t->prev_dirfd, IMG_INVENTORY, 0, &inventory_entry__descriptor, &msg))
		return -1;
	inv = (InventoryEntry *)msg;
	ret = inv->root_pid == (uint32_t)t->opts->pid ? 0 : -1;
	if (ret)
		pr_err("%s holds a dump of %u, not of %d", prev, inv->root_pid, t->opts->pid);
	inventory_entry__free_unpacked(inv, NULL);
	if (ret)
		return -1;
	/* restore follows this link to the parent images, as far up as the chain goes */
	unlinkat(t->dirfd, "parent", 0);
	if (symlinkat(prev, t->dirfd, "parent")) {
		pr_perror("cannot link the images to their parent %s", prev);
		return -1;
	}
	return track_load(t, t->prev_dirfd);
}

static void tree_init(struct dump_tree *t, const struct crest_opts *opts)
{
	*t = (struct dump_tree){
		.opts = opts,
		.dirfd = -1,
		.prev_dirfd = -1,
		.holder_pidfd = -1,
		.tasks = VEC_INIT(struct dump_ctx *),
		.file_keys = VEC_INIT(struct file_key),
		.mnt_ids = VEC_INIT(uint32_t),
		.shmem_keys = VEC_INIT(struct shmem_key),
		.pipes = VEC_INIT(uint64_t),
		.tcp_repaired = VEC_INIT(struct tcp_repaired),
		.netlock_kind =
			opts->network_lock ? netlock_parse(opts->network_lock) : NETLOCK_NFTABLES,
	};
}

/* Everything but memory is read and written while frozen; close the tree-wide images. */
static int dump_tasks(struct dump_tree *t)
{
	if (!t->pre_dump) {
		t->files = img_open_write(t->dirfd, IMG_FILES, 0);
		if (!t->files)
			return -1;
	}
	for (size_t i = 0; i < t->tasks.len; i++) {
		struct dump_ctx *d = *vec_at(&t->tasks, struct dump_ctx *, i);

		if (!d->zombie && dump_one(d))
			return -1;
	}
	if (img_close(t->files) | img_close(t->shmem)) {
		t->files = t->shmem = NULL;
		return -1;
	}
	t->files = t->shmem = NULL;
	return 0;
}

/*
 * What both kinds of dump check and open before anything is frozen: an unreachable page
 * server or a bad parent costs the tree nothing.
 */
static int dump_begin(struct dump_tree *t, struct img_sink **sink, bool final)
{
	const struct crest_opts *opts = t->opts;

	if (dump_precheck(opts))
		return -1;
	t->dirfd = open_images_dir(opts->images_dir, true);
	if (t->dirfd < 0 || open_prev(t))
		return -1;
	if (opts->page_server && !(*sink = ps_client_open(opts, t->dirfd, t->prev_dirfd, final)))
		return -1;
	return 0;
}

int crest_dump(const struct crest_opts *opts)
{
	struct dump_tree t;
	uint64_t t0 = now_ns(CLOCK_MONOTONIC), t_seize = t0, t_frozen = t0, t_thawed = t0;
	struct img_sink *sink = NULL;
	bool frozen = false;
	int ret = -1;

	error_reset();
	tree_init(&t, opts);
	if (dump_begin(&t, &sink, true))
		goto out;
	if (netns_dump_prepare(&t) || vmaflags_prefetch(&t, opts->pid))
		goto out;
	test_hook("CREST_TEST_BEFORE_FREEZE");
	frozen = true;
	t_seize = now_ns(CLOCK_MONOTONIC);
	if (tree_seize(&t, opts->pid))
		goto out;
	t_frozen = now_ns(CLOCK_MONOTONIC);
	/* the tree dies only once the page server has every image in place */
	if (netns_dump(&t) || ns_dump(&t) || (opts->manage_cgroups && cgroup_dump(&t)) ||
	    dump_tasks(&t) || write_pstree(&t) || write_inventory(&t) ||
	    (sink && ps_client_commit(sink)))
		goto out;
	/* migrate: the tree must run elsewhere before it may die here */
	if (opts->before_kill) {
		if (opts->round_stats)
			opts->round_stats->frozen_at_ns = t_seize;
		if (opts->before_kill(opts->before_kill_arg))
			goto out;
	}
	if (opts->leave_running) {
		/* out of repair mode before the tasks can touch their sockets again */
		tcp_dump_fini(&t, false);
		netlock_dump_fini(&t, false);
		tree_release(&t);
	} else if (tree_kill(&t)) {
		goto out_released;
	}
	frozen = false;
	t_thawed = now_ns(CLOCK_MONOTONIC);
	/* the final round: tracking has done its job */
	track_stop(&t);
	log_stats(&t, t0, t_seize, t_frozen, t_thawed);
	ret = 0;
out:
	/* a failed dump: the connections work again, unlocked, before the tree runs on */
	tcp_dump_fini(&t, ret == 0 && !opts->leave_running);
	netlock_dump_fini(&t, ret == 0);
	if (frozen)
		tree_release(&t);
out_released:
	tcp_dump_fini(&t, true);
	ps_client_close(sink);
	ghost_dump_fini(&t, ret == 0);
	tree_free(&t);
	return ret;
}

/*
 * crest pre-dump: freeze only to read the VMAs and arm tracking, with one PAGEMAP_SCAN per
 * VMA that both says what to copy and write-protects it again; then let the tree run and copy
 * its pages while it does.  Pages written meanwhile are copied again by the next round.
 */
int crest_pre_dump(const struct crest_opts *opts)
{
	struct dump_tree t;
	uint64_t t0 = now_ns(CLOCK_MONOTONIC), t_seize = t0, t_frozen = t0, t_thawed = t0;
	struct img_sink *sink = NULL;
	bool frozen = false;
	int ret = -1;

	error_reset();
	tree_init(&t, opts);
	t.pre_dump = t.arm = true;
	if (dump_begin(&t, &sink, false))
		goto out;
	frozen = true;
	t_seize = now_ns(CLOCK_MONOTONIC);
	if (tree_seize(&t, opts->pid))
		goto out;
	t_frozen = now_ns(CLOCK_MONOTONIC);
	if (dump_tasks(&t))
		goto out;
	tree_release(&t);
	frozen = false;
	t_thawed = now_ns(CLOCK_MONOTONIC);
	for (size_t i = 0; i < t.tasks.len; i++) {
		struct dump_ctx *d = *vec_at(&t.tasks, struct dump_ctx *, i);

		if (d->zombie || !pages_execute(d, d->mm))
			continue;
		/*
		 * The tree runs while its pages are copied: a task that exits meanwhile has
		 * nothing left to save.  The next round, or the final dump, will not see it.
		 */
		if (proc_parse_stat(d->pid, &d->stat) == 0 && d->stat.state != 'Z' &&
		    d->stat.state != 'X')
			goto out;
		pr_info("task %d exited during the pre-dump: skipped", d->pid);
		d->zombie = true;
		error_reset();
	}
	/* tracking state (track.img) is the source's own: committed before it is written */
	if (write_pstree(&t) || write_inventory(&t) || (sink && ps_client_commit(sink)) ||
	    track_save(&t))
		goto out;
	track_stop(&t); /* the new holder has every userfaultfd now */
	/*
	 * The round on disk before it counts as done, while the tree runs: a snapshot that
	 * survives a crash, and no write-back of it left to take the CPUs and the disk from the
	 * next round's freeze (the final dump's 15 MiB took 50-90 ms to write behind 1 GiB of
	 * earlier rounds still being written back, 15-20 ms without).
	 */
	if (!sink && syncfs(t.dirfd))
		pr_warn("cannot flush the images to disk: %s", strerror(errno));
	pr_info("pre-dump: frozen %.3f ms", (t_thawed - t_frozen) / 1e6);
	log_stats(&t, t0, t_seize, t_frozen, t_thawed);
	ret = 0;
out:
	if (frozen)
		tree_release(&t);
	ps_client_close(sink);
	tree_free(&t);
	return ret;
}

int crest_stop_tracking(const struct crest_opts *opts)
{
	struct dump_tree t;
	int ret = -1;

	error_reset();
	tree_init(&t, opts);
	t.dirfd = open_images_dir(opts->images_dir, false);
	if (t.dirfd < 0 || track_load(&t, t.dirfd))
		goto out;
	if (!t.prev_track) {
		pr_err("%s has no memory tracking to stop", opts->images_dir);
		goto out;
	}
	track_stop(&t);
	ret = 0;
out:
	tree_free(&t);
	return ret;
}
