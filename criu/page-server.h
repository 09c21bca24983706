/* SPDX-License-Identifier: MIT */
/*
 * The client side of the page server, for dump and pre-dump: connect a round, let the image
 * writer stream every image of the images directory to it, commit the round at the end.
 * The server side is crest_page_server() (crest.h).
 */
#ifndef CREST_PAGE_SERVER_H
#define CREST_PAGE_SERVER_H

#include <stdbool.h>

#include "crest.h"

struct img_sink;
struct xport;

/*
 * Wire format: frames of a little-endian header {type, id, len} and len bytes of payload
 * (page-server.c describes a round; migrate.c the requests a migration agent takes).
 */
enum ps_type {
	PS_HELLO = 1,
	PS_OPEN,
	PS_DATA,
	PS_CLOSE,
	PS_COMMIT,
	PS_OK,
	PS_ERR,
	/* page-server --migrate: one request a connection, answered OK [payload] | ERR reason */
	PS_CHECK,   /* can the tree run here: "key=value" lines */
	PS_SYNC,    /* start the rsync daemon for --root: OK "PORT" */
	PS_FS,	    /* DRBD: become primary for the resource named */
	PS_RESTORE, /* restore the round named: OK "PID" */
	PS_ABORT,   /* the migration failed: remove the rounds named, kill what was restored */
};

struct ps_frame {
	uint32_t type;
	uint32_t id;
	uint64_t len;
};

#define PS_MSG_MAX 65536 /* HELLO, OPEN, ERR, requests and replies (a CHECK lists TIDs) */

int ps_send_frame(struct xport *x, uint32_t type, uint32_t id, const void *a, size_t alen,
		  const void *b, size_t blen);
/* The reply to what was sent: 1 OK (payload, if any, in buf), 0 ERR (reason in buf), -1 none. */
int ps_recv_reply(struct xport *x, char *buf, size_t len);
/* Remove a round's directory (its files and parent link). */
int ps_remove_round(int rootfd, const char *name);
/* The agent's helpers (its rsync daemon) go when the page server ends. */
void migrate_agent_fini(void);
/* A migration agent's request; 2 when the migration is over, 0 otherwise. */
int migrate_serve(const struct crest_opts *o, int rootfd, struct xport *x,
		  const struct ps_frame *f);

/*
 * Connect to the page server of opts (--address, --port, TLS settings) and announce a round
 * named after the images directory dirfd, whose parent round is prev_dirfd's (-1: none);
 * final for a dump, which ends the server's work.  From now on every image written into
 * dirfd goes to the server (pages images only there).  NULL on failure, reason logged.
 */
struct img_sink *ps_client_open(const struct crest_opts *opts, int dirfd, int prev_dirfd,
				bool final);
/* Every image is written: wait until the server has the whole round in place. */
int ps_client_commit(struct img_sink *s);
/* Detach and disconnect; an uncommitted round is dropped by the server.  NULL is fine. */
void ps_client_close(struct img_sink *s);

#endif
