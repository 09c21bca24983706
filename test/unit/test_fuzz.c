// SPDX-License-Identifier: MIT
/*
 * Deterministic mutation fuzzing of the image reader and of crest show: valid multi-message
 * images are damaged (bit flips, byte stores, truncation, forged length prefixes, inserted
 * and deleted bytes) at many positions with a fixed seed.  Every run must either succeed or
 * fail with an error that names the file; a crash, hang or invalid JSON fails the test.
 * Criterion runs each test in its own process, so a crash is reported, not fatal.
 *
 * Each image is fuzzed twice: as the writer sealed it, where the payload size and checksum
 * must refuse damage before the message parser sees it, and as an unsealed copy (header flags
 * 0), so the protobuf parser and the reader's structural checks are fuzzed too.  judge() says
 * from the damaged header alone which outcome the reader owes; every run is held to it.
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
#define HDR_LEN sizeof(struct img_header)

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
	size_t hot = HDR_LEN + 8;
	size_t pos = rnd() & 3 ? rnd_below(len) : rnd_below(len < hot ? len : hot);
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

/*
 * What the reader must make of n bytes as an image of kind, judged by the header alone: the
 * oracle every outcome is checked against.  A sealed header (flags set) must stop a damaged
 * payload before the message parser sees it; an unsealed one leaves everything to the parser.
 */
enum verdict {
	V_HEADER, /* no usable header for this kind: refused */
	V_SIZE,	  /* sealed size disagrees with the file: refused, "truncated or extended" */
	V_CRC,	  /* sealed checksum disagrees with the payload: refused, "checksum mismatch" */
	V_PASS,	  /* past the header: message images are up to the parser, pages are accepted */
};

static enum verdict judge(const unsigned char *buf, size_t n, enum img_kind kind)
{
	uint64_t hdr_size = kind == IMG_PAGES ? IMG_PAGES_HDR_SIZE : HDR_LEN;
	struct img_header hdr;

	if (n < HDR_LEN)
		return V_HEADER;
	memcpy(&hdr, buf, sizeof(hdr));
	if (hdr.magic != IMG_MAGIC || hdr.version != IMG_VERSION || hdr.kind != kind ||
	    (hdr.flags & ~(uint32_t)(IMG_F_PAYLOAD | IMG_F_CRC)))
		return V_HEADER;
	if ((hdr.flags & IMG_F_PAYLOAD) && n != hdr_size + hdr.payload)
		return V_SIZE;
	if ((hdr.flags & IMG_F_CRC) && kind != IMG_PAGES &&
	    unit_crc32(buf + HDR_LEN, n - HDR_LEN) != hdr.crc)
		return V_CRC;
	if (n < hdr_size)
		return V_HEADER;
	return V_PASS;
}

static const char *const verdict_problem[] = {
	[V_SIZE] = "truncated or extended",
	[V_CRC] = "corrupted (checksum mismatch)",
};

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
	int header, size, crc;	   /* refused by the header checks, per verdict */
	int read_ok, parse_failed; /* past them: read whole, or refused by the message parser */
	int show_ok, show_failed;
};

/* The failure has a reason that names the file and, when given, says problem. */
static void check_failure(const char *name, const char *what, int iter, const char *problem)
{
	const char *err = crest_last_error();

	cr_assert(strcmp(err, "unknown error"), "%s failed without a reason (iteration %d)", what,
		  iter);
	cr_assert(strstr(err, name), "%s error \"%s\" does not name %s (iteration %d)", what, err,
		  name, iter);
	cr_assert(!problem || strstr(err, problem),
		  "%s error \"%s\" does not say \"%s\" (iteration %d)", what, err, problem, iter);
}

struct fuzz_target {
	const char *name;
	enum img_kind kind;
	const ProtobufCMessageDescriptor *first, *rest;
	int nmsgs; /* in the undamaged image */
};

static void fuzz_one(const struct fuzz_target *t, const unsigned char *orig, size_t len,
		     struct fuzz_stats *st, int iter)
{
	unsigned char *buf = malloc(len + 64);
	size_t n = len;
	char path[PATH_MAX];
	struct img_header hdr = {0};
	enum verdict v;
	bool intact;
	char *doc;
	int ret;

