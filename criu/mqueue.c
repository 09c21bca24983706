// SPDX-License-Identifier: MIT
/*
 * An open POSIX message queue.  The queue itself, its attributes and messages, belongs to the
 * ipc namespace (ipc.c saves and makes it); an fd is only its name and open flags, opened
 * again by crest with mq_open() once the queue exists.  Without an ipc namespace of the tree's
 * own, the queue is crest's namespace's and outlives the tree.  A notification registered by
 * a task of the tree (read from the queue's file, as read(2) on the fd gives it) is made again
 * by that task, a remote mq_notify(); the kernel does not show its sigev_value (it comes back
 * 0), and a SIGEV_THREAD one (glibc's netlink socket) is refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/syscall.h>
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

static int mqueue_dump_notify(struct dump_ctx *d, const struct fd_info *fi, FileEntry *f)
{
	int notify = 0, signo = 0, pid = 0;
	unsigned long qsize;
	char text[160];
	ssize_t n = fi->lfd >= 0 ? pread(fi->lfd, text, sizeof(text) - 1, 0) : -1;

	if (n < 0 || (text[n] = 0, sscanf(text, "QSIZE:%lu NOTIFY:%d SIGNO:%d NOTIFY_PID:%d",
					  &qsize, &notify, &signo, &pid) != 4)) {
		pr_err("fd %d of %d: cannot read message queue %s", fi->fd, d->pid, fi->link);
		return -1;
	}
	if (!pid)
		return 0;
	if (notify != SIGEV_SIGNAL && notify != SIGEV_NONE) {
		pr_err("fd %d of %d: message queue %s has a SIGEV_THREAD notification: not "
		       "supported",
		       fi->fd, d->pid, fi->link);
		return -1;
	}
	f->mqueue = calloc(1, sizeof(*f->mqueue));
	if (!f->mqueue)
		return -1;
	mqueue_entry__init(f->mqueue);
	f->mqueue->has_notify_pid = f->mqueue->has_notify = f->mqueue->has_signo = true;
	f->mqueue->notify_pid = pid;
	f->mqueue->notify = notify;
	f->mqueue->signo = signo;
	return 0;
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
	return f->reg->path ? mqueue_dump_notify(d, fi, f) : -1;
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

struct mq_notify_plan {
	pid_t pid;
	int fd; /* the task's */
	const MqueueEntry *m;
};

/*
 * In the task that had registered, through its own fd of the queue: planned here, made once
 * the task closed crest's fds (mqueue_restore_late), since any close of the queue by its
 * owner ends a registration.
 */
static int mqueue_notify(struct restore_ctx *r, const FileEntry *f, int task_fd)
{
	struct vec *plans = &r->tree->mq_notify;
	struct mq_notify_plan *p;

	if (!f->mqueue || !f->mqueue->notify_pid)
		return 0;
	if (f->mqueue->notify_pid != (uint32_t)r->pid) {
		pr_warn("message queue %s: its notification, registered by %u, is not restored "
			"(%d has its fd first)",
			f->reg->path, f->mqueue->notify_pid, r->pid);
		return 0;
	}
	if (!plans->elem)
		*plans = (struct vec)VEC_INIT(struct mq_notify_plan);
	p = vec_push(plans);
	if (!p)
		return -1;
	p->pid = r->pid;
	p->fd = task_fd;
	p->m = f->mqueue;
	return 0;
}

int mqueue_restore_late(struct restore_ctx *r)
{
	struct vec *plans = &r->tree->mq_notify;

	for (size_t i = 0; i < plans->len; i++) {
		const struct mq_notify_plan *p = vec_at(plans, struct mq_notify_plan, i);
		struct sigevent sev;

		if (p->pid != r->pid)
			continue;
		memset(&sev, 0, sizeof(sev));
		sev.sigev_notify = p->m->notify;
		sev.sigev_signo = p->m->signo;
		if (rsys_poke(&r->rs, r->rs.scratch, &sev, sizeof(sev)) ||
		    rcheck(r, "mq_notify", rsys2(&r->rs, SYS_mq_notify, p->fd, r->rs.scratch)))
			return -1;
	}
	return 0;
}

const struct fd_ops mqueue_fd_ops = {
	.name = "POSIX message queue",
	.kind = FD_KIND__FD_MQUEUE,
	.match = mqueue_match,
	.dump = mqueue_dump,
	.open = mqueue_open,
	.restore_in_task = mqueue_notify,
};
