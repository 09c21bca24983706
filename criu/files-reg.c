// SPDX-License-Identifier: MIT
/*
 * The fd table: regular files and directories (path, flags, offset), character devices
 * opened by path (/dev/null, /dev/zero, ...), and the caller's terminal for shell jobs.  fds
 * that share one open file (dup, fork) are dumped as one file_entry and restored as one open
 * file, so they keep sharing the offset.  crest opens every file itself before the restore
 * child exists; the child inherits them and dup3()s each to its number.
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

static bool is_tty(const struct stat *st)
{
	unsigned int maj = major(st->st_rdev);

	/* vt/serial (4), /dev/tty & console & ptmx (5), pty slaves (136-143) */
	return S_ISCHR(st->st_mode) && (maj == 4 || maj == 5 || (maj >= 136 && maj <= 143));
}

/* Name a socket's family from the task's /proc/PID/net tables (for error messages). */
static const char *socket_kind(pid_t pid, unsigned long ino)
{
	static const struct {
		const char *table, *name;
		int ino_col; /* whitespace-separated column holding the inode */
	} tables[] = {
		{ "unix", "unix socket", 6 },	  { "tcp", "tcp socket", 9 },
		{ "tcp6", "tcp6 socket", 9 },	  { "udp", "udp socket", 9 },
		{ "udp6", "udp6 socket", 9 },	  { "raw", "raw socket", 9 },
		{ "raw6", "raw6 socket", 9 },	  { "packet", "packet socket", 8 },
		{ "netlink", "netlink socket", 9 },
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
	if (link[0] != '/')
		return "special file";
	return NULL;
}

static int parse_fdinfo(pid_t pid, int fd, uint64_t *pos, unsigned int *flags)
{
	char path[64];
	char *text = NULL;
	const char *p;

	snprintf(path, sizeof(path), "/proc/%d/fdinfo/%d", pid, fd);
	text = read_file_at(AT_FDCWD, path, NULL);
	if (!text) {
		pr_perror("cannot read %s", path);
		return -1;
	}
	p = proc_field(text, "pos");
	*pos = p ? strtoull(p, NULL, 10) : 0;
	p = proc_field(text, "flags");
	*flags = p ? strtoul(p, NULL, 8) : 0;
	free(text);
	return p ? 0 : -1;
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

/* One fd: classify it and, unless it shares an open file seen before, describe the file. */
static int dump_one_fd(struct dump_ctx *d, int fd, FdEntry *fe)
{
	struct vec *seen = &d->tree->file_keys;
	struct cr_img *files = d->tree->files;
	char path[64], link[4096];
	unsigned int flags;
	uint64_t pos;
	struct stat st;
	const char *bad;

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", d->pid, fd);
	if (readlink_at(AT_FDCWD, path, link, sizeof(link)) || stat(path, &st) ||
	    parse_fdinfo(d->pid, fd, &pos, &flags)) {
		pr_perror("cannot inspect fd %d of %d", fd, d->pid);
		return -1;
	}
	fe->fd = fd;
	fe->cloexec = flags & O_CLOEXEC;
	flags &= ~O_CLOEXEC;

	/* The same open file (dup, fork, SCM_RIGHTS) anywhere in the tree: same inode first. */
	for (size_t i = 0; i < seen->len; i++) {
		struct file_key *k = vec_at(seen, struct file_key, i);

		if (k->dev == st.st_dev && k->ino == st.st_ino &&
		    syscall(SYS_kcmp, d->pid, k->pid, KCMP_FILE, fd, k->fd) == 0) {
			fe->id = k->id;
			return 0;
		}
	}
	struct file_key *k = vec_push(seen);

	if (!k)
		return -1;
	k->pid = d->pid;
	k->fd = fd;
	k->dev = st.st_dev;
	k->ino = st.st_ino;
	k->id = fe->id = seen->len;

	char *memfd = shmem_memfd_name(link);

	if (memfd) {
		/* a memfd: its object (content, seals) once, this open file's flags and pos */
		FileEntry *f = file_entry_new(fe->id, FD_KIND__FD_MEMFD);
		RegFileEntry reg = REG_FILE_ENTRY__INIT;
		int id = shmem_dump_object(d, path, SHMEM_KIND__SHMEM_MEMFD, memfd), ret;

		free(memfd);
		if (!f || id < 0) {
			file_entry__free_unpacked(f, NULL);
			return -1;
		}
		f->has_shmem_id = true;
		f->shmem_id = id;
		reg.path = link;
		reg.flags = flags;
		reg.pos = pos;
		f->reg = &reg;
		ret = img_write_msg(files, &f->base);
		f->reg = NULL;
		file_entry__free_unpacked(f, NULL);
		return ret;
	}
	bad = unsupported_kind(d->pid, link, &st);
	if (is_tty(&st)) {
		if (!d->opts->shell_job) {
			pr_err("fd %d: terminal %s: dump with --shell-job", fd, link);
			return -1;
		}
		FileEntry *f = file_entry_new(fe->id, FD_KIND__FD_TTY_INHERIT);
		int ret = f ? img_write_msg(files, &f->base) : -1;

		file_entry__free_unpacked(f, NULL);
		return ret;
	}
	if (bad) {
		pr_err("fd %d: %s: not supported yet", fd, bad);
		return -1;
	}
	FileEntry *f = file_entry_new(fe->id, S_ISCHR(st.st_mode) ? FD_KIND__FD_CHR : FD_KIND__FD_REG);
	RegFileEntry reg = REG_FILE_ENTRY__INIT;
	int ret;

	if (!f)
		return -1;
	reg.path = link;
	reg.flags = flags;
	reg.pos = pos;
	reg.has_mode = reg.has_dev = reg.has_ino = true;
	reg.mode = st.st_mode;
	reg.dev = st.st_dev;
	reg.ino = st.st_ino;
	if (S_ISREG(st.st_mode)) {
		reg.has_size = true;
		reg.size = st.st_size;
	}
	f->reg = &reg;
	ret = img_write_msg(files, &f->base);
	f->reg = NULL;
	file_entry__free_unpacked(f, NULL);
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

		if (dump_one_fd(d, *vec_at(&fds, int, i), &fe) ||
		    img_write_msg(fdinfo, &fe.base))
			goto out;
	}
	ret = 0;
out:
	closedir(dir);
	if (img_close(fdinfo))
		ret = -1;
	vec_free(&fds);
	return ret;
}

/* ---- restore ---- */

static int open_tty_inherit(void)
{
	for (int fd = 0; fd < 3; fd++)
		if (isatty(fd))
			return fcntl(fd, F_DUPFD_CLOEXEC, 0);
	pr_err("--shell-job: crest has no terminal on stdin/stdout/stderr to hand over");
	return -1;
}

static int open_reg(const struct restore_ctx *r, const RegFileEntry *reg)
{
	int flags = reg->flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY);
	struct stat st;
	int fd = open(reg->path, flags | O_CLOEXEC);

	if (fd < 0) {
		pr_perror("cannot open %s", reg->path);
		return -1;
	}
	if (fstat(fd, &st) || (reg->has_mode && (st.st_mode & S_IFMT) != (reg->mode & S_IFMT))) {
		pr_err("%s is not the same kind of file as at dump time", reg->path);
		goto err;
	}
	if (reg->has_size && (uint64_t)st.st_size != reg->size && !r->opts->skip_file_size_check) {
		pr_err("%s changed size since the dump (%llu -> %lld bytes); "
		       "--skip-file-size-check to restore anyway",
		       reg->path, (unsigned long long)reg->size, (long long)st.st_size);
		goto err;
	}
	if (reg->pos && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) &&
	    lseek(fd, reg->pos, SEEK_SET) != (off_t)reg->pos) {
		pr_perror("cannot seek %s to %llu", reg->path, (unsigned long long)reg->pos);
		goto err;
	}
	return fd;
