// SPDX-License-Identifier: MIT
/*
 * Unix sockets, the less common shapes, between a parent and its child:
 *  - an accepted stream connection (the child connected to the parent's listener at a path,
 *    which still listens) with data queued both ways;
 *  - an accepted seqpacket connection whose abstract-named listener was closed since, with
 *    messages queued both ways;
 *  - a stream socket whose peer was closed, with the data the peer wrote before;
 *  - a dgram server bound to a path, holding messages from the child's named client (which is
 *    connected to it) and from an unnamed socket since closed; the client holds more replies
 *    than max_dgram_qlen, which only its peer may queue;
 *  - a dgram socket connected to a socket since closed;
 *  - a listener whose socket file was removed after bind, and one whose pending connection
 *    comes from a client that closed;
 *  - a dgram socket bound to a relative path, with a message from an unnamed socket;
 *  - a socket file with mode 0640; SO_PASSCRED, SO_RCVBUF and SO_RCVTIMEO set.
 * After SIGTERM everything must read back as queued, with the senders' names and the peers'
 * credentials, and behave: new connections, replies by the names messages came from.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testlib.h"

#define WAIT_MS 5000
#define REPLIES 20

static int rel, lsn, sacc, cc, seq_acc, cq, gone_keep, ds, dc, dead_conn, unl_lsn, orphan_lsn;
static pid_t parent, child;
static char srv_path[4096], ds_path[4096], dc_path[4096], unl_path[4096], orphan_path[4096],
	seq_name[64];

static socklen_t addr_of(struct sockaddr_un *a, const char *path)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(a->sun_path))
		tl_fail("%s: too long for a socket name", path);
	memcpy(a->sun_path, path, strlen(path) + 1);
	return offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1;
}

static socklen_t abs_of(struct sockaddr_un *a, const char *name)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	memcpy(a->sun_path + 1, name, strlen(name));
	return offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name);
}

static pid_t peer_pid(int fd)
{
	struct ucred c;
	socklen_t len = sizeof(c);

	return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &len) ? -1 : c.pid;
}

static bool wait_in(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};

	return poll(&p, 1, WAIT_MS) == 1;
}

/* recv one message (waiting for it) into buf as a string; its length, -1 on error. */
static ssize_t get(int fd, char *buf, size_t size, struct sockaddr_un *from, socklen_t *flen)
{
	ssize_t n;

	if (!wait_in(fd))
		return -1;
	memset(buf, 0, size);
	n = recvfrom(fd, buf, size - 1, MSG_DONTWAIT, (struct sockaddr *)from, flen);
	return n;
}

static bool same_name(const struct sockaddr_un *a, socklen_t alen, const char *path)
{
	struct sockaddr_un want;
	socklen_t wlen = addr_of(&want, path);

	return alen == wlen && !memcmp(a, &want, wlen);
}

static void put(int fd, const char *s)
{
	if (send(fd, s, strlen(s), 0) != (ssize_t)strlen(s))
		tl_fail("send '%s': %m", s);
}

static bool expect_msg(int fd, const char *want)
{
	char buf[256];
	ssize_t n = get(fd, buf, sizeof(buf), NULL, NULL);

	if (n == (ssize_t)strlen(want) && !strcmp(buf, want))
		return true;
	tl_log("read '%s' (%zd), expected '%s'", buf, n, want);
	return false;
}

/* ---- the child ---- */

