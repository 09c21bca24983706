// SPDX-License-Identifier: MIT
/*
 * Unix sockets: stream, dgram and seqpacket; socketpairs, named (filesystem and abstract) and
 * listening sockets with the connections waiting in their accept queue; unread data, shutdown
 * state, socket options and peer credentials.
 *
 * Dump.  sock_diag (NETLINK_SOCK_DIAG, UNIX_DIAG_*) tells each socket's state, name, peer (by
 * inode), queue lengths and shutdown bits, and for a listener the clients of its pending
 * connections (UNIX_DIAG_ICONS).  A peer is "in the tree" when some task of the tree has it
 * open; a client whose peer has no inode is either waiting in a listener's queue (it is in that
 * listener's icons) or talks to a closed socket.  The unread data is peeked through crest's
 * own copy of the socket (pidfd_getfd), walking the queue with SO_PEEK_OFF, so nothing is
 * consumed; SO_PASSCRED is set meanwhile only to tell a zero-length message from the end of a
 * queue that was shut down.  Every temporary change is undone before the tasks run again.
 *
 * Restore.  Sockets are interconnected, so they are all made together, by crest, at the first
 * open of any of them, and each is registered as its file's helper fd at once (files.c then
 * opens none of the others).  A connected pair is remade by socketpair() when neither end has
 * a name, else by a connect() to a temporary listener that carries the name the accepted end
 * had; a listener gets its pending connections by connects from new client sockets, in queue
 * order.  Data is written back from the peer side so it lands in the right queue, before any
 * shutdown or connect that would forbid it.  Peer credentials are recorded by the kernel at
 * socketpair(), listen() and connect() time as the calling process: those calls are made in a
 * short-lived helper process that shares crest's fd table and is created with the pid (and the
 * uid and gid) the credentials named at dump time, when that pid is free.  The tasks of the
 * tree are created only afterwards, with the same pids, so SO_PEERCRED reports the restored
 * task.
 *
 * Refused at dump: file descriptors in flight (SCM_RIGHTS); data a client sent on a connection
 * not yet accepted (nothing can read an embryo's queue without accepting it); a peer outside the
 * tree without --ext-unix-sk, or with it when that peer has no name or the socket has unread
 * stream data from it.  Not kept: per-message SCM_CREDENTIALS, MSG_OOB bytes, the queue of a
 * pending connection whose client has closed.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <dirent.h>
#include <limits.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sched.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <linux/unix_diag.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "internal.h"
#include "log.h"

#define SUN_PATH_MAX sizeof(((struct sockaddr_un *)0)->sun_path)
#define DIAG_SHOW \
	(UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN)

/* ---- sock_diag ---- */

/* One socket as sock_diag describes it; icons point into the reply being parsed. */
struct usk_diag {
	uint64_t ino;
	unsigned int type, state, shutdown;
	bool has_peer, has_vfs;
	uint64_t peer;
	unsigned char name[SUN_PATH_MAX];
	size_t name_len;
	uint32_t rq, wq; /* listeners: pending connections and backlog */
	uint64_t vfs_dev, vfs_ino;
	const uint32_t *icons;
	size_t n_icons;
};

/* Called per socket; a non-zero return ends the walk with that value. */
typedef int (*diag_cb)(const struct usk_diag *u, void *arg);

/* A sock_diag socket in the network namespace of socket fd sk (crest's own when sk < 0). */
static int diag_open(int sk)
{
	int ns = sk >= 0 ? ioctl(sk, SIOCGSKNS) : -1, saved = -1, nl;
	struct stat a, b;

	if (ns >= 0 && !fstat(ns, &a) && !stat("/proc/self/ns/net", &b) &&
	    (a.st_ino != b.st_ino || a.st_dev != b.st_dev)) {
		saved = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
		if (saved < 0 || setns(ns, CLONE_NEWNET)) {
			pr_perror("cannot enter the network namespace of a unix socket");
			if (saved >= 0)
				close(saved);
			close(ns);
			return -1;
		}
	}
	nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (nl < 0)
		pr_perror("cannot open a sock_diag socket");
	if (saved >= 0) {
		if (setns(saved, CLONE_NEWNET))
			pr_perror("cannot go back to crest's network namespace");
		close(saved);
	}
	if (ns >= 0)
		close(ns);
	return nl;
}

static void diag_parse(const struct unix_diag_msg *m, int len, struct usk_diag *u)
{
	const struct rtattr *a = (const void *)(m + 1);

	memset(u, 0, sizeof(*u));
	u->ino = m->udiag_ino;
	u->type = m->udiag_type;
	u->state = m->udiag_state;
	for (; RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		size_t n = RTA_PAYLOAD(a);

		switch (a->rta_type) {
		case UNIX_DIAG_NAME:
			u->name_len = min_t(size_t, n, sizeof(u->name));
			memcpy(u->name, RTA_DATA(a), u->name_len);
			break;
		case UNIX_DIAG_PEER:
			if (n >= sizeof(uint32_t)) {
				u->has_peer = true;
				u->peer = *(const uint32_t *)RTA_DATA(a);
			}
			break;
		case UNIX_DIAG_VFS:
			if (n >= sizeof(struct unix_diag_vfs)) {
				const struct unix_diag_vfs *v = RTA_DATA(a);

				u->has_vfs = true;
				/* the kernel's dev_t: 12 bits of major, 20 of minor */
				u->vfs_dev =
					makedev(v->udiag_vfs_dev >> 20, v->udiag_vfs_dev & 0xfffff);
				u->vfs_ino = v->udiag_vfs_ino;
			}
			break;
		case UNIX_DIAG_ICONS:
			u->icons = RTA_DATA(a);
			u->n_icons = n / sizeof(uint32_t);
			break;
		case UNIX_DIAG_RQLEN:
			if (n >= sizeof(struct unix_diag_rqlen)) {
				const struct unix_diag_rqlen *q = RTA_DATA(a);

				u->rq = q->udiag_rqueue;
				u->wq = q->udiag_wqueue;
			}
			break;
		case UNIX_DIAG_SHUTDOWN:
			if (n >= 1)
				u->shutdown = *(const uint8_t *)RTA_DATA(a);
			break;
		}
	}
}

/*
 * Ask about one socket (ino != 0) or every unix socket of the namespace (ino == 0).
 * Returns what cb returned, 0 when the walk ended, -ENOENT when ino is unknown, or -1.
 */
static int diag_query(int nl, uint64_t ino, unsigned int show, diag_cb cb, void *arg)
{
	static unsigned int seq;
	struct {
		struct nlmsghdr h;
		struct unix_diag_req r;
	} req = {
		.h = {.nlmsg_len = sizeof(req),
		      .nlmsg_type = SOCK_DIAG_BY_FAMILY,
		      .nlmsg_flags = NLM_F_REQUEST | (ino ? 0 : NLM_F_DUMP),
		      .nlmsg_seq = ++seq},
		.r = {.sdiag_family = AF_UNIX,
		      .udiag_states = ~0U,
		      .udiag_ino = ino,
		      .udiag_show = show,
		      .udiag_cookie = {~0U, ~0U}},
	};
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
	size_t size = 64 << 10;
	char *buf = malloc(size);
	int ret = -1;

	if (!buf)
		return -1;
	if (sendto(nl, &req, sizeof(req), 0, (struct sockaddr *)&sa, sizeof(sa)) != sizeof(req)) {
		pr_perror("sock_diag request");
		goto out;
	}
	for (;;) {
		ssize_t n = recv(nl, buf, size, 0);
		struct nlmsghdr *h;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			pr_perror("sock_diag reply");
			goto out;
		}
		for (h = (struct nlmsghdr *)buf; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
			struct usk_diag u;

			if (h->nlmsg_seq != req.h.nlmsg_seq)
				continue;
			if (h->nlmsg_type == NLMSG_DONE) {
				ret = 0;
				goto out;
			}
			if (h->nlmsg_type == NLMSG_ERROR) {
				int err = -((struct nlmsgerr *)NLMSG_DATA(h))->error;

				if (err == ENOENT && ino) {
					ret = -ENOENT;
				} else {
					errno = err;
					pr_perror("sock_diag");
				}
				goto out;
			}
			if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
			    h->nlmsg_len < NLMSG_LENGTH(sizeof(struct unix_diag_msg)))
				continue;
			diag_parse(NLMSG_DATA(h),
				   h->nlmsg_len - NLMSG_LENGTH(sizeof(struct unix_diag_msg)), &u);
			ret = cb(&u, arg);
			if (ret || ino)
				goto out;
		}
	}
