// SPDX-License-Identifier: MIT
/*
 * Per-task odds and ends: name, personality, umask, cwd and root, session and process group,
 * resource limits, and the prctl/thread values the kernel keeps (tid address, robust futex
 * list, rseq area, parent-death signal, dumpable, subreaper, THP and timer slack settings).
 */
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "log.h"

#ifndef PTRACE_GET_RSEQ_CONFIGURATION
#define PTRACE_GET_RSEQ_CONFIGURATION 0x420f /* Linux 5.13 */
#endif

struct rseq_config {
	uint64_t rseq_abi_pointer;
	uint32_t rseq_abi_size;
	uint32_t signature;
	uint32_t flags;
	uint32_t pad;
};

static const char *const rlimit_names[] = {
	"CPU",	   "FSIZE", "DATA",  "STACK",	   "CORE",     "RSS",  "NPROC",	 "NOFILE",
	"MEMLOCK", "AS",    "LOCKS", "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME",
};

static char *read_trimmed(pid_t pid, const char *name)
{
	char path[64];
	char *s;

	snprintf(path, sizeof(path), "/proc/%d/%s", pid, name);
	s = read_file_at(AT_FDCWD, path, NULL);
	if (!s) {
		pr_perror("cannot read %s", path);
		return NULL;
	}
	s[strcspn(s, "\n")] = 0;
	return s;
}

static int dump_paths(struct dump_ctx *d)
{
	char path[64], buf[4096];

	snprintf(path, sizeof(path), "/proc/%d/cwd", d->pid);
	if (readlink_at(AT_FDCWD, path, buf, sizeof(buf))) {
		pr_perror("cannot read %s", path);
		return -1;
	}
	if (strstr(buf, " (deleted)")) {
		pr_err("task %d: its working directory %s was deleted: not supported yet", d->pid,
		       buf);
		return -1;
	}
	d->core->cwd = strdup(buf);
	snprintf(path, sizeof(path), "/proc/%d/root", d->pid);
	if (readlink_at(AT_FDCWD, path, buf, sizeof(buf))) {
		pr_perror("cannot read %s", path);
		return -1;
	}
	d->core->root = strdup(buf);
	return d->core->cwd && d->core->root ? 0 : -1;
}

static int dump_rlimits(struct dump_ctx *d)
{
	d->core->rlimits = calloc(RLIM_NLIMITS, sizeof(*d->core->rlimits));
	if (!d->core->rlimits)
		return -1;
	for (int res = 0; res < RLIM_NLIMITS; res++) {
		struct rlimit rl;
		RlimitEntry *e;
		long ret;

		/*
		 * Asked by the task itself: prlimit() on a task of another user needs
		 * CAP_SYS_RESOURCE, which crest may not have.
		 */
		ret = rsys4(&d->rs, SYS_prlimit64, 0, res, 0, d->rs.scratch);
		if (ret || rsys_peek(&d->rs, d->rs.scratch, &rl, sizeof(rl))) {
			pr_err("cannot read rlimit %s of %d (%ld)", rlimit_names[res], d->pid, ret);
			return -1;
		}
		e = calloc(1, sizeof(*e));
		if (!e)
			return -1;
		rlimit_entry__init(e);
		e->resource = res;
		e->cur = rl.rlim_cur;
		e->max = rl.rlim_max;
		d->core->rlimits[d->core->n_rlimits++] = e;
	}
	return 0;
}

/* Values only the task can ask the kernel for. */
static int dump_prctls(struct dump_ctx *d)
{
	struct rsys *rs = &d->rs;
	uint64_t val = 0;
	long ret;

	ret = rsys2(rs, SYS_prctl, PR_GET_CHILD_SUBREAPER, rs->scratch);
	if (ret || rsys_peek(rs, rs->scratch, &val, sizeof(int)))
		goto fail;
	d->core->has_child_subreaper = true;
	d->core->child_subreaper = (int)val;

	ret = rsys1(rs, SYS_prctl, PR_GET_DUMPABLE);
	if (ret < 0)
		goto fail;
	d->core->has_dumpable = true;
	d->core->dumpable = ret;

	ret = rsys1(rs, SYS_prctl, PR_GET_THP_DISABLE);
	if (ret < 0)
		goto fail;
	d->core->has_thp_disable = true;
	d->core->thp_disable = ret;

	ret = rsys1(rs, SYS_prctl, PR_GET_TIMERSLACK);
	if (ret < 0)
		goto fail;
	d->core->has_timerslack_ns = true;
	d->core->timerslack_ns = ret;
	return 0;
fail:
	pr_err("cannot read the prctl state of %d (%ld)", d->pid, ret);
	return -1;
}

