// SPDX-License-Identifier: MIT
/* mountinfo lines as mnt.c reads them: fields, escapes, flags and propagation. */
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/sysmacros.h>

#include <criterion/criterion.h>

#include "internal.h"

static void entry_free(MountEntry *m)
{
	NsEntry ns = NS_ENTRY__INIT;

	ns.mounts = calloc(1, sizeof(*ns.mounts));
	cr_assert_not_null(ns.mounts);
	ns.mounts[0] = m;
	ns.n_mounts = 1;
	mnt_dump_free(&ns);
}

Test(mnt, plain_line)
{
	MountEntry *m = mnt_entry_parse("36 35 98:0 /mnt1 /mnt2 rw,noatime - ext3 /dev/root "
					"rw,errors=continue");

	cr_assert_not_null(m);
	cr_assert_eq(m->mnt_id, 36);
	cr_assert_eq(m->parent_id, 35);
	cr_assert_eq(m->dev, makedev(98, 0));
	cr_assert_str_eq(m->root, "/mnt1");
	cr_assert_str_eq(m->mountpoint, "/mnt2");
	cr_assert_str_eq(m->fstype, "ext3");
	cr_assert_str_eq(m->source, "/dev/root");
	cr_assert_str_eq(m->super_opts, "rw,errors=continue");
	cr_assert_eq(m->flags, MS_NOATIME);
	cr_assert(!m->has_shared && !m->has_master && !m->unbindable);
	entry_free(m);
}

Test(mnt, propagation_fields)
{
	MountEntry *m = mnt_entry_parse("40 30 0:41 / /data ro,nosuid shared:5 master:3 - tmpfs "
					"tmpfs rw,size=16k");

	cr_assert_not_null(m);
	cr_assert(m->has_shared && m->shared == 5, "shared: %u", m->shared);
	cr_assert(m->has_master && m->master == 3, "master: %u", m->master);
	cr_assert_eq(m->flags, MS_RDONLY | MS_NOSUID);
	entry_free(m);
	m = mnt_entry_parse("41 30 0:42 / /x rw unbindable - tmpfs tmpfs rw");
	cr_assert_not_null(m);
	cr_assert(m->unbindable && !m->has_shared);
	entry_free(m);
}

Test(mnt, escaped_paths)
{
	MountEntry *m = mnt_entry_parse("50 30 0:43 /a\\040b /mnt/with\\040space\\011tab rw - "
					"tmpfs none rw");

	cr_assert_not_null(m);
	cr_assert_str_eq(m->root, "/a b");
	cr_assert_str_eq(m->mountpoint, "/mnt/with space\ttab");
	entry_free(m);
}

Test(mnt, malformed_lines_refused)
{
	cr_assert_null(mnt_entry_parse(""));
	cr_assert_null(mnt_entry_parse("36 35 98:0 /mnt1 /mnt2 rw"));
	cr_assert_null(mnt_entry_parse("36 35 98:0 /mnt1 - ext3 /dev/root rw"));
	cr_assert_null(mnt_entry_parse("36 35 x /mnt1 /mnt2 rw - ext3 /dev/root rw"));
	cr_assert_null(mnt_entry_parse("36 35 98:0 /mnt1 /mnt2 rw - ext3"));
}