out:
	free(buf);
	return ret;
}

/* ---- dump ---- */

static bool unix_match(struct dump_ctx *d, const struct fd_info *fi)
{
	char proto[32];
	ssize_t n;

	if (strncmp(fi->link, "socket:", 7))
		return false;
	/* sockfs names the protocol: "UNIX" (dgram, seqpacket) or "UNIX-STREAM" */
	n = getxattr(fi->proc_path, "system.sockprotoname", proto, sizeof(proto));
	return n >= 4 && !strncmp(proto, "UNIX", 4);
}

/* Is the socket of this inode open in a task of the tree? */
static bool tree_holds(struct dump_tree *t, uint64_t ino)
{
	char want[48], path[64], link[64];
	bool found = false;

	snprintf(want, sizeof(want), "socket:[%llu]", (unsigned long long)ino);
	for (size_t i = 0; i < t->tasks.len && !found; i++) {
		struct dump_ctx *d = *vec_at(&t->tasks, struct dump_ctx *, i);
		struct dirent *de;
		DIR *dir;

		if (d->zombie)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/fd", d->pid);
		dir = opendir(path);
		while (dir && !found && (de = readdir(dir))) {
			if (de->d_name[0] == '.')
				continue;
			found = !readlink_at(dirfd(dir), de->d_name, link, sizeof(link)) &&
				!strcmp(link, want);
		}
		if (dir)
			closedir(dir);
	}
	return found;
}

/* A copy of one diag record that outlives the reply (icons copied). */
struct diag_copy {
	struct usk_diag u;
	uint32_t *icons;
};

static int copy_cb(const struct usk_diag *u, void *arg)
{
	struct diag_copy *c = arg;

	c->u = *u;
	c->u.icons = NULL;
	if (u->n_icons) {
		c->icons = malloc(u->n_icons * sizeof(uint32_t));
		if (!c->icons)
			return -1;
		memcpy(c->icons, u->icons, u->n_icons * sizeof(uint32_t));
	}
	return 0;
}

/* The listener whose accept queue holds a connection from client ino. */
struct find_listener {
	uint64_t client;
	struct usk_diag found;
};

static int listener_cb(const struct usk_diag *u, void *arg)
{
	struct find_listener *f = arg;

	if (u->state != TCP_LISTEN)
		return 0;
	for (size_t i = 0; i < u->n_icons; i++) {
		if (u->icons[i] == f->client) {
			f->found = *u;
			f->found.icons = NULL;
			return 1;
		}
	}
	return 0;
}

static int set_bytes(ProtobufCBinaryData *b, const void *data, size_t len)
{
	b->data = malloc(len ? len : 1);
	if (!b->data)
		return -1;
	memcpy(b->data, data, len);
	b->len = len;
	return 0;
}

static UnixSkCred *cred_new(pid_t pid, uid_t uid, gid_t gid)
{
	UnixSkCred *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	unix_sk_cred__init(c);
	c->pid = pid;
	c->uid = uid;
	c->gid = gid;
	return c;
}

/* "'name'" of a socket address for messages: abstract names start with '@'. */
static const char *name_str(const unsigned char *name, size_t len, char *buf, size_t size)
{
	size_t n = 0;

	if (!len)
		return "an unnamed socket";
	buf[n++] = '\'';
	for (size_t i = 0; i < len && n + 3 < size; i++) {
		if (!name[i] && i + 1 == len && i)
			break; /* a path's trailing NUL */
		buf[n++] = !i && !name[0] ? '@' : (name[i] >= 32 && name[i] < 127 ? name[i] : '?');
	}
	buf[n++] = '\'';
	buf[n] = '\0';
	return buf;
}

/* The task's working directory: where a relative path name was bound (approximately). */
static char *task_cwd(pid_t pid)
{
	char path[64], cwd[PATH_MAX];

	snprintf(path, sizeof(path), "/proc/%d/cwd", pid);
	if (readlink_at(AT_FDCWD, path, cwd, sizeof(cwd)))
		return NULL;
	return strdup(cwd);
}

/* The name's socket file: still the one bound (mode and owner kept), or removed since. */
static int dump_name(struct dump_ctx *d, const struct usk_diag *u, UnixSkEntry *e)
{
	char path[PATH_MAX + SUN_PATH_MAX + 2], name[SUN_PATH_MAX + 1];
	struct stat st;

	if (!u->name_len)
		return 0;
	e->has_name = true;
	if (set_bytes(&e->name, u->name, u->name_len))
		return -1;
	if (!u->name[0])
		return 0; /* abstract */
	memcpy(name, u->name, u->name_len);
	name[u->name_len] = '\0';
	if (name[0] != '/') {
		e->name_dir = task_cwd(d->pid);
		if (!e->name_dir)
			return -1;
		snprintf(path, sizeof(path), "%s/%s", e->name_dir, name);
	} else {
		snprintf(path, sizeof(path), "%s", name);
	}
	if (!stat(path, &st) && S_ISSOCK(st.st_mode) &&
	    (!u->has_vfs || (st.st_dev == u->vfs_dev && st.st_ino == u->vfs_ino))) {
		e->has_name_mode = e->has_name_uid = e->has_name_gid = true;
		e->name_mode = st.st_mode & 07777;
		e->name_uid = st.st_uid;
		e->name_gid = st.st_gid;
	} else {
		e->has_name_unlinked = e->name_unlinked = true;
	}
	return 0;
}

static int getsockopt_int(int fd, int opt, int *val)
{
	socklen_t len = sizeof(*val);

	return getsockopt(fd, SOL_SOCKET, opt, val, &len);
}

static int dump_opts(int fd, UnixSkEntry *e)
{
	struct ucred cred;
	struct timeval tv;
	socklen_t len = sizeof(cred);
	int v;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len))
		return -1;
	if (cred.pid) {
		e->peer_cred = cred_new(cred.pid, cred.uid, cred.gid);
		if (!e->peer_cred)
			return -1;
	}
	if (getsockopt_int(fd, SO_SNDBUF, &v))
		return -1;
	e->has_sndbuf = true;
	e->sndbuf = v;
	if (getsockopt_int(fd, SO_RCVBUF, &v))
		return -1;
	e->has_rcvbuf = true;
	e->rcvbuf = v;
	if (!getsockopt_int(fd, SO_PASSCRED, &v) && v)
		e->has_passcred = e->passcred = true;
	if (!getsockopt_int(fd, SO_PASSSEC, &v) && v)
		e->has_passsec = e->passsec = true;
	if (!getsockopt_int(fd, SO_PEEK_OFF, &v) && v >= 0) {
		e->has_peek_off = true;
		e->peek_off = v;
	}
	len = sizeof(tv);
	if (!getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, &len) && (tv.tv_sec || tv.tv_usec)) {
		e->has_rcvtimeo_us = true;
		e->rcvtimeo_us = tv.tv_sec * 1000000ULL + tv.tv_usec;
	}
	len = sizeof(tv);
	if (!getsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, &len) && (tv.tv_sec || tv.tv_usec)) {
		e->has_sndtimeo_us = true;
		e->sndtimeo_us = tv.tv_sec * 1000000ULL + tv.tv_usec;
	}
	return 0;
}

