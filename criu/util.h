/* SPDX-License-Identifier: MIT */
#ifndef CREST_UTIL_H
#define CREST_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifndef PAGE_SIZE /* sys/user.h has the same */
#define PAGE_SHIFT 12
#define PAGE_SIZE (1UL << PAGE_SHIFT)
#define PAGE_MASK (~(PAGE_SIZE - 1))
#endif
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define min_t(t, a, b) ((t)(a) < (t)(b) ? (t)(a) : (t)(b))
#define max_t(t, a, b) ((t)(a) > (t)(b) ? (t)(a) : (t)(b))

/* Highest user address on x86_64 with 4-level paging. */
#define TASK_SIZE_MAX 0x7ffffffff000UL

/* Read a whole small file (/proc) into a NUL-terminated malloc'ed buffer; NULL on error. */
char *read_file_at(int dirfd, const char *path, size_t *len);

/*
 * For tests: when the environment variable var is set, run it as a shell command and wait,
 * so that a test can act at one exact point of a run (e.g. just before a dump freezes).
 */
void test_hook(const char *var);

/* readlinkat into buf (NUL-terminated); -1 on error. */
int readlink_at(int dirfd, const char *path, char *buf, size_t len);
/* Find "Key:" at the start of a line in a /proc status-like text; returns the value start. */
const char *proc_field(const char *text, const char *key);

/*
 * Run argv (searched in PATH) with stdin /dev/null and stdout and stderr into out_fd (-1:
 * /dev/null), and wait: its exit status, 128 + N when killed by signal N, -1 (errno set)
 * when it could not be started.
 */
int run_wait(char *const argv[], int out_fd);

int write_all(int fd, const void *buf, size_t len);
int read_all(int fd, void *buf, size_t len);

/* Move fd to the lowest free number >= base (close-on-exec), closing the original. */
int fd_move_above(int fd, int base);

uint64_t now_ns(int clock);
int vdso_digest(unsigned char out[32], size_t *vdso_len);

/* A growable array of fixed-size elements. */
struct vec {
	void *data;
	size_t len, cap, elem;
};
void *vec_push(struct vec *v); /* zeroed new element, NULL on OOM */
void vec_free(struct vec *v);
#define VEC_INIT(type)               \
	{                            \
		.elem = sizeof(type) \
	}
#define vec_at(v, type, i) (&((type *)(v)->data)[i])

#endif
