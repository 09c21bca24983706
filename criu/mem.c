// SPDX-License-Identifier: MIT
/*
 * The address space: VMAs and mm fields.  Dump classifies every VMA from smaps; restore,
 * driving the restored task by remote syscalls, throws away everything it inherited from
 * crest except the vdso family (whose `syscall` instruction we run on), moves those to their
 * dumped addresses, maps every dumped VMA, lets pages.c fill them, then applies the final
 * protections, madvise state and mm fields.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/prctl.h>

#include "image.h"
#include "internal.h"
#include "log.h"

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41 /* Linux 5.17 */
#define PR_SET_VMA_ANON_NAME 0
#endif
#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif

static const struct {
	unsigned int vmf, madv_bit;
} madv_map[] = {
	{VMF_DONTCOPY, VMA_MADV__MADV_BIT_DONTFORK},
	{VMF_WIPEONFORK, VMA_MADV__MADV_BIT_WIPEONFORK},
	{VMF_HUGEPAGE, VMA_MADV__MADV_BIT_HUGEPAGE},
	{VMF_NOHUGEPAGE, VMA_MADV__MADV_BIT_NOHUGEPAGE},
	{VMF_MERGEABLE, VMA_MADV__MADV_BIT_MERGEABLE},
	{VMF_DONTDUMP, VMA_MADV__MADV_BIT_DONTDUMP},
	{VMF_LOCKED, VMA_MADV__MADV_BIT_LOCKED},
	{VMF_LOCKONFAULT, VMA_MADV__MADV_BIT_LOCKONFAULT},
	{VMF_GROWSDOWN, VMA_MADV__MADV_BIT_GROWSDOWN},
	{VMF_SEQREAD, VMA_MADV__MADV_BIT_SEQUENTIAL},
	{VMF_RANDREAD, VMA_MADV__MADV_BIT_RANDOM},
};

const struct proc_vma *vma_find_special(const struct vec *vmas, const char *name)
{
	for (size_t i = 0; i < vmas->len; i++) {
		const struct proc_vma *v = vec_at(vmas, struct proc_vma, i);

		if (!strcmp(v->path, name))
			return v;
	}
	return NULL;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && !strcmp(s + n - m, suffix);
}

/* Decide how a VMA is saved; refuse clearly what is not supported yet. */
static int vma_classify(pid_t pid, const struct proc_vma *v, VmaKind *kind, bool tracked)
{
	const char *p = v->path;

	if (!strcmp(p, "[vdso]"))
		*kind = VMA_KIND__VMA_VDSO;
	else if (!strcmp(p, "[vvar]"))
		*kind = VMA_KIND__VMA_VVAR;
	else if (!strcmp(p, "[vvar_vclock]"))
		*kind = VMA_KIND__VMA_VVAR_VCLOCK;
	else if (!strcmp(p, "[vsyscall]"))
		*kind = VMA_KIND__VMA_VSYSCALL;
	else if (!p[0] || !strcmp(p, "[heap]") || !strcmp(p, "[stack]") ||
		 !strncmp(p, "[anon:", 6) || !strncmp(p, "[anon_shmem:", 12))
		*kind = v->shared ? VMA_KIND__VMA_ANON_SHARED : VMA_KIND__VMA_ANON_PRIVATE;
	else if (v->shared && !strcmp(p, "/dev/zero (deleted)"))
		*kind = VMA_KIND__VMA_ANON_SHARED;
	else if (!strncmp(p, "/memfd:", 7) && ends_with(p, " (deleted)"))
		*kind = v->shared ? VMA_KIND__VMA_FILE_SHARED : VMA_KIND__VMA_FILE_PRIVATE;
	else if (v->vmflags & (VMF_IO | VMF_PFNMAP))
		goto unsupported;
	else if (!strncmp(p, "/SYSV", 5) && ends_with(p, " (deleted)") && v->shared && !v->pgoff)
		*kind = VMA_KIND__VMA_SYSV_SHM; /* the inode number is the segment's id */
	else if (ends_with(p, " (deleted)") && !ghost_is_deleted(p))
		goto unsupported;
	else if (p[0] == '/' && strncmp(p, "/SYSV", 5)) /* deleted files: files-ghost.c */
		*kind = v->shared ? VMA_KIND__VMA_FILE_SHARED : VMA_KIND__VMA_FILE_PRIVATE;
	else
		goto unsupported;
	/* write-protect registered by our own tracking is fine; anything else is the task's */
	if ((v->vmflags & VMF_UFFD_MISSING) || ((v->vmflags & VMF_UFFD_WP) && !tracked)) {
		pr_err("task %d: memory %lx-%lx is registered with userfaultfd: not supported yet",
		       pid, v->start, v->end);
		return -1;
	}
	return 0;
unsupported:
	pr_err("task %d: mapping %lx-%lx %s: %s not supported yet", pid, v->start, v->end, p,
	       ends_with(p, " (deleted)") ? "deleted or memfd file," : "this kind of mapping is");
	return -1;
}

