// SPDX-License-Identifier: MIT
/*
 * Network namespaces.  A tree whose root lives in a network namespace other than crest's has
 * that namespace dumped with it (netns.img): its devices (loopback, veth pairs with both ends
 * inside, and veths whose other end is outside, in crest's namespace), their MTU, flags and
 * MAC, the IPv4/IPv6 addresses, the routes nobody gets for free, every writable sysctl under
 * /proc/sys/net and the nftables ruleset.  Everything is read and written over rtnetlink with
 * libnl-3, from inside the namespace (setns for the time it takes).
 *
 * Restore: crest itself moves into a new network namespace before it makes any socket or task,
 * so the sockets it restores and the root it clones are in it; it builds the namespace there,
 * makes a veth's outside end in its own namespace again (named as it was, or as
 * --external veth[INSIDE]:OUTSIDE says), and goes back to its own namespace at the end.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>
#include <nftables/libnftables.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"
#include "internal.h"
#include "log.h"
#include "net-lock.h"
#include "netns.pb-c.h"

#define SYSCTL_ROOT "/proc/sys/net"

static struct nl_sock *route_sock(void)
{
	struct nl_sock *sk = nl_socket_alloc();
	int err;

	if (!sk) {
		pr_err("cannot allocate a netlink socket");
		return NULL;
	}
	err = nl_connect(sk, NETLINK_ROUTE);
	if (err) {
		pr_err("cannot open rtnetlink: %s", nl_geterror(err));
		nl_socket_free(sk);
		return NULL;
	}
	return sk;
}

static int set_bytes(ProtobufCBinaryData *b, struct nl_addr *a)
{
	size_t len = a ? nl_addr_get_len(a) : 0;

	if (!len)
		return 0;
	b->data = malloc(len);
	if (!b->data)
		return -1;
	memcpy(b->data, nl_addr_get_binary_addr(a), len);
	b->len = len;
	return 0;
}

static NetAddrEntry *addr_entry(struct rtnl_addr *a)
{
	NetAddrEntry *e = calloc(1, sizeof(*e));
	struct nl_addr *local = rtnl_addr_get_local(a), *peer = rtnl_addr_get_peer(a);

	if (!e)
		return NULL;
	net_addr_entry__init(e);
	e->ifindex = rtnl_addr_get_ifindex(a);
	e->family = rtnl_addr_get_family(a);
	e->prefixlen = rtnl_addr_get_prefixlen(a);
	e->scope = rtnl_addr_get_scope(a);
	e->flags = rtnl_addr_get_flags(a);
	e->has_scope = e->has_flags = true;
	if (set_bytes(&e->local, local) ||
	    (peer && nl_addr_cmp(peer, local) && set_bytes(&e->peer, peer)) ||
	    set_bytes(&e->broadcast, rtnl_addr_get_broadcast(a)))
		return NULL;
	e->has_peer = e->peer.len > 0;
	e->has_broadcast = e->broadcast.len > 0;
	if (rtnl_addr_get_label(a) && !(e->label = strdup(rtnl_addr_get_label(a))))
		return NULL;
	return e;
}

/* The addresses of link ifindex (0: all) into *out. */
static int dump_addrs(struct nl_sock *sk, int ifindex, NetAddrEntry ***out, size_t *n)
{
	struct nl_cache *cache;
	int err = rtnl_addr_alloc_cache(sk, &cache);

	if (err) {
		pr_err("cannot list addresses: %s", nl_geterror(err));
		return -1;
	}
	for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
		struct rtnl_addr *a = (struct rtnl_addr *)o;
		NetAddrEntry **grown;

		if (ifindex && rtnl_addr_get_ifindex(a) != ifindex)
			continue;
		grown = realloc(*out, (*n + 1) * sizeof(**out));
		if (!grown || !(grown[*n] = addr_entry(a))) {
			*out = grown ? grown : *out;
			nl_cache_free(cache);
			return -1;
		}
		*out = grown;
		(*n)++;
	}
	nl_cache_free(cache);
	return 0;
}

struct netns_dump {
	NetnsEntry *ns;
	struct nl_sock *host; /* opened in crest's namespace: the outside ends of veths */
};

