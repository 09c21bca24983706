// SPDX-License-Identifier: MIT
/*
 * criu/image.c: names, round trips of every image kind, the page-aligned pages image, and
 * the reader's refusal of every kind of malformed input with an error naming the file.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "crest.h"
#include "fixtures.h"
#include "log.h"

#define PID 42
#define N_MSGS 5
#define HDR_LEN sizeof(struct img_header) /* a message image's first message starts here */

static char *tmp;
static int dfd = -1;

static void setup(void)
{
	tmp = unit_mkdtemp();
	dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert(dfd >= 0);
	error_reset();
}

static void teardown(void)
{
	if (dfd >= 0)
		close(dfd);
	unit_rmtree(tmp);
	free(tmp);
}

TestSuite(image, .init = setup, .fini = teardown);

/* --- names --------------------------------------------------------------------------- */

Test(image, names_of_kinds)
{
	static const struct {
		enum img_kind kind;
		const char *name;
	} want[] = {
		{IMG_INVENTORY, "inventory.img"}, {IMG_PSTREE, "pstree.img"},
		{IMG_CORE, "core-42.img"},	  {IMG_MM, "mm-42.img"},
		{IMG_PAGEMAP, "pagemap-42.img"},  {IMG_PAGES, "pages-42.img"},
		{IMG_FDINFO, "fdinfo-42.img"},	  {IMG_FILES, "files.img"},
	};
	char buf[64];

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		cr_assert_str_eq(img_name(want[i].kind, PID, buf, sizeof(buf)), want[i].name);
		cr_assert_eq(img_kind_of_name(want[i].name), want[i].kind, "%s", want[i].name);
	}
	cr_assert_str_eq(img_name(0, 1, buf, sizeof(buf)), "unknown-0.img");
	char unknown[32];

	snprintf(unknown, sizeof(unknown), "unknown-%d.img", IMG_KIND_MAX);
	cr_assert_str_eq(img_name(IMG_KIND_MAX, 1, buf, sizeof(buf)), unknown);
	/* a name cut short by a small buffer is still terminated */
	cr_assert_str_eq(img_name(IMG_PAGEMAP, 123456, buf, 8), "pagemap");
}

Test(image, kind_of_name_both_ways)
{
	static const pid_t pids[] = {0, 1, 7, 42, 4194304, 2147483647};
	char buf[64];

	for (unsigned int k = IMG_INVENTORY; k < IMG_KIND_MAX; k++) {
		if (k == IMG_STATS)
			continue; /* named by a word, not a pid: checked below */
		for (size_t p = 0; p < sizeof(pids) / sizeof(pids[0]); p++) {
			img_name(k, pids[p], buf, sizeof(buf));
			cr_assert_eq(img_kind_of_name(buf), k, "%s", buf);
		}
	}
	cr_assert_eq(img_kind_of_name("stats-dump.img"), IMG_STATS);
	cr_assert_eq(img_kind_of_name("stats-restore.img"), IMG_STATS);
}

