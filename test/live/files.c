// SPDX-License-Identifier: MIT
/*
 * Open files: a read-only file at offset 123 and a second, independent open of it at another
 * offset; an O_APPEND file whose offset was moved; an O_RDWR file at an offset and a dup() of
 * it at fd 50 sharing that offset; an O_CLOEXEC file at fd 100; a directory; /dev/null and a
 * non-blocking /dev/zero; a gap in the fd numbers.  After SIGTERM every fd must be there with
 * the same number, target, F_GETFD/F_GETFL flags and offset, the same fds must share an open
 * file description (kcmp), and the files must behave: reads continue at the offset, O_APPEND
 * appends, a write through one of the dup()ed fds moves the other's offset.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "testlib.h"

#define MAX_FD 128
#define RO_SIZE 4096
#define RW_SIZE 8192

enum {
	FD_RO = 3,
	FD_APPEND = 4,
	FD_RW = 5,
	/* 6 stays closed: a gap */
	FD_DIR = 7,
	FD_NULL = 8,
	FD_ZERO = 9,
	FD_RO2 = 10,
	FD_DUP = 50,
	FD_HIGH = 100,
};

struct fdstate {
	bool open;
	int fdflags, flflags;
	off_t pos;
	dev_t dev, rdev;
	ino_t ino;
	char target[512];
};

static struct fdstate before[MAX_FD], after[MAX_FD];
static signed char same_before[MAX_FD][MAX_FD], same_after[MAX_FD][MAX_FD];
static unsigned char ro_data[RO_SIZE], rw_data[RW_SIZE];

static void put_fd(int fd, int want, int cloexec)
{
	if (fd < 0)
		tl_fail("open for fd %d: %m", want);
	if (fd == want)
		return;
	if (dup3(fd, want, cloexec) != want)
		tl_fail("dup3 to %d: %m", want);
	close(fd);
}

static void build(void)
{
	char path[4096];
	int fd;

	tl_fill(ro_data, sizeof(ro_data), 0xf11e);
	tl_write_file(tl_path(path, sizeof(path), "ro.txt"), ro_data, sizeof(ro_data));
	put_fd(open(path, O_RDONLY), FD_RO, 0);
	if (lseek(FD_RO, 123, SEEK_SET) != 123)
		tl_fail("lseek: %m");
	put_fd(open(path, O_RDONLY), FD_RO2, 0);
	if (lseek(FD_RO2, 2000, SEEK_SET) != 2000)
		tl_fail("lseek: %m");

	tl_write_file(tl_path(path, sizeof(path), "append.txt"), "hello\n", 6);
	put_fd(open(path, O_WRONLY | O_APPEND), FD_APPEND, 0);
	/* Meaningless for writes with O_APPEND, but it is state all the same. */
	if (lseek(FD_APPEND, 2, SEEK_SET) != 2)
		tl_fail("lseek: %m");

	tl_fill(rw_data, sizeof(rw_data), 0xf11f);
	tl_write_file(tl_path(path, sizeof(path), "rw.bin"), rw_data, sizeof(rw_data));
	put_fd(open(path, O_RDWR), FD_RW, 0);
	if (lseek(FD_RW, 777, SEEK_SET) != 777)
		tl_fail("lseek: %m");
	if (dup2(FD_RW, FD_DUP) != FD_DUP)
		tl_fail("dup2: %m");

	tl_write_file(tl_path(path, sizeof(path), "cloexec.txt"), "0123456789", 10);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	put_fd(fd, FD_HIGH, O_CLOEXEC);
	if (lseek(FD_HIGH, 5, SEEK_SET) != 5)
		tl_fail("lseek: %m");

	put_fd(open(tl_dir(), O_RDONLY | O_DIRECTORY), FD_DIR, 0);
	put_fd(open("/dev/null", O_WRONLY), FD_NULL, 0);
	put_fd(open("/dev/zero", O_RDONLY | O_NONBLOCK), FD_ZERO, 0);
}

static void capture(struct fdstate *st, signed char (*same)[MAX_FD])
{
	char link[64];
	struct stat sb;
	ssize_t n;
	pid_t pid = getpid();

	for (int fd = 0; fd < MAX_FD; fd++) {
		struct fdstate *s = &st[fd];

		memset(s, 0, sizeof(*s));
		s->fdflags = fcntl(fd, F_GETFD);
		if (s->fdflags < 0)
			continue;
		s->open = true;
		s->flflags = fcntl(fd, F_GETFL);
		s->pos = lseek(fd, 0, SEEK_CUR);
		if (!fstat(fd, &sb)) {
			s->dev = sb.st_dev;
			s->ino = sb.st_ino;
			s->rdev = sb.st_rdev;
		}
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		n = readlink(link, s->target, sizeof(s->target) - 1);
		if (n < 0)
			tl_fail("readlink %s: %m", link);
		s->target[n] = '\0';
	}
	/* Which fds share an open file description: kcmp() is the only way to ask. */
	for (int a = 0; a < MAX_FD; a++)
		for (int b = 0; b < MAX_FD; b++)
			same[a][b] = st[a].open && st[b].open
					     ? syscall(SYS_kcmp, pid, pid, KCMP_FILE, a, b) == 0
					     : -1;
}

