// SPDX-License-Identifier: MIT
/*
 * Shared memory objects: shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS, a shmem file the
 * kernel calls "/dev/zero (deleted)") and memfds.  Each object is saved once, whoever maps it
 * or holds an fd to it, with its size, name and seals.  On restore crest creates the object
 * itself, fills it, seals it, and hands one fd to every task: all of them map the very same
 * object, so a write by one is seen by the others.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"
#include "internal.h"
#include "log.h"

#include "shmem.pb-c.h"

int shmem_dump_object(struct dump_ctx *d, const char *proc_path, int kind, const char *name)
{
	struct dump_tree *t = d->tree;
	ShmemEntry e = SHMEM_ENTRY__INIT;
	struct shmem_key *k;
	struct stat st;
	int fd, seals;

	if (stat(proc_path, &st)) {
		pr_perror("cannot stat %s", proc_path);
		return -1;
	}
	for (size_t i = 0; i < t->shmem_keys.len; i++) {
		k = vec_at(&t->shmem_keys, struct shmem_key, i);
		if (k->dev == st.st_dev && k->ino == st.st_ino)
			return k->id;
	}
	if (!t->shmem) {
		t->shmem = img_open_write(t->dirfd, IMG_SHMEM, 0);
		if (!t->shmem)
			return -1;
	}
	k = vec_push(&t->shmem_keys);
	if (!k)
		return -1;
	k->dev = st.st_dev;
	k->ino = st.st_ino;
	k->id = t->shmem_keys.len;
	fd = open(proc_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		pr_perror("cannot open %s", proc_path);
		return -1;
	}
	e.id = k->id;
	e.kind = kind;
	e.size = st.st_size;
	e.name = (char *)name;
	seals = kind == SHMEM_KIND__SHMEM_MEMFD ? fcntl(fd, F_GET_SEALS) : -1;
	if (seals >= 0) {
		e.has_seals = true;
		e.seals = seals;
	}
	if (pages_dump_shmem(d, fd, st.st_size, e.id) || img_write_msg(t->shmem, &e.base)) {
		close(fd);
		return -1;
	}
	close(fd);
	return e.id;
}

/* "/memfd:NAME (deleted)" -> NAME; NULL when it is no memfd. */
char *shmem_memfd_name(const char *link)
{
	const char *pfx = "/memfd:", *sfx = " (deleted)";
	size_t n = strlen(link), p = strlen(pfx), q = strlen(sfx);

	if (n < p + q || strncmp(link, pfx, p) || strcmp(link + n - q, sfx))
		return NULL;
	return strndup(link + p, n - p - q);
}

/* ---- restore ---- */

int shmem_restore_read(struct restore_tree *t)
{
	struct cr_img *img;
	ProtobufCMessage *msg;
	int n;

	if (faccessat(t->dirfd, "shmem.img", F_OK, 0))
		return 0; /* no shared memory in this dump */
	img = img_open_read(t->dirfd, IMG_SHMEM, 0);
	if (!img)
		return -1;
	while ((n = img_read_msg(img, &shmem_entry__descriptor, &msg)) == 1) {
		ShmemEntry **slot = vec_push(&t->shmems);

		if (!slot) {
			protobuf_c_message_free_unpacked(msg, NULL);
			n = -1;
			break;
		}
		*slot = (ShmemEntry *)msg;
		if ((*slot)->id != t->shmems.len || (*slot)->size > (1ULL << 46)) {
			pr_err("%s: object %u is malformed or out of order", img_path(img),
			       (*slot)->id);
			n = -1;
			break;
		}
	}
	img_close(img);
	if (n < 0)
		return -1;
	t->shmem_fds = malloc((t->shmems.len + 1) * sizeof(int));
	if (!t->shmem_fds)
		return -1;
	for (size_t i = 0; i < t->shmems.len; i++)
		t->shmem_fds[i] = -1;
	return 0;
}

static int create_object(const ShmemEntry *e)
{
	char path[64];
	void *map;
	int fd;

	if (e->kind == SHMEM_KIND__SHMEM_MEMFD) {
		fd = memfd_create(e->name ? e->name : "", MFD_ALLOW_SEALING | MFD_CLOEXEC);
		if (fd < 0 || ftruncate(fd, e->size)) {
			pr_perror("cannot create memfd %s", e->name ? e->name : "");
			if (fd >= 0)
				close(fd);
			return -1;
		}
		return fd;
	}
	/* Shared anonymous memory is a shmem file only the kernel can make: make one by mapping
	 * it, and keep its file through map_files. */
	map = mmap(NULL, e->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED) {
		pr_perror("cannot create shared memory of %llu bytes", (unsigned long long)e->size);
		return -1;
	}
	snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)map,
		 (unsigned long)map + (unsigned long)e->size);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		pr_perror("cannot open %s", path);
	munmap(map, e->size);
	return fd;
}