static int queue_add(UnixSkEntry *e, const void *data, size_t len, const struct sockaddr_un *from,
		     socklen_t from_len)
{
	UnixSkMsg **q = realloc(e->queue, (e->n_queue + 1) * sizeof(*q)), *m;

	if (!q)
		return -1;
	e->queue = q;
	m = q[e->n_queue] = calloc(1, sizeof(*m));
	if (!m)
		return -1;
	e->n_queue++;
	unix_sk_msg__init(m);
	if (set_bytes(&m->data, data, len))
		return -1;
	if (from_len > offsetof(struct sockaddr_un, sun_path)) {
		m->has_from = true;
		return set_bytes(&m->from, from->sun_path,
				 from_len - offsetof(struct sockaddr_un, sun_path));
	}
	return 0;
}

/* Close what a peek passed us; true when it carried file descriptors. */
static bool drop_rights(struct msghdr *mh)
{
	bool rights = mh->msg_flags & MSG_CTRUNC;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		rights = true;
		for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++)
			close(((int *)CMSG_DATA(c))[i]);
	}
	return rights;
}

static bool has_creds(struct msghdr *mh)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS)
			return true;
	return false;
}

/*
 * Every unread message (or the byte stream) of the socket, peeked at increasing SO_PEEK_OFF.
 * Returns 1 when file descriptors are in flight in it.
 */
static int peek_queue(int fd, UnixSkEntry *e)
{
	bool stream = e->type == SOCK_STREAM;
	int saved_off, saved_cred, off = 0, one = 1, ret = -1;
	size_t cap = 64 << 10;
	char *buf = malloc(cap);
	union {
		char b[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(64 * sizeof(int)) + 256];
		struct cmsghdr align;
	} ctl;

	if (!buf || getsockopt_int(fd, SO_PEEK_OFF, &saved_off) ||
	    getsockopt_int(fd, SO_PASSCRED, &saved_cred)) {
		free(buf);
		return -1;
	}
	/* with credentials asked for, a real message always brings them, end of queue never */
	if (!saved_cred && setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)))
		goto out;
	for (;;) {
		struct iovec iov = {buf, cap};
		struct sockaddr_un from;
		struct msghdr mh = {.msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = ctl.b,
				    .msg_controllen = sizeof(ctl.b),
				    .msg_name = &from,
				    .msg_namelen = sizeof(from)};
		ssize_t n;

		if (setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof(off)))
			goto out;
		n = recvmsg(fd, &mh,
			    MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC | (stream ? 0 : MSG_TRUNC));
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0)
			goto out;
		if (drop_rights(&mh)) {
			ret = 1;
			goto out;
		}
		if (n == 0 && (stream || !has_creds(&mh)))
			break; /* end of a queue whose reading side is shut down */
		if (!stream && (size_t)n > cap) {
			char *bigger = realloc(buf, n);

			if (!bigger)
				goto out;
			buf = bigger;
			cap = n;
			continue; /* the same message again, whole */
		}
		if (queue_add(e, buf, n, &from,
			      stream ? 0 : min_t(socklen_t, mh.msg_namelen, sizeof(from))))
			goto out;
		off += n;
	}
	ret = 0;
out:
	if (ret < 0)
		pr_perror("cannot peek at the queue of unix socket %llu",
			  (unsigned long long)e->ino);
	setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &saved_off, sizeof(saved_off));
	if (!saved_cred)
		setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &saved_cred, sizeof(saved_cred));
	free(buf);
	return ret;
}

/* A peer outside the tree: refused unless --ext-unix-sk, and then only if it has a name. */
static int dump_external(struct dump_ctx *d, const struct fd_info *fi, UnixSkEntry *e,
			 const struct usk_diag *peer)
{
	char nbuf[SUN_PATH_MAX + 4];
	const char *what = name_str(peer->name, peer->name_len, nbuf, sizeof(nbuf));

	if (!d->opts->ext_unix_sk) {
		pr_err("fd %d: unix socket connected to %s (inode %llu) outside the dumped tree "
		       "(task %d): use --ext-unix-sk",
		       fi->fd, what, (unsigned long long)peer->ino, d->pid);
		return -1;
	}
	if (!peer->name_len) {
		pr_err("fd %d: unix socket connected to an unnamed socket outside the dumped tree "
		       "(task %d): cannot reconnect it",
		       fi->fd, d->pid);
		return -1;
	}
	e->peer = UNIX_SK_PEER__USK_PEER_EXTERNAL;
	if (set_bytes(&e->peer_name, peer->name, peer->name_len))
		return -1;
	e->has_peer_name = true;
	if (peer->name[0] && peer->name[0] != '/' && !(e->peer_dir = task_cwd(d->pid)))
		return -1;
	return 0;
}

/* Who the socket is connected to. */
static int dump_peer(struct dump_ctx *d, const struct fd_info *fi, int nl,
		     const struct usk_diag *self, UnixSkEntry *e)
{
	struct find_listener fl = {.client = self->ino};
	struct diag_copy peer = {0};
	int ret;

	if (!self->has_peer)
		return 0;
	if (self->peer) {
		if (tree_holds(d->tree, self->peer)) {
			e->peer = UNIX_SK_PEER__USK_PEER_TREE;
			e->has_peer_ino = true;
			e->peer_ino = self->peer;
			return 0;
		}
		ret = diag_query(nl, self->peer, UDIAG_SHOW_NAME, copy_cb, &peer);
		if (ret == -ENOENT) {
			e->peer = UNIX_SK_PEER__USK_PEER_GONE;
			return 0;
		}
		free(peer.icons);
		return ret ? -1 : dump_external(d, fi, e, &peer.u);
	}
	/* no inode: an embryo in some listener's queue, or a socket since closed */
	if (self->type != SOCK_DGRAM) {
		ret = diag_query(nl, 0, UDIAG_SHOW_NAME | UDIAG_SHOW_ICONS, listener_cb, &fl);
		if (ret < 0)
			return -1;
		if (ret == 1 && tree_holds(d->tree, fl.found.ino)) {
			if (self->wq) {
				pr_err("fd %d: unix socket has sent data on a connection not yet "
				       "accepted (task %d): not supported yet",
				       fi->fd, d->pid);
				return -1;
			}
			e->peer = UNIX_SK_PEER__USK_PEER_PENDING;
			e->has_listener_ino = true;
			e->listener_ino = fl.found.ino;
			return 0;
		}
		if (ret == 1)
			return dump_external(d, fi, e, &fl.found);
	}
	e->peer = UNIX_SK_PEER__USK_PEER_GONE;
	return 0;
}

static int dump_listener(struct dump_ctx *d, const struct fd_info *fi, const struct diag_copy *c,
			 UnixSkEntry *e)
{
	e->has_backlog = true;
	e->backlog = c->u.wq;
	e->icons = calloc(c->u.n_icons + 1, sizeof(*e->icons));
	if (!e->icons)
		return -1;
	for (size_t i = 0; i < c->u.n_icons; i++) {
		if (c->icons[i] && !tree_holds(d->tree, c->icons[i])) {
			pr_err("fd %d: listening unix socket has a connection from outside the "
			       "dumped tree waiting to be accepted (task %d): not supported yet",
			       fi->fd, d->pid);
			return -1;
		}
		if (!c->icons[i])
			pr_warn("fd %d of %d: a pending connection whose client is closed is "
				"restored without the data it may hold",
				fi->fd, d->pid);
		e->icons[e->n_icons++] = c->icons[i];
	}
	return 0;
}

