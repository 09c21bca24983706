// SPDX-License-Identifier: MIT
/*
 * --manage-cgroups: the cgroups the tree's tasks are in, and their limits.
 *
 * The dump reads each task's /proc/PID/cgroup: its cgroup in the unified hierarchy (cgroup v2)
 * and in each v1 hierarchy, a v1 one named by its controllers ("memory", "cpu,cpuacct",
 * "name=systemd").  Of each such cgroup it keeps the limits that exist there (limits_v2[] or
 * limits_v1[], as the files read); a hierarchy's root has no limits of its own to give.  The
 * restore finds each hierarchy where it is mounted in crest's mount namespace, makes missing
 * cgroups and moves each new task into its own before the task runs anything of its own.
 *
 * The mode, --manage-cgroups=MODE, says what the restore may do to cgroups:
 *   soft    (the default; also what a restore without the option does with a cgroup.img)
 *           make missing cgroups and give them their limits; leave existing ones as they are
 *   full    the same, and set the limits of existing cgroups too
 *   strict  as soft, but refuse before anything is made when a cgroup exists with limits
 *           other than the recorded ones
 *   ignore  touch no cgroup: the tree stays in crest's own
 * The dump records the same whatever the mode.  A failed restore removes the cgroups it made,
 * puts back the limits it changed and turns off the controllers it turned on.
 *
 * Paths: /proc/PID/cgroup shows them relative to the reader's cgroup namespace, so a task in
 * a cgroup namespace of its own is recorded as crest sees its cgroups, which is what the
 * restore needs; that namespace itself is not restored (the task comes back in crest's).
 * A process moves whole (cgroup.procs): v1 threads kept in other cgroups than their leader's
 * and v2 threaded subtrees come back with their leader.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"
#include "internal.h"
#include "log.h"

#include "cgroup.pb-c.h"

/* The order is the order of writing: a v1 cpuset takes no task before it has cpus and mems. */
static const char *const limits_v2[] = {
	"cgroup.max.descendants",
	"cgroup.max.depth",
	"cpuset.cpus",
	"cpuset.mems",
	"cpu.max",
	"cpu.weight",
	"memory.min",
	"memory.low",
	"memory.high",
	"memory.max",
	"memory.swap.max",
	"pids.max",
	"io.weight",
};

/* cfs_period_us before cfs_quota_us: a quota is checked against the period it is set in. */
static const char *const limits_v1[] = {
	"cpuset.cpus",
	"cpuset.mems",
	"cpu.shares",
	"cpu.cfs_period_us",
	"cpu.cfs_quota_us",
	"memory.limit_in_bytes",
	"memory.soft_limit_in_bytes",
	"pids.max",
	"blkio.weight",
};

/* Room for a cgroup directory and a file name in it. */
#define CG_PATH 4096
#define CG_FILE (CG_PATH + 64)

#define RMDIR_TRIES 100 /* 10 ms apart: a killed task leaves its cgroup when it is reaped */

enum cg_mode { CG_SOFT, CG_FULL, CG_STRICT, CG_IGNORE };

static const char *const mode_names[] = {"soft", "full", "strict", "ignore"};

/* A cgroup filesystem in crest's mount namespace. */
struct cg_mount {
	bool v2;
	char *mnt;  /* where it is mounted */
	char *root; /* the cgroup shown at mnt, "/" unless a subtree is bind-mounted */
	char *opts; /* super options: the controllers of a v1 hierarchy */
};

/* Controllers turned on in a cgroup.subtree_control of a cgroup the restore did not make. */
struct cg_enabled {
	char *dir;
	char ctrl[32];
};

/* A limit the restore overwrote in a cgroup it did not make (full mode). */
struct cg_saved {
	char *file;
	char *value;
};

struct cg_restore {
	CgroupEntry *e;
	enum cg_mode mode;
	struct vec mounts;	   /* struct cg_mount */
	char **dir_disk;	   /* per e->dirs[i]: its directory, NULL when unmounted */
	bool *dir_existed;	   /* per e->dirs[i]: there before the restore */
	CgroupTaskEntry **task_of; /* per restore tree task: its entry, NULL for zombies */
	struct vec created;	   /* char *: directories made, parents first */
	struct vec enabled;	   /* struct cg_enabled */
	struct vec saved;	   /* struct cg_saved */
};

static int parse_mode(const struct crest_opts *opts, enum cg_mode *mode)
{
	const char *s = opts->manage_cgroups_mode;

	*mode = CG_SOFT;
	if (!opts->manage_cgroups || !s)
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(mode_names); i++) {
		if (!strcmp(s, mode_names[i])) {
			*mode = i;
			return 0;
		}
	}
	pr_err("unknown --manage-cgroups mode '%s': soft, full, strict or ignore", s);
	return -1;
}

static const char *hier_name(const CgroupHierEntry *h)
{
	return h->controllers ? h->controllers : "v2";
}

/* Is item one of the comma-separated list's items? */
static bool has_item(const char *list, const char *item, size_t len)
{
	for (const char *p = list; p && *p;) {
		const char *end = strchrnul(p, ',');

		if ((size_t)(end - p) == len && !strncmp(p, item, len))
			return true;
		p = *end ? end + 1 : NULL;
	}
	return false;
}

