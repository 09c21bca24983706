// SPDX-License-Identifier: MIT
/*
 * crest show: decode images to JSON.  The printer is reflective: it walks the protobuf-c
 * descriptors, so a field added to a schema shows up without touching this file.
 *
 * Output conventions (what a reader of the JSON can rely on):
 *   - a file is {"file": NAME, "kind": KIND, "entries": [MESSAGE, ...]}; a pagemap image
 *     carries its head message separately as "head", so "entries" holds only pagemap_entry,
 *     and adds a "summary": runs, pages by kind, and for lz4 blocks their count, pages,
 *     stored bytes, ratio and whether each decompressed from the pages image next to it
 *     ("verified": false when that image is not there; a block that fails is an error);
 *     the pages image (raw data) and images without a schema are {"file", "kind",
 *     "data_bytes"}; a directory is an array of those, sorted by file name;
 *   - optional fields that are absent are omitted; repeated fields are always arrays;
 *   - enums print by name (the number when the value is not in the schema);
 *   - bit-mask fields with a schema enum of their bits (pagemap flags, vma madv) print as an
 *     array of bit names without their common prefix, unknown bits as one "0x..." string;
 *   - uint64 fields that hold addresses print as "0x..." strings, because nobody reads
 *     140737488347136 as a stack address; see is_address_name() for which names qualify;
 *   - bytes print as {"len": N, "hex": "..."} with at most SHOW_BYTES_MAX bytes of hex and
 *     "truncated": true when cut, since xsave areas and siginfo blobs would drown the rest;
 *   - strings are escaped per RFC 8259; bytes that are not valid UTF-8 (paths and comms are
 *     arbitrary bytes) become U+FFFD so the output stays valid JSON;
 *   - NaN and infinities, which JSON cannot express as numbers, print as strings.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crest.h"
#include "image.h"
#include "internal.h"
#include "log.h"

#include "mm.pb-c.h"
#include "pagemap.pb-c.h"

#define SHOW_BYTES_MAX 64
/* Schemas are not recursive, so nesting is bounded by them; this only guards the stack. */
#define JSON_MAX_DEPTH 32

/* A minimal pretty-printing JSON writer: it tracks where commas and newlines go. */
struct json {
	FILE *f;
	int depth;
	bool first[JSON_MAX_DEPTH];   /* nothing printed yet at this level */
	bool inlined[JSON_MAX_DEPTH]; /* short arrays and objects stay on one line */
};

static void json_sep(struct json *j)
{
	int d = j->depth;

	if (j->inlined[d]) {
		if (!j->first[d])
			fputs(", ", j->f);
	} else {
		fputs(j->first[d] ? "\n" : ",\n", j->f);
		fprintf(j->f, "%*s", 2 * d, "");
	}
	j->first[d] = false;
}

static int json_open(struct json *j, char c, bool inlined)
{
	if (j->depth + 1 >= JSON_MAX_DEPTH) {
		pr_err("show: messages nested too deeply");
		return -1;
	}
	fputc(c, j->f);
	j->depth++;
	j->first[j->depth] = true;
	j->inlined[j->depth] = inlined || j->inlined[j->depth - 1];
	return 0;
}

static void json_close(struct json *j, char c)
{
	bool empty = j->first[j->depth], inlined = j->inlined[j->depth];

	j->depth--;
	if (!empty && !inlined)
		fprintf(j->f, "\n%*s", 2 * j->depth, "");
	fputc(c, j->f);
}

