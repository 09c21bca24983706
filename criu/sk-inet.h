/* SPDX-License-Identifier: MIT */
/* Internet sockets (sk-inet.c) and their TCP connections (sk-tcp.c). */
#ifndef CREST_SK_INET_H
#define CREST_SK_INET_H

#include <netinet/tcp.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "fdinfo.pb-c.h"

struct dump_ctx;
struct dump_tree;
struct restore_tree;

bool tcp_is_stream_state(uint32_t state);
int tcp_stream_dump(struct dump_ctx *d, int lfd, const struct tcp_info *ti, InetSkEntry *e,
		    const char *what);
void tcp_dump_fini(struct dump_tree *t, bool tree_killed);
/* A socket the dump put in repair mode (dump_tree.tcp_repaired). */
struct tcp_repaired {
	int fd; /* crest's copy */
	bool reuseaddr;
};
int tcp_stream_restore(int fd, const InetSkEntry *e, const struct sockaddr *src,
		       const struct sockaddr *dst, socklen_t alen);
int tcp_stream_finish(int fd, const InetSkEntry *e);

/* "tcp 10.0.0.1:80 -> 10.0.0.2:5555" into buf, for messages. */
const char *inet_sk_str(const InetSkEntry *e, char *buf, size_t size);

/* Restore, once every task is rebuilt (still stopped): unlock, then out of repair mode. */
int inet_restore_finish(struct restore_tree *t);
void inet_restore_fini(struct restore_tree *t);

#endif
