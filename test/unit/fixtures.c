// SPDX-License-Identifier: MIT
/* Shared helpers for the image and show unit tests. */
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <criterion/criterion.h>

#include "crest.h"
#include "fixtures.h"

char *unit_mkdtemp(void)
{
	char *path = strdup("/tmp/crest-unit-XXXXXX");

	cr_assert_not_null(path);
	cr_assert_not_null(mkdtemp(path), "mkdtemp: %m");
	return path;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

void unit_rmtree(const char *path)
{
	if (path)
		nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void unit_write_file(int dirfd, const char *name, const void *buf, size_t len)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	cr_assert(fd >= 0, "create %s: %m", name);
	cr_assert_eq(write(fd, buf, len), (ssize_t)len, "write %s: %m", name);
	close(fd);
}

void *unit_read_file(int dirfd, const char *name, size_t *len)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	off_t size;
	void *buf;

	cr_assert(fd >= 0, "open %s: %m", name);
	size = lseek(fd, 0, SEEK_END);
	cr_assert(size >= 0);
	buf = malloc(size ? size : 1);
	cr_assert_not_null(buf);
	cr_assert_eq(pread(fd, buf, size, 0), size, "read %s: %m", name);
	close(fd);
	*len = size;
	return buf;
}

void unit_put_header(void *buf, uint32_t magic, uint16_t version, uint16_t kind)
{
	struct img_header hdr = {.magic = magic, .version = version, .kind = kind};

	memcpy(buf, &hdr, sizeof(hdr));
}

void unit_unseal(void *buf)
{
	struct img_header hdr;

	memcpy(&hdr, buf, sizeof(hdr));
	hdr.flags = 0;
	hdr.crc = 0;
	hdr.payload = 0;
	memcpy(buf, &hdr, sizeof(hdr));
}

uint32_t unit_crc32(const void *buf, size_t len)
{
	return crc32(crc32(0, Z_NULL, 0), buf, len);
}

void unit_assert_error(const char *file, const char *problem)
{
	const char *err = crest_last_error();

	cr_assert(strstr(err, file), "error \"%s\" does not name %s", err, file);
	cr_assert(strstr(err, problem), "error \"%s\" does not say \"%s\"", err, problem);
}

char *unit_show(const char *path, int *ret)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	cr_assert_not_null(f);
	*ret = crest_show(path, f);
	cr_assert_eq(fclose(f), 0);
	return buf;
}

void unit_assert_json(const char *doc)
{
	char why[128];

	cr_assert(unit_json_valid(doc, strlen(doc), why, sizeof(why)), "invalid JSON (%s):\n%s",
		  why, doc);
}

void unit_assert_same_packed(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
	size_t la = protobuf_c_message_get_packed_size(a);
	size_t lb = protobuf_c_message_get_packed_size(b);
	uint8_t *pa, *pb;

	cr_assert_eq(la, lb, "packed sizes differ: %zu vs %zu", la, lb);
	pa = malloc(la + 1);
	pb = malloc(lb + 1);
	cr_assert(pa && pb);
	protobuf_c_message_pack(a, pa);
	protobuf_c_message_pack(b, pb);
	cr_assert(!memcmp(pa, pb, la), "packed %s messages differ", a->descriptor->name);
	free(pa);
	free(pb);
}

static void regs_init(UserRegsX86Entry *r, uint64_t seed)
{
	*r = (UserRegsX86Entry)USER_REGS_X86_ENTRY__INIT;
	r->r15 = seed + 15;
	r->r14 = seed + 14;
	r->r13 = seed + 13;
	r->r12 = seed + 12;
	r->bp = 0x7ffc00001000 + seed;
	r->bx = seed;
	r->ax = -38ull; /* -ENOSYS as the kernel leaves it at a syscall stop */
	r->orig_ax = 230;
	r->ip = 0x7f1234567890 + seed;
	r->sp = 0x7ffc00000ff0 + seed;
	r->cs = 0x33;
	r->ss = 0x2b;
	r->flags = 0x246;
	r->fs_base = 0x7f0000001740;
}