/* Does a mount hold the hierarchy: v2 (ctrls NULL), or v1 with every one of ctrls? */
static bool mount_holds(const struct cg_mount *m, const char *ctrls)
{
	if (!ctrls || m->v2)
		return !ctrls && m->v2;
	for (const char *p = ctrls; *p;) {
		const char *end = strchrnul(p, ',');

		if (!has_item(m->opts, p, end - p))
			return false;
		p = *end ? end + 1 : end;
	}
	return true;
}

/* The mount of a hierarchy that shows the most of it (the shortest root), or NULL. */
static const struct cg_mount *find_mount(const struct vec *mounts, const char *ctrls)
{
	const struct cg_mount *best = NULL;

	for (size_t i = 0; i < mounts->len; i++) {
		const struct cg_mount *m = vec_at(mounts, struct cg_mount, i);

		if (mount_holds(m, ctrls) && (!best || strlen(m->root) < strlen(best->root)))
			best = m;
	}
	return best;
}

/* mountinfo escapes blanks and backslashes as \NNN (octal). */
static void unescape(char *s)
{
	char *out = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*out++ = (s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0');
			s += 3;
		} else {
			*out++ = *s;
		}
	}
	*out = 0;
}

static void free_mounts(struct vec *mounts)
{
	for (size_t i = 0; i < mounts->len; i++) {
		struct cg_mount *m = vec_at(mounts, struct cg_mount, i);

		free(m->mnt);
		free(m->root);
		free(m->opts);
	}
	vec_free(mounts);
}

/* One mountinfo line: a cgroup filesystem is added to mounts, any other line is skipped. */
static int parse_mount(char *line, struct vec *mounts)
{
	char *f[6], *fstype, *sep, *save = NULL;
	struct cg_mount *m;
	int n = 0;

	sep = strstr(line, " - ");
	if (!sep)
		return 0;
	*sep = 0;
	for (char *tok = strtok_r(line, " ", &save); tok && n < 6; tok = strtok_r(NULL, " ", &save))
		f[n++] = tok;
	fstype = strtok_r(sep + 3, " ", &save);
	strtok_r(NULL, " ", &save); /* the source */
	f[5] = strtok_r(NULL, " ", &save);
	if (n < 5 || !fstype || !f[5] || (strcmp(fstype, "cgroup2") && strcmp(fstype, "cgroup")))
		return 0;
	m = vec_push(mounts);
	if (!m)
		goto oom;
	unescape(f[3]);
	unescape(f[4]);
	m->v2 = !strcmp(fstype, "cgroup2");
	m->root = strdup(f[3]);
	m->mnt = strdup(f[4]);
	m->opts = strdup(f[5]);
	if (m->root && m->mnt && m->opts)
		return 0;
oom:
	pr_err("out of memory reading the cgroup mounts");
	return -1;
}

static int read_mounts(struct vec *mounts)
{
	char *text = read_file_at(AT_FDCWD, "/proc/self/mountinfo", NULL), *line, *next;
	int ret = 0;

	if (!text) {
		pr_perror("cannot read /proc/self/mountinfo");
		return -1;
	}
	for (line = text; *line && !ret; line = next) {
		next = strchrnul(line, '\n');
		if (*next)
			*next++ = 0;
		ret = parse_mount(line, mounts);
	}
	free(text);
	return ret;
}

/* The directory of cgroup path (as /proc/PID/cgroup shows it) under mount m, malloc'ed. */
static char *disk_path(const struct cg_mount *m, const char *path, const char *hier)
{
	size_t rl = strlen(m->root);
	char *out;

	if (strcmp(m->root, "/")) {
		if (strncmp(path, m->root, rl) || (path[rl] && path[rl] != '/')) {
			pr_err("cgroup %s of hierarchy %s is outside its mount at %s (which shows "
			       "%s)",
			       path, hier, m->mnt, m->root);
			return NULL;
		}
		path += rl;
	}
	if (asprintf(&out, "%s%s", m->mnt, strcmp(path, "/") ? path : "") < 0) {
		pr_err("out of memory");
		return NULL;
	}
	return out;
}

/* Split a /proc/PID/cgroup line "ID:CONTROLLERS:PATH" in place; ctrls is NULL for v2. */
static bool split_cg_line(char *line, char **ctrls, char **path)
{
	char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;

	if (!c2 || c2[1] != '/')
		return false;
	*c1 = *c2 = 0;
	*ctrls = c1[1] ? c1 + 1 : NULL;
	*path = c2 + 1;
	return true;
}

/* "hugetlb.2MB.max", "hugetlb.1GB.rsvd.max": one per huge page size, so not in limits_v2. */
static bool is_hugetlb_limit(const char *name)
{
	size_t len = strlen(name);

	return !strncmp(name, "hugetlb.", 8) && len > 12 && !strcmp(name + len - 4, ".max") &&
	       !strchr(name, '/');
}

