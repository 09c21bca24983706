// SPDX-License-Identifier: MIT
/*
 * vmaflags.c: VMA flags read before a freeze are taken only for VMAs whose maps line has not
 * changed, and the check inside the freeze pairs every dumped VMA with the true one.
 */
#include <criterion/criterion.h>

#include "internal.h"
#include "proc.h"

static const char smaps_text[] =
	"00400000-00401000 r-xp 00000000 08:01 1234       /bin/prog\n"
	"Size:                  4 kB\n"
	"VmFlags: rd ex mr mw me dw \n"
	"7f0000000000-7f0000004000 rw-p 00000000 00:00 0 \n"
	"Rss:                  16 kB\n"
	"VmFlags: rd wr mr mw me ac dc \n"
	"7f0000005000-7f0000009000 rw-p 00000000 00:00 0 \n"
	"VmFlags: rd wr mr mw me lo ac \n"
	"7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0          [stack]\n"
	"VmFlags: rd wr mr mw me gd ac \n";

static const char maps_text[] =
	"00400000-00401000 r-xp 00000000 08:01 1234       /bin/prog\n"
	"7f0000000000-7f0000004000 rw-p 00000000 00:00 0 \n"
	"7f0000005000-7f0000009000 rw-p 00000000 00:00 0 \n"
	"7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0          [stack]\n";

static void parse(const char *text, struct vec *v)
{
	const char *bad = NULL;

	*v = (struct vec)VEC_INIT(struct proc_vma);
	cr_assert_eq(proc_vmas_parse(text, v, &bad), 0, "bad line: %s", bad ? bad : "(none)");
}

static unsigned int flags_at(const struct vec *v, size_t i)
{
	return vec_at(v, struct proc_vma, i)->vmflags;
}

Test(vmaflags, parse_smaps_and_maps)
{
	struct vec s, m;

	parse(smaps_text, &s);
	parse(maps_text, &m);
	cr_assert_eq(s.len, 4);
	cr_assert_eq(m.len, 4);
	cr_assert_eq(flags_at(&s, 1), VMF_DONTCOPY | VMF_MAYWRITE);
	cr_assert_eq(flags_at(&s, 2), VMF_LOCKED | VMF_MAYWRITE);
	cr_assert_eq(flags_at(&s, 3), VMF_GROWSDOWN | VMF_MAYWRITE);
	cr_assert_str_eq(vec_at(&s, struct proc_vma, 3)->path, "[stack]");
	cr_assert_eq(flags_at(&m, 1), 0);
	vec_free(&s);
	vec_free(&m);
}

Test(vmaflags, bad_line_reported)
{
	struct vec v = VEC_INIT(struct proc_vma);
	const char *bad = NULL;

	cr_assert_eq(proc_vmas_parse("00400000-zz r-xp\n", &v, &bad), -1);
	cr_assert_not_null(bad);
	vec_free(&v);
}

Test(vmaflags, take_same_lines)
{
	struct vec pre, now;

	parse(smaps_text, &pre);
	parse(maps_text, &now);
	cr_assert(vmaflags_take(&now, &pre));
	for (size_t i = 0; i < now.len; i++)
		cr_assert_eq(flags_at(&now, i), flags_at(&pre, i), "VMA %zu", i);
	vec_free(&pre);
	vec_free(&now);
}

Test(vmaflags, take_fewer_vmas_now)
{
	struct vec pre, now;

	parse(smaps_text, &pre);
	parse("7f0000005000-7f0000009000 rw-p 00000000 00:00 0 \n", &now);
	cr_assert(vmaflags_take(&now, &pre), "a VMA gone since is no change to the others");
	cr_assert_eq(flags_at(&now, 0), VMF_LOCKED | VMF_MAYWRITE);
	vec_free(&pre);
	vec_free(&now);
}

Test(vmaflags, take_refuses_changed_lines)
{
	static const char *const changed[] = {
		/* grown */
		"7f0000000000-7f0000006000 rw-p 00000000 00:00 0 \n",
		/* other protection */
		"7f0000000000-7f0000004000 r--p 00000000 00:00 0 \n",
		/* other file */
		"00400000-00401000 r-xp 00000000 08:01 1235       /bin/prog\n",
		/* new */
		"7f0000010000-7f0000011000 rw-p 00000000 00:00 0 \n",
		/* named now */
		"7f0000000000-7f0000004000 rw-p 00000000 00:00 0          [anon:x]\n",
	};

	for (size_t i = 0; i < sizeof(changed) / sizeof(changed[0]); i++) {
		struct vec pre, now;

		parse(smaps_text, &pre);
		parse(changed[i], &now);
		cr_assert_not(vmaflags_take(&now, &pre), "taken: %s", changed[i]);
		vec_free(&pre);
		vec_free(&now);
	}
}

Test(vmaflags, match_pairs_and_skips_scratch)
{
	static const char truth_text[] =
		"00400000-00401000 r-xp 00000000 08:01 1234       /bin/prog\n"
		"7eff00000000-7eff00001000 rw-s 00000000 00:01 77 /dev/zero (deleted)\n"
		"7f0000000000-7f0000004000 rw-p 00000000 00:00 0 \n"
		"7f0000005000-7f0000009000 rw-p 00000000 00:00 0 \n"
		"7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0          [stack]\n";
	struct vec dumped, truth;
	size_t at[4];

	parse(maps_text, &dumped);
	parse(truth_text, &truth);
	cr_assert_eq(vmaflags_match(&dumped, &truth, 0x7eff00000000ul, at), 0);
	cr_assert_eq(at[0], 0);
	cr_assert_eq(at[1], 2);
	cr_assert_eq(at[3], 4);
	/* without the scratch page to skip, the extra VMA is a change */
	cr_assert_eq(vmaflags_match(&dumped, &truth, 0, at), -1);
	vec_free(&dumped);
	vec_free(&truth);
}

Test(vmaflags, match_refuses_other_layouts)
{
	struct vec dumped, truth;
	size_t at[4];

	parse(maps_text, &dumped);
	parse("00400000-00401000 r-xp 00000000 08:01 1234       /bin/prog\n"
	      "7f0000000000-7f0000004000 rw-p 00000000 00:00 0 \n",
	      &truth);
	cr_assert_eq(vmaflags_match(&dumped, &truth, 0, at), -1, "VMAs missing in the truth");
	vec_free(&truth);
	parse("00400000-00401000 r-xp 00000000 08:01 1234       /bin/prog\n"
	      "7f0000000000-7f0000004000 rw-p 00000000 00:00 0 \n"
	      "7f0000005000-7f000000a000 rw-p 00000000 00:00 0 \n"
	      "7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0          [stack]\n",
	      &truth);
	cr_assert_eq(vmaflags_match(&dumped, &truth, 0, at), -1, "a VMA of another size");
	vec_free(&truth);
	vec_free(&dumped);
}
