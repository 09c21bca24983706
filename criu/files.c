// SPDX-License-Identifier: MIT
/*
 * The fd table, whatever the fds point at.  Dump: every fd of every task, its number and
 * close-on-exec flag; fds that share one open file (dup, fork, SCM_RIGHTS) anywhere in the
 * tree are dumped as one file_entry and restored as one open file, so they keep sharing the
 * offset and flags.  Each kind of open file (files-reg.c, pipes.c, eventfd.c, ...) describes
 * and reopens its own through struct fd_ops.  Restore: crest opens every file itself before
 * the tasks exist; they inherit them as helper fds and dup3() each to its number.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "image.h"
#include "internal.h"
#include "log.h"

/* In the order they are asked: the first whose match() says yes describes the file. */
static const struct fd_ops *const fd_kinds[] = {
	&memfd_fd_ops,	 &pty_fd_ops,	   &tty_inherit_fd_ops, &pipe_fd_ops,  &fifo_fd_ops,
	&eventfd_fd_ops, &signalfd_fd_ops, &timerfd_fd_ops,	&epoll_fd_ops, &unix_sk_fd_ops,
	&inet_sk_fd_ops, &inotify_fd_ops,  &mqueue_fd_ops,	&reg_fd_ops,   &chr_fd_ops,
};

static const struct fd_ops *ops_of_kind(FdKind kind)
{
	for (size_t i = 0; i < ARRAY_SIZE(fd_kinds); i++)
		if (fd_kinds[i]->kind == kind)
			return fd_kinds[i];
	return NULL;
}

/* Name a socket's family from the task's /proc/PID/net tables (for error messages). */
static const char *socket_kind(pid_t pid, unsigned long ino)
{
	static const struct {
		const char *table, *name;
		int ino_col; /* whitespace-separated column holding the inode */
	} tables[] = {
		{"unix", "unix socket", 6},	  {"tcp", "tcp socket", 9},
		{"tcp6", "tcp6 socket", 9},	  {"udp", "udp socket", 9},
		{"udp6", "udp6 socket", 9},	  {"raw", "raw socket", 9},
		{"raw6", "raw6 socket", 9},	  {"packet", "packet socket", 8},
		{"netlink", "netlink socket", 9},
	};

	for (size_t i = 0; i < ARRAY_SIZE(tables); i++) {
		char path[64], *text, *line;
		bool found = false;

		snprintf(path, sizeof(path), "/proc/%d/net/%s", pid, tables[i].table);
		text = read_file_at(AT_FDCWD, path, NULL);
		for (line = text ? strchr(text, '\n') : NULL; line && !found;
		     line = strchr(line + 1, '\n')) {
			char *p = line + 1;

			for (int col = 0; col < tables[i].ino_col && *p; col++) {
				p += strspn(p, " ");
				p += strcspn(p, " \n");
			}
			found = strtoul(p, NULL, 10) == ino;
		}
		free(text);
		if (found)
			return tables[i].name;
	}
	return "socket";
}

/* What an fd no module takes is, in words, for the error message. */
static const char *unsupported_kind(pid_t pid, const char *link, const struct stat *st)
{
	if (!strncmp(link, "pipe:", 5))
		return "pipe";
	if (!strncmp(link, "socket:", 7))
		return socket_kind(pid, st->st_ino);
	if (!strncmp(link, "anon_inode:", 11))
		return link + 11;
	if (strstr(link, " (deleted)"))
		return "deleted file";
	if (S_ISFIFO(st->st_mode))
		return "fifo";
	if (S_ISBLK(st->st_mode))
		return "block device";
	if (S_ISSOCK(st->st_mode))
		return "socket";
	if (S_ISCHR(st->st_mode))
		return "character device";
	return "special file";
}

/* A "key: value" line of an fdinfo text (values may be hex or octal: caller parses). */
const char *fdinfo_field(const char *fdinfo, const char *key)
{
	return proc_field(fdinfo, key);
}

static FileEntry *file_entry_new(unsigned int id, FdKind kind)
{
	FileEntry *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	file_entry__init(f);
	f->id = id;
	f->kind = kind;
	return f;
}

/* crest's own copy of the task's open file, to look into it without disturbing the task. */
static int task_file(struct dump_ctx *d, int fd)
{
	if (d->pidfd < 0) {
		d->pidfd = syscall(SYS_pidfd_open, d->pid, 0);
		if (d->pidfd < 0)
			return -1;
	}
	return syscall(SYS_pidfd_getfd, d->pidfd, fd, 0);
}

