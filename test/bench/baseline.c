// SPDX-License-Identifier: MIT
/*
 * Baselines for the dump/restore benchmark, measured on the same machine in the same run:
 * memcpy of 1 GiB between buffers that are already faulted in (raw memory bandwidth), and
 * writing 1 GiB into the page cache of a file in DIR, 1 MiB per write() and no fsync (what
 * a dump that writes its pages image costs at the least).  Each is run REPS times and the
 * median printed, as "memcpy_s SECONDS" and "pagecache_write_s SECONDS".
 *
 * With "fill MIB COUNT": the least a restore of COUNT tasks of MIB MiB of private memory
 * each pays to put it back: COUNT times, read a cached file of MIB MiB into a fresh anonymous
 * mapping (the page faults, zeroing and copy a restored task's pread() does) and unmap it.
 * The median total of REPS is printed as "fill_s SECONDS".
 *
 * Usage: baseline DIR [fill MIB COUNT]
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define TOTAL (1UL << 30)
#define CHUNK (1UL << 20)
#define REPS 3

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static char *alloc_faulted(int byte)
{
	char *p = mmap(NULL, TOTAL, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("baseline: mmap");
		exit(1);
	}
	memset(p, byte, TOTAL);
	return p;
}

static double time_memcpy(char *dst, const char *src)
{
	double t = now();

	memcpy(dst, src, TOTAL);
	t = now() - t;
	/* Keep the copy observable so it cannot be optimised away. */
	if (dst[TOTAL - 1] != src[TOTAL - 1])
		exit(1);
	return t;
}

static double time_pagecache_write(const char *dir, const char *src)
{
	char path[4096];
	double t;
	int fd;

	snprintf(path, sizeof(path), "%s/baseline.XXXXXX", dir);
	fd = mkstemp(path);
	if (fd < 0) {
		perror("baseline: mkstemp");
		exit(1);
	}
	t = now();
	for (size_t off = 0; off < TOTAL; off += CHUNK) {
		if (write(fd, src + off, CHUNK) != (ssize_t)CHUNK) {
			perror("baseline: write");
			unlink(path);
			exit(1);
		}
	}
	t = now() - t;
	close(fd);
	unlink(path);
	return t;
}

static double time_fill(const char *dir, size_t len, int count)
{
	char path[4096], *src = malloc(len);
	double t;
	int fd;

	snprintf(path, sizeof(path), "%s/baseline.XXXXXX", dir);
	fd = mkstemp(path);
	if (fd < 0 || !src) {
		perror("baseline: mkstemp");
		exit(1);
	}
	unlink(path);
	for (size_t i = 0; i < len; i++)
		src[i] = (char)(i * 131 + (i >> 12));
	if (write(fd, src, len) != (ssize_t)len) {
		perror("baseline: write");
		exit(1);
	}
	t = now();
	for (int i = 0; i < count; i++) {
		char *m =
			mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (m == MAP_FAILED || pread(fd, m, len, 0) != (ssize_t)len ||
		    m[len - 1] != src[len - 1]) {
			perror("baseline: fill");
			exit(1);
		}
		munmap(m, len);
	}
	t = now() - t;
	close(fd);
	free(src);
	return t;
}

int main(int argc, char **argv)
{
	double cp[REPS], wr[REPS];
	char *src, *dst;

	if (argc == 5 && !strcmp(argv[2], "fill")) {
		for (int i = 0; i < REPS; i++)
			cp[i] = time_fill(argv[1], strtoul(argv[3], NULL, 0) << 20, atoi(argv[4]));
		qsort(cp, REPS, sizeof(double), cmp_double);
		printf("fill_s %.6f\n", cp[REPS / 2]);
		return 0;
	}
	if (argc != 2) {
		fprintf(stderr, "usage: baseline DIR [fill MIB COUNT]\n");
		return 1;
	}
	src = alloc_faulted(0x5a);
	dst = alloc_faulted(0);
	for (int i = 0; i < REPS; i++) {
		cp[i] = time_memcpy(dst, src);
		wr[i] = time_pagecache_write(argv[1], src);
	}
	qsort(cp, REPS, sizeof(double), cmp_double);
	qsort(wr, REPS, sizeof(double), cmp_double);
	printf("memcpy_s %.6f\n", cp[REPS / 2]);
	printf("pagecache_write_s %.6f\n", wr[REPS / 2]);
	return 0;
}
