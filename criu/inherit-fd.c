// SPDX-License-Identifier: MIT
/*
 * --inherit-fd fd[N]:KEY, as in CRIU: whoever runs the restore hands the restored tree a file
 * of its own, such as the pipe that now collects a service's output, or a new log file.
 * Every open file of the images whose identity is KEY is not opened by crest but taken from
 * crest's fd N, as it is (its offset and flags are the caller's).  KEY is the file's path
 * without the leading '/' (with it is accepted too), or pipe:[INODE] / socket:[INODE] as
 * /proc/PID/fd showed the dumped fd.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "log.h"

static bool key_matches(const FileEntry *f, const char *key)
{
	char name[64];

	if (f->pipe && f->kind == FD_KIND__FD_PIPE) {
		snprintf(name, sizeof(name), "pipe:[%llu]", (unsigned long long)f->pipe->pipe_id);
		return !strcmp(key, name);
	}
	if (f->unix_sk) {
		snprintf(name, sizeof(name), "socket:[%llu]", (unsigned long long)f->unix_sk->ino);
		return !strcmp(key, name);
	}
	if (f->reg && f->reg->path && f->reg->path[0] == '/')
		return !strcmp(key, f->reg->path + 1) || !strcmp(key, f->reg->path);
	return false;
}

int inherit_fd_lookup(struct restore_tree *t, const FileEntry *f)
{
	for (const char *const *spec = t->opts->inherit_fds; spec && *spec; spec++) {
		int n, len = 0, fd;

		if (sscanf(*spec, "fd[%d]:%n", &n, &len) != 1 || !len || n < 0 || !(*spec)[len]) {
			pr_err("bad --inherit-fd '%s' (expected fd[N]:KEY)", *spec);
			return -2;
		}
		if (!key_matches(f, *spec + len))
			continue;
		fd = fcntl(n, F_DUPFD_CLOEXEC, 0);
		if (fd < 0) {
			pr_perror("--inherit-fd %s: crest has no fd %d", *spec, n);
			return -2;
		}
		pr_info("file %u (%s) is crest's fd %d (--inherit-fd)", f->id, *spec + len, n);
		return fd;
	}
	return -1;
}
