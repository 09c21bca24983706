// SPDX-License-Identifier: MIT
/*
 * Pseudo-terminals whose master (/dev/ptmx) is open in the tree, with their slaves
 * (/dev/pts/N): terminal settings, window size, lock and packet mode, and which session has
 * the pair as its controlling terminal with which foreground process group.  A slave whose
 * master is outside the tree is the shell job's terminal (files-reg.c, --shell-job).
 *
 * crest opens /dev/ptmx again and asks for the same index by opening until devpts hands it
 * out (it always gives the lowest free one); when that index is taken the pair gets another
 * one and the tasks' fds point at the new /dev/pts/M.  Settings go in through the master
 * (termios and window size are the slave's either way).  Slaves are opened from the master
 * (TIOCGPTPEER), so no path is needed.  The session leader takes the terminal again
 * (TIOCSCTTY) right after its setsid(), before any child is forked, so every member of the
 * session has it as controlling terminal; the foreground group is set once every group
 * exists.  Bytes queued in the terminal are not kept.
 */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#include "internal.h"
#include "log.h"

#define PTMX_MAJOR 5
#define PTMX_MINOR 2
#define PTS_MAJOR_FIRST 136 /* UNIX98 slaves: majors 136-143, 256 minors each */
#define PTS_MAJOR_LAST 143
#define INDEX_TRIES_MAX 4096 /* opens spent looking for the old index */

static bool is_ptmx(const struct stat *st)
{
	return S_ISCHR(st->st_mode) && st->st_rdev == makedev(PTMX_MAJOR, PTMX_MINOR);
}

static bool is_pts(const struct stat *st, uint32_t *index)
{
	unsigned int maj = major(st->st_rdev);

	if (!S_ISCHR(st->st_mode) || maj < PTS_MAJOR_FIRST || maj > PTS_MAJOR_LAST)
		return false;
	*index = (maj - PTS_MAJOR_FIRST) * 256 + minor(st->st_rdev);
	return true;
}

/* Every pty master open anywhere in the tree, by index, found once per dump. */
static int scan_masters(struct dump_tree *t)
{
	t->pty_masters.elem = sizeof(uint32_t);
	t->pty_scanned = true;
	for (size_t i = 0; i < t->tasks.len; i++) {
		struct dump_ctx *d = *vec_at(&t->tasks, struct dump_ctx *, i);
		char path[64];
		struct dirent *de;
		DIR *dir;

		if (d->zombie)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/fd", d->pid);
		dir = opendir(path);
		while (dir && (de = readdir(dir))) {
			char fdpath[320], info[320], *text;
			const char *idx;
			struct stat st;
			uint32_t *slot;

			snprintf(fdpath, sizeof(fdpath), "/proc/%d/fd/%s", d->pid, de->d_name);
			if (de->d_name[0] == '.' || stat(fdpath, &st) || !is_ptmx(&st))
				continue;
			snprintf(info, sizeof(info), "/proc/%d/fdinfo/%s", d->pid, de->d_name);
			text = read_file_at(AT_FDCWD, info, NULL);
			idx = text ? proc_field(text, "tty-index") : NULL;
			slot = idx ? vec_push(&t->pty_masters) : NULL;
			if (slot)
				*slot = strtoul(idx, NULL, 10);
			free(text);
		}
		if (dir)
			closedir(dir);
	}
	return 0;
}

static bool master_in_tree(struct dump_tree *t, uint32_t index)
{
	if (!t->pty_scanned)
		scan_masters(t);
	for (size_t i = 0; i < t->pty_masters.len; i++)
		if (*vec_at(&t->pty_masters, uint32_t, i) == index)
			return true;
	return false;
}

static bool pty_match(struct dump_ctx *d, const struct fd_info *fi)
{
	uint32_t index;

	if (is_ptmx(&fi->st))
		return true;
	return is_pts(&fi->st, &index) && master_in_tree(d->tree, index);
}

