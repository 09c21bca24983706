// SPDX-License-Identifier: MIT
/*
 * Pipes and FIFOs.  Both ends of a pipe share one pipe_id (its inode); the bytes queued in it
 * are saved once, with the first end seen, read without consuming them: crest opens another
 * reader on the same pipe through /proc/PID/fd/N and tee()s the data into a pipe of its own.
 * On restore crest makes the pipe (or opens the FIFO by path), sets its size, refills it, and
 * hands each task the end it had, with its own status flags.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"
#include "internal.h"
#include "log.h"

/* Flags an open file can change with F_SETFL; the rest come from how it was opened. */
#define SETFL_MASK (O_APPEND | O_NONBLOCK | O_NOATIME | O_DIRECT | O_ASYNC)

static bool pipe_match(struct dump_ctx *d, const struct fd_info *fi)
{
	return !strncmp(fi->link, "pipe:", 5);
}

static bool fifo_match(struct dump_ctx *d, const struct fd_info *fi)
{
	return fi->link[0] == '/' && S_ISFIFO(fi->st.st_mode);
}

static bool pipe_seen(struct dump_tree *t, uint64_t ino)
{
	uint64_t *slot;

	for (size_t i = 0; i < t->pipes.len; i++)
		if (*vec_at(&t->pipes, uint64_t, i) == ino)
			return true;
	slot = vec_push(&t->pipes);
	if (slot)
		*slot = ino;
	return false;
}

/* The queued bytes, left where they are. */
static int pipe_peek(const struct fd_info *fi, PipeEntry *pe)
{
	int reader = open(fi->proc_path, O_RDONLY | O_NONBLOCK | O_CLOEXEC), tmp[2] = {-1, -1};
	int size, ret = -1;
	ssize_t n;

	if (reader < 0) {
		pr_perror("cannot open another reader on fd %d (%s)", fi->fd, fi->link);
		return -1;
	}
	size = fcntl(reader, F_GETPIPE_SZ);
	if (size <= 0 || pipe2(tmp, O_CLOEXEC | O_NONBLOCK) ||
	    fcntl(tmp[1], F_SETPIPE_SZ, size) < 0) {
		pr_perror("cannot set up a pipe to read fd %d", fi->fd);
		goto out;
	}
	pe->has_pipe_size = true;
	pe->pipe_size = size;
	n = tee(reader, tmp[1], size, SPLICE_F_NONBLOCK);
	if (n < 0 && errno != EAGAIN) {
		pr_perror("cannot read the data queued in fd %d", fi->fd);
		goto out;
	}
	if (n > 0) {
		pe->data.data = malloc(n);
		if (!pe->data.data || read(tmp[0], pe->data.data, n) != n) {
			pr_perror("cannot copy the data queued in fd %d", fi->fd);
			goto out;
		}
		pe->data.len = n;
		pe->has_data = true;
	}
	ret = 0;
out:
	close(reader);
	if (tmp[0] >= 0) {
		close(tmp[0]);
		close(tmp[1]);
	}
	return ret;
}

static int pipe_dump(struct dump_ctx *d, const struct fd_info *fi, FileEntry *f)
{
	PipeEntry *pe = calloc(1, sizeof(*pe));

	if (!pe)
		return -1;
	pipe_entry__init(pe);
	f->pipe = pe;
	pe->pipe_id = fi->st.st_ino;
	f->has_flags = true;
	f->flags = fi->flags;
	if (f->kind == FD_KIND__FD_FIFO) {
		f->reg = calloc(1, sizeof(*f->reg));
		if (!f->reg)
			return -1;
		reg_file_entry__init(f->reg);
		f->reg->path = strdup(fi->link);
		f->reg->flags = fi->flags;
		if (!f->reg->path)
			return -1;
	}
	if (pipe_seen(d->tree, pe->pipe_id))
		return 0;
	return pipe_peek(fi, pe);
}

/* ---- restore ---- */

struct pipe_obj {
	uint64_t id;
	int ends[2]; /* read, write */
	bool used[2];
};

static const PipeEntry *pipe_data(struct restore_tree *t, uint64_t id)
{
	for (size_t i = 0; i < t->files.len; i++) {
		const FileEntry *f = *vec_at(&t->files, FileEntry *, i);

		if (f->pipe && f->pipe->pipe_id == id && f->pipe->has_data)
			return f->pipe;
	}
	return NULL;
}

