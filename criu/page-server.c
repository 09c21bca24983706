// SPDX-License-Identifier: MIT
/*
 * The page server: a remote images directory.
 *
 * A dump or pre-dump run with --page-server streams every image it writes to the server, and
 * the pages images only there: page data is never written on the source.  The other images
 * are kept in the local -D as well, because the next round reads them (its parent's pagemap,
 * inventory and tracking state).  The destination so ends up with a complete images directory
 * per round, which restores as it is.
 *
 * One connection is one round.  The round's directory on the server is named after the
 * client's -D (its last path component) and lands in the server's -D; --prev-images-dir names
 * the parent round the same way, and the server links "parent" to "../PARENT", just as the
 * dump links it locally, so restore follows the chain on the destination.  A round is written
 * into a hidden ".NAME.partial" directory and renamed into place only when the client commits
 * it, so a round cut short (the source failed, the connection dropped, a file did not fit)
 * leaves nothing a restore could mistake for images.  The server serves rounds one after
 * another and exits once a final dump has been committed.
 *
 * The image writer seals an image by rewriting its header at offset 0 once the payload's
 * length and checksum are known.  A stream cannot seek, so the server does it: the protocol is
 * "open NAME", data, "close with this header", and the server checks the header against what
 * it received before writing it.
 *
 * Wire format: frames of a little-endian header {type, id, len} and len bytes of payload.
 *   client                                 server
 *   HELLO {magic, version, flags} ROUND\0PARENT\0
 *                                          OK | ERR reason
 *   OPEN id {kind} NAME
 *   DATA id bytes...                       (ERR reason, at any time: the round is refused)
 *   CLOSE id {struct img_header}
 *   COMMIT
 *                                          OK | ERR reason
 * The server speaks during a round only to refuse it, so the client checks for something to
 * read before each frame and reports the server's reason instead of a broken pipe.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "crest.h"
#include "image.h"
#include "log.h"
#include "page-server.h"
#include "transport.h"
#include "util.h"

/* dump.c */
int open_images_dir(const char *dir, bool create);

#define PS_MAGIC 0x53505243u /* "CRPS" */
#define PS_VERSION 1
#define PS_HELLO_FINAL 0x1 /* a dump, not a pre-dump: the last round */

struct ps_hello {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t reserved;
};

#define PS_DATA_MAX (64u << 20) /* one DATA frame */
#define PS_OPEN_MAX 64		/* images open at once in one round */
#define PS_BUF_SIZE (1u << 20)
#define PS_REPLY_TIMEOUT 60  /* seconds the client waits for OK */
#define PS_ROUND_TIMEOUT 600 /* seconds the server waits for a client's next byte */
#define PS_DRAIN_TIMEOUT 10  /* after refusing, read on this long for the client to hear it */

/* ---- the client: a dump's images go here ---- */

struct img_sink {
	struct xport *x;
	int dirfd;
	uint32_t next_id;
	bool broken; /* reported once; every later image fails quietly */
	char round[NAME_MAX + 1];
	uint64_t bytes, t0;
};

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

/* The last component of the directory open as fd: the name a round has on the server. */
static int dir_name(int fd, char *buf, size_t len)
{
	char link[64], path[PATH_MAX];

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	if (readlink_at(AT_FDCWD, link, path, sizeof(path))) {
		pr_perror("cannot find the path of the images directory");
		return -1;
	}
	if (strlen(base_name(path)) >= len) {
		pr_err("images directory name too long: %s", path);
		return -1;
	}
	strcpy(buf, base_name(path));
	return 0;
}

/* A round name: one plain path component, not hidden (those are the server's own). */
static bool round_name_ok(const char *name)
{
	size_t len = strlen(name);

	if (!len || len > NAME_MAX || name[0] == '.')
		return false;
	for (const char *c = name; *c; c++)
		if (*c == '/' || (unsigned char)*c < 0x20)
			return false;
	return true;
}

