/* SPDX-License-Identifier: MIT */
/*
 * Byte streams between two crest processes on different hosts: TCP, optionally inside TLS
 * (OpenSSL).  Both ends use the same calls; only setting a connection up differs.  Every
 * failure leaves a one-line reason in the connection (xport_error), which the caller puts into
 * its own message with what it was doing at the time.
 */
#ifndef CREST_TRANSPORT_H
#define CREST_TRANSPORT_H

#include <stdbool.h>
#include <signal.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "crest.h"

struct xport;
struct xport_listener;

/*
 * Connect to address:port; with opts->tls, complete a TLS handshake that verifies the server
 * (its certificate must chain to --tls-cacert and name the address, unless --tls-no-cn-verify)
 * and presents --tls-cert when given.  NULL on failure, with the reason logged.
 */
struct xport *xport_connect(const char *address, int port, const struct crest_opts *opts);

/* Listen on address:port (any address when NULL); TLS settings are loaded here, once. */
struct xport_listener *xport_listen(const char *address, int port, const struct crest_opts *opts);
void xport_listener_close(struct xport_listener *l);
int xport_listener_fd(const struct xport_listener *l);

/*
 * Wait for the next client and complete its handshake.  *fatal tells a broken listener (stop
 * serving) from one client that failed (already logged; serve the next).
 */
struct xport *xport_accept(struct xport_listener *l, bool *fatal);

/* All of buf, or -1. */
int xport_send(struct xport *x, const void *buf, size_t len);
/* All of n buffers, in one system call when it can; iov is used up. */
int xport_sendv(struct xport *x, struct iovec *iov, int n);
/* Exactly len bytes: 1 done, 0 the peer closed before the first byte, -1 error. */
int xport_recv(struct xport *x, void *buf, size_t len);
/* Some bytes (at most len): how many, 0 when the peer closed, -1 on error. */
ssize_t xport_recv_some(struct xport *x, void *buf, size_t len);
/* Is there something to read, waiting at most timeout_ms? */
bool xport_readable(struct xport *x, int timeout_ms);
/* Calls interrupted by a signal fail, rather than resume, once *stop is set. */
void xport_set_stop(struct xport *x, volatile sig_atomic_t *stop);
/* Give up on a connection that stalls for this long in one send or receive. */
void xport_set_timeout(struct xport *x, int seconds);

/* The reason of the last failure, and "ADDR:PORT" of the other end. */
const char *xport_error(const struct xport *x);
const char *xport_peer(const struct xport *x);

void xport_close(struct xport *x);

#endif