static int unix_dump(struct dump_ctx *d, const struct fd_info *fi, FileEntry *f)
{
	UnixSkEntry *e = calloc(1, sizeof(*e));
	struct diag_copy self = {0};
	int nl = -1, ret = -1, r;

	if (!e)
		return -1;
	unix_sk_entry__init(e);
	f->unix_sk = e;
	f->has_flags = true;
	f->flags = fi->flags;
	if (fi->lfd < 0) {
		pr_perror("fd %d of %d: cannot take a copy of the unix socket", fi->fd, d->pid);
		return -1;
	}
	nl = diag_open(fi->lfd);
	if (nl < 0)
		return -1;
	r = diag_query(nl, fi->st.st_ino, DIAG_SHOW, copy_cb, &self);
	if (r) {
		if (r == -ENOENT)
			pr_err("fd %d of %d: sock_diag does not know unix socket %llu", fi->fd,
			       d->pid, (unsigned long long)fi->st.st_ino);
		goto out;
	}
	e->ino = fi->st.st_ino;
	e->type = self.u.type;
	e->state = self.u.state;
	if (self.u.shutdown) {
		e->has_shutdown = true;
		e->shutdown = self.u.shutdown;
	}
	e->owner = cred_new(d->pid, d->status.uid[1], d->status.gid[1]);
	if (!e->owner)
		goto out;
	if (e->type != SOCK_STREAM && e->type != SOCK_DGRAM && e->type != SOCK_SEQPACKET) {
		pr_err("fd %d: unix socket of type %u (task %d): not supported yet", fi->fd,
		       e->type, d->pid);
		goto out;
	}
	if (dump_name(d, &self.u, e) || dump_opts(fi->lfd, e))
		goto out;
	if (e->state == TCP_LISTEN) {
		if (dump_listener(d, fi, &self, e))
			goto out;
	} else {
		if (dump_peer(d, fi, nl, &self.u, e))
			goto out;
		r = peek_queue(fi->lfd, e);
		if (r < 0)
			goto out;
		if (r) {
			pr_err("fd %d: unix socket with file descriptors in flight: not supported "
			       "yet "
			       "(task %d)",
			       fi->fd, d->pid);
			goto out;
		}
		if (e->peer == UNIX_SK_PEER__USK_PEER_EXTERNAL && e->type != SOCK_DGRAM &&
		    e->n_queue) {
			pr_err("fd %d: unix socket connected outside the dumped tree has unread "
			       "data "
			       "(task %d): not supported yet",
			       fi->fd, d->pid);
			goto out;
		}
	}
	ret = 0;
out:
	free(self.icons);
	if (nl >= 0)
		close(nl);
	return ret;
}

/* ---- restore ---- */

/* One socket being made. */
struct usk {
	const FileEntry *f;
	const UnixSkEntry *e;
	size_t k;	  /* index in restore_tree.files */
	int fd;		  /* crest's socket, -1 until made */
	bool paired;	  /* made by socketpair(), with: */
	struct usk *mate; /* this tree socket, or */
	int temp;	  /* a temporary end, closed once the data is in */
	int feeder;	  /* writes into this socket's queue (its peer), or -1 */
	bool early;	  /* dgram: connected while its queue was refilled */
};

/* A socket file crest created: removed at the end if it is still that file. */
struct made_path {
	char *path;
	dev_t dev;
	ino_t ino;
};

/* What a helper process does, in memory shared with it. */
enum { OP_SOCKETPAIR, OP_BIND, OP_LISTEN, OP_CONNECT };

struct op {
	int kind, type, fd, backlog;
	struct sockaddr_un addr;
	socklen_t addrlen;
	char dir[PATH_MAX]; /* chdir() here first: relative path names */
	int out[2];
	int err;
};

struct build {
	struct restore_tree *t;
	struct usk *sk;
	size_t n;
	struct op *op;
	int nl;		     /* sock_diag, to tell stale socket files from live ones */
	struct vec unlinked; /* struct made_path: names removed after bind at dump time */
};

static void do_op(struct op *op)
{
	int ret = 0;

	switch (op->kind) {
	case OP_SOCKETPAIR:
		ret = socketpair(AF_UNIX, op->type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, op->out);
		break;
	case OP_BIND:
		ret = bind(op->fd, (struct sockaddr *)&op->addr, op->addrlen);
		break;
	case OP_LISTEN:
		ret = listen(op->fd, op->backlog);
		break;
	case OP_CONNECT:
		ret = connect(op->fd, (struct sockaddr *)&op->addr, op->addrlen);
		break;
	}
	op->err = ret ? errno : 0;
}

/* In the helper, a copy of crest: raw system calls only, libc's caches are crest's. */
static void __attribute__((noreturn)) helper_main(struct op *op, const UnixSkCred *who)
{
	if (op->dir[0] && syscall(SYS_chdir, op->dir))
		goto fail;
	if (who && who->gid != getegid() &&
	    (syscall(SYS_setgroups, 0, NULL) ||
	     syscall(SYS_setresgid, who->gid, who->gid, who->gid)))
		goto fail;
	if (who && who->uid != geteuid() && syscall(SYS_setresuid, who->uid, who->uid, who->uid))
		goto fail;
	do_op(op);
	syscall(SYS_exit, 0);
	__builtin_unreachable();
fail:
	op->err = errno;
	syscall(SYS_exit, 0);
	__builtin_unreachable();
}

/*
 * Run b->op as `who` (its pid, uid and gid, for the credentials the kernel records) and in
 * `dir`: in a helper process sharing crest's fd table, created with who's pid when that pid is
 * free.  Without either, crest does it itself.  0 or -1 with errno.
 */
static int run_as(struct build *b, const UnixSkCred *who, const char *dir)
{
	struct op *op = b->op;
	struct clone_args args = {.flags = CLONE_FILES, .exit_signal = SIGCHLD};
	pid_t tid = who ? (pid_t)who->pid : 0, child;
	int status;

	snprintf(op->dir, sizeof(op->dir), "%s", dir ? dir : "");
	if (!tid && !op->dir[0]) {
		do_op(op);
	} else {
		if (tid > 0 && tid != getpid()) {
			args.set_tid = (uintptr_t)&tid;
			args.set_tid_size = 1;
		}
		fflush(NULL);
		child = syscall(SYS_clone3, &args, sizeof(args));
		if (child < 0 && args.set_tid) {
			pr_info("pid %d is taken: a unix socket's peer credentials will name "
				"another "
				"pid",
				tid);
			args.set_tid = args.set_tid_size = 0;
			child = syscall(SYS_clone3, &args, sizeof(args));
		}
		if (child == 0)
			helper_main(op, who && who->pid ? who : NULL);
		if (child < 0) {
			pr_perror("cannot start a helper for unix sockets");
			return -1;
		}
		while (waitpid(child, &status, __WALL) < 0) {
			if (errno != EINTR) {
				pr_perror("waiting for a unix socket helper");
				return -1;
			}
		}
		if (!WIFEXITED(status) || WEXITSTATUS(status)) {
			pr_err("a unix socket helper died (status %#x)", status);
			op->err = EIO;
		}
	}
	errno = op->err;
	return op->err ? -1 : 0;
}

static struct usk *by_ino(struct build *b, uint64_t ino)
{
	for (size_t i = 0; i < b->n; i++)
		if (b->sk[i].e->ino == ino)
			return &b->sk[i];
	return NULL;
}

static bool named(const struct usk *s)
{
	return s->e->has_name && s->e->name.len;
}

