// SPDX-License-Identifier: MIT
/* Image files: header, length-prefixed protobuf messages, raw page data. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "util.h"
#include "image.h"
#include "log.h"

#include "core.pb-c.h"
#include "fdinfo.pb-c.h"
#include "inventory.pb-c.h"
#include "mm.pb-c.h"
#include "pagemap.pb-c.h"
#include "pstree.pb-c.h"
#include "shmem.pb-c.h"
#include "ghost.pb-c.h"
#include "ipc.pb-c.h"
#include "cgroup.pb-c.h"
#include "ns.pb-c.h"
#include "netns.pb-c.h"
#include "track.pb-c.h"

#define WBUF_SIZE (256u << 10)

struct cr_img {
	int fd;
	enum img_kind kind;
	bool writing;
	bool failed;		  /* a write failed: close reports it */
	char path[PATH_MAX + 80]; /* for messages: directory + name */
	/* writer */
	unsigned char *wbuf;
	size_t wlen;
	uint64_t written;      /* bytes handed to the kernel, header included */
	uint32_t crc;	       /* of the payload written so far (message images) */
	size_t hdr_size;       /* header bytes, padding included */
	struct img_sink *sink; /* streamed there too (fd -1: only there) */
	uint32_t sink_id;
	/* reader: message images are read whole; pages images are read with pread */
	unsigned char *rbuf;
	size_t rlen, rpos;
	uint64_t size;
	bool direct; /* writes with O_DIRECT */
};

struct img_kind_info {
	const char *fmt; /* file name; %d is the pid */
	const char *str;
	bool per_pid;
	const ProtobufCMessageDescriptor *desc;
};

static const struct img_kind_info kinds[IMG_KIND_MAX] = {
	[IMG_INVENTORY] = {"inventory.img", "inventory", false, &inventory_entry__descriptor},
	[IMG_PSTREE] = {"pstree.img", "pstree", false, &pstree_entry__descriptor},
	[IMG_CORE] = {"core-%d.img", "core", true, &task_core_entry__descriptor},
	[IMG_MM] = {"mm-%d.img", "mm", true, &mm_entry__descriptor},
	[IMG_PAGEMAP] = {"pagemap-%d.img", "pagemap", true, NULL /* head + entries */},
	[IMG_PAGES] = {"pages-%d.img", "pages", true, NULL},
	[IMG_FDINFO] = {"fdinfo-%d.img", "fdinfo", true, &fd_entry__descriptor},
	[IMG_FILES] = {"files.img", "files", false, &file_entry__descriptor},
	[IMG_STATS] = {"stats-%s.img", "stats", false, NULL},
	[IMG_SHMEM] = {"shmem.img", "shmem", false, &shmem_entry__descriptor},
	[IMG_SHM_PAGEMAP] = {"shmpagemap-%d.img", "shmpagemap", true, NULL},
	[IMG_SHM_PAGES] = {"shmpages-%d.img", "shmpages", true, NULL},
	[IMG_TRACK] = {"track.img", "track", false, &track_entry__descriptor},
	[IMG_GHOST] = {"ghost-%d.img", "ghost", true, &ghost_entry__descriptor},
	[IMG_NETNS] = {"netns.img", "netns", false, &netns_entry__descriptor},
	[IMG_NS] = {"ns.img", "ns", false, &ns_entry__descriptor},
	[IMG_TMPFS] = {"tmpfs-%d.img", "tmpfs", true, NULL},
	[IMG_IPC] = {"ipc.img", "ipc", false, &ipc_entry__descriptor},
	[IMG_IPC_SHM] = {"ipcshm-%d.img", "ipcshm", true, NULL},
	[IMG_CGROUP] = {"cgroup.img", "cgroup", false, &cgroup_entry__descriptor},
};

static bool kind_valid(unsigned int kind)
{
	return kind > 0 && kind < IMG_KIND_MAX && kinds[kind].fmt;
}

const char *img_name(enum img_kind kind, pid_t pid, char *buf, size_t len)
{
	if (!kind_valid(kind))
		snprintf(buf, len, "unknown-%u.img", kind);
	else if (kinds[kind].per_pid)
		snprintf(buf, len, kinds[kind].fmt, (int)pid);
	else
		snprintf(buf, len, "%s", kinds[kind].fmt);
	return buf;
}

