// SPDX-License-Identifier: MIT
/*
 * Holds something crest does not dump: an io_uring instance at fd 42.  The runner's
 * dump_unsupported test expects the dump to fail with one line naming fd 42 and to leave us
 * running untouched; after SIGTERM the ring must still be the same open file.
 */
#include <fcntl.h>
#include <linux/io_uring.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "testlib.h"

#define FD 42

int main(void)
{
	struct io_uring_params params;
	struct stat before, after;
	char link[256];
	ssize_t n;
	int fd;

	tl_init();
	memset(&params, 0, sizeof(params));
	fd = syscall(SYS_io_uring_setup, 4, &params);
	if (fd < 0)
		tl_fail("io_uring_setup: %m");
	if (dup2(fd, FD) != FD)
		tl_fail("dup2: %m");
	close(fd);
	if (fstat(FD, &before))
		tl_fail("fstat: %m");
	tl_ready();
	tl_wait_term();

	if (tl_expect(!fstat(FD, &after), "fd %d is gone", FD))
		tl_expect(before.st_ino == after.st_ino && before.st_dev == after.st_dev,
			  "fd %d is another file", FD);
	n = readlink("/proc/self/fd/42", link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = '\0';
	tl_expect(!strcmp(link, "anon_inode:[io_uring]"), "fd %d is %s", FD, link);
	tl_done();
}
