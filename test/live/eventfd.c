// SPDX-License-Identifier: MIT
/*
 * eventfd counters and modes:
 *
 *   10  count 5, plain; also dup()ed to fd 60 with FD_CLOEXEC on fd 60 only
 *   11  count 3, EFD_SEMAPHORE
 *   12  count 0, EFD_NONBLOCK
 *   13  count 2^40 + 7 (more than eventfd()'s unsigned int), EFD_SEMAPHORE | EFD_NONBLOCK
 *   14  count 0xfffffffffffffffe (full), EFD_NONBLOCK
 *   15  count 2, EFD_CLOEXEC
 *
 * After SIGTERM every fd must be there with the same number, F_GETFD/F_GETFL flags and the same
 * sharing of open files (kcmp), fdinfo must show the same count and semaphore mode, and the
 * counters must behave: a plain read returns the whole count and empties it, a semaphore read
 * returns 1 and takes one off, the empty non-blocking one says EAGAIN, the full one refuses
 * another write, and a write through fd 60 is read through fd 10.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kcmp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "testlib.h"

#define MAX_FD 128
#define BIG_COUNT ((1ull << 40) + 7)
#define FULL_COUNT 0xfffffffffffffffeull

enum {
	EV_PLAIN = 10,
	EV_SEM,
	EV_NB,
	EV_BIG,
	EV_FULL,
	EV_CX,
	EV_FIRST = EV_PLAIN,
	EV_LAST = EV_CX,
	EV_DUP = 60,
};

struct evinfo {
	char count[64], sem[16];
};

static struct evinfo info_before[EV_LAST + 1], info_after[EV_LAST + 1];

/* ---- the fd table, compared as a whole ---- */

struct fdsnap {
	bool open;
	int fdflags, flflags;
	char kind[256]; /* the link, with a pipe's inode number cut off */
	dev_t dev;
	ino_t ino;
};

static struct fdsnap snap_before[MAX_FD], snap_after[MAX_FD];
static signed char file_before[MAX_FD][MAX_FD], file_after[MAX_FD][MAX_FD];

/* 1 when fds a and b are one open file description, 0 when not, -1 when either is closed */
static signed char same_file(const struct fdsnap *st, int a, int b)
{
	if (!st[a].open || !st[b].open)
		return -1;
	return syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, a, b) == 0;
}

static void snap(struct fdsnap *st, signed char (*same)[MAX_FD])
{
	char link[64];
	struct stat sb;
	ssize_t n;

	for (int fd = 0; fd < MAX_FD; fd++) {
		struct fdsnap *s = &st[fd];

		memset(s, 0, sizeof(*s));
		s->fdflags = fcntl(fd, F_GETFD);
		if (s->fdflags < 0)
			continue;
		s->open = true;
		s->flflags = fcntl(fd, F_GETFL);
		if (!fstat(fd, &sb)) {
			s->dev = sb.st_dev;
			s->ino = sb.st_ino;
		}
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		n = readlink(link, s->kind, sizeof(s->kind) - 1);
		if (n < 0)
			tl_fail("readlink %s: %m", link);
		s->kind[n] = '\0';
		if (!strncmp(s->kind, "pipe:", 5))
			s->kind[4] = '\0';
	}
	for (int a = 0; a < MAX_FD; a++)
		for (int b = 0; b < MAX_FD; b++)
			same[a][b] = same_file(st, a, b);
}

static bool same_inode(const struct fdsnap *a, const struct fdsnap *b)
{
	return a->dev == b->dev && a->ino == b->ino;
}

static void snap_compare(void)
{
	for (int fd = 0; fd < MAX_FD; fd++) {
		struct fdsnap *a = &snap_before[fd], *b = &snap_after[fd];

		if (!tl_expect(a->open == b->open, "fd %d is %s", fd, b->open ? "new" : "gone") ||
		    !a->open)
			continue;
		tl_expect(!strcmp(a->kind, b->kind), "fd %d: %s, was %s", fd, b->kind, a->kind);
		tl_expect(a->fdflags == b->fdflags, "fd %d: F_GETFD %#x, was %#x", fd, b->fdflags,
			  a->fdflags);
		tl_expect(a->flflags == b->flflags, "fd %d: F_GETFL %#o, was %#o", fd, b->flflags,
			  a->flflags);
		for (int o = 0; o < fd; o++) {
			if (!snap_before[o].open || !snap_after[o].open)
				continue;
			tl_expect(file_before[fd][o] == file_after[fd][o],
				  "fds %d and %d %s share an open file description", o, fd,
				  file_after[fd][o] == 1 ? "now" : "no longer");
			tl_expect(same_inode(a, &snap_before[o]) == same_inode(b, &snap_after[o]),
				  "fds %d and %d %s the same inode", o, fd,
				  same_inode(b, &snap_after[o]) ? "now have" : "no longer have");
		}
	}
}

/* ---- helpers ---- */

static void move_fd(int fd, int want)
{
	if (fd < 0)
		tl_fail("eventfd for fd %d: %m", want);
	if (fd == want)
		return;
	if (dup2(fd, want) != want)
		tl_fail("dup2 %d to %d: %m", fd, want);
	close(fd);
}

static bool readable(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};

	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* read(2) of an eventfd: the value, or -errno as a negative number cast */
static int ev_read(int fd, uint64_t *v)
{
	*v = 0;
	if (read(fd, v, sizeof(*v)) != sizeof(*v))
		return -errno;
	return 0;
}

static int ev_write(int fd, uint64_t v)
{
	if (write(fd, &v, sizeof(v)) != sizeof(v))
		return -errno;
	return 0;
}

