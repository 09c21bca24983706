// SPDX-License-Identifier: MIT
/*
 * A container's mount namespace.
 *
 * Dump: /proc/ROOT/mountinfo, parents before children, each mount with its filesystem,
 * options, propagation and, for a directory bound in from outside (the root, volumes), where
 * crest itself sees that directory.  A tmpfs has no backing store: its files are archived with
 * tar into tmpfs-ID.img.  tar reads a detached copy of just that mount (open_tree), made in a
 * private copy of the tree's mount namespace where whatever was mounted over it is taken off,
 * so nothing of the tree's namespace changes and files under other mounts are not taken.
 *
 * Restore: crest, in a mount namespace of its own, rebuilds the tree below a staging
 * directory: the root (a bind of --root, of the directory it was, or an overlay with the same
 * layers), then every mount on its parent: a bind when an earlier mount has the same
 * filesystem, else a new instance (proc in the tree's pid namespace, sysfs in its network
 * namespace, tmpfs refilled from its archive, devpts, mqueue, ...).  Files of the tree are then
 * opened by crest below the staging directory (rpath()).  The tree's root task makes its own
 * copy of that namespace and pivot_root()s into the staging directory (mnt_root_child), which
 * drops every mount of crest's.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "image.h"
#include "internal.h"
#include "log.h"
#include "ns.pb-c.h"

#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif

struct mountinfo {
	uint32_t id, parent, dev;
	char *root, *mountpoint, *opts, *optional, *fstype, *source, *super_opts;
};

/* mountinfo escapes space, tab, newline and backslash as \ooo */
static char *unescape(const char *s)
{
	char *out = strdup(s), *o = out;

	if (!out)
		return NULL;
	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 4;
		} else {
			*o++ = *s++;
		}
	}
	*o = 0;
	return out;
}

static void mountinfo_free_one(struct mountinfo *m)
{
	free(m->root);
	free(m->mountpoint);
	free(m->opts);
	free(m->optional);
	free(m->fstype);
	free(m->source);
	free(m->super_opts);
}

static void mountinfo_free(struct vec *v)
{
	for (size_t i = 0; i < v->len; i++)
		mountinfo_free_one(vec_at(v, struct mountinfo, i));
	vec_free(v);
}

static int parse_line(char *line, struct mountinfo *m)
{
	char *f[6], *dash, *sp, *rest[3];
	unsigned int maj, min;
	int n = 0;

	dash = strstr(line, " - ");
	if (!dash)
		return -1;
	*dash = 0;
	/* six fields, then the optional ones up to the dash: taken whole */
	sp = line;
	while (n < 6 && (f[n] = strsep(&sp, " ")))
		n++;
	if (n < 6 || sscanf(f[2], "%u:%u", &maj, &min) != 2)
		return -1;
	m->optional = strdup(sp ? sp : "");
	n = 0;
	sp = dash + 3;
	while (n < 3 && (rest[n] = strsep(&sp, " ")))
		n++;
	if (n < 3)
		return -1;
	m->id = strtoul(f[0], NULL, 10);
	m->parent = strtoul(f[1], NULL, 10);
	m->dev = makedev(maj, min);
	m->root = unescape(f[3]);
	m->mountpoint = unescape(f[4]);
	m->opts = strdup(f[5]);
	m->fstype = strdup(rest[0]);
	m->source = unescape(rest[1]);
	m->super_opts = strdup(rest[2]);
	return m->root && m->mountpoint && m->opts && m->optional && m->fstype && m->source &&
			       m->super_opts
		       ? 0
		       : -1;
}

static int parse_mountinfo(pid_t pid, struct vec *out)
{
	char path[64], *text, *line, *sp;
	int ret = 0;

	*out = (struct vec)VEC_INIT(struct mountinfo);
	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/mountinfo", pid);
	else
		snprintf(path, sizeof(path), "/proc/self/mountinfo");
	text = read_file_at(AT_FDCWD, path, NULL);
	if (!text) {
		pr_perror("cannot read %s", path);
		return -1;
	}
	for (line = strtok_r(text, "\n", &sp); line && !ret; line = strtok_r(NULL, "\n", &sp)) {
		struct mountinfo *m = vec_push(out);

		if (!m || (memset(m, 0, sizeof(*m)), parse_line(line, m))) {
			pr_err("%s: cannot parse a line", path);
			ret = -1;
		}
	}
	free(text);
	if (ret)
		mountinfo_free(out);
	return ret;
}

