// SPDX-License-Identifier: MIT
/*
 * epoll: every registered fd with its events and data, from /proc/PID/fdinfo.  crest makes
 * the epoll instance; the registrations are made by the task itself (remote epoll_ctl) once
 * its fds are in place, because the kernel keys each one by the task's fd number.  Nested
 * epoll instances are just targets like any other.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "log.h"

static bool epoll_match(struct dump_ctx *d, const struct fd_info *fi)
{
	return !strcmp(fi->link, "anon_inode:[eventpoll]");
}

static int epoll_dump(struct dump_ctx *d, const struct fd_info *fi, FileEntry *f)
{
	EpollEntry *e = calloc(1, sizeof(*e));
	const char *line;

	if (!e)
		return -1;
	epoll_entry__init(e);
	f->epoll = e;
	f->has_flags = true;
	f->flags = fi->flags;
	for (line = fi->fdinfo; line && *line;
	     line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		unsigned int tfd, events;
		unsigned long long data;
		char path[64], target[64];
		EpollTfdEntry *t, **arr;

		if (sscanf(line, "tfd: %u events: %x data: %llx", &tfd, &events, &data) != 3)
			continue;
		/* the target must still be that fd of the task: it is re-registered by number */
		snprintf(path, sizeof(path), "/proc/%d/fd/%u", d->pid, tfd);
		if (readlink_at(AT_FDCWD, path, target, sizeof(target))) {
			pr_err("fd %d of %d: epoll watches fd %u, which is closed: not supported "
			       "yet",
			       fi->fd, d->pid, tfd);
			return -1;
		}
		t = calloc(1, sizeof(*t));
		arr = realloc(e->tfds, (e->n_tfds + 1) * sizeof(*arr));
		if (!t || !arr) {
			free(t);
			return -1;
		}
		e->tfds = arr;
		epoll_tfd_entry__init(t);
		t->tfd = tfd;
		t->events = events;
		t->data = data;
		e->tfds[e->n_tfds++] = t;
	}
	return 0;
}

static int epoll_open(struct restore_ctx *r, const FileEntry *f)
{
	int fd;

	if (!f->epoll) {
		pr_err("files.img: epoll %u is malformed", f->id);
		return -1;
	}
	fd = epoll_create1(EPOLL_CLOEXEC);
	if (fd < 0)
		pr_perror("cannot recreate epoll %u", f->id);
	return fd;
}

static int epoll_register(struct restore_ctx *r, const FileEntry *f, int task_fd)
{
	struct rsys *rs = &r->rs;

	for (size_t i = 0; i < f->epoll->n_tfds; i++) {
		const EpollTfdEntry *t = f->epoll->tfds[i];
		struct epoll_event ev = {.events = t->events, .data.u64 = t->data};

		if (rsys_poke(rs, rs->scratch, &ev, sizeof(ev)) ||
		    rcheck(r, "epoll_ctl",
			   rsys4(rs, SYS_epoll_ctl, task_fd, EPOLL_CTL_ADD, t->tfd, rs->scratch)))
			return -1;
	}
	return 0;
}

const struct fd_ops epoll_fd_ops = {
	.name = "epoll",
	.kind = FD_KIND__FD_EPOLL,
	.match = epoll_match,
	.dump = epoll_dump,
	.open = epoll_open,
	.restore_in_task = epoll_register,
};
