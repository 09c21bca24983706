// SPDX-License-Identifier: MIT
/*
 * TCP streams for the page server, optionally inside TLS.
 *
 * TLS is OpenSSL, version 1.2 at least.  The client always verifies the server: its
 * certificate must chain to --tls-cacert (the system's CAs without one) and, unless
 * --tls-no-cn-verify, name the address dialled (an IP address must be in the certificate's
 * subjectAltName).  A server with --tls-cacert demands a client certificate that chains to it,
 * so a client without one is refused in the handshake; without --tls-cacert it encrypts but
 * lets anyone in, and says so.
 *
 * Sockets block, with timeouts: a peer that stops reading or writing for that long is given
 * up on instead of hanging a dump that holds a tree frozen.  Keepalive catches a peer that
 * vanished without a word.  Nothing here may raise SIGPIPE in the caller: plain sends use
 * MSG_NOSIGNAL, and OpenSSL's writes run with SIGPIPE blocked, a pending one we caused being
 * taken back.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "transport.h"
#include "util.h"

#define CONNECT_TIMEOUT 10 /* seconds */
#define IO_TIMEOUT 60

struct xport {
	int fd;
	SSL *ssl;
	SSL_CTX *ctx; /* a client's own; a server connection uses its listener's */
	int timeout;
	volatile sig_atomic_t *stop; /* an interrupted call fails once this is set */
	char peer[INET6_ADDRSTRLEN + 16];
	char err[256];
};

struct xport_listener {
	int fd;
	SSL_CTX *ctx;
};

