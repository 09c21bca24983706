// SPDX-License-Identifier: MIT
/*
 * Page contents.  Dump: PAGEMAP_SCAN finds the pages that exist (present or swapped) without
 * touching the rest; process_vm_readv copies them out of the frozen task in large chunks;
 * all-zero pages are recorded as zero runs and never stored.  Restore: the task itself
 * preadv()s its pages from the pages image, straight into place, many runs per syscall.
 *
 * With --compress, runs are stored in lz4 blocks of up to LZ4_BLOCK_PAGES pages, one pagemap
 * entry (PE_PRESENT | PE_LZ4, clen bytes at off) per block.  A block that barely compresses is
 * stored raw instead, page-aligned like every raw run, so random data keeps the direct path.
 * Restore decompresses blocks in crest and writes them into the task with process_vm_writev.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <lz4.h>

#include "compat/pagemap_scan.h"
#include "image.h"
#include "internal.h"
#include "log.h"

#define READ_CHUNK (1UL << 20) /* bytes copied out of the task per process_vm_readv */
#define SCAN_REGIONS 512
#define MAX_RUN_PAGES (1U << 18)   /* 1 GiB: a run always fits one preadv */
#define FILL_BYTES_MAX (1UL << 30) /* well under MAX_RW_COUNT */
#define LZ4_BLOCK_PAGES 64	   /* 256 KiB: past lz4's 64 KiB window, bigger gains little */
#define LZ4_MAX_BLOCK_PAGES 256	   /* the largest block restore accepts */
#define LZ4_MIN_GAIN 16		   /* a block saving less than 1/16 is stored raw */

/* Runs being written: adjacent runs of the same kind are merged as they come. */
struct pagemap_writer {
	struct cr_img *pages;
	struct vec runs;	 /* PagemapEntry (only vaddr, nr_pages, flags, off used) */
	unsigned long vma_start; /* runs never merge across VMAs: restore checks each is in one */
	uint64_t *stat_written, *stat_zero, *stat_cow;
	int pagemap_fd, parent_pagemap_fd; /* PFNs, for pages shared with the parent */
	char *cbuf; /* --compress: a compressed block, NULL when not compressing */
	uint64_t lz4_in, lz4_out, lz4_ns;
};

/* Raw data starts page-aligned (restore reads it straight into place); lz4 blocks need not. */
static int pad_to_page(struct pagemap_writer *w)
{
	static const char zero[PAGE_SIZE];
	uint64_t off = img_data_off(w->pages);

	return off % PAGE_SIZE ? img_write_raw(w->pages, zero, PAGE_SIZE - off % PAGE_SIZE) : 0;
}

static int pm_emit_run(struct pagemap_writer *w, unsigned long vaddr, unsigned long nr,
		       uint32_t flags, const void *data)
{
	PagemapEntry *last = w->runs.len ? vec_at(&w->runs, PagemapEntry, w->runs.len - 1) : NULL;
	uint64_t off;

	if (data && pad_to_page(w))
		return -1;
	off = img_data_off(w->pages);
	if (data && img_write_raw(w->pages, data, nr * PAGE_SIZE))
		return -1;
	if (flags & PAGEMAP_FLAGS__PE_PRESENT)
		*w->stat_written += nr;
	else if (flags & PAGEMAP_FLAGS__PE_ZERO)
		*w->stat_zero += nr;
	else if (flags & PAGEMAP_FLAGS__PE_COW)
		*w->stat_cow += nr;

	if (last && last->flags == flags && last->vaddr >= w->vma_start &&
	    last->nr_pages + nr <= MAX_RUN_PAGES &&
	    last->vaddr + last->nr_pages * PAGE_SIZE == vaddr &&
	    (!data || last->off + last->nr_pages * PAGE_SIZE == off)) {
		last->nr_pages += nr;
		return 0;
	}
	PagemapEntry *e = vec_push(&w->runs);

	if (!e) {
		pr_err("out of memory");
		return -1;
	}
	pagemap_entry__init(e);
	e->vaddr = vaddr;
	e->nr_pages = nr;
	e->flags = flags;
	if (data) {
		e->has_off = true;
		e->off = off;
	}
	return 0;
}

static int pm_emit_lz4(struct pagemap_writer *w, unsigned long vaddr, unsigned long nr,
		       const char *data)
{
	for (unsigned long i = 0; i < nr; i += LZ4_BLOCK_PAGES) {
		unsigned long n = min_t(unsigned long, nr - i, LZ4_BLOCK_PAGES);
		const char *src = data + i * PAGE_SIZE;
		int len = n * PAGE_SIZE, clen;
		uint64_t t0 = now_ns(CLOCK_MONOTONIC), off;
		PagemapEntry *e;

		clen = LZ4_compress_default(src, w->cbuf, len,
					    LZ4_COMPRESSBOUND(LZ4_BLOCK_PAGES * PAGE_SIZE));
		w->lz4_ns += now_ns(CLOCK_MONOTONIC) - t0;
		w->lz4_in += len;
		if (clen <= 0 || clen > len - len / LZ4_MIN_GAIN) {
			w->lz4_out += len;
			if (pm_emit_run(w, vaddr + i * PAGE_SIZE, n, PAGEMAP_FLAGS__PE_PRESENT,
					src))
				return -1;
			continue;
		}
		w->lz4_out += clen;
		off = img_data_off(w->pages);
		if (img_write_raw(w->pages, w->cbuf, clen))
			return -1;
		*w->stat_written += n;
		e = vec_push(&w->runs);
		if (!e) {
			pr_err("out of memory");
			return -1;
		}
		pagemap_entry__init(e);
		e->vaddr = vaddr + i * PAGE_SIZE;
		e->nr_pages = n;
		e->flags = PAGEMAP_FLAGS__PE_PRESENT | PAGEMAP_FLAGS__PE_LZ4;
		e->has_off = e->has_clen = true;
		e->off = off;
		e->clen = clen;
	}
	return 0;
}

static int pm_emit(struct pagemap_writer *w, unsigned long vaddr, unsigned long nr, uint32_t flags,
		   const void *data)
{
	if (data && w->cbuf)
		return pm_emit_lz4(w, vaddr, nr, data);
	return pm_emit_run(w, vaddr, nr, flags, data);
}

/* --compress: a buffer for one compressed block. */
static int lz4_start(struct dump_ctx *d, struct pagemap_writer *w)
{
	if (!d->opts->compress)
		return 0;
	w->cbuf = malloc(LZ4_COMPRESSBOUND(LZ4_BLOCK_PAGES * PAGE_SIZE));
	if (!w->cbuf)
		pr_err("out of memory");
	return w->cbuf ? 0 : -1;
}

static void lz4_finish(struct pagemap_writer *w, const char *what)
{
	if (w->lz4_in)
		pr_debug("%s: lz4 %.1f MiB of pages into %.1f MiB (%.2fx) in %.1f ms (%.0f MiB/s)",
			 what, w->lz4_in / 1048576.0, w->lz4_out / 1048576.0,
			 (double)w->lz4_in / (w->lz4_out ? w->lz4_out : 1), w->lz4_ns / 1e6,
			 w->lz4_ns ? w->lz4_in / 1048576.0 / (w->lz4_ns / 1e9) : 0);
	free(w->cbuf);
	w->cbuf = NULL;
}

