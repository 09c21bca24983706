// SPDX-License-Identifier: MIT
/*
 * Deleted files that a task still has open or mapped ("ghosts"): unlinked files, files whose
 * name was taken by another file since, O_TMPFILE files.  No path leads to them any more, so
 * the dump keeps the file itself: its content goes into ghost-ID.img (holes left out unless
 * --no-ghost-fiemap), up to --ghost-limit bytes; or, with --link-remap, the dump gives the
 * inode a name again (a hard link next to where it lived) and the image only says where.
 * Every open file and mapping of one inode shares one ghost.
 *
 * On restore crest recreates the file in its old directory, fills it, and unlinks it again
 * under its old name, so /proc shows the restored fds exactly as at dump time
 * ("/dir/name (deleted)"), whatever took that name since.  An O_TMPFILE comes back as an
 * O_TMPFILE, which a program may still link into place.  Each open file and mapping is then a
 * reopen of crest's own fd through /proc/self/fd, with its own flags and offset, so they all
 * share the inode as before.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"
#include "internal.h"
#include "log.h"

#include "ghost.pb-c.h"

#define DELETED_SUFFIX " (deleted)"
#define GHOST_CHUNK (1U << 20)		 /* bytes of content per image message */
#define GHOST_LIMIT_DEFAULT (1ULL << 20) /* CRIU's default --ghost-limit */
#define GHOST_SIZE_MAX (1ULL << 46)

struct ghost_key {
	uint64_t dev, ino;
	uint32_t id;
	char *remap; /* --link-remap: the link made, removed again if the dump fails */
};

bool ghost_is_deleted(const char *link)
{
	size_t n = strlen(link), m = strlen(DELETED_SUFFIX);

	/* "/[aio] (deleted)" and the like are kernel objects, not files */
	return link[0] == '/' && link[1] != '[' && n > m + 1 &&
	       !strcmp(link + n - m, DELETED_SUFFIX);
}

/* "/a/b/name" -> "/a/b" and "name", in buffers of their own. */
static int split_path(const char *path, char **dir, char **base)
{
	char *d = strdup(path), *b = strdup(path);

	if (!d || !b) {
		free(d);
		free(b);
		return -1;
	}
	*dir = strdup(dirname(d));
	*base = strdup(basename(b));
	free(d);
	free(b);
	if (!*dir || !*base) {
		free(*dir);
		free(*base);
		return -1;
	}
	return 0;
}

/*
 * --link-remap: a new hard link to the open inode, in the directory it lived in.  Returns 1
 * when the kernel cannot link it: an unlinked file whose last name is gone can never have one
 * again, unless it was made by O_TMPFILE.
 */
static int link_remap(int fd, const char *dir, const struct stat *st, char **out)
{
	char name[4096], proc[64];

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	for (int n = 0; n < 1000; n++) {
		int ret;

		snprintf(name, sizeof(name), "%s/.crest-remap.%llx.%llx.%d", dir,
			 (unsigned long long)st->st_dev, (unsigned long long)st->st_ino, n);
		ret = linkat(fd, "", AT_FDCWD, name, AT_EMPTY_PATH);
		if (ret && errno == EPERM) /* AT_EMPTY_PATH wants CAP_DAC_READ_SEARCH */
			ret = linkat(AT_FDCWD, proc, AT_FDCWD, name, AT_SYMLINK_FOLLOW);
		if (!ret) {
			*out = strdup(name);
			return *out ? 0 : -1;
		}
		if (errno == EEXIST)
			continue;
		if (errno == ENOENT && !access(dir, F_OK))
			return 1;
		pr_perror("--link-remap: cannot link the deleted file back as %s", name);
		return -1;
	}
	pr_err("--link-remap: too many old links in %s", dir);
	return -1;
}

/*
 * The next run of content from *pos: [*pos, *end).  By extents (SEEK_DATA/SEEK_HOLE), so
 * holes cost nothing, or the whole rest at once.  0 at the end.
 */