/* Is name a limit file crest reads and writes?  Restores write no other file. */
static bool is_limit(bool v2, const char *name)
{
	const char *const *list = v2 ? limits_v2 : limits_v1;
	size_t n = v2 ? ARRAY_SIZE(limits_v2) : ARRAY_SIZE(limits_v1);

	for (size_t i = 0; i < n; i++)
		if (!strcmp(name, list[i]))
			return true;
	return v2 && is_hugetlb_limit(name);
}

/* Append p to a protobuf-c repeated field of pointers. */
static int push_ptr(void ***arr, size_t *n, void *p)
{
	void **a = p ? realloc(*arr, (*n + 1) * sizeof(*a)) : NULL;

	if (!a) {
		pr_err("out of memory");
		return -1;
	}
	a[(*n)++] = p;
	*arr = a;
	return 0;
}

/* ---- dump ---- */

/* Index of the hierarchy in e->hiers, added when new; -1 on error. */
static int dump_hier(CgroupEntry *e, const char *ctrls)
{
	CgroupHierEntry *h;

	for (size_t i = 0; i < e->n_hiers; i++) {
		const char *c = e->hiers[i]->controllers;

		if (c == ctrls || (c && ctrls && !strcmp(c, ctrls)))
			return i;
	}
	h = calloc(1, sizeof(*h));
	if (h) {
		cgroup_hier_entry__init(h);
		if (ctrls && !(h->controllers = strdup(ctrls))) {
			free(h);
			h = NULL;
		}
	}
	if (push_ptr((void ***)&e->hiers, &e->n_hiers, h))
		return -1;
	return e->n_hiers - 1;
}

/* Index of the cgroup in e->dirs, added when new; -1 on error. */
static int dump_dir(CgroupEntry *e, uint32_t hier, const char *path)
{
	CgroupDirEntry *d;

	for (size_t i = 0; i < e->n_dirs; i++)
		if (e->dirs[i]->hier == hier && !strcmp(e->dirs[i]->path, path))
			return i;
	d = calloc(1, sizeof(*d));
	if (d) {
		cgroup_dir_entry__init(d);
		d->hier = hier;
		if (!(d->path = strdup(path))) {
			free(d);
			d = NULL;
		}
	}
	if (push_ptr((void ***)&e->dirs, &e->n_dirs, d))
		return -1;
	return e->n_dirs - 1;
}

/* A task's entry: its cgroup in every hierarchy it shows. */
static int dump_task(CgroupEntry *e, pid_t pid)
{
	char path[64], *text, *line, *next, *ctrls, *cgpath;
	CgroupTaskEntry *te;
	uint32_t *dirs;
	int h, d, ret = -1;

	snprintf(path, sizeof(path), "/proc/%d/cgroup", pid);
	text = read_file_at(AT_FDCWD, path, NULL);
	if (!text) {
		pr_perror("cannot read %s", path);
		return -1;
	}
	te = calloc(1, sizeof(*te));
	if (te)
		cgroup_task_entry__init(te);
	if (push_ptr((void ***)&e->tasks, &e->n_tasks, te))
		goto out;
	te->pid = pid;
	for (line = text; *line; line = next) {
		next = strchrnul(line, '\n');
		if (*next)
			*next++ = 0;
		if (!split_cg_line(line, &ctrls, &cgpath)) {
			pr_err("%s: cannot parse '%s'", path, line);
			goto out;
		}
		h = dump_hier(e, ctrls);
		d = h < 0 ? -1 : dump_dir(e, h, cgpath);
		dirs = d < 0 ? NULL : realloc(te->dirs, (te->n_dirs + 1) * sizeof(*dirs));
		if (!dirs) {
			if (d >= 0)
				pr_err("out of memory");
			goto out;
		}
		dirs[te->n_dirs++] = d;
		te->dirs = dirs;
	}
	ret = 0;
out:
	free(text);
	return ret;
}

/* One limit file of dir, when it exists here. */
static int dump_limit(CgroupDirEntry *de, const char *dir, const char *name)
{
	char path[CG_FILE], *text;
	CgroupLimitEntry *l;
	size_t len;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	text = read_file_at(AT_FDCWD, path, &len);
	if (!text) {
		if (errno == ENOENT)
			return 0;
		pr_perror("cannot read %s", path);
		return -1;
	}
	while (len && text[len - 1] == '\n')
		text[--len] = 0;
	l = calloc(1, sizeof(*l));
	if (l) {
		cgroup_limit_entry__init(l);
		l->value = text;
		if (!(l->name = strdup(name))) {
			free(l);
			l = NULL;
		}
	}
	if (!l)
		free(text);
	return push_ptr((void ***)&de->limits, &de->n_limits, l);
}