static bool in_tree(struct dump_tree *t, pid_t pid)
{
	for (size_t i = 0; i < t->tasks.len; i++)
		if ((*vec_at(&t->tasks, struct dump_ctx *, i))->pid == pid)
			return true;
	return false;
}

static int dump_settings(int fd, PtyEntry *p)
{
	TermiosEntry *te = calloc(1, sizeof(*te));
	WinsizeEntry *ws = calloc(1, sizeof(*ws));
	struct termios tio;
	struct winsize win;

	if (!te || !ws || tcgetattr(fd, &tio) || ioctl(fd, TIOCGWINSZ, &win)) {
		free(te);
		free(ws);
		return -1;
	}
	termios_entry__init(te);
	te->iflag = tio.c_iflag;
	te->oflag = tio.c_oflag;
	te->cflag = tio.c_cflag;
	te->lflag = tio.c_lflag;
	te->line = tio.c_line;
	te->ispeed = cfgetispeed(&tio);
	te->ospeed = cfgetospeed(&tio);
	te->cc.data = malloc(sizeof(tio.c_cc));
	if (!te->cc.data) {
		free(te);
		free(ws);
		return -1;
	}
	memcpy(te->cc.data, tio.c_cc, sizeof(tio.c_cc));
	te->cc.len = sizeof(tio.c_cc);
	p->termios = te;
	winsize_entry__init(ws);
	ws->rows = win.ws_row;
	ws->cols = win.ws_col;
	ws->xpixel = win.ws_xpixel;
	ws->ypixel = win.ws_ypixel;
	p->winsize = ws;
	return 0;
}

static int pty_dump(struct dump_ctx *d, const struct fd_info *fi, FileEntry *f)
{
	PtyEntry *p = calloc(1, sizeof(*p));
	int fd = fi->lfd, val;

	if (!p)
		return -1;
	pty_entry__init(p);
	f->pty = p;
	f->has_flags = true;
	f->flags = fi->flags;
	p->master = is_ptmx(&fi->st);
	if (!p->master)
		is_pts(&fi->st, &p->index);
	if (fd < 0 || (p->master && ioctl(fd, TIOCGPTN, &p->index)) || dump_settings(fd, p)) {
		pr_perror("fd %d of %d: cannot read the terminal %s", fi->fd, d->pid, fi->link);
		return -1;
	}
	if (!p->master)
		return 0;
	p->has_locked = p->has_packet = true;
	p->locked = !ioctl(fd, TIOCGPTLCK, &val) && val;
	p->packet = !ioctl(fd, TIOCGPKT, &val) && val;
	if (!ioctl(fd, TIOCGSID, &val)) {
		pid_t pgrp;

		if (!in_tree(d->tree, val)) {
			pr_warn("pty %u is the terminal of session %d, which is not dumped: it "
				"comes back as nobody's terminal",
				p->index, val);
		} else {
			p->has_sid = true;
			p->sid = val;
			if (!ioctl(fd, TIOCGPGRP, &pgrp) && pgrp > 0) {
				p->has_pgrp = true;
				p->pgrp = pgrp;
			}
		}
	}
	pr_debug("fd %d of %d: pty %u %s, session %d", fi->fd, d->pid, p->index,
		 p->master ? "master" : "slave", p->has_sid ? (int)p->sid : 0);
	return 0;
}

/* ---- restore ---- */

struct pty_obj {
	uint32_t index; /* as dumped */
	int master;	/* crest's own fd of the new master */
	bool locked;
};

/* The master's file entry of pty index, and its number in t->files. */
static const FileEntry *master_entry(struct restore_tree *t, uint32_t index, size_t *k)
{
	for (size_t i = 0; i < t->files.len; i++) {
		const FileEntry *f = *vec_at(&t->files, FileEntry *, i);

		if (f->kind == FD_KIND__FD_PTY && f->pty && f->pty->master &&
		    f->pty->index == index) {
			if (k)
				*k = i;
			return f;
		}
	}
	return NULL;
}