/* Length of the valid UTF-8 sequence at s, or 0 when it is not one (overlong, surrogate...). */
static size_t utf8_len(const unsigned char *s, size_t left)
{
	uint32_t cp, min;
	size_t n;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2, cp = s[0] & 0x1f, min = 0x80;
	} else if ((s[0] & 0xf0) == 0xe0) {
		n = 3, cp = s[0] & 0x0f, min = 0x800;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4, cp = s[0] & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (n > left)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

static void json_str(struct json *j, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t left = strlen(str);

	fputc('"', j->f);
	while (left) {
		size_t n = utf8_len(s, left);

		if (n == 0) {
			fputs("\\ufffd", j->f);
			n = 1;
		} else if (*s == '"' || *s == '\\') {
			fprintf(j->f, "\\%c", *s);
		} else if (*s == '\n') {
			fputs("\\n", j->f);
		} else if (*s == '\t') {
			fputs("\\t", j->f);
		} else if (*s == '\r') {
			fputs("\\r", j->f);
		} else if (*s < 0x20) {
			fprintf(j->f, "\\u%04x", *s);
		} else {
			fwrite(s, 1, n, j->f);
		}
		s += n;
		left -= n;
	}
	fputc('"', j->f);
}

static void json_key(struct json *j, const char *key)
{
	json_sep(j);
	json_str(j, key);
	fputs(": ", j->f);
}

/*
 * uint64 fields that hold addresses, by name: exact names used for addresses in the schemas
 * (vma start/end, pagemap vaddr, registers ip/sp, sigaction handler/restorer, rseq ptr, brk)
 * and suffixes for mm_entry's start_code...env_end, fs_base/gs_base, clear_child_tid and
 * robust_list.  Lengths and counts never end like that, so they stay decimal.
 */
static bool is_address_name(const char *name)
{
	static const char *const exact[] = {"start",   "end",	   "vaddr", "ip", "sp",
					    "handler", "restorer", "ptr",   "brk"};
	static const char *const suffix[] = {"_start", "_end",	 "_base", "_brk", "_code",
					     "_data",  "_stack", "_tid",  "_list"};
	size_t len = strlen(name);

	for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
		if (!strcmp(name, exact[i]))
			return true;
	for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
		size_t slen = strlen(suffix[i]);

		if (len > slen && !strcmp(name + len - slen, suffix[i]))
			return true;
	}
	return false;
}

/* Integer fields that are really sets of bits named by a schema enum. */
static const struct bitmask_field {
	const ProtobufCMessageDescriptor *msg;
	const char *field;
	const ProtobufCEnumDescriptor *bits;
	/* dropped from every bit name: "PRESENT" reads better than "PE_PRESENT" */
	const char *prefix;
} bitmask_fields[] = {
	{&pagemap_entry__descriptor, "flags", &pagemap_flags__descriptor, "PE_"},
	{&vma_entry__descriptor, "madv", &vma_madv__descriptor, "MADV_BIT_"},
};

static const struct bitmask_field *bitmask_of(const ProtobufCMessageDescriptor *msg,
					      const ProtobufCFieldDescriptor *fd)
{
	if (fd->type != PROTOBUF_C_TYPE_UINT32 || fd->label == PROTOBUF_C_LABEL_REPEATED)
		return NULL;
	for (size_t i = 0; i < sizeof(bitmask_fields) / sizeof(bitmask_fields[0]); i++)
		if (bitmask_fields[i].msg == msg && !strcmp(bitmask_fields[i].field, fd->name))
			return &bitmask_fields[i];
	return NULL;
}

static int print_bitmask(struct json *j, const struct bitmask_field *bf, uint32_t val)
{
	size_t plen = strlen(bf->prefix);
	uint32_t unknown = 0;

	if (json_open(j, '[', true))
		return -1;
	for (int b = 0; b < 32; b++) {
		const ProtobufCEnumValue *ev;

		if (!(val & (1u << b)))
			continue;
		ev = protobuf_c_enum_descriptor_get_value(bf->bits, (int)(1u << b));
		if (!ev) {
			unknown |= 1u << b;
			continue;
		}
		json_sep(j);
		json_str(j, strncmp(ev->name, bf->prefix, plen) ? ev->name : ev->name + plen);
	}
	if (unknown) {
		json_sep(j);
		fprintf(j->f, "\"0x%x\"", unknown);
	}
	json_close(j, ']');
	return 0;
}