static int dump_limits(CgroupEntry *e, CgroupDirEntry *de, const struct vec *mounts)
{
	const CgroupHierEntry *h = e->hiers[de->hier];
	const struct cg_mount *m;
	struct dirent *ent;
	char *dir;
	DIR *dp;
	int ret = 0;

	/* the root's limits, if any, are the machine's */
	if (!strcmp(de->path, "/"))
		return 0;
	m = find_mount(mounts, h->controllers);
	if (!m) {
		pr_err("cgroup %s of hierarchy %s is not mounted where crest can read its limits",
		       de->path, hier_name(h));
		return -1;
	}
	dir = disk_path(m, de->path, hier_name(h));
	if (!dir)
		return -1;
	for (size_t i = 0; i < (m->v2 ? ARRAY_SIZE(limits_v2) : ARRAY_SIZE(limits_v1)) && !ret; i++)
		ret = dump_limit(de, dir, m->v2 ? limits_v2[i] : limits_v1[i]);
	dp = m->v2 && !ret ? opendir(dir) : NULL;
	if (m->v2 && !ret && !dp) {
		pr_perror("cannot read cgroup directory %s", dir);
		ret = -1;
	}
	while (dp && !ret && (ent = readdir(dp)))
		if (is_hugetlb_limit(ent->d_name))
			ret = dump_limit(de, dir, ent->d_name);
	if (dp)
		closedir(dp);
	free(dir);
	return ret;
}

int cgroup_dump(struct dump_tree *t)
{
	struct vec mounts = VEC_INIT(struct cg_mount);
	enum cg_mode mode;
	CgroupEntry *e;
	size_t nr_limits = 0;
	int ret = -1;

	if (parse_mode(t->opts, &mode))
		return -1;
	e = calloc(1, sizeof(*e));
	if (!e) {
		pr_err("out of memory");
		return -1;
	}
	cgroup_entry__init(e);
	t->cgroups = e;
	if (read_mounts(&mounts))
		goto out;
	for (size_t i = 0; i < t->tasks.len; i++) {
		struct dump_ctx *d = *vec_at(&t->tasks, struct dump_ctx *, i);

		/* a zombie is made again, not moved: its cgroups do not matter */
		if (!d->zombie && dump_task(e, d->pid))
			goto out;
	}
	for (size_t i = 0; i < e->n_dirs; i++) {
		if (dump_limits(e, e->dirs[i], &mounts))
			goto out;
		nr_limits += e->dirs[i]->n_limits;
	}
	if (img_write_one(t->dirfd, IMG_CGROUP, 0, &e->base))
		goto out;
	pr_info("cgroups: %zu tasks in %zu cgroups of %zu hierarchies, %zu limits", e->n_tasks,
		e->n_dirs, e->n_hiers, nr_limits);
	ret = 0;
out:
	free_mounts(&mounts);
	cgroup_entry__free_unpacked(e, NULL);
	t->cgroups = NULL;
	return ret;
}

/* ---- restore ---- */

/* A path as /proc/PID/cgroup shows it: absolute, no empty, "." or ".." component. */
static bool path_ok(const char *path)
{
	if (path[0] != '/' || strchr(path, '\n'))
		return false;
	if (!path[1])
		return true;
	for (const char *p = path + 1;;) {
		const char *end = strchrnul(p, '/');
		size_t len = end - p;

		if (!len || (len == 1 && p[0] == '.') || (len == 2 && !strncmp(p, "..", 2)))
			return false;
		if (!*end)
			return true;
		p = end + 1;
	}
}

/* Trust nothing: a limit name chooses the file crest writes, a path the directory. */
static int validate(const CgroupEntry *e)
{
	for (size_t i = 0; i < e->n_hiers; i++) {
		const char *c = e->hiers[i]->controllers;

		if (c && (!*c || strchr(c, '/') || strchr(c, '\n'))) {
			pr_err("cgroup.img: bad hierarchy name '%s'", c);
			return -1;
		}
	}
	for (size_t i = 0; i < e->n_dirs; i++) {
		const CgroupDirEntry *d = e->dirs[i];

		if (d->hier >= e->n_hiers || !path_ok(d->path)) {
			pr_err("cgroup.img: bad cgroup %u (hierarchy %u, path '%s')", (unsigned)i,
			       d->hier, d->path);
			return -1;
		}
		for (size_t j = 0; j < d->n_limits; j++) {
			if (!is_limit(!e->hiers[d->hier]->controllers, d->limits[j]->name)) {
				pr_err("cgroup.img: '%s' of cgroup %s is no limit crest restores",
				       d->limits[j]->name, d->path);
				return -1;
			}
		}
	}
	for (size_t i = 0; i < e->n_tasks; i++) {
		const CgroupTaskEntry *te = e->tasks[i];

		for (size_t j = 0; j < te->n_dirs; j++) {
			bool twice = false;

			for (size_t k = 0; k < j && te->dirs[j] < e->n_dirs; k++)
				twice |= e->dirs[te->dirs[k]]->hier == e->dirs[te->dirs[j]]->hier;
			if (te->dirs[j] >= e->n_dirs || twice) {
				pr_err("cgroup.img: bad cgroups of task %u", te->pid);
				return -1;
			}
		}
	}
	return 0;
}

/* Each restore task's entry (NULL for zombies, which are made again and never moved). */
static int map_tasks(struct cg_restore *cr, struct restore_tree *t)
{
	cr->task_of = calloc(t->tasks.len + 1, sizeof(*cr->task_of));
	if (!cr->task_of) {
		pr_err("out of memory");
		return -1;
	}
	for (size_t i = 0; i < t->tasks.len; i++) {
		const struct restore_ctx *r = *vec_at(&t->tasks, struct restore_ctx *, i);

		if (r->pstree->zombie)
			continue;
		for (size_t j = 0; j < cr->e->n_tasks && !cr->task_of[i]; j++)
			if ((pid_t)cr->e->tasks[j]->pid == r->pid)
				cr->task_of[i] = cr->e->tasks[j];
		if (!cr->task_of[i]) {
			pr_err("cgroup.img: no cgroups recorded for task %d", r->pid);
			return -1;
		}
	}
	return 0;
}