static int next_extent(int fd, bool sparse, uint64_t size, uint64_t *pos, uint64_t *end)
{
	off_t data, hole;

	if (*pos >= size)
		return 0;
	*end = size;
	if (!sparse)
		return 1;
	data = lseek(fd, *pos, SEEK_DATA);
	if (data < 0 && errno == ENXIO)
		return 0;
	if (data < 0)
		return 1; /* no extent information here: all of it is data */
	hole = lseek(fd, data, SEEK_HOLE);
	*pos = data;
	if (hole > data && (uint64_t)hole < size)
		*end = hole;
	return *pos < size;
}

static int copy_content(struct cr_img *img, int fd, bool sparse, uint64_t size)
{
	unsigned char *buf = malloc(GHOST_CHUNK);
	uint64_t pos = 0, end;
	int ret = -1, more;

	if (!buf)
		return -1;
	while ((more = next_extent(fd, sparse, size, &pos, &end)) > 0) {
		while (pos < end) {
			size_t len = min_t(uint64_t, end - pos, GHOST_CHUNK);
			GhostEntry e = GHOST_ENTRY__INIT;
			ssize_t n = pread(fd, buf, len, pos);

			if (n <= 0) {
				pr_perror("cannot read the deleted file at %llu",
					  (unsigned long long)pos);
				goto out;
			}
			e.has_off = e.has_data = true;
			e.off = pos;
			e.data.data = buf;
			e.data.len = n;
			if (img_write_msg(img, &e.base))
				goto out;
			pos += n;
		}
	}
	ret = more;
out:
	free(buf);
	return ret;
}

static uint64_t content_bytes(int fd, bool sparse, uint64_t size)
{
	uint64_t pos = 0, end, bytes = 0;

	while (next_extent(fd, sparse, size, &pos, &end) > 0) {
		bytes += end - pos;
		pos = end;
	}
	return bytes;
}

static int write_ghost(struct dump_ctx *d, uint32_t id, GhostFileEntry *g, int fd, const char *what)
{
	const struct crest_opts *o = d->opts;
	uint64_t limit = o->ghost_limit ? o->ghost_limit : GHOST_LIMIT_DEFAULT, bytes = 0;
	bool sparse = !o->no_ghost_fiemap;
	GhostEntry head = GHOST_ENTRY__INIT;
	struct cr_img *img;
	int ret;

	if (!g->link_remap) {
		bytes = content_bytes(fd, sparse, g->size);
		if (bytes > limit) {
			pr_err("%s: deleted file %s holds %llu bytes, more than --ghost-limit "
			       "(%llu): raise the limit%s",
			       what, g->path, (unsigned long long)bytes, (unsigned long long)limit,
			       g->tmpfile ? " or dump with --link-remap" : "");
			return -1;
		}
	}
	img = img_open_write(d->dirfd, IMG_GHOST, id);
	if (!img)
		return -1;
	head.file = g;
	ret = img_write_msg(img, &head.base);
	if (!ret && !g->link_remap)
		ret = copy_content(img, fd, sparse, g->size);
	if (img_close(img))
		ret = -1;
	pr_info("%s: deleted file %s saved as ghost %u (%s, %llu bytes)", what, g->path, id,
		g->link_remap ? "re-linked" : "copied", (unsigned long long)bytes);
	return ret;
}

/*
 * A deleted file seen through proc_path (/proc/PID/fd/N or a map_files entry), whose /proc
 * link reads link: its ghost id, saving the file the first time it is seen.
 */
