// SPDX-License-Identifier: MIT
/*
 * crest restore.  The root task is forked by crest with clone3(set_tid) so it gets its old
 * PID; it stops at once, crest seizes it and, by remote syscalls, replaces its address space
 * with the dumped one and gives it its fds, session, signal state and timers.  Each child is
 * then forked by its restored parent (a remote clone3 with set_tid), so it starts with the
 * parent's memory, fds and session, and pages the two shared copy-on-write stay shared; it is
 * fixed up the same way.  Threads are created by a remote clone3 in their task.  Every task
 * stays stopped until the whole tree is built; only then do credentials, masks and registers
 * go in and everything is let go.  A failure at any point kills every task created.
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
#include <net/if.h>
#include <sys/socket.h>
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
#include "sk-inet.h"

#define RSEQ_SIG 0x53053053
#define THREAD_FLAGS \
	(CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM)

int open_images_dir(const char *dir, bool create);

int restore_add_helper(struct restore_tree *t, int fd)
{
	int nfd = fd_move_above(fd, t->helper_base), *slot;

	if (nfd < 0) {
		pr_perror("cannot move fd above %d", t->helper_base);
		close(fd);
		return -1;
	}
	slot = vec_push(&t->helpers);
	if (!slot) {
		close(nfd);
		return -1;
	}
	*slot = nfd;
	return nfd;
}

int rcheck(const struct restore_ctx *r, const char *what, long ret)
{
	if (ret >= 0 || ret <= -4096)
		return 0;
	pr_err("restoring %d: %s: %s", r->pid, what, strerror((int)-ret));
	return -1;
}

static struct restore_ctx *task_by_pid(struct restore_tree *t, pid_t pid)
{
	for (size_t i = 0; i < t->tasks.len; i++) {
		struct restore_ctx *r = *vec_at(&t->tasks, struct restore_ctx *, i);

		if (r->pid == pid)
			return r;
	}
	return NULL;
}

static int check_inventory(struct restore_tree *t)
{
	ProtobufCMessage *msg;
	struct utsname u;

	if (img_read_one(t->dirfd, IMG_INVENTORY, 0, &inventory_entry__descriptor, &msg))
		return -1;
	t->inv = (InventoryEntry *)msg;
	uname(&u);
	if (t->inv->img_version != IMG_VERSION) {
		pr_err("inventory.img: image version %u, this crest reads %u", t->inv->img_version,
		       IMG_VERSION);
		return -1;
	}
	if (strcmp(t->inv->arch, u.machine)) {
		pr_err("images are for %s, this machine is %s", t->inv->arch, u.machine);
		return -1;
	}
	if (t->inv->has_vdso_sha256) {
		unsigned char digest[32];
		size_t len;

		if (vdso_digest(digest, &len) || t->inv->vdso_sha256.len != sizeof(digest) ||
		    memcmp(digest, t->inv->vdso_sha256.data, sizeof(digest))) {
			pr_err("this kernel's vdso differs from the one the images were dumped on "
			       "(kernel %s): restore on the same kernel",
			       t->inv->kernel_release);
			return -1;
		}
	}
	return 0;
}

/* pstree.img: parents before children, every parent in the dump, every pid once. */
static int read_pstree(struct restore_tree *t)
{
	struct cr_img *img = img_open_read(t->dirfd, IMG_PSTREE, 0);
	ProtobufCMessage *msg;
	int n;

	if (!img)
		return -1;
	while ((n = img_read_msg(img, &pstree_entry__descriptor, &msg)) == 1) {
		PstreeEntry *ps = (PstreeEntry *)msg;
		struct restore_ctx *r = calloc(1, sizeof(*r)), **slot;
		bool root = t->tasks.len == 0;

		if (!r || !(slot = vec_push(&t->tasks))) {
			free(r);
			protobuf_c_message_free_unpacked(msg, NULL);
			n = -1;
			break;
		}
		*slot = r;
		r->pstree = ps;
		r->pid = ps->pid;
		r->tree = t;
		r->opts = t->opts;
		r->dirfd = t->dirfd;
		r->pages_fd = r->exe_fd = -1;
		r->fdinfo = (struct vec)VEC_INIT(FdEntry *);
		r->fds = (struct vec)VEC_INIT(struct fd_plan);
		r->threads = (struct vec)VEC_INIT(struct restore_thread);
		r->parent = root ? NULL : task_by_pid(t, ps->ppid);
		if (ps->pid <= 1 ||
		    (root ? ps->ppid != 0 || ps->pid != t->inv->root_pid || ps->zombie
			  : !r->parent || r->parent->pstree->zombie) ||
		    task_by_pid(t, ps->pid) != r ||
		    (!ps->zombie && (ps->n_threads < 1 || ps->threads[0] != ps->pid))) {
			pr_err("%s: task %u is malformed or out of order", img_path(img), ps->pid);
			n = -1;
			break;
		}
		if (ns_restore_pids(t, ps)) {
			n = -1;
			break;
		}
		/* a child is forked in its parent's session, or starts its own */
		if (!root && ps->sid != ps->pid && ps->sid != r->parent->pstree->sid) {
			pr_err("task %u is in session %u, its parent %u in %u: such session "
			       "layouts are not supported yet",
			       ps->pid, ps->sid, ps->ppid, r->parent->pstree->sid);
			n = -1;
			break;
		}
	}
	if (!n && !t->tasks.len) {
		pr_err("%s: empty", img_path(img));
		n = -1;
	}
	img_close(img);
	return n;
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

/* Read and check one live task's images; every pid and tid it needs must be free. */
static int read_task(struct restore_ctx *r)
{
	const PstreeEntry *ps = r->pstree;
	ProtobufCMessage *msg;

	if (pid_is_free(r->pid))
		return -1;
	if (ps->zombie)
		return 0;
	for (size_t i = 1; i < ps->n_threads; i++)
		if (pid_is_free(ps->threads[i]))
			return -1;
	if (img_read_one(r->dirfd, IMG_CORE, r->pid, &task_core_entry__descriptor, &msg))
		return -1;
	r->core = (TaskCoreEntry *)msg;
	if (r->core->pid != (uint32_t)r->pid || r->core->n_threads != ps->n_threads ||
	    !r->core->creds) {
		pr_err("core-%d.img: inconsistent with pstree.img", r->pid);
		return -1;
	}
	for (size_t i = 0; i < ps->n_threads; i++) {
		const ThreadCoreEntry *tc = r->core->threads[i];
		struct restore_thread *th;

		if (tc->tid != ps->threads[i] || !tc->regs) {
			pr_err("core-%d.img: thread %zu is inconsistent with pstree.img", r->pid,
			       i);
			return -1;
		}
		th = vec_push(&r->threads);
		if (!th)
			return -1;
		th->tid = tc->tid;
		th->core = r->core->threads[i];
	}
	if (sigs_validate(r->core))
		return -1;
	if (img_read_one(r->dirfd, IMG_MM, r->pid, &mm_entry__descriptor, &msg))
		return -1;
	r->mm = (MmEntry *)msg;
	return 0;
}

/* glibc registered an rseq area in crest's TLS: the new address space will not have it. */
static void child_unregister_rseq(void)
{
	void *area = (char *)__builtin_thread_pointer() + __rseq_offset;
	unsigned int lens[] = {32, __rseq_size, 20};

	if (!__rseq_size)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(lens); i++)
		if (!syscall(SYS_rseq, area, lens[i], 1 /* RSEQ_FLAG_UNREGISTER */, RSEQ_SIG))
			return;
}

