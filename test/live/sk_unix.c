// SPDX-License-Identifier: MIT
/*
 * Unix sockets across a fork.  The parent builds, then forks a child; between them:
 *  - a stream socketpair, each holding one end, with data queued both ways (100000 bytes to
 *    the child, 60000 to the parent);
 *  - a dgram socketpair, each holding one end, with messages of several sizes (one empty)
 *    queued both ways;
 *  - a listening socket bound to a path (backlog 5), held by the parent, with two connections
 *    from the child waiting in its queue, never accepted before the dump;
 *  - a dgram socket bound to an abstract name in the parent, with three messages from an
 *    unnamed socket of the child connected to it.
 * The parent alone holds a seqpacket pair with messages queued both ways (one end
 * O_NONBLOCK) and a stream pair whose one end wrote then shut down writing.
 *
 * After SIGTERM each side reads back exactly what was queued for it, message boundaries
 * included; the parent accepts the two pending connections in their order and they carry a
 * ping-pong; the shut down pair reads its data then end of file; names, flags and SO_PEERCRED
 * (the creator of a pair, the listener's owner for a client, the child for what it connected)
 * are checked on the way.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testlib.h"

#define TO_CHILD 100000
#define TO_PARENT 60000
#define WAIT_MS 5000

static const size_t dg_to_child[] = {1, 0, 3000};
static const size_t dg_to_parent[] = {7, 0, 1000, 60000};
static const char *const sq_msgs[] = {"first", "second message", ""};
#define SQ_BIG 2000

static int sp[2], dg[2], sq[2], sw[2], lsn, abs_sk, cl[2], abs_cl;
static pid_t parent, child;
static char lpath[4096], abs_name[64];
static unsigned char big[TO_CHILD], got[TO_CHILD];

static socklen_t abs_addr(struct sockaddr_un *a)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	memcpy(a->sun_path + 1, abs_name, strlen(abs_name));
	return offsetof(struct sockaddr_un, sun_path) + 1 + strlen(abs_name);
}

static socklen_t path_addr(struct sockaddr_un *a)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	memcpy(a->sun_path, lpath, strlen(lpath) + 1); /* fits: checked in build() */
	return offsetof(struct sockaddr_un, sun_path) + strlen(lpath) + 1;
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

/* Read exactly len bytes (waiting at most WAIT_MS for each piece). */
static bool read_exact(int fd, void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n;

		if (!wait_in(fd))
			return false;
		n = read(fd, (char *)buf + done, len - done);
		if (n <= 0)
			return false;
		done += n;
	}
	return true;
}

/* Nothing more to read right now. */
static bool drained(int fd)
{
	char c;

	return recv(fd, &c, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN;
}

/* One datagram of len bytes filled with seed. */
static bool recv_msg(int fd, size_t len, uint64_t seed)
{
	ssize_t n;

	if (!wait_in(fd))
		return false;
	n = recv(fd, got, sizeof(got), MSG_DONTWAIT);
	if (n != (ssize_t)len) {
		tl_log("message of %zd bytes, expected %zu", n, len);
		return false;
	}
	return tl_check_fill(got, len, seed) < 0;
}

static void send_msgs(int fd, const size_t *sizes, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++) {
		tl_fill(big, sizes[i], seed + i);
		if (send(fd, big, sizes[i], 0) != (ssize_t)sizes[i])
			tl_fail("send of %zu bytes: %m", sizes[i]);
	}
}

static void write_data(int fd, size_t len, uint64_t seed)
{
	tl_fill(big, len, seed);
	if (write(fd, big, len) != (ssize_t)len)
		tl_fail("write of %zu bytes: %m", len);
}

static bool check_data(int fd, size_t len, uint64_t seed)
{
	return read_exact(fd, got, len) && tl_check_fill(got, len, seed) < 0 && drained(fd);
}

/* ---- the child ---- */