int ghost_dump(struct dump_ctx *d, const char *proc_path, const char *link, const char *what,
	       uint32_t *id)
{
	struct dump_tree *t = d->tree;
	GhostFileEntry g = GHOST_FILE_ENTRY__INIT;
	char *path = NULL, *dir = NULL, *base = NULL, tmpname[32];
	struct ghost_key *k;
	struct stat st, dst;
	int fd, ret = -1;

	if (!t->ghosts.elem)
		t->ghosts.elem = sizeof(struct ghost_key);
	fd = open(proc_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st)) {
		pr_perror("%s: cannot open deleted file %s", what, link);
		goto out;
	}
	for (size_t i = 0; i < t->ghosts.len; i++) {
		k = vec_at(&t->ghosts, struct ghost_key, i);
		if (k->dev == st.st_dev && k->ino == st.st_ino) {
			*id = k->id;
			ret = 0;
			goto out;
		}
	}
	if (!S_ISREG(st.st_mode)) {
		pr_err("%s: deleted %s is not a regular file: not supported", what, link);
		goto out;
	}
	path = strndup(link, strlen(link) - strlen(DELETED_SUFFIX));
	if (!path || split_path(path, &dir, &base))
		goto out;
	/* it is made again in its directory, which must still be there */
	if (stat(dir, &dst) || !S_ISDIR(dst.st_mode)) {
		pr_err("%s: deleted file %s: its directory %s is gone too: not supported", what,
		       path, dir);
		goto out;
	}
	g.path = path;
	g.mode = st.st_mode;
	g.uid = st.st_uid;
	g.gid = st.st_gid;
	g.size = st.st_size;
	g.has_atime_ns = g.has_mtime_ns = g.has_dev = g.has_ino = true;
	g.atime_ns = st.st_atim.tv_sec * 1000000000ULL + st.st_atim.tv_nsec;
	g.mtime_ns = st.st_mtim.tv_sec * 1000000000ULL + st.st_mtim.tv_nsec;
	g.dev = st.st_dev;
	g.ino = st.st_ino;
	/* O_TMPFILE names its file "#<inode>" */
	snprintf(tmpname, sizeof(tmpname), "#%llu", (unsigned long long)st.st_ino);
	g.has_tmpfile = true;
	g.tmpfile = st.st_nlink == 0 && !strcmp(base, tmpname);

	k = vec_push(&t->ghosts);
	if (!k)
		goto out;
	k->dev = st.st_dev;
	k->ino = st.st_ino;
	k->id = *id = t->ghosts.len;
	if (d->opts->link_remap) {
		int r = link_remap(fd, dir, &st, &k->remap);

		if (r < 0)
			goto out;
		if (r > 0)
			pr_info("%s: %s cannot be linked back: its content is copied", what, link);
		g.link_remap = k->remap;
	} else if (st.st_nlink > 0) {
		/* a copy would split it from its other names: only a link keeps it whole */
		pr_err("%s: %s was unlinked but still has %lu other name(s): dump with "
		       "--link-remap",
		       what, link, (unsigned long)st.st_nlink);
		goto out;
	}
	ret = write_ghost(d, *id, &g, fd, what);
out:
	if (fd >= 0)
		close(fd);
	free(path);
	free(dir);
	free(base);
	return ret;
}

/* Once the dump is over: a failed dump takes back the links it made. */
void ghost_dump_fini(struct dump_tree *t, bool ok)
{
	for (size_t i = 0; i < t->ghosts.len; i++) {
		struct ghost_key *k = vec_at(&t->ghosts, struct ghost_key, i);

		if (k->remap && !ok && unlink(k->remap))
			pr_perror("cannot remove %s", k->remap);
		free(k->remap);
	}
	vec_free(&t->ghosts);
}

/* ---- restore ---- */

struct ghost_obj {
	uint32_t id;
	int fd;	       /* crest's own: O_RDWR, or O_PATH for a re-linked file */
	int map_fd[2]; /* helpers for mappings: read-only, read-write; -1 until needed */
	char *remap;   /* --link-remap: the dump's link, removed once the restore succeeded */
};

/*
 * Give the file at dir/tmp its old name, then unlink it: an open file of it then reads
 * "dir/base (deleted)", as at dump time.  When another file has that name now, the two swap
 * names for a moment (RENAME_EXCHANGE) and the other one gets it back at once.
 */
