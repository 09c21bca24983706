// SPDX-License-Identifier: MIT
/*
 * FIFOs made with mkfifo in the scratch directory, every end open in this one process:
 *
 *   10/11  fifo_a: a reader (O_NONBLOCK) and a writer, F_SETPIPE_SZ 256 KiB, 200000 bytes of
 *          a pattern queued
 *   12     fifo_a again: a second reader, its own open file
 *   13     fifo_b open O_RDWR, "hello fifo b" queued
 *   14/15  fifo_c: an empty reader and writer, the writer also dup()ed to fd 40 with
 *          FD_CLOEXEC on fd 40 only
 *
 * After SIGTERM every fd must be there with the same number, path, F_GETFD/F_GETFL flags, the
 * same sharing of open files (kcmp) and the inode of the FIFO at its path; then fifo_a has its
 * size and gives back the pattern (through either reader), fifo_b gives back its bytes and
 * still reads what it writes, fifo_c is empty and carries new data from fd 40 to fd 14.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"

#define A_SIZE (256 << 10)
#define A_DATA 200000
#define A_SEED 0x4649464full

enum {
	A_R = 10,
	A_W,
	A_R2,
	B_RW,
	C_R,
	C_W,
	C_DUP = 40,
};

static const char b_data[] = "hello fifo b";
static unsigned char buf[A_DATA];
static char path_a[4096], path_b[4096], path_c[4096];

/* ---- the fd table, compared as a whole ---- */

static struct tl_fdtab fdtab_before, fdtab_after;

/* ---- helpers ---- */

static void move_fd(int fd, int want)
{
	if (fd < 0)
		tl_fail("open for fd %d: %m", want);
	if (fd == want)
		return;
	if (dup2(fd, want) != want)
		tl_fail("dup2 %d to %d: %m", fd, want);
	close(fd);
}

static void write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	ssize_t n;

	while (len) {
		n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			tl_fail("write to fd %d: %m", fd);
		p += n;
		len -= n;
	}
}

static int queued(int fd)
{
	int n = -1;

	if (ioctl(fd, FIONREAD, &n))
		return -1;
	return n;
}

static void make_fifo(char *path, size_t size, const char *name)
{
	tl_path(path, size, name);
	unlink(path);
	if (mkfifo(path, 0600))
		tl_fail("mkfifo %s: %m", path);
}

static void build(void)
{
	make_fifo(path_a, sizeof(path_a), "fifo_a");
	make_fifo(path_b, sizeof(path_b), "fifo_b");
	make_fifo(path_c, sizeof(path_c), "fifo_c");

	/* a non-blocking reader first, so that the writer's open does not wait */
	move_fd(open(path_a, O_RDONLY | O_NONBLOCK), A_R);
	move_fd(open(path_a, O_WRONLY), A_W);
	move_fd(open(path_a, O_RDONLY | O_NONBLOCK), A_R2);
	if (fcntl(A_R2, F_SETFL, 0))
		tl_fail("F_SETFL: %m");
	if (fcntl(A_W, F_SETPIPE_SZ, A_SIZE) != A_SIZE)
		tl_fail("F_SETPIPE_SZ 256 KiB: %m");
	tl_fill(buf, A_DATA, A_SEED);
	write_all(A_W, buf, A_DATA);
	memset(buf, 0, sizeof(buf));

	move_fd(open(path_b, O_RDWR), B_RW);
	write_all(B_RW, b_data, strlen(b_data));

	move_fd(open(path_c, O_RDONLY | O_NONBLOCK), C_R);
	move_fd(open(path_c, O_WRONLY), C_W);
	if (fcntl(C_W, F_DUPFD_CLOEXEC, C_DUP) != C_DUP)
		tl_fail("F_DUPFD_CLOEXEC: %m");
}

static void check_path(int fd, const char *path)
{
	struct stat at_fd, at_path;

	if (!tl_expect(!fstat(fd, &at_fd) && !stat(path, &at_path), "stat of fd %d or %s: %m", fd,
		       path))
		return;
	tl_expect(S_ISFIFO(at_fd.st_mode), "fd %d is no FIFO", fd);
	tl_expect(at_fd.st_dev == at_path.st_dev && at_fd.st_ino == at_path.st_ino,
		  "fd %d is not the FIFO at %s", fd, path);
}

static void check(void)
{
	ssize_t n, bad;
	char small[64];

	check_path(A_R, path_a);
	check_path(A_W, path_a);
	check_path(A_R2, path_a);
	check_path(B_RW, path_b);
	check_path(C_R, path_c);
	check_path(C_W, path_c);
	check_path(C_DUP, path_c);

	tl_expect(fcntl(A_R, F_GETPIPE_SZ) == A_SIZE, "fifo_a: F_GETPIPE_SZ %d",
		  fcntl(A_R, F_GETPIPE_SZ));
	tl_expect(queued(A_R) == A_DATA, "fifo_a: %d bytes queued, expected %d", queued(A_R),
		  A_DATA);
	/* half through one reader, the rest through the other: both read the same FIFO */
	n = read(A_R, buf, A_DATA / 2);
	tl_expect(n == A_DATA / 2, "fifo_a: read %zd bytes from fd %d", n, A_R);
	n = read(A_R2, buf + A_DATA / 2, A_DATA - A_DATA / 2);
	tl_expect(n == A_DATA - A_DATA / 2, "fifo_a: read %zd bytes from fd %d", n, A_R2);
	bad = tl_check_fill(buf, A_DATA, A_SEED);
	tl_expect(bad < 0, "fifo_a: wrong byte at offset %zd", bad);
	tl_expect(read(A_R, small, 1) < 0 && errno == EAGAIN, "fifo_a: more data than queued");
	write_all(A_W, "after", 5);
	tl_expect(read(A_R2, small, sizeof(small)) == 5 && !memcmp(small, "after", 5),
		  "fifo_a: a new write did not come out");

	n = read(B_RW, small, sizeof(small));
	tl_expect(n == (ssize_t)strlen(b_data) && !memcmp(small, b_data, n),
		  "fifo_b: read %zd bytes, not \"%s\"", n, b_data);
	write_all(B_RW, "again", 5);
	tl_expect(read(B_RW, small, sizeof(small)) == 5 && !memcmp(small, "again", 5),
		  "fifo_b: the O_RDWR fd does not read back what it wrote");

	tl_expect(queued(C_R) == 0, "fifo_c: %d bytes queued", queued(C_R));
	tl_expect(read(C_R, small, 1) < 0 && errno == EAGAIN,
		  "fifo_c: the empty non-blocking reader did not say EAGAIN");
	tl_expect(fcntl(C_W, F_GETFD) == 0 && fcntl(C_DUP, F_GETFD) == FD_CLOEXEC,
		  "fifo_c: F_GETFD %#x and %#x, expected 0 and FD_CLOEXEC", fcntl(C_W, F_GETFD),
		  fcntl(C_DUP, F_GETFD));
	write_all(C_DUP, "via dup", 7);
	tl_expect(read(C_R, small, sizeof(small)) == 7 && !memcmp(small, "via dup", 7),
		  "fifo_c: a write on fd %d did not come out of fd %d", C_DUP, C_R);
}

int main(void)
{
	tl_init();
	build();
	tl_fdtab_snap(&fdtab_before);
	tl_ready();
	tl_wait_term();
	tl_fdtab_snap(&fdtab_after);
	tl_fdtab_compare(&fdtab_before, &fdtab_after, " (pipe or FIFO)");
	check();
	tl_done();
}