static void __attribute__((noreturn)) child_main(int sync)
{
	struct sockaddr_un a;
	socklen_t alen;
	char buf[64];

	close(sp[0]);
	close(dg[0]);
	close(sq[0]);
	close(sq[1]);
	close(sw[0]);
	close(sw[1]);
	close(abs_sk);
	close(lsn);
	write_data(sp[1], TO_PARENT, 2);
	send_msgs(dg[1], dg_to_parent, 4, 20);
	for (int i = 0; i < 2; i++) {
		alen = path_addr(&a);
		cl[i] = socket(AF_UNIX, SOCK_STREAM, 0);
		if (cl[i] < 0 || connect(cl[i], (struct sockaddr *)&a, alen))
			tl_fail("child: connect to %s: %m", lpath);
	}
	alen = abs_addr(&a);
	abs_cl = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (abs_cl < 0 || connect(abs_cl, (struct sockaddr *)&a, alen))
		tl_fail("child: connect to @%s: %m", abs_name);
	for (int i = 1; i <= 3; i++) {
		snprintf(buf, sizeof(buf), "abs %d", i);
		if (send(abs_cl, buf, strlen(buf), 0) != (ssize_t)strlen(buf))
			tl_fail("child: send to @%s: %m", abs_name);
	}
	if (write(sync, "x", 1) != 1)
		tl_fail("child: sync: %m");
	close(sync);

	tl_wait_term();

	tl_expect(check_data(sp[1], TO_CHILD, 1), "child: stream data from the parent differs");
	for (size_t i = 0; i < 3; i++)
		tl_expect(recv_msg(dg[1], dg_to_child[i], 10 + i),
			  "child: datagram %zu from the parent differs", i);
	tl_expect(drained(dg[1]), "child: more datagrams than sent");
	tl_expect(peer_pid(sp[1]) == parent, "child: stream pair's peer pid %d, not %d",
		  peer_pid(sp[1]), parent);
	tl_expect(peer_pid(dg[1]) == parent, "child: dgram pair's peer pid %d, not %d",
		  peer_pid(dg[1]), parent);
	for (int i = 0; i < 2; i++) {
		tl_expect(peer_pid(cl[i]) == parent, "child: client %d's peer pid %d, not %d", i,
			  peer_pid(cl[i]), parent);
		snprintf(buf, sizeof(buf), "ping %d", i);
		tl_expect(write(cl[i], buf, strlen(buf)) == (ssize_t)strlen(buf),
			  "child: write to client %d: %m", i);
	}
	for (int i = 0; i < 2; i++) {
		char want[16];

		snprintf(want, sizeof(want), "pong %d", i);
		memset(buf, 0, sizeof(buf));
		tl_expect(read_exact(cl[i], buf, strlen(want)) && !strcmp(buf, want),
			  "child: client %d read '%s', not '%s'", i, buf, want);
	}
	tl_expect(send(abs_cl, "abs after", 9, 0) == 9, "child: send to @%s after: %m", abs_name);
	tl_expect(write(sp[1], "bye", 3) == 3, "child: write bye: %m");
	exit(tl_failures() ? 1 : 0);
}

/* ---- the parent ---- */

static void build(void)
{
	struct sockaddr_un a;
	socklen_t alen;
	int sync[2];
	char c;

	parent = getpid();
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) || socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sq) || socketpair(AF_UNIX, SOCK_STREAM, 0, sw))
		tl_fail("socketpair: %m");
	tl_path(lpath, sizeof(lpath), "listen.sock");
	if (strlen(lpath) >= sizeof(a.sun_path))
		tl_fail("%s: too long for a socket name", lpath);
	lsn = socket(AF_UNIX, SOCK_STREAM, 0);
	alen = path_addr(&a);
	if (lsn < 0 || bind(lsn, (struct sockaddr *)&a, alen) || listen(lsn, 5))
		tl_fail("listen on %s: %m", lpath);
	snprintf(abs_name, sizeof(abs_name), "crest-sk-unix-%d", parent);
	abs_sk = socket(AF_UNIX, SOCK_DGRAM, 0);
	alen = abs_addr(&a);
	if (abs_sk < 0 || bind(abs_sk, (struct sockaddr *)&a, alen))
		tl_fail("bind to @%s: %m", abs_name);

	if (pipe(sync))
		tl_fail("pipe: %m");
	fflush(stdout);
	child = fork();
	if (child < 0)
		tl_fail("fork: %m");
	if (child == 0) {
		close(sync[0]);
		child_main(sync[1]);
	}
	close(sync[1]);
	close(sp[1]);
	close(dg[1]);

	write_data(sp[0], TO_CHILD, 1);
	send_msgs(dg[0], dg_to_child, 3, 10);
	for (int i = 0; i < 3; i++)
		if (send(sq[0], sq_msgs[i], strlen(sq_msgs[i]), 0) != (ssize_t)strlen(sq_msgs[i]))
			tl_fail("seqpacket send: %m");
	tl_fill(big, SQ_BIG, 30);
	if (send(sq[1], big, SQ_BIG, 0) != SQ_BIG)
		tl_fail("seqpacket send: %m");
	if (fcntl(sq[1], F_SETFL, O_NONBLOCK))
		tl_fail("fcntl: %m");
	if (write(sw[0], "last words", 10) != 10 || shutdown(sw[0], SHUT_WR))
		tl_fail("shutdown pair: %m");
	if (read(sync[0], &c, 1) != 1)
		tl_fail("the child did not get ready");
	close(sync[0]);
}

static void check_names(void)
{
	struct sockaddr_un a, want;
	socklen_t alen = sizeof(a), wlen;
	struct stat st;

	wlen = path_addr(&want);
	tl_expect(!getsockname(lsn, (struct sockaddr *)&a, &alen) && alen == wlen &&
			  !memcmp(&a, &want, wlen),
		  "the listener's name is not %s", lpath);
	tl_expect(!stat(lpath, &st) && S_ISSOCK(st.st_mode), "%s is not a socket file", lpath);
	alen = sizeof(a);
	wlen = abs_addr(&want);
	tl_expect(!getsockname(abs_sk, (struct sockaddr *)&a, &alen) && alen == wlen &&
			  !memcmp(&a, &want, wlen),
		  "the abstract socket's name is not @%s", abs_name);
}