static bool path_name(const ProtobufCBinaryData *name)
{
	return name->len && name->data[0];
}

static char *sname(const struct usk *s, char *buf, size_t size)
{
	if (!named(s)) {
		snprintf(buf, size, "%llu", (unsigned long long)s->e->ino);
		return buf;
	}
	name_str(s->e->name.data, s->e->name.len, buf, size);
	return buf;
}

static int new_socket(int type)
{
	int fd = socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (fd < 0)
		pr_perror("cannot create a unix socket");
	return fd;
}

static void set_addr(struct op *op, const ProtobufCBinaryData *name)
{
	memset(&op->addr, 0, sizeof(op->addr));
	op->addr.sun_family = AF_UNIX;
	memcpy(op->addr.sun_path, name->data, name->len);
	op->addrlen = offsetof(struct sockaddr_un, sun_path) + name->len;
}

/* The socket file's path for crest (relative names joined to their directory). */
static int full_path(const ProtobufCBinaryData *name, const char *dir, char *buf, size_t size)
{
	char n[SUN_PATH_MAX + 1];

	memcpy(n, name->data, name->len);
	n[name->len] = '\0';
	if (n[0] == '/' || !dir || !*dir)
		snprintf(buf, size, "%s", n);
	else
		snprintf(buf, size, "%s/%s", dir, n);
	return 0;
}

struct live_vfs {
	dev_t dev;
	ino_t ino;
};

static int live_cb(const struct usk_diag *u, void *arg)
{
	const struct live_vfs *v = arg;

	return u->has_vfs && u->vfs_dev == v->dev && u->vfs_ino == v->ino;
}

static int remember(struct vec *v, const char *path)
{
	struct made_path *m;
	struct stat st;

	if (stat(path, &st))
		return 0; /* nothing to remove */
	m = vec_push(v);
	if (!m || !(m->path = strdup(path)))
		return -1;
	m->dev = st.st_dev;
	m->ino = st.st_ino;
	return 0;
}

/*
 * Bind fd to a name.  A socket file already at the path is removed first if no socket is bound
 * to it any more (the one the dumped task left behind); anything else there is an error, or
 * just returns -EADDRINUSE when busy_ok.
 */
static int bind_name(struct build *b, int fd, const ProtobufCBinaryData *name, const char *dir,
		     bool busy_ok, struct vec *made)
{
	char path[PATH_MAX + SUN_PATH_MAX + 2], nbuf[SUN_PATH_MAX + 4];
	struct stat st;

	if (path_name(name)) {
		full_path(name, dir, path, sizeof(path));
		if (!lstat(path, &st)) {
			struct live_vfs v = {st.st_dev, st.st_ino};
			int live = S_ISSOCK(st.st_mode)
					   ? diag_query(b->nl, 0, UDIAG_SHOW_VFS, live_cb, &v)
					   : 1;

			if (live < 0)
				return -1;
			if (live) {
				if (busy_ok)
					return -EADDRINUSE;
				pr_err("cannot bind a unix socket to %s: %s is in the way", path,
				       S_ISSOCK(st.st_mode) ? "a live socket"
							    : "a file that is not a socket");
				return -1;
			}
			if (unlink(path)) {
				pr_perror("cannot remove the stale socket file %s", path);
				return -1;
			}
		}
	}
	b->op->kind = OP_BIND;
	b->op->fd = fd;
	set_addr(b->op, name);
	if (run_as(b, NULL, path_name(name) ? dir : NULL)) {
		if (busy_ok && errno == EADDRINUSE)
			return -EADDRINUSE;
		pr_perror("cannot bind a unix socket to %s",
			  name_str(name->data, name->len, nbuf, sizeof(nbuf)));
		return -1;
	}
	return path_name(name) && made ? remember(made, path) : 0;
}

/* Bind a tree socket to its name, with its socket file's mode and owner. */
static int bind_own(struct build *b, struct usk *s)
{
	const UnixSkEntry *e = s->e;
	char path[PATH_MAX + SUN_PATH_MAX + 2];

	if (!named(s))
		return 0;
	if (bind_name(b, s->fd, &e->name, e->name_dir, false,
		      e->name_unlinked ? &b->unlinked : NULL))
		return -1;
	if (!path_name(&e->name) || e->name_unlinked)
		return 0;
	full_path(&e->name, e->name_dir, path, sizeof(path));
	if ((e->has_name_mode && chmod(path, e->name_mode)) ||
	    (e->has_name_uid && e->has_name_gid && lchown(path, e->name_uid, e->name_gid))) {
		pr_perror("cannot give %s its mode and owner", path);
		return -1;
	}
	return 0;
}

static int connect_to(struct build *b, int fd, const ProtobufCBinaryData *name, const char *dir,
		      const UnixSkCred *who)
{
	char nbuf[SUN_PATH_MAX + 4];

	b->op->kind = OP_CONNECT;
	b->op->fd = fd;
	set_addr(b->op, name);
	if (run_as(b, who, path_name(name) ? dir : NULL)) {
		pr_perror("cannot connect a unix socket to %s",
			  name_str(name->data, name->len, nbuf, sizeof(nbuf)));
		return -1;
	}
	return 0;
}

static int listen_as(struct build *b, int fd, int backlog, const UnixSkCred *who)
{
	b->op->kind = OP_LISTEN;
	b->op->fd = fd;
	b->op->backlog = backlog;
	if (run_as(b, who, NULL)) {
		pr_perror("cannot listen on a unix socket");
		return -1;
	}
	return 0;
}

static int pair_as(struct build *b, int type, const UnixSkCred *who, int out[2])
{
	b->op->kind = OP_SOCKETPAIR;
	b->op->type = type;
	if (run_as(b, who, NULL)) {
		pr_perror("cannot create a unix socket pair");
		return -1;
	}
	out[0] = b->op->out[0];
	out[1] = b->op->out[1];
	return 0;
}

/* The other end of a connected pair in the tree, checked both ways. */
static struct usk *tree_peer(struct build *b, struct usk *s, bool mutual)
{
	struct usk *p = by_ino(b, s->e->peer_ino);

	if (!p || p == s || p->e->type != s->e->type ||
	    (mutual &&
	     (p->e->peer != UNIX_SK_PEER__USK_PEER_TREE || p->e->peer_ino != s->e->ino))) {
		pr_err("files.img: unix socket %llu: its peer %llu is missing or inconsistent",
		       (unsigned long long)s->e->ino, (unsigned long long)s->e->peer_ino);
		return NULL;
	}
	return p;
}

static bool is_listener_name(struct build *b, const struct usk *s)
{
	for (size_t i = 0; i < b->n; i++) {
		const UnixSkEntry *l = b->sk[i].e;

		if (l->state == TCP_LISTEN && l->has_name && l->name.len == s->e->name.len &&
		    !memcmp(l->name.data, s->e->name.data, l->name.len))
			return true;
	}
	return false;
}

/*
 * An accepted connection: s, the accepted end, carries its listener's name and as peer
 * credentials those of whoever connected; c has those of whoever listened.  A temporary
 * listener with s's name stands in for the original one.
 */
