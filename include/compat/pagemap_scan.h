/* SPDX-License-Identifier: MIT */
/*
 * PAGEMAP_SCAN: the ioctl on /proc/PID/pagemap that reports runs of pages sharing the same
 * PAGE_IS_* categories (and can write-protect them for uffd WP-async dirty tracking).
 * It appeared in Linux 6.7 (include/uapi/linux/fs.h); Debian 12 ships 6.1 headers, so the
 * definitions live here.  Everything is guarded so that newer system headers win.
 */
#ifndef CREST_COMPAT_PAGEMAP_SCAN_H
#define CREST_COMPAT_PAGEMAP_SCAN_H

#include <linux/fs.h>
#include <linux/ioctl.h>
#include <linux/types.h>

/* Category bits: used in the masks of pm_scan_arg and reported in page_region.categories. */
#ifndef PAGE_IS_WPALLOWED
#define PAGE_IS_WPALLOWED (1 << 0)  /* uffd async write-protection is armed here (6.7) */
#define PAGE_IS_WRITTEN (1 << 1)    /* written since it was write-protected (6.7) */
#define PAGE_IS_FILE (1 << 2)	    /* backed by a file page, not a private anon one (6.7) */
#define PAGE_IS_PRESENT (1 << 3)    /* in RAM (6.7) */
#define PAGE_IS_SWAPPED (1 << 4)    /* in swap (6.7) */
#define PAGE_IS_PFNZERO (1 << 5)    /* mapped to the shared zero page (6.7) */
#define PAGE_IS_HUGE (1 << 6)	    /* THP or hugetlb (6.7) */
#define PAGE_IS_SOFT_DIRTY (1 << 7) /* soft-dirty bit set (6.7; needs CONFIG_MEM_SOFT_DIRTY) */
#endif

#ifndef PAGE_IS_GUARD
#define PAGE_IS_GUARD (1 << 8) /* MADV_GUARD_INSTALL guard region (6.14) */
#endif

#ifndef PAGEMAP_SCAN

/* One run of pages [start, end) that share the same reported categories. */
struct page_region {
	__u64 start;
	__u64 end; /* exclusive */
	__u64 categories;
};

/* Flags of pm_scan_arg.flags. */
#define PM_SCAN_WP_MATCHING (1 << 0)   /* write-protect the pages that matched */
#define PM_SCAN_CHECK_WPASYNC (1 << 1) /* abort on a page without uffd WP-async armed */

struct pm_scan_arg {
	__u64 size;		   /* sizeof(struct pm_scan_arg) */
	__u64 flags;		   /* PM_SCAN_* */
	__u64 start;		   /* first address to scan */
	__u64 end;		   /* end of the range (exclusive) */
	__u64 walk_end;		   /* set by the kernel: where the walk stopped */
	__u64 vec;		   /* user pointer to struct page_region[vec_len] */
	__u64 vec_len;		   /* entries in vec */
	__u64 max_pages;	   /* stop after this many pages, 0 = no limit */
	__u64 category_inverted;   /* categories that match when clear instead of set */
	__u64 category_mask;	   /* a page must match all of these */
	__u64 category_anyof_mask; /* ... and at least one of these (when non-zero) */
	__u64 return_mask;	   /* categories to report in page_region.categories */
};

/* Returns the number of page_region entries filled, or -1 with errno. */
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)

#endif /* PAGEMAP_SCAN */

#endif
