// SPDX-License-Identifier: MIT
/*
 * Internet sockets: TCP and UDP over IPv4 and IPv6.  Everything is read from crest's own copy
 * of the socket (pidfd_getfd gives the task's very socket): family and protocol, the names
 * from getsockname/getpeername, the state and a listener's backlog from TCP_INFO, and the
 * options an application sets.  Connections (established or closing) go through sk-tcp.c.
 *
 * Restore: crest makes every socket itself, in its own network namespace (the tree's), all
 * at the first one asked for: listeners, UDP and idle sockets first, so that connections
 * restored on a listener's port (accepted ones) come after it.  Connections stay in repair
 * mode until the whole tree is rebuilt: inet_restore_finish() then removes the network lock
 * and lets them go, in that order, so their first packets are not dropped.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "image.h"
#include "internal.h"
#include "log.h"
#include "net-lock.h"
#include "sk-inet.h"

static const char *proto_name(const InetSkEntry *e)
{
	if (e->protocol == IPPROTO_UDP)
		return e->family == AF_INET6 ? "udp6" : "udp";
	return e->family == AF_INET6 ? "tcp6" : "tcp";
}

static const char *addr_str(const ProtobufCBinaryData *a, uint32_t port, char *buf, size_t size)
{
	char ip[INET6_ADDRSTRLEN] = "*";

	if (a->len == 4)
		inet_ntop(AF_INET, a->data, ip, sizeof(ip));
	else if (a->len == 16)
		inet_ntop(AF_INET6, a->data, ip, sizeof(ip));
	snprintf(buf, size, a->len == 16 ? "[%s]:%u" : "%s:%u", ip, port);
	return buf;
}

const char *inet_sk_str(const InetSkEntry *e, char *buf, size_t size)
{
	char src[64], dst[64];

	addr_str(&e->src_addr, e->src_port, src, sizeof(src));
	if (e->has_dst_port)
		snprintf(buf, size, "%s %s -> %s", proto_name(e), src,
			 addr_str(&e->dst_addr, e->dst_port, dst, sizeof(dst)));
	else
		snprintf(buf, size, "%s %s", proto_name(e), src);
	return buf;
}

static int get_int(int fd, int level, int opt, int *val)
{
	socklen_t len = sizeof(*val);

	return getsockopt(fd, level, opt, val, &len);
}

static bool inet_match(struct dump_ctx *d, const struct fd_info *fi)
{
	int domain, type, proto;

	if (!S_ISSOCK(fi->st.st_mode) || fi->lfd < 0 ||
	    get_int(fi->lfd, SOL_SOCKET, SO_DOMAIN, &domain) ||
	    get_int(fi->lfd, SOL_SOCKET, SO_TYPE, &type) ||
	    get_int(fi->lfd, SOL_SOCKET, SO_PROTOCOL, &proto))
		return false;
	if (domain != AF_INET && domain != AF_INET6)
		return false;
	return (type == SOCK_STREAM && proto == IPPROTO_TCP) ||
	       (type == SOCK_DGRAM && proto == IPPROTO_UDP);
}

/* An address as it goes in the image: the IP's bytes and the port. */
static int put_addr(const struct sockaddr_storage *ss, ProtobufCBinaryData *addr, uint32_t *port)
{
	const void *ip;
	size_t len;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)ss;

		ip = &sin->sin_addr;
		len = 4;
		*port = ntohs(sin->sin_port);
	} else {
		const struct sockaddr_in6 *sin6 = (const void *)ss;

		ip = &sin6->sin6_addr;
		len = 16;
		*port = ntohs(sin6->sin6_port);
	}
	addr->data = malloc(len);
	if (!addr->data)
		return -1;
	memcpy(addr->data, ip, len);
	addr->len = len;
	return 0;
}

/* SO_RCVTIMEO / SO_SNDTIMEO in microseconds; true when one is set. */
static bool get_timeo(int fd, int opt, uint64_t *us)
{
	struct timeval tv;
	socklen_t sl = sizeof(tv);

	if (getsockopt(fd, SOL_SOCKET, opt, &tv, &sl) || (!tv.tv_sec && !tv.tv_usec))
		return false;
	*us = tv.tv_sec * 1000000ull + tv.tv_usec;
	return true;
}

static int set_timeo(int fd, int opt, uint64_t us)
{
	struct timeval tv = {us / 1000000, us % 1000000};

	return setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof(tv));
}