static void check_pending(void)
{
	struct sockaddr_un a, want;
	socklen_t wlen = path_addr(&want);
	char buf[64], ping[16];
	int acc[2];

	for (int i = 0; i < 2; i++) {
		socklen_t alen = sizeof(a);

		acc[i] = -1;
		if (!tl_expect(wait_in(lsn), "pending connection %d is not there", i))
			return;
		acc[i] = accept(lsn, NULL, NULL);
		if (!tl_expect(acc[i] >= 0, "accept: %m"))
			return;
		tl_expect(!getsockname(acc[i], (struct sockaddr *)&a, &alen) && alen == wlen &&
				  !memcmp(&a, &want, wlen),
			  "accepted connection %d is not named %s", i, lpath);
		tl_expect(peer_pid(acc[i]) == child, "accepted connection %d: peer pid %d, not %d",
			  i, peer_pid(acc[i]), child);
	}
	tl_expect(poll(&(struct pollfd){.fd = lsn, .events = POLLIN}, 1, 0) == 0,
		  "a third pending connection");
	for (int i = 0; i < 2; i++) {
		snprintf(ping, sizeof(ping), "ping %d", i);
		memset(buf, 0, sizeof(buf));
		tl_expect(read_exact(acc[i], buf, strlen(ping)) && !strcmp(buf, ping),
			  "connection %d read '%s', not '%s' (queue order)", i, buf, ping);
		snprintf(buf, sizeof(buf), "pong %d", i);
		tl_expect(write(acc[i], buf, strlen(buf)) == (ssize_t)strlen(buf),
			  "write pong: %m");
	}
}

static void check_parent_queues(void)
{
	char buf[64];
	ssize_t n;

	tl_expect(check_data(sp[0], TO_PARENT, 2), "stream data from the child differs");
	for (size_t i = 0; i < 4; i++)
		tl_expect(recv_msg(dg[0], dg_to_parent[i], 20 + i),
			  "datagram %zu from the child differs", i);
	tl_expect(drained(dg[0]), "more datagrams from the child than sent");
	for (int i = 0; i < 3; i++) {
		memset(buf, 0, sizeof(buf));
		n = recv(sq[1], buf, sizeof(buf), MSG_DONTWAIT);
		tl_expect(n == (ssize_t)strlen(sq_msgs[i]) && !strcmp(buf, sq_msgs[i]),
			  "seqpacket message %d: '%s' (%zd), not '%s'", i, buf, n, sq_msgs[i]);
	}
	tl_expect(drained(sq[1]), "more seqpacket messages than sent");
	tl_expect(recv_msg(sq[0], SQ_BIG, 30), "the big seqpacket message differs");
	tl_expect(fcntl(sq[1], F_GETFL) & O_NONBLOCK, "the seqpacket end lost O_NONBLOCK");
	tl_expect(!(fcntl(sp[0], F_GETFL) & O_NONBLOCK), "the stream end became O_NONBLOCK");

	memset(buf, 0, sizeof(buf));
	tl_expect(read_exact(sw[1], buf, 10) && !strcmp(buf, "last words"),
		  "the shut down pair read '%s'", buf);
	tl_expect(read(sw[1], buf, 1) == 0, "no end of file after the data of the shut down end");
	tl_expect(send(sw[0], "x", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE,
		  "the end shut down for writing can write");
	tl_expect(write(sw[1], "back", 4) == 4 && read_exact(sw[0], buf, 4) &&
			  !memcmp(buf, "back", 4),
		  "the other way of the shut down pair is broken");

	tl_expect(peer_pid(sp[0]) == parent, "stream pair: peer pid %d, not %d", peer_pid(sp[0]),
		  parent);
	tl_expect(peer_pid(sq[0]) == parent, "seqpacket pair: peer pid %d, not %d", peer_pid(sq[0]),
		  parent);

	for (int i = 1; i <= 3; i++) {
		char want[16];

		snprintf(want, sizeof(want), "abs %d", i);
		memset(buf, 0, sizeof(buf));
		n = recv(abs_sk, buf, sizeof(buf), MSG_DONTWAIT);
		tl_expect(n == (ssize_t)strlen(want) && !strcmp(buf, want),
			  "abstract socket message %d: '%s', not '%s'", i, buf, want);
	}
}

int main(void)
{
	char buf[64];
	int status;

	tl_init();
	build();
	tl_ready();
	tl_wait_term();

	check_names();
	check_parent_queues();
	kill(child, SIGTERM);
	check_pending();
	if (waitpid(child, &status, 0) != child)
		tl_fail("waitpid: %m");
	tl_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child failed (status %#x)",
		  status);
	memset(buf, 0, sizeof(buf));
	tl_expect(read_exact(sp[0], buf, 3) && !strcmp(buf, "bye"), "no bye from the child");
	memset(buf, 0, sizeof(buf));
	tl_expect(wait_in(abs_sk) && recv(abs_sk, buf, sizeof(buf), 0) == 9 &&
			  !strcmp(buf, "abs after"),
		  "the abstract socket got '%s' after the restore", buf);
	unlink(lpath);
	tl_done();
}
