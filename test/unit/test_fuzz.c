// SPDX-License-Identifier: MIT
/*
 * Deterministic mutation fuzzing of the image reader and of crest show: valid multi-message
 * images are damaged (bit flips, byte stores, truncation, forged length prefixes, inserted
 * and deleted bytes) at many positions with a fixed seed.  Every run must either succeed or
 * fail with an error that names the file; a crash, hang or invalid JSON fails the test.
 * Criterion runs each test in its own process, so a crash is reported, not fatal.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/logging.h>

#include "crest.h"
#include "fixtures.h"
#include "log.h"

#define FUZZ_ITERATIONS 3000

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

TestSuite(fuzz, .init = setup, .fini = teardown);

/* xorshift64*: the same sequence on every machine and run, so failures reproduce. */
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dull;
}

static size_t rnd_below(size_t n)
{
	return n ? rnd() % n : 0;
}

/*
 * Damage buf (len bytes, room for len + 64) in place; returns the new length.  Positions are
 * biased towards the first bytes now and then, where the header and first length prefix are.
 */
static size_t mutate(unsigned char *buf, size_t len)
{
	size_t pos = rnd() & 3 ? rnd_below(len) : rnd_below(len < 16 ? len : 16);
	uint32_t v = rnd();

	switch (rnd_below(7)) {
	case 0: /* flip one bit */
		buf[pos] ^= 1u << rnd_below(8);
		break;
	case 1: /* store a random or boundary byte */
		buf[pos] = rnd() & 1 ? (unsigned char)v : (rnd() & 1 ? 0xff : 0x00);
		break;
	case 2: /* truncate */
		return pos;
	case 3: /* forge a 32-bit little-endian value, as if it were a length prefix */
		if (rnd() & 1)
			v = (uint32_t[]){0,
					 1,
					 0x7fffffff,
					 0xffffffff,
					 IMG_MSG_MAX,
					 IMG_MSG_MAX + 1,
					 (uint32_t)len}[rnd_below(7)];
		memcpy(buf + (pos + 4 <= len ? pos : len - 4), &v, 4);
		break;
	case 4: /* several flips at once */
		for (int i = 0, n = 2 + rnd_below(8); i < n; i++)
			buf[rnd_below(len)] ^= 1u << rnd_below(8);
		break;
	case 5: /* insert a byte: everything after it shifts */
		memmove(buf + pos + 1, buf + pos, len - pos);
		buf[pos] = v;
		return len + 1;
	default: /* delete a byte */
		memmove(buf + pos, buf + pos + 1, len - pos - 1);
		return len - 1;
	}
	return len;
}

/* Every message of the image through the plain reader: count read, or -1. */
static int read_all(enum img_kind kind, const ProtobufCMessageDescriptor *first,
		    const ProtobufCMessageDescriptor *rest)
{
	struct cr_img *img = img_open_read(dfd, kind, 1);
	const ProtobufCMessageDescriptor *desc = first;
	ProtobufCMessage *m;
	int n = 0, ret;

	if (!img)
		return -1;
	while ((ret = img_read_msg(img, desc, &m)) == 1) {
		protobuf_c_message_free_unpacked(m, NULL);
		desc = rest;
		n++;
	}
	img_close(img);
	return ret < 0 ? -1 : n;
}

struct fuzz_stats {
	int read_ok, read_failed, show_ok, show_failed;
};

static void check_failure(const char *name, const char *what, int iter)
{
	const char *err = crest_last_error();

	cr_assert(strcmp(err, "unknown error"), "%s failed without a reason (iteration %d)", what,
		  iter);
	cr_assert(strstr(err, name), "%s error \"%s\" does not name %s (iteration %d)", what, err,
		  name, iter);
}

static void fuzz_one(const char *name, const unsigned char *orig, size_t len, enum img_kind kind,
		     const ProtobufCMessageDescriptor *first,
		     const ProtobufCMessageDescriptor *rest, struct fuzz_stats *st, int iter)
{
	unsigned char *buf = malloc(len + 64);
	size_t n = len;
	char path[PATH_MAX];
	char *doc;
	int ret;

	cr_assert_not_null(buf);
	memcpy(buf, orig, len);
	for (int m = 0, rounds = 1 + (rnd() % 4 == 0); m < rounds && n > 4; m++)
		n = mutate(buf, n);
	unit_write_file(dfd, name, buf, n);
	free(buf);

	error_reset();
	if (read_all(kind, first, rest) < 0) {
		check_failure(name, "reader", iter);
		st->read_failed++;
	} else {
		st->read_ok++;
	}

	snprintf(path, sizeof(path), "%s/%s", tmp, name);
	doc = unit_show(path, &ret);
	if (ret) {
		check_failure(name, "show", iter);
		cr_assert_str_eq(doc, "", "show wrote output and then failed (iteration %d)", iter);
		st->show_failed++;
	} else {
		unit_assert_json(doc);
		st->show_ok++;
	}
	free(doc);
}

