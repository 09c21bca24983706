// SPDX-License-Identifier: MIT
/*
 * File locks (--file-locks): flock() locks, POSIX record locks, OFD locks and leases.  The
 * kernel lists the locks held through an fd in its /proc/PID/fdinfo ("lock:" lines, as in
 * /proc/locks), so each is saved with the fd of the task that holds it.  Without
 * --file-locks a task holding any lock is refused, since it would come back without it.
 *
 * Each lock is taken again by its owner, by a remote flock() or fcntl() in the task on the
 * fd it had: a POSIX lock belongs to the process, the others to the open file, which every
 * task sharing it shows (taking one again through the same open file changes nothing).
 * POSIX locks go last: a process loses them all when it closes any fd of the file, and
 * crest's own fds in the task, which may be other open files of it, are closed first.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "log.h"

static const struct {
	const char *name; /* as /proc shows it */
	FileLockKind kind;
	const char *words; /* for messages */
} lock_kinds[] = {
	{"POSIX", FILE_LOCK_KIND__LOCK_POSIX, "POSIX lock"},
	{"FLOCK", FILE_LOCK_KIND__LOCK_FLOCK, "flock lock"},
	{"OFDLCK", FILE_LOCK_KIND__LOCK_OFD, "OFD lock"},
	{"LEASE", FILE_LOCK_KIND__LOCK_LEASE, "lease"},
};

static const char *kind_words(FileLockKind kind)
{
	for (size_t i = 0; i < ARRAY_SIZE(lock_kinds); i++)
		if (lock_kinds[i].kind == kind)
			return lock_kinds[i].words;
	return "lock";
}

/*
 * "lock:\t1: POSIX  ADVISORY  WRITE 9398 fe:00:10952806 2 4": kind, mode (ADVISORY, or for a
 * lease ACTIVE or BREAKING), READ or WRITE, owner pid, device:inode, first and last byte.
 */
static int parse_lock(const char *line, FileLockEntry *l, const char **why)
{
	char kind[16], mode[16], type[16], end[32];
	unsigned long long start;
	int pid;

	*why = NULL;
	if (sscanf(line, "%*d: %15s %15s %15s %d %*s %llu %31s", kind, mode, type, &pid, &start,
		   end) != 6) {
		*why = "unreadable";
		return -1;
	}
	for (size_t i = 0; i < ARRAY_SIZE(lock_kinds); i++)
		if (!strcmp(kind, lock_kinds[i].name))
			l->kind = lock_kinds[i].kind;
	if (!l->kind) {
		*why = kind; /* DELEG (an NFS server's), ACCESS (a passing one), ... */
		return -1;
	}
	if (l->kind == FILE_LOCK_KIND__LOCK_LEASE && strcmp(mode, "ACTIVE")) {
		*why = "a lease being broken";
		return -1;
	}
	if (!strcmp(type, "READ")) {
		l->type = F_RDLCK;
	} else if (!strcmp(type, "WRITE")) {
		l->type = F_WRLCK;
	} else {
		*why = type;
		return -1;
	}
	if (l->kind == FILE_LOCK_KIND__LOCK_POSIX || l->kind == FILE_LOCK_KIND__LOCK_OFD) {
		l->has_start = true;
		l->start = start;
		if (strcmp(end, "EOF")) {
			l->has_end = true;
			l->end = strtoull(end, NULL, 10);
			if (l->end < l->start) {
				*why = "an empty range";
				return -1;
			}
		}
	}
	return 0;
}

/* The locks held through one fd of the task, from its fdinfo. */
int locks_dump_fd(struct dump_ctx *d, FdEntry *fe)
{
	char path[64], *text;
	const char *line;
	int ret = -1;

	snprintf(path, sizeof(path), "/proc/%d/fdinfo/%u", d->pid, fe->fd);
	text = read_file_at(AT_FDCWD, path, NULL);
	if (!text) {
		pr_perror("cannot read %s", path);
		return -1;
	}
	for (line = strstr(text, "lock:\t"); line; line = strstr(line + 1, "\nlock:\t")) {
		FileLockEntry *l, **arr;
		const char *why;

		line += line[0] == '\n';
		l = calloc(1, sizeof(*l));
		if (!l)
			goto out;
		file_lock_entry__init(l);
		if (parse_lock(line + strlen("lock:\t"), l, &why)) {
			pr_err("fd %u of %d holds a file lock crest cannot restore (%s): %.*s",
			       fe->fd, d->pid, why, (int)strcspn(line, "\n"), line);
			free(l);
			goto out;
		}
		if (!d->opts->file_locks) {
			pr_err("fd %u of %d holds a %s: dump with --file-locks", fe->fd, d->pid,
			       kind_words(l->kind));
			free(l);
			goto out;
		}
		arr = realloc(fe->locks, (fe->n_locks + 1) * sizeof(*arr));
		if (!arr) {
			free(l);
			goto out;
		}
		fe->locks = arr;
		fe->locks[fe->n_locks++] = l;
		pr_debug("fd %u of %d: %s, type %u", fe->fd, d->pid, kind_words(l->kind), l->type);
	}
	ret = 0;
out:
	free(text);
	return ret;
}

