// SPDX-License-Identifier: MIT
/*
 * Dirty-page tracking without soft-dirty bits: userfaultfd write-protection in async mode
 * (UFFD_FEATURE_WP_ASYNC, Linux 6.7).  The task's memory is registered for write-protect and
 * every page is protected by PAGEMAP_SCAN with PM_SCAN_WP_MATCHING; a write then costs the
 * task one minor fault that the kernel resolves by itself, and the page reads as
 * PAGE_IS_WRITTEN until the next scan re-protects it.  Nothing blocks, the task's behaviour
 * does not change.
 *
 * The userfaultfd is created in the task (a remote syscall, as only the task can make one for
 * its own memory), taken by crest with pidfd_getfd and closed in the task at once.  A context
 * lives as long as a file refers to it, and tracking must outlive this crest run: a small
 * holder process keeps the files open between pre-dump rounds.  The next crest finds it in
 * track.img and takes the files back from it with pidfd_getfd; killing it ends tracking and
 * the kernel unregisters everything.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "compat/uffd.h"
#include "image.h"
#include "internal.h"
#include "log.h"

#include "track.pb-c.h"

#define UFFD_FEATURES (UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED)

static uint64_t start_time(pid_t pid)
{
	char path[64], *text, *p;
	uint64_t start = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	text = read_file_at(AT_FDCWD, path, NULL);
	p = text ? strrchr(text, ')') : NULL;
	for (int field = 2; p && *p && field < 22; field++)
		p = strchr(p + 1, ' ');
	if (p)
		start = strtoull(p + 1, NULL, 10);
	free(text);
	return start;
}

/* A new userfaultfd for the task's memory, made by the task and moved into crest. */
static int uffd_from_task(struct dump_ctx *d)
{
	struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURES};
	/* user-mode-only: an unprivileged task may make one; async WP never asks it anyway */
	long tfd = rsys1(&d->rs, SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	int fd = rsys_take_fd(&d->rs, d->pid, tfd);

	if (fd < 0) {
		pr_perror("cannot %s the userfaultfd of %d", tfd < 0 ? "create" : "take", d->pid);
		return -1;
	}
	if (ioctl(fd, UFFDIO_API, &api)) {
		pr_perror("userfaultfd write-protect in async mode is not available (Linux 6.7)");
		close(fd);
		return -1;
	}
	return fd;
}

/* The task's userfaultfd: the one the holder keeps, or a new one. */
static int task_uffd(struct dump_ctx *d)
{
	const TrackEntry *tr = d->tree->prev_track;

	if (d->uffd >= 0)
		return d->uffd;
	for (size_t i = 0; tr && i < tr->n_tasks; i++) {
		if (tr->tasks[i]->pid != (uint32_t)d->pid)
			continue;
		d->uffd =
			syscall(SYS_pidfd_getfd, d->tree->holder_pidfd, tr->tasks[i]->holder_fd, 0);
		if (d->uffd < 0)
			pr_perror("cannot take the tracking userfaultfd of %d from its holder",
				  d->pid);
		return d->uffd;
	}
	d->uffd = uffd_from_task(d);
	return d->uffd;
}

/* Private memory: shared memory objects are saved whole, specials are the kernel's. */
static bool trackable(const struct proc_vma *v)
{
	if (v->shared)
		return false;
	if (v->path[0] == '[')
		return !strcmp(v->path, "[heap]") || !strcmp(v->path, "[stack]") ||
		       !strncmp(v->path, "[anon:", 6);
	return true;
}

/*
 * Register every private VMA not registered yet (new since the last round, or all on the
 * first).  Returns 0; VMAs the kernel refuses simply stay untracked and are copied whole.
 */
int track_arm(struct dump_ctx *d)
{
	int uffd = task_uffd(d);

	if (uffd < 0)
		return -1;
	for (size_t i = 0; i < d->vmas.len; i++) {
		struct proc_vma *v = vec_at(&d->vmas, struct proc_vma, i);
		struct uffdio_register reg = {
			.range = {.start = v->start, .len = v->end - v->start},
			.mode = UFFDIO_REGISTER_MODE_WP,
		};

		if (!trackable(v))
			continue;
		if (v->vmflags & VMF_UFFD_WP) {
			v->tracked = true; /* registered in an earlier round */
			continue;
		}
		if (ioctl(uffd, UFFDIO_REGISTER, &reg)) {
			pr_debug("%d: %lx-%lx cannot be tracked (%s): copied whole each round",
				 d->pid, v->start, v->end, strerror(errno));
			continue;
		}
		v->tracked = true;
	}
	return 0;
}

/* The final round only reads what was written: which VMAs are armed is in smaps. */
void track_mark(struct dump_ctx *d)
{
	for (size_t i = 0; i < d->vmas.len; i++) {
		struct proc_vma *v = vec_at(&d->vmas, struct proc_vma, i);

		v->tracked = v->vmflags & VMF_UFFD_WP;
	}
}

