// SPDX-License-Identifier: MIT
/*
 * A TCP listener that does not accept until told to, so that connections the kernel completed
 * wait in its accept queue.  Run by test/live/tcp.sh in one of two roles:
 *
 *   tcp_listen server ADDR PORT BACKLOG
 *       listens with that backlog and says ready; on SIGUSR1 starts serving: accepts, reads a
 *       line "ping X", answers "pong X" and closes, logging "# served X from PEER" each time.
 *       The verdict checks that the listener still listens on its address, that SO_ACCEPTCONN
 *       and the fd flags are as they were, and that every connection it took was served.
 *   tcp_listen ping ADDR PORT
 *       connects, logs "# connected from LOCAL", sends "ping <pid>" and says ready; then waits
 *       for "pong <pid>": PASS when it comes (and exits), FAIL on EOF, an error, another
 *       answer, or SIGTERM before any answer.
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

#define IO_MS 5000

static volatile sig_atomic_t want_serve;

static void on_usr1(int sig)
{
	want_serve = 1;
}

static const char *addr_str(const struct sockaddr_storage *ss, char *buf, size_t size)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	if (ss->ss_family == AF_INET) {
		inet_ntop(AF_INET, &((struct sockaddr_in *)ss)->sin_addr, ip, sizeof(ip));
		port = ntohs(((struct sockaddr_in *)ss)->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ss)->sin6_addr, ip, sizeof(ip));
		port = ntohs(((struct sockaddr_in6 *)ss)->sin6_port);
	}
	snprintf(buf, size, "%s:%d", ip, port);
	return buf;
}

static socklen_t parse_addr(const char *s, int port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(s, ':')) {
		struct sockaddr_in6 *a = (void *)ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		if (inet_pton(AF_INET6, s, &a->sin6_addr) != 1)
			tl_fail("bad address %s", s);
		return sizeof(*a);
	}
	struct sockaddr_in *a = (void *)ss;

	a->sin_family = AF_INET;
	a->sin_port = htons(port);
	if (inet_pton(AF_INET, s, &a->sin_addr) != 1)
		tl_fail("bad address %s", s);
	return sizeof(*a);
}

/* Read one line (without the newline) within IO_MS; false on EOF, error or timeout. */
static bool read_line(int fd, char *buf, size_t size, const char **why)
{
	size_t len = 0;
	uint64_t end = tl_now_ns() + IO_MS * TL_NSEC_PER_MSEC;
	struct pollfd p = {.fd = fd, .events = POLLIN};
	ssize_t n;

	while (len + 1 < size) {
		if (tl_now_ns() >= end) {
			*why = "timed out";
			return false;
		}
		if (poll(&p, 1, 10) <= 0)
			continue;
		n = read(fd, buf + len, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			*why = n ? strerror(errno) : "EOF";
			return false;
		}
		if (buf[len] == '\n') {
			buf[len] = '\0';
			return true;
		}
		len++;
	}
	*why = "line too long";
	return false;
}

static void server(int argc, char **argv)
{
	struct sockaddr_storage ss, now, peer;
	socklen_t len, nlen, plen;
	int lfd, one = 1, backlog, served = 0, fdflags, flflags, acc = 0;
	char a[128], line[128], reply[160];
	const char *why;

	if (argc != 5)
		tl_fail("usage: tcp_listen server ADDR PORT BACKLOG");
	backlog = atoi(argv[4]);
	len = parse_addr(argv[2], atoi(argv[3]), &ss);
	lfd = socket(ss.ss_family, SOCK_STREAM, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(lfd, (void *)&ss, len) || listen(lfd, backlog))
		tl_fail("listen on %s port %s: %m", argv[2], argv[3]);
	len = sizeof(ss);
	getsockname(lfd, (void *)&ss, &len);
	fdflags = fcntl(lfd, F_GETFD);
	flflags = fcntl(lfd, F_GETFL);
	tl_log("listening on %s, backlog %d", addr_str(&ss, a, sizeof(a)), backlog);
	tl_ready();
	while (!tl_term) {
		struct pollfd p = {.fd = lfd, .events = POLLIN};
		int fd;

		if (!want_serve) {
			usleep(20000);
			continue;
		}
		if (poll(&p, 1, 100) <= 0)
			continue;
		plen = sizeof(peer);
		fd = accept(lfd, (void *)&peer, &plen);
		if (fd < 0) {
			tl_expect(errno == EINTR || errno == EAGAIN, "accept: %m");
			continue;
		}
		served++;
		if (!tl_expect(read_line(fd, line, sizeof(line), &why),
			       "connection %d from %s: no request: %s", served,
			       addr_str(&peer, a, sizeof(a)), why)) {
			close(fd);
			continue;
		}
		if (!tl_expect(!strncmp(line, "ping ", 5), "connection from %s sent '%s'",
			       addr_str(&peer, a, sizeof(a)), line)) {
			close(fd);
			continue;
		}
		snprintf(reply, sizeof(reply), "pong %s\n", line + 5);
		tl_expect(write(fd, reply, strlen(reply)) == (ssize_t)strlen(reply),
			  "reply to %s: %m", addr_str(&peer, a, sizeof(a)));
		tl_log("served %s from %s", line + 5, addr_str(&peer, a, sizeof(a)));
		close(fd);
	}
	tl_log("served %d connections", served);
	nlen = sizeof(now);
	if (tl_expect(!getsockname(lfd, (void *)&now, &nlen), "getsockname: %m"))
		tl_expect(nlen == len && !memcmp(&now, &ss, len), "the listener is now on %s",
			  addr_str(&now, a, sizeof(a)));
	len = sizeof(acc);
	tl_expect(!getsockopt(lfd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) && acc,
		  "the listener does not listen any more");
	tl_expect(fcntl(lfd, F_GETFD) == fdflags, "F_GETFD %#x, was %#x", fcntl(lfd, F_GETFD),
		  fdflags);
	tl_expect(fcntl(lfd, F_GETFL) == flflags, "F_GETFL %#o, was %#o", fcntl(lfd, F_GETFL),
		  flflags);
	tl_done();
}

static void ping(int argc, char **argv)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char a[128], msg[64], want[64], line[128];
	const char *why;
	int fd;

	if (argc != 4)
		tl_fail("usage: tcp_listen ping ADDR PORT");
	len = parse_addr(argv[2], atoi(argv[3]), &ss);
	fd = socket(ss.ss_family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (void *)&ss, len))
		tl_fail("connect to %s port %s: %m", argv[2], argv[3]);
	len = sizeof(ss);
	getsockname(fd, (void *)&ss, &len);
	tl_log("connected from %s", addr_str(&ss, a, sizeof(a)));
	snprintf(msg, sizeof(msg), "ping %d\n", (int)getpid());
	snprintf(want, sizeof(want), "pong %d", (int)getpid());
	if (write(fd, msg, strlen(msg)) != (ssize_t)strlen(msg))
		tl_fail("send: %m");
	tl_ready();
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};

		if (tl_term)
			tl_fail("no answer");
		if (poll(&p, 1, 50) <= 0)
			continue;
		if (!read_line(fd, line, sizeof(line), &why))
			tl_fail("no answer: %s", why);
		tl_log("answer: %s", line);
		if (strcmp(line, want))
			tl_fail("answer '%s', not '%s'", line, want);
		tl_pass();
	}
}

int main(int argc, char **argv)
{
	struct sigaction sa = {.sa_handler = on_usr1};

	tl_init();
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	if (argc >= 2 && !strcmp(argv[1], "server"))
		server(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "ping"))
		ping(argc, argv);
	tl_fail("usage: tcp_listen server|ping ...");
}