/* A veth's other end, outside: it must be in crest's namespace, pointing back at ours. */
static int dump_outside_peer(struct netns_dump *nd, struct rtnl_link *l, NetLinkEntry *e)
{
	struct rtnl_link *peer = NULL;
	int err = rtnl_link_get_kernel(nd->host, rtnl_link_get_link(l), NULL, &peer);

	if (err || !rtnl_link_is_veth(peer) || rtnl_link_get_link(peer) != (int)e->ifindex) {
		pr_err("veth %s: its other end is in a network namespace other than crest's: "
		       "not supported",
		       e->name);
		if (peer)
			rtnl_link_put(peer);
		return -1;
	}
	e->peer_name = strdup(rtnl_link_get_name(peer));
	if (rtnl_link_get_master(peer) > 0) {
		struct rtnl_link *br = NULL;

		if (!rtnl_link_get_kernel(nd->host, rtnl_link_get_master(peer), NULL, &br)) {
			e->peer_master = strdup(rtnl_link_get_name(br));
			rtnl_link_put(br);
		}
	}
	e->peer_mtu = rtnl_link_get_mtu(peer);
	e->peer_flags = rtnl_link_get_flags(peer);
	e->has_peer_mtu = e->has_peer_flags = true;
	err = !e->peer_name || set_bytes(&e->peer_address, rtnl_link_get_addr(peer));
	e->has_peer_address = e->peer_address.len > 0;
	if (!err)
		err = dump_addrs(nd->host, rtnl_link_get_ifindex(peer), &e->peer_addrs,
				 &e->n_peer_addrs);
	rtnl_link_put(peer);
	return err ? -1 : 0;
}

static NetLinkEntry *link_entry(struct netns_dump *nd, struct rtnl_link *l)
{
	NetLinkEntry *e = calloc(1, sizeof(*e));
	const char *type = rtnl_link_get_type(l);
	int32_t nsid;

	if (!e)
		return NULL;
	net_link_entry__init(e);
	e->ifindex = rtnl_link_get_ifindex(l);
	e->name = strdup(rtnl_link_get_name(l));
	e->mtu = rtnl_link_get_mtu(l);
	e->flags = rtnl_link_get_flags(l);
	e->has_mtu = e->has_flags = true;
	if (!e->name || set_bytes(&e->address, rtnl_link_get_addr(l)))
		return NULL;
	e->has_address = e->address.len > 0;
	if (e->flags & IFF_LOOPBACK) {
		e->kind = strdup("loopback");
	} else if (type && !strcmp(type, "veth")) {
		e->kind = strdup("veth");
		if (!rtnl_link_get_link_netnsid(l, &nsid)) {
			if (dump_outside_peer(nd, l, e))
				return NULL;
		} else {
			e->peer_ifindex = rtnl_link_get_link(l);
			e->has_peer_ifindex = true;
		}
	} else {
		pr_err("network device %s (%s): not supported", e->name, type ? type : "no kind");
		return NULL;
	}
	return e->kind ? e : NULL;
}

static int dump_links(struct netns_dump *nd, struct nl_sock *sk)
{
	NetnsEntry *ns = nd->ns;
	struct nl_cache *cache;
	int err = rtnl_link_alloc_cache(sk, AF_UNSPEC, &cache);

	if (err) {
		pr_err("cannot list network devices: %s", nl_geterror(err));
		return -1;
	}
	for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
		NetLinkEntry **grown = realloc(ns->links, (ns->n_links + 1) * sizeof(*grown));

		if (grown)
			ns->links = grown;
		if (!grown || !(grown[ns->n_links] = link_entry(nd, (struct rtnl_link *)o))) {
			err = -1;
			break;
		}
		ns->n_links++;
	}
	nl_cache_free(cache);
	return err ? -1 : 0;
}

