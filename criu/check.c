// SPDX-License-Identifier: MIT
/*
 * crest check: probe the kernel features the engine relies on by really using each one, on
 * ourselves or on a throwaway child, rather than trusting version numbers or config files:
 * distribution kernels backport, trim and restrict features independently of their version.
 * Anything that could disturb crest itself (changing mm fields, write-protecting memory) runs
 * in a forked child under an alarm, so a broken kernel costs a "no", never a hang.
 */
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/kcmp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "compat/pagemap_scan.h"
#include "compat/uffd.h"
#include "crest.h"
#include "log.h"

#define PG 4096UL

/* What the throwaway tracee shares with us, for the probes that need a second process. */
struct probe_env {
	pid_t child;   /* paused child, -1 when fork failed */
	bool seized;   /* ptrace probe attached and stopped it */
	int shared_fd; /* an fd the child inherited: same open file in both */
	int fork_errno;
};

struct probe {
	const char *name;
	bool core; /* dump or restore cannot work without it */
	bool (*run)(struct probe_env *env, char *detail, size_t len);
};

/* A value the child holds at the same address as we do: fork copies the address space. */
static volatile uint64_t probe_magic = 0x6372657374636b31ULL;

static bool no(char *detail, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, len, fmt, ap);
	va_end(ap);
	return false;
}

static bool yes(char *detail, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, len, fmt, ap);
	va_end(ap);
	return true;
}

/*
 * Run fn in a forked child with a deadline.  fn returns 0 for success or an errno; the result
 * is that value, or -1 when the child died (the alarm included) or could not be forked.
 */
