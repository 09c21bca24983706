// SPDX-License-Identifier: MIT
/*
 * Deleted files still mapped:
 *
 *   shared.bin  3 pages, mapped MAP_SHARED read-write, its fd closed, then unlinked; one
 *               page written through the mapping
 *   priv.bin    2 pages, mapped MAP_PRIVATE read-write and open at fd 3, then unlinked;
 *               page 0 written through the mapping (a private copy), page 1 only read
 *
 * After SIGTERM both mappings must be where they were, named "... (deleted)" in
 * /proc/self/maps, with their content.  shared.bin's mapping must still be the file: what is
 * written through it is read through /proc/self/map_files.  priv.bin's private copy of page 0
 * must differ from the file while page 1 is still the file's page: a write through fd 3 must
 * show in the mapping, so fd 3 and the mapping are still one file.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "testlib.h"

#define PAGE 4096
#define SHARED_SEED 0x5a43edull
#define PRIV_SEED 0x9121ull
#define FD_PRIV 3

static unsigned char shared_data[3 * PAGE], priv_data[2 * PAGE];
static unsigned char *shared_map, *priv_map;
static char shared_line[512], priv_line[512];

/* The /proc/self/maps line of the mapping at addr, without the leading address range. */
static void maps_line(void *addr, char *out, size_t size)
{
	static char maps[65536];
	char start[32];
	const char *line;

	tl_read_file("/proc/self/maps", maps, sizeof(maps));
	snprintf(start, sizeof(start), "%lx-", (unsigned long)addr);
	out[0] = '\0';
	for (line = maps; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
		if (!strncmp(line, start, strlen(start))) {
			const char *path = strchr(line, '/');
			size_t n = path ? strcspn(path, "\n") : 0;

			snprintf(out, size, "%.*s", (int)n, path ? path : "");
			return;
		}
}

static void build(void)
{
	char path[4096];
	int fd;

	tl_fill(shared_data, sizeof(shared_data), SHARED_SEED);
	tl_write_file(tl_path(path, sizeof(path), "shared.bin"), shared_data, sizeof(shared_data));
	fd = open(path, O_RDWR);
	shared_map = mmap(NULL, sizeof(shared_data), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (fd < 0 || shared_map == MAP_FAILED || close(fd) || unlink(path))
		tl_fail("shared.bin: %m");
	memset(shared_map + PAGE, 0x5a, 100);
	memset(shared_data + PAGE, 0x5a, 100);

	tl_fill(priv_data, sizeof(priv_data), PRIV_SEED);
	tl_write_file(tl_path(path, sizeof(path), "priv.bin"), priv_data, sizeof(priv_data));
	fd = open(path, O_RDWR);
	if (fd < 0 || dup2(fd, FD_PRIV) != FD_PRIV || (fd != FD_PRIV && close(fd)))
		tl_fail("priv.bin: %m");
	priv_map = mmap(NULL, sizeof(priv_data), PROT_READ | PROT_WRITE, MAP_PRIVATE, FD_PRIV, 0);
	if (priv_map == MAP_FAILED || unlink(path))
		tl_fail("priv.bin: %m");
	memcpy(priv_map, "private copy", 12);
	if (priv_map[PAGE + 10] != priv_data[PAGE + 10])
		tl_fail("page 1 of priv.bin reads wrong");

	maps_line(shared_map, shared_line, sizeof(shared_line));
	maps_line(priv_map, priv_line, sizeof(priv_line));
	if (!strstr(shared_line, "(deleted)") || !strstr(priv_line, "(deleted)"))
		tl_fail("maps shows '%s' and '%s'", shared_line, priv_line);
}

static void check(void)
{
	char line[512], path[128];
	unsigned char buf[PAGE];
	int fd;

	maps_line(shared_map, line, sizeof(line));
	tl_expect(!strcmp(line, shared_line), "shared.bin is mapped as '%s', was '%s'", line,
		  shared_line);
	maps_line(priv_map, line, sizeof(line));
	tl_expect(!strcmp(line, priv_line), "priv.bin is mapped as '%s', was '%s'", line,
		  priv_line);

	tl_expect(!memcmp(shared_map, shared_data, sizeof(shared_data)),
		  "shared.bin's mapping lost its content");
	memcpy(shared_map + 2 * PAGE, "after the restore", 17);
	snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)shared_map,
		 (unsigned long)shared_map + sizeof(shared_data));
	fd = open(path, O_RDONLY);
	tl_expect(fd >= 0 && pread(fd, buf, 17, 2 * PAGE) == 17 &&
			  !memcmp(buf, "after the restore", 17),
		  "a write through the shared mapping does not reach the file");
	if (fd >= 0)
		close(fd);

	tl_expect(!memcmp(priv_map, "private copy", 12) &&
			  !memcmp(priv_map + 12, priv_data + 12, PAGE - 12),
		  "priv.bin's private page 0 changed");
	tl_expect(pread(FD_PRIV, buf, PAGE, 0) == PAGE && !memcmp(buf, priv_data, PAGE),
		  "priv.bin's page 0 in the file changed");
	tl_expect(!memcmp(priv_map + PAGE, priv_data + PAGE, PAGE), "priv.bin's page 1 changed");
	tl_expect(pwrite(FD_PRIV, "through the fd", 14, PAGE) == 14, "write to fd %d: %m", FD_PRIV);
	tl_expect(!memcmp(priv_map + PAGE, "through the fd", 14),
		  "a write through fd %d does not show in the private mapping's page 1", FD_PRIV);
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