static void get_info(struct evinfo *info)
{
	char path[64], text[1024];

	for (int fd = EV_FIRST; fd <= EV_LAST; fd++) {
		snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
		tl_read_file(path, text, sizeof(text));
		if (!tl_status_field(text, "eventfd-count", info[fd].count, sizeof(info[fd].count)))
			tl_fail("no eventfd-count in %s", path);
		if (!tl_status_field(text, "eventfd-semaphore", info[fd].sem, sizeof(info[fd].sem)))
			snprintf(info[fd].sem, sizeof(info[fd].sem), "(none)");
	}
}

static uint64_t fdinfo_count(int fd)
{
	struct evinfo info[EV_LAST + 1];

	get_info(info);
	return strtoull(info[fd].count, NULL, 16);
}

static void build(void)
{
	move_fd(eventfd(5, 0), EV_PLAIN);
	if (fcntl(EV_PLAIN, F_DUPFD_CLOEXEC, EV_DUP) != EV_DUP)
		tl_fail("F_DUPFD_CLOEXEC: %m");
	move_fd(eventfd(3, EFD_SEMAPHORE), EV_SEM);
	move_fd(eventfd(0, EFD_NONBLOCK), EV_NB);
	move_fd(eventfd(0, EFD_SEMAPHORE | EFD_NONBLOCK), EV_BIG);
	if (ev_write(EV_BIG, BIG_COUNT))
		tl_fail("write to the eventfd: %m");
	move_fd(eventfd(0, EFD_NONBLOCK), EV_FULL);
	if (ev_write(EV_FULL, FULL_COUNT))
		tl_fail("write to the eventfd: %m");
	move_fd(eventfd(2, EFD_CLOEXEC), EV_CX);
	/* dup2() dropped the close-on-exec flag eventfd() set: put it back */
	if (fcntl(EV_CX, F_SETFD, FD_CLOEXEC))
		tl_fail("F_SETFD: %m");
}

static void check_info(void)
{
	for (int fd = EV_FIRST; fd <= EV_LAST; fd++) {
		tl_expect(!strcmp(info_before[fd].count, info_after[fd].count),
			  "fd %d: eventfd-count %s, was %s", fd, info_after[fd].count,
			  info_before[fd].count);
		tl_expect(!strcmp(info_before[fd].sem, info_after[fd].sem),
			  "fd %d: eventfd-semaphore %s, was %s", fd, info_after[fd].sem,
			  info_before[fd].sem);
	}
}

static void check_behaviour(void)
{
	uint64_t v;
	int err;

	/* plain: the whole count at once */
	tl_expect(readable(EV_PLAIN), "plain eventfd is not readable");
	err = ev_read(EV_PLAIN, &v);
	tl_expect(!err && v == 5, "plain eventfd read %" PRIu64 " (error %d), expected 5", v, -err);
	tl_expect(!readable(EV_PLAIN), "plain eventfd still readable after the read");
	tl_expect(!ev_write(EV_DUP, 2), "write to fd %d: %m", EV_DUP);
	err = ev_read(EV_PLAIN, &v);
	tl_expect(!err && v == 2, "a write of 2 on fd %d read back as %" PRIu64 " on fd %d", EV_DUP,
		  v, EV_PLAIN);

	/* semaphore: one at a time */
	for (int i = 3; i > 0; i--) {
		err = ev_read(EV_SEM, &v);
		tl_expect(!err && v == 1,
			  "semaphore eventfd read %" PRIu64 " (error %d), expected 1", v, -err);
		tl_expect(fdinfo_count(EV_SEM) == (uint64_t)i - 1,
			  "semaphore eventfd: count %" PRIu64 " after a read, expected %d",
			  fdinfo_count(EV_SEM), i - 1);
	}
	tl_expect(!readable(EV_SEM), "semaphore eventfd readable at count 0");

	/* non-blocking, empty */
	tl_expect(fcntl(EV_NB, F_GETFL) & O_NONBLOCK, "fd %d lost O_NONBLOCK", EV_NB);
	err = ev_read(EV_NB, &v);
	tl_expect(err == -EAGAIN, "empty non-blocking eventfd read gave error %d value %" PRIu64,
		  -err, v);
	tl_expect(!ev_write(EV_NB, 9) && !ev_read(EV_NB, &v) && v == 9,
		  "non-blocking eventfd: 9 written, %" PRIu64 " read", v);

	/* a count beyond 32 bits, in semaphore mode */
	err = ev_read(EV_BIG, &v);
	tl_expect(!err && v == 1, "big semaphore eventfd read %" PRIu64 " (error %d), expected 1",
		  v, -err);
	tl_expect(fdinfo_count(EV_BIG) == BIG_COUNT - 1,
		  "big semaphore eventfd: count %#" PRIx64 " after a read, expected %#llx",
		  fdinfo_count(EV_BIG), BIG_COUNT - 1);

	/* full: no room for one more */
	err = ev_write(EV_FULL, 1);
	tl_expect(err == -EAGAIN, "write to the full eventfd gave error %d", -err);
	err = ev_read(EV_FULL, &v);
	tl_expect(!err && v == FULL_COUNT, "full eventfd read %#" PRIx64 " (error %d)", v, -err);

	err = ev_read(EV_CX, &v);
	tl_expect(!err && v == 2, "eventfd %d read %" PRIu64 " (error %d), expected 2", EV_CX, v,
		  -err);
}

int main(void)
{
	tl_init();
	build();
	snap(snap_before, file_before);
	get_info(info_before);
	tl_ready();
	tl_wait_term();
	snap(snap_after, file_after);
	get_info(info_after);
	snap_compare();
	check_info();
	check_behaviour();
	tl_done();
}
