/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the live test programs.
 *
 * Every program follows one pattern: tl_init(), build one piece of state, tl_ready(), wait for
 * SIGTERM (tl_wait_term() or a loop of its own that watches tl_term), verify the state and end
 * with tl_done() (or tl_fail() at the first fatal problem).  The runner reads the log the
 * program writes to stdout: one "ready <pid>" line, then exactly one "PASS" or "FAIL: reason"
 * line.  Other lines start with "# " and are only for people reading a failed run's log.
 *
 * Nothing here allocates memory after tl_init(): some tests compare /proc/self/maps before and
 * after a dump, and a malloc() arena growing in between would be a difference of our own making.
 */
#ifndef CREST_TESTLIB_H
#define CREST_TESTLIB_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TL_NSEC_PER_MSEC 1000000ull
#define TL_NSEC_PER_SEC 1000000000ull

/* Set by the SIGTERM handler tl_init() installs. */
extern volatile sig_atomic_t tl_term;

/*
 * Become a session leader (the engine wants the dumped task to lead its own session), catch
 * SIGTERM into tl_term and make stdout line-buffered with a static buffer.
 */
void tl_init(void);

/* Print "ready <pid>": the state is built and may be dumped from now on. */
void tl_ready(void);

/* Sleep in sigsuspend() until SIGTERM has arrived; other handled signals just wake it. */
void tl_wait_term(void);

/* Informational "# ..." line. */
void tl_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Print "FAIL: reason" and exit 1. */
void tl_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Print "PASS" and exit 0. */
void tl_pass(void) __attribute__((noreturn));

/*
 * Record a failed check without stopping, so one run reports every difference in the log; the
 * first one becomes the FAIL reason.  Returns cond, so callers can skip dependent checks.
 */
bool tl_expect(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Number of failed tl_expect() checks so far. */
int tl_failures(void);

/* PASS when no tl_expect() failed, else FAIL with the first reason; exits either way. */
void tl_done(void) __attribute__((noreturn));

/* 64-bit hash of a buffer (FNV-1a style over 8-byte words, then the tail bytes). */
uint64_t tl_hash(const void *buf, size_t len);

/* Fill buf with a pseudo-random stream determined by seed, and check it (first bad offset). */
void tl_fill(void *buf, size_t len, uint64_t seed);
ssize_t tl_check_fill(const void *buf, size_t len, uint64_t seed);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t tl_now_ns(void);

/* Sleep until tl_now_ns() >= deadline, whatever signals arrive meanwhile. */
void tl_sleep_until(uint64_t deadline_ns);

/* The per-test scratch directory: $TL_DIR from the runner, or a fresh one under /tmp. */
const char *tl_dir(void);

/* "<tl_dir()>/<name>" in buf. */
char *tl_path(char *buf, size_t size, const char *name);

/* Read a whole (e.g. /proc) file into buf, NUL-terminated; fails the test when it cannot. */
size_t tl_read_file(const char *path, char *buf, size_t size);

/* Create path with exactly these bytes; fails the test when it cannot. */
void tl_write_file(const char *path, const void *buf, size_t len);

/*
 * The value of a "Key:\tvalue" line of a /proc status-like text, copied into out without the
 * newline.  Returns false when the key is missing.
 */
bool tl_status_field(const char *text, const char *key, char *out, size_t size);

/*
 * The fd table, compared as a whole across a dump and restore.  tl_fdtab_snap() records, for
 * every fd below TL_FDTAB_MAX, whether it is open, its F_GETFD and F_GETFL flags, its kind (the
 * /proc/self/fd link, with a pipe's inode number cut off), its inode, and which pairs of fds are
 * one open file description (kcmp).  The tables are large: keep them in static storage.
 */
#define TL_FDTAB_MAX 128

struct tl_fdent {
	bool open;
	int fdflags, flflags;
	char kind[256]; /* the link, with a pipe's inode number cut off */
	dev_t dev;
	ino_t ino;
};

struct tl_fdtab {
	struct tl_fdent fd[TL_FDTAB_MAX];
	/* 1 when fds a and b are one open file description, 0 when not, -1 when either is closed */
	signed char same_file[TL_FDTAB_MAX][TL_FDTAB_MAX];
};

/* Fill tab from the current fd table; fails the test when a link cannot be read. */
void tl_fdtab_snap(struct tl_fdtab *tab);

/*
 * tl_expect() that after has the same fds as before, each with the same kind and flags, and
 * the same pairs sharing an open file description or an inode.  inode_note follows "the same
 * inode" in the message for a pair that differs, e.g. " (pipe)"; "" for none.
 */
void tl_fdtab_compare(const struct tl_fdtab *before, const struct tl_fdtab *after,
		      const char *inode_note);

#endif