static bool page_is_zero(const void *p)
{
	static const char zero[PAGE_SIZE];
	const uint64_t *q = p;

	/* Most non-zero pages differ in their first words: skip memcmp for them. */
	if (q[0] | q[1] | q[511])
		return false;
	return !memcmp(p, zero, PAGE_SIZE);
}

/* Where and how to read a VMA's pages. */
struct copy_src {
	int mem_fd;	 /* /proc/PID/mem */
	bool readable;	 /* the task can read it: process_vm_readv works */
	bool elide_zero; /* all-zero pages become zero runs */
	bool cow;	 /* inherited VMA: look for pages shared with the parent */
	bool unchanged;	 /* not written since the previous round: in-parent unless COW */
};

/* Emit a chunk of copied pages, splitting it into data runs and zero runs. */
static int pm_emit_chunk(struct pagemap_writer *w, unsigned long vaddr, const char *buf,
			 unsigned long nr, bool elide_zero)
{
	unsigned long i = 0;

	if (!elide_zero)
		return pm_emit(w, vaddr, nr, PAGEMAP_FLAGS__PE_PRESENT, buf);
	while (i < nr) {
		bool zero = page_is_zero(buf + i * PAGE_SIZE);
		unsigned long j = i + 1;

		while (j < nr && page_is_zero(buf + j * PAGE_SIZE) == zero)
			j++;
		if (pm_emit(w, vaddr + i * PAGE_SIZE, j - i,
			    zero ? PAGEMAP_FLAGS__PE_ZERO : PAGEMAP_FLAGS__PE_PRESENT,
			    zero ? NULL : buf + i * PAGE_SIZE))
			return -1;
		i = j;
	}
	return 0;
}

#define PM_PFN_MASK ((1ULL << 55) - 1)
#define PM_EXCLUSIVE (1ULL << 56)
#define PM_PRESENT (1ULL << 63)
#define CHUNK_PAGES (READ_CHUNK / PAGE_SIZE)

static bool same_frame(uint64_t mine, uint64_t theirs)
{
	return (mine & PM_PRESENT) && (theirs & PM_PRESENT) && (mine & PM_PFN_MASK) &&
	       (mine & PM_PFN_MASK) == (theirs & PM_PFN_MASK);
}

/*
 * Read pages [i, j) of a chunk into buf.  process_vm_readv pins the pages it reads, and the
 * kernel unshares an anonymous page shared copy-on-write before pinning it (a private copy
 * for the task, for good): so pages mapped more than once are read through /proc/PID/mem,
 * which only takes references.  Pages mapped once are read the fast way.
 */
static int read_pages(struct dump_ctx *d, const struct copy_src *src, char *buf,
		      unsigned long start, const uint64_t *pm, size_t i, size_t j)
{
	while (i < j) {
		bool fast = src->readable && (pm[i] & PM_EXCLUSIVE);
		size_t k = i + 1;
		unsigned long addr = start + i * PAGE_SIZE;
		size_t len;
		ssize_t n;

		while (k < j && (src->readable && (pm[k] & PM_EXCLUSIVE)) == fast)
			k++;
		len = (k - i) * PAGE_SIZE;
		if (fast) {
			struct iovec local = {buf + i * PAGE_SIZE, len};
			struct iovec remote = {(void *)addr, len};

			n = process_vm_readv(d->pid, &local, 1, &remote, 1, 0);
		} else {
			n = pread(src->mem_fd, buf + i * PAGE_SIZE, len, addr);
		}
		if (n != (ssize_t)len) {
			pr_perror("cannot read memory %#lx-%#lx of %d", addr, addr + len, d->pid);
			return -1;
		}
		i = k;
	}
	return 0;
}

/*
 * Copy [start, end) out of the task.  In a VMA the child inherits from its parent, pages
 * whose frame is the parent's page at the same address are shared copy-on-write: they are
 * recorded, not copied, and come back by fork.
 */
static int copy_range(struct dump_ctx *d, struct pagemap_writer *w, char *buf,
		      const struct copy_src *src, unsigned long start, unsigned long end)
{
	static uint64_t mine[CHUNK_PAGES], theirs[CHUNK_PAGES];

	while (start < end) {
		size_t n = min_t(size_t, (end - start) / PAGE_SIZE, CHUNK_PAGES), i = 0;
		off_t off = start / PAGE_SIZE * sizeof(uint64_t);

		if (pread(w->pagemap_fd, mine, n * 8, off) != (ssize_t)(n * 8) ||
		    (src->cow &&
		     pread(w->parent_pagemap_fd, theirs, n * 8, off) != (ssize_t)(n * 8))) {
			pr_perror("cannot read the page map of %d", d->pid);
			return -1;
		}
		while (i < n) {
			bool shared = src->cow && same_frame(mine[i], theirs[i]);
			size_t j = i + 1;

			while (j < n && (src->cow && same_frame(mine[j], theirs[j])) == shared)
				j++;
			if (shared || src->unchanged) {
				if (pm_emit(w, start + i * PAGE_SIZE, j - i,
					    shared ? PAGEMAP_FLAGS__PE_COW
						   : PAGEMAP_FLAGS__PE_PARENT,
					    NULL))
					return -1;
			} else if (read_pages(d, src, buf, start, mine, i, j) ||
				   pm_emit_chunk(w, start + i * PAGE_SIZE, buf + i * PAGE_SIZE,
						 j - i, src->elide_zero)) {
				return -1;
			}
			i = j;
		}
		start += n * PAGE_SIZE;
	}
	return 0;
}

/* Shared memory: its shmem file knows which pages exist, mapped anywhere or not. */
static int dump_file_content(struct dump_ctx *d, struct pagemap_writer *w, int fd, off_t end_off,
			     char *buf)
{
	off_t pos = 0;

	while (pos < end_off) {
		off_t data = lseek(fd, pos, SEEK_DATA), hole;

		if (data < 0 || data >= end_off)
			break;
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0 || hole > end_off)
			hole = end_off;
		for (off_t o = data; o < hole;) {
			/* whole pages: the last one may hold less than a page of file */
			size_t len =
				min_t(size_t, (hole - o + PAGE_SIZE - 1) & PAGE_MASK, READ_CHUNK);
			ssize_t got = pread(fd, buf, len, o);

			if (got > 0 && (size_t)got < len && o + got == end_off)
				memset(buf + got, 0, len - got);
			else if (got != (ssize_t)len) {
				pr_perror("cannot read shared memory of %d at offset %lld", d->pid,
					  (long long)o);
				return -1;
			}
			if (pm_emit_chunk(w, o, buf, len / PAGE_SIZE, true))
				return -1;
			o += len;
		}
		pos = hole;
	}
	return 0;
}

static int write_pagemap(struct dump_ctx *d, struct pagemap_writer *w, enum img_kind kind, pid_t id)
{
	PagemapHead head = PAGEMAP_HEAD__INIT;
	struct cr_img *img = img_open_write(d->dirfd, kind, id);
	int ret = 0;

	if (!img)
		return -1;
	head.nr_runs = w->runs.len;
	head.pages_size = img_data_off(w->pages);
	ret = img_write_msg(img, &head.base);
	for (size_t i = 0; !ret && i < w->runs.len; i++)
		ret = img_write_msg(img, &vec_at(&w->runs, PagemapEntry, i)->base);
	if (img_close(img))
		ret = -1;
	return ret;
}

