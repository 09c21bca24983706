// SPDX-License-Identifier: MIT
/*
 * The network lock.  From the moment a connection goes into repair mode at dump until its
 * restored socket comes out of it, nothing must answer the peer: a packet reaching no socket
 * makes the kernel reply with RST and the peer drops the connection.  So each dumped
 * connection's 4-tuple is dropped, both ways, in the network namespace of the task owning it:
 *
 *   nftables (default)  a table "inet crest_<root pid>" with an input and an output chain
 *                       hooked before conntrack, one drop rule per direction and connection,
 *                       made through libnftables; the restore deletes the table.
 *   iptables            a chain CREST_<root pid> in iptables' and ip6tables' filter table,
 *                       jumped to from INPUT and OUTPUT (for hosts managed with iptables).
 *   skip                no lock (the caller has its own, or the peer is gone anyway).
 *
 * The lock is named after the dumped root's pid so the restore (another crest process, maybe
 * much later) finds it from the inventory alone.  A dump that fails, or lets the tree run on,
 * removes it at once; a restore that fails leaves it, so the connections survive a retry.
 */
#include <errno.h>
#include <fcntl.h>
#include <nftables/libnftables.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "log.h"
#include "net-lock.h"

static const char *const kind_names[] = {"nftables", "iptables", "skip"};

int netlock_parse(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(kind_names); i++)
		if (!strcmp(name, kind_names[i]))
			return i;
	return -1;
}

const char *netlock_name(int kind)
{
	return kind >= 0 && kind < (int)ARRAY_SIZE(kind_names) ? kind_names[kind] : "?";
}

/* One nft script, run in crest's current network namespace. */
static int nft_run(const char *script)
{
	struct nft_ctx *nft = nft_ctx_new(NFT_CTX_DEFAULT);
	int ret;

	if (!nft) {
		pr_err("network lock: cannot start libnftables");
		return -1;
	}
	nft_ctx_buffer_error(nft);
	ret = nft_run_cmd_from_buffer(nft, script);
	if (ret) {
		const char *err = nft_ctx_get_error_buffer(nft);
		size_t len = strcspn(err, "\n");

		pr_err("network lock: nft: %.*s", (int)len, err);
	}
	nft_ctx_free(nft);
	return ret ? -1 : 0;
}

/* One command (iptables, ip6tables); its output is not ours to show.  quiet: no message. */
static int run_cmd(char *const argv[], bool quiet)
{
	int rc = run_wait(argv, -1);

	if (rc && !quiet) {
		if (rc < 0)
			pr_perror("network lock: cannot run %s", argv[0]);
		else
			pr_err("network lock: %s %s %s failed", argv[0], argv[1], argv[2]);
	}
	return rc ? -1 : 0;
}

/* Run fn in the network namespace of pid (crest's own when it is the same). */
int run_in_netns_of(pid_t pid, int (*fn)(void *), void *arg)
{
	char path[64];
	struct stat mine, theirs;
	int self = -1, ns = -1, ret = -1;

	snprintf(path, sizeof(path), "/proc/%d/ns/net", pid);
	if (stat("/proc/self/ns/net", &mine) || stat(path, &theirs)) {
		pr_perror("network lock: cannot find the network namespace of %d", pid);
		return -1;
	}
	if (mine.st_ino == theirs.st_ino && mine.st_dev == theirs.st_dev)
		return fn(arg);
	self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	ns = open(path, O_RDONLY | O_CLOEXEC);
	if (self < 0 || ns < 0 || setns(ns, CLONE_NEWNET)) {
		pr_perror("network lock: cannot enter the network namespace of %d", pid);
		goto out;
	}
	ret = fn(arg);
	if (setns(self, CLONE_NEWNET)) {
		pr_perror("network lock: cannot return to crest's network namespace");
		ret = -1;
	}
out:
	if (self >= 0)
		close(self);
	if (ns >= 0)
		close(ns);
	return ret;
}

struct lock_req {
	struct dump_tree *t;
	const InetSkEntry *e;
};

/* Address text for rules: v4-mapped IPv6 sockets send plain IPv4 packets. */
static bool addr_text(const ProtobufCBinaryData *a, char *buf, size_t size)
{
	if (a->len == 4)
		return inet_ntop(AF_INET, a->data, buf, size);
	if (a->len == 16 && IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)a->data))
		return inet_ntop(AF_INET, a->data + 12, buf, size);
	return a->len == 16 && inet_ntop(AF_INET6, a->data, buf, size);
}

static int nft_lock(struct dump_tree *t, const InetSkEntry *e, const char *l, const char *p,
		    bool v6)
{
	const char *ip = v6 ? "ip6" : "ip";
	char script[1024];
	int len = 0;

	if (!t->netlock_made)
		len = snprintf(script, sizeof(script),
			       "add table inet crest_%d\n"
			       "flush table inet crest_%d\n"
			       "add chain inet crest_%d input { type filter hook input "
			       "priority -310; policy accept; }\n"
			       "add chain inet crest_%d output { type filter hook output "
			       "priority -310; policy accept; }\n",
			       t->opts->pid, t->opts->pid, t->opts->pid, t->opts->pid);
	snprintf(script + len, sizeof(script) - len,
		 "add rule inet crest_%d input %s saddr %s %s daddr %s tcp sport %u tcp dport %u "
		 "drop\n"
		 "add rule inet crest_%d output %s saddr %s %s daddr %s tcp sport %u tcp dport %u "
		 "drop\n",
		 t->opts->pid, ip, p, ip, l, e->dst_port, e->src_port, t->opts->pid, ip, l, ip, p,
		 e->src_port, e->dst_port);
	return nft_run(script);
}