/* /dev/ptmx hands out the lowest free index: open until it is the old one, if it is free. */
static int open_ptmx(uint32_t want)
{
	struct vec held = VEC_INIT(int);
	int fd = -1;

	for (int tries = 0; tries < INDEX_TRIES_MAX; tries++) {
		int nfd = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC), *slot;
		uint32_t got;

		if (nfd < 0 || ioctl(nfd, TIOCGPTN, &got)) {
			pr_perror("cannot open /dev/ptmx");
			if (nfd >= 0)
				close(nfd);
			break;
		}
		if (got == want) {
			fd = nfd;
			break;
		}
		slot = vec_push(&held);
		if (!slot) {
			close(nfd);
			break;
		}
		*slot = nfd;
		/* above it: the old index is taken; below it: hold this one and go on */
		if (got > want || want >= INDEX_TRIES_MAX)
			break;
	}
	/* the old index is not to be had: the lowest one we got */
	for (size_t i = 0; i < held.len; i++) {
		int h = *vec_at(&held, int, i);

		if (fd < 0)
			fd = h;
		else
			close(h);
	}
	vec_free(&held);
	return fd;
}

static int apply_settings(int fd, const PtyEntry *p)
{
	struct termios tio;
	struct winsize win;
	int one = 1;

	if (p->termios) {
		const TermiosEntry *te = p->termios;

		if (tcgetattr(fd, &tio))
			return -1;
		tio.c_iflag = te->iflag;
		tio.c_oflag = te->oflag;
		tio.c_cflag = te->cflag;
		tio.c_lflag = te->lflag;
		tio.c_line = te->line;
		memcpy(tio.c_cc, te->cc.data, min_t(size_t, te->cc.len, sizeof(tio.c_cc)));
		if (cfsetispeed(&tio, te->ispeed) || cfsetospeed(&tio, te->ospeed) ||
		    tcsetattr(fd, TCSANOW, &tio))
			return -1;
	}
	if (p->winsize) {
		win.ws_row = p->winsize->rows;
		win.ws_col = p->winsize->cols;
		win.ws_xpixel = p->winsize->xpixel;
		win.ws_ypixel = p->winsize->ypixel;
		if (ioctl(fd, TIOCSWINSZ, &win))
			return -1;
	}
	if (p->packet && ioctl(fd, TIOCPKT, &one))
		return -1;
	return 0;
}

static struct pty_obj *pty_get(struct restore_tree *t, uint32_t index)
{
	const FileEntry *mf = master_entry(t, index, NULL);
	struct pty_obj *o;
	int zero = 0;
	uint32_t got;

	if (!t->ptys.elem)
		t->ptys.elem = sizeof(struct pty_obj);
	for (size_t i = 0; i < t->ptys.len; i++) {
		o = vec_at(&t->ptys, struct pty_obj, i);
		if (o->index == index)
			return o->master >= 0 ? o : NULL;
	}
	if (!mf) {
		pr_err("files.img: pty slave %u has no master", index);
		return NULL;
	}
	o = vec_push(&t->ptys);
	if (!o)
		return NULL;
	o->index = index;
	o->locked = mf->pty->locked;
	o->master = open_ptmx(index);
	if (o->master < 0)
		return NULL;
	if (apply_settings(o->master, mf->pty) ||
	    (!o->locked && ioctl(o->master, TIOCSPTLCK, &zero))) {
		pr_perror("cannot set up pty %u again", index);
		close(o->master);
		o->master = -1;
		return NULL;
	}
	if (!ioctl(o->master, TIOCGPTN, &got) && got != index)
		pr_warn("/dev/pts/%u is taken: the restored terminal is /dev/pts/%u", index, got);
	return o;
}