#define HELPERS_PER_MSG 250

/*
 * The root of a tree with its own mounts: crest's helper fds, once its mounts exist.  Each
 * arrives at the lowest free number, maybe one a helper must take: all are first put above
 * the highest helper number (the first message), and only then in place.
 */
static int receive_helpers(int sk)
{
	struct {
		int tmp, num;
	} *got = NULL;
	size_t n_got = 0;
	int top = -1;

	for (;;) {
		union {
			char buf[CMSG_SPACE(HELPERS_PER_MSG * sizeof(int))];
			struct cmsghdr align;
		} u;
		int nums[HELPERS_PER_MSG], *fds;
		struct iovec iov = {nums, sizeof(nums)};
		struct msghdr mh = {.msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = u.buf,
				    .msg_controllen = sizeof(u.buf)};
		struct cmsghdr *c;
		ssize_t n = recvmsg(sk, &mh, 0);
		size_t count;

		if (n == 1)
			break; /* the end */
		if (n <= 0 || n % sizeof(int))
			return -1;
		count = n / sizeof(int);
		if (top < 0) {
			top = nums[0];
			continue;
		}
		c = CMSG_FIRSTHDR(&mh);
		if (!c || c->cmsg_type != SCM_RIGHTS ||
		    c->cmsg_len != CMSG_LEN(count * sizeof(int)))
			return -1;
		got = realloc(got, (n_got + count) * sizeof(*got));
		if (!got)
			return -1;
		fds = (int *)CMSG_DATA(c);
		for (size_t i = 0; i < count; i++, n_got++) {
			got[n_got].num = nums[i];
			got[n_got].tmp = fcntl(fds[i], F_DUPFD, top + 1);
			if (got[n_got].tmp < 0 || close(fds[i]))
				return -1;
		}
	}
	for (size_t i = 0; i < n_got; i++)
		if (dup2(got[i].tmp, got[i].num) != got[i].num || close(got[i].tmp))
			return -1;
	free(got);
	return 0;
}