/* Options worth keeping; each only when it differs from what a new socket has. */
static int dump_opts(int fd, const InetSkEntry *e, InetSkOpts *o)
{
	bool tcp = e->protocol == IPPROTO_TCP, v6 = e->family == AF_INET6;
	struct linger lg;
	socklen_t sl;
	char name[IFNAMSIZ + 16];
	int v;

#define FLAG(level, opt, field)                           \
	do {                                              \
		if (!get_int(fd, level, opt, &v) && v)    \
			o->field = o->has_##field = true; \
	} while (0)
#define VAL(level, opt, field)                      \
	do {                                        \
		if (!get_int(fd, level, opt, &v)) { \
			o->field = v;               \
			o->has_##field = true;      \
		}                                   \
	} while (0)
	FLAG(SOL_SOCKET, SO_REUSEADDR, reuseaddr);
	FLAG(SOL_SOCKET, SO_REUSEPORT, reuseport);
	FLAG(SOL_SOCKET, SO_KEEPALIVE, keepalive);
	FLAG(SOL_SOCKET, SO_BROADCAST, broadcast);
	FLAG(SOL_SOCKET, SO_OOBINLINE, oobinline);
	FLAG(SOL_IP, IP_FREEBIND, freebind);
	VAL(SOL_SOCKET, SO_RCVBUF, rcvbuf);
	VAL(SOL_SOCKET, SO_SNDBUF, sndbuf);
	VAL(SOL_SOCKET, SO_PRIORITY, priority);
	VAL(SOL_SOCKET, SO_MARK, mark);
	VAL(SOL_SOCKET, SO_RCVLOWAT, rcvlowat);
	if (v6) {
		FLAG(SOL_IPV6, IPV6_V6ONLY, v6only);
		VAL(SOL_IPV6, IPV6_TCLASS, tos);
		VAL(SOL_IPV6, IPV6_UNICAST_HOPS, ttl);
	} else {
		VAL(SOL_IP, IP_TOS, tos);
		VAL(SOL_IP, IP_TTL, ttl);
	}
	if (tcp) {
		FLAG(SOL_TCP, TCP_NODELAY, nodelay);
		FLAG(SOL_TCP, TCP_CORK, cork);
		VAL(SOL_TCP, TCP_KEEPIDLE, keepidle);
		VAL(SOL_TCP, TCP_KEEPINTVL, keepintvl);
		VAL(SOL_TCP, TCP_KEEPCNT, keepcnt);
		VAL(SOL_TCP, TCP_USER_TIMEOUT, user_timeout);
		sl = sizeof(name) - 1;
		if (!getsockopt(fd, SOL_TCP, TCP_CONGESTION, name, &sl)) {
			name[sl] = '\0';
			if (!(o->congestion = strdup(name)))
				return -1;
		}
	}
#undef FLAG
#undef VAL
	sl = sizeof(lg);
	if (!getsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, &sl) && lg.l_onoff) {
		o->linger = o->has_linger = true;
		o->linger_secs = lg.l_linger;
		o->has_linger_secs = true;
	}
	o->has_rcvtimeo_us = get_timeo(fd, SO_RCVTIMEO, &o->rcvtimeo_us);
	o->has_sndtimeo_us = get_timeo(fd, SO_SNDTIMEO, &o->sndtimeo_us);
	sl = sizeof(name) - 1;
	if (!getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, name, &sl) && sl > 0) {
		name[sl] = '\0';
		if (name[0] && !(o->bindtodevice = strdup(name)))
			return -1;
	}
	return 0;
}

static int dump_names(int fd, InetSkEntry *e)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) ||
	    put_addr(&ss, &e->src_addr, &e->src_port))
		return -1;
	e->has_src_addr = e->has_src_port = true;
	sl = sizeof(ss);
	if (getpeername(fd, (struct sockaddr *)&ss, &sl)) {
		if (errno == ENOTCONN)
			return 0;
		return -1;
	}
	if (put_addr(&ss, &e->dst_addr, &e->dst_port))
		return -1;
	e->has_dst_addr = e->has_dst_port = true;
	return 0;
}