Test(image, kind_of_name_rejects)
{
	static const char *const bad[] = {
		"core-12x.img",	  "core-.img",	   "foo.img",	     "",
		".img",		  "core-1.im",	   "core-1.img.bak", "core-1.IMG",
		"xcore-1.img",	  "core1.img",	   "core--1.img",    "core- 1.img",
		"pages-.img",	  "pagemap-a.img", "mm-1x2.img",     "inventory",
		"inventory.img2", "pstree-1.img",  "files-1.img",    "stats-.img",
		"unknown-0.img",  "fdinfo-1.img/", "/core-1.img",    "core-0x1.img",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(img_kind_of_name(bad[i]), 0, "\"%s\" accepted", bad[i]);
}

Test(image, kind_strings_and_schemas)
{
	cr_assert_str_eq(img_kind_str(IMG_CORE), "core");
	cr_assert_str_eq(img_kind_str(IMG_PAGES), "pages");
	cr_assert_str_eq(img_kind_str(0), "unknown");
	cr_assert_str_eq(img_kind_str(IMG_KIND_MAX), "unknown");
	cr_assert_eq(img_kind_desc(IMG_INVENTORY), &inventory_entry__descriptor);
	cr_assert_eq(img_kind_desc(IMG_PSTREE), &pstree_entry__descriptor);
	cr_assert_eq(img_kind_desc(IMG_CORE), &task_core_entry__descriptor);
	cr_assert_eq(img_kind_desc(IMG_MM), &mm_entry__descriptor);
	cr_assert_eq(img_kind_desc(IMG_FDINFO), &fd_entry__descriptor);
	cr_assert_eq(img_kind_desc(IMG_FILES), &file_entry__descriptor);
	cr_assert_null(img_kind_desc(IMG_PAGEMAP)); /* head + entries: two types */
	cr_assert_null(img_kind_desc(IMG_PAGES));
	cr_assert_null(img_kind_desc(0));
	cr_assert_null(img_kind_desc(IMG_KIND_MAX));
}

/* --- round trips --------------------------------------------------------------------- */

typedef void check_fn(const ProtobufCMessage *want, const ProtobufCMessage *got);

static void write_msgs(enum img_kind kind, ProtobufCMessage *const *msgs, size_t n)
{
	struct cr_img *img = img_open_write(dfd, kind, PID);

	cr_assert_not_null(img, "%s", crest_last_error());
	cr_assert_eq(img_kind(img), kind);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(img_write_msg(img, msgs[i]), 0, "%s", crest_last_error());
	cr_assert_eq(img_close(img), 0, "%s", crest_last_error());
}

/* Read back what write_msgs wrote and check every message, then a clean (repeatable) end. */
static void read_check(struct cr_img *img, const ProtobufCMessageDescriptor *desc,
		       ProtobufCMessage *const *msgs, size_t n, check_fn *check)
{
	for (size_t i = 0; i < n; i++) {
		ProtobufCMessage *got;

		cr_assert_eq(img_read_msg(img, desc, &got), 1, "message %zu: %s", i,
			     crest_last_error());
		cr_assert_eq(got->descriptor, desc);
		check(msgs[i], got);
		unit_assert_same_packed(msgs[i], got);
		protobuf_c_message_free_unpacked(got, NULL);
	}
}

static void roundtrip(enum img_kind kind, ProtobufCMessage *const *msgs, size_t n, check_fn *check)
{
	const ProtobufCMessageDescriptor *desc = img_kind_desc(kind);
	ProtobufCMessage *got;
	struct cr_img *img;

	write_msgs(kind, msgs, n);
	img = img_open_read(dfd, kind, PID);
	cr_assert_not_null(img, "%s", crest_last_error());
	cr_assert_eq(img_kind(img), kind);
	read_check(img, desc, msgs, n, check);
	cr_assert_eq(img_read_msg(img, desc, &got), 0);
	cr_assert_null(got);
	cr_assert_eq(img_read_msg(img, desc, &got), 0);
	img_close(img);
}

static void check_inventory(const ProtobufCMessage *w, const ProtobufCMessage *g)
{
	const InventoryEntry *a = (const void *)w, *b = (const void *)g;

	cr_assert_eq(a->img_version, b->img_version);
	cr_assert_eq(a->root_pid, b->root_pid);
	cr_assert_str_eq(a->arch, b->arch);
	cr_assert_str_eq(a->kernel_release, b->kernel_release);
	cr_assert_eq(!a->crest_version, !b->crest_version);
	cr_assert_eq(a->has_dump_realtime_ns, b->has_dump_realtime_ns);
	cr_assert(!a->has_dump_realtime_ns || a->dump_realtime_ns == b->dump_realtime_ns);
	cr_assert_eq(a->has_vdso_sha256, b->has_vdso_sha256);
	cr_assert_eq(a->vdso_sha256.len, b->vdso_sha256.len);
	cr_assert(!a->vdso_sha256.len ||
		  !memcmp(a->vdso_sha256.data, b->vdso_sha256.data, a->vdso_sha256.len));
	cr_assert_eq(!a->parent_dir, !b->parent_dir);
	cr_assert_eq(a->has_shell_job, b->has_shell_job);
	cr_assert_eq(a->shell_job, b->shell_job);
	cr_assert_eq(a->has_xsave_size, b->has_xsave_size);
	cr_assert(!a->has_xsave_size || a->xsave_size == b->xsave_size);
}

Test(image, roundtrip_inventory)
{
	InventoryEntry inv[N_MSGS];
	ProtobufCMessage *msgs[N_MSGS];
	uint8_t sha[32];

	memset(sha, 0x5a, sizeof(sha));
	for (int i = 0; i < N_MSGS; i++) {
		inv[i] = (InventoryEntry)INVENTORY_ENTRY__INIT;
		inv[i].img_version = IMG_VERSION;
		inv[i].root_pid = 100 + i;
		inv[i].arch = "x86_64";
		inv[i].kernel_release = i ? "6.1.0" : ""; /* an empty required string */
		/* alternate messages carry the optional fields: absence must survive too */
		if (i & 1) {
			inv[i].crest_version = CREST_VERSION;
			inv[i].has_dump_realtime_ns = true;
			inv[i].dump_realtime_ns = 1700000000123456789ull;
			inv[i].has_vdso_sha256 = true;
			inv[i].vdso_sha256 = (ProtobufCBinaryData){sizeof(sha), sha};
			inv[i].parent_dir = "../pre";
			inv[i].has_shell_job = true;
			inv[i].has_xsave_size = true;
			inv[i].xsave_size = 2696;
		}
		msgs[i] = &inv[i].base;
	}
	roundtrip(IMG_INVENTORY, msgs, N_MSGS, check_inventory);
}

static void check_pstree(const ProtobufCMessage *w, const ProtobufCMessage *g)
{
	const PstreeEntry *a = (const void *)w, *b = (const void *)g;

	cr_assert_eq(a->pid, b->pid);
	cr_assert_eq(a->ppid, b->ppid);
	cr_assert_eq(a->pgid, b->pgid);
	cr_assert_eq(a->sid, b->sid);
	cr_assert_eq(a->n_threads, b->n_threads);
	for (size_t i = 0; i < a->n_threads; i++)
		cr_assert_eq(a->threads[i], b->threads[i]);
}

Test(image, roundtrip_pstree)
{
	PstreeEntry ps[N_MSGS];
	ProtobufCMessage *msgs[N_MSGS];
	uint32_t tids[N_MSGS][N_MSGS];

	for (int i = 0; i < N_MSGS; i++) {
		ps[i] = (PstreeEntry)PSTREE_ENTRY__INIT;
		ps[i].pid = 10 + i;
		ps[i].ppid = i ? 10 : 0;
		ps[i].pgid = 10;
		ps[i].sid = 4294967295u;
		for (int t = 0; t < i; t++)
			tids[i][t] = 10 + i + 100 * t;
		ps[i].n_threads = i; /* 0 threads: an empty repeated field */
		ps[i].threads = tids[i];
		msgs[i] = &ps[i].base;
	}
	roundtrip(IMG_PSTREE, msgs, N_MSGS, check_pstree);
}

static void check_core(const ProtobufCMessage *w, const ProtobufCMessage *g)
{
	core_assert_equal((const TaskCoreEntry *)w, (const TaskCoreEntry *)g);
}

Test(image, roundtrip_core)
{
	struct core_fixture *f = calloc(N_MSGS, sizeof(*f));
	ProtobufCMessage *msgs[N_MSGS];

	cr_assert_not_null(f);
	for (int i = 0; i < N_MSGS; i++) {
		core_fixture_init(&f[i], i);
		msgs[i] = &f[i].core.base;
	}
	roundtrip(IMG_CORE, msgs, N_MSGS, check_core);
	free(f);
}

static void check_mm(const ProtobufCMessage *w, const ProtobufCMessage *g)
{
	mm_assert_equal((const MmEntry *)w, (const MmEntry *)g);
}

Test(image, roundtrip_mm)
{
	struct mm_fixture f[N_MSGS];
	ProtobufCMessage *msgs[N_MSGS];

	for (int i = 0; i < N_MSGS; i++) {
		mm_fixture_init(&f[i], i);
		msgs[i] = &f[i].mm.base;
	}
	f[0].mm.n_vmas = 0; /* a message with no repeated elements at all */
	f[0].mm.n_auxv = 0;
	f[0].mm.exe_path = NULL;
	roundtrip(IMG_MM, msgs, N_MSGS, check_mm);
}

static void check_pagemap_entry(const ProtobufCMessage *w, const ProtobufCMessage *g)
{
	const PagemapEntry *a = (const void *)w, *b = (const void *)g;

	cr_assert_eq(a->vaddr, b->vaddr);
	cr_assert_eq(a->nr_pages, b->nr_pages);
	cr_assert_eq(a->flags, b->flags);
	cr_assert_eq(a->has_off, b->has_off);
	cr_assert(!a->has_off || a->off == b->off);
	cr_assert_eq(a->has_clen, b->has_clen);
	cr_assert(!a->has_clen || a->clen == b->clen);
	/* an absent optional reads back as absent, with a zero value */
	cr_assert(a->has_clen || b->clen == 0);
}

Test(image, roundtrip_pagemap)
{
	PagemapHead head = PAGEMAP_HEAD__INIT;
	PagemapEntry pe[N_MSGS];
	ProtobufCMessage *msgs[N_MSGS + 1] = {&head.base};
	PagemapHead *got_head;
	ProtobufCMessage *m;
	struct cr_img *img;

	head.nr_runs = N_MSGS;
	head.pages_size = 3 * 4096;
	for (int i = 0; i < N_MSGS; i++) {
		pe[i] = (PagemapEntry)PAGEMAP_ENTRY__INIT;
		pe[i].vaddr = 0x7fff00000000ull + (uint64_t)i * 0x200000;
		pe[i].nr_pages = 1u << i;
		pe[i].flags = 1u << (i % 4);
		pe[i].has_off = i & 1;
		pe[i].off = 4096 * i;
		pe[i].has_clen = i == 3;
		pe[i].clen = 1234;
		msgs[i + 1] = &pe[i].base;
	}
	write_msgs(IMG_PAGEMAP, msgs, N_MSGS + 1);

	img = img_open_read(dfd, IMG_PAGEMAP, PID);
	cr_assert_not_null(img, "%s", crest_last_error());
	cr_assert_eq(img_read_msg(img, &pagemap_head__descriptor, &m), 1);
	got_head = (PagemapHead *)m;
	cr_assert_eq(got_head->nr_runs, N_MSGS);
	cr_assert_eq(got_head->pages_size, 3 * 4096);
	protobuf_c_message_free_unpacked(m, NULL);
	read_check(img, &pagemap_entry__descriptor, msgs + 1, N_MSGS, check_pagemap_entry);
	cr_assert_eq(img_read_msg(img, &pagemap_entry__descriptor, &m), 0);
	img_close(img);
}

static void check_fd(const ProtobufCMessage *w, const ProtobufCMessage *g)
{
	const FdEntry *a = (const void *)w, *b = (const void *)g;

	cr_assert_eq(a->fd, b->fd);
	cr_assert_eq(a->id, b->id);
	cr_assert_eq(a->cloexec, b->cloexec);
}

Test(image, roundtrip_fdinfo)
{
	FdEntry fd[N_MSGS];
	ProtobufCMessage *msgs[N_MSGS];

	for (int i = 0; i < N_MSGS; i++) {
		fd[i] = (FdEntry)FD_ENTRY__INIT;
		fd[i].fd = i * 300;
		fd[i].id = i / 2;
		fd[i].cloexec = i & 1;
		msgs[i] = &fd[i].base;
	}
	roundtrip(IMG_FDINFO, msgs, N_MSGS, check_fd);
}

static void check_file(const ProtobufCMessage *w, const ProtobufCMessage *g)
{
	const FileEntry *a = (const void *)w, *b = (const void *)g;

	cr_assert_eq(a->id, b->id);
	cr_assert_eq(a->kind, b->kind);
	cr_assert_eq(!a->reg, !b->reg);
	if (!a->reg)
		return;
	cr_assert_str_eq(a->reg->path, b->reg->path);
	cr_assert_eq(a->reg->flags, b->reg->flags);
	cr_assert_eq(a->reg->pos, b->reg->pos);
	cr_assert_eq(a->reg->has_size, b->reg->has_size);
	cr_assert(!a->reg->has_size || a->reg->size == b->reg->size);
	cr_assert_eq(a->reg->has_mode, b->reg->has_mode);
	cr_assert_eq(a->reg->mode, b->reg->mode);
}

Test(image, roundtrip_files)
{
	FileEntry fe[N_MSGS];
	RegFileEntry reg[N_MSGS];
	ProtobufCMessage *msgs[N_MSGS];

	for (int i = 0; i < N_MSGS; i++) {
		fe[i] = (FileEntry)FILE_ENTRY__INIT;
		reg[i] = (RegFileEntry)REG_FILE_ENTRY__INIT;
		fe[i].id = i + 1;
		fe[i].kind = i % 3 + 1;
		reg[i].path =
			i ? "/var/log/app.log" : "/tmp/\xc3\xa9t\xc3\xa9 \xff"; /* any bytes */
		reg[i].flags = 0101 + i;
		reg[i].pos = (uint64_t)i << 40;
		reg[i].has_size = i & 1;
		reg[i].size = 1ull << 40;
		reg[i].has_mode = true;
		reg[i].mode = 0100644;
		if (fe[i].kind == FD_KIND__FD_REG || i == 4)
			fe[i].reg = &reg[i];
		msgs[i] = &fe[i].base;
	}
	roundtrip(IMG_FILES, msgs, N_MSGS, check_file);
}

/* Many messages, and ones larger than the writer's buffer, cross every buffering path. */
Test(image, roundtrip_large_and_many)
{
	size_t big = 1u << 20;
	InventoryEntry inv = INVENTORY_ENTRY__INIT;
	PstreeEntry ps = PSTREE_ENTRY__INIT;
	uint8_t *blob = malloc(big);
	ProtobufCMessage *m;
	struct cr_img *img;

	cr_assert_not_null(blob);
	for (size_t i = 0; i < big; i++)
		blob[i] = i * 31 + (i >> 12);
	inv.arch = "x86_64";
	inv.kernel_release = "6.1";
	inv.has_vdso_sha256 = true;
	inv.vdso_sha256 = (ProtobufCBinaryData){big, blob};
	img = img_open_write(dfd, IMG_PSTREE, 0);
	cr_assert_not_null(img);
	for (uint32_t i = 0; i < 20000; i++) {
		ps.pid = i;
		cr_assert_eq(img_write_msg(img, &ps.base), 0);
		if (i % 5000 == 0) /* an odd-sized giant in between */
			cr_assert_eq(img_write_msg(img, &inv.base), 0);
	}
	cr_assert_eq(img_close(img), 0, "%s", crest_last_error());

	img = img_open_read(dfd, IMG_PSTREE, 0);
	cr_assert_not_null(img, "%s", crest_last_error());
	for (uint32_t i = 0; i < 20000; i++) {
		cr_assert_eq(img_read_msg(img, &pstree_entry__descriptor, &m), 1, "%u: %s", i,
			     crest_last_error());
		cr_assert_eq(((PstreeEntry *)m)->pid, i);
		protobuf_c_message_free_unpacked(m, NULL);
		if (i % 5000)
			continue;
		cr_assert_eq(img_read_msg(img, &inventory_entry__descriptor, &m), 1);
		cr_assert_eq(((InventoryEntry *)m)->vdso_sha256.len, big);
		cr_assert(!memcmp(((InventoryEntry *)m)->vdso_sha256.data, blob, big));
		protobuf_c_message_free_unpacked(m, NULL);
	}
	cr_assert_eq(img_read_msg(img, &pstree_entry__descriptor, &m), 0);
	img_close(img);
	free(blob);
}

Test(image, read_one_write_one)
{
	struct mm_fixture f;
	ProtobufCMessage *m;

	mm_fixture_init(&f, 3);
	cr_assert_eq(img_write_one(dfd, IMG_MM, PID, &f.mm.base), 0);
	cr_assert_eq(img_read_one(dfd, IMG_MM, PID, &mm_entry__descriptor, &m), 0, "%s",
		     crest_last_error());
	mm_assert_equal(&f.mm, (MmEntry *)m);
	protobuf_c_message_free_unpacked(m, NULL);
}

/* --- sizes, offsets and the pages image ---------------------------------------------- */

Test(image, pages_data_is_page_aligned)
{
	size_t big = 300 << 10; /* over the writer buffer: written around it */
	unsigned char *data = malloc(big), *file;
	struct img_header hdr;
	struct cr_img *img;
	size_t len;

	cr_assert_not_null(data);
	for (size_t i = 0; i < big; i++)
		data[i] = i % 251;
	img = img_open_write(dfd, IMG_PAGES, PID);
	cr_assert_not_null(img);
	cr_assert_eq(img_size(img), IMG_PAGES_HDR_SIZE);
	cr_assert_eq(img_data_off(img), 0);
	cr_assert_eq(img_write_raw(img, data, 100), 0);
	cr_assert_eq(img_data_off(img), 100);
	cr_assert_eq(img_write_raw(img, data + 100, big - 100), 0);
	cr_assert_eq(img_data_off(img), big);
	cr_assert_eq(img_write_raw(img, data, 4096), 0);
	cr_assert_eq(img_data_off(img), big + 4096);
	cr_assert_eq(img_size(img), IMG_PAGES_HDR_SIZE + big + 4096);
	cr_assert_eq(img_close(img), 0);

	file = unit_read_file(dfd, "pages-42.img", &len);
	cr_assert_eq(len, IMG_PAGES_HDR_SIZE + big + 4096);
	memcpy(&hdr, file, sizeof(hdr));
	cr_assert_eq(hdr.magic, IMG_MAGIC);
	cr_assert_eq(hdr.version, IMG_VERSION);
	cr_assert_eq(hdr.kind, IMG_PAGES);
	for (size_t i = sizeof(hdr); i < IMG_PAGES_HDR_SIZE; i++)
		cr_assert_eq(file[i], 0, "header padding byte %zu is %u", i, file[i]);
	cr_assert(!memcmp(file + IMG_PAGES_HDR_SIZE, data, big));
	cr_assert(!memcmp(file + IMG_PAGES_HDR_SIZE + big, data, 4096));

	img = img_open_read(dfd, IMG_PAGES, PID);
	cr_assert_not_null(img, "%s", crest_last_error());
	cr_assert_eq(img_kind(img), IMG_PAGES);
	cr_assert_eq(img_size(img), len);
	cr_assert_eq(img_data_off(img), big + 4096);
	cr_assert_eq(pread(img_fd(img), data, 4096, IMG_PAGES_HDR_SIZE), 4096);
	cr_assert(!memcmp(data, file + IMG_PAGES_HDR_SIZE, 4096));
	img_close(img);
	/* the explicit-name reader (crest show) recognises it as well */
	img = img_open_read_path(dfd, "pages-42.img");
	cr_assert_not_null(img, "%s", crest_last_error());
	cr_assert_eq(img_kind(img), IMG_PAGES);
	img_close(img);
	free(file);
	free(data);
}

Test(image, message_image_sizes_and_path)
{
	PstreeEntry ps = PSTREE_ENTRY__INIT;
	size_t packed = protobuf_c_message_get_packed_size(&ps.base);
	struct cr_img *img = img_open_write(dfd, IMG_PSTREE, 0);
	char want[PATH_MAX];

	cr_assert_not_null(img);
	cr_assert_eq(img_size(img), sizeof(struct img_header));
	cr_assert_eq(img_data_off(img), 0);
	cr_assert_eq(img_write_msg(img, &ps.base), 0);
	cr_assert_eq(img_data_off(img), 4 + packed);
	snprintf(want, sizeof(want), "%s/pstree.img", tmp);
	cr_assert_str_eq(img_path(img), want);
	cr_assert(img_fd(img) >= 0);
	cr_assert_eq(img_close(img), 0);

	img = img_open_read(dfd, IMG_PSTREE, 0);
	cr_assert_not_null(img);
	cr_assert_eq(img_size(img), sizeof(struct img_header) + 4 + packed);
	cr_assert_str_eq(img_path(img), want);
	img_close(img);
	/* absolute names and AT_FDCWD keep the name as given */
	img = img_open_read_path(AT_FDCWD, want);
	cr_assert_not_null(img);
	cr_assert_str_eq(img_path(img), want);
	cr_assert_eq(img_kind(img), IMG_PSTREE);
	img_close(img);
	cr_assert_eq(img_close(NULL), 0);
}

Test(image, write_failure_is_reported)
{
	PstreeEntry ps = PSTREE_ENTRY__INIT;
	struct cr_img *img;

	/* the image is created through a symlink to a device where every write fails */
	cr_assert_eq(symlinkat("/dev/full", dfd, "pstree.img"), 0);
	img = img_open_write(dfd, IMG_PSTREE, 0);
	cr_assert_not_null(img);
	cr_assert_eq(img_write_msg(img, &ps.base), 0); /* buffered so far */
	cr_assert_eq(img_close(img), -1);
	unit_assert_error("pstree.img", "write failed");
}

Test(image, write_over_size_limit)
{
	InventoryEntry inv = INVENTORY_ENTRY__INIT;
	struct cr_img *img;
	uint8_t *blob = calloc(1, IMG_MSG_MAX); /* untouched zero pages: cheap */

	cr_assert_not_null(blob);
	inv.arch = inv.kernel_release = "";
	inv.has_vdso_sha256 = true;
	inv.vdso_sha256 = (ProtobufCBinaryData){IMG_MSG_MAX, blob};
	img = img_open_write(dfd, IMG_INVENTORY, 0);
	cr_assert_not_null(img);
	cr_assert_eq(img_write_msg(img, &inv.base), -1);
	unit_assert_error("inventory.img", "over the");
	img_close(img);
	free(blob);
}

/* --- malformed input ----------------------------------------------------------------- */

/*
 * An image file holding the given header fields and then body as given.  The header is
 * unsealed (no payload size, no checksum), so whatever is wrong with body is left for the
 * message parser to find: these tests are about its checks, not the seal's.
 */
static void put_image(const char *name, uint32_t magic, uint16_t version, uint16_t kind,
		      const void *body, size_t len)
{
	unsigned char *buf = malloc(sizeof(struct img_header) + len);

	cr_assert_not_null(buf);
	unit_put_header(buf, magic, version, kind);
	if (len)
		memcpy(buf + sizeof(struct img_header), body, len);
	unit_write_file(dfd, name, buf, sizeof(struct img_header) + len);
	free(buf);
}

static void put_core(const void *body, size_t len)
{
	put_image("core-1.img", IMG_MAGIC, IMG_VERSION, IMG_CORE, body, len);
}

/* Lay out a length prefix and then blen body bytes at out; returns the bytes used. */
static size_t put_msg(unsigned char *out, uint32_t len, const void *body, size_t blen)
{
	memcpy(out, &len, sizeof(len));
	memcpy(out + sizeof(len), body, blen);
	return sizeof(len) + blen;
}

/* The open must fail, with the file and the problem in the error. */
static void expect_open_fails(enum img_kind kind, const char *file, const char *problem)
{
	error_reset();
	cr_assert_null(img_open_read(dfd, kind, 1), "%s opened", file);
	unit_assert_error(file, problem);
}

/* The open succeeds; reading the first message of core-1.img must fail as described. */
static void expect_read_fails(const char *problem)
{
	struct cr_img *img;
	ProtobufCMessage *m = (void *)1;

	error_reset();
	img = img_open_read(dfd, IMG_CORE, 1);
	cr_assert_not_null(img, "%s", crest_last_error());
	cr_assert_eq(img_read_msg(img, &task_core_entry__descriptor, &m), -1);
	cr_assert_null(m);
	unit_assert_error("core-1.img", problem);
	img_close(img);
}

Test(image, rejects_bad_magic)
{
	put_image("core-1.img", 0xdeadbeef, IMG_VERSION, IMG_CORE, NULL, 0);
	expect_open_fails(IMG_CORE, "core-1.img", "bad magic 0xdeadbeef");
	/* byte-swapped magic: an image from a big-endian writer */
	put_image("core-1.img", __builtin_bswap32(IMG_MAGIC), IMG_VERSION, IMG_CORE, NULL, 0);
	expect_open_fails(IMG_CORE, "core-1.img", "bad magic");
	put_image("pages-1.img", 0, IMG_VERSION, IMG_PAGES, NULL, 0);
	expect_open_fails(IMG_PAGES, "pages-1.img", "bad magic");
}

Test(image, rejects_unknown_version)
{
	static const uint16_t versions[] = {0, IMG_VERSION + 1, 0xffff};

	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
		char want[64];

		put_image("core-1.img", IMG_MAGIC, versions[i], IMG_CORE, NULL, 0);
		snprintf(want, sizeof(want), "unsupported image version %u", versions[i]);
		expect_open_fails(IMG_CORE, "core-1.img", want);
	}
	put_image("mm-1.img", IMG_MAGIC, 2, IMG_MM, NULL, 0);
	expect_open_fails(IMG_MM, "mm-1.img", "unsupported image version 2");
}

