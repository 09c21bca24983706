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
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "testlib.h"

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

static struct tl_fdtab fdtab_before, fdtab_after;

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
	tl_fdtab_snap(&fdtab_before);
	get_info(info_before);
	tl_ready();
	tl_wait_term();
	tl_fdtab_snap(&fdtab_after);
	get_info(info_after);
	tl_fdtab_compare(&fdtab_before, &fdtab_after, "");
	check_info();
	check_behaviour();
	tl_done();
}
