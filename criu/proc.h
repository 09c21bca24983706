/* SPDX-License-Identifier: MIT */
/* Parsers for what /proc/PID tells about a task. */
#ifndef CREST_PROC_H
#define CREST_PROC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "util.h"

/* smaps VmFlags we care about */
enum {
	VMF_GROWSDOWN = 1 << 0,	    /* gd */
	VMF_LOCKED = 1 << 1,	    /* lo */
	VMF_DONTCOPY = 1 << 2,	    /* dc */
	VMF_WIPEONFORK = 1 << 3,    /* wf */
	VMF_DONTDUMP = 1 << 4,	    /* dd */
	VMF_HUGEPAGE = 1 << 5,	    /* hg */
	VMF_NOHUGEPAGE = 1 << 6,    /* nh */
	VMF_MERGEABLE = 1 << 7,	    /* mg */
	VMF_MAYWRITE = 1 << 8,	    /* mw */
	VMF_SEQREAD = 1 << 9,	    /* sr */
	VMF_RANDREAD = 1 << 10,	    /* rr */
	VMF_LOCKONFAULT = 1 << 11,  /* lf */
	VMF_IO = 1 << 12,	    /* io: device memory, never dumpable */
	VMF_PFNMAP = 1 << 13,	    /* pf */
	VMF_UFFD_WP = 1 << 14,	    /* uw */
	VMF_UFFD_MISSING = 1 << 15, /* um */
};

struct proc_vma {
	unsigned long start, end, pgoff;
	unsigned int prot;
	bool shared;
	unsigned int dev_major, dev_minor;
	unsigned long ino;
	unsigned int vmflags;
	bool tracked;	 /* registered for dirty tracking (track.c) */
	char path[4096]; /* "" for plain anonymous memory */
};

/* Every VMA of the task, in address order (elements: struct proc_vma). */
int proc_parse_smaps(pid_t pid, struct vec *vmas);
/* The same without VmFlags (vmflags 0), from the cheaper /proc/PID/maps. */
int proc_parse_maps(pid_t pid, struct vec *vmas);
/*
 * The VMAs of a maps or smaps text, appended to vmas; logs nothing (threads use it).  On
 * failure *bad_line is the line that did not parse, or NULL when memory ran out.
 */
int proc_vmas_parse(const char *text, struct vec *vmas, const char **bad_line);
/*
 * The same from /proc/PID/FILE ("maps" or "smaps"), logging nothing: 0 or an errno (EINVAL: a
 * line did not parse; its first bad_len - 1 bytes are in bad).
 */
int proc_read_vmas(pid_t pid, const char *file, struct vec *vmas, char *bad, size_t bad_len);
/* Append the pids in /proc/PID/task/TID/children to pids (pid_t); -1 with errno on failure. */
int proc_read_children(pid_t pid, pid_t tid, struct vec *pids);

struct proc_stat {
	char state;
	pid_t ppid, pgid, sid;
	int tty_nr;
	unsigned long start_code, end_code, start_stack;
	unsigned long start_data, end_data, start_brk;
	unsigned long arg_start, arg_end, env_start, env_end;
	long num_threads;
	int exit_code; /* wait status, for zombies */
};
int proc_parse_stat(pid_t pid, struct proc_stat *st);

struct proc_status {
	unsigned int umask;
	unsigned int uid[4], gid[4]; /* real, effective, saved, fs */
	unsigned int groups[256];
	int ngroups;
	uint64_t cap_inh, cap_prm, cap_eff, cap_bnd, cap_amb;
	bool no_new_privs;
	uint64_t sig_cgt, sig_ign, sig_blk, sig_pnd, shd_pnd;
	int threads;
	int seccomp;
};
int proc_parse_status(pid_t pid, struct proc_status *st);

struct proc_timer {
	int id;
	int signo;
	uint64_t sigev_value;
	int notify; /* SIGEV_* */
	int notify_tid;
	int clockid;
};
/* /proc/PID/timers (elements: struct proc_timer) */
int proc_parse_timers(pid_t pid, struct vec *timers);

#endif
