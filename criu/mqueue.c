// SPDX-License-Identifier: MIT
/*
 * An open POSIX message queue.  The queue itself, its attributes and messages, belongs to the
 * ipc namespace (ipc.c saves and makes it); an fd is only its name and open flags, opened
 * again by crest with mq_open() once the queue exists.  Without an ipc namespace of the tree's
 * own, the queue is crest's namespace's and outlives the tree.
 */
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "internal.h"
#include "log.h"

#define MQUEUE_MAGIC 0x19800202

static bool mqueue_match(struct dump_ctx *d, const struct fd_info *fi)
{
	struct statfs sfs;

	return fi->lfd >= 0 ? !fstatfs(fi->lfd, &sfs) && sfs.f_type == MQUEUE_MAGIC
			    : !statfs(fi->proc_path, &sfs) && sfs.f_type == MQUEUE_MAGIC;
}

static int mqueue_dump(struct dump_ctx *d, const struct fd_info *fi, FileEntry *f)
{
	const char *name = strrchr(fi->link, '/');

	f->reg = calloc(1, sizeof(*f->reg));
	if (!f->reg)
		return -1;
	reg_file_entry__init(f->reg);
	if (!name || !name[1] || strchr(fi->link, ' ')) {
		pr_err("fd %d of %d: message queue %s has no name", fi->fd, d->pid, fi->link);
		return -1;
	}
	f->reg->path = strdup(name);
	f->reg->flags = fi->flags;
	return f->reg->path ? 0 : -1;
}

static int mqueue_open(struct restore_ctx *r, const FileEntry *f)
{
	int fd;

	if (!f->reg || f->reg->path[0] != '/' || strchr(f->reg->path + 1, '/')) {
		pr_err("files.img: message queue %u is malformed", f->id);
		return -1;
	}
	fd = mq_open(f->reg->path, (f->reg->flags & (O_ACCMODE | O_NONBLOCK)) | O_CLOEXEC);
	if (fd < 0)
		pr_perror("cannot open message queue %s", f->reg->path);
	return fd;
}

const struct fd_ops mqueue_fd_ops = {
	.name = "POSIX message queue",
	.kind = FD_KIND__FD_MQUEUE,
	.match = mqueue_match,
	.dump = mqueue_dump,
	.open = mqueue_open,
};