/* One step of a task's page dump, decided while it is frozen. */
struct page_step {
	unsigned long start, end, vma_start;
	uint32_t flags; /* PE_ZERO, PE_PARENT: recorded as they are; 0: copied */
	struct copy_src src;
};

static int plan_add(struct dump_ctx *d, unsigned long start, unsigned long end, const VmaEntry *vma,
		    uint32_t flags, const struct copy_src *src)
{
	struct page_step *s = vec_push(&d->page_plan);

	if (!s)
		return -1;
	s->start = start;
	s->end = end;
	s->vma_start = vma->start;
	s->flags = flags;
	s->src = *src;
	return 0;
}

/* First run of the previous round that ends after addr. */
static size_t prev_run_from(const struct dump_ctx *d, unsigned long addr)
{
	size_t lo = 0, hi = d->nr_prev_runs;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const PagemapEntry *e = d->prev_runs[mid];

		if (e->vaddr + (uint64_t)e->nr_pages * PAGE_SIZE <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * Pages not written since the previous round: those the previous round has are recorded as
 * in-parent; any it lacks are copied all the same.
 */
static int plan_unchanged(struct dump_ctx *d, const VmaEntry *vma, unsigned long start,
			  unsigned long end, const struct copy_src *src)
{
	size_t k = prev_run_from(d, start);

	while (start < end) {
		const PagemapEntry *e = k < d->nr_prev_runs ? d->prev_runs[k] : NULL;
		unsigned long rs, re;

		if (!e || e->vaddr >= end)
			return plan_add(d, start, end, vma, 0, src);
		rs = e->vaddr;
		re = rs + (uint64_t)e->nr_pages * PAGE_SIZE;
		if (rs > start) {
			if (plan_add(d, start, rs, vma, 0, src))
				return -1;
			start = rs;
		}
		re = min_t(unsigned long, re, end);
		/* a run shared with a parent task then is no evidence of the data now */
		if (e->flags == PAGEMAP_FLAGS__PE_COW) {
			if (plan_add(d, start, re, vma, 0, src))
				return -1;
		} else if (src->cow) {
			/* shared with the parent task now wins over in-parent: decided at copy */
			struct copy_src u = *src;

			u.unchanged = true;
			if (plan_add(d, start, re, vma, 0, &u))
				return -1;
		} else {
			if (plan_add(d, start, re, vma, PAGEMAP_FLAGS__PE_PARENT, src))
				return -1;
			d->pages_parent += (re - start) / PAGE_SIZE;
		}
		start = re;
		k++;
	}
	return 0;
}

/*
 * Private mappings: the pages PAGEMAP_SCAN reports, filtered by what must be saved.  With
 * tracking armed, the same scan write-protects them again for the next round and says which
 * were written since the last one.
 */
static int plan_private_vma(struct dump_ctx *d, int pagemap_fd, const VmaEntry *vma,
			    const struct proc_vma *pv)
{
	static struct page_region regions[SCAN_REGIONS];
	bool file = vma->kind == VMA_KIND__VMA_FILE_PRIVATE;
	bool incremental = d->prev_runs && pv->tracked && d->tree->prev_track;
	struct copy_src src = {
		.readable = vma->prot & PROT_READ,
		.elide_zero = !file, /* a zero COWed page of a file mapping is not the file's */
		/* pages copied while the tree runs say nothing of the parent's at the end */
		.cow = vma->inherit && d->parent && !d->tree->pre_dump,
	};
	unsigned long addr = vma->start;

	while (addr < vma->end) {
		struct pm_scan_arg arg = {
			.size = sizeof(arg),
			.flags = d->tree->arm && pv->tracked ? PM_SCAN_WP_MATCHING : 0,
			.start = addr,
			.end = vma->end,
			.vec = (uintptr_t)regions,
			.vec_len = SCAN_REGIONS,
			.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
			.return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_FILE |
				       PAGE_IS_PFNZERO | PAGE_IS_WRITTEN | PAGE_IS_WPALLOWED,
		};
		int n = ioctl(pagemap_fd, PAGEMAP_SCAN, &arg);

		if (n < 0) {
			pr_perror("PAGEMAP_SCAN of %d at %#lx", d->pid, addr);
			return -1;
		}
		for (int i = 0; i < n; i++) {
			uint64_t cat = regions[i].categories;
			unsigned long s = regions[i].start, e = regions[i].end;

			d->pages_scanned += (e - s) / PAGE_SIZE;
			/* The shared zero page: content known, nothing to copy. */
			if ((cat & PAGE_IS_PFNZERO) && !(cat & PAGE_IS_SWAPPED)) {
				if (!file && plan_add(d, s, e, vma, PAGEMAP_FLAGS__PE_ZERO, &src))
					return -1;
				continue;
			}
			/* A file page not COWed: the file has it. */
			if (file && (cat & PAGE_IS_FILE) && !(cat & PAGE_IS_SWAPPED))
				continue;
			if (incremental && (cat & PAGE_IS_WPALLOWED) && !(cat & PAGE_IS_WRITTEN)) {
				if (plan_unchanged(d, vma, s, e, &src))
					return -1;
			} else if (plan_add(d, s, e, vma, 0, &src)) {
				return -1;
			}
		}
		if (arg.walk_end <= addr || arg.walk_end >= vma->end)
			break;
		addr = arg.walk_end;
	}
	return 0;
}

int pages_plan(struct dump_ctx *d, MmEntry *mm)
{
	char path[64];
	int pagemap_fd, ret = 0;

	d->page_plan = (struct vec){.elem = sizeof(struct page_step)};
	snprintf(path, sizeof(path), "/proc/%d/pagemap", d->pid);
	pagemap_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (pagemap_fd < 0) {
		pr_perror("cannot open %s", path);
		return -1;
	}
	for (size_t i = 0; !ret && i < mm->n_vmas; i++) {
		const VmaEntry *vma = mm->vmas[i];

		/* shared memory is saved as objects (shmem.c); file shared, vdso, vvar,
		 * vsyscall: nothing of ours to save */
		if (vma->kind == VMA_KIND__VMA_ANON_PRIVATE ||
		    vma->kind == VMA_KIND__VMA_FILE_PRIVATE)
			ret = plan_private_vma(d, pagemap_fd, vma,
					       vec_at(&d->vmas, struct proc_vma, i));
	}
	close(pagemap_fd);
	return ret;
}

/* Span of addresses whose page map one batch reads in one go (64 KiB of entries). */
#define BATCH_SPAN_PAGES 8192

static bool batchable(const struct page_step *s)
{
	return !s->flags && !s->src.cow && !s->src.unchanged && s->src.readable &&
	       s->end - s->start <= READ_CHUNK;
}

/*
 * Steps [0, n) gathered: small runs scattered over a VMA (an incremental dump's dirty pages,
 * between runs left in the parent or zero, which are only written down) are copied with one
 * page-map read and one process_vm_readv() for all of them, instead of two system calls each.
 * Only when every page is the task's alone (see read_pages()); returns 1, having done nothing,
 * when one is not.
 */
static int copy_batch(struct dump_ctx *d, struct pagemap_writer *w, char *buf,
		      const struct page_step *steps, size_t n)
{
	static uint64_t pm[BATCH_SPAN_PAGES];
	static struct iovec remote[FILL_IOV_MAX];
	unsigned long base = steps[0].start, end = base;
	size_t span, total = 0, nr = 0;
	struct iovec local;
	ssize_t got;

	for (size_t i = 0; i < n; i++)
		if (!steps[i].flags)
			end = steps[i].end;
	span = (end - base) / PAGE_SIZE;
	if (pread(w->pagemap_fd, pm, span * 8, base / PAGE_SIZE * 8) != (ssize_t)(span * 8)) {
		pr_perror("cannot read the page map of %d", d->pid);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		size_t first = (steps[i].start - base) / PAGE_SIZE;
		size_t len = steps[i].end - steps[i].start;

		if (steps[i].flags)
			continue;
		for (size_t p = first; p < first + len / PAGE_SIZE; p++)
			if (!(pm[p] & PM_EXCLUSIVE))
				return 1;
		remote[nr++] = (struct iovec){(void *)steps[i].start, len};
		total += len;
	}
	local = (struct iovec){buf, total};
	got = process_vm_readv(d->pid, &local, 1, remote, nr, 0);
	if (got != (ssize_t)total) {
		pr_perror("cannot read %zu runs of memory at %#lx of %d", nr, base, d->pid);
		return -1;
	}
	for (size_t i = 0, off = 0; i < n; i++) {
		const struct page_step *s = &steps[i];
		size_t len = s->end - s->start;

		w->vma_start = s->vma_start;
		if (s->flags ? pm_emit(w, s->start, len / PAGE_SIZE, s->flags, NULL)
			     : pm_emit_chunk(w, s->start, buf + off, len / PAGE_SIZE,
					     s->src.elide_zero))
			return -1;
		off += s->flags ? 0 : len;
	}
	return 0;
}

/*
 * How many steps from i on go into one batch (0 or 1: step i is not for batching): runs to
 * copy, and between them runs only written down; the batch ends with a run to copy.
 */
static size_t batch_len(const struct vec *plan, size_t i)
{
	const struct page_step *first = vec_at(plan, struct page_step, i);
	size_t n = 0, last = 0, nr = 0, bytes = 0;

	if (!batchable(first))
		return 0;
	while (i + n < plan->len && nr < FILL_IOV_MAX) {
		const struct page_step *s = vec_at(plan, struct page_step, i + n);

		if (n && s->start < vec_at(plan, struct page_step, i + n - 1)->end)
			break;
		if (!s->flags) {
			if (!batchable(s) || bytes + (s->end - s->start) > READ_CHUNK ||
			    (s->end - first->start) / PAGE_SIZE > BATCH_SPAN_PAGES)
				break;
			bytes += s->end - s->start;
			nr++;
			last = n + 1;
		}
		n++;
	}
	return last;
}

/* Copy what the plan says and write the pagemap and pages images. */
int pages_execute(struct dump_ctx *d, MmEntry *mm)
{
	struct pagemap_writer w = {.runs = VEC_INIT(PagemapEntry), .parent_pagemap_fd = -1};
	char path[64];
	int pagemap_fd = -1, mem_fd = -1, ret = -1;
	char *buf = NULL;

	w.stat_written = &d->pages_written;
	w.stat_zero = &d->pages_zero;
	w.stat_cow = &d->pages_cow;
	snprintf(path, sizeof(path), "/proc/%d/pagemap", d->pid);
	pagemap_fd = open(path, O_RDONLY | O_CLOEXEC);
	w.pagemap_fd = pagemap_fd;
	if (d->parent) {
		snprintf(path, sizeof(path), "/proc/%d/pagemap", d->parent->pid);
		w.parent_pagemap_fd = open(path, O_RDONLY | O_CLOEXEC);
		if (w.parent_pagemap_fd < 0) {
			pr_perror("cannot open %s", path);
			goto out;
		}
	}
	snprintf(path, sizeof(path), "/proc/%d/mem", d->pid);
	mem_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (pagemap_fd < 0 || mem_fd < 0) {
		pr_perror("cannot open pagemap/mem of %d", d->pid);
		goto out;
	}
	if (posix_memalign((void **)&buf, PAGE_SIZE, READ_CHUNK)) {
		pr_err("out of memory");
		goto out;
	}
	if (lz4_start(d, &w))
		goto out;
	w.pages = img_open_write(d->dirfd, IMG_PAGES, d->pid);
	if (!w.pages)
		goto out;
	/* the final round of a pre-copy, frozen: its few MiB straight to the disk */
	if (d->tree->prev_dirfd >= 0 && !d->tree->pre_dump)
		img_set_direct(w.pages);
	pr_debug("task %d: %zu runs planned", d->pid, d->page_plan.len);
	for (size_t i = 0; i < d->page_plan.len; i++) {
		struct page_step *s = vec_at(&d->page_plan, struct page_step, i);
		size_t n = batch_len(&d->page_plan, i);

		if (n > 1) {
			int r = copy_batch(d, &w, buf, s, n);

			if (r < 0)
				goto out;
			if (!r) {
				i += n - 1;
				continue;
			}
		}
		w.vma_start = s->vma_start;
		s->src.mem_fd = mem_fd;
		if (s->flags
			    ? pm_emit(&w, s->start, (s->end - s->start) / PAGE_SIZE, s->flags, NULL)
			    : copy_range(d, &w, buf, &s->src, s->start, s->end))
			goto out;
	}
	d->bytes_written = img_data_off(w.pages);
	ret = write_pagemap(d, &w, IMG_PAGEMAP, d->pid);
out:
	if (img_close(w.pages))
		ret = -1;
	snprintf(path, sizeof(path), "task %d", d->pid);
	lz4_finish(&w, path);
	vec_free(&w.runs);
	vec_free(&d->page_plan);
	free(buf);
	if (pagemap_fd >= 0)
		close(pagemap_fd);
	if (mem_fd >= 0)
		close(mem_fd);
	if (w.parent_pagemap_fd >= 0)
		close(w.parent_pagemap_fd);
	return ret;
}

/* The content of a shared memory object, as runs of file offsets. */
int pages_dump_shmem(struct dump_ctx *d, int fd, uint64_t size, unsigned int id)
{
	struct pagemap_writer w = {.runs = VEC_INIT(PagemapEntry), .parent_pagemap_fd = -1};
	uint64_t written = 0, zero = 0, cow = 0;
	char *buf = NULL;
	int ret = -1;

	w.stat_written = &written;
	w.stat_zero = &zero;
	w.stat_cow = &cow;
	if (posix_memalign((void **)&buf, PAGE_SIZE, READ_CHUNK))
		return -1;
	if (!lz4_start(d, &w))
		w.pages = img_open_write(d->dirfd, IMG_SHM_PAGES, id);
	if (w.pages && !dump_file_content(d, &w, fd, size, buf))
		ret = write_pagemap(d, &w, IMG_SHM_PAGEMAP, id);
	d->pages_written += written;
	if (img_close(w.pages))
		ret = -1;
	lz4_finish(&w, "shared memory");
	vec_free(&w.runs);
	free(buf);
	return ret;
}

static const VmaEntry *vma_covering(const MmEntry *mm, uint64_t start, uint64_t end)
{
	size_t lo = 0, hi = mm->n_vmas;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const VmaEntry *v = mm->vmas[mid];

		if (start >= v->end)
			lo = mid + 1;
		else if (start < v->start)
			hi = mid;
		else
			return end <= v->end ? v : NULL;
	}
	return NULL;
}

/* One parent round's pagemap and pages of a task. */
struct pm_level {
	int dirfd;
	PagemapEntry **runs;
	size_t n;
	int pages_fd; /* a helper: the task reads from it */
	uint64_t data_size;
};

#define MAX_CHAIN 64

static void level_free(struct pm_level *l)
{
	for (size_t i = 0; i < l->n; i++)
		pagemap_entry__free_unpacked(l->runs[i], NULL);
	free(l->runs);
	if (l->dirfd >= 0)
		close(l->dirfd);
}

static int level_load(struct restore_ctx *r, int parent_of, struct pm_level *l)
{
	struct cr_img *img, *pages;
	ProtobufCMessage *msg;
	uint64_t prev_end = 0;
	size_t cap = 0;
	int n;

	l->dirfd = openat(parent_of, "parent", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (l->dirfd < 0) {
		pr_perror("task %d has pages in the parent images, but %s/parent cannot be opened",
			  r->pid, parent_of == r->dirfd ? r->opts->images_dir : "its parent");
		return -1;
	}
	img = img_open_read(l->dirfd, IMG_PAGEMAP, r->pid);
	if (!img)
		return -1;
	pages = img_open_read(l->dirfd, IMG_PAGES, r->pid);
	if (!pages || img_read_msg(img, &pagemap_head__descriptor, &msg) != 1) {
		img_close(pages);
		img_close(img);
		return -1;
	}
	l->data_size = img_size(pages) - IMG_PAGES_HDR_SIZE;
	n = ((PagemapHead *)msg)->pages_size == l->data_size ? 1 : -1;
	protobuf_c_message_free_unpacked(msg, NULL);
	if (n < 0)
		pr_err("%s: size does not match its pagemap", img_path(pages));
	while (n > 0 && (n = img_read_msg(img, &pagemap_entry__descriptor, &msg)) == 1) {
		PagemapEntry *e = (PagemapEntry *)msg;
		uint64_t len = (uint64_t)e->nr_pages * PAGE_SIZE;

		if (l->n == cap) {
			PagemapEntry **nr = realloc(l->runs, (cap = cap * 2 + 64) * sizeof(*nr));

			if (!nr) {
				protobuf_c_message_free_unpacked(msg, NULL);
				n = -1;
				break;
			}
			l->runs = nr;
		}
		l->runs[l->n++] = e;
		if (!e->nr_pages || e->nr_pages > MAX_RUN_PAGES || e->vaddr % PAGE_SIZE ||
		    e->vaddr < prev_end || e->flags == PAGEMAP_FLAGS__PE_COW ||
		    ((e->flags & PAGEMAP_FLAGS__PE_PRESENT) && !pages_run_valid(e, l->data_size))) {
			pr_err("%s: run at %#llx is malformed", img_path(img),
			       (unsigned long long)e->vaddr);
			n = -1;
		}
		prev_end = e->vaddr + len;
	}
	if (!n) {
		l->pages_fd = dup(img_fd(pages));
		if (l->pages_fd < 0 || (l->pages_fd = restore_add_helper(r->tree, l->pages_fd)) < 0)
			n = -1;
	}
	img_close(pages);
	img_close(img);
	return n < 0 ? -1 : 0;
}

static int seg_add(struct restore_ctx *r, uint64_t vaddr, uint64_t len, int fd, uint64_t off)
{
	struct page_seg *s =
		r->segs.len ? vec_at(&r->segs, struct page_seg, r->segs.len - 1) : NULL;

	if (s && !s->clen && s->fd == fd && s->vaddr + s->len == vaddr && s->off + s->len == off &&
	    s->len + len <= FILL_BYTES_MAX) {
		s->len += len;
		return 0;
	}
	s = vec_push(&r->segs);
	if (!s)
		return -1;
	s->vaddr = vaddr;
	s->len = len;
	s->fd = fd;
	s->off = off;
	return 0;
}

/* [vaddr, vaddr + len) of the lz4 block e, whose data is in fd. */
static int seg_add_lz4(struct restore_ctx *r, uint64_t vaddr, uint64_t len, int fd,
		       const PagemapEntry *e)
{
	struct page_seg *s = vec_push(&r->segs);

	if (!s)
		return -1;
	s->vaddr = vaddr;
	s->len = len;
	s->fd = fd;
	s->off = e->off;
	s->clen = e->clen;
	s->blen = e->nr_pages * PAGE_SIZE;
	s->skip = vaddr - e->vaddr;
	return 0;
}

/* [a, b) is in-parent at depth: find where each part of it really is. */
static int resolve(struct restore_ctx *r, struct pm_level *lv, int depth, uint64_t a, uint64_t b)
{
	struct pm_level *l;
	size_t lo = 0, hi;

	if (depth >= MAX_CHAIN) {
		pr_err("task %d: the chain of parent images is deeper than %d", r->pid, MAX_CHAIN);
		return -1;
	}
	l = &lv[depth];
	if (!l->runs && l->dirfd < 0 && level_load(r, depth ? lv[depth - 1].dirfd : r->dirfd, l))
		return -1;
	hi = l->n;
	while (lo < hi) { /* first run ending after a */
		size_t mid = (lo + hi) / 2;

		if (l->runs[mid]->vaddr + (uint64_t)l->runs[mid]->nr_pages * PAGE_SIZE <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	while (a < b) {
		const PagemapEntry *e = lo < l->n ? l->runs[lo++] : NULL;
		uint64_t s, t;

		if (!e || e->vaddr > a) {
			pr_err("task %d: page %#llx is in-parent but the parent images lack it",
			       r->pid, (unsigned long long)a);
			return -1;
		}
		s = a;
		t = min_t(uint64_t, b, e->vaddr + (uint64_t)e->nr_pages * PAGE_SIZE);
		if (e->flags & PAGEMAP_FLAGS__PE_LZ4) {
			if (seg_add_lz4(r, s, t - s, l->pages_fd, e))
				return -1;
		} else if (e->flags == PAGEMAP_FLAGS__PE_PRESENT) {
			if (seg_add(r, s, t - s, l->pages_fd, e->off + (s - e->vaddr)))
				return -1;
		} else if (e->flags == PAGEMAP_FLAGS__PE_PARENT) {
			if (resolve(r, lv, depth + 1, s, t))
				return -1;
		} /* PE_ZERO: fresh zero pages */
		a = t;
	}
	return 0;
}

/* Every run with data of its own, wherever in the chain of images it is. */
int pages_resolve(struct restore_ctx *r)
{
	struct pm_level lv[MAX_CHAIN];
	int ret = 0;

	for (int i = 0; i < MAX_CHAIN; i++)
		lv[i] = (struct pm_level){.dirfd = -1, .pages_fd = -1};
	r->segs = (struct vec){.elem = sizeof(struct page_seg)};
	for (size_t i = 0; !ret && i < r->nr_pagemap; i++) {
		const PagemapEntry *e = r->pagemap[i];
		uint64_t len = (uint64_t)e->nr_pages * PAGE_SIZE;

		if (e->flags & PAGEMAP_FLAGS__PE_LZ4)
			ret = seg_add_lz4(r, e->vaddr, len, r->pages_fd, e);
		else if (e->flags == PAGEMAP_FLAGS__PE_PRESENT)
			ret = seg_add(r, e->vaddr, len, r->pages_fd, e->off);
		else if (e->flags == PAGEMAP_FLAGS__PE_PARENT)
			ret = resolve(r, lv, 0, e->vaddr, e->vaddr + len);
	}
	for (int i = 0; i < MAX_CHAIN; i++)
		level_free(&lv[i]);
	return ret;
}

/* Load the pagemap and check every run against the VMAs and the pages image. */
int pages_restore_prepare(struct restore_ctx *r)
{
	struct cr_img *img = img_open_read(r->dirfd, IMG_PAGEMAP, r->pid), *pages = NULL;
	ProtobufCMessage *msg;
	uint64_t data_size, prev_end = 0;
	int ret = -1;

	if (!img)
		return -1;
	if (img_read_msg(img, &pagemap_head__descriptor, &msg) != 1) {
		if (!msg)
			pr_err("%s: missing pagemap head", img_path(img));
		goto out;
	}
	r->pagemap_head = (PagemapHead *)msg;
	if (r->pagemap_head->nr_runs > (1u << 28)) {
		pr_err("%s: implausible run count %u", img_path(img), r->pagemap_head->nr_runs);
		goto out;
	}
	r->pagemap = calloc(r->pagemap_head->nr_runs + 1, sizeof(*r->pagemap));
	if (!r->pagemap) {
		pr_err("out of memory");
		goto out;
	}
	pages = img_open_read(r->dirfd, IMG_PAGES, r->pid);
	if (!pages)
		goto out;
	data_size = img_size(pages) - IMG_PAGES_HDR_SIZE;
	if (data_size != r->pagemap_head->pages_size) {
		pr_err("%s: holds %llu bytes of pages, the pagemap expects %llu", img_path(pages),
		       (unsigned long long)data_size,
		       (unsigned long long)r->pagemap_head->pages_size);
		goto out;
	}
	for (;;) {
		int n = img_read_msg(img, &pagemap_entry__descriptor, &msg);
		PagemapEntry *e = (PagemapEntry *)msg;
		uint64_t end;

		if (n < 0)
			goto out;
		if (n == 0)
			break;
		if (r->nr_pagemap == r->pagemap_head->nr_runs) {
			pr_err("%s: more runs than the head's %u", img_path(img),
			       r->pagemap_head->nr_runs);
			protobuf_c_message_free_unpacked(msg, NULL);
			goto out;
		}
		r->pagemap[r->nr_pagemap++] = e;
		end = e->vaddr + (uint64_t)e->nr_pages * PAGE_SIZE;
		if (!e->nr_pages || e->nr_pages > MAX_RUN_PAGES || e->vaddr % PAGE_SIZE ||
		    end < e->vaddr || e->vaddr < prev_end) {
			pr_err("%s: run %zu at %#llx (+%u pages) is malformed or out of order",
			       img_path(img), r->nr_pagemap - 1, (unsigned long long)e->vaddr,
			       e->nr_pages);
			goto out;
		}
		prev_end = end;
		const VmaEntry *v = vma_covering(r->mm, e->vaddr, end);

		if (!v || v->kind == VMA_KIND__VMA_FILE_SHARED || v->kind >= VMA_KIND__VMA_VDSO) {
			pr_err("%s: run at %#llx (+%u pages) lies outside any dumped VMA",
			       img_path(img), (unsigned long long)e->vaddr, e->nr_pages);
			goto out;
		}
		if (e->flags == PAGEMAP_FLAGS__PE_ZERO)
			continue;
		if (e->flags == PAGEMAP_FLAGS__PE_COW) {
			if (!v->inherit) {
				pr_err("%s: run at %#llx is shared with a parent in a VMA it does "
				       "not inherit",
				       img_path(img), (unsigned long long)e->vaddr);
				goto out;
			}
			continue;
		}
		if (e->flags == PAGEMAP_FLAGS__PE_PARENT)
			continue; /* resolved through the parent images: pages_resolve() */
		if (!pages_run_valid(e, data_size)) {
			pr_err("%s: run at %#llx has bad flags %#x or data beyond the pages image",
			       img_path(img), (unsigned long long)e->vaddr, e->flags);
			goto out;
		}
	}
	if (r->nr_pagemap != r->pagemap_head->nr_runs) {
		pr_err("%s: truncated: %zu of %u runs", img_path(img), r->nr_pagemap,
		       r->pagemap_head->nr_runs);
		goto out;
	}
	r->pages_fd = dup(img_fd(pages));
	if (r->pages_fd < 0 || (r->pages_fd = restore_add_helper(r->tree, r->pages_fd)) < 0) {
		pr_perror("cannot keep the pages image open");
		goto out;
	}
	ret = pages_resolve(r);
out:
	img_close(pages);
	img_close(img);
	return ret;
}

/* True when any pagemap run falls in [start, end). */
bool pages_in_range(const struct restore_ctx *r, uint64_t start, uint64_t end)
{
	size_t lo = 0, hi = r->nr_pagemap;

	while (lo < hi) { /* first run ending after start */
		size_t mid = (lo + hi) / 2;
		const PagemapEntry *e = r->pagemap[mid];

		if (e->vaddr + (uint64_t)e->nr_pages * PAGE_SIZE <= start)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < r->nr_pagemap && r->pagemap[lo]->vaddr < end;
}

/* Start one preadv of image data in the task: its result is taken by pages_fill_wait(). */
static int fill_start(struct restore_ctx *r, int fd, const struct iovec *iov, int n, uint64_t off,
		      size_t bytes)
{
	if (rsys_poke(&r->rs, r->rs.scratch, iov, n * sizeof(*iov)) ||
	    rsys_start(&r->rs, SYS_preadv, fd, r->rs.scratch, n, IMG_PAGES_HDR_SIZE + off, 0, 0))
		return -1;
	r->fill_pending = true;
	r->fill_bytes = bytes;
	r->fill_off = off;
	return 0;
}

int pages_fill_wait(struct restore_ctx *r)
{
	long ret;

	if (!r->fill_pending)
		return 0;
	r->fill_pending = false;
	ret = rsys_finish(&r->rs);
	if (ret != (long)r->fill_bytes) {
		pr_err("restoring pages of %d: read %ld of %zu bytes at offset %llu of a pages "
		       "image%s%s",
		       r->pid, ret, r->fill_bytes, (unsigned long long)r->fill_off,
		       ret < 0 ? ": " : "", ret < 0 ? strerror(-ret) : "");
		return -1;
	}
	return 0;
}

static int fill_batch(struct restore_ctx *r, int fd, struct iovec *iov, int n, uint64_t off,
		      size_t bytes)
{
	return fill_start(r, fd, iov, n, off, bytes) || pages_fill_wait(r) ? -1 : 0;
}

bool pages_run_valid(const PagemapEntry *e, uint64_t data_size)
{
	uint64_t len = (uint64_t)e->nr_pages * PAGE_SIZE;

	if (!e->has_off || e->off > data_size)
		return false;
	if (e->flags == PAGEMAP_FLAGS__PE_PRESENT)
		return e->off % PAGE_SIZE == 0 && len <= data_size - e->off;
	return e->flags == (PAGEMAP_FLAGS__PE_PRESENT | PAGEMAP_FLAGS__PE_LZ4) && e->has_clen &&
	       e->clen && e->nr_pages <= LZ4_MAX_BLOCK_PAGES && e->clen <= LZ4_COMPRESSBOUND(len) &&
	       e->clen <= data_size - e->off;
}

int pages_read_run(int pages_fd, const PagemapEntry *e, void *out)
{
	size_t len = (size_t)e->nr_pages * PAGE_SIZE;
	char *in;
	int got = -1;

	if (!(e->flags & PAGEMAP_FLAGS__PE_LZ4))
		return pread(pages_fd, out, len, IMG_PAGES_HDR_SIZE + e->off) == (ssize_t)len ? 0
											      : -1;
	in = malloc(e->clen);
	if (in && pread(pages_fd, in, e->clen, IMG_PAGES_HDR_SIZE + e->off) == (ssize_t)e->clen)
		got = LZ4_decompress_safe(in, out, e->clen, len);
	free(in);
	if (got == (int)len)
		return 0;
	errno = EIO; /* short, or not lz4 data */
	return -1;
}

#define LZ4_WINDOW (4UL << 20) /* compressed bytes read from an image at once */
#define LZ4_OUT (4UL << 20)    /* decompressed bytes written into the task at once */

/* lz4 blocks are decompressed by crest and written into the task, many per syscall. */
struct lz4_fill {
	struct restore_ctx *r;
	char *in, *out;
	int win_fd;
	uint64_t win_off, win_len;
	size_t used, bytes;
	int n;
	struct iovec local[FILL_IOV_MAX], remote[FILL_IOV_MAX];
	uint64_t total, ns;
};

static int lz4_flush(struct lz4_fill *f)
{
	ssize_t got;

	if (!f->n)
		return 0;
	got = process_vm_writev(f->r->pid, f->local, f->n, f->remote, f->n, 0);
	if (got != (ssize_t)f->bytes) {
		pr_err("restoring pages of %d: wrote %zd of %zu bytes%s%s", f->r->pid, got,
		       f->bytes, got < 0 ? ": " : "", got < 0 ? strerror(errno) : "");
		return -1;
	}
	f->total += f->bytes;
	f->n = 0;
	f->used = f->bytes = 0;
	return 0;
}

/* Have the compressed bytes of s in the window: blocks are read in large sequential chunks. */
static const char *lz4_window(struct lz4_fill *f, const struct page_seg *s)
{
	if (s->fd != f->win_fd || s->off < f->win_off ||
	    s->off + s->clen > f->win_off + f->win_len) {
		ssize_t n = pread(s->fd, f->in, LZ4_WINDOW, IMG_PAGES_HDR_SIZE + s->off);

		if (n < (ssize_t)s->clen) {
			pr_err("restoring pages of %d: cannot read %u bytes at offset %llu of a "
			       "pages image%s%s",
			       f->r->pid, s->clen, (unsigned long long)s->off, n < 0 ? ": " : "",
			       n < 0 ? strerror(errno) : "");
			return NULL;
		}
		f->win_fd = s->fd;
		f->win_off = s->off;
		f->win_len = n;
	}
	return f->in + (s->off - f->win_off);
}

static int pages_restore_lz4(struct restore_ctx *r)
{
	struct lz4_fill *f = NULL;
	int ret = -1;

	for (size_t i = 0; i < r->segs.len; i++) {
		const struct page_seg *s = vec_at(&r->segs, struct page_seg, i);
		const char *src;
		uint64_t t0;
		int got;

		if (!s->clen)
			continue;
		if (!f) {
			f = calloc(1, sizeof(*f));
			if (!f || !(f->in = malloc(LZ4_WINDOW)) || !(f->out = malloc(LZ4_OUT))) {
				pr_err("out of memory");
				goto out;
			}
			f->r = r;
			f->win_fd = -1;
		}
		if ((f->n == FILL_IOV_MAX || f->used + s->blen > LZ4_OUT) && lz4_flush(f))
			goto out;
		src = lz4_window(f, s);
		if (!src)
			goto out;
		t0 = now_ns(CLOCK_MONOTONIC);
		got = LZ4_decompress_safe(src, f->out + f->used, s->clen, s->blen);
		f->ns += now_ns(CLOCK_MONOTONIC) - t0;
		if (got != (int)s->blen) {
			pr_err("restoring pages of %d: the lz4 block at offset %llu of a pages "
			       "image is corrupt",
			       r->pid, (unsigned long long)s->off);
			goto out;
		}
		f->local[f->n] = (struct iovec){f->out + f->used + s->skip, s->len};
		f->remote[f->n] = (struct iovec){(void *)(uintptr_t)s->vaddr, s->len};
		f->n++;
		f->bytes += s->len;
		f->used += s->blen;
	}
	ret = f ? lz4_flush(f) : 0;
	if (f && !ret)
		pr_debug("task %d: %.1f MiB of pages from lz4 blocks, decompressed in %.1f ms",
			 r->pid, f->total / 1048576.0, f->ns / 1e6);
out:
	if (f) {
		free(f->in);
		free(f->out);
		free(f);
	}
	return ret;
}

/*
 * Batches of image data smaller than this (the scattered runs of an incremental chain, one
 * page each, typically) are read by crest and written into the task with one
 * process_vm_writev() for up to 1024 of them: a remote preadv each cost a ptrace round trip
 * (34000 of them, 5 s, to restore the 1 GiB pre-dump benchmark's chain).
 */
#define SCATTER_MAX (64UL << 10)

static int scatter_batch(struct lz4_fill **pf, struct restore_ctx *r, int fd,
			 const struct iovec *iov, int n, uint64_t off, size_t bytes)
{
	struct lz4_fill *f = *pf;
	char *p;

	if (!f) {
		f = calloc(1, sizeof(*f));
		if (!f || !(f->out = malloc(LZ4_OUT))) {
			free(f);
			pr_err("out of memory");
			return -1;
		}
		f->r = r;
		*pf = f;
	}
	if ((f->n + n > FILL_IOV_MAX || f->used + bytes > LZ4_OUT) && lz4_flush(f))
		return -1;
	p = f->out + f->used;
	if (pread(fd, p, bytes, IMG_PAGES_HDR_SIZE + off) != (ssize_t)bytes) {
		pr_err("restoring pages of %d: cannot read %zu bytes at offset %llu of a pages "
		       "image",
		       r->pid, bytes, (unsigned long long)off);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		f->local[f->n] = (struct iovec){p, iov[i].iov_len};
		f->remote[f->n] = iov[i];
		f->n++;
		p += iov[i].iov_len;
	}
	f->used += bytes;
	f->bytes += bytes;
	return 0;
}

static int flush_batch(struct lz4_fill **scatter, struct restore_ctx *r, int fd, struct iovec *iov,
		       int n, uint64_t off, size_t bytes)
{
	if (bytes < SCATTER_MAX)
		return scatter_batch(scatter, r, fd, iov, n, off, bytes);
	return fill_batch(r, fd, iov, n, off, bytes);
}

/*
 * Gaps in an image's data up to JUNK_GAP_MAX are read into the scratch memory (thrown away)
 * rather than ending a batch: batch by gap, 1 GiB came from a 6-image chain in ~30000 reads
 * of a few pages each; read through, in a few dozen.
 */
bool pages_batch_add(struct fill_batch *b, const struct page_seg *s, uint64_t junk, size_t junk_len)
{
	uint64_t gap = b->n ? s->off - b->next_off : 0;
	size_t need = 1 + (junk_len ? (gap + junk_len - 1) / junk_len : 0);

	if (b->n &&
	    (s->fd != b->fd || s->off < b->next_off || (gap && !junk_len) || gap > JUNK_GAP_MAX ||
	     b->n + need > FILL_IOV_MAX || b->bytes + gap + s->len > FILL_BYTES_MAX))
		return false;
	if (!b->n) {
		b->fd = s->fd;
		b->off = s->off;
		b->bytes = 0;
	}
	while (gap) {
		size_t piece = gap < junk_len ? gap : junk_len;

		b->iov[b->n++] = (struct iovec){(void *)(uintptr_t)junk, piece};
		b->bytes += piece;
		gap -= piece;
	}
	b->iov[b->n++] = (struct iovec){(void *)(uintptr_t)s->vaddr, s->len};
	b->bytes += s->len;
	b->next_off = s->off + s->len;
	return true;
}

/* The last batch, started and left to run (on the other CPUs) while crest restores others. */
static int fill_start_async(struct restore_ctx *r, const struct fill_batch *b)
{
	struct restore_tree *t = r->tree;

	if (t->pinned && sched_setaffinity(r->pid, sizeof(t->fill_cpus), &t->fill_cpus))
		pr_warn("cannot move %d for its fill: %s", r->pid, strerror(errno));
	return fill_start(r, b->fd, b->iov, b->n, b->off, b->bytes);
}

/*
 * The task reads its own pages: one preadv per batch of image data, image by image (each
 * page comes from one image only, so the order does not matter).  With r->fill_async, the
 * last batch is only started (pages_fill_wait() takes its result).
 */
int pages_restore(struct restore_ctx *r)
{
	static struct fill_batch batches[2];
	struct fill_batch *held = NULL, *b = &batches[0];
	struct lz4_fill *scatter = NULL;
	int done[MAX_CHAIN + 2];
	size_t nr_done = 0;
	uint64_t junk = r->rs.scratch + sizeof(b->iov);
	size_t junk_len = r->rs.scratch_len > sizeof(b->iov) + PAGE_SIZE
				  ? (r->rs.scratch_len - sizeof(b->iov)) & ~(PAGE_SIZE - 1)
				  : 0;
	int ret = -1;

	if (r->rs.scratch_len < sizeof(b->iov)) {
		pr_err("scratch memory too small");
		return -1;
	}
	if (lazy_take(r))
		return -1;
	for (size_t first = 0; first < r->segs.len; first++) {
		int fd = vec_at(&r->segs, struct page_seg, first)->fd;
		size_t k;

		/* each image once: at the first segment that comes from it */
		for (k = 0; k < nr_done && done[k] != fd; k++)
			;
		if (k < nr_done)
			continue;
		if (nr_done == ARRAY_SIZE(done)) {
			pr_err("task %d: pages from more than %zu images", r->pid,
			       ARRAY_SIZE(done));
			goto out;
		}
		done[nr_done++] = fd;
		b->n = 0;
		for (size_t i = first; i <= r->segs.len; i++) {
			const struct page_seg *s =
				i < r->segs.len ? vec_at(&r->segs, struct page_seg, i) : NULL;

			if (s && (s->clen || s->fd != fd))
				continue; /* lz4: pages_restore_lz4() */
			if (s && pages_batch_add(b, s, junk, junk_len))
				continue;
			/* a batch is complete: the one before it is written, this one held */
			if (held && flush_batch(&scatter, r, held->fd, held->iov, held->n,
						held->off, held->bytes))
				goto out;
			held = b->n ? b : NULL;
			b = &batches[held == &batches[0]];
			b->n = 0;
			if (s)
				pages_batch_add(b, s, junk, junk_len);
		}
	}
	if (held && (!r->fill_async || held->bytes < SCATTER_MAX)) {
		if (flush_batch(&scatter, r, held->fd, held->iov, held->n, held->off, held->bytes))
			goto out;
		held = NULL;
	}
	if ((scatter && lz4_flush(scatter)) || pages_restore_lz4(r) ||
	    (held && fill_start_async(r, held)))
		goto out;
	ret = 0;
out:
	if (scatter) {
		free(scatter->out);
		free(scatter);
	}
	return ret;
}

/* True when a run with data of this task's own falls in [start, end). */
bool pages_present_in(const struct restore_ctx *r, uint64_t start, uint64_t end)
{
	for (size_t i = 0; i < r->nr_pagemap; i++) {
		const PagemapEntry *e = r->pagemap[i];

		if (e->vaddr >= end)
			break;
		if ((e->flags & (PAGEMAP_FLAGS__PE_PRESENT | PAGEMAP_FLAGS__PE_PARENT)) &&
		    e->vaddr + (uint64_t)e->nr_pages * PAGE_SIZE > start)
			return true;
	}
	return false;
}

/*
 * In a VMA inherited from the parent, drop every page that is not shared with the parent:
 * those the task did not have read as zero again (anonymous) or as the file (private file
 * mapping), and those it has from its own image are then written into fresh pages instead of
 * first being copied from the parent's by a copy-on-write fault.
 */
int pages_drop_inherited(struct restore_ctx *r)
{
	size_t k = 0;

	for (size_t i = 0; i < r->mm->n_vmas; i++) {
		const VmaEntry *v = r->mm->vmas[i];
		uint64_t pos = v->start;

		if (!v->inherit || (v->kind != VMA_KIND__VMA_ANON_PRIVATE &&
				    v->kind != VMA_KIND__VMA_FILE_PRIVATE))
			continue;
		while (k < r->nr_pagemap && r->pagemap[k]->vaddr < v->start)
			k++;
		for (;; k++) {
			const PagemapEntry *e = k < r->nr_pagemap ? r->pagemap[k] : NULL;
			bool cow = e && e->vaddr < v->end && e->flags == PAGEMAP_FLAGS__PE_COW;
			uint64_t until = !e || e->vaddr >= v->end ? v->end : cow ? e->vaddr : pos;

			/*
			 * Where the parent has no pages (its pagemap is all that its restore
			 * put into its private memory before the fork) there is nothing to drop:
			 * a remote call saved, for most of the VMAs (libraries) of a worker.
			 */
			if (until > pos && pages_in_range(r->parent, pos, until) &&
			    rcheck(r, "madvise(MADV_DONTNEED)",
				   rsys3(&r->rs, SYS_madvise, pos, until - pos, MADV_DONTNEED)))
				return -1;
			if (!e || e->vaddr >= v->end)
				break;
			if (cow)
				pos = e->vaddr + (uint64_t)e->nr_pages * PAGE_SIZE;
		}
	}
	return 0;
}
