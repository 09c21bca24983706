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