static int run_in_child(int (*fn)(void), unsigned int timeout_s)
{
	int status;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		alarm(timeout_s);
		_exit(fn());
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void env_setup(struct probe_env *env)
{
	env->seized = false;
	env->fork_errno = 0;
	env->shared_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	fflush(NULL);
	env->child = fork();
	if (env->child < 0) {
		env->fork_errno = errno;
		return;
	}
	if (env->child == 0) {
		for (;;)
			pause();
	}
}

static void env_teardown(struct probe_env *env)
{
	if (env->child > 0) {
		kill(env->child, SIGKILL);
		while (waitpid(env->child, NULL, __WALL) < 0 && errno == EINTR)
			;
	}
	if (env->shared_fd >= 0)
		close(env->shared_fd);
}

/* SEIZE + INTERRUPT is exactly how the engine freezes a task without sending it a signal. */
static bool probe_ptrace(struct probe_env *env, char *d, size_t n)
{
	int status;

	if (env->child < 0)
		return no(d, n, "fork: %s", strerror(env->fork_errno));
	if (ptrace(PTRACE_SEIZE, env->child, NULL, (void *)(long)PTRACE_O_TRACESYSGOOD))
		return no(d, n, "PTRACE_SEIZE: %s", strerror(errno));
	if (ptrace(PTRACE_INTERRUPT, env->child, NULL, NULL))
		return no(d, n, "PTRACE_INTERRUPT: %s", strerror(errno));
	while (waitpid(env->child, &status, __WALL) < 0)
		if (errno != EINTR)
			return no(d, n, "waitpid: %s", strerror(errno));
	if (!WIFSTOPPED(status))
		return no(d, n, "tracee did not stop (status %#x)", status);
	env->seized = true;
	return yes(d, n, "seize, interrupt");
}

/* Layout of PTRACE_GET_RSEQ_CONFIGURATION's result (Linux 5.13), not in every libc. */
struct rseq_conf {
	uint64_t rseq_abi_pointer;
	uint32_t rseq_abi_size;
	uint32_t signature;
	uint32_t flags;
	uint32_t pad;
};

static bool probe_rseq_conf(struct probe_env *env, char *d, size_t n)
{
	struct rseq_conf conf;
	long ret;

	if (!env->seized)
		return no(d, n, "needs a stopped tracee; ptrace failed");
	memset(&conf, 0, sizeof(conf));
	ret = ptrace((enum __ptrace_request)PTRACE_GET_RSEQ_CONFIGURATION, env->child,
		     (void *)sizeof(conf), &conf);
	if (ret < 0)
		return no(d, n, "%s", strerror(errno));
	if (conf.rseq_abi_pointer)
		return yes(d, n, "rseq registered, %u bytes", conf.rseq_abi_size);
	return yes(d, n, "no rseq registered by libc");
}

static bool probe_process_vm_readv(struct probe_env *env, char *d, size_t n)
{
	uint64_t val = 0;
	struct iovec local = {&val, sizeof(val)};
	struct iovec remote = {(void *)&probe_magic, sizeof(val)};

	if (env->child < 0)
		return no(d, n, "no child to read from");
	if (process_vm_readv(env->child, &local, 1, &remote, 1, 0) != sizeof(val))
		return no(d, n, "%s", strerror(errno));
	if (val != probe_magic)
		return no(d, n, "read back the wrong value");
	return yes(d, n, "");
}

static bool probe_pidfd_getfd(struct probe_env *env, char *d, size_t n)
{
	struct stat ours, theirs;
	int pidfd, fd;
	bool same;

	if (env->child < 0 || env->shared_fd < 0)
		return no(d, n, "no child to take an fd from");
	pidfd = syscall(SYS_pidfd_open, env->child, 0);
	if (pidfd < 0)
		return no(d, n, "pidfd_open: %s", strerror(errno));
	fd = syscall(SYS_pidfd_getfd, pidfd, env->shared_fd, 0);
	close(pidfd);
	if (fd < 0)
		return no(d, n, "%s", strerror(errno));
	same = !fstat(fd, &theirs) && !fstat(env->shared_fd, &ours) &&
	       ours.st_ino == theirs.st_ino && ours.st_dev == theirs.st_dev;
	close(fd);
	return same ? yes(d, n, "") : no(d, n, "got a different file");
}

static bool probe_kcmp(struct probe_env *env, char *d, size_t n)
{
	long ret;

	if (env->child < 0 || env->shared_fd < 0)
		return no(d, n, "no child to compare with");
	ret = syscall(SYS_kcmp, getpid(), env->child, KCMP_FILE, env->shared_fd, env->shared_fd);
	if (ret < 0)
		return no(d, n, "%s", strerror(errno));
	return ret == 0 ? yes(d, n, "") : no(d, n, "inherited fd compared unequal");
}

/* struct clone_args up to set_tid_size (CLONE_ARGS_SIZE_VER1, Linux 5.5). */
struct clone_args_v1 {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
	uint64_t set_tid, set_tid_size;
};

/* A pid just freed by a child of ours is the likeliest one to be free a moment later. */
static pid_t recently_freed_pid(void)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid == 0)
		_exit(0);
	if (pid < 0 || waitpid(pid, NULL, 0) != pid)
		return -1;
	return pid;
}

static bool probe_clone3_set_tid(struct probe_env *env, char *d, size_t n)
{
	struct clone_args_v1 args;
	pid_t want, got;
	int attempt;

	for (attempt = 0; attempt < 5; attempt++) {
		want = recently_freed_pid();
		if (want < 0)
			return no(d, n, "fork: %s", strerror(errno));
		memset(&args, 0, sizeof(args));
		args.exit_signal = SIGCHLD;
		args.set_tid = (uintptr_t)&want;
		args.set_tid_size = 1;
		fflush(NULL);
		got = syscall(SYS_clone3, &args, sizeof(args));
		if (got == 0)
			_exit(0);
		if (got > 0) {
			waitpid(got, NULL, 0);
			if (got != want)
				return no(d, n, "asked for pid %d, got %d", want, got);
			return yes(d, n, "");
		}
		if (errno != EEXIST)
			break;
	}
	if (errno == EPERM)
		return no(d, n, "needs CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN");
	if (errno == ENOSYS)
		return no(d, n, "no clone3");
	return no(d, n, "%s", strerror(errno));
}