static int ipt_lock(struct dump_tree *t, const InetSkEntry *e, const char *l, const char *p,
		    bool v6)
{
	char *tool = v6 ? "ip6tables" : "iptables", chain[32], sport[8], dport[8];

	snprintf(chain, sizeof(chain), "CREST_%d", t->opts->pid);
	snprintf(sport, sizeof(sport), "%u", e->src_port);
	snprintf(dport, sizeof(dport), "%u", e->dst_port);
	if (!(v6 ? t->netlock_made6 : t->netlock_made)) {
		char *mk[] = {tool, "-w", "-N", chain, NULL};
		char *in[] = {tool, "-w", "-I", "INPUT", "-j", chain, NULL};
		char *out[] = {tool, "-w", "-I", "OUTPUT", "-j", chain, NULL};
		char *flush[] = {tool, "-w", "-F", chain, NULL};

		if (run_cmd(mk, true) && run_cmd(flush, false))
			return -1;
		if (run_cmd(in, false) || run_cmd(out, false))
			return -1;
		*(v6 ? &t->netlock_made6 : &t->netlock_made) = true;
	}
	char *rule_in[] = {tool,      "-w",	 "-A", chain,	  "-p",	     "tcp",
			   "-s",      (char *)p, "-d", (char *)l, "--sport", dport,
			   "--dport", sport,	 "-j", "DROP",	  NULL};
	char *rule_out[] = {tool,      "-w",	  "-A", chain,	   "-p",      "tcp",
			    "-s",      (char *)l, "-d", (char *)p, "--sport", sport,
			    "--dport", dport,	  "-j", "DROP",	   NULL};

	return run_cmd(rule_in, false) || run_cmd(rule_out, false) ? -1 : 0;
}

static int lock_one(void *arg)
{
	struct lock_req *req = arg;
	const InetSkEntry *e = req->e;
	char l[INET6_ADDRSTRLEN], p[INET6_ADDRSTRLEN];
	bool v6;

	if (!addr_text(&e->src_addr, l, sizeof(l)) || !addr_text(&e->dst_addr, p, sizeof(p))) {
		pr_err("network lock: a connection without addresses");
		return -1;
	}
	v6 = strchr(l, ':') != NULL;
	if (req->t->netlock_kind == NETLOCK_IPTABLES)
		return ipt_lock(req->t, e, l, p, v6);
	if (nft_lock(req->t, e, l, p, v6))
		return -1;
	req->t->netlock_made = true;
	return 0;
}

int netlock_connection(struct dump_tree *t, pid_t pid, const InetSkEntry *e)
{
	struct lock_req req = {t, e};

	if (t->netlock_kind == NETLOCK_SKIP)
		return 0;
	if (!t->netlock_made && !t->netlock_made6)
		t->netlock_pid = pid;
	return run_in_netns_of(pid, lock_one, &req);
}

struct unlock_req {
	int kind;
	pid_t root;
	bool quiet; /* nothing may be there: say nothing */
};

static int unlock_here(void *arg)
{
	struct unlock_req *u = arg;
	char chain[32];
	int ret = 0;

	if (u->kind == NETLOCK_NFTABLES) {
		char script[64];
		struct nft_ctx *nft = nft_ctx_new(NFT_CTX_DEFAULT);
		bool there;

		/* none here (a migrated tree: the lock is on the source) is nothing to do */
		if (!nft)
			return -1;
		nft_ctx_buffer_output(nft);
		nft_ctx_buffer_error(nft);
		snprintf(script, sizeof(script), "list table inet crest_%d\n", u->root);
		there = !nft_run_cmd_from_buffer(nft, script);
		nft_ctx_free(nft);
		if (!there)
			return 0;
		snprintf(script, sizeof(script), "delete table inet crest_%d\n", u->root);
		return nft_run(script);
	}
	snprintf(chain, sizeof(chain), "CREST_%d", u->root);
	for (int v6 = 0; v6 < 2; v6++) {
		char *tool = v6 ? "ip6tables" : "iptables";
		char *list[] = {tool, "-w", "-n", "-L", chain, NULL};
		char *in[] = {tool, "-w", "-D", "INPUT", "-j", chain, NULL};
		char *out[] = {tool, "-w", "-D", "OUTPUT", "-j", chain, NULL};
		char *flush[] = {tool, "-w", "-F", chain, NULL};
		char *del[] = {tool, "-w", "-X", chain, NULL};

		if (run_cmd(list, true))
			continue; /* this family had no connection */
		if (run_cmd(in, false) | run_cmd(out, false) | run_cmd(flush, false) |
		    run_cmd(del, false))
			ret = -1;
	}
	return ret;
}

void netlock_dump_fini(struct dump_tree *t, bool keep)
{
	struct unlock_req u = {t->netlock_kind, t->opts->pid};

	if (keep || (!t->netlock_made && !t->netlock_made6))
		return;
	if (run_in_netns_of(t->netlock_pid, unlock_here, &u))
		pr_warn("network lock: could not remove the lock of %d", t->opts->pid);
	t->netlock_made = t->netlock_made6 = false;
}

int netlock_restore_block(pid_t root_pid)
{
	char script[256];

	snprintf(script, sizeof(script),
		 "add table inet crest_%d\n"
		 "add chain inet crest_%d input { type filter hook input priority -310; "
		 "policy drop; }\n",
		 root_pid, root_pid);
	return nft_run(script);
}

int netlock_release(int kind, pid_t root_pid)
{
	struct unlock_req u = {kind, root_pid};

	if (kind == NETLOCK_SKIP)
		return 0;
	return unlock_here(&u);
}