static int accepted_pair(struct build *b, struct usk *s, struct usk *c)
{
	const UnixSkEntry *e = s->e;
	struct vec made = VEC_INIT(struct made_path);
	ProtobufCBinaryData tname = e->name;
	const char *tdir = e->name_dir;
	struct sockaddr_un auto_addr = {.sun_family = AF_UNIX};
	socklen_t alen = sizeof(auto_addr);
	int t = new_socket(e->type), ret = -1, r;
	char nbuf[SUN_PATH_MAX + 4];

	if (t < 0)
		return -1;
	r = bind_name(b, t, &e->name, e->name_dir, true, &made);
	if (r == -EADDRINUSE) {
		pr_warn("unix socket %llu: %s is taken: the restored connection gets another name",
			(unsigned long long)e->ino, sname(s, nbuf, sizeof(nbuf)));
		if (bind(t, (struct sockaddr *)&auto_addr, sizeof(sa_family_t)) ||
		    getsockname(t, (struct sockaddr *)&auto_addr, &alen)) {
			pr_perror("cannot autobind a unix socket");
			goto out;
		}
		tname.data = (uint8_t *)auto_addr.sun_path;
		tname.len = alen - offsetof(struct sockaddr_un, sun_path);
		tdir = NULL;
	} else if (r) {
		goto out;
	}
	if (listen_as(b, t, 1, c->e->peer_cred))
		goto out;
	c->fd = new_socket(c->e->type);
	if (c->fd < 0 || bind_own(b, c) || connect_to(b, c->fd, &tname, tdir, e->peer_cred))
		goto out;
	s->fd = accept4(t, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (s->fd < 0) {
		pr_perror("cannot accept a restored unix connection");
		goto out;
	}
	ret = 0;
out:
	close(t);
	for (size_t i = 0; i < made.len; i++) {
		struct made_path *m = vec_at(&made, struct made_path, i);
		struct stat st;

		if (!stat(m->path, &st) && st.st_dev == m->dev && st.st_ino == m->ino)
			unlink(m->path);
		free(m->path);
	}
	vec_free(&made);
	return ret;
}

/* Connected stream and seqpacket pairs, both ends in the tree. */
static int make_pairs(struct build *b)
{
	for (size_t i = 0; i < b->n; i++) {
		struct usk *x = &b->sk[i], *y, *s;
		int fds[2];

		if (x->e->type == SOCK_DGRAM || x->e->peer != UNIX_SK_PEER__USK_PEER_TREE ||
		    x->fd >= 0)
			continue;
		y = tree_peer(b, x, true);
		if (!y)
			return -1;
		if (!named(x) && !named(y)) {
			if (pair_as(b, x->e->type, x->e->peer_cred, fds))
				return -1;
			x->fd = fds[0];
			y->fd = fds[1];
		} else {
			/* the accepted end has the listener's name; a client rarely has one */
			if (named(x) && named(y))
				s = is_listener_name(b, y) && !is_listener_name(b, x) ? y : x;
			else
				s = named(x) ? x : y;
			if (accepted_pair(b, s, s == x ? y : x))
				return -1;
		}
		x->feeder = y->fd;
		y->feeder = x->fd;
	}
	return 0;
}

/* Listeners, with their pending connections in queue order. */
static int make_listeners(struct build *b)
{
	for (size_t i = 0; i < b->n; i++) {
		struct usk *l = &b->sk[i];
		const UnixSkEntry *e = l->e;
		char nbuf[SUN_PATH_MAX + 4];

		if (e->state != TCP_LISTEN)
			continue;
		if (!named(l)) {
			pr_err("files.img: listening unix socket %llu has no name",
			       (unsigned long long)e->ino);
			return -1;
		}
		l->fd = new_socket(e->type);
		if (l->fd < 0 || bind_own(b, l) ||
		    listen_as(b, l->fd, e->has_backlog ? (int)e->backlog : SOMAXCONN, e->peer_cred))
			return -1;
		for (size_t j = 0; j < e->n_icons; j++) {
			struct usk *c = e->icons[j] ? by_ino(b, e->icons[j]) : NULL;
			int fd;

			if (!e->icons[j]) {
				/* a client that closed: connect and close, its embryo stays */
				fd = new_socket(e->type);
				if (fd < 0 || connect_to(b, fd, &e->name, e->name_dir, NULL)) {
					if (fd >= 0)
						close(fd);
					return -1;
				}
				close(fd);
				continue;
			}
			if (!c || c->fd >= 0 || c->e->type != e->type ||
			    c->e->peer != UNIX_SK_PEER__USK_PEER_PENDING ||
			    c->e->listener_ino != e->ino) {
				pr_err("files.img: pending connection %llu of unix socket %s is "
				       "missing or inconsistent",
				       (unsigned long long)e->icons[j],
				       sname(l, nbuf, sizeof(nbuf)));
				return -1;
			}
			c->fd = new_socket(e->type);
			if (c->fd < 0 || bind_own(b, c) ||
			    connect_to(b, c->fd, &e->name, e->name_dir, c->e->owner))
				return -1;
		}
	}
	return 0;
}

/*
 * Datagram sockets.  One made by socketpair() (it has peer credentials) is made so again, with
 * its unnamed peer when that is in the tree, else with a temporary end that fills its queue;
 * an unnamed one with queued data too, as nothing else could address it.  The rest are plain
 * sockets, filled from a temporary socket by name.  Connections come after the data.
 */
static int make_dgrams(struct build *b)
{
	for (size_t i = 0; i < b->n; i++) {
		struct usk *d = &b->sk[i], *p = NULL;
		int fds[2];

		if (d->e->type != SOCK_DGRAM || d->fd >= 0)
			continue;
		if (d->e->peer == UNIX_SK_PEER__USK_PEER_TREE) {
			p = tree_peer(b, d, false);
			if (!p)
				return -1;
			if (named(p) || p->fd >= 0)
				p = NULL;
		}
		if (p || d->e->peer_cred || (!named(d) && d->e->n_queue)) {
			if (pair_as(b, SOCK_DGRAM,
				    d->e->peer_cred ? d->e->peer_cred
				    : p		    ? p->e->peer_cred
						    : NULL,
				    fds))
				return -1;
			d->fd = fds[0];
			d->feeder = fds[1];
			d->paired = true;
			if (p) {
				d->mate = p;
				p->mate = d;
				p->paired = true;
				p->fd = fds[1];
				p->feeder = fds[0];
				if (bind_own(b, p))
					return -1;
			} else {
				d->temp = fds[1];
			}
		} else {
			d->fd = new_socket(SOCK_DGRAM);
			if (d->fd < 0)
				return -1;
		}
		if (bind_own(b, d))
			return -1;
	}
	return 0;
}

/* Stream and seqpacket sockets not made yet: unconnected, with a closed peer, or external. */
static int make_others(struct build *b)
{
	char nbuf[SUN_PATH_MAX + 4];

	for (size_t i = 0; i < b->n; i++) {
		struct usk *s = &b->sk[i];
		const UnixSkEntry *e = s->e;
		int fds[2];

		if (s->fd >= 0 || e->type == SOCK_DGRAM)
			continue;
		switch (e->peer) {
		case UNIX_SK_PEER__USK_PEER_GONE:
			/* a pair whose other end goes once the data is in */
			if (pair_as(b, e->type, e->peer_cred, fds))
				return -1;
			s->fd = fds[0];
			s->temp = s->feeder = fds[1];
			s->paired = true;
			if (bind_own(b, s))
				return -1;
			break;
		case UNIX_SK_PEER__USK_PEER_NONE:
		case UNIX_SK_PEER__USK_PEER_EXTERNAL:
			s->fd = new_socket(e->type);
			if (s->fd < 0 || bind_own(b, s))
				return -1;
			if (e->peer == UNIX_SK_PEER__USK_PEER_EXTERNAL &&
			    (!e->has_peer_name ||
			     connect_to(b, s->fd, &e->peer_name, e->peer_dir, e->owner)))
				return -1;
			break;
		default:
			pr_err("files.img: unix socket %s: its peer is missing",
			       sname(s, nbuf, sizeof(nbuf)));
			return -1;
		}
	}
	return 0;
}

/* A bigger send buffer than the data needs, so that refilling never waits. */
static void boost_sndbuf(int fd, const UnixSkEntry *e)
{
	uint64_t total = 1 << 20;
	int size;

	for (size_t j = 0; j < e->n_queue; j++)
		total += 2 * (e->queue[j]->data.len + 1024); /* and the per-message overhead */
	size = min_t(uint64_t, total, INT_MAX / 2);
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)))
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
}

