// SPDX-License-Identifier: MIT
/*
 * VMA flags, read before the freeze and checked inside it.
 *
 * Only /proc/PID/smaps shows a VMA's VmFlags (locked, dontfork, hugepage, ...), and to show
 * the counters that come with them the kernel walks every page table of the task: 15 ms for a
 * task of 1 GiB here, a quarter of a final incremental dump's whole freeze.  /proc/PID/maps
 * gives the same layout without the walk (1.6 ms).  So a dump reads every task's smaps while
 * the tree still runs, and inside the freeze only maps: a VMA whose maps line has not changed
 * takes its flags from before.
 *
 * A whole-VMA madvise() or mlock() in between changes the flags and not the line.  So the
 * frozen task's smaps is read all the same, by a thread, while the pages are copied and
 * written (mostly waiting for the disk), which needs no flags: what is copied and what is left
 * in the parent was decided by the kernel's page categories (the tracking flag only says
 * whether to ask for them).  Not while the pages are planned: both walk the same page tables,
 * and each slowed the other by as much as it gained.  Before the task's images are written,
 * and before a child's VMAs are compared with their parent's, the two readings are compared
 * and every entry whose flags differed is made again from the true ones.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "log.h"
#include "proc.h"

struct vmaflags_pre {
	pid_t pid;
	struct vec vmas; /* struct proc_vma, from smaps */
};

/* The smaps of the frozen task, being read by a thread. */
struct vmaflags_check {
	pthread_t thread;
	bool joined;
	pid_t pid;
	int err; /* errno of a failed read, EINVAL if it did not parse */
	uint64_t took_ns;
	struct vec vmas; /* struct proc_vma */
};

static bool same_line(const struct proc_vma *a, const struct proc_vma *b)
{
	return a->start == b->start && a->end == b->end && a->prot == b->prot &&
	       a->shared == b->shared && a->pgoff == b->pgoff && a->dev_major == b->dev_major &&
	       a->dev_minor == b->dev_minor && a->ino == b->ino && !strcmp(a->path, b->path);
}

bool vmaflags_take(struct vec *now, const struct vec *pre)
{
	size_t j = 0;

	for (size_t i = 0; i < now->len; i++) {
		struct proc_vma *v = vec_at(now, struct proc_vma, i);
		const struct proc_vma *p = NULL;

		/* both in address order */
		while (j < pre->len && vec_at(pre, struct proc_vma, j)->start < v->start)
			j++;
		if (j < pre->len)
			p = vec_at(pre, struct proc_vma, j);
		if (!p || !same_line(p, v))
			return false;
		v->vmflags = p->vmflags;
	}
	return true;
}

int vmaflags_match(const struct vec *dumped, const struct vec *truth, unsigned long skip,
		   size_t *at)
{
	size_t j = 0;

	for (size_t i = 0; i < dumped->len; i++, j++) {
		/* crest's own scratch page, mapped after the VMAs were read */
		if (j < truth->len && vec_at(truth, struct proc_vma, j)->start == skip)
			j++;
		if (j >= truth->len || !same_line(vec_at(truth, struct proc_vma, j),
						  vec_at(dumped, struct proc_vma, i)))
			return -1;
		at[i] = j;
	}
	if (j < truth->len && vec_at(truth, struct proc_vma, j)->start == skip)
		j++;
	return j == truth->len ? 0 : -1;
}

/* The tree as it is now, parents first, and the smaps of each of its tasks. */
int vmaflags_prefetch(struct dump_tree *t, pid_t root)
{
	struct vec pids = VEC_INIT(pid_t);
	int ret = 0;

	t->vmaflags_pre = (struct vec)VEC_INIT(struct vmaflags_pre);
	if (!vec_push(&pids))
		return -1;
	*vec_at(&pids, pid_t, 0) = root;
	for (size_t i = 0; i < pids.len; i++) {
		pid_t pid = *vec_at(&pids, pid_t, i);
		struct vmaflags_pre *pre = vec_push(&t->vmaflags_pre);

		if (!pre) {
			ret = -1;
			break;
		}
		pre->pid = pid;
		pre->vmas = (struct vec)VEC_INIT(struct proc_vma);
		/* a task that went or cannot be read is read inside the freeze instead */
		if (proc_read_vmas(pid, "smaps", &pre->vmas, NULL, 0)) {
			vec_free(&pre->vmas);
			t->vmaflags_pre.len--;
			continue;
		}
		/* children of the leader's thread group: the threads' own are rare; not needed */
		if (proc_read_children(pid, pid, &pids) && errno == ENOMEM) {
			ret = -1;
			break;
		}
	}
	vec_free(&pids);
	if (ret)
		pr_err("out of memory");
	return ret;
}