static void print_bytes(struct json *j, const ProtobufCBinaryData *bd)
{
	size_t n = bd->len < SHOW_BYTES_MAX ? bd->len : SHOW_BYTES_MAX;

	fprintf(j->f, "{\"len\": %zu, \"hex\": \"", bd->len);
	for (size_t i = 0; i < n; i++)
		fprintf(j->f, "%02x", bd->data[i]);
	fputc('"', j->f);
	if (bd->len > n)
		fputs(", \"truncated\": true", j->f);
	fputc('}', j->f);
}

static void print_double(struct json *j, double v)
{
	if (isnan(v))
		fputs("\"NaN\"", j->f);
	else if (isinf(v))
		fputs(v > 0 ? "\"Infinity\"" : "\"-Infinity\"", j->f);
	else
		fprintf(j->f, "%.17g", v);
}

static void print_enum(struct json *j, const ProtobufCFieldDescriptor *fd, int v)
{
	const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(fd->descriptor, v);

	if (ev)
		json_str(j, ev->name);
	else
		fprintf(j->f, "%d", v);
}

static int print_message(struct json *j, const ProtobufCMessage *m);

/* One value of field fd stored at p (the member itself, or one element of a repeated one). */
static int print_value(struct json *j, const ProtobufCFieldDescriptor *fd, const void *p)
{
	switch (fd->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		fprintf(j->f, "%d", *(const int32_t *)p);
		break;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		fprintf(j->f, "%u", *(const uint32_t *)p);
		break;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		fprintf(j->f, "%lld", (long long)*(const int64_t *)p);
		break;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		fprintf(j->f, is_address_name(fd->name) ? "\"0x%llx\"" : "%llu",
			(unsigned long long)*(const uint64_t *)p);
		break;
	case PROTOBUF_C_TYPE_FLOAT:
		print_double(j, *(const float *)p);
		break;
	case PROTOBUF_C_TYPE_DOUBLE:
		print_double(j, *(const double *)p);
		break;
	case PROTOBUF_C_TYPE_BOOL:
		fputs(*(const protobuf_c_boolean *)p ? "true" : "false", j->f);
		break;
	case PROTOBUF_C_TYPE_ENUM:
		print_enum(j, fd, *(const int *)p);
		break;
	case PROTOBUF_C_TYPE_STRING:
		if (*(const char *const *)p)
			json_str(j, *(const char *const *)p);
		else
			fputs("null", j->f);
		break;
	case PROTOBUF_C_TYPE_BYTES:
		print_bytes(j, p);
		break;
	case PROTOBUF_C_TYPE_MESSAGE:
		if (*(const ProtobufCMessage *const *)p)
			return print_message(j, *(const ProtobufCMessage *const *)p);
		fputs("null", j->f);
		break;
	default:
		pr_err("show: field %s has unknown protobuf type %d", fd->name, fd->type);
		return -1;
	}
	return 0;
}

/* Size of one element of a repeated field, as protobuf-c lays the array out. */
static size_t elem_size(ProtobufCType type)
{
	switch (type) {
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return 8;
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_ENUM:
		return sizeof(int);
	case PROTOBUF_C_TYPE_STRING:
		return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(ProtobufCMessage *);
	default:
		return 4;
	}
}

/*
 * Whether a non-repeated field is set.  proto2 optional scalars and bytes keep a has_ flag at
 * quantifier_offset; optional strings and messages are absent when NULL; oneof members are
 * present when the oneof's case (also at quantifier_offset) is their id.
 */
static bool field_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *fd)
{
	const char *base = (const char *)m;

	if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
		return *(const uint32_t *)(base + fd->quantifier_offset) == fd->id;
	if (fd->label == PROTOBUF_C_LABEL_REQUIRED)
		return true;
	if (fd->type == PROTOBUF_C_TYPE_STRING || fd->type == PROTOBUF_C_TYPE_MESSAGE)
		return *(const void *const *)(base + fd->offset) != NULL;
	if (fd->label == PROTOBUF_C_LABEL_OPTIONAL)
		return *(const protobuf_c_boolean *)(base + fd->quantifier_offset);
	return true; /* proto3 implicit presence: the value is always meaningful */
}