static const struct {
	const char *name;
	unsigned long flag;
} mnt_flags[] = {
	{"ro", MS_RDONLY},	   {"nosuid", MS_NOSUID},	    {"nodev", MS_NODEV},
	{"noexec", MS_NOEXEC},	   {"noatime", MS_NOATIME},	    {"nodiratime", MS_NODIRATIME},
	{"relatime", MS_RELATIME}, {"strictatime", MS_STRICTATIME},
};

static uint32_t opts_flags(const char *opts)
{
	char *copy = strdup(opts), *sp;
	uint32_t flags = 0;

	for (char *o = copy ? strtok_r(copy, ",", &sp) : NULL; o; o = strtok_r(NULL, ",", &sp))
		for (size_t i = 0; i < ARRAY_SIZE(mnt_flags); i++)
			if (!strcmp(o, mnt_flags[i].name))
				flags |= mnt_flags[i].flag;
	free(copy);
	return flags;
}

static uint32_t optional_field(const char *optional, const char *key)
{
	const char *p = strstr(optional, key);

	return p ? strtoul(p + strlen(key), NULL, 10) : 0;
}

/* Filesystems made anew on restore; anything else must be bound in from crest's view. */
static bool is_virtual(const char *fstype)
{
	static const char *const virt[] = {
		"proc",	     "sysfs",	 "tmpfs",      "devpts",  "mqueue",  "cgroup",
		"cgroup2",   "overlay",	 "securityfs", "debugfs", "tracefs", "binfmt_misc",
		"hugetlbfs", "configfs", "fusectl",    "pstore",  "bpf"};

	for (size_t i = 0; i < ARRAY_SIZE(virt); i++)
		if (!strcmp(fstype, virt[i]))
			return true;
	return false;
}

/* Where crest sees the directory that is mount m's root: same device, its root below. */
static char *host_path_of(const struct mountinfo *m, const struct vec *own)
{
	for (size_t i = 0; i < own->len; i++) {
		const struct mountinfo *h = vec_at(own, struct mountinfo, i);
		size_t len = strlen(h->root);
		char *path;

		if (h->dev != m->dev || strncmp(m->root, h->root, len) ||
		    (m->root[len] != '/' && m->root[len] && strcmp(h->root, "/")))
			continue;
		if (asprintf(&path, "%s%s%s", strcmp(h->mountpoint, "/") ? h->mountpoint : "",
			     !strcmp(h->root, "/") ? m->root : m->root + len, "") < 0)
			return NULL;
		if (!path[0]) {
			free(path);
			path = strdup("/");
		}
		return path;
	}
	return NULL;
}

/*
 * tar of one tmpfs, in a child: a private copy of the tree's mount namespace, anything
 * mounted over the tmpfs taken off there, and a detached copy of only that mount to read.
 */
static void __attribute__((noreturn)) tar_child(pid_t pid, const MountEntry *m, int out)
{
	char path[64];
	struct stat want, have;
	int rootfd, nsfd, own = open("/proc/self/ns/mnt", O_RDONLY), fd = -1;

	snprintf(path, sizeof(path), "/proc/%d/root", pid);
	rootfd = open(path, O_PATH | O_DIRECTORY);
	snprintf(path, sizeof(path), "/proc/%d/ns/mnt", pid);
	nsfd = open(path, O_RDONLY);
	if (own < 0 || rootfd < 0 || nsfd < 0 || fstat(rootfd, &want) || setns(nsfd, CLONE_NEWNS) ||
	    unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		_exit(3);
	if (stat("/", &have) || have.st_dev != want.st_dev || have.st_ino != want.st_ino)
		_exit(4); /* the task is chrooted inside its namespace */
	for (int tries = 0; tries < 16; tries++) {
		fd = syscall(SYS_open_tree, AT_FDCWD, m->mountpoint, OPEN_TREE_CLONE | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &have))
			_exit(5);
		if (have.st_dev == m->dev)
			break;
		close(fd);
		fd = -1;
		if (umount2(m->mountpoint, MNT_DETACH))
			_exit(5);
	}
	/* tar is crest's: run it from crest's namespace, in the detached copy */
	if (fd < 0 || setns(own, CLONE_NEWNS) || fchdir(fd) || dup2(out, STDOUT_FILENO) < 0)
		_exit(5);
	execlp("tar", "tar", "--create", "--file=-", "--numeric-owner", "--xattrs",
	       "--xattrs-include=*", "--sparse", ".", (char *)NULL);
	_exit(6);
}

