// SPDX-License-Identifier: MIT
/*
 * memfds and a character device as fds:
 *
 *   10  memfd "crest-a", MFD_ALLOW_SEALING, 3 pages + 100 bytes of a pattern, offset 1234,
 *       sealed F_SEAL_SHRINK | F_SEAL_GROW; dup()ed to fd 60 with FD_CLOEXEC on fd 60 only
 *   11  "crest-a" again: opened O_RDONLY through /proc/self/fd/10, its own offset 50
 *   12  memfd "crest-b", MFD_CLOEXEC, no sealing allowed, one page, also mapped MAP_SHARED
 *   14  /dev/urandom
 *
 * After SIGTERM the fd table must be as it was (numbers, flags, names, shared open files and
 * shared inodes), each open file at its offset, the memfds with their size, bytes and seals;
 * a write through fd 10 shows through fd 11, the seals refuse a resize, and crest-b's mapping
 * and fd are still one object both ways.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "testlib.h"

#define A_SIZE (3 * 4096 + 100)
#define A_SEED 0x6d656d66ull
#define B_SIZE 4096

enum {
	MA = 10,
	MA_RO,
	MB,
	URANDOM = 14,
	MA_DUP = 60,
};

static unsigned char buf[A_SIZE];
static char *map_b;
static int seals_a, seals_b;

/* ---- the fd table, compared as a whole ---- */

static struct tl_fdtab fdtab_before, fdtab_after;

/* ---- helpers ---- */

static void move_fd(int fd, int want)
{
	if (fd < 0)
		tl_fail("making fd %d: %m", want);
	if (fd == want)
		return;
	if (dup2(fd, want) != want)
		tl_fail("dup2 %d to %d: %m", fd, want);
	close(fd);
}

static void pwrite_all(int fd, const void *data, size_t len, off_t off)
{
	if (pwrite(fd, data, len, off) != (ssize_t)len)
		tl_fail("pwrite to fd %d: %m", fd);
}

static off_t pos(int fd)
{
	return lseek(fd, 0, SEEK_CUR);
}

static void build(void)
{
	char path[64];

	move_fd(memfd_create("crest-a", MFD_ALLOW_SEALING), MA);
	tl_fill(buf, A_SIZE, A_SEED);
	pwrite_all(MA, buf, A_SIZE, 0);
	memset(buf, 0, sizeof(buf));
	if (lseek(MA, 1234, SEEK_SET) != 1234)
		tl_fail("lseek: %m");
	if (fcntl(MA, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW))
		tl_fail("F_ADD_SEALS: %m");
	if (fcntl(MA, F_DUPFD_CLOEXEC, MA_DUP) != MA_DUP)
		tl_fail("F_DUPFD_CLOEXEC: %m");
	snprintf(path, sizeof(path), "/proc/self/fd/%d", MA);
	move_fd(open(path, O_RDONLY), MA_RO);
	if (lseek(MA_RO, 50, SEEK_SET) != 50)
		tl_fail("lseek: %m");

	move_fd(memfd_create("crest-b", MFD_CLOEXEC), MB);
	if (fcntl(MB, F_SETFD, FD_CLOEXEC))
		tl_fail("F_SETFD: %m");
	if (ftruncate(MB, B_SIZE))
		tl_fail("ftruncate: %m");
	map_b = mmap(NULL, B_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, MB, 0);
	if (map_b == MAP_FAILED)
		tl_fail("mmap: %m");
	memcpy(map_b, "written through the mapping", 27);
	pwrite_all(MB, "written through the fd", 22, 100);

	move_fd(open("/dev/urandom", O_RDONLY), URANDOM);

	seals_a = fcntl(MA, F_GET_SEALS);
	seals_b = fcntl(MB, F_GET_SEALS);
}

static void check(void)
{
	struct stat sb;
	ssize_t n, bad;
	char small[32];

	tl_expect(pos(MA) == 1234, "fd %d at offset %lld, not 1234", MA, (long long)pos(MA));
	tl_expect(pos(MA_DUP) == 1234, "fd %d at offset %lld, not 1234", MA_DUP,
		  (long long)pos(MA_DUP));
	tl_expect(pos(MA_RO) == 50, "fd %d at offset %lld, not 50", MA_RO, (long long)pos(MA_RO));
	tl_expect(!fstat(MA, &sb) && sb.st_size == A_SIZE, "crest-a: size %lld, not %d",
		  (long long)sb.st_size, A_SIZE);
	n = pread(MA_RO, buf, sizeof(buf), 0);
	if (tl_expect(n == A_SIZE, "crest-a: read %zd bytes", n)) {
		bad = tl_check_fill(buf, A_SIZE, A_SEED);
		tl_expect(bad < 0, "crest-a: wrong byte at offset %zd", bad);
	}
	tl_expect(fcntl(MA, F_GET_SEALS) == seals_a, "crest-a: seals %#x, were %#x",
		  fcntl(MA, F_GET_SEALS), seals_a);
	tl_expect(fcntl(MB, F_GET_SEALS) == seals_b, "crest-b: seals %#x, were %#x",
		  fcntl(MB, F_GET_SEALS), seals_b);
	errno = 0;
	tl_expect(ftruncate(MA, A_SIZE + 1) < 0 && errno == EPERM,
		  "crest-a: growing it was not refused (%m)");
	tl_expect(ftruncate(MA, 1) < 0 && errno == EPERM, "crest-a: shrinking it was not refused");

	/* one object behind fds 10, 11 and 60; the offset shared by 10 and 60 only */
	tl_expect(write(MA, "NEW", 3) == 3, "write to fd %d: %m", MA);
	tl_expect(pos(MA_DUP) == 1237, "fd %d at %lld after a write on fd %d", MA_DUP,
		  (long long)pos(MA_DUP), MA);
	tl_expect(pos(MA_RO) == 50, "fd %d moved with fd %d", MA_RO, MA);
	tl_expect(pread(MA_RO, small, 3, 1234) == 3 && !memcmp(small, "NEW", 3),
		  "a write on fd %d does not show through fd %d", MA, MA_RO);

	/* crest-b: the mapping and the fd are one object */
	tl_expect(!memcmp(map_b, "written through the mapping", 27),
		  "crest-b: the mapping lost its bytes");
	tl_expect(pread(MB, small, 27, 0) == 27 &&
			  !memcmp(small, "written through the mapping", 27),
		  "crest-b: the fd does not read what was written through the mapping");
	tl_expect(!memcmp(map_b + 100, "written through the fd", 22),
		  "crest-b: the mapping does not show what was written through the fd");
	memcpy(map_b + 200, "again", 5);
	tl_expect(pread(MB, small, 5, 200) == 5 && !memcmp(small, "again", 5),
		  "crest-b: a write through the mapping after the restore does not show in the fd");
	pwrite_all(MB, "fd again", 8, 300);
	tl_expect(!memcmp(map_b + 300, "fd again", 8),
		  "crest-b: a write through the fd after the restore does not show in the mapping");

	tl_expect(!fstat(URANDOM, &sb) && S_ISCHR(sb.st_mode) && sb.st_rdev == makedev(1, 9),
		  "fd %d is not /dev/urandom", URANDOM);
	tl_expect(read(URANDOM, small, 16) == 16, "read of /dev/urandom: %m");
}

int main(void)
{
	tl_init();
	build();
	tl_fdtab_snap(&fdtab_before);
	tl_ready();
	tl_wait_term();
	tl_fdtab_snap(&fdtab_after);
	tl_fdtab_compare(&fdtab_before, &fdtab_after, "");
	check();
	tl_done();
}