	cr_assert_not_null(buf);
	memcpy(buf, orig, len);
	for (int m = 0, rounds = 1 + (rnd() % 4 == 0); m < rounds && n > 4; m++)
		n = mutate(buf, n);
	unit_write_file(dfd, t->name, buf, n);
	v = judge(buf, n, t->kind);
	if (n >= HDR_LEN)
		memcpy(&hdr, buf, sizeof(hdr));
	/* the messages are all there as written (the damage, if any, is in the header) */
	intact = n == len && !memcmp(buf + HDR_LEN, orig + HDR_LEN, len - HDR_LEN);
	free(buf);

	error_reset();
	ret = read_all(t->kind, t->first, t->rest);
	switch (v) {
	case V_HEADER:
	case V_SIZE:
	case V_CRC:
		cr_assert_lt(ret, 0, "verdict %d, yet the reader took it (iteration %d)", v, iter);
		check_failure(t->name, "reader", iter, verdict_problem[v]);
		*(v == V_HEADER ? &st->header : v == V_SIZE ? &st->size : &st->crc) += 1;
		break;
	case V_PASS:
		/* a payload still under a checksum is the one that was written */
		cr_assert(!(hdr.flags & IMG_F_CRC) || intact,
			  "damaged payload passed the checksum (iteration %d)", iter);
		if (ret < 0) {
			/* only the parser is left to refuse it, and it says where */
			check_failure(t->name, "reader", iter, "at offset");
			cr_assert(!intact, "untouched messages refused (iteration %d)", iter);
			st->parse_failed++;
		} else {
			cr_assert(!intact || ret == t->nmsgs,
				  "%d of %d untouched messages read (iteration %d)", ret, t->nmsgs,
				  iter);
			st->read_ok++;
		}
		break;
	}

	snprintf(path, sizeof(path), "%s/%s", tmp, t->name);
	doc = unit_show(path, &ret);
	if (ret) {
		/* show reads through the same header checks: a seal it breaks stops show too */
		check_failure(t->name, "show", iter, v != V_HEADER ? verdict_problem[v] : NULL);
		cr_assert_str_eq(doc, "", "show wrote output and then failed (iteration %d)", iter);
		st->show_failed++;
	} else {
		cr_assert(v == V_HEADER || v == V_PASS, "show took verdict %d (iteration %d)", v,
			  iter);
		unit_assert_json(doc);
		st->show_ok++;
	}
	free(doc);
}

static void fuzz_pass(const struct fuzz_target *t, const unsigned char *orig, size_t len,
		      const char *label, struct fuzz_stats *st)
{
	for (int i = 0; i < FUZZ_ITERATIONS; i++)
		fuzz_one(t, orig, len, st, i);
	cr_log_info("%s %s: refused by header %d, size %d, crc %d, parser %d; read %d; "
		    "show %d ok / %d refused",
		    t->name, label, st->header, st->size, st->crc, st->parse_failed, st->read_ok,
		    st->show_ok, st->show_failed);
}

/*
 * Two passes over the image written by the engine: as written (sealed), where the size and
 * checksum must catch nearly every damage before the parser does, and an unsealed copy, where
 * the damage reaches the protobuf parser and the reader's structural checks.
 */