static void thread_init(struct core_fixture *f, int t, unsigned int i)
{
	ThreadCoreEntry *th = &f->th[t];

	*th = (ThreadCoreEntry)THREAD_CORE_ENTRY__INIT;
	regs_init(&f->regs[t], i * 100 + t);
	th->tid = 1000 * i + t;
	th->regs = &f->regs[t];
	th->blocked = 1ull << (t + 1);
	f->thp[t] = th;
	if (t)
		return; /* thread 1 keeps every optional field unset */
	for (size_t b = 0; b < sizeof(f->xsave); b++)
		f->xsave[b] = b * 7 + i;
	th->has_xsave = true;
	th->xsave = (ProtobufCBinaryData){sizeof(f->xsave), f->xsave};
	f->pending[0] = (ProtobufCBinaryData){128, f->siginfo[1]};
	th->n_pending = 1;
	th->pending = f->pending;
	f->sas = (SigaltstackEntry)SIGALTSTACK_ENTRY__INIT;
	f->sas.sp = 0x7f00dead0000;
	f->sas.size = 8192;
	th->sigaltstack = &f->sas;
	th->has_clear_child_tid = true;
	th->clear_child_tid = 0x7f0000001a10;
	th->has_robust_list = true;
	th->robust_list = 0x7f0000001a20;
	th->has_robust_list_len = true;
	th->robust_list_len = 24;
	f->rseq = (RseqEntry)RSEQ_ENTRY__INIT;
	f->rseq.ptr = 0x7f0000001e00;
	f->rseq.size = 32;
	f->rseq.sig = 0x53053053;
	th->rseq = &f->rseq;
	th->comm = "worker";
	f->sleep = (SleepRestartEntry)SLEEP_RESTART_ENTRY__INIT;
	f->sleep.clockid = 1;
	f->sleep.remaining_ns = 999999999;
	th->sleep_restart = &f->sleep;
	th->has_pdeath_sig = true;
	th->pdeath_sig = -1;
}

static void creds_init(CredsEntry *c, uint32_t *groups, unsigned int i)
{
	*c = (CredsEntry)CREDS_ENTRY__INIT;
	c->uid = c->euid = c->suid = c->fsuid = 1000 + i;
	c->gid = c->egid = c->sgid = c->fsgid = 100;
	groups[0] = 4;
	groups[1] = 27;
	groups[2] = 4294967294u;
	c->n_groups = 3;
	c->groups = groups;
	c->cap_prm = c->cap_eff = 0x1ffffffffffull;
	c->cap_bnd = ~0ull;
	c->secbits = 0x2f;
	c->no_new_privs = i & 1;
}

static void signals_init(struct core_fixture *f, unsigned int i)
{
	for (int s = 0; s < 2; s++) {
		f->sa[s] = (SigactionEntry)SIGACTION_ENTRY__INIT;
		f->sa[s].sig = s ? 15 : 2;
		f->sa[s].handler = 0x401000 + 16 * s + i;
		f->sa[s].flags = 0x04000000;
		f->sa[s].restorer = 0x7f0000002000;
		f->sa[s].mask = 1ull << s;
		f->sap[s] = &f->sa[s];
	}
	f->it = (ItimerEntry)ITIMER_ENTRY__INIT;
	f->it.interval_us = 250000;
	f->it.value_us = 125000 + i;
	f->itp[0] = &f->it;
	f->pt = (PosixTimerEntry)POSIX_TIMER_ENTRY__INIT;
	f->pt.id = -5; /* sint-like values must survive the varint sign extension */
	f->pt.clockid = 1;
	f->pt.sigev_notify = 4;
	f->pt.sigev_signo = 34;
	f->pt.sigev_value = 0xdeadbeefcafeull;
	f->pt.has_notify_tid = true;
	f->pt.notify_tid = 1000 * i;
	f->pt.interval_ns = 1000000;
	f->ptp[0] = &f->pt;
	for (int r = 0; r < 2; r++) {
		f->rl[r] = (RlimitEntry)RLIMIT_ENTRY__INIT;
		f->rl[r].resource = r ? 7 : 3;
		f->rl[r].cur = r ? 1024 : 8 << 20;
		f->rl[r].max = ~0ull; /* RLIM_INFINITY */
		f->rlp[r] = &f->rl[r];
	}
}

