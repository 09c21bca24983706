/* SPDX-License-Identifier: MIT */
/*
 * The network lock (net-lock.c): while a dumped tree's TCP connections are neither in the
 * dumped tasks nor restored yet, their packets are dropped so the peers see silence, not RST.
 */
#ifndef CREST_NET_LOCK_H
#define CREST_NET_LOCK_H

#include <stdbool.h>
#include <sys/types.h>

#include "fdinfo.pb-c.h"

struct dump_tree;

enum netlock_kind {
	NETLOCK_NFTABLES = 0, /* default */
	NETLOCK_IPTABLES,
	NETLOCK_SKIP,
};

/* Run fn(arg) in the network namespace of pid (setns there and back; directly if crest's). */
int run_in_netns_of(pid_t pid, int (*fn)(void *), void *arg);

/* Parse a --network-lock name; -1 if unknown. */
int netlock_parse(const char *name);
const char *netlock_name(int kind);

/* Dump: drop the packets of this connection (of task pid's network namespace) from now on. */
int netlock_connection(struct dump_tree *t, pid_t pid, const InetSkEntry *e);

/* Dump: the tree runs on (failure, --leave-running): take the lock away at once. */
void netlock_dump_fini(struct dump_tree *t, bool keep);

/*
 * Restore into a new namespace of the tree's own: drop every packet coming in until the
 * sockets are back (a connection's packet meeting no socket would be answered with RST);
 * netlock_release(NETLOCK_NFTABLES, root_pid) ends it.
 */
int netlock_restore_block(pid_t root_pid);

/* Restore: remove the lock a dump of root_pid left (kind as recorded); 0 if there is none. */
int netlock_release(int kind, pid_t root_pid);

#endif
