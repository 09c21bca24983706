/* SPDX-License-Identifier: MIT */
/*
 * What the engine's modules share: the dump and restore contexts, and each module's dump and
 * restore entry points.  One module per kind of kernel object.
 */
#ifndef CREST_INTERNAL_H
#define CREST_INTERNAL_H

#include <sched.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/user.h>

#include "crest.h"
#include "proc.h"
#include "ptrace.h"
#include "util.h"

#include "core.pb-c.h"
#include "fdinfo.pb-c.h"
#include "inventory.pb-c.h"
#include "mm.pb-c.h"
#include "netns.pb-c.h"
#include "ns.pb-c.h"
#include "pagemap.pb-c.h"
#include "pstree.pb-c.h"
#include "shmem.pb-c.h"
#include "track.pb-c.h"

/* Bytes of remote scratch memory used for syscall arguments (iovecs, structs, strings). */
#define SCRATCH_SIZE (64UL << 10)

struct dump_thread {
	pid_t tid;
	struct user_regs_struct regs; /* as seized: put back on release */
	uint64_t blocked;	      /* signal mask as seized */
	bool masked;		      /* we blocked every signal: unblock on release */
	ThreadCoreEntry *core;	      /* being filled */
	struct rsys rs;		      /* remote syscalls in this thread (task's scratch) */
	bool gone;		      /* killed after the dump, its death taken */
};

/* An open file seen in the tree, to find fds (of any task) that share it. */
struct file_key {
	pid_t pid;
	int fd;
	uint64_t dev, ino;
	unsigned int id;
};

struct restore_ctx;
struct restore_tree;

struct shmem_key {
	uint64_t dev, ino;
	unsigned int id;
};

struct cr_img;

struct dump_tree {
	const struct crest_opts *opts;
	int dirfd;
	struct vec tasks;	/* struct dump_ctx *, parents before children */
	struct cr_img *files;	/* files.img: every open file of the tree, once */
	struct vec file_keys;	/* struct file_key */
	bool frozen_cgroup;	/* seize without waiting: the stops come after the thaw */
	struct cr_img *shmem;	/* shmem.img, opened at the first shared memory object */
	struct vec shmem_keys;	/* struct shmem_key: objects seen */
	struct vec pipes;	/* uint64_t: pipes whose data is saved */
	struct vec ghosts;	/* files-ghost.c: deleted files saved */
	struct vec pty_masters; /* tty.c: indexes of the pty masters open in the tree */
	bool pty_scanned;	/* tty.c: pty_masters is filled */
	/* incremental dumps */
	int prev_dirfd;		/* --prev-images-dir, or -1 */
	TrackEntry *prev_track; /* the previous round's tracking, if any */
	int holder_pidfd;	/* its holder process */
	bool arm;		/* (re)arm dirty tracking while scanning */
	bool pre_dump;		/* copy pages after the tree runs again */
	/* TCP connections (sk-tcp.c) and the network lock (net-lock.c) */
	struct vec tcp_repaired; /* struct tcp_repaired: sockets put in repair mode */
	int netlock_kind;	 /* enum netlock_kind */
	bool netlock_made;	 /* the lock exists (iptables: for IPv4) */
	bool netlock_made6;	 /* iptables: for IPv6 */
	pid_t netlock_pid;	 /* a task in the network namespace of the lock */
	uint64_t t_killed;	 /* CLOCK_MONOTONIC ns when the dumped tree was sent SIGKILL */
	NetnsEntry *netns;	 /* net.c: the tree's own network namespace, read before the freeze */
	ino_t netns_ino;	 /* and its inode */
	void *cgroups;		 /* cgroup.c's state */
	bool pid_ns;		 /* ns.c: the root is the init of the tree's own pid namespace */
	struct vec mnt_ids;	 /* mnt.c: uint32_t ids of the tree's own mounts, if it has them */
	struct vec vmaflags_pre; /* vmaflags.c: every task's smaps, read before the freeze */
};

struct dump_ctx {
	const struct crest_opts *opts;
	struct dump_tree *tree;
	struct dump_ctx *parent; /* parent task in the dump, NULL for the root */
	int dirfd;		 /* images directory */
	pid_t pid;
	bool zombie;
	int exit_code; /* zombies: wait status */
	struct proc_stat stat;
	struct proc_status status;
	struct vec vmas;	  /* struct proc_vma, taken while frozen (vmaflags.c) */
	bool vmaflags_unchecked;  /* vmaflags.c: their flags are from before the freeze */
	struct vmaflags_check *vmaflags_check; /* and the true ones, being read meanwhile */
	struct vec threads;	  /* struct dump_thread, the leader first */
	struct rsys rs;		  /* the leader's, owning the scratch memory */
	int pidfd;		  /* for pidfd_getfd, opened when first needed */
	int uffd;		  /* crest's copy of the task's tracking userfaultfd, or -1 */
	PagemapEntry **prev_runs; /* the previous round's pagemap of this task */
	size_t nr_prev_runs;
	struct vec page_plan; /* struct page_step: decided frozen, copied maybe later */
	TaskCoreEntry *core;  /* being filled */
	MmEntry *mm;
	/* statistics */
	uint64_t pages_scanned, pages_written, pages_zero, pages_cow, pages_parent, bytes_written;
};

