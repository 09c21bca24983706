// SPDX-License-Identifier: MIT
/*
 * Deleted files for --link-remap (the runner dumps this one with it):
 *
 *   3   both.txt, O_RDWR at offset 3, unlinked while another name, other.txt, still links it
 *   4   gone.txt, O_RDONLY at offset 2, unlinked for good: no link can bring it back, so it is
 *       copied as usual
 *   5   an O_TMPFILE with content: linkable, so it is re-linked
 *
 * After SIGTERM fd 3 must still be other.txt's inode (a write through it is read in
 * other.txt) and read "both.txt (deleted)"; fds 4 and 5 keep their content and offsets.  When
 * we were restored (gone.txt is then a new inode), crest's links must all be gone and
 * other.txt must have one link again; when the dump left us running they may still be there.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"

static char links[6][4096];
static ino_t ino_before[6];

static void note(int fd)
{
	char proc[64];
	struct stat st;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (readlink(proc, links[fd], sizeof(links[fd]) - 1) < 0 || fstat(fd, &st))
		tl_fail("fd %d: %m", fd);
	ino_before[fd] = st.st_ino;
}

int main(void)
{
	char both[4096], other[4096], gone[4096], buf[64], target[4096], proc[64];
	struct stat st, st_other;
	struct dirent *de;
	bool restored;
	DIR *dir;
	int fd;

	tl_init();
	tl_write_file(tl_path(both, sizeof(both), "both.txt"), "shared inode\n", 13);
	if (link(both, tl_path(other, sizeof(other), "other.txt")))
		tl_fail("link: %m");
	if (open(both, O_RDWR) != 3 || lseek(3, 3, SEEK_SET) != 3 || unlink(both))
		tl_fail("both.txt: %m");
	tl_write_file(tl_path(gone, sizeof(gone), "gone.txt"), "copied content\n", 15);
	if (open(gone, O_RDONLY) != 4 || lseek(4, 2, SEEK_SET) != 2 || unlink(gone))
		tl_fail("gone.txt: %m");
	fd = open(tl_dir(), O_TMPFILE | O_RDWR, 0600);
	if (fd != 5 || write(fd, "tmpfile content\n", 16) != 16)
		tl_fail("O_TMPFILE: %m");
	for (fd = 3; fd <= 5; fd++)
		note(fd);
	tl_ready();
	tl_wait_term();

	for (fd = 3; fd <= 5; fd++) {
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		memset(target, 0, sizeof(target));
		tl_expect(readlink(proc, target, sizeof(target) - 1) > 0, "fd %d is gone", fd);
		/* an O_TMPFILE is named after its inode, which may be another one now */
		if (fd != 5)
			tl_expect(!strcmp(target, links[fd]), "fd %d is %s, was %s", fd, target,
				  links[fd]);
		else
			tl_expect(strstr(target, "/#") && strstr(target, " (deleted)"),
				  "fd 5 is %s", target);
	}
	restored = !fstat(4, &st) && st.st_ino != ino_before[4];
	tl_log("%s", restored ? "restored" : "left running");

	tl_expect(!fstat(3, &st) && !stat(other, &st_other) && st.st_ino == st_other.st_ino,
		  "fd 3 is no longer other.txt's inode");
	tl_expect(lseek(3, 0, SEEK_CUR) == 3, "fd 3 offset moved");
	tl_expect(write(3, "SHARED", 6) == 6, "write to fd 3: %m");
	memset(buf, 0, sizeof(buf));
	tl_read_file(other, buf, sizeof(buf));
	tl_expect(!strcmp(buf, "shaSHAREDode\n"), "other.txt holds \"%s\"", buf);
	tl_expect(!fstat(3, &st) && st.st_nlink == (restored ? 1 : st.st_nlink),
		  "other.txt has %lu links, not 1", (unsigned long)st.st_nlink);

	memset(buf, 0, sizeof(buf));
	tl_expect(read(4, buf, sizeof(buf)) == 13 && !strcmp(buf, "pied content\n"),
		  "fd 4 reads \"%s\"", buf);
	memset(buf, 0, sizeof(buf));
	tl_expect(pread(5, buf, sizeof(buf), 0) == 16 && !strcmp(buf, "tmpfile content\n"),
		  "fd 5 reads \"%s\"", buf);
	tl_expect(lseek(5, 0, SEEK_CUR) == 16, "fd 5 offset moved");

	dir = opendir(tl_dir());
	while (dir && (de = readdir(dir)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
		    strcmp(de->d_name, "other.txt") &&
		    (restored || strncmp(de->d_name, ".crest-remap.", 13)))
			tl_expect(false, "%s/%s was left behind", tl_dir(), de->d_name);
	if (dir)
		closedir(dir);
	tl_done();
}