static void compare(void)
{
	for (int fd = 0; fd < MAX_FD; fd++) {
		struct fdstate *a = &before[fd], *b = &after[fd];

		if (!tl_expect(a->open == b->open, "fd %d is %s", fd, b->open ? "new" : "gone") ||
		    !a->open)
			continue;
		tl_expect(!strcmp(a->target, b->target), "fd %d: %s, was %s", fd, b->target,
			  a->target);
		tl_expect(a->fdflags == b->fdflags, "fd %d: F_GETFD %#x, was %#x", fd, b->fdflags,
			  a->fdflags);
		tl_expect(a->flflags == b->flflags, "fd %d: F_GETFL %#o, was %#o", fd, b->flflags,
			  a->flflags);
		tl_expect(a->dev == b->dev && a->ino == b->ino && a->rdev == b->rdev,
			  "fd %d: another file (dev/ino/rdev)", fd);
		/* Our own log lines move stdout's offset; tl_done() checks it separately. */
		if (same_before[fd][STDOUT_FILENO] != 1)
			tl_expect(a->pos == b->pos, "fd %d: offset %lld, was %lld", fd,
				  (long long)b->pos, (long long)a->pos);
		for (int o = 0; o < fd; o++)
			if (same_before[fd][o] != same_after[fd][o])
				tl_expect(false, "fds %d and %d %s share an open file description",
					  o, fd, same_after[fd][o] == 1 ? "now" : "no longer");
	}
}

static void check_behaviour(void)
{
	char path[4096], buf[64];
	unsigned char data[16];
	struct stat sb;
	int fd;

	/* Reads go on from the offsets, each description on its own. */
	tl_expect(read(FD_RO, data, 10) == 10 && !memcmp(data, ro_data + 123, 10),
		  "read at offset 123 of ro.txt returned other bytes");
	tl_expect(read(FD_RO2, data, 10) == 10 && !memcmp(data, ro_data + 2000, 10),
		  "read at offset 2000 of the second ro.txt fd returned other bytes");
	tl_expect(read(FD_HIGH, buf, 5) == 5 && !memcmp(buf, "56789", 5),
		  "read at offset 5 of cloexec.txt returned other bytes");

	/* O_APPEND writes go to the end whatever the offset. */
	tl_expect(write(FD_APPEND, "world\n", 6) == 6, "write to the O_APPEND fd: %m");
	fd = open(tl_path(path, sizeof(path), "append.txt"), O_RDONLY);
	memset(buf, 0, sizeof(buf));
	tl_expect(fd >= 0 && read(fd, buf, sizeof(buf) - 1) == 12 && !strcmp(buf, "hello\nworld\n"),
		  "append.txt holds \"%s\", not hello+world", buf);
	close(fd);

	/* A write through one dup()ed fd moves the offset of the other. */
	tl_expect(write(FD_RW, "ABCD", 4) == 4, "write to rw.bin: %m");
	tl_expect(lseek(FD_DUP, 0, SEEK_CUR) == 781, "fd %d offset %lld after a write on fd %d",
		  FD_DUP, (long long)lseek(FD_DUP, 0, SEEK_CUR), FD_RW);
	tl_expect(pread(FD_DUP, buf, 4, 777) == 4 && !memcmp(buf, "ABCD", 4),
		  "write at offset 777 of rw.bin did not land there");
	tl_expect(pread(FD_RW, data, 16, 781) == 16 && !memcmp(data, rw_data + 781, 16),
		  "rw.bin changed beyond the write");

	tl_expect(fcntl(FD_HIGH, F_GETFD) == FD_CLOEXEC, "fd %d lost FD_CLOEXEC", FD_HIGH);
	tl_expect(fcntl(FD_RW, F_GETFD) == 0, "fd %d gained FD_CLOEXEC", FD_RW);

	tl_expect(!fstat(FD_DIR, &sb) && S_ISDIR(sb.st_mode), "fd %d is no directory", FD_DIR);
	fd = openat(FD_DIR, "ro.txt", O_RDONLY);
	tl_expect(fd >= 0, "openat through the directory fd: %m");
	close(fd);

	tl_expect(!fstat(FD_NULL, &sb) && sb.st_rdev == makedev(1, 3), "fd %d is not /dev/null",
		  FD_NULL);
	tl_expect(write(FD_NULL, "x", 1) == 1, "write to /dev/null: %m");
	tl_expect(!fstat(FD_ZERO, &sb) && sb.st_rdev == makedev(1, 5), "fd %d is not /dev/zero",
		  FD_ZERO);
	memset(buf, 1, sizeof(buf));
	tl_expect(read(FD_ZERO, buf, sizeof(buf)) == sizeof(buf) && !buf[0] &&
			  !memcmp(buf, buf + 1, sizeof(buf) - 1),
		  "/dev/zero did not read zeros");
	tl_expect(fcntl(FD_ZERO, F_GETFL) & O_NONBLOCK, "/dev/zero fd lost O_NONBLOCK");
	tl_expect(read(STDIN_FILENO, buf, 1) == 0, "stdin is not at end of file");
}

int main(void)
{
	tl_init();
	build();
	capture(before, same_before);
	tl_ready();
	tl_wait_term();
	capture(after, same_after);
	compare();
	check_behaviour();
	tl_done();
}