static int dump_tmpfs(struct dump_tree *t, pid_t pid, const MountEntry *m)
{
	static const char *const why[] = {
		[3] = "cannot enter its mount namespace",
		[4] = "the tree's root is chrooted inside its mount namespace",
		[5] = "cannot reach the mount",
		[6] = "cannot run tar"};
	struct cr_img *img = img_open_write(t->dirfd, IMG_TMPFS, m->tmpfs_id);
	int pipefd[2] = {-1, -1}, status, ret = -1;
	char buf[1 << 16];
	ssize_t n;
	pid_t child;

	if (!img || pipe2(pipefd, O_CLOEXEC)) {
		img_close(img);
		return -1;
	}
	fflush(NULL);
	child = fork();
	if (child == 0) {
		close(pipefd[0]);
		tar_child(pid, m, pipefd[1]);
	}
	close(pipefd[1]);
	ret = child < 0 ? -1 : 0;
	while (child > 0 && (n = read(pipefd[0], buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || (!ret && img_write_raw(img, buf, n)))
			ret = -1;
		if (n < 0)
			break;
	}
	close(pipefd[0]);
	if (child > 0 &&
	    (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status))) {
		int code = WIFEXITED(status) ? WEXITSTATUS(status) : 0;

		pr_err("cannot save the files of tmpfs %s: %s", m->mountpoint,
		       code >= 3 && code <= 6 ? why[code] : "tar failed");
		ret = -1;
	}
	if (img_close(img))
		ret = -1;
	return ret;
}

static MountEntry *mount_entry(const struct mountinfo *mi, const struct vec *own)
{
	MountEntry *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	mount_entry__init(m);
	m->mnt_id = mi->id;
	m->parent_id = mi->parent;
	m->dev = mi->dev;
	m->root = strdup(mi->root);
	m->mountpoint = strdup(mi->mountpoint);
	m->fstype = strdup(mi->fstype);
	m->source = strdup(mi->source);
	m->super_opts = strdup(mi->super_opts);
	m->flags = opts_flags(mi->opts);
	m->shared = optional_field(mi->optional, "shared:");
	m->has_shared = m->shared != 0;
	m->master = optional_field(mi->optional, "master:");
	m->has_master = m->master != 0;
	m->has_unbindable = m->unbindable = strstr(mi->optional, "unbindable") != NULL;
	if (!is_virtual(mi->fstype))
		m->host_path = host_path_of(mi, own);
	return m;
}

/* One line of mountinfo as the image keeps it (no host path); NULL when malformed. */
MountEntry *mnt_entry_parse(const char *line)
{
	struct mountinfo mi = {0};
	struct vec none = VEC_INIT(struct mountinfo); /* no mounts of crest's: no host path */
	char *copy = strdup(line);
	MountEntry *m = NULL;

	if (copy && !parse_line(copy, &mi))
		m = mount_entry(&mi, &none);
	mountinfo_free_one(&mi);
	free(copy);
	return m;
}

/*
 * Parents before children: the root (whose parent is not in the list) first, then the others
 * in the kernel's order (the order they were made in, which the restore keeps: /proc/mounts
 * looks the same), a mount whose parent comes later put off until its parent is placed.
 */
