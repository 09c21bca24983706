// SPDX-License-Identifier: MIT
/*
 * TCP connections carrying a numbered stream both ways: each side sends 8-byte counters
 * (0, 1, 2, ...; about 4000 a second) and checks that what it receives is exactly the next
 * number: nothing lost, doubled or out of order, no EOF, no error.  Run by test/live/tcp.sh
 * in one of three roles:
 *
 *   tcp_stream server ADDR PORT NCONN [OPTIONS]
 *       listens on ADDR:PORT (an IPv6 ADDR listens dual-stack), accepts NCONN connections,
 *       says ready, streams on each, and keeps its listener open.
 *   tcp_stream client PORT ADDR... [OPTIONS]
 *       one connection to each ADDR:PORT (an ADDR with a colon, ::ffff:a.b.c.d included, is
 *       connected from an AF_INET6 socket).  It is not dumped: it is the peer outside the
 *       dumped tree.
 *   tcp_stream pair PORT
 *       both ends in one tree: the parent listens on 127.0.0.1:PORT, its child connects; the
 *       child exits with its own verdict, folded into the parent's.
 *
 * Options: burst: SIGUSR1 queues 4 MiB more of the stream at once (send buffer forced to
 * 16 MiB), then logs "# burst queued: ..." with how much is queued and how much of it is sent
 * but unacknowledged; rcvbuf=BYTES: SO_RCVBUFFORCE before connecting (or listening);
 * mem=MB: also hold MB MiB of pseudo-random memory, checked at the end (for the benchmark).
 * Without burst, SIGUSR1 pauses (no reading, no sending: "# paused") and SIGHUP resumes.
 *
 * Every role: SIGUSR2 prints "# report rx=N tx=N gap_ms=G maxgap_ms=M" (messages received and
 * sent over all connections; the longest wait between two reads that brought data since the
 * last report, and since the start, pauses left out).  SIGTERM ends the stream: each side
 * sends an end mark after its last counter and waits (up to 5 s) for the peer's, so that
 * every number either side sent is checked to have arrived; then the verdict, which also
 * checks that each socket's addresses, options (TCP_NODELAY, SO_KEEPALIVE and TCP_KEEPIDLE,
 * the buffer sizes that were set, IPV6_V6ONLY) and fd flags are what they were.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testlib.h"

#define MAX_CONNS 8
#define PER_TICK 4 /* counters per millisecond tick and connection */
#define TICK_NS TL_NSEC_PER_MSEC
#define OUT_WORDS 8192 /* 64 KiB out buffer per connection */
#define END_MARK UINT64_MAX
#define BURST_BYTES (4u << 20)
#define SNDBUF_FORCE (16 << 20)
#define END_WAIT_NS (5 * TL_NSEC_PER_SEC)
#define MIN_RX 100
#define MEM_SEED 0x7c9e57ea11ull

struct conn {
	int fd;
	char name[96];
	uint64_t tx, rx;	     /* next counter to send, to receive */
	uint64_t out[OUT_WORDS + 1]; /* one spare word for the end mark */
	size_t out_len, out_off;     /* bytes */
	unsigned char part[8];
	size_t part_len;
	uint64_t due;	/* counters owed by the rate */
	uint64_t burst; /* bytes of burst still to queue */
	uint64_t last_rx_ns;
	bool peer_end, sent_end, dead, failed;
	struct sockaddr_storage self, peer;
	socklen_t self_len, peer_len;
	int fdflags, flflags;
	int opts[8]; /* the values of sock_opts[], as set up */
};

