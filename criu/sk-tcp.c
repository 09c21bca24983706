// SPDX-License-Identifier: MIT
/*
 * TCP connections, dumped and restored with TCP_REPAIR (Linux 3.5+).  In repair mode a socket
 * neither sends nor answers anything: its sequence numbers, queues, options and window can be
 * read and set, connect() only records the peer, and close() sends no RST.
 *
 * Dump: crest puts its copy of the socket (the same struct sock as the task's) into repair
 * mode, after the network lock drops the connection's packets; then reads rcv_nxt and
 * write_seq, peeks both queues, the negotiated options, the timestamp clock and the window.
 * The socket stays in repair mode: when the dumped task dies its close() is silent.
 *
 * Restore: a new socket in repair mode takes the sequence numbers at the start of each queue,
 * binds and "connects" (no SYN), gets the options, the queues' bytes and the window back, and
 * stays in repair mode until the whole tree is rebuilt and the lock is gone
 * (tcp_stream_finish()).  Bytes that were never sent at dump time are queued only after repair
 * mode, so they leave at once instead of waiting for a retransmission timer.
 *
 * Closing states: our FIN is not in the queues, so the restored side shuts down its writing
 * half again once out of repair; the peer's FIN, already acknowledged, is not sent again by
 * the peer, so the restored side feeds it to its socket as a raw packet (libnet).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <libnet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "log.h"
#include "net-lock.h"
#include "sk-inet.h"

/* Chunks in which the queues are handed to a repair socket (the kernel's skb limits). */
#define QUEUE_CHUNK (64u << 10)

static int set_repair(int fd, int val)
{
	return setsockopt(fd, SOL_TCP, TCP_REPAIR, &val, sizeof(val));
}

/*
 * Leaving repair mode also clears the socket's SO_REUSEADDR (repair mode forces reuse and
 * the kernel resets it to none): put back what the application had set.
 */
static int repair_off(int fd, bool reuseaddr)
{
	int one = 1;

	if (set_repair(fd, TCP_REPAIR_OFF))
		return -1;
	return reuseaddr ? setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) : 0;
}

static int select_queue(int fd, int queue)
{
	return setsockopt(fd, SOL_TCP, TCP_REPAIR_QUEUE, &queue, sizeof(queue));
}

/* Bytes of one queue, peeked in repair mode (they stay where they are). */
static int peek_queue(int fd, int queue, int len, ProtobufCBinaryData *out, uint32_t *seq)
{
	socklen_t sl = sizeof(*seq);
	ssize_t n;

	if (select_queue(fd, queue) || getsockopt(fd, SOL_TCP, TCP_QUEUE_SEQ, seq, &sl))
		return -1;
	if (!len)
		return 0;
	out->data = malloc(len);
	if (!out->data)
		return -1;
	n = recv(fd, out->data, len, MSG_PEEK | MSG_DONTWAIT);
	if (n != len) {
		if (n >= 0)
			errno = EIO;
		return -1;
	}
	out->len = len;
	return 0;
}

static bool closing_state(uint32_t state)
{
	return state == TCP_FIN_WAIT1 || state == TCP_FIN_WAIT2 || state == TCP_CLOSING ||
	       state == TCP_LAST_ACK || state == TCP_CLOSE_WAIT;
}

bool tcp_is_stream_state(uint32_t state)
{
	return state == TCP_ESTABLISHED || closing_state(state);
}