Test(image, rejects_wrong_kind)
{
	put_image("core-1.img", IMG_MAGIC, IMG_VERSION, IMG_MM, NULL, 0);
	expect_open_fails(IMG_CORE, "core-1.img", "image kind 4 is not core");
	put_image("pages-1.img", IMG_MAGIC, IMG_VERSION, IMG_CORE, NULL, 0);
	expect_open_fails(IMG_PAGES, "pages-1.img", "is not pages");
	/* kinds no crest knows, through the by-name reader that takes any kind */
	put_image("core-1.img", IMG_MAGIC, IMG_VERSION, 0, NULL, 0);
	error_reset();
	cr_assert_null(img_open_read_path(dfd, "core-1.img"));
	unit_assert_error("core-1.img", "image kind 0 is not known");
	put_image("core-1.img", IMG_MAGIC, IMG_VERSION, 999, NULL, 0);
	error_reset();
	cr_assert_null(img_open_read_path(dfd, "core-1.img"));
	unit_assert_error("core-1.img", "image kind 999 is not known");
}

Test(image, rejects_pages_kind_mismatch_by_name)
{
	unsigned char page[IMG_PAGES_HDR_SIZE] = {0};

	/* raw page data under a message image name */
	unit_put_header(page, IMG_MAGIC, IMG_VERSION, IMG_PAGES);
	unit_write_file(dfd, "core-1.img", page, sizeof(page));
	error_reset();
	cr_assert_null(img_open_read_path(dfd, "core-1.img"));
	unit_assert_error("core-1.img", "pages image under a message image name");
	/* and a message image under a pages name */
	unit_put_header(page, IMG_MAGIC, IMG_VERSION, IMG_CORE);
	unit_write_file(dfd, "pages-1.img", page, sizeof(page));
	error_reset();
	cr_assert_null(img_open_read_path(dfd, "pages-1.img"));
	unit_assert_error("pages-1.img", "is not pages");
}