/* Options each connection sets up and must find again; buffer sizes only where set. */
static const struct {
	int level, opt;
	const char *name;
} sock_opts[] = {
	{IPPROTO_TCP, TCP_NODELAY, "TCP_NODELAY"},   {SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE"},
	{IPPROTO_TCP, TCP_KEEPIDLE, "TCP_KEEPIDLE"}, {IPPROTO_TCP, TCP_KEEPINTVL, "TCP_KEEPINTVL"},
	{SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF"},	     {SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF"},
	{IPPROTO_IPV6, IPV6_V6ONLY, "IPV6_V6ONLY"},
};
#define NR_OPTS (sizeof(sock_opts) / sizeof(sock_opts[0]))
#define OPT_SNDBUF 4
#define OPT_RCVBUF 5
#define OPT_V6ONLY 6

static struct conn conns[MAX_CONNS];
static int nconns;
static int lfd = -1, lsn_v6only = -1;
static struct sockaddr_storage lsn_addr;
static socklen_t lsn_len;
static const char *who = ""; /* "child: " in the pair's child */
static bool paused, burst_mode, burst_logged = true;
static int rcvbuf_force;
static uint64_t gap_ns, maxgap_ns;
static char *mem;
static size_t mem_len;

static volatile sig_atomic_t want_report, want_pause, want_resume, want_burst;

static void on_usr2(int sig)
{
	want_report = 1;
}

static void on_usr1(int sig)
{
	want_pause = 1;
	want_burst = 1;
}

static void on_hup(int sig)
{
	want_resume = 1;
}

static void catch (int sig, void (*fn)(int))
{
	struct sigaction sa = {.sa_handler = fn};

	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, NULL))
		tl_fail("sigaction(%d): %m", sig);
}

static const char *addr_str(const struct sockaddr_storage *ss, char *buf, size_t size)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)ss;

		inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
		snprintf(buf, size, "%s:%d", ip, ntohs(a->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)ss;

		inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
		snprintf(buf, size, "[%s]:%d", ip, ntohs(a->sin6_port));
	} else {
		snprintf(buf, size, "family %d", ss->ss_family);
	}
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
			tl_fail("bad IPv6 address %s", s);
		return sizeof(*a);
	} else {
		struct sockaddr_in *a = (void *)ss;

		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		if (inet_pton(AF_INET, s, &a->sin_addr) != 1)
			tl_fail("bad IPv4 address %s", s);
		return sizeof(*a);
	}
}

static void set_int(int fd, int level, int opt, int val, const char *what)
{
	if (setsockopt(fd, level, opt, &val, sizeof(val)))
		tl_fail("setsockopt(%s): %m", what);
}

static int get_opt(int fd, unsigned int i)
{
	socklen_t len = sizeof(int);
	int v = -1;

	if (getsockopt(fd, sock_opts[i].level, sock_opts[i].opt, &v, &len))
		return -errno;
	return v;
}

/*
 * A connected socket becomes a stream: non-blocking, no Nagle, keepalive probes after 10
 * minutes, every 30 s; its addresses and options recorded.
 */
static void add_conn(int fd)
{
	struct conn *c = &conns[nconns++];
	char a[128], b[128];

	memset(c, 0, sizeof(*c));
	c->fd = fd;
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK))
		tl_fail("O_NONBLOCK: %m");
	set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
	set_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE");
	set_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, 600, "TCP_KEEPIDLE");
	set_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, 30, "TCP_KEEPINTVL");
	if (burst_mode)
		set_int(fd, SOL_SOCKET, SO_SNDBUFFORCE, SNDBUF_FORCE, "SO_SNDBUFFORCE");
	for (unsigned int i = 0; i < NR_OPTS; i++)
		c->opts[i] = get_opt(fd, i);
	c->self_len = sizeof(c->self);
	c->peer_len = sizeof(c->peer);
	if (getsockname(fd, (void *)&c->self, &c->self_len) ||
	    getpeername(fd, (void *)&c->peer, &c->peer_len))
		tl_fail("getsockname/getpeername: %m");
	c->fdflags = fcntl(fd, F_GETFD);
	c->flflags = fcntl(fd, F_GETFL);
	snprintf(c->name, sizeof(c->name), "%sconn %d (%s -> %s)", who, nconns - 1,
		 addr_str(&c->self, a, sizeof(a)), addr_str(&c->peer, b, sizeof(b)));
	tl_log("%s", c->name);
}

static void conn_fail(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void conn_fail(struct conn *c, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!c->failed)
		tl_expect(false, "%s: %s", c->name, msg);
	c->failed = true;
	c->dead = true;
}

