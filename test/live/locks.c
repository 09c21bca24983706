// SPDX-License-Identifier: MIT
/*
 * File locks of every kind (the runner dumps this one with --file-locks):
 *
 *   3   posix.dat O_RDWR: POSIX write lock on bytes 10-19, POSIX read lock from 50 to EOF
 *   4   flock.dat O_RDWR: flock(LOCK_EX)
 *   5   ofd.dat O_RDWR: OFD write lock on bytes 0-9; fd 6 is a dup() of it
 *   7   lease.dat O_RDONLY: a read lease
 *   8   shared.dat O_RDWR: flock(LOCK_SH), shared with a forked child, which holds its own
 *       POSIX write lock on bytes 0-4 of it through the same fd
 *
 * After SIGTERM a freshly forked helper, another process with open files of its own, must
 * find every lock held by its owner: F_GETLK names us for posix.dat's ranges (and nothing
 * between them) and the child for shared.dat's; flock(LOCK_EX|LOCK_NB) on flock.dat and
 * shared.dat fails.  A new open file of ofd.dat must find the OFD lock (F_OFD_GETLK), and
 * F_GETLEASE on fd 7 must say F_RDLCK.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testlib.h"

enum { FD_POSIX = 3, FD_FLOCK, FD_OFD, FD_OFD_DUP, FD_LEASE, FD_SHARED };

static pid_t child;

static void set_lock(int fd, int cmd, short type, off_t start, off_t len)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len };

	if (fcntl(fd, cmd, &fl))
		tl_fail("lock fd %d at %lld: %m", fd, (long long)start);
}

static void open_at(const char *name, int flags, int want)
{
	char path[4096];
	int fd;

	tl_write_file(tl_path(path, sizeof(path), name), "0123456789abcdefghijklmnopqrstuvwxyz",
		      36);
	fd = open(path, flags);
	if (fd < 0 || (fd != want && (dup2(fd, want) != want || close(fd))))
		tl_fail("open %s at fd %d: %m", name, want);
}

/* F_GETLK for a write lock of len bytes at start: the type and owner of what is in the way. */
static short probe(int fd, off_t start, off_t len, pid_t *owner)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = start, .l_len = len };

	if (fcntl(fd, F_GETLK, &fl))
		return -1;
	*owner = fl.l_pid;
	return fl.l_type;
}

/* In a helper process: bit per lock not found as it should be. */
static int helper_checks(pid_t parent)
{
	char path[4096];
	int ret = 0, fd;
	pid_t who;

	fd = open(tl_path(path, sizeof(path), "posix.dat"), O_RDWR);
	if (probe(fd, 10, 10, &who) != F_WRLCK || who != parent)
		ret |= 1;
	if (probe(fd, 60, 1, &who) != F_RDLCK || who != parent)
		ret |= 2;
	if (probe(fd, 20, 30, &who) != F_UNLCK)
		ret |= 4;
	close(fd);
	fd = open(tl_path(path, sizeof(path), "flock.dat"), O_RDWR);
	if (!flock(fd, LOCK_SH | LOCK_NB) || errno != EWOULDBLOCK)
		ret |= 8;
	close(fd);
	fd = open(tl_path(path, sizeof(path), "shared.dat"), O_RDWR);
	if (!flock(fd, LOCK_EX | LOCK_NB) || errno != EWOULDBLOCK)
		ret |= 16;
	if (!flock(fd, LOCK_SH | LOCK_NB))
		flock(fd, LOCK_UN);
	else
		ret |= 32; /* a shared flock must still be compatible */
	if (probe(fd, 0, 5, &who) != F_WRLCK || who != child)
		ret |= 64;
	close(fd);
	return ret;
}

int main(void)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10 };
	pid_t parent = getpid(), helper;
	int status, fd, lease;
	char path[4096];

	tl_init();
	open_at("posix.dat", O_RDWR, FD_POSIX);
	set_lock(FD_POSIX, F_SETLK, F_WRLCK, 10, 10);
	set_lock(FD_POSIX, F_SETLK, F_RDLCK, 50, 0);
	open_at("flock.dat", O_RDWR, FD_FLOCK);
	if (flock(FD_FLOCK, LOCK_EX))
		tl_fail("flock: %m");
	open_at("ofd.dat", O_RDWR, FD_OFD);
	set_lock(FD_OFD, F_OFD_SETLK, F_WRLCK, 0, 10);
	if (dup2(FD_OFD, FD_OFD_DUP) != FD_OFD_DUP)
		tl_fail("dup2: %m");
	open_at("lease.dat", O_RDONLY, FD_LEASE);
	if (fcntl(FD_LEASE, F_SETLEASE, F_RDLCK))
		tl_fail("F_SETLEASE: %m");
	open_at("shared.dat", O_RDWR, FD_SHARED);
	if (flock(FD_SHARED, LOCK_SH))
		tl_fail("flock: %m");

	child = fork();
	if (child < 0)
		tl_fail("fork: %m");
	if (child == 0) {
		set_lock(FD_SHARED, F_SETLK, F_WRLCK, 0, 5);
		while (getppid() == parent)
			pause();
		_exit(0);
	}
	/* ready once the child holds its lock */
	for (int i = 0; i < 500; i++) {
		pid_t who;

		helper = fork();
		if (!helper) {
			fd = open(tl_path(path, sizeof(path), "shared.dat"), O_RDWR);
			_exit(probe(fd, 0, 5, &who) == F_WRLCK && who == child ? 0 : 1);
		}
		if (waitpid(helper, &status, 0) == helper && WIFEXITED(status) &&
		    !WEXITSTATUS(status))
			break;
		usleep(10000);
	}
	tl_ready();
	tl_wait_term();

	helper = fork();
	if (helper == 0)
		_exit(helper_checks(parent));
	if (tl_expect(helper > 0 && waitpid(helper, &status, 0) == helper && WIFEXITED(status),
		      "helper died")) {
		status = WEXITSTATUS(status);
		tl_expect(!(status & 1), "posix.dat: the write lock on 10-19 is not ours");
		tl_expect(!(status & 2), "posix.dat: the read lock from 50 on is not ours");
		tl_expect(!(status & 4), "posix.dat: bytes 20-49 are locked");
		tl_expect(!(status & 8), "flock.dat is not locked");
		tl_expect(!(status & 16), "shared.dat is not flock()ed");
		tl_expect(!(status & 32), "shared.dat's flock is exclusive");
		tl_expect(!(status & 64), "shared.dat: the child does not hold bytes 0-4");
	}
	fd = open(tl_path(path, sizeof(path), "ofd.dat"), O_RDWR);
	tl_expect(fd >= 0 && !fcntl(fd, F_OFD_GETLK, &fl) && fl.l_type == F_WRLCK &&
			  fl.l_start == 0 && fl.l_len == 10,
		  "ofd.dat: no OFD write lock on 0-9 (type %d, %lld+%lld)", fl.l_type,
		  (long long)fl.l_start, (long long)fl.l_len);
	close(fd);
	lease = fcntl(FD_LEASE, F_GETLEASE);
	tl_expect(lease == F_RDLCK, "lease.dat: F_GETLEASE says %d, not F_RDLCK", lease);

	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	tl_done();
}