static void set_err(struct xport *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_err(struct xport *x, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(x->err, sizeof(x->err), fmt, ap);
	va_end(ap);
}

/* The first queued OpenSSL error as text, with the certificate problem when there is one. */
static void tls_reason(char *buf, size_t len, SSL *ssl)
{
	unsigned long code = ERR_peek_error();
	const char *reason = code ? ERR_reason_error_string(code) : NULL;
	long verify = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;

	/* the first error is the cause: a file that cannot be opened is an errno */
	if (code && ERR_SYSTEM_ERROR(code))
		reason = strerror(ERR_GET_REASON(code));
	if (!reason)
		reason = "unknown error";
	if (code && ERR_GET_REASON(code) == SSL_R_CERTIFICATE_VERIFY_FAILED && verify != X509_V_OK)
		snprintf(buf, len, "%s (%s)", reason, X509_verify_cert_error_string(verify));
	else
		snprintf(buf, len, "%s", reason);
	ERR_clear_error();
}

/* Why an SSL call returned ret <= 0; err is errno right after it. */
static void tls_err(struct xport *x, int ret, int err)
{
	char reason[200];

	switch (SSL_get_error(x->ssl, ret)) {
	case SSL_ERROR_ZERO_RETURN:
		set_err(x, "the peer closed the connection");
		break;
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		set_err(x, "no progress for %d s", x->timeout);
		break;
	case SSL_ERROR_SYSCALL:
		if (!ERR_peek_error()) {
			if (err)
				set_err(x, "%s", strerror(err));
			else
				set_err(x, "the peer closed the connection");
			break;
		}
		/* fall through */
	default:
		tls_reason(reason, sizeof(reason), x->ssl);
		set_err(x, "TLS: %s", reason);
	}
	ERR_clear_error();
}

static void sock_err(struct xport *x, ssize_t n)
{
	if (n == 0)
		set_err(x, "the peer closed the connection");
	else if (errno == EAGAIN || errno == EWOULDBLOCK)
		set_err(x, "no progress for %d s", x->timeout);
	else
		set_err(x, "%s", strerror(errno));
}

void xport_set_timeout(struct xport *x, int seconds)
{
	struct timeval tv = {.tv_sec = seconds};

	x->timeout = seconds;
	setsockopt(x->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(x->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

/* Small control messages must not wait for Nagle; keepalive notices a peer that vanished. */
/*
 * A peer that went silent (its host or the link is down) is given up within about 5 s,
 * whether we are sending (unacknowledged data: TCP_USER_TIMEOUT) or waiting (keepalive):
 * a final dump keeps its tree frozen while it waits, and an agent must drop a half round
 * its source can no longer finish (found by the link_down_final migration test, which
 * otherwise froze the tree for the 60 s reply timeout).
 */
static void tune(int fd)
{
	int one = 1, idle = 2, intvl = 1, cnt = 3, user_timeout_ms = 5000;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof(user_timeout_ms));
}

static void addr_str(const struct sockaddr *sa, socklen_t len, char *buf, size_t size)
{
	char host[INET6_ADDRSTRLEN], port[8];

	if (getnameinfo(sa, len, host, sizeof(host), port, sizeof(port),
			NI_NUMERICHOST | NI_NUMERICSERV)) {
		snprintf(buf, size, "?");
		return;
	}
	snprintf(buf, size, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
}

static struct xport *xport_new(int fd)
{
	struct xport *x = calloc(1, sizeof(*x));

	if (!x) {
		pr_err("out of memory");
		close(fd);
		return NULL;
	}
	x->fd = fd;
	return x;
}

void xport_close(struct xport *x)
{
	if (!x)
		return;
	if (x->ssl) {
		/* a close_notify when the peer can still take it; never wait for its answer */
		if (!(SSL_get_shutdown(x->ssl) & SSL_SENT_SHUTDOWN) && SSL_is_init_finished(x->ssl))
			SSL_shutdown(x->ssl);
		SSL_free(x->ssl);
	}
	SSL_CTX_free(x->ctx);
	ERR_clear_error();
	close(x->fd);
	free(x);
}

static int load_cert_key(SSL_CTX *ctx, const struct crest_opts *o, const char *who)
{
	char reason[200];

	if (!o->tls_cert != !o->tls_key) {
		pr_err("%s: --tls-cert and --tls-key go together", who);
		return -1;
	}
	if (!o->tls_cert)
		return 0;
	if (SSL_CTX_use_certificate_chain_file(ctx, o->tls_cert) != 1) {
		tls_reason(reason, sizeof(reason), NULL);
		pr_err("%s: cannot load certificate %s: %s", who, o->tls_cert, reason);
		return -1;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, o->tls_key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		tls_reason(reason, sizeof(reason), NULL);
		pr_err("%s: cannot use key %s with %s: %s", who, o->tls_key, o->tls_cert, reason);
		return -1;
	}
	return 0;
}

static SSL_CTX *tls_ctx(const struct crest_opts *o, bool server)
{
	const char *who = server ? "TLS" : "page server client";
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	char reason[200];

	if (!ctx) {
		tls_reason(reason, sizeof(reason), NULL);
		pr_err("%s: TLS: %s", who, reason);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* a killed peer is a lost connection, reported as such; the protocol commits explicitly */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(ctx, SSL_MODE_AUTO_RETRY);
	if (load_cert_key(ctx, o, who))
		goto err;
	if (server) {
		if (!o->tls_cert) {
			pr_err("--tls needs --tls-cert and --tls-key");
			goto err;
		}
		/* session tickets would be the only bytes sent unasked: the client reads none */
		SSL_CTX_set_num_tickets(ctx, 0);
	}
	if (o->tls_cacert) {
		if (SSL_CTX_load_verify_locations(ctx, o->tls_cacert, NULL) != 1) {
			tls_reason(reason, sizeof(reason), NULL);
			pr_err("%s: cannot load CA certificate %s: %s", who, o->tls_cacert, reason);
			goto err;
		}
	} else if (!server && SSL_CTX_set_default_verify_paths(ctx) != 1) {
		tls_reason(reason, sizeof(reason), NULL);
		pr_err("%s: cannot load the system's CA certificates: %s", who, reason);
		goto err;
	}
	if (server && o->tls_cacert) {
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->tls_cacert);

		if (names)
			SSL_CTX_set_client_CA_list(ctx, names);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	} else if (server) {
		pr_warn("page server without --tls-cacert: clients are not authenticated");
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}
	return ctx;
err:
	SSL_CTX_free(ctx);
	return NULL;
}

static bool is_ip(const char *address)
{
	unsigned char ip[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, address, ip) == 1 || inet_pton(AF_INET6, address, ip) == 1;
}

/* An error without its "TLS: ", where the message says TLS already. */
static const char *bare(const char *err)
{
	return strncmp(err, "TLS: ", 5) ? err : err + 5;
}

struct xport *xport_connect(const char *address, int port, const struct crest_opts *o)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res = NULL, *ai;
	struct xport *x = NULL;
	char svc[8], reason[256] = "no usable address";
	int rc, err = 0;

	snprintf(svc, sizeof(svc), "%d", port);
	rc = getaddrinfo(address, svc, &hints, &res);
	if (rc) {
		pr_err("page server address %s: %s", address, gai_strerror(rc));
		return NULL;
	}
	for (ai = res; ai && !x; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct timeval tv = {.tv_sec = CONNECT_TIMEOUT};

		if (fd < 0) {
			snprintf(reason, sizeof(reason), "%s", strerror(errno));
			continue;
		}
		/* on Linux the send timeout bounds connect() too */
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen)) {
			err = errno;
			snprintf(reason, sizeof(reason), "%s",
				 err == EINPROGRESS || err == EAGAIN ? "timed out" : strerror(err));
			close(fd);
			continue;
		}
		x = xport_new(fd);
		if (!x) {
			freeaddrinfo(res);
			return NULL;
		}
		addr_str(ai->ai_addr, ai->ai_addrlen, x->peer, sizeof(x->peer));
	}
	freeaddrinfo(res);
	if (!x) {
		pr_err("cannot connect to the page server at %s port %d: %s", address, port,
		       reason);
		return NULL;
	}
	tune(x->fd);
	xport_set_timeout(x, IO_TIMEOUT);
	if (!o->tls)
		return x;

	x->ctx = tls_ctx(o, false);
	x->ssl = x->ctx ? SSL_new(x->ctx) : NULL;
	if (!x->ssl || SSL_set_fd(x->ssl, x->fd) != 1)
		goto tls_err;
	if (!o->tls_no_cn_verify &&
	    (is_ip(address) ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(x->ssl), address) != 1
			    : SSL_set1_host(x->ssl, address) != 1))
		goto tls_err;
	/* SNI names hosts only; it is a courtesy, so a failure is no reason to stop */
	if (!is_ip(address) && !SSL_set_tlsext_host_name(x->ssl, address))
		ERR_clear_error();
	rc = SSL_connect(x->ssl);
	if (rc != 1) {
		tls_err(x, rc, errno);
		pr_err("page server %s: TLS handshake failed: %s", x->peer, bare(x->err));
		xport_close(x);
		return NULL;
	}
	return x;
tls_err:
	if (x->ctx) {
		tls_reason(reason, sizeof(reason), x->ssl);
		pr_err("page server %s: cannot set up TLS: %s", x->peer, reason);
	}
	xport_close(x);
	return NULL;
}