/* Scan a fresh mapping with one touched page: exactly that page must come back present. */
static bool probe_pagemap_scan(struct probe_env *env, char *d, size_t n)
{
	struct page_region regs[4];
	struct pm_scan_arg arg;
	char *p;
	int fd, ret;

	fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return no(d, n, "/proc/self/pagemap: %s", strerror(errno));
	p = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		close(fd);
		return no(d, n, "mmap: %s", strerror(errno));
	}
	p[PG] = 1;
	memset(&arg, 0, sizeof(arg));
	arg.size = sizeof(arg);
	arg.start = (uintptr_t)p;
	arg.end = (uintptr_t)p + 4 * PG;
	arg.vec = (uintptr_t)regs;
	arg.vec_len = 4;
	arg.category_mask = PAGE_IS_PRESENT;
	arg.return_mask = PAGE_IS_PRESENT;
	ret = ioctl(fd, PAGEMAP_SCAN, &arg);
	close(fd);
	munmap(p, 4 * PG);
	if (ret < 0)
		return no(d, n, "%s",
			  errno == ENOTTY || errno == EINVAL ? "no such ioctl (Linux < 6.7)"
							     : strerror(errno));
	if (ret != 1 || regs[0].start != (uintptr_t)p + PG || regs[0].end != (uintptr_t)p + 2 * PG)
		return no(d, n, "unexpected answer (%d regions)", ret);
	return yes(d, n, "");
}

static int uffd_open(void)
{
	int fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	/* vm.unprivileged_userfaultfd=0 still allows user-mode-only faults, all we need. */
	if (fd < 0 && errno == EPERM)
		fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd < 0) {
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);

		if (dev < 0)
			return -1;
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		close(dev);
	}
	return fd;
}

/* PAGEMAP_SCAN over [p, p + len): the number of written pages, or -1. */
static long written_pages(int pagemap, char *p, size_t len, bool wp_them)
{
	struct page_region regs[8];
	struct pm_scan_arg arg = {
		.size = sizeof(arg),
		.flags = wp_them ? PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC : 0,
		.start = (uintptr_t)p,
		.end = (uintptr_t)p + len,
		.vec = (uintptr_t)regs,
		.vec_len = 8,
		.category_mask = PAGE_IS_WRITTEN,
		.return_mask = PAGE_IS_WRITTEN,
	};
	long pages = 0;
	int ret = ioctl(pagemap, PAGEMAP_SCAN, &arg);

	for (int i = 0; i < ret; i++)
		pages += (regs[i].end - regs[i].start) / PG;
	return ret < 0 ? -1 : pages;
}

/*
 * The whole dirty-tracking cycle the engine will drive in a target: arm WP-async, write-protect
 * everything, dirty one page, find exactly that page.  Runs in a child: if async mode were not
 * really in effect, the write would wait forever for a fault handler.
 */
static int uffd_wp_async_cycle(void)
{
	struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC};
	struct uffdio_register reg;
	int uffd, pagemap;
	char *p;

	uffd = uffd_open();
	if (uffd < 0)
		return errno;
	if (ioctl(uffd, UFFDIO_API, &api))
		return errno == EINVAL ? EOPNOTSUPP : errno;
	p = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return errno;
	memset(p, 1, 4 * PG);
	reg.range.start = (uintptr_t)p;
	reg.range.len = 4 * PG;
	reg.mode = UFFDIO_REGISTER_MODE_WP;
	if (ioctl(uffd, UFFDIO_REGISTER, &reg))
		return errno;
	pagemap = open("/proc/self/pagemap", O_RDONLY);
	if (pagemap < 0)
		return errno;
	if (written_pages(pagemap, p, 4 * PG, true) < 0)
		return errno;
	if (written_pages(pagemap, p, 4 * PG, false) != 0)
		return EBADE;
	p[2 * PG] = 2;
	if (written_pages(pagemap, p, 4 * PG, false) != 1)
		return EBADE;
	return 0;
}

static bool probe_uffd_wp_async(struct probe_env *env, char *d, size_t n)
{
	int ret = run_in_child(uffd_wp_async_cycle, 5);

	if (ret == 0)
		return yes(d, n, "dirty tracking verified");
	if (ret < 0)
		return no(d, n, "the test child died or hung");
	if (ret == EOPNOTSUPP)
		return no(d, n, "UFFD_FEATURE_WP_ASYNC refused (Linux < 6.7)");
	if (ret == EBADE)
		return no(d, n, "PAGE_IS_WRITTEN did not match the pages written");
	return no(d, n, "%s", strerror(ret));
}

