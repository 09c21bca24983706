/* SPDX-License-Identifier: MIT */
/*
 * Shared helpers for the image and show unit tests: scratch directories, raw file access
 * for hand-made (broken) images, and fully populated sample messages of every image kind.
 */
#ifndef UNIT_FIXTURES_H
#define UNIT_FIXTURES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image.h"

#include "core.pb-c.h"
#include "fdinfo.pb-c.h"
#include "inventory.pb-c.h"
#include "mm.pb-c.h"
#include "pagemap.pb-c.h"
#include "pstree.pb-c.h"

/* A new directory under /tmp (malloc'ed path), and its removal with everything inside. */
char *unit_mkdtemp(void);
void unit_rmtree(const char *path);

/* Whole-file helpers relative to dirfd; they fail the running test on error. */
void unit_write_file(int dirfd, const char *name, const void *buf, size_t len);
void *unit_read_file(int dirfd, const char *name, size_t *len);
/*
 * The sizeof(struct img_header) header bytes of an image, as the reader expects them laid
 * out, unsealed: flags, crc and payload are 0, so the reader skips its size and checksum
 * checks and hand-made bodies reach the message parser.
 */
void unit_put_header(void *buf, uint32_t magic, uint16_t version, uint16_t kind);
/* Clear flags, crc and payload of the header at buf: a sealed image becomes an unsealed one. */
void unit_unseal(void *buf);
/* zlib crc32 of len bytes, as a writer seals message images with. */
uint32_t unit_crc32(const void *buf, size_t len);

/* Assert that the recorded failure reason mentions both strings. */
void unit_assert_error(const char *file, const char *problem);

/* Byte-for-byte equality of two messages' encodings: catches any field the checks missed. */
void unit_assert_same_packed(const ProtobufCMessage *a, const ProtobufCMessage *b);

/*
 * A task_core_entry with every field kind the schema has: nested and repeated messages,
 * bytes, negative ints, set and unset optionals (thread 0 has all of them, thread 1 none).
 * The structure points into itself, so it must not be copied after init.
 */
struct core_fixture {
	TaskCoreEntry core;
	CredsEntry creds;
	uint32_t groups[3];
	SigactionEntry sa[2], *sap[2];
	ItimerEntry it, *itp[1];
	PosixTimerEntry pt, *ptp[1];
	RlimitEntry rl[2], *rlp[2];
	ProtobufCBinaryData shared_pending[1];
	uint8_t siginfo[2][128];
	ThreadCoreEntry th[2], *thp[2];
	UserRegsX86Entry regs[2];
	SigaltstackEntry sas;
	RseqEntry rseq;
	SleepRestartEntry sleep;
	ProtobufCBinaryData pending[1];
	uint8_t xsave[576];
	char comm[32];
};

void core_fixture_init(struct core_fixture *f, unsigned int i);
void core_assert_equal(const TaskCoreEntry *a, const TaskCoreEntry *b);

struct mm_fixture {
	MmEntry mm;
	uint64_t auxv[6];
	VmaEntry vma[3], *vmap[3];
};

void mm_fixture_init(struct mm_fixture *f, unsigned int i);
void mm_assert_equal(const MmEntry *a, const MmEntry *b);

/* crest_show(path) rendered into memory: the (malloc'ed, possibly empty) text and result. */
char *unit_show(const char *path, int *ret);
/* Strict RFC 8259 validation (json_check.c); on failure why says what and where. */
bool unit_json_valid(const char *doc, size_t len, char *why, size_t whylen);
void unit_assert_json(const char *doc);

/* Writes one image of every kind (pid 1) into dirfd: the sample dump show decodes. */
void unit_make_dump(int dirfd);

#endif