static int sort_mounts(struct vec *mis, pid_t pid)
{
	struct vec sorted = VEC_INIT(struct mountinfo);
	size_t root = mis->len;

	for (size_t i = 0; i < mis->len; i++) {
		const struct mountinfo *m = vec_at(mis, struct mountinfo, i);
		bool has_parent = false;

		for (size_t j = 0; j < mis->len && !has_parent; j++)
			has_parent = j != i && vec_at(mis, struct mountinfo, j)->id == m->parent;
		if (!has_parent) {
			if (root != mis->len) {
				pr_err("task %d: its mount tree has two roots", pid);
				return -1;
			}
			root = i;
		}
	}
	if (root == mis->len) {
		pr_err("task %d: its mount tree has no root", pid);
		return -1;
	}
	if (!vec_push(&sorted))
		return -1;
	*vec_at(&sorted, struct mountinfo, 0) = *vec_at(mis, struct mountinfo, root);
	for (bool progress = true; progress && sorted.len < mis->len;) {
		progress = false;
		for (size_t i = 0; i < mis->len; i++) {
			struct mountinfo *m = vec_at(mis, struct mountinfo, i), *slot;
			bool placed = false, parent = false;

			for (size_t j = 0; j < sorted.len && !placed; j++) {
				placed = vec_at(&sorted, struct mountinfo, j)->id == m->id;
				parent |= vec_at(&sorted, struct mountinfo, j)->id == m->parent;
			}
			if (placed || !parent)
				continue;
			slot = vec_push(&sorted);
			if (!slot) {
				vec_free(&sorted);
				return -1;
			}
			*slot = *m;
			progress = true;
		}
	}
	if (sorted.len != mis->len) {
		pr_err("task %d: its mount tree has a loop", pid);
		vec_free(&sorted);
		return -1;
	}
	vec_free(mis);
	*mis = sorted;
	return 0;
}

/* A mount crest has too, the same filesystem at the same place. */
static bool crest_has(const struct mountinfo *mi, const struct vec *own)
{
	for (size_t i = 0; i < own->len; i++) {
		const struct mountinfo *o = vec_at(own, struct mountinfo, i);

		if (o->dev == mi->dev && !strcmp(o->root, mi->root) &&
		    !strcmp(o->mountpoint, mi->mountpoint))
			return true;
	}
	return false;
}

/* Keep only the mounts crest's namespace has not. */
static void keep_delta(struct vec *mis, const struct vec *own)
{
	size_t kept = 0;

	for (size_t i = 0; i < mis->len; i++) {
		struct mountinfo *m = vec_at(mis, struct mountinfo, i);

		if (crest_has(m, own)) {
			mountinfo_free_one(m);
			continue;
		}
		*vec_at(mis, struct mountinfo, kept++) = *m;
	}
	mis->len = kept;
}

int mnt_dump(struct dump_tree *t, pid_t pid, NsEntry *ns, bool delta)
{
	struct vec mis, own;
	uint32_t tmpfs_id = 0;
	int ret = -1;

	if (parse_mountinfo(pid, &mis))
		return -1;
	if (sort_mounts(&mis, pid)) {
		mountinfo_free(&mis);
		return -1;
	}
	if (parse_mountinfo(0, &own)) {
		mountinfo_free(&mis);
		return -1;
	}
	if (delta)
		keep_delta(&mis, &own);
	ns->has_mnt_delta = ns->mnt_delta = delta;
	ns->mounts = calloc(mis.len, sizeof(*ns->mounts));
	if (!ns->mounts)
		goto out;
	for (size_t i = 0; i < mis.len; i++) {
		const struct mountinfo *mi = vec_at(&mis, struct mountinfo, i);
		MountEntry *m = mount_entry(mi, &own);

		uint32_t *id = vec_push(&t->mnt_ids);

		if (!m || !id)
			goto out;
		*id = m->mnt_id;
		ns->mounts[ns->n_mounts++] = m;
		/* the root: first, its parent outside what the task sees */
		if (!delta && i == 0 && strcmp(m->mountpoint, "/")) {
			pr_err("task %d: its first mount is %s, not its root", pid, m->mountpoint);
			goto out;
		}
		if (!delta && i > 0 && !strcmp(m->mountpoint, "/") &&
		    m->parent_id != ns->mounts[i - 1]->mnt_id) {
			pr_err("task %d: a mount over its root is not supported", pid);
			goto out;
		}
		if (!is_virtual(m->fstype) && !m->host_path) {
			pr_err("mount %s (%s %s) of task %d is not visible to crest: cannot save "
			       "it",
			       m->mountpoint, m->fstype, m->source, pid);
			goto out;
		}
		if (!strcmp(m->fstype, "tmpfs")) {
			bool seen = false;

			for (size_t j = 0; j < i && !seen; j++)
				seen = ns->mounts[j]->dev == m->dev;
			if (!seen) {
				m->has_tmpfs_id = true;
				m->tmpfs_id = ++tmpfs_id;
				if (dump_tmpfs(t, pid, m))
					goto out;
			}
		}
	}
	ret = 0;
out:
	mountinfo_free(&mis);
	mountinfo_free(&own);
	return ret;
}