/* Where each cgroup is on this machine, and whether it is there yet. */
static int locate_dirs(struct cg_restore *cr)
{
	const CgroupEntry *e = cr->e;
	struct stat st;

	cr->dir_disk = calloc(e->n_dirs + 1, sizeof(*cr->dir_disk));
	cr->dir_existed = calloc(e->n_dirs + 1, sizeof(*cr->dir_existed));
	if (!cr->dir_disk || !cr->dir_existed) {
		pr_err("out of memory");
		return -1;
	}
	for (size_t i = 0; i < e->n_dirs; i++) {
		const CgroupDirEntry *d = e->dirs[i];
		const CgroupHierEntry *h = e->hiers[d->hier];
		const struct cg_mount *m = find_mount(&cr->mounts, h->controllers);

		if (!m && !strcmp(d->path, "/")) {
			/* the tasks stay in crest's cgroup there, whatever it is */
			pr_warn("cgroup hierarchy %s is not mounted: tasks stay where crest is",
				hier_name(h));
			continue;
		}
		if (!m) {
			pr_err("cgroup hierarchy %s is not mounted here: cannot restore cgroup %s",
			       hier_name(h), d->path);
			return -1;
		}
		cr->dir_disk[i] = disk_path(m, d->path, hier_name(h));
		if (!cr->dir_disk[i])
			return -1;
		if (!stat(cr->dir_disk[i], &st)) {
			cr->dir_existed[i] = true;
		} else if (errno != ENOENT) {
			pr_perror("cannot look at cgroup %s", cr->dir_disk[i]);
			return -1;
		}
	}
	return 0;
}

/* The file's content without the final newline, malloc'ed; NULL with errno set. */
static char *read_value(const char *path)
{
	size_t len;
	char *text = read_file_at(AT_FDCWD, path, &len);

	while (text && len && text[len - 1] == '\n')
		text[--len] = 0;
	return text;
}

/* Strict mode: every existing cgroup must have the recorded limits already. */
static int check_existing(struct cg_restore *cr)
{
	const CgroupEntry *e = cr->e;
	char path[CG_FILE], *now;
	int ret = 0;

	for (size_t i = 0; i < e->n_dirs && !ret; i++) {
		const CgroupDirEntry *d = e->dirs[i];

		if (!cr->dir_existed[i] || !strcmp(d->path, "/"))
			continue;
		for (size_t j = 0; j < d->n_limits && !ret; j++) {
			snprintf(path, sizeof(path), "%s/%s", cr->dir_disk[i], d->limits[j]->name);
			now = read_value(path);
			if (!now || strcmp(now, d->limits[j]->value)) {
				pr_err("cgroup %s (%s) exists with %s %s, not %s: refused "
				       "(--manage-cgroups=strict)",
				       d->path, hier_name(e->hiers[d->hier]), d->limits[j]->name,
				       now ? now : "missing", d->limits[j]->value);
				ret = -1;
			}
			free(now);
		}
	}
	return ret;
}

/* Write a value, a line at a time: multi-line files (io.weight) take one setting a write. */
static int write_value(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), ret = 0;
	const char *p = value;

	if (fd < 0)
		return -1;
	/* an empty value ("" cpuset.cpus: the parent's) still needs a write */
	if (!*p && write(fd, "\n", 1) < 0)
		ret = -1;
	while (*p && !ret) {
		const char *end = strchrnul(p, '\n');

		if (end > p && write(fd, p, end - p) < 0)
			ret = -1;
		p = *end ? end + 1 : end;
	}
	if (ret) {
		int err = errno;

		close(fd);
		errno = err;
		return -1;
	}
	close(fd);
	return 0;
}

static bool was_created(const struct cg_restore *cr, const char *dir)
{
	for (size_t i = 0; i < cr->created.len; i++)
		if (!strcmp(*vec_at(&cr->created, char *, i), dir))
			return true;
	return false;
}

/* Will a task of the tree be put in that directory? */
static bool holds_tree_task(const struct cg_restore *cr, const char *dir)
{
	for (size_t i = 0; i < cr->e->n_dirs; i++)
		if (cr->dir_disk[i] && !strcmp(cr->dir_disk[i], dir))
			return true;
	return false;
}