static void __attribute__((noreturn)) child_main(int sync)
{
	struct sockaddr_un a;
	socklen_t alen;
	char buf[256];

	close(lsn);
	close(ds);
	close(unl_lsn);
	close(orphan_lsn);
	close(gone_keep);
	close(dead_conn);
	close(rel);

	/* the stream connection to the parent's listener */
	alen = addr_of(&a, srv_path);
	cc = socket(AF_UNIX, SOCK_STREAM, 0);
	if (cc < 0 || connect(cc, (struct sockaddr *)&a, alen))
		tl_fail("child: connect to %s: %m", srv_path);
	put(cc, "to server");

	/* the seqpacket connection, to an abstract name */
	alen = abs_of(&a, seq_name);
	cq = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	if (cq < 0 || connect(cq, (struct sockaddr *)&a, alen))
		tl_fail("child: connect to @%s: %m", seq_name);
	put(cq, "seq one");
	put(cq, "seq two");

	/* a named dgram client connected to the parent's server */
	dc = socket(AF_UNIX, SOCK_DGRAM, 0);
	alen = addr_of(&a, dc_path);
	if (dc < 0 || bind(dc, (struct sockaddr *)&a, alen))
		tl_fail("child: bind %s: %m", dc_path);
	alen = addr_of(&a, ds_path);
	if (connect(dc, (struct sockaddr *)&a, alen))
		tl_fail("child: connect to %s: %m", ds_path);
	for (int i = 0; i < 3; i++) {
		snprintf(buf, sizeof(buf), "request %d", i);
		put(dc, buf);
	}
	if (write(sync, "x", 1) != 1)
		tl_fail("child: sync: %m");

	tl_wait_term();

	tl_expect(expect_msg(cc, "to client"), "child: the stream client's data differs");
	tl_expect(peer_pid(cc) == parent, "child: stream client's peer pid %d, not %d",
		  peer_pid(cc), parent);
	alen = sizeof(a);
	tl_expect(!getpeername(cc, (struct sockaddr *)&a, &alen) && same_name(&a, alen, srv_path),
		  "child: the stream client's peer is not named %s", srv_path);
	tl_expect(expect_msg(cq, "seq to client"), "child: the seqpacket client's data differs");
	for (int i = 0; i < REPLIES; i++) {
		char want[32];
		ssize_t n;

		snprintf(want, sizeof(want), "reply %d", i);
		alen = sizeof(a);
		n = get(dc, buf, sizeof(buf), &a, &alen);
		tl_expect(n == (ssize_t)strlen(want) && !strcmp(buf, want),
			  "child: reply %d reads '%s'", i, buf);
		tl_expect(same_name(&a, alen, ds_path), "child: reply %d not from %s", i, ds_path);
	}
	/* still connected to the server: send() needs no address */
	tl_expect(send(dc, "after", 5, 0) == 5, "child: send on the connected client: %m");
	/* the listener still listens */
	alen = addr_of(&a, srv_path);
	close(cc);
	cc = socket(AF_UNIX, SOCK_STREAM, 0);
	tl_expect(cc >= 0 && !connect(cc, (struct sockaddr *)&a, alen),
		  "child: new connection to %s: %m", srv_path);
	put(cc, "new");
	exit(tl_failures() ? 1 : 0);
}

/* ---- the parent ---- */

static int listen_at(const char *path, int type)
{
	struct sockaddr_un a;
	socklen_t alen = addr_of(&a, path);
	int fd = socket(AF_UNIX, type, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&a, alen) || listen(fd, 4))
		tl_fail("listen on %s: %m", path);
	return fd;
}