static int read_stream(int fd, const struct tcp_info *ti, TcpStreamEntry *s)
{
	struct tcp_repair_window win;
	socklen_t sl;
	int inq, outq, unsent;
	uint32_t mss, ts;

	if (ioctl(fd, SIOCINQ, &inq) || ioctl(fd, SIOCOUTQ, &outq) ||
	    ioctl(fd, SIOCOUTQNSD, &unsent))
		return -1;
	if (peek_queue(fd, TCP_RECV_QUEUE, inq, &s->recv_queue, &s->rcv_seq) ||
	    peek_queue(fd, TCP_SEND_QUEUE, outq, &s->send_queue, &s->snd_seq))
		return -1;
	s->has_recv_queue = inq > 0;
	s->has_send_queue = outq > 0;
	s->unsent = unsent;
	s->has_unsent = unsent > 0;
	select_queue(fd, TCP_NO_QUEUE);

	sl = sizeof(mss);
	if (getsockopt(fd, SOL_TCP, TCP_MAXSEG, &mss, &sl))
		return -1;
	s->mss = mss;
	s->has_mss = true;
	s->options = ti->tcpi_options;
	s->has_options = true;
	s->snd_wscale = ti->tcpi_snd_wscale;
	s->rcv_wscale = ti->tcpi_rcv_wscale;
	s->has_snd_wscale = s->has_rcv_wscale = true;
	sl = sizeof(ts);
	if (!getsockopt(fd, SOL_TCP, TCP_TIMESTAMP, &ts, &sl)) {
		s->timestamp = ts;
		s->has_timestamp = true;
	}
	sl = sizeof(win);
	if (getsockopt(fd, SOL_TCP, TCP_REPAIR_WINDOW, &win, &sl))
		return -1;
	s->snd_wl1 = win.snd_wl1;
	s->snd_wnd = win.snd_wnd;
	s->max_window = win.max_window;
	s->rcv_wnd = win.rcv_wnd;
	s->rcv_wup = win.rcv_wup;
	s->has_snd_wl1 = s->has_snd_wnd = s->has_max_window = true;
	s->has_rcv_wnd = s->has_rcv_wup = true;

	/* The FINs take a sequence number each but no byte in the queues. */
	s->fin_sent = ti->tcpi_state == TCP_FIN_WAIT1 || ti->tcpi_state == TCP_FIN_WAIT2 ||
		      ti->tcpi_state == TCP_CLOSING || ti->tcpi_state == TCP_LAST_ACK;
	s->fin_received = ti->tcpi_state == TCP_CLOSE_WAIT || ti->tcpi_state == TCP_CLOSING ||
			  ti->tcpi_state == TCP_LAST_ACK;
	s->has_fin_sent = s->fin_sent;
	s->has_fin_received = s->fin_received;
	return 0;
}

/*
 * Lock the connection, put it in repair mode (crest's copy: the task's socket is the same)
 * and read it into e->tcp.  The fd is kept by the tree: it comes out of repair mode if the
 * dump fails or the tree runs on.
 */
int tcp_stream_dump(struct dump_ctx *d, int lfd, const struct tcp_info *ti, InetSkEntry *e,
		    const char *what)
{
	struct dump_tree *t = d->tree;
	struct tcp_repaired *slot;
	TcpStreamEntry *s;
	int keep;

	if (netlock_connection(t, d->pid, e))
		return -1;
	keep = dup(lfd);
	slot = keep >= 0 ? vec_push(&t->tcp_repaired) : NULL;
	if (!slot) {
		pr_perror("%s: cannot keep the socket", what);
		if (keep >= 0)
			close(keep);
		return -1;
	}
	if (set_repair(keep, TCP_REPAIR_ON)) {
		pr_perror("%s: cannot enter TCP repair mode", what);
		close(keep);
		t->tcp_repaired.len--;
		return -1;
	}
	slot->fd = keep;
	slot->reuseaddr = e->opts && e->opts->reuseaddr;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -1;
	tcp_stream_entry__init(s);
	e->tcp = s;
	if (read_stream(keep, ti, s)) {
		pr_perror("%s: cannot read the connection in repair mode", what);
		return -1;
	}
	pr_debug("%s: snd_seq %u rcv_seq %u sendq %zu (unsent %u) recvq %zu mss %u", what,
		 s->snd_seq, s->rcv_seq, s->send_queue.len, s->unsent, s->recv_queue.len, s->mss);
	return 0;
}

/* Dump over: the sockets were dumped (tree killed: stay silent) or the tree runs on. */
void tcp_dump_fini(struct dump_tree *t, bool tree_killed)
{
	for (size_t i = 0; i < t->tcp_repaired.len; i++) {
		struct tcp_repaired *r = vec_at(&t->tcp_repaired, struct tcp_repaired, i);

		if (!tree_killed && repair_off(r->fd, r->reuseaddr))
			pr_perror("cannot take a tcp connection out of repair mode");
		close(r->fd);
	}
	t->tcp_repaired.len = 0;
}

/* ---- restore ---- */

static int set_seq(int fd, int queue, uint32_t seq)
{
	return select_queue(fd, queue) || setsockopt(fd, SOL_TCP, TCP_QUEUE_SEQ, &seq, sizeof(seq));
}

static int fill_queue(int fd, int queue, const uint8_t *data, size_t len)
{
	if (!len)
		return 0;
	if (select_queue(fd, queue))
		return -1;
	for (size_t off = 0; off < len;) {
		size_t chunk = len - off < QUEUE_CHUNK ? len - off : QUEUE_CHUNK;
		ssize_t n = send(fd, data + off, chunk, 0);

		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return -1;
		}
		off += n;
	}
	return 0;
}