#define dump_thread_at(d, i) vec_at(&(d)->threads, struct dump_thread, i)

/* One fd the restored task must have: dup3(src, fd) by a remote syscall. */
struct fd_plan {
	int fd;
	int src; /* open in crest, >= helper base, inherited by the task */
	bool cloexec;
	size_t file; /* index in restore_tree.files */
};

/* An fd being dumped, as /proc shows it. */
struct fd_info {
	int fd;		       /* its number in the task */
	const char *link;      /* readlink of /proc/PID/fd/N */
	const char *proc_path; /* /proc/PID/fd/N */
	struct stat st;	       /* stat of it (the open file's inode) */
	unsigned int flags;    /* f_flags, without O_CLOEXEC */
	uint64_t pos;
	const char *fdinfo; /* the text of /proc/PID/fdinfo/N */
	int lfd;	    /* crest's own copy of the open file (pidfd_getfd), or -1 */
};

/* One kind of open file: how it is recognised, described and reopened. */
struct fd_ops {
	const char *name;
	FdKind kind;
	bool (*match)(struct dump_ctx *d, const struct fd_info *fi);
	/* Describe the open file into f (id and kind are set); may write other images. */
	int (*dump)(struct dump_ctx *d, const struct fd_info *fi, FileEntry *f);
	/* Open it in crest; the fd becomes a helper every task inherits. */
	int (*open)(struct restore_ctx *r, const FileEntry *f);
	/* Optional: remote in the first task having it, once its fds are in place. */
	int (*restore_in_task)(struct restore_ctx *r, const FileEntry *f, int task_fd);
};

extern const struct fd_ops reg_fd_ops, chr_fd_ops, memfd_fd_ops, tty_inherit_fd_ops, pipe_fd_ops,
	fifo_fd_ops, eventfd_fd_ops, signalfd_fd_ops, timerfd_fd_ops, epoll_fd_ops, pty_fd_ops,
	inotify_fd_ops, unix_sk_fd_ops, inet_sk_fd_ops, mqueue_fd_ops;

const char *fdinfo_field(const char *fdinfo, const char *key);
void pipes_restore_fini(struct restore_tree *t);
size_t pipe_obj_size(void);
size_t inet_sock_size(void);

/* mqueue.c: notifications, once the task closed crest's fds (a close by the owner ends one) */
int mqueue_restore_late(struct restore_ctx *r);

/* lazy.c: --lazy-pages */
int lazy_take(struct restore_ctx *r);
void lazy_release(struct restore_tree *t); /* the tree runs: servers copy in the background */

/* net.c: the tree's own network namespace */
int netns_dump_prepare(struct dump_tree *t);
int netns_dump(struct dump_tree *t);
int netns_restore_enter(struct restore_tree *t);
void netns_restore_leave(struct restore_tree *t, bool ok);

/* ipc.c: the SysV and POSIX IPC objects of a tree's own ipc namespace */
int ipc_dump(int dirfd, pid_t pid);   /* pid: a task in that namespace; writes ipc.img */
int ipc_restore(int dirfd);	      /* crest is in the new, empty ipc namespace */
int ipc_restore_fini(int dirfd);      /* tasks attached their segments: remove destroyed ones */

/* cgroup.c: --manage-cgroups */
int cgroup_dump(struct dump_tree *t);		       /* every task's cgroups, their limits */
int cgroup_restore_prepare(struct restore_tree *t);     /* create them, set their limits */
int cgroup_restore_task(struct restore_tree *t, pid_t pid); /* move a new task into its own */
void cgroup_restore_fini(struct restore_tree *t, bool ok); /* failed: remove what it made */