/* The tree's dgram socket of this name: messages it sent are sent from it again. */
static struct usk *dgram_by_name(struct build *b, const ProtobufCBinaryData *name)
{
	for (size_t i = 0; i < b->n; i++) {
		struct usk *s = &b->sk[i];

		if (s->fd >= 0 && s->e->type == SOCK_DGRAM && named(s) &&
		    s->e->name.len == name->len && !memcmp(s->e->name.data, name->data, name->len))
			return s;
	}
	return NULL;
}

/* Stream and seqpacket data comes from the peer, which wrote it. */
static int fill_from_peer(struct build *b, struct usk *s)
{
	const UnixSkEntry *e = s->e;
	char nbuf[SUN_PATH_MAX + 4];

	if (s->feeder < 0) {
		pr_err("files.img: unix socket %s has queued data and no peer to write it",
		       sname(s, nbuf, sizeof(nbuf)));
		return -1;
	}
	boost_sndbuf(s->feeder, e);
	for (size_t j = 0; j < e->n_queue; j++) {
		const ProtobufCBinaryData *q = &e->queue[j]->data;

		if (e->type == SOCK_STREAM
			    ? write_all(s->feeder, q->data, q->len)
			    : send(s->feeder, q->data, q->len, MSG_DONTWAIT) != (ssize_t)q->len) {
			pr_perror("cannot refill the queue of unix socket %s",
				  sname(s, nbuf, sizeof(nbuf)));
			return -1;
		}
	}
	return 0;
}

/*
 * A datagram, sent to s by name from the socket that sent it when that is in the tree, so
 * recvfrom() names the same sender; else from a temporary socket with that name if it is an
 * abstract one that is free, else from an unnamed one.
 */
static int send_dgram(struct build *b, struct usk *s, const UnixSkMsg *m)
{
	struct usk *x = m->has_from ? dgram_by_name(b, &m->from) : NULL;
	struct sockaddr_un to, own = {.sun_family = AF_UNIX};
	socklen_t to_len;
	int from = x ? x->fd : -1, tmp = -1, ret = -1;
	char nbuf[SUN_PATH_MAX + 4];
	ssize_t n;

	set_addr(b->op, &s->e->name);
	to = b->op->addr;
	to_len = b->op->addrlen;
	if (path_name(&s->e->name) && s->e->name.data[0] != '/' && s->e->name_dir) {
		/* crest sends from its own working directory: the name in full */
		char path[PATH_MAX + SUN_PATH_MAX + 2];

		full_path(&s->e->name, s->e->name_dir, path, sizeof(path));
		if (strlen(path) >= sizeof(to.sun_path)) {
			pr_err("unix socket %s: %s is too long a name to send to",
			       sname(s, nbuf, sizeof(nbuf)), path);
			return -1;
		}
		memcpy(to.sun_path, path, strlen(path) + 1);
		to_len = offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1;
	}
	if (!x) {
		from = tmp = new_socket(SOCK_DGRAM);
		if (tmp < 0)
			return -1;
		if (m->has_from && m->from.len && !m->from.data[0] && m->from.len <= SUN_PATH_MAX) {
			memcpy(own.sun_path, m->from.data, m->from.len);
			if (bind(tmp, (struct sockaddr *)&own,
				 offsetof(struct sockaddr_un, sun_path) + m->from.len))
				pr_warn("unix socket %s: a message from %s comes back unnamed",
					sname(s, nbuf, sizeof(nbuf)),
					name_str(m->from.data, m->from.len, nbuf, sizeof(nbuf)));
		} else if (m->has_from && m->from.len) {
			pr_warn("unix socket %s: a message from %s, gone, comes back unnamed",
				sname(s, nbuf, sizeof(nbuf)),
				name_str(m->from.data, m->from.len, nbuf, sizeof(nbuf)));
		}
	}
	boost_sndbuf(from, s->e);
	n = sendto(from, m->data.data, m->data.len, MSG_DONTWAIT, (struct sockaddr *)&to, to_len);
	/*
	 * Past max_dgram_qlen only the socket's own peer may queue more: when that is the
	 * sender, connect now (it was so at dump), and the rest comes from it alone.
	 */
	if (n < 0 && errno == EAGAIN && x && !s->early &&
	    s->e->peer == UNIX_SK_PEER__USK_PEER_TREE && s->e->peer_ino == x->e->ino) {
		if (connect_to(b, s->fd, &x->e->name, x->e->name_dir, NULL))
			goto out;
		s->early = true;
		n = sendto(from, m->data.data, m->data.len, MSG_DONTWAIT, (struct sockaddr *)&to,
			   to_len);
	}
	if (n != (ssize_t)m->data.len) {
		pr_perror("cannot refill the queue of unix socket %s",
			  sname(s, nbuf, sizeof(nbuf)));
		goto out;
	}
	ret = 0;
out:
	if (tmp >= 0)
		close(tmp);
	return ret;
}

/* The queued data, written back before any shutdown or connect could refuse it. */
static int fill_queues(struct build *b)
{
	char nbuf[SUN_PATH_MAX + 4];

	for (size_t i = 0; i < b->n; i++) {
		struct usk *s = &b->sk[i];

		if (!s->e->n_queue)
			continue;
		if (s->e->type != SOCK_DGRAM || s->feeder >= 0) {
			if (fill_from_peer(b, s))
				return -1;
			continue;
		}
		if (!named(s)) {
			pr_err("files.img: unnamed unix socket %s has queued data and no peer",
			       sname(s, nbuf, sizeof(nbuf)));
			return -1;
		}
		for (size_t j = 0; j < s->e->n_queue; j++)
			if (send_dgram(b, s, s->e->queue[j]))
				return -1;
	}
	return 0;
}

/* The temporary ends go: a socket paired with one now has a closed peer. */
static void close_temps(struct build *b)
{
	for (size_t i = 0; i < b->n; i++) {
		if (b->sk[i].temp >= 0)
			close(b->sk[i].temp);
		b->sk[i].temp = -1;
		b->sk[i].feeder = -1;
	}
}

/* Connect fd to a socket that is closed at once: sends then fail as they did at dump. */
static int connect_to_closed(int fd)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	socklen_t len = sizeof(a);
	int tmp = new_socket(SOCK_DGRAM), ret = -1;

	if (tmp < 0)
		return -1;
	if (bind(tmp, (struct sockaddr *)&a, sizeof(sa_family_t)) ||
	    getsockname(tmp, (struct sockaddr *)&a, &len) ||
	    connect(fd, (struct sockaddr *)&a, len))
		pr_perror("cannot connect a unix socket to a closed peer");
	else
		ret = 0;
	close(tmp);
	return ret;
}