static int set_options(int fd, const TcpStreamEntry *s)
{
	struct tcp_repair_opt opts[4];
	int n = 0;

	opts[n++] = (struct tcp_repair_opt){TCPOPT_MAXSEG, s->mss};
	if (s->options & TCPI_OPT_WSCALE)
		opts[n++] = (struct tcp_repair_opt){TCPOPT_WINDOW,
						    s->snd_wscale | (s->rcv_wscale << 16)};
	if (s->options & TCPI_OPT_SACK)
		opts[n++] = (struct tcp_repair_opt){TCPOPT_SACK_PERMITTED, 0};
	if (s->options & TCPI_OPT_TIMESTAMPS)
		opts[n++] = (struct tcp_repair_opt){TCPOPT_TIMESTAMP, 0};
	return setsockopt(fd, SOL_TCP, TCP_REPAIR_OPTIONS, opts, n * sizeof(opts[0]));
}

/* rcv_end: rcv_nxt as restored (before a peer's FIN, which the window had counted) */
static int set_window(int fd, const TcpStreamEntry *s, uint32_t rcv_end)
{
	struct tcp_repair_window win = {
		.snd_wl1 = s->snd_wl1,
		.snd_wnd = s->snd_wnd,
		.max_window = s->max_window,
		.rcv_wnd = s->rcv_wnd,
		.rcv_wup = (int32_t)(s->rcv_wup - rcv_end) > 0 ? rcv_end : s->rcv_wup,
	};

	return setsockopt(fd, SOL_TCP, TCP_REPAIR_WINDOW, &win, sizeof(win));
}

/* The buffer sizes must hold the queues while they are put back. */
static void make_room(int fd, int opt, size_t need)
{
	int cur;
	socklen_t sl = sizeof(cur);

	if (getsockopt(fd, SOL_SOCKET, opt == SO_SNDBUFFORCE ? SO_SNDBUF : SO_RCVBUF, &cur, &sl))
		return;
	if ((size_t)cur < 2 * need + (64u << 10)) {
		int val = need + (64u << 10);

		setsockopt(fd, SOL_SOCKET, opt, &val, sizeof(val));
	}
}

/*
 * A connection back in repair mode on fd (a new socket with its options set): sequence
 * numbers, bind, connect, options, queues, window.  The caller binds through bind_fn so the
 * address rules stay in one place.
 */
int tcp_stream_restore(int fd, const InetSkEntry *e, const struct sockaddr *src,
		       const struct sockaddr *dst, socklen_t alen)
{
	const TcpStreamEntry *s = e->tcp;
	uint32_t sent = s->send_queue.len - s->unsent;
	/* the FINs' sequence numbers come back with the FINs themselves */
	uint32_t snd_end = s->snd_seq - (s->fin_sent ? 1 : 0);
	uint32_t rcv_end = s->rcv_seq - (s->fin_received ? 1 : 0);

	if (s->unsent > s->send_queue.len) {
		pr_err("files.img: tcp socket %llu: more unsent bytes than queued",
		       (unsigned long long)e->ino);
		return -1;
	}
	if (set_repair(fd, TCP_REPAIR_ON)) {
		pr_perror("cannot enter TCP repair mode");
		return -1;
	}
	if (set_seq(fd, TCP_RECV_QUEUE, rcv_end - s->recv_queue.len) ||
	    set_seq(fd, TCP_SEND_QUEUE, snd_end - s->send_queue.len)) {
		pr_perror("cannot set the sequence numbers of a tcp connection");
		return -1;
	}
	if (bind(fd, src, alen) || connect(fd, dst, alen)) {
		pr_perror("cannot re-establish a tcp connection");
		return -1;
	}
	if (set_options(fd, s) ||
	    (s->has_timestamp &&
	     setsockopt(fd, SOL_TCP, TCP_TIMESTAMP, &s->timestamp, sizeof(s->timestamp)))) {
		pr_perror("cannot set the options of a tcp connection");
		return -1;
	}
	make_room(fd, SO_RCVBUFFORCE, s->recv_queue.len);
	make_room(fd, SO_SNDBUFFORCE, s->send_queue.len);
	if (fill_queue(fd, TCP_RECV_QUEUE, s->recv_queue.data, s->recv_queue.len) ||
	    fill_queue(fd, TCP_SEND_QUEUE, s->send_queue.data, sent)) {
		pr_perror("cannot put back the queues of a tcp connection");
		return -1;
	}
	select_queue(fd, TCP_NO_QUEUE);
	if (set_window(fd, s, rcv_end)) {
		pr_perror("cannot set the window of a tcp connection");
		return -1;
	}
	return 0;
}