Test(image, rejects_truncated_header)
{
	unsigned char hdr[IMG_PAGES_HDR_SIZE] = {0};

	unit_put_header(hdr, IMG_MAGIC, IMG_VERSION, IMG_CORE);
	for (size_t len = 0; len < sizeof(struct img_header); len++) {
		unit_write_file(dfd, "core-1.img", hdr, len);
		expect_open_fails(IMG_CORE, "core-1.img", "truncated image header");
	}
	/* a pages image whose header stops before the page boundary */
	unit_put_header(hdr, IMG_MAGIC, IMG_VERSION, IMG_PAGES);
	for (size_t len = 0; len < IMG_PAGES_HDR_SIZE; len += 1000) {
		unit_write_file(dfd, "pages-1.img", hdr, len ? len : 3);
		expect_open_fails(IMG_PAGES, "pages-1.img", "truncated image header");
	}
	unit_write_file(dfd, "pages-1.img", hdr, IMG_PAGES_HDR_SIZE - 1);
	expect_open_fails(IMG_PAGES, "pages-1.img", "truncated image header");
}

Test(image, rejects_truncated_length_prefix)
{
	unsigned char body[64];
	PstreeEntry ps = PSTREE_ENTRY__INIT;
	size_t len = protobuf_c_message_get_packed_size(&ps.base), off;
	uint32_t le = len;

	for (size_t cut = 1; cut < 4; cut++) {
		put_core(&le, cut);
		expect_read_fails("partial length prefix");
	}
	/* after a good message, at the offset where the second prefix starts */
	memcpy(body, &le, 4);
	off = 4 + protobuf_c_message_pack(&ps.base, body + 4);
	body[off++] = 1;
	put_image("pstree.img", IMG_MAGIC, IMG_VERSION, IMG_PSTREE, body, off);
	{
		struct cr_img *img = img_open_read(dfd, IMG_PSTREE, 0);
		ProtobufCMessage *m;
		char want[64];

		cr_assert_not_null(img);
		cr_assert_eq(img_read_msg(img, &pstree_entry__descriptor, &m), 1);
		protobuf_c_message_free_unpacked(m, NULL);
		error_reset();
		cr_assert_eq(img_read_msg(img, &pstree_entry__descriptor, &m), -1);
		snprintf(want, sizeof(want), "at offset %zu (partial length prefix)",
			 HDR_LEN + off - 1);
		unit_assert_error("pstree.img", want);
		img_close(img);
	}
}