void core_fixture_init(struct core_fixture *f, unsigned int i)
{
	TaskCoreEntry *c = &f->core;

	memset(f, 0, sizeof(*f));
	*c = (TaskCoreEntry)TASK_CORE_ENTRY__INIT;
	snprintf(f->comm, sizeof(f->comm), "task-%u", i);
	c->pid = 1000 * i;
	c->comm = f->comm;
	c->personality = 0;
	c->umask = 022;
	c->cwd = "/home/user/work dir";
	c->root = "/";
	signals_init(f, i);
	c->n_sigactions = 2;
	c->sigactions = f->sap;
	c->n_itimers = 1;
	c->itimers = f->itp;
	c->n_posix_timers = 1;
	c->posix_timers = f->ptp;
	c->n_rlimits = 2;
	c->rlimits = f->rlp;
	creds_init(&f->creds, f->groups, i);
	c->creds = &f->creds;
	for (int b = 0; b < 128; b++) {
		f->siginfo[0][b] = b;
		f->siginfo[1][b] = 255 - b;
	}
	f->shared_pending[0] = (ProtobufCBinaryData){128, f->siginfo[0]};
	c->n_shared_pending = 1;
	c->shared_pending = f->shared_pending;
	thread_init(f, 0, i);
	thread_init(f, 1, i);
	c->n_threads = 2;
	c->threads = f->thp;
	c->has_dumpable = true;
	c->dumpable = 1;
	c->has_child_subreaper = true;
	c->child_subreaper = false; /* set-but-false must not read back as absent */
	c->has_timerslack_ns = true;
	c->timerslack_ns = 50000;
}

static void assert_bytes_eq(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b)
{
	cr_assert_eq(a->len, b->len);
	cr_assert(!a->len || !memcmp(a->data, b->data, a->len));
}

static void thread_assert_equal(const ThreadCoreEntry *a, const ThreadCoreEntry *b)
{
	cr_assert_eq(a->tid, b->tid);
	cr_assert_eq(a->regs->ip, b->regs->ip);
	cr_assert_eq(a->regs->sp, b->regs->sp);
	cr_assert_eq(a->regs->ax, b->regs->ax);
	cr_assert_eq(a->regs->r15, b->regs->r15);
	cr_assert_eq(a->regs->fs_base, b->regs->fs_base);
	cr_assert_eq(a->blocked, b->blocked);
	cr_assert_eq(a->has_xsave, b->has_xsave);
	if (a->has_xsave)
		assert_bytes_eq(&a->xsave, &b->xsave);
	cr_assert_eq(a->n_pending, b->n_pending);
	for (size_t i = 0; i < a->n_pending; i++)
		assert_bytes_eq(&a->pending[i], &b->pending[i]);
	cr_assert_eq(!a->sigaltstack, !b->sigaltstack);
	if (a->sigaltstack)
		cr_assert_eq(a->sigaltstack->sp, b->sigaltstack->sp);
	cr_assert_eq(a->has_clear_child_tid, b->has_clear_child_tid);
	cr_assert_eq(a->clear_child_tid, b->clear_child_tid);
	cr_assert_eq(a->has_robust_list_len, b->has_robust_list_len);
	cr_assert_eq(a->robust_list_len, b->robust_list_len);
	cr_assert_eq(!a->rseq, !b->rseq);
	if (a->rseq)
		cr_assert_eq(a->rseq->sig, b->rseq->sig);
	cr_assert_eq(!a->comm, !b->comm);
	if (a->comm)
		cr_assert_str_eq(a->comm, b->comm);
	cr_assert_eq(!a->sleep_restart, !b->sleep_restart);
	cr_assert_eq(a->has_pdeath_sig, b->has_pdeath_sig);
	cr_assert_eq(a->pdeath_sig, b->pdeath_sig);
}