static int unlink_as(int dirfd, const char *dir, const char *tmp, const char *base)
{
	if (!renameat2(dirfd, tmp, dirfd, base, RENAME_NOREPLACE))
		return unlinkat(dirfd, base, 0);
	if (errno == EEXIST && !renameat2(dirfd, tmp, dirfd, base, RENAME_EXCHANGE)) {
		if (unlinkat(dirfd, base, 0)) {
			renameat2(dirfd, tmp, dirfd, base, RENAME_EXCHANGE);
			return -1;
		}
		if (renameat(dirfd, tmp, dirfd, base)) {
			pr_perror("cannot give %s/%s its name back (it is %s/%s now)", dir, base,
				  dir, tmp);
			return -1;
		}
		return 0;
	}
	pr_warn("%s/%s: cannot rename deleted files here (%s): restored under a temporary name",
		dir, base, strerror(errno));
	return unlinkat(dirfd, tmp, 0);
}

static int fill(int fd, struct cr_img *img, const GhostFileEntry *g)
{
	ProtobufCMessage *msg;
	struct timespec times[2];
	int n;

	if (ftruncate(fd, g->size)) {
		pr_perror("%s: cannot size the deleted file %s", img_path(img), g->path);
		return -1;
	}
	while ((n = img_read_msg(img, &ghost_entry__descriptor, &msg)) == 1) {
		GhostEntry *e = (GhostEntry *)msg;
		int bad = !e->has_off || !e->has_data || e->file || e->off > g->size ||
			  e->data.len > g->size - e->off;

		if (bad || pwrite(fd, e->data.data, e->data.len, e->off) != (ssize_t)e->data.len) {
			if (bad)
				pr_err("%s: chunk out of the file's bounds", img_path(img));
			else
				pr_perror("cannot write the deleted file %s", g->path);
			ghost_entry__free_unpacked(e, NULL);
			return -1;
		}
		ghost_entry__free_unpacked(e, NULL);
	}
	if (n < 0)
		return -1;
	times[0].tv_sec = g->atime_ns / 1000000000ULL;
	times[0].tv_nsec = g->atime_ns % 1000000000ULL;
	times[1].tv_sec = g->mtime_ns / 1000000000ULL;
	times[1].tv_nsec = g->mtime_ns % 1000000000ULL;
	if (fchown(fd, g->uid, g->gid) || fchmod(fd, g->mode & 07777) ||
	    (g->has_mtime_ns && futimens(fd, times))) {
		pr_perror("cannot restore the owner, mode or times of %s", g->path);
		return -1;
	}
	return 0;
}

/* The file as it was: made again from the image, or found by its link. */
static int make_ghost(struct restore_tree *t, struct cr_img *img, const GhostFileEntry *g,
		      struct ghost_obj *o)
{
	char *dir = NULL, *base = NULL, tmp[64];
	int dirfd = -1, fd = -1;
	struct stat st;