/* With CONFIG_MEM_SOFT_DIRTY, every new VMA carries the "sd" flag in smaps. */
static bool probe_soft_dirty(struct probe_env *env, char *d, size_t n)
{
	char line[512], want[32];
	bool in_vma = false, found = false;
	FILE *f;
	void *p;

	p = mmap(NULL, PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return no(d, n, "mmap: %s", strerror(errno));
	snprintf(want, sizeof(want), "%lx-", (unsigned long)p);
	f = fopen("/proc/self/smaps", "re");
	if (!f) {
		munmap(p, PG);
		return no(d, n, "/proc/self/smaps: %s", strerror(errno));
	}
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, want, strlen(want)))
			in_vma = true;
		else if (in_vma && !strncmp(line, "VmFlags:", 8)) {
			found = strstr(line, " sd") != NULL;
			break;
		}
	}
	fclose(f);
	munmap(p, PG);
	return found ? yes(d, n, "") : no(d, n, "kernel built without CONFIG_MEM_SOFT_DIRTY");
}

static bool probe_tcp_repair(struct probe_env *env, char *d, size_t n)
{
	int on = 1, off = 0, err = 0;
	int sk = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (sk < 0)
		return no(d, n, "socket: %s", strerror(errno));
	if (setsockopt(sk, IPPROTO_TCP, TCP_REPAIR, &on, sizeof(on)))
		err = errno;
	else
		setsockopt(sk, IPPROTO_TCP, TCP_REPAIR, &off, sizeof(off));
	close(sk);
	if (err == EPERM)
		return no(d, n, "needs CAP_NET_ADMIN");
	if (err)
		return no(d, n, "%s", strerror(err));
	return yes(d, n, "");
}

static bool probe_timens(struct probe_env *env, char *d, size_t n)
{
	if (access("/proc/self/ns/time", F_OK))
		return no(d, n, "/proc/self/ns/time: %s", strerror(errno));
	return yes(d, n, "");
}

/* Containers: crest makes the tree's namespaces by unsharing them itself (in a child here). */
static bool probe_container_ns(struct probe_env *env, char *d, size_t n)
{
	int status;
	pid_t c = fork();

	if (c == 0)
		_exit(unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID |
			      CLONE_NEWNET)
			      ? errno
			      : 0);
	if (c < 0 || waitpid(c, &status, 0) != c || !WIFEXITED(status))
		return no(d, n, "cannot run the probe");
	if (WEXITSTATUS(status))
		return no(d, n, "unshare: %s", strerror(WEXITSTATUS(status)));
	return yes(d, n, "pid, mount, uts, ipc, net");
}

/* SysV objects come back with their ids through these (CONFIG_CHECKPOINT_RESTORE). */
static bool probe_ipc_next_id(struct probe_env *env, char *d, size_t n)
{
	if (access("/proc/sys/kernel/shm_next_id", W_OK) ||
	    access("/proc/sys/kernel/msg_next_id", W_OK) ||
	    access("/proc/sys/kernel/sem_next_id", W_OK))
		return no(d, n, "kernel.*_next_id: %s", strerror(errno));
	return yes(d, n, "");
}

/* A tmpfs's files are archived from a detached copy of its mount. */
static bool probe_open_tree(struct probe_env *env, char *d, size_t n)
{
	int fd = syscall(SYS_open_tree, AT_FDCWD, "/", 1 /* OPEN_TREE_CLONE */ | O_CLOEXEC);

	if (fd < 0)
		return no(d, n, "open_tree: %s", strerror(errno));
	close(fd);
	return yes(d, n, "");
}

/* Read the mm fields of /proc/self/stat that PR_SET_MM_MAP takes (proc(5) fields 26..51). */
static int read_stat_mm(struct prctl_mm_map *map)
{
	unsigned long long v[52] = {0};
	char buf[2048], *s;
	ssize_t len;
	int fd, i;

	fd = open("/proc/self/stat", O_RDONLY);
	if (fd < 0)
		return -1;
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (len <= 0)
		return -1;
	buf[len] = 0;
	/* The comm may hold spaces and parentheses: fields restart after the last ')'. */
	s = strrchr(buf, ')');
	if (!s)
		return -1;
	s += 2;
	for (i = 3; i <= 51 && *s; i++) {
		if (i != 3)
			v[i] = strtoull(s, NULL, 10);
		s += strcspn(s, " ");
		s += *s == ' ';
	}
	if (i <= 51)
		return -1;
	map->start_code = v[26];
	map->end_code = v[27];
	map->start_stack = v[28];
	map->start_data = v[45];
	map->end_data = v[46];
	map->start_brk = v[47];
	map->arg_start = v[48];
	map->arg_end = v[49];
	map->env_start = v[50];
	map->env_end = v[51];
	return 0;
}

