/* SPDX-License-Identifier: MIT */
/*
 * libcrest: the engine entry points.  The CLI (criu/main.c) is a thin front over these, and
 * the library and service for managers expose them unchanged.  Entry points never exit the
 * process: they return 0 on success or -1 with a one-line reason in crest_last_error().
 */
#ifndef CREST_H
#define CREST_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#define CREST_VERSION "0.1.0"

/*
 * Options of every entry point.  The CLI fills it from CRIU-compatible options; every field is
 * accepted by every verb and ignored where it does not matter, so a manager can pass one option
 * list to dump and to restore.  Paths are used as given: the caller resolves them (the CLI puts
 * a relative -o name into the work dir, which defaults to the images dir, before calling), so
 * log_file here is already the final path and the engine never joins it with anything.
 */
struct crest_opts {
	pid_t pid;			 /* -t: root of the tree to dump */
	const char *images_dir;		 /* -D */
	const char *work_dir;		 /* -W: where a relative -o goes; NULL = images_dir */
	const char *log_file;		 /* -o, resolved: NULL logs to stderr */
	int verbosity;			 /* -v0..-v4, default 2 (errors + warnings) */
	bool leave_running;		 /* --leave-running / -R */
	bool shell_job;			 /* --shell-job / -j */
	bool restore_detached;		 /* -d: nobody waits for the restored tree */
	const char *pidfile;		 /* --pidfile: written by the CLI */
	bool skip_file_size_check;	 /* --skip-file-size-check */
	const char *prev_images_dir;	 /* --prev-images-dir (accepted; used by pre-dump later) */
	bool track_mem;			 /* --track-mem */
	bool tcp_established;		 /* --tcp-established: dump TCP connections */
	bool ext_unix_sk;		 /* --ext-unix-sk (accepted; later) */
	bool file_locks;		 /* --file-locks: dump flock/POSIX/OFD locks and leases */
	bool manage_cgroups;		 /* --manage-cgroups[=MODE]: dump and restore cgroups */
	const char *manage_cgroups_mode; /* its MODE, NULL when none was given */
	const char *root;		 /* --root */
	const char *freeze_cgroup;	 /* --freeze-cgroup: freeze the tree with this cgroup */
	bool stop_tracking;		 /* pre-dump --stop-tracking */
	bool stats;			 /* --stats: stats-dump.json / stats-predump.json in -D */
	bool page_server;		 /* --page-server: images go to the page server */
	const char *address;		 /* --address of the page server */
	int port;			 /* --port of the page server, 0 = none */
	bool daemon;			 /* page-server --daemon: background once listening */
	bool compress;			 /* --compress: pages stored (and sent) lz4-compressed */
	bool tls;			 /* --tls: page server traffic in TLS */
	const char *tls_cacert;		 /* --tls-cacert: CA that peers' certificates chain to */
	const char *tls_cert;		 /* --tls-cert: our certificate (PEM) */
	const char *tls_key;		 /* --tls-key: its private key (PEM) */
	bool tls_no_cn_verify;		 /* --tls-no-cn-verify: any name in the server's cert */
	/* deleted files, inotify watches, files handed in by the caller */
	uint64_t ghost_limit; /* --ghost-limit: largest deleted file copied, 0 = 1 MiB */
	bool no_ghost_fiemap; /* --no-ghost-fiemap: copy a deleted file's holes too */
	bool link_remap;      /* --link-remap: re-link deleted files, do not copy them */
	bool force_irmap;     /* --force-irmap: find watched inodes by scanning */
	const char *const *irmap_scan_paths; /* --irmap-scan-path DIRs, NULL-terminated */
	const char *const *inherit_fds;	     /* --inherit-fd "fd[N]:KEY"s, NULL-terminated */
	/* TCP: --tcp-established above */
	const char *network_lock; /* --network-lock nftables|iptables|skip; NULL = nftables */
	bool skip_in_flight;	  /* --skip-in-flight: drop connections not yet accepted */
	const char *const *externals; /* --external veth[IN]:OUT ..., NULL-terminated */
	/* crest migrate, and page-server --migrate */
	const char *migrate_to;	   /* --to HOST[:PORT] */
	const char *fs_sync;	   /* --fs-sync rsync|drbd:RESOURCE|shared; NULL: rsync with
				      --root, else shared */
	int max_rounds;		   /* --max-rounds of pre-copy; 0 = 8 */
	int downtime_target_ms;	   /* --downtime-target; 0 = 100 */
	bool migrate;		   /* page-server --migrate: also check, sync and restore */
	bool lazy_pages;	   /* restore --lazy-pages, migrate --lazy: memory filled after
				      the tree runs (userfaultfd) */
	int progress_fd;	   /* migrate: progress lines go here (the CLI: stdout); 0 = none */
	/* dump and pre-dump fill it when set */
	struct crest_round_stats *round_stats;
	/*
	 * dump: called once the images are complete, the tree still frozen; non-zero keeps the
	 * tree alive (it runs on as after a failed dump, and the dump fails).  For migrate.
	 */
	int (*before_kill)(void *arg);
	void *before_kill_arg;
};

/* What one dump or pre-dump round did. */
struct crest_round_stats {
	uint64_t pages_scanned, pages_written, bytes_written;
	double frozen_ms, total_ms;
	uint64_t frozen_at_ns; /* CLOCK_MONOTONIC when the tree was stopped */
};

/* The defaults: everything off, verbosity 2. */
static inline void crest_opts_init(struct crest_opts *opts)
{
	*opts = (struct crest_opts){.verbosity = 2};
}

/* Checkpoint the tree rooted at opts->pid into opts->images_dir. */
int crest_dump(const struct crest_opts *opts);

/* Copy the tree's memory while it runs; with --prev-images-dir only what changed since. */
int crest_pre_dump(const struct crest_opts *opts);

/* End the dirty-page tracking that the pre-dump in opts->images_dir left running. */
int crest_stop_tracking(const struct crest_opts *opts);

/*
 * Rebuild the tree from opts->images_dir.  On success *root_pid is the restored root, running,
 * and a child of the caller, so a caller that did not ask for -d can waitpid() it.
 */
int crest_restore(const struct crest_opts *opts, pid_t *root_pid);

/* Probe the kernel features crest relies on and print a yes/no report to out.
 * Returns 0 when every feature the core needs is present. */
int crest_check(FILE *out);

/*
 * Receive dumps from --page-server clients into opts->images_dir (one directory per round,
 * named after the client's -D) until a final dump is stored or SIGTERM/SIGINT.  With
 * opts->daemon it returns at once in the caller, once listening (the pid in opts->pidfile),
 * and the server returns from it in a child of its own when done.
 */
int crest_page_server(const struct crest_opts *opts);

/*
 * Move the tree rooted at opts->pid to the crest page server (--migrate) at opts->migrate_to:
 * pre-copy rounds while it runs, the final dump, files synced, restore there; the tree here
 * dies only once it runs there, and runs on untouched if anything fails before that.
 */
int crest_migrate(const struct crest_opts *opts);

/* Decode an image file, or every image in a directory, to JSON on out. */
int crest_show(const char *path, FILE *out);

/* The reason the last entry point on this thread failed. */
const char *crest_last_error(void);

#endif
