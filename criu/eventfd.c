// SPDX-License-Identifier: MIT
/* eventfd: its counter and semaphore mode, from /proc/PID/fdinfo; recreated by crest. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "internal.h"
#include "log.h"

static bool eventfd_match(struct dump_ctx *d, const struct fd_info *fi)
{
	return !strcmp(fi->link, "anon_inode:[eventfd]");
}

static int eventfd_dump(struct dump_ctx *d, const struct fd_info *fi, FileEntry *f)
{
	const char *count = fdinfo_field(fi->fdinfo, "eventfd-count");
	const char *sem = fdinfo_field(fi->fdinfo, "eventfd-semaphore");
	EventfdEntry *e = calloc(1, sizeof(*e));

	if (!e)
		return -1;
	eventfd_entry__init(e);
	f->eventfd = e;
	if (!count) {
		pr_err("fd %d of %d: eventfd without a count in fdinfo", fi->fd, d->pid);
		return -1;
	}
	e->count = strtoull(count, NULL, 16);
	e->semaphore = sem && atoi(sem);
	f->has_flags = true;
	f->flags = fi->flags;
	return 0;
}

static int eventfd_open(struct restore_ctx *r, const FileEntry *f)
{
	const EventfdEntry *e = f->eventfd;
	int fd;

	if (!e || e->count == ~0ULL) {
		pr_err("files.img: eventfd %u is malformed", f->id);
		return -1;
	}
	fd = eventfd(0, EFD_CLOEXEC | (f->flags & O_NONBLOCK ? EFD_NONBLOCK : 0) |
				(e->semaphore ? EFD_SEMAPHORE : 0));
	/* a write adds to the counter, which may be larger than eventfd()'s unsigned int */
	if (fd < 0 || (e->count && write(fd, &e->count, sizeof(e->count)) != sizeof(e->count))) {
		pr_perror("cannot recreate eventfd %u", f->id);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

const struct fd_ops eventfd_fd_ops = {
	.name = "eventfd",
	.kind = FD_KIND__FD_EVENTFD,
	.match = eventfd_match,
	.dump = eventfd_dump,
	.open = eventfd_open,
};