/* Set our own mm fields to the values they already have: the restore's exact call. */
static int prctl_mm_map_cycle(void)
{
	static __u64 auxv[128];
	struct prctl_mm_map map;
	unsigned int size = 0;
	ssize_t len;
	int fd;

	if (prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE, (unsigned long)&size, 0, 0))
		return errno;
	if (size != sizeof(map))
		return EBADE;
	memset(&map, 0, sizeof(map));
	if (read_stat_mm(&map))
		return EIO;
	map.brk = (uintptr_t)sbrk(0);
	fd = open("/proc/self/auxv", O_RDONLY);
	if (fd < 0)
		return errno;
	len = read(fd, auxv, sizeof(auxv));
	close(fd);
	if (len <= 0)
		return EIO;
	map.auxv = auxv;
	map.auxv_size = len;
	map.exe_fd = -1;
	if (prctl(PR_SET_MM, PR_SET_MM_MAP, (unsigned long)&map, sizeof(map), 0))
		return errno;
	return 0;
}

static bool probe_prctl_mm_map(struct probe_env *env, char *d, size_t n)
{
	int ret = run_in_child(prctl_mm_map_cycle, 5);

	if (ret == 0)
		return yes(d, n, "");
	if (ret < 0)
		return no(d, n, "the test child died");
	if (ret == EINVAL)
		return no(d, n, "refused (kernel without CONFIG_CHECKPOINT_RESTORE?)");
	if (ret == EBADE)
		return no(d, n, "unexpected struct prctl_mm_map size");
	return no(d, n, "%s", strerror(ret));
}

/* Order matters: the ptrace probe stops the shared child that the next one inspects. */
static const struct probe probes[] = {
	{"ptrace", true, probe_ptrace},
	{"PTRACE_GET_RSEQ_CONFIGURATION", false, probe_rseq_conf},
	{"process_vm_readv", true, probe_process_vm_readv},
	{"pidfd_getfd", true, probe_pidfd_getfd},
	{"kcmp", false, probe_kcmp},
	{"clone3 set_tid", true, probe_clone3_set_tid},
	{"PAGEMAP_SCAN", true, probe_pagemap_scan},
	{"userfaultfd WP async", false, probe_uffd_wp_async},
	{"soft-dirty", false, probe_soft_dirty},
	{"TCP_REPAIR", false, probe_tcp_repair},
	{"time namespaces", false, probe_timens},
	{"container namespaces", false, probe_container_ns},
	{"SysV IPC ids (kernel.*_next_id)", false, probe_ipc_next_id},
	{"open_tree (tmpfs contents)", false, probe_open_tree},
	{"PR_SET_MM_MAP", false, probe_prctl_mm_map},
};

int crest_check(FILE *out)
{
	char missing[512] = "", detail[256];
	struct probe_env env;
	size_t i;

	error_reset();
	env_setup(&env);
	for (i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		const struct probe *p = &probes[i];
		bool ok;

		detail[0] = 0;
		ok = p->run(&env, detail, sizeof(detail));
		fprintf(out, "%s: %s%s%s%s\n", p->name, ok ? "yes" : "no", detail[0] ? " (" : "",
			detail, detail[0] ? ")" : "");
		pr_info("check: %s: %s%s%s", p->name, ok ? "yes" : "no", detail[0] ? ": " : "",
			detail);
		if (!ok && p->core) {
			size_t used = strlen(missing);

			snprintf(missing + used, sizeof(missing) - used, "%s%s", used ? ", " : "",
				 p->name);
		}
	}
	env_teardown(&env);
	fflush(out);
	if (missing[0]) {
		error_set("this kernel lacks what crest needs: %s", missing);
		return -1;
	}
	return 0;
}
