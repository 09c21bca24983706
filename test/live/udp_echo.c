// SPDX-License-Identifier: MIT
/*
 * A UDP echo server of six sockets, run by test/live/tcp.sh:
 *
 *   udp_echo server SELF SELF6 PEER PEER6 PEER_PORT PORT
 *       a: bound to 0.0.0.0:PORT, answers anyone with "echo-a <request>";
 *       b: bound to SELF:PORT+1 and connected to PEER:PEER_PORT, answers its peer with
 *          "echo-b <request>" (the kernel gives it nothing from anybody else);
 *       c1, c2: SO_REUSEPORT, both bound to 0.0.0.0:PORT+2, answer "echo-c1 ..." and
 *          "echo-c2 ..." (the kernel picks one by the sender's address);
 *       d: AF_INET6, bound to [SELF6]:PORT+3, answers "echo-d ...";
 *       e: AF_INET6, bound to [SELF6]:PORT+4 and connected to [PEER6]:PEER_PORT, answers
 *          "echo-e ...".
 *       Says ready once all are set up; the verdict checks that each still has its address,
 *       b and e their peers, c1 and c2 SO_REUSEPORT, d and e IPV6_V6ONLY as it was, and the
 *       fd flags as they were.
 *   udp_echo ask SRC_PORT ADDR PORT MESSAGE
 *       sends MESSAGE from SRC_PORT (0: any; from an AF_INET6 socket when ADDR has a colon)
 *       and prints the answer; up to 3 tries, 1 s each.  Exits 0 with an answer, 1 without.
 *       Not a test program of its own: no testlib.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testlib.h"

enum { A, B, C1, C2, D, E, NR };
static const char *const names[NR] = {"a", "b", "c1", "c2", "d", "e"};

struct sk {
	int fd;
	struct sockaddr_storage self, peer;
	socklen_t self_len, peer_len;
	int fdflags, flflags, v6only;
	unsigned long answered;
};

static struct sk sks[NR];

static socklen_t addr(const char *ip, int port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *a = (void *)ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		if (inet_pton(AF_INET6, ip, &a->sin6_addr) == 1)
			return sizeof(*a);
	} else {
		struct sockaddr_in *a = (void *)ss;

		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		if (inet_pton(AF_INET, ip, &a->sin_addr) == 1)
			return sizeof(*a);
	}
	fprintf(stderr, "bad address %s\n", ip);
	exit(2);
}

static const char *str(const struct sockaddr_storage *ss, char *buf, size_t size)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)ss;

		inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
		snprintf(buf, size, "[%s]:%d", ip, ntohs(a->sin6_port));
	} else {
		const struct sockaddr_in *a = (const void *)ss;

		inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
		snprintf(buf, size, "%s:%d", ip, ntohs(a->sin_port));
	}
	return buf;
}

static int get_int(int fd, int level, int opt)
{
	socklen_t len = sizeof(int);
	int v = -1;

	if (getsockopt(fd, level, opt, &v, &len))
		return -errno;
	return v;
}

/* Socket i bound to SELF:PORT, connected to PEER:PEER_PORT when peer is not NULL. */
static void open_sk(int i, const char *self, int port, const char *peer, int peer_port, bool reuse)
{
	struct sockaddr_storage ss;
	socklen_t len = addr(self, port, &ss);
	struct sk *s = &sks[i];
	int one = 1;

	s->fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	if (s->fd < 0)
		tl_fail("socket: %m");
	if (reuse && setsockopt(s->fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)))
		tl_fail("SO_REUSEPORT: %m");
	if (bind(s->fd, (void *)&ss, len))
		tl_fail("%s: bind: %m", names[i]);
	if (peer) {
		len = addr(peer, peer_port, &ss);
		if (connect(s->fd, (void *)&ss, len))
			tl_fail("%s: connect: %m", names[i]);
		s->peer_len = sizeof(s->peer);
		getpeername(s->fd, (void *)&s->peer, &s->peer_len);
	}
	s->self_len = sizeof(s->self);
	getsockname(s->fd, (void *)&s->self, &s->self_len);
	s->fdflags = fcntl(s->fd, F_GETFD);
	s->flflags = fcntl(s->fd, F_GETFL);
	if (s->self.ss_family == AF_INET6)
		s->v6only = get_int(s->fd, IPPROTO_IPV6, IPV6_V6ONLY);
}

static void answer(int i)
{
	struct sk *s = &sks[i];
	char buf[512], out[600], a[80];
	struct sockaddr_storage from;
	socklen_t len;
	ssize_t n;
	int m;

	for (;;) {
		len = sizeof(from);
		n = recvfrom(s->fd, buf, sizeof(buf) - 1, 0, (void *)&from, &len);
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				tl_expect(false, "%s: recvfrom: %m", names[i]);
			return;
		}
		buf[n] = '\0';
		m = snprintf(out, sizeof(out), "echo-%s %s", names[i], buf);
		if (s->peer_len)
			n = send(s->fd, out, m, 0);
		else
			n = sendto(s->fd, out, m, 0, (void *)&from, len);
		if (!tl_expect(n == m, "%s: answer to %s: %m", names[i], str(&from, a, sizeof(a))))
			continue;
		s->answered++;
	}
}

