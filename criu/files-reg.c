// SPDX-License-Identifier: MIT
/*
 * Files opened by path: regular files and directories (flags, offset; a file whose size
 * changed since the dump is refused unless told otherwise; deleted files are files-ghost.c's
 * business), character devices such as
 * /dev/null, memfds (their object is in shmem.c: here only this open file), and the shell
 * job's terminal, which the restored task takes from crest.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
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

static RegFileEntry *reg_entry(const struct fd_info *fi, bool with_identity)
{
	RegFileEntry *reg = calloc(1, sizeof(*reg));

	if (!reg)
		return NULL;
	reg_file_entry__init(reg);
	reg->path = strdup(fi->link);
	if (!reg->path) {
		free(reg);
		return NULL;
	}
	reg->flags = fi->flags;
	reg->pos = fi->pos;
	if (with_identity) {
		reg->has_mode = reg->has_dev = reg->has_ino = true;
		reg->mode = fi->st.st_mode;
		reg->dev = fi->st.st_dev;
		reg->ino = fi->st.st_ino;
		if (S_ISREG(fi->st.st_mode)) {
			reg->has_size = true;
			reg->size = fi->st.st_size;
		}
	}
	return reg;
}

static bool reg_match(struct dump_ctx *d, const struct fd_info *fi)
{
	if (ghost_is_deleted(fi->link))
		return S_ISREG(fi->st.st_mode);
	return fi->link[0] == '/' && (S_ISREG(fi->st.st_mode) || S_ISDIR(fi->st.st_mode));
}

static int reg_dump(struct dump_ctx *d, const struct fd_info *fi, FileEntry *f)
{
	char what[64];

	f->reg = reg_entry(fi, true);
	if (!f->reg)
		return -1;
	f->reg->has_outside = f->reg->outside = mnt_is_outside(d->tree, fi->fdinfo);
	if (!S_ISREG(fi->st.st_mode) || !ghost_is_deleted(fi->link))
		return 0;
	snprintf(what, sizeof(what), "fd %d of %d", fi->fd, d->pid);
	f->reg->has_ghost_id = true;
	return ghost_dump(d, fi->proc_path, fi->link, what, &f->reg->ghost_id);
}

static int open_reg(const struct restore_ctx *r, const RegFileEntry *reg)
{
	int flags = reg->flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY);
	struct stat st;
	int fd = open(reg->outside ? reg->path : rpath(reg->path), flags | O_CLOEXEC);

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

static int reg_open(struct restore_ctx *r, const FileEntry *f)
{
	if (!f->reg) {
		pr_err("files.img: file %u has no path", f->id);
		return -1;
	}
	if (f->reg->has_ghost_id)
		return ghost_open_file(r, f->reg);
	return open_reg(r, f->reg);
}

const struct fd_ops reg_fd_ops = {
	.name = "regular file",
	.kind = FD_KIND__FD_REG,
	.match = reg_match,
	.dump = reg_dump,
	.open = reg_open,
};

static bool chr_match(struct dump_ctx *d, const struct fd_info *fi)
{
	return fi->link[0] == '/' && S_ISCHR(fi->st.st_mode) && !is_tty(&fi->st);
}

const struct fd_ops chr_fd_ops = {
	.name = "character device",
	.kind = FD_KIND__FD_CHR,
	.match = chr_match,
	.dump = reg_dump,
	.open = reg_open,
};

static bool tty_match(struct dump_ctx *d, const struct fd_info *fi)
{
	return is_tty(&fi->st);
}

static int tty_dump(struct dump_ctx *d, const struct fd_info *fi, FileEntry *f)
{
	if (!d->opts->shell_job) {
		pr_err("fd %d: terminal %s: dump with --shell-job", fi->fd, fi->link);
		return -1;
	}
	return 0;
}

static int tty_open(struct restore_ctx *r, const FileEntry *f)
{
	for (int fd = 0; fd < 3; fd++)
		if (isatty(fd))
			return fcntl(fd, F_DUPFD_CLOEXEC, 0);
	pr_err("--shell-job: crest has no terminal on stdin/stdout/stderr to hand over");
	return -1;
}

const struct fd_ops tty_inherit_fd_ops = {
	.name = "terminal",
	.kind = FD_KIND__FD_TTY_INHERIT,
	.match = tty_match,
	.dump = tty_dump,
	.open = tty_open,
};

static bool memfd_match(struct dump_ctx *d, const struct fd_info *fi)
{
	char *name = shmem_memfd_name(fi->link);

	free(name);
	return name;
}

/* A memfd: its object (content, seals) once, this open file's flags and pos. */
static int memfd_dump(struct dump_ctx *d, const struct fd_info *fi, FileEntry *f)
{
	char *name = shmem_memfd_name(fi->link);
	int id = name ? shmem_dump_object(d, fi->proc_path, SHMEM_KIND__SHMEM_MEMFD, name) : -1;

	free(name);
	if (id < 0)
		return -1;
	f->has_shmem_id = true;
	f->shmem_id = id;
	f->reg = reg_entry(fi, false);
	return f->reg ? 0 : -1;
}

/* An open file of its own on crest's memfd object: its flags and offset are its own. */
static int memfd_open(struct restore_ctx *r, const FileEntry *f)
{
	int obj = f->has_shmem_id ? shmem_restore_fd(r, f->shmem_id) : -1, fd;
	char path[64];

	if (obj < 0 || !f->reg)
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

const struct fd_ops memfd_fd_ops = {
	.name = "memfd",
	.kind = FD_KIND__FD_MEMFD,
	.match = memfd_match,
	.dump = memfd_dump,
	.open = memfd_open,
};