Test(image, rejects_length_beyond_file)
{
	unsigned char body[64] = {0}, ten[10] = {0x08, 0x01};
	char want[64];
	size_t n;

	n = put_msg(body, 100, ten, sizeof(ten));
	put_core(body, n);
	snprintf(want, sizeof(want), "truncated at offset %zu (message of 100 bytes, 10 left)",
		 HDR_LEN);
	expect_read_fails(want);
	n = put_msg(body, 1, "", 0); /* one byte claimed, none there */
	put_core(body, n);
	expect_read_fails("message of 1 bytes, 0 left");
	/* just at the limit is "truncated", not "corrupt": the limit is not off by one */
	n = put_msg(body, IMG_MSG_MAX, "", 0);
	put_core(body, n);
	snprintf(want, sizeof(want), "truncated at offset %zu (message of %u bytes", HDR_LEN,
		 IMG_MSG_MAX);
	expect_read_fails(want);
}

Test(image, rejects_length_over_limit)
{
	static const uint32_t lens[] = {IMG_MSG_MAX + 1, 0x80000000u, 0xffffffffu};
	unsigned char body[16] = {0};

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		char want[64];

		put_core(body, put_msg(body, lens[i], "\0\0\0\0", 4));
		snprintf(want, sizeof(want), "corrupt at offset %zu (message length %u)", HDR_LEN,
			 lens[i]);
		expect_read_fails(want);
	}
}

Test(image, rejects_corrupt_protobuf)
{
	static const struct {
		const char *bytes;
		size_t len;
	} bad[] = {
		{"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11}, /* endless tag varint */
		{"\x0a\x10"
		 "abc",
		 5}, /* field 1 is a varint, not length-delimited */
		{"\x12\x7f"
		 "abc",
		 5},			     /* string longer than the message */
		{"\x08\x80", 2},	     /* varint cut off */
		{"\x0f", 1},		     /* wire type 7 does not exist */
		{"\x00", 1},		     /* field number 0 */
		{"\x5a\x05\x08\x01\x10", 5}, /* creds: nested message cut short */
	};
	unsigned char body[64];
	char want[64];

	snprintf(want, sizeof(want), "corrupt TaskCoreEntry message at offset %zu", HDR_LEN);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		put_core(body, put_msg(body, bad[i].len, bad[i].bytes, bad[i].len));
		expect_read_fails(want);
	}
}

Test(image, rejects_missing_required_field)
{
	struct core_fixture *f = malloc(sizeof(*f));
	unsigned char body[16];
	size_t n;

	/* only pid is there: comm, cwd, creds... are missing */
	put_core(body, put_msg(body, 2, "\x08\x05", 2));
	expect_read_fails("corrupt TaskCoreEntry message");
	/* a zero-length message has none of the required fields */
	put_core(body, put_msg(body, 0, "", 0));
	expect_read_fails("corrupt TaskCoreEntry message");
	/* a required field missing deep inside: a thread without its registers */
	cr_assert_not_null(f);
	core_fixture_init(f, 1);
	f->th[1].regs = NULL;
	f->core.n_threads = 2;
	{
		/* protobuf-c packs a NULL required message as an empty one, which then lacks
		 * every required register */
		size_t len = protobuf_c_message_get_packed_size(&f->core.base);
		unsigned char *buf = malloc(4 + len);

		cr_assert_not_null(buf);
		n = 4 + protobuf_c_message_pack(&f->core.base, buf + 4);
		memcpy(buf, &(uint32_t){len}, 4);
		put_core(buf, n);
		free(buf);
	}
	expect_read_fails("corrupt TaskCoreEntry message");
	free(f);
}

Test(image, read_one_rejects_trailing_data)
{
	PstreeEntry ps = PSTREE_ENTRY__INIT;
	ProtobufCMessage *msgs[2] = {&ps.base, &ps.base}, *m = (void *)1;

	write_msgs(IMG_PSTREE, msgs, 2);
	error_reset();
	cr_assert_eq(img_read_one(dfd, IMG_PSTREE, PID, &pstree_entry__descriptor, &m), -1);
	cr_assert_null(m);
	unit_assert_error("pstree.img", "trailing data after the message");
	/* a stray byte after the only message */
	{
		unsigned char body[32];
		size_t len = protobuf_c_message_pack(&ps.base, body + 4);

		memcpy(body, &(uint32_t){len}, 4);
		body[4 + len] = 0;
		put_image("pstree.img", IMG_MAGIC, IMG_VERSION, IMG_PSTREE, body, 4 + len + 1);
	}
	error_reset();
	cr_assert_eq(img_read_one(dfd, IMG_PSTREE, PID, &pstree_entry__descriptor, &m), -1);
	unit_assert_error("pstree.img", "trailing data");
}