static void *check_main(void *arg)
{
	struct vmaflags_check *c = arg;
	uint64_t t0 = now_ns(CLOCK_MONOTONIC);

	c->err = proc_read_vmas(c->pid, "smaps", &c->vmas, NULL, 0);
	c->took_ns = now_ns(CLOCK_MONOTONIC) - t0;
	return NULL;
}

static const struct vec *pre_of(const struct dump_tree *t, pid_t pid)
{
	for (size_t i = 0; i < t->vmaflags_pre.len; i++) {
		const struct vmaflags_pre *pre = vec_at(&t->vmaflags_pre, struct vmaflags_pre, i);

		if (pre->pid == pid)
			return &pre->vmas;
	}
	return NULL;
}

int vmaflags_read(struct dump_ctx *d)
{
	const struct vec *pre = pre_of(d->tree, d->pid);

	if (!pre)
		return proc_parse_smaps(d->pid, &d->vmas);
	if (proc_parse_maps(d->pid, &d->vmas))
		return -1;
	if (vmaflags_take(&d->vmas, pre)) {
		d->vmaflags_unchecked = true;
		return 0;
	}
	pr_debug("task %d: VMAs changed since they were read before the freeze", d->pid);
	d->vmas.len = 0;
	return proc_parse_smaps(d->pid, &d->vmas);
}

int vmaflags_check_start(struct dump_ctx *d)
{
	struct vmaflags_check *c;

	if (!d->vmaflags_unchecked)
		return 0;
	c = calloc(1, sizeof(*c));
	if (!c) {
		pr_err("out of memory");
		return -1;
	}
	c->pid = d->pid;
	c->vmas = (struct vec)VEC_INIT(struct proc_vma);
	errno = pthread_create(&c->thread, NULL, check_main, c);
	if (errno) {
		pr_perror("cannot start a thread");
		free(c);
		return -1;
	}
	d->vmaflags_check = c;
	return 0;
}

static void check_free(struct dump_ctx *d)
{
	struct vmaflags_check *c = d->vmaflags_check;

	if (!c->joined)
		pthread_join(c->thread, NULL);
	vec_free(&c->vmas);
	free(c);
	d->vmaflags_check = NULL;
}

int vmaflags_verify(struct dump_ctx *d)
{
	struct vmaflags_check *c = d->vmaflags_check;
	uint64_t t0;
	size_t *at;
	int ret = -1;

	if (!d->vmaflags_unchecked)
		return 0;
	if (!c) {
		pr_err("task %d: the check of its VMA flags was not started", d->pid);
		return -1;
	}
	d->vmaflags_unchecked = false;
	t0 = now_ns(CLOCK_MONOTONIC);
	pthread_join(c->thread, NULL);
	c->joined = true;
	pr_debug("task %d: smaps read by the side in %.3f ms (waited %.3f ms)", d->pid,
		 c->took_ns / 1e6, (now_ns(CLOCK_MONOTONIC) - t0) / 1e6);
	at = calloc(d->vmas.len + 1, sizeof(*at));
	if (c->err) {
		errno = c->err;
		pr_perror("cannot read /proc/%d/smaps", d->pid);
	} else if (!at) {
		pr_err("out of memory");
	} else if (vmaflags_match(&d->vmas, &c->vmas, d->rs.scratch, at)) {
		pr_err("task %d: its VMAs changed while it was frozen", d->pid);
	} else {
		ret = 0;
	}
	for (size_t i = 0; !ret && i < d->vmas.len; i++) {
		struct proc_vma *v = vec_at(&d->vmas, struct proc_vma, i);
		unsigned int truth = vec_at(&c->vmas, struct proc_vma, at[i])->vmflags;

		if (truth == v->vmflags)
			continue;
		pr_info("task %d: flags of %lx-%lx changed just before the freeze: entry made "
			"again",
			d->pid, v->start, v->end);
		v->vmflags = truth;
		ret = mem_vma_flags_changed(d, d->mm->vmas[i], v);
	}
	free(at);
	check_free(d);
	return ret;
}

void vmaflags_free(struct dump_tree *t)
{
	for (size_t i = 0; i < t->tasks.len; i++) {
		struct dump_ctx *d = *vec_at(&t->tasks, struct dump_ctx *, i);

		if (d->vmaflags_check)
			check_free(d);
	}
	for (size_t i = 0; i < t->vmaflags_pre.len; i++)
		vec_free(&vec_at(&t->vmaflags_pre, struct vmaflags_pre, i)->vmas);
	vec_free(&t->vmaflags_pre);
}
