// SPDX-License-Identifier: MIT
/*
 * A deleted file of 3 MiB of data open at fd 3: more than the default --ghost-limit (1 MiB).
 * The runner's dump_ghost_limit test expects a dump to fail naming the limit and leave us
 * untouched, then a dump with --ghost-limit 4M to work.  After SIGTERM fd 3 must still be the
 * deleted file with all its content, at offset 1 MiB.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"

#define SIZE (3 << 20)
#define SEED 0xb16b16ull

static unsigned char data[SIZE];

int main(void)
{
	char path[4096], link[4096];
	struct stat st;
	ssize_t n;

	tl_init();
	tl_fill(data, sizeof(data), SEED);
	tl_write_file(tl_path(path, sizeof(path), "big.bin"), data, sizeof(data));
	if (open(path, O_RDONLY) != 3 || lseek(3, 1 << 20, SEEK_SET) != 1 << 20 || unlink(path))
		tl_fail("big.bin: %m");
	memset(data, 0, sizeof(data));
	tl_ready();
	tl_wait_term();

	n = readlink("/proc/self/fd/3", link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = '\0';
	strcat(path, " (deleted)");
	tl_expect(!strcmp(link, path), "fd 3 is %s", link);
	tl_expect(!fstat(3, &st) && st.st_size == SIZE && st.st_nlink == 0,
		  "fd 3: size %lld, %lu links", (long long)st.st_size, (unsigned long)st.st_nlink);
	tl_expect(lseek(3, 0, SEEK_CUR) == 1 << 20, "fd 3 offset moved");
	tl_expect(pread(3, data, SIZE, 0) == SIZE && tl_check_fill(data, SIZE, SEED) < 0,
		  "fd 3 lost content");
	tl_done();
}