/* v1 cpusets are made empty and take no task so: a new one gets its parent's cpus and mems. */
static int copy_cpuset(const char *dir)
{
	static const char *const files[] = {"cpuset.cpus", "cpuset.mems"};
	char path[CG_FILE], *parent = strdup(dir), *val;
	int ret = 0;

	if (!parent) {
		pr_err("out of memory");
		return -1;
	}
	*strrchr(parent, '/') = 0;
	for (size_t i = 0; i < ARRAY_SIZE(files) && !ret; i++) {
		snprintf(path, sizeof(path), "%s/%s", parent, files[i]);
		val = read_value(path);
		if (!val) {
			pr_perror("cannot read %s", path);
			ret = -1;
			break;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		if (write_value(path, val)) {
			pr_perror("cannot set %s to '%s'", path, val);
			ret = -1;
		}
		free(val);
	}
	free(parent);
	return ret;
}

/* mkdir -p below the hierarchy's mount, remembering what was made. */
static int make_dir(struct cg_restore *cr, const char *mnt, const char *dir, bool cpuset)
{
	char *path = strdup(dir), *p, *copy, **slot;
	int ret = -1;

	if (!path) {
		pr_err("out of memory");
		return -1;
	}
	for (p = path + strlen(mnt) + 1;; p++) {
		bool last = !*p;

		if (*p && *p != '/')
			continue;
		*p = 0;
		if (mkdir(path, 0755)) {
			if (errno != EEXIST) {
				pr_perror("cannot make cgroup %s", path);
				goto out;
			}
		} else {
			copy = strdup(path);
			slot = copy ? vec_push(&cr->created) : NULL;
			if (!slot) {
				free(copy);
				rmdir(path);
				pr_err("out of memory");
				goto out;
			}
			*slot = copy;
			pr_info("made cgroup %s", path);
			if (cpuset && copy_cpuset(path))
				goto out;
		}
		if (last)
			break;
		*p = '/';
	}
	ret = 0;
out:
	free(path);
	return ret;
}

/* Remember a controller turned on in a cgroup that outlives a failed restore. */
static int note_enabled(struct cg_restore *cr, const char *dir, const char *ctrl)
{
	struct cg_enabled *en;

	if (was_created(cr, dir))
		return 0;
	en = vec_push(&cr->enabled);
	if (!en || !(en->dir = strdup(dir))) {
		pr_err("out of memory");
		return -1;
	}
	snprintf(en->ctrl, sizeof(en->ctrl), "%s", ctrl);
	return 0;
}

/* Is the controller on in that cgroup's cgroup.subtree_control (space-separated)? */
static int subtree_has(const char *dir, const char *ctrl)
{
	char path[CG_FILE], *text, *w, *save = NULL;
	bool on = false;

	snprintf(path, sizeof(path), "%s/cgroup.subtree_control", dir);
	text = read_value(path);
	if (!text) {
		pr_perror("cannot read %s", path);
		return -1;
	}
	for (w = strtok_r(text, " ", &save); w; w = strtok_r(NULL, " ", &save))
		on |= !strcmp(w, ctrl);
	free(text);
	return on;
}

/* Turn a controller on in one cgroup, if the rules and this restore's own allow it. */
static int enable_in(struct cg_restore *cr, const char *anc, bool root, const char *ctrl,
		     const char *name, const char *cgpath)
{
	char path[CG_FILE], plus[40], *procs;
	bool busy;

	if (!root && !was_created(cr, anc)) {
		snprintf(path, sizeof(path), "%s/cgroup.procs", anc);
		procs = read_value(path);
		busy = !procs || *procs || holds_tree_task(cr, anc);
		free(procs);
		if (busy) {
			pr_err("cannot set %s of cgroup %s: the %s controller is off in %s, which "
			       "holds processes",
			       name, cgpath, ctrl, anc);
			return -1;
		}
	}
	snprintf(path, sizeof(path), "%s/cgroup.subtree_control", anc);
	snprintf(plus, sizeof(plus), "+%s", ctrl);
	if (write_value(path, plus)) {
		if (errno == ENOENT)
			pr_err("cannot set %s of cgroup %s: no %s controller in cgroup v2 here "
			       "(bound to a v1 hierarchy?)",
			       name, cgpath, ctrl);
		else
			pr_perror("cannot turn on the %s controller in %s", ctrl, anc);
		return -1;
	}
	pr_info("turned on the %s controller in %s", ctrl, path);
	return note_enabled(cr, anc, ctrl);
}

/*
 * A v2 limit file exists only where the parent's cgroup.subtree_control has its controller:
 * turn it on from the top down.  A cgroup other than the root cannot both hold processes and
 * have controllers on for its children, so this is done only in the root, in cgroups the
 * restore made, and in empty ones no task of the tree goes into.
 */
static int enable_controller(struct cg_restore *cr, size_t i, const char *name)
{
	const struct cg_mount *m = find_mount(&cr->mounts, NULL);
	const char *dir = cr->dir_disk[i];
	size_t mlen = strlen(m->mnt), dlen = strlen(dir);
	char ctrl[32], anc[CG_PATH];
	int on;

	snprintf(ctrl, sizeof(ctrl), "%.*s", (int)strcspn(name, "."), name);
	if (!strcmp(ctrl, "cgroup")) {
		pr_err("cannot set %s of cgroup %s: this kernel has no such file", name,
		       cr->e->dirs[i]->path);
		return -1;
	}
	/* every ancestor, from the mount's top to the parent */
	for (size_t len = mlen; len < dlen; len += 1 + strcspn(dir + len + 1, "/")) {
		snprintf(anc, sizeof(anc), "%.*s", (int)len, dir);
		on = subtree_has(anc, ctrl);
		if (on < 0)
			return -1;
		if (!on && enable_in(cr, anc, len == mlen && !strcmp(m->root, "/"), ctrl, name,
				     cr->e->dirs[i]->path))
			return -1;
	}
	return 0;
}

/* Keep a limit's value before overwriting it in a cgroup the restore did not make. */
static int save_limit(struct cg_restore *cr, const char *file)
{
	struct cg_saved *s = vec_push(&cr->saved);

	if (!s) {
		pr_err("out of memory");
		return -1;
	}
	s->file = strdup(file);
	s->value = read_value(file);
	if (!s->file || !s->value) {
		pr_perror("cannot read %s", file);
		return -1;
	}
	return 0;
}

/* The recorded limits of cgroup i, in their order; saved first when it existed. */
static int set_limits(struct cg_restore *cr, size_t i, bool save)
{
	const CgroupDirEntry *d = cr->e->dirs[i];
	bool v2 = !cr->e->hiers[d->hier]->controllers;
	char path[CG_FILE];

	for (size_t j = 0; j < d->n_limits; j++) {
		const CgroupLimitEntry *l = d->limits[j];

		snprintf(path, sizeof(path), "%s/%s", cr->dir_disk[i], l->name);
		if (access(path, F_OK) && v2 && enable_controller(cr, i, l->name))
			return -1;
		if (access(path, F_OK)) {
			pr_err("cannot set %s of cgroup %s (%s): no such file here", l->name,
			       d->path, hier_name(cr->e->hiers[d->hier]));
			return -1;
		}
		if (save && save_limit(cr, path))
			return -1;
		if (write_value(path, l->value)) {
			pr_perror("cannot set %s of cgroup %s to '%s'", l->name, d->path, l->value);
			return -1;
		}
	}
	return 0;
}

static int depth(const char *path)
{
	int n = 0;

	for (; *path; path++)
		n += *path == '/';
	return n;
}

/* Make the missing cgroups, parents first, and set limits as the mode says. */
static int make_dirs(struct cg_restore *cr)
{
	const CgroupEntry *e = cr->e;
	int max = 0;

	for (size_t i = 0; i < e->n_dirs; i++)
		max = max_t(int, max, depth(e->dirs[i]->path));
	for (int level = 1; level <= max; level++) {
		for (size_t i = 0; i < e->n_dirs; i++) {
			const CgroupDirEntry *d = e->dirs[i];
			const char *ctrls = e->hiers[d->hier]->controllers;

			if (depth(d->path) != level || !strcmp(d->path, "/") || !cr->dir_disk[i])
				continue;
			if (!cr->dir_existed[i]) {
				if (make_dir(cr, find_mount(&cr->mounts, ctrls)->mnt,
					     cr->dir_disk[i],
					     ctrls && has_item(ctrls, "cpuset", 6)) ||
				    set_limits(cr, i, false))
					return -1;
			} else if (cr->mode == CG_FULL && set_limits(cr, i, true)) {
				return -1;
			}
		}
	}
	return 0;
}

int cgroup_restore_prepare(struct restore_tree *t)
{
	struct cg_restore *cr;
	ProtobufCMessage *msg = NULL;
	enum cg_mode mode;

	if (parse_mode(t->opts, &mode))
		return -1;
	if (mode == CG_IGNORE || faccessat(t->dirfd, "cgroup.img", F_OK, 0))
		return 0;
	cr = calloc(1, sizeof(*cr));
	if (!cr) {
		pr_err("out of memory");
		return -1;
	}
	cr->mode = mode;
	cr->mounts = (struct vec)VEC_INIT(struct cg_mount);
	cr->created = (struct vec)VEC_INIT(char *);
	cr->enabled = (struct vec)VEC_INIT(struct cg_enabled);
	cr->saved = (struct vec)VEC_INIT(struct cg_saved);
	t->cgroups = cr;
	if (img_read_one(t->dirfd, IMG_CGROUP, 0, &cgroup_entry__descriptor, &msg))
		return -1;
	cr->e = (CgroupEntry *)msg;
	if (validate(cr->e) || map_tasks(cr, t) || read_mounts(&cr->mounts) || locate_dirs(cr))
		return -1;
	/* strict: refuse before anything is made */
	if ((mode == CG_STRICT && check_existing(cr)) || make_dirs(cr))
		return -1;
	pr_info("cgroups (%s): %zu cgroups, %zu made, %zu limits overwritten", mode_names[mode],
		cr->e->n_dirs, cr->created.len, cr->saved.len);
	return 0;
}

/* Is the task (its /proc/PID/cgroup text) in cgroup d already? */
static bool in_cgroup(const char *text, const CgroupEntry *e, const CgroupDirEntry *d)
{
	const char *ctrls = e->hiers[d->hier]->controllers;
	char *copy = strdup(text), *line, *next, *c, *p;
	bool in = false;

	for (line = copy; line && *line && !in; line = next) {
		next = strchrnul(line, '\n');
		if (*next)
			*next++ = 0;
		if (split_cg_line(line, &c, &p) && !strcmp(p, d->path))
			in = c == ctrls || (c && ctrls && !strcmp(c, ctrls));
	}
	free(copy);
	return in;
}

static int task_index(const struct restore_tree *t, const struct restore_ctx *r)
{
	for (size_t i = 0; i < t->tasks.len; i++)
		if (*vec_at(&t->tasks, struct restore_ctx *, i) == r)
			return i;
	return -1;
}

/*
 * A task is born in its parent's cgroups, which it is moved into before: move it only where
 * it was elsewhere.  The root is born in crest's: compare with where it is.
 */
int cgroup_restore_task(struct restore_tree *t, pid_t pid)
{
	struct cg_restore *cr = t->cgroups;
	const CgroupTaskEntry *te, *pte = NULL;
	const struct restore_ctx *r = NULL;
	char path[CG_FILE], val[16], *now = NULL;
	int ret = 0;

	for (size_t i = 0; cr && i < t->tasks.len && !r; i++)
		if ((*vec_at(&t->tasks, struct restore_ctx *, i))->pid == pid)
			r = *vec_at(&t->tasks, struct restore_ctx *, i);
	te = r ? cr->task_of[task_index(t, r)] : NULL;
	if (!te)
		return 0;
	if (r->parent)
		pte = cr->task_of[task_index(t, r->parent)];
	snprintf(path, sizeof(path), "/proc/%d/cgroup", pid);
	if (!pte && !(now = read_file_at(AT_FDCWD, path, NULL))) {
		pr_perror("cannot read %s", path);
		return -1;
	}
	snprintf(val, sizeof(val), "%d", pid);
	for (size_t j = 0; j < te->n_dirs && !ret; j++) {
		const CgroupDirEntry *d = cr->e->dirs[te->dirs[j]];
		bool same = false;

		for (size_t k = 0; pte && k < pte->n_dirs; k++)
			same |= pte->dirs[k] == te->dirs[j];
		if (same || (now && in_cgroup(now, cr->e, d)) || !cr->dir_disk[te->dirs[j]])
			continue;
		snprintf(path, sizeof(path), "%s/cgroup.procs", cr->dir_disk[te->dirs[j]]);
		if (write_value(path, val)) {
			pr_perror("cannot move task %d into cgroup %s (%s)", pid, d->path,
				  hier_name(cr->e->hiers[d->hier]));
			ret = -1;
		} else {
			pr_debug("task %d: moved into cgroup %s (%s)", pid, d->path,
				 hier_name(cr->e->hiers[d->hier]));
		}
	}
	free(now);
	return ret;
}

/* A failed restore: back as it was, as far as it goes (warnings: the failure is reported). */
static void undo(struct cg_restore *cr)
{
	for (size_t i = cr->saved.len; i-- > 0;) {
		struct cg_saved *s = vec_at(&cr->saved, struct cg_saved, i);

		if (s->value && write_value(s->file, s->value))
			pr_warn("cannot put %s back to '%s': %s", s->file, s->value,
				strerror(errno));
	}
	for (size_t i = cr->created.len; i-- > 0;) {
		const char *dir = *vec_at(&cr->created, char *, i);
		int tries = 0;

		while (rmdir(dir) && errno == EBUSY && ++tries < RMDIR_TRIES)
			usleep(10000);
		if (access(dir, F_OK) == 0)
			pr_warn("cannot remove cgroup %s: %s", dir, strerror(errno));
		else
			pr_info("removed cgroup %s", dir);
	}
	for (size_t i = cr->enabled.len; i-- > 0;) {
		struct cg_enabled *en = vec_at(&cr->enabled, struct cg_enabled, i);
		char path[CG_FILE], minus[40];

		snprintf(path, sizeof(path), "%s/cgroup.subtree_control", en->dir);
		snprintf(minus, sizeof(minus), "-%s", en->ctrl);
		if (write_value(path, minus))
			pr_warn("cannot turn the %s controller off again in %s: %s", en->ctrl,
				en->dir, strerror(errno));
	}
}

void cgroup_restore_fini(struct restore_tree *t, bool ok)
{
	struct cg_restore *cr = t->cgroups;

	if (!cr)
		return;
	if (!ok)
		undo(cr);
	for (size_t i = 0; i < cr->created.len; i++)
		free(*vec_at(&cr->created, char *, i));
	vec_free(&cr->created);
	for (size_t i = 0; i < cr->enabled.len; i++)
		free(vec_at(&cr->enabled, struct cg_enabled, i)->dir);
	vec_free(&cr->enabled);
	for (size_t i = 0; i < cr->saved.len; i++) {
		free(vec_at(&cr->saved, struct cg_saved, i)->file);
		free(vec_at(&cr->saved, struct cg_saved, i)->value);
	}
	vec_free(&cr->saved);
	for (size_t i = 0; cr->e && cr->dir_disk && i < cr->e->n_dirs; i++)
		free(cr->dir_disk[i]);
	free(cr->dir_disk);
	free(cr->dir_existed);
	free(cr->task_of);
	free_mounts(&cr->mounts);
	if (cr->e)
		cgroup_entry__free_unpacked(cr->e, NULL);
	free(cr);
	t->cgroups = NULL;
}