static void creds_assert_equal(const CredsEntry *a, const CredsEntry *b)
{
	cr_assert_eq(a->uid, b->uid);
	cr_assert_eq(a->fsgid, b->fsgid);
	cr_assert_eq(a->n_groups, b->n_groups);
	cr_assert(!memcmp(a->groups, b->groups, a->n_groups * sizeof(*a->groups)));
	cr_assert_eq(a->cap_bnd, b->cap_bnd);
	cr_assert_eq(a->cap_eff, b->cap_eff);
	cr_assert_eq(a->secbits, b->secbits);
	cr_assert_eq(a->no_new_privs, b->no_new_privs);
}

void core_assert_equal(const TaskCoreEntry *a, const TaskCoreEntry *b)
{
	cr_assert_eq(a->pid, b->pid);
	cr_assert_str_eq(a->comm, b->comm);
	cr_assert_eq(a->umask, b->umask);
	cr_assert_str_eq(a->cwd, b->cwd);
	cr_assert_str_eq(a->root, b->root);
	cr_assert_eq(a->n_sigactions, b->n_sigactions);
	for (size_t i = 0; i < a->n_sigactions; i++) {
		cr_assert_eq(a->sigactions[i]->sig, b->sigactions[i]->sig);
		cr_assert_eq(a->sigactions[i]->handler, b->sigactions[i]->handler);
		cr_assert_eq(a->sigactions[i]->mask, b->sigactions[i]->mask);
	}
	cr_assert_eq(a->n_itimers, b->n_itimers);
	cr_assert_eq(a->itimers[0]->value_us, b->itimers[0]->value_us);
	cr_assert_eq(a->n_posix_timers, b->n_posix_timers);
	cr_assert_eq(a->posix_timers[0]->id, b->posix_timers[0]->id);
	cr_assert_eq(a->posix_timers[0]->notify_tid, b->posix_timers[0]->notify_tid);
	cr_assert_eq(a->n_rlimits, b->n_rlimits);
	for (size_t i = 0; i < a->n_rlimits; i++)
		cr_assert_eq(a->rlimits[i]->max, b->rlimits[i]->max);
	creds_assert_equal(a->creds, b->creds);
	cr_assert_eq(a->n_shared_pending, b->n_shared_pending);
	for (size_t i = 0; i < a->n_shared_pending; i++)
		assert_bytes_eq(&a->shared_pending[i], &b->shared_pending[i]);
	cr_assert_eq(a->n_threads, b->n_threads);
	for (size_t i = 0; i < a->n_threads; i++)
		thread_assert_equal(a->threads[i], b->threads[i]);
	cr_assert_eq(a->has_dumpable, b->has_dumpable);
	cr_assert_eq(a->has_child_subreaper, b->has_child_subreaper);
	cr_assert_eq(a->child_subreaper, b->child_subreaper);
	cr_assert_eq(a->has_thp_disable, b->has_thp_disable);
	cr_assert_eq(a->has_timerslack_ns, b->has_timerslack_ns);
	cr_assert_eq(a->timerslack_ns, b->timerslack_ns);
	unit_assert_same_packed(&a->base, &b->base);
}

