// SPDX-License-Identifier: MIT
/* signalfd: the mask of signals it reads, from /proc/PID/fdinfo; recreated by crest. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "log.h"

static bool signalfd_match(struct dump_ctx *d, const struct fd_info *fi)
{
	return !strcmp(fi->link, "anon_inode:[signalfd]");
}

static int signalfd_dump(struct dump_ctx *d, const struct fd_info *fi, FileEntry *f)
{
	const char *mask = fdinfo_field(fi->fdinfo, "sigmask");
	SignalfdEntry *e = calloc(1, sizeof(*e));

	if (!e)
		return -1;
	signalfd_entry__init(e);
	f->signalfd = e;
	if (!mask) {
		pr_err("fd %d of %d: signalfd without a mask in fdinfo", fi->fd, d->pid);
		return -1;
	}
	e->sigmask = strtoull(mask, NULL, 16);
	f->has_flags = true;
	f->flags = fi->flags;
	return 0;
}

static int signalfd_open(struct restore_ctx *r, const FileEntry *f)
{
	uint64_t mask;
	int fd;

	if (!f->signalfd) {
		pr_err("files.img: signalfd %u is malformed", f->id);
		return -1;
	}
	mask = f->signalfd->sigmask;
	/* the raw syscall takes the kernel's 8-byte mask */
	fd = syscall(SYS_signalfd4, -1, &mask, sizeof(mask),
		     SFD_CLOEXEC | (f->flags & O_NONBLOCK ? SFD_NONBLOCK : 0));
	if (fd < 0)
		pr_perror("cannot recreate signalfd %u", f->id);
	return fd;
}

const struct fd_ops signalfd_fd_ops = {
	.name = "signalfd",
	.kind = FD_KIND__FD_SIGNALFD,
	.match = signalfd_match,
	.dump = signalfd_dump,
	.open = signalfd_open,
};