static int send_helpers(struct restore_tree *t, int sk)
{
	int top = 0;

	for (size_t i = 0; i < t->helpers.len; i++)
		top = max_t(int, top, *vec_at(&t->helpers, int, i));
	/* MSG_NOSIGNAL: a root that died is an error here, not a SIGPIPE */
	if (send(sk, &top, sizeof(top), MSG_NOSIGNAL) != sizeof(top)) {
		pr_perror("cannot hand the tree's files to its root");
		return -1;
	}
	for (size_t i = 0; i < t->helpers.len; i += HELPERS_PER_MSG) {
		size_t count = min_t(size_t, t->helpers.len - i, HELPERS_PER_MSG);
		union {
			char buf[CMSG_SPACE(HELPERS_PER_MSG * sizeof(int))];
			struct cmsghdr align;
		} u;
		int *nums = vec_at(&t->helpers, int, i);
		struct iovec iov = {nums, count * sizeof(int)};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
		struct cmsghdr *c;

		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE(count * sizeof(int));
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(count * sizeof(int));
		memcpy(CMSG_DATA(c), nums, count * sizeof(int));
		if (sendmsg(sk, &mh, MSG_NOSIGNAL) < 0) {
			pr_perror("cannot hand the tree's files to its root");
			return -1;
		}
	}
	if (send(sk, "", 1, MSG_NOSIGNAL) != 1) {
		pr_perror("cannot hand the tree's files to its root");
		return -1;
	}
	return 0;
}

/*
 * The root, until crest seizes it: quiet, and bound to die with crest.  With mounts of its
 * own, it builds them first (mnt.c); crest then opens the tree's files through its root and
 * hands them over: they are not there to inherit when it is forked.
 */
static void __attribute__((noreturn))
root_child(const struct restore_tree *t, pid_t parent, int status_fd, int wait_fd, int files_sk)
{
	uint64_t all = ~0ULL;
	char c = 0;

	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, NULL, sizeof(all));
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	/* the init of a new pid namespace sees no parent */
	if ((t->ns && t->ns->pid_ns ? getppid() != 0 : getppid() != parent))
		_exit(1);
	if (files_sk >= 0 && mnt_root_child(t)) {
		char msg[512];

		/* the reason, for crest to report: this process's is lost with it */
		snprintf(msg, sizeof(msg), "e%s", error_get());
		write(status_fd, msg, strlen(msg));
		_exit(1);
	}
	if (files_sk >= 0 && (write(status_fd, "m", 1) != 1 || receive_helpers(files_sk)))
		_exit(1);
	child_unregister_rseq();
	write(status_fd, &c, 1);
	for (;;) /* crest seizes us here and never lets this read return */
		read(wait_fd, &c, 1);
}

static int prepare_files(struct restore_tree *t);

/* Its mounts built by the root: open the tree's files, hand them over. */
static int root_files(struct restore_ctx *r, int status_fd, int sk)
{
	char msg[512];
	ssize_t n = read(status_fd, msg, sizeof(msg) - 1);

	if (n > 1 && msg[0] == 'e') {
		msg[n] = 0;
		error_set("%s", msg + 1);
		return -1;
	}
	if (n != 1 || msg[0] != 'm') {
		pr_err("task %d died before it could be restored", r->pid);
		return -1;
	}
	mnt_restore_root_made(r->child);
	return prepare_files(r->tree) || send_helpers(r->tree, sk) ? -1 : 0;
}

static int spawn_root(struct restore_ctx *r)
{
	struct clone_args args = {.exit_signal = SIGCHLD};
	int status_pipe[2], wait_pipe[2], files_sk[2] = {-1, -1};
	pid_t tid[2] = {ns_pid_of(r->tree, r->pid), r->pid}, parent = getpid();
	bool own_mounts = r->tree->ns && r->tree->ns->mnt_ns;
	char c;

	if (pipe2(status_pipe, O_CLOEXEC) || pipe2(wait_pipe, O_CLOEXEC) ||
	    (own_mounts && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, files_sk))) {
		pr_perror("pipe");
		return -1;
	}
	args.set_tid = (uintptr_t)tid;
	args.set_tid_size = tid[0] != tid[1] ? 2 : 1;
	fflush(NULL);
	r->child = syscall(SYS_clone3, &args, sizeof(args));
	if (r->child == 0)
		root_child(r->tree, parent, status_pipe[1], wait_pipe[0], files_sk[1]);
	/*
	 * The child's ends are closed here, so that its death reads as the end of the pipe, but
	 * their numbers stay taken until it has the helpers: no helper may land on one of them.
	 */
	if (r->child > 0 && own_mounts) {
		int null = open("/dev/null", O_RDONLY | O_CLOEXEC);

		if (null < 0 || dup3(null, status_pipe[1], O_CLOEXEC) < 0 ||
		    dup3(null, wait_pipe[0], O_CLOEXEC) < 0 ||
		    dup3(null, files_sk[1], O_CLOEXEC) < 0) {
			pr_perror("cannot keep the root's fds apart");
			r->exists = true;
			r->child = -1;
		} else if (root_files(r, status_pipe[0], files_sk[0])) {
			r->exists = true;
			r->child = -1;
		}
		if (null >= 0)
			close(null);
	}
	close(status_pipe[1]);
	close(wait_pipe[0]);
	if (files_sk[0] >= 0) {
		close(files_sk[0]);
		close(files_sk[1]);
	}
	if (r->child < 0 && r->exists) {
		/* already reported */
	} else if (r->child < 0) {
		if (errno == EEXIST)
			pr_err("pid %d is already in use: cannot restore with the same pid",
			       r->pid);
		else
			pr_perror("cannot create task %d (clone3 with set_tid)", r->pid);
		r->child = 0;
	} else {
		r->exists = true;
		if (read(status_pipe[0], &c, 1) != 1) {
			pr_err("task %d died before it could be restored", r->pid);
			r->child = -1;
		}
	}
	close(status_pipe[0]);
	close(wait_pipe[1]);
	if (r->child <= 0)
		return -1;
	if (ptrace_seize_stop(r->child, true))
		return -1;
	return ptrace(PTRACE_SETOPTIONS, r->child, 0,
		      PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL | PTRACE_O_TRACEFORK |
			      PTRACE_O_TRACECLONE)
		       ? -1
		       : 0;
}

