/* SPDX-License-Identifier: MIT */
/*
 * Image files.  Every image starts with a fixed header (magic, format version, kind); message
 * images then hold protobuf messages, each prefixed by its length as a little-endian u32.  The
 * pages image instead pads its header to a full page so the page data that follows stays
 * page-aligned and can be read straight into place.  Readers trust nothing: every failure is
 * reported with the file's name.
 */
#ifndef CREST_IMAGE_H
#define CREST_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <protobuf-c/protobuf-c.h>

#define IMG_MAGIC 0x54535243u /* "CRST" */
#define IMG_VERSION 1
#define IMG_MSG_MAX (64u << 20) /* no single message may claim more */
#define IMG_PAGES_HDR_SIZE 4096

enum img_kind {
	IMG_INVENTORY = 1,
	IMG_PSTREE,
	IMG_CORE,
	IMG_MM,
	IMG_PAGEMAP,
	IMG_PAGES,
	IMG_FDINFO,
	IMG_FILES,
	IMG_STATS,
	IMG_SHMEM,	 /* shmem.img: shared memory objects (memfd, shared anonymous) */
	IMG_SHM_PAGEMAP, /* shmpagemap-ID.img: their content, runs of file offsets */
	IMG_SHM_PAGES,	 /* shmpages-ID.img */
	IMG_TRACK,	 /* track.img: dirty tracking kept between pre-dump rounds */
	IMG_GHOST,	 /* ghost-ID.img: a deleted file still open or mapped */
	IMG_NETNS,	 /* netns.img: the tree's own network namespace */
	IMG_NS,		 /* ns.img: pid/uts/mount namespaces of a container (mnt.c, ns.c) */
	IMG_TMPFS,	 /* tmpfs-ID.img: a tmpfs mount's files, a tar archive (raw) */
	IMG_IPC,	 /* ipc.img: SysV and POSIX IPC objects of the tree's ipc namespace */
	IMG_IPC_SHM,	 /* ipcshm-ID.img: a SysV shared memory segment's bytes (raw) */
	IMG_CGROUP,	 /* cgroup.img: the tree's cgroups and their limits */
	IMG_KIND_MAX,
};

/*
 * A writer fills in flags, crc and payload when it closes the image.  payload is the number of
 * bytes after the header (after the whole padded header for pages), so a truncated image is
 * caught before anything in it is believed; crc (zlib crc32 of those bytes) catches flipped
 * bytes in message images.  Page data carries no crc: restore reads it straight into the task,
 * and checksumming gigabytes would double the cost of a dump.
 */
#define IMG_F_PAYLOAD 0x1 /* payload is valid */
#define IMG_F_CRC 0x2	  /* crc is valid */

struct img_header {
	uint32_t magic;
	uint16_t version;
	uint16_t kind;
	uint32_t flags;
	uint32_t crc;
	uint64_t payload;
};

struct cr_img;

/* Raw data (pages, archives), with a page-sized header and no checksum. */
static inline bool img_kind_is_pages(unsigned int kind)
{
	return kind == IMG_PAGES || kind == IMG_SHM_PAGES || kind == IMG_TMPFS ||
	       kind == IMG_IPC_SHM;
}

/* Runs of pages: a pagemap_head, then pagemap_entry messages. */
static inline bool img_kind_is_pagemap(unsigned int kind)
{
	return kind == IMG_PAGEMAP || kind == IMG_SHM_PAGEMAP;
}

/* "core-%d.img" style name of an image kind; pid is ignored for per-dump images. */
const char *img_name(enum img_kind kind, pid_t pid, char *buf, size_t len);
/* The kind an image file name denotes, or 0 when it is no crest image name. */
enum img_kind img_kind_of_name(const char *name);
const char *img_kind_str(enum img_kind kind);
/* The protobuf message type stored in a message image of that kind (NULL for pages). */
const ProtobufCMessageDescriptor *img_kind_desc(enum img_kind kind);

/* Open for writing (created, truncated) or reading (header validated) in dirfd. */
struct cr_img *img_open_write(int dirfd, enum img_kind kind, pid_t pid);
struct cr_img *img_open_read(int dirfd, enum img_kind kind, pid_t pid);
/* Same, by an explicit file name (crest show). */
struct cr_img *img_open_read_path(int dirfd, const char *name);

int img_write_msg(struct cr_img *img, const ProtobufCMessage *msg);
/* Raw bytes (pages image). */
int img_write_raw(struct cr_img *img, const void *buf, size_t len);
/* Read the next message: 1 read, 0 clean end of file, -1 error (already reported). */
int img_read_msg(struct cr_img *img, const ProtobufCMessageDescriptor *desc,
		 ProtobufCMessage **msg);
/* Open, read exactly one message, close. */
int img_read_one(int dirfd, enum img_kind kind, pid_t pid, const ProtobufCMessageDescriptor *desc,
		 ProtobufCMessage **msg);
int img_write_one(int dirfd, enum img_kind kind, pid_t pid, const ProtobufCMessage *msg);

/* Bytes written so far including the header (writers), or the file size (readers). */
uint64_t img_size(const struct cr_img *img);
/* Offset of the next raw byte relative to the end of the header (pages image writers). */
uint64_t img_data_off(const struct cr_img *img);
int img_fd(const struct cr_img *img);
enum img_kind img_kind(const struct cr_img *img);
const char *img_path(const struct cr_img *img);

/* Write this pages image with O_DIRECT from now on (best effort). */
void img_set_direct(struct cr_img *img);

/* Flush and close; -1 when data could not be written (e.g. ENOSPC). NULL is fine. */
int img_close(struct cr_img *img);

/*
 * A remote images directory (the page server, page-server.c).  While a sink is attached to a
 * directory (on this thread), every image opened for writing there is streamed to the sink as
 * well, and pages images go to the sink only.  The sink receives the image as written, then
 * the sealed header, which it must put at offset 0 itself.
 */
struct img_sink;
void img_attach_sink(int dirfd, struct img_sink *sink); /* NULL detaches */
int img_sink_open(struct img_sink *s, const char *path, enum img_kind kind, uint32_t *id);
int img_sink_write(struct img_sink *s, uint32_t id, const char *path, const void *buf, size_t len);
int img_sink_close(struct img_sink *s, uint32_t id, const char *path, const struct img_header *hdr);

#endif