static int dump_routes(NetnsEntry *ns, struct nl_sock *sk)
{
	struct nl_cache *cache;
	int err = rtnl_route_alloc_cache(sk, AF_UNSPEC, 0, &cache);

	if (err) {
		pr_err("cannot list routes: %s", nl_geterror(err));
		return -1;
	}
	for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
		struct rtnl_route *r = (struct rtnl_route *)o;
		struct rtnl_nexthop *nh = rtnl_route_nexthop_n(r, 0);
		struct nl_addr *dst = rtnl_route_get_dst(r);
		NetRouteEntry *e, **grown;

		/* what the kernel makes by itself from addresses and links */
		if (rtnl_route_get_table(r) == RT_TABLE_LOCAL ||
		    rtnl_route_get_protocol(r) == RTPROT_KERNEL)
			continue;
		grown = realloc(ns->routes, (ns->n_routes + 1) * sizeof(*grown));
		e = grown ? calloc(1, sizeof(*e)) : NULL;
		if (grown)
			ns->routes = grown;
		if (!e) {
			err = -1;
			break;
		}
		net_route_entry__init(e);
		ns->routes[ns->n_routes++] = e;
		e->family = rtnl_route_get_family(r);
		e->table = rtnl_route_get_table(r);
		e->dst_len = dst ? nl_addr_get_prefixlen(dst) : 0;
		e->protocol = rtnl_route_get_protocol(r);
		e->scope = rtnl_route_get_scope(r);
		e->type = rtnl_route_get_type(r);
		e->priority = rtnl_route_get_priority(r);
		e->has_protocol = e->has_scope = e->has_type = e->has_priority = true;
		if ((e->dst_len && set_bytes(&e->dst, dst)) ||
		    set_bytes(&e->prefsrc, rtnl_route_get_pref_src(r)) ||
		    (nh && set_bytes(&e->gateway, rtnl_route_nh_get_gateway(nh)))) {
			err = -1;
			break;
		}
		e->has_dst = e->dst.len > 0;
		e->has_prefsrc = e->prefsrc.len > 0;
		e->has_gateway = e->gateway.len > 0;
		if (nh) {
			e->oif = rtnl_route_nh_get_ifindex(nh);
			e->has_oif = true;
		}
	}
	nl_cache_free(cache);
	return err ? -1 : 0;
}

static int add_sysctl(NetnsEntry *ns, const char *path, const char *value)
{
	NetSysctlEntry *e, **grown = realloc(ns->sysctls, (ns->n_sysctls + 1) * sizeof(*grown));

	if (!grown)
		return -1;
	ns->sysctls = grown;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -1;
	net_sysctl_entry__init(e);
	e->path = strdup(path);
	e->value = strdup(value);
	ns->sysctls[ns->n_sysctls++] = e;
	return e->path && e->value ? 0 : -1;
}

/* Every writable, readable sysctl under dir (relative to /proc/sys/net). */
static int dump_sysctls(NetnsEntry *ns, const char *rel)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *dir;
	int ret = 0;

	snprintf(path, sizeof(path), SYSCTL_ROOT "/%s", rel);
	dir = opendir(path);
	if (!dir)
		return 0;
	while (!ret && (de = readdir(dir))) {
		char sub[PATH_MAX - 32], *value;
		struct stat st;

		if (de->d_name[0] == '.')
			continue;
		snprintf(sub, sizeof(sub), "%s%s%s", rel, *rel ? "/" : "", de->d_name);
		snprintf(path, sizeof(path), SYSCTL_ROOT "/%s", sub);
		if (stat(path, &st))
			continue;
		if (S_ISDIR(st.st_mode)) {
			ret = dump_sysctls(ns, sub);
			continue;
		}
		if (!(st.st_mode & S_IWUSR) || !(st.st_mode & S_IRUSR))
			continue;
		value = read_file_at(AT_FDCWD, path, NULL);
		if (value) /* some refuse reading (stable_secret unset, flush): skip */
			ret = add_sysctl(ns, sub, value);
		free(value);
	}
	closedir(dir);
	return ret;
}

/* `nft list ruleset`, without crest's own lock tables. */
static int dump_nft(NetnsEntry *ns)
{
	struct nft_ctx *nft = nft_ctx_new(NFT_CTX_DEFAULT);
	const char *out, *line;
	char *kept;
	size_t len = 0;
	bool skip = false;

	if (!nft)
		return -1;
	nft_ctx_buffer_output(nft);
	nft_ctx_buffer_error(nft);
	if (nft_run_cmd_from_buffer(nft, "list ruleset")) {
		pr_err("cannot list the nftables ruleset: %s", nft_ctx_get_error_buffer(nft));
		nft_ctx_free(nft);
		return -1;
	}
	out = nft_ctx_get_output_buffer(nft);
	kept = malloc(strlen(out) + 1);
	for (line = out; kept && *line;) {
		size_t n = strcspn(line, "\n") + (line[strcspn(line, "\n")] == '\n');

		if (!strncmp(line, "table inet crest_", 17))
			skip = true;
		if (!skip) {
			memcpy(kept + len, line, n);
			len += n;
		}
		if (skip && line[0] == '}')
			skip = false;
		line += n;
	}
	if (kept) {
		kept[len] = '\0';
		if (kept[strspn(kept, " \n\t")])
			ns->nft_ruleset = kept;
		else
			free(kept);
	}
	nft_ctx_free(nft);
	return kept ? 0 : -1;
}

