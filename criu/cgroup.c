// SPDX-License-Identifier: MIT
/* --manage-cgroups: placeholder until the module lands. */
#include "internal.h"

int cgroup_dump(struct dump_tree *t)
{
	return 0;
}

int cgroup_restore_prepare(struct restore_tree *t)
{
	return 0;
}

int cgroup_restore_task(struct restore_tree *t, pid_t pid)
{
	return 0;
}

void cgroup_restore_fini(struct restore_tree *t, bool ok)
{
}
