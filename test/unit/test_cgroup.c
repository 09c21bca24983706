// SPDX-License-Identifier: MIT
/*
 * criu/cgroup.c's restore side, before it touches any cgroup: the mode is checked, a dump
 * without cgroup.img restores nothing, and a cgroup.img that names a file crest must not
 * write (cgroup.procs, release_agent), a path that leaves its hierarchy, or indexes out of
 * range is refused with a reason.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "crest.h"
#include "fixtures.h"
#include "internal.h"
#include "log.h"

#include "cgroup.pb-c.h"

static char *tmp;
static struct crest_opts opts;
static struct restore_tree tree;

/* A one-hierarchy, one-cgroup, one-task image, for the tests to spoil. */
static CgroupHierEntry hier, *hiers[] = {&hier};
static CgroupLimitEntry limit, *limits[] = {&limit};
static CgroupDirEntry dir, *dirs[] = {&dir};
static uint32_t task_dirs[] = {0};
static CgroupTaskEntry task, *tasks[] = {&task};
static CgroupEntry entry;

static void setup(void)
{
	tmp = unit_mkdtemp();
	crest_opts_init(&opts);
	opts.manage_cgroups = true;
	tree = (struct restore_tree){.opts = &opts, .tasks = VEC_INIT(struct restore_ctx *)};
	tree.dirfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert(tree.dirfd >= 0);
	error_reset();

	cgroup_hier_entry__init(&hier);
	hier.controllers = "memory";
	cgroup_limit_entry__init(&limit);
	limit.name = "memory.limit_in_bytes";
	limit.value = "1048576";
	cgroup_dir_entry__init(&dir);
	dir.path = "/crest-unit-never-made";
	dir.n_limits = 1;
	dir.limits = limits;
	cgroup_task_entry__init(&task);
	task.pid = 4242;
	task.n_dirs = 1;
	task_dirs[0] = 0;
	task.dirs = task_dirs;
	cgroup_entry__init(&entry);
	entry.n_hiers = 1;
	entry.hiers = hiers;
	entry.n_dirs = 1;
	entry.dirs = dirs;
	entry.n_tasks = 1;
	entry.tasks = tasks;
}

static void teardown(void)
{
	cgroup_restore_fini(&tree, false);
	close(tree.dirfd);
	unit_rmtree(tmp);
	free(tmp);
}

static void write_image(void)
{
	cr_assert_eq(img_write_one(tree.dirfd, IMG_CGROUP, 0, &entry.base), 0);
}

/* Refused, saying why, and nothing kept. */
static void assert_refused(const char *problem)
{
	write_image();
	cr_assert_eq(cgroup_restore_prepare(&tree), -1);
	cr_assert(strstr(crest_last_error(), problem), "error \"%s\" does not say \"%s\"",
		  crest_last_error(), problem);
}

TestSuite(cgroup, .init = setup, .fini = teardown);

Test(cgroup, no_image_no_state)
{
	cr_assert_eq(cgroup_restore_prepare(&tree), 0);
	cr_assert_null(tree.cgroups);
	cr_assert_eq(cgroup_restore_task(&tree, getpid()), 0);
}

Test(cgroup, unknown_mode_refused)
{
	opts.manage_cgroups_mode = "sometimes";
	cr_assert_eq(cgroup_restore_prepare(&tree), -1);
	cr_assert(strstr(crest_last_error(), "'sometimes'"), "%s", crest_last_error());
}

Test(cgroup, ignore_reads_nothing)
{
	limit.name = "release_agent";
	write_image();
	opts.manage_cgroups_mode = "ignore";
	cr_assert_eq(cgroup_restore_prepare(&tree), 0);
	cr_assert_null(tree.cgroups);
}

Test(cgroup, release_agent_refused)
{
	limit.name = "release_agent";
	assert_refused("'release_agent' of cgroup /crest-unit-never-made is no limit");
}

Test(cgroup, cgroup_procs_refused)
{
	hier.controllers = NULL;
	limit.name = "cgroup.procs";
	assert_refused("'cgroup.procs'");
}

/* v1 names are no v2 limits and the other way round: each hierarchy has its own list. */
Test(cgroup, limit_of_other_version_refused)
{
	limit.name = "memory.max";
	assert_refused("'memory.max'");
}

Test(cgroup, escaping_path_refused)
{
	dir.path = "/a/../../etc";
	assert_refused("/a/../../etc");
}

Test(cgroup, relative_path_refused)
{
	dir.path = "a";
	assert_refused("bad cgroup 0");
}

Test(cgroup, hierarchy_index_refused)
{
	dir.hier = 1;
	assert_refused("bad cgroup 0 (hierarchy 1");
}

Test(cgroup, task_index_refused)
{
	task_dirs[0] = 7;
	assert_refused("bad cgroups of task 4242");
}

Test(cgroup, task_twice_in_a_hierarchy_refused)
{
	static uint32_t two[] = {0, 1};
	static CgroupDirEntry other, *both[] = {&dir, &other};

	cgroup_dir_entry__init(&other);
	other.path = "/other";
	entry.n_dirs = 2;
	entry.dirs = both;
	task.n_dirs = 2;
	task.dirs = two;
	assert_refused("bad cgroups of task 4242");
}

Test(cgroup, hugetlb_names)
{
	hier.controllers = NULL;
	limit.name = "hugetlb.2MB/../max";
	assert_refused("'hugetlb.2MB/../max'");
}

/* A hierarchy's root is never made nor limited: a good image of it changes nothing. */
Test(cgroup, root_only_image)
{
	hier.controllers = NULL;
	dir.path = "/";
	dir.n_limits = 0;
	entry.n_tasks = 0;
	write_image();
	cr_assert_eq(cgroup_restore_prepare(&tree), 0, "%s", crest_last_error());
	cr_assert_not_null(tree.cgroups);
	cgroup_restore_fini(&tree, false);
	cr_assert_null(tree.cgroups);
}