struct xport_listener *xport_listen(const char *address, int port, const struct crest_opts *o)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res = NULL, *ai;
	struct xport_listener *l = calloc(1, sizeof(*l));
	char svc[8], reason[256] = "no usable address";
	int rc, one = 1;

	if (!l) {
		pr_err("out of memory");
		return NULL;
	}
	l->fd = -1;
	if (o->tls) {
		l->ctx = tls_ctx(o, true);
		if (!l->ctx)
			goto err;
	}
	snprintf(svc, sizeof(svc), "%d", port);
	rc = getaddrinfo(address, svc, &hints, &res);
	if (rc) {
		pr_err("page server: address %s: %s", address ? address : "(any)",
		       gai_strerror(rc));
		goto err;
	}
	for (ai = res; ai && l->fd < 0; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0) {
			snprintf(reason, sizeof(reason), "%s", strerror(errno));
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 8)) {
			snprintf(reason, sizeof(reason), "%s", strerror(errno));
			close(fd);
			continue;
		}
		l->fd = fd;
	}
	freeaddrinfo(res);
	if (l->fd < 0) {
		pr_err("page server: cannot listen on %s port %d: %s", address ? address : "(any)",
		       port, reason);
		goto err;
	}
	return l;
err:
	xport_listener_close(l);
	return NULL;
}