static void build(void)
{
	struct sockaddr_un a;
	socklen_t alen;
	int sync[2], seq_lsn, gp[2], tmp, one = 1, rcvbuf = 100000;
	struct timeval tv = {3, 500000};
	char c, buf[64];

	parent = getpid();
	tl_path(srv_path, sizeof(srv_path), "srv.sock");
	tl_path(ds_path, sizeof(ds_path), "dgram.sock");
	tl_path(dc_path, sizeof(dc_path), "dclient.sock");
	tl_path(unl_path, sizeof(unl_path), "unlinked.sock");
	tl_path(orphan_path, sizeof(orphan_path), "orphan.sock");
	snprintf(seq_name, sizeof(seq_name), "crest-sk-unix2-%d", parent);

	lsn = listen_at(srv_path, SOCK_STREAM);
	if (chmod(srv_path, 0640))
		tl_fail("chmod: %m");
	seq_lsn = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	alen = abs_of(&a, seq_name);
	if (seq_lsn < 0 || bind(seq_lsn, (struct sockaddr *)&a, alen) || listen(seq_lsn, 1))
		tl_fail("listen on @%s: %m", seq_name);
	ds = socket(AF_UNIX, SOCK_DGRAM, 0);
	alen = addr_of(&a, ds_path);
	if (ds < 0 || bind(ds, (struct sockaddr *)&a, alen))
		tl_fail("bind %s: %m", ds_path);
	if (setsockopt(ds, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) ||
	    setsockopt(ds, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) ||
	    setsockopt(ds, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)))
		tl_fail("setsockopt: %m");

	/* the peer of gone_keep wrote, then closed */
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, gp))
		tl_fail("socketpair: %m");
	if (write(gp[1], "orphan data", 11) != 11)
		tl_fail("write: %m");
	close(gp[1]);
	gone_keep = gp[0];

	/* connected to a socket since closed */
	tmp = socket(AF_UNIX, SOCK_DGRAM, 0);
	snprintf(buf, sizeof(buf), "crest-sk-unix2-dead-%d", parent);
	alen = abs_of(&a, buf);
	dead_conn = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (tmp < 0 || dead_conn < 0 || bind(tmp, (struct sockaddr *)&a, alen) ||
	    connect(dead_conn, (struct sockaddr *)&a, alen))
		tl_fail("dead peer setup: %m");
	close(tmp);

	/* a listener without its file, and one with a pending connection from a closed client */
	unl_lsn = listen_at(unl_path, SOCK_STREAM);
	if (unlink(unl_path))
		tl_fail("unlink: %m");
	orphan_lsn = listen_at(orphan_path, SOCK_STREAM);
	tmp = socket(AF_UNIX, SOCK_STREAM, 0);
	alen = addr_of(&a, orphan_path);
	if (tmp < 0 || connect(tmp, (struct sockaddr *)&a, alen))
		tl_fail("connect to %s: %m", orphan_path);
	close(tmp);

	/* a relative name, bound in the working directory */
	if (chdir(tl_dir()))
		tl_fail("chdir: %m");
	rel = socket(AF_UNIX, SOCK_DGRAM, 0);
	alen = addr_of(&a, "rel.sock");
	if (rel < 0 || bind(rel, (struct sockaddr *)&a, alen))
		tl_fail("bind rel.sock: %m");
	tmp = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (tmp < 0 || sendto(tmp, "relative", 8, 0, (struct sockaddr *)&a, alen) != 8)
		tl_fail("sendto rel.sock: %m");
	close(tmp);

	if (pipe(sync))
		tl_fail("pipe: %m");
	fflush(stdout);
	child = fork();
	if (child < 0)
		tl_fail("fork: %m");
	if (child == 0) {
		close(sync[0]);
		close(seq_lsn);
		child_main(sync[1]);
	}
	close(sync[1]);
	if (read(sync[0], &c, 1) != 1)
		tl_fail("the child did not get ready");
	close(sync[0]);

	sacc = accept(lsn, NULL, NULL);
	seq_acc = accept(seq_lsn, NULL, NULL);
	if (sacc < 0 || seq_acc < 0)
		tl_fail("accept: %m");
	close(seq_lsn);
	put(sacc, "to client");
	put(seq_acc, "seq to client");

	/* an unnamed sender, gone by the dump */
	tmp = socket(AF_UNIX, SOCK_DGRAM, 0);
	alen = addr_of(&a, ds_path);
	if (tmp < 0 || sendto(tmp, "unnamed", 7, 0, (struct sockaddr *)&a, alen) != 7)
		tl_fail("sendto %s: %m", ds_path);
	close(tmp);
	/* replies to the client, more than max_dgram_qlen: only a connected peer may */
	alen = addr_of(&a, dc_path);
	for (int i = 0; i < REPLIES; i++) {
		snprintf(buf, sizeof(buf), "reply %d", i);
		if (sendto(ds, buf, strlen(buf), 0, (struct sockaddr *)&a, alen) !=
		    (ssize_t)strlen(buf))
			tl_fail("sendto %s: %m", dc_path);
	}
}