/* What a TCP socket is doing: a connection, a listener, or nothing yet. */
static int dump_tcp_state(struct dump_ctx *d, const struct fd_info *fi, InetSkEntry *e,
			  const char *what)
{
	struct tcp_info ti;
	socklen_t sl = sizeof(ti);

	if (getsockopt(fi->lfd, SOL_TCP, TCP_INFO, &ti, &sl)) {
		pr_perror("fd %d: %s: cannot read TCP_INFO", fi->fd, what);
		return -1;
	}
	e->state = ti.tcpi_state;
	if (ti.tcpi_state == TCP_LISTEN) {
		/* for listeners, TCP_INFO's unacked is the accept queue, sacked its limit */
		e->backlog = ti.tcpi_sacked;
		e->has_backlog = true;
		if (ti.tcpi_unacked && !d->opts->skip_in_flight) {
			pr_err("fd %d: listening %s has %u connections not yet accepted "
			       "(--skip-in-flight drops them)",
			       fi->fd, what, ti.tcpi_unacked);
			return -1;
		}
		if (ti.tcpi_unacked)
			pr_warn("fd %d: listening %s: dropping %u connections not yet accepted",
				fi->fd, what, ti.tcpi_unacked);
		return 0;
	}
	if (ti.tcpi_state == TCP_CLOSE)
		return 0;
	if (!tcp_is_stream_state(ti.tcpi_state)) {
		pr_err("fd %d: %s: connection in state %u (still connecting?): not supported",
		       fi->fd, what, ti.tcpi_state);
		return -1;
	}
	if (!d->opts->tcp_established) {
		pr_err("fd %d: established %s: dumping it needs --tcp-established", fi->fd, what);
		return -1;
	}
	return tcp_stream_dump(d, fi->lfd, &ti, e, what);
}

static int inet_dump(struct dump_ctx *d, const struct fd_info *fi, FileEntry *f)
{
	InetSkEntry *e = calloc(1, sizeof(*e));
	char what[160];
	int v;

	if (!e)
		return -1;
	inet_sk_entry__init(e);
	f->inet_sk = e;
	f->flags = fi->flags;
	f->has_flags = true;
	e->ino = fi->st.st_ino;
	if (get_int(fi->lfd, SOL_SOCKET, SO_DOMAIN, &v))
		goto err;
	e->family = v;
	if (get_int(fi->lfd, SOL_SOCKET, SO_TYPE, &v))
		goto err;
	e->type = v;
	if (get_int(fi->lfd, SOL_SOCKET, SO_PROTOCOL, &v))
		goto err;
	e->protocol = v;
	if (dump_names(fi->lfd, e))
		goto err;
	inet_sk_str(e, what, sizeof(what));
	e->opts = calloc(1, sizeof(*e->opts));
	if (!e->opts)
		return -1;
	inet_sk_opts__init(e->opts);
	if (dump_opts(fi->lfd, e, e->opts))
		return -1;
	if (e->protocol == IPPROTO_UDP) {
		e->state = e->has_dst_port ? TCP_ESTABLISHED : TCP_CLOSE;
		return 0;
	}
	return dump_tcp_state(d, fi, e, what);
err:
	pr_perror("fd %d: cannot read the inet socket", fi->fd);
	return -1;
}

/* ---- restore ---- */

struct inet_sock {
	const FileEntry *f;
	int fd;	     /* crest's own reference, kept to finish connections */
	bool handed; /* open() gave the tasks a reference */
	bool stream; /* a connection in repair mode until inet_restore_finish() */
};