/* One fd: unless it shares an open file seen before, find its kind and describe the file. */
static int dump_one_fd(struct dump_ctx *d, int fd, FdEntry *fe)
{
	struct vec *seen = &d->tree->file_keys;
	struct fd_info fi = {.fd = fd, .lfd = -1};
	char path[64], link[4096], info_path[64];
	const struct fd_ops *ops = NULL;
	char *fdinfo = NULL;
	const char *p;
	FileEntry *f = NULL;
	int ret = -1;

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", d->pid, fd);
	snprintf(info_path, sizeof(info_path), "/proc/%d/fdinfo/%d", d->pid, fd);
	if (readlink_at(AT_FDCWD, path, link, sizeof(link)) || stat(path, &fi.st) ||
	    !(fdinfo = read_file_at(AT_FDCWD, info_path, NULL)) ||
	    !(p = proc_field(fdinfo, "flags"))) {
		pr_perror("cannot inspect fd %d of %d", fd, d->pid);
		goto out;
	}
	fi.flags = strtoul(p, NULL, 8);
	p = proc_field(fdinfo, "pos");
	fi.pos = p ? strtoull(p, NULL, 10) : 0;
	fi.link = link;
	fi.proc_path = path;
	fi.fdinfo = fdinfo;
	fe->fd = fd;
	fe->cloexec = fi.flags & O_CLOEXEC;
	fi.flags &= ~O_CLOEXEC;

	/* The same open file (dup, fork, SCM_RIGHTS) anywhere in the tree: same inode first. */
	for (size_t i = 0; i < seen->len; i++) {
		struct file_key *k = vec_at(seen, struct file_key, i);

		if (k->dev == fi.st.st_dev && k->ino == fi.st.st_ino &&
		    syscall(SYS_kcmp, d->pid, k->pid, KCMP_FILE, fd, k->fd) == 0) {
			fe->id = k->id;
			ret = 0;
			goto out;
		}
	}
	struct file_key *k = vec_push(seen);

	if (!k)
		goto out;
	k->pid = d->pid;
	k->fd = fd;
	k->dev = fi.st.st_dev;
	k->ino = fi.st.st_ino;
	k->id = fe->id = seen->len;

	/* crest's own copy of the file, for the kinds that look into it */
	fi.lfd = task_file(d, fd);
	for (size_t i = 0; i < ARRAY_SIZE(fd_kinds) && !ops; i++)
		if (fd_kinds[i]->match(d, &fi))
			ops = fd_kinds[i];
	if (!ops) {
		pr_err("fd %d: %s: not supported yet", fd, unsupported_kind(d->pid, link, &fi.st));
		goto out;
	}
	f = file_entry_new(fe->id, ops->kind);
	if (!f || ops->dump(d, &fi, f) || img_write_msg(d->tree->files, &f->base))
		goto out;
	ret = 0;
out:
	if (fi.lfd >= 0)
		close(fi.lfd);
	if (f)
		file_entry__free_unpacked(f, NULL);
	free(fdinfo);
	return ret;
}