void locks_dump_free(FdEntry *fe)
{
	for (size_t i = 0; i < fe->n_locks; i++)
		free(fe->locks[i]);
	free(fe->locks);
	fe->locks = NULL;
	fe->n_locks = 0;
}

/* ---- restore ---- */

static int take_lock(struct restore_ctx *r, int fd, const FileLockEntry *l)
{
	struct rsys *rs = &r->rs;
	struct flock fl = {.l_type = l->type, .l_whence = SEEK_SET};
	long ret;

	if (l->type != F_RDLCK && l->type != F_WRLCK) {
		pr_err("fdinfo-%d.img: fd %d: lock of unknown type %u", r->pid, fd, l->type);
		return -1;
	}
	switch (l->kind) {
	case FILE_LOCK_KIND__LOCK_FLOCK:
		ret = rsys2(rs, SYS_flock, fd, (l->type == F_RDLCK ? LOCK_SH : LOCK_EX) | LOCK_NB);
		break;
	case FILE_LOCK_KIND__LOCK_LEASE:
		ret = rsys3(rs, SYS_fcntl, fd, F_SETLEASE, l->type);
		break;
	case FILE_LOCK_KIND__LOCK_POSIX:
	case FILE_LOCK_KIND__LOCK_OFD:
		fl.l_start = l->start;
		fl.l_len = l->has_end ? l->end - l->start + 1 : 0;
		if (rsys_poke(rs, rs->scratch, &fl, sizeof(fl)))
			return -1;
		ret = rsys3(rs, SYS_fcntl, fd,
			    l->kind == FILE_LOCK_KIND__LOCK_OFD ? F_OFD_SETLK : F_SETLK,
			    rs->scratch);
		break;
	default:
		pr_err("fdinfo-%d.img: fd %d: lock of unknown kind %d", r->pid, fd, l->kind);
		return -1;
	}
	if (ret == -EAGAIN || ret == -EWOULDBLOCK) {
		pr_err("restoring %d: the %s on fd %d is held by someone else now", r->pid,
		       kind_words(l->kind), fd);
		return -1;
	}
	if (ret < 0) {
		pr_err("restoring %d: cannot take the %s on fd %d again: %s", r->pid,
		       kind_words(l->kind), fd, strerror((int)-ret));
		return -1;
	}
	return 0;
}

/* Remote, last of all: every lock the task held, once per open file. */
int locks_restore(struct restore_ctx *r)
{
	bool any = false;

	for (size_t i = 0; i < r->fdinfo.len && !any; i++)
		any = (*vec_at(&r->fdinfo, FdEntry *, i))->n_locks;
	if (!any)
		return 0;
	if (rcheck(r, "close crest's fds", rsys3(&r->rs, SYS_close_range, r->helper_base, ~0U, 0)))
		return -1;
	for (int posix = 0; posix < 2; posix++) {
		for (size_t i = 0; i < r->fdinfo.len; i++) {
			const FdEntry *fe = *vec_at(&r->fdinfo, FdEntry *, i);
			bool seen = false;

			/* dup()ed fds show the same locks: the first one takes them */
			for (size_t j = 0; j < i && !seen; j++)
				seen = (*vec_at(&r->fdinfo, FdEntry *, j))->id == fe->id;
			for (size_t k = 0; k < fe->n_locks && !seen; k++) {
				const FileLockEntry *l = fe->locks[k];

				if ((l->kind == FILE_LOCK_KIND__LOCK_POSIX) == posix &&
				    take_lock(r, fe->fd, l))
					return -1;
			}
		}
	}
	return 0;
}
