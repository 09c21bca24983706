/* SPDX-License-Identifier: MIT */
#ifndef CREST_LOG_H
#define CREST_LOG_H

#include <errno.h>
#include <string.h>

enum log_level { LOG_ERR = 1, LOG_WARN = 2, LOG_INFO = 3, LOG_DEBUG = 4 };

/* Open the log: path NULL logs to stderr.  verbosity is CRIU's -v level. */
int log_init(const char *path, int verbosity);
void log_fini(void);
/* The fd the log is written to (a child that keeps logging must keep it). */
int log_fd(void);
void log_printf(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * pr_err() also records the message as the entry point's one-line failure reason, unless a
 * more specific one was recorded first: the first error is the root cause, the rest is
 * unwinding noise.
 */
#define pr_err(fmt, ...) log_printf(LOG_ERR, fmt, ##__VA_ARGS__)
#define pr_perror(fmt, ...) log_printf(LOG_ERR, fmt ": %s", ##__VA_ARGS__, strerror(errno))
#define pr_warn(fmt, ...) log_printf(LOG_WARN, fmt, ##__VA_ARGS__)
#define pr_info(fmt, ...) log_printf(LOG_INFO, fmt, ##__VA_ARGS__)
#define pr_debug(fmt, ...) log_printf(LOG_DEBUG, fmt, ##__VA_ARGS__)

/* Failure reason plumbing behind crest_last_error(). */
void error_reset(void);
void error_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *error_get(void);

/* Warnings meant for the operator (e.g. an rlimit the kernel refused) also go to stderr. */
void pr_user_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