static int make_addr(const InetSkEntry *e, const ProtobufCBinaryData *a, uint32_t port,
		     struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (e->family == AF_INET && a->len == 4) {
		struct sockaddr_in *sin = (void *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		memcpy(&sin->sin_addr, a->data, 4);
		*len = sizeof(*sin);
		return 0;
	}
	if (e->family == AF_INET6 && a->len == 16) {
		struct sockaddr_in6 *sin6 = (void *)ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		memcpy(&sin6->sin6_addr, a->data, 16);
		*len = sizeof(*sin6);
		return 0;
	}
	pr_err("files.img: inet socket %llu: bad address", (unsigned long long)e->ino);
	return -1;
}

static int set_int(int fd, int level, int opt, int val)
{
	return setsockopt(fd, level, opt, &val, sizeof(val));
}

/* Options before bind (what bind and listen depend on) and after (buffers: see below). */
static int restore_opts(int fd, const InetSkEntry *e, const InetSkOpts *o)
{
	bool tcp = e->protocol == IPPROTO_TCP, v6 = e->family == AF_INET6;
	int err = 0;

	if (!o)
		return 0;
#define SET(cond, level, opt, val)                                   \
	do {                                                         \
		if ((cond) && set_int(fd, level, opt, val)) {        \
			pr_perror("cannot set socket option " #opt); \
			err = -1;                                    \
		}                                                    \
	} while (0)
	SET(o->reuseaddr, SOL_SOCKET, SO_REUSEADDR, 1);
	SET(o->reuseport, SOL_SOCKET, SO_REUSEPORT, 1);
	SET(o->keepalive, SOL_SOCKET, SO_KEEPALIVE, 1);
	SET(o->broadcast, SOL_SOCKET, SO_BROADCAST, 1);
	SET(o->oobinline, SOL_SOCKET, SO_OOBINLINE, 1);
	SET(o->freebind, SOL_IP, IP_FREEBIND, 1);
	SET(o->has_priority && o->priority, SOL_SOCKET, SO_PRIORITY, o->priority);
	SET(o->has_mark && o->mark, SOL_SOCKET, SO_MARK, o->mark);
	SET(o->has_rcvlowat && o->rcvlowat > 1, SOL_SOCKET, SO_RCVLOWAT, o->rcvlowat);
	SET(v6 && o->v6only, SOL_IPV6, IPV6_V6ONLY, 1);
	SET(o->has_tos && o->tos, v6 ? SOL_IPV6 : SOL_IP, v6 ? IPV6_TCLASS : IP_TOS, o->tos);
	if (o->has_ttl && o->ttl > 0) {
		int def;

		/* only a TTL the application chose: the default follows the sysctl */
		if (!get_int(fd, v6 ? SOL_IPV6 : SOL_IP, v6 ? IPV6_UNICAST_HOPS : IP_TTL, &def) &&
		    def != o->ttl)
			SET(true, v6 ? SOL_IPV6 : SOL_IP, v6 ? IPV6_UNICAST_HOPS : IP_TTL, o->ttl);
	}
	if (tcp) {
		SET(o->nodelay, SOL_TCP, TCP_NODELAY, 1);
		SET(o->has_keepidle, SOL_TCP, TCP_KEEPIDLE, o->keepidle);
		SET(o->has_keepintvl, SOL_TCP, TCP_KEEPINTVL, o->keepintvl);
		SET(o->has_keepcnt, SOL_TCP, TCP_KEEPCNT, o->keepcnt);
		SET(o->has_user_timeout && o->user_timeout, SOL_TCP, TCP_USER_TIMEOUT,
		    o->user_timeout);
		if (o->congestion &&
		    setsockopt(fd, SOL_TCP, TCP_CONGESTION, o->congestion, strlen(o->congestion)))
			pr_warn("tcp congestion control '%s' not available here: default used",
				o->congestion);
	}
#undef SET
	if (o->linger) {
		struct linger lg = {1, o->linger_secs};

		if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)))
			err = -1;
	}
	if ((o->has_rcvtimeo_us && set_timeo(fd, SO_RCVTIMEO, o->rcvtimeo_us)) ||
	    (o->has_sndtimeo_us && set_timeo(fd, SO_SNDTIMEO, o->sndtimeo_us)))
		err = -1;
	if (o->bindtodevice &&
	    setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, o->bindtodevice, strlen(o->bindtodevice))) {
		pr_perror("cannot bind a socket to device %s", o->bindtodevice);
		err = -1;
	}
	return err;
}

/*
 * Buffer sizes last: the kernel reports twice what was asked, and setting them locks them
 * against autotuning, so only sizes that differ from a new socket's are set (halved back).
 */
static void restore_bufs(int fd, const InetSkOpts *o)
{
	int cur;

	if (!o)
		return;
	if (o->has_rcvbuf && !get_int(fd, SOL_SOCKET, SO_RCVBUF, &cur) && cur < (int)o->rcvbuf)
		set_int(fd, SOL_SOCKET, SO_RCVBUFFORCE, o->rcvbuf / 2);
	if (o->has_sndbuf && !get_int(fd, SOL_SOCKET, SO_SNDBUF, &cur) && cur < (int)o->sndbuf)
		set_int(fd, SOL_SOCKET, SO_SNDBUFFORCE, o->sndbuf / 2);
}

static bool bound(const InetSkEntry *e)
{
	static const uint8_t any[16];

	return e->src_port || (e->src_addr.len && memcmp(e->src_addr.data, any, e->src_addr.len));
}

