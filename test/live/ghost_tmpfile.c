// SPDX-License-Identifier: MIT
/*
 * O_TMPFILE files: fd 3, made O_RDWR in our directory, 5000 bytes written, at offset 100;
 * fd 4, another one, O_RDWR and dup()ed nowhere, empty.  After SIGTERM both must read
 * "<dir>/#<inode> (deleted)" with their inode's number, fd 3 must keep its content and offset,
 * and the files must still be O_TMPFILEs: linkat(AT_EMPTY_PATH) publishes fd 3 under a name
 * that then holds the content, and nothing else is left in the directory.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"

#define SIZE 5000
#define SEED 0x73e3f11eull

static unsigned char data[SIZE];

static void expect_tmpfile_link(int fd)
{
	char proc[64], link[4096], want[4200];
	struct stat st;
	ssize_t n;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	n = readlink(proc, link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = '\0';
	if (!tl_expect(n > 0 && !fstat(fd, &st), "fd %d is gone", fd))
		return;
	snprintf(want, sizeof(want), "%s/#%lu (deleted)", tl_dir(), (unsigned long)st.st_ino);
	tl_expect(!strcmp(link, want), "fd %d is %s, not %s", fd, link, want);
	tl_expect(st.st_nlink == 0, "fd %d has %lu links", fd, (unsigned long)st.st_nlink);
}

int main(void)
{
	char path[4096], buf[SIZE + 2];
	struct dirent *de;
	DIR *dir;
	int fd;

	tl_init();
	tl_fill(data, sizeof(data), SEED);
	fd = open(tl_dir(), O_TMPFILE | O_RDWR, 0644);
	if (fd != 3 || write(fd, data, SIZE) != SIZE || lseek(fd, 100, SEEK_SET) != 100)
		tl_fail("O_TMPFILE at fd 3: %m");
	if (open(tl_dir(), O_TMPFILE | O_RDWR, 0600) != 4)
		tl_fail("O_TMPFILE at fd 4: %m");
	expect_tmpfile_link(3);
	expect_tmpfile_link(4);
	if (tl_failures())
		tl_done();
	tl_ready();
	tl_wait_term();

	expect_tmpfile_link(3);
	expect_tmpfile_link(4);
	tl_expect(lseek(3, 0, SEEK_CUR) == 100, "fd 3 offset %lld, was 100",
		  (long long)lseek(3, 0, SEEK_CUR));
	tl_expect((fcntl(3, F_GETFL) & O_ACCMODE) == O_RDWR, "fd 3 is no longer O_RDWR");
	tl_expect(pread(3, buf, SIZE, 0) == SIZE && tl_check_fill(buf, SIZE, SEED) < 0,
		  "fd 3 lost its content");
	tl_expect(lseek(4, 0, SEEK_END) == 0, "fd 4 is not empty");

	dir = opendir(tl_dir());
	while (dir && (de = readdir(dir)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			tl_expect(false, "%s/%s was left behind", tl_dir(), de->d_name);
	if (dir)
		closedir(dir);

	/* still an O_TMPFILE: it can be given a name */
	tl_path(path, sizeof(path), "published");
	if (tl_expect(!linkat(3, "", AT_FDCWD, path, AT_EMPTY_PATH),
		      "linkat(AT_EMPTY_PATH) of fd 3: %m")) {
		memset(buf, 0, sizeof(buf));
		tl_read_file(path, buf, sizeof(buf));
		tl_expect(tl_check_fill(buf, SIZE, SEED) < 0, "the published file lost content");
		unlink(path);
	}
	tl_done();
}