bool mnt_is_outside(struct dump_tree *t, const char *fdinfo)
{
	const char *p = fdinfo_field(fdinfo, "mnt_id");
	uint32_t id;

	if (!t->mnt_ids.len || !p)
		return false;
	id = strtoul(p, NULL, 10);
	for (size_t i = 0; i < t->mnt_ids.len; i++)
		if (*vec_at(&t->mnt_ids, uint32_t, i) == id)
			return false;
	return true;
}

void mnt_dump_free(NsEntry *ns)
{
	for (size_t i = 0; i < ns->n_mounts; i++) {
		MountEntry *m = ns->mounts[i];

		free(m->root);
		free(m->mountpoint);
		free(m->fstype);
		free(m->source);
		free(m->super_opts);
		free(m->host_path);
		free(m);
	}
	free(ns->mounts);
	ns->mounts = NULL;
	ns->n_mounts = 0;
}

/* ---- restore ------------------------------------------------------------------------------ */

static char staging[PATH_MAX]; /* where the root task builds the tree's mounts */
static pid_t root_pid;	       /* the tree's root, once its mounts exist */

/* A path of the tree, as crest reaches it while restoring: through its root's root. */
const char *rpath(const char *path)
{
	static char bufs[4][PATH_MAX];
	static unsigned int next;
	char *buf;

	if (!root_pid || path[0] != '/')
		return path;
	buf = bufs[next++ % ARRAY_SIZE(bufs)];
	snprintf(buf, PATH_MAX, "/proc/%d/root%s", root_pid, path);
	return buf;
}

static int extract_tmpfs(struct restore_tree *t, const MountEntry *m, const char *target)
{
	struct cr_img *img = img_open_read(t->dirfd, IMG_TMPFS, m->tmpfs_id);
	int pipefd[2], status, ret = 0;
	uint64_t off = IMG_PAGES_HDR_SIZE, end;
	char buf[1 << 16];
	pid_t child;

	if (!img)
		return -1;
	end = img_size(img);
	if (pipe2(pipefd, O_CLOEXEC)) {
		img_close(img);
		return -1;
	}
	fflush(NULL);
	child = fork();
	if (child == 0) {
		if (dup2(pipefd[0], STDIN_FILENO) < 0)
			_exit(5);
		execlp("tar", "tar", "--extract", "--file=-", "--numeric-owner", "--xattrs",
		       "--xattrs-include=*", "--same-permissions", "-C", target, (char *)NULL);
		_exit(6);
	}
	close(pipefd[0]);
	while (child > 0 && off < end && !ret) {
		ssize_t n = pread(img_fd(img), buf, sizeof(buf), off);

		if (n <= 0 || write_all(pipefd[1], buf, n))
			ret = -1;
		off += n > 0 ? n : 0;
	}
	close(pipefd[1]);
	if (child < 0 || waitpid(child, &status, 0) != child || !WIFEXITED(status) ||
	    WEXITSTATUS(status))
		ret = -1;
	if (ret)
		pr_err("%s: cannot restore the files of tmpfs %s", img_path(img), m->mountpoint);
	img_close(img);
	return ret;
}