static int wait_new_task(pid_t tid)
{
	int status;

	while (waitpid(tid, &status, __WALL) < 0) {
		if (errno != EINTR) {
			pr_perror("waiting for new task %d", tid);
			return -1;
		}
	}
	if (!WIFSTOPPED(status)) {
		pr_err("new task %d died at birth", tid);
		return -1;
	}
	return 0;
}

/* clone3 in task `in` (a remote syscall), the new task or thread stopped under our trace. */
static pid_t remote_clone(struct restore_ctx *in, struct rsys *rs, pid_t tid, uint64_t flags,
			  int exit_signal)
{
	struct {
		struct clone_args args;
		pid_t tid[2]; /* in the tree's pid namespace, then in crest's */
	} a;
	long ret;

	memset(&a, 0, sizeof(a));
	a.args.flags = flags;
	a.args.exit_signal = exit_signal;
	a.args.set_tid = rs->scratch + offsetof(typeof(a), tid);
	a.tid[0] = ns_pid_of(in->tree, tid);
	a.tid[1] = tid;
	a.args.set_tid_size = a.tid[0] != tid ? 2 : 1;
	if (rsys_poke(rs, rs->scratch, &a, sizeof(a)))
		return -1;
	ret = rsys2(rs, SYS_clone3, rs->scratch, sizeof(a.args));
	if (ret != a.tid[0]) {
		if (ret == -EEXIST)
			pr_err("pid %d is already in use: cannot restore with the same pid", tid);
		else
			rcheck(in, "clone3", ret);
		return -1;
	}
	return wait_new_task(tid) ? -1 : tid;
}

static int attach_thread(struct restore_ctx *r, struct restore_thread *th)
{
	th->rs.tid = th->tid;
	th->rs.ip = r->rs.ip;
	th->rs.scratch = r->rs.scratch;
	th->rs.scratch_len = r->rs.scratch_len;
	th->attached = true;
	return ptrace_get_regs(th->tid, &th->rs.regs);
}

/* A zombie: born from its parent, it dies at once with the status its parent will reap. */
static int make_zombie(struct restore_ctx *parent, struct restore_ctx *z)
{
	int wstatus = z->pstree->has_exit_status ? z->pstree->exit_status : 0, status;
	struct rsys rs = parent->rs;
	struct user_regs_struct regs;
	int sig = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;

	if (remote_clone(parent, &parent->rs, z->pid, 0, SIGCHLD) < 0)
		return -1;
	z->child = z->pid;
	z->exists = true;
	uint64_t none = 0;

	rs.tid = z->pid;
	if (ptrace_get_regs(z->pid, &rs.regs) ||
	    ptrace(PTRACE_SETSIGMASK, z->pid, sizeof(none), &none))
		return -1;
	if (z->pstree->sid == (uint32_t)z->pid && rcheck(z, "setsid", rsys0(&rs, SYS_setsid)))
		return -1;
	if (z->pstree->pgid == (uint32_t)z->pid && z->pstree->sid != (uint32_t)z->pid &&
	    rcheck(z, "setpgid", rsys2(&rs, SYS_setpgid, 0, 0)))
		return -1;
	/* default action for the fatal signal, whatever the parent had */
	if (sig && sig != SIGKILL && sig != SIGSTOP) {
		uint64_t ka[4] = {0};

		if (rsys_poke(&rs, rs.scratch, ka, sizeof(ka)) ||
		    rcheck(z, "rt_sigaction", rsys4(&rs, SYS_rt_sigaction, sig, rs.scratch, 0, 8)))
			return -1;
	}
	regs = rs.regs;
	regs.rip = rs.ip;
	regs.orig_rax = -1;
	regs.rax = sig ? SYS_kill : SYS_exit_group;
	regs.rdi = sig ? (unsigned long)ns_pid_of(z->tree, z->pid)
		       : (unsigned long)WEXITSTATUS(wstatus);
	regs.rsi = sig;
	if (ptrace_set_regs(z->pid, &regs) || ptrace(PTRACE_CONT, z->pid, 0, 0))
		return -1;
	for (;;) {
		if (waitpid(z->pid, &status, __WALL) < 0) {
			pr_perror("waiting for zombie %d", z->pid);
			return -1;
		}
		if (WIFEXITED(status) || WIFSIGNALED(status))
			return 0;
		/* the fatal signal's delivery stop: let it kill */
		ptrace(PTRACE_CONT, z->pid, 0,
		       WIFSTOPPED(status) && (status >> 16) == 0 ? WSTOPSIG(status) : 0);
	}
}