/* Refuse what tracking would interfere with. */
int track_check(struct dump_ctx *d)
{
	for (size_t i = 0; i < d->vmas.len; i++) {
		const struct proc_vma *v = vec_at(&d->vmas, struct proc_vma, i);

		if ((v->vmflags & VMF_UFFD_MISSING) ||
		    ((v->vmflags & VMF_UFFD_WP) && !d->tree->prev_track)) {
			pr_err("task %d uses userfaultfd itself: memory tracking is not supported "
			       "for it",
			       d->pid);
			return -1;
		}
	}
	return 0;
}

/* The holder: keeps the userfaultfds open, nothing else, until it is killed. */
static void __attribute__((noreturn)) holder_main(int nfds)
{
	sigset_t all;

	setsid();
	prctl(PR_SET_NAME, "crest-track", 0, 0, 0);
	if (chdir("/"))
		_exit(1);
	syscall(SYS_close_range, 3 + nfds, ~0U, 0);
	for (int fd = 0; fd < 3; fd++) {
		int null = open("/dev/null", O_RDWR);

		if (null >= 0 && null != fd) {
			dup2(null, fd);
			close(null);
		}
	}
	sigfillset(&all);
	sigdelset(&all, SIGTERM);
	sigprocmask(SIG_SETMASK, &all, NULL);
	for (;;)
		pause();
}

/* Keep tracking alive after this run: hand every task's userfaultfd to a holder. */
int track_save(struct dump_tree *t)
{
	TrackEntry te = TRACK_ENTRY__INIT;
	TrackTaskEntry *tasks = calloc(t->tasks.len + 1, sizeof(*tasks));
	TrackTaskEntry **ptrs = calloc(t->tasks.len + 1, sizeof(*ptrs));
	size_t n = 0;
	int base = 3, ret = -1;
	pid_t holder;

	if (!tasks || !ptrs)
		goto out;
	for (size_t i = 0; i < t->tasks.len; i++) {
		struct dump_ctx *d = *vec_at(&t->tasks, struct dump_ctx *, i);

		if (d->uffd < 0)
			continue;
		track_task_entry__init(&tasks[n]);
		tasks[n].pid = d->pid;
		tasks[n].holder_fd = base + n;
		ptrs[n] = &tasks[n];
		n++;
	}
	fflush(NULL);
	holder = fork();
	if (holder < 0) {
		pr_perror("cannot start the tracking holder");
		goto out;
	}
	if (holder == 0) {
		/* the fds go to 3, 4, ... in task order: move them out of the way first */
		size_t k = 0;
		int moved[n + 1];

		for (size_t i = 0; i < t->tasks.len; i++) {
			struct dump_ctx *d = *vec_at(&t->tasks, struct dump_ctx *, i);

			if (d->uffd >= 0)
				moved[k++] = fcntl(d->uffd, F_DUPFD, 1024);
		}
		for (size_t i = 0; i < n; i++)
			if (moved[i] < 0 || dup2(moved[i], base + i) < 0)
				_exit(1);
		holder_main(n);
	}
	te.holder_pid = holder;
	te.holder_start = 0;
	for (int i = 0; i < 100 && !te.holder_start; i++) {
		te.holder_start = start_time(holder);
		if (!te.holder_start)
			usleep(1000);
	}
	te.tasks = ptrs;
	te.n_tasks = n;
	ret = img_write_one(t->dirfd, IMG_TRACK, 0, &te.base);
	if (ret)
		kill(holder, SIGKILL);
	else
		pr_info("tracking %zu tasks, holder %d", n, holder);
out:
	free(tasks);
	free(ptrs);
	return ret;
}

/* Find the holder of an earlier round; a dead or reused pid means tracking was lost. */
int track_load(struct dump_tree *t, int prev_dirfd)
{
	ProtobufCMessage *msg;

	if (faccessat(prev_dirfd, "track.img", F_OK, 0))
		return 0;
	if (img_read_one(prev_dirfd, IMG_TRACK, 0, &track_entry__descriptor, &msg))
		return -1;
	t->prev_track = (TrackEntry *)msg;
	if (start_time(t->prev_track->holder_pid) != t->prev_track->holder_start ||
	    (t->holder_pidfd = syscall(SYS_pidfd_open, t->prev_track->holder_pid, 0)) < 0) {
		pr_err("the memory tracking of the previous round is gone (holder %u): start again "
		       "with a full pre-dump",
		       t->prev_track->holder_pid);
		return -1;
	}
	return 0;
}

/* Stop the previous round's tracking: the kernel unregisters everything. */
void track_stop(struct dump_tree *t)
{
	if (!t->prev_track || t->holder_pidfd < 0)
		return;
	syscall(SYS_pidfd_send_signal, t->holder_pidfd, SIGKILL, NULL, 0);
	pr_info("stopped memory tracking (holder %u)", t->prev_track->holder_pid);
}