/*
 * Scheduling is per thread in Linux: nice, policy and priority, and affinity (the words of
 * its CPU mask up to the last with a CPU in it).
 */
static int dump_thread_sched(pid_t tid, ThreadCoreEntry *t)
{
	struct sched_param sp;
	cpu_set_t set;
	size_t n = sizeof(set) / sizeof(uint64_t);
	int policy;

	errno = 0;
	t->nice = getpriority(PRIO_PROCESS, tid);
	policy = sched_getscheduler(tid);
	if ((t->nice == -1 && errno) || policy < 0 || sched_getparam(tid, &sp)) {
		pr_perror("cannot read the scheduling settings of %d", tid);
		return -1;
	}
	t->has_nice = t->has_sched_policy = t->has_sched_priority = true;
	t->sched_policy = policy;
	t->sched_priority = sp.sched_priority;
	if (sched_getaffinity(tid, sizeof(set), &set)) {
		pr_perror("cannot read the CPU affinity of %d", tid);
		return -1;
	}
	while (n > 1 && !((uint64_t *)&set)[n - 1])
		n--;
	t->cpu_affinity = malloc(n * sizeof(uint64_t));
	if (!t->cpu_affinity)
		return -1;
	memcpy(t->cpu_affinity, &set, n * sizeof(uint64_t));
	t->n_cpu_affinity = n;
	return 0;
}

/* Per thread: what the kernel keeps pointers to, the parent-death signal, the name. */
int task_dump_thread(struct dump_ctx *d, struct dump_thread *th)
{
	ThreadCoreEntry *t = th->core;
	struct rsys *rs = &th->rs;
	struct rseq_config rc = {0};
	uint64_t head = 0, val = 0;
	size_t len = 0;
	char name[64];
	long ret;

	ret = rsys2(rs, SYS_prctl, PR_GET_TID_ADDRESS, rs->scratch);
	if (ret || rsys_peek(rs, rs->scratch, &val, sizeof(val)))
		goto fail;
	t->has_clear_child_tid = true;
	t->clear_child_tid = val;
	val = 0;
	ret = rsys2(rs, SYS_prctl, PR_GET_PDEATHSIG, rs->scratch);
	if (ret || rsys_peek(rs, rs->scratch, &val, sizeof(int)))
		goto fail;
	t->has_pdeath_sig = true;
	t->pdeath_sig = (int)val;
	snprintf(name, sizeof(name), "task/%d/comm", th->tid);
	t->comm = read_trimmed(d->pid, name);
	if (!t->comm)
		return -1;
	if (syscall(SYS_get_robust_list, th->tid, &head, &len)) {
		pr_perror("cannot read the robust futex list of %d", th->tid);
		return -1;
	}
	t->has_robust_list = t->has_robust_list_len = true;
	t->robust_list = head;
	t->robust_list_len = len;
	if (dump_thread_sched(th->tid, t))
		return -1;
	if (ptrace(PTRACE_GET_RSEQ_CONFIGURATION, th->tid, sizeof(rc), &rc) < 0) {
		pr_perror("cannot read the rseq registration of %d", th->tid);
		return -1;
	}
	if (rc.rseq_abi_pointer) {
		t->rseq = calloc(1, sizeof(*t->rseq));
		if (!t->rseq)
			return -1;
		rseq_entry__init(t->rseq);
		t->rseq->ptr = rc.rseq_abi_pointer;
		t->rseq->size = rc.rseq_abi_size;
		t->rseq->sig = rc.signature;
	}
	return 0;
fail:
	pr_err("cannot read the prctl state of thread %d (%ld)", th->tid, ret);
	return -1;
}

/* Scheduling and OOM settings: all readable from outside. */
static int dump_sched(struct dump_ctx *d)
{
	TaskCoreEntry *c = d->core;
	struct sched_param sp;
	cpu_set_t set;
	char *s;
	int policy;

	s = read_trimmed(d->pid, "oom_score_adj");
	if (!s)
		return -1;
	c->has_oom_score_adj = true;
	c->oom_score_adj = atoi(s);
	free(s);
	errno = 0;
	c->nice = getpriority(PRIO_PROCESS, d->pid);
	policy = sched_getscheduler(d->pid);
	if ((c->nice == -1 && errno) || policy < 0 || sched_getparam(d->pid, &sp) ||
	    sched_getaffinity(d->pid, sizeof(set), &set)) {
		pr_perror("cannot read the scheduling settings of %d", d->pid);
		return -1;
	}
	c->has_nice = c->has_sched_policy = c->has_sched_priority = true;
	c->sched_policy = policy;
	c->sched_priority = sp.sched_priority;
	c->n_cpu_affinity = sizeof(set) / sizeof(uint64_t);
	c->cpu_affinity = malloc(sizeof(set));
	if (!c->cpu_affinity)
		return -1;
	memcpy(c->cpu_affinity, &set, sizeof(set));
	return 0;
}