err:
	close(fd);
	return -1;
}

/* An open file of its own on crest's memfd object: its flags and offset are its own. */
static int open_memfd(struct restore_ctx *r, const FileEntry *f)
{
	int obj = f->has_shmem_id ? shmem_restore_fd(r, f->shmem_id) : -1, fd;
	char path[64];

	if (obj < 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", obj);
	fd = open(path, (f->reg->flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY)) | O_CLOEXEC);
	if (fd < 0 || (f->reg->pos && lseek(fd, f->reg->pos, SEEK_SET) < 0)) {
		pr_perror("cannot reopen memfd %s", f->reg->path);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

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
		if ((*slot)->kind != FD_KIND__FD_TTY_INHERIT && !(*slot)->reg) {
			pr_err("%s: file %u has no description", img_path(img), (*slot)->id);
			n = -1;
			break;
		}
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
	if (!t->file_fds)
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
			int fd = f->kind == FD_KIND__FD_TTY_INHERIT ? open_tty_inherit() :
				 f->kind == FD_KIND__FD_MEMFD	    ? open_memfd(r, f) :
								      open_reg(r, f->reg);

			if (fd < 0 || (t->file_fds[k] = restore_add_helper(t, fd)) < 0)
				return -1;
		}
		p = vec_push(&r->fds);
		if (!p)
			return -1;
		p->fd = fe->fd;
		p->src = t->file_fds[k];
		p->cloexec = fe->cloexec;
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
		if (p->fd > (int)from && rcheck(r, "close_range",
						rsys3(rs, SYS_close_range, from, p->fd - 1, 0)))
			return -1;
		from = p->fd + 1;
	}
	if ((int)from < r->helper_base &&
	    rcheck(r, "close_range", rsys3(rs, SYS_close_range, from, r->helper_base - 1, 0)))
		return -1;
	return 0;
}