/* Tree-wide restore state: what every task shares. */
struct restore_tree {
	const struct crest_opts *opts;
	int dirfd;
	InventoryEntry *inv;
	struct vec tasks;	  /* struct restore_ctx *, pstree order: parents first */
	struct vec files;	  /* FileEntry * from files.img */
	int *file_fds;		  /* per files entry: its helper fd, or -1 until needed */
	bool *file_done;	  /* per files entry: its restore_in_task ran */
	struct vec vma_files;	  /* struct vma_file: mapped files opened once for all tasks */
	struct vec helpers;	  /* int: crest fds every task inherits and closes at its end */
	int helper_base;	  /* every helper fd is >= this, every target fd below */
	struct vec group_helpers; /* pid_t: stand-ins for dead process group leaders */
	cpu_set_t crest_cpus;	  /* crest's own CPUs; it runs on one of them while restoring */
	cpu_set_t fill_cpus;	  /* the others: leaves fill their memory there meanwhile */
	bool pinned;		  /* crest and the tree being built run on one CPU */
	struct vec shmems;	  /* ShmemEntry *, by id - 1 */
	int *shmem_fds;		  /* per object: crest's fd (a helper), -1 until needed */
	struct vec pipes;	  /* pipes.c's pipe objects */
	struct vec ghosts;	  /* files-ghost.c's deleted files, made once for all */
	struct vec ptys;	  /* tty.c's pty pairs */
	struct vec inet_socks;	  /* sk-inet.c's sockets, made at the first one asked for */
	bool inet_built;
	bool own_netns;		  /* net.c: the tree has its own network namespace (netns.img) */
	struct vec lazy_pids;	  /* pid_t: lazy.c's servers, one per lazy task */
	int lazy_go[2];		  /* lazy.c: a pipe; its end tells servers the tree runs */
	int host_netns;		  /* crest's own namespace while crest is in the tree's, or -1 */
	void *cgroups;		  /* cgroup.c's state */
	/* ns.c, mnt.c: the tree's own pid, uts, ipc and mount namespaces */
	NsEntry *ns;		  /* ns.img, or NULL */
	struct {
		int uts, ipc, pid; /* crest's own while it is in the tree's, or -1 */
	} host_ns;
	struct vec pid_map; /* struct pid_pair: pids in the tree's pid namespace */
	struct vec mq_notify; /* mqueue.c: notifications to register again, late */
	struct vec veth_outside; /* net.c: char[IFNAMSIZ] veth ends made in crest's namespace */
};

struct pid_pair {
	pid_t pid, ns_pid;
};

/* ns.c: a container's namespaces */
int ns_dump(struct dump_tree *t);
bool ns_is_pid_init(pid_t pid); /* pid 1 of a pid namespace below crest's */
int ns_dump_pids(struct dump_tree *t, struct dump_ctx *d, PstreeEntry *ps, uint32_t *ns_tids);
int ns_restore_enter(struct restore_tree *t);
int ns_restore_pids(struct restore_tree *t, const PstreeEntry *ps);
int ns_restore_root_made(struct restore_tree *t);
void ns_restore_leave(struct restore_tree *t);
pid_t ns_pid_of(const struct restore_tree *t, pid_t pid);

/* mnt.c: its mount namespace */
int mnt_dump(struct dump_tree *t, pid_t pid, NsEntry *ns, bool delta);
void mnt_dump_free(NsEntry *ns);
MountEntry *mnt_entry_parse(const char *line); /* one mountinfo line (unit tests) */
int mnt_restore_prepare(struct restore_tree *t);
int mnt_root_child(const struct restore_tree *t);
void mnt_restore_root_made(pid_t pid);
void mnt_restore_fini(struct restore_tree *t);
const char *rpath(const char *path); /* a path of the tree as crest reaches it on restore */
bool mnt_is_outside(struct dump_tree *t, const char *fdinfo); /* on none of the tree's mounts */

struct vma_file {
	const char *path;
	bool may_write;
	int fd;
};

/* A run of pages to fill, and the image it is read from. */
struct page_seg {
	uint64_t vaddr, len;
	int fd; /* a pages image (a helper fd the task reads from) */
	uint64_t off;
	/* an lz4 block (clen > 0): clen bytes at off hold blen bytes, of which [skip, +len) */
	uint32_t clen, blen, skip;
};

struct restore_thread {
	pid_t tid;
	ThreadCoreEntry *core;
	struct rsys rs;
	struct user_regs_struct regs; /* final registers, computed before scratch goes */
	bool attached;
};