static int restore_one(struct restore_ctx *r);

/* Children and threads come from the task itself, once it holds what they inherit. */
static int spawn_children(struct restore_ctx *r)
{
	struct restore_tree *t = r->tree;

	for (size_t i = 0; i < t->tasks.len; i++) {
		struct restore_ctx *c = *vec_at(&t->tasks, struct restore_ctx *, i);

		if (c->parent != r)
			continue;
		if (c->pstree->zombie) {
			if (make_zombie(r, c))
				return -1;
			continue;
		}
		if (remote_clone(r, &r->rs, c->pid, 0, SIGCHLD) < 0)
			return -1;
		c->child = c->pid;
		c->exists = true;
		if (cgroup_restore_task(t, c->pid))
			return -1;
		c->rs = r->rs; /* same vdso, same scratch address, inherited */
		c->rs.tid = c->pid;
		c->rs.nr_calls = 0;
		if (ptrace_get_regs(c->pid, &c->rs.regs) || restore_one(c))
			return -1;
	}
	for (size_t i = 1; i < r->threads.len; i++) {
		struct restore_thread *th = restore_thread_at(r, i);

		if (remote_clone(r, &r->rs, th->tid, THREAD_FLAGS, 0) < 0 || attach_thread(r, th))
			return -1;
	}
	return 0;
}

bool restore_has_children(const struct restore_ctx *r)
{
	for (size_t i = 0; i < r->tree->tasks.len; i++)
		if ((*vec_at(&r->tree->tasks, struct restore_ctx *, i))->parent == r)
			return true;
	return false;
}

/*
 * A task without children has its pages read last, the last read left running on the other
 * CPUs while crest goes on with the next tasks on its own (a tree of 100 leaves of 8 MiB on
 * this 2-CPU VM: 5.4 ms a task instead of 8.1-9.6).  Settled before anything else is asked of
 * it; nothing its other steps do needs the pages' contents (rseq's registration writes its
 * area, overwritten by the read, but the kernel writes it again before the task runs).
 */
static int settle(struct restore_ctx *r)
{
	if (!r->fill_async)
		return 0;
	r->fill_async = false;
	return mem_restore_fill_finish(r);
}

/* Everything of one task but what waits for the whole tree (credentials, registers). */
static int restore_one(struct restore_ctx *r)
{
	if (attach_thread(r, restore_thread_at(r, 0)))
		return -1;
	restore_thread_at(r, 0)->rs = r->rs;
	pr_debug("task %d: restoring", r->pid);
	r->fill_async = r->parent && !r->opts->lazy_pages && !restore_has_children(r);
	if (r->parent ? mem_restore_inherited(r) : mem_restore(r))
		return -1;
	pr_debug("task %d: memory done (%lu remote syscalls)", r->pid, r->rs.nr_calls);
	if (files_restore(r) || files_restore_in_task(r) || task_restore(r) ||
	    tty_restore_ctty(r) || sigs_restore(r))
		return -1;
	restore_thread_at(r, 0)->rs.ip = r->rs.ip; /* the vdso may have moved */
	restore_thread_at(r, 0)->rs.scratch = r->rs.scratch;
	restore_thread_at(r, 0)->rs.scratch_len = r->rs.scratch_len;
	if (spawn_children(r) || sigs_restore_pending(r) || timers_restore(r) ||
	    task_restore_late(r))
		return -1;
	for (size_t i = 0; i < r->threads.len; i++) {
		struct restore_thread *th = restore_thread_at(r, i);

		if (sigs_restore_thread(r, th) || task_restore_thread(r, th))
			return -1;
	}
	return r->fill_async ? mem_restore_fill(r) : 0;
}

/*
 * A process group whose leader is gone still needs a process with the leader's pid to be
 * created: a helper, forked by the member's parent (so it is in the same session) without an
 * exit signal, makes itself the group leader; once the members joined, it exits and its parent
 * reaps it.
 */