enum img_kind img_kind_of_name(const char *name)
{
	for (unsigned int k = 1; k < IMG_KIND_MAX; k++) {
		const char *fmt = kinds[k].fmt;
		const char *pct;

		if (!fmt)
			continue;
		pct = strchr(fmt, '%');
		if (!pct) {
			if (!strcmp(name, fmt))
				return k;
			continue;
		}
		/* prefix, then digits (or any word for %s), then the suffix */
		size_t plen = pct - fmt;
		const char *suffix = pct + 2;
		size_t nlen = strlen(name), slen = strlen(suffix);

		if (nlen <= plen + slen || strncmp(name, fmt, plen) ||
		    strcmp(name + nlen - slen, suffix))
			continue;
		if (pct[1] == 'd') {
			bool digits = true;

			for (const char *c = name + plen; c < name + nlen - slen; c++)
				digits &= *c >= '0' && *c <= '9';
			if (!digits)
				continue;
		}
		return k;
	}
	return 0;
}

const char *img_kind_str(enum img_kind kind)
{
	return kind_valid(kind) ? kinds[kind].str : "unknown";
}

const ProtobufCMessageDescriptor *img_kind_desc(enum img_kind kind)
{
	return kind_valid(kind) ? kinds[kind].desc : NULL;
}

static struct cr_img *img_alloc(int fd, enum img_kind kind, bool writing, int dirfd,
				const char *name)
{
	struct cr_img *img = calloc(1, sizeof(*img));

	if (!img) {
		pr_err("%s: out of memory", name);
		return NULL;
	}
	img->fd = fd;
	img->kind = kind;
	img->writing = writing;
	if (dirfd == AT_FDCWD || name[0] == '/') {
		snprintf(img->path, sizeof(img->path), "%s", name);
	} else {
		char link[64], dir[PATH_MAX];
		ssize_t n;

		snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
		n = readlink(link, dir, sizeof(dir) - 1);
		dir[n > 0 ? n : 0] = 0;
		snprintf(img->path, sizeof(img->path), "%s%s%s", dir, n > 0 ? "/" : "", name);
	}
	return img;
}

/* The remote images directory of this thread's dump, if any (page-server.c). */
static __thread struct img_sink *attached_sink;
static __thread int attached_dirfd = -1;

void img_attach_sink(int dirfd, struct img_sink *sink)
{
	attached_sink = sink;
	attached_dirfd = sink ? dirfd : -1;
}

static void img_set_buffered(struct cr_img *img)
{
	int fl = img->fd >= 0 ? fcntl(img->fd, F_GETFL) : -1;

	if (img->direct && fl >= 0)
		fcntl(img->fd, F_SETFL, fl & ~O_DIRECT);
	img->direct = false;
}

/*
 * Write a pages image around the page cache: a final dump's few MiB then cost what the disk
 * takes, steadily, instead of what the page cache's allocation costs at the moment (5 to 60 ms
 * for 16 MiB on the test VM).  Unaligned pieces (compressed runs) fall back to buffered.
 */
void img_set_direct(struct cr_img *img)
{
	int fl = img->fd >= 0 ? fcntl(img->fd, F_GETFL) : -1;

	if (fl >= 0 && img_kind_is_pages(img->kind) && !fcntl(img->fd, F_SETFL, fl | O_DIRECT))
		img->direct = true;
}

/* Hand bytes to the file and to the sink, whichever the image has. */
static int img_out(struct cr_img *img, const void *buf, size_t len)
{
	size_t done = 0;

	while (img->fd >= 0 && done < len) {
		ssize_t n = write(img->fd, (const char *)buf + done, len - done);

		/* an unaligned piece: the rest goes through the page cache */
		if (n < 0 && errno == EINVAL && img->direct) {
			img_set_buffered(img);
			continue;
		}

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (!img->failed)
				pr_err("%s: write failed: %s", img->path,
				       n < 0 ? strerror(errno) : "no space");
			img->failed = true;
			return -1;
		}
		done += n;
	}
	/* the sink reports its own failure: it knows whether the server gave a reason */
	if (img->sink && img_sink_write(img->sink, img->sink_id, img->path, buf, len)) {
		img->failed = true;
		return -1;
	}
	img->written += len;
	return 0;
}