/* The object's content, from its own pagemap/pages images. */
static int fill_object(struct restore_tree *t, const ShmemEntry *e, int fd)
{
	struct cr_img *pm = img_open_read(t->dirfd, IMG_SHM_PAGEMAP, e->id), *pages = NULL;
	ProtobufCMessage *msg;
	char *buf = NULL;
	int n, ret = -1;

	if (!pm)
		return -1;
	if (img_read_msg(pm, &pagemap_head__descriptor, &msg) != 1)
		goto out;
	uint64_t data_size = ((PagemapHead *)msg)->pages_size;

	protobuf_c_message_free_unpacked(msg, NULL);
	pages = img_open_read(t->dirfd, IMG_SHM_PAGES, e->id);
	buf = malloc(1 << 20);
	if (!pages || !buf || img_size(pages) - IMG_PAGES_HDR_SIZE != data_size) {
		if (pages && buf)
			pr_err("%s: holds %llu bytes, its pagemap expects %llu", img_path(pages),
			       (unsigned long long)(img_size(pages) - IMG_PAGES_HDR_SIZE),
			       (unsigned long long)data_size);
		goto out;
	}
	uint64_t prev_end = 0;

	while ((n = img_read_msg(pm, &pagemap_entry__descriptor, &msg)) == 1) {
		PagemapEntry *r = (PagemapEntry *)msg;
		uint64_t len = (uint64_t)r->nr_pages * PAGE_SIZE;
		uint64_t end = (e->size + PAGE_SIZE - 1) & PAGE_MASK;
		bool bad =
			r->vaddr % PAGE_SIZE || r->vaddr + len > end || r->vaddr + len < len ||
			r->vaddr < prev_end || !r->nr_pages ||
			((r->flags & PAGEMAP_FLAGS__PE_PRESENT) && !pages_run_valid(r, data_size));
		bool lz4 = r->flags & PAGEMAP_FLAGS__PE_LZ4;

		prev_end = r->vaddr + len;
		/* never past the object's size: the last page may be partly beyond it */
		if (!bad && r->vaddr + len > e->size)
			len = e->size - r->vaddr;
		/* an lz4 block (1 MiB at most) is decompressed whole */
		if (!bad && lz4 &&
		    (pages_read_run(img_fd(pages), r, buf) ||
		     pwrite(fd, buf, len, r->vaddr) != (ssize_t)len)) {
			pr_perror("cannot fill shared memory object %u", e->id);
			bad = true;
		}
		for (uint64_t done = 0;
		     !bad && !lz4 && (r->flags & PAGEMAP_FLAGS__PE_PRESENT) && done < len;) {
			size_t chunk = min_t(uint64_t, len - done, 1 << 20);

			if (pread(img_fd(pages), buf, chunk, IMG_PAGES_HDR_SIZE + r->off + done) !=
				    (ssize_t)chunk ||
			    pwrite(fd, buf, chunk, r->vaddr + done) != (ssize_t)chunk) {
				pr_perror("cannot fill shared memory object %u", e->id);
				bad = true;
			}
			done += chunk;
		}
		protobuf_c_message_free_unpacked(msg, NULL);
		if (bad) {
			pr_err("%s: run out of the object's bounds or unreadable", img_path(pm));
			goto out;
		}
	}
	ret = n < 0 ? -1 : 0;
out:
	free(buf);
	img_close(pages);
	img_close(pm);
	return ret;
}

int shmem_restore_fd(struct restore_ctx *r, uint32_t id)
{
	struct restore_tree *t = r->tree;
	const ShmemEntry *e;
	int fd;

	if (id < 1 || id > t->shmems.len) {
		pr_err("task %d refers to unknown shared memory object %u", r->pid, id);
		return -1;
	}
	if (t->shmem_fds[id - 1] >= 0)
		return t->shmem_fds[id - 1];
	e = *vec_at(&t->shmems, ShmemEntry *, id - 1);
	fd = create_object(e);
	if (fd < 0 || fill_object(t, e, fd)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	/* sealed last: F_SEAL_WRITE would refuse the content */
	if (e->has_seals && e->seals && fcntl(fd, F_ADD_SEALS, e->seals)) {
		pr_perror("cannot seal memfd %s", e->name ? e->name : "");
		close(fd);
		return -1;
	}
	t->shmem_fds[id - 1] = restore_add_helper(t, fd);
	return t->shmem_fds[id - 1];
}