static int refill(int wfd, const PipeEntry *pe)
{
	if (pe && pe->has_pipe_size && fcntl(wfd, F_SETPIPE_SZ, pe->pipe_size) < 0) {
		pr_perror("cannot size a pipe to %u bytes", pe->pipe_size);
		return -1;
	}
	if (pe && pe->has_data && write_all(wfd, pe->data.data, pe->data.len)) {
		pr_perror("cannot refill a pipe");
		return -1;
	}
	return 0;
}

/* The pipe (or FIFO) object of this id, made or opened once for the whole tree. */
static struct pipe_obj *pipe_obj(struct restore_ctx *r, const FileEntry *f)
{
	struct restore_tree *t = r->tree;
	const PipeEntry *data = pipe_data(t, f->pipe->pipe_id), *size = f->pipe;
	struct pipe_obj *o;

	for (size_t i = 0; i < t->pipes.len; i++) {
		o = vec_at(&t->pipes, struct pipe_obj, i);
		if (o->id == f->pipe->pipe_id)
			return o;
	}
	o = vec_push(&t->pipes);
	if (!o)
		return NULL;
	o->id = f->pipe->pipe_id;
	o->ends[0] = o->ends[1] = -1;
	if (data)
		size = data;
	if (f->kind == FD_KIND__FD_PIPE) {
		if (pipe2(o->ends, O_CLOEXEC)) {
			pr_perror("cannot create a pipe");
			return NULL;
		}
	} else {
		/* one end open both ways keeps the FIFO from blocking anybody's open */
		o->ends[0] = open(rpath(f->reg->path), O_RDWR | O_NONBLOCK | O_CLOEXEC);
		if (o->ends[0] < 0) {
			pr_perror("cannot open FIFO %s", f->reg->path);
			return NULL;
		}
		o->ends[1] = dup(o->ends[0]);
		o->used[0] = o->used[1] = true; /* never handed out: every end is opened anew */
	}
	return refill(o->ends[1], size) ? NULL : o;
}

static int pipe_open(struct restore_ctx *r, const FileEntry *f)
{
	struct pipe_obj *o;
	int end, fd;
	char path[64];

	if (!f->pipe || (f->kind == FD_KIND__FD_FIFO && !f->reg)) {
		pr_err("files.img: pipe %u is malformed", f->id);
		return -1;
	}
	o = pipe_obj(r, f);
	if (!o)
		return -1;
	end = (f->flags & O_ACCMODE) == O_RDONLY ? 0 : 1;
	if (f->kind == FD_KIND__FD_PIPE && !o->used[end]) {
		o->used[end] = true;
		fd = fcntl(o->ends[end], F_DUPFD_CLOEXEC, 0);
	} else {
		/* another open file of the same pipe: a new reader or writer of it */
		snprintf(path, sizeof(path), "/proc/self/fd/%d", o->ends[end]);
		fd = open(f->kind == FD_KIND__FD_FIFO ? rpath(f->reg->path) : path,
			  (f->flags & O_ACCMODE) | O_NONBLOCK | O_CLOEXEC);
	}
	if (fd < 0 || fcntl(fd, F_SETFL, f->flags & SETFL_MASK)) {
		pr_perror("cannot open pipe %llu", (unsigned long long)f->pipe->pipe_id);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

const struct fd_ops pipe_fd_ops = {
	.name = "pipe",
	.kind = FD_KIND__FD_PIPE,
	.match = pipe_match,
	.dump = pipe_dump,
	.open = pipe_open,
};

const struct fd_ops fifo_fd_ops = {
	.name = "fifo",
	.kind = FD_KIND__FD_FIFO,
	.match = fifo_match,
	.dump = pipe_dump,
	.open = pipe_open,
};

void pipes_restore_fini(struct restore_tree *t)
{
	for (size_t i = 0; i < t->pipes.len; i++) {
		struct pipe_obj *o = vec_at(&t->pipes, struct pipe_obj, i);

		for (int e = 0; e < 2; e++)
			if (o->ends[e] >= 0)
				close(o->ends[e]);
	}
	vec_free(&t->pipes);
}

size_t pipe_obj_size(void)
{
	return sizeof(struct pipe_obj);
}