static void check(int i)
{
	struct sk *s = &sks[i];
	struct sockaddr_storage now;
	socklen_t len = sizeof(now);
	char x[80], y[80];
	int v;

	tl_log("%s answered %lu", names[i], s->answered);
	if (tl_expect(!getsockname(s->fd, (void *)&now, &len), "%s: getsockname: %m", names[i]))
		tl_expect(len == s->self_len && !memcmp(&now, &s->self, len),
			  "%s: bound to %s, was %s", names[i], str(&now, x, sizeof(x)),
			  str(&s->self, y, sizeof(y)));
	len = sizeof(now);
	if (s->peer_len) {
		if (tl_expect(!getpeername(s->fd, (void *)&now, &len), "%s: getpeername: %m",
			      names[i]))
			tl_expect(len == s->peer_len && !memcmp(&now, &s->peer, len),
				  "%s: connected to %s, was %s", names[i], str(&now, x, sizeof(x)),
				  str(&s->peer, y, sizeof(y)));
	} else {
		tl_expect(getpeername(s->fd, (void *)&now, &len) && errno == ENOTCONN,
			  "%s: connected now", names[i]);
	}
	v = get_int(s->fd, SOL_SOCKET, SO_REUSEPORT);
	tl_expect(v == (i == C1 || i == C2), "%s: SO_REUSEPORT is %d", names[i], v);
	if (s->self.ss_family == AF_INET6) {
		v = get_int(s->fd, IPPROTO_IPV6, IPV6_V6ONLY);
		tl_expect(v == s->v6only, "%s: IPV6_V6ONLY is %d, was %d", names[i], v, s->v6only);
	}
	tl_expect(fcntl(s->fd, F_GETFD) == s->fdflags, "%s: F_GETFD %#x, was %#x", names[i],
		  fcntl(s->fd, F_GETFD), s->fdflags);
	tl_expect(fcntl(s->fd, F_GETFL) == s->flflags, "%s: F_GETFL %#o, was %#o", names[i],
		  fcntl(s->fd, F_GETFL), s->flflags);
}

static void server(int argc, char **argv)
{
	struct pollfd p[NR];
	char x[80], y[80];
	int port, peer_port;

	if (argc != 8)
		tl_fail("usage: udp_echo server SELF SELF6 PEER PEER6 PEER_PORT PORT");
	peer_port = atoi(argv[6]);
	port = atoi(argv[7]);
	open_sk(A, "0.0.0.0", port, NULL, 0, false);
	open_sk(B, argv[2], port + 1, argv[4], peer_port, false);
	open_sk(C1, "0.0.0.0", port + 2, NULL, 0, true);
	open_sk(C2, "0.0.0.0", port + 2, NULL, 0, true);
	open_sk(D, argv[3], port + 3, NULL, 0, false);
	open_sk(E, argv[3], port + 4, argv[5], peer_port, false);
	for (int i = 0; i < NR; i++)
		tl_log("%s: %s%s%s", names[i], str(&sks[i].self, x, sizeof(x)),
		       sks[i].peer_len ? " -> " : "",
		       sks[i].peer_len ? str(&sks[i].peer, y, sizeof(y)) : "");
	tl_ready();
	while (!tl_term) {
		for (int i = 0; i < NR; i++)
			p[i] = (struct pollfd){.fd = sks[i].fd, .events = POLLIN};
		if (poll(p, NR, 100) <= 0)
			continue;
		for (int i = 0; i < NR; i++)
			if (p[i].revents)
				answer(i);
	}
	for (int i = 0; i < NR; i++)
		check(i);
	tl_done();
}

static int ask(int argc, char **argv)
{
	struct sockaddr_storage self, to;
	socklen_t self_len, to_len;
	char buf[600];
	int fd, one = 1;
	ssize_t n;

	if (argc != 6) {
		fprintf(stderr, "usage: udp_echo ask SRC_PORT ADDR PORT MESSAGE\n");
		return 2;
	}
	to_len = addr(argv[3], atoi(argv[4]), &to);
	self_len = addr(to.ss_family == AF_INET6 ? "::" : "0.0.0.0", atoi(argv[2]), &self);
	fd = socket(to.ss_family, SOCK_DGRAM, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, (void *)&self, self_len) || connect(fd, (void *)&to, to_len)) {
		perror("udp_echo ask");
		return 1;
	}
	for (int t = 0; t < 3; t++) {
		struct pollfd p = {.fd = fd, .events = POLLIN};

		if (send(fd, argv[5], strlen(argv[5]), 0) < 0) {
			perror("udp_echo ask: send");
			usleep(100000);
			continue;
		}
		if (poll(&p, 1, 1000) <= 0)
			continue;
		n = recv(fd, buf, sizeof(buf) - 1, 0);
		if (n < 0) {
			perror("udp_echo ask: recv");
			usleep(100000);
			continue;
		}
		buf[n] = '\0';
		printf("%s\n", buf);
		return 0;
	}
	fprintf(stderr, "udp_echo ask: no answer from %s port %s\n", argv[3], argv[4]);
	return 1;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "ask"))
		return ask(argc, argv);
	tl_init();
	if (argc >= 2 && !strcmp(argv[1], "server"))
		server(argc, argv);
	tl_fail("usage: udp_echo server|ask ...");
}
