// SPDX-License-Identifier: MIT
/*
 * A TCP echo server for the network namespace tests, and its client.
 *
 *   netns_echo             the server (the dumped program): listens on port 9100 of every
 *                          address of its namespace and echoes one client's bytes.  At
 *                          SIGTERM it must have served exactly one connection (the client
 *                          never had to reconnect) without an error; the client closing it
 *                          (EOF) is its normal end, a reset is not.
 *   netns_echo client IP   the client (never dumped): sends an 8-byte counter every
 *                          millisecond and checks that each echo is the next number.  At
 *                          SIGTERM: PASS when no byte was lost, duplicated or reordered and
 *                          the connection never failed; it reports the longest gap between
 *                          two echoes ("# maxgap_ms N").
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

#define PORT 9100

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ull + ts.tv_nsec / 1000000;
}

static int server(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(PORT)};
	int one = 1, lsk, csk = -1, accepted = 0;
	uint64_t echoed = 0;
	char buf[4096];

	lsk = socket(AF_INET, SOCK_STREAM, 0);
	if (lsk < 0 || setsockopt(lsk, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(lsk, (struct sockaddr *)&sin, sizeof(sin)) || listen(lsk, 4))
		tl_fail("listen: %m");
	tl_ready();
	while (!tl_term) {
		struct pollfd p[2] = {{.fd = lsk, .events = POLLIN}, {.fd = csk, .events = POLLIN}};

		if (poll(p, 2, 100) < 0) {
			if (errno == EINTR)
				continue;
			tl_fail("poll: %m");
		}
		if (p[0].revents & POLLIN) {
			int fd = accept(lsk, NULL, NULL);

			if (fd >= 0) {
				accepted++;
				if (csk >= 0)
					close(csk);
				csk = fd;
			}
		}
		if (csk >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
			ssize_t n = read(csk, buf, sizeof(buf));

			if (n <= 0) {
				tl_expect(n == 0, "client connection failed: %s", strerror(errno));
				close(csk);
				csk = -1;
				continue;
			}
			for (ssize_t off = 0; off < n;) {
				ssize_t w = write(csk, buf + off, n - off);

				if (w <= 0)
					tl_fail("echo: %m");
				off += w;
			}
			echoed += n;
		}
	}
	tl_expect(accepted == 1, "%d connections accepted, expected exactly 1", accepted);
	tl_expect(echoed >= 800, "only %llu bytes echoed", (unsigned long long)echoed);
	tl_done();
}

static int client(const char *ip)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(PORT)};
	uint64_t sent = 0, expect = 0, last, maxgap = 0, next_send;
	unsigned char in[8];
	size_t have = 0;
	int sk;

	if (inet_pton(AF_INET, ip, &sin.sin_addr) != 1)
		tl_fail("bad address %s", ip);
	sk = socket(AF_INET, SOCK_STREAM, 0);
	if (sk < 0 || connect(sk, (struct sockaddr *)&sin, sizeof(sin)))
		tl_fail("connect %s: %m", ip);
	tl_ready();
	last = next_send = now_ms();
	while (!tl_term) {
		struct pollfd p = {.fd = sk, .events = POLLIN};
		uint64_t now = now_ms();

		if (now >= next_send && sent - expect < 1000) {
			if (write(sk, &sent, sizeof(sent)) != sizeof(sent))
				tl_fail("send %llu: %m", (unsigned long long)sent);
			sent++;
			next_send = now + 1;
		}
		if (poll(&p, 1, 1) < 0) {
			if (errno == EINTR)
				continue;
			tl_fail("poll: %m");
		}
		if (!(p.revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		ssize_t n = read(sk, in + have, sizeof(in) - have);

		if (n <= 0)
			tl_fail("connection failed: %s",
				n ? strerror(errno) : "EOF from the server");
		have += n;
		if (have < sizeof(in))
			continue;
		have = 0;
		uint64_t got;

		memcpy(&got, in, sizeof(got));
		if (got != expect)
			tl_fail("echo %llu where %llu was due", (unsigned long long)got,
				(unsigned long long)expect);
		expect++;
		now = now_ms();
		if (now - last > maxgap)
			maxgap = now - last;
		last = now;
	}
	/* an orderly end: unread echoes at close() would make it a reset for the server */
	shutdown(sk, SHUT_WR);
	for (int i = 0; i < 200; i++) {
		struct pollfd p = {.fd = sk, .events = POLLIN};
		char drain[4096];

		if (poll(&p, 1, 10) == 1 && read(sk, drain, sizeof(drain)) <= 0)
			break;
	}
	tl_log("maxgap_ms %llu", (unsigned long long)maxgap);
	tl_log("echoes %llu", (unsigned long long)expect);
	tl_expect(expect >= 100, "only %llu echoes", (unsigned long long)expect);
	tl_done();
}

int main(int argc, char **argv)
{
	tl_init();
	if (argc == 3 && !strcmp(argv[1], "client"))
		return client(argv[2]);
	return server();
}