/* Dgram connections, once the data is in (a connected socket takes only its peer's). */
static int connect_dgrams(struct build *b)
{
	struct sockaddr_un none = {.sun_family = AF_UNSPEC};

	for (size_t i = 0; i < b->n; i++) {
		struct usk *d = &b->sk[i], *p;
		const UnixSkEntry *e = d->e;

		if (e->type != SOCK_DGRAM)
			continue;
		switch (e->peer) {
		case UNIX_SK_PEER__USK_PEER_NONE:
			if (d->paired && connect(d->fd, (struct sockaddr *)&none, sizeof(none))) {
				pr_perror("cannot disconnect a unix socket");
				return -1;
			}
			break;
		case UNIX_SK_PEER__USK_PEER_TREE:
			p = by_ino(b, e->peer_ino);
			if (d->mate == p || d->early)
				break;
			if (!named(p)) {
				pr_err("unix socket %llu is connected to unnamed socket %llu, "
				       "which "
				       "is paired with another: not supported yet",
				       (unsigned long long)e->ino, (unsigned long long)p->e->ino);
				return -1;
			}
			if (connect_to(b, d->fd, &p->e->name, p->e->name_dir, NULL))
				return -1;
			break;
		case UNIX_SK_PEER__USK_PEER_GONE:
			/* paired with a temporary end, closed by now: already so */
			if ((!d->paired || d->mate) && connect_to_closed(d->fd))
				return -1;
			break;
		case UNIX_SK_PEER__USK_PEER_EXTERNAL:
			if (!e->has_peer_name ||
			    connect_to(b, d->fd, &e->peer_name, e->peer_dir, NULL))
				return -1;
			break;
		default:
			pr_err("files.img: unix socket %llu: unknown peer kind %d",
			       (unsigned long long)e->ino, e->peer);
			return -1;
		}
	}
	return 0;
}

static int set_int(int fd, int opt, int val)
{
	return setsockopt(fd, SOL_SOCKET, opt, &val, sizeof(val));
}

static int set_timeout(int fd, int opt, uint64_t us)
{
	struct timeval tv = {.tv_sec = us / 1000000, .tv_usec = us % 1000000};

	return setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof(tv));
}

/* getsockopt reports buffer sizes doubled; the FORCE variants pass the hard limits as root. */
static int set_buf(int fd, int opt, int force_opt, uint32_t val)
{
	int cur;

	if (!getsockopt_int(fd, opt, &cur) && cur == (int)val)
		return 0;
	return set_int(fd, force_opt, val / 2) && set_int(fd, opt, val / 2) ? -1 : 0;
}

/* Shutdown bits, options and file flags: last, as each of them could get in the way. */
static int finish_socket(struct usk *s)
{
	const UnixSkEntry *e = s->e;
	char nbuf[SUN_PATH_MAX + 4];

	if (e->has_shutdown && (e->shutdown & 3) && shutdown(s->fd, (e->shutdown & 3) - 1) &&
	    errno != ENOTCONN)
		goto fail;
	if ((e->has_sndbuf && set_buf(s->fd, SO_SNDBUF, SO_SNDBUFFORCE, e->sndbuf)) ||
	    (e->has_rcvbuf && set_buf(s->fd, SO_RCVBUF, SO_RCVBUFFORCE, e->rcvbuf)) ||
	    (e->passcred && set_int(s->fd, SO_PASSCRED, 1)) ||
	    (e->passsec && set_int(s->fd, SO_PASSSEC, 1)) ||
	    (e->has_peek_off && set_int(s->fd, SO_PEEK_OFF, e->peek_off)) ||
	    (e->has_rcvtimeo_us && set_timeout(s->fd, SO_RCVTIMEO, e->rcvtimeo_us)) ||
	    (e->has_sndtimeo_us && set_timeout(s->fd, SO_SNDTIMEO, e->sndtimeo_us)))
		goto fail;
	if (fcntl(s->fd, F_SETFL, s->f->flags & (O_NONBLOCK | O_ASYNC)))
		goto fail;
	return 0;
fail:
	pr_perror("cannot set up unix socket %s", sname(s, nbuf, sizeof(nbuf)));
	return -1;
}

static void remove_paths(struct vec *v, bool remove)
{
	for (size_t i = 0; i < v->len; i++) {
		struct made_path *m = vec_at(v, struct made_path, i);
		struct stat st;

		if (remove && !stat(m->path, &st) && st.st_dev == m->dev && st.st_ino == m->ino &&
		    unlink(m->path))
			pr_warn("cannot remove %s: %s", m->path, strerror(errno));
		free(m->path);
	}
	vec_free(v);
}

static int check_entry(const FileEntry *f)
{
	const UnixSkEntry *e = f->unix_sk;

	if (!e || !e->owner ||
	    (e->type != SOCK_STREAM && e->type != SOCK_DGRAM && e->type != SOCK_SEQPACKET) ||
	    (e->has_name && e->name.len > SUN_PATH_MAX) ||
	    (e->has_peer_name && e->peer_name.len > SUN_PATH_MAX) ||
	    (e->peer == UNIX_SK_PEER__USK_PEER_TREE && !e->has_peer_ino) ||
	    (e->name_dir && strlen(e->name_dir) >= PATH_MAX) ||
	    (e->peer_dir && strlen(e->peer_dir) >= PATH_MAX)) {
		pr_err("files.img: unix socket %u is malformed", f->id);
		return -1;
	}
	return 0;
}

/*
 * Every unix socket of the tree, made at once at the first open of one: each becomes its
 * file's helper fd now, so files.c opens no other; the one asked for is returned.
 */
static int unix_open(struct restore_ctx *r, const FileEntry *f)
{
	struct restore_tree *t = r->tree;
	struct build b = {.t = t, .nl = -1, .unlinked = VEC_INIT(struct made_path)};
	int ret = -1;
	size_t n = 0;

	for (size_t k = 0; k < t->files.len; k++) {
		const FileEntry *g = *vec_at(&t->files, FileEntry *, k);

		if (g->kind == FD_KIND__FD_UNIX_SK && check_entry(g))
			return -1;
		n += g->kind == FD_KIND__FD_UNIX_SK;
	}
	b.sk = calloc(n, sizeof(*b.sk));
	b.op = mmap(NULL, sizeof(*b.op), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (!b.sk || b.op == MAP_FAILED) {
		b.op = NULL;
		goto out;
	}
	for (size_t k = 0; k < t->files.len; k++) {
		const FileEntry *g = *vec_at(&t->files, FileEntry *, k);
		struct usk *s = &b.sk[b.n];

		if (g->kind != FD_KIND__FD_UNIX_SK)
			continue;
		s->f = g;
		s->e = g->unix_sk;
		s->k = k;
		s->fd = s->temp = s->feeder = -1;
		b.n++;
	}
	b.nl = diag_open(-1);
	if (b.nl < 0 || make_pairs(&b) || make_listeners(&b) || make_dgrams(&b) ||
	    make_others(&b) || fill_queues(&b))
		goto out;
	close_temps(&b);
	if (connect_dgrams(&b))
		goto out;
	for (size_t i = 0; i < b.n; i++)
		if (finish_socket(&b.sk[i]))
			goto out;
	for (size_t i = 0; i < b.n; i++) {
		struct usk *s = &b.sk[i];

		if (s->f == f)
			continue;
		t->file_fds[s->k] = restore_add_helper(t, s->fd);
		s->fd = -1; /* the helper list has it now, or it is closed */
		if (t->file_fds[s->k] < 0)
			goto out;
	}
	for (size_t i = 0; i < b.n; i++) {
		if (b.sk[i].f == f) {
			ret = b.sk[i].fd;
			b.sk[i].fd = -1;
		}
	}
out:
	if (ret < 0) {
		for (size_t i = 0; i < b.n; i++)
			if (b.sk[i].fd >= 0)
				close(b.sk[i].fd);
		close_temps(&b);
	}
	remove_paths(&b.unlinked, ret >= 0);
	if (b.nl >= 0)
		close(b.nl);
	if (b.op)
		munmap(b.op, sizeof(*b.op));
	free(b.sk);
	return ret;
}

const struct fd_ops unix_sk_fd_ops = {
	.name = "unix socket",
	.kind = FD_KIND__FD_UNIX_SK,
	.match = unix_match,
	.dump = unix_dump,
	.open = unix_open,
};