static int img_flush(struct cr_img *img)
{
	int ret = img_out(img, img->wbuf, img->wlen);

	img->wlen = 0;
	return ret;
}

static int img_put(struct cr_img *img, const void *buf, size_t len)
{
	if (img->failed)
		return -1;
	if (!img_kind_is_pages(img->kind) && img->hdr_size)
		img->crc = crc32(img->crc, buf, len);
	if (img->wlen + len > WBUF_SIZE && img_flush(img))
		return -1;
	/* Large raw runs go straight to the kernel: no copy through our buffer. */
	if (len >= WBUF_SIZE)
		return img_out(img, buf, len);
	memcpy(img->wbuf + img->wlen, buf, len);
	img->wlen += len;
	return 0;
}

struct cr_img *img_open_write(int dirfd, enum img_kind kind, pid_t pid)
{
	struct img_header hdr = {.magic = IMG_MAGIC, .version = IMG_VERSION, .kind = kind};
	struct img_sink *sink = attached_sink && dirfd == attached_dirfd ? attached_sink : NULL;
	char name[64];
	struct cr_img *img;
	int fd = -1;

	img_name(kind, pid, name, sizeof(name));
	if (sink && img_kind_is_pages(kind)) {
		/* page data goes to the sink only: nor may an older file here pass for it */
		unlinkat(dirfd, name, 0);
	} else {
		fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0) {
			pr_perror("cannot create image %s", name);
			return NULL;
		}
	}
	img = img_alloc(fd, kind, true, dirfd, name);
	if (!img) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	/* page-aligned: a pages image may be written with O_DIRECT (img_set_direct) */
	if (posix_memalign((void **)&img->wbuf, PAGE_SIZE, WBUF_SIZE))
		img->wbuf = NULL;
	if (!img->wbuf) {
		pr_err("%s: out of memory", img->path);
		img_close(img);
		return NULL;
	}
	if (sink) {
		if (img_sink_open(sink, img->path, kind, &img->sink_id))
			goto err;
		img->sink = sink;
	}
	if (img_put(img, &hdr, sizeof(hdr)))
		goto err;
	if (img_kind_is_pages(kind)) {
		static const char pad[IMG_PAGES_HDR_SIZE - sizeof(struct img_header)];

		if (img_put(img, pad, sizeof(pad)))
			goto err;
	}
	img->hdr_size = img_kind_is_pages(kind) ? IMG_PAGES_HDR_SIZE : sizeof(hdr);
	img->crc = crc32(0, NULL, 0);
	return img;
err:
	img_close(img);
	return NULL;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static int img_read_header(struct cr_img *img, const void *buf, size_t len, enum img_kind want)
{
	struct img_header hdr;

	if (len < sizeof(hdr)) {
		pr_err("%s: truncated image header", img->path);
		return -1;
	}
	memcpy(&hdr, buf, sizeof(hdr));
	if (hdr.magic != IMG_MAGIC) {
		pr_err("%s: not a crest image (bad magic 0x%08x)", img->path, hdr.magic);
		return -1;
	}
	if (hdr.version != IMG_VERSION) {
		pr_err("%s: unsupported image version %u (this crest reads %u)", img->path,
		       hdr.version, IMG_VERSION);
		return -1;
	}
	if (!kind_valid(hdr.kind) || (want && hdr.kind != want)) {
		pr_err("%s: image kind %u is not %s", img->path, hdr.kind,
		       want ? img_kind_str(want) : "known");
		return -1;
	}
	if (hdr.flags & ~(uint32_t)(IMG_F_PAYLOAD | IMG_F_CRC)) {
		pr_err("%s: unknown header flags %#x", img->path, hdr.flags);
		return -1;
	}
	img->kind = hdr.kind;
	img->hdr_size = img_kind_is_pages(hdr.kind) ? IMG_PAGES_HDR_SIZE : sizeof(hdr);
	if ((hdr.flags & IMG_F_PAYLOAD) && img->size != img->hdr_size + hdr.payload) {
		pr_err("%s: truncated or extended: %llu bytes of payload, the header says %llu",
		       img->path,
		       (unsigned long long)(img->size - min_u64(img->size, img->hdr_size)),
		       (unsigned long long)hdr.payload);
		return -1;
	}
	if ((hdr.flags & IMG_F_CRC) && !img_kind_is_pages(hdr.kind) && len == img->size &&
	    crc32(crc32(0, NULL, 0), (const unsigned char *)buf + sizeof(hdr), len - sizeof(hdr)) !=
		    hdr.crc) {
		pr_err("%s: corrupted (checksum mismatch)", img->path);
		return -1;
	}
	return 0;
}