struct restore_ctx {
	const struct crest_opts *opts;
	struct restore_tree *tree;
	struct restore_ctx *parent;
	int dirfd;
	pid_t pid;
	PstreeEntry *pstree;
	TaskCoreEntry *core; /* NULL for zombies */
	MmEntry *mm;
	PagemapEntry **pagemap; /* validated runs, in address order */
	size_t nr_pagemap;
	PagemapHead *pagemap_head;
	struct vec fdinfo; /* FdEntry * */
	struct vec fds;	   /* struct fd_plan */
	int helper_base;   /* == tree->helper_base */
	int pages_fd;
	struct vec segs; /* struct page_seg: where every page with data comes from */
	int *vma_fds;	 /* per mm->vmas[i]: file to map, or -1 */
	int exe_fd;
	struct vec threads; /* struct restore_thread, the leader first */
	struct rsys rs;	    /* the leader's: remote syscalls and the scratch memory */
	pid_t child;	    /* the task once it exists (== pid) */
	bool exists;	    /* created: killed if the restore fails */
	int uffd;	    /* lazy.c: the task's userfaultfd, 0 when not lazy */
	struct vec lazy_segs; /* lazy.c: the pages it fills once the tree runs */
	/* a leaf's memory, filled last and while crest goes on (restore.c, mem.c, pages.c) */
	bool fill_async;  /* pages_restore() only starts its last read */
	bool fill_pending; /* that read runs */
	size_t fill_bytes;
	uint64_t fill_off;
};

#define restore_thread_at(r, i) vec_at(&(r)->threads, struct restore_thread, i)

/* files-ghost.c: deleted files still open or mapped */
bool ghost_is_deleted(const char *link);
int ghost_dump(struct dump_ctx *d, const char *proc_path, const char *link, const char *what,
	       uint32_t *id);
void ghost_dump_fini(struct dump_tree *t, bool ok);
int ghost_open_file(struct restore_ctx *r, const RegFileEntry *reg);
int ghost_restore_fd(struct restore_ctx *r, uint32_t id, bool may_write);
void ghost_restore_fini(struct restore_tree *t, bool ok);

/* file-locks.c: flock, POSIX and OFD locks, leases (--file-locks) */
int locks_dump_fd(struct dump_ctx *d, FdEntry *fe);
void locks_dump_free(FdEntry *fe);
int locks_restore(struct restore_ctx *r); /* last: closes crest's fds in the task first */

/* tty.c: pseudo-terminals */
int tty_restore_ctty(struct restore_ctx *r); /* after setsid, before any child exists */
int tty_restore_late(struct restore_ctx *r); /* foreground groups, once they all exist */
void tty_restore_fini(struct restore_tree *t);

/* inherit-fd.c: --inherit-fd: crest's fd for a file, -1 when none is given, -2 on error */
int inherit_fd_lookup(struct restore_tree *t, const FileEntry *f);

/* shmem.c: shared memory objects (shared anonymous memory, memfd) */
int shmem_dump_object(struct dump_ctx *d, const char *proc_path, int kind, const char *name);
char *shmem_memfd_name(const char *link);
int shmem_restore_read(struct restore_tree *t);
int shmem_restore_fd(struct restore_ctx *r, uint32_t id);
int pages_dump_shmem(struct dump_ctx *d, int fd, uint64_t size, unsigned int id);

/* track.c: dirty page tracking with userfaultfd WP-async */
int track_check(struct dump_ctx *d);
int track_arm(struct dump_ctx *d);
void track_mark(struct dump_ctx *d);
int track_save(struct dump_tree *t);
int track_load(struct dump_tree *t, int prev_dirfd);
void track_stop(struct dump_tree *t);

/* freezer.c: cgroup v1/v2 freezer */
int freezer_freeze(const char *cgroup);
int freezer_thaw(const char *cgroup);

/* mem.c: VMAs, pages, mm fields */
int mem_dump(struct dump_ctx *d, MmEntry *mm);
int mem_restore_prepare(struct restore_ctx *r);
int mem_restore(struct restore_ctx *r);		  /* fresh address space (the root) */
int mem_restore_inherited(struct restore_ctx *r); /* forked from its restored parent */
/* With r->fill_async, mem_restore_inherited() leaves the pages to these two, last of all. */
int mem_restore_fill(struct restore_ctx *r);
int mem_restore_fill_finish(struct restore_ctx *r);
const struct proc_vma *vma_find_special(const struct vec *vmas, const char *name);

int mem_vma_flags_changed(struct dump_ctx *d, VmaEntry *e, const struct proc_vma *v);

/* vmaflags.c: VMA flags read before the freeze, checked inside it */
int vmaflags_prefetch(struct dump_tree *t, pid_t root);
int vmaflags_read(struct dump_ctx *d);	      /* d->vmas, while frozen */
int vmaflags_check_start(struct dump_ctx *d); /* the true flags, read by a thread meanwhile */
int vmaflags_verify(struct dump_ctx *d);      /* before the task's images are written */
void vmaflags_free(struct dump_tree *t);
/* Copy flags from pre into now; false when a VMA of now is not in pre as it is. */
bool vmaflags_take(struct vec *now, const struct vec *pre);
/*
 * at[i]: the index in truth of dumped's VMA i, which must have the same line; truth may also
 * hold the VMA at skip.  -1 when the two layouts differ otherwise.
 */