int ps_send_frame(struct xport *x, uint32_t type, uint32_t id, const void *a, size_t alen,
		  const void *b, size_t blen)
{
	struct ps_frame f = {.type = type, .id = id, .len = alen + blen};
	struct iovec iov[3] = {{&f, sizeof(f)}, {(void *)a, alen}, {(void *)b, blen}};
	char small[sizeof(f) + 512];

	/* header and a small payload in one write: one segment, one TLS record */
	if (alen + blen <= sizeof(small) - sizeof(f)) {
		memcpy(small, &f, sizeof(f));
		if (alen)
			memcpy(small + sizeof(f), a, alen);
		if (blen)
			memcpy(small + sizeof(f) + alen, b, blen);
		return xport_send(x, small, sizeof(f) + alen + blen);
	}
	return xport_sendv(x, iov, 3);
}

/*
 * Read the server's reply: 1 OK, 0 ERR (reason in buf), -1 no reply (reason in buf too).  An
 * ERR is the server refusing what we sent; anything else is a broken connection.
 */
int ps_recv_reply(struct xport *x, char *buf, size_t len)
{
	struct ps_frame f;
	int rc = xport_recv(x, &f, sizeof(f));

	if (rc <= 0) {
		snprintf(buf, len, "%s", rc ? xport_error(x) : "the connection was closed");
		return -1;
	}
	if (f.type == PS_OK && f.len == 0) {
		buf[0] = 0;
		return 1;
	}
	if ((f.type != PS_ERR && f.type != PS_OK) || f.len >= len || f.len > PS_MSG_MAX) {
		snprintf(buf, len, "unexpected reply (type %u, %llu bytes)", f.type,
			 (unsigned long long)f.len);
		return -1;
	}
	if (xport_recv(x, buf, f.len) <= 0) {
		snprintf(buf, len, "%s", xport_error(x));
		return -1;
	}
	buf[f.len] = 0;
	return f.type == PS_OK;
}

/* The connection failed while sending what: report the server's reason if it gave one. */
static void sink_failed(struct img_sink *s, const char *what)
{
	char reason[PS_MSG_MAX + 1];

	if (s->broken)
		return;
	s->broken = true;
	snprintf(reason, sizeof(reason), "%s", xport_error(s->x));
	if (xport_readable(s->x, 0) && ps_recv_reply(s->x, reason, sizeof(reason)) == 0) {
		pr_err("page server %s refused %s: %s", xport_peer(s->x), what, reason);
		return;
	}
	pr_err("page server %s: connection lost while sending %s: %s", xport_peer(s->x), what,
	       reason);
}

static int sink_send(struct img_sink *s, uint32_t type, uint32_t id, const void *a, size_t alen,
		     const void *b, size_t blen, const char *what)
{
	if (s->broken)
		return -1;
	/* during a round the server only ever speaks to refuse it */
	if (xport_readable(s->x, 0) || ps_send_frame(s->x, type, id, a, alen, b, blen)) {
		sink_failed(s, what);
		return -1;
	}
	s->bytes += alen + blen;
	return 0;
}

int img_sink_open(struct img_sink *s, const char *path, enum img_kind kind, uint32_t *id)
{
	uint32_t k = kind;
	const char *name = base_name(path);

	*id = ++s->next_id;
	return sink_send(s, PS_OPEN, *id, &k, sizeof(k), name, strlen(name), name);
}

