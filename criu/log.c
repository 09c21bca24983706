// SPDX-License-Identifier: MIT
/* Logging and the one-line failure reason returned by the entry points. */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "crest.h"
#include "log.h"

static FILE *log_file;
static int log_verbosity = LOG_WARN;
static struct timespec log_start;
static __thread char last_error[1024];

int log_init(const char *path, int verbosity)
{
	log_fini();
	log_verbosity = verbosity;
	clock_gettime(CLOCK_MONOTONIC, &log_start);
	if (!path)
		return 0;
	log_file = fopen(path, "we");
	if (!log_file) {
		error_set("cannot open log %s: %s", path, strerror(errno));
		return -1;
	}
	setvbuf(log_file, NULL, _IOLBF, 0);
	return 0;
}

int log_fd(void)
{
	return log_file ? fileno(log_file) : STDERR_FILENO;
}

void log_fini(void)
{
	if (log_file)
		fclose(log_file);
	log_file = NULL;
}

static const char *const level_tag[] = {"", "Error", "Warn", "Info", "Debug"};

void log_printf(enum log_level level, const char *fmt, ...)
{
	int saved_errno = errno;
	char msg[1024];
	struct timespec now;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	if (level == LOG_ERR && !last_error[0])
		snprintf(last_error, sizeof(last_error), "%s", msg);

	if ((int)level <= log_verbosity) {
		FILE *out = log_file ? log_file : stderr;

		clock_gettime(CLOCK_MONOTONIC, &now);
		double t =
			(now.tv_sec - log_start.tv_sec) + (now.tv_nsec - log_start.tv_nsec) / 1e9;
		/*
		 * Without a log file, stderr carries the final one-line reason; it shows more
		 * only when the operator asked for -v3 or -v4.
		 */
		if (log_file || level > LOG_WARN)
			fprintf(out, "(%010.6f) %s: %s\n", t, level_tag[level], msg);
	}
	errno = saved_errno;
}

void pr_user_warn(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "crest: warning: %s\n", msg);
	if (log_file)
		log_printf(LOG_WARN, "%s", msg);
}

void error_reset(void)
{
	last_error[0] = 0;
}

void error_set(const char *fmt, ...)
{
	va_list ap;

	if (last_error[0])
		return;
	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
}

const char *error_get(void)
{
	return last_error[0] ? last_error : "unknown error";
}

const char *crest_last_error(void)
{
	return error_get();
}