static int group_helper(struct restore_tree *t, struct restore_ctx *member, pid_t pgid)
{
	struct restore_ctx *p = member->parent;
	struct rsys rs;
	pid_t *slot;

	for (size_t i = 0; i < t->group_helpers.len; i++)
		if (*vec_at(&t->group_helpers, pid_t, i) == pgid)
			return 0;
	if (!p || pid_is_free(pgid))
		return -1;
	if (remote_clone(p, &p->rs, pgid, 0, 0) < 0)
		return -1;
	slot = vec_push(&t->group_helpers);
	if (!slot)
		return -1;
	*slot = pgid;
	rs = p->rs;
	rs.tid = pgid;
	if (ptrace_get_regs(pgid, &rs.regs) ||
	    rcheck(member, "setpgid (group helper)", rsys2(&rs, SYS_setpgid, 0, 0)))
		return -1;
	return 0;
}

static int finish_group_helpers(struct restore_tree *t)
{
	for (size_t i = 0; i < t->group_helpers.len; i++) {
		pid_t h = *vec_at(&t->group_helpers, pid_t, i);
		struct restore_ctx *p = NULL;
		struct user_regs_struct regs;
		int status;

		/* its parent: the task whose child it is */
		for (size_t j = 0; j < t->tasks.len && !p; j++) {
			struct restore_ctx *r = *vec_at(&t->tasks, struct restore_ctx *, j);
			struct proc_stat st;

			if (r->core && !proc_parse_stat(h, &st) && st.ppid == r->pid)
				p = r;
		}
		if (!p || ptrace_get_regs(h, &regs))
			return -1;
		regs.rip = p->rs.ip;
		regs.orig_rax = -1;
		regs.rax = SYS_exit_group;
		regs.rdi = 0;
		if (ptrace_set_regs(h, &regs) || ptrace(PTRACE_CONT, h, 0, 0))
			return -1;
		while (waitpid(h, &status, __WALL) == h && !WIFEXITED(status) &&
		       !WIFSIGNALED(status))
			ptrace(PTRACE_CONT, h, 0, 0);
		if (rsys4(&p->rs, SYS_wait4, ns_pid_of(t, h), 0, __WALL, 0) != ns_pid_of(t, h)) {
			pr_err("cannot reap the group helper %d", h);
			return -1;
		}
	}
	vec_free(&t->group_helpers);
	vec_free(&t->lazy_pids);
	return 0;
}

/* crest waits for the fills from now on: they may use its CPU too. */
static void fills_anywhere(struct restore_tree *t)
{
	for (size_t i = 0; t->pinned && i < t->tasks.len; i++) {
		struct restore_ctx *r = *vec_at(&t->tasks, struct restore_ctx *, i);

		if (r->fill_pending)
			sched_setaffinity(r->pid, sizeof(t->crest_cpus), &t->crest_cpus);
	}
}

/* Process groups, once every task exists: leaders first, then their members. */
static int restore_pgids(struct restore_tree *t)
{
	fills_anywhere(t);
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < t->tasks.len; i++) {
			struct restore_ctx *r = *vec_at(&t->tasks, struct restore_ctx *, i);
			pid_t pgid = r->pstree->pgid;
			bool leader = pgid == r->pid;

			if (!r->core || leader != !pass || getpgid(r->pid) == pgid ||
			    r->pstree->sid == (uint32_t)r->pid)
				continue;
			/* a shell job's root stays in the group crest runs in */
			if (!leader && !r->parent && t->opts->shell_job)
				continue;
			/* a group outside the tree's pid namespace: the one crest's root is in */
			if (t->ns && t->ns->pid_ns && !r->pstree->ns_pgid)
				continue;
			if (!leader && !task_by_pid(t, pgid) && group_helper(t, r, pgid)) {
				pr_err("cannot recreate process group %d of task %d, whose leader "
				       "is gone",
				       pgid, r->pid);
				return -1;
			}
			if (settle(r) ||
			    rcheck(r, "setpgid",
				   rsys2(&r->rs, SYS_setpgid, 0, leader ? 0 : ns_pid_of(t, pgid))))
				return -1;
		}
	}
	return finish_group_helpers(t);
}

/* The last steps of every thread of every task: what needs scratch, then without it. */
static int finish_tree(struct restore_tree *t)
{
	for (size_t i = 0; i < t->tasks.len; i++) {
		struct restore_ctx *r = *vec_at(&t->tasks, struct restore_ctx *, i);

		if (!r->core)
			continue;
		if (settle(r))
			return -1;
		for (size_t j = 0; j < r->threads.len; j++) {
			struct restore_thread *th = restore_thread_at(r, j);

			if (j == 0)
				th->rs = r->rs;
			if (creds_restore(r, th) || task_restore_dumpable(r, th) ||
			    regs_prepare_restart(r, th))
				return -1;
		}
		if (tty_restore_late(r) || locks_restore(r) ||
		    rcheck(r, "close crest's fds",
			   rsys3(&r->rs, SYS_close_range, r->helper_base, ~0U, 0)) ||
		    mqueue_restore_late(r) || rsys_scratch_unmap(&r->rs))
			return -1;
	}
	return 0;
}