static int dump_inside(void *arg)
{
	struct netns_dump *nd = arg;
	struct nl_sock *sk = route_sock();
	int ret = -1;

	if (!sk)
		return -1;
	if (!dump_links(nd, sk) && !dump_addrs(sk, 0, &nd->ns->addrs, &nd->ns->n_addrs) &&
	    !dump_routes(nd->ns, sk) && !dump_sysctls(nd->ns, "") && !dump_nft(nd->ns))
		ret = 0;
	nl_socket_free(sk);
	return ret;
}

static int netns_ino(pid_t pid, ino_t *ino)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d/ns/net", pid);
	if (stat(path, &st)) {
		pr_perror("cannot find the network namespace of %d", pid);
		return -1;
	}
	*ino = st.st_ino;
	return 0;
}

/*
 * Before the freeze: the root's own network namespace, read while the tree runs.  Reading
 * it (every sysctl above all) took 19 ms of a 28 ms freeze when it was done frozen; a change
 * the tree makes to its namespace in the moment between is not seen.
 */
int netns_dump_prepare(struct dump_tree *t)
{
	pid_t root = t->opts->pid;
	struct netns_dump nd = {0};
	struct proc_stat st;
	ino_t mine, theirs, parent;
	char path[64];
	int ret = -1;

	/* no such process: seizing it says so, as for any dump */
	snprintf(path, sizeof(path), "/proc/%d/ns/net", root);
	if (access(path, F_OK))
		return 0;
	if (netns_ino(getpid(), &mine) || netns_ino(root, &theirs))
		return -1;
	/*
	 * Not crest's own (the host's, not the tree's to take), nor one the root merely lives
	 * in, as its parent does (crest run in another namespace than the tree's, say): a
	 * namespace is the tree's when its root was put in it, or when the root is a
	 * container's init (`unshare -n -p -f` makes the namespace before the init).
	 */
	if (mine == theirs ||
	    (!proc_parse_stat(root, &st) && st.ppid > 0 && !netns_ino(st.ppid, &parent) &&
	     parent == theirs && !ns_is_pid_init(root)))
		return 0;
	nd.ns = calloc(1, sizeof(*nd.ns));
	nd.host = route_sock();
	if (nd.ns && nd.host) {
		netns_entry__init(nd.ns);
		ret = run_in_netns_of(root, dump_inside, &nd);
	}
	if (nd.host)
		nl_socket_free(nd.host);
	if (ret) {
		if (nd.ns)
			netns_entry__free_unpacked(nd.ns, NULL);
		return -1;
	}
	t->netns = nd.ns;
	t->netns_ino = theirs;
	return 0;
}

/* Frozen: every task must be in the root's namespace; the one read before goes to netns.img. */
int netns_dump(struct dump_tree *t)
{
	struct dump_ctx *root = *vec_at(&t->tasks, struct dump_ctx *, 0);
	NetnsEntry *ns = t->netns;
	ino_t theirs, other;
	int ret;

	if (netns_ino(root->pid, &theirs))
		return -1;
	if (ns && theirs != t->netns_ino) {
		pr_err("process %d changed its network namespace while being dumped", root->pid);
		return -1;
	}
	for (size_t i = 1; i < t->tasks.len; i++) {
		struct dump_ctx *d = *vec_at(&t->tasks, struct dump_ctx *, i);

		if (d->zombie)
			continue;
		if (netns_ino(d->pid, &other))
			return -1;
		if (other != theirs) {
			pr_err("process %d is in another network namespace than the root %d: "
			       "not supported",
			       d->pid, root->pid);
			return -1;
		}
	}
	if (!ns)
		return 0;
	ret = img_write_one(t->dirfd, IMG_NETNS, 0, &ns->base);
	if (!ret)
		pr_info("network namespace: %zu devices, %zu addresses, %zu routes, %zu sysctls",
			ns->n_links, ns->n_addrs, ns->n_routes, ns->n_sysctls);
	return ret;
}

/* ---- restore ---- */

struct netns_restore {
	const NetnsEntry *ns;
	const struct crest_opts *opts;
	struct nl_sock *sk;   /* in the new namespace */
	struct nl_sock *host; /* in crest's */
	int host_ns;	      /* fd of crest's namespace */
	int *ifmap;	      /* per links[i]: its ifindex now */
	struct vec *outside;  /* char[IFNAMSIZ]: veth ends made in crest's namespace */
};