static int fd_cmp(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

int files_dump(struct dump_ctx *d)
{
	struct vec fds = VEC_INIT(int);
	struct cr_img *fdinfo = NULL;
	char path[64];
	struct dirent *de;
	DIR *dir;
	int ret = -1;

	snprintf(path, sizeof(path), "/proc/%d/fd", d->pid);
	dir = opendir(path);
	if (!dir) {
		pr_perror("cannot list %s", path);
		return -1;
	}
	while ((de = readdir(dir))) {
		int *slot;

		if (de->d_name[0] == '.')
			continue;
		slot = vec_push(&fds);
		if (!slot)
			goto out;
		*slot = atoi(de->d_name);
	}
	qsort(fds.data, fds.len, sizeof(int), fd_cmp);
	fdinfo = img_open_write(d->dirfd, IMG_FDINFO, d->pid);
	if (!fdinfo)
		goto out;
	for (size_t i = 0; i < fds.len; i++) {
		FdEntry fe = FD_ENTRY__INIT;
		int err = dump_one_fd(d, *vec_at(&fds, int, i), &fe) || locks_dump_fd(d, &fe) ||
			  img_write_msg(fdinfo, &fe.base);

		locks_dump_free(&fe);
		if (err)
			goto out;
	}
	ret = 0;
out:
	closedir(dir);
	if (img_close(fdinfo))
		ret = -1;
	if (d->pidfd >= 0)
		close(d->pidfd);
	d->pidfd = -1;
	vec_free(&fds);
	return ret;
}

/* ---- restore ---- */

static int read_files(struct restore_tree *t)
{
	struct cr_img *img = img_open_read(t->dirfd, IMG_FILES, 0);
	ProtobufCMessage *msg;
	int n;

	if (!img)
		return -1;
	while ((n = img_read_msg(img, &file_entry__descriptor, &msg)) == 1) {
		FileEntry **slot = vec_push(&t->files);

		if (!slot) {
			protobuf_c_message_free_unpacked(msg, NULL);
			n = -1;
			break;
		}
		*slot = (FileEntry *)msg;
	}
	img_close(img);
	return n;
}

static int read_fdinfo(struct restore_ctx *r, int *max_fd)
{
	struct cr_img *img = img_open_read(r->dirfd, IMG_FDINFO, r->pid);
	ProtobufCMessage *msg;
	int n;

	if (!img)
		return -1;
	while ((n = img_read_msg(img, &fd_entry__descriptor, &msg)) == 1) {
		FdEntry **slot = vec_push(&r->fdinfo);

		if (!slot) {
			protobuf_c_message_free_unpacked(msg, NULL);
			n = -1;
			break;
		}
		*slot = (FdEntry *)msg;
		if ((*slot)->fd > (1 << 20)) {
			pr_err("%s: implausible fd %u", img_path(img), (*slot)->fd);
			n = -1;
			break;
		}
		*max_fd = max_t(int, *max_fd, (int)(*slot)->fd);
	}
	img_close(img);
	return n;
}

int files_restore_read(struct restore_tree *t)
{
	int max_fd = -1;

	if (read_files(t))
		return -1;
	t->file_fds = malloc((t->files.len + 1) * sizeof(int));
	t->file_done = calloc(t->files.len + 1, sizeof(bool));
	if (!t->file_fds || !t->file_done)
		return -1;
	for (size_t i = 0; i < t->files.len; i++)
		t->file_fds[i] = -1;
	for (size_t i = 0; i < t->tasks.len; i++) {
		struct restore_ctx *r = *vec_at(&t->tasks, struct restore_ctx *, i);

		if (r->core && read_fdinfo(r, &max_fd))
			return -1;
	}
	/* Everything crest hands the tasks lives above every task's fds. */
	t->helper_base = max_t(int, max_fd + 1, 3);
	return 0;
}

/* Open (once for the whole tree) every file this task's fds point at. */
int files_restore_prepare(struct restore_ctx *r)
{
	struct restore_tree *t = r->tree;

	for (size_t i = 0; i < r->fdinfo.len; i++) {
		const FdEntry *fe = *vec_at(&r->fdinfo, FdEntry *, i);
		struct fd_plan *p;
		size_t k;

		for (k = 0; k < t->files.len; k++)
			if ((*vec_at(&t->files, FileEntry *, k))->id == fe->id)
				break;
		if (k == t->files.len) {
			pr_err("fdinfo-%d.img: fd %u refers to unknown file %u", r->pid, fe->fd,
			       fe->id);
			return -1;
		}
		if (t->file_fds[k] < 0) {
			const FileEntry *f = *vec_at(&t->files, FileEntry *, k);
			const struct fd_ops *ops = ops_of_kind(f->kind);
			int fd;

			if (!ops) {
				pr_err("files.img: file %u is of unknown kind %d", f->id, f->kind);
				return -1;
			}
			/* --inherit-fd: the caller's file, as it is (no fixing up in the task) */
			fd = inherit_fd_lookup(t, f);
			t->file_done[k] = fd >= 0;
			if (fd == -1)
				fd = ops->open(r, f);
			if (fd < 0 || (t->file_fds[k] = restore_add_helper(t, fd)) < 0)
				return -1;
		}
		p = vec_push(&r->fds);
		if (!p)
			return -1;
		p->fd = fe->fd;
		p->src = t->file_fds[k];
		p->cloexec = fe->cloexec;
		p->file = k;
	}
	return 0;
}

static int plan_cmp(const void *a, const void *b)
{
	return ((const struct fd_plan *)a)->fd - ((const struct fd_plan *)b)->fd;
}

/*
 * Remote: every target fd takes its number, then everything else below the helpers goes
 * (what the root inherited from crest, or a forked child from its parent).
 */
int files_restore(struct restore_ctx *r)
{
	struct rsys *rs = &r->rs;
	unsigned int from = 0;

	qsort(r->fds.data, r->fds.len, sizeof(struct fd_plan), plan_cmp);
	for (size_t i = 0; i < r->fds.len; i++) {
		const struct fd_plan *p = vec_at(&r->fds, struct fd_plan, i);
		long ret = rsys3(rs, SYS_dup3, p->src, p->fd, p->cloexec ? O_CLOEXEC : 0);

		if (ret != p->fd) {
			pr_err("cannot restore fd %d of %d (%ld)", p->fd, r->pid, ret);
			return -1;
		}
		if (p->fd > (int)from &&
		    rcheck(r, "close_range", rsys3(rs, SYS_close_range, from, p->fd - 1, 0)))
			return -1;
		from = p->fd + 1;
	}
	if ((int)from < r->helper_base &&
	    rcheck(r, "close_range", rsys3(rs, SYS_close_range, from, r->helper_base - 1, 0)))
		return -1;
	return 0;
}

/* Remote, once the task's fds are in place: what only the task can do (epoll's targets). */
int files_restore_in_task(struct restore_ctx *r)
{
	struct restore_tree *t = r->tree;

	for (size_t i = 0; i < r->fds.len; i++) {
		const struct fd_plan *p = vec_at(&r->fds, struct fd_plan, i);
		const FileEntry *f = *vec_at(&t->files, FileEntry *, p->file);
		const struct fd_ops *ops = ops_of_kind(f->kind);

		/* once per open file: the first task that has it does it for all */
		if (!ops->restore_in_task || t->file_done[p->file])
			continue;
		t->file_done[p->file] = true;
		if (ops->restore_in_task(r, f, p->fd))
			return -1;
	}
	return 0;
}
