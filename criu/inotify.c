// SPDX-License-Identifier: MIT
/*
 * inotify instances: every watch with its mask and watch descriptor, from the
 * "inotify wd:..." lines of /proc/PID/fdinfo.  Those name the watched inode only by number
 * and file handle, so the dump finds its path: through the handle (open_by_handle_at), or,
 * when that fails or with --force-irmap, by scanning --irmap-scan-path directories (default:
 * the task's cwd, then /) for the inode.  crest makes the instance and adds the watches
 * itself, by path, or by handle when the path now names another inode.
 *
 * Watch descriptors are handed out in increasing order and never reused while the instance
 * lives, so the watches are added in wd order, and a gap (a watch since removed) is filled by
 * adding and removing a watch on a throwaway inode; the IN_IGNORED event that leaves is read
 * away.  Events queued but not yet read at dump time are not kept.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "internal.h"
#include "log.h"

#define HANDLE_MAX 128 /* MAX_HANDLE_SZ */

struct raw_handle {
	struct file_handle fh;
	unsigned char bytes[HANDLE_MAX];
};

static bool inotify_match(struct dump_ctx *d, const struct fd_info *fi)
{
	return !strcmp(fi->link, "anon_inode:inotify");
}

/* An fd on a mount of the filesystem dev, as the task pid sees it (for open_by_handle_at). */
static int mount_fd_of(pid_t pid, dev_t dev)
{
	char path[64], *text, *line, *save = NULL;
	int fd = -1;

	snprintf(path, sizeof(path), "/proc/%d/mountinfo", pid);
	text = read_file_at(AT_FDCWD, path, NULL);
	for (line = text ? strtok_r(text, "\n", &save) : NULL; line && fd < 0;
	     line = strtok_r(NULL, "\n", &save)) {
		unsigned int maj, min;
		char mnt[4096], where[4200];

		/* "36 35 98:0 /root /mnt rw,... - fstype source opts" */
		if (sscanf(line, "%*d %*d %u:%u %*s %4095s", &maj, &min, mnt) != 3 ||
		    makedev(maj, min) != dev)
			continue;
		snprintf(where, sizeof(where), "/proc/%d/root%s", pid, mnt);
		fd = open(where, O_PATH | O_CLOEXEC);
	}
	free(text);
	return fd;
}

/* The inode the handle names, opened O_PATH; -1 when it cannot be. */
static int open_handle(pid_t pid, dev_t dev, const struct raw_handle *h)
{
	int mfd = mount_fd_of(pid, dev), fd;

	if (mfd < 0)
		return -1;
	fd = open_by_handle_at(mfd, (struct file_handle *)&h->fh, O_PATH | O_CLOEXEC);
	close(mfd);
	return fd;
}

static bool is_inode(const char *path, dev_t dev, ino_t ino)
{
	struct stat st;

	return !lstat(path, &st) && st.st_dev == dev && st.st_ino == ino;
}

/* nftw has no closure: the inode being looked for, and what was found. */
static struct {
	dev_t dev;
	ino_t ino;
	dev_t skip[2]; /* /proc and /sys: nothing to find there, and a lot to walk */
	char *found;
} irmap;

static int irmap_visit(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	if (flag == FTW_D && (st->st_dev == irmap.skip[0] || st->st_dev == irmap.skip[1]) &&
	    st->st_dev != irmap.dev)
		return FTW_SKIP_SUBTREE;
	if (flag != FTW_NS && st->st_dev == irmap.dev && st->st_ino == irmap.ino) {
		irmap.found = strdup(path);
		return FTW_STOP;
	}
	return FTW_CONTINUE;
}

/* --irmap-scan-path: look for the inode under each directory in turn. */
static char *irmap_scan(struct dump_ctx *d, dev_t dev, ino_t ino)
{
	static const char *const defaults[] = {NULL /* the task's cwd */, "/", NULL};
	const char *const *dirs = d->opts->irmap_scan_paths ? d->opts->irmap_scan_paths : defaults;
	char cwd[64];
	struct stat st;

	snprintf(cwd, sizeof(cwd), "/proc/%d/cwd", d->pid);
	irmap.skip[0] = stat("/proc", &st) ? 0 : st.st_dev;
	irmap.skip[1] = stat("/sys", &st) ? 0 : st.st_dev;
	irmap.dev = dev;
	irmap.ino = ino;
	irmap.found = NULL;
	for (size_t i = 0; !irmap.found && (dirs == defaults ? i < 2 : dirs[i] != NULL); i++) {
		char base[4096];

		if (!dirs[i] && readlink_at(AT_FDCWD, cwd, base, sizeof(base)))
			continue;
		pr_debug("irmap: looking for inode %lu in %s", (unsigned long)ino,
			 dirs[i] ? dirs[i] : base);
		nftw(dirs[i] ? dirs[i] : base, irmap_visit, 32, FTW_PHYS | FTW_ACTIONRETVAL);
	}
	return irmap.found;
}