static int print_repeated(struct json *j, const ProtobufCMessage *m,
			  const ProtobufCFieldDescriptor *fd)
{
	const char *base = (const char *)m;
	size_t n = *(const size_t *)(base + fd->quantifier_offset);
	const char *arr = *(const char *const *)(base + fd->offset);
	size_t sz = elem_size(fd->type);

	if (!arr)
		n = 0;
	/* Arrays of messages get a line per element; arrays of scalars stay on one line. */
	if (json_open(j, '[', fd->type != PROTOBUF_C_TYPE_MESSAGE))
		return -1;
	for (size_t i = 0; i < n; i++) {
		json_sep(j);
		if (print_value(j, fd, arr + i * sz))
			return -1;
	}
	json_close(j, ']');
	return 0;
}

static int print_field(struct json *j, const ProtobufCMessage *m,
		       const ProtobufCFieldDescriptor *fd)
{
	const void *member = (const char *)m + fd->offset;
	const struct bitmask_field *bf;

	if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
		json_key(j, fd->name);
		return print_repeated(j, m, fd);
	}
	if (!field_present(m, fd))
		return 0;
	json_key(j, fd->name);
	bf = bitmask_of(m->descriptor, fd);
	if (bf)
		return print_bitmask(j, bf, *(const uint32_t *)member);
	return print_value(j, fd, member);
}

static int print_message(struct json *j, const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;

	if (json_open(j, '{', false))
		return -1;
	for (unsigned int i = 0; i < d->n_fields; i++)
		if (print_field(j, m, &d->fields[i]))
			return -1;
	/* Fields from a newer schema: say they exist rather than drop them silently. */
	if (m->n_unknown_fields) {
		json_key(j, "_unknown_fields");
		fprintf(j->f, "%u", m->n_unknown_fields);
	}
	json_close(j, '}');
	return 0;
}

/* Print the messages left in img as "entries"; 0 at a clean end, -1 on a reader error. */
static int show_entries(struct json *j, struct cr_img *img, const ProtobufCMessageDescriptor *desc)
{
	ProtobufCMessage *m;
	int ret;

	json_key(j, "entries");
	if (json_open(j, '[', false))
		return -1;
	while ((ret = img_read_msg(img, desc, &m)) == 1) {
		json_sep(j);
		ret = print_message(j, m);
		protobuf_c_message_free_unpacked(m, NULL);
		if (ret)
			return -1;
	}
	json_close(j, ']');
	return ret;
}

/* What a pagemap's runs add up to, and its lz4 blocks, to check against the pages image. */
struct pagemap_sum {
	uint64_t runs, present, zero, parent, cow, lz4_pages, lz4_bytes;
	PagemapEntry **blocks;
	size_t nr_blocks;
};

static void sum_run(struct pagemap_sum *sum, PagemapEntry *e, bool *keep)
{
	sum->runs++;
	if (e->flags & PAGEMAP_FLAGS__PE_PRESENT)
		sum->present += e->nr_pages;
	if (e->flags & PAGEMAP_FLAGS__PE_ZERO)
		sum->zero += e->nr_pages;
	if (e->flags & PAGEMAP_FLAGS__PE_PARENT)
		sum->parent += e->nr_pages;
	if (e->flags & PAGEMAP_FLAGS__PE_COW)
		sum->cow += e->nr_pages;
	if (!(e->flags & PAGEMAP_FLAGS__PE_LZ4))
		return;
	sum->lz4_pages += e->nr_pages;
	sum->lz4_bytes += e->clen;
	if (sum->nr_blocks % 1024 == 0) {
		PagemapEntry **nb = realloc(sum->blocks, (sum->nr_blocks + 1024) * sizeof(*nb));

		if (!nb)
			return; /* the check is skipped, nothing else */
		sum->blocks = nb;
	}
	sum->blocks[sum->nr_blocks++] = e;
	*keep = true;
}