void mm_fixture_init(struct mm_fixture *f, unsigned int i)
{
	MmEntry *mm = &f->mm;

	memset(f, 0, sizeof(*f));
	*mm = (MmEntry)MM_ENTRY__INIT;
	mm->start_code = 0x400000;
	mm->end_code = 0x401000 + i * 0x1000;
	mm->start_data = 0x403000;
	mm->end_data = 0x404000;
	mm->start_brk = 0x1000000;
	mm->brk = 0x1021000;
	mm->start_stack = 0x7ffc00010000;
	mm->arg_start = 0x7ffc00010100;
	mm->arg_end = 0x7ffc00010110;
	mm->env_start = 0x7ffc00010110;
	mm->env_end = 0x7ffc00010ff0;
	for (int a = 0; a < 6; a++)
		f->auxv[a] = a & 1 ? 0x7f0000000000ull + a : (uint64_t)a + 3;
	mm->n_auxv = 6;
	mm->auxv = f->auxv;
	mm->exe_path = "/usr/bin/counter";
	for (int v = 0; v < 3; v++) {
		VmaEntry *e = &f->vma[v];

		*e = (VmaEntry)VMA_ENTRY__INIT;
		e->start = 0x400000 + 0x10000 * v;
		e->end = e->start + 0x1000 * (v + 1);
		e->prot = 1 | (v ? 2 : 4);
		f->vmap[v] = e;
	}
	f->vma[0].kind = VMA_KIND__VMA_FILE_PRIVATE;
	f->vma[0].has_pgoff = true;
	f->vma[0].pgoff = 0x2000;
	f->vma[0].path = "/usr/bin/counter";
	f->vma[0].has_dev = f->vma[0].has_ino = f->vma[0].has_file_size = true;
	f->vma[0].dev = 0x803;
	f->vma[0].ino = 1234567 + i;
	f->vma[0].file_size = 16384;
	f->vma[1].kind = VMA_KIND__VMA_ANON_PRIVATE;
	f->vma[1].madv = VMA_MADV__MADV_BIT_DONTFORK | VMA_MADV__MADV_BIT_LOCKED;
	f->vma[2].kind = VMA_KIND__VMA_ANON_SHARED;
	f->vma[2].has_may_write = true;
	f->vma[2].may_write = true;
	f->vma[2].anon_name = "arena";
	mm->n_vmas = 3;
	mm->vmas = f->vmap;
}

void mm_assert_equal(const MmEntry *a, const MmEntry *b)
{
	cr_assert_eq(a->start_code, b->start_code);
	cr_assert_eq(a->end_code, b->end_code);
	cr_assert_eq(a->brk, b->brk);
	cr_assert_eq(a->env_end, b->env_end);
	cr_assert_eq(a->n_auxv, b->n_auxv);
	cr_assert(!a->n_auxv || !memcmp(a->auxv, b->auxv, a->n_auxv * sizeof(*a->auxv)));
	cr_assert_eq(!a->exe_path, !b->exe_path);
	if (a->exe_path)
		cr_assert_str_eq(a->exe_path, b->exe_path);
	cr_assert_eq(a->n_vmas, b->n_vmas);
	for (size_t v = 0; v < a->n_vmas; v++) {
		const VmaEntry *x = a->vmas[v], *y = b->vmas[v];

		cr_assert_eq(x->start, y->start);
		cr_assert_eq(x->end, y->end);
		cr_assert_eq(x->kind, y->kind);
		cr_assert_eq(x->prot, y->prot);
		cr_assert_eq(x->madv, y->madv);
		cr_assert_eq(x->has_pgoff, y->has_pgoff);
		cr_assert_eq(x->pgoff, y->pgoff);
		cr_assert_eq(!x->path, !y->path);
		cr_assert_eq(x->has_ino, y->has_ino);
		cr_assert_eq(x->ino, y->ino);
		cr_assert_eq(x->has_may_write, y->has_may_write);
		cr_assert_eq(!x->anon_name, !y->anon_name);
	}
	unit_assert_same_packed(&a->base, &b->base);
}

static void write_msgs(int dirfd, enum img_kind kind, const ProtobufCMessage *const *msgs, size_t n)
{
	struct cr_img *img = img_open_write(dirfd, kind, 1);

	cr_assert_not_null(img, "%s", crest_last_error());
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(img_write_msg(img, msgs[i]), 0, "%s", crest_last_error());
	cr_assert_eq(img_close(img), 0, "%s", crest_last_error());
}

static void make_core_mm(int dirfd)
{
	struct core_fixture *core = malloc(sizeof(*core));
	struct mm_fixture mm;

	cr_assert_not_null(core);
	core_fixture_init(core, 1);
	cr_assert_eq(img_write_one(dirfd, IMG_CORE, 1, &core->core.base), 0);
	free(core);
	mm_fixture_init(&mm, 1);
	cr_assert_eq(img_write_one(dirfd, IMG_MM, 1, &mm.mm.base), 0);
}

