// SPDX-License-Identifier: MIT
/*
 * Deleted files still open:
 *
 *   3   del.bin (100000 bytes, mode 0640), O_RDWR at offset 12345, then unlinked
 *   4   a second open file of del.bin, O_RDONLY at offset 777
 *   5   a dup() of fd 3 (shares its offset)
 *   6   repl.txt "old content\n", O_RDONLY at offset 4, unlinked and replaced by a new
 *       repl.txt of other content
 *   7   sparse.bin: 64 MiB with three small pieces of data, O_RDWR, unlinked
 *
 * After SIGTERM every fd must read as before ("... (deleted)"), with its offset, flags, mode,
 * size and content; fds 3 and 4 must still be one inode (a write through one is read through
 * the other) and 3 and 5 one open file; fd 6 must give the old content while repl.txt on disk
 * keeps the new one; sparse.bin must still be sparse; and no file crest made may be left in
 * the directory.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "testlib.h"

#define DEL_SIZE 100000
#define DEL_SEED 0xde1e7edull
#define SPARSE_SIZE (64 << 20)
#define MAX_FD 8

enum { FD_DEL = 3, FD_DEL2, FD_DUP, FD_REPL, FD_SPARSE };

static unsigned char del_data[DEL_SIZE];
static char links[MAX_FD][4096];
static struct stat before[MAX_FD];
static int flags_before[MAX_FD];
static off_t pos_before[MAX_FD];

static const struct {
	off_t off;
	const char *text;
} pieces[] = {
	{ 0, "head of the sparse file" },
	{ 32 << 20, "in the middle, 32 MiB in" },
	{ SPARSE_SIZE - 5, "tail!" },
};

static void put_fd(int fd, int want)
{
	if (fd < 0)
		tl_fail("open for fd %d: %m", want);
	if (fd != want && (dup2(fd, want) != want || close(fd)))
		tl_fail("dup2 to %d: %m", want);
}

static void build(void)
{
	char path[4096], repl[4096];

	tl_fill(del_data, sizeof(del_data), DEL_SEED);
	tl_write_file(tl_path(path, sizeof(path), "del.bin"), del_data, sizeof(del_data));
	if (chmod(path, 0640))
		tl_fail("chmod: %m");
	put_fd(open(path, O_RDWR), FD_DEL);
	put_fd(open(path, O_RDONLY), FD_DEL2);
	if (dup2(FD_DEL, FD_DUP) != FD_DUP || lseek(FD_DEL, 12345, SEEK_SET) != 12345 ||
	    lseek(FD_DEL2, 777, SEEK_SET) != 777 || unlink(path))
		tl_fail("del.bin: %m");

	tl_write_file(tl_path(repl, sizeof(repl), "repl.txt"), "old content\n", 12);
	put_fd(open(repl, O_RDONLY), FD_REPL);
	if (lseek(FD_REPL, 4, SEEK_SET) != 4 || unlink(repl))
		tl_fail("repl.txt: %m");
	tl_write_file(repl, "new content, another file\n", 26);

	put_fd(open(tl_path(path, sizeof(path), "sparse.bin"), O_RDWR | O_CREAT | O_EXCL, 0600),
	       FD_SPARSE);
	if (ftruncate(FD_SPARSE, SPARSE_SIZE))
		tl_fail("ftruncate: %m");
	for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++)
		if (pwrite(FD_SPARSE, pieces[i].text, strlen(pieces[i].text), pieces[i].off) < 0)
			tl_fail("pwrite: %m");
	if (unlink(path))
		tl_fail("unlink: %m");

	for (int fd = FD_DEL; fd < MAX_FD; fd++) {
		char proc[64];
		ssize_t n;

		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		n = readlink(proc, links[fd], sizeof(links[fd]) - 1);
		if (n < 0 || fstat(fd, &before[fd]))
			tl_fail("fd %d: %m", fd);
		flags_before[fd] = fcntl(fd, F_GETFL);
		pos_before[fd] = lseek(fd, 0, SEEK_CUR);
	}
}

static bool same_file(int a, int b)
{
	pid_t pid = getpid();

	return syscall(SYS_kcmp, pid, pid, KCMP_FILE, a, b) == 0;
}

static void check(void)
{
	char buf[256], proc[64], link[4096];
	unsigned char data[64];
	struct stat st[MAX_FD];
	DIR *dir;
	struct dirent *de;

	for (int fd = FD_DEL; fd < MAX_FD; fd++) {
		ssize_t n;

		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		n = readlink(proc, link, sizeof(link) - 1);
		link[n > 0 ? n : 0] = '\0';
		if (!tl_expect(n > 0 && !fstat(fd, &st[fd]), "fd %d is gone", fd))
			return;
		tl_expect(!strcmp(link, links[fd]), "fd %d is %s, was %s", fd, link, links[fd]);
		tl_expect(st[fd].st_nlink == 0, "fd %d: the file has %lu links, not 0", fd,
			  (unsigned long)st[fd].st_nlink);
		tl_expect(st[fd].st_size == before[fd].st_size, "fd %d: size %lld, was %lld", fd,
			  (long long)st[fd].st_size, (long long)before[fd].st_size);
		tl_expect(st[fd].st_mode == before[fd].st_mode, "fd %d: mode %o, was %o", fd,
			  st[fd].st_mode, before[fd].st_mode);
		tl_expect(st[fd].st_mtim.tv_sec == before[fd].st_mtim.tv_sec,
			  "fd %d: mtime %ld, was %ld", fd, (long)st[fd].st_mtim.tv_sec,
			  (long)before[fd].st_mtim.tv_sec);
		tl_expect(fcntl(fd, F_GETFL) == flags_before[fd], "fd %d: F_GETFL %#o, was %#o", fd,
			  fcntl(fd, F_GETFL), flags_before[fd]);
		tl_expect(lseek(fd, 0, SEEK_CUR) == pos_before[fd], "fd %d: offset %lld, was %lld",
			  fd, (long long)lseek(fd, 0, SEEK_CUR), (long long)pos_before[fd]);
	}

	/* del.bin: content, one inode for fds 3 and 4, one open file for 3 and 5 */
	tl_expect(read(FD_DEL2, data, 64) == 64 && !memcmp(data, del_data + 777, 64),
		  "fd %d: other bytes at offset 777", FD_DEL2);
	tl_expect(pread(FD_DEL, del_data, DEL_SIZE, 0) == DEL_SIZE &&
			  tl_check_fill(del_data, DEL_SIZE, DEL_SEED) < 0,
		  "del.bin lost its content");
	tl_expect(st[FD_DEL].st_ino == st[FD_DEL2].st_ino, "fds %d and %d are two inodes now",
		  FD_DEL, FD_DEL2);
	tl_expect(same_file(FD_DEL, FD_DUP), "fds %d and %d no longer share an open file", FD_DEL,
		  FD_DUP);
	tl_expect(!same_file(FD_DEL, FD_DEL2), "fds %d and %d share an open file now", FD_DEL,
		  FD_DEL2);
	tl_expect(write(FD_DEL, "XYZ", 3) == 3, "write to fd %d: %m", FD_DEL);
	tl_expect(lseek(FD_DUP, 0, SEEK_CUR) == 12348, "the write did not move fd %d's offset",
		  FD_DUP);
	tl_expect(pread(FD_DEL2, buf, 3, 12345) == 3 && !memcmp(buf, "XYZ", 3),
		  "a write through fd %d is not seen through fd %d", FD_DEL, FD_DEL2);

	/* repl.txt: the old content through the fd, the new one on disk */
	memset(buf, 0, sizeof(buf));
	tl_expect(read(FD_REPL, buf, sizeof(buf) - 1) == 8 && !strcmp(buf, "content\n"),
		  "fd %d reads \"%s\", not the old content", FD_REPL, buf);
	memset(buf, 0, sizeof(buf));
	tl_read_file(tl_path(link, sizeof(link), "repl.txt"), buf, sizeof(buf));
	tl_expect(!strcmp(buf, "new content, another file\n"), "repl.txt on disk holds \"%s\"",
		  buf);

	/* sparse.bin: the pieces, zeros between, and still sparse */
	for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
		size_t len = strlen(pieces[i].text);

		memset(buf, 0, sizeof(buf));
		tl_expect(pread(FD_SPARSE, buf, len, pieces[i].off) == (ssize_t)len &&
				  !memcmp(buf, pieces[i].text, len),
			  "sparse.bin at %lld: \"%s\"", (long long)pieces[i].off, buf);
	}
	tl_expect(pread(FD_SPARSE, buf, 16, 16 << 20) == 16 && !buf[0] && !memcmp(buf, buf + 1, 15),
		  "sparse.bin is not zero at 16 MiB");
	tl_expect(st[FD_SPARSE].st_blocks * 512 < (4 << 20),
		  "sparse.bin takes %lld bytes on disk: its holes were filled",
		  (long long)st[FD_SPARSE].st_blocks * 512);

	/* nothing left behind but the new repl.txt */
	dir = opendir(tl_dir());
	while (dir && (de = readdir(dir)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
		    strcmp(de->d_name, "repl.txt"))
			tl_expect(false, "%s/%s was left behind", tl_dir(), de->d_name);
	if (dir)
		closedir(dir);
}

int main(void)
{
	tl_init();
	build();
	tl_ready();
	tl_wait_term();
	check();
	tl_done();
}