	if (g->path[0] != '/' || g->size > GHOST_SIZE_MAX || split_path(g->path, &dir, &base)) {
		pr_err("%s: malformed", img_path(img));
		goto err;
	}
	dirfd = open(rpath(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		pr_perror("cannot restore deleted file %s: no directory %s", g->path, dir);
		goto err;
	}
	snprintf(tmp, sizeof(tmp), ".crest-ghost.%d.%u", (int)getpid(), o->id);
	if (g->link_remap) {
		if (stat(g->link_remap, &st) ||
		    (g->has_ino && (st.st_ino != g->ino || st.st_dev != g->dev))) {
			pr_err("deleted file %s: its --link-remap link %s is gone or another file",
			       g->path, g->link_remap);
			goto err;
		}
		/* a link of our own: the dump's stays until the restore succeeded */
		if (linkat(AT_FDCWD, g->link_remap, dirfd, tmp, 0) ||
		    (fd = openat(dirfd, tmp, O_PATH | O_NOFOLLOW | O_CLOEXEC)) < 0) {
			pr_perror("cannot link %s back as %s/%s", g->link_remap, dir, tmp);
			unlinkat(dirfd, tmp, 0);
			goto err;
		}
		o->remap = strdup(g->link_remap);
		if (!o->remap || unlink_as(dirfd, dir, tmp, base))
			goto err;
		goto done;
	}
	if (g->tmpfile) {
		fd = openat(dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (fd >= 0) {
			if (fill(fd, img, g))
				goto err;
			goto done;
		}
		pr_warn("%s: no O_TMPFILE here (%s): restored as a plain deleted file", dir,
			strerror(errno));
	}
	fd = openat(dirfd, tmp, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0) {
		pr_perror("cannot recreate deleted file %s as %s/%s", g->path, dir, tmp);
		goto err;
	}
	if (fill(fd, img, g)) {
		unlinkat(dirfd, tmp, 0);
		goto err;
	}
	if (unlink_as(dirfd, dir, tmp, base))
		goto err;
done:
	o->fd = fd;
	close(dirfd);
	free(dir);
	free(base);
	return 0;
err:
	if (fd >= 0)
		close(fd);
	if (dirfd >= 0)
		close(dirfd);
	free(dir);
	free(base);
	return -1;
}

static struct ghost_obj *ghost_get(struct restore_tree *t, uint32_t id)
{
	ProtobufCMessage *msg = NULL;
	struct ghost_obj *o;
	struct cr_img *img;
	int n, ret;

	if (!t->ghosts.elem)
		t->ghosts.elem = sizeof(struct ghost_obj);
	for (size_t i = 0; i < t->ghosts.len; i++) {
		o = vec_at(&t->ghosts, struct ghost_obj, i);
		if (o->id == id)
			return o->fd >= 0 ? o : NULL;
	}
	o = vec_push(&t->ghosts);
	if (!o)
		return NULL;
	o->id = id;
	o->fd = o->map_fd[0] = o->map_fd[1] = -1;
	img = img_open_read(t->dirfd, IMG_GHOST, id);
	if (!img)
		return NULL;
	n = img_read_msg(img, &ghost_entry__descriptor, &msg);
	if (n != 1 || !((GhostEntry *)msg)->file) {
		if (n >= 0)
			pr_err("%s: no file description", img_path(img));
		ret = -1;
	} else {
		ret = make_ghost(t, img, ((GhostEntry *)msg)->file, o);
	}
	if (msg)
		protobuf_c_message_free_unpacked(msg, NULL);
	img_close(img);
	return ret ? NULL : o;
}

/* Another open file of the ghost, with these flags. */
static int reopen(const struct ghost_obj *o, int flags)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", o->fd);
	return open(path,
		    (flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY | O_TMPFILE)) | O_CLOEXEC);
}

/* An open file of a deleted file, as reg describes it. */
int ghost_open_file(struct restore_ctx *r, const RegFileEntry *reg)
{
	struct ghost_obj *o = ghost_get(r->tree, reg->ghost_id);
	int fd;

	if (!o)
		return -1;
	fd = reopen(o, reg->flags);
	if (fd < 0 || (reg->pos && lseek(fd, reg->pos, SEEK_SET) != (off_t)reg->pos)) {
		pr_perror("cannot reopen deleted file %s", reg->path);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* A helper fd to map a deleted file from, one per ghost and mode. */
int ghost_restore_fd(struct restore_ctx *r, uint32_t id, bool may_write)
{
	struct ghost_obj *o = ghost_get(r->tree, id);
	int fd;

	if (!o)
		return -1;
	if (o->map_fd[may_write] >= 0)
		return o->map_fd[may_write];
	fd = reopen(o, may_write ? O_RDWR : O_RDONLY);
	if (fd < 0) {
		pr_perror("cannot reopen deleted file %u to map it", id);
		return -1;
	}
	o->map_fd[may_write] = restore_add_helper(r->tree, fd);
	return o->map_fd[may_write];
}

/* After the restore: crest's fds go; a restored tree no longer needs the dump's links. */
void ghost_restore_fini(struct restore_tree *t, bool ok)
{
	for (size_t i = 0; i < t->ghosts.len; i++) {
		struct ghost_obj *o = vec_at(&t->ghosts, struct ghost_obj, i);

		if (o->fd >= 0)
			close(o->fd);
		if (o->remap && ok && unlink(o->remap))
			pr_warn("cannot remove the --link-remap link %s: %s", o->remap,
				strerror(errno));
		free(o->remap);
	}
	vec_free(&t->ghosts);
}
