// SPDX-License-Identifier: MIT
/* Small helpers shared by the engine. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdio.h>
#include <sys/auxv.h>
#include <openssl/evp.h>

#include "util.h"

void test_hook(const char *var)
{
	const char *cmd = getenv(var);

	if (cmd && *cmd && system(cmd))
		fprintf(stderr, "crest: %s: the command failed\n", var);
}

char *read_file_at(int dirfd, const char *path, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || !buf)
		goto err;
	for (;;) {
		ssize_t r;

		if (n + 1 >= cap) {
			char *nb = realloc(buf, cap * 2);

			if (!nb)
				goto err;
			buf = nb;
			cap *= 2;
		}
		r = read(fd, buf + n, cap - n - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			goto err;
		if (r == 0)
			break;
		n += r;
	}
	close(fd);
	buf[n] = 0;
	if (len)
		*len = n;
	return buf;
err:
	if (fd >= 0) {
		int e = errno;

		close(fd);
		errno = e;
	}
	free(buf);
	return NULL;
}

int readlink_at(int dirfd, const char *path, char *buf, size_t len)
{
	ssize_t n = readlinkat(dirfd, path, buf, len - 1);

	if (n < 0)
		return -1;
	buf[n] = 0;
	return 0;
}

const char *proc_field(const char *text, const char *key)
{
	size_t klen = strlen(key);
	const char *p = text;

	while (p && *p) {
		if (!strncmp(p, key, klen) && p[klen] == ':') {
			p += klen + 1;
			while (*p == ' ' || *p == '\t')
				p++;
			return p;
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return NULL;
}

int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

int read_all(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

int fd_move_above(int fd, int base)
{
	int nfd = fcntl(fd, F_DUPFD_CLOEXEC, base);

	if (nfd < 0)
		return -1;
	close(fd);
	return nfd;
}

uint64_t now_ns(int clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

void *vec_push(struct vec *v)
{
	if (v->len == v->cap) {
		size_t ncap = v->cap ? v->cap * 2 : 16;
		void *nd = realloc(v->data, ncap * v->elem);

		if (!nd)
			return NULL;
		v->data = nd;
		v->cap = ncap;
	}
	void *e = (char *)v->data + v->len++ * v->elem;
	memset(e, 0, v->elem);
	return e;
}

void vec_free(struct vec *v)
{
	free(v->data);
	v->data = NULL;
	v->len = v->cap = 0;
}

/* SHA-256 of this kernel's vdso text, as mapped into crest itself. */
int vdso_digest(unsigned char out[32], size_t *vdso_len)
{
	unsigned long base = getauxval(AT_SYSINFO_EHDR);
	char *maps = read_file_at(AT_FDCWD, "/proc/self/maps", NULL), *line;
	unsigned long start, end;
	unsigned int len = 32;
	int ret = -1;

	for (line = maps; line && *line;
	     line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		if (sscanf(line, "%lx-%lx", &start, &end) == 2 && start == base) {
			*vdso_len = end - start;
			ret = EVP_Digest((void *)start, end - start, out, &len, EVP_sha256(), NULL)
				      ? 0
				      : -1;
			break;
		}
	}
	free(maps);
	return ret;
}

extern char **environ;

int run_wait(char *const argv[], int out_fd)
{
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int status, err;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (out_fd >= 0) {
		posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
		posix_spawn_file_actions_adddup2(&fa, out_fd, 2);
	} else {
		posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
		posix_spawn_file_actions_adddup2(&fa, 1, 2);
	}
	err = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (err) {
		errno = err;
		return -1;
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