static int parse_handle(const char *hex, unsigned int bytes, int type, struct raw_handle *h)
{
	if (bytes > HANDLE_MAX || strlen(hex) < 2 * bytes)
		return -1;
	h->fh.handle_bytes = bytes;
	h->fh.handle_type = type;
	for (unsigned int i = 0; i < bytes; i++)
		if (sscanf(hex + 2 * i, "%2hhx", &h->bytes[i]) != 1)
			return -1;
	return 0;
}

/* One "inotify wd:..." line: the watch, with the path of its inode. */
static int dump_watch(struct dump_ctx *d, const struct fd_info *fi, const char *line,
		      InotifyWdEntry *w)
{
	unsigned int wd, sdev, mask, ignored, bytes = 0;
	unsigned long ino;
	int type = 0, hfd = -1;
	char hex[2 * HANDLE_MAX + 1] = "", path[4096];
	struct raw_handle h;
	dev_t dev;

	if (sscanf(line,
		   "inotify wd:%x ino:%lx sdev:%x mask:%x ignored_mask:%x fhandle-bytes:%x "
		   "fhandle-type:%x f_handle:%256s",
		   &wd, &ino, &sdev, &mask, &ignored, &bytes, &type, hex) < 5) {
		pr_err("fd %d of %d: unreadable inotify watch: %.*s", fi->fd, d->pid,
		       (int)strcspn(line, "\n"), line);
		return -1;
	}
	/* the kernel's dev_t: 12 bits of major above 20 bits of minor */
	dev = makedev(sdev >> 20, sdev & 0xfffff);
	w->wd = wd;
	w->mask = mask;
	w->has_ino = w->has_dev = true;
	w->ino = ino;
	w->dev = dev;
	if (bytes && !parse_handle(hex, bytes, type, &h)) {
		w->has_f_handle = w->has_handle_type = true;
		w->f_handle.data = malloc(bytes);
		if (!w->f_handle.data)
			return -1;
		memcpy(w->f_handle.data, h.bytes, bytes);
		w->f_handle.len = bytes;
		w->handle_type = type;
		if (!d->opts->force_irmap)
			hfd = open_handle(d->pid, dev, &h);
	}
	if (hfd >= 0) {
		char proc[64];

		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", hfd);
		if (!readlink_at(AT_FDCWD, proc, path, sizeof(path)) && path[0] == '/' &&
		    is_inode(path, dev, ino))
			w->path = strdup(path);
		close(hfd);
	}
	if (!w->path)
		w->path = irmap_scan(d, dev, ino);
	if (!w->path) {
		pr_err("fd %d of %d: inotify watch %u is on inode %lu of device %u:%u, whose path "
		       "cannot be found: --irmap-scan-path DIR where it lives",
		       fi->fd, d->pid, wd, ino, major(dev), minor(dev));
		return -1;
	}
	pr_debug("fd %d of %d: inotify watch %u mask %#x on %s", fi->fd, d->pid, wd, mask, w->path);
	return 0;
}

static int inotify_dump(struct dump_ctx *d, const struct fd_info *fi, FileEntry *f)
{
	InotifyEntry *e = calloc(1, sizeof(*e));
	const char *line;

	if (!e)
		return -1;
	inotify_entry__init(e);
	f->inotify = e;
	f->has_flags = true;
	f->flags = fi->flags;
	for (line = strstr(fi->fdinfo, "inotify wd:"); line;
	     line = strstr(line + 1, "\ninotify wd:")) {
		InotifyWdEntry *w, **arr;

		line += line[0] == '\n';
		w = calloc(1, sizeof(*w));
		arr = realloc(e->wds, (e->n_wds + 1) * sizeof(*arr));
		if (!w || !arr) {
			free(w);
			return -1;
		}
		e->wds = arr;
		inotify_wd_entry__init(w);
		e->wds[e->n_wds++] = w;
		if (dump_watch(d, fi, line, w))
			return -1;
	}
	return 0;
}