/*
 * Each remote syscall is a round trip between crest and a stopped task, and the two wake each
 * other faster on one CPU than across two (no cross-CPU wake-up; ~40% of a tree's restore on
 * this 2-CPU VM).  The tree inherits this from crest and gets its own CPUs in release_tree().
 */
static void pin_to_one_cpu(struct restore_tree *t)
{
	cpu_set_t one;
	int cpu = sched_getcpu();

	if (cpu < 0 || CPU_COUNT(&t->crest_cpus) < 2)
		return;
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	t->fill_cpus = t->crest_cpus;
	CPU_CLR(cpu, &t->fill_cpus);
	t->pinned = !sched_setaffinity(0, sizeof(one), &one);
}

void restore_unpin(const struct restore_tree *t)
{
	if (t->pinned && sched_setaffinity(0, sizeof(t->crest_cpus), &t->crest_cpus))
		pr_warn("cannot give crest back its CPUs: %s", strerror(errno));
}

static int release_tree(struct restore_tree *t)
{
	/* masks and registers first everywhere, then let go: nothing runs half-set */
	for (size_t i = 0; i < t->tasks.len; i++) {
		struct restore_ctx *r = *vec_at(&t->tasks, struct restore_ctx *, i);

		if (r->core)
			task_restore_affinity(r, &t->crest_cpus);
		for (size_t j = 0; r->core && j < r->threads.len; j++) {
			struct restore_thread *th = restore_thread_at(r, j);
			uint64_t blocked = th->core->blocked;

			if (ptrace(PTRACE_SETSIGMASK, th->tid, sizeof(blocked), &blocked)) {
				pr_perror("cannot set the signal mask of %d", th->tid);
				return -1;
			}
			if (ptrace_to_event_stop(th->tid) || regs_restore(th))
				return -1;
		}
	}
	for (size_t i = t->tasks.len; i-- > 0;) {
		struct restore_ctx *r = *vec_at(&t->tasks, struct restore_ctx *, i);

		for (size_t j = 0; r->core && j < r->threads.len; j++)
			if (ptrace_detach(restore_thread_at(r, j)->tid))
				return -1;
	}
	return 0;
}

static void kill_tree(struct restore_tree *t)
{
	int status;

	for (size_t i = 0; i < t->tasks.len; i++) {
		struct restore_ctx *r = *vec_at(&t->tasks, struct restore_ctx *, i);

		if (r->exists)
			kill(r->pid, SIGKILL);
	}
	for (size_t i = 0; i < t->group_helpers.len; i++)
		kill(*vec_at(&t->group_helpers, pid_t, i), SIGKILL);
	for (size_t i = 0; i < t->lazy_pids.len; i++)
		kill(*vec_at(&t->lazy_pids, pid_t, i), SIGKILL);
	/* crest is a subreaper while restoring: the orphans come back to it to be reaped */
	while (waitpid(-1, &status, __WALL) > 0 || errno == EINTR)
		;
}

static void tree_free(struct restore_tree *t)
{
	for (size_t i = 0; i < t->tasks.len; i++) {
		struct restore_ctx *r = *vec_at(&t->tasks, struct restore_ctx *, i);

		for (size_t j = 0; j < r->fdinfo.len; j++)
			fd_entry__free_unpacked(*vec_at(&r->fdinfo, FdEntry *, j), NULL);
		vec_free(&r->fdinfo);
		vec_free(&r->fds);
		vec_free(&r->threads);
		vec_free(&r->segs);
		vec_free(&r->lazy_segs);
		if (r->uffd > 0)
			close(r->uffd);
		for (size_t j = 0; j < r->nr_pagemap; j++)
			pagemap_entry__free_unpacked(r->pagemap[j], NULL);
		free(r->pagemap);
		free(r->vma_fds);
		if (r->pagemap_head)
			pagemap_head__free_unpacked(r->pagemap_head, NULL);
		if (r->mm)
			mm_entry__free_unpacked(r->mm, NULL);
		if (r->core)
			task_core_entry__free_unpacked(r->core, NULL);
		pstree_entry__free_unpacked(r->pstree, NULL);
		free(r);
	}
	vec_free(&t->tasks);
	for (size_t i = 0; i < t->files.len; i++)
		file_entry__free_unpacked(*vec_at(&t->files, FileEntry *, i), NULL);
	vec_free(&t->files);
	free(t->file_fds);
	free(t->file_done);
	vec_free(&t->vma_files);
	for (size_t i = 0; i < t->helpers.len; i++)
		close(*vec_at(&t->helpers, int, i));
	vec_free(&t->helpers);
	vec_free(&t->group_helpers);
	vec_free(&t->pid_map);
	vec_free(&t->mq_notify);
	for (size_t i = 0; i < t->shmems.len; i++)
		shmem_entry__free_unpacked(*vec_at(&t->shmems, ShmemEntry *, i), NULL);
	vec_free(&t->shmems);
	pipes_restore_fini(t);
	free(t->shmem_fds);
	if (t->inv)
		inventory_entry__free_unpacked(t->inv, NULL);
	if (t->dirfd >= 0)
		close(t->dirfd);
}

