// SPDX-License-Identifier: MIT
/*
 * A container's namespaces: pid, uts, ipc and mount (the network one is net.c's).
 *
 * Dump: a namespace of the tree's root that is not crest's own belongs to the tree; every task
 * of the tree must share it (one namespace of each kind per tree), and a pid namespace may only
 * come along with its init, which must be the tree's root.  ns.img records the hostname, the
 * mount tree (mnt.c) and which namespaces exist; ipc.img the IPC objects (ipc.c).
 *
 * Restore: crest unshares each of them itself before anything else is made, so every object
 * it creates (IPC objects, mounts, sockets, files) is born inside them, and every task it
 * forks inherits them.  The pid namespace is unshared for children only: the tree's root,
 * crest's next child, becomes its init, with the dumped pid at both levels (clone3 set_tid).
 * Crest goes back to its own namespaces at the end; the tree keeps the new ones.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "image.h"
#include "internal.h"
#include "log.h"
#include "ns.pb-c.h"

struct ns_kind {
	const char *name; /* in /proc/PID/ns */
	int flag;
};

static const struct ns_kind kinds[] = {
	{"pid", CLONE_NEWPID},	     {"uts", CLONE_NEWUTS},   {"ipc", CLONE_NEWIPC},
	{"mnt", CLONE_NEWNS},	     {"net", CLONE_NEWNET},   {"user", CLONE_NEWUSER},
	{"cgroup", CLONE_NEWCGROUP}, {"time", CLONE_NEWTIME},
};

static int ns_ino(pid_t pid, const char *name, ino_t *ino)
{
	char path[64];
	struct stat st;

	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/ns/%s", pid, name);
	else
		snprintf(path, sizeof(path), "/proc/self/ns/%s", name);
	if (stat(path, &st)) {
		pr_perror("cannot stat %s", path);
		return -1;
	}
	*ino = st.st_ino;
	return 0;
}

/* The last (innermost) value of a NS* line of /proc/PID/task/TID/status, and how many. */
static int status_ns_field(const char *text, const char *key, uint32_t *last)
{
	const char *p = proc_field(text, key);
	int n = 0;

	if (!p)
		return 0;
	while (*p && *p != '\n') {
		char *end;
		unsigned long v = strtoul(p, &end, 10);

		if (end == p)
			break;
		*last = v;
		n++;
		p = end;
	}
	return n;
}

static int ns_ids(pid_t pid, pid_t tid, uint32_t *nspid, uint32_t *nspgid, uint32_t *nssid)
{
	char path[80], *text;
	int levels;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/status", pid, tid);
	text = read_file_at(AT_FDCWD, path, NULL);
	if (!text) {
		pr_perror("cannot read %s", path);
		return -1;
	}
	levels = status_ns_field(text, "NSpid", nspid);
	if (nspgid)
		status_ns_field(text, "NSpgid", nspgid);
	if (nssid)
		status_ns_field(text, "NSsid", nssid);
	free(text);
	return levels;
}

static int dump_uts(NsEntry *ns, pid_t pid)
{
	char path[64];
	int own = open("/proc/self/ns/uts", O_RDONLY | O_CLOEXEC), their;
	struct utsname u;
	int ret = -1;

	snprintf(path, sizeof(path), "/proc/%d/ns/uts", pid);
	their = open(path, O_RDONLY | O_CLOEXEC);
	if (own < 0 || their < 0 || setns(their, CLONE_NEWUTS)) {
		pr_perror("cannot enter the uts namespace of %d", pid);
		goto out;
	}
	if (!uname(&u)) {
		ns->hostname = strdup(u.nodename);
		ns->domainname = strdup(u.domainname);
		ret = ns->hostname && ns->domainname ? 0 : -1;
	}
	if (setns(own, CLONE_NEWUTS)) {
		pr_perror("cannot return to crest's uts namespace");
		ret = -1;
	}
out:
	if (own >= 0)
		close(own);
	if (their >= 0)
		close(their);
	return ret;
}