int vmaflags_match(const struct vec *dumped, const struct vec *truth, unsigned long skip,
		   size_t *at);

/* pages.c: page contents */
int pages_plan(struct dump_ctx *d, MmEntry *mm);
int pages_execute(struct dump_ctx *d, MmEntry *mm);
int pages_restore_prepare(struct restore_ctx *r);
int pages_resolve(struct restore_ctx *r);
int pages_restore(struct restore_ctx *r);
/*
 * One preadv's worth of a pages image: pieces of memory, and of junk for the gaps between
 * them in the image (up to JUNK_GAP_MAX: a pre-copy chain's oldest image has holes where newer
 * rounds have newer copies; read through them, not around them).
 */
#define FILL_IOV_MAX 1024 /* IOV_MAX */
#define JUNK_GAP_MAX (256UL << 10)
struct fill_batch {
	struct iovec iov[FILL_IOV_MAX];
	int n, fd;
	uint64_t off, next_off;
	size_t bytes;
};
/* Add s to the batch, the gap before it read into junk (junk_len bytes); false: no room. */
bool pages_batch_add(struct fill_batch *b, const struct page_seg *s, uint64_t junk,
		     size_t junk_len);
int pages_fill_wait(struct restore_ctx *r); /* the read pages_restore() left running */
bool pages_in_range(const struct restore_ctx *r, uint64_t start, uint64_t end);
bool pages_present_in(const struct restore_ctx *r, uint64_t start, uint64_t end);
int pages_drop_inherited(struct restore_ctx *r);
/* A PE_PRESENT run (raw or lz4) whose data lies within data_size bytes of its pages image. */
bool pages_run_valid(const PagemapEntry *e, uint64_t data_size);
/* A run's pages, decompressed when it is an lz4 block, into out (nr_pages pages). */
int pages_read_run(int pages_fd, const PagemapEntry *e, void *out);

/* sigs.c: dispositions, mask, pending, sigaltstack */
int sigs_dump(struct dump_ctx *d);
int sigs_dump_thread(struct dump_ctx *d, struct dump_thread *t);
int sigs_restore(struct restore_ctx *r);
int sigs_restore_pending(struct restore_ctx *r);
int sigs_restore_thread(struct restore_ctx *r, struct restore_thread *t);
int sigs_validate(const TaskCoreEntry *core);

/* timers.c: itimers and POSIX timers */
int timers_dump(struct dump_ctx *d);
int timers_restore(struct restore_ctx *r);

/* creds.c */
int creds_dump(struct dump_ctx *d);
int creds_restore(struct restore_ctx *r, struct restore_thread *t);

/* files-reg.c: the fd table (regular files, directories, character devices, terminal) */
int files_dump(struct dump_ctx *d);
int files_restore_read(struct restore_tree *t); /* files.img, every fdinfo, the helper base */
int files_restore_prepare(struct restore_ctx *r);
int files_restore(struct restore_ctx *r);
int files_restore_in_task(struct restore_ctx *r);

/* task.c: per-task odds and ends (rlimits, umask, cwd, personality, prctl values, ...) */
int task_dump(struct dump_ctx *d);
int task_dump_thread(struct dump_ctx *d, struct dump_thread *t);
int task_restore(struct restore_ctx *r);
int task_restore_late(struct restore_ctx *r);
void task_restore_affinity(struct restore_ctx *r, const cpu_set_t *fallback);
/* restore.c: crest's own CPUs back (it ran on one while building the tree) */
void restore_unpin(const struct restore_tree *t);
/* restore.c: the task has children in the tree (forked from it, so its memory must be whole) */
bool restore_has_children(const struct restore_ctx *r);
int task_restore_thread(struct restore_ctx *r, struct restore_thread *t);
int task_restore_dumpable(struct restore_ctx *r, struct restore_thread *t);

/* regs.c: registers, FPU state and syscall restart */
int regs_dump(struct dump_ctx *d, struct dump_thread *t);
int regs_prepare_restart(struct restore_ctx *r, struct restore_thread *t);
int regs_restore(struct restore_thread *t);

/* helper fds: open in crest above every task's fd range, so the tasks inherit them */
int restore_add_helper(struct restore_tree *t, int fd);
/* Report a failed remote syscall (ret < 0) and return -1, else 0. */
int rcheck(const struct restore_ctx *r, const char *what, long ret);

#endif