static void fuzz_image(const char *name, enum img_kind kind,
		       const ProtobufCMessageDescriptor *first,
		       const ProtobufCMessageDescriptor *rest)
{
	struct fuzz_target t = {name, kind, first, rest, 0};
	struct fuzz_stats sealed = {0}, raw = {0};
	struct img_header hdr;
	unsigned char *orig;
	size_t len;

	orig = unit_read_file(dfd, name, &len);
	memcpy(&hdr, orig, sizeof(hdr));
	cr_assert_eq(hdr.flags, IMG_F_PAYLOAD | IMG_F_CRC, "%s is not sealed", name);
	/* the untouched image must pass, or the fuzzing proves nothing */
	t.nmsgs = read_all(kind, first, rest);
	cr_assert_gt(t.nmsgs, 1, "%s", crest_last_error());
	fuzz_pass(&t, orig, len, "sealed", &sealed);

	unit_unseal(orig);
	unit_write_file(dfd, name, orig, len);
	cr_assert_eq(read_all(kind, first, rest), t.nmsgs, "%s", crest_last_error());
	fuzz_pass(&t, orig, len, "unsealed", &raw);
	free(orig);

	/*
	 * Sealed: the size and checksum refuse most damage, each check often; the parser only
	 * gets to refuse when the damage also cleared the flags.  Some damage leaves the payload
	 * alone (a header field that is not checked, a byte stored over its own value).
	 */
	cr_assert_gt(sealed.size + sealed.crc, FUZZ_ITERATIONS * 2 / 3);
	cr_assert_gt(sealed.size, FUZZ_ITERATIONS / 10);
	cr_assert_gt(sealed.crc, FUZZ_ITERATIONS / 4);
	cr_assert_lt(sealed.parse_failed, FUZZ_ITERATIONS / 50);
	/*
	 * Unsealed: both outcomes must be common, and the refusals must mostly come from the
	 * parser, or the mutations miss the interesting parts.
	 */
	cr_assert_gt(raw.read_ok, FUZZ_ITERATIONS / 20);
	cr_assert_gt(raw.parse_failed, FUZZ_ITERATIONS / 4);
	cr_assert_gt(raw.parse_failed, raw.header + raw.size + raw.crc);
	cr_assert_gt(raw.show_ok, FUZZ_ITERATIONS / 20);
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

/* One pass of header damage over a pages image; counts of accepted and refused opens. */
static void fuzz_pages_pass(const unsigned char *orig, size_t len, int *accepted, int *refused)
{
	unsigned char *buf = malloc(len + 64);

	cr_assert_not_null(buf);
	for (int i = 0; i < FUZZ_ITERATIONS / 10; i++) {
		struct cr_img *img;
		enum verdict v;
		size_t n;

		memcpy(buf, orig, len);
		/* only the header page matters; keep the damage there */
		n = mutate(buf, IMG_PAGES_HDR_SIZE);
		if (n == IMG_PAGES_HDR_SIZE)
			n = len;
		unit_write_file(dfd, "pages-1.img", buf, n);
		v = judge(buf, n, IMG_PAGES);
		error_reset();
		img = img_open_read(dfd, IMG_PAGES, 1);
		if (v == V_PASS) {
			cr_assert_not_null(img, "%s (iteration %d)", crest_last_error(), i);
			cr_assert_eq(img_data_off(img), n - IMG_PAGES_HDR_SIZE);
			++*accepted;
		} else {
			cr_assert_null(img, "verdict %d, yet the reader took it (iteration %d)", v,
				       i);
			check_failure("pages-1.img", "reader", i, verdict_problem[v]);
			++*refused;
		}
		img_close(img);
	}
	free(buf);
}

/* The pages image is only a header as far as the reader is concerned: damage that. */
Test(fuzz, pages_header)
{
	int sealed_ok = 0, sealed_refused = 0, raw_ok = 0, raw_refused = 0;
	unsigned char *orig;
	size_t len;

	unit_make_dump(dfd);
	orig = unit_read_file(dfd, "pages-1.img", &len);
	cr_assert_eq(judge(orig, len, IMG_PAGES), V_PASS);
	rng = 0xa4093822299f31d0ull;
	fuzz_pages_pass(orig, len, &sealed_ok, &sealed_refused);
	/* unsealed, a pages image is taken at whatever size it has */
	unit_unseal(orig);
	fuzz_pages_pass(orig, len, &raw_ok, &raw_refused);
	free(orig);
	cr_log_info("pages-1.img: sealed %d ok / %d refused; unsealed %d ok / %d refused",
		    sealed_ok, sealed_refused, raw_ok, raw_refused);
	cr_assert_gt(sealed_ok, FUZZ_ITERATIONS / 10 / 4);
	cr_assert_gt(sealed_refused, FUZZ_ITERATIONS / 10 / 10);
	cr_assert_gt(raw_ok, sealed_ok); /* no size check to fail */
}