/*
 * An earlier mount of the same filesystem whose root holds m's: bind from there; a slave from
 * its master's peer group when there is one (the bind joins the group, MS_SLAVE then makes
 * it the group's slave).
 */
static const MountEntry *bind_source(const struct restore_tree *t, const MountEntry *m, size_t upto)
{
	const MountEntry *found = NULL;

	for (size_t i = 0; i < upto; i++) {
		const MountEntry *s = t->ns->mounts[i];
		size_t len = strlen(s->root);

		if (s->dev != m->dev || strncmp(m->root, s->root, len))
			continue;
		if (strcmp(s->root, "/") && m->root[len] != '/' && m->root[len])
			continue;
		if (m->has_master && s->has_shared && s->shared == m->master)
			return s;
		if (!found)
			found = s;
	}
	return found;
}

/* Where m comes from: a bind (from set), or NULL for a new instance of its filesystem. */
static const MountEntry *mount_source(const struct restore_tree *t, size_t idx, char *from,
				      size_t len)
{
	const MountEntry *m = t->ns->mounts[idx], *src = bind_source(t, m, idx);

	if (idx == 0 && t->opts->root && !t->ns->mnt_delta) {
		snprintf(from, len, "%s", t->opts->root);
		return m;
	}
	if (src) {
		const char *rest = m->root + (strcmp(src->root, "/") ? strlen(src->root) : 0);

		snprintf(from, len, "%s%s%s", staging,
			 strcmp(src->mountpoint, "/") ? src->mountpoint : "", rest);
		return src;
	}
	if (!is_virtual(m->fstype)) {
		snprintf(from, len, "%s", m->host_path ? m->host_path : "");
		return m;
	}
	return NULL;
}

static int mount_one(struct restore_tree *t, size_t idx)
{
	const MountEntry *m = t->ns->mounts[idx], *src;
	char target[PATH_MAX], from[PATH_MAX * 2];
	unsigned long prop = 0;
	int ret;

	snprintf(target, sizeof(target), "%s%s", staging,
		 idx || t->ns->mnt_delta ? m->mountpoint : "");
	src = mount_source(t, idx, from, sizeof(from));
	if (src) {
		ret = mount(from, target, NULL, MS_BIND, NULL);
		if (ret)
			pr_perror("cannot bind %s on %s", from, m->mountpoint);
	} else {
		/* a read-only tmpfs is filled first, then made read-only */
		bool sb_ro = m->has_tmpfs_id && opts_flags(m->super_opts) & MS_RDONLY;
		char *opts = strdup(m->super_opts ? m->super_opts : "");

		if (sb_ro && opts && !strncmp(opts, "ro", 2) && (!opts[2] || opts[2] == ','))
			opts[1] = 'w';
		/* proc and sysfs show the namespaces of the task mounting them: ours */
		ret = opts ? mount(m->source, target, m->fstype, 0, opts) : -1;
		if (ret)
			pr_perror("cannot mount %s (%s, %s) on %s", m->source, m->fstype, opts,
				  m->mountpoint);
		if (!ret && m->has_tmpfs_id && extract_tmpfs(t, m, target))
			ret = -1;
		if (!ret && sb_ro && mount(NULL, target, NULL, MS_REMOUNT | MS_RDONLY, NULL)) {
			pr_perror("cannot make tmpfs %s read-only", m->mountpoint);
			ret = -1;
		}
		free(opts);
	}
	if (ret)
		return -1;
	/* its flags, with MS_BIND: only this mount, not the filesystem */
	if (m->flags & ~(MS_RELATIME) &&
	    mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | m->flags, NULL)) {
		pr_perror("cannot set the flags of mount %s", m->mountpoint);
		return -1;
	}
	/* the root's propagation waits for pivot_root, which refuses a shared one */
	if (m->unbindable)
		prop = MS_UNBINDABLE;
	else if (m->has_master && src && src != m && src->shared == m->master)
		prop = MS_SLAVE;
	else if (m->has_shared)
		prop = MS_SHARED;
	if ((idx || t->ns->mnt_delta) && prop && mount(NULL, target, NULL, prop, NULL)) {
		pr_perror("cannot set the propagation of mount %s", m->mountpoint);
		return -1;
	}
	return 0;
}