static int make_socket(const FileEntry *f, bool *stream)
{
	const InetSkEntry *e = f->inet_sk;
	struct sockaddr_storage src, dst;
	socklen_t slen = 0, dlen = 0;
	char what[160];
	int fd;

	inet_sk_str(e, what, sizeof(what));
	*stream = e->protocol == IPPROTO_TCP && tcp_is_stream_state(e->state);
	fd = socket(e->family, e->type | SOCK_CLOEXEC, e->protocol);
	if (fd < 0) {
		pr_perror("%s: cannot make the socket", what);
		return -1;
	}
	if (restore_opts(fd, e, e->opts) ||
	    (e->has_src_port && make_addr(e, &e->src_addr, e->src_port, &src, &slen)) ||
	    (e->has_dst_port && make_addr(e, &e->dst_addr, e->dst_port, &dst, &dlen)))
		goto err;
	if (*stream) {
		if (!e->tcp || !dlen || !slen) {
			pr_err("files.img: %s: a connection without its state", what);
			goto err;
		}
		if (tcp_stream_restore(fd, e, (struct sockaddr *)&src, (struct sockaddr *)&dst,
				       slen))
			goto err_what;
	} else {
		if (slen && bound(e) && bind(fd, (struct sockaddr *)&src, slen)) {
			pr_perror("%s: cannot bind", what);
			goto err;
		}
		if (e->state == TCP_LISTEN && listen(fd, e->backlog)) {
			pr_perror("%s: cannot listen", what);
			goto err;
		}
		if (e->protocol == IPPROTO_UDP && dlen &&
		    connect(fd, (struct sockaddr *)&dst, dlen)) {
			pr_perror("%s: cannot connect", what);
			goto err;
		}
	}
	restore_bufs(fd, e->opts);
	if (f->has_flags && (f->flags & O_NONBLOCK) && fcntl(fd, F_SETFL, O_NONBLOCK))
		goto err;
	return fd;
err_what:
	pr_err("%s: cannot restore the connection", what);
err:
	close(fd);
	return -1;
}

/* Every inet socket of the tree: listeners and the rest first, connections after. */
static int build_all(struct restore_tree *t)
{
	t->inet_built = true;
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < t->files.len; i++) {
			const FileEntry *f = *vec_at(&t->files, FileEntry *, i);
			bool conn;
			struct inet_sock *s;

			if (f->kind != FD_KIND__FD_INET_SK || !f->inet_sk)
				continue;
			conn = f->inet_sk->protocol == IPPROTO_TCP &&
			       tcp_is_stream_state(f->inet_sk->state);
			if (conn != (pass == 1))
				continue;
			s = vec_push(&t->inet_socks);
			if (!s)
				return -1;
			*s = (struct inet_sock){.f = f, .fd = -1};
			s->fd = make_socket(f, &s->stream);
			if (s->fd < 0)
				return -1;
		}
	}
	return 0;
}

static int inet_open(struct restore_ctx *r, const FileEntry *f)
{
	struct restore_tree *t = r->tree;

	if (!f->inet_sk) {
		pr_err("files.img: file %u: inet socket without its description", f->id);
		return -1;
	}
	if (!t->inet_built && build_all(t))
		return -1;
	for (size_t i = 0; i < t->inet_socks.len; i++) {
		struct inet_sock *s = vec_at(&t->inet_socks, struct inet_sock, i);

		if (s->f == f && !s->handed) {
			int fd = fcntl(s->fd, F_DUPFD_CLOEXEC, 0);

			if (fd < 0)
				pr_perror("cannot hand out an inet socket");
			s->handed = fd >= 0;
			return fd;
		}
	}
	pr_err("files.img: inet socket %u opened twice", f->id);
	return -1;
}

size_t inet_sock_size(void)
{
	return sizeof(struct inet_sock);
}

int inet_restore_finish(struct restore_tree *t)
{
	/*
	 * The lock: in crest's namespace, the dump's; in a namespace of the tree's own, the one
	 * net.c put up while the namespace was rebuilt (the dump's went with the old one).
	 */
	if (t->inv->net_lock) {
		int kind = t->own_netns ? NETLOCK_NFTABLES : netlock_parse(t->inv->net_lock);

		if (kind < 0 || netlock_release(kind, t->inv->root_pid))
			return -1;
	}
	for (size_t i = 0; i < t->inet_socks.len; i++) {
		struct inet_sock *s = vec_at(&t->inet_socks, struct inet_sock, i);

		if (s->stream && tcp_stream_finish(s->fd, s->f->inet_sk))
			return -1;
		s->stream = false;
	}
	return 0;
}

/* crest's references go; a failed restore's connections close silently (repair mode). */
void inet_restore_fini(struct restore_tree *t)
{
	for (size_t i = 0; i < t->inet_socks.len; i++) {
		struct inet_sock *s = vec_at(&t->inet_socks, struct inet_sock, i);

		if (s->fd >= 0)
			close(s->fd);
	}
	vec_free(&t->inet_socks);
}

const struct fd_ops inet_sk_fd_ops = {
	.name = "inet socket",
	.kind = FD_KIND__FD_INET_SK,
	.match = inet_match,
	.dump = inet_dump,
	.open = inet_open,
};