void xport_listener_close(struct xport_listener *l)
{
	if (!l)
		return;
	if (l->fd >= 0)
		close(l->fd);
	SSL_CTX_free(l->ctx);
	free(l);
}

int xport_listener_fd(const struct xport_listener *l)
{
	return l->fd;
}

/*
 * Close a connection the client may still be writing to without resetting it: a reset would
 * discard what we told it (the TLS alert that says why) before it reads that.  So stop
 * writing, and read until it closes its end, for a while.
 */
static void linger_close(struct xport *x)
{
	uint64_t end = now_ns(CLOCK_MONOTONIC) + 2000000000ULL;
	char buf[4096];

	shutdown(x->fd, SHUT_WR);
	while (now_ns(CLOCK_MONOTONIC) < end) {
		struct pollfd p = {.fd = x->fd, .events = POLLIN};
		ssize_t n;

		if (poll(&p, 1, 100) < 0 && errno != EINTR)
			break;
		if (!(p.revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		n = recv(x->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			break;
	}
	xport_close(x);
}

struct xport *xport_accept(struct xport_listener *l, bool *fatal)
{
	struct sockaddr_storage sa;
	socklen_t len = sizeof(sa);
	struct xport *x;
	int fd, rc;

	*fatal = false;
	fd = accept4(l->fd, (struct sockaddr *)&sa, &len, SOCK_CLOEXEC);
	if (fd < 0) {
		/* a signal, or a client that gave up while queued: neither stops the server */
		if (errno == EINTR || errno == ECONNABORTED || errno == EPERM || errno == EPROTO)
			return NULL;
		*fatal = errno != EMFILE && errno != ENFILE && errno != ENOBUFS && errno != ENOMEM;
		pr_perror("page server: accept");
		if (!*fatal)
			sleep(1);
		return NULL;
	}
	x = xport_new(fd);
	if (!x)
		return NULL;
	addr_str((struct sockaddr *)&sa, len, x->peer, sizeof(x->peer));
	tune(fd);
	/* the handshake and the client's first words come at once, or not at all */
	xport_set_timeout(x, 30);
	if (!l->ctx)
		return x;
	x->ssl = SSL_new(l->ctx);
	if (!x->ssl || SSL_set_fd(x->ssl, fd) != 1) {
		char reason[200];

		tls_reason(reason, sizeof(reason), NULL);
		pr_err("page server: TLS for %s: %s", x->peer, reason);
		xport_close(x);
		return NULL;
	}
	rc = SSL_accept(x->ssl);
	if (rc != 1) {
		tls_err(x, rc, errno);
		pr_err("page server: refused %s: TLS handshake failed: %s", x->peer, bare(x->err));
		linger_close(x);
		return NULL;
	}
	return x;
}

/* SSL_write with SIGPIPE held off: a peer gone away must be an error, not our death. */
static int tls_write(struct xport *x, const void *buf, int len)
{
	sigset_t pipe_set, old, pending;
	bool was_pending;
	int n, err;

	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	sigpending(&pending);
	was_pending = sigismember(&pending, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
	n = SSL_write(x->ssl, buf, len);
	err = errno;
	if (n <= 0) {
		struct timespec zero = {0};

		sigpending(&pending);
		if (!was_pending && sigismember(&pending, SIGPIPE))
			sigtimedwait(&pipe_set, NULL, &zero);
		tls_err(x, n, err);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return n;
}

int xport_send(struct xport *x, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n;

		if (x->ssl) {
			n = tls_write(x, p, (int)min_t(size_t, len, INT_MAX));
			if (n <= 0)
				return -1;
		} else {
			n = send(x->fd, p, len, MSG_NOSIGNAL);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				sock_err(x, n);
				return -1;
			}
		}
		p += n;
		len -= n;
	}
	return 0;
}

void xport_set_stop(struct xport *x, volatile sig_atomic_t *stop)
{
	x->stop = stop;
}

/* A signal interrupted a call: go on, unless it asked us to stop. */
static bool interrupted(struct xport *x)
{
	if (errno != EINTR)
		return false;
	if (x->stop && *x->stop) {
		set_err(x, "interrupted");
		return false;
	}
	return true;
}

int xport_sendv(struct xport *x, struct iovec *iov, int n)
{
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = n};

	if (x->ssl) {
		for (int i = 0; i < n; i++)
			if (iov[i].iov_len && xport_send(x, iov[i].iov_base, iov[i].iov_len))
				return -1;
		return 0;
	}
	/* one call for a frame's header and payload: no lone header segment on the wire */
	while (mh.msg_iovlen) {
		ssize_t sent = sendmsg(x->fd, &mh, MSG_NOSIGNAL);

		if (sent < 0 && errno == EINTR)
			continue;
		if (sent <= 0) {
			sock_err(x, sent);
			return -1;
		}
		while (mh.msg_iovlen && (size_t)sent >= mh.msg_iov->iov_len) {
			sent -= mh.msg_iov->iov_len;
			mh.msg_iov++;
			mh.msg_iovlen--;
		}
		if (mh.msg_iovlen) {
			mh.msg_iov->iov_base = (char *)mh.msg_iov->iov_base + sent;
			mh.msg_iov->iov_len -= sent;
		}
	}
	return 0;
}

ssize_t xport_recv_some(struct xport *x, void *buf, size_t len)
{
	for (;;) {
		ssize_t n;

		if (x->ssl) {
			n = SSL_read(x->ssl, buf, (int)min_t(size_t, len, INT_MAX));
			if (n > 0)
				return n;
			if (SSL_get_error(x->ssl, n) == SSL_ERROR_ZERO_RETURN)
				return 0;
			if (SSL_get_error(x->ssl, n) == SSL_ERROR_WANT_READ && interrupted(x)) {
				ERR_clear_error();
				continue;
			}
			if (x->stop && *x->stop)
				set_err(x, "interrupted");
			else
				tls_err(x, n, errno);
			return -1;
		}
		n = recv(x->fd, buf, len, 0);
		if (n < 0 && interrupted(x))
			continue;
		if (n < 0 && !(x->stop && *x->stop))
			sock_err(x, n);
		return n;
	}
}

int xport_recv(struct xport *x, void *buf, size_t len)
{
	char *p = buf;
	size_t done = 0;

	while (done < len) {
		ssize_t n = xport_recv_some(x, p + done, len - done);

		if (n < 0)
			return -1;
		if (n == 0) {
			if (!done)
				return 0;
			set_err(x, "the peer closed the connection mid-message");
			return -1;
		}
		done += n;
	}
	return 1;
}

bool xport_readable(struct xport *x, int timeout_ms)
{
	struct pollfd p = {.fd = x->fd, .events = POLLIN};

	if (x->ssl && SSL_pending(x->ssl) > 0)
		return true;
	return poll(&p, 1, timeout_ms) > 0;
}

const char *xport_error(const struct xport *x)
{
	return x->err[0] ? x->err : "unknown error";
}

const char *xport_peer(const struct xport *x)
{
	return x->peer;
}
