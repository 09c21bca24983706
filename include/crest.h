/* SPDX-License-Identifier: MIT */
/*
 * libcrest: the engine entry points.  The CLI (criu/main.c) is a thin front over these, and
 * the library and service for managers expose them unchanged.  Entry points never exit the
 * process: they return 0 on success or -1 with a one-line reason in crest_last_error().
 */
#ifndef CREST_H
#define CREST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#define CREST_VERSION "0.1.0"

struct crest_opts {
	pid_t pid;		 /* -t: root of the tree to dump */
	const char *images_dir;	 /* -D */
	const char *log_file;	 /* -o: relative names go into images_dir */
	int verbosity;		 /* -v0..-v4, default 2 (errors + warnings) */
	bool leave_running;	 /* --leave-running */
	bool shell_job;		 /* --shell-job */
	bool restore_detached;	 /* -d */
	const char *pidfile;	 /* --pidfile */
	bool skip_file_size_check; /* --skip-file-size-check */
	const char *prev_images_dir; /* --prev-images-dir (accepted; used by pre-dump later) */
	bool track_mem;		 /* --track-mem */
	bool tcp_established;	 /* --tcp-established (accepted; later) */
	bool ext_unix_sk;	 /* --ext-unix-sk (accepted; later) */
	bool file_locks;	 /* --file-locks (accepted; later) */
	bool manage_cgroups;	 /* --manage-cgroups (accepted; later) */
	const char *root;	 /* --root */
};

void crest_opts_init(struct crest_opts *opts);

/* Checkpoint the tree rooted at opts->pid into opts->images_dir. */
int crest_dump(const struct crest_opts *opts);

/* Rebuild the tree from opts->images_dir.  On success *root_pid is the restored root. */
int crest_restore(const struct crest_opts *opts, pid_t *root_pid);

/* Probe the kernel features crest relies on and print a yes/no report to out.
 * Returns 0 when every feature the core needs is present. */
int crest_check(FILE *out);

/* Decode an image file, or every image in a directory, to JSON on out. */
int crest_show(const char *path, FILE *out);

/* The reason the last entry point on this thread failed. */
const char *crest_last_error(void);

#endif