Test(image, read_one_rejects_empty_image)
{
	ProtobufCMessage *m = (void *)1;

	put_image("inventory.img", IMG_MAGIC, IMG_VERSION, IMG_INVENTORY, NULL, 0);
	cr_assert_eq(img_read_one(dfd, IMG_INVENTORY, 0, &inventory_entry__descriptor, &m), -1);
	cr_assert_null(m);
	unit_assert_error("inventory.img", "empty image");
}

Test(image, rejects_missing_file)
{
	ProtobufCMessage *m = (void *)1;

	expect_open_fails(IMG_CORE, "core-1.img", "No such file or directory");
	expect_open_fails(IMG_PAGES, "pages-1.img", "No such file or directory");
	error_reset();
	cr_assert_eq(img_read_one(dfd, IMG_INVENTORY, 0, &inventory_entry__descriptor, &m), -1);
	cr_assert_null(m);
	unit_assert_error("inventory.img", "cannot open image");
	error_reset();
	cr_assert_null(img_open_read_path(dfd, "mm-3.img"));
	unit_assert_error("mm-3.img", "No such file or directory");
}

Test(image, rejects_message_read_from_pages_image)
{
	struct cr_img *img = img_open_write(dfd, IMG_PAGES, 1);
	ProtobufCMessage *m;

	cr_assert_not_null(img);
	cr_assert_eq(img_write_raw(img, "\x04\0\0\0\x08\x01\x10\x01", 8), 0);
	cr_assert_eq(img_close(img), 0);
	img = img_open_read(dfd, IMG_PAGES, 1);
	cr_assert_not_null(img);
	cr_assert_eq(img_read_msg(img, &pstree_entry__descriptor, &m), -1);
	unit_assert_error("pages-1.img", "not a message image");
	img_close(img);
}

Test(image, error_names_second_message_offset)
{
	struct core_fixture *f = malloc(sizeof(*f));
	unsigned char *file, *body;
	size_t len, first;
	char want[64];

	cr_assert_not_null(f);
	core_fixture_init(f, 2);
	cr_assert_eq(img_write_one(dfd, IMG_CORE, 1, &f->core.base), 0);
	file = unit_read_file(dfd, "core-1.img", &len);
	first = len - sizeof(struct img_header);
	body = malloc(first + 8);
	cr_assert_not_null(body);
	memcpy(body, file + sizeof(struct img_header), first);
	memcpy(body + first, "\x04\0\0\0\xff\xff\xff\xff", 8);
	put_core(body, first + 8);
	{
		struct cr_img *img = img_open_read(dfd, IMG_CORE, 1);
		ProtobufCMessage *m;

		cr_assert_not_null(img);
		cr_assert_eq(img_read_msg(img, &task_core_entry__descriptor, &m), 1);
		core_assert_equal(&f->core, (TaskCoreEntry *)m);
		protobuf_c_message_free_unpacked(m, NULL);
		error_reset();
		cr_assert_eq(img_read_msg(img, &task_core_entry__descriptor, &m), -1);
		snprintf(want, sizeof(want), "corrupt TaskCoreEntry message at offset %zu", len);
		unit_assert_error("core-1.img", want);
		img_close(img);
	}
	free(body);
	free(file);
	free(f);
}

/* --- sealed images: the payload size and checksum img_close writes into the header ------- */

static struct img_header header_of(const void *file)
{
	struct img_header hdr;

	memcpy(&hdr, file, sizeof(hdr));
	return hdr;
}

static void set_header(void *file, const struct img_header *hdr)
{
	memcpy(file, hdr, sizeof(*hdr));
}

/* A sealed core-1.img of three full core messages; returns its bytes (malloc'ed). */
static unsigned char *make_sealed_core(size_t *len)
{
	struct core_fixture *f = calloc(3, sizeof(*f));
	struct cr_img *img = img_open_write(dfd, IMG_CORE, 1);

	cr_assert_not_null(f);
	cr_assert_not_null(img, "%s", crest_last_error());
	for (int i = 0; i < 3; i++) {
		core_fixture_init(&f[i], i);
		cr_assert_eq(img_write_msg(img, &f[i].core.base), 0);
	}
	cr_assert_eq(img_close(img), 0, "%s", crest_last_error());
	free(f);
	return unit_read_file(dfd, "core-1.img", len);
}

/* Messages in core-1.img through the plain reader, or -1 (the error is recorded). */
static int core_messages(void)
{
	struct cr_img *img = img_open_read(dfd, IMG_CORE, 1);
	ProtobufCMessage *m;
	int n = 0, ret;

	if (!img)
		return -1;
	while ((ret = img_read_msg(img, &task_core_entry__descriptor, &m)) == 1) {
		protobuf_c_message_free_unpacked(m, NULL);
		n++;
	}
	img_close(img);
	return ret < 0 ? -1 : n;
}

/* The header's on-disk layout: little-endian fields in this order, no padding anywhere. */
Test(image, sealed_header_layout)
{
	struct img_header hdr = {
		.magic = IMG_MAGIC,
		.version = 0x0605,
		.kind = 0x0807,
		.flags = 0x0c0b0a09,
		.crc = 0x100f0e0d,
		.payload = 0x1817161514131211ull,
	};
	unsigned char raw[24];

	cr_assert_eq(sizeof(hdr), sizeof(raw));
	memcpy(raw, &hdr, sizeof(raw));
	cr_assert(!memcmp(raw, "CRST", 4));
	for (size_t i = 4; i < sizeof(raw); i++)
		cr_assert_eq(raw[i], i + 1, "header byte %zu is 0x%02x", i, raw[i]);
}