static struct nl_addr *bin_addr(int family, const ProtobufCBinaryData *b, int prefixlen)
{
	struct nl_addr *a = nl_addr_build(family, b->data, b->len);

	if (a && prefixlen >= 0)
		nl_addr_set_prefixlen(a, prefixlen);
	return a;
}

/* Set an address attribute of a libnl object from image bytes (the setter takes a ref). */
#define SET_NL_ADDR(obj, setter, family, bytes, prefixlen)               \
	do {                                                             \
		struct nl_addr *a_ = bin_addr(family, bytes, prefixlen); \
		if (a_) {                                                \
			setter(obj, a_);                                 \
			nl_addr_put(a_);                                 \
		}                                                        \
	} while (0)

static int new_ifindex(const struct netns_restore *nr, uint32_t old)
{
	for (size_t i = 0; i < nr->ns->n_links; i++)
		if (nr->ns->links[i]->ifindex == old)
			return nr->ifmap[i];
	return 0;
}

/*
 * The name the outside end of a veth gets, and the bridge it joins: --external
 * veth[INSIDE]:OUTSIDE[@BRIDGE], or as it was (its bridge of the same name, if it had one).
 */
static const char *outside_name(const struct netns_restore *nr, const NetLinkEntry *e,
				const char **bridge)
{
	static char name[IFNAMSIZ], br[IFNAMSIZ];
	char prefix[IFNAMSIZ + 8];
	size_t plen;

	snprintf(prefix, sizeof(prefix), "veth[%s]:", e->name);
	plen = strlen(prefix);
	*bridge = e->peer_master;
	for (const char *const *x = nr->opts->externals; x && *x; x++) {
		if (!strncmp(*x, prefix, plen)) {
			const char *at = strchr(*x + plen, '@');

			snprintf(name, sizeof(name), "%.*s", (int)strcspn(*x + plen, "@"),
				 *x + plen);
			if (at) {
				snprintf(br, sizeof(br), "%s", at + 1);
				*bridge = br;
			}
			return name;
		}
	}
	return e->peer_name;
}

static void set_link_attrs(struct rtnl_link *l, uint32_t mtu, const ProtobufCBinaryData *mac)
{
	if (mtu)
		rtnl_link_set_mtu(l, mtu);
	if (mac && mac->len) {
		struct nl_addr *a = nl_addr_build(AF_LLC, mac->data, mac->len);

		if (a) {
			rtnl_link_set_addr(l, a);
			nl_addr_put(a);
		}
	}
}

static int add_addr(struct nl_sock *sk, const NetAddrEntry *a, int ifindex)
{
	struct rtnl_addr *ra = rtnl_addr_alloc();
	struct nl_addr *local = bin_addr(a->family, &a->local, a->prefixlen);
	int err = -NLE_NOMEM;

	if (ra && local) {
		rtnl_addr_set_ifindex(ra, ifindex);
		rtnl_addr_set_family(ra, a->family);
		rtnl_addr_set_local(ra, local);
		rtnl_addr_set_prefixlen(ra, a->prefixlen);
		rtnl_addr_set_scope(ra, a->scope);
		/* usable at once: the address was in use already, no duplicate detection */
		rtnl_addr_set_flags(ra, (a->flags & ~IFA_F_TENTATIVE) |
						(a->family == AF_INET6 ? IFA_F_NODAD : 0));
		if (a->has_peer)
			SET_NL_ADDR(ra, rtnl_addr_set_peer, a->family, &a->peer, a->prefixlen);
		if (a->has_broadcast)
			SET_NL_ADDR(ra, rtnl_addr_set_broadcast, a->family, &a->broadcast, -1);
		if (a->label)
			rtnl_addr_set_label(ra, a->label);
		err = rtnl_addr_add(sk, ra, 0);
	}
	if (local)
		nl_addr_put(local);
	if (ra)
		rtnl_addr_put(ra);
	if (err && err != -NLE_EXIST) {
		char buf[64];

		pr_err("cannot add address %s: %s",
		       local ? nl_addr2str(local, buf, sizeof(buf)) : "?", nl_geterror(err));
		return -1;
	}
	return 0;
}