static void do_read(struct conn *c, uint64_t now)
{
	static unsigned char buf[65536];
	size_t got = 0, i;
	ssize_t n;
	uint64_t w;

	for (;;) {
		n = read(c->fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0) {
			conn_fail(c, "read after %llu messages: %m", (unsigned long long)c->rx);
			return;
		}
		if (!n) {
			conn_fail(c, "EOF after %llu messages, without the end mark",
				  (unsigned long long)c->rx);
			return;
		}
		for (i = 0; i < (size_t)n && !c->peer_end; i++) {
			c->part[c->part_len++] = buf[i];
			if (c->part_len < 8)
				continue;
			c->part_len = 0;
			memcpy(&w, c->part, 8);
			got++;
			if (w == END_MARK) {
				c->peer_end = true;
			} else if (w != c->rx) {
				conn_fail(c, "received %llu where %llu was next",
					  (unsigned long long)w, (unsigned long long)c->rx);
				return;
			} else {
				c->rx++;
			}
		}
		if (c->peer_end)
			break;
	}
	if (!got)
		return;
	if (c->last_rx_ns) {
		uint64_t g = now - c->last_rx_ns;

		if (g > gap_ns)
			gap_ns = g;
		if (g > maxgap_ns)
			maxgap_ns = g;
	}
	c->last_rx_ns = now;
}

/* Refill an empty out buffer with the counters the rate (and a burst) owe. */
static void refill(struct conn *c)
{
	size_t words = c->due + c->burst / 8;

	if (c->out_off < c->out_len || c->sent_end)
		return;
	if (words > OUT_WORDS)
		words = OUT_WORDS;
	for (size_t i = 0; i < words; i++)
		c->out[i] = c->tx++;
	c->out_len = words * 8;
	c->out_off = 0;
	if (words > c->due) {
		c->burst -= (words - c->due) * 8;
		c->due = 0;
	} else {
		c->due -= words;
	}
}

static void do_write(struct conn *c)
{
	ssize_t n;

	while (c->out_off < c->out_len) {
		n = send(c->fd, (char *)c->out + c->out_off, c->out_len - c->out_off,
			 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0) {
			conn_fail(c, "send after %llu messages: %m", (unsigned long long)c->tx);
			return;
		}
		c->out_off += n;
	}
}

static void log_burst(void)
{
	int outq = -1, notsent = -1;

	for (int i = 0; i < nconns; i++) {
		struct conn *c = &conns[i];

		if (c->burst || c->out_off < c->out_len)
			return;
	}
	for (int i = 0; i < nconns; i++) {
		struct conn *c = &conns[i];

		ioctl(c->fd, SIOCOUTQ, &outq);
		ioctl(c->fd, SIOCOUTQNSD, &notsent);
		tl_log("burst queued: conn %d tx=%llu outq=%d notsent=%d unacked=%d", i,
		       (unsigned long long)c->tx, outq, notsent, outq - notsent);
	}
	burst_logged = true;
}

static void report(void)
{
	uint64_t rx = 0, tx = 0;

	for (int i = 0; i < nconns; i++) {
		rx += conns[i].rx;
		tx += conns[i].tx - (conns[i].out_len - conns[i].out_off) / 8;
	}
	tl_log("report rx=%llu tx=%llu gap_ms=%.1f maxgap_ms=%.1f", (unsigned long long)rx,
	       (unsigned long long)tx, gap_ns / 1e6, maxgap_ns / 1e6);
	gap_ns = 0;
}

/*
 * The stream until SIGTERM (ending = false), or until the end marks are exchanged (ending =
 * true: our end mark queued, wait for the peers' until the deadline).  parent: in the pair's
 * child, leave when it changes (the parent is gone).
 */