int img_sink_write(struct img_sink *s, uint32_t id, const char *path, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		size_t n = min_t(size_t, len, PS_DATA_MAX);

		if (sink_send(s, PS_DATA, id, NULL, 0, p, n, base_name(path)))
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

int img_sink_close(struct img_sink *s, uint32_t id, const char *path, const struct img_header *hdr)
{
	return sink_send(s, PS_CLOSE, id, hdr, sizeof(*hdr), NULL, 0, base_name(path));
}

struct img_sink *ps_client_open(const struct crest_opts *o, int dirfd, int prev_dirfd, bool final)
{
	struct img_sink *s;
	struct ps_hello hello = {.magic = PS_MAGIC, .version = PS_VERSION};
	char parent[NAME_MAX + 1] = "", names[2 * NAME_MAX + 2], reason[PS_MSG_MAX + 1];
	size_t rlen;
	int rc;

	if (!o->address || !o->port) {
		pr_err("--page-server needs --address and --port of the page server");
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		pr_err("out of memory");
		return NULL;
	}
	s->dirfd = dirfd;
	s->t0 = now_ns(CLOCK_MONOTONIC);
	if (dir_name(dirfd, s->round, sizeof(s->round)) ||
	    (prev_dirfd >= 0 && dir_name(prev_dirfd, parent, sizeof(parent))))
		goto err;
	if (!round_name_ok(s->round) || (parent[0] && !round_name_ok(parent))) {
		pr_err("images directory %s cannot name a round on the page server (a hidden or "
		       "odd name)",
		       !round_name_ok(s->round) ? s->round : parent);
		goto err;
	}
	if (!strcmp(s->round, parent)) {
		pr_err("the images directory and its parent are both named %s: the page server "
		       "keeps rounds by name",
		       parent);
		goto err;
	}
	s->x = xport_connect(o->address, o->port, o);
	if (!s->x)
		goto err;
	hello.flags = final ? PS_HELLO_FINAL : 0;
	rlen = strlen(s->round) + 1;
	memcpy(names, s->round, rlen);
	memcpy(names + rlen, parent, strlen(parent) + 1);
	if (ps_send_frame(s->x, PS_HELLO, 0, &hello, sizeof(hello), names,
			  rlen + strlen(parent) + 1)) {
		pr_err("page server %s: %s", xport_peer(s->x), xport_error(s->x));
		goto err;
	}
	rc = ps_recv_reply(s->x, reason, sizeof(reason));
	if (rc == 0) {
		pr_err("page server %s refused round %s: %s", xport_peer(s->x), s->round, reason);
		goto err;
	}
	if (rc < 0) {
		pr_err("page server %s did not accept round %s: %s%s", xport_peer(s->x), s->round,
		       reason, o->tls ? "" : " (does it expect --tls?)");
		goto err;
	}
	pr_info("page server %s: sending round %s%s%s", xport_peer(s->x), s->round,
		parent[0] ? " with parent " : "", parent);
	img_attach_sink(dirfd, s);
	return s;
err:
	xport_close(s->x);
	free(s);
	return NULL;
}

int ps_client_commit(struct img_sink *s)
{
	char reason[PS_MSG_MAX + 1];
	double secs;
	int rc;

	img_attach_sink(s->dirfd, NULL);
	if (sink_send(s, PS_COMMIT, 0, NULL, 0, NULL, 0, "the end of the round"))
		return -1;
	xport_set_timeout(s->x, PS_REPLY_TIMEOUT);
	rc = ps_recv_reply(s->x, reason, sizeof(reason));
	if (rc == 0) {
		pr_err("page server %s refused round %s: %s", xport_peer(s->x), s->round, reason);
		return -1;
	}
	if (rc < 0) {
		pr_err("page server %s: no confirmation of round %s: %s", xport_peer(s->x),
		       s->round, reason);
		return -1;
	}
	secs = (now_ns(CLOCK_MONOTONIC) - s->t0) / 1e9;
	pr_info("page server %s: round %s stored, %.1f MiB in %.3f s (%.0f MiB/s)",
		xport_peer(s->x), s->round, s->bytes / 1048576.0, secs,
		secs > 0 ? s->bytes / 1048576.0 / secs : 0);
	return 0;
}

void ps_client_close(struct img_sink *s)
{
	if (!s)
		return;
	img_attach_sink(s->dirfd, NULL);
	xport_close(s->x);
	free(s);
}

/* ---- the server ---- */

struct ps_file {
	uint32_t id;
	int fd;
	enum img_kind kind;
	uint64_t size; /* bytes received, header included */
	uint32_t crc;  /* of the payload (message images) */
	char name[64];
};

struct ps_round {
	struct xport *x;
	int rootfd, dirfd;
	char name[NAME_MAX + 1];
	char partial[NAME_MAX + 16];
	struct ps_file files[PS_OPEN_MAX];
	unsigned int nr_open, nr_files;
	uint64_t bytes, t0;
	bool final;
	char *buf;
};

static volatile sig_atomic_t ps_stop;

static void ps_on_signal(int sig)
{
	ps_stop = sig;
}

/* Refuse the round: log why, and tell the client. */
static int refuse(struct ps_round *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int refuse(struct ps_round *r, const char *fmt, ...)
{
	char reason[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	pr_err("page server: round %s from %s refused: %s", r->name[0] ? r->name : "?",
	       xport_peer(r->x), reason);
	ps_send_frame(r->x, PS_ERR, 0, reason, strlen(reason), NULL, 0);
	return -1;
}

/* The connection broke mid-round (the client is gone): nothing to tell it. */
static int lost(struct ps_round *r, const char *when, bool closed)
{
	const char *name = r->name[0] ? r->name : "?";

	if (ps_stop)
		pr_warn("page server: stopped by signal %d during round %s", (int)ps_stop, name);
	else
		pr_err("page server: round %s from %s cut short %s: %s", name, xport_peer(r->x),
		       when, closed ? "the client closed the connection" : xport_error(r->x));
	return -1;
}

/* A round's directory holds files and the parent link only. */
int ps_remove_round(int rootfd, const char *name)
{
	int fd = openat(rootfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *dir;
	struct dirent *de;
	int ret = 0;

	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return -1;
	}
	while ((de = readdir(dir)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
		    unlinkat(fd, de->d_name, 0))
			ret = -1;
	closedir(dir);
	if (unlinkat(rootfd, name, AT_REMOVEDIR))
		ret = -1;
	if (ret)
		pr_perror("page server: cannot remove %s", name);
	return ret;
}

/* Leftovers of rounds a killed server never finished. */
static void remove_partials(int rootfd)
{
	int fd = dup(rootfd);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	size_t n;

	if (!dir) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((de = readdir(dir))) {
		n = strlen(de->d_name);
		if (de->d_name[0] == '.' && n > 9 && !strcmp(de->d_name + n - 8, ".partial")) {
			pr_info("page server: removing %s, left by an unfinished round",
				de->d_name);
			ps_remove_round(rootfd, de->d_name);
		}
	}
	closedir(dir);
}

static struct ps_file *file_find(struct ps_round *r, uint32_t id)
{
	for (unsigned int i = 0; i < r->nr_open; i++)
		if (r->files[i].id == id)
			return &r->files[i];
	return NULL;
}

static int recv_payload(struct ps_round *r, void *buf, uint64_t len, size_t max, const char *what)
{
	int rc;

	if (len > max)
		return refuse(r, "%s of %llu bytes is over the limit", what,
			      (unsigned long long)len);
	rc = xport_recv(r->x, buf, len);
	if (rc <= 0)
		return lost(r, "in a message", rc == 0);
	return 0;
}

static int on_hello(struct ps_round *r, const struct ps_frame *f)
{
	char msg[PS_MSG_MAX + 1], target[NAME_MAX + 4];
	struct ps_hello hello;
	const char *round, *parent;
	struct stat st;

	if (f->type != PS_HELLO || f->len <= sizeof(hello) || f->len > PS_MSG_MAX)
		return refuse(r, "this is a crest page server; the client is not speaking its "
				 "protocol");
	if (recv_payload(r, msg, f->len, PS_MSG_MAX, "greeting"))
		return -1;
	msg[f->len] = 0;
	memcpy(&hello, msg, sizeof(hello));
	if (hello.magic != PS_MAGIC)
		return refuse(r, "not a crest page server client");
	if (hello.version != PS_VERSION)
		return refuse(r, "protocol version %u, this server speaks %u", hello.version,
			      PS_VERSION);
	round = msg + sizeof(hello);
	parent = round + strlen(round) + 1;
	if (parent >= msg + f->len)
		parent = "";
	if (!round_name_ok(round) || (parent[0] && !round_name_ok(parent)))
		return refuse(r, "bad round name");
	memcpy(r->name, round, strlen(round) + 1); /* round_name_ok(): it fits */
	r->final = hello.flags & PS_HELLO_FINAL;
	if (!fstatat(r->rootfd, round, &st, AT_SYMLINK_NOFOLLOW))
		return refuse(r, "round %s is already stored here", round);
	if (parent[0] &&
	    (fstatat(r->rootfd, parent, &st, AT_SYMLINK_NOFOLLOW) || !S_ISDIR(st.st_mode)))
		return refuse(r, "its parent round %s is not stored here", parent);
	snprintf(r->partial, sizeof(r->partial), ".%s.partial", round);
	ps_remove_round(r->rootfd, r->partial);
	if (mkdirat(r->rootfd, r->partial, 0700) ||
	    (r->dirfd = openat(r->rootfd, r->partial, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		r->partial[0] = 0;
		return refuse(r, "cannot create its directory: %s", strerror(errno));
	}
	/* as the dump links it locally: restore follows it up the chain */
	snprintf(target, sizeof(target), "../%s", parent);
	if (parent[0] && symlinkat(target, r->dirfd, "parent"))
		return refuse(r, "cannot link it to its parent: %s", strerror(errno));
	pr_info("page server: receiving round %s from %s%s%s%s", round, xport_peer(r->x),
		parent[0] ? ", parent " : "", parent, r->final ? " (final)" : "");
	return ps_send_frame(r->x, PS_OK, 0, NULL, 0, NULL, 0) ? lost(r, "at its start", false) : 0;
}

static int on_open(struct ps_round *r, const struct ps_frame *f)
{
	char msg[PS_MSG_MAX + 1];
	struct ps_file *pf;
	uint32_t kind;
	const char *name;

	if (f->len <= sizeof(kind) || f->len > sizeof(kind) + sizeof(pf->name) - 1)
		return refuse(r, "malformed image name");
	if (recv_payload(r, msg, f->len, PS_MSG_MAX, "image name"))
		return -1;
	msg[f->len] = 0;
	memcpy(&kind, msg, sizeof(kind));
	name = msg + sizeof(kind);
	/* only image files, by their own names: nothing else can be written here */
	if (strlen(name) != f->len - sizeof(kind) || strchr(name, '/') ||
	    img_kind_of_name(name) != kind)
		return refuse(r, "'%.64s' is not the name of a %s image", name, img_kind_str(kind));
	if (file_find(r, f->id))
		return refuse(r, "image id %u is open twice", f->id);
	if (r->nr_open == PS_OPEN_MAX)
		return refuse(r, "more than %d images open at once", PS_OPEN_MAX);
	pf = &r->files[r->nr_open];
	pf->fd = openat(r->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (pf->fd < 0)
		return refuse(r, "cannot create %s: %s", name, strerror(errno));
	r->nr_open++;
	r->nr_files++;
	pf->id = f->id;
	pf->kind = kind;
	pf->size = 0;
	pf->crc = crc32(0, NULL, 0);
	snprintf(pf->name, sizeof(pf->name), "%s", name);
	return 0;
}

static int on_data(struct ps_round *r, const struct ps_frame *f)
{
	struct ps_file *pf = file_find(r, f->id);
	uint64_t left = f->len;

	if (!pf)
		return refuse(r, "data for image id %u, which is not open", f->id);
	if (f->len > PS_DATA_MAX)
		return refuse(r, "a block of %llu bytes for %s is over the limit",
			      (unsigned long long)f->len, pf->name);
	while (left) {
		ssize_t n = xport_recv_some(r->x, r->buf, min_t(uint64_t, left, PS_BUF_SIZE));

		if (n <= 0)
			return lost(r, "while receiving an image", n == 0);
		/* message images carry a checksum of everything after their header */
		if (!img_kind_is_pages(pf->kind) && pf->size + n > sizeof(struct img_header)) {
			size_t skip = pf->size < sizeof(struct img_header)
					      ? sizeof(struct img_header) - pf->size
					      : 0;

			pf->crc = crc32(pf->crc, (unsigned char *)r->buf + skip, n - skip);
		}
		if (write_all(pf->fd, r->buf, n))
			return refuse(r, "cannot write %s: %s", pf->name,
				      errno ? strerror(errno) : "no space");
		pf->size += n;
		r->bytes += n;
		left -= n;
	}
	return 0;
}

static int on_close(struct ps_round *r, const struct ps_frame *f)
{
	struct ps_file *pf = file_find(r, f->id);
	struct img_header hdr;
	uint64_t hdr_size;

	if (!pf)
		return refuse(r, "closing image id %u, which is not open", f->id);
	if (f->len != sizeof(hdr))
		return refuse(r, "malformed header for %s", pf->name);
	if (recv_payload(r, &hdr, sizeof(hdr), sizeof(hdr), "header"))
		return -1;
	hdr_size = img_kind_is_pages(pf->kind) ? IMG_PAGES_HDR_SIZE : sizeof(hdr);
	if (hdr.magic != IMG_MAGIC || hdr.version != IMG_VERSION || hdr.kind != pf->kind ||
	    !(hdr.flags & IMG_F_PAYLOAD))
		return refuse(r, "%s: the final header is not that of a %s image", pf->name,
			      img_kind_str(pf->kind));
	if (pf->size < hdr_size || hdr.payload != pf->size - hdr_size)
		return refuse(r, "%s: %llu bytes received, the header says %llu", pf->name,
			      (unsigned long long)(pf->size - min_t(uint64_t, pf->size, hdr_size)),
			      (unsigned long long)hdr.payload);
	if ((hdr.flags & IMG_F_CRC) && !img_kind_is_pages(pf->kind) && hdr.crc != pf->crc)
		return refuse(r, "%s: checksum mismatch", pf->name);
	if (pwrite(pf->fd, &hdr, sizeof(hdr), 0) != sizeof(hdr) || close(pf->fd)) {
		pf->fd = -1;
		return refuse(r, "cannot write %s: %s", pf->name, strerror(errno));
	}
	*pf = r->files[--r->nr_open];
	return 0;
}

static int on_commit(struct ps_round *r)
{
	double secs;

	if (r->nr_open)
		return refuse(r, "image %s was never completed", r->files[0].name);
	if (renameat2(r->rootfd, r->partial, r->rootfd, r->name, RENAME_NOREPLACE))
		return refuse(r, "cannot store it as %s: %s", r->name, strerror(errno));
	r->partial[0] = 0;
	secs = (now_ns(CLOCK_MONOTONIC) - r->t0) / 1e9;
	pr_info("page server: stored round %s: %u images, %.1f MiB in %.3f s (%.0f MiB/s)", r->name,
		r->nr_files, r->bytes / 1048576.0, secs,
		secs > 0 ? r->bytes / 1048576.0 / secs : 0);
	if (ps_send_frame(r->x, PS_OK, 0, NULL, 0, NULL, 0))
		pr_warn("page server: round %s stored, but its client did not hear so: %s", r->name,
			xport_error(r->x));
	return 0;
}

/* After a refusal: let the client read it rather than hit a reset, for a while. */
static void drain(struct ps_round *r)
{
	uint64_t end = now_ns(CLOCK_MONOTONIC) + PS_DRAIN_TIMEOUT * 1000000000ULL;

	xport_set_timeout(r->x, 1);
	while (!ps_stop && now_ns(CLOCK_MONOTONIC) < end)
		if (xport_recv_some(r->x, r->buf, PS_BUF_SIZE) == 0)
			break;
}

/*
 * One client, one round: 1 when it was the final dump, committed; 0 next client; -1 refused;
 * 2 a migration agent's work is over (migrate_serve()).
 */
static int serve_round(const struct crest_opts *o, int rootfd, struct xport *x, char *buf)
{
	struct ps_round r = {.x = x, .rootfd = rootfd, .dirfd = -1, .buf = buf};
	struct ps_frame f;
	int ret = -1, rc;

	r.t0 = now_ns(CLOCK_MONOTONIC);
	xport_set_stop(x, &ps_stop);
	rc = xport_recv(x, &f, sizeof(f));
	if (rc <= 0) {
		if (rc < 0)
			pr_err("page server: %s sent no greeting: %s", xport_peer(x),
			       xport_error(x));
		return 0;
	}
	/* a migration agent also takes requests, one a connection (migrate.c) */
	if (o->migrate && f.type >= PS_CHECK)
		return migrate_serve(o, rootfd, x, &f);
	if (on_hello(&r, &f))
		goto out;
	/* the client may take its time: freezing a large tree comes before its first image */
	xport_set_timeout(x, PS_ROUND_TIMEOUT);
	for (;;) {
		rc = xport_recv(x, &f, sizeof(f));
		if (rc <= 0) {
			lost(&r, "before its end", rc == 0);
			goto out;
		}
		switch (f.type) {
		case PS_OPEN:
			rc = on_open(&r, &f);
			break;
		case PS_DATA:
			rc = on_data(&r, &f);
			break;
		case PS_CLOSE:
			rc = on_close(&r, &f);
			break;
		case PS_COMMIT:
			rc = f.len ? refuse(&r, "malformed commit") : on_commit(&r);
			if (!rc)
				ret = r.final ? 1 : 0;
			goto out;
		default:
			rc = refuse(&r, "unknown message type %u", f.type);
		}
		if (rc)
			goto out;
	}
out:
	if (ret < 0 && !ps_stop)
		drain(&r);
	for (unsigned int i = 0; i < r.nr_open; i++)
		close(r.files[i].fd);
	if (r.dirfd >= 0)
		close(r.dirfd);
	if (r.partial[0])
		ps_remove_round(rootfd, r.partial);
	return ret;
}

static int write_pidfile(const char *path, pid_t pid)
{
	char tmp[PATH_MAX], num[32];
	int fd, len = snprintf(num, sizeof(num), "%d", pid);

	if (snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= (int)sizeof(tmp)) {
		pr_err("pidfile path too long: %s", path);
		return -1;
	}
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0 || fchmod(fd, 0644) || write(fd, num, len) != len || close(fd) ||
	    rename(tmp, path)) {
		pr_perror("cannot write pidfile %s", path);
		if (fd >= 0)
			unlink(tmp);
		return -1;
	}
	return 0;
}

/* Go to the background once listening, so clients may connect as soon as we return. */
static int daemonize(const struct crest_opts *o, bool *parent)
{
	pid_t pid;
	int null;

	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		pr_perror("page server: cannot fork");
		return -1;
	}
	if (pid > 0) {
		*parent = true;
		if (o->pidfile && write_pidfile(o->pidfile, pid)) {
			kill(pid, SIGKILL);
			return -1;
		}
		return 0;
	}
	/* everything it uses is open by now: pin no directory, no terminal */
	setsid();
	if (chdir("/"))
		pr_warn("page server: cannot change to /: %s", strerror(errno));
	null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		/* stderr stays: without -o it is where the log goes */
		close(null);
	}
	return 0;
}

int crest_page_server(const struct crest_opts *o)
{
	struct sigaction sa = {.sa_handler = ps_on_signal}, old_term, old_int;
	struct xport_listener *l = NULL;
	bool parent = false;
	int rootfd = -1, ret = -1;
	char *buf = NULL;

	error_reset();
	if (!o->port) {
		pr_err("the page server needs --port");
		return -1;
	}
	rootfd = open_images_dir(o->images_dir, true);
	buf = malloc(PS_BUF_SIZE);
	if (rootfd < 0 || !buf)
		goto out;
	l = xport_listen(o->address, o->port, o);
	if (!l)
		goto out;
	remove_partials(rootfd);
	if (o->daemon	 ? daemonize(o, &parent)
	    : o->pidfile ? write_pidfile(o->pidfile, getpid())
			 : 0)
		goto out;
	if (parent) {
		ret = 0;
		goto out;
	}
	/* no SA_RESTART: a blocked accept or read returns, and the round is abandoned */
	ps_stop = 0;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, &old_term);
	sigaction(SIGINT, &sa, &old_int);
	pr_info("page server: listening on %s port %d%s, rounds go into %s",
		o->address ? o->address : "any address", o->port, o->tls ? " (TLS)" : "",
		o->images_dir);
	ret = 0;
	while (!ps_stop) {
		bool fatal;
		struct xport *x = xport_accept(l, &fatal);
		int rc;

		if (!x) {
			if (fatal) {
				ret = -1;
				break;
			}
			continue;
		}
		rc = serve_round(o, rootfd, x, buf);
		xport_close(x);
		if (rc == 1 && !o->migrate) {
			pr_info("page server: the final dump is stored; exiting");
			break;
		}
		if (rc == 2) {
			pr_info("page server: the migration is over; exiting");
			break;
		}
	}
	if (ps_stop)
		pr_info("page server: stopped by signal %d", (int)ps_stop);
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGINT, &old_int, NULL);
	/* refusals were the clients' failures, not ours */
	if (!ret)
		error_reset();
out:
	if (!parent)
		migrate_agent_fini();
	xport_listener_close(l);
	if (rootfd >= 0)
		close(rootfd);
	free(buf);
	return ret;
}