/* Bring link name up (or leave it down) with sk, as flags say. */
static int set_up(struct nl_sock *sk, const char *name, uint32_t flags)
{
	struct rtnl_link *cur = NULL, *change;
	int err;

	if (!(flags & IFF_UP))
		return 0;
	err = rtnl_link_get_kernel(sk, 0, name, &cur);
	change = rtnl_link_alloc();
	if (!err && change) {
		rtnl_link_set_flags(change, IFF_UP);
		err = rtnl_link_change(sk, cur, change, 0);
	}
	if (change)
		rtnl_link_put(change);
	if (cur)
		rtnl_link_put(cur);
	if (err) {
		pr_err("cannot bring %s up: %s", name, nl_geterror(err));
		return -1;
	}
	return 0;
}

static int link_index(struct nl_sock *sk, const char *name)
{
	struct rtnl_link *l = NULL;
	int idx = rtnl_link_get_kernel(sk, 0, name, &l) ? 0 : rtnl_link_get_ifindex(l);

	if (l)
		rtnl_link_put(l);
	return idx;
}

/* Make link name (crest's namespace) a port of bridge. */
static int join_bridge(struct nl_sock *sk, const char *name, const char *bridge)
{
	struct rtnl_link *cur = NULL, *change = rtnl_link_alloc();
	int br = link_index(sk, bridge), err = -NLE_NOMEM;

	if (!br) {
		pr_err("the bridge %s for %s does not exist here", bridge, name);
		if (change)
			rtnl_link_put(change);
		return -1;
	}
	if (change && !(err = rtnl_link_get_kernel(sk, 0, name, &cur))) {
		rtnl_link_set_master(change, br);
		err = rtnl_link_change(sk, cur, change, 0);
	}
	if (change)
		rtnl_link_put(change);
	if (cur)
		rtnl_link_put(cur);
	if (err) {
		pr_err("cannot make %s a port of %s: %s", name, bridge, nl_geterror(err));
		return -1;
	}
	return 0;
}

/* A veth pair: both ends inside (peer_in) or the outside one in crest's namespace. */
static int make_veth(struct netns_restore *nr, const NetLinkEntry *e, const NetLinkEntry *peer_in)
{
	struct rtnl_link *l = rtnl_link_veth_alloc(), *peer;
	const char *bridge = NULL;
	const char *outside = peer_in ? peer_in->name : outside_name(nr, e, &bridge);
	int err;

	if (!l || !outside) {
		pr_err("veth %s: no name for its other end", e->name);
		if (l)
			rtnl_link_veth_release(l);
		return -1;
	}
	/*
	 * The dumped tree's namespace, and the outside end of its veth with it, goes away
	 * asynchronously after the dump killed the tree: give the kernel a moment.
	 */
	for (int ms = 0; !peer_in && link_index(nr->host, outside); ms += 10) {
		if (ms >= 5000) {
			pr_err("veth %s: its other end %s already exists outside (--external "
			       "veth[%s]:NAME names it otherwise)",
			       e->name, outside, e->name);
			rtnl_link_veth_release(l);
			return -1;
		}
		usleep(10000);
	}
	peer = rtnl_link_veth_get_peer(l);
	rtnl_link_set_name(l, e->name);
	rtnl_link_set_ifindex(l, e->ifindex);
	set_link_attrs(l, e->mtu, &e->address);
	rtnl_link_set_name(peer, outside);
	if (peer_in) {
		rtnl_link_set_ifindex(peer, peer_in->ifindex);
		set_link_attrs(peer, peer_in->mtu, &peer_in->address);
	} else {
		set_link_attrs(peer, e->peer_mtu, &e->peer_address);
		rtnl_link_set_ns_fd(peer, nr->host_ns);
	}
	err = rtnl_link_add(nr->sk, l, NLM_F_CREATE | NLM_F_EXCL);
	rtnl_link_veth_release(l);
	if (err) {
		pr_err("cannot make veth %s (other end %s): %s", e->name, outside,
		       nl_geterror(err));
		return -1;
	}
	if (peer_in)
		return 0;
	/* the outside end as it was: up, with its addresses */
	int idx = link_index(nr->host, outside);

	char *name = vec_push(nr->outside);

	if (name)
		snprintf(name, IFNAMSIZ, "%s", outside);
	if (!idx || (bridge && join_bridge(nr->host, outside, bridge)) ||
	    set_up(nr->host, outside, e->peer_flags))
		return -1;
	for (size_t i = 0; i < e->n_peer_addrs; i++)
		if (add_addr(nr->host, e->peer_addrs[i], idx))
			return -1;
	return 0;
}