static void run(bool ending, uint64_t deadline, pid_t parent)
{
	struct pollfd pfd[MAX_CONNS];
	uint64_t next_tick = tl_now_ns() + TICK_NS, last_ppid_check = 0;

	for (;;) {
		uint64_t now = tl_now_ns();
		bool open = false;
		int n = 0;

		if (!ending && tl_term)
			return;
		if (want_report) {
			want_report = 0;
			report();
		}
		if (want_pause && !burst_mode) {
			want_pause = 0;
			if (!paused)
				tl_log("paused");
			paused = true;
		}
		if (want_resume) {
			want_resume = 0;
			if (paused) {
				tl_log("resumed");
				for (int i = 0; i < nconns; i++)
					conns[i].last_rx_ns = 0;
			}
			paused = false;
		}
		if (want_burst && burst_mode) {
			want_burst = 0;
			for (int i = 0; i < nconns; i++)
				conns[i].burst += BURST_BYTES;
			burst_logged = false;
		}
		if (parent && now - last_ppid_check > 100 * TL_NSEC_PER_MSEC) {
			last_ppid_check = now;
			if (getppid() != parent) {
				tl_log("%sparent %d is gone: leaving", who, parent);
				_exit(1);
			}
		}
		if (now >= next_tick) {
			for (int i = 0; i < nconns; i++)
				if (!paused && !ending && conns[i].due < 64)
					conns[i].due += PER_TICK;
			/* no catching up after a freeze: the rate goes on from now */
			next_tick += TICK_NS;
			if (next_tick <= now)
				next_tick = now + TICK_NS;
		}
		for (int i = 0; i < nconns; i++) {
			struct conn *c = &conns[i];

			pfd[i].fd = -1;
			pfd[i].events = 0;
			pfd[i].revents = 0;
			if (c->dead || paused)
				continue;
			if (ending && c->peer_end && c->out_off >= c->out_len)
				continue;
			open = true;
			if (!ending)
				refill(c);
			pfd[i].fd = c->fd;
			if (!c->peer_end)
				pfd[i].events |= POLLIN;
			if (c->out_off < c->out_len)
				pfd[i].events |= POLLOUT;
			n++;
		}
		if (!burst_logged)
			log_burst();
		if (ending && !open)
			return;
		if (ending && now >= deadline)
			return;
		struct timespec ts = {0, (long)(next_tick > now ? next_tick - now : 0)};

		if (ppoll(pfd, nconns, &ts, NULL) < 0) {
			if (errno == EINTR)
				continue;
			tl_fail("ppoll: %m");
		}
		now = tl_now_ns();
		for (int i = 0; i < nconns; i++) {
			struct conn *c = &conns[i];

			if (pfd[i].fd < 0 || c->dead)
				continue;
			if (pfd[i].revents & (POLLIN | POLLERR | POLLHUP))
				do_read(c, now);
			if (!c->dead && (pfd[i].revents & (POLLOUT | POLLERR)))
				do_write(c);
		}
		(void)n;
	}
}