static struct cr_img *img_open_read_name(int dirfd, const char *name, enum img_kind want)
{
	const char *slash = strrchr(name, '/');
	const char *base = slash ? slash + 1 : name; /* name may be a path (crest show) */
	struct cr_img *img;
	struct stat st;
	int fd;

	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		pr_perror("cannot open image %s", name);
		return NULL;
	}
	img = img_alloc(fd, want, false, dirfd, name);
	if (!img) {
		close(fd);
		return NULL;
	}
	if (fstat(fd, &st)) {
		pr_perror("%s: stat", img->path);
		goto err;
	}
	img->size = st.st_size;

	if (img_kind_is_pages(want) || (want == 0 && img_kind_is_pages(img_kind_of_name(base)))) {
		unsigned char hdr[IMG_PAGES_HDR_SIZE];
		ssize_t n = pread(fd, hdr, sizeof(hdr), 0);

		if (n < 0) {
			pr_perror("%s: read", img->path);
			goto err;
		}
		/* a pages name promises raw pages: anything else would be read as neither */
		if (img_read_header(img, hdr, n, want ? want : img_kind_of_name(base)))
			goto err;
		if (n < IMG_PAGES_HDR_SIZE) {
			pr_err("%s: truncated image header", img->path);
			goto err;
		}
		return img;
	}

	if (st.st_size > (off_t)1 << 32) {
		pr_err("%s: image is implausibly large (%lld bytes)", img->path,
		       (long long)st.st_size);
		goto err;
	}
	img->rlen = st.st_size;
	img->rbuf = malloc(img->rlen ? img->rlen : 1);
	if (!img->rbuf) {
		pr_err("%s: out of memory", img->path);
		goto err;
	}
	for (size_t done = 0; done < img->rlen;) {
		ssize_t n = pread(fd, img->rbuf + done, img->rlen - done, done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			pr_perror("%s: read", img->path);
			goto err;
		}
		if (n == 0) { /* shrank under us */
			img->rlen = done;
			break;
		}
		done += n;
	}
	if (img_read_header(img, img->rbuf, img->rlen, want))
		goto err;
	if (img_kind_is_pages(img->kind)) {
		pr_err("%s: pages image under a message image name", img->path);
		goto err;
	}
	img->rpos = sizeof(struct img_header);
	return img;
err:
	img_close(img);
	return NULL;
}

struct cr_img *img_open_read(int dirfd, enum img_kind kind, pid_t pid)
{
	char name[64];

	return img_open_read_name(dirfd, img_name(kind, pid, name, sizeof(name)), kind);
}

struct cr_img *img_open_read_path(int dirfd, const char *name)
{
	return img_open_read_name(dirfd, name, 0);
}

int img_write_msg(struct cr_img *img, const ProtobufCMessage *msg)
{
	unsigned char stackbuf[4096], *buf = stackbuf;
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint32_t le_len = len; /* x86_64 is little-endian; the format says so too */
	int ret;

	if (len > IMG_MSG_MAX) {
		pr_err("%s: message of %zu bytes is over the %u limit", img->path, len,
		       IMG_MSG_MAX);
		return -1;
	}
	if (len > sizeof(stackbuf)) {
		buf = malloc(len);
		if (!buf) {
			pr_err("%s: out of memory", img->path);
			return -1;
		}
	}
	protobuf_c_message_pack(msg, buf);
	ret = img_put(img, &le_len, sizeof(le_len));
	if (!ret)
		ret = img_put(img, buf, len);
	if (buf != stackbuf)
		free(buf);
	return ret;
}

int img_write_raw(struct cr_img *img, const void *buf, size_t len)
{
	return img_put(img, buf, len);
}