static int restore_links(struct netns_restore *nr)
{
	const NetnsEntry *ns = nr->ns;

	for (size_t i = 0; i < ns->n_links; i++) {
		const NetLinkEntry *e = ns->links[i], *peer_in = NULL;

		if (nr->ifmap[i])
			continue; /* the other end of a pair made before */
		if (!strcmp(e->kind, "loopback")) {
			nr->ifmap[i] = link_index(nr->sk, e->name);
			continue;
		}
		if (strcmp(e->kind, "veth")) {
			pr_err("netns.img: device %s of kind %s: not supported", e->name, e->kind);
			return -1;
		}
		if (e->has_peer_ifindex)
			for (size_t j = 0; j < ns->n_links; j++)
				if (ns->links[j]->ifindex == e->peer_ifindex)
					peer_in = ns->links[j];
		if (e->has_peer_ifindex && !peer_in) {
			pr_err("netns.img: veth %s: its other end is missing", e->name);
			return -1;
		}
		if (make_veth(nr, e, peer_in))
			return -1;
		nr->ifmap[i] = link_index(nr->sk, e->name);
		for (size_t j = 0; peer_in && j < ns->n_links; j++)
			if (ns->links[j] == peer_in)
				nr->ifmap[j] = link_index(nr->sk, peer_in->name);
	}
	for (size_t i = 0; i < ns->n_links; i++) {
		if (!nr->ifmap[i]) {
			pr_err("network device %s was not made", ns->links[i]->name);
			return -1;
		}
		if (set_up(nr->sk, ns->links[i]->name, ns->links[i]->flags))
			return -1;
	}
	return 0;
}

static int restore_routes(struct netns_restore *nr)
{
	for (size_t i = 0; i < nr->ns->n_routes; i++) {
		const NetRouteEntry *e = nr->ns->routes[i];
		struct rtnl_route *r = rtnl_route_alloc();
		struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
		struct nl_addr *dst = e->has_dst ? bin_addr(e->family, &e->dst, e->dst_len)
						 : nl_addr_build(e->family, NULL, 0);
		int err = -NLE_NOMEM;

		if (r && nh && dst) {
			rtnl_route_set_family(r, e->family);
			rtnl_route_set_table(r, e->table);
			rtnl_route_set_dst(r, dst);
			rtnl_route_set_protocol(r, e->protocol);
			rtnl_route_set_scope(r, e->scope);
			rtnl_route_set_type(r, e->type);
			rtnl_route_set_priority(r, e->priority);
			if (e->has_prefsrc)
				SET_NL_ADDR(r, rtnl_route_set_pref_src, e->family, &e->prefsrc, -1);
			if (e->has_oif)
				rtnl_route_nh_set_ifindex(nh, new_ifindex(nr, e->oif));
			if (e->has_gateway)
				SET_NL_ADDR(nh, rtnl_route_nh_set_gateway, e->family, &e->gateway,
					    -1);
			rtnl_route_add_nexthop(r, nh);
			nh = NULL; /* the route owns it */
			err = rtnl_route_add(nr->sk, r, NLM_F_CREATE);
		}
		if (nh)
			rtnl_route_nh_free(nh);
		if (r)
			rtnl_route_put(r);
		if (dst)
			nl_addr_put(dst);
		if (err && err != -NLE_EXIST) {
			pr_err("cannot add a route: %s", nl_geterror(err));
			return -1;
		}
	}
	return 0;
}

/* Sysctls that differ from a new namespace's; those the kernel refuses only warn. */
static void restore_sysctls(const NetnsEntry *ns)
{
	for (size_t i = 0; i < ns->n_sysctls; i++) {
		const NetSysctlEntry *e = ns->sysctls[i];
		char path[PATH_MAX], *now;
		int fd;

		if (strstr(e->path, ".."))
			continue;
		snprintf(path, sizeof(path), SYSCTL_ROOT "/%s", e->path);
		now = read_file_at(AT_FDCWD, path, NULL);
		if (now && !strcmp(now, e->value)) {
			free(now);
			continue;
		}
		free(now);
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0 || write(fd, e->value, strlen(e->value)) < 0)
			pr_warn("net.%s: cannot set it to %.*s", e->path,
				(int)strcspn(e->value, "\n"), e->value);
		if (fd >= 0)
			close(fd);
	}
}