/* SIGTERM: our end mark after the last counter, the peers' end marks, then the checks. */
static void finish(pid_t parent)
{
	char a[128];

	paused = false;
	for (int i = 0; i < nconns; i++) {
		struct conn *c = &conns[i];

		if (c->dead)
			continue;
		c->out[c->out_len / 8] = END_MARK;
		c->out_len += 8;
		c->sent_end = true;
	}
	run(true, tl_now_ns() + END_WAIT_NS, parent);
	for (int i = 0; i < nconns; i++) {
		struct conn *c = &conns[i];
		struct sockaddr_storage ss;
		socklen_t len;

		tl_log("%s: rx=%llu tx=%llu", c->name, (unsigned long long)c->rx,
		       (unsigned long long)c->tx);
		if (c->dead)
			continue;
		tl_expect(c->out_off >= c->out_len, "%s: could not send the end mark in %llu s",
			  c->name, END_WAIT_NS / TL_NSEC_PER_SEC);
		tl_expect(c->peer_end,
			  "%s: no end mark from the peer within %llu s (%llu received)", c->name,
			  END_WAIT_NS / TL_NSEC_PER_SEC, (unsigned long long)c->rx);
		tl_expect(c->rx >= MIN_RX, "%s: only %llu messages received", c->name,
			  (unsigned long long)c->rx);
		len = sizeof(ss);
		if (tl_expect(!getsockname(c->fd, (void *)&ss, &len), "%s: getsockname: %m",
			      c->name))
			tl_expect(len == c->self_len && !memcmp(&ss, &c->self, len),
				  "%s: local address is now %s", c->name,
				  addr_str(&ss, a, sizeof(a)));
		len = sizeof(ss);
		if (tl_expect(!getpeername(c->fd, (void *)&ss, &len), "%s: getpeername: %m",
			      c->name))
			tl_expect(len == c->peer_len && !memcmp(&ss, &c->peer, len),
				  "%s: peer address is now %s", c->name,
				  addr_str(&ss, a, sizeof(a)));
		for (unsigned int o = 0; o < NR_OPTS; o++) {
			int v = get_opt(c->fd, o);

			/* buffer sizes the kernel tunes by itself are not ours to compare */
			if (o == OPT_SNDBUF && !burst_mode)
				continue;
			if (o == OPT_RCVBUF && !rcvbuf_force)
				continue;
			/*
			 * Binding an AF_INET6 socket to an IPv6 address (not a v4-mapped one) sets
			 * IPV6_V6ONLY, and it cannot be cleared once bound: a restore that binds
			 * the connection to its address cannot give back the 0 it inherited from
			 * a dual-stack listener.  Noted, not failed.
			 */
			if (o == OPT_V6ONLY && c->opts[o] == 0 && v == 1 &&
			    c->self.ss_family == AF_INET6 &&
			    !IN6_IS_ADDR_V4MAPPED(&((struct sockaddr_in6 *)&c->self)->sin6_addr)) {
				tl_log("%s: note: IPV6_V6ONLY is 1, was 0 (set by binding to an "
				       "IPv6 address)",
				       c->name);
				continue;
			}
			tl_expect(v == c->opts[o], "%s: %s is %d, was %d", c->name,
				  sock_opts[o].name, v, c->opts[o]);
		}
		tl_expect(fcntl(c->fd, F_GETFD) == c->fdflags, "%s: F_GETFD %#x, was %#x", c->name,
			  fcntl(c->fd, F_GETFD), c->fdflags);
		tl_expect(fcntl(c->fd, F_GETFL) == c->flflags, "%s: F_GETFL %#o, was %#o", c->name,
			  fcntl(c->fd, F_GETFL), c->flflags);
	}
	if (lfd >= 0) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int acc = 0;

		len = sizeof(acc);
		tl_expect(!getsockopt(lfd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) && acc,
			  "the listener does not listen any more");
		len = sizeof(ss);
		tl_expect(get_opt(lfd, OPT_V6ONLY) == lsn_v6only,
			  "the listener's IPV6_V6ONLY is %d, was %d", get_opt(lfd, OPT_V6ONLY),
			  lsn_v6only);
		tl_expect(!getsockname(lfd, (void *)&ss, &len) && len == lsn_len &&
				  !memcmp(&ss, &lsn_addr, len),
			  "the listener's address is now %s", addr_str(&ss, a, sizeof(a)));
	}
	if (mem) {
		ssize_t bad = tl_check_fill(mem, mem_len, MEM_SEED);

		tl_expect(bad < 0, "memory differs at offset %zd", bad);
	}
	tl_log("%smax gap %.1f ms", who, maxgap_ns / 1e6);
}

static int do_listen(const char *addr, int port, int backlog)
{
	struct sockaddr_storage ss;
	socklen_t len = parse_addr(addr, port, &ss);
	int fd = socket(ss.ss_family, SOCK_STREAM, 0);

	if (fd < 0)
		tl_fail("socket: %m");
	set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
	if (ss.ss_family == AF_INET6)
		set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 0, "IPV6_V6ONLY");
	if (rcvbuf_force)
		set_int(fd, SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf_force, "SO_RCVBUFFORCE");
	if (bind(fd, (void *)&ss, len) || listen(fd, backlog))
		tl_fail("listen on %s port %d: %m", addr, port);
	lsn_v6only = get_opt(fd, OPT_V6ONLY);
	lsn_len = sizeof(lsn_addr);
	if (getsockname(fd, (void *)&lsn_addr, &lsn_len))
		tl_fail("getsockname: %m");
	return fd;
}

static int do_connect(const char *addr, int port)
{
	struct sockaddr_storage ss;
	socklen_t len = parse_addr(addr, port, &ss);
	int fd = socket(ss.ss_family, SOCK_STREAM, 0);

	if (fd < 0)
		tl_fail("socket: %m");
	if (rcvbuf_force)
		set_int(fd, SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf_force, "SO_RCVBUFFORCE");
	while (connect(fd, (void *)&ss, len)) {
		if (errno != EINTR)
			tl_fail("%sconnect to %s port %d: %m", who, addr, port);
	}
	return fd;
}