static int vma_fill_file(pid_t pid, const struct proc_vma *v, VmaEntry *e)
{
	char path[96];
	struct stat st;

	/* map_files gives the very file mapped, even if its name now points elsewhere. */
	snprintf(path, sizeof(path), "/proc/%d/map_files/%lx-%lx", pid, v->start, v->end);
	if (stat(path, &st)) {
		pr_perror("cannot stat %s (%s)", path, v->path);
		return -1;
	}
	e->path = strdup(v->path);
	if (!e->path)
		return -1;
	e->has_pgoff = true;
	e->pgoff = v->pgoff;
	e->has_dev = e->has_ino = e->has_file_size = true;
	e->dev = st.st_dev;
	e->ino = st.st_ino;
	e->file_size = st.st_size;
	e->has_may_write = true;
	e->may_write = v->shared && (v->vmflags & VMF_MAYWRITE);
	return 0;
}

/* A deleted file: saved once as a ghost (files-ghost.c), mapped from it on restore. */
static int vma_fill_ghost(struct dump_ctx *d, const struct proc_vma *v, VmaEntry *e)
{
	char path[96], what[96];

	if (!ghost_is_deleted(v->path))
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/map_files/%lx-%lx", d->pid, v->start, v->end);
	snprintf(what, sizeof(what), "task %d: mapping %lx-%lx", d->pid, v->start, v->end);
	e->has_ghost_id = true;
	return ghost_dump(d, path, v->path, what, &e->ghost_id);
}

static int mm_dump_fields(struct dump_ctx *d, MmEntry *mm)
{
	char path[64], exe[4096];
	size_t len;
	char *auxv;
	long brk;

	mm->start_code = d->stat.start_code;
	mm->end_code = d->stat.end_code;
	mm->start_data = d->stat.start_data;
	mm->end_data = d->stat.end_data;
	mm->start_brk = d->stat.start_brk;
	mm->start_stack = d->stat.start_stack;
	mm->arg_start = d->stat.arg_start;
	mm->arg_end = d->stat.arg_end;
	mm->env_start = d->stat.env_start;
	mm->env_end = d->stat.env_end;
	/* /proc shows only start_brk: the task itself tells where its break is. */
	brk = rsys1(&d->rs, SYS_brk, 0);
	if (brk <= 0) {
		pr_err("cannot read the program break of %d", d->pid);
		return -1;
	}
	mm->brk = brk;

	snprintf(path, sizeof(path), "/proc/%d/auxv", d->pid);
	auxv = read_file_at(AT_FDCWD, path, &len);
	if (!auxv || len % sizeof(uint64_t)) {
		pr_perror("cannot read %s", path);
		free(auxv);
		return -1;
	}
	mm->n_auxv = len / sizeof(uint64_t);
	mm->auxv = (uint64_t *)auxv; /* freed with the message */

	snprintf(path, sizeof(path), "/proc/%d/exe", d->pid);
	if (readlink_at(AT_FDCWD, path, exe, sizeof(exe))) {
		pr_perror("cannot read %s", path);
		return -1;
	}
	if (ends_with(exe, " (deleted)")) {
		pr_err("task %d runs a deleted executable %s: not supported yet", d->pid, exe);
		return -1;
	}
	mm->exe_path = strdup(exe);
	return mm->exe_path ? 0 : -1;
}

static uint32_t vma_madv(const struct proc_vma *v)
{
	uint32_t madv = 0;

	for (size_t j = 0; j < ARRAY_SIZE(madv_map); j++)
		if (v->vmflags & madv_map[j].vmf)
			madv |= madv_map[j].madv_bit;
	return madv;
}

/*
 * The VMA's flags turned out other than those its entry was made with (vmaflags.c): what
 * depends on them again.  Its pages do not: the kernel's page categories decided those.
 */