/* Crest, before the root exists: where it will build the mounts. */
int mnt_restore_prepare(struct restore_tree *t)
{
	const NsEntry *ns = t->ns;

	if (!ns->mnt_delta && (!ns->n_mounts || strcmp(ns->mounts[0]->mountpoint, "/"))) {
		pr_err("ns.img: the mount tree has no root");
		return -1;
	}
	for (size_t i = ns->mnt_delta ? 0 : 1; i < ns->n_mounts; i++) {
		bool parent = ns->mnt_delta; /* on crest's own mounts */

		/* parents before children, as the dump wrote them */
		for (size_t j = 0; j < i && !parent; j++)
			parent = ns->mounts[j]->mnt_id == ns->mounts[i]->parent_id;
		if (!parent || ns->mounts[i]->mountpoint[0] != '/' ||
		    strstr(ns->mounts[i]->mountpoint, "/../")) {
			pr_err("ns.img: mount %s is malformed or out of order",
			       ns->mounts[i]->mountpoint);
			return -1;
		}
	}
	if (ns->mnt_delta)
		return 0; /* made where they were, in a copy of crest's namespace */
	snprintf(staging, sizeof(staging), "/tmp/crest-root.XXXXXX");
	if (!mkdtemp(staging)) {
		pr_perror("cannot make a directory for the tree's root");
		staging[0] = 0;
		return -1;
	}
	return 0;
}

/*
 * A namespace that only differs from crest's: its proc, sysfs and mqueue are those of the pid,
 * network and ipc namespaces it was in; when the tree brought none of its own, crest's own
 * mounts of them (where the restore runs) are the right ones.
 */
static bool delta_skipped(const struct restore_tree *t, const MountEntry *m)
{
	if (!t->ns->mnt_delta)
		return false;
	if (!strcmp(m->fstype, "proc"))
		return !t->ns->pid_ns;
	if (!strcmp(m->fstype, "sysfs"))
		return !t->own_netns;
	if (!strcmp(m->fstype, "mqueue"))
		return !t->ns->ipc_ns;
	return false;
}

/*
 * In the tree's root task, before it becomes the restored one: a mount namespace of its own,
 * every mount made in the dumped order below the staging directory, which then becomes its
 * root (pivot_root); crest's mounts go with the old root.  Mounts of proc and sysfs made here
 * show the tree's pid and network namespaces, which this task already is in.
 */
int mnt_root_child(const struct restore_tree *t)
{
	const MountEntry *root = t->ns->n_mounts ? t->ns->mounts[0] : NULL;

	if (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) {
		pr_perror("cannot make the tree's mount namespace");
		return -1;
	}
	for (size_t i = 0; i < t->ns->n_mounts; i++)
		if (!delta_skipped(t, t->ns->mounts[i]) && mount_one((struct restore_tree *)t, i))
			return -1;
	if (t->ns->mnt_delta)
		return 0;
	if (chdir(staging) || syscall(SYS_pivot_root, ".", ".") || umount2(".", MNT_DETACH) ||
	    chdir("/")) {
		pr_perror("cannot make %s the tree's root", staging);
		return -1;
	}
	if (root->unbindable   ? mount(NULL, "/", NULL, MS_UNBINDABLE, NULL)
	    : root->has_shared ? mount(NULL, "/", NULL, MS_SHARED, NULL)
			       : 0) {
		pr_perror("cannot set the propagation of the tree's root");
		return -1;
	}
	return 0;
}

void mnt_restore_root_made(pid_t pid)
{
	root_pid = pid;
}

void mnt_restore_fini(struct restore_tree *t)
{
	if (staging[0] && rmdir(staging))
		pr_warn("cannot remove %s: %s", staging, strerror(errno));
	staging[0] = 0;
	root_pid = 0;
}