/*
 * Read and check every image, and open every file, before any task exists; in a tree with its
 * own mounts the files once its root has built them (spawn_root).
 */
static int prepare_tree(struct restore_tree *t)
{
	/* the tree's own network namespace before anything: every socket is made inside it */
	if (check_inventory(t) || netns_restore_enter(t) || ns_restore_enter(t) || read_pstree(t))
		return -1;
	for (size_t i = 0; i < t->tasks.len; i++)
		if (read_task(*vec_at(&t->tasks, struct restore_ctx *, i)))
			return -1;
	return t->ns && t->ns->mnt_ns ? 0 : prepare_files(t);
}

static int prepare_files(struct restore_tree *t)
{
	if (files_restore_read(t) || shmem_restore_read(t) || cgroup_restore_prepare(t))
		return -1;
	for (size_t i = 0; i < t->tasks.len; i++) {
		struct restore_ctx *r = *vec_at(&t->tasks, struct restore_ctx *, i);

		r->helper_base = t->helper_base;
		if (r->core && (files_restore_prepare(r) || mem_restore_prepare(r)))
			return -1;
	}
	return 0;
}

int crest_restore(const struct crest_opts *opts, pid_t *root_pid)
{
	struct restore_tree t = {
		.opts = opts,
		.dirfd = -1,
		.tasks = VEC_INIT(struct restore_ctx *),
		.files = VEC_INIT(FileEntry *),
		.vma_files = VEC_INIT(struct vma_file),
		.helpers = VEC_INIT(int),
		.group_helpers = VEC_INIT(pid_t),
		.shmems = VEC_INIT(ShmemEntry *),
	};
	struct restore_ctx *root;
	struct rlimit nofile;
	uint64_t t0 = now_ns(CLOCK_MONOTONIC), calls = 0;
	int ret = -1, was_subreaper = 0;

	error_reset();
	/* Helpers sit above the tasks' highest fd: allow as many as the hard limit does. */
	if (!getrlimit(RLIMIT_NOFILE, &nofile) && nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &nofile);
	}
	t.pipes = (struct vec){.elem = pipe_obj_size()};
	t.inet_socks = (struct vec){.elem = inet_sock_size()};
	t.lazy_pids = (struct vec){.elem = sizeof(pid_t)};
	t.lazy_go[0] = t.lazy_go[1] = -1;
	t.pid_map = (struct vec)VEC_INIT(struct pid_pair);
	t.veth_outside = (struct vec){.elem = IFNAMSIZ};
	t.host_ns.uts = t.host_ns.ipc = t.host_ns.pid = -1;
	prctl(PR_GET_CHILD_SUBREAPER, &was_subreaper, 0, 0, 0);
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	t.host_netns = -1;
	/* crest's CPUs: the fallback for a task's affinity, and given back to crest at the end */
	if (!sched_getaffinity(0, sizeof(t.crest_cpus), &t.crest_cpus))
		pin_to_one_cpu(&t);
	t.dirfd = open_images_dir(opts->images_dir, false);
	if (t.dirfd < 0 || prepare_tree(&t))
		goto out;
	root = *vec_at(&t.tasks, struct restore_ctx *, 0);
	if (spawn_root(root) || ns_restore_root_made(&t) || cgroup_restore_task(&t, root->pid))
		goto out;
	root->rs.tid = root->child;
	if (ptrace_get_regs(root->child, &root->rs.regs) || restore_one(root) ||
	    restore_pgids(&t) || finish_tree(&t) ||
	    (t.ns && t.ns->ipc_ns && ipc_restore_fini(t.dirfd)) || inet_restore_finish(&t) ||
	    release_tree(&t))
		goto out;
	for (size_t i = 0; i < t.tasks.len; i++) {
		struct restore_ctx *r = *vec_at(&t.tasks, struct restore_ctx *, i);

		calls += r->rs.nr_calls;
		for (size_t j = 1; j < r->threads.len; j++)
			calls += restore_thread_at(r, j)->rs.nr_calls;
	}
	pr_info("restored %zu tasks: %llu remote syscalls, %.3f ms", t.tasks.len,
		(unsigned long long)calls, (now_ns(CLOCK_MONOTONIC) - t0) / 1e6);
	if (root_pid)
		*root_pid = root->pid;
	ret = 0;
out:
	if (ret)
		kill_tree(&t);
	prctl(PR_SET_CHILD_SUBREAPER, was_subreaper, 0, 0, 0);
	restore_unpin(&t);
	cgroup_restore_fini(&t, ret == 0);
	ghost_restore_fini(&t, ret == 0);
	tty_restore_fini(&t);
	inet_restore_fini(&t);
	ns_restore_leave(&t);
	netns_restore_leave(&t, ret == 0);
	tree_free(&t);
	/* last: a hundred servers starting their copies at once would starve what is left */
	lazy_release(&t);
	return ret;
}