static void fuzz_image(const char *name, enum img_kind kind,
		       const ProtobufCMessageDescriptor *first,
		       const ProtobufCMessageDescriptor *rest)
{
	struct fuzz_stats st = {0};
	unsigned char *orig;
	size_t len;

	orig = unit_read_file(dfd, name, &len);
	/* the untouched image must pass both ways, or the fuzzing proves nothing */
	cr_assert(read_all(kind, first, rest) > 1, "%s", crest_last_error());
	for (int i = 0; i < FUZZ_ITERATIONS; i++)
		fuzz_one(name, orig, len, kind, first, rest, &st, i);
	free(orig);
	cr_log_info("%s: reader %d ok / %d refused; show %d ok / %d refused", name, st.read_ok,
		    st.read_failed, st.show_ok, st.show_failed);
	/* both outcomes must be common: otherwise the mutations miss the interesting parts */
	cr_assert_gt(st.read_ok, FUZZ_ITERATIONS / 20);
	cr_assert_gt(st.read_failed, FUZZ_ITERATIONS / 4);
	cr_assert_gt(st.show_ok, FUZZ_ITERATIONS / 20);
}

Test(fuzz, core_image)
{
	struct core_fixture *f = calloc(3, sizeof(*f));
	struct cr_img *img;

	cr_assert_not_null(f);
	img = img_open_write(dfd, IMG_CORE, 1);
	cr_assert_not_null(img);
	for (int i = 0; i < 3; i++) {
		core_fixture_init(&f[i], i);
		cr_assert_eq(img_write_msg(img, &f[i].core.base), 0);
	}
	cr_assert_eq(img_close(img), 0);
	free(f);
	rng = 0x9e3779b97f4a7c15ull;
	fuzz_image("core-1.img", IMG_CORE, &task_core_entry__descriptor,
		   &task_core_entry__descriptor);
}

Test(fuzz, mm_image)
{
	struct mm_fixture f[3];
	struct cr_img *img = img_open_write(dfd, IMG_MM, 1);

	cr_assert_not_null(img);
	for (int i = 0; i < 3; i++) {
		mm_fixture_init(&f[i], i);
		cr_assert_eq(img_write_msg(img, &f[i].mm.base), 0);
	}
	cr_assert_eq(img_close(img), 0);
	rng = 0x243f6a8885a308d3ull;
	fuzz_image("mm-1.img", IMG_MM, &mm_entry__descriptor, &mm_entry__descriptor);
}

Test(fuzz, pagemap_image)
{
	unit_make_dump(dfd);
	rng = 0x13198a2e03707344ull;
	fuzz_image("pagemap-1.img", IMG_PAGEMAP, &pagemap_head__descriptor,
		   &pagemap_entry__descriptor);
}

/* The pages image is only a header as far as the reader is concerned: damage that. */
Test(fuzz, pages_header)
{
	unsigned char *orig, *buf;
	size_t len;

	unit_make_dump(dfd);
	orig = unit_read_file(dfd, "pages-1.img", &len);
	buf = malloc(len + 64);
	cr_assert_not_null(buf);
	rng = 0xa4093822299f31d0ull;
	for (int i = 0; i < FUZZ_ITERATIONS / 10; i++) {
		struct cr_img *img;
		size_t n = len;

		memcpy(buf, orig, len);
		/* only the header page matters; keep the damage there */
		n = mutate(buf, IMG_PAGES_HDR_SIZE);
		if (n == IMG_PAGES_HDR_SIZE)
			n = len;
		unit_write_file(dfd, "pages-1.img", buf, n);
		error_reset();
		img = img_open_read(dfd, IMG_PAGES, 1);
		if (img)
			cr_assert_eq(img_data_off(img), n - IMG_PAGES_HDR_SIZE);
		else
			check_failure("pages-1.img", "reader", i);
		img_close(img);
	}
	free(buf);
	free(orig);
}