static bool same_root(pid_t pid)
{
	char path[64];
	struct stat a, b;

	snprintf(path, sizeof(path), "/proc/%d/root", pid);
	return !stat(path, &a) && !stat("/", &b) && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* Which of the root's namespaces are the tree's own; refuse what cannot come along. */
static int tree_namespaces(struct dump_tree *t, pid_t root, NsEntry *ns, bool *own, bool *delta)
{
	for (size_t k = 0; k < ARRAY_SIZE(kinds); k++) {
		ino_t crest_ino, root_ino;

		if (ns_ino(0, kinds[k].name, &crest_ino) || ns_ino(root, kinds[k].name, &root_ino))
			return -1;
		own[k] = crest_ino != root_ino;
		if (own[k] && (kinds[k].flag == CLONE_NEWUSER || kinds[k].flag == CLONE_NEWCGROUP ||
			       kinds[k].flag == CLONE_NEWTIME)) {
			pr_err("task %d is in its own %s namespace: not supported", root,
			       kinds[k].name);
			return -1;
		}
		/* one namespace of each kind for the whole tree */
		for (size_t i = 1; i < t->tasks.len; i++) {
			struct dump_ctx *d = *vec_at(&t->tasks, struct dump_ctx *, i);
			ino_t ino;

			if (d->zombie)
				continue;
			if (ns_ino(d->pid, kinds[k].name, &ino))
				return -1;
			if (ino != root_ino) {
				pr_err("task %d is in another %s namespace than the tree's root "
				       "%d: "
				       "not supported",
				       d->pid, kinds[k].name, root);
				return -1;
			}
		}
	}
	/*
	 * A mount namespace rooted where crest's is (`ip netns exec`, `unshare -m` make such
	 * copies) is no container's: only what it has that crest's has not is saved (a proc of
	 * the tree's pid namespace, its own sysfs, a tmpfs), and made again on a copy of the
	 * restoring crest's namespace.
	 */
	*delta = own[3] && same_root(root);
	ns->has_pid_ns = ns->has_uts_ns = ns->has_ipc_ns = ns->has_mnt_ns = true;
	ns->pid_ns = own[0];
	ns->uts_ns = own[1];
	ns->ipc_ns = own[2];
	ns->mnt_ns = own[3];
	return 0;
}

bool ns_is_pid_init(pid_t pid)
{
	uint32_t nspid = 0, mine = 0;
	int levels = ns_ids(pid, pid, &nspid, NULL, NULL);

	return levels > 0 && nspid == 1 && levels > ns_ids(getpid(), getpid(), &mine, NULL, NULL);
}

/* The root must be the init of its own pid namespace, one level below crest's. */
static int check_pid_ns(struct dump_tree *t, pid_t root)
{
	uint32_t nspid = 0;
	int levels = ns_ids(root, root, &nspid, NULL, NULL), crest_levels;
	uint32_t dummy;

	crest_levels = ns_ids(getpid(), getpid(), &dummy, NULL, NULL);
	if (levels < 0 || crest_levels < 0)
		return -1;
	if (nspid != 1) {
		pr_err("task %d is pid %u inside a pid namespace whose init is not in the dump: "
		       "dump the namespace's init instead",
		       root, nspid);
		return -1;
	}
	if (levels != crest_levels + 1) {
		pr_err("task %d is %d pid namespaces below crest's: only one level is supported",
		       root, levels - crest_levels);
		return -1;
	}
	t->pid_ns = true;
	return 0;
}

int ns_dump(struct dump_tree *t)
{
	struct dump_ctx *root = *vec_at(&t->tasks, struct dump_ctx *, 0);
	NsEntry ns = NS_ENTRY__INIT;
	bool own[ARRAY_SIZE(kinds)], delta = false;
	int ret = -1;

	if (tree_namespaces(t, root->pid, &ns, own, &delta))
		return -1;
	if (ns.pid_ns && check_pid_ns(t, root->pid))
		return -1;
	if (!ns.pid_ns && !ns.uts_ns && !ns.ipc_ns && !ns.mnt_ns)
		return 0;
	if (ns.uts_ns && dump_uts(&ns, root->pid))
		goto out;
	if (ns.ipc_ns && ipc_dump(t->dirfd, root->pid))
		goto out;
	if (ns.mnt_ns && mnt_dump(t, root->pid, &ns, delta))
		goto out;
	ret = img_write_one(t->dirfd, IMG_NS, 0, &ns.base);
	pr_info("namespaces:%s%s%s%s", ns.pid_ns ? " pid" : "", ns.uts_ns ? " uts" : "",
		ns.ipc_ns ? " ipc" : "", ns.mnt_ns ? " mnt" : "");
out:
	free(ns.hostname);
	free(ns.domainname);
	mnt_dump_free(&ns);
	return ret;
}

/* pstree.img fields of a task in the tree's pid namespace. */
int ns_dump_pids(struct dump_tree *t, struct dump_ctx *d, PstreeEntry *ps, uint32_t *ns_tids)
{
	uint32_t nspid = 0, nspgid = 0, nssid = 0;

	if (!t->pid_ns)
		return 0;
	if (ns_ids(d->pid, d->pid, &nspid, &nspgid, &nssid) < 0)
		return -1;
	ps->has_ns_pid = true;
	ps->ns_pid = nspid;
	ps->has_ns_pgid = ps->has_ns_sid = true;
	ps->ns_pgid = nspgid;
	ps->ns_sid = nssid;
	for (size_t j = 0; j < d->threads.len; j++)
		if (ns_ids(d->pid, dump_thread_at(d, j)->tid, &ns_tids[j], NULL, NULL) < 0)
			return -1;
	ps->ns_threads = ns_tids;
	ps->n_ns_threads = d->threads.len;
	return 0;
}

/* ---- restore ------------------------------------------------------------------------------ */

static int own_ns_fd(const char *name)
{
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/proc/self/ns/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		pr_perror("cannot open %s", path);
	return fd;
}

static int restore_uts(const NsEntry *ns)
{
	if (unshare(CLONE_NEWUTS)) {
		pr_perror("cannot make a uts namespace");
		return -1;
	}
	if ((ns->hostname && sethostname(ns->hostname, strlen(ns->hostname))) ||
	    (ns->domainname && setdomainname(ns->domainname, strlen(ns->domainname)))) {
		pr_perror("cannot set the host name %s", ns->hostname);
		return -1;
	}
	return 0;
}

int ns_restore_enter(struct restore_tree *t)
{
	ProtobufCMessage *msg;
	NsEntry *ns;
	int fd = openat(t->dirfd, "ns.img", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return errno == ENOENT ? 0 : (pr_perror("cannot open ns.img"), -1);
	close(fd);
	if (img_read_one(t->dirfd, IMG_NS, 0, &ns_entry__descriptor, &msg))
		return -1;
	t->ns = ns = (NsEntry *)msg;
	if (ns->uts_ns) {
		t->host_ns.uts = own_ns_fd("uts");
		if (t->host_ns.uts < 0 || restore_uts(ns))
			return -1;
	}
	if (ns->ipc_ns) {
		t->host_ns.ipc = own_ns_fd("ipc");
		if (t->host_ns.ipc < 0)
			return -1;
		if (unshare(CLONE_NEWIPC)) {
			pr_perror("cannot make an ipc namespace");
			return -1;
		}
		if (ipc_restore(t->dirfd))
			return -1;
	}
	if (ns->pid_ns) {
		t->host_ns.pid = own_ns_fd("pid");
		if (t->host_ns.pid < 0)
			return -1;
	}
	/* the mounts are made by the tree's root (mnt.c) */
	if (ns->mnt_ns && mnt_restore_prepare(t))
		return -1;
	if (ns->pid_ns && unshare(CLONE_NEWPID)) {
		pr_perror("cannot make a pid namespace");
		return -1;
	}
	return 0;
}

/* The root exists: crest's next children (helpers, lazy servers) are born in its own again. */
int ns_restore_root_made(struct restore_tree *t)
{
	if (t->host_ns.pid >= 0 && setns(t->host_ns.pid, CLONE_NEWPID)) {
		pr_perror("cannot return to crest's pid namespace");
		return -1;
	}
	return 0;
}

static void ns_back(int *fd, int flag, const char *name)
{
	if (*fd < 0)
		return;
	if (setns(*fd, flag))
		pr_perror("cannot return to crest's %s namespace", name);
	close(*fd);
	*fd = -1;
}

void ns_restore_leave(struct restore_tree *t)
{
	ns_back(&t->host_ns.pid, CLONE_NEWPID, "pid");
	ns_back(&t->host_ns.uts, CLONE_NEWUTS, "uts");
	ns_back(&t->host_ns.ipc, CLONE_NEWIPC, "ipc");
	if (t->ns && t->ns->mnt_ns)
		mnt_restore_fini(t);
	if (t->ns)
		ns_entry__free_unpacked(t->ns, NULL);
	t->ns = NULL;
}

/* The pid a task of the tree has in the tree's pid namespace (the same without one). */
pid_t ns_pid_of(const struct restore_tree *t, pid_t pid)
{
	for (size_t i = 0; i < t->pid_map.len; i++) {
		const struct pid_pair *p = vec_at(&t->pid_map, struct pid_pair, i);

		if (p->pid == pid)
			return p->ns_pid;
	}
	return pid;
}

/* Record pid -> pid in the tree's namespace pairs of one pstree entry. */
int ns_restore_pids(struct restore_tree *t, const PstreeEntry *ps)
{
	struct {
		uint32_t pid, ns_pid;
	} pairs[3] = {{ps->pid, ps->ns_pid}, {ps->pgid, ps->ns_pgid}, {ps->sid, ps->ns_sid}};

	if (!t->ns || !t->ns->pid_ns)
		return 0;
	if (!ps->has_ns_pid || (!ps->zombie && ps->n_ns_threads != ps->n_threads)) {
		pr_err("pstree.img: task %u has no pid in the tree's pid namespace", ps->pid);
		return -1;
	}
	for (size_t i = 0; i < ARRAY_SIZE(pairs) + ps->n_ns_threads; i++) {
		uint32_t pid = i < 3 ? pairs[i].pid : ps->threads[i - 3];
		uint32_t ns_pid = i < 3 ? pairs[i].ns_pid : ps->ns_threads[i - 3];
		struct pid_pair *p;

		if (!ns_pid || ns_pid_of(t, pid) != (pid_t)pid)
			continue; /* outside the namespace (the root's session), or known */
		p = vec_push(&t->pid_map);
		if (!p)
			return -1;
		p->pid = pid;
		p->ns_pid = ns_pid;
	}
	return 0;
}