static void make_memory(int dirfd)
{
	PagemapHead head = PAGEMAP_HEAD__INIT;
	PagemapEntry pe[4];
	const ProtobufCMessage *msgs[5] = {&head.base};
	static const uint32_t flags[4] = {PAGEMAP_FLAGS__PE_PRESENT, PAGEMAP_FLAGS__PE_ZERO,
					  PAGEMAP_FLAGS__PE_PRESENT | PAGEMAP_FLAGS__PE_LZ4,
					  PAGEMAP_FLAGS__PE_PARENT | 0x100};
	static char page[8192];
	struct cr_img *img;

	head.nr_runs = 4;
	head.pages_size = sizeof(page);
	for (int i = 0; i < 4; i++) {
		pe[i] = (PagemapEntry)PAGEMAP_ENTRY__INIT;
		pe[i].vaddr = 0x7f0000000000ull + 0x10000 * i;
		pe[i].nr_pages = i + 1;
		pe[i].flags = flags[i];
		pe[i].has_off = flags[i] & PAGEMAP_FLAGS__PE_PRESENT;
		pe[i].off = i ? 4096 : 0;
		pe[i].has_clen = flags[i] & PAGEMAP_FLAGS__PE_LZ4;
		pe[i].clen = 4096;
		msgs[i + 1] = &pe[i].base;
	}
	write_msgs(dirfd, IMG_PAGEMAP, msgs, 5);
	memset(page, 0xab, sizeof(page));
	img = img_open_write(dirfd, IMG_PAGES, 1);
	cr_assert_not_null(img);
	cr_assert_eq(img_write_raw(img, page, sizeof(page)), 0);
	cr_assert_eq(img_close(img), 0);
}

static void make_files(int dirfd)
{
	FdEntry fd[3];
	FileEntry file[2] = {FILE_ENTRY__INIT, FILE_ENTRY__INIT};
	RegFileEntry reg = REG_FILE_ENTRY__INIT;
	const ProtobufCMessage *fdm[3], *filem[2] = {&file[0].base, &file[1].base};

	for (int i = 0; i < 3; i++) {
		fd[i] = (FdEntry)FD_ENTRY__INIT;
		fd[i].fd = i;
		fd[i].id = i ? 2 : 1;
		fd[i].cloexec = i == 2;
		fdm[i] = &fd[i].base;
	}
	write_msgs(dirfd, IMG_FDINFO, fdm, 3);
	reg.path = "/tmp/log \"quoted\"\twith\ttabs";
	reg.flags = 02101; /* O_WRONLY|O_APPEND|O_CREAT-ish */
	reg.pos = 77;
	reg.has_size = true;
	reg.size = 77;
	file[0].id = 1;
	file[0].kind = FD_KIND__FD_REG;
	file[0].reg = &reg;
	file[1].id = 2;
	file[1].kind = FD_KIND__FD_CHR;
	write_msgs(dirfd, IMG_FILES, filem, 2);
}

void unit_make_dump(int dirfd)
{
	InventoryEntry inv = INVENTORY_ENTRY__INIT;
	PstreeEntry ps[2] = {PSTREE_ENTRY__INIT, PSTREE_ENTRY__INIT};
	const ProtobufCMessage *psm[2] = {&ps[0].base, &ps[1].base};
	uint32_t threads[2] = {1, 3};
	uint8_t sha[32];

	for (int i = 0; i < 32; i++)
		sha[i] = i * 8;
	inv.img_version = IMG_VERSION;
	inv.root_pid = 1;
	inv.arch = "x86_64";
	inv.kernel_release = "6.1.0-test";
	inv.crest_version = CREST_VERSION;
	inv.has_vdso_sha256 = true;
	inv.vdso_sha256 = (ProtobufCBinaryData){sizeof(sha), sha};
	inv.has_shell_job = true;
	inv.shell_job = false;
	cr_assert_eq(img_write_one(dirfd, IMG_INVENTORY, 0, &inv.base), 0);
	ps[0].pid = 1;
	ps[0].pgid = ps[0].sid = 1;
	ps[0].n_threads = 2;
	ps[0].threads = threads;
	ps[1].pid = 2;
	ps[1].ppid = 1;
	ps[1].pgid = ps[1].sid = 1;
	write_msgs(dirfd, IMG_PSTREE, psm, 2);
	make_core_mm(dirfd);
	make_memory(dirfd);
	make_files(dirfd);
}