/* The peer's FIN, again: a raw packet to our own socket, as the peer sent it. */
static int inject_peer_fin(const InetSkEntry *e)
{
	const TcpStreamEntry *s = e->tcp;
	char errbuf[LIBNET_ERRBUF_SIZE];
	bool v6 =
		e->dst_addr.len == 16 && !IN6_IS_ADDR_V4MAPPED((struct in6_addr *)e->dst_addr.data);
	const uint8_t *sa = e->dst_addr.data, *da = e->src_addr.data;
	libnet_t *ln = libnet_init(v6 ? LIBNET_RAW6 : LIBNET_RAW4, NULL, errbuf);
	uint32_t seq = s->rcv_seq - 1, ack = s->snd_seq - s->send_queue.len;
	int ret = -1;

	if (!ln) {
		pr_err("cannot inject the peer's FIN: %s", errbuf);
		return -1;
	}
	if (e->dst_addr.len == 16 && !v6) {
		sa += 12; /* v4-mapped: the packets are IPv4 */
		da += 12;
	}
	if (libnet_build_tcp(e->dst_port, e->src_port, seq, ack, TH_FIN | TH_ACK,
			     s->rcv_wnd >> (s->options & TCPI_OPT_WSCALE ? s->snd_wscale : 0) ?: 1,
			     0, 0, LIBNET_TCP_H, NULL, 0, ln, 0) < 0)
		goto out;
	if (v6) {
		struct libnet_in6_addr src6, dst6;

		memcpy(&src6, sa, 16);
		memcpy(&dst6, da, 16);
		if (libnet_build_ipv6(0, 0, LIBNET_TCP_H, IPPROTO_TCP, 64, src6, dst6, NULL, 0, ln,
				      0) < 0)
			goto out;
	} else {
		uint32_t src4, dst4;

		memcpy(&src4, sa, 4);
		memcpy(&dst4, da, 4);
		if (libnet_build_ipv4(LIBNET_IPV4_H + LIBNET_TCP_H, 0, 0, IP_DF, 64, IPPROTO_TCP, 0,
				      src4, dst4, NULL, 0, ln, 0) < 0)
			goto out;
	}
	if (libnet_write(ln) < 0)
		goto out;
	ret = 0;
out:
	if (ret)
		pr_err("cannot inject the peer's FIN: %s", libnet_geterror(ln));
	libnet_destroy(ln);
	return ret;
}

/*
 * The tree is rebuilt and the lock gone: out of repair mode (a window probe tells the peer
 * where we are), then what was never sent, then the FINs of a closing connection.
 */
int tcp_stream_finish(int fd, const InetSkEntry *e)
{
	const TcpStreamEntry *s = e->tcp;
	uint32_t sent = s->send_queue.len - s->unsent;

	if (repair_off(fd, e->opts && e->opts->reuseaddr)) {
		pr_perror("cannot take a tcp connection out of repair mode");
		return -1;
	}
	for (size_t off = sent; off < s->send_queue.len;) {
		ssize_t n = send(fd, s->send_queue.data + off, s->send_queue.len - off,
				 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n <= 0) {
			pr_perror("cannot queue the unsent bytes of a tcp connection");
			return -1;
		}
		off += n;
	}
	if (s->fin_received) {
		struct pollfd pfd = {.fd = fd, .events = POLLRDHUP};
		char byte;

		if (inject_peer_fin(e))
			return -1;
		/* the EOF had been read (the queue is empty): read it again, so the FIN counts
		 * as consumed as it was (one recv() of 0 bytes) */
		if (poll(&pfd, 1, 100) != 1 || !(pfd.revents & POLLRDHUP)) {
			pr_err("the injected FIN of %s did not arrive", "a closing connection");
			return -1;
		}
		if (!s->recv_queue.len)
			recv(fd, &byte, 1, MSG_DONTWAIT);
	}
	if (s->fin_sent && shutdown(fd, SHUT_WR)) {
		pr_perror("cannot send the FIN of a closing tcp connection again");
		return -1;
	}
	return 0;
}