int mem_vma_flags_changed(struct dump_ctx *d, VmaEntry *e, const struct proc_vma *v)
{
	VmaKind kind;

	if (vma_classify(d->pid, v, &kind, d->tree->prev_track))
		return -1;
	e->madv = vma_madv(v);
	if (e->has_may_write)
		e->may_write = v->shared && (v->vmflags & VMF_MAYWRITE);
	return 0;
}

/*
 * Does the parent task have this very VMA, so that a child forked from the restored parent
 * already has it?  Then the child keeps it on restore, and its pages shared copy-on-write
 * with the parent stay shared (pages.c finds them by their page frame).
 */
static bool vma_inherited(const struct dump_ctx *d, const struct proc_vma *v, VmaKind kind)
{
	if (!d->parent || kind > VMA_KIND__VMA_FILE_SHARED)
		return false;
	for (size_t i = 0; i < d->parent->vmas.len; i++) {
		const struct proc_vma *p = vec_at(&d->parent->vmas, struct proc_vma, i);

		if (p->start != v->start)
			continue;
		return p->end == v->end && p->prot == v->prot && p->shared == v->shared &&
		       p->pgoff == v->pgoff && p->ino == v->ino && p->dev_major == v->dev_major &&
		       p->dev_minor == v->dev_minor && !strcmp(p->path, v->path) &&
		       !(p->vmflags & (VMF_DONTCOPY | VMF_WIPEONFORK));
	}
	return false;
}

int mem_dump(struct dump_ctx *d, MmEntry *mm)
{
	mm->vmas = calloc(d->vmas.len ? d->vmas.len : 1, sizeof(*mm->vmas));
	if (!mm->vmas)
		return -1;
	for (size_t i = 0; i < d->vmas.len; i++) {
		const struct proc_vma *v = vec_at(&d->vmas, struct proc_vma, i);
		VmaEntry *e = calloc(1, sizeof(*e));
		VmaKind kind;

		if (!e)
			return -1;
		vma_entry__init(e);
		mm->vmas[mm->n_vmas++] = e;
		if (vma_classify(d->pid, v, &kind, d->tree->prev_track))
			return -1;
		e->start = v->start;
		e->end = v->end;
		e->kind = kind;
		e->prot = v->prot;
		e->madv = vma_madv(v);
		char *memfd = shmem_memfd_name(v->path);

		if (memfd || kind == VMA_KIND__VMA_ANON_SHARED) {
			/* shared memory objects are saved once, with their content */
			char path[96];
			int id;

			snprintf(path, sizeof(path), "/proc/%d/map_files/%lx-%lx", d->pid, v->start,
				 v->end);
			/* a pre-dump saves private memory only: objects come whole at the end */
			id = d->tree->pre_dump ? 0
					       : shmem_dump_object(d, path,
								   memfd ? SHMEM_KIND__SHMEM_MEMFD
									 : SHMEM_KIND__SHMEM_ANON,
								   memfd);
			free(memfd);
			if (id < 0)
				return -1;
			e->has_pgoff = e->has_shmem_ino = e->has_shmem_id = true;
			e->pgoff = v->pgoff;
			e->shmem_ino = v->ino;
			e->shmem_id = id;
			e->path = strdup(v->path);
		} else if ((kind == VMA_KIND__VMA_FILE_PRIVATE ||
			    kind == VMA_KIND__VMA_FILE_SHARED) &&
			   (vma_fill_file(d->pid, v, e) || vma_fill_ghost(d, v, e))) {
			return -1;
		}
		if (kind == VMA_KIND__VMA_SYSV_SHM) {
			e->has_sysv_shmid = true;
			e->sysv_shmid = (int32_t)v->ino;
		}
		if (vma_inherited(d, v, kind)) {
			e->has_inherit = true;
			e->inherit = true;
		}
		if (!strncmp(v->path, "[anon:", 6) || !strncmp(v->path, "[anon_shmem:", 12)) {
			const char *name = strchr(v->path, ':') + 1;

			e->anon_name = strndup(name, strlen(name) - 1);
		}
	}
	if (mm_dump_fields(d, mm))
		return -1;
	/* a pre-dump copies the pages once the tree runs again */
	if (d->tree->pre_dump)
		return pages_plan(d, mm);
	/*
	 * The check of the flags walks the page tables as the plan does, and slows it as much
	 * as it would take alone: it runs while the pages are copied and written instead.
	 */
	return pages_plan(d, mm) || vmaflags_check_start(d) || pages_execute(d, mm) ? -1 : 0;
}