/* ---- restore ---- */

static int wd_cmp(const void *a, const void *b)
{
	return (*(InotifyWdEntry *const *)a)->wd - (*(InotifyWdEntry *const *)b)->wd;
}

/* Read away everything queued: only the IN_IGNORED of our filler watches can be there. */
static void drain(int fd)
{
	char buf[4096];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

/* Add the watch at its path, or through its handle when the path is another inode now. */
static int add_watch(int fd, const InotifyWdEntry *w)
{
	char proc[64];
	int hfd, wd;

	if (!w->has_ino || is_inode(w->path, w->dev, w->ino))
		return inotify_add_watch(fd, w->path, w->mask | IN_DONT_FOLLOW);
	if (w->has_f_handle && w->f_handle.len <= HANDLE_MAX) {
		struct raw_handle h;

		h.fh.handle_bytes = w->f_handle.len;
		h.fh.handle_type = w->handle_type;
		memcpy(h.bytes, w->f_handle.data, w->f_handle.len);
		hfd = open_handle(getpid(), w->dev, &h);
		if (hfd >= 0) {
			snprintf(proc, sizeof(proc), "/proc/self/fd/%d", hfd);
			wd = inotify_add_watch(fd, proc, w->mask);
			close(hfd);
			return wd;
		}
	}
	pr_warn("inotify watch %d: %s is another file now: watching it anyway", w->wd, w->path);
	return inotify_add_watch(fd, w->path, w->mask | IN_DONT_FOLLOW);
}

static int inotify_open(struct restore_ctx *r, const FileEntry *f)
{
	InotifyWdEntry **wds;
	char filler[64];
	int fd, gap = -1, next = 1;
	size_t n;

	if (!f->inotify) {
		pr_err("files.img: inotify %u is malformed", f->id);
		return -1;
	}
	n = f->inotify->n_wds;
	wds = malloc((n + 1) * sizeof(*wds));
	fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (!wds || fd < 0) {
		pr_perror("cannot recreate inotify %u", f->id);
		goto err;
	}
	memcpy(wds, f->inotify->wds, n * sizeof(*wds));
	qsort(wds, n, sizeof(*wds), wd_cmp);
	for (size_t i = 0; i < n; i++) {
		int wd;

		if (wds[i]->wd < next || wds[i]->wd > (1 << 24)) {
			pr_err("files.img: inotify %u: watch %d is out of order", f->id,
			       wds[i]->wd);
			goto err;
		}
		/* the wds removed since: a watch on a throwaway inode takes each one */
		while (next < wds[i]->wd) {
			if (gap < 0 && (gap = memfd_create("crest-inotify-gap", MFD_CLOEXEC)) < 0)
				goto err_sys;
			snprintf(filler, sizeof(filler), "/proc/self/fd/%d", gap);
			wd = inotify_add_watch(fd, filler, IN_ACCESS);
			if (wd < 0 || inotify_rm_watch(fd, wd))
				goto err_sys;
			next = wd + 1;
		}
		drain(fd);
		wd = add_watch(fd, wds[i]);
		if (wd < 0) {
			pr_perror("cannot watch %s again (inotify wd %d)", wds[i]->path,
				  wds[i]->wd);
			goto err;
		}
		if (wd != wds[i]->wd) {
			pr_err("inotify watch on %s came back as wd %d, not %d", wds[i]->path, wd,
			       wds[i]->wd);
			goto err;
		}
		next = wd + 1;
	}
	if (!(f->flags & O_NONBLOCK) && fcntl(fd, F_SETFL, f->flags & (O_NONBLOCK | O_ASYNC)))
		goto err_sys;
	if (gap >= 0)
		close(gap);
	free(wds);
	return fd;
err_sys:
	pr_perror("cannot recreate the watches of inotify %u", f->id);
err:
	if (gap >= 0)
		close(gap);
	if (fd >= 0)
		close(fd);
	free(wds);
	return -1;
}

const struct fd_ops inotify_fd_ops = {
	.name = "inotify",
	.kind = FD_KIND__FD_INOTIFY,
	.match = inotify_match,
	.dump = inotify_dump,
	.open = inotify_open,
};