static void check_parent(void)
{
	struct sockaddr_un a, want;
	socklen_t alen, wlen;
	struct timeval tv;
	struct stat st;
	char buf[256];
	int v, fd;

	/* the accepted stream connection */
	tl_expect(expect_msg(sacc, "to server"), "the accepted stream connection's data differs");
	alen = sizeof(a);
	tl_expect(!getsockname(sacc, (struct sockaddr *)&a, &alen) && same_name(&a, alen, srv_path),
		  "the accepted connection is not named %s", srv_path);
	tl_expect(peer_pid(sacc) == child, "accepted stream: peer pid %d, not %d", peer_pid(sacc),
		  child);
	tl_expect(!stat(srv_path, &st) && (st.st_mode & 07777) == 0640, "%s: mode %o, not 0640",
		  srv_path, st.st_mode & 07777);

	/* the seqpacket one, its listener gone */
	tl_expect(expect_msg(seq_acc, "seq one") && expect_msg(seq_acc, "seq two"),
		  "the accepted seqpacket connection's messages differ");
	alen = sizeof(a);
	wlen = abs_of(&want, seq_name);
	tl_expect(!getsockname(seq_acc, (struct sockaddr *)&a, &alen) && alen == wlen &&
			  !memcmp(&a, &want, wlen),
		  "the accepted seqpacket connection is not named @%s", seq_name);

	/* the closed peer's data, then end of file */
	tl_expect(expect_msg(gone_keep, "orphan data"), "the closed peer's data differs");
	tl_expect(read(gone_keep, buf, 1) == 0, "no end of file after the closed peer's data");

	/* the dgram server: who sent what */
	for (int i = 0; i < 3; i++) {
		char w[32];
		ssize_t n;

		snprintf(w, sizeof(w), "request %d", i);
		alen = sizeof(a);
		n = get(ds, buf, sizeof(buf), &a, &alen);
		tl_expect(n == (ssize_t)strlen(w) && !strcmp(buf, w), "request %d reads '%s'", i,
			  buf);
		tl_expect(same_name(&a, alen, dc_path), "request %d is not from %s", i, dc_path);
	}
	alen = sizeof(a);
	tl_expect(get(ds, buf, sizeof(buf), &a, &alen) == 7 && !strcmp(buf, "unnamed") &&
			  alen <= offsetof(struct sockaddr_un, sun_path),
		  "the unnamed sender's message differs");
	alen = sizeof(v);
	tl_expect(!getsockopt(ds, SOL_SOCKET, SO_PASSCRED, &v, &alen) && v, "SO_PASSCRED is lost");
	alen = sizeof(v);
	tl_expect(!getsockopt(ds, SOL_SOCKET, SO_RCVBUF, &v, &alen) && v == 200000,
		  "SO_RCVBUF is %d, not 200000", v);
	alen = sizeof(tv);
	tl_expect(!getsockopt(ds, SOL_SOCKET, SO_RCVTIMEO, &tv, &alen) && tv.tv_sec == 3 &&
			  tv.tv_usec == 500000,
		  "SO_RCVTIMEO is %ld.%06ld", (long)tv.tv_sec, (long)tv.tv_usec);

	/* sends to a closed peer fail as they did */
	errno = 0;
	tl_expect(send(dead_conn, "x", 1, MSG_DONTWAIT) < 0 && errno == ECONNREFUSED,
		  "send to the closed peer: %m, not ECONNREFUSED");

	/* the relative name */
	alen = sizeof(a);
	tl_expect(!getsockname(rel, (struct sockaddr *)&a, &alen) &&
			  same_name(&a, alen, "rel.sock"),
		  "the relative name is lost");
	tl_expect(!stat("rel.sock", &st) && S_ISSOCK(st.st_mode), "rel.sock is not a socket file");
	tl_expect(expect_msg(rel, "relative"), "the message to rel.sock differs");

	/* the unlinked listener has its name, and no file */
	alen = sizeof(a);
	tl_expect(!getsockname(unl_lsn, (struct sockaddr *)&a, &alen) &&
			  same_name(&a, alen, unl_path),
		  "the unlinked listener lost its name");
	tl_expect(access(unl_path, F_OK) < 0, "%s exists again", unl_path);

	/* the pending connection of a closed client: accepted, at end of file */
	fd = wait_in(orphan_lsn) ? accept(orphan_lsn, NULL, NULL) : -1;
	tl_expect(fd >= 0 && read(fd, buf, 1) == 0, "the closed client's pending connection: %m");
	if (fd >= 0)
		close(fd);
}

int main(void)
{
	int status, fd;

	tl_init();
	build();
	tl_ready();
	tl_wait_term();

	check_parent();
	kill(child, SIGTERM);
	fd = wait_in(lsn) ? accept(lsn, NULL, NULL) : -1;
	tl_expect(fd >= 0 && expect_msg(fd, "new"), "no new connection after the restore");
	if (waitpid(child, &status, 0) != child)
		tl_fail("waitpid: %m");
	tl_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child failed (status %#x)",
		  status);
	tl_expect(expect_msg(ds, "after"),
		  "no message from the connected client after the restore");
	unlink(srv_path);
	unlink(ds_path);
	unlink(dc_path);
	unlink(orphan_path);
	unlink("rel.sock");
	tl_done();
}