/* ---- restore ---- */

/* One open file per path and mode serves every VMA of it, in every task. */
static int open_mapped_file(struct restore_ctx *r, const char *path, bool may_write,
			    const VmaEntry *v)
{
	struct restore_tree *t = r->tree;
	struct vma_file *vf;
	struct stat st;
	int fd;

	for (size_t i = 0; i < t->vma_files.len; i++) {
		vf = vec_at(&t->vma_files, struct vma_file, i);
		if (vf->may_write == may_write && !strcmp(vf->path, path))
			goto check;
	}
	fd = open(rpath(path), (may_write ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (fd < 0) {
		pr_perror("cannot open mapped file %s", path);
		return -1;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		pr_err("mapped file %s is not a regular file any more", path);
		close(fd);
		return -1;
	}
	fd = restore_add_helper(t, fd);
	if (fd < 0)
		return -1;
	vf = vec_push(&t->vma_files);
	if (!vf)
		return -1;
	vf->path = path;
	vf->may_write = may_write;
	vf->fd = fd;
check:
	if (v && v->has_file_size && !r->opts->skip_file_size_check &&
	    (fstat(vf->fd, &st) || (uint64_t)st.st_size != v->file_size)) {
		pr_err("mapped file %s changed size since the dump (%llu -> %lld bytes); "
		       "--skip-file-size-check to restore anyway",
		       path, (unsigned long long)v->file_size, (long long)st.st_size);
		return -1;
	}
	return vf->fd;
}

/* Check the layout and open every mapped file while crest still can (before the child). */
int mem_restore_prepare(struct restore_ctx *r)
{
	const MmEntry *mm = r->mm;
	uint64_t prev_end = 0;

	r->vma_fds = malloc((mm->n_vmas + 1) * sizeof(int));
	if (!r->vma_fds)
		return -1;
	for (size_t i = 0; i < mm->n_vmas; i++)
		r->vma_fds[i] = -1;
	for (size_t i = 0; i < mm->n_vmas; i++) {
		const VmaEntry *v = mm->vmas[i];
		bool file = v->kind == VMA_KIND__VMA_FILE_PRIVATE ||
			    v->kind == VMA_KIND__VMA_FILE_SHARED;

		if (v->start >= v->end || v->start % PAGE_SIZE || v->end % PAGE_SIZE ||
		    v->start < prev_end ||
		    (v->end > TASK_SIZE_MAX && v->kind != VMA_KIND__VMA_VSYSCALL) ||
		    (file && (!v->path || !v->has_pgoff || v->pgoff % PAGE_SIZE)) ||
		    (v->kind == VMA_KIND__VMA_ANON_SHARED && !v->has_shmem_id)) {
			pr_err("mm-%d.img: VMA %zu (%#llx-%#llx) is malformed", r->pid, i,
			       (unsigned long long)v->start, (unsigned long long)v->end);
			return -1;
		}
		prev_end = v->end;
		if (v->has_shmem_id) {
			/* an inherited mapping needs no object of its own */
			if (!(r->parent && v->inherit) &&
			    (r->vma_fds[i] = shmem_restore_fd(r, v->shmem_id)) < 0)
				return -1;
		} else if (file) {
			r->vma_fds[i] = v->has_ghost_id
						? ghost_restore_fd(r, v->ghost_id, v->may_write)
						: open_mapped_file(r, v->path, v->may_write, v);
			if (r->vma_fds[i] < 0)
				return -1;
		}
	}
	if (mm->exe_path) {
		r->exe_fd = open_mapped_file(r, mm->exe_path, false, NULL);
		if (r->exe_fd < 0)
			return -1;
	}
	return pages_restore_prepare(r);
}

/* Unmap everything the child inherited from crest, except its vdso family. */
static int unmap_inherited(struct restore_ctx *r, const struct vec *child_vmas)
{
	unsigned long from = 0;

	for (size_t i = 0; i <= child_vmas->len; i++) {
		const struct proc_vma *v =
			i < child_vmas->len ? vec_at(child_vmas, struct proc_vma, i) : NULL;
		unsigned long to = v ? v->start : TASK_SIZE_MAX;

		if (v && v->path[0] != '[')
			continue;
		if (v && strcmp(v->path, "[vdso]") && strcmp(v->path, "[vvar]") &&
		    strcmp(v->path, "[vvar_vclock]"))
			continue; /* [heap], [stack]: plain memory, unmapped with the rest */
		if (to > TASK_SIZE_MAX)
			to = TASK_SIZE_MAX;
		if (to > from && rcheck(r, "munmap", rsys2(&r->rs, SYS_munmap, from, to - from)))
			return -1;
		if (v)
			from = v->end;
	}
	return 0;
}

/* A free range of len bytes avoiding the dumped VMAs and [avoid_start, avoid_end). */
static unsigned long find_gap(const MmEntry *mm, size_t len, unsigned long avoid_start,
			      unsigned long avoid_end)
{
	unsigned long cand = 0x10000000UL;

	for (;;) {
		bool clash = false;

		if (cand + len > TASK_SIZE_MAX)
			return 0;
		if (cand < avoid_end && cand + len > avoid_start) {
			cand = avoid_end;
			continue;
		}
		for (size_t i = 0; i < mm->n_vmas; i++) {
			const VmaEntry *v = mm->vmas[i];

			if (v->kind != VMA_KIND__VMA_VSYSCALL && cand < v->end &&
			    cand + len > v->start) {
				cand = v->end;
				clash = true;
				break;
			}
		}
		if (!clash)
			return cand;
	}
}

struct special_move {
	const char *name;
	VmaKind kind;
	unsigned long from, to, len;
};

/* Move the inherited vdso family to the dumped addresses, keeping their relative layout. */
static int move_specials(struct restore_ctx *r, const struct vec *child_vmas)
{
	struct special_move mv[] = {
		{"[vvar]", VMA_KIND__VMA_VVAR},
		{"[vvar_vclock]", VMA_KIND__VMA_VVAR_VCLOCK},
		{"[vdso]", VMA_KIND__VMA_VDSO},
	};
	unsigned long lo = ~0UL, hi = 0, dlo = ~0UL, dhi = 0;
	int n = 0;

	for (size_t i = 0; i < ARRAY_SIZE(mv); i++) {
		const struct proc_vma *c = vma_find_special(child_vmas, mv[i].name);
		const VmaEntry *d = NULL;

		for (size_t j = 0; j < r->mm->n_vmas; j++)
			if (r->mm->vmas[j]->kind == mv[i].kind)
				d = r->mm->vmas[j];
		if (!c != !d || (c && c->end - c->start != d->end - d->start)) {
			pr_err("the vdso layout of this kernel differs from the dumping host's "
			       "(%s): "
			       "restore on a kernel with the same vdso",
			       mv[i].name);
			return -1;
		}
		if (!c)
			continue;
		mv[n] = mv[i];
		mv[n].from = c->start;
		mv[n].to = d->start;
		mv[n].len = c->end - c->start;
		lo = min_t(unsigned long, lo, c->start);
		hi = max_t(unsigned long, hi, c->end);
		dlo = min_t(unsigned long, dlo, d->start);
		dhi = max_t(unsigned long, dhi, d->end);
		n++;
	}
	if (!n || dlo == lo)
		return 0;
	/* Overlapping old and new places: hop through a free range first. */
	unsigned long tmp = 0;

	if (dlo < hi && dhi > lo) {
		tmp = find_gap(r->mm, hi - lo, lo, hi);
		if (!tmp) {
			pr_err("no free address range to move the vdso through");
			return -1;
		}
	}
	for (int pass = tmp ? 0 : 1; pass < 2; pass++) {
		for (int i = 0; i < n; i++) {
			unsigned long from =
				pass ? (tmp ? tmp + mv[i].from - lo : mv[i].from) : mv[i].from;
			unsigned long to = pass ? mv[i].to : tmp + mv[i].from - lo;
			long ret = rsys5(&r->rs, SYS_mremap, from, mv[i].len, mv[i].len,
					 MREMAP_MAYMOVE | MREMAP_FIXED, to);

			if (rcheck(r, mv[i].name, ret))
				return -1;
			if (mv[i].kind == VMA_KIND__VMA_VDSO)
				r->rs.ip += to - from;
		}
	}
	return 0;
}

static bool vma_has_data(const struct restore_ctx *r, const VmaEntry *v)
{
	return (v->kind == VMA_KIND__VMA_ANON_PRIVATE || v->kind == VMA_KIND__VMA_ANON_SHARED ||
		v->kind == VMA_KIND__VMA_FILE_PRIVATE) &&
	       pages_in_range(r, v->start, v->end);
}

/* The segment exists again (ipc.c, or it outlived the tree): attach it where it was. */
static int attach_sysv(struct restore_ctx *r, const VmaEntry *v)
{
	struct shmid_ds ds;
	long ret;

	if (!v->has_sysv_shmid || shmctl(v->sysv_shmid, IPC_STAT, &ds)) {
		pr_perror("task %d: SysV shared memory %d attached at %#llx is gone", r->pid,
			  v->has_sysv_shmid ? v->sysv_shmid : -1, (unsigned long long)v->start);
		return -1;
	}
	if (((ds.shm_segsz + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)) != v->end - v->start) {
		pr_err("task %d: SysV shared memory %d is attached in part: not supported", r->pid,
		       v->sysv_shmid);
		return -1;
	}
	ret = rsys3(&r->rs, SYS_shmat, v->sysv_shmid, v->start,
		    (v->prot & PROT_WRITE ? 0 : SHM_RDONLY) | (v->prot & PROT_EXEC ? SHM_EXEC : 0) |
			    SHM_REMAP);
	if (ret != (long)v->start) {
		rcheck(r, "shmat", ret);
		pr_err("task %d: cannot attach SysV shared memory %d at %#llx", r->pid,
		       v->sysv_shmid, (unsigned long long)v->start);
		return -1;
	}
	return 0;
}

static int map_vmas(struct restore_ctx *r)
{
	for (size_t i = 0; i < r->mm->n_vmas; i++) {
		const VmaEntry *v = r->mm->vmas[i];
		unsigned long prot = v->prot, flags = MAP_FIXED, fd = -1, off = 0;
		long ret;

		if (r->parent && v->inherit)
			continue; /* already there, from fork */
		switch (v->kind) {
		case VMA_KIND__VMA_ANON_PRIVATE:
			flags |= MAP_PRIVATE | MAP_ANONYMOUS;
			if (v->madv & VMA_MADV__MADV_BIT_GROWSDOWN)
				flags |= MAP_GROWSDOWN;
			break;
		case VMA_KIND__VMA_ANON_SHARED:
			/* the object crest made: the same one for every task mapping it */
			flags |= MAP_SHARED;
			fd = r->vma_fds[i];
			off = v->pgoff;
			break;
		case VMA_KIND__VMA_FILE_PRIVATE:
		case VMA_KIND__VMA_FILE_SHARED:
			flags |= v->kind == VMA_KIND__VMA_FILE_SHARED ? MAP_SHARED : MAP_PRIVATE;
			fd = r->vma_fds[i];
			off = v->pgoff;
			break;
		case VMA_KIND__VMA_SYSV_SHM:
			if (attach_sysv(r, v))
				return -1;
			continue;
		default:
			continue;
		}
		/* Writable until pages.c has filled it; final protections come after. */
		if (vma_has_data(r, v))
			prot |= PROT_READ | PROT_WRITE;
		ret = rsys6(&r->rs, SYS_mmap, v->start, v->end - v->start, prot, flags, fd, off);
		if (ret != (long)v->start) {
			if (ret < 0 && ret > -4096)
				errno = -ret;
			pr_perror("cannot map %#llx-%#llx %s in %d", (unsigned long long)v->start,
				  (unsigned long long)v->end, v->path ? v->path : "(anon)", r->pid);
			return -1;
		}
	}
	return 0;
}

static int apply_madvise(struct restore_ctx *r, const VmaEntry *v)
{
	static const struct {
		unsigned int bit;
		int advice;
	} adv[] = {
		{VMA_MADV__MADV_BIT_DONTFORK, MADV_DONTFORK},
		{VMA_MADV__MADV_BIT_WIPEONFORK, MADV_WIPEONFORK},
		{VMA_MADV__MADV_BIT_HUGEPAGE, MADV_HUGEPAGE},
		{VMA_MADV__MADV_BIT_NOHUGEPAGE, MADV_NOHUGEPAGE},
		{VMA_MADV__MADV_BIT_MERGEABLE, MADV_MERGEABLE},
		{VMA_MADV__MADV_BIT_DONTDUMP, MADV_DONTDUMP},
		{VMA_MADV__MADV_BIT_SEQUENTIAL, MADV_SEQUENTIAL},
		{VMA_MADV__MADV_BIT_RANDOM, MADV_RANDOM},
	};
	unsigned long len = v->end - v->start;

	for (size_t i = 0; i < ARRAY_SIZE(adv); i++) {
		if (!(v->madv & adv[i].bit))
			continue;
		if (rcheck(r, "madvise", rsys3(&r->rs, SYS_madvise, v->start, len, adv[i].advice)))
			return -1;
	}
	if (v->madv & VMA_MADV__MADV_BIT_LOCKONFAULT) {
		if (rcheck(r, "mlock2",
			   rsys3(&r->rs, SYS_mlock2, v->start, len, 1 /* MLOCK_ONFAULT */)))
			return -1;
	} else if (v->madv & VMA_MADV__MADV_BIT_LOCKED) {
		if (rcheck(r, "mlock", rsys2(&r->rs, SYS_mlock, v->start, len)))
			return -1;
	}
	if (v->anon_name) {
		size_t n = strlen(v->anon_name) + 1;

		if (n > 256 || rsys_poke(&r->rs, r->rs.scratch, v->anon_name, n) ||
		    rcheck(r, "name anonymous memory",
			   rsys5(&r->rs, SYS_prctl, PR_SET_VMA, PR_SET_VMA_ANON_NAME, v->start, len,
				 r->rs.scratch)))
			return -1;
	}
	return 0;
}

static int finish_vmas(struct restore_ctx *r)
{
	for (size_t i = 0; i < r->mm->n_vmas; i++) {
		const VmaEntry *v = r->mm->vmas[i];

		if (v->kind > VMA_KIND__VMA_FILE_SHARED)
			continue;
		if (r->parent && v->inherit) {
			/* fork keeps protections and advice, but never mlock */
			if ((v->madv &
			     (VMA_MADV__MADV_BIT_LOCKED | VMA_MADV__MADV_BIT_LOCKONFAULT)) &&
			    rcheck(r, "mlock",
				   rsys3(&r->rs, SYS_mlock2, v->start, v->end - v->start,
					 v->madv & VMA_MADV__MADV_BIT_LOCKONFAULT ? 1 : 0)))
				return -1;
			continue;
		}
		if (vma_has_data(r, v) && v->prot != (PROT_READ | PROT_WRITE) &&
		    rcheck(r, "mprotect",
			   rsys3(&r->rs, SYS_mprotect, v->start, v->end - v->start, v->prot)))
			return -1;
		if (apply_madvise(r, v))
			return -1;
	}
	return 0;
}

/* struct prctl_mm_map (linux/prctl.h) */
static int restore_mm_fields(struct restore_ctx *r)
{
	const MmEntry *mm = r->mm;
	struct prctl_mm_map map = {
		.start_code = mm->start_code,
		.end_code = mm->end_code,
		.start_data = mm->start_data,
		.end_data = mm->end_data,
		.start_brk = mm->start_brk,
		.brk = mm->brk,
		.start_stack = mm->start_stack,
		.arg_start = mm->arg_start,
		.arg_end = mm->arg_end,
		.env_start = mm->env_start,
		.env_end = mm->env_end,
		.auxv = (__u64 *)(r->rs.scratch + sizeof(map)),
		.auxv_size = mm->n_auxv * sizeof(uint64_t),
		.exe_fd = mm->exe_path ? (uint32_t)r->exe_fd : (uint32_t)-1,
	};

	/* forked from a parent running the same program: it has that exe already (and the
	 * kernel refuses to replace an exe file that is still mapped) */
	if (r->parent && r->parent->mm && r->parent->mm->exe_path && mm->exe_path &&
	    !strcmp(r->parent->mm->exe_path, mm->exe_path))
		map.exe_fd = (uint32_t)-1;

	if (map.auxv_size > 4096) {
		pr_err("mm-%d.img: auxv of %u bytes is too large", r->pid, map.auxv_size);
		return -1;
	}
	if (rsys_poke(&r->rs, r->rs.scratch, &map, sizeof(map)) ||
	    (map.auxv_size &&
	     rsys_poke(&r->rs, r->rs.scratch + sizeof(map), mm->auxv, map.auxv_size)))
		return -1;
	if (rcheck(r, "prctl(PR_SET_MM_MAP)",
		   rsys5(&r->rs, SYS_prctl, PR_SET_MM, PR_SET_MM_MAP, r->rs.scratch, sizeof(map),
			 0)))
		return -1;
	return 0;
}

int mem_restore(struct restore_ctx *r)
{
	struct vec child_vmas = VEC_INIT(struct proc_vma);
	const struct proc_vma *vdso;
	unsigned long scratch;
	int ret = -1;

	if (proc_parse_maps(r->child, &child_vmas))
		goto out;
	vdso = vma_find_special(&child_vmas, "[vdso]");
	if (!vdso || rsys_find_ip(&r->rs, vdso->start, vdso->end))
		goto out;
	if (unmap_inherited(r, &child_vmas) || move_specials(r, &child_vmas))
		goto out;
	scratch = find_gap(r->mm, SCRATCH_SIZE, 0, 0);
	if (!scratch) {
		pr_err("no free address range for scratch memory");
		goto out;
	}
	if (rsys_scratch_map(&r->rs, scratch, SCRATCH_SIZE) || map_vmas(r) || pages_restore(r) ||
	    finish_vmas(r) || restore_mm_fields(r))
		goto out;
	ret = 0;
out:
	vec_free(&child_vmas);
	return ret;
}

static bool inherited_vma_at(const struct restore_ctx *r, const struct proc_vma *c)
{
	for (size_t i = 0; i < r->mm->n_vmas; i++) {
		const VmaEntry *v = r->mm->vmas[i];

		if (v->inherit && v->start == c->start && v->end == c->end)
			return true;
	}
	return false;
}

/* Temporarily writable inherited VMAs that receive pages of their own; back after. */
static int inherited_prot(struct restore_ctx *r, bool writable)
{
	for (size_t i = 0; i < r->mm->n_vmas; i++) {
		const VmaEntry *v = r->mm->vmas[i];
		unsigned long prot = writable ? v->prot | PROT_READ | PROT_WRITE : v->prot;

		if (!v->inherit || v->prot == (v->prot | PROT_READ | PROT_WRITE) ||
		    v->kind == VMA_KIND__VMA_FILE_SHARED || !pages_present_in(r, v->start, v->end))
			continue;
		if (rcheck(r, "mprotect",
			   rsys3(&r->rs, SYS_mprotect, v->start, v->end - v->start, prot)))
			return -1;
	}
	return 0;
}

/*
 * A task forked from its restored parent has the parent's address space.  It keeps the VMAs
 * the dump found identical in both (their pages shared copy-on-write stay shared), drops the
 * rest, maps its own, writes the pages that are its own, and drops inherited pages it did not
 * have.
 */
int mem_restore_inherited(struct restore_ctx *r)
{
	struct vec now = VEC_INIT(struct proc_vma);
	int ret = -1;

	if (proc_parse_maps(r->pid, &now))
		goto out;
	for (size_t i = 0; i < now.len; i++) {
		const struct proc_vma *c = vec_at(&now, struct proc_vma, i);

		if (c->start >= TASK_SIZE_MAX || !strcmp(c->path, "[vdso]") ||
		    !strcmp(c->path, "[vvar]") || !strcmp(c->path, "[vvar_vclock]") ||
		    (c->start >= r->rs.scratch && c->end <= r->rs.scratch + r->rs.scratch_len) ||
		    inherited_vma_at(r, c))
			continue;
		if (rcheck(r, "munmap", rsys2(&r->rs, SYS_munmap, c->start, c->end - c->start)))
			goto out;
	}
	if (map_vmas(r) || pages_drop_inherited(r) || inherited_prot(r, true) ||
	    (!r->fill_async && mem_restore_fill(r)))
		goto out;
	ret = 0;
out:
	vec_free(&now);
	return ret;
}

/*
 * The pages, and what must come after them.  A task without children (restore.c) has them
 * read last of all its steps, the last read left running (pages.c) while crest restores the
 * next tasks; mem_restore_fill_finish() then waits for it, with the rest.
 */
int mem_restore_fill(struct restore_ctx *r)
{
	if (pages_restore(r))
		return -1;
	return r->fill_async ? 0 : mem_restore_fill_finish(r);
}

int mem_restore_fill_finish(struct restore_ctx *r)
{
	return pages_fill_wait(r) || inherited_prot(r, false) || finish_vmas(r) ||
			       restore_mm_fields(r)
		       ? -1
		       : 0;
}