static void alloc_mem(size_t mb)
{
	mem_len = mb << 20;
	mem = mmap(NULL, mem_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		tl_fail("mmap %zu MiB: %m", mb);
	tl_fill(mem, mem_len, MEM_SEED);
}

/* An option of the command line?  (burst, rcvbuf=BYTES, mem=MB) */
static bool option(const char *arg)
{
	if (!strcmp(arg, "burst"))
		burst_mode = true;
	else if (!strncmp(arg, "rcvbuf=", 7))
		rcvbuf_force = atoi(arg + 7);
	else if (!strncmp(arg, "mem=", 4))
		alloc_mem(strtoul(arg + 4, NULL, 10));
	else
		return false;
	return true;
}

static void server(int argc, char **argv)
{
	int port, n, fd;

	if (argc < 5)
		tl_fail("usage: tcp_stream server ADDR PORT NCONN [OPTIONS]");
	port = atoi(argv[3]);
	n = atoi(argv[4]);
	if (n < 1 || n > MAX_CONNS)
		tl_fail("NCONN must be 1..%d", MAX_CONNS);
	for (int i = 5; i < argc; i++)
		if (!option(argv[i]))
			tl_fail("unknown option %s", argv[i]);
	lfd = do_listen(argv[2], port, 8);
	tl_log("listening on %s port %d", argv[2], port);
	while (nconns < n) {
		fd = accept(lfd, NULL, NULL);
		if (fd < 0 && errno == EINTR && !tl_term)
			continue;
		if (fd < 0)
			tl_fail("accept: %m");
		add_conn(fd);
	}
	tl_ready();
	run(false, 0, 0);
	finish(0);
	tl_done();
}

static void client(int argc, char **argv)
{
	int port;

	if (argc < 4)
		tl_fail("usage: tcp_stream client PORT ADDR... [OPTIONS]");
	port = atoi(argv[2]);
	for (int i = 3; i < argc; i++)
		if (!strchr(argv[i], '.') && !strchr(argv[i], ':') && !option(argv[i]))
			tl_fail("unknown option %s", argv[i]);
	for (int i = 3; i < argc; i++) {
		if (!strchr(argv[i], '.') && !strchr(argv[i], ':'))
			continue;
		if (nconns == MAX_CONNS)
			tl_fail("too many addresses");
		add_conn(do_connect(argv[i], port));
	}
	tl_ready();
	run(false, 0, 0);
	finish(0);
	tl_done();
}

static void pair(int argc, char **argv)
{
	pid_t parent = getpid(), child;
	int port = argc > 2 ? atoi(argv[2]) : 0, fd, st;
	uint64_t deadline;
	pid_t r;

	lfd = do_listen("127.0.0.1", port, 8);
	port = ntohs(((struct sockaddr_in *)&lsn_addr)->sin_port);
	fflush(stdout);
	child = fork();
	if (child < 0)
		tl_fail("fork: %m");
	if (!child) {
		who = "child: ";
		close(lfd);
		lfd = -1;
		add_conn(do_connect("127.0.0.1", port));
		run(false, 0, parent);
		finish(parent);
		_exit(tl_failures() ? 1 : 0);
	}
	fd = accept(lfd, NULL, NULL);
	if (fd < 0)
		tl_fail("accept: %m");
	add_conn(fd);
	tl_ready();
	run(false, 0, 0);
	kill(child, SIGTERM);
	finish(0);
	deadline = tl_now_ns() + END_WAIT_NS + TL_NSEC_PER_SEC;
	for (;;) {
		r = waitpid(child, &st, WNOHANG);
		if (r == child || (r < 0 && errno != EINTR))
			break;
		if (!r && tl_now_ns() >= deadline) {
			kill(child, SIGKILL);
			waitpid(child, &st, 0);
			r = -2;
			break;
		}
		usleep(5000);
	}
	if (r == child)
		tl_expect(WIFEXITED(st) && !WEXITSTATUS(st), "the child failed (status %#x)", st);
	else
		tl_expect(false, "the child %s", r == -2 ? "did not exit in time" : "is lost");
	tl_done();
}

int main(int argc, char **argv)
{
	tl_init();
	catch (SIGUSR2, on_usr2);
	catch (SIGUSR1, on_usr1);
	catch (SIGHUP, on_hup);
	if (argc >= 2 && !strcmp(argv[1], "server"))
		server(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "client"))
		client(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "pair"))
		pair(argc, argv);
	tl_fail("usage: tcp_stream server|client|pair ...");
}