Test(image, sealed_message_header_fields)
{
	size_t big = 300 << 10; /* over the writer buffer: the crc must cover direct writes too */
	InventoryEntry inv = INVENTORY_ENTRY__INIT;
	PstreeEntry ps = PSTREE_ENTRY__INIT;
	uint8_t *blob = malloc(big);
	struct img_header hdr;
	struct mm_fixture mm;
	unsigned char *file;
	ProtobufCMessage *m;
	struct cr_img *img;
	size_t len;

	cr_assert_not_null(blob);
	for (size_t i = 0; i < big; i++)
		blob[i] = i * 13 + (i >> 10);
	inv.arch = "x86_64";
	inv.kernel_release = "6.1";
	inv.has_vdso_sha256 = true;
	inv.vdso_sha256 = (ProtobufCBinaryData){big, blob};
	img = img_open_write(dfd, IMG_PSTREE, 0);
	cr_assert_not_null(img);
	for (uint32_t i = 0; i < 1000; i++) {
		ps.pid = i;
		cr_assert_eq(img_write_msg(img, &ps.base), 0);
		if (i == 500)
			cr_assert_eq(img_write_msg(img, &inv.base), 0);
	}
	cr_assert_eq(img_close(img), 0, "%s", crest_last_error());
	free(blob);

	file = unit_read_file(dfd, "pstree.img", &len);
	cr_assert_gt(len, HDR_LEN + big);
	hdr = header_of(file);
	cr_assert_eq(hdr.magic, IMG_MAGIC);
	cr_assert_eq(hdr.version, IMG_VERSION);
	cr_assert_eq(hdr.kind, IMG_PSTREE);
	cr_assert_eq(hdr.flags, IMG_F_PAYLOAD | IMG_F_CRC);
	cr_assert_eq(hdr.payload, len - HDR_LEN);
	cr_assert_eq(hdr.crc, unit_crc32(file + HDR_LEN, len - HDR_LEN), "crc 0x%08x, zlib 0x%08x",
		     hdr.crc, unit_crc32(file + HDR_LEN, len - HDR_LEN));
	free(file);
	/* and the reader, checking both, accepts it */
	img = img_open_read(dfd, IMG_PSTREE, 0);
	cr_assert_not_null(img, "%s", crest_last_error());
	cr_assert_eq(img_size(img), len);
	img_close(img);

	/* img_write_one seals as well */
	mm_fixture_init(&mm, 2);
	cr_assert_eq(img_write_one(dfd, IMG_MM, PID, &mm.mm.base), 0);
	file = unit_read_file(dfd, "mm-42.img", &len);
	hdr = header_of(file);
	cr_assert_eq(hdr.kind, IMG_MM);
	cr_assert_eq(hdr.flags, IMG_F_PAYLOAD | IMG_F_CRC);
	cr_assert_eq(hdr.payload, 4 + protobuf_c_message_get_packed_size(&mm.mm.base));
	cr_assert_eq(hdr.payload, len - HDR_LEN);
	cr_assert_eq(hdr.crc, unit_crc32(file + HDR_LEN, len - HDR_LEN));
	free(file);

	/* an image with no messages at all: no payload, the crc of nothing */
	img = img_open_write(dfd, IMG_FDINFO, PID);
	cr_assert_not_null(img);
	cr_assert_eq(img_close(img), 0);
	file = unit_read_file(dfd, "fdinfo-42.img", &len);
	cr_assert_eq(len, HDR_LEN);
	hdr = header_of(file);
	cr_assert_eq(hdr.flags, IMG_F_PAYLOAD | IMG_F_CRC);
	cr_assert_eq(hdr.payload, 0);
	cr_assert_eq(hdr.crc, unit_crc32("", 0));
	cr_assert_eq(hdr.crc, 0);
	free(file);
	/* it passes the seal; what is wrong with it is that it is empty */
	error_reset();
	cr_assert_eq(img_read_one(dfd, IMG_FDINFO, PID, &fd_entry__descriptor, &m), -1);
	unit_assert_error("fdinfo-42.img", "empty image");
}

Test(image, sealed_pages_header_fields)
{
	unsigned char page[4096], *file;
	struct img_header hdr;
	struct cr_img *img;
	size_t len;

	img = img_open_write(dfd, IMG_PAGES, PID);
	cr_assert_not_null(img);
	for (int i = 0; i < 3; i++) {
		memset(page, 0x30 + i, sizeof(page));
		cr_assert_eq(img_write_raw(img, page, sizeof(page)), 0);
	}
	cr_assert_eq(img_close(img), 0);
	file = unit_read_file(dfd, "pages-42.img", &len);
	cr_assert_eq(len, IMG_PAGES_HDR_SIZE + 3 * 4096);
	hdr = header_of(file);
	cr_assert_eq(hdr.kind, IMG_PAGES);
	/* the size is sealed, counted from the end of the padded header; the data has no crc */
	cr_assert_eq(hdr.flags, IMG_F_PAYLOAD);
	cr_assert_eq(hdr.payload, 3 * 4096);
	cr_assert_eq(hdr.crc, 0);
	for (size_t i = HDR_LEN; i < IMG_PAGES_HDR_SIZE; i++)
		cr_assert_eq(file[i], 0, "header padding byte %zu is %u", i, file[i]);
	free(file);

	img = img_open_write(dfd, IMG_PAGES, 7);
	cr_assert_not_null(img);
	cr_assert_eq(img_close(img), 0);
	file = unit_read_file(dfd, "pages-7.img", &len);
	cr_assert_eq(len, IMG_PAGES_HDR_SIZE);
	hdr = header_of(file);
	cr_assert_eq(hdr.flags, IMG_F_PAYLOAD);
	cr_assert_eq(hdr.payload, 0);
	free(file);
	img = img_open_read(dfd, IMG_PAGES, 7);
	cr_assert_not_null(img, "%s", crest_last_error());
	cr_assert_eq(img_data_off(img), 0);
	img_close(img);
}

/* The open of a sealed core-1.img of n bytes (written len) must fail on its size. */
static void expect_size_refused(size_t n, size_t len)
{
	char want[128];
	ProtobufCMessage *m = (void *)1;

	snprintf(want, sizeof(want),
		 "truncated or extended: %zu bytes of payload, the header says %zu", n - HDR_LEN,
		 len - HDR_LEN);
	expect_open_fails(IMG_CORE, "core-1.img", want);
	/* the by-name reader (crest show) and img_read_one refuse it the same way */
	error_reset();
	cr_assert_null(img_open_read_path(dfd, "core-1.img"));
	unit_assert_error("core-1.img", want);
	error_reset();
	cr_assert_eq(img_read_one(dfd, IMG_CORE, 1, &task_core_entry__descriptor, &m), -1);
	cr_assert_null(m);
	unit_assert_error("core-1.img", want);
}

Test(image, sealed_truncated_or_extended)
{
	size_t len, first;
	unsigned char *file = make_sealed_core(&len), *buf;
	uint32_t mlen;

	buf = malloc(2 * len);
	cr_assert_not_null(buf);
	cr_assert_eq(core_messages(), 3, "%s", crest_last_error());
	memcpy(&mlen, file + HDR_LEN, sizeof(mlen));
	first = HDR_LEN + 4 + mlen; /* where the second message starts */
	cr_assert_lt(first, len);

	/* one byte short, one byte long */
	unit_write_file(dfd, "core-1.img", file, len - 1);
	expect_size_refused(len - 1, len);
	memcpy(buf, file, len);
	buf[len] = 0;
	unit_write_file(dfd, "core-1.img", buf, len + 1);
	expect_size_refused(len + 1, len);
	/* nothing but the header left */
	unit_write_file(dfd, "core-1.img", file, HDR_LEN);
	expect_size_refused(HDR_LEN, len);
	/* every other cut too */
	for (size_t cut = HDR_LEN + 1; cut < len; cut += 97) {
		unit_write_file(dfd, "core-1.img", file, cut);
		error_reset();
		cr_assert_null(img_open_read(dfd, IMG_CORE, 1), "cut at %zu accepted", cut);
		unit_assert_error("core-1.img", "truncated or extended");
	}
	/* a cut into the header itself is the header's problem */
	unit_write_file(dfd, "core-1.img", file, HDR_LEN - 1);
	expect_open_fails(IMG_CORE, "core-1.img", "truncated image header");

	/*
	 * What only the seal catches: a cut at a message boundary and a whole well-formed message
	 * appended.  Unsealed, the parser sees clean images of one and four messages.
	 */
	memcpy(buf, file, first);
	unit_write_file(dfd, "core-1.img", buf, first);
	expect_size_refused(first, len);
	unit_unseal(buf);
	unit_write_file(dfd, "core-1.img", buf, first);
	cr_assert_eq(core_messages(), 1, "%s", crest_last_error());
	memcpy(buf, file, len);
	memcpy(buf + len, file + HDR_LEN, first - HDR_LEN);
	unit_write_file(dfd, "core-1.img", buf, len + first - HDR_LEN);
	expect_size_refused(len + first - HDR_LEN, len);
	unit_unseal(buf);
	unit_write_file(dfd, "core-1.img", buf, len + first - HDR_LEN);
	cr_assert_eq(core_messages(), 4, "%s", crest_last_error());
	free(buf);
	free(file);
}