/*
 * Decompress every lz4 block of the pagemap from its pages image (pages-N.img next to
 * pagemap-N.img): how many failed, or -1 when that image is not there to check against.
 * A bad block is shown, not fatal: the entries themselves decoded fine.
 */
static long check_blocks(const struct pagemap_sum *sum, int dirfd, const char *pagemap_name)
{
	const char *base = strrchr(pagemap_name, '/');
	const char *pm = strstr(base ? base : pagemap_name, "pagemap-");
	char name[PATH_MAX];
	struct cr_img *pages;
	long bad = 0;
	char *out;

	if (!pm)
		return -1;
	/* pagemap-N.img -> pages-N.img, shmpagemap-N.img -> shmpages-N.img, same directory */
	snprintf(name, sizeof(name), "%.*spages-%s", (int)(pm - pagemap_name), pagemap_name,
		 pm + strlen("pagemap-"));
	if (faccessat(dirfd, name, F_OK, 0))
		return -1;
	pages = img_open_read_path(dirfd, name);
	out = malloc(256 * PAGE_SIZE);
	if (!pages || !out) {
		img_close(pages);
		free(out);
		return -1;
	}
	for (size_t i = 0; i < sum->nr_blocks; i++) {
		const PagemapEntry *e = sum->blocks[i];

		if (!pages_run_valid(e, img_data_off(pages)) ||
		    pages_read_run(img_fd(pages), e, out)) {
			pr_warn("%s: the lz4 block of run %#llx (+%u pages) does not decompress",
				img_path(pages), (unsigned long long)e->vaddr, e->nr_pages);
			bad++;
		}
	}
	img_close(pages);
	free(out);
	return bad;
}

static int show_pagemap(struct json *j, struct cr_img *img, int dirfd, const char *name)
{
	struct pagemap_sum sum = {0};
	ProtobufCMessage *head, *m;
	uint64_t pages_size;
	int ret;

	ret = img_read_msg(img, &pagemap_head__descriptor, &head);
	if (ret == 0)
		pr_err("%s: pagemap image without a head", img_path(img));
	if (ret != 1)
		return -1;
	json_key(j, "head");
	ret = print_message(j, head);
	pages_size = ((PagemapHead *)head)->pages_size;
	protobuf_c_message_free_unpacked(head, NULL);
	if (ret)
		return -1;
	json_key(j, "entries");
	if (json_open(j, '[', false))
		return -1;
	while ((ret = img_read_msg(img, &pagemap_entry__descriptor, &m)) == 1) {
		bool keep = false;

		json_sep(j);
		ret = print_message(j, m);
		sum_run(&sum, (PagemapEntry *)m, &keep);
		if (!keep)
			protobuf_c_message_free_unpacked(m, NULL);
		if (ret)
			break;
	}
	if (!ret) {
		json_close(j, ']');
		/* what a reader would otherwise add up: pages by kind, and what lz4 saved */
		json_key(j, "summary");
		json_open(j, '{', false);
		json_key(j, "runs");
		fprintf(j->f, "%llu", (unsigned long long)sum.runs);
		json_key(j, "pages");
		fprintf(j->f,
			"{\"present\": %llu, \"zero\": %llu, \"parent\": %llu, \"cow\": %llu}",
			(unsigned long long)sum.present, (unsigned long long)sum.zero,
			(unsigned long long)sum.parent, (unsigned long long)sum.cow);
		json_key(j, "data_bytes");
		fprintf(j->f, "%llu", (unsigned long long)pages_size);
		if (sum.nr_blocks) {
			double ratio = sum.lz4_bytes
					       ? sum.lz4_pages * PAGE_SIZE / (double)sum.lz4_bytes
					       : 0;
			long bad = check_blocks(&sum, dirfd, name);

			json_key(j, "lz4");
			fprintf(j->f,
				"{\"blocks\": %zu, \"pages\": %llu, \"bytes\": %llu, \"ratio\": "
				"%.2f, \"checked\": %s",
				sum.nr_blocks, (unsigned long long)sum.lz4_pages,
				(unsigned long long)sum.lz4_bytes, ratio,
				bad >= 0 ? "true" : "false");
			if (bad >= 0)
				fprintf(j->f, ", \"corrupt\": %ld", bad);
			fputc('}', j->f);
		}
		json_close(j, '}');
	}
	for (size_t i = 0; i < sum.nr_blocks; i++)
		protobuf_c_message_free_unpacked(&sum.blocks[i]->base, NULL);
	free(sum.blocks);
	return ret;
}

