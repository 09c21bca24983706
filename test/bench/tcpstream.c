// SPDX-License-Identifier: MIT
/*
 * The plain TCP stream the page server is measured against (what nc or socat of the same
 * bytes would do, without depending on either): the sender reads a file and sends it, 1 MiB
 * per send(); the receiver writes what arrives into a file, 1 MiB per write() and no fsync,
 * then answers one byte, which the sender waits for, as crest waits for the page server to
 * confirm a round.  The sender prints "BYTES SECONDS", from connect() to that byte.
 *
 * Usage: tcpstream recv PORT FILE      (serves one sender, then exits)
 *        tcpstream send HOST PORT FILE
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (1UL << 20)

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n <= 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

static int do_recv(int port, const char *path)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	int one = 1, lfd, fd, out;
	char *buf = malloc(CHUNK);
	ssize_t n;

	lfd = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (!buf || lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 1)) {
		perror("tcpstream recv: listen");
		return 1;
	}
	/* listening: the caller may start the sender */
	printf("listening\n");
	fflush(stdout);
	fd = accept(lfd, NULL, NULL);
	out = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || out < 0) {
		perror("tcpstream recv");
		return 1;
	}
	while ((n = read(fd, buf, CHUNK)) > 0)
		if (write_all(out, buf, n)) {
			perror("tcpstream recv: write");
			return 1;
		}
	if (n < 0 || close(out) || write(fd, "k", 1) != 1) {
		perror("tcpstream recv");
		return 1;
	}
	close(fd);
	return 0;
}

static int do_send(const char *host, const char *port, const char *path)
{
	struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai;
	char *buf = malloc(CHUNK), ack;
	int in = open(path, O_RDONLY), fd, one = 1;
	unsigned long long total = 0;
	double t0;
	ssize_t n;

	if (!buf || in < 0 || getaddrinfo(host, port, &hints, &ai)) {
		perror("tcpstream send");
		return 1;
	}
	fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	t0 = now();
	if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen)) {
		perror("tcpstream send: connect");
		return 1;
	}
	while ((n = read(in, buf, CHUNK)) > 0) {
		for (ssize_t done = 0; done < n;) {
			ssize_t m = send(fd, buf + done, n - done, MSG_NOSIGNAL);

			if (m <= 0) {
				perror("tcpstream send");
				return 1;
			}
			done += m;
		}
		total += n;
	}
	if (n < 0 || shutdown(fd, SHUT_WR) || read(fd, &ack, 1) != 1) {
		perror("tcpstream send");
		return 1;
	}
	printf("%llu %.6f\n", total, now() - t0);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "recv"))
		return do_recv(atoi(argv[2]), argv[3]);
	if (argc == 5 && !strcmp(argv[1], "send"))
		return do_send(argv[2], argv[3], argv[4]);
	fprintf(stderr, "usage: tcpstream recv PORT FILE | tcpstream send HOST PORT FILE\n");
	return 2;
}