int task_dump(struct dump_ctx *d)
{
	TaskCoreEntry *c = d->core;
	char *s;

	/* a container's init: its session is outside its pid namespace, invisible inside */
	if (!d->parent && d->stat.sid != d->pid && !d->opts->shell_job && !d->tree->pid_ns) {
		pr_err("task %d is not a session leader (session %d is outside the dump): "
		       "dump with --shell-job",
		       d->pid, d->stat.sid);
		return -1;
	}
	s = read_trimmed(d->pid, "comm");
	if (!s)
		return -1;
	c->comm = s;
	s = read_trimmed(d->pid, "personality");
	if (!s)
		return -1;
	c->personality = strtoul(s, NULL, 16);
	free(s);
	c->umask = d->status.umask;
	if (d->status.seccomp) {
		pr_err("task %d runs under seccomp (mode %d): not supported yet", d->pid,
		       d->status.seccomp);
		return -1;
	}
	return dump_paths(d) || dump_rlimits(d) || dump_prctls(d) || dump_sched(d) ? -1 : 0;
}

#define RCALL(what, call)                    \
	do {                                 \
		if (rcheck(r, what, (call))) \
			return -1;           \
	} while (0)

/* Remote, in the task's leader: what its children inherit is set before they are forked. */
int task_restore(struct restore_ctx *r)
{
	const TaskCoreEntry *c = r->core;
	struct rsys *rs = &r->rs;
	size_t n;

	if (r->pstree->sid == (uint32_t)r->pid)
		RCALL("setsid", rsys0(rs, SYS_setsid));
	RCALL("umask", rsys1(rs, SYS_umask, c->umask));
	RCALL("personality", rsys1(rs, SYS_personality, c->personality));
	if (c->has_timerslack_ns)
		RCALL("timer slack", rsys2(rs, SYS_prctl, PR_SET_TIMERSLACK, c->timerslack_ns));
	if (c->has_thp_disable)
		RCALL("THP disable", rsys2(rs, SYS_prctl, PR_SET_THP_DISABLE, c->thp_disable));
	if (c->has_child_subreaper)
		RCALL("child subreaper",
		      rsys2(rs, SYS_prctl, PR_SET_CHILD_SUBREAPER, c->child_subreaper));
	n = strlen(c->cwd) + 1;
	if (n > rs->scratch_len || rsys_poke(rs, rs->scratch, c->cwd, n))
		return -1;
	if (rcheck(r, "chdir", rsys1(rs, SYS_chdir, rs->scratch))) {
		pr_err("cannot restore the working directory %s of %d", c->cwd, r->pid);
		return -1;
	}
	if (strcmp(c->root, "/")) {
		n = strlen(c->root) + 1;
		if (n > rs->scratch_len || rsys_poke(rs, rs->scratch, c->root, n))
			return -1;
		RCALL("chroot", rsys1(rs, SYS_chroot, rs->scratch));
	}
	return 0;
}

static int restore_rlimits(struct restore_ctx *r)
{
	for (size_t i = 0; i < r->core->n_rlimits; i++) {
		const RlimitEntry *e = r->core->rlimits[i];
		struct rlimit want = {e->cur, e->max}, now;

		if (e->resource >= RLIM_NLIMITS || e->cur > e->max) {
			pr_err("core-%d.img: bad rlimit %u", r->pid, e->resource);
			return -1;
		}
		if (!prlimit(r->child, e->resource, &want, NULL))
			continue;
		if (errno != EPERM || prlimit(r->child, e->resource, NULL, &now)) {
			pr_perror("cannot set rlimit %s of %d", rlimit_names[e->resource], r->pid);
			return -1;
		}
		/* Raising a hard limit needs CAP_SYS_RESOURCE: keep what the kernel allows. */
		want.rlim_max = now.rlim_max;
		if (want.rlim_cur > want.rlim_max)
			want.rlim_cur = want.rlim_max;
		if (prlimit(r->child, e->resource, &want, NULL)) {
			pr_perror("cannot set rlimit %s of %d", rlimit_names[e->resource], r->pid);
			return -1;
		}
		pr_user_warn("rlimit %s of %d: the kernel refused hard limit %llu (no "
			     "CAP_SYS_RESOURCE); restored as %llu/%llu",
			     rlimit_names[e->resource], r->pid, (unsigned long long)e->max,
			     (unsigned long long)want.rlim_cur, (unsigned long long)want.rlim_max);
	}
	return 0;
}