int img_read_msg(struct cr_img *img, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **msg)
{
	uint32_t len;
	size_t left;

	*msg = NULL;
	if (!img->rbuf) {
		pr_err("%s: not a message image", img->path);
		return -1;
	}
	left = img->rlen - img->rpos;
	if (left == 0)
		return 0;
	if (left < sizeof(len)) {
		pr_err("%s: truncated at offset %zu (partial length prefix)", img->path, img->rpos);
		return -1;
	}
	memcpy(&len, img->rbuf + img->rpos, sizeof(len));
	if (len > IMG_MSG_MAX) {
		pr_err("%s: corrupt at offset %zu (message length %u)", img->path, img->rpos, len);
		return -1;
	}
	if (len > left - sizeof(len)) {
		pr_err("%s: truncated at offset %zu (message of %u bytes, %zu left)", img->path,
		       img->rpos, len, left - sizeof(len));
		return -1;
	}
	*msg = protobuf_c_message_unpack(desc, NULL, len, img->rbuf + img->rpos + sizeof(len));
	if (!*msg) {
		pr_err("%s: corrupt %s message at offset %zu", img->path, desc->short_name,
		       img->rpos);
		return -1;
	}
	img->rpos += sizeof(len) + len;
	return 1;
}

int img_read_one(int dirfd, enum img_kind kind, pid_t pid, const ProtobufCMessageDescriptor *desc,
		 ProtobufCMessage **msg)
{
	struct cr_img *img = img_open_read(dirfd, kind, pid);
	int ret;

	*msg = NULL;
	if (!img)
		return -1;
	ret = img_read_msg(img, desc, msg);
	if (ret == 0)
		pr_err("%s: empty image", img->path);
	else if (ret == 1 && img->rpos != img->rlen) {
		pr_err("%s: trailing data after the message", img->path);
		protobuf_c_message_free_unpacked(*msg, NULL);
		*msg = NULL;
		ret = 0;
	}
	img_close(img);
	return ret == 1 ? 0 : -1;
}

int img_write_one(int dirfd, enum img_kind kind, pid_t pid, const ProtobufCMessage *msg)
{
	struct cr_img *img = img_open_write(dirfd, kind, pid);

	if (!img)
		return -1;
	if (img_write_msg(img, msg)) {
		img_close(img);
		return -1;
	}
	return img_close(img);
}

uint64_t img_size(const struct cr_img *img)
{
	return img->writing ? img->written + img->wlen : img->size;
}

uint64_t img_data_off(const struct cr_img *img)
{
	uint64_t hdr =
		img_kind_is_pages(img->kind) ? IMG_PAGES_HDR_SIZE : sizeof(struct img_header);

	return img_size(img) - hdr;
}

int img_fd(const struct cr_img *img)
{
	return img->fd;
}

enum img_kind img_kind(const struct cr_img *img)
{
	return img->kind;
}

const char *img_path(const struct cr_img *img)
{
	return img->path;
}

/* Write the header again, now that the payload's length and checksum are known. */
static void img_seal(struct cr_img *img)
{
	struct img_header hdr = {
		.magic = IMG_MAGIC,
		.version = IMG_VERSION,
		.kind = img->kind,
		.flags = IMG_F_PAYLOAD | (!img_kind_is_pages(img->kind) ? IMG_F_CRC : 0),
		.crc = !img_kind_is_pages(img->kind) ? img->crc : 0,
		.payload = img->written - img->hdr_size,
	};

	img_set_buffered(img);
	if (img->fd >= 0 && pwrite(img->fd, &hdr, sizeof(hdr), 0) != sizeof(hdr)) {
		pr_perror("%s: cannot write the header", img->path);
		img->failed = true;
	}
	/* a stream cannot seek back: the sink puts the header in place itself */
	if (!img->failed && img->sink && img_sink_close(img->sink, img->sink_id, img->path, &hdr))
		img->failed = true;
}

int img_close(struct cr_img *img)
{
	int ret = 0;

	if (!img)
		return 0;
	if (img->writing) {
		if (img->wlen)
			img_flush(img);
		if (!img->failed && img->hdr_size)
			img_seal(img);
		ret = img->failed ? -1 : 0;
	}
	if (img->fd >= 0 && close(img->fd) && img->writing && !ret) {
		pr_perror("%s: close", img->path);
		ret = -1;
	}
	free(img->wbuf);
	free(img->rbuf);
	free(img);
	return ret;
}