Test(image, sealed_checksum_mismatch)
{
	size_t len;
	unsigned char *file = make_sealed_core(&len), *buf = malloc(len), *comm;
	struct img_header hdr;
	ProtobufCMessage *m = (void *)1;
	char path[PATH_MAX];

	cr_assert_not_null(buf);
	/* every payload byte in turn, each with another bit flipped: crc32 catches them all */
	for (size_t pos = HDR_LEN; pos < len; pos++) {
		memcpy(buf, file, len);
		buf[pos] ^= 1u << (pos % 8);
		unit_write_file(dfd, "core-1.img", buf, len);
		error_reset();
		cr_assert_null(img_open_read(dfd, IMG_CORE, 1), "flipped byte %zu accepted", pos);
		unit_assert_error("core-1.img", "corrupted (checksum mismatch)");
	}
	/* one whole byte replaced, through every reader */
	memcpy(buf, file, len);
	buf[len / 2] ^= 0xff;
	unit_write_file(dfd, "core-1.img", buf, len);
	expect_open_fails(IMG_CORE, "core-1.img", "corrupted (checksum mismatch)");
	error_reset();
	cr_assert_null(img_open_read_path(dfd, "core-1.img"));
	unit_assert_error("core-1.img", "corrupted (checksum mismatch)");
	snprintf(path, sizeof(path), "%s/core-1.img", tmp);
	error_reset();
	cr_assert_null(img_open_read_path(AT_FDCWD, path));
	unit_assert_error(path, "corrupted (checksum mismatch)");
	error_reset();
	cr_assert_eq(img_read_one(dfd, IMG_CORE, 1, &task_core_entry__descriptor, &m), -1);
	cr_assert_null(m);
	unit_assert_error("core-1.img", "checksum mismatch");
	/* an intact payload under a damaged crc field */
	memcpy(buf, file, len);
	hdr = header_of(buf);
	hdr.crc ^= 0x80000000u;
	set_header(buf, &hdr);
	unit_write_file(dfd, "core-1.img", buf, len);
	expect_open_fails(IMG_CORE, "core-1.img", "corrupted (checksum mismatch)");

	/*
	 * What only the checksum catches: a changed letter of a string is still a well-formed
	 * message, which the unsealed copy shows.
	 */
	memcpy(buf, file, len);
	comm = memmem(buf + HDR_LEN, len - HDR_LEN, "task-1", 6);
	cr_assert_not_null(comm);
	comm[0] = 'T';
	unit_write_file(dfd, "core-1.img", buf, len);
	expect_open_fails(IMG_CORE, "core-1.img", "corrupted (checksum mismatch)");
	unit_unseal(buf);
	unit_write_file(dfd, "core-1.img", buf, len);
	cr_assert_eq(core_messages(), 3, "%s", crest_last_error());
	free(buf);
	free(file);
}

Test(image, sealed_pages_truncated_or_extended)
{
	static unsigned char page[4096];
	unsigned char *file, *buf;
	struct cr_img *img;
	size_t len;
	char want[128];

	img = img_open_write(dfd, IMG_PAGES, 1);
	cr_assert_not_null(img);
	for (int i = 0; i < 3; i++) {
		memset(page, 0xa0 + i, sizeof(page));
		cr_assert_eq(img_write_raw(img, page, sizeof(page)), 0);
	}
	cr_assert_eq(img_close(img), 0);
	file = unit_read_file(dfd, "pages-1.img", &len);
	cr_assert_eq(len, IMG_PAGES_HDR_SIZE + 3 * 4096);
	buf = malloc(len + 4096);
	cr_assert_not_null(buf);

	/* one byte short: the restore would read a short last page */
	unit_write_file(dfd, "pages-1.img", file, len - 1);
	snprintf(want, sizeof(want),
		 "truncated or extended: %d bytes of payload, the header says %d", 3 * 4096 - 1,
		 3 * 4096);
	expect_open_fails(IMG_PAGES, "pages-1.img", want);
	error_reset();
	cr_assert_null(img_open_read_path(dfd, "pages-1.img"));
	unit_assert_error("pages-1.img", want);
	/* a page short, only the header page, a page too many */
	unit_write_file(dfd, "pages-1.img", file, len - 4096);
	expect_open_fails(IMG_PAGES, "pages-1.img", "truncated or extended: 8192 bytes");
	unit_write_file(dfd, "pages-1.img", file, IMG_PAGES_HDR_SIZE);
	expect_open_fails(IMG_PAGES, "pages-1.img", "0 bytes of payload, the header says 12288");
	memcpy(buf, file, len);
	memset(buf + len, 0, 4096);
	unit_write_file(dfd, "pages-1.img", buf, len + 4096);
	expect_open_fails(IMG_PAGES, "pages-1.img", "16384 bytes of payload");
	/* cut inside the padded header ("truncated image header" or the size: either will do) */
	unit_write_file(dfd, "pages-1.img", file, IMG_PAGES_HDR_SIZE - 1);
	expect_open_fails(IMG_PAGES, "pages-1.img", "truncated");

	/* page data has no checksum, by design: a flipped data byte is not the reader's to see */
	memcpy(buf, file, len);
	buf[IMG_PAGES_HDR_SIZE + 5000] ^= 0x01;
	unit_write_file(dfd, "pages-1.img", buf, len);
	img = img_open_read(dfd, IMG_PAGES, 1);
	cr_assert_not_null(img, "%s", crest_last_error());
	cr_assert_eq(img_data_off(img), 3 * 4096);
	img_close(img);
	/* an unsealed pages image is taken at its size */
	memcpy(buf, file, len);
	unit_unseal(buf);
	unit_write_file(dfd, "pages-1.img", buf, len - 1);
	img = img_open_read(dfd, IMG_PAGES, 1);
	cr_assert_not_null(img, "%s", crest_last_error());
	cr_assert_eq(img_data_off(img), 3 * 4096 - 1);
	img_close(img);
	free(buf);
	free(file);
}

/* Each flag turns on its own check and only that one. */
Test(image, seal_flags_gate_the_checks)
{
	size_t len;
	unsigned char *file = make_sealed_core(&len), *buf = malloc(len + 1);
	struct img_header hdr;

	cr_assert_not_null(buf);
	/* size only: a wrong crc is not looked at, a wrong size is */
	memcpy(buf, file, len);
	hdr = header_of(buf);
	hdr.flags = IMG_F_PAYLOAD;
	hdr.crc = ~hdr.crc;
	set_header(buf, &hdr);
	unit_write_file(dfd, "core-1.img", buf, len);
	cr_assert_eq(core_messages(), 3, "%s", crest_last_error());
	unit_write_file(dfd, "core-1.img", buf, len - 1);
	expect_open_fails(IMG_CORE, "core-1.img", "truncated or extended");

	/* checksum only: a wrong size is not looked at, a flipped byte is */
	memcpy(buf, file, len);
	hdr = header_of(buf);
	hdr.flags = IMG_F_CRC;
	hdr.payload += 1000;
	set_header(buf, &hdr);
	unit_write_file(dfd, "core-1.img", buf, len);
	cr_assert_eq(core_messages(), 3, "%s", crest_last_error());
	buf[len - 1] ^= 0x40;
	unit_write_file(dfd, "core-1.img", buf, len);
	expect_open_fails(IMG_CORE, "core-1.img", "corrupted (checksum mismatch)");

	/* neither (a hand-made image): only the message parser stands guard */
	memcpy(buf, file, len);
	unit_unseal(buf);
	buf[len] = 0x01;
	unit_write_file(dfd, "core-1.img", buf, len + 1);
	error_reset();
	cr_assert_eq(core_messages(), -1);
	unit_assert_error("core-1.img", "partial length prefix");
	free(buf);
	free(file);
}