/* One image as a JSON object; label is the name shown as "file". */
static int show_file(struct json *j, int dirfd, const char *name, const char *label)
{
	struct cr_img *img = img_open_read_path(dirfd, name);
	const ProtobufCMessageDescriptor *desc;
	enum img_kind kind;
	int ret = 0;

	if (!img)
		return -1;
	kind = img_kind(img);
	desc = img_kind_desc(kind);
	if (json_open(j, '{', false)) {
		img_close(img);
		return -1;
	}
	json_key(j, "file");
	json_str(j, label);
	json_key(j, "kind");
	json_str(j, img_kind_str(kind));
	if (img_kind_is_pagemap(kind)) {
		ret = show_pagemap(j, img, dirfd, name);
	} else if (desc) {
		ret = show_entries(j, img, desc);
	} else {
		/* Raw page data (or an image with no schema yet): only its size means anything. */
		json_key(j, "data_bytes");
		fprintf(j->f, "%llu", (unsigned long long)img_data_off(img));
	}
	json_close(j, '}');
	img_close(img);
	return ret;
}

static int image_name_filter(const struct dirent *d)
{
	return img_kind_of_name(d->d_name) != 0;
}

/* Byte order, not the locale's collation: the output must not depend on LC_ALL. */
static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static int show_dir(struct json *j, const char *path)
{
	struct dirent **list = NULL;
	int dirfd, n, ret = 0;

	dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		pr_perror("cannot open images directory %s", path);
		return -1;
	}
	n = scandirat(dirfd, ".", &list, image_name_filter, by_name);
	if (n < 0) {
		pr_perror("cannot list images directory %s", path);
		close(dirfd);
		return -1;
	}
	if (json_open(j, '[', false))
		ret = -1;
	for (int i = 0; i < n && !ret; i++) {
		struct stat st;

		/* A directory or fifo that happens to carry an image name is not an image. */
		if (!fstatat(dirfd, list[i]->d_name, &st, 0) && !S_ISREG(st.st_mode))
			continue;
		json_sep(j);
		ret = show_file(j, dirfd, list[i]->d_name, list[i]->d_name);
	}
	if (!ret)
		json_close(j, ']');
	for (int i = 0; i < n; i++)
		free(list[i]);
	free(list);
	close(dirfd);
	return ret;
}

int crest_show(const char *path, FILE *out)
{
	struct json j = {.depth = 0};
	char *buf = NULL;
	size_t len = 0;
	struct stat st;
	int ret;

	error_reset();
	if (stat(path, &st)) {
		pr_perror("cannot access %s", path);
		return -1;
	}
	/*
	 * Render into memory first: a corrupt image found halfway must not leave half a JSON
	 * document on out, only the error.
	 */
	j.f = open_memstream(&buf, &len);
	if (!j.f) {
		pr_perror("show: cannot allocate output buffer");
		return -1;
	}
	if (S_ISDIR(st.st_mode)) {
		ret = show_dir(&j, path);
	} else {
		const char *base = strrchr(path, '/');

		ret = show_file(&j, AT_FDCWD, path, base ? base + 1 : path);
	}
	if (fclose(j.f) && !ret) {
		pr_err("show: cannot build output for %s: out of memory", path);
		ret = -1;
	}
	if (!ret && (fwrite(buf, 1, len, out) != len || fputc('\n', out) == EOF || fflush(out))) {
		pr_perror("show: cannot write output");
		ret = -1;
	}
	free(buf);
	return ret;
}