/* Scheduling settings the kernel lets crest set from outside; refusals are reported. */
static int restore_sched(struct restore_ctx *r)
{
	const TaskCoreEntry *c = r->core;
	char path[64], val[16];
	int fd, n;

	if (c->has_oom_score_adj) {
		snprintf(path, sizeof(path), "/proc/%d/oom_score_adj", r->child);
		n = snprintf(val, sizeof(val), "%d", c->oom_score_adj);
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0 || write(fd, val, n) != n)
			pr_user_warn("cannot restore oom_score_adj %d of %d: %s", c->oom_score_adj,
				     r->pid, strerror(errno));
		if (fd >= 0)
			close(fd);
	}
	/* per thread in Linux: each its own, or (older images) the leader's */
	for (size_t i = 0; i < r->threads.len; i++) {
		const struct restore_thread *th = restore_thread_at(r, i);
		const ThreadCoreEntry *t = th->core;
		bool own = t->has_sched_policy;
		int nice = t->has_nice ? t->nice : c->nice;

		if ((t->has_nice || c->has_nice) && setpriority(PRIO_PROCESS, th->tid, nice))
			pr_user_warn("cannot restore nice %d of %d: %s", nice, th->tid,
				     strerror(errno));
		if (own || c->has_sched_policy) {
			struct sched_param sp = {.sched_priority = own ? t->sched_priority
								       : c->sched_priority};

			if (sched_setscheduler(th->tid, own ? t->sched_policy : c->sched_policy,
					       &sp))
				pr_user_warn("cannot restore the scheduling policy of %d: %s",
					     th->tid, strerror(errno));
		}
	}
	return 0;
}

static void mask_of(cpu_set_t *set, const uint64_t *words, size_t n)
{
	CPU_ZERO(set);
	memcpy(set, words, min_t(size_t, sizeof(*set), n * sizeof(uint64_t)));
}

/*
 * CPU affinity: the tree is built on crest's CPU (restore.c) and gets its own CPUs once it is
 * whole: each thread its own, else its task's (images before per-thread masks), else, if none
 * was saved, those crest had.
 */
void task_restore_affinity(struct restore_ctx *r, const cpu_set_t *fallback)
{
	const TaskCoreEntry *c = r->core;
	cpu_set_t task = *fallback;

	if (c->n_cpu_affinity)
		mask_of(&task, c->cpu_affinity, c->n_cpu_affinity);
	for (size_t i = 0; i < r->threads.len; i++) {
		const struct restore_thread *th = restore_thread_at(r, i);
		cpu_set_t set = task;

		if (th->core->n_cpu_affinity)
			mask_of(&set, th->core->cpu_affinity, th->core->n_cpu_affinity);
		if (sched_setaffinity(th->tid, sizeof(set), &set))
			pr_user_warn("cannot restore the CPU affinity of %d: %s", th->tid,
				     strerror(errno));
	}
}

/* Limits and scheduling, set by crest from outside. */
int task_restore_late(struct restore_ctx *r)
{
	return restore_rlimits(r) || restore_sched(r) ? -1 : 0;
}

/* Per thread, after memory: the pointers below point into it. */
int task_restore_thread(struct restore_ctx *r, struct restore_thread *th)
{
	const ThreadCoreEntry *t = th->core;
	struct rsys *rs = &th->rs;

	if (t->has_robust_list)
		RCALL("set_robust_list",
		      rsys2(rs, SYS_set_robust_list, t->robust_list, t->robust_list_len));
	RCALL("set_tid_address", rsys1(rs, SYS_set_tid_address, t->clear_child_tid));
	if (t->rseq)
		RCALL("rseq registration",
		      rsys4(rs, SYS_rseq, t->rseq->ptr, t->rseq->size, 0, t->rseq->sig));
	RCALL("parent death signal",
	      rsys2(rs, SYS_prctl, PR_SET_PDEATHSIG, t->has_pdeath_sig ? t->pdeath_sig : 0));
	/* /proc/PID/task/TID/comm takes writes only from the thread's own group */
	if (t->comm) {
		char name[16] = {0};

		strncpy(name, t->comm, sizeof(name) - 1);
		if (rsys_poke(rs, rs->scratch, name, sizeof(name)) ||
		    rcheck(r, "thread name", rsys2(rs, SYS_prctl, PR_SET_NAME, rs->scratch)))
			return -1;
	}
	return 0;
}

/* After credentials, which reset it. */
int task_restore_dumpable(struct restore_ctx *r, struct restore_thread *th)
{
	if (r->core->has_dumpable && r->core->dumpable <= 1) /* 2 (suid_dumpable) is not settable */
		RCALL("dumpable", rsys2(&th->rs, SYS_prctl, PR_SET_DUMPABLE, r->core->dumpable));
	return 0;
}