static int pty_open(struct restore_ctx *r, const FileEntry *f)
{
	int one = 1, zero = 0, fd, flags = f->flags & (O_ACCMODE | O_NONBLOCK);
	struct pty_obj *o;

	if (!f->pty) {
		pr_err("files.img: pty %u is malformed", f->id);
		return -1;
	}
	o = pty_get(r->tree, f->pty->index);
	if (!o)
		return -1;
	if (f->pty->master) {
		/* the one open file of this master; only status flags are its own */
		fd = fcntl(o->master, F_DUPFD_CLOEXEC, 0);
		if (fd >= 0 && fcntl(fd, F_SETFL, f->flags & (O_NONBLOCK | O_ASYNC))) {
			close(fd);
			fd = -1;
		}
	} else {
		/* a locked slave cannot be opened: unlock it for the moment */
		if (o->locked)
			ioctl(o->master, TIOCSPTLCK, &zero);
		fd = ioctl(o->master, TIOCGPTPEER, flags | O_NOCTTY | O_CLOEXEC);
		if (o->locked)
			ioctl(o->master, TIOCSPTLCK, &one);
		if (fd >= 0 && apply_settings(fd, f->pty)) {
			close(fd);
			fd = -1;
		}
	}
	if (fd < 0)
		pr_perror("cannot open pty %u's %s again", f->pty->index,
			  f->pty->master ? "master" : "slave");
	return fd;
}

const struct fd_ops pty_fd_ops = {
	.name = "pty",
	.kind = FD_KIND__FD_PTY,
	.match = pty_match,
	.dump = pty_dump,
	.open = pty_open,
};

/* The master whose terminal is the session of r, and its helper fd (in every task). */
static const FileEntry *session_master(struct restore_ctx *r, int *helper)
{
	struct restore_tree *t = r->tree;

	if (r->pstree->sid != (uint32_t)r->pid)
		return NULL;
	for (size_t k = 0; k < t->files.len; k++) {
		const FileEntry *f = *vec_at(&t->files, FileEntry *, k);

		if (f->kind == FD_KIND__FD_PTY && f->pty && f->pty->master && f->pty->has_sid &&
		    f->pty->sid == (uint32_t)r->pid && t->file_fds[k] >= 0) {
			*helper = t->file_fds[k];
			return f;
		}
	}
	return NULL;
}

/* Remote, in a session leader right after its setsid(): its controlling terminal. */
int tty_restore_ctty(struct restore_ctx *r)
{
	struct rsys *rs = &r->rs;
	const FileEntry *f;
	int master;
	long fd;

	f = session_master(r, &master);
	if (!f)
		return 0;
	fd = rsys3(rs, SYS_ioctl, master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (rcheck(r, "open the controlling terminal", fd))
		return -1;
	if (rcheck(r, "TIOCSCTTY", rsys3(rs, SYS_ioctl, fd, TIOCSCTTY, 0))) {
		rsys1(rs, SYS_close, fd);
		return -1;
	}
	pr_debug("task %d: pty %u is its controlling terminal again", r->pid, f->pty->index);
	return rcheck(r, "close", rsys1(rs, SYS_close, fd));
}

/* Remote, once every process group exists: the session's foreground group. */
int tty_restore_late(struct restore_ctx *r)
{
	struct rsys *rs = &r->rs;
	const FileEntry *f;
	int master;
	pid_t pgrp;

	f = session_master(r, &master);
	if (!f || !f->pty->has_pgrp)
		return 0;
	pgrp = f->pty->pgrp;
	if (rsys_poke(rs, rs->scratch, &pgrp, sizeof(pgrp)))
		return -1;
	return rcheck(r, "TIOCSPGRP", rsys3(rs, SYS_ioctl, master, TIOCSPGRP, rs->scratch));
}

void tty_restore_fini(struct restore_tree *t)
{
	for (size_t i = 0; i < t->ptys.len; i++) {
		struct pty_obj *o = vec_at(&t->ptys, struct pty_obj, i);

		if (o->master >= 0)
			close(o->master);
	}
	vec_free(&t->ptys);
}