static int restore_nft(const NetnsEntry *ns)
{
	struct nft_ctx *nft;
	int ret;

	if (!ns->nft_ruleset)
		return 0;
	nft = nft_ctx_new(NFT_CTX_DEFAULT);
	if (!nft)
		return -1;
	nft_ctx_buffer_error(nft);
	ret = nft_run_cmd_from_buffer(nft, ns->nft_ruleset);
	if (ret)
		pr_err("cannot restore the nftables ruleset: %.*s",
		       (int)strcspn(nft_ctx_get_error_buffer(nft), "\n"),
		       nft_ctx_get_error_buffer(nft));
	nft_ctx_free(nft);
	return ret ? -1 : 0;
}

int netns_restore_enter(struct restore_tree *t)
{
	struct netns_restore nr = {.opts = t->opts, .host_ns = -1, .outside = &t->veth_outside};
	ProtobufCMessage *msg = NULL;
	int ret = -1;

	if (faccessat(t->dirfd, "netns.img", F_OK, 0))
		return 0;
	if (img_read_one(t->dirfd, IMG_NETNS, 0, &netns_entry__descriptor, &msg))
		return -1;
	nr.ns = (NetnsEntry *)msg;
	nr.ifmap = calloc(nr.ns->n_links + 1, sizeof(int));
	nr.host_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	nr.host = route_sock();
	if (!nr.ifmap || nr.host_ns < 0 || !nr.host)
		goto out;
	if (unshare(CLONE_NEWNET)) {
		pr_perror("cannot make a network namespace");
		goto out;
	}
	/* from here on crest's own namespace is only reachable through this fd */
	t->host_netns = nr.host_ns;
	t->own_netns = true;
	if (t->inv->net_lock && netlock_restore_block(t->inv->root_pid))
		goto out;
	nr.sk = route_sock();
	if (!nr.sk || restore_links(&nr))
		goto out;
	for (size_t i = 0; i < nr.ns->n_addrs; i++) {
		const NetAddrEntry *a = nr.ns->addrs[i];
		int idx = new_ifindex(&nr, a->ifindex);

		if (!idx) {
			pr_err("netns.img: an address on unknown device %u", a->ifindex);
			goto out;
		}
		if (add_addr(nr.sk, a, idx))
			goto out;
	}
	if (restore_routes(&nr))
		goto out;
	restore_sysctls(nr.ns);
	if (restore_nft(nr.ns))
		goto out;
	pr_info("network namespace rebuilt: %zu devices, %zu addresses, %zu routes", nr.ns->n_links,
		nr.ns->n_addrs, nr.ns->n_routes);
	ret = 0;
out:
	if (nr.sk)
		nl_socket_free(nr.sk);
	if (nr.host)
		nl_socket_free(nr.host);
	if (nr.host_ns >= 0 && !t->own_netns)
		close(nr.host_ns);
	free(nr.ifmap);
	if (msg)
		protobuf_c_message_free_unpacked(msg, NULL);
	return ret;
}

/* Back to crest's own namespace; the new one lives on in the restored tasks (or dies). */
/*
 * A failed restore: the veth ends it made in crest's namespace go now, not when the kernel
 * gets round to tearing the tree's namespace down (a retry may need their names at once).
 */
static void delete_outside(struct vec *names)
{
	struct nl_sock *sk = names->len ? route_sock() : NULL;

	for (size_t i = 0; sk && i < names->len; i++) {
		struct rtnl_link *l = rtnl_link_alloc();
		int err;

		if (!l)
			break;
		rtnl_link_set_name(l, vec_at(names, char, i *IFNAMSIZ));
		err = rtnl_link_delete(sk, l);
		if (err && err != -NLE_NODEV && err != -NLE_OBJ_NOTFOUND)
			pr_warn("cannot remove veth %s: %s", vec_at(names, char, i *IFNAMSIZ),
				nl_geterror(err));
		rtnl_link_put(l);
	}
	if (sk)
		nl_socket_free(sk);
}

void netns_restore_leave(struct restore_tree *t, bool ok)
{
	if (t->host_netns < 0)
		return;
	if (setns(t->host_netns, CLONE_NEWNET))
		pr_perror("cannot return to crest's network namespace");
	close(t->host_netns);
	t->host_netns = -1;
	if (!ok)
		delete_outside(&t->veth_outside);
	vec_free(&t->veth_outside);
}
